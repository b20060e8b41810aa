//! ACL classification throughput: batches of 64 packets of one VPN session
//! against 10, 100 and 1000 rules, with 100k IP-to-SGT bindings and 2000 VPN
//! session host bindings (in their own table, looked up first).
//!
//! Rule sets look like the seed's VPN-FILTER grown up: a few address rules
//! without SGTs at the top (`deny tcp any host X eq telnet`), then per (user SGT,
//! server SGT) pair `permit icmp ... echo`, `permit tcp ... eq https`,
//! `permit tcp ... range 8000 8080`, `permit udp ... eq domain`, and a final
//! `deny ip any any log`. Criterion reports elements (= packets) per second on
//! one core.
//!
//! Cases per rule count:
//! - `mixed`: web, DNS, ping and blocked SSH to servers of several groups.
//! - `last_rule`: every packet ends on the final `deny ip any any log`.
//! - `implicit_deny`: the same ACL without that line: nothing matches.
//! - `linear_last_rule`: `last_rule` with the index switched off (why it exists).
//! - `parse_mixed`: `mixed` including `PacketMeta::parse` of the raw packets.
//!
//! The `sgt_map` group times the remote-SGT lookup alone: the map by itself
//! (`lookup_100k`), through the resolver with the sessions in their pool (the
//! servers fall outside the pool's range: `resolve_100k_pool`), with session
//! addresses spread so that every lookup probes the session table first
//! (`resolve_100k_spread`), lookups that hit a session (`resolve_session_hit`),
//! and the cost of a session change (`sessions_build_2k`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::policy::{
    CompiledAcl, Direction, Indexing, NetMatch, PacketMeta, PortMatch, Rule, SessionSgts, SgtMap,
    SgtMapBuilder, SgtResolver, Source, Verdict,
};

const BATCH: usize = 64;
const USER_GROUPS: u16 = 16;
const SERVER_GROUPS: u16 = 16;
const BINDINGS: u32 = 100_000;
const SESSIONS: u32 = 2000;
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 10);

fn user_tag(i: u16) -> u16 {
    10 + i
}

fn server_tag(i: u16) -> u16 {
    100 + i
}

/// `n` rules: ~2% address rules, SGT pair rules, and (optionally) a final deny.
fn rules(n: usize, final_deny: bool) -> Vec<Rule> {
    let mut v = Vec::with_capacity(n);
    let addr_rules = (n / 50).max(1);
    for i in 0..addr_rules {
        v.push(
            Rule::deny()
                .protocol(6)
                .dst(NetMatch::host(IpAddr::V4(Ipv4Addr::new(
                    198, 51, 100, i as u8,
                ))))
                .dst_port(PortMatch::Eq(23)),
        );
    }
    let body = n - addr_rules - usize::from(final_deny);
    let mut pair = 0u16;
    while v.len() < addr_rules + body {
        let s = user_tag(pair % USER_GROUPS);
        let d = server_tag((pair / USER_GROUPS) % SERVER_GROUPS);
        let per_pair = [
            Rule::permit().protocol(1).icmp_type(8),
            Rule::permit().protocol(6).dst_port(PortMatch::Eq(443)),
            Rule::permit()
                .protocol(6)
                .dst_port(PortMatch::Range(8000, 8080)),
            Rule::permit().protocol(17).dst_port(PortMatch::Eq(53)),
        ];
        for r in per_pair {
            if v.len() < addr_rules + body {
                v.push(r.src_sgt(s).dst_sgt(d));
            }
        }
        pair += 1;
    }
    if final_deny {
        v.push(Rule::deny().log());
    }
    v
}

/// Server `k` of server group `g`: 10.g.x.y, bound /32 by SXP.
fn server(g: u16, k: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | u32::from(g) << 16 | (k & 0xffff))
}

/// 100k /32 bindings spread over the server groups, plus a few subnets.
fn sgt_map() -> SgtMap {
    let mut b = SgtMapBuilder::new();
    for i in 0..BINDINGS {
        let g = (i % u32::from(SERVER_GROUPS)) as u16;
        b.insert(
            IpAddr::V4(server(g, i / 16)),
            32,
            server_tag(g),
            Source::Sxp,
        )
        .expect("valid prefix");
    }
    for g in 0..SERVER_GROUPS {
        b.insert(IpAddr::V4(server(g, 0)), 16, server_tag(g), Source::Static)
            .expect("valid prefix");
        b.insert(IpAddr::V4(server(g, 0)), 24, server_tag(g), Source::Static)
            .expect("valid prefix");
    }
    b.build()
}

/// `SESSIONS` session addresses from the pool 198.18.96.0/20 (the bench's
/// client among them), tagged with the user groups. `spread` adds two
/// sessions at the ends of the address space, so that no lookup is rejected by
/// the table's address range and every one probes it.
fn session_sgts(spread: bool) -> SessionSgts {
    let pool = u32::from(Ipv4Addr::new(198, 18, 96, 0));
    let mut v: Vec<(IpAddr, u16)> = (0..SESSIONS)
        .map(|i| {
            let a = Ipv4Addr::from(pool + 1 + i);
            (IpAddr::V4(a), user_tag((i % u32::from(USER_GROUPS)) as u16))
        })
        .collect();
    if spread {
        v.push((IpAddr::V4(Ipv4Addr::new(1, 0, 0, 1)), user_tag(0)));
        v.push((IpAddr::V4(Ipv4Addr::new(254, 0, 0, 1)), user_tag(0)));
    }
    SessionSgts::from_bindings(v)
}

/// The session's SGT: the user group of the ACL's last pair, so its rules are
/// the last ones a linear scan would reach.
fn session_sgt(rules: &[Rule]) -> u16 {
    rules
        .iter()
        .rev()
        .find_map(|r| r.src_sgt)
        .expect("pair rules")
}

fn mixed_batch() -> Vec<PacketMeta> {
    let c = IpAddr::V4(CLIENT);
    (0..BATCH as u32)
        .map(|i| {
            let dst = IpAddr::V4(server((i % 8) as u16, i * 97));
            let sport = 40000 + i as u16;
            match i % 8 {
                0..=3 => PacketMeta::with_ports(c, dst, 6, sport, 443),
                4 => PacketMeta::with_ports(c, dst, 17, sport, 53),
                5 => PacketMeta::icmp(c, dst, 8),
                6 => PacketMeta::with_ports(c, dst, 6, sport, 8080),
                _ => PacketMeta::with_ports(c, dst, 6, sport, 22),
            }
        })
        .collect()
}

/// SSH to bound servers: no pair rule permits port 22.
fn blocked_batch() -> Vec<PacketMeta> {
    let c = IpAddr::V4(CLIENT);
    (0..BATCH as u32)
        .map(|i| {
            let dst = IpAddr::V4(server((i % 16) as u16, i * 131));
            PacketMeta::with_ports(c, dst, 6, 40000 + i as u16, 22)
        })
        .collect()
}

/// Raw IPv4 bytes of a packet (20-byte header + 20 bytes of L4).
fn raw(p: &PacketMeta) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (p.src(), p.dst()) else {
        unreachable!("bench packets are IPv4")
    };
    let mut b = vec![0u8; 40];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&40u16.to_be_bytes());
    b[8] = 64;
    b[9] = p.proto();
    b[12..16].copy_from_slice(&s.octets());
    b[16..20].copy_from_slice(&d.octets());
    if let Some((sp, dp)) = p.ports() {
        b[20..22].copy_from_slice(&sp.to_be_bytes());
        b[22..24].copy_from_slice(&dp.to_be_bytes());
    }
    if let Some(t) = p.icmp_type() {
        b[20] = t;
    }
    b
}

fn run(
    acl: &CompiledAcl,
    sgt: u16,
    pkts: &[PacketMeta],
    sgts: SgtResolver<'_>,
    out: &mut [Verdict],
) {
    acl.classify_batch(black_box(pkts), Direction::FromClient, Some(sgt), sgts, out);
}

fn classify(c: &mut Criterion) {
    let map = sgt_map();
    let sessions = session_sgts(false);
    let sgts = SgtResolver::new(&map, &sessions);
    let mixed = mixed_batch();
    let blocked = blocked_batch();
    let raw_mixed: Vec<Vec<u8>> = mixed.iter().map(raw).collect();
    let mut out = [Verdict::default(); BATCH];
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in [10usize, 100, 1000] {
        let with_deny = CompiledAcl::new(rules(n, true)).expect("rules compile");
        let without = CompiledAcl::new(rules(n, false)).expect("rules compile");
        let linear =
            CompiledAcl::with_indexing(rules(n, true), Indexing::Linear).expect("rules compile");
        let sgt = session_sgt(with_deny.rules());

        // Sanity: the cases do what their names say.
        run(&with_deny, sgt, &blocked, sgts, &mut out);
        assert!(out.iter().all(|v| v.rule as usize == n - 1));
        run(&without, sgt, &blocked, sgts, &mut out);
        assert!(out.iter().all(|v| v.rule == Verdict::IMPLICIT_DENY));
        run(&with_deny, sgt, &mixed, sgts, &mut out);
        assert!(out.iter().any(|v| v.is_permit()));

        g.bench_with_input(BenchmarkId::new("mixed", n), &n, |b, _| {
            b.iter(|| run(&with_deny, sgt, &mixed, sgts, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("last_rule", n), &n, |b, _| {
            b.iter(|| run(&with_deny, sgt, &blocked, sgts, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("implicit_deny", n), &n, |b, _| {
            b.iter(|| run(&without, sgt, &blocked, sgts, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("linear_last_rule", n), &n, |b, _| {
            b.iter(|| run(&linear, sgt, &blocked, sgts, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("parse_mixed", n), &n, |b, _| {
            let mut metas = [PacketMeta::default(); BATCH];
            b.iter(|| {
                for (m, r) in metas.iter_mut().zip(&raw_mixed) {
                    *m = PacketMeta::parse(black_box(r)).unwrap_or_default();
                }
                run(&with_deny, sgt, &metas, sgts, &mut out)
            })
        });
    }
    g.finish();
}

fn sgt_lookup(c: &mut Criterion) {
    let map = sgt_map();
    let pool = session_sgts(false);
    let spread = session_sgts(true);
    let addrs: Vec<IpAddr> = (0..BATCH as u32)
        .map(|i| IpAddr::V4(server((i % 16) as u16, i * 1543)))
        .collect();
    let clients: Vec<IpAddr> = (0..BATCH as u32)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 96, 1 + (i * 29 % 250) as u8)))
        .collect();
    let mut g = c.benchmark_group("sgt_map");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("lookup_100k", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for a in black_box(&addrs) {
                n += u32::from(map.lookup(*a).unwrap_or(0));
            }
            n
        })
    });
    let resolve = |addrs: &[IpAddr], sgts: SgtResolver<'_>| {
        let mut n = 0u32;
        for a in black_box(addrs) {
            n += u32::from(sgts.lookup(*a).unwrap_or(0));
        }
        n
    };
    // Sanity: clients hit their session, servers miss it and find the map.
    for sessions in [&pool, &spread] {
        let sgts = SgtResolver::new(&map, sessions);
        assert!(clients.iter().all(|a| sgts.lookup(*a).is_some()));
        assert!(addrs.iter().all(|a| sgts.lookup(*a) == map.lookup(*a)));
    }
    g.bench_function("resolve_100k_pool", |b| {
        b.iter(|| resolve(&addrs, SgtResolver::new(&map, &pool)))
    });
    g.bench_function("resolve_100k_spread", |b| {
        b.iter(|| resolve(&addrs, SgtResolver::new(&map, &spread)))
    });
    g.bench_function("resolve_session_hit", |b| {
        b.iter(|| resolve(&clients, SgtResolver::new(&map, &pool)))
    });
    g.throughput(Throughput::Elements(u64::from(SESSIONS)));
    g.bench_function("sessions_build_2k", |b| b.iter(|| session_sgts(false)));
    g.throughput(Throughput::Elements(u64::from(BINDINGS)));
    g.sample_size(10);
    g.bench_function("build_100k", |b| b.iter(sgt_map));
    g.finish();
}

criterion_group!(benches, classify, sgt_lookup);
criterion_main!(benches);

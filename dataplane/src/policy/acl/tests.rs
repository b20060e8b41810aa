use super::*;
use crate::policy::sgt_map::{SgtMap, SgtMapBuilder, Source};
use crate::policy::{SessionSgts, SgtResolver};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> NetMatch {
    let (a, l) = s.split_once('/').unwrap();
    NetMatch::prefix(ip(a), l.parse().unwrap())
}

const CLIENT: &str = "198.18.100.10";
const SERVER: &str = "198.18.1.5";

fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> PacketMeta {
    PacketMeta::with_ports(ip(src), ip(dst), 6, sport, dport)
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> PacketMeta {
    PacketMeta::with_ports(ip(src), ip(dst), 17, sport, dport)
}

fn seed_map() -> SgtMap {
    let mut b = SgtMapBuilder::new();
    b.insert(ip("198.18.1.0"), 28, 20, Source::Static).unwrap();
    b.insert(ip("198.18.2.0"), 24, 30, Source::Static).unwrap();
    b.insert(ip("fd00:1::"), 64, 20, Source::Static).unwrap();
    b.build()
}

/// Rule number (or u32::MAX) for one packet in both search modes; checks that
/// both agree and that `classify_batch` gives the same.
fn hit(rules: &[Rule], p: PacketMeta, dir: Direction, sgt: Option<u16>, map: &SgtMap) -> u32 {
    let lin = CompiledAcl::with_indexing(rules.to_vec(), Indexing::Linear).unwrap();
    let idx = CompiledAcl::with_indexing(rules.to_vec(), Indexing::Indexed).unwrap();
    let a = lin.evaluate(&p, dir, sgt, map.into());
    let b = idx.evaluate(&p, dir, sgt, map.into());
    assert_eq!(a, b, "linear vs indexed for {p:?}");
    let mut out = [Verdict::default(); 1];
    idx.classify_batch(&[p], dir, sgt, map.into(), &mut out);
    assert_eq!(out[0], a);
    a.rule
}

fn from_client(rules: &[Rule], p: PacketMeta) -> u32 {
    hit(rules, p, Direction::FromClient, Some(10), &seed_map())
}

const NONE: u32 = Verdict::IMPLICIT_DENY;

#[test]
fn seed_vpn_filter() {
    let rules = [
        Rule::permit().protocol(1).src_sgt(10).dst_sgt(20),
        Rule::permit()
            .protocol(6)
            .src_sgt(10)
            .dst_sgt(20)
            .dst_port(PortMatch::Eq(443)),
        Rule::deny().log(),
    ];
    let acl = CompiledAcl::new(rules.to_vec()).unwrap();
    let map = seed_map();
    let v = acl.evaluate(
        &tcp(CLIENT, SERVER, 40000, 443),
        Direction::FromClient,
        Some(10),
        (&map).into(),
    );
    assert_eq!(
        v,
        Verdict {
            action: Action::Permit,
            log: false,
            rule: 1
        }
    );
    let v = acl.evaluate(
        &tcp(CLIENT, SERVER, 40000, 22),
        Direction::FromClient,
        Some(10),
        (&map).into(),
    );
    assert_eq!(
        v,
        Verdict {
            action: Action::Deny,
            log: true,
            rule: 2
        }
    );
    let ping = PacketMeta::icmp(ip(CLIENT), ip(SERVER), 8);
    assert_eq!(from_client(&rules, ping), 0);
    // Other session SGT: only the deny.
    assert_eq!(hit(&rules, ping, Direction::FromClient, Some(11), &map), 2);
    assert_eq!(hit(&rules, ping, Direction::FromClient, None, &map), 2);
}

#[test]
fn first_match_wins_and_implicit_deny() {
    let rules = [
        Rule::deny().protocol(6).dst_port(PortMatch::Eq(23)),
        Rule::permit().protocol(6),
        Rule::deny().protocol(6).dst_port(PortMatch::Eq(80)),
    ];
    assert_eq!(from_client(&rules, tcp(CLIENT, SERVER, 1, 23)), 0);
    assert_eq!(
        from_client(&rules, tcp(CLIENT, SERVER, 1, 80)),
        1,
        "earlier permit wins"
    );
    assert_eq!(from_client(&rules, udp(CLIENT, SERVER, 1, 80)), NONE);
    let acl = CompiledAcl::new(rules.to_vec()).unwrap();
    let v = acl.evaluate(
        &udp(CLIENT, SERVER, 1, 80),
        Direction::FromClient,
        None,
        (&seed_map()).into(),
    );
    assert_eq!(v, Verdict::implicit_deny());
    assert!(!v.is_permit());
    // An empty ACL denies everything.
    assert_eq!(from_client(&[], tcp(CLIENT, SERVER, 1, 2)), NONE);
}

#[test]
fn protocol_match() {
    let rules = [
        Rule::permit().protocol(17),
        Rule::permit().protocol(47),
        Rule::permit().protocol(58),
    ];
    assert_eq!(from_client(&rules, udp(CLIENT, SERVER, 1, 2)), 0);
    assert_eq!(
        from_client(&rules, PacketMeta::ip(ip(CLIENT), ip(SERVER), 47)),
        1
    );
    assert_eq!(
        from_client(
            &rules,
            PacketMeta::icmp(ip("fd00::1"), ip("fd00:1::5"), 128)
        ),
        2
    );
    assert_eq!(from_client(&rules, tcp(CLIENT, SERVER, 1, 2)), NONE);
    // `ip` matches any protocol, v4 and v6.
    let any = [Rule::permit()];
    assert_eq!(
        from_client(&any, PacketMeta::ip(ip(CLIENT), ip(SERVER), 50)),
        0
    );
    assert_eq!(
        from_client(&any, PacketMeta::ip(ip("fd00::1"), ip("fd00::2"), 50)),
        0
    );
}

#[test]
fn addresses_v4_v6_any4_any6() {
    let rules = [
        Rule::permit()
            .src(net("198.18.100.0/24"))
            .dst(net("198.18.1.0/28")),
        Rule::permit()
            .src(net("fd00:100::/64"))
            .dst(NetMatch::host(ip("fd00:1::10"))),
        Rule::deny().src(NetMatch::Any4),
        Rule::deny().dst(NetMatch::Any6),
    ];
    assert_eq!(from_client(&rules, tcp(CLIENT, SERVER, 1, 2)), 0);
    assert_eq!(from_client(&rules, tcp(CLIENT, "198.18.1.16", 1, 2)), 2);
    assert_eq!(from_client(&rules, tcp("198.18.101.1", SERVER, 1, 2)), 2);
    assert_eq!(
        from_client(&rules, tcp("fd00:100::5", "fd00:1::10", 1, 2)),
        1
    );
    assert_eq!(
        from_client(&rules, tcp("fd00:100::5", "fd00:1::11", 1, 2)),
        3
    );
    assert_eq!(
        from_client(&rules, tcp("fd00:101::5", "fd00:1::10", 1, 2)),
        3
    );
    // A v4 prefix never matches a v6 packet whose low bits look the same.
    let v4only = [Rule::permit().src(net("0.0.0.0/0"))];
    assert_eq!(from_client(&v4only, tcp("::c612:640a", "::1", 1, 2)), NONE);
    assert_eq!(from_client(&v4only, tcp(CLIENT, SERVER, 1, 2)), 0);
    // Host bits in a rule's prefix are ignored.
    let hb = [Rule::permit().dst(net("198.18.1.7/24"))];
    assert_eq!(from_client(&hb, tcp(CLIENT, SERVER, 1, 2)), 0);
    // any4 source with any6 destination can never match.
    let mixed = [Rule::permit().src(NetMatch::Any4).dst(NetMatch::Any6)];
    assert_eq!(from_client(&mixed, tcp(CLIENT, SERVER, 1, 2)), NONE);
    assert_eq!(from_client(&mixed, tcp("fd00::1", "fd00::2", 1, 2)), NONE);
}

#[test]
fn ports_all_operators() {
    let cases: &[(PortMatch, &[(u16, bool)])] = &[
        (PortMatch::Eq(443), &[(443, true), (444, false), (0, false)]),
        (
            PortMatch::Neq(53),
            &[(53, false), (52, true), (65535, true)],
        ),
        (
            PortMatch::Lt(1024),
            &[(1023, true), (1024, false), (0, true)],
        ),
        (PortMatch::Lt(0), &[(0, false), (1, false)]),
        (
            PortMatch::Gt(1023),
            &[(1024, true), (1023, false), (65535, true)],
        ),
        (PortMatch::Gt(65535), &[(65535, false)]),
        (
            PortMatch::Range(1000, 2000),
            &[
                (999, false),
                (1000, true),
                (1500, true),
                (2000, true),
                (2001, false),
            ],
        ),
        (PortMatch::Range(0, 65535), &[(0, true), (65535, true)]),
    ];
    for &(pm, probes) in cases {
        for &(port, want) in probes {
            let dst = [Rule::permit().protocol(6).dst_port(pm)];
            let got = from_client(&dst, tcp(CLIENT, SERVER, 5555, port)) == 0;
            assert_eq!(got, want, "dst {pm:?} vs {port}");
            let src = [Rule::permit().protocol(17).src_port(pm)];
            let got = from_client(&src, udp(CLIENT, SERVER, port, 5555)) == 0;
            assert_eq!(got, want, "src {pm:?} vs {port}");
            assert_eq!(pm.matches(port), want);
        }
    }
    // Both ports at once.
    let both = [Rule::permit()
        .protocol(17)
        .src_port(PortMatch::Gt(1023))
        .dst_port(PortMatch::Eq(53))];
    assert_eq!(from_client(&both, udp(CLIENT, SERVER, 5000, 53)), 0);
    assert_eq!(from_client(&both, udp(CLIENT, SERVER, 500, 53)), NONE);
    assert_eq!(from_client(&both, udp(CLIENT, SERVER, 5000, 54)), NONE);
    // A reversed range is refused at compile time.
    assert!(CompiledAcl::new(vec![Rule::permit().dst_port(PortMatch::Range(2, 1))]).is_err());
    assert!(CompiledAcl::new(vec![Rule::permit().dst(net("10.0.0.0/33"))]).is_err());
}

#[test]
fn port_rules_need_ports() {
    // A port rule without a protocol still needs a packet with ports.
    let rules = [Rule::deny().dst_port(PortMatch::Neq(1)), Rule::permit()];
    assert_eq!(
        from_client(&rules, PacketMeta::ip(ip(CLIENT), ip(SERVER), 47)),
        1
    );
    assert_eq!(
        from_client(&rules, PacketMeta::icmp(ip(CLIENT), ip(SERVER), 8)),
        1
    );
    assert_eq!(from_client(&rules, tcp(CLIENT, SERVER, 1, 2)), 0);
}

#[test]
fn later_fragments_match_only_rules_without_ports() {
    let rules = [
        Rule::deny().protocol(6).dst_port(PortMatch::Eq(23)),
        Rule::permit().protocol(1).icmp_type(8),
        Rule::permit().protocol(6).src_sgt(10).dst_sgt(20),
        Rule::deny(),
    ];
    let frag = tcp(CLIENT, SERVER, 40000, 23).as_later_fragment();
    assert!(frag.is_later_fragment() && frag.ports().is_none());
    assert_eq!(from_client(&rules, tcp(CLIENT, SERVER, 40000, 23)), 0);
    assert_eq!(from_client(&rules, frag), 2, "skips the port rule");
    let ping_frag = PacketMeta::icmp(ip(CLIENT), ip(SERVER), 8).as_later_fragment();
    assert_eq!(
        from_client(&rules, ping_frag),
        3,
        "no ICMP type in a later fragment"
    );
}

#[test]
fn icmp_types() {
    let rules = [
        Rule::permit().protocol(1).icmp_type(8),
        Rule::permit().protocol(1).icmp_type(0),
        Rule::permit().protocol(58).icmp_type(128),
        Rule::deny().protocol(1),
    ];
    let v4 = |t| PacketMeta::icmp(ip(CLIENT), ip(SERVER), t);
    assert_eq!(from_client(&rules, v4(8)), 0);
    assert_eq!(from_client(&rules, v4(0)), 1);
    assert_eq!(from_client(&rules, v4(3)), 3);
    let v6 = |t| PacketMeta::icmp(ip("fd00::1"), ip("fd00:1::5"), t);
    assert_eq!(from_client(&rules, v6(128)), 2);
    assert_eq!(
        from_client(&rules, v6(8)),
        NONE,
        "ICMPv6 type 8 is not ICMP echo"
    );
    assert_eq!(from_client(&rules, v6(129)), NONE);
}

#[test]
fn security_groups_match_mismatch_and_unknown() {
    let map = seed_map();
    let rules = [
        Rule::permit().src_sgt(10).dst_sgt(20),
        Rule::permit().src_sgt(11),
        Rule::deny().dst_sgt(30),
        Rule::permit().dst(net("203.0.113.0/24")),
    ];
    let to = |dst| tcp(CLIENT, dst, 40000, 443);
    let fc = |p, sgt| hit(&rules, p, Direction::FromClient, sgt, &map);
    assert_eq!(fc(to(SERVER), Some(10)), 0, "10 -> 20");
    assert_eq!(
        fc(to("198.18.2.9"), Some(10)),
        2,
        "10 -> 30: dst tag mismatch, then deny"
    );
    assert_eq!(fc(to(SERVER), Some(11)), 1, "src tag only");
    assert_eq!(fc(to(SERVER), Some(12)), NONE);
    // No binding for the destination: no SGT, so rules naming one never match.
    assert_eq!(fc(to("203.0.113.9"), Some(10)), 3);
    assert_eq!(fc(to("192.0.2.1"), Some(10)), NONE);
    // A session without an SGT matches only rules without a source SGT.
    assert_eq!(fc(to(SERVER), None), NONE);
    assert_eq!(fc(to("198.18.2.9"), None), 2);
    // SGT 0 is a tag like any other here.
    let zero = [Rule::permit().src_sgt(0)];
    assert_eq!(
        hit(&zero, to(SERVER), Direction::FromClient, Some(0), &map),
        0
    );
    assert_eq!(
        hit(&zero, to(SERVER), Direction::FromClient, None, &map),
        NONE
    );
    // IPv6 destination binding.
    let v6 = tcp("fd00:100::10", "fd00:1::5", 40000, 443);
    assert_eq!(fc(v6, Some(10)), 0);
}

/// The vpn-filter direction rule, exactly: for `ToClient` the rule's source side
/// (address, port, SGT = session SGT) is matched against the packet's
/// destination, its destination side (address, port, SGT from the map) against
/// the packet's source.
#[test]
fn direction_swaps_source_and_destination() {
    let map = seed_map();
    let rules = [Rule::permit()
        .protocol(6)
        .src_sgt(10)
        .src(net("198.18.100.0/24"))
        .src_port(PortMatch::Gt(1023))
        .dst_sgt(20)
        .dst(net("198.18.1.0/28"))
        .dst_port(PortMatch::Eq(443))];
    // Uplink: client 198.18.100.10:40000 -> server 198.18.1.5:443.
    let up = tcp(CLIENT, SERVER, 40000, 443);
    assert_eq!(hit(&rules, up, Direction::FromClient, Some(10), &map), 0);
    // Downlink reply: server 198.18.1.5:443 -> client 198.18.100.10:40000.
    let down = tcp(SERVER, CLIENT, 443, 40000);
    assert_eq!(hit(&rules, down, Direction::ToClient, Some(10), &map), 0);
    // The same reply classified as if it came from the client does not match:
    // source 198.18.1.5 is not in 198.18.100.0/24.
    assert_eq!(
        hit(&rules, down, Direction::FromClient, Some(10), &map),
        NONE
    );
    // Downlink from the server's port 443 to the client's port 80: the client
    // port (packet destination) must be > 1023.
    let bad = tcp(SERVER, CLIENT, 443, 80);
    assert_eq!(hit(&rules, bad, Direction::ToClient, Some(10), &map), NONE);
    // Downlink: the SGT map is consulted for the packet's source (the server).
    let unbound = tcp("198.18.1.20", CLIENT, 443, 40000);
    let open = [Rule::permit().src_sgt(10).dst_sgt(20)];
    assert_eq!(hit(&open, down, Direction::ToClient, Some(10), &map), 0);
    assert_eq!(
        hit(&open, unbound, Direction::ToClient, Some(10), &map),
        NONE
    );
    // ... and the session SGT is the packet destination's (the client's).
    assert_eq!(hit(&open, down, Direction::ToClient, Some(20), &map), NONE);
}

#[test]
fn log_flag_and_inactive_rules() {
    let rules = [
        Rule::permit().protocol(6).inactive(),
        Rule::deny().protocol(6).log(),
        Rule::permit().log(),
    ];
    let acl = CompiledAcl::new(rules.to_vec()).unwrap();
    let v = acl.evaluate(
        &tcp(CLIENT, SERVER, 1, 2),
        Direction::FromClient,
        None,
        (&seed_map()).into(),
    );
    assert_eq!((v.rule, v.action, v.log), (1, Action::Deny, true));
    let v = acl.evaluate(
        &udp(CLIENT, SERVER, 1, 2),
        Direction::FromClient,
        None,
        (&seed_map()).into(),
    );
    assert_eq!((v.rule, v.action, v.log), (2, Action::Permit, true));
    assert_eq!(acl.len(), 3);
    assert_eq!(
        from_client(&[Rule::permit().inactive()], tcp(CLIENT, SERVER, 1, 2)),
        NONE
    );
}

#[test]
fn counters_per_rule_and_implicit_deny() {
    let rules = vec![
        Rule::permit().protocol(6).dst_port(PortMatch::Eq(443)),
        Rule::permit().protocol(17),
        Rule::deny().protocol(1),
    ];
    for indexing in [Indexing::Linear, Indexing::Indexed] {
        let acl = CompiledAcl::with_indexing(rules.clone(), indexing).unwrap();
        let map = seed_map();
        // 150 packets: more than one batch, more distinct rules than... well, 4.
        let mut pkts = Vec::new();
        for i in 0..150u16 {
            pkts.push(match i % 5 {
                0 | 1 => tcp(CLIENT, SERVER, i, 443),
                2 => udp(CLIENT, SERVER, i, 53),
                3 => PacketMeta::icmp(ip(CLIENT), ip(SERVER), 8),
                _ => tcp(CLIENT, SERVER, i, 22),
            });
        }
        let mut out = vec![Verdict::default(); pkts.len()];
        acl.classify_batch(&pkts, Direction::FromClient, None, (&map).into(), &mut out);
        assert_eq!(acl.hit_counts(), vec![60, 30, 30, 30]);
        assert_eq!(acl.implicit_deny_hits(), 30);
        assert_eq!(acl.hits(99), 0);
        // A short `out` classifies only that many packets.
        let mut short = [Verdict::default(); 2];
        acl.classify_batch(
            &pkts,
            Direction::FromClient,
            None,
            (&map).into(),
            &mut short,
        );
        assert_eq!(acl.hits(0), 62);
        acl.clear_counters();
        assert_eq!(acl.hit_counts(), vec![0; 4]);
    }
}

#[test]
fn tally_overflow_counts_everything() {
    // 40 rules, one packet per rule in one batch: more distinct rules than the
    // local tally holds.
    let rules: Vec<Rule> = (0..40)
        .map(|p| Rule::permit().protocol(6).dst_port(PortMatch::Eq(p)))
        .collect();
    let acl = CompiledAcl::new(rules).unwrap();
    assert!(acl.is_indexed());
    let pkts: Vec<_> = (0..64u16).map(|i| tcp(CLIENT, SERVER, 1, i % 40)).collect();
    let mut out = vec![Verdict::default(); 64];
    acl.classify_batch(
        &pkts,
        Direction::FromClient,
        None,
        (&SgtMap::default()).into(),
        &mut out,
    );
    let c = acl.hit_counts();
    assert_eq!(c.iter().sum::<u64>(), 64);
    assert!(c[..24].iter().all(|&n| n == 2) && c[24..40].iter().all(|&n| n == 1));
}

// ------------------------------------------------------------------ property

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const V4_ADDRS: &[&str] = &[
    "198.18.100.10",
    "198.18.100.11",
    "198.18.1.5",
    "198.18.1.20",
    "198.18.2.9",
    "10.1.2.3",
    "10.1.9.9",
    "203.0.113.7",
];
const V6_ADDRS: &[&str] = &[
    "fd00:100::10",
    "fd00:1::5",
    "fd00:1::10",
    "fd00:2::1",
    "2001:db8::1",
];
const NETS: &[&str] = &[
    "198.18.100.0/24",
    "198.18.1.0/28",
    "198.18.0.0/16",
    "10.1.2.3/32",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "fd00::/16",
    "fd00:1::/64",
    "fd00:100::10/128",
    "::/0",
];
const PORTS: &[u16] = &[0, 1, 22, 53, 80, 443, 1023, 1024, 40000, 65535];
const SGTS: &[u16] = &[10, 11, 20, 30];

fn random_net(r: &mut Rng) -> NetMatch {
    match r.below(6) {
        0 => NetMatch::Any4,
        1 => NetMatch::Any6,
        2 | 3 => NetMatch::Any,
        _ => net(r.pick(NETS)),
    }
}

fn random_port(r: &mut Rng) -> PortMatch {
    let (a, b) = (r.pick(PORTS), r.pick(PORTS));
    match r.below(5) {
        0 => PortMatch::Eq(a),
        1 => PortMatch::Neq(a),
        2 => PortMatch::Lt(a),
        3 => PortMatch::Gt(a),
        _ => PortMatch::Range(a.min(b), a.max(b)),
    }
}

fn random_rule(r: &mut Rng) -> Rule {
    let mut rule = Rule::new(if r.chance(50) {
        Action::Permit
    } else {
        Action::Deny
    });
    rule.protocol = r.pick(&[None, None, Some(6), Some(17), Some(1), Some(58), Some(47)]);
    if r.chance(50) {
        rule.src_sgt = Some(r.pick(SGTS));
    }
    if r.chance(50) {
        rule.dst_sgt = Some(r.pick(SGTS));
    }
    if r.chance(40) {
        rule.src = random_net(r);
    }
    if r.chance(40) {
        rule.dst = random_net(r);
    }
    if matches!(rule.protocol, Some(6 | 17)) || r.chance(5) {
        if r.chance(30) {
            rule.src_port = Some(random_port(r));
        }
        if r.chance(60) {
            rule.dst_port = Some(random_port(r));
        }
    }
    if matches!(rule.protocol, Some(1 | 58)) && r.chance(60) {
        rule.icmp_type = Some(r.pick(&[0, 8, 3, 128, 129]));
    }
    rule.log = r.chance(20);
    rule.inactive = r.chance(5);
    rule
}

fn random_packet(r: &mut Rng) -> PacketMeta {
    let v6 = r.chance(30);
    let (s, d) = if v6 {
        (r.pick(V6_ADDRS), r.pick(V6_ADDRS))
    } else {
        (r.pick(V4_ADDRS), r.pick(V4_ADDRS))
    };
    let (s, d) = (ip(s), ip(d));
    let p = match r.below(6) {
        0 | 1 => PacketMeta::with_ports(s, d, 6, r.pick(PORTS), r.pick(PORTS)),
        2 => PacketMeta::with_ports(s, d, 17, r.pick(PORTS), r.pick(PORTS)),
        3 => PacketMeta::icmp(s, d, r.pick(&[0, 8, 3, 128, 129])),
        4 => PacketMeta::ip(s, d, r.pick(&[47, 50, 1, 6])),
        _ => PacketMeta::ip(s, d, 47),
    };
    if r.chance(10) {
        p.as_later_fragment()
    } else {
        p
    }
}

/// The ACL semantics written out naively, from the public fields only.
fn reference(
    rules: &[Rule],
    p: &PacketMeta,
    dir: Direction,
    session_sgt: Option<u16>,
    map: &SgtMap,
    sessions: &[(IpAddr, u16)],
) -> Option<usize> {
    let (client, remote, ports) = match dir {
        Direction::FromClient => (p.src(), p.dst(), p.ports()),
        Direction::ToClient => (p.dst(), p.src(), p.ports().map(|(s, d)| (d, s))),
    };
    // A session's own address first (the last binding of it counts), then
    // the longest prefix.
    let remote_sgt = match sessions.iter().rev().find(|(a, _)| *a == remote) {
        Some(&(_, t)) => Some(t),
        None => map.lookup(remote),
    };
    let addr_ok = |n: NetMatch, a: IpAddr| match (n, a) {
        (NetMatch::Any, _) => true,
        (NetMatch::Any4, a) => a.is_ipv4(),
        (NetMatch::Any6, a) => a.is_ipv6(),
        (NetMatch::V4(net, len), IpAddr::V4(a)) => {
            len == 0 || (u32::from(net) ^ u32::from(a)) >> (32 - u32::from(len)) == 0
        }
        (NetMatch::V6(net, len), IpAddr::V6(a)) => {
            len == 0 || (u128::from(net) ^ u128::from(a)) >> (128 - u32::from(len)) == 0
        }
        _ => false,
    };
    rules.iter().position(|r| {
        !r.inactive
            && r.protocol.is_none_or(|x| x == p.proto())
            && addr_ok(r.src, client)
            && addr_ok(r.dst, remote)
            && r.src_sgt.is_none_or(|t| session_sgt == Some(t))
            && r.dst_sgt.is_none_or(|t| remote_sgt == Some(t))
            && r.src_port
                .is_none_or(|m| ports.is_some_and(|(c, _)| m.matches(c)))
            && r.dst_port
                .is_none_or(|m| ports.is_some_and(|(_, s)| m.matches(s)))
            && r.icmp_type.is_none_or(|t| p.icmp_type() == Some(t))
    })
}

#[test]
fn randomized_against_reference() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..300 {
        let n = r.pick(&[0, 1, 3, 10, 17, 40, 120]);
        let rules: Vec<Rule> = (0..n).map(|_| random_rule(&mut r)).collect();
        let mut b = SgtMapBuilder::new();
        for _ in 0..r.below(8) {
            b.insert(
                ip(r.pick(V4_ADDRS)),
                r.pick(&[8, 16, 24, 28, 32]),
                r.pick(SGTS),
                Source::Sxp,
            )
            .unwrap();
            b.insert(
                ip(r.pick(V6_ADDRS)),
                r.pick(&[16, 32, 64, 128]),
                r.pick(SGTS),
                Source::Static,
            )
            .unwrap();
        }
        let map = b.build();
        // Session hosts, some of them inside (or equal to) the map's prefixes.
        let sessions: Vec<(IpAddr, u16)> = (0..r.below(4))
            .map(|_| {
                let a = if r.chance(50) {
                    r.pick(V4_ADDRS)
                } else {
                    r.pick(V6_ADDRS)
                };
                (ip(a), r.pick(SGTS))
            })
            .collect();
        let session_sgts = SessionSgts::from_bindings(sessions.iter().copied());
        let sgts = SgtResolver::new(&map, &session_sgts);
        let lin = CompiledAcl::with_indexing(rules.clone(), Indexing::Linear).unwrap();
        let idx = CompiledAcl::with_indexing(rules.clone(), Indexing::Indexed).unwrap();
        let dir = if r.chance(50) {
            Direction::FromClient
        } else {
            Direction::ToClient
        };
        let sgt = r.pick(&[None, Some(10), Some(11), Some(20)]);
        let pkts: Vec<PacketMeta> = (0..r.pick(&[1, 7, 64, 100]))
            .map(|_| random_packet(&mut r))
            .collect();
        let mut out_lin = vec![Verdict::default(); pkts.len()];
        let mut out_idx = vec![Verdict::default(); pkts.len()];
        lin.classify_batch(&pkts, dir, sgt, sgts, &mut out_lin);
        idx.classify_batch(&pkts, dir, sgt, sgts, &mut out_idx);
        let mut want_hits = vec![0u64; n + 1];
        for (i, p) in pkts.iter().enumerate() {
            let want = reference(&rules, p, dir, sgt, &map, &sessions);
            want_hits[want.unwrap_or(n)] += 1;
            let want = match want {
                Some(k) => Verdict {
                    action: rules[k].action,
                    log: rules[k].log,
                    rule: k as u32,
                },
                None => Verdict::implicit_deny(),
            };
            assert_eq!(
                out_lin[i], want,
                "round {round} linear, packet {p:?}, rules {rules:#?}"
            );
            assert_eq!(
                out_idx[i], want,
                "round {round} indexed, packet {p:?}, rules {rules:#?}"
            );
        }
        assert_eq!(lin.hit_counts(), want_hits);
        assert_eq!(idx.hit_counts(), want_hits);
    }
}

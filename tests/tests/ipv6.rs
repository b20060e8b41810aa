//! End-to-end tests of IPv6 inside the tunnel (dual stack, as an ASA does it): stock
//! openconnect on the lab's tunnel group LOCAL-DUAL (group policy GP-DUAL with
//! `ipv6-address-pools value VPN-POOL6`, split list SPLIT-DUAL with fd00:1::/64) gets an
//! IPv6 address from `ipv6 local pool VPN-POOL6 fd00:100::10/64 200` next to its IPv4
//! address, and reaches the inside host fd00:1::10 through the tunnel over DTLS and
//! CSTP. LOCAL-PW stays IPv4 only. Deadlines are hang guards, never speed assertions.

use std::net::Ipv6Addr;
use std::time::Duration;

use e2e::lab::{
    self, AUTHGROUP, AUTHGROUP_DUAL, HANG_GUARD, INSIDE_HOST, INSIDE_HOST6, POOL6_PREFIX_LEN,
    SPLIT_INCLUDE, SPLIT_INCLUDE6,
};
use e2e::sessiondb::{field, session_of};
use e2e::{Client, Lab, cmd, wait_until};

fn lab_with_headend(clients: usize) -> Option<Lab> {
    let lab = Lab::with_clients(clients)?;
    lab.start_headend();
    Some(lab)
}

/// Connects `user` from client namespace `host` on LOCAL-DUAL.
fn connect_dual(lab: &Lab, host: usize, user: &str, extra: &[&str]) -> Client {
    lab.connect_in_group(host, user, lab.password(user), AUTHGROUP_DUAL, extra)
}

/// The client's IPv6 tunnel address: in VPN-POOL6, with the pool's prefix length.
fn assert_v6_from_pool(client: &Client) -> Ipv6Addr {
    // The script adds the v6 address right after the v4 one; wait for it.
    let (addr, len) = wait_until(HANG_GUARD, || client.tun_addr6()).unwrap_or_else(|| {
        panic!(
            "no global IPv6 address on {} after {HANG_GUARD:?}; openconnect output:\n{}",
            client.ifname(),
            client.output()
        )
    });
    assert!(
        lab::in_pool6(addr),
        "assigned {addr} is outside VPN-POOL6 fd00:100::10-fd00:100::d7"
    );
    assert_eq!(len, POOL6_PREFIX_LEN, "{addr}/{len}: want the pool's /64");
    addr
}

fn assert_ping6(lab: &Lab, host: usize, what: &str) {
    assert!(
        lab::wait_ping6(&lab.client_host(host).ns, INSIDE_HOST6, HANG_GUARD).is_some(),
        "{what}: no ping -6 reply from {INSIDE_HOST6} through the tunnel from {} after \
         {HANG_GUARD:?}",
        lab.client_host(host).ns
    );
}

/// `drop-spoofed-source` of `headend show counters`.
fn spoofed_drops(lab: &Lab) -> u64 {
    let raw = lab.show_counters_raw();
    raw.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "drop-spoofed-source").then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no drop-spoofed-source in show counters:\n{raw}"))
}

/// Dual stack over DTLS: a v6 address from the pool (addr/64 on the TUN), the v6 split
/// route, `ping -6` to the inside host while the downlink runs over DTLS, IPv4 still
/// works, and `show vpn-sessiondb` has ASA's `Assigned IPv6` line.
#[test]
fn dual_stack_address_route_and_ping_over_dtls() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let client = connect_dual(&lab, 0, "alice", &[]);
    let v4 = client.tun_addr().expect("tunnel IPv4 address");
    assert!(lab::in_pool(v4), "assigned {v4} is outside VPN-POOL");
    let v6 = assert_v6_from_pool(&client);
    println!("openconnect tunnel addresses: {v4} + {v6}/{POOL6_PREFIX_LEN}");
    assert!(
        wait_until(HANG_GUARD, || client
            .has_route6(SPLIT_INCLUDE6)
            .then_some(()))
        .is_some(),
        "no IPv6 route {SPLIT_INCLUDE6} via {}: {:?}",
        client.ifname(),
        client.routes6()
    );
    assert!(client.has_route(SPLIT_INCLUDE), "{:?}", client.routes());
    println!(
        "IPv6 routes via {}: {:?}",
        client.ifname(),
        client.routes6()
    );
    let route = lab.exec_client(&["ip", "-6", "route", "get", &INSIDE_HOST6.to_string()]);
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    assert!(
        route.contains(&format!("dev {} ", client.ifname())),
        "{INSIDE_HOST6} is not routed through {}: {route}",
        client.ifname()
    );

    // DTLS first, so the pings below cross it.
    assert!(
        wait_until(HANG_GUARD, || (client.dtls_established_count() > 0)
            .then_some(()))
        .is_some(),
        "DTLS never came up:\n{}",
        client.output()
    );
    assert_ping6(&lab, 0, "over DTLS");
    assert!(lab.ping6_from(0, INSIDE_HOST6), "ping -6 {INSIDE_HOST6}");
    assert!(lab.ping_from_client(INSIDE_HOST), "IPv4 next to IPv6");

    let raw = lab.show_sessions_raw();
    println!("headend show vpn-sessiondb:\n{raw}");
    let sessions = e2e::sessiondb::parse(&raw);
    let s = session_of(&sessions, "alice").expect("alice's session");
    assert_eq!(field(s, "Assigned IP"), v4.to_string(), "{raw}");
    assert_eq!(field(s, "Assigned IPv6"), v6.to_string(), "{raw}");
    assert_eq!(field(s, "Tunnel Group"), AUTHGROUP_DUAL, "{raw}");
    assert!(
        field(s, "Protocol").contains("DTLS-Tunnel"),
        "downlink not over DTLS while pinging:\n{raw}"
    );
    lab.assert_headend_running();
}

/// Dual stack over CSTP only (`--no-dtls`): `ping -6` goes through the TLS tunnel.
#[test]
fn ipv6_ping_over_cstp_with_no_dtls() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let client = connect_dual(&lab, 0, "alice", &["--no-dtls"]);
    assert_v6_from_pool(&client);
    assert_ping6(&lab, 0, "over CSTP");
    let raw = lab.show_sessions_raw();
    let sessions = e2e::sessiondb::parse(&raw);
    let s = session_of(&sessions, "alice").expect("alice's session");
    assert_eq!(
        field(s, "Protocol"),
        "AnyConnect-Parent SSL-Tunnel",
        "{raw}"
    );
    assert!(
        s.contains_key("Assigned IPv6"),
        "no Assigned IPv6 line:\n{raw}"
    );
    println!("ping -6 {INSIDE_HOST6} over CSTP: ok\n{raw}");
    lab.assert_headend_running();
}

/// Two dual-stack clients at once get different IPv6 addresses, and both reach the
/// inside host over IPv6 (the downlink sorts v6 packets to the right session).
#[test]
fn second_client_gets_a_different_ipv6_address() {
    let Some(lab) = lab_with_headend(2) else {
        return;
    };
    let alice = connect_dual(&lab, 0, "alice", &[]);
    let bob = connect_dual(&lab, 1, "bob", &[]);
    let a = assert_v6_from_pool(&alice);
    let b = assert_v6_from_pool(&bob);
    assert_ne!(a, b, "both clients got {a}");
    println!("alice {a}, bob {b}");
    assert_ping6(&lab, 0, "alice");
    assert_ping6(&lab, 1, "bob");
    let sessions = lab.show_sessions();
    for (user, addr) in [("alice", a), ("bob", b)] {
        let s = session_of(&sessions, user).unwrap_or_else(|| panic!("no {user}"));
        assert_eq!(field(s, "Assigned IPv6"), addr.to_string(), "{s:?}");
    }
    lab.assert_headend_running();
}

/// Anti-spoofing for IPv6: the client adds a second pool address to its TUN and pings
/// from it; the headend drops those packets (counted in `drop-spoofed-source`) and the
/// session's own address still works.
#[test]
fn spoofed_ipv6_source_is_dropped_and_counted() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let client = connect_dual(&lab, 0, "alice", &["--no-dtls"]);
    let mine = assert_v6_from_pool(&client);
    assert_ping6(&lab, 0, "own address");
    // Another address of the pool, not this session's.
    let spoofed: Ipv6Addr = if mine == Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x99) {
        Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x98)
    } else {
        Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x99)
    };
    let add = lab.exec_client(&[
        "ip",
        "-6",
        "addr",
        "add",
        &format!("{spoofed}/128"),
        "dev",
        client.ifname(),
        "nodad",
    ]);
    assert!(add.status.success(), "ip addr add: {}", cmd::combined(&add));

    let before = spoofed_drops(&lab);
    assert!(
        !lab::ping6(client.ns(), INSIDE_HOST6, Some(spoofed)),
        "a ping from the spoofed source {spoofed} got an answer"
    );
    // The three echo requests reached the headend and were dropped there.
    let after = wait_until(HANG_GUARD, || {
        let n = spoofed_drops(&lab);
        (n >= before + 3).then_some(n)
    })
    .unwrap_or_else(|| {
        panic!(
            "drop-spoofed-source went from {before} to {} after 3 spoofed pings:\n{}",
            spoofed_drops(&lab),
            lab.show_counters_raw()
        )
    });
    println!(
        "drop-spoofed-source: {before} -> {after} after 3 pings from {spoofed}\n{}",
        lab.show_counters_raw()
    );
    assert!(
        lab::ping6(client.ns(), INSIDE_HOST6, Some(mine)),
        "the session's own address {mine} stopped working"
    );
    lab.assert_headend_running();
}

/// No IPv6 where none is configured or asked for: LOCAL-PW (no IPv6 pool) and
/// LOCAL-DUAL with `openconnect --disable-ipv6` (`X-CSTP-Address-Type: IPv4`) get IPv4
/// only, and `show vpn-sessiondb` has no `Assigned IPv6` line.
#[test]
fn no_ipv6_without_a_pool_or_when_the_client_declines() {
    let Some(lab) = lab_with_headend(2) else {
        return;
    };
    let alice = lab.connect_in_group(0, "alice", lab.password("alice"), AUTHGROUP, &[]);
    let bob = connect_dual(&lab, 1, "bob", &["--disable-ipv6"]);
    for c in [&alice, &bob] {
        assert!(c.tun_addr().is_some_and(lab::in_pool));
        assert_eq!(c.tun_addr6(), None, "{} got IPv6", c.user());
        assert!(
            !c.output().contains("IP6") && !c.output().contains("fd00:"),
            "{} was sent IPv6 settings:\n{}",
            c.user(),
            c.output()
        );
    }
    assert!(lab.ping_from(0, INSIDE_HOST));
    assert!(lab.ping_from(1, INSIDE_HOST));
    let raw = lab.show_sessions_raw();
    println!("{raw}");
    assert_eq!(e2e::sessiondb::parse(&raw).len(), 2, "{raw}");
    assert!(!raw.contains("Assigned IPv6"), "{raw}");
    lab.assert_headend_running();
}

/// The TCP connection dies (`ss -K` in the headend namespace); openconnect reconnects
/// with its cookie and gets the same IPv6 address (openconnect itself quits with
/// "Reconnect gave different IPv6 address" otherwise), and `ping -6` works again.
#[test]
fn reconnect_with_the_same_cookie_keeps_the_ipv6_address() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = connect_dual(&lab, 0, "alice", &["--no-dtls"]);
    let v6 = assert_v6_from_pool(&client);
    assert_ping6(&lab, 0, "before the kill");
    let before = lab.client_tls_ports();
    assert!(!before.is_empty(), "no TLS connection to the headend");
    let client_ip = lab.client_host(0).ip.to_string();
    let kill = lab.exec_gw(&["ss", "-K", "-t", "-n", "dst", &client_ip]);
    assert!(kill.status.success(), "ss -K: {}", cmd::combined(&kill));
    let reconnected = wait_until(Duration::from_secs(60), || {
        lab.client_tls_ports()
            .into_iter()
            .find(|p| !before.contains(p))
    });
    assert!(
        reconnected.is_some(),
        "no new TLS connection after the kill:\n{}",
        client.output()
    );
    assert_ping6(&lab, 0, "after the reconnect");
    assert!(
        client.is_running(),
        "openconnect exited:\n{}",
        client.output()
    );
    assert_eq!(client.tun_addr6(), Some((v6, POOL6_PREFIX_LEN)));
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(field(&sessions[0], "Assigned IPv6"), v6.to_string());
    println!("IPv6 address {v6} kept across the reconnect");
    lab.assert_headend_running();
}

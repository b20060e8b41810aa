//! End-to-end TrustSec enforcement (asa-aaa.md section 4), the seed set-up in the lab:
//! FreeRADIUS (ISE's stand-in) tags alice with SGT 10 and Filter-Id VPN-FILTER and bob
//! with SGT 11 (bob's group policy names the same vpn-filter); the inside host
//! 198.18.1.10 is tagged 20 by `cts role-based sgt-map 198.18.1.0/28 sgt 20`; an SXP
//! speaker on 198.18.1.30 (sxpd's bytes, TCP-MD5 signed) tags more addresses; the
//! clients are stock openconnect. VPN-FILTER is the seed's:
//!
//! ```text
//! access-list VPN-FILTER extended permit icmp security-group tag 10 any security-group tag 20 any
//! access-list VPN-FILTER extended permit tcp security-group tag 10 any security-group tag 20 any eq 443
//! access-list VPN-FILTER extended deny ip any any log
//! ```
//!
//! A packet the filter drops never reaches the other side: the inside service records
//! every connection it accepted, so "denied" is asserted as "the service never saw this
//! client" plus the headend's own counters (`show access-list` hit counts, the
//! session's `Pkts Rx/Tx Drop`), not as a timing. Deadlines are hang guards.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use e2e::lab::{self, HANG_GUARD, INSIDE_HOST};
use e2e::radius::{RadiusLab, RadiusSetup, RadiusUser};
use e2e::service::{self, TcpService};
use e2e::sessiondb::field;
use e2e::sxp::{self, SXP_SPEAKER, SxpSpeaker};
use e2e::{Client, Lab, wait_until};

/// The TCP port VPN-FILTER permits from SGT 10 to SGT 20.
const PERMITTED_PORT: u16 = 443;
/// A port it does not.
const OTHER_PORT: u16 = 8080;
/// An inside address no static binding covers (outside 198.18.1.0/28): only SXP tags it.
const SXP_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 40);
/// How long a connection attempt that the filter should drop is given. Not a speed
/// assertion: denial is proven by the service never accepting and by the counters.
const DROPPED_SYN_WAIT: Duration = Duration::from_secs(3);

const SXP_PASSWORD: &str = "lab-sxp-md5-key";

fn policy_config() -> String {
    format!(
        "\
access-list VPN-FILTER extended permit icmp security-group tag 10 any security-group tag 20 any
access-list VPN-FILTER extended permit tcp security-group tag 10 any security-group tag 20 any eq {PERMITTED_PORT}
access-list VPN-FILTER extended deny ip any any log
!
cts role-based sgt-map 198.18.1.0/28 sgt 20
cts sxp enable
cts sxp default password {SXP_PASSWORD}
cts sxp listener hold-time 9 12
cts sxp connection peer {SXP_SPEAKER} password default mode local listener
!
{}",
        e2e::radius::tunnel_group_config(Some("VPN-FILTER"))
    )
}

fn start(clients: usize) -> Option<RadiusLab> {
    RadiusLab::start(RadiusSetup {
        clients,
        config: policy_config(),
        ..RadiusSetup::default()
    })
}

/// The inside services: the permitted and another port on the inside host.
struct Inside {
    permitted: TcpService,
    other: TcpService,
}

fn inside_services(lab: &Lab, host: Ipv4Addr) -> Inside {
    let at = |port| SocketAddr::new(IpAddr::V4(host), port);
    Inside {
        permitted: TcpService::start(lab.inside_ns(), at(PERMITTED_PORT)),
        other: TcpService::start(lab.inside_ns(), at(OTHER_PORT)),
    }
}

/// The client's TCP connection to `svc` gets through and the service greets it.
fn assert_tcp_passes(client: &Client, svc: &TcpService, what: &str) {
    let got = service::fetch_banner(client.ns(), svc.addr(), HANG_GUARD)
        .unwrap_or_else(|e| panic!("{what}: {} -> {}: {e}", client.user(), svc.addr()));
    assert_eq!(got, service::banner(svc.addr()), "{what}");
    let me = client.tun_addr().expect("tunnel address");
    assert!(
        svc.accepted().iter().any(|p| p.ip() == IpAddr::V4(me)),
        "{what}: {} accepted {:?}, not {me}",
        svc.addr(),
        svc.accepted()
    );
}

/// The client's TCP connection to `svc` is dropped on the way: the attempt fails and
/// the service accepts nothing new from the client's address.
fn assert_tcp_dropped(client: &Client, svc: &TcpService, what: &str) {
    let me = client.tun_addr().expect("tunnel address");
    let from_me = || {
        svc.accepted()
            .iter()
            .filter(|p| p.ip() == IpAddr::V4(me))
            .count()
    };
    let before = from_me();
    let r = service::fetch_banner(client.ns(), svc.addr(), DROPPED_SYN_WAIT);
    assert!(
        r.is_err(),
        "{what}: {} reached {}: {r:?}",
        client.user(),
        svc.addr()
    );
    assert_eq!(
        from_me(),
        before,
        "{what}: {} accepted a connection from {me}: {:?}",
        svc.addr(),
        svc.accepted()
    );
}

fn assert_ping_passes(client: &Client, ip: Ipv4Addr, what: &str) {
    assert!(
        lab::wait_ping(client.ns(), ip, HANG_GUARD).is_some(),
        "{what}: no ping reply from {ip} through {}'s tunnel after {HANG_GUARD:?}",
        client.user()
    );
}

fn assert_ping_dropped(client: &Client, ip: Ipv4Addr, what: &str) {
    assert!(
        !lab::ping(client.ns(), ip),
        "{what}: {} got a ping reply from {ip}",
        client.user()
    );
}

/// `(hitcnt=N)` of `line` (1-based; 0 = the implicit deny) of ACL `acl` in
/// `show access-list` output.
fn hitcnt(show: &str, acl: &str, line: usize) -> u64 {
    let prefix = if line == 0 {
        format!("access-list {acl} implicit deny ")
    } else {
        format!("access-list {acl} line {line} ")
    };
    let row = show
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{show}"));
    let n = row
        .split("(hitcnt=")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no hitcnt in {row:?}"));
    n.parse()
        .unwrap_or_else(|e| panic!("hitcnt {n:?} in {row:?}: {e}"))
}

fn drops(rl: &RadiusLab, user: &str) -> (u64, u64) {
    let s = rl.session(user);
    let n = |k| {
        field(&s, k)
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{k}: {e} in {s:?}"))
    };
    (n("Pkts Tx Drop"), n("Pkts Rx Drop"))
}

/// Polls `show WHAT` until `pred` holds; panics with the last output after the hang
/// guard.
fn wait_show(lab: &Lab, what: &[&str], desc: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait_until(HANG_GUARD, || {
        last = lab.show(what);
        pred(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "show {}: not {desc} after {HANG_GUARD:?}:\n{last}\n--- headend log ---\n{}",
            what.join(" "),
            lab::tail(&lab.headend_log(), 40)
        )
    })
}

const SGT_MAP: &[&str] = &["cts", "role-based", "sgt-map", "all"];
const SXP_CONNS: &[&str] = &["cts", "sxp", "connections"];

/// How many rows of `show cts role-based sgt-map all` came from SXP.
fn sxp_rows(map: &str) -> usize {
    map.lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("SXP"))
        .count()
}

/// The row of `addr` in `show cts role-based sgt-map all`: (SGT, source).
fn binding(map: &str, addr: &str) -> Option<(u16, String)> {
    map.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next()? != addr {
            return None;
        }
        Some((w.next()?.parse().ok()?, w.next()?.to_owned()))
    })
}

/// (1) SGT 10 reaches the SGT 20 host on the permitted port and with ping, not on
/// another port, and inside-originated traffic is filtered with the ACL mirrored (as
/// ASA applies vpn-filter to both directions); hit counts, drop counters and the `log`
/// line show it. `extra` picks the data channel (DTLS by default, or CSTP).
fn sgt10_reaches_sgt20(extra: &[&str]) {
    let Some(rl) = start(1) else { return };
    let lab = &rl.lab;
    let inside = inside_services(lab, INSIDE_HOST);
    let args = [&["--authgroup", "RADIUS-PW"][..], extra].concat();
    let mut alice = lab.spawn_client(0, "alice", lab.password("alice"), &args);
    alice
        .wait_connected(HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 60)));
    let me = alice.tun_addr().expect("alice's address");
    let s = rl.session("alice");
    assert_eq!(field(&s, "Security Grp"), "10", "{s:?}");
    assert_eq!(field(&s, "Filter Name"), "VPN-FILTER", "{s:?}");

    assert_ping_passes(&alice, INSIDE_HOST, "icmp 10 -> 20 is permitted (line 1)");
    assert_tcp_passes(
        &alice,
        &inside.permitted,
        "tcp/443 10 -> 20 is permitted (line 2)",
    );
    assert_tcp_dropped(
        &alice,
        &inside.other,
        "tcp/8080 10 -> 20 is denied (line 3)",
    );

    // Inside-originated: the ACL is read from the client's side, so an inside ping of
    // the client matches line 1 mirrored and passes, while a connection to a port on
    // the client matches nothing but line 3 (its mirrored destination port is the
    // inside host's ephemeral port).
    assert!(
        lab::wait_ping(lab.inside_ns(), me, HANG_GUARD).is_some(),
        "inside host -> alice ping (line 1 mirrored)"
    );
    let on_client = TcpService::start(alice.ns(), SocketAddr::new(IpAddr::V4(me), 9000));
    let r = service::fetch_banner(lab.inside_ns(), on_client.addr(), DROPPED_SYN_WAIT);
    assert!(r.is_err(), "inside host reached alice's port 9000: {r:?}");
    assert!(
        on_client.accepted().is_empty(),
        "{:?}",
        on_client.accepted()
    );

    let acl = lab.show(&["access-list", "VPN-FILTER"]);
    println!("show access-list VPN-FILTER:\n{acl}");
    assert!(hitcnt(&acl, "VPN-FILTER", 1) > 0, "{acl}");
    assert!(hitcnt(&acl, "VPN-FILTER", 2) > 0, "{acl}");
    assert!(hitcnt(&acl, "VPN-FILTER", 3) > 0, "{acl}");
    let (tx_drop, rx_drop) = drops(&rl, "alice");
    assert!(
        rx_drop > 0,
        "alice's 8080 SYNs are counted as dropped from her"
    );
    assert!(
        tx_drop > 0,
        "the inside SYNs to alice are counted as dropped to her"
    );
    let log = lab.headend_log();
    assert!(
        log.lines()
            .any(|l| l.contains("access-list VPN-FILTER denied tcp")
                && l.contains(&format!("{me}("))
                && l.contains(&format!("{INSIDE_HOST}({OTHER_PORT})"))),
        "no `log` line for the denied 8080 connection:\n{}",
        lab::tail(&log, 40)
    );
}

#[test]
fn sgt10_reaches_sgt20_on_permitted_port_and_ping_only_over_dtls() {
    sgt10_reaches_sgt20(&[]);
}

#[test]
fn sgt10_reaches_sgt20_on_permitted_port_and_ping_only_over_cstp() {
    sgt10_reaches_sgt20(&["--no-dtls"]);
}

/// (2) bob (SGT 11, VPN-FILTER from his group policy) is denied everything alice may
/// do, while alice, connected at the same time, is not.
#[test]
fn another_sgt_is_denied() {
    let Some(rl) = start(2) else { return };
    let lab = &rl.lab;
    let inside = inside_services(lab, INSIDE_HOST);
    let alice = rl.login(0, "alice");
    let bob = rl.login(1, "bob");
    let s = rl.session("bob");
    assert_eq!(field(&s, "Security Grp"), "11", "{s:?}");
    assert_eq!(field(&s, "Group Policy"), "GP-CONTRACTORS", "{s:?}");
    assert_eq!(field(&s, "Filter Name"), "VPN-FILTER", "{s:?}");

    assert_ping_passes(&alice, INSIDE_HOST, "alice (SGT 10)");
    assert_ping_dropped(&bob, INSIDE_HOST, "bob (SGT 11)");
    assert_tcp_dropped(
        &bob,
        &inside.permitted,
        "bob (SGT 11) on the permitted port",
    );
    assert_tcp_passes(
        &alice,
        &inside.permitted,
        "alice (SGT 10) on the permitted port",
    );
    let (_, rx_drop) = drops(&rl, "bob");
    assert!(rx_drop > 0, "bob's packets are counted as dropped");
    let (_, alice_rx_drop) = drops(&rl, "alice");
    assert_eq!(alice_rx_drop, 0, "alice sent nothing the filter denies");
}

/// (3) A CoA that changes alice's SGT changes what passes, without reconnecting: 10 ->
/// 11 denies her, 11 -> 10 lets her through again; the same session all along.
#[test]
fn coa_changing_the_sgt_changes_what_passes() {
    let Some(rl) = start(1) else { return };
    let lab = &rl.lab;
    let inside = inside_services(lab, INSIDE_HOST);
    let mut alice = rl.login(0, "alice");
    assert_ping_passes(&alice, INSIDE_HOST, "before the CoA (SGT 10)");
    assert_tcp_passes(&alice, &inside.permitted, "before the CoA (SGT 10)");
    let before = rl.session("alice");
    let audit = field(&before, "Audt Sess ID").to_owned();

    let ack = rl.primary.coa(&[
        ("Cisco-AVPair", &format!("audit-session-id={audit}")),
        ("Cisco-AVPair", "cts:security-group-tag=000b-00"),
    ]);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);
    let s = rl.session("alice");
    assert_eq!(field(&s, "Security Grp"), "11", "{s:?}");
    assert_ping_dropped(&alice, INSIDE_HOST, "after the CoA to SGT 11");
    let accepted_before = inside.permitted.accepted().len();
    let r = service::fetch_banner(alice.ns(), inside.permitted.addr(), DROPPED_SYN_WAIT);
    assert!(r.is_err(), "SGT 11 reached the permitted port: {r:?}");
    assert_eq!(inside.permitted.accepted().len(), accepted_before);

    let ack = rl.primary.coa(&[
        ("Cisco-AVPair", &format!("audit-session-id={audit}")),
        ("Cisco-AVPair", "cts:security-group-tag=000a-00"),
    ]);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);
    assert_ping_passes(&alice, INSIDE_HOST, "after the CoA back to SGT 10");
    assert_tcp_passes(&alice, &inside.permitted, "after the CoA back to SGT 10");

    assert!(
        alice.is_running(),
        "openconnect exited:\n{}",
        alice.output()
    );
    let after = rl.session("alice");
    assert_eq!(field(&after, "Index"), field(&before, "Index"));
    assert_eq!(field(&after, "Assigned IP"), field(&before, "Assigned IP"));
    let log = lab.headend_log();
    assert!(
        log.lines()
            .any(|l| l.contains("access-list VPN-FILTER denied icmp")),
        "no `log` line for the pings denied while alice had SGT 11:\n{}",
        lab::tail(&log, 40)
    );
}

/// (4) SXP: bindings a speaker advertises retag destinations and change what passes;
/// SXP beats the static map for the same address; a delete falls back to the static
/// binding; PURGE_ALL and the connection going away remove the speaker's bindings.
#[test]
fn sxp_update_retags_the_destination() {
    let Some(rl) = start(1) else { return };
    let lab = &rl.lab;
    e2e::radius::ensure_inside_addr(lab, SXP_HOST);
    let sxp_inside = inside_services(lab, SXP_HOST);
    let alice = rl.login(0, "alice");
    assert_ping_passes(&alice, INSIDE_HOST, "static 198.18.1.0/28 -> 20");
    // Untagged: only line 3 matches.
    assert_ping_dropped(&alice, SXP_HOST, "198.18.1.40 untagged");

    let speaker = SxpSpeaker::connect(lab, SXP_PASSWORD).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- headend log ---\n{}",
            lab::tail(&lab.headend_log(), 40)
        )
    });
    let conns = wait_show(lab, SXP_CONNS, "On", |o| {
        o.contains("Conn status      : On")
    });
    println!("show cts sxp connections:\n{conns}");
    assert!(
        conns.contains(&format!("Peer IP          : {SXP_SPEAKER}")),
        "{conns}"
    );
    assert!(conns.contains("Conn version     : 4"), "{conns}");
    assert!(conns.contains("Hold time(sec)   : 9"), "{conns}");

    // Tag 198.18.1.40 with 20: alice may now ping it and reach its port 443.
    speaker.update(&[("198.18.1.40/32", 20)], &[]);
    let map = wait_show(lab, SGT_MAP, "198.18.1.40 -> 20", |m| {
        binding(m, "198.18.1.40") == Some((20, "SXP".into()))
    });
    println!("show cts role-based sgt-map all:\n{map}");
    assert_eq!(
        binding(&map, "198.18.1.0/28"),
        Some((20, "CLI".into())),
        "{map}"
    );
    assert_ping_passes(&alice, SXP_HOST, "SXP tagged 198.18.1.40 with 20");
    assert_tcp_passes(
        &alice,
        &sxp_inside.permitted,
        "SXP tagged 198.18.1.40 with 20",
    );
    assert_tcp_dropped(&alice, &sxp_inside.other, "port 8080 of 198.18.1.40");

    // Retag it 30: denied again.
    speaker.update(&[("198.18.1.40/32", 30)], &[]);
    wait_show(lab, SGT_MAP, "198.18.1.40 -> 30", |m| {
        binding(m, "198.18.1.40") == Some((30, "SXP".into()))
    });
    assert_ping_dropped(&alice, SXP_HOST, "SXP retagged 198.18.1.40 with 30");
    let accepted = sxp_inside.permitted.accepted().len();
    let r = service::fetch_banner(alice.ns(), sxp_inside.permitted.addr(), DROPPED_SYN_WAIT);
    assert!(r.is_err(), "reached 198.18.1.40:443 tagged 30: {r:?}");
    assert_eq!(sxp_inside.permitted.accepted().len(), accepted);

    // SXP beats the static map for the inside host; deleting the SXP binding falls
    // back to the static 20.
    speaker.update(&[("198.18.1.10/32", 30)], &[]);
    wait_show(lab, SGT_MAP, "198.18.1.10 -> 30", |m| {
        binding(m, "198.18.1.10") == Some((30, "SXP".into()))
    });
    assert_ping_dropped(
        &alice,
        INSIDE_HOST,
        "SXP 198.18.1.10/32 -> 30 over static /28 -> 20",
    );
    speaker.update(&[], &["198.18.1.10/32"]);
    wait_show(lab, SGT_MAP, "198.18.1.10 deleted", |m| {
        binding(m, "198.18.1.10").is_none()
    });
    assert_ping_passes(&alice, INSIDE_HOST, "SXP binding deleted: static 20 again");

    // PURGE_ALL withdraws everything the speaker said; the connection stays.
    speaker.purge_all();
    let map = wait_show(lab, SGT_MAP, "without SXP bindings", |m| sxp_rows(m) == 0);
    assert!(
        map.contains("Total number of SXP      bindings = 0"),
        "{map}"
    );
    assert_ping_dropped(&alice, SXP_HOST, "after PURGE_ALL");
    assert!(lab.show(SXP_CONNS).contains("Conn status      : On"));

    // A binding again, then the speaker closes the connection: its bindings go.
    speaker.update(&[("198.18.1.40/32", 20)], &[]);
    wait_show(lab, SGT_MAP, "198.18.1.40 -> 20 again", |m| {
        binding(m, "198.18.1.40") == Some((20, "SXP".into()))
    });
    drop(speaker);
    wait_show(lab, SGT_MAP, "without SXP bindings after the close", |m| {
        binding(m, "198.18.1.40").is_none()
    });
    wait_show(lab, SXP_CONNS, "Off", |o| {
        o.contains("Conn status      : Off")
    });
    assert_ping_dropped(&alice, SXP_HOST, "after the speaker left");
}

/// A lab with the policy config but no RADIUS or client: for the SXP transport tests.
fn sxp_only_lab() -> Option<Lab> {
    let lab = Lab::new()?;
    // The tunnel group refers to the ISE group; name it so the config loads (no
    // RADIUS server runs: nobody logs in here).
    e2e::radius::append_headend_config(
        &lab,
        &format!(
            "{}!\n{}",
            e2e::radius::asa_config("unused-secret"),
            policy_config()
        ),
    );
    lab.start_headend();
    Some(lab)
}

/// (5) A speaker that goes silent (no KEEPALIVE) loses its connection and its bindings
/// once the negotiated hold time (9 s) passes; the headend closes the connection.
#[test]
fn sxp_bindings_age_out_after_the_hold_time() {
    let Some(lab) = sxp_only_lab() else { return };
    let speaker = SxpSpeaker::connect(&lab, SXP_PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    speaker.update(&[("198.18.1.40/32", 20), ("198.18.2.0/29", 30)], &[]);
    wait_show(&lab, SGT_MAP, "with the two SXP bindings", |m| {
        binding(m, "198.18.1.40") == Some((20, "SXP".into()))
            && binding(m, "198.18.2.0/29") == Some((30, "SXP".into()))
    });
    speaker.go_silent();
    let map = wait_show(&lab, SGT_MAP, "without SXP bindings (hold time)", |m| {
        sxp_rows(m) == 0
    });
    assert_eq!(
        binding(&map, "198.18.1.0/28"),
        Some((20, "CLI".into())),
        "{map}"
    );
    wait_show(&lab, SXP_CONNS, "Off", |o| {
        o.contains("Conn status      : Off")
    });
    assert!(
        wait_until(HANG_GUARD, || speaker.closed_by_headend().then_some(())).is_some(),
        "the headend kept the silent speaker's connection open"
    );
    let log = lab.headend_log();
    assert!(
        log.contains("SXP connection closed"),
        "no close reason logged:\n{}",
        lab::tail(&log, 30)
    );
}

/// (6) TCP-MD5: a speaker with the wrong password never gets a connection (the kernel
/// drops its unsigned-for-this-key SYNs); a speaker from an address that is not a
/// configured peer is closed without an OPEN_RESP; neither adds bindings.
#[test]
fn sxp_refuses_wrong_password_and_unknown_peer() {
    let Some(lab) = sxp_only_lab() else { return };
    let wrong = sxp::connect_tcp(
        &lab,
        SXP_SPEAKER,
        Some("not-the-password"),
        DROPPED_SYN_WAIT,
    );
    assert!(wrong.is_err(), "connected with the wrong TCP-MD5 password");
    let unsigned = sxp::connect_tcp(&lab, SXP_SPEAKER, None, DROPPED_SYN_WAIT);
    assert!(
        unsigned.is_err(),
        "connected without TCP-MD5 from a peer that has a key"
    );

    let stranger = Ipv4Addr::new(198, 18, 1, 31);
    let r = SxpSpeaker::connect_from(&lab, stranger, None);
    assert!(r.is_err(), "an unconfigured peer got an OPEN_RESP");
    let conns = lab.show(SXP_CONNS);
    assert!(conns.contains("Conn status      : Off"), "{conns}");
    let map = lab.show(SGT_MAP);
    assert!(
        map.contains("Total number of SXP      bindings = 0"),
        "{map}"
    );
    let log = lab.headend_log();
    assert!(
        log.contains("not a configured peer"),
        "the stranger is not logged:\n{}",
        lab::tail(&log, 30)
    );

    // The right password still works after all that.
    let speaker = SxpSpeaker::connect(&lab, SXP_PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    speaker.update(&[("198.18.1.40/32", 20)], &[]);
    wait_show(&lab, SGT_MAP, "198.18.1.40 -> 20", |m| {
        binding(m, "198.18.1.40") == Some((20, "SXP".into()))
    });
}

/// (7) A reload (`headend reload`, or SIGHUP) applies edited ACLs and static bindings
/// to connected sessions without reconnecting them; a config with an error changes
/// nothing and says where the error is.
#[test]
fn reload_applies_acl_and_sgt_map_edits_to_live_sessions() {
    let Some(rl) = start(1) else { return };
    let lab = &rl.lab;
    let inside = inside_services(lab, INSIDE_HOST);
    let alice = rl.login(0, "alice");
    assert_ping_passes(&alice, INSIDE_HOST, "before the reload");
    assert_tcp_passes(&alice, &inside.permitted, "before the reload");
    let before = lab.show(&["access-list", "VPN-FILTER"]);
    let https_hits = hitcnt(&before, "VPN-FILTER", 2);
    assert!(https_hits > 0, "{before}");

    // Edit: ICMP is no longer permitted, port 8080 is.
    let path = lab.config_path();
    let original = std::fs::read_to_string(&path).expect("read headend.cfg");
    let icmp_rule = "access-list VPN-FILTER extended permit icmp security-group tag 10 any security-group tag 20 any\n";
    let edited = original.replace(
        icmp_rule,
        &format!(
            "access-list VPN-FILTER extended permit tcp security-group tag 10 any security-group tag 20 any eq {OTHER_PORT}\n"
        ),
    );
    assert_ne!(edited, original, "the config has the icmp rule");
    std::fs::write(&path, &edited).expect("write headend.cfg");
    let out = lab.headend_cli(&["reload"]);
    let reply = e2e::cmd::combined(&out);
    println!("headend reload:\n{reply}");
    assert!(out.status.success(), "{reply}");
    assert!(
        reply.contains("access-lists changed: VPN-FILTER"),
        "{reply}"
    );
    assert_ping_dropped(&alice, INSIDE_HOST, "icmp rule removed by the reload");
    assert_tcp_passes(&alice, &inside.other, "port 8080 permitted by the reload");
    assert_tcp_passes(&alice, &inside.permitted, "the 443 rule is unchanged");
    let after = lab.show(&["access-list", "VPN-FILTER"]);
    println!("show access-list VPN-FILTER after the reload:\n{after}");
    assert!(
        after.contains(&format!("eq {OTHER_PORT}")) || after.contains("eq 8080"),
        "{after}"
    );
    assert!(!after.contains("permit icmp"), "{after}");
    assert!(
        hitcnt(&after, "VPN-FILTER", 2) > https_hits,
        "the unchanged 443 rule keeps its count and adds the new hit:\n{before}\n{after}"
    );

    // SIGHUP: the static binding of the inside host moves to SGT 30: denied.
    let retagged = edited.replace(
        "cts role-based sgt-map 198.18.1.0/28 sgt 20\n",
        "cts role-based sgt-map 198.18.1.0/28 sgt 30\n",
    );
    assert_ne!(retagged, edited);
    std::fs::write(&path, &retagged).expect("write headend.cfg");
    lab.signal_headend(libc::SIGHUP);
    wait_show(lab, SGT_MAP, "198.18.1.0/28 -> 30", |m| {
        binding(m, "198.18.1.0/28") == Some((30, "CLI".into()))
    });
    assert_tcp_dropped(&alice, &inside.other, "inside host retagged 30 by SIGHUP");

    // A broken config: refused with its file:line, the policy stays as it was.
    let broken_line = retagged.lines().count() + 1;
    std::fs::write(
        &path,
        format!("{retagged}access-list VPN-FILTER extended permit tcp any any eq not-a-port\n"),
    )
    .expect("write headend.cfg");
    let out = lab.headend_cli(&["reload"]);
    let reply = e2e::cmd::combined(&out);
    println!("headend reload (broken):\n{reply}");
    assert!(!out.status.success(), "{reply}");
    assert!(
        reply.contains(&format!("headend.cfg:{broken_line}")),
        "no file:line {broken_line} in {reply}"
    );
    let map = lab.show(SGT_MAP);
    assert_eq!(
        binding(&map, "198.18.1.0/28"),
        Some((30, "CLI".into())),
        "{map}"
    );
    assert!(alice.tun_addr().is_some());
    let s = rl.session("alice");
    assert_eq!(field(&s, "Security Grp"), "10", "{s:?}");
}

/// (8) A downloadable ACL: RADIUS `ip:inacl#N` entries become the session's per-user
/// ACL (`AAA-user-USER-HASH`, in N order), which beats Filter-Id as on ASA; `show
/// access-list` shows it with hit counts while a session uses it and drops it after;
/// entries that do not parse refuse the login.
#[test]
fn downloadable_acl_from_radius_is_the_sessions_filter() {
    let pw = "Erin-lab-pw-7";
    let Some(rl) = RadiusLab::start(RadiusSetup {
        config: policy_config(),
        users: vec![
            RadiusUser::new("erin")
                .password(pw)
                .reply(
                    "Cisco-AVPair",
                    &format!("ip:inacl#2=permit tcp any host {INSIDE_HOST} eq {OTHER_PORT}"),
                )
                .reply(
                    "Cisco-AVPair",
                    &format!("ip:inacl#1=permit icmp any host {INSIDE_HOST}"),
                )
                .reply("Filter-Id", "VPN-FILTER"),
            RadiusUser::new("frank").password(pw).reply(
                "Cisco-AVPair",
                "ip:inacl#1=permit tcp any any eq not-a-port",
            ),
        ],
        ..RadiusSetup::default()
    }) else {
        return;
    };
    let lab = &rl.lab;
    let inside = inside_services(lab, INSIDE_HOST);
    let mut erin = lab.spawn_client(0, "erin", pw, &["--authgroup", "RADIUS-PW"]);
    erin.wait_connected(HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 60)));
    let s = rl.session("erin");
    let acl = field(&s, "Filter Name").to_owned();
    assert!(acl.starts_with("AAA-user-erin-"), "{s:?}");

    assert_ping_passes(&erin, INSIDE_HOST, "ip:inacl#1 permits icmp");
    assert_tcp_passes(&erin, &inside.other, "ip:inacl#2 permits 8080");
    assert_tcp_dropped(&erin, &inside.permitted, "443 is not in the per-user ACL");

    // `detail`: ASA's lines plus the implicit deny's counter.
    let shown = lab.show(&["access-list", &acl, "detail"]);
    println!("show access-list {acl} detail:\n{shown}");
    assert!(
        shown.contains(&format!("access-list {acl}; 2 elements")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "line 1 extended permit icmp any host {INSIDE_HOST}"
        )),
        "ip:inacl#1 first: {shown}"
    );
    assert!(hitcnt(&shown, &acl, 1) > 0, "{shown}");
    assert!(hitcnt(&shown, &acl, 2) > 0, "{shown}");
    assert!(hitcnt(&shown, &acl, 0) > 0, "implicit deny: {shown}");

    // A reload keeps the per-user ACL (it is not in the config file).
    let out = lab.headend_cli(&["reload"]);
    let reply = e2e::cmd::combined(&out);
    assert!(out.status.success(), "{reply}");
    assert!(!reply.contains("WARNING"), "{reply}");
    assert_ping_passes(&erin, INSIDE_HOST, "after a reload");

    erin.stop();
    lab.wait_sessions("without erin", |s| s.is_empty());
    assert_eq!(
        lab.show(&["access-list", &acl]),
        "",
        "the ACL outlived its session"
    );

    let out = rl.failed_login(0, "frank", pw);
    println!("frank:\n{out}");
    let log = lab.headend_log();
    assert!(
        log.lines()
            .any(|l| l.contains("downloadable access-list AAA-user-frank-")
                && l.contains("refused: entry 1")),
        "{}",
        lab::tail(&log, 20)
    );
    assert!(lab.show_sessions().is_empty());
}

/// (9) A named downloadable ACL as ISE sends it: the Accept names
/// `#ACSACL#-IP-LAB_WEB-5f3c1a2b`; the headend fetches its entries with a second
/// Access-Request (User-Name = the name, null password, `aaa:event=acl-download`),
/// applies it as the session's filter, and a second session with the same name does
/// not fetch it again.
#[test]
fn named_downloadable_acl_is_fetched_once_and_applied() {
    const DACL: &str = "#ACSACL#-IP-LAB_WEB-5f3c1a2b";
    let pw = "Dacl-lab-pw-3";
    let inacl_8080 = format!("permit tcp any host {INSIDE_HOST} eq {OTHER_PORT}");
    let user = |name: &str| {
        RadiusUser::new(name).password(pw).reply(
            "Cisco-AVPair",
            &format!("ACS:CiscoSecure-Defined-ACL={DACL}"),
        )
    };
    let Some(rl) = RadiusLab::start(RadiusSetup {
        clients: 2,
        config: policy_config(),
        users: vec![
            RadiusUser::downloadable_acl(DACL, &["permit icmp any any", &inacl_8080]),
            user("gina"),
            user("hank"),
        ],
        ..RadiusSetup::default()
    }) else {
        return;
    };
    let lab = &rl.lab;
    let inside = inside_services(lab, INSIDE_HOST);
    let login = |host, name: &str| {
        let mut c = lab.spawn_client(host, name, pw, &["--authgroup", "RADIUS-PW"]);
        c.wait_connected(HANG_GUARD)
            .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 60)));
        c
    };
    let gina = login(0, "gina");
    let s = rl.session("gina");
    assert_eq!(field(&s, "Filter Name"), DACL, "{s:?}");
    let req = rl.primary.wait_for_request("Access-Request", DACL);
    println!("the download request: {req:?}");
    assert!(
        req.attrs.has("Cisco-AVPair", "aaa:event=acl-download"),
        "{req:?}"
    );
    assert!(
        req.attrs.has("Cisco-AVPair", "aaa:service=ip_admission"),
        "{req:?}"
    );
    assert!(req.get("Service-Type").is_none(), "{req:?}");

    assert_ping_passes(&gina, INSIDE_HOST, "ip:inacl#1 of the named ACL");
    assert_tcp_passes(&gina, &inside.other, "ip:inacl#2 of the named ACL");
    assert_tcp_dropped(&gina, &inside.permitted, "443 is not in the named ACL");
    let shown = lab.show(&["access-list", DACL]);
    println!("show access-list {DACL}:\n{shown}");
    assert!(hitcnt(&shown, DACL, 1) > 0, "{shown}");

    let hank = login(1, "hank");
    assert_eq!(field(&rl.session("hank"), "Filter Name"), DACL);
    assert_ping_passes(&hank, INSIDE_HOST, "hank shares the named ACL");
    let downloads = rl
        .primary
        .received()
        .into_iter()
        .filter(|p| p.kind == "Access-Request" && p.get("User-Name") == Some(DACL))
        .count();
    assert_eq!(downloads, 1, "the ACL was fetched again for hank");
}

/// (10) The same enforcement on IPv6 traffic of a dual-stack session: ivy (SGT 10,
/// group policy GP-DUAL with an IPv6 pool) reaches the inside host's IPv6 address,
/// tagged 20 by `cts role-based sgt-map fd00:1::/64 sgt 20`, with ping and on port 443
/// but not on 8080; after a CoA to SGT 11 ping -6 is dropped. As on ASA, `icmp` in an
/// ACL is ICMPv4 only: with VPN-FILTER ping -6 is denied (line 3), so ivy's Filter-Id
/// is VPN-FILTER6, which says `icmp6`.
#[test]
fn sgt_enforcement_applies_to_ipv6_traffic() {
    use e2e::lab::INSIDE_HOST6;
    let pw = "Ivy-lab-pw-6";
    let Some(rl) = RadiusLab::start(RadiusSetup {
        config: format!(
            "{}!\ncts role-based sgt-map fd00:1::/64 sgt 20\n\
             access-list VPN-FILTER6 extended permit icmp6 security-group tag 10 any security-group tag 20 any\n\
             access-list VPN-FILTER6 extended permit tcp security-group tag 10 any security-group tag 20 any eq {PERMITTED_PORT}\n\
             access-list VPN-FILTER6 extended deny ip any any log\n",
            policy_config()
        ),
        users: vec![
            RadiusUser::new("ivy")
                .password(pw)
                .reply("Class", "OU=GP-DUAL;")
                .reply("Cisco-AVPair", "cts:security-group-tag=000a-00")
                .reply("Filter-Id", "VPN-FILTER6"),
        ],
        ..RadiusSetup::default()
    }) else {
        return;
    };
    let lab = &rl.lab;
    let at = |port| SocketAddr::new(IpAddr::V6(INSIDE_HOST6), port);
    let https = TcpService::start(lab.inside_ns(), at(PERMITTED_PORT));
    let other = TcpService::start(lab.inside_ns(), at(OTHER_PORT));
    let mut ivy = lab.spawn_client(0, "ivy", pw, &["--authgroup", "RADIUS-PW"]);
    ivy.wait_connected(HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 60)));
    let s = rl.session("ivy");
    println!("{s:?}");
    assert_eq!(field(&s, "Group Policy"), "GP-DUAL", "{s:?}");
    assert!(
        field(&s, "Assigned IPv6").starts_with("fd00:100::"),
        "{s:?}"
    );
    assert_eq!(field(&s, "Security Grp"), "10", "{s:?}");

    assert!(
        lab::wait_ping6(ivy.ns(), INSIDE_HOST6, HANG_GUARD).is_some(),
        "ping -6 10 -> 20 is permitted (line 1)"
    );
    let got = service::fetch_banner(ivy.ns(), https.addr(), HANG_GUARD)
        .unwrap_or_else(|e| panic!("tcp6/443 10 -> 20 is permitted (line 2): {e}"));
    assert_eq!(got, service::banner(https.addr()));
    let r = service::fetch_banner(ivy.ns(), other.addr(), DROPPED_SYN_WAIT);
    assert!(r.is_err(), "tcp6/8080 reached the inside host: {r:?}");
    assert!(other.accepted().is_empty(), "{:?}", other.accepted());
    let shown = lab.show(&["access-list", "VPN-FILTER6"]);
    println!("{shown}");
    for line in 1..=3 {
        assert!(
            hitcnt(&shown, "VPN-FILTER6", line) > 0,
            "line {line}: {shown}"
        );
    }

    let audit = field(&s, "Audt Sess ID").to_owned();
    let ack = rl.primary.coa(&[
        ("Cisco-AVPair", &format!("audit-session-id={audit}")),
        ("Cisco-AVPair", "cts:security-group-tag=000b-00"),
    ]);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);
    assert!(
        !lab::ping6(ivy.ns(), INSIDE_HOST6, None),
        "ping -6 passed with SGT 11"
    );
    assert!(ivy.is_running());
}

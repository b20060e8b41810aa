//! End-to-end tests of the DTLS data channel (protocol.md section 3) with stock Debian
//! openconnect: DTLS comes up and really carries the traffic, the tunnel survives UDP
//! being cut (CSTP carries on, DTLS comes back), `--no-dtls` and a group policy with
//! `anyconnect ssl dtls disable` give CSTP-only tunnels, forged and replayed datagrams
//! on the UDP port change nothing, a NAT that moves the client's UDP port is followed
//! (also with two sessions behind one address), a NAT that changes its address is
//! survived, lost handshake datagrams are retransmitted, a CSTP reconnect re-keys DTLS,
//! and a forged alert cannot break a handshake in progress (with an ocserv control).
//!
//! "Really carries the traffic" is read from nftables counters in the client namespace
//! (UDP and TCP to and from 198.18.0.1:443), never from timing. Deadlines are hang
//! guards only.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use e2e::lab::{
    self, AUTHGROUP_NO_DTLS, Background, HANG_GUARD, INSIDE_HOST, OUTSIDE_IP, TLS_PORT,
};
use e2e::nft::{self, Counter};
use e2e::{Client, Lab, Session, cmd, probe, udp, wait_until};

/// openconnect's line once DTLS is up.
const DTLS_ESTABLISHED: &str = "Established DTLS connection";
/// The headend's line when it follows a client whose UDP source address changed.
const PEER_CHANGED: &str = "DTLS peer address changed";
/// Bytes per iperf3 run (`-n`): an exact amount, so the counters can be checked
/// against it.
const TRANSFER: &str = "20M";
/// IP datagrams at least this long are tunnelled data (a ping through the tunnel is
/// ~150 bytes as DTLS); DTLS keepalives and DPD are shorter.
const DATA_SIZED: u32 = 100;
/// Hang guard for what waits on openconnect's DTLS dead-peer detection (2 x DPD, with
/// `--force-dpd 5` here) or on its next DTLS attempt (every 60 s in 9.01).
const DTLS_RECOVERY_GUARD: Duration = Duration::from_secs(180);

fn lab_with_headend(clients: usize) -> Option<Lab> {
    let lab = lab_with_tools(clients)?;
    lab.start_headend();
    Some(lab)
}

/// [`Lab::with_clients`], also skipped (or failed with `E2E_REQUIRED=1`) when a tool
/// these tests need beyond the lab's is missing.
fn lab_with_tools(clients: usize) -> Option<Lab> {
    let lab = Lab::with_clients(clients)?;
    for program in ["nft", "iperf3", "timeout"] {
        if !cmd::in_path(program) {
            let reason = format!("`{program}` not found (run netns/install-deps.sh)");
            assert!(!lab::required(), "E2E_REQUIRED=1 but {reason}");
            eprintln!("SKIP: {reason}");
            return None;
        }
    }
    Some(lab)
}

fn session_of<'a>(sessions: &'a [Session], user: &str) -> &'a Session {
    sessions
        .iter()
        .find(|s| s.get("Username").map(String::as_str) == Some(user))
        .unwrap_or_else(|| panic!("no session for {user} in {sessions:?}"))
}

fn protocol_of(lab: &Lab, user: &str) -> String {
    session_of(&lab.show_sessions(), user)
        .get("Protocol")
        .cloned()
        .unwrap_or_default()
}

/// The headend's log without the terminal colour codes tracing puts in it.
fn headend_log_plain(lab: &Lab) -> String {
    strip_ansi(&lab.headend_log())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte(@..~)
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Connects alice from client namespace `host` and requires DTLS to come up.
fn connect_dtls(lab: &Lab, host: usize, extra: &[&str]) -> Client {
    let client = lab.connect_from(host, "alice", lab.password("alice"), extra);
    let up = wait_until(HANG_GUARD, || {
        client.output().contains(DTLS_ESTABLISHED).then_some(())
    });
    assert!(
        up.is_some(),
        "openconnect did not log {DTLS_ESTABLISHED:?}:\n{}\n--- headend log ---\n{}",
        client.output(),
        lab::tail(&headend_log_plain(lab), 40)
    );
    client
}

/// Number of replies of `count` pings from `ns` to `ip` (0.2 s apart, 2 s wait each).
fn ping_replies(ns: &str, ip: std::net::Ipv4Addr, count: u32) -> u32 {
    ping_count(ns, &[], ip, count)
}

/// Pings the inside host from source address `src` (so policy routing picks the tunnel
/// of the session that owns `src`); the number of replies.
fn ping_from_addr(ns: &str, src: std::net::Ipv4Addr, count: u32) -> u32 {
    ping_count(ns, &["-I", &src.to_string()], INSIDE_HOST, count)
}

fn ping_count(ns: &str, extra: &[&str], ip: std::net::Ipv4Addr, count: u32) -> u32 {
    let (count, ip) = (count.to_string(), ip.to_string());
    let mut args = vec!["ping", "-n", "-q"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-c", &count, "-i", "0.2", "-W", "2", &ip]);
    let out = lab::exec_in(ns, &args);
    // "5 packets transmitted, 5 received, 0% packet loss, time 812ms"
    String::from_utf8_lossy(&out.stdout)
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or(0)
}

fn assert_pings(ns: &str, within: Duration, what: &str) {
    assert!(
        lab::wait_ping(ns, INSIDE_HOST, within).is_some(),
        "{what}: no ping reply from {INSIDE_HOST} through the tunnel from {ns} within {within:?}"
    );
}

/// nftables counters in a client namespace for the tunnel's two transports: UDP and
/// TCP between the client and 198.18.0.1:443, each way, plus data-sized UDP datagrams
/// from the headend.
struct Transport {
    ns: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct TransportSnapshot {
    udp_out: Counter,
    udp_in: Counter,
    udp_in_data: Counter,
    tcp_out: Counter,
    tcp_in: Counter,
}

impl std::ops::Sub for TransportSnapshot {
    type Output = TransportSnapshot;
    fn sub(self, e: TransportSnapshot) -> TransportSnapshot {
        TransportSnapshot {
            udp_out: self.udp_out - e.udp_out,
            udp_in: self.udp_in - e.udp_in,
            udp_in_data: self.udp_in_data - e.udp_in_data,
            tcp_out: self.tcp_out - e.tcp_out,
            tcp_in: self.tcp_in - e.tcp_in,
        }
    }
}

impl Transport {
    const TABLE: &'static str = "e2e_transport";

    fn install(ns: &str) -> Transport {
        let t = Self::TABLE;
        nft::must_apply(
            ns,
            &format!(
                "table inet {t} {{
  counter udp_out {{ }}
  counter udp_in {{ }}
  counter udp_in_data {{ }}
  counter tcp_out {{ }}
  counter tcp_in {{ }}
  chain out {{
    type filter hook output priority -10; policy accept;
    ip daddr {OUTSIDE_IP} udp dport {TLS_PORT} counter name udp_out
    ip daddr {OUTSIDE_IP} tcp dport {TLS_PORT} counter name tcp_out
  }}
  chain in {{
    type filter hook input priority -10; policy accept;
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} counter name udp_in
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} meta length >= {DATA_SIZED} counter name udp_in_data
    ip saddr {OUTSIDE_IP} tcp sport {TLS_PORT} counter name tcp_in
  }}
}}
"
            ),
        );
        Transport { ns: ns.to_owned() }
    }

    fn snapshot(&self) -> TransportSnapshot {
        let c = |name| nft::counter(&self.ns, "inet", Self::TABLE, name);
        TransportSnapshot {
            udp_out: c("udp_out"),
            udp_in: c("udp_in"),
            udp_in_data: c("udp_in_data"),
            tcp_out: c("tcp_out"),
            tcp_in: c("tcp_in"),
        }
    }

    /// Pings the inside host (after it answers at all) and requires every reply to
    /// have come back as a data-sized DTLS datagram: the headend's downlink is on DTLS.
    fn assert_ping_over_dtls(&self, what: &str) {
        assert_pings(&self.ns, HANG_GUARD, what);
        let before = self.snapshot();
        let replies = ping_replies(&self.ns, INSIDE_HOST, 5);
        let d = self.snapshot() - before;
        assert!(replies > 0, "{what}: no ping replies");
        assert!(
            d.udp_in_data.packets >= u64::from(replies),
            "{what}: {replies} ping replies but only {} data-sized DTLS datagrams came in \
             (downlink not on DTLS?): {d:?}",
            d.udp_in_data.packets
        );
    }
}

/// An iperf3 server on the inside host.
fn iperf_server(lab: &Lab) -> Background {
    let ip = INSIDE_HOST.to_string();
    let server = lab.spawn_in(
        lab.inside_ns(),
        "iperf3-server",
        &["iperf3", "-s", "-B", &ip],
    );
    let listening = wait_until(HANG_GUARD, || {
        let out = lab.exec_inside(&["ss", "-Hltn", "sport = :5201"]);
        (!out.stdout.trim_ascii().is_empty()).then_some(())
    });
    assert!(
        listening.is_some(),
        "iperf3 server not listening:\n{}",
        server.output()
    );
    server
}

/// Runs `iperf3 -n TRANSFER` from the first client namespace to the inside host
/// (`reverse`: the server sends); returns the bytes the receiver got.
fn iperf(lab: &Lab, reverse: bool) -> u64 {
    let ip = INSIDE_HOST.to_string();
    let mut args = vec!["timeout", "120", "iperf3", "-c", &ip, "-n", TRANSFER, "-J"];
    if reverse {
        args.push("-R");
    }
    let out = lab.exec_client(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "iperf3 {args:?} failed ({}):\n{}",
        out.status,
        cmd::combined(&out)
    );
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("iperf3 JSON: {e}:\n{text}"));
    let received = json["end"]["sum_received"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no end.sum_received.bytes in iperf3 output:\n{text}"));
    let secs = json["end"]["sum_received"]["seconds"]
        .as_f64()
        .unwrap_or(0.0);
    // Measured, not asserted.
    println!(
        "iperf3{}: {received} bytes in {secs:.2} s",
        if reverse { " -R" } else { "" }
    );
    received
}

/// A `show counters` line `NAME : N`.
fn show_counter(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in show counters:\n{out}"))
}

fn session_bytes(s: &Session, field: &str) -> u64 {
    s.get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {field:?} in {s:?}"))
}

/// 1. DTLS comes up (openconnect says so, `show vpn-sessiondb` lists DTLS-Tunnel) and
///    carries the traffic: a ping, and iperf3 transfers both ways, whose bytes show up
///    on UDP 443 in the client namespace and not on TCP 443.
#[test]
fn dtls_is_established_and_carries_the_traffic() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let _server = iperf_server(&lab);
    let mut client = connect_dtls(&lab, 0, &[]);
    let output = client.output();
    assert!(
        output.contains("with SSL connected and DTLS connected"),
        "openconnect does not report DTLS connected:\n{output}"
    );
    let port = client.dtls_port().expect("openconnect has a DTLS socket");
    println!(
        "openconnect's DTLS socket: {}:{port}",
        lab.client_host(0).ip
    );
    let transport = Transport::install(lab.client_ns());
    transport.assert_ping_over_dtls("after connecting");
    let sessions = lab.wait_sessions("listing alice with DTLS-Tunnel", |s| {
        s.iter().any(|s| {
            s.get("Username").is_some_and(|u| u == "alice")
                && s.get("Protocol").is_some_and(|p| p.contains("DTLS-Tunnel"))
        })
    });
    let before_bytes = session_of(&sessions, "alice").clone();
    println!("{}", lab.show_sessions_raw());

    let t0 = transport.snapshot();
    let up = iperf(&lab, false);
    let t1 = transport.snapshot();
    let down = iperf(&lab, true);
    let t2 = transport.snapshot();
    let (upload, download) = (t1 - t0, t2 - t1);
    println!("upload counters: {upload:?}\ndownload counters: {download:?}");
    assert!(up > 0 && down > 0, "iperf3 moved nothing: {up} {down}");
    assert!(
        upload.udp_out.bytes >= up,
        "iperf3 sent {up} bytes, but only {} bytes of UDP went to {OUTSIDE_IP}:{TLS_PORT}",
        upload.udp_out.bytes
    );
    assert!(
        download.udp_in.bytes >= down,
        "iperf3 received {down} bytes, but only {} bytes of UDP came from \
         {OUTSIDE_IP}:{TLS_PORT}",
        download.udp_in.bytes
    );
    // CSTP carries only keepalives and DPD meanwhile.
    for (what, bytes, total) in [
        ("upload TCP out", upload.tcp_out.bytes, up),
        ("upload TCP in", upload.tcp_in.bytes, up),
        ("download TCP out", download.tcp_out.bytes, down),
        ("download TCP in", download.tcp_in.bytes, down),
    ] {
        assert!(
            bytes < total / 10,
            "{what}: {bytes} bytes on TCP {TLS_PORT} during a {total}-byte transfer: \
             the tunnel used CSTP"
        );
    }

    // The headend accounts the DTLS traffic to the session.
    let raw = lab.show_sessions_raw();
    println!("{raw}");
    let s = session_of(&e2e::sessiondb::parse(&raw), "alice").clone();
    assert!(
        s.get("Protocol").is_some_and(|p| p.contains("DTLS-Tunnel")),
        "{raw}"
    );
    let rx = session_bytes(&s, "Bytes Rx") - session_bytes(&before_bytes, "Bytes Rx");
    let tx = session_bytes(&s, "Bytes Tx") - session_bytes(&before_bytes, "Bytes Tx");
    assert!(
        rx >= up,
        "session Bytes Rx grew by {rx}, iperf3 sent {up}:\n{raw}"
    );
    assert!(
        tx >= down,
        "session Bytes Tx grew by {tx}, iperf3 received {down}:\n{raw}"
    );
    let counters = lab.show_counters_raw();
    println!("headend counters:\n{counters}");
    // The session read the upload on its own connected socket (issue 13
    // item 1), not through the hub's sorting.
    let count = |name: &str| show_counter(&counters, name);
    assert_eq!(count("dtls-direct-sockets"), 1, "{counters}");
    assert!(
        count("dtls-rx-direct") * 10 >= count("dtls-rx-datagrams") * 9,
        "most DTLS datagrams should come through the connected socket:\n{counters}"
    );
    let snmp = lab.exec_gw(&["cat", "/proc/net/snmp"]);
    for line in String::from_utf8_lossy(&snmp.stdout)
        .lines()
        .filter(|l| l.starts_with("Udp:"))
    {
        println!("headend namespace {line}");
    }
    assert_eq!(
        client.dtls_established_count(),
        1,
        "DTLS was re-established during the transfers:\n{}",
        client.output()
    );
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

/// 2. UDP to and from the headend is dropped mid-session: openconnect notices (DPD),
///    the tunnel carries on over CSTP with the same address and session; once UDP
///    flows again DTLS is re-established (from a new UDP port, same App-ID) and
///    carries the traffic again.
#[test]
fn udp_blocked_falls_back_to_cstp_and_dtls_comes_back() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    // A short client DPD so the dead DTLS path is noticed sooner (2 x 5 s).
    let mut client = connect_dtls(&lab, 0, &["--force-dpd", "5"]);
    let addr = client.tun_addr().expect("tunnel address");
    let ns = lab.client_ns().to_owned();
    let transport = Transport::install(&ns);
    transport.assert_ping_over_dtls("before blocking UDP");
    let first_port = client.dtls_port().expect("DTLS socket");

    // Silent drops, as on a path that loses UDP: incoming on both sides, so neither
    // sender gets an error (a drop in the client's output hook would fail
    // openconnect's send with EPERM and make it fall back at once, without DPD).
    let block = |ns: &str, rule: &str| {
        nft::must_apply(
            ns,
            &format!(
                "table inet e2e_block {{
  chain in {{
    type filter hook input priority 0; policy accept;
    {rule} drop
  }}
}}
"
            ),
        );
    };
    let client_ip = lab.client_host(0).ip;
    block(&ns, &format!("ip saddr {OUTSIDE_IP} udp sport {TLS_PORT}"));
    block(
        lab.gw_ns(),
        &format!("ip saddr {client_ip} ip daddr {OUTSIDE_IP} udp dport {TLS_PORT}"),
    );
    // Pings are lost until openconnect's DPD gives up on DTLS; then CSTP carries them.
    assert_pings(&ns, DTLS_RECOVERY_GUARD, "with UDP blocked");
    let output = client.output();
    assert!(
        output.contains("DTLS Dead Peer Detection detected dead peer"),
        "pings work with UDP blocked, but openconnect never gave up on DTLS:\n{output}"
    );
    let before = transport.snapshot();
    let replies = ping_replies(&ns, INSIDE_HOST, 5);
    let d = transport.snapshot() - before;
    assert!(replies > 0, "no ping replies over CSTP");
    assert!(
        d.tcp_in.packets >= u64::from(replies) && d.tcp_out.packets >= u64::from(replies),
        "{replies} ping replies with UDP blocked, but TCP {TLS_PORT} saw too few packets: {d:?}"
    );
    assert!(client.is_running(), "{}", client.output());
    assert_eq!(client.tun_addr(), Some(addr), "address changed");
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 1, "{}", lab.show_sessions_raw());
    println!(
        "Protocol with UDP blocked: {:?}",
        session_of(&sessions, "alice").get("Protocol")
    );

    nft::delete_table(&ns, "inet", "e2e_block");
    nft::delete_table(lab.gw_ns(), "inet", "e2e_block");
    let again = wait_until(DTLS_RECOVERY_GUARD, || {
        (client.dtls_established_count() >= 2).then_some(())
    });
    assert!(
        again.is_some(),
        "DTLS not re-established within {DTLS_RECOVERY_GUARD:?} after UDP was unblocked:\n{}\n\
         --- headend log ---\n{}",
        client.output(),
        lab::tail(&headend_log_plain(&lab), 40)
    );
    let second_port = client.dtls_port().expect("DTLS socket after recovery");
    println!("DTLS port before {first_port}, after recovery {second_port}");
    transport.assert_ping_over_dtls("after DTLS came back");
    let protocol = wait_until(HANG_GUARD, || {
        let _ = ping_replies(&ns, INSIDE_HOST, 1);
        let p = protocol_of(&lab, "alice");
        p.contains("DTLS-Tunnel").then_some(p)
    });
    assert!(
        protocol.is_some(),
        "show vpn-sessiondb has no DTLS-Tunnel after recovery:\n{}",
        lab.show_sessions_raw()
    );
    assert!(client.is_running(), "{}", client.output());
    assert_eq!(client.tun_addr(), Some(addr), "address changed");
    assert_eq!(lab.show_sessions().len(), 1, "{}", lab.show_sessions_raw());
    lab.assert_headend_running();
}

/// 3. `openconnect --no-dtls`: a CSTP-only tunnel that works; no UDP at all; the
///    session shows no DTLS-Tunnel.
#[test]
fn no_dtls_flag_gives_a_cstp_only_tunnel() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let transport = Transport::install(lab.client_ns());
    let mut client = lab.connect("alice", lab.password("alice"), &["--no-dtls"]);
    assert_pings(lab.client_ns(), HANG_GUARD, "--no-dtls");
    let replies = ping_replies(lab.client_ns(), INSIDE_HOST, 5);
    assert!(replies > 0, "no ping replies over CSTP");
    let output = client.output();
    assert!(!output.contains(DTLS_ESTABLISHED), "{output}");
    assert!(
        output.contains("DTLS disabled"),
        "openconnect does not say DTLS is disabled:\n{output}"
    );
    let t = transport.snapshot();
    assert_eq!(
        t.udp_out,
        Counter::default(),
        "UDP sent with --no-dtls: {t:?}"
    );
    assert_eq!(
        t.udp_in,
        Counter::default(),
        "UDP received with --no-dtls: {t:?}"
    );
    assert!(t.tcp_in.packets >= u64::from(replies), "{t:?}");
    let protocol = protocol_of(&lab, "alice");
    assert_eq!(
        protocol,
        "AnyConnect-Parent SSL-Tunnel",
        "{}",
        lab.show_sessions_raw()
    );
    assert!(
        headend_log_plain(&lab).contains("DTLS not offered"),
        "{}",
        lab.headend_log()
    );
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

/// 5. A group policy with `anyconnect ssl dtls disable` (tunnel group LOCAL-NODTLS):
///    the headend offers no DTLS, openconnect connects without it and sends no UDP.
#[test]
fn group_policy_dtls_disable_gives_a_cstp_only_tunnel() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let transport = Transport::install(lab.client_ns());
    let mut client =
        lab.connect_in_group(0, "alice", lab.password("alice"), AUTHGROUP_NO_DTLS, &[]);
    assert_pings(lab.client_ns(), HANG_GUARD, "group policy without DTLS");
    let replies = ping_replies(lab.client_ns(), INSIDE_HOST, 5);
    assert!(replies > 0, "no ping replies over CSTP");
    let output = client.output();
    println!("openconnect output:\n{output}");
    assert!(!output.contains(DTLS_ESTABLISHED), "{output}");
    assert!(
        !output.contains("X-DTLS-"),
        "the CONNECT reply offered DTLS:\n{output}"
    );
    // openconnect 9.01 reports the state it was left in: "DTLS disabled".
    assert!(
        output.contains("with SSL connected and DTLS disabled"),
        "openconnect does not report DTLS disabled:\n{output}"
    );
    let t = transport.snapshot();
    assert_eq!(t.udp_out, Counter::default(), "UDP sent: {t:?}");
    assert_eq!(t.udp_in, Counter::default(), "UDP received: {t:?}");
    let raw = lab.show_sessions_raw();
    let s = session_of(&e2e::sessiondb::parse(&raw), "alice").clone();
    assert_eq!(
        s.get("Protocol").map(String::as_str),
        Some("AnyConnect-Parent SSL-Tunnel"),
        "{raw}"
    );
    assert_eq!(
        s.get("Group Policy").map(String::as_str),
        Some("GP-NODTLS"),
        "{raw}"
    );
    assert_eq!(
        s.get("Tunnel Group").map(String::as_str),
        Some(AUTHGROUP_NO_DTLS),
        "{raw}"
    );
    assert!(
        headend_log_plain(&lab).contains("DTLS not offered"),
        "{}",
        lab.headend_log()
    );
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

/// Forged datagrams, one batch per kind of nonsense.
fn forged_batches() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let rand = probe::random_bytes;
    let hello = udp::client_hello(&rand(32));
    let mut truncated_record = udp::record(udp::APPLICATION_DATA, 1, 7, &rand(100));
    truncated_record.truncate(60);
    let mut long_claim = udp::record(udp::HANDSHAKE, 0, 0, &rand(20));
    long_claim[11..13].copy_from_slice(&0xffffu16.to_be_bytes());
    vec![
        (
            "random bytes",
            vec![rand(1), rand(13), rand(100), rand(1400), Vec::new()],
        ),
        (
            "ClientHello with a random 32-byte session id",
            vec![hello.clone(), hello.clone()],
        ),
        (
            "ClientHello with a 1-byte session id",
            vec![udp::client_hello(&rand(1))],
        ),
        (
            "ClientHello with a 33-byte session id",
            vec![udp::client_hello_declaring(33, &rand(33))],
        ),
        (
            "ClientHello declaring a 255-byte session id",
            vec![udp::client_hello_declaring(255, &rand(40))],
        ),
        (
            "truncated ClientHellos",
            [13, 25, 59, 60, 75, hello.len() - 1]
                .iter()
                .map(|&n| hello[..n].to_vec())
                .collect(),
        ),
        (
            "records with lying lengths",
            vec![truncated_record, long_claim],
        ),
        (
            "epoch-1 application data with a random body (bad MAC)",
            (0..20)
                .map(|i| udp::record(udp::APPLICATION_DATA, 1, 1000 + i, &rand(120)))
                .collect(),
        ),
        (
            "epoch-2 handshake records",
            (0..20)
                .map(|i| udp::record(udp::HANDSHAKE, 2, i, &rand(40)))
                .collect(),
        ),
        (
            "plaintext fatal alert and ChangeCipherSpec",
            vec![
                udp::record(udp::ALERT, 0, 1, &[2, 40]),
                udp::record(udp::ALERT, 1, 1, &[2, 0]),
                udp::record(udp::CHANGE_CIPHER_SPEC, 0, 2, &[1]),
            ],
        ),
        (
            "a flood of 2000 random datagrams",
            (0..2000).map(|i| rand(1 + (i * 37) % 1400)).collect(),
        ),
    ]
}

/// 4. Forged UDP on the DTLS port, from the client's own address (other ports) and from
///    another host: random bytes, ClientHellos with a random, a too-long and a lying
///    session id, truncated and lying records, a flood, and a replayed real DTLS record
///    of the session. The session is not disturbed: DTLS stays up (no new handshake),
///    the downlink keeps arriving at openconnect's socket, nothing is ever sent to the
///    forging sockets, and the headend never moves the session's DTLS peer.
#[test]
fn forged_and_replayed_datagrams_do_not_disturb_the_session() {
    let Some(lab) = lab_with_headend(2) else {
        return;
    };
    let mut client = connect_dtls(&lab, 0, &[]);
    let ns = lab.client_ns().to_owned();
    let other_ns = lab.client_host(1).ns.clone();
    let port = client.dtls_port().expect("DTLS socket");
    let transport = Transport::install(&ns);
    // What the headend sends from its UDP port to anything but openconnect's socket.
    let stray = |ns: &str, except: Option<u16>| {
        let except = except.map_or(String::new(), |p| format!("udp dport != {p} "));
        nft::must_apply(
            ns,
            &format!(
                "table inet e2e_stray {{
  counter stray {{ }}
  chain in {{
    type filter hook input priority -10; policy accept;
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} {except}counter name stray
  }}
}}
"
            ),
        );
    };
    stray(&ns, Some(port));
    stray(&other_ns, None);
    transport.assert_ping_over_dtls("before the forgeries");
    let to = SocketAddr::V4(SocketAddrV4::new(OUTSIDE_IP, TLS_PORT));

    for (what, batch) in forged_batches() {
        for from in [&ns, &other_ns] {
            let sock = udp::socket(from);
            udp::send_all(&sock, to, &batch);
        }
        transport.assert_ping_over_dtls(&format!("after {what}"));
    }

    // Replay: a real DTLS record of this session, captured on its way out, sent again
    // from another port of the client's address (what a NAT rebinding looks like, but
    // the record was seen before).
    let capture = udp::Capture::open(&ns, "eth0").expect("AF_PACKET capture");
    let _ = ping_replies(&ns, INSIDE_HOST, 2);
    let record = capture
        .next_udp(HANG_GUARD, |d| {
            d.outgoing
                && d.src.port() == port
                && *d.dst.ip() == OUTSIDE_IP
                && d.dst.port() == TLS_PORT
                && d.payload.first() == Some(&udp::APPLICATION_DATA)
        })
        .expect("a captured DTLS record of openconnect's");
    drop(capture);
    println!(
        "replaying a {}-byte DTLS record from {}",
        record.payload.len(),
        record.src
    );
    let sock = udp::socket(&ns);
    udp::send_all(&sock, to, &vec![record.payload.clone(); 5]);
    transport.assert_ping_over_dtls("after the replay");

    for n in [&ns, &other_ns] {
        let c = nft::counter(n, "inet", "e2e_stray", "stray");
        assert_eq!(
            c,
            Counter::default(),
            "the headend sent UDP from port {TLS_PORT} to a forging socket in {n}"
        );
    }
    let log = headend_log_plain(&lab);
    assert!(
        !log.contains(PEER_CHANGED),
        "the headend moved the session's DTLS peer:\n{}",
        lab::tail(&log, 40)
    );
    assert_eq!(
        client.dtls_established_count(),
        1,
        "DTLS had to be re-established:\n{}",
        client.output()
    );
    assert_eq!(
        client.dtls_port(),
        Some(port),
        "openconnect changed DTLS socket"
    );
    let raw = lab.show_sessions_raw();
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 1, "{raw}");
    assert!(
        session_of(&sessions, "alice")
            .get("Protocol")
            .is_some_and(|p| p.contains("DTLS-Tunnel")),
        "{raw}"
    );
    println!("headend counters:\n{}", lab.show_counters_raw());
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

/// Rewrites the client's DTLS datagrams statelessly, as a NAT would: outgoing from
/// `port` leave from `nat_port`, and replies to `nat_port` are handed back to `port`.
/// (Stateless, because a conntrack NAT rule would not touch the flow already tracked.)
/// The rules live in table `ip TABLE`, with counters `out` and `back`.
fn nat_rebind(ns: &str, table: &str, port: u16, nat_port: u16) {
    nft::must_apply(
        ns,
        &format!(
            "table ip {table} {{
  counter out {{ }}
  counter back {{ }}
  chain out {{
    type filter hook output priority -300; policy accept;
    ip daddr {OUTSIDE_IP} udp sport {port} udp dport {TLS_PORT} notrack udp sport set {nat_port} counter name out
  }}
  chain pre {{
    type filter hook prerouting priority -300; policy accept;
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} udp dport {nat_port} notrack udp dport set {port} counter name back
  }}
}}
"
        ),
    );
}

/// 6. NAT rebinding: mid-session the client's DTLS datagrams start arriving from
///    another UDP port. The headend follows the new port once a record from it
///    authenticates ("DTLS peer address changed"): the downlink goes to the new port,
///    DTLS stays up without a new handshake. Then the port changes back.
#[test]
fn nat_rebinding_of_the_udp_port_is_followed() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = connect_dtls(&lab, 0, &[]);
    let ns = lab.client_ns().to_owned();
    let port = client.dtls_port().expect("DTLS socket");
    let transport = Transport::install(&ns);
    transport.assert_ping_over_dtls("before the rebinding");
    let nat_port: u16 = if port == 40000 { 40001 } else { 40000 };

    nat_rebind(&ns, "e2e_nat", port, nat_port);
    transport.assert_ping_over_dtls("after the rebinding");
    let back = nft::counter(&ns, "ip", "e2e_nat", "back");
    let out = nft::counter(&ns, "ip", "e2e_nat", "out");
    println!("NAT out {out:?}, back {back:?}");
    assert!(out.packets > 0, "the NAT rule rewrote nothing: {out:?}");
    assert!(
        back.packets > 0,
        "nothing came back to the new port {nat_port}: the headend did not follow"
    );
    let log = headend_log_plain(&lab);
    let moved = format!(
        "{PEER_CHANGED} old={}:{port} new={}:{nat_port}",
        lab.client_host(0).ip,
        lab.client_host(0).ip
    );
    assert!(
        log.contains(&moved),
        "no {moved:?} in the headend log:\n{}",
        lab::tail(&log, 40)
    );
    let before = nft::counter(&ns, "ip", "e2e_nat", "back");
    let replies = ping_replies(&ns, INSIDE_HOST, 5);
    let d = nft::counter(&ns, "ip", "e2e_nat", "back") - before;
    assert!(
        replies > 0 && d.packets >= u64::from(replies),
        "{replies} replies, {d:?} datagrams to the new port"
    );

    // The NAT forgets the mapping: the original port again.
    nft::delete_table(&ns, "ip", "e2e_nat");
    transport.assert_ping_over_dtls("after the port changed back");
    let log = headend_log_plain(&lab);
    let moved_back = format!(
        "{PEER_CHANGED} old={}:{nat_port} new={}:{port}",
        lab.client_host(0).ip,
        lab.client_host(0).ip
    );
    assert!(
        log.contains(&moved_back),
        "no {moved_back:?} in the headend log:\n{}",
        lab::tail(&log, 40)
    );
    assert_eq!(
        client.dtls_established_count(),
        1,
        "DTLS had to be re-established:\n{}",
        client.output()
    );
    assert!(
        protocol_of(&lab, "alice").contains("DTLS-Tunnel"),
        "{}",
        lab.show_sessions_raw()
    );
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

/// NAT rebinding to another public address: mid-session the client's DTLS datagrams
/// arrive from a new address AND port (198.18.0.99:40000). Whatever the headend does
/// with them (follow the peer or ignore datagrams from an address without a session),
/// the session must survive and end up on DTLS again, with the same tunnel address;
/// openconnect's DPD and re-handshake (a new UDP socket, unrewritten here, the same
/// App-ID) are the fallback.
#[test]
fn nat_rebinding_to_another_address_recovers() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = connect_dtls(&lab, 0, &["--force-dpd", "5"]);
    let addr = client.tun_addr().expect("tunnel address");
    let ns = lab.client_ns().to_owned();
    let client_ip = lab.client_host(0).ip;
    let port = client.dtls_port().expect("DTLS socket");
    let transport = Transport::install(&ns);
    transport.assert_ping_over_dtls("before the rebinding");
    let nat_ip = std::net::Ipv4Addr::new(198, 18, 0, 99);
    let nat_port: u16 = if port == 40000 { 40001 } else { 40000 };
    // The NAT's public address lives on the client's link so replies reach it.
    cmd::must(&mut cmd::command(
        "ip",
        &[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{nat_ip}/24"),
            "dev",
            "eth0",
        ],
    ));
    nft::must_apply(
        &ns,
        &format!(
            "table ip e2e_nat {{
  counter out {{ }}
  counter back {{ }}
  chain out {{
    type filter hook output priority -300; policy accept;
    ip daddr {OUTSIDE_IP} udp sport {port} udp dport {TLS_PORT} notrack ip saddr set {nat_ip} udp sport set {nat_port} counter name out
  }}
  chain pre {{
    type filter hook prerouting priority -300; policy accept;
    ip saddr {OUTSIDE_IP} ip daddr {nat_ip} udp sport {TLS_PORT} udp dport {nat_port} notrack ip daddr set {client_ip} udp dport set {port} counter name back
  }}
}}
"
        ),
    );
    // Lost until one side adapts; then DTLS again (the headend following, or a new
    // DTLS connection from openconnect).
    let on_dtls = wait_until(DTLS_RECOVERY_GUARD, || {
        let before = transport.snapshot();
        let replies = ping_replies(&ns, INSIDE_HOST, 3);
        let d = transport.snapshot() - before;
        let back = nft::counter(&ns, "ip", "e2e_nat", "back");
        // Replies over DTLS: to openconnect's new socket, or via the NAT to the old one.
        (replies > 0 && d.udp_in_data.packets + back.packets >= u64::from(replies)).then_some(())
    });
    let out = nft::counter(&ns, "ip", "e2e_nat", "out");
    let back = nft::counter(&ns, "ip", "e2e_nat", "back");
    println!(
        "NAT out {out:?}, back {back:?}; DTLS connections: {}; DTLS port now {:?}",
        client.dtls_established_count(),
        client.dtls_port()
    );
    assert!(out.packets > 0, "the NAT rule rewrote nothing: {out:?}");
    assert!(
        on_dtls.is_some(),
        "the tunnel is not back on DTLS {DTLS_RECOVERY_GUARD:?} after the client's address \
         changed:\n{}\n--- headend log ---\n{}",
        client.output(),
        lab::tail(&headend_log_plain(&lab), 40)
    );
    let log = headend_log_plain(&lab);
    println!(
        "headend followed the new address: {}; show counters:\n{}",
        log.contains(PEER_CHANGED),
        lab.show_counters_raw()
    );
    assert!(client.is_running(), "{}", client.output());
    assert_eq!(client.tun_addr(), Some(addr), "address changed");
    let raw = lab.show_sessions_raw();
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 1, "{raw}");
    println!("{raw}");
    lab.assert_headend_running();
}

/// The DTLS handshake with lost server datagrams: the first ServerHello never reaches
/// openconnect (it retransmits its ClientHello, which the headend takes as a new
/// handshake), and neither does the headend's first ChangeCipherSpec+Finished (openconnect retransmits
/// its last flight to a headend that already considers the handshake complete). DTLS
/// must still come up and carry the traffic.
#[test]
fn dtls_handshake_survives_lost_server_datagrams() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let ns = lab.client_ns().to_owned();
    // UDP payload bytes: 0 content type, 3-4 epoch, 13 handshake type (first record).
    // The headend sends each flight in one datagram: ServerHello...ServerHelloDone,
    // then ChangeCipherSpec + Finished. One drop per openconnect socket (keyed by its
    // port) and flight.
    nft::must_apply(
        &ns,
        &format!(
            "table inet e2e_loss {{
  counter hello_dropped {{ }}
  counter finished_dropped {{ }}
  set hello_seen {{ type inet_service; flags dynamic; }}
  set finished_seen {{ type inet_service; flags dynamic; }}
  chain in {{
    type filter hook input priority -10; policy accept;
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} @th,64,8 22 @th,88,16 0 @th,168,8 2 udp dport != @hello_seen add @hello_seen {{ udp dport }} counter name hello_dropped drop
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} @th,64,8 20 udp dport != @finished_seen add @finished_seen {{ udp dport }} counter name finished_dropped drop
  }}
}}
"
        ),
    );
    let mut client = connect_dtls(&lab, 0, &[]);
    let hello = nft::counter(&ns, "inet", "e2e_loss", "hello_dropped");
    let finished = nft::counter(&ns, "inet", "e2e_loss", "finished_dropped");
    println!(
        "dropped: ServerHello flight {hello:?}, ChangeCipherSpec+Finished flight {finished:?}"
    );
    assert!(hello.packets >= 1, "no ServerHello was dropped");
    assert!(finished.packets >= 1, "no server Finished was dropped");
    nft::delete_table(&ns, "inet", "e2e_loss");
    let transport = Transport::install(&ns);
    transport.assert_ping_over_dtls("after the lossy handshake");
    assert!(
        protocol_of(&lab, "alice").contains("DTLS-Tunnel"),
        "{}",
        lab.show_sessions_raw()
    );
    println!("{}", client.output());
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

/// The CSTP connection dies and openconnect reconnects with its cookie: the new
/// CONNECT reply carries a new App-ID and the new TLS connection gives a new PSK, so
/// openconnect makes a new DTLS connection, which must come up (keyed from the newest
/// CSTP connection) and carry the traffic, in the same session with the same address.
#[test]
fn cstp_reconnect_rekeys_dtls() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let mut client = connect_dtls(&lab, 0, &[]);
    let addr = client.tun_addr().expect("tunnel address");
    let ns = lab.client_ns().to_owned();
    let transport = Transport::install(&ns);
    transport.assert_ping_over_dtls("before the reconnect");
    let app_ids = |c: &Client| {
        c.output()
            .lines()
            .filter(|l| l.starts_with("X-DTLS-App-ID:"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(app_ids(&client).len(), 1, "{}", client.output());

    // Abort the server's TCP socket(s) to the client (see foundation.rs): openconnect
    // sees a reset and reconnects.
    let client_ip = lab.client_host(0).ip.to_string();
    let kill = lab.exec_gw(&["ss", "-K", "-t", "-n", "dst", &client_ip]);
    assert!(kill.status.success(), "ss -K: {}", cmd::combined(&kill));
    let redone = wait_until(Duration::from_secs(90), || {
        (client.dtls_established_count() >= 2).then_some(())
    });
    assert!(
        redone.is_some(),
        "no new DTLS connection after the CSTP reconnect:\n{}\n--- headend log ---\n{}",
        client.output(),
        lab::tail(&headend_log_plain(&lab), 40)
    );
    let ids = app_ids(&client);
    assert_eq!(
        ids.len(),
        2,
        "one CONNECT reply after the reconnect expected:\n{ids:?}"
    );
    assert_ne!(
        ids[0], ids[1],
        "the App-ID did not change across the reconnect"
    );
    transport.assert_ping_over_dtls("after the reconnect");
    assert!(client.is_running(), "{}", client.output());
    assert_eq!(client.tun_addr(), Some(addr), "address changed");
    let raw = lab.show_sessions_raw();
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 1, "{raw}");
    assert!(
        session_of(&sessions, "alice")
            .get("Protocol")
            .is_some_and(|p| p.contains("DTLS-Tunnel")),
        "{raw}"
    );
    lab.assert_headend_running();
}

/// A forged plaintext fatal alert, from another port of the client's own address (as
/// anyone behind the same NAT can send), while the session's DTLS handshake is in
/// progress. Unauthenticated epoch-0 records from an address that is not the
/// handshake's peer must not reach the handshake: DTLS must come up on openconnect's
/// first attempt.
///
/// To hold the handshake open deterministically, openconnect's second flight
/// (ClientKeyExchange...Finished) is dropped once; it retransmits it after ~1 s, and
/// the alert is sent in between.
#[test]
fn forged_alert_during_the_handshake_does_not_break_it() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    forged_alert_during_handshake(&lab, &|| lab::tail(&headend_log_plain(&lab), 40));
    assert!(
        !headend_log_plain(&lab).contains("DTLS association ended"),
        "{}",
        lab::tail(&headend_log_plain(&lab), 40)
    );
    lab.assert_headend_running();
}

/// Control for [`forged_alert_during_the_handshake_does_not_break_it`]: the same steps
/// against ocserv, the reference server, which keeps the handshake to its peer's
/// address. Shows the test's expectation holds for a server that does this right.
#[test]
fn control_ocserv_forged_alert_during_the_handshake() {
    let Some(lab) = lab_with_tools(1) else {
        return;
    };
    let Some(_ocserv) = e2e::ocserv::Ocserv::start(&lab) else {
        return;
    };
    forged_alert_during_handshake(&lab, &String::new);
}

/// The steps of [`forged_alert_during_the_handshake_does_not_break_it`] against the
/// server running in `lab`; `server_log` gives its log for failure messages.
fn forged_alert_during_handshake(lab: &Lab, server_log: &dyn Fn() -> String) {
    let ns = lab.client_ns().to_owned();
    let gw = lab.gw_ns().to_owned();
    let client_ip = lab.client_host(0).ip;
    // Dropped on arrival at the server's host (silently: a drop in openconnect's own
    // output path would fail its send and the handshake with it). Once per client port,
    // so the retransmission passes.
    nft::must_apply(
        &gw,
        &format!(
            "table inet e2e_hold {{
  counter held {{ }}
  set seen {{ type inet_service; flags dynamic; }}
  chain in {{
    type filter hook input priority -10; policy accept;
    ip saddr {client_ip} ip daddr {OUTSIDE_IP} udp dport {TLS_PORT} @th,64,8 22 @th,88,16 0 @th,168,8 16 udp sport != @seen add @seen {{ udp sport }} counter name held drop
  }}
}}
"
        ),
    );
    let mut client = lab.spawn_client(0, "alice", lab.password("alice"), &[]);
    // The alert must arrive before openconnect retransmits (~1 s later; this polls
    // every 100 ms).
    let held = wait_until(HANG_GUARD, || {
        (nft::counter(&gw, "inet", "e2e_hold", "held").packets > 0).then_some(())
    });
    assert!(
        held.is_some(),
        "openconnect's ClientKeyExchange flight never went out:\n{}",
        client.output()
    );
    let alert = udp::record(udp::ALERT, 0, 1, &[2, 40]);
    let sock = udp::socket(&ns);
    udp::send_all(
        &sock,
        SocketAddr::V4(SocketAddrV4::new(OUTSIDE_IP, TLS_PORT)),
        &[alert],
    );
    if let Err(e) = client.wait_connected(HANG_GUARD) {
        panic!("{e}");
    }
    let up = wait_until(DTLS_RECOVERY_GUARD, || {
        (client.dtls_established_count() > 0).then_some(())
    });
    let output = client.output();
    assert!(
        up.is_some(),
        "DTLS never came up:\n{output}\n--- server log ---\n{}",
        server_log()
    );
    let first_attempt = output
        .split(DTLS_ESTABLISHED)
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("DTLS handshake"))
        .collect::<Vec<_>>();
    assert!(
        first_attempt.is_empty(),
        "the forged alert broke the DTLS handshake; openconnect logged {first_attempt:?} \
         before DTLS came up on a later attempt\n--- server log ---\n{}",
        server_log()
    );
    let transport = Transport::install(&ns);
    transport.assert_ping_over_dtls("after the handshake");
    assert!(client.is_running(), "{}", client.output());
}

/// NAT rebinding with two sessions behind one public address (an office NAT): alice
/// and bob connect from the same address, then the NAT moves both their UDP ports.
/// The headend must follow each session to its own new port.
#[test]
fn nat_rebinding_with_two_sessions_behind_one_address() {
    let Some(lab) = lab_with_headend(1) else {
        return;
    };
    let ns = lab.client_ns().to_owned();
    let mut clients = Vec::new();
    for user in ["alice", "bob"] {
        let c = lab.connect_from(0, user, lab.password(user), &[]);
        let up = wait_until(HANG_GUARD, || {
            c.output().contains(DTLS_ESTABLISHED).then_some(())
        });
        assert!(up.is_some(), "no DTLS for {user}:\n{}", c.output());
        clients.push(c);
    }
    // Both scripts route 198.18.1.0/24 to their own TUN (the last one wins): give each
    // session's address its own table, so `ping -I ADDR` uses that session's tunnel.
    let mut sessions = Vec::new();
    for (k, c) in clients.iter().enumerate() {
        let addr = c.tun_addr().expect("tunnel address");
        let table = (100 + k).to_string();
        for args in [
            vec![
                "ip",
                "rule",
                "add",
                "from",
                &addr.to_string(),
                "lookup",
                &table,
            ],
            vec![
                "ip",
                "route",
                "add",
                lab::SPLIT_INCLUDE,
                "dev",
                c.ifname(),
                "table",
                &table,
            ],
        ] {
            let out = lab::exec_in(&ns, &args);
            assert!(out.status.success(), "{args:?}: {}", cmd::combined(&out));
        }
        let port = c.dtls_port().expect("DTLS socket");
        sessions.push((c.user().to_owned(), addr, port));
    }
    for (user, addr, port) in &sessions {
        assert!(
            lab::wait_ping(&ns, INSIDE_HOST, HANG_GUARD).is_some()
                && ping_from_addr(&ns, *addr, 3) > 0,
            "{user} ({addr}, DTLS port {port}): no ping through the tunnel"
        );
    }

    for (k, (_, _, port)) in sessions.iter().enumerate() {
        nat_rebind(&ns, &format!("e2e_nat{k}"), *port, 40000 + k as u16);
    }
    let client_ip = lab.client_host(0).ip;
    let mut failures = Vec::new();
    for (k, (user, addr, port)) in sessions.iter().enumerate() {
        let table = format!("e2e_nat{k}");
        let nat_port = 40000 + k as u16;
        // Hang guard: the first datagrams from the new port are what the headend
        // follows; more pings only give it more chances.
        let followed = wait_until(HANG_GUARD, || {
            let before = nft::counter(&ns, "ip", &table, "back");
            let replies = ping_from_addr(&ns, *addr, 3);
            let d = nft::counter(&ns, "ip", &table, "back") - before;
            (replies > 0 && d.packets >= u64::from(replies)).then_some(())
        });
        let moved = format!("{PEER_CHANGED} old={client_ip}:{port} new={client_ip}:{nat_port}");
        let logged = headend_log_plain(&lab).contains(&moved);
        println!(
            "{user}: DTLS port {port} -> {nat_port}: followed {}, logged {logged}, NAT out {:?}, back {:?}",
            followed.is_some(),
            nft::counter(&ns, "ip", &table, "out"),
            nft::counter(&ns, "ip", &table, "back")
        );
        if followed.is_none() || !logged {
            failures.push(format!(
                "{user} (DTLS port {port} rewritten to {nat_port}): the headend did not follow \
                 (DTLS replies at the new port: {}, {moved:?} logged: {logged})",
                followed.is_some()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- headend log ---\n{}\n--- show counters ---\n{}",
        failures.join("\n"),
        lab::tail(&headend_log_plain(&lab), 30),
        lab.show_counters_raw()
    );
    for c in &mut clients {
        assert_eq!(c.dtls_established_count(), 1, "{}", c.output());
        assert!(c.is_running(), "{}", c.output());
    }
    lab.assert_headend_running();
}

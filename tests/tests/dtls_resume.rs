//! End-to-end tests of issue 14's session-resume DTLS (legacy-dtls.md), the mode of
//! Cisco AnyConnect / Secure Client, with stock openconnect forced into it
//! (`--dtls12-ciphers=…` sends only `X-DTLS12-CipherSuite`, `--dtls-ciphers=…` only
//! `X-DTLS-CipherSuite`, neither offers PSK-NEGOTIATE): for each served suite DTLS is
//! resumed (openconnect logs the suite, never "possible MITM attack"), carries the
//! traffic (nftables counters in the client namespace), and a forged ClientHello
//! with another session id gets no answer. Deadlines are hang guards only.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use e2e::lab::{self, HANG_GUARD, INSIDE_HOST, OUTSIDE_IP, TLS_PORT};
use e2e::nft::{self, Counter};
use e2e::{Client, Lab, cmd, udp, wait_until};

const DTLS_ESTABLISHED: &str = "Established DTLS connection";
const MITM: &str = "possible MITM attack";
/// Datagrams this long are tunnelled pings; DTLS keepalive/DPD records are shorter.
const DATA_SIZED: u32 = 100;
const TABLE: &str = "e2e_resume";
/// Hang guard for openconnect's DTLS DPD (2 x 5 s here) and its next DTLS attempt
/// (every 60 s in 9.01).
const DTLS_RECOVERY_GUARD: Duration = Duration::from_secs(180);

fn lab_with_headend() -> Option<Lab> {
    let lab = Lab::with_clients(1)?;
    if !cmd::in_path("nft") {
        assert!(!lab::required(), "E2E_REQUIRED=1 but `nft` not found");
        eprintln!("SKIP: `nft` not found (run netns/install-deps.sh)");
        return None;
    }
    lab.start_headend();
    Some(lab)
}

/// Counters in the client namespace: data-sized UDP from the headend's port, and
/// anything from that port to a socket other than openconnect's (`stray`).
/// Replaces an earlier table (openconnect's DTLS port changes on each new attempt).
fn install_counters(ns: &str, oc_port: u16) {
    // No table yet is fine.
    let _ = nft::apply(ns, &format!("delete table inet {TABLE}\n"));
    nft::must_apply(
        ns,
        &format!(
            "table inet {TABLE} {{
  counter udp_in_data {{ }}
  counter stray {{ }}
  chain in {{
    type filter hook input priority -10; policy accept;
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} meta length >= {DATA_SIZED} counter name udp_in_data
    ip saddr {OUTSIDE_IP} udp sport {TLS_PORT} udp dport != {oc_port} counter name stray
  }}
}}
"
        ),
    );
}

/// Pings the inside host 5 times; every reply must have come as a data-sized DTLS
/// datagram (the downlink is on DTLS).
fn assert_ping_over_dtls(lab: &Lab, what: &str) {
    let ns = lab.client_ns();
    let answered = wait_until(HANG_GUARD, || {
        lab.ping_from_client(INSIDE_HOST).then_some(())
    });
    assert!(answered.is_some(), "{what}: the inside host never answered");
    let c = |name| nft::counter(ns, "inet", TABLE, name);
    let before = c("udp_in_data");
    let out = lab::exec_in(
        ns,
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            &INSIDE_HOST.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: u64 = text
        .split(", ")
        .find_map(|f| {
            f.strip_suffix(" received")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0);
    let d = c("udp_in_data").packets - before.packets;
    assert!(replies > 0, "{what}: no ping replies:\n{text}");
    assert!(
        d >= replies,
        "{what}: {replies} replies but {d} data-sized DTLS datagrams (downlink not on DTLS?)"
    );
}

/// Connects alice with `extra` (forcing a resume-mode suite) and checks everything
/// for that suite; `expect` is the suite part of openconnect's log line.
fn resume_with(extra: &[&str], expect: &str, reply_header: &str) -> Option<(Lab, Client)> {
    let lab = lab_with_headend()?;
    let client = lab.connect("alice", lab.password("alice"), extra);
    let up = wait_until(HANG_GUARD, || {
        client.output().contains(DTLS_ESTABLISHED).then_some(())
    });
    let out = client.output();
    assert!(
        up.is_some(),
        "openconnect did not log {DTLS_ESTABLISHED:?}:\n{out}\n--- headend log ---\n{}",
        lab::tail(&lab.headend_log(), 40)
    );
    assert!(!out.contains(MITM), "{out}");
    assert!(!out.contains("X-DTLS-App-ID"), "PSK mode offered:\n{out}");
    assert!(
        out.lines().any(|l| l.starts_with("X-DTLS-Session-ID: ")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(reply_header)),
        "no `{reply_header}` in the reply:\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains(DTLS_ESTABLISHED))
        .unwrap_or_default();
    assert!(
        line.contains(expect),
        "expected {expect} in openconnect's line: {line}"
    );
    let port = client.dtls_port().expect("openconnect has a DTLS socket");
    install_counters(lab.client_ns(), port);
    assert_ping_over_dtls(&lab, "after connecting");
    let sessions = lab.wait_sessions("alice on DTLS-Tunnel", |s| {
        s.iter()
            .any(|s| s.get("Protocol").is_some_and(|p| p.contains("DTLS-Tunnel")))
    });
    assert_eq!(sessions.len(), 1);
    // ASA's Encryption / Hashing lines name the DTLS suite.
    let raw = lab.show_sessions_raw();
    assert!(
        raw.contains("DTLS-Tunnel: (1)AES-GCM-256") && raw.contains("DTLS-Tunnel: (1)SHA384"),
        "{raw}"
    );
    Some((lab, client))
}

#[test]
fn resume_aes256_gcm_sha384() {
    let Some((lab, mut client)) = resume_with(
        &["--dtls12-ciphers=AES256-GCM-SHA384"],
        "(DTLS1.2)-(RSA)-(AES-256-GCM)",
        "X-DTLS12-CipherSuite: AES256-GCM-SHA384",
    ) else {
        return;
    };
    // A forged ClientHello with another session id, from another socket of the
    // client's address: nothing may come back, and the session stays on DTLS.
    let to = SocketAddr::V4(SocketAddrV4::new(OUTSIDE_IP, TLS_PORT));
    let sid: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(5))
        .collect();
    let sock = udp::socket(lab.client_ns());
    udp::send_all(&sock, to, &vec![udp::client_hello(&sid); 3]);
    assert_ping_over_dtls(&lab, "after the forged ClientHello");
    assert_eq!(
        nft::counter(lab.client_ns(), "inet", TABLE, "stray"),
        Counter::default(),
        "the headend answered a ClientHello with a wrong session id"
    );
    assert_eq!(client.dtls_established_count(), 1, "{}", client.output());
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

#[test]
fn resume_ecdhe_rsa_aes256_gcm_sha384() {
    let Some((lab, mut client)) = resume_with(
        &["--dtls12-ciphers=ECDHE-RSA-AES256-GCM-SHA384"],
        "(DTLS1.2)-(ECDHE-RSA)-(AES-256-GCM)",
        "X-DTLS12-CipherSuite: ECDHE-RSA-AES256-GCM-SHA384",
    ) else {
        return;
    };
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

#[test]
fn resume_oc_dtls12_aes256_gcm() {
    let Some((lab, mut client)) = resume_with(
        &["--dtls-ciphers=OC-DTLS1_2-AES256-GCM"],
        "(DTLS1.2)-(RSA)-(AES-256-GCM)",
        "X-DTLS-CipherSuite: OC-DTLS1_2-AES256-GCM",
    ) else {
        return;
    };
    assert!(
        client
            .output()
            .lines()
            .any(|l| l.starts_with("X-DTLS-MTU: ")),
        "{}",
        client.output()
    );
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

fn session_ids(c: &Client) -> Vec<String> {
    c.output()
        .lines()
        .filter(|l| l.starts_with("X-DTLS-Session-ID:"))
        .map(str::to_owned)
        .collect()
}

/// UDP blocked mid-session: openconnect's DPD gives up on DTLS, CSTP carries the
/// traffic, and once UDP is back the client resumes DTLS again (a fresh session on
/// the headend, same Session-ID). Then a CSTP reconnect: the new CONNECT gets a new
/// Session-ID and DTLS is resumed once more, keyed from that CONNECT. Never a MITM
/// warning, always the same session and address.
#[test]
fn resume_survives_udp_loss_and_cstp_reconnect() {
    let Some((lab, mut client)) = resume_with(
        &["--dtls12-ciphers=AES256-GCM-SHA384", "--force-dpd", "5"],
        "(DTLS1.2)-(RSA)-(AES-256-GCM)",
        "X-DTLS12-CipherSuite: AES256-GCM-SHA384",
    ) else {
        return;
    };
    let addr = client.tun_addr().expect("tunnel address");
    let ns = lab.client_ns().to_owned();
    let client_ip = lab.client_host(0).ip;
    // Silent drops on both sides (see dtls.rs: a drop in the client's output hook
    // would fail its send at once instead of exercising DPD).
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
    block(&ns, &format!("ip saddr {OUTSIDE_IP} udp sport {TLS_PORT}"));
    block(
        lab.gw_ns(),
        &format!("ip saddr {client_ip} ip daddr {OUTSIDE_IP} udp dport {TLS_PORT}"),
    );
    let over_cstp = wait_until(DTLS_RECOVERY_GUARD, || {
        (client
            .output()
            .contains("DTLS Dead Peer Detection detected dead peer")
            && lab.ping_from_client(INSIDE_HOST))
        .then_some(())
    });
    assert!(
        over_cstp.is_some(),
        "no CSTP fallback with UDP blocked:\n{}",
        client.output()
    );
    nft::delete_table(&ns, "inet", "e2e_block");
    nft::delete_table(lab.gw_ns(), "inet", "e2e_block");
    let again = wait_until(DTLS_RECOVERY_GUARD, || {
        (client.dtls_established_count() >= 2).then_some(())
    });
    assert!(
        again.is_some(),
        "DTLS not resumed again after UDP came back:\n{}\n--- headend log ---\n{}",
        client.output(),
        lab::tail(&lab.headend_log(), 40)
    );
    install_counters(&ns, client.dtls_port().expect("DTLS socket"));
    assert_ping_over_dtls(&lab, "after UDP came back");

    let kill = lab.exec_gw(&["ss", "-K", "-t", "-n", "dst", &client_ip.to_string()]);
    assert!(kill.status.success(), "ss -K: {}", cmd::combined(&kill));
    let redone = wait_until(DTLS_RECOVERY_GUARD, || {
        (client.dtls_established_count() >= 3).then_some(())
    });
    assert!(
        redone.is_some(),
        "DTLS not resumed after the CSTP reconnect:\n{}\n--- headend log ---\n{}",
        client.output(),
        lab::tail(&lab.headend_log(), 40)
    );
    let ids = session_ids(&client);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(
        ids[0], ids[1],
        "the Session-ID did not change with the CONNECT"
    );
    install_counters(&ns, client.dtls_port().expect("DTLS socket"));
    assert_ping_over_dtls(&lab, "after the CSTP reconnect");
    // Replaying the first CONNECT's Session-ID (now stale) from another socket
    // gets nothing: only the newest CONNECT's id is routed.
    let old_hex = ids[0].trim_start_matches("X-DTLS-Session-ID:").trim();
    let old: Vec<u8> = (0..old_hex.len() / 2)
        .map(|i| u8::from_str_radix(&old_hex[2 * i..2 * i + 2], 16).expect("hex Session-ID"))
        .collect();
    assert_eq!(old.len(), 32, "{old_hex}");
    let to = SocketAddr::V4(SocketAddrV4::new(OUTSIDE_IP, TLS_PORT));
    udp::send_all(&udp::socket(&ns), to, &vec![udp::client_hello(&old); 3]);
    assert_ping_over_dtls(&lab, "after replaying the old Session-ID");
    assert_eq!(
        nft::counter(&ns, "inet", TABLE, "stray"),
        Counter::default(),
        "the headend answered a ClientHello with a stale Session-ID"
    );
    let out = client.output();
    assert!(!out.contains(MITM), "{out}");
    assert!(client.is_running(), "{out}");
    assert_eq!(client.tun_addr(), Some(addr), "address changed");
    assert_eq!(lab.show_sessions().len(), 1, "{}", lab.show_sessions_raw());
    lab.assert_headend_running();
}

/// `anyconnect dpd-interval gateway 5` with the client's DPD off: UDP is cut both
/// ways, only the server's own DTLS DPD can notice, and it moves the downlink to
/// CSTP (pings from the inside host to the client arrive over TCP). openconnect
/// itself never declares DTLS dead here.
#[test]
fn server_dpd_moves_a_dead_dtls_downlink_to_cstp() {
    let Some(lab) = Lab::with_clients(1) else {
        return;
    };
    if !cmd::in_path("nft") {
        assert!(!lab::required(), "E2E_REQUIRED=1 but `nft` not found");
        return;
    }
    let mut cfg = std::fs::read_to_string(lab.config_path()).expect("read lab config");
    cfg.push_str(
        "group-policy GP-EMPLOYEES attributes\n anyconnect dpd-interval client none gateway 5\n",
    );
    std::fs::write(lab.config_path(), cfg).expect("write lab config");
    lab.start_headend();
    let mut client = lab.connect("alice", lab.password("alice"), &[]);
    let up = wait_until(HANG_GUARD, || {
        client.output().contains(DTLS_ESTABLISHED).then_some(())
    });
    assert!(up.is_some(), "no DTLS:\n{}", client.output());
    let addr = client.tun_addr().expect("tunnel address");
    let ns = lab.client_ns().to_owned();
    install_counters(&ns, client.dtls_port().expect("DTLS socket"));
    assert_ping_over_dtls(&lab, "before blocking UDP");
    nft::must_apply(
        &ns,
        &format!(
            "table inet e2e_tcp {{
  counter tcp_in_data {{ }}
  chain in {{
    type filter hook input priority -10; policy accept;
    ip saddr {OUTSIDE_IP} tcp sport {TLS_PORT} meta length >= 120 counter name tcp_in_data
  }}
}}
"
        ),
    );
    let client_ip = lab.client_host(0).ip;
    for (n, rule) in [
        (
            ns.clone(),
            format!("ip saddr {OUTSIDE_IP} udp sport {TLS_PORT}"),
        ),
        (
            lab.gw_ns().to_owned(),
            format!("ip saddr {client_ip} ip daddr {OUTSIDE_IP} udp dport {TLS_PORT}"),
        ),
    ] {
        nft::must_apply(
            &n,
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
    }
    const SERVER_DPD: &str = "DTLS DPD: no answer from the client; downlink now over CSTP";
    let noticed = wait_until(Duration::from_secs(90), || {
        lab.headend_log().contains(SERVER_DPD).then_some(())
    });
    assert!(
        noticed.is_some(),
        "the headend never noticed the dead DTLS path:\n{}",
        lab::tail(&lab.headend_log(), 40)
    );
    lab.wait_sessions("alice off DTLS-Tunnel", |s| {
        s.len() == 1
            && s[0]
                .get("Protocol")
                .is_some_and(|p| !p.contains("DTLS-Tunnel"))
    });
    let before = nft::counter(&ns, "inet", "e2e_tcp", "tcp_in_data");
    let _ = lab.exec_inside(&[
        "ping",
        "-n",
        "-q",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        &addr.to_string(),
    ]);
    let d = nft::counter(&ns, "inet", "e2e_tcp", "tcp_in_data").packets - before.packets;
    assert!(
        d >= 3,
        "3 pings to the client, but only {d} data-sized TCP segments reached it"
    );
    assert!(
        !client
            .output()
            .contains("DTLS Dead Peer Detection detected dead peer"),
        "the client's DPD, not the server's, noticed:\n{}",
        client.output()
    );
    assert!(client.is_running(), "{}", client.output());
    lab.assert_headend_running();
}

/// Control: the same client and the same forced suite against ocserv (Debian), the
/// reference server, in its legacy (resume) mode. If this passes and a headend test
/// fails, the headend is at fault.
#[test]
fn control_ocserv_resume_aes256_gcm_sha384() {
    let Some(lab) = Lab::with_clients(1) else {
        return;
    };
    if !cmd::in_path("nft") {
        assert!(!lab::required(), "E2E_REQUIRED=1 but `nft` not found");
        return;
    }
    let Some(_ocserv) = e2e::ocserv::Ocserv::start(&lab) else {
        return;
    };
    let client = lab.connect(
        "alice",
        lab.password("alice"),
        &["--dtls12-ciphers=AES256-GCM-SHA384"],
    );
    let up = wait_until(HANG_GUARD, || {
        client.output().contains(DTLS_ESTABLISHED).then_some(())
    });
    let out = client.output();
    assert!(up.is_some(), "ocserv: no DTLS:\n{out}");
    assert!(!out.contains(MITM), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("X-DTLS12-CipherSuite: AES256-GCM-SHA384")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(DTLS_ESTABLISHED) && l.contains("(DTLS1.2)-(RSA)-(AES-256-GCM)")),
        "{out}"
    );
    install_counters(lab.client_ns(), client.dtls_port().expect("DTLS socket"));
    assert_ping_over_dtls(&lab, "ocserv");
}

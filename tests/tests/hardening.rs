//! End-to-end tests of issue 17 (hardening) with stock openconnect in the lab:
//! threat-detection shuns, local user lockout. Deadlines are hang guards only.

use std::fs;

use e2e::lab::HANG_GUARD;
use e2e::{Client, Lab, cmd};

/// A lab with `clients` client namespaces whose config gets `extra` appended.
fn lab_with(clients: usize, extra: &str) -> Option<Lab> {
    let lab = Lab::with_clients(clients)?;
    let mut cfg = fs::read_to_string(lab.config_path()).expect("read lab config");
    cfg.push_str(extra);
    fs::write(lab.config_path(), cfg).expect("write lab config");
    lab.start_headend();
    Some(lab)
}

/// Runs openconnect to its end (it must fail) and returns its output.
fn failed_login(lab: &Lab, host: usize, user: &str, password: &str) -> String {
    let mut client: Client = lab.spawn_client(host, user, password, &[]);
    let status = client.wait_exit(HANG_GUARD).unwrap_or_else(|| {
        panic!(
            "openconnect still running after {HANG_GUARD:?}:\n{}",
            client.output()
        )
    });
    let output = client.output();
    assert!(!status.success(), "openconnect succeeded:\n{output}");
    assert_eq!(client.tun_addr(), None, "a tunnel address: {output}");
    output
}

/// `headend ARGS` (an admin command) must succeed; returns its stdout.
fn admin(lab: &Lab, args: &[&str]) -> String {
    let out = lab.headend_cli(args);
    assert!(
        out.status.success(),
        "headend {} failed: {}",
        args.join(" "),
        cmd::combined(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const THRESHOLD: usize = 3;

/// N+1 wrong passwords from one source: the source is shunned (`show shun`,
/// 733201 in the log), its right password is refused before TLS, another
/// source still logs in; `clear shun` lets the first source in again.
#[test]
fn password_spraying_source_is_shunned_until_clear_shun() {
    let Some(lab) = lab_with(
        2,
        &format!(
            "threat-detection service remote-access-authentication hold-down 10 threshold {THRESHOLD}\n"
        ),
    ) else {
        return;
    };
    let sprayer = lab.client_host(0).ip.to_string();
    let password = lab.password("alice").to_owned();
    for attempt in 1..=THRESHOLD {
        let out = failed_login(&lab, 0, "alice", "wrong-password");
        assert!(
            out.contains("Login failed"),
            "attempt {attempt} was not refused by the login form:\n{out}"
        );
    }
    let shuns = admin(&lab, &["show", "shun"]);
    assert_eq!(
        shuns,
        format!("shun (outside) {sprayer} 0.0.0.0 0 0 0\n"),
        "after {THRESHOLD} failures"
    );
    let out = failed_login(&lab, 0, "alice", "wrong-password");
    assert!(
        !out.contains("Login failed"),
        "attempt {} reached the login form while shunned:\n{out}",
        THRESHOLD + 1
    );
    let out = failed_login(&lab, 0, "alice", &password);
    assert!(
        !out.contains("Login failed"),
        "the right password reached the login form while shunned:\n{out}"
    );
    assert!(lab.show_sessions().is_empty(), "a session while shunned");
    let log = lab.headend_log();
    assert!(
        log.contains(&format!(
            "%ASA-4-733201: Threat-detection: Service[remote-access-authentication] Peer[{sprayer}]: failure threshold of {THRESHOLD} exceeded: adding shun to interface outside"
        )),
        "no 733201 line in the headend log:\n{log}"
    );
    let svc = admin(
        &lab,
        &[
            "show",
            "threat-detection",
            "service",
            "remote-access-authentication",
        ],
    );
    assert!(svc.contains("State       : Enabled"), "{svc}");
    assert!(svc.contains(&format!("Threshold   : {THRESHOLD}")), "{svc}");
    assert!(svc.contains("blocking        :          1"), "{svc}");

    // Another source is not affected.
    let mut other = lab.connect_from(1, "alice", &password, &[]);
    other.stop();

    admin(&lab, &["clear", "shun"]);
    assert_eq!(admin(&lab, &["show", "shun"]), "");
    assert!(
        lab.headend_log()
            .contains(&format!("%ASA-4-401003: Shun deleted: {sprayer}"))
    );
    let mut again = lab.connect_from(0, "alice", &password, &[]);
    again.stop();
    lab.assert_headend_running();
}

/// `no shun IP` lifts one shun; the counters start again from zero after it.
#[test]
fn no_shun_lifts_one_source() {
    let Some(lab) = lab_with(
        1,
        "threat-detection service remote-access-authentication hold-down 10 threshold 1\n",
    ) else {
        return;
    };
    let src = lab.client_host(0).ip.to_string();
    failed_login(&lab, 0, "bob", "wrong-password");
    assert!(admin(&lab, &["show", "shun"]).contains(&src));
    let out = lab.headend_cli(&["no", "shun", "198.18.0.250"]);
    assert!(
        !out.status.success(),
        "no shun of an unknown address succeeded"
    );
    assert!(cmd::combined(&out).contains("Shun not found"));
    admin(&lab, &["no", "shun", &src]);
    assert_eq!(admin(&lab, &["show", "shun"]), "");
    let password = lab.password("bob").to_owned();
    let mut c = lab.connect("bob", &password, &[]);
    c.stop();
}

/// `aaa local authentication attempts max-fail 2`: two wrong passwords lock bob
/// (113006); his right password then fails, alice is unaffected; `clear aaa
/// local user lockout username bob` unlocks him (113007).
#[test]
fn local_user_lockout_and_clear() {
    let Some(lab) = lab_with(1, "aaa local authentication attempts max-fail 2\n") else {
        return;
    };
    let bob = lab.password("bob").to_owned();
    let alice = lab.password("alice").to_owned();
    for _ in 0..2 {
        failed_login(&lab, 0, "bob", "wrong-password");
    }
    let locked = admin(&lab, &["show", "aaa", "local", "user", "locked"]);
    assert!(
        locked
            .lines()
            .any(|l| l.ends_with(" bob") && l.contains(" Y ")),
        "bob not locked:\n{locked}"
    );
    assert!(!locked.contains("alice"), "{locked}");
    assert!(lab.headend_log().contains(
        "%ASA-6-113006: User 'bob' locked out on exceeding '2' successive failed authentication attempts"
    ));
    let out = failed_login(&lab, 0, "bob", &bob);
    assert!(out.contains("Login failed"), "{out}");
    let mut a = lab.connect("alice", &alice, &[]);
    a.stop();

    admin(
        &lab,
        &[
            "clear", "aaa", "local", "user", "lockout", "username", "bob",
        ],
    );
    let locked = admin(&lab, &["show", "aaa", "local", "user", "locked"]);
    assert!(!locked.contains("bob"), "{locked}");
    assert!(
        lab.headend_log()
            .contains("%ASA-6-113007: User 'bob' unlocked by 'enable_15'")
    );
    let mut b = lab.connect("bob", &bob, &[]);
    b.stop();
    lab.assert_headend_running();
}

/// Keeps opening TCP connections to the headend that never start TLS (half-open
/// handshakes): 40 new ones every 0.2 s, the newest 400 held, for at most 60 s.
const HALF_OPEN_FLOOD: &str = r#"
import socket, sys, time
held = []
for round in range(300):
    for _ in range(40):
        try:
            s = socket.socket()
            s.settimeout(1)
            s.connect((sys.argv[1], int(sys.argv[2])))
            held.append(s)
        except OSError:
            pass
    while len(held) > 400:
        held.pop(0).close()
    print("round", round, "held", len(held), flush=True)
    time.sleep(0.2)
"#;

/// A flood of half-open connections from one source: the source's excess
/// connections are closed at accept (`conn-refused-half-open`), a session
/// already up from that same source keeps working, and a second source logs in.
#[test]
fn half_open_flood_from_one_source_does_not_block_another() {
    let Some(lab) = lab_with(2, "") else {
        return;
    };
    let alice = lab.password("alice").to_owned();
    let bob = lab.password("bob").to_owned();
    let mut before = lab.connect_from(0, "alice", &alice, &[]);
    let addr = lab.tls_addr();
    let flood = lab.spawn_in(
        &lab.client_host(0).ns.clone(),
        "flood",
        &[
            "python3",
            "-c",
            HALF_OPEN_FLOOD,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ],
    );
    let refused = |c: &str| -> u64 {
        c.lines()
            .find_map(|l| l.strip_prefix("conn-refused-half-open"))
            .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse().ok())
            .unwrap_or(0)
    };
    let seen = e2e::wait_until(HANG_GUARD, || {
        let c = lab.show_counters_raw();
        (refused(&c) > 100).then_some(c)
    });
    assert!(
        seen.is_some(),
        "the half-open flood was never refused:\n{}\nflood: {}",
        lab.show_counters_raw(),
        flood.output()
    );
    let mut second = lab.connect_from(1, "bob", &bob, &[]);
    assert!(
        e2e::lab::wait_ping(&lab.client_host(1).ns, e2e::lab::INSIDE_HOST, HANG_GUARD).is_some(),
        "bob's tunnel does not pass traffic during the flood"
    );
    assert!(
        e2e::lab::wait_ping(&lab.client_host(0).ns, e2e::lab::INSIDE_HOST, HANG_GUARD).is_some(),
        "alice's tunnel from the flooding source was hurt by the flood"
    );
    assert!(
        before.is_running(),
        "alice's openconnect ended during the flood:\n{}",
        before.output()
    );
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    drop(flood);
    second.stop();
    before.stop();
    lab.assert_headend_running();
}

/// Accounting survives a crash: alice's Start is journaled, the headend is
/// killed with SIGKILL (no Stop can be sent), and the restarted headend sends
/// her Stop with Acct-Terminate-Cause NAS-Reboot, once, and clears the journal.
/// Another crash and restart after that sends no second Stop.
#[test]
fn accounting_stop_after_kill_9_is_sent_once_at_restart() {
    use e2e::radius::{self as radius, RadiusLab, RadiusSetup};
    let Some(rl) = RadiusLab::start(RadiusSetup {
        config: format!(
            "access-list VPN-FILTER extended permit ip any any\n!\n{}",
            radius::tunnel_group_config(None)
        ),
        ..RadiusSetup::default()
    }) else {
        return;
    };
    let lab = &rl.lab;
    let ise = &rl.primary;
    let is = |r: &std::collections::HashMap<String, String>, status: &str, id: &str| {
        r.get("Acct-Status-Type").map(String::as_str) == Some(status)
            && r.get("Acct-Session-Id").map(String::as_str) == Some(id)
    };
    let mut alice = rl.login(0, "alice");
    let records = ise.wait_accounting("a Start for alice", |rs| {
        rs.iter().any(|r| {
            r.get("Acct-Status-Type").map(String::as_str) == Some("Start")
                && r.get("User-Name").map(String::as_str) == Some("alice")
        })
    });
    let start = records
        .iter()
        .find(|r| r.get("User-Name").map(String::as_str) == Some("alice"))
        .expect("alice's Start");
    let id = start["Acct-Session-Id"].clone();
    let journal = lab.journal_path();
    assert!(
        fs::read_to_string(&journal)
            .unwrap_or_default()
            .starts_with("S "),
        "alice's Start is not in the journal {}",
        journal.display()
    );

    lab.signal_headend(libc::SIGKILL);
    alice.stop();
    assert!(
        !ise.accounting_records().iter().any(|r| is(r, "Stop", &id)),
        "a Stop before the restart: SIGKILL cannot send one"
    );
    lab.restart_headend();
    let records = ise.wait_accounting("alice's Stop after the restart", |rs| {
        rs.iter().any(|r| is(r, "Stop", &id))
    });
    let stop = records.iter().find(|r| is(r, "Stop", &id)).expect("Stop");
    println!("Stop: {stop:#?}");
    assert_eq!(stop["Acct-Terminate-Cause"], "NAS-Reboot", "{stop:#?}");
    assert_eq!(stop["Class"], start["Class"], "{stop:#?}");
    assert_eq!(
        stop["Framed-IP-Address"], start["Framed-IP-Address"],
        "{stop:#?}"
    );
    assert!(stop.contains_key("Acct-Session-Time"), "{stop:#?}");
    assert!(lab.headend_log().contains("left open by a crash"));
    assert_eq!(
        fs::metadata(&journal).map(|m| m.len()).unwrap_or(0),
        0,
        "the journal is not cleared after the Stop"
    );

    // Crash again: nothing is owed any more, so no second Stop.
    lab.signal_headend(libc::SIGKILL);
    lab.restart_headend();
    let mut bob = rl.login(0, "bob");
    ise.wait_accounting("a Start for bob", |rs| {
        rs.iter().any(|r| {
            r.get("Acct-Status-Type").map(String::as_str) == Some("Start")
                && r.get("User-Name").map(String::as_str) == Some("bob")
        })
    });
    let stops = ise
        .accounting_records()
        .iter()
        .filter(|r| is(r, "Stop", &id))
        .count();
    assert_eq!(stops, 1, "Stops for alice's session {id}");
    assert!(!lab.headend_log().contains("left open by a crash"));
    bob.stop();
    lab.assert_headend_running();
}

/// `threat-detection service invalid-vpn-access`: a login naming a tunnel group
/// that does not exist shuns the source at once (733201 with
/// Service[invalid-vpn-access]); its next connection gets no HTTP answer, while
/// the other source still logs in.
#[test]
fn invalid_vpn_access_shuns_at_once() {
    let Some(lab) = lab_with(2, "threat-detection service invalid-vpn-access\n") else {
        return;
    };
    let src = lab.client_host(0).ip.to_string();
    let init = |group: &str| {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"init\" \
             aggregate-auth-version=\"2\"><version who=\"vpn\">9.01</version>\
             <group-select>{group}</group-select></config-auth>"
        );
        lab.exec_client(&[
            "curl",
            "-sk",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "X-Aggregate-Auth: 1",
            "-H",
            "X-Transcend-Version: 1",
            "--data-binary",
            &xml,
            &lab.url(),
        ])
    };
    // A known group: answered, not shunned.
    let ok = init(e2e::lab::AUTHGROUP);
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "200",
        "{}",
        cmd::combined(&ok)
    );
    assert_eq!(admin(&lab, &["show", "shun"]), "");
    // A group that does not exist: refused, and the source is shunned.
    let bad = init("DefaultL2LGroup-NOPE");
    assert_eq!(
        String::from_utf8_lossy(&bad.stdout),
        "200",
        "{}",
        cmd::combined(&bad)
    );
    assert_eq!(
        admin(&lab, &["show", "shun"]),
        format!("shun (outside) {src} 0.0.0.0 0 0 0\n")
    );
    assert!(lab.headend_log().contains(&format!(
        "%ASA-4-733201: Threat-detection: Service[invalid-vpn-access] Peer[{src}]"
    )));
    let after = init(e2e::lab::AUTHGROUP);
    assert_eq!(
        String::from_utf8_lossy(&after.stdout),
        "000",
        "a shunned source got an HTTP answer: {}",
        cmd::combined(&after)
    );
    let alice = lab.password("alice").to_owned();
    let mut other = lab.connect_from(1, "alice", &alice, &[]);
    other.stop();
    lab.assert_headend_running();
}

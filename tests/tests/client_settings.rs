//! End-to-end test of issue 14's pushed client settings with stock openconnect:
//! `split-dns`, `split-tunnel-all-dns`, `client-bypass-protocol` and `anyconnect ssl
//! rekey` in the group-policy reach the client (its vpnc-script sees
//! `CISCO_SPLIT_DNS`; openconnect prints the other headers with `-vv`), and a new
//! tunnel (what `rekey method new-tunnel` makes the client do) keeps the session.
//! Deadlines are hang guards only.

use std::fs;
use std::path::Path;
use std::time::Duration;

use e2e::lab::{self, HANG_GUARD};
use e2e::{Lab, cmd, wait_until};

const PUSHED: &str = "\
group-policy GP-EMPLOYEES attributes
 split-dns value corp.example lab.example
 split-tunnel-all-dns enable
 client-bypass-protocol enable
 webvpn
  anyconnect ssl rekey time 4
  anyconnect ssl rekey method new-tunnel
";

/// A vpnc-script that records the environment openconnect gives it for each call
/// (`env.connect`, `env.reconnect`, ...) and then runs the lab's minimal script.
fn recording_script(dir: &Path) -> String {
    let script = dir.join("vpnc-record.sh");
    let min = lab::workspace_root().join("netns/vpnc-script-min");
    let text = format!(
        "#!/bin/sh\nenv | grep -E '^(CISCO_|INTERNAL_IP4_)' | sort > '{}/env.'\"$reason\"\nexec /bin/sh '{}'\n",
        dir.display(),
        min.display()
    );
    fs::write(&script, text).expect("write recording vpnc-script");
    format!("--script=/bin/sh {}", script.display())
}

fn env_file(dir: &Path, reason: &str) -> Option<String> {
    fs::read_to_string(dir.join(format!("env.{reason}"))).ok()
}

/// The domains of `CISCO_SPLIT_DNS`, sorted (openconnect 9.01 prepends each
/// `X-CSTP-Split-DNS` it accumulates, so the order is reversed).
fn split_dns(env: &str) -> Vec<String> {
    let mut v: Vec<String> = env
        .lines()
        .filter_map(|l| l.strip_prefix("CISCO_SPLIT_DNS="))
        .flat_map(|d| d.split(','))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn pushed_settings_reach_the_vpnc_script_and_rekey_keeps_the_session() {
    let Some(lab) = Lab::with_clients(1) else {
        return;
    };
    let mut cfg = fs::read_to_string(lab.config_path()).expect("read lab config");
    cfg.push_str(PUSHED);
    fs::write(lab.config_path(), cfg).expect("write lab config");
    lab.start_headend();

    let script = recording_script(lab.dir());
    // The lab already passes --script and -v: the last --script wins, and a second
    // -v makes openconnect print every CONNECT reply header.
    let mut client = lab.connect("alice", lab.password("alice"), &["-v", &script]);
    let addr = client.tun_addr().expect("tunnel address");

    let env = wait_until(HANG_GUARD, || env_file(lab.dir(), "connect"))
        .unwrap_or_else(|| panic!("vpnc-script never ran for connect:\n{}", client.output()));
    assert_eq!(
        split_dns(&env),
        ["corp.example", "lab.example"],
        "CISCO_SPLIT_DNS missing or wrong:\n{env}"
    );
    assert!(
        env.lines().any(|l| l == "CISCO_DEF_DOMAIN=corp.example"),
        "{env}"
    );
    let out = client.output();
    for header in [
        "X-CSTP-Split-DNS: corp.example",
        "X-CSTP-Split-DNS: lab.example",
        "X-CSTP-Tunnel-All-DNS: true",
        "X-CSTP-Client-Bypass-Protocol: true",
        "X-CSTP-Rekey-Time: 240",
        "X-CSTP-Rekey-Method: new-tunnel",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == header),
            "openconnect did not get `{header}`:\n{out}"
        );
    }
    assert!(!out.contains("Rekey-Method: ssl"), "{out}");

    // `new-tunnel` makes the client drop its TLS connection and CONNECT again with its
    // cookie (openconnect cstp.c, REKEY_TUNNEL). The 4-minute minimum is too long for
    // a test; a reset of the TCP connection takes openconnect down the same
    // cstp_reconnect path. The session, its index and its address must stay.
    let index_before = lab
        .show_sessions()
        .first()
        .and_then(|s| s.get("Index").cloned());
    assert!(index_before.is_some(), "{}", lab.show_sessions_raw());
    let client_ip = lab.client_host(0).ip.to_string();
    let kill = lab.exec_gw(&["ss", "-K", "-t", "-n", "dst", &client_ip]);
    assert!(kill.status.success(), "ss -K: {}", cmd::combined(&kill));
    let env = wait_until(Duration::from_secs(90), || env_file(lab.dir(), "reconnect"))
        .unwrap_or_else(|| panic!("no reconnect:\n{}", client.output()));
    assert_eq!(
        split_dns(&env),
        ["corp.example", "lab.example"],
        "after the reconnect:\n{env}"
    );
    assert!(client.is_running(), "{}", client.output());
    assert_eq!(client.tun_addr(), Some(addr), "address changed");
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), 1, "{}", lab.show_sessions_raw());
    assert_eq!(
        sessions[0].get("Index").cloned(),
        index_before,
        "the new tunnel started a new session"
    );
    assert!(
        lab.ping_from_client(lab::INSIDE_HOST),
        "no traffic after the new tunnel"
    );
    lab.assert_headend_running();
}

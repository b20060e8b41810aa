//! The management plane against the real automation tools: ntc-templates' TextFSM
//! templates (as Netmiko's `use_textfsm=True` runs them) parse the headend's `show`
//! output, and the unix-socket commands answer `--json`.

use std::time::{Duration, UNIX_EPOCH};

use e2e::Lab;
use e2e::textfsm::{self, get};
use headend::sessions::SessionView;

fn view(index: u64, user: &str) -> SessionView {
    SessionView {
        index,
        username: user.into(),
        tunnel_group: "LOCAL-PW".into(),
        group_policy: "GP-EMPLOYEES".into(),
        public_ip: "198.18.0.2".parse().unwrap(),
        assigned_v4: Some("198.18.100.10".parse().unwrap()),
        assigned_v6: None,
        bytes_tx: 15_880,
        bytes_rx: 2_010,
        login_time: UNIX_EPOCH + Duration::from_secs(1_795_422_600),
        duration: Duration::from_secs(3_723),
        state: "Connected",
        protocol: "AnyConnect-Parent SSL-Tunnel DTLS-Tunnel",
        sgt: Some(10),
        filter: Some("VPN-FILTER".into()),
        audit_session_id: "c612000100000001694a2b3c".into(),
        pkts_tx_drop: 3,
        pkts_rx_drop: 12,
        dtls_cipher: None,
        tls_cipher: Some("TLS13_AES_256_GCM_SHA384"),
    }
}

/// The templates parse every layout a session can have (IPv4, dual stack, IPv6
/// only, no SGT, still authenticating), the summaries, `show version` and
/// `show access-list`, and the parsed values are ours.
#[test]
fn ntc_templates_parse_our_show_output() {
    if !textfsm::available() {
        return;
    }
    let mut dual = view(8, "bob");
    dual.assigned_v6 = Some("fd00:100::10".parse().unwrap());
    dual.sgt = None;
    let mut v6only = view(9, "carol");
    v6only.assigned_v4 = None;
    v6only.assigned_v6 = Some("fd00:100::11".parse().unwrap());
    let mut pending = view(10, "dave");
    pending.state = "Authenticated";
    pending.protocol = "AnyConnect-Parent";
    let sessions = [view(7, "alice"), dual, v6only, pending];

    let text = headend::show::anyconnect(&sessions);
    let rows = textfsm::parse("cisco_asa_show_vpn-sessiondb_anyconnect", &text);
    assert_eq!(rows.len(), 4, "{rows:?}\n{text}");
    let a = &rows[0];
    for (k, v) in [
        ("SESSION_TYPE", "AnyConnect"),
        ("USERNAME", "alice"),
        ("INDEX", "7"),
        ("ASSIGNED_IP", "198.18.100.10"),
        ("PUBLIC_IP", "198.18.0.2"),
        ("PROTOCOL", "AnyConnect-Parent SSL-Tunnel DTLS-Tunnel"),
        ("LICENSE", "AnyConnect Premium"),
        ("BYTES_TX", "15880"),
        ("BYTES_RX", "2010"),
        ("GROUP_POLICY", "GP-EMPLOYEES"),
        ("TUNNEL_GROUP", "LOCAL-PW"),
        ("LOGIN_TIME", "08:30:00"),
        ("LOGIN_YEAR", "2026"),
        ("DURATION", "1h:02m:03s"),
        ("AUDT_SESS_ID", "c612000100000001694a2b3c"),
        ("SECURITY_GRP", "10"),
    ] {
        assert_eq!(get(a, k), v, "{k} in {a:?}\n{text}");
    }
    assert_eq!(get(&rows[1], "ASSIGNED_IPV6"), "fd00:100::10", "{text}");
    assert_eq!(get(&rows[1], "SECURITY_GRP"), "none", "{text}");
    assert_eq!(get(&rows[2], "USERNAME"), "carol", "{text}");
    assert_eq!(get(&rows[2], "ASSIGNED_IP"), "0.0.0.0", "{text}");
    assert_eq!(get(&rows[3], "PROTOCOL"), "AnyConnect-Parent", "{text}");

    let totals = headend::show::SessionTotals {
        cumulative: 12,
        peak: 5,
    };
    let summary = headend::show::SessionSummary::of(&sessions, totals, 241);
    let text = headend::show::sessiondb(&summary);
    let rows = textfsm::parse("cisco_asa_show_vpn-sessiondb", &text);
    assert_eq!(rows.len(), 1, "{rows:?}\n{text}");
    let r = &rows[0];
    assert_eq!(
        get(r, "VPN_SESSION_NAME"),
        "AnyConnect Client SSL/TLS/DTLS",
        "{text}"
    );
    assert_eq!(get(r, "VPN_SESSION_ACTIVE"), "4 4", "{text}");
    assert_eq!(get(r, "VPN_SESSION_CUMULATIVE"), "12 12", "{text}");
    assert_eq!(get(r, "VPN_SESSION_PEAK_CONCURRENT"), "5 5", "{text}");
    assert_eq!(get(r, "TOTAL_ACTIVE_AND_INACTIVE"), "4", "{text}");
    assert_eq!(get(r, "DEVICE_TOTAL_VPN_CAPACITY"), "241", "{text}");
    assert_eq!(get(r, "DEVICE_LOAD_PERCENT"), "1", "{text}");
    assert_eq!(
        get(r, "TUNNELS_SUMMARY_NAME"),
        "AnyConnect-Parent SSL-Tunnel DTLS-Tunnel",
        "{text}"
    );
    assert_eq!(get(r, "TUNNELS_SUMMARY_ACTIVE"), "4 3 3", "{text}");
    assert_eq!(get(r, "TOTALS_ACTIVE"), "10", "{text}");

    let text = headend::show::version("vpn-gw");
    let rows = textfsm::parse("cisco_asa_show_version", &text);
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(get(&rows[0], "HOSTNAME"), "vpn-gw", "{text}");
    assert_eq!(
        get(&rows[0], "VERSION"),
        env!("CARGO_PKG_VERSION"),
        "{text}"
    );

    let cfg = headend::config::parse_str(
        "access-list F remark web for employees\n\
         access-list F extended permit tcp any 198.18.1.0 255.255.255.0 eq https\n\
         access-list F extended permit udp host 198.18.100.10 any range 1000 2000\n\
         access-list F extended permit icmp any any echo-reply\n\
         access-list F extended deny ip any any log\n\
         access-list SPLIT standard permit 198.18.1.0 255.255.255.0\n",
        "t.cfg",
    )
    .unwrap();
    let policy = headend::policy_state::PolicyState::new(&cfg).unwrap();
    let text = policy.show_access_list(None);
    let rows = textfsm::parse("cisco_asa_show_access-list", &text);
    // One record per header and per line, as the template makes them.
    assert_eq!(rows.len(), 8, "{rows:?}\n{text}");
    let https = rows
        .iter()
        .find(|r| get(r, "DST_PORT") == "https" || get(r, "ENTRY_PORT") == "https")
        .unwrap_or_else(|| panic!("no eq https entry in {rows:?}\n{text}"));
    assert_eq!(get(https, "ACL_NAME"), "F");
    assert_eq!(get(https, "ACTION"), "permit");
    assert!(!text.contains("implicit"), "{text}");
    assert!(
        policy
            .show_access_list_detail("F")
            .contains("implicit deny"),
        "detail keeps the implicit deny"
    );
}

/// Against a running headend: the output of the real commands, with a real
/// openconnect session, goes through the templates, and `--json` has the same
/// facts.
#[test]
fn templates_parse_live_output_and_json() {
    if !textfsm::available() {
        return;
    }
    let Some(lab) = Lab::new() else {
        return;
    };
    lab.start_headend();
    let client = lab.connect("alice", lab.password("alice"), &[]);
    let addr = client.tun_addr().expect("tunnel address");

    let text = lab.show(&["vpn-sessiondb", "anyconnect"]);
    println!("show vpn-sessiondb anyconnect:\n{text}");
    let rows = textfsm::parse("cisco_asa_show_vpn-sessiondb_anyconnect", &text);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(get(&rows[0], "USERNAME"), "alice");
    assert_eq!(get(&rows[0], "ASSIGNED_IP"), addr.to_string());
    assert_eq!(
        get(&rows[0], "PUBLIC_IP"),
        lab.client_host(0).ip.to_string()
    );
    assert_eq!(get(&rows[0], "TUNNEL_GROUP"), "LOCAL-PW");
    // The negotiated TLS suite in ASA's words (openconnect picks AES-GCM).
    assert!(
        text.contains("SSL-Tunnel: (1)AES-GCM-") && text.contains("SSL-Tunnel: (1)SHA"),
        "{text}"
    );

    let text = lab.show(&["vpn-sessiondb"]);
    println!("show vpn-sessiondb:\n{text}");
    let rows = textfsm::parse("cisco_asa_show_vpn-sessiondb", &text);
    assert_eq!(get(&rows[0], "TOTAL_ACTIVE_AND_INACTIVE"), "1", "{text}");
    assert_eq!(get(&rows[0], "TOTAL_CUMULATIVE"), "1", "{text}");

    let text = lab.show(&["vpn-sessiondb", "summary"]);
    assert!(text.contains("VPN Session Summary"), "{text}");
    assert!(
        text.contains(
            "AnyConnect Client            :      1 :          1 :           1 :        0"
        ),
        "{text}"
    );

    let text = lab.show(&["access-list"]);
    println!("show access-list:\n{text}");
    let rows = textfsm::parse("cisco_asa_show_access-list", &text);
    assert!(
        rows.iter().any(|r| get(r, "ACL_NAME") == "SPLIT"),
        "{rows:?}"
    );

    // ASA prints nothing when it clears the counters.
    let out = lab.headend_cli(&["clear", "access-list", "SPLIT", "counters"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        e2e::cmd::combined(&out)
    );
    let out = lab.headend_cli(&["clear", "access-list", "NO-SUCH-ACL", "counters"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("does not exist"),
        "{}",
        e2e::cmd::combined(&out)
    );

    let text = lab.show(&["version"]);
    let rows = textfsm::parse("cisco_asa_show_version", &text);
    assert_eq!(get(&rows[0], "HOSTNAME"), "vpn-gw", "{text}");

    let out = lab.headend_cli(&["show", "--json", "vpn-sessiondb", "anyconnect"]);
    assert!(out.status.success(), "{}", e2e::cmd::combined(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", e2e::cmd::combined(&out)));
    assert_eq!(v["sessions"][0]["username"], "alice", "{v}");
    assert_eq!(v["sessions"][0]["assigned_ip"], addr.to_string(), "{v}");
    let out = lab.headend_cli(&["show", "--json", "vpn-sessiondb", "summary"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["active"], 1, "{v}");
    let out = lab.headend_cli(&["show", "--json", "no-such-thing"]);
    assert!(
        !out.status.success(),
        "an unknown command fails under --json too"
    );

    // `headend reload` re-applies the logging settings.
    let before = lab.show(&["logging"]);
    assert!(!before.contains("Buffer logging: level"), "{before}");
    e2e::radius::append_headend_config(&lab, "logging enable\nlogging buffered informational\n");
    let out = lab.headend_cli(&["reload"]);
    let said = e2e::cmd::combined(&out);
    assert!(said.contains("logging settings re-applied"), "{said}");
    let after = lab.show(&["logging"]);
    assert!(after.contains("Syslog logging: enabled"), "{after}");
    assert!(
        after.contains("Buffer logging: level informational"),
        "{after}"
    );
}

/// SSH CLI lines for the lab: only client 0 (198.18.0.2) may connect; `admin` is
/// privilege 15 and knows the enable password; `oper` does not.
const SSH_CONFIG: &str = "\
ssh 198.18.0.2 255.255.255.255 outside
ssh timeout 5
ssh version 2
aaa authentication ssh console LOCAL
username admin password Adm1n-pw privilege 15
username oper password 0per-pw privilege 1
enable password En4ble-pw
logging enable
logging buffered informational
no logging hide username
";

/// Runs `script` (Python, with the lab venv) in namespace `ns`; (exit code, stdout,
/// stderr).
fn python_in(ns: &str, script: &str, args: &[&str]) -> (i32, String, String) {
    let py = textfsm::python();
    let mut argv: Vec<&std::ffi::OsStr> = vec![py.as_os_str(), "-c".as_ref(), script.as_ref()];
    argv.extend(args.iter().map(std::ffi::OsStr::new));
    let out = e2e::cmd::output(&mut e2e::netns::exec(ns, &argv)).unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const NETMIKO: &str = r#"
import json, sys
from netmiko import ConnectHandler
from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException
host, user, pw, secret, victim = sys.argv[1:6]
try:
    dev = ConnectHandler(device_type="cisco_asa", host=host, username=user, password=pw,
                         secret=secret, conn_timeout=10, auth_timeout=10, banner_timeout=10,
                         read_timeout_override=20,
                         # Without a secret Netmiko uses `login`, polling every
                         # 0.05 s with fast_cli and typing `login` again when a
                         # read is empty: the (deliberately slow) PBKDF2 check of
                         # a debug build on a loaded machine loses that race.
                         # fast_cli=False polls every 0.5 s.
                         fast_cli=bool(secret))
except NetmikoAuthenticationException as e:
    print("AUTH-FAILED", e); sys.exit(3)
except (NetmikoTimeoutException, OSError, EOFError) as e:
    print("CONNECT-FAILED", type(e).__name__, e); sys.exit(4)
out = {"prompt": dev.find_prompt()}
out["curpriv"] = dev.send_command("show curpriv")
out["sessions"] = dev.send_command("show vpn-sessiondb anyconnect", use_textfsm=True)
out["version"] = dev.send_command("show version", use_textfsm=True)
if victim:
    out["logoff"] = dev.send_command(f"vpn-sessiondb logoff name {victim} noconfirm")
dev.disconnect()
print(json.dumps(out))
"#;

/// A shell without `enable` (Netmiko needs enable for an ASA, so plain paramiko):
/// types the command and returns what the CLI printed.
const NO_ENABLE: &str = r#"
import sys, time, paramiko
host, user, pw, command = sys.argv[1:5]
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect(host, username=user, password=pw, look_for_keys=False, allow_agent=False, timeout=10)
ch = c.invoke_shell()
buf = b""
def until(s, limit=15):
    global buf
    end = time.time() + limit
    while s not in buf and time.time() < end:
        if ch.recv_ready():
            buf += ch.recv(65536)
        else:
            time.sleep(0.05)
until(b"> ")
ch.send(command + "\r")
until(b"marker.")
until(b"> ")
print(buf.decode(errors="replace"))
c.close()
"#;

/// Netmiko (`device_type="cisco_asa"`) logs in over SSH, enters enable, gets the
/// openconnect user as structured data from `show vpn-sessiondb anyconnect` with
/// `use_textfsm=True`, and ends her session with `vpn-sessiondb logoff`. A wrong
/// password, a source no `ssh` line allows and a user without enable trying the
/// logoff are refused, and each leaves a log line.
#[test]
fn netmiko_drives_the_ssh_cli() {
    if !textfsm::available() {
        return;
    }
    let Some(lab) = Lab::with_clients(2) else {
        return;
    };
    e2e::radius::append_headend_config(&lab, SSH_CONFIG);
    lab.start_headend();
    let ssh_up = e2e::wait_until(e2e::lab::HANG_GUARD, || {
        let out = lab.exec_gw(&["ss", "-Hltn", "sport = :22"]);
        (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
    });
    assert!(ssh_up.is_some(), "no SSH listener:\n{}", lab.headend_log());

    let mut alice = lab.connect("alice", lab.password("alice"), &[]);
    let host = e2e::lab::OUTSIDE_IP.to_string();
    let ns0 = lab.client_host(0).ns.clone();

    let (code, out, err) = python_in(
        &ns0,
        NETMIKO,
        &[&host, "admin", "Adm1n-pw", "En4ble-pw", "alice"],
    );
    assert_eq!(
        code,
        0,
        "netmiko failed:\n{out}\n{err}\n{}",
        lab.headend_log()
    );
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    println!("netmiko: {v:#}");
    assert_eq!(v["prompt"], "vpn-gw#", "{v}");
    assert!(
        v["curpriv"]
            .as_str()
            .unwrap_or("")
            .contains("Current privilege level : 15"),
        "{v}"
    );
    let rows = v["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no TextFSM rows: {v}"));
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["username"], "alice", "{v}");
    assert_eq!(rows[0]["tunnel_group"], "LOCAL-PW", "{v}");
    assert_eq!(v["version"][0]["hostname"], "vpn-gw", "{v}");
    assert!(
        v["logoff"]
            .as_str()
            .unwrap_or("")
            .contains("INFO: Number of sessions with name \"alice\" logged off : 1"),
        "{v}"
    );
    assert!(
        alice.wait_exit(e2e::lab::HANG_GUARD).is_some(),
        "openconnect still running after the logoff"
    );
    lab.wait_sessions("without alice", |s| s.is_empty());

    // Without an enable secret Netmiko uses ASA's `login` (privilege from the user).
    let (code, out, err) = python_in(&ns0, NETMIKO, &[&host, "admin", "Adm1n-pw", "", ""]);
    assert_eq!(code, 0, "netmiko via login:\n{out}\n{err}");
    assert!(out.contains("\"prompt\": \"vpn-gw#\""), "{out}");

    // A wrong password.
    let (code, out, _) = python_in(&ns0, NETMIKO, &[&host, "admin", "wrong", "x", ""]);
    assert_eq!(code, 3, "{out}");
    // A source no `ssh` line allows (client 1 is 198.18.0.3).
    let ns1 = lab.client_host(1).ns.clone();
    let (code, out, _) = python_in(
        &ns1,
        NETMIKO,
        &[&host, "admin", "Adm1n-pw", "En4ble-pw", ""],
    );
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("vpn-gw"), "{out}");

    // Without enable, the logoff is not even a command.
    let bob = lab.connect("bob", lab.password("bob"), &[]);
    let (code, shown, err) = python_in(
        &ns0,
        NO_ENABLE,
        &[
            &host,
            "oper",
            "0per-pw",
            "vpn-sessiondb logoff name bob noconfirm",
        ],
    );
    assert_eq!(code, 0, "{shown}\n{err}");
    assert!(
        shown.contains("ERROR: % Invalid input detected at '^' marker."),
        "{shown}"
    );
    assert_eq!(lab.show_sessions().len(), 1, "bob's session must survive");
    drop(bob);

    let log = lab.headend_log();
    for want in [
        "%ASA-6-605005: Login permitted from 198.18.0.2/",
        "to outside:198.18.0.1/ssh for user \"admin\"",
        "%ASA-5-502103: User priv level changed: Uname: admin From: 1 To: 15",
        "%ASA-5-111008: User 'admin' executed the 'vpn-sessiondb logoff name alice noconfirm' command.",
        "%ASA-6-605004: Login denied from 198.18.0.2/",
        "for user \"admin\"",
        "%ASA-3-710003: TCP access denied by ACL from 198.18.0.3/",
        "'vpn-sessiondb logoff name bob noconfirm' refused: privilege level too low",
    ] {
        assert!(log.contains(want), "no {want:?} in the headend log:\n{log}");
    }
    // `show logging` (logging buffered) has the same lines.
    let shown = lab.show(&["logging"]);
    assert!(
        shown.contains("%ASA-6-605004: Login denied from 198.18.0.2/"),
        "{shown}"
    );
    // ntc-templates' `cisco_asa_show_logging` reads the buffer.
    let rows = textfsm::parse("cisco_asa_show_logging", &shown);
    assert!(
        rows.iter()
            .any(|r| get(r, "MNEMONIC") == "605004" && get(r, "SEVERITY") == "6"),
        "{rows:?}\n{shown}"
    );
}

/// A group whose vpn-filter denies (and logs, at warnings) TCP to the inside
/// host's port 2222.
const LOGGED_GROUP: &str = "\
access-list LOGGED extended deny tcp any host 198.18.1.10 eq 2222 log 4
access-list LOGGED extended permit ip any any
group-policy GP-LOGGED internal
group-policy GP-LOGGED attributes
 vpn-tunnel-protocol ssl-client
 split-tunnel-policy tunnelspecified
 split-tunnel-network-list value SPLIT
 vpn-filter value LOGGED
 address-pools value VPN-POOL
tunnel-group LOGGED type remote-access
tunnel-group LOGGED general-attributes
 address-pool VPN-POOL
 default-group-policy GP-LOGGED
tunnel-group LOGGED webvpn-attributes
 authentication aaa
 group-alias LOGGED enable
logging enable
logging timestamp
logging device-id hostname
logging trap informational
logging host inside 198.18.1.10 udp/5514
logging host inside 198.18.1.10 tcp/1470
! Nobody listens here: a dead log host must not hold anything up.
logging host inside 198.18.1.99 tcp/1470
";

/// rsyslog with one file per transport; `%rawmsg%` keeps what came on the wire.
fn rsyslog_conf(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        r#"global(workDirectory="{d}")
module(load="imudp")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="udp") {{ action(type="omfile" file="{d}/syslog-udp.log" template="raw") }}
ruleset(name="tcp") {{ action(type="omfile" file="{d}/syslog-tcp.log" template="raw") }}
input(type="imudp" address="198.18.1.10" port="5514" ruleset="udp")
input(type="imtcp" address="198.18.1.10" port="1470" ruleset="tcp")
"#
    )
}

/// A real rsyslog (Debian) on the inside host receives, over UDP and over TCP
/// (octet counting), ASA's messages for a login, an ACL deny and a logout.
#[test]
fn rsyslog_receives_login_acl_deny_and_logout() {
    if !e2e::cmd::in_path("rsyslogd") {
        assert!(
            !e2e::lab::required(),
            "rsyslogd missing (netns/install-deps.sh installs rsyslog)"
        );
        eprintln!("SKIP: rsyslogd missing");
        return;
    }
    let Some(lab) = Lab::new() else {
        return;
    };
    let conf = lab.dir().join("rsyslog.conf");
    std::fs::write(&conf, rsyslog_conf(lab.dir())).unwrap();
    let pid = lab.dir().join("rsyslog.pid");
    let _rsyslog = lab.spawn_in(
        lab.inside_ns(),
        "rsyslogd",
        &[
            "rsyslogd",
            "-n",
            "-f",
            conf.to_str().unwrap(),
            "-i",
            pid.to_str().unwrap(),
        ],
    );
    let listening = e2e::wait_until(e2e::lab::HANG_GUARD, || {
        let out = lab.exec_inside(&["ss", "-Hltn", "sport = :1470"]);
        (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
    });
    assert!(listening.is_some(), "rsyslogd does not listen");
    e2e::radius::append_headend_config(&lab, LOGGED_GROUP);
    lab.start_headend();

    let mut alice = lab.spawn_client_in_group(0, "alice", lab.password("alice"), "LOGGED", &[]);
    alice
        .wait_connected(e2e::lab::HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.headend_log()));
    // Denied by the filter (and logged); the connect just times out. The
    // kernel resends the SYN after 1 s: a further hit of the same flow, counted
    // and reported (with the interval) when the session ends.
    let _ = lab.exec_client(&[
        "timeout",
        "3",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/198.18.1.10/2222",
    ]);
    // DTLS up (722022 UDP) before the logoff, so that its 722023 follows.
    let dtls = e2e::wait_until(e2e::lab::HANG_GUARD, || {
        lab.headend_log()
            .contains("UDP SVC connection established")
            .then_some(())
    });
    assert!(dtls.is_some(), "no DTLS:\n{}", lab.headend_log());
    lab.logoff_name("alice");
    assert!(alice.wait_exit(e2e::lab::HANG_GUARD).is_some());

    let wants = [
        "%ASA-6-113039: Group <GP-LOGGED> User <alice> IP <198.18.0.2> AnyConnect parent session started.",
        "%ASA-6-716001: Group <GP-LOGGED> User <alice> IP <198.18.0.2> WebVPN session started.",
        "%ASA-6-722022: Group <GP-LOGGED> User <alice> IP <198.18.0.2> TCP SVC connection established without compression",
        "%ASA-6-722051: Group <GP-LOGGED> User <alice> IP <198.18.0.2> IPv4 Address <198.18.100.",
        // The ACE's `log 4`: severity 4.
        "%ASA-4-106100: access-list LOGGED denied tcp outside/198.18.100.",
        "-> inside/198.18.1.10(2222) hit-cnt 1 first hit",
        "300-second interval",
        "%ASA-4-113019: Group = GP-LOGGED, Username = alice, IP = 198.18.0.2, Session disconnected. Session Type: AnyConnect-Parent, Duration: ",
        "Reason: Administrator Reset",
        "%ASA-6-716002: Group <GP-LOGGED> User <alice> IP <198.18.0.2> WebVPN session terminated: Administrator Reset.",
        // openconnect brings DTLS up by default: the UDP tunnel has its own pair.
        "%ASA-6-722022: Group <GP-LOGGED> User <alice> IP <198.18.0.2> UDP SVC connection established without compression",
        "%ASA-6-722023: Group <GP-LOGGED> User <alice> IP <198.18.0.2> UDP SVC connection terminated without compression",
        "%ASA-6-722023: Group <GP-LOGGED> User <alice> IP <198.18.0.2> TCP SVC connection terminated without compression",
        "%ASA-5-722037: Group <GP-LOGGED> User <alice> IP <198.18.0.2> SVC closing connection: Administrator Reset.",
        // ASA's layout with `logging timestamp` and `logging device-id hostname`.
        " vpn-gw : %ASA-6-113012: AAA user authentication Successful : local database : user = alice",
    ];
    for file in ["syslog-udp.log", "syslog-tcp.log"] {
        let path = lab.dir().join(file);
        let mut got = String::new();
        let all = e2e::wait_until(e2e::lab::HANG_GUARD, || {
            got = std::fs::read_to_string(&path).unwrap_or_default();
            wants.iter().all(|w| got.contains(w)).then_some(())
        });
        println!("{file}:\n{got}");
        for w in wants {
            assert!(
                all.is_some() && got.contains(w),
                "{file}: no {w:?} in\n{got}\n--- headend log ---\n{}",
                lab.headend_log()
            );
        }
        // Facility 20 (local4), severity 6: <166>.
        assert!(got.contains("<166>"), "{got}");
        // The SYN's resends, counted in the flow's interval at the ACE's level.
        assert!(
            got.lines().any(
                |l| l.contains("%ASA-4-106100: access-list LOGGED denied tcp")
                    && l.contains("(2222) hit-cnt ")
                    && l.ends_with(" 300-second interval")
            ),
            "{got}"
        );
    }
}

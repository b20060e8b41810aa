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
}

//! A running-config as an ASA prints it, with objects, object-groups (nested, every
//! type), access-lists naming them in every position, three tunnel groups, and the
//! usual lines the headend does not need (`tests/data/asa-objects.cfg`). It must
//! load, and its filters must let through what the groups say and nothing else.

use std::net::IpAddr;
use std::path::PathBuf;

use dataplane::policy::{Direction, PacketMeta, PolicyTables, Verdict};
use headend::config::*;
use headend::policy_compile::{compile, show_access_list_named};

fn load() -> Config {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/asa-objects.cfg");
    load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (permitted, rule index) per packet through `acl`, from a session tagged `sgt`.
fn verdicts(t: &PolicyTables, acl: &str, pkts: &[PacketMeta], sgt: Option<u16>) -> Vec<bool> {
    let mut out = vec![Verdict::default(); pkts.len()];
    t.acl(acl)
        .unwrap()
        .classify_batch(pkts, Direction::FromClient, sgt, t.sgts(), &mut out);
    out.iter().map(Verdict::is_permit).collect()
}

#[test]
fn realistic_config_with_objects_loads() {
    let c = load();
    assert_eq!(c.hostname.as_deref(), Some("vpn-edge"));
    let tgs: Vec<&str> = c.tunnel_groups.keys().map(String::as_str).collect();
    assert_eq!(tgs, ["CONTRACTORS", "HELPDESK", "STAFF"]);
    assert_eq!(
        c.tunnel_group_for_alias("Contractors").unwrap().name,
        "CONTRACTORS"
    );
    assert_eq!(c.objects.network.len(), 7);
    assert_eq!(c.objects.service.len(), 2);
    assert_eq!(c.objects.groups.len(), 10);
    // Only lines the headend does not use are warnings; no object line is one,
    // except the `nat` of obj-any.
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/asa-objects.cfg"),
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for w in &c.warnings {
        let l = lines[w.line - 1].trim_start();
        assert!(
            !l.starts_with("object") && !l.starts_with("access-list") || l.contains("nat"),
            "line {} warned: {}",
            w.line,
            w.message
        );
        if l.starts_with("nat") {
            assert!(w.message.contains("`nat` in object network `obj-any`"));
        }
    }
    // The split list expands its network group (v4 routes; the v6 member too).
    let staff = c.effective_policy("GP-STAFF");
    let routes = c.split_include_routes(&staff);
    assert_eq!(routes.len(), 2);
    assert_eq!(
        c.split_networks_v6(&staff),
        vec![("fd00:1::".parse().unwrap(), 64)]
    );
    // Entry counts after expansion.
    let n = |acl: &str, i: usize| c.access_lists[acl].entries[i].extended_aces().len();
    assert_eq!(n("ACL-STAFF", 1), 3 * 2, "3 web servers x 2 ports");
    assert_eq!(
        n("ACL-STAFF", 2),
        6,
        "6 AD services x the DC range (one /30)"
    );
    assert_eq!(n("ACL-STAFF", 3), 3 * 2, "3 inside nets x 2 ICMP types");
    assert_eq!(n("ACL-STAFF", 4), 2, "1 source SGT x 2 destination SGTs");
    // check-config counts the expanded elements, as `show access-list` does.
    let summary = c.summary();
    assert!(
        summary.contains("  ACL-STAFF: 5 entries (21 elements)\n"),
        "{summary}"
    );
    assert!(
        summary.contains("objects: 7 network, 2 service; object-groups: 10\n"),
        "{summary}"
    );
}

#[test]
fn realistic_config_filters_enforce_the_groups() {
    let c = load();
    let t = compile(&c).unwrap_or_else(|e| panic!("{e}"));
    let staff_ip = "198.18.100.20";
    let tcp = |dst: &str, port| PacketMeta::with_ports(ip(staff_ip), ip(dst), 6, 40000, port);
    let udp = |dst: &str, port| PacketMeta::with_ports(ip(staff_ip), ip(dst), 17, 40000, port);
    let ping = |dst: &str| PacketMeta::icmp(ip(staff_ip), ip(dst), 8);
    let cases = [
        (tcp("198.18.1.10", 443), true),   // intranet, nested group, https
        (tcp("198.18.1.11", 80), true),    // wiki, nested group, www
        (tcp("198.18.2.100", 443), true),  // 198.18.2.0/25
        (tcp("198.18.2.200", 443), false), // outside /25
        (tcp("198.18.1.10", 8443), false), // port not in SG-WEB
        (tcp("198.18.1.21", 636), true),   // DC range, ldaps
        (udp("198.18.1.23", 88), true),    // DC range, tcp-udp kerberos
        (udp("198.18.1.23", 123), true),   // svc-ntp through service-object object
        (udp("198.18.1.24", 53), false),   // outside the DC range
        (tcp("198.18.1.21", 3389), false), // RDP needs the SGTs
        (ping("198.18.2.7"), true),        // icmp-type group
        (tcp("198.18.1.5", 3389), true),   // RDP to SGT 21 (sgt-map 198.18.1.0/28) from SGT 10
    ];
    let pkts: Vec<PacketMeta> = cases.iter().map(|(p, _)| *p).collect();
    let want: Vec<bool> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(verdicts(&t, "ACL-STAFF", &pkts, Some(10)), want);
    // Without SGT 10, RDP is denied even to the tagged server.
    assert_eq!(
        verdicts(&t, "ACL-STAFF", &[tcp("198.18.1.5", 3389)], Some(11)),
        [false]
    );
    // Contractors: https to the web tier, DNS over tcp or udp to the DCs only.
    let c_pkts = [
        tcp("198.18.1.10", 443),
        tcp("198.18.1.10", 80),
        udp("198.18.1.20", 53),
        tcp("198.18.1.22", 53),
        udp("198.18.1.20", 88),
    ];
    assert_eq!(
        verdicts(&t, "ACL-CONTRACTORS", &c_pkts, None),
        [true, false, true, true, false]
    );
    let shown = show_access_list_named(&t, &c, "ACL-CONTRACTORS");
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with("access-list ACL-CONTRACTORS; 6 elements;"),
        "{shown}"
    );
    assert!(lines[1].starts_with(
        "access-list ACL-CONTRACTORS line 1 extended permit tcp any object-group NG-WEB-SERVERS eq https (hitcnt=1)"
    ), "{shown}");
    assert!(lines[2].starts_with(
        "  access-list ACL-CONTRACTORS line 1 extended permit tcp any host 198.18.1.10 eq https (hitcnt=1)"
    ), "{shown}");
    assert!(shown.contains(
        "access-list ACL-CONTRACTORS line 2 extended permit object-group PG-TCPUDP any object-group NG-DOMAIN-CONTROLLERS eq domain (hitcnt=2)"
    ), "{shown}");
    assert!(shown.contains(
        "  access-list ACL-CONTRACTORS line 2 extended permit udp any 198.18.1.20 255.255.255.252 eq domain (hitcnt=1)"
    ), "{shown}");
}

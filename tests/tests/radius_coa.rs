//! End-to-end ISE CoA beyond SGT / Filter-Id changes (asa-aaa.md §3), FreeRADIUS as
//! ISE and `radclient` as ISE's CoA sender, stock openconnect as the client:
//!
//! - `subscriber:command=reauthenticate`: the headend asks for the session's
//!   authorization again (a second authorize-only Access-Request reaches
//!   FreeRADIUS) and applies the new answer live: group-policy (Class), SGT and the
//!   `ip:inacl` entries as the session's per-user ACL; same index, address, tunnel.
//! - A CoA carrying `ip:inacl` entries makes them the session's filter at once; a CoA
//!   naming an ISE downloadable ACL (`ACS:CiscoSecure-Defined-ACL`) has it fetched
//!   as at login and applied.
//! - NAKs carry the right Error-Cause: unknown session (Session-Context-Not-Found),
//!   an entry that does not parse (Invalid-Attribute-Value), another command
//!   (Unsupported-Service).

use std::fs::OpenOptions;
use std::io::Write;

use e2e::lab::{HANG_GUARD, INSIDE_HOST};
use e2e::radius::{self, RadiusLab, RadiusSetup, RadiusUser};
use e2e::sessiondb::field;
use e2e::{Client, wait_until};

const DACL: &str = "#ACSACL#-IP-COA_WEB-5f3c1a2b";

fn setup() -> RadiusSetup {
    RadiusSetup {
        config: format!(
            "access-list VPN-FILTER extended permit ip any any\n!\n{}",
            radius::tunnel_group_config(Some("VPN-FILTER"))
        ),
        users: vec![RadiusUser::downloadable_acl(
            DACL,
            &["permit icmp any any", "deny ip any any"],
        )],
        ..RadiusSetup::default()
    }
}

fn assert_pings(client: &Client, what: &str) {
    assert!(
        e2e::lab::wait_ping(client.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "{what}: no ping reply from {INSIDE_HOST}"
    );
}

/// Polls alice's session until `pred` holds on it; returns it.
fn wait_session(rl: &RadiusLab, what: &str, pred: impl Fn(&e2e::Session) -> bool) -> e2e::Session {
    let mut last = None;
    wait_until(HANG_GUARD, || {
        let s = rl.session("alice");
        let ok = pred(&s);
        last = Some(s.clone());
        ok.then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: not after {HANG_GUARD:?}: {last:?}\n--- headend log ---\n{}",
            e2e::lab::tail(&rl.lab.headend_log(), 40)
        )
    })
}

#[test]
fn coa_reauthenticate_and_acl_pushes_apply_live() {
    let Some(mut rl) = RadiusLab::start(setup()) else {
        return;
    };
    let alice = rl.login(0, "alice");
    let addr = alice.tun_addr().expect("alice's address");
    assert_pings(&alice, "at login");
    let before = rl.session("alice");
    assert_eq!(field(&before, "Security Grp"), "10", "{before:?}");
    let audit = field(&before, "Audt Sess ID").to_owned();
    let index = field(&before, "Index").to_owned();
    let by_audit = format!("audit-session-id={audit}");

    // Errors first: nothing changes.
    let nak = rl.primary.coa(&[
        ("Cisco-AVPair", "audit-session-id=00000000ffffffff00000000"),
        ("Cisco-AVPair", "subscriber:command=reauthenticate"),
    ]);
    assert!(nak.is("CoA-NAK"), "{}", nak.output);
    assert_eq!(
        nak.get("Error-Cause"),
        Some("Session-Context-Not-Found"),
        "{}",
        nak.output
    );
    let nak = rl.primary.coa(&[
        ("Cisco-AVPair", &by_audit),
        ("Cisco-AVPair", "subscriber:command=bounce-host-port"),
    ]);
    assert!(nak.is("CoA-NAK"), "{}", nak.output);
    assert_eq!(
        nak.get("Error-Cause"),
        Some("Unsupported-Service"),
        "{}",
        nak.output
    );
    let nak = rl.primary.coa(&[
        ("Cisco-AVPair", &by_audit),
        ("Cisco-AVPair", "ip:inacl#1=permit bogus any any"),
    ]);
    assert!(nak.is("CoA-NAK"), "{}", nak.output);
    assert_eq!(
        nak.get("Error-Cause"),
        Some("Invalid-Attribute-Value"),
        "{}",
        nak.output
    );
    assert_eq!(field(&rl.session("alice"), "Filter Name"), "VPN-FILTER");

    // Inline entries: the per-user ACL at once (ASA's AAA-user-USER-HASH name).
    let ack = rl.primary.coa(&[
        ("Cisco-AVPair", &by_audit),
        ("Cisco-AVPair", "ip:inacl#1=permit icmp any any"),
        ("Cisco-AVPair", "ip:inacl#2=deny ip any any"),
    ]);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);
    let s = rl.session("alice");
    assert!(
        field(&s, "Filter Name").starts_with("AAA-user-alice-"),
        "{s:?}"
    );
    let shown = rl.lab.show(&["access-list"]);
    assert!(shown.contains("extended permit icmp any any"), "{shown}");
    assert_pings(&alice, "after the inline ACL");

    // A named downloadable ACL: fetched from FreeRADIUS, then the filter.
    let ack = rl.primary.coa(&[
        ("Cisco-AVPair", &by_audit),
        (
            "Cisco-AVPair",
            &format!("ACS:CiscoSecure-Defined-ACL={DACL}"),
        ),
    ]);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);
    wait_session(&rl, "the named ACL as filter", |s| {
        field(s, "Filter Name") == DACL
    });
    rl.primary.wait_for_request("Access-Request", DACL);
    assert_pings(&alice, "after the named ACL");

    // Reauthenticate: ISE's answer changed (Class, SGT, inline ACL); the headend
    // asks again and applies it.
    let users = rl.primary.raddb().join("users");
    let mut f = OpenOptions::new()
        .write(true)
        .open(&users)
        .expect("users file");
    let old = std::fs::read_to_string(&users).expect("read users");
    let new_alice = RadiusUser::new("alice")
        .password(rl.lab.password("alice"))
        .reply("Class", "OU=GP-CONTRACTORS;")
        .reply("Cisco-AVPair", "cts:security-group-tag=0015-00")
        .reply(
            "Cisco-AVPair",
            "ip:inacl#1=permit icmp any host 198.18.1.10",
        )
        .reply("Cisco-AVPair", "ip:inacl#2=deny ip any any")
        .render();
    f.write_all(format!("{new_alice}{old}").as_bytes())
        .expect("write users");
    drop(f);
    rl.primary.restart();
    let mark = rl.primary.log_mark();
    let ack = rl.primary.coa(&[
        ("Cisco-AVPair", &by_audit),
        ("Cisco-AVPair", "subscriber:command=reauthenticate"),
    ]);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);
    let s = wait_session(&rl, "the new authorization", |s| {
        field(s, "Security Grp") == "21" && field(s, "Group Policy") == "GP-CONTRACTORS"
    });
    let log = rl.primary.log_since(mark);
    assert!(
        log.contains("Authorize-Only"),
        "no second authorize-only request reached FreeRADIUS:\n{log}"
    );
    assert!(
        field(&s, "Filter Name").starts_with("AAA-user-alice-"),
        "{s:?}"
    );
    assert_ne!(
        field(&s, "Filter Name"),
        DACL,
        "the previous downloadable ACL is still the filter"
    );
    assert_eq!(field(&s, "Index"), index, "{s:?}");
    assert_eq!(field(&s, "Assigned IP"), addr.to_string(), "{s:?}");
    assert_eq!(field(&s, "Audt Sess ID"), audit, "{s:?}");
    let shown = rl.lab.show(&["access-list"]);
    assert!(
        shown.contains("permit icmp any host 198.18.1.10"),
        "{shown}"
    );
    assert!(
        !shown.contains(DACL),
        "the unused named ACL is still installed:\n{shown}"
    );
    assert_pings(&alice, "after reauthentication");
    rl.lab.assert_headend_running();
}

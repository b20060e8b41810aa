//! End-to-end RADIUS: the headend's tunnel group `RADIUS-PW` (PAP via
//! `authentication-server-group ISE`, authorize-only via `authorization-server-group
//! ISE`, accounting via `accounting-server-group ISE`) against FreeRADIUS 3.2
//! (`freeradius -X` on 198.18.1.20 / .21 in the inside namespace, the ISE stand-in of
//! `e2e::radius`), with stock openconnect as the client and `radclient` as ISE's CoA /
//! Disconnect sender. What the headend sent is read from FreeRADIUS's `-X` log and its
//! accounting detail file. Each test builds its own lab; deadlines are hang guards,
//! never speed assertions.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use e2e::lab::{self, HANG_GUARD, INSIDE_GW, INSIDE_HOST};
use e2e::radius::{
    self, DynAuth, LoggedPacket, RADIUS_SECONDARY, RadiusLab, RadiusServer, RadiusSetup, RadiusUser,
};
use e2e::sessiondb::{field, session_of};
use e2e::{Client, Lab, Session, netns, wait_until};

/// The tunnel group that authenticates, authorizes and accounts with RADIUS.
const TUNNEL_GROUP: &str = "RADIUS-PW";
/// Its default group policy: a session showing another one got it from RADIUS.
const DEFAULT_GP: &str = "GP-RADIUS-DEFAULT";

/// Appended to the lab config after the `aaa-server ISE` lines: the ACL Filter-Id
/// names, then bob's group policy (Class `OU=GP-CONTRACTORS;`) and the RADIUS tunnel
/// group ([`radius::tunnel_group_config`]).
fn radius_config() -> String {
    format!(
        "access-list VPN-FILTER extended permit ip any any\n!\n{}",
        radius::tunnel_group_config(None)
    )
}

/// The lab of these tests: one client, the primary server, the tunnel group above.
fn setup() -> RadiusSetup {
    RadiusSetup {
        config: radius_config(),
        ..RadiusSetup::default()
    }
}

fn assert_pings(client: &Client, what: &str) {
    assert!(
        lab::wait_ping(client.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "{what}: no ping reply from {INSIDE_HOST} through {}'s tunnel after {HANG_GUARD:?}",
        client.user()
    );
    // A few more, so both directions have counted traffic.
    assert!(
        lab::ping(client.ns(), INSIDE_HOST),
        "{what}: ping through {}'s tunnel",
        client.user()
    );
}

fn is_authorize_only(p: &LoggedPacket, user: &str) -> bool {
    p.kind == "Access-Request"
        && p.get("User-Name") == Some(user)
        && p.get("Service-Type") == Some("Authorize-Only")
}

fn is_pap(p: &LoggedPacket, user: &str) -> bool {
    p.kind == "Access-Request"
        && p.get("User-Name") == Some(user)
        && p.get("User-Password").is_some()
}

type Record = HashMap<String, String>;

fn is_acct(r: &Record, status: &str, user: &str) -> bool {
    r.get("Acct-Status-Type").map(String::as_str) == Some(status)
        && r.get("User-Name").map(String::as_str) == Some(user)
}

/// Waits for an accounting record `status` for `user` (with `Acct-Session-Id` `id`
/// when given) in `server`'s detail file; returns it.
fn wait_acct(server: &RadiusServer, status: &str, user: &str, id: Option<&str>) -> Record {
    let matches = |r: &Record| {
        is_acct(r, status, user)
            && id.is_none_or(|id| r.get("Acct-Session-Id").map(String::as_str) == Some(id))
    };
    let records = server.wait_accounting(&format!("a {status} for {user} ({id:?})"), |rs| {
        rs.iter().any(matches)
    });
    records
        .into_iter()
        .rfind(matches)
        .expect("the record waited for")
}

fn counter(r: &Record, name: &str) -> u64 {
    let value = |n: &str| -> u64 {
        r.get(n).map_or(0, |v| {
            v.parse()
                .unwrap_or_else(|e| panic!("{n} = {v:?}: {e} in {r:#?}"))
        })
    };
    let gigawords = name.replace("-Octets", "-Gigawords");
    (value(&gigawords) << 32) + value(name)
}

/// The pid of `headend run` in the headend namespace.
fn headend_pid(lab: &Lab) -> i32 {
    netns::pids(lab.gw_ns())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.get(1) == Some(&&b"run"[..]) && args.iter().any(|a| *a == b"--admin-socket")
            })
        })
        .unwrap_or_else(|| panic!("no `headend run` in {}", lab.gw_ns()))
}

/// (1) Authorization sets the group policy (Class `OU=`), the SGT (Cisco-AVPair
/// `cts:security-group-tag`) and the filter (Filter-Id) of the session; FreeRADIUS
/// saw the ISE-dialect authorize-only request, signed, keyed by the audit-session-id
/// that `show vpn-sessiondb` shows.
#[test]
fn authorization_sets_group_policy_sgt_and_filter() {
    let Some(rl) = RadiusLab::start(RadiusSetup {
        clients: 2,
        ..setup()
    }) else {
        return;
    };
    let lab = &rl.lab;
    let alice = rl.login(0, "alice");
    let bob = rl.login(1, "bob");
    assert_pings(&alice, "alice (VPN-FILTER permits any)");
    assert_pings(&bob, "bob");
    // ASA's AAA syslog names the server that accepted (the headend log carries
    // every syslog message).
    let accepted = format!(
        "%ASA-6-113004: AAA user authentication Successful : server = {} : user = alice",
        radius::RADIUS_PRIMARY
    );
    assert!(
        wait_until(HANG_GUARD, || lab
            .headend_log()
            .contains(&accepted)
            .then_some(()))
        .is_some(),
        "no {accepted:?} in the headend log:\n{}",
        lab::tail(&lab.headend_log(), 40)
    );

    let raw = lab.show_sessions_raw();
    println!("show vpn-sessiondb:\n{raw}");
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 2, "{raw}");
    let a = session_of(&sessions, "alice").expect("alice's session");
    assert_eq!(field(a, "Tunnel Group"), TUNNEL_GROUP, "{raw}");
    assert_eq!(field(a, "Group Policy"), "GP-EMPLOYEES", "{raw}");
    assert_eq!(field(a, "Security Grp"), "10", "{raw}");
    assert_eq!(field(a, "Filter Name"), "VPN-FILTER", "{raw}");
    assert_eq!(
        field(a, "Assigned IP"),
        alice.tun_addr().expect("alice's address").to_string()
    );
    let b = session_of(&sessions, "bob").expect("bob's session");
    assert_eq!(field(b, "Tunnel Group"), TUNNEL_GROUP, "{raw}");
    assert_eq!(field(b, "Group Policy"), "GP-CONTRACTORS", "{raw}");
    assert_eq!(field(b, "Security Grp"), "11", "{raw}");
    // No Filter-Id for bob, no vpn-filter in GP-CONTRACTORS.
    assert_ne!(field(b, "Filter Name"), "VPN-FILTER", "{raw}");
    assert_ne!(field(b, "Group Policy"), DEFAULT_GP);
    let audit_a = field(a, "Audt Sess ID").to_owned();
    let audit_b = field(b, "Audt Sess ID").to_owned();
    assert!(!audit_a.is_empty() && audit_a != "none", "{raw}");
    assert_ne!(audit_a, audit_b, "{raw}");

    let ise = &rl.primary;
    let autz = ise.wait_for_packet("authorize-only Access-Request for alice", |p| {
        is_authorize_only(p, "alice")
    });
    println!("authorize-only request for alice: {autz:#?}");
    assert!(autz.from.starts_with("198.18.1.1:"), "{autz:?}");
    assert_eq!(autz.get("User-Password"), None, "{autz:?}");
    assert_eq!(autz.get("NAS-Port-Type"), Some("Virtual"), "{autz:?}");
    assert_eq!(autz.get("NAS-IP-Address"), Some("198.18.1.1"), "{autz:?}");
    assert_eq!(
        autz.get("Calling-Station-Id"),
        Some("198.18.0.2"),
        "{autz:?}"
    );
    assert!(autz.get("Message-Authenticator").is_some(), "{autz:?}");
    for pair in [
        format!("audit-session-id={audit_a}"),
        "ip:source-ip=198.18.0.2".to_owned(),
        "coa-push=true".to_owned(),
    ] {
        assert!(
            autz.attrs.has("Cisco-AVPair", &pair),
            "no Cisco-AVPair {pair:?} in {autz:#?}"
        );
    }
    assert_eq!(
        autz.get("ASA-TunnelGroupName"),
        Some(TUNNEL_GROUP),
        "{autz:?}"
    );
    // Client-Type 2, by its dictionary name.
    assert_eq!(
        autz.get("ASA-ClientType"),
        Some("AnyConnect-Client-SSL-VPN"),
        "{autz:?}"
    );

    // The PAP request before it: signed, same audit-session-id.
    let pap = ise.wait_for_packet("PAP Access-Request for alice", |p| is_pap(p, "alice"));
    assert!(pap.get("Message-Authenticator").is_some(), "{pap:?}");
    assert_ne!(pap.get("Service-Type"), Some("Authorize-Only"), "{pap:?}");
    assert!(
        pap.attrs
            .has("Cisco-AVPair", &format!("audit-session-id={audit_a}")),
        "{pap:#?}"
    );

    let autz_b = ise.wait_for_packet("authorize-only Access-Request for bob", |p| {
        is_authorize_only(p, "bob")
    });
    assert_eq!(
        autz_b.get("Calling-Station-Id"),
        Some("198.18.0.3"),
        "{autz_b:?}"
    );
    assert!(
        autz_b
            .attrs
            .has("Cisco-AVPair", &format!("audit-session-id={audit_b}")),
        "{autz_b:#?}"
    );
    assert!(autz_b.attrs.has("Cisco-AVPair", "ip:source-ip=198.18.0.3"));
    assert!(autz_b.get("Message-Authenticator").is_some(), "{autz_b:?}");
    lab.assert_headend_running();
}

/// (2) An Access-Reject blocks the login: carol (FreeRADIUS: "Account disabled") and
/// alice with a wrong password get no tunnel and no session; openconnect shows why.
#[test]
fn reject_blocks_login() {
    let Some(rl) = RadiusLab::start(setup()) else {
        return;
    };
    let lab = &rl.lab;
    let output = rl.failed_login(0, "carol", "whatever");
    println!("openconnect (carol):\n{output}");
    assert!(
        output.contains("Account disabled"),
        "openconnect output lacks the Reply-Message \"Account disabled\":\n{output}"
    );
    rl.primary
        .wait_for_packet("PAP Access-Request for carol", |p| is_pap(p, "carol"));
    rl.primary.wait_for_log("Sent Access-Reject", HANG_GUARD);
    let sessions = lab.show_sessions();
    assert!(sessions.is_empty(), "sessions after a reject: {sessions:?}");

    let output = rl.failed_login(0, "alice", "not-her-password");
    println!("openconnect (alice, wrong password):\n{output}");
    assert!(
        output.contains("Login failed"),
        "openconnect output lacks \"Login failed\":\n{output}"
    );
    rl.primary
        .wait_for_packet("PAP Access-Request for alice", |p| is_pap(p, "alice"));
    // Rejected by authentication: never authorized, never accounted.
    assert!(
        !rl.primary
            .received()
            .iter()
            .any(|p| is_authorize_only(p, "alice") || is_authorize_only(p, "carol")),
        "authorize-only after a reject"
    );
    let sessions = lab.show_sessions();
    assert!(sessions.is_empty(), "sessions after a reject: {sessions:?}");
    let acct = rl.primary.accounting_records();
    assert!(acct.is_empty(), "accounting after rejects: {acct:#?}");
    // 113005 with the rejecting server; the user is hidden (`logging hide
    // username` is ASA's default).
    let rejected = format!(
        "%ASA-6-113005: AAA user authentication Rejected : reason = AAA failure : server = {} : user = ***** : user IP = ",
        radius::RADIUS_PRIMARY
    );
    let both = wait_until(HANG_GUARD, || {
        (lab.headend_log().matches(&rejected).count() >= 2).then_some(())
    });
    let log = lab.headend_log();
    assert!(
        both.is_some() && log.matches(&rejected).count() == 2,
        "one {rejected:?} per reject in the headend log:\n{}",
        lab::tail(&log, 40)
    );
    lab.assert_headend_running();
}

/// A dual-stack session (Class `OU=GP-DUAL;`, a group policy with an IPv6 pool) is
/// accounted with its IPv6 address too: Framed-IPv6-Address (RFC 6911) next to
/// Framed-IP-Address in Start and Stop.
#[test]
fn accounting_carries_the_ipv6_address_of_a_dual_stack_session() {
    let pw = "Ivy-acct-pw-4";
    let Some(rl) = RadiusLab::start(RadiusSetup {
        users: vec![
            RadiusUser::new("ivy")
                .password(pw)
                .reply("Class", "OU=GP-DUAL;"),
        ],
        ..setup()
    }) else {
        return;
    };
    let lab = &rl.lab;
    let mut ivy = lab.spawn_client(0, "ivy", pw, &["--authgroup", TUNNEL_GROUP]);
    ivy.wait_connected(HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab::tail(&lab.headend_log(), 40)));
    let s = rl.session("ivy");
    let v6 = field(&s, "Assigned IPv6").to_owned();
    assert!(v6.starts_with("fd00:100::"), "{s:?}");
    let start = wait_acct(&rl.primary, "Start", "ivy", None);
    println!("Start: {start:#?}");
    assert_eq!(start.get("Framed-IPv6-Address"), Some(&v6), "{start:#?}");
    assert_eq!(
        start.get("Framed-IP-Address").map(String::as_str),
        Some(field(&s, "Assigned IP")),
        "{start:#?}"
    );
    ivy.stop();
    let stop = wait_acct(&rl.primary, "Stop", "ivy", None);
    assert_eq!(stop.get("Framed-IPv6-Address"), Some(&v6), "{stop:#?}");
}

/// (3a) Accounting Start with Class echoed, Acct-Session-Id and the assigned address;
/// after traffic and a user logout (openconnect SIGTERM → DISCONNECT), a Stop with
/// Terminate-Cause User-Request and the traffic counted.
#[test]
fn accounting_start_and_stop_on_user_logout() {
    let Some(rl) = RadiusLab::start(setup()) else {
        return;
    };
    let lab = &rl.lab;
    let ise = &rl.primary;
    let mut alice = rl.login(0, "alice");
    let addr = alice.tun_addr().expect("alice's address");
    let audit = field(&rl.session("alice"), "Audt Sess ID").to_owned();

    let start = wait_acct(ise, "Start", "alice", None);
    println!("Start: {start:#?}");
    assert_eq!(start["Class"], "OU=GP-EMPLOYEES;", "{start:#?}");
    let id = start
        .get("Acct-Session-Id")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("no Acct-Session-Id in {start:#?}"))
        .clone();
    assert_eq!(start["Framed-IP-Address"], addr.to_string(), "{start:#?}");
    assert_eq!(start["NAS-IP-Address"], INSIDE_GW.to_string(), "{start:#?}");
    assert!(
        start["Cisco-AVPair"]
            .lines()
            .any(|l| l == format!("audit-session-id={audit}")),
        "{start:#?}"
    );

    assert_pings(&alice, "alice");
    alice.stop();
    lab.wait_sessions("empty after the client's logout", <[Session]>::is_empty);

    let stop = wait_acct(ise, "Stop", "alice", Some(&id));
    println!("Stop: {stop:#?}");
    assert_eq!(stop["Acct-Terminate-Cause"], "User-Request", "{stop:#?}");
    assert_eq!(stop["Class"], "OU=GP-EMPLOYEES;", "{stop:#?}");
    assert_eq!(stop["Framed-IP-Address"], addr.to_string(), "{stop:#?}");
    for name in ["Acct-Input-Octets", "Acct-Output-Octets"] {
        assert!(
            counter(&stop, name) > 0,
            "{name} is 0 after pings: {stop:#?}"
        );
    }
    for name in ["Acct-Input-Packets", "Acct-Output-Packets"] {
        assert!(
            stop.get(name).is_some_and(|v| v != "0"),
            "{name} missing or 0 after pings: {stop:#?}"
        );
    }
    let records = ise.accounting_records();
    let starts = records.iter().filter(|r| is_acct(r, "Start", "alice"));
    let stops = records.iter().filter(|r| is_acct(r, "Stop", "alice"));
    assert_eq!(
        (starts.count(), stops.count()),
        (1, 1),
        "one Start and one Stop: {records:#?}"
    );
    lab.assert_headend_running();
}

/// (3b) `vpn-sessiondb logoff`: the Stop says Admin-Reset.
#[test]
fn accounting_stop_on_admin_logoff() {
    let Some(rl) = RadiusLab::start(setup()) else {
        return;
    };
    let lab = &rl.lab;
    let mut alice = rl.login(0, "alice");
    let start = wait_acct(&rl.primary, "Start", "alice", None);
    let id = start["Acct-Session-Id"].clone();
    lab.logoff_name("alice");
    assert!(
        alice.wait_exit(HANG_GUARD).is_some(),
        "openconnect still running after the logoff:\n{}",
        alice.output()
    );
    lab.wait_sessions("empty after the logoff", <[Session]>::is_empty);
    let stop = wait_acct(&rl.primary, "Stop", "alice", Some(&id));
    println!("Stop: {stop:#?}");
    assert_eq!(stop["Acct-Terminate-Cause"], "Admin-Reset", "{stop:#?}");
    assert_eq!(stop["Class"], "OU=GP-EMPLOYEES;", "{stop:#?}");
    lab.assert_headend_running();
}

/// (3c) A graceful headend stop (SIGTERM) with a client connected: the Stop says
/// NAS-Reboot, and the headend sends it before it exits.
#[test]
fn accounting_stop_on_headend_shutdown() {
    let Some(rl) = RadiusLab::start(setup()) else {
        return;
    };
    let lab = &rl.lab;
    let _alice = rl.login(0, "alice");
    let start = wait_acct(&rl.primary, "Start", "alice", None);
    let id = start["Acct-Session-Id"].clone();

    let pid = headend_pid(lab);
    // SAFETY: plain syscall on the pid of the headend this lab started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = wait_until(HANG_GUARD, || lab.headend_exit_status()).unwrap_or_else(|| {
        panic!(
            "headend still running {HANG_GUARD:?} after SIGTERM; log:\n{}",
            lab::tail(&lab.headend_log(), 60)
        )
    });
    assert!(
        status.success(),
        "headend exited with {status}; log:\n{}",
        lab::tail(&lab.headend_log(), 60)
    );
    // Sent before the exit: it is in the detail file already.
    let records = rl.primary.accounting_records();
    let stop = records
        .iter()
        .find(|r| is_acct(r, "Stop", "alice") && r["Acct-Session-Id"] == id)
        .unwrap_or_else(|| panic!("no Stop for alice after the headend exited: {records:#?}"));
    println!("Stop: {stop:#?}");
    assert_eq!(stop["Acct-Terminate-Cause"], "NAS-Reboot", "{stop:#?}");
}

/// (4) Disconnect-Request from ISE (radclient from 198.18.1.20 / .21 to 198.18.1.1:1700)
/// by Acct-Session-Id and by audit-session-id: ACK, openconnect exits, the session is
/// gone, the Stop says Admin-Reset. An unknown session gets a NAK with Error-Cause
/// Session-Context-Not-Found; a sender that is no configured RADIUS host gets nothing.
#[test]
fn disconnect_request_ends_the_session() {
    let Some(rl) = RadiusLab::start(setup()) else {
        return;
    };
    let lab = &rl.lab;
    let ise = &rl.primary;
    let mut alice = rl.login(0, "alice");
    let id = wait_acct(ise, "Start", "alice", None)["Acct-Session-Id"].clone();
    let audit = field(&rl.session("alice"), "Audt Sess ID").to_owned();

    // Not a configured host: ignored, whatever it asks.
    let stranger = radius::dynauth(
        lab,
        Ipv4Addr::new(198, 18, 1, 30),
        DynAuth::Disconnect,
        &[("Acct-Session-Id", &id)],
    );
    println!("Disconnect from 198.18.1.30:\n{}", stranger.output);
    assert!(
        stranger.timed_out(),
        "the headend answered a stranger:\n{}",
        stranger.output
    );
    assert!(
        alice.is_running(),
        "openconnect exited:\n{}",
        alice.output()
    );
    assert!(
        session_of(&lab.show_sessions(), "alice").is_some(),
        "a stranger's Disconnect ended the session"
    );

    for selector in [
        ("Acct-Session-Id", "DEADBEEF".to_owned()),
        (
            "Cisco-AVPair",
            "audit-session-id=00000000ffffffff00000000".to_owned(),
        ),
    ] {
        let nak = ise.disconnect(&[(selector.0, &selector.1)]);
        println!("Disconnect for an unknown session:\n{}", nak.output);
        assert!(nak.is("Disconnect-NAK"), "{}", nak.output);
        assert_eq!(
            nak.get("Error-Cause"),
            Some("Session-Context-Not-Found"),
            "{}",
            nak.output
        );
    }
    assert!(
        alice.is_running(),
        "openconnect exited:\n{}",
        alice.output()
    );

    let ack = ise.disconnect(&[("User-Name", "alice"), ("Acct-Session-Id", &id)]);
    println!("Disconnect by Acct-Session-Id:\n{}", ack.output);
    assert!(ack.is("Disconnect-ACK"), "{}", ack.output);
    assert!(
        alice.wait_exit(HANG_GUARD).is_some(),
        "openconnect still running after Disconnect-ACK:\n{}",
        alice.output()
    );
    lab.wait_sessions("empty after the Disconnect", <[Session]>::is_empty);
    let stop = wait_acct(ise, "Stop", "alice", Some(&id));
    assert_eq!(stop["Acct-Terminate-Cause"], "Admin-Reset", "{stop:#?}");
    assert_ne!(audit, "", "audit-session-id");

    // Again, by audit-session-id, from the other configured host.
    let mut alice = rl.login(0, "alice");
    let audit = field(&rl.session("alice"), "Audt Sess ID").to_owned();
    let start = wait_acct(ise, "Start", "alice", None);
    let id2 = start["Acct-Session-Id"].clone();
    assert_ne!(id2, id, "a new session has a new Acct-Session-Id");
    let ack = radius::dynauth(
        lab,
        RADIUS_SECONDARY,
        DynAuth::Disconnect,
        &[("Cisco-AVPair", &format!("audit-session-id={audit}"))],
    );
    println!("Disconnect by audit-session-id:\n{}", ack.output);
    assert!(ack.is("Disconnect-ACK"), "{}", ack.output);
    assert!(
        alice.wait_exit(HANG_GUARD).is_some(),
        "openconnect still running after Disconnect-ACK:\n{}",
        alice.output()
    );
    lab.wait_sessions("empty after the Disconnect", <[Session]>::is_empty);
    let stop = wait_acct(ise, "Stop", "alice", Some(&id2));
    assert_eq!(stop["Acct-Terminate-Cause"], "Admin-Reset", "{stop:#?}");
    lab.assert_headend_running();
}

/// (5) CoA changes the SGT of a live session: CoA-ACK, `show vpn-sessiondb` shows the
/// new tag, same session, same TLS connection, traffic still flows. A CoA by
/// Framed-IP-Address works too; one for an unknown session gets a NAK.
#[test]
fn coa_changes_the_sgt() {
    let Some(rl) = RadiusLab::start(setup()) else {
        return;
    };
    let lab = &rl.lab;
    let mut alice = rl.login(0, "alice");
    let addr = alice.tun_addr().expect("alice's address");
    assert_pings(&alice, "before the CoA");
    let before = rl.session("alice");
    assert_eq!(field(&before, "Security Grp"), "10", "{before:?}");
    let audit = field(&before, "Audt Sess ID").to_owned();
    let ports = lab.client_tls_ports();
    assert!(!ports.is_empty(), "no TLS connection from the client");

    let nak = rl.primary.coa(&[
        ("Cisco-AVPair", "audit-session-id=00000000ffffffff00000000"),
        ("Cisco-AVPair", "cts:security-group-tag=0014-00"),
    ]);
    assert!(nak.is("CoA-NAK"), "{}", nak.output);
    assert_eq!(
        nak.get("Error-Cause"),
        Some("Session-Context-Not-Found"),
        "{}",
        nak.output
    );

    let ack = rl.primary.coa(&[
        ("Cisco-AVPair", &format!("audit-session-id={audit}")),
        ("Cisco-AVPair", "cts:security-group-tag=0014-00"),
    ]);
    println!("CoA:\n{}", ack.output);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);

    let raw = lab.show_sessions_raw();
    println!("show vpn-sessiondb after the CoA:\n{raw}");
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 1, "{raw}");
    let after = &sessions[0];
    assert_eq!(field(after, "Security Grp"), "20", "{raw}");
    assert_eq!(field(after, "Index"), field(&before, "Index"), "{raw}");
    assert_eq!(field(after, "Audt Sess ID"), audit, "{raw}");
    assert_eq!(field(after, "Assigned IP"), addr.to_string(), "{raw}");
    assert_eq!(field(after, "Filter Name"), "VPN-FILTER", "{raw}");

    // A CoA may name the session by its address too (and all selectors must match).
    let addr_s = addr.to_string();
    let ack = rl.primary.coa(&[
        ("Framed-IP-Address", &addr_s),
        ("Cisco-AVPair", "cts:security-group-tag=0015-01"),
    ]);
    assert!(ack.is("CoA-ACK"), "{}", ack.output);
    let s = rl.session("alice");
    assert_eq!(field(&s, "Security Grp"), "21", "{s:?}");
    let nak = rl.primary.coa(&[
        ("Framed-IP-Address", &addr_s),
        ("Acct-Session-Id", "DEADBEEF"),
        ("Cisco-AVPair", "cts:security-group-tag=0016-00"),
    ]);
    assert!(nak.is("CoA-NAK"), "{}", nak.output);
    let s = rl.session("alice");
    assert_eq!(
        field(&s, "Security Grp"),
        "21",
        "a NAKed CoA changed the SGT: {s:?}"
    );

    assert!(
        alice.is_running(),
        "openconnect exited:\n{}",
        alice.output()
    );
    assert_pings(&alice, "after the CoA");
    assert_eq!(alice.tun_addr(), Some(addr));
    assert_eq!(lab.client_tls_ports(), ports, "the client reconnected");
    assert!(
        alice.is_running(),
        "openconnect exited:\n{}",
        alice.output()
    );
    lab.assert_headend_running();
}

/// Failover material: alice logs in while the primary does not answer; the
/// secondary's `-X` log shows her requests, the session has her attributes.
fn assert_login_via_secondary(rl: &RadiusLab) {
    let alice = rl.login(0, "alice");
    let secondary = rl.secondary();
    secondary.wait_for_packet("PAP Access-Request for alice on .21", |p| {
        is_pap(p, "alice")
    });
    let autz = secondary.wait_for_packet("authorize-only for alice on .21", |p| {
        is_authorize_only(p, "alice")
    });
    assert!(autz.get("Message-Authenticator").is_some(), "{autz:?}");
    let s = rl.session("alice");
    assert_eq!(field(&s, "Group Policy"), "GP-EMPLOYEES", "{s:?}");
    assert_eq!(field(&s, "Security Grp"), "10", "{s:?}");
    assert_pings(&alice, "after failover");
    wait_acct(secondary, "Start", "alice", None);
    assert!(
        rl.lab.headend_log().contains("failing over"),
        "no failover in the headend log:\n{}",
        lab::tail(&rl.lab.headend_log(), 40)
    );
    rl.lab.assert_headend_running();
}

/// (6a) The primary is down (stopped: ICMP port unreachable): the login fails over to
/// 198.18.1.21.
#[test]
fn failover_when_primary_is_stopped() {
    let Some(mut rl) = RadiusLab::start(RadiusSetup {
        secondary: true,
        timing: (2, 1),
        ..setup()
    }) else {
        return;
    };
    rl.primary.stop();
    assert_login_via_secondary(&rl);
}

/// (6b) The primary is silent (SIGSTOP: no answer, no ICMP): failover as well.
#[test]
fn failover_when_primary_is_silent() {
    let Some(rl) = RadiusLab::start(RadiusSetup {
        secondary: true,
        timing: (2, 1),
        ..setup()
    }) else {
        return;
    };
    rl.primary.pause();
    assert_login_via_secondary(&rl);
}

/// (6c) No server answers: the login fails with a clear message, no hang, no session.
#[test]
fn all_servers_down_fails_clearly() {
    let Some(mut rl) = RadiusLab::start(RadiusSetup {
        secondary: true,
        timing: (2, 1),
        ..setup()
    }) else {
        return;
    };
    rl.primary.stop();
    rl.secondary.as_mut().expect("secondary").stop();
    let output = rl.failed_login(0, "alice", rl.lab.password("alice"));
    println!("openconnect (no RADIUS server):\n{output}");
    assert!(
        output.contains("authentication server is not available"),
        "openconnect output lacks a clear message:\n{output}"
    );
    let sessions = rl.lab.show_sessions();
    assert!(sessions.is_empty(), "sessions without RADIUS: {sessions:?}");
    rl.lab.assert_headend_running();
    // The headend is not stuck: once a server is back, logins work again.
    rl.primary.restart();
    let _alice = rl.login(0, "alice");
}

//! The RADIUS side of the lab on its own (no headend): FreeRADIUS 3.2 in the inside
//! namespace (`e2e::radius`), asked by FreeRADIUS's own `radtest` / `radclient` from the
//! headend namespace (198.18.1.1, the only client it knows), so the harness is proven
//! before the headend's RADIUS client is tested against it. Deadlines are hang guards.

use std::time::Duration;

use e2e::Lab;
use e2e::lab::HANG_GUARD;
use e2e::radius::{
    self, DynAuth, RADIUS_PRIMARY, RADIUS_SECONDARY, RadclientReply, RadiusServer, RadiusUser,
};

/// A lab with FreeRADIUS on 198.18.1.20 (lab secret, lab users + `users`); `None` = skip.
fn lab_with_radius(users: &[RadiusUser]) -> Option<(Lab, RadiusServer)> {
    let lab = Lab::new()?;
    let secret = radius::lab_secret(&lab);
    let server = RadiusServer::start(&lab, RADIUS_PRIMARY, &secret, users)?;
    Some((lab, server))
}

/// `radtest USER PASSWORD SERVER 0 SECRET` from the headend namespace (it adds a
/// Message-Authenticator).
fn radtest(lab: &Lab, server: &RadiusServer, user: &str, password: &str) -> RadclientReply {
    let out = lab.exec_gw(&[
        "radtest",
        "-t",
        "pap",
        user,
        password,
        &server.addr().to_string(),
        "0",
        server.secret(),
    ]);
    RadclientReply::parse(&e2e::cmd::combined(&out))
}

/// An Access-Request from the headend namespace, shaped like the headend's.
fn access_request(lab: &Lab, server: &RadiusServer, attrs: &[(&str, &str)]) -> RadclientReply {
    radius::radclient(
        lab.gw_ns(),
        &server.addr().to_string(),
        "auth",
        server.secret(),
        attrs,
        radius::RADCLIENT_TIMEOUT,
    )
}

/// What the headend sends for authorize-only (shared/docs/asa-aaa.md §3).
fn authorize_only(user: &str) -> Vec<(&str, &str)> {
    vec![
        ("User-Name", user),
        ("Service-Type", "Authorize-Only"),
        ("NAS-IP-Address", "198.18.1.1"),
        ("NAS-Port-Type", "Virtual"),
        ("Calling-Station-Id", "198.18.0.2"),
        ("Message-Authenticator", "0x00"),
        ("Cisco-AVPair", "audit-session-id=c6120101000010006543a1b2"),
        ("Cisco-AVPair", "ip:source-ip=198.18.0.2"),
        ("Cisco-AVPair", "coa-push=true"),
        ("ASA-TunnelGroupName", "SAML-EMPLOYEES"),
        ("ASA-ClientType", "2"),
    ]
}

#[test]
fn pap_alice_is_accepted_with_her_attributes() {
    let Some((lab, server)) = lab_with_radius(&[]) else {
        return;
    };
    let reply = radtest(&lab, &server, "alice", lab.password("alice"));
    println!("radtest alice:\n{}", reply.output);
    assert!(reply.is("Access-Accept"), "{}", reply.output);
    assert_eq!(reply.get("Class"), Some("OU=GP-EMPLOYEES;"), "{reply:?}");
    assert_eq!(
        reply.get("Cisco-AVPair"),
        Some("cts:security-group-tag=000a-00"),
        "{reply:?}"
    );
    assert_eq!(reply.get("Filter-Id"), Some("VPN-FILTER"), "{reply:?}");
    // Signed, as ISE's replies are (radclient checked it).
    assert!(reply.get("Message-Authenticator").is_some(), "{reply:?}");

    let bob = radtest(&lab, &server, "bob", lab.password("bob"));
    assert!(bob.is("Access-Accept"), "{}", bob.output);
    assert_eq!(bob.get("Class"), Some("OU=GP-CONTRACTORS;"), "{bob:?}");
    assert_eq!(
        bob.get("Cisco-AVPair"),
        Some("cts:security-group-tag=000b-00")
    );
    assert_eq!(bob.get("Filter-Id"), None, "{bob:?}");

    // The -X log shows what came in, attribute by attribute, from the headend's address.
    let req = server.wait_for_request("Access-Request", "alice");
    assert!(req.from.starts_with("198.18.1.1:"), "{req:?}");
    assert!(req.get("User-Password").is_some(), "{req:?}");
    assert!(req.get("Message-Authenticator").is_some(), "{req:?}");
}

#[test]
fn wrong_password_is_rejected_without_attributes() {
    let Some((lab, server)) = lab_with_radius(&[]) else {
        return;
    };
    let reply = radtest(&lab, &server, "alice", "not-her-password");
    assert!(reply.is("Access-Reject"), "{}", reply.output);
    // attr_filter.access_reject: no Class / SGT / Filter-Id in a reject; signed.
    let names: Vec<&str> = reply.attrs.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Message-Authenticator"], "{reply:?}");
    let unknown = radtest(&lab, &server, "mallory", "x");
    assert!(unknown.is("Access-Reject"), "{}", unknown.output);
}

#[test]
fn carol_is_rejected_with_reply_message() {
    let Some((lab, server)) = lab_with_radius(&[]) else {
        return;
    };
    let reply = radtest(&lab, &server, "carol", "anything");
    assert!(reply.is("Access-Reject"), "{}", reply.output);
    assert_eq!(reply.get("Reply-Message"), Some("Account disabled"));
    // Also for authorize-only.
    let autz = access_request(&lab, &server, &authorize_only("carol"));
    assert!(autz.is("Access-Reject"), "{}", autz.output);
    assert_eq!(autz.get("Reply-Message"), Some("Account disabled"));
}

#[test]
fn authorize_only_is_accepted_with_the_attributes() {
    let Some((lab, server)) = lab_with_radius(&[]) else {
        return;
    };
    let reply = access_request(&lab, &server, &authorize_only("alice"));
    println!("authorize-only alice:\n{}", reply.output);
    assert!(reply.is("Access-Accept"), "{}", reply.output);
    assert_eq!(reply.get("Class"), Some("OU=GP-EMPLOYEES;"));
    assert_eq!(
        reply.get("Cisco-AVPair"),
        Some("cts:security-group-tag=000a-00")
    );
    assert_eq!(reply.get("Filter-Id"), Some("VPN-FILTER"));

    let bob = access_request(&lab, &server, &authorize_only("bob"));
    assert!(bob.is("Access-Accept"), "{}", bob.output);
    assert_eq!(bob.get("Class"), Some("OU=GP-CONTRACTORS;"));

    // Every attribute the headend sends is visible to tests, VSAs by their names.
    let req = server.wait_for_request("Access-Request", "alice");
    assert_eq!(req.get("Service-Type"), Some("Authorize-Only"), "{req:?}");
    assert_eq!(req.get("NAS-Port-Type"), Some("Virtual"), "{req:?}");
    assert_eq!(req.get("User-Password"), None, "{req:?}");
    assert!(req.get("Message-Authenticator").is_some(), "{req:?}");
    assert!(
        req.attrs
            .has("Cisco-AVPair", "audit-session-id=c6120101000010006543a1b2"),
        "{req:?}"
    );
    assert!(req.attrs.has("Cisco-AVPair", "coa-push=true"), "{req:?}");
    assert_eq!(req.get("ASA-TunnelGroupName"), Some("SAML-EMPLOYEES"));
    // Client-Type 2, by its dictionary name.
    assert_eq!(req.get("ASA-ClientType"), Some("AnyConnect-Client-SSL-VPN"));

    // Unknown users are not authorized.
    let nobody = access_request(&lab, &server, &authorize_only("mallory"));
    assert!(nobody.is("Access-Reject"), "{}", nobody.output);
    // Without a password and without Authorize-Only: no.
    let no_pw = access_request(
        &lab,
        &server,
        &[("User-Name", "alice"), ("Message-Authenticator", "0x00")],
    );
    assert!(no_pw.is("Access-Reject"), "{}", no_pw.output);

    // Without Message-Authenticator the request is dropped (BlastRADIUS), and logged.
    let mut no_ma = authorize_only("alice");
    no_ma.retain(|(a, _)| *a != "Message-Authenticator");
    let dropped = radius::radclient(
        lab.gw_ns(),
        &server.addr().to_string(),
        "auth",
        server.secret(),
        &no_ma,
        Duration::from_secs(1),
    );
    assert!(dropped.timed_out(), "{}", dropped.output);
    server.wait_for_log(
        "does not contain required Message-Authenticator",
        HANG_GUARD,
    );
}

#[test]
fn accounting_is_recorded_with_class() {
    let Some((lab, server)) = lab_with_radius(&[]) else {
        return;
    };
    let acct = |attrs: &[(&str, &str)]| {
        radius::radclient(
            lab.gw_ns(),
            &format!("{}:{}", server.addr(), radius::ACCT_PORT),
            "acct",
            server.secret(),
            attrs,
            radius::RADCLIENT_TIMEOUT,
        )
    };
    let start = acct(&[
        ("Acct-Status-Type", "Start"),
        ("User-Name", "alice"),
        ("Acct-Session-Id", "C6120101-00001000"),
        ("Class", "OU=GP-EMPLOYEES;"),
        ("Framed-IP-Address", "198.18.100.10"),
        ("NAS-IP-Address", "198.18.1.1"),
        ("Cisco-AVPair", "audit-session-id=c6120101000010006543a1b2"),
        ("Cisco-AVPair", "ip:source-ip=198.18.0.2"),
    ]);
    assert!(start.is("Accounting-Response"), "{}", start.output);
    let stop = acct(&[
        ("Acct-Status-Type", "Stop"),
        ("User-Name", "alice"),
        ("Acct-Session-Id", "C6120101-00001000"),
        ("Class", "OU=GP-EMPLOYEES;"),
        ("Acct-Input-Octets", "1234"),
        ("Acct-Output-Octets", "5678"),
        ("Acct-Input-Gigawords", "1"),
        ("Acct-Input-Packets", "10"),
        ("Acct-Output-Packets", "20"),
        ("Acct-Session-Time", "42"),
        ("Acct-Terminate-Cause", "User-Request"),
    ]);
    assert!(stop.is("Accounting-Response"), "{}", stop.output);

    let records = server.wait_accounting("Start and Stop", |r| r.len() >= 2);
    println!("accounting records: {records:#?}");
    assert_eq!(records.len(), 2, "{records:#?}");
    let (s, e) = (&records[0], &records[1]);
    assert_eq!(s["Acct-Status-Type"], "Start");
    assert_eq!(s["Class"], "OU=GP-EMPLOYEES;");
    assert_eq!(s["Acct-Session-Id"], "C6120101-00001000");
    assert_eq!(s["Framed-IP-Address"], "198.18.100.10");
    assert_eq!(
        s["Cisco-AVPair"],
        "audit-session-id=c6120101000010006543a1b2\nip:source-ip=198.18.0.2"
    );
    assert_eq!(e["Acct-Status-Type"], "Stop");
    assert_eq!(e["Acct-Input-Octets"], "1234");
    assert_eq!(e["Acct-Output-Octets"], "5678");
    assert_eq!(e["Acct-Input-Gigawords"], "1");
    assert_eq!(e["Acct-Terminate-Cause"], "User-Request");
    // The -X log has them too.
    let req = server.wait_for_request("Accounting-Request", "alice");
    assert_eq!(req.get("Acct-Status-Type"), Some("Stop"));
}

#[test]
fn extra_users_come_first() {
    let users = [
        RadiusUser::new("dave")
            .password("dave pw \"quoted\"")
            .reply("Class", "OU=GP-DAVE;")
            .reply("Cisco-AVPair", "cts:security-group-tag=0014-00")
            .reply("Cisco-AVPair", "ip:inacl#1=permit ip any host 198.18.1.10")
            .reply("Session-Timeout", "3600")
            .reply("ASA-Group-Policy", "GP-DAVE"),
        // Overrides the template's alice.
        RadiusUser::new("alice").reject("Locked for this test"),
        RadiusUser::new("erin")
            .password("erin-pw")
            .reply("Class", "OU=GP-EMPLOYEES;")
            .unsigned_reply(),
    ];
    let Some((lab, server)) = lab_with_radius(&users) else {
        return;
    };
    // radclient, not radtest: radtest does not escape quotes in passwords.
    let dave = access_request(
        &lab,
        &server,
        &[
            ("User-Name", "dave"),
            ("User-Password", "dave pw \"quoted\""),
            ("Message-Authenticator", "0x00"),
        ],
    );
    assert!(dave.is("Access-Accept"), "{}", dave.output);
    assert_eq!(dave.get("Class"), Some("OU=GP-DAVE;"));
    assert_eq!(
        dave.attrs.all("Cisco-AVPair"),
        [
            "cts:security-group-tag=0014-00",
            "ip:inacl#1=permit ip any host 198.18.1.10"
        ]
    );
    assert_eq!(dave.get("Session-Timeout"), Some("3600"));
    assert_eq!(dave.get("ASA-Group-Policy"), Some("GP-DAVE"));
    let alice = radtest(&lab, &server, "alice", lab.password("alice"));
    assert!(alice.is("Access-Reject"), "{}", alice.output);
    assert_eq!(alice.get("Reply-Message"), Some("Locked for this test"));
    assert!(alice.get("Message-Authenticator").is_some(), "{alice:?}");
    let erin = radtest(&lab, &server, "erin", "erin-pw");
    assert!(erin.is("Access-Accept"), "{}", erin.output);
    assert_eq!(erin.get("Class"), Some("OU=GP-EMPLOYEES;"));
    assert_eq!(erin.get("Message-Authenticator"), None, "{erin:?}");
}

/// Failover material: a stopped server does not answer (radclient gives up after its
/// one 1 s attempt), the second server does, a paused one is silent too, and a
/// restarted one answers again.
#[test]
fn stopped_server_does_not_answer() {
    let Some((lab, mut primary)) = lab_with_radius(&[]) else {
        return;
    };
    let secret = radius::lab_secret(&lab);
    let secondary =
        RadiusServer::start(&lab, RADIUS_SECONDARY, &secret, &[]).expect("second instance");
    let ask = |addr: std::net::Ipv4Addr| {
        radius::radclient(
            lab.gw_ns(),
            &addr.to_string(),
            "auth",
            &secret,
            &[
                ("User-Name", "alice"),
                ("User-Password", lab.password("alice")),
                ("Message-Authenticator", "0x00"),
            ],
            Duration::from_secs(1),
        )
    };
    assert!(ask(RADIUS_PRIMARY).is("Access-Accept"));
    assert!(ask(RADIUS_SECONDARY).is("Access-Accept"));

    primary.stop();
    let r = ask(RADIUS_PRIMARY);
    assert!(r.timed_out(), "a stopped server answered:\n{}", r.output);
    assert!(r.output.contains("No reply from server"), "{}", r.output);
    assert!(ask(RADIUS_SECONDARY).is("Access-Accept"));
    // The secondary logged the request, the stopped primary could not.
    secondary.wait_for_request("Access-Request", "alice");

    primary.restart();
    assert!(ask(RADIUS_PRIMARY).is("Access-Accept"));

    primary.pause();
    let r = ask(RADIUS_PRIMARY);
    assert!(r.timed_out(), "a paused server answered:\n{}", r.output);
    primary.resume();
    assert!(ask(RADIUS_PRIMARY).is("Access-Accept"));
}

/// The CoA / Disconnect sender, against FreeRADIUS standing in for the headend's
/// port 1700: ACK for the live session, NAK with Error-Cause otherwise; the request
/// comes from the RADIUS server's address with the chosen attributes.
#[test]
fn coa_and_disconnect_reach_port_1700() {
    let Some((lab, server)) = lab_with_radius(&[]) else {
        return;
    };
    let standin =
        RadiusServer::start_dynauth_standin(&lab, "C6120101-00001000").expect("dynauth stand-in");
    let coa = server.coa(&[
        ("Acct-Session-Id", "C6120101-00001000"),
        ("Cisco-AVPair", "audit-session-id=c6120101000010006543a1b2"),
        ("Framed-IP-Address", "198.18.100.10"),
        ("Cisco-AVPair", "cts:security-group-tag=000b-00"),
    ]);
    println!("CoA:\n{}", coa.output);
    assert!(coa.is("CoA-ACK"), "{}", coa.output);

    let nak = radius::disconnect(&lab, &[("Acct-Session-Id", "no-such-session")]);
    println!("Disconnect:\n{}", nak.output);
    assert!(nak.is("Disconnect-NAK"), "{}", nak.output);
    assert_eq!(nak.get("Error-Cause"), Some("Session-Context-Not-Found"));

    let ack = radius::dynauth(
        &lab,
        RADIUS_SECONDARY,
        DynAuth::Disconnect,
        &[("Acct-Session-Id", "C6120101-00001000")],
    );
    assert!(ack.is("Disconnect-ACK"), "{}", ack.output);

    let got = standin.received();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got[0].kind, "CoA-Request");
    assert!(got[0].from.starts_with("198.18.1.20:"), "{:?}", got[0]);
    assert_eq!(got[0].get("Framed-IP-Address"), Some("198.18.100.10"));
    assert!(
        got[0]
            .attrs
            .has("Cisco-AVPair", "cts:security-group-tag=000b-00")
    );
    assert!(got[0].get("Message-Authenticator").is_some());
    assert_eq!(got[1].kind, "Disconnect-Request");
    assert_eq!(got[2].kind, "Disconnect-Request");
    assert!(got[2].from.starts_with("198.18.1.21:"), "{:?}", got[2]);
    // Nothing listens on 1700 once the stand-in is gone: a timeout, not a hang.
    drop(standin);
    let none = server.coa(&[("Acct-Session-Id", "C6120101-00001000")]);
    assert!(none.timed_out(), "{}", none.output);
}

//! End-to-end: `headend reload` re-reads the whole config without dropping a
//! session (issue 15 item 3), with a stock openconnect client.
//!
//! alice logs in to tunnel group RL-TG (group-policy RL-GP, `vpn-filter value
//! RL-OPEN`) and pings the inside host. Then, one reload at a time:
//!
//! 1. RL-GP's filter becomes RL-NO-PING: applied to her running session (the ping
//!    is dropped), same index and address.
//! 2. A config with an error (its own filter edit above the bad line): refused
//!    with `headend.cfg:LINE`, nothing changes (the ping stays dropped).
//! 3. RL-TG is removed, RL-NEW added, bob's password changed: alice's session
//!    stays (address, filter); a new login to RL-TG is refused; bob logs in to
//!    RL-NEW with the new password, not with the old one.
//!
//! A second test adds RADIUS by reload (FreeRADIUS as ISE): an aaa-server
//! group with `dynamic-authorization` becomes RL-TG's `accounting-server-group`;
//! alice, logging in after the reload, has her accounting Start reach it, and
//! a Disconnect-Request from that new CoA client is ACKed (her Stop follows).
//!
//! A third test reloads SXP peers: adding a peer keeps the running speaker's
//! connection (its next update still arrives), removing it closes the
//! connection and its bindings go.
//!
//! A drop is asserted as "no reply to a ping", never as a duration; deadlines
//! are hang guards.

use e2e::lab::{self, HANG_GUARD, INSIDE_HOST};
use e2e::radius::{self, RADIUS_PRIMARY, RadiusServer};
use e2e::sessiondb::{field, session_of};
use e2e::sxp::{SXP_SPEAKER, SxpSpeaker};
use e2e::{Lab, wait_until};

const EXTRA: &str = "\
!
! Reload test (appended by tests/tests/reload.rs)
access-list RL-OPEN extended permit ip any any
access-list RL-NO-PING extended deny icmp any any
access-list RL-NO-PING extended permit ip any any
group-policy RL-GP internal
group-policy RL-GP attributes
 vpn-tunnel-protocol ssl-client
 split-tunnel-policy tunnelspecified
 split-tunnel-network-list value SPLIT
 address-pools value VPN-POOL
 anyconnect ssl dtls disable
 vpn-filter value RL-OPEN
tunnel-group RL-TG type remote-access
tunnel-group RL-TG general-attributes
 address-pool VPN-POOL
 default-group-policy RL-GP
tunnel-group RL-TG webvpn-attributes
 authentication aaa
 group-alias RL-TG enable
";

const NEW_TG: &str = "\
tunnel-group RL-NEW type remote-access
tunnel-group RL-NEW general-attributes
 address-pool VPN-POOL
 default-group-policy RL-GP
tunnel-group RL-NEW webvpn-attributes
 authentication aaa
 group-alias RL-NEW enable
";

const BOB_NEW_PASSWORD: &str = "reloaded-Pa55word";

/// `headend reload`: (success, reply).
fn reload(lab: &Lab) -> (bool, String) {
    let out = lab.headend_cli(&["reload"]);
    let reply = e2e::cmd::combined(&out);
    println!("headend reload:\n{reply}");
    (out.status.success(), reply)
}

fn write(lab: &Lab, text: &str) {
    std::fs::write(lab.config_path(), text).expect("write headend.cfg");
}

/// Index and assigned address of `user`'s session.
fn session(lab: &Lab, user: &str) -> (String, String) {
    let all = lab.show_sessions();
    let s = session_of(&all, user).unwrap_or_else(|| panic!("no session of {user}: {all:?}"));
    (
        field(s, "Index").to_string(),
        field(s, "Assigned IP").to_string(),
    )
}

#[test]
fn reload_applies_everything_and_keeps_sessions() {
    let Some(lab) = Lab::with_clients(2) else {
        return;
    };
    let base = std::fs::read_to_string(lab.config_path()).expect("read lab config");
    let mut config = format!("{base}{EXTRA}");
    write(&lab, &config);
    lab.start_headend();

    let alice = lab.connect_in_group(0, "alice", lab.password("alice"), "RL-TG", &[]);
    let before = session(&lab, "alice");
    assert!(
        lab::wait_ping(alice.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping reply through RL-OPEN"
    );

    // 1. The group-policy's filter changes: applied live.
    config = config.replace(
        " vpn-filter value RL-OPEN\n",
        " vpn-filter value RL-NO-PING\n",
    );
    write(&lab, &config);
    let (ok, reply) = reload(&lab);
    assert!(ok, "{reply}");
    assert!(
        reply.contains("INFO: configuration and policy reloaded from"),
        "{reply}"
    );
    assert!(
        reply.contains("group-policy RL-GP re-applied (filter RL-NO-PING)"),
        "{reply}"
    );
    assert!(
        wait_until(HANG_GUARD, || (!lab::ping(alice.ns(), INSIDE_HOST))
            .then_some(()))
        .is_some(),
        "pings still answered after the filter changed to RL-NO-PING"
    );
    assert_eq!(session(&lab, "alice"), before, "same session, same address");

    // 2. A config with an error changes nothing and says where.
    let broken = config.replace(
        " vpn-filter value RL-NO-PING\n",
        " vpn-filter value RL-OPEN\n",
    );
    let bad_line = broken.lines().count() + 1;
    write(
        &lab,
        &format!("{broken}access-list RL-OPEN extended permit tcp any any eq not-a-port\n"),
    );
    let (ok, reply) = reload(&lab);
    assert!(!ok, "{reply}");
    assert!(
        reply.contains(&format!("headend.cfg:{bad_line}")),
        "no file:line {bad_line}: {reply}"
    );
    assert!(
        !lab::ping(alice.ns(), INSIDE_HOST),
        "the refused config's filter edit was applied"
    );
    assert_eq!(session(&lab, "alice"), before);

    // 3. Remove RL-TG, add RL-NEW, change bob's password.
    let tg_start = config
        .find("tunnel-group RL-TG type")
        .expect("RL-TG in config");
    let mut edited = config[..tg_start].to_string();
    edited.push_str(NEW_TG);
    let old_bob = lab.password("bob").to_string();
    let bob_line = format!("username bob password {old_bob}");
    assert!(edited.contains(&bob_line), "bob's line in the config");
    edited = edited.replace(
        &bob_line,
        &format!("username bob password {BOB_NEW_PASSWORD}"),
    );
    write(&lab, &edited);
    let (ok, reply) = reload(&lab);
    assert!(ok, "{reply}");
    assert_eq!(
        session(&lab, "alice"),
        before,
        "the removed tunnel group ends no session"
    );
    assert!(alice.tun_addr().is_some(), "alice's tunnel went down");
    assert!(
        !lab::ping(alice.ns(), INSIDE_HOST),
        "alice's filter changed"
    );

    // A new login to the removed tunnel group is refused.
    let mut gone = lab.spawn_client_in_group(1, "bob", BOB_NEW_PASSWORD, "RL-TG", &[]);
    let status = gone.wait_exit(HANG_GUARD).unwrap_or_else(|| {
        panic!(
            "openconnect to the removed RL-TG still running:\n{}",
            gone.output()
        )
    });
    assert!(
        !status.success(),
        "login to RL-TG worked:\n{}",
        gone.output()
    );
    assert!(session_of(&lab.show_sessions(), "bob").is_none());

    // bob's old password is refused, the new one works in the new tunnel group.
    let mut old = lab.spawn_client_in_group(1, "bob", &old_bob, "RL-NEW", &[]);
    let status = old
        .wait_exit(HANG_GUARD)
        .unwrap_or_else(|| panic!("openconnect with bob's old password still running"));
    assert!(
        !status.success(),
        "bob's old password worked:\n{}",
        old.output()
    );
    let bob = lab.connect_in_group(1, "bob", BOB_NEW_PASSWORD, "RL-NEW", &[]);
    assert!(bob.tun_addr().is_some());
    let all = lab.show_sessions();
    let b = session_of(&all, "bob").expect("bob's session");
    if let Some(tg) = b.get("Tunnel Group") {
        assert_eq!(tg, "RL-NEW", "{b:?}");
    }
    assert_ne!(field(b, "Assigned IP"), before.1, "bob got alice's address");
    assert_eq!(session(&lab, "alice"), before);
    lab.assert_headend_running();
}

/// Accounting and the CoA listener follow a reload that adds an aaa-server.
#[test]
fn reload_adds_accounting_and_a_coa_client() {
    let Some(lab) = Lab::with_clients(1) else {
        return;
    };
    let secret = radius::lab_secret(&lab);
    let Some(ise) = RadiusServer::start(&lab, RADIUS_PRIMARY, &secret, &[]) else {
        return;
    };
    let base = std::fs::read_to_string(lab.config_path()).expect("read lab config");
    let config = format!("{base}{EXTRA}");
    write(&lab, &config);
    lab.start_headend();

    // The ISE group (hosts, keys, `dynamic-authorization port 1700`) and RL-TG's
    // accounting to it, by reload.
    // Appended, so the lines above keep their numbers.
    let with_radius = format!("{config}!\n{}", radius::asa_config(&secret)).replace(
        " default-group-policy RL-GP\n",
        " default-group-policy RL-GP\n accounting-server-group ISE\n",
    );
    write(&lab, &with_radius);
    let (ok, reply) = reload(&lab);
    assert!(ok, "{reply}");
    assert!(
        reply.contains("dynamic-authorization (CoA) listener on UDP 1700"),
        "{reply}"
    );
    assert!(!reply.contains("WARNING"), "{reply}");

    let mut alice = lab.connect_in_group(0, "alice", lab.password("alice"), "RL-TG", &[]);
    // Her audit-session-id starts with the new group's NAS-IP-Address
    // (198.18.1.1), not the zeros of a headend started without aaa-server.
    let all = lab.show_sessions();
    let a = session_of(&all, "alice").expect("alice's session");
    assert!(field(a, "Audt Sess ID").starts_with("c6120101"), "{a:?}");
    let is = |r: &std::collections::HashMap<String, String>, status: &str| {
        r.get("Acct-Status-Type").map(String::as_str) == Some(status)
            && r.get("User-Name").map(String::as_str) == Some("alice")
    };
    let records = ise.wait_accounting("a Start for alice", |r| r.iter().any(|r| is(r, "Start")));
    let start = records.iter().find(|r| is(r, "Start")).expect("Start");
    let id = start["Acct-Session-Id"].clone();

    // The new CoA client is heard and its Disconnect applied.
    let ack = ise.disconnect(&[("Acct-Session-Id", &id)]);
    assert!(ack.is("Disconnect-ACK"), "{}", ack.output);
    assert!(
        alice.wait_exit(HANG_GUARD).is_some(),
        "openconnect still running after the Disconnect:\n{}",
        alice.output()
    );
    ise.wait_accounting("a Stop for alice", |r| {
        r.iter().any(|r| {
            is(r, "Stop") && r.get("Acct-Session-Id").map(String::as_str) == Some(id.as_str())
        })
    });
    lab.assert_headend_running();
}

const SXP_PASSWORD: &str = "reload-sxp-md5-key";

/// The `show` output once `pred` holds (hang guard).
fn wait_show(lab: &Lab, what: &[&str], desc: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait_until(HANG_GUARD, || {
        last = lab.show(what);
        pred(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "show {}: not {desc} after {HANG_GUARD:?}:\n{last}\n--- headend log ---\n{}",
            what.join(" "),
            lab::tail(&lab.headend_log(), 40)
        )
    })
}

/// SXP peers follow a reload: unchanged peers keep their connection, a
/// removed peer's connection closes and its bindings go.
#[test]
fn reload_changes_sxp_peers() {
    let Some(lab) = Lab::new() else {
        return;
    };
    const MAP: &[&str] = &["cts", "role-based", "sgt-map", "all"];
    let base = std::fs::read_to_string(lab.config_path()).expect("read lab config");
    let sxp = format!(
        "!\ncts sxp enable\ncts sxp default password {SXP_PASSWORD}\ncts sxp listener hold-time 9 12\n"
    );
    let peer =
        format!("cts sxp connection peer {SXP_SPEAKER} password default mode local listener\n");
    let other = "cts sxp connection peer 198.18.1.31 password none mode local listener\n";
    write(&lab, &format!("{base}{sxp}{peer}"));
    lab.start_headend();
    let speaker = SxpSpeaker::connect(&lab, SXP_PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    speaker.update(&[("198.18.1.40/32", 20)], &[]);
    wait_show(&lab, MAP, "with 198.18.1.40", |m| m.contains("198.18.1.40"));

    // Another peer added: the speaker's connection carries its next update.
    write(&lab, &format!("{base}{sxp}{peer}{other}"));
    let (ok, reply) = reload(&lab);
    assert!(ok, "{reply}");
    assert!(reply.contains("INFO: SXP peers: 2"), "{reply}");
    assert!(!reply.contains("WARNING"), "{reply}");
    speaker.update(&[("198.18.1.41/32", 21)], &[]);
    wait_show(&lab, MAP, "with 198.18.1.41", |m| m.contains("198.18.1.41"));
    assert!(
        !speaker.closed_by_headend(),
        "unchanged peer's connection closed"
    );

    // The speaker's peer removed: its connection and bindings go.
    write(&lab, &format!("{base}{sxp}{other}"));
    let (ok, reply) = reload(&lab);
    assert!(ok, "{reply}");
    assert!(
        reply.contains(&format!("SXP connection from {SXP_SPEAKER} closed")),
        "{reply}"
    );
    assert!(
        wait_until(HANG_GUARD, || speaker.closed_by_headend().then_some(())).is_some(),
        "the removed peer's connection is still open"
    );
    wait_show(&lab, MAP, "without SXP bindings", |m| {
        !m.contains("198.18.1.40") && !m.contains("198.18.1.41")
    });
    lab.assert_headend_running();
}

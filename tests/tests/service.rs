//! The headend as a system service: started as root with `--user nobody`, it
//! drops to that user keeping only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE, and
//! everything root opened or a capability allows still works: TLS on 443, the
//! TUN device, the admin socket, RADIUS (client and CoA/Disconnect server on
//! 1700), SIGHUP reload; logs are JSON with `--log-format json`.
//! Deadlines are hang guards, never speed assertions.

use e2e::lab::{self, HANG_GUARD, INSIDE_HOST};
use e2e::radius::{self, RadiusLab, RadiusSetup};
use e2e::sessiondb::session_of;
use e2e::{Session, wait_until};

/// CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12), as /proc prints sets.
const KEPT_CAPS: &str = "0000000000001400";

fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn runs_as_nobody_with_two_capabilities_and_everything_still_works() {
    let Some(rl) = RadiusLab::start(RadiusSetup {
        config: format!(
            "access-list VPN-FILTER extended permit ip any any\n!\n{}",
            radius::tunnel_group_config(None)
        ),
        run_as: Some("nobody"),
        headend_args: vec!["--log-format", "json"],
        ..RadiusSetup::default()
    }) else {
        return;
    };
    let lab = &rl.lab;
    let pid = lab.headend_pid();
    let nobody = e2e::cmd::must(&mut e2e::cmd::command("id", &["-u", "nobody"]));
    let nobody = nobody.trim();
    assert_eq!(
        status_field(pid, "Uid"),
        [nobody; 4].join(" "),
        "uids of the headend"
    );
    for set in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, set), KEPT_CAPS, "{set} of the headend");
    }

    // RADIUS login over TLS on 443 (bound after the drop: CAP_NET_BIND_SERVICE),
    // traffic through the TUN device.
    let mut alice = rl.login(0, "alice");
    assert!(
        lab::wait_ping(alice.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping through the tunnel of a headend running as nobody"
    );
    // The admin socket root bound before the drop, used by root.
    assert!(session_of(&lab.show_sessions(), "alice").is_some());

    // SIGHUP: the unprivileged process re-reads its (group-readable) config.
    lab.signal_headend(libc::SIGHUP);
    let reloaded = wait_until(HANG_GUARD, || {
        lab.headend_log()
            .contains("policy reloaded from")
            .then_some(())
    });
    assert!(reloaded.is_some(), "no reload:\n{}", lab.headend_log());

    // Disconnect-Request on the dynamic-authorization port.
    let ack = rl.primary.disconnect(&[("User-Name", "alice")]);
    assert!(ack.is("Disconnect-ACK"), "{}", ack.output);
    assert!(
        alice.wait_exit(HANG_GUARD).is_some(),
        "openconnect still running after Disconnect-ACK:\n{}",
        alice.output()
    );
    lab.wait_sessions("empty after the Disconnect", <[Session]>::is_empty);

    // Every log line is one JSON object; the drop is logged.
    let log = lab.headend_log();
    let mut dropped = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
        let msg = v["fields"]["message"].as_str().unwrap_or_default();
        dropped |= msg.starts_with("running as user nobody");
    }
    assert!(dropped, "no 'running as user nobody' line in\n{log}");
    lab.assert_headend_running();
}

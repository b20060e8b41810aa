//! End-to-end: a RADIUS server that does not sign its replies (FreeRADIUS before
//! 3.2.5 and NPS by default send Access-Accept/Reject without Message-Authenticator).
//! The lab's FreeRADIUS answers user `erin` that way (`RadiusUser::unsigned_reply`).
//!
//! - By default the headend refuses those replies (BlastRADIUS, CVE-2024-3596): the
//!   login fails telling the client the server's answer was refused (not that no
//!   server answered), the headend logs the reason once per server and interval,
//!   and `show aaa-server` counts every dropped reply.
//! - With `accept-unsigned-replies` under the host, the same login works, the
//!   headend warned about it at start, and `show aaa-server` counts the accepted
//!   unsigned replies.

use e2e::lab::{self, HANG_GUARD};
use e2e::radius::{self, RADIUS_PRIMARY, RadiusLab, RadiusSetup, RadiusUser};
use e2e::wait_until;

const USER: &str = "erin";
const PASSWORD: &str = "erin-unsigned-pw";

fn setup(extra: &str) -> RadiusSetup {
    RadiusSetup {
        // One try of one second per request: the refused login ends quickly.
        timing: (1, 1),
        config: format!(
            "{extra}access-list VPN-FILTER extended permit ip any any\n!\n{}",
            radius::tunnel_group_config(None)
        ),
        users: vec![
            RadiusUser::new(USER)
                .password(PASSWORD)
                .reply("Class", "OU=GP-RADIUS-DEFAULT;")
                .unsigned_reply(),
        ],
        ..RadiusSetup::default()
    }
}

/// The value of `label` in the block of `host` in `show aaa-server` output.
fn counter(show: &str, host: &str, label: &str) -> u64 {
    let block = show
        .split("Server Group:")
        .find(|b| b.contains(&format!("Server Address:  {host}\n")))
        .unwrap_or_else(|| panic!("no block for {host} in:\n{show}"));
    block
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} for {host} in:\n{show}"))
}

#[test]
fn unsigned_replies_are_refused_by_default_and_said_so() {
    let Some(rl) = RadiusLab::start(setup("")) else {
        return;
    };
    let host = RADIUS_PRIMARY.to_string();
    let output = rl.failed_login(0, USER, PASSWORD);
    assert!(
        output.contains("answered, but its answer was refused"),
        "openconnect output does not say the answer was refused:\n{output}"
    );
    assert!(
        !output.contains("not available"),
        "the client is told no server answered:\n{output}"
    );
    // The server did answer (FreeRADIUS logged its Access-Accept).
    rl.primary.wait_for_request("Access-Request", USER);
    // A second refused login within the report interval: counted, not logged again.
    let _ = rl.failed_login(0, USER, PASSWORD);
    let needle = format!("Access-Accept from {host} without Message-Authenticator dropped: ");
    let log = rl.lab.headend_log();
    // The report of the RADIUS client (the login's own failure line quotes it too).
    let reports = log
        .lines()
        .filter(|l| l.contains("headend::radius_io") && l.contains(&needle))
        .count();
    assert_eq!(
        reports,
        1,
        "expected one report of the dropped replies:\n{}",
        lab::tail(&log, 40)
    );
    assert!(log.contains("CVE-2024-3596") && log.contains("accept-unsigned-replies"));
    let show = rl.lab.show(&["aaa-server", "ISE"]);
    assert!(
        show.starts_with("Server Group:    ISE\nServer Protocol: radius\n"),
        "{show}"
    );
    assert!(
        counter(&show, &host, "Number of unsigned replies dropped") >= 2,
        "{show}"
    );
    assert_eq!(counter(&show, &host, "Number of accepts"), 0, "{show}");
    assert_eq!(
        counter(&show, &host, "Number of unsigned replies accepted"),
        0,
        "{show}"
    );
    assert!(
        show.contains("Server status:   ACTIVE"),
        "the answering server is not dead:\n{show}"
    );
    assert!(rl.lab.show_sessions().is_empty());
    rl.lab.assert_headend_running();
}

#[test]
fn accept_unsigned_replies_lets_the_login_through_with_a_warning() {
    let Some(rl) = RadiusLab::start(setup(&format!(
        "aaa-server ISE (inside) host {RADIUS_PRIMARY}\n accept-unsigned-replies\n!\n"
    ))) else {
        return;
    };
    let log = rl.lab.headend_log();
    assert!(
        log.contains("`accept-unsigned-replies` is set") && log.contains("CVE-2024-3596"),
        "no warning at start:\n{}",
        lab::tail(&log, 40)
    );
    let mut client = rl.spawn(0, USER, PASSWORD);
    if let Err(e) = client.wait_connected(HANG_GUARD) {
        panic!(
            "{e}\n--- headend log ---\n{}",
            lab::tail(&rl.lab.headend_log(), 60)
        );
    }
    assert!(client.tun_addr().is_some());
    let host = RADIUS_PRIMARY.to_string();
    let mut last = String::new();
    wait_until(HANG_GUARD, || {
        last = rl.lab.show(&["aaa-server"]);
        (counter(&last, &host, "Number of unsigned replies accepted") >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("PAP and authorization replies not counted:\n{last}"));
    assert_eq!(
        counter(&last, &host, "Number of unsigned replies dropped"),
        0,
        "{last}"
    );
    assert!(counter(&last, &host, "Number of accepts") >= 2, "{last}");
}

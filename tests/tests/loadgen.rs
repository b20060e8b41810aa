//! `loadgen` (benches/src/bin/loadgen.rs) against the headend in the lab: many
//! sessions over the real protocol from one process, over DTLS and over CSTP
//! only. Asserts behaviour, never speed: every session comes up with its own
//! pool address, every echo through the tunnel is answered, and after logout
//! no session is left and every address is free again.

use std::collections::BTreeSet;

use e2e::lab::{AUTHGROUP, HANG_GUARD, Lab, in_pool};
use e2e::loadgen::{
    Loadgen, Sink, add_shared_user, add_users, append_config, pool_usage, tput_send,
};
use e2e::sessiondb::field;

const PASSWORD: &str = "Lg-Pass-4711";
const PER_RUN: usize = 50;

#[test]
fn loadgen_sessions_over_dtls_and_cstp_come_up_echo_and_leave_no_trace() {
    let Some(lab) = Lab::new() else { return };
    add_shared_user(&lab, "lg", PASSWORD, 2 * PER_RUN);
    lab.start_headend();
    let pid = lab.headend_pid().to_string();
    let (free0, used0) = pool_usage(&lab, "VPN-POOL");
    assert_eq!(used0, 0);

    for (transport, first) in [("dtls", 0usize), ("cstp", PER_RUN)] {
        let n = PER_RUN.to_string();
        let first_s = first.to_string();
        let run = Loadgen::start(
            &lab,
            &format!("loadgen-{transport}"),
            &[
                "--transport",
                transport,
                "--sessions",
                &n,
                "--first",
                &first_s,
                "--user",
                "lg",
                "--password",
                PASSWORD,
                "--group",
                AUTHGROUP,
                "--concurrency",
                "16",
                "--pps",
                "5",
                "--count",
                "3",
                "--duration",
                "0",
                "--drain",
                "60",
                "--server-pid",
                &pid,
                "--quiet",
            ],
        );
        assert!(
            run.ready.contains(&format!("up={PER_RUN} failed=0")),
            "{transport}: {}",
            run.ready
        );

        // The headend lists exactly these sessions, each with its own pool address
        // and the transport loadgen asked for.
        let sessions = lab.show_sessions();
        assert_eq!(sessions.len(), PER_RUN, "{transport}: {sessions:?}");
        assert!(
            sessions.iter().all(|s| field(s, "Username") == "lg"),
            "{sessions:?}"
        );
        let addrs: BTreeSet<std::net::Ipv4Addr> = sessions
            .iter()
            .map(|s| field(s, "Assigned IP").parse().expect("Assigned IP"))
            .collect();
        assert_eq!(addrs.len(), PER_RUN, "{transport}: addresses not distinct");
        assert!(addrs.iter().all(|a| in_pool(*a)), "{addrs:?}");
        for s in &sessions {
            let dtls = field(s, "Protocol").contains("DTLS-Tunnel");
            assert_eq!(dtls, transport == "dtls", "{transport}: {s:?}");
        }
        assert_eq!(pool_usage(&lab, "VPN-POOL").1, PER_RUN as u64);

        let r = run.finish();
        assert_eq!(r["up"], PER_RUN, "{transport}: {r}");
        assert_eq!(r["failed"], 0, "{transport}: {r}");
        assert_eq!(r["lost"], 0, "{transport}: {r}");
        assert_eq!(r["logged_out"], PER_RUN, "{transport}: {r}");
        let want_dtls = if transport == "dtls" { PER_RUN } else { 0 };
        assert_eq!(r["dtls_up"], want_dtls, "{transport}: {r}");
        assert_eq!(r["echo"]["sent"], 3 * PER_RUN, "{transport}: {r}");
        assert_eq!(r["echo"]["received"], 3 * PER_RUN, "{transport}: {r}");
        assert!(r["server"]["rss_kib_per_session"].is_number(), "{r}");

        // Logout (CSTP DISCONNECT 0xb0) ends every session and frees its address.
        lab.wait_sessions("empty after loadgen logged out", |s| s.is_empty());
        assert_eq!(pool_usage(&lab, "VPN-POOL"), (free0, 0), "{transport}");
    }
    lab.assert_headend_running();
}

/// `vpn-sessiondb max-anyconnect-premium-or-essentials-limit 5`: five logins
/// succeed, the sixth is refused with the reason in the auth form (what
/// openconnect prints) and a log line; after a logout there is room again.
#[test]
fn session_limit_refuses_the_login_over_the_limit() {
    let Some(lab) = Lab::new() else { return };
    add_users(&lab, "lim", 7, PASSWORD);
    append_config(
        &lab,
        "vpn-sessiondb max-session-limit 100\n\
         vpn-sessiondb max-anyconnect-premium-or-essentials-limit 5\n",
    );
    lab.start_headend();
    let common = [
        "--transport",
        "cstp",
        "--user",
        "lim{n}",
        "--password",
        PASSWORD,
        "--group",
        AUTHGROUP,
        "--pps",
        "0",
        "--duration",
        "0",
        "--quiet",
    ];
    // One login at a time, so the sixth is the one over the limit.
    let mut args = vec!["--sessions", "6", "--concurrency", "1"];
    args.extend_from_slice(&common);
    let run = Loadgen::start(&lab, "loadgen-limit", &args);
    assert!(run.ready.contains("up=5 failed=1"), "{}", run.ready);
    assert_eq!(lab.show_sessions().len(), 5);
    let refused = lab.show_sessions();
    assert!(
        refused.iter().all(|s| field(s, "Username") != "lim5"),
        "{refused:?}"
    );

    // A seventh user from a second loadgen while five are up: refused too.
    let mut args = vec!["--sessions", "1", "--first", "6"];
    args.extend_from_slice(&common);
    let second = Loadgen::start(&lab, "loadgen-limit-2", &args);
    assert!(second.ready.contains("up=0 failed=1"), "{}", second.ready);
    let r2 = second.finish();
    let why = r2["failures"].to_string();
    assert!(
        why.contains("session limit of 5 reached"),
        "refusal reason not given to the client: {r2}"
    );
    let log = lab.headend_log();
    assert!(
        log.contains("User <lim6> Session could not be established: session limit of 5 reached"),
        "no log line for the refusal:\n{log}"
    );
    assert!(
        log.contains("RLIMIT_NOFILE raised from"),
        "RLIMIT_NOFILE not logged at start:\n{log}"
    );

    let r = run.finish();
    assert_eq!(r["up"], 5, "{r}");
    assert_eq!(r["failed"], 1, "{r}");
    assert!(
        r["failures"]
            .to_string()
            .contains("session limit of 5 reached"),
        "{r}"
    );
    lab.wait_sessions("empty after logout", |s| s.is_empty());

    // Room again once the sessions are gone.
    let mut args = vec!["--sessions", "1", "--first", "6"];
    args.extend_from_slice(&common);
    let third = Loadgen::start(&lab, "loadgen-limit-3", &args);
    assert!(third.ready.contains("up=1 failed=0"), "{}", third.ready);
    assert_eq!(third.finish()["up"], 1);
}

/// The headend process's open fds and threads (/proc).
fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |d: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{d}"))
            .map(|r| r.count())
            .unwrap_or(usize::MAX)
    };
    (count("fd"), count("task"))
}

/// A `show counters` line `NAME : N`.
fn counter(lab: &Lab, name: &str) -> u64 {
    let out = lab.show(&["counters"]);
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in show counters:\n{out}"))
}

/// Several rounds of a few hundred sessions coming and going (DTLS, with an echo
/// each): after every round the sessions, pool addresses, DTLS registrations,
/// open fds and threads are back to where they were.
#[test]
fn churn_returns_sessions_addresses_fds_and_threads_to_baseline() {
    const SESSIONS: usize = 200;
    const ROUNDS: usize = 3;
    let Some(lab) = Lab::new() else { return };
    add_shared_user(&lab, "churn", PASSWORD, SESSIONS);
    lab.start_headend();
    let pid = lab.headend_pid();
    let n = SESSIONS.to_string();
    let round = |name: &str| {
        let run = Loadgen::start(
            &lab,
            name,
            &[
                "--sessions",
                &n,
                "--user",
                "churn",
                "--password",
                PASSWORD,
                "--group",
                AUTHGROUP,
                "--concurrency",
                "16",
                "--pps",
                "2",
                "--count",
                "1",
                "--duration",
                "0",
                "--drain",
                "60",
                "--quiet",
            ],
        );
        assert!(
            run.ready.contains(&format!("up={SESSIONS} failed=0")),
            "{name}: {}",
            run.ready
        );
        assert_eq!(lab.show_sessions().len(), SESSIONS, "{name}");
        assert_eq!(counter(&lab, "dtls-app-ids"), SESSIONS as u64, "{name}");
        let r = run.finish();
        assert_eq!(r["echo"]["received"], SESSIONS, "{name}: {r}");
        assert_eq!(r["logged_out"], SESSIONS, "{name}: {r}");
        lab.wait_sessions("empty after the round", |s| s.is_empty());
    };
    // A first round starts whatever the runtime starts lazily (blocking-pool
    // threads for password hashing, TUN writers): the baseline is after it.
    round("churn-warmup");
    let (free0, _) = pool_usage(&lab, "VPN-POOL");
    let mut baseline = (0, 0);
    e2e::wait_until(HANG_GUARD, || {
        baseline = fds_and_threads(pid);
        // Idle blocking-pool threads leave after 10 s; wait for a quiet count.
        std::thread::sleep(std::time::Duration::from_secs(1));
        (fds_and_threads(pid) == baseline).then_some(())
    });
    let tasks0 = settled_tasks(&lab);
    for i in 0..ROUNDS {
        round(&format!("churn-{i}"));
        assert_eq!(pool_usage(&lab, "VPN-POOL"), (free0, 0), "round {i}");
        assert_eq!(counter(&lab, "dtls-app-ids"), 0, "round {i}");
        assert_eq!(counter(&lab, "dtls-peers"), 0, "round {i}");
        let tasks = settled_tasks(&lab);
        assert!(tasks <= tasks0, "round {i}: {tasks} tasks, {tasks0} before");
        let mut now = (0, 0);
        let settled = e2e::wait_until(2 * HANG_GUARD, || {
            now = fds_and_threads(pid);
            (now.0 <= baseline.0 && now.1 <= baseline.1).then_some(())
        });
        assert!(
            settled.is_some(),
            "round {i}: fds/threads {now:?} did not return to {baseline:?}"
        );
    }
    lab.assert_headend_running();
}

/// `show counters`' live async tasks, once connections that are closing have
/// finished (the count stops falling).
fn settled_tasks(lab: &Lab) -> u64 {
    let mut last = counter(lab, "tasks");
    // Bounded by the hang guard.
    e2e::wait_until(HANG_GUARD, || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = counter(lab, "tasks");
        let done = now >= last;
        last = now;
        done.then_some(now)
    })
    .unwrap_or(last)
}

/// Issue 17 item 4, short: sessions whose TCP connection is cut (RST, no
/// logout) reconnect with their cookie, keep their address, pass traffic
/// through the new tunnel and log out; afterwards sessions, pool addresses,
/// DTLS registrations, tasks, fds and threads are back to the baseline.
#[test]
fn reconnects_after_cut_tcp_keep_addresses_and_leave_nothing_behind() {
    const SESSIONS: usize = 20;
    const RECONNECTS: usize = 5;
    let Some(lab) = Lab::new() else { return };
    add_shared_user(&lab, "rc", PASSWORD, SESSIONS);
    lab.start_headend();
    let pid = lab.headend_pid();
    let n = SESSIONS.to_string();
    let k = RECONNECTS.to_string();
    let run = |name: &str, reconnects: &str| {
        Loadgen::start(
            &lab,
            name,
            &[
                "--sessions",
                &n,
                "--reconnects",
                reconnects,
                "--user",
                "rc",
                "--password",
                PASSWORD,
                "--group",
                AUTHGROUP,
                "--concurrency",
                "10",
                "--pps",
                "5",
                "--count",
                "2",
                "--duration",
                "0",
                "--drain",
                "60",
                "--quiet",
            ],
        )
    };
    // Warm-up without reconnects: what the runtime starts lazily is in the baseline.
    let warm = run("rc-warmup", "0");
    assert!(
        warm.ready.contains(&format!("up={SESSIONS} failed=0")),
        "{}",
        warm.ready
    );
    assert_eq!(warm.finish()["reconnects"], 0);
    lab.wait_sessions("empty after the warm-up", |s| s.is_empty());
    let (free0, _) = pool_usage(&lab, "VPN-POOL");
    let tasks0 = settled_tasks(&lab);
    let mut baseline = (0, 0);
    e2e::wait_until(HANG_GUARD, || {
        baseline = fds_and_threads(pid);
        std::thread::sleep(std::time::Duration::from_secs(1));
        (fds_and_threads(pid) == baseline).then_some(())
    });

    let rc = run("rc-cut", &k);
    assert!(
        rc.ready.contains(&format!("up={SESSIONS} failed=0")),
        "{}",
        rc.ready
    );
    // One session per client, each on its own address, all connected again.
    let sessions = lab.show_sessions();
    assert_eq!(sessions.len(), SESSIONS, "{sessions:?}");
    let addrs: BTreeSet<std::net::Ipv4Addr> = sessions
        .iter()
        .map(|s| field(s, "Assigned IP").parse().expect("Assigned IP"))
        .collect();
    assert_eq!(addrs.len(), SESSIONS, "addresses not distinct");
    assert_eq!(pool_usage(&lab, "VPN-POOL").1, SESSIONS as u64);
    assert_eq!(counter(&lab, "dtls-app-ids"), SESSIONS as u64);
    let r = rc.finish();
    assert_eq!(r["reconnects"], SESSIONS * RECONNECTS, "{r}");
    assert_eq!(r["reconnect_address_changed"], 0, "{r}");
    assert_eq!(r["dtls_up"], SESSIONS, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    // The traffic went through the reconnected tunnels.
    assert_eq!(r["echo"]["sent"], 2 * SESSIONS, "{r}");
    assert_eq!(r["echo"]["received"], 2 * SESSIONS, "{r}");
    assert_eq!(r["logged_out"], SESSIONS, "{r}");

    lab.wait_sessions("empty after logout", |s| s.is_empty());
    assert_eq!(pool_usage(&lab, "VPN-POOL"), (free0, 0));
    assert_eq!(counter(&lab, "dtls-app-ids"), 0);
    assert_eq!(counter(&lab, "dtls-peers"), 0);
    let tasks = settled_tasks(&lab);
    assert!(tasks <= tasks0, "{tasks} tasks, {tasks0} before");
    let mut now = (0, 0);
    let settled = e2e::wait_until(2 * HANG_GUARD, || {
        now = fds_and_threads(pid);
        (now.0 <= baseline.0 && now.1 <= baseline.1).then_some(())
    });
    assert!(
        settled.is_some(),
        "fds/threads {now:?} did not return to {baseline:?}"
    );
    lab.assert_headend_running();
}

/// The server cuts every tunnel's TCP connection at once (`ss -K` in its
/// namespace, as issue 12's reconnect storm): loadgen with
/// `--reconnect-on-loss` reconnects each session with its cookie, as
/// openconnect does; every session comes back with its own index and address,
/// none is lost, and after logout nothing is left.
#[test]
fn sessions_cut_by_the_server_reconnect_with_their_addresses() {
    const SESSIONS: usize = 20;
    let Some(lab) = Lab::new() else { return };
    add_shared_user(&lab, "cut", PASSWORD, SESSIONS);
    lab.start_headend();
    let n = SESSIONS.to_string();
    let run = Loadgen::start(
        &lab,
        "loadgen-cut",
        &[
            "--sessions",
            &n,
            "--reconnect-on-loss",
            "--user",
            "cut",
            "--password",
            PASSWORD,
            "--group",
            AUTHGROUP,
            "--concurrency",
            "10",
            "--pps",
            "0",
            "--duration",
            "0",
            "--quiet",
        ],
    );
    assert!(
        run.ready.contains(&format!("up={SESSIONS} failed=0")),
        "{}",
        run.ready
    );
    let bound = |s: &[e2e::Session]| -> BTreeSet<(String, String)> {
        s.iter()
            .map(|s| {
                (
                    field(s, "Index").to_string(),
                    field(s, "Assigned IP").to_string(),
                )
            })
            .collect()
    };
    let before = bound(&lab.show_sessions());
    assert_eq!(before.len(), SESSIONS);
    let tunnels = || {
        let out = e2e::lab::exec_in(
            lab.gw_ns(),
            &["ss", "-Htn", "state", "established", "( sport = :443 )"],
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(tunnels(), SESSIONS);
    let killed = e2e::lab::exec_in(
        lab.gw_ns(),
        &[
            "ss",
            "-K",
            "-tn",
            "state",
            "established",
            "( sport = :443 )",
        ],
    );
    assert!(killed.status.success(), "ss -K: {killed:?}");
    // Every session lost its connection: the headend keeps it for reconnection,
    // or, when loadgen's reconnect arrives before the old connection's task has
    // seen the reset, the new connection supersedes it (sessions.rs `detach`
    // then logs nothing). Either way loadgen counts one reconnect per session
    // (asserted below); the log must show at least one loss.
    let log_lost = || {
        lab.headend_log()
            .matches("session kept for reconnection")
            .count()
    };
    let lost = e2e::wait_until(HANG_GUARD, || (log_lost() >= 1).then_some(()));
    assert!(lost.is_some(), "no tunnel seen lost after ss -K");
    // ...and is connected again: as many tunnels, the same indexes and addresses.
    let back = e2e::wait_until(2 * HANG_GUARD, || (tunnels() == SESSIONS).then_some(()));
    assert!(back.is_some(), "{} of {SESSIONS} tunnels back", tunnels());
    assert_eq!(bound(&lab.show_sessions()), before);
    assert_eq!(pool_usage(&lab, "VPN-POOL").1, SESSIONS as u64);
    let r = run.finish();
    assert_eq!(r["reconnects"], SESSIONS, "{r}");
    assert_eq!(r["reconnect_address_changed"], 0, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["logged_out"], SESSIONS, "{r}");
    lab.wait_sessions("empty after logout", |s| s.is_empty());
    assert_eq!(pool_usage(&lab, "VPN-POOL").1, 0);
    lab.assert_headend_running();
}

/// The throughput mode of `benches/tput.sh` for a few sessions, over DTLS and
/// over CSTP: loadgen's paced UDP (`--gbps`) reaches `tput sink` on the inside
/// host, every datagram from its own session's address; `tput send` on the
/// inside host reaches every session through the headend (`--addresses-out`).
/// Asserts counts, never speed.
#[test]
fn throughput_mode_delivers_upstream_and_downstream_through_the_headend() {
    const N: u64 = 4;
    const PER_SESSION: u64 = 150;
    let Some(lab) = Lab::new() else { return };
    add_shared_user(&lab, "tp", PASSWORD, 2 * N as usize);
    lab.start_headend();
    for (transport, first) in [("dtls", "0"), ("cstp", "4")] {
        let sink = Sink::start(&lab, 9);
        let addrs = lab.dir().join(format!("tput-addresses-{transport}"));
        let addrs_s = addrs.to_str().expect("utf-8 path");
        let n = N.to_string();
        let count = PER_SESSION.to_string();
        let run = Loadgen::start(
            &lab,
            &format!("loadgen-tput-{transport}"),
            &[
                "--transport",
                transport,
                "--sessions",
                &n,
                "--first",
                first,
                "--user",
                "tp",
                "--password",
                PASSWORD,
                "--group",
                AUTHGROUP,
                "--concurrency",
                "4",
                "--traffic",
                "udp",
                "--target",
                &e2e::lab::INSIDE_HOST.to_string(),
                "--udp-port",
                "9",
                "--gbps",
                "0.01",
                "--size",
                "1380",
                "--count",
                &count,
                "--burst",
                "--duration",
                "0",
                "--drain",
                "5",
                "--addresses-out",
                addrs_s,
                "--quiet",
            ],
        );
        assert!(
            run.ready.contains(&format!("up={N} failed=0")),
            "{transport}: {}",
            run.ready
        );
        let listed: BTreeSet<std::net::Ipv4Addr> = std::fs::read_to_string(&addrs)
            .expect("addresses file")
            .lines()
            .map(|l| l.parse().expect("an address per line"))
            .collect();
        assert_eq!(listed.len() as u64, N, "{transport}: {listed:?}");
        assert!(listed.iter().all(|a| in_pool(*a)), "{listed:?}");

        // Downstream while the sessions are up: every session gets its share.
        let sent = tput_send(
            &lab,
            &addrs,
            &["--gbps", "0.005", "--size", "1380", "--duration", "1"],
        );
        let sent_pkts = sent["packets"].as_u64().expect("packets");
        assert!(sent_pkts >= N, "{sent}");
        assert_eq!(sent["send_errors"], 0, "{sent}");

        let r = run.finish();
        let got = sink.finish();
        // Upstream: exactly what loadgen sent, PER_SESSION from each session.
        assert_eq!(r["tx"]["packets"], N * PER_SESSION, "{transport}: {r}");
        assert_eq!(r["tx"]["bytes"], N * PER_SESSION * 1380, "{transport}: {r}");
        assert_eq!(got["packets"], N * PER_SESSION, "{transport}: {got}");
        assert_eq!(got["bytes"], N * PER_SESSION * 1380, "{transport}: {got}");
        assert_eq!(got["sources"], N, "{transport}: {got}");
        assert_eq!(got["per_source"]["min"], PER_SESSION, "{transport}: {got}");
        assert_eq!(got["per_source"]["max"], PER_SESSION, "{transport}: {got}");
        // Downstream: every datagram the sender handed to the kernel arrived,
        // spread round-robin over the sessions.
        assert_eq!(r["rx"]["udp_packets"], sent_pkts, "{transport}: {r} {sent}");
        assert_eq!(r["rx"]["udp_bytes"], sent_pkts * 1380, "{transport}: {r}");
        let per = &r["rx"]["per_session"];
        assert_eq!(per["sessions"], N, "{transport}: {r}");
        assert_eq!(per["none"], 0, "{transport}: {r}");
        assert!(
            per["max"].as_u64().unwrap() - per["min"].as_u64().unwrap() <= 1,
            "{transport}: round-robin share {per}"
        );
        assert_eq!(r["rx"]["record_drops"], 0, "{transport}: {r}");
        let want_dtls = if transport == "dtls" { N } else { 0 };
        assert_eq!(r["dtls_up"], want_dtls, "{transport}: {r}");
        assert!(r["loadgen"]["hold_cpu_s"].is_number(), "{r}");
        lab.wait_sessions("empty after the throughput run", |s| s.is_empty());
    }
    lab.assert_headend_running();
}

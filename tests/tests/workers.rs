//! Per-core workers (issue 13 item 3): with `--workers 2` the headend runs two
//! worker threads, each owning its connections and a TUN queue; sessions over
//! DTLS and over CSTP land on both, and every session's echoes come back
//! through the tunnel (both directions, whichever worker's queue the kernel
//! hands the replies to). `--workers 0` keeps the single-runtime layout working.

use e2e::lab::{AUTHGROUP, Lab};
use e2e::loadgen::{Loadgen, add_shared_user};

const PASSWORD: &str = "Wk-Pass-4711";
const SESSIONS: usize = 8;
const ECHOES: usize = 3;

/// `show counters` as (name, value) rows of numbers.
fn counters(lab: &Lab) -> Vec<(String, u64)> {
    lab.show(&["counters"])
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn counter(rows: &[(String, u64)], name: &str) -> u64 {
    rows.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} in show counters: {rows:?}"))
}

/// Threads of the headend whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim().starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Brings `SESSIONS` loadgen sessions up over `transport`, each sending
/// `ECHOES` echoes; returns the `show counters` rows while they are up and
/// loadgen's result after logout.
fn run_sessions(
    lab: &Lab,
    transport: &str,
    first: usize,
) -> (Vec<(String, u64)>, serde_json::Value) {
    let (n, first, count) = (SESSIONS.to_string(), first.to_string(), ECHOES.to_string());
    let pid = lab.headend_pid().to_string();
    let run = Loadgen::start(
        lab,
        &format!("workers-{transport}"),
        &[
            "--transport",
            transport,
            "--sessions",
            &n,
            "--first",
            &first,
            "--user",
            "wk",
            "--password",
            PASSWORD,
            "--group",
            AUTHGROUP,
            "--concurrency",
            "4",
            "--pps",
            "5",
            "--count",
            &count,
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
        run.ready.contains(&format!("up={SESSIONS} failed=0")),
        "{transport}: {}",
        run.ready
    );
    assert_eq!(lab.show_sessions().len(), SESSIONS, "{transport}");
    let rows = counters(lab);
    let r = run.finish();
    assert_eq!(r["up"], SESSIONS, "{transport}: {r}");
    assert_eq!(r["failed"], 0, "{transport}: {r}");
    assert_eq!(r["lost"], 0, "{transport}: {r}");
    let want_dtls = if transport == "dtls" { SESSIONS } else { 0 };
    assert_eq!(r["dtls_up"], want_dtls, "{transport}: {r}");
    // Every echo out through the tunnel came back through it.
    assert_eq!(r["echo"]["sent"], ECHOES * SESSIONS, "{transport}: {r}");
    assert_eq!(r["echo"]["received"], ECHOES * SESSIONS, "{transport}: {r}");
    lab.wait_sessions("empty after loadgen logged out", |s| s.is_empty());
    (rows, r)
}

#[test]
fn two_workers_each_own_sessions_and_pass_traffic_both_ways() {
    let Some(lab) = Lab::new() else { return };
    add_shared_user(&lab, "wk", PASSWORD, 2 * SESSIONS);
    lab.start_headend_with(&["--workers", "2"]);
    let pid = lab.headend_pid();
    assert_eq!(threads_named(pid, "vpn-worker-"), 2);
    let idle = counters(&lab);
    assert_eq!(counter(&idle, "workers"), 2, "{idle:?}");

    for (transport, first) in [("dtls", 0), ("cstp", SESSIONS)] {
        let (rows, _) = run_sessions(&lab, transport, first);
        let on = [
            counter(&rows, "worker-0-sessions"),
            counter(&rows, "worker-1-sessions"),
        ];
        eprintln!(
            "{transport}: sessions per worker {on:?}, TUN reads per queue [{}, {}], cross-worker {}",
            counter(&rows, "worker-0-tun-rx"),
            counter(&rows, "worker-1-tun-rx"),
            counter(&rows, "tun-rx-cross-worker"),
        );
        assert_eq!(on[0] + on[1], SESSIONS as u64, "{transport}: {rows:?}");
        // Fewest-connections placement: both workers own sessions.
        assert!(on[0] > 0 && on[1] > 0, "{transport}: {rows:?}");
        // Their tunnels' connections are counted on their workers.
        assert!(
            counter(&rows, "worker-0-connections") > 0
                && counter(&rows, "worker-1-connections") > 0,
            "{transport}: {rows:?}"
        );
    }
    // Everything has logged out: no session and no connection left on a worker.
    let after = counters(&lab);
    for name in [
        "worker-0-sessions",
        "worker-1-sessions",
        "worker-0-connections",
        "worker-1-connections",
    ] {
        let settled = e2e::wait_until(e2e::lab::HANG_GUARD, || {
            (counter(&counters(&lab), name) == 0).then_some(())
        });
        assert!(settled.is_some(), "{name}: {after:?}");
    }
    lab.assert_headend_running();
}

#[test]
fn without_worker_threads_sessions_run_on_the_shared_runtime() {
    let Some(lab) = Lab::new() else { return };
    add_shared_user(&lab, "wk", PASSWORD, SESSIONS);
    lab.start_headend_with(&["--workers", "0"]);
    assert_eq!(threads_named(lab.headend_pid(), "vpn-worker-"), 0);
    let (rows, _) = run_sessions(&lab, "dtls", 0);
    assert_eq!(counter(&rows, "workers"), 1, "{rows:?}");
    assert_eq!(counter(&rows, "worker-0-sessions"), SESSIONS as u64);
    // One queue: nothing can cross.
    assert_eq!(counter(&rows, "tun-rx-cross-worker"), 0, "{rows:?}");
    lab.assert_headend_running();
}

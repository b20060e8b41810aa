//! The Prometheus endpoint (`headend run --metrics-listen`) scraped by a real
//! Prometheus server (Debian `prometheus`, run as a plain process with its own
//! config and storage in the lab directory), asked through its HTTP API.
//! Deadlines are hang guards, never speed assertions.

use std::time::Duration;

use e2e::lab::{self, OUTSIDE_IP};
use e2e::{Lab, cmd, wait_until};

const METRICS_PORT: u16 = 9273;
/// Prometheus's own API, on the headend namespace's loopback.
const PROMETHEUS_API: &str = "127.0.0.1:19090";
/// Prometheus needs a few seconds to start and scrape: a hang guard only.
const PROMETHEUS_GUARD: Duration = Duration::from_secs(90);

/// `None` = skipped (printed), or a panic with `E2E_REQUIRED=1`.
fn prometheus_available() -> Option<()> {
    if cmd::in_path("prometheus") {
        return Some(());
    }
    let why = "`prometheus` not found (run netns/install-deps.sh)";
    if lab::required() {
        panic!("E2E_REQUIRED=1 but the metrics test cannot run: {why}");
    }
    eprintln!("SKIP metrics: {why}");
    None
}

/// GET `/api/v1/query?query=QUERY` from the headend namespace: the result
/// vector as (labels, value), or None while Prometheus is not answering.
fn query(lab: &Lab, q: &str) -> Option<Vec<(serde_json::Value, f64)>> {
    let url = format!("http://{PROMETHEUS_API}/api/v1/query");
    let out = lab.exec_gw(&[
        "curl",
        "-sf",
        "--max-time",
        "5",
        "-G",
        &url,
        "--data-urlencode",
        &format!("query={q}"),
    ]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    if v["status"] != "success" {
        return None;
    }
    let rows = v["data"]["result"]
        .as_array()?
        .iter()
        .filter_map(|r| {
            let value = r["value"][1].as_str()?.parse::<f64>().ok()?;
            Some((r["metric"].clone(), value))
        })
        .collect();
    Some(rows)
}

/// Sum of `headend_sessions` over its series, once Prometheus has at least one.
fn sessions_total(lab: &Lab) -> Option<f64> {
    let rows = query(lab, "headend_sessions")?;
    (!rows.is_empty()).then(|| rows.iter().map(|(_, v)| v).sum())
}

#[test]
fn prometheus_scrapes_the_session_count_of_a_connected_client() {
    let Some(lab) = Lab::new() else {
        return;
    };
    if prometheus_available().is_none() {
        return;
    }
    let metrics_addr = format!("{OUTSIDE_IP}:{METRICS_PORT}");
    lab.start_headend_with(&["--metrics-listen", &metrics_addr]);

    // The endpoint itself: text exposition with every tunnel group at 0.
    let direct = lab.exec_gw(&[
        "curl",
        "-sf",
        "--max-time",
        "5",
        &format!("http://{metrics_addr}/metrics"),
    ]);
    let body = String::from_utf8_lossy(&direct.stdout).into_owned();
    assert!(
        direct.status.success(),
        "GET /metrics failed: {}",
        cmd::combined(&direct)
    );
    for line in [
        "headend_sessions{tunnel_group=\"LOCAL-PW\",transport=\"tls\"} 0",
        "# TYPE headend_tunnel_bytes_total counter",
        "# TYPE headend_radius_response_seconds histogram",
        "# TYPE process_resident_memory_bytes gauge",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line:?} missing from /metrics:\n{body}"
        );
    }

    // Prometheus in the headend namespace, its config and TSDB in the lab dir.
    let dir = lab.dir().join("prometheus");
    std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: headend\n    static_configs:\n      - targets: ['{metrics_addr}']\n"
        ),
    )
    .expect("prometheus.yml");
    lab.exec_gw(&["ip", "link", "set", "lo", "up"]);
    let _prometheus = lab.spawn_in(
        lab.gw_ns(),
        "prometheus",
        &[
            "prometheus",
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address={PROMETHEUS_API}"),
        ],
    );
    let up = wait_until(PROMETHEUS_GUARD, || {
        query(&lab, "up{job=\"headend\"}")?
            .iter()
            .any(|(_, v)| *v == 1.0)
            .then_some(())
    });
    assert!(
        up.is_some(),
        "Prometheus never scraped the headend (up != 1) within {PROMETHEUS_GUARD:?}; last answer {:?}",
        query(&lab, "up")
    );
    let idle = wait_until(PROMETHEUS_GUARD, || sessions_total(&lab));
    assert_eq!(idle, Some(0.0), "sessions before any client connected");

    let client = lab.connect("alice", lab.password("alice"), &[]);
    let sessions = lab.wait_sessions("alice's session", |s| s.len() == 1);
    let group = sessions[0]
        .get("Tunnel Group")
        .cloned()
        .expect("Tunnel Group in show vpn-sessiondb");
    let seen = wait_until(PROMETHEUS_GUARD, || {
        let rows = query(&lab, "headend_sessions")?;
        let total: f64 = rows.iter().map(|(_, v)| v).sum();
        (total == 1.0).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "Prometheus never reported 1 session; last answer {:?}",
            query(&lab, "headend_sessions")
        )
    });
    let (labels, _) = seen
        .iter()
        .find(|(_, v)| *v == 1.0)
        .expect("the series at 1");
    assert_eq!(labels["tunnel_group"], group.as_str(), "{labels}");
    assert!(
        ["tls", "dtls"].contains(&labels["transport"].as_str().unwrap_or_default()),
        "{labels}"
    );
    let logins = wait_until(PROMETHEUS_GUARD, || {
        let q = format!("headend_logins_total{{tunnel_group=\"{group}\",result=\"success\"}}");
        query(&lab, &q)?.first().map(|(_, v)| *v)
    });
    assert_eq!(logins, Some(1.0), "successful logins of {group}");

    // Gone again after the client leaves.
    drop(client);
    lab.wait_sessions("no session", |s| s.is_empty());
    let after = wait_until(PROMETHEUS_GUARD, || {
        sessions_total(&lab).filter(|t| *t == 0.0)
    });
    assert_eq!(after, Some(0.0), "sessions after the client disconnected");
}

//! Counters shared by the session tasks, the per-second timeline, and the
//! reports: a progress line, one JSON line, a CSV timeline and an SVG chart.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

/// Counters updated by every session (relaxed atomics; latency samples are
/// handed over in per-session batches, not per packet).
#[derive(Debug, Default)]
pub struct Stats {
    pub attempted: AtomicU64,
    pub up: AtomicU64,
    pub dtls_up: AtomicU64,
    pub down: AtomicU64,
    /// Sessions that went down without being told to.
    pub lost: AtomicU64,
    pub tx_pkts: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_pkts: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub echo_sent: AtomicU64,
    pub echo_recv: AtomicU64,
    /// Packets we could not hand to the kernel (UDP send buffer full).
    pub tx_drops: AtomicU64,
    /// Packets the pacers wrote off: the sessions could not keep the offered
    /// rate (loadgen, not the server, was the limit).
    pub tx_lagged: AtomicU64,
    pub other_rx: AtomicU64,
    /// Inner UDP packets (and their bytes) to our port: what `tput send` sent.
    pub rx_udp_pkts: AtomicU64,
    pub rx_udp_bytes: AtomicU64,
    /// DTLS records from the server our record layer dropped (bad tag,
    /// replay, wrong epoch, truncated).
    pub rx_record_drops: AtomicU64,
    /// Reconnects with the cookie after a cut TCP connection (--reconnects).
    pub reconnects: AtomicU64,
    /// Reconnects that came back with another address than before.
    pub address_changed: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    /// Each session's tunnel address once up (`--addresses-out`).
    addresses: Mutex<Vec<std::net::Ipv4Addr>>,
    /// Inner UDP packets to our port each session received, when it ended.
    session_rx: Mutex<Vec<u64>>,
    connect_us: Mutex<Samples>,
    rtt_us: Mutex<Samples>,
}

/// Latency samples: all of them, plus the ones since the last timeline tick.
#[derive(Debug, Default)]
struct Samples {
    all: Vec<u32>,
    interval: Vec<u32>,
}

/// Keeps memory bounded on long runs: beyond this, samples are decimated.
const MAX_SAMPLES: usize = 4_000_000;

impl Stats {
    pub fn fail(&self, reason: &str) {
        // Reasons group by their text up to the first number-like detail.
        let key: String = reason.chars().take(80).collect();
        *self.failures.lock().unwrap().entry(key).or_default() += 1;
    }

    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures.lock().unwrap().clone()
    }

    pub fn failed(&self) -> u64 {
        self.failures.lock().unwrap().values().sum()
    }

    pub fn add_address(&self, a: std::net::Ipv4Addr) {
        self.addresses.lock().unwrap().push(a);
    }

    pub fn addresses(&self) -> Vec<std::net::Ipv4Addr> {
        self.addresses.lock().unwrap().clone()
    }

    pub fn add_session_rx(&self, packets: u64) {
        self.session_rx.lock().unwrap().push(packets);
    }

    /// Packets received per session: (sessions reported, min, max, sessions
    /// that received nothing).
    pub fn session_rx_spread(&self) -> (usize, u64, u64, usize) {
        let v = self.session_rx.lock().unwrap();
        let min = v.iter().copied().min().unwrap_or(0);
        let max = v.iter().copied().max().unwrap_or(0);
        (v.len(), min, max, v.iter().filter(|&&x| x == 0).count())
    }

    pub fn add_connect(&self, us: u32) {
        push(&mut self.connect_us.lock().unwrap(), &[us]);
    }

    pub fn add_rtts(&self, us: &[u32]) {
        if !us.is_empty() {
            push(&mut self.rtt_us.lock().unwrap(), us);
        }
    }

    /// Takes the samples since the last call: (connect, rtt).
    pub fn take_interval(&self) -> (Vec<u32>, Vec<u32>) {
        let c = std::mem::take(&mut self.connect_us.lock().unwrap().interval);
        let r = std::mem::take(&mut self.rtt_us.lock().unwrap().interval);
        (c, r)
    }

    pub fn connect_all(&self) -> Vec<u32> {
        self.connect_us.lock().unwrap().all.clone()
    }

    pub fn rtt_all(&self) -> Vec<u32> {
        self.rtt_us.lock().unwrap().all.clone()
    }

    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}

fn push(s: &mut Samples, v: &[u32]) {
    if s.all.len() < MAX_SAMPLES {
        s.all.extend_from_slice(v);
    }
    if s.interval.len() < MAX_SAMPLES {
        s.interval.extend_from_slice(v);
    }
}

/// Nearest-rank percentiles (`p` in 0..=100) of unsorted samples.
pub fn percentiles(samples: &mut [u32], ps: &[f64]) -> Vec<Option<u32>> {
    samples.sort_unstable();
    ps.iter()
        .map(|p| {
            if samples.is_empty() {
                return None;
            }
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            Some(samples[rank.clamp(1, samples.len()) - 1])
        })
        .collect()
}

/// One timeline row (one per second).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub t_s: f64,
    pub sessions_up: u64,
    pub failed: u64,
    pub connects_per_s: f64,
    pub connect_p99_ms: Option<f64>,
    pub tx_mbit_s: f64,
    pub rx_mbit_s: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub server_threads: Option<u64>,
    pub server_fds: Option<u64>,
}

pub const CSV_HEADER: &str = "t_s,sessions_up,failed,connects_per_s,connect_p99_ms,\
tx_mbit_s,rx_mbit_s,tx_pps,rx_pps,rtt_p50_ms,rtt_p99_ms,server_rss_kib,server_cpu_s,\
server_threads,server_fds";

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl Row {
    pub fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{:.1},{},{:.3},{:.3},{:.0},{:.0},{},{},{},{},{},{}",
            self.t_s,
            self.sessions_up,
            self.failed,
            self.connects_per_s,
            opt(self.connect_p99_ms.map(|v| format!("{v:.2}"))),
            self.tx_mbit_s,
            self.rx_mbit_s,
            self.tx_pps,
            self.rx_pps,
            opt(self.rtt_p50_ms.map(|v| format!("{v:.2}"))),
            opt(self.rtt_p99_ms.map(|v| format!("{v:.2}"))),
            opt(self.server_rss_kib),
            opt(self.server_cpu_s.map(|v| format!("{v:.2}"))),
            opt(self.server_threads),
            opt(self.server_fds),
        )
    }

    /// The progress line printed while running.
    pub fn progress(&self, target: u64) -> String {
        let mut s = format!(
            "[{:6.1}s] up {}/{} failed {} | {:.0} conn/s p99 {} ms | up {:.1} Mbit/s down {:.1} Mbit/s | rtt p99 {} ms",
            self.t_s,
            self.sessions_up,
            target,
            self.failed,
            self.connects_per_s,
            opt(self.connect_p99_ms.map(|v| format!("{v:.1}"))),
            self.tx_mbit_s,
            self.rx_mbit_s,
            opt(self.rtt_p99_ms.map(|v| format!("{v:.1}"))),
        );
        if let Some(rss) = self.server_rss_kib {
            s.push_str(&format!(" | server rss {} MiB", rss / 1024));
        }
        s
    }
}

pub fn write_csv(path: &std::path::Path, rows: &[Row]) -> std::io::Result<()> {
    let mut s = String::with_capacity(64 * (rows.len() + 1));
    s.push_str(CSV_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&r.csv());
        s.push('\n');
    }
    std::fs::write(path, s)
}

/// Three stacked charts over time: sessions, throughput, latency.
pub fn write_svg(path: &std::path::Path, rows: &[Row], title: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|x| e(&x))?;
    let areas = root.split_evenly((3, 1));
    let t_max = rows.last().map(|r| r.t_s).unwrap_or(1.0).max(1.0);
    type Series<'a> = Vec<(&'a str, RGBColor, Vec<(f64, f64)>)>;
    let panels: [(&str, Series<'_>); 3] = [
        (
            "sessions",
            vec![
                (
                    "up",
                    BLUE,
                    rows.iter().map(|r| (r.t_s, r.sessions_up as f64)).collect(),
                ),
                (
                    "failed",
                    RED,
                    rows.iter().map(|r| (r.t_s, r.failed as f64)).collect(),
                ),
            ],
        ),
        (
            "Mbit/s",
            vec![
                (
                    "up",
                    BLUE,
                    rows.iter().map(|r| (r.t_s, r.tx_mbit_s)).collect(),
                ),
                (
                    "down",
                    GREEN,
                    rows.iter().map(|r| (r.t_s, r.rx_mbit_s)).collect(),
                ),
            ],
        ),
        (
            "ms",
            vec![
                (
                    "connect p99",
                    MAGENTA,
                    rows.iter()
                        .filter_map(|r| Some((r.t_s, r.connect_p99_ms?)))
                        .collect(),
                ),
                (
                    "echo rtt p99",
                    BLACK,
                    rows.iter()
                        .filter_map(|r| Some((r.t_s, r.rtt_p99_ms?)))
                        .collect(),
                ),
            ],
        ),
    ];
    for (area, (ylabel, series)) in areas.iter().zip(panels) {
        let y_max = series
            .iter()
            .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(ylabel)
            .draw()
            .map_err(|x| e(&x))?;
        for (name, color, pts) in series {
            chart
                .draw_series(LineSeries::new(pts, color))
                .map_err(|x| e(&x))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// The final summary as one JSON object.
#[allow(clippy::too_many_arguments)]
pub fn summary_json(
    stats: &Stats,
    target: u64,
    transport: &str,
    ramp_s: f64,
    traffic_s: f64,
    run_s: f64,
    server: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut c = stats.connect_all();
    let cp = percentiles(&mut c, &[50.0, 90.0, 99.0, 100.0]);
    let mut r = stats.rtt_all();
    let rp = percentiles(&mut r, &[50.0, 90.0, 99.0, 100.0]);
    let ms = |v: Option<u32>| v.map(|us| f64::from(us) / 1000.0);
    let g = Stats::get;
    // Totals are over the whole run; the hold alone is reported by the caller.
    let secs = run_s.max(1e-3);
    let sent = g(&stats.echo_sent);
    let recv = g(&stats.echo_recv);
    let (rx_n, rx_min, rx_max, rx_zero) = stats.session_rx_spread();
    json!({
        "sessions": target,
        "transport": transport,
        "up": g(&stats.up),
        "dtls_up": g(&stats.dtls_up),
        "failed": stats.failed(),
        "lost": g(&stats.lost),
        "logged_out": g(&stats.down),
        "failures": stats.failures(),
        "reconnects": g(&stats.reconnects),
        "reconnect_address_changed": g(&stats.address_changed),
        "connect_ms": {"p50": ms(cp[0]), "p90": ms(cp[1]), "p99": ms(cp[2]), "max": ms(cp[3])},
        "ramp_s": ramp_s,
        "connects_per_s": if ramp_s > 0.0 { g(&stats.up) as f64 / ramp_s } else { 0.0 },
        "traffic_s": traffic_s,
        "run_s": run_s,
        "tx": {"packets": g(&stats.tx_pkts), "bytes": g(&stats.tx_bytes),
               "gbit_s": g(&stats.tx_bytes) as f64 * 8.0 / secs / 1e9,
               "pps": g(&stats.tx_pkts) as f64 / secs, "local_drops": g(&stats.tx_drops),
               "pacer_lagged": g(&stats.tx_lagged)},
        "rx": {"packets": g(&stats.rx_pkts), "bytes": g(&stats.rx_bytes),
               "gbit_s": g(&stats.rx_bytes) as f64 * 8.0 / secs / 1e9,
               "pps": g(&stats.rx_pkts) as f64 / secs, "unmatched": g(&stats.other_rx),
               "record_drops": g(&stats.rx_record_drops),
               "udp_packets": g(&stats.rx_udp_pkts), "udp_bytes": g(&stats.rx_udp_bytes),
               "per_session": {"sessions": rx_n, "min": rx_min, "max": rx_max, "none": rx_zero}},
        "echo": {"sent": sent, "received": recv, "lost": sent.saturating_sub(recv),
                 "loss_pct": if sent > 0 { 100.0 * sent.saturating_sub(recv) as f64 / sent as f64 } else { 0.0 },
                 "rtt_ms": {"p50": ms(rp[0]), "p90": ms(rp[1]), "p99": ms(rp[2]), "max": ms(rp[3])}},
        "server": server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(
            percentiles(&mut v, &[50.0, 99.0, 100.0, 0.0]),
            vec![Some(50), Some(99), Some(100), Some(1)]
        );
        assert_eq!(percentiles(&mut [], &[50.0]), vec![None]);
        assert_eq!(percentiles(&mut [7], &[1.0, 99.0]), vec![Some(7), Some(7)]);
    }

    #[test]
    fn failures_are_counted_by_reason() {
        let s = Stats::default();
        s.fail("auth: Login failed.");
        s.fail("auth: Login failed.");
        s.fail("connect: refused");
        assert_eq!(s.failed(), 3);
        assert_eq!(s.failures()["auth: Login failed."], 2);
    }

    #[test]
    fn csv_and_svg_are_written() {
        let rows: Vec<Row> = (0..5u32)
            .map(|i| Row {
                t_s: f64::from(i),
                sessions_up: u64::from(i) * 10,
                rtt_p99_ms: Some(1.5),
                server_rss_kib: Some(1000),
                ..Row::default()
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_csv(&dir.join("t.csv"), &rows).unwrap();
        let csv = std::fs::read_to_string(dir.join("t.csv")).unwrap();
        assert_eq!(csv.lines().count(), 6);
        assert!(csv.lines().nth(5).unwrap().starts_with("4.0,40,0,"));
        assert_eq!(
            csv.lines().nth(1).unwrap().split(',').count(),
            CSV_HEADER.split(',').count()
        );
        write_svg(&dir.join("t.svg"), &rows, "test").unwrap();
        let svg = std::fs::read_to_string(dir.join("t.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("sessions"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Prometheus metrics on `--metrics-listen ADDR:PORT`, path `/metrics`, text
//! exposition format 0.0.4.
//!
//! Dataplane numbers are read at scrape time from the atomics the packet path
//! already bumps (`dataplane::DataplaneCounters`, DTLS counters, session stats,
//! ACL hit counters behind `arc-swap`): a scrape never takes a lock the
//! dataplane takes. Control-plane events (logins, RADIUS round trips) are
//! counted here, by one call at the place they happen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proto::http::{RequestParser, Response};
use crate::sessions::{SessionStats, SessionTable};

type Labels = Vec<(&'static str, String)>;

/// Counters of control-plane events, bumped where they happen.
pub struct ControlMetrics {
    logins: Family<Labels, Counter>,
    radius_requests: Family<Labels, Counter>,
    radius_response: Histogram,
}

/// The one set of control-plane counters of this process.
pub static CONTROL: LazyLock<ControlMetrics> = LazyLock::new(|| ControlMetrics {
    logins: Family::default(),
    radius_requests: Family::default(),
    // 5 ms .. ~10 s: a LAN RADIUS server answers in ms, ASA's default
    // timeout is 10 s per try.
    radius_response: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
});

/// Traffic of sessions that have ended, so that the tunnel totals never go
/// down when a session leaves the table.
pub static ENDED_SESSIONS: TrafficTotals = TrafficTotals::new();

/// A login attempt's outcome: `success`, `failure` (wrong credentials,
/// refused by AAA) or `refused` (policy: no tunnel group, logins disabled...).
pub fn record_login(tunnel_group: &str, result: &'static str) {
    CONTROL
        .logins
        .get_or_create(&vec![
            ("tunnel_group", tunnel_group.to_string()),
            ("result", result.to_string()),
        ])
        .inc();
}

/// One finished RADIUS request: the server that answered (or the group when
/// none did) and the answer's code (`timeout` when none came).
pub fn record_radius(server: &str, code: &str, elapsed: Option<Duration>) {
    CONTROL
        .radius_requests
        .get_or_create(&vec![
            ("server", server.to_string()),
            ("code", code.to_string()),
        ])
        .inc();
    if let Some(d) = elapsed {
        CONTROL.radius_response.observe(d.as_secs_f64());
    }
}

#[derive(Debug, Default)]
pub struct TrafficTotals {
    pub bytes_tx: AtomicU64,
    pub bytes_rx: AtomicU64,
    pub packets_tx: AtomicU64,
    pub packets_rx: AtomicU64,
}

impl TrafficTotals {
    pub const fn new() -> Self {
        Self {
            bytes_tx: AtomicU64::new(0),
            bytes_rx: AtomicU64::new(0),
            packets_tx: AtomicU64::new(0),
            packets_rx: AtomicU64::new(0),
        }
    }

    pub fn add(&self, s: &SessionStats) {
        let r = Ordering::Relaxed;
        self.bytes_tx.fetch_add(s.bytes_tx.load(r), r);
        self.bytes_rx.fetch_add(s.bytes_rx.load(r), r);
        self.packets_tx.fetch_add(s.packets_tx.load(r), r);
        self.packets_rx.fetch_add(s.packets_rx.load(r), r);
    }

    fn get(&self) -> [u64; 4] {
        let r = Ordering::Relaxed;
        [
            self.bytes_tx.load(r),
            self.bytes_rx.load(r),
            self.packets_tx.load(r),
            self.packets_rx.load(r),
        ]
    }
}

/// The session table's part of a scrape ([`SessionTable::metrics_snapshot`]).
#[derive(Debug, Default)]
pub struct SessionSnapshot {
    /// Connected sessions per (tunnel group, `dtls` | `tls`).
    pub connected: BTreeMap<(String, &'static str), u64>,
    /// Traffic of the sessions in the table now.
    pub live: TrafficTotals,
    /// Free addresses per `ip local pool` / `ipv6 local pool`.
    pub pool_free: Vec<(String, u64)>,
}

/// Everything a scrape reads besides [`CONTROL`].
pub struct Sources {
    pub sessions: Arc<SessionTable>,
    pub counters: Arc<dataplane::DataplaneCounters>,
    pub dtls: Option<Arc<crate::dtls::DtlsHub>>,
    pub policy: Arc<crate::policy_state::PolicyState>,
    pub sxp: Option<Arc<crate::sxp_io::SxpState>>,
    /// Configured tunnel groups: their series exist (at 0) before any login.
    /// Read at each scrape: the live config's, so a reload adds and removes them.
    pub tunnel_groups: TunnelGroups,
}

/// The configured tunnel groups' names, as of now.
pub type TunnelGroups = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Sources")
    }
}

fn gauge<N>(enc: &mut DescriptorEncoder, name: &str, help: &str, v: N) -> std::fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let m = ConstGauge::new(v);
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

/// One family of series: `rows` are (labels, value).
fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        let e = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(e)?,
            _ => ConstGauge::new(v).encode(e)?,
        }
    }
    Ok(())
}

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let snap = self.sessions.metrics_snapshot();
        let mut connected = snap.connected.clone();
        for tg in (self.tunnel_groups)() {
            for t in ["tls", "dtls"] {
                connected.entry((tg.clone(), t)).or_default();
            }
        }
        family(
            &mut enc,
            "headend_sessions",
            "Connected VPN sessions (transport: the downlink's current channel)",
            MetricType::Gauge,
            connected
                .iter()
                .map(|((tg, t), n)| (vec![("tunnel_group", tg.as_str()), ("transport", *t)], *n)),
        )?;

        // Headend's view, as `show vpn-sessiondb`: tx = to clients.
        let ended = ENDED_SESSIONS.get();
        let live = snap.live.get();
        let total = |i: usize| ended[i].wrapping_add(live[i]);
        family(
            &mut enc,
            "headend_tunnel_bytes",
            "Bytes of tunnelled IP packets (tx: to clients, rx: from clients)",
            MetricType::Counter,
            [
                (vec![("direction", "tx")], total(0)),
                (vec![("direction", "rx")], total(1)),
            ],
        )?;
        family(
            &mut enc,
            "headend_tunnel_packets",
            "Tunnelled IP packets (tx: to clients, rx: from clients)",
            MetricType::Counter,
            [
                (vec![("direction", "tx")], total(2)),
                (vec![("direction", "rx")], total(3)),
            ],
        )?;

        let c = &self.counters;
        let get = dataplane::DataplaneCounters::get;
        let mut drops = vec![
            ("no_session", get(&c.no_session_drops)),
            ("queue_full", get(&c.queue_full_drops)),
            ("malformed", get(&c.malformed_drops)),
            ("spoofed_source", get(&c.spoofed_source_drops)),
            ("ipv6_link_local", get(&c.link_local_drops)),
            ("tun_rx_error", get(&c.tun_rx_errors)),
            ("tun_tx_error", get(&c.tun_tx_errors)),
        ];
        if let Some(hub) = &self.dtls {
            let d = &hub.counters;
            drops.push((
                "dtls_unknown_peer",
                d.unknown_peer_drops.load(Ordering::Relaxed),
            ));
            drops.push((
                "dtls_queue_full",
                d.queue_full_drops.load(Ordering::Relaxed),
            ));
            drops.push(("dtls_tx_error", d.tx_errors.load(Ordering::Relaxed)));
        }
        family(
            &mut enc,
            "headend_dataplane_drops",
            "Packets the dataplane dropped, by reason (ACL denies: headend_acl_hits)",
            MetricType::Counter,
            drops.iter().map(|(r, v)| (vec![("reason", *r)], *v)),
        )?;

        family(
            &mut enc,
            "headend_tun_rx_cross_worker_packets",
            "Packets read on one worker's TUN queue for a session of another worker",
            MetricType::Counter,
            [(vec![], get(&c.tun_rx_cross_worker))],
        )?;

        let hits = self.policy.acl_hits();
        family(
            &mut enc,
            "headend_acl_hits",
            "Hit count of each access-list line, as show access-list (hitcnt)",
            MetricType::Counter,
            hits.iter()
                .map(|(acl, line, v)| (vec![("acl", acl.as_str()), ("line", line.as_str())], *v)),
        )?;

        if let Some(hub) = &self.dtls {
            let d = &hub.counters;
            gauge(
                &mut enc,
                "headend_dtls_connected_sockets",
                "Sessions reading DTLS on their own connected UDP socket",
                d.direct_sockets.load(Ordering::Relaxed),
            )?;
            family(
                &mut enc,
                "headend_dtls_connected_socket_fallbacks",
                "DTLS associations left on the shared socket (fd budget spent)",
                MetricType::Counter,
                [(vec![], d.direct_fallbacks.load(Ordering::Relaxed))],
            )?;
        }
        gauge(
            &mut enc,
            "headend_sxp_bindings",
            "IP-to-SGT bindings learned over SXP",
            self.sxp.as_ref().map_or(0, |s| s.binding_count() as u64),
        )?;
        family(
            &mut enc,
            "headend_address_pool_free",
            "Free addresses per ip local pool / ipv6 local pool",
            MetricType::Gauge,
            snap.pool_free
                .iter()
                .map(|(p, v)| (vec![("pool", p.as_str())], *v)),
        )?;
        encode_process(&mut enc)
    }
}

/// The standard `process_*` metrics, from /proc/self.
fn encode_process(enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let Some(p) = ProcessStats::read() else {
        return Ok(());
    };
    let m = ConstCounter::new(p.cpu_seconds);
    m.encode(enc.encode_descriptor(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        None,
        m.metric_type(),
    )?)?;
    gauge(
        enc,
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        p.rss_bytes,
    )?;
    gauge(
        enc,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes",
        p.vsize_bytes,
    )?;
    gauge(
        enc,
        "process_open_fds",
        "Number of open file descriptors",
        p.open_fds,
    )?;
    gauge(
        enc,
        "process_max_fds",
        "Maximum number of open file descriptors",
        p.max_fds,
    )?;
    gauge(enc, "process_threads", "Number of OS threads", p.threads)?;
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds",
        p.start_time_seconds,
    )?;
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<f64>()
            .ok()?;
        let mut p = parse_stat(&stat, ticks, page, boot)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        p.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| parse_max_fds(&l))
            .unwrap_or(0);
        Some(p)
    }
}

/// Fields of /proc/self/stat (proc(5)): the command may contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: f64) -> Option<ProcessStats> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        threads: num(20)?,
        start_time_seconds: boot_time + num(22)? as f64 / ticks,
        vsize_bytes: num(23)?,
        rss_bytes: num(24)? * page,
        ..ProcessStats::default()
    })
}

fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The registry a scrape encodes: control-plane families plus `sources`.
pub fn registry(sources: Sources) -> Registry {
    let mut r = Registry::default();
    r.register(
        "headend_logins",
        "Login attempts by tunnel group and result (success, failure, refused)",
        CONTROL.logins.clone(),
    );
    r.register(
        "headend_radius_requests",
        "RADIUS requests by the server that answered and the answer's code",
        CONTROL.radius_requests.clone(),
    );
    r.register(
        "headend_radius_response_seconds",
        "Time from sending a RADIUS request to its authenticated answer",
        CONTROL.radius_response.clone(),
    );
    r.register_collector(Box::new(sources));
    r
}

/// The body of `GET /metrics`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::warn!("metrics encoding failed: {e}");
    }
    out
}

/// What the metrics endpoint answers to one request.
pub fn respond(method: &str, path: &str, registry: &Registry) -> Response {
    let path = path.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = if method == "HEAD" {
                String::new()
            } else {
                render(registry)
            };
            Response::new(200, "OK")
                .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                .body(body)
        }
        ("GET" | "HEAD", _) => Response::new(404, "Not Found")
            .header("Content-Type", "text/plain")
            .body("metrics are at /metrics\n"),
        _ => Response::new(405, "Method Not Allowed").header("Allow", "GET, HEAD"),
    }
}

/// Binds `addr` (before privileges are dropped, so a port below 1024 works).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics listener on {addr}"))
}

/// Serves `/metrics` over plain HTTP/1.1, one request per connection.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) -> Result<()> {
    tracing::info!(
        "metrics on http://{}/metrics",
        listener.local_addr().context("metrics listener address")?
    );
    // Bounded: a burst of scrapers cannot make the headend spawn without limit.
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = scrape(stream, &registry).await {
                tracing::debug!(%peer, "metrics connection: {e:#}");
            }
            drop(permit);
        });
    }
}

async fn scrape(mut stream: TcpStream, registry: &Registry) -> Result<()> {
    let mut parser = RequestParser::new();
    let mut buf = vec![0u8; 4096];
    let req = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(r) = parser.next_request()? {
                return Ok::<_, anyhow::Error>(r);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                anyhow::bail!("closed before a full request");
            }
            parser.feed(buf.get(..n).unwrap_or_default())?;
        }
    })
    .await
    .context("request timed out")??;
    let resp = respond(&req.method, &req.path, registry).header("Connection", "close");
    stream.write_all(&resp.to_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command() {
        // Field 2 with spaces and a ')' inside, as a thread name can have.
        let mut fields = vec!["S".to_string()];
        for n in 4..=52 {
            fields.push(n.to_string());
        }
        let stat = format!("42 (a b) c) {}", fields.join(" "));
        let p = parse_stat(&stat, 100.0, 4096, 1000.0).unwrap();
        assert_eq!(p.cpu_seconds, (14.0 + 15.0) / 100.0);
        assert_eq!(p.threads, 20);
        assert_eq!(p.start_time_seconds, 1000.0 + 22.0 / 100.0);
        assert_eq!(p.vsize_bytes, 23);
        assert_eq!(p.rss_bytes, 24 * 4096);
        assert_eq!(parse_stat("garbage", 100.0, 4096, 0.0), None);
    }

    #[test]
    fn max_open_files_from_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            65536                524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(65536));
        assert_eq!(parse_max_fds("nothing"), None);
    }

    fn sources() -> Sources {
        let cfg = crate::config::parse_str(
            "ip local pool P 198.18.100.10-198.18.100.19 mask 255.255.255.0\n\
             access-list A extended permit ip any any\n\
             tunnel-group LOCAL-PW type remote-access\n",
            "m.cfg",
        )
        .unwrap();
        let sessions = Arc::new(SessionTable::new(&cfg));
        let policy = Arc::new(crate::policy_state::PolicyState::new(&cfg).unwrap());
        let counters = Arc::new(dataplane::DataplaneCounters::default());
        counters.queue_full_drops.fetch_add(7, Ordering::Relaxed);
        Sources {
            sessions,
            counters,
            dtls: None,
            policy,
            sxp: None,
            tunnel_groups: Arc::new(move || cfg.tunnel_groups.keys().cloned().collect()),
        }
    }

    #[test]
    fn tunnel_group_series_follow_the_live_config() {
        let names = Arc::new(std::sync::Mutex::new(vec!["OLD-TG".to_string()]));
        let mut src = sources();
        src.tunnel_groups = {
            let names = names.clone();
            Arc::new(move || names.lock().unwrap().clone())
        };
        let reg = registry(src);
        let series =
            |tg: &str| format!("headend_sessions{{tunnel_group=\"{tg}\",transport=\"tls\"}} 0");
        let text = render(&reg);
        assert!(text.lines().any(|l| l == series("OLD-TG")), "{text}");
        // A reload replaces OLD-TG with NEW-TG.
        *names.lock().unwrap() = vec!["NEW-TG".to_string()];
        let text = render(&reg);
        assert!(text.lines().any(|l| l == series("NEW-TG")), "{text}");
        assert!(!text.lines().any(|l| l == series("OLD-TG")), "{text}");
    }

    #[test]
    fn exposition_has_every_family_with_live_values() {
        let reg = registry(sources());
        record_login("LOCAL-PW", "success");
        record_radius(
            "198.18.1.20:1812",
            "AccessAccept",
            Some(Duration::from_millis(3)),
        );
        let text = render(&reg);
        for line in [
            "headend_sessions{tunnel_group=\"LOCAL-PW\",transport=\"tls\"} 0",
            "headend_sessions{tunnel_group=\"LOCAL-PW\",transport=\"dtls\"} 0",
            "headend_dataplane_drops_total{reason=\"queue_full\"} 7",
            "headend_address_pool_free{pool=\"P\"} 10",
            "headend_acl_hits_total{acl=\"A\",line=\"1\"} 0",
            "headend_acl_hits_total{acl=\"A\",line=\"implicit-deny\"} 0",
            "headend_sxp_bindings 0",
            "# TYPE headend_tunnel_bytes_total counter",
            "# TYPE headend_tunnel_packets_total counter",
            "# TYPE headend_radius_response_seconds histogram",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Other tests in this process count logins too: at least ours is there.
        assert!(
            text.lines().any(|l| l
                .starts_with("headend_logins_total{tunnel_group=\"LOCAL-PW\",result=\"success\"}")),
            "{text}"
        );
        assert!(
            text.contains(
                "headend_radius_requests_total{server=\"198.18.1.20:1812\",code=\"AccessAccept\"}"
            ),
            "{text}"
        );
    }

    #[test]
    fn only_get_metrics_is_served() {
        let reg = registry(sources());
        assert_eq!(respond("GET", "/metrics", &reg).status(), 200);
        assert_eq!(respond("GET", "/metrics?x=1", &reg).status(), 200);
        assert_eq!(respond("GET", "/", &reg).status(), 404);
        assert_eq!(respond("POST", "/metrics", &reg).status(), 405);
    }
}

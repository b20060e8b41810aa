//! The admin channel: a local unix socket taking one ASA-style command per
//! connection (`show vpn-sessiondb`, `vpn-sessiondb logoff ...`) and answering
//! with text, as the ASA CLI would print it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::sessions::{EndReason, LogoffSelector, SessionTable, SessionView};
use crate::show;

pub const DEFAULT_SOCKET: &str = "/run/headend/admin.sock";

/// What the admin commands can reach.
pub struct AdminContext {
    pub sessions: Arc<SessionTable>,
    pub counters: Arc<dataplane::DataplaneCounters>,
    pub dtls: Option<Arc<crate::dtls::DtlsHub>>,
    /// The file `headend run --config` loaded, re-read by `reload`.
    pub config_path: PathBuf,
    pub policy: Arc<crate::policy_state::PolicyState>,
    pub sxp: Option<Arc<crate::sxp_io::SxpState>>,
    /// `show shun`, `clear threat-detection service`, `show aaa local user`, ...
    pub threats: Arc<crate::threat::Threats>,
    /// Other nodes' sessions in `show vpn-sessiondb` and logoff (issue 19).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The current config, RADIUS groups, ... (replaced by `reload`).
    pub live: crate::server::LiveHeadend,
    /// `reload` / SIGHUP: re-reads the whole config (`reload.rs`).
    pub reload: Arc<crate::reload::Reloader>,
    /// Per-core workers (`show counters`: sessions and connections per worker).
    pub workers: Arc<crate::workers::Workers>,
    /// Which worker owns which session.
    pub routes: Arc<dataplane::SessionRoutes>,
}

impl AdminContext {
    /// The configuration in force (the last one `reload` accepted).
    pub fn config(&self) -> Arc<crate::config::Config> {
        self.live.load().config.clone()
    }
}

pub async fn serve(path: PathBuf, ctx: Arc<AdminContext>) -> Result<()> {
    serve_on(bind(&path)?, path, ctx).await
}

/// Binds the admin socket (before `--user` drops root: /run is root's).
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A stale socket from a crashed run would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding admin socket {}", path.display()))?;
    // Only root (the owner) may drive the headend.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the admin socket bound by [`bind`].
pub async fn serve_on(
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    ctx: Arc<AdminContext>,
) -> Result<()> {
    let listener = UnixListener::from_std(listener)?;
    tracing::info!("admin socket on {}", path.display());
    show::mark_started();
    loop {
        let (stream, _) = listener.accept().await?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &ctx).await {
                tracing::debug!("admin connection: {e:#}");
            }
        });
    }
}

async fn handle(stream: UnixStream, ctx: &AdminContext) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r.take(4096));
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line)).await??;
    let line = line.trim();
    // `json CMD` is what `headend ... --json` sends.
    let reply = match line.strip_prefix("json ") {
        Some(cmd) => execute_json(cmd.trim(), ctx),
        None => execute(line, ctx),
    };
    let reply = match &ctx.cluster {
        Some(c) if !line.starts_with("json ") => {
            crate::cluster::show::extend_admin_reply(c, &ctx.sessions, line, reply).await
        }
        _ => reply,
    };
    w.write_all(reply.as_bytes()).await?;
    w.shutdown().await?;
    Ok(())
}

/// Runs one command line and returns what the CLI prints.
pub fn execute(line: &str, ctx: &AdminContext) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    if let Some(reply) = ctx.threats.admin(&words) {
        return reply;
    }
    match words.as_slice() {
        ["show", "vpn-sessiondb"] => show::sessiondb(&summary_of(ctx)),
        ["show", "vpn-sessiondb", "summary"] => show::summary(&summary_of(ctx)),
        ["show", "vpn-sessiondb", "anyconnect"] => {
            show::anyconnect(&ctx.sessions.list(Instant::now()))
        }
        ["show", "vpn-sessiondb", "detail", "anyconnect"] => {
            show::detail_anyconnect(&ctx.sessions.list(Instant::now()))
        }
        ["show", "version"] => show::version(&hostname(ctx)),
        ["show", "logging"] => crate::syslog::show_logging(),
        // ASA prints nothing when the counters are cleared.
        ["clear", "access-list", name, "counters"] => {
            if ctx.policy.clear_counters(name) {
                String::new()
            } else {
                format!("ERROR: access-list <{name}> does not exist\n")
            }
        }
        ["vpn-sessiondb", "logoff", "index", n, rest @ ..] if confirm_words(rest) => {
            match n.parse::<u64>() {
                Ok(i) => logoff_reply(
                    &format!("index \"{i}\""),
                    ctx.sessions
                        .logoff(LogoffSelector::Index(i), EndReason::AdminLogoff),
                ),
                Err(_) => format!("ERROR: % Invalid index \"{n}\"\n"),
            }
        }
        ["vpn-sessiondb", "logoff", "name", user, rest @ ..] if confirm_words(rest) => {
            logoff_reply(
                &format!("name \"{user}\""),
                ctx.sessions
                    .logoff(LogoffSelector::Name(user), EndReason::AdminLogoff),
            )
        }
        ["vpn-sessiondb", "logoff", "all", rest @ ..] if confirm_words(rest) => logoff_reply(
            "all",
            ctx.sessions
                .logoff(LogoffSelector::All, EndReason::AdminLogoff),
        ),
        ["show", "ip", "local", "pool", name] => match ctx.sessions.pool_usage(name) {
            // ASA: Begin/End/Mask/Free/Held/In use; we hold no addresses apart.
            Some((first, last, mask, size, used)) => format!(
                "Begin           End             Mask            Free     Held     In use\n\
                 {:<15} {:<15} {:<15} {:>5} {:>8} {:>8}\n",
                first.to_string(),
                last.to_string(),
                mask.to_string(),
                size.saturating_sub(used as u64),
                0,
                used
            ),
            None => format!("ERROR: Pool {name} not found\n"),
        },
        ["show", "aaa-server"] | ["show", "aaa-server", "protocol", "radius"] => ctx
            .live
            .load()
            .radius
            .values()
            .map(|g| g.show(Instant::now(), SystemTime::now()))
            .collect(),
        ["show", "aaa-server", name] => match ctx.live.load().radius.get(*name) {
            Some(g) => g.show(Instant::now(), SystemTime::now()),
            None => format!("ERROR: aaa-server group {name} does not exist\n"),
        },
        ["show", "access-list"] => ctx.policy.show_access_list(None),
        ["show", "access-list", name] => ctx.policy.show_access_list(Some(name)),
        // Not an ASA form: adds the implicit deny's counter, which ASA hides.
        ["show", "access-list", name, "detail"] => ctx.policy.show_access_list_detail(name),
        ["show", "cts", "role-based", "sgt-map", rest @ ..]
            if rest.is_empty() || rest == ["all"] =>
        {
            ctx.policy.show_sgt_map()
        }
        ["show", "cts", "sxp", "connections", ..] => match &ctx.sxp {
            Some(sxp) => sxp.show_connections(),
            None => "SXP                  : Disabled\n".to_string(),
        },
        ["reload"] | ["reload", "policy"] => ctx.reload.reload(),
        ["show", "counters"] => {
            let mut out = render_counters(&ctx.counters);
            out.push_str(&ctx.threats.render_counters());
            if let Some(hub) = &ctx.dtls {
                out.push_str(&render_dtls_counters(&hub.counters));
                // Live registrations: back to 0 when every session is gone.
                let _ = writeln!(out, "{:<22}: {}", "dtls-app-ids", hub.app_id_count());
                let _ = writeln!(out, "{:<22}: {}", "dtls-peers", hub.peer_count());
            }
            // Live async tasks: back to the idle count when every session
            // and login is gone (the churn checks of issue 17 compare it).
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let tasks = rt.metrics().num_alive_tasks() + ctx.workers.alive_tasks();
                let _ = writeln!(out, "{:<22}: {}", "tasks", tasks);
            }
            out.push_str(&crate::workers::render_counters(&ctx.workers, &ctx.routes));
            out
        }
        _ => format!("ERROR: % Invalid input detected: {line}\n"),
    }
}

fn hostname(ctx: &AdminContext) -> String {
    ctx.config()
        .hostname
        .clone()
        .unwrap_or_else(|| "headend".into())
}

/// The session counts of `show vpn-sessiondb [summary]`; capacity is the
/// number of IPv4 pool addresses, one per session.
fn summary_of(ctx: &AdminContext) -> show::SessionSummary {
    let capacity = ctx
        .config()
        .ip_local_pools
        .values()
        .map(|p| crate::pool::AddressPool::new(p).size() as usize)
        .sum();
    show::SessionSummary::of(
        &ctx.sessions.list(Instant::now()),
        ctx.sessions.totals(),
        capacity,
    )
}

/// `--json` answers for scripts: the same facts as the text, as data. Commands
/// without a structured form come back as `{"command", "output"}`.
pub fn execute_json(line: &str, ctx: &AdminContext) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let value = match words.as_slice() {
        ["show", "vpn-sessiondb", "anyconnect"]
        | ["show", "vpn-sessiondb", "detail", "anyconnect"] => {
            let list: Vec<serde_json::Value> = ctx
                .sessions
                .list(Instant::now())
                .iter()
                .map(session_json)
                .collect();
            serde_json::json!({ "sessions": list })
        }
        ["show", "vpn-sessiondb"] | ["show", "vpn-sessiondb", "summary"] => {
            serde_json::to_value(summary_of(ctx)).unwrap_or_default()
        }
        ["show", "counters"] => {
            let mut m = serde_json::Map::new();
            for line in execute(line, ctx).lines() {
                if let Some((k, v)) = line.split_once(':') {
                    let v = v.trim().parse::<u64>().map_or_else(
                        |_| serde_json::Value::from(v.trim()),
                        serde_json::Value::from,
                    );
                    m.insert(k.trim().to_string(), v);
                }
            }
            serde_json::Value::Object(m)
        }
        _ => {
            let out = execute(line, ctx);
            let error = out.starts_with("ERROR");
            serde_json::json!({ "command": line, "output": out, "error": error })
        }
    };
    let mut text = value.to_string();
    text.push('\n');
    text
}

fn session_json(s: &SessionView) -> serde_json::Value {
    serde_json::json!({
        "index": s.index,
        "username": s.username,
        "tunnel_group": s.tunnel_group,
        "group_policy": s.group_policy,
        "public_ip": s.public_ip.to_string(),
        "assigned_ip": s.assigned_v4.map(|a| a.to_string()),
        "assigned_ipv6": s.assigned_v6.map(|a| a.to_string()),
        "protocol": s.protocol,
        "bytes_tx": s.bytes_tx,
        "bytes_rx": s.bytes_rx,
        "login_time": s.login_time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "duration_secs": s.duration.as_secs(),
        "status": s.state,
        "security_group": s.sgt,
        "filter_name": s.filter,
        "audit_session_id": s.audit_session_id,
        "pkts_tx_drop": s.pkts_tx_drop,
        "pkts_rx_drop": s.pkts_rx_drop,
    })
}

fn confirm_words(rest: &[&str]) -> bool {
    rest.is_empty() || rest == ["noconfirm"]
}

fn logoff_reply(what: &str, n: usize) -> String {
    if n == 0 {
        format!("ERROR: No sessions with {what}\n")
    } else {
        format!("INFO: Number of sessions with {what} logged off : {n}\n")
    }
}

fn render_counters(c: &dataplane::DataplaneCounters) -> String {
    let rows = [
        ("tun-rx-packets", &c.tun_rx_packets),
        ("tun-tx-packets", &c.tun_tx_packets),
        ("drop-no-session", &c.no_session_drops),
        ("drop-queue-full", &c.queue_full_drops),
        ("drop-malformed", &c.malformed_drops),
        ("drop-spoofed-source", &c.spoofed_source_drops),
        ("drop-ipv6-link-local", &c.link_local_drops),
        ("tun-rx-errors", &c.tun_rx_errors),
        ("tun-tx-errors", &c.tun_tx_errors),
        // Read on one worker's TUN queue for another worker's session.
        ("tun-rx-cross-worker", &c.tun_rx_cross_worker),
    ];
    let mut out = String::new();
    for (name, v) in rows {
        let _ = writeln!(out, "{name:<22}: {}", v.load(Ordering::Relaxed));
    }
    out
}

fn render_dtls_counters(c: &crate::dtls::DtlsCounters) -> String {
    let rows = [
        ("dtls-rx-datagrams", &c.rx_datagrams),
        ("dtls-tx-datagrams", &c.tx_datagrams),
        ("dtls-drop-unknown-peer", &c.unknown_peer_drops),
        ("dtls-drop-queue-full", &c.queue_full_drops),
        ("dtls-drop-record", &c.record_drops),
        ("dtls-tx-errors", &c.tx_errors),
        // Sessions' own connected sockets (dtls_direct.rs).
        ("dtls-direct-sockets", &c.direct_sockets),
        ("dtls-direct-fallbacks", &c.direct_fallbacks),
        ("dtls-rx-direct", &c.direct_rx_datagrams),
        ("dtls-rx-stray", &c.stray_datagrams),
    ];
    let mut out = String::new();
    for (name, v) in rows {
        let _ = writeln!(out, "{name:<22}: {}", v.load(Ordering::Relaxed));
    }
    out
}

/// `0h:05m:12s`, as ASA prints durations.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h:{:02}m:{:02}s", s / 3600, (s / 60) % 60, s % 60)
}

/// `08:30:00 UTC Mon Nov 23 2026`, as ASA prints login times.
pub fn format_login_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days.rem_euclid(7)) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    let tod = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC {weekday} {month} {d} {y}",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The client side: sends one command and returns the reply text.
pub async fn request(path: &Path, command: &str) -> Result<String> {
    let mut s = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach the headend's admin socket {} (is `headend run` running? pass --admin-socket if it uses another path)",
            path.display()
        )
    })?;
    s.write_all(command.as_bytes()).await?;
    s.write_all(b"\n").await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .context("admin socket did not answer in 10 s")??;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_time_and_duration_formats() {
        // 2026-11-23 08:30:00 UTC was a Monday.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_422_600);
        assert_eq!(format_login_time(t), "08:30:00 UTC Mon Nov 23 2026");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h:02m:03s");
        assert_eq!(format_duration(Duration::from_secs(5)), "0h:00m:05s");
    }
}

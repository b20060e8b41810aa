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

pub const DEFAULT_SOCKET: &str = "/run/headend/admin.sock";

/// What the admin commands can reach.
pub struct AdminContext {
    pub sessions: Arc<SessionTable>,
    pub counters: Arc<dataplane::DataplaneCounters>,
    pub dtls: Option<Arc<crate::dtls::DtlsHub>>,
    pub config: Arc<crate::config::Config>,
    /// The file `headend run --config` loaded, re-read by `reload`.
    pub config_path: PathBuf,
    pub policy: Arc<crate::policy_state::PolicyState>,
    pub sxp: Option<Arc<crate::sxp_io::SxpState>>,
}

pub async fn serve(path: PathBuf, ctx: Arc<AdminContext>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A stale socket from a crashed run would make bind fail.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("binding admin socket {}", path.display()))?;
    // Only root (the owner) may drive the headend.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!("admin socket on {}", path.display());
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
    let reply = execute(line.trim(), ctx);
    w.write_all(reply.as_bytes()).await?;
    w.shutdown().await?;
    Ok(())
}

/// Runs one command line and returns what the CLI prints.
pub fn execute(line: &str, ctx: &AdminContext) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["show", "vpn-sessiondb", rest @ ..]
            if rest.is_empty() || rest == ["anyconnect"] || rest == ["detail", "anyconnect"] =>
        {
            render_sessions(&ctx.sessions.list(Instant::now()))
        }
        ["show", "vpn-sessiondb", "summary"] => {
            let n = ctx.sessions.len();
            format!("Active : Cumulative : Peak Concur\nAnyConnect Client : {n}\n")
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
        ["show", "access-list"] => ctx.policy.show_access_list(None),
        ["show", "access-list", name] => ctx.policy.show_access_list(Some(name)),
        ["show", "cts", "role-based", "sgt-map", rest @ ..]
            if rest.is_empty() || rest == ["all"] =>
        {
            ctx.policy.show_sgt_map()
        }
        ["show", "cts", "sxp", "connections", ..] => match &ctx.sxp {
            Some(sxp) => sxp.show_connections(),
            None => "SXP                  : Disabled\n".to_string(),
        },
        ["reload"] | ["reload", "policy"] => {
            crate::server::reload_policy(&ctx.config_path, &ctx.policy, &ctx.sessions)
        }
        ["show", "counters"] => {
            let mut out = render_counters(&ctx.counters);
            if let Some(hub) = &ctx.dtls {
                out.push_str(&render_dtls_counters(&hub.counters));
                // Live registrations: back to 0 when every session is gone.
                let _ = writeln!(out, "{:<22}: {}", "dtls-app-ids", hub.app_id_count());
                let _ = writeln!(out, "{:<22}: {}", "dtls-peers", hub.peer_count());
            }
            out
        }
        _ => format!("ERROR: % Invalid input detected: {line}\n"),
    }
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
        ("dtls-tx-errors", &c.tx_errors),
    ];
    let mut out = String::new();
    for (name, v) in rows {
        let _ = writeln!(out, "{name:<22}: {}", v.load(Ordering::Relaxed));
    }
    out
}

/// `show vpn-sessiondb anyconnect`, laid out as ASA prints it.
pub fn render_sessions(sessions: &[SessionView]) -> String {
    if sessions.is_empty() {
        return "INFO: There are presently no active sessions\n".to_string();
    }
    let mut out = String::from("\nSession Type: AnyConnect\n");
    for s in sessions {
        let assigned = s
            .assigned_v4
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            out,
            "\n{}{}{}{}{}{}{}{}{}",
            pair("Username", &s.username, "Index", &s.index.to_string()),
            pair(
                "Assigned IP",
                &assigned,
                "Public IP",
                &s.public_ip.to_string()
            ),
            s.assigned_v6
                .map(|a| single("Assigned IPv6", &a.to_string()))
                .unwrap_or_default(),
            single("Protocol", s.protocol),
            single("License", "AnyConnect Premium"),
            pair(
                "Bytes Tx",
                &s.bytes_tx.to_string(),
                "Bytes Rx",
                &s.bytes_rx.to_string()
            ),
            pair(
                "Group Policy",
                &s.group_policy,
                "Tunnel Group",
                &s.tunnel_group
            ),
            single("Login Time", &format_login_time(s.login_time)),
            single("Duration", &format_duration(s.duration)),
        );
        let sgt = s.sgt.map_or_else(|| "none".to_string(), |t| t.to_string());
        let filter = s.filter.as_deref().unwrap_or("none");
        let _ = write!(
            out,
            "{}{}{}{}",
            pair("Security Grp", &sgt, "Filter Name", filter),
            pair(
                "Pkts Tx Drop",
                &s.pkts_tx_drop.to_string(),
                "Pkts Rx Drop",
                &s.pkts_rx_drop.to_string()
            ),
            single("Audit Sess ID", &s.audit_session_id),
            single("Status", s.state)
        );
    }
    out
}

fn pair(k1: &str, v1: &str, k2: &str, v2: &str) -> String {
    format!("{k1:<13}: {v1:<24} {k2:<13}: {v2}\n")
}

fn single(k: &str, v: &str) -> String {
    format!("{k:<13}: {v}\n")
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
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

    #[test]
    fn empty_sessiondb() {
        assert_eq!(
            render_sessions(&[]),
            "INFO: There are presently no active sessions\n"
        );
    }

    #[test]
    fn session_block_has_asa_fields() {
        let v = SessionView {
            index: 7,
            username: "alice".into(),
            tunnel_group: "LOCAL-PW".into(),
            group_policy: "GP-EMPLOYEES".into(),
            public_ip: "198.18.0.2".parse().unwrap(),
            assigned_v4: Some("198.18.100.10".parse().unwrap()),
            assigned_v6: None,
            bytes_tx: 100,
            bytes_rx: 200,
            login_time: UNIX_EPOCH,
            duration: Duration::from_secs(65),
            state: "Connected",
            protocol: "AnyConnect-Parent SSL-Tunnel",
            sgt: Some(10),
            filter: Some("VPN-FILTER".into()),
            audit_session_id: "c612000100000001694a2b3c".into(),
            pkts_tx_drop: 3,
            pkts_rx_drop: 12,
        };
        let out = render_sessions(std::slice::from_ref(&v));
        assert!(
            out.contains("Username     : alice                    Index        : 7\n"),
            "{out}"
        );
        assert!(
            out.contains("Assigned IP  : 198.18.100.10            Public IP    : 198.18.0.2\n")
        );
        assert!(out.contains("Bytes Tx     : 100                      Bytes Rx     : 200\n"));
        assert!(out.contains("Group Policy : GP-EMPLOYEES             Tunnel Group : LOCAL-PW\n"));
        assert!(out.contains("Duration     : 0h:01m:05s\n"));
        assert!(
            out.contains("Security Grp : 10                       Filter Name  : VPN-FILTER\n"),
            "{out}"
        );
        assert!(out.contains("Audit Sess ID: c612000100000001694a2b3c\n"));
        assert!(
            out.contains("Pkts Tx Drop : 3                        Pkts Rx Drop : 12\n"),
            "{out}"
        );
        assert!(!out.contains("Assigned IPv6"), "{out}");
        // Dual stack: ASA's extra line right after the IPv4 one.
        let mut dual = v;
        dual.assigned_v6 = Some("fd00:100::10".parse().unwrap());
        let out = render_sessions(&[dual]);
        assert!(
            out.contains(
                "Assigned IP  : 198.18.100.10            Public IP    : 198.18.0.2\n\
                 Assigned IPv6: fd00:100::10\nProtocol"
            ),
            "{out}"
        );
    }
}

//! ASA syslog: typed messages with ASA's ids, severities and texts, sent to the
//! `logging host`s (RFC 3164 over UDP; over TCP with RFC 6587 octet counting),
//! kept in the `logging buffered` ring for `show logging`, and always written to
//! the headend's own log.
//!
//! Texts come from Cisco's "ASA Series Syslog Messages" (see
//! `shared/docs/asa-syntax.md` section 7); ids not listed there are marked
//! [U] where they are defined. Sending never blocks the caller: each host has a
//! bounded queue, a full queue drops the message and counts it, and a host that
//! is down only costs its own task reconnect attempts.

mod acl_bridge;
mod transport;

pub use acl_bridge::AclLogBridge;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::mgmt::Logging;

/// ASA's default syslog facility (local4 = 20).
pub const FACILITY: u8 = 20;
/// Lines `logging buffered` keeps (ASA's default buffer is 4 KB; lines here).
const BUFFER_LINES: usize = 1000;

/// One message the headend sends, with the facts ASA's text needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 113039/6: an AnyConnect parent session started.
    ParentSessionStarted {
        group: String,
        user: String,
        ip: IpAddr,
    },
    /// 722022/6: TCP (CSTP) or UDP (DTLS) tunnel up.
    SvcEstablished {
        group: String,
        user: String,
        ip: IpAddr,
        udp: bool,
    },
    /// 722023/6: TCP or UDP tunnel down.
    SvcTerminated {
        group: String,
        user: String,
        ip: IpAddr,
        udp: bool,
    },
    /// 722051/6: addresses assigned to the session.
    AddressAssigned {
        group_policy: String,
        user: String,
        ip: IpAddr,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    },
    /// 113019/4: session over, with duration, bytes and the reason in ASA's words.
    SessionDisconnected {
        group: String,
        user: String,
        ip: IpAddr,
        duration: Duration,
        bytes_tx: u64,
        bytes_rx: u64,
        reason: String,
    },
    /// 113004/6: AAA authentication succeeded.
    AaaSuccess { server: IpAddr, user: String },
    /// 113005/6: AAA authentication rejected.
    AaaRejected {
        reason: String,
        server: IpAddr,
        user: String,
        user_ip: IpAddr,
    },
    /// 113012/6 [U]: authentication against the local user database succeeded.
    LocalAuthSuccess { user: String },
    /// 113015/6 [U]: authentication against the local user database rejected.
    LocalAuthRejected {
        reason: String,
        user: String,
        user_ip: IpAddr,
    },
    /// 113008/6: AAA transaction accepted.
    AaaAccept { user: String },
    /// 716001/6: WebVPN session started. ASA logs it for an AnyConnect login too
    /// (the aggregate-auth exchange is a WebVPN session), right after 113039.
    WebVpnStarted {
        group: String,
        user: String,
        ip: IpAddr,
    },
    /// 716002/6: WebVPN session terminated.
    WebVpnTerminated {
        group_policy: String,
        user: String,
        ip: IpAddr,
        reason: String,
    },
    /// 722037/5: the headend closes the tunnel connection.
    SvcClosing {
        group: String,
        user: String,
        ip: IpAddr,
        reason: String,
    },
    /// 106100: a hit on an ACE with `log`, at the ACE's level.
    AclHit {
        acl: String,
        permitted: bool,
        protocol: String,
        src_if: String,
        src: IpAddr,
        sport: u16,
        dst_if: String,
        dst: IpAddr,
        dport: u16,
        hits: u64,
        /// None = first hit; Some(s) = count over an s-second interval.
        interval: Option<u32>,
        level: u8,
    },
    /// 605005/6 [U]: management login accepted.
    LoginPermitted {
        src: SocketAddr,
        interface: String,
        dst: SocketAddr,
        user: String,
    },
    /// 605004/6 [U]: management login refused (a wrong `enable` password is
    /// logged for user `enable_15`, as ASA does).
    LoginDenied {
        src: SocketAddr,
        interface: String,
        dst: SocketAddr,
        user: String,
    },
    /// 710003/3 [U]: a management connection from a source no `ssh` line allows.
    TcpAccessDenied {
        src: SocketAddr,
        interface: String,
        dst: SocketAddr,
    },
    /// 111008/5 [U]: a CLI command ran.
    CommandExecuted {
        user: String,
        ip: IpAddr,
        command: String,
    },
    /// 502103/5 [U]: privilege level changed by `enable`.
    PrivilegeChanged { user: String, from: u8, to: u8 },
    /// 733201/4: threat detection shunned a peer (asa-syntax.md section 4).
    ShunAdded {
        service: &'static str,
        peer: IpAddr,
        threshold: u32,
        interface: String,
        reason: &'static str,
    },
    /// 401003/4: a shun was removed.
    ShunDeleted { ip: IpAddr },
    /// 113006/6: a local user locked out by `aaa local authentication attempts
    /// max-fail`.
    UserLockedOut { user: String, max_fail: u32 },
    /// 113007/6: a local user unlocked by an administrator.
    UserUnlocked { user: String, admin: String },
}

impl Message {
    pub fn id(&self) -> u32 {
        match self {
            Message::ParentSessionStarted { .. } => 113039,
            Message::SvcEstablished { .. } => 722022,
            Message::SvcTerminated { .. } => 722023,
            Message::AddressAssigned { .. } => 722051,
            Message::SessionDisconnected { .. } => 113019,
            Message::AaaSuccess { .. } => 113004,
            Message::AaaRejected { .. } => 113005,
            Message::AaaAccept { .. } => 113008,
            Message::LocalAuthSuccess { .. } => 113012,
            Message::LocalAuthRejected { .. } => 113015,
            Message::WebVpnStarted { .. } => 716001,
            Message::WebVpnTerminated { .. } => 716002,
            Message::SvcClosing { .. } => 722037,
            Message::AclHit { .. } => 106100,
            Message::LoginPermitted { .. } => 605005,
            Message::LoginDenied { .. } => 605004,
            Message::TcpAccessDenied { .. } => 710003,
            Message::CommandExecuted { .. } => 111008,
            Message::PrivilegeChanged { .. } => 502103,
            Message::ShunAdded { .. } => 733201,
            Message::ShunDeleted { .. } => 401003,
            Message::UserLockedOut { .. } => 113006,
            Message::UserUnlocked { .. } => 113007,
        }
    }

    pub fn severity(&self) -> u8 {
        match self {
            Message::SessionDisconnected { .. }
            | Message::ShunAdded { .. }
            | Message::ShunDeleted { .. } => 4,
            Message::SvcClosing { .. }
            | Message::CommandExecuted { .. }
            | Message::PrivilegeChanged { .. } => 5,
            Message::TcpAccessDenied { .. } => 3,
            Message::AclHit { level, .. } => *level,
            _ => 6,
        }
    }

    /// The text after `%ASA-S-ID: `. `hide_username` masks the user of failed
    /// logins (`logging hide username`, ASA's default).
    pub fn text(&self, hide_username: bool) -> String {
        let hide = |u: &str| {
            if hide_username {
                "*****".to_string()
            } else {
                u.to_string()
            }
        };
        match self {
            Message::ParentSessionStarted { group, user, ip } => {
                format!(
                    "Group <{group}> User <{user}> IP <{ip}> AnyConnect parent session started."
                )
            }
            Message::SvcEstablished {
                group,
                user,
                ip,
                udp,
            } => format!(
                "Group <{group}> User <{user}> IP <{ip}> {} SVC connection established without compression",
                if *udp { "UDP" } else { "TCP" }
            ),
            Message::SvcTerminated {
                group,
                user,
                ip,
                udp,
            } => format!(
                "Group <{group}> User <{user}> IP <{ip}> {} SVC connection terminated without compression",
                if *udp { "UDP" } else { "TCP" }
            ),
            Message::AddressAssigned {
                group_policy,
                user,
                ip,
                v4,
                v6,
            } => format!(
                "Group <{group_policy}> User <{user}> IP <{ip}> IPv4 Address <{}> IPv6 address <{}> assigned to session",
                v4.map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string()),
                v6.map_or_else(|| "::".to_string(), |a| a.to_string()),
            ),
            Message::SessionDisconnected {
                group,
                user,
                ip,
                duration,
                bytes_tx,
                bytes_rx,
                reason,
            } => format!(
                "Group = {group}, Username = {user}, IP = {ip}, Session disconnected. Session Type: AnyConnect-Parent, Duration: {}, Bytes xmt: {bytes_tx}, Bytes rcv: {bytes_rx}, Reason: {reason}",
                asa_duration(*duration)
            ),
            Message::AaaSuccess { server, user } => {
                format!("AAA user authentication Successful : server = {server} : user = {user}")
            }
            Message::AaaRejected {
                reason,
                server,
                user,
                user_ip,
            } => format!(
                "AAA user authentication Rejected : reason = {reason} : server = {server} : user = {} : user IP = {user_ip}",
                hide(user)
            ),
            Message::AaaAccept { user } => format!("AAA transaction status ACCEPT : user = {user}"),
            Message::LocalAuthSuccess { user } => {
                format!("AAA user authentication Successful : local database : user = {user}")
            }
            Message::LocalAuthRejected {
                reason,
                user,
                user_ip,
            } => format!(
                "AAA user authentication Rejected : reason = {reason} : local database : user = {} : user IP = {user_ip}",
                hide(user)
            ),
            Message::WebVpnStarted { group, user, ip } => {
                format!("Group <{group}> User <{user}> IP <{ip}> WebVPN session started.")
            }
            Message::WebVpnTerminated {
                group_policy,
                user,
                ip,
                reason,
            } => {
                format!(
                    "Group <{group_policy}> User <{user}> IP <{ip}> WebVPN session terminated: {reason}."
                )
            }
            Message::SvcClosing {
                group,
                user,
                ip,
                reason,
            } => {
                format!("Group <{group}> User <{user}> IP <{ip}> SVC closing connection: {reason}.")
            }
            Message::AclHit {
                acl,
                permitted,
                protocol,
                src_if,
                src,
                sport,
                dst_if,
                dst,
                dport,
                hits,
                interval,
                ..
            } => format!(
                "access-list {acl} {} {protocol} {src_if}/{src}({sport}) -> {dst_if}/{dst}({dport}) hit-cnt {hits} {}",
                if *permitted { "permitted" } else { "denied" },
                interval.map_or_else(
                    || "first hit".to_string(),
                    |s| format!("{s}-second interval")
                ),
            ),
            Message::LoginPermitted {
                src,
                interface,
                dst,
                user,
            } => format!(
                "Login permitted from {}/{} to {interface}:{}/ssh for user \"{user}\"",
                src.ip(),
                src.port(),
                dst.ip()
            ),
            Message::LoginDenied {
                src,
                interface,
                dst,
                user,
            } => format!(
                "Login denied from {}/{} to {interface}:{}/ssh for user \"{}\"",
                src.ip(),
                src.port(),
                dst.ip(),
                hide(user)
            ),
            Message::TcpAccessDenied {
                src,
                interface,
                dst,
            } => format!(
                "TCP access denied by ACL from {}/{} to {interface}:{}/{}",
                src.ip(),
                src.port(),
                dst.ip(),
                dst.port()
            ),
            Message::CommandExecuted { user, command, .. } => {
                format!("User '{user}' executed the '{command}' command.")
            }
            Message::PrivilegeChanged { user, from, to } => {
                format!("User priv level changed: Uname: {user} From: {from} To: {to}")
            }
            Message::ShunAdded {
                service,
                peer,
                threshold,
                interface,
                reason,
            } => format!(
                "Threat-detection: Service[{service}] Peer[{peer}]: failure threshold of {threshold} exceeded: adding shun to interface {interface}. SSL: {reason}."
            ),
            Message::ShunDeleted { ip } => format!("Shun deleted: {ip}"),
            Message::UserLockedOut { user, max_fail } => format!(
                "User '{user}' locked out on exceeding '{max_fail}' successive failed authentication attempts"
            ),
            Message::UserUnlocked { user, admin } => {
                format!("User '{user}' unlocked by '{admin}'")
            }
        }
    }
}

/// `1d 19h:41m:14s` / `0h:05m:12s`, as 113019 prints durations.
pub fn asa_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if days > 0 {
        format!("{days}d {h}h:{m:02}m:{sec:02}s")
    } else {
        format!("{h}h:{m:02}m:{sec:02}s")
    }
}

/// `Dec 07 2026 05:30:00`: ASA's `logging timestamp` form.
pub fn asa_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = crate::admin::civil_from_days((secs / 86_400) as i64);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    let tod = secs % 86_400;
    format!(
        "{month} {d:02} {y} {:02}:{:02}:{:02}",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    )
}

/// How a message is laid out (ASA's `logging timestamp`, `logging device-id`,
/// `format emblem`).
#[derive(Debug, Clone)]
pub struct Format {
    pub timestamp: bool,
    pub device_id: Option<String>,
    pub hide_username: bool,
}

impl Format {
    /// The line without the `<PRI>`: `[TIMESTAMP[ DEVICE] : ]%ASA-S-ID: TEXT`.
    pub fn line(&self, m: &Message, now: SystemTime) -> String {
        let body = format!(
            "%ASA-{}-{}: {}",
            m.severity(),
            m.id(),
            m.text(self.hide_username)
        );
        match (self.timestamp, &self.device_id) {
            (true, Some(d)) => format!("{} {d} : {body}", asa_timestamp(now)),
            (true, None) => format!("{}: {body}", asa_timestamp(now)),
            (false, Some(d)) => format!("{d} : {body}"),
            (false, None) => body,
        }
    }

    /// RFC 3164 payload: `<PRI>` (facility 20) then the line.
    pub fn rfc3164(&self, m: &Message, now: SystemTime) -> String {
        format!(
            "<{}>{}",
            u32::from(FACILITY) * 8 + u32::from(m.severity()),
            self.line(m, now)
        )
    }

    /// EMBLEM (`format emblem`): `<PRI>SEQ: [DEVICE: ]TIMESTAMP UTC: %ASA-...`.
    pub fn emblem(&self, m: &Message, now: SystemTime, seq: u64) -> String {
        let body = format!(
            "%ASA-{}-{}: {}",
            m.severity(),
            m.id(),
            m.text(self.hide_username)
        );
        let dev = self
            .device_id
            .as_ref()
            .map(|d| format!("{d}: "))
            .unwrap_or_default();
        format!(
            "<{}>{seq}: {dev}{} UTC: {body}",
            u32::from(FACILITY) * 8 + u32::from(m.severity()),
            asa_timestamp(now)
        )
    }
}

/// Counters shown by `show logging`.
#[derive(Debug, Default)]
pub struct Counters {
    pub logged_trap: AtomicU64,
    pub logged_buffer: AtomicU64,
    /// Messages a full host queue dropped.
    pub dropped: AtomicU64,
}

/// The running logger: settings, buffer, host queues.
pub struct Logger {
    settings: Logging,
    format: Format,
    buffer: Mutex<VecDeque<String>>,
    hosts: Vec<transport::HostQueue>,
    counters: Arc<Counters>,
    seq: AtomicU64,
}

/// The running logger; replaced whole by [`reconfigure`] (`headend reload`).
static LOGGER: ArcSwapOption<Logger> = ArcSwapOption::const_empty();

fn build(settings: &Logging, hostname: &str, counters: Arc<Counters>) -> Logger {
    let format = Format {
        timestamp: settings.timestamp,
        device_id: settings.device_id_hostname.then(|| hostname.to_string()),
        hide_username: settings.hide_username,
    };
    let hosts = if settings.enable {
        settings
            .hosts
            .iter()
            .map(|h| transport::HostQueue::start(h, counters.clone()))
            .collect()
    } else {
        Vec::new()
    };
    Logger {
        settings: settings.clone(),
        format,
        buffer: Mutex::new(VecDeque::new()),
        hosts,
        counters,
        seq: AtomicU64::new(1),
    }
}

/// Starts logging as `settings` say. Needs a tokio runtime when hosts are
/// configured.
pub fn init(settings: &Logging, hostname: &str) {
    LOGGER.store(Some(Arc::new(build(
        settings,
        hostname,
        Arc::new(Counters::default()),
    ))));
}

/// Applies re-read `logging` settings (`headend reload`). Unchanged settings
/// keep everything; otherwise the new logger keeps the buffer, the counters and
/// the EMBLEM sequence and starts queues for the new hosts; the old hosts'
/// tasks end once their queues are dropped (what those still hold is not sent).
/// Returns whether anything changed.
pub fn reconfigure(settings: &Logging, hostname: &str) -> bool {
    let old = LOGGER.load_full();
    let device_id = settings.device_id_hostname.then(|| hostname.to_string());
    if let Some(o) = &old
        && o.settings == *settings
        && o.format.device_id == device_id
    {
        return false;
    }
    let counters = old
        .as_ref()
        .map_or_else(|| Arc::new(Counters::default()), |o| o.counters.clone());
    let new = build(settings, hostname, counters);
    if let Some(o) = &old {
        let kept = std::mem::take(&mut *o.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        *new.buffer.lock().unwrap_or_else(|e| e.into_inner()) = kept;
        new.seq
            .store(o.seq.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    LOGGER.store(Some(Arc::new(new)));
    true
}

/// Sends `m` everywhere it goes; never blocks.
pub fn emit(m: Message) {
    let guard = LOGGER.load();
    let Some(l) = guard.as_deref() else {
        tracing::info!(target: "syslog", "%ASA-{}-{}: {}", m.severity(), m.id(), m.text(true));
        return;
    };
    let now = SystemTime::now();
    let line = l.format.line(&m, now);
    tracing::info!(target: "syslog", "{line}");
    if !l.settings.enable {
        return;
    }
    let sev = m.severity();
    if l.settings.buffered.is_some_and(|lv| sev <= lv) {
        let mut b = l.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() == BUFFER_LINES {
            b.pop_front();
        }
        b.push_back(line);
        l.counters.logged_buffer.fetch_add(1, Ordering::Relaxed);
    }
    if l.settings.trap.is_some_and(|lv| sev <= lv) && !l.hosts.is_empty() {
        l.counters.logged_trap.fetch_add(1, Ordering::Relaxed);
        let seq = l.seq.fetch_add(1, Ordering::Relaxed);
        for h in &l.hosts {
            let payload = if h.emblem {
                l.format.emblem(&m, now, seq)
            } else {
                l.format.rfc3164(&m, now)
            };
            h.send(payload);
        }
    }
}

fn level_name(l: u8) -> &'static str {
    [
        "emergencies",
        "alerts",
        "critical",
        "errors",
        "warnings",
        "notifications",
        "informational",
        "debugging",
    ][usize::from(l.min(7))]
}

/// `show logging`: the settings as ASA lists them, then the buffer.
pub fn show_logging() -> String {
    let guard = LOGGER.load();
    let Some(l) = guard.as_deref() else {
        return "Syslog logging: disabled\n".to_string();
    };
    let s = &l.settings;
    let onoff = |b: bool| if b { "enabled" } else { "disabled" };
    let mut out = String::new();
    let _ = writeln!(out, "Syslog logging: {}", onoff(s.enable));
    let _ = writeln!(out, "    Facility: {FACILITY}");
    let _ = writeln!(out, "    Timestamp logging: {}", onoff(s.timestamp));
    let _ = writeln!(out, "    Hide Username logging: {}", onoff(s.hide_username));
    let _ = writeln!(out, "    Standby logging: disabled");
    let _ = writeln!(out, "    Debug-trace logging: disabled");
    let _ = writeln!(out, "    Console logging: disabled");
    let _ = writeln!(out, "    Monitor logging: disabled");
    let c = &l.counters;
    match s.buffered {
        Some(lv) => {
            let _ = writeln!(
                out,
                "    Buffer logging: level {}, {} messages logged",
                level_name(lv),
                c.logged_buffer.load(Ordering::Relaxed)
            );
        }
        None => {
            let _ = writeln!(out, "    Buffer logging: disabled");
        }
    }
    match s.trap {
        Some(lv) => {
            let _ = writeln!(
                out,
                "    Trap logging: level {}, facility {FACILITY}, {} messages logged",
                level_name(lv),
                c.logged_trap.load(Ordering::Relaxed)
            );
            for h in &s.hosts {
                let proto = match h.transport {
                    crate::config::mgmt::LogTransport::Udp => "UDP",
                    crate::config::mgmt::LogTransport::Tcp => "TCP",
                };
                let _ = writeln!(
                    out,
                    "        Logging to {} {} {proto}/{}{}",
                    h.interface,
                    h.address,
                    h.port,
                    if h.emblem { " format emblem" } else { "" }
                );
            }
            let _ = writeln!(
                out,
                "        Messages dropped (host queue full): {}",
                c.dropped.load(Ordering::Relaxed)
            );
        }
        None => {
            let _ = writeln!(out, "    Trap logging: disabled");
        }
    }
    let _ = writeln!(out, "    Permit-hostdown logging: enabled");
    let _ = writeln!(out, "    History logging: disabled");
    let _ = writeln!(
        out,
        "    Device ID: {}",
        l.format
            .device_id
            .as_deref()
            .map_or("disabled".to_string(), |d| format!("hostname \"{d}\""))
    );
    let _ = writeln!(out, "    Mail logging: disabled");
    let _ = writeln!(out, "    ASDM logging: disabled");
    out.push('\n');
    for line in l.buffer.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        // 2026-11-23 08:30:00 UTC
        UNIX_EPOCH + Duration::from_secs(1_795_422_600)
    }

    #[test]
    fn texts_match_the_asa_guide() {
        let ip: IpAddr = "198.18.0.2".parse().unwrap();
        let m = Message::ParentSessionStarted {
            group: "GP".into(),
            user: "alice".into(),
            ip,
        };
        assert_eq!(
            m.text(true),
            "Group <GP> User <alice> IP <198.18.0.2> AnyConnect parent session started."
        );
        let m = Message::WebVpnStarted {
            group: "GP".into(),
            user: "alice".into(),
            ip,
        };
        assert_eq!((m.id(), m.severity()), (716001, 6));
        assert_eq!(
            m.text(true),
            "Group <GP> User <alice> IP <198.18.0.2> WebVPN session started."
        );
        let m = Message::WebVpnTerminated {
            group_policy: "GP".into(),
            user: "alice".into(),
            ip,
            reason: "User Requested".into(),
        };
        assert_eq!((m.id(), m.severity()), (716002, 6));
        assert_eq!(
            m.text(true),
            "Group <GP> User <alice> IP <198.18.0.2> WebVPN session terminated: User Requested."
        );
        let m = Message::SessionDisconnected {
            group: "GP".into(),
            user: "alice".into(),
            ip,
            duration: Duration::from_secs(86_400 + 19 * 3600 + 41 * 60 + 14),
            bytes_tx: 10,
            bytes_rx: 20,
            reason: "User Requested".into(),
        };
        assert_eq!(
            m.text(true),
            "Group = GP, Username = alice, IP = 198.18.0.2, Session disconnected. Session Type: AnyConnect-Parent, Duration: 1d 19h:41m:14s, Bytes xmt: 10, Bytes rcv: 20, Reason: User Requested"
        );
        assert_eq!((m.id(), m.severity()), (113019, 4));
        let m = Message::AclHit {
            acl: "VPN-FILTER".into(),
            permitted: false,
            protocol: "tcp".into(),
            src_if: "outside".into(),
            src: "198.18.100.10".parse().unwrap(),
            sport: 40000,
            dst_if: "inside".into(),
            dst: "198.18.1.5".parse().unwrap(),
            dport: 22,
            hits: 1,
            interval: None,
            level: 4,
        };
        assert_eq!(
            m.text(true),
            "access-list VPN-FILTER denied tcp outside/198.18.100.10(40000) -> inside/198.18.1.5(22) hit-cnt 1 first hit"
        );
        assert_eq!(m.severity(), 4);
        let rej = Message::AaaRejected {
            reason: "Invalid password".into(),
            server: "198.18.1.5".parse().unwrap(),
            user: "bob".into(),
            user_ip: ip,
        };
        assert!(rej.text(true).contains("user = ***** :"));
        assert!(rej.text(false).contains("user = bob :"));
    }

    #[test]
    fn reconfigure_keeps_the_buffer_and_applies_new_settings() {
        let mut settings = Logging {
            enable: true,
            buffered: Some(6),
            ..Logging::default()
        };
        init(&settings, "gw");
        let marker = Message::AaaAccept {
            user: "reconfigure-marker".into(),
        };
        emit(marker.clone());
        assert!(!reconfigure(&settings, "gw"), "nothing changed");
        settings.timestamp = true;
        settings.buffered = Some(7);
        assert!(reconfigure(&settings, "gw"));
        let shown = show_logging();
        assert!(shown.contains("Timestamp logging: enabled"), "{shown}");
        assert!(shown.contains("Buffer logging: level debugging"), "{shown}");
        assert!(
            shown.contains(
                "%ASA-6-113008: AAA transaction status ACCEPT : user = reconfigure-marker"
            ),
            "buffer kept: {shown}"
        );
        // `no logging enable`: nothing more is buffered.
        settings.enable = false;
        assert!(reconfigure(&settings, "gw"));
        emit(Message::AaaAccept {
            user: "after-disable".into(),
        });
        assert!(!show_logging().contains("after-disable"));
    }

    #[test]
    fn hardening_messages_match_the_asa_guide() {
        let m = Message::ShunAdded {
            service: "remote-access-client-initiations",
            peer: "198.18.0.9".parse().unwrap(),
            threshold: 20,
            interface: "outside".into(),
            reason: "RA excessive client initiation requests",
        };
        assert_eq!(
            format!("%ASA-{}-{}: {}", m.severity(), m.id(), m.text(true)),
            "%ASA-4-733201: Threat-detection: Service[remote-access-client-initiations] Peer[198.18.0.9]: failure threshold of 20 exceeded: adding shun to interface outside. SSL: RA excessive client initiation requests."
        );
        let m = Message::UserLockedOut {
            user: "bob".into(),
            max_fail: 3,
        };
        assert_eq!(
            format!("%ASA-{}-{}: {}", m.severity(), m.id(), m.text(true)),
            "%ASA-6-113006: User 'bob' locked out on exceeding '3' successive failed authentication attempts"
        );
        let m = Message::UserUnlocked {
            user: "bob".into(),
            admin: "enable_15".into(),
        };
        assert_eq!(
            format!("%ASA-{}-{}: {}", m.severity(), m.id(), m.text(true)),
            "%ASA-6-113007: User 'bob' unlocked by 'enable_15'"
        );
        let m = Message::ShunDeleted {
            ip: "198.18.0.9".parse().unwrap(),
        };
        assert_eq!(
            format!("%ASA-{}-{}: {}", m.severity(), m.id(), m.text(true)),
            "%ASA-4-401003: Shun deleted: 198.18.0.9"
        );
    }

    #[test]
    fn framing_with_timestamp_device_id_and_emblem() {
        let m = Message::AaaAccept {
            user: "alice".into(),
        };
        let mut f = Format {
            timestamp: false,
            device_id: None,
            hide_username: true,
        };
        assert_eq!(
            f.rfc3164(&m, t0()),
            "<166>%ASA-6-113008: AAA transaction status ACCEPT : user = alice"
        );
        f.timestamp = true;
        assert_eq!(
            f.rfc3164(&m, t0()),
            "<166>Nov 23 2026 08:30:00: %ASA-6-113008: AAA transaction status ACCEPT : user = alice"
        );
        f.device_id = Some("vpn-gw".into());
        assert_eq!(
            f.line(&m, t0()),
            "Nov 23 2026 08:30:00 vpn-gw : %ASA-6-113008: AAA transaction status ACCEPT : user = alice"
        );
        assert_eq!(
            f.emblem(&m, t0(), 7),
            "<166>7: vpn-gw: Nov 23 2026 08:30:00 UTC: %ASA-6-113008: AAA transaction status ACCEPT : user = alice"
        );
        assert_eq!(transport::octet_counted("<166>x"), b"6 <166>x");
    }
}

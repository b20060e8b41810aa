//! Hardening against password spraying (issue 17): ASA remote-access threat
//! detection with shuns, and local user lockout.
//!
//! `tracker.rs` and `lockout.rs` are sans-IO; [`Threats`] holds them behind
//! locks for the login code, the accept path (a shunned source is dropped
//! before its TLS handshake, its DTLS ClientHellos before any work) and the
//! admin commands of `admin.rs` (see [`Threats::admin`]).

pub mod admission;
pub mod lockout;
pub mod tracker;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use lockout::{Failure, LocalLockout};
use tracker::{Service, ShunAdded, ThreatEvent, ThreatTracker};

/// The name ASA prints for the administrator in 113007 without AAA for the CLI.
const ADMIN_NAME: &str = "enable_15";

pub struct Threats {
    tracker: Mutex<ThreatTracker>,
    lockout: Mutex<LocalLockout>,
    /// Shuns in force: lets the accept path skip the lock while there are none.
    shuns: AtomicUsize,
    /// The `nameif` shuns are reported on (`shun (outside) ...`).
    interface: String,
    /// Per-source limits on connections that are not tunnels yet.
    pub admission: Arc<admission::Admission>,
}

impl Threats {
    pub fn new(cfg: &Config, limits: admission::SourceLimits) -> Self {
        let interface = cfg
            .webvpn
            .enable_interfaces
            .first()
            .cloned()
            .unwrap_or_else(|| "outside".into());
        Threats {
            tracker: Mutex::new(ThreatTracker::new(cfg.threat_detection.clone())),
            lockout: Mutex::new(LocalLockout::new(
                cfg.aaa_local_max_fail,
                cfg.usernames
                    .values()
                    .map(|u| (u.name.as_str(), u.privilege)),
            )),
            shuns: AtomicUsize::new(0),
            interface,
            admission: admission::Admission::new(limits),
        }
    }

    /// A reload: the new `threat-detection service remote-access-*` settings
    /// and `aaa local authentication attempts max-fail` (and users) apply; the
    /// tracked events, shuns and lockouts stay.
    pub fn reconfigure(&self, cfg: &Config) {
        self.tracker().set_config(cfg.threat_detection.clone());
        self.lockout().reconfigure(
            cfg.aaa_local_max_fail,
            cfg.usernames
                .values()
                .map(|u| (u.name.as_str(), u.privilege)),
        );
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, ThreatTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lockout(&self) -> std::sync::MutexGuard<'_, LocalLockout> {
        self.lockout.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The accept-path check: cheap, and lock-free while nothing is shunned.
    pub fn is_shunned(&self, ip: IpAddr) -> bool {
        self.shuns.load(Ordering::Relaxed) != 0 && self.tracker().is_shunned(ip)
    }

    /// Counts `event` from `source`; logs and enforces the shun it may cause.
    pub fn record(&self, event: ThreatEvent, source: IpAddr) {
        let mut t = self.tracker();
        if let Some(shun) = t.record(event, source, Instant::now()) {
            self.shuns.store(t.shun_count(), Ordering::Relaxed);
            drop(t);
            syslog_733201(&shun, &self.interface);
        }
    }

    pub fn login_succeeded(&self, source: IpAddr) {
        self.tracker().login_succeeded(source);
    }

    /// Whether local user `user` is locked out.
    pub fn local_user_locked(&self, user: &str) -> bool {
        self.lockout().is_locked(user)
    }

    /// A wrong local password for `user` (known or not).
    pub fn local_login_failed(&self, user: &str) {
        if let Failure::LockedOut { max_fail } = self.lockout().failed(user) {
            syslog_113006(user, max_fail);
        }
    }

    pub fn local_login_succeeded(&self, user: &str) {
        self.lockout().succeeded(user);
    }

    /// The admin commands of this module; None for any other command line.
    pub fn admin(&self, words: &[&str]) -> Option<String> {
        let now = Instant::now();
        let reply = match words {
            ["show", "shun"] => {
                let t = self.tracker();
                let mut out = String::new();
                for (ip, _) in t.shuns() {
                    let _ = writeln!(out, "shun ({}) {ip} {} 0 0 0", self.interface, any_of(ip));
                }
                out
            }
            ["no", "shun", ip] | ["no", "shun", ip, ..] => match ip.parse::<IpAddr>() {
                Ok(ip) => {
                    let mut t = self.tracker();
                    if t.remove_shun(ip) {
                        self.shuns.store(t.shun_count(), Ordering::Relaxed);
                        drop(t);
                        syslog_401003(ip);
                        String::new()
                    } else {
                        format!("ERROR: Shun not found for {ip}\n")
                    }
                }
                Err(_) => format!("ERROR: % Invalid IP address {ip}\n"),
            },
            ["clear", "shun"] => {
                let mut t = self.tracker();
                let removed = t.clear_shuns();
                self.shuns.store(0, Ordering::Relaxed);
                drop(t);
                for ip in removed {
                    syslog_401003(ip);
                }
                String::new()
            }
            ["show", "threat-detection", "service", rest @ ..] => {
                let (svc, entries) = match rest {
                    [] => (None, false),
                    ["entries"] => (None, true),
                    [name] | [name, "entries"] => match Service::from_name(name) {
                        Some(s) => (Some(s), rest.len() == 2),
                        None => {
                            return Some(format!(
                                "ERROR: % Invalid input detected: unknown service {name}\n"
                            ));
                        }
                    },
                    _ => {
                        return Some(format!(
                            "ERROR: % Invalid input detected: {}\n",
                            words.join(" ")
                        ));
                    }
                };
                self.show_services(svc, entries, now)
            }
            ["clear", "threat-detection", "service"] => {
                self.tracker().clear_service(None);
                String::new()
            }
            ["clear", "threat-detection", "service", name] => match Service::from_name(name) {
                Some(s) => {
                    self.tracker().clear_service(Some(s));
                    String::new()
                }
                None => format!("ERROR: % Invalid input detected: unknown service {name}\n"),
            },
            ["show", "aaa", "local", "user"] => self.show_local_users(false),
            ["show", "aaa", "local", "user", "locked"] => self.show_local_users(true),
            ["clear", "aaa", "local", "user", "lockout", "all"] => {
                for user in self.lockout().unlock_all() {
                    syslog_113007(&user);
                }
                String::new()
            }
            ["clear", "aaa", "local", "user", "lockout", "username", user] => {
                if self.lockout().unlock(user) {
                    syslog_113007(user);
                }
                String::new()
            }
            _ => return None,
        };
        Some(reply)
    }

    /// Lines for `show counters`: connections refused by the per-source limits.
    pub fn render_counters(&self) -> String {
        let a = &self.admission;
        format!(
            "{:<22}: {}\n{:<22}: {}\n",
            "conn-refused-half-open",
            a.refused_half_open.load(Ordering::Relaxed),
            "conn-refused-unauth",
            a.refused_unauthenticated.load(Ordering::Relaxed)
        )
    }

    fn show_services(&self, only: Option<Service>, entries: bool, now: Instant) -> String {
        let t = self.tracker();
        let mut out = String::new();
        for s in Service::ALL
            .into_iter()
            .filter(|s| only.is_none_or(|o| o == *s))
        {
            let enabled = t.enabled(s);
            let _ = writeln!(out, "Service: {}", s.name());
            let _ = writeln!(
                out,
                "    State       : {}",
                if enabled { "Enabled" } else { "Disabled" }
            );
            let limit = match s {
                Service::InvalidVpnAccess => None,
                Service::RemoteAccessAuthentication => t.config().authentication,
                Service::RemoteAccessClientInitiations => t.config().client_initiations,
            };
            if let Some(l) = limit {
                let _ = writeln!(out, "    Hold-down   : {} minutes", l.hold_down_minutes);
                let _ = writeln!(out, "    Threshold   : {}", l.threshold);
            }
            let st = t.stats(s);
            let rows = t.entries(s, now);
            let _ = writeln!(out, "    Stats:");
            let _ = writeln!(out, "        failed          : {:>10}", st.failed);
            let _ = writeln!(out, "        blocking        : {:>10}", st.blocking);
            let _ = writeln!(out, "        recording       : {:>10}", rows.len());
            let _ = writeln!(out, "    Total entries: {}", rows.len());
            if entries && !rows.is_empty() {
                let _ = writeln!(
                    out,
                    "\n    Idx Source                                   Interface            Count    Age Hold-down"
                );
                let _ = writeln!(
                    out,
                    "    --- ---------------------------------------- -------------------- ----- ------ ---------"
                );
                for (i, e) in rows.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "    {:>3} {:<40} {:<20} {:>5} {:>6} {:>9}",
                        i + 1,
                        e.source.to_string(),
                        self.interface,
                        e.count,
                        e.age.as_secs(),
                        e.hold_down_left.as_secs()
                    );
                }
            }
            out.push('\n');
        }
        out
    }

    fn show_local_users(&self, locked_only: bool) -> String {
        let l = self.lockout();
        let mut out = String::from("Lock-time Failed-attempts Locked  User\n");
        for (name, s) in l.users() {
            if locked_only && !s.locked {
                continue;
            }
            let _ = writeln!(
                out,
                "{:>9} {:>15} {:>6}  {name}",
                "-",
                s.failed_attempts,
                if s.locked { "Y" } else { "N" }
            );
        }
        out
    }
}

fn any_of(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "0.0.0.0" } else { "::" }
}

// ---------------------------------------------------------------- ASA log lines
//
// Typed syslog messages (crate::syslog): to the logging hosts and buffer as
// configured, and always to the headend's own log.

/// `%ASA-4-733201`. The client-initiation text is the one Cisco documents; the
/// other two services use the same shape with their own reason.
pub fn syslog_733201(s: &ShunAdded, interface: &str) {
    let reason = match s.service {
        Service::RemoteAccessClientInitiations => "RA excessive client initiation requests",
        Service::RemoteAccessAuthentication => "RA excessive authentication failures",
        Service::InvalidVpnAccess => "RA invalid VPN access",
    };
    crate::syslog::emit(crate::syslog::Message::ShunAdded {
        service: s.service.name(),
        peer: s.source,
        threshold: s.threshold,
        interface: interface.to_string(),
        reason,
    });
}

/// `%ASA-4-401003: Shun deleted: IP`.
pub fn syslog_401003(ip: IpAddr) {
    crate::syslog::emit(crate::syslog::Message::ShunDeleted { ip });
}

/// `%ASA-6-113006`.
pub fn syslog_113006(user: &str, max_fail: u32) {
    crate::syslog::emit(crate::syslog::Message::UserLockedOut {
        user: user.to_string(),
        max_fail,
    });
}

/// `%ASA-6-113007`.
pub fn syslog_113007(user: &str) {
    crate::syslog::emit(crate::syslog::Message::UserUnlocked {
        user: user.to_string(),
        admin: ADMIN_NAME.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threats(text: &str) -> Threats {
        Threats::new(
            &crate::config::parse_str(text, "t.cfg").unwrap(),
            admission::SourceLimits::default(),
        )
    }

    #[test]
    fn admin_commands_show_and_clear_shuns() {
        let t = threats(
            "threat-detection service remote-access-authentication hold-down 10 threshold 2\n",
        );
        let src: IpAddr = "198.18.0.2".parse().unwrap();
        assert!(!t.is_shunned(src));
        t.record(ThreatEvent::AuthenticationFailed, src);
        let entries = t
            .admin(&[
                "show",
                "threat-detection",
                "service",
                "remote-access-authentication",
                "entries",
            ])
            .unwrap();
        assert!(entries.contains("198.18.0.2"), "{entries}");
        assert!(entries.contains("Total entries: 1"), "{entries}");
        t.record(ThreatEvent::AuthenticationFailed, src);
        assert!(t.is_shunned(src));
        assert_eq!(
            t.admin(&["show", "shun"]).unwrap(),
            "shun (outside) 198.18.0.2 0.0.0.0 0 0 0\n"
        );
        let all = t.admin(&["show", "threat-detection", "service"]).unwrap();
        assert!(
            all.contains("Service: invalid-vpn-access\n    State       : Disabled"),
            "{all}"
        );
        assert!(all.contains("blocking        :          1"), "{all}");
        assert_eq!(
            t.admin(&["no", "shun", "198.18.0.9"]).unwrap(),
            "ERROR: Shun not found for 198.18.0.9\n"
        );
        assert_eq!(t.admin(&["no", "shun", "198.18.0.2"]).unwrap(), "");
        assert!(!t.is_shunned(src));
        assert_eq!(t.admin(&["show", "shun"]).unwrap(), "");
        t.record(ThreatEvent::AuthenticationFailed, src);
        t.record(ThreatEvent::AuthenticationFailed, src);
        assert!(t.is_shunned(src));
        assert_eq!(t.admin(&["clear", "shun"]).unwrap(), "");
        assert!(!t.is_shunned(src));
        assert!(
            t.admin(&["show", "threat-detection", "service", "nope"])
                .unwrap()
                .starts_with("ERROR")
        );
        assert_eq!(t.admin(&["show", "vpn-sessiondb"]), None);
    }

    #[test]
    fn admin_commands_for_local_lockout() {
        let t = threats(
            "aaa local authentication attempts max-fail 2\n\
             username alice password a\nusername root password r privilege 15\n",
        );
        t.local_login_failed("alice");
        assert!(!t.local_user_locked("alice"));
        t.local_login_failed("alice");
        assert!(t.local_user_locked("alice"));
        let all = t.admin(&["show", "aaa", "local", "user"]).unwrap();
        assert_eq!(
            all,
            "Lock-time Failed-attempts Locked  User\n\
             \x20       -               2      Y  alice\n\
             \x20       -               0      N  root\n"
        );
        let locked = t
            .admin(&["show", "aaa", "local", "user", "locked"])
            .unwrap();
        assert!(
            locked.contains("alice") && !locked.contains("root"),
            "{locked}"
        );
        t.admin(&[
            "clear", "aaa", "local", "user", "lockout", "username", "alice",
        ]);
        assert!(!t.local_user_locked("alice"));
        t.local_login_failed("alice");
        t.local_login_failed("alice");
        t.admin(&["clear", "aaa", "local", "user", "lockout", "all"]);
        assert!(!t.local_user_locked("alice"));
    }
}

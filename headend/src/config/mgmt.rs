//! Management-plane commands: who may reach the SSH CLI and how, and syslog.
//!
//! ```text
//! ssh 198.18.0.0 255.255.0.0 outside      ! sources allowed, per interface
//! ssh timeout 5                           ! idle minutes, 1-60 (ASA default 5)
//! ssh version 2
//! aaa authentication ssh console LOCAL    ! required for SSH since ASA 9.16
//! username admin password P privilege 15
//! enable password P
//! logging enable
//! logging timestamp
//! logging device-id hostname
//! logging trap informational
//! logging buffered debugging
//! logging host outside 198.18.1.50 [udp/514|tcp/1470] [format emblem]
//! no logging hide username
//! ```
//! Syntax after the ASA command reference (`ssh`, `logging host`, `enable password`)
//! and `shared/docs/asa-syntax.md` section 7.

use std::net::Ipv4Addr;

/// One `ssh IP MASK IFNAME` line: sources allowed to open the SSH CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAccess {
    pub network: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub interface: String,
    pub line: usize,
}

impl SshAccess {
    pub fn permits(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.mask);
        u32::from(ip) & m == u32::from(self.network) & m
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTransport {
    Udp,
    Tcp,
}

/// `logging host IF IP [udp/PORT|tcp/PORT] [format emblem]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHost {
    pub interface: String,
    pub address: std::net::IpAddr,
    pub transport: LogTransport,
    pub port: u16,
    pub emblem: bool,
    pub line: usize,
}

/// The `logging` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub enable: bool,
    pub timestamp: bool,
    pub device_id_hostname: bool,
    /// Severity 0-7 sent to the hosts; None = `logging trap` not set (nothing sent).
    pub trap: Option<u8>,
    /// Severity 0-7 kept for `show logging`; None = no buffer.
    pub buffered: Option<u8>,
    pub hosts: Vec<LogHost>,
    /// ASA replaces the user name of failed logins with `*****` unless
    /// `no logging hide username`.
    pub hide_username: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            enable: false,
            timestamp: false,
            device_id_hostname: false,
            trap: None,
            buffered: None,
            hosts: Vec::new(),
            hide_username: true,
        }
    }
}

/// SSH CLI and logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Management {
    pub ssh_access: Vec<SshAccess>,
    /// `aaa authentication ssh console LOCAL`
    pub ssh_auth_local: bool,
    /// `ssh timeout N`, minutes.
    pub ssh_timeout_minutes: u32,
    /// `enable password P` (clear text as configured).
    pub enable_password: Option<String>,
    pub logging: Logging,
}

impl Default for Management {
    fn default() -> Self {
        Self {
            ssh_access: Vec::new(),
            ssh_auth_local: false,
            ssh_timeout_minutes: 5,
            enable_password: None,
            logging: Logging::default(),
        }
    }
}

/// ASA severity keywords (and numbers) to 0-7.
pub fn parse_level(s: &str) -> Option<u8> {
    let names = [
        "emergencies",
        "alerts",
        "critical",
        "errors",
        "warnings",
        "notifications",
        "informational",
        "debugging",
    ];
    if let Ok(n) = s.parse::<u8>() {
        return (n <= 7).then_some(n);
    }
    names.iter().position(|n| *n == s).map(|i| i as u8)
}

fn v4(s: &str, what: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an IPv4 {what}"))
}

/// Handles one top-level line if it is a management command: `None` when it is
/// not one of ours, `Some(Err)` for a malformed one.
pub fn apply(m: &mut Management, toks: &[&str], line: usize) -> Option<Result<(), String>> {
    let r = match toks {
        ["ssh", "timeout", n] => match n.parse::<u32>() {
            Ok(v @ 1..=60) => {
                m.ssh_timeout_minutes = v;
                Ok(())
            }
            _ => Err(format!("`ssh timeout {n}`: expected 1-60 minutes")),
        },
        ["ssh", "version", "2"] => Ok(()),
        ["ssh", "version", v] => Err(format!(
            "`ssh version {v}`: only SSH version 2 is supported"
        )),
        [
            "ssh",
            "key-exchange" | "cipher" | "stricthostkeycheck" | "scopy",
            ..,
        ] => return None,
        ["ssh", ip, mask, ifname] => (|| {
            let network = v4(ip, "address")?;
            let mask = v4(mask, "mask")?;
            if u32::from(mask).leading_ones() + u32::from(mask).trailing_zeros() != 32 {
                return Err(format!("`{mask}` is not a contiguous netmask"));
            }
            m.ssh_access.push(SshAccess {
                network,
                mask,
                interface: (*ifname).to_string(),
                line,
            });
            Ok(())
        })(),
        ["ssh", ..] => {
            Err("expected `ssh IP MASK INTERFACE`, `ssh timeout N` or `ssh version 2`".into())
        }
        ["aaa", "authentication", "ssh", "console", "LOCAL"] => {
            m.ssh_auth_local = true;
            Ok(())
        }
        ["aaa", "authentication", "ssh", "console", g] => Err(format!(
            "`aaa authentication ssh console {g}`: only LOCAL is supported"
        )),
        ["enable", "password", p, rest @ ..] => {
            if p.chars().all(|c| c == '*')
                || rest.iter().any(|w| matches!(*w, "pbkdf2" | "encrypted"))
            {
                // A masked (`*****`, as `show running-config` prints it) or hashed
                // one cannot be checked: left to the unknown-command warning, and
                // `enable` stays refused. Pasted running-configs carry it, so it
                // must not stop the config from loading.
                return None;
            } else {
                m.enable_password = Some((*p).to_string());
                Ok(())
            }
        }
        ["logging", rest @ ..] => logging(&mut m.logging, rest, line),
        ["no", "logging", "hide", "username"] => {
            m.logging.hide_username = false;
            Ok(())
        }
        ["no", "logging", "enable"] => {
            m.logging.enable = false;
            Ok(())
        }
        _ => return None,
    };
    Some(r)
}

fn logging(l: &mut Logging, toks: &[&str], line: usize) -> Result<(), String> {
    let level = |s: &str| {
        parse_level(s)
            .ok_or_else(|| format!("`{s}` is not a logging level (0-7 or emergencies..debugging)"))
    };
    match toks {
        ["enable"] => l.enable = true,
        ["timestamp", ..] => l.timestamp = true,
        ["device-id", "hostname"] => l.device_id_hostname = true,
        ["trap", lv] => l.trap = Some(level(lv)?),
        ["buffered", lv] => l.buffered = Some(level(lv)?),
        ["hide", "username"] => l.hide_username = true,
        ["host", ifname, ip, rest @ ..] => {
            let address = ip
                .parse()
                .map_err(|_| format!("`{ip}` is not an IP address"))?;
            let (mut transport, mut port, mut emblem) = (LogTransport::Udp, 514u16, false);
            let mut rest = rest;
            loop {
                rest = match rest {
                    [] => break,
                    [proto, tail @ ..] if proto.starts_with("udp") || proto.starts_with("tcp") => {
                        let (p, n) = proto.split_once('/').unwrap_or((proto, ""));
                        transport = if p == "tcp" {
                            LogTransport::Tcp
                        } else {
                            LogTransport::Udp
                        };
                        port = match (n, transport) {
                            // ASA's defaults: UDP 514, TCP 1470.
                            ("", LogTransport::Udp) => 514,
                            ("", LogTransport::Tcp) => 1470,
                            (n, _) => n
                                .parse::<u16>()
                                .ok()
                                .filter(|p| *p > 0)
                                .ok_or_else(|| format!("`{proto}`: bad port"))?,
                        };
                        tail
                    }
                    ["format", "emblem", tail @ ..] => {
                        emblem = true;
                        tail
                    }
                    ["permit-hostdown" | "secure", tail @ ..] => tail,
                    [other, ..] => {
                        return Err(format!(
                            "unexpected `{other}` in `logging host`: expected udp/PORT, tcp/PORT or format emblem"
                        ));
                    }
                };
            }
            l.hosts.push(LogHost {
                interface: (*ifname).to_string(),
                address,
                transport,
                port,
                emblem,
                line,
            });
        }
        _ => {
            return Err(format!(
                "unsupported `logging {}`: expected enable, timestamp, device-id hostname, trap LEVEL, buffered LEVEL or host IF IP",
                toks.join(" ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Result<Management, String> {
        let mut m = Management::default();
        for (i, l) in lines.iter().enumerate() {
            let toks: Vec<&str> = l.split_whitespace().collect();
            apply(&mut m, &toks, i + 1).unwrap_or_else(|| panic!("not ours: {l}"))?;
        }
        Ok(m)
    }

    #[test]
    fn ssh_and_enable() {
        let m = run(&[
            "ssh 198.18.0.0 255.255.0.0 outside",
            "ssh timeout 10",
            "ssh version 2",
            "aaa authentication ssh console LOCAL",
            "enable password S3cret",
        ])
        .unwrap();
        assert_eq!(m.ssh_access.len(), 1);
        assert!(m.ssh_access[0].permits("198.18.1.2".parse().unwrap()));
        assert!(!m.ssh_access[0].permits("198.20.0.1".parse().unwrap()));
        assert_eq!(m.ssh_timeout_minutes, 10);
        assert!(m.ssh_auth_local);
        assert_eq!(m.enable_password.as_deref(), Some("S3cret"));
        assert!(run(&["ssh version 1"]).is_err());
        assert!(run(&["ssh 198.18.0.0 255.0.255.0 outside"]).is_err());
        assert!(run(&["ssh timeout 0"]).is_err());
        // Masked as `show running-config` prints it: not ours (a warning), enable
        // stays refused.
        assert!(
            apply(
                &mut Management::default(),
                &["enable", "password", "*****", "pbkdf2"],
                1
            )
            .is_none()
        );
        assert!(
            apply(
                &mut Management::default(),
                &["enable", "password", "x", "pbkdf2"],
                1
            )
            .is_none()
        );
        assert!(run(&["aaa authentication ssh console ISE"]).is_err());
    }

    #[test]
    fn logging_lines() {
        let m = run(&[
            "logging enable",
            "logging timestamp",
            "logging device-id hostname",
            "logging trap informational",
            "logging buffered 7",
            "logging host inside 198.18.1.50",
            "logging host inside 198.18.1.51 tcp/1470 format emblem",
            "logging host inside 198.18.1.52 tcp",
            "no logging hide username",
        ])
        .unwrap();
        let l = &m.logging;
        assert!(l.enable && l.timestamp && l.device_id_hostname && !l.hide_username);
        assert_eq!((l.trap, l.buffered), (Some(6), Some(7)));
        assert_eq!(l.hosts[0].transport, LogTransport::Udp);
        assert_eq!(l.hosts[0].port, 514);
        assert_eq!(
            (l.hosts[1].transport, l.hosts[1].port, l.hosts[1].emblem),
            (LogTransport::Tcp, 1470, true)
        );
        assert_eq!(l.hosts[2].port, 1470);
        assert!(run(&["logging trap loud"]).is_err());
        assert!(run(&["logging host inside 198.18.1.50 sctp/9"]).is_err());
        let mut m = Management::default();
        assert!(apply(&mut m, &["hostname", "x"], 1).is_none());
    }
}

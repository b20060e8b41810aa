//! ASA `show` output for the VPN session database and the device, laid out the
//! way ASA 9.x prints it so that the ntc-templates TextFSM templates for
//! `cisco_asa` (`show vpn-sessiondb anyconnect`, `show vpn-sessiondb`,
//! `show version`) parse it, and Cisco's documented samples for
//! `show vpn-sessiondb summary` and `show vpn-sessiondb detail anyconnect`
//! (Cisco doc 115785).
//!
//! Facts the headend has and ASA's brief view lacks (filter name, filter drop
//! counters, session state) are printed only in `detail`, where ASA shows its
//! own extra fields: a template reading the brief view stops at any line it
//! does not know.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::admin::{format_duration, format_login_time};
use crate::sessions::SessionView;

/// Sessions counted since start, for the `Cumulative` and `Peak Concur`
/// columns of `show vpn-sessiondb [summary]`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SessionTotals {
    pub cumulative: u64,
    pub peak: usize,
}

/// What `show vpn-sessiondb summary` counts, also the `--json` form.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SessionSummary {
    pub active: usize,
    pub inactive: usize,
    pub cumulative: u64,
    pub peak_concurrent: usize,
    pub ssl_tunnels: usize,
    pub dtls_tunnels: usize,
    pub capacity: usize,
}

impl SessionSummary {
    pub fn of(sessions: &[SessionView], totals: SessionTotals, capacity: usize) -> Self {
        // ASA counts a session whose tunnels are down (the client may resume it
        // with its cookie) as inactive.
        let inactive = sessions
            .iter()
            .filter(|s| s.state == "Disconnected")
            .count();
        let has = |t: &str| sessions.iter().filter(|s| s.protocol.contains(t)).count();
        Self {
            active: sessions.len() - inactive,
            inactive,
            cumulative: totals.cumulative,
            peak_concurrent: totals.peak.max(sessions.len()),
            ssl_tunnels: has("SSL-Tunnel"),
            dtls_tunnels: has("DTLS-Tunnel"),
            capacity,
        }
    }

    fn load_percent(&self) -> usize {
        (self.active + self.inactive) * 100 / self.capacity.max(1)
    }
}

/// `show vpn-sessiondb summary` (the genieparser / Cisco sample layout).
pub fn summary(s: &SessionSummary) -> String {
    let mut out = String::new();
    out.push_str("---------------------------------------------------------------------------\n");
    out.push_str("VPN Session Summary\n");
    out.push_str("---------------------------------------------------------------------------\n");
    session_rows(&mut out, s);
    let _ = writeln!(
        out,
        "Total Active and Inactive    : {:>6}             Total Cumulative : {:>6}",
        s.active + s.inactive,
        s.cumulative
    );
    let _ = writeln!(out, "Device Total VPN Capacity    : {:>6}", s.capacity);
    let _ = writeln!(
        out,
        "Device Load                  : {:>5}%",
        s.load_percent()
    );
    out.push_str("---------------------------------------------------------------------------\n");
    out
}

fn session_rows(out: &mut String, s: &SessionSummary) {
    out.push_str("                               Active : Cumulative : Peak Concur : Inactive\n");
    out.push_str("                             ----------------------------------------------\n");
    for name in ["AnyConnect Client", "  SSL/TLS/DTLS"] {
        let _ = writeln!(
            out,
            "{name:<29}: {:>6} : {:>10} : {:>11} : {:>8}",
            s.active, s.cumulative, s.peak_concurrent, s.inactive
        );
    }
}

/// Plain `show vpn-sessiondb`: the summary plus ASA's "Tunnels Summary".
/// Tunnel cumulative and peak figures are not kept per tunnel type; the
/// headend shows the session figures for the parent and the current count for
/// the others, which is all it knows.
pub fn sessiondb(s: &SessionSummary) -> String {
    let mut out = summary(s);
    out.push('\n');
    out.push_str("---------------------------------------------------------------------------\n");
    out.push_str("Tunnels Summary\n");
    out.push_str("---------------------------------------------------------------------------\n");
    out.push_str("                               Active : Cumulative : Peak Concurrent\n");
    out.push_str("                             ----------------------------------------------\n");
    let parent = s.active + s.inactive;
    let rows = [
        ("AnyConnect-Parent", parent, s.cumulative, s.peak_concurrent),
        (
            "SSL-Tunnel",
            s.ssl_tunnels,
            s.ssl_tunnels as u64,
            s.ssl_tunnels,
        ),
        (
            "DTLS-Tunnel",
            s.dtls_tunnels,
            s.dtls_tunnels as u64,
            s.dtls_tunnels,
        ),
    ];
    let (mut active, mut cumulative) = (0, 0);
    for (name, a, c, p) in rows {
        let _ = writeln!(out, "{name:<29}: {a:>6} : {c:>10} : {p:>15}");
        active += a;
        cumulative += c;
    }
    out.push_str("---------------------------------------------------------------------------\n");
    let _ = writeln!(out, "{:<29}: {active:>6} : {cumulative:>10}", "Totals");
    out.push_str("---------------------------------------------------------------------------\n");
    out
}

fn pair(k1: &str, v1: &str, k2: &str, v2: &str) -> String {
    format!("{k1:<13}: {v1:<24} {k2:<13}: {v2}\n")
}

fn single(k: &str, v: &str) -> String {
    format!("{k:<13}: {v}\n")
}

/// ASA lists a parent, an SSL and (when up) a DTLS tunnel in `Protocol`;
/// `Encryption` and `Hashing` name one algorithm per tunnel in that order.
/// The TLS suite is recorded per CSTP connection, the DTLS suite when DTLS
/// comes up (`hashing` picks the column); one not (yet) known reads `unknown`.
fn per_tunnel(s: &SessionView, hashing: bool) -> String {
    let pick = |(enc, hash): (&'static str, &'static str)| if hashing { hash } else { enc };
    s.protocol
        .split_whitespace()
        .map(|t| {
            let alg = match (t, s.dtls_cipher, s.tls_cipher) {
                ("AnyConnect-Parent", _, _) => "none",
                ("DTLS-Tunnel", Some(c), _) => pick(crate::proto::dtls_resume::asa_algorithms(c)),
                ("SSL-Tunnel", _, Some(c)) => pick(tls_algorithms(c)),
                _ => "unknown",
            };
            format!("{t}: (1){alg}")
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// ASA's names for a rustls (IANA-named) suite: `TLS13_AES_256_GCM_SHA384`
/// and `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384` are both AES-GCM-256 / SHA384.
fn tls_algorithms(iana: &str) -> (&'static str, &'static str) {
    let openssl_like = iana
        .replace("AES_256_GCM", "AES256-GCM")
        .replace("AES_128_GCM", "AES128-GCM");
    crate::proto::dtls_resume::asa_algorithms(&openssl_like)
}

fn assigned_v4(s: &SessionView) -> String {
    // ASA prints 0.0.0.0 when a session holds no IPv4 address.
    s.assigned_v4
        .map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string())
}

fn sgt(s: &SessionView) -> String {
    s.sgt.map_or_else(|| "none".to_string(), |t| t.to_string())
}

/// The lines both views share, `Username` to `Duration`.
fn head(out: &mut String, s: &SessionView, detail: bool) {
    out.push_str(&pair(
        "Username",
        &s.username,
        "Index",
        &s.index.to_string(),
    ));
    out.push_str(&pair(
        "Assigned IP",
        &assigned_v4(s),
        "Public IP",
        &s.public_ip.to_string(),
    ));
    if let Some(a) = s.assigned_v6 {
        out.push_str(&single("Assigned IPv6", &a.to_string()));
    }
    out.push_str(&single("Protocol", s.protocol));
    out.push_str(&single("License", "AnyConnect Premium"));
    out.push_str(&single("Encryption", &per_tunnel(s, false)));
    out.push_str(&single("Hashing", &per_tunnel(s, true)));
    out.push_str(&pair(
        "Bytes Tx",
        &s.bytes_tx.to_string(),
        "Bytes Rx",
        &s.bytes_rx.to_string(),
    ));
    if detail {
        out.push_str(&pair(
            "Pkts Tx Drop",
            &s.pkts_tx_drop.to_string(),
            "Pkts Rx Drop",
            &s.pkts_rx_drop.to_string(),
        ));
    }
    out.push_str(&pair(
        "Group Policy",
        &s.group_policy,
        "Tunnel Group",
        &s.tunnel_group,
    ));
    out.push_str(&single("Login Time", &format_login_time(s.login_time)));
    out.push_str(&single("Duration", &format_duration(s.duration)));
    // Traffic is not timed per session; ASA shows 0 for an active session.
    out.push_str(&single("Inactivity", &format_duration(Duration::ZERO)));
}

/// `show vpn-sessiondb anyconnect`, field for field as ASA 9.x prints it
/// (ntc-templates `cisco_asa_show_vpn-sessiondb_anyconnect`).
pub fn anyconnect(sessions: &[SessionView]) -> String {
    if sessions.is_empty() {
        return "INFO: There are presently no active sessions\n".to_string();
    }
    let mut out = String::from("\nSession Type: AnyConnect\n");
    for s in sessions {
        out.push('\n');
        head(&mut out, s, false);
        out.push_str(&pair("VLAN Mapping", "N/A", "VLAN", "none"));
        out.push_str(&single("Audt Sess ID", &s.audit_session_id));
        out.push_str(&single("Security Grp", &sgt(s)));
    }
    out
}

/// `show vpn-sessiondb detail anyconnect` after Cisco doc 115785: the session
/// block (with packet drop counters), then the per-tunnel sections. The
/// headend's extras (`Filter Name`, `Status`) follow `Security Grp`.
pub fn detail_anyconnect(sessions: &[SessionView]) -> String {
    if sessions.is_empty() {
        return "INFO: There are presently no active sessions\n".to_string();
    }
    let mut out = String::from("\nSession Type: AnyConnect Detailed\n");
    for s in sessions {
        out.push('\n');
        head(&mut out, s, true);
        out.push_str(&single("NAC Result", "Unknown"));
        out.push_str(&pair("VLAN Mapping", "N/A", "VLAN", "none"));
        out.push_str(&single("Audt Sess ID", &s.audit_session_id));
        out.push_str(&single("Security Grp", &sgt(s)));
        out.push_str(&single(
            "Filter Name",
            s.filter.as_deref().unwrap_or("none"),
        ));
        out.push_str(&single("Status", s.state));
        out.push('\n');
        let tunnels: Vec<&str> = s.protocol.split_whitespace().collect();
        for t in &tunnels {
            let _ = writeln!(out, "{t} Tunnels: 1");
        }
        for (i, t) in tunnels.iter().enumerate() {
            let _ = writeln!(out, "\n{t}:");
            let mut sec = single("Tunnel ID", &format!("{}.{}", s.index, i + 1));
            if *t == "AnyConnect-Parent" {
                sec.push_str(&single("Public IP", &s.public_ip.to_string()));
            } else {
                sec.push_str(&pair(
                    "Assigned IP",
                    &assigned_v4(s),
                    "Public IP",
                    &s.public_ip.to_string(),
                ));
                let encapsulation = if *t == "DTLS-Tunnel" {
                    "DTLSv1.2"
                } else {
                    "TLS"
                };
                sec.push_str(&single("Encapsulation", encapsulation));
            }
            sec.push_str(&single("Client Type", "AnyConnect"));
            for line in sec.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Marks the headend's start, for `show version`'s uptime (first call wins).
pub fn mark_started() {
    let _ = STARTED.get_or_init(SystemTime::now);
}

/// `2 days 3 hours`, `5 mins 12 secs`: ASA's uptime wording.
pub fn format_uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    let unit = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if days > 0 {
        format!(
            "{} {}",
            unit(days, "day", "days"),
            unit(hours, "hour", "hours")
        )
    } else if hours > 0 {
        format!(
            "{} {}",
            unit(hours, "hour", "hours"),
            unit(mins, "min", "mins")
        )
    } else {
        format!(
            "{} {}",
            unit(mins, "min", "mins"),
            unit(secs, "sec", "secs")
        )
    }
}

/// `show version` in ASA's layout (ntc-templates `cisco_asa_show_version`);
/// the software is this headend, so version, image and hardware say so.
pub fn version(hostname: &str) -> String {
    let up = STARTED
        .get()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    let v = env!("CARGO_PKG_VERSION");
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Cisco Adaptive Security Appliance Software Version {v} (headend)"
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "System image file is \"headend\"");
    let _ = writeln!(out, "Config file at boot was \"startup-config\"");
    let _ = writeln!(out);
    let _ = writeln!(out, "{hostname} up {}", format_uptime(up));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Hardware:   headend, userspace AnyConnect-compatible headend"
    );
    let _ = writeln!(out, "Model Id:   headend");
    let _ = writeln!(out);
    let _ = writeln!(out, "Serial Number: HEADEND");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    pub(crate) fn view() -> SessionView {
        SessionView {
            index: 7,
            username: "alice".into(),
            tunnel_group: "LOCAL-PW".into(),
            group_policy: "GP-EMPLOYEES".into(),
            public_ip: "198.18.0.2".parse().unwrap(),
            assigned_v4: Some("198.18.100.10".parse().unwrap()),
            assigned_v6: None,
            bytes_tx: 100,
            bytes_rx: 200,
            login_time: UNIX_EPOCH + Duration::from_secs(1_795_422_600),
            duration: Duration::from_secs(65),
            state: "Connected",
            protocol: "AnyConnect-Parent SSL-Tunnel",
            sgt: Some(10),
            filter: Some("VPN-FILTER".into()),
            audit_session_id: "c612000100000001694a2b3c".into(),
            pkts_tx_drop: 3,
            pkts_rx_drop: 12,
            dtls_cipher: None,
            tls_cipher: None,
        }
    }

    #[test]
    fn dtls_suite_shows_as_asa_names() {
        let mut v = view();
        v.protocol = "AnyConnect-Parent SSL-Tunnel DTLS-Tunnel";
        v.dtls_cipher = Some("ECDHE-RSA-AES256-GCM-SHA384");
        let out = anyconnect(&[v.clone()]);
        assert!(
            out.contains(
                "Encryption   : AnyConnect-Parent: (1)none  SSL-Tunnel: (1)unknown  DTLS-Tunnel: (1)AES-GCM-256\n\
                 Hashing      : AnyConnect-Parent: (1)none  SSL-Tunnel: (1)unknown  DTLS-Tunnel: (1)SHA384\n"
            ),
            "{out}"
        );
        for (tls, enc, hash) in [
            ("TLS13_AES_256_GCM_SHA384", "AES-GCM-256", "SHA384"),
            (
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "AES-GCM-128",
                "SHA256",
            ),
            ("TLS13_AES_128_GCM_SHA256", "AES-GCM-128", "SHA256"),
        ] {
            v.tls_cipher = Some(tls);
            let out = anyconnect(&[v.clone()]);
            assert!(
                out.contains(&format!(
                    "Encryption   : AnyConnect-Parent: (1)none  SSL-Tunnel: (1){enc}  DTLS-Tunnel: (1)AES-GCM-256\n\
                     Hashing      : AnyConnect-Parent: (1)none  SSL-Tunnel: (1){hash}  DTLS-Tunnel: (1)SHA384\n"
                )),
                "{tls}: {out}"
            );
        }
    }

    #[test]
    fn anyconnect_is_asa_layout_without_extras() {
        let out = anyconnect(&[view()]);
        let want = "
Session Type: AnyConnect

Username     : alice                    Index        : 7
Assigned IP  : 198.18.100.10            Public IP    : 198.18.0.2
Protocol     : AnyConnect-Parent SSL-Tunnel
License      : AnyConnect Premium
Encryption   : AnyConnect-Parent: (1)none  SSL-Tunnel: (1)unknown
Hashing      : AnyConnect-Parent: (1)none  SSL-Tunnel: (1)unknown
Bytes Tx     : 100                      Bytes Rx     : 200
Group Policy : GP-EMPLOYEES             Tunnel Group : LOCAL-PW
Login Time   : 08:30:00 UTC Mon Nov 23 2026
Duration     : 0h:01m:05s
Inactivity   : 0h:00m:00s
VLAN Mapping : N/A                      VLAN         : none
Audt Sess ID : c612000100000001694a2b3c
Security Grp : 10
";
        assert_eq!(out, want);
    }

    #[test]
    fn ipv6_and_no_ipv4() {
        let mut v = view();
        v.assigned_v4 = None;
        v.assigned_v6 = Some("fd00:100::10".parse().unwrap());
        let out = anyconnect(&[v]);
        assert!(
            out.contains(
                "Assigned IP  : 0.0.0.0                  Public IP    : 198.18.0.2\n\
                 Assigned IPv6: fd00:100::10\nProtocol"
            ),
            "{out}"
        );
    }

    #[test]
    fn detail_has_the_extras_and_tunnels() {
        let mut v = view();
        v.protocol = "AnyConnect-Parent SSL-Tunnel DTLS-Tunnel";
        let out = detail_anyconnect(&[v]);
        assert!(
            out.starts_with("\nSession Type: AnyConnect Detailed\n"),
            "{out}"
        );
        for want in [
            "Pkts Tx Drop : 3                        Pkts Rx Drop : 12\n",
            "Security Grp : 10\nFilter Name  : VPN-FILTER\nStatus       : Connected\n",
            "AnyConnect-Parent Tunnels: 1\nSSL-Tunnel Tunnels: 1\nDTLS-Tunnel Tunnels: 1\n",
            "\nDTLS-Tunnel:\n  Tunnel ID    : 7.3\n",
            "  Encapsulation: DTLSv1.2\n",
        ] {
            assert!(out.contains(want), "{want:?} not in\n{out}");
        }
    }

    #[test]
    fn summary_counts_active_inactive_and_peak() {
        let mut gone = view();
        gone.state = "Disconnected";
        gone.protocol = "AnyConnect-Parent";
        let mut dtls = view();
        dtls.protocol = "AnyConnect-Parent SSL-Tunnel DTLS-Tunnel";
        let s = SessionSummary::of(
            &[view(), dtls, gone],
            SessionTotals {
                cumulative: 9,
                peak: 4,
            },
            100,
        );
        assert_eq!(
            (s.active, s.inactive, s.ssl_tunnels, s.dtls_tunnels),
            (2, 1, 2, 1)
        );
        let out = summary(&s);
        assert!(
            out.contains(
                "AnyConnect Client            :      2 :          9 :           4 :        1\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "Total Active and Inactive    :      3             Total Cumulative :      9\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("Device Load                  :     3%\n"),
            "{out}"
        );
        let full = sessiondb(&s);
        assert!(
            full.contains("DTLS-Tunnel                  :      1 :          1 :               1\n"),
            "{full}"
        );
        assert!(
            full.contains("Totals                       :      6 :         12\n"),
            "{full}"
        );
    }

    #[test]
    fn uptime_words() {
        assert_eq!(format_uptime(Duration::from_secs(65)), "1 min 5 secs");
        assert_eq!(format_uptime(Duration::from_secs(7260)), "2 hours 1 min");
        assert_eq!(format_uptime(Duration::from_secs(90_000)), "1 day 1 hour");
        assert!(version("vpn1").contains("\nvpn1 up 0 mins 0 secs\n"));
    }
}

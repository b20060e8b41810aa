//! Global hardening commands (asa-syntax.md section 4, "Threat detection" and
//! "Local lockout"):
//!
//! ```text
//! threat-detection service remote-access-authentication hold-down MIN threshold N
//! threat-detection service remote-access-client-initiations hold-down MIN threshold N
//! threat-detection service invalid-vpn-access
//! aaa local authentication attempts max-fail N
//! ```
//!
//! All are off by default, as on ASA 9.20. Other `threat-detection` forms
//! (`basic-threat`, `statistics`, `scanning-threat`) are not served: the parser
//! reports them as unknown and ignores them.

use super::model::Config;

/// The ASA ranges (ASA 9.20 command reference, `threat-detection service`):
/// hold-down 1..=1440 minutes, threshold 1..=100 attempts.
pub const HOLD_DOWN_MINUTES: (u32, u32) = (1, 1440);
pub const THRESHOLD: (u32, u32) = (1, 100);
/// `aaa local authentication attempts max-fail` takes 1..=16 on ASA.
pub const MAX_FAIL: (u32, u32) = (1, 16);

/// A counted threat-detection service: `hold-down MIN threshold N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimit {
    pub hold_down_minutes: u32,
    pub threshold: u32,
    pub line: usize,
}

/// `threat-detection service ...` (global config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreatDetection {
    /// `remote-access-authentication`: failed logins per source.
    pub authentication: Option<ServiceLimit>,
    /// `remote-access-client-initiations`: login starts that never complete.
    pub client_initiations: Option<ServiceLimit>,
    /// `invalid-vpn-access`: a login to a tunnel group that does not exist or
    /// is disabled shuns the source at once (ASA has no threshold here).
    pub invalid_vpn_access: bool,
}

impl ThreatDetection {
    pub fn any_enabled(&self) -> bool {
        self.authentication.is_some()
            || self.client_initiations.is_some()
            || self.invalid_vpn_access
    }
}

/// Parses one top-level `threat-detection ...` or `aaa local authentication ...`
/// line into `cfg`. `Ok(false)`: a form the headend does not serve (the caller
/// warns and ignores it); `Err`: a served form with bad arguments.
pub(super) fn parse_command(cfg: &mut Config, toks: &[&str], line: usize) -> Result<bool, String> {
    match toks {
        ["threat-detection", "service", "invalid-vpn-access"] => {
            cfg.threat_detection.invalid_vpn_access = true;
            Ok(true)
        }
        [
            "threat-detection",
            "service",
            svc @ ("remote-access-authentication" | "remote-access-client-initiations"),
            rest @ ..,
        ] => {
            let limit = match rest {
                ["hold-down", m, "threshold", n] | ["threshold", n, "hold-down", m] => {
                    ServiceLimit {
                        hold_down_minutes: number(m, "hold-down minutes", HOLD_DOWN_MINUTES)?,
                        threshold: number(n, "threshold", THRESHOLD)?,
                        line,
                    }
                }
                _ => {
                    return Err(format!(
                        "expected `threat-detection service {svc} hold-down MINUTES threshold COUNT`"
                    ));
                }
            };
            if *svc == "remote-access-authentication" {
                cfg.threat_detection.authentication = Some(limit);
            } else {
                cfg.threat_detection.client_initiations = Some(limit);
            }
            Ok(true)
        }
        ["threat-detection", "service", other, ..] => Err(format!(
            "unknown threat-detection service `{other}`: expected remote-access-authentication, \
             remote-access-client-initiations or invalid-vpn-access"
        )),
        ["aaa", "local", "authentication", "attempts", "max-fail", n] => {
            cfg.aaa_local_max_fail = Some(number(n, "max-fail attempts", MAX_FAIL)?);
            Ok(true)
        }
        ["aaa", "local", "authentication", ..] => {
            Err("expected `aaa local authentication attempts max-fail N`".into())
        }
        _ => Ok(false),
    }
}

fn number(s: &str, what: &str, (lo, hi): (u32, u32)) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("invalid {what} `{s}`: expected {lo}..={hi}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ServiceLimit, parse_str};

    #[test]
    fn services_parse_and_default_off() {
        let cfg = parse_str("hostname x\n", "t.cfg").unwrap();
        assert!(!cfg.threat_detection.any_enabled());
        assert_eq!(cfg.aaa_local_max_fail, None);
        let cfg = parse_str(
            "threat-detection service invalid-vpn-access\n\
             threat-detection service remote-access-client-initiations hold-down 10 threshold 20\n\
             threat-detection service remote-access-authentication hold-down 5 threshold 3\n\
             aaa local authentication attempts max-fail 4\n",
            "t.cfg",
        )
        .unwrap();
        let td = &cfg.threat_detection;
        assert!(td.invalid_vpn_access);
        assert_eq!(
            td.client_initiations,
            Some(ServiceLimit {
                hold_down_minutes: 10,
                threshold: 20,
                line: 2
            })
        );
        assert_eq!(
            td.authentication
                .map(|l| (l.hold_down_minutes, l.threshold, l.line)),
            Some((5, 3, 3))
        );
        assert_eq!(cfg.aaa_local_max_fail, Some(4));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn bad_arguments_are_errors_with_the_line() {
        for (text, msg) in [
            (
                "threat-detection service remote-access-authentication hold-down 0 threshold 3",
                "hold-down",
            ),
            (
                "threat-detection service remote-access-authentication hold-down 10 threshold 101",
                "threshold",
            ),
            (
                "threat-detection service remote-access-authentication threshold 3",
                "expected",
            ),
            (
                "threat-detection service scanning",
                "unknown threat-detection service",
            ),
            ("aaa local authentication attempts max-fail 17", "max-fail"),
            ("aaa local authentication attempts", "expected"),
        ] {
            let e = parse_str(&format!("hostname x\n{text}\n"), "t.cfg").unwrap_err();
            assert_eq!(e.line, 2, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn other_threat_detection_forms_are_warned_and_ignored() {
        let cfg = parse_str(
            "threat-detection basic-threat\nthreat-detection statistics access-list\n",
            "t.cfg",
        )
        .unwrap();
        assert_eq!(cfg.warnings.len(), 2);
        assert!(!cfg.threat_detection.any_enabled());
    }
}

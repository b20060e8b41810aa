//! Client settings an ASA group-policy pushes in the CSTP CONNECT reply
//! (asa-syntax.md section 3):
//!
//! ```text
//! group-policy NAME attributes
//!  split-dns value example.com example.info     ! or: split-dns none
//!  split-tunnel-all-dns enable|disable
//!  client-bypass-protocol enable|disable
//!  webvpn
//!   anyconnect ssl rekey time MINUTES|none
//!   anyconnect ssl rekey method new-tunnel|ssl|none
//!   anyconnect dtls-resume enable|disable|always   ! headend extension
//! ```
//!
//! Each attribute inherits from DfltGrpPolicy like the others (`None` = not
//! set here). [`Config::client_settings`] resolves them and
//! [`EffectiveClientSettings::push_headers`] renders the reply headers.

use super::DEFAULT_GROUP_POLICY;
use super::model::Config;
pub use crate::proto::dtls_resume::ResumePolicy;

/// ASA's range for `anyconnect ssl rekey time` (minutes; ASA 9.x command
/// reference: 4 to 10080, i.e. one week).
pub const REKEY_MINUTES: (u32, u32) = (4, 10080);

/// `anyconnect ssl rekey method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RekeyMethod {
    /// ASA's default: no rekey.
    #[default]
    None,
    /// The client opens a new tunnel (a CSTP reconnect with the same cookie).
    NewTunnel,
    /// Configured as `ssl`: a TLS renegotiation on ASA. rustls cannot
    /// renegotiate (and TLS 1.3 has no renegotiation at all), so the headend
    /// pushes `new-tunnel` instead; the parser warns.
    Ssl,
}

/// The settings as written in one group-policy (`None` = inherit).
/// `split_dns: Some(vec![])` is an explicit `split-dns none`;
/// `rekey_time_min: Some(0)` is `anyconnect ssl rekey time none`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    pub split_dns: Option<Vec<String>>,
    pub split_tunnel_all_dns: Option<bool>,
    pub client_bypass_protocol: Option<bool>,
    pub rekey_time_min: Option<u32>,
    pub rekey_method: Option<RekeyMethod>,
    /// `anyconnect dtls-resume enable|disable|always` (headend extension).
    pub dtls_resume: Option<ResumePolicy>,
}

/// The settings resolved for one session (named policy, then DfltGrpPolicy,
/// then ASA's defaults: everything off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveClientSettings {
    pub split_dns: Vec<String>,
    pub split_tunnel_all_dns: bool,
    pub client_bypass_protocol: bool,
    pub rekey_time_min: Option<u32>,
    pub rekey_method: RekeyMethod,
    pub dtls_resume: ResumePolicy,
}

/// What [`parse`] did with a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not one of these commands.
    NotMine,
    Done,
    /// Accepted, with a warning for the operator.
    Warn(String),
}

/// Parses one line of `group-policy NAME attributes` (`webvpn` false) or of
/// its `webvpn` sub-mode (`webvpn` true; only the `anyconnect` forms live
/// there on ASA). `Err` is the message for a `file:line` error.
pub fn parse(toks: &[&str], webvpn: bool, s: &mut ClientSettings) -> Result<Parsed, String> {
    match toks {
        ["anyconnect", "ssl", "rekey", rest @ ..] => return rekey(rest, s),
        // Not an ASA command (an ASA always resumes): which clients get
        // session-resume DTLS (legacy-dtls.md); `always` behaves like an ASA.
        ["anyconnect", "dtls-resume", v] => {
            s.dtls_resume = Some(match *v {
                "enable" => ResumePolicy::Enable,
                "disable" => ResumePolicy::Disable,
                "always" => ResumePolicy::Always,
                _ => return Err("expected `anyconnect dtls-resume enable|disable|always`".into()),
            })
        }
        ["anyconnect", "dtls-resume", ..] => {
            return Err("expected `anyconnect dtls-resume enable|disable|always`".into());
        }
        _ if webvpn => return Ok(Parsed::NotMine),
        ["split-dns", "none"] => s.split_dns = Some(Vec::new()),
        ["split-dns", "value", domains @ ..] if !domains.is_empty() => {
            let mut v: Vec<String> = Vec::new();
            for d in domains {
                if !valid_domain(d) {
                    return Err(format!("bad split-dns domain `{d}`"));
                }
                // ASA allows a repeated `split-dns value` line to replace the
                // list; within one line a repeat is harmless, keep it once.
                if !v.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                    v.push((*d).to_string());
                }
            }
            s.split_dns = Some(v);
        }
        ["split-dns", ..] => {
            return Err("expected `split-dns value DOMAIN [DOMAIN...]` or `split-dns none`".into());
        }
        ["split-tunnel-all-dns", v] => s.split_tunnel_all_dns = Some(enable(v)?),
        ["client-bypass-protocol", v] => s.client_bypass_protocol = Some(enable(v)?),
        ["split-tunnel-all-dns" | "client-bypass-protocol", ..] => {
            return Err(format!("expected `{} enable|disable`", toks[0]));
        }
        _ => return Ok(Parsed::NotMine),
    }
    Ok(Parsed::Done)
}

fn rekey(rest: &[&str], s: &mut ClientSettings) -> Result<Parsed, String> {
    const USAGE: &str = "expected `anyconnect ssl rekey time MINUTES|none` or `anyconnect ssl rekey method new-tunnel|ssl|none`";
    match rest {
        ["time", "none"] => s.rekey_time_min = Some(0),
        ["time", n] => {
            let (lo, hi) = REKEY_MINUTES;
            match n.parse::<u32>() {
                Ok(m) if (lo..=hi).contains(&m) => s.rekey_time_min = Some(m),
                _ => {
                    return Err(format!(
                        "bad rekey time `{n}` (expected {lo} to {hi} minutes or none)"
                    ));
                }
            }
        }
        ["method", "new-tunnel"] => s.rekey_method = Some(RekeyMethod::NewTunnel),
        ["method", "none"] => s.rekey_method = Some(RekeyMethod::None),
        ["method", "ssl"] => {
            s.rekey_method = Some(RekeyMethod::Ssl);
            return Ok(Parsed::Warn(
                "`anyconnect ssl rekey method ssl` is served as `new-tunnel`: the headend's TLS \
                 stack does not renegotiate"
                    .into(),
            ));
        }
        _ => return Err(USAGE.into()),
    }
    Ok(Parsed::Done)
}

fn enable(v: &str) -> Result<bool, String> {
    match v {
        "enable" => Ok(true),
        "disable" => Ok(false),
        _ => Err(format!("bad value `{v}` (expected enable or disable)")),
    }
}

/// A DNS name as ASA takes it: labels of letters, digits, `-` and `_`, at most
/// 255 characters. Anything else could not go into a header safely anyway.
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 255
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Config {
    /// The pushed client settings of `group_policy_name`, inheriting from
    /// DfltGrpPolicy as on ASA.
    pub fn client_settings(&self, group_policy_name: &str) -> EffectiveClientSettings {
        let named = self
            .group_policies
            .get(group_policy_name)
            .map(|g| &g.client);
        let dflt = self
            .group_policies
            .get(DEFAULT_GROUP_POLICY)
            .map(|g| &g.client);
        macro_rules! pick {
            ($f:ident) => {
                named
                    .and_then(|g| g.$f.as_ref())
                    .or_else(|| dflt.and_then(|g| g.$f.as_ref()))
            };
        }
        EffectiveClientSettings {
            split_dns: pick!(split_dns).cloned().unwrap_or_default(),
            split_tunnel_all_dns: pick!(split_tunnel_all_dns).copied().unwrap_or(false),
            client_bypass_protocol: pick!(client_bypass_protocol).copied().unwrap_or(false),
            rekey_time_min: pick!(rekey_time_min).copied().filter(|m| *m != 0),
            rekey_method: pick!(rekey_method).copied().unwrap_or_default(),
            dtls_resume: pick!(dtls_resume).copied().unwrap_or_default(),
        }
    }
}

impl EffectiveClientSettings {
    /// The CONNECT reply headers, names as openconnect and ocserv spell them.
    pub fn push_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        // One header per domain, as ocserv sends them; openconnect accumulates
        // repeats into CISCO_SPLIT_DNS (cstp.c), and so does AnyConnect.
        for d in &self.split_dns {
            h.push(("X-CSTP-Split-DNS", d.clone()));
        }
        if self.split_tunnel_all_dns {
            h.push(("X-CSTP-Tunnel-All-DNS", "true".into()));
        }
        // ASA always tells the client; the client enforces it for an address
        // family the session has no address in (drop when false, bypass when
        // true). The headend drops tunnelled packets of such a family anyway
        // (uplink anti-spoofing), which is what "false" asks for.
        h.push((
            "X-CSTP-Client-Bypass-Protocol",
            self.client_bypass_protocol.to_string(),
        ));
        // Only `new-tunnel`: `ssl` would ask openconnect for a TLS renegotiation
        // (and in DTLS a rehandshake that trips its MITM check, legacy-dtls.md
        // section 6). A new tunnel is a CSTP reconnect with the same cookie, so
        // the session and its address survive.
        if let (Some(min), RekeyMethod::NewTunnel | RekeyMethod::Ssl) =
            (self.rekey_time_min, self.rekey_method)
        {
            h.push(("X-CSTP-Rekey-Time", (u64::from(min) * 60).to_string()));
            h.push(("X-CSTP-Rekey-Method", "new-tunnel".into()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn cfg(body: &str) -> Config {
        parse_str(body, "t.cfg").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_and_inherits() {
        let c = cfg(concat!(
            "group-policy DfltGrpPolicy attributes\n",
            " split-dns value corp.example lab.example\n",
            " webvpn\n",
            "  anyconnect ssl rekey time 60\n",
            "group-policy GP internal\n",
            "group-policy GP attributes\n",
            " split-tunnel-all-dns enable\n",
            " client-bypass-protocol enable\n",
            " webvpn\n",
            "  anyconnect ssl rekey method new-tunnel\n",
            "  anyconnect dtls-resume always\n",
            "group-policy NONE internal\n",
            "group-policy NONE attributes\n",
            " split-dns none\n",
            " anyconnect ssl rekey time none\n",
            " anyconnect ssl rekey method new-tunnel\n",
        ));
        let gp = c.client_settings("GP");
        assert_eq!(gp.split_dns, vec!["corp.example", "lab.example"]);
        assert!(gp.split_tunnel_all_dns);
        assert!(gp.client_bypass_protocol);
        assert_eq!(gp.rekey_time_min, Some(60));
        assert_eq!(gp.rekey_method, RekeyMethod::NewTunnel);
        assert_eq!(gp.dtls_resume, ResumePolicy::Always);
        assert_eq!(c.client_settings("NONE").dtls_resume, ResumePolicy::Enable);
        let h = gp.push_headers();
        let lines: Vec<String> = h.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        assert_eq!(
            lines,
            vec![
                "X-CSTP-Split-DNS: corp.example",
                "X-CSTP-Split-DNS: lab.example",
                "X-CSTP-Tunnel-All-DNS: true",
                "X-CSTP-Client-Bypass-Protocol: true",
                "X-CSTP-Rekey-Time: 3600",
                "X-CSTP-Rekey-Method: new-tunnel",
            ]
        );
        // `none` stops inheritance; no rekey time means no rekey headers.
        let none = c.client_settings("NONE");
        assert!(none.split_dns.is_empty());
        assert_eq!(none.rekey_time_min, None);
        let lines: Vec<String> = none
            .push_headers()
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert_eq!(lines, vec!["X-CSTP-Client-Bypass-Protocol: false"]);
        // DfltGrpPolicy has a time but no method: ASA's default method is none.
        let d = c.client_settings("DfltGrpPolicy");
        assert_eq!(d.rekey_method, RekeyMethod::None);
        assert!(!d.push_headers().iter().any(|(k, _)| k.contains("Rekey")));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn ssl_method_is_pushed_as_new_tunnel_with_a_warning() {
        let c = cfg(concat!(
            "group-policy GP internal\n",
            "group-policy GP attributes\n",
            " webvpn\n",
            "  anyconnect ssl rekey time 4\n",
            "  anyconnect ssl rekey method ssl\n",
        ));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.warnings[0].line, 5);
        let h = c.client_settings("GP").push_headers();
        assert!(h.contains(&("X-CSTP-Rekey-Time", "240".into())));
        assert!(h.contains(&("X-CSTP-Rekey-Method", "new-tunnel".into())));
        assert!(!h.iter().any(|(_, v)| v == "ssl"));
    }

    #[test]
    fn errors_name_the_line() {
        let gp = |l: &str| format!("group-policy G internal\ngroup-policy G attributes\n{l}\n");
        for (line, want) in [
            (" split-dns value", "expected `split-dns value"),
            (" split-dns value bad\"name", "bad split-dns domain"),
            (" split-dns value a..b", "bad split-dns domain"),
            (" split-tunnel-all-dns yes", "expected enable or disable"),
            (
                " client-bypass-protocol",
                "expected `client-bypass-protocol",
            ),
            (" anyconnect ssl rekey time 3", "bad rekey time `3`"),
            (" anyconnect ssl rekey time 10081", "bad rekey time"),
            (
                " anyconnect ssl rekey method tls",
                "expected `anyconnect ssl rekey",
            ),
        ] {
            let e = parse_str(&gp(line), "t.cfg").expect_err(line);
            assert_eq!(e.line, 3, "{line}: {e}");
            assert!(e.message.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn split_dns_is_attributes_only() {
        // On ASA `split-dns` lives in group-policy attributes, not its webvpn mode.
        let mut s = ClientSettings::default();
        assert_eq!(
            parse(&["split-dns", "value", "a.example"], true, &mut s),
            Ok(Parsed::NotMine)
        );
        assert_eq!(s, ClientSettings::default());
    }
}

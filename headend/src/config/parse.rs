//! Line parser for the ASA CLI subset (`asa-aaa.md` section 1).
//!
//! ASA configs are line based with indentation sub-modes: an indented line belongs
//! to the closest less-indented mode command above it. We keep a stack of
//! `(indent, Mode)` and pop it to the line's parent. Unknown commands become
//! warnings (real running-configs are full of lines the headend does not need);
//! a known command with a bad argument is an error. References between sections
//! are recorded while parsing and checked at the end, so forward references work
//! and every error still points at the referencing line.
//!
//! This file holds the block reader ([`Parser::run`], the only place that knows
//! about indentation) and the two dispatchers: [`Parser::top`] for commands at
//! column 0 and [`Parser::sub`] for lines inside a sub-mode. Each ASA section's
//! commands live in their own file under `parse/`, with their tests:
//!
//! | file              | commands                                                  |
//! |-------------------|-----------------------------------------------------------|
//! | `network.rs`      | `interface`, `ip local pool`, `ipv6 local pool`           |
//! | `crypto.rs`       | `crypto ca trustpoint/authenticate/import/certificate chain` |
//! | `aaa.rs`          | `aaa-server`, `username`                                  |
//! | `webvpn.rs`       | `webvpn`, `saml idp`                                      |
//! | `saml.rs`         | SAML extras of `webvpn` and `tunnel-group webvpn-attributes` |
//! | `group_policy.rs` | `group-policy`                                            |
//! | `tunnel_group.rs` | `tunnel-group`                                            |
//! | `acl.rs`          | `access-list` and its entry grammar                       |
//! | `objects.rs`      | `object`, `object-group`, entries that name them          |
//! | `cts.rs`          | `cts ...`                                                 |
//! | `check.rs`        | cross-reference checks once the file is read              |
//! | `util.rs`         | token, number, address and URL helpers                    |
//!
//! Management, threat-detection and vpn-sessiondb commands are parsed outside this
//! module (`config/mgmt.rs`, `config/threat.rs`, `config/sessiondb.rs`) and called
//! from [`Parser::top`].
//!
//! **Adding a command:** put its handler in a new or the matching file under
//! `parse/` (`impl Parser<'_> { pub(super) fn ... }`), then add ONE match arm in
//! [`Parser::top`] (top-level command) or [`Parser::sub`] (inside a sub-mode; a new
//! sub-mode also needs a [`Mode`] variant and its `label`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use base64::Engine as _;
use openssl::pkcs12::Pkcs12;
use openssl::x509::X509;

use super::model::*;
use super::{ConfigError, DEFAULT_GROUP_POLICY};

mod aaa;
mod acl;
mod check;
mod crypto;
mod cts;
mod group_policy;
mod load_balancing;
mod network;
mod objects;
mod saml;
#[cfg(test)]
mod test_util;
mod tunnel_group;
mod util;
mod webvpn;

use acl::*;
pub(super) use util::normalize_url;
use util::*;

/// Parse a whole configuration. `source` is the file name used in messages.
pub fn parse_str(text: &str, source: &str) -> Result<Config, ConfigError> {
    // An editor may have saved a UTF-8 BOM; it is not part of the first command.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser::new(text, source);
    p.run()?;
    p.resolve_object_aces()?;
    p.check_references()?;
    p.check_load_balancing()?;
    Ok(p.cfg)
}

/// Read and parse a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: source.clone(),
        line: 0,
        message: format!("cannot read configuration: {e}"),
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes
                .get(..good)
                .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
                + 1;
            return Err(ConfigError {
                file: source,
                line,
                message: "not UTF-8 text".into(),
            });
        }
    };
    parse_str(&text, &source)
}

/// A handler failure: at the line being handled, or at another line (blocks).
enum Fail {
    Here(String),
    At(usize, String),
}

impl From<String> for Fail {
    fn from(m: String) -> Self {
        Fail::Here(m)
    }
}

type PResult<T> = Result<T, Fail>;
/// What a command handler returns: the sub-mode it opens, if any.
type Step = PResult<Option<Mode>>;

fn fail<T>(m: impl Into<String>) -> PResult<T> {
    Err(Fail::Here(m.into()))
}

/// The sub-mode an indented line belongs to.
#[derive(Clone, Debug)]
enum Mode {
    /// Children of an unknown or ignored command: skipped without more warnings.
    Unknown,
    Interface(usize),
    Trustpoint(String),
    CertChain(String),
    AaaGroup(String),
    AaaHost(String, usize),
    Webvpn,
    SamlIdp(String),
    GroupPolicy(String),
    GroupPolicyWebvpn(String),
    TunnelGeneral(String),
    TunnelWebvpn(String),
    /// `object ...` / `object-group ...` (the kind is looked up by name).
    Object(String),
    /// `vpn load-balancing`
    LoadBalancing,
}

impl Mode {
    fn label(&self) -> String {
        match self {
            Mode::Unknown => "unknown mode".into(),
            Mode::Interface(_) => "interface".into(),
            Mode::Trustpoint(n) => format!("crypto ca trustpoint {n}"),
            Mode::CertChain(n) => format!("crypto ca certificate chain {n}"),
            Mode::AaaGroup(n) => format!("aaa-server {n} protocol radius"),
            Mode::AaaHost(n, _) => format!("aaa-server {n} host"),
            Mode::Webvpn => "webvpn".into(),
            Mode::SamlIdp(n) => format!("saml idp {n}"),
            Mode::GroupPolicy(n) => format!("group-policy {n} attributes"),
            Mode::GroupPolicyWebvpn(n) => format!("group-policy {n} attributes / webvpn"),
            Mode::TunnelGeneral(n) => format!("tunnel-group {n} general-attributes"),
            Mode::TunnelWebvpn(n) => format!("tunnel-group {n} webvpn-attributes"),
            Mode::Object(n) => format!("object {n}"),
            Mode::LoadBalancing => "vpn load-balancing".into(),
        }
    }
}

/// One command line, split into whitespace-separated tokens.
struct Cmd<'a> {
    line: usize,
    text: &'a str,
    toks: Vec<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Pool4,
    Pool6,
    GroupPolicy,
    SplitAcl,
    FilterAcl,
    AaaGroup { local_ok: bool },
    SamlIdp,
    TrustpointIdp,
    TrustpointSp,
    SslTrustPoint,
}

/// A name used by some command, checked once the whole file is read.
#[derive(Debug, Clone)]
struct Ref {
    line: usize,
    kind: RefKind,
    names: Vec<String>,
}

struct Parser<'a> {
    source: String,
    lines: Vec<&'a str>,
    pos: usize,
    cfg: Config,
    /// Keyed by "slot" (owner + setting) so a later line overriding a setting
    /// also replaces the reference that must be checked.
    refs: BTreeMap<String, Ref>,
    /// tunnel group -> line of its `authentication saml`.
    saml_auth_lines: BTreeMap<String, usize>,
    /// enabled group-alias / group-url -> (tunnel group, line), for uniqueness.
    alias_owner: BTreeMap<String, (String, usize)>,
    url_owner: BTreeMap<String, (String, usize)>,
    /// `aaa-server G protocol ldap` etc.: group -> protocol, ignored with a warning.
    ignored_aaa: BTreeMap<String, String>,
    /// tunnel groups of types we do not serve (`ipsec-l2l`).
    ignored_tgs: BTreeSet<String>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, source: &str) -> Self {
        Parser {
            source: source.to_string(),
            lines: text.lines().collect(),
            pos: 0,
            cfg: Config {
                source: source.to_string(),
                ..Config::default()
            },
            refs: BTreeMap::new(),
            saml_auth_lines: BTreeMap::new(),
            alias_owner: BTreeMap::new(),
            url_owner: BTreeMap::new(),
            ignored_aaa: BTreeMap::new(),
            ignored_tgs: BTreeSet::new(),
        }
    }

    fn err(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            line,
            message: message.into(),
        }
    }

    fn to_err(&self, line: usize, f: Fail) -> ConfigError {
        match f {
            Fail::Here(m) => self.err(line, m),
            Fail::At(l, m) => self.err(l, m),
        }
    }

    /// Next raw line and its 1-based number.
    fn next_line(&mut self) -> Option<(usize, &'a str)> {
        let l = self.lines.get(self.pos).copied()?;
        self.pos += 1;
        Some((self.pos, l))
    }

    fn check_placeholder(&self, line: usize, text: &str) -> Result<(), ConfigError> {
        match find_placeholder(text) {
            Some(p) => Err(self.err(
                line,
                format!("unfilled placeholder {p}: replace it with the real value"),
            )),
            None => Ok(()),
        }
    }

    fn warn(&mut self, line: usize, message: String) {
        self.cfg.warnings.push(Warning { line, message });
    }

    /// Warn about an unknown command and skip its children quietly.
    fn unknown(&mut self, c: &Cmd, mode: Option<&Mode>) -> Step {
        let w = words(&c.toks);
        let msg = match mode {
            None => format!("unknown command `{w}` ignored"),
            Some(m) => format!("unknown command `{w}` in `{}` ignored", m.label()),
        };
        self.warn(c.line, msg);
        Ok(Some(Mode::Unknown))
    }

    fn set_ref(&mut self, slot: String, line: usize, kind: RefKind, names: Vec<String>) {
        if names.is_empty() {
            self.refs.remove(&slot);
        } else {
            self.refs.insert(slot, Ref { line, kind, names });
        }
    }

    fn run(&mut self) -> Result<(), ConfigError> {
        let mut stack: Vec<(usize, Mode)> = Vec::new();
        while let Some((line, raw)) = self.next_line() {
            let text = raw.trim();
            if is_comment(text) {
                continue;
            }
            self.check_placeholder(line, text)?;
            let indent = raw.len() - raw.trim_start().len();
            let c = Cmd {
                line,
                text,
                toks: text.split_whitespace().collect(),
            };
            let res = if indent == 0 {
                stack.clear();
                self.top(&c)
            } else {
                while stack.last().is_some_and(|(i, _)| *i >= indent) {
                    stack.pop();
                }
                match stack.last() {
                    Some((_, Mode::Unknown)) => Ok(None),
                    Some((_, mode)) => {
                        let mode = mode.clone();
                        self.sub(&mode, &c)
                    }
                    None => {
                        let w = words(&c.toks);
                        self.warn(
                            line,
                            format!("indented line `{w}` is not under any mode command; ignored"),
                        );
                        Ok(Some(Mode::Unknown))
                    }
                }
            };
            match res {
                Ok(Some(m)) => stack.push((indent, m)),
                Ok(None) => {}
                Err(f) => return Err(self.to_err(line, f)),
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- top level

    /// The top-level dispatch: one arm per command at column 0. Add new commands
    /// here as one arm calling a handler in their section's file.
    fn top(&mut self, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        match t {
            ["hostname", name] => {
                self.cfg.hostname = Some((*name).to_string());
                Ok(None)
            }
            ["hostname", ..] => fail("expected `hostname NAME`"),
            ["domain-name", name] => {
                self.cfg.domain_name = Some((*name).to_string());
                Ok(None)
            }
            ["domain-name", ..] => fail("expected `domain-name NAME`"),
            ["ip", "local", "pool", ..] => self.ip_local_pool(c),
            ["vpn", "load-balancing", ..] => self.vpn_load_balancing(c),
            ["vpn-sessiondb", ..] => {
                super::sessiondb::parse(&mut self.cfg.vpn_sessiondb, t).map_err(Fail::Here)?;
                Ok(None)
            }
            ["ipv6", "local", "pool", ..] => self.ipv6_local_pool(c),
            ["interface", name] => {
                let idx = match self.cfg.interfaces.iter().position(|i| i.name == *name) {
                    Some(i) => i,
                    None => {
                        self.cfg.interfaces.push(Interface {
                            name: (*name).to_string(),
                            nameif: None,
                            ip_address: None,
                            line: c.line,
                        });
                        self.cfg.interfaces.len() - 1
                    }
                };
                Ok(Some(Mode::Interface(idx)))
            }
            ["interface", ..] => fail("expected `interface NAME`"),
            ["crypto", "ca", "trustpoint", name] => {
                self.ensure_trustpoint(name, c.line);
                Ok(Some(Mode::Trustpoint((*name).to_string())))
            }
            ["crypto", "ca", "trustpoint", ..] => fail("expected `crypto ca trustpoint NAME`"),
            ["crypto", "ca", "authenticate", name]
            | ["crypto", "ca", "authenticate", name, "nointeractive"] => {
                self.ca_authenticate(name, c.line)?;
                Ok(None)
            }
            ["crypto", "ca", "authenticate", ..] => fail(
                "expected `crypto ca authenticate NAME` followed by a PEM certificate and `quit`",
            ),
            ["crypto", "ca", "import", name, "pkcs12", pass]
            | [
                "crypto",
                "ca",
                "import",
                name,
                "pkcs12",
                pass,
                "nointeractive",
            ] => {
                self.ca_import(name, pass, c.line)?;
                Ok(None)
            }
            ["crypto", "ca", "import", _, "pkcs12"] => {
                fail("`crypto ca import NAME pkcs12` needs the PKCS#12 password")
            }
            ["crypto", "ca", "import", ..] => fail(
                "only `crypto ca import NAME pkcs12 PASSWORD` is supported (the identity key must be in the config)",
            ),
            ["crypto", "ca", "certificate", "chain", name] => {
                self.ensure_trustpoint(name, c.line);
                Ok(Some(Mode::CertChain((*name).to_string())))
            }
            ["ssl", "trust-point", name] | ["ssl", "trust-point", name, _] => {
                let interface = t.get(3).map(|s| (*s).to_string());
                self.cfg
                    .ssl_trust_points
                    .retain(|s| s.interface != interface);
                self.cfg.ssl_trust_points.push(SslTrustPoint {
                    trustpoint: (*name).to_string(),
                    interface: interface.clone(),
                    line: c.line,
                });
                let slot = format!("ssl trust-point {}", interface.unwrap_or_default());
                self.set_ref(
                    slot,
                    c.line,
                    RefKind::SslTrustPoint,
                    vec![(*name).to_string()],
                );
                Ok(None)
            }
            ["ssl", "trust-point", ..] => fail("expected `ssl trust-point NAME [INTERFACE]`"),
            ["aaa-server", ..] => self.aaa_server(c),
            ["webvpn"] => Ok(Some(Mode::Webvpn)),
            ["group-policy", ..] => self.group_policy(c),
            ["username", ..] => self.username(c),
            ["tunnel-group", ..] => self.tunnel_group(c),
            ["access-list", ..] => self.access_list(c),
            ["object" | "object-group", ..] => self.object(c),
            ["cts", ..] => self.cts(c),
            ["no", "cts", "sxp", "enable"] => {
                self.cfg.cts.sxp_enable = false;
                Ok(None)
            }
            ["threat-detection", ..] | ["aaa", "local", "authentication", ..] => {
                match super::threat::parse_command(&mut self.cfg, t, c.line) {
                    Ok(true) => Ok(None),
                    Ok(false) => self.unknown(c, None),
                    Err(m) => fail(m),
                }
            }
            // ssh, enable password, aaa authentication ssh, logging: config/mgmt.rs.
            _ => match super::mgmt::apply(&mut self.cfg.management, t, c.line) {
                Some(r) => r.map(|()| None).map_err(Fail::Here),
                None => self.unknown(c, None),
            },
        }
    }

    // ---------------------------------------------------------------- sub-modes

    /// The sub-mode dispatch: an indented line goes to its mode's handler.
    fn sub(&mut self, mode: &Mode, c: &Cmd) -> Step {
        match mode {
            Mode::Unknown => Ok(None),
            Mode::Interface(idx) => self.sub_interface(*idx, mode, c),
            Mode::Trustpoint(n) => self.sub_trustpoint(n, mode, c),
            Mode::CertChain(n) => match c.toks.as_slice() {
                ["certificate", "ca", _] => {
                    self.cert_chain_entry(n, true, c.line)?;
                    Ok(None)
                }
                ["certificate", _] => {
                    self.cert_chain_entry(n, false, c.line)?;
                    Ok(None)
                }
                _ => self.unknown(c, Some(mode)),
            },
            Mode::AaaGroup(g) => self.sub_aaa_group(g, mode, c),
            Mode::AaaHost(g, idx) => self.sub_aaa_host(g, *idx, mode, c),
            Mode::Webvpn => self.sub_webvpn(mode, c),
            Mode::SamlIdp(n) => self.sub_saml_idp(n, mode, c),
            Mode::GroupPolicy(n) => self.sub_group_policy(n, mode, c),
            Mode::GroupPolicyWebvpn(n) => {
                if self.gp_anyconnect(n, c)? || self.gp_client_settings(n, c, true)? {
                    Ok(None)
                } else {
                    self.unknown(c, Some(mode))
                }
            }
            Mode::TunnelGeneral(n) => self.sub_tunnel_general(n, mode, c),
            Mode::TunnelWebvpn(n) => self.sub_tunnel_webvpn(n, mode, c),
            Mode::Object(n) => self.sub_object(n, mode, c),
            Mode::LoadBalancing => self.sub_load_balancing(mode, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_util::*;

    // ------------------------------------------------------------ basic commands

    #[test]
    fn config_hostname_and_comments() {
        let c = ok(&cfg(&[
            ": Saved",
            "! comment",
            "",
            "hostname vpn-gw",
            ":end",
        ]));
        assert_eq!(c.hostname.as_deref(), Some("vpn-gw"));
        assert!(c.warnings.is_empty());
        assert_eq!(c.source, "t.cfg");
        bad("hostname a b", 1, "expected `hostname NAME`");
    }

    #[test]
    fn config_placeholder_is_an_error() {
        let e = bad(
            &cfg(&[
                "hostname h",
                "aaa-server ISE protocol radius",
                "aaa-server ISE (inside) host 1.2.3.4",
                " key @RADIUS_SECRET@",
            ]),
            4,
            "unfilled placeholder @RADIUS_SECRET@",
        );
        assert!(e.to_string().starts_with("t.cfg:4: "));
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                "@IDP_CERT@",
                "-----END CERTIFICATE-----",
                "quit",
            ]),
            3,
            "placeholder @IDP_CERT@",
        );
        // an e-mail address is not a placeholder
        ok("username alice@corp.example password x");
    }

    // ------------------------------------------------------------ unknown lines

    #[test]
    fn config_unknown_commands_warn() {
        let c = ok(&cfg(&[
            "ASA Version 9.16(4)",
            "names",
            "mtu outside 1500",
            "enable password 8Ry2YjIyt7RRXU24 encrypted",
            "passwd 2KFQnbNIdI.2KYOU encrypted",
            "object network OBJ",
            " subnet 10.0.0.0 255.0.0.0",
            " nat (inside,outside) dynamic interface",
            "policy-map global_policy",
            " class inspection_default",
            "  inspect ftp",
            "snmp-server community public",
            "  stray indented line",
        ]));
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.line).collect();
        // line 13 is a child of the unknown `snmp-server` line: no second warning
        // `object network` is read now; only its `nat` line is ignored.
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 8, 9, 12]);
        let stray = ok("  stray indented line");
        assert_eq!(stray.warnings[0].line, 1);
        assert!(
            stray.warnings[0]
                .message
                .contains("not under any mode command")
        );
        let all: String = c.warnings.iter().map(|w| w.message.clone()).collect();
        for secret in ["8Ry2YjIyt7RRXU24", "2KFQnbNIdI", "public"] {
            assert!(!all.contains(secret), "warning leaks {secret}: {all}");
        }
        assert!(c.warnings[1].message.contains("unknown command `names`"));
    }

    #[test]
    fn config_no_forms() {
        let c = ok(&cfg(&[
            "aaa-server G protocol radius",
            " authorize-only",
            " no authorize-only",
            " dynamic-authorization",
            " no dynamic-authorization",
            "crypto ca trustpoint T",
            " ca-check",
            " no ca-check",
            "webvpn",
            " anyconnect enable",
            " no anyconnect enable",
        ]));
        let g = &c.aaa_server_groups["G"];
        assert!(!g.authorize_only);
        assert_eq!(g.dynamic_authorization, None);
        assert!(c.trustpoints["T"].no_ca_check);
        assert!(!c.webvpn.anyconnect_enable);
    }

    #[test]
    fn config_load_file() {
        let dir = std::env::temp_dir().join(format!("headend-cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.cfg");
        std::fs::write(&good, "\u{feff}hostname h\r\nnames\r\n").unwrap();
        let c = load_file(&good).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("h"));
        assert_eq!(c.source, good.display().to_string());
        let badf = dir.join("bad.cfg");
        std::fs::write(&badf, b"hostname h\nbanner \xff\n").unwrap();
        let e = load_file(&badf).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "not UTF-8 text"));
        let e = load_file(&dir.join("missing.cfg")).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.message.contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Truncating every line of a rich config at every token boundary, and
    /// indenting it, must give an error or a config, never a panic.
    #[test]
    fn config_truncated_lines_never_panic() {
        let (text, _) = with_tps(&[
            "ip local pool P 10.0.0.10-10.0.0.20 mask 255.255.255.0",
            "aaa-server ISE protocol radius",
            " dynamic-authorization port 1700",
            "aaa-server ISE (inside) host 1.2.3.4 key timeout 5",
            "webvpn",
            " saml idp E",
            "  url sign-in https://x/y",
            "  timeout assertion 5",
            "group-policy G internal",
            "group-policy G attributes",
            " anyconnect dpd-interval client 30 gateway 30",
            " banner value hi there",
            "tunnel-group T type remote-access",
            "tunnel-group T webvpn-attributes",
            " group-url https://a/b enable",
            "access-list F extended permit tcp security-group tag 1 host 1.2.3.4 range 1 2 security-group name X 2001:db8::/32 eq 443 log 3 interval 5 inactive",
            "access-list F line 2 extended permit icmp any any echo",
            "cts sxp connection peer 1.2.3.4 source 1.2.3.5 password none mode peer speaker",
            "cts role-based sgt-map host 1.2.3.4 sgt 5",
        ]);
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let toks: Vec<&str> = l.split_whitespace().collect();
            for n in 0..=toks.len() {
                let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
                let indent = if l.starts_with(' ') { " " } else { "" };
                v[i] = format!("{indent}{}", toks[..n].join(" "));
                let _ = parse_str(&v.join("\n"), "t");
                v[i] = format!("  {}", toks[..n].join(" "));
                let _ = parse_str(&v.join("\n"), "t");
            }
        }
    }
}

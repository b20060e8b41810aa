//! Line parser for the ASA CLI subset (`asa-aaa.md` section 1).
//!
//! ASA configs are line based with indentation sub-modes: an indented line belongs
//! to the closest less-indented mode command above it. We keep a stack of
//! `(indent, Mode)` and pop it to the line's parent. Unknown commands become
//! warnings (real running-configs are full of lines the headend does not need);
//! a known command with a bad argument is an error. References between sections
//! are recorded while parsing and checked at the end, so forward references work
//! and every error still points at the referencing line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use base64::Engine as _;
use openssl::pkcs12::Pkcs12;
use openssl::x509::X509;

use super::model::*;
use super::{ConfigError, DEFAULT_GROUP_POLICY};

mod objects;
mod saml;

/// Parse a whole configuration. `source` is the file name used in messages.
pub fn parse_str(text: &str, source: &str) -> Result<Config, ConfigError> {
    // An editor may have saved a UTF-8 BOM; it is not part of the first command.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser::new(text, source);
    p.run()?;
    p.resolve_object_aces()?;
    p.check_references()?;
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

    fn ensure_trustpoint(&mut self, name: &str, line: usize) {
        self.cfg
            .trustpoints
            .entry(name.to_string())
            .or_insert_with(|| Trustpoint {
                name: name.to_string(),
                line,
                ..Trustpoint::default()
            });
    }

    fn ip_local_pool(&mut self, c: &Cmd) -> Step {
        // ip local pool NAME FIRST-LAST [mask MASK]
        let (name, range, mask) = match c.toks.as_slice() {
            [_, _, _, name, range] => (*name, *range, None),
            [_, _, _, name, range, "mask", m] => (*name, *range, Some(*m)),
            _ => return fail("expected `ip local pool NAME FIRST-LAST mask MASK`"),
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (parse_v4(a)?, parse_v4(b)?),
            None => {
                let a = parse_v4(range)?;
                (a, a)
            }
        };
        let mask = match mask {
            Some(m) => parse_mask(m)?,
            // As on ASA: without `mask` the pool uses the classful mask.
            None => classful_mask(first),
        };
        if first > last {
            return fail(format!(
                "pool range {first}-{last} is reversed: the first address is above the last"
            ));
        }
        let m = u32::from(mask);
        if u32::from(first) & m != u32::from(last) & m {
            return fail(format!(
                "pool range {first}-{last} is not inside one network with mask {mask}"
            ));
        }
        if let Some(old) = self.cfg.ip_local_pools.get(name) {
            return fail(format!(
                "ip local pool `{name}` is already defined at line {}",
                old.line
            ));
        }
        self.cfg.ip_local_pools.insert(
            name.to_string(),
            Ipv4Pool {
                name: name.to_string(),
                first,
                last,
                mask,
                line: c.line,
            },
        );
        Ok(None)
    }

    fn ipv6_local_pool(&mut self, c: &Cmd) -> Step {
        // ipv6 local pool NAME ADDR/PREFIX COUNT
        let [_, _, _, name, prefix, count] = c.toks.as_slice() else {
            return fail("expected `ipv6 local pool NAME ADDRESS/PREFIX COUNT`");
        };
        let Some((addr, len)) = prefix.split_once('/') else {
            return fail(format!("expected ADDRESS/PREFIX, found `{prefix}`"));
        };
        let first: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("bad IPv6 address `{addr}`"))?;
        let prefix_len = parse_num(len, "IPv6 prefix length", 1, 128)? as u8;
        let count = parse_num(count, "number of addresses", 1, 16384)?;
        if let Some(old) = self.cfg.ipv6_local_pools.get(*name) {
            return fail(format!(
                "ipv6 local pool `{name}` is already defined at line {}",
                old.line
            ));
        }
        self.cfg.ipv6_local_pools.insert(
            (*name).to_string(),
            Ipv6Pool {
                name: (*name).to_string(),
                first,
                prefix_len,
                count,
                line: c.line,
            },
        );
        Ok(None)
    }

    // ------------------------------------------------------------ certificates

    /// `crypto ca authenticate NAME` + PEM certificate(s) + `quit`.
    fn ca_authenticate(&mut self, name: &str, line: usize) -> PResult<()> {
        self.ensure_trustpoint(name, line);
        let mut certs = Vec::new();
        loop {
            let Some((l, raw)) = self.next_line() else {
                return Err(Fail::At(
                    line,
                    format!(
                        "`crypto ca authenticate {name}` has no `quit` line ending its certificate block"
                    ),
                ));
            };
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            self.check_placeholder(l, t)
                .map_err(|e| Fail::At(e.line, e.message))?;
            if t == "quit" {
                break;
            }
            if t != "-----BEGIN CERTIFICATE-----" {
                return Err(Fail::At(
                    l,
                    format!(
                        "expected -----BEGIN CERTIFICATE----- or `quit` in the certificate block of `crypto ca authenticate {name}` (line {line})"
                    ),
                ));
            }
            let begin = l;
            let mut body = String::new();
            loop {
                let Some((l2, raw2)) = self.next_line() else {
                    return Err(Fail::At(
                        begin,
                        "certificate has no -----END CERTIFICATE----- line".into(),
                    ));
                };
                let t2 = raw2.trim();
                self.check_placeholder(l2, t2)
                    .map_err(|e| Fail::At(e.line, e.message))?;
                if t2 == "-----END CERTIFICATE-----" {
                    break;
                }
                if t2 == "quit" || t2.starts_with("-----") {
                    return Err(Fail::At(
                        begin,
                        "certificate has no -----END CERTIFICATE----- line".into(),
                    ));
                }
                body.extend(t2.chars().filter(|ch| !ch.is_whitespace()));
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|e| Fail::At(begin, format!("bad certificate: bad base64: {e}")))?;
            X509::from_der(&der)
                .map_err(|e| Fail::At(begin, format!("bad certificate: {}", ssl_msg(&e))))?;
            certs.push(der);
        }
        if certs.is_empty() {
            return Err(Fail::At(
                line,
                format!("`crypto ca authenticate {name}` has no certificate before `quit`"),
            ));
        }
        if let Some(tp) = self.cfg.trustpoints.get_mut(name) {
            tp.ca_certs_der = certs;
        }
        Ok(())
    }

    /// `crypto ca import NAME pkcs12 PASS` + base64 lines + `quit`.
    fn ca_import(&mut self, name: &str, pass: &str, line: usize) -> PResult<()> {
        if is_masked(pass) {
            return fail("the PKCS#12 password is masked (`*****`); give the real password");
        }
        self.ensure_trustpoint(name, line);
        // (offset in `body`, line) of each data line, to point base64 errors at a line.
        let mut starts: Vec<(usize, usize)> = Vec::new();
        let mut body = String::new();
        loop {
            let Some((l, raw)) = self.next_line() else {
                return Err(Fail::At(
                    line,
                    format!(
                        "`crypto ca import {name} pkcs12` has no `quit` line ending its base64 block"
                    ),
                ));
            };
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            self.check_placeholder(l, t)
                .map_err(|e| Fail::At(e.line, e.message))?;
            if t == "quit" {
                break;
            }
            // ASA exports wrap the data in -----BEGIN/END PKCS12----- lines.
            if t.starts_with("-----BEGIN") || t.starts_with("-----END") {
                continue;
            }
            if !t
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '/' | '='))
            {
                return Err(Fail::At(
                    l,
                    format!(
                        "expected base64 PKCS#12 data or `quit` after `crypto ca import {name} pkcs12` (line {line})"
                    ),
                ));
            }
            starts.push((body.len(), l));
            body.push_str(t);
        }
        let first_data = starts.first().map_or(line, |s| s.1);
        if body.is_empty() {
            return Err(Fail::At(
                line,
                format!("`crypto ca import {name} pkcs12` has no data before `quit`"),
            ));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| {
                let off = match e {
                    base64::DecodeError::InvalidByte(o, _)
                    | base64::DecodeError::InvalidLastSymbol(o, _) => Some(o),
                    _ => None,
                };
                let l = off
                    .and_then(|o| starts.iter().rev().find(|s| s.0 <= o).map(|s| s.1))
                    .unwrap_or(first_data);
                Fail::At(l, format!("bad base64 in PKCS#12 data: {e}"))
            })?;
        let p12 = Pkcs12::from_der(&der)
            .map_err(|e| Fail::At(first_data, format!("not a PKCS#12 file: {}", ssl_msg(&e))))?;
        let parsed = p12.parse2(pass).map_err(|e| {
            Fail::At(
                line,
                format!(
                    "cannot open the PKCS#12 of trustpoint {name} (wrong password?): {}",
                    ssl_msg(&e)
                ),
            )
        })?;
        if parsed.pkey.is_none() || parsed.cert.is_none() {
            return Err(Fail::At(
                line,
                format!(
                    "the PKCS#12 of trustpoint {name} must hold a private key and its certificate"
                ),
            ));
        }
        if let Some(tp) = self.cfg.trustpoints.get_mut(name) {
            tp.pkcs12 = Some(Pkcs12Blob {
                der,
                password: pass.to_string(),
            });
        }
        Ok(())
    }

    /// `certificate [ca] SERIAL` inside `crypto ca certificate chain`: hex DER lines
    /// ending with `quit`, the form a saved ASA running-config carries certificates in.
    fn cert_chain_entry(&mut self, tp: &str, ca: bool, line: usize) -> PResult<()> {
        let mut hex = String::new();
        loop {
            let Some((l, raw)) = self.next_line() else {
                return Err(Fail::At(
                    line,
                    "certificate has no `quit` line ending its hex block".into(),
                ));
            };
            let t = raw.trim();
            self.check_placeholder(l, t)
                .map_err(|e| Fail::At(e.line, e.message))?;
            if t == "quit" {
                break;
            }
            hex.extend(t.chars().filter(|ch| !ch.is_whitespace()));
        }
        if !ca {
            self.warn(
                line,
                format!("identity certificate in `crypto ca certificate chain {tp}` ignored: its key is not in the config (use `crypto ca import {tp} pkcs12`)"),
            );
            return Ok(());
        }
        let der = decode_hex(&hex).map_err(|m| Fail::At(line, format!("bad certificate: {m}")))?;
        X509::from_der(&der)
            .map_err(|e| Fail::At(line, format!("bad certificate: {}", ssl_msg(&e))))?;
        if let Some(t) = self.cfg.trustpoints.get_mut(tp)
            && !t.ca_certs_der.contains(&der)
        {
            t.ca_certs_der.push(der);
        }
        Ok(())
    }

    // --------------------------------------------------------------- aaa-server

    fn aaa_server(&mut self, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        let (group, iface, rest) = match t {
            [_, name, "protocol", proto] => {
                if *proto != "radius" {
                    self.ignored_aaa
                        .insert((*name).to_string(), (*proto).to_string());
                    self.warn(
                        c.line,
                        format!("aaa-server group `{name}` uses protocol {proto}, which the headend does not support; ignored"),
                    );
                    return Ok(Some(Mode::Unknown));
                }
                let g = self
                    .cfg
                    .aaa_server_groups
                    .entry((*name).to_string())
                    .or_insert_with(|| AaaServerGroup {
                        name: (*name).to_string(),
                        protocol: AaaProtocol::Radius,
                        max_failed_attempts: 3,
                        deadtime_minutes: 10,
                        line: c.line,
                        ..AaaServerGroup::default()
                    });
                return Ok(Some(Mode::AaaGroup(g.name.clone())));
            }
            [_, _, "protocol", ..] => return fail("expected `aaa-server NAME protocol radius`"),
            [_, name, iface, "host", rest @ ..] if iface.starts_with('(') => {
                let Some(i) = iface
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .filter(|s| !s.is_empty())
                else {
                    return fail(format!("bad interface `{iface}` (expected `(NAME)`)"));
                };
                (*name, Some(i.to_string()), rest)
            }
            [_, name, "host", rest @ ..] => (*name, None, rest),
            _ => return self.unknown(c, None),
        };
        let (addr, key, timeout) = match rest {
            [a] => (*a, None, None),
            [a, "timeout", n] => (*a, None, Some(*n)),
            [a, k] => (*a, Some(*k), None),
            [a, k, "timeout", n] => (*a, Some(*k), Some(*n)),
            _ => {
                return fail(
                    "expected `aaa-server NAME (INTERFACE) host ADDRESS [KEY] [timeout SECONDS]`",
                );
            }
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("bad server address `{addr}` (an IP address is needed)"))?;
        if let Some(k) = key
            && is_masked(k)
        {
            return fail(masked_key_msg());
        }
        let timeout = timeout
            .map(|n| parse_num(n, "timeout", 1, 300))
            .transpose()?;
        if self.ignored_aaa.contains_key(group) {
            return Ok(Some(Mode::Unknown));
        }
        let Some(g) = self.cfg.aaa_server_groups.get_mut(group) else {
            return fail(format!(
                "aaa-server group `{group}` is not defined; add `aaa-server {group} protocol radius` before its hosts"
            ));
        };
        let idx = match g
            .hosts
            .iter()
            .position(|h| h.address == address && h.interface == iface)
        {
            Some(i) => i,
            None => {
                g.hosts.push(AaaServerHost {
                    interface: iface,
                    address,
                    key: None,
                    authentication_port: 1812,
                    accounting_port: 1813,
                    timeout_secs: 10,
                    retry_interval_secs: 10,
                    accept_unsigned_replies: false,
                    line: c.line,
                });
                g.hosts.len() - 1
            }
        };
        if let Some(h) = g.hosts.get_mut(idx) {
            if let Some(k) = key {
                h.key = Some(k.to_string());
            }
            if let Some(t) = timeout {
                h.timeout_secs = t;
            }
        }
        Ok(Some(Mode::AaaHost(group.to_string(), idx)))
    }

    // ------------------------------------------------------------- group-policy

    fn group_policy(&mut self, c: &Cmd) -> Step {
        match c.toks.as_slice() {
            [_, name, "internal"] => {
                self.cfg
                    .group_policies
                    .entry((*name).to_string())
                    .or_insert_with(|| GroupPolicy {
                        name: (*name).to_string(),
                        line: c.line,
                        ..GroupPolicy::default()
                    });
                Ok(None)
            }
            [_, name, "attributes"] => {
                if !self.cfg.group_policies.contains_key(*name) {
                    // DfltGrpPolicy exists on every ASA without `internal`.
                    if *name != DEFAULT_GROUP_POLICY {
                        return fail(format!(
                            "group-policy `{name}` is not defined; add `group-policy {name} internal` first"
                        ));
                    }
                    self.cfg.group_policies.insert(
                        (*name).to_string(),
                        GroupPolicy {
                            name: (*name).to_string(),
                            line: c.line,
                            ..GroupPolicy::default()
                        },
                    );
                }
                Ok(Some(Mode::GroupPolicy((*name).to_string())))
            }
            [_, name, "external", ..] => {
                self.warn(
                    c.line,
                    format!("external group-policy `{name}` is not supported; ignored"),
                );
                Ok(Some(Mode::Unknown))
            }
            _ => fail("expected `group-policy NAME internal` or `group-policy NAME attributes`"),
        }
    }

    // ----------------------------------------------------------------- username

    fn username(&mut self, c: &Cmd) -> Step {
        match c.toks.as_slice() {
            [_, name, "password", secret, opts @ ..] => {
                if is_masked(secret) {
                    return fail(
                        "the password is masked (`*****`); give the real password or its pbkdf2 hash",
                    );
                }
                let mut form = PasswordForm::Plain;
                let mut privilege = 2u8;
                let mut rest = opts;
                loop {
                    rest = match rest {
                        [] => break,
                        ["pbkdf2", tail @ ..] => {
                            form = PasswordForm::Pbkdf2;
                            tail
                        }
                        ["encrypted" | "nt-encrypted", tail @ ..] => {
                            form = PasswordForm::Encrypted;
                            tail
                        }
                        ["privilege", n, tail @ ..] => {
                            privilege = parse_num(n, "privilege level", 0, 15)? as u8;
                            tail
                        }
                        [other, ..] => {
                            return fail(format!(
                                "unexpected `{}` in `username`: expected pbkdf2, encrypted or privilege N",
                                words(&[other])
                            ));
                        }
                    };
                }
                self.cfg.usernames.insert(
                    (*name).to_string(),
                    LocalUser {
                        name: (*name).to_string(),
                        password: (*secret).to_string(),
                        password_form: form,
                        privilege,
                        line: c.line,
                    },
                );
                Ok(None)
            }
            [_, _, "password"] => fail("`username NAME password` needs the password"),
            [_, name, "nopassword", ..] => {
                self.warn(
                    c.line,
                    format!("user `{name}` has no password and cannot log in; ignored"),
                );
                Ok(None)
            }
            [_, _, "attributes"] => self.unknown(c, None),
            _ => fail("expected `username NAME password SECRET [privilege N]`"),
        }
    }

    // ------------------------------------------------------------- tunnel-group

    fn tunnel_group(&mut self, c: &Cmd) -> Step {
        match c.toks.as_slice() {
            [_, name, "type", "remote-access"] => {
                let tg = self
                    .cfg
                    .tunnel_groups
                    .entry((*name).to_string())
                    .or_insert_with(|| TunnelGroup {
                        name: (*name).to_string(),
                        line: c.line,
                        ..TunnelGroup::default()
                    });
                tg.remote_access = true;
                Ok(None)
            }
            [_, name, "type", ty @ ("ipsec-l2l" | "webvpn" | "ipsec-ra")] => {
                self.ignored_tgs.insert((*name).to_string());
                self.warn(
                    c.line,
                    format!(
                        "tunnel-group `{name}` of type {ty} is not served by the headend; ignored"
                    ),
                );
                Ok(None)
            }
            [_, _, "type", ty] => fail(format!(
                "unknown tunnel-group type `{ty}` (expected remote-access)"
            )),
            [_, name, kind @ ("general-attributes" | "webvpn-attributes")] => {
                if self.ignored_tgs.contains(*name) {
                    return Ok(Some(Mode::Unknown));
                }
                if !self.cfg.tunnel_groups.contains_key(*name) {
                    // These two exist on every ASA without a `type` line.
                    if !matches!(*name, "DefaultRAGroup" | "DefaultWEBVPNGroup") {
                        return fail(format!(
                            "tunnel-group `{name}` is not defined; add `tunnel-group {name} type remote-access` first"
                        ));
                    }
                    self.cfg.tunnel_groups.insert(
                        (*name).to_string(),
                        TunnelGroup {
                            name: (*name).to_string(),
                            remote_access: true,
                            line: c.line,
                            ..TunnelGroup::default()
                        },
                    );
                }
                let n = (*name).to_string();
                Ok(Some(if *kind == "general-attributes" {
                    Mode::TunnelGeneral(n)
                } else {
                    Mode::TunnelWebvpn(n)
                }))
            }
            [_, name, "ipsec-attributes" | "ppp-attributes"] => {
                if self.ignored_tgs.contains(*name) {
                    // Already warned about at its `type` line.
                    return Ok(Some(Mode::Unknown));
                }
                self.unknown(c, None)
            }
            _ => fail(
                "expected `tunnel-group NAME type remote-access`, `general-attributes` or `webvpn-attributes`",
            ),
        }
    }

    // -------------------------------------------------------------- access-list

    fn access_list(&mut self, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        let name = match t {
            // Global knobs that share the keyword.
            [_, "alert-interval" | "deny-flow-max", _] => return self.unknown(c, None),
            [_, name, ..] => *name,
            _ => return fail("expected `access-list NAME standard|extended|remark ...`"),
        };
        let mut i = 2;
        let mut position = None;
        if t.get(2) == Some(&"line") {
            let n = t
                .get(3)
                .ok_or_else(|| "`line` needs a number".to_string())?;
            position = Some(parse_num(n, "line number", 1, u32::MAX)? as usize);
            i = 4;
        }
        let kind = t.get(i).copied().ok_or_else(|| {
            "expected standard, extended or remark after the access-list name".to_string()
        })?;
        let (action, kind) = match kind {
            "remark" => {
                let text = rest_after(c.text, i + 1);
                if text.is_empty() {
                    return fail("`remark` needs a text");
                }
                // Remarks match nothing; the action is only a placeholder.
                (AclAction::Permit, AclEntryKind::Remark(text.to_string()))
            }
            "standard" => parse_standard(t, i + 1)?,
            "extended" => objects::extended_entry(t, i + 1)?,
            // Old ASA syntax without the `extended` keyword.
            "permit" | "deny" => objects::extended_entry(t, i)?,
            "ethertype" | "webtype" => {
                self.warn(
                    c.line,
                    format!("{kind} access-list `{name}` is not supported; ignored"),
                );
                return Ok(None);
            }
            other => {
                return fail(format!(
                    "unknown access-list type `{other}` (expected standard, extended or remark)"
                ));
            }
        };
        let acl = self
            .cfg
            .access_lists
            .entry(name.to_string())
            .or_insert_with(|| AccessList {
                name: name.to_string(),
                entries: Vec::new(),
                line: c.line,
            });
        let new_std = matches!(kind, AclEntryKind::Standard { .. });
        let new_ext = matches!(
            kind,
            AclEntryKind::Extended(_) | AclEntryKind::ExtendedObjects(_)
        );
        let has_std = acl
            .entries
            .iter()
            .any(|e| matches!(e.kind, AclEntryKind::Standard { .. }));
        let has_ext = acl.entries.iter().any(AccessListEntry::is_extended);
        if (new_std && has_ext) || (new_ext && has_std) {
            return fail(format!(
                "access-list `{name}` mixes standard and extended entries"
            ));
        }
        let entry = AccessListEntry {
            action,
            kind,
            text: c.text.to_string(),
            line: c.line,
        };
        match position {
            Some(p) if p <= acl.entries.len() => acl.entries.insert(p.saturating_sub(1), entry),
            _ => acl.entries.push(entry),
        }
        Ok(None)
    }

    // ---------------------------------------------------------------------- cts

    fn cts(&mut self, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        match t {
            [_, "role-based", "sgt-map", rest @ ..] => {
                let (address, prefix_len, sgt) = match rest {
                    ["host", a, "sgt", n] => {
                        let ip = parse_ip(a)?;
                        (ip, full_len(ip), *n)
                    }
                    [p, "sgt", n] if p.contains('/') => {
                        let (ip, len) = parse_prefix(p)?;
                        (ip, len, *n)
                    }
                    [a, "sgt", n] => {
                        let ip = parse_ip(a)?;
                        (ip, full_len(ip), *n)
                    }
                    _ => return fail("expected `cts role-based sgt-map ADDRESS[/LEN] sgt N`"),
                };
                let sgt = parse_num(sgt, "SGT", 2, 65519)? as u16;
                let map = &mut self.cfg.cts.sgt_map;
                map.retain(|e| !(e.address == address && e.prefix_len == prefix_len));
                map.push(SgtMapEntry {
                    address,
                    prefix_len,
                    sgt,
                    line: c.line,
                });
                Ok(None)
            }
            [_, "role-based", "sgt", n, "name", name] => {
                let sgt = parse_num(n, "SGT", 2, 65519)? as u16;
                self.cfg.cts.sgt_names.insert((*name).to_string(), sgt);
                Ok(None)
            }
            [_, "sxp", "enable"] => {
                self.cfg.cts.sxp_enable = true;
                Ok(None)
            }
            [_, "sxp", "default", "password", rest @ ..] => {
                let secret = match rest {
                    [s] | ["0", s] => *s,
                    ["8", _] => {
                        return fail(
                            "encrypted (type 8) SXP passwords are not supported; give it in clear",
                        );
                    }
                    _ => return fail("expected `cts sxp default password SECRET`"),
                };
                if is_masked(secret) {
                    return fail("the SXP password is masked (`*****`); give the real password");
                }
                self.cfg.cts.sxp_default_password = Some(secret.to_string());
                Ok(None)
            }
            [_, "sxp", "default", "source-ip", a] => {
                self.cfg.cts.sxp_default_source_ip = Some(parse_ip(a)?);
                Ok(None)
            }
            [_, "sxp", "connection", "peer", peer, rest @ ..] => {
                let peer = parse_ip(peer)?;
                let mut rest = rest;
                let mut source = None;
                if let ["source", s, tail @ ..] = rest {
                    source = Some(parse_ip(s)?);
                    rest = tail;
                }
                let password = match rest {
                    ["password", "default", tail @ ..] => {
                        rest = tail;
                        SxpPassword::Default
                    }
                    ["password", "none", tail @ ..] => {
                        rest = tail;
                        SxpPassword::None
                    }
                    ["password", ..] => {
                        return fail(
                            "per-connection SXP passwords are not supported: use `password default` or `password none`",
                        );
                    }
                    _ => {
                        return fail(
                            "expected `password default|none` in `cts sxp connection peer`",
                        );
                    }
                };
                // `mode [local|peer] listener|speaker`; "peer speaker" means we listen.
                let (peer_side, role) = match rest {
                    ["mode", "local", r] | ["mode", r] | [r] => (false, *r),
                    ["mode", "peer", r] => (true, *r),
                    _ => return fail("expected `mode local listener` (or `mode peer speaker`)"),
                };
                let mode = match (peer_side, role) {
                    (false, "listener") | (true, "speaker") => SxpMode::Listener,
                    (false, "speaker") | (true, "listener") => SxpMode::Speaker,
                    _ => {
                        return fail(format!(
                            "bad SXP mode `{role}` (expected listener or speaker)"
                        ));
                    }
                };
                let conns = &mut self.cfg.cts.sxp_connections;
                conns.retain(|x| x.peer != peer);
                conns.push(SxpConnection {
                    peer,
                    source,
                    password,
                    mode,
                    line: c.line,
                });
                Ok(None)
            }
            [_, "sxp", "listener", "hold-time", a, b] => {
                let a = parse_num(a, "hold time", 1, 65534)? as u16;
                let b = parse_num(b, "hold time", 1, 65534)? as u16;
                if a > b {
                    return fail("hold-time minimum is above the maximum");
                }
                self.cfg.cts.sxp_listener_hold_time = Some((a, b));
                Ok(None)
            }
            [_, "sxp", what @ ("retry" | "reconcile"), "period", n] => {
                parse_num(n, "period", 0, 64000)?;
                self.warn(
                    c.line,
                    format!("`cts sxp {what} period` is accepted but not used"),
                );
                Ok(None)
            }
            [_, "role-based", "sgt", ..]
            | [
                _,
                "sxp",
                "enable" | "default" | "connection" | "listener",
                ..,
            ] => fail(format!("bad arguments to `{}`", words(t))),
            _ => self.unknown(c, None),
        }
    }

    // ---------------------------------------------------------------- sub-modes

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
        }
    }

    fn sub_interface(&mut self, idx: usize, mode: &Mode, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        let ip = match t {
            ["ip", "address", a, m] | ["ip", "address", a, m, "standby", _] => {
                Some((parse_v4(a)?, parse_mask(m)?))
            }
            _ => None,
        };
        let Some(i) = self.cfg.interfaces.get_mut(idx) else {
            return Ok(None);
        };
        match t {
            ["nameif", n] => i.nameif = Some((*n).to_string()),
            ["no", "nameif"] => i.nameif = None,
            ["ip", "address", ..] if ip.is_some() => i.ip_address = ip,
            ["no", "ip", "address", ..] => i.ip_address = None,
            ["nameif", ..] => return fail("expected `nameif NAME`"),
            ["ip", "address", ..] => return fail("expected `ip address ADDRESS MASK`"),
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    fn sub_trustpoint(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        let Some(tp) = self.cfg.trustpoints.get_mut(name) else {
            return Ok(None);
        };
        match c.toks.as_slice() {
            ["enrollment", "terminal"] => tp.enrollment_terminal = true,
            ["revocation-check", "none"] => tp.revocation_check_none = true,
            ["revocation-check", ..] => {
                tp.revocation_check_none = false;
                self.warn(
                    c.line,
                    format!("revocation checking is not implemented: certificates of trustpoint {name} are not checked for revocation"),
                );
            }
            ["no", "ca-check"] => tp.no_ca_check = true,
            ["ca-check"] => tp.no_ca_check = false,
            ["no", "id-usage"] => tp.no_id_usage = true,
            ["id-usage", ..] => tp.no_id_usage = false,
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    fn sub_aaa_group(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        let Some(g) = self.cfg.aaa_server_groups.get_mut(name) else {
            return Ok(None);
        };
        match c.toks.as_slice() {
            ["authorize-only"] => g.authorize_only = true,
            ["no", "authorize-only"] => g.authorize_only = false,
            ["dynamic-authorization"] => g.dynamic_authorization = Some(1700),
            ["dynamic-authorization", "port", p] => {
                g.dynamic_authorization = Some(parse_num(p, "port", 1, 65535)? as u16)
            }
            ["no", "dynamic-authorization", ..] => g.dynamic_authorization = None,
            ["dynamic-authorization", ..] => {
                return fail("expected `dynamic-authorization [port N]`");
            }
            // Without `periodic` ASA sends interim updates only when an address is
            // assigned; we record that as 0 hours.
            ["interim-accounting-update"] => g.interim_accounting_update_hours = Some(0),
            ["interim-accounting-update", "periodic"] => {
                g.interim_accounting_update_hours = Some(24)
            }
            ["interim-accounting-update", "periodic", h] => {
                g.interim_accounting_update_hours = Some(parse_num(h, "hours", 1, 120)?)
            }
            ["no", "interim-accounting-update", ..] => g.interim_accounting_update_hours = None,
            ["interim-accounting-update", ..] => {
                return fail("expected `interim-accounting-update [periodic HOURS]`");
            }
            ["max-failed-attempts", n] => {
                g.max_failed_attempts = parse_num(n, "max-failed-attempts", 1, 5)?
            }
            ["max-failed-attempts", ..] => return fail("expected `max-failed-attempts N`"),
            ["reactivation-mode", "depletion"] => {}
            ["reactivation-mode", "depletion", "deadtime", n] | ["deadtime", n] => {
                g.deadtime_minutes = parse_num(n, "deadtime (minutes)", 0, 1440)?
            }
            // Timed mode retries a failed server after 30 s: the closest whole
            // number of minutes is 0, i.e. no dead time.
            ["reactivation-mode", "timed"] => g.deadtime_minutes = 0,
            ["reactivation-mode", ..] => {
                return fail(
                    "expected `reactivation-mode depletion [deadtime MINUTES]` or `reactivation-mode timed`",
                );
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    fn sub_aaa_host(&mut self, group: &str, idx: usize, mode: &Mode, c: &Cmd) -> Step {
        let Some(h) = self
            .cfg
            .aaa_server_groups
            .get_mut(group)
            .and_then(|g| g.hosts.get_mut(idx))
        else {
            return Ok(None);
        };
        match c.toks.as_slice() {
            ["key", k] => {
                if is_masked(k) {
                    return fail(masked_key_msg());
                }
                h.key = Some((*k).to_string());
            }
            ["key", ..] => return fail("expected `key SECRET` (no spaces)"),
            ["no", "key", ..] => h.key = None,
            ["authentication-port", p] => {
                h.authentication_port = parse_num(p, "port", 1, 65535)? as u16
            }
            ["accounting-port", p] => h.accounting_port = parse_num(p, "port", 1, 65535)? as u16,
            ["timeout", n] => h.timeout_secs = parse_num(n, "timeout (seconds)", 1, 300)?,
            ["retry-interval", n] => {
                h.retry_interval_secs = parse_num(n, "retry-interval (seconds)", 1, 10)?
            }
            // Not an ASA command (ASA has none for this): see AaaServerHost.
            ["accept-unsigned-replies"] => h.accept_unsigned_replies = true,
            ["no", "accept-unsigned-replies"] => h.accept_unsigned_replies = false,
            [
                "authentication-port" | "accounting-port" | "timeout" | "retry-interval",
                ..,
            ] => {
                return fail(format!("expected `{} N`", words(&c.toks)));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    fn sub_webvpn(&mut self, mode: &Mode, c: &Cmd) -> Step {
        if let Some(step) = self.webvpn_saml(c) {
            return step;
        }
        let w = &mut self.cfg.webvpn;
        match c.toks.as_slice() {
            ["enable", iface] => {
                if !w.enable_interfaces.iter().any(|i| i == iface) {
                    w.enable_interfaces.push((*iface).to_string());
                }
            }
            ["no", "enable", iface] => w.enable_interfaces.retain(|i| i != iface),
            ["anyconnect", "enable"] => w.anyconnect_enable = true,
            ["no", "anyconnect", "enable"] => w.anyconnect_enable = false,
            ["tunnel-group-list", "enable"] => w.tunnel_group_list_enable = true,
            ["no", "tunnel-group-list", "enable"] => w.tunnel_group_list_enable = false,
            ["saml", "idp", entity] => {
                let idp = w
                    .saml_idps
                    .entry((*entity).to_string())
                    .or_insert_with(|| SamlIdp {
                        entity_id: (*entity).to_string(),
                        line: c.line,
                        ..SamlIdp::default()
                    });
                return Ok(Some(Mode::SamlIdp(idp.entity_id.clone())));
            }
            ["saml", ..] => return fail("expected `saml idp ENTITY-ID`"),
            ["no", "saml", "idp", entity] => {
                w.saml_idps.remove(*entity);
            }
            // A `saml idp` sub-command at webvpn level would silently leave the
            // IdP half-configured: say where it belongs instead.
            ["url" | "base-url" | "signature" | "force" | "timeout", ..]
            | ["trustpoint", "idp" | "sp", ..]
            | ["no", "signature" | "force", ..] => {
                return fail(format!(
                    "`{}` belongs under `saml idp ENTITY-ID`: indent it deeper than the `saml idp` line",
                    words(&c.toks)
                ));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    fn sub_saml_idp(&mut self, entity: &str, mode: &Mode, c: &Cmd) -> Step {
        let tp_slot = |which: &str| format!("saml idp {entity} trustpoint {which}");
        let t = c.toks.as_slice();
        match t {
            ["trustpoint", "idp", n] => {
                self.set_ref(
                    tp_slot("idp"),
                    c.line,
                    RefKind::TrustpointIdp,
                    vec![(*n).to_string()],
                );
            }
            ["trustpoint", "sp", n] => {
                self.set_ref(
                    tp_slot("sp"),
                    c.line,
                    RefKind::TrustpointSp,
                    vec![(*n).to_string()],
                );
            }
            _ => {}
        }
        let Some(idp) = self.cfg.webvpn.saml_idps.get_mut(entity) else {
            return Ok(None);
        };
        match t {
            ["url", "sign-in", u] => idp.sign_in_url = Some(check_url(u)?),
            ["url", "sign-out", u] => idp.sign_out_url = Some(check_url(u)?),
            ["url", ..] => return fail("expected `url sign-in URL` or `url sign-out URL`"),
            ["base-url", u] => idp.base_url = Some(check_url(u)?),
            ["base-url", ..] => return fail("expected `base-url URL`"),
            ["trustpoint", "idp", n] => idp.trustpoint_idp = Some((*n).to_string()),
            ["trustpoint", "sp", n] => idp.trustpoint_sp = Some((*n).to_string()),
            ["trustpoint", ..] => {
                return fail("expected `trustpoint idp NAME` or `trustpoint sp NAME`");
            }
            // ASA's bare `signature` means SHA-1; we take SHA-256 so that a
            // signed request never uses SHA-1 unless asked for by name.
            ["signature"] => idp.signature = Some("rsa-sha256".into()),
            [
                "signature",
                alg @ ("rsa-sha1" | "rsa-sha256" | "rsa-sha384" | "rsa-sha512"),
            ] => idp.signature = Some((*alg).to_string()),
            ["signature", alg, ..] => {
                return fail(format!(
                    "bad signature algorithm `{alg}` (expected rsa-sha1, rsa-sha256, rsa-sha384 or rsa-sha512)"
                ));
            }
            ["no", "signature", ..] => idp.signature = None,
            ["force", "re-authentication"] => idp.force_reauthentication = true,
            ["no", "force", "re-authentication"] => idp.force_reauthentication = false,
            ["timeout", "assertion", n] => {
                idp.timeout_assertion_secs =
                    Some(parse_num(n, "assertion timeout (seconds)", 1, 86400)?)
            }
            ["no", "timeout", "assertion", ..] => idp.timeout_assertion_secs = None,
            ["timeout", ..] => return fail("expected `timeout assertion SECONDS`"),
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    fn sub_group_policy(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        if self.gp_anyconnect(name, c)? || self.gp_client_settings(name, c, false)? {
            return Ok(None);
        }
        let t = c.toks.as_slice();
        let slot = |what: &str| format!("group-policy {name} {what}");
        // References first (they need &mut self, the policy borrow comes after).
        match t {
            ["split-tunnel-network-list", "value", acl] => self.set_ref(
                slot("split"),
                c.line,
                RefKind::SplitAcl,
                vec![(*acl).to_string()],
            ),
            ["split-tunnel-network-list", "none"] => {
                self.set_ref(slot("split"), c.line, RefKind::SplitAcl, vec![])
            }
            ["vpn-filter", "value", acl] => self.set_ref(
                slot("filter"),
                c.line,
                RefKind::FilterAcl,
                vec![(*acl).to_string()],
            ),
            ["vpn-filter", "none"] => {
                self.set_ref(slot("filter"), c.line, RefKind::FilterAcl, vec![])
            }
            ["address-pools", "value", pools @ ..] => {
                let names = pools.iter().map(|p| (*p).to_string()).collect();
                self.set_ref(slot("pools"), c.line, RefKind::Pool4, names)
            }
            ["address-pools", "none"] => {
                self.set_ref(slot("pools"), c.line, RefKind::Pool4, vec![])
            }
            ["ipv6-address-pools", "value", pools @ ..] => {
                let names = pools.iter().map(|p| (*p).to_string()).collect();
                self.set_ref(slot("pools6"), c.line, RefKind::Pool6, names)
            }
            ["ipv6-address-pools", "none"] => {
                self.set_ref(slot("pools6"), c.line, RefKind::Pool6, vec![])
            }
            _ => {}
        }
        let Some(gp) = self.cfg.group_policies.get_mut(name) else {
            return Ok(None);
        };
        match t {
            ["vpn-tunnel-protocol", protos @ ..] if !protos.is_empty() => {
                for p in protos {
                    if !matches!(
                        *p,
                        "ssl-client" | "ssl-clientless" | "ikev1" | "ikev2" | "l2tp-ipsec"
                    ) {
                        return fail(format!(
                            "unknown vpn-tunnel-protocol `{p}` (expected ssl-client, ssl-clientless, ikev1, ikev2 or l2tp-ipsec)"
                        ));
                    }
                }
                gp.vpn_tunnel_protocols = Some(protos.iter().map(|p| (*p).to_string()).collect());
            }
            ["split-tunnel-policy", p] => {
                gp.split_tunnel_policy = Some(match *p {
                    "tunnelall" => SplitTunnelPolicy::TunnelAll,
                    "tunnelspecified" => SplitTunnelPolicy::TunnelSpecified,
                    "excludespecified" => SplitTunnelPolicy::ExcludeSpecified,
                    _ => {
                        return fail(format!(
                            "bad split-tunnel-policy `{p}` (expected tunnelall, tunnelspecified or excludespecified)"
                        ));
                    }
                })
            }
            ["split-tunnel-network-list", "value", acl] => {
                gp.split_tunnel_network_list = Some((*acl).to_string())
            }
            ["split-tunnel-network-list", "none"] => {
                gp.split_tunnel_network_list = Some(String::new())
            }
            ["dns-server", "value", addrs @ ..] if !addrs.is_empty() => {
                let mut v = Vec::new();
                for a in addrs {
                    v.push(parse_ip(a)?);
                }
                gp.dns_servers = Some(v);
            }
            ["dns-server", "none"] => gp.dns_servers = Some(Vec::new()),
            ["default-domain", "value", d] => gp.default_domain = Some((*d).to_string()),
            ["default-domain", "none"] => gp.default_domain = Some(String::new()),
            ["vpn-filter", "value", acl] => gp.vpn_filter = Some((*acl).to_string()),
            ["vpn-filter", "none"] => gp.vpn_filter = Some(String::new()),
            ["vpn-idle-timeout", "alert-interval", ..]
            | ["vpn-session-timeout", "alert-interval", ..] => {
                return self.unknown(c, Some(mode));
            }
            ["vpn-idle-timeout", v] => gp.vpn_idle_timeout_min = Some(minutes_or_none(v)?),
            ["vpn-session-timeout", v] => gp.vpn_session_timeout_min = Some(minutes_or_none(v)?),
            ["vpn-simultaneous-logins", n] => {
                gp.vpn_simultaneous_logins =
                    Some(parse_num(n, "simultaneous logins", 0, 2_147_483_647)?)
            }
            ["address-pools", "value", pools @ ..] if !pools.is_empty() => {
                gp.address_pools = Some(pools.iter().map(|p| (*p).to_string()).collect())
            }
            ["address-pools", "none"] => gp.address_pools = Some(Vec::new()),
            ["ipv6-address-pools", "value", pools @ ..] if !pools.is_empty() => {
                gp.ipv6_address_pools = Some(pools.iter().map(|p| (*p).to_string()).collect())
            }
            ["ipv6-address-pools", "none"] => gp.ipv6_address_pools = Some(Vec::new()),
            ["banner", "value", ..] => {
                let text = rest_after(c.text, 2);
                // Each `banner value` line adds one line, as on ASA.
                gp.banner = Some(match gp.banner.take() {
                    Some(old) if !old.is_empty() => format!("{old}\n{text}"),
                    _ => text.to_string(),
                });
            }
            ["banner", "none"] => gp.banner = Some(String::new()),
            ["webvpn"] => return Ok(Some(Mode::GroupPolicyWebvpn(name.to_string()))),
            [
                "vpn-tunnel-protocol"
                | "split-tunnel-policy"
                | "split-tunnel-network-list"
                | "dns-server"
                | "default-domain"
                | "vpn-filter"
                | "vpn-idle-timeout"
                | "vpn-session-timeout"
                | "vpn-simultaneous-logins"
                | "address-pools"
                | "ipv6-address-pools"
                | "banner",
                ..,
            ] => {
                return fail(format!(
                    "bad arguments to `{}` (expected `value ...` or `none`)",
                    t.first().copied().unwrap_or_default()
                ));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    /// Pushed client settings (`client_settings.rs`). False when not one of them.
    fn gp_client_settings(&mut self, name: &str, c: &Cmd, webvpn: bool) -> PResult<bool> {
        let Some(gp) = self.cfg.group_policies.get_mut(name) else {
            return Ok(false);
        };
        match super::client_settings::parse(&c.toks, webvpn, &mut gp.client)? {
            super::client_settings::Parsed::NotMine => Ok(false),
            super::client_settings::Parsed::Done => Ok(true),
            super::client_settings::Parsed::Warn(m) => {
                self.warn(c.line, m);
                Ok(true)
            }
        }
    }

    /// `anyconnect ...` settings, valid directly in group-policy attributes and in
    /// its `webvpn` sub-mode. Returns false when the line is not one of them.
    fn gp_anyconnect(&mut self, name: &str, c: &Cmd) -> PResult<bool> {
        let Some(gp) = self.cfg.group_policies.get_mut(name) else {
            return Ok(false);
        };
        match c.toks.as_slice() {
            ["anyconnect", "dpd-interval", rest @ ..] => {
                if rest.is_empty() {
                    return fail("expected `anyconnect dpd-interval client N|none gateway N|none`");
                }
                let mut rest = rest;
                loop {
                    rest = match rest {
                        [] => break,
                        ["client", v, tail @ ..] => {
                            gp.anyconnect_dpd_client_secs =
                                Some(secs_or_none(v, "dpd-interval", 5, 3600)?);
                            tail
                        }
                        ["gateway", v, tail @ ..] => {
                            gp.anyconnect_dpd_gateway_secs =
                                Some(secs_or_none(v, "dpd-interval", 5, 3600)?);
                            tail
                        }
                        _ => {
                            return fail(
                                "expected `anyconnect dpd-interval client N|none gateway N|none`",
                            );
                        }
                    };
                }
            }
            ["anyconnect", "ssl", "keepalive", v] => {
                gp.anyconnect_keepalive_secs = Some(secs_or_none(v, "keepalive", 15, 600)?)
            }
            ["anyconnect", "mtu", n] => {
                gp.anyconnect_mtu = Some(parse_num(n, "MTU", 576, 1462)? as u16)
            }
            ["anyconnect", "ssl", "dtls", "enable"] => gp.anyconnect_dtls = Some(true),
            ["anyconnect", "ssl", "dtls", "disable" | "none"] => gp.anyconnect_dtls = Some(false),
            ["anyconnect", "ssl", "keepalive" | "dtls", ..] | ["anyconnect", "mtu", ..] => {
                return fail(format!("bad arguments to `{}`", words(&c.toks)));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn sub_tunnel_general(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        let slot = |what: &str| format!("tunnel-group {name} {what}");
        let toks: &[&str] = c.toks.as_slice();
        match toks {
            ["address-pool", rest @ ..] | ["ipv6-address-pool", rest @ ..] => {
                // `(inside)` names the interface; the headend has no use for it.
                let rest = match rest {
                    [i, tail @ ..] if i.starts_with('(') => tail,
                    _ => rest,
                };
                if rest.is_empty() || rest.len() > 6 {
                    return fail("expected `address-pool POOL [POOL...]` (at most 6 pools)");
                }
                let names: Vec<String> = rest.iter().map(|p| (*p).to_string()).collect();
                let v6 = toks.first() == Some(&"ipv6-address-pool");
                let (s, kind) = if v6 {
                    (slot("ipv6-address-pool"), RefKind::Pool6)
                } else {
                    (slot("address-pool"), RefKind::Pool4)
                };
                self.set_ref(s, c.line, kind, names.clone());
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    if v6 {
                        tg.ipv6_address_pools = names;
                    } else {
                        tg.address_pools = names;
                    }
                }
            }
            ["no", "address-pool", ..] => {
                self.set_ref(slot("address-pool"), c.line, RefKind::Pool4, vec![]);
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.address_pools.clear();
                }
            }
            ["authentication-server-group", rest @ ..] => {
                let group = match rest {
                    [i, g] | [i, g, "LOCAL"] if i.starts_with('(') => *g,
                    [g] | [g, "LOCAL"] => *g,
                    _ => {
                        return fail(
                            "expected `authentication-server-group [(INTERFACE)] GROUP [LOCAL]`",
                        );
                    }
                };
                let value = (group != "LOCAL").then(|| group.to_string());
                let names = value.iter().cloned().collect();
                self.set_ref(
                    slot("authentication"),
                    c.line,
                    RefKind::AaaGroup { local_ok: true },
                    names,
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.authentication_server_group = value;
                }
            }
            ["authorization-server-group", g] => {
                self.set_ref(
                    slot("authorization"),
                    c.line,
                    RefKind::AaaGroup { local_ok: true },
                    vec![(*g).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.authorization_server_group = Some((*g).to_string());
                }
            }
            ["accounting-server-group", g] => {
                self.set_ref(
                    slot("accounting"),
                    c.line,
                    RefKind::AaaGroup { local_ok: false },
                    vec![(*g).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.accounting_server_group = Some((*g).to_string());
                }
            }
            ["default-group-policy", p] => {
                self.set_ref(
                    slot("default-group-policy"),
                    c.line,
                    RefKind::GroupPolicy,
                    vec![(*p).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.default_group_policy = Some((*p).to_string());
                }
            }
            [
                "authorization-server-group" | "accounting-server-group" | "default-group-policy",
                ..,
            ] => {
                return fail(format!("expected `{} NAME`", words(toks)));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    fn sub_tunnel_webvpn(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        if let Some(step) = self.tunnel_webvpn_saml(name, mode, c) {
            return step;
        }
        let t = c.toks.as_slice();
        match t {
            ["authentication", methods @ ..] => {
                let auth = match methods {
                    ["aaa"] => TunnelAuthentication::Aaa,
                    ["saml"] => TunnelAuthentication::Saml,
                    ["certificate"] => TunnelAuthentication::Certificate,
                    [] => return fail("expected `authentication saml|aaa|certificate`"),
                    [_, _, ..] => {
                        return fail(format!(
                            "combined authentication `{}` is not supported (use one of saml, aaa, certificate)",
                            methods.join(" ")
                        ));
                    }
                    [m] => {
                        return fail(format!(
                            "unknown authentication method `{m}` (expected saml, aaa or certificate)"
                        ));
                    }
                };
                if auth == TunnelAuthentication::Saml {
                    self.saml_auth_lines.insert(name.to_string(), c.line);
                } else {
                    self.saml_auth_lines.remove(name);
                }
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.authentication = auth;
                }
            }
            ["group-alias", a, rest @ ..] | ["group-url", a, rest @ ..] => {
                let is_url = t.first() == Some(&"group-url");
                let enabled = match rest {
                    [] | ["enable"] => true,
                    ["disable"] => false,
                    _ => {
                        return fail(format!(
                            "expected `{} {} enable|disable`",
                            if is_url { "group-url" } else { "group-alias" },
                            if is_url { "URL" } else { "ALIAS" }
                        ));
                    }
                };
                let value = if is_url {
                    check_url(a)?
                } else {
                    (*a).to_string()
                };
                let owners = if is_url {
                    &mut self.url_owner
                } else {
                    &mut self.alias_owner
                };
                let key = if is_url {
                    normalize_url(&value)
                } else {
                    value.clone()
                };
                if enabled {
                    if let Some((other, l)) = owners.get(&key)
                        && other != name
                    {
                        return fail(format!(
                            "{} `{value}` is already used by tunnel-group `{other}` (line {l})",
                            if is_url { "group-url" } else { "group-alias" }
                        ));
                    }
                    owners.insert(key, (name.to_string(), c.line));
                } else if owners.get(&key).is_some_and(|(o, _)| o == name) {
                    owners.remove(&key);
                }
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    let list = if is_url {
                        &mut tg.group_urls
                    } else {
                        &mut tg.group_aliases
                    };
                    match list.iter_mut().find(|(v, _)| *v == value) {
                        Some(e) => e.1 = enabled,
                        None => list.push((value, enabled)),
                    }
                }
            }
            ["group-alias" | "group-url"] => {
                return fail(format!("`{}` needs a value", words(t)));
            }
            ["no", kind @ ("group-alias" | "group-url"), a, ..] => {
                let is_url = *kind == "group-url";
                let owners = if is_url {
                    &mut self.url_owner
                } else {
                    &mut self.alias_owner
                };
                let key = if is_url {
                    normalize_url(a)
                } else {
                    (*a).to_string()
                };
                if owners.get(&key).is_some_and(|(o, _)| o == name) {
                    owners.remove(&key);
                }
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    if is_url {
                        tg.group_urls.retain(|(v, _)| v != a);
                    } else {
                        tg.group_aliases.retain(|(v, _)| v != a);
                    }
                }
            }
            ["saml", "identity-provider", e] => {
                self.set_ref(
                    format!("tunnel-group {name} saml"),
                    c.line,
                    RefKind::SamlIdp,
                    vec![(*e).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.saml_identity_provider = Some((*e).to_string());
                }
            }
            ["no", "saml", "identity-provider", ..] => {
                self.set_ref(
                    format!("tunnel-group {name} saml"),
                    c.line,
                    RefKind::SamlIdp,
                    vec![],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.saml_identity_provider = None;
                }
            }
            ["saml", ..] => return fail("expected `saml identity-provider ENTITY-ID`"),
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    // ----------------------------------------------------------- cross-checks

    /// Check every recorded reference and the SAML rules; report the earliest
    /// offending line so fixing errors top to bottom works.
    fn check_references(&self) -> Result<(), ConfigError> {
        let cfg = &self.cfg;
        let mut errors: Vec<(usize, String)> = Vec::new();
        for r in self.refs.values() {
            for n in &r.names {
                if let Some(m) = self.check_ref(r.kind, n) {
                    errors.push((r.line, m));
                }
            }
        }
        for (tg_name, line) in &self.saml_auth_lines {
            if tg_name.contains('.') || tg_name.contains('/') {
                errors.push((
                    *line,
                    format!("tunnel-group `{tg_name}` cannot use SAML: its name goes into the SAML entity ID and ACS URL, so it must not contain dots or slashes"),
                ));
            }
            let Some(tg) = cfg.tunnel_groups.get(tg_name) else {
                continue;
            };
            let Some(entity) = &tg.saml_identity_provider else {
                errors.push((
                    *line,
                    format!("tunnel-group `{tg_name}` uses `authentication saml` but has no `saml identity-provider`"),
                ));
                continue;
            };
            let ref_line = self
                .refs
                .get(&format!("tunnel-group {tg_name} saml"))
                .map_or(*line, |r| r.line);
            if let Some(idp) = cfg.webvpn.saml_idps.get(entity) {
                if idp.sign_in_url.is_none() {
                    errors.push((
                        ref_line,
                        format!("saml idp `{entity}` has no `url sign-in`"),
                    ));
                }
                if idp.trustpoint_idp.is_none() {
                    errors.push((
                        ref_line,
                        format!("saml idp `{entity}` has no `trustpoint idp`: its responses could not be verified"),
                    ));
                }
            }
        }
        for idp in cfg.webvpn.saml_idps.values() {
            if idp.signature.is_some() && idp.trustpoint_sp.is_none() {
                errors.push((
                    idp.line,
                    format!("saml idp `{}` signs requests (`signature`) but has no `trustpoint sp` with a key", idp.entity_id),
                ));
            }
            if idp.signature.is_some()
                && let Some(sp) = &idp.trustpoint_sp
                && cfg.trustpoints.get(sp).is_some_and(|t| t.pkcs12.is_none())
            {
                let line = self
                    .refs
                    .get(&format!("saml idp {} trustpoint sp", idp.entity_id))
                    .map_or(idp.line, |r| r.line);
                errors.push((
                    line,
                    format!("trustpoint `{sp}` has no identity key (`crypto ca import {sp} pkcs12 ...`), needed to sign SAML requests"),
                ));
            }
        }
        if cfg.cts.sxp_default_password.is_none() {
            for conn in &cfg.cts.sxp_connections {
                if conn.password == SxpPassword::Default {
                    errors.push((
                        conn.line,
                        "SXP connection uses `password default` but there is no `cts sxp default password`".into(),
                    ));
                }
            }
        }
        match errors.into_iter().min_by_key(|e| e.0) {
            Some((line, m)) => Err(self.err(line, m)),
            None => Ok(()),
        }
    }

    fn check_ref(&self, kind: RefKind, n: &str) -> Option<String> {
        let cfg = &self.cfg;
        match kind {
            RefKind::Pool4 => (!cfg.ip_local_pools.contains_key(n))
                .then(|| format!("ip local pool `{n}` is not defined")),
            RefKind::Pool6 => (!cfg.ipv6_local_pools.contains_key(n))
                .then(|| format!("ipv6 local pool `{n}` is not defined")),
            RefKind::GroupPolicy => (n != DEFAULT_GROUP_POLICY
                && !cfg.group_policies.contains_key(n))
            .then(|| format!("group-policy `{n}` is not defined")),
            RefKind::SplitAcl => (!cfg.access_lists.contains_key(n))
                .then(|| format!("access-list `{n}` is not defined")),
            RefKind::FilterAcl => match cfg.access_lists.get(n) {
                None => Some(format!("access-list `{n}` is not defined")),
                Some(acl)
                    if acl
                        .entries
                        .iter()
                        .any(|e| matches!(e.kind, AclEntryKind::Standard { .. })) =>
                {
                    Some(format!(
                        "vpn-filter needs an extended access-list; `{n}` is standard"
                    ))
                }
                Some(_) => None,
            },
            RefKind::AaaGroup { local_ok } => {
                if n == "LOCAL" {
                    return (!local_ok).then(|| {
                        "LOCAL cannot be used here; name an aaa-server group".to_string()
                    });
                }
                if cfg.aaa_server_groups.contains_key(n) {
                    return None;
                }
                Some(match self.ignored_aaa.get(n) {
                    Some(p) => format!(
                        "aaa-server group `{n}` uses protocol {p}, which the headend does not support"
                    ),
                    None => format!("aaa-server group `{n}` is not defined"),
                })
            }
            RefKind::SamlIdp => (!cfg.webvpn.saml_idps.contains_key(n))
                .then(|| format!("saml idp `{n}` is not defined under webvpn")),
            RefKind::TrustpointIdp => match cfg.trustpoints.get(n) {
                None => Some(format!("trustpoint `{n}` is not defined")),
                Some(t) if t.ca_certs_der.is_empty() => Some(format!(
                    "trustpoint `{n}` has no certificate (missing `crypto ca authenticate {n}`): IdP signatures could not be checked"
                )),
                Some(_) => None,
            },
            RefKind::TrustpointSp => (!cfg.trustpoints.contains_key(n))
                .then(|| format!("trustpoint `{n}` is not defined")),
            RefKind::SslTrustPoint => match cfg.trustpoints.get(n) {
                None => Some(format!("trustpoint `{n}` is not defined")),
                Some(t) if t.pkcs12.is_none() => Some(format!(
                    "trustpoint `{n}` has no identity certificate and key (missing `crypto ca import {n} pkcs12 ...`)"
                )),
                Some(_) => None,
            },
        }
    }
}

// ------------------------------------------------------------------ helpers

fn is_comment(text: &str) -> bool {
    // `:` starts the header/footer lines of `show running-config` (`: Saved`, `:end`).
    text.is_empty() || text.starts_with('!') || text.starts_with(':')
}

/// `@NAME@` (upper case, digits, `_`), the lab's fill-in marker.
fn find_placeholder(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b.get(i) != Some(&b'@') {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while b
            .get(j)
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
        {
            j += 1;
        }
        let starts_upper = b.get(i + 1).is_some_and(|c| c.is_ascii_uppercase());
        if starts_upper && b.get(j) == Some(&b'@') {
            return s.get(i..=j);
        }
        i = j;
    }
    None
}

/// The leading keywords of a command, for messages. Stops before anything that
/// may be a secret (`key X`, `password X`, or a non-keyword token).
fn words(toks: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for t in toks.iter().take(4) {
        let keyword = !t.is_empty()
            && t.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '+');
        if !keyword {
            break;
        }
        out.push(t);
        if matches!(
            *t,
            "password" | "passwd" | "key" | "secret" | "community" | "pre-shared-key"
        ) {
            break;
        }
    }
    if out.is_empty() {
        "…".into()
    } else {
        out.join(" ")
    }
}

/// The text after the first `n` whitespace-separated tokens.
fn rest_after(text: &str, n: usize) -> &str {
    let mut s = text.trim_start();
    for _ in 0..n {
        match s.find(char::is_whitespace) {
            Some(i) => s = s.get(i..).unwrap_or("").trim_start(),
            None => return "",
        }
    }
    s.trim_end()
}

fn is_masked(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c == '*')
}

fn masked_key_msg() -> String {
    "the key is masked (`*****`, as `show running-config` prints it); give the real key (`more system:running-config` shows it)".into()
}

fn ssl_msg(e: &openssl::error::ErrorStack) -> String {
    let s = e.to_string();
    if s.is_empty() {
        "invalid data".into()
    } else {
        s
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    b.chunks(2)
        .map(|p| {
            let hi = (*p.first().unwrap_or(&b'x') as char).to_digit(16);
            let lo = (*p.get(1).unwrap_or(&b'x') as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err("bad hex digit".to_string()),
            }
        })
        .collect()
}

fn parse_num(s: &str, what: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= u64::from(min) && n <= u64::from(max) => Ok(n as u32),
        _ => Err(format!(
            "bad {what} `{s}` (expected a number from {min} to {max})"
        )),
    }
}

/// Minutes, or `none` = no limit (stored as 0).
fn minutes_or_none(s: &str) -> Result<u32, String> {
    if s == "none" {
        Ok(0)
    } else {
        parse_num(s, "timeout (minutes)", 1, 35_791_394)
    }
}

/// Seconds, or `none` = disabled (stored as 0).
fn secs_or_none(s: &str, what: &str, min: u32, max: u32) -> Result<u32, String> {
    if s == "none" {
        Ok(0)
    } else {
        parse_num(s, what, min, max)
    }
}

fn parse_v4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("bad IPv4 address `{s}`"))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("bad IP address `{s}`"))
}

fn parse_mask(s: &str) -> Result<Ipv4Addr, String> {
    let m: Ipv4Addr = s.parse().map_err(|_| format!("bad netmask `{s}`"))?;
    let v = u32::from(m);
    if v.leading_ones() + v.trailing_zeros() != 32 {
        return Err(format!(
            "bad netmask `{s}`: the one bits must be contiguous"
        ));
    }
    Ok(m)
}

fn mask_len(m: Ipv4Addr) -> u8 {
    u32::from(m).leading_ones() as u8
}

fn classful_mask(a: Ipv4Addr) -> Ipv4Addr {
    match a.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

fn full_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// True when `ip` has bits set beyond `len` (ASA rejects such address/mask pairs).
fn host_bits_set(ip: IpAddr, len: u8) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & !m != 0
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & !m != 0
        }
    }
}

/// `ADDR/LEN` (IPv4 or IPv6), network address only.
fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let Some((a, l)) = s.split_once('/') else {
        return Err(format!("expected ADDRESS/LENGTH, found `{s}`"));
    };
    let ip = parse_ip(a)?;
    let len = parse_num(l, "prefix length", 0, u32::from(full_len(ip)))? as u8;
    if host_bits_set(ip, len) {
        return Err(format!(
            "`{s}` has host bits set: the network address is needed"
        ));
    }
    Ok((ip, len))
}

fn check_url(u: &str) -> Result<String, String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(u.to_string()),
        _ => Err(format!("bad URL `{u}` (expected https://HOST/...)")),
    }
}

/// Group URLs compare without scheme case, host case or a trailing slash.
pub(super) fn normalize_url(u: &str) -> String {
    let lower = u.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("https://") {
        ("https://", u.get(8..).unwrap_or(""))
    } else if lower.starts_with("http://") {
        ("http://", u.get(7..).unwrap_or(""))
    } else {
        ("", u)
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    format!(
        "{scheme}{}{}",
        host.to_ascii_lowercase(),
        path.trim_end_matches('/')
    )
}

// ------------------------------------------------------------- access lists

fn parse_action(s: &str) -> Result<AclAction, String> {
    match s {
        "permit" => Ok(AclAction::Permit),
        "deny" => Ok(AclAction::Deny),
        _ => Err(format!("expected permit or deny, found `{s}`")),
    }
}

fn parse_standard(t: &[&str], i: usize) -> Result<(AclAction, AclEntryKind), String> {
    let rest = t.get(i..).unwrap_or(&[]);
    let (action, network) = match rest {
        [a, "any4" | "any"] => (parse_action(a)?, AddrMatch::Any4),
        [a, "host", h] => (
            parse_action(a)?,
            AddrMatch::Prefix(IpAddr::V4(parse_v4(h)?), 32),
        ),
        [a, addr, mask] => {
            let ip = parse_v4(addr)?;
            let mask = parse_mask(mask)?;
            let len = mask_len(mask);
            if host_bits_set(IpAddr::V4(ip), len) {
                return Err(format!(
                    "address {ip} has host bits set for mask {mask}: the network address is needed"
                ));
            }
            (parse_action(a)?, AddrMatch::Prefix(IpAddr::V4(ip), len))
        }
        _ => {
            return Err(
                "expected `access-list NAME standard permit|deny ADDRESS MASK | host ADDRESS | any4`"
                    .into(),
            );
        }
    };
    Ok((action, AclEntryKind::Standard { network }))
}

fn parse_extended(t: &[&str], start: usize) -> Result<(AclAction, AclEntryKind), String> {
    let tok = |i: usize, what: &str| -> Result<&str, String> {
        t.get(i)
            .copied()
            .ok_or_else(|| format!("access-list entry ends early: missing {what}"))
    };
    let action = parse_action(tok(start, "permit or deny")?)?;
    let protocol = parse_protocol(tok(start + 1, "protocol")?)?;
    let mut i = start + 2;
    let src_sg = parse_sg(t, &mut i)?;
    let src = parse_addr(t, &mut i, "source")?;
    let src_port = parse_port_match(t, &mut i, protocol)?;
    let dst_sg = parse_sg(t, &mut i)?;
    let dst = parse_addr(t, &mut i, "destination")?;
    let dst_port = parse_port_match(t, &mut i, protocol)?;
    let mut icmp_type = None;
    if matches!(protocol, AclProtocol::Icmp | AclProtocol::Icmp6)
        && let Some(ty) = t.get(i)
        && !matches!(*ty, "log" | "inactive" | "time-range")
    {
        icmp_type = Some(parse_icmp_type(ty, protocol)?);
        i += 1;
    }
    let mut log = None;
    let mut inactive = false;
    while let Some(opt) = t.get(i) {
        i += 1;
        match *opt {
            "log" => {
                let (l, used) = crate::config::ace_log::parse(t.get(i..).unwrap_or(&[]))?;
                log = l;
                i += used;
            }
            "inactive" => inactive = true,
            "time-range" => {
                return Err(
                    "time-range is not supported (the entry would apply at all times)".into(),
                );
            }
            "eq" | "neq" | "lt" | "gt" | "range" => {
                return Err(format!(
                    "unexpected `{opt}`: port matches need protocol tcp or udp and come right after an address"
                ));
            }
            other => return Err(format!("unexpected `{other}` in access-list entry")),
        }
    }
    Ok((
        action,
        AclEntryKind::Extended(ExtendedAce {
            protocol,
            src_sg,
            src,
            src_port,
            dst_sg,
            dst,
            dst_port,
            icmp_type,
            log,
            inactive,
        }),
    ))
}

fn parse_protocol(s: &str) -> Result<AclProtocol, String> {
    let n: u8 = match s {
        "ip" => return Ok(AclProtocol::Ip),
        "tcp" => return Ok(AclProtocol::Tcp),
        "udp" => return Ok(AclProtocol::Udp),
        "icmp" => return Ok(AclProtocol::Icmp),
        "icmp6" => return Ok(AclProtocol::Icmp6),
        "igmp" => 2,
        "ipinip" => 4,
        "igrp" => 9,
        "gre" | "pptp" => 47,
        "esp" | "ipsec" => 50,
        "ah" => 51,
        "eigrp" => 88,
        "ospf" => 89,
        "nos" => 94,
        "pim" => 103,
        "pcp" => 108,
        "snp" => 109,
        "sctp" => 132,
        "object" | "object-group" => {
            return Err(format!(
                "`{s}` is not supported in access-lists; write the protocol"
            ));
        }
        _ => match s.parse::<u8>() {
            Ok(n) => n,
            Err(_) => {
                return Err(format!(
                    "unknown protocol `{s}` (expected ip, tcp, udp, icmp, icmp6, a name such as gre or esp, or a number 0-255)"
                ));
            }
        },
    };
    // Numbers of the protocols we name get the named form, so ports/types work.
    Ok(match n {
        1 => AclProtocol::Icmp,
        6 => AclProtocol::Tcp,
        17 => AclProtocol::Udp,
        58 => AclProtocol::Icmp6,
        n => AclProtocol::Number(n),
    })
}

fn parse_sg(t: &[&str], i: &mut usize) -> Result<Option<SecurityGroupMatch>, String> {
    if t.get(*i) != Some(&"security-group") {
        return Ok(None);
    }
    let r = match (t.get(*i + 1).copied(), t.get(*i + 2).copied()) {
        (Some("tag"), Some(n)) => {
            SecurityGroupMatch::Tag(parse_num(n, "security-group tag", 0, 65535)? as u16)
        }
        (Some("name"), Some(n)) => SecurityGroupMatch::Name(n.to_string()),
        (Some("object-group"), _) => {
            return Err("`security-group object-group` is not supported; use `security-group tag N` or `name X`".into());
        }
        _ => return Err("expected `security-group tag N` or `security-group name NAME`".into()),
    };
    *i += 3;
    Ok(Some(r))
}

fn parse_addr(t: &[&str], i: &mut usize, what: &str) -> Result<AddrMatch, String> {
    let Some(a) = t.get(*i).copied() else {
        return Err(format!(
            "access-list entry ends early: missing {what} address"
        ));
    };
    *i += 1;
    Ok(match a {
        "any" => AddrMatch::Any,
        "any4" => AddrMatch::Any4,
        "any6" => AddrMatch::Any6,
        "host" => {
            let h = t
                .get(*i)
                .ok_or_else(|| format!("`host` needs the {what} address"))?;
            *i += 1;
            let ip = parse_ip(h)?;
            AddrMatch::Prefix(ip, full_len(ip))
        }
        "interface" | "object" | "object-group" | "object-group-security" => {
            return Err(format!(
                "`{a}` as {what} is not supported; use host A, ADDRESS MASK, ADDRESS/LEN or any"
            ));
        }
        p if p.contains('/') => {
            let (ip, len) = parse_prefix(p)?;
            AddrMatch::Prefix(ip, len)
        }
        a => {
            let ip: Ipv4Addr = a.parse().map_err(|_| {
                if a.contains(':') {
                    format!("bad {what} address `{a}` (IPv6 needs `host A` or A/LEN)")
                } else {
                    format!("bad {what} address `{a}`")
                }
            })?;
            let m = t
                .get(*i)
                .ok_or_else(|| format!("{what} address {ip} needs a netmask"))?;
            *i += 1;
            let mask = parse_mask(m)?;
            let len = mask_len(mask);
            if host_bits_set(IpAddr::V4(ip), len) {
                return Err(format!(
                    "{what} address {ip} has host bits set for mask {mask}: the network address is needed"
                ));
            }
            AddrMatch::Prefix(IpAddr::V4(ip), len)
        }
    })
}

fn parse_port_match(
    t: &[&str],
    i: &mut usize,
    proto: AclProtocol,
) -> Result<Option<PortMatch>, String> {
    let Some(op) = t.get(*i).copied() else {
        return Ok(None);
    };
    if !matches!(op, "eq" | "neq" | "lt" | "gt" | "range") {
        return Ok(None);
    }
    if !matches!(
        proto,
        AclProtocol::Tcp | AclProtocol::Udp | AclProtocol::Number(132)
    ) {
        return Err(format!("port match `{op}` needs protocol tcp or udp"));
    }
    let port = |k: usize| -> Result<u16, String> {
        let p = t.get(k).ok_or_else(|| format!("`{op}` needs a port"))?;
        parse_port(p)
    };
    let m = match op {
        "eq" => PortMatch::Eq(port(*i + 1)?),
        "neq" => PortMatch::Neq(port(*i + 1)?),
        "lt" => PortMatch::Lt(port(*i + 1)?),
        "gt" => PortMatch::Gt(port(*i + 1)?),
        _ => {
            let (a, b) = (port(*i + 1)?, port(*i + 2)?);
            if a > b {
                return Err(format!("port range {a} {b} is reversed"));
            }
            *i += 1;
            PortMatch::Range(a, b)
        }
    };
    *i += 2;
    Ok(Some(m))
}

/// ASA's port names (`show run` prints these instead of numbers).
fn parse_port(s: &str) -> Result<u16, String> {
    if s.chars().all(|c| c.is_ascii_digit()) {
        return parse_num(s, "port", 0, 65535).map(|n| n as u16);
    }
    let n = match s {
        "aol" => 5190,
        "bgp" => 179,
        "biff" => 512,
        "bootpc" => 68,
        "bootps" => 67,
        "chargen" => 19,
        "cifs" => 3020,
        "citrix-ica" => 1494,
        "cmd" | "rsh" | "syslog" => 514,
        "ctiqbe" => 2748,
        "daytime" => 13,
        "discard" => 9,
        "dnsix" => 195,
        "domain" => 53,
        "echo" => 7,
        "exec" => 512,
        "finger" => 79,
        "ftp" => 21,
        "ftp-data" => 20,
        "gopher" => 70,
        "h323" => 1720,
        "hostname" => 101,
        "http" | "www" => 80,
        "https" => 443,
        "ident" => 113,
        "imap4" => 143,
        "irc" => 194,
        "isakmp" => 500,
        "kerberos" => 88,
        "klogin" => 543,
        "kshell" => 544,
        "ldap" => 389,
        "ldaps" => 636,
        "login" | "who" => 513,
        "lotusnotes" => 1352,
        "lpd" => 515,
        "mobile-ip" => 434,
        "nameserver" => 42,
        "netbios-dgm" => 138,
        "netbios-ns" => 137,
        "netbios-ssn" => 139,
        "nfs" => 2049,
        "nntp" => 119,
        "ntp" => 123,
        "pcanywhere-data" => 5631,
        "pcanywhere-status" => 5632,
        "pim-auto-rp" => 496,
        "pop2" => 109,
        "pop3" => 110,
        "pptp" => 1723,
        "radius" => 1645,
        "radius-acct" => 1646,
        "rip" => 520,
        "rtsp" => 554,
        "secureid-udp" => 5510,
        "sip" => 5060,
        "smtp" => 25,
        "snmp" => 161,
        "snmptrap" => 162,
        "sqlnet" => 1521,
        "ssh" => 22,
        "sunrpc" => 111,
        "tacacs" => 49,
        "talk" => 517,
        "telnet" => 23,
        "tftp" => 69,
        "time" => 37,
        "uucp" => 540,
        "vxlan" => 4789,
        "whois" => 43,
        "xdmcp" => 177,
        _ => {
            return Err(format!(
                "unknown port `{s}` (use a number 0-65535 or a name such as www, https, ssh, domain)"
            ));
        }
    };
    Ok(n)
}

fn parse_icmp_type(s: &str, proto: AclProtocol) -> Result<u8, String> {
    if s.chars().all(|c| c.is_ascii_digit()) {
        return parse_num(s, "ICMP type", 0, 255).map(|n| n as u8);
    }
    let n = if proto == AclProtocol::Icmp6 {
        match s {
            "unreachable" => 1,
            "packet-too-big" => 2,
            "time-exceeded" => 3,
            "parameter-problem" => 4,
            "echo" => 128,
            "echo-reply" => 129,
            "membership-query" => 130,
            "membership-report" => 131,
            "membership-reduction" => 132,
            "router-solicitation" => 133,
            "router-advertisement" => 134,
            "neighbor-solicitation" => 135,
            "neighbor-advertisement" => 136,
            "neighbor-redirect" | "redirect" => 137,
            "router-renumbering" => 138,
            _ => return Err(format!("unknown ICMPv6 type `{s}`")),
        }
    } else {
        match s {
            "echo-reply" => 0,
            "unreachable" => 3,
            "source-quench" => 4,
            "redirect" => 5,
            "alternate-address" => 6,
            "echo" => 8,
            "router-advertisement" => 9,
            "router-solicitation" => 10,
            "time-exceeded" => 11,
            "parameter-problem" => 12,
            "timestamp-request" => 13,
            "timestamp-reply" => 14,
            "information-request" => 15,
            "information-reply" => 16,
            "mask-request" => 17,
            "mask-reply" => 18,
            "traceroute" => 30,
            "conversion-error" => 31,
            "mobile-redirect" => 32,
            _ => return Err(format!("unknown ICMP type `{s}`")),
        }
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::{X509Builder, X509NameBuilder};
    use std::sync::OnceLock;

    const P12_PASS: &str = "p12-secret";

    struct Creds {
        cert_der: Vec<u8>,
        cert_b64: String,
        p12_b64: String,
    }

    /// A self-signed certificate and a PKCS#12 of it, made once per test run.
    fn creds() -> &'static Creds {
        static C: OnceLock<Creds> = OnceLock::new();
        C.get_or_init(|| {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            let key: PKey<Private> = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
            let mut name = X509NameBuilder::new().unwrap();
            name.append_entry_by_text("CN", "test.example").unwrap();
            let name = name.build();
            let mut b = X509Builder::new().unwrap();
            b.set_version(2).unwrap();
            let serial = BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap();
            b.set_serial_number(&serial).unwrap();
            b.set_subject_name(&name).unwrap();
            b.set_issuer_name(&name).unwrap();
            b.set_pubkey(&key).unwrap();
            b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
                .unwrap();
            b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
                .unwrap();
            b.sign(&key, MessageDigest::sha256()).unwrap();
            let cert = b.build();
            let p12 = Pkcs12::builder()
                .name("id")
                .pkey(&key)
                .cert(&cert)
                .build2(P12_PASS)
                .unwrap();
            let b64 = base64::engine::general_purpose::STANDARD;
            let cert_der = cert.to_der().unwrap();
            Creds {
                cert_b64: b64.encode(&cert_der),
                cert_der,
                p12_b64: b64.encode(p12.to_der().unwrap()),
            }
        })
    }

    /// Base64 wrapped at 64 columns, as PEM and ASA exports do.
    fn wrap64(s: &str) -> Vec<String> {
        s.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect()
    }

    fn cfg(lines: &[&str]) -> String {
        lines.join("\n")
    }

    fn ok(text: &str) -> Config {
        match parse_str(text, "t.cfg") {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e}\n{text}"),
        }
    }

    #[track_caller]
    fn bad(text: &str, line: usize, needle: &str) -> ConfigError {
        let e = match parse_str(text, "t.cfg") {
            Ok(_) => panic!("expected an error at line {line} containing {needle:?}\n{text}"),
            Err(e) => e,
        };
        assert_eq!(e.line, line, "wrong line for: {e}");
        assert!(
            e.message.contains(needle),
            "message {:?} lacks {needle:?}",
            e.message
        );
        assert_eq!(e.file, "t.cfg");
        assert_eq!(e.to_string(), format!("t.cfg:{line}: {}", e.message));
        e
    }

    /// Trustpoint `IDP` with a CA cert and `ID` with a PKCS#12 identity.
    fn trustpoints() -> Vec<String> {
        let c = creds();
        let mut v: Vec<String> = vec![
            "crypto ca trustpoint IDP".into(),
            " enrollment terminal".into(),
            "crypto ca authenticate IDP".into(),
            "-----BEGIN CERTIFICATE-----".into(),
        ];
        v.extend(wrap64(&c.cert_b64));
        v.push("-----END CERTIFICATE-----".into());
        v.push("quit".into());
        v.push("crypto ca trustpoint ID".into());
        v.push(format!("crypto ca import ID pkcs12 {P12_PASS}"));
        v.extend(wrap64(&c.p12_b64));
        v.push("quit".into());
        v
    }

    fn with_tps(rest: &[&str]) -> (String, usize) {
        let mut v = trustpoints();
        let n = v.len();
        v.extend(rest.iter().map(|s| s.to_string()));
        (v.join("\n"), n)
    }

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
    fn config_ip_local_pool() {
        let c = ok(&cfg(&[
            "ip local pool P 198.18.100.10-198.18.100.250 mask 255.255.255.0",
            "ip local pool Q 10.1.2.3-10.1.2.9",
        ]));
        let p = &c.ip_local_pools["P"];
        assert_eq!(p.first, Ipv4Addr::new(198, 18, 100, 10));
        assert_eq!(p.last, Ipv4Addr::new(198, 18, 100, 250));
        assert_eq!(p.mask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(p.line, 1);
        // classful default without `mask`
        assert_eq!(c.ip_local_pools["Q"].mask, Ipv4Addr::new(255, 0, 0, 0));
    }

    #[test]
    fn config_ip_local_pool_errors() {
        bad(
            "!\nip local pool P 198.18.100.300-198.18.100.250 mask 255.255.255.0",
            2,
            "bad IPv4 address `198.18.100.300`",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask 255.0.255.0",
            1,
            "bad netmask `255.0.255.0`",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask 255.255.255.x",
            1,
            "bad netmask",
        );
        bad(
            "ip local pool P 1.1.1.9-1.1.1.1 mask 255.255.255.0",
            1,
            "reversed",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.2.1 mask 255.255.255.0",
            1,
            "not inside one network",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask",
            1,
            "expected `ip local pool NAME",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask 255.255.255.0\nip local pool P 1.1.1.1-1.1.1.9 mask 255.255.255.0",
            2,
            "already defined at line 1",
        );
    }

    #[test]
    fn config_ipv6_local_pool() {
        let c = ok("ipv6 local pool P6 fd00:100::10/64 200");
        let p = &c.ipv6_local_pools["P6"];
        assert_eq!(p.first, "fd00:100::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!((p.prefix_len, p.count, p.line), (64, 200, 1));
        bad("ipv6 local pool P6 fd00:100::10 200", 1, "ADDRESS/PREFIX");
        bad(
            "ipv6 local pool P6 fd00:zz::10/64 200",
            1,
            "bad IPv6 address",
        );
        bad("ipv6 local pool P6 fd00::10/64 0", 1, "number of addresses");
    }

    #[test]
    fn config_interface() {
        let c = ok(&cfg(&[
            "interface GigabitEthernet0/0",
            " nameif outside",
            " security-level 0",
            " ip address 203.0.113.2 255.255.255.0 standby 203.0.113.3",
            "interface GigabitEthernet0/1",
            " nameif inside",
            " ip address 198.18.1.1 255.255.255.0",
            " no nameif",
        ]));
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[0].nameif.as_deref(), Some("outside"));
        assert_eq!(
            c.interfaces[0].ip_address,
            Some((
                Ipv4Addr::new(203, 0, 113, 2),
                Ipv4Addr::new(255, 255, 255, 0)
            ))
        );
        assert_eq!(c.interfaces[1].nameif, None);
        assert_eq!(c.interfaces[1].line, 5);
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].line, 3);
        assert!(
            c.warnings[0].message.contains("security-level"),
            "{:?}",
            c.warnings
        );
        bad(
            "interface G0\n ip address 1.2.3.4 255.255.0.255",
            2,
            "bad netmask",
        );
        bad(
            "interface G0\n ip address 1.2.3 255.255.255.0",
            2,
            "bad IPv4 address",
        );
    }

    // ------------------------------------------------------------- certificates

    #[test]
    fn config_trustpoints_and_certs() {
        let (text, n) = with_tps(&["ssl trust-point ID outside"]);
        let text = text.replace(
            " enrollment terminal",
            " revocation-check none\n no ca-check\n no id-usage\n enrollment terminal",
        );
        let c = ok(&text);
        let idp = &c.trustpoints["IDP"];
        assert!(
            idp.enrollment_terminal
                && idp.revocation_check_none
                && idp.no_ca_check
                && idp.no_id_usage
        );
        assert_eq!(idp.ca_certs_der, vec![creds().cert_der.clone()]);
        assert!(idp.pkcs12.is_none());
        let id = &c.trustpoints["ID"];
        let blob = id.pkcs12.as_ref().unwrap();
        assert_eq!(blob.password, P12_PASS);
        assert!(
            Pkcs12::from_der(&blob.der)
                .unwrap()
                .parse2(P12_PASS)
                .is_ok()
        );
        assert_eq!(
            c.ssl_trust_points,
            vec![SslTrustPoint {
                trustpoint: "ID".into(),
                interface: Some("outside".into()),
                line: n + 3 + 1
            }]
        );
    }

    #[test]
    fn config_two_certs_in_one_authenticate() {
        let c = creds();
        let text = cfg(&[
            "crypto ca trustpoint T",
            "crypto ca authenticate T",
            "-----BEGIN CERTIFICATE-----",
            &c.cert_b64,
            "-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----",
            &c.cert_b64,
            "-----END CERTIFICATE-----",
            "quit",
            "hostname h",
        ]);
        let cfg = ok(&text);
        assert_eq!(cfg.trustpoints["T"].ca_certs_der.len(), 2);
        assert_eq!(cfg.hostname.as_deref(), Some("h"));
    }

    #[test]
    fn config_authenticate_errors() {
        let c = creds();
        // missing quit: points at the authenticate line
        bad(
            &cfg(&[
                "crypto ca trustpoint T",
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                &c.cert_b64,
                "-----END CERTIFICATE-----",
            ]),
            2,
            "no `quit`",
        );
        // a command where quit should be
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                &c.cert_b64,
                "-----END CERTIFICATE-----",
                "hostname x",
            ]),
            5,
            "expected -----BEGIN CERTIFICATE----- or `quit`",
        );
        // valid base64 that is not a certificate: at the BEGIN line
        bad(
            &cfg(&[
                "!",
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                "aGVsbG8gd29ybGQ=",
                "-----END CERTIFICATE-----",
                "quit",
            ]),
            3,
            "bad certificate",
        );
        // not base64
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                "MII%%%",
                "-----END CERTIFICATE-----",
                "quit",
            ]),
            2,
            "bad base64",
        );
        // missing END
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN CERTIFICATE-----",
                &c.cert_b64,
                "quit",
            ]),
            2,
            "no -----END CERTIFICATE-----",
        );
        // a private key is not a certificate
        bad(
            &cfg(&[
                "crypto ca authenticate T",
                "-----BEGIN PRIVATE KEY-----",
                "AAAA",
                "-----END PRIVATE KEY-----",
                "quit",
            ]),
            2,
            "expected -----BEGIN CERTIFICATE-----",
        );
        bad(
            &cfg(&["crypto ca authenticate T", "quit"]),
            1,
            "no certificate",
        );
    }

    #[test]
    fn config_pkcs12_errors() {
        let c = creds();
        let p12 = wrap64(&c.p12_b64);
        let mut wrong = vec![
            "crypto ca trustpoint ID".to_string(),
            "crypto ca import ID pkcs12 wrong-pass".into(),
        ];
        wrong.extend(p12.iter().cloned());
        wrong.push("quit".into());
        bad(&wrong.join("\n"), 2, "wrong password");

        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "aGVsbG8gd29ybGQ=", "quit"]),
            2,
            "not a PKCS#12",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "AAAA", "AA*A", "quit"]),
            3,
            "expected base64",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "AAAA", "A=AA", "quit"]),
            3,
            "bad base64",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "AAAA"]),
            1,
            "no `quit`",
        );
        bad(
            &cfg(&["crypto ca import ID pkcs12 x", "quit"]),
            1,
            "no data",
        );
        bad(
            "crypto ca import ID pkcs12",
            1,
            "needs the PKCS#12 password",
        );
        bad(
            "crypto ca import ID certificate",
            1,
            "only `crypto ca import NAME pkcs12",
        );

        // ASA export framing is accepted
        let mut framed = vec![
            "crypto ca import ID pkcs12 p12-secret".to_string(),
            "-----BEGIN PKCS12-----".into(),
        ];
        framed.extend(p12);
        framed.push("-----END PKCS12-----".into());
        framed.push("quit".into());
        assert!(ok(&framed.join("\n")).trustpoints["ID"].pkcs12.is_some());
    }

    #[test]
    fn config_certificate_chain_hex() {
        let c = creds();
        let hex: String = c.cert_der.iter().map(|b| format!("{b:02x}")).collect();
        let text = cfg(&[
            "crypto ca certificate chain T",
            " certificate ca 07",
            &format!("    {}", hex.get(..40).unwrap()),
            &format!("    {}", hex.get(40..).unwrap()),
            "  quit",
            " certificate 1234",
            "    3082",
            "  quit",
            "hostname h",
        ]);
        let cfg = ok(&text);
        assert_eq!(cfg.trustpoints["T"].ca_certs_der, vec![c.cert_der.clone()]);
        assert_eq!(cfg.warnings.len(), 1);
        assert_eq!(cfg.warnings[0].line, 6);
        bad(&cfg_lines_hex_bad(), 2, "bad certificate");
    }

    fn cfg_lines_hex_bad() -> String {
        cfg(&[
            "crypto ca certificate chain T",
            " certificate ca 01",
            "   30zz",
            "  quit",
        ])
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

    // --------------------------------------------------------------- aaa-server

    #[test]
    fn config_aaa_server() {
        let c = ok(&cfg(&[
            "aaa-server ISE protocol radius",
            " authorize-only",
            " interim-accounting-update periodic 1",
            " dynamic-authorization",
            " max-failed-attempts 4",
            " reactivation-mode depletion deadtime 5",
            " merge-dacl before-avpair",
            "aaa-server ISE (inside) host 198.18.1.20",
            " key s3cret",
            " authentication-port 1645",
            " accounting-port 1646",
            " timeout 5",
            " retry-interval 2",
            "aaa-server ISE (inside) host 198.18.1.21 k2 timeout 7",
            "aaa-server ISE host 2001:db8::1",
            "aaa-server R2 protocol radius",
            " dynamic-authorization port 3799",
            " interim-accounting-update",
            "aaa-server R2 host 10.0.0.1",
        ]));
        let g = &c.aaa_server_groups["ISE"];
        assert_eq!(g.protocol, AaaProtocol::Radius);
        assert!(g.authorize_only);
        assert_eq!(g.interim_accounting_update_hours, Some(1));
        assert_eq!(g.dynamic_authorization, Some(1700));
        assert_eq!(
            (g.max_failed_attempts, g.deadtime_minutes, g.line),
            (4, 5, 1)
        );
        assert_eq!(g.hosts.len(), 3);
        let h = &g.hosts[0];
        assert_eq!(h.interface.as_deref(), Some("inside"));
        assert_eq!(h.address, "198.18.1.20".parse::<IpAddr>().unwrap());
        assert_eq!(h.key.as_deref(), Some("s3cret"));
        assert_eq!(
            (
                h.authentication_port,
                h.accounting_port,
                h.timeout_secs,
                h.retry_interval_secs,
                h.line
            ),
            (1645, 1646, 5, 2, 8)
        );
        let h = &g.hosts[1];
        assert_eq!((h.key.as_deref(), h.timeout_secs), (Some("k2"), 7));
        assert_eq!(
            (
                h.authentication_port,
                h.accounting_port,
                h.retry_interval_secs
            ),
            (1812, 1813, 10)
        );
        assert_eq!(g.hosts[2].interface, None);
        let r2 = &c.aaa_server_groups["R2"];
        assert_eq!(r2.dynamic_authorization, Some(3799));
        assert_eq!(r2.interim_accounting_update_hours, Some(0));
        assert_eq!((r2.max_failed_attempts, r2.deadtime_minutes), (3, 10));
        assert!(!format!("{h:?}").contains("k2"), "Debug must hide the key");
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].line, 7);
    }

    #[test]
    fn config_aaa_server_errors() {
        bad(
            "aaa-server ISE (inside) host 1.2.3.4",
            1,
            "aaa-server group `ISE` is not defined",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE (inside) host 1.2.3.999",
            2,
            "bad server address",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n timeout 0",
            3,
            "bad timeout (seconds) `0`",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n retry-interval 11",
            3,
            "retry-interval",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n authentication-port 70000",
            3,
            "bad port",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n key *****",
            3,
            "masked",
        );
        bad(
            "aaa-server ISE protocol radius\n max-failed-attempts 9",
            2,
            "max-failed-attempts",
        );
        bad(
            "aaa-server ISE protocol radius\n dynamic-authorization port x",
            2,
            "bad port",
        );
        bad("aaa-server ISE protocol", 1, "protocol radius");
        // other protocols are ignored with a warning, their hosts too
        let c = ok(
            "aaa-server AD protocol ldap\n ldap-base-dn dc=x\naaa-server AD (inside) host 1.2.3.4\n ldap-login-password secret",
        );
        assert!(c.aaa_server_groups.is_empty());
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].message.contains("protocol ldap"));
    }

    // ------------------------------------------------------------- webvpn / saml

    #[test]
    fn config_webvpn_and_saml_idp() {
        let (text, n) = with_tps(&[
            "webvpn",
            " enable outside",
            " anyconnect enable",
            " tunnel-group-list enable",
            " anyconnect image disk0:/anyconnect.pkg 1",
            " saml idp https://idp.example/meta",
            "  url sign-in https://idp.example/sso",
            "  url sign-out https://idp.example/slo",
            "  base-url https://vpn.example",
            "  trustpoint idp IDP",
            "  trustpoint sp ID",
            "  signature rsa-sha512",
            "  force re-authentication",
            "  timeout assertion 300",
            "  internal",
            " saml idp urn:other",
            "  trustpoint idp IDP",
            "  signature",
            "  trustpoint sp ID",
            "  no signature",
            "  no force re-authentication",
            " error-recovery disable",
        ]);
        let c = ok(&text);
        let w = &c.webvpn;
        assert_eq!(w.enable_interfaces, vec!["outside".to_string()]);
        assert!(w.anyconnect_enable && w.tunnel_group_list_enable);
        let idp = &w.saml_idps["https://idp.example/meta"];
        assert_eq!(idp.sign_in_url.as_deref(), Some("https://idp.example/sso"));
        assert_eq!(idp.sign_out_url.as_deref(), Some("https://idp.example/slo"));
        assert_eq!(idp.base_url.as_deref(), Some("https://vpn.example"));
        assert_eq!(idp.trustpoint_idp.as_deref(), Some("IDP"));
        assert_eq!(idp.trustpoint_sp.as_deref(), Some("ID"));
        assert_eq!(idp.signature.as_deref(), Some("rsa-sha512"));
        assert!(idp.force_reauthentication);
        assert_eq!(idp.timeout_assertion_secs, Some(300));
        assert_eq!(idp.line, n + 6);
        let other = &w.saml_idps["urn:other"];
        assert_eq!(other.signature, None);
        assert!(!other.force_reauthentication);
        // image, `internal` and error-recovery are warnings; error-recovery is
        // back at webvpn level (less indented than the idp sub-commands)
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![n + 5, n + 15, n + 22]);
        assert!(
            c.warnings[2].message.contains("in `webvpn`"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[1]
                .message
                .contains("in `saml idp https://idp.example/meta`")
        );
    }

    #[test]
    fn config_saml_idp_errors() {
        bad("webvpn\n saml idp X\n  url sign-in ftp://x", 3, "bad URL");
        bad(
            "webvpn\n saml idp X\n  url sign-in",
            3,
            "expected `url sign-in URL`",
        );
        bad(
            "webvpn\n saml idp X\n  signature md5",
            3,
            "bad signature algorithm `md5`",
        );
        bad(
            "webvpn\n saml idp X\n  timeout assertion x",
            3,
            "assertion timeout",
        );
        bad(
            "webvpn\n saml idp X\n  trustpoint idp NOPE",
            3,
            "trustpoint `NOPE` is not defined",
        );
        bad(
            "webvpn\n saml idp X\n  trustpoint sp NOPE",
            3,
            "trustpoint `NOPE` is not defined",
        );
        bad(
            "crypto ca trustpoint T\nwebvpn\n saml idp X\n  trustpoint idp T",
            4,
            "has no certificate",
        );
        bad("webvpn\n saml\n", 2, "expected `saml idp ENTITY-ID`");
        bad(
            "webvpn\n saml idp X\n url sign-in https://a/b",
            3,
            "indent it deeper than the `saml idp` line",
        );
    }

    // ------------------------------------------------------------- group-policy

    #[test]
    fn config_group_policy() {
        let c = ok(&cfg(&[
            "ip local pool P 10.0.0.10-10.0.0.20 mask 255.255.255.0",
            "ipv6 local pool P6 fd00::10/64 100",
            "access-list SPLIT standard permit 198.18.1.0 255.255.255.0",
            "access-list F extended permit ip any any",
            "group-policy GP internal",
            "group-policy GP attributes",
            " vpn-tunnel-protocol ssl-client ikev2",
            " split-tunnel-policy tunnelspecified",
            " split-tunnel-network-list value SPLIT",
            " dns-server value 198.18.1.53 2001:db8::53",
            " default-domain value corp.example",
            " vpn-filter value F",
            " vpn-idle-timeout 45",
            " vpn-session-timeout none",
            " vpn-simultaneous-logins 2",
            " address-pools value P",
            " ipv6-address-pools value P6",
            " anyconnect dpd-interval client 40 gateway none",
            " anyconnect ssl keepalive 25",
            " anyconnect mtu 1300",
            " anyconnect ssl dtls disable",
            " banner value Welcome",
            " banner value Authorized use only",
            " anyconnect keep-installer none",
            " webvpn",
            "  anyconnect mtu 1350",
            "  anyconnect modules value dart",
            " vpn-idle-timeout alert-interval 1",
            "group-policy DfltGrpPolicy attributes",
            " dns-server none",
            " default-domain none",
            " vpn-filter none",
            " split-tunnel-network-list none",
            " address-pools none",
            " banner none",
        ]));
        let g = &c.group_policies["GP"];
        assert_eq!(g.line, 5);
        assert_eq!(
            g.vpn_tunnel_protocols,
            Some(vec!["ssl-client".to_string(), "ikev2".into()])
        );
        assert_eq!(
            g.split_tunnel_policy,
            Some(SplitTunnelPolicy::TunnelSpecified)
        );
        assert_eq!(g.split_tunnel_network_list.as_deref(), Some("SPLIT"));
        assert_eq!(
            g.dns_servers,
            Some(vec![
                "198.18.1.53".parse().unwrap(),
                "2001:db8::53".parse().unwrap()
            ])
        );
        assert_eq!(g.default_domain.as_deref(), Some("corp.example"));
        assert_eq!(g.vpn_filter.as_deref(), Some("F"));
        assert_eq!(g.vpn_idle_timeout_min, Some(45));
        assert_eq!(g.vpn_session_timeout_min, Some(0));
        assert_eq!(g.vpn_simultaneous_logins, Some(2));
        assert_eq!(g.address_pools, Some(vec!["P".to_string()]));
        assert_eq!(g.ipv6_address_pools, Some(vec!["P6".to_string()]));
        assert_eq!(g.anyconnect_dpd_client_secs, Some(40));
        assert_eq!(g.anyconnect_dpd_gateway_secs, Some(0));
        assert_eq!(g.anyconnect_keepalive_secs, Some(25));
        assert_eq!(g.anyconnect_mtu, Some(1350));
        assert_eq!(g.anyconnect_dtls, Some(false));
        assert_eq!(g.banner.as_deref(), Some("Welcome\nAuthorized use only"));
        let d = &c.group_policies["DfltGrpPolicy"];
        assert_eq!(d.dns_servers, Some(vec![]));
        assert_eq!(d.default_domain.as_deref(), Some(""));
        assert_eq!(d.vpn_filter.as_deref(), Some(""));
        assert_eq!(d.address_pools, Some(vec![]));
        assert_eq!(d.banner.as_deref(), Some(""));
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![24, 27, 28], "{:?}", c.warnings);
    }

    #[test]
    fn config_group_policy_errors() {
        let gp = |l: &str| format!("group-policy G internal\ngroup-policy G attributes\n{l}");
        bad(
            &gp(" split-tunnel-policy sometimes"),
            3,
            "bad split-tunnel-policy `sometimes`",
        );
        bad(
            &gp(" vpn-tunnel-protocol ssl-client pptp"),
            3,
            "unknown vpn-tunnel-protocol `pptp`",
        );
        bad(&gp(" vpn-idle-timeout soon"), 3, "bad timeout (minutes)");
        bad(&gp(" dns-server value 1.2.3"), 3, "bad IP address `1.2.3`");
        bad(
            &gp(" dns-server 1.2.3.4"),
            3,
            "bad arguments to `dns-server`",
        );
        bad(&gp(" anyconnect mtu 9000"), 3, "bad MTU `9000`");
        bad(&gp(" anyconnect dpd-interval client 2"), 3, "dpd-interval");
        bad(
            &gp(" anyconnect dpd-interval server 30"),
            3,
            "expected `anyconnect dpd-interval",
        );
        bad(&gp(" anyconnect ssl dtls maybe"), 3, "bad arguments");
        bad(
            &gp(" address-pools value NOPE"),
            3,
            "ip local pool `NOPE` is not defined",
        );
        bad(
            &gp(" ipv6-address-pools value NOPE"),
            3,
            "ipv6 local pool `NOPE` is not defined",
        );
        bad(
            &gp(" split-tunnel-network-list value NOPE"),
            3,
            "access-list `NOPE` is not defined",
        );
        bad(
            &gp(" vpn-filter value NOPE"),
            3,
            "access-list `NOPE` is not defined",
        );
        bad(
            &format!(
                "access-list S standard permit any4\n{}",
                gp(" vpn-filter value S")
            ),
            4,
            "vpn-filter needs an extended access-list",
        );
        bad(
            "group-policy G attributes",
            1,
            "group-policy `G` is not defined",
        );
        bad("group-policy G", 1, "expected `group-policy NAME internal`");
        // a later line replaces the reference: no error for the overridden name
        ok(&gp(" vpn-filter value NOPE\n vpn-filter none"));
    }

    // ----------------------------------------------------------------- username

    #[test]
    fn config_username() {
        let c = ok(&cfg(&[
            "username alice password s3cret",
            "username bob password $sha512$5000$abc pbkdf2 privilege 15",
            "username carol password xyz encrypted",
            "username dave nopassword",
            "username alice attributes",
            " vpn-group-policy GP",
        ]));
        let a = &c.usernames["alice"];
        assert_eq!(
            (a.password.as_str(), a.password_form, a.privilege, a.line),
            ("s3cret", PasswordForm::Plain, 2, 1)
        );
        let b = &c.usernames["bob"];
        assert_eq!((b.password_form, b.privilege), (PasswordForm::Pbkdf2, 15));
        assert_eq!(c.usernames["carol"].password_form, PasswordForm::Encrypted);
        assert!(!c.usernames.contains_key("dave"));
        assert!(!format!("{a:?}").contains("s3cret"));
        assert_eq!(
            c.warnings.iter().map(|w| w.line).collect::<Vec<_>>(),
            vec![4, 5]
        );
        bad(
            "username a password x privilege 16",
            1,
            "bad privilege level `16`",
        );
        bad("username a password", 1, "needs the password");
        bad("username a password x bogus", 1, "unexpected `bogus`");
    }

    // ------------------------------------------------------------- tunnel-group

    #[test]
    fn config_tunnel_group() {
        let (text, n) = with_tps(&[
            "ip local pool P 10.0.0.10-10.0.0.20 mask 255.255.255.0",
            "ip local pool Q 10.0.1.10-10.0.1.20 mask 255.255.255.0",
            "ipv6 local pool P6 fd00::10/64 100",
            "aaa-server ISE protocol radius",
            "group-policy GP internal",
            "webvpn",
            " saml idp https://idp/x",
            "  url sign-in https://idp/sso",
            "  trustpoint idp IDP",
            "tunnel-group TG type remote-access",
            "tunnel-group TG general-attributes",
            " address-pool (inside) P Q",
            " ipv6-address-pool P6",
            " authentication-server-group (inside) ISE LOCAL",
            " authorization-server-group ISE",
            " accounting-server-group ISE",
            " default-group-policy GP",
            " password-management",
            "tunnel-group TG webvpn-attributes",
            " authentication saml",
            " group-alias Corp enable",
            " group-alias Old disable",
            " group-url https://vpn.example/corp enable",
            " saml identity-provider https://idp/x",
            "tunnel-group L2L type ipsec-l2l",
            "tunnel-group L2L ipsec-attributes",
            " ikev2 remote-authentication pre-shared-key secret",
            "tunnel-group DefaultWEBVPNGroup general-attributes",
            " authentication-server-group LOCAL",
        ]);
        let c = ok(&text);
        let tg = &c.tunnel_groups["TG"];
        assert!(tg.remote_access);
        assert_eq!(tg.line, n + 10);
        assert_eq!(tg.address_pools, vec!["P".to_string(), "Q".into()]);
        assert_eq!(tg.ipv6_address_pools, vec!["P6".to_string()]);
        assert_eq!(tg.authentication_server_group.as_deref(), Some("ISE"));
        assert_eq!(tg.authorization_server_group.as_deref(), Some("ISE"));
        assert_eq!(tg.accounting_server_group.as_deref(), Some("ISE"));
        assert_eq!(tg.default_group_policy.as_deref(), Some("GP"));
        assert_eq!(tg.authentication, TunnelAuthentication::Saml);
        assert_eq!(
            tg.group_aliases,
            vec![("Corp".to_string(), true), ("Old".to_string(), false)]
        );
        assert_eq!(
            tg.group_urls,
            vec![("https://vpn.example/corp".to_string(), true)]
        );
        assert_eq!(tg.saml_identity_provider.as_deref(), Some("https://idp/x"));
        assert!(!c.tunnel_groups.contains_key("L2L"));
        let d = &c.tunnel_groups["DefaultWEBVPNGroup"];
        assert_eq!(d.authentication_server_group, None);
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![n + 18, n + 25], "{:?}", c.warnings);
        // the l2l pre-shared key must not appear in any warning
        assert!(c.warnings.iter().all(|w| !w.message.contains("secret")));
    }

    #[test]
    fn config_tunnel_group_errors() {
        let base = "tunnel-group T type remote-access\ntunnel-group T general-attributes\n";
        bad(
            &format!("{base} address-pool NOPE"),
            3,
            "ip local pool `NOPE` is not defined",
        );
        bad(
            &format!("{base} ipv6-address-pool NOPE"),
            3,
            "ipv6 local pool `NOPE` is not defined",
        );
        bad(
            &format!("{base} default-group-policy NOPE"),
            3,
            "group-policy `NOPE` is not defined",
        );
        bad(
            &format!("{base} authentication-server-group NOPE"),
            3,
            "aaa-server group `NOPE` is not defined",
        );
        bad(
            &format!("{base} authorization-server-group NOPE"),
            3,
            "aaa-server group `NOPE` is not defined",
        );
        bad(
            &format!("{base} accounting-server-group LOCAL"),
            3,
            "LOCAL cannot be used here",
        );
        bad(
            &format!("aaa-server AD protocol ldap\n{base} authentication-server-group AD"),
            4,
            "protocol ldap",
        );
        bad(
            &format!("{base} address-pool"),
            3,
            "expected `address-pool POOL",
        );
        bad(
            &format!("{base} default-group-policy"),
            3,
            "expected `default-group-policy NAME`",
        );
        // DfltGrpPolicy and LOCAL always exist; forward references are fine
        ok(&format!(
            "{base} default-group-policy DfltGrpPolicy\n authentication-server-group LOCAL\n authorization-server-group LOCAL\n address-pool LATER\nip local pool LATER 10.0.0.1-10.0.0.9 mask 255.255.255.0"
        ));
        bad(
            "tunnel-group T general-attributes",
            1,
            "tunnel-group `T` is not defined",
        );
        bad(
            "tunnel-group T type site-to-moon",
            1,
            "unknown tunnel-group type",
        );
        let web = "tunnel-group T type remote-access\ntunnel-group T webvpn-attributes\n";
        bad(
            &format!("{web} authentication aaa certificate"),
            3,
            "combined authentication",
        );
        bad(
            &format!("{web} authentication magic"),
            3,
            "unknown authentication method `magic`",
        );
        bad(&format!("{web} group-alias A maybe"), 3, "enable|disable");
        bad(&format!("{web} group-url ftp://x/a enable"), 3, "bad URL");
        bad(
            &format!("{web} saml identity-provider NOPE"),
            3,
            "saml idp `NOPE` is not defined",
        );
        bad(
            &format!("{web} authentication saml"),
            3,
            "has no `saml identity-provider`",
        );
        // duplicate aliases across tunnel groups
        bad(
            "tunnel-group A type remote-access\ntunnel-group A webvpn-attributes\n group-alias X enable\ntunnel-group B type remote-access\ntunnel-group B webvpn-attributes\n group-alias X enable",
            6,
            "already used by tunnel-group `A` (line 3)",
        );
    }

    #[test]
    fn config_saml_tunnel_group_rules() {
        let saml_tg = |name: &str, idp_extra: &[&str]| {
            let mut v = vec!["webvpn", " saml idp E"];
            v.extend_from_slice(idp_extra);
            let tg = [
                format!("tunnel-group {name} type remote-access"),
                format!("tunnel-group {name} webvpn-attributes"),
                " authentication saml".into(),
                " saml identity-provider E".into(),
            ];
            let mut all: Vec<String> = trustpoints();
            let n = all.len();
            all.extend(v.iter().map(|s| s.to_string()));
            all.extend(tg);
            (all.join("\n"), n + v.len())
        };
        let full = ["  url sign-in https://idp/sso", "  trustpoint idp IDP"];
        let (t, _) = saml_tg("corp", &full);
        ok(&t);
        let (t, n) = saml_tg("corp.vpn", &full);
        bad(&t, n + 3, "must not contain dots or slashes");
        let (t, n) = saml_tg("corp", &["  trustpoint idp IDP"]);
        bad(&t, n + 4, "has no `url sign-in`");
        let (t, n) = saml_tg("corp", &["  url sign-in https://idp/sso"]);
        bad(&t, n + 4, "has no `trustpoint idp`");
        let (t, n) = saml_tg(
            "corp",
            &[
                "  url sign-in https://idp/sso",
                "  trustpoint idp IDP",
                "  signature",
            ],
        );
        bad(&t, n - 3, "no `trustpoint sp`");
        let (t, n) = saml_tg(
            "corp",
            &[
                "  url sign-in https://idp/sso",
                "  trustpoint idp IDP",
                "  signature",
                "  trustpoint sp IDP",
            ],
        );
        bad(&t, n, "has no identity key");
        let (t, _) = saml_tg(
            "corp",
            &[
                "  url sign-in https://idp/sso",
                "  trustpoint idp IDP",
                "  signature",
                "  trustpoint sp ID",
            ],
        );
        ok(&t);
    }

    #[test]
    fn config_ssl_trust_point_needs_identity() {
        let (t, n) = with_tps(&["ssl trust-point IDP outside"]);
        bad(&t, n + 1, "has no identity certificate and key");
        bad(
            "ssl trust-point NOPE",
            1,
            "trustpoint `NOPE` is not defined",
        );
        bad("ssl trust-point", 1, "expected `ssl trust-point NAME");
    }

    // -------------------------------------------------------------- access-list

    fn ext(line: &str) -> (AclAction, ExtendedAce) {
        let c = ok(line);
        let e = &c.access_lists.values().next().unwrap().entries[0];
        match &e.kind {
            AclEntryKind::Extended(a) => (e.action, a.clone()),
            k => panic!("not extended: {k:?}"),
        }
    }

    fn v4(s: &str, len: u8) -> AddrMatch {
        AddrMatch::Prefix(s.parse().unwrap(), len)
    }

    #[test]
    fn config_access_list_standard() {
        let c = ok(&cfg(&[
            "access-list S remark split networks",
            "access-list S standard permit 198.18.1.0 255.255.255.0",
            "access-list S standard permit host 198.18.2.1",
            "access-list S standard deny any4",
            "access-list S line 1 standard permit 10.0.0.0 255.0.0.0",
        ]));
        let acl = &c.access_lists["S"];
        assert_eq!(acl.line, 1);
        let kinds: Vec<&AclEntryKind> = acl.entries.iter().map(|e| &e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                &AclEntryKind::Standard {
                    network: v4("10.0.0.0", 8)
                },
                &AclEntryKind::Remark("split networks".into()),
                &AclEntryKind::Standard {
                    network: v4("198.18.1.0", 24)
                },
                &AclEntryKind::Standard {
                    network: v4("198.18.2.1", 32)
                },
                &AclEntryKind::Standard {
                    network: AddrMatch::Any4
                },
            ]
        );
        assert_eq!(acl.entries[4].action, AclAction::Deny);
        assert_eq!(
            acl.entries[2].text,
            "access-list S standard permit 198.18.1.0 255.255.255.0"
        );
        assert_eq!(acl.entries[2].line, 2);
    }

    #[test]
    fn config_access_list_extended() {
        let (a, e) = ext(
            "access-list F extended permit tcp security-group tag 10 any security-group name Servers 198.18.1.0 255.255.255.0 eq https log",
        );
        assert_eq!(a, AclAction::Permit);
        assert_eq!(e.protocol, AclProtocol::Tcp);
        assert_eq!(e.src_sg, Some(SecurityGroupMatch::Tag(10)));
        assert_eq!(e.src, AddrMatch::Any);
        assert_eq!(e.dst_sg, Some(SecurityGroupMatch::Name("Servers".into())));
        assert_eq!(e.dst, v4("198.18.1.0", 24));
        assert_eq!(e.dst_port, Some(PortMatch::Eq(443)));
        assert!(e.log == Some(AceLog::default()) && !e.inactive);

        let (a, e) = ext(
            "access-list F extended deny udp host 10.1.1.1 range 1000 2000 any4 neq domain log 4 interval 300 inactive",
        );
        assert_eq!(a, AclAction::Deny);
        assert_eq!(e.src, v4("10.1.1.1", 32));
        assert_eq!(e.src_port, Some(PortMatch::Range(1000, 2000)));
        assert_eq!(e.dst, AddrMatch::Any4);
        assert_eq!(e.dst_port, Some(PortMatch::Neq(53)));
        assert!(
            e.log
                == Some(AceLog {
                    level: 4,
                    interval: 300
                })
                && e.inactive
        );

        let (_, e) = ext("access-list F extended permit tcp any6 lt 1024 host 2001:db8::1 gt www");
        assert_eq!(e.src, AddrMatch::Any6);
        assert_eq!(e.src_port, Some(PortMatch::Lt(1024)));
        assert_eq!(
            e.dst,
            AddrMatch::Prefix("2001:db8::1".parse().unwrap(), 128)
        );
        assert_eq!(e.dst_port, Some(PortMatch::Gt(80)));

        let (_, e) = ext("access-list F extended permit icmp any any echo");
        assert_eq!((e.protocol, e.icmp_type), (AclProtocol::Icmp, Some(8)));
        let (_, e) = ext("access-list F extended permit icmp any any echo-reply log disable");
        assert_eq!(e.icmp_type, Some(0));
        assert!(e.log.is_none());
        let (_, e) = ext("access-list F extended permit icmp any any unreachable");
        assert_eq!(e.icmp_type, Some(3));
        let (_, e) = ext("access-list F extended permit icmp any any time-exceeded");
        assert_eq!(e.icmp_type, Some(11));
        let (_, e) = ext("access-list F extended permit icmp any any 13");
        assert_eq!(e.icmp_type, Some(13));
        let (_, e) = ext("access-list F extended permit icmp6 any6 2001:db8::/32 echo");
        assert_eq!((e.protocol, e.icmp_type), (AclProtocol::Icmp6, Some(128)));
        assert_eq!(e.dst, AddrMatch::Prefix("2001:db8::".parse().unwrap(), 32));
        let (_, e) = ext("access-list F extended permit gre any any");
        assert_eq!(e.protocol, AclProtocol::Number(47));
        let (_, e) = ext("access-list F extended permit 6 any any eq ssh");
        assert_eq!(
            (e.protocol, e.dst_port),
            (AclProtocol::Tcp, Some(PortMatch::Eq(22)))
        );
        // old syntax without `extended`
        let (_, e) = ext("access-list F permit ip 10.0.0.0 255.0.0.0 any");
        assert_eq!(
            (e.protocol, e.src.clone()),
            (AclProtocol::Ip, v4("10.0.0.0", 8))
        );
    }

    #[test]
    fn config_access_list_errors() {
        bad(
            "!\naccess-list F extended permit tcp any any eq nosuchport",
            2,
            "unknown port `nosuchport`",
        );
        bad(
            "access-list F extended permit tcp any any eq 70000",
            1,
            "bad port `70000`",
        );
        bad(
            "access-list F extended permit tcp any any range 90 80",
            1,
            "reversed",
        );
        bad(
            "access-list F extended permit smtp any any",
            1,
            "unknown protocol `smtp`",
        );
        bad(
            "access-list F extended permit ip any any eq 80",
            1,
            "port match `eq` needs protocol tcp or udp",
        );
        bad(
            "access-list F extended permit ip 10.0.0.1 255.0.0.0 any",
            1,
            "host bits set",
        );
        bad(
            "access-list F extended permit ip 10.0.0.0 255.0.255.0 any",
            1,
            "bad netmask",
        );
        bad(
            "access-list F extended permit ip 10.0.0.300 255.0.0.0 any",
            1,
            "bad source address `10.0.0.300`",
        );
        bad(
            "access-list F extended permit ip 2001:db8::1 any",
            1,
            "IPv6 needs `host A`",
        );
        bad(
            "access-list F extended permit ip any",
            1,
            "missing destination address",
        );
        bad(
            "access-list F extended permit ip any any time-range WORK",
            1,
            "time-range is not supported",
        );
        bad(
            "access-list F extended permit icmp any any bogus-type",
            1,
            "unknown ICMP type `bogus-type`",
        );
        bad(
            "access-list F extended permit ip any any log 9",
            1,
            "bad log level",
        );
        bad(
            "access-list F extended permit ip object-group X any",
            1,
            "object-group `X` is not defined",
        );
        bad(
            "access-list F extended permit ip security-group tag x any any",
            1,
            "bad security-group tag",
        );
        bad(
            "access-list F extended allow ip any any",
            1,
            "expected permit or deny",
        );
        bad(
            "access-list F standard permit 10.0.0.1 255.0.0.0",
            1,
            "host bits set",
        );
        bad(
            "access-list F standard permit",
            1,
            "expected `access-list NAME standard",
        );
        bad(
            "access-list F bogus permit",
            1,
            "unknown access-list type `bogus`",
        );
        bad("access-list F remark", 1, "`remark` needs a text");
        bad(
            "access-list F standard permit any4\naccess-list F extended permit ip any any",
            2,
            "mixes standard and extended",
        );
        let c = ok("access-list alert-interval 300\naccess-list E ethertype permit bpdu");
        assert_eq!(c.warnings.len(), 2);
    }

    // ---------------------------------------------------------------------- cts

    #[test]
    fn config_cts() {
        let c = ok(&cfg(&[
            "cts role-based sgt-map 198.18.1.0/28 sgt 20",
            "cts role-based sgt-map 2001:db8:1::/48 sgt 30",
            "cts role-based sgt-map host 198.18.2.5 sgt 40",
            "cts role-based sgt-map 198.18.2.6 sgt 41",
            "cts role-based sgt-map 198.18.1.0/28 sgt 21",
            "cts role-based sgt 20 name Servers",
            "cts sxp enable",
            "cts sxp default password s3cret",
            "cts sxp default source-ip 198.18.1.1",
            "cts sxp connection peer 198.18.1.20 password default mode local listener",
            "cts sxp connection peer 198.18.1.21 source 198.18.1.1 password none mode peer speaker",
            "cts sxp connection peer 198.18.1.22 password none mode local speaker",
            "cts sxp listener hold-time 90 180",
            "cts sxp retry period 60",
            "cts manual",
        ]));
        let m = &c.cts.sgt_map;
        assert_eq!(m.len(), 4);
        assert!(m.contains(&SgtMapEntry {
            address: "2001:db8:1::".parse().unwrap(),
            prefix_len: 48,
            sgt: 30,
            line: 2
        }));
        assert!(m.contains(&SgtMapEntry {
            address: "198.18.2.5".parse().unwrap(),
            prefix_len: 32,
            sgt: 40,
            line: 3
        }));
        assert!(m.contains(&SgtMapEntry {
            address: "198.18.2.6".parse().unwrap(),
            prefix_len: 32,
            sgt: 41,
            line: 4
        }));
        assert!(m.contains(&SgtMapEntry {
            address: "198.18.1.0".parse().unwrap(),
            prefix_len: 28,
            sgt: 21,
            line: 5
        }));
        assert_eq!(c.cts.sgt_names.get("Servers"), Some(&20));
        assert!(c.cts.sxp_enable);
        assert_eq!(c.cts.sxp_default_password.as_deref(), Some("s3cret"));
        assert_eq!(
            c.cts.sxp_default_source_ip,
            Some("198.18.1.1".parse().unwrap())
        );
        let s = &c.cts.sxp_connections;
        assert_eq!(
            s[0],
            SxpConnection {
                peer: "198.18.1.20".parse().unwrap(),
                source: None,
                password: SxpPassword::Default,
                mode: SxpMode::Listener,
                line: 10
            }
        );
        assert_eq!(
            (s[1].source, s[1].password, s[1].mode),
            (
                Some("198.18.1.1".parse().unwrap()),
                SxpPassword::None,
                SxpMode::Listener
            )
        );
        assert_eq!(s[2].mode, SxpMode::Speaker);
        assert_eq!(c.cts.sxp_listener_hold_time, Some((90, 180)));
        assert_eq!(
            c.warnings.iter().map(|w| w.line).collect::<Vec<_>>(),
            vec![14, 15]
        );
        assert!(!ok("cts sxp enable\nno cts sxp enable").cts.sxp_enable);
    }

    #[test]
    fn config_cts_errors() {
        bad(
            "cts role-based sgt-map 198.18.1.0/24 sgt 70000",
            1,
            "bad SGT `70000`",
        );
        bad(
            "cts role-based sgt-map 198.18.1.1/24 sgt 5",
            1,
            "host bits set",
        );
        bad(
            "cts role-based sgt-map 198.18.1.0/33 sgt 5",
            1,
            "prefix length",
        );
        bad(
            "cts role-based sgt-map 198.18.1.0/24 tag 5",
            1,
            "expected `cts role-based sgt-map",
        );
        bad(
            "cts sxp connection peer 1.2.3.4 password default mode local listener",
            1,
            "no `cts sxp default password`",
        );
        bad(
            "cts sxp connection peer 1.2.3.4 password required x mode local listener",
            1,
            "per-connection SXP passwords",
        );
        bad(
            "cts sxp connection peer 1.2.3.4 password none mode local talker",
            1,
            "bad SXP mode `talker`",
        );
        bad(
            "cts sxp connection peer 1.2.3.x password none mode local listener",
            1,
            "bad IP address",
        );
        bad("cts sxp default password 8 abc", 1, "encrypted (type 8)");
        bad(
            "cts sxp listener hold-time 200 100",
            1,
            "minimum is above the maximum",
        );
        bad("cts sxp enable now", 1, "bad arguments to `cts sxp enable");
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

//! Compiles the configuration's access lists and TrustSec bindings into the
//! dataplane's [`PolicyTables`], and renders ACL hit counts like ASA's
//! `show access-list`.
//!
//! - Extended entries become [`Rule`]s one for one; remarks are left out (they
//!   match nothing), inactive entries are kept as never-matching rules so rule
//!   numbers and counters line up with the configured entries.
//! - `security-group name X` is resolved through `cts role-based sgt N name X`
//!   (`Cts::sgt_names`); an unknown name is an error with its line.
//! - Standard entries (`access-list S standard permit 198.18.1.0 255.255.255.0`)
//!   match the destination network, which is what they mean where ASA uses them
//!   (split-tunnel network lists); any protocol, any source.
//! - `cts role-based sgt-map` bindings go into the `SgtMap` as
//!   [`Source::Static`]; SXP bindings are added by their owner on the builder
//!   from [`static_sgt_bindings`] and published with
//!   `PolicyHandle::publish_sgt_map`, session addresses as their own table
//!   with `PolicyHandle::publish_session_sgts` (`policy_state`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use dataplane::policy::{
    self as dp, CompiledAcl, NetMatch, PolicyTables, Rule, SgtMapBuilder, Source,
};

use crate::config::{
    AccessList, AccessListEntry, AceTemplate, AclAction, AclEntryKind, AclProtocol, AddrMatch,
    AddrSlot, Config, ExtendedAce, IcmpSlot, PortMatch, PortSlot, ProtocolSlot, SecurityGroupMatch,
    SgSlot,
};

/// A configuration item the dataplane cannot enforce, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct CompileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Compiles every access list and the static IP-to-SGT bindings. The result has
/// generation 0; `PolicyHandle::publish` numbers it.
pub fn compile(cfg: &Config) -> Result<PolicyTables, CompileError> {
    let sgt_map = static_sgt_bindings(cfg)?.build();
    let mut acls = HashMap::with_capacity(cfg.access_lists.len());
    for (name, acl) in &cfg.access_lists {
        let mut rules = Vec::new();
        let mut lines = Vec::new();
        for e in &acl.entries {
            let r = rules_of(cfg, name, e)?;
            lines.extend(std::iter::repeat_n(e.line, r.len()));
            rules.extend(r);
        }
        let compiled = CompiledAcl::new(rules).map_err(|e| CompileError {
            file: cfg.source.clone(),
            line: lines.get(e.index).copied().unwrap_or(acl.line),
            message: format!("access-list {name}: {}", e.problem),
        })?;
        acls.insert(name.clone(), Arc::new(compiled));
    }
    Ok(PolicyTables::new(acls, sgt_map))
}

/// Longest ACE text accepted from RADIUS (a cisco-av-pair is at most 247 bytes).
const MAX_ACE_LEN: usize = 253;

/// A per-user ACL from RADIUS `ip:inacl#N=ACE` entries (ASA's downloadable ACL),
/// already in order: each ACE is read as `access-list NAME extended ACE` with the
/// configuration's grammar, and `cfg` resolves `security-group name` references.
/// Returns the parsed list (for `show access-list`) and its compiled form. An
/// entry that does not parse or compile fails the whole ACL (ASA refuses the
/// session then), and the error names the entry by position.
pub fn compile_downloadable(
    cfg: &Config,
    name: &str,
    aces: &[String],
) -> Result<(AccessList, CompiledAcl), String> {
    if aces.is_empty() {
        return Err("no entries".into());
    }
    let mut text = String::new();
    // The names the ACEs may use, ahead of them.
    for (n, sgt) in &cfg.cts.sgt_names {
        let _ = writeln!(text, "cts role-based sgt {sgt} name {n}");
    }
    let header = cfg.cts.sgt_names.len();
    for (i, ace) in aces.iter().enumerate() {
        let ace = ace.trim();
        // One ACE is one line: nothing in it may start another command.
        if ace.is_empty() || ace.len() > MAX_ACE_LEN || ace.chars().any(char::is_control) {
            return Err(format!(
                "entry {}: empty, too long or has control characters",
                i + 1
            ));
        }
        if ace.starts_with("remark") {
            continue;
        }
        let _ = writeln!(text, "access-list {name} extended {ace}");
    }
    let entry_of = |line: usize| line.saturating_sub(header);
    let mini = crate::config::parse_str(&text, "ip:inacl")
        .map_err(|e| format!("entry {}: {}", entry_of(e.line), e.message))?;
    let acl = mini
        .access_lists
        .get(name)
        .cloned()
        .ok_or_else(|| "no entries".to_string())?;
    let mut rules = Vec::new();
    let mut entries = Vec::new();
    for e in &acl.entries {
        let r = rules_of(cfg, name, e)
            .map_err(|err| format!("entry {}: {}", entry_of(e.line), err.message))?;
        entries.extend(std::iter::repeat_n(entry_of(e.line), r.len()));
        rules.extend(r);
    }
    let compiled = CompiledAcl::new(rules).map_err(|e| {
        let entry = entries.get(e.index).copied().unwrap_or(e.index + 1);
        format!("entry {entry}: {}", e.problem)
    })?;
    Ok((acl, compiled))
}

/// The name ASA-style of a per-user ACL: `AAA-user-USER-HASH`, the hash over the
/// entries, so sessions with the same entries share one ACL.
pub fn downloadable_name(user: &str, aces: &[String]) -> String {
    let user: String = user
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(64)
        .collect();
    let joined = aces.join("\n");
    format!("AAA-user-{user}-{:08X}", fnv1a(joined.as_bytes()))
}

/// The `cts role-based sgt-map` bindings, as a builder the SXP listener and the
/// session table add their bindings to.
pub fn static_sgt_bindings(cfg: &Config) -> Result<SgtMapBuilder, CompileError> {
    let mut b = SgtMapBuilder::new();
    for e in &cfg.cts.sgt_map {
        b.insert(e.address, e.prefix_len, e.sgt, Source::Static)
            .map_err(|err| CompileError {
                file: cfg.source.clone(),
                line: e.line,
                message: format!("cts role-based sgt-map: {err}"),
            })?;
    }
    Ok(b)
}

/// The dataplane rules of one entry: none for a remark, one for a plain entry,
/// one per expanded entry for an entry naming object-groups.
fn rules_of(cfg: &Config, acl: &str, e: &AccessListEntry) -> Result<Vec<Rule>, CompileError> {
    if let AclEntryKind::Standard { network } = &e.kind {
        return Ok(vec![Rule::new(dp_action(e.action)).dst(net(network))]);
    }
    e.extended_aces()
        .iter()
        .map(|ace| rule_of_ace(cfg, acl, e, ace))
        .collect()
}

fn dp_action(a: AclAction) -> dp::Action {
    match a {
        AclAction::Permit => dp::Action::Permit,
        AclAction::Deny => dp::Action::Deny,
    }
}

/// The dataplane rule for one plain extended entry of `e`.
fn rule_of_ace(
    cfg: &Config,
    acl: &str,
    e: &AccessListEntry,
    ace: &ExtendedAce,
) -> Result<Rule, CompileError> {
    let action = dp_action(e.action);
    let sg = |m: &Option<SecurityGroupMatch>| -> Result<Option<u16>, CompileError> {
        match m {
            None => Ok(None),
            Some(SecurityGroupMatch::Tag(t)) => Ok(Some(*t)),
            Some(SecurityGroupMatch::Name(n)) => {
                cfg.cts.sgt_names.get(n).copied().map(Some).ok_or_else(|| CompileError {
                    file: cfg.source.clone(),
                    line: e.line,
                    message: format!(
                        "access-list {acl}: security-group name `{n}` is not defined; add `cts role-based sgt N name {n}`"
                    ),
                })
            }
        }
    };
    Ok(Rule {
        action,
        protocol: protocol_number(ace.protocol),
        src_sgt: sg(&ace.src_sg)?,
        src: net(&ace.src),
        src_port: ace.src_port.map(port),
        dst_sgt: sg(&ace.dst_sg)?,
        dst: net(&ace.dst),
        dst_port: ace.dst_port.map(port),
        icmp_type: ace.icmp_type,
        log: ace.log.is_some(),
        log_level: ace.log.map_or(6, |l| l.level),
        log_interval: ace.log.map_or(300, |l| l.interval),
        inactive: ace.inactive,
    })
}

fn protocol_number(p: AclProtocol) -> Option<u8> {
    match p {
        AclProtocol::Ip => None,
        AclProtocol::Tcp => Some(6),
        AclProtocol::Udp => Some(17),
        AclProtocol::Icmp => Some(1),
        AclProtocol::Icmp6 => Some(58),
        AclProtocol::Number(n) => Some(n),
    }
}

fn net(a: &AddrMatch) -> NetMatch {
    match a {
        AddrMatch::Any => NetMatch::Any,
        AddrMatch::Any4 => NetMatch::Any4,
        AddrMatch::Any6 => NetMatch::Any6,
        AddrMatch::Prefix(ip, len) => NetMatch::prefix(*ip, *len),
    }
}

fn port(p: PortMatch) -> dp::PortMatch {
    match p {
        PortMatch::Eq(x) => dp::PortMatch::Eq(x),
        PortMatch::Neq(x) => dp::PortMatch::Neq(x),
        PortMatch::Lt(x) => dp::PortMatch::Lt(x),
        PortMatch::Gt(x) => dp::PortMatch::Gt(x),
        PortMatch::Range(a, b) => dp::PortMatch::Range(a, b),
    }
}

// ------------------------------------------------------------ show access-list

/// Renders every configured ACL as ASA's `show access-list` does:
///
/// ```text
/// access-list VPN-FILTER; 3 elements; name hash: 0x8c2d81e5
/// access-list VPN-FILTER line 1 extended permit icmp security-group tag 10 any security-group tag 20 any (hitcnt=0) 0x1b7c9a3d
/// access-list VPN-FILTER line 2 extended permit tcp security-group tag 10 any security-group tag 20 any eq https (hitcnt=7) 0x...
/// access-list VPN-FILTER line 3 extended deny ip any any log informational interval 300 (hitcnt=2) 0x...
/// access-list VPN-FILTER implicit deny (hitcnt=0)
/// ```
///
/// Entries are printed in ASA's canonical form (port and ICMP names, `host A`,
/// `A MASK`), line numbers count remarks as ASA does, inactive entries end in
/// `(inactive)`. Differences from ASA: the hashes are FNV-1a of the name / the
/// canonical entry text (stable across reloads, not Cisco's values); `log` is
/// shown at its defaults (level and interval are not kept); and the last line
/// shows the implicit deny's counter, which ASA does not display.
///
/// Counters come from `tables`, matched to `cfg`'s entries by position and
/// content, so a `cfg` other than the one `tables` was compiled from shows 0 for
/// entries that changed.
pub fn show_access_list(tables: &PolicyTables, cfg: &Config) -> String {
    let mut out = String::new();
    for (name, acl) in &cfg.access_lists {
        show_one(&mut out, tables, cfg, name, acl);
    }
    out
}

/// `show access-list NAME`; an unknown name gives an empty string.
pub fn show_access_list_named(tables: &PolicyTables, cfg: &Config, name: &str) -> String {
    let mut out = String::new();
    if let Some(acl) = cfg.access_lists.get(name) {
        show_one(&mut out, tables, cfg, name, acl);
    }
    out
}

/// One ACL as `show access-list` prints it: a configured one, or a per-user
/// one from RADIUS ([`compile_downloadable`]) with `cfg` resolving its names.
pub fn show_one(
    out: &mut String,
    tables: &PolicyTables,
    cfg: &Config,
    name: &str,
    acl: &AccessList,
) {
    let compiled = tables.acl(name);
    // ASA counts the expanded entries.
    let elements: usize = acl
        .entries
        .iter()
        .map(|e| match &e.kind {
            AclEntryKind::Remark(_) => 0,
            AclEntryKind::Standard { .. } => 1,
            _ => e.extended_aces().len(),
        })
        .sum();
    let _ = writeln!(
        out,
        "access-list {name}; {elements} elements; name hash: 0x{:08x}",
        fnv1a(name.as_bytes())
    );
    let mut rule_no = 0;
    for (i, e) in acl.entries.iter().enumerate() {
        let line = i + 1;
        let body = match &e.kind {
            AclEntryKind::Remark(text) => {
                let _ = writeln!(out, "access-list {name} line {line} remark {text}");
                continue;
            }
            AclEntryKind::Standard { network } => {
                format!("standard {} {}", action(e.action), addr(network))
            }
            AclEntryKind::Extended(ace) => {
                format!("extended {} {}", action(e.action), ace_text(ace))
            }
            AclEntryKind::ExtendedObjects(o) => {
                format!(
                    "extended {} {}",
                    action(e.action),
                    template_text(&o.template)
                )
            }
        };
        // Counters of the compiled rules at this position, if they are this entry's.
        let rules = rules_of(cfg, name, e).unwrap_or_default();
        let hits: Vec<u64> = rules
            .iter()
            .enumerate()
            .map(|(k, r)| match compiled {
                Some(c) if c.rules().get(rule_no + k) == Some(r) => c.hits(rule_no + k),
                _ => 0,
            })
            .collect();
        rule_no += rules.len();
        let inactive = e.extended_aces().first().is_some_and(|a| a.inactive);
        let inactive = if inactive { " (inactive)" } else { "" };
        let total: u64 = hits.iter().sum();
        let _ = writeln!(
            out,
            "access-list {name} line {line} {body} (hitcnt={total}){inactive} 0x{:08x}",
            fnv1a(body.as_bytes())
        );
        // As ASA: each expanded entry indented under its parent, own counter.
        if let AclEntryKind::ExtendedObjects(o) = &e.kind {
            for (ace, hits) in o.expanded.iter().zip(&hits) {
                let body = format!("extended {} {}", action(e.action), ace_text(ace));
                let _ = writeln!(
                    out,
                    "  access-list {name} line {line} {body} (hitcnt={hits}){inactive} 0x{:08x}",
                    fnv1a(body.as_bytes())
                );
            }
        }
    }
    if let Some(c) = compiled {
        let _ = writeln!(
            out,
            "access-list {name} implicit deny (hitcnt={})",
            c.implicit_deny_hits()
        );
    }
}

/// Hit counts of one ACL for the metrics endpoint: (ASA line number as
/// `show access-list` prints it, hits), then `implicit-deny`. Same matching of
/// compiled rules to entries as [`show_one`].
pub fn acl_hits(
    tables: &PolicyTables,
    cfg: &Config,
    name: &str,
    acl: &AccessList,
) -> Vec<(String, u64)> {
    let Some(compiled) = tables.acl(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rule_no = 0;
    for (i, e) in acl.entries.iter().enumerate() {
        if matches!(e.kind, AclEntryKind::Remark(_)) {
            continue;
        }
        // An entry naming object-groups expands into several rules; its line's
        // count is their sum, as the parent line of `show access-list` shows.
        let rules = rules_of(cfg, name, e).unwrap_or_default();
        let hits: u64 = rules
            .iter()
            .enumerate()
            .filter(|(k, r)| compiled.rules().get(rule_no + k) == Some(*r))
            .map(|(k, _)| compiled.hits(rule_no + k))
            .sum();
        rule_no += rules.len();
        out.push(((i + 1).to_string(), hits));
    }
    out.push(("implicit-deny".to_string(), compiled.implicit_deny_hits()));
    out
}

fn action(a: AclAction) -> &'static str {
    match a {
        AclAction::Permit => "permit",
        AclAction::Deny => "deny",
    }
}

fn ace_text(a: &ExtendedAce) -> String {
    let mut s = protocol_name(a.protocol);
    let mut push = |part: &str| {
        s.push(' ');
        s.push_str(part);
    };
    if let Some(sg) = &a.src_sg {
        push(&security_group(sg));
    }
    push(&addr(&a.src));
    if let Some(p) = a.src_port {
        push(&port_text(p, a.protocol));
    }
    if let Some(sg) = &a.dst_sg {
        push(&security_group(sg));
    }
    push(&addr(&a.dst));
    if let Some(p) = a.dst_port {
        push(&port_text(p, a.protocol));
    }
    if let Some(t) = a.icmp_type {
        push(&icmp_name(t, a.protocol));
    }
    if let Some(l) = &a.log {
        push(&crate::config::ace_log::render(l));
    }
    if a.inactive {
        push("inactive");
    }
    s
}

/// An entry naming objects as ASA prints its parent line: the names in place.
fn template_text(t: &AceTemplate) -> String {
    let mut parts: Vec<String> = Vec::new();
    let proto = match &t.protocol {
        ProtocolSlot::Protocol(p) => *p,
        ProtocolSlot::ObjectGroup(n) => {
            parts.push(format!("object-group {n}"));
            AclProtocol::Tcp
        }
        ProtocolSlot::Object(n) => {
            parts.push(format!("object {n}"));
            AclProtocol::Tcp
        }
    };
    if let ProtocolSlot::Protocol(p) = &t.protocol {
        parts.push(protocol_name(*p));
    }
    let sg = |s: &Option<SgSlot>| match s {
        None => None,
        Some(SgSlot::One(m)) => Some(security_group(m)),
        Some(SgSlot::ObjectGroup(n)) => Some(format!("object-group-security {n}")),
    };
    let address = |a: &AddrSlot| match a {
        AddrSlot::Addr(a) => addr(a),
        AddrSlot::Object(n) => format!("object {n}"),
        AddrSlot::ObjectGroup(n) => format!("object-group {n}"),
    };
    let port = |p: &Option<PortSlot>| match p {
        None => None,
        Some(PortSlot::Port(m)) => Some(port_text(*m, proto)),
        Some(PortSlot::ObjectGroup(n)) => Some(format!("object-group {n}")),
    };
    parts.extend(sg(&t.src_sg));
    parts.push(address(&t.src));
    parts.extend(port(&t.src_port));
    parts.extend(sg(&t.dst_sg));
    parts.push(address(&t.dst));
    parts.extend(port(&t.dst_port));
    match &t.icmp {
        None => {}
        Some(IcmpSlot::Type(ty)) => parts.push(icmp_name(*ty, proto)),
        Some(IcmpSlot::ObjectGroup(n)) => parts.push(format!("object-group {n}")),
    }
    if let Some(l) = &t.log {
        parts.push(crate::config::ace_log::render(l));
    }
    if t.inactive {
        parts.push("inactive".into());
    }
    parts.join(" ")
}

fn protocol_name(p: AclProtocol) -> String {
    match p {
        AclProtocol::Ip => "ip".into(),
        AclProtocol::Tcp => "tcp".into(),
        AclProtocol::Udp => "udp".into(),
        AclProtocol::Icmp => "icmp".into(),
        AclProtocol::Icmp6 => "icmp6".into(),
        AclProtocol::Number(n) => match n {
            2 => "igmp".into(),
            4 => "ipinip".into(),
            9 => "igrp".into(),
            47 => "gre".into(),
            50 => "esp".into(),
            51 => "ah".into(),
            88 => "eigrp".into(),
            89 => "ospf".into(),
            94 => "nos".into(),
            103 => "pim".into(),
            108 => "pcp".into(),
            109 => "snp".into(),
            132 => "sctp".into(),
            n => n.to_string(),
        },
    }
}

fn security_group(sg: &SecurityGroupMatch) -> String {
    match sg {
        SecurityGroupMatch::Tag(t) => format!("security-group tag {t}"),
        SecurityGroupMatch::Name(n) => format!("security-group name {n}"),
    }
}

fn addr(a: &AddrMatch) -> String {
    match a {
        AddrMatch::Any => "any".into(),
        AddrMatch::Any4 => "any4".into(),
        AddrMatch::Any6 => "any6".into(),
        AddrMatch::Prefix(ip, len) => match ip {
            IpAddr::V4(a) if *len == 32 => format!("host {a}"),
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                format!("{a} {}", std::net::Ipv4Addr::from(mask))
            }
            IpAddr::V6(a) if *len == 128 => format!("host {a}"),
            IpAddr::V6(a) => format!("{a}/{len}"),
        },
    }
}

fn port_text(p: PortMatch, proto: AclProtocol) -> String {
    let n = |x: u16| port_name(x, proto).map_or_else(|| x.to_string(), str::to_string);
    match p {
        PortMatch::Eq(x) => format!("eq {}", n(x)),
        PortMatch::Neq(x) => format!("neq {}", n(x)),
        PortMatch::Lt(x) => format!("lt {}", n(x)),
        PortMatch::Gt(x) => format!("gt {}", n(x)),
        PortMatch::Range(a, b) => format!("range {} {}", n(a), n(b)),
    }
}

/// The names ASA prints for well-known ports (they differ between TCP and UDP).
fn port_name(port: u16, proto: AclProtocol) -> Option<&'static str> {
    let both = match port {
        7 => "echo",
        53 => "domain",
        88 => "kerberos",
        111 => "sunrpc",
        496 => "pim-auto-rp",
        517 => "talk",
        2049 => "nfs",
        3020 => "cifs",
        5060 => "sip",
        49 => "tacacs",
        _ => "",
    };
    if !both.is_empty() && matches!(proto, AclProtocol::Tcp | AclProtocol::Udp) {
        return Some(both);
    }
    match proto {
        AclProtocol::Tcp => Some(match port {
            5190 => "aol",
            179 => "bgp",
            19 => "chargen",
            1494 => "citrix-ica",
            514 => "cmd",
            2748 => "ctiqbe",
            13 => "daytime",
            9 => "discard",
            512 => "exec",
            79 => "finger",
            21 => "ftp",
            20 => "ftp-data",
            70 => "gopher",
            1720 => "h323",
            101 => "hostname",
            443 => "https",
            113 => "ident",
            143 => "imap4",
            194 => "irc",
            543 => "klogin",
            544 => "kshell",
            389 => "ldap",
            636 => "ldaps",
            513 => "login",
            1352 => "lotusnotes",
            515 => "lpd",
            139 => "netbios-ssn",
            119 => "nntp",
            5631 => "pcanywhere-data",
            109 => "pop2",
            110 => "pop3",
            1723 => "pptp",
            554 => "rtsp",
            25 => "smtp",
            1521 => "sqlnet",
            22 => "ssh",
            23 => "telnet",
            540 => "uucp",
            43 => "whois",
            80 => "www",
            _ => return None,
        }),
        AclProtocol::Udp => Some(match port {
            512 => "biff",
            68 => "bootpc",
            67 => "bootps",
            195 => "dnsix",
            500 => "isakmp",
            434 => "mobile-ip",
            42 => "nameserver",
            138 => "netbios-dgm",
            137 => "netbios-ns",
            123 => "ntp",
            5632 => "pcanywhere-status",
            1645 => "radius",
            1646 => "radius-acct",
            520 => "rip",
            5510 => "secureid-udp",
            161 => "snmp",
            162 => "snmptrap",
            514 => "syslog",
            69 => "tftp",
            37 => "time",
            4789 => "vxlan",
            513 => "who",
            177 => "xdmcp",
            _ => return None,
        }),
        _ => None,
    }
}

fn icmp_name(t: u8, proto: AclProtocol) -> String {
    let name = if proto == AclProtocol::Icmp6 {
        match t {
            1 => "unreachable",
            2 => "packet-too-big",
            3 => "time-exceeded",
            4 => "parameter-problem",
            128 => "echo",
            129 => "echo-reply",
            130 => "membership-query",
            131 => "membership-report",
            132 => "membership-reduction",
            133 => "router-solicitation",
            134 => "router-advertisement",
            135 => "neighbor-solicitation",
            136 => "neighbor-advertisement",
            137 => "neighbor-redirect",
            138 => "router-renumbering",
            _ => "",
        }
    } else {
        match t {
            0 => "echo-reply",
            3 => "unreachable",
            4 => "source-quench",
            5 => "redirect",
            6 => "alternate-address",
            8 => "echo",
            9 => "router-advertisement",
            10 => "router-solicitation",
            11 => "time-exceeded",
            12 => "parameter-problem",
            13 => "timestamp-request",
            14 => "timestamp-reply",
            15 => "information-request",
            16 => "information-reply",
            17 => "mask-request",
            18 => "mask-reply",
            30 => "traceroute",
            31 => "conversion-error",
            32 => "mobile-redirect",
            _ => "",
        }
    };
    if name.is_empty() {
        t.to_string()
    } else {
        name.to_string()
    }
}

/// FNV-1a, 32 bits: a stable stand-in for ASA's ACE hash.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use dataplane::policy::{Direction, PacketMeta, PolicyHandle, Verdict};

    const SEED: &str = "\
access-list SPLIT standard permit 198.18.1.0 255.255.255.0
access-list VPN-FILTER extended permit icmp security-group tag 10 any security-group tag 20 any
access-list VPN-FILTER extended permit tcp security-group tag 10 any security-group tag 20 any eq 443
access-list VPN-FILTER extended deny ip any any log
cts role-based sgt-map 198.18.1.0/28 sgt 20
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn classify(
        t: &PolicyTables,
        acl: &str,
        pkts: &[PacketMeta],
        sgt: Option<u16>,
    ) -> Vec<Verdict> {
        let mut out = vec![Verdict::default(); pkts.len()];
        t.acl(acl)
            .unwrap()
            .classify_batch(pkts, Direction::FromClient, sgt, t.sgts(), &mut out);
        out
    }

    #[test]
    fn seed_filter_compiles_and_enforces() {
        let cfg = parse_str(SEED, "seed.cfg").unwrap();
        let t = compile(&cfg).unwrap();
        assert_eq!(t.generation, 0);
        assert_eq!(t.sgt_map.lookup(ip("198.18.1.5")), Some(20));
        assert_eq!(t.sgt_map.lookup(ip("198.18.1.16")), None);
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        let ssh = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 22);
        let ping = PacketMeta::icmp(ip("198.18.100.10"), ip("198.18.1.5"), 8);
        let v = classify(&t, "VPN-FILTER", &[https, ssh, ping], Some(10));
        assert_eq!(
            v.iter()
                .map(|v| (v.is_permit(), v.rule, v.log))
                .collect::<Vec<_>>(),
            [(true, 1, false), (false, 2, true), (true, 0, false)]
        );
        // Standard ACL: destination network.
        let v = classify(
            &t,
            "SPLIT",
            &[https, PacketMeta::ip(ip("10.0.0.1"), ip("198.18.2.1"), 47)],
            None,
        );
        assert_eq!((v[0].rule, v[1].rule), (0, Verdict::IMPLICIT_DENY));
    }

    #[test]
    fn ace_log_level_and_interval_reach_the_rule() {
        let cfg = parse_str(
            "\
access-list L extended deny tcp any any eq 22 log 4
access-list L extended deny udp any any log critical interval 60
access-list L extended permit ip any any log disable
",
            "l.cfg",
        )
        .unwrap();
        let t = compile(&cfg).unwrap();
        let r = t.acl("L").unwrap().rules();
        assert_eq!(
            r.iter()
                .map(|r| (r.log, r.log_level, r.log_interval))
                .collect::<Vec<_>>(),
            [(true, 4, 300), (true, 2, 60), (false, 6, 300)]
        );
    }

    #[test]
    fn names_remarks_inactive_and_show() {
        let cfg = parse_str(
            "\
cts role-based sgt 20 name Servers
cts role-based sgt 10 name Employees
access-list F remark web for employees
access-list F extended permit tcp security-group name Employees any security-group name Servers 198.18.1.0 255.255.255.0 eq https
access-list F extended permit tcp any host 198.18.1.9 eq 80 inactive
access-list F extended permit udp any6 range 1000 2000 fd00:1::/64 eq 53
access-list F extended permit icmp any any echo-reply
access-list F extended deny ip any any log
cts role-based sgt-map 198.18.1.0/28 sgt 20
",
            "f.cfg",
        )
        .unwrap();
        let t = compile(&cfg).unwrap();
        let acl = t.acl("F").unwrap();
        assert_eq!(acl.len(), 5, "remark left out, inactive kept");
        assert_eq!(acl.rules()[0].src_sgt, Some(10));
        assert_eq!(acl.rules()[0].dst_sgt, Some(20));
        let web = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        let www = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.9"), 6, 40000, 80);
        let v = classify(&t, "F", &[web, web, www], Some(10));
        assert_eq!((v[0].rule, v[2].rule), (0, 4), "inactive line skipped");

        let h = PolicyHandle::new(t);
        let shown = show_access_list(&h.load(), &cfg);
        let lines: Vec<&str> = shown.lines().collect();
        assert!(
            lines[0].starts_with("access-list F; 5 elements; name hash: 0x"),
            "{shown}"
        );
        assert_eq!(lines[1], "access-list F line 1 remark web for employees");
        assert!(lines[2].starts_with(
            "access-list F line 2 extended permit tcp security-group name Employees any security-group name Servers 198.18.1.0 255.255.255.0 eq https (hitcnt=2) 0x"
        ), "{shown}");
        assert!(lines[3].starts_with(
            "access-list F line 3 extended permit tcp any host 198.18.1.9 eq www inactive (hitcnt=0) (inactive) 0x"
        ), "{shown}");
        assert!(lines[4].starts_with(
            "access-list F line 4 extended permit udp any6 range 1000 2000 fd00:1::/64 eq domain (hitcnt=0) 0x"
        ), "{shown}");
        assert!(
            lines[5].starts_with(
                "access-list F line 5 extended permit icmp any any echo-reply (hitcnt=0) 0x"
            ),
            "{shown}"
        );
        assert!(lines[6].starts_with(
            "access-list F line 6 extended deny ip any any log informational interval 300 (hitcnt=1) 0x"
        ), "{shown}");
        assert_eq!(lines[7], "access-list F implicit deny (hitcnt=0)");
        assert_eq!(lines.len(), 8);
        assert_eq!(show_access_list_named(&h.load(), &cfg, "F"), shown);
        assert_eq!(show_access_list_named(&h.load(), &cfg, "NOPE"), "");

        // Reload with the same text: the counters survive.
        h.publish(compile(&cfg).unwrap());
        assert!(show_access_list(&h.load(), &cfg).contains("eq https (hitcnt=2)"));
    }

    #[test]
    fn seed_show_matches_asa_format() {
        let cfg = parse_str(SEED, "seed.cfg").unwrap();
        let t = compile(&cfg).unwrap();
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        classify(&t, "VPN-FILTER", &[https; 3], Some(10));
        let shown = show_access_list(&t, &cfg);
        let strip = |l: &str| l.rsplit_once(" 0x").map_or(l, |(a, _)| a).to_string();
        let lines: Vec<String> = shown.lines().map(strip).collect();
        assert_eq!(
            lines,
            [
                "access-list SPLIT; 1 elements; name hash:",
                "access-list SPLIT line 1 standard permit 198.18.1.0 255.255.255.0 (hitcnt=0)",
                "access-list SPLIT implicit deny (hitcnt=0)",
                "access-list VPN-FILTER; 3 elements; name hash:",
                "access-list VPN-FILTER line 1 extended permit icmp security-group tag 10 any security-group tag 20 any (hitcnt=0)",
                "access-list VPN-FILTER line 2 extended permit tcp security-group tag 10 any security-group tag 20 any eq https (hitcnt=3)",
                "access-list VPN-FILTER line 3 extended deny ip any any log informational interval 300 (hitcnt=0)",
                "access-list VPN-FILTER implicit deny (hitcnt=0)",
            ]
        );
    }

    #[test]
    fn unknown_security_group_name_is_an_error_with_its_line() {
        let cfg = parse_str(
            "access-list F extended permit ip any any\naccess-list F extended permit ip security-group name Nope any any\n",
            "x.cfg",
        )
        .unwrap();
        let e = compile(&cfg).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string()
                .starts_with("x.cfg:2: access-list F: security-group name `Nope`"),
            "{e}"
        );
    }

    #[test]
    fn protocols_ports_and_icmp6_convert() {
        let cfg = parse_str(
            "\
access-list F extended permit gre any any
access-list F extended permit tcp any lt 1024 any neq 23
access-list F extended permit tcp any gt 1023 any range 8000 8080
access-list F extended permit icmp6 any6 any6 echo
",
            "p.cfg",
        )
        .unwrap();
        let t = compile(&cfg).unwrap();
        let r = t.acl("F").unwrap().rules();
        assert_eq!(r[0].protocol, Some(47));
        assert_eq!(
            (r[1].src_port, r[1].dst_port),
            (Some(dp::PortMatch::Lt(1024)), Some(dp::PortMatch::Neq(23)))
        );
        assert_eq!(r[2].dst_port, Some(dp::PortMatch::Range(8000, 8080)));
        assert_eq!(
            (r[3].protocol, r[3].icmp_type, r[3].src),
            (Some(58), Some(128), NetMatch::Any6)
        );
        let shown = show_access_list(&t, &cfg);
        assert!(
            shown.contains("line 1 extended permit gre any any (hitcnt=0)"),
            "{shown}"
        );
        assert!(
            shown.contains("line 2 extended permit tcp any lt 1024 any neq telnet"),
            "{shown}"
        );
        assert!(
            shown.contains("line 3 extended permit tcp any gt 1023 any range 8000 8080"),
            "{shown}"
        );
        assert!(
            shown.contains("line 4 extended permit icmp6 any6 any6 echo (hitcnt=0)"),
            "{shown}"
        );
    }

    fn aces(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn downloadable_acl_compiles_in_order_with_config_names() {
        let cfg = parse_str(
            "cts role-based sgt 20 name Servers\naccess-list X extended permit ip any any\n",
            "t.cfg",
        )
        .unwrap();
        let entries = aces(&[
            "permit tcp any security-group name Servers any eq 443",
            "remark from ISE",
            "permit icmp any host 198.18.1.5 echo",
            "deny ip any any log",
        ]);
        let name = downloadable_name("alice@corp.example", &entries);
        assert!(name.starts_with("AAA-user-alice@corp.example-"), "{name}");
        assert_eq!(
            name,
            downloadable_name("alice@corp.example", &entries),
            "stable"
        );
        assert_ne!(name, downloadable_name("alice@corp.example", &entries[..1]));
        assert_eq!(downloadable_name("a b", &entries)[..12], *"AAA-user-a_b");
        let (acl, compiled) = compile_downloadable(&cfg, &name, &entries).unwrap();
        assert_eq!(acl.entries.len(), 3, "remarks are left out");
        assert_eq!(compiled.rules().len(), 3);
        let mut tables = compile(&cfg).unwrap();
        tables.acls.insert(name.clone(), Arc::new(compiled));
        // 198.18.1.5 is tagged 20 (Servers) only through the map: none here, so
        // the first rule does not match; the ping does.
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        let ping = PacketMeta::icmp(ip("198.18.100.10"), ip("198.18.1.5"), 8);
        let v = classify(&tables, &name, &[https, ping], Some(10));
        assert!(!v[0].is_permit());
        assert!(v[1].is_permit());
        let out = show_access_list_named(&tables, &cfg, "X");
        assert!(out.contains("access-list X line 1"), "{out}");
        let mut shown = String::new();
        show_one(&mut shown, &tables, &cfg, &name, &acl);
        assert!(
            shown.contains(&format!("access-list {name}; 3 elements")),
            "{shown}"
        );
        assert!(shown.contains("security-group name Servers"), "{shown}");
    }

    #[test]
    fn downloadable_acl_errors_name_the_entry_and_never_inject() {
        let cfg = parse_str("hostname x\n", "t.cfg").unwrap();
        let err =
            |list: &[&str]| compile_downloadable(&cfg, "AAA-user-u-0", &aces(list)).unwrap_err();
        assert!(err(&[]).contains("no entries"));
        let e = err(&["permit ip any any", "permit bogus any any"]);
        assert!(e.starts_with("entry 2:"), "{e}");
        let e = err(&["permit tcp any security-group name Nope any"]);
        assert!(e.starts_with("entry 1:"), "{e}");
        // A newline would start a new config command (here: a second ACL).
        let e = err(&["permit ip any any\naccess-list VPN-FILTER extended permit ip any any"]);
        assert!(e.contains("control characters"), "{e}");
        assert!(err(&["permit ip\rany any"]).contains("control characters"));
        assert!(err(&[&"permit ip any any ".repeat(30)]).contains("too long"));
        assert!(err(&["   "]).contains("entry 1"));
    }

    #[test]
    fn object_groups_compile_expanded_and_show_like_asa() {
        let cfg = parse_str(
            "\
object network WEB1
 host 198.18.1.10
object-group network SERVERS
 network-object object WEB1
 network-object 198.18.4.0 255.255.255.0
object-group service WEBPORTS tcp
 port-object eq www
 port-object eq https
access-list F remark web
access-list F extended permit tcp any object-group SERVERS object-group WEBPORTS
access-list F extended deny ip any any
",
            "f.cfg",
        )
        .unwrap();
        let t = compile(&cfg).unwrap();
        let acl = t.acl("F").unwrap();
        assert_eq!(acl.len(), 5, "4 expanded + the deny");
        let to =
            |dst: &str, port| PacketMeta::with_ports(ip("198.18.100.10"), ip(dst), 6, 40000, port);
        let pkts = [
            to("198.18.4.7", 443),
            to("198.18.4.7", 443),
            to("198.18.1.10", 80),
            to("198.18.1.10", 22),
            to("198.18.1.11", 80),
        ];
        let v = classify(&t, "F", &pkts, None);
        assert_eq!(
            v.iter()
                .map(|v| (v.is_permit(), v.rule))
                .collect::<Vec<_>>(),
            [(true, 3), (true, 3), (true, 0), (false, 4), (false, 4)]
        );
        let shown = show_access_list(&t, &cfg);
        let strip = |l: &str| l.rsplit_once(" 0x").map_or(l, |(a, _)| a).to_string();
        let lines: Vec<String> = shown.lines().map(strip).collect();
        assert_eq!(
            lines,
            [
                "access-list F; 5 elements; name hash:",
                "access-list F line 1 remark web",
                "access-list F line 2 extended permit tcp any object-group SERVERS object-group WEBPORTS (hitcnt=3)",
                "  access-list F line 2 extended permit tcp any host 198.18.1.10 eq www (hitcnt=1)",
                "  access-list F line 2 extended permit tcp any host 198.18.1.10 eq https (hitcnt=0)",
                "  access-list F line 2 extended permit tcp any 198.18.4.0 255.255.255.0 eq www (hitcnt=0)",
                "  access-list F line 2 extended permit tcp any 198.18.4.0 255.255.255.0 eq https (hitcnt=2)",
                "access-list F line 3 extended deny ip any any (hitcnt=2)",
                "access-list F implicit deny (hitcnt=0)",
            ]
        );
        // An unknown security-group name inside a group is still a line error.
        let cfg = parse_str(
            "object-group security S\n security-group name Nope\naccess-list F extended permit ip object-group-security S any any\n",
            "s.cfg",
        )
        .unwrap();
        let e = compile(&cfg).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}

//! `object network|service` and `object-group` (`asa-syntax.md` section 2), and
//! access-list entries that name them.
//!
//! An entry naming objects is read when the whole file is (so a group may be
//! defined below the entry that uses it, and members added to a group later count),
//! then expanded into plain entries by [`Objects::expand`]. Nested `group-object`
//! must name a group of the same type that is already defined, as on ASA; a cycle
//! made by re-entering a group is an error at the line that closes it.

use super::*;
use crate::config::objects::*;

/// Whether an extended entry (tokens from the action on) names an object.
fn names_objects(t: &[&str]) -> bool {
    t.iter()
        .any(|w| matches!(*w, "object" | "object-group" | "object-group-security"))
}

/// `permit|deny ...` of an extended entry: plain, or (when it names objects) a
/// placeholder that [`Parser::resolve_object_aces`] fills once the file is read.
pub(super) fn extended_entry(
    t: &[&str],
    start: usize,
) -> Result<(AclAction, AclEntryKind), String> {
    let rest = t.get(start..).unwrap_or(&[]);
    if !names_objects(rest) {
        return parse_extended(t, start);
    }
    let action = parse_action(
        rest.first()
            .ok_or("access-list entry ends early: missing permit or deny")?,
    )?;
    let placeholder = ObjectAce {
        template: AceTemplate {
            protocol: ProtocolSlot::Protocol(AclProtocol::Ip),
            src_sg: None,
            src: AddrSlot::Addr(AddrMatch::Any),
            src_port: None,
            dst_sg: None,
            dst: AddrSlot::Addr(AddrMatch::Any),
            dst_port: None,
            icmp: None,
            log: None,
            inactive: false,
        },
        expanded: Vec::new(),
    };
    Ok((action, AclEntryKind::ExtendedObjects(Box::new(placeholder))))
}

/// Index of the action in an `access-list NAME [line N] [extended] ...` line.
fn action_index(t: &[&str]) -> usize {
    let i = if t.get(2) == Some(&"line") { 4 } else { 2 };
    if t.get(i) == Some(&"extended") {
        i + 1
    } else {
        i
    }
}

impl Parser<'_> {
    // ------------------------------------------------------------ definitions

    /// `object network|service NAME`, `object-group TYPE NAME [PROTO]`.
    pub(super) fn object(&mut self, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        let (name, kind) = match t {
            ["object", "network", name] => (*name, "object network"),
            ["object", "service", name] => (*name, "object service"),
            ["object", "network" | "service", ..] => {
                return fail(format!("expected `{} NAME`", words(&t[..2.min(t.len())])));
            }
            ["object", ..] => return self.unknown(c, None),
            ["object-group", "network", name] => (*name, "network"),
            ["object-group", "protocol", name] => (*name, "protocol"),
            ["object-group", "icmp-type", name] => (*name, "icmp-type"),
            ["object-group", "security", name] => (*name, "security"),
            ["object-group", "service", name] => (*name, "service"),
            ["object-group", "service", name, "tcp"] => (*name, "service tcp"),
            ["object-group", "service", name, "udp"] => (*name, "service udp"),
            ["object-group", "service", name, "tcp-udp"] => (*name, "service tcp-udp"),
            ["object-group", "service", _, p, ..] => {
                return fail(format!(
                    "unknown service object-group protocol `{p}` (expected tcp, udp or tcp-udp, or none)"
                ));
            }
            [
                "object-group",
                "network" | "protocol" | "icmp-type" | "security" | "service",
                ..,
            ] => {
                return fail(format!("expected `object-group {} NAME`", t[1]));
            }
            // user, network-service, ...: not used by the headend.
            ["object-group", ..] => return self.unknown(c, None),
            _ => return self.unknown(c, None),
        };
        let objs = &mut self.cfg.objects;
        let existing = objs.kind_of(name);
        let full = if kind.starts_with("object ") {
            kind.to_string()
        } else {
            format!("object-group {kind}")
        };
        match existing {
            Some(k) if k == full => {}
            Some(k) => {
                return fail(format!(
                    "`{name}` is already defined as {k}; object and object-group names are shared"
                ));
            }
            None => {
                let line = c.line;
                let n = name.to_string();
                match kind {
                    "object network" => {
                        objs.network.insert(
                            n.clone(),
                            NetworkObject {
                                name: n,
                                value: None,
                                line,
                            },
                        );
                    }
                    "object service" => {
                        objs.service.insert(
                            n.clone(),
                            ServiceObject {
                                name: n,
                                value: Vec::new(),
                                line,
                            },
                        );
                    }
                    _ => {
                        let kind = match kind {
                            "network" => GroupKind::Network,
                            "protocol" => GroupKind::Protocol,
                            "icmp-type" => GroupKind::IcmpType,
                            "security" => GroupKind::Security,
                            "service tcp" => GroupKind::Service(Some(PortProtocol::Tcp)),
                            "service udp" => GroupKind::Service(Some(PortProtocol::Udp)),
                            "service tcp-udp" => GroupKind::Service(Some(PortProtocol::TcpUdp)),
                            _ => GroupKind::Service(None),
                        };
                        objs.groups.insert(
                            n.clone(),
                            ObjectGroup {
                                name: n,
                                kind,
                                members: Vec::new(),
                                line,
                            },
                        );
                    }
                }
            }
        }
        Ok(Some(Mode::Object(name.to_string())))
    }

    /// A line under `object ...` / `object-group ...`.
    pub(super) fn sub_object(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        if t.first() == Some(&"description") {
            return Ok(None);
        }
        if self.cfg.objects.network.contains_key(name) {
            let value = match t {
                ["host", a] => {
                    let ip = parse_ip(a)?;
                    NetworkValue::Prefix(ip, full_len(ip))
                }
                ["subnet", p] if p.contains('/') => {
                    let (ip, len) = parse_prefix(p)?;
                    NetworkValue::Prefix(ip, len)
                }
                ["subnet", a, m] => {
                    let ip = parse_v4(a)?;
                    let len = mask_len(parse_mask(m)?);
                    if host_bits_set(IpAddr::V4(ip), len) {
                        return fail(format!(
                            "address {ip} has host bits set for mask {m}: the network address is needed"
                        ));
                    }
                    NetworkValue::Prefix(IpAddr::V4(ip), len)
                }
                ["range", a, b] => {
                    let (a, b) = (parse_ip(a)?, parse_ip(b)?);
                    if a.is_ipv4() != b.is_ipv4() {
                        return fail("range ends must be of the same address family");
                    }
                    if a > b {
                        return fail(format!("range {a} {b} is reversed"));
                    }
                    NetworkValue::Range(a, b)
                }
                ["fqdn", ..] => {
                    return fail(
                        "fqdn network objects are not supported (the headend does not resolve names for ACLs); use host, subnet or range",
                    );
                }
                ["nat", ..] => {
                    self.warn(
                        c.line,
                        format!("`nat` in object network `{name}` is not supported; ignored"),
                    );
                    return Ok(None);
                }
                ["host" | "subnet" | "range", ..] => {
                    return fail(
                        "expected `host A`, `subnet A MASK`, `subnet A/LEN` or `range FIRST LAST`",
                    );
                }
                _ => return self.unknown(c, Some(mode)),
            };
            if let Some(o) = self.cfg.objects.network.get_mut(name) {
                // A new value replaces the old one, as on ASA.
                o.value = Some(value);
            }
            return Ok(None);
        }
        if self.cfg.objects.service.contains_key(name) {
            let value = match t {
                ["service", rest @ ..] => parse_service(rest)?,
                _ => return self.unknown(c, Some(mode)),
            };
            if let Some(o) = self.cfg.objects.service.get_mut(name) {
                o.value = value;
            }
            return Ok(None);
        }
        let Some(kind) = self.cfg.objects.groups.get(name).map(|g| g.kind) else {
            return self.unknown(c, Some(mode));
        };
        let member = match (kind, t) {
            (_, ["group-object", n]) => {
                match self.cfg.objects.groups.get(*n) {
                    Some(g) if g.kind == kind => {}
                    Some(g) => {
                        return fail(format!(
                            "group-object `{n}` is an object-group {}; `{name}` is {} (nested groups must be of the same type)",
                            g.kind.label(),
                            kind.label()
                        ));
                    }
                    None => {
                        return fail(format!(
                            "object-group `{n}` is not defined (a nested group must be defined before the group-object line)"
                        ));
                    }
                }
                GroupMember::Group((*n).to_string())
            }
            (_, ["group-object", ..]) => return fail("expected `group-object NAME`"),
            (GroupKind::Network, ["network-object", "object", n]) => {
                if !self.cfg.objects.network.contains_key(*n) {
                    return fail(match self.cfg.objects.kind_of(n) {
                        Some(k) => format!("`{n}` is an {k}, not an object network"),
                        None => format!("object network `{n}` is not defined"),
                    });
                }
                GroupMember::NetworkObject((*n).to_string())
            }
            (GroupKind::Network, ["network-object", rest @ ..]) => {
                let mut i = 0;
                let a = parse_addr(rest, &mut i, "network-object")?;
                if i != rest.len() {
                    return fail("expected `network-object host A | A MASK | A/LEN | object NAME`");
                }
                GroupMember::Network(a)
            }
            (GroupKind::Service(Some(pp)), ["port-object", rest @ ..]) => {
                let proto = if pp == PortProtocol::Udp {
                    AclProtocol::Udp
                } else {
                    AclProtocol::Tcp
                };
                let mut i = 0;
                match parse_port_match(rest, &mut i, proto)? {
                    Some(m @ (PortMatch::Eq(_) | PortMatch::Range(..))) if i == rest.len() => {
                        GroupMember::Port(m)
                    }
                    _ => {
                        return fail(
                            "expected `port-object eq PORT` or `port-object range FIRST LAST`",
                        );
                    }
                }
            }
            (GroupKind::Service(None), ["service-object", "object", n]) => {
                if !self.cfg.objects.service.contains_key(*n) {
                    return fail(match self.cfg.objects.kind_of(n) {
                        Some(k) => format!("`{n}` is an {k}, not an object service"),
                        None => format!("object service `{n}` is not defined"),
                    });
                }
                GroupMember::ServiceObject((*n).to_string())
            }
            (GroupKind::Service(None), ["service-object", rest @ ..]) => {
                let services = parse_service(rest)?;
                if let Some(g) = self.cfg.objects.groups.get_mut(name) {
                    for s in services.into_iter().map(GroupMember::Service) {
                        if !g.members.contains(&s) {
                            g.members.push(s);
                        }
                    }
                }
                return Ok(None);
            }
            (GroupKind::Protocol, ["protocol-object", p]) => {
                GroupMember::Protocol(parse_protocol(p)?)
            }
            (GroupKind::IcmpType, ["icmp-object", ty]) => {
                GroupMember::Icmp(parse_icmp_type(ty, AclProtocol::Icmp)?)
            }
            (GroupKind::Security, ["security-group", "tag", n]) => GroupMember::SecurityGroup(
                SecurityGroupMatch::Tag(parse_num(n, "security-group tag", 0, 65535)? as u16),
            ),
            (GroupKind::Security, ["security-group", "name", n]) => {
                GroupMember::SecurityGroup(SecurityGroupMatch::Name((*n).to_string()))
            }
            (
                _,
                [
                    w @ ("network-object" | "port-object" | "service-object" | "protocol-object"
                    | "icmp-object" | "security-group"),
                    ..,
                ],
            ) => {
                return fail(format!(
                    "`{w}` does not belong in object-group {} `{name}`, or is incomplete",
                    kind.label()
                ));
            }
            _ => return self.unknown(c, Some(mode)),
        };
        let is_group = matches!(member, GroupMember::Group(_));
        if let Some(g) = self.cfg.objects.groups.get_mut(name)
            && !g.members.contains(&member)
        {
            g.members.push(member);
        }
        if is_group {
            // Re-entering a group can close a loop; say so at this line.
            if let Err(e) = self.cfg.objects.flatten(name, &[kind]) {
                return fail(e);
            }
        }
        Ok(None)
    }

    // ------------------------------------------------------- entries that use them

    /// Reads every access-list entry that names objects, now that all objects
    /// are known, and expands it. Reports the first bad entry (by line).
    pub(super) fn resolve_object_aces(&mut self) -> Result<(), ConfigError> {
        let mut first_err: Option<(usize, String)> = None;
        for acl in self.cfg.access_lists.values_mut() {
            for e in &mut acl.entries {
                let AclEntryKind::ExtendedObjects(obj) = &mut e.kind else {
                    continue;
                };
                let toks: Vec<&str> = e.text.split_whitespace().collect();
                let res =
                    parse_template(&self.cfg.objects, &toks, action_index(&toks)).and_then(|tpl| {
                        let expanded = self.cfg.objects.expand(&tpl)?;
                        Ok((tpl, expanded))
                    });
                match res {
                    Ok((template, expanded)) => {
                        obj.template = template;
                        obj.expanded = expanded;
                    }
                    Err(m) => {
                        if first_err.as_ref().is_none_or(|(l, _)| e.line < *l) {
                            first_err = Some((e.line, m));
                        }
                    }
                }
            }
        }
        match first_err {
            Some((line, m)) => Err(self.err(line, m)),
            None => Ok(()),
        }
    }
}

/// `PROTO [source OP P] [destination OP P]`, `icmp|icmp6 [TYPE]`, or the older
/// `PROTO OP P` (a destination port), as in `service` and `service-object`.
/// `tcp-udp` stands for both: one service for each.
fn parse_service(t: &[&str]) -> Result<Vec<Service>, String> {
    let p = t
        .first()
        .ok_or("expected a protocol (tcp, udp, tcp-udp, icmp, ip, a name or a number)")?;
    if *p == "tcp-udp" {
        let mut both = Vec::new();
        for proto in ["tcp", "udp"] {
            let mut one = vec![proto];
            one.extend(t.get(1..).unwrap_or(&[]));
            both.extend(parse_service(&one)?);
        }
        return Ok(both);
    }
    let mut s = Service::protocol(parse_protocol(p)?);
    let rest = t.get(1..).unwrap_or(&[]);
    if matches!(s.protocol, AclProtocol::Icmp | AclProtocol::Icmp6) {
        match rest {
            [] => {}
            [ty] => s.icmp_type = Some(parse_icmp_type(ty, s.protocol)?),
            [_, _, ..] => {
                return Err("ICMP codes are not supported; give only the ICMP type".into());
            }
        }
        return Ok(vec![s]);
    }
    let mut i = 0;
    while let Some(w) = rest.get(i).copied() {
        let slot = match w {
            "source" => &mut s.src_port,
            "destination" => &mut s.dst_port,
            _ if i == 0 => &mut s.dst_port,
            _ => return Err(format!("unexpected `{w}` in service")),
        };
        if matches!(w, "source" | "destination") {
            i += 1;
        }
        match parse_port_match(rest, &mut i, s.protocol)? {
            Some(m) => *slot = Some(m),
            None => {
                return Err(format!(
                    "expected a port match (eq, neq, lt, gt, range) after `{w}`"
                ));
            }
        }
    }
    Ok(vec![s])
}

/// An extended entry that names objects, tokens `t`, action at `start`. An
/// `object-group` right after an address is a port group when it is one, the
/// next address otherwise, which is how ASA reads it too.
fn parse_template(objs: &Objects, t: &[&str], start: usize) -> Result<AceTemplate, String> {
    let tok = |i: usize, what: &str| -> Result<&str, String> {
        t.get(i)
            .copied()
            .ok_or_else(|| format!("access-list entry ends early: missing {what}"))
    };
    let group_kind = |n: &str| objs.groups.get(n).map(|g| g.kind);
    let is_port_group = |i: usize| {
        t.get(i) == Some(&"object-group")
            && t.get(i + 1)
                .is_some_and(|n| matches!(group_kind(n), Some(GroupKind::Service(Some(_)))))
    };
    parse_action(tok(start, "permit or deny")?)?;
    let mut i = start + 1;
    let protocol = match tok(i, "protocol")? {
        "object-group" => ProtocolSlot::ObjectGroup(tok(i + 1, "object-group name")?.into()),
        "object" => ProtocolSlot::Object(tok(i + 1, "object name")?.into()),
        p => ProtocolSlot::Protocol(parse_protocol(p)?),
    };
    i += if matches!(protocol, ProtocolSlot::Protocol(_)) {
        1
    } else {
        2
    };
    // Port operators are checked against the real protocol at expansion; with a
    // group in the protocol position, read them as tcp's for now.
    let port_proto = match &protocol {
        ProtocolSlot::Protocol(p) => *p,
        _ => AclProtocol::Tcp,
    };
    let sg = |i: &mut usize| -> Result<Option<SgSlot>, String> {
        if t.get(*i) == Some(&"object-group-security") {
            let n = tok(*i + 1, "object-group-security name")?;
            *i += 2;
            return Ok(Some(SgSlot::ObjectGroup(n.into())));
        }
        Ok(parse_sg(t, i)?.map(SgSlot::One))
    };
    let addr = |i: &mut usize, what: &str| -> Result<AddrSlot, String> {
        match t.get(*i).copied() {
            Some("object") => {
                let n = tok(*i + 1, "object name")?;
                *i += 2;
                Ok(AddrSlot::Object(n.into()))
            }
            Some("object-group") => {
                let n = tok(*i + 1, "object-group name")?;
                *i += 2;
                Ok(AddrSlot::ObjectGroup(n.into()))
            }
            _ => Ok(AddrSlot::Addr(parse_addr(t, i, what)?)),
        }
    };
    // Only a protocol with ports (or a group that may hold one) takes a port group.
    let has_ports = match &protocol {
        ProtocolSlot::Protocol(p) => {
            matches!(
                p,
                AclProtocol::Tcp | AclProtocol::Udp | AclProtocol::Number(132)
            )
        }
        _ => true,
    };
    let port = |i: &mut usize| -> Result<Option<PortSlot>, String> {
        if has_ports && is_port_group(*i) {
            let n = tok(*i + 1, "object-group name")?;
            *i += 2;
            return Ok(Some(PortSlot::ObjectGroup(n.into())));
        }
        Ok(parse_port_match(t, i, port_proto)?.map(PortSlot::Port))
    };
    let src_sg = sg(&mut i)?;
    let src = addr(&mut i, "source")?;
    let src_port = port(&mut i)?;
    let dst_sg = sg(&mut i)?;
    let dst = addr(&mut i, "destination")?;
    let dst_port = port(&mut i)?;
    let mut icmp = None;
    if t.get(i) == Some(&"object-group") {
        let n = tok(i + 1, "object-group name")?;
        match group_kind(n) {
            Some(GroupKind::IcmpType) => icmp = Some(IcmpSlot::ObjectGroup(n.into())),
            Some(k) => {
                return Err(format!(
                    "object-group `{n}` is of type {} and cannot follow the destination",
                    k.label()
                ));
            }
            None => return Err(format!("object-group `{n}` is not defined")),
        }
        i += 2;
    } else if let ProtocolSlot::Protocol(p @ (AclProtocol::Icmp | AclProtocol::Icmp6)) = protocol
        && let Some(ty) = t.get(i)
        && !matches!(*ty, "log" | "inactive" | "time-range")
    {
        icmp = Some(IcmpSlot::Type(parse_icmp_type(ty, p)?));
        i += 1;
    }
    // The options (log, inactive, time-range) read as on a plain entry.
    let mut opts = vec![
        t.get(start).copied().unwrap_or("permit"),
        "ip",
        "any",
        "any",
    ];
    opts.extend(t.get(i..).unwrap_or(&[]));
    let (_, plain) = parse_extended(&opts, 0)?;
    let (log, inactive) = match plain {
        AclEntryKind::Extended(a) => (a.log, a.inactive),
        _ => (None, false),
    };
    Ok(AceTemplate {
        protocol,
        src_sg,
        src,
        src_port,
        dst_sg,
        dst,
        dst_port,
        icmp,
        log,
        inactive,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::*;
    use std::net::IpAddr;

    fn ok(lines: &[&str]) -> Config {
        parse_str(&lines.join("\n"), "o.cfg").unwrap_or_else(|e| panic!("{e}"))
    }

    fn bad(lines: &[&str], line: usize, needle: &str) {
        let e = parse_str(&lines.join("\n"), "o.cfg").unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains(needle), "`{needle}` not in: {e}");
        assert!(e.to_string().starts_with(&format!("o.cfg:{line}: ")));
    }

    fn pfx(s: &str, len: u8) -> AddrMatch {
        AddrMatch::Prefix(s.parse::<IpAddr>().unwrap(), len)
    }

    fn aces(c: &Config, acl: &str, n: usize) -> Vec<ExtendedAce> {
        c.access_lists[acl].entries[n].extended_aces().to_vec()
    }

    const OBJECTS: &[&str] = &[
        "object network WEB1",
        " host 198.18.1.10",
        " description the web server",
        "object network NET6",
        " subnet fd00:1::/64",
        "object network LAB",
        " subnet 198.18.2.0 255.255.255.0",
        "object network RANGE",
        " range 198.18.3.5 198.18.3.10",
        "object service HTTPS",
        " service tcp destination eq https",
        "object service PING",
        " service icmp echo",
        "object-group network INNER",
        " network-object host 198.18.1.11",
        "object-group network SERVERS",
        " description web and app",
        " network-object object WEB1",
        " network-object 198.18.4.0 255.255.255.0",
        " group-object INNER",
        "object-group service WEBPORTS tcp",
        " port-object eq www",
        " port-object range 8000 8080",
        "object-group service DNS tcp-udp",
        " port-object eq domain",
        "object-group service MIXED",
        " service-object tcp destination eq ssh",
        " service-object udp source range 1000 2000 destination eq 53",
        " service-object object HTTPS",
        " service-object icmp echo-reply",
        "object-group protocol TCPUDP",
        " protocol-object tcp",
        " protocol-object udp",
        "object-group icmp-type PINGS",
        " icmp-object echo",
        " icmp-object echo-reply",
        "cts role-based sgt 20 name Servers",
        "object-group security EMPLOYEES",
        " security-group tag 10",
        " security-group tag 11",
        "object-group security TRUSTED",
        " security-group name Servers",
        " group-object EMPLOYEES",
    ];

    fn with(extra: &[&str]) -> Vec<&'static str> {
        let mut v: Vec<&str> = OBJECTS.to_vec();
        v.extend(
            extra
                .iter()
                .map(|s| -> &'static str { Box::leak(s.to_string().into_boxed_str()) }),
        );
        v
    }

    #[test]
    fn config_objects_are_read() {
        let c = ok(&with(&[]));
        let o = &c.objects;
        assert_eq!(
            o.network["WEB1"].value,
            Some(NetworkValue::Prefix("198.18.1.10".parse().unwrap(), 32))
        );
        assert_eq!(
            o.network["RANGE"].value,
            Some(NetworkValue::Range(
                "198.18.3.5".parse().unwrap(),
                "198.18.3.10".parse().unwrap()
            ))
        );
        assert_eq!(
            o.service["HTTPS"].value,
            vec![Service {
                protocol: AclProtocol::Tcp,
                src_port: None,
                dst_port: Some(PortMatch::Eq(443)),
                icmp_type: None
            }]
        );
        let g = &o.groups["SERVERS"];
        assert_eq!(g.kind, GroupKind::Network);
        assert_eq!(
            g.members,
            vec![
                GroupMember::NetworkObject("WEB1".into()),
                GroupMember::Network(pfx("198.18.4.0", 24)),
                GroupMember::Group("INNER".into()),
            ]
        );
        assert_eq!(
            o.groups["WEBPORTS"].kind,
            GroupKind::Service(Some(PortProtocol::Tcp))
        );
        assert_eq!(o.groups["MIXED"].kind, GroupKind::Service(None));
        assert_eq!(
            o.groups["MIXED"].members[1],
            GroupMember::Service(Service {
                protocol: AclProtocol::Udp,
                src_port: Some(PortMatch::Range(1000, 2000)),
                dst_port: Some(PortMatch::Eq(53)),
                icmp_type: None
            })
        );
        assert_eq!(
            o.groups["PINGS"].members,
            vec![GroupMember::Icmp(8), GroupMember::Icmp(0)]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn config_object_groups_expand_in_every_position() {
        let c = ok(&with(&[
            "access-list A extended permit tcp any object-group SERVERS object-group WEBPORTS",
            "access-list A extended permit object-group MIXED object LAB any",
            "access-list A extended permit icmp any object WEB1 object-group PINGS",
            "access-list A extended permit object-group TCPUDP object-group-security EMPLOYEES any object-group-security TRUSTED object NET6 log",
            "access-list A extended permit udp object RANGE object-group DNS any object-group DNS",
            "access-list A extended permit object HTTPS any any inactive",
            "access-list A extended deny ip any any",
        ]));
        let acl = &c.access_lists["A"];
        assert_eq!(acl.entries.len(), 7);
        // Destination group (3 hosts/nets, nested flattened) x port group (2).
        let a = aces(&c, "A", 0);
        let dsts: Vec<_> = a.iter().map(|x| (x.dst.clone(), x.dst_port)).collect();
        assert_eq!(
            dsts,
            vec![
                (pfx("198.18.1.10", 32), Some(PortMatch::Eq(80))),
                (pfx("198.18.1.10", 32), Some(PortMatch::Range(8000, 8080))),
                (pfx("198.18.4.0", 24), Some(PortMatch::Eq(80))),
                (pfx("198.18.4.0", 24), Some(PortMatch::Range(8000, 8080))),
                (pfx("198.18.1.11", 32), Some(PortMatch::Eq(80))),
                (pfx("198.18.1.11", 32), Some(PortMatch::Range(8000, 8080))),
            ]
        );
        assert!(
            a.iter()
                .all(|x| x.protocol == AclProtocol::Tcp && x.src == AddrMatch::Any)
        );
        // Service group in the protocol position: protocol, ports and ICMP type
        // come from each service.
        let a = aces(&c, "A", 1);
        assert_eq!(a.len(), 4);
        assert_eq!(
            (a[0].protocol, a[0].src.clone(), a[0].dst_port),
            (
                AclProtocol::Tcp,
                pfx("198.18.2.0", 24),
                Some(PortMatch::Eq(22))
            )
        );
        assert_eq!(
            (a[1].protocol, a[1].src_port, a[1].dst_port),
            (
                AclProtocol::Udp,
                Some(PortMatch::Range(1000, 2000)),
                Some(PortMatch::Eq(53))
            )
        );
        assert_eq!(a[2].dst_port, Some(PortMatch::Eq(443)));
        assert_eq!(
            (a[3].protocol, a[3].icmp_type),
            (AclProtocol::Icmp, Some(0))
        );
        // ICMP type group.
        let a = aces(&c, "A", 2);
        assert_eq!(
            a.iter().map(|x| x.icmp_type).collect::<Vec<_>>(),
            vec![Some(8), Some(0)]
        );
        assert!(a.iter().all(|x| x.dst == pfx("198.18.1.10", 32)));
        // Protocol group x security groups (nested, names kept for the compiler).
        let a = aces(&c, "A", 3);
        assert_eq!(a.len(), 2 * 2 * 3);
        assert!(
            a.iter()
                .all(|x| x.log.is_some() && x.dst == pfx("fd00:1::", 64))
        );
        assert_eq!(a[0].src_sg, Some(SecurityGroupMatch::Tag(10)));
        assert_eq!(
            a[0].dst_sg,
            Some(SecurityGroupMatch::Name("Servers".into()))
        );
        assert_eq!(a[1].dst_sg, Some(SecurityGroupMatch::Tag(10)));
        assert_eq!(a[6].protocol, AclProtocol::Udp);
        // A range object becomes its prefixes; a source port group.
        let a = aces(&c, "A", 4);
        let srcs: Vec<_> = a.iter().map(|x| x.src.clone()).collect();
        assert_eq!(
            srcs,
            vec![
                pfx("198.18.3.5", 32),
                pfx("198.18.3.6", 31),
                pfx("198.18.3.8", 31),
                pfx("198.18.3.10", 32)
            ]
        );
        assert!(a.iter().all(
            |x| x.src_port == Some(PortMatch::Eq(53)) && x.dst_port == Some(PortMatch::Eq(53))
        ));
        // Service object; inactive carried to each expanded entry.
        let a = aces(&c, "A", 5);
        assert_eq!(a.len(), 1);
        assert!(a[0].inactive);
        assert_eq!(a[0].dst_port, Some(PortMatch::Eq(443)));
        // Plain entries stay plain.
        assert!(matches!(acl.entries[6].kind, AclEntryKind::Extended(_)));
    }

    #[test]
    fn config_objects_may_be_defined_below_and_grow_later() {
        let c = ok(&[
            "access-list A extended permit ip any object-group LATER",
            "object-group network LATER",
            " network-object host 198.18.1.1",
            "object-group network LATER",
            " network-object host 198.18.1.2",
        ]);
        assert_eq!(aces(&c, "A", 0).len(), 2);
    }

    #[test]
    fn config_object_errors_have_their_line() {
        bad(
            &with(&["access-list A extended permit ip any object-group NOPE"]),
            OBJECTS.len() + 1,
            "object-group `NOPE` is not defined",
        );
        bad(
            &with(&["access-list A extended permit ip any object NOPE"]),
            OBJECTS.len() + 1,
            "object network `NOPE` is not defined",
        );
        bad(
            &with(&["access-list A extended permit ip any object-group WEBPORTS"]),
            OBJECTS.len() + 1,
            "is of type service tcp; this position needs network",
        );
        bad(
            &with(&["access-list A extended permit ip any object HTTPS"]),
            OBJECTS.len() + 1,
            "is an object service, not an object network",
        );
        bad(
            &with(&["access-list A extended permit object-group SERVERS any any"]),
            OBJECTS.len() + 1,
            "this position needs protocol or service",
        );
        bad(
            &with(&["access-list A extended permit ip object-group-security SERVERS any any"]),
            OBJECTS.len() + 1,
            "needs security",
        );
        bad(
            &with(&["access-list A extended permit udp any any object-group WEBPORTS"]),
            OBJECTS.len() + 1,
            "holds tcp ports; the entry's protocol is udp",
        );
        bad(
            &with(&["access-list A extended permit tcp any any object-group PINGS"]),
            OBJECTS.len() + 1,
            "icmp-type object-group `PINGS` holds ICMP (IPv4) types; it needs protocol icmp",
        );
        bad(
            &with(&["access-list A extended permit object HTTPS any any eq 80"]),
            OBJECTS.len() + 1,
            "already gives ports",
        );
        bad(
            &with(&["object network X", " fqdn www.example.com"]),
            OBJECTS.len() + 2,
            "fqdn network objects are not supported",
        );
        bad(
            &with(&["object-group service WEBPORTS udp"]),
            OBJECTS.len() + 1,
            "already defined as object-group service tcp",
        );
        bad(
            &with(&["object network SERVERS"]),
            OBJECTS.len() + 1,
            "already defined as object-group network",
        );
        bad(
            &with(&["object-group network G", " group-object WEBPORTS"]),
            OBJECTS.len() + 2,
            "nested groups must be of the same type",
        );
        bad(
            &with(&["object-group network G", " group-object UNDEFINED"]),
            OBJECTS.len() + 2,
            "must be defined before",
        );
        bad(
            &with(&["object-group network G", " network-object object HTTPS"]),
            OBJECTS.len() + 2,
            "not an object network",
        );
        bad(
            &with(&["object-group network G", " port-object eq 80"]),
            OBJECTS.len() + 2,
            "does not belong in object-group network",
        );
        bad(
            &with(&["object-group service P tcp", " port-object lt 80"]),
            OBJECTS.len() + 2,
            "expected `port-object eq PORT`",
        );
        bad(
            &with(&["object network R", " range 198.18.1.9 198.18.1.1"]),
            OBJECTS.len() + 2,
            "reversed",
        );
        bad(
            &with(&["object network R", " range 198.18.1.1 fd00::1"]),
            OBJECTS.len() + 2,
            "same address family",
        );
        bad(
            &with(&["object service S", " service icmp echo 0"]),
            OBJECTS.len() + 2,
            "ICMP codes are not supported",
        );
        // Cycles: closed by re-entering a group, reported where they close.
        bad(
            &[
                "object-group network A",
                " network-object host 198.18.1.1",
                "object-group network B",
                " group-object A",
                "object-group network A",
                " group-object B",
            ],
            6,
            "contains itself: A -> B -> A",
        );
        // Two big groups crossed are refused instead of eating memory.
        let mut big = vec!["object-group network BIG".to_string()];
        for i in 0..400 {
            big.push(format!(
                " network-object host 198.18.{}.{}",
                i / 200,
                i % 200 + 1
            ));
        }
        big.push("access-list A extended permit ip object-group BIG object-group BIG".into());
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        bad(&big, 402, "expands to more than 100000 entries");
    }

    #[test]
    fn config_nat_in_objects_is_a_warning() {
        let c = ok(&[
            "object network obj_any",
            " subnet 0.0.0.0 0.0.0.0",
            "object network obj_any",
            " nat (inside,outside) dynamic interface",
        ]);
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].line, 4);
        assert_eq!(
            c.objects.network["obj_any"].value,
            Some(NetworkValue::Prefix("0.0.0.0".parse().unwrap(), 0))
        );
    }

    #[test]
    fn config_split_tunnel_list_with_objects() {
        let c = ok(&with(&[
            "access-list S extended permit ip object-group SERVERS any",
            "group-policy G internal",
            "group-policy G attributes",
            " split-tunnel-policy tunnelspecified",
            " split-tunnel-network-list value S",
        ]));
        let routes = c.split_include_routes(&c.effective_policy("G"));
        assert_eq!(routes.len(), 3);
        assert_eq!(
            routes[1],
            (
                "198.18.4.0".parse().unwrap(),
                "255.255.255.0".parse().unwrap()
            )
        );
    }
}

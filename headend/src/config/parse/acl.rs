//! `access-list` (standard, extended, remarks, global knobs) and the entry grammar
//! shared with `objects.rs` (protocol, address, port and ICMP type matches).

use super::*;

impl Parser<'_> {
    // -------------------------------------------------------------- access-list

    pub(super) fn access_list(&mut self, c: &Cmd) -> Step {
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
}

// ------------------------------------------------------------- access lists

pub(super) fn parse_action(s: &str) -> Result<AclAction, String> {
    match s {
        "permit" => Ok(AclAction::Permit),
        "deny" => Ok(AclAction::Deny),
        _ => Err(format!("expected permit or deny, found `{s}`")),
    }
}

pub(super) fn parse_standard(t: &[&str], i: usize) -> Result<(AclAction, AclEntryKind), String> {
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

pub(super) fn parse_extended(
    t: &[&str],
    start: usize,
) -> Result<(AclAction, AclEntryKind), String> {
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

pub(super) fn parse_protocol(s: &str) -> Result<AclProtocol, String> {
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

pub(super) fn parse_sg(t: &[&str], i: &mut usize) -> Result<Option<SecurityGroupMatch>, String> {
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

pub(super) fn parse_addr(t: &[&str], i: &mut usize, what: &str) -> Result<AddrMatch, String> {
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

pub(super) fn parse_port_match(
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
pub(super) fn parse_port(s: &str) -> Result<u16, String> {
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

pub(super) fn parse_icmp_type(s: &str, proto: AclProtocol) -> Result<u8, String> {
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
    use crate::config::parse::test_util::*;

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
}

//! What an Access-Accept (or a CoA-Request) grants a session, in the terms of
//! asa-aaa.md section 3.
//!
//! Group policy: both `ASA-Group-Policy` (3076/25) and a Class of the form
//! `OU=NAME;` select one. When both are present **ASA-Group-Policy wins**: it is
//! the explicit, single-purpose attribute that Cisco recommends since ASA 8.2,
//! while Class is overloaded (ISE also puts `CACS:...` session state there). A
//! disagreement between the two is reported as a warning. Only a Class that
//! starts with `OU=` names a policy; other Class values are only echoed in
//! accounting.
//!
//! Nothing here fails: values that cannot be understood are left out and
//! listed in [`Authorization::warnings`].

use std::net::Ipv4Addr;
use std::time::Duration;

use super::attribute::{AsaAttribute, Attribute, VendorSpecific};
use super::packet::{Code, Packet};

/// A parsed `Cisco-AVPair`: `key=value` (mandatory) or `key*value` (optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvPair {
    pub key: String,
    pub value: String,
    /// `=` (true) or `*` (false) separated.
    pub mandatory: bool,
}

/// Why an av-pair text is not `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvPairError {
    #[error("no '=' or '*' separator")]
    NoSeparator,
    #[error("empty key")]
    EmptyKey,
}

impl AvPair {
    /// Splits at the first `=` or `*` (keys never contain either; values may).
    pub fn parse(text: &str) -> Result<AvPair, AvPairError> {
        let at = text.find(['=', '*']).ok_or(AvPairError::NoSeparator)?;
        let key = text[..at].trim();
        if key.is_empty() {
            return Err(AvPairError::EmptyKey);
        }
        Ok(AvPair {
            key: key.to_owned(),
            value: text[at + 1..].to_owned(),
            mandatory: text.as_bytes()[at] == b'=',
        })
    }
}

/// Something in the packet that was ignored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationWarning {
    /// `from_accept` was given a packet that is not an Access-Accept.
    NotAnAccept(Code),
    MalformedAvPair {
        text: String,
        error: AvPairError,
    },
    /// `cts:security-group-tag` whose value is not `XXXX-YY` hex.
    BadSecurityGroupTag(String),
    /// A second `cts:security-group-tag`; the first one is kept.
    DuplicateSecurityGroupTag(String),
    /// `ip:inacl#N` whose N is not a number.
    BadInaclIndex(String),
    /// Two `ip:inacl#N` with the same N; both kept, in arrival order.
    DuplicateInaclIndex(u32),
    /// Class `OU=` with nothing after it.
    EmptyGroupPolicy,
    /// Class `OU=a` and ASA-Group-Policy `b` disagree; `b` is used.
    GroupPolicyConflict {
        class: String,
        vsa: String,
    },
    /// More than one group policy from the same source; the first is kept.
    DuplicateGroupPolicy(String),
    /// A second Filter-Id; the first is kept.
    DuplicateFilterId(String),
    /// Reply-Message, Filter-Id and friends are single-valued where noted;
    /// this reports any other single-valued attribute seen twice.
    DuplicateAttribute(u8),
}

/// The authorization a RADIUS server granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    /// From ASA-Group-Policy (3076/25), else from Class `OU=NAME;`.
    pub group_policy: Option<String>,
    /// From `cts:security-group-tag=000a-00` (hex tag, then generation).
    pub sgt: Option<u16>,
    /// Filter-Id: the name of a configured ACL.
    pub filter_id: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
    /// Session-Timeout; 0 is treated as "no limit" and left out.
    pub session_timeout: Option<Duration>,
    /// Idle-Timeout; 0 is treated as "no limit" and left out.
    pub idle_timeout: Option<Duration>,
    /// ASA-Simultaneous-Logins (3076/2).
    pub simultaneous_logins: Option<u32>,
    /// Every Class, in order, to echo in accounting (RFC 2865 section 5.25).
    pub classes: Vec<Vec<u8>>,
    /// Downloadable ACL entries `ip:inacl#N=ACE`, ordered by N.
    pub inacl: Vec<String>,
    /// A named downloadable ACL (ISE / ACS): `ACS:CiscoSecure-Defined-ACL=NAME`,
    /// e.g. `#ACSACL#-IP-PERMIT_WEB-5f3c1a2b`; its entries are fetched with
    /// [`crate::radius::request::acl_download`].
    pub downloadable_acl: Option<String>,
    pub reply_messages: Vec<String>,
    /// Every well-formed Cisco-AVPair, in order (including the ones above).
    pub av_pairs: Vec<AvPair>,
    pub warnings: Vec<AuthorizationWarning>,
}

/// Parses `000a-00` (tag, then generation, both hex) into the tag.
pub fn parse_sgt(value: &str) -> Option<u16> {
    let (tag, generation) = match value.split_once('-') {
        Some((t, g)) => (t, Some(g)),
        None => (value, None),
    };
    let hex = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if !hex(tag, 4) || generation.is_some_and(|g| !hex(g, 2)) {
        return None;
    }
    u16::from_str_radix(tag, 16).ok()
}

/// The policy name in a Class `OU=NAME;` (or `OU=NAME`), if the Class is one.
fn class_group_policy(class: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(class).ok()?;
    let rest = text.strip_prefix("OU=")?;
    Some(rest.split(';').next().unwrap_or(""))
}

impl Authorization {
    /// What an Access-Accept grants. A packet of another code is still read,
    /// with a [`AuthorizationWarning::NotAnAccept`] warning.
    pub fn from_accept(packet: &Packet) -> Authorization {
        let mut authz = Authorization::from_attributes(&packet.attributes);
        if packet.code != Code::AccessAccept {
            authz
                .warnings
                .insert(0, AuthorizationWarning::NotAnAccept(packet.code));
        }
        authz
    }

    /// Reads authorization attributes from any list (Access-Accept, CoA-Request).
    pub fn from_attributes(attributes: &[Attribute]) -> Authorization {
        let mut a = Authorization::default();
        let mut class_policy: Option<String> = None;
        let mut vsa_policy: Option<String> = None;
        let mut inacl: Vec<(u32, String)> = Vec::new();
        let mut seen_session_timeout = false;
        let mut seen_idle_timeout = false;
        let mut seen_framed_ip = false;

        for attribute in attributes {
            match attribute {
                Attribute::Class(c) => {
                    if let Some(name) = class_group_policy(c) {
                        if name.is_empty() {
                            a.warnings.push(AuthorizationWarning::EmptyGroupPolicy);
                        } else if class_policy.is_none() {
                            class_policy = Some(name.to_owned());
                        } else if class_policy.as_deref() != Some(name) {
                            a.warnings
                                .push(AuthorizationWarning::DuplicateGroupPolicy(name.to_owned()));
                        }
                    }
                    a.classes.push(c.clone());
                }
                Attribute::VendorSpecific(VendorSpecific::Asa(asa)) => match asa {
                    AsaAttribute::GroupPolicy(name) => {
                        if name.is_empty() {
                            a.warnings.push(AuthorizationWarning::EmptyGroupPolicy);
                        } else if vsa_policy.is_none() {
                            vsa_policy = Some(name.clone());
                        } else {
                            a.warnings
                                .push(AuthorizationWarning::DuplicateGroupPolicy(name.clone()));
                        }
                    }
                    AsaAttribute::SimultaneousLogins(n) => {
                        if a.simultaneous_logins.is_none() {
                            a.simultaneous_logins = Some(*n);
                        } else {
                            a.warnings
                                .push(AuthorizationWarning::DuplicateAttribute(26));
                        }
                    }
                    _ => {}
                },
                Attribute::FilterId(f) => {
                    if a.filter_id.is_none() {
                        a.filter_id = Some(f.clone());
                    } else {
                        a.warnings
                            .push(AuthorizationWarning::DuplicateFilterId(f.clone()));
                    }
                }
                Attribute::FramedIpAddress(ip) => {
                    if seen_framed_ip {
                        a.warnings.push(AuthorizationWarning::DuplicateAttribute(
                            attribute.type_code(),
                        ));
                    } else {
                        seen_framed_ip = true;
                        a.framed_ip = Some(*ip);
                    }
                }
                Attribute::SessionTimeout(s) => {
                    if seen_session_timeout {
                        a.warnings.push(AuthorizationWarning::DuplicateAttribute(
                            attribute.type_code(),
                        ));
                    } else {
                        seen_session_timeout = true;
                        a.session_timeout = (*s != 0).then(|| Duration::from_secs(u64::from(*s)));
                    }
                }
                Attribute::IdleTimeout(s) => {
                    if seen_idle_timeout {
                        a.warnings.push(AuthorizationWarning::DuplicateAttribute(
                            attribute.type_code(),
                        ));
                    } else {
                        seen_idle_timeout = true;
                        a.idle_timeout = (*s != 0).then(|| Duration::from_secs(u64::from(*s)));
                    }
                }
                Attribute::ReplyMessage(m) => a.reply_messages.push(m.clone()),
                _ => {
                    if let Some(text) = attribute.as_cisco_av_pair() {
                        a.read_av_pair(text, &mut inacl);
                    }
                }
            }
        }

        // Stable: entries with the same N keep their arrival order.
        inacl.sort_by_key(|(n, _)| *n);
        for pair in inacl.windows(2) {
            if pair[0].0 == pair[1].0 {
                a.warnings
                    .push(AuthorizationWarning::DuplicateInaclIndex(pair[0].0));
            }
        }
        a.inacl = inacl.into_iter().map(|(_, ace)| ace).collect();

        a.group_policy = match (class_policy, vsa_policy) {
            (Some(class), Some(vsa)) => {
                if class != vsa {
                    a.warnings.push(AuthorizationWarning::GroupPolicyConflict {
                        class,
                        vsa: vsa.clone(),
                    });
                }
                Some(vsa)
            }
            (class, vsa) => vsa.or(class),
        };
        a
    }

    fn read_av_pair(&mut self, text: &str, inacl: &mut Vec<(u32, String)>) {
        let pair = match AvPair::parse(text) {
            Ok(p) => p,
            Err(error) => {
                self.warnings.push(AuthorizationWarning::MalformedAvPair {
                    text: text.to_owned(),
                    error,
                });
                return;
            }
        };
        if pair.key == "cts:security-group-tag" {
            match parse_sgt(&pair.value) {
                Some(tag) if self.sgt.is_none() => self.sgt = Some(tag),
                Some(_) => self
                    .warnings
                    .push(AuthorizationWarning::DuplicateSecurityGroupTag(
                        pair.value.clone(),
                    )),
                None => self
                    .warnings
                    .push(AuthorizationWarning::BadSecurityGroupTag(
                        pair.value.clone(),
                    )),
            }
        } else if pair.key == "ACS:CiscoSecure-Defined-ACL" {
            let name = pair.value.trim();
            if self.downloadable_acl.is_none() && !name.is_empty() {
                self.downloadable_acl = Some(name.to_owned());
            }
        } else if let Some(index) = pair.key.strip_prefix("ip:inacl#") {
            match index.parse::<u32>() {
                Ok(n) => inacl.push((n, pair.value.clone())),
                Err(_) => self
                    .warnings
                    .push(AuthorizationWarning::BadInaclIndex(pair.key.clone())),
            }
        }
        self.av_pairs.push(pair);
    }

    /// The value of the first av-pair with this key.
    pub fn av_pair(&self, key: &str) -> Option<&str> {
        self.av_pairs
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
}

/// Every Reply-Message of a packet, in order (the text of an Access-Reject).
pub fn reply_messages(packet: &Packet) -> Vec<String> {
    packet
        .attributes
        .iter()
        .filter_map(|a| match a {
            Attribute::ReplyMessage(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::attribute::{AsaAttribute, Attribute};

    fn accept(attributes: Vec<Attribute>) -> Packet {
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.attributes = attributes;
        p
    }

    #[test]
    fn full_ise_accept() {
        let p = accept(vec![
            Attribute::Class(b"CACS:c6120101000010006590a1b2:ise1/482/3".to_vec()),
            Attribute::Class(b"OU=Engineering;".to_vec()),
            Attribute::cisco_av_pair("cts:security-group-tag=000a-00"),
            Attribute::cisco_av_pair("ip:inacl#2=permit tcp any any eq 443"),
            Attribute::cisco_av_pair("ip:inacl#10=deny ip any any"),
            Attribute::cisco_av_pair("ip:inacl#1=permit udp any any eq 53"),
            Attribute::FilterId("VPN-FILTER".into()),
            Attribute::FramedIpAddress(Ipv4Addr::new(198, 18, 100, 50)),
            Attribute::SessionTimeout(28800),
            Attribute::IdleTimeout(1800),
            Attribute::asa(AsaAttribute::SimultaneousLogins(2)),
            Attribute::ReplyMessage("Welcome".into()),
        ]);
        let a = Authorization::from_accept(&p);
        assert_eq!(a.group_policy.as_deref(), Some("Engineering"));
        assert_eq!(a.sgt, Some(10));
        assert_eq!(a.filter_id.as_deref(), Some("VPN-FILTER"));
        assert_eq!(a.framed_ip, Some(Ipv4Addr::new(198, 18, 100, 50)));
        assert_eq!(a.session_timeout, Some(Duration::from_secs(28800)));
        assert_eq!(a.idle_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(a.simultaneous_logins, Some(2));
        assert_eq!(a.classes.len(), 2);
        assert_eq!(a.classes[0], b"CACS:c6120101000010006590a1b2:ise1/482/3");
        assert_eq!(
            a.inacl,
            vec![
                "permit udp any any eq 53",
                "permit tcp any any eq 443",
                "deny ip any any"
            ]
        );
        assert_eq!(a.reply_messages, vec!["Welcome"]);
        assert_eq!(a.av_pair("cts:security-group-tag"), Some("000a-00"));
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    }

    #[test]
    fn group_policy_sources() {
        let a = Authorization::from_accept(&accept(vec![Attribute::Class(b"OU=GP1".to_vec())]));
        assert_eq!(a.group_policy.as_deref(), Some("GP1"));
        let a = Authorization::from_accept(&accept(vec![Attribute::asa(
            AsaAttribute::GroupPolicy("GP2".into()),
        )]));
        assert_eq!(a.group_policy.as_deref(), Some("GP2"));
        // Both: ASA-Group-Policy wins, the conflict is reported.
        let a = Authorization::from_accept(&accept(vec![
            Attribute::Class(b"OU=GP1;".to_vec()),
            Attribute::asa(AsaAttribute::GroupPolicy("GP2".into())),
        ]));
        assert_eq!(a.group_policy.as_deref(), Some("GP2"));
        assert_eq!(
            a.warnings,
            vec![AuthorizationWarning::GroupPolicyConflict {
                class: "GP1".into(),
                vsa: "GP2".into()
            }]
        );
        // Same name from both: no warning.
        let a = Authorization::from_accept(&accept(vec![
            Attribute::Class(b"OU=GP1;".to_vec()),
            Attribute::asa(AsaAttribute::GroupPolicy("GP1".into())),
        ]));
        assert!(a.warnings.is_empty());
        // Not OU=, binary, empty.
        let a = Authorization::from_accept(&accept(vec![
            Attribute::Class(b"CACS:abc".to_vec()),
            Attribute::Class(vec![0xff, 0x00]),
            Attribute::Class(b"OU=;".to_vec()),
        ]));
        assert_eq!(a.group_policy, None);
        assert_eq!(a.classes.len(), 3);
        assert_eq!(a.warnings, vec![AuthorizationWarning::EmptyGroupPolicy]);
    }

    #[test]
    fn sgt_parsing() {
        assert_eq!(parse_sgt("000a-00"), Some(10));
        assert_eq!(parse_sgt("00FF-1f"), Some(255));
        assert_eq!(parse_sgt("ffff-00"), Some(0xffff));
        assert_eq!(parse_sgt("000a"), Some(10));
        for bad in ["", "-00", "0000a-00", "00g0-00", "000a-", "000a-000", "10 "] {
            assert_eq!(parse_sgt(bad), None, "{bad:?}");
        }
        let a = Authorization::from_accept(&accept(vec![
            Attribute::cisco_av_pair("cts:security-group-tag=zz-00"),
            Attribute::cisco_av_pair("cts:security-group-tag=0014-00"),
            Attribute::cisco_av_pair("cts:security-group-tag=0015-00"),
        ]));
        assert_eq!(a.sgt, Some(20));
        assert_eq!(
            a.warnings,
            vec![
                AuthorizationWarning::BadSecurityGroupTag("zz-00".into()),
                AuthorizationWarning::DuplicateSecurityGroupTag("0015-00".into()),
            ]
        );
    }

    #[test]
    fn av_pair_parsing() {
        assert_eq!(
            AvPair::parse("ip:inacl#1=permit ip any host 10.0.0.1"),
            Ok(AvPair {
                key: "ip:inacl#1".into(),
                value: "permit ip any host 10.0.0.1".into(),
                mandatory: true
            })
        );
        assert_eq!(
            AvPair::parse("shell:priv-lvl*15"),
            Ok(AvPair {
                key: "shell:priv-lvl".into(),
                value: "15".into(),
                mandatory: false
            })
        );
        assert_eq!(AvPair::parse("a=b=c").unwrap().value, "b=c");
        assert_eq!(AvPair::parse("a=").unwrap().value, "");
        assert_eq!(AvPair::parse("novalue"), Err(AvPairError::NoSeparator));
        assert_eq!(AvPair::parse("=x"), Err(AvPairError::EmptyKey));
        assert_eq!(AvPair::parse(""), Err(AvPairError::NoSeparator));

        let a = Authorization::from_accept(&accept(vec![
            Attribute::cisco_av_pair("garbage"),
            Attribute::cisco_av_pair("ip:inacl#x=permit ip any any"),
            Attribute::cisco_av_pair("ip:inacl#3=a"),
            Attribute::cisco_av_pair("ip:inacl#3=b"),
        ]));
        assert_eq!(a.inacl, vec!["a", "b"]);
        assert_eq!(
            a.warnings,
            vec![
                AuthorizationWarning::MalformedAvPair {
                    text: "garbage".into(),
                    error: AvPairError::NoSeparator
                },
                AuthorizationWarning::BadInaclIndex("ip:inacl#x".into()),
                AuthorizationWarning::DuplicateInaclIndex(3),
            ]
        );
    }

    #[test]
    fn zero_timeouts_mean_no_limit_and_duplicates_keep_first() {
        let a = Authorization::from_accept(&accept(vec![
            Attribute::SessionTimeout(0),
            Attribute::IdleTimeout(0),
            Attribute::FilterId("A".into()),
            Attribute::FilterId("B".into()),
        ]));
        assert_eq!(a.session_timeout, None);
        assert_eq!(a.idle_timeout, None);
        assert_eq!(a.filter_id.as_deref(), Some("A"));
        assert_eq!(
            a.warnings,
            vec![AuthorizationWarning::DuplicateFilterId("B".into())]
        );
    }

    #[test]
    fn reject_is_flagged() {
        let mut p = accept(vec![Attribute::ReplyMessage("Denied".into())]);
        p.code = Code::AccessReject;
        let a = Authorization::from_accept(&p);
        assert_eq!(
            a.warnings,
            vec![AuthorizationWarning::NotAnAccept(Code::AccessReject)]
        );
        assert_eq!(reply_messages(&p), vec!["Denied"]);
    }

    #[test]
    fn named_downloadable_acl() {
        let reply = accept(vec![
            Attribute::cisco_av_pair("ACS:CiscoSecure-Defined-ACL=#ACSACL#-IP-PERMIT_WEB-5f3c1a2b"),
            Attribute::cisco_av_pair("ACS:CiscoSecure-Defined-ACL=#ACSACL#-IP-OTHER-1"),
        ]);
        let a = Authorization::from_accept(&reply);
        assert_eq!(
            a.downloadable_acl.as_deref(),
            Some("#ACSACL#-IP-PERMIT_WEB-5f3c1a2b"),
            "the first one counts"
        );
        let a = Authorization::from_accept(&accept(vec![Attribute::cisco_av_pair(
            "ACS:CiscoSecure-Defined-ACL= ",
        )]));
        assert_eq!(a.downloadable_acl, None);
    }
}

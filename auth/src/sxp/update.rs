//! What an UPDATE means: the binding additions and deletions it carries, in
//! wire order, after the validity rules (draft-smith-kandula-sxp sections
//! 4.5 and 5). A pure function, so the listener applies an UPDATE all or
//! nothing.
//!
//! v4 (section 4.5.1): IPv4/IPv6-DEL-PREFIX lists delete; an
//! IPv4/IPv6-ADD-PREFIX list adds with the SGT and PEER-SEQUENCE that last
//! preceded it in the same message. sxpd writes one (PEER-SEQUENCE, SGT,
//! one-prefix list) triple per binding; longer lists and several lists after
//! one pair are accepted too. A PEER-SEQUENCE must start with the speaker's
//! NODE-ID, hold no duplicates, and if it contains our own NODE-ID the
//! following adds are a loop and are skipped (section 5.2).
//!
//! v1-v3: ADD-IPv4/ADD-IPv6 carry exactly one SGT TLV and at most one
//! PREFIX-LEN TLV (absent: a host binding); DEL-IPv4/DEL-IPv6 delete the
//! address with its PREFIX-LEN.
//!
//! Either form: OPEN-only attributes (NODE-ID, CAPABILITIES, HOLD-TIME) and
//! the other version's binding attributes are errors; unknown attributes are
//! skipped when optional and an error when mandatory (section 4.3 flags).

use std::collections::HashSet;
use std::net::IpAddr;

use super::attribute::{
    Attribute, AttributeType, AttributeValue, LegacyBinding, NodeId, Prefix, PrefixError, Sgt,
};
use super::message::ErrorSubCode;

/// One change to the speaker's bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingChange {
    Add { prefix: Prefix, sgt: Sgt },
    Delete { prefix: Prefix },
}

/// What the rules need to know about the connection.
#[derive(Debug, Clone, Copy)]
pub struct UpdateContext {
    /// Negotiated version: 4 selects the v4 attributes, 1-3 the legacy ones.
    pub version: u32,
    /// Our NODE-ID, for loop detection.
    pub own_node_id: NodeId,
    /// The speaker's NODE-ID from its OPEN / OPEN_RESP (v4).
    pub peer_node_id: Option<NodeId>,
}

/// The changes of one UPDATE and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    pub changes: Vec<BindingChange>,
    /// Prefixes not added because their PEER-SEQUENCE contains our NODE-ID.
    pub looped_prefixes: usize,
    /// Unknown optional attributes skipped.
    pub ignored_optional: usize,
}

/// Why an UPDATE was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("{typ:?} is not allowed in a version {version} UPDATE")]
    UnexpectedAttribute { typ: AttributeType, version: u32 },
    #[error("unknown mandatory attribute type {0}")]
    UnknownMandatoryAttribute(u32),
    #[error("{0:?} without a preceding PEER-SEQUENCE")]
    MissingPeerSequence(AttributeType),
    #[error("{0:?} without a preceding SGT")]
    MissingSgt(AttributeType),
    #[error("empty PEER-SEQUENCE")]
    EmptyPeerSequence,
    #[error("PEER-SEQUENCE lists {0} twice")]
    DuplicateInPeerSequence(NodeId),
    #[error("PEER-SEQUENCE starts with {got}, but the speaker's NODE-ID is {expected}")]
    PeerSequenceOrigin { expected: NodeId, got: NodeId },
    #[error("{typ:?} for {addr}: {count} SGT TLVs, expected exactly one")]
    LegacySgtCount {
        typ: AttributeType,
        addr: IpAddr,
        count: usize,
    },
    #[error("{typ:?} for {addr}: {count} PREFIX-LEN TLVs, expected at most one")]
    LegacyPrefixLengthCount {
        typ: AttributeType,
        addr: IpAddr,
        count: usize,
    },
    #[error("{typ:?}: {source}")]
    LegacyPrefix {
        typ: AttributeType,
        source: PrefixError,
    },
}

impl UpdateError {
    /// The extended ERROR sub-code (with code UPDATE) that answers it.
    pub fn sub_code(&self) -> ErrorSubCode {
        match self {
            Self::UnexpectedAttribute { .. } | Self::UnknownMandatoryAttribute(_) => {
                ErrorSubCode::UnexpectedAttribute
            }
            Self::MissingPeerSequence(_) | Self::MissingSgt(_) => {
                ErrorSubCode::MissingWellKnownAttribute
            }
            Self::EmptyPeerSequence
            | Self::DuplicateInPeerSequence(_)
            | Self::PeerSequenceOrigin { .. }
            | Self::LegacySgtCount { .. }
            | Self::LegacyPrefixLengthCount { .. }
            | Self::LegacyPrefix { .. } => ErrorSubCode::MalformedAttribute,
        }
    }
}

/// The changes `attributes` (one UPDATE, in wire order) make, or why the
/// UPDATE is invalid.
pub fn update_changes(
    attributes: &[Attribute],
    ctx: &UpdateContext,
) -> Result<UpdateSummary, UpdateError> {
    let mut summary = UpdateSummary::default();
    // v4 add context: the last SGT, and whether the last PEER-SEQUENCE loops.
    let mut sgt: Option<Sgt> = None;
    let mut peer_sequence_loops: Option<bool> = None;
    let v4 = ctx.version >= 4;
    for attr in attributes {
        let typ = attr.typ();
        let unexpected = UpdateError::UnexpectedAttribute {
            typ,
            version: ctx.version,
        };
        match &attr.value {
            AttributeValue::NodeId(_)
            | AttributeValue::Capabilities(_)
            | AttributeValue::HoldTime(_) => return Err(unexpected),
            AttributeValue::Unknown { typ, .. } => {
                if attr.flags.optional() {
                    summary.ignored_optional += 1;
                } else {
                    return Err(UpdateError::UnknownMandatoryAttribute(*typ));
                }
            }
            AttributeValue::PeerSequence(ids) if v4 => {
                peer_sequence_loops = Some(check_peer_sequence(ids, ctx)?);
            }
            AttributeValue::Sgt(s) if v4 => sgt = Some(*s),
            AttributeValue::Ipv4AddPrefix(list) | AttributeValue::Ipv6AddPrefix(list) if v4 => {
                let loops = peer_sequence_loops.ok_or(UpdateError::MissingPeerSequence(typ))?;
                let sgt = sgt.ok_or(UpdateError::MissingSgt(typ))?;
                if loops {
                    summary.looped_prefixes += list.len();
                } else {
                    summary.changes.extend(
                        list.iter()
                            .map(|&prefix| BindingChange::Add { prefix, sgt }),
                    );
                }
            }
            AttributeValue::Ipv4DelPrefix(list) | AttributeValue::Ipv6DelPrefix(list) if v4 => {
                summary
                    .changes
                    .extend(list.iter().map(|&prefix| BindingChange::Delete { prefix }));
            }
            AttributeValue::AddIpv4(b) | AttributeValue::AddIpv6(b) if !v4 => {
                let prefix = legacy_prefix(typ, b)?;
                let sgts: Vec<Sgt> = b.sgts().collect();
                let [sgt] = sgts.as_slice() else {
                    return Err(UpdateError::LegacySgtCount {
                        typ,
                        addr: b.addr,
                        count: sgts.len(),
                    });
                };
                summary
                    .changes
                    .push(BindingChange::Add { prefix, sgt: *sgt });
            }
            AttributeValue::DelIpv4(b) | AttributeValue::DelIpv6(b) if !v4 => {
                // An SGT TLV on a delete is meaningless; it is ignored.
                let prefix = legacy_prefix(typ, b)?;
                summary.changes.push(BindingChange::Delete { prefix });
            }
            _ => return Err(unexpected),
        }
    }
    Ok(summary)
}

/// Validates a PEER-SEQUENCE; true when it contains our own NODE-ID.
fn check_peer_sequence(ids: &[NodeId], ctx: &UpdateContext) -> Result<bool, UpdateError> {
    let first = *ids.first().ok_or(UpdateError::EmptyPeerSequence)?;
    if let Some(expected) = ctx.peer_node_id
        && first != expected
    {
        return Err(UpdateError::PeerSequenceOrigin {
            expected,
            got: first,
        });
    }
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(*id) {
            return Err(UpdateError::DuplicateInPeerSequence(*id));
        }
    }
    Ok(seen.contains(&ctx.own_node_id))
}

fn legacy_prefix(typ: AttributeType, b: &LegacyBinding) -> Result<Prefix, UpdateError> {
    let count = b.prefix_lengths().count();
    if count > 1 {
        return Err(UpdateError::LegacyPrefixLengthCount {
            typ,
            addr: b.addr,
            count,
        });
    }
    b.prefix()
        .map_err(|source| UpdateError::LegacyPrefix { typ, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sxp::attribute::{AttributeFlags, LegacyTlv};

    const OWN: NodeId = NodeId(0xC612_0101);
    const PEER: NodeId = NodeId(0x0A00_0001);

    fn ctx(version: u32) -> UpdateContext {
        UpdateContext {
            version,
            own_node_id: OWN,
            peer_node_id: Some(PEER),
        }
    }

    fn a(value: AttributeValue) -> Attribute {
        Attribute::new(AttributeFlags::WELL_KNOWN_COMPACT, value)
    }

    fn p(s: &str) -> Prefix {
        s.parse().expect("prefix")
    }

    #[test]
    fn inherited_context_and_multi_prefix_lists() {
        let attrs = [
            a(AttributeValue::Ipv4DelPrefix(vec![
                p("10.9.0.0/16"),
                p("10.8.0.1"),
            ])),
            a(AttributeValue::PeerSequence(vec![PEER, NodeId(7)])),
            a(AttributeValue::Sgt(Sgt(20))),
            a(AttributeValue::Ipv4AddPrefix(vec![
                p("10.1.0.0/16"),
                p("10.2.0.1"),
            ])),
            a(AttributeValue::Ipv6AddPrefix(vec![p("2001:db8::/32")])),
            a(AttributeValue::Sgt(Sgt(30))),
            a(AttributeValue::Ipv4AddPrefix(vec![p("10.3.0.0/24")])),
        ];
        let s = update_changes(&attrs, &ctx(4)).expect("valid");
        assert_eq!(
            s.changes,
            vec![
                BindingChange::Delete {
                    prefix: p("10.9.0.0/16")
                },
                BindingChange::Delete {
                    prefix: p("10.8.0.1")
                },
                BindingChange::Add {
                    prefix: p("10.1.0.0/16"),
                    sgt: Sgt(20)
                },
                BindingChange::Add {
                    prefix: p("10.2.0.1"),
                    sgt: Sgt(20)
                },
                BindingChange::Add {
                    prefix: p("2001:db8::/32"),
                    sgt: Sgt(20)
                },
                BindingChange::Add {
                    prefix: p("10.3.0.0/24"),
                    sgt: Sgt(30)
                },
            ]
        );
    }

    #[test]
    fn add_needs_peer_sequence_and_sgt() {
        let add = a(AttributeValue::Ipv4AddPrefix(vec![p("10.1.0.0/16")]));
        assert_eq!(
            update_changes(&[a(AttributeValue::Sgt(Sgt(1))), add.clone()], &ctx(4)),
            Err(UpdateError::MissingPeerSequence(
                AttributeType::Ipv4AddPrefix
            ))
        );
        let err = update_changes(&[a(AttributeValue::PeerSequence(vec![PEER])), add], &ctx(4))
            .expect_err("no sgt");
        assert_eq!(err, UpdateError::MissingSgt(AttributeType::Ipv4AddPrefix));
        assert_eq!(err.sub_code(), ErrorSubCode::MissingWellKnownAttribute);
    }

    #[test]
    fn loop_skips_adds_until_next_peer_sequence() {
        let attrs = [
            a(AttributeValue::PeerSequence(vec![PEER, OWN])),
            a(AttributeValue::Sgt(Sgt(20))),
            a(AttributeValue::Ipv4AddPrefix(vec![
                p("10.1.0.0/16"),
                p("10.2.0.0/16"),
            ])),
            a(AttributeValue::PeerSequence(vec![PEER])),
            a(AttributeValue::Ipv4AddPrefix(vec![p("10.3.0.0/16")])),
        ];
        let s = update_changes(&attrs, &ctx(4)).expect("valid");
        assert_eq!(s.looped_prefixes, 2);
        assert_eq!(
            s.changes,
            vec![BindingChange::Add {
                prefix: p("10.3.0.0/16"),
                sgt: Sgt(20)
            }]
        );
    }

    #[test]
    fn peer_sequence_rules() {
        let check =
            |ids: Vec<NodeId>| update_changes(&[a(AttributeValue::PeerSequence(ids))], &ctx(4));
        assert_eq!(check(vec![]), Err(UpdateError::EmptyPeerSequence));
        assert_eq!(
            check(vec![PEER, NodeId(5), NodeId(5)]),
            Err(UpdateError::DuplicateInPeerSequence(NodeId(5)))
        );
        assert_eq!(
            check(vec![NodeId(5)]),
            Err(UpdateError::PeerSequenceOrigin {
                expected: PEER,
                got: NodeId(5)
            })
        );
        let no_peer = UpdateContext {
            peer_node_id: None,
            ..ctx(4)
        };
        assert!(
            update_changes(
                &[a(AttributeValue::PeerSequence(vec![NodeId(5)]))],
                &no_peer
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_optional_skipped_mandatory_refused() {
        let unknown = |flags: u8| {
            Attribute::new(
                AttributeFlags(flags),
                AttributeValue::Unknown {
                    typ: 99,
                    value: vec![1],
                },
            )
        };
        let s = update_changes(&[unknown(0x90)], &ctx(4)).expect("optional");
        assert_eq!(s.ignored_optional, 1);
        let err = update_changes(&[unknown(0x10)], &ctx(4)).expect_err("mandatory");
        assert_eq!(err, UpdateError::UnknownMandatoryAttribute(99));
        assert_eq!(err.sub_code(), ErrorSubCode::UnexpectedAttribute);
    }

    #[test]
    fn version_families_do_not_mix() {
        let legacy = Attribute::new(
            AttributeFlags::LEGACY,
            AttributeValue::AddIpv4(LegacyBinding::new(p("10.0.0.1"), Some(Sgt(5)))),
        );
        assert_eq!(
            update_changes(std::slice::from_ref(&legacy), &ctx(4)),
            Err(UpdateError::UnexpectedAttribute {
                typ: AttributeType::AddIpv4,
                version: 4
            })
        );
        assert!(update_changes(std::slice::from_ref(&legacy), &ctx(3)).is_ok());
        assert_eq!(
            update_changes(&[a(AttributeValue::Sgt(Sgt(5)))], &ctx(3)),
            Err(UpdateError::UnexpectedAttribute {
                typ: AttributeType::Sgt,
                version: 3
            })
        );
        assert_eq!(
            update_changes(&[a(AttributeValue::NodeId(PEER))], &ctx(4)),
            Err(UpdateError::UnexpectedAttribute {
                typ: AttributeType::NodeId,
                version: 4
            })
        );
    }

    #[test]
    fn legacy_tlv_rules() {
        let add = |tlvs: Vec<LegacyTlv>| {
            Attribute::new(
                AttributeFlags::LEGACY,
                AttributeValue::AddIpv4(LegacyBinding {
                    addr: "10.0.0.1".parse().expect("ip"),
                    tlvs,
                }),
            )
        };
        assert!(matches!(
            update_changes(&[add(vec![])], &ctx(3)),
            Err(UpdateError::LegacySgtCount { count: 0, .. })
        ));
        assert!(matches!(
            update_changes(
                &[add(vec![LegacyTlv::Sgt(Sgt(1)), LegacyTlv::Sgt(Sgt(2))])],
                &ctx(3)
            ),
            Err(UpdateError::LegacySgtCount { count: 2, .. })
        ));
        assert!(matches!(
            update_changes(
                &[add(vec![
                    LegacyTlv::Sgt(Sgt(1)),
                    LegacyTlv::PrefixLength(8),
                    LegacyTlv::PrefixLength(8)
                ])],
                &ctx(3)
            ),
            Err(UpdateError::LegacyPrefixLengthCount { count: 2, .. })
        ));
        assert!(matches!(
            update_changes(
                &[add(vec![
                    LegacyTlv::Sgt(Sgt(1)),
                    LegacyTlv::PrefixLength(33)
                ])],
                &ctx(3)
            ),
            Err(UpdateError::LegacyPrefix { .. })
        ));
        // Unknown inner TLVs are skipped, PREFIX-LEN masks the address.
        let s = update_changes(
            &[add(vec![
                LegacyTlv::Unknown {
                    typ: 9,
                    value: vec![],
                },
                LegacyTlv::PrefixLength(8),
                LegacyTlv::Sgt(Sgt(1)),
            ])],
            &ctx(3),
        )
        .expect("valid");
        assert_eq!(
            s.changes,
            vec![BindingChange::Add {
                prefix: p("10.0.0.0/8"),
                sgt: Sgt(1)
            }]
        );
    }
}

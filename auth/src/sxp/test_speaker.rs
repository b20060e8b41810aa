//! A replaying SXP speaker for tests: the byte sequences sxpd (the open-source
//! C speaker, kilcreas/sxpdc) sends, recorded in the lab
//! (`shared/lab/sxp-reference.md`), and builders that produce the same bytes
//! for any node id and bindings. CI cannot fetch sxpd; an end-to-end test
//! writes these bytes to the headend's SXP port instead.
//!
//! This is a test tool: it writes what sxpd writes, including its habits
//! (one PEER-SEQUENCE / SGT / one-prefix triple per v4 binding; IPv4 before
//! IPv6 except in v2; v1-v2 subnets expanded to host bindings), and checks
//! nothing it receives.

use std::net::{IpAddr, Ipv4Addr};

use super::attribute::{
    Attribute, AttributeFlags, AttributeValue, HoldTime, LegacyBinding, NodeId, Prefix, Sgt,
};
use super::message::{HEADER_LEN, MAX_MESSAGE_LEN, Message, Mode, Open, Update};

/// The lab speaker's NODE-ID, 10.0.0.1.
pub const LAB_NODE_ID: NodeId = NodeId(0x0A00_0001);
/// The lab speaker's minimum hold time.
pub const LAB_HOLD_TIME_MIN: u16 = 9;

/// Most host bindings one v1-v2 subnet expands to here.
pub const MAX_EXPANDED_HOSTS: u32 = 4096;

/// The lab bindings of the lifecycle and out-* runs:
/// 198.18.1.10/32 -> 20, 198.18.2.0/29 -> 30, 2001:db8::10/128 -> 40.
pub fn lab_bindings() -> Vec<(Prefix, Sgt)> {
    bindings(&[
        ("198.18.1.10/32", 20),
        ("198.18.2.0/29", 30),
        ("2001:db8::10/128", 40),
    ])
}

/// The binding the lifecycle runs delete: 198.18.2.0/29.
pub fn lab_deleted() -> Prefix {
    prefix("198.18.2.0/29")
}

/// The batch run's bindings, in the order sxpd sent them.
pub fn batch_bindings() -> Vec<(Prefix, Sgt)> {
    bindings(&[
        ("10.1.0.0/16", 20),
        ("198.18.1.10/32", 20),
        ("198.18.1.11/32", 20),
        ("198.18.3.0/24", 30),
        ("2001:db8:1::/48", 30),
    ])
}

fn prefix(s: &str) -> Prefix {
    // Only called with the literals above, which all parse.
    s.parse()
        .unwrap_or_else(|_| Prefix::host(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
}

fn bindings(list: &[(&str, u16)]) -> Vec<(Prefix, Sgt)> {
    list.iter().map(|(p, s)| (prefix(p), Sgt(*s))).collect()
}

/// Builds what sxpd, as a speaker with `node_id`, sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestSpeaker {
    pub node_id: NodeId,
    /// Minimum hold time offered; `None` leaves HOLD-TIME out.
    pub hold_time_min: Option<u16>,
}

impl Default for TestSpeaker {
    /// The lab speaker: node 10.0.0.1, hold-time minimum 9.
    fn default() -> Self {
        Self::new(LAB_NODE_ID)
    }
}

impl TestSpeaker {
    /// A speaker with the lab's hold-time minimum (9).
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            hold_time_min: Some(LAB_HOLD_TIME_MIN),
        }
    }

    pub fn with_hold_time_min(mut self, min: Option<u16>) -> Self {
        self.hold_time_min = min;
        self
    }

    fn speaker_open(&self, version: u32) -> Open {
        let mut attributes = Vec::new();
        if version >= 3 {
            attributes.push(Attribute::new(
                AttributeFlags::NON_TRANSITIVE_COMPACT,
                AttributeValue::NodeId(self.node_id),
            ));
            if let Some(min) = self.hold_time_min {
                attributes.push(Attribute::new(
                    AttributeFlags::NON_TRANSITIVE_COMPACT,
                    AttributeValue::HoldTime(HoldTime { min, max: None }),
                ));
            }
        }
        Open {
            version,
            mode: Mode::Speaker,
            attributes,
        }
    }

    /// The OPEN sxpd sends when it connects: always version 4, NODE-ID and
    /// HOLD-TIME (`0000001c 00000001 00000004 00000001 5005040a000001
    /// 5007020009` for the lab speaker).
    pub fn open(&self) -> Vec<u8> {
        self.open_version(4)
    }

    /// An OPEN of another version (v1-v2 carry no attributes), for testing
    /// legacy speakers.
    pub fn open_version(&self, version: u32) -> Vec<u8> {
        encode(&Message::Open(self.speaker_open(version)))
    }

    /// sxpd's OPEN_RESP to a listener that connected and offered `version`
    /// (passive-v2 / passive-v4 recordings).
    pub fn open_resp(&self, version: u32) -> Vec<u8> {
        encode(&Message::OpenResp(self.speaker_open(version)))
    }

    pub fn keepalive() -> Vec<u8> {
        encode(&Message::Keepalive)
    }

    pub fn purge_all() -> Vec<u8> {
        encode(&Message::PurgeAll)
    }

    /// The UPDATE messages sxpd sends for these changes at `version`:
    /// - v4: per address family, deletions (one IPvN-DEL-PREFIX each) then
    ///   one PEER-SEQUENCE / SGT / IPvN-ADD-PREFIX triple per addition;
    /// - v3: ADD/DEL-IPv4/IPv6 with PREFIX-LEN for subnets;
    /// - v1, v2: the same without PREFIX-LEN, IPv4 subnets expanded into
    ///   their usable hosts (at most [`MAX_EXPANDED_HOSTS`]), IPv6 subnets
    ///   left out; v1 leaves IPv6 out entirely.
    ///
    /// One message per address family (IPv4 first, IPv6 first in v2), split
    /// further when one would exceed 4096 bytes; families with nothing to
    /// say send nothing.
    pub fn updates(
        &self,
        version: u32,
        adds: &[(Prefix, Sgt)],
        deletes: &[Prefix],
    ) -> Vec<Vec<u8>> {
        let families: &[bool] = match version {
            1 => &[false],
            2 => &[true, false],
            _ => &[false, true],
        };
        let mut messages = Vec::new();
        for &ipv6 in families {
            let adds: Vec<(Prefix, Sgt)> = adds
                .iter()
                .filter(|(p, _)| p.is_ipv4() != ipv6)
                .flat_map(|(p, s)| legacy_expand(*p, version).into_iter().map(|p| (p, *s)))
                .collect();
            let deletes: Vec<Prefix> = deletes
                .iter()
                .filter(|p| p.is_ipv4() != ipv6)
                .flat_map(|p| legacy_expand(*p, version))
                .collect();
            let groups = if version >= 4 {
                self.v4_groups(&adds, &deletes)
            } else {
                legacy_groups(&adds, &deletes)
            };
            messages.extend(pack(groups));
        }
        messages
    }

    /// The whole lifecycle run: OPEN, the additions, the deletions, PURGE_ALL
    /// (KEEPALIVEs left out), as in the lifecycle-v* recordings.
    pub fn lifecycle(
        &self,
        version: u32,
        adds: &[(Prefix, Sgt)],
        deletes: &[Prefix],
    ) -> Vec<Vec<u8>> {
        let mut messages = vec![self.open()];
        messages.extend(self.updates(version, adds, &[]));
        messages.extend(self.updates(version, &[], deletes));
        messages.push(Self::purge_all());
        messages
    }

    fn v4_groups(&self, adds: &[(Prefix, Sgt)], deletes: &[Prefix]) -> Vec<Vec<Attribute>> {
        let compact = AttributeFlags::WELL_KNOWN_COMPACT;
        let mut groups: Vec<Vec<Attribute>> = deletes
            .iter()
            .map(|p| {
                let value = if p.is_ipv4() {
                    AttributeValue::Ipv4DelPrefix(vec![*p])
                } else {
                    AttributeValue::Ipv6DelPrefix(vec![*p])
                };
                vec![Attribute::new(compact, value)]
            })
            .collect();
        groups.extend(adds.iter().map(|(p, sgt)| {
            let list = if p.is_ipv4() {
                AttributeValue::Ipv4AddPrefix(vec![*p])
            } else {
                AttributeValue::Ipv6AddPrefix(vec![*p])
            };
            vec![
                Attribute::new(compact, AttributeValue::PeerSequence(vec![self.node_id])),
                Attribute::new(compact, AttributeValue::Sgt(*sgt)),
                Attribute::new(compact, list),
            ]
        }));
        groups
    }
}

fn legacy_groups(adds: &[(Prefix, Sgt)], deletes: &[Prefix]) -> Vec<Vec<Attribute>> {
    let legacy = AttributeFlags::LEGACY;
    let mut groups: Vec<Vec<Attribute>> = deletes
        .iter()
        .map(|p| {
            let b = LegacyBinding::new(*p, None);
            let value = if p.is_ipv4() {
                AttributeValue::DelIpv4(b)
            } else {
                AttributeValue::DelIpv6(b)
            };
            vec![Attribute::new(legacy, value)]
        })
        .collect();
    groups.extend(adds.iter().map(|(p, sgt)| {
        let b = LegacyBinding::new(*p, Some(*sgt));
        let value = if p.is_ipv4() {
            AttributeValue::AddIpv4(b)
        } else {
            AttributeValue::AddIpv6(b)
        };
        vec![Attribute::new(legacy, value)]
    }));
    groups
}

/// v1-v2 have no subnet bindings: sxpd sends the usable hosts of an IPv4
/// subnet instead (198.18.2.0/29 becomes .1 to .6).
fn legacy_expand(prefix: Prefix, version: u32) -> Vec<Prefix> {
    if version >= 3 || prefix.is_host() {
        return vec![prefix];
    }
    let IpAddr::V4(net) = prefix.addr() else {
        return Vec::new();
    };
    let net = u32::from(net);
    let size = 1u64 << (32 - u32::from(prefix.prefix_len()));
    let (first, count) = if size <= 2 {
        (u64::from(net), size)
    } else {
        (u64::from(net) + 1, size - 2)
    };
    (0..count.min(u64::from(MAX_EXPANDED_HOSTS)))
        .filter_map(|i| u32::try_from(first + i).ok())
        .map(|a| Prefix::host(IpAddr::V4(Ipv4Addr::from(a))))
        .collect()
}

/// Packs attribute groups into UPDATE messages of at most 4096 bytes,
/// never splitting a group.
fn pack(groups: Vec<Vec<Attribute>>) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Vec<Attribute> = Vec::new();
    let mut size = HEADER_LEN;
    for group in groups {
        let mut bytes = Vec::new();
        for attr in &group {
            // Test-speaker attributes are small and well-formed.
            let _ = attr.encode_into(&mut bytes);
        }
        if size + bytes.len() > MAX_MESSAGE_LEN && !current.is_empty() {
            messages.push(encode(&Message::Update(Update {
                attributes: std::mem::take(&mut current),
            })));
            size = HEADER_LEN;
        }
        size += bytes.len();
        current.extend(group);
    }
    if !current.is_empty() {
        messages.push(encode(&Message::Update(Update {
            attributes: current,
        })));
    }
    messages
}

fn encode(message: &Message) -> Vec<u8> {
    message.encode().unwrap_or_default()
}

/// Hex to bytes, whitespace ignored; `None` on anything else.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<_>>()?;
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// One recorded sxpd run: the messages the listener received, in order,
/// KEEPALIVEs left out (`keepalives` says how many there were).
#[derive(Debug, Clone, Copy)]
pub struct Recording {
    pub name: &'static str,
    /// (message kind as the notes name it, hex bytes)
    pub messages: &'static [(&'static str, &'static str)],
    pub keepalives: usize,
}

impl Recording {
    /// Each message's bytes.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.messages
            .iter()
            .map(|(_, hex)| decode_hex(hex).unwrap_or_default())
            .collect()
    }

    /// All messages back to back, as one TCP stream.
    pub fn stream(&self) -> Vec<u8> {
        self.messages().concat()
    }
}

const OPEN_LAB: (&str, &str) = (
    "OPEN",
    "0000001c0000000100000004000000015005040a0000015007020009",
);
const UPDATE_V2_IPV6: (&str, &str) = (
    "UPDATE",
    "0000002a00000003000000020000001a20010db800000000000000000000001000000001000000020028",
);
const UPDATE_V2_IPV4: (&str, &str) = (
    "UPDATE",
    "000000a200000003000000010000000ec612010a00000001000000020014000000010000000ec61202010000000100000002001e000000010000000ec61202020000000100000002001e000000010000000ec61202030000000100000002001e000000010000000ec61202040000000100000002001e000000010000000ec61202050000000100000002001e000000010000000ec61202060000000100000002001e",
);
const UPDATE_V3_IPV4: (&str, &str) = (
    "UPDATE",
    "0000003d00000003000000010000000ec612010a000000010000000200140000000100000017c612020000000002000000011d0000000100000002001e",
);
const UPDATE_V4_IPV4: (&str, &str) = (
    "UPDATE",
    "00000030000000031010040a0000011011020014100b0520c612010a1010040a000001101102001e100b051dc6120200",
);
const UPDATE_V4_IPV6: (&str, &str) = (
    "UPDATE",
    "00000028000000031010040a0000011011020028100c118020010db8000000000000000000000010",
);
const PURGE_ALL: (&str, &str) = ("PURGE_ALL", "0000000800000005");

/// Every run of `shared/lab/sxp-reference.md`.
pub const RECORDINGS: &[Recording] = &[
    Recording {
        name: "batch-v4",
        messages: &[
            OPEN_LAB,
            (
                "UPDATE",
                "00000055000000031010040a0000011011020014100b03100a011010040a0000011011020014100b0520c612010a1010040a0000011011020014100b0520c612010b1010040a000001101102001e100b0418c61203",
            ),
            (
                "UPDATE",
                "0000001e000000031010040a000001101102001e100c073020010db80001",
            ),
        ],
        keepalives: 1,
    },
    Recording {
        name: "error-holdtime",
        messages: &[OPEN_LAB, ("ERROR", "0000000a00000004820a")],
        keepalives: 0,
    },
    Recording {
        name: "lifecycle-v2",
        messages: &[
            OPEN_LAB,
            UPDATE_V2_IPV6,
            UPDATE_V2_IPV4,
            (
                "UPDATE",
                "00000050000000030000000300000004c61202010000000300000004c61202020000000300000004c61202030000000300000004c61202040000000300000004c61202050000000300000004c6120206",
            ),
            PURGE_ALL,
        ],
        keepalives: 3,
    },
    Recording {
        name: "lifecycle-v3",
        messages: &[
            OPEN_LAB,
            UPDATE_V3_IPV4,
            UPDATE_V2_IPV6,
            (
                "UPDATE",
                "0000001d00000003000000030000000dc612020000000002000000011d",
            ),
            PURGE_ALL,
        ],
        keepalives: 3,
    },
    Recording {
        name: "lifecycle-v4",
        messages: &[
            OPEN_LAB,
            UPDATE_V4_IPV4,
            UPDATE_V4_IPV6,
            ("UPDATE", "0000001000000003100d051dc6120200"),
            PURGE_ALL,
        ],
        keepalives: 3,
    },
    Recording {
        name: "md5-ok",
        messages: &[
            OPEN_LAB,
            (
                "UPDATE",
                "0000001c000000031010040a0000011011020014100b0520c612010a",
            ),
        ],
        keepalives: 2,
    },
    Recording {
        name: "out-v1",
        messages: &[OPEN_LAB, UPDATE_V2_IPV4],
        keepalives: 3,
    },
    Recording {
        name: "out-v2",
        messages: &[OPEN_LAB, UPDATE_V2_IPV6, UPDATE_V2_IPV4],
        keepalives: 3,
    },
    Recording {
        name: "out-v3",
        messages: &[OPEN_LAB, UPDATE_V3_IPV4, UPDATE_V2_IPV6],
        keepalives: 2,
    },
    Recording {
        name: "out-v4",
        messages: &[OPEN_LAB, UPDATE_V4_IPV4, UPDATE_V4_IPV6],
        keepalives: 3,
    },
    Recording {
        name: "passive-v2",
        messages: &[
            ("OPEN_RESP", "00000010000000020000000200000001"),
            (
                "UPDATE",
                "0000001e00000003000000010000000ec612010a00000001000000020014",
            ),
        ],
        keepalives: 1,
    },
    Recording {
        name: "passive-v4",
        messages: &[
            (
                "OPEN_RESP",
                "0000001c0000000200000004000000015005040a0000015007020009",
            ),
            (
                "UPDATE",
                "0000001c000000031010040a0000011011020014100b0520c612010a",
            ),
        ],
        keepalives: 2,
    },
];

/// The recording named `name` (e.g. "lifecycle-v4").
pub fn recording(name: &str) -> Option<&'static Recording> {
    RECORDINGS.iter().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recording_is_valid_hex_and_frames_exactly() {
        for rec in RECORDINGS {
            for (kind, hex) in rec.messages {
                let bytes = decode_hex(hex).unwrap_or_else(|| panic!("{}: bad hex", rec.name));
                let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
                assert_eq!(len, bytes.len(), "{} {kind}", rec.name);
            }
        }
    }

    #[test]
    fn hex_rejects_junk() {
        assert_eq!(decode_hex("0a 0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn legacy_expansion() {
        let hosts = legacy_expand(lab_deleted(), 2);
        assert_eq!(hosts.len(), 6);
        assert_eq!(hosts[0], "198.18.2.1".parse().expect("p"));
        assert_eq!(legacy_expand("10.0.0.0/31".parse().expect("p"), 1).len(), 2);
        assert_eq!(
            legacy_expand("10.0.0.0/8".parse().expect("p"), 1).len(),
            4096
        );
        assert!(legacy_expand("2001:db8::/64".parse().expect("p"), 2).is_empty());
        assert_eq!(legacy_expand(lab_deleted(), 3), vec![lab_deleted()]);
    }

    #[test]
    fn large_updates_split_at_4096() {
        let adds: Vec<(Prefix, Sgt)> = (0..1000u32)
            .map(|i| {
                (
                    Prefix::host(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))),
                    Sgt(5),
                )
            })
            .collect();
        let msgs = TestSpeaker::default().updates(4, &adds, &[]);
        assert!(msgs.len() > 1);
        assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE_LEN));
        let total: usize = msgs
            .iter()
            .map(|m| match Message::decode(m) {
                Ok(Message::Update(u)) => u.attributes.len(),
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(total, 3000);
    }
}

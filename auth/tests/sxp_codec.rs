//! Codec edge cases with hand-made vectors: multi-prefix attributes (sxpd
//! never sends them), extended-length attributes, legacy v3 UPDATEs,
//! truncation at every byte, length mismatches, unknown types and attributes.
//! Test names start with `sxp_` so `cargo test -p auth sxp` runs them.

use auth::sxp::test_speaker::{RECORDINGS, decode_hex};
use auth::sxp::{
    Attribute, AttributeFlags, AttributeType, AttributeValue, BindingChange, Capability,
    CapabilityCode, DecodeError, ErrorCode, ErrorSubCode, Framer, Header, LegacyBinding, LegacyTlv,
    MAX_MESSAGE_LEN, Message, MessageType, NodeId, Open, Prefix, Sgt, Update, UpdateContext,
    update_changes,
};

fn hex(s: &str) -> Vec<u8> {
    decode_hex(s).expect("valid hex")
}

fn p(s: &str) -> Prefix {
    s.parse().expect("prefix")
}

const PEER: NodeId = NodeId(0x0A00_0001);

fn ctx(version: u32) -> UpdateContext {
    UpdateContext {
        version,
        own_node_id: NodeId(0xC612_0101),
        peer_node_id: Some(PEER),
    }
}

/// v4 UPDATE with multi-prefix lists, a /0 delete and an extended-length
/// (flags 0x18) IPv6 list:
///   IPv4-DEL-PREFIX [10.1.0.0/16, 0.0.0.0/0]
///   PEER-SEQUENCE [10.0.0.1, 10.0.0.2]
///   SGT 50
///   IPv4-ADD-PREFIX [10.0.0.0/8, 192.168.1.0/24, 172.16.5.4/32]
///   IPv6-ADD-PREFIX (extended length) [2001:db8::/32, 2001:db8:0:1::/64]
const MULTI_PREFIX: &str = "0000003f 00000003
    100d04 100a01 00
    101008 0a000001 0a000002
    10110200 32
    100b0b 080a 18c0a801 20ac100504
    180c000e 2020010db8 4020010db800000001";

#[test]
fn sxp_multi_prefix_update() {
    let bytes = hex(MULTI_PREFIX);
    let msg = Message::decode(&bytes).expect("decodes");
    let Message::Update(update) = &msg else {
        panic!("{msg:?}");
    };
    assert_eq!(update.attributes.len(), 5);
    assert_eq!(update.attributes[4].flags, AttributeFlags(0x18));
    assert_eq!(
        update.attributes[4].value,
        AttributeValue::Ipv6AddPrefix(vec![p("2001:db8::/32"), p("2001:db8:0:1::/64")])
    );
    assert_eq!(msg.encode().expect("encodes"), bytes);
    let summary = update_changes(&update.attributes, &ctx(4)).expect("valid");
    let add = |s: &str| BindingChange::Add {
        prefix: p(s),
        sgt: Sgt(50),
    };
    assert_eq!(
        summary.changes,
        vec![
            BindingChange::Delete {
                prefix: p("10.1.0.0/16")
            },
            BindingChange::Delete {
                prefix: p("0.0.0.0/0")
            },
            add("10.0.0.0/8"),
            add("192.168.1.0/24"),
            add("172.16.5.4/32"),
            add("2001:db8::/32"),
            add("2001:db8:0:1::/64"),
        ]
    );
}

#[test]
fn sxp_prefix_host_bits_are_masked() {
    // 198.18.2.7/29 on the wire decodes as 198.18.2.0/29.
    let msg = Message::decode(&hex("0000001000000003100d051dc6120207")).expect("decodes");
    let Message::Update(u) = msg else { panic!() };
    assert_eq!(
        u.attributes[0].value,
        AttributeValue::Ipv4DelPrefix(vec![p("198.18.2.0/29")])
    );
}

/// Legacy v3: ADD-IPv6 /64 with an unknown inner TLV and PREFIX-LEN after
/// the SGT, DEL-IPv6 /64, ADD-IPv4 host.
const LEGACY_V3: &str = "00000072 00000003
    00000002 0000002b 20010db8000000010000000000000000
        00000009 00000000
        00000001 00000002 0064
        00000002 00000001 40
    00000004 00000019 20010db8000000020000000000000000 00000002 00000001 40
    00000001 0000000e 0a000005 00000001 00000002 0065";

#[test]
fn sxp_legacy_v3_update() {
    let bytes = hex(LEGACY_V3);
    let msg = Message::decode(&bytes).expect("decodes");
    assert_eq!(msg.encode().expect("encodes"), bytes);
    let Message::Update(update) = &msg else {
        panic!("{msg:?}")
    };
    assert_eq!(
        update.attributes[0],
        Attribute::new(
            AttributeFlags::LEGACY,
            AttributeValue::AddIpv6(LegacyBinding {
                addr: "2001:db8:0:1::".parse().expect("ip"),
                tlvs: vec![
                    LegacyTlv::Unknown {
                        typ: 9,
                        value: vec![]
                    },
                    LegacyTlv::Sgt(Sgt(100)),
                    LegacyTlv::PrefixLength(64),
                ],
            })
        )
    );
    let summary = update_changes(&update.attributes, &ctx(3)).expect("valid");
    assert_eq!(
        summary.changes,
        vec![
            BindingChange::Add {
                prefix: p("2001:db8:0:1::/64"),
                sgt: Sgt(100)
            },
            BindingChange::Delete {
                prefix: p("2001:db8:0:2::/64")
            },
            BindingChange::Add {
                prefix: p("10.0.0.5/32"),
                sgt: Sgt(101)
            },
        ]
    );
    // Legacy attributes are refused on a v4 session.
    assert!(update_changes(&update.attributes, &ctx(4)).is_err());
}

#[test]
fn sxp_open_with_capabilities_and_range() {
    let open = Open::listener(4, Some((90, 180)));
    let bytes = Message::OpenResp(open.clone()).encode().expect("encodes");
    assert_eq!(
        bytes,
        hex("00000020 00000002 00000004 00000002 500606 010002000300 500704 005a00b4")
    );
    let Message::OpenResp(decoded) = Message::decode(&bytes).expect("decodes") else {
        panic!()
    };
    assert_eq!(decoded, open);
    assert_eq!(
        decoded.capabilities(),
        Some(
            &[
                Capability::new(CapabilityCode::Ipv4Unicast),
                Capability::new(CapabilityCode::Ipv6Unicast),
                Capability::new(CapabilityCode::SubnetBindings),
            ][..]
        )
    );
    // Keepalives off: HOLD-TIME 0xFFFF alone.
    let off = Message::OpenResp(Open::listener(4, None))
        .encode()
        .expect("encodes");
    assert_eq!(
        off,
        hex("0000001e 00000002 00000004 00000002 500606 010002000300 500702 ffff")
    );
    // A capability with a value, and an unknown one, survive a round trip.
    let caps = hex("0000001b00000001 00000004 00000002 500608 0302abcd 0900 0100");
    let msg = Message::decode(&caps).expect("decodes");
    assert_eq!(msg.encode().expect("encodes"), caps);
}

/// Every prefix of every recorded and hand-made message fails to decode, and
/// with the length field patched to the cut the decoder either errors or
/// decodes something that re-encodes to exactly those bytes. No panics.
#[test]
fn sxp_truncation_at_every_byte() {
    let mut vectors: Vec<Vec<u8>> = RECORDINGS.iter().flat_map(|r| r.messages()).collect();
    vectors.push(hex(MULTI_PREFIX));
    vectors.push(hex(LEGACY_V3));
    for bytes in &vectors {
        for cut in 0..bytes.len() {
            let short = &bytes[..cut];
            assert!(Message::decode(short).is_err(), "{cut} of {bytes:02x?}");
            if cut >= 8 {
                let mut patched = short.to_vec();
                patched[..4].copy_from_slice(&(cut as u32).to_be_bytes());
                if let Ok(msg) = Message::decode(&patched) {
                    assert_eq!(msg.encode().expect("re-encodes"), patched);
                }
            }
        }
    }
}

#[test]
fn sxp_truncation_errors_are_typed() {
    // Attribute header cut: UPDATE with a lone flags octet.
    assert_eq!(
        Message::decode(&hex("0000000900000003 10")),
        Err(DecodeError::AttributeHeaderTruncated { offset: 8 })
    );
    // Attribute length runs past the message.
    assert_eq!(
        Message::decode(&hex("0000000c00000003 101104 00")),
        Err(DecodeError::AttributeOverflow {
            typ: 17,
            offset: 8,
            length: 4,
            available: 1
        })
    );
    // Prefix longer than the list.
    let err = Message::decode(&hex("0000000d00000003 100b02 20c6")).expect_err("cut prefix");
    assert_eq!(
        err,
        DecodeError::PrefixTruncated {
            typ: AttributeType::Ipv4AddPrefix,
            offset: 8
        }
    );
    assert_eq!(
        err.error_code(MessageType::Update),
        (ErrorCode::UpdateMessage, ErrorSubCode::MalformedAttribute)
    );
    // IPv4 prefix length 33.
    assert!(matches!(
        Message::decode(&hex("0000001000000003 100b05 21c6120200")),
        Err(DecodeError::PrefixLength {
            len: 33,
            max: 32,
            ..
        })
    ));
    // SGT of 3 octets.
    let err = Message::decode(&hex("0000000e00000003 101103 000014")).expect_err("sgt");
    assert!(matches!(
        err,
        DecodeError::AttributeLength {
            typ: AttributeType::Sgt,
            len: 3,
            ..
        }
    ));
    assert_eq!(
        err.error_code(MessageType::Update),
        (ErrorCode::UpdateMessage, ErrorSubCode::AttributeLength)
    );
    // HOLD-TIME of 3 octets in OPEN: an OPEN error.
    let err = Message::decode(&hex("0000001600000001 00000004 00000001 500703 000900"))
        .expect_err("hold");
    assert_eq!(
        err.error_code(MessageType::Open),
        (ErrorCode::OpenMessage, ErrorSubCode::AttributeLength)
    );
    // Legacy address cut, inner TLV cut, SGT TLV of wrong size.
    assert!(matches!(
        Message::decode(&hex("0000001300000003 00000001 00000003 c61201")),
        Err(DecodeError::AttributeLength {
            typ: AttributeType::AddIpv4,
            len: 3,
            ..
        })
    ));
    assert!(matches!(
        Message::decode(&hex("0000001800000003 00000001 00000008 c612010a 00000001")),
        Err(DecodeError::LegacyTlvTruncated { .. })
    ));
    assert!(matches!(
        Message::decode(&hex(
            "0000001f00000003 00000001 0000000f c612010a 00000001 00000003 000014"
        )),
        Err(DecodeError::LegacyTlvLength { tlv: 1, len: 3, .. })
    ));
    // OPEN shorter than version + mode.
    assert_eq!(
        Message::decode(&hex("0000000c00000001 00000004")),
        Err(DecodeError::BodyTooShort {
            typ: MessageType::Open,
            len: 4,
            need: 8
        })
    );
    // ERROR with an empty body, extended ERROR with only one octet.
    assert!(matches!(
        Message::decode(&hex("0000000800000004")),
        Err(DecodeError::BodyTooShort { need: 2, .. })
    ));
    assert!(matches!(
        Message::decode(&hex("0000000900000004 82")),
        Err(DecodeError::BodyTooShort { need: 2, .. })
    ));
    // Capability cut.
    assert_eq!(
        Message::decode(&hex("0000001600000002 00000004 00000002 500603 010200")),
        Err(DecodeError::CapabilityTruncated { offset: 16 })
    );
    // PEER-SEQUENCE not a multiple of 4.
    assert!(matches!(
        Message::decode(&hex("0000000e00000003 101003 0a0000")),
        Err(DecodeError::AttributeLength {
            typ: AttributeType::PeerSequence,
            ..
        })
    ));
}

#[test]
fn sxp_length_mismatches() {
    let keepalive = hex("0000000800000006");
    // Header says more than given, and less.
    assert_eq!(
        Message::decode(&hex("0000000900000006")),
        Err(DecodeError::LengthMismatch {
            length: 9,
            actual: 8
        })
    );
    let mut long = keepalive.clone();
    long.push(0);
    assert_eq!(
        Message::decode(&long),
        Err(DecodeError::LengthMismatch {
            length: 8,
            actual: 9
        })
    );
    // Below the header size and above 4096.
    assert_eq!(
        Message::decode(&hex("0000000700000006")),
        Err(DecodeError::BadLength(7))
    );
    assert_eq!(
        Message::decode(&hex("0000100100000006")),
        Err(DecodeError::BadLength(4097))
    );
    assert_eq!(
        Message::decode(&[0, 0, 0]),
        Err(DecodeError::ShortHeader(3))
    );
    // KEEPALIVE and PURGE_ALL are header only.
    assert_eq!(
        Message::decode(&hex("0000000900000005 00")),
        Err(DecodeError::UnexpectedBody {
            typ: MessageType::PurgeAll,
            len: 1
        })
    );
    // The largest legal message decodes; one byte more is refused by the
    // framer before it is buffered whole.
    let mut max = (MAX_MESSAGE_LEN as u32).to_be_bytes().to_vec();
    max.extend_from_slice(&99u32.to_be_bytes());
    max.resize(MAX_MESSAGE_LEN, 0);
    assert!(matches!(
        Message::decode(&max),
        Ok(Message::Unknown { typ: 99, .. })
    ));
    let mut framer = Framer::new();
    framer.push(&hex("0000100100000003"));
    assert_eq!(framer.next_message(), Err(DecodeError::BadLength(4097)));
}

#[test]
fn sxp_unknown_types_and_attributes() {
    // Unknown message type: kept.
    let msg = Message::decode(&hex("0000000c00000063 01020304")).expect("decodes");
    assert_eq!(
        msg,
        Message::Unknown {
            typ: 0x63,
            body: vec![1, 2, 3, 4]
        }
    );
    // Unknown attributes: optional (0x90) and mandatory (0x10), compact and
    // non-compact (24-bit type 0x012345), all kept for the caller to judge.
    let bytes =
        hex("0000002600000003 906302abcd 106400 00012345 00000002 beef 101004 0a000001 1011020005");
    let Message::Update(u) = Message::decode(&bytes).expect("decodes") else {
        panic!()
    };
    assert_eq!(
        u.attributes[2].value,
        AttributeValue::Unknown {
            typ: 0x012345,
            value: vec![0xbe, 0xef]
        }
    );
    assert_eq!(Message::Update(u.clone()).encode().expect("encodes"), bytes);
    // The optional one alone is skipped; the mandatory ones are refused.
    let only_optional = Update {
        attributes: vec![u.attributes[0].clone(), u.attributes[3].clone()],
    };
    let summary = update_changes(&only_optional.attributes, &ctx(4)).expect("optional skipped");
    assert_eq!(summary.ignored_optional, 1);
    let err = update_changes(&u.attributes, &ctx(4)).expect_err("mandatory unknown");
    assert_eq!(err.sub_code(), ErrorSubCode::UnexpectedAttribute);
}

#[test]
fn sxp_header_peek() {
    assert_eq!(
        Header::peek(&hex("0000001c00000001 00")),
        Ok(Some(Header {
            length: 28,
            typ: MessageType::Open
        }))
    );
    assert_eq!(Header::peek(&hex("0000001c000000")), Ok(None));
}

#[test]
fn sxp_encode_limits() {
    // An UPDATE that would exceed 4096 bytes is refused.
    let big = Update {
        attributes: (0..600)
            .map(|i| {
                Attribute::new(
                    AttributeFlags::WELL_KNOWN_COMPACT,
                    AttributeValue::Ipv4AddPrefix(vec![p(&format!(
                        "10.0.{}.{}/32",
                        i / 256,
                        i % 256
                    ))]),
                )
            })
            .collect(),
    };
    assert!(matches!(
        Message::Update(big).encode(),
        Err(auth::sxp::EncodeError::MessageTooLong(_))
    ));
    // A compact attribute cannot carry a type above 255.
    let attr = Attribute::new(
        AttributeFlags::WELL_KNOWN_COMPACT,
        AttributeValue::Unknown {
            typ: 300,
            value: vec![],
        },
    );
    assert!(attr.encode_into(&mut Vec::new()).is_err());
    let attr = Attribute::new(
        AttributeFlags(0),
        AttributeValue::Unknown {
            typ: 0x0100_0000,
            value: vec![],
        },
    );
    assert!(attr.encode_into(&mut Vec::new()).is_err());
}

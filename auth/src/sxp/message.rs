//! SXP messages (draft-smith-kandula-sxp section 4.2 header, 4.4 OPEN /
//! OPEN_RESP, 4.5 UPDATE, 4.6 ERROR, 4.7 PURGE_ALL, 4.8 KEEPALIVE).
//!
//! Header: u32 length (header included), u32 type, big-endian. A message is
//! at most [`MAX_MESSAGE_LEN`] octets (section 4.2; sxpd's
//! `SXP_MAX_MSG_LENGTH`).

use super::attribute::{
    Attribute, AttributeFlags, AttributeType, AttributeValue, Capability, CapabilityCode,
    HOLD_TIME_UNUSED, HoldTime, NodeId, decode_attributes,
};
use super::wire::{Reader, wire_enum};

/// The header: length and type, 4 octets each.
pub const HEADER_LEN: usize = 8;
/// Largest legal message, header included (section 4.2).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The well-known SXP TCP port.
pub const SXP_PORT: u16 = 64999;
/// Highest protocol version this implementation speaks.
pub const MAX_VERSION: u32 = 4;

wire_enum! {
    /// Message type (section 4.2).
    MessageType: u32 {
        Open = 1,
        OpenResp = 2,
        Update = 3,
        Error = 4,
        PurgeAll = 5,
        Keepalive = 6,
    }
}

wire_enum! {
    /// Mode in OPEN / OPEN_RESP (section 4.4): the sender's role.
    Mode: u32 {
        Speaker = 1,
        Listener = 2,
    }
}

wire_enum! {
    /// Extended error code (section 4.6); 7 bits on the wire.
    ErrorCode: u8 {
        Unspecified = 0,
        MessageHeader = 1,
        OpenMessage = 2,
        UpdateMessage = 3,
    }
}

wire_enum! {
    /// Extended error sub-code (section 4.6).
    ErrorSubCode: u8 {
        Unspecified = 0,
        MalformedAttributeList = 1,
        UnexpectedAttribute = 2,
        MissingWellKnownAttribute = 3,
        AttributeFlags = 4,
        AttributeLength = 5,
        MalformedAttribute = 6,
        OptionalAttribute = 7,
        UnsupportedVersionNumber = 8,
        UnsupportedOptionalAttribute = 9,
        UnacceptableHoldTime = 10,
    }
}

wire_enum! {
    /// Legacy (non-extended, v1-v3) error code (section 4.6).
    LegacyErrorCode: u32 {
        Unspecified = 0,
        VersionMismatch = 1,
        MessageParseError = 2,
    }
}

/// Why bytes are not an SXP message. Every length rule has its own variant so
/// a counted log line says exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes is shorter than the 8-byte SXP header")]
    ShortHeader(usize),
    #[error("length field {0} is outside 8..=4096")]
    BadLength(u32),
    #[error("length field {length} but {actual} bytes given")]
    LengthMismatch { length: u32, actual: usize },
    #[error("{typ:?} body of {len} bytes is shorter than {need}")]
    BodyTooShort {
        typ: MessageType,
        len: usize,
        need: usize,
    },
    #[error("{typ:?} has a body of {len} bytes, expected none")]
    UnexpectedBody { typ: MessageType, len: usize },
    #[error("legacy ERROR body of {0} bytes, expected 4")]
    LegacyErrorLength(usize),
    #[error("attribute header at offset {offset} cut off by the end of the message")]
    AttributeHeaderTruncated { offset: usize },
    #[error(
        "attribute {typ} at offset {offset}: length {length} runs past the end of the message ({available} bytes left)"
    )]
    AttributeOverflow {
        typ: u32,
        offset: usize,
        length: u32,
        available: usize,
    },
    #[error("attribute {typ:?} at offset {offset}: value of {len} bytes, expected {expected}")]
    AttributeLength {
        typ: AttributeType,
        offset: usize,
        len: usize,
        expected: &'static str,
    },
    #[error("attribute {typ:?} at offset {offset}: prefix length {len} exceeds {max}")]
    PrefixLength {
        typ: AttributeType,
        offset: usize,
        len: u8,
        max: u8,
    },
    #[error("attribute {typ:?} at offset {offset}: prefix cut off by the end of the attribute")]
    PrefixTruncated { typ: AttributeType, offset: usize },
    #[error("CAPABILITIES at offset {offset}: capability cut off by the end of the attribute")]
    CapabilityTruncated { offset: usize },
    #[error("attribute {typ:?} at offset {offset}: inner TLV cut off by the end of the attribute")]
    LegacyTlvTruncated { typ: AttributeType, offset: usize },
    #[error(
        "attribute {typ:?} at offset {offset}: inner TLV {tlv} of {len} bytes, expected {expected}"
    )]
    LegacyTlvLength {
        typ: AttributeType,
        offset: usize,
        tlv: u32,
        len: usize,
        expected: &'static str,
    },
}

impl DecodeError {
    /// The extended ERROR code and sub-code that answer this error in a
    /// message of type `typ` (section 4.6): header faults are Message Header
    /// errors, faults inside OPEN / OPEN_RESP are OPEN errors, inside UPDATE
    /// UPDATE errors.
    pub fn error_code(&self, typ: MessageType) -> (ErrorCode, ErrorSubCode) {
        let body_code = match typ {
            MessageType::Open | MessageType::OpenResp => ErrorCode::OpenMessage,
            MessageType::Update => ErrorCode::UpdateMessage,
            _ => ErrorCode::MessageHeader,
        };
        match self {
            Self::ShortHeader(_)
            | Self::BadLength(_)
            | Self::LengthMismatch { .. }
            | Self::UnexpectedBody { .. }
            | Self::LegacyErrorLength(_) => (ErrorCode::MessageHeader, ErrorSubCode::Unspecified),
            Self::BodyTooShort { .. } => (body_code, ErrorSubCode::Unspecified),
            Self::AttributeHeaderTruncated { .. } | Self::AttributeOverflow { .. } => {
                (body_code, ErrorSubCode::MalformedAttributeList)
            }
            Self::AttributeLength { .. } => (body_code, ErrorSubCode::AttributeLength),
            Self::PrefixLength { .. }
            | Self::PrefixTruncated { .. }
            | Self::CapabilityTruncated { .. }
            | Self::LegacyTlvTruncated { .. }
            | Self::LegacyTlvLength { .. } => (body_code, ErrorSubCode::MalformedAttribute),
        }
    }
}

/// Why a message could not be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {0} bytes exceeds the 4096-byte SXP maximum")]
    MessageTooLong(usize),
    #[error("attribute {typ:?}: value of {len} bytes exceeds the {max}-byte length field")]
    AttributeTooLong {
        typ: AttributeType,
        len: usize,
        max: usize,
    },
    #[error("attribute type {typ} does not fit the {} header", if *compact { "compact" } else { "non-compact" })]
    AttributeTypeTooLarge { typ: u32, compact: bool },
    #[error("attribute {typ:?}: address of the wrong family")]
    AddressFamily { typ: AttributeType },
}

/// The 8-octet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total length, header included.
    pub length: u32,
    pub typ: MessageType,
}

impl Header {
    /// Reads the header at the start of `bytes`: `Ok(None)` when fewer than 8
    /// bytes are there yet, an error when the length field is outside
    /// 8..=4096 (the stream can then not be framed any more).
    pub fn peek(bytes: &[u8]) -> Result<Option<Header>, DecodeError> {
        let mut r = Reader::new(bytes);
        let (Some(length), Some(typ)) = (r.u32(), r.u32()) else {
            return Ok(None);
        };
        if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&(length as usize)) {
            return Err(DecodeError::BadLength(length));
        }
        Ok(Some(Header {
            length,
            typ: MessageType::from(typ),
        }))
    }
}

/// OPEN and OPEN_RESP share one layout (section 4.4): version, mode,
/// attributes (v4: NODE-ID from a speaker, CAPABILITIES from a listener,
/// HOLD-TIME from both; v1-v3 normally none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u32,
    pub mode: Mode,
    pub attributes: Vec<Attribute>,
}

impl Open {
    /// What a listener sends (OPEN when it connects, OPEN_RESP when it
    /// accepts): v4 carries CAPABILITIES (IPv4, IPv6, subnet bindings) and
    /// HOLD-TIME with the listener's range, or [`HOLD_TIME_UNUSED`] when
    /// `hold_range` is `None`; v1-v3 carry nothing. No NODE-ID: the draft
    /// asks it of speakers only, and sxpd rejects a listener's NODE-ID.
    pub fn listener(version: u32, hold_range: Option<(u16, u16)>) -> Self {
        let mut attributes = Vec::new();
        if version >= 4 {
            attributes.push(Attribute::new(
                AttributeFlags::NON_TRANSITIVE_COMPACT,
                AttributeValue::Capabilities(vec![
                    Capability::new(CapabilityCode::Ipv4Unicast),
                    Capability::new(CapabilityCode::Ipv6Unicast),
                    Capability::new(CapabilityCode::SubnetBindings),
                ]),
            ));
            let hold = match hold_range {
                Some((min, max)) => HoldTime {
                    min,
                    max: Some(max),
                },
                None => HoldTime {
                    min: HOLD_TIME_UNUSED,
                    max: None,
                },
            };
            attributes.push(Attribute::new(
                AttributeFlags::NON_TRANSITIVE_COMPACT,
                AttributeValue::HoldTime(hold),
            ));
        }
        Self {
            version,
            mode: Mode::Listener,
            attributes,
        }
    }

    /// The first NODE-ID attribute.
    pub fn node_id(&self) -> Option<NodeId> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::NodeId(id) => Some(id),
            _ => None,
        })
    }

    /// The first HOLD-TIME attribute.
    pub fn hold_time(&self) -> Option<HoldTime> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::HoldTime(h) => Some(h),
            _ => None,
        })
    }

    /// The first CAPABILITIES attribute's list.
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.attributes.iter().find_map(|a| match &a.value {
            AttributeValue::Capabilities(c) => Some(c.as_slice()),
            _ => None,
        })
    }
}

/// UPDATE (section 4.5): the attribute list, in wire order. Which attributes
/// are legal depends on the negotiated version; see [`super::update`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub attributes: Vec<Attribute>,
}

/// ERROR (section 4.6). Extended: E bit, 7-bit code, 8-bit sub-code, then
/// optionally the offending data (sxpd sends just the two octets).
/// Legacy (v1-v3): a u32 code with the top bit clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorMessage {
    Extended {
        code: ErrorCode,
        sub_code: ErrorSubCode,
        data: Vec<u8>,
    },
    Legacy {
        code: LegacyErrorCode,
    },
}

impl ErrorMessage {
    pub fn extended(code: ErrorCode, sub_code: ErrorSubCode) -> Self {
        Self::Extended {
            code,
            sub_code,
            data: Vec::new(),
        }
    }
}

impl std::fmt::Display for ErrorMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Extended { code, sub_code, .. } => write!(f, "{code:?} / {sub_code:?}"),
            Self::Legacy { code } => write!(f, "legacy {code:?}"),
        }
    }
}

/// A decoded SXP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    OpenResp(Open),
    Update(Update),
    Error(ErrorMessage),
    PurgeAll,
    Keepalive,
    /// A type this implementation does not know, body kept as received.
    Unknown {
        typ: u32,
        body: Vec<u8>,
    },
}

impl Message {
    pub fn typ(&self) -> MessageType {
        match self {
            Self::Open(_) => MessageType::Open,
            Self::OpenResp(_) => MessageType::OpenResp,
            Self::Update(_) => MessageType::Update,
            Self::Error(_) => MessageType::Error,
            Self::PurgeAll => MessageType::PurgeAll,
            Self::Keepalive => MessageType::Keepalive,
            Self::Unknown { typ, .. } => MessageType::from(*typ),
        }
    }

    /// Decodes exactly one message: `bytes` must be as long as its length
    /// field says (use [`super::Framer`] to cut a TCP stream into messages).
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let header = Header::peek(bytes)?.ok_or(DecodeError::ShortHeader(bytes.len()))?;
        if header.length as usize != bytes.len() {
            return Err(DecodeError::LengthMismatch {
                length: header.length,
                actual: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        r.seek(HEADER_LEN);
        let body_len = r.remaining();
        let typ = header.typ;
        Ok(match typ {
            MessageType::Open | MessageType::OpenResp => {
                let (Some(version), Some(mode)) = (r.u32(), r.u32()) else {
                    return Err(DecodeError::BodyTooShort {
                        typ,
                        len: body_len,
                        need: 8,
                    });
                };
                let open = Open {
                    version,
                    mode: Mode::from(mode),
                    attributes: decode_attributes(&mut r)?,
                };
                if typ == MessageType::Open {
                    Message::Open(open)
                } else {
                    Message::OpenResp(open)
                }
            }
            MessageType::Update => Message::Update(Update {
                attributes: decode_attributes(&mut r)?,
            }),
            MessageType::Error => Message::Error(decode_error(&mut r, body_len)?),
            MessageType::PurgeAll | MessageType::Keepalive => {
                // Header only (sections 4.7, 4.8).
                if body_len != 0 {
                    return Err(DecodeError::UnexpectedBody { typ, len: body_len });
                }
                if typ == MessageType::PurgeAll {
                    Message::PurgeAll
                } else {
                    Message::Keepalive
                }
            }
            MessageType::Unknown(typ) => Message::Unknown {
                typ,
                body: r.rest().to_vec(),
            },
        })
    }

    /// Encodes the message; fails if it would exceed [`MAX_MESSAGE_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut body = Vec::new();
        match self {
            Self::Open(open) | Self::OpenResp(open) => {
                body.extend_from_slice(&open.version.to_be_bytes());
                body.extend_from_slice(&u32::from(open.mode).to_be_bytes());
                for attr in &open.attributes {
                    attr.encode_into(&mut body)?;
                }
            }
            Self::Update(update) => {
                for attr in &update.attributes {
                    attr.encode_into(&mut body)?;
                }
            }
            Self::Error(ErrorMessage::Extended {
                code,
                sub_code,
                data,
            }) => {
                body.push(0x80 | (u8::from(*code) & 0x7F));
                body.push(u8::from(*sub_code));
                body.extend_from_slice(data);
            }
            Self::Error(ErrorMessage::Legacy { code }) => {
                // The top bit is the E flag, so a legacy code keeps it clear.
                body.extend_from_slice(&(u32::from(*code) & 0x7FFF_FFFF).to_be_bytes());
            }
            Self::PurgeAll | Self::Keepalive => {}
            Self::Unknown { body: b, .. } => body.extend_from_slice(b),
        }
        let length = HEADER_LEN + body.len();
        if length > MAX_MESSAGE_LEN {
            return Err(EncodeError::MessageTooLong(length));
        }
        let mut out = Vec::with_capacity(length);
        out.extend_from_slice(&(length as u32).to_be_bytes());
        out.extend_from_slice(&u32::from(self.typ()).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }
}

fn decode_error(r: &mut Reader<'_>, body_len: usize) -> Result<ErrorMessage, DecodeError> {
    let first = r.u8().ok_or(DecodeError::BodyTooShort {
        typ: MessageType::Error,
        len: body_len,
        need: 2,
    })?;
    if first & 0x80 != 0 {
        let sub_code = r.u8().ok_or(DecodeError::BodyTooShort {
            typ: MessageType::Error,
            len: body_len,
            need: 2,
        })?;
        Ok(ErrorMessage::Extended {
            code: ErrorCode::from(first & 0x7F),
            sub_code: ErrorSubCode::from(sub_code),
            data: r.rest().to_vec(),
        })
    } else {
        if body_len != 4 {
            return Err(DecodeError::LegacyErrorLength(body_len));
        }
        let low = r.u24().ok_or(DecodeError::LegacyErrorLength(body_len))?;
        Ok(ErrorMessage::Legacy {
            code: LegacyErrorCode::from((u32::from(first) << 24) | low),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_peek_bounds() {
        assert_eq!(Header::peek(&[0, 0, 0]), Ok(None));
        assert_eq!(
            Header::peek(&[0, 0, 0, 7, 0, 0, 0, 6]),
            Err(DecodeError::BadLength(7))
        );
        assert_eq!(
            Header::peek(&[0, 0, 0x10, 0x01, 0, 0, 0, 3]),
            Err(DecodeError::BadLength(4097))
        );
        assert_eq!(
            Header::peek(&[0, 0, 0x10, 0x00, 0, 0, 0, 3]),
            Ok(Some(Header {
                length: 4096,
                typ: MessageType::Update
            }))
        );
    }

    #[test]
    fn legacy_error_roundtrip() {
        let bytes = [0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 2];
        let msg = Message::decode(&bytes).expect("decodes");
        assert_eq!(
            msg,
            Message::Error(ErrorMessage::Legacy {
                code: LegacyErrorCode::MessageParseError
            })
        );
        assert_eq!(msg.encode().expect("encodes"), bytes);
        assert_eq!(
            Message::decode(&[0, 0, 0, 11, 0, 0, 0, 4, 0, 0, 2]),
            Err(DecodeError::LegacyErrorLength(3))
        );
    }

    #[test]
    fn extended_error_with_data() {
        let bytes = [
            0, 0, 0, 15, 0, 0, 0, 4, 0x83, 0x06, 0x10, 0x11, 0x01, 0x00, 0x14,
        ];
        let msg = Message::decode(&bytes).expect("decodes");
        assert_eq!(
            msg,
            Message::Error(ErrorMessage::Extended {
                code: ErrorCode::UpdateMessage,
                sub_code: ErrorSubCode::MalformedAttribute,
                data: vec![0x10, 0x11, 0x01, 0x00, 0x14],
            })
        );
        assert_eq!(msg.encode().expect("encodes"), bytes);
    }

    #[test]
    fn unknown_type_kept() {
        let bytes = [0, 0, 0, 10, 0, 0, 0, 99, 1, 2];
        let msg = Message::decode(&bytes).expect("decodes");
        assert_eq!(
            msg,
            Message::Unknown {
                typ: 99,
                body: vec![1, 2]
            }
        );
        assert_eq!(msg.typ(), MessageType::Unknown(99));
        assert_eq!(msg.encode().expect("encodes"), bytes);
    }

    #[test]
    fn too_long_to_encode() {
        let msg = Message::Unknown {
            typ: 99,
            body: vec![0; MAX_MESSAGE_LEN - HEADER_LEN + 1],
        };
        assert_eq!(msg.encode(), Err(EncodeError::MessageTooLong(4097)));
    }
}

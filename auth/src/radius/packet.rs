//! RADIUS packet framing (RFC 2865 section 3): header, length rules, the raw
//! attribute walk that both the typed decoder and the authenticator checks use.

use super::attribute::Attribute;
use super::attribute::types::MESSAGE_AUTHENTICATOR;
use super::crypto::{self, AuthenticatorError};

/// Smallest legal packet: the header alone (RFC 2865 section 3).
pub const MIN_PACKET_LEN: usize = 20;
/// Largest legal packet (RFC 2865 section 3).
pub const MAX_PACKET_LEN: usize = 4096;
/// Largest attribute value: the length octet counts the 2-octet header too.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 253;

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this implementation has no name for, kept as received.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(value: $repr) -> Self {
                match value {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> $repr {
                match value {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// Packet type (RFC 2865 section 3, RFC 2866 section 3, RFC 5176 section 3).
    Code: u8 {
        AccessRequest = 1,
        AccessAccept = 2,
        AccessReject = 3,
        AccountingRequest = 4,
        AccountingResponse = 5,
        AccessChallenge = 11,
        DisconnectRequest = 40,
        DisconnectAck = 41,
        DisconnectNak = 42,
        CoaRequest = 43,
        CoaAck = 44,
        CoaNak = 45,
    }
}

impl Code {
    /// Codes a client sends and a server answers.
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Code::AccessRequest
                | Code::AccountingRequest
                | Code::DisconnectRequest
                | Code::CoaRequest
        )
    }

    /// Codes that answer a request; their authenticator is a Response Authenticator.
    pub fn is_reply(self) -> bool {
        matches!(
            self,
            Code::AccessAccept
                | Code::AccessReject
                | Code::AccessChallenge
                | Code::AccountingResponse
                | Code::DisconnectAck
                | Code::DisconnectNak
                | Code::CoaAck
                | Code::CoaNak
        )
    }

    /// Whether `self` is a legal answer to a request of code `request`.
    pub fn answers(self, request: Code) -> bool {
        match request {
            Code::AccessRequest => matches!(
                self,
                Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
            ),
            Code::AccountingRequest => self == Code::AccountingResponse,
            Code::DisconnectRequest => matches!(self, Code::DisconnectAck | Code::DisconnectNak),
            Code::CoaRequest => matches!(self, Code::CoaAck | Code::CoaNak),
            _ => false,
        }
    }
}

/// Why bytes are not a RADIUS packet. Every length rule has its own variant so a
/// counted log line says exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than the 20-byte RADIUS header")]
    TooShort(usize),
    #[error("datagram of {0} bytes is longer than the 4096-byte RADIUS maximum")]
    TooLong(usize),
    #[error("Length field {0} is outside 20..=4096")]
    BadLength(usize),
    #[error("Length field {length} exceeds the {received} bytes received")]
    Truncated { length: usize, received: usize },
    #[error("attribute {typ} at offset {offset}: header cut off by the end of the packet")]
    AttributeHeaderTruncated { typ: u8, offset: usize },
    #[error("attribute {typ} at offset {offset}: length {length} is below 2")]
    AttributeTooShort { typ: u8, offset: usize, length: u8 },
    #[error("attribute {typ} at offset {offset}: length {length} runs past the end of the packet")]
    AttributeOverflow { typ: u8, offset: usize, length: u8 },
    #[error("attribute {typ}: value of {len} bytes, expected {expected}")]
    ValueLength {
        typ: u8,
        len: usize,
        expected: &'static str,
    },
    #[error("attribute {typ}: text is not UTF-8")]
    InvalidText { typ: u8 },
    #[error("Vendor-Specific: value of {0} bytes is too short for a vendor id")]
    VsaTooShort(usize),
    #[error("Vendor-Specific {vendor}: vendor id has a non-zero high octet")]
    VsaBadVendorId { vendor: u32 },
    #[error("Vendor-Specific {vendor}: sub-attribute {typ} length {length} is invalid")]
    VsaSubAttributeLength { vendor: u32, typ: u8, length: u8 },
    #[error("Vendor-Specific {vendor}: sub-attribute header cut off")]
    VsaSubAttributeTruncated { vendor: u32 },
    #[error("Vendor-Specific {vendor}/{typ}: value of {len} bytes, expected {expected}")]
    VsaValueLength {
        vendor: u32,
        typ: u8,
        len: usize,
        expected: &'static str,
    },
    #[error("Vendor-Specific {vendor}/{typ}: text is not UTF-8")]
    VsaInvalidText { vendor: u32, typ: u8 },
}

/// Why a packet could not be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute {typ}: encoded length {len} exceeds 255")]
    AttributeTooLong { typ: u8, len: usize },
    #[error("packet of {0} bytes exceeds the 4096-byte RADIUS maximum")]
    PacketTooLong(usize),
    #[error("password of {0} bytes exceeds the 128-byte limit of RFC 2865 section 5.2")]
    PasswordTooLong(usize),
    #[error("{0:?} is not a request code")]
    NotARequest(Code),
    #[error("{0:?} is not a reply code")]
    NotAReply(Code),
    #[error("cannot sign: {0}")]
    Signing(#[from] AuthenticatorError),
}

/// A decoded RADIUS packet.
///
/// `authenticator` is whatever the header carried: a Request Authenticator for
/// requests, a Response Authenticator for replies. Decoding checks no
/// authenticator; use [`super::crypto`] on the raw bytes for that, before
/// trusting anything decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: Code,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

/// One attribute as found on the wire, before typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawAttribute<'a> {
    pub typ: u8,
    /// Offset of the type octet inside the packet.
    pub offset: usize,
    pub value: &'a [u8],
}

/// Checks the header length rules and returns the packet cut to its Length
/// field (octets past Length are padding, RFC 2865 section 3).
pub(crate) fn frame(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() < MIN_PACKET_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes.len() > MAX_PACKET_LEN {
        return Err(DecodeError::TooLong(bytes.len()));
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if !(MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&length) {
        return Err(DecodeError::BadLength(length));
    }
    if length > bytes.len() {
        return Err(DecodeError::Truncated {
            length,
            received: bytes.len(),
        });
    }
    Ok(&bytes[..length])
}

/// Walks the attributes of a framed packet (see [`frame`]).
pub(crate) fn raw_attributes(packet: &[u8]) -> Result<Vec<RawAttribute<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut offset = MIN_PACKET_LEN;
    while offset < packet.len() {
        let typ = packet[offset];
        let Some(&length) = packet.get(offset + 1) else {
            return Err(DecodeError::AttributeHeaderTruncated { typ, offset });
        };
        if length < 2 {
            return Err(DecodeError::AttributeTooShort {
                typ,
                offset,
                length,
            });
        }
        let end = offset + usize::from(length);
        if end > packet.len() {
            return Err(DecodeError::AttributeOverflow {
                typ,
                offset,
                length,
            });
        }
        out.push(RawAttribute {
            typ,
            offset,
            value: &packet[offset + 2..end],
        });
        offset = end;
    }
    Ok(out)
}

impl Packet {
    /// A packet with no attributes yet.
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Self {
        Self {
            code,
            identifier,
            authenticator,
            attributes: Vec::new(),
        }
    }

    /// Decodes a datagram. Checks every length rule; checks no authenticator.
    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        let packet = frame(bytes)?;
        let mut attributes = Vec::new();
        for raw in raw_attributes(packet)? {
            Attribute::decode_into(raw.typ, raw.value, &mut attributes)?;
        }
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&packet[4..20]);
        Ok(Packet {
            code: Code::from(packet[0]),
            identifier: packet[1],
            authenticator,
            attributes,
        })
    }

    /// Encodes header and attributes exactly as they are, with no authenticator
    /// computed. [`Packet::encode_request`] and [`Packet::encode_reply`] sign.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_with(self.attributes.iter())
    }

    pub(crate) fn encode_with<'a>(
        &self,
        attributes: impl Iterator<Item = &'a Attribute>,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        out.push(u8::from(self.code));
        out.push(self.identifier);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.authenticator);
        for attribute in attributes {
            attribute.encode_into(&mut out)?;
            if out.len() > MAX_PACKET_LEN {
                return Err(EncodeError::PacketTooLong(out.len()));
            }
        }
        let len = u16::try_from(out.len()).map_err(|_| EncodeError::PacketTooLong(out.len()))?;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }

    /// Encodes and signs a request (RFC 2865 section 3, RFC 2866 section 3,
    /// RFC 5176 section 2.3, RFC 3579 section 3.2).
    ///
    /// Access-Request: `self.authenticator` is the Request Authenticator and
    /// must be unpredictable (see [`crypto::random_authenticator`]); a
    /// Message-Authenticator is always put first (BlastRADIUS mitigation),
    /// replacing any the caller listed.
    /// Accounting/CoA/Disconnect-Request: `self.authenticator` is ignored and
    /// the Request Authenticator computed; a Message-Authenticator the caller
    /// listed is filled in where it stands.
    pub fn encode_request(&self, secret: &[u8]) -> Result<Vec<u8>, EncodeError> {
        if !self.code.is_request() {
            return Err(EncodeError::NotARequest(self.code));
        }
        let mut bytes = if self.code == Code::AccessRequest {
            let ma = Attribute::MessageAuthenticator([0; 16]);
            let rest = self
                .attributes
                .iter()
                .filter(|a| a.type_code() != MESSAGE_AUTHENTICATOR);
            self.encode_with(std::iter::once(&ma).chain(rest))?
        } else {
            self.encode()?
        };
        crypto::sign_request(&mut bytes, secret)?;
        Ok(bytes)
    }

    /// Encodes and signs a reply to a request whose authenticator was
    /// `request_authenticator`: a listed Message-Authenticator is filled in,
    /// then the Response Authenticator computed (`self.authenticator` is ignored).
    pub fn encode_reply(
        &self,
        request_authenticator: &[u8; 16],
        secret: &[u8],
    ) -> Result<Vec<u8>, EncodeError> {
        if !self.code.is_reply() {
            return Err(EncodeError::NotAReply(self.code));
        }
        let mut bytes = self.encode()?;
        crypto::sign_reply(&mut bytes, request_authenticator, secret)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::attribute::*;
    use std::net::Ipv4Addr;

    fn header(code: u8, len: u16) -> Vec<u8> {
        let mut v = vec![code, 7];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[0xaa; 16]);
        v
    }

    fn with_attrs(code: u8, attrs: &[u8]) -> Vec<u8> {
        let mut v = header(code, (20 + attrs.len()) as u16);
        v.extend_from_slice(attrs);
        v
    }

    #[test]
    fn code_values_round_trip() {
        for (code, value) in [
            (Code::AccessRequest, 1u8),
            (Code::AccessAccept, 2),
            (Code::AccessReject, 3),
            (Code::AccountingRequest, 4),
            (Code::AccountingResponse, 5),
            (Code::AccessChallenge, 11),
            (Code::DisconnectRequest, 40),
            (Code::DisconnectAck, 41),
            (Code::DisconnectNak, 42),
            (Code::CoaRequest, 43),
            (Code::CoaAck, 44),
            (Code::CoaNak, 45),
        ] {
            assert_eq!(Code::from(value), code);
            assert_eq!(u8::from(code), value);
        }
        assert_eq!(Code::from(99), Code::Unknown(99));
        assert_eq!(u8::from(Code::Unknown(99)), 99);
        assert!(Code::AccessAccept.answers(Code::AccessRequest));
        assert!(!Code::AccountingResponse.answers(Code::AccessRequest));
        assert!(Code::CoaNak.answers(Code::CoaRequest));
    }

    #[test]
    fn header_only_packet() {
        let p = Packet::decode(&header(2, 20)).unwrap();
        assert_eq!(p.code, Code::AccessAccept);
        assert_eq!(p.identifier, 7);
        assert_eq!(p.authenticator, [0xaa; 16]);
        assert!(p.attributes.is_empty());
    }

    #[test]
    fn unknown_code_decodes_and_round_trips() {
        let bytes = with_attrs(99, &[1, 3, b'x']);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code, Code::Unknown(99));
        assert_eq!(p.encode().unwrap(), bytes);
    }

    #[test]
    fn length_rules() {
        assert_eq!(Packet::decode(&[]), Err(DecodeError::TooShort(0)));
        assert_eq!(
            Packet::decode(&header(2, 20)[..19]),
            Err(DecodeError::TooShort(19))
        );
        assert_eq!(
            Packet::decode(&header(2, 19)),
            Err(DecodeError::BadLength(19))
        );
        assert_eq!(
            Packet::decode(&header(2, 0)),
            Err(DecodeError::BadLength(0))
        );
        let mut big = header(2, 4097);
        big.resize(4097, 0);
        assert_eq!(Packet::decode(&big), Err(DecodeError::TooLong(4097)));
        let mut big = header(2, 4097);
        big.resize(4096, 0);
        assert_eq!(Packet::decode(&big), Err(DecodeError::BadLength(4097)));
        assert_eq!(
            Packet::decode(&header(2, 30)),
            Err(DecodeError::Truncated {
                length: 30,
                received: 20
            })
        );
        // Exactly 4096 with one Other attribute padding it out is fine.
        let mut max = header(2, 4096);
        while max.len() < 4096 {
            let n = (4096 - max.len()).min(255);
            max.push(200);
            max.push(n as u8);
            max.resize(max.len() + n - 2, 0x41);
        }
        assert_eq!(Packet::decode(&max).unwrap().encode().unwrap(), max);
    }

    #[test]
    fn octets_past_length_are_padding() {
        let mut bytes = with_attrs(2, &[1, 3, b'x']);
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.attributes, vec![Attribute::UserName("x".into())]);
    }

    #[test]
    fn attribute_length_rules() {
        assert_eq!(
            Packet::decode(&with_attrs(2, &[1, 0])),
            Err(DecodeError::AttributeTooShort {
                typ: 1,
                offset: 20,
                length: 0
            })
        );
        assert_eq!(
            Packet::decode(&with_attrs(2, &[1, 1])),
            Err(DecodeError::AttributeTooShort {
                typ: 1,
                offset: 20,
                length: 1
            })
        );
        assert_eq!(
            Packet::decode(&with_attrs(2, &[1, 4, b'x'])),
            Err(DecodeError::AttributeOverflow {
                typ: 1,
                offset: 20,
                length: 4
            })
        );
        assert_eq!(
            Packet::decode(&with_attrs(2, &[1, 3, b'x', 18])),
            Err(DecodeError::AttributeHeaderTruncated {
                typ: 18,
                offset: 23
            })
        );
        // Length 2 (empty value) is legal for string-like and unknown attributes.
        let p = Packet::decode(&with_attrs(2, &[25, 2, 200, 2])).unwrap();
        assert_eq!(
            p.attributes,
            vec![
                Attribute::Class(vec![]),
                Attribute::Other {
                    typ: 200,
                    value: vec![]
                }
            ]
        );
    }

    #[test]
    fn typed_value_rules() {
        assert_eq!(
            Packet::decode(&with_attrs(2, &[27, 5, 0, 0, 1])),
            Err(DecodeError::ValueLength {
                typ: 27,
                len: 3,
                expected: "4 (integer)"
            })
        );
        assert!(matches!(
            Packet::decode(&with_attrs(2, &[8, 7, 1, 2, 3, 4, 5])),
            Err(DecodeError::ValueLength { typ: 8, .. })
        ));
        assert!(matches!(
            Packet::decode(&with_attrs(2, &[80, 6, 1, 2, 3, 4])),
            Err(DecodeError::ValueLength { typ: 80, .. })
        ));
        assert_eq!(
            Packet::decode(&with_attrs(2, &[18, 4, 0xff, 0xfe])),
            Err(DecodeError::InvalidText { typ: 18 })
        );
    }

    fn vsa(vendor: u32, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![26, (6 + inner.len()) as u8];
        v.extend_from_slice(&vendor.to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    #[test]
    fn vsa_rules() {
        assert_eq!(
            Packet::decode(&with_attrs(2, &[26, 5, 0, 0, 9])),
            Err(DecodeError::VsaTooShort(3))
        );
        assert_eq!(
            Packet::decode(&with_attrs(2, &vsa(0x0100_0009, &[1, 3, b'a']))),
            Err(DecodeError::VsaBadVendorId {
                vendor: 0x0100_0009
            })
        );
        // Inner length below 2, past the end, header cut off, no sub-attribute.
        assert_eq!(
            Packet::decode(&with_attrs(2, &vsa(9, &[1, 1, b'a']))),
            Err(DecodeError::VsaSubAttributeLength {
                vendor: 9,
                typ: 1,
                length: 1
            })
        );
        assert_eq!(
            Packet::decode(&with_attrs(2, &vsa(9, &[1, 9, b'a']))),
            Err(DecodeError::VsaSubAttributeLength {
                vendor: 9,
                typ: 1,
                length: 9
            })
        );
        assert_eq!(
            Packet::decode(&with_attrs(2, &vsa(3076, &[25, 3, b'a', 7]))),
            Err(DecodeError::VsaSubAttributeTruncated { vendor: 3076 })
        );
        assert_eq!(
            Packet::decode(&with_attrs(2, &vsa(9, &[]))),
            Err(DecodeError::VsaSubAttributeTruncated { vendor: 9 })
        );
        assert!(matches!(
            Packet::decode(&with_attrs(2, &vsa(3076, &[150, 5, 0, 0, 2]))),
            Err(DecodeError::VsaValueLength {
                vendor: 3076,
                typ: 150,
                ..
            })
        ));
        assert_eq!(
            Packet::decode(&with_attrs(2, &vsa(9, &[1, 3, 0xff]))),
            Err(DecodeError::VsaInvalidText { vendor: 9, typ: 1 })
        );
    }

    #[test]
    fn vsa_with_several_sub_attributes_splits() {
        let bytes = with_attrs(2, &vsa(9, &[1, 5, b'a', b'=', b'b', 250, 3, 7]));
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(
            p.attributes,
            vec![
                Attribute::cisco_av_pair("a=b"),
                Attribute::VendorSpecific(VendorSpecific::Cisco(CiscoAttribute::Other {
                    typ: 250,
                    value: vec![7]
                })),
            ]
        );
        // Unknown vendors are kept whole, whatever their format.
        let bytes = with_attrs(2, &vsa(311, &[0xde, 0xad]));
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(
            p.attributes,
            vec![Attribute::VendorSpecific(VendorSpecific::Other {
                vendor: 311,
                data: vec![0xde, 0xad]
            })]
        );
        assert_eq!(p.encode().unwrap(), bytes);
    }

    fn every_attribute() -> Vec<Attribute> {
        vec![
            Attribute::UserName("alice@corp.example".into()),
            Attribute::UserPassword(vec![1; 16]),
            Attribute::NasIpAddress(Ipv4Addr::new(198, 18, 1, 1)),
            Attribute::ServiceType(ServiceType::AuthorizeOnly),
            Attribute::FramedIpAddress(Ipv4Addr::new(198, 18, 100, 10)),
            Attribute::FilterId("ACL-IN".into()),
            Attribute::ReplyMessage("hello".into()),
            Attribute::State(vec![1, 2, 3]),
            Attribute::Class(b"OU=GP;".to_vec()),
            Attribute::cisco_av_pair("cts:security-group-tag=000a-00"),
            Attribute::asa(AsaAttribute::SimultaneousLogins(3)),
            Attribute::asa(AsaAttribute::GroupPolicy("GP".into())),
            Attribute::asa(AsaAttribute::TunnelGroupName("TG".into())),
            Attribute::asa(AsaAttribute::ClientType(2)),
            Attribute::asa(AsaAttribute::Other {
                typ: 77,
                value: vec![9],
            }),
            Attribute::SessionTimeout(3600),
            Attribute::IdleTimeout(600),
            Attribute::CalledStationId("198.18.0.1".into()),
            Attribute::CallingStationId("198.18.0.2".into()),
            Attribute::NasIdentifier("vpn-gw".into()),
            Attribute::AcctStatusType(AcctStatusType::InterimUpdate),
            Attribute::AcctDelayTime(2),
            Attribute::AcctInputOctets(10),
            Attribute::AcctOutputOctets(11),
            Attribute::AcctSessionId("A1B2".into()),
            Attribute::AcctSessionTime(60),
            Attribute::AcctInputPackets(12),
            Attribute::AcctOutputPackets(13),
            Attribute::AcctTerminateCause(TerminateCause::AdminReset),
            Attribute::AcctInputGigawords(1),
            Attribute::AcctOutputGigawords(2),
            Attribute::EventTimestamp(1_700_000_000),
            Attribute::NasPortType(NasPortType::Virtual),
            Attribute::MessageAuthenticator([5; 16]),
            Attribute::ErrorCause(ErrorCause::SessionContextNotFound),
            Attribute::AcctTerminateCause(TerminateCause::Unknown(999)),
            Attribute::Other {
                typ: 33,
                value: b"proxy".to_vec(),
            },
        ]
    }

    #[test]
    fn every_attribute_round_trips() {
        let mut p = Packet::new(Code::AccessAccept, 9, [3; 16]);
        p.attributes = every_attribute();
        let bytes = p.encode().unwrap();
        assert_eq!(Packet::decode(&bytes).unwrap(), p);
        // Wire check of one VSA: vendor 3076, type 146, length 4, "TG".
        let tg = [26, 10, 0, 0, 0x0c, 0x04, 146, 4, b'T', b'G'];
        assert!(bytes.windows(tg.len()).any(|w| w == tg));
    }

    #[test]
    fn encode_limits() {
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.attributes.push(Attribute::Class(vec![0; 253]));
        assert!(p.encode().is_ok());
        p.attributes.push(Attribute::Class(vec![0; 254]));
        assert_eq!(
            p.encode(),
            Err(EncodeError::AttributeTooLong { typ: 25, len: 256 })
        );
        // A VSA whose data fits 253 octets only without the 6-octet VSA header.
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.attributes.push(Attribute::cisco_av_pair("x".repeat(248)));
        assert!(matches!(
            p.encode(),
            Err(EncodeError::AttributeTooLong { typ: 26, .. })
        ));
        p.attributes = vec![Attribute::cisco_av_pair("x".repeat(247))];
        assert_eq!(p.encode().unwrap().len(), 20 + 255);
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.attributes = vec![Attribute::Class(vec![0; 253]); 17];
        assert!(matches!(p.encode(), Err(EncodeError::PacketTooLong(_))));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..20_000 {
            let len = rng.random_range(0..300);
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            if len >= 4 && rng.random_bool(0.8) {
                bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                if len > 20 && rng.random_bool(0.5) {
                    bytes[20] = 26;
                    if len > 25 {
                        bytes[22..26].copy_from_slice(&[0, 0, 0, 9]);
                    }
                }
            }
            if let Ok(p) = Packet::decode(&bytes)
                && let Ok(again) = p.encode()
            {
                assert_eq!(Packet::decode(&again).unwrap(), p);
            }
        }
    }

    #[test]
    fn framed_ipv6_address_round_trips_and_checks_its_length() {
        let a = Attribute::FramedIpv6Address("fd00:100::10".parse().unwrap());
        let p = Packet {
            code: Code::AccountingRequest,
            identifier: 1,
            authenticator: [0; 16],
            attributes: vec![a.clone()],
        };
        let bytes = p.encode().unwrap();
        assert_eq!(&bytes[20..22], &[168, 18]);
        assert_eq!(Packet::decode(&bytes).unwrap().attributes, vec![a]);
        let mut short = bytes.clone();
        short[21] = 17;
        short.truncate(37);
        short[2..4].copy_from_slice(&37u16.to_be_bytes());
        assert!(Packet::decode(&short).is_err());
    }
}

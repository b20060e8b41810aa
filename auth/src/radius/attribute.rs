//! Typed RADIUS attributes (RFC 2865 section 5, RFC 2866 section 5, RFC 2869,
//! RFC 3579, RFC 5176) and the two vendor dictionaries the ISE dialect uses:
//! Cisco (9) and Cisco ASA / VPN 3000 (3076).
//!
//! A known attribute whose value has the wrong size or is not UTF-8 text is a
//! decode error (the whole packet is malformed); an attribute or vendor
//! sub-attribute this module has no type for is kept raw and re-encodes to the
//! same octets.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::packet::{DecodeError, EncodeError, wire_enum};

/// Attribute type numbers.
pub mod types {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const SERVICE_TYPE: u8 = 6;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const FILTER_ID: u8 = 11;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const IDLE_TIMEOUT: u8 = 28;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_INPUT_PACKETS: u8 = 47;
    pub const ACCT_OUTPUT_PACKETS: u8 = 48;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const NAS_PORT_TYPE: u8 = 61;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const ERROR_CAUSE: u8 = 101;
    /// RFC 6911.
    pub const FRAMED_IPV6_ADDRESS: u8 = 168;
}

/// Vendor ids (IANA private enterprise numbers).
pub mod vendors {
    /// Cisco Systems: `Cisco-AVPair` is sub-attribute 1.
    pub const CISCO: u32 = 9;
    /// Cisco VPN 3000 / ASA (`dictionary.cisco.asa`).
    pub const ASA: u32 = 3076;
}

/// ASA (vendor 3076) sub-attribute numbers.
pub mod asa_types {
    pub const SIMULTANEOUS_LOGINS: u8 = 2;
    pub const GROUP_POLICY: u8 = 25;
    pub const TUNNEL_GROUP_NAME: u8 = 146;
    pub const CLIENT_TYPE: u8 = 150;
}

wire_enum! {
    /// Service-Type (RFC 2865 section 5.6; Authorize-Only from RFC 5176).
    ServiceType: u32 {
        Login = 1,
        Framed = 2,
        CallbackLogin = 3,
        CallbackFramed = 4,
        Outbound = 5,
        Administrative = 6,
        NasPrompt = 7,
        AuthenticateOnly = 8,
        CallbackNasPrompt = 9,
        CallCheck = 10,
        CallbackAdministrative = 11,
        AuthorizeOnly = 17,
    }
}

wire_enum! {
    /// NAS-Port-Type (RFC 2865 section 5.41).
    NasPortType: u32 {
        Async = 0,
        Sync = 1,
        IsdnSync = 2,
        IsdnAsyncV120 = 3,
        IsdnAsyncV110 = 4,
        Virtual = 5,
        Ethernet = 15,
        Wireless80211 = 19,
    }
}

wire_enum! {
    /// Acct-Status-Type (RFC 2866 section 5.1, RFC 2869 section 5.1).
    AcctStatusType: u32 {
        Start = 1,
        Stop = 2,
        InterimUpdate = 3,
        AccountingOn = 7,
        AccountingOff = 8,
    }
}

wire_enum! {
    /// Acct-Terminate-Cause (RFC 2866 section 5.10).
    TerminateCause: u32 {
        UserRequest = 1,
        LostCarrier = 2,
        LostService = 3,
        IdleTimeout = 4,
        SessionTimeout = 5,
        AdminReset = 6,
        AdminReboot = 7,
        PortError = 8,
        NasError = 9,
        NasRequest = 10,
        NasReboot = 11,
        PortUnneeded = 12,
        PortPreempted = 13,
        PortSuspended = 14,
        ServiceUnavailable = 15,
        Callback = 16,
        UserError = 17,
        HostRequest = 18,
    }
}

wire_enum! {
    /// Error-Cause (RFC 5176 section 3.5).
    ErrorCause: u32 {
        ResidualSessionContextRemoved = 201,
        InvalidEapPacket = 202,
        UnsupportedAttribute = 401,
        MissingAttribute = 402,
        NasIdentificationMismatch = 403,
        InvalidRequest = 404,
        UnsupportedService = 405,
        UnsupportedExtension = 406,
        InvalidAttributeValue = 407,
        AdministrativelyProhibited = 501,
        RequestNotRoutable = 502,
        SessionContextNotFound = 503,
        SessionContextNotRemovable = 504,
        OtherProxyProcessingError = 505,
        ResourcesUnavailable = 506,
        RequestInitiated = 507,
        MultipleSessionSelectionUnsupported = 508,
    }
}

/// Cisco (vendor 9) sub-attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiscoAttribute {
    /// `Cisco-AVPair` (1): `protocol:attribute=value` (or `*value` when optional).
    AvPair(String),
    Other {
        typ: u8,
        value: Vec<u8>,
    },
}

/// Cisco ASA (vendor 3076) sub-attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsaAttribute {
    /// `ASA-Simultaneous-Logins` (2).
    SimultaneousLogins(u32),
    /// `ASA-Group-Policy` (25).
    GroupPolicy(String),
    /// `ASA-TunnelGroupName` (146).
    TunnelGroupName(String),
    /// `ASA-ClientType` (150); 2 = AnyConnect-Client-SSL-VPN.
    ClientType(u32),
    Other {
        typ: u8,
        value: Vec<u8>,
    },
}

/// ASA-ClientType value for an AnyConnect SSL VPN client.
pub const ASA_CLIENT_TYPE_ANYCONNECT_SSL: u32 = 2;

/// One vendor sub-attribute. A Vendor-Specific attribute that packs several
/// sub-attributes (allowed by RFC 2865 section 5.26) decodes into one
/// [`Attribute::VendorSpecific`] per sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorSpecific {
    Cisco(CiscoAttribute),
    Asa(AsaAttribute),
    /// A vendor whose sub-attribute format is not known here: the octets after
    /// the vendor id, as received.
    Other {
        vendor: u32,
        data: Vec<u8>,
    },
}

/// A typed attribute.
#[derive(Clone, PartialEq, Eq)]
pub enum Attribute {
    UserName(String),
    /// The hidden (encrypted, RFC 2865 section 5.2) octets as on the wire; see
    /// [`super::crypto::hide_password`] / [`super::crypto::reveal_password`].
    UserPassword(Vec<u8>),
    NasIpAddress(Ipv4Addr),
    ServiceType(ServiceType),
    FramedIpAddress(Ipv4Addr),
    FilterId(String),
    ReplyMessage(String),
    State(Vec<u8>),
    Class(Vec<u8>),
    VendorSpecific(VendorSpecific),
    SessionTimeout(u32),
    IdleTimeout(u32),
    CalledStationId(String),
    CallingStationId(String),
    NasIdentifier(String),
    AcctStatusType(AcctStatusType),
    AcctDelayTime(u32),
    AcctInputOctets(u32),
    AcctOutputOctets(u32),
    AcctSessionId(String),
    AcctSessionTime(u32),
    AcctInputPackets(u32),
    AcctOutputPackets(u32),
    AcctTerminateCause(TerminateCause),
    AcctInputGigawords(u32),
    AcctOutputGigawords(u32),
    /// Seconds since the Unix epoch.
    EventTimestamp(u32),
    NasPortType(NasPortType),
    MessageAuthenticator([u8; 16]),
    ErrorCause(ErrorCause),
    /// RFC 6911: the IPv6 address assigned to the user.
    FramedIpv6Address(Ipv6Addr),
    /// Any other attribute, kept as received.
    Other {
        typ: u8,
        value: Vec<u8>,
    },
}

impl std::fmt::Debug for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Hidden, but still derived from the password: keep it out of logs.
            Attribute::UserPassword(v) => write!(f, "UserPassword(<{} octets>)", v.len()),
            Attribute::UserName(v) => f.debug_tuple("UserName").field(v).finish(),
            Attribute::NasIpAddress(v) => f.debug_tuple("NasIpAddress").field(v).finish(),
            Attribute::ServiceType(v) => f.debug_tuple("ServiceType").field(v).finish(),
            Attribute::FramedIpAddress(v) => f.debug_tuple("FramedIpAddress").field(v).finish(),
            Attribute::FilterId(v) => f.debug_tuple("FilterId").field(v).finish(),
            Attribute::ReplyMessage(v) => f.debug_tuple("ReplyMessage").field(v).finish(),
            Attribute::State(v) => f.debug_tuple("State").field(v).finish(),
            Attribute::Class(v) => f
                .debug_tuple("Class")
                .field(&String::from_utf8_lossy(v))
                .finish(),
            Attribute::VendorSpecific(v) => f.debug_tuple("VendorSpecific").field(v).finish(),
            Attribute::SessionTimeout(v) => f.debug_tuple("SessionTimeout").field(v).finish(),
            Attribute::IdleTimeout(v) => f.debug_tuple("IdleTimeout").field(v).finish(),
            Attribute::CalledStationId(v) => f.debug_tuple("CalledStationId").field(v).finish(),
            Attribute::CallingStationId(v) => f.debug_tuple("CallingStationId").field(v).finish(),
            Attribute::NasIdentifier(v) => f.debug_tuple("NasIdentifier").field(v).finish(),
            Attribute::AcctStatusType(v) => f.debug_tuple("AcctStatusType").field(v).finish(),
            Attribute::AcctDelayTime(v) => f.debug_tuple("AcctDelayTime").field(v).finish(),
            Attribute::AcctInputOctets(v) => f.debug_tuple("AcctInputOctets").field(v).finish(),
            Attribute::AcctOutputOctets(v) => f.debug_tuple("AcctOutputOctets").field(v).finish(),
            Attribute::AcctSessionId(v) => f.debug_tuple("AcctSessionId").field(v).finish(),
            Attribute::AcctSessionTime(v) => f.debug_tuple("AcctSessionTime").field(v).finish(),
            Attribute::AcctInputPackets(v) => f.debug_tuple("AcctInputPackets").field(v).finish(),
            Attribute::AcctOutputPackets(v) => f.debug_tuple("AcctOutputPackets").field(v).finish(),
            Attribute::AcctTerminateCause(v) => {
                f.debug_tuple("AcctTerminateCause").field(v).finish()
            }
            Attribute::AcctInputGigawords(v) => {
                f.debug_tuple("AcctInputGigawords").field(v).finish()
            }
            Attribute::AcctOutputGigawords(v) => {
                f.debug_tuple("AcctOutputGigawords").field(v).finish()
            }
            Attribute::EventTimestamp(v) => f.debug_tuple("EventTimestamp").field(v).finish(),
            Attribute::FramedIpv6Address(v) => f.debug_tuple("FramedIpv6Address").field(v).finish(),
            Attribute::NasPortType(v) => f.debug_tuple("NasPortType").field(v).finish(),
            Attribute::MessageAuthenticator(v) => {
                f.debug_tuple("MessageAuthenticator").field(v).finish()
            }
            Attribute::ErrorCause(v) => f.debug_tuple("ErrorCause").field(v).finish(),
            Attribute::Other { typ, value } => f
                .debug_struct("Other")
                .field("typ", typ)
                .field("value", value)
                .finish(),
        }
    }
}

fn text(typ: u8, value: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(value.to_vec()).map_err(|_| DecodeError::InvalidText { typ })
}

fn integer(typ: u8, value: &[u8]) -> Result<u32, DecodeError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| DecodeError::ValueLength {
        typ,
        len: value.len(),
        expected: "4 (integer)",
    })?;
    Ok(u32::from_be_bytes(bytes))
}

fn ipv4(typ: u8, value: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| DecodeError::ValueLength {
        typ,
        len: value.len(),
        expected: "4 (IPv4 address)",
    })?;
    Ok(Ipv4Addr::from(bytes))
}

fn vsa_text(vendor: u32, typ: u8, value: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(value.to_vec()).map_err(|_| DecodeError::VsaInvalidText { vendor, typ })
}

fn vsa_integer(vendor: u32, typ: u8, value: &[u8]) -> Result<u32, DecodeError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| DecodeError::VsaValueLength {
        vendor,
        typ,
        len: value.len(),
        expected: "4 (integer)",
    })?;
    Ok(u32::from_be_bytes(bytes))
}

/// Splits the sub-attributes of a vendor using the RFC 2865 section 5.26
/// suggested format (1-octet type, 1-octet length), which Cisco and ASA use.
fn vendor_sub_attributes(vendor: u32, mut data: &[u8]) -> Result<Vec<(u8, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    if data.is_empty() {
        // A vendor id with no sub-attribute at all is not a Cisco/ASA VSA.
        return Err(DecodeError::VsaSubAttributeTruncated { vendor });
    }
    while !data.is_empty() {
        let [typ, length, ..] = *data else {
            return Err(DecodeError::VsaSubAttributeTruncated { vendor });
        };
        let len = usize::from(length);
        if len < 2 || len > data.len() {
            return Err(DecodeError::VsaSubAttributeLength {
                vendor,
                typ,
                length,
            });
        }
        out.push((typ, &data[2..len]));
        data = &data[len..];
    }
    Ok(out)
}

impl Attribute {
    /// The attribute type octet.
    pub fn type_code(&self) -> u8 {
        use types::*;
        match self {
            Attribute::UserName(_) => USER_NAME,
            Attribute::UserPassword(_) => USER_PASSWORD,
            Attribute::NasIpAddress(_) => NAS_IP_ADDRESS,
            Attribute::ServiceType(_) => SERVICE_TYPE,
            Attribute::FramedIpAddress(_) => FRAMED_IP_ADDRESS,
            Attribute::FilterId(_) => FILTER_ID,
            Attribute::ReplyMessage(_) => REPLY_MESSAGE,
            Attribute::State(_) => STATE,
            Attribute::Class(_) => CLASS,
            Attribute::VendorSpecific(_) => VENDOR_SPECIFIC,
            Attribute::SessionTimeout(_) => SESSION_TIMEOUT,
            Attribute::IdleTimeout(_) => IDLE_TIMEOUT,
            Attribute::CalledStationId(_) => CALLED_STATION_ID,
            Attribute::CallingStationId(_) => CALLING_STATION_ID,
            Attribute::NasIdentifier(_) => NAS_IDENTIFIER,
            Attribute::AcctStatusType(_) => ACCT_STATUS_TYPE,
            Attribute::AcctDelayTime(_) => ACCT_DELAY_TIME,
            Attribute::AcctInputOctets(_) => ACCT_INPUT_OCTETS,
            Attribute::AcctOutputOctets(_) => ACCT_OUTPUT_OCTETS,
            Attribute::AcctSessionId(_) => ACCT_SESSION_ID,
            Attribute::AcctSessionTime(_) => ACCT_SESSION_TIME,
            Attribute::AcctInputPackets(_) => ACCT_INPUT_PACKETS,
            Attribute::AcctOutputPackets(_) => ACCT_OUTPUT_PACKETS,
            Attribute::AcctTerminateCause(_) => ACCT_TERMINATE_CAUSE,
            Attribute::AcctInputGigawords(_) => ACCT_INPUT_GIGAWORDS,
            Attribute::AcctOutputGigawords(_) => ACCT_OUTPUT_GIGAWORDS,
            Attribute::EventTimestamp(_) => EVENT_TIMESTAMP,
            Attribute::NasPortType(_) => NAS_PORT_TYPE,
            Attribute::MessageAuthenticator(_) => MESSAGE_AUTHENTICATOR,
            Attribute::ErrorCause(_) => ERROR_CAUSE,
            Attribute::FramedIpv6Address(_) => FRAMED_IPV6_ADDRESS,
            Attribute::Other { typ, .. } => *typ,
        }
    }

    /// `Cisco-AVPair` from a `key=value` string.
    pub fn cisco_av_pair(pair: impl Into<String>) -> Attribute {
        Attribute::VendorSpecific(VendorSpecific::Cisco(CiscoAttribute::AvPair(pair.into())))
    }

    /// An ASA (vendor 3076) sub-attribute.
    pub fn asa(attribute: AsaAttribute) -> Attribute {
        Attribute::VendorSpecific(VendorSpecific::Asa(attribute))
    }

    /// The text of a `Cisco-AVPair`, if this is one.
    pub fn as_cisco_av_pair(&self) -> Option<&str> {
        match self {
            Attribute::VendorSpecific(VendorSpecific::Cisco(CiscoAttribute::AvPair(s))) => Some(s),
            _ => None,
        }
    }

    /// Decodes one wire attribute, pushing one or more typed attributes
    /// (several for a Vendor-Specific that packs several sub-attributes).
    pub(crate) fn decode_into(
        typ: u8,
        value: &[u8],
        out: &mut Vec<Attribute>,
    ) -> Result<(), DecodeError> {
        use types::*;
        let attribute = match typ {
            USER_NAME => Attribute::UserName(text(typ, value)?),
            USER_PASSWORD => Attribute::UserPassword(value.to_vec()),
            NAS_IP_ADDRESS => Attribute::NasIpAddress(ipv4(typ, value)?),
            SERVICE_TYPE => Attribute::ServiceType(integer(typ, value)?.into()),
            FRAMED_IP_ADDRESS => Attribute::FramedIpAddress(ipv4(typ, value)?),
            FILTER_ID => Attribute::FilterId(text(typ, value)?),
            REPLY_MESSAGE => Attribute::ReplyMessage(text(typ, value)?),
            STATE => Attribute::State(value.to_vec()),
            CLASS => Attribute::Class(value.to_vec()),
            VENDOR_SPECIFIC => return decode_vsa(value, out),
            SESSION_TIMEOUT => Attribute::SessionTimeout(integer(typ, value)?),
            IDLE_TIMEOUT => Attribute::IdleTimeout(integer(typ, value)?),
            CALLED_STATION_ID => Attribute::CalledStationId(text(typ, value)?),
            CALLING_STATION_ID => Attribute::CallingStationId(text(typ, value)?),
            NAS_IDENTIFIER => Attribute::NasIdentifier(text(typ, value)?),
            ACCT_STATUS_TYPE => Attribute::AcctStatusType(integer(typ, value)?.into()),
            ACCT_DELAY_TIME => Attribute::AcctDelayTime(integer(typ, value)?),
            ACCT_INPUT_OCTETS => Attribute::AcctInputOctets(integer(typ, value)?),
            ACCT_OUTPUT_OCTETS => Attribute::AcctOutputOctets(integer(typ, value)?),
            ACCT_SESSION_ID => Attribute::AcctSessionId(text(typ, value)?),
            ACCT_SESSION_TIME => Attribute::AcctSessionTime(integer(typ, value)?),
            ACCT_INPUT_PACKETS => Attribute::AcctInputPackets(integer(typ, value)?),
            ACCT_OUTPUT_PACKETS => Attribute::AcctOutputPackets(integer(typ, value)?),
            ACCT_TERMINATE_CAUSE => Attribute::AcctTerminateCause(integer(typ, value)?.into()),
            ACCT_INPUT_GIGAWORDS => Attribute::AcctInputGigawords(integer(typ, value)?),
            ACCT_OUTPUT_GIGAWORDS => Attribute::AcctOutputGigawords(integer(typ, value)?),
            EVENT_TIMESTAMP => Attribute::EventTimestamp(integer(typ, value)?),
            FRAMED_IPV6_ADDRESS => {
                let bytes: [u8; 16] = value.try_into().map_err(|_| DecodeError::ValueLength {
                    typ,
                    len: value.len(),
                    expected: "16 (IPv6 address)",
                })?;
                Attribute::FramedIpv6Address(Ipv6Addr::from(bytes))
            }
            NAS_PORT_TYPE => Attribute::NasPortType(integer(typ, value)?.into()),
            MESSAGE_AUTHENTICATOR => {
                let bytes: [u8; 16] = value.try_into().map_err(|_| DecodeError::ValueLength {
                    typ,
                    len: value.len(),
                    expected: "16 (Message-Authenticator)",
                })?;
                Attribute::MessageAuthenticator(bytes)
            }
            ERROR_CAUSE => Attribute::ErrorCause(integer(typ, value)?.into()),
            _ => Attribute::Other {
                typ,
                value: value.to_vec(),
            },
        };
        out.push(attribute);
        Ok(())
    }

    /// Appends type, length and value.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let typ = self.type_code();
        out.push(typ);
        out.push(0);
        self.encode_value(out);
        let len = out.len() - start;
        match u8::try_from(len) {
            Ok(len8) => {
                out[start + 1] = len8;
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(EncodeError::AttributeTooLong { typ, len })
            }
        }
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        let int = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_be_bytes());
        match self {
            Attribute::UserName(s)
            | Attribute::FilterId(s)
            | Attribute::ReplyMessage(s)
            | Attribute::CalledStationId(s)
            | Attribute::CallingStationId(s)
            | Attribute::NasIdentifier(s)
            | Attribute::AcctSessionId(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::UserPassword(v)
            | Attribute::State(v)
            | Attribute::Class(v)
            | Attribute::Other { value: v, .. } => out.extend_from_slice(v),
            Attribute::NasIpAddress(a) | Attribute::FramedIpAddress(a) => {
                out.extend_from_slice(&a.octets())
            }
            Attribute::FramedIpv6Address(a) => out.extend_from_slice(&a.octets()),
            Attribute::ServiceType(v) => int(out, (*v).into()),
            Attribute::NasPortType(v) => int(out, (*v).into()),
            Attribute::AcctStatusType(v) => int(out, (*v).into()),
            Attribute::AcctTerminateCause(v) => int(out, (*v).into()),
            Attribute::ErrorCause(v) => int(out, (*v).into()),
            Attribute::SessionTimeout(v)
            | Attribute::IdleTimeout(v)
            | Attribute::AcctDelayTime(v)
            | Attribute::AcctInputOctets(v)
            | Attribute::AcctOutputOctets(v)
            | Attribute::AcctSessionTime(v)
            | Attribute::AcctInputPackets(v)
            | Attribute::AcctOutputPackets(v)
            | Attribute::AcctInputGigawords(v)
            | Attribute::AcctOutputGigawords(v)
            | Attribute::EventTimestamp(v) => int(out, *v),
            Attribute::MessageAuthenticator(m) => out.extend_from_slice(m),
            Attribute::VendorSpecific(vsa) => encode_vsa(vsa, out),
        }
    }
}

fn decode_vsa(value: &[u8], out: &mut Vec<Attribute>) -> Result<(), DecodeError> {
    let Some((vendor_bytes, data)) = value.split_first_chunk::<4>() else {
        return Err(DecodeError::VsaTooShort(value.len()));
    };
    let vendor = u32::from_be_bytes(*vendor_bytes);
    if vendor_bytes[0] != 0 {
        // RFC 2865 section 5.26: the high-order octet is 0.
        return Err(DecodeError::VsaBadVendorId { vendor });
    }
    match vendor {
        vendors::CISCO => {
            for (typ, v) in vendor_sub_attributes(vendor, data)? {
                let attribute = match typ {
                    1 => CiscoAttribute::AvPair(vsa_text(vendor, typ, v)?),
                    _ => CiscoAttribute::Other {
                        typ,
                        value: v.to_vec(),
                    },
                };
                out.push(Attribute::VendorSpecific(VendorSpecific::Cisco(attribute)));
            }
        }
        vendors::ASA => {
            for (typ, v) in vendor_sub_attributes(vendor, data)? {
                use asa_types::*;
                let attribute = match typ {
                    SIMULTANEOUS_LOGINS => {
                        AsaAttribute::SimultaneousLogins(vsa_integer(vendor, typ, v)?)
                    }
                    GROUP_POLICY => AsaAttribute::GroupPolicy(vsa_text(vendor, typ, v)?),
                    TUNNEL_GROUP_NAME => AsaAttribute::TunnelGroupName(vsa_text(vendor, typ, v)?),
                    CLIENT_TYPE => AsaAttribute::ClientType(vsa_integer(vendor, typ, v)?),
                    _ => AsaAttribute::Other {
                        typ,
                        value: v.to_vec(),
                    },
                };
                out.push(Attribute::VendorSpecific(VendorSpecific::Asa(attribute)));
            }
        }
        _ => out.push(Attribute::VendorSpecific(VendorSpecific::Other {
            vendor,
            data: data.to_vec(),
        })),
    }
    Ok(())
}

fn encode_vsa(vsa: &VendorSpecific, out: &mut Vec<u8>) {
    // The outer length check in `encode_into` bounds the inner length too: the
    // sub-attribute is 6 octets shorter than the attribute, so when the
    // attribute fits 255 the sub-attribute does; when it does not, the
    // attribute is rejected and the wrapped inner length is never sent.
    let sub = |out: &mut Vec<u8>, vendor: u32, typ: u8, value: &[u8]| {
        out.extend_from_slice(&vendor.to_be_bytes());
        out.push(typ);
        out.push(u8::try_from(value.len() + 2).unwrap_or(u8::MAX));
        out.extend_from_slice(value);
    };
    match vsa {
        VendorSpecific::Cisco(CiscoAttribute::AvPair(s)) => {
            sub(out, vendors::CISCO, 1, s.as_bytes())
        }
        VendorSpecific::Cisco(CiscoAttribute::Other { typ, value }) => {
            sub(out, vendors::CISCO, *typ, value)
        }
        VendorSpecific::Asa(a) => {
            use asa_types::*;
            match a {
                AsaAttribute::SimultaneousLogins(v) => {
                    sub(out, vendors::ASA, SIMULTANEOUS_LOGINS, &v.to_be_bytes())
                }
                AsaAttribute::GroupPolicy(s) => sub(out, vendors::ASA, GROUP_POLICY, s.as_bytes()),
                AsaAttribute::TunnelGroupName(s) => {
                    sub(out, vendors::ASA, TUNNEL_GROUP_NAME, s.as_bytes())
                }
                AsaAttribute::ClientType(v) => {
                    sub(out, vendors::ASA, CLIENT_TYPE, &v.to_be_bytes())
                }
                AsaAttribute::Other { typ, value } => sub(out, vendors::ASA, *typ, value),
            }
        }
        VendorSpecific::Other { vendor, data } => {
            out.extend_from_slice(&vendor.to_be_bytes());
            out.extend_from_slice(data);
        }
    }
}

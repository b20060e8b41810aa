//! SXP attributes: the flags octet and the three header forms
//! (draft-smith-kandula-sxp section 4.3), the OPEN attributes NODE-ID,
//! CAPABILITIES and HOLD-TIME (section 4.4), the v4 UPDATE attributes (prefix
//! lists, PEER-SEQUENCE, SGT; section 4.5) and the legacy v1-v3 UPDATE
//! attributes ADD/DEL-IPv4/IPv6 with their inner SGT / PREFIX-LEN TLVs.
//!
//! Header forms, chosen by the flags octet (section 4.3; the non-compact form
//! is not drawn in the draft, its layout here is what sxpd and the recorded
//! legacy UPDATEs use):
//! - compact: flags (1), type (1), length (1), value
//! - compact, extended length: flags (1), type (1), length (2), value
//! - non-compact: flags (1), type (3), length (4), value. Legacy attributes
//!   are non-compact with a zero flags octet, i.e. a plain u32 type.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::message::{DecodeError, EncodeError};
use super::wire::{Reader, wire_enum};

/// HOLD-TIME value meaning "keepalives are not used" (section 4.4.2).
pub const HOLD_TIME_UNUSED: u16 = 0xFFFF;
/// Smallest hold time other than 0 and [`HOLD_TIME_UNUSED`] a peer may ask for
/// (section 4.4.2; sxpd's `HOLD_TIME_MINIMUM_MINIMUM`).
pub const HOLD_TIME_MINIMUM: u16 = 3;

/// An SXP node identifier (NODE-ID attribute, PEER-SEQUENCE entries): 32 bits,
/// conventionally an IPv4 address of the node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub u32);

impl From<Ipv4Addr> for NodeId {
    fn from(addr: Ipv4Addr) -> Self {
        Self(u32::from(addr))
    }
}

impl From<NodeId> for Ipv4Addr {
    fn from(id: NodeId) -> Self {
        Ipv4Addr::from(id.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ipv4Addr::from(*self).fmt(f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A Security Group Tag (16 bits on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sgt(pub u16);

impl fmt::Display for Sgt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why an address and length are not a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix length {len} exceeds {max} for {addr}")]
    TooLong { addr: IpAddr, len: u8, max: u8 },
    #[error("cannot parse {0:?} as ADDRESS[/LEN]")]
    Parse(String),
}

/// An IPv4 or IPv6 prefix. Host bits are always zero: constructors mask them,
/// so two spellings of one network compare equal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// `addr/len` with host bits cleared; `len` may not exceed 32 (IPv4) or
    /// 128 (IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::TooLong { addr, len, max });
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(u32::from(32 - len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(u32::from(128 - len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Ok(Self { addr, len })
    }

    /// The /32 or /128 of one address.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            len: max_len(addr),
        }
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn is_host(&self) -> bool {
        self.len == max_len(self.addr)
    }

    /// Whether `ip` lies inside this prefix (an IPv4 prefix never contains an
    /// IPv6 address and vice versa).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        Prefix::new(ip, self.len).is_ok_and(|p| p.addr == self.addr)
    }

    /// The significant octets: ceil(len / 8) of them (section 4.5.1 prefix
    /// encoding).
    fn significant_octets(&self) -> Vec<u8> {
        let n = usize::from(self.len).div_ceil(8);
        let octets = match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        octets.into_iter().take(n).collect()
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({self})")
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `198.18.2.0/29`, `2001:db8::/32`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse_err = || PrefixError::Parse(s.to_string());
        match s.split_once('/') {
            Some((addr, len)) => {
                let addr: IpAddr = addr.parse().map_err(|_| parse_err())?;
                let len: u8 = len.parse().map_err(|_| parse_err())?;
                Prefix::new(addr, len)
            }
            None => Ok(Prefix::host(s.parse().map_err(|_| parse_err())?)),
        }
    }
}

/// The attribute flags octet (section 4.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AttributeFlags(pub u8);

impl AttributeFlags {
    pub const OPTIONAL: u8 = 0x80;
    pub const NON_TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const COMPACT: u8 = 0x10;
    pub const EXTENDED_LENGTH: u8 = 0x08;

    /// Legacy (v1-v3) attributes: non-compact, no flags.
    pub const LEGACY: Self = Self(0);
    /// What sxpd puts on v4 UPDATE attributes (PEER-SEQUENCE, SGT, prefix lists).
    pub const WELL_KNOWN_COMPACT: Self = Self(Self::COMPACT);
    /// What sxpd and OpenDaylight put on NODE-ID, CAPABILITIES and HOLD-TIME.
    pub const NON_TRANSITIVE_COMPACT: Self = Self(Self::NON_TRANSITIVE | Self::COMPACT);

    pub fn optional(self) -> bool {
        self.0 & Self::OPTIONAL != 0
    }
    pub fn non_transitive(self) -> bool {
        self.0 & Self::NON_TRANSITIVE != 0
    }
    pub fn partial(self) -> bool {
        self.0 & Self::PARTIAL != 0
    }
    pub fn compact(self) -> bool {
        self.0 & Self::COMPACT != 0
    }
    /// Only meaningful with [`Self::compact`]: a 2-octet length field.
    pub fn extended_length(self) -> bool {
        self.0 & Self::EXTENDED_LENGTH != 0
    }
}

impl fmt::Debug for AttributeFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::OPTIONAL, 'O'),
            (Self::NON_TRANSITIVE, 'N'),
            (Self::PARTIAL, 'P'),
            (Self::COMPACT, 'C'),
            (Self::EXTENDED_LENGTH, 'E'),
        ];
        let set: String = names
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, c)| *c)
            .collect();
        write!(f, "AttributeFlags({:#04x} {set})", self.0)
    }
}

wire_enum! {
    /// Attribute type (section 4.3 table; 1-4 are the legacy UPDATE attributes).
    AttributeType: u32 {
        AddIpv4 = 1,
        AddIpv6 = 2,
        DelIpv4 = 3,
        DelIpv6 = 4,
        NodeId = 5,
        Capabilities = 6,
        HoldTime = 7,
        Ipv4AddPrefix = 11,
        Ipv6AddPrefix = 12,
        Ipv4DelPrefix = 13,
        Ipv6DelPrefix = 14,
        PeerSequence = 16,
        Sgt = 17,
    }
}

impl AttributeType {
    /// The v1-v3 binding attributes.
    pub fn is_legacy(self) -> bool {
        matches!(
            self,
            Self::AddIpv4 | Self::AddIpv6 | Self::DelIpv4 | Self::DelIpv6
        )
    }
}

wire_enum! {
    /// Capability code inside CAPABILITIES (section 4.4.1).
    CapabilityCode: u8 {
        Ipv4Unicast = 1,
        Ipv6Unicast = 2,
        SubnetBindings = 3,
    }
}

/// One capability: code (1), length (1), value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub code: CapabilityCode,
    pub value: Vec<u8>,
}

impl Capability {
    pub fn new(code: CapabilityCode) -> Self {
        Self {
            code,
            value: Vec::new(),
        }
    }
}

/// HOLD-TIME (section 4.4.2): a speaker sends its minimum only, a listener
/// its acceptable range. `min == HOLD_TIME_UNUSED` turns keepalives off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTime {
    pub min: u16,
    pub max: Option<u16>,
}

impl HoldTime {
    pub fn is_unused(&self) -> bool {
        self.min == HOLD_TIME_UNUSED
    }
}

wire_enum! {
    /// Inner TLV type of the legacy binding attributes.
    LegacyTlvType: u32 {
        Sgt = 1,
        PrefixLength = 2,
    }
}

/// An inner TLV of a legacy binding attribute: u32 type, u32 length, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyTlv {
    Sgt(Sgt),
    PrefixLength(u8),
    Unknown { typ: u32, value: Vec<u8> },
}

/// The value of ADD-IPv4 / ADD-IPv6 / DEL-IPv4 / DEL-IPv6: the address
/// (4 or 16 octets) then TLVs. An add carries an SGT TLV; PREFIX-LEN is
/// present only for subnets (v3), a missing one means a host binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyBinding {
    pub addr: IpAddr,
    pub tlvs: Vec<LegacyTlv>,
}

impl LegacyBinding {
    /// A host or subnet binding as sxpd writes it: PREFIX-LEN only for a
    /// subnet, then the SGT for an add.
    pub fn new(prefix: Prefix, sgt: Option<Sgt>) -> Self {
        let mut tlvs = Vec::new();
        if !prefix.is_host() {
            tlvs.push(LegacyTlv::PrefixLength(prefix.prefix_len()));
        }
        if let Some(sgt) = sgt {
            tlvs.push(LegacyTlv::Sgt(sgt));
        }
        Self {
            addr: prefix.addr(),
            tlvs,
        }
    }

    /// Every SGT TLV (an add must carry exactly one).
    pub fn sgts(&self) -> impl Iterator<Item = Sgt> + '_ {
        self.tlvs.iter().filter_map(|t| match t {
            LegacyTlv::Sgt(s) => Some(*s),
            _ => None,
        })
    }

    /// Every PREFIX-LEN TLV (at most one is legal).
    pub fn prefix_lengths(&self) -> impl Iterator<Item = u8> + '_ {
        self.tlvs.iter().filter_map(|t| match t {
            LegacyTlv::PrefixLength(l) => Some(*l),
            _ => None,
        })
    }

    /// The bound prefix: the first PREFIX-LEN, else a host prefix.
    pub fn prefix(&self) -> Result<Prefix, PrefixError> {
        match self.prefix_lengths().next() {
            Some(len) => Prefix::new(self.addr, len),
            None => Ok(Prefix::host(self.addr)),
        }
    }
}

/// A decoded attribute value. Values this implementation does not know are
/// kept as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    AddIpv4(LegacyBinding),
    AddIpv6(LegacyBinding),
    DelIpv4(LegacyBinding),
    DelIpv6(LegacyBinding),
    NodeId(NodeId),
    Capabilities(Vec<Capability>),
    HoldTime(HoldTime),
    Ipv4AddPrefix(Vec<Prefix>),
    Ipv6AddPrefix(Vec<Prefix>),
    Ipv4DelPrefix(Vec<Prefix>),
    Ipv6DelPrefix(Vec<Prefix>),
    /// Node ids of the path, the sending speaker first (section 4.5.1).
    PeerSequence(Vec<NodeId>),
    Sgt(Sgt),
    Unknown {
        typ: u32,
        value: Vec<u8>,
    },
}

impl AttributeValue {
    pub fn typ(&self) -> AttributeType {
        match self {
            Self::AddIpv4(_) => AttributeType::AddIpv4,
            Self::AddIpv6(_) => AttributeType::AddIpv6,
            Self::DelIpv4(_) => AttributeType::DelIpv4,
            Self::DelIpv6(_) => AttributeType::DelIpv6,
            Self::NodeId(_) => AttributeType::NodeId,
            Self::Capabilities(_) => AttributeType::Capabilities,
            Self::HoldTime(_) => AttributeType::HoldTime,
            Self::Ipv4AddPrefix(_) => AttributeType::Ipv4AddPrefix,
            Self::Ipv6AddPrefix(_) => AttributeType::Ipv6AddPrefix,
            Self::Ipv4DelPrefix(_) => AttributeType::Ipv4DelPrefix,
            Self::Ipv6DelPrefix(_) => AttributeType::Ipv6DelPrefix,
            Self::PeerSequence(_) => AttributeType::PeerSequence,
            Self::Sgt(_) => AttributeType::Sgt,
            Self::Unknown { typ, .. } => AttributeType::from(*typ),
        }
    }
}

/// One attribute: the flags octet as received (it also selects the header
/// form used to encode it again) and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub flags: AttributeFlags,
    pub value: AttributeValue,
}

impl Attribute {
    pub fn new(flags: AttributeFlags, value: AttributeValue) -> Self {
        Self { flags, value }
    }

    pub fn typ(&self) -> AttributeType {
        self.value.typ()
    }

    /// Appends the encoded attribute to `out`; on error `out` is unchanged.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let typ = u32::from(self.typ());
        let value = encode_value(&self.value)?;
        let too_large = |compact| EncodeError::AttributeTypeTooLarge { typ, compact };
        if self.flags.compact() {
            let typ = u8::try_from(typ).map_err(|_| too_large(true))?;
            let length = if self.flags.extended_length() {
                u16::try_from(value.len())
                    .map_err(|_| too_long(self, &value))?
                    .to_be_bytes()
                    .to_vec()
            } else {
                vec![u8::try_from(value.len()).map_err(|_| too_long(self, &value))?]
            };
            out.push(self.flags.0);
            out.push(typ);
            out.extend_from_slice(&length);
        } else {
            if typ > 0x00FF_FFFF {
                return Err(too_large(false));
            }
            let length = u32::try_from(value.len()).map_err(|_| too_long(self, &value))?;
            let word = (u32::from(self.flags.0) << 24) | typ;
            out.extend_from_slice(&word.to_be_bytes());
            out.extend_from_slice(&length.to_be_bytes());
        }
        out.extend_from_slice(&value);
        Ok(())
    }
}

fn too_long(attr: &Attribute, value: &[u8]) -> EncodeError {
    let max = if !attr.flags.compact() {
        u32::MAX as usize
    } else if attr.flags.extended_length() {
        usize::from(u16::MAX)
    } else {
        usize::from(u8::MAX)
    };
    EncodeError::AttributeTooLong {
        typ: attr.typ(),
        len: value.len(),
        max,
    }
}

/// Decodes attributes until `r` is exhausted (the attribute list runs to the
/// end of the message, section 4.3).
pub(crate) fn decode_attributes(r: &mut Reader<'_>) -> Result<Vec<Attribute>, DecodeError> {
    let mut attributes = Vec::new();
    while !r.is_empty() {
        attributes.push(decode_attribute(r)?);
    }
    Ok(attributes)
}

fn decode_attribute(r: &mut Reader<'_>) -> Result<Attribute, DecodeError> {
    let offset = r.offset();
    let truncated = || DecodeError::AttributeHeaderTruncated { offset };
    let flags = AttributeFlags(r.u8().ok_or_else(truncated)?);
    let (typ, length) = if flags.compact() {
        let typ = u32::from(r.u8().ok_or_else(truncated)?);
        let length = if flags.extended_length() {
            u32::from(r.u16().ok_or_else(truncated)?)
        } else {
            u32::from(r.u8().ok_or_else(truncated)?)
        };
        (typ, length)
    } else {
        let typ = r.u24().ok_or_else(truncated)?;
        (typ, r.u32().ok_or_else(truncated)?)
    };
    let available = r.remaining();
    let value = usize::try_from(length)
        .ok()
        .and_then(|len| r.take(len))
        .ok_or(DecodeError::AttributeOverflow {
            typ,
            offset,
            length,
            available,
        })?;
    let value = decode_value(AttributeType::from(typ), value, offset)?;
    Ok(Attribute { flags, value })
}

fn decode_value(
    typ: AttributeType,
    value: &[u8],
    offset: usize,
) -> Result<AttributeValue, DecodeError> {
    let length_err = |expected: &'static str| DecodeError::AttributeLength {
        typ,
        offset,
        len: value.len(),
        expected,
    };
    Ok(match typ {
        AttributeType::AddIpv4 => AttributeValue::AddIpv4(decode_legacy(typ, value, offset)?),
        AttributeType::AddIpv6 => AttributeValue::AddIpv6(decode_legacy(typ, value, offset)?),
        AttributeType::DelIpv4 => AttributeValue::DelIpv4(decode_legacy(typ, value, offset)?),
        AttributeType::DelIpv6 => AttributeValue::DelIpv6(decode_legacy(typ, value, offset)?),
        AttributeType::NodeId => {
            let id: [u8; 4] = value.try_into().map_err(|_| length_err("4"))?;
            AttributeValue::NodeId(NodeId(u32::from_be_bytes(id)))
        }
        AttributeType::Capabilities => {
            AttributeValue::Capabilities(decode_capabilities(value, offset)?)
        }
        AttributeType::HoldTime => {
            let mut r = Reader::new(value);
            let hold = match value.len() {
                2 => HoldTime {
                    min: r.u16().ok_or_else(|| length_err("2 or 4"))?,
                    max: None,
                },
                4 => HoldTime {
                    min: r.u16().ok_or_else(|| length_err("2 or 4"))?,
                    max: Some(r.u16().ok_or_else(|| length_err("2 or 4"))?),
                },
                _ => return Err(length_err("2 or 4")),
            };
            AttributeValue::HoldTime(hold)
        }
        AttributeType::Ipv4AddPrefix => {
            AttributeValue::Ipv4AddPrefix(decode_prefix_list(typ, value, offset, false)?)
        }
        AttributeType::Ipv6AddPrefix => {
            AttributeValue::Ipv6AddPrefix(decode_prefix_list(typ, value, offset, true)?)
        }
        AttributeType::Ipv4DelPrefix => {
            AttributeValue::Ipv4DelPrefix(decode_prefix_list(typ, value, offset, false)?)
        }
        AttributeType::Ipv6DelPrefix => {
            AttributeValue::Ipv6DelPrefix(decode_prefix_list(typ, value, offset, true)?)
        }
        AttributeType::PeerSequence => {
            if !value.len().is_multiple_of(4) {
                return Err(length_err("a multiple of 4"));
            }
            AttributeValue::PeerSequence(
                value
                    .chunks_exact(4)
                    .filter_map(|c| c.try_into().ok())
                    .map(|c: [u8; 4]| NodeId(u32::from_be_bytes(c)))
                    .collect(),
            )
        }
        AttributeType::Sgt => {
            let sgt: [u8; 2] = value.try_into().map_err(|_| length_err("2"))?;
            AttributeValue::Sgt(Sgt(u16::from_be_bytes(sgt)))
        }
        AttributeType::Unknown(typ) => AttributeValue::Unknown {
            typ,
            value: value.to_vec(),
        },
    })
}

fn decode_capabilities(value: &[u8], offset: usize) -> Result<Vec<Capability>, DecodeError> {
    let mut r = Reader::new(value);
    let mut caps = Vec::new();
    while !r.is_empty() {
        let err = DecodeError::CapabilityTruncated { offset };
        let code = CapabilityCode::from(r.u8().ok_or(err.clone())?);
        let len = r.u8().ok_or(err.clone())?;
        let value = r.take(usize::from(len)).ok_or(err)?;
        caps.push(Capability {
            code,
            value: value.to_vec(),
        });
    }
    Ok(caps)
}

/// A prefix list: repeated (length in bits, ceil(length / 8) octets).
fn decode_prefix_list(
    typ: AttributeType,
    value: &[u8],
    offset: usize,
    ipv6: bool,
) -> Result<Vec<Prefix>, DecodeError> {
    let max: u8 = if ipv6 { 128 } else { 32 };
    let mut r = Reader::new(value);
    let mut prefixes = Vec::new();
    while !r.is_empty() {
        let truncated = DecodeError::PrefixTruncated { typ, offset };
        let len = r.u8().ok_or(truncated.clone())?;
        if len > max {
            return Err(DecodeError::PrefixLength {
                typ,
                offset,
                len,
                max,
            });
        }
        let octets = r.take(usize::from(len).div_ceil(8)).ok_or(truncated)?;
        let addr = if ipv6 {
            let mut a = [0u8; 16];
            a.iter_mut().zip(octets).for_each(|(d, s)| *d = *s);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            let mut a = [0u8; 4];
            a.iter_mut().zip(octets).for_each(|(d, s)| *d = *s);
            IpAddr::V4(Ipv4Addr::from(a))
        };
        prefixes.push(
            Prefix::new(addr, len).map_err(|_| DecodeError::PrefixLength {
                typ,
                offset,
                len,
                max,
            })?,
        );
    }
    Ok(prefixes)
}

fn decode_legacy(
    typ: AttributeType,
    value: &[u8],
    offset: usize,
) -> Result<LegacyBinding, DecodeError> {
    let ipv6 = matches!(typ, AttributeType::AddIpv6 | AttributeType::DelIpv6);
    let mut r = Reader::new(value);
    let addr_err = || DecodeError::AttributeLength {
        typ,
        offset,
        len: value.len(),
        expected: if ipv6 {
            "at least 16 (the address)"
        } else {
            "at least 4 (the address)"
        },
    };
    let addr = if ipv6 {
        let a: [u8; 16] = r
            .take(16)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(addr_err)?;
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        let a: [u8; 4] = r
            .take(4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(addr_err)?;
        IpAddr::V4(Ipv4Addr::from(a))
    };
    let mut tlvs = Vec::new();
    while !r.is_empty() {
        let truncated = DecodeError::LegacyTlvTruncated { typ, offset };
        let tlv_type = r.u32().ok_or(truncated.clone())?;
        let len = r.u32().ok_or(truncated.clone())?;
        let tlv_value = usize::try_from(len)
            .ok()
            .and_then(|len| r.take(len))
            .ok_or(truncated)?;
        let length_err = |expected: &'static str| DecodeError::LegacyTlvLength {
            typ,
            offset,
            tlv: tlv_type,
            len: tlv_value.len(),
            expected,
        };
        tlvs.push(match LegacyTlvType::from(tlv_type) {
            LegacyTlvType::Sgt => {
                let sgt: [u8; 2] = tlv_value.try_into().map_err(|_| length_err("2"))?;
                LegacyTlv::Sgt(Sgt(u16::from_be_bytes(sgt)))
            }
            LegacyTlvType::PrefixLength => match tlv_value {
                [len] => LegacyTlv::PrefixLength(*len),
                _ => return Err(length_err("1")),
            },
            LegacyTlvType::Unknown(typ) => LegacyTlv::Unknown {
                typ,
                value: tlv_value.to_vec(),
            },
        });
    }
    Ok(LegacyBinding { addr, tlvs })
}

fn encode_value(value: &AttributeValue) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    match value {
        AttributeValue::AddIpv4(b)
        | AttributeValue::AddIpv6(b)
        | AttributeValue::DelIpv4(b)
        | AttributeValue::DelIpv6(b) => {
            let ipv6 = matches!(
                value,
                AttributeValue::AddIpv6(_) | AttributeValue::DelIpv6(_)
            );
            match (b.addr, ipv6) {
                (IpAddr::V4(a), false) => out.extend_from_slice(&a.octets()),
                (IpAddr::V6(a), true) => out.extend_from_slice(&a.octets()),
                _ => return Err(EncodeError::AddressFamily { typ: value.typ() }),
            }
            for tlv in &b.tlvs {
                let (typ, bytes) = match tlv {
                    LegacyTlv::Sgt(s) => {
                        (u32::from(LegacyTlvType::Sgt), s.0.to_be_bytes().to_vec())
                    }
                    LegacyTlv::PrefixLength(l) => {
                        (u32::from(LegacyTlvType::PrefixLength), vec![*l])
                    }
                    LegacyTlv::Unknown { typ, value } => (*typ, value.clone()),
                };
                let len =
                    u32::try_from(bytes.len()).map_err(|_| EncodeError::AttributeTooLong {
                        typ: value.typ(),
                        len: bytes.len(),
                        max: u32::MAX as usize,
                    })?;
                out.extend_from_slice(&typ.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        AttributeValue::NodeId(id) => out.extend_from_slice(&id.0.to_be_bytes()),
        AttributeValue::Capabilities(caps) => {
            for cap in caps {
                let len =
                    u8::try_from(cap.value.len()).map_err(|_| EncodeError::AttributeTooLong {
                        typ: AttributeType::Capabilities,
                        len: cap.value.len(),
                        max: usize::from(u8::MAX),
                    })?;
                out.push(u8::from(cap.code));
                out.push(len);
                out.extend_from_slice(&cap.value);
            }
        }
        AttributeValue::HoldTime(h) => {
            out.extend_from_slice(&h.min.to_be_bytes());
            if let Some(max) = h.max {
                out.extend_from_slice(&max.to_be_bytes());
            }
        }
        AttributeValue::Ipv4AddPrefix(list)
        | AttributeValue::Ipv6AddPrefix(list)
        | AttributeValue::Ipv4DelPrefix(list)
        | AttributeValue::Ipv6DelPrefix(list) => {
            let ipv6 = matches!(
                value,
                AttributeValue::Ipv6AddPrefix(_) | AttributeValue::Ipv6DelPrefix(_)
            );
            for prefix in list {
                if prefix.is_ipv4() == ipv6 {
                    return Err(EncodeError::AddressFamily { typ: value.typ() });
                }
                out.push(prefix.prefix_len());
                out.extend_from_slice(&prefix.significant_octets());
            }
        }
        AttributeValue::PeerSequence(ids) => {
            for id in ids {
                out.extend_from_slice(&id.0.to_be_bytes());
            }
        }
        AttributeValue::Sgt(s) => out.extend_from_slice(&s.0.to_be_bytes()),
        AttributeValue::Unknown { value, .. } => out.extend_from_slice(value),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().expect("test prefix")
    }

    #[test]
    fn prefix_masks_host_bits_and_parses() {
        assert_eq!(p("198.18.2.7/29"), p("198.18.2.0/29"));
        assert_eq!(p("198.18.2.0/29").to_string(), "198.18.2.0/29");
        assert_eq!(p("2001:db8::10").to_string(), "2001:db8::10/128");
        assert_eq!(p("0.0.0.0/0").prefix_len(), 0);
        assert!(p("10.1.0.0/16").contains("10.1.200.3".parse().expect("ip")));
        assert!(!p("10.1.0.0/16").contains("10.2.0.0".parse().expect("ip")));
        assert!(!p("10.1.0.0/16").contains("::1".parse().expect("ip")));
        assert!(matches!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::TooLong {
                len: 33,
                max: 32,
                ..
            })
        ));
        assert!(matches!(
            "x/3".parse::<Prefix>(),
            Err(PrefixError::Parse(_))
        ));
        assert!(matches!(
            "1.2.3.4/x".parse::<Prefix>(),
            Err(PrefixError::Parse(_))
        ));
    }

    #[test]
    fn flags_debug_names_bits() {
        assert_eq!(
            format!("{:?}", AttributeFlags(0x58)),
            "AttributeFlags(0x58 NCE)"
        );
    }

    fn roundtrip(bytes: &[u8]) -> Attribute {
        let mut r = Reader::new(bytes);
        let attrs = decode_attributes(&mut r).expect("decodes");
        assert_eq!(attrs.len(), 1);
        let mut out = Vec::new();
        attrs[0].encode_into(&mut out).expect("encodes");
        assert_eq!(out, bytes);
        attrs.into_iter().next().expect("one")
    }

    #[test]
    fn header_forms() {
        // compact
        let a = roundtrip(&[0x10, 0x11, 0x02, 0x00, 0x14]);
        assert_eq!(a.value, AttributeValue::Sgt(Sgt(20)));
        // compact, extended length
        let a = roundtrip(&[0x18, 0x11, 0x00, 0x02, 0x00, 0x14]);
        assert_eq!(a.value, AttributeValue::Sgt(Sgt(20)));
        // non-compact with flags in the top octet of the type word
        let a = roundtrip(&[0x40, 0, 0, 0x11, 0, 0, 0, 2, 0x00, 0x14]);
        assert_eq!(a.flags, AttributeFlags(0x40));
        assert_eq!(a.value, AttributeValue::Sgt(Sgt(20)));
    }

    #[test]
    fn unknown_attribute_kept() {
        let a = roundtrip(&[0x90, 0x63, 0x03, 1, 2, 3]);
        assert!(a.flags.optional());
        assert_eq!(
            a.value,
            AttributeValue::Unknown {
                typ: 0x63,
                value: vec![1, 2, 3]
            }
        );
        assert_eq!(a.typ(), AttributeType::Unknown(0x63));
    }

    #[test]
    fn compact_length_overflow_is_an_encode_error() {
        let a = Attribute::new(
            AttributeFlags::WELL_KNOWN_COMPACT,
            AttributeValue::PeerSequence(vec![NodeId(1); 64]),
        );
        let mut out = Vec::new();
        assert!(matches!(
            a.encode_into(&mut out),
            Err(EncodeError::AttributeTooLong {
                len: 256,
                max: 255,
                ..
            })
        ));
        assert!(out.is_empty());
        let a = Attribute::new(AttributeFlags(0x18), a.value);
        assert!(a.encode_into(&mut out).is_ok());
        assert_eq!(&out[..4], &[0x18, 16, 0x01, 0x00]);
    }

    #[test]
    fn family_mismatch_is_an_encode_error() {
        let a = Attribute::new(
            AttributeFlags::WELL_KNOWN_COMPACT,
            AttributeValue::Ipv4AddPrefix(vec![p("2001:db8::/32")]),
        );
        assert!(matches!(
            a.encode_into(&mut Vec::new()),
            Err(EncodeError::AddressFamily { .. })
        ));
    }
}

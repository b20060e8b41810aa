//! The fields an ACL looks at, parsed from raw IP bytes without allocation.
//!
//! Bounds-checked on untrusted bytes: anything implausible is `None` (the caller
//! counts and drops it). Ports are read only from an unfragmented packet or the
//! first fragment; a later fragment has no ports or ICMP type and, as on ASA,
//! matches only ACL rules that do not name ports or an ICMP type.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// Flag bits of [`PacketMeta`].
pub(crate) const F_V6: u8 = 1 << 0;
pub(crate) const F_PORTS: u8 = 1 << 1;
pub(crate) const F_ICMP: u8 = 1 << 2;
pub(crate) const F_LATER_FRAGMENT: u8 = 1 << 3;

/// Header fields of one packet. Addresses are kept as integers (IPv4 in the low
/// 32 bits) so matching is mask-and-compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketMeta {
    pub(crate) src: u128,
    pub(crate) dst: u128,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) proto: u8,
    pub(crate) icmp_type: u8,
    pub(crate) flags: u8,
}

impl PacketMeta {
    /// Parses an IPv4 or IPv6 packet (no link-layer header).
    pub fn parse(pkt: &[u8]) -> Option<PacketMeta> {
        match pkt.first()? >> 4 {
            4 => parse_v4(pkt),
            6 => parse_v6(pkt),
            _ => None,
        }
    }

    /// A TCP/UDP/SCTP packet (or first fragment) with ports.
    pub fn with_ports(src: IpAddr, dst: IpAddr, proto: u8, src_port: u16, dst_port: u16) -> Self {
        let mut m = Self::ip(src, dst, proto);
        m.src_port = src_port;
        m.dst_port = dst_port;
        m.flags |= F_PORTS;
        m
    }

    /// An ICMP or ICMPv6 packet of the given type.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8) -> Self {
        let proto = if src.is_ipv6() {
            PROTO_ICMPV6
        } else {
            PROTO_ICMP
        };
        let mut m = Self::ip(src, dst, proto);
        m.icmp_type = icmp_type;
        m.flags |= F_ICMP;
        m
    }

    /// A packet without ports or ICMP type (any other protocol). Both addresses
    /// should be of one family; the family of `src` decides.
    pub fn ip(src: IpAddr, dst: IpAddr, proto: u8) -> Self {
        let (s, v6) = addr_bits(src);
        let (d, _) = addr_bits(dst);
        PacketMeta {
            src: s,
            dst: d,
            proto,
            flags: if v6 { F_V6 } else { 0 },
            ..Default::default()
        }
    }

    /// The same packet seen as a non-first fragment: no ports, no ICMP type.
    pub fn as_later_fragment(mut self) -> Self {
        self.flags = (self.flags & F_V6) | F_LATER_FRAGMENT;
        self.src_port = 0;
        self.dst_port = 0;
        self.icmp_type = 0;
        self
    }

    pub fn version(&self) -> u8 {
        if self.is_v6() { 6 } else { 4 }
    }

    pub fn is_v6(&self) -> bool {
        self.flags & F_V6 != 0
    }

    /// Upper-layer protocol (after IPv6 extension headers).
    pub fn proto(&self) -> u8 {
        self.proto
    }

    pub fn src(&self) -> IpAddr {
        bits_addr(self.src, self.is_v6())
    }

    pub fn dst(&self) -> IpAddr {
        bits_addr(self.dst, self.is_v6())
    }

    /// (source, destination) port, for TCP/UDP/SCTP unfragmented or first fragment.
    pub fn ports(&self) -> Option<(u16, u16)> {
        (self.flags & F_PORTS != 0).then_some((self.src_port, self.dst_port))
    }

    pub fn icmp_type(&self) -> Option<u8> {
        (self.flags & F_ICMP != 0).then_some(self.icmp_type)
    }

    /// A fragment other than the first (offset > 0).
    pub fn is_later_fragment(&self) -> bool {
        self.flags & F_LATER_FRAGMENT != 0
    }
}

pub(crate) fn addr_bits(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(a) => (u128::from(u32::from(a)), false),
        IpAddr::V6(a) => (u128::from(a), true),
    }
}

pub(crate) fn bits_addr(b: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(b as u32))
    }
}

fn parse_v4(pkt: &[u8]) -> Option<PacketMeta> {
    let h: &[u8; 20] = pkt.get(..20)?.try_into().ok()?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || total < ihl || total > pkt.len() {
        return None;
    }
    // RFC 791: fragment offset is the low 13 bits of bytes 6-7.
    let offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let mut m = PacketMeta {
        src: u128::from(u32::from_be_bytes([h[12], h[13], h[14], h[15]])),
        dst: u128::from(u32::from_be_bytes([h[16], h[17], h[18], h[19]])),
        proto: h[9],
        ..Default::default()
    };
    if offset != 0 {
        m.flags |= F_LATER_FRAGMENT;
        return Some(m);
    }
    upper_layer(&mut m, &pkt[ihl..total])?;
    Some(m)
}

fn parse_v6(pkt: &[u8]) -> Option<PacketMeta> {
    let h: &[u8; 40] = pkt.get(..40)?.try_into().ok()?;
    let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // Payload length 0 with a hop-by-hop header is a jumbogram (RFC 2675): use
    // what we were given.
    let end = if payload == 0 && h[6] == 0 {
        pkt.len()
    } else {
        40 + payload
    };
    if end > pkt.len() {
        return None;
    }
    let mut m = PacketMeta {
        src: u128::from_be_bytes(h[8..24].try_into().ok()?),
        dst: u128::from_be_bytes(h[24..40].try_into().ok()?),
        flags: F_V6,
        ..Default::default()
    };
    // Walk the extension headers (RFC 8200 section 4) to the upper layer; a
    // bounded number so a chain of options cannot make us loop long.
    let mut next = h[6];
    let mut off = 40;
    for _ in 0..8 {
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                let e = pkt.get(off..off + 2)?;
                next = e[0];
                off += (usize::from(e[1]) + 1) * 8;
            }
            // Fragment header: 8 bytes; offset in the top 13 bits of bytes 2-3.
            44 => {
                let e = pkt.get(off..off + 8)?;
                next = e[0];
                off += 8;
                if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                    m.proto = next;
                    m.flags |= F_LATER_FRAGMENT;
                    return Some(m);
                }
            }
            // Authentication header (RFC 4302): (len + 2) * 4 bytes.
            51 => {
                let e = pkt.get(off..off + 2)?;
                next = e[0];
                off += (usize::from(e[1]) + 2) * 4;
            }
            _ => break,
        }
        if off > end {
            return None;
        }
    }
    if matches!(next, 0 | 43 | 44 | 60 | 51) {
        // Too many extension headers to reach the upper layer.
        return None;
    }
    m.proto = next;
    upper_layer(&mut m, pkt.get(off..end)?)?;
    Some(m)
}

/// Reads ports or the ICMP type from the first bytes of the upper-layer header.
/// A packet too short to hold what its protocol needs is malformed (`None`).
fn upper_layer(m: &mut PacketMeta, l4: &[u8]) -> Option<()> {
    match m.proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            let p = l4.get(..4)?;
            m.src_port = u16::from_be_bytes([p[0], p[1]]);
            m.dst_port = u16::from_be_bytes([p[2], p[3]]);
            m.flags |= F_PORTS;
        }
        PROTO_ICMP if m.flags & F_V6 == 0 => {
            m.icmp_type = *l4.first()?;
            m.flags |= F_ICMP;
        }
        PROTO_ICMPV6 if m.flags & F_V6 != 0 => {
            m.icmp_type = *l4.first()?;
            m.flags |= F_ICMP;
        }
        _ => {}
    }
    Some(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 packet with `l4` as payload.
    pub(crate) fn v4_packet(
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        frag: u16,
        l4: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    pub(crate) fn v6_packet(src: &str, dst: &str, next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(rest);
        p
    }

    fn ports(s: u16, d: u16) -> Vec<u8> {
        let mut l4 = vec![0u8; 20];
        l4[0..2].copy_from_slice(&s.to_be_bytes());
        l4[2..4].copy_from_slice(&d.to_be_bytes());
        l4
    }

    #[test]
    fn tcp_v4() {
        let p = v4_packet(
            [198, 18, 100, 10],
            [198, 18, 1, 5],
            6,
            0,
            &ports(40000, 443),
        );
        let m = PacketMeta::parse(&p).unwrap();
        assert_eq!(m.version(), 4);
        assert_eq!(m.proto(), 6);
        assert_eq!(m.src(), "198.18.100.10".parse::<IpAddr>().unwrap());
        assert_eq!(m.dst(), "198.18.1.5".parse::<IpAddr>().unwrap());
        assert_eq!(m.ports(), Some((40000, 443)));
        assert_eq!(m.icmp_type(), None);
        assert!(!m.is_later_fragment());
        assert_eq!(m, PacketMeta::with_ports(m.src(), m.dst(), 6, 40000, 443));
    }

    #[test]
    fn fragments_v4() {
        // First fragment (MF set, offset 0) still has ports.
        let p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 0x2000, &ports(53, 5353));
        assert_eq!(PacketMeta::parse(&p).unwrap().ports(), Some((53, 5353)));
        // Offset 185 (x8 bytes): no ports even if the bytes look like a header.
        let p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 185, &ports(53, 5353));
        let m = PacketMeta::parse(&p).unwrap();
        assert!(m.is_later_fragment());
        assert_eq!((m.ports(), m.proto()), (None, 17));
    }

    #[test]
    fn icmp_v4_and_v6() {
        let p = v4_packet(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1,
            0,
            &[8, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(PacketMeta::parse(&p).unwrap().icmp_type(), Some(8));
        let p = v6_packet("fd00::1", "fd00::2", 58, &[128, 0, 0, 0, 0, 0, 0, 0]);
        let m = PacketMeta::parse(&p).unwrap();
        assert_eq!((m.version(), m.proto(), m.icmp_type()), (6, 58, Some(128)));
    }

    #[test]
    fn v6_extension_headers() {
        // Hop-by-hop (8 bytes) then destination options (16 bytes) then UDP.
        let mut rest = vec![60, 0, 0, 0, 0, 0, 0, 0];
        rest.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        rest.extend_from_slice(&ports(1234, 53));
        let p = v6_packet("fd00::1", "fd00::2", 0, &rest);
        let m = PacketMeta::parse(&p).unwrap();
        assert_eq!((m.proto(), m.ports()), (17, Some((1234, 53))));

        // First fragment (offset 0, M=1) has ports; a later one does not.
        let mut rest = vec![6, 0, 0, 1, 0, 0, 0, 7];
        rest.extend_from_slice(&ports(40000, 22));
        let m = PacketMeta::parse(&v6_packet("fd00::1", "fd00::2", 44, &rest)).unwrap();
        assert_eq!(m.ports(), Some((40000, 22)));
        let mut rest = vec![6, 0, 0x05, 0x00, 0, 0, 0, 7];
        rest.extend_from_slice(&ports(40000, 22));
        let m = PacketMeta::parse(&v6_packet("fd00::1", "fd00::2", 44, &rest)).unwrap();
        assert!(m.is_later_fragment());
        assert_eq!((m.proto(), m.ports()), (6, None));
    }

    #[test]
    fn malformed_is_none() {
        assert_eq!(PacketMeta::parse(&[]), None);
        assert_eq!(PacketMeta::parse(&[0x45; 19]), None);
        // Bad version.
        let mut p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 0, &ports(1, 2));
        p[0] = 0x55;
        assert_eq!(PacketMeta::parse(&p), None);
        // IHL below 5.
        let mut p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 0, &ports(1, 2));
        p[0] = 0x44;
        assert_eq!(PacketMeta::parse(&p), None);
        // Total length beyond the buffer.
        let mut p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 0, &ports(1, 2));
        p[3] = 200;
        assert_eq!(PacketMeta::parse(&p), None);
        // TCP header cut before the ports.
        let p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 0, &[0, 1]);
        assert_eq!(PacketMeta::parse(&p), None);
        // IPv6 extension header running past the payload.
        let p = v6_packet("fd00::1", "fd00::2", 0, &[6, 4, 0, 0, 0, 0, 0, 0]);
        assert_eq!(PacketMeta::parse(&p), None);
        // Too many extension headers.
        let rest: Vec<u8> = std::iter::repeat_n([60u8, 0, 0, 0, 0, 0, 0, 0], 10)
            .flatten()
            .collect();
        assert_eq!(
            PacketMeta::parse(&v6_packet("fd00::1", "fd00::2", 60, &rest)),
            None
        );
    }

    #[test]
    fn other_protocols_have_no_ports() {
        let p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 47, 0, &[0; 8]);
        let m = PacketMeta::parse(&p).unwrap();
        assert_eq!((m.proto(), m.ports(), m.icmp_type()), (47, None, None));
        // ICMPv6 number inside IPv4 is just protocol 58: no type.
        let p = v4_packet([10, 0, 0, 1], [10, 0, 0, 2], 58, 0, &[128; 8]);
        assert_eq!(PacketMeta::parse(&p).unwrap().icmp_type(), None);
    }
}

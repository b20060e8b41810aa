//! Just enough IP header parsing to route a packet: version, source, destination.
//! Bounds-checked on untrusted bytes; no allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Source and destination of an IPv4 or IPv6 packet, or `None` if the bytes are
/// not a plausible IP header.
pub fn addresses(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match pkt.first()? >> 4 {
        4 => {
            let h: &[u8; 20] = pkt.get(..20)?.try_into().ok()?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if ihl < 20 || pkt.len() < ihl {
                return None;
            }
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            Some((IpAddr::V4(src), IpAddr::V4(dst)))
        }
        6 => {
            let h: &[u8; 40] = pkt.get(..40)?.try_into().ok()?;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            d.copy_from_slice(&h[24..40]);
            Some((IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d))))
        }
        _ => None,
    }
}

pub fn destination(pkt: &[u8]) -> Option<IpAddr> {
    addresses(pkt).map(|(_, d)| d)
}

pub fn source(pkt: &[u8]) -> Option<IpAddr> {
    addresses(pkt).map(|(s, _)| s)
}

/// True for an IPv6 packet whose source is link-local (fe80::/10) or unspecified
/// (`::`, e.g. MLD before the interface has an address): traffic of the client's
/// own link that a router never forwards.
pub fn is_ipv6_link_scoped_source(pkt: &[u8]) -> bool {
    match addresses(pkt) {
        Some((IpAddr::V6(s), _)) => s.is_unspecified() || s.segments()[0] & 0xffc0 == 0xfe80,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn ipv4_addresses() {
        let p = v4([198, 18, 100, 10], [198, 18, 1, 10]);
        assert_eq!(
            addresses(&p),
            Some((
                IpAddr::V4(Ipv4Addr::new(198, 18, 100, 10)),
                IpAddr::V4(Ipv4Addr::new(198, 18, 1, 10))
            ))
        );
    }

    #[test]
    fn ipv6_addresses() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[8..24].copy_from_slice(&"fd00:100::10".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00:1::10".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            destination(&p),
            Some(IpAddr::V6("fd00:1::10".parse().unwrap()))
        );
        assert_eq!(
            source(&p),
            Some(IpAddr::V6("fd00:100::10".parse().unwrap()))
        );
    }

    #[test]
    fn link_scoped_ipv6_sources() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        for (src, want) in [
            ("fe80::1", true),
            ("febf::1", true),
            ("::", true),
            ("fec0::1", false),
            ("fd00:100::10", false),
        ] {
            p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
            assert_eq!(is_ipv6_link_scoped_source(&p), want, "{src}");
        }
        assert!(!is_ipv6_link_scoped_source(&v4([0; 4], [0; 4])));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(addresses(&[]), None);
        assert_eq!(addresses(&[0x45; 19]), None);
        assert_eq!(addresses(&[0x60; 39]), None);
        assert_eq!(addresses(&[0x00; 64]), None);
        // IHL below 5 words is invalid.
        let mut p = v4([1, 2, 3, 4], [5, 6, 7, 8]);
        p[0] = 0x44;
        assert_eq!(addresses(&p), None);
        // IHL pointing past the end.
        p[0] = 0x4f;
        assert_eq!(addresses(&p), None);
    }
}

//! Inner IPv4 packets made by loadgen instead of a TUN: ICMP echo requests to
//! an inside host and UDP datagrams to a sink/echo port, written into a
//! caller's buffer (no allocation per packet), and the classification of what
//! comes back. Checksums per RFC 791 / RFC 792 / RFC 768 (RFC 1071 sum).

use std::net::Ipv4Addr;

pub const IPV4_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
const UDP_HEADER: usize = 8;
/// Smallest packet we build: IPv4 + ICMP/UDP header + 8-byte sequence stamp.
pub const MIN_PACKET: usize = IPV4_HEADER + ICMP_HEADER + 8;

/// RFC 1071 one's-complement sum, folded.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn ipv4_header(out: &mut [u8], total: usize, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, id: u16) {
    let h = &mut out[..IPV4_HEADER];
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&[0x40, 0]); // DF
    h[8] = 64;
    h[9] = proto;
    h[10..12].copy_from_slice(&[0, 0]);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = fold(sum16(0, h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes an ICMP echo request of `size` bytes (clamped to at least
/// [`MIN_PACKET`] and at most `out.len()`) carrying `seq` in the payload;
/// returns its length.
pub fn icmp_echo(
    out: &mut [u8],
    size: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq: u64,
) -> usize {
    let total = size.clamp(MIN_PACKET, out.len().min(usize::from(u16::MAX)));
    ipv4_header(out, total, 1, src, dst, seq as u16);
    let icmp = &mut out[IPV4_HEADER..total];
    icmp[0] = 8;
    icmp[1] = 0;
    icmp[2..4].copy_from_slice(&[0, 0]);
    icmp[4..6].copy_from_slice(&ident.to_be_bytes());
    icmp[6..8].copy_from_slice(&(seq as u16).to_be_bytes());
    icmp[8..16].copy_from_slice(&seq.to_be_bytes());
    icmp[16..].fill(0xa5);
    let c = fold(sum16(0, icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    total
}

/// Writes a UDP datagram of `size` bytes total carrying `seq`; returns its length.
pub fn udp(
    out: &mut [u8],
    size: usize,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u64,
) -> usize {
    let total = size.clamp(MIN_PACKET, out.len().min(usize::from(u16::MAX)));
    ipv4_header(out, total, 17, src.0, dst.0, seq as u16);
    let ulen = total - IPV4_HEADER;
    let u = &mut out[IPV4_HEADER..total];
    u[0..2].copy_from_slice(&src.1.to_be_bytes());
    u[2..4].copy_from_slice(&dst.1.to_be_bytes());
    u[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
    u[6..8].copy_from_slice(&[0, 0]);
    u[8..16].copy_from_slice(&seq.to_be_bytes());
    u[16..].fill(0x5a);
    // Pseudo-header: src, dst, zero, protocol, UDP length.
    let mut acc = sum16(0, &src.0.octets());
    acc = sum16(acc, &dst.0.octets());
    acc += 17 + ulen as u32;
    let c = match fold(sum16(acc, u)) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    total
}

/// What a received inner packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// An ICMP echo reply to our identifier, with the sequence stamp.
    EchoReply { seq: u64 },
    /// A UDP datagram to our port, with the sequence stamp (an echo).
    Udp { seq: u64 },
    /// Anything else (counted, not matched).
    Other,
}

/// Classifies a packet received for address `me`.
pub fn classify(pkt: &[u8], me: Ipv4Addr, ident: u16, udp_port: u16) -> Inbound {
    if pkt.len() < IPV4_HEADER || pkt[0] >> 4 != 4 {
        return Inbound::Other;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER || pkt.len() < ihl + 16 || pkt[16..20] != me.octets() {
        return Inbound::Other;
    }
    let l4 = &pkt[ihl..];
    let stamp = |b: &[u8]| u64::from_be_bytes(b[8..16].try_into().unwrap_or_default());
    match pkt[9] {
        1 if l4[0] == 0 && l4[4..6] == ident.to_be_bytes() => Inbound::EchoReply { seq: stamp(l4) },
        17 if l4.len() >= UDP_HEADER + 8 && l4[2..4] == udp_port.to_be_bytes() => {
            Inbound::Udp { seq: stamp(l4) }
        }
        _ => Inbound::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 10);
    const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);

    #[test]
    fn icmp_echo_is_valid_ipv4_icmp() {
        let mut buf = [0u8; 2048];
        let n = icmp_echo(&mut buf, 100, ME, HOST, 0x1234, 77);
        assert_eq!(n, 100);
        assert_eq!(buf[0], 0x45);
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 100, "total length");
        assert_eq!(buf[9], 1, "ICMP");
        assert_eq!(buf[12..16], ME.octets());
        assert_eq!(buf[16..20], HOST.octets());
        assert_eq!(fold(sum16(0, &buf[..IPV4_HEADER])), 0, "IP checksum");
        let icmp = &buf[IPV4_HEADER..n];
        assert_eq!((icmp[0], icmp[1]), (8, 0), "echo request");
        assert_eq!(icmp[4..6], 0x1234u16.to_be_bytes());
        assert_eq!(icmp[6..8], 77u16.to_be_bytes());
        assert_eq!(fold(sum16(0, icmp)), 0, "ICMP checksum");
        // Tiny and huge sizes are clamped.
        assert_eq!(icmp_echo(&mut buf, 1, ME, HOST, 1, 1), MIN_PACKET);
        assert_eq!(icmp_echo(&mut buf, 9000, ME, HOST, 1, 1), 2048);
    }

    #[test]
    fn udp_checksum_verifies() {
        let mut buf = [0u8; 1500];
        let n = udp(&mut buf, 1200, (ME, 40000), (HOST, 9), 5);
        assert_eq!(n, 1200);
        assert_eq!(buf[9], 17);
        let u = &buf[IPV4_HEADER..n];
        assert_eq!(u[0..2], 40000u16.to_be_bytes());
        assert_eq!(u[2..4], 9u16.to_be_bytes());
        assert_eq!(
            usize::from(u16::from_be_bytes([u[4], u[5]])),
            n - IPV4_HEADER
        );
        let mut acc = sum16(0, &ME.octets());
        acc = sum16(acc, &HOST.octets());
        acc += 17 + (n - IPV4_HEADER) as u32;
        assert_eq!(fold(sum16(acc, u)), 0);
        // An odd length exercises the RFC 1071 tail byte.
        let n = udp(&mut buf, 101, (ME, 1), (HOST, 2), 5);
        let mut acc = sum16(0, &ME.octets());
        acc = sum16(acc, &HOST.octets());
        acc += 17 + (n - IPV4_HEADER) as u32;
        assert_eq!(fold(sum16(acc, &buf[IPV4_HEADER..n])), 0);
    }

    /// What the inside host sends back: the request with addresses swapped
    /// and type 0 (the kernel's echo reply).
    fn reply_of(req: &[u8]) -> Vec<u8> {
        let mut r = req.to_vec();
        r[12..16].copy_from_slice(&req[16..20]);
        r[16..20].copy_from_slice(&req[12..16]);
        r[IPV4_HEADER] = 0;
        r
    }

    #[test]
    fn replies_are_matched_to_identifier_and_port() {
        let mut buf = [0u8; 200];
        let n = icmp_echo(&mut buf, 64, ME, HOST, 9, 1234);
        let r = reply_of(&buf[..n]);
        assert_eq!(classify(&r, ME, 9, 40000), Inbound::EchoReply { seq: 1234 });
        assert_eq!(classify(&r, ME, 8, 40000), Inbound::Other, "other ident");
        assert_eq!(
            classify(&r, HOST, 9, 40000),
            Inbound::Other,
            "other address"
        );
        assert_eq!(classify(&buf[..n], HOST, 9, 1), Inbound::Other, "a request");

        let n = udp(&mut buf, 64, (HOST, 7), (ME, 40000), 99);
        assert_eq!(classify(&buf[..n], ME, 9, 40000), Inbound::Udp { seq: 99 });
        assert_eq!(classify(&buf[..n], ME, 9, 40001), Inbound::Other);
        for junk in [&[][..], &[0x45; 19][..], &[0x60; 60][..], &[0x4f; 40][..]] {
            assert_eq!(classify(junk, ME, 9, 40000), Inbound::Other);
        }
    }
}

//! The few TCP header fields the DTLS downlink's learnt pacing rate reads
//! (`dtls_pace_rate.rs`) from the tunnel's inner packets: which flow, the
//! sequence range a downlink segment carries, and the cumulative ACK and
//! whether SACK blocks follow (RFC 2018) in an uplink one.
//!
//! The packets come from the client (untrusted): every length is checked
//! against the slice, the option walk is bounded by the 40 bytes a TCP
//! header can hold, nothing panics (fuzzed by `headend/fuzz` `tcp_seg`).

/// A TCP flow as seen from the headend: the inside (server) end and the
/// client's end, so a downlink segment and the uplink ACK for it give the
/// same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// 16-byte addresses (IPv4 mapped), inside end first.
    pub inside: ([u8; 16], u16),
    pub client: ([u8; 16], u16),
}

/// What a TCP segment says, for pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSeg {
    pub src: ([u8; 16], u16),
    pub dst: ([u8; 16], u16),
    pub seq: u32,
    /// The cumulative acknowledgement (meaningful only if `ack_flag`).
    pub ack: u32,
    pub ack_flag: bool,
    /// SYN, FIN or RST set: not a data segment or plain ACK.
    pub control: bool,
    /// Payload bytes after the TCP header.
    pub payload: u32,
    /// The left edge of the first SACK block (option kind 5), if any.
    pub sack: Option<u32>,
    /// The whole IP packet's length.
    pub ip_len: u32,
}

impl TcpSeg {
    /// The flow of a segment sent to the client (downlink).
    pub fn down_flow(&self) -> FlowKey {
        FlowKey {
            inside: self.src,
            client: self.dst,
        }
    }

    /// The flow of a segment from the client (uplink).
    pub fn up_flow(&self) -> FlowKey {
        FlowKey {
            inside: self.dst,
            client: self.src,
        }
    }
}

const PROTO_TCP: u8 = 6;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_SACK: u8 = 5;

fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12..].copy_from_slice(&v4);
    a
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses an IPv4 or IPv6 packet that carries a TCP segment directly (no
/// IPv6 extension headers, not a non-first IPv4 fragment); None otherwise.
pub fn parse(pkt: &[u8]) -> Option<TcpSeg> {
    let version = pkt.first()? >> 4;
    let (src, dst, tcp, ip_len) = match version {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let total = usize::from(be16(pkt, 2)?);
            if ihl < 20 || total < ihl || total > pkt.len() {
                return None;
            }
            // A fragment other than the first has no TCP header.
            if be16(pkt, 6)? & 0x1fff != 0 || *pkt.get(9)? != PROTO_TCP {
                return None;
            }
            let s: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            (mapped(s), mapped(d), pkt.get(ihl..total)?, total)
        }
        6 => {
            let total = 40 + usize::from(be16(pkt, 4)?);
            if total > pkt.len() || *pkt.get(6)? != PROTO_TCP {
                return None;
            }
            let s: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            (s, d, pkt.get(40..total)?, total)
        }
        _ => return None,
    };
    let off = usize::from(*tcp.get(12)? >> 4) * 4;
    if off < 20 || off > tcp.len() {
        return None;
    }
    let flags = *tcp.get(13)?;
    Some(TcpSeg {
        src: (src, be16(tcp, 0)?),
        dst: (dst, be16(tcp, 2)?),
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        ack_flag: flags & 0x10 != 0,
        control: flags & 0x07 != 0,
        payload: u32::try_from(tcp.len() - off).ok()?,
        sack: first_sack(tcp.get(20..off)?),
        ip_len: u32::try_from(ip_len).ok()?,
    })
}

/// The left edge of the first block of a SACK option (RFC 2018 §3: kind 5,
/// length 2 + 8n), if the options hold one. At most 40 bytes: bounded.
fn first_sack(opts: &[u8]) -> Option<u32> {
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            OPT_END => return None,
            OPT_NOP => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind == OPT_SACK && len >= 10 {
                    return be32(opts, i + 2);
                }
                i += len;
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 TCP packet: ports 5201 -> 40000, `opts` padded to 4 bytes.
    pub(crate) fn v4(seq: u32, ack: u32, flags: u8, opts: &[u8], payload: usize) -> Vec<u8> {
        let olen = opts.len().div_ceil(4) * 4;
        let total = 20 + 20 + olen + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[198, 18, 1, 10]);
        p[16..20].copy_from_slice(&[198, 18, 100, 2]);
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&5201u16.to_be_bytes());
        t[2..4].copy_from_slice(&40000u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = (((20 + olen) / 4) as u8) << 4;
        t[13] = flags;
        t[20..20 + opts.len()].copy_from_slice(opts);
        p
    }

    /// An ACK in the other direction (client -> inside), with one SACK
    /// block [left, left + 1000) or timestamps only.
    pub(crate) fn v4_up(ack: u32, sack: Option<u32>) -> Vec<u8> {
        let mut opts = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        if let Some(left) = sack {
            opts[2] = 5;
            opts[4..8].copy_from_slice(&left.to_be_bytes());
            opts[8..12].copy_from_slice(&left.wrapping_add(1000).to_be_bytes());
        }
        let mut p = v4(7, ack, 0x10, &opts, 0);
        let (s, d) = (p[12..16].to_vec(), p[16..20].to_vec());
        p[12..16].copy_from_slice(&d);
        p[16..20].copy_from_slice(&s);
        let (sp, dp) = (p[20..22].to_vec(), p[22..24].to_vec());
        p[20..22].copy_from_slice(&dp);
        p[22..24].copy_from_slice(&sp);
        p
    }

    #[test]
    fn reads_a_data_segment_and_an_ack_with_sack() {
        let d = parse(&v4(1000, 5, 0x18, &[], 1300)).unwrap();
        assert_eq!(
            (d.seq, d.payload, d.ack_flag, d.sack),
            (1000, 1300, true, None)
        );
        assert_eq!(d.ip_len, 1340);
        let u = parse(&v4_up(2300, Some(1))).unwrap();
        assert_eq!((u.ack, u.payload, u.sack), (2300, 0, Some(1)));
        assert_eq!(u.up_flow(), d.down_flow(), "both directions, one flow");
        // Timestamps only: no SACK.
        assert_eq!(parse(&v4_up(2300, None)).unwrap().sack, None);
    }

    #[test]
    fn reads_ipv6() {
        let mut p = vec![0u8; 40 + 20 + 10];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&30u16.to_be_bytes());
        p[6] = PROTO_TCP;
        p[40 + 12] = 5 << 4;
        p[40 + 13] = 0x10;
        p[40 + 4..40 + 8].copy_from_slice(&77u32.to_be_bytes());
        let s = parse(&p).unwrap();
        assert_eq!((s.seq, s.payload, s.ip_len), (77, 10, 70));
    }

    #[test]
    fn refuses_what_is_not_a_whole_tcp_header() {
        let good = v4(1, 2, 0x10, &[], 0);
        for n in 0..good.len() {
            assert_eq!(parse(&good[..n]), None, "truncated to {n}");
        }
        let mut udp = good.clone();
        udp[9] = 17;
        assert_eq!(parse(&udp), None);
        let mut frag = good.clone();
        frag[7] = 1;
        assert_eq!(parse(&frag), None);
        let mut off = good.clone();
        off[20 + 12] = 15 << 4; // a 60-byte header in a 20-byte segment
        assert_eq!(parse(&off), None);
        // Malformed options: a zero length, one past the end.
        assert_eq!(parse(&v4(1, 2, 0x10, &[5, 0, 0, 0], 0)).unwrap().sack, None);
        assert_eq!(
            parse(&v4(1, 2, 0x10, &[1, 1, 5, 18], 0)).unwrap().sack,
            None
        );
        // A SACK option with no block.
        assert_eq!(parse(&v4(1, 2, 0x10, &[5, 2, 0, 0], 0)).unwrap().sack, None);
    }
}

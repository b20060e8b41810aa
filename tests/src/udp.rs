//! UDP from inside a namespace: forged DTLS datagrams that no real client sends, and
//! a packet capture (AF_PACKET) to pick up real ones for replaying.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::netns;

/// A UDP socket bound to an ephemeral port of namespace `ns`.
pub fn socket(ns: &str) -> UdpSocket {
    let ns_name = ns.to_owned();
    netns::in_netns(ns, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap_or_else(|e| panic!("UDP socket in {ns_name}: {e}"))
}

/// Sends each payload as one datagram to `to`; panics when the kernel refuses one.
pub fn send_all(sock: &UdpSocket, to: SocketAddr, payloads: &[Vec<u8>]) {
    for p in payloads {
        let n = sock
            .send_to(p, to)
            .unwrap_or_else(|e| panic!("UDP send of {} bytes to {to}: {e}", p.len()));
        assert_eq!(n, p.len(), "short UDP send");
    }
}

/// DTLS content types.
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// One DTLS record: type, version DTLS 1.2, `epoch`, 48-bit `seq`, length, `body`.
pub fn record(content_type: u8, epoch: u16, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 0xfe, 0xfd];
    r.extend_from_slice(&epoch.to_be_bytes());
    r.extend_from_slice(&seq.to_be_bytes()[2..]);
    r.extend_from_slice(
        &u16::try_from(body.len())
            .expect("record body")
            .to_be_bytes(),
    );
    r.extend_from_slice(body);
    r
}

/// A DTLS ClientHello shaped like GnuTLS's for openconnect (no extensions, the PSK
/// suites it offers) whose session_id length byte says `declared_sid_len` while
/// `sid` bytes follow, so callers can lie about the length.
pub fn client_hello_declaring(declared_sid_len: u8, sid: &[u8]) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&crate::probe::random_bytes(32));
    body.push(declared_sid_len);
    body.extend_from_slice(sid);
    body.push(0); // cookie length
    let suites: [u16; 8] = [
        0x00a9, 0xccab, 0xc0a5, 0x008d, 0x00a8, 0xc0a4, 0x008c, 0x00ae,
    ];
    body.extend_from_slice(&(2 * suites.len() as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let len = u32::try_from(body.len()).expect("hello body").to_be_bytes();
    // Handshake header: type, length, message_seq 0, fragment_offset 0, fragment_length.
    let mut hs = vec![1];
    hs.extend_from_slice(&len[1..]);
    hs.extend_from_slice(&[0, 0, 0, 0, 0]);
    hs.extend_from_slice(&len[1..]);
    hs.extend_from_slice(&body);
    // The first ClientHello record says DTLS 1.0, as GnuTLS's does.
    let mut r = record(HANDSHAKE, 0, 0, &hs);
    r[1..3].copy_from_slice(&[0xfe, 0xff]);
    r
}

/// A well-formed ClientHello carrying `session_id` (what openconnect puts its App-ID in).
pub fn client_hello(session_id: &[u8]) -> Vec<u8> {
    client_hello_declaring(
        u8::try_from(session_id.len()).expect("session_id length"),
        session_id,
    )
}

/// A UDP datagram seen by [`Capture`].
#[derive(Debug, Clone)]
pub struct Datagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// Sent by this host (not received).
    pub outgoing: bool,
    pub payload: Vec<u8>,
}

/// An AF_PACKET socket on one interface of a namespace: sees the IPv4 packets that
/// interface sends and receives from the moment it is opened (they queue in the
/// socket's receive buffer until read).
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// Starts capturing IPv4 on `dev` in namespace `ns`.
    pub fn open(ns: &str, dev: &str) -> io::Result<Capture> {
        let dev = std::ffi::CString::new(dev).expect("interface name");
        netns::in_netns(ns, move || {
            // ETH_P_ALL: sockets bound to one protocol do not see outgoing packets.
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain syscalls with valid arguments; the fd is owned right away.
            let fd = unsafe {
                let ifindex = libc::if_nametoindex(dev.as_ptr());
                if ifindex == 0 {
                    return Err(io::Error::last_os_error());
                }
                let raw = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                );
                if raw < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = OwnedFd::from_raw_fd(raw);
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = proto;
                sll.sll_ifindex = i32::try_from(ifindex).expect("ifindex");
                let rc = libc::bind(
                    fd.as_raw_fd(),
                    std::ptr::from_ref(&sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                );
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                fd
            };
            Ok(Capture { fd })
        })
    }

    /// The next captured UDP datagram for which `pred` holds; `None` when none came
    /// within `timeout` (a hang guard).
    pub fn next_udp(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Datagram) -> bool,
    ) -> Option<Datagram> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.set_timeout(left.max(Duration::from_millis(1)));
            // SAFETY: a zeroed sockaddr_ll is valid; recvfrom writes at most its size.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut sll_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and sll are valid for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    std::ptr::from_mut(&mut sll).cast(),
                    &mut sll_len,
                )
            };
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => continue,
                    _ => panic!("AF_PACKET recvfrom: {e}"),
                }
            };
            if sll.sll_protocol != (libc::ETH_P_IP as u16).to_be() {
                continue;
            }
            if let Some(d) = parse_udp(&buf[..n], sll.sll_pkttype == libc::PACKET_OUTGOING)
                && pred(&d)
            {
                return Some(d);
            }
        }
    }

    fn set_timeout(&self, t: Duration) {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(t.subsec_micros()),
        };
        // SAFETY: setsockopt with a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", io::Error::last_os_error());
    }
}

/// An IPv4 packet (from its IP header on) into a [`Datagram`], if it is UDP.
fn parse_udp(p: &[u8], outgoing: bool) -> Option<Datagram> {
    if p.first()? >> 4 != 4 || *p.get(9)? != 17 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?])).min(p.len());
    let ip = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let port =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?])) };
    Some(Datagram {
        src: SocketAddrV4::new(ip(12)?, port(ihl)?),
        dst: SocketAddrV4::new(ip(16)?, port(ihl + 2)?),
        outgoing,
        payload: p.get(ihl + 8..total)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_has_the_session_id_where_openconnect_puts_it() {
        let sid = [0x5a; 32];
        let h = client_hello(&sid);
        assert_eq!(h[0], HANDSHAKE);
        assert_eq!(&h[3..5], &[0, 0], "epoch 0");
        assert_eq!(
            usize::from(u16::from_be_bytes([h[11], h[12]])),
            h.len() - 13
        );
        assert_eq!(h[13], 1, "ClientHello");
        assert_eq!(h[59], 32);
        assert_eq!(&h[60..92], &sid);
    }

    #[test]
    fn record_layout() {
        let r = record(APPLICATION_DATA, 1, 0x0102_0304_0506, b"xyz");
        assert_eq!(
            r,
            [
                23, 0xfe, 0xfd, 0, 1, 1, 2, 3, 4, 5, 6, 0, 3, b'x', b'y', b'z'
            ]
        );
    }

    #[test]
    fn udp_parse() {
        let mut p = vec![0x45, 0, 0, 31, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[198, 18, 0, 2, 198, 18, 0, 1]);
        p.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb, 0, 11, 0, 0]);
        p.extend_from_slice(b"abc");
        let d = parse_udp(&p, true).unwrap();
        assert_eq!(d.src, "198.18.0.2:40000".parse().unwrap());
        assert_eq!(d.dst, "198.18.0.1:443".parse().unwrap());
        assert_eq!(d.payload, b"abc");
        assert!(d.outgoing);
    }
}

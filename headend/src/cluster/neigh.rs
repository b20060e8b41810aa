//! The inside segment reaches the addresses this node serves: a proxy ARP entry per
//! address (`ip neigh add proxy A dev IF`, through rtnetlink) and a gratuitous ARP
//! when a node starts serving one (RFC 5227 section 3 "ARP Announcement": a
//! request whose sender and target are the address), so hosts and routers on the
//! segment move to this node at once after a takeover, as VRRP does for its VIP.
//!
//! The kernel answers for a proxy entry only while it has a route to the address
//! through another interface (the TUN's pool route) and forwarding is on.

use std::io;
use std::net::Ipv4Addr;

const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;
const NTF_PROXY: u8 = 0x08;
const NDA_DST: u16 = 1;
const ETH_P_ARP: u16 = 0x0806;

/// An RTM_NEWNEIGH / RTM_DELNEIGH request for a proxy entry (nlmsghdr, ndmsg,
/// NDA_DST; rtnetlink(7)), in host byte order as netlink wants.
pub fn proxy_request(add: bool, seq: u32, ifindex: u32, addr: Ipv4Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(36);
    m.extend_from_slice(&36u32.to_ne_bytes());
    let (kind, flags) = if add {
        (
            RTM_NEWNEIGH,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
    } else {
        (RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK)
    };
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // ndmsg: family, pad, pad, ifindex, state, flags, type
    m.push(libc::AF_INET as u8);
    m.extend_from_slice(&[0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
    m.push(NTF_PROXY);
    m.push(0);
    // rtattr NDA_DST
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&NDA_DST.to_ne_bytes());
    m.extend_from_slice(&addr.octets());
    m
}

/// The errno of a netlink ACK (0: success), None if `buf` is no NLMSG_ERROR.
pub fn ack_errno(buf: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
    if kind != NLMSG_ERROR {
        return None;
    }
    Some(-i32::from_ne_bytes(buf.get(16..20)?.try_into().ok()?))
}

/// A gratuitous ARP (announcement) for `addr` from `mac`, the ARP part only
/// (the AF_PACKET socket adds the Ethernet header).
pub fn gratuitous_arp(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&addr.octets());
    // target hardware address stays zero
    p[24..28].copy_from_slice(&addr.octets());
    p
}

/// The inside interface this node answers ARP on for the addresses it serves.
#[derive(Debug, Clone)]
pub struct InsideSegment {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

impl InsideSegment {
    pub fn lookup(name: &str) -> io::Result<Self> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            name: name.to_owned(),
            ifindex,
            mac: hwaddr(name)?,
        })
    }

    /// Adds (or removes) the proxy ARP entry for `addr`.
    pub fn proxy(&self, add: bool, addr: Ipv4Addr) -> io::Result<()> {
        let fd = Fd::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )?;
        let req = proxy_request(add, 1, self.ifindex, addr);
        // SAFETY: sockaddr_nl zeroed is a valid "to the kernel" address.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: req and sa outlive the call; lengths are theirs.
        let n = unsafe {
            libc::sendto(
                fd.0,
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 512];
        // SAFETY: buf is ours and its length is passed. The kernel answers at once.
        let n = unsafe { libc::recv(fd.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        match ack_errno(buf.get(..n as usize).unwrap_or_default()) {
            Some(0) => Ok(()),
            // Removing what is not there (already gone) is fine.
            Some(e) if !add && e == libc::ENOENT => Ok(()),
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Err(io::Error::other("no netlink ACK")),
        }
    }

    /// Sends one gratuitous ARP for `addr` out of the interface.
    pub fn announce(&self, addr: Ipv4Addr) -> io::Result<()> {
        let fd = Fd::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )?;
        let pkt = gratuitous_arp(self.mac, addr);
        // SAFETY: zeroed sockaddr_ll, then filled in.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = ETH_P_ARP.to_be();
        sa.sll_ifindex = self.ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: pkt and sa outlive the call; lengths are theirs.
        let n = unsafe {
            libc::sendto(
                fd.0,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn hwaddr(name: &str) -> io::Result<[u8; 6]> {
    let fd = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)?;
    // SAFETY: a zeroed ifreq is valid; the name is copied in bounded below.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we own.
    if unsafe { libc::ioctl(fd.0, libc::SIOCGIFHWADDR, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFHWADDR the union holds ifru_hwaddr.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// An owned file descriptor, closed on drop.
struct Fd(i32);

impl Fd {
    fn socket(domain: i32, kind: i32, protocol: i32) -> io::Result<Self> {
        // SAFETY: socket(2) takes plain integers; the result is checked.
        Self::new(unsafe { libc::socket(domain, kind, protocol) })
    }

    fn new(fd: i32) -> io::Result<Self> {
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Fd(fd))
        }
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_request_layout() {
        let m = proxy_request(true, 7, 3, "198.18.100.10".parse().unwrap());
        assert_eq!(m.len(), 36);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(
            u16::from_ne_bytes(m[4..6].try_into().unwrap()),
            RTM_NEWNEIGH
        );
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 3);
        assert_eq!(
            u16::from_ne_bytes(m[24..26].try_into().unwrap()),
            NUD_PERMANENT
        );
        assert_eq!(m[26], NTF_PROXY);
        assert_eq!(&m[32..36], &[198, 18, 100, 10]);
        let d = proxy_request(false, 8, 3, "198.18.100.10".parse().unwrap());
        assert_eq!(
            u16::from_ne_bytes(d[4..6].try_into().unwrap()),
            RTM_DELNEIGH
        );
    }

    #[test]
    fn acks_are_read() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(libc::EEXIST));
        assert_eq!(ack_errno(&ack[..10]), None);
        ack[4..6].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(ack_errno(&ack), None);
    }

    #[test]
    fn gratuitous_arp_names_the_address_twice() {
        let p = gratuitous_arp([2, 0, 0, 0, 0, 1], "198.18.100.10".parse().unwrap());
        assert_eq!(&p[6..8], &[0, 1]);
        assert_eq!(&p[8..14], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&p[14..18], &p[24..28]);
        assert_eq!(&p[18..24], &[0; 6]);
    }
}

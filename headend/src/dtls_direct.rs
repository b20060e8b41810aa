//! A session's own UDP socket, connected to its DTLS peer (issue 13 item 1).
//!
//! Once a session's DTLS association is up, the session opens a socket bound
//! to the DTLS address and `connect()`ed to the client, as ocserv does. Linux
//! delivers the client's datagrams to it rather than to the hub's unconnected
//! socket (a connected socket matches more of the 4-tuple and scores higher in
//! `udp4_lib_lookup2`; since 6.13 connected sockets are also hashed by their
//! 4-tuple, so the lookup stays O(1) with thousands of them). The session then
//! reads and sends on it itself: no hub sorting and no channel hop per
//! datagram. The hub keeps ClientHellos (which go by App-ID), NAT rebinding (a
//! record from a new port arrives at the hub; once it authenticates, the
//! session re-`connect()`s), and every session beyond the fd budget.
//!
//! fd budget: a connected socket takes one of the accept loop's connection
//! slots (server.rs, RLIMIT_NOFILE minus a reserve), so TLS connections and
//! UDP sockets together never exceed the limit and `accept()` never fails
//! with EMFILE because of UDP. It takes one only while more than half of the
//! slots are free: every connected socket belongs to a tunnel that holds a
//! slot too, so connected sockets hold at most a quarter of the slots and TLS
//! always keeps at least three quarters (issue 12: 10,000 sessions under a
//! hard limit of 20,000 fds all connect; ~4,900 of them get a socket).

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::dtls::{DtlsHub, UdpIo};
use crate::proto::dtls_hello;
use crate::recv_budget::{MAX_SLOTS, RecvPlan};

/// Receive buffer asked for a session's socket (the kernel caps it at
/// `net.core.rmem_max`); charged only while datagrams wait in it, and all UDP
/// sockets together are bounded by `net.ipv4.udp_mem`. 1 MiB overflowed
/// (server RcvbufErrors) in a 1 Gbit/s upload on a busy box; the hub asks 8.
const DIRECT_RCVBUF: usize = 4 << 20;

/// One receive slot: a GRO train is at most 64 KiB.
const RECV_SLOT: usize = 64 * 1024;

/// Consecutive receive errors (ICMP errors reported on a connected socket)
/// before a session gives its socket up and stays on the hub.
const MAX_RECV_ERRORS: u32 = 16;

thread_local! {
    /// recvmmsg storage, one per runtime thread, borrowed only synchronously
    /// (never across an await): bounded by the thread count, not by sessions.
    static RECV: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A UDP socket bound to `addr` with SO_REUSEADDR (the hub's and sessions'
/// sockets share the DTLS address), non-blocking, close-on-exec.
pub fn reusable_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// Turns off the receive-side control messages quinn-udp switches on that the
/// headend never reads: IP_PKTINFO/IPV6_RECVPKTINFO (the local address of each
/// datagram: the hub answers from its bound address and a connected socket
/// knows its own), IP_RECVTOS/IPV6_RECVTCLASS (ECN: DTLS carries none) and
/// SO_TIMESTAMPNS (nobody reads the receive time). Each costs a `put_cmsg`
/// per datagram (~4 % of the samples in a one-client upload, BENCHMARKS.md
/// 2026-12-07 23:05), and while any socket asks for timestamps the kernel
/// stamps every packet it receives. UDP_GRO stays on: the receive path reads
/// its segment size. Best effort: a socket that keeps one still works.
pub(crate) fn drop_unread_ancillary(sock: &std::net::UdpSocket, local: SocketAddr) {
    use std::os::fd::AsRawFd as _;
    let fd = sock.as_raw_fd();
    let v4 = [
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS),
        (libc::IPPROTO_IP, libc::IP_PKTINFO),
        (libc::IPPROTO_IP, libc::IP_RECVTOS),
    ];
    let v6 = [
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS),
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
        (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS),
        // quinn-udp sets it on dual-stack sockets too.
        (libc::IPPROTO_IP, libc::IP_RECVTOS),
    ];
    let off: &[(libc::c_int, libc::c_int)] = if local.is_ipv4() { &v4 } else { &v6 };
    for &(level, name) in off {
        let zero: libc::c_int = 0;
        // SAFETY: a valid fd and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&zero as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(level, name, error = %io::Error::last_os_error(), "UDP option left on");
        }
    }
}

/// The connection slots connected sockets draw from (see the module docs).
pub struct DirectSlots {
    slots: Arc<Semaphore>,
    total: usize,
}

impl DirectSlots {
    /// `slots` is the accept loop's semaphore, created with `total` permits.
    pub fn new(slots: Arc<Semaphore>, total: usize) -> Self {
        Self { slots, total }
    }

    fn take(&self) -> Option<OwnedSemaphorePermit> {
        if !may_open(self.slots.available_permits(), self.total) {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }
}

/// Whether a connected socket may take a slot when `available` of `total`
/// are free: only while more than half are.
pub fn may_open(available: usize, total: usize) -> bool {
    available > total / 2
}

/// The address to `connect()` a socket bound to `local` to: an IPv4 peer of
/// a dual-stack IPv6 socket is reached through its v4-mapped address.
fn connect_addr(local: SocketAddr, peer: SocketAddr) -> SocketAddr {
    match (local, peer) {
        (SocketAddr::V6(_), SocketAddr::V4(p)) => {
            SocketAddr::new(IpAddr::V6(p.ip().to_ipv6_mapped()), p.port())
        }
        (SocketAddr::V4(_), SocketAddr::V6(p)) => SocketAddr::new(p.ip().to_canonical(), p.port()),
        _ => peer,
    }
}

/// The same address whether seen through an IPv4 or a dual-stack socket.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// A session's socket connected to its DTLS peer.
pub struct DirectSocket {
    io: UdpIo,
    peer: SocketAddr,
    /// Datagrams per message (GRO train) the last uplink event saw: how the
    /// next one sizes its receive calls (`recv_budget.rs`).
    per_msg: AtomicU32,
    hub: Arc<DtlsHub>,
    _slot: OwnedSemaphorePermit,
}

impl DtlsHub {
    /// Opens a socket connected to `peer` for a session whose association
    /// just came up, if the fd budget allows; None: stay on the hub path
    /// (counted).
    pub fn connect_direct(self: &Arc<Self>, peer: SocketAddr) -> Option<DirectSocket> {
        // No budget configured (tests, tools): the hub path only.
        let slots = self.direct_slots.get()?;
        let fallback = || {
            self.counters
                .direct_fallbacks
                .fetch_add(1, Ordering::Relaxed);
            None
        };
        let Some(slot) = slots.take() else {
            return fallback();
        };
        match open(self.local, peer) {
            Ok(io) => {
                self.counters.direct_sockets.fetch_add(1, Ordering::Relaxed);
                Some(DirectSocket {
                    io,
                    peer,
                    per_msg: AtomicU32::new(1),
                    hub: self.clone(),
                    _slot: slot,
                })
            }
            Err(e) => {
                tracing::debug!(%peer, "DTLS connected socket: {e}");
                fallback()
            }
        }
    }

    /// Sets the fd budget of [`Self::connect_direct`] (server.rs, once).
    pub fn set_direct_slots(&self, slots: DirectSlots) {
        let _ = self.direct_slots.set(slots);
    }
}

fn open(local: SocketAddr, peer: SocketAddr) -> io::Result<UdpIo> {
    let std_sock = reusable_udp(local)?;
    // Between bind and connect this socket is one more unconnected socket on
    // the DTLS address and may receive another client's datagram; `recv`
    // hands such strays back to the hub.
    socket2::SockRef::from(&std_sock).connect(&connect_addr(local, peer).into())?;
    let state = UdpSocketState::new((&std_sock).into())?;
    drop_unread_ancillary(&std_sock, local);
    let _ = state.set_recv_buffer_size((&std_sock).into(), DIRECT_RCVBUF);
    let socket = UdpSocket::from_std(std_sock)?;
    Ok(UdpIo { socket, state })
}

impl DirectSocket {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn io(&self) -> &UdpIo {
        &self.io
    }

    /// Follows the client to a new address (NAT rebinding, after a record
    /// from it authenticated through the hub).
    pub fn reconnect(&mut self, peer: SocketAddr) -> io::Result<()> {
        socket2::SockRef::from(&self.io.socket)
            .connect(&connect_addr(self.hub.local, peer).into())?;
        self.peer = peer;
        Ok(())
    }

    /// Waits for datagrams from the peer and returns them as one batch (one
    /// copy, out of the receive slots, as on the hub path). Once the socket
    /// is readable it reads on while it still has datagrams, up to about one
    /// TUN super-packet's worth (`recv_budget.rs`: the batch's packets go to
    /// TUN in one write). ClientHellos (a new association goes by App-ID)
    /// and datagrams from anyone else go to the hub's sorting. Cancel-safe:
    /// nothing is held across the await. Errs after repeated receive errors:
    /// the caller drops the socket and the hub serves the session again.
    pub async fn recv(&self, pool: &dataplane::BatchPool) -> io::Result<dataplane::PacketBatch> {
        let mut errors = 0u32;
        loop {
            self.io.socket.readable().await?;
            match self.read_event(pool) {
                Ok(batch) if batch.is_empty() => pool.put(batch),
                Ok(batch) => {
                    let c = &self.hub.counters;
                    let n = batch.len() as u64;
                    c.rx_datagrams.fetch_add(n, Ordering::Relaxed);
                    c.direct_rx_datagrams.fetch_add(n, Ordering::Relaxed);
                    return Ok(batch);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // ECONNREFUSED and friends: an ICMP error for an earlier
                    // send, reported once; the client may still be there.
                    tracing::debug!(peer = %self.peer, "UDP receive: {e}");
                    errors += 1;
                    if errors >= MAX_RECV_ERRORS {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// One uplink event's receive calls (the plan decides how many and how
    /// large). Errs only if the first call does; an error after datagrams
    /// came in ends the event with them (WouldBlock: the socket ran empty).
    fn read_event(&self, pool: &dataplane::BatchPool) -> io::Result<dataplane::PacketBatch> {
        let peer = canonical(self.peer);
        RECV.with_borrow_mut(|storage| {
            let slots = MAX_SLOTS.clamp(1, quinn_udp::BATCH_SIZE);
            if storage.len() < slots {
                storage.resize_with(slots, || vec![0u8; RECV_SLOT]);
            }
            let hint = self.per_msg.load(Ordering::Relaxed);
            let mut plan = RecvPlan::with_hint(usize::try_from(hint).unwrap_or(1));
            let mut meta = [RecvMeta::default(); quinn_udp::BATCH_SIZE];
            let mut batch = pool.get();
            // Bounded: the plan allows at most recv_budget::MAX_CALLS calls.
            loop {
                let asked = plan.slots().min(storage.len());
                if asked == 0 {
                    break;
                }
                let mut slices: Vec<IoSliceMut<'_>> = storage
                    .iter_mut()
                    .take(asked)
                    .map(|b| IoSliceMut::new(b))
                    .collect();
                let mut short = None;
                let got = self.io.socket.try_io(Interest::READABLE, || {
                    let n = self
                        .io
                        .state
                        .recv((&self.io.socket).into(), &mut slices, &mut meta)?;
                    if n < asked {
                        // A short read: the receive queue ran empty (a
                        // non-blocking recvmmsg stops where a read would
                        // block). Saying so (WouldBlock) clears tokio's
                        // readiness, so the next event waits for the
                        // socket's next edge instead of making a read that
                        // fails: 48 % of the receive calls with 100 sessions
                        // (BENCHMARKS.md, 2026-12-07 23:30). Edge-triggered
                        // epoll reports any datagram that came after it.
                        short = Some(n);
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                });
                drop(slices);
                let n = match (got, short) {
                    (_, Some(n)) | (Ok(n), None) => n,
                    (Err(e), None) if plan.datagrams() == 0 => {
                        pool.put(batch);
                        return Err(e);
                    }
                    (Err(e), None) => {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            tracing::debug!(peer = %self.peer, "UDP receive: {e}");
                        }
                        plan.stop();
                        break;
                    }
                };
                let mut datagrams = 0;
                for (m, buf) in meta.iter().zip(storage.iter()).take(n) {
                    let data = buf.get(..m.len).unwrap_or_default();
                    let stride = if m.stride == 0 {
                        m.len.max(1)
                    } else {
                        m.stride
                    };
                    let ours = canonical(m.addr) == peer;
                    for dgram in data.chunks(stride) {
                        datagrams += 1;
                        if ours && !dtls_hello::is_client_hello(dgram) {
                            batch.push(dgram);
                        } else {
                            self.hub.reinject(m.addr, dgram, pool);
                        }
                    }
                }
                plan.record(asked, n, datagrams);
            }
            self.per_msg.store(
                plan.per_msg().try_into().unwrap_or(u32::MAX),
                Ordering::Relaxed,
            );
            Ok(batch)
        })
    }
}

impl Drop for DirectSocket {
    fn drop(&mut self) {
        self.hub
            .counters
            .direct_sockets
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::{DatagramKind, DtlsDatagrams};
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// The next batch the session's socket reads (bounded wait: a test that
    /// gets nothing fails instead of hanging).
    async fn recv_within(
        direct: &DirectSocket,
        pool: &dataplane::BatchPool,
    ) -> dataplane::PacketBatch {
        tokio::time::timeout(Duration::from_secs(5), direct.recv(pool))
            .await
            .expect("a datagram within 5 s")
            .expect("receive")
    }

    #[test]
    fn connected_sockets_keep_half_the_slots_free() {
        assert!(may_open(10, 10));
        assert!(may_open(6, 10));
        assert!(!may_open(5, 10));
        assert!(!may_open(0, 10));
        assert!(!may_open(0, 0));
        // Each tunnel holds a slot for TLS; its socket takes one more only
        // while more than half are free: with 10,000 tunnels under 19,744
        // slots, everyone connects.
        let total = 19_744;
        let (mut tls, mut udp) = (0usize, 0usize);
        for _ in 0..10_000 {
            assert!(tls + udp < total, "a TLS connection would wait");
            tls += 1;
            if may_open(total - tls - udp, total) {
                udp += 1;
            }
        }
        assert!(udp > 4_000 && udp <= total / 4, "{udp}");
    }

    #[test]
    fn addresses_match_across_families() {
        let v6: SocketAddr = "[::]:443".parse().unwrap();
        let v4: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let p4: SocketAddr = "198.18.0.2:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:198.18.0.2]:5000".parse().unwrap();
        assert_eq!(connect_addr(v6, p4), mapped);
        assert_eq!(connect_addr(v4, mapped), p4);
        assert_eq!(connect_addr(v4, p4), p4);
        assert_eq!(canonical(mapped), p4);
    }

    fn hub_with_slots(total: usize) -> (Arc<DtlsHub>, Arc<Semaphore>) {
        let hub = DtlsHub::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sem = Arc::new(Semaphore::new(total));
        hub.set_direct_slots(DirectSlots::new(sem.clone(), total));
        (hub, sem)
    }

    fn client() -> std::net::UdpSocket {
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    }

    /// A ClientHello (shape only) carrying `sid` as its session_id.
    fn hello(sid: &[u8; 32]) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7u8; 32]);
        body.push(32);
        body.extend_from_slice(sid);
        body.push(0);
        let mut hs = vec![1u8];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&[0, 0, 0, 0, 0]);
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut d = vec![22u8, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        d.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        d.extend_from_slice(&hs);
        d
    }

    #[tokio::test]
    async fn the_peer_reaches_its_socket_others_the_hub_and_both_send() {
        let (hub, sem) = hub_with_slots(8);
        let pool = dataplane::BatchPool::default();
        let (a, b) = (client(), client());
        let a_addr = a.local_addr().unwrap();
        let direct = hub.connect_direct(a_addr).expect("within budget");
        assert_eq!(hub.counters.direct_sockets.load(Ordering::Relaxed), 1);
        assert_eq!(sem.available_permits(), 7);
        let hub_addr = hub.local;
        a.send_to(b"from a", hub_addr).unwrap();
        b.send_to(b"from b", hub_addr).unwrap();
        let got = recv_within(&direct, &pool).await;
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![&b"from a"[..]]);
        assert_eq!(hub.counters.direct_rx_datagrams.load(Ordering::Relaxed), 1);
        // b's datagram went to the hub's socket.
        let mut buf = [0u8; 64];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(5), hub.io.socket.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        assert_eq!((&buf[..n], from), (&b"from b"[..], b.local_addr().unwrap()));
        // Replies leave from the DTLS port.
        let mut out = crate::dtls::Outbound::default();
        out.push(b"to a");
        direct.io().send(&hub.counters, a_addr, &mut out).await;
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"to a"[..], hub_addr));
        drop(direct);
        assert_eq!(hub.counters.direct_sockets.load(Ordering::Relaxed), 0);
        assert_eq!(sem.available_permits(), 8);
    }

    #[tokio::test]
    async fn an_event_reads_on_while_the_socket_has_datagrams() {
        let (hub, _sem) = hub_with_slots(8);
        let pool = dataplane::BatchPool::default();
        let a = client();
        let direct = hub.connect_direct(a.local_addr().unwrap()).unwrap();
        // 100 queued: one event takes one super-packet's worth (more than
        // the 16 slots of one call), the rest waits for the next.
        for i in 0..100u8 {
            a.send_to(&[i; 100], hub.local).unwrap();
        }
        let recv = || async {
            tokio::time::timeout(Duration::from_secs(5), direct.recv(&pool))
                .await
                .unwrap()
                .unwrap()
        };
        let first = recv().await;
        assert_eq!(first.len(), crate::recv_budget::DEFAULT_EVENT_DATAGRAMS);
        assert_eq!(first.iter().nth(20), Some(&[20u8; 100][..]));
        let second = recv().await;
        assert_eq!(
            second.len(),
            100 - crate::recv_budget::DEFAULT_EVENT_DATAGRAMS
        );
        assert_eq!(
            hub.counters.direct_rx_datagrams.load(Ordering::Relaxed),
            100
        );
    }

    #[tokio::test]
    async fn a_client_hello_on_the_connected_socket_goes_by_app_id() {
        let (hub, _sem) = hub_with_slots(8);
        let pool = dataplane::BatchPool::default();
        let (tx, mut rx) = mpsc::channel(4);
        let app_id = [9u8; 32];
        hub.register(app_id, 7, tx);
        let a = client();
        let a_addr = a.local_addr().unwrap();
        let direct = hub.connect_direct(a_addr).unwrap();
        // A re-handshake (or a reconnect's first datagram) from the same port.
        a.send_to(&hello(&app_id), hub.local).unwrap();
        a.send_to(b"data", hub.local).unwrap();
        let got = recv_within(&direct, &pool).await;
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![&b"data"[..]]);
        let DtlsDatagrams { peer, batch, kind } = rx.try_recv().expect("hello sorted by App-ID");
        assert_eq!((peer, kind, batch.len()), (a_addr, DatagramKind::Hello, 1));
        assert_eq!(hub.counters.stray_datagrams.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn rebinding_reconnects_to_the_new_port() {
        let (hub, _sem) = hub_with_slots(8);
        let pool = dataplane::BatchPool::default();
        let (a, a2) = (client(), client());
        let mut direct = hub.connect_direct(a.local_addr().unwrap()).unwrap();
        direct.reconnect(a2.local_addr().unwrap()).unwrap();
        a2.send_to(b"new port", hub.local).unwrap();
        let got = recv_within(&direct, &pool).await;
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![&b"new port"[..]]);
        assert_eq!(direct.peer(), a2.local_addr().unwrap());
    }

    #[tokio::test]
    async fn beyond_the_budget_sessions_stay_on_the_hub() {
        let (hub, sem) = hub_with_slots(4);
        let peers: Vec<SocketAddr> = (0..3)
            .map(|i| format!("127.0.0.1:{}", 40000 + i).parse().unwrap())
            .collect();
        // 4 free: one; 3 free: one more; 2 free (half): none.
        let d1 = hub.connect_direct(peers[0]).unwrap();
        let _d2 = hub.connect_direct(peers[1]).unwrap();
        assert!(hub.connect_direct(peers[2]).is_none());
        assert_eq!(hub.counters.direct_fallbacks.load(Ordering::Relaxed), 1);
        assert_eq!(sem.available_permits(), 2);
        drop(d1);
        assert!(hub.connect_direct(peers[2]).is_some());
        // Without a budget (no accept loop): never.
        let bare = DtlsHub::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(bare.connect_direct(peers[0]).is_none());
    }

    fn option(
        fd: &impl std::os::fd::AsRawFd,
        level: libc::c_int,
        name: libc::c_int,
    ) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid fd, a c_int buffer and its length.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt({level}, {name})");
        v
    }

    #[tokio::test]
    async fn no_control_message_is_asked_for_that_nobody_reads() {
        let (hub, _sem) = hub_with_slots(8);
        let pool = dataplane::BatchPool::default();
        let a = client();
        let direct = hub.connect_direct(a.local_addr().unwrap()).unwrap();
        for (what, sock) in [("hub", &hub.io.socket), ("session", &direct.io.socket)] {
            for (level, name, label) in [
                (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, "SO_TIMESTAMPNS"),
                (libc::IPPROTO_IP, libc::IP_PKTINFO, "IP_PKTINFO"),
                (libc::IPPROTO_IP, libc::IP_RECVTOS, "IP_RECVTOS"),
            ] {
                assert_eq!(option(sock, level, name), 0, "{what}: {label}");
            }
            // Still on: the receive path splits GRO trains by it.
            assert_eq!(
                option(sock, libc::SOL_UDP, libc::UDP_GRO),
                1,
                "{what}: UDP_GRO"
            );
        }
        // And datagrams still arrive, with their sender.
        a.send_to(b"quiet", hub.local).unwrap();
        let got = recv_within(&direct, &pool).await;
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![&b"quiet"[..]]);
    }
}

//! The DTLS data channel (protocol.md section 3): DTLS 1.2 with a PSK taken from
//! the session's CSTP TLS exporter, served by OpenSSL over our own batched UDP I/O.
//!
//! One task receives datagrams in batches (recvmmsg/GRO via quinn-udp) and sorts
//! them by peer address to the owning session's task; a ClientHello from an unknown
//! address is routed by the App-ID in its session_id. Each session task owns its
//! OpenSSL state, decrypts and encrypts, and sends its datagrams in GSO batches.

use rustc_hash::FxHashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use dashmap::DashMap;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslStream,
    SslVersion,
};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::proto::dtls_hello;
use crate::proto::dtls_record::{self as record, Opened, RecordOpener, RecordSealer};

pub const APP_ID_LEN: usize = 32;
pub type AppId = [u8; APP_ID_LEN];

/// Label of the keying-material exporter openconnect derives the PSK from.
pub const PSK_EXPORTER_LABEL: &[u8] = b"EXPORTER-openconnect-psk";

/// GnuTLS offers these for PSK-NEGOTIATE; AES-GCM first (AES-NI), then ChaCha20.
const PSK_CIPHERS: &str = "PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305";

/// Datagrams for one session from one peer address.
#[derive(Debug)]
pub struct DtlsDatagrams {
    pub peer: SocketAddr,
    pub batch: dataplane::PacketBatch,
    pub kind: DatagramKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// From the session's current DTLS peer.
    Known,
    /// A ClientHello carrying the session's App-ID: start a new DTLS state.
    Hello,
    /// From an unknown address with the session's public IP: maybe a NAT
    /// rebinding; accept the new address only if a record authenticates.
    Probe,
}

#[derive(Debug, Clone)]
struct Port {
    generation: u64,
    tx: mpsc::Sender<DtlsDatagrams>,
}

#[derive(Debug, Default)]
pub struct DtlsCounters {
    pub rx_datagrams: AtomicU64,
    pub tx_datagrams: AtomicU64,
    pub unknown_peer_drops: AtomicU64,
    pub queue_full_drops: AtomicU64,
    pub tx_errors: AtomicU64,
    /// Application-data records our record layer dropped: replayed, too old,
    /// wrong epoch, truncated, malformed or failing authentication.
    pub record_drops: AtomicU64,
    /// Sessions' connected sockets open now (`dtls_direct.rs`).
    pub direct_sockets: AtomicU64,
    /// Associations left on the hub path because the fd budget for
    /// connected sockets was spent (or creating one failed).
    pub direct_fallbacks: AtomicU64,
    /// Datagrams sessions read from their connected sockets (the rest of
    /// `rx_datagrams` came through the hub).
    pub direct_rx_datagrams: AtomicU64,
    /// Datagrams a connected socket handed back to the hub's sorting.
    pub stray_datagrams: AtomicU64,
}

/// A UDP socket with quinn-udp's batched I/O (recvmmsg/GRO, GSO): the hub's,
/// or a session's connected one (`dtls_direct.rs`).
pub struct UdpIo {
    pub(crate) socket: UdpSocket,
    pub(crate) state: UdpSocketState,
}

/// The UDP side shared by all sessions.
pub struct DtlsHub {
    pub(crate) io: UdpIo,
    pub port: u16,
    /// The address the hub is bound to; sessions' connected sockets bind the same.
    pub(crate) local: SocketAddr,
    /// The fd budget for sessions' connected sockets; unset: none (hub only).
    pub(crate) direct_slots: std::sync::OnceLock<crate::dtls_direct::DirectSlots>,
    server: DtlsServerContext,
    by_app_id: DashMap<AppId, Port>,
    by_peer: DashMap<SocketAddr, Port>,
    /// The peers of `by_peer` by IP, to offer a datagram from a new port of a
    /// known address (NAT rebinding) to every session behind that address.
    by_ip: DashMap<std::net::IpAddr, Vec<SocketAddr>>,
    /// The peers of `by_peer` by connection generation, so that a connection's
    /// peers are found without walking every peer (issue 12: no work
    /// proportional to the number of sessions on connect or disconnect).
    by_generation: DashMap<u64, Vec<SocketAddr>>,
    pub counters: DtlsCounters,
    /// Shunned sources (threat detection): their ClientHellos are dropped unread.
    shuns: std::sync::OnceLock<Arc<crate::threat::Threats>>,
}

impl DtlsHub {
    pub fn bind(addr: SocketAddr) -> Result<Arc<Self>> {
        // SO_REUSEADDR: each session's connected socket binds this address
        // too (`dtls_direct.rs`); Linux allows that only if both set it. It
        // does not share the port with another process's unconnected socket
        // unless that one sets it as well; SO_REUSEPORT would also need the
        // same effective uid, which a headend that drops root (--user) may
        // not keep across a restart.
        let std_sock = crate::dtls_direct::reusable_udp(addr)
            .with_context(|| format!("binding UDP {addr} for DTLS"))?;
        let state = UdpSocketState::new((&std_sock).into())?;
        crate::dtls_direct::drop_unread_ancillary(&std_sock, addr);
        // Room for bursts while a session task is busy.
        let _ = state.set_recv_buffer_size((&std_sock).into(), 8 << 20);
        let _ = state.set_send_buffer_size((&std_sock).into(), 8 << 20);
        let socket = UdpSocket::from_std(std_sock)?;
        let local = socket.local_addr()?;
        Ok(Arc::new(Self {
            io: UdpIo { socket, state },
            port: local.port(),
            local,
            direct_slots: std::sync::OnceLock::new(),
            server: DtlsServerContext::new()?,
            by_app_id: DashMap::new(),
            by_peer: DashMap::new(),
            by_ip: DashMap::new(),
            by_generation: DashMap::new(),
            counters: DtlsCounters::default(),
            shuns: std::sync::OnceLock::new(),
        }))
    }

    pub fn set_shuns(&self, threats: Arc<crate::threat::Threats>) {
        let _ = self.shuns.set(threats);
    }

    pub fn gso_segments(&self) -> usize {
        self.io.state.max_gso_segments()
    }

    /// Registers a CONNECT's App-ID; datagrams for it go to `tx`.
    pub fn register(&self, app_id: AppId, generation: u64, tx: mpsc::Sender<DtlsDatagrams>) {
        self.by_app_id.insert(app_id, Port { generation, tx });
    }

    /// Removes everything a connection registered.
    pub fn unregister(&self, app_id: &AppId, generation: u64) {
        self.by_app_id
            .remove_if(app_id, |_, p| p.generation == generation);
        self.remove_generation_peers(generation, None);
    }

    fn insert_peer(&self, peer: SocketAddr, port: Port) {
        let generation = port.generation;
        if let Some(old) = self.by_peer.insert(peer, port)
            && old.generation != generation
        {
            // The address moved to another connection (a new handshake).
            self.forget_generation_peer(old.generation, peer);
        }
        let mut v = self.by_ip.entry(peer.ip()).or_default();
        if !v.contains(&peer) {
            v.push(peer);
        }
        drop(v);
        let mut g = self.by_generation.entry(generation).or_default();
        if !g.contains(&peer) {
            g.push(peer);
        }
    }

    fn forget_generation_peer(&self, generation: u64, peer: SocketAddr) {
        if let Some(mut g) = self.by_generation.get_mut(&generation) {
            g.retain(|a| *a != peer);
        }
        self.by_generation
            .remove_if(&generation, |_, v| v.is_empty());
    }

    /// Removes the peers of connection `generation` (all, or all but `keep`):
    /// work proportional to that connection's peers (usually one).
    fn remove_generation_peers(&self, generation: u64, keep: Option<SocketAddr>) {
        let Some((_, peers)) = self.by_generation.remove(&generation) else {
            return;
        };
        let mut kept = Vec::new();
        for a in peers {
            if Some(a) == keep {
                kept.push(a);
                continue;
            }
            if self
                .by_peer
                .remove_if(&a, |_, p| p.generation == generation)
                .is_none()
            {
                continue;
            }
            let empty = match self.by_ip.get_mut(&a.ip()) {
                Some(mut v) => {
                    v.retain(|x| *x != a);
                    v.is_empty()
                }
                None => false,
            };
            if empty {
                self.by_ip.remove_if(&a.ip(), |_, v| v.is_empty());
            }
        }
        if !kept.is_empty() {
            self.by_generation
                .entry(generation)
                .or_default()
                .extend(kept);
        }
    }

    /// Routes `peer`'s datagrams to the connection of `generation` (after a
    /// handshake or an authenticated record from a new address).
    pub fn bind_peer(&self, peer: SocketAddr, generation: u64, app_id: &AppId) {
        if let Some(p) = self
            .by_app_id
            .get(app_id)
            .filter(|p| p.generation == generation)
        {
            let port = p.clone();
            drop(p);
            self.remove_generation_peers(generation, Some(peer));
            self.insert_peer(peer, port);
        }
    }

    /// Connections registered for DTLS (`show counters`).
    pub fn app_id_count(&self) -> usize {
        self.by_app_id.len()
    }

    /// Peers routed at all (tests and `show counters`).
    pub fn peer_count(&self) -> usize {
        self.by_peer.len()
    }

    /// A fresh server-side DTLS state keyed with `psk`.
    pub fn new_channel(&self, psk: [u8; 32], peer: SocketAddr, mtu: u32) -> Result<DtlsChannel> {
        self.server.channel(psk, peer, mtu)
    }

    /// Receives forever, sorting datagrams to sessions.
    pub async fn run_receiver(self: Arc<Self>, pool: dataplane::BatchPool) -> io::Result<()> {
        let batch = quinn_udp::BATCH_SIZE.max(1);
        let gro = self.io.state.gro_segments().max(1);
        let mut storage: Vec<Vec<u8>> = (0..batch).map(|_| vec![0u8; 1500 * gro.max(1)]).collect();
        let mut meta = vec![RecvMeta::default(); batch];
        let mut pending: Pending = FxHashMap::default();
        // Known peers already looked up in this batch, to their generation: the
        // rest of their datagrams skip the shared map (one lookup per peer per
        // batch, not per datagram). Cleared with every batch.
        // FxHash: these maps live for one receive batch (at most a batch of
        // entries), so colliding addresses cannot make them grow costly; SipHash
        // showed as 2 % of the headend in `perf` (BENCHMARKS.md).
        let mut seen: FxHashMap<SocketAddr, u64> = FxHashMap::default();
        loop {
            self.io.socket.readable().await?;
            let n = {
                let mut slices: Vec<IoSliceMut<'_>> =
                    storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                match self.io.socket.try_io(Interest::READABLE, || {
                    self.io
                        .state
                        .recv((&self.io.socket).into(), &mut slices, &mut meta)
                }) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        tracing::debug!("UDP receive: {e}");
                        continue;
                    }
                }
            };
            for (m, buf) in meta.iter().zip(&storage).take(n) {
                let data = buf.get(..m.len).unwrap_or_default();
                let stride = if m.stride == 0 {
                    m.len.max(1)
                } else {
                    m.stride
                };
                for dgram in data.chunks(stride) {
                    self.sort(m.addr, dgram, &mut pending, &mut seen, &pool);
                }
            }
            seen.clear();
            self.dispatch(&mut pending, &pool);
        }
    }

    /// Hands each session its sorted datagrams (one channel send per session
    /// per receive batch).
    fn dispatch(&self, pending: &mut Pending, pool: &dataplane::BatchPool) {
        for ((peer, _), (port, b, kind)) in pending.drain() {
            let count = b.len() as u64;
            self.counters
                .rx_datagrams
                .fetch_add(count, Ordering::Relaxed);
            let msg = DtlsDatagrams {
                peer,
                batch: b,
                kind,
            };
            if let Err(e) = port.tx.try_send(msg) {
                self.counters
                    .queue_full_drops
                    .fetch_add(count, Ordering::Relaxed);
                let (mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) = e;
                pool.put(m.batch);
            }
        }
    }

    /// Sorts a datagram that a session's connected socket received but that
    /// is not its business (a ClientHello, which goes by App-ID, or one from
    /// another peer that arrived between its bind and its connect) as if the
    /// hub had received it.
    pub fn reinject(&self, peer: SocketAddr, dgram: &[u8], pool: &dataplane::BatchPool) {
        self.counters
            .stray_datagrams
            .fetch_add(1, Ordering::Relaxed);
        let mut pending = Pending::default();
        let mut seen = FxHashMap::default();
        self.sort(peer, dgram, &mut pending, &mut seen, pool);
        self.dispatch(&mut pending, pool);
    }

    fn sort(
        &self,
        peer: SocketAddr,
        dgram: &[u8],
        pending: &mut Pending,
        seen: &mut FxHashMap<SocketAddr, u64>,
        pool: &dataplane::BatchPool,
    ) {
        if dtls_hello::is_client_hello(dgram)
            && self.shuns.get().is_some_and(|t| t.is_shunned(peer.ip()))
        {
            self.counters
                .unknown_peer_drops
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A ClientHello always goes by App-ID, even from a known address: the
        // client re-handshakes after DTLS died or after a reconnect.
        let hello_port = dtls_hello::client_hello_session_id(dgram)
            .and_then(|sid| <AppId>::try_from(sid).ok())
            .and_then(|id| self.by_app_id.get(&id).map(|p| p.clone()));
        if let Some(p) = hello_port {
            // The rest of this handshake comes from the same address.
            self.insert_peer(peer, p.clone());
            seen.remove(&peer);
            push(pending, peer, p, DatagramKind::Hello, dgram, pool);
            return;
        }
        if let Some(entry) = seen
            .get(&peer)
            .and_then(|generation| pending.get_mut(&(peer, *generation)))
        {
            entry.1.push(dgram);
            return;
        }
        if let Some(p) = self.by_peer.get(&peer).map(|p| p.clone()) {
            seen.insert(peer, p.generation);
            push(pending, peer, p, DatagramKind::Known, dgram, pool);
            return;
        }
        // A new port of a known address: offer it to every session there; only
        // the one whose key authenticates it follows the new port.
        let candidates: Vec<Port> = self
            .by_ip
            .get(&peer.ip())
            .map(|v| {
                v.iter()
                    .filter_map(|a| self.by_peer.get(a).map(|p| p.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if candidates.is_empty() {
            self.counters
                .unknown_peer_drops
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut seen = Vec::with_capacity(candidates.len());
        for p in candidates {
            if !seen.contains(&p.generation) {
                seen.push(p.generation);
                push(pending, peer, p, DatagramKind::Probe, dgram, pool);
            }
        }
    }

    /// Sends datagrams stored back to back, in GSO runs of equal size.
    pub async fn send(&self, peer: SocketAddr, out: &mut Outbound) {
        self.io.send(&self.counters, peer, out).await;
    }
}

impl UdpIo {
    /// Sends datagrams stored back to back, in GSO runs of equal size.
    pub async fn send(&self, counters: &DtlsCounters, peer: SocketAddr, out: &mut Outbound) {
        let n = out.len();
        self.send_front(counters, peer, out, n).await;
    }

    /// Sends the first `count` unsent datagrams of `out` (a paced session's
    /// budget), in GSO runs of equal size; the rest stay queued. The ones a
    /// send failed for are dropped (counted in `tx_errors`, not in
    /// `tx_datagrams`). Returns the bytes sent.
    pub async fn send_front(
        &self,
        counters: &DtlsCounters,
        peer: SocketAddr,
        out: &mut Outbound,
        count: usize,
    ) -> usize {
        let max_segs = self.state.max_gso_segments().max(1);
        let lens = out.pending_lens();
        let lens = lens.get(..count.min(lens.len())).unwrap_or_default();
        let mut start = out.head_off;
        let mut sent = 0usize;
        for (i, j) in gso_runs(lens, max_segs) {
            let bytes: usize = lens[i..j].iter().sum();
            let contents = out.buf.get(start..start + bytes).unwrap_or_default();
            let t = Transmit {
                destination: peer,
                ecn: None,
                contents,
                segment_size: (j - i > 1).then_some(lens[i]),
                src_ip: None,
            };
            let result = loop {
                if let Err(e) = self.socket.writable().await {
                    break Err(e);
                }
                match self.socket.try_io(Interest::WRITABLE, || {
                    self.state.try_send((&self.socket).into(), &t)
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => break r,
                }
            };
            // Only what the kernel took counts as sent.
            let counter = match result {
                Ok(()) => {
                    sent += bytes;
                    &counters.tx_datagrams
                }
                Err(e) => {
                    tracing::debug!(%peer, "UDP send: {e}");
                    &counters.tx_errors
                }
            };
            counter.fetch_add((j - i) as u64, Ordering::Relaxed);
            start += bytes;
        }
        let (n, bytes) = (lens.len(), start - out.head_off);
        out.advance(n, bytes);
        sent
    }
}

/// Splits datagram lengths into GSO sends `[i, j)`: a run of equal sizes, possibly
/// ended by one shorter datagram, at most `max_segs` long and 64 KiB in total.
pub fn gso_runs(lens: &[usize], max_segs: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        if i >= lens.len() {
            return None;
        }
        let size = lens[i].max(1);
        let run_max = max_segs.min(MAX_GSO_BYTES / size).max(1);
        let mut j = i + 1;
        while j < lens.len() && j - i < run_max && lens[j] == size {
            j += 1;
        }
        if j < lens.len() && j - i < run_max && lens[j] < size {
            j += 1;
        }
        let run = (i, j);
        i = j;
        Some(run)
    })
}

/// The OpenSSL server context shared by every association; each association
/// carries its own PSK in its ex-data.
pub struct DtlsServerContext {
    ctx: SslContext,
    psk_index: openssl::ex_data::Index<Ssl, [u8; 32]>,
}

impl DtlsServerContext {
    pub fn new() -> Result<Self> {
        let psk_index = Ssl::new_ex_index::<[u8; 32]>()?;
        Ok(Self {
            ctx: build_context(psk_index)?,
            psk_index,
        })
    }

    /// A fresh server-side association keyed with `psk`.
    pub fn channel(&self, psk: [u8; 32], peer: SocketAddr, mtu: u32) -> Result<DtlsChannel> {
        let mut ssl = Ssl::new(&self.ctx)?;
        ssl.set_ex_data(self.psk_index, psk);
        ssl.set_mtu(mtu)?;
        ssl.set_accept_state();
        let stream = SslStream::new(ssl, DatagramIo::default())?;
        Ok(DtlsChannel::with_stream(stream, peer))
    }
}

/// Datagrams of one receive batch, per (peer, connection generation).
type Pending = FxHashMap<(SocketAddr, u64), (Port, dataplane::PacketBatch, DatagramKind)>;

fn push(
    pending: &mut Pending,
    peer: SocketAddr,
    port: Port,
    kind: DatagramKind,
    dgram: &[u8],
    pool: &dataplane::BatchPool,
) {
    let entry = pending
        .entry((peer, port.generation))
        .or_insert_with(|| (port, pool.get(), kind));
    // A hello in the batch resets the association: it wins over other kinds.
    if kind == DatagramKind::Hello {
        entry.2 = kind;
    }
    entry.1.push(dgram);
}

fn build_context(psk_index: openssl::ex_data::Index<Ssl, [u8; 32]>) -> Result<SslContext> {
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(PSK_CIPHERS)?;
    // Our BIO is not a socket: the MTU comes from the CONNECT, not a query.
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
    // OpenSSL frees an association's ~34 KiB of record buffers while it has
    // nothing in flight (an idle session then holds none).
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_psk_server_callback(move |ssl, identity, out| {
        // openconnect's identity is "psk"; the key is the session's exporter.
        let Some(psk) = ssl.ex_data(psk_index) else {
            return Ok(0);
        };
        if identity.is_some_and(|i| i != b"psk") {
            tracing::debug!("DTLS PSK identity is not \"psk\"");
        }
        let n = psk.len().min(out.len());
        out[..n].copy_from_slice(&psk[..n]);
        Ok(n)
    });
    Ok(b.build())
}

/// The kernel refuses a GSO send whose payload exceeds the 64 KiB IP limit.
const MAX_GSO_BYTES: usize = 65_000;

/// Datagrams produced by OpenSSL, stored back to back for GSO.
///
/// A paced session sends a prefix at a time: `head` datagrams (`head_off`
/// bytes) at the front are already sent and wait only for the rest to go.
#[derive(Debug, Default)]
pub struct Outbound {
    buf: Vec<u8>,
    lens: Vec<usize>,
    head: usize,
    head_off: usize,
}

impl Outbound {
    pub fn is_empty(&self) -> bool {
        self.head >= self.lens.len()
    }

    /// Datagrams not sent yet.
    pub fn len(&self) -> usize {
        self.lens.len().saturating_sub(self.head)
    }

    /// Bytes not sent yet.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len().saturating_sub(self.head_off)
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.lens.clear();
        self.head = 0;
        self.head_off = 0;
    }

    /// Lengths of the datagrams not sent yet.
    fn pending_lens(&self) -> &[usize] {
        self.lens.get(self.head..).unwrap_or_default()
    }

    /// Marks `n` datagrams (`bytes` bytes) at the front as sent.
    fn advance(&mut self, n: usize, bytes: usize) {
        self.head += n;
        self.head_off += bytes;
        if self.head >= self.lens.len() {
            self.clear();
        }
    }

    /// How many datagrams at the front fit in `budget` bytes.
    pub fn fitting(&self, budget: usize) -> usize {
        let mut sum = 0usize;
        self.pending_lens()
            .iter()
            .take_while(|&&l| {
                sum += l;
                sum <= budget
            })
            .count()
    }

    /// Appends one datagram.
    pub fn push(&mut self, d: &[u8]) {
        self.buf.extend_from_slice(d);
        self.lens.push(d.len());
    }

    /// Hands each datagram to `send` in order, then forgets them (no copy).
    pub fn drain(&mut self, mut send: impl FnMut(&[u8])) {
        for d in self.datagrams() {
            send(d);
        }
        self.clear();
    }

    /// Frees the buffer a burst grew (an idle session holds none).
    pub fn release(&mut self) {
        if self.is_empty() {
            *self = Self::default();
        }
    }

    /// The datagrams queued and not sent yet, in order.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        let mut off = self.head_off;
        self.pending_lens().iter().map(move |&l| {
            let d = self.buf.get(off..off + l).unwrap_or_default();
            off += l;
            d
        })
    }

    /// Copies the datagrams out and clears (tests and tools, not the data path).
    pub fn take_datagrams(&mut self) -> Vec<Vec<u8>> {
        let out = self.datagrams().map(<[u8]>::to_vec).collect();
        self.clear();
        out
    }
}

/// The BIO under OpenSSL: one datagram in at a time, datagrams out appended.
#[derive(Debug, Default)]
pub struct DatagramIo {
    inbound: Vec<u8>,
    has_inbound: bool,
    pub out: Outbound,
}

impl DatagramIo {
    /// The one datagram OpenSSL reads next.
    pub fn set_inbound(&mut self, dgram: &[u8]) {
        self.inbound.clear();
        self.inbound.extend_from_slice(dgram);
        self.has_inbound = true;
    }

    /// Forgets a datagram OpenSSL did not read.
    pub fn clear_inbound(&mut self) {
        self.has_inbound = false;
    }
}

impl io::Read for DatagramIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.has_inbound {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.has_inbound = false;
        let n = self.inbound.len().min(buf.len());
        buf[..n].copy_from_slice(&self.inbound[..n]);
        Ok(n)
    }
}

impl io::Write for DatagramIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.buf.extend_from_slice(buf);
        self.out.lens.push(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One DTLS association with a client.
pub struct DtlsChannel {
    /// OpenSSL's side: the handshake, then (non-AEAD suites) every record.
    /// With our record layer it is dropped once the client's first
    /// authenticated data record proves the handshake complete on both sides
    /// (issue 12: ~67 KiB of OpenSSL state per idle session otherwise).
    stream: Option<SslStream<DatagramIo>>,
    /// The outbound queue once `stream` is gone.
    out: Outbound,
    /// OpenSSL's last handshake flight (ChangeCipherSpec + Finished), kept
    /// after OpenSSL is freed until the client's first data record shows it
    /// arrived: if it was lost, the client retransmits its own last flight
    /// and gets this copy again (RFC 6347 §4.2.4). A verbatim copy is what
    /// the client needs: records of it that did arrive are dropped by its
    /// replay window, the lost ones are new to it. ~100 bytes.
    last_flight: Option<Outbound>,
    pub peer: SocketAddr,
    pub established: bool,
    /// The negotiated suite, kept when OpenSSL goes.
    cipher: Option<&'static str>,
    /// Once established with an AEAD suite, application-data records are
    /// sealed and opened by our record layer (issue 13 item 2); OpenSSL keeps
    /// alerts, handshake retransmissions and re-handshakes until it is
    /// dropped. `None`: every record goes through OpenSSL (non-AEAD suites,
    /// e.g. AES-CBC in resume mode).
    records: Option<Box<RecordLayer>>,
}

struct RecordLayer {
    sealer: RecordSealer,
    opener: RecordOpener,
    /// Drops already added to the hub's counter.
    drops_reported: u64,
}

/// What a datagram turned into.
#[derive(Debug, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake just completed.
    Established,
    /// The handshake failed, or the peer closed the association; the state
    /// is useless.
    Failed(String),
}

/// AlertDescription.close_notify and AlertLevel.fatal (RFC 5246 §7.2).
const ALERT_CLOSE_NOTIFY: u8 = 0;
const ALERT_LEVEL_FATAL: u8 = 2;

impl DtlsChannel {
    fn with_stream(stream: SslStream<DatagramIo>, peer: SocketAddr) -> Self {
        Self {
            stream: Some(stream),
            out: Outbound::default(),
            last_flight: None,
            peer,
            established: false,
            cipher: None,
            records: None,
        }
    }

    /// An association over a server `Ssl` set up elsewhere (resume mode,
    /// `dtls_resume.rs`), in accept state.
    pub fn from_ssl(mut ssl: Ssl, peer: SocketAddr) -> Result<Self> {
        ssl.set_accept_state();
        let stream = SslStream::new(ssl, DatagramIo::default())?;
        Ok(Self::with_stream(stream, peer))
    }

    /// Whether data records bypass OpenSSL.
    pub fn own_records(&self) -> bool {
        self.records.is_some()
    }

    /// Whether OpenSSL's per-association state is still held.
    pub fn holds_openssl(&self) -> bool {
        self.stream.is_some()
    }

    /// Drops counted by the record layer since the last call.
    pub fn take_record_drops(&mut self) -> u64 {
        let Some(rl) = self.records.as_mut() else {
            return 0;
        };
        let total = rl.opener.counters().dropped();
        let new = total.saturating_sub(rl.drops_reported);
        rl.drops_reported = total;
        new
    }

    /// The handshake just finished: take over data records if the suite is
    /// an AEAD one. OpenSSL's last flight (its Finished, epoch 1) is still
    /// queued: the sealer notes its sequence numbers so ours never reuse them.
    fn take_over_records(&mut self) {
        let Some(stream) = self.stream.as_ref() else {
            return;
        };
        self.cipher = stream.ssl().current_cipher().map(|c| c.name());
        match crate::dtls_keys::server_record_layer(stream.ssl(), record::FIRST_EPOCH) {
            Ok((mut sealer, opener)) => {
                for d in stream.get_ref().out.datagrams() {
                    sealer.observe_openssl(d);
                }
                self.records = Some(Box::new(RecordLayer {
                    sealer,
                    opener,
                    drops_reported: 0,
                }));
            }
            Err(e) => tracing::debug!("DTLS records stay with OpenSSL: {e}"),
        }
    }

    /// The handshake is complete and our record layer has the keys: nothing
    /// of this association needs OpenSSL any more (issue 12: its state was
    /// ~67 KiB per idle session). Data records are ours; alerts are read by
    /// [`RecordOpener::open_control`]; a lost last flight is answered from
    /// [`Self::last_flight`]; a new handshake is a new ClientHello, routed to a
    /// new association by App-ID. Frees OpenSSL's state, keeping the
    /// datagrams it queued (its last flight, not sent yet), in order.
    fn release_openssl(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let mut queued = std::mem::take(&mut stream.get_mut().out);
            let mut flight = Outbound::default();
            for d in queued.datagrams() {
                flight.push(d);
            }
            self.last_flight = Some(flight);
            for d in self.out.datagrams() {
                queued.push(d);
            }
            self.out = queued;
        }
    }

    /// Feeds one datagram that may be modified: with our record layer its
    /// application data is decrypted in place (no copy) and passed to
    /// `on_record`; other records (alerts, retransmitted handshake) go to
    /// OpenSSL while it is held, and are read here after. Otherwise the same
    /// as [`Self::input`].
    pub fn input_mut(
        &mut self,
        dgram: &mut [u8],
        rbuf: &mut [u8],
        mut on_record: impl FnMut(&[u8]),
    ) -> Option<DtlsEvent> {
        if !(self.established && self.records.is_some()) {
            return self.input_openssl(dgram, rbuf, on_record);
        }
        let mut event = None;
        let mut resend = false;
        let Self {
            stream,
            records,
            last_flight,
            ..
        } = self;
        let rl = records.as_mut()?;
        let mut at = 0;
        // Bounded: every call moves the cursor forward or ends the datagram.
        while let Some(o) = rl.opener.open_next(dgram, &mut at) {
            match o {
                Opened::AppData(r) => {
                    // The client has our Finished: no retransmission needed.
                    *last_flight = None;
                    on_record(dgram.get(r).unwrap_or_default());
                }
                Opened::ForOpenssl(r) => {
                    let e = match stream.as_mut() {
                        Some(s) => feed_openssl(s, rl, dgram, r, rbuf, &mut on_record),
                        None => match read_control(rl, dgram, r) {
                            Control::Closed(why) => Some(DtlsEvent::Failed(why)),
                            Control::Retransmitted => {
                                resend = last_flight.is_some();
                                None
                            }
                            Control::Ignored => None,
                        },
                    };
                    if e.is_some() {
                        event = e;
                        break;
                    }
                }
                Opened::Dropped(why) => {
                    tracing::trace!("DTLS record dropped: {}", why.as_str());
                }
            }
        }
        // At most one copy per datagram received: no amplification.
        if resend && let Some(flight) = self.last_flight.as_ref() {
            tracing::debug!("DTLS: client repeated its last flight; sending ours again");
            for d in flight.datagrams() {
                self.out.push(d);
            }
        }
        event
    }

    /// The negotiated suite's OpenSSL name, once established.
    pub fn cipher_name(&self) -> Option<&'static str> {
        self.cipher.or_else(|| {
            self.stream
                .as_ref()
                .and_then(|s| s.ssl().current_cipher().map(|c| c.name()))
        })
    }

    /// Feeds one datagram; decrypted records are passed to `on_record`.
    /// Returns an event when the handshake completes or fails. (Copies the
    /// datagram once our record layer has taken over: tests and tools; the
    /// data path uses [`Self::input_mut`].)
    pub fn input(
        &mut self,
        dgram: &[u8],
        rbuf: &mut [u8],
        on_record: impl FnMut(&[u8]),
    ) -> Option<DtlsEvent> {
        if self.established && self.records.is_some() {
            let mut d = dgram.to_vec();
            return self.input_mut(&mut d, rbuf, on_record);
        }
        self.input_openssl(dgram, rbuf, on_record)
    }

    /// A datagram for OpenSSL: the handshake, or every record of a non-AEAD
    /// suite.
    fn input_openssl(
        &mut self,
        dgram: &[u8],
        rbuf: &mut [u8],
        mut on_record: impl FnMut(&[u8]),
    ) -> Option<DtlsEvent> {
        let stream = self.stream.as_mut()?;
        stream.get_mut().set_inbound(dgram);
        let mut event = None;
        if !self.established {
            match stream.accept() {
                Ok(()) => {
                    self.established = true;
                    event = Some(DtlsEvent::Established);
                    self.take_over_records();
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {
                    tracing::trace!(
                        out = stream.get_ref().out.len(),
                        "DTLS handshake in progress: {e}"
                    );
                    return None;
                }
                Err(e) => return Some(DtlsEvent::Failed(e.to_string())),
            }
        }
        let stream = self.stream.as_mut()?;
        loop {
            match stream.ssl_read(rbuf) {
                Ok(0) => break,
                Ok(n) => on_record(rbuf.get(..n).unwrap_or_default()),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    return Some(DtlsEvent::Failed("peer sent close_notify".into()));
                }
                Err(_) => break,
            }
        }
        stream.get_mut().clear_inbound();
        if event == Some(DtlsEvent::Established) && self.records.is_some() {
            self.release_openssl();
        }
        event
    }

    /// Encrypts one record (type byte + payload) into the outbound queue:
    /// with our record layer, copied once into the queue and sealed there.
    pub fn write_record(&mut self, payload: &[u8]) -> bool {
        if !self.established {
            return false;
        }
        let Some(rl) = self.records.as_mut() else {
            return self
                .stream
                .as_mut()
                .is_some_and(|s| s.ssl_write(payload).is_ok());
        };
        let out = match self.stream.as_mut() {
            Some(s) => &mut s.get_mut().out,
            None => &mut self.out,
        };
        let hr = rl.sealer.headroom();
        let start = out.buf.len();
        out.buf.resize(start + hr, 0);
        out.buf.extend_from_slice(payload);
        out.buf.resize(out.buf.len() + record::TAG_LEN, 0);
        let slot = out.buf.get_mut(start..).unwrap_or_default();
        match rl.sealer.seal(slot, hr..hr + payload.len()) {
            Ok(r) => {
                out.lens.push(r.len());
                true
            }
            Err(e) => {
                tracing::debug!("DTLS seal: {e}");
                out.buf.truncate(start);
                false
            }
        }
    }

    pub fn outbound(&mut self) -> &mut Outbound {
        match self.stream.as_mut() {
            Some(s) => &mut s.get_mut().out,
            None => &mut self.out,
        }
    }

    /// Frees what a burst made this association hold: its outbound datagrams
    /// (up to a batch, ~90 KiB) and its inbound copy. OpenSSL's own record
    /// buffers go by themselves (`SSL_MODE_RELEASE_BUFFERS`).
    pub fn release_buffers(&mut self) {
        self.out.release();
        if let Some(stream) = self.stream.as_mut() {
            let io = stream.get_mut();
            io.out.release();
            if !io.has_inbound {
                io.inbound = Vec::new();
            }
        }
    }
}

/// A record for OpenSSL while it is held (alert, retransmitted handshake):
/// fed as one datagram; what OpenSSL answers is noted by our sealer.
fn feed_openssl(
    stream: &mut SslStream<DatagramIo>,
    rl: &mut RecordLayer,
    dgram: &[u8],
    r: std::ops::Range<usize>,
    rbuf: &mut [u8],
    on_record: &mut impl FnMut(&[u8]),
) -> Option<DtlsEvent> {
    let before = stream.get_ref().out.len();
    stream
        .get_mut()
        .set_inbound(dgram.get(r).unwrap_or_default());
    let mut closed = false;
    loop {
        match stream.ssl_read(rbuf) {
            Ok(0) => break,
            Ok(n) => on_record(rbuf.get(..n).unwrap_or_default()),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    stream.get_mut().clear_inbound();
    for d in stream.get_ref().out.datagrams().skip(before) {
        rl.sealer.observe_openssl(d);
    }
    closed.then(|| DtlsEvent::Failed("peer sent close_notify".into()))
}

/// What a non-data record meant once OpenSSL is gone.
#[derive(Debug, PartialEq, Eq)]
enum Control {
    /// close_notify or a fatal alert: the association is over.
    Closed(String),
    /// The client's Finished again: it did not get our last flight.
    Retransmitted,
    Ignored,
}

/// A non-data record after OpenSSL is gone. An authenticated close_notify or
/// fatal alert ends the association (RFC 5246 §7.2.1-2); a warning alert is
/// ignored; an authenticated handshake message of this epoch is the client's
/// Finished retransmitted (RFC 6347 §4.2.4; openconnect and AnyConnect never
/// renegotiate, a new handshake comes as a new ClientHello). Epoch-0 records
/// (the rest of that flight: ClientKeyExchange, ChangeCipherSpec) cannot be
/// authenticated and are ignored unread.
fn read_control(rl: &mut RecordLayer, dgram: &mut [u8], r: std::ops::Range<usize>) -> Control {
    let Some(header) = dgram.get(r.clone()).and_then(record::RecordHeader::parse) else {
        return Control::Ignored;
    };
    if header.epoch != rl.opener.epoch() {
        return Control::Ignored;
    }
    match header.content_type {
        record::ContentType::Alert => {
            let Ok(p) = rl.opener.open_control(dgram, r) else {
                return Control::Ignored;
            };
            match dgram.get(p).unwrap_or_default() {
                [_, ALERT_CLOSE_NOTIFY] => Control::Closed("peer sent close_notify".into()),
                [ALERT_LEVEL_FATAL, desc] => {
                    Control::Closed(format!("peer sent fatal alert {desc}"))
                }
                _ => Control::Ignored,
            }
        }
        record::ContentType::Handshake => match rl.opener.open_control(dgram, r) {
            Ok(_) => Control::Retransmitted,
            Err(_) => Control::Ignored,
        },
        _ => Control::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ssl::SslConnector;

    /// A DTLS 1.2 PSK client shaped like openconnect's (identity "psk", PSK suites).
    fn client(psk: [u8; 32]) -> SslStream<DatagramIo> {
        let mut b = SslConnector::builder(SslMethod::dtls()).unwrap();
        b.set_cipher_list("PSK-AES256-GCM-SHA384").unwrap();
        b.set_options(SslOptions::NO_QUERY_MTU);
        b.set_psk_client_callback(move |_ssl, _hint, identity, out| {
            identity[..4].copy_from_slice(b"psk\0");
            out[..32].copy_from_slice(&psk);
            Ok(32)
        });
        let mut ssl = b.build().configure().unwrap().into_ssl("vpn").unwrap();
        ssl.set_mtu(1400).unwrap();
        ssl.set_connect_state();
        SslStream::new(ssl, DatagramIo::default()).unwrap()
    }

    fn take_datagrams(io: &mut DatagramIo) -> Vec<Vec<u8>> {
        io.out.take_datagrams()
    }

    fn feed_client(c: &mut SslStream<DatagramIo>, d: &[u8]) {
        let io = c.get_mut();
        io.inbound = d.to_vec();
        io.has_inbound = true;
    }

    /// Runs the handshake; returns the connected pair.
    fn handshake(
        server_psk: [u8; 32],
        client_psk: [u8; 32],
    ) -> (DtlsChannel, SslStream<DatagramIo>, Option<DtlsEvent>) {
        let ctx = DtlsServerContext::new().unwrap();
        let peer: SocketAddr = "198.18.0.2:50000".parse().unwrap();
        let mut server = ctx.channel(server_psk, peer, 1400).unwrap();
        let mut c = client(client_psk);
        let mut rbuf = vec![0u8; 65536];
        let mut last = None;
        let _ = c.do_handshake();
        for _ in 0..10 {
            for d in take_datagrams(c.get_mut()) {
                if let Some(e) = server.input(&d, &mut rbuf, |_| {}) {
                    last = Some(e);
                }
            }
            let to_client = server.outbound().take_datagrams();
            if to_client.is_empty() {
                break;
            }
            for d in to_client {
                feed_client(&mut c, &d);
                let _ = c.do_handshake();
            }
        }
        (server, c, last)
    }

    #[test]
    fn psk_handshake_and_records_both_ways() {
        let psk = [7u8; 32];
        let (mut server, mut c, ev) = handshake(psk, psk);
        assert_eq!(ev, Some(DtlsEvent::Established));
        assert!(server.established);
        assert_eq!(
            c.ssl().current_cipher().unwrap().name(),
            "PSK-AES256-GCM-SHA384"
        );

        // Client -> server: a DATA record and an MTU probe.
        c.ssl_write(&[0, 0x45, 1, 2, 3]).unwrap();
        c.ssl_write(&[3, 9, 9, 9, 9, 0, 0]).unwrap();
        let mut got = Vec::new();
        let mut rbuf = vec![0u8; 65536];
        for d in take_datagrams(c.get_mut()) {
            assert_eq!(server.input(&d, &mut rbuf, |r| got.push(r.to_vec())), None);
        }
        assert_eq!(got, vec![vec![0, 0x45, 1, 2, 3], vec![3, 9, 9, 9, 9, 0, 0]]);

        // Server -> client.
        assert!(server.write_record(&[4, 9, 9, 9, 9, 0, 0]));
        let out = server.outbound().take_datagrams();
        assert_eq!(out.len(), 1);
        feed_client(&mut c, &out[0]);
        let mut buf = [0u8; 64];
        let n = c.ssl_read(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[4, 9, 9, 9, 9, 0, 0]);
    }

    #[test]
    fn wrong_psk_never_establishes() {
        let (server, _c, ev) = handshake([1u8; 32], [2u8; 32]);
        assert!(!server.established);
        assert!(matches!(ev, None | Some(DtlsEvent::Failed(_))), "{ev:?}");
    }

    #[test]
    fn garbage_datagrams_are_ignored() {
        let psk = [7u8; 32];
        let (mut server, _c, _) = handshake(psk, psk);
        let mut rbuf = vec![0u8; 65536];
        let mut records = 0;
        for junk in [
            &b""[..],
            &[23u8; 5][..],
            &[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 40][..],
            &[0xffu8; 1500][..],
        ] {
            let ev = server.input(junk, &mut rbuf, |_| records += 1);
            assert_eq!(ev, None);
        }
        assert_eq!(records, 0);
        assert!(server.established);
    }

    #[test]
    fn gso_runs_are_equal_sized_and_bounded() {
        let runs = |l: &[usize], m| gso_runs(l, m).collect::<Vec<_>>();
        assert_eq!(runs(&[], 64), vec![]);
        assert_eq!(runs(&[100], 64), vec![(0, 1)]);
        // Equal sizes, then one shorter tail datagram in the same run.
        assert_eq!(runs(&[100, 100, 100, 40], 64), vec![(0, 4)]);
        // A longer datagram starts a new run; so does a second short one.
        assert_eq!(
            runs(&[100, 100, 200, 50, 50, 10, 10], 64),
            vec![(0, 2), (2, 4), (4, 6), (6, 7)]
        );
        // Segment limit.
        assert_eq!(runs(&[10; 5], 2), vec![(0, 2), (2, 4), (4, 5)]);
        // Byte limit: 1444-byte records, at most 45 per send.
        let big = vec![1444; 100];
        let r = runs(&big, 64);
        assert!(r.iter().all(|(i, j)| (j - i) * 1444 <= MAX_GSO_BYTES));
        assert_eq!(r.iter().map(|(i, j)| j - i).sum::<usize>(), 100);
    }

    #[tokio::test]
    async fn only_datagrams_the_kernel_took_count_as_sent() {
        let hub = DtlsHub::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = Outbound::default();
        for _ in 0..3 {
            out.push(&[0u8; 100]);
        }
        let sent = hub
            .io
            .send_front(&hub.counters, sink.local_addr().unwrap(), &mut out, 2)
            .await;
        assert_eq!(sent, 200);
        assert_eq!(out.len(), 1);
        // A send the kernel refuses (broadcast without SO_BROADCAST: EACCES)
        // is an error, not a sent datagram.
        let refused: SocketAddr = "255.255.255.255:9".parse().unwrap();
        let sent = hub.io.send_front(&hub.counters, refused, &mut out, 1).await;
        assert_eq!(sent, 0);
        assert!(out.is_empty(), "a failed datagram is dropped, not retried");
        let c = &hub.counters;
        assert_eq!(c.tx_datagrams.load(Ordering::Relaxed), 2);
        assert_eq!(c.tx_errors.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn peers_follow_their_connection_and_go_with_it() {
        let hub = DtlsHub::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let (id1, id2) = ([1u8; 32], [2u8; 32]);
        hub.register(id1, 1, tx1);
        hub.register(id2, 2, tx2);
        let a: SocketAddr = "198.18.0.2:1000".parse().unwrap();
        let b: SocketAddr = "198.18.0.2:1001".parse().unwrap();
        let c: SocketAddr = "198.18.0.3:1000".parse().unwrap();
        // A hello from a, then the handshake binds a; a NAT rebinding to b.
        hub.insert_peer(a, hub.by_app_id.get(&id1).unwrap().clone());
        hub.bind_peer(a, 1, &id1);
        hub.bind_peer(c, 2, &id2);
        assert_eq!(hub.peer_count(), 2);
        hub.bind_peer(b, 1, &id1);
        assert!(
            hub.by_peer.get(&a).is_none(),
            "old port of generation 1 removed"
        );
        assert_eq!(hub.by_peer.get(&b).unwrap().generation, 1);
        assert_eq!(hub.by_ip.get(&a.ip()).unwrap().as_slice(), &[b]);
        // Address c moves to generation 1 (a new handshake): generation 2 forgets it.
        hub.bind_peer(c, 1, &id1);
        assert_eq!(hub.by_peer.get(&c).unwrap().generation, 1);
        assert!(hub.by_peer.get(&b).is_none());
        assert!(hub.by_generation.get(&2).is_none());
        // Unregistering a stale generation removes nothing of the live one.
        hub.unregister(&id2, 2);
        assert_eq!(hub.peer_count(), 1);
        hub.unregister(&id1, 1);
        assert_eq!(hub.peer_count(), 0);
        assert!(hub.by_ip.is_empty() && hub.by_generation.is_empty());
    }

    #[test]
    fn own_record_layer_interoperates_with_openssl_and_drops_replays() {
        let psk = [7u8; 32];
        let (mut server, mut c, ev) = handshake(psk, psk);
        assert_eq!(ev, Some(DtlsEvent::Established));
        assert!(server.own_records(), "AES-256-GCM: records are ours");
        // Established with our record layer: OpenSSL's state is gone
        // already (issue 12); its last flight waits in our queue.
        assert!(!server.holds_openssl());
        let mut rbuf = vec![0u8; 65536];
        let mut got = Vec::new();
        // Client (OpenSSL) -> server (our opener), decrypted in place.
        c.ssl_write(&[0, 0x45, 1, 2, 3]).unwrap();
        let dgrams = take_datagrams(c.get_mut());
        let mut d = dgrams[0].clone();
        assert_eq!(
            server.input_mut(&mut d, &mut rbuf, |r| got.push(r.to_vec())),
            None
        );
        assert_eq!(got, vec![vec![0, 0x45, 1, 2, 3]]);
        assert_eq!(server.cipher_name(), Some("PSK-AES256-GCM-SHA384"));
        // The same datagram again: a replay, dropped and counted.
        let mut again = dgrams[0].clone();
        server.input_mut(&mut again, &mut rbuf, |r| got.push(r.to_vec()));
        assert_eq!(got.len(), 1);
        assert_eq!(server.take_record_drops(), 1);
        assert_eq!(server.take_record_drops(), 0);
        // Tampered: dropped and counted.
        c.ssl_write(&[0, 9]).unwrap();
        let mut t = take_datagrams(c.get_mut()).remove(0);
        let last = t.len() - 1;
        t[last] ^= 1;
        server.input_mut(&mut t, &mut rbuf, |r| got.push(r.to_vec()));
        assert_eq!(got.len(), 1);
        assert_eq!(server.take_record_drops(), 1);
        // Server (our sealer) -> client (OpenSSL).
        for i in 0..3u8 {
            assert!(server.write_record(&[0, i, 7, 7]));
        }
        let out = server.outbound().take_datagrams();
        assert_eq!(out.len(), 3);
        for (i, d) in out.iter().enumerate() {
            feed_client(&mut c, d);
            let mut buf = [0u8; 64];
            let n = c.ssl_read(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[0, i as u8, 7, 7]);
        }
        // A close_notify alert, read by our record layer now that OpenSSL is
        // gone, ends the association; the same alert replayed or tampered
        // with would not.
        let _ = c.shutdown();
        let alert = take_datagrams(c.get_mut()).remove(0);
        let mut tampered = alert.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(server.input_mut(&mut tampered, &mut rbuf, |_| {}), None);
        assert_eq!(server.take_record_drops(), 1);
        let mut x = alert.clone();
        assert_eq!(
            server.input_mut(&mut x, &mut rbuf, |_| {}),
            Some(DtlsEvent::Failed("peer sent close_notify".into()))
        );
        let mut x = alert.clone();
        assert_eq!(server.input_mut(&mut x, &mut rbuf, |_| {}), None);
        assert_eq!(server.take_record_drops(), 1, "replayed alert");
    }

    /// An epoch-1 handshake record under the client's keys at a fresh
    /// sequence number, as the client's retransmitted Finished arrives.
    fn client_handshake_record(c: &SslStream<DatagramIo>) -> Vec<u8> {
        let (mut sealer, _) =
            crate::dtls_keys::client_record_layer(c.ssl(), record::FIRST_EPOCH).unwrap();
        let hr = sealer.headroom();
        let mut buf = vec![0u8; hr + 16 + record::TAG_LEN];
        let rec = sealer
            .seal_as(&mut buf, hr..hr + 16, record::ContentType::Handshake)
            .unwrap();
        buf[rec].to_vec()
    }

    #[test]
    fn a_retransmitted_client_finished_gets_our_last_flight_again_until_data_arrives() {
        let psk = [7u8; 32];
        let ctx = DtlsServerContext::new().unwrap();
        let peer: SocketAddr = "198.18.0.2:50000".parse().unwrap();
        let mut server = ctx.channel(psk, peer, 1400).unwrap();
        let mut c = client(psk);
        let mut rbuf = vec![0u8; 65536];
        let _ = c.do_handshake();
        // Run the handshake until the server is up; keep the client's last
        // flight (it carries its epoch-1 Finished).
        let mut client_last = Vec::new();
        for _ in 0..10 {
            client_last = take_datagrams(c.get_mut());
            for d in &client_last {
                server.input(d, &mut rbuf, |_| {});
            }
            if server.established {
                break;
            }
            for d in server.outbound().take_datagrams() {
                feed_client(&mut c, &d);
                let _ = c.do_handshake();
            }
        }
        assert!(server.established && !server.holds_openssl());
        let flight = server.outbound().take_datagrams();
        assert!(!flight.is_empty());
        // (The client gets it here only so that the test can take its keys to
        // play its retransmission; the server cannot tell.)
        for d in &flight {
            feed_client(&mut c, d);
            let _ = c.do_handshake();
        }
        // The client's Finished again, under a new record sequence number as
        // a retransmission has it: rebuild it from the same plaintext.
        assert!(client_last.iter().any(|d| {
            record::records(d)
                .any(|(h, _)| h.epoch == 1 && h.content_type == record::ContentType::Handshake)
        }));
        // Garbage under the handshake type does not authenticate: nothing.
        let mut forged = client_handshake_record(&c);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(server.input_mut(&mut forged, &mut rbuf, |_| {}), None);
        assert!(server.outbound().is_empty());
        // A genuine retransmission authenticates: our flight goes out again,
        // byte for byte.
        let retransmit = client_handshake_record(&c);
        let mut x = retransmit.clone();
        assert_eq!(server.input_mut(&mut x, &mut rbuf, |_| {}), None);
        assert_eq!(server.outbound().take_datagrams(), flight);
        // Once a data record arrived, no more copies.
        c.ssl_write(&[0, 0x45]).unwrap();
        let mut d = take_datagrams(c.get_mut()).remove(0);
        server.input_mut(&mut d, &mut rbuf, |_| {});
        let mut x = client_handshake_record(&c);
        server.input_mut(&mut x, &mut rbuf, |_| {});
        assert!(server.outbound().is_empty());
    }

    #[test]
    fn queued_datagrams_survive_the_release_and_records_keep_flowing() {
        let psk = [7u8; 32];
        let (mut server, mut c, _) = handshake(psk, psk);
        let mut rbuf = vec![0u8; 65536];
        // Queued while OpenSSL is held, sent after it is gone.
        assert!(server.write_record(&[0, 1]));
        c.ssl_write(&[0, 0x45]).unwrap();
        let mut d = take_datagrams(c.get_mut()).remove(0);
        server.input_mut(&mut d, &mut rbuf, |_| {});
        assert!(!server.holds_openssl());
        assert!(server.write_record(&[0, 2]));
        let out = server.outbound().take_datagrams();
        assert_eq!(out.len(), 2);
        for (i, d) in out.iter().enumerate() {
            feed_client(&mut c, d);
            let mut buf = [0u8; 64];
            let n = c.ssl_read(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[0, i as u8 + 1]);
        }
        // And the client's records still open.
        c.ssl_write(&[0, 0x46]).unwrap();
        let mut got = Vec::new();
        let mut d = take_datagrams(c.get_mut()).remove(0);
        server.input_mut(&mut d, &mut rbuf, |r| got.push(r.to_vec()));
        assert_eq!(got, vec![vec![0, 0x46]]);
    }

    #[test]
    fn release_buffers_frees_what_a_burst_grew() {
        let psk = [7u8; 32];
        let (mut server, _c, _) = handshake(psk, psk);
        for _ in 0..32 {
            assert!(server.write_record(&[0u8; 1400]));
        }
        assert!(server.outbound().buf.capacity() >= 32 * 1400);
        // Not while datagrams wait to be sent.
        server.release_buffers();
        assert_eq!(server.outbound().len(), 32);
        server.outbound().drain(|_| {});
        server.release_buffers();
        assert_eq!(server.outbound().buf.capacity(), 0);
        assert!(!server.holds_openssl());
        // And it still works afterwards.
        assert!(server.write_record(&[0u8; 100]));
        assert_eq!(server.outbound().len(), 1);
    }

    #[test]
    fn write_before_handshake_is_refused() {
        let ctx = DtlsServerContext::new().unwrap();
        let mut ch = ctx
            .channel([0u8; 32], "198.18.0.2:1".parse().unwrap(), 1400)
            .unwrap();
        assert!(!ch.write_record(&[0, 1, 2]));
        assert!(ch.outbound().is_empty());
    }
}

//! The TUN device and the two batch loops over it.
//!
//! With `offload` the device is opened with IFF_VNET_HDR and TSO/USO: the kernel
//! hands us TCP/UDP super-packets of up to 64 KiB that tun-rs splits into MTU-sized
//! packets (one syscall for dozens of packets), and on the way in tun-rs coalesces
//! our packets (GRO) before writing. Without offload we still batch by draining
//! the device with non-blocking reads up to a batch size.
//!
//! Per-core workers (issue 13 item 3): the device is opened with one queue per
//! worker (IFF_MULTI_QUEUE). Each worker reads its own queue and its sessions
//! write their uplink to it. The kernel steers a flow's packets to the queue
//! its packets were last written from (`tun_flow_update` on write,
//! `tun_automq_select_queue` on transmit, keyed by the symmetric flow hash), so
//! a session's downlink comes back to the worker that owns it; a packet read on
//! another worker still reaches the session through its channel, counted as
//! `tun_rx_cross_worker`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tun_rs::{
    AsyncDevice, DeviceBuilder, ExpandBuffer, GROTable, IDEAL_BATCH_SIZE, SyncDevice,
    VIRTIO_NET_HDR_LEN,
};

use crate::batch::{BATCH_PACKETS, BatchPool, PacketBatch};
use crate::counters::DataplaneCounters;
use crate::enforce::Enforcer;
use crate::packet;
use crate::policy::Direction;
use crate::routes::{SessionPort, SessionRoutes};

/// Spare bytes in front of each uplink packet: tun-rs writes the virtio-net header there.
pub const UPLINK_HEADROOM: usize = VIRTIO_NET_HDR_LEN + 6;

#[derive(Debug, Clone)]
pub struct TunConfig {
    pub name: String,
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// Addresses (with prefix length) in the IPv6 pools' prefixes, so the kernel
    /// routes those prefixes to the device.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    pub mtu: u16,
    pub offload: bool,
}

/// The device's transmit queue (packets the kernel holds for our reader).
/// Linux's default of 500 dropped 17 % of a one-packet-per-session burst to
/// 2,000 sessions (issue 12); a burst of one packet to each of 10,000 sessions
/// must fit. With offload one entry may be a 64 KiB super-packet, but TCP
/// senders' windows bound what really queues. Packets the kernel still drops
/// here show as `TX dropped` in `ip -s link show <tun>`; drops after our read
/// (a session's queue full) are `show counters` `drop-queue-full`.
pub const TUN_TX_QUEUE_LEN: u32 = 16_384;

/// One queue of the TUN device, not yet registered with an async runtime:
/// made into a [`Tun`] by the worker thread that reads it, so its readiness
/// events go to that worker's own reactor.
pub struct TunQueue {
    dev: SyncDevice,
    index: usize,
    mtu: u16,
    offload: bool,
}

impl TunQueue {
    /// Creates the device with `queues` queues (at least one). More than one
    /// sets IFF_MULTI_QUEUE; every queue keeps the device's offload settings
    /// (tun-rs sets TUN_F_* again on each queue it attaches). Each queue must
    /// be read by someone: the kernel steers packets to all of them.
    pub fn open_all(cfg: &TunConfig, queues: usize) -> io::Result<Vec<TunQueue>> {
        let queues = queues.max(1);
        let mut b = DeviceBuilder::new()
            .name(cfg.name.clone())
            .mtu(cfg.mtu)
            .tx_queue_len(TUN_TX_QUEUE_LEN)
            .offload(cfg.offload)
            .multi_queue(queues > 1);
        if let Some((addr, prefix)) = cfg.ipv4 {
            b = b.ipv4(addr, prefix, None);
        }
        for (addr, prefix) in &cfg.ipv6 {
            b = b.ipv6(*addr, *prefix);
        }
        let first = b.build_sync()?;
        let mut devs = Vec::with_capacity(queues);
        for _ in 1..queues {
            devs.push(first.try_clone()?);
        }
        devs.insert(0, first);
        Ok(devs
            .into_iter()
            .enumerate()
            .map(|(index, dev)| TunQueue {
                dev,
                index,
                mtu: cfg.mtu,
                offload: cfg.offload,
            })
            .collect())
    }

    /// Whether the kernel hands this queue TCP super-packets (TSO).
    pub fn tcp_gso(&self) -> bool {
        self.offload && self.dev.tcp_gso()
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Registers the queue with the current tokio runtime (must be called
    /// inside one: the worker's own).
    pub fn into_async(self) -> io::Result<Tun> {
        Ok(Tun {
            dev: Arc::new(AsyncDevice::new(self.dev)?),
            queue: self.index,
            rx_packets: Arc::default(),
            mtu: self.mtu,
            offload: self.offload,
        })
    }
}

/// One open TUN queue, shared by its worker's downlink task and the uplink of
/// every session that worker owns.
#[derive(Clone)]
pub struct Tun {
    dev: Arc<AsyncDevice>,
    /// The queue's index, which is also its worker's index.
    queue: usize,
    /// Packets read from this queue (written by its one reader).
    rx_packets: Arc<std::sync::atomic::AtomicU64>,
    pub mtu: u16,
    pub offload: bool,
}

impl Tun {
    /// The queue (worker) index.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Packets read from this queue so far.
    pub fn rx_packets(&self) -> u64 {
        DataplaneCounters::get(&self.rx_packets)
    }

    /// Downlink loop: TUN -> sessions. Runs until the device fails.
    pub async fn run_downlink(
        &self,
        routes: Arc<SessionRoutes>,
        pool: BatchPool,
        counters: Arc<DataplaneCounters>,
    ) -> io::Result<()> {
        let seg = usize::from(self.mtu) + 64;
        let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65535];
        let mut bufs: Vec<Vec<u8>> = (0..IDEAL_BATCH_SIZE).map(|_| vec![0u8; seg]).collect();
        let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
        let mut sorter = BatchSorter::new(pool, self.queue, seg);
        let mut consecutive_errors = 0u32;
        loop {
            let n = match self
                .dev
                .recv_multiple(&mut original, &mut bufs, &mut sizes, 0)
                .await
            {
                Ok(n) => {
                    consecutive_errors = 0;
                    n
                }
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    // One bad read (e.g. a super-packet tun-rs cannot split) must
                    // not stop the dataplane; a persistent one must not spin.
                    DataplaneCounters::add(&counters.tun_rx_errors, 1);
                    consecutive_errors += 1;
                    if consecutive_errors % 1000 == 1 {
                        tracing::warn!(error = %e, "TUN read failed");
                    }
                    if consecutive_errors > 100 {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    continue;
                }
            };
            let routes_now = routes.snapshot();
            sorter.sort(&bufs, &sizes[..n], &routes_now, &counters);
            // Drain what else is pending, up to READ_PACKETS_MAX, before
            // delivering: the sessions' batches fill up while the device
            // has a backlog, and leave at once when it has none.
            let mut total = n;
            while total < READ_PACKETS_MAX {
                match self
                    .dev
                    .try_recv_multiple(&mut original, &mut bufs, &mut sizes, 0)
                {
                    Ok(m) => {
                        sorter.sort(&bufs, &sizes[..m], &routes_now, &counters);
                        total += m;
                    }
                    Err(_) => break,
                }
            }
            DataplaneCounters::add(&counters.tun_rx_packets, total as u64);
            DataplaneCounters::add(&self.rx_packets, total as u64);
            sorter.deliver(&counters);
        }
    }

    /// Writes a session's uplink packets to TUN. Each buffer holds one packet after
    /// `UPLINK_HEADROOM` bytes. Returns the number of packets handed to the kernel.
    pub async fn send_batch<B: ExpandBuffer>(
        &self,
        gro: &mut GROTable,
        bufs: &mut [B],
        counters: &DataplaneCounters,
    ) -> usize {
        if bufs.is_empty() {
            return 0;
        }
        let n = bufs.len();
        match self.dev.send_multiple(gro, bufs, UPLINK_HEADROOM).await {
            Ok(_) => {
                DataplaneCounters::add(&counters.tun_tx_packets, n as u64);
                n
            }
            Err(e) => {
                DataplaneCounters::add(&counters.tun_tx_errors, n as u64);
                tracing::debug!(error = %e, packets = n, "TUN write failed");
                0
            }
        }
    }
}

/// Errors after which the device is gone (EBADF, ENODEV, ENXIO).
fn is_fatal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(9) | Some(19) | Some(6))
}

/// The most packets a worker reads from its TUN queue before it hands the
/// sessions their batches (it hands them over earlier when the queue runs
/// empty). Why: with 100 sessions, delivering every 64 packets gave each
/// session batches of ~1 packet, each a wake-up and a queue entry of its own
/// (issue 13, both ways: `drop-queue-full` 27 % of the downlink). Reading on
/// while the device has a backlog makes the batches grow with the load:
/// ~10 packets per session for 100 sessions. At ~1-2 us per read this holds
/// the first packet back ~1-2 ms at most, and only when the queue was not empty.
pub const READ_PACKETS_MAX: usize = 1024;

/// Groups the packets of one TUN read (and the reads drained after it) by
/// destination session without allocating per packet. A session's batch
/// leaves as soon as it is full ([`BATCH_PACKETS`], or its buffer at the
/// pool's keep limit) and the rest at the end of the read ([`Self::deliver`]).
struct BatchSorter {
    pool: BatchPool,
    /// The queue (worker) this sorter reads for: packets for sessions of other
    /// workers are counted as crossing.
    queue: usize,
    /// The largest packet a read yields (MTU plus slack): a batch whose
    /// buffer could not take another within the pool's keep limit leaves.
    seg: usize,
    /// Sessions touched in this read, with their batch so far.
    pending: Vec<(Arc<SessionPort>, PacketBatch)>,
    /// Where each session's entry is in `pending`, by the port's address
    /// (100 sessions in one read are common: no linear scan per packet).
    slots: rustc_hash::FxHashMap<usize, usize>,
    /// Counted per read, added to the shared counters once.
    cross: u64,
    queue_full: u64,
}

impl BatchSorter {
    fn new(pool: BatchPool, queue: usize, seg: usize) -> Self {
        Self {
            pool,
            queue,
            seg,
            pending: Vec::with_capacity(16),
            slots: rustc_hash::FxHashMap::default(),
            cross: 0,
            queue_full: 0,
        }
    }

    fn sort(
        &mut self,
        bufs: &[Vec<u8>],
        sizes: &[usize],
        routes: &std::collections::HashMap<IpAddr, Arc<SessionPort>>,
        counters: &DataplaneCounters,
    ) {
        let mut malformed = 0;
        let mut no_session = 0;
        for (buf, &len) in bufs.iter().zip(sizes) {
            let Some(pkt) = buf.get(..len) else {
                malformed += 1;
                continue;
            };
            let Some(dst) = packet::destination(pkt) else {
                malformed += 1;
                continue;
            };
            let Some(port) = routes.get(&dst) else {
                no_session += 1;
                continue;
            };
            let slot = *self
                .slots
                .entry(Arc::as_ptr(port) as usize)
                .or_insert_with(|| {
                    self.pending.push((port.clone(), self.pool.get()));
                    self.pending.len() - 1
                });
            let Some((_, batch)) = self.pending.get_mut(slot) else {
                continue;
            };
            batch.push(pkt);
            if batch.len() >= BATCH_PACKETS || !batch.fits_kept(self.seg) {
                let full = std::mem::replace(batch, self.pool.get());
                self.offer(port, full);
            }
        }
        DataplaneCounters::add(&counters.malformed_drops, malformed);
        DataplaneCounters::add(&counters.no_session_drops, no_session);
    }

    /// Queues `batch` for the session behind `port` (what does not fit is
    /// dropped and counted).
    fn offer(&mut self, port: &SessionPort, batch: PacketBatch) {
        if port.worker != self.queue {
            self.cross += batch.len() as u64;
        }
        let offered = port.tx.offer(batch);
        self.queue_full += offered.dropped as u64;
        if let Some(b) = offered.refused {
            self.pool.put(b);
        }
    }

    /// The read ended: every session gets what is left of its batch.
    fn deliver(&mut self, counters: &DataplaneCounters) {
        let mut pending = std::mem::take(&mut self.pending);
        for (port, batch) in pending.drain(..) {
            if batch.is_empty() {
                self.pool.put(batch);
            } else {
                self.offer(&port, batch);
            }
        }
        self.pending = pending;
        self.slots.clear();
        DataplaneCounters::add(
            &counters.tun_rx_cross_worker,
            std::mem::take(&mut self.cross),
        );
        DataplaneCounters::add(
            &counters.queue_full_drops,
            std::mem::take(&mut self.queue_full),
        );
    }
}

/// Uplink anti-spoofing: true when `pkt` is an IPv4 or IPv6 packet whose source
/// is one of the session's addresses (`allowed`: its v4 and, dual stack, v6).
pub fn source_allowed(pkt: &[u8], allowed: &[IpAddr]) -> bool {
    packet::source(pkt).is_some_and(|s| allowed.contains(&s))
}

/// GRO tables lent to sessions for the length of one TUN write.
///
/// A tun-rs `GROTable` preallocates 128 x 128 flow items per protocol, about
/// 1 MiB, and is reset at the start of every `send_multiple`: it carries no
/// state between writes. Owning one per session made that the bulk of an idle
/// session's memory (issue 12: ~1.1 MiB/session measured, CSTP and DTLS
/// alike); lent per write, their number is bounded by the writes in flight.
/// Each worker thread keeps a couple (no lock in steady state); a bounded
/// shared list takes the rest.
struct GroPool;

/// GRO tables a worker thread keeps for itself.
const GRO_LOCAL_MAX: usize = 2;
/// GRO tables kept in the shared list; more are freed.
const GRO_SHARED_MAX: usize = 8;

thread_local! {
    static GRO_LOCAL: std::cell::RefCell<Vec<GROTable>> = const { std::cell::RefCell::new(Vec::new()) };
}
static GRO_SHARED: std::sync::Mutex<Vec<GROTable>> = std::sync::Mutex::new(Vec::new());

impl GroPool {
    fn get() -> GROTable {
        if let Some(g) = GRO_LOCAL.with_borrow_mut(Vec::pop) {
            return g;
        }
        let g = GRO_SHARED.lock().ok().and_then(|mut v| v.pop());
        g.unwrap_or_default()
    }

    fn put(g: GROTable) {
        let Some(g) = GRO_LOCAL.with_borrow_mut(|l| {
            if l.len() < GRO_LOCAL_MAX {
                l.push(g);
                None
            } else {
                Some(g)
            }
        }) else {
            return;
        };
        if let Ok(mut v) = GRO_SHARED.lock()
            && v.len() < GRO_SHARED_MAX
        {
            v.push(g);
        }
    }
}

/// The most bytes after the headroom one uplink buffer may hold once GRO has
/// appended packets to it: an IP packet's length field bounds a TUN write's
/// super-packet to 64 KiB.
pub const UPLINK_GRO_MAX: usize = u16::MAX as usize;

/// One uplink packet buffer (headroom, then the packet) that GRO may grow into
/// a super-packet.
///
/// Why not a plain `Vec<u8>`: tun-rs coalesces a packet into the previous
/// one of its flow only when the target buffer's *capacity* already holds
/// the result (`buf_capacity() >= 2 * offset + coalesced length`; "we don't
/// want to allocate"), so buffers made for one packet (2 KiB) never
/// coalesced: 1.2 packets per TUN write in DTLS upload, each one a trip
/// through the kernel's forwarding and TCP receive path (BENCHMARKS.md,
/// 2026-12-07 23:05). This buffer reports room for a whole super-packet and
/// grows when GRO really appends (`buf_resize`), so only the buffers that
/// head a flow in a write grow (to at most 64 KiB each), and an idle session
/// frees them all ([`Uplink::release_buffers`]).
#[derive(Debug, Default)]
pub struct UplinkBuf(Vec<u8>);

impl UplinkBuf {
    fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
}

impl AsRef<[u8]> for UplinkBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for UplinkBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl ExpandBuffer for UplinkBuf {
    fn buf_capacity(&self) -> usize {
        // tun-rs asks for two offsets (its header room) on top of the
        // coalesced packet; report exactly a 64 KiB packet's worth, whatever
        // the Vec really holds (it may have grown past it), so no
        // super-packet outgrows the IP length field.
        2 * UPLINK_HEADROOM + UPLINK_GRO_MAX
    }

    fn buf_resize(&mut self, new_len: usize, value: u8) {
        self.0.resize(new_len, value);
    }

    fn buf_extend_from_slice(&mut self, src: &[u8]) {
        self.0.extend_from_slice(src);
    }
}

/// Per-session uplink state: reusable packet buffers (a GRO table is lent for
/// each write), so a session's packets reach TUN in one batch without
/// allocation per packet.
pub struct Uplink {
    tun: Tun,
    bufs: Vec<UplinkBuf>,
    used: usize,
    /// The only source addresses this session may use (its IPv4 and IPv6 address).
    allowed_src: Vec<IpAddr>,
    counters: Arc<DataplaneCounters>,
    /// The session's vpn-filter, if policy enforcement is on.
    enforcer: Option<Enforcer>,
}

impl Uplink {
    pub fn new(tun: Tun, allowed_src: Vec<IpAddr>, counters: Arc<DataplaneCounters>) -> Self {
        Self {
            tun,
            bufs: Vec::with_capacity(BATCH_PACKETS),
            used: 0,
            allowed_src,
            counters,
            enforcer: None,
        }
    }

    /// Applies the session's filter to everything it sends from now on.
    pub fn with_enforcer(mut self, enforcer: Enforcer) -> Self {
        self.enforcer = Some(enforcer);
        self
    }

    /// Queues a packet from the client. Returns false (and counts it) if its source
    /// is not the session's address or it is not IP.
    pub fn push(&mut self, pkt: &[u8]) -> bool {
        if !source_allowed(pkt, &self.allowed_src) {
            let counter = if packet::is_ipv6_link_scoped_source(pkt) {
                &self.counters.link_local_drops
            } else {
                &self.counters.spoofed_source_drops
            };
            DataplaneCounters::add(counter, 1);
            return false;
        }
        if self.used == self.bufs.len() {
            self.bufs
                .push(UplinkBuf::with_capacity(UPLINK_HEADROOM + 2048));
        }
        let b = &mut self.bufs[self.used].0;
        b.clear();
        b.resize(UPLINK_HEADROOM, 0);
        b.extend_from_slice(pkt);
        self.used += 1;
        true
    }

    pub fn pending(&self) -> usize {
        self.used
    }

    /// Frees the packet buffers (an idle session holds none); they are made
    /// again by the next burst.
    pub fn release_buffers(&mut self) {
        if self.used == 0 {
            self.bufs = Vec::new();
        }
        if let Some(e) = self.enforcer.as_mut() {
            e.release_buffers();
        }
    }

    /// Writes everything queued (and permitted by the filter) to TUN.
    pub async fn flush(&mut self) -> usize {
        let mut n = self.used;
        if n == 0 {
            return 0;
        }
        self.used = 0;
        if let Some(e) = self.enforcer.as_mut() {
            let keep = e.decide(
                self.bufs[..n]
                    .iter()
                    .map(|b| b.0.get(UPLINK_HEADROOM..).unwrap_or_default()),
                Direction::FromClient,
            );
            // Compact the permitted packets to the front, keeping their order.
            let mut w = 0;
            for (r, k) in keep.iter().enumerate().take(n) {
                if *k {
                    self.bufs.swap(w, r);
                    w += 1;
                }
            }
            n = w;
            if n == 0 {
                return 0;
            }
        }
        let mut gro = GroPool::get();
        let sent = self
            .tun
            .send_batch(&mut gro, &mut self.bufs[..n], &self.counters)
            .await;
        GroPool::put(gro);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gro_tables_are_lent_and_bounded() {
        std::thread::spawn(|| {
            let lent: Vec<GROTable> = (0..GRO_LOCAL_MAX + GRO_SHARED_MAX + 4)
                .map(|_| GroPool::get())
                .collect();
            for g in lent {
                GroPool::put(g);
            }
            assert_eq!(GRO_LOCAL.with_borrow(Vec::len), GRO_LOCAL_MAX);
            assert!(GRO_SHARED.lock().unwrap().len() <= GRO_SHARED_MAX);
            // Taken again from this thread's own list first.
            let _g = GroPool::get();
            assert_eq!(GRO_LOCAL.with_borrow(Vec::len), GRO_LOCAL_MAX - 1);
        })
        .join()
        .unwrap();
    }

    /// tun-rs appends a packet to the previous one of its flow only if the
    /// target buffer's reported capacity holds the result plus two offsets;
    /// an uplink buffer made for one packet must still take a 64 KiB
    /// super-packet, and never more (the IP length field).
    #[test]
    fn an_uplink_buffer_has_room_for_one_super_packet_and_grows_on_demand() {
        let mut b = UplinkBuf::with_capacity(UPLINK_HEADROOM + 2048);
        b.0.resize(UPLINK_HEADROOM + 1390, 7);
        let room = |b: &UplinkBuf| b.buf_capacity() - 2 * UPLINK_HEADROOM;
        // What GRO checks before it appends 46 more 1,350-byte payloads.
        assert!(room(&b) >= 1390 + 46 * 1350, "{}", room(&b));
        assert_eq!(room(&b), UPLINK_GRO_MAX);
        // Appending really grows the buffer, keeping what was there.
        let len = b.as_ref().len();
        b.buf_resize(len + 46 * 1350, 0);
        b.buf_extend_from_slice(&[1, 2, 3]);
        assert_eq!(b.as_ref().len(), len + 46 * 1350 + 3);
        assert_eq!(b.as_ref()[UPLINK_HEADROOM], 7);
        // Even once the Vec grew past it, the room stays one super-packet.
        b.buf_resize(2 * UPLINK_GRO_MAX, 0);
        assert_eq!(room(&b), UPLINK_GRO_MAX);
    }

    fn v4(src: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&[198, 18, 1, 10]);
        p
    }

    fn v6(src: &str) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00:1::10".parse::<Ipv6Addr>().unwrap().octets());
        p
    }

    /// A worker's sorter delivers to every session, whichever worker owns it,
    /// and counts the packets for other workers' sessions as crossing.
    #[test]
    fn packets_for_another_workers_session_are_delivered_and_counted() {
        let port = |worker, index| {
            let (tx, rx) = crate::queue::downlink_queue(crate::queue::QueueLimits::DEFAULT);
            let p = Arc::new(SessionPort {
                index,
                generation: 1,
                worker,
                tx,
            });
            (p, rx)
        };
        let (own, mut own_rx) = port(1, 1);
        let (other, mut other_rx) = port(0, 2);
        let own_ip: IpAddr = "198.18.1.10".parse().unwrap();
        let other_ip: IpAddr = "198.18.1.11".parse().unwrap();
        let routes = std::collections::HashMap::from([(own_ip, own), (other_ip, other)]);
        let to = |dst: [u8; 4]| {
            let mut p = v4([198, 18, 0, 1]);
            p[16..20].copy_from_slice(&dst);
            p
        };
        let bufs = vec![
            to([198, 18, 1, 10]),
            to([198, 18, 1, 11]),
            to([198, 18, 1, 11]),
        ];
        let sizes: Vec<usize> = bufs.iter().map(Vec::len).collect();
        let counters = DataplaneCounters::default();
        let mut sorter = BatchSorter::new(BatchPool::default(), 1, 1564);
        sorter.sort(&bufs, &sizes, &routes, &counters);
        sorter.deliver(&counters);
        assert_eq!(own_rx.try_recv().map(|b| b.len()).ok(), Some(1));
        assert_eq!(other_rx.try_recv().map(|b| b.len()).ok(), Some(2));
        assert_eq!(DataplaneCounters::get(&counters.tun_rx_cross_worker), 2);
        assert_eq!(DataplaneCounters::get(&counters.queue_full_drops), 0);
    }

    fn to(dst: u32) -> Vec<u8> {
        let mut p = v4([198, 18, 0, 1]);
        p[16..20].copy_from_slice(&dst.to_be_bytes());
        p
    }

    /// `sessions` ports on worker 0, routed from 10.0.0.0 + i.
    fn sessions(
        n: u32,
    ) -> (
        std::collections::HashMap<IpAddr, Arc<SessionPort>>,
        Vec<crate::queue::DownlinkRx>,
    ) {
        let mut routes = std::collections::HashMap::new();
        let mut rxs = Vec::new();
        for i in 0..n {
            let (tx, rx) = crate::queue::downlink_queue(crate::queue::QueueLimits::DEFAULT);
            let port = Arc::new(SessionPort {
                index: u64::from(i),
                generation: 1,
                worker: 0,
                tx,
            });
            routes.insert(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), port);
            rxs.push(rx);
        }
        (routes, rxs)
    }

    /// 100 sessions, 1,000 packets in reads of 8 (as a backlogged TUN queue
    /// gives them): each session gets its ~10 packets in one batch at the
    /// end of the read, not ~10 batches of one; nothing is dropped even
    /// though more batches than the old channel's 256 are made overall.
    #[test]
    fn one_read_gives_each_session_one_batch() {
        let (routes, mut rxs) = sessions(100);
        let counters = DataplaneCounters::default();
        let mut sorter = BatchSorter::new(BatchPool::default(), 0, 1564);
        let pkts: Vec<Vec<u8>> = (0..1000u32).map(|i| to(0x0a00_0000 + i % 100)).collect();
        for chunk in pkts.chunks(8) {
            let sizes: Vec<usize> = chunk.iter().map(Vec::len).collect();
            sorter.sort(chunk, &sizes, &routes, &counters);
        }
        // Nothing leaves before the read ends (no batch is full).
        assert!(rxs.iter_mut().all(|rx| rx.try_recv().is_err()));
        sorter.deliver(&counters);
        for rx in &mut rxs {
            assert_eq!(rx.try_recv().map(|b| b.len()).ok(), Some(10));
            assert!(rx.try_recv().is_err());
        }
        assert_eq!(DataplaneCounters::get(&counters.queue_full_drops), 0);
        // The next read starts afresh.
        let sizes = [pkts[0].len()];
        sorter.sort(&pkts[..1], &sizes, &routes, &counters);
        sorter.deliver(&counters);
        assert_eq!(rxs[0].try_recv().map(|b| b.len()).ok(), Some(1));
    }

    /// One session's long read leaves in full batches as it goes, so no
    /// batch outgrows what the pool keeps; the remainder leaves at the end.
    #[test]
    fn a_full_batch_leaves_during_the_read() {
        let (routes, mut rxs) = sessions(1);
        let counters = DataplaneCounters::default();
        let mut sorter = BatchSorter::new(BatchPool::default(), 0, 1564);
        let pkts: Vec<Vec<u8>> = (0..BATCH_PACKETS * 2 + 5)
            .map(|_| to(0x0a00_0000))
            .collect();
        let sizes: Vec<usize> = pkts.iter().map(Vec::len).collect();
        sorter.sort(&pkts, &sizes, &routes, &counters);
        let rx = &mut rxs[0];
        assert_eq!(rx.try_recv().map(|b| b.len()).ok(), Some(BATCH_PACKETS));
        assert_eq!(rx.try_recv().map(|b| b.len()).ok(), Some(BATCH_PACKETS));
        assert!(rx.try_recv().is_err());
        sorter.deliver(&counters);
        assert_eq!(rx.try_recv().map(|b| b.len()).ok(), Some(5));
        // Full-size packets: a batch leaves before its buffer passes the keep limit.
        let big: Vec<Vec<u8>> = (0..BATCH_PACKETS)
            .map(|_| {
                let mut p = to(0x0a00_0000);
                p.resize(9000, 0);
                p
            })
            .collect();
        let sizes: Vec<usize> = big.iter().map(Vec::len).collect();
        let mut sorter = BatchSorter::new(BatchPool::default(), 0, 9064);
        sorter.sort(&big, &sizes, &routes, &counters);
        sorter.deliver(&counters);
        while let Ok(b) = rx.try_recv() {
            let max = crate::batch::KEEP_MAX_BYTES + BATCH_PACKETS * 16;
            assert!(b.capacity_bytes() <= max, "{}", b.capacity_bytes());
        }
    }

    #[test]
    fn only_the_sessions_own_v4_and_v6_sources_pass() {
        let dual: Vec<IpAddr> = vec![
            "198.18.100.10".parse().unwrap(),
            "fd00:100::10".parse().unwrap(),
        ];
        assert!(source_allowed(&v4([198, 18, 100, 10]), &dual));
        assert!(source_allowed(&v6("fd00:100::10"), &dual));
        assert!(!source_allowed(&v4([198, 18, 100, 11]), &dual));
        assert!(!source_allowed(&v6("fd00:100::11"), &dual));
        assert!(!source_allowed(&v6("fe80::1"), &dual));
        assert!(!source_allowed(&[0x60; 20], &dual));
        // An IPv4-only session: no IPv6 source at all.
        let v4_only = &dual[..1];
        assert!(!source_allowed(&v6("fd00:100::10"), v4_only));
        assert!(source_allowed(&v4([198, 18, 100, 10]), v4_only));
    }
}

//! A session's downlink queue: the batches a worker's TUN reader sorted for
//! the session, waiting for the session's task. Bounded by what they hold
//! (packets and bytes) rather than by how many batches wait.
//!
//! Why (issue 13, both ways): the queue was a channel of 256 batches. A TUN
//! read spread over 100 sessions gives each one ~1 packet, so 256 batches
//! held ~256 packets, and with traffic both ways on a full box 27 % of the
//! downlink was dropped here (`drop-queue-full`, BENCHMARKS.md 18:19) while a
//! single download's batches of ~45 packets held 45 times as much in the
//! same bound. Counting packets and bytes bounds the same thing whatever the
//! batching.
//!
//! What is bounded (all three, [`QueueLimits`]):
//! - packets: the per-packet cost (index entry, headroom) of small packets;
//! - bytes: the packets' lengths, what the session will send;
//! - capacity: the batches' buffers as allocated. Pooled buffers keep up
//!   to 128 KiB (`batch::KEEP_MAX_BYTES`), so one packet can sit in a large
//!   buffer: as the working bound this would drop early (a few one-packet
//!   batches in recycled buffers "fill" it), so it is a generous backstop on
//!   memory only, above what the other two allow in well-filled batches.
//!
//! Sharing: the level is a few relaxed atomics in the session's queue, added
//! to by the TUN readers (usually the session's own worker; a flow the
//! kernel steers elsewhere comes from another) and taken from by the
//! session's task; no lock. Two readers may both pass the check at once, so
//! the bound can be exceeded by one batch per worker, never more.
//!
//! An idle session's queue holds no batch: its task takes each one as it
//! arrives and returns it to the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::batch::PacketBatch;

/// What a session's downlink queue may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub packets: usize,
    pub bytes: usize,
    /// Bytes of batch buffers (a memory backstop, see the module docs).
    pub capacity: usize,
}

impl QueueLimits {
    /// 1,024 packets or 1 MiB of packets: ~6 ms of one fast download at
    /// 1.4 Gbit/s (TCP needs ~1 ms of it: the BDP through the tunnel), or
    /// ~400 ms of one of 100 sessions at 20 Mbit/s whose task a busy runtime
    /// reaches every ~150 ms (issue 13, both ways). The old 256 batches held
    /// ~256 packets in the latter case. More only adds latency when the
    /// headend is short of CPU, and memory: 100 overloaded sessions hold
    /// 100 MiB. Capacity backstop 8 MiB: 128 batches of 64 KiB, a quarter
    /// of what 256 batches could hold in recycled 128 KiB buffers.
    pub const DEFAULT: Self = Self {
        packets: 1024,
        bytes: 1024 * 1024,
        capacity: 8 * 1024 * 1024,
    };

    /// How many of a batch's first packets fit after what is `queued`:
    /// `lens` are its packets' lengths in order, `capacity` its buffers'.
    /// A batch whose buffers do not fit is refused whole (0); otherwise
    /// packets are taken in order while both the packet and byte bounds
    /// hold (a prefix: the order within a flow is kept).
    pub fn admit(
        &self,
        queued: Occupancy,
        lens: impl IntoIterator<Item = usize>,
        capacity: usize,
    ) -> usize {
        if queued.capacity.saturating_add(capacity) > self.capacity {
            return 0;
        }
        let room = self.packets.saturating_sub(queued.packets);
        let mut bytes = queued.bytes;
        lens.into_iter()
            .take(room)
            .take_while(|&len| {
                bytes = bytes.saturating_add(len);
                bytes <= self.bytes
            })
            .count()
    }
}

/// What a queue (or one batch) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub packets: usize,
    pub bytes: usize,
    pub capacity: usize,
}

impl Occupancy {
    /// What `batch` adds to a queue.
    pub fn of(batch: &PacketBatch) -> Self {
        Self {
            packets: batch.len(),
            bytes: batch.bytes(),
            capacity: batch.capacity_bytes(),
        }
    }
}

/// The shared level of one queue.
#[derive(Debug, Default)]
struct Level {
    packets: AtomicUsize,
    bytes: AtomicUsize,
    capacity: AtomicUsize,
}

impl Level {
    fn load(&self) -> Occupancy {
        Occupancy {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            capacity: self.capacity.load(Ordering::Relaxed),
        }
    }

    fn add(&self, o: Occupancy) {
        self.packets.fetch_add(o.packets, Ordering::Relaxed);
        self.bytes.fetch_add(o.bytes, Ordering::Relaxed);
        self.capacity.fetch_add(o.capacity, Ordering::Relaxed);
    }

    fn sub(&self, o: Occupancy) {
        self.packets.fetch_sub(o.packets, Ordering::Relaxed);
        self.bytes.fetch_sub(o.bytes, Ordering::Relaxed);
        self.capacity.fetch_sub(o.capacity, Ordering::Relaxed);
    }
}

/// A new session's downlink queue.
pub fn downlink_queue(limits: QueueLimits) -> (DownlinkTx, DownlinkRx) {
    // Unbounded as a channel: the level is the bound (each batch holds at
    // least one packet, so at most `limits.packets` batches wait).
    let (tx, rx) = mpsc::unbounded_channel();
    let level = Arc::new(Level::default());
    (
        DownlinkTx {
            tx,
            level: level.clone(),
            limits,
        },
        DownlinkRx { rx, level },
    )
}

/// The TUN readers' end of a session's queue.
#[derive(Debug)]
pub struct DownlinkTx {
    tx: mpsc::UnboundedSender<PacketBatch>,
    level: Arc<Level>,
    limits: QueueLimits,
}

/// What became of a batch offered to a queue.
#[derive(Debug)]
pub struct Offered {
    /// Packets that did not fit (or whose session is gone).
    pub dropped: usize,
    /// The batch, if none of it was queued (for the pool).
    pub refused: Option<PacketBatch>,
}

impl DownlinkTx {
    /// Queues as much of `batch` as fits, in order; the rest is dropped.
    pub fn offer(&self, mut batch: PacketBatch) -> Offered {
        let len = batch.len();
        let n = self
            .limits
            .admit(self.level.load(), batch.lens(), batch.capacity_bytes());
        if n == 0 {
            return Offered {
                dropped: len,
                refused: Some(batch),
            };
        }
        batch.truncate(n);
        let o = Occupancy::of(&batch);
        self.level.add(o);
        match self.tx.send(batch) {
            Ok(()) => Offered {
                dropped: len - n,
                refused: None,
            },
            Err(mpsc::error::SendError(b)) => {
                self.level.sub(o);
                Offered {
                    dropped: len,
                    refused: Some(b),
                }
            }
        }
    }

    /// What waits in the queue now.
    pub fn occupancy(&self) -> Occupancy {
        self.level.load()
    }
}

/// The session's end of its queue.
#[derive(Debug)]
pub struct DownlinkRx {
    rx: mpsc::UnboundedReceiver<PacketBatch>,
    level: Arc<Level>,
}

impl DownlinkRx {
    /// The next batch; None once every TUN reader's end is gone.
    /// Cancel-safe (as tokio's `recv`: a batch is taken only when returned).
    pub async fn recv(&mut self) -> Option<PacketBatch> {
        let b = self.rx.recv().await?;
        self.level.sub(Occupancy::of(&b));
        Some(b)
    }

    /// The next batch if one waits.
    pub fn try_recv(&mut self) -> Result<PacketBatch, mpsc::error::TryRecvError> {
        let b = self.rx.try_recv()?;
        self.level.sub(Occupancy::of(&b));
        Ok(b)
    }

    /// What waits in the queue now.
    pub fn occupancy(&self) -> Occupancy {
        self.level.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lens: &[usize]) -> PacketBatch {
        let mut b = PacketBatch::default();
        for &l in lens {
            b.push(&vec![0x45; l]);
        }
        b
    }

    const SMALL: QueueLimits = QueueLimits {
        packets: 10,
        bytes: 10_000,
        capacity: 1 << 20,
    };

    #[test]
    fn many_one_packet_batches_fit_up_to_the_packet_bound() {
        // 100 sessions' worth of sorting: one packet per batch. The old
        // bound (a channel of N batches) held N packets; this one holds
        // `packets` whatever the batching, and a batch of 64 fills the same.
        let (tx, mut rx) = downlink_queue(QueueLimits::DEFAULT);
        let mut queued = 0;
        for _ in 0..QueueLimits::DEFAULT.packets + 100 {
            let o = tx.offer(batch(&[100]));
            if o.dropped == 0 {
                queued += 1;
            }
        }
        assert_eq!(queued, QueueLimits::DEFAULT.packets);
        assert_eq!(tx.occupancy().packets, QueueLimits::DEFAULT.packets);
        // More than 256 one-packet batches wait: the bound is not in batches.
        assert!(queued > 256);
        let mut got = 0;
        while let Ok(b) = rx.try_recv() {
            got += b.len();
        }
        assert_eq!(got, QueueLimits::DEFAULT.packets);
        assert_eq!(rx.occupancy(), Occupancy::default());
    }

    #[test]
    fn a_batch_that_does_not_fit_is_cut_to_the_prefix_that_does() {
        let (tx, mut rx) = downlink_queue(SMALL);
        assert_eq!(tx.offer(batch(&[100; 8])).dropped, 0);
        // 2 more packets fit of 5.
        let o = tx.offer(batch(&[1, 2, 3, 4, 5]));
        assert_eq!(o.dropped, 3);
        assert!(o.refused.is_none());
        // Full: a whole batch comes back for the pool.
        let o = tx.offer(batch(&[7]));
        assert_eq!(o.dropped, 1);
        assert_eq!(o.refused.map(|b| b.len()), Some(1));
        assert_eq!(rx.try_recv().map(|b| b.len()).ok(), Some(8));
        let cut = rx.try_recv().unwrap();
        assert_eq!(cut.iter().map(<[u8]>::len).collect::<Vec<_>>(), [1, 2]);
        // Taking makes room again.
        assert_eq!(tx.offer(batch(&[7; 10])).dropped, 0);
    }

    #[test]
    fn bytes_bound_large_packets() {
        let (tx, _rx) = downlink_queue(SMALL);
        // 10,000 bytes: six packets of 1,500 fit, the seventh does not.
        let o = tx.offer(batch(&[1500; 9]));
        assert_eq!(o.dropped, 3);
        assert_eq!(tx.occupancy().bytes, 9000);
        assert_eq!(tx.offer(batch(&[1000])).dropped, 0);
        assert_eq!(tx.offer(batch(&[1])).dropped, 1);
    }

    #[test]
    fn buffer_capacity_is_only_a_backstop() {
        let limits = QueueLimits {
            capacity: 64 * 1024,
            ..QueueLimits::DEFAULT
        };
        // A one-packet batch in a recycled 40 KiB buffer fits once...
        let mut big = PacketBatch::with_capacity(40 * 1024);
        big.push(&[0x45; 60]);
        let queued = Occupancy {
            packets: 1,
            bytes: 60,
            capacity: big.capacity_bytes(),
        };
        assert_eq!(limits.admit(Occupancy::default(), [60], queued.capacity), 1);
        // ...a second does not: the buffers, not the 120 bytes, are the memory.
        assert_eq!(limits.admit(queued, [60], queued.capacity), 0);
        // The default backstop holds 128 batches of 64 KiB.
        let full = 64 * 1024;
        let mut o = Occupancy::default();
        for _ in 0..128 {
            assert_eq!(QueueLimits::DEFAULT.admit(o, [1], full), 1);
            o.capacity += full;
            o.packets += 1;
            o.bytes += 1;
        }
        assert_eq!(QueueLimits::DEFAULT.admit(o, [1], full), 0);
    }

    #[test]
    fn a_closed_queue_refuses_and_keeps_no_level() {
        let (tx, rx) = downlink_queue(SMALL);
        drop(rx);
        let o = tx.offer(batch(&[10, 20]));
        assert_eq!(o.dropped, 2);
        assert_eq!(o.refused.map(|b| b.len()), Some(2));
        assert_eq!(tx.occupancy(), Occupancy::default());
    }

    #[tokio::test]
    async fn recv_takes_in_order_and_empties_the_level() {
        let (tx, mut rx) = downlink_queue(SMALL);
        tx.offer(batch(&[1]));
        tx.offer(batch(&[2, 3]));
        assert_eq!(rx.occupancy().packets, 3);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(1));
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(2));
        assert_eq!(rx.occupancy(), Occupancy::default());
        drop(tx);
        assert!(rx.recv().await.is_none());
    }
}

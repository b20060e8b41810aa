//! Packet batches with headroom, and a pool that recycles them.
//!
//! A [`PacketBatch`] stores packets back to back in one buffer, each preceded by
//! `HEADROOM` spare bytes so an encapsulation header (CSTP: 8 bytes) can be
//! written in front of the packet without copying it.

use std::sync::{Arc, Mutex};

/// Spare bytes kept in front of every packet (CSTP header is 8).
pub const HEADROOM: usize = 8;

/// Packets per batch the downlink path aims for.
pub const BATCH_PACKETS: usize = 64;

#[derive(Debug, Default)]
pub struct PacketBatch {
    buf: Vec<u8>,
    /// (offset of the packet in `buf`, length); `HEADROOM` bytes precede each.
    packets: Vec<(usize, usize)>,
}

impl PacketBatch {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            packets: Vec::with_capacity(BATCH_PACKETS),
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.packets.clear();
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.packets.iter().map(|&(_, l)| l).sum()
    }

    /// Whether a packet of `len` bytes can be pushed without the buffer
    /// growing past what the pool keeps ([`KEEP_MAX_BYTES`]); a `Vec` grows
    /// to twice its capacity (or to what is needed, if more).
    pub fn fits_kept(&self, len: usize) -> bool {
        let need = self.buf.len() + HEADROOM + len;
        let cap = self.buf.capacity();
        need <= cap || need.max(cap.saturating_mul(2)) <= KEEP_MAX_BYTES
    }

    /// Each packet's length, in order.
    pub fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        self.packets.iter().map(|&(_, l)| l)
    }

    /// Keeps the first `n` packets (their bytes stay; only the index shrinks).
    pub fn truncate(&mut self, n: usize) {
        self.packets.truncate(n);
    }

    /// The memory the batch's buffers hold as allocated (at least what its
    /// packets use: a recycled buffer keeps its capacity).
    pub fn capacity_bytes(&self) -> usize {
        self.buf.capacity() + self.packets.capacity() * std::mem::size_of::<(usize, usize)>()
    }

    /// Appends a copy of `pkt` after `HEADROOM` spare bytes.
    pub fn push(&mut self, pkt: &[u8]) {
        let start = self.buf.len() + HEADROOM;
        self.buf.resize(start, 0);
        self.buf.extend_from_slice(pkt);
        self.packets.push((start, pkt.len()));
    }

    /// Visits each packet with its headroom: the closure gets a mutable slice of
    /// `HEADROOM + len` bytes whose first `HEADROOM` bytes are free to overwrite.
    pub fn for_each_with_headroom(&mut self, mut f: impl FnMut(&mut [u8])) {
        for &(off, len) in &self.packets {
            if let Some(s) = self.buf.get_mut(off - HEADROOM..off + len) {
                f(s);
            }
        }
    }

    /// Keeps only the packets whose flag is set (flags in packet order; missing
    /// flags drop). The bytes stay where they are; only the index shrinks.
    pub fn retain_flags(&mut self, keep: &[bool]) {
        let mut i = 0;
        self.packets.retain(|_| {
            let k = keep.get(i).copied().unwrap_or(false);
            i += 1;
            k
        });
    }

    /// Packet `i`, writable in place (e.g. decrypted where it lies).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let &(off, len) = self.packets.get(i)?;
        self.buf.get_mut(off..off + len)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.packets
            .iter()
            .filter_map(|&(off, len)| self.buf.get(off..off + len))
    }
}

/// A bounded free list of batches. Each worker has its own (issue 13 item 3),
/// so the shared list's lock is taken by one thread only; a batch that a
/// worker's downlink hands to another worker's session is put back into that
/// session's worker's pool (bounded like the rest).
///
/// Each thread keeps up to [`LOCAL_MAX`] batches of its own (no lock on
/// the per-batch path in steady state: the batch a task takes is usually put
/// back on the same thread); only past that does it touch the shared list,
/// itself bounded by [`POOL_MAX`] (issue 12: memory held after a burst is
/// bounded by the pool, not by the number of sessions that had one).
#[derive(Debug, Clone, Default)]
pub struct BatchPool {
    free: Arc<Mutex<Vec<PacketBatch>>>,
}

/// Batches a worker thread keeps for itself.
const LOCAL_MAX: usize = 32;

/// Batches kept in the shared list; beyond this, returned batches are dropped.
const POOL_MAX: usize = 128;

/// A new batch starts small and grows to what it carries: a batch with one
/// packet (a ping to each of 10,000 sessions) must not cost 100 KiB.
const NEW_BATCH_BYTES: usize = 2048;

/// Larger batches (a burst of jumbo super-packets) are not kept.
pub const KEEP_MAX_BYTES: usize = BATCH_PACKETS * 2048;

thread_local! {
    static LOCAL: std::cell::RefCell<Vec<PacketBatch>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl BatchPool {
    pub fn get(&self) -> PacketBatch {
        if let Some(b) = LOCAL.with_borrow_mut(Vec::pop) {
            return b;
        }
        let b = self.free.lock().ok().and_then(|mut f| f.pop());
        b.unwrap_or_else(|| PacketBatch::with_capacity(NEW_BATCH_BYTES))
    }

    pub fn put(&self, mut b: PacketBatch) {
        if b.buf.capacity() > KEEP_MAX_BYTES {
            return;
        }
        b.clear();
        let Some(b) = LOCAL.with_borrow_mut(|l| {
            if l.len() < LOCAL_MAX {
                l.push(b);
                None
            } else {
                Some(b)
            }
        }) else {
            return;
        };
        if let Ok(mut f) = self.free.lock()
            && f.len() < POOL_MAX
        {
            f.push(b);
        }
    }

    /// Batches in the shared list (tests, `show counters`).
    pub fn shared_len(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_precedes_each_packet() {
        let mut b = PacketBatch::default();
        b.push(b"abc");
        b.push(b"defgh");
        assert_eq!(b.len(), 2);
        assert_eq!(b.bytes(), 8);
        let got: Vec<&[u8]> = b.iter().collect();
        assert_eq!(got, vec![&b"abc"[..], &b"defgh"[..]]);
        let mut seen = Vec::new();
        b.for_each_with_headroom(|s| {
            assert_eq!(s.len(), HEADROOM + s[HEADROOM..].len());
            s[..HEADROOM].fill(0xAA);
            seen.push(s.to_vec());
        });
        assert_eq!(&seen[0][HEADROOM..], b"abc");
        assert_eq!(&seen[1][..HEADROOM], &[0xAA; HEADROOM]);
        // Writing the headroom did not touch the packets.
        let got: Vec<&[u8]> = b.iter().collect();
        assert_eq!(got, vec![&b"abc"[..], &b"defgh"[..]]);
    }

    #[test]
    fn retain_flags_drops_denied_packets_in_order() {
        let mut b = PacketBatch::default();
        for p in [&b"a"[..], b"bb", b"ccc", b"dddd"] {
            b.push(p);
        }
        b.retain_flags(&[true, false, true]);
        let got: Vec<&[u8]> = b.iter().collect();
        assert_eq!(got, vec![&b"a"[..], &b"ccc"[..]]);
    }

    #[test]
    fn pool_is_bounded_and_drops_oversized_batches() {
        // A thread of its own: the thread-local list starts empty.
        std::thread::spawn(|| {
            let pool = BatchPool::default();
            let batches: Vec<PacketBatch> = (0..LOCAL_MAX + POOL_MAX + 10)
                .map(|_| {
                    let mut b = pool.get();
                    b.push(&[0u8; 100]);
                    b
                })
                .collect();
            for b in batches {
                pool.put(b);
            }
            assert_eq!(pool.shared_len(), POOL_MAX);
            assert_eq!(LOCAL.with_borrow(Vec::len), LOCAL_MAX);
            // A batch grown past the keep limit is freed, not pooled.
            let mut big = PacketBatch::default();
            big.push(&vec![0u8; KEEP_MAX_BYTES + 1]);
            LOCAL.with_borrow_mut(Vec::clear);
            pool.put(big);
            assert_eq!(LOCAL.with_borrow(Vec::len), 0);
            // A new batch starts small.
            assert!(pool.get().buf.capacity() <= KEEP_MAX_BYTES);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pool_recycles_capacity() {
        let pool = BatchPool::default();
        let mut b = pool.get();
        b.push(&[1u8; 1000]);
        let cap = b.buf.capacity();
        pool.put(b);
        let b = pool.get();
        assert!(b.is_empty());
        assert_eq!(b.buf.capacity(), cap);
    }
}

//! Dataplane counters: relaxed atomics, bumped once per batch where possible.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct DataplaneCounters {
    /// Packets read from TUN.
    pub tun_rx_packets: AtomicU64,
    /// Packets read from a worker's TUN queue for a session another worker
    /// owns (the kernel's queue steering missed; still delivered, through
    /// the session's channel, one thread hop more).
    pub tun_rx_cross_worker: AtomicU64,
    /// Packets written to TUN.
    pub tun_tx_packets: AtomicU64,
    /// Downlink packets whose destination belongs to no connected session.
    pub no_session_drops: AtomicU64,
    /// Downlink packets dropped because a session's queue was full.
    pub queue_full_drops: AtomicU64,
    /// Downlink packets that were not IP.
    pub malformed_drops: AtomicU64,
    /// Uplink packets whose source was not one of the session's assigned addresses.
    pub spoofed_source_drops: AtomicU64,
    /// Uplink IPv6 packets from a link-local or the unspecified address (router
    /// solicitations, MLD reports of the client's TUN): never forwarded, and not
    /// spoofing either, so counted apart.
    pub link_local_drops: AtomicU64,
    /// TUN reads that failed (and were skipped).
    pub tun_rx_errors: AtomicU64,
    /// Uplink packets that failed to write to TUN.
    pub tun_tx_errors: AtomicU64,
}

impl DataplaneCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

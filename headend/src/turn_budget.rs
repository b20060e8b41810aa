//! How much one session's task does before it lets the runtime's other tasks
//! run (issue 13: traffic both ways at once lost 81-98 % of the downlink).
//!
//! Why: the downlink reaches the sessions through one TUN reader task (per
//! worker), while the uplink is spread over every session's own socket. A
//! session whose socket always has datagrams ready handled them batch after
//! batch in one poll, up to tokio's cooperative budget (128 socket readiness
//! checks, each batch then up to 32 GRO'd reads, later 8, now about 64
//! datagrams: `recv_budget.rs`): with 100 such sessions one round
//! of the runtime took hundreds of milliseconds, the TUN reader ran once per
//! round, and the kernel dropped what did not fit the device's 16,384-packet
//! queue in the meantime (`ip -s link` TX dropped on the TUN: 55 % of the
//! downlink, BENCHMARKS.md), then the sessions' own downlink queues overflowed
//! (`drop-queue-full`) for the same reason. Each loop of a session's `pump`
//! spends the packets it moved (either direction) here and yields once the
//! turn's share is used, so a round of the runtime stays short and the
//! TUN reader, and every session's downlink, are served in each.
//!
//! Within a session the two directions share its turns too. An uplink event
//! is one socket read: then up to 32 GRO'd reads (later 8, now ~64 datagrams), ~190 datagrams each in the
//! 100-session run (up to 2,048); a downlink event took queued batches only
//! until 128 KiB (~93 packets) waited, and a paced session's downlink sat
//! out whole turns. On a runtime that reaches each session every few hundred
//! ms (an overloaded box) the uplink then got ~8x the downlink's packets
//! (per-session counts: 50 uplink events, 970 k datagrams, against 7
//! downlink events, 59 k packets) and the downlink queue overflowed. So the
//! downlink drain owes the uplink: it takes at least as many packets as the
//! uplink moved since the last drain (deficit round robin over the two
//! directions, bounded by [`MAX_OWED_PACKETS`]).
//!
//! Sans-IO: counts packets; the caller yields and drains.

/// Packets a session moves per turn before it yields: ~0.4 ms of work at
/// ~6 us per packet (decrypt or encrypt plus the syscalls, BENCHMARKS.md), so
/// 100 busy sessions make a round of ~40 ms, well inside the TUN queue
/// (16,384 packets, ~90 ms at 2 Gbit/s), while one fast session yields only
/// once per ~64 packets (two socket batches).
pub const DEFAULT_TURN_PACKETS: u64 = 64;

/// The most packets a downlink drain owes the uplink: ~1.4 MB of records
/// waiting to be sent at most, whatever one socket read brought in.
pub const MAX_OWED_PACKETS: u64 = 1024;

/// A session's share of one turn of the runtime, in packets.
#[derive(Debug, Clone)]
pub struct TurnBudget {
    per_turn: u64,
    spent: u64,
    /// Uplink packets moved since the downlink last drained its queue.
    owed: u64,
}

impl TurnBudget {
    /// `per_turn`: packets per turn (at least 1).
    pub fn new(per_turn: u64) -> Self {
        Self {
            per_turn: per_turn.max(1),
            spent: 0,
            owed: 0,
        }
    }

    /// Counts `packets` moved in this turn.
    pub fn spend(&mut self, packets: u64) {
        self.spent = self.spent.saturating_add(packets);
    }

    /// Counts uplink packets: they use the turn and are owed to the downlink.
    pub fn uplink(&mut self, packets: u64) {
        self.spend(packets);
        self.owed = self.owed.saturating_add(packets).min(MAX_OWED_PACKETS);
    }

    /// Whether a downlink drain that took `drained` packets so far, with
    /// `waiting` bytes not yet sent, takes another queued batch: until the
    /// session's own floor waits (`floor`: what a paced session holds) and
    /// until it has matched the uplink.
    pub fn drain_more(&self, drained: u64, waiting: usize, floor: usize) -> bool {
        waiting < floor || drained < self.owed
    }

    /// A downlink drain ended (`drained` packets): the uplink is even again.
    pub fn drained(&mut self, drained: u64) {
        self.spend(drained);
        self.owed = 0;
    }

    /// True when this turn's share is used: the caller yields now, and the
    /// next turn starts empty. What one event moved beyond the share is not
    /// carried over (an event is at most one socket or queue batch).
    pub fn should_yield(&mut self) -> bool {
        if self.spent < self.per_turn {
            return false;
        }
        self.spent = 0;
        true
    }
}

impl Default for TurnBudget {
    fn default() -> Self {
        Self::new(DEFAULT_TURN_PACKETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_once_the_share_is_used_and_starts_the_next_turn_empty() {
        let mut t = TurnBudget::new(64);
        t.spend(32);
        assert!(!t.should_yield());
        t.spend(31);
        assert!(!t.should_yield());
        t.spend(1);
        assert!(t.should_yield());
        // The next turn starts empty: no yield until 64 more.
        assert!(!t.should_yield());
        t.spend(63);
        assert!(!t.should_yield());
    }

    #[test]
    fn one_large_batch_ends_the_turn_without_debt() {
        let mut t = TurnBudget::new(64);
        // One GRO'd socket batch far beyond the share: one yield, and
        // the excess does not make the following turns shorter.
        t.spend(2048);
        assert!(t.should_yield());
        t.spend(10);
        assert!(!t.should_yield());
    }

    #[test]
    fn the_downlink_drain_matches_what_the_uplink_moved() {
        let mut t = TurnBudget::new(64);
        let floor = 128 * 1024;
        // Nothing owed: the drain stops once the floor waits.
        assert!(t.drain_more(0, 0, floor));
        assert!(!t.drain_more(93, floor, floor));
        // One GRO'd uplink read of 190 datagrams: the next drain goes on
        // past the floor until it took as many.
        t.uplink(190);
        assert!(t.drain_more(93, floor, floor));
        assert!(t.drain_more(189, 2 * floor, floor));
        assert!(!t.drain_more(190, 2 * floor, floor));
        t.drained(190);
        // Even again: back to the floor.
        assert!(!t.drain_more(0, floor, floor));
        // The drain's packets used the turn as well.
        assert!(t.should_yield());
    }

    #[test]
    fn what_the_downlink_owes_is_bounded() {
        let mut t = TurnBudget::new(64);
        for _ in 0..100 {
            t.uplink(2048);
        }
        assert!(t.drain_more(MAX_OWED_PACKETS - 1, usize::MAX, 0));
        assert!(!t.drain_more(MAX_OWED_PACKETS, usize::MAX, 0));
    }

    #[test]
    fn idle_sessions_never_yield_and_zero_is_one() {
        let mut t = TurnBudget::default();
        for _ in 0..1000 {
            t.spend(0);
            assert!(!t.should_yield());
        }
        let mut one = TurnBudget::new(0);
        one.spend(1);
        assert!(one.should_yield());
        let mut huge = TurnBudget::new(1);
        huge.spend(u64::MAX);
        huge.spend(u64::MAX);
        assert!(huge.should_yield());
    }
}

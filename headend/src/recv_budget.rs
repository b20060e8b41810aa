//! How much one uplink event reads from a session's DTLS socket before the
//! packets go to TUN (issue 13, DTLS upload's CPU per GB).
//!
//! Why: each event's packets leave in one TUN write batch, and tun-rs
//! coalesces a flow's TCP segments within that batch into one super-packet,
//! which the kernel forwards and TCP receives as one skb. One openconnect
//! sends one datagram per packet (no GSO, so no GRO trains on the way in):
//! with one receive call of 8 slots per event, a TUN write carried 4.3 packets
//! (BENCHMARKS.md, 2026-12-07 23:12). So an event keeps reading while the
//! socket still has datagrams (the last call filled every slot it asked for)
//! until it holds about one super-packet's worth ([`DEFAULT_EVENT_DATAGRAMS`]),
//! and sizes each call by what a message held last time: single datagrams
//! get many slots per call, GRO trains (loadgen's GSO bursts, up to 44
//! datagrams each) few, so one event stays near the same count either way
//! and the turn budget's fairness between sessions holds (turn_budget.rs:
//! 8 trains, ~190 datagrams per event, overflowed the downlink queues).
//!
//! Sans-IO: the caller makes the calls; this counts and decides.

/// Datagrams one event aims for: a TUN super-packet is at most 64 KiB, 46
/// packets of the lab's 1,390-byte tunnel MTU; 64 is also a session's turn
/// share (`turn_budget::DEFAULT_TURN_PACKETS`) and a batch's packet count.
pub const DEFAULT_EVENT_DATAGRAMS: usize = 64;

/// Messages one receive call may ask for. Each slot is 64 KiB (a GRO train),
/// so this also bounds what one call can overshoot the budget by when the
/// traffic turns from single datagrams to trains: 16 trains, twice the
/// fixed 8 slots per event before; single datagrams take 4 calls per event.
pub const MAX_SLOTS: usize = 16;

/// Receive calls one event makes at most (each after a full one): a bound
/// for the loop whatever the counts say.
pub const MAX_CALLS: usize = 8;

/// One uplink event's reads.
#[derive(Debug, Clone)]
pub struct RecvPlan {
    budget: usize,
    max_slots: usize,
    got: usize,
    calls: usize,
    /// Datagrams per message (GRO train) the last call saw, at least 1.
    per_msg: usize,
    /// False once a call came back short: the socket is empty for now.
    more: bool,
}

impl RecvPlan {
    /// An event aiming for `budget` datagrams, calls of at most `max_slots`
    /// messages, starting from `per_msg` datagrams per message (what the
    /// socket's last event saw; 0 is taken as 1).
    pub fn new(budget: usize, max_slots: usize, per_msg: usize) -> Self {
        Self {
            budget: budget.max(1),
            max_slots: max_slots.max(1),
            got: 0,
            calls: 0,
            per_msg: per_msg.max(1),
            more: true,
        }
    }

    /// With the defaults.
    pub fn with_hint(per_msg: usize) -> Self {
        Self::new(DEFAULT_EVENT_DATAGRAMS, MAX_SLOTS, per_msg)
    }

    /// Messages to ask for in the next receive call; 0: the event is done
    /// (budget reached, the socket ran empty, or the call bound).
    pub fn slots(&self) -> usize {
        if !self.more || self.got >= self.budget || self.calls >= MAX_CALLS {
            return 0;
        }
        (self.budget - self.got)
            .div_ceil(self.per_msg)
            .clamp(1, self.max_slots)
    }

    /// A call that asked for `asked` messages got `msgs` holding `datagrams`.
    pub fn record(&mut self, asked: usize, msgs: usize, datagrams: usize) {
        self.calls += 1;
        self.got = self.got.saturating_add(datagrams);
        if msgs > 0 {
            self.per_msg = datagrams.div_ceil(msgs).max(1);
        }
        // A short read: what came in meanwhile waits for the next event.
        self.more = msgs >= asked;
    }

    /// The socket ran empty (WouldBlock) or failed: the event ends.
    pub fn stop(&mut self) {
        self.more = false;
    }

    /// Datagrams this event got.
    pub fn datagrams(&self) -> usize {
        self.got
    }

    /// Datagrams per message last seen: the next event's starting hint.
    pub fn per_msg(&self) -> usize {
        self.per_msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a socket holding `queued` datagrams in trains of `train` to the
    /// plan; returns (calls, datagrams per call).
    fn run(plan: &mut RecvPlan, mut queued: usize, train: usize) -> Vec<usize> {
        let mut calls = Vec::new();
        loop {
            let asked = plan.slots();
            if asked == 0 {
                break;
            }
            let msgs = queued.div_ceil(train).min(asked);
            let dgrams = (msgs * train).min(queued);
            queued -= dgrams;
            if msgs == 0 {
                plan.stop();
                break;
            }
            plan.record(asked, msgs, dgrams);
            calls.push(dgrams);
        }
        calls
    }

    #[test]
    fn single_datagrams_are_read_until_one_super_packet_is_held() {
        // openconnect: one datagram per message, a deep backlog.
        let mut p = RecvPlan::with_hint(1);
        let calls = run(&mut p, 1000, 1);
        assert_eq!(calls, vec![16, 16, 16, 16]);
        assert_eq!(p.datagrams(), DEFAULT_EVENT_DATAGRAMS);
    }

    #[test]
    fn a_short_read_ends_the_event() {
        // The socket holds 40: the third call comes back short and no
        // fourth call is made (it would only find the socket empty).
        let mut p = RecvPlan::with_hint(1);
        assert_eq!(run(&mut p, 40, 1), vec![16, 16, 8]);
        assert_eq!(p.slots(), 0);
        // An empty socket: one call, nothing, done.
        let mut p = RecvPlan::with_hint(1);
        assert_eq!(run(&mut p, 0, 1), Vec::<usize>::new());
    }

    #[test]
    fn gro_trains_get_few_slots_so_an_event_stays_near_the_budget() {
        // loadgen's GSO bursts arrive as trains of 44: from the hint, two
        // slots, not the 8 (352 datagrams) of one fixed-size call.
        let mut p = RecvPlan::with_hint(44);
        let calls = run(&mut p, 10_000, 44);
        assert_eq!(calls, vec![88]);
        // An event whose hint said single datagrams overshoots by at most
        // one call's slots and learns the trains from it.
        let mut p = RecvPlan::with_hint(1);
        let calls = run(&mut p, 10_000, 44);
        assert_eq!(calls, vec![MAX_SLOTS * 44]);
        assert_eq!(p.per_msg(), 44);
    }

    #[test]
    fn calls_per_event_are_bounded() {
        // Whatever the counts (a call that fills its slots with nothing
        // counted), the event makes at most MAX_CALLS calls.
        let mut p = RecvPlan::new(usize::MAX, 4, 1);
        let mut calls = 0;
        while p.slots() > 0 {
            p.record(p.slots(), p.slots(), 0);
            calls += 1;
            assert!(calls <= MAX_CALLS);
        }
        assert_eq!(calls, MAX_CALLS);
        // Zero-sized arguments are taken as one.
        let p = RecvPlan::new(0, 0, 0);
        assert_eq!(p.slots(), 1);
    }
}

//! When a node re-announces the addresses it took over (sans-IO: instants in,
//! the addresses due out).
//!
//! A takeover sends three gratuitous ARPs at once (`neigh.rs`, RFC 5227 section
//! 3), which moves every host on the inside segment that hears them. That is not
//! always the end of it: a node that hung (SIGSTOP, a stalled VM) lost its
//! sessions but its kernel still answers ARP for their addresses from the proxy
//! entries it set, until the process runs again and removes them. A host that
//! re-resolves an address in that window may get the hung node's answer and keep
//! sending there, a blackhole until its entry is probed again. So the new owner
//! repeats the announcement a few times over half a minute, as keepalived's
//! `vrrp_garp_master_repeat`/`vrrp_garp_master_refresh` do for a VIP: each
//! repeat moves such a host back once the hung node stopped answering.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The repeats after the first announcement, counted from the takeover:
/// doubling, so that a node that comes back within half a minute has at least
/// one repeat after it withdrew its proxy entries.
pub const REPEATS: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// The addresses with repeats still to send. Bounded by the addresses this node
/// serves: each entry leaves after its last repeat or when the address is no
/// longer served.
#[derive(Debug, Default)]
pub struct Announcements {
    /// Address -> (when it was taken over, how many repeats were sent).
    pending: HashMap<Ipv4Addr, (Instant, usize)>,
}

impl Announcements {
    /// This node started serving `addr` at `now` (and announced it once).
    pub fn serve(&mut self, addr: Ipv4Addr, now: Instant) {
        self.pending.insert(addr, (now, 0));
    }

    /// This node no longer serves `addr`: no more repeats for it.
    pub fn unserve(&mut self, addr: Ipv4Addr) {
        self.pending.remove(&addr);
    }

    /// When the next repeat is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending
            .values()
            .filter_map(|&(since, sent)| REPEATS.get(sent).map(|d| since + *d))
            .min()
    }

    /// The addresses whose repeat is due at `now` (each once, however late the
    /// caller is: a late wake-up sends one repeat, not a burst).
    pub fn due(&mut self, now: Instant, out: &mut Vec<Ipv4Addr>) {
        self.pending.retain(|addr, (since, sent)| {
            let Some(at) = REPEATS.get(*sent) else {
                return false;
            };
            if *since + *at <= now {
                out.push(*addr);
                // Skip the repeats a late wake-up already passed.
                while REPEATS.get(*sent).is_some_and(|d| *since + *d <= now) {
                    *sent += 1;
                }
            }
            *sent < REPEATS.len()
        });
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 100, i)
    }

    /// Runs the schedule to its end, waking exactly when it asks: the offsets
    /// (from `t0`) at which each address was announced.
    fn run(a: &mut Announcements, t0: Instant) -> Vec<(Duration, Ipv4Addr)> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        // Bounded: every wake-up sends at least one repeat.
        for _ in 0..100 {
            let Some(now) = a.next_due() else { break };
            a.due(now, &mut out);
            assert!(!out.is_empty(), "woken for nothing at {:?}", now - t0);
            seen.extend(out.drain(..).map(|x| (now - t0, x)));
        }
        seen
    }

    #[test]
    fn a_takeover_is_repeated_at_1_2_4_8_16_seconds_then_forgotten() {
        let t0 = Instant::now();
        let mut a = Announcements::default();
        a.serve(addr(10), t0);
        let seen = run(&mut a, t0);
        let at: Vec<u64> = seen.iter().map(|(d, _)| d.as_secs()).collect();
        assert_eq!(at, vec![1, 2, 4, 8, 16]);
        assert!(a.is_empty());
        assert_eq!(a.next_due(), None);
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let t0 = Instant::now();
        let mut a = Announcements::default();
        a.serve(addr(10), t0);
        let mut out = Vec::new();
        a.due(t0 + Duration::from_millis(999), &mut out);
        assert!(out.is_empty());
        assert_eq!(a.next_due(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn an_address_no_longer_served_is_not_announced() {
        let t0 = Instant::now();
        let mut a = Announcements::default();
        a.serve(addr(10), t0);
        a.serve(addr(11), t0 + Duration::from_millis(500));
        let mut out = Vec::new();
        a.due(t0 + Duration::from_secs(1), &mut out);
        assert_eq!(out, vec![addr(10)]);
        a.unserve(addr(10));
        let seen = run(&mut a, t0);
        assert!(seen.iter().all(|(_, x)| *x == addr(11)), "{seen:?}");
        assert_eq!(seen.len(), REPEATS.len());
    }

    #[test]
    fn a_late_wake_up_sends_one_repeat_not_a_burst() {
        let t0 = Instant::now();
        let mut a = Announcements::default();
        a.serve(addr(10), t0);
        let mut out = Vec::new();
        a.due(t0 + Duration::from_secs(5), &mut out);
        assert_eq!(out, vec![addr(10)]);
        // 1, 2 and 4 s passed: the next one is the 8 s repeat.
        assert_eq!(a.next_due(), Some(t0 + Duration::from_secs(8)));
    }

    #[test]
    fn a_second_takeover_of_the_same_address_starts_over() {
        let t0 = Instant::now();
        let mut a = Announcements::default();
        a.serve(addr(10), t0);
        let mut out = Vec::new();
        a.due(t0 + Duration::from_secs(2), &mut out);
        a.serve(addr(10), t0 + Duration::from_secs(3));
        assert_eq!(a.next_due(), Some(t0 + Duration::from_secs(4)));
        assert_eq!(a.len(), 1);
    }
}

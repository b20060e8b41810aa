//! ASA's 106100 hit aggregation for ACEs with `log`, sans-IO (time comes in as
//! an argument). ASA logs the first packet of a flow (ACL, action, protocol,
//! source and destination address and port) at once as `hit-cnt 1 first hit`,
//! counts the flow's further hits, and at the end of the ACE's `log interval`
//! logs the count as `hit-cnt N 300-second interval` if it is not zero; a
//! flow without hits in an interval is forgotten, so its next packet is a first
//! hit again (Cisco ASA syslog guide, message 106100; command reference,
//! `access-list extended ... log`).
//!
//! The table is bounded: past `cap` flows, new flows are not logged but
//! counted ([`HitLog::overflow`]), as ASA stops creating deny flows at
//! `access-list alert-interval`/`max-deny-flows` and says so in 106101.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One 106100 to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<K> {
    pub key: K,
    /// Severity 0-7, from the ACE's `log LEVEL`.
    pub level: u8,
    pub hits: u64,
    /// `None` for a first hit; the ACE's interval in seconds for a count.
    pub interval: Option<u16>,
}

#[derive(Debug)]
struct Flow {
    level: u8,
    interval: u16,
    window_end: Instant,
    hits: u64,
}

#[derive(Debug)]
pub struct HitLog<K> {
    flows: HashMap<K, Flow>,
    cap: usize,
    overflow: u64,
    /// The earliest window end, so that [`HitLog::due`] scans only when some
    /// window has ended.
    next_due: Option<Instant>,
}

impl<K: Hash + Eq + Clone> HitLog<K> {
    pub fn new(cap: usize) -> Self {
        HitLog {
            flows: HashMap::new(),
            cap,
            overflow: 0,
            next_due: None,
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Hits of new flows not logged because the table was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// One packet of `key` matched an ACE with `log LEVEL interval SECS`;
    /// returns the first-hit report of a new flow.
    pub fn hit(&mut self, key: &K, level: u8, interval: u16, now: Instant) -> Option<Report<K>> {
        if let Some(f) = self.flows.get_mut(key) {
            f.hits += 1;
            return None;
        }
        if self.flows.len() >= self.cap {
            self.overflow += 1;
            return None;
        }
        let window_end = now + Duration::from_secs(u64::from(interval.max(1)));
        self.next_due = Some(self.next_due.map_or(window_end, |d| d.min(window_end)));
        self.flows.insert(
            key.clone(),
            Flow {
                level,
                interval,
                window_end,
                hits: 0,
            },
        );
        Some(Report {
            key: key.clone(),
            level,
            hits: 1,
            interval: None,
        })
    }

    /// Appends the counts of the windows that have ended by `now`; starts the
    /// next window of flows that had hits and forgets the others.
    pub fn due(&mut self, now: Instant, out: &mut Vec<Report<K>>) {
        if self.next_due.is_none_or(|d| now < d) {
            return;
        }
        let mut next: Option<Instant> = None;
        self.flows.retain(|key, f| {
            if now >= f.window_end {
                if f.hits == 0 {
                    return false;
                }
                out.push(Report {
                    key: key.clone(),
                    level: f.level,
                    hits: f.hits,
                    interval: Some(f.interval),
                });
                f.hits = 0;
                let step = Duration::from_secs(u64::from(f.interval.max(1)));
                // A window that ended long ago (no batch since) restarts now.
                f.window_end = if now >= f.window_end + step {
                    now + step
                } else {
                    f.window_end + step
                };
            }
            next = Some(next.map_or(f.window_end, |d| d.min(f.window_end)));
            true
        });
        self.next_due = next;
    }

    /// At the end (session gone): the counts not yet reported.
    pub fn drain(&mut self, out: &mut Vec<Report<K>>) {
        for (key, f) in self.flows.drain() {
            if f.hits > 0 {
                out.push(Report {
                    key,
                    level: f.level,
                    hits: f.hits,
                    interval: Some(f.interval),
                });
            }
        }
        self.next_due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn first_hit_then_interval_counts() {
        let t0 = Instant::now();
        let mut h = HitLog::new(16);
        let mut out = Vec::new();
        let first = h.hit(&"a", 4, 300, t0).unwrap();
        assert_eq!(
            first,
            Report {
                key: "a",
                level: 4,
                hits: 1,
                interval: None
            }
        );
        // Further hits within the interval are only counted.
        for i in 1..=5 {
            assert!(h.hit(&"a", 4, 300, t0 + s(i)).is_none());
        }
        h.due(t0 + s(299), &mut out);
        assert!(out.is_empty());
        h.due(t0 + s(300), &mut out);
        assert_eq!(
            out,
            vec![Report {
                key: "a",
                level: 4,
                hits: 5,
                interval: Some(300)
            }]
        );
        out.clear();
        // Next window: two hits, reported at its end (600 s), not before.
        assert!(h.hit(&"a", 4, 300, t0 + s(400)).is_none());
        assert!(h.hit(&"a", 4, 300, t0 + s(401)).is_none());
        h.due(t0 + s(599), &mut out);
        assert!(out.is_empty());
        h.due(t0 + s(600), &mut out);
        assert_eq!(out[0].hits, 2);
        out.clear();
        // A window without hits forgets the flow: nothing logged, and the
        // next packet is a first hit again.
        h.due(t0 + s(900), &mut out);
        assert!(out.is_empty());
        assert!(h.is_empty());
        assert_eq!(h.hit(&"a", 4, 300, t0 + s(901)).unwrap().hits, 1);
    }

    #[test]
    fn flows_are_separate_and_keep_their_own_interval() {
        let t0 = Instant::now();
        let mut h = HitLog::new(16);
        let mut out = Vec::new();
        assert!(h.hit(&"a", 6, 10, t0).is_some());
        assert!(h.hit(&"b", 2, 60, t0).is_some());
        h.hit(&"a", 6, 10, t0 + s(1));
        h.hit(&"b", 2, 60, t0 + s(1));
        h.hit(&"b", 2, 60, t0 + s(2));
        h.due(t0 + s(10), &mut out);
        assert_eq!(
            out,
            vec![Report {
                key: "a",
                level: 6,
                hits: 1,
                interval: Some(10)
            }]
        );
        out.clear();
        h.due(t0 + s(60), &mut out);
        assert_eq!(
            out,
            vec![Report {
                key: "b",
                level: 2,
                hits: 2,
                interval: Some(60)
            }]
        );
    }

    #[test]
    fn table_is_bounded_and_overflow_counted() {
        let t0 = Instant::now();
        let mut h = HitLog::new(2);
        assert!(h.hit(&1, 6, 300, t0).is_some());
        assert!(h.hit(&2, 6, 300, t0).is_some());
        assert!(h.hit(&3, 6, 300, t0).is_none());
        assert!(h.hit(&4, 6, 300, t0).is_none());
        // Known flows still count.
        assert!(h.hit(&1, 6, 300, t0).is_none());
        assert_eq!((h.len(), h.overflow()), (2, 2));
        let mut out = Vec::new();
        h.drain(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].key, out[0].hits), (1, 1));
        assert!(h.is_empty());
    }
}

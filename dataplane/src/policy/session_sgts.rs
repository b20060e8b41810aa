//! VPN session host bindings: each session's assigned address tagged with the
//! session's SGT (asa-aaa.md section 4).
//!
//! They are kept apart from the [`SgtMap`](super::SgtMap) of static and SXP
//! prefixes because sessions change far more often (login, CoA, logout) and
//! are few (hundreds to thousands) next to the SXP bindings (up to 100k and
//! more): a session change rebuilds only this small table, O(sessions), and
//! never the LPM map. [`SgtResolver`](super::SgtResolver) gives a session
//! binding priority over the map, which is what "session > SXP > static" means
//! for a host address: a session /32 (/128) is the longest prefix there is, and
//! on the very same prefix the session beats SXP and static.
//!
//! Layout: per address family, a hash map `address -> SGT` with the FxHash
//! hasher (`rustc-hash`: one multiply per word; std's default SipHash costs
//! several times that per lookup, and the keys are addresses the headend
//! assigned, not attacker-chosen), reserved to stay at most half full, plus the
//! smallest and largest address present. Why not a sorted `Vec` with binary
//! search: in the packet path most lookups *miss* (a client's packets go to
//! servers, not to other clients), and a binary search pays all of its
//! ~log2(n) dependent, unpredictable steps on a miss (12 for 4000 sessions),
//! while a hash lookup is one or two probes, and the `[lo, hi]` check rejects
//! addresses outside the pools without touching the table.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxBuildHasher;

/// Immutable `session address -> SGT` table; build a new one per change and
/// publish it with [`PolicyHandle::publish_session_sgts`](super::PolicyHandle::publish_session_sgts).
#[derive(Debug, Clone, Default)]
pub struct SessionSgts {
    v4: HostTable<u32>,
    v6: HostTable<u128>,
}

/// The empty table, for resolvers over a map alone.
pub(crate) static NO_SESSIONS: SessionSgts = SessionSgts::new();

impl SessionSgts {
    /// An empty table.
    pub const fn new() -> Self {
        SessionSgts {
            v4: HostTable::new(),
            v6: HostTable::new(),
        }
    }

    /// The table of `bindings` (address, SGT). If an address comes twice, the
    /// last one counts.
    pub fn from_bindings(bindings: impl IntoIterator<Item = (IpAddr, u16)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (addr, sgt) in bindings {
            match addr {
                IpAddr::V4(a) => v4.push((u32::from(a), sgt)),
                IpAddr::V6(a) => v6.push((u128::from(a), sgt)),
            }
        }
        SessionSgts {
            v4: HostTable::build(&v4),
            v6: HostTable::build(&v6),
        }
    }

    /// The SGT of the session that has `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<u16> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    #[inline]
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<u16> {
        self.v4.get(u32::from(addr))
    }

    #[inline]
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<u16> {
        self.v6.get(u128::from(addr))
    }

    #[inline]
    pub(crate) fn lookup_v4_bits(&self, a: u32) -> Option<u16> {
        self.v4.get(a)
    }

    #[inline]
    pub(crate) fn lookup_v6_bits(&self, a: u128) -> Option<u16> {
        self.v6.get(a)
    }

    /// Number of session addresses.
    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An address as a table key.
trait HostKey: Copy + Ord + Eq + std::hash::Hash {
    const MIN: Self;
    const MAX: Self;
}

impl HostKey for u32 {
    const MIN: Self = u32::MIN;
    const MAX: Self = u32::MAX;
}

impl HostKey for u128 {
    const MIN: Self = u128::MIN;
    const MAX: Self = u128::MAX;
}

/// One family's `address -> SGT` map (FxHash: a multiply per word), plus the
/// smallest and largest key present.
#[derive(Debug, Clone)]
struct HostTable<K> {
    map: HashMap<K, u16, FxBuildHasher>,
    /// `lo > hi` when empty, so every lookup of an empty table stops at the
    /// range check.
    lo: K,
    hi: K,
    len: usize,
}

impl<K: HostKey> Default for HostTable<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: HostKey> HostTable<K> {
    const fn new() -> Self {
        HostTable {
            map: HashMap::with_hasher(FxBuildHasher),
            lo: K::MAX,
            hi: K::MIN,
            len: 0,
        }
    }

    fn build(entries: &[(K, u16)]) -> Self {
        let mut t = Self::new();
        // At most half full: a miss, the common case, ends at once.
        t.map.reserve(entries.len() * 2);
        for &(key, sgt) in entries {
            t.map.insert(key, sgt);
            t.lo = t.lo.min(key);
            t.hi = t.hi.max(key);
        }
        t.len = t.map.len();
        t
    }

    #[inline]
    fn get(&self, key: K) -> Option<u16> {
        if key < self.lo || key > self.hi {
            return None;
        }
        self.map.get(&key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_table_finds_nothing() {
        for t in [SessionSgts::new(), SessionSgts::from_bindings([])] {
            assert!(t.is_empty());
            for a in ["0.0.0.0", "255.255.255.255", "10.0.0.1", "::", "ffff::1"] {
                assert_eq!(t.lookup(ip(a)), None);
            }
            let max = IpAddr::V6(Ipv6Addr::from(u128::MAX));
            assert_eq!(t.lookup(max), None);
        }
        assert!(NO_SESSIONS.is_empty());
    }

    #[test]
    fn hosts_only_exact_match_and_families_apart() {
        let t = SessionSgts::from_bindings([
            (ip("198.18.100.10"), 10),
            (ip("198.18.100.11"), 11),
            (ip("fd00:100::10"), 12),
            (ip("198.18.100.10"), 13), // the last one counts
        ]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(ip("198.18.100.10")), Some(13));
        assert_eq!(t.lookup(ip("198.18.100.11")), Some(11));
        assert_eq!(
            t.lookup(ip("198.18.100.12")),
            None,
            "inside [lo, hi], absent"
        );
        assert_eq!(t.lookup(ip("198.18.100.9")), None);
        assert_eq!(t.lookup(ip("fd00:100::10")), Some(12));
        assert_eq!(t.lookup(ip("fd00:100::11")), None);
        assert_eq!(t.lookup(ip("::ffff:198.18.100.10")), None);
    }

    #[test]
    fn extreme_addresses_and_many_entries() {
        let mut b = vec![
            (ip("0.0.0.0"), 1),
            (ip("255.255.255.255"), 2),
            (ip("::"), 3),
            (IpAddr::V6(Ipv6Addr::from(u128::MAX)), 4),
        ];
        // A pool of 5000 consecutive addresses plus a scattered v6 pool.
        for i in 0..5000u32 {
            b.push((
                IpAddr::V4(Ipv4Addr::from(0x0a64_0000 + i)),
                (i % 700) as u16,
            ));
            let v6 = 0xfd00_0000_0000_0000_0000_0000_0000_0000u128 | u128::from(i) << 40;
            b.push((IpAddr::V6(Ipv6Addr::from(v6)), (i % 300) as u16));
        }
        let t = SessionSgts::from_bindings(b.iter().copied());
        assert_eq!(t.len(), b.len());
        for &(a, sgt) in &b {
            assert_eq!(t.lookup(a), Some(sgt), "{a}");
        }
        assert_eq!(t.lookup(ip("10.100.19.136")), None, "one past the pool");
        assert_eq!(t.lookup(ip("fd00::1")), None);
    }
}

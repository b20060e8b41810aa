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
//! Layout: per address family, a persistent hash array mapped trie (`imbl`'s
//! HAMT) `address -> SGT` with the FxHash hasher (`rustc-hash`: one multiply per
//! word; the keys are addresses the headend assigned, not attacker-chosen), plus
//! bounds that contain every address present. Persistent because a login, CoA
//! or logout must cost the same with 10 or 10,000 sessions (issue 12): a change
//! is [`SessionSgts::set`] on the control plane's copy, O(log n) nodes copied,
//! and the copy published is an O(1) clone that shares every other node with
//! the previous version, which batches in flight keep reading. (A plain hash
//! map rebuilt per change made every session change O(sessions), under the
//! policy lock.) In the packet path most lookups *miss* (a client's packets go
//! to servers, not to other clients): the bounds check rejects addresses
//! outside the pools without touching the trie, and a miss inside them ends at
//! the first empty slot, one to three levels down for 10,000 sessions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxBuildHasher;

/// `session address -> SGT` table. Published versions are immutable; the
/// control plane keeps its own copy, changes it with [`SessionSgts::set`] and
/// publishes a clone (O(1), nodes shared) with
/// [`PolicyHandle::publish_session_sgts`](super::PolicyHandle::publish_session_sgts).
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

    /// Binds `addr` to `sgt` (None removes it); returns whether anything
    /// changed. O(log n): only the trie path to `addr` is copied, so clones
    /// published earlier are untouched.
    pub fn set(&mut self, addr: IpAddr, sgt: Option<u16>) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.set(u32::from(a), sgt),
            IpAddr::V6(a) => self.v6.set(u128::from(a), sgt),
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
trait HostKey: Copy + Ord + Eq + std::hash::Hash + std::fmt::Debug {
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

type Trie<K> = imbl::GenericHashMap<K, u16, FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>;

/// One family's `address -> SGT` trie, plus bounds that contain every key.
#[derive(Debug, Clone)]
struct HostTable<K: HostKey> {
    /// None while empty (so that [`SessionSgts::new`] is `const`).
    map: Option<Trie<K>>,
    /// Every key is in `[lo, hi]`; `lo > hi` when empty, so every lookup of an
    /// empty table stops at the range check. A removal does not narrow them
    /// (that would need an ordered index); they reset when the table empties.
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
            map: None,
            lo: K::MAX,
            hi: K::MIN,
            len: 0,
        }
    }

    fn build(entries: &[(K, u16)]) -> Self {
        let mut t = Self::new();
        for &(key, sgt) in entries {
            t.set(key, Some(sgt));
        }
        t
    }

    fn set(&mut self, key: K, sgt: Option<u16>) -> bool {
        let changed = match sgt {
            Some(v) => {
                let map = self
                    .map
                    .get_or_insert_with(|| Trie::with_hasher(FxBuildHasher));
                self.lo = self.lo.min(key);
                self.hi = self.hi.max(key);
                map.insert(key, v) != Some(v)
            }
            None => self.map.as_mut().is_some_and(|m| m.remove(&key).is_some()),
        };
        self.len = self.map.as_ref().map_or(0, Trie::len);
        if self.len == 0 {
            *self = Self::new();
        }
        changed
    }

    #[inline]
    fn get(&self, key: K) -> Option<u16> {
        if key < self.lo || key > self.hi {
            return None;
        }
        self.map.as_ref()?.get(&key).copied()
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

    #[test]
    fn set_adds_changes_and_removes_one_binding_and_leaves_published_copies_alone() {
        let mut t = SessionSgts::new();
        assert!(t.set(ip("198.18.100.10"), Some(10)));
        assert!(t.set(ip("fd00:100::10"), Some(12)));
        assert!(!t.set(ip("198.18.100.10"), Some(10)), "same SGT: no change");
        let published = t.clone();
        assert!(t.set(ip("198.18.100.10"), Some(11)), "CoA: new SGT");
        assert!(t.set(ip("198.18.100.20"), Some(20)));
        assert!(t.set(ip("fd00:100::10"), None));
        assert!(!t.set(ip("fd00:100::10"), None), "already gone");
        assert!(!t.set(ip("198.18.100.99"), None), "never there");
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(ip("198.18.100.10")), Some(11));
        assert_eq!(t.lookup(ip("198.18.100.20")), Some(20));
        assert_eq!(t.lookup(ip("fd00:100::10")), None);
        // The copy published before the changes still answers as it did.
        assert_eq!(published.len(), 2);
        assert_eq!(published.lookup(ip("198.18.100.10")), Some(10));
        assert_eq!(published.lookup(ip("198.18.100.20")), None);
        assert_eq!(published.lookup(ip("fd00:100::10")), Some(12));
        // Emptied: back to the empty table (bounds reset, nothing found).
        assert!(t.set(ip("198.18.100.10"), None));
        assert!(t.set(ip("198.18.100.20"), None));
        assert!(t.is_empty());
        assert_eq!(t.v4.lo, u32::MAX);
        assert_eq!(t.lookup(ip("198.18.100.10")), None);
    }

    #[test]
    fn incremental_changes_match_a_table_built_from_scratch() {
        // 3,000 logins, every third logs out, every fifth changes SGT (CoA):
        // the table kept by `set` answers exactly like one built at once.
        let mut t = SessionSgts::new();
        let mut truth = std::collections::BTreeMap::new();
        let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0xc612_6400 + i));
        for i in 0..3000u32 {
            t.set(addr(i), Some((i % 50) as u16));
            truth.insert(addr(i), (i % 50) as u16);
        }
        for i in (0..3000u32).step_by(3) {
            assert!(t.set(addr(i), None));
            truth.remove(&addr(i));
        }
        for i in (0..3000u32).step_by(5) {
            t.set(addr(i), Some(999));
            truth.insert(addr(i), 999);
        }
        let built = SessionSgts::from_bindings(truth.iter().map(|(a, s)| (*a, *s)));
        assert_eq!(t.len(), truth.len());
        assert_eq!(built.len(), truth.len());
        for i in 0..3100u32 {
            let want = truth.get(&addr(i)).copied();
            assert_eq!(t.lookup(addr(i)), want, "{}", addr(i));
            assert_eq!(built.lookup(addr(i)), want);
        }
    }
}

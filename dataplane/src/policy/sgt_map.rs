//! IP-to-SGT bindings with longest-prefix match (asa-aaa.md section 4).
//!
//! The map holds the prefix bindings of two sources, static and SXP; when the
//! same prefix comes from both, SXP wins. A longer prefix always wins over a
//! shorter one whatever their sources (priority only breaks ties on the *same*
//! prefix). VPN session addresses, the third and strongest source, live in
//! their own small table ([`SessionSgts`](super::SessionSgts)) that
//! [`SgtResolver`](super::SgtResolver) consults first, so that sessions coming
//! and going never rebuild this map.
//!
//! [`SgtMapBuilder`] is the mutable master copy (it keeps every source's binding
//! so that removing an SXP binding uncovers the static one below it);
//! [`SgtMapBuilder::build`] produces an immutable [`SgtMap`] that the dataplane
//! reads without locks. A change builds and publishes a new map.
//!
//! Lookup layout: one open-addressing hash table per address family holding
//! `(masked prefix, length) -> sgt`, plus the list of prefix lengths present,
//! longest first. A lookup probes once per length present (typically a handful:
//! /32 hosts, a few subnet lengths) and stops at the first hit, so it
//! costs O(lengths present) table probes and never allocates.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a binding came from. Ordered by priority: `Sxp` beats `Static` for
/// the same prefix. (Session addresses are not in the map: see
/// [`SessionSgts`](super::SessionSgts).)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// `cts role-based sgt-map` in the configuration.
    Static = 0,
    /// Learned from an SXP speaker (ISE).
    Sxp = 1,
}

const SOURCES: usize = 2;

/// A prefix length longer than the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("prefix length /{len} is too long for {addr}")]
pub struct InvalidPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// Mutable set of bindings from all sources; build an [`SgtMap`] from it.
#[derive(Debug, Clone, Default)]
pub struct SgtMapBuilder {
    /// (masked prefix, len) -> SGT per source (index = `Source as usize`).
    v4: HashMap<(u32, u8), [Option<u16>; SOURCES]>,
    v6: HashMap<(u128, u8), [Option<u16>; SOURCES]>,
}

impl SgtMapBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the binding of `addr/len` from `source`. Host bits beyond
    /// `len` are ignored (the prefix is masked).
    pub fn insert(
        &mut self,
        addr: IpAddr,
        len: u8,
        sgt: u16,
        source: Source,
    ) -> Result<&mut Self, InvalidPrefix> {
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                let k = (u32::from(a) & mask_v4(len), len);
                self.v4.entry(k).or_default()[source as usize] = Some(sgt);
            }
            IpAddr::V6(a) if len <= 128 => {
                let k = (u128::from(a) & mask_v6(len), len);
                self.v6.entry(k).or_default()[source as usize] = Some(sgt);
            }
            _ => return Err(InvalidPrefix { addr, len }),
        }
        Ok(self)
    }

    /// Removes the binding of `addr/len` from `source` (others for the same
    /// prefix stay). Returns whether there was one.
    pub fn remove(&mut self, addr: IpAddr, len: u8, source: Source) -> bool {
        fn take<K: std::hash::Hash + Eq>(
            m: &mut HashMap<K, [Option<u16>; SOURCES]>,
            k: K,
            source: Source,
        ) -> bool {
            let Some(slots) = m.get_mut(&k) else {
                return false;
            };
            let had = slots[source as usize].take().is_some();
            if slots.iter().all(Option::is_none) {
                m.remove(&k);
            }
            had
        }
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                take(&mut self.v4, (u32::from(a) & mask_v4(len), len), source)
            }
            IpAddr::V6(a) if len <= 128 => {
                take(&mut self.v6, (u128::from(a) & mask_v6(len), len), source)
            }
            _ => false,
        }
    }

    /// Drops every binding from `source` (SXP PURGE_ALL, connection loss).
    pub fn clear_source(&mut self, source: Source) {
        for slots in self.v4.values_mut() {
            slots[source as usize] = None;
        }
        for slots in self.v6.values_mut() {
            slots[source as usize] = None;
        }
        self.v4.retain(|_, s| s.iter().any(Option::is_some));
        self.v6.retain(|_, s| s.iter().any(Option::is_some));
    }

    /// Number of distinct prefixes (whatever their sources).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The immutable lookup structure for the current bindings.
    pub fn build(&self) -> SgtMap {
        let winner = |slots: &[Option<u16>; SOURCES]| slots.iter().rev().find_map(|s| *s);
        let mut v4 = Table::with_entries(self.v4.len());
        let mut lens4 = [false; 33];
        for (&(p, len), slots) in &self.v4 {
            if let Some(sgt) = winner(slots) {
                v4.insert(u128::from(p), len, sgt);
                lens4[usize::from(len)] = true;
            }
        }
        let mut v6 = Table::with_entries(self.v6.len());
        let mut lens6 = [false; 129];
        for (&(p, len), slots) in &self.v6 {
            if let Some(sgt) = winner(slots) {
                v6.insert(p, len, sgt);
                lens6[usize::from(len)] = true;
            }
        }
        let longest_first = |present: &[bool]| -> Box<[u8]> {
            (0..present.len())
                .rev()
                .filter(|&l| present[l])
                .map(|l| l as u8)
                .collect()
        };
        SgtMap {
            v4_lens: longest_first(&lens4),
            v6_lens: longest_first(&lens6),
            v4,
            v6,
        }
    }
}

/// Immutable IP-to-SGT map; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct SgtMap {
    v4: Table,
    v6: Table,
    /// Prefix lengths present, longest first.
    v4_lens: Box<[u8]>,
    v6_lens: Box<[u8]>,
}

impl Default for SgtMap {
    fn default() -> Self {
        SgtMapBuilder::new().build()
    }
}

impl SgtMap {
    /// The SGT of the longest prefix that contains `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<u16> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    #[inline]
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<u16> {
        self.lookup_v4_bits(u32::from(addr))
    }

    #[inline]
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<u16> {
        self.lookup_v6_bits(u128::from(addr))
    }

    #[inline]
    pub(crate) fn lookup_v4_bits(&self, a: u32) -> Option<u16> {
        self.v4_lens
            .iter()
            .find_map(|&len| self.v4.get(u128::from(a & mask_v4(len)), len))
    }

    #[inline]
    pub(crate) fn lookup_v6_bits(&self, a: u128) -> Option<u16> {
        self.v6_lens
            .iter()
            .find_map(|&len| self.v6.get(a & mask_v6(len), len))
    }

    /// Number of prefixes in the map.
    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct prefix lengths present (IPv4, IPv6): the worst-case probe count.
    pub fn prefix_lengths(&self) -> (usize, usize) {
        (self.v4_lens.len(), self.v6_lens.len())
    }
}

#[inline]
pub(crate) fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

#[inline]
pub(crate) fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// One slot of the open-addressing table. `len_plus1 == 0` marks an empty slot.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u128,
    len_plus1: u8,
    sgt: u16,
}

/// Linear-probing hash table of `(prefix, len) -> sgt`, at most half full so a
/// miss ends after a short run. Keys are the bindings (from configuration or
/// ISE), not attacker-chosen; lookups only read.
#[derive(Debug, Clone)]
struct Table {
    slots: Box<[Slot]>,
    shift: u32,
    len: usize,
}

impl Table {
    fn with_entries(n: usize) -> Self {
        let cap = (n.max(4) * 2).next_power_of_two();
        Self {
            slots: vec![Slot::default(); cap].into_boxed_slice(),
            shift: 64 - cap.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn hash(&self, key: u128, len: u8) -> usize {
        let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29) ^ u64::from(len) << 56;
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn insert(&mut self, key: u128, len: u8, sgt: u16) {
        let m = self.slots.len() - 1;
        let mut i = self.hash(key, len);
        loop {
            let s = &mut self.slots[i];
            if s.len_plus1 == 0 {
                *s = Slot {
                    key,
                    len_plus1: len + 1,
                    sgt,
                };
                self.len += 1;
                return;
            }
            if s.key == key && s.len_plus1 == len + 1 {
                s.sgt = sgt;
                return;
            }
            i = (i + 1) & m;
        }
    }

    #[inline]
    fn get(&self, key: u128, len: u8) -> Option<u16> {
        let m = self.slots.len() - 1;
        let mut i = self.hash(key, len);
        loop {
            let s = &self.slots[i];
            if s.len_plus1 == 0 {
                return None;
            }
            if s.key == key && s.len_plus1 == len + 1 {
                return Some(s.sgt);
            }
            i = (i + 1) & m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_v4() {
        let mut b = SgtMapBuilder::new();
        b.insert(ip("10.0.0.0"), 8, 8, Source::Static)
            .unwrap()
            .insert(ip("10.1.0.0"), 16, 16, Source::Static)
            .unwrap()
            .insert(ip("10.1.2.0"), 24, 24, Source::Static)
            .unwrap()
            .insert(ip("10.1.2.3"), 32, 32, Source::Static)
            .unwrap();
        let m = b.build();
        assert_eq!(m.lookup(ip("10.1.2.3")), Some(32));
        assert_eq!(m.lookup(ip("10.1.2.4")), Some(24));
        assert_eq!(m.lookup(ip("10.1.3.4")), Some(16));
        assert_eq!(m.lookup(ip("10.2.3.4")), Some(8));
        assert_eq!(m.lookup(ip("11.0.0.1")), None);
        assert_eq!(
            m.lookup(ip("::ffff:10.1.2.3")),
            None,
            "v4 bindings are v4 only"
        );
        assert_eq!(m.len(), 4);
        assert_eq!(m.prefix_lengths(), (4, 0));
    }

    #[test]
    fn longest_prefix_wins_v6() {
        let mut b = SgtMapBuilder::new();
        b.insert(ip("fd00::"), 16, 1, Source::Static).unwrap();
        b.insert(ip("fd00:1::"), 32, 2, Source::Sxp).unwrap();
        b.insert(ip("fd00:1::10"), 128, 3, Source::Static).unwrap();
        let m = b.build();
        assert_eq!(m.lookup(ip("fd00:1::10")), Some(3));
        assert_eq!(m.lookup(ip("fd00:1::11")), Some(2));
        assert_eq!(m.lookup(ip("fd00:2::11")), Some(1));
        assert_eq!(m.lookup(ip("fd01::1")), None);
        assert_eq!(m.lookup(ip("10.0.0.1")), None);
    }

    #[test]
    fn default_route_binding() {
        let mut b = SgtMapBuilder::new();
        b.insert(ip("0.0.0.0"), 0, 2, Source::Static).unwrap();
        b.insert(ip("::"), 0, 3, Source::Static).unwrap();
        let m = b.build();
        assert_eq!(m.lookup(ip("203.0.113.9")), Some(2));
        assert_eq!(m.lookup(ip("2001:db8::1")), Some(3));
    }

    #[test]
    fn same_prefix_priority_sxp_static() {
        let mut b = SgtMapBuilder::new();
        let a = ip("198.18.1.0");
        b.insert(a, 28, 20, Source::Static).unwrap();
        assert_eq!(b.build().lookup(ip("198.18.1.5")), Some(20));
        b.insert(a, 28, 21, Source::Sxp).unwrap();
        assert_eq!(b.build().lookup(ip("198.18.1.5")), Some(21));
        // A static binding added later does not override SXP.
        b.insert(a, 28, 22, Source::Static).unwrap();
        assert_eq!(b.build().lookup(ip("198.18.1.5")), Some(21));
        // Removing the SXP binding uncovers static.
        assert!(b.remove(a, 28, Source::Sxp));
        assert!(!b.remove(a, 28, Source::Sxp));
        assert_eq!(b.build().lookup(ip("198.18.1.5")), Some(22));
        b.insert(a, 28, 21, Source::Sxp).unwrap();
        b.clear_source(Source::Sxp);
        assert_eq!(b.build().lookup(ip("198.18.1.5")), Some(22));
        assert!(b.remove(a, 28, Source::Static));
        assert!(!b.remove(a, 28, Source::Static));
        assert!(b.is_empty());
        assert_eq!(b.build().lookup(ip("198.18.1.5")), None);
    }

    #[test]
    fn longer_static_beats_shorter_sxp() {
        // Priority breaks ties on the same prefix only; longest prefix first.
        let mut b = SgtMapBuilder::new();
        b.insert(ip("10.0.0.0"), 8, 5, Source::Sxp).unwrap();
        b.insert(ip("10.0.0.0"), 24, 6, Source::Static).unwrap();
        let m = b.build();
        assert_eq!(m.lookup(ip("10.0.0.1")), Some(6));
        assert_eq!(m.lookup(ip("10.0.1.1")), Some(5));
    }

    #[test]
    fn host_bits_are_masked_and_bad_lengths_rejected() {
        let mut b = SgtMapBuilder::new();
        b.insert(ip("10.1.2.3"), 24, 7, Source::Static).unwrap();
        assert_eq!(b.build().lookup(ip("10.1.2.200")), Some(7));
        assert!(b.insert(ip("10.1.2.3"), 33, 7, Source::Static).is_err());
        assert!(b.insert(ip("::1"), 129, 7, Source::Static).is_err());
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn many_bindings_build_fast_and_match_reference() {
        let mut b = SgtMapBuilder::new();
        let mut x: u32 = 0x1234_5678;
        let mut hosts = Vec::new();
        for i in 0..100_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let a = Ipv4Addr::from(0x0a00_0000 | (x & 0x00ff_ffff));
            b.insert(IpAddr::V4(a), 32, (i % 1000) as u16 + 2, Source::Sxp)
                .unwrap();
            hosts.push(a);
        }
        b.insert(ip("10.0.0.0"), 8, 1, Source::Static).unwrap();
        let t = std::time::Instant::now();
        let m = b.build();
        // Generous bound for debug builds on a loaded CI machine.
        assert!(t.elapsed().as_secs() < 5, "build took {:?}", t.elapsed());
        for a in hosts.iter().take(1000) {
            let want = b.v4[&(u32::from(*a), 32)][Source::Sxp as usize];
            assert_eq!(m.lookup_v4(*a), want);
        }
        assert_eq!(m.lookup(ip("11.0.0.1")), None);
    }
}

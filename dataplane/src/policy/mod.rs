//! Policy tables the packet path enforces: IP-to-SGT bindings and compiled ACLs
//! (asa-aaa.md section 4).
//!
//! The control plane compiles a [`PolicyTables`] (the headend's
//! `policy_compile::compile` does it from the configuration) and publishes it
//! through a [`PolicyHandle`]. The packet path calls [`PolicyHandle::load`] once
//! per batch and classifies the whole batch against that snapshot: no lock, no
//! allocation, no syscall per packet. A publish swaps the pointer atomically;
//! batches already running finish on the version they loaded.
//!
//! IP-to-SGT bindings are two tables: the longest-prefix [`SgtMap`] of static
//! and SXP prefixes, and the small [`SessionSgts`] of VPN session addresses,
//! each published on its own ([`PolicyHandle::publish_sgt_map`],
//! [`PolicyHandle::publish_session_sgts`]) so that a session coming or going
//! never rebuilds the map. [`SgtResolver`] reads both with the priority
//! session > SXP > static.

pub mod acl;
pub mod meta;
pub mod session_sgts;
pub mod sgt_map;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use acl::{
    AclError, Action, CompiledAcl, Direction, Indexing, NetMatch, PortMatch, Rule, Verdict,
};
pub use meta::PacketMeta;
pub use session_sgts::SessionSgts;
pub use sgt_map::{InvalidPrefix, SgtMap, SgtMapBuilder, Source};

/// One consistent version of everything the packet path needs for policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyTables {
    /// Compiled ACLs by their (case-sensitive) name.
    pub acls: HashMap<String, Arc<CompiledAcl>>,
    /// Static and SXP prefixes (longest prefix match).
    pub sgt_map: Arc<SgtMap>,
    /// VPN session addresses; they win over `sgt_map` (see [`SgtResolver`]).
    pub session_sgts: Arc<SessionSgts>,
    /// Bumped by every publish (0 for a table never published).
    pub generation: u64,
}

impl PolicyTables {
    /// Tables without session bindings (sessions are published as they come).
    pub fn new(acls: HashMap<String, Arc<CompiledAcl>>, sgt_map: SgtMap) -> Self {
        PolicyTables {
            acls,
            sgt_map: Arc::new(sgt_map),
            session_sgts: Arc::default(),
            generation: 0,
        }
    }

    pub fn acl(&self, name: &str) -> Option<&Arc<CompiledAcl>> {
        self.acls.get(name)
    }

    /// The SGT lookup of this version (sessions, then the map).
    #[inline]
    pub fn sgts(&self) -> SgtResolver<'_> {
        SgtResolver::new(&self.sgt_map, &self.session_sgts)
    }
}

/// The SGT of an address as the policy sees it: a session's own address has
/// the session's SGT, whatever the map says; any other address gets the
/// longest-prefix binding of the map (where SXP beats static on the same
/// prefix). So the priority is session > SXP > static, as on ASA. A borrowed
/// view of one version's tables: two pointers, `Copy`, no allocation.
#[derive(Debug, Clone, Copy)]
pub struct SgtResolver<'a> {
    map: &'a SgtMap,
    sessions: &'a SessionSgts,
}

impl<'a> SgtResolver<'a> {
    pub fn new(map: &'a SgtMap, sessions: &'a SessionSgts) -> Self {
        SgtResolver { map, sessions }
    }

    /// The SGT bound to `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<u16> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4_bits(u32::from(a)),
            IpAddr::V6(a) => self.lookup_v6_bits(u128::from(a)),
        }
    }

    #[inline]
    pub(crate) fn lookup_v4_bits(&self, a: u32) -> Option<u16> {
        match self.sessions.lookup_v4_bits(a) {
            Some(t) => Some(t),
            None => self.map.lookup_v4_bits(a),
        }
    }

    #[inline]
    pub(crate) fn lookup_v6_bits(&self, a: u128) -> Option<u16> {
        match self.sessions.lookup_v6_bits(a) {
            Some(t) => Some(t),
            None => self.map.lookup_v6_bits(a),
        }
    }
}

/// A map without session bindings (tests, benches, tools).
impl<'a> From<&'a SgtMap> for SgtResolver<'a> {
    fn from(map: &'a SgtMap) -> Self {
        SgtResolver::new(map, &session_sgts::NO_SESSIONS)
    }
}

/// The published policy: read once per batch, replaced atomically.
#[derive(Debug, Default)]
pub struct PolicyHandle {
    current: ArcSwap<PolicyTables>,
}

impl PolicyHandle {
    pub fn new(tables: PolicyTables) -> Self {
        PolicyHandle {
            current: ArcSwap::from_pointee(tables),
        }
    }

    /// The current version, for one batch. Cheap (no refcount traffic in the
    /// common case); do not hold it across awaits or for long.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<PolicyTables>> {
        self.current.load()
    }

    /// The current version as an owned `Arc` (for the control plane).
    pub fn load_full(&self) -> Arc<PolicyTables> {
        self.current.load_full()
    }

    /// Replaces the tables with `new` (its ACLs, map and session bindings)
    /// and returns what was published.
    ///
    /// Hit counters carry over by ACL name: an ACL whose rules are unchanged
    /// keeps the very same [`CompiledAcl`] (so not even hits counted by batches
    /// still running on the old version are lost); a changed ACL starts each
    /// unchanged rule from its old count ([`CompiledAcl::inherit_counters`]),
    /// which is how ASA keeps the hitcnt of ACEs an edit did not touch.
    /// `generation` becomes the old one plus one.
    pub fn publish(&self, new: PolicyTables) -> Arc<PolicyTables> {
        // Inheriting stores (not adds), so a retried rcu closure is harmless.
        let mut published = None;
        self.current.rcu(|old| {
            let mut acls = new.acls.clone();
            for (name, acl) in acls.iter_mut() {
                if let Some(prev) = old.acls.get(name) {
                    if prev.rules() == acl.rules() {
                        *acl = Arc::clone(prev);
                    } else {
                        acl.inherit_counters(prev);
                    }
                }
            }
            let t = Arc::new(PolicyTables {
                acls,
                sgt_map: Arc::clone(&new.sgt_map),
                session_sgts: Arc::clone(&new.session_sgts),
                generation: old.generation + 1,
            });
            published = Some(Arc::clone(&t));
            t
        });
        published.unwrap_or_else(|| self.load_full())
    }

    /// Replaces only the IP-to-SGT map (SXP update); the ACLs with their
    /// counters and the session bindings are shared with the previous version.
    pub fn publish_sgt_map(&self, map: SgtMap) -> Arc<PolicyTables> {
        let map = Arc::new(map);
        self.publish_with(|old| PolicyTables {
            acls: old.acls.clone(),
            sgt_map: Arc::clone(&map),
            session_sgts: Arc::clone(&old.session_sgts),
            generation: old.generation + 1,
        })
    }

    /// Replaces only the session bindings (session up or down, CoA changing
    /// its SGT); the ACLs with their counters and the map are shared with the
    /// previous version, so this costs O(sessions) whatever the map's size.
    pub fn publish_session_sgts(&self, sessions: SessionSgts) -> Arc<PolicyTables> {
        let sessions = Arc::new(sessions);
        self.publish_with(|old| PolicyTables {
            acls: old.acls.clone(),
            sgt_map: Arc::clone(&old.sgt_map),
            session_sgts: Arc::clone(&sessions),
            generation: old.generation + 1,
        })
    }

    /// Swaps in `next(old)` atomically (retried if another publish won the
    /// race, so `next` must only read `old`) and returns what was published.
    fn publish_with(&self, next: impl Fn(&PolicyTables) -> PolicyTables) -> Arc<PolicyTables> {
        let mut published = None;
        self.current.rcu(|old| {
            let t = Arc::new(next(old));
            published = Some(Arc::clone(&t));
            t
        });
        published.unwrap_or_else(|| self.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tables(rules: Vec<Rule>, map: SgtMap) -> PolicyTables {
        let mut acls = HashMap::new();
        acls.insert(
            "VPN-FILTER".to_string(),
            Arc::new(CompiledAcl::new(rules).unwrap()),
        );
        PolicyTables::new(acls, map)
    }

    fn seed_rules() -> Vec<Rule> {
        vec![
            Rule::permit().protocol(1).src_sgt(10).dst_sgt(20),
            Rule::permit()
                .protocol(6)
                .src_sgt(10)
                .dst_sgt(20)
                .dst_port(PortMatch::Eq(443)),
            Rule::deny().log(),
        ]
    }

    fn map() -> SgtMap {
        let mut b = SgtMapBuilder::new();
        b.insert(ip("198.18.1.0"), 28, 20, Source::Static).unwrap();
        b.build()
    }

    fn run(h: &PolicyHandle, pkts: &[PacketMeta]) -> Vec<Verdict> {
        let t = h.load();
        let acl = t.acl("VPN-FILTER").unwrap();
        let mut out = vec![Verdict::default(); pkts.len()];
        acl.classify_batch(pkts, Direction::FromClient, Some(10), t.sgts(), &mut out);
        out
    }

    #[test]
    fn republish_keeps_counters_of_unchanged_acl() {
        let h = PolicyHandle::new(tables(seed_rules(), map()));
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        run(&h, &[https; 5]);
        let before = h.load_full();
        assert_eq!(before.acl("VPN-FILTER").unwrap().hits(1), 5);

        // Same text again (a reload that changed something else).
        let after = h.publish(tables(seed_rules(), map()));
        assert_eq!(after.generation, before.generation + 1);
        assert!(Arc::ptr_eq(
            after.acl("VPN-FILTER").unwrap(),
            before.acl("VPN-FILTER").unwrap()
        ));
        // A batch still holding the old version counts into the same counters.
        let mut out = [Verdict::default(); 1];
        before.acl("VPN-FILTER").unwrap().classify_batch(
            &[https],
            Direction::FromClient,
            Some(10),
            before.sgts(),
            &mut out,
        );
        run(&h, &[https; 2]);
        assert_eq!(h.load().acl("VPN-FILTER").unwrap().hits(1), 8);
    }

    #[test]
    fn republish_of_changed_acl_keeps_unchanged_rules_counts() {
        let h = PolicyHandle::new(tables(seed_rules(), map()));
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        let ssh = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 22);
        run(&h, &[https, https, https, ssh]);
        // Insert a line 1: the old rules shift down but keep their counts.
        let mut rules = seed_rules();
        rules.insert(0, Rule::deny().protocol(17));
        let t = h.publish(tables(rules, map()));
        let acl = t.acl("VPN-FILTER").unwrap();
        assert_eq!(acl.hit_counts(), vec![0, 0, 3, 1, 0]);
        assert_eq!(run(&h, &[ssh])[0].rule, 3);
        assert_eq!(acl.hits(3), 2);
    }

    #[test]
    fn in_flight_batch_finishes_on_old_version() {
        let h = PolicyHandle::new(tables(seed_rules(), map()));
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        let old = h.load();
        // Policy changes mid-batch: now deny everything.
        h.publish(tables(vec![Rule::deny()], map()));
        let mut out = [Verdict::default(); 1];
        old.acl("VPN-FILTER").unwrap().classify_batch(
            &[https],
            Direction::FromClient,
            Some(10),
            old.sgts(),
            &mut out,
        );
        assert!(
            out[0].is_permit(),
            "the batch that loaded v1 finishes on v1"
        );
        assert!(!run(&h, &[https])[0].is_permit(), "the next batch sees v2");
    }

    #[test]
    fn sgt_map_update_changes_verdict_and_keeps_acl() {
        let h = PolicyHandle::new(tables(seed_rules(), SgtMap::default()));
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        assert_eq!(
            run(&h, &[https])[0].rule,
            2,
            "no binding: falls to the deny"
        );
        let acl_before = Arc::clone(h.load().acl("VPN-FILTER").unwrap());
        let t = h.publish_sgt_map(map());
        assert_eq!(t.generation, 1);
        assert!(Arc::ptr_eq(t.acl("VPN-FILTER").unwrap(), &acl_before));
        assert_eq!(run(&h, &[https])[0].rule, 1);
        assert_eq!(acl_before.hit_counts(), vec![0, 1, 1, 0]);
    }

    /// Static 10.20.0.0/16 tag 5, SXP 10.20.30.0/24 tag 20 and host
    /// 10.20.30.7/32 tag 21; the same shape for IPv6.
    fn layered_map() -> SgtMap {
        let mut b = SgtMapBuilder::new();
        b.insert(ip("10.20.0.0"), 16, 5, Source::Static).unwrap();
        b.insert(ip("10.20.30.0"), 24, 20, Source::Sxp).unwrap();
        b.insert(ip("10.20.30.7"), 32, 21, Source::Sxp).unwrap();
        b.insert(ip("10.20.30.7"), 32, 22, Source::Static).unwrap();
        b.insert(ip("fd00:20::"), 32, 5, Source::Static).unwrap();
        b.insert(ip("fd00:20:30::"), 48, 20, Source::Sxp).unwrap();
        b.insert(ip("fd00:20:30::7"), 128, 21, Source::Sxp).unwrap();
        b.build()
    }

    #[test]
    fn session_beats_sxp_beats_static() {
        let map = layered_map();
        let sessions = SessionSgts::from_bindings([
            (ip("10.20.30.5"), 30),    // inside the SXP /24
            (ip("10.20.30.7"), 31),    // same host as an SXP and a static /32
            (ip("10.20.99.1"), 32),    // inside the static /16 only
            (ip("198.18.100.9"), 33),  // bound by nothing else
            (ip("fd00:20:30::5"), 34), // inside the SXP /48
            (ip("fd00:20:30::7"), 35), // same host as an SXP /128
        ]);
        let sgts = SgtResolver::new(&map, &sessions);
        for (addr, want, why) in [
            ("10.20.30.5", Some(30), "session /32 inside an SXP /24"),
            ("10.20.30.7", Some(31), "session over SXP and static /32"),
            ("10.20.99.1", Some(32), "session inside a static /16"),
            ("198.18.100.9", Some(33), "session alone"),
            ("10.20.30.6", Some(20), "no session: SXP /24"),
            ("10.20.31.6", Some(5), "no session: static /16"),
            ("10.21.0.1", None, "nothing"),
            ("fd00:20:30::5", Some(34), "v6 session inside an SXP /48"),
            ("fd00:20:30::7", Some(35), "v6 session over an SXP /128"),
            ("fd00:20:30::8", Some(20), "v6 no session: SXP /48"),
            ("fd00:20:31::8", Some(5), "v6 no session: static /32"),
            ("fd00:21::1", None, "v6 nothing"),
        ] {
            assert_eq!(sgts.lookup(ip(addr)), want, "{addr}: {why}");
        }
        // Without sessions the map alone answers, SXP over static on one prefix.
        let map_only = SgtResolver::from(&map);
        assert_eq!(map_only.lookup(ip("10.20.30.7")), Some(21));
        assert_eq!(map_only.lookup(ip("10.20.30.5")), Some(20));

        // The classifier sees the same: 10.20.30.5 is tag 30 now, so the
        // tag-10 -> tag-20 permit no longer applies; its neighbour still is 20.
        let h = PolicyHandle::new(tables(seed_rules(), layered_map()));
        let to = |a: &str| PacketMeta::with_ports(ip("198.18.100.10"), ip(a), 6, 40000, 443);
        let to6 = |a: &str| PacketMeta::with_ports(ip("fd00:100::10"), ip(a), 6, 40000, 443);
        let pkts = [to("10.20.30.5"), to("10.20.30.6"), to6("fd00:20:30::5")];
        let rules = |h: &PolicyHandle| run(h, &pkts).iter().map(|v| v.rule).collect::<Vec<_>>();
        assert_eq!(rules(&h), [1, 1, 1]);
        h.publish_session_sgts(SessionSgts::from_bindings([
            (ip("10.20.30.5"), 30),
            (ip("fd00:20:30::5"), 34),
        ]));
        assert_eq!(rules(&h), [2, 1, 2]);
        // And a session tagged 20 inside an unbound range is permitted.
        h.publish_session_sgts(SessionSgts::from_bindings([(ip("198.18.100.9"), 20)]));
        assert_eq!(run(&h, &[to("198.18.100.9")])[0].rule, 1);
    }

    #[test]
    fn publish_session_sgts_keeps_map_and_acl_counters() {
        let h = PolicyHandle::new(tables(seed_rules(), map()));
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        run(&h, &[https; 3]);
        let before = h.load_full();
        let after = h.publish_session_sgts(SessionSgts::from_bindings([(ip("198.18.100.10"), 10)]));
        assert_eq!(after.generation, before.generation + 1);
        assert!(
            Arc::ptr_eq(&after.sgt_map, &before.sgt_map),
            "map not rebuilt"
        );
        assert!(Arc::ptr_eq(
            after.acl("VPN-FILTER").unwrap(),
            before.acl("VPN-FILTER").unwrap()
        ));
        assert!(!Arc::ptr_eq(&after.session_sgts, &before.session_sgts));
        assert_eq!(after.session_sgts.len(), 1);
        assert_eq!(before.session_sgts.len(), 0, "the old version is untouched");
        // Counting goes on in the same counters, old snapshot and new alike.
        let mut out = [Verdict::default(); 1];
        before.acl("VPN-FILTER").unwrap().classify_batch(
            &[https],
            Direction::FromClient,
            Some(10),
            before.sgts(),
            &mut out,
        );
        run(&h, &[https; 2]);
        assert_eq!(
            h.load().acl("VPN-FILTER").unwrap().hit_counts(),
            [0, 6, 0, 0]
        );

        // An SXP publish, in turn, keeps the session table.
        let t = h.publish_sgt_map(map());
        assert!(Arc::ptr_eq(&t.session_sgts, &after.session_sgts));
        assert!(!Arc::ptr_eq(&t.sgt_map, &after.sgt_map));
        assert_eq!(t.generation, after.generation + 1);
        // And a full publish takes everything from the new tables.
        let t = h.publish(tables(seed_rules(), map()));
        assert!(t.session_sgts.is_empty());
    }

    #[test]
    fn session_removal_uncovers_the_map() {
        let h = PolicyHandle::new(tables(seed_rules(), layered_map()));
        let host = ip("10.20.30.7");
        h.publish_session_sgts(SessionSgts::from_bindings([
            (host, 40),
            (ip("fd00:20:30::7"), 41),
        ]));
        let t = h.load_full();
        assert_eq!(t.sgts().lookup(host), Some(40));
        assert_eq!(t.sgts().lookup(ip("fd00:20:30::7")), Some(41));
        let map_before = Arc::clone(&t.sgt_map);
        // The session leaves: the SXP /32 under it shows again, then the
        // session table is empty and the map unchanged.
        let t = h.publish_session_sgts(SessionSgts::from_bindings([(ip("fd00:20:30::7"), 41)]));
        assert_eq!(t.sgts().lookup(host), Some(21));
        assert_eq!(t.sgts().lookup(ip("fd00:20:30::7")), Some(41));
        let t = h.publish_session_sgts(SessionSgts::new());
        assert_eq!(t.sgts().lookup(ip("fd00:20:30::7")), Some(21));
        assert!(t.session_sgts.is_empty());
        assert!(Arc::ptr_eq(&t.sgt_map, &map_before));
    }

    #[test]
    fn concurrent_readers_and_publisher() {
        let h = Arc::new(PolicyHandle::new(tables(seed_rules(), map())));
        let https = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.1.5"), 6, 40000, 443);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        // Every version permits this packet with rule 1.
                        let v = run(&h, &[https; 64]);
                        assert!(v.iter().all(|v| v.is_permit() && v.rule == 1));
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            h.publish(tables(seed_rules(), map()));
        }
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(
            h.load().acl("VPN-FILTER").unwrap().hits(1),
            2 * 2000 * 64,
            "no hit lost across 200 republishes of the same ACL"
        );
    }
}

//! Policy tables the packet path enforces: IP-to-SGT bindings and compiled ACLs
//! (asa-aaa.md section 4).
//!
//! The control plane compiles a [`PolicyTables`] (the headend's
//! `policy_compile::compile` does it from the configuration) and publishes it
//! through a [`PolicyHandle`]. The packet path calls [`PolicyHandle::load`] once
//! per batch and classifies the whole batch against that snapshot: no lock, no
//! allocation, no syscall per packet. A publish swaps the pointer atomically;
//! batches already running finish on the version they loaded.

pub mod acl;
pub mod meta;
pub mod sgt_map;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use acl::{
    AclError, Action, CompiledAcl, Direction, Indexing, NetMatch, PortMatch, Rule, Verdict,
};
pub use meta::PacketMeta;
pub use sgt_map::{InvalidPrefix, SgtMap, SgtMapBuilder, Source};

/// One consistent version of everything the packet path needs for policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyTables {
    /// Compiled ACLs by their (case-sensitive) name.
    pub acls: HashMap<String, Arc<CompiledAcl>>,
    pub sgt_map: Arc<SgtMap>,
    /// Bumped by every publish (0 for a table never published).
    pub generation: u64,
}

impl PolicyTables {
    pub fn new(acls: HashMap<String, Arc<CompiledAcl>>, sgt_map: SgtMap) -> Self {
        PolicyTables {
            acls,
            sgt_map: Arc::new(sgt_map),
            generation: 0,
        }
    }

    pub fn acl(&self, name: &str) -> Option<&Arc<CompiledAcl>> {
        self.acls.get(name)
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

    /// Replaces the tables with `new` and returns what was published.
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
                generation: old.generation + 1,
            });
            published = Some(Arc::clone(&t));
            t
        });
        published.unwrap_or_else(|| self.load_full())
    }

    /// Replaces only the IP-to-SGT map (SXP update, session up/down); the ACLs
    /// and their counters are shared with the previous version.
    pub fn publish_sgt_map(&self, map: SgtMap) -> Arc<PolicyTables> {
        let map = Arc::new(map);
        let mut published = None;
        self.current.rcu(|old| {
            let t = Arc::new(PolicyTables {
                acls: old.acls.clone(),
                sgt_map: Arc::clone(&map),
                generation: old.generation + 1,
            });
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
        acl.classify_batch(pkts, Direction::FromClient, Some(10), &t.sgt_map, &mut out);
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
            &before.sgt_map,
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
            &old.sgt_map,
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

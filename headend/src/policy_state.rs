//! The policy the dataplane enforces, kept current: compiled ACLs from the
//! config, the IP-to-SGT map built from `cts role-based sgt-map` and SXP
//! peers, and the VPN sessions' own addresses (priority session > SXP >
//! static). Every change publishes a new version atomically; packets in
//! flight finish on the old one.
//!
//! Sessions are published as their own table
//! ([`PolicyHandle::publish_session_sgts`]): a login, CoA or logout changes
//! one binding of a persistent [`SessionSgts`] (O(log sessions)) and publishes
//! an O(1) clone of it, so no session change rebuilds anything: not the
//! session table (issue 12: 10,000 sessions reconnecting at once) and not the
//! static/SXP map, which with 100k SXP bindings takes milliseconds and is
//! rebuilt only when SXP changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use arc_swap::ArcSwap;
use dataplane::policy::{
    CompiledAcl, PolicyHandle, PolicyTables, SessionSgts, SgtMapBuilder, Source,
};

use crate::config::{AccessList, Config};

/// A prefix as the map keys it.
pub type Prefix = (IpAddr, u8);

#[derive(Default)]
struct Sources {
    /// Static and SXP bindings (sessions are not in it).
    builder: SgtMapBuilder,
    /// SXP bindings per connection id, so that several peers advertising the
    /// same prefix, or a peer's reconnect, resolve correctly.
    sxp: BTreeMap<u64, BTreeMap<Prefix, u16>>,
    /// VPN session addresses with their SGT, ordered for `show`.
    sessions: BTreeMap<IpAddr, u16>,
    /// The same bindings as published: changed in place, one binding at a
    /// time; each publish is a clone that shares all unchanged nodes.
    session_sgts: SessionSgts,
    /// Per-user ACLs from RADIUS (`ip:inacl#N`), by name, with the number of
    /// sessions using each.
    downloadable: BTreeMap<String, Downloadable>,
}

struct Downloadable {
    acl: AccessList,
    compiled: Arc<CompiledAcl>,
    users: usize,
}

pub struct PolicyState {
    pub handle: Arc<PolicyHandle>,
    sources: Mutex<Sources>,
    /// The config the ACLs and static bindings were compiled from (for the
    /// `show` commands' rule text); replaced by [`PolicyState::reload`].
    config: ArcSwap<Config>,
}

/// What [`PolicyState::reload`] changed, for the log and the admin reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub access_lists: usize,
    pub static_bindings: usize,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub static_map_changed: bool,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(" ")
            }
        };
        writeln!(
            f,
            "{} access-lists, {} cts role-based sgt-map entries",
            self.access_lists, self.static_bindings
        )?;
        writeln!(f, "access-lists added: {}", list(&self.added))?;
        writeln!(f, "access-lists changed: {}", list(&self.changed))?;
        writeln!(f, "access-lists removed: {}", list(&self.removed))?;
        writeln!(
            f,
            "cts role-based sgt-map: {}",
            if self.static_map_changed {
                "changed"
            } else {
                "unchanged"
            }
        )
    }
}

impl PolicyState {
    pub fn new(cfg: &Config) -> Result<Self> {
        let tables = crate::policy_compile::compile(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        let builder =
            crate::policy_compile::static_sgt_bindings(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            handle: Arc::new(PolicyHandle::new(tables)),
            sources: Mutex::new(Sources {
                builder,
                ..Sources::default()
            }),
            config: ArcSwap::from_pointee(cfg.clone()),
        })
    }

    /// The config the current ACLs and static bindings came from.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// True while a session uses the downloadable ACL `name` (so a named ISE
    /// ACL need not be fetched again: its name changes with its content).
    pub fn has_downloadable(&self, name: &str) -> bool {
        self.lock().downloadable.contains_key(name)
    }

    /// A session's downloadable ACL `name` with its `ip:inacl` entries (in
    /// order): compiled and published, or shared with the sessions already
    /// using that name (`aces` may then be empty: a named ISE ACL that was not
    /// fetched again). The name becomes the session's filter;
    /// [`PolicyState::release_downloadable`] when the session ends.
    pub fn acquire_downloadable(&self, name: &str, aces: &[String]) -> Result<(), String> {
        // The name comes from the RADIUS server and ends up in logs and `show`.
        if name.is_empty() || name.len() > 200 || !name.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!("unusable access-list name {name:?}"));
        }
        let mut s = self.lock();
        if let Some(d) = s.downloadable.get_mut(name) {
            d.users += 1;
            return Ok(());
        }
        let cfg = self.config.load();
        if cfg.access_lists.contains_key(name) {
            return Err(format!("{name} is a configured access-list"));
        }
        let (acl, compiled) = crate::policy_compile::compile_downloadable(&cfg, name, aces)?;
        let compiled = Arc::new(compiled);
        s.downloadable.insert(
            name.to_owned(),
            Downloadable {
                acl,
                compiled: Arc::clone(&compiled),
                users: 1,
            },
        );
        self.publish_acls(|acls| {
            acls.insert(name.to_owned(), compiled);
        });
        tracing::info!(acl = %name, entries = aces.len(), "downloadable access-list installed");
        Ok(())
    }

    /// A session using `name` (from [`PolicyState::acquire_downloadable`])
    /// ended; the last one removes the ACL.
    pub fn release_downloadable(&self, name: &str) {
        let mut s = self.lock();
        let Some(d) = s.downloadable.get_mut(name) else {
            return;
        };
        d.users = d.users.saturating_sub(1);
        if d.users > 0 {
            return;
        }
        s.downloadable.remove(name);
        self.publish_acls(|acls| {
            acls.remove(name);
        });
        tracing::info!(acl = %name, "downloadable access-list removed (no session uses it)");
    }

    /// Publishes the current tables with `edit` applied to their ACLs (call
    /// with the sources lock held, so publishes keep their order).
    fn publish_acls(
        &self,
        edit: impl FnOnce(&mut std::collections::HashMap<String, Arc<CompiledAcl>>),
    ) {
        let old = self.handle.load_full();
        let mut acls = old.acls.clone();
        edit(&mut acls);
        self.handle.publish(PolicyTables {
            acls,
            sgt_map: Arc::clone(&old.sgt_map),
            session_sgts: Arc::clone(&old.session_sgts),
            generation: 0,
        });
    }

    /// `show access-list [NAME]`: the configured ACLs, then the per-user ones.
    pub fn show_access_list(&self, name: Option<&str>) -> String {
        // ASA does not print the implicit deny; a TextFSM template reading this
        // output stops at a line it does not know. `detail` keeps it.
        self.show_access_list_with_implicit(name)
            .lines()
            .filter(|l| !l.contains(" implicit deny (hitcnt="))
            .flat_map(|l| [l, "\n"])
            .collect()
    }

    /// `show access-list NAME` plus the implicit deny's counter (a headend
    /// extra, shown by `show access-list NAME detail`).
    pub fn show_access_list_detail(&self, name: &str) -> String {
        self.show_access_list_with_implicit(Some(name))
    }

    fn show_access_list_with_implicit(&self, name: Option<&str>) -> String {
        let cfg = self.config.load_full();
        let tables = self.handle.load_full();
        let mut out = match name {
            None => crate::policy_compile::show_access_list(&tables, &cfg),
            Some(n) => crate::policy_compile::show_access_list_named(&tables, &cfg, n),
        };
        let s = self.lock();
        for (n, d) in &s.downloadable {
            if name.is_none_or(|want| want == n) {
                crate::policy_compile::show_one(&mut out, &tables, &cfg, n, &d.acl);
            }
        }
        out
    }

    /// `clear access-list NAME counters`: zeroes the hit counters of the
    /// published ACL `NAME` (configured or downloadable) in place, with relaxed
    /// atomic stores, so the dataplane never waits. False if no ACL has that
    /// name. Hits that a batch classified just before but adds just after the
    /// reset stay counted, as on an ASA under traffic.
    pub fn clear_counters(&self, name: &str) -> bool {
        match self.handle.load_full().acl(name) {
            Some(acl) => {
                acl.clear_counters();
                true
            }
            None => false,
        }
    }

    /// Per-line hit counts of every ACL (configured, then downloadable):
    /// (acl, line, hits), for the metrics endpoint. Reads the published tables;
    /// the dataplane never takes the lock held here.
    pub fn acl_hits(&self) -> Vec<(String, String, u64)> {
        let cfg = self.config.load_full();
        let tables = self.handle.load_full();
        let mut out = Vec::new();
        for (name, acl) in &cfg.access_lists {
            for (line, hits) in crate::policy_compile::acl_hits(&tables, &cfg, name, acl) {
                out.push((name.clone(), line, hits));
            }
        }
        let s = self.lock();
        for (name, d) in &s.downloadable {
            for (line, hits) in crate::policy_compile::acl_hits(&tables, &cfg, name, &d.acl) {
                out.push((name.clone(), line, hits));
            }
        }
        out
    }

    /// Applies the policy parts of a re-read config: every `access-list` and the
    /// `cts role-based sgt-map` lines. Validates everything first (an error
    /// changes nothing); then publishes ACLs, the rebuilt static/SXP map and the
    /// current session bindings as one version. Hit counts of unchanged rules
    /// carry over. Sessions keep their filter by name: one naming an ACL that is
    /// gone drops its traffic (fail closed) until a CoA or a new login.
    pub fn reload(
        &self,
        cfg: &Config,
    ) -> Result<ReloadSummary, crate::policy_compile::CompileError> {
        let compiled = crate::policy_compile::compile(cfg)?;
        let old_cfg = self.config.load_full();
        let mut s = self.lock();
        let old = self.handle.load_full();
        let mut summary = ReloadSummary {
            access_lists: compiled.acls.len(),
            static_bindings: cfg.cts.sgt_map.len(),
            static_map_changed: old_cfg
                .cts
                .sgt_map
                .iter()
                .map(|e| (e.address, e.prefix_len, e.sgt))
                .ne(cfg
                    .cts
                    .sgt_map
                    .iter()
                    .map(|e| (e.address, e.prefix_len, e.sgt))),
            ..ReloadSummary::default()
        };
        for (name, acl) in &compiled.acls {
            match old.acl(name) {
                None => summary.added.push(name.clone()),
                Some(prev) if prev.rules() != acl.rules() => summary.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        summary.removed = old
            .acls
            .keys()
            .filter(|n| !compiled.acls.contains_key(*n) && !s.downloadable.contains_key(*n))
            .cloned()
            .collect();
        summary.added.sort();
        summary.changed.sort();
        summary.removed.sort();
        s.builder.clear_source(Source::Static);
        for e in &cfg.cts.sgt_map {
            // compile() accepted every entry above.
            let _ = s
                .builder
                .insert(e.address, e.prefix_len, e.sgt, Source::Static);
        }
        let mut acls = compiled.acls;
        for (name, d) in &s.downloadable {
            acls.entry(name.clone())
                .or_insert_with(|| Arc::clone(&d.compiled));
        }
        // Under the lock: no session or SXP change can slip in between.
        self.handle.publish(PolicyTables {
            acls,
            sgt_map: Arc::new(s.builder.build()),
            session_sgts: Arc::clone(&old.session_sgts),
            generation: 0,
        });
        self.config.store(Arc::new(cfg.clone()));
        Ok(summary)
    }

    fn lock(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, s: &Sources) {
        self.handle.publish_sgt_map(s.builder.build());
    }

    /// A VPN session's address and SGT (None removes the binding). Publishes
    /// the session table only, and only if something changed. O(log sessions):
    /// one binding changes and the publish is an O(1) clone, so the lock (held
    /// so that publishes happen in the order of the changes) is never held
    /// across a rebuild.
    pub fn set_session(&self, addr: IpAddr, sgt: Option<u16>) {
        let mut guard = self.lock();
        let s = &mut *guard;
        match sgt {
            Some(t) => s.sessions.insert(addr, t),
            None => s.sessions.remove(&addr),
        };
        if s.session_sgts.set(addr, sgt) {
            self.handle.publish_session_sgts(s.session_sgts.clone());
        }
    }

    /// Applies one SXP connection's binding changes (adds with their SGT,
    /// deletes as None) and republishes once.
    pub fn sxp_changes(&self, conn: u64, changes: &[(Prefix, Option<u16>)]) {
        if changes.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let s = &mut *guard;
        for &(prefix, sgt) in changes {
            let table = s.sxp.entry(conn).or_default();
            match sgt {
                Some(t) => {
                    table.insert(prefix, t);
                }
                None => {
                    table.remove(&prefix);
                }
            }
            // The newest connection that still has the prefix wins.
            let winner = s.sxp.values().rev().find_map(|t| t.get(&prefix).copied());
            match winner {
                Some(t) => {
                    let _ = s.builder.insert(prefix.0, prefix.1, t, Source::Sxp);
                }
                None => {
                    s.builder.remove(prefix.0, prefix.1, Source::Sxp);
                }
            }
        }
        s.sxp.retain(|_, t| !t.is_empty());
        self.publish(s);
    }

    /// Everything a connection advertised is gone (peer lost, PURGE_ALL).
    pub fn sxp_forget(&self, conn: u64) {
        let prefixes: Vec<Prefix> = self
            .lock()
            .sxp
            .get(&conn)
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default();
        let changes: Vec<(Prefix, Option<u16>)> = prefixes.into_iter().map(|p| (p, None)).collect();
        self.sxp_changes(conn, &changes);
    }

    /// `show cts role-based sgt-map all`, as ASA prints it.
    pub fn show_sgt_map(&self) -> String {
        use std::fmt::Write as _;
        let s = self.lock();
        let cfg = self.config.load();
        let mut rows: BTreeMap<Prefix, (u16, &'static str)> = BTreeMap::new();
        for e in &cfg.cts.sgt_map {
            rows.insert((e.address, e.prefix_len), (e.sgt, "CLI"));
        }
        for t in s.sxp.values() {
            for (p, sgt) in t {
                rows.insert(*p, (*sgt, "SXP"));
            }
        }
        for (a, sgt) in &s.sessions {
            let len = if a.is_ipv4() { 32 } else { 128 };
            rows.insert((*a, len), (*sgt, "LOCAL"));
        }
        let mut out = String::from("Active IP-SGT Bindings Information\n\n");
        let _ = writeln!(out, "{:<40} {:>5}  Source", "IP Address", "SGT");
        let _ = writeln!(out, "{}", "=".repeat(56));
        for ((addr, len), (sgt, src)) in &rows {
            let full = if addr.is_ipv4() { 32 } else { 128 };
            let ip = if *len == full {
                addr.to_string()
            } else {
                format!("{addr}/{len}")
            };
            let _ = writeln!(out, "{ip:<40} {sgt:>5}  {src}");
        }
        let _ = write!(
            out,
            "\nIP-SGT Active Bindings Summary\n{}\nTotal number of CLI      bindings = {}\nTotal number of SXP      bindings = {}\nTotal number of LOCAL    bindings = {}\nTotal number of active   bindings = {}\n",
            "=".repeat(56),
            cfg.cts.sgt_map.len(),
            s.sxp.values().map(BTreeMap::len).sum::<usize>(),
            s.sessions.len(),
            rows.len()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    const CFG: &str = "\
access-list VPN-FILTER extended permit tcp security-group tag 10 any security-group tag 20 any eq 443
access-list VPN-FILTER extended deny ip any any log
cts role-based sgt-map 198.18.1.0/28 sgt 20
cts role-based sgt-map 198.18.1.5 sgt 22
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn state() -> (PolicyState, Config) {
        let cfg = parse_str(CFG, "test.cfg").unwrap();
        let p = PolicyState::new(&cfg).unwrap();
        p.sxp_changes(
            1,
            &[
                ((ip("198.18.1.5"), 32), Some(21)),
                ((ip("198.18.2.0"), 24), Some(30)),
                ((ip("fd00:2::"), 64), Some(31)),
            ],
        );
        (p, cfg)
    }

    #[test]
    fn session_change_publishes_only_the_session_table() {
        let (p, _) = state();
        let t0 = p.handle.load_full();
        assert_eq!(
            t0.sgts().lookup(ip("198.18.1.5")),
            Some(21),
            "SXP over static"
        );

        p.set_session(ip("198.18.1.5"), Some(40));
        p.set_session(ip("198.18.2.9"), Some(41));
        p.set_session(ip("fd00:2::9"), Some(42));
        let t1 = p.handle.load_full();
        assert!(Arc::ptr_eq(&t1.sgt_map, &t0.sgt_map), "map not rebuilt");
        assert!(Arc::ptr_eq(
            t1.acl("VPN-FILTER").unwrap(),
            t0.acl("VPN-FILTER").unwrap()
        ));
        assert_eq!(t1.generation, t0.generation + 3);
        assert_eq!(t1.session_sgts.len(), 3);
        assert_eq!(t1.sgts().lookup(ip("198.18.1.5")), Some(40));
        assert_eq!(
            t1.sgts().lookup(ip("198.18.2.9")),
            Some(41),
            "/32 in SXP /24"
        );
        assert_eq!(t1.sgts().lookup(ip("198.18.2.8")), Some(30));
        assert_eq!(t1.sgts().lookup(ip("fd00:2::9")), Some(42));
        assert_eq!(t1.sgt_map.lookup(ip("198.18.1.5")), Some(21));

        // The same SGT again (a CoA that changes nothing) publishes nothing.
        p.set_session(ip("198.18.1.5"), Some(40));
        assert_eq!(p.handle.load().generation, t1.generation);
        // CoA to another SGT.
        p.set_session(ip("198.18.1.5"), Some(43));
        assert_eq!(p.handle.load().sgts().lookup(ip("198.18.1.5")), Some(43));

        // An SXP change rebuilds the map and keeps the sessions.
        let before = p.handle.load_full();
        p.sxp_changes(1, &[((ip("198.18.1.5"), 32), None)]);
        let t2 = p.handle.load_full();
        assert!(!Arc::ptr_eq(&t2.sgt_map, &before.sgt_map));
        assert!(Arc::ptr_eq(&t2.session_sgts, &before.session_sgts));
        assert_eq!(t2.sgts().lookup(ip("198.18.1.5")), Some(43));

        // Logout uncovers the static /32, then the SXP /24; removing an
        // unknown session publishes nothing.
        p.set_session(ip("198.18.1.5"), None);
        p.set_session(ip("198.18.2.9"), None);
        let t3 = p.handle.load_full();
        assert_eq!(t3.sgts().lookup(ip("198.18.1.5")), Some(22));
        assert_eq!(t3.sgts().lookup(ip("198.18.2.9")), Some(30));
        assert!(Arc::ptr_eq(&t3.sgt_map, &t2.sgt_map));
        p.set_session(ip("198.18.2.9"), None);
        assert_eq!(p.handle.load().generation, t3.generation);
        p.set_session(ip("fd00:2::9"), None);
        assert!(p.handle.load().session_sgts.is_empty());
        assert_eq!(p.handle.load().sgts().lookup(ip("fd00:2::9")), Some(31));
    }

    #[test]
    fn clear_counters_zeroes_the_named_acl_only() {
        use dataplane::policy::{Direction, PacketMeta, Verdict};
        let (p, _) = state();
        let t = p.handle.load_full();
        let pkt = PacketMeta::with_ports(ip("198.18.100.10"), ip("198.18.9.9"), 6, 40000, 22);
        let mut out = [Verdict::default(); 3];
        t.acl("VPN-FILTER").unwrap().classify_batch(
            &[pkt, pkt, pkt],
            Direction::FromClient,
            Some(10),
            t.sgts(),
            &mut out,
        );
        let shown = p.show_access_list(None);
        assert!(
            shown.contains("deny ip any any log") && shown.contains("(hitcnt=3)"),
            "{shown}"
        );
        assert!(!p.clear_counters("NOPE"), "unknown ACL");
        assert!(p.show_access_list(None).contains("(hitcnt=3)"));
        assert!(p.clear_counters("VPN-FILTER"));
        let shown = p.show_access_list(None);
        assert!(
            !shown.contains("(hitcnt=3)") && shown.contains("(hitcnt=0)"),
            "{shown}"
        );
        // Same compiled ACL still published: the dataplane keeps counting.
        assert!(Arc::ptr_eq(
            p.handle.load_full().acl("VPN-FILTER").unwrap(),
            t.acl("VPN-FILTER").unwrap()
        ));
    }

    #[test]
    fn show_sgt_map_lists_every_source() {
        let (p, _) = state();
        p.set_session(ip("198.18.100.10"), Some(10));
        p.set_session(ip("198.18.1.5"), Some(40));
        let want = "\
Active IP-SGT Bindings Information

IP Address                                 SGT  Source
========================================================
198.18.1.0/28                               20  CLI
198.18.1.5                                  40  LOCAL
198.18.2.0/24                               30  SXP
198.18.100.10                               10  LOCAL
fd00:2::/64                                 31  SXP

IP-SGT Active Bindings Summary
========================================================
Total number of CLI      bindings = 2
Total number of SXP      bindings = 3
Total number of LOCAL    bindings = 2
Total number of active   bindings = 5
";
        assert_eq!(p.show_sgt_map(), want);
    }

    #[test]
    fn reload_swaps_acls_and_static_map_keeps_sxp_and_sessions() {
        let (p, _) = state();
        p.set_session(ip("198.18.100.10"), Some(10));
        let t0 = p.handle.load_full();
        let cfg = parse_str(
            "\
access-list VPN-FILTER extended permit tcp security-group tag 10 any security-group tag 20 any eq 443
access-list VPN-FILTER extended permit icmp any any
access-list VPN-FILTER extended deny ip any any log
access-list NEW extended permit ip any any
cts role-based sgt-map 198.18.3.0/24 sgt 23
",
            "reload.cfg",
        )
        .unwrap();
        let summary = p.reload(&cfg).unwrap();
        assert_eq!(summary.added, vec!["NEW".to_string()]);
        assert_eq!(summary.changed, vec!["VPN-FILTER".to_string()]);
        assert!(summary.removed.is_empty());
        assert!(summary.static_map_changed);
        let t1 = p.handle.load_full();
        assert!(t1.generation > t0.generation);
        let acl1 = t1.acl("VPN-FILTER").unwrap();
        assert_eq!(acl1.rules().len(), 3);
        assert!(t1.acl("NEW").is_some());
        // Static map replaced, SXP and sessions kept.
        assert_eq!(
            t1.sgts().lookup(ip("198.18.1.9")),
            None,
            "old static /28 gone"
        );
        assert_eq!(t1.sgts().lookup(ip("198.18.3.7")), Some(23));
        assert_eq!(t1.sgts().lookup(ip("198.18.1.5")), Some(21), "SXP kept");
        assert_eq!(t1.sgts().lookup(ip("198.18.2.1")), Some(30));
        assert_eq!(
            t1.sgts().lookup(ip("198.18.100.10")),
            Some(10),
            "session kept"
        );
        assert!(
            p.show_sgt_map()
                .contains("198.18.3.0/24                               23  CLI")
        );

        // Removing an ACL is reported; a config whose ACL does not compile
        // changes nothing.
        let cfg2 = parse_str("cts role-based sgt-map 198.18.3.0/24 sgt 23\n", "r2.cfg").unwrap();
        let summary = p.reload(&cfg2).unwrap();
        assert_eq!(
            summary.removed,
            vec!["NEW".to_string(), "VPN-FILTER".to_string()]
        );
        assert!(!summary.static_map_changed);
        assert!(p.handle.load().acl("VPN-FILTER").is_none());
    }

    #[test]
    fn downloadable_acls_are_shared_counted_kept_by_reload_and_removed() {
        let (p, cfg) = state();
        let aces: Vec<String> = vec!["permit icmp any any".into(), "deny ip any any".into()];
        let a = crate::policy_compile::downloadable_name("alice", &aces);
        p.acquire_downloadable(&a, &aces).unwrap();
        assert!(p.has_downloadable(&a));
        // Shared by name; a second user of a named ACL brings no entries.
        p.acquire_downloadable(&a, &[]).unwrap();
        let other = crate::policy_compile::downloadable_name("bob", &aces);
        assert_ne!(a, other);
        p.acquire_downloadable(&other, &aces).unwrap();
        assert!(
            p.acquire_downloadable("#ACSACL#-IP-X-1", &[]).is_err(),
            "unknown, no entries"
        );
        assert!(
            p.acquire_downloadable("VPN-FILTER", &aces).is_err(),
            "a configured name"
        );
        assert!(p.handle.load().acl(&a).is_some());
        let shown = p.show_access_list(Some(&a));
        assert!(
            shown.contains(&format!("access-list {a}; 2 elements")),
            "{shown}"
        );
        assert!(p.show_access_list(None).contains("access-list VPN-FILTER;"));
        assert!(
            p.acquire_downloadable("carol", &["permit bogus".to_string()])
                .is_err()
        );
        assert!(p.handle.load().acls.keys().all(|n| !n.contains("carol")));

        // A reload keeps them (and does not report them removed).
        let summary = p.reload(&cfg).unwrap();
        assert!(summary.removed.is_empty(), "{summary:?}");
        assert!(p.handle.load().acl(&a).is_some());

        p.release_downloadable(&a);
        assert!(
            p.handle.load().acl(&a).is_some(),
            "one session still uses it"
        );
        p.release_downloadable(&a);
        assert!(p.handle.load().acl(&a).is_none());
        assert!(p.show_access_list(Some(&a)).is_empty());
        p.release_downloadable(&a);
        assert!(!p.has_downloadable(&a));
        assert!(p.handle.load().acl(&other).is_some());
    }
}

//! The session table's side of a headend cluster (issue 19): what a node writes to
//! the shared store, adopting a session another node held, and letting one go
//! when another node took it over. Redis itself is `crate::cluster`'s business.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::{
    AttachError, Inner, Session, SessionAuthz, SessionState, SessionStats, SessionTable,
    acct_event, cookie_hash,
};
use crate::cluster::{ClusterEvent, keys, record::SessionRecord, record::unix_now};
use crate::config::EffectivePolicy;

/// What the cluster must do before a CONNECT with a locally known cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPlan {
    pub index: u64,
    pub sid: String,
    /// 0: never owned in the cluster yet (first CONNECT after the login).
    pub fence: u64,
    pub has_v4: bool,
    pub framed_ip: Option<Ipv4Addr>,
    pub pools: Vec<String>,
    pub username: String,
}

/// The cluster's session id of a cookie: hex SHA-256 (Redis never sees cookies).
pub fn sid_of(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Redis keys of the addresses a session holds.
fn addr_keys(s: &Session) -> Vec<String> {
    s.assigned_v4
        .iter()
        .map(|(a, _, pool)| keys::addr4(pool, *a))
        .collect()
}

/// What the cluster task does when a session this node owns ends.
pub(super) fn ended_events(s: &Session) -> Vec<ClusterEvent> {
    let mut v = vec![ClusterEvent::Ended {
        sid: sid_of(&s.cookie_hash),
        fence: s.cluster_fence,
        acct_session_id: s.acct_session_id.clone(),
        addr_keys: addr_keys(s),
    }];
    if let Some((a, _, _)) = &s.assigned_v4 {
        v.push(ClusterEvent::Unserve(*a));
    }
    v
}

fn unix_of(t: Instant, now: Instant, now_unix: u64) -> u64 {
    now_unix.saturating_sub(now.saturating_duration_since(t).as_secs())
}

fn record_of(s: &Session, node: &str, now: Instant) -> SessionRecord {
    let now_unix = unix_now();
    let acct_start_unix = match s.acct_started {
        Some(t) => Some(unix_of(t, now, now_unix)),
        // The CONNECT this record is written for sends the Start.
        None => s.authz.accounting_group.as_ref().map(|_| now_unix),
    };
    SessionRecord {
        v: crate::cluster::record::RECORD_VERSION,
        username: s.username.clone(),
        tunnel_group: s.tunnel_group.clone(),
        group_policy: s.group_policy.clone(),
        public_ip: s.public_ip,
        login_unix: s
            .login_time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        v4: s.assigned_v4.as_ref().map(|(a, _, p)| (*a, p.clone())),
        v6: s.assigned_v6.as_ref().map(|(a, _, _)| *a),
        sgt: s.authz.sgt,
        filter: s.authz.filter.clone(),
        classes: s.authz.classes.clone(),
        framed_ip: s.authz.framed_ip,
        accounting_group: s.authz.accounting_group.clone(),
        downloadable_aces: s.authz.downloadable_aces.clone(),
        downloadable_name: s.authz.downloadable_name.clone(),
        saml_attributes: s.authz.saml_attributes.clone(),
        audit_session_id: s.audit_session_id.clone(),
        acct_session_id: s.acct_session_id.clone(),
        acct_start_unix,
        counters: [
            s.stats.bytes_tx.load(Ordering::Relaxed),
            s.stats.bytes_rx.load(Ordering::Relaxed),
            s.stats.packets_tx.load(Ordering::Relaxed),
            s.stats.packets_rx.load(Ordering::Relaxed),
        ],
        node: node.to_owned(),
    }
}

/// One owned session for the periodic write-back.
#[derive(Debug, Clone)]
pub struct OwnedSession {
    pub index: u64,
    pub sid: String,
    pub fence: u64,
    pub record: SessionRecord,
    pub addr_keys: Vec<String>,
}

impl SessionTable {
    /// Cluster events (ended sessions, served addresses) go to `tx` from now on.
    pub fn set_cluster(&self, tx: mpsc::UnboundedSender<ClusterEvent>) {
        self.lock().cluster = Some(tx);
    }

    fn cluster_send(inner: &Inner, ev: ClusterEvent) {
        if let Some(tx) = &inner.cluster {
            let _ = tx.send(ev);
        }
    }

    /// The cluster's view of a cookie this node knows, or None.
    pub fn connect_plan(&self, cookie: &str) -> Option<ConnectPlan> {
        let inner = self.lock();
        let hash = cookie_hash(cookie);
        let s = inner.sessions.get(inner.by_cookie.get(&hash)?)?;
        Some(ConnectPlan {
            index: s.index,
            sid: sid_of(&hash),
            fence: s.cluster_fence,
            has_v4: s.assigned_v4.is_some(),
            framed_ip: s.authz.framed_ip,
            pools: s.pools.clone(),
            username: s.username.clone(),
        })
    }

    /// (first, last, mask) of a local pool, for a cluster-wide allocation.
    pub fn pool_range(&self, name: &str) -> Option<(Ipv4Addr, Ipv4Addr, Ipv4Addr)> {
        let inner = self.lock();
        let p = inner.pools.get(name)?;
        Some((p.first(), p.last(), p.mask))
    }

    /// The pool (name) that holds `ip`, if any.
    pub fn pool_of(&self, ip: Ipv4Addr) -> Option<String> {
        let inner = self.lock();
        inner
            .pools
            .iter()
            .find(|(_, p)| p.contains(ip))
            .map(|(n, _)| n.clone())
    }

    /// Gives session `index` the address the cluster allocated (`pool` "": a
    /// Framed-IP-Address outside every pool). False if this node already uses it.
    pub fn assign_v4(&self, index: u64, addr: Ipv4Addr, pool: &str) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(s) = inner.sessions.get_mut(&index) else {
            return false;
        };
        if s.assigned_v4.is_some() {
            return s.assigned_v4.as_ref().is_some_and(|a| a.0 == addr);
        }
        let mask = match inner.pools.get_mut(pool) {
            Some(p) => {
                if !p.take(addr) {
                    return false;
                }
                p.mask
            }
            None => Ipv4Addr::BROADCAST,
        };
        s.assigned_v4 = Some((addr, mask, pool.to_owned()));
        inner.selectors.by_v4.insert(addr, index);
        true
    }

    /// This node owns session `index` with fencing token `fence`: it serves its
    /// address on the inside segment and writes it back periodically.
    pub fn set_cluster_owner(&self, index: u64, fence: u64) {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(&index) else {
            return;
        };
        s.cluster_fence = fence;
        let addr = s.assigned_v4.as_ref().map(|a| a.0);
        if let Some(a) = addr {
            Self::cluster_send(
                &inner,
                ClusterEvent::Serve {
                    addr: a,
                    takeover: false,
                },
            );
        }
    }

    /// The record of session `index` as the store should hold it.
    pub fn cluster_record(&self, index: u64, node: &str) -> Option<(SessionRecord, Vec<String>)> {
        let inner = self.lock();
        let s = inner.sessions.get(&index)?;
        Some((record_of(s, node, Instant::now()), addr_keys(s)))
    }

    /// Every session this node owns in the cluster, for the write-back.
    pub fn owned_sessions(&self, node: &str) -> Vec<OwnedSession> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .sessions
            .values()
            .filter(|s| s.cluster_fence > 0)
            .map(|s| OwnedSession {
                index: s.index,
                sid: sid_of(&s.cookie_hash),
                fence: s.cluster_fence,
                record: record_of(s, node, now),
                addr_keys: addr_keys(s),
            })
            .collect()
    }

    /// Takes over a session another node held: same address, authorization and
    /// accounting session (no second Start; this node sends the Stop).
    pub fn adopt(
        &self,
        cookie: &str,
        rec: &SessionRecord,
        policy: EffectivePolicy,
        pools: Vec<String>,
        fence: u64,
        now: Instant,
    ) -> Result<u64, AttachError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let hash = cookie_hash(cookie);
        if let Some(i) = inner.by_cookie.get(&hash) {
            // Known here after all (a race with another CONNECT): just own it.
            let i = *i;
            if let Some(s) = inner.sessions.get_mut(&i) {
                s.cluster_fence = fence;
            }
            return Ok(i);
        }
        let assigned_v4 = match &rec.v4 {
            Some((a, pool)) => match inner.pools.get_mut(pool) {
                Some(p) => {
                    if !p.take(*a) {
                        return Err(AttachError::FramedIpInUse(*a));
                    }
                    Some((*a, p.mask, pool.clone()))
                }
                None => Some((*a, Ipv4Addr::BROADCAST, String::new())),
            },
            None => None,
        };
        let mut authz = SessionAuthz {
            sgt: rec.sgt,
            filter: rec.filter.clone(),
            classes: rec.classes.clone(),
            framed_ip: rec.framed_ip,
            accounting_group: rec.accounting_group.clone(),
            saml_attributes: rec.saml_attributes.clone(),
            downloadable_aces: rec.downloadable_aces.clone(),
            downloadable_name: rec.downloadable_name.clone(),
            downloadable_acl: None,
        };
        let wants_acl = authz.downloadable_name.is_some() || !authz.downloadable_aces.is_empty();
        if wants_acl && let Some(p) = &inner.policy {
            let name = authz.downloadable_name.clone().unwrap_or_else(|| {
                crate::policy_compile::downloadable_name(&rec.username, &authz.downloadable_aces)
            });
            if p.acquire_downloadable(&name, &authz.downloadable_aces)
                .is_ok()
            {
                authz.filter = Some(name.clone());
                authz.downloadable_acl = Some(name);
            } else {
                tracing::warn!(user = %rec.username, "takeover: downloadable access-list {name} refused: the session's traffic is dropped until a CoA");
            }
        }
        let now_unix = unix_now();
        let ago = |unix: u64| now.checked_sub(Duration::from_secs(now_unix.saturating_sub(unix)));
        let index = inner.next_index;
        inner.next_index += 1;
        inner.by_cookie.insert(hash, index);
        inner
            .by_user
            .entry(rec.username.clone())
            .or_default()
            .insert(index);
        let stats = Arc::new(SessionStats::default());
        let [btx, brx, ptx, prx] = rec.counters;
        stats.bytes_tx.store(btx, Ordering::Relaxed);
        stats.bytes_rx.store(brx, Ordering::Relaxed);
        stats.packets_tx.store(ptx, Ordering::Relaxed);
        stats.packets_rx.store(prx, Ordering::Relaxed);
        let acct_started = rec.acct_start_unix.map(|u| ago(u).unwrap_or(now));
        let pools6 = if policy.ipv6_address_pools.is_empty() {
            inner
                .tunnel_group_pools6
                .get(&rec.tunnel_group)
                .cloned()
                .unwrap_or_default()
        } else {
            policy.ipv6_address_pools.clone()
        };
        let s = Session {
            index,
            username: rec.username.clone(),
            tunnel_group: rec.tunnel_group.clone(),
            group_policy: rec.group_policy.clone(),
            policy,
            public_ip: rec.public_ip,
            login_time: SystemTime::UNIX_EPOCH + Duration::from_secs(rec.login_unix),
            login_instant: ago(rec.login_unix).unwrap_or(now),
            assigned_v4,
            pools,
            assigned_v6: None,
            pools6,
            stats,
            state: SessionState::Disconnected { since: now },
            filter: Arc::new(dataplane::enforce::SessionFilter::new(
                authz.sgt,
                authz.filter.clone(),
            )),
            authz,
            audit_session_id: rec.audit_session_id.clone(),
            acct_session_id: rec.acct_session_id.clone(),
            acct_started,
            last_interim: now,
            control: None,
            cookie_hash: hash,
            cluster_fence: fence,
        };
        // This node sends the Stop now: journal the Start it continues, so a
        // crash of this node still gets that Stop out at its next start.
        if let (Some(_), Some(group), Some(j)) = (
            s.acct_started,
            s.authz.accounting_group.clone(),
            &inner.journal,
        ) {
            let ev = acct_event(&s, auth::radius::AcctStatusType::Start, None, group, now);
            if let Err(e) = j.started(&ev) {
                tracing::error!(user = %ev.username, session = %ev.acct_session_id, "accounting journal: {e}");
            }
        }
        if let Some((a, _, _)) = &s.assigned_v4 {
            Self::cluster_send(
                inner,
                ClusterEvent::Serve {
                    addr: *a,
                    takeover: true,
                },
            );
        }
        tracing::info!(
            user = %s.username,
            index,
            address = ?s.assigned_v4.as_ref().map(|a| a.0),
            fence,
            "session taken over from node {} (same address, SGT {:?}, filter {:?}, accounting session {})",
            rec.node,
            s.authz.sgt,
            s.authz.filter,
            s.acct_session_id
        );
        inner.selectors.add(&s);
        inner.sessions.insert(index, s);
        inner.peak = inner.peak.max(inner.sessions.len());
        Ok(index)
    }

    /// Another node took session `index` over (its fencing token is newer): stop
    /// serving it here at once, without a Stop (the new owner sends it) and
    /// without freeing its address in the cluster.
    pub fn drop_taken_over(&self, index: u64) -> bool {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.remove(&index) else {
            return false;
        };
        inner.by_cookie.remove(&s.cookie_hash);
        inner.selectors.remove(&s);
        if let Some(v) = inner.by_user.get_mut(&s.username) {
            v.remove(&index);
            if v.is_empty() {
                inner.by_user.remove(&s.username);
            }
        }
        if let Some(p) = &inner.policy {
            for a in s
                .assigned_v4
                .iter()
                .map(|a| IpAddr::V4(a.0))
                .chain(s.assigned_v6.iter().map(|a| IpAddr::V6(a.0)))
            {
                p.set_session(a, None);
            }
            if let Some(n) = &s.authz.downloadable_acl {
                p.release_downloadable(n);
            }
        }
        if let Some((a, _, pool)) = &s.assigned_v4 {
            if let Some(p) = inner.pools.get_mut(pool) {
                p.release(*a);
            }
            Self::cluster_send(&inner, ClusterEvent::Unserve(*a));
        }
        if let Some((a, _, pool)) = &s.assigned_v6
            && let Some(p) = inner.pools6.get_mut(pool)
        {
            p.release(*a);
        }
        if let Some(c) = &s.control {
            let _ = c.send(super::SessionCommand::Superseded);
        }
        if let Some(j) = &inner.journal
            && s.acct_started.is_some()
            && let Err(e) = j.ended(&s.acct_session_id)
        {
            tracing::error!(user = %s.username, "accounting journal: {e}");
        }
        tracing::warn!(user = %s.username, index, "session taken over by another node: no longer forwarded here");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{Detach, NewSession};

    const CFG: &str = "\
ip local pool P 198.18.100.10-198.18.100.20 mask 255.255.255.0
group-policy GP internal
group-policy GP attributes
 vpn-simultaneous-logins 2
";

    fn table() -> (SessionTable, crate::config::Config) {
        let cfg = crate::config::parse_str(CFG, "test.cfg").expect("config");
        (SessionTable::new(&cfg), cfg)
    }

    fn login(t: &SessionTable, cfg: &crate::config::Config) -> (u64, String) {
        let authz = SessionAuthz {
            sgt: Some(10),
            filter: Some("F".into()),
            accounting_group: Some("ISE".into()),
            ..SessionAuthz::default()
        };
        t.login(
            NewSession {
                username: "alice",
                tunnel_group: "TG",
                group_policy: "GP",
                policy: cfg.effective_policy("GP"),
                pools: vec!["P".into()],
                public_ip: "198.18.0.2".parse().unwrap(),
                authz,
                audit_session_id: t.new_audit_session_id(),
            },
            Instant::now(),
        )
        .expect("login")
    }

    #[test]
    fn the_cluster_address_is_used_and_the_record_carries_what_a_takeover_needs() {
        let (a, cfg) = table();
        let (index, cookie) = login(&a, &cfg);
        let plan = a.connect_plan(&cookie).expect("plan");
        assert_eq!((plan.fence, plan.has_v4), (0, false));
        assert_eq!(plan.pools, vec!["P".to_string()]);
        let ip: Ipv4Addr = "198.18.100.15".parse().unwrap();
        assert!(a.assign_v4(index, ip, "P"));
        a.set_cluster_owner(index, 1);
        let att = a
            .attach(&cookie, "198.18.0.2".parse().unwrap(), None, false)
            .unwrap();
        assert_eq!(att.address, ip, "attach keeps the cluster's address");
        att.stats.bytes_tx.store(500, Ordering::Relaxed);
        let owned = a.owned_sessions("A");
        assert_eq!(owned.len(), 1);
        let rec = &owned[0].record;
        assert_eq!(rec.v4, Some((ip, "P".into())));
        assert_eq!((rec.sgt, rec.filter.as_deref()), (Some(10), Some("F")));
        assert!(rec.acct_start_unix.is_some());
        assert_eq!(rec.counters[0], 500);
        assert_eq!(owned[0].addr_keys, vec![keys::addr4("P", ip)]);
        assert_eq!(owned[0].sid, plan.sid);

        // Node B adopts it: same address, SGT, filter, accounting session, no Start.
        let (b, _) = table();
        let (tx, mut rx) = mpsc::unbounded_channel();
        b.set_cluster(tx);
        let (atx, mut arx) = mpsc::unbounded_channel();
        b.set_accounting(atx, Ipv4Addr::LOCALHOST);
        let bi = b
            .adopt(
                &cookie,
                rec,
                cfg.effective_policy("GP"),
                vec!["P".into()],
                2,
                Instant::now(),
            )
            .unwrap();
        assert_eq!(
            rx.try_recv().ok(),
            Some(ClusterEvent::Serve {
                addr: ip,
                takeover: true
            }),
            "an adopted session's address is announced as a takeover"
        );
        let att = b
            .attach(&cookie, "198.18.0.2".parse().unwrap(), Some(ip), false)
            .unwrap();
        assert_eq!(att.address, ip);
        assert_eq!(att.filter.sgt(), Some(10));
        assert!(arx.try_recv().is_err(), "no second Start after a takeover");
        assert_eq!(b.pool_usage("P").map(|u| u.4), Some(1));
        let view = &b.list(Instant::now())[0];
        assert_eq!(view.bytes_tx, 500, "counters continue from the checkpoint");
        // It ends on B: one Stop with the same Acct-Session-Id, and the cluster
        // frees the address.
        b.detach(
            bi,
            att.generation,
            Detach::End(crate::sessions::EndReason::AdminLogoff),
            Instant::now(),
        );
        let stop = arx.try_recv().expect("Stop");
        assert_eq!(stop.status, auth::radius::AcctStatusType::Stop);
        assert_eq!(stop.acct_session_id, rec.acct_session_id);
        match rx.try_recv() {
            Ok(ClusterEvent::Ended {
                sid,
                fence,
                addr_keys,
                ..
            }) => {
                assert_eq!((sid, fence), (plan.sid.clone(), 2));
                assert_eq!(addr_keys, vec![keys::addr4("P", ip)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rx.try_recv().ok(), Some(ClusterEvent::Unserve(ip)));
        assert_eq!(b.pool_usage("P").map(|u| u.4), Some(0));
    }

    #[test]
    fn a_session_taken_over_elsewhere_is_dropped_without_a_stop() {
        let (a, cfg) = table();
        let (atx, mut arx) = mpsc::unbounded_channel();
        a.set_accounting(atx, Ipv4Addr::LOCALHOST);
        let (tx, mut rx) = mpsc::unbounded_channel();
        a.set_cluster(tx);
        let (index, cookie) = login(&a, &cfg);
        let ip: Ipv4Addr = "198.18.100.12".parse().unwrap();
        assert!(a.assign_v4(index, ip, "P"));
        a.set_cluster_owner(index, 1);
        let mut att = a
            .attach(&cookie, "198.18.0.2".parse().unwrap(), None, false)
            .unwrap();
        assert!(arx.try_recv().is_ok(), "Start");
        assert_eq!(
            rx.try_recv().ok(),
            Some(ClusterEvent::Serve {
                addr: ip,
                takeover: false
            }),
            "a new login's address is no takeover"
        );
        assert!(a.drop_taken_over(index));
        assert_eq!(
            att.control.try_recv().ok(),
            Some(crate::sessions::SessionCommand::Superseded)
        );
        assert!(arx.try_recv().is_err(), "no Stop from the old owner");
        assert_eq!(rx.try_recv().ok(), Some(ClusterEvent::Unserve(ip)));
        assert!(a.is_empty());
        assert_eq!(a.pool_usage("P").map(|u| u.4), Some(0));
        assert!(a.connect_plan(&cookie).is_none());
        assert!(!a.drop_taken_over(index));
    }

    #[test]
    fn an_address_in_use_here_is_not_assigned_twice() {
        let (a, cfg) = table();
        let (i1, _) = login(&a, &cfg);
        let (i2, _) = login(&a, &cfg);
        let ip: Ipv4Addr = "198.18.100.11".parse().unwrap();
        assert!(a.assign_v4(i1, ip, "P"));
        assert!(!a.assign_v4(i2, ip, "P"));
        // Outside every pool (a Framed-IP-Address): a host address.
        let other: Ipv4Addr = "198.18.200.1".parse().unwrap();
        assert!(a.assign_v4(i2, other, ""));
        assert_eq!(a.pool_of(ip).as_deref(), Some("P"));
        assert_eq!(a.pool_of(other), None);
    }
}

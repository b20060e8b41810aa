//! Per-session enforcement of the vpn-filter (or RADIUS Filter-Id) ACL in the
//! batch path, both directions, as ASA applies vpn-filter.
//!
//! A session's filter and SGT live in a [`SessionFilter`] that CoA can change
//! at any time (atomics and an `ArcSwapOption`); the compiled ACLs and the
//! IP-to-SGT map are read once per batch from the published
//! [`PolicyHandle`](crate::policy::PolicyHandle). Nothing here allocates, locks
//! or makes a syscall per packet: [`Enforcer`] keeps its scratch arrays.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwapOption;

use crate::hitlog::{HitLog, Report};
use crate::policy::{Direction, PacketMeta, PolicyHandle, Verdict};

const NO_SGT: u32 = u32::MAX;

/// Flows per session and direction whose 106100 hits are aggregated; ASA's
/// `access-list deny-flow-max` is 4096 for the whole box.
const MAX_LOG_FLOWS: usize = 1024;

/// A 106100 flow: ACL, rule, action, protocol, addresses and ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogFlow {
    acl: Arc<String>,
    rule: u32,
    permitted: bool,
    to_client: bool,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
}

/// What the dataplane enforces for one session; shared with the control plane.
#[derive(Debug)]
pub struct SessionFilter {
    sgt: AtomicU32,
    acl: ArcSwapOption<String>,
    /// Packets dropped by the filter, from and to the client.
    pub denied_from_client: AtomicU64,
    pub denied_to_client: AtomicU64,
}

impl SessionFilter {
    pub fn new(sgt: Option<u16>, acl: Option<String>) -> Self {
        Self {
            sgt: AtomicU32::new(sgt.map_or(NO_SGT, u32::from)),
            acl: ArcSwapOption::from(acl.map(Arc::new)),
            denied_from_client: AtomicU64::new(0),
            denied_to_client: AtomicU64::new(0),
        }
    }

    pub fn sgt(&self) -> Option<u16> {
        u16::try_from(self.sgt.load(Ordering::Relaxed)).ok()
    }

    pub fn set_sgt(&self, sgt: Option<u16>) {
        self.sgt
            .store(sgt.map_or(NO_SGT, u32::from), Ordering::Relaxed);
    }

    pub fn acl(&self) -> Option<Arc<String>> {
        self.acl.load_full()
    }

    pub fn set_acl(&self, acl: Option<String>) {
        self.acl.store(acl.map(Arc::new));
    }
}

/// Scratch space for classifying one batch.
#[derive(Debug)]
pub struct Enforcer {
    policy: Arc<PolicyHandle>,
    filter: Arc<SessionFilter>,
    metas: Vec<PacketMeta>,
    parsed: Vec<bool>,
    verdicts: Vec<Verdict>,
    keep: Vec<bool>,
    hits: HitLog<LogFlow>,
    reports: Vec<Report<LogFlow>>,
    /// What [`Enforcer::emit_reports`] sent: (level, hits, interval, text).
    #[cfg(test)]
    sent: Vec<(u8, u64, Option<u16>, String)>,
    /// Who the session is, for log lines.
    pub label: String,
}

impl Enforcer {
    pub fn new(policy: Arc<PolicyHandle>, filter: Arc<SessionFilter>, label: String) -> Self {
        Self {
            policy,
            filter,
            // Grown by the first batch, freed again when the session idles
            // (`release_buffers`): nothing per session while idle (issue 12).
            metas: Vec::new(),
            parsed: Vec::new(),
            verdicts: Vec::new(),
            keep: Vec::new(),
            hits: HitLog::new(MAX_LOG_FLOWS),
            reports: Vec::new(),
            #[cfg(test)]
            sent: Vec::new(),
            label,
        }
    }

    /// Frees the per-batch scratch space (an idle session holds none).
    pub fn release_buffers(&mut self) {
        self.metas = Vec::new();
        self.parsed = Vec::new();
        self.verdicts = Vec::new();
        self.keep = Vec::new();
    }

    pub fn filter(&self) -> &Arc<SessionFilter> {
        &self.filter
    }

    /// Decides each packet of a batch; returns one keep flag per packet, in
    /// order. Without a filter ACL everything passes (ASA without vpn-filter).
    /// Packets that are not IP are dropped when a filter is set.
    pub fn decide<'a>(
        &mut self,
        packets: impl Iterator<Item = &'a [u8]>,
        direction: Direction,
    ) -> &[bool] {
        self.metas.clear();
        self.parsed.clear();
        for p in packets {
            match PacketMeta::parse(p) {
                Some(m) => {
                    self.metas.push(m);
                    self.parsed.push(true);
                }
                None => {
                    self.metas.push(PacketMeta::default());
                    self.parsed.push(false);
                }
            }
        }
        let n = self.metas.len();
        self.keep.clear();
        let Some(acl_name) = self.filter.acl.load().as_ref().map(Arc::clone) else {
            self.keep.resize(n, true);
            return &self.keep;
        };
        let tables = self.policy.load();
        let Some(acl) = tables.acl(&acl_name) else {
            // A filter naming no ACL is refused at login and by CoA; if a
            // reload removed it, fail closed.
            self.keep.resize(n, false);
            self.count_denied(direction, n as u64);
            return &self.keep;
        };
        self.verdicts.clear();
        self.verdicts.resize(n, Verdict::implicit_deny());
        acl.classify_batch(
            &self.metas,
            direction,
            self.filter.sgt(),
            tables.sgts(),
            &mut self.verdicts,
        );
        let mut denied = 0u64;
        let mut now = None;
        for i in 0..n {
            let ok = self.parsed[i] && self.verdicts[i].is_permit();
            if !ok {
                denied += 1;
            }
            // Only matches of `log` rules touch the 106100 table.
            if self.verdicts[i].log {
                let t = *now.get_or_insert_with(Instant::now);
                self.note_hit(&acl_name, acl.rules(), direction, i, t);
            }
            self.keep.push(ok);
        }
        self.count_denied(direction, denied);
        if !self.hits.is_empty() {
            let t = now.unwrap_or_else(Instant::now);
            self.hits.due(t, &mut self.reports);
        }
        self.emit_reports();
        &self.keep
    }

    fn count_denied(&self, direction: Direction, n: u64) {
        if n == 0 {
            return;
        }
        let c = match direction {
            Direction::FromClient => &self.filter.denied_from_client,
            Direction::ToClient => &self.filter.denied_to_client,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one `log` rule match; a new flow's first hit is reported now.
    fn note_hit(
        &mut self,
        acl: &Arc<String>,
        rules: &[crate::policy::Rule],
        direction: Direction,
        i: usize,
        now: Instant,
    ) {
        let (Some(m), Some(v)) = (self.metas.get(i), self.verdicts.get(i)) else {
            return;
        };
        let (level, interval) = usize::try_from(v.rule)
            .ok()
            .and_then(|r| rules.get(r))
            .map_or((6, 300), |r| (r.log_level, r.log_interval));
        let key = LogFlow {
            acl: Arc::clone(acl),
            rule: v.rule,
            permitted: v.is_permit(),
            to_client: direction == Direction::ToClient,
            proto: m.proto(),
            src: m.src(),
            dst: m.dst(),
            ports: m.ports(),
        };
        let overflow = self.hits.overflow();
        if let Some(r) = self.hits.hit(&key, level, interval, now) {
            self.reports.push(r);
        } else if self.hits.overflow() != overflow && self.hits.overflow().is_power_of_two() {
            // Hits of new flows past the cap go unlogged; say so, sparingly.
            tracing::warn!(
                session = %self.label,
                "106100 flow table full ({MAX_LOG_FLOWS} flows): {} hits of new flows not logged",
                self.hits.overflow()
            );
        }
    }

    /// 106100 reports as `tracing` events of this module's target, in ASA's
    /// words, with the ACE's level, the hit count and the interval as fields
    /// (`interval = 0` for a first hit); the headend's syslog bridge makes them
    /// 106100 messages.
    fn emit_reports(&mut self) {
        for r in self.reports.drain(..) {
            let k = &r.key;
            let ports = k
                .ports
                .map(|(s, d)| (format!("({s})"), format!("({d})")))
                .unwrap_or_default();
            let text = format!(
                "access-list {} {} {} {}{} -> {}{} ({}, rule {})",
                k.acl,
                if k.permitted { "permitted" } else { "denied" },
                proto_name(k.proto),
                k.src,
                ports.0,
                k.dst,
                ports.1,
                if k.to_client {
                    "ToClient"
                } else {
                    "FromClient"
                },
                if k.rule == Verdict::IMPLICIT_DENY {
                    "implicit deny".to_string()
                } else {
                    (k.rule + 1).to_string()
                },
            );
            tracing::info!(
                session = %self.label,
                level = u64::from(r.level),
                hits = r.hits,
                interval = u64::from(r.interval.unwrap_or(0)),
                "{text}"
            );
            #[cfg(test)]
            self.sent.push((r.level, r.hits, r.interval, text));
        }
    }

    /// Reports the counts not yet reported (the session ends).
    pub fn flush(&mut self) {
        self.hits.drain(&mut self.reports);
        self.emit_reports();
    }
}

impl Drop for Enforcer {
    /// The session is gone: counts not yet reported are logged now.
    fn drop(&mut self) {
        self.flush();
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmp6".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::policy::{CompiledAcl, PolicyTables, PortMatch, Rule, SgtMap};

    /// IPv4 TCP from 198.18.100.10:40000 to 198.18.1.5:`dport`.
    fn tcp(dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 18, 100, 10]);
        p[16..20].copy_from_slice(&[198, 18, 1, 5]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn only_log_rules_feed_106100_at_their_level() {
        let acl = CompiledAcl::new(vec![
            Rule::deny()
                .protocol(6)
                .dst_port(PortMatch::Eq(22))
                .log_at(4, 60),
            Rule::permit(),
        ])
        .unwrap();
        let tables = PolicyTables::new(
            HashMap::from([("F".to_string(), Arc::new(acl))]),
            SgtMap::default(),
        );
        let filter = Arc::new(SessionFilter::new(None, Some("F".into())));
        let mut e = Enforcer::new(Arc::new(PolicyHandle::new(tables)), filter, "alice".into());
        let pkts = [tcp(22), tcp(22), tcp(443)];
        let keep = e.decide(pkts.iter().map(Vec::as_slice), Direction::FromClient);
        assert_eq!(keep, [false, false, true]);
        let line =
            "access-list F denied tcp 198.18.100.10(40000) -> 198.18.1.5(22) (FromClient, rule 1)";
        // The first hit at once, at the ACE's level; the permit (no log) is
        // not in the table.
        assert_eq!(e.sent, [(4, 1, None, line.to_string())]);
        assert_eq!(e.hits.len(), 1);
        e.decide(pkts[..1].iter().map(Vec::as_slice), Direction::FromClient);
        assert_eq!(e.sent.len(), 1);
        // Session end: the two further hits, with the ACE's interval.
        e.flush();
        assert_eq!(e.sent[1], (4, 2, Some(60), line.to_string()));
        assert!(e.hits.is_empty());
    }
}

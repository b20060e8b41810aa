//! Per-session enforcement of the vpn-filter (or RADIUS Filter-Id) ACL in the
//! batch path, both directions, as ASA applies vpn-filter.
//!
//! A session's filter and SGT live in a [`SessionFilter`] that CoA can change
//! at any time (atomics and an `ArcSwapOption`); the compiled ACLs and the
//! IP-to-SGT map are read once per batch from the published
//! [`PolicyHandle`](crate::policy::PolicyHandle). Nothing here allocates, locks
//! or makes a syscall per packet: [`Enforcer`] keeps its scratch arrays.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::policy::{Direction, PacketMeta, PolicyHandle, Verdict};

const NO_SGT: u32 = u32::MAX;

/// How often a session may log `log` rule matches.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

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
    last_log: Option<Instant>,
    /// Who the session is, for log lines.
    pub label: String,
}

impl Enforcer {
    pub fn new(policy: Arc<PolicyHandle>, filter: Arc<SessionFilter>, label: String) -> Self {
        Self {
            policy,
            filter,
            metas: Vec::with_capacity(crate::batch::BATCH_PACKETS),
            parsed: Vec::with_capacity(crate::batch::BATCH_PACKETS),
            verdicts: Vec::with_capacity(crate::batch::BATCH_PACKETS),
            keep: Vec::with_capacity(crate::batch::BATCH_PACKETS),
            last_log: None,
            label,
        }
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
        let mut logged = None;
        for i in 0..n {
            let ok = self.parsed[i] && self.verdicts[i].is_permit();
            if !ok {
                denied += 1;
            }
            if self.verdicts[i].log && logged.is_none() {
                logged = Some(i);
            }
            self.keep.push(ok);
        }
        self.count_denied(direction, denied);
        if let Some(i) = logged {
            self.log_match(&acl_name, direction, i);
        }
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

    /// At most one line per second per session for `log` rules, in ASA's words.
    fn log_match(&mut self, acl: &str, direction: Direction, i: usize) {
        let now = Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL)
        {
            return;
        }
        self.last_log = Some(now);
        let (Some(m), Some(v)) = (self.metas.get(i), self.verdicts.get(i)) else {
            return;
        };
        let ports = m
            .ports()
            .map(|(s, d)| (format!("({s})"), format!("({d})")))
            .unwrap_or_default();
        tracing::info!(
            session = %self.label,
            "access-list {acl} {} {} {}{} -> {}{} ({direction:?}, rule {})",
            if v.is_permit() { "permitted" } else { "denied" },
            proto_name(m.proto()),
            m.src(),
            ports.0,
            m.dst(),
            ports.1,
            if v.rule == Verdict::IMPLICIT_DENY { "implicit deny".to_string() } else { (v.rule + 1).to_string() },
        );
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

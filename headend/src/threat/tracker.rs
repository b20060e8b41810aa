//! Remote-access threat detection (ASA 9.20+, asa-syntax.md section 4), sans-IO:
//! events and `Instant`s in, shun decisions out. The caller logs and enforces.
//!
//! Each counted service keeps, per source address, the times of its recent
//! events (at most `threshold` of them, since reaching the threshold shuns the
//! source and drops its record). A source reaching `threshold` events within
//! `hold-down` minutes is shunned until an administrator removes it (`no shun
//! IP`, `clear shun`), as on ASA. Memory is bounded: at most `max_sources`
//! tracked sources (the oldest tracked record makes room for a new one) and at
//! most `max_shuns` shuns.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{ServiceLimit, ThreatDetection};

/// Sources with a live record; 64 Ki records of ~200 bytes are ~13 MB at most.
pub const DEFAULT_MAX_SOURCES: usize = 65_536;
/// Shuns stay until removed by hand, so they get a cap of their own.
pub const DEFAULT_MAX_SHUNS: usize = 65_536;

/// The three services, named as the ASA CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    InvalidVpnAccess,
    RemoteAccessAuthentication,
    RemoteAccessClientInitiations,
}

impl Service {
    pub const ALL: [Service; 3] = [
        Service::InvalidVpnAccess,
        Service::RemoteAccessAuthentication,
        Service::RemoteAccessClientInitiations,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::InvalidVpnAccess => "invalid-vpn-access",
            Service::RemoteAccessAuthentication => "remote-access-authentication",
            Service::RemoteAccessClientInitiations => "remote-access-client-initiations",
        }
    }

    pub fn from_name(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Index into the per-source event windows (counted services only).
    fn window(self) -> Option<usize> {
        match self {
            Service::InvalidVpnAccess => None,
            Service::RemoteAccessAuthentication => Some(0),
            Service::RemoteAccessClientInitiations => Some(1),
        }
    }
}

/// What happened at a source, as the login code reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreatEvent {
    /// A failed SAML, RADIUS or local login.
    AuthenticationFailed,
    /// A new login started (the first, form-less request of the exchange).
    ClientInitiation,
    /// A login to a tunnel group that does not exist or is disabled.
    InvalidVpnAccess,
}

/// A source the tracker just shunned: the caller logs 733201 and enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShunAdded {
    pub source: IpAddr,
    pub service: Service,
    /// The threshold that was exceeded (1 for invalid-vpn-access).
    pub threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shun {
    pub service: Service,
    pub since: Instant,
}

#[derive(Debug, Default)]
struct SourceRecord {
    /// Event times per counted service, oldest first, at most `threshold` long.
    events: [VecDeque<Instant>; 2],
    /// Matches the `order` entry that is this record's.
    seq: u64,
}

/// `show threat-detection service` statistics of one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Events counted since start or `clear threat-detection service`.
    pub failed: u64,
    /// Sources this service shunned.
    pub blocking: u64,
}

/// One row of `show threat-detection service NAME entries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub source: IpAddr,
    pub count: usize,
    /// Since the first event still in the window.
    pub age: Duration,
    /// Until the oldest event leaves the window.
    pub hold_down_left: Duration,
}

#[derive(Debug)]
pub struct ThreatTracker {
    cfg: ThreatDetection,
    sources: HashMap<IpAddr, SourceRecord>,
    /// Records by age (source, seq) for eviction; stale pairs are skipped.
    order: VecDeque<(IpAddr, u64)>,
    next_seq: u64,
    shuns: BTreeMap<IpAddr, Shun>,
    stats: BTreeMap<Service, ServiceStats>,
    max_sources: usize,
    max_shuns: usize,
    /// Shuns not added because `max_shuns` was reached.
    pub shuns_refused: u64,
}

impl ThreatTracker {
    pub fn new(cfg: ThreatDetection) -> Self {
        Self::with_limits(cfg, DEFAULT_MAX_SOURCES, DEFAULT_MAX_SHUNS)
    }

    pub fn with_limits(cfg: ThreatDetection, max_sources: usize, max_shuns: usize) -> Self {
        ThreatTracker {
            cfg,
            sources: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            shuns: BTreeMap::new(),
            stats: BTreeMap::new(),
            max_sources: max_sources.max(1),
            max_shuns,
            shuns_refused: 0,
        }
    }

    /// A reload: new thresholds and windows apply from the next event; the
    /// sources' recent events, the shuns in force and the counters stay.
    pub fn set_config(&mut self, cfg: ThreatDetection) {
        self.cfg = cfg;
    }

    pub fn config(&self) -> &ThreatDetection {
        &self.cfg
    }

    fn limit(&self, s: Service) -> Option<ServiceLimit> {
        match s {
            Service::InvalidVpnAccess => None,
            Service::RemoteAccessAuthentication => self.cfg.authentication,
            Service::RemoteAccessClientInitiations => self.cfg.client_initiations,
        }
    }

    pub fn enabled(&self, s: Service) -> bool {
        match s {
            Service::InvalidVpnAccess => self.cfg.invalid_vpn_access,
            _ => self.limit(s).is_some(),
        }
    }

    pub fn is_shunned(&self, ip: IpAddr) -> bool {
        self.shuns.contains_key(&ip)
    }

    pub fn shuns(&self) -> impl Iterator<Item = (&IpAddr, &Shun)> {
        self.shuns.iter()
    }

    pub fn shun_count(&self) -> usize {
        self.shuns.len()
    }

    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    pub fn stats(&self, s: Service) -> ServiceStats {
        self.stats.get(&s).copied().unwrap_or_default()
    }

    /// Counts `event` from `source`; returns the shun it causes, if any.
    pub fn record(
        &mut self,
        event: ThreatEvent,
        source: IpAddr,
        now: Instant,
    ) -> Option<ShunAdded> {
        if self.is_shunned(source) {
            return None;
        }
        let service = match event {
            // Without invalid-vpn-access, a login to a missing or disabled
            // group is still a failed login (issue 17).
            ThreatEvent::InvalidVpnAccess if self.cfg.invalid_vpn_access => {
                self.stats
                    .entry(Service::InvalidVpnAccess)
                    .or_default()
                    .failed += 1;
                return self.add_shun(source, Service::InvalidVpnAccess, 1, now);
            }
            ThreatEvent::InvalidVpnAccess | ThreatEvent::AuthenticationFailed => {
                Service::RemoteAccessAuthentication
            }
            ThreatEvent::ClientInitiation => Service::RemoteAccessClientInitiations,
        };
        let (limit, w) = (self.limit(service)?, service.window()?);
        self.stats.entry(service).or_default().failed += 1;
        let window = hold_down(limit);
        let rec = self.record_for(source);
        let events = &mut rec.events[w];
        while events
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            events.pop_front();
        }
        events.push_back(now);
        if events.len() < limit.threshold as usize {
            return None;
        }
        self.sources.remove(&source);
        self.add_shun(source, service, limit.threshold, now)
    }

    /// A login from `source` succeeded: its unfinished initiations are finished.
    pub fn login_succeeded(&mut self, source: IpAddr) {
        if let Some(rec) = self.sources.get_mut(&source) {
            rec.events[1].clear();
            if rec.events.iter().all(VecDeque::is_empty) {
                self.sources.remove(&source);
            }
        }
    }

    fn record_for(&mut self, source: IpAddr) -> &mut SourceRecord {
        if !self.sources.contains_key(&source) {
            while self.sources.len() >= self.max_sources {
                let Some((old, seq)) = self.order.pop_front() else {
                    break;
                };
                if self.sources.get(&old).is_some_and(|r| r.seq == seq) {
                    self.sources.remove(&old);
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.push_back((source, seq));
            // Removed records leave stale pairs behind: compact now and then so
            // `order` stays within twice the record cap.
            if self.order.len() > 2 * self.max_sources {
                let sources = &self.sources;
                self.order
                    .retain(|(ip, s)| sources.get(ip).is_some_and(|r| r.seq == *s) || *s == seq);
            }
            self.sources.insert(
                source,
                SourceRecord {
                    seq,
                    ..SourceRecord::default()
                },
            );
        }
        self.sources.entry(source).or_default()
    }

    fn add_shun(
        &mut self,
        source: IpAddr,
        service: Service,
        threshold: u32,
        now: Instant,
    ) -> Option<ShunAdded> {
        if self.shuns.len() >= self.max_shuns {
            self.shuns_refused += 1;
            return None;
        }
        self.shuns.insert(
            source,
            Shun {
                service,
                since: now,
            },
        );
        self.stats.entry(service).or_default().blocking += 1;
        Some(ShunAdded {
            source,
            service,
            threshold,
        })
    }

    /// `no shun IP`: whether there was one.
    pub fn remove_shun(&mut self, ip: IpAddr) -> bool {
        self.shuns.remove(&ip).is_some()
    }

    /// `clear shun`: the removed addresses.
    pub fn clear_shuns(&mut self) -> Vec<IpAddr> {
        std::mem::take(&mut self.shuns).into_keys().collect()
    }

    /// `clear threat-detection service [NAME]`: forgets the counted events and
    /// statistics (of one service); shuns stay (ASA removes them with `clear shun`).
    pub fn clear_service(&mut self, service: Option<Service>) {
        match service {
            None => {
                self.sources.clear();
                self.order.clear();
                self.stats.clear();
            }
            Some(s) => {
                if let Some(w) = s.window() {
                    for rec in self.sources.values_mut() {
                        rec.events[w].clear();
                    }
                    self.sources
                        .retain(|_, r| r.events.iter().any(|e| !e.is_empty()));
                }
                self.stats.remove(&s);
            }
        }
    }

    /// The sources with events of `service` in its window, oldest first.
    pub fn entries(&self, service: Service, now: Instant) -> Vec<Entry> {
        let (Some(limit), Some(w)) = (self.limit(service), service.window()) else {
            return Vec::new();
        };
        let window = hold_down(limit);
        let mut out: Vec<Entry> = self
            .sources
            .iter()
            .filter_map(|(ip, r)| {
                let live: Vec<&Instant> = r.events[w]
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) < window)
                    .collect();
                let first = **live.first()?;
                Some(Entry {
                    source: *ip,
                    count: live.len(),
                    age: now.saturating_duration_since(first),
                    hold_down_left: window.saturating_sub(now.saturating_duration_since(first)),
                })
            })
            .collect();
        out.sort_by(|a, b| b.age.cmp(&a.age).then(a.source.cmp(&b.source)));
        out
    }
}

fn hold_down(l: ServiceLimit) -> Duration {
    Duration::from_secs(u64::from(l.hold_down_minutes) * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, n])
    }

    fn cfg(threshold: u32, minutes: u32) -> ThreatDetection {
        ThreatDetection {
            authentication: Some(ServiceLimit {
                hold_down_minutes: minutes,
                threshold,
                line: 1,
            }),
            client_initiations: Some(ServiceLimit {
                hold_down_minutes: minutes,
                threshold: threshold * 2,
                line: 2,
            }),
            invalid_vpn_access: false,
        }
    }

    #[test]
    fn a_reload_applies_the_new_threshold_to_the_events_already_seen() {
        let mut t = ThreatTracker::new(cfg(5, 10));
        let t0 = Instant::now();
        assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(2), t0), None);
        assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(2), t0), None);
        assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(4), t0), None);
        // Threshold 5 -> 3: ip(2)'s third failure shuns it.
        t.set_config(cfg(3, 10));
        let shun = t.record(ThreatEvent::AuthenticationFailed, ip(2), t0);
        assert_eq!(shun.map(|s| s.threshold), Some(3));
        assert!(t.is_shunned(ip(2)));
        assert_eq!(t.stats(Service::RemoteAccessAuthentication).failed, 4);
        // Turned off: no more shuns, the one in force stays.
        t.set_config(ThreatDetection::default());
        for _ in 0..5 {
            assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(4), t0), None);
        }
        assert!(!t.is_shunned(ip(4)));
        assert!(t.is_shunned(ip(2)));
    }

    #[test]
    fn threshold_within_hold_down_shuns_only_that_source() {
        let mut t = ThreatTracker::new(cfg(3, 10));
        let t0 = Instant::now();
        assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(2), t0), None);
        assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(3), t0), None);
        assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(2), t0), None);
        assert!(!t.is_shunned(ip(2)));
        let shun = t.record(
            ThreatEvent::AuthenticationFailed,
            ip(2),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(
            shun,
            Some(ShunAdded {
                source: ip(2),
                service: Service::RemoteAccessAuthentication,
                threshold: 3
            })
        );
        assert!(t.is_shunned(ip(2)));
        assert!(!t.is_shunned(ip(3)));
        // Shunned: further events change nothing and shun nothing again.
        assert_eq!(t.record(ThreatEvent::AuthenticationFailed, ip(2), t0), None);
        let s = t.stats(Service::RemoteAccessAuthentication);
        assert_eq!((s.failed, s.blocking), (4, 1));
    }

    #[test]
    fn events_older_than_hold_down_do_not_count() {
        let mut t = ThreatTracker::new(cfg(3, 1));
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        t.record(ThreatEvent::AuthenticationFailed, ip(2), t0);
        t.record(
            ThreatEvent::AuthenticationFailed,
            ip(2),
            t0 + Duration::from_secs(30),
        );
        // The first has left the 1-minute window: two in the window, not three.
        assert_eq!(
            t.record(ThreatEvent::AuthenticationFailed, ip(2), t0 + minute),
            None
        );
        assert!(!t.is_shunned(ip(2)));
        assert!(
            t.record(
                ThreatEvent::AuthenticationFailed,
                ip(2),
                t0 + minute + Duration::from_secs(1)
            )
            .is_some()
        );
    }

    #[test]
    fn shun_lasts_until_removed() {
        let mut t = ThreatTracker::new(cfg(1, 1));
        let t0 = Instant::now();
        assert!(
            t.record(ThreatEvent::AuthenticationFailed, ip(2), t0)
                .is_some()
        );
        assert!(
            t.record(ThreatEvent::AuthenticationFailed, ip(3), t0)
                .is_some()
        );
        assert!(t.is_shunned(ip(2)), "a shun does not expire by itself");
        assert!(t.remove_shun(ip(2)));
        assert!(!t.remove_shun(ip(2)));
        assert!(!t.is_shunned(ip(2)));
        assert_eq!(t.clear_shuns(), vec![ip(3)]);
        assert_eq!(t.shun_count(), 0);
        // The record was dropped with the shun: counting starts again.
        assert!(
            t.record(ThreatEvent::AuthenticationFailed, ip(2), t0)
                .is_some()
        );
    }

    #[test]
    fn disabled_services_count_nothing() {
        let mut t = ThreatTracker::new(ThreatDetection::default());
        let t0 = Instant::now();
        for _ in 0..1000 {
            for e in [
                ThreatEvent::AuthenticationFailed,
                ThreatEvent::ClientInitiation,
                ThreatEvent::InvalidVpnAccess,
            ] {
                assert_eq!(t.record(e, ip(2), t0), None);
            }
        }
        assert_eq!(t.tracked_sources(), 0);
    }

    #[test]
    fn invalid_vpn_access_shuns_at_once_or_counts_as_a_failed_login() {
        let mut t = ThreatTracker::new(ThreatDetection {
            invalid_vpn_access: true,
            ..ThreatDetection::default()
        });
        let t0 = Instant::now();
        let s = t.record(ThreatEvent::InvalidVpnAccess, ip(2), t0).unwrap();
        assert_eq!((s.service, s.threshold), (Service::InvalidVpnAccess, 1));
        let mut t = ThreatTracker::new(cfg(2, 10));
        assert_eq!(t.record(ThreatEvent::InvalidVpnAccess, ip(2), t0), None);
        let s = t
            .record(ThreatEvent::AuthenticationFailed, ip(2), t0)
            .unwrap();
        assert_eq!(s.service, Service::RemoteAccessAuthentication);
    }

    #[test]
    fn a_successful_login_finishes_initiations() {
        let mut t = ThreatTracker::new(cfg(2, 10)); // initiations threshold 4
        let t0 = Instant::now();
        for _ in 0..10 {
            for _ in 0..3 {
                assert_eq!(t.record(ThreatEvent::ClientInitiation, ip(2), t0), None);
            }
            t.login_succeeded(ip(2));
        }
        assert_eq!(t.tracked_sources(), 0);
        for _ in 0..3 {
            t.record(ThreatEvent::ClientInitiation, ip(2), t0);
        }
        let s = t.record(ThreatEvent::ClientInitiation, ip(2), t0).unwrap();
        assert_eq!(
            (s.service, s.threshold),
            (Service::RemoteAccessClientInitiations, 4)
        );
    }

    #[test]
    fn memory_is_bounded_against_many_sources() {
        let mut t = ThreatTracker::with_limits(cfg(3, 10), 100, 10);
        let t0 = Instant::now();
        for n in 0u32..10_000 {
            let src = IpAddr::from(std::net::Ipv4Addr::from(0xC612_0000 | n));
            t.record(ThreatEvent::AuthenticationFailed, src, t0);
            t.login_succeeded(src); // leaves auth events: the record stays
            assert!(t.tracked_sources() <= 100);
            assert!(t.order.len() <= 200 + 1, "order grew to {}", t.order.len());
        }
        // The newest sources are the ones still tracked.
        let newest = IpAddr::from(std::net::Ipv4Addr::from(0xC612_0000 | 9_999));
        assert_eq!(
            t.entries(Service::RemoteAccessAuthentication, t0).len(),
            100
        );
        assert!(t.sources.contains_key(&newest));
        // Shuns are capped too.
        let mut t = ThreatTracker::with_limits(cfg(1, 10), 100, 10);
        for n in 0u8..50 {
            t.record(ThreatEvent::AuthenticationFailed, ip(n), t0);
        }
        assert_eq!((t.shun_count(), t.shuns_refused), (10, 40));
    }

    #[test]
    fn entries_and_clear_service() {
        let mut t = ThreatTracker::new(cfg(5, 10));
        let t0 = Instant::now();
        t.record(ThreatEvent::AuthenticationFailed, ip(2), t0);
        t.record(
            ThreatEvent::AuthenticationFailed,
            ip(2),
            t0 + Duration::from_secs(60),
        );
        t.record(
            ThreatEvent::AuthenticationFailed,
            ip(3),
            t0 + Duration::from_secs(120),
        );
        t.record(
            ThreatEvent::ClientInitiation,
            ip(3),
            t0 + Duration::from_secs(120),
        );
        let now = t0 + Duration::from_secs(180);
        let e = t.entries(Service::RemoteAccessAuthentication, now);
        assert_eq!(
            e,
            vec![
                Entry {
                    source: ip(2),
                    count: 2,
                    age: Duration::from_secs(180),
                    hold_down_left: Duration::from_secs(420)
                },
                Entry {
                    source: ip(3),
                    count: 1,
                    age: Duration::from_secs(60),
                    hold_down_left: Duration::from_secs(540)
                },
            ]
        );
        t.clear_service(Some(Service::RemoteAccessAuthentication));
        assert!(
            t.entries(Service::RemoteAccessAuthentication, now)
                .is_empty()
        );
        assert_eq!(
            t.entries(Service::RemoteAccessClientInitiations, now).len(),
            1
        );
        assert_eq!(
            t.stats(Service::RemoteAccessAuthentication),
            ServiceStats::default()
        );
        t.clear_service(None);
        assert_eq!(t.tracked_sources(), 0);
    }
}

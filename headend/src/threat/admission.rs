//! Per-source limits on connections that have not become a tunnel yet (issue 17),
//! so a few addresses cannot hold every connection slot of the listener.
//!
//! A TCP connection is *half-open* from accept until its TLS handshake ends, and
//! *unauthenticated* from accept until it carries the tunnel `CONNECT` (or
//! closes). A source over either limit gets its new connection closed at once,
//! before any TLS work. Connections that are tunnels are never counted, so a
//! flood from a source never cuts the sessions already up there (a NAT address
//! can have many users). Sans-IO counting in [`SourceAdmission`]; [`Admission`]
//! adds the lock and a ticket that gives the count back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Defaults: a TLS handshake needs one round trip, so even a busy NAT address
/// rarely has more than a few in flight; a login holds a connection for a few
/// requests. Generous enough for a NAT of a few hundred users logging in at once.
pub const DEFAULT_MAX_HALF_OPEN_PER_SOURCE: u32 = 64;
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    pub max_half_open: u32,
    pub max_unauthenticated: u32,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            max_half_open: DEFAULT_MAX_HALF_OPEN_PER_SOURCE,
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    half_open: u32,
    unauthenticated: u32,
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    HalfOpen,
    Unauthenticated,
}

/// Where a connection is in its life, for giving its count back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Handshake,
    Unauthenticated,
    Tunnel,
}

/// The counts per source. Memory: one entry per source with a live counted
/// connection, so bounded by the listener's connection cap.
#[derive(Debug, Default)]
pub struct SourceAdmission {
    limits: SourceLimits,
    sources: HashMap<IpAddr, Counts>,
}

impl SourceAdmission {
    pub fn new(limits: SourceLimits) -> Self {
        SourceAdmission {
            limits,
            sources: HashMap::new(),
        }
    }

    /// A new connection from `ip`: counted (half-open) or refused.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        let c = self.sources.entry(ip).or_default();
        let refusal = if c.half_open >= self.limits.max_half_open {
            Some(Refusal::HalfOpen)
        } else if c.unauthenticated >= self.limits.max_unauthenticated {
            Some(Refusal::Unauthenticated)
        } else {
            None
        };
        if let Some(r) = refusal {
            if *c == Counts::default() {
                self.sources.remove(&ip);
            }
            return Err(r);
        }
        c.half_open += 1;
        c.unauthenticated += 1;
        Ok(())
    }

    /// Moves a connection of `ip` from `from` to the next stage (or, with
    /// `to == None`, ends it).
    pub fn advance(&mut self, ip: IpAddr, from: Stage, to: Option<Stage>) {
        let Some(c) = self.sources.get_mut(&ip) else {
            return;
        };
        let was_unauth = matches!(from, Stage::Handshake | Stage::Unauthenticated);
        let stays_unauth = matches!(to, Some(Stage::Handshake | Stage::Unauthenticated));
        if from == Stage::Handshake && to != Some(Stage::Handshake) {
            c.half_open = c.half_open.saturating_sub(1);
        }
        if was_unauth && !stays_unauth {
            c.unauthenticated = c.unauthenticated.saturating_sub(1);
        }
        if *c == Counts::default() {
            self.sources.remove(&ip);
        }
    }

    /// (half-open, unauthenticated) of `ip`.
    pub fn counts(&self, ip: IpAddr) -> (u32, u32) {
        self.sources
            .get(&ip)
            .map(|c| (c.half_open, c.unauthenticated))
            .unwrap_or_default()
    }

    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }
}

/// [`SourceAdmission`] for the accept loop, with refusal counters.
#[derive(Debug, Default)]
pub struct Admission {
    inner: Mutex<SourceAdmission>,
    pub refused_half_open: AtomicU64,
    pub refused_unauthenticated: AtomicU64,
}

impl Admission {
    pub fn new(limits: SourceLimits) -> Arc<Self> {
        Arc::new(Admission {
            inner: Mutex::new(SourceAdmission::new(limits)),
            ..Admission::default()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceAdmission> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ticket for a new connection from `ip`, or the refusal (counted).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        match self.lock().admit(ip) {
            Ok(()) => Ok(Ticket {
                admission: self.clone(),
                ip,
                stage: Stage::Handshake,
            }),
            Err(r) => {
                let c = match r {
                    Refusal::HalfOpen => &self.refused_half_open,
                    Refusal::Unauthenticated => &self.refused_unauthenticated,
                };
                c.fetch_add(1, Ordering::Relaxed);
                Err(r)
            }
        }
    }

    pub fn counts(&self, ip: IpAddr) -> (u32, u32) {
        self.lock().counts(ip)
    }
}

/// One admitted connection; dropping it gives its counts back.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    stage: Stage,
}

impl Ticket {
    fn go(&mut self, to: Stage) {
        if self.stage != to {
            self.admission.lock().advance(self.ip, self.stage, Some(to));
            self.stage = to;
        }
    }

    /// The TLS handshake has ended.
    pub fn handshake_done(&mut self) {
        self.go(Stage::Unauthenticated);
    }

    /// The connection carries a tunnel (CONNECT with a session cookie).
    pub fn tunnel(&mut self) {
        self.go(Stage::Tunnel);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().advance(self.ip, self.stage, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, n])
    }

    #[test]
    fn half_open_limit_is_per_source() {
        let mut a = SourceAdmission::new(SourceLimits {
            max_half_open: 2,
            max_unauthenticated: 10,
        });
        assert_eq!(a.admit(ip(2)), Ok(()));
        assert_eq!(a.admit(ip(2)), Ok(()));
        assert_eq!(a.admit(ip(2)), Err(Refusal::HalfOpen));
        assert_eq!(a.admit(ip(3)), Ok(()), "another source is not affected");
        a.advance(ip(2), Stage::Handshake, Some(Stage::Unauthenticated));
        assert_eq!(a.counts(ip(2)), (1, 2));
        assert_eq!(a.admit(ip(2)), Ok(()));
    }

    #[test]
    fn unauthenticated_limit_and_tunnels_do_not_count() {
        let mut a = SourceAdmission::new(SourceLimits {
            max_half_open: 10,
            max_unauthenticated: 2,
        });
        for _ in 0..2 {
            a.admit(ip(2)).unwrap();
            a.advance(ip(2), Stage::Handshake, Some(Stage::Unauthenticated));
        }
        assert_eq!(a.admit(ip(2)), Err(Refusal::Unauthenticated));
        // One becomes a tunnel: room for one more login, and the tunnel
        // itself is never counted again.
        a.advance(ip(2), Stage::Unauthenticated, Some(Stage::Tunnel));
        assert_eq!(a.counts(ip(2)), (0, 1));
        assert_eq!(a.admit(ip(2)), Ok(()));
        a.advance(ip(2), Stage::Tunnel, None);
        assert_eq!(a.counts(ip(2)), (1, 2));
    }

    #[test]
    fn every_path_gives_counts_back_and_entries_go() {
        let adm = Admission::new(SourceLimits {
            max_half_open: 1,
            max_unauthenticated: 1,
        });
        {
            let _t = adm.admit(ip(2)).unwrap();
            assert_eq!(adm.admit(ip(2)).unwrap_err(), Refusal::HalfOpen);
        }
        {
            let mut t = adm.admit(ip(2)).unwrap();
            t.handshake_done();
            assert_eq!(adm.admit(ip(2)).unwrap_err(), Refusal::Unauthenticated);
            t.tunnel();
            assert_eq!(adm.counts(ip(2)), (0, 0));
            let _t2 = adm.admit(ip(2)).unwrap();
        }
        assert_eq!(adm.counts(ip(2)), (0, 0));
        assert_eq!(adm.lock().tracked_sources(), 0);
        assert_eq!(adm.refused_half_open.load(Ordering::Relaxed), 1);
        assert_eq!(adm.refused_unauthenticated.load(Ordering::Relaxed), 1);
    }
}

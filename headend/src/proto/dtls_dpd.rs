//! The server's own dead-peer detection on the DTLS path (`anyconnect
//! dpd-interval gateway N`, ASA "gateway-side DPD"), sans-IO.
//!
//! When nothing authenticated has come over DTLS for `interval`, the server sends
//! a DTLS DPD-REQ record (type 3, which openconnect and AnyConnect answer with a
//! DPD-RESP), again every `interval`; after [`DEAD_AFTER`] intervals of silence
//! the DTLS path is dead and the downlink moves to CSTP. Any authenticated record
//! (data, keepalive, DPD either way) proves the path alive, as on ASA, where DPD
//! runs only on an idle tunnel.

use std::time::{Duration, Instant};

/// Intervals of silence after which DTLS counts as dead (two requests unanswered).
pub const DEAD_AFTER: u32 = 3;

/// DTLS record type of a DPD request (protocol.md section 3).
pub const DPD_REQ: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdAction {
    Nothing,
    /// Send a DPD-REQ record over DTLS.
    SendRequest,
    /// The DTLS path is dead: downlink over CSTP from now on (until the client
    /// sends data over DTLS again or resumes a new association).
    Dead,
}

#[derive(Debug, Clone)]
pub struct DtlsDpd {
    interval: Duration,
    last_rx: Instant,
    last_req: Option<Instant>,
    dead: bool,
}

impl DtlsDpd {
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval: interval.max(Duration::from_secs(1)),
            last_rx: now,
            last_req: None,
            dead: false,
        }
    }

    /// An authenticated record came over DTLS.
    pub fn on_authentic(&mut self, now: Instant) {
        self.last_rx = now;
        self.last_req = None;
        self.dead = false;
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// When [`DtlsDpd::on_timeout`] has something to do; `None` once dead.
    pub fn deadline(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        let dead_at = self.last_rx + self.interval * DEAD_AFTER;
        Some(match self.last_req {
            None => self.last_rx + self.interval,
            Some(t) => (t + self.interval).min(dead_at),
        })
    }

    pub fn on_timeout(&mut self, now: Instant) -> DpdAction {
        if self.dead {
            return DpdAction::Nothing;
        }
        let silent = now.saturating_duration_since(self.last_rx);
        if silent >= self.interval * DEAD_AFTER {
            self.dead = true;
            return DpdAction::Dead;
        }
        let due = silent >= self.interval
            && self
                .last_req
                .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if due {
            self.last_req = Some(now);
            DpdAction::SendRequest
        } else {
            DpdAction::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(5);

    #[test]
    fn silence_sends_requests_then_declares_dead() {
        let t0 = Instant::now();
        let mut d = DtlsDpd::new(I, t0);
        assert_eq!(d.deadline(), Some(t0 + I));
        assert_eq!(d.on_timeout(t0 + I / 2), DpdAction::Nothing);
        assert_eq!(d.on_timeout(t0 + I), DpdAction::SendRequest);
        assert_eq!(d.on_timeout(t0 + I), DpdAction::Nothing, "one per interval");
        assert_eq!(d.deadline(), Some(t0 + 2 * I));
        assert_eq!(d.on_timeout(t0 + 2 * I), DpdAction::SendRequest);
        assert_eq!(d.deadline(), Some(t0 + 3 * I));
        assert_eq!(d.on_timeout(t0 + 3 * I), DpdAction::Dead);
        assert!(d.is_dead());
        assert_eq!(d.deadline(), None);
        assert_eq!(d.on_timeout(t0 + 10 * I), DpdAction::Nothing);
    }

    #[test]
    fn any_authentic_record_keeps_it_alive_and_revives_it() {
        let t0 = Instant::now();
        let mut d = DtlsDpd::new(I, t0);
        assert_eq!(d.on_timeout(t0 + I), DpdAction::SendRequest);
        d.on_authentic(t0 + I + I / 2);
        assert_eq!(d.deadline(), Some(t0 + 2 * I + I / 2));
        assert_eq!(d.on_timeout(t0 + 2 * I), DpdAction::Nothing);
        assert_eq!(d.on_timeout(t0 + 4 * I + I / 2), DpdAction::Dead);
        d.on_authentic(t0 + 5 * I);
        assert!(!d.is_dead());
        assert_eq!(d.deadline(), Some(t0 + 6 * I));
    }
}

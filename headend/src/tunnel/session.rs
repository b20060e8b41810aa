//! One tunnel's state, sans-IO (issue 13 item 1): the CSTP session timers and
//! the DTLS link's liveness, fallback, rebinding and server DPD, driven by
//! events and `now` and answering with actions and the next timer.
//!
//! The shape follows quinn-proto / boringtun's `Tunn`: nothing here reads a
//! clock, a socket or the TUN device; `tunnel/` moves the bytes and calls in.
//! OpenSSL's association (`dtls::DtlsChannel`) stays with the I/O side; this
//! module decides what it may be fed and what the downlink uses.
//!
//! Rules (protocol.md section 3, legacy-dtls.md):
//! - A ClientHello with the session's App-ID starts a new association from its
//!   address (the client re-handshakes from a new port after DTLS died, and
//!   after every CSTP reconnect with the new connection's PSK).
//! - Before the handshake completes only the hello's address drives it; after,
//!   a datagram from another port of the same IP (NAT rebinding) is heard, and
//!   the link follows the new port only once a record from it authenticates.
//! - The downlink uses DTLS while it is established, the client's last DTLS data
//!   came after its last CSTP data, and an authenticated record arrived within
//!   `dead_after` (2 x the client's DPD/keepalive interval); otherwise CSTP.
//! - `anyconnect dpd-interval gateway N`: the server's own DTLS DPD
//!   (`proto::dtls_dpd`); when it declares the path dead the downlink moves to
//!   CSTP until DTLS data flows again.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::EffectivePolicy;
use crate::dtls::DatagramKind;
use crate::proto::cstp::{CstpConfig, CstpSession, FrameAction, FrameType, TimerAction};
use crate::proto::dtls_dpd::{DpdAction, DtlsDpd};

/// A session without data for this long gives back what a burst made it hold
/// (uplink buffers, the CSTP decoder, DTLS buffers) at its next timer (issue 12).
pub const IDLE_TRIM_AFTER: Duration = Duration::from_secs(5);

/// DTLS record types (the CSTP numbers, protocol.md section 3).
pub const REC_DATA: u8 = 0;
pub const REC_DPD_REQ: u8 = 3;
pub const REC_DPD_RESP: u8 = 4;

/// What one decrypted DTLS record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRecord<'a> {
    /// An IP packet for TUN.
    Data(&'a [u8]),
    /// DPD-REQ, also an MTU probe: answer with [`probe_echo`].
    DpdReq,
    /// Keepalive, DPD-RESP, or a type we ignore.
    Other,
}

pub fn classify(record: &[u8]) -> DtlsRecord<'_> {
    match record.split_first() {
        Some((&REC_DATA, pkt)) => DtlsRecord::Data(pkt),
        Some((&REC_DPD_REQ, _)) => DtlsRecord::DpdReq,
        _ => DtlsRecord::Other,
    }
}

/// The answer to a DPD-REQ / MTU probe: the whole record, same length, with
/// byte 0 set to DPD-RESP (openconnect's MTU detection matches the length).
pub fn probe_echo(record: &[u8]) -> Vec<u8> {
    let mut e = record.to_vec();
    if let Some(t) = e.first_mut() {
        *t = REC_DPD_RESP;
    }
    e
}

/// Which channel the downlink takes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Dtls,
    Cstp,
}

/// The DTLS side's settings, from the group policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsLinkConfig {
    /// No authenticated record for this long: the downlink stops using DTLS.
    pub dead_after: Duration,
    /// `anyconnect dpd-interval gateway N` (None: off).
    pub gateway_dpd: Option<Duration>,
}

impl DtlsLinkConfig {
    /// The group policy's DTLS timers.
    pub fn for_policy(p: &EffectivePolicy) -> Self {
        Self {
            // The client sends a DPD or keepalive record at least this often
            // while DTLS is alive (X-DTLS-DPD / X-DTLS-Keepalive); two missed
            // intervals mean it went away.
            dead_after: Duration::from_secs(
                2 * u64::from(
                    p.anyconnect_dpd_client_secs
                        .into_iter()
                        .chain(p.anyconnect_keepalive_secs)
                        .max()
                        .unwrap_or(30),
                ),
            ),
            gateway_dpd: gateway_dpd(p),
        }
    }
}

/// The gateway's DPD interval (`anyconnect dpd-interval gateway`); 0 or
/// unset: the gateway sends no DPD. One rule for CSTP and DTLS.
fn gateway_dpd(p: &EffectivePolicy) -> Option<Duration> {
    p.anyconnect_dpd_gateway_secs
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Assoc {
    peer: SocketAddr,
    established: bool,
}

/// The DTLS link of one tunnel: the current association's address and state,
/// whether the downlink uses it, and its liveness.
#[derive(Debug, Clone)]
pub struct DtlsLink {
    cfg: DtlsLinkConfig,
    assoc: Option<Assoc>,
    active: bool,
    last_rx: Instant,
    dpd: Option<DtlsDpd>,
}

/// What the I/O side must do after authenticated records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentic {
    Nothing,
    /// The association moved to this address (NAT rebinding): route it here
    /// and send to it from now on.
    Rebound {
        old: SocketAddr,
        new: SocketAddr,
    },
}

impl DtlsLink {
    pub fn new(cfg: DtlsLinkConfig, now: Instant) -> Self {
        Self {
            cfg,
            assoc: None,
            active: false,
            last_rx: now,
            dpd: None,
        }
    }

    /// The address datagrams go to, while there is an association.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.assoc.map(|a| a.peer)
    }

    pub fn established(&self) -> bool {
        self.assoc.is_some_and(|a| a.established)
    }

    /// Whether the downlink prefers DTLS (before liveness is considered).
    pub fn active(&self) -> bool {
        self.active
    }

    /// A ClientHello with our App-ID from `peer`: a new association (the I/O
    /// side made one) replaces the old one; its DPD starts at the handshake.
    pub fn on_hello(&mut self, peer: SocketAddr) {
        self.assoc = Some(Assoc {
            peer,
            established: false,
        });
        self.dpd = None;
    }

    /// Whether a datagram of `kind` from `from` goes to the association.
    pub fn admit(&self, kind: DatagramKind, from: SocketAddr) -> bool {
        let Some(a) = self.assoc else {
            return false;
        };
        kind == DatagramKind::Hello
            || a.peer == from
            // Another port of the same IP: only once established (its records
            // must authenticate under our keys), never a Known peer of another
            // association.
            || (kind == DatagramKind::Probe && a.established)
    }

    /// The handshake completed: DTLS carries the downlink from now on.
    pub fn on_established(&mut self, now: Instant) {
        if let Some(a) = self.assoc.as_mut() {
            a.established = true;
            self.last_rx = now;
            self.dpd = self.cfg.gateway_dpd.map(|i| DtlsDpd::new(i, now));
            self.active = true;
        }
    }

    /// The association failed or the client closed it: CSTP until a new one.
    pub fn on_failed(&mut self) {
        self.assoc = None;
        self.dpd = None;
        self.active = false;
    }

    /// Records from `from` authenticated (`data`: at least one was a packet).
    pub fn on_authentic(&mut self, now: Instant, from: SocketAddr, data: bool) -> Authentic {
        let Some(a) = self.assoc.as_mut() else {
            return Authentic::Nothing;
        };
        self.last_rx = now;
        if let Some(d) = self.dpd.as_mut() {
            d.on_authentic(now);
        }
        if data {
            self.active = true;
        }
        if a.established && a.peer != from {
            let old = a.peer;
            a.peer = from;
            return Authentic::Rebound { old, new: from };
        }
        Authentic::Nothing
    }

    /// The client sent data over CSTP: it gave up on DTLS for now, so answer
    /// there too. Returns whether the downlink moved.
    pub fn on_cstp_data(&mut self) -> bool {
        std::mem::replace(&mut self.active, false)
    }

    pub fn usable(&self, now: Instant) -> bool {
        self.active
            && self.established()
            && now.saturating_duration_since(self.last_rx) < self.cfg.dead_after
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dpd.as_ref().and_then(DtlsDpd::deadline)
    }

    /// The DPD timer: probe, or declare the path dead (downlink to CSTP).
    pub fn on_timeout(&mut self, now: Instant) -> DpdAction {
        let Some(d) = self.dpd.as_mut() else {
            return DpdAction::Nothing;
        };
        let a = d.on_timeout(now);
        if a == DpdAction::Dead {
            self.active = false;
        }
        a
    }
}

/// What a due timer asks the I/O side to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelTimer {
    /// A CSTP timer (DPD-REQ, keepalive, or the end of the session).
    Cstp(TimerAction),
    /// Send a DPD-REQ record over DTLS.
    DtlsDpdReq,
    /// DTLS DPD gave up: the downlink is now on CSTP.
    DtlsDead,
}

/// One tunnel: the CSTP session and, if DTLS was offered, its link.
#[derive(Debug, Clone)]
pub struct TunnelSession {
    pub cstp: CstpSession,
    pub dtls: Option<DtlsLink>,
}

impl TunnelSession {
    pub fn new(cstp: CstpSession, dtls: Option<DtlsLink>) -> Self {
        Self { cstp, dtls }
    }

    /// The channel for downlink packets at `now`.
    pub fn downlink_via(&self, now: Instant) -> Via {
        match &self.dtls {
            Some(d) if d.usable(now) => Via::Dtls,
            _ => Via::Cstp,
        }
    }

    /// The CSTP timers of a group policy: the server's DPD (`anyconnect
    /// dpd-interval gateway`; 0 is off), the idle timeout and what is left of
    /// the session's lifetime. The server sends no CSTP keepalives.
    pub fn cstp_config(
        p: &EffectivePolicy,
        session_deadline: Option<Instant>,
        now: Instant,
    ) -> CstpConfig {
        CstpConfig {
            dpd_interval: gateway_dpd(p),
            keepalive: None,
            idle_timeout: p.vpn_idle_timeout,
            session_timeout: session_deadline.map(|d| d.saturating_duration_since(now)),
        }
    }

    /// Data arrived on CSTP. Returns whether the downlink left DTLS.
    pub fn on_cstp_data(&mut self) -> bool {
        self.dtls.as_mut().is_some_and(DtlsLink::on_cstp_data)
    }

    /// A CSTP frame from the client: what the CSTP session makes of it. DATA
    /// on CSTP also means the client gave up on DTLS for now, so the downlink
    /// answers on CSTP too until DTLS data flows again ([`Self::dtls_active`]
    /// turns false).
    pub fn on_cstp_frame<'a>(
        &mut self,
        now: Instant,
        kind: FrameType,
        payload: &'a [u8],
    ) -> FrameAction<'a> {
        let action = self.cstp.on_frame(now, kind, payload);
        if matches!(action, FrameAction::Deliver(_)) {
            self.on_cstp_data();
        }
        action
    }

    /// Whether the downlink prefers DTLS (before liveness; what `show`
    /// reports as DTLS active).
    pub fn dtls_active(&self) -> bool {
        self.dtls.as_ref().is_some_and(DtlsLink::active)
    }

    /// Whether no data moved either way for [`IDLE_TRIM_AFTER`]: the session
    /// may give back its burst buffers.
    pub fn quiet(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.cstp.last_data()) >= IDLE_TRIM_AFTER
    }

    /// The earliest instant at which [`Self::on_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let d = self.dtls.as_ref().and_then(DtlsLink::poll_timeout);
        match (self.cstp.poll_timeout(), d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs due timers, one action per call (call again until it returns
    /// `Cstp(TimerAction::Nothing)`). The end of the session comes first.
    pub fn on_timeout(&mut self, now: Instant) -> TunnelTimer {
        let c = self.cstp.on_timeout(now);
        if c != TimerAction::Nothing {
            return TunnelTimer::Cstp(c);
        }
        match self.dtls.as_mut().map(|d| d.on_timeout(now)) {
            Some(DpdAction::SendRequest) => TunnelTimer::DtlsDpdReq,
            Some(DpdAction::Dead) => TunnelTimer::DtlsDead,
            _ => TunnelTimer::Cstp(TimerAction::Nothing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cstp::{CstpConfig, EndReason};

    const S: Duration = Duration::from_secs(1);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 2], port))
    }

    fn session(t0: Instant, gateway_dpd: Option<Duration>) -> TunnelSession {
        let cstp = CstpSession::new(
            CstpConfig {
                dpd_interval: Some(30 * S),
                keepalive: None,
                idle_timeout: Some(1800 * S),
                session_timeout: None,
            },
            t0,
        );
        let link = DtlsLink::new(
            DtlsLinkConfig {
                dead_after: 60 * S,
                gateway_dpd,
            },
            t0,
        );
        TunnelSession::new(cstp, Some(link))
    }

    fn link(s: &mut TunnelSession) -> &mut DtlsLink {
        s.dtls.as_mut().unwrap()
    }

    #[test]
    fn downlink_is_cstp_until_the_handshake_then_dtls() {
        let t0 = Instant::now();
        let mut s = session(t0, None);
        assert_eq!(s.downlink_via(t0), Via::Cstp);
        link(&mut s).on_hello(addr(1000));
        assert_eq!(s.downlink_via(t0), Via::Cstp, "not yet established");
        assert!(link(&mut s).admit(DatagramKind::Known, addr(1000)));
        link(&mut s).on_established(t0 + S);
        assert_eq!(s.downlink_via(t0 + S), Via::Dtls);
    }

    #[test]
    fn dtls_death_falls_back_to_cstp_and_data_brings_it_back() {
        let t0 = Instant::now();
        let mut s = session(t0, None);
        link(&mut s).on_hello(addr(1000));
        link(&mut s).on_established(t0);
        // Silence for the client's 2 x DPD: DTLS counts as dead.
        assert_eq!(s.downlink_via(t0 + 59 * S), Via::Dtls);
        assert_eq!(s.downlink_via(t0 + 60 * S), Via::Cstp);
        // A keepalive record revives liveness.
        link(&mut s).on_authentic(t0 + 61 * S, addr(1000), false);
        assert_eq!(s.downlink_via(t0 + 61 * S), Via::Dtls);
        // The client sends data on CSTP: it gave up on DTLS; answer on CSTP.
        assert!(s.on_cstp_data());
        assert!(!s.on_cstp_data(), "already on CSTP");
        assert_eq!(s.downlink_via(t0 + 61 * S), Via::Cstp);
        // A keepalive alone does not move the downlink back; data does.
        link(&mut s).on_authentic(t0 + 62 * S, addr(1000), false);
        assert_eq!(s.downlink_via(t0 + 62 * S), Via::Cstp);
        link(&mut s).on_authentic(t0 + 63 * S, addr(1000), true);
        assert_eq!(s.downlink_via(t0 + 63 * S), Via::Dtls);
        // A failed association (close_notify, bad handshake): CSTP, nothing admitted.
        link(&mut s).on_failed();
        assert_eq!(s.downlink_via(t0 + 63 * S), Via::Cstp);
        assert!(!link(&mut s).admit(DatagramKind::Known, addr(1000)));
    }

    #[test]
    fn rebinding_follows_only_an_authenticated_record_after_the_handshake() {
        let t0 = Instant::now();
        let mut s = session(t0, None);
        let l = link(&mut s);
        l.on_hello(addr(1000));
        // During the handshake another port may not drive it.
        assert!(!l.admit(DatagramKind::Probe, addr(2000)));
        assert!(!l.admit(DatagramKind::Known, addr(2000)));
        l.on_established(t0);
        // Once up, a new port of the same IP is heard, but not yet followed.
        assert!(l.admit(DatagramKind::Probe, addr(2000)));
        assert!(
            !l.admit(DatagramKind::Known, addr(2000)),
            "another session's peer"
        );
        assert_eq!(l.peer(), Some(addr(1000)));
        // Its record authenticated: follow it.
        assert_eq!(
            l.on_authentic(t0 + S, addr(2000), true),
            Authentic::Rebound {
                old: addr(1000),
                new: addr(2000)
            }
        );
        assert_eq!(l.peer(), Some(addr(2000)));
        assert_eq!(l.on_authentic(t0 + S, addr(2000), true), Authentic::Nothing);
        assert!(
            !l.admit(DatagramKind::Known, addr(1000)),
            "old port left behind"
        );
    }

    #[test]
    fn reconnect_hello_replaces_the_association() {
        let t0 = Instant::now();
        let mut s = session(t0, Some(10 * S));
        link(&mut s).on_hello(addr(1000));
        link(&mut s).on_established(t0);
        assert!(s.poll_timeout().unwrap() <= t0 + 10 * S);
        // The client reconnected CSTP (new PSK) and re-handshakes from a new port.
        link(&mut s).on_hello(addr(3000));
        let l = link(&mut s);
        assert!(!l.established());
        assert_eq!(l.peer(), Some(addr(3000)));
        assert!(!l.admit(DatagramKind::Known, addr(1000)));
        assert!(l.admit(DatagramKind::Known, addr(3000)));
        assert_eq!(l.poll_timeout(), None, "DPD waits for the new handshake");
        assert_eq!(s.downlink_via(t0 + S), Via::Cstp);
        link(&mut s).on_established(t0 + 2 * S);
        assert_eq!(s.downlink_via(t0 + 2 * S), Via::Dtls);
    }

    #[test]
    fn gateway_dpd_probes_then_moves_the_downlink_to_cstp() {
        let t0 = Instant::now();
        let mut s = session(t0, Some(10 * S));
        link(&mut s).on_hello(addr(1000));
        link(&mut s).on_established(t0);
        // Earliest timer is the DTLS DPD, not CSTP's 30 s.
        assert_eq!(s.poll_timeout(), Some(t0 + 10 * S));
        assert_eq!(s.on_timeout(t0 + 10 * S), TunnelTimer::DtlsDpdReq);
        assert_eq!(
            s.on_timeout(t0 + 10 * S),
            TunnelTimer::Cstp(TimerAction::Nothing)
        );
        assert_eq!(s.on_timeout(t0 + 20 * S), TunnelTimer::DtlsDpdReq);
        // The answer would have reset it; none came.
        let t = s.poll_timeout().unwrap();
        assert_eq!(t, t0 + 30 * S);
        // CSTP DPD is due at 30 s too and comes first; then DTLS is dead.
        assert_eq!(s.on_timeout(t), TunnelTimer::Cstp(TimerAction::SendDpdReq));
        assert_eq!(s.on_timeout(t), TunnelTimer::DtlsDead);
        assert_eq!(s.downlink_via(t), Via::Cstp);
        assert_eq!(link(&mut s).poll_timeout(), None);
    }

    #[test]
    fn cstp_dpd_timeout_ends_the_session() {
        let t0 = Instant::now();
        let mut s = session(t0, None);
        assert_eq!(s.poll_timeout(), Some(t0 + 30 * S));
        assert_eq!(
            s.on_timeout(t0 + 30 * S),
            TunnelTimer::Cstp(TimerAction::SendDpdReq)
        );
        assert_eq!(
            s.on_timeout(t0 + 60 * S),
            TunnelTimer::Cstp(TimerAction::End(EndReason::DeadPeer))
        );
    }

    #[test]
    fn cstp_data_moves_the_downlink_off_dtls_but_cstp_control_frames_do_not() {
        let t0 = Instant::now();
        let mut s = session(t0, None);
        link(&mut s).on_hello(addr(1000));
        link(&mut s).on_established(t0);
        assert!(s.dtls_active());
        // DPD and keepalives on CSTP are normal while DTLS carries the data.
        assert_eq!(
            s.on_cstp_frame(t0 + S, FrameType::DpdReq, &[]),
            FrameAction::SendDpdResp
        );
        assert_eq!(
            s.on_cstp_frame(t0 + S, FrameType::Keepalive, &[]),
            FrameAction::Nothing
        );
        assert_eq!(s.downlink_via(t0 + S), Via::Dtls);
        // A packet over CSTP: the client gave up on DTLS.
        let pkt = [0x45, 0, 0, 20];
        assert_eq!(
            s.on_cstp_frame(t0 + 2 * S, FrameType::Data, &pkt),
            FrameAction::Deliver(&pkt)
        );
        assert!(!s.dtls_active());
        assert_eq!(s.downlink_via(t0 + 2 * S), Via::Cstp);
    }

    #[test]
    fn a_session_is_quiet_after_five_seconds_without_data() {
        let t0 = Instant::now();
        let mut s = session(t0, None);
        assert!(!s.quiet(t0 + 4 * S));
        assert!(s.quiet(t0 + 5 * S));
        // Data either way restarts the count; control frames do not.
        s.cstp.on_data_received(t0 + 10 * S, 100);
        assert!(!s.quiet(t0 + 14 * S));
        s.on_cstp_frame(t0 + 15 * S, FrameType::Keepalive, &[]);
        assert!(s.quiet(t0 + 15 * S));
        s.cstp.on_data_sent(t0 + 15 * S, 100, true);
        assert!(!s.quiet(t0 + 19 * S));
        assert!(s.quiet(t0 + 20 * S));
    }

    fn policy() -> EffectivePolicy {
        crate::config::parse_str("", "t.cfg")
            .unwrap()
            .effective_policy("DfltGrpPolicy")
    }

    #[test]
    fn dtls_is_dead_after_two_of_the_clients_longest_intervals() {
        let mut p = policy();
        p.anyconnect_dpd_client_secs = Some(30);
        p.anyconnect_keepalive_secs = Some(45);
        p.anyconnect_dpd_gateway_secs = Some(20);
        let c = DtlsLinkConfig::for_policy(&p);
        assert_eq!(c.dead_after, 90 * S);
        assert_eq!(c.gateway_dpd, Some(20 * S));
        // Nothing configured: 30 s; gateway DPD 0 is off.
        p.anyconnect_dpd_client_secs = None;
        p.anyconnect_keepalive_secs = None;
        p.anyconnect_dpd_gateway_secs = Some(0);
        let c = DtlsLinkConfig::for_policy(&p);
        assert_eq!(c.dead_after, 60 * S);
        assert_eq!(c.gateway_dpd, None);
    }

    #[test]
    fn cstp_timers_come_from_the_policy_and_the_session_deadline() {
        let t0 = Instant::now();
        let mut p = policy();
        p.anyconnect_dpd_gateway_secs = Some(0);
        p.vpn_idle_timeout = Some(600 * S);
        let c = TunnelSession::cstp_config(&p, Some(t0 + 3600 * S), t0 + 100 * S);
        assert_eq!(c.dpd_interval, None, "gateway DPD 0 is off");
        assert_eq!(c.keepalive, None);
        assert_eq!(c.idle_timeout, Some(600 * S));
        assert_eq!(c.session_timeout, Some(3500 * S), "what is left of it");
        p.anyconnect_dpd_gateway_secs = Some(30);
        let c = TunnelSession::cstp_config(&p, None, t0);
        assert_eq!(c.dpd_interval, Some(30 * S));
        assert_eq!(c.session_timeout, None);
    }

    #[test]
    fn records_are_classified_and_probes_echoed_at_full_length() {
        let probe = [REC_DPD_REQ, 1, 2, 3, 4, 0, 0, 0];
        assert_eq!(classify(&probe), DtlsRecord::DpdReq);
        let echo = probe_echo(&probe);
        assert_eq!(echo.len(), probe.len());
        assert_eq!(echo[0], REC_DPD_RESP);
        assert_eq!(&echo[1..], &probe[1..]);
        assert_eq!(classify(&[0, 0x45, 0]), DtlsRecord::Data(&[0x45, 0]));
        assert_eq!(classify(&[7]), DtlsRecord::Other);
        assert_eq!(classify(&[]), DtlsRecord::Other);
    }
}

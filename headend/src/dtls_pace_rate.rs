//! A pacing rate learnt per session from the inner TCP (issue 13 item 4):
//! an AIMD cap on the DTLS downlink that backs off when the client drops.
//!
//! Why: a stock client reads one datagram at a time from a 208 KiB socket
//! buffer; while TCP inside the tunnel sends faster than openconnect
//! decrypts, that buffer is the bottleneck's queue and overflows (2-4 % of
//! the datagrams in BENCHMARKS.md's quiet runs, each drop after we paid its
//! crypto). A fixed cap below what the client takes moved the queue to our
//! side (1.5 Gbit/s: 0.1-0.2 % drops) but cost 12-20 % throughput, because
//! what one client takes depends on the CPU it gets. So the cap is learnt:
//! - the session sees the client's losses in the ACKs it sends up the tunnel:
//!   an ACK with a SACK block (RFC 2018) whose cumulative ACK is a hole;
//! - holes we made ourselves (a downlink packet our queue or the TUN device
//!   dropped: a gap in the sequence numbers the session sent) are not the
//!   client's and change nothing;
//! - on a client loss the cap drops to [`CUT`] of the delivery rate (the
//!   client's acknowledged bytes per [`SAMPLE`], the most of the last
//!   [`SAMPLES`], in wire bytes) but at most by half, at most once per
//!   [`ROUND`] and once per loss episode (holes in data sent before the last
//!   cut are the same one);
//! - each [`ROUND`] it grows: a quarter of the way back to the cap before the
//!   cut while below 15/16 of it, then by 2^-[`GROWTH_SHIFT`] of itself, up to
//!   the fixed pacer's rate (the ceiling), so a client that got its CPU back
//!   gets its rate back within ~100 ms;
//! - while the cap binds the pacer may make up one burst of rate a late timer
//!   wake-up lost ([`LEARN_CATCH_UP`]), so the cap is the rate that leaves.
//!
//! Measured (BENCHMARKS.md, issue 13 pace): client drops in a DTLS download
//! 0.3-0.8 % instead of 3.8-7.3 % at the same throughput in 4 of 5 pairs.
//!
//! Sans-IO: fed `now`, the packets the session sends and receives; no clock.
//! Bounded: at most [`MAX_FLOWS`] flows per session, [`OWN_GAPS`] holes each.

use std::time::{Duration, Instant};

use crate::proto::tcp_seg::{self, FlowKey, TcpSeg};

/// The cap after a client loss: this share of what the client delivered.
/// Below 1 so the client's buffer drains while TCP refills ours.
pub const CUT: (u64, u64) = (15, 16);

/// Growth per round without a client loss: rate / 2^GROWTH_SHIFT (1.6 %).
/// From a cut back to the delivery rate takes ~4 rounds; 1.5x takes ~26.
pub const GROWTH_SHIFT: u32 = 6;

/// After this many rounds (5 s) without a client loss the cap is back at
/// the ceiling whatever it was.
pub const MAX_GROWTH_ROUNDS: u32 = 256;

/// At most one cut per round, and growth steps of one round: a few RTTs of
/// the inner TCP under load (1-5 ms in the lab, BENCHMARKS.md downlink-probe),
/// so one loss burst (one client stall) gives one cut.
pub const ROUND: Duration = Duration::from_millis(20);

/// Delivery-rate sample length, and how many are kept: the most of them
/// (160 ms) is the client's rate. Long, because the cumulative ACK stands
/// still while TCP recovers a loss (the client SACKs instead), so samples
/// right after a loss read low; with 8 samples (40 ms) cuts ratcheted the
/// cap down to 416 Mbit/s for a client that took 1.4 Gbit/s (BENCHMARKS.md,
/// issue 13 pace, round 3).
pub const SAMPLE: Duration = Duration::from_millis(5);
pub const SAMPLES: usize = 32;

/// Flows tracked per session (the downloads' TCP connections); more are
/// not learnt from (the cap follows the first ones).
pub const MAX_FLOWS: usize = 8;
/// Own holes remembered per flow (the sequence gaps of our own drops).
pub const OWN_GAPS: usize = 8;

/// DTLS 1.2 AEAD record overhead per datagram beyond the IP packet:
/// header 13 + explicit nonce 8 + tag 16 + AnyConnect type byte 1 (RFC 6347
/// §4.1, RFC 5288 §3). The rate is in UDP payload bytes, as the pacer's.
const RECORD_OVERHEAD: u64 = 38;

/// The knobs of the rule, for measuring (`HEADEND_DTLS_PACE_LEARN_CUT` in
/// sixteenths, `HEADEND_DTLS_PACE_LEARN_GROWTH` as the shift,
/// `HEADEND_DTLS_PACE_LEARN_CATCHUP` in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnConfig {
    /// The cap after a client loss, in sixteenths of the delivery rate.
    pub cut_16ths: u64,
    /// Growth per round: rate / 2^growth_shift.
    pub growth_shift: u32,
    /// The pacer's catch-up credit while the learnt cap binds.
    pub catch_up: u64,
}

/// While the learnt cap binds, the pacer may make up one burst of the rate a
/// late timer wake-up lost: a cap near the client's rate must be the rate
/// that leaves (late wake-ups lost 1.2 GB of rate in a 10 s download, and
/// with this credit 33 MB; with it the learnt cap kept base's throughput in
/// 4 of 5 pairs, without it in 1 of 3: BENCHMARKS.md issue 13 pace).
pub const LEARN_CATCH_UP: u64 = 16 * 1024;

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            cut_16ths: CUT.0 * 16 / CUT.1,
            growth_shift: GROWTH_SHIFT,
            catch_up: LEARN_CATCH_UP,
        }
    }
}

impl LearnConfig {
    /// The process-wide setting (read once; out-of-range values are ignored).
    pub fn process_default() -> Self {
        static CFG: std::sync::OnceLock<LearnConfig> = std::sync::OnceLock::new();
        *CFG.get_or_init(|| {
            let env = |k: &str| {
                std::env::var(k)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let d = Self::default();
            Self {
                cut_16ths: env("HEADEND_DTLS_PACE_LEARN_CUT")
                    .filter(|c| (1..=16).contains(c))
                    .unwrap_or(d.cut_16ths),
                growth_shift: env("HEADEND_DTLS_PACE_LEARN_GROWTH")
                    .filter(|g| (1..=16).contains(g))
                    .map_or(d.growth_shift, |g| g as u32),
                catch_up: env("HEADEND_DTLS_PACE_LEARN_CATCHUP").unwrap_or(d.catch_up),
            }
        })
    }
}

/// Never below this (bytes per second on the wire, 10 Mbit/s): a session
/// whose client stalled for long must not be starved after it comes back.
pub const MIN_RATE: u64 = 10_000_000 / 8;

#[derive(Debug, Clone)]
struct Flow {
    key: FlowKey,
    /// The sequence number after the highest byte sent (None: none yet).
    next_seq: Option<u32>,
    /// Gaps [start, end) in what we sent: our own drops.
    own_gaps: [(u32, u32); OWN_GAPS],
    gaps: usize,
    /// The highest cumulative ACK seen (None until the first).
    acked: Option<u32>,
    /// After a client loss, `next_seq` then: holes below it belong to the
    /// same loss episode (one cut per window of data, as TCP's own
    /// recovery point, RFC 6582 §3.2).
    recover: Option<u32>,
}

impl Flow {
    fn own_hole(&self, at: u32) -> bool {
        self.own_gaps
            .iter()
            .take(self.gaps.min(OWN_GAPS))
            .any(|&(a, b)| at.wrapping_sub(a) < b.wrapping_sub(a))
    }
}

/// What the rule did, for the session's log line and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearntStats {
    /// SACKed holes the client made (its buffer dropped, or the path).
    pub client_losses: u64,
    /// SACKed holes that were our own drops.
    pub own_losses: u64,
    /// Cuts of the cap, and the lowest cap.
    pub cuts: u64,
    pub min_rate: u64,
}

/// The learnt cap of one session.
#[derive(Debug, Clone)]
pub struct LearntRate {
    cfg: LearnConfig,
    /// The ceiling: the fixed pacer's rate (bytes per second).
    max: u64,
    rate: u64,
    flows: Vec<Flow>,
    sample_start: Instant,
    sample_acked: u64,
    /// Delivery rates (TCP payload bytes per second), newest last.
    samples: [u64; SAMPLES],
    next_sample: usize,
    /// Wire bytes and TCP payload bytes sent (wire per payload byte).
    wire: u64,
    payload: u64,
    last_cut: Option<Instant>,
    grown_at: Instant,
    /// The cap just before the last cut.
    before_cut: u64,
    /// The cap integrated over time (bytes), since `started`, for the mean.
    area: u128,
    area_at: Instant,
    started: Instant,
    stats: LearntStats,
}

impl LearntRate {
    /// Starts at the ceiling: nothing is capped before the client drops.
    pub fn new(max: u64, now: Instant) -> Self {
        let max = max.max(MIN_RATE);
        Self {
            cfg: LearnConfig::default(),
            max,
            rate: max,
            flows: Vec::new(),
            sample_start: now,
            sample_acked: 0,
            samples: [0; SAMPLES],
            next_sample: 0,
            wire: 0,
            payload: 0,
            last_cut: None,
            grown_at: now,
            before_cut: max,
            area: 0,
            area_at: now,
            started: now,
            stats: LearntStats {
                min_rate: max,
                ..LearntStats::default()
            },
        }
    }

    pub fn with_config(mut self, cfg: LearnConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// The cap now (bytes per second on the wire).
    pub fn rate(&mut self, now: Instant) -> u64 {
        let dt = now.saturating_duration_since(self.area_at);
        self.area = self
            .area
            .saturating_add(u128::from(self.rate) * dt.as_nanos() / 1_000_000_000);
        self.area_at = self.area_at.max(now);
        let rounds = now.saturating_duration_since(self.grown_at).as_nanos() / ROUND.as_nanos();
        if rounds == 0 {
            return self.rate;
        }
        if rounds >= u128::from(MAX_GROWTH_ROUNDS) {
            // Bounded: a long quiet spell ends at the ceiling at once.
            self.rate = self.max;
            self.grown_at = now;
            return self.rate;
        }
        for _ in 0..rounds {
            let slow = (self.rate >> self.cfg.growth_shift).max(1);
            // Back toward the cap before the last cut quickly (a stall of
            // the client is no reason to stay low), beyond it slowly (where
            // the client's buffer filled last time): cubic's shape (RFC 9438 §4).
            let near = self.before_cut / 16 * 15;
            let step = if self.rate < near {
                slow.max((self.before_cut - self.rate) / 4)
            } else {
                slow
            };
            self.rate = self.rate.saturating_add(step).min(self.max);
        }
        self.grown_at += ROUND * rounds as u32;
        self.rate
    }

    /// Whether the cap is below the ceiling (it binds), and the pacer's
    /// catch-up credit then.
    pub fn capped(&self) -> bool {
        self.rate < self.max
    }

    pub fn catch_up(&self) -> u64 {
        self.cfg.catch_up
    }

    pub fn stats(&self) -> LearntStats {
        self.stats
    }

    fn flow(&mut self, key: FlowKey, insert: bool) -> Option<&mut Flow> {
        let i = match self.flows.iter().position(|f| f.key == key) {
            Some(i) => i,
            None if insert && self.flows.len() < MAX_FLOWS => {
                self.flows.push(Flow {
                    key,
                    next_seq: None,
                    own_gaps: [(0, 0); OWN_GAPS],
                    gaps: 0,
                    acked: None,
                    recover: None,
                });
                self.flows.len() - 1
            }
            None => return None,
        };
        self.flows.get_mut(i)
    }

    /// A packet the session seals for the client (before the pacer).
    pub fn on_down(&mut self, pkt: &[u8]) {
        let Some(seg) = tcp_seg::parse(pkt) else {
            return;
        };
        if seg.payload == 0 || seg.control {
            return;
        }
        self.wire = self
            .wire
            .saturating_add(u64::from(seg.ip_len) + RECORD_OVERHEAD);
        self.payload = self.payload.saturating_add(u64::from(seg.payload));
        let Some(f) = self.flow(seg.down_flow(), true) else {
            return;
        };
        let end = seg.seq.wrapping_add(seg.payload);
        let Some(next) = f.next_seq else {
            f.next_seq = Some(end);
            return;
        };
        if seg.seq.wrapping_sub(next) as i32 > 0 {
            // Bytes between what we sent last and this one never reached us
            // or were dropped before the session: a hole of ours.
            f.own_gaps[f.gaps % OWN_GAPS] = (next, seg.seq);
            f.gaps = f.gaps.wrapping_add(1);
        }
        // A retransmission (at or below `next`) moves nothing back.
        if end.wrapping_sub(next) as i32 > 0 {
            f.next_seq = Some(end);
        }
    }

    /// A packet from the client (after the record authenticated).
    pub fn on_up(&mut self, now: Instant, pkt: &[u8]) {
        self.roll(now);
        let Some(seg) = tcp_seg::parse(pkt) else {
            return;
        };
        if !seg.ack_flag || seg.control {
            return;
        }
        self.on_ack(now, &seg);
    }

    fn on_ack(&mut self, now: Instant, seg: &TcpSeg) {
        let Some(f) = self.flow(seg.up_flow(), false) else {
            return;
        };
        let mut acked = 0u64;
        match f.acked {
            Some(prev) => {
                let d = seg.ack.wrapping_sub(prev) as i32;
                if d > 0 {
                    acked = d as u64;
                    f.acked = Some(seg.ack);
                }
            }
            None => f.acked = Some(seg.ack),
        }
        // A SACK block above the cumulative ACK: the client is missing the
        // bytes from `ack` (RFC 2018 §4). A block at or below it is a D-SACK
        // (RFC 2883: a duplicate arrived), not a loss.
        let loss = seg
            .sack
            .is_some_and(|left| left.wrapping_sub(seg.ack) as i32 > 0)
            && f.recover
                .is_none_or(|r| seg.ack.wrapping_sub(r) as i32 >= 0);
        let own = loss && f.own_hole(seg.ack);
        if loss && !own {
            f.recover = f.next_seq;
        }
        self.sample_acked = self.sample_acked.saturating_add(acked);
        if own {
            self.stats.own_losses += 1;
        } else if loss {
            self.stats.client_losses += 1;
            self.cut(now);
        }
    }

    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.sample_start);
        if age < SAMPLE {
            return;
        }
        let rate = u128::from(self.sample_acked) * 1_000_000_000 / age.as_nanos().max(1);
        self.samples[self.next_sample % SAMPLES] = u64::try_from(rate).unwrap_or(u64::MAX);
        self.next_sample = self.next_sample.wrapping_add(1);
        self.sample_start = now;
        self.sample_acked = 0;
    }

    /// The client's delivery rate in wire bytes per second (0: unknown).
    fn delivered(&self) -> u64 {
        let best = self.samples.iter().copied().max().unwrap_or(0);
        if self.payload == 0 {
            return 0;
        }
        let wire = u128::from(best) * u128::from(self.wire) / u128::from(self.payload);
        u64::try_from(wire).unwrap_or(u64::MAX)
    }

    fn cut(&mut self, now: Instant) {
        if self
            .last_cut
            .is_some_and(|t| now.saturating_duration_since(t) < ROUND)
        {
            return;
        }
        let rate = self.rate(now);
        let base = match self.delivered() {
            0 => rate,
            d => d.min(rate),
        };
        let delivered = self.delivered();
        // At most by half at once: a delivery rate read while TCP was still
        // starting (or recovering) must not take the cap to the floor (a cut
        // from 3 Gbit/s to 10 Mbit/s, BENCHMARKS.md issue 13 pace, round 4).
        self.before_cut = rate;
        self.rate = (base / 16 * self.cfg.cut_16ths).max(rate / 2).max(MIN_RATE);
        tracing::debug!(
            at_ms = now.saturating_duration_since(self.started).as_millis() as u64,
            from_mbit = rate * 8 / 1_000_000,
            delivered_mbit = delivered * 8 / 1_000_000,
            to_mbit = self.rate * 8 / 1_000_000,
            "DTLS learnt pacing: cut"
        );
        self.last_cut = Some(now);
        self.grown_at = now;
        self.stats.cuts += 1;
        self.stats.min_rate = self.stats.min_rate.min(self.rate);
    }
}

/// A learning session says at its end what the rule did (next to the
/// pacer's own line).
impl Drop for LearntRate {
    fn drop(&mut self) {
        let s = self.stats;
        if s.client_losses == 0 && s.own_losses == 0 {
            return;
        }
        let secs = self
            .area_at
            .saturating_duration_since(self.started)
            .as_secs_f64()
            .max(1e-9);
        tracing::info!(
            "DTLS learnt pacing: {} client losses, {} own losses, {} cuts, lowest {} Mbit/s, mean {:.0} Mbit/s over {:.1} s, last {} Mbit/s",
            s.client_losses,
            s.own_losses,
            s.cuts,
            s.min_rate * 8 / 1_000_000,
            self.area as f64 * 8.0 / 1e6 / secs,
            secs,
            self.rate * 8 / 1_000_000,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tcp_seg::tests::{v4, v4_up};

    const MSS: u32 = 1300;

    fn data(seq: u32) -> Vec<u8> {
        v4(seq, 1, 0x10, &[], MSS as usize)
    }

    /// Sends segments [from, to) (in MSS) except those in `skip`.
    fn send(r: &mut LearntRate, from: u32, to: u32, skip: &[u32]) {
        for i in from..to {
            if !skip.contains(&i) {
                r.on_down(&data(i * MSS));
            }
        }
    }

    /// The client acknowledges `segs` segments per ms for `ms` ms from
    /// segment `from` on (an ACK every 2 segments); returns the next.
    fn deliver(r: &mut LearntRate, now: &mut Instant, from: u32, segs: u32, ms: u32) -> u32 {
        let mut next = from;
        for _ in 0..ms {
            send(r, next, next + segs, &[]);
            for _ in 0..segs / 2 {
                next += 2;
                r.on_up(*now, &v4_up(next * MSS, None));
            }
            *now += Duration::from_millis(1);
        }
        next
    }

    // 200 segments per ms of 1,300 bytes: 260 MB/s of TCP payload; on the
    // wire (1,340 + 38 per segment) 275.6 MB/s.
    const WIRE_RATE: u64 = 275_600_000;

    #[test]
    fn a_client_loss_cuts_to_a_share_of_what_the_client_delivered() {
        let t0 = Instant::now();
        let max = 375_000_000; // 3 Gbit/s
        let mut r = LearntRate::new(max, t0);
        let mut now = t0;
        let next = deliver(&mut r, &mut now, 0, 200, 50);
        assert_eq!(r.rate(now), max, "no loss: the ceiling");
        // The client's buffer dropped segment `next`: it SACKs what followed.
        send(&mut r, next, next + 4, &[]);
        r.on_up(now, &v4_up(next * MSS, Some((next + 1) * MSS)));
        let cut = r.rate(now);
        let want = WIRE_RATE / 16 * 15;
        assert!(
            cut.abs_diff(want) < want / 100,
            "cut to {cut}, want ~{want}"
        );
        assert_eq!(r.stats().client_losses, 1);
        // More duplicate ACKs for the same hole: no second cut.
        for _ in 0..5 {
            now += ROUND;
            r.on_up(now, &v4_up(next * MSS, Some((next + 2) * MSS)));
        }
        assert_eq!(r.stats().cuts, 1);
    }

    #[test]
    fn a_loss_during_recovery_does_not_ratchet_the_cap_down() {
        let t0 = Instant::now();
        let mut r = LearntRate::new(375_000_000, t0);
        let mut now = t0;
        let next = deliver(&mut r, &mut now, 0, 200, 50);
        send(&mut r, next, next + 100, &[]);
        r.on_up(now, &v4_up(next * MSS, Some((next + 1) * MSS)));
        let first = r.rate(now);
        // TCP recovers a burst of losses for 60 ms: the cumulative ACK moves
        // from hole to hole (one segment every 10 ms), SACKing the rest.
        for i in 1..=60 {
            now += Duration::from_millis(1);
            let ack = next + i / 10;
            r.on_up(now, &v4_up(ack * MSS, Some((next + 50) * MSS)));
        }
        assert_eq!(r.stats().cuts, 1, "holes of one episode: one cut");
        // Recovered; data sent after the cut is lost: a new episode.
        send(&mut r, next + 100, next + 110, &[]);
        r.on_up(now, &v4_up((next + 100) * MSS, Some((next + 101) * MSS)));
        assert_eq!(r.stats().cuts, 2);
        let second = r.rate(now);
        // Cut from what the client took before the loss (as the first
        // time), not from the crawl of the recovery.
        assert!(
            second.abs_diff(first) < first / 100,
            "second cut to {second}, first {first}"
        );
    }

    #[test]
    fn our_own_drops_do_not_cut() {
        let t0 = Instant::now();
        let mut r = LearntRate::new(375_000_000, t0);
        let mut now = t0;
        let next = deliver(&mut r, &mut now, 0, 200, 20);
        // Our queue dropped segments next+1 and next+2: the session never
        // sent them, and the client SACKs around that hole.
        send(&mut r, next, next + 10, &[next + 1, next + 2]);
        r.on_up(now, &v4_up((next + 1) * MSS, Some((next + 3) * MSS)));
        assert_eq!(r.stats().own_losses, 1);
        assert_eq!((r.stats().client_losses, r.stats().cuts), (0, 0));
        assert_eq!(r.rate(now), 375_000_000);
        // A D-SACK (a duplicate arrived, block below the ACK) is no loss.
        r.on_up(now, &v4_up((next + 10) * MSS, Some(next * MSS)));
        assert_eq!(r.stats().client_losses, 0);
    }

    #[test]
    fn the_cap_grows_back_to_the_ceiling_without_losses() {
        let t0 = Instant::now();
        let max = 375_000_000;
        let mut r = LearntRate::new(max, t0);
        let mut now = t0;
        let next = deliver(&mut r, &mut now, 0, 200, 20);
        send(&mut r, next, next + 4, &[]);
        r.on_up(now, &v4_up(next * MSS, Some((next + 1) * MSS)));
        let cut = r.rate(now);
        assert!(r.capped());
        // One round later: a quarter of the way back to the cap before the cut.
        now += ROUND;
        let back = r.rate(now);
        assert_eq!(back, cut + (max - cut) / 4);
        // Near it, 1/64 a round.
        now += ROUND * 20;
        let near = r.rate(now);
        assert!(near >= max / 16 * 15, "{near}");
        now += ROUND;
        assert_eq!(r.rate(now), (near + (near >> GROWTH_SHIFT)).min(max));
        // Never above the ceiling, however long.
        now += ROUND * 1000;
        assert_eq!(r.rate(now), max);
        assert!(!r.capped());
    }

    #[test]
    fn cuts_come_at_most_once_a_round_and_never_below_the_floor() {
        let t0 = Instant::now();
        let mut r = LearntRate::new(375_000_000, t0);
        let mut now = t0;
        // A client that takes 10 bytes a ms and loses some of each: a new
        // loss episode every ms.
        for i in 0..2000u32 {
            r.on_down(&v4(i * 10, 1, 0x10, &[], 10));
            r.on_up(now, &v4_up(i * 10, Some(i * 10 + 5)));
            now += Duration::from_millis(1);
        }
        let s = r.stats();
        assert_eq!(s.client_losses, 2000);
        let rounds = 2000 / ROUND.as_millis() as u64;
        assert!(s.cuts <= rounds + 1, "{} cuts in {rounds} rounds", s.cuts);
        assert!(s.cuts >= rounds - 1, "{} cuts in {rounds} rounds", s.cuts);
        assert_eq!(s.min_rate, MIN_RATE);
    }

    #[test]
    fn flows_and_holes_are_bounded() {
        let t0 = Instant::now();
        let mut r = LearntRate::new(375_000_000, t0);
        for port in 0..100u16 {
            let mut p = data(0);
            p[20..22].copy_from_slice(&port.to_be_bytes());
            r.on_down(&p);
        }
        assert_eq!(r.flows.len(), MAX_FLOWS);
        // Every other segment dropped by us: the hole memory wraps.
        let mut r = LearntRate::new(375_000_000, t0);
        for i in 0..1000 {
            r.on_down(&data(i * 2 * MSS));
        }
        assert_eq!(r.flows[0].gaps, 999);
        assert!(r.flows[0].own_hole(1997 * MSS));
        assert!(!r.flows[0].own_hole(2 * MSS));
        assert!(!r.flows[0].own_hole(MSS), "the oldest hole is forgotten");
    }
}

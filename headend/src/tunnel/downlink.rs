//! TUN -> client: a downlink batch from the dataplane, in order:
//! 1. the session's filter drops what the policy denies (`filter_down`);
//! 2. the session picks the channel (`TunnelSession::downlink_via`);
//! 3. DTLS: each packet is sealed into the outbound datagram queue
//!    (`DtlsPath::send_batch`), then sent as the pacer allows (`send_paced`);
//!    CSTP: each packet becomes one DATA frame, one TLS record (`write_batch`);
//! 4. what else is queued follows in the same turn (DTLS: until
//!    `PACED_QUEUE_BYTES` wait to be sent and at least as many packets as the
//!    uplink moved, `turn_budget.rs`; CSTP: all of it), then one paced send or
//!    one TLS flush.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::Outcome;
use super::dtls_path::{DtlsPath, udp_for};
use super::pump::Tunnel;
use super::session::Via;
use crate::dtls_pacing::{HrTimer, PacingConfig};
use crate::proto::cstp::{self, CstpSession, FrameType};
use crate::server::Tls;
use dataplane::enforce::Enforcer;
use dataplane::policy::Direction;

/// A paced session takes queued downlink batches until this much waits to be
/// sent (a few bursts), so the queue, not the session, holds a long burst.
const PACED_QUEUE_BYTES: usize = 128 * 1024;

impl Tunnel<'_> {
    /// A batch from the dataplane (the stages at the head of this file), and
    /// what else is queued behind it. Returns Some when the tunnel ends.
    pub(super) async fn on_downlink(
        &mut self,
        mut batch: dataplane::PacketBatch,
    ) -> Option<Outcome> {
        let (tls, pool, stats) = (&mut *self.tls, self.pool, &self.stats);
        let (session, downlink, down_filter) =
            (&mut self.session, &mut self.downlink, &mut self.down_filter);
        let turn = &mut self.turn;
        filter_down(down_filter, &mut batch);
        let mut drained = batch.len() as u64;
        let now = Instant::now();
        if session.downlink_via(now) == Via::Dtls
            && let Some(d) = self.dtls.as_mut()
        {
            d.send_batch(&mut batch, &mut session.cstp, now, stats);
            pool.put(batch);
            // At least as many packets as the uplink moved since the
            // last drain (turn_budget.rs: both directions share the turns).
            while turn.drain_more(drained, d.queued_bytes(), PACED_QUEUE_BYTES)
                && let Ok(mut more) = downlink.try_recv()
            {
                filter_down(down_filter, &mut more);
                drained += more.len() as u64;
                d.send_batch(&mut more, &mut session.cstp, now, stats);
                pool.put(more);
            }
            turn.drained(drained);
            if let Some(wait) = d.send_paced().await {
                self.pace_armed = arm(&mut self.pace_timer, wait);
                if !self.pace_armed {
                    d.flush().await;
                }
            }
            return None;
        }
        let mut result = write_batch(tls, &mut batch, &mut session.cstp, now, stats);
        pool.put(batch);
        // Drain what else is queued before one flush.
        while result.is_ok() {
            match downlink.try_recv() {
                Ok(mut more) => {
                    filter_down(down_filter, &mut more);
                    drained += more.len() as u64;
                    result = write_batch(tls, &mut more, &mut session.cstp, now, stats);
                    pool.put(more);
                }
                Err(_) => break,
            }
        }
        turn.drained(drained);
        if let Err(e) = result {
            return Some(Outcome::Lost(format!("TLS write: {e}")));
        }
        if let Err(e) = tls.flush().await {
            return Some(Outcome::Lost(format!("TLS write: {e}")));
        }
        None
    }

    /// The pacing timer fired: the next share of the paced DTLS datagrams.
    pub(super) async fn on_pace_timer(&mut self, fired: std::io::Result<()>) {
        self.pace_armed = false;
        if let Err(e) = fired {
            tracing::debug!("pacing timer: {e}");
        }
        if let Some(d) = self.dtls.as_mut()
            && let Some(wait) = d.send_paced().await
        {
            self.pace_armed = arm(&mut self.pace_timer, wait);
            if !self.pace_armed {
                d.flush().await;
            }
        }
    }
}

/// Drops the packets of a downlink batch that the session's filter denies.
fn filter_down(enforcer: &mut Enforcer, batch: &mut dataplane::PacketBatch) {
    let keep = enforcer.decide(batch.iter(), Direction::ToClient);
    batch.retain_flags(keep);
}

/// Waits for the pacing timer (only polled while armed).
pub(super) async fn fired(timer: &Option<HrTimer>) -> std::io::Result<()> {
    match timer {
        Some(t) => t.fired().await,
        None => Ok(()),
    }
}

/// Arms the pacing timer, creating it if needed; false if that failed (the
/// caller then sends without pacing).
pub(super) fn arm(timer: &mut Option<HrTimer>, after: Duration) -> bool {
    if timer.is_none() {
        match HrTimer::new() {
            Ok(t) => *timer = Some(t),
            Err(e) => {
                tracing::debug!("pacing timer: {e}");
                return false;
            }
        }
    }
    timer.as_ref().is_some_and(|t| t.arm(after).is_ok())
}

impl DtlsPath {
    /// Encrypts a downlink batch (type byte 0 in the headroom before each packet).
    pub(super) fn send_batch(
        &mut self,
        batch: &mut dataplane::PacketBatch,
        cstp: &mut CstpSession,
        now: Instant,
        stats: &crate::sessions::SessionStats,
    ) {
        let Some(ch) = self.channel.as_mut() else {
            return;
        };
        let learnt = &mut self.learnt;
        let (mut bytes, mut packets) = (0u64, 0u64);
        batch.for_each_with_headroom(|frame| {
            let Some(rec) = frame.get_mut(cstp::HEADER_LEN - 1..) else {
                return;
            };
            if let Some(l) = learnt.as_mut() {
                l.on_down(rec.get(1..).unwrap_or_default());
            }
            rec[0] = 0;
            if ch.write_record(rec) {
                let len = rec.len() - 1;
                cstp.on_data_sent(now, len, false);
                bytes += len as u64;
                packets += 1;
            }
        });
        stats.bytes_tx.fetch_add(bytes, Ordering::Relaxed);
        stats.packets_tx.fetch_add(packets, Ordering::Relaxed);
    }

    pub(super) async fn flush(&mut self) {
        if let Some(ch) = self.channel.as_mut()
            && !ch.outbound().is_empty()
        {
            let peer = ch.peer;
            udp_for(&self.hub, &self.direct, peer)
                .send(&self.hub.counters, peer, ch.outbound())
                .await;
        }
    }

    /// Unsent downlink datagrams (bytes), waiting for the pacer.
    pub(super) fn queued_bytes(&mut self) -> usize {
        self.channel
            .as_mut()
            .map_or(0, |ch| ch.outbound().pending_bytes())
    }

    /// Sends what the pacer allows now; returns how long until the rest may
    /// go (None: nothing left, or no pacing and all sent).
    pub(super) async fn send_paced(&mut self) -> Option<Duration> {
        let Some(pacer) = self.pacer.as_mut() else {
            self.flush().await;
            return None;
        };
        let ch = self.channel.as_mut()?;
        let peer = ch.peer;
        let out = ch.outbound();
        if out.is_empty() {
            return None;
        }
        let now = Instant::now();
        if let Some(l) = self.learnt.as_mut() {
            pacer.set_rate(now, l.rate(now));
            let base = PacingConfig::process_default().map_or(0, |c| c.catch_up);
            pacer.set_catch_up(if l.capped() {
                base.max(l.catch_up())
            } else {
                base
            });
        }
        let budget = pacer.budget(now);
        // A datagram larger than the whole burst still leaves, alone, once
        // the bucket is full (jumbo MTUs).
        let n = out
            .fitting(usize::try_from(budget).unwrap_or(usize::MAX))
            .max(usize::from(budget >= pacer.config().burst));
        if n > 0 {
            let sent = udp_for(&self.hub, &self.direct, peer)
                .send_front(&self.hub.counters, peer, out, n)
                .await;
            pacer.spend(sent as u64);
        }
        if out.is_empty() {
            return None;
        }
        let now = Instant::now();
        let at = pacer.ready_at(now, out.pending_bytes() as u64);
        Some(at.saturating_duration_since(now))
    }
}

/// Writes each packet of a downlink batch as one DATA frame (one TLS record),
/// using the batch's headroom for the 8-byte header. Not flushed.
fn write_batch(
    tls: &mut Tls,
    batch: &mut dataplane::PacketBatch,
    cstp: &mut CstpSession,
    now: Instant,
    stats: &crate::sessions::SessionStats,
) -> std::io::Result<()> {
    let conn = tls.get_mut().1;
    let mut res = Ok(());
    let (mut bytes, mut packets) = (0u64, 0u64);
    batch.for_each_with_headroom(|frame| {
        if res.is_err() {
            return;
        }
        let len = frame.len() - cstp::HEADER_LEN;
        let Ok(len16) = u16::try_from(len) else {
            return;
        };
        let mut hdr = [0u8; cstp::HEADER_LEN];
        cstp::encode_header(FrameType::Data, len16, &mut hdr);
        frame[..cstp::HEADER_LEN].copy_from_slice(&hdr);
        res = conn.writer().write_all(frame);
        cstp.on_data_sent(now, len, true);
        bytes += len as u64;
        packets += 1;
    });
    stats.bytes_tx.fetch_add(bytes, Ordering::Relaxed);
    stats.packets_tx.fetch_add(packets, Ordering::Relaxed);
    res
}

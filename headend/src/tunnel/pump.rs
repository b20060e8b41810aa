//! The event loop of one tunnel. It waits for whatever comes next and hands it
//! to the direction it belongs to; what to do is decided in `session.rs`.
//!
//! Events:
//! - TLS bytes from the client: CSTP frames up (`uplink.rs`);
//! - DTLS datagrams from the client: DTLS records up (`uplink.rs`);
//! - a downlink batch from the dataplane: down over DTLS or CSTP (`downlink.rs`);
//! - the pacing timer: the next share of paced DTLS datagrams (`downlink.rs`);
//! - a session command (logoff, superseded, new timeouts);
//! - the session's next timer: DPD, keepalive, idle/session end (`session.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connect::session_addresses;
use super::downlink::fired;
use super::dtls_path::{DtlsPath, recv_dtls};
use super::session::{DtlsLink, TunnelSession, TunnelTimer};
use super::uplink::process_input;
use super::{Outcome, PacketPath, end_reason};
use crate::dtls_pacing::HrTimer;
use crate::proto::cstp::{self, CstpSession, FrameDecoder, FrameType, TimerAction};
use crate::server::Tls;
use crate::sessions::{Attached, SessionCommand, SessionStats};
use crate::turn_budget::TurnBudget;
use dataplane::enforce::Enforcer;

/// What an idle session keeps for TLS reads: a small buffer. When a read fills
/// it, the rest of what TLS has ready is drained at once through the worker
/// thread's [`super::SCRATCH`] (issue 12: no 64 KiB per session while idle).
const SESSION_READ_BUF: usize = 2048;

/// One running tunnel: the sans-IO session and the I/O it drives. [`pump`] is
/// its event loop; each direction's handlers are in `uplink.rs` and `downlink.rs`.
pub(super) struct Tunnel<'a> {
    pub(super) tls: &'a mut Tls,
    pub(super) session: TunnelSession,
    pub(super) dtls: Option<DtlsPath>,
    /// CSTP frames from the client.
    pub(super) decoder: FrameDecoder,
    /// Client -> TUN: packets checked and batched for the worker's TUN queue.
    pub(super) uplink: dataplane::tun::Uplink,
    /// TUN -> client: the session's queue from the dataplane, and its filter.
    pub(super) downlink: dataplane::DownlinkRx,
    pub(super) down_filter: Enforcer,
    /// Created when the pacer first makes the downlink wait; dropped when idle.
    pub(super) pace_timer: Option<HrTimer>,
    pub(super) pace_armed: bool,
    /// Packets moved this turn; the task yields once its share is used
    /// (turn_budget.rs: the TUN reader and other sessions run in between).
    pub(super) turn: TurnBudget,
    pub(super) stats: Arc<SessionStats>,
    /// The worker's own pool: batches go back where this session's worker
    /// takes them from.
    pub(super) pool: &'a dataplane::BatchPool,
}

/// Moves frames until the tunnel ends.
pub(super) async fn pump(
    tls: &mut Tls,
    leftover: Vec<u8>,
    mut att: Attached,
    downlink: dataplane::DownlinkRx,
    dtls: Option<DtlsPath>,
    packets: &PacketPath,
) -> Outcome {
    let lane = &packets.lane;
    let now = Instant::now();
    let cstp = CstpSession::new(
        TunnelSession::cstp_config(&att.policy, att.session_deadline, now),
        now,
    );
    let link = dtls.as_ref().map(|d| DtlsLink::new(d.link_cfg, now));
    // Big enough for a jumbo DATA frame; anything larger is a protocol error.
    let mut decoder = FrameDecoder::new(usize::from(u16::MAX));
    decoder.feed(&leftover);
    let label = format!("{}@{}", att.username, att.address);
    let uplink = dataplane::tun::Uplink::new(
        lane.tun.clone(),
        session_addresses(&att),
        packets.counters.clone(),
    )
    .with_enforcer(Enforcer::new(
        packets.policy.clone(),
        att.filter.clone(),
        label.clone(),
    ));
    let down_filter = Enforcer::new(packets.policy.clone(), att.filter.clone(), label);
    let stats = att.stats.clone();
    stats.set_tls_cipher(tls.get_ref().1.negotiated_cipher_suite());
    // Make sure rustls takes a whole frame per write (one frame = one record).
    tls.get_mut().1.set_buffer_limit(None);
    let mut rbuf = [0u8; SESSION_READ_BUF];
    let mut t = Tunnel {
        tls,
        session: TunnelSession::new(cstp, link),
        dtls,
        decoder,
        uplink,
        downlink,
        down_filter,
        pace_timer: None,
        pace_armed: false,
        turn: TurnBudget::default(),
        stats,
        pool: &lane.pool,
    };

    // Frames that arrived with the CONNECT request.
    if let Some(o) = process_input(
        &mut t.decoder,
        &mut t.session,
        &mut t.uplink,
        t.tls,
        &t.stats,
    )
    .await
    {
        return o;
    }
    t.uplink.flush().await;

    let mut timer_at = t.session.poll_timeout();
    let timer = tokio::time::sleep_until(
        timer_at
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
            .into(),
    );
    tokio::pin!(timer);
    loop {
        if t.turn.should_yield() {
            tokio::task::yield_now().await;
        }
        // One timer entry for the tunnel's life, moved when the session's
        // next timer moves: a new `sleep_until` per loop registered a new
        // entry each time, and one earlier than the driver's next wake-up
        // wrote the runtime's eventfd (`Waker::wake`) and cost an extra
        // `epoll_wait` return, every few uplink events (BENCHMARKS.md,
        // 2026-12-08 02:20-02:40). A later deadline only extends the entry.
        let next = t.session.poll_timeout();
        // Also after it fired: a completed `Sleep` is ready at once, so it
        // is re-armed even when the session's next timer did not move
        // (none at all for an hour: the old deadline would spin this loop).
        if next != timer_at || timer.is_elapsed() {
            timer_at = next;
            let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            r = t.tls.read(&mut rbuf) => {
                let n = match r {
                    Ok(0) => return Outcome::Lost("client closed the TLS connection".into()),
                    Ok(n) => n,
                    Err(e) => return Outcome::Lost(format!("TLS read: {e}")),
                };
                // A full buffer: TLS may have more ready right now.
                let full = n == rbuf.len();
                if let Some(o) = t.on_tls_bytes(rbuf.get(..n).unwrap_or_default(), full).await {
                    return o;
                }
            }
            Some(msg) = recv_dtls(&mut t.dtls, t.pool) => t.on_datagrams(msg).await,
            // Paced DTLS downlink: the next share of the queued datagrams.
            r = fired(&t.pace_timer), if t.pace_armed => t.on_pace_timer(r).await,
            // While paced datagrams wait, the next batches wait in the queue
            // (unencrypted; a full queue drops and counts, dataplane side).
            batch = t.downlink.recv(), if !t.pace_armed => {
                let Some(batch) = batch else {
                    return Outcome::Lost("dataplane closed".into());
                };
                if let Some(o) = t.on_downlink(batch).await {
                    return o;
                }
            }
            cmd = att.control.recv() => {
                match cmd {
                    Some(SessionCommand::Logoff(reason)) => {
                        tracing::info!("logging off: {reason}");
                        let frame = cstp::disconnect_frame(&reason.to_string());
                        let _ = t.tls.write_all(&frame).await;
                        let _ = t.tls.flush().await;
                        return Outcome::LoggedOff;
                    }
                    // A reload changed the group-policy's timeouts (reload.rs).
                    Some(SessionCommand::Timeouts { idle, session_deadline }) => {
                        t.session.cstp.set_timeouts(idle, session_deadline);
                    }
                    Some(SessionCommand::Superseded) | None => return Outcome::Superseded,
                }
            }
            () = &mut timer => {
                if let Some(o) = t.on_timers().await {
                    return o;
                }
            }
        }
    }
}

impl Tunnel<'_> {
    /// The session's timer: trims buffers after a burst, then runs what is due
    /// (DPD and keepalive on CSTP and DTLS, the end of the session). Returns
    /// Some when the tunnel ends.
    async fn on_timers(&mut self) -> Option<Outcome> {
        // DPD/keepalive timers fire while a session is quiet: give
        // back what a burst made it hold.
        if self.session.quiet(Instant::now()) {
            if !self.pace_armed {
                self.pace_timer = None;
            }
            self.uplink.release_buffers();
            self.down_filter.release_buffers();
            self.decoder.shrink_if_empty();
            if let Some(ch) = self.dtls.as_mut().and_then(|d| d.channel.as_mut()) {
                ch.release_buffers();
            }
        }
        let now = Instant::now();
        // Bounded: at most one action of each kind is due at once.
        for _ in 0..4 {
            match self.session.on_timeout(now) {
                TunnelTimer::Cstp(TimerAction::Nothing) => break,
                TunnelTimer::Cstp(TimerAction::SendDpdReq) => {
                    if let Err(e) = send_empty(self.tls, FrameType::DpdReq).await {
                        return Some(Outcome::Lost(format!("TLS write: {e}")));
                    }
                }
                TunnelTimer::Cstp(TimerAction::SendKeepalive) => {
                    if let Err(e) = send_empty(self.tls, FrameType::Keepalive).await {
                        return Some(Outcome::Lost(format!("TLS write: {e}")));
                    }
                }
                TunnelTimer::Cstp(TimerAction::End(r)) => {
                    let outcome = end_reason(r);
                    if let Outcome::Ended(reason) = &outcome {
                        let frame = cstp::disconnect_frame(&reason.to_string());
                        let _ = self.tls.write_all(&frame).await;
                        let _ = self.tls.flush().await;
                    }
                    return Some(outcome);
                }
                TunnelTimer::DtlsDpdReq => {
                    if let Some(d) = self.dtls.as_mut() {
                        d.send_dpd_req(&self.session).await;
                    }
                }
                TunnelTimer::DtlsDead => {
                    tracing::info!("DTLS DPD: no answer from the client; downlink now over CSTP");
                    self.stats.dtls_active.store(false, Ordering::Relaxed);
                }
            }
        }
        None
    }
}

async fn send_empty(tls: &mut Tls, kind: FrameType) -> std::io::Result<()> {
    tls.write_all(&cstp::empty_frame(kind)).await?;
    tls.flush().await
}

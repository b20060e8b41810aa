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

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::connect::session_addresses;
use super::downlink::{PACED_QUEUE_BYTES, arm, filter_down, fired, write_batch};
use super::dtls_path::{DtlsPath, recv_dtls};
use super::session::{DtlsLink, TunnelSession, TunnelTimer, Via};
use super::uplink::{drain_ready, process_input};
use super::{Outcome, PacketPath, end_reason};
use crate::dtls_pacing::HrTimer;
use crate::proto::cstp::{self, CstpConfig, CstpSession, FrameDecoder, FrameType, TimerAction};
use crate::server::Tls;
use crate::sessions::{Attached, SessionCommand};
use crate::turn_budget::TurnBudget;
use dataplane::enforce::Enforcer;

/// What an idle session keeps for TLS reads: a small buffer. When a read fills
/// it, the rest of what TLS has ready is drained at once through the worker
/// thread's [`SCRATCH`] (issue 12: no 64 KiB per session while idle).
const SESSION_READ_BUF: usize = 2048;

/// A session without data for this long drops its uplink buffers and shrinks
/// its CSTP decoder (at its next DPD/keepalive/idle timer).
const IDLE_TRIM_AFTER: Duration = Duration::from_secs(5);

/// Moves frames until the tunnel ends.
pub(super) async fn pump(
    tls: &mut Tls,
    leftover: Vec<u8>,
    mut att: Attached,
    mut downlink: mpsc::Receiver<dataplane::PacketBatch>,
    mut dtls: Option<DtlsPath>,
    packets: &PacketPath,
) -> Outcome {
    let lane = &packets.lane;
    // The worker's own pool: batches go back where this session's worker
    // takes them from.
    let pool = &lane.pool;
    let p = &att.policy;
    let secs = |s: Option<u32>| {
        s.filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s)))
    };
    let now = Instant::now();
    let cstp = CstpSession::new(
        CstpConfig {
            dpd_interval: secs(p.anyconnect_dpd_gateway_secs),
            keepalive: None,
            idle_timeout: p.vpn_idle_timeout,
            session_timeout: att
                .session_deadline
                .map(|d| d.saturating_duration_since(now)),
        },
        now,
    );
    let link = dtls.as_ref().map(|d| DtlsLink::new(d.link_cfg, now));
    let mut session = TunnelSession::new(cstp, link);
    // Big enough for a jumbo DATA frame; anything larger is a protocol error.
    let mut decoder = FrameDecoder::new(usize::from(u16::MAX));
    decoder.feed(&leftover);
    let label = format!("{}@{}", att.username, att.address);
    let mut uplink = dataplane::tun::Uplink::new(
        lane.tun.clone(),
        session_addresses(&att),
        packets.counters.clone(),
    )
    .with_enforcer(Enforcer::new(
        packets.policy.clone(),
        att.filter.clone(),
        label.clone(),
    ));
    let mut down_filter = Enforcer::new(packets.policy.clone(), att.filter.clone(), label);
    let stats = att.stats.clone();
    stats.set_tls_cipher(tls.get_ref().1.negotiated_cipher_suite());
    // Make sure rustls takes a whole frame per write (one frame = one record).
    tls.get_mut().1.set_buffer_limit(None);
    let mut rbuf = [0u8; SESSION_READ_BUF];

    // Frames that arrived with the CONNECT request.
    if let Some(o) = process_input(&mut decoder, &mut session.cstp, &mut uplink, tls, &stats).await
    {
        return o;
    }
    uplink.flush().await;
    // Created when the pacer first makes the downlink wait; dropped when idle.
    let mut pace_timer: Option<HrTimer> = None;
    let mut pace_armed = false;
    // Packets moved this turn; the task yields once its share is used
    // (turn_budget.rs: the TUN reader and other sessions run in between).
    let mut turn = TurnBudget::default();

    loop {
        if turn.should_yield() {
            tokio::task::yield_now().await;
        }
        let deadline = session
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = tls.read(&mut rbuf) => {
                let n = match r {
                    Ok(0) => return Outcome::Lost("client closed the TLS connection".into()),
                    Ok(n) => n,
                    Err(e) => return Outcome::Lost(format!("TLS read: {e}")),
                };
                decoder.feed(rbuf.get(..n).unwrap_or_default());
                if n == rbuf.len() {
                    drain_ready(tls, &mut decoder);
                }
                let data_before = session.cstp.counters().packets_in;
                if let Some(o) = process_input(&mut decoder, &mut session.cstp, &mut uplink, tls, &stats).await {
                    uplink.flush().await;
                    return o;
                }
                uplink.flush().await;
                if let Err(e) = tls.flush().await {
                    return Outcome::Lost(format!("TLS write: {e}"));
                }
                turn.uplink(session.cstp.counters().packets_in.saturating_sub(data_before));
                // Data on CSTP means the client gave up on DTLS for now: answer
                // on CSTP too until DTLS data flows again.
                if session.cstp.counters().packets_in != data_before && session.on_cstp_data() {
                    tracing::info!("downlink now over CSTP (client sent data over CSTP)");
                    stats.dtls_active.store(false, Ordering::Relaxed);
                }
            }
            Some(msg) = recv_dtls(&mut dtls, pool) => {
                turn.uplink(msg.batch.len() as u64);
                if let Some(d) = dtls.as_mut()
                    && let Some(wait) = d.handle(msg, &mut session, &mut uplink, &stats, pool).await
                    && !pace_armed
                {
                    pace_armed = arm(&mut pace_timer, wait);
                    if !pace_armed {
                        d.flush().await;
                    }
                }
            }
            // Paced DTLS downlink: the next share of the queued datagrams.
            r = fired(&pace_timer), if pace_armed => {
                pace_armed = false;
                if let Err(e) = r {
                    tracing::debug!("pacing timer: {e}");
                }
                if let Some(d) = dtls.as_mut()
                    && let Some(wait) = d.send_paced().await
                {
                    pace_armed = arm(&mut pace_timer, wait);
                    if !pace_armed {
                        d.flush().await;
                    }
                }
            }
            // While paced datagrams wait, the next batches wait in the queue
            // (unencrypted; a full queue drops and counts, dataplane side).
            batch = downlink.recv(), if !pace_armed => {
                let Some(mut batch) = batch else {
                    return Outcome::Lost("dataplane closed".into());
                };
                filter_down(&mut down_filter, &mut batch);
                let mut drained = batch.len() as u64;
                let now = Instant::now();
                if session.downlink_via(now) == Via::Dtls
                    && let Some(d) = dtls.as_mut()
                {
                    d.send_batch(&mut batch, &mut session.cstp, now, &stats);
                    pool.put(batch);
                    // At least as many packets as the uplink moved since the
                    // last drain (turn_budget.rs: both directions share the turns).
                    while turn.drain_more(drained, d.queued_bytes(), PACED_QUEUE_BYTES)
                        && let Ok(mut more) = downlink.try_recv()
                    {
                        filter_down(&mut down_filter, &mut more);
                        drained += more.len() as u64;
                        d.send_batch(&mut more, &mut session.cstp, now, &stats);
                        pool.put(more);
                    }
                    turn.drained(drained);
                    if let Some(wait) = d.send_paced().await {
                        pace_armed = arm(&mut pace_timer, wait);
                        if !pace_armed {
                            d.flush().await;
                        }
                    }
                    continue;
                }
                let mut result = write_batch(tls, &mut batch, &mut session.cstp, now, &stats);
                pool.put(batch);
                // Drain what else is queued before one flush.
                while result.is_ok() {
                    match downlink.try_recv() {
                        Ok(mut more) => {
                            filter_down(&mut down_filter, &mut more);
                            drained += more.len() as u64;
                            result = write_batch(tls, &mut more, &mut session.cstp, now, &stats);
                            pool.put(more);
                        }
                        Err(_) => break,
                    }
                }
                turn.drained(drained);
                if let Err(e) = result {
                    return Outcome::Lost(format!("TLS write: {e}"));
                }
                if let Err(e) = tls.flush().await {
                    return Outcome::Lost(format!("TLS write: {e}"));
                }
            }
            cmd = att.control.recv() => {
                match cmd {
                    Some(SessionCommand::Logoff(reason)) => {
                        tracing::info!("logging off: {reason}");
                        let frame = cstp::disconnect_frame(&reason.to_string());
                        let _ = tls.write_all(&frame).await;
                        let _ = tls.flush().await;
                        return Outcome::LoggedOff;
                    }
                    // A reload changed the group-policy's timeouts (reload.rs).
                    Some(SessionCommand::Timeouts { idle, session_deadline }) => {
                        session.cstp.set_timeouts(idle, session_deadline);
                    }
                    Some(SessionCommand::Superseded) | None => return Outcome::Superseded,
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                // DPD/keepalive timers fire while a session is quiet: give
                // back what a burst made it hold.
                if session.cstp.last_data().elapsed() >= IDLE_TRIM_AFTER {
                    if !pace_armed {
                        pace_timer = None;
                    }
                    uplink.release_buffers();
                    down_filter.release_buffers();
                    decoder.shrink_if_empty();
                    if let Some(ch) = dtls.as_mut().and_then(|d| d.channel.as_mut()) {
                        ch.release_buffers();
                    }
                }
                let now = Instant::now();
                // Bounded: at most one action of each kind is due at once.
                for _ in 0..4 {
                    match session.on_timeout(now) {
                        TunnelTimer::Cstp(TimerAction::Nothing) => break,
                        TunnelTimer::Cstp(TimerAction::SendDpdReq) => {
                            if let Err(e) = send_empty(tls, FrameType::DpdReq).await {
                                return Outcome::Lost(format!("TLS write: {e}"));
                            }
                        }
                        TunnelTimer::Cstp(TimerAction::SendKeepalive) => {
                            if let Err(e) = send_empty(tls, FrameType::Keepalive).await {
                                return Outcome::Lost(format!("TLS write: {e}"));
                            }
                        }
                        TunnelTimer::Cstp(TimerAction::End(r)) => {
                            let outcome = end_reason(r);
                            if let Outcome::Ended(reason) = &outcome {
                                let frame = cstp::disconnect_frame(&reason.to_string());
                                let _ = tls.write_all(&frame).await;
                                let _ = tls.flush().await;
                            }
                            return outcome;
                        }
                        TunnelTimer::DtlsDpdReq => {
                            if let Some(d) = dtls.as_mut() {
                                d.send_dpd_req(&session).await;
                            }
                        }
                        TunnelTimer::DtlsDead => {
                            tracing::info!("DTLS DPD: no answer from the client; downlink now over CSTP");
                            stats.dtls_active.store(false, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

async fn send_empty(tls: &mut Tls, kind: FrameType) -> std::io::Result<()> {
    tls.write_all(&cstp::empty_frame(kind)).await?;
    tls.flush().await
}

//! A CSTP tunnel on one TLS connection: the hand-written CONNECT reply, then the
//! loop that moves frames between the client and the dataplane.
//!
//! Frames are written straight into the rustls connection, one `write` per frame
//! so each frame is its own TLS record (openconnect reads one frame per record),
//! and a batch of frames is flushed to the socket at once.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::{Config, SplitTunnelPolicy};
use crate::dtls::{AppId, DatagramKind, DtlsChannel, DtlsDatagrams, DtlsEvent, DtlsHub};
use crate::dtls_direct::DirectSocket;
use crate::dtls_pacing::{HrTimer, Pacer, PacingConfig};
use crate::proto::cstp::{
    self, CstpConfig, CstpSession, FrameAction, FrameDecoder, FrameType, TimerAction,
};
use crate::proto::dtls_dpd;
use crate::proto::dtls_resume::{self, DtlsMode, ResumeSuite};
use crate::proto::http::Request;
use crate::server::{Headend, Tls};
use crate::sessions::{AttachError, Attached, Detach, EndReason, SessionCommand};
use crate::tunnel_session::{
    Authentic, DtlsLink, DtlsLinkConfig, DtlsRecord, TunnelSession, TunnelTimer, Via,
};
use crate::turn_budget::TurnBudget;
use dataplane::enforce::Enforcer;
use dataplane::policy::Direction;

/// Datagram batches from the DTLS hub queued per session before it drops
/// (the downlink's queue is bounded in packets and bytes: dataplane `queue.rs`).
const DOWNLINK_QUEUE: usize = 256;

/// What an idle session keeps for TLS reads: a small buffer. When a read fills
/// it, the rest of what TLS has ready is drained at once through the worker
/// thread's [`SCRATCH`] (issue 12: no 64 KiB per session while idle).
const SESSION_READ_BUF: usize = 2048;

/// A session without data for this long drops its uplink buffers and shrinks
/// its CSTP decoder (at its next DPD/keepalive/idle timer).
const IDLE_TRIM_AFTER: Duration = Duration::from_secs(5);

/// A paced session takes queued downlink batches until this much waits to be
/// sent (a few bursts), so the queue, not the session, holds a long burst.
const PACED_QUEUE_BYTES: usize = 128 * 1024;

/// Large enough for any TLS read or DTLS record (16 KiB plaintext max).
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// One per worker thread, borrowed only by synchronous code (never across
    /// an await): bounded by the thread count, not by the session count.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; SCRATCH_LEN]);
}

/// Feeds what TLS has ready right now into `decoder`, without waiting.
/// Errors and EOF are left for the next awaited read to report.
fn drain_ready(tls: &mut Tls, decoder: &mut FrameDecoder) {
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, ReadBuf};
    // A no-op waker is fine: the caller's loop polls a real read next, which
    // registers the task's own waker again.
    let mut cx = Context::from_waker(Waker::noop());
    SCRATCH.with_borrow_mut(|buf| {
        // Bounded: 16 reads of up to 64 KiB, then back to the event loop.
        for _ in 0..16 {
            let mut rb = ReadBuf::new(buf);
            match std::pin::Pin::new(&mut *tls).poll_read(&mut cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    let full = rb.remaining() == 0;
                    decoder.feed(rb.filled());
                    if !full {
                        break;
                    }
                }
                _ => break,
            }
        }
    });
}

pub async fn run(
    mut tls: Tls,
    leftover: Vec<u8>,
    req: Request,
    peer: SocketAddr,
    h: Arc<Headend>,
    lane: crate::workers::Lane,
) -> Result<()> {
    let Some(cookie) = req.cookie("webvpn").filter(|c| !c.is_empty()) else {
        tracing::info!(%peer, "CONNECT without a webvpn cookie: 401");
        refuse(&mut tls, 401, "Unauthorized", "missing session cookie").await;
        return Ok(());
    };
    let previous = req
        .header("X-CSTP-Address")
        .and_then(|a| a.trim().parse::<Ipv4Addr>().ok());
    let want_v6 = client_does_ipv6(&req);
    let att = match h.sessions.attach(cookie, peer.ip(), previous, want_v6) {
        Ok(a) => a,
        Err(e @ AttachError::BadCookie) => {
            tracing::info!(%peer, "CONNECT refused: {e}");
            refuse(&mut tls, 401, "Unauthorized", &e.to_string()).await;
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(%peer, "CONNECT refused: {e}");
            refuse(&mut tls, 503, "Service Unavailable", &e.to_string()).await;
            return Ok(());
        }
    };
    let span = tracing::info_span!("session", index = att.index, user = %att.username, tunnel_group = %att.tunnel_group, ip = %att.address);
    let (index, generation) = (att.index, att.generation);
    // PSK-NEGOTIATE or session-resume mode (proto/dtls_resume.rs).
    let mode = dtls_resume::choose(&req, h.config.client_settings(&att.policy.name).dtls_resume);
    let dtls = match (&h.dtls, &mode) {
        (Some(hub), DtlsMode::Psk | DtlsMode::Resume { .. }) if att.policy.anyconnect_dtls => {
            match DtlsPath::new(hub.clone(), &tls, generation, &req, &att.policy, &mode) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(parent: &span, "DTLS not offered: {e:#}");
                    None
                }
            }
        }
        _ => None,
    };
    let dtls_offer = dtls
        .as_ref()
        .filter(|d| d.resume.is_none())
        .map(|d| (d.app_id, d.hub.port));
    let mut reply = connect_reply(&h.config, &att, &req, dtls_offer.as_ref());
    if let Some(d) = dtls.as_ref().filter(|d| d.resume.is_some()) {
        // Resume mode: its X-DTLS-* headers go before the blank line.
        let p = &att.policy;
        let mtu = dtls_resume::dtls_mtu(d.mtu, tunnel_mtu(p.anyconnect_mtu, &req));
        let extra = dtls_resume::reply_headers(
            &d.app_id,
            d.hub.port,
            p.anyconnect_keepalive_secs,
            p.anyconnect_dpd_client_secs,
            &mode,
            mtu,
        );
        reply.truncate(reply.len() - 2);
        reply.push_str(&extra);
        reply.push_str("\r\n");
    }
    if let Err(e) = async {
        tls.write_all(reply.as_bytes()).await?;
        tls.flush().await
    }
    .await
    {
        if let Some(d) = &dtls {
            d.hub.unregister(&d.app_id, generation);
        }
        h.sessions.detach(
            index,
            generation,
            Detach::Lost(e.to_string()),
            Instant::now(),
        );
        return Ok(());
    }
    tracing::info!(parent: &span, %peer, "tunnel up: CSTP, address {}{}, DTLS {}", att.address,
        att.address6.map(|(a, len)| format!(" + {a}/{len}")).unwrap_or_default(),
        if dtls.is_some() { "offered" } else { "not offered" });

    let addrs = session_addresses(&att);
    let (tx, rx) = dataplane::downlink_queue(dataplane::QueueLimits::DEFAULT);
    h.routes.insert(
        &addrs,
        Arc::new(dataplane::SessionPort {
            index,
            generation,
            worker: lane.index,
            tx,
        }),
    );
    let dtls_ids = dtls.as_ref().map(|d| (d.hub.clone(), d.app_id));
    let outcome = pump(&mut tls, leftover, att, rx, dtls, &h, &lane)
        .instrument(span.clone())
        .await;
    h.routes.remove(&addrs, generation);
    if let Some((hub, app_id)) = dtls_ids {
        hub.unregister(&app_id, generation);
    }
    let detach = match outcome {
        Outcome::Ended(r) => Detach::End(r),
        Outcome::Lost(why) => Detach::Lost(why),
        Outcome::Superseded => Detach::Lost("superseded by a newer connection".into()),
        Outcome::LoggedOff => {
            // The table already removed the session; tell the client and close.
            let _ = tls.shutdown().await;
            tracing::info!(parent: &span, "tunnel closed by logoff");
            return Ok(());
        }
    };
    tracing::info!(parent: &span, "tunnel down: {detach:?}");
    h.sessions.detach(index, generation, detach, Instant::now());
    let _ = tls.shutdown().await;
    Ok(())
}

async fn refuse(tls: &mut Tls, status: u16, reason: &str, why: &str) {
    let why: String = why.chars().filter(|c| !c.is_control()).collect();
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nX-Reason: {why}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = tls.write_all(msg.as_bytes()).await;
    let _ = tls.shutdown().await;
}

/// The CONNECT reply, header names exactly as openconnect matches them.
pub fn connect_reply(
    cfg: &Config,
    att: &Attached,
    req: &Request,
    dtls: Option<&(AppId, u16)>,
) -> String {
    let p = &att.policy;
    let mtu = tunnel_mtu(p.anyconnect_mtu, req);
    let mut r = String::with_capacity(1024);
    r.push_str("HTTP/1.1 200 CONNECTED\r\n");
    r.push_str("X-CSTP-Version: 1\r\n");
    let host = cfg.hostname.as_deref().unwrap_or("headend");
    let _ = write!(r, "X-CSTP-Server-Name: {}\r\n", header_safe(host));
    let _ = write!(r, "X-CSTP-Address: {}\r\n", att.address);
    let _ = write!(r, "X-CSTP-Netmask: {}\r\n", att.netmask);
    // IPv6 only for a session that has an IPv6 address: without one, v6 DNS
    // servers and routes would point into a tunnel that cannot carry v6.
    let v6 = att.address6.is_some();
    if let Some((a, len)) = att.address6 {
        let _ = write!(r, "X-CSTP-Address-IP6: {a}/{len}\r\n");
    }
    for dns in p.dns_servers.iter().take(3) {
        match dns {
            IpAddr::V4(a) => {
                let _ = write!(r, "X-CSTP-DNS: {a}\r\n");
            }
            IpAddr::V6(a) if v6 => {
                let _ = write!(r, "X-CSTP-DNS-IP6: {a}\r\n");
            }
            IpAddr::V6(_) => {}
        }
    }
    if let Some(d) = &p.default_domain {
        let _ = write!(r, "X-CSTP-Default-Domain: {}\r\n", header_safe(d));
    }
    let (header, routes) = match p.split_tunnel_policy {
        SplitTunnelPolicy::TunnelAll => (None, Vec::new()),
        SplitTunnelPolicy::TunnelSpecified => {
            (Some("X-CSTP-Split-Include"), cfg.split_include_routes(p))
        }
        SplitTunnelPolicy::ExcludeSpecified => {
            (Some("X-CSTP-Split-Exclude"), cfg.split_exclude_routes(p))
        }
    };
    if let Some(hname) = header {
        for (net, mask) in routes {
            let _ = write!(r, "{hname}: {net}/{mask}\r\n");
        }
        if v6 {
            for (net, len) in cfg.split_networks_v6(p) {
                let _ = write!(r, "{hname}-IP6: {net}/{len}\r\n");
            }
        }
    }
    let _ = write!(r, "X-CSTP-MTU: {mtu}\r\n");
    if let Some(base) = req
        .header("X-CSTP-Base-MTU")
        .and_then(|v| v.trim().parse::<u16>().ok())
    {
        let _ = write!(r, "X-CSTP-Base-MTU: {base}\r\n");
    }
    if let Some(k) = p.anyconnect_keepalive_secs {
        let _ = write!(r, "X-CSTP-Keepalive: {k}\r\n");
    }
    if let Some(d) = p.anyconnect_dpd_client_secs {
        let _ = write!(r, "X-CSTP-DPD: {d}\r\n");
    }
    match p.vpn_idle_timeout {
        Some(t) => {
            let _ = write!(r, "X-CSTP-Idle-Timeout: {}\r\n", t.as_secs());
            let _ = write!(r, "X-CSTP-Disconnected-Timeout: {}\r\n", t.as_secs());
        }
        None => r.push_str("X-CSTP-Idle-Timeout: none\r\n"),
    }
    match att.session_deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            let _ = write!(r, "X-CSTP-Session-Timeout: {left}\r\n");
        }
        None => r.push_str("X-CSTP-Session-Timeout: none\r\n"),
    }
    if let Some(b) = &p.banner {
        let _ = write!(r, "X-CSTP-Banner: {}\r\n", url_encode(b));
    }
    // split-dns, tunnel-all-dns, client-bypass, rekey: config/client_settings.rs.
    for (k, v) in cfg.client_settings(&p.name).push_headers() {
        let _ = write!(r, "{k}: {}\r\n", header_safe(&v));
    }
    if let Some((app_id, port)) = dtls {
        let hex: String = app_id.iter().map(|b| format!("{b:02X}")).collect();
        let _ = write!(r, "X-DTLS-App-ID: {hex}\r\n");
        let _ = write!(r, "X-DTLS-Port: {port}\r\n");
        if let Some(k) = p.anyconnect_keepalive_secs {
            let _ = write!(r, "X-DTLS-Keepalive: {k}\r\n");
        }
        if let Some(d) = p.anyconnect_dpd_client_secs {
            let _ = write!(r, "X-DTLS-DPD: {d}\r\n");
        }
        r.push_str("X-DTLS-CipherSuite: PSK-NEGOTIATE\r\n");
    }
    r.push_str("\r\n");
    r
}

/// The addresses the session owns: its IPv4 address and, if it has one, its IPv6
/// address. Packets to them go to the session; packets from it must come from one.
fn session_addresses(att: &Attached) -> Vec<IpAddr> {
    std::iter::once(IpAddr::V4(att.address))
        .chain(att.address6.map(|(a, _)| IpAddr::V6(a)))
        .collect()
}

/// Whether the client takes an IPv6 address: openconnect sends
/// `X-CSTP-Address-Type: IPv6,IPv4` (just `IPv4` with --disable-ipv6) and
/// `X-CSTP-Full-IPv6-Capability: true`; AnyConnect sends the same. A client that
/// says nothing gets IPv4 only.
fn client_does_ipv6(req: &Request) -> bool {
    match req.header("X-CSTP-Address-Type") {
        Some(t) => t.split(',').any(|f| f.trim().eq_ignore_ascii_case("IPv6")),
        None => req
            .header("X-CSTP-Full-IPv6-Capability")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
    }
}

/// The policy MTU, capped by what the client asked for (it computed the most
/// its path can carry).
fn tunnel_mtu(policy_mtu: u16, req: &Request) -> u16 {
    let asked = req
        .header("X-CSTP-MTU")
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|m| *m >= 576);
    asked.map_or(policy_mtu, |a| a.min(policy_mtu))
}

fn header_safe(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

enum Outcome {
    Ended(EndReason),
    Lost(String),
    Superseded,
    LoggedOff,
}

fn end_reason(r: cstp::EndReason) -> Outcome {
    match r {
        cstp::EndReason::UserLogout { reason } => Outcome::Ended(EndReason::UserLogout(reason)),
        cstp::EndReason::IdleTimeout => Outcome::Ended(EndReason::IdleTimeout),
        cstp::EndReason::SessionTimeout => Outcome::Ended(EndReason::SessionTimeout),
        cstp::EndReason::DeadPeer => Outcome::Lost("DPD: no answer from the client".into()),
        other => Outcome::Lost(format!("{other:?}")),
    }
}

/// Moves frames until the tunnel ends.
async fn pump(
    tls: &mut Tls,
    leftover: Vec<u8>,
    mut att: Attached,
    mut downlink: dataplane::DownlinkRx,
    mut dtls: Option<DtlsPath>,
    h: &Headend,
    lane: &crate::workers::Lane,
) -> Outcome {
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
        h.counters.clone(),
    )
    .with_enforcer(Enforcer::new(
        h.policy.handle.clone(),
        att.filter.clone(),
        label.clone(),
    ));
    let mut down_filter = Enforcer::new(h.policy.handle.clone(), att.filter.clone(), label);
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

/// Drops the packets of a downlink batch that the session's filter denies.
fn filter_down(enforcer: &mut Enforcer, batch: &mut dataplane::PacketBatch) {
    let keep = enforcer.decide(batch.iter(), Direction::ToClient);
    batch.retain_flags(keep);
}

/// Waits for the pacing timer (only polled while armed).
async fn fired(timer: &Option<HrTimer>) -> std::io::Result<()> {
    match timer {
        Some(t) => t.fired().await,
        None => Ok(()),
    }
}

/// Arms the pacing timer, creating it if needed; false if that failed (the
/// caller then sends without pacing).
fn arm(timer: &mut Option<HrTimer>, after: Duration) -> bool {
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

/// Waits for DTLS datagrams if this tunnel has a DTLS path; never otherwise:
/// from the hub (handshakes, rebinding, sessions beyond the fd budget) or
/// from the session's own connected socket.
async fn recv_dtls(
    dtls: &mut Option<DtlsPath>,
    pool: &dataplane::BatchPool,
) -> Option<DtlsDatagrams> {
    let Some(d) = dtls else {
        return std::future::pending().await;
    };
    let Some(direct) = d.direct.as_ref() else {
        return d.rx.recv().await;
    };
    let peer = direct.peer();
    tokio::select! {
        m = d.rx.recv() => m,
        r = direct.recv(pool) => match r {
            Ok(batch) => Some(DtlsDatagrams { peer, batch, kind: DatagramKind::Known }),
            Err(e) => {
                // The hub still routes this peer: it serves the session again.
                tracing::info!(%peer, "DTLS connected socket given up: {e}");
                d.direct = None;
                None
            }
        },
    }
}

/// The socket a datagram to `peer` leaves from: the session's connected one
/// if it is connected there, else the hub's.
fn udp_for<'a>(
    hub: &'a DtlsHub,
    direct: &'a Option<DirectSocket>,
    peer: SocketAddr,
) -> &'a crate::dtls::UdpIo {
    match direct {
        Some(d) if d.peer() == peer => d.io(),
        _ => &hub.io,
    }
}

/// The I/O side of one tunnel's DTLS: its App-ID, PSK, OpenSSL association and
/// datagram queue. What the link's state is and what it may do is decided by
/// [`TunnelSession`]'s [`DtlsLink`].
struct DtlsPath {
    hub: Arc<DtlsHub>,
    app_id: AppId,
    generation: u64,
    psk: [u8; 32],
    /// Session-resume mode: the suite and the CONNECT's master secret (the
    /// App-ID then serves as X-DTLS-Session-ID).
    resume: Option<(ResumeSuite, [u8; dtls_resume::MASTER_SECRET_LEN])>,
    mtu: u32,
    rx: mpsc::Receiver<DtlsDatagrams>,
    channel: Option<DtlsChannel>,
    /// The session's own socket connected to the peer, while the association
    /// is up and the fd budget allows (`dtls_direct.rs`).
    direct: Option<DirectSocket>,
    link_cfg: DtlsLinkConfig,
    /// DPD/MTU probes to echo (rare; copied out of the read path).
    echoes: Vec<Vec<u8>>,
    /// Downlink pacing (`dtls_pacing.rs`); None: bursts leave at once.
    pacer: Option<Pacer>,
}

impl DtlsPath {
    fn new(
        hub: Arc<DtlsHub>,
        tls: &Tls,
        generation: u64,
        req: &Request,
        policy: &crate::config::EffectivePolicy,
        mode: &DtlsMode,
    ) -> Result<Self> {
        let mut psk = [0u8; 32];
        tls.get_ref()
            .1
            .export_keying_material(&mut psk, crate::dtls::PSK_EXPORTER_LABEL, None)
            .map_err(|e| anyhow::anyhow!("TLS exporter: {e}"))?;
        let mut app_id = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut app_id);
        let (tx, rx) = mpsc::channel(DOWNLINK_QUEUE);
        hub.register(app_id, generation, tx);
        // Datagram size the path carries: base MTU minus IPv4 and UDP headers.
        let base = req
            .header("X-CSTP-Base-MTU")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|m| (576..=9000).contains(m))
            .unwrap_or(1500);
        Ok(Self {
            hub,
            app_id,
            generation,
            psk,
            resume: match mode {
                DtlsMode::Resume { suite, master, .. } => Some((*suite, *master)),
                _ => None,
            },
            mtu: base - 28,
            rx,
            channel: None,
            direct: None,
            link_cfg: DtlsLinkConfig {
                // The client sends a DPD or keepalive record at least this often
                // while DTLS is alive (X-DTLS-DPD / X-DTLS-Keepalive); two missed
                // intervals mean it went away.
                dead_after: Duration::from_secs(
                    2 * u64::from(
                        policy
                            .anyconnect_dpd_client_secs
                            .into_iter()
                            .chain(policy.anyconnect_keepalive_secs)
                            .max()
                            .unwrap_or(30),
                    ),
                ),
                gateway_dpd: policy
                    .anyconnect_dpd_gateway_secs
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s))),
            },
            echoes: Vec::new(),
            pacer: PacingConfig::process_default().map(|c| Pacer::new(c, Instant::now())),
        })
    }

    /// The server's DTLS DPD asks for a probe.
    async fn send_dpd_req(&mut self, session: &TunnelSession) {
        let peer = session.dtls.as_ref().and_then(DtlsLink::peer);
        if let (Some(ch), Some(peer)) = (self.channel.as_mut(), peer)
            && ch.write_record(&[dtls_dpd::DPD_REQ])
        {
            udp_for(&self.hub, &self.direct, peer)
                .send(&self.hub.counters, peer, ch.outbound())
                .await;
        }
    }

    /// Datagrams for this tunnel, in order:
    /// 1. a ClientHello starts a new association (OpenSSL state + link);
    /// 2. the link admits or drops the batch (address, handshake state);
    /// 3. OpenSSL opens each datagram; data records go to the uplink batch,
    ///    probes are queued for echo;
    /// 4. handshake events and authenticated records update the link
    ///    (downlink choice, DPD, NAT rebinding);
    /// 5. the uplink batch goes to TUN; echoes and handshake replies go to UDP
    ///    behind any paced downlink datagrams (returns the pacer's wait).
    async fn handle(
        &mut self,
        msg: DtlsDatagrams,
        session: &mut TunnelSession,
        uplink: &mut dataplane::tun::Uplink,
        stats: &crate::sessions::SessionStats,
        pool: &dataplane::BatchPool,
    ) -> Option<Duration> {
        let DtlsDatagrams {
            peer,
            mut batch,
            kind,
        } = msg;
        let Some(link) = session.dtls.as_mut() else {
            pool.put(batch);
            return None;
        };
        let cstp = &mut session.cstp;
        if kind == DatagramKind::Hello {
            let made = match &self.resume {
                Some((suite, master)) => {
                    crate::dtls_resume::channel(*suite, &self.app_id, master, peer, self.mtu)
                }
                None => self.hub.new_channel(self.psk, peer, self.mtu),
            };
            match made {
                Ok(c) => {
                    tracing::debug!(%peer, "DTLS ClientHello: new association");
                    self.channel = Some(c);
                    // Connected again once this association is up.
                    self.direct = None;
                    link.on_hello(peer);
                }
                Err(e) => {
                    tracing::warn!(%peer, "DTLS state: {e:#}");
                    pool.put(batch);
                    return None;
                }
            }
        }
        let Some(ch) = self.channel.as_mut().filter(|_| link.admit(kind, peer)) else {
            pool.put(batch);
            return None;
        };
        let now = Instant::now();
        let (mut bytes, mut packets, mut authentic) = (0u64, 0u64, 0u64);
        let echoes = &mut self.echoes;
        let mut failed = false;
        for i in 0..batch.len() {
            let Some(dgram) = batch.get_mut(i) else {
                continue;
            };
            let event = SCRATCH.with_borrow_mut(|rbuf| {
                ch.input_mut(dgram, rbuf, |record| {
                    authentic += 1;
                    match crate::tunnel_session::classify(record) {
                        DtlsRecord::Data(pkt) => {
                            if uplink.push(pkt) {
                                bytes += pkt.len() as u64;
                                packets += 1;
                                cstp.on_data_received(now, pkt.len());
                            } else {
                                stats.spoofed_drops.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        DtlsRecord::DpdReq => {
                            echoes.push(crate::tunnel_session::probe_echo(record));
                        }
                        DtlsRecord::Other => {}
                    }
                })
            });
            match event {
                Some(DtlsEvent::Established) => {
                    tracing::info!(%peer, cipher = ch.cipher_name().unwrap_or("?"), "DTLS up");
                    *stats.dtls_cipher.lock().unwrap_or_else(|e| e.into_inner()) = ch.cipher_name();
                    self.hub.bind_peer(peer, self.generation, &self.app_id);
                    // From now on the client's datagrams come to our own
                    // socket (or, beyond the fd budget, still via the hub).
                    self.direct = self.hub.connect_direct(peer);
                    link.on_established(now);
                    stats.dtls_active.store(true, Ordering::Relaxed);
                    stats.dtls_established();
                }
                Some(DtlsEvent::Failed(why)) => {
                    tracing::info!(peer = %ch.peer, "DTLS association ended: {why}");
                    stats.dtls_terminated();
                    failed = true;
                    break;
                }
                None => {}
            }
        }
        pool.put(batch);
        self.hub
            .counters
            .record_drops
            .fetch_add(ch.take_record_drops(), Ordering::Relaxed);
        stats.bytes_rx.fetch_add(bytes, Ordering::Relaxed);
        stats.packets_rx.fetch_add(packets, Ordering::Relaxed);
        if uplink.pending() > 0 {
            uplink.flush().await;
        }
        if failed {
            self.channel = None;
            self.direct = None;
            link.on_failed();
            stats.dtls_active.store(false, Ordering::Relaxed);
            return None;
        }
        if authentic > 0 {
            if let Authentic::Rebound { old, new } = link.on_authentic(now, peer, packets > 0) {
                // NAT rebinding: the client's port changed; follow it, since the
                // record authenticated under this session's key.
                tracing::info!(%old, %new, "DTLS peer address changed");
                ch.peer = new;
                self.hub.bind_peer(new, self.generation, &self.app_id);
                if let Some(d) = self.direct.as_mut()
                    && let Err(e) = d.reconnect(new)
                {
                    tracing::info!(%new, "DTLS connected socket given up: {e}");
                    self.direct = None;
                }
            }
            stats.dtls_active.store(link.active(), Ordering::Relaxed);
        }
        for e in self.echoes.drain(..) {
            ch.write_record(&e);
        }
        // Echoes and handshake replies queue behind paced data, if any.
        if ch.outbound().is_empty() {
            return None;
        }
        self.send_paced().await
    }

    /// Encrypts a downlink batch (type byte 0 in the headroom before each packet).
    fn send_batch(
        &mut self,
        batch: &mut dataplane::PacketBatch,
        cstp: &mut CstpSession,
        now: Instant,
        stats: &crate::sessions::SessionStats,
    ) {
        let Some(ch) = self.channel.as_mut() else {
            return;
        };
        let (mut bytes, mut packets) = (0u64, 0u64);
        batch.for_each_with_headroom(|frame| {
            let Some(rec) = frame.get_mut(cstp::HEADER_LEN - 1..) else {
                return;
            };
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

    async fn flush(&mut self) {
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
    fn queued_bytes(&mut self) -> usize {
        self.channel
            .as_mut()
            .map_or(0, |ch| ch.outbound().pending_bytes())
    }

    /// Sends what the pacer allows now; returns how long until the rest may
    /// go (None: nothing left, or no pacing and all sent).
    async fn send_paced(&mut self) -> Option<Duration> {
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

async fn send_empty(tls: &mut Tls, kind: FrameType) -> std::io::Result<()> {
    tls.write_all(&cstp::empty_frame(kind)).await?;
    tls.flush().await
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

/// Handles every complete frame in the decoder. Returns Some when the tunnel ends.
async fn process_input(
    decoder: &mut FrameDecoder,
    cstp: &mut CstpSession,
    uplink: &mut dataplane::tun::Uplink,
    tls: &mut Tls,
    stats: &crate::sessions::SessionStats,
) -> Option<Outcome> {
    let now = Instant::now();
    let (mut bytes, mut packets) = (0u64, 0u64);
    let mut dpd_resps = 0usize;
    let result = loop {
        let frame = match decoder.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => {
                tracing::warn!("bad CSTP frame from client, ending tunnel: {e}");
                break Some(Outcome::Lost(format!("bad CSTP frame: {e}")));
            }
        };
        match cstp.on_frame(now, frame.kind, frame.payload) {
            FrameAction::Deliver(pkt) => {
                if uplink.push(pkt) {
                    bytes += pkt.len() as u64;
                    packets += 1;
                } else {
                    stats.spoofed_drops.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        "dropped packet with a source that is not the session's address"
                    );
                }
                if uplink.pending() >= dataplane::batch::BATCH_PACKETS {
                    uplink.flush().await;
                }
            }
            FrameAction::SendDpdResp => dpd_resps += 1,
            FrameAction::Nothing => {}
            FrameAction::End(r) => {
                tracing::info!("client ended the tunnel: {r:?}");
                break Some(end_reason(r));
            }
        }
    };
    stats.bytes_rx.fetch_add(bytes, Ordering::Relaxed);
    stats.packets_rx.fetch_add(packets, Ordering::Relaxed);
    for _ in 0..dpd_resps {
        let _ = tls
            .get_mut()
            .1
            .writer()
            .write_all(&cstp::empty_frame(FrameType::DpdResp));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::RequestParser;
    use crate::sessions::SessionStats;

    const CFG: &str = "\
hostname vpn-gw
ip local pool P 198.18.100.10-198.18.100.250 mask 255.255.255.0
access-list SPLIT standard permit 198.18.1.0 255.255.255.0
access-list SPLIT standard permit 198.18.2.0 255.255.254.0
group-policy GP internal
group-policy GP attributes
 split-tunnel-policy tunnelspecified
 split-tunnel-network-list value SPLIT
 dns-server value 198.18.1.53 198.18.1.54
 default-domain value corp.example
 vpn-idle-timeout 30
 anyconnect dpd-interval client 30 gateway 30
group-policy FULL internal
group-policy FULL attributes
 split-tunnel-policy tunnelall
 split-tunnel-network-list value SPLIT
ipv6 local pool P6 fd00:100::10/64 200
access-list SPLIT-DUAL extended permit ip 198.18.1.0 255.255.255.0 any4
access-list SPLIT-DUAL extended permit ip fd00:1::/64 any6
access-list SPLIT-DUAL extended deny ip fd00:2::/64 any6
group-policy DUAL internal
group-policy DUAL attributes
 split-tunnel-policy tunnelspecified
 split-tunnel-network-list value SPLIT-DUAL
 dns-server value 198.18.1.53 fd00:1::53
 ipv6-address-pools value P6
group-policy DUAL-EXCLUDE internal
group-policy DUAL-EXCLUDE attributes
 split-tunnel-policy excludespecified
 split-tunnel-network-list value SPLIT-DUAL
";

    fn attached(cfg: &Config, gp: &str) -> Attached {
        let (_tx, control) = mpsc::unbounded_channel();
        Attached {
            index: 1,
            generation: 1,
            username: "alice".into(),
            tunnel_group: "TG".into(),
            group_policy: gp.into(),
            policy: cfg.effective_policy(gp),
            address: "198.18.100.10".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            address6: None,
            stats: Arc::new(SessionStats::default()),
            filter: Arc::new(dataplane::enforce::SessionFilter::new(None, None)),
            control,
            session_deadline: None,
        }
    }

    fn connect_request(mtu: &str) -> Request {
        request_with(&format!("X-CSTP-MTU: {mtu}\r\n"))
    }

    fn request_with(extra: &str) -> Request {
        let raw = format!(
            "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=AB\r\n\
             X-CSTP-Version: 1\r\nX-CSTP-Base-MTU: 1500\r\n{extra}\r\n"
        );
        RequestParser::new()
            .parse(raw.as_bytes())
            .unwrap()
            .expect("complete request")
    }

    fn lines(reply: &str) -> Vec<&str> {
        reply.split("\r\n").collect()
    }

    #[test]
    fn connect_reply_carries_the_policy_with_exact_header_case() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(&cfg, &attached(&cfg, "GP"), &connect_request("1406"), None);
        assert!(reply.starts_with("HTTP/1.1 200 CONNECTED\r\n"));
        assert!(reply.ends_with("\r\n\r\n"));
        let l = lines(&reply);
        for want in [
            "X-CSTP-Version: 1",
            "X-CSTP-Address: 198.18.100.10",
            "X-CSTP-Netmask: 255.255.255.0",
            "X-CSTP-DNS: 198.18.1.53",
            "X-CSTP-DNS: 198.18.1.54",
            "X-CSTP-Default-Domain: corp.example",
            "X-CSTP-Split-Include: 198.18.1.0/255.255.255.0",
            "X-CSTP-Split-Include: 198.18.2.0/255.255.254.0",
            "X-CSTP-MTU: 1406",
            "X-CSTP-Base-MTU: 1500",
            "X-CSTP-DPD: 30",
            "X-CSTP-Idle-Timeout: 1800",
            "X-CSTP-Session-Timeout: none",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{reply}");
        }
        // No DTLS yet: without App-ID and Port the client does not try it.
        assert!(!reply.contains("X-DTLS-"));
        assert!(!reply.contains("Content-Length"));
    }

    #[test]
    fn tunnelall_sends_no_split_routes_and_mtu_is_capped_by_the_client() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(
            &cfg,
            &attached(&cfg, "FULL"),
            &connect_request("1300"),
            None,
        );
        assert!(!reply.contains("Split-Include"), "{reply}");
        assert!(lines(&reply).contains(&"X-CSTP-MTU: 1300"));
        // Nonsense MTU from the client is ignored.
        let reply = connect_reply(&cfg, &attached(&cfg, "FULL"), &connect_request("12"), None);
        assert!(lines(&reply).contains(&"X-CSTP-MTU: 1406"), "{reply}");
    }

    #[test]
    fn banner_is_url_encoded() {
        assert_eq!(url_encode("Hi there\r\n<b>"), "Hi%20there%0D%0A%3Cb%3E");
    }

    fn dual(cfg: &Config, gp: &str) -> Attached {
        let mut a = attached(cfg, gp);
        a.address6 = Some(("fd00:100::10".parse().unwrap(), 64));
        a
    }

    #[test]
    fn dual_stack_reply_has_the_ipv6_address_routes_and_dns() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(&cfg, &dual(&cfg, "DUAL"), &connect_request("1406"), None);
        let l = lines(&reply);
        for want in [
            "X-CSTP-Address: 198.18.100.10",
            "X-CSTP-Netmask: 255.255.255.0",
            "X-CSTP-Address-IP6: fd00:100::10/64",
            "X-CSTP-DNS: 198.18.1.53",
            "X-CSTP-DNS-IP6: fd00:1::53",
            "X-CSTP-Split-Include: 198.18.1.0/255.255.255.0",
            "X-CSTP-Split-Include-IP6: fd00:1::/64",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{reply}");
        }
        // Deny entries are not routes; exactly one v6 route.
        assert_eq!(reply.matches("-IP6: fd00:").count(), 3, "{reply}");
        assert!(!reply.contains("fd00:2::"), "{reply}");
    }

    #[test]
    fn ipv4_only_session_gets_nothing_ipv6() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(
            &cfg,
            &attached(&cfg, "DUAL"),
            &connect_request("1406"),
            None,
        );
        assert!(!reply.contains("IP6"), "{reply}");
        assert!(!reply.contains("fd00:"), "{reply}");
        assert!(
            lines(&reply).contains(&"X-CSTP-Split-Include: 198.18.1.0/255.255.255.0"),
            "{reply}"
        );
    }

    #[test]
    fn excludespecified_sends_split_exclude_for_both_families() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let reply = connect_reply(
            &cfg,
            &dual(&cfg, "DUAL-EXCLUDE"),
            &connect_request("1406"),
            None,
        );
        let l = lines(&reply);
        assert!(
            l.contains(&"X-CSTP-Split-Exclude: 198.18.1.0/255.255.255.0"),
            "{reply}"
        );
        assert!(
            l.contains(&"X-CSTP-Split-Exclude-IP6: fd00:1::/64"),
            "{reply}"
        );
        assert!(!reply.contains("Split-Include"), "{reply}");
    }

    #[test]
    fn ipv6_capability_comes_from_the_request_headers() {
        // openconnect 9: both headers.
        assert!(client_does_ipv6(&request_with(
            "X-CSTP-Address-Type: IPv6,IPv4\r\nX-CSTP-Full-IPv6-Capability: true\r\n"
        )));
        // openconnect --disable-ipv6.
        assert!(!client_does_ipv6(&request_with(
            "X-CSTP-Address-Type: IPv4\r\n"
        )));
        assert!(client_does_ipv6(&request_with(
            "X-CSTP-Full-IPv6-Capability: true\r\n"
        )));
        // Says nothing: IPv4 only.
        assert!(!client_does_ipv6(&request_with("")));
    }

    #[test]
    fn session_addresses_cover_both_families() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        let v4: IpAddr = "198.18.100.10".parse().unwrap();
        let v6: IpAddr = "fd00:100::10".parse().unwrap();
        assert_eq!(session_addresses(&attached(&cfg, "DUAL")), vec![v4]);
        assert_eq!(session_addresses(&dual(&cfg, "DUAL")), vec![v4, v6]);
    }
}

//! Client -> TUN.
//!
//! CSTP (`process_input`): TLS bytes -> frame decoder -> `TunnelSession::on_cstp_frame`
//! -> the uplink batch (source address check, policy) -> TUN; DPD requests are
//! answered in the same TLS flush.
//!
//! DTLS (`DtlsPath::handle`, stages at its head): datagrams -> association ->
//! OpenSSL opens records -> the uplink batch -> TUN; probes are echoed.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::downlink::arm;
use super::dtls_path::DtlsPath;
use super::pump::Tunnel;
use super::session::{Authentic, DtlsRecord, TunnelSession};
use super::{Outcome, SCRATCH, end_reason};
use crate::dtls::{DatagramKind, DtlsDatagrams, DtlsEvent};
use crate::proto::cstp::{self, FrameAction, FrameDecoder, FrameType};
use crate::server::Tls;

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

impl Tunnel<'_> {
    /// TLS bytes from the client (`more_ready`: the read filled its buffer),
    /// in order:
    /// 1. the decoder frames them, with what else TLS has ready now;
    /// 2. each frame goes through the session (`process_input`): packets to
    ///    the uplink batch, DPD requests answered;
    /// 3. the batch goes to TUN, the answers to TLS;
    /// 4. data on CSTP moves the downlink off DTLS (the session decides).
    ///
    /// Returns Some when the tunnel ends.
    pub(super) async fn on_tls_bytes(&mut self, bytes: &[u8], more_ready: bool) -> Option<Outcome> {
        self.decoder.feed(bytes);
        if more_ready {
            drain_ready(self.tls, &mut self.decoder);
        }
        let data_before = self.session.cstp.counters().packets_in;
        let dtls_before = self.session.dtls_active();
        if let Some(o) = process_input(
            &mut self.decoder,
            &mut self.session,
            &mut self.uplink,
            self.tls,
            &self.stats,
        )
        .await
        {
            self.uplink.flush().await;
            return Some(o);
        }
        self.uplink.flush().await;
        if let Err(e) = self.tls.flush().await {
            return Some(Outcome::Lost(format!("TLS write: {e}")));
        }
        let data_now = self.session.cstp.counters().packets_in;
        self.turn.uplink(data_now.saturating_sub(data_before));
        // The session moved the downlink to CSTP (data came over CSTP).
        if dtls_before && !self.session.dtls_active() {
            tracing::info!("downlink now over CSTP (client sent data over CSTP)");
            self.stats.dtls_active.store(false, Ordering::Relaxed);
        }
        None
    }

    /// DTLS datagrams for this tunnel (the stages: [`DtlsPath::handle`]); any
    /// echoes and handshake replies leave behind paced downlink datagrams.
    pub(super) async fn on_datagrams(&mut self, msg: DtlsDatagrams) {
        self.turn.uplink(msg.batch.len() as u64);
        if let Some(d) = self.dtls.as_mut()
            && let Some(wait) = d
                .handle(
                    msg,
                    &mut self.session,
                    &mut self.uplink,
                    &self.stats,
                    self.pool,
                )
                .await
            && !self.pace_armed
        {
            self.pace_armed = arm(&mut self.pace_timer, wait);
            if !self.pace_armed {
                d.flush().await;
            }
        }
    }
}

impl DtlsPath {
    /// Datagrams for this tunnel, in order:
    /// 1. a ClientHello starts a new association (OpenSSL state + link);
    /// 2. the link admits or drops the batch (address, handshake state);
    /// 3. OpenSSL opens each datagram; data records go to the uplink batch,
    ///    probes are queued for echo;
    /// 4. handshake events and authenticated records update the link
    ///    (downlink choice, DPD, NAT rebinding);
    /// 5. the uplink batch goes to TUN; echoes and handshake replies go to UDP
    ///    behind any paced downlink datagrams (returns the pacer's wait).
    pub(super) async fn handle(
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
        // The learnt pacing rate reads the inner TCP's ACKs (downlink.rs).
        let learnt = &mut self.learnt;
        let mut failed = false;
        for i in 0..batch.len() {
            let Some(dgram) = batch.get_mut(i) else {
                continue;
            };
            let event = SCRATCH.with_borrow_mut(|rbuf| {
                ch.input_mut(dgram, rbuf, |record| {
                    authentic += 1;
                    match crate::tunnel::session::classify(record) {
                        DtlsRecord::Data(pkt) => {
                            if uplink.push(pkt) {
                                if let Some(l) = learnt.as_mut() {
                                    l.on_up(now, pkt);
                                }
                                bytes += pkt.len() as u64;
                                packets += 1;
                                cstp.on_data_received(now, pkt.len());
                            } else {
                                stats.spoofed_drops.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        DtlsRecord::DpdReq => {
                            echoes.push(crate::tunnel::session::probe_echo(record));
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
}

/// Handles every complete frame in the decoder. Returns Some when the tunnel ends.
pub(super) async fn process_input(
    decoder: &mut FrameDecoder,
    session: &mut TunnelSession,
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
        match session.on_cstp_frame(now, frame.kind, frame.payload) {
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

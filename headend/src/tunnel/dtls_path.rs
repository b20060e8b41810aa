//! The I/O half of one tunnel's DTLS: App-ID and PSK, the OpenSSL association,
//! the hub's queue and the session's own connected socket. What the link may
//! do is decided by `session.rs`'s `DtlsLink`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tokio::sync::mpsc;

use super::DOWNLINK_QUEUE;
use super::connect::dtls_datagram_mtu;
use super::session::{DtlsLink, DtlsLinkConfig, TunnelSession};
use crate::dtls::{AppId, DatagramKind, DtlsChannel, DtlsDatagrams, DtlsHub};
use crate::dtls_direct::DirectSocket;
use crate::dtls_pace_rate::{LearnConfig, LearntRate};
use crate::dtls_pacing::{Pacer, PacingConfig};
use crate::proto::dtls_dpd;
use crate::proto::dtls_resume::{self, DtlsMode, ResumeSuite};
use crate::proto::http::Request;
use crate::server::Tls;

/// Waits for DTLS datagrams if this tunnel has a DTLS path; never otherwise:
/// from the hub (handshakes, rebinding, sessions beyond the fd budget) or
/// from the session's own connected socket.
pub(super) async fn recv_dtls(
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
pub(super) fn udp_for<'a>(
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
pub(super) struct DtlsPath {
    pub(super) hub: Arc<DtlsHub>,
    pub(super) app_id: AppId,
    pub(super) generation: u64,
    pub(super) psk: [u8; 32],
    /// Session-resume mode: the suite and the CONNECT's master secret (the
    /// App-ID then serves as X-DTLS-Session-ID).
    pub(super) resume: Option<(ResumeSuite, [u8; dtls_resume::MASTER_SECRET_LEN])>,
    pub(super) mtu: u32,
    pub(super) rx: mpsc::Receiver<DtlsDatagrams>,
    pub(super) channel: Option<DtlsChannel>,
    /// The session's own socket connected to the peer, while the association
    /// is up and the fd budget allows (`dtls_direct.rs`).
    pub(super) direct: Option<DirectSocket>,
    pub(super) link_cfg: DtlsLinkConfig,
    /// DPD/MTU probes to echo (rare; copied out of the read path).
    pub(super) echoes: Vec<Vec<u8>>,
    /// Downlink pacing (`dtls_pacing.rs`); None: bursts leave at once.
    pub(super) pacer: Option<Pacer>,
    /// The pacer's rate learnt from the inner TCP (`dtls_pace_rate.rs`),
    /// unless `HEADEND_DTLS_PACE_LEARN=0`.
    pub(super) learnt: Option<LearntRate>,
}

impl DtlsPath {
    pub(super) fn new(
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
        Ok(Self {
            hub,
            app_id,
            generation,
            psk,
            resume: match mode {
                DtlsMode::Resume { suite, master, .. } => Some((*suite, *master)),
                _ => None,
            },
            mtu: dtls_datagram_mtu(req),
            rx,
            channel: None,
            direct: None,
            link_cfg: DtlsLinkConfig::for_policy(policy),
            echoes: Vec::new(),
            pacer: PacingConfig::process_default().map(|c| Pacer::new(c, Instant::now())),
            learnt: PacingConfig::process_default()
                .filter(|c| c.learn)
                .map(|c| {
                    LearntRate::new(c.rate, Instant::now())
                        .with_config(LearnConfig::process_default())
                }),
        })
    }

    /// The server's DTLS DPD asks for a probe.
    pub(super) async fn send_dpd_req(&mut self, session: &TunnelSession) {
        let peer = session.dtls.as_ref().and_then(DtlsLink::peer);
        if let (Some(ch), Some(peer)) = (self.channel.as_mut(), peer)
            && ch.write_record(&[dtls_dpd::DPD_REQ])
        {
            udp_for(&self.hub, &self.direct, peer)
                .send(&self.hub.counters, peer, ch.outbound())
                .await;
        }
    }
}

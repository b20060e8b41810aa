//! A tunnel on one TLS connection (and, if offered, its DTLS path): the CONNECT
//! reply, then the loop that moves packets between the client and the dataplane.
//!
//! Where things are:
//! - `session.rs`: the sans-IO core ([`session::TunnelSession`]): CSTP timers, the
//!   DTLS link's liveness, fallback, rebinding and server DPD. Every decision lives
//!   there, unit-tested with simulated time.
//! - `connect.rs`: the CONNECT request: refusals, the reply headers.
//! - `pump.rs`: the event loop; it waits and dispatches, nothing else.
//! - `uplink.rs`: client -> TUN (CSTP frames, DTLS records).
//! - `downlink.rs`: TUN -> client (DTLS or CSTP, paced).
//! - `dtls_path.rs`: the I/O half of DTLS (App-ID, PSK, OpenSSL association, sockets).
//!
//! Frames are written straight into the rustls connection, one `write` per frame
//! so each frame is its own TLS record (openconnect reads one frame per record),
//! and a batch of frames is flushed to the socket at once.

mod connect;
mod downlink;
mod dtls_path;
mod pump;
pub mod session;
mod uplink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use crate::config::Config;
use crate::dtls::DtlsHub;
use crate::proto::cstp;
use crate::proto::dtls_resume::{self, DtlsMode};
use crate::proto::http::Request;
use crate::server::{Headend, Tls};
use crate::sessions::{AttachError, Detach, EndReason, SessionTable};
use crate::workers::Lane;
pub use connect::connect_reply;
use connect::{client_does_ipv6, refuse, session_addresses, tunnel_mtu};
use dtls_path::DtlsPath;
use pump::pump;
use std::net::Ipv4Addr;

/// Datagram batches from the DTLS hub queued per session before it drops
/// (the downlink's queue is bounded in packets and bytes: dataplane `queue.rs`).
const DOWNLINK_QUEUE: usize = 256;

/// Large enough for any TLS read or DTLS record (16 KiB plaintext max).
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// One per worker thread, borrowed only by synchronous code (never across
    /// an await): bounded by the thread count, not by the session count.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; SCRATCH_LEN]);
}

/// What a tunnel uses of the headend, taken once when the CONNECT arrives: the
/// tunnel path never reaches for the whole [`Headend`] (logins, RADIUS, SAML
/// stay with the HTTP side).
pub struct TunnelContext {
    /// Attach at CONNECT, detach when the tunnel ends.
    pub sessions: Arc<SessionTable>,
    /// The config snapshot the CONNECT saw: its reply headers and DTLS mode.
    pub config: Arc<Config>,
    /// Where the dataplane finds the session's downlink queue.
    pub routes: Arc<dataplane::SessionRoutes>,
    /// The DTLS hub; None when no group-policy enables DTLS.
    pub dtls: Option<Arc<DtlsHub>>,
    /// What the running tunnel's loops use.
    pub packets: PacketPath,
}

/// What the running tunnel moves packets with: the worker's lane (TUN queue,
/// batch pool), the dataplane's counters and the compiled ACLs.
pub struct PacketPath {
    pub lane: Lane,
    pub counters: Arc<dataplane::DataplaneCounters>,
    pub policy: Arc<dataplane::policy::PolicyHandle>,
}

impl TunnelContext {
    pub fn new(h: &Headend, lane: Lane) -> Self {
        Self {
            sessions: h.sessions.clone(),
            config: h.config.clone(),
            routes: h.routes.clone(),
            dtls: h.dtls.clone(),
            packets: PacketPath {
                lane,
                counters: h.counters.clone(),
                policy: h.policy.handle.clone(),
            },
        }
    }
}

/// `SessionTable::attach`, which makes the session's accounting Start durable
/// (fdatasync) before it returns when Starts are journaled: then on the blocking
/// pool, not on this worker's thread, whose other sessions' packets would wait
/// for the disk (milliseconds per login), and so that concurrent logins share
/// one sync (acct_journal.rs group commits). The tunnel still comes up only
/// after the Start is on disk.
async fn attach(
    sessions: &Arc<SessionTable>,
    cookie: &str,
    public_ip: std::net::IpAddr,
    previous: Option<Ipv4Addr>,
    want_v6: bool,
) -> Result<crate::sessions::Attached, AttachError> {
    if !sessions.journals_starts() {
        return sessions.attach(cookie, public_ip, previous, want_v6);
    }
    let (sessions, cookie) = (sessions.clone(), cookie.to_owned());
    tokio::task::spawn_blocking(move || sessions.attach(&cookie, public_ip, previous, want_v6))
        .await
        .unwrap_or(Err(AttachError::ShuttingDown))
}

pub async fn run(
    mut tls: Tls,
    leftover: Vec<u8>,
    req: Request,
    peer: SocketAddr,
    cx: TunnelContext,
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
    let att = match attach(&cx.sessions, cookie, peer.ip(), previous, want_v6).await {
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
    let mode = dtls_resume::choose(
        &req,
        cx.config.client_settings(&att.policy.name).dtls_resume,
    );
    let dtls = match (&cx.dtls, &mode) {
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
    let mut reply = connect_reply(&cx.config, &att, &req, dtls_offer.as_ref());
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
        cx.sessions.detach(
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
    cx.routes.insert(
        &addrs,
        Arc::new(dataplane::SessionPort {
            index,
            generation,
            worker: cx.packets.lane.index,
            tx,
        }),
    );
    let dtls_ids = dtls.as_ref().map(|d| (d.hub.clone(), d.app_id));
    let outcome = pump(&mut tls, leftover, att, rx, dtls, &cx.packets)
        .instrument(span.clone())
        .await;
    cx.routes.remove(&addrs, generation);
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
    cx.sessions
        .detach(index, generation, detach, Instant::now());
    let _ = tls.shutdown().await;
    Ok(())
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

//! The UDP side of RADIUS: one task per `aaa-server` group drives the sans-IO
//! `auth::radius::RadiusClient` (retransmits, failover, dead time), and one task
//! serves dynamic authorization (CoA / Disconnect, RFC 5176) on UDP 1700.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use auth::radius::{
    ClientConfig, DynAuthClient, DynAuthConfig, DynAuthServer, Event, HostConfig, OutgoingRequest,
    Packet, RadiusClient, RadiusError, RequestId,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::config::AaaServerGroup;

struct Command {
    request: OutgoingRequest,
    reply: oneshot::Sender<Result<Packet, RadiusError>>,
}

/// A running `aaa-server NAME protocol radius` group.
pub struct RadiusGroup {
    pub name: String,
    /// Our address toward the group's first host (NAS-IP-Address).
    pub nas_ip: Ipv4Addr,
    tx: mpsc::Sender<Command>,
    /// The longest a request can take: every host, every try.
    pub worst_case: Duration,
}

impl RadiusGroup {
    pub async fn spawn(group: &AaaServerGroup) -> Result<Arc<Self>> {
        let mut hosts = Vec::new();
        let mut worst_case = Duration::ZERO;
        for h in &group.hosts {
            let (timeout, retries) = HostConfig::asa_timing(h.timeout_secs, h.retry_interval_secs);
            worst_case += timeout * (retries + 1);
            hosts.push(HostConfig {
                auth_addr: SocketAddr::new(h.address, h.authentication_port),
                acct_port: h.accounting_port,
                secret: h.key.clone().unwrap_or_default().into_bytes(),
                timeout,
                retries,
            });
        }
        let first = hosts
            .first()
            .map(|h| h.auth_addr)
            .with_context(|| format!("aaa-server {} has no host", group.name))?;
        let socket = UdpSocket::bind(match first.ip() {
            IpAddr::V4(_) => "0.0.0.0:0",
            IpAddr::V6(_) => "[::]:0",
        })
        .await
        .context("binding the RADIUS client socket")?;
        let nas_ip = local_ipv4_toward(first)
            .await
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let client = RadiusClient::new(ClientConfig {
            hosts,
            max_failed_attempts: group.max_failed_attempts.max(1),
            dead_time: Duration::from_secs(u64::from(group.deadtime_minutes) * 60),
        });
        let (tx, rx) = mpsc::channel(1024);
        let name = group.name.clone();
        tokio::spawn(drive(name.clone(), socket, client, rx));
        Ok(Arc::new(Self {
            name,
            nas_ip,
            tx,
            worst_case,
        }))
    }

    /// Sends a request and waits for the authenticated answer, or the group's
    /// verdict that no server answered. Never longer than `worst_case`.
    pub async fn request(&self, request: OutgoingRequest) -> Result<Packet, RadiusError> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command { request, reply }).await.is_err() {
            return Err(RadiusError::AllServersDead);
        }
        rx.await.unwrap_or(Err(RadiusError::AllServersDead))
    }
}

/// The source address the kernel would use toward `dest`.
async fn local_ipv4_toward(dest: SocketAddr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    s.connect(dest).await.ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

async fn drive(
    name: String,
    socket: UdpSocket,
    mut client: RadiusClient,
    mut rx: mpsc::Receiver<Command>,
) {
    let mut waiting: HashMap<RequestId, oneshot::Sender<Result<Packet, RadiusError>>> =
        HashMap::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let deadline = client.poll_timeout();
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                match client.start(Instant::now(), cmd.request) {
                    Ok((id, t)) => {
                        if let Err(e) = socket.send_to(&t.bytes, t.dest).await {
                            tracing::warn!(group = %name, server = %t.dest, "RADIUS send: {e}");
                        }
                        waiting.insert(id, cmd.reply);
                    }
                    Err(e) => {
                        let _ = cmd.reply.send(Err(e));
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                match client.on_datagram(Instant::now(), from, buf.get(..n).unwrap_or_default()) {
                    Some((id, result)) => {
                        if let Some(w) = waiting.remove(&id) {
                            let _ = w.send(result);
                        }
                    }
                    None => tracing::debug!(group = %name, %from, "unmatched or unauthenticated RADIUS reply dropped"),
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                for ev in client.on_timeout(Instant::now()) {
                    match ev {
                        Event::Retransmit { transmit, .. } => {
                            let _ = socket.send_to(&transmit.bytes, transmit.dest).await;
                        }
                        Event::Failover { from, transmit, .. } => {
                            tracing::warn!(group = %name, %from, to = %transmit.dest, "RADIUS server did not answer; failing over");
                            let _ = socket.send_to(&transmit.bytes, transmit.dest).await;
                        }
                        Event::HostDead { host, .. } => {
                            tracing::warn!(group = %name, %host, "RADIUS server marked dead");
                        }
                        Event::Failed { request, error } => {
                            if let Some(w) = waiting.remove(&request) {
                                let _ = w.send(Err(error));
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Decides one CoA / Disconnect-Request: Ok = ACK, Err = NAK with that cause.
pub type DynAuthApply = Arc<
    dyn Fn(&auth::radius::DynAuthRequest) -> Result<(), auth::radius::ErrorCause> + Send + Sync,
>;

/// Serves CoA / Disconnect from the hosts of every group with
/// `dynamic-authorization`. `apply` decides per request.
pub async fn serve_dynamic_authorization(
    port: u16,
    clients: Vec<DynAuthClient>,
    apply: DynAuthApply,
) -> Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
        .await
        .with_context(|| format!("binding UDP {port} for dynamic-authorization"))?;
    tracing::info!("dynamic-authorization (CoA/Disconnect) on UDP {port}");
    let mut server = DynAuthServer::new(DynAuthConfig::new(clients));
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("dynamic-authorization receive: {e}");
                continue;
            }
        };
        let bytes = buf.get(..n).unwrap_or_default();
        let reply = server.handle(Instant::now(), from, bytes, |req| {
            let r = apply(req);
            match &r {
                Ok(()) => tracing::info!(%from, kind = ?req.kind, selectors = ?req.selectors, "dynamic authorization applied"),
                Err(cause) => tracing::info!(%from, kind = ?req.kind, selectors = ?req.selectors, "dynamic authorization refused: {cause:?}"),
            }
            r
        });
        match reply {
            Some(r) => {
                let _ = socket.send_to(&r, from).await;
            }
            None => {
                tracing::debug!(%from, "dynamic-authorization datagram dropped (unknown client, bad authenticator or malformed)")
            }
        }
    }
}

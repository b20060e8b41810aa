//! The SXP listener's I/O (asa-aaa.md section 4): TCP 64999 with the TCP-MD5
//! password of `cts sxp default password`, one sans-IO `auth::sxp::SxpListener`
//! per connection, bindings fed into the IP-to-SGT map. A peer's bindings go
//! when its connection ends (TCP close, ERROR, hold timer).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use auth::sxp::{BindingEvent, HoldTimeRange, ListenerConfig, NodeId, Output, SxpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::config::{Config, SxpPassword};
use crate::policy_state::{PolicyState, Prefix};

#[derive(Debug, Clone)]
struct PeerConfig {
    addr: IpAddr,
    password: Option<String>,
}

#[derive(Debug, Clone)]
struct ConnView {
    peer: SocketAddr,
    local: Option<SocketAddr>,
    on: bool,
    version: Option<u32>,
    hold_time: Option<Duration>,
    since: SystemTime,
    bindings: usize,
}

pub struct SxpState {
    peers: Vec<PeerConfig>,
    default_password_set: bool,
    config: ListenerConfig,
    policy: Arc<PolicyState>,
    conns: Mutex<BTreeMap<u64, ConnView>>,
    next_id: AtomicU64,
}

impl SxpState {
    /// Bindings learned from all SXP peers (the `headend_sxp_bindings` gauge).
    pub fn binding_count(&self) -> usize {
        self.conns().values().map(|v| v.bindings).sum()
    }

    /// None when `cts sxp enable` is absent.
    pub fn from_config(
        cfg: &Config,
        policy: Arc<PolicyState>,
        node: Ipv4Addr,
    ) -> Result<Option<Arc<Self>>> {
        if !cfg.cts.sxp_enable {
            return Ok(None);
        }
        let peers = cfg
            .cts
            .sxp_connections
            .iter()
            .map(|c| PeerConfig {
                addr: c.peer,
                password: match c.password {
                    SxpPassword::Default => cfg.cts.sxp_default_password.clone(),
                    SxpPassword::None => None,
                },
            })
            .collect();
        let mut config = ListenerConfig::new(NodeId(u32::from(node)));
        if let Some((min, max)) = cfg.cts.sxp_listener_hold_time {
            config.hold_time = Some(
                HoldTimeRange::new(min, max)
                    .map_err(|e| anyhow::anyhow!("cts sxp listener hold-time: {e:?}"))?,
            );
        }
        Ok(Some(Arc::new(Self {
            peers,
            default_password_set: cfg.cts.sxp_default_password.is_some(),
            config,
            policy,
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        })))
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ConnView>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `show cts sxp connections`, as ASA prints it.
    pub fn show_connections(&self) -> String {
        let conns = self.conns();
        let mut out = String::new();
        let _ = writeln!(out, "SXP                  : Enabled");
        let _ = writeln!(out, "Highest version      : 4");
        let _ = writeln!(
            out,
            "Default password     : {}",
            if self.default_password_set {
                "Set"
            } else {
                "Not Set"
            }
        );
        let _ = writeln!(out, "Total number of SXP connections: {}", self.peers.len());
        for p in &self.peers {
            // The live connection of this peer, else the last one seen.
            let view = conns
                .values()
                .filter(|c| c.peer.ip() == p.addr)
                .max_by_key(|c| (c.on, c.since));
            let _ = writeln!(out);
            let _ = writeln!(out, "Peer IP          : {}", p.addr);
            let _ = writeln!(
                out,
                "Source IP        : {}",
                view.and_then(|v| v.local)
                    .map_or("-".to_string(), |l| l.ip().to_string())
            );
            let on = view.is_some_and(|v| v.on);
            let _ = writeln!(out, "Conn status      : {}", if on { "On" } else { "Off" });
            if let Some(v) = view.and_then(|v| v.version).filter(|_| on) {
                let _ = writeln!(out, "Conn version     : {v}");
            }
            let _ = writeln!(out, "Local mode       : Listener");
            let _ = writeln!(
                out,
                "TCP conn password: {}",
                if p.password.is_some() {
                    "Default"
                } else {
                    "None"
                }
            );
            if let Some(h) = view.and_then(|v| v.hold_time).filter(|_| on) {
                let _ = writeln!(out, "Hold time(sec)   : {}", h.as_secs());
            }
            if let Some(v) = view.filter(|_| on) {
                let _ = writeln!(out, "Bindings learned : {}", v.bindings);
            }
            if let Some(v) = view {
                let d = SystemTime::now()
                    .duration_since(v.since)
                    .unwrap_or_default()
                    .as_secs();
                let _ = writeln!(
                    out,
                    "Duration since last state change: {}:{:02}:{:02}:{:02} (dd:hr:mm:sec)",
                    d / 86_400,
                    (d / 3600) % 24,
                    (d / 60) % 60,
                    d % 60
                );
            }
        }
        out
    }
}

/// Linux `struct tcp_md5sig` (include/uapi/linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; 80],
}

/// Installs the TCP-MD5 key (RFC 2385) for `peer` on a socket: on a listening
/// socket, accepted connections inherit it; on a socket about to connect, its
/// segments to `peer` are signed (the lab's SXP test speaker does that).
pub fn set_md5_key(fd: i32, peer: IpAddr, key: &[u8]) -> std::io::Result<()> {
    if key.len() > 80 {
        return Err(std::io::Error::other(
            "TCP-MD5 password longer than 80 bytes",
        ));
    }
    // SAFETY: zeroed is a valid bit pattern for this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(a).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage; both are plain C data.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&sin as *const libc::sockaddr_in).cast::<u8>(),
                    (&mut sig.addr as *mut libc::sockaddr_storage).cast::<u8>(),
                    std::mem::size_of::<libc::sockaddr_in>(),
                );
            }
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&sin6 as *const libc::sockaddr_in6).cast::<u8>(),
                    (&mut sig.addr as *mut libc::sockaddr_storage).cast::<u8>(),
                    std::mem::size_of::<libc::sockaddr_in6>(),
                );
            }
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: fd is a valid socket for the duration of the call and `sig` is a
    // properly initialised tcp_md5sig of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast::<libc::c_void>(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Listens on TCP `port` for the configured SXP speakers.
pub async fn serve(state: Arc<SxpState>, port: u16) -> Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    for p in &state.peers {
        if let Some(key) = &p.password {
            set_md5_key(socket.as_raw_fd(), p.addr, key.as_bytes())
                .with_context(|| format!("TCP-MD5 key for SXP peer {}", p.addr))?;
        }
    }
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))?;
    let listener: TcpListener = socket.listen(64)?;
    tracing::info!(
        "SXP listener on TCP {port} for {} peer(s)",
        state.peers.len()
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("SXP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !state.peers.iter().any(|p| p.addr == peer.ip()) {
            tracing::warn!(%peer, "SXP connection from an address that is not a configured peer: closed");
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move { connection(stream, peer, state).await });
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, state: Arc<SxpState>) {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    state.conns().insert(
        id,
        ConnView {
            peer,
            local: stream.local_addr().ok(),
            on: false,
            version: None,
            hold_time: None,
            since: SystemTime::now(),
            bindings: 0,
        },
    );
    tracing::info!(%peer, "SXP connection accepted");
    let mut listener = SxpListener::new(state.config.clone(), Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    let mut closed = false;
    while !closed {
        let deadline = listener.poll_timeout();
        let outputs = tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => listener.on_transport_closed(),
                Ok(n) => listener.on_bytes(Instant::now(), buf.get(..n).unwrap_or_default()),
            },
            _ = sleep_until(deadline), if deadline.is_some() => listener.on_timeout(Instant::now()),
        };
        let mut changes: Vec<(Prefix, Option<u16>)> = Vec::new();
        for out in outputs {
            match out {
                Output::Transmit(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        closed = true;
                    }
                }
                Output::Established(s) => {
                    tracing::info!(%peer, version = s.version, hold_time = ?s.hold_time, "SXP connection up");
                    if let Some(v) = state.conns().get_mut(&id) {
                        v.on = true;
                        v.version = Some(s.version);
                        v.hold_time = s.hold_time;
                        v.since = SystemTime::now();
                    }
                }
                Output::Binding(ev) => match ev {
                    BindingEvent::Add { prefix, sgt } => {
                        changes.push(((prefix.addr(), prefix.prefix_len()), Some(sgt.0)));
                    }
                    BindingEvent::Delete { prefix } => {
                        changes.push(((prefix.addr(), prefix.prefix_len()), None));
                    }
                    BindingEvent::PurgeAll { reason, deleted } => {
                        tracing::info!(%peer, ?reason, bindings = deleted.len(), "SXP bindings purged");
                        changes.extend(
                            deleted
                                .iter()
                                .map(|b| ((b.prefix.addr(), b.prefix.prefix_len()), None)),
                        );
                    }
                },
                Output::Close(reason) => {
                    tracing::info!(%peer, "SXP connection closed: {reason:?}");
                    closed = true;
                }
            }
        }
        if !changes.is_empty() {
            tracing::info!(%peer, changes = changes.len(), "SXP bindings updated");
            state.policy.sxp_changes(id, &changes);
        }
        if let Some(v) = state.conns().get_mut(&id) {
            v.bindings = listener.binding_count();
        }
    }
    // Whatever the state machine did not purge goes with the connection.
    state.policy.sxp_forget(id);
    {
        let mut conns = state.conns();
        if let Some(v) = conns.get_mut(&id) {
            v.on = false;
            v.since = SystemTime::now();
            v.bindings = 0;
        }
        // Keep only this peer's live connections and its latest closed one (for
        // `show cts sxp connections`): a flapping peer must not grow the table.
        conns.retain(|k, c| *k == id || c.on || c.peer.ip() != peer.ip());
    }
    let _ = stream.shutdown().await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

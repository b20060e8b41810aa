//! The SXP listener's I/O (asa-aaa.md section 4): TCP 64999 with the TCP-MD5
//! password of `cts sxp default password`, one sans-IO `auth::sxp::SxpListener`
//! per connection, bindings fed into the IP-to-SGT map. A peer's bindings go
//! when its connection ends (TCP close, ERROR, hold timer).
//!
//! A reload ([`SxpState::reconfigure`]) applies new peers and passwords on the
//! listening socket; the connections of removed peers and of peers whose
//! password changed are closed (their bindings go, the peer reconnects with
//! the new key), those of unchanged peers keep running.

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

#[derive(Debug, Clone, PartialEq, Eq)]
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
    peers: Mutex<Vec<PeerConfig>>,
    default_password_set: std::sync::atomic::AtomicBool,
    /// The listening socket, for the TCP-MD5 keys of peers a reload adds.
    listen_fd: Mutex<Option<i32>>,
    /// Per connection: its peer and what closes it (a reload that removes or
    /// changes that peer).
    closers: Mutex<BTreeMap<u64, (IpAddr, Arc<tokio::sync::Notify>)>>,
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
        let peers = peers_of(cfg);
        let mut config = ListenerConfig::new(NodeId(u32::from(node)));
        if let Some((min, max)) = cfg.cts.sxp_listener_hold_time {
            config.hold_time = Some(
                HoldTimeRange::new(min, max)
                    .map_err(|e| anyhow::anyhow!("cts sxp listener hold-time: {e:?}"))?,
            );
        }
        Ok(Some(Arc::new(Self {
            peers: Mutex::new(peers),
            default_password_set: cfg.cts.sxp_default_password.is_some().into(),
            listen_fd: Mutex::new(None),
            closers: Mutex::new(BTreeMap::new()),
            config,
            policy,
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        })))
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Vec<PeerConfig>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reload: the new `cts sxp connection peer` lines and passwords. Keys
    /// go on the listening socket first (an error changes nothing but the keys
    /// already set); then connections of removed or changed peers are closed.
    /// Returns what changed, for the reload's reply.
    pub fn reconfigure(&self, cfg: &Config) -> Result<Vec<String>> {
        let new = peers_of(cfg);
        let old = self.peers().clone();
        self.default_password_set
            .store(cfg.cts.sxp_default_password.is_some(), Ordering::Relaxed);
        if new == old {
            return Ok(Vec::new());
        }
        let fd = *self.listen_fd.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fd) = fd {
            for p in new.iter().filter(|p| !old.contains(p)) {
                // An empty key removes the one a changed peer had.
                let key = p.password.as_deref().unwrap_or_default();
                set_md5_key(fd, p.addr, key.as_bytes())
                    .or_else(|e| if key.is_empty() { Ok(()) } else { Err(e) })
                    .with_context(|| format!("TCP-MD5 key for SXP peer {}", p.addr))?;
            }
            for p in old.iter().filter(|p| p.password.is_some()) {
                if !new.iter().any(|n| n.addr == p.addr) {
                    let _ = set_md5_key(fd, p.addr, b"");
                }
            }
        }
        let gone: Vec<IpAddr> = old
            .iter()
            .filter(|p| !new.contains(p))
            .map(|p| p.addr)
            .collect();
        *self.peers() = new.clone();
        let mut notes = Vec::new();
        for (_, (addr, close)) in self
            .closers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (a, _))| gone.contains(a))
        {
            close.notify_one();
            notes.push(format!(
                "SXP connection from {addr} closed: peer removed or changed"
            ));
        }
        notes.push(format!("SXP peers: {}", new.len()));
        Ok(notes)
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
            if self.default_password_set.load(Ordering::Relaxed) {
                "Set"
            } else {
                "Not Set"
            }
        );
        let peers = self.peers().clone();
        let _ = writeln!(out, "Total number of SXP connections: {}", peers.len());
        for p in &peers {
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
    for p in state.peers().iter() {
        if let Some(key) = &p.password {
            set_md5_key(socket.as_raw_fd(), p.addr, key.as_bytes())
                .with_context(|| format!("TCP-MD5 key for SXP peer {}", p.addr))?;
        }
    }
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))?;
    let listener: TcpListener = socket.listen(64)?;
    *state.listen_fd.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener.as_raw_fd());
    tracing::info!(
        "SXP listener on TCP {port} for {} peer(s)",
        state.peers().len()
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
        if !state.peers().iter().any(|p| p.addr == peer.ip()) {
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
    let close = Arc::new(tokio::sync::Notify::new());
    state
        .closers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (peer.ip(), close.clone()));
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
            // A reload removed or changed this peer.
            _ = close.notified() => {
                closed = true;
                listener.on_transport_closed()
            }
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
    state
        .closers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
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

fn peers_of(cfg: &Config) -> Vec<PeerConfig> {
    cfg.cts
        .sxp_connections
        .iter()
        .map(|c| PeerConfig {
            addr: c.peer,
            password: match c.password {
                SxpPassword::Default => cfg.cts.sxp_default_password.clone(),
                SxpPassword::None => None,
            },
        })
        .collect()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(peers: &str) -> Config {
        crate::config::parse_str(&format!("cts sxp enable\n{peers}"), "s.cfg")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const PEER: &str = "cts sxp connection peer 127.0.0.1 password none mode local listener\n";
    const OTHER: &str = "cts sxp connection peer 198.18.1.21 password none mode local listener\n";

    fn open_connections(state: &SxpState) -> usize {
        state.closers.lock().unwrap().len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_keeps_unchanged_peers_and_closes_removed_ones() {
        let c = cfg(PEER);
        let policy = Arc::new(PolicyState::new(&c).unwrap());
        let state = SxpState::from_config(&c, policy, Ipv4Addr::LOCALHOST)
            .unwrap()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        tokio::spawn(serve(state.clone(), port));
        // Bounded: the listener is up within a few tries.
        let mut stream = None;
        for _ in 0..200 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
                stream = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut stream = stream.expect("SXP listener up");
        for _ in 0..200 {
            if open_connections(&state) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(open_connections(&state), 1);

        // Unchanged peer (another one added): its connection stays.
        let notes = state.reconfigure(&cfg(&format!("{PEER}{OTHER}"))).unwrap();
        assert_eq!(notes, ["SXP peers: 2"]);
        assert_eq!(open_connections(&state), 1);
        assert!(state.show_connections().contains("198.18.1.21"));

        // Removed: the connection is closed (EOF on our side).
        let notes = state.reconfigure(&cfg(OTHER)).unwrap();
        assert!(notes[0].contains("127.0.0.1 closed"), "{notes:?}");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("hang guard: connection not closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(!state.show_connections().contains("127.0.0.1"));
    }
}

//! One loadgen session: a task that logs in, CONNECTs, brings DTLS up (unless
//! CSTP only), then sends its inner packets and answers DPD/keepalives until
//! told to log out. One task per session, fixed buffers per session, nothing
//! allocated per packet on the data path.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use headend::proto::cstp::{self, FrameDecoder, FrameType};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::auth::{Login, Step};
use super::dtls::{DtlsClient, DtlsClientContext};
use super::http::{self, AuthHeaders, ResponseHead, Tunnel};
use super::pace::Pacer;
use super::packet::{self, Inbound};
use super::report::Stats;

/// Where the run is; sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connect, but send nothing yet (`--burst`: every session's first packet
    /// goes when all are up, at once).
    Ramp,
    /// Connect and send traffic.
    Run,
    /// Stop sending; keep receiving (late echo replies).
    Drain,
    /// Send DISCONNECT and close.
    Logout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Icmp,
    Udp,
}

#[derive(Debug, Clone)]
pub struct Traffic {
    pub kind: Kind,
    pub target: Ipv4Addr,
    pub udp_port: u16,
    /// The UDP target echoes: count its replies like echo replies.
    pub udp_echo: bool,
    /// Packets per second per session (0: none).
    pub pps: f64,
    /// Inner IP packet size in bytes.
    pub size: usize,
    /// Stop after this many packets per session (0: until the drain).
    pub count: u64,
}

pub struct Setup {
    pub tls: Arc<rustls::ClientConfig>,
    /// `None`: CSTP only (no `X-DTLS-*` in the CONNECT).
    pub dtls: Option<DtlsClientContext>,
    pub server: SocketAddr,
    pub host: String,
    pub group_access: String,
    pub strap: AuthHeaders,
    /// `{n}` is replaced with the session number.
    pub user_pattern: String,
    pub password: String,
    pub group: Option<String>,
    pub traffic: Traffic,
    pub stats: Arc<Stats>,
    /// Source port of our UDP packets (inner), the port replies come back to.
    pub inner_udp_port: u16,
    /// Once up, cut the TCP connection (RST, no logout) and reconnect with the
    /// session cookie this many times, as openconnect does after a network
    /// change; the traffic of the hold then goes through the last tunnel.
    pub reconnects: u32,
    /// A connection lost without the server's DISCONNECT is reconnected with
    /// the cookie (openconnect's behaviour) instead of counting as lost.
    pub reconnect_on_loss: bool,
    /// SO_RCVBUF of the DTLS sockets in bytes (0: the kernel's default).
    pub udp_rcvbuf: usize,
}

/// Reconnect attempts per session with --reconnect-on-loss.
const MAX_LOSS_RECONNECTS: u32 = 64;
/// How long a lost session keeps trying, as openconnect's `--reconnect-timeout`
/// (default 300 s). A server under a reconnect storm refuses what it cannot
/// take yet (per-source limits, a full backlog): giving up after a few quick
/// tries would measure the client's patience, not the server.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause after a failed attempt: doubles from 1 s up to this, plus a spread
/// by session so that thousands of sessions do not retry in lockstep.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(10);

const MTU_ASK: u16 = 1390;
/// UDP payload size for DTLS on a 1500-byte path.
const DTLS_MTU: u32 = 1472;
/// Echo send times kept per session, for RTTs (older replies count, no RTT).
const RING: usize = 64;
const READ_BUF: usize = 4096;
/// Datagrams read per wake-up of a session's UDP socket: the one that woke
/// it and those already queued behind it (one task poll for a burst).
const RECV_BATCH: usize = 64;
/// Records per UDP GSO send (the kernel's limit is 64 segments).
const GSO_SEGS: usize = 64;
/// Timer granularity of a fast sender (tokio's timer resolution).
const MIN_TICK: Duration = Duration::from_millis(1);
/// Ticks of delay a sender absorbs before writing packets off as lagged.
const SLACK_TICKS: f64 = 10.0;

type Tls = TlsStream<TcpStream>;

pub fn user_name(pattern: &str, n: usize) -> String {
    pattern.replace("{n}", &n.to_string())
}

/// Runs one session to the end; failures are counted in `setup.stats`.
pub async fn run(
    setup: Arc<Setup>,
    index: usize,
    permit: OwnedSemaphorePermit,
    phase: watch::Receiver<Phase>,
) {
    let stats = setup.stats.clone();
    stats.attempted.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (tls, tunnel, leftover, cookie) = match connect(&setup, index).await {
        Ok(c) => c,
        Err(e) => {
            stats.fail(&e);
            return;
        }
    };
    let mut tls = tls;
    let mut dtls = None;
    if let Some(ctx) = &setup.dtls {
        match bring_up_dtls(ctx, &setup, &tls, &tunnel).await {
            Ok(d) => dtls = Some(d),
            Err(e) => {
                stats.fail(&e);
                let _ = tls.write_all(&logout_frame()).await;
                let _ = tls.shutdown().await;
                return;
            }
        }
    }
    stats.add_connect(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    let (mut tunnel, mut leftover) = (tunnel, leftover);
    // Bounded by --reconnects; each step has the connect's own bounds.
    for _ in 0..setup.reconnects {
        cut(tls);
        drop(dtls.take());
        match reconnect(&setup, &cookie, tunnel.address).await {
            Ok((t, new_tunnel, rest, d)) => {
                if new_tunnel.address != tunnel.address {
                    stats.address_changed.fetch_add(1, Ordering::Relaxed);
                }
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                (tls, tunnel, leftover, dtls) = (t, new_tunnel, rest, d);
            }
            Err(e) => {
                // Up once, then gone: counted like a session lost mid-run.
                stats.up.fetch_add(1, Ordering::Relaxed);
                stats.lost.fetch_add(1, Ordering::Relaxed);
                stats.fail(&format!("reconnect: {e}"));
                return;
            }
        }
    }
    stats.up.fetch_add(1, Ordering::Relaxed);
    if dtls.is_some() {
        stats.dtls_up.fetch_add(1, Ordering::Relaxed);
    }
    stats.add_address(tunnel.address);
    drop(permit);
    let mut t = UpSession {
        setup: &setup,
        tunnel,
        ident: (index as u16).wrapping_add(1),
        ring: [(u64::MAX, started); RING],
        seq: 0,
        rtts: Vec::with_capacity(64),
        rx: 0,
        lagged: 0,
    };
    let mut end = t.run(&mut tls, dtls, leftover, phase.clone()).await;
    // --reconnect-on-loss: a connection lost without a DISCONNECT from the
    // server (`ss -K`, a reset) is reconnected with the cookie, as openconnect
    // does. Bounded: at most MAX_LOSS_RECONNECTS attempts per session, for at
    // most RECONNECT_TIMEOUT after each loss.
    let mut attempts = 0;
    let mut lost_at = tokio::time::Instant::now();
    let mut backoff = Duration::from_secs(1);
    while let Err(e) = &end {
        let logout = *phase.borrow() == Phase::Logout;
        if !setup.reconnect_on_loss
            || logout
            || e.starts_with("server disconnect")
            || e.starts_with("server ended")
            || attempts >= MAX_LOSS_RECONNECTS
            || lost_at.elapsed() > RECONNECT_TIMEOUT
        {
            break;
        }
        attempts += 1;
        match reconnect(&setup, &cookie, t.tunnel.address).await {
            Ok((new_tls, tunnel, rest, d)) => {
                if tunnel.address != t.tunnel.address {
                    stats.address_changed.fetch_add(1, Ordering::Relaxed);
                }
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                t.tunnel = tunnel;
                tls = new_tls;
                end = t.run(&mut tls, d, rest, phase.clone()).await;
                // Up again: a later loss gets the whole timeout again.
                lost_at = tokio::time::Instant::now();
                backoff = Duration::from_secs(1);
            }
            Err(why) => {
                end = Err(format!("reconnect: {why}"));
                let spread = Duration::from_millis((index as u64 * 7919) % 1000);
                tokio::time::sleep(backoff + spread).await;
                backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
            }
        }
    }
    stats.add_rtts(&t.rtts);
    stats.add_session_rx(t.rx);
    stats.tx_lagged.fetch_add(t.lagged, Ordering::Relaxed);
    match end {
        Ok(()) => {
            stats.down.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            stats.fail(&format!("lost: {e}"));
        }
    }
}

fn logout_frame() -> Vec<u8> {
    // openconnect: DISCONNECT with 0xb0 + reason on every normal exit.
    cstp::disconnect_frame("loadgen logout")
}

/// Ends the connection the way a network change does: no DISCONNECT, no
/// close_notify, an RST (SO_LINGER 0) instead of a FIN, so the server sees the
/// connection fail rather than end.
fn cut(tls: Tls) {
    use std::os::fd::AsRawFd;
    let fd = tls.get_ref().0.as_raw_fd();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the live TCP socket owned by `tls` (dropped, and so
    // closed, right after); the pointer/length are of a local linger.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(tls);
}

/// A new TCP+TLS connection, the CONNECT with the session cookie (and the old
/// address in `X-CSTP-Address`, as openconnect sends it), then DTLS again.
async fn reconnect(
    setup: &Setup,
    cookie: &str,
    previous: Ipv4Addr,
) -> Result<(Tls, Tunnel, Vec<u8>, Option<Dtls>), String> {
    let mut tls = open_tls(setup).await?;
    let mut buf = Vec::with_capacity(READ_BUF);
    let (tunnel, leftover) =
        connect_tunnel(setup, &mut tls, &mut buf, cookie, Some(previous)).await?;
    let dtls = match &setup.dtls {
        Some(ctx) => Some(bring_up_dtls(ctx, setup, &tls, &tunnel).await?),
        None => None,
    };
    Ok((tls, tunnel, leftover, dtls))
}

async fn open_tls(setup: &Setup) -> Result<Tls, String> {
    let tcp = TcpStream::connect(setup.server)
        .await
        .map_err(|e| format!("tcp connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(setup.host.clone()).map_err(|e| format!("server name: {e}"))?;
    TlsConnector::from(setup.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// Sends the CONNECT and reads its reply: the tunnel and the bytes after it.
async fn connect_tunnel(
    setup: &Setup,
    tls: &mut Tls,
    buf: &mut Vec<u8>,
    cookie: &str,
    previous: Option<Ipv4Addr>,
) -> Result<(Tunnel, Vec<u8>), String> {
    let req = http::connect_request(&setup.host, cookie, MTU_ASK, setup.dtls.is_some(), previous);
    tls.write_all(&req)
        .await
        .map_err(|e| format!("connect write: {}", e.kind()))?;
    let head = read_head(tls, buf).await?;
    let tunnel = http::parse_tunnel(&head)?;
    let leftover = buf.split_off(head.head_len);
    Ok((tunnel, leftover))
}

/// Logs in and CONNECTs: the tunnel, the bytes after the reply, the cookie.
async fn connect(setup: &Setup, index: usize) -> Result<(Tls, Tunnel, Vec<u8>, String), String> {
    let mut tls = open_tls(setup).await?;
    let user = user_name(&setup.user_pattern, index);
    let mut login = Login::new(
        &setup.group_access,
        &user,
        &setup.password,
        setup.group.as_deref(),
    );
    let mut buf = Vec::with_capacity(READ_BUF);
    let mut step = login.start();
    let cookie = loop {
        match step {
            Step::Post(body) => {
                tls.write_all(&http::auth_post(&setup.host, &setup.strap, &body))
                    .await
                    .map_err(|e| format!("auth write: {}", e.kind()))?;
                let head = read_head(&mut tls, &mut buf).await?;
                let len = head.content_length().unwrap_or(0).min(http::MAX_BODY);
                let body = read_body(&mut tls, &mut buf, head.head_len, len).await?;
                let text = String::from_utf8_lossy(&body).into_owned();
                step = login.on_response(head.status, head.webvpn_cookie(), &text);
            }
            Step::Done(cookie) => break cookie,
            Step::Failed(why) => return Err(why),
        }
    };
    let (tunnel, leftover) = connect_tunnel(setup, &mut tls, &mut buf, &cookie, None).await?;
    Ok((tls, tunnel, leftover, cookie))
}

/// Reads until `buf` starts with a complete response head.
async fn read_head(tls: &mut Tls, buf: &mut Vec<u8>) -> Result<ResponseHead, String> {
    let mut chunk = [0u8; 2048];
    // Bounded by MAX_HEAD: parse_response_head errors beyond it.
    loop {
        if let Some(h) = http::parse_response_head(buf)? {
            return Ok(h);
        }
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a body of `len` bytes after `head_len`; leaves what follows in `buf`.
async fn read_body(
    tls: &mut Tls,
    buf: &mut Vec<u8>,
    head_len: usize,
    len: usize,
) -> Result<Vec<u8>, String> {
    let mut chunk = [0u8; 2048];
    while buf.len() < head_len + len {
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read body: {}", e.kind()))?;
        if n == 0 {
            return Err("server closed during a response body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let rest = buf.split_off(head_len + len);
    let body = buf.split_off(head_len);
    *buf = rest;
    Ok(body)
}

struct Dtls {
    udp: UdpSocket,
    client: DtlsClient,
}

/// Sends what is queued: a plain non-blocking send(2) per datagram, our own
/// records in UDP GSO runs (one sendmsg for a burst of equal-size records).
/// tokio's `try_send` refuses until the reactor has seen the socket writable,
/// which would drop a fresh session's ClientHello. A full send buffer drops
/// the datagrams (counted), as a kernel queue would.
fn flush_dtls(udp: &UdpSocket, client: &mut DtlsClient, stats: &Stats) {
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd();
    client.drain_runs(GSO_SEGS, |bytes, seg| {
        if bytes.len() <= seg || !send_gso(fd, bytes, seg) {
            for d in bytes.chunks(seg.max(1)) {
                if !send_one(fd, d) {
                    stats.tx_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
}

fn send_one(fd: std::os::fd::RawFd, d: &[u8]) -> bool {
    // SAFETY: `fd` is a live connected UDP socket; the pointer/length pair is
    // the borrowed datagram.
    let n = unsafe {
        libc::send(
            fd,
            d.as_ptr().cast(),
            d.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    n >= 0
}

/// `UDP_SEGMENT` (linux/udp.h, since 4.18) at level `SOL_UDP`.
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;

/// One sendmsg of `bytes` cut by the kernel into datagrams of `seg` bytes
/// (the last may be shorter). False if it was not sent (the caller then
/// sends them one by one: a kernel without GSO, a full buffer).
fn send_gso(fd: std::os::fd::RawFd, bytes: &[u8], seg: usize) -> bool {
    let Ok(seg16) = u16::try_from(seg) else {
        return false;
    };
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    let mut cbuf = [0u64; 4]; // 32 bytes, aligned for cmsghdr
    debug_assert!(space <= std::mem::size_of_val(&cbuf));
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `cbuf`, large enough for one cmsg with a
    // u16 (checked above); CMSG_FIRSTHDR/CMSG_DATA stay inside it. The iovec
    // borrows `bytes`, which sendmsg only reads; `fd` is a live UDP socket.
    let n = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg16);
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    n >= 0
}

/// Asks for a receive buffer of `bytes` (SO_RCVBUFFORCE passes
/// net.core.rmem_max as root; SO_RCVBUF is capped by it otherwise). Best
/// effort: the report's RcvbufErrors (tput.sh) show what it was worth.
fn set_rcvbuf(udp: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: a live socket; the pointer/length are of a local c_int.
        unsafe {
            libc::setsockopt(
                udp.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_ref(&v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(libc::SO_RCVBUFFORCE) {
        set(libc::SO_RCVBUF);
    }
}

async fn bring_up_dtls(
    ctx: &DtlsClientContext,
    setup: &Setup,
    tls: &Tls,
    tunnel: &Tunnel,
) -> Result<Dtls, String> {
    let (app_id, port) = tunnel
        .dtls
        .clone()
        .ok_or("dtls: the server offered no DTLS (X-DTLS-App-ID/Port)")?;
    let mut psk = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut psk, headend::dtls::PSK_EXPORTER_LABEL, None)
        .map_err(|e| format!("dtls: exporter: {e}"))?;
    let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .map_err(|e| format!("dtls: udp bind: {}", e.kind()))?;
    if setup.udp_rcvbuf > 0 {
        set_rcvbuf(&udp, setup.udp_rcvbuf);
    }
    udp.connect((setup.server.ip(), port))
        .await
        .map_err(|e| format!("dtls: udp connect: {}", e.kind()))?;
    let client = ctx
        .connect(psk, &app_id, DTLS_MTU)
        .map_err(|e| format!("dtls: {e}"))?;
    let mut d = Dtls { udp, client };
    let mut ubuf = [0u8; 2048];
    let mut rbuf = [0u8; 2048];
    let mut timeouts = 0u32;
    // Bounded: at most 7 retransmission timeouts (1+2+4+8+8+8+8 s, doubling
    // like OpenSSL's own timer: a busy server is slow, not gone) and 64 datagrams.
    for _ in 0..64 {
        flush_dtls(&d.udp, &mut d.client, &setup.stats);
        let wait = Duration::from_secs(1 << timeouts.min(3));
        match tokio::time::timeout(wait, d.udp.recv(&mut ubuf)).await {
            Ok(Ok(n)) => {
                d.client.input(&mut ubuf[..n], &mut rbuf, |_| {})?;
                if d.client.established {
                    flush_dtls(&d.udp, &mut d.client, &setup.stats);
                    return Ok(d);
                }
            }
            Ok(Err(e)) => return Err(format!("dtls: udp receive: {}", e.kind())),
            Err(_) => {
                timeouts += 1;
                if timeouts > 7 {
                    return Err("dtls: handshake timed out".into());
                }
                d.client.on_timeout();
            }
        }
    }
    Err("dtls: handshake did not finish".into())
}

/// The up phase of a session.
struct UpSession<'a> {
    setup: &'a Setup,
    tunnel: Tunnel,
    ident: u16,
    ring: [(u64, Instant); RING],
    seq: u64,
    rtts: Vec<u32>,
    /// Inner UDP packets to our port received.
    rx: u64,
    /// Packets the pacer wrote off (this session could not keep its rate).
    lagged: u64,
}

impl UpSession<'_> {
    async fn run(
        &mut self,
        tls: &mut Tls,
        dtls: Option<Dtls>,
        leftover: Vec<u8>,
        mut phase: watch::Receiver<Phase>,
    ) -> Result<(), String> {
        let stats = self.setup.stats.clone();
        let tr = self.setup.traffic.clone();
        let (udp, mut client) = match dtls {
            Some(d) => (Some(d.udp), Some(d.client)),
            None => (None, None),
        };
        let mut dec = FrameDecoder::new(cstp::DEFAULT_MAX_PAYLOAD);
        dec.feed(&leftover);
        self.cstp_frames(&mut dec, tls).await?;
        let mut rbuf = vec![0u8; READ_BUF];
        let mut ubuf = [0u8; 2048];
        let mut plain = [0u8; 2048];
        let mut pkt = [0u8; 2048];
        let mut wbuf: Vec<u8> = Vec::with_capacity(2048);
        let sending = tr.pps > 0.0;
        // One packet per tick up to 1,000 packets/s; above, 1 ms ticks that
        // send what the pacer says is due (tokio's timer has 1 ms resolution).
        let period = if sending {
            Duration::from_secs_f64(1.0 / tr.pps).max(MIN_TICK)
        } else {
            Duration::from_secs(3600)
        };
        let mut pacer = Pacer::new(
            tr.pps,
            Pacer::burst_for(tr.pps, period.as_secs_f64(), SLACK_TICKS),
        );
        let mut pace_origin: Option<Instant> = None;
        let mut record_drops = 0u64;
        let mut send_tick = tokio::time::interval(period);
        send_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let keepalive = Duration::from_secs(self.tunnel.keepalive_secs.unwrap_or(20).max(1));
        let mut ka_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
        let size = tr.size.min(usize::from(self.tunnel.mtu));
        loop {
            let running = *phase.borrow() == Phase::Run;
            let want_send = sending && running && (tr.count == 0 || self.seq < tr.count);
            tokio::select! {
                r = tls.read(&mut rbuf) => {
                    let n = r.map_err(|e| format!("tls read: {}", e.kind()))?;
                    if n == 0 {
                        return Err("server closed the TLS connection".into());
                    }
                    dec.feed(&rbuf[..n]);
                    self.cstp_frames(&mut dec, tls).await?;
                }
                r = recv_opt(udp.as_ref(), &mut ubuf) => {
                    let mut n = r.map_err(|e| format!("udp receive: {}", e.kind()))?;
                    if let (Some(c), Some(u)) = (client.as_mut(), udp.as_ref()) {
                        let mut end = None;
                        // Bounded: the datagram that woke us and at most
                        // RECV_BATCH - 1 already queued behind it.
                        for i in 0..RECV_BATCH {
                            if i > 0 {
                                match u.try_recv(&mut ubuf) {
                                    Ok(m) => n = m,
                                    Err(_) => break,
                                }
                            }
                            let mut dpd: Option<usize> = None;
                            c.input(&mut ubuf[..n], &mut plain, |rec| match rec.first() {
                                Some(0) => self.inbound(&rec[1..]),
                                Some(3) => {
                                    // MTU probe / DPD: echo the record as a DPD-RESP.
                                    let l = rec.len().min(pkt.len());
                                    pkt[..l].copy_from_slice(&rec[..l]);
                                    pkt[0] = 4;
                                    dpd = Some(l);
                                }
                                Some(5) | Some(9) => end = Some("server ended the session over DTLS"),
                                _ => {}
                            })?;
                            if let Some(l) = dpd {
                                c.write_record(&pkt[..l]);
                            }
                            if end.is_some() {
                                break;
                            }
                        }
                        flush_dtls(u, c, &stats);
                        let d = c.record_drops();
                        if d > record_drops {
                            stats.rx_record_drops.fetch_add(d - record_drops, Ordering::Relaxed);
                            record_drops = d;
                        }
                        if let Some(why) = end {
                            return Err(why.into());
                        }
                    }
                }
                _ = send_tick.tick(), if want_send => {
                    let now = Instant::now();
                    let origin = *pace_origin.get_or_insert(now);
                    let mut due = pacer.due(now.duration_since(origin).as_secs_f64());
                    self.lagged = pacer.lagged();
                    if tr.count > 0 {
                        due = due.min(tr.count.saturating_sub(self.seq));
                    }
                    let me = self.tunnel.address;
                    wbuf.clear();
                    // Bounded by the pacer's burst cap.
                    for _ in 0..due {
                        let seq = self.seq;
                        self.seq += 1;
                        let build = |buf: &mut [u8]| match tr.kind {
                            Kind::Icmp => packet::icmp_echo(buf, size, me, tr.target, self.ident, seq),
                            Kind::Udp => packet::udp(
                                buf,
                                size,
                                (me, self.setup.inner_udp_port),
                                (tr.target, tr.udp_port),
                                seq,
                            ),
                        };
                        let n = match client.as_mut() {
                            Some(c) => {
                                let mut n = 0;
                                // The record type byte goes in front of the packet.
                                if !c.write_with(|b| {
                                    b[0] = 0;
                                    n = build(&mut b[1..]);
                                    n + 1
                                }) {
                                    return Err("dtls write failed".into());
                                }
                                n
                            }
                            None => {
                                let n = build(&mut pkt[..]);
                                let _ = cstp::encode_into(FrameType::Data, &pkt[..n], &mut wbuf);
                                n
                            }
                        };
                        if tr.kind == Kind::Icmp || tr.udp_echo {
                            self.ring[seq as usize % RING] = (seq, Instant::now());
                            stats.echo_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.tx_pkts.fetch_add(1, Ordering::Relaxed);
                        stats.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    match (client.as_mut(), udp.as_ref()) {
                        (Some(c), Some(u)) => flush_dtls(u, c, &stats),
                        _ if !wbuf.is_empty() => {
                            tls.write_all(&wbuf)
                                .await
                                .map_err(|e| format!("tls write: {}", e.kind()))?;
                        }
                        _ => {}
                    }
                }
                _ = ka_tick.tick() => {
                    tls.write_all(&cstp::empty_frame(FrameType::Keepalive))
                        .await
                        .map_err(|e| format!("tls write: {}", e.kind()))?;
                    if let (Some(c), Some(u)) = (client.as_mut(), udp.as_ref()) {
                        c.write_record(&[7]);
                        flush_dtls(u, c, &stats);
                    }
                }
                _ = flush_tick.tick() => {
                    stats.add_rtts(&self.rtts);
                    self.rtts.clear();
                }
                r = phase.changed() => {
                    if r.is_err() || *phase.borrow() == Phase::Logout {
                        let _ = tls.write_all(&logout_frame()).await;
                        let _ = tls.flush().await;
                        let _ = tls.shutdown().await;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles the complete CSTP frames in `dec`.
    async fn cstp_frames(&mut self, dec: &mut FrameDecoder, tls: &mut Tls) -> Result<(), String> {
        let mut dpd_reqs = 0usize;
        // Bounded by the bytes fed: each frame consumes at least a header.
        loop {
            let frame = dec
                .next_frame()
                .map_err(|e| format!("bad CSTP frame from server: {e}"))?;
            let Some(f) = frame else { break };
            match f.kind {
                FrameType::Data => self.inbound(f.payload),
                FrameType::DpdReq => dpd_reqs += 1,
                FrameType::Disconnect | FrameType::Terminate => {
                    let why = String::from_utf8_lossy(f.payload.get(1..).unwrap_or_default())
                        .into_owned();
                    return Err(format!("server disconnect: {why}"));
                }
                _ => {}
            }
        }
        for _ in 0..dpd_reqs {
            tls.write_all(&cstp::empty_frame(FrameType::DpdResp))
                .await
                .map_err(|e| format!("tls write: {}", e.kind()))?;
        }
        Ok(())
    }

    /// One inner packet from the server.
    fn inbound(&mut self, pkt: &[u8]) {
        let stats = &self.setup.stats;
        stats.rx_pkts.fetch_add(1, Ordering::Relaxed);
        stats
            .rx_bytes
            .fetch_add(pkt.len() as u64, Ordering::Relaxed);
        let tr = &self.setup.traffic;
        let class = packet::classify(
            pkt,
            self.tunnel.address,
            self.ident,
            self.setup.inner_udp_port,
        );
        // UDP to our port (`tput send`): counted apart from what else a
        // server sends down a tunnel (ocserv's TUN sends IPv6 router
        // solicitations, for one).
        if let Inbound::Udp { .. } = class {
            self.rx += 1;
            stats.rx_udp_pkts.fetch_add(1, Ordering::Relaxed);
            stats
                .rx_udp_bytes
                .fetch_add(pkt.len() as u64, Ordering::Relaxed);
        }
        let seq = match class {
            Inbound::EchoReply { seq } => seq,
            Inbound::Udp { seq } if tr.udp_echo => seq,
            _ => {
                stats.other_rx.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        stats.echo_recv.fetch_add(1, Ordering::Relaxed);
        let (s, at) = self.ring[seq as usize % RING];
        if s == seq {
            self.rtts
                .push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
    }
}

async fn recv_opt(udp: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match udp {
        Some(u) => u.recv(buf).await,
        None => std::future::pending().await,
    }
}

//! An SXP speaker in the lab's inside namespace (ISE's role: asa-aaa.md section 4),
//! talking to the headend's SXP listener on TCP 64999 over a TCP-MD5 signed
//! connection. It writes exactly the bytes sxpd (the open-source C speaker,
//! kilcreas/sxpdc) writes — `auth::sxp::test_speaker` builds them and is checked
//! against recordings of sxpd in `shared/lab/sxp-reference.md` — because CI cannot
//! fetch sxpd itself (`netns/sxpd-check.sh` runs the real one by hand).
//!
//! ```text
//! vpngw-ID  inside 198.18.1.1:64999  <──TCP-MD5──  198.18.1.30 (speaker)  inside-ID
//! ```
//!
//! The speaker connects from its own address (added to the inside host's `eth0`),
//! sends OPEN (v4, node 10.0.0.1, hold-time minimum 9), reads the headend's
//! OPEN_RESP, and from then on sends a KEEPALIVE every 3 s from a thread until it is
//! told to go silent ([`SxpSpeaker::go_silent`]) or dropped.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use auth::sxp::attribute::{Prefix, Sgt};
use auth::sxp::test_speaker::TestSpeaker;

use crate::lab::{INSIDE_GW, Lab};
use crate::netns;

/// The headend's SXP port.
pub const SXP_PORT: u16 = 64999;
/// The lab's SXP speaker (ISE): `cts sxp connection peer 198.18.1.30 ...`.
pub const SXP_SPEAKER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 30);
/// How often the speaker sends KEEPALIVE (a third of its hold-time minimum, 9 s).
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(3);

/// Parses `"198.18.1.10/32"`; panics on a bad literal (test input).
pub fn prefix(s: &str) -> Prefix {
    s.parse()
        .unwrap_or_else(|_| panic!("bad prefix literal {s:?}"))
}

/// A connected SXP speaker. Dropping it closes the TCP connection.
pub struct SxpSpeaker {
    stream: Arc<Mutex<TcpStream>>,
    speaker: TestSpeaker,
    silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    keepalive: Option<JoinHandle<()>>,
    /// The headend's OPEN_RESP, as received.
    pub open_resp: Vec<u8>,
}

/// Opens a TCP connection from `from` (in the lab's inside namespace) to the
/// headend's SXP port, signing it with TCP-MD5 `password` when given.
pub fn connect_tcp(
    lab: &Lab,
    from: Ipv4Addr,
    password: Option<&str>,
    timeout: Duration,
) -> Result<TcpStream, String> {
    crate::radius::ensure_inside_addr(lab, from);
    let password = password.map(str::to_owned);
    netns::in_netns(lab.inside_ns(), move || {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh socket nobody else owns; the stream closes it.
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        if let Some(key) = &password {
            headend::sxp_io::set_md5_key(fd, IpAddr::V4(INSIDE_GW), key.as_bytes())
                .map_err(|e| format!("TCP_MD5SIG: {e}"))?;
        }
        sockaddr_call(fd, SocketAddr::new(IpAddr::V4(from), 0), libc::bind)
            .map_err(|e| format!("bind {from}: {e}"))?;
        // SO_SNDTIMEO bounds a blocking connect(2) on Linux (it then fails with
        // EINPROGRESS).
        stream
            .set_write_timeout(Some(timeout))
            .and_then(|()| stream.set_read_timeout(Some(timeout)))
            .map_err(|e| format!("socket timeouts: {e}"))?;
        let to = SocketAddr::new(IpAddr::V4(INSIDE_GW), SXP_PORT);
        sockaddr_call(fd, to, libc::connect).map_err(|e| {
            if e.raw_os_error() == Some(libc::EINPROGRESS) {
                format!("SXP connect {from} -> {to}: no answer in {timeout:?}")
            } else {
                format!("SXP connect {from} -> {to}: {e}")
            }
        })?;
        Ok(stream)
    })
}

/// `bind(2)` or `connect(2)` of `fd` to the IPv4 `addr`.
fn sockaddr_call(
    fd: i32,
    addr: SocketAddr,
    call: unsafe extern "C" fn(i32, *const libc::sockaddr, libc::socklen_t) -> i32,
) -> std::io::Result<()> {
    let IpAddr::V4(ip) = addr.ip() else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: fd is an open socket; sin is a valid sockaddr_in of the size passed.
    let rc = unsafe {
        call(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reads one SXP message (length-prefixed) from `s`.
pub fn read_message(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head)
        .map_err(|e| format!("reading an SXP header: {e}"))?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if !(8..=4096).contains(&len) {
        return Err(format!("SXP message length {len} out of range"));
    }
    let mut msg = head.to_vec();
    msg.resize(len, 0);
    s.read_exact(&mut msg[8..])
        .map_err(|e| format!("reading an SXP body: {e}"))?;
    Ok(msg)
}

/// The SXP message type of `msg` (1 OPEN, 2 OPEN_RESP, 3 UPDATE, 4 ERROR, ...).
pub fn message_type(msg: &[u8]) -> u32 {
    msg.get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl SxpSpeaker {
    /// Connects from [`SXP_SPEAKER`] with `password`, does the OPEN / OPEN_RESP
    /// exchange and starts the keepalives.
    pub fn connect(lab: &Lab, password: &str) -> Result<SxpSpeaker, String> {
        Self::connect_from(lab, SXP_SPEAKER, Some(password))
    }

    pub fn connect_from(
        lab: &Lab,
        from: Ipv4Addr,
        password: Option<&str>,
    ) -> Result<SxpSpeaker, String> {
        let mut stream = connect_tcp(lab, from, password, Duration::from_secs(5))?;
        let speaker = TestSpeaker::default();
        stream
            .write_all(&speaker.open())
            .map_err(|e| format!("sending OPEN: {e}"))?;
        let open_resp = read_message(&mut stream)?;
        if message_type(&open_resp) != 2 {
            return Err(format!(
                "expected OPEN_RESP from the headend, got {}",
                hex(&open_resp)
            ));
        }
        let stream = Arc::new(Mutex::new(stream));
        let silent = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let keepalive = {
            let (stream, silent, stop) = (stream.clone(), silent.clone(), stop.clone());
            std::thread::spawn(move || {
                let tick = Duration::from_millis(100);
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    waited += tick;
                    if waited < KEEPALIVE_EVERY {
                        continue;
                    }
                    waited = Duration::ZERO;
                    if silent.load(Ordering::Relaxed) {
                        continue;
                    }
                    let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
                    if s.write_all(&TestSpeaker::keepalive()).is_err() {
                        return;
                    }
                }
            })
        };
        Ok(SxpSpeaker {
            stream,
            speaker,
            silent,
            stop,
            keepalive: Some(keepalive),
            open_resp,
        })
    }

    fn send(&self, bytes: &[u8]) {
        let mut s = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        s.write_all(bytes)
            .unwrap_or_else(|e| panic!("SXP speaker write: {e}"));
    }

    /// UPDATE (v4, as sxpd writes it) adding or retagging `adds` and deleting `deletes`.
    pub fn update(&self, adds: &[(&str, u16)], deletes: &[&str]) {
        let adds: Vec<(Prefix, Sgt)> = adds.iter().map(|(p, t)| (prefix(p), Sgt(*t))).collect();
        let deletes: Vec<Prefix> = deletes.iter().map(|p| prefix(p)).collect();
        for msg in self.speaker.updates(4, &adds, &deletes) {
            self.send(&msg);
        }
    }

    /// PURGE_ALL: everything this speaker advertised is withdrawn.
    pub fn purge_all(&self) {
        self.send(&TestSpeaker::purge_all());
    }

    /// Stops the keepalives but keeps the TCP connection open (a hung speaker).
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::Relaxed);
    }

    /// True once the headend closed the connection (reads EOF or an error);
    /// anything the headend sent before is ignored.
    pub fn closed_by_headend(&self) -> bool {
        let s = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(mut s) = s.try_clone() else {
            return true;
        };
        if s.set_read_timeout(Some(Duration::from_millis(100)))
            .is_err()
        {
            return true;
        }
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

impl Drop for SxpSpeaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(s) = self.stream.lock() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.keepalive.take() {
            let _ = h.join();
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

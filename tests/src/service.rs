//! Small TCP services for reachability tests: a listener in some namespace that
//! greets every connection with a banner naming itself and records who connected,
//! so a test can tell "the SYN never arrived" (a filter dropped it) from "it
//! arrived and was refused".

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns;
use crate::probe;

/// A listening TCP service; stops (and joins its thread) on drop.
pub struct TcpService {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpService {
    /// Listens on `addr` in namespace `ns` (the address must be configured there).
    pub fn start(ns: &str, addr: SocketAddr) -> TcpService {
        let listener = netns::in_netns(ns, move || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking listener: {e}"));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut s, peer)) => {
                            accepted
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(peer);
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                            let _ = writeln!(s, "{}", banner(addr));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        TcpService {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everyone who completed a connection so far.
    pub fn accepted(&self) -> Vec<SocketAddr> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for TcpService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a [`TcpService`] on `addr` says to every connection.
pub fn banner(addr: SocketAddr) -> String {
    format!("service {addr}")
}

/// Connects from namespace `ns` to `addr` and reads the service's banner line;
/// `timeout` bounds the connect and the read (a hang guard for the success case, the
/// time a dropped SYN is given for the failure case).
pub fn fetch_banner(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut s = probe::tcp_connect(ns, addr, timeout)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading from {addr}: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_owned())
}

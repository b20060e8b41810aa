//! Delivery to one `logging host`: a bounded queue drained by its own task, so a
//! slow or dead host never blocks the code that logs (a full queue drops and
//! counts), and never delays the other hosts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::Counters;
use crate::config::mgmt::{LogHost, LogTransport};

/// Messages a host may have waiting before new ones are dropped.
const QUEUE: usize = 1024;
/// Between TCP connection attempts to a host that is down.
const RECONNECT: Duration = Duration::from_secs(5);
/// A TCP write that takes longer drops the connection (and the message).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// RFC 6587 3.4.1 octet counting: `LEN SP MSG`.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut v = format!("{} ", msg.len()).into_bytes();
    v.extend_from_slice(msg.as_bytes());
    v
}

pub struct HostQueue {
    pub emblem: bool,
    tx: Option<mpsc::Sender<String>>,
    counters: Arc<Counters>,
}

impl HostQueue {
    pub fn start(host: &LogHost, counters: Arc<Counters>) -> Self {
        let to = SocketAddr::new(host.address, host.port);
        let (tx, rx) = mpsc::channel(QUEUE);
        // Without a runtime (unit tests) there is nobody to deliver.
        let tx = match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                match host.transport {
                    LogTransport::Udp => rt.spawn(udp_task(to, rx)),
                    LogTransport::Tcp => rt.spawn(tcp_task(to, rx)),
                };
                Some(tx)
            }
            Err(_) => None,
        };
        Self {
            emblem: host.emblem,
            tx,
            counters,
        }
    }

    /// Queues `payload`; drops it (counted) when the queue is full.
    pub fn send(&self, payload: String) {
        let ok = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(payload).is_ok());
        if !ok {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn udp_task(to: SocketAddr, mut rx: mpsc::Receiver<String>) {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("syslog to udp/{to}: cannot open a socket: {e}");
            return;
        }
    };
    while let Some(msg) = rx.recv().await {
        // One datagram per message (RFC 3164 4.1); an error (host unreachable)
        // loses this message only.
        if let Err(e) = sock.send_to(msg.as_bytes(), to).await {
            tracing::debug!("syslog to udp/{to}: {e}");
        }
    }
}

async fn tcp_task(to: SocketAddr, mut rx: mpsc::Receiver<String>) {
    let mut conn: Option<TcpStream> = None;
    let mut last_try: Option<Instant> = None;
    while let Some(msg) = rx.recv().await {
        if conn.is_none() && last_try.is_none_or(|t| t.elapsed() >= RECONNECT) {
            last_try = Some(Instant::now());
            match tokio::time::timeout(WRITE_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(s)) => conn = Some(s),
                Ok(Err(e)) => tracing::debug!("syslog to tcp/{to}: {e}"),
                Err(_) => tracing::debug!("syslog to tcp/{to}: connect timed out"),
            }
        }
        // While the host is down, messages are dropped rather than kept.
        let Some(s) = conn.as_mut() else { continue };
        let frame = octet_counted(&msg);
        match tokio::time::timeout(WRITE_TIMEOUT, s.write_all(&frame)).await {
            Ok(Ok(())) => {}
            _ => {
                tracing::debug!("syslog to tcp/{to}: connection lost");
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(addr: SocketAddr, transport: LogTransport) -> LogHost {
        LogHost {
            interface: "inside".into(),
            address: addr.ip(),
            transport,
            port: addr.port(),
            emblem: false,
            line: 1,
        }
    }

    #[tokio::test]
    async fn udp_delivers_one_datagram_per_message() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let counters = Arc::new(Counters::default());
        let q = HostQueue::start(
            &host(rx.local_addr().unwrap(), LogTransport::Udp),
            counters.clone(),
        );
        q.send("<166>%ASA-6-113008: one".into());
        q.send("<166>%ASA-6-113008: two".into());
        let mut buf = [0u8; 256];
        for want in ["one", "two"] {
            let n = tokio::time::timeout(Duration::from_secs(10), rx.recv(&mut buf))
                .await
                .expect("datagram")
                .unwrap();
            let got = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(got.ends_with(want), "{got}");
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_dead_tcp_host_never_blocks_and_drops_are_counted() {
        // A port nobody listens on: connects are refused.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let counters = Arc::new(Counters::default());
        let q = HostQueue::start(&host(addr, LogTransport::Tcp), counters.clone());
        // More than the queue holds, without yielding to the delivery task:
        // `send` must return at once every time.
        for i in 0..(QUEUE + 10) {
            q.send(format!("<166>%ASA-6-113008: {i}"));
        }
        assert!(counters.dropped.load(Ordering::Relaxed) >= 10);
    }

    #[tokio::test]
    async fn tcp_frames_are_octet_counted() {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let counters = Arc::new(Counters::default());
        let q = HostQueue::start(&host(l.local_addr().unwrap(), LogTransport::Tcp), counters);
        q.send("<166>a".into());
        q.send("<164>bc".into());
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        while got.len() < b"6 <166>a7 <164>bc".len() {
            let mut b = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
                .await
                .expect("data")
                .unwrap();
            assert!(n > 0, "closed early: {got:?}");
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"6 <166>a7 <164>bc");
    }
}

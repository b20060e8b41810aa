//! Raw TCP and TLS probes run from inside a namespace: garbage, half requests and
//! hand-written HTTP that no ordinary client would send.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

use crate::netns;

/// A TCP connection opened from namespace `ns`, with read/write timeouts of `timeout`.
pub fn tcp_connect(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let tcp = netns::in_netns(ns, move || TcpStream::connect_timeout(&addr, timeout))
        .map_err(|e| format!("TCP connect to {addr} from {ns}: {e}"))?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    Ok(tcp)
}

/// A TLS connection from namespace `ns` that trusts any certificate (the probes test the
/// server's handling of what follows the handshake, not its identity).
pub fn tls_connect(
    ns: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<SslStream<TcpStream>, String> {
    let tcp = tcp_connect(ns, addr, timeout)?;
    let mut builder =
        SslConnector::builder(SslMethod::tls_client()).map_err(|e| format!("SSL_CTX: {e}"))?;
    builder.set_verify(SslVerifyMode::NONE);
    let config = builder
        .build()
        .configure()
        .map_err(|e| format!("SSL: {e}"))?
        .verify_hostname(false)
        .use_server_name_indication(false);
    config
        .connect(&addr.ip().to_string(), tcp)
        .map_err(|e| format!("TLS handshake with {addr} from {ns}: {e}"))
}

/// Reads until the end of an HTTP header block, EOF, an error or the socket's read
/// timeout; returns what was read (possibly empty).
pub fn read_head<R: Read>(r: &mut R) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `request` on a new TLS connection from `ns` and returns the response head.
pub fn https_exchange(
    ns: &str,
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<String, String> {
    let mut tls = tls_connect(ns, addr, timeout)?;
    tls.write_all(request)
        .and_then(|()| tls.flush())
        .map_err(|e| format!("writing request to {addr}: {e}"))?;
    Ok(read_head(&mut tls))
}

/// Whether the peer closes the connection (EOF or reset) within `within`; whatever the
/// peer sends meanwhile is read and dropped. The socket's read timeout must be set.
pub fn peer_closes<R: Read>(r: &mut R, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match r.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).expect("RAND_bytes");
    v
}

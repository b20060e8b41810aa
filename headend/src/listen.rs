//! The TLS listener's accept queue. A failover moves every session of a node to
//! another at once (issue 19: 1,000 reconnects within a second), and a restart
//! or a network blip does the same to one node. With tokio's default backlog of
//! 1,024 the kernel drops the SYNs it cannot queue (`TcpExtListenOverflows`);
//! each client then retransmits after 1, 3, 7, 15, 31 s (RFC 6298 backoff), so a
//! takeover that takes 3 s on a quiet box took 37 s on a busy one, in waves. A
//! deep queue keeps those connections waiting for `accept()` instead.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Asked of listen(2); Linux clamps it to `net.core.somaxconn` (4,096 by
/// default since 5.4), which an operator raises for bigger storms.
pub const TLS_BACKLOG: u32 = 65_535;

/// Binds the client-facing TLS listener as `TcpListener::bind` does
/// (SO_REUSEADDR), with [`TLS_BACKLOG`].
pub async fn bind_tls(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(TLS_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// More connections than tokio's default backlog (1,024) complete while
    /// nobody calls accept(): the kernel queues them instead of dropping SYNs.
    #[tokio::test]
    async fn a_reconnect_storm_waits_in_the_queue_instead_of_losing_syns() {
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if somaxconn < 1_300 {
            eprintln!("net.core.somaxconn {somaxconn}: too small to tell, skipped");
            return;
        }
        // 1,200 client sockets: lift the soft fd limit to the hard one.
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: get/setrlimit with a pointer to a live local rlimit.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        if r.rlim_cur < 1_400 {
            eprintln!("RLIMIT_NOFILE {}: too small to tell, skipped", r.rlim_cur);
            return;
        }
        let listener = bind_tls("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for i in 0..1_200 {
            // A dropped SYN would be retried after 1 s and 3 s, and dropped again
            // (the queue stays full): the bound only keeps a failure from hanging.
            match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
            {
                Ok(Ok(s)) => clients.push(s),
                other => panic!("connection {i} not queued: {other:?}"),
            }
        }
        assert_eq!(clients.len(), 1_200);
        drop(listener);
    }
}

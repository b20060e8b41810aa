//! The dynamic-authorization (CoA / Disconnect, RFC 5176) listener as the
//! config says, re-applied by a reload: `aaa-server NAME protocol radius` +
//! `dynamic-authorization [PORT]` makes that group's hosts CoA clients.
//!
//! A reload that adds, removes or changes such a group (its hosts, keys or
//! port) restarts the listener with the new client list, rebinding when the
//! port changed; a reload that changes nothing there leaves it alone. The
//! restart forgets the replies kept for retransmissions (RFC 5176 section
//! 2.3): a client that retransmits across a reload gets its request applied
//! again, which is harmless for Disconnect and for a CoA that sets a filter.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use auth::radius::DynAuthClient;
use tokio::sync::watch;

use crate::config::Config;
use crate::radius_io::{DynAuthApply, DynAuthForward};

/// What the listener serves: its UDP port and clients. `None`: no group has
/// `dynamic-authorization`, nothing listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynAuthSettings {
    pub port: u16,
    pub clients: Vec<(IpAddr, Vec<u8>)>,
}

impl DynAuthSettings {
    /// From the config: every host of every group with `dynamic-authorization`;
    /// the port of the first such group (ASA's default 1700).
    pub fn from_config(config: &Config) -> Option<Self> {
        let groups = || {
            config
                .aaa_server_groups
                .values()
                .filter(|g| g.dynamic_authorization.is_some())
        };
        let port = groups().find_map(|g| g.dynamic_authorization)?;
        let clients = groups()
            .flat_map(|g| g.hosts.iter())
            .map(|h| (h.address, h.key.clone().unwrap_or_default().into_bytes()))
            .collect();
        Some(Self { port, clients })
    }

    /// Fails when the port cannot be bound (in use): checked before the
    /// headend starts and before a reload moves the listener.
    pub fn check_port(&self) -> anyhow::Result<()> {
        std::net::UdpSocket::bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            self.port,
        ))
        .with_context(|| format!("dynamic-authorization port {}: cannot bind UDP", self.port))?;
        Ok(())
    }

    pub fn clients(&self) -> Vec<DynAuthClient> {
        self.clients
            .iter()
            .map(|(addr, secret)| DynAuthClient {
                addr: *addr,
                secret: secret.clone(),
            })
            .collect()
    }
}

/// The reload side: tells the listener task about new settings.
pub struct DynAuthControl {
    tx: watch::Sender<Option<DynAuthSettings>>,
}

impl DynAuthControl {
    /// Before a reload changes anything: a new port must be free, else the
    /// reload is refused.
    pub fn check(&self, config: &Config) -> anyhow::Result<()> {
        let new = DynAuthSettings::from_config(config);
        let old_port = self.tx.borrow().as_ref().map(|o| o.port);
        match new {
            Some(n) if old_port != Some(n.port) => n.check_port(),
            _ => Ok(()),
        }
    }

    /// Applies the settings of a reloaded config (after [`Self::check`]).
    /// Returns a line for the reload's reply when something changed.
    pub fn apply(&self, config: &Config) -> Option<String> {
        let new = DynAuthSettings::from_config(config);
        if *self.tx.borrow() == new {
            return None;
        }
        let note = match &new {
            Some(n) => format!(
                "dynamic-authorization (CoA) listener on UDP {} with {} client(s)",
                n.port,
                n.clients.len()
            ),
            None => "dynamic-authorization (CoA) listener stopped".to_string(),
        };
        self.tx.send_replace(new);
        Some(note)
    }
}

/// Starts the listener task for `initial`; the control re-applies reloads.
pub fn spawn(
    initial: Option<DynAuthSettings>,
    apply: DynAuthApply,
    forward: Option<DynAuthForward>,
) -> DynAuthControl {
    let (tx, rx) = watch::channel(initial);
    tokio::spawn(supervise(rx, apply, forward));
    DynAuthControl { tx }
}

/// Runs `serve_dynamic_authorization` for the current settings and restarts
/// it when they change; ends when the control is dropped.
async fn supervise(
    mut rx: watch::Receiver<Option<DynAuthSettings>>,
    apply: DynAuthApply,
    forward: Option<DynAuthForward>,
) {
    loop {
        let settings = rx.borrow_and_update().clone();
        let mut task = settings.map(|s| {
            tokio::spawn(crate::radius_io::serve_dynamic_authorization(
                s.port,
                s.clients(),
                apply.clone(),
                forward.clone(),
            ))
        });
        let changed = match task.as_mut() {
            Some(t) => tokio::select! {
                c = rx.changed() => c,
                r = t => {
                    match r {
                        Ok(Err(e)) => tracing::error!("dynamic-authorization listener: {e:#}"),
                        Ok(Ok(())) => {}
                        Err(e) => tracing::error!("dynamic-authorization listener task: {e}"),
                    }
                    task = None;
                    rx.changed().await
                }
            },
            None => rx.changed().await,
        };
        // The old socket is closed before the new one binds (same port).
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        if changed.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth::radius::{Attribute, Code, Packet};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::net::UdpSocket;

    fn cfg(port: u16, key: &str) -> Config {
        crate::config::parse_str(
            &format!(
                "aaa-server ISE protocol radius\n dynamic-authorization port {port}\naaa-server ISE (inside) host 127.0.0.1\n key {key}\n"
            ),
            "t.cfg",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Sends a Disconnect-Request signed with `secret` until an answer comes
    /// (the listener may still be binding); bounded tries.
    async fn disconnect(port: u16, secret: &[u8]) -> Code {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for id in 0..100u8 {
            let mut p = Packet::new(Code::DisconnectRequest, id, [0; 16]);
            p.attributes.push(Attribute::AcctSessionId("A1".into()));
            p.attributes.push(Attribute::MessageAuthenticator([0; 16]));
            let bytes = p.encode_request(secret).unwrap();
            sock.send_to(&bytes, ("127.0.0.1", port)).await.unwrap();
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await
            {
                return Packet::decode(&buf[..n]).unwrap().code;
            }
        }
        panic!("no answer from UDP {port}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_changes_the_clients_and_rebinds_a_new_port() {
        let (p1, p2) = (free_port(), free_port());
        let apply: DynAuthApply = Arc::new(|_| Ok(()));
        let control = spawn(DynAuthSettings::from_config(&cfg(p1, "one")), apply, None);
        assert_eq!(disconnect(p1, b"one").await, Code::DisconnectAck);

        // Unchanged: nothing to do.
        assert!(control.apply(&cfg(p1, "one")).is_none());
        // A new key for the client, same port.
        control.check(&cfg(p1, "two")).unwrap();
        let note = control.apply(&cfg(p1, "two")).unwrap();
        assert!(note.contains(&format!("UDP {p1} with 1 client")), "{note}");
        assert_eq!(disconnect(p1, b"two").await, Code::DisconnectAck);

        // Another port: the old one is released.
        control.check(&cfg(p2, "two")).unwrap();
        control.apply(&cfg(p2, "two")).unwrap();
        assert_eq!(disconnect(p2, b"two").await, Code::DisconnectAck);
        std::net::UdpSocket::bind(("0.0.0.0", p1)).expect("old port released");

        // A port that is taken refuses the reload and keeps the listener.
        let busy = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        let taken = busy.local_addr().unwrap().port();
        let e = control.check(&cfg(taken, "two")).unwrap_err();
        assert!(format!("{e:#}").contains("cannot bind"), "{e:#}");
        assert_eq!(disconnect(p2, b"two").await, Code::DisconnectAck);

        // No group with dynamic-authorization any more: nothing listens.
        let none = crate::config::parse_str("hostname asa\n", "t.cfg").unwrap();
        control.check(&none).unwrap();
        let note = control.apply(&none).unwrap();
        assert!(note.contains("stopped"), "{note}");
    }
}

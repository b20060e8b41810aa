//! The UDP side of RADIUS: one task per `aaa-server` group drives the sans-IO
//! `auth::radius::RadiusClient` (retransmits, failover, dead time), and one task
//! serves dynamic authorization (CoA / Disconnect, RFC 5176) on UDP 1700.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use auth::radius::{
    ClientConfig, DynAuthClient, DynAuthConfig, DynAuthServer, Event, HostConfig, HostStatus,
    OutgoingRequest, Packet, RadiusClient, RadiusError, RequestId,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::config::AaaServerGroup;

/// Where a request's reply goes, with the address of the server that sent it
/// (syslog 113004/5).
type ReplyTx = oneshot::Sender<Result<(Packet, IpAddr), RadiusError>>;

struct Command {
    request: OutgoingRequest,
    reply: ReplyTx,
}

/// A running `aaa-server NAME protocol radius` group.
pub struct RadiusGroup {
    pub name: String,
    /// Our address toward the group's first host (NAS-IP-Address).
    pub nas_ip: Ipv4Addr,
    tx: mpsc::Sender<Command>,
    /// The longest a request can take: every host, every try.
    pub worst_case: Duration,
    /// `authorize-only`: its Access-Requests are authorizations (`show aaa-server`).
    authorize_only: bool,
    /// The hosts' state and counters as of the client task's last step.
    status: Arc<Mutex<Vec<HostStatus>>>,
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
                accept_unsigned_replies: h.accept_unsigned_replies,
            });
            if h.accept_unsigned_replies {
                tracing::warn!(
                    "aaa-server {} host {}: `accept-unsigned-replies` is set: Access-Accept/Reject/Challenge without Message-Authenticator are accepted from it, which weakens the protection against BlastRADIUS (CVE-2024-3596) forgeries; make the server sign its replies and remove the setting",
                    group.name,
                    h.address
                );
            }
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
        let status = Arc::new(Mutex::new(client.host_status()));
        tokio::spawn(drive(name.clone(), socket, client, rx, status.clone()));
        Ok(Arc::new(Self {
            name,
            nas_ip,
            tx,
            worst_case,
            authorize_only: group.authorize_only,
            status,
        }))
    }

    /// The group as ASA's `show aaa-server` prints it, one block per host, with
    /// two more counters: replies without Message-Authenticator dropped, and
    /// accepted (`accept-unsigned-replies`).
    pub fn show(&self, now: Instant, wall: SystemTime) -> String {
        let hosts = self
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let mut out = String::new();
        for h in hosts {
            let k = h.counters;
            let status = match h.dead_until {
                Some(until) if until > now => "FAILED".to_string(),
                _ => "ACTIVE".to_string(),
            };
            let last = h
                .last_reply
                .and_then(|t| wall.checked_sub(now.saturating_duration_since(t)))
                .map(|t| {
                    format!(
                        ", Last transaction at {}",
                        crate::admin::format_login_time(t)
                    )
                })
                .unwrap_or_default();
            let rtt = k
                .average_rtt()
                .map_or_else(|| "0ms".to_string(), |d| format!("{}ms", d.as_millis()));
            let (authn, authz) = if self.authorize_only {
                (0, k.auth_requests)
            } else {
                (k.auth_requests, 0)
            };
            let _ = writeln!(out, "Server Group:    {}", self.name);
            let _ = writeln!(out, "Server Protocol: radius");
            let _ = writeln!(out, "Server Hostname: {}", h.auth_addr.ip());
            let _ = writeln!(out, "Server Address:  {}", h.auth_addr.ip());
            let _ = writeln!(out, "Server port:     {}", h.auth_addr.port());
            let _ = writeln!(out, "Server status:   {status}{last}");
            let rows: [(&str, String); 15] = [
                ("Number of pending requests", h.pending.to_string()),
                ("Average round trip time", rtt),
                ("Number of authentication requests", authn.to_string()),
                ("Number of authorization requests", authz.to_string()),
                ("Number of accounting requests", k.acct_requests.to_string()),
                ("Number of retransmissions", k.retransmissions.to_string()),
                ("Number of accepts", k.accepts.to_string()),
                ("Number of rejects", k.rejects.to_string()),
                ("Number of challenges", k.challenges.to_string()),
                ("Number of malformed responses", k.malformed.to_string()),
                (
                    "Number of bad authenticators",
                    k.bad_authenticators.to_string(),
                ),
                ("Number of timeouts", k.timeouts.to_string()),
                (
                    "Number of unrecognized responses",
                    k.unrecognized.to_string(),
                ),
                (
                    "Number of unsigned replies dropped",
                    k.unsigned_dropped.to_string(),
                ),
                (
                    "Number of unsigned replies accepted",
                    k.unsigned_accepted.to_string(),
                ),
            ];
            for (label, v) in &rows {
                let _ = writeln!(out, "{label:<40}{v}");
            }
            out.push('\n');
        }
        out
    }

    /// Sends a request and waits for the authenticated answer, or the group's
    /// verdict that no server answered. Never longer than `worst_case`.
    pub async fn request(&self, request: OutgoingRequest) -> Result<Packet, RadiusError> {
        self.request_with_server(request).await.map(|(p, _)| p)
    }

    /// [`RadiusGroup::request`], also naming the server that answered (ASA's
    /// AAA syslog messages print it).
    pub async fn request_with_server(
        &self,
        request: OutgoingRequest,
    ) -> Result<(Packet, IpAddr), RadiusError> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command { request, reply }).await.is_err() {
            return Err(RadiusError::AllServersDead);
        }
        rx.await.unwrap_or(Err(RadiusError::AllServersDead))
    }
}

/// Most Access-Challenge rounds one downloadable ACL may take (each carries up to
/// ~4 KB of entries): a bound against a server that never ends the download.
pub const MAX_ACL_DOWNLOAD_ROUNDS: usize = 64;

/// Fetches the entries of the named downloadable ACL `name` (an Accept carried
/// `ACS:CiscoSecure-Defined-ACL=NAME`) from `group` as ASA does: an
/// Access-Request with the name as User-Name, continued with each
/// Access-Challenge's State until the Access-Accept. Returns the `ip:inacl#N`
/// entries in order; a Reject, a Challenge without State or no answer is an error.
pub async fn download_acl(group: &RadiusGroup, name: &str) -> Result<Vec<String>, String> {
    let mut entries = Vec::new();
    let mut state: Option<Vec<u8>> = None;
    for _ in 0..MAX_ACL_DOWNLOAD_ROUNDS {
        let request = auth::radius::acl_download(name, group.nas_ip, state.as_deref())
            .map_err(|e| e.to_string())?;
        let reply = group.request(request).await.map_err(|e| e.to_string())?;
        let part = auth::radius::Authorization::from_accept(&reply);
        match reply.code {
            auth::radius::Code::AccessAccept => {
                entries.extend(part.inacl);
                return Ok(entries);
            }
            auth::radius::Code::AccessChallenge => {
                entries.extend(part.inacl);
                state = reply.attributes.iter().find_map(|a| match a {
                    auth::radius::Attribute::State(v) => Some(v.clone()),
                    _ => None,
                });
                if state.is_none() {
                    return Err("Access-Challenge without State".into());
                }
            }
            other => return Err(format!("the server answered {other:?}")),
        }
    }
    Err(format!(
        "no Access-Accept after {MAX_ACL_DOWNLOAD_ROUNDS} Access-Challenges"
    ))
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
    status: Arc<Mutex<Vec<HostStatus>>>,
) {
    // Each waiting request with when it was sent (the response-time metric).
    let mut waiting: HashMap<RequestId, (ReplyTx, Instant)> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    loop {
        // Rate limited by the client: once per server and interval.
        while let Some(d) = client.poll_dropped() {
            tracing::warn!(group = %name, "{d}");
        }
        if let Ok(mut s) = status.lock() {
            *s = client.host_status();
        }
        let deadline = client.poll_timeout();
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                match client.start(Instant::now(), cmd.request) {
                    Ok((id, t)) => {
                        if let Err(e) = socket.send_to(&t.bytes, t.dest).await {
                            tracing::warn!(group = %name, server = %t.dest, "RADIUS send: {e}");
                        }
                        waiting.insert(id, (cmd.reply, Instant::now()));
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
                        if let Some((w, sent)) = waiting.remove(&id) {
                            if let Ok(p) = &result {
                                crate::metrics::record_radius(&from.to_string(), &format!("{:?}", p.code), Some(sent.elapsed()));
                            }
                            let _ = w.send(result.map(|p| (p, from.ip())));
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
                            tracing::warn!(group = %name, %from, to = %transmit.dest, "no usable answer from the RADIUS server in time; failing over");
                            let _ = socket.send_to(&transmit.bytes, transmit.dest).await;
                        }
                        Event::HostDead { host, .. } => {
                            tracing::warn!(group = %name, %host, "RADIUS server marked dead");
                        }
                        Event::Failed { request, error } => {
                            if let Some((w, _)) = waiting.remove(&request) {
                                crate::metrics::record_radius(&name, "timeout", None);
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

/// Cluster hook (issue 19): a request that matched no session here, with its
/// datagram and sender; returns the reply of the node that holds the session.
pub type DynAuthForward = Arc<
    dyn Fn(
            auth::radius::DynAuthRequest,
            Vec<u8>,
            SocketAddr,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>
        + Send
        + Sync,
>;

/// Serves CoA / Disconnect from the hosts of every group with
/// `dynamic-authorization`. `apply` decides per request; `forward` (cluster)
/// asks the node that holds a session this one does not know.
pub async fn serve_dynamic_authorization(
    port: u16,
    clients: Vec<DynAuthClient>,
    apply: DynAuthApply,
    forward: Option<DynAuthForward>,
) -> Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
        .await
        .with_context(|| format!("binding UDP {port} for dynamic-authorization"))?;
    let socket = Arc::new(socket);
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
        let mut elsewhere = None;
        let reply = server.handle(Instant::now(), from, bytes, |req| {
            let r = apply(req);
            if forward.is_some() && r == Err(auth::radius::ErrorCause::SessionContextNotFound) {
                elsewhere = Some(req.clone());
            }
            match &r {
                Ok(()) => tracing::info!(%from, kind = ?req.kind, selectors = ?req.selectors, "dynamic authorization applied"),
                Err(cause) => tracing::info!(%from, kind = ?req.kind, selectors = ?req.selectors, "dynamic authorization refused: {cause:?}"),
            }
            r
        });
        if let (Some(req), Some(fwd), Some(nak)) = (elsewhere, &forward, &reply) {
            // Another node may hold it: its answer, else our NAK.
            let (fwd, socket, nak, packet) =
                (fwd.clone(), socket.clone(), nak.clone(), bytes.to_vec());
            tokio::spawn(async move {
                let answer = fwd(req, packet, from).await.unwrap_or(nak);
                let _ = socket.send_to(&answer, from).await;
            });
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use auth::radius::{Attribute, Code};

    const SECRET: &[u8] = b"s3cret";
    const NAME: &str = "#ACSACL#-IP-BIG-1";

    /// One scripted answer: code, cisco-av-pairs, State.
    type Step = (Code, Vec<&'static str>, Option<&'static [u8]>);

    /// A server that answers each request with the next of `script` (code,
    /// inacl entries, State); records the States it was sent.
    async fn server(script: Vec<Step>) -> (u16, tokio::task::JoinHandle<Vec<Option<Vec<u8>>>>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 4096];
            for (code, entries, state) in script {
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                let req = Packet::decode(&buf[..n]).unwrap();
                assert!(req.attributes.contains(&Attribute::UserName(NAME.into())));
                seen.push(req.attributes.iter().find_map(|a| match a {
                    Attribute::State(v) => Some(v.clone()),
                    _ => None,
                }));
                let mut attributes = vec![Attribute::MessageAuthenticator([0; 16])];
                for e in entries {
                    attributes.push(Attribute::cisco_av_pair(e));
                }
                if let Some(s) = state {
                    attributes.push(Attribute::State(s.to_vec()));
                }
                let reply = Packet {
                    code,
                    identifier: req.identifier,
                    authenticator: [0; 16],
                    attributes,
                };
                let bytes = reply.encode_reply(&req.authenticator, SECRET).unwrap();
                sock.send_to(&bytes, from).await.unwrap();
            }
            seen
        });
        (port, task)
    }

    async fn group(port: u16) -> Arc<RadiusGroup> {
        let cfg = crate::config::parse_str(
            &format!(
                "aaa-server ISE protocol radius\naaa-server ISE (inside) host 127.0.0.1\n key s3cret\n authentication-port {port}\n timeout 2\n"
            ),
            "t.cfg",
        )
        .unwrap();
        RadiusGroup::spawn(&cfg.aaa_server_groups["ISE"])
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn acl_download_follows_challenges_with_their_state() {
        let (port, srv) = server(vec![
            (
                Code::AccessChallenge,
                vec![
                    "ip:inacl#2=permit udp any any eq 53",
                    "ip:inacl#1=permit icmp any any",
                ],
                Some(b"part-2"),
            ),
            (
                Code::AccessChallenge,
                vec!["ip:inacl#3=permit tcp any any eq 443"],
                Some(b"part-3"),
            ),
            (Code::AccessAccept, vec!["ip:inacl#4=deny ip any any"], None),
        ])
        .await;
        let g = group(port).await;
        let entries = download_acl(&g, NAME).await.unwrap();
        assert_eq!(
            entries,
            vec![
                "permit icmp any any",
                "permit udp any any eq 53",
                "permit tcp any any eq 443",
                "deny ip any any"
            ]
        );
        let states = srv.await.unwrap();
        assert_eq!(
            states,
            vec![None, Some(b"part-2".to_vec()), Some(b"part-3".to_vec())]
        );
    }

    #[tokio::test]
    async fn acl_download_fails_on_reject_or_a_challenge_without_state() {
        let (port, _srv) = server(vec![(Code::AccessReject, vec![], None)]).await;
        let e = download_acl(&*group(port).await, NAME).await.unwrap_err();
        assert!(e.contains("AccessReject"), "{e}");
        let (port, _srv) = server(vec![(
            Code::AccessChallenge,
            vec!["ip:inacl#1=permit ip any any"],
            None,
        )])
        .await;
        let e = download_acl(&*group(port).await, NAME).await.unwrap_err();
        assert!(e.contains("without State"), "{e}");
    }

    /// A server like FreeRADIUS before 3.2.5: it answers every request (up to
    /// `n`) with an Access-Accept that has no Message-Authenticator.
    async fn unsigned_server(n: usize) -> u16 {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            for _ in 0..n {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let req = Packet::decode(&buf[..len]).unwrap();
                let reply = Packet {
                    code: Code::AccessAccept,
                    identifier: req.identifier,
                    authenticator: [0; 16],
                    attributes: vec![Attribute::Class(b"OU=GP;".to_vec())],
                };
                let bytes = reply.encode_reply(&req.authenticator, SECRET).unwrap();
                let _ = sock.send_to(&bytes, from).await;
            }
        });
        port
    }

    async fn unsigned_group(port: u16, accept_unsigned: bool) -> Arc<RadiusGroup> {
        let extra = if accept_unsigned {
            " accept-unsigned-replies\n"
        } else {
            ""
        };
        let cfg = crate::config::parse_str(
            &format!(
                "aaa-server ISE protocol radius\naaa-server ISE (inside) host 127.0.0.1\n key s3cret\n authentication-port {port}\n timeout 1\n retry-interval 1\n{extra}"
            ),
            "t.cfg",
        )
        .unwrap();
        assert_eq!(
            cfg.aaa_server_groups["ISE"].hosts[0].accept_unsigned_replies,
            accept_unsigned
        );
        RadiusGroup::spawn(&cfg.aaa_server_groups["ISE"])
            .await
            .unwrap()
    }

    fn row<'a>(show: &'a str, label: &str) -> &'a str {
        show.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{show}"))
            .trim()
    }

    #[tokio::test]
    async fn unsigned_replies_are_refused_by_default_and_counted() {
        let port = unsigned_server(4).await;
        let g = unsigned_group(port, false).await;
        let ctx = auth::radius::SessionContext {
            user_name: "alice",
            nas_ip: Ipv4Addr::LOCALHOST,
            nas_identifier: None,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            audit_session_id: "c612",
            tunnel_group: "TG",
        };
        let err = g
            .request(auth::radius::authorize_only(&ctx))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RadiusError::ReplyRefused { .. }),
            "not `refused`: {err}"
        );
        let show = g.show(Instant::now(), SystemTime::now());
        assert!(
            show.starts_with(
                "Server Group:    ISE\nServer Protocol: radius\nServer Hostname: 127.0.0.1\n"
            ),
            "{show}"
        );
        assert_eq!(row(&show, "Server status:"), "ACTIVE");
        assert_eq!(row(&show, "Number of authentication requests"), "1");
        assert_eq!(row(&show, "Number of unsigned replies dropped"), "1");
        assert_eq!(row(&show, "Number of accepts"), "0");
        assert_eq!(row(&show, "Number of timeouts"), "1");

        let port = unsigned_server(4).await;
        let g = unsigned_group(port, true).await;
        let reply = g.request(auth::radius::authorize_only(&ctx)).await.unwrap();
        assert_eq!(reply.code, Code::AccessAccept);
        let show = g.show(Instant::now(), SystemTime::now());
        assert_eq!(row(&show, "Number of unsigned replies accepted"), "1");
        assert_eq!(row(&show, "Number of accepts"), "1");
        assert!(row(&show, "Server status:").starts_with("ACTIVE, Last transaction at "));
    }
}

//! The RADIUS client of one server group (`aaa-server NAME protocol radius`),
//! sans-IO: requests and datagrams in, datagrams and timers out.
//!
//! Per request: hosts are tried in configuration order, skipping dead ones.
//! On one host a request is sent, then retransmitted `retries` times (same
//! identifier, same bytes, so the same authenticator), each try waiting
//! `timeout`. When the tries run out the host has failed this transaction; after
//! `max_failed_attempts` consecutive failed transactions it is dead for
//! `dead_time`. The request then fails over to the next untried live host with
//! a new identifier (and a new Request Authenticator and password hiding, since
//! the secret may differ). When no host is left the request fails with
//! [`RadiusError::AllServersDead`], so a request never lasts longer than the sum
//! over hosts of `(retries + 1) * timeout`; a request started while every host
//! is dead fails at once.
//!
//! Identifiers are allocated per destination (host address and port, the
//! RFC 2865 section 3 scope), never reused while outstanding: at most 256
//! requests in flight per destination, [`RadiusError::TooManyOutstanding`]
//! beyond.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::crypto::{self, MessageAuthenticatorPolicy};
use super::packet::{Code, DecodeError, EncodeError, Packet};
use super::request::{OutgoingRequest, RequestKind};

/// One `aaa-server NAME (if) host ADDR` entry.
#[derive(Clone)]
pub struct HostConfig {
    /// Address and authentication port (1812).
    pub auth_addr: SocketAddr,
    /// Accounting port (1813), same address.
    pub acct_port: u16,
    /// Shared secret (`key`).
    pub secret: Vec<u8>,
    /// Wait for a reply per try.
    pub timeout: Duration,
    /// Retransmissions after the first try on this host.
    pub retries: u32,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("auth_addr", &self.auth_addr)
            .field("acct_port", &self.acct_port)
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl HostConfig {
    pub fn acct_addr(&self) -> SocketAddr {
        SocketAddr::new(self.auth_addr.ip(), self.acct_port)
    }

    fn addr(&self, kind: RequestKind) -> SocketAddr {
        match kind {
            RequestKind::Authentication => self.auth_addr,
            RequestKind::Accounting => self.acct_addr(),
        }
    }

    /// Per-try timeout and retries from the ASA host commands `timeout SECONDS`
    /// (how long the ASA keeps trying one server, default 10) and
    /// `retry-interval SECONDS` (time between tries, default 10): tries =
    /// max(1, timeout / retry-interval), and the tries share `timeout` evenly,
    /// so one host never costs more than `timeout` seconds.
    pub fn asa_timing(timeout_secs: u32, retry_interval_secs: u32) -> (Duration, u32) {
        let timeout_secs = timeout_secs.max(1);
        let tries = (timeout_secs / retry_interval_secs.max(1)).max(1);
        (
            Duration::from_secs(u64::from(timeout_secs)) / tries,
            tries - 1,
        )
    }
}

/// A server group.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub hosts: Vec<HostConfig>,
    /// Consecutive failed transactions before a host is dead (ASA
    /// `max-failed-attempts`, default 3).
    pub max_failed_attempts: u32,
    /// How long a dead host is skipped (ASA `reactivation-mode timed` /
    /// `deadtime`); zero never marks a host dead.
    pub dead_time: Duration,
}

/// Handle of one request for the lifetime of a [`RadiusClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "radius#{}", self.0)
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub bytes: Vec<u8>,
}

/// Why a request did not produce a reply packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RadiusError {
    #[error("no RADIUS server answered (all servers of the group are dead)")]
    AllServersDead,
    #[error("the server group has no hosts")]
    NoServers,
    #[error("256 requests already outstanding to every live server")]
    TooManyOutstanding,
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    #[error("authenticated reply is malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error("authenticated reply has code {0:?}, which does not answer the request")]
    UnexpectedReply(Code),
}

/// What [`RadiusClient::on_timeout`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Same identifier, same bytes, same host.
    Retransmit {
        request: RequestId,
        transmit: Transmit,
    },
    /// The previous host ran out of tries; new identifier, next host.
    Failover {
        request: RequestId,
        from: SocketAddr,
        transmit: Transmit,
    },
    /// A host (its authentication address) is skipped until `until`.
    HostDead { host: SocketAddr, until: Instant },
    /// No host left: the request is over.
    Failed {
        request: RequestId,
        error: RadiusError,
    },
}

/// Counters for metrics and `show aaa-server`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests: u64,
    pub retransmits: u64,
    pub failovers: u64,
    /// Transactions a host failed to answer.
    pub host_timeouts: u64,
    pub hosts_marked_dead: u64,
    pub replies: u64,
    /// Datagrams that matched no outstanding request (unknown source or id).
    pub unmatched: u64,
    /// Datagrams whose authenticator or Message-Authenticator did not verify.
    pub bad_authenticator: u64,
    /// Authenticated replies that did not decode or had the wrong code.
    pub malformed: u64,
    pub failed: u64,
}

/// State of one host, for `show aaa-server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus {
    pub auth_addr: SocketAddr,
    pub dead_until: Option<Instant>,
    pub consecutive_failures: u32,
    pub last_reply: Option<Instant>,
}

/// 256 identifiers of one destination.
#[derive(Debug, Clone, Default)]
struct IdAllocator {
    in_use: [u64; 4],
    next: u8,
}

impl IdAllocator {
    fn allocate(&mut self) -> Option<u8> {
        for step in 0..=255u8 {
            let id = self.next.wrapping_add(step);
            let (word, bit) = (usize::from(id / 64), id % 64);
            if self.in_use[word] & (1 << bit) == 0 {
                self.in_use[word] |= 1 << bit;
                self.next = id.wrapping_add(1);
                return Some(id);
            }
        }
        None
    }

    fn release(&mut self, id: u8) {
        self.in_use[usize::from(id / 64)] &= !(1 << (id % 64));
    }
}

#[derive(Debug)]
struct HostState {
    dead_until: Option<Instant>,
    consecutive_failures: u32,
    last_reply: Option<Instant>,
    auth_ids: IdAllocator,
    acct_ids: IdAllocator,
}

impl HostState {
    fn ids(&mut self, kind: RequestKind) -> &mut IdAllocator {
        match kind {
            RequestKind::Authentication => &mut self.auth_ids,
            RequestKind::Accounting => &mut self.acct_ids,
        }
    }
}

#[derive(Debug)]
struct Pending {
    request: OutgoingRequest,
    created: Instant,
    host: usize,
    dest: SocketAddr,
    identifier: u8,
    authenticator: [u8; 16],
    bytes: Vec<u8>,
    retries_left: u32,
    deadline: Instant,
    tried: Vec<bool>,
}

/// Client state machine of one server group.
#[derive(Debug)]
pub struct RadiusClient {
    config: ClientConfig,
    hosts: Vec<HostState>,
    pending: HashMap<RequestId, Pending>,
    by_wire: HashMap<(SocketAddr, u8), RequestId>,
    next_request: u64,
    stats: ClientStats,
}

impl RadiusClient {
    pub fn new(config: ClientConfig) -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        let hosts = config
            .hosts
            .iter()
            .map(|_| HostState {
                dead_until: None,
                consecutive_failures: 0,
                last_reply: None,
                auth_ids: IdAllocator {
                    next: rng.random(),
                    ..Default::default()
                },
                acct_ids: IdAllocator {
                    next: rng.random(),
                    ..Default::default()
                },
            })
            .collect();
        Self {
            config,
            hosts,
            pending: HashMap::new(),
            by_wire: HashMap::new(),
            next_request: 1,
            stats: ClientStats::default(),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    pub fn host_status(&self) -> Vec<HostStatus> {
        self.config
            .hosts
            .iter()
            .zip(&self.hosts)
            .map(|(c, s)| HostStatus {
                auth_addr: c.auth_addr,
                dead_until: s.dead_until,
                consecutive_failures: s.consecutive_failures,
                last_reply: s.last_reply,
            })
            .collect()
    }

    /// Requests still waiting for a reply.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Whether host `i` may be used at `now`; revives it when its dead time is over.
    fn alive(&mut self, i: usize, now: Instant) -> bool {
        let host = &mut self.hosts[i];
        match host.dead_until {
            Some(until) if now < until => false,
            Some(_) => {
                host.dead_until = None;
                host.consecutive_failures = 0;
                true
            }
            None => true,
        }
    }

    /// Binds `request` to the first live untried host that has a free
    /// identifier and encodes it. `Ok(None)`: no such host.
    #[allow(clippy::type_complexity)]
    fn bind(
        &mut self,
        now: Instant,
        request: &OutgoingRequest,
        tried: &mut [bool],
    ) -> Result<Option<(usize, SocketAddr, u8, [u8; 16], Vec<u8>)>, RadiusError> {
        let kind = request.kind();
        let mut exhausted = false;
        for (i, was_tried) in tried.iter_mut().enumerate() {
            if *was_tried || !self.alive(i, now) {
                continue;
            }
            let Some(identifier) = self.hosts[i].ids(kind).allocate() else {
                exhausted = true;
                continue;
            };
            *was_tried = true;
            let host = &self.config.hosts[i];
            match request.encode(identifier, &host.secret) {
                Ok(encoded) => {
                    return Ok(Some((
                        i,
                        host.addr(kind),
                        identifier,
                        encoded.authenticator,
                        encoded.bytes,
                    )));
                }
                Err(e) => {
                    self.hosts[i].ids(kind).release(identifier);
                    return Err(e.into());
                }
            }
        }
        if exhausted {
            Err(RadiusError::TooManyOutstanding)
        } else {
            Ok(None)
        }
    }

    /// Starts a request; the returned datagram goes out now.
    pub fn start(
        &mut self,
        now: Instant,
        request: OutgoingRequest,
    ) -> Result<(RequestId, Transmit), RadiusError> {
        if self.hosts.is_empty() {
            return Err(RadiusError::NoServers);
        }
        let mut tried = vec![false; self.hosts.len()];
        let Some((host, dest, identifier, authenticator, bytes)) =
            self.bind(now, &request, &mut tried)?
        else {
            return Err(RadiusError::AllServersDead);
        };
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.stats.requests += 1;
        let transmit = Transmit {
            dest,
            bytes: bytes.clone(),
        };
        self.by_wire.insert((dest, identifier), id);
        self.pending.insert(
            id,
            Pending {
                retries_left: self.config.hosts[host].retries,
                deadline: now + self.config.hosts[host].timeout,
                request,
                created: now,
                host,
                dest,
                identifier,
                authenticator,
                bytes,
                tried,
            },
        );
        Ok((id, transmit))
    }

    /// Forgets a request (the user went away); a late reply is then unmatched.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        match self.pending.remove(&id) {
            Some(p) => {
                self.release(&p);
                true
            }
            None => false,
        }
    }

    fn release(&mut self, p: &Pending) {
        self.by_wire.remove(&(p.dest, p.identifier));
        self.hosts[p.host]
            .ids(p.request.kind())
            .release(p.identifier);
    }

    /// The earliest instant [`RadiusClient::on_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Retransmits, fails over or gives up every request whose timer expired.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Event> {
        let mut due: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort();
        let mut events = Vec::new();
        for id in due {
            self.expire(now, id, &mut events);
        }
        events
    }

    fn expire(&mut self, now: Instant, id: RequestId, events: &mut Vec<Event>) {
        let Some(mut p) = self.pending.remove(&id) else {
            return;
        };
        if p.retries_left > 0 {
            p.retries_left -= 1;
            p.deadline = now + self.config.hosts[p.host].timeout;
            self.stats.retransmits += 1;
            events.push(Event::Retransmit {
                request: id,
                transmit: Transmit {
                    dest: p.dest,
                    bytes: p.bytes.clone(),
                },
            });
            self.pending.insert(id, p);
            return;
        }

        // This host failed the transaction.
        self.release(&p);
        self.stats.host_timeouts += 1;
        let from = p.dest;
        let host = &mut self.hosts[p.host];
        host.consecutive_failures = host.consecutive_failures.saturating_add(1);
        if !self.config.dead_time.is_zero()
            && host.dead_until.is_none()
            && host.consecutive_failures >= self.config.max_failed_attempts.max(1)
        {
            let until = now + self.config.dead_time;
            host.dead_until = Some(until);
            self.stats.hosts_marked_dead += 1;
            events.push(Event::HostDead {
                host: self.config.hosts[p.host].auth_addr,
                until,
            });
        }

        if p.request.kind() == RequestKind::Accounting {
            // RFC 2866 section 5.2: a new identifier, so the delay may change.
            let waited = now.saturating_duration_since(p.created).as_secs();
            let base = p.request.acct_delay_time().unwrap_or(0);
            p.request.set_acct_delay_time(
                base.saturating_add(u32::try_from(waited).unwrap_or(u32::MAX)),
            );
        }
        let mut tried = std::mem::take(&mut p.tried);
        let next = self.bind(now, &p.request, &mut tried);
        p.tried = tried;
        match next {
            Ok(Some((host, dest, identifier, authenticator, bytes))) => {
                self.stats.failovers += 1;
                events.push(Event::Failover {
                    request: id,
                    from,
                    transmit: Transmit {
                        dest,
                        bytes: bytes.clone(),
                    },
                });
                p.host = host;
                p.dest = dest;
                p.identifier = identifier;
                p.authenticator = authenticator;
                p.bytes = bytes;
                p.retries_left = self.config.hosts[host].retries;
                p.deadline = now + self.config.hosts[host].timeout;
                self.by_wire.insert((dest, identifier), id);
                self.pending.insert(id, p);
            }
            Ok(None) => {
                self.stats.failed += 1;
                events.push(Event::Failed {
                    request: id,
                    error: RadiusError::AllServersDead,
                });
            }
            Err(error) => {
                self.stats.failed += 1;
                events.push(Event::Failed { request: id, error });
            }
        }
    }

    /// Handles a datagram from a server. Returns the request it completes, or
    /// `None` (counted in [`ClientStats`]) when it matches no outstanding
    /// request or does not authenticate — a forged or stale reply never ends a
    /// request.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<(RequestId, Result<Packet, RadiusError>)> {
        let Some(&identifier) = bytes.get(1) else {
            self.stats.unmatched += 1;
            return None;
        };
        let Some(&id) = self.by_wire.get(&(from, identifier)) else {
            self.stats.unmatched += 1;
            return None;
        };
        let p = self.pending.get(&id)?;
        let policy = if p.request.code() == Code::AccessRequest {
            MessageAuthenticatorPolicy::Required
        } else {
            MessageAuthenticatorPolicy::IfPresent
        };
        let secret = &self.config.hosts[p.host].secret;
        if crypto::verify_reply(bytes, &p.authenticator, secret, policy).is_err() {
            self.stats.bad_authenticator += 1;
            return None;
        }
        let p = self.pending.remove(&id)?;
        self.release(&p);
        let host = &mut self.hosts[p.host];
        host.consecutive_failures = 0;
        host.dead_until = None;
        host.last_reply = Some(now);
        let result = match Packet::decode(bytes) {
            Ok(packet) if packet.code.answers(p.request.code()) => {
                self.stats.replies += 1;
                Ok(packet)
            }
            Ok(packet) => {
                self.stats.malformed += 1;
                Err(RadiusError::UnexpectedReply(packet.code))
            }
            Err(e) => {
                self.stats.malformed += 1;
                Err(RadiusError::Malformed(e))
            }
        };
        Some((id, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::attribute::{AcctStatusType, Attribute};
    use crate::radius::request::{AccountingRecord, SessionContext, accounting, authorize_only};
    use std::net::Ipv4Addr;

    const T: Duration = Duration::from_secs(2);

    fn host(last_octet: u8, secret: &str) -> HostConfig {
        HostConfig {
            auth_addr: SocketAddr::new(Ipv4Addr::new(198, 18, 1, last_octet).into(), 1812),
            acct_port: 1813,
            secret: secret.as_bytes().to_vec(),
            timeout: T,
            retries: 1,
        }
    }

    fn client(hosts: Vec<HostConfig>) -> RadiusClient {
        RadiusClient::new(ClientConfig {
            hosts,
            max_failed_attempts: 1,
            dead_time: Duration::from_secs(60),
        })
    }

    fn ctx() -> SessionContext<'static> {
        SessionContext {
            user_name: "alice",
            nas_ip: Ipv4Addr::new(198, 18, 1, 1),
            nas_identifier: None,
            client_ip: "198.18.0.2".parse().unwrap(),
            audit_session_id: "c612",
            tunnel_group: "TG",
        }
    }

    /// What the server would answer to `request`.
    fn answer(request: &[u8], code: Code, secret: &str, with_ma: bool) -> Vec<u8> {
        let req = Packet::decode(request).unwrap();
        let mut p = Packet::new(code, req.identifier, [0; 16]);
        if with_ma {
            p.attributes.push(Attribute::MessageAuthenticator([0; 16]));
        }
        p.attributes.push(Attribute::Class(b"OU=GP;".to_vec()));
        p.encode_reply(&req.authenticator, secret.as_bytes())
            .unwrap()
    }

    #[test]
    fn accept_completes_the_request() {
        let now = Instant::now();
        let mut c = client(vec![host(20, "s1")]);
        let (id, tx) = c.start(now, authorize_only(&ctx())).unwrap();
        assert_eq!(tx.dest, "198.18.1.20:1812".parse().unwrap());
        assert_eq!(c.poll_timeout(), Some(now + T));
        let reply = answer(&tx.bytes, Code::AccessAccept, "s1", true);
        let (got, result) = c.on_datagram(now, tx.dest, &reply).unwrap();
        assert_eq!(got, id);
        assert_eq!(result.unwrap().code, Code::AccessAccept);
        assert_eq!(c.outstanding(), 0);
        assert_eq!(c.poll_timeout(), None);
        // The same reply again is stale.
        assert!(c.on_datagram(now, tx.dest, &reply).is_none());
        assert_eq!(c.stats().unmatched, 1);
    }

    #[test]
    fn unauthenticated_or_foreign_replies_are_ignored() {
        let now = Instant::now();
        let mut c = client(vec![host(20, "s1")]);
        let (id, tx) = c.start(now, authorize_only(&ctx())).unwrap();
        // No Message-Authenticator on an Access-Accept (BlastRADIUS): ignored.
        let no_ma = answer(&tx.bytes, Code::AccessAccept, "s1", false);
        assert!(c.on_datagram(now, tx.dest, &no_ma).is_none());
        // Wrong secret.
        let wrong = answer(&tx.bytes, Code::AccessAccept, "s2", true);
        assert!(c.on_datagram(now, tx.dest, &wrong).is_none());
        assert_eq!(c.stats().bad_authenticator, 2);
        // Right bytes from the wrong address / port.
        let good = answer(&tx.bytes, Code::AccessAccept, "s1", true);
        assert!(
            c.on_datagram(now, "198.18.1.21:1812".parse().unwrap(), &good)
                .is_none()
        );
        assert!(
            c.on_datagram(now, "198.18.1.20:1813".parse().unwrap(), &good)
                .is_none()
        );
        assert!(c.on_datagram(now, tx.dest, &[1, 2]).is_none());
        assert_eq!(c.stats().unmatched, 3);
        // Still waiting; the genuine reply completes it.
        let (got, result) = c.on_datagram(now, tx.dest, &good).unwrap();
        assert_eq!(got, id);
        assert!(result.is_ok());
    }

    #[test]
    fn authenticated_reply_with_wrong_code_is_an_error() {
        let now = Instant::now();
        let mut c = client(vec![host(20, "s1")]);
        let (id, tx) = c.start(now, authorize_only(&ctx())).unwrap();
        let reply = answer(&tx.bytes, Code::AccountingResponse, "s1", true);
        assert_eq!(
            c.on_datagram(now, tx.dest, &reply),
            Some((
                id,
                Err(RadiusError::UnexpectedReply(Code::AccountingResponse))
            ))
        );
    }

    #[test]
    fn retransmit_failover_dead_time_give_up() {
        let t0 = Instant::now();
        let mut c = client(vec![host(20, "s1"), host(21, "s2")]);
        let (id, first) = c.start(t0, authorize_only(&ctx())).unwrap();

        // Try 2 on host 1: identical bytes.
        assert_eq!(c.on_timeout(t0 + T - Duration::from_millis(1)), vec![]);
        let ev = c.on_timeout(t0 + T);
        assert_eq!(
            ev,
            vec![Event::Retransmit {
                request: id,
                transmit: first.clone()
            }]
        );
        // Host 1 out of tries: dead, fail over to host 2 with a new encoding.
        let ev = c.on_timeout(t0 + 2 * T);
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0],
            Event::HostDead {
                host: first.dest,
                until: t0 + 2 * T + Duration::from_secs(60)
            }
        );
        let Event::Failover {
            request,
            from,
            transmit,
        } = &ev[1]
        else {
            panic!("{ev:?}");
        };
        assert_eq!((*request, *from), (id, first.dest));
        assert_eq!(transmit.dest, "198.18.1.21:1812".parse().unwrap());
        assert_ne!(transmit.bytes[4..20], first.bytes[4..20]);
        // A late reply from host 1 no longer matches.
        let late = answer(&first.bytes, Code::AccessAccept, "s1", true);
        assert!(c.on_datagram(t0 + 2 * T, first.dest, &late).is_none());

        let ev = c.on_timeout(t0 + 3 * T);
        assert!(matches!(ev[..], [Event::Retransmit { .. }]));
        // Both hosts used up at hosts x (retries + 1) x timeout.
        let ev = c.on_timeout(t0 + 4 * T);
        assert_eq!(
            ev[1],
            Event::Failed {
                request: id,
                error: RadiusError::AllServersDead
            }
        );
        assert!(matches!(ev[0], Event::HostDead { .. }));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.stats().failed, 1);

        // Everyone dead: a new login fails at once instead of hanging.
        assert_eq!(
            c.start(t0 + 5 * T, authorize_only(&ctx())).map(|_| ()),
            Err(RadiusError::AllServersDead)
        );
        // After dead time host 1 is used again.
        let later = t0 + 2 * T + Duration::from_secs(60);
        let (_, tx) = c.start(later, authorize_only(&ctx())).unwrap();
        assert_eq!(tx.dest, first.dest);
        assert_eq!(c.host_status()[0].dead_until, None);
    }

    #[test]
    fn dead_host_is_skipped_by_new_requests() {
        let t0 = Instant::now();
        let mut c = client(vec![host(20, "s1"), host(21, "s2")]);
        let (_, _) = c.start(t0, authorize_only(&ctx())).unwrap();
        c.on_timeout(t0 + T);
        let ev = c.on_timeout(t0 + 2 * T);
        let Event::Failover { transmit, .. } = &ev[1] else {
            panic!()
        };
        // Host 2 answers; host 2 is now the one used first.
        let reply = answer(&transmit.bytes, Code::AccessReject, "s2", true);
        let (_, r) = c.on_datagram(t0 + 2 * T, transmit.dest, &reply).unwrap();
        assert_eq!(r.unwrap().code, Code::AccessReject);
        let (_, tx) = c.start(t0 + 3 * T, authorize_only(&ctx())).unwrap();
        assert_eq!(tx.dest, transmit.dest);
    }

    #[test]
    fn host_dies_only_after_max_failed_attempts() {
        let t0 = Instant::now();
        let mut h = host(20, "s1");
        h.retries = 0;
        let mut c = RadiusClient::new(ClientConfig {
            hosts: vec![h],
            max_failed_attempts: 2,
            dead_time: Duration::from_secs(60),
        });
        let (id, _) = c.start(t0, authorize_only(&ctx())).unwrap();
        assert_eq!(
            c.on_timeout(t0 + T),
            vec![Event::Failed {
                request: id,
                error: RadiusError::AllServersDead
            }]
        );
        assert_eq!(c.host_status()[0].consecutive_failures, 1);
        let (_, _) = c.start(t0 + T, authorize_only(&ctx())).unwrap();
        let ev = c.on_timeout(t0 + 2 * T);
        assert!(matches!(ev[0], Event::HostDead { .. }));
    }

    #[test]
    fn identifiers_are_not_reused_while_outstanding() {
        let now = Instant::now();
        let mut c = client(vec![host(20, "s1")]);
        let mut seen = std::collections::HashSet::new();
        let mut first = None;
        for _ in 0..256 {
            let (id, tx) = c.start(now, authorize_only(&ctx())).unwrap();
            assert!(seen.insert(tx.bytes[1]));
            first.get_or_insert((id, tx));
        }
        assert_eq!(
            c.start(now, authorize_only(&ctx())).map(|_| ()),
            Err(RadiusError::TooManyOutstanding)
        );
        // Accounting uses the other port and its own identifiers.
        let record = AccountingRecord {
            status: AcctStatusType::Start,
            context: ctx(),
            acct_session_id: "S",
            framed_ip: None,
            framed_ipv6: None,
            classes: &[],
            counters: None,
            session_time: None,
            terminate_cause: None,
            event_timestamp: None,
        };
        let (_, tx) = c.start(now, accounting(&record)).unwrap();
        assert_eq!(tx.dest.port(), 1813);
        // Completing one frees its identifier.
        let (id, tx) = first.unwrap();
        assert!(c.cancel(id));
        assert!(!c.cancel(id));
        let (_, again) = c.start(now, authorize_only(&ctx())).unwrap();
        assert_eq!(again.bytes[1], tx.bytes[1]);
    }

    #[test]
    fn accounting_reply_and_delay_on_failover() {
        let t0 = Instant::now();
        let mut c = client(vec![host(20, "s1"), host(21, "s2")]);
        let record = AccountingRecord {
            status: AcctStatusType::Start,
            context: ctx(),
            acct_session_id: "S",
            framed_ip: None,
            framed_ipv6: None,
            classes: &[],
            counters: None,
            session_time: None,
            terminate_cause: None,
            event_timestamp: None,
        };
        let (id, _) = c.start(t0, accounting(&record)).unwrap();
        c.on_timeout(t0 + T);
        let ev = c.on_timeout(t0 + 2 * T);
        let Event::Failover { transmit, .. } = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(transmit.dest, "198.18.1.21:1813".parse().unwrap());
        let p = Packet::decode(&transmit.bytes).unwrap();
        assert!(p.attributes.contains(&Attribute::AcctDelayTime(4)));
        // Accounting-Response without Message-Authenticator is fine.
        let reply = answer(&transmit.bytes, Code::AccountingResponse, "s2", false);
        let (got, r) = c.on_datagram(t0 + 2 * T, transmit.dest, &reply).unwrap();
        assert_eq!(got, id);
        assert_eq!(r.unwrap().code, Code::AccountingResponse);
    }

    #[test]
    fn no_hosts_and_asa_timing() {
        let mut c = client(vec![]);
        assert_eq!(
            c.start(Instant::now(), authorize_only(&ctx())).map(|_| ()),
            Err(RadiusError::NoServers)
        );
        assert_eq!(HostConfig::asa_timing(10, 10), (Duration::from_secs(10), 0));
        assert_eq!(
            HostConfig::asa_timing(5, 2),
            (Duration::from_millis(2500), 1)
        );
        assert_eq!(HostConfig::asa_timing(12, 3), (Duration::from_secs(3), 3));
        assert_eq!(HostConfig::asa_timing(0, 0), (Duration::from_secs(1), 0));
    }
}

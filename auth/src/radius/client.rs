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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::crypto::{self, AuthenticatorError, MessageAuthenticatorPolicy};
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
    /// Accept Access-Accept/Reject/Challenge without a Message-Authenticator
    /// (`accept-unsigned-replies`). Off by default: an unsigned reply can be forged
    /// by the BlastRADIUS attack (CVE-2024-3596). Only for servers that cannot
    /// sign (FreeRADIUS before 3.2.5, NPS without the setting).
    pub accept_unsigned_replies: bool,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("auth_addr", &self.auth_addr)
            .field("acct_port", &self.acct_port)
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("accept_unsigned_replies", &self.accept_unsigned_replies)
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
    /// A server answered, but every answer was dropped (unsigned or not
    /// authentic), so the request ran out of time.
    #[error("a RADIUS server answered, but its reply was refused: {}", DroppedReply { server: *server, code: *code, reason: *reason, suppressed: 0 })]
    ReplyRefused {
        server: SocketAddr,
        code: Code,
        reason: DropReason,
    },
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
    /// Requests waiting for this host now.
    pub pending: usize,
    pub counters: HostCounters,
}

/// Per-host counters, the ones ASA's `show aaa-server` prints plus the dropped
/// unsigned replies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounters {
    pub auth_requests: u64,
    pub acct_requests: u64,
    pub retransmissions: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub challenges: u64,
    pub accounting_responses: u64,
    pub malformed: u64,
    /// Replies whose Response Authenticator or Message-Authenticator did not verify.
    pub bad_authenticators: u64,
    /// Access-Accept/Reject/Challenge without Message-Authenticator, dropped.
    pub unsigned_dropped: u64,
    /// The same, accepted because of `accept-unsigned-replies`.
    pub unsigned_accepted: u64,
    /// Transactions this host did not answer in time.
    pub timeouts: u64,
    /// Datagrams from this host that answer no outstanding request.
    pub unrecognized: u64,
    /// Sum of round-trip times of authenticated replies, for the average.
    pub rtt_total: Duration,
}

impl HostCounters {
    pub fn replies(&self) -> u64 {
        self.accepts + self.rejects + self.challenges + self.accounting_responses
    }

    pub fn average_rtt(&self) -> Option<Duration> {
        let n = u32::try_from(self.replies()).ok().filter(|n| *n > 0)?;
        Some(self.rtt_total / n)
    }
}

/// How often a server's dropped replies are reported (each report counts the
/// ones dropped quietly since the previous).
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Why a reply of a server was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Authentic Response Authenticator, no Message-Authenticator.
    Unsigned,
    BadResponseAuthenticator,
    BadMessageAuthenticator,
    /// Malformed attributes around the Message-Authenticator.
    Malformed,
}

/// A dropped reply to report (rate limited per server, see [`DROP_REPORT_INTERVAL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedReply {
    pub server: SocketAddr,
    pub code: Code,
    pub reason: DropReason,
    /// Replies of this server dropped since the previous report, not reported.
    pub suppressed: u64,
}

impl DropReason {
    fn describe(self) -> &'static str {
        match self {
            DropReason::Unsigned => {
                "without Message-Authenticator dropped: an unsigned reply can be forged (BlastRADIUS, CVE-2024-3596); \
                 make the server sign its replies (FreeRADIUS 3.2.5+, NPS \"Message-Authenticator\" setting) \
                 or, accepting that risk, add `accept-unsigned-replies` under this `aaa-server ... host`"
            }
            DropReason::BadResponseAuthenticator => {
                "with a bad Response Authenticator dropped: the server's shared secret differs from the `key` configured here"
            }
            DropReason::BadMessageAuthenticator => {
                "with a bad Message-Authenticator dropped: the server's shared secret differs from the `key` configured here, or the reply was forged"
            }
            DropReason::Malformed => "dropped: its Message-Authenticator attribute is malformed",
        }
    }
}

impl std::fmt::Display for DroppedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} from {} {}",
            code_name(self.code),
            self.server.ip(),
            self.reason.describe()
        )?;
        if self.suppressed > 0 {
            write!(
                f,
                " ({} more dropped since the last report)",
                self.suppressed
            )?;
        }
        Ok(())
    }
}

fn code_name(c: Code) -> String {
    match c {
        Code::AccessAccept => "Access-Accept".into(),
        Code::AccessReject => "Access-Reject".into(),
        Code::AccessChallenge => "Access-Challenge".into(),
        Code::AccountingResponse => "Accounting-Response".into(),
        other => format!("RADIUS code {}", u8::from(other)),
    }
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
    counters: HostCounters,
    /// When the last dropped reply was reported, and how many since.
    last_drop_report: Option<Instant>,
    drops_unreported: u64,
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
    /// Sent on this host at (for the round-trip time).
    sent: Instant,
    /// A reply of some host was dropped: why, for the error if none is accepted.
    refused: Option<(SocketAddr, Code, DropReason)>,
    /// The current host answered (a dropped reply): it is alive.
    host_answered: bool,
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
    dropped: VecDeque<DroppedReply>,
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
                counters: HostCounters::default(),
                last_drop_report: None,
                drops_unreported: 0,
            })
            .collect();
        Self {
            config,
            hosts,
            pending: HashMap::new(),
            by_wire: HashMap::new(),
            next_request: 1,
            stats: ClientStats::default(),
            dropped: VecDeque::new(),
        }
    }

    /// The next dropped reply to log; at most one per server per
    /// [`DROP_REPORT_INTERVAL`] (the others are counted in the next one).
    pub fn poll_dropped(&mut self) -> Option<DroppedReply> {
        self.dropped.pop_front()
    }

    fn report_drop(&mut self, now: Instant, host: usize, code: Code, reason: DropReason) {
        let h = &mut self.hosts[host];
        if reason == DropReason::Unsigned {
            h.counters.unsigned_dropped += 1;
        } else {
            h.counters.bad_authenticators += 1;
        }
        let due = h
            .last_drop_report
            .is_none_or(|t| now.saturating_duration_since(t) >= DROP_REPORT_INTERVAL);
        if !due {
            h.drops_unreported += 1;
            return;
        }
        h.last_drop_report = Some(now);
        let suppressed = std::mem::take(&mut h.drops_unreported);
        // A bounded queue: the I/O side drains it after every datagram.
        if self.dropped.len() < 64 {
            self.dropped.push_back(DroppedReply {
                server: self.config.hosts[host].auth_addr,
                code,
                reason,
                suppressed,
            });
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
            .enumerate()
            .map(|(i, (c, s))| HostStatus {
                auth_addr: c.auth_addr,
                dead_until: s.dead_until,
                consecutive_failures: s.consecutive_failures,
                last_reply: s.last_reply,
                pending: self.pending.values().filter(|p| p.host == i).count(),
                counters: s.counters,
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
        self.count_request(host, request.kind());
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
                sent: now,
                refused: None,
                host_answered: false,
            },
        );
        Ok((id, transmit))
    }

    fn count_request(&mut self, host: usize, kind: RequestKind) {
        let c = &mut self.hosts[host].counters;
        match kind {
            RequestKind::Authentication => c.auth_requests += 1,
            RequestKind::Accounting => c.acct_requests += 1,
        }
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
            self.hosts[p.host].counters.retransmissions += 1;
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
        host.counters.timeouts += 1;
        // A host whose replies were refused is up: it does not go dead for it.
        if !p.host_answered {
            host.consecutive_failures = host.consecutive_failures.saturating_add(1);
        }
        if !p.host_answered
            && !self.config.dead_time.is_zero()
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
                self.count_request(host, p.request.kind());
                p.host = host;
                p.dest = dest;
                p.identifier = identifier;
                p.authenticator = authenticator;
                p.bytes = bytes;
                p.retries_left = self.config.hosts[host].retries;
                p.deadline = now + self.config.hosts[host].timeout;
                p.sent = now;
                p.host_answered = false;
                self.by_wire.insert((dest, identifier), id);
                self.pending.insert(id, p);
            }
            Ok(None) => {
                self.stats.failed += 1;
                let error = match p.refused {
                    Some((server, code, reason)) => RadiusError::ReplyRefused {
                        server,
                        code,
                        reason,
                    },
                    None => RadiusError::AllServersDead,
                };
                events.push(Event::Failed { request: id, error });
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
        let unmatched = |c: &mut Self| {
            c.stats.unmatched += 1;
            if let Some(h) = c
                .config
                .hosts
                .iter()
                .position(|h| h.auth_addr == from || h.acct_addr() == from)
            {
                c.hosts[h].counters.unrecognized += 1;
            }
            None
        };
        let Some(&identifier) = bytes.get(1) else {
            return unmatched(self);
        };
        let Some(&id) = self.by_wire.get(&(from, identifier)) else {
            return unmatched(self);
        };
        let p = self.pending.get(&id)?;
        let (host, request_code) = (p.host, p.request.code());
        let policy = if request_code == Code::AccessRequest {
            MessageAuthenticatorPolicy::Required
        } else {
            MessageAuthenticatorPolicy::IfPresent
        };
        let host_cfg = &self.config.hosts[host];
        let code = bytes.first().map_or(Code::Unknown(0), |c| Code::from(*c));
        match crypto::verify_reply(bytes, &p.authenticator, &host_cfg.secret, policy) {
            Ok(()) => {}
            // BlastRADIUS (CVE-2024-3596): an Access-* reply must be signed, unless
            // the admin accepted the risk for this server.
            Err(AuthenticatorError::MissingMessageAuthenticator)
                if host_cfg.accept_unsigned_replies =>
            {
                self.hosts[host].counters.unsigned_accepted += 1;
            }
            Err(e) => {
                self.stats.bad_authenticator += 1;
                let reason = match e {
                    AuthenticatorError::MissingMessageAuthenticator => DropReason::Unsigned,
                    AuthenticatorError::BadMessageAuthenticator => {
                        DropReason::BadMessageAuthenticator
                    }
                    AuthenticatorError::BadResponseAuthenticator
                    | AuthenticatorError::BadRequestAuthenticator => {
                        DropReason::BadResponseAuthenticator
                    }
                    _ => DropReason::Malformed,
                };
                if let Some(p) = self.pending.get_mut(&id) {
                    p.refused = Some((from, code, reason));
                    // Only an authentic Response Authenticator proves the host
                    // itself answered.
                    p.host_answered |= reason == DropReason::Unsigned;
                }
                self.report_drop(now, host, code, reason);
                return None;
            }
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
                host.counters.rtt_total += now.saturating_duration_since(p.sent);
                match packet.code {
                    Code::AccessAccept => host.counters.accepts += 1,
                    Code::AccessReject => host.counters.rejects += 1,
                    Code::AccessChallenge => host.counters.challenges += 1,
                    _ => host.counters.accounting_responses += 1,
                }
                Ok(packet)
            }
            Ok(packet) => {
                self.stats.malformed += 1;
                host.counters.malformed += 1;
                Err(RadiusError::UnexpectedReply(packet.code))
            }
            Err(e) => {
                self.stats.malformed += 1;
                host.counters.malformed += 1;
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
            accept_unsigned_replies: false,
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
        // Too short to be a reply, and with an identifier that is not the
        // request's (the request's is random: a fixed one matched 1 run in 256).
        let other_identifier = tx.bytes[1].wrapping_add(1);
        assert!(
            c.on_datagram(now, tx.dest, &[1, other_identifier])
                .is_none()
        );
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

    #[test]
    fn unsigned_replies_are_refused_reported_and_counted() {
        let t0 = Instant::now();
        let mut c = client(vec![host(20, "s1")]);
        let (id, tx) = c.start(t0, authorize_only(&ctx())).unwrap();
        let unsigned = answer(&tx.bytes, Code::AccessAccept, "s1", false);
        assert!(c.on_datagram(t0, tx.dest, &unsigned).is_none());
        let r = c.poll_dropped().expect("first drop is reported");
        assert_eq!(
            (r.server, r.code, r.reason, r.suppressed),
            (tx.dest, Code::AccessAccept, DropReason::Unsigned, 0)
        );
        let text = r.to_string();
        assert!(
            text.starts_with(
                "Access-Accept from 198.18.1.20 without Message-Authenticator dropped: "
            ),
            "{text}"
        );
        assert!(text.contains("CVE-2024-3596") && text.contains("accept-unsigned-replies"));
        // The retransmitted request's answer again: counted, not reported again.
        let ev = c.on_timeout(t0 + T);
        assert!(matches!(ev[..], [Event::Retransmit { .. }]));
        assert!(c.on_datagram(t0 + T, tx.dest, &unsigned).is_none());
        assert_eq!(c.poll_dropped(), None);
        // Out of tries: the error says the answer was refused, and the host that
        // answered is not dead.
        let ev = c.on_timeout(t0 + 2 * T);
        assert_eq!(
            ev,
            vec![Event::Failed {
                request: id,
                error: RadiusError::ReplyRefused {
                    server: tx.dest,
                    code: Code::AccessAccept,
                    reason: DropReason::Unsigned
                }
            }]
        );
        let msg = RadiusError::ReplyRefused {
            server: tx.dest,
            code: Code::AccessAccept,
            reason: DropReason::Unsigned,
        }
        .to_string();
        assert!(msg.starts_with("a RADIUS server answered, but its reply was refused: Access-Accept from 198.18.1.20 without"), "{msg}");
        let st = c.host_status()[0];
        assert_eq!(st.dead_until, None);
        assert_eq!(st.consecutive_failures, 0);
        assert_eq!(
            (st.counters.auth_requests, st.counters.retransmissions),
            (1, 1)
        );
        assert_eq!(
            (
                st.counters.unsigned_dropped,
                st.counters.timeouts,
                st.counters.accepts
            ),
            (2, 1, 0)
        );
        // A later request: a bad secret is a different reason; one interval after the
        // first report the next drop is reported with the quiet ones counted.
        let t1 = t0 + DROP_REPORT_INTERVAL;
        let (_, tx) = c.start(t1, authorize_only(&ctx())).unwrap();
        let wrong = answer(&tx.bytes, Code::AccessReject, "nope", true);
        assert!(c.on_datagram(t1, tx.dest, &wrong).is_none());
        let r = c.poll_dropped().expect("reported after the interval");
        assert_eq!(
            (r.code, r.reason, r.suppressed),
            (Code::AccessReject, DropReason::BadResponseAuthenticator, 1)
        );
        assert!(
            r.to_string()
                .contains("(1 more dropped since the last report)")
        );
        assert_eq!(c.host_status()[0].counters.bad_authenticators, 1);
        // The signed answer still completes it.
        let good = answer(&tx.bytes, Code::AccessAccept, "s1", true);
        assert!(c.on_datagram(t1, tx.dest, &good).unwrap().1.is_ok());
        assert_eq!(c.host_status()[0].counters.accepts, 1);
    }

    #[test]
    fn accept_unsigned_replies_lets_them_through_and_only_them() {
        let now = Instant::now();
        let mut h = host(20, "s1");
        h.accept_unsigned_replies = true;
        let mut c = client(vec![h]);
        let (id, tx) = c.start(now, authorize_only(&ctx())).unwrap();
        // Still verified: a wrong secret or a bad Message-Authenticator is dropped.
        let wrong = answer(&tx.bytes, Code::AccessAccept, "s2", false);
        assert!(c.on_datagram(now, tx.dest, &wrong).is_none());
        let unsigned = answer(&tx.bytes, Code::AccessAccept, "s1", false);
        let (got, result) = c.on_datagram(now, tx.dest, &unsigned).unwrap();
        assert_eq!(got, id);
        assert_eq!(result.unwrap().code, Code::AccessAccept);
        let k = c.host_status()[0].counters;
        assert_eq!(
            (
                k.unsigned_accepted,
                k.unsigned_dropped,
                k.bad_authenticators,
                k.accepts
            ),
            (1, 0, 1, 1)
        );
    }
}

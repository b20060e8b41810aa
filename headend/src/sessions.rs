//! The VPN session database: cookie -> session, addresses, simultaneous logins,
//! disconnected grace period and timeouts. Control plane only: locked per event,
//! never per packet (the dataplane reads `dataplane::SessionRoutes`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use auth::radius::{DynAuthKind, DynAuthRequest, ErrorCause, TerminateCause};

use crate::config::{Config, EffectivePolicy};
use crate::pool::{AddressPool, Ipv6AddressPool};

mod clustered;
pub use clustered::ConnectPlan;

/// How long a cookie from a finished login stays valid before its first CONNECT.
pub const UNUSED_COOKIE_LIFETIME: Duration = Duration::from_secs(120);

/// Traffic counters of one session, shared with its live connection.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub bytes_tx: AtomicU64,
    pub bytes_rx: AtomicU64,
    pub packets_tx: AtomicU64,
    pub packets_rx: AtomicU64,
    pub spoofed_drops: AtomicU64,
    /// The downlink currently goes over DTLS.
    pub dtls_active: std::sync::atomic::AtomicBool,
    /// OpenSSL name of the last established DTLS suite (for `show vpn-sessiondb`).
    pub dtls_cipher: std::sync::Mutex<Option<&'static str>>,
    /// IANA name of the TLS (CSTP) suite rustls negotiated, per connection.
    pub tls_cipher: std::sync::Mutex<Option<&'static str>>,
    /// Group policy, user and public IP the session's syslog messages name,
    /// set when a tunnel attaches (for the DTLS tunnel's 722022/722023).
    pub syslog_id: std::sync::Mutex<Option<(String, String, IpAddr)>>,
    /// A UDP 722022 was logged and its 722023 not yet.
    dtls_logged_up: std::sync::atomic::AtomicBool,
}

impl SessionStats {
    /// Records the TLS suite of the session's current CSTP connection.
    pub fn set_tls_cipher(&self, suite: Option<rustls::SupportedCipherSuite>) {
        *self.tls_cipher.lock().unwrap_or_else(|e| e.into_inner()) =
            suite.and_then(|s| s.suite().as_str());
    }

    fn syslog_svc(&self, up: bool) {
        let id = self
            .syslog_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some((group, user, ip)) = id else {
            return;
        };
        crate::syslog::emit(if up {
            crate::syslog::Message::SvcEstablished {
                group,
                user,
                ip,
                udp: true,
            }
        } else {
            crate::syslog::Message::SvcTerminated {
                group,
                user,
                ip,
                udp: true,
            }
        });
    }

    /// The DTLS (UDP) tunnel is up: 722022 `UDP SVC connection established`,
    /// once per up.
    pub fn dtls_established(&self) {
        if !self.dtls_logged_up.swap(true, Ordering::Relaxed) {
            self.syslog_svc(true);
        }
    }

    /// The DTLS tunnel is gone (failed, or its session's tunnel ended):
    /// 722023 `UDP SVC connection terminated`, if a 722022 was logged.
    pub fn dtls_terminated(&self) {
        if self.dtls_logged_up.swap(false, Ordering::Relaxed) {
            self.syslog_svc(false);
        }
    }
}

/// Why a session ended (logged, and shown to the client where it can be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    UserLogout(String),
    AdminLogoff,
    IdleTimeout,
    SessionTimeout,
    DisconnectedTimeout,
    CookieUnused,
    SimultaneousLogins,
    Shutdown,
    /// RADIUS Disconnect-Request (RFC 5176).
    RadiusDisconnect,
}

impl EndReason {
    /// Acct-Terminate-Cause for the accounting Stop.
    pub fn terminate_cause(&self) -> TerminateCause {
        match self {
            EndReason::UserLogout(_) => TerminateCause::UserRequest,
            EndReason::AdminLogoff | EndReason::RadiusDisconnect => TerminateCause::AdminReset,
            EndReason::IdleTimeout => TerminateCause::IdleTimeout,
            EndReason::SessionTimeout => TerminateCause::SessionTimeout,
            EndReason::DisconnectedTimeout => TerminateCause::LostCarrier,
            EndReason::CookieUnused | EndReason::SimultaneousLogins => TerminateCause::NasRequest,
            EndReason::Shutdown => TerminateCause::NasReboot,
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::UserLogout(r) if r.is_empty() => f.write_str("User Requested"),
            EndReason::UserLogout(r) => write!(f, "User Requested ({r})"),
            EndReason::AdminLogoff => f.write_str("Administrator Reset"),
            EndReason::IdleTimeout => f.write_str("Idle Timeout"),
            EndReason::SessionTimeout => f.write_str("Max time exceeded"),
            EndReason::DisconnectedTimeout => f.write_str("Disconnected timeout"),
            EndReason::CookieUnused => f.write_str("Login cookie not used"),
            EndReason::SimultaneousLogins => f.write_str("Simultaneous logins exceeded"),
            EndReason::Shutdown => f.write_str("System shutdown"),
            EndReason::RadiusDisconnect => f.write_str("AAA Disconnect"),
        }
    }
}

/// Commands from the control plane to a session's live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// End the session: tell the client (server DISCONNECT) and close.
    Logoff(EndReason),
    /// A newer connection took over this session: close quietly.
    Superseded,
    /// A reload changed the session's idle timeout or session deadline
    /// (`reload.rs`): the live tunnel's timers follow.
    Timeouts {
        idle: Option<Duration>,
        session_deadline: Option<Instant>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Logged in, no tunnel yet.
    Authenticated {
        since: Instant,
    },
    Connected {
        generation: u64,
    },
    /// Tunnel lost without a logout; the address is kept for reconnection.
    Disconnected {
        since: Instant,
    },
}

#[derive(Debug)]
pub struct Session {
    pub index: u64,
    pub username: String,
    pub tunnel_group: String,
    pub group_policy: String,
    pub policy: EffectivePolicy,
    pub public_ip: IpAddr,
    pub login_time: SystemTime,
    pub login_instant: Instant,
    /// (address, netmask, pool name)
    pub assigned_v4: Option<(Ipv4Addr, Ipv4Addr, String)>,
    /// Pools to allocate from, in order (group-policy's, else tunnel group's).
    pub pools: Vec<String>,
    /// (address, prefix length, pool name), when the client does IPv6 and the
    /// session has an IPv6 pool.
    pub assigned_v6: Option<(Ipv6Addr, u8, String)>,
    /// IPv6 pools, in order (group-policy's `ipv6-address-pools`, else the tunnel
    /// group's `ipv6-address-pool`).
    pub pools6: Vec<String>,
    pub stats: Arc<SessionStats>,
    pub state: SessionState,
    pub authz: SessionAuthz,
    /// What the dataplane enforces (SGT and filter), changed live by CoA.
    pub filter: Arc<dataplane::enforce::SessionFilter>,
    /// ISE's audit-session-id (also our Acct-Session-Id prefix).
    pub audit_session_id: String,
    pub acct_session_id: String,
    acct_started: Option<Instant>,
    last_interim: Instant,
    control: Option<mpsc::UnboundedSender<SessionCommand>>,
    cookie_hash: [u8; 32],
    /// Fencing token of this node's ownership in the cluster (0: not in one).
    cluster_fence: u64,
}

/// What authorization (RADIUS, later CoA) gave the session.
#[derive(Debug, Clone, Default)]
pub struct SessionAuthz {
    pub sgt: Option<u16>,
    /// Name of the ACL used as the session's filter (vpn-filter or Filter-Id).
    pub filter: Option<String>,
    /// Class attributes to echo in accounting.
    pub classes: Vec<Vec<u8>>,
    /// Framed-IP-Address to assign instead of a pool address.
    pub framed_ip: Option<Ipv4Addr>,
    /// `accounting-server-group` of the tunnel group.
    pub accounting_group: Option<String>,
    /// The SAML AttributeStatement of the login (groups, mail...).
    pub saml_attributes: BTreeMap<String, Vec<String>>,
    /// RADIUS `ip:inacl#N` entries, in order: installed at login as a per-user
    /// ACL that becomes the session's filter (it beats Filter-Id and vpn-filter).
    pub downloadable_aces: Vec<String>,
    /// The name of a named (ISE) downloadable ACL, whose entries, when fetched,
    /// are `downloadable_aces`; without it the ACL is `AAA-user-USER-HASH`.
    pub downloadable_name: Option<String>,
    /// The name of that ACL once installed (released when the session ends).
    pub downloadable_acl: Option<String>,
}

/// Accounting work for the RADIUS side, emitted by the session table.
#[derive(Debug, Clone)]
pub struct AcctEvent {
    pub status: auth::radius::AcctStatusType,
    pub terminate_cause: Option<TerminateCause>,
    pub group: String,
    pub username: String,
    pub tunnel_group: String,
    pub public_ip: IpAddr,
    pub audit_session_id: String,
    pub acct_session_id: String,
    pub framed_ip: Option<Ipv4Addr>,
    pub framed_ipv6: Option<std::net::Ipv6Addr>,
    pub classes: Vec<Vec<u8>>,
    pub counters: auth::radius::Counters,
    pub session_time: u32,
}

/// What a successful login knows about the user.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub username: &'a str,
    pub tunnel_group: &'a str,
    pub group_policy: &'a str,
    pub policy: EffectivePolicy,
    /// Pools to allocate from, in order (group-policy's, else tunnel group's).
    pub pools: Vec<String>,
    pub public_ip: IpAddr,
    pub authz: SessionAuthz,
    /// From [`SessionTable::new_audit_session_id`].
    pub audit_session_id: String,
}

/// A read-only copy for the admin view.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub index: u64,
    pub username: String,
    pub tunnel_group: String,
    pub group_policy: String,
    pub public_ip: IpAddr,
    pub assigned_v4: Option<Ipv4Addr>,
    pub assigned_v6: Option<Ipv6Addr>,
    pub bytes_tx: u64,
    pub bytes_rx: u64,
    pub login_time: SystemTime,
    pub duration: Duration,
    pub state: &'static str,
    pub protocol: &'static str,
    pub sgt: Option<u16>,
    pub filter: Option<String>,
    pub audit_session_id: String,
    /// Packets the filter dropped towards the client (ASA "Pkts Tx Drop").
    pub pkts_tx_drop: u64,
    /// Packets the filter dropped from the client (ASA "Pkts Rx Drop").
    pub pkts_rx_drop: u64,
    /// OpenSSL name of the DTLS suite, once DTLS came up.
    pub dtls_cipher: Option<&'static str>,
    /// IANA name of the TLS suite (`TLS13_AES_256_GCM_SHA384`), once attached.
    pub tls_cipher: Option<&'static str>,
}

/// Everything a new tunnel connection needs, handed out by [`SessionTable::attach`].
#[derive(Debug)]
pub struct Attached {
    pub index: u64,
    pub generation: u64,
    pub username: String,
    pub tunnel_group: String,
    pub group_policy: String,
    pub policy: EffectivePolicy,
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// IPv6 address and prefix length, when the client asked for IPv6 and the
    /// session has an IPv6 pool.
    pub address6: Option<(Ipv6Addr, u8)>,
    pub stats: Arc<SessionStats>,
    pub filter: Arc<dataplane::enforce::SessionFilter>,
    pub control: mpsc::UnboundedReceiver<SessionCommand>,
    pub session_deadline: Option<Instant>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachError {
    #[error("unknown or expired session cookie")]
    BadCookie,
    #[error("no free address in pool {0}")]
    PoolExhausted(String),
    #[error("no address pool configured for tunnel group {0}")]
    NoPool(String),
    #[error("Framed-IP-Address {0} is already in use")]
    FramedIpInUse(Ipv4Addr),
    /// The attach could not run to its end (the runtime is shutting down).
    #[error("the headend is shutting down")]
    ShuttingDown,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("simultaneous logins are disabled for this user (vpn-simultaneous-logins 0)")]
    LoginsDisabled,
    /// The entries are in the log, not in the message the user sees.
    #[error("the access list from the authorization server is not valid")]
    DownloadableAcl,
    /// `vpn-sessiondb max-anyconnect-premium-or-essentials-limit` /
    /// `max-session-limit` (ASA syslog 716023 words it the same way).
    #[error("session could not be established: session limit of {0} reached")]
    SessionLimit(usize),
}

/// How a live connection ended, reported by its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detach {
    /// The session is over (logout, idle, admin...).
    End(EndReason),
    /// TCP/TLS lost or DPD dead: keep the session for reconnection.
    Lost(String),
}

pub enum LogoffSelector<'a> {
    Index(u64),
    Name(&'a str),
    All,
}

struct Inner {
    sessions: BTreeMap<u64, Session>,
    by_cookie: HashMap<[u8; 32], u64>,
    /// Each user's session indices, oldest first: a login looks at its own
    /// user's sessions, not at every session.
    by_user: HashMap<String, BTreeSet<u64>>,
    /// The other RFC 5176 selectors a CoA names a session by, so that a CoA
    /// looks at its session(s), not at every session (issue 12). Entries are
    /// checked against the session when read, so one left behind can only
    /// cost a lookup, never select the wrong session.
    selectors: SelectorIndex,
    pools: BTreeMap<String, AddressPool>,
    pools6: BTreeMap<String, Ipv6AddressPool>,
    /// Each tunnel group's `ipv6-address-pool` list.
    tunnel_group_pools6: HashMap<String, Vec<String>>,
    next_index: u64,
    next_generation: u64,
    events: Option<mpsc::UnboundedSender<AcctEvent>>,
    /// Crash-safe record of the Starts (acct_journal.rs).
    journal: Option<Arc<crate::acct_journal::AcctJournal>>,
    /// How often to send Interim-Update, per accounting group.
    interim: BTreeMap<String, Duration>,
    /// NAS-IP-Address as hex, the first part of audit-session-ids.
    nas_hex: String,
    /// Sessions' addresses and SGTs go into the IP-to-SGT map.
    policy: Option<Arc<crate::policy_state::PolicyState>>,
    audit_counter: u32,
    /// Seconds since the epoch when the table was made.
    boot_id: u32,
    /// Most sessions held at once (`show vpn-sessiondb` "Peak Concur").
    peak: usize,
    /// `vpn-sessiondb` limit on sessions at once (None: no limit configured).
    max_sessions: Option<usize>,
    /// Cluster work (issue 19): ended sessions, addresses to serve on the inside.
    cluster: Option<mpsc::UnboundedSender<crate::cluster::ClusterEvent>>,
    /// The reaper's deadline queue (issue 12): (instant, index) of the next
    /// moment one of a session's timers (session timeout, unused cookie,
    /// disconnected grace, interim accounting) can be due, so that a tick
    /// looks at the sessions that are due, not at every session.
    wakeups: BTreeSet<(Instant, u64)>,
    /// Each session's entry in `wakeups`.
    wake_at: HashMap<u64, Instant>,
    /// Sessions from this index on were inserted since the last tick and are
    /// not scheduled yet (a login, or a cluster takeover: every path that
    /// inserts one gets its first wake-up from [`SessionTable::reap`]).
    unscheduled_from: u64,
}

/// Sessions by acct-session-id, audit-session-id and assigned IPv4 address.
#[derive(Default)]
struct SelectorIndex {
    by_acct: HashMap<String, u64>,
    by_audit: HashMap<String, u64>,
    by_v4: HashMap<Ipv4Addr, u64>,
}

impl SelectorIndex {
    fn add(&mut self, s: &Session) {
        self.by_acct.insert(s.acct_session_id.clone(), s.index);
        self.by_audit.insert(s.audit_session_id.clone(), s.index);
        if let Some((a, _, _)) = &s.assigned_v4 {
            self.by_v4.insert(*a, s.index);
        }
    }

    /// Forgets `s` (entries that name another session by now are kept).
    fn remove(&mut self, s: &Session) {
        fn drop_if<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u64>, k: &K, index: u64) {
            if m.get(k) == Some(&index) {
                m.remove(k);
            }
        }
        drop_if(&mut self.by_acct, &s.acct_session_id, s.index);
        drop_if(&mut self.by_audit, &s.audit_session_id, s.index);
        if let Some((a, _, _)) = &s.assigned_v4 {
            drop_if(&mut self.by_v4, a, s.index);
        }
    }
}

pub struct SessionTable {
    inner: Mutex<Inner>,
}

/// `interim-accounting-update periodic HOURS` of each aaa-server group.
fn interim_periods(config: &Config) -> BTreeMap<String, Duration> {
    config
        .aaa_server_groups
        .values()
        .filter_map(|g| {
            g.interim_accounting_update_hours
                .filter(|h| *h > 0)
                .map(|h| (g.name.clone(), Duration::from_secs(u64::from(h) * 3600)))
        })
        .collect()
}

fn cookie_hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// The cluster's id of a session cookie (hex SHA-256).
pub fn cookie_sid(cookie: &str) -> String {
    clustered::sid_of(&cookie_hash(cookie))
}

fn new_cookie() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    // Hex: alphanumeric, so openconnect's cookie splitting never cuts it.
    b.iter().map(|x| format!("{x:02X}")).collect()
}

impl SessionTable {
    pub fn new(config: &Config) -> Self {
        let pools = config
            .ip_local_pools
            .values()
            .map(|p| (p.name.clone(), AddressPool::new(p)))
            .collect();
        Self {
            inner: Mutex::new(Inner {
                sessions: BTreeMap::new(),
                by_cookie: HashMap::new(),
                by_user: HashMap::new(),
                selectors: SelectorIndex::default(),
                pools,
                pools6: config
                    .ipv6_local_pools
                    .values()
                    .map(|p| (p.name.clone(), Ipv6AddressPool::new(p)))
                    .collect(),
                tunnel_group_pools6: config
                    .tunnel_groups
                    .values()
                    .map(|tg| (tg.name.clone(), tg.ipv6_address_pools.clone()))
                    .collect(),
                next_index: 1,
                next_generation: 1,
                max_sessions: config.vpn_sessiondb.anyconnect_limit().map(|n| n as usize),
                events: None,
                journal: None,
                interim: interim_periods(config),
                nas_hex: "00000000".into(),
                policy: None,
                audit_counter: 0,
                peak: 0,
                cluster: None,
                wakeups: BTreeSet::new(),
                wake_at: HashMap::new(),
                unscheduled_from: 1,
                boot_id: SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as u32)
                    .unwrap_or(0),
            }),
        }
    }

    /// A fresh ISE audit-session-id, in ASA's format: NAS address, a counter
    /// and the time, all hex (24 characters).
    pub fn new_audit_session_id(&self) -> String {
        let mut inner = self.lock();
        inner.audit_counter = inner.audit_counter.wrapping_add(1);
        let unix = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        format!("{}{:08x}{unix:08x}", inner.nas_hex, inner.audit_counter)
    }

    /// Connected sessions' addresses are published with their SGT.
    pub fn set_policy(&self, policy: Arc<crate::policy_state::PolicyState>) {
        self.lock().policy = Some(policy);
    }

    /// No more accounting events (shutdown): the accounting task drains and ends.
    pub fn close_accounting(&self) {
        self.lock().events = None;
    }

    /// Accounting events go to `tx` from now on; `nas_ip` prefixes audit ids.
    pub fn set_accounting(&self, tx: mpsc::UnboundedSender<AcctEvent>, nas_ip: Ipv4Addr) {
        let mut inner = self.lock();
        inner.events = Some(tx);
        inner.nas_hex = format!("{:08x}", u32::from(nas_ip));
    }

    /// Audit-session-ids start with `nas_ip` from now on (a reload that adds or
    /// changes the first aaa-server group; running sessions keep theirs).
    pub fn set_nas_ip(&self, nas_ip: Ipv4Addr) {
        self.lock().nas_hex = format!("{:08x}", u32::from(nas_ip));
    }

    /// Every Start is journaled (fsync'd) before its tunnel comes up.
    pub fn set_accounting_journal(&self, journal: Arc<crate::acct_journal::AcctJournal>) {
        self.lock().journal = Some(journal);
    }

    /// Whether [`Self::attach`] may wait for the disk (a Start to journal).
    pub fn journals_starts(&self) -> bool {
        self.lock().journal.is_some()
    }

    /// Interim-style records of every session with a Start: the counters the
    /// accounting journal checkpoints.
    pub fn accounting_snapshot(&self, now: Instant) -> Vec<AcctEvent> {
        let inner = self.lock();
        inner
            .sessions
            .values()
            .filter_map(|s| {
                let (Some(_), Some(group)) = (s.acct_started, s.authz.accounting_group.clone())
                else {
                    return None;
                };
                Some(acct_event(
                    s,
                    auth::radius::AcctStatusType::InterimUpdate,
                    None,
                    group,
                    now,
                ))
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the session table down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a successful login and returns (index, cookie). Enforces
    /// `vpn-simultaneous-logins`: as on ASA, the oldest session of the user is
    /// logged off to make room.
    pub fn login(&self, new: NewSession<'_>, now: Instant) -> Result<(u64, String), LoginError> {
        let NewSession {
            username,
            tunnel_group,
            group_policy,
            policy,
            pools,
            public_ip,
            mut authz,
            audit_session_id,
        } = new;
        let limit = policy.vpn_simultaneous_logins as usize;
        if limit == 0 {
            return Err(LoginError::LoginsDisabled);
        }
        let mut inner = self.lock();
        let wants_acl = authz.downloadable_name.is_some() || !authz.downloadable_aces.is_empty();
        if wants_acl && let Some(p) = &inner.policy {
            let name = authz.downloadable_name.clone().unwrap_or_else(|| {
                crate::policy_compile::downloadable_name(username, &authz.downloadable_aces)
            });
            match p.acquire_downloadable(&name, &authz.downloadable_aces) {
                Ok(()) => {
                    authz.filter = Some(name.clone());
                    authz.downloadable_acl = Some(name);
                }
                Err(e) => {
                    tracing::warn!(
                        user = username,
                        tunnel_group,
                        "downloadable access-list {name} refused: {e}"
                    );
                    return Err(LoginError::DownloadableAcl);
                }
            }
        }
        let mine = inner.by_user.get(username).map_or(0, BTreeSet::len);
        let victims: Vec<u64> = inner
            .by_user
            .get(username)
            .map(|v| {
                v.iter()
                    .copied()
                    .take((mine + 1).saturating_sub(limit))
                    .collect()
            })
            .unwrap_or_default();
        for oldest in victims {
            tracing::info!(
                user = username,
                index = oldest,
                "logging off oldest session: vpn-simultaneous-logins {limit} reached"
            );
            inner.end(oldest, EndReason::SimultaneousLogins);
        }
        if let Some(max) = inner.max_sessions
            && inner.sessions.len() >= max
        {
            tracing::warn!(
                user = username,
                tunnel_group,
                "Group <{group_policy}> User <{username}> Session could not be established: \
                 session limit of {max} reached (vpn-sessiondb)"
            );
            return Err(LoginError::SessionLimit(max));
        }
        let index = inner.next_index;
        inner.next_index += 1;
        // Unique across restarts (RFC 2866 5.5): boot time, then the index.
        let acct_session_id = format!("{:08X}{:08X}", inner.boot_id, index as u32);
        let cookie = new_cookie();
        let hash = cookie_hash(&cookie);
        inner.by_cookie.insert(hash, index);
        // As for IPv4: the group policy's pools win over the tunnel group's.
        let pools6 = if policy.ipv6_address_pools.is_empty() {
            inner
                .tunnel_group_pools6
                .get(tunnel_group)
                .cloned()
                .unwrap_or_default()
        } else {
            policy.ipv6_address_pools.clone()
        };
        inner
            .by_user
            .entry(username.to_string())
            .or_default()
            .insert(index);
        inner.sessions.insert(
            index,
            Session {
                index,
                username: username.to_string(),
                tunnel_group: tunnel_group.to_string(),
                group_policy: group_policy.to_string(),
                policy,
                public_ip,
                login_time: SystemTime::now(),
                login_instant: now,
                assigned_v4: None,
                pools,
                assigned_v6: None,
                pools6,
                stats: Arc::default(),
                state: SessionState::Authenticated { since: now },
                filter: Arc::new(dataplane::enforce::SessionFilter::new(
                    authz.sgt,
                    authz.filter.clone(),
                )),
                authz,
                audit_session_id,
                acct_session_id,
                acct_started: None,
                last_interim: now,
                control: None,
                cookie_hash: hash,
                cluster_fence: 0,
            },
        );
        {
            let Inner {
                sessions,
                selectors,
                ..
            } = &mut *inner;
            selectors.add(&sessions[&index]);
        }
        inner.peak = inner.peak.max(inner.sessions.len());
        crate::syslog::emit(crate::syslog::Message::ParentSessionStarted {
            group: group_policy.to_string(),
            user: username.to_string(),
            ip: public_ip,
        });
        crate::syslog::emit(crate::syslog::Message::WebVpnStarted {
            group: group_policy.to_string(),
            user: username.to_string(),
            ip: public_ip,
        });
        Ok((index, cookie))
    }

    /// A CONNECT with `cookie`: binds a new connection to the session, keeping its
    /// address if it had one (or honouring `previous` from X-CSTP-Address).
    /// `want_v6`: the client can do IPv6 (it then also gets an IPv6 address when
    /// the session has an IPv6 pool).
    pub fn attach(
        &self,
        cookie: &str,
        public_ip: IpAddr,
        previous: Option<Ipv4Addr>,
        want_v6: bool,
    ) -> Result<Attached, AttachError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let index = *inner
            .by_cookie
            .get(&cookie_hash(cookie))
            .ok_or(AttachError::BadCookie)?;
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let s = inner
            .sessions
            .get_mut(&index)
            .ok_or(AttachError::BadCookie)?;
        if s.assigned_v4.is_none()
            && let Some(ip) = s.authz.framed_ip
        {
            // RADIUS Framed-IP-Address: exactly this address, from its pool if
            // it is in one, else as a host address of its own.
            match inner.pools.iter_mut().find(|(_, p)| p.contains(ip)) {
                Some((name, pool)) => {
                    if !pool.take(ip) {
                        return Err(AttachError::FramedIpInUse(ip));
                    }
                    s.assigned_v4 = Some((ip, pool.mask, name.clone()));
                }
                None => s.assigned_v4 = Some((ip, Ipv4Addr::BROADCAST, String::new())),
            }
        }
        if s.assigned_v4.is_none() {
            if s.pools.is_empty() {
                return Err(AttachError::NoPool(s.tunnel_group.clone()));
            }
            // First pool with a free address, as ASA walks its pool list.
            let mut got = None;
            for name in &s.pools {
                if let Some(pool) = inner.pools.get_mut(name)
                    && let Some(addr) = pool.allocate(previous)
                {
                    got = Some((addr, pool.mask, name.clone()));
                    break;
                }
            }
            s.assigned_v4 = Some(got.ok_or_else(|| AttachError::PoolExhausted(s.pools.join(",")))?);
        }
        if let Some((a, _, _)) = &s.assigned_v4 {
            inner.selectors.by_v4.insert(*a, index);
        }
        if want_v6 && s.assigned_v6.is_none() && !s.pools6.is_empty() {
            // First IPv6 pool with a free address. None free: the session goes
            // on with IPv4 only (IPv4 is what every client needs).
            s.assigned_v6 = s.pools6.iter().find_map(|name| {
                let pool = inner.pools6.get_mut(name)?;
                let a = pool.allocate(None)?;
                Some((a, pool.prefix_len, name.clone()))
            });
            if s.assigned_v6.is_none() {
                tracing::warn!(user = %s.username, index, "no free address in IPv6 pool(s) {}: IPv4 only", s.pools6.join(","));
            }
        }
        if let Some(old) = s.control.take() {
            let _ = old.send(SessionCommand::Superseded);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        s.control = Some(tx);
        s.state = SessionState::Connected { generation };
        s.public_ip = public_ip;
        let (address, netmask, _) = s.assigned_v4.clone().ok_or(AttachError::BadCookie)?;
        // Kept for the session even if this connection did not ask for IPv6
        // (it is freed at session end); only announced and routed when asked.
        let address6 = s
            .assigned_v6
            .as_ref()
            .filter(|_| want_v6)
            .map(|(a, len, _)| (*a, *len));
        if let (Some(p), Some(sgt)) = (&inner.policy, s.authz.sgt) {
            p.set_session(IpAddr::V4(address), Some(sgt));
            if let Some((a6, _, _)) = &s.assigned_v6 {
                p.set_session(IpAddr::V6(*a6), Some(sgt));
            }
        }
        let session_deadline = s.policy.vpn_session_timeout.map(|d| s.login_instant + d);
        // The Start's journal write, made durable once the table is unlocked.
        let mut start_to_sync = None;
        if s.acct_started.is_none()
            && let Some(group) = s.authz.accounting_group.clone()
        {
            let now = Instant::now();
            s.acct_started = Some(now);
            s.last_interim = now;
            let ev = acct_event(s, auth::radius::AcctStatusType::Start, None, group, now);
            // Durable before the tunnel is up: a crash from here on still
            // gets its Stop at the next start (issue 17). Written here, in
            // the table's order; the fsync waits until the lock is released
            // (acct_journal.rs), and the accounting task syncs before it
            // sends the Start.
            if let Some(j) = &inner.journal {
                match j.started_unsynced(&ev) {
                    Ok(seq) => {
                        start_to_sync = Some((
                            j.clone(),
                            seq,
                            ev.username.clone(),
                            ev.acct_session_id.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::error!(user = %ev.username, session = %ev.acct_session_id, "accounting journal: {e}; a crash would lose this session's Stop");
                    }
                }
            }
            if let Some(tx) = &inner.events {
                let _ = tx.send(ev);
            }
        }
        {
            use crate::syslog::{Message, emit};
            let (group, user, ip) = (s.group_policy.clone(), s.username.clone(), public_ip);
            *s.stats.syslog_id.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((group.clone(), user.clone(), ip));
            emit(Message::SvcEstablished {
                group: group.clone(),
                user: user.clone(),
                ip,
                udp: false,
            });
            emit(Message::AddressAssigned {
                group_policy: group,
                user,
                ip,
                v4: Some(address),
                v6: address6.map(|(a, _)| a),
            });
        }
        let attached = Attached {
            index,
            generation,
            username: s.username.clone(),
            tunnel_group: s.tunnel_group.clone(),
            group_policy: s.group_policy.clone(),
            policy: s.policy.clone(),
            address,
            netmask,
            address6,
            stats: s.stats.clone(),
            filter: s.filter.clone(),
            control: rx,
            session_deadline,
        };
        drop(guard);
        if let Some((journal, seq, user, id)) = start_to_sync
            && let Err(e) = journal.sync_to(seq)
        {
            tracing::error!(%user, session = %id, "accounting journal: {e}; a crash would lose this session's Stop");
        }
        Ok(attached)
    }

    /// A connection's task ended. Stale generations (superseded) change nothing.
    pub fn detach(&self, index: u64, generation: u64, how: Detach, now: Instant) {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(&index) else {
            return;
        };
        if s.state != (SessionState::Connected { generation }) {
            return;
        }
        match how {
            Detach::End(reason) => inner.end(index, reason),
            Detach::Lost(why) => {
                tracing::info!(user = %s.username, index, "tunnel lost ({why}); session kept for reconnection");
                if why.starts_with("DPD") {
                    // asa-syntax.md section 7: real ASA logs say `DPD failure.`
                    crate::syslog::emit(crate::syslog::Message::SvcClosing {
                        group: s.group_policy.clone(),
                        user: s.username.clone(),
                        ip: s.public_ip,
                        reason: "DPD failure".into(),
                    });
                }
                s.stats.dtls_terminated();
                crate::syslog::emit(crate::syslog::Message::SvcTerminated {
                    group: s.group_policy.clone(),
                    user: s.username.clone(),
                    ip: s.public_ip,
                    udp: false,
                });
                s.control = None;
                s.state = SessionState::Disconnected { since: now };
                inner.reschedule(index);
            }
        }
    }

    /// `vpn-sessiondb logoff ...`: returns how many sessions were logged off.
    pub fn logoff(&self, sel: LogoffSelector<'_>, reason: EndReason) -> usize {
        let mut inner = self.lock();
        // By the indexes: logging off one session or user costs the same with
        // 10 or 10,000 others.
        let victims: Vec<u64> = match sel {
            LogoffSelector::Index(i) => inner
                .sessions
                .get(&i)
                .map(|s| s.index)
                .into_iter()
                .collect(),
            LogoffSelector::Name(n) => inner
                .by_user
                .get(n)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default(),
            LogoffSelector::All => inner.sessions.keys().copied().collect(),
        };
        for i in &victims {
            inner.end(*i, reason.clone());
        }
        victims.len()
    }

    /// Ends sessions whose time is up and sends due Interim-Updates. Call
    /// about once a second. Looks only at the sessions whose wake-up is due
    /// (and at those inserted since the last call), never at every session:
    /// O(due · log N) under the lock, whatever N is (issue 12).
    pub fn reap(&self, now: Instant) -> usize {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let fresh: Vec<u64> = inner
            .sessions
            .range(inner.unscheduled_from..)
            .map(|(i, _)| *i)
            .collect();
        inner.unscheduled_from = inner.next_index;
        for i in fresh {
            inner.reschedule(i);
        }
        // Collected first: a reschedule below can never be processed in this
        // same tick, so the loop is bounded by the queue's length now.
        let mut due = Vec::new();
        while let Some(&(t, i)) = inner.wakeups.first()
            && t <= now
        {
            inner.wakeups.pop_first();
            if inner.wake_at.get(&i) == Some(&t) {
                inner.wake_at.remove(&i);
                due.push(i);
            }
        }
        let mut n = 0;
        for i in due {
            let Some(s) = inner.sessions.get(&i) else {
                continue;
            };
            if let Some(r) = s.due_end(now) {
                inner.end(i, r);
                n += 1;
                continue;
            }
            let Inner {
                sessions,
                events,
                interim,
                ..
            } = &mut *inner;
            if let Some(s) = sessions.get_mut(&i)
                && let (Some(_), Some(group)) = (s.acct_started, s.authz.accounting_group.clone())
                && let Some(every) = interim.get(&group)
                && now.saturating_duration_since(s.last_interim) >= *every
            {
                s.last_interim = now;
                let ev = acct_event(
                    s,
                    auth::radius::AcctStatusType::InterimUpdate,
                    None,
                    group,
                    now,
                );
                if let Some(tx) = events {
                    let _ = tx.send(ev);
                }
            }
            inner.reschedule(i);
        }
        n
    }

    /// Entries in the reaper's deadline queue (tests: it holds only sessions
    /// with a timer, one entry each).
    #[cfg(test)]
    fn pending_wakeups(&self) -> usize {
        let inner = self.lock();
        assert_eq!(inner.wakeups.len(), inner.wake_at.len());
        inner.wakeups.len()
    }

    /// A RADIUS CoA or Disconnect-Request (RFC 5176): finds the session(s) its
    /// selectors name (all given selectors must match) and applies it.
    pub fn dynamic_authorization(
        &self,
        req: &DynAuthRequest,
        acl_exists: impl Fn(&str) -> bool,
    ) -> Result<(), ErrorCause> {
        let mut inner = self.lock();
        let sel = &req.selectors;
        if sel.is_empty() {
            return Err(ErrorCause::MissingAttribute);
        }
        let matches = inner.select(sel);
        if matches.is_empty() {
            return Err(ErrorCause::SessionContextNotFound);
        }
        match req.kind {
            DynAuthKind::Disconnect => {
                for i in matches {
                    inner.end(i, EndReason::RadiusDisconnect);
                }
                Ok(())
            }
            DynAuthKind::Coa => {
                // `subscriber:command=reauthenticate` and named downloadable ACLs
                // need RADIUS round trips: `crate::coa` handles them before this.
                if req.command.is_some() {
                    return Err(ErrorCause::UnsupportedService);
                }
                let changes = &req.changes;
                if let Some(f) = &changes.filter_id
                    && !acl_exists(f)
                {
                    return Err(ErrorCause::InvalidAttributeValue);
                }
                // ip:inacl entries: the session's new per-user ACL (checked for
                // every session before any changes, so a bad entry changes nothing).
                let mut acls: Vec<(u64, String)> = Vec::new();
                if !changes.inacl.is_empty() {
                    let Some(p) = inner.policy.clone() else {
                        return Err(ErrorCause::UnsupportedService);
                    };
                    for i in &matches {
                        let Some(s) = inner.sessions.get(i) else {
                            continue;
                        };
                        let name =
                            crate::policy_compile::downloadable_name(&s.username, &changes.inacl);
                        if let Err(e) = p.acquire_downloadable(&name, &changes.inacl) {
                            tracing::warn!(user = %s.username, index = i, "CoA: downloadable access-list refused: {e}");
                            for (_, n) in &acls {
                                p.release_downloadable(n);
                            }
                            return Err(ErrorCause::InvalidAttributeValue);
                        }
                        acls.push((*i, name));
                    }
                }
                for (i, name) in acls {
                    inner.set_downloadable(i, Some(name));
                }
                Inner::apply_coa(&mut inner, &matches, changes);
                Ok(())
            }
        }
    }

    /// Indexes of the sessions all given selectors match (RFC 5176 section 3).
    pub fn select(&self, sel: &auth::radius::SessionSelectors) -> Vec<u64> {
        self.lock().select(sel)
    }

    /// Who session `index` is, for re-running its authorization: (user, tunnel
    /// group, public address, audit-session-id).
    pub fn identity(&self, index: u64) -> Option<(String, String, IpAddr, String)> {
        let inner = self.lock();
        let s = inner.sessions.get(&index)?;
        Some((
            s.username.clone(),
            s.tunnel_group.clone(),
            s.public_ip,
            s.audit_session_id.clone(),
        ))
    }

    /// Applies a re-read config (`reload.rs`) to the table without ending any
    /// session. Pools are rebuilt from `new`: an unchanged pool keeps its
    /// leases; a new or changed one starts with every running session's address
    /// that falls in it taken (and the session then returns it there), so no
    /// address is handed out twice. A session whose pool is gone keeps its
    /// address until it logs off. Each session whose group-policy changed gets
    /// the live parts ([`crate::reload::live_policy`]); its address, tunnel and
    /// tunnel group stay. Returns one line per session changed, for the reply.
    pub fn reload(&self, old: &Config, new: &Config) -> Vec<String> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut notes = Vec::new();
        let mut pools = BTreeMap::new();
        for p in new.ip_local_pools.values() {
            let kept = inner.pools.remove(&p.name);
            let pool = match (old.ip_local_pools.get(&p.name), kept) {
                (Some(o), Some(kept)) if o == p => kept,
                _ => {
                    let mut fresh = AddressPool::new(p);
                    for s in inner.sessions.values_mut() {
                        if let Some((a, _, pool)) = &mut s.assigned_v4
                            && fresh.contains(*a)
                            && fresh.take(*a)
                        {
                            *pool = p.name.clone();
                        }
                    }
                    fresh
                }
            };
            pools.insert(p.name.clone(), pool);
        }
        inner.pools = pools;
        let mut pools6 = BTreeMap::new();
        for p in new.ipv6_local_pools.values() {
            let kept = inner.pools6.remove(&p.name);
            let pool = match (old.ipv6_local_pools.get(&p.name), kept) {
                (Some(o), Some(kept)) if o == p => kept,
                _ => {
                    let mut fresh = Ipv6AddressPool::new(p);
                    for s in inner.sessions.values_mut() {
                        if let Some((a, _, pool)) = &mut s.assigned_v6
                            && fresh.contains(*a)
                        {
                            match fresh.allocate(Some(*a)) {
                                Some(got) if got == *a => *pool = p.name.clone(),
                                Some(other) => {
                                    fresh.release(other);
                                }
                                None => {}
                            }
                        }
                    }
                    fresh
                }
            };
            pools6.insert(p.name.clone(), pool);
        }
        inner.pools6 = pools6;
        inner.tunnel_group_pools6 = new
            .tunnel_groups
            .values()
            .map(|tg| (tg.name.clone(), tg.ipv6_address_pools.clone()))
            .collect();
        inner.max_sessions = new.vpn_sessiondb.anyconnect_limit().map(|n| n as usize);
        inner.interim = interim_periods(new);
        for s in inner.sessions.values_mut() {
            let gp = s.group_policy.as_str();
            if gp != crate::config::DEFAULT_GROUP_POLICY && !new.group_policies.contains_key(gp) {
                notes.push(format!(
                    "session {} ({}) keeps group-policy {gp}, which is no longer configured",
                    s.index, s.username
                ));
                continue;
            }
            let (was, now) = (old.effective_policy(gp), new.effective_policy(gp));
            if was == now {
                continue;
            }
            let before = (s.policy.vpn_idle_timeout, s.policy.vpn_session_timeout);
            s.policy = crate::reload::live_policy(&was, &now, &s.policy);
            if before != (s.policy.vpn_idle_timeout, s.policy.vpn_session_timeout)
                && let Some(c) = &s.control
            {
                let _ = c.send(SessionCommand::Timeouts {
                    idle: s.policy.vpn_idle_timeout,
                    session_deadline: s.policy.vpn_session_timeout.map(|d| s.login_instant + d),
                });
            }
            // The filter follows the group-policy's vpn-filter unless RADIUS
            // chose it (Filter-Id, downloadable ACL), as at login.
            if s.authz.downloadable_acl.is_none()
                && s.authz.filter == was.vpn_filter
                && s.authz.filter != now.vpn_filter
            {
                tracing::info!(user = %s.username, index = s.index, "reload: filter {:?} -> {:?}", s.authz.filter, now.vpn_filter);
                s.authz.filter = now.vpn_filter.clone();
                s.filter.set_acl(now.vpn_filter.clone());
            }
            notes.push(format!(
                "session {} ({}): group-policy {gp} re-applied (filter {})",
                s.index,
                s.username,
                s.authz.filter.as_deref().unwrap_or("none")
            ));
        }
        // Timeouts and interim periods may have changed (a reload walks every
        // session anyway; the per-second reaper does not).
        let all: Vec<u64> = inner.sessions.keys().copied().collect();
        for i in all {
            inner.reschedule(i);
        }
        notes
    }

    /// Applies a new authorization to a running session (ISE CoA
    /// reauthenticate): the group-policy and its live parts (filter, timeouts),
    /// the SGT, and the filter or per-user ACL, with ASA's precedence
    /// (downloadable ACL > Filter-Id > the group-policy's vpn-filter). The
    /// address and tunnel stay. `downloadable` is an installed ACL name (the
    /// caller acquired it; it is released when replaced or the session ends).
    pub fn reauthorize(
        &self,
        index: u64,
        group_policy: Option<(String, EffectivePolicy)>,
        sgt: Option<u16>,
        filter_id: Option<String>,
        downloadable: Option<String>,
    ) -> bool {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(&index) else {
            if let (Some(p), Some(n)) = (&inner.policy, &downloadable) {
                p.release_downloadable(n);
            }
            return false;
        };
        if let Some((name, policy)) = group_policy {
            if name != s.group_policy {
                tracing::info!(user = %s.username, index, "reauthorization: group-policy {} -> {name}", s.group_policy);
            }
            s.group_policy = name;
            s.policy = policy;
        }
        let filter = filter_id.or_else(|| s.policy.vpn_filter.clone());
        let changes = auth::radius::Authorization {
            sgt,
            ..auth::radius::Authorization::default()
        };
        let had_downloadable = s.authz.downloadable_acl.is_some();
        if downloadable.is_some() || had_downloadable {
            inner.set_downloadable(index, downloadable.clone());
        }
        if downloadable.is_none()
            && let Some(s) = inner.sessions.get_mut(&index)
            && s.authz.filter != filter
        {
            tracing::info!(user = %s.username, index, "reauthorization: filter {:?} -> {:?}", s.authz.filter, filter);
            s.authz.filter = filter.clone();
            s.filter.set_acl(filter);
        }
        Inner::apply_coa(&mut inner, &[index], &changes);
        // The new policy's session timeout may be due sooner.
        inner.reschedule(index);
        true
    }

    pub fn list(&self, now: Instant) -> Vec<SessionView> {
        let inner = self.lock();
        inner
            .sessions
            .values()
            .map(|s| SessionView {
                index: s.index,
                username: s.username.clone(),
                tunnel_group: s.tunnel_group.clone(),
                group_policy: s.group_policy.clone(),
                public_ip: s.public_ip,
                assigned_v4: s.assigned_v4.as_ref().map(|a| a.0),
                assigned_v6: s.assigned_v6.as_ref().map(|a| a.0),
                bytes_tx: s.stats.bytes_tx.load(Ordering::Relaxed),
                bytes_rx: s.stats.bytes_rx.load(Ordering::Relaxed),
                login_time: s.login_time,
                duration: now.saturating_duration_since(s.login_instant),
                state: match s.state {
                    SessionState::Authenticated { .. } => "Authenticated",
                    SessionState::Connected { .. } => "Connected",
                    SessionState::Disconnected { .. } => "Disconnected",
                },
                sgt: s.authz.sgt,
                filter: s.authz.filter.clone(),
                audit_session_id: s.audit_session_id.clone(),
                pkts_tx_drop: s.filter.denied_to_client.load(Ordering::Relaxed),
                pkts_rx_drop: s.filter.denied_from_client.load(Ordering::Relaxed),
                dtls_cipher: *s
                    .stats
                    .dtls_cipher
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
                tls_cipher: *s.stats.tls_cipher.lock().unwrap_or_else(|e| e.into_inner()),
                protocol: match s.state {
                    SessionState::Connected { .. }
                        if s.stats.dtls_active.load(Ordering::Relaxed) =>
                    {
                        "AnyConnect-Parent SSL-Tunnel DTLS-Tunnel"
                    }
                    SessionState::Connected { .. } => "AnyConnect-Parent SSL-Tunnel",
                    _ => "AnyConnect-Parent",
                },
            })
            .collect()
    }

    /// What the metrics endpoint reads: connected sessions per (tunnel group,
    /// transport), traffic of live sessions, and free addresses per pool. The
    /// control-plane lock only: the dataplane never takes it.
    pub fn metrics_snapshot(&self) -> crate::metrics::SessionSnapshot {
        let inner = self.lock();
        let mut snap = crate::metrics::SessionSnapshot::default();
        for s in inner.sessions.values() {
            if let SessionState::Connected { .. } = s.state {
                let transport = if s.stats.dtls_active.load(Ordering::Relaxed) {
                    "dtls"
                } else {
                    "tls"
                };
                *snap
                    .connected
                    .entry((s.tunnel_group.clone(), transport))
                    .or_default() += 1;
            }
            snap.live.add(&s.stats);
        }
        for (name, p) in &inner.pools {
            snap.pool_free
                .push((name.clone(), p.size().saturating_sub(p.in_use() as u64)));
        }
        for (name, p) in &inner.pools6 {
            snap.pool_free
                .push((name.clone(), p.size().saturating_sub(p.in_use() as u64)));
        }
        snap
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Sessions created since start and the most held at once.
    pub fn totals(&self) -> crate::show::SessionTotals {
        let inner = self.lock();
        crate::show::SessionTotals {
            cumulative: inner.next_index - 1,
            peak: inner.peak,
        }
    }

    /// `show ip local pool NAME`: (first, last, mask, size, in use).
    pub fn pool_usage(&self, name: &str) -> Option<(Ipv4Addr, Ipv4Addr, Ipv4Addr, u64, usize)> {
        let inner = self.lock();
        let p = inner.pools.get(name)?;
        Some((p.first(), p.last(), p.mask, p.size(), p.in_use()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn acct_event(
    s: &Session,
    status: auth::radius::AcctStatusType,
    terminate_cause: Option<TerminateCause>,
    group: String,
    now: Instant,
) -> AcctEvent {
    let session_time = s
        .acct_started
        .map(|t| now.saturating_duration_since(t).as_secs() as u32)
        .unwrap_or(0);
    AcctEvent {
        status,
        terminate_cause,
        group,
        username: s.username.clone(),
        tunnel_group: s.tunnel_group.clone(),
        public_ip: s.public_ip,
        audit_session_id: s.audit_session_id.clone(),
        acct_session_id: s.acct_session_id.clone(),
        framed_ip: s.assigned_v4.as_ref().map(|a| a.0),
        framed_ipv6: s.assigned_v6.as_ref().map(|a| a.0),
        classes: s.authz.classes.clone(),
        counters: auth::radius::Counters {
            input_octets: s.stats.bytes_rx.load(Ordering::Relaxed),
            output_octets: s.stats.bytes_tx.load(Ordering::Relaxed),
            input_packets: s.stats.packets_rx.load(Ordering::Relaxed),
            output_packets: s.stats.packets_tx.load(Ordering::Relaxed),
        },
        session_time,
    }
}

impl Session {
    /// Why the session must end at `now`, if it must. ASA semantics: the
    /// session timeout counts from login whatever the state; an unused login
    /// cookie lives [`UNUSED_COOKIE_LIFETIME`]; a session whose tunnel dropped
    /// waits for its client for the idle timeout (default 30 min), then goes.
    /// The idle timeout of a live tunnel and DPD are the tunnel task's timers.
    fn due_end(&self, now: Instant) -> Option<EndReason> {
        let idle_grace = self
            .policy
            .vpn_idle_timeout
            .unwrap_or(Duration::from_secs(1800));
        match self.state {
            _ if self
                .policy
                .vpn_session_timeout
                .is_some_and(|t| now.saturating_duration_since(self.login_instant) >= t) =>
            {
                Some(EndReason::SessionTimeout)
            }
            SessionState::Authenticated { since }
                if now.saturating_duration_since(since) >= UNUSED_COOKIE_LIFETIME =>
            {
                Some(EndReason::CookieUnused)
            }
            SessionState::Disconnected { since }
                if now.saturating_duration_since(since) >= idle_grace =>
            {
                Some(EndReason::DisconnectedTimeout)
            }
            _ => None,
        }
    }

    /// The earliest instant at which [`Session::due_end`] can say yes or an
    /// Interim-Update is due (None: no timer runs, e.g. a connected session
    /// without session timeout or interim accounting).
    fn next_deadline(&self, interim: &BTreeMap<String, Duration>) -> Option<Instant> {
        let idle_grace = self
            .policy
            .vpn_idle_timeout
            .unwrap_or(Duration::from_secs(1800));
        let session = self
            .policy
            .vpn_session_timeout
            .and_then(|t| self.login_instant.checked_add(t));
        let state = match self.state {
            SessionState::Authenticated { since } => since.checked_add(UNUSED_COOKIE_LIFETIME),
            SessionState::Disconnected { since } => since.checked_add(idle_grace),
            SessionState::Connected { .. } => None,
        };
        let interim = match (self.acct_started, &self.authz.accounting_group) {
            (Some(_), Some(g)) => interim
                .get(g)
                .and_then(|every| self.last_interim.checked_add(*every)),
            _ => None,
        };
        [session, state, interim].into_iter().flatten().min()
    }
}

impl Inner {
    /// Puts session `index` in the reaper's queue at its next deadline (or
    /// takes it out: no timer, or no such session). Called wherever a
    /// deadline can move earlier; one that moves later only costs an early
    /// wake-up, which reschedules.
    fn reschedule(&mut self, index: u64) {
        let next = self
            .sessions
            .get(&index)
            .and_then(|s| s.next_deadline(&self.interim));
        if let Some(old) = self.wake_at.remove(&index) {
            self.wakeups.remove(&(old, index));
        }
        if let Some(t) = next {
            self.wake_at.insert(index, t);
            self.wakeups.insert((t, index));
        }
    }

    /// Indexes of the sessions all given selectors match (RFC 5176 section 3).
    fn select(&self, sel: &auth::radius::SessionSelectors) -> Vec<u64> {
        // Candidates from the most specific selector that has an index; each
        // is then checked against every selector given.
        let one = |i: Option<&u64>| i.copied().into_iter().collect::<Vec<u64>>();
        let candidates: Vec<u64> = if let Some(id) = &sel.acct_session_id {
            one(self.selectors.by_acct.get(id))
        } else if let Some(id) = &sel.audit_session_id {
            one(self.selectors.by_audit.get(id))
        } else if let Some(ip) = sel.framed_ip {
            one(self.selectors.by_v4.get(&ip))
        } else if let Some(u) = &sel.user_name {
            self.by_user
                .get(u)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default()
        } else {
            // Calling-Station-Id alone (or nothing, which callers refuse).
            self.sessions.keys().copied().collect()
        };
        candidates
            .iter()
            .filter_map(|i| self.sessions.get(i))
            .filter(|s| {
                sel.acct_session_id
                    .as_ref()
                    .is_none_or(|v| *v == s.acct_session_id)
                    && sel
                        .audit_session_id
                        .as_ref()
                        .is_none_or(|v| *v == s.audit_session_id)
                    && sel
                        .framed_ip
                        .is_none_or(|ip| s.assigned_v4.as_ref().is_some_and(|a| a.0 == ip))
                    && sel.user_name.as_ref().is_none_or(|v| *v == s.username)
                    // ASA sends the client's public address as
                    // Calling-Station-Id (auth::radius::request).
                    && sel
                        .calling_station_id
                        .as_ref()
                        .is_none_or(|v| *v == s.public_ip.to_string())
            })
            .map(|s| s.index)
            .collect()
    }

    /// Makes `name` (already acquired by the caller, or None) session `index`'s
    /// per-user ACL and filter, releasing the one it had.
    fn set_downloadable(&mut self, index: u64, name: Option<String>) {
        let policy = self.policy.clone();
        let Some(s) = self.sessions.get_mut(&index) else {
            if let (Some(p), Some(n)) = (&policy, &name) {
                p.release_downloadable(n);
            }
            return;
        };
        let old = std::mem::replace(&mut s.authz.downloadable_acl, name.clone());
        if let Some(n) = &name {
            tracing::info!(user = %s.username, index, "CoA: filter {:?} -> downloadable {n}", s.authz.filter);
            s.authz.filter = Some(n.clone());
            s.filter.set_acl(Some(n.clone()));
        } else {
            // Back to the group-policy's filter.
            s.authz.filter = s.policy.vpn_filter.clone();
            s.filter.set_acl(s.authz.filter.clone());
        }
        if let (Some(p), Some(o)) = (&policy, old) {
            p.release_downloadable(&o);
        }
    }

    /// SGT and Filter-Id of a CoA on the given sessions.
    fn apply_coa(&mut self, matches: &[u64], changes: &auth::radius::Authorization) {
        let inner_policy = self.policy.clone();
        for i in matches {
            let Some(s) = self.sessions.get_mut(i) else {
                continue;
            };
            if let Some(sgt) = changes.sgt {
                tracing::info!(user = %s.username, index = i, "CoA: security group tag {:?} -> {sgt}", s.authz.sgt);
                s.authz.sgt = Some(sgt);
                s.filter.set_sgt(Some(sgt));
                if let (Some(p), Some((addr, _, _))) = (&inner_policy, &s.assigned_v4) {
                    p.set_session(IpAddr::V4(*addr), Some(sgt));
                }
                if let (Some(p), Some((addr, _, _))) = (&inner_policy, &s.assigned_v6) {
                    p.set_session(IpAddr::V6(*addr), Some(sgt));
                }
            }
            if let Some(f) = &changes.filter_id {
                tracing::info!(user = %s.username, index = i, "CoA: filter {:?} -> {f}", s.authz.filter);
                s.authz.filter = Some(f.clone());
                s.filter.set_acl(Some(f.clone()));
            }
        }
    }

    /// Removes a session, frees its address and tells its connection.
    fn end(&mut self, index: u64, reason: EndReason) {
        let Some(s) = self.sessions.remove(&index) else {
            return;
        };
        if let Some(t) = self.wake_at.remove(&index) {
            self.wakeups.remove(&(t, index));
        }
        self.by_cookie.remove(&s.cookie_hash);
        self.selectors.remove(&s);
        crate::metrics::ENDED_SESSIONS.add(&s.stats);
        if let Some(v) = self.by_user.get_mut(&s.username) {
            v.remove(&index);
            if v.is_empty() {
                self.by_user.remove(&s.username);
            }
        }
        if let (Some(p), Some((addr, _, _))) = (&self.policy, &s.assigned_v4) {
            p.set_session(IpAddr::V4(*addr), None);
        }
        if let (Some(p), Some(name)) = (&self.policy, &s.authz.downloadable_acl) {
            p.release_downloadable(name);
        }
        if let (Some(p), Some((addr, _, _))) = (&self.policy, &s.assigned_v6) {
            p.set_session(IpAddr::V6(*addr), None);
        }
        if let Some((addr, _, pool)) = &s.assigned_v4
            && let Some(p) = self.pools.get_mut(pool)
        {
            p.release(*addr);
        }
        if let Some((addr, _, pool)) = &s.assigned_v6
            && let Some(p) = self.pools6.get_mut(pool)
        {
            p.release(*addr);
        }
        if let Some(c) = &s.control {
            let _ = c.send(SessionCommand::Logoff(reason.clone()));
        }
        if s.cluster_fence > 0
            && let Some(tx) = &self.cluster
        {
            for ev in clustered::ended_events(&s) {
                let _ = tx.send(ev);
            }
        }
        // A Stop for every session that had a Start.
        if let (Some(_), Some(group)) = (s.acct_started, s.authz.accounting_group.clone()) {
            let ev = acct_event(
                &s,
                auth::radius::AcctStatusType::Stop,
                Some(reason.terminate_cause()),
                group,
                Instant::now(),
            );
            if let Some(tx) = &self.events {
                let _ = tx.send(ev);
            }
        }
        {
            use crate::syslog::{Message, emit};
            if matches!(s.state, SessionState::Connected { .. }) {
                // The headend closes a live tunnel: 722037 with the reason in
                // 113019's words [U: ASA's 722037 reasons besides `DPD
                // failure` are not documented]. A client's own logout is not
                // the headend closing.
                if !matches!(reason, EndReason::UserLogout(_)) {
                    emit(Message::SvcClosing {
                        group: s.group_policy.clone(),
                        user: s.username.clone(),
                        ip: s.public_ip,
                        reason: reason.to_string(),
                    });
                }
                s.stats.dtls_terminated();
                emit(Message::SvcTerminated {
                    group: s.group_policy.clone(),
                    user: s.username.clone(),
                    ip: s.public_ip,
                    udp: false,
                });
            }
            emit(Message::WebVpnTerminated {
                group_policy: s.group_policy.clone(),
                user: s.username.clone(),
                ip: s.public_ip,
                reason: reason.to_string(),
            });
            emit(Message::SessionDisconnected {
                group: s.group_policy.clone(),
                user: s.username.clone(),
                ip: s.public_ip,
                duration: Instant::now().saturating_duration_since(s.login_instant),
                bytes_tx: s.stats.bytes_tx.load(Ordering::Relaxed),
                bytes_rx: s.stats.bytes_rx.load(Ordering::Relaxed),
                reason: reason.to_string(),
            });
        }
        tracing::info!(
            user = %s.username,
            index,
            tunnel_group = %s.tunnel_group,
            address = ?s.assigned_v4.as_ref().map(|a| a.0),
            address6 = ?s.assigned_v6.as_ref().map(|a| a.0),
            bytes_tx = s.stats.bytes_tx.load(Ordering::Relaxed),
            bytes_rx = s.stats.bytes_rx.load(Ordering::Relaxed),
            "session ended: {reason}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
ip local pool P 198.18.100.10-198.18.100.11 mask 255.255.255.0
group-policy GP internal
group-policy GP attributes
 vpn-simultaneous-logins 2
 vpn-idle-timeout 1
 vpn-session-timeout 10
";

    fn table() -> (SessionTable, Config) {
        let cfg = crate::config::parse_str(CFG, "test.cfg").expect("config");
        (SessionTable::new(&cfg), cfg)
    }

    #[test]
    fn audit_session_ids_take_the_nas_address_set_later() {
        let (t, _) = table();
        // No aaa-server at start: zeros, then the prefix a reload's first group gives.
        assert!(t.new_audit_session_id().starts_with("00000000"));
        t.set_nas_ip(Ipv4Addr::new(198, 18, 1, 1));
        let id = t.new_audit_session_id();
        assert_eq!(id.len(), 24);
        assert!(id.starts_with("c6120101"), "{id}");
    }

    fn login(t: &SessionTable, cfg: &Config, user: &str, now: Instant) -> (u64, String) {
        login_with(t, cfg, user, SessionAuthz::default(), now)
    }

    /// A login to GP / pool P with what RADIUS authorized.
    fn login_with(
        t: &SessionTable,
        cfg: &Config,
        user: &str,
        authz: SessionAuthz,
        now: Instant,
    ) -> (u64, String) {
        t.login(
            NewSession {
                username: user,
                tunnel_group: "TG",
                group_policy: "GP",
                policy: cfg.effective_policy("GP"),
                pools: vec!["P".into()],
                public_ip: "198.18.0.2".parse().unwrap(),
                authz,
                audit_session_id: t.new_audit_session_id(),
            },
            now,
        )
        .expect("login")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_start_is_on_disk_when_attach_returns_and_before_it_is_sent() {
        let (t, cfg) = table();
        let dir =
            std::env::temp_dir().join(format!("headend-attach-journal-{}", std::process::id()));
        let path = dir.join("accounting.journal");
        let (j, _) = crate::acct_journal::AcctJournal::open(&path, 1 << 20).unwrap();
        let j = Arc::new(j);
        t.set_accounting_journal(j.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        t.set_accounting(tx, Ipv4Addr::new(198, 18, 1, 1));
        let authz = SessionAuthz {
            accounting_group: Some("ISE".into()),
            ..SessionAuthz::default()
        };
        let (_, cookie) = login_with(&t, &cfg, "alice", authz, Instant::now());
        t.attach(&cookie, ip("198.18.0.2"), None, false).unwrap();
        // Synced by attach itself (after it released the table's lock).
        assert_eq!(j.syncs(), 1);
        let start = rx.try_recv().expect("a Start event");
        assert_eq!(start.status, auth::radius::AcctStatusType::Start);
        let open = crate::acct_journal::read_open_sessions(&path).unwrap();
        assert!(open.0.contains_key(&start.acct_session_id), "{open:?}");
        // The accounting task's sync before it sends finds it on disk.
        j.sync_written().unwrap();
        assert_eq!(j.syncs(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_cookie_is_refused() {
        let (t, _) = table();
        assert_eq!(
            t.attach("nope", ip("198.18.0.2"), None, false).unwrap_err(),
            AttachError::BadCookie
        );
    }

    #[test]
    fn reconnect_keeps_the_address_and_supersedes_the_old_connection() {
        let (t, cfg) = table();
        let now = Instant::now();
        let (_, cookie) = login(&t, &cfg, "alice", now);
        let mut a1 = t.attach(&cookie, ip("198.18.0.2"), None, false).unwrap();
        assert_eq!(a1.address, "198.18.100.10".parse::<Ipv4Addr>().unwrap());
        assert_eq!(a1.netmask, "255.255.255.0".parse::<Ipv4Addr>().unwrap());
        // TCP lost: the session waits.
        t.detach(a1.index, a1.generation, Detach::Lost("tcp".into()), now);
        assert_eq!(t.list(now)[0].state, "Disconnected");
        let a2 = t.attach(&cookie, ip("198.18.0.3"), None, false).unwrap();
        assert_eq!(a2.address, a1.address);
        assert_eq!(t.list(now)[0].public_ip, ip("198.18.0.3"));
        // A third connection supersedes the second, which is told so; the
        // superseded connection's late detach changes nothing.
        let a3 = t.attach(&cookie, ip("198.18.0.3"), None, false).unwrap();
        assert_eq!(a3.address, a1.address);
        t.detach(
            a2.index,
            a2.generation,
            Detach::End(EndReason::IdleTimeout),
            now,
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.list(now)[0].state, "Connected");
        assert!(a1.control.try_recv().is_err());
    }

    #[test]
    fn logout_frees_the_address_and_kills_the_cookie() {
        let (t, cfg) = table();
        let now = Instant::now();
        let (_, c1) = login(&t, &cfg, "alice", now);
        let a1 = t.attach(&c1, ip("198.18.0.2"), None, false).unwrap();
        t.detach(
            a1.index,
            a1.generation,
            Detach::End(EndReason::UserLogout("bye".into())),
            now,
        );
        assert!(t.is_empty());
        assert_eq!(
            t.attach(&c1, ip("198.18.0.2"), None, false).unwrap_err(),
            AttachError::BadCookie
        );
        // Both pool addresses are available again.
        let (_, c2) = login(&t, &cfg, "bob", now);
        let (_, c3) = login(&t, &cfg, "carol", now);
        let b = t
            .attach(&c2, ip("198.18.0.2"), None, false)
            .unwrap()
            .address;
        let c = t
            .attach(&c3, ip("198.18.0.2"), None, false)
            .unwrap()
            .address;
        assert_ne!(b, c);
    }

    #[test]
    fn pool_exhaustion_is_reported() {
        let (t, cfg) = table();
        let now = Instant::now();
        for u in ["a", "b"] {
            let (_, c) = login(&t, &cfg, u, now);
            t.attach(&c, ip("198.18.0.2"), None, false).unwrap();
        }
        let (_, c) = login(&t, &cfg, "c", now);
        assert_eq!(
            t.attach(&c, ip("198.18.0.2"), None, false).unwrap_err(),
            AttachError::PoolExhausted("P".into())
        );
    }

    #[test]
    fn simultaneous_logins_log_off_the_oldest() {
        let (t, cfg) = table();
        let now = Instant::now();
        let (i1, c1) = login(&t, &cfg, "alice", now);
        let mut a1 = t.attach(&c1, ip("198.18.0.2"), None, false).unwrap();
        let (i2, _) = login(&t, &cfg, "alice", now);
        let (i3, _) = login(&t, &cfg, "alice", now);
        let left: Vec<u64> = t.list(now).iter().map(|s| s.index).collect();
        assert_eq!(left, vec![i2, i3]);
        assert!(!left.contains(&i1));
        assert_eq!(
            a1.control.try_recv().unwrap(),
            SessionCommand::Logoff(EndReason::SimultaneousLogins)
        );
    }

    #[test]
    fn session_limit_refuses_the_next_login_and_frees_with_logoff() {
        let cfg = crate::config::parse_str(
            "ip local pool P 198.18.100.10-198.18.100.20 mask 255.255.255.0\n\
             vpn-sessiondb max-session-limit 5\n\
             vpn-sessiondb max-anyconnect-premium-or-essentials-limit 2\n\
             group-policy GP internal\n",
            "t.cfg",
        )
        .unwrap();
        let t = SessionTable::new(&cfg);
        let now = Instant::now();
        let try_login = |user: &str| {
            t.login(
                NewSession {
                    username: user,
                    tunnel_group: "TG",
                    group_policy: "GP",
                    policy: cfg.effective_policy("GP"),
                    pools: vec!["P".into()],
                    public_ip: ip("198.18.0.2"),
                    authz: SessionAuthz::default(),
                    audit_session_id: t.new_audit_session_id(),
                },
                now,
            )
        };
        let (first, _) = try_login("u1").unwrap();
        try_login("u2").unwrap();
        assert_eq!(try_login("u3"), Err(LoginError::SessionLimit(2)));
        assert_eq!(
            LoginError::SessionLimit(2).to_string(),
            "session could not be established: session limit of 2 reached"
        );
        assert_eq!(t.len(), 2);
        t.logoff(LogoffSelector::Index(first), EndReason::AdminLogoff);
        assert!(try_login("u3").is_ok());
    }

    #[test]
    fn zero_simultaneous_logins_refuses() {
        let cfg = crate::config::parse_str(
            "ip local pool P 198.18.100.10-198.18.100.11 mask 255.255.255.0\n\
             group-policy GP internal\ngroup-policy GP attributes\n vpn-simultaneous-logins 0\n",
            "t.cfg",
        )
        .unwrap();
        let t = SessionTable::new(&cfg);
        let r = t.login(
            NewSession {
                username: "alice",
                tunnel_group: "TG",
                group_policy: "GP",
                policy: cfg.effective_policy("GP"),
                pools: vec!["P".into()],
                public_ip: ip("198.18.0.2"),
                authz: SessionAuthz::default(),
                audit_session_id: t.new_audit_session_id(),
            },
            Instant::now(),
        );
        assert_eq!(r.unwrap_err(), LoginError::LoginsDisabled);
    }

    const CFG_FREE: &str = "\
ip local pool P 198.18.100.1-198.18.100.200 mask 255.255.255.0
group-policy FREE internal
group-policy FREE attributes
 vpn-simultaneous-logins 3
";

    #[test]
    fn reaper_queue_holds_only_sessions_whose_timer_runs() {
        // Connected sessions without a session timeout have no timer of the
        // reaper's: a tick does not look at them at all (issue 12).
        let cfg = crate::config::parse_str(CFG_FREE, "test.cfg").expect("config");
        let t = SessionTable::new(&cfg);
        let t0 = Instant::now();
        let new = |user: String| NewSession {
            username: Box::leak(user.into_boxed_str()),
            tunnel_group: "TG",
            group_policy: "FREE",
            policy: cfg.effective_policy("FREE"),
            pools: vec!["P".into()],
            public_ip: ip("198.18.0.2"),
            authz: SessionAuthz::default(),
            audit_session_id: t.new_audit_session_id(),
        };
        let mut live = Vec::new();
        for n in 0..50 {
            let (_, c) = t.login(new(format!("u{n}")), t0).unwrap();
            live.push(t.attach(&c, ip("198.18.0.2"), None, false).unwrap());
        }
        t.login(new("unused".into()), t0).unwrap();
        assert_eq!(t.reap(t0 + Duration::from_secs(1)), 0);
        assert_eq!(t.pending_wakeups(), 1);
        assert_eq!(t.reap(t0 + UNUSED_COOKIE_LIFETIME), 1);
        assert_eq!(t.pending_wakeups(), 0);
        assert_eq!(t.len(), 50);
        // A lost tunnel starts the disconnected grace (idle timeout, 30 min by
        // default): that session, and only it, is queued.
        let t1 = t0 + Duration::from_secs(200);
        let a = &live[7];
        t.detach(a.index, a.generation, Detach::Lost("tcp".into()), t1);
        assert_eq!(t.pending_wakeups(), 1);
        let grace = cfg
            .effective_policy("FREE")
            .vpn_idle_timeout
            .unwrap_or(Duration::from_secs(1800));
        assert_eq!(t.reap(t1 + grace - Duration::from_secs(1)), 0);
        assert_eq!(t.reap(t1 + grace), 1);
        assert_eq!(t.len(), 49);
        assert_eq!(t.pending_wakeups(), 0);
        // Reconnecting before the grace ends takes the session out again.
        let b = &live[8];
        t.detach(b.index, b.generation, Detach::Lost("tcp".into()), t1);
        assert_eq!(t.pending_wakeups(), 1);
        assert_eq!(
            t.logoff(LogoffSelector::Index(b.index), EndReason::AdminLogoff),
            1
        );
        assert_eq!(t.pending_wakeups(), 0);
    }

    #[test]
    fn reaper_follows_deadlines_that_move_earlier() {
        let (t, cfg) = table();
        let t0 = Instant::now();
        // Connected, queued at its session timeout (10 min); the tunnel drops
        // at 30 s: gone after the idle timeout (1 min), not at 10 min.
        let (_, c) = login(&t, &cfg, "a", t0);
        let a = t.attach(&c, ip("198.18.0.2"), None, false).unwrap();
        assert_eq!(t.reap(t0 + Duration::from_secs(30)), 0);
        t.detach(
            a.index,
            a.generation,
            Detach::Lost("tcp".into()),
            t0 + Duration::from_secs(30),
        );
        assert_eq!(t.reap(t0 + Duration::from_secs(89)), 0);
        assert_eq!(t.reap(t0 + Duration::from_secs(90)), 1);
        // A reauthorization with a shorter session timeout (2 min).
        let (_, c) = login(&t, &cfg, "b", t0);
        let mut b = t.attach(&c, ip("198.18.0.2"), None, false).unwrap();
        assert_eq!(t.reap(t0 + Duration::from_secs(100)), 0);
        let mut short = cfg.effective_policy("GP");
        short.vpn_session_timeout = Some(Duration::from_secs(120));
        assert!(t.reauthorize(b.index, Some(("GP".into(), short)), None, None, None));
        assert_eq!(t.reap(t0 + Duration::from_secs(119)), 0);
        assert_eq!(t.reap(t0 + Duration::from_secs(120)), 1);
        assert_eq!(
            b.control.try_recv().unwrap(),
            SessionCommand::Logoff(EndReason::SessionTimeout)
        );
        assert!(t.is_empty());
        assert_eq!(t.pending_wakeups(), 0);
    }

    #[test]
    fn reaper_ends_disconnected_unused_and_expired_sessions() {
        let (t, cfg) = table();
        let t0 = Instant::now();
        // Never connected: cookie expires.
        login(&t, &cfg, "unused", t0);
        // Disconnected: idle timeout (1 min) grace.
        let (_, c) = login(&t, &cfg, "gone", t0);
        let a = t.attach(&c, ip("198.18.0.2"), None, false).unwrap();
        t.detach(a.index, a.generation, Detach::Lost("tcp".into()), t0);
        // Connected: session timeout (10 min).
        let (_, c) = login(&t, &cfg, "busy", t0);
        let mut busy = t.attach(&c, ip("198.18.0.2"), None, false).unwrap();

        assert_eq!(t.reap(t0 + Duration::from_secs(59)), 0);
        assert_eq!(t.reap(t0 + Duration::from_secs(61)), 1); // gone
        assert_eq!(t.reap(t0 + UNUSED_COOKIE_LIFETIME), 1); // unused
        assert_eq!(t.len(), 1);
        assert_eq!(t.reap(t0 + Duration::from_secs(600)), 1); // busy
        assert_eq!(
            busy.control.try_recv().unwrap(),
            SessionCommand::Logoff(EndReason::SessionTimeout)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn admin_logoff_by_name_and_index() {
        let (t, cfg) = table();
        let now = Instant::now();
        let (i1, _) = login(&t, &cfg, "alice", now);
        login(&t, &cfg, "bob", now);
        assert_eq!(
            t.logoff(LogoffSelector::Index(999), EndReason::AdminLogoff),
            0
        );
        assert_eq!(
            t.logoff(LogoffSelector::Index(i1), EndReason::AdminLogoff),
            1
        );
        assert_eq!(
            t.logoff(LogoffSelector::Name("bob"), EndReason::AdminLogoff),
            1
        );
        assert!(t.is_empty());
    }

    #[test]
    fn cookies_are_distinct_and_alphanumeric() {
        let (t, cfg) = table();
        let now = Instant::now();
        let (_, a) = login(&t, &cfg, "alice", now);
        let (_, b) = login(&t, &cfg, "bob", now);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    const CFG6: &str = "\
ip local pool P 198.18.100.10-198.18.100.20 mask 255.255.255.0
ipv6 local pool P6 fd00:100::10/64 2
ipv6 local pool TG6 fd00:200::10/64 10
group-policy GP internal
group-policy GP attributes
 ipv6-address-pools value P6
group-policy NOV6 internal
tunnel-group TG type remote-access
tunnel-group TG general-attributes
 address-pool P
 ipv6-address-pool TG6
";

    fn login6(t: &SessionTable, cfg: &Config, gp: &str, user: &str) -> String {
        t.login(
            NewSession {
                username: user,
                tunnel_group: "TG",
                group_policy: gp,
                policy: cfg.effective_policy(gp),
                pools: vec!["P".into()],
                public_ip: ip("198.18.0.2"),
                authz: SessionAuthz::default(),
                audit_session_id: t.new_audit_session_id(),
            },
            Instant::now(),
        )
        .expect("login")
        .1
    }

    #[test]
    fn ipv6_address_from_the_group_policy_pool_kept_on_reconnect_freed_at_end() {
        let cfg = crate::config::parse_str(CFG6, "t.cfg").unwrap();
        let t = SessionTable::new(&cfg);
        let now = Instant::now();
        let c = login6(&t, &cfg, "GP", "alice");
        let a1 = t.attach(&c, ip("198.18.0.2"), None, true).unwrap();
        let want: Ipv6Addr = "fd00:100::10".parse().unwrap();
        assert_eq!(a1.address6, Some((want, 64)));
        assert_eq!(t.list(now)[0].assigned_v6, Some(want));
        t.detach(a1.index, a1.generation, Detach::Lost("tcp".into()), now);
        let a2 = t.attach(&c, ip("198.18.0.2"), None, true).unwrap();
        assert_eq!(a2.address6, a1.address6);
        // A second user gets the next address; the pool (2 addresses) then runs
        // dry and a third user goes on with IPv4 only.
        let c2 = login6(&t, &cfg, "GP", "bob");
        let b = t.attach(&c2, ip("198.18.0.3"), None, true).unwrap();
        assert_eq!(b.address6, Some(("fd00:100::11".parse().unwrap(), 64)));
        let c3 = login6(&t, &cfg, "GP", "carol");
        let e = t.attach(&c3, ip("198.18.0.4"), None, true).unwrap();
        assert_eq!(e.address6, None);
        assert!(lab_v4(&e.address));
        // Logout frees alice's v6 address: carol's next connection gets it.
        t.detach(
            a2.index,
            a2.generation,
            Detach::End(EndReason::UserLogout(String::new())),
            now,
        );
        let e2 = t.attach(&c3, ip("198.18.0.4"), None, true).unwrap();
        assert_eq!(e2.address6, Some((want, 64)));
    }

    fn lab_v4(a: &Ipv4Addr) -> bool {
        a.octets()[..3] == [198, 18, 100]
    }

    #[test]
    fn ipv6_only_when_the_client_asks_and_tunnel_group_pool_as_fallback() {
        let cfg = crate::config::parse_str(CFG6, "t.cfg").unwrap();
        let t = SessionTable::new(&cfg);
        let now = Instant::now();
        // An IPv4-only client (openconnect --disable-ipv6) takes nothing from P6.
        let c = login6(&t, &cfg, "GP", "alice");
        let a = t.attach(&c, ip("198.18.0.2"), None, false).unwrap();
        assert_eq!(a.address6, None);
        assert_eq!(t.list(now)[0].assigned_v6, None);
        // No ipv6-address-pools in the group policy: the tunnel group's pool.
        let c = login6(&t, &cfg, "NOV6", "bob");
        let b = t.attach(&c, ip("198.18.0.3"), None, true).unwrap();
        assert_eq!(b.address6, Some(("fd00:200::10".parse().unwrap(), 64)));
    }

    #[test]
    fn coa_inacl_and_reauthorization_change_the_filter_live() {
        let cfg = crate::config::parse_str(
            &format!(
                "{CFG}access-list F1 extended permit ip any any\naccess-list F2 extended deny ip any any\ngroup-policy GP attributes\n vpn-filter value F1\ngroup-policy GP2 internal\ngroup-policy GP2 attributes\n vpn-filter value F2\n"
            ),
            "test.cfg",
        )
        .expect("config");
        let t = SessionTable::new(&cfg);
        let policy = Arc::new(crate::policy_state::PolicyState::new(&cfg).unwrap());
        t.set_policy(policy.clone());
        let now = Instant::now();
        let (index, _) = t
            .login(
                NewSession {
                    username: "alice",
                    tunnel_group: "TG",
                    group_policy: "GP",
                    policy: cfg.effective_policy("GP"),
                    pools: vec!["P".into()],
                    public_ip: ip("198.18.0.2"),
                    authz: SessionAuthz {
                        filter: Some("F1".into()),
                        ..SessionAuthz::default()
                    },
                    audit_session_id: t.new_audit_session_id(),
                },
                now,
            )
            .expect("login");
        let coa = |inacl: &[&str]| DynAuthRequest {
            kind: DynAuthKind::Coa,
            from: "198.18.1.20:3799".parse().unwrap(),
            identifier: 1,
            selectors: auth::radius::SessionSelectors {
                user_name: Some("alice".into()),
                ..Default::default()
            },
            changes: auth::radius::Authorization {
                inacl: inacl.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            command: None,
        };
        let filter = || t.list(now)[0].filter.clone();
        // A bad entry: NAK, nothing changes.
        assert_eq!(
            t.dynamic_authorization(&coa(&["permit bogus any any"]), |_| true),
            Err(ErrorCause::InvalidAttributeValue)
        );
        assert_eq!(filter().as_deref(), Some("F1"));
        // Good entries: the per-user ACL becomes the filter.
        t.dynamic_authorization(&coa(&["permit icmp any any", "deny ip any any"]), |_| true)
            .unwrap();
        let dacl = filter().unwrap();
        assert!(dacl.starts_with("AAA-user-alice-"), "{dacl}");
        assert!(policy.has_downloadable(&dacl));
        // Reauthorization into GP2 without a per-user ACL: GP2's vpn-filter, the
        // per-user ACL released, SGT set; same session.
        assert!(t.reauthorize(
            index,
            Some(("GP2".into(), cfg.effective_policy("GP2"))),
            Some(20),
            None,
            None
        ));
        let v = &t.list(now)[0];
        assert_eq!(
            (v.index, v.group_policy.as_str(), v.sgt),
            (index, "GP2", Some(20))
        );
        assert_eq!(v.filter.as_deref(), Some("F2"));
        assert!(!policy.has_downloadable(&dacl));
        // Filter-Id beats the group-policy's vpn-filter.
        assert!(t.reauthorize(index, None, None, Some("F1".into()), None));
        assert_eq!(filter().as_deref(), Some("F1"));
        assert!(!t.reauthorize(999, None, None, None, None));
    }

    /// Logs `user` in with `sgt` and connects it; returns (index, address).
    fn up_with_sgt(t: &SessionTable, cfg: &Config, user: &str, sgt: u16) -> (u64, IpAddr) {
        let (index, cookie) = t
            .login(
                NewSession {
                    username: user,
                    tunnel_group: "TG",
                    group_policy: "GP",
                    policy: cfg.effective_policy("GP"),
                    pools: vec!["P".into()],
                    public_ip: ip("198.18.0.2"),
                    authz: SessionAuthz {
                        sgt: Some(sgt),
                        ..SessionAuthz::default()
                    },
                    audit_session_id: t.new_audit_session_id(),
                },
                Instant::now(),
            )
            .expect("login");
        let a = t
            .attach(&cookie, ip("198.18.0.2"), None, false)
            .expect("attach");
        (index, IpAddr::V4(a.address))
    }

    #[test]
    fn session_sgt_bindings_follow_connect_coa_reconnect_and_logout_one_at_a_time() {
        let cfg =
            crate::config::parse_str(&CFG.replace("198.18.100.11", "198.18.100.40"), "test.cfg")
                .expect("config");
        let t = SessionTable::new(&cfg);
        let policy = Arc::new(crate::policy_state::PolicyState::new(&cfg).unwrap());
        t.set_policy(policy.clone());
        let sgt_of = |a: IpAddr| policy.handle.load().sgts().lookup(a);
        let bound = || policy.handle.load().session_sgts.len();
        let users: Vec<(u64, IpAddr)> = (0..20)
            .map(|i| up_with_sgt(&t, &cfg, &format!("u{i}"), 100 + i as u16))
            .collect();
        assert_eq!(bound(), 20);
        for (i, (_, a)) in users.iter().enumerate() {
            assert_eq!(sgt_of(*a), Some(100 + i as u16), "{a}");
        }
        // A CoA changes one session's binding and no other.
        let g0 = policy.handle.load().generation;
        let (i5, a5) = users[5];
        let coa = DynAuthRequest {
            kind: DynAuthKind::Coa,
            from: "198.18.1.20:3799".parse().unwrap(),
            identifier: 1,
            selectors: auth::radius::SessionSelectors {
                framed_ip: Some(match a5 {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(_) => unreachable!(),
                }),
                ..Default::default()
            },
            changes: auth::radius::Authorization {
                sgt: Some(7),
                ..Default::default()
            },
            command: None,
        };
        t.dynamic_authorization(&coa, |_| true).unwrap();
        assert_eq!(sgt_of(a5), Some(7));
        assert_eq!(policy.handle.load().generation, g0 + 1, "one publish");
        assert_eq!(bound(), 20);
        for (i, (_, a)) in users.iter().enumerate().filter(|(i, _)| *i != 5) {
            assert_eq!(sgt_of(*a), Some(100 + i as u16), "{a}");
        }
        // Losing the tunnel keeps the binding (the session waits for its
        // client); logoff removes exactly that one.
        let SessionState::Connected { generation } = t.lock().sessions[&i5].state else {
            panic!("connected")
        };
        t.detach(i5, generation, Detach::Lost("test".into()), Instant::now());
        assert_eq!(sgt_of(a5), Some(7));
        assert_eq!(
            t.logoff(LogoffSelector::Index(i5), EndReason::AdminLogoff),
            1
        );
        assert_eq!(sgt_of(a5), None);
        assert_eq!(bound(), 19);
        assert_eq!(
            t.logoff(LogoffSelector::Name("u3"), EndReason::AdminLogoff),
            1
        );
        assert_eq!(sgt_of(users[3].1), None);
        assert_eq!(sgt_of(users[4].1), Some(104));
        // The next login's address gets its own SGT, the others keep theirs.
        let (_, again) = up_with_sgt(&t, &cfg, "new", 300);
        assert_eq!(sgt_of(again), Some(300));
        assert_eq!(bound(), 19);
        assert_eq!(sgt_of(users[19].1), Some(119));
        assert_eq!(t.logoff(LogoffSelector::All, EndReason::AdminLogoff), 19);
        assert_eq!(bound(), 0);
    }

    #[test]
    fn coa_selectors_find_their_session_by_index_and_check_every_selector() {
        let cfg =
            crate::config::parse_str(&CFG.replace("198.18.100.11", "198.18.100.40"), "test.cfg")
                .expect("config");
        let t = SessionTable::new(&cfg);
        let (a, _) = up_with_sgt(&t, &cfg, "alice", 10);
        let (b, addr_b) = up_with_sgt(&t, &cfg, "bob", 11);
        let (acct_b, audit_b) = {
            let inner = t.lock();
            let s = &inner.sessions[&b];
            (s.acct_session_id.clone(), s.audit_session_id.clone())
        };
        let sel = |f: &dyn Fn(&mut auth::radius::SessionSelectors)| {
            let mut s = auth::radius::SessionSelectors::default();
            f(&mut s);
            t.select(&s)
        };
        let v4 = match addr_b {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!(),
        };
        assert_eq!(sel(&|s| s.acct_session_id = Some(acct_b.clone())), vec![b]);
        assert_eq!(
            sel(&|s| s.audit_session_id = Some(audit_b.clone())),
            vec![b]
        );
        assert_eq!(sel(&|s| s.framed_ip = Some(v4)), vec![b]);
        assert_eq!(sel(&|s| s.user_name = Some("alice".into())), vec![a]);
        assert_eq!(
            sel(&|s| s.calling_station_id = Some("198.18.0.2".into())),
            vec![a, b]
        );
        assert!(sel(&|s| s.calling_station_id = Some("198.18.0.3".into())).is_empty());
        // Every selector given must match: bob's id with alice's name is nobody.
        assert!(
            sel(&|s| {
                s.acct_session_id = Some(acct_b.clone());
                s.user_name = Some("alice".into());
            })
            .is_empty()
        );
        assert!(sel(&|s| s.acct_session_id = Some("nope".into())).is_empty());
        // Gone after logout, and the indexes with it.
        t.logoff(LogoffSelector::Name("bob"), EndReason::AdminLogoff);
        assert!(sel(&|s| s.audit_session_id = Some(audit_b.clone())).is_empty());
        assert!(sel(&|s| s.framed_ip = Some(v4)).is_empty());
        let inner = t.lock();
        assert_eq!(
            (
                inner.selectors.by_acct.len(),
                inner.selectors.by_audit.len(),
                inner.selectors.by_v4.len()
            ),
            (1, 1, 1)
        );
    }
}

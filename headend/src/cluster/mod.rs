//! Headend cluster (issue 19): nodes share their sessions in Redis so any node can
//! take over any session with the same address, SGT, filter and accounting
//! session. Off unless `headend run --cluster redis://… --node-id NAME`.
//!
//! Only the control plane talks to Redis: a login, a CONNECT, a session's end, and
//! a periodic write-back of every owned session (lease renewal, counters
//! checkpoint, fencing check). Packets never wait for it.
//!
//! Ownership: a node owns a session with a lease (`owner` key, PX) and a fencing
//! token that grows with every new owner. A CONNECT with a cookie this node does
//! not know takes the session over when the owner's lease expired or its node
//! heartbeat is gone; the old owner, if it comes back, learns from its next
//! write-back that the token moved on and drops the session at once (no Stop,
//! no address release: the new owner has both).
//!
//! Redis unreachable: established sessions keep forwarding (nothing per packet
//! needs it); new logins and takeovers are refused with a clear message, since
//! an address handed out without the cluster could be handed out twice. When
//! Redis is back, the write-back puts every live session back (also into an
//! empty store after a restart without persistence; allocations wait two leases
//! for that, see `keys::REFILL_GRACE_LEASES`).

pub mod announce;
pub mod keys;
pub mod lb;
pub mod neigh;
pub mod record;
pub mod routing;
pub mod saml;
pub mod show;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::sessions::SessionTable;
use keys::{OwnOutcome, RenewOutcome};
use record::SessionRecord;

/// Default lease of a node on its sessions (and of its heartbeat).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// How long a record outlives its last write-back: a session whose owner died
/// and whose client never came back is forgotten after this (ASA's default
/// vpn-idle-timeout, 30 minutes).
pub const RECORD_TTL: Duration = Duration::from_secs(1800);
/// One Redis command may take this long before the store counts as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Share sessions with other headends through this Redis
    /// (`redis://[USER:PASSWORD@]HOST:PORT[/DB]`, `rediss://` for TLS).
    #[arg(long, value_name = "URL", requires = "node_id")]
    pub cluster: Option<String>,
    /// This node's name in the cluster (unique per node).
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub node_id: Option<String>,
    /// Lease of this node on its sessions, in seconds: a session is taken over
    /// this long after its node died.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_LEASE.as_secs())]
    pub cluster_lease: u64,
    /// Inside interface: answer ARP (proxy ARP) for the addresses of the
    /// sessions this node holds and announce them (gratuitous ARP) on takeover.
    #[arg(long, value_name = "IFACE", requires = "cluster")]
    pub cluster_inside: Option<String>,
    /// CA certificate (PEM) that signed Redis's certificate, for `rediss://`
    /// (default: the system's trust store).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_ca: Option<std::path::PathBuf>,
    /// `vpn load-balancing`: the address (`HOST[:PORT]`) the director redirects
    /// new logins to this node with (default: the `--listen` address, unless
    /// that is the cluster address or a wildcard).
    #[arg(long, value_name = "HOST[:PORT]", requires = "cluster")]
    pub cluster_public: Option<String>,
}

/// What the session table asks the cluster task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A session this node owned ended: delete it, free its addresses.
    Ended {
        sid: String,
        fence: u64,
        acct_session_id: String,
        addr_keys: Vec<String>,
    },
    /// Answer ARP for this address on the inside segment (and announce it;
    /// after a takeover, repeatedly: `announce.rs`).
    Serve { addr: Ipv4Addr, takeover: bool },
    /// Stop answering for it.
    Unserve(Ipv4Addr),
}

/// Why a CONNECT cannot go on (the tunnel answers 401 or 503 with it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectRefusal {
    #[error("unknown or expired session cookie")]
    Unknown,
    #[error("the session is active on cluster node {0}")]
    HeldBy(String),
    #[error("the cluster's session store is unreachable")]
    StoreDown,
    #[error("the cluster's session store is being refilled; try again")]
    Refilling,
    #[error("no free address in pool {0}")]
    PoolExhausted(String),
    #[error("the session's address {0} is already in use on this node")]
    AddressInUse(Ipv4Addr),
}

/// This node's own dynamic-authorization server, for requests other nodes
/// forward (its duplicate cache is separate from the UDP listener's).
struct DynAuthLocal {
    server: std::sync::Mutex<auth::radius::DynAuthServer>,
    apply: crate::radius_io::DynAuthApply,
}

/// How long a node waits for the owner's answer to a forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Cluster {
    pub node: String,
    client: redis::Client,
    pending: std::sync::Mutex<
        std::collections::HashMap<u64, tokio::sync::oneshot::Sender<routing::NodeMessage>>,
    >,
    /// For logoffs other nodes ask for.
    sessions: std::sync::OnceLock<Arc<SessionTable>>,
    next_id: std::sync::atomic::AtomicU64,
    dynauth: std::sync::OnceLock<DynAuthLocal>,
    conn: ConnectionManager,
    lease: Duration,
    healthy: AtomicBool,
    inside: Option<neigh::InsideSegment>,
    alloc4: String,
    /// `vpn load-balancing` (lb.rs).
    lb: std::sync::Mutex<lb::LbSettings>,
    cluster_public: Option<String>,
    listen: std::sync::OnceLock<std::net::SocketAddr>,
    own: String,
    renew: String,
    born: String,
}

impl Cluster {
    /// Connects lazily: a node starts (and serves nothing new) while Redis is down.
    pub fn new(args: &ClusterArgs) -> Result<Option<Arc<Cluster>>> {
        let (Some(url), Some(node)) = (&args.cluster, &args.node_id) else {
            return Ok(None);
        };
        let client = match &args.cluster_ca {
            Some(ca) => {
                let pem =
                    std::fs::read(ca).with_context(|| format!("--cluster-ca {}", ca.display()))?;
                redis::Client::build_with_tls(
                    url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(url.as_str()),
        }
        .with_context(|| format!("--cluster {}", redact(url)))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .context("cluster: Redis connection manager")?;
        let inside = match &args.cluster_inside {
            Some(dev) => Some(
                neigh::InsideSegment::lookup(dev)
                    .with_context(|| format!("--cluster-inside {dev}"))?,
            ),
            None => None,
        };
        tracing::info!(
            "cluster: node {node}, Redis {}, lease {}s{}",
            redact(url),
            args.cluster_lease,
            inside
                .as_ref()
                .map(|i| format!(", proxy ARP on {}", i.name))
                .unwrap_or_default()
        );
        Ok(Some(Arc::new(Cluster {
            node: node.clone(),
            client,
            pending: Default::default(),
            next_id: Default::default(),
            dynauth: Default::default(),
            sessions: Default::default(),
            conn,
            lease: Duration::from_secs(args.cluster_lease.max(1)),
            healthy: AtomicBool::new(false),
            inside,
            alloc4: keys::alloc4_script(),
            lb: Default::default(),
            cluster_public: args.cluster_public.clone(),
            listen: Default::default(),
            own: keys::own_script(),
            renew: keys::renew_script(),
            born: keys::born_script(),
        })))
    }

    /// A restarted node forgets the proxy ARP entries a crash of its previous
    /// run left on the inside interface (they would answer for addresses other
    /// nodes took over): one delete per pool address, at most 65,536 per pool.
    pub fn flush_stale_proxies(&self, config: &crate::config::Config) {
        let Some(i) = &self.inside else {
            return;
        };
        let mut removed = 0usize;
        for p in config.ip_local_pools.values() {
            let pool = crate::pool::AddressPool::new(p);
            let (first, last) = (u32::from(pool.first()), u32::from(pool.last()));
            for a in (first..=last).take(65_536) {
                match i.proxy(false, Ipv4Addr::from(a)) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!("cluster: flushing proxy ARP on {}: {e}", i.name);
                        return;
                    }
                }
            }
        }
        tracing::debug!(
            "cluster: proxy ARP entries of pool addresses cleared on {} ({removed} checked)",
            i.name
        );
    }

    /// The address this node listens on (for `vpn load-balancing`), once at start.
    pub fn set_listen(&self, listen: std::net::SocketAddr) {
        let _ = self.listen.set(listen);
    }

    /// Applies the config's `vpn load-balancing` (at start and on reload).
    pub fn configure_load_balancing(&self, cfg: &crate::config::Config) {
        let listen = self
            .listen
            .get()
            .copied()
            .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 443)));
        self.set_load_balancing(lb::LbSettings::new(
            cfg,
            listen,
            self.cluster_public.as_deref(),
        ));
    }

    /// Redis answered the last write-back: new logins may go on.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn set_healthy(&self, up: bool) {
        let was = self.healthy.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("cluster: session store reachable again; new logins accepted");
            } else {
                tracing::error!(
                    "cluster: session store unreachable: established sessions keep forwarding, new logins are refused"
                );
            }
        }
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }

    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        args: &[String],
    ) -> redis::RedisResult<T> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(0);
        for a in args {
            cmd.arg(a);
        }
        cmd.query_async(&mut c).await
    }

    /// Before a CONNECT: makes sure this node owns the session, with an address
    /// the whole cluster agrees on (a first CONNECT), or takes it over from the
    /// node that held it. Sessions this node already owns need no Redis.
    pub async fn prepare_connect(
        &self,
        sessions: &SessionTable,
        config: &crate::config::Config,
        cookie: &str,
        previous: Option<Ipv4Addr>,
    ) -> Result<(), ConnectRefusal> {
        // A store that (re)started empty takes a few leases to refill: the
        // CONNECT waits that out rather than fail (openconnect gives up on a 503).
        let tries = keys::REFILL_GRACE_LEASES * 3 + 3;
        for _ in 0..tries {
            let r = match sessions.connect_plan(cookie) {
                Some(plan) if plan.fence > 0 => Ok(()),
                Some(plan) => self.first_connect(sessions, plan, previous).await,
                None => self.take_over(sessions, config, cookie).await,
            };
            if r != Err(ConnectRefusal::Refilling) {
                return r;
            }
            tokio::time::sleep(self.lease / 3).await;
        }
        Err(ConnectRefusal::Refilling)
    }

    async fn first_connect(
        &self,
        sessions: &SessionTable,
        plan: crate::sessions::ConnectPlan,
        previous: Option<Ipv4Addr>,
    ) -> Result<(), ConnectRefusal> {
        let down = |e: redis::RedisError| {
            tracing::warn!(user = %plan.username, "cluster: {e}");
            self.set_healthy(false);
            ConnectRefusal::StoreDown
        };
        if !plan.has_v4 {
            let (pool, addr) = match plan.framed_ip {
                Some(ip) => {
                    let pool = sessions.pool_of(ip).unwrap_or_default();
                    let got: i64 = self
                        .eval(&self.alloc4, &self.alloc_args(&plan.sid, &pool, ip, ip, ip))
                        .await
                        .map_err(down)?;
                    match got {
                        -2 => return Err(ConnectRefusal::Refilling),
                        a if a < 0 => return Err(ConnectRefusal::AddressInUse(ip)),
                        _ => (pool, ip),
                    }
                }
                None => self.alloc_from_pools(sessions, &plan, previous).await?,
            };
            if !sessions.assign_v4(plan.index, addr, &pool) {
                let _: redis::RedisResult<i64> = self
                    .eval(FREE4, &[plan.sid.clone(), keys::addr4(&pool, addr)])
                    .await;
                return Err(ConnectRefusal::AddressInUse(addr));
            }
        }
        let Some((rec, _)) = sessions.cluster_record(plan.index, &self.node) else {
            return Err(ConnectRefusal::Unknown);
        };
        let reply: Vec<redis::Value> = self
            .eval(
                &self.own,
                &[
                    plan.sid.clone(),
                    self.node.clone(),
                    self.lease_ms().to_string(),
                    RECORD_TTL.as_millis().to_string(),
                    keys::REFILL_GRACE_LEASES.to_string(),
                    rec.to_json(),
                ],
            )
            .await
            .map_err(down)?;
        match OwnOutcome::from_reply(&reply) {
            Ok(OwnOutcome::Owned { fence, .. }) => {
                sessions.set_cluster_owner(plan.index, fence);
                Ok(())
            }
            Ok(OwnOutcome::HeldBy(n)) => Err(ConnectRefusal::HeldBy(n)),
            Ok(OwnOutcome::Refilling) => Err(ConnectRefusal::Refilling),
            Ok(OwnOutcome::Unknown) | Err(_) => Err(ConnectRefusal::Unknown),
        }
    }

    fn alloc_args(
        &self,
        sid: &str,
        pool: &str,
        first: Ipv4Addr,
        last: Ipv4Addr,
        want: Ipv4Addr,
    ) -> Vec<String> {
        vec![
            sid.to_owned(),
            pool.to_owned(),
            u32::from(first).to_string(),
            u32::from(last).to_string(),
            u32::from(want).to_string(),
            RECORD_TTL.as_millis().to_string(),
            self.lease_ms().to_string(),
            keys::REFILL_GRACE_LEASES.to_string(),
        ]
    }

    /// First pool with a free address cluster-wide, as ASA walks its pool list.
    async fn alloc_from_pools(
        &self,
        sessions: &SessionTable,
        plan: &crate::sessions::ConnectPlan,
        previous: Option<Ipv4Addr>,
    ) -> Result<(String, Ipv4Addr), ConnectRefusal> {
        for pool in &plan.pools {
            let Some((first, last, _)) = sessions.pool_range(pool) else {
                continue;
            };
            let want = previous.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let got: i64 = self
                .eval(
                    &self.alloc4,
                    &self.alloc_args(&plan.sid, pool, first, last, want),
                )
                .await
                .map_err(|e| {
                    tracing::warn!(user = %plan.username, "cluster: {e}");
                    self.set_healthy(false);
                    ConnectRefusal::StoreDown
                })?;
            match got {
                -2 => return Err(ConnectRefusal::Refilling),
                a if a >= 0 => return Ok((pool.clone(), Ipv4Addr::from(a as u32))),
                _ => continue,
            }
        }
        Err(ConnectRefusal::PoolExhausted(plan.pools.join(",")))
    }

    async fn take_over(
        &self,
        sessions: &SessionTable,
        config: &crate::config::Config,
        cookie: &str,
    ) -> Result<(), ConnectRefusal> {
        let sid = crate::sessions::cookie_sid(cookie);
        let reply: Vec<redis::Value> = self
            .eval(
                &self.own,
                &[
                    sid.clone(),
                    self.node.clone(),
                    self.lease_ms().to_string(),
                    RECORD_TTL.as_millis().to_string(),
                    keys::REFILL_GRACE_LEASES.to_string(),
                    String::new(),
                ],
            )
            .await
            .map_err(|e| {
                tracing::warn!("cluster: takeover: {e}");
                self.set_healthy(false);
                ConnectRefusal::StoreDown
            })?;
        let (fence, json) = match OwnOutcome::from_reply(&reply) {
            Ok(OwnOutcome::Owned { fence, record }) => (fence, record),
            Ok(OwnOutcome::HeldBy(n)) => {
                tracing::info!(
                    "cluster: CONNECT for a session node {n} holds (its lease is valid): refused"
                );
                return Err(ConnectRefusal::HeldBy(n));
            }
            Ok(OwnOutcome::Refilling) => return Err(ConnectRefusal::Refilling),
            Ok(OwnOutcome::Unknown) => return Err(ConnectRefusal::Unknown),
            Err(e) => {
                tracing::warn!("cluster: {e}");
                return Err(ConnectRefusal::Unknown);
            }
        };
        let rec = SessionRecord::from_json(&json).map_err(|e| {
            tracing::warn!("cluster: takeover refused: {e}");
            ConnectRefusal::Unknown
        })?;
        let policy = config.effective_policy(&rec.group_policy);
        let pools = config
            .tunnel_groups
            .get(&rec.tunnel_group)
            .map(|tg| {
                config
                    .address_pools_for(tg, &policy)
                    .iter()
                    .map(|p| p.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        sessions
            .adopt(cookie, &rec, policy, pools, fence, Instant::now())
            .map(|_| ())
            .map_err(|e| {
                tracing::warn!(user = %rec.username, "cluster: takeover refused: {e}");
                ConnectRefusal::AddressInUse(rec.v4.as_ref().map_or(Ipv4Addr::UNSPECIFIED, |a| a.0))
            })
    }

    /// One write-back: heartbeat, then every owned session (lease, record,
    /// counters, addresses), pipelined. Sessions another node took over are
    /// dropped here.
    pub async fn write_back(&self, sessions: &SessionTable) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let owned = sessions.owned_sessions(&self.node);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(keys::node(&self.node))
            .arg(crate::cluster::record::unix_now())
            .arg("PX")
            .arg(self.lease_ms());
        pipe.cmd("EVAL")
            .arg(&self.born)
            .arg(0)
            .arg(self.lease_ms())
            .arg(keys::REFILL_GRACE_LEASES)
            .ignore();
        for o in &owned {
            let cmd = pipe
                .cmd("EVAL")
                .arg(&self.renew)
                .arg(0)
                .arg(&o.sid)
                .arg(&self.node)
                .arg(o.fence)
                .arg(self.lease_ms())
                .arg(RECORD_TTL.as_millis() as u64)
                .arg(o.record.to_json())
                .arg(
                    o.record
                        .accounting_group
                        .as_ref()
                        .map_or("", |_| o.record.acct_session_id.as_str()),
                );
            for k in &o.addr_keys {
                cmd.arg(k);
            }
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut c).await?;
        for (o, r) in owned.iter().zip(replies.iter().skip(1)) {
            let code = match r {
                redis::Value::Int(i) => *i,
                _ => 1,
            };
            match RenewOutcome::from_code(code) {
                RenewOutcome::StillOwner => {}
                RenewOutcome::TakenOver => {
                    sessions.drop_taken_over(o.index);
                }
                RenewOutcome::AddressConflict => {
                    tracing::error!(user = %o.record.username, "cluster: the session's address went to another session while the store was empty: logging it off");
                    sessions.drop_taken_over(o.index);
                }
            }
        }
        Ok(())
    }

    /// Acct-Session-Ids of `ids` that live on in the cluster (another node took
    /// them over): a restarted node must not send their crash Stops.
    pub async fn live_accounting_sessions(&self, ids: &[String]) -> Vec<String> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut c = self.conn.clone();
        let keys: Vec<String> = ids.iter().map(|i| keys::acct(i)).collect();
        let got: redis::RedisResult<Vec<Option<String>>> = c.mget(&keys).await;
        match got {
            Ok(v) => ids
                .iter()
                .zip(v)
                .filter(|(_, v)| v.is_some())
                .map(|(i, _)| i.clone())
                .collect(),
            Err(e) => {
                tracing::warn!(
                    "cluster: cannot check the journal's sessions against the store: {e}"
                );
                Vec::new()
            }
        }
    }

    async fn handle(&self, ev: ClusterEvent) {
        match ev {
            ClusterEvent::Ended {
                sid,
                fence,
                acct_session_id,
                addr_keys,
            } => {
                let mut args = vec![sid, self.node.clone(), fence.to_string(), acct_session_id];
                args.extend(addr_keys);
                if let Err(e) = self.eval::<i64>(keys::RELEASE, &args).await {
                    // The record expires on its own; its addresses with it.
                    tracing::warn!("cluster: releasing an ended session: {e}");
                    self.set_healthy(false);
                }
            }
            ClusterEvent::Serve { addr: a, .. } => {
                if let Some(i) = &self.inside {
                    if let Err(e) = i.proxy(true, a) {
                        tracing::warn!("cluster: proxy ARP for {a} on {}: {e}", i.name);
                    }
                    // Three announcements, as arping -U and keepalived send a few.
                    for _ in 0..3 {
                        if let Err(e) = i.announce(a) {
                            tracing::warn!("cluster: gratuitous ARP for {a} on {}: {e}", i.name);
                            break;
                        }
                    }
                }
            }
            ClusterEvent::Unserve(a) => {
                if let Some(i) = &self.inside
                    && let Err(e) = i.proxy(false, a)
                {
                    tracing::warn!("cluster: removing proxy ARP for {a} on {}: {e}", i.name);
                }
            }
        }
    }

    /// The cluster's background work: events from the session table, and the
    /// write-back every third of a lease.
    pub async fn run(
        self: Arc<Self>,
        sessions: Arc<SessionTable>,
        mut events: mpsc::UnboundedReceiver<ClusterEvent>,
    ) {
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Repeats of the takeover announcements (announce.rs), only with an
        // inside segment to announce on.
        let mut repeats = announce::Announcements::default();
        let mut due = Vec::new();
        loop {
            let next_repeat = repeats.next_due();
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        if self.inside.is_some() {
                            match ev {
                                ClusterEvent::Serve { addr, takeover: true } => {
                                    repeats.serve(addr, Instant::now())
                                }
                                ClusterEvent::Unserve(a) => repeats.unserve(a),
                                _ => {}
                            }
                        }
                        self.handle(ev).await
                    }
                    None => return,
                },
                _ = async {
                    match next_repeat {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => {
                    repeats.due(Instant::now(), &mut due);
                    if let Some(i) = &self.inside {
                        for a in due.drain(..) {
                            if let Err(e) = i.announce(a) {
                                tracing::debug!("cluster: repeated gratuitous ARP for {a} on {}: {e}", i.name);
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    match self.write_back(&sessions).await {
                        Ok(()) => {
                            self.set_healthy(true);
                            if let Err(e) = self.publish_member(sessions.len()).await {
                                tracing::debug!("cluster: load-balancing member record: {e}");
                            }
                        }
                        Err(e) => {
                            tracing::debug!("cluster: write-back: {e}");
                            self.set_healthy(false);
                        }
                    }
                }
            }
        }
    }

    /// Ends what `run` left: the releases of sessions ended at shutdown.
    pub async fn drain(&self, events: &mut mpsc::UnboundedReceiver<ClusterEvent>) {
        while let Ok(ev) = events.try_recv() {
            self.handle(ev).await;
        }
    }
}

impl Cluster {
    /// Requests forwarded by other nodes are decided with these (the same
    /// clients and decision as the UDP listener's).
    pub fn set_dynauth(
        &self,
        clients: Vec<auth::radius::DynAuthClient>,
        apply: crate::radius_io::DynAuthApply,
    ) {
        let _ = self.dynauth.set(DynAuthLocal {
            server: std::sync::Mutex::new(auth::radius::DynAuthServer::new(
                auth::radius::DynAuthConfig::new(clients),
            )),
            apply,
        });
    }

    /// A reload's `dynamic-authorization` clients and keys: requests other nodes
    /// forward are checked against them from now on (the duplicate cache starts
    /// empty, as the restarted UDP listener's does).
    pub fn update_dynauth_clients(&self, clients: Vec<auth::radius::DynAuthClient>) {
        if let Some(local) = self.dynauth.get() {
            *local.server.lock().unwrap_or_else(|e| e.into_inner()) =
                auth::radius::DynAuthServer::new(auth::radius::DynAuthConfig::new(clients));
        }
    }

    /// The node whose record matches `sel` (every record is read: fine for the
    /// few thousand sessions of a cluster; CoA is rare).
    async fn holder_of(&self, sel: &auth::radius::SessionSelectors) -> Option<String> {
        let mut c = self.conn.clone();
        let mut cursor: u64 = 0;
        // Bounded: SCAN returns to 0 after one pass; 10,000 rounds of 1,000 is
        // far more than any cluster holds.
        for _ in 0..10_000 {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(keys::session_pattern())
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .ok()?;
            if !keys.is_empty() {
                let vals: Vec<Option<String>> = c.mget(&keys).await.ok()?;
                for v in vals.into_iter().flatten() {
                    if let Ok(r) = SessionRecord::from_json(&v)
                        && routing::record_matches(&r, sel)
                    {
                        return Some(r.node);
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        None
    }

    /// A CoA / Disconnect-Request that matched no session here: if another
    /// node holds the session, it decides; returns its reply datagram.
    pub async fn forward_dynauth(
        &self,
        req: &auth::radius::DynAuthRequest,
        packet: &[u8],
        from: std::net::SocketAddr,
    ) -> Option<Vec<u8>> {
        let node = self.holder_of(&req.selectors).await?;
        if node == self.node {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = routing::NodeMessage::dynauth(id, &self.node, from, packet);
        let answer = match self.ask(&node, id, msg).await {
            Some(routing::NodeMessage::DynAuthReply { packet, .. }) => {
                packet.as_deref().and_then(routing::datagram)
            }
            _ => None,
        };
        if answer.is_some() {
            tracing::info!(%from, kind = ?req.kind, selectors = ?req.selectors, "dynamic authorization forwarded to node {node}, which holds the session");
        }
        answer
    }

    /// Sends `msg` (with correlation `id`) to `node` and waits for its answer.
    async fn ask(
        &self,
        node: &str,
        id: u64,
        msg: routing::NodeMessage,
    ) -> Option<routing::NodeMessage> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let mut c = self.conn.clone();
        let sent: redis::RedisResult<i64> =
            c.publish(keys::node_channel(node), msg.to_json()).await;
        let answer = match sent {
            Ok(n) if n > 0 => tokio::time::timeout(FORWARD_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Ok(_) => {
                tracing::warn!("cluster: node {node} does not listen");
                None
            }
            Err(e) => {
                tracing::warn!("cluster: asking node {node}: {e}");
                None
            }
        };
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        answer
    }

    /// Every session record in the store (bounded scan), as (record).
    pub async fn all_records(&self) -> redis::RedisResult<Vec<SessionRecord>> {
        let mut c = self.conn.clone();
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        for _ in 0..10_000 {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(keys::session_pattern())
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await?;
            if !keys.is_empty() {
                let vals: Vec<Option<String>> = c.mget(&keys).await?;
                out.extend(
                    vals.into_iter()
                        .flatten()
                        .filter_map(|v| SessionRecord::from_json(&v).ok()),
                );
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(out)
    }

    /// Sessions other nodes hold, for `show vpn-sessiondb`.
    pub async fn remote_sessions(&self) -> redis::RedisResult<Vec<SessionRecord>> {
        let mut v = self.all_records().await?;
        v.retain(|r| r.node != self.node);
        v.sort_by(|a, b| (&a.node, &a.username).cmp(&(&b.node, &b.username)));
        Ok(v)
    }

    /// `vpn-sessiondb logoff name USER | all` on the other nodes that hold
    /// matching sessions: how many they logged off.
    pub async fn logoff_elsewhere(&self, name: Option<&str>) -> usize {
        let Ok(records) = self.all_records().await else {
            return 0;
        };
        let mut nodes: Vec<String> = records
            .into_iter()
            .filter(|r| r.node != self.node && name.is_none_or(|n| n == r.username))
            .map(|r| r.node)
            .collect();
        nodes.sort();
        nodes.dedup();
        let mut total = 0;
        for node in nodes {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let msg = routing::NodeMessage::Logoff {
                id,
                reply_to: self.node.clone(),
                name: name.map(str::to_owned),
            };
            if let Some(routing::NodeMessage::LogoffReply { count, .. }) =
                self.ask(&node, id, msg).await
            {
                tracing::info!("vpn-sessiondb logoff: node {node} logged off {count} session(s)");
                total += count;
            }
        }
        total
    }

    /// The session table logoffs from other nodes apply to.
    pub fn set_sessions(&self, sessions: Arc<SessionTable>) {
        let _ = self.sessions.set(sessions);
    }

    async fn reply_to(&self, node: &str, msg: routing::NodeMessage) {
        let mut c = self.conn.clone();
        let _: redis::RedisResult<i64> = c.publish(keys::node_channel(node), msg.to_json()).await;
    }

    async fn on_message(&self, text: &str) {
        match routing::NodeMessage::from_json(text) {
            Ok(routing::NodeMessage::DynAuth {
                id,
                reply_to,
                from,
                packet,
            }) => {
                let Some(local) = self.dynauth.get() else {
                    return;
                };
                let Some(bytes) = routing::datagram(&packet) else {
                    return;
                };
                let reply = local
                    .server
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .handle(std::time::Instant::now(), from, &bytes, |req| {
                        let r = (local.apply)(req);
                        tracing::info!(%from, kind = ?req.kind, selectors = ?req.selectors, "dynamic authorization from node {reply_to}: {r:?}");
                        r
                    });
                self.reply_to(&reply_to, routing::NodeMessage::reply(id, reply.as_deref()))
                    .await;
            }
            Ok(routing::NodeMessage::Logoff { id, reply_to, name }) => {
                let Some(sessions) = self.sessions.get() else {
                    return;
                };
                let sel = match &name {
                    Some(n) => crate::sessions::LogoffSelector::Name(n),
                    None => crate::sessions::LogoffSelector::All,
                };
                let count = sessions.logoff(sel, crate::sessions::EndReason::AdminLogoff);
                tracing::info!(
                    "vpn-sessiondb logoff from node {reply_to}: {count} session(s) logged off"
                );
                self.reply_to(&reply_to, routing::NodeMessage::LogoffReply { id, count })
                    .await;
            }
            Ok(
                m @ (routing::NodeMessage::DynAuthReply { .. }
                | routing::NodeMessage::LogoffReply { .. }),
            ) => {
                let (routing::NodeMessage::DynAuthReply { id, .. }
                | routing::NodeMessage::LogoffReply { id, .. }) = &m
                else {
                    return;
                };
                let tx = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id);
                if let Some(tx) = tx {
                    let _ = tx.send(m);
                }
            }
            Err(e) => tracing::warn!("cluster: {e}"),
        }
    }

    /// Listens on this node's channel (reconnecting while Redis is away).
    pub async fn listen(self: Arc<Self>) {
        use futures_util::StreamExt;
        let channel = keys::node_channel(&self.node);
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut ps) => {
                    if let Err(e) = ps.subscribe(&channel).await {
                        tracing::debug!("cluster: subscribe {channel}: {e}");
                    } else {
                        let mut stream = ps.on_message();
                        while let Some(m) = stream.next().await {
                            if let Ok(text) = m.get_payload::<String>() {
                                self.on_message(&text).await;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("cluster: pub/sub connection: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// FREE4 (see keys.rs), for an allocation this node could not use.
const FREE4: &str = keys::FREE4;

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(
            redact("rediss://headend:s3cret@h:6380/1"),
            "rediss://headend:***@h:6380/1"
        );
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
    }
}

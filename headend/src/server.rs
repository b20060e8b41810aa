//! `headend run`: wires config, TLS listener, sessions, dataplane and admin socket.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, AdminContext};
use crate::config::Config;
use crate::pool::AddressPool;
use crate::proto::http::{Request, RequestParser, Response};
use crate::radius_io::RadiusGroup;
use crate::sessions::{EndReason, LogoffSelector, SessionTable};
use crate::tls::Identity;
use crate::{login, tunnel};

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// ASA running-config to load.
    #[arg(long)]
    pub config: PathBuf,
    /// TLS certificate chain (PEM); default: the `ssl trust-point` of the config.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address and port for TLS (and later DTLS).
    #[arg(long, default_value = "0.0.0.0:443")]
    pub listen: SocketAddr,
    #[arg(long, default_value = admin::DEFAULT_SOCKET)]
    pub admin_socket: PathBuf,
    /// Name of the TUN interface the headend creates.
    #[arg(long, default_value = "vpn0")]
    pub tun_name: String,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (off by default).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Started as root: become this user once the admin socket is bound,
    /// keeping only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Use virtio-net offload (TSO/GRO) on the TUN device.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tun_offload: bool,
    /// Most TLS handshakes in progress from one source address; more new
    /// connections from it are closed at once (tunnels are never affected).
    #[arg(long, default_value_t = crate::threat::admission::DEFAULT_MAX_HALF_OPEN_PER_SOURCE)]
    pub max_half_open_per_source: u32,
    /// Most connections from one source address that are not tunnels yet
    /// (handshaking or logging in).
    #[arg(long, default_value_t = crate::threat::admission::DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE)]
    pub max_unauthenticated_per_source: u32,
    /// Crash-safe accounting journal (Starts without a Stop yet); used when an
    /// `aaa-server` group is configured.
    #[arg(long, default_value = crate::acct_journal::DEFAULT_PATH)]
    pub accounting_journal: PathBuf,
    /// TCP port of the SSH CLI (started when the config has `ssh` lines).
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
    /// SSH host key (OpenSSH format); generated (Ed25519) on first start.
    #[arg(long, default_value = crate::cli::ssh::DEFAULT_HOST_KEY)]
    pub ssh_host_key: PathBuf,
    /// Per-core workers (issue 13): threads that each own their connections,
    /// a TUN queue and a buffer pool. Default: `HEADEND_WORKERS`, else one per
    /// core. 0: no worker threads, everything on the shared runtime with one
    /// TUN queue (the layout before workers).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Cluster (issue 19): `--cluster redis://… --node-id NAME`.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything a connection needs, shared read-only (plus the session table).
pub struct Headend {
    pub config: Arc<Config>,
    pub users: Arc<auth::LocalUserDb>,
    pub sessions: Arc<SessionTable>,
    pub routes: Arc<dataplane::SessionRoutes>,
    pub counters: Arc<dataplane::DataplaneCounters>,
    /// The DTLS/UDP side; None when no group-policy enables DTLS.
    pub dtls: Option<Arc<crate::dtls::DtlsHub>>,
    /// Running `aaa-server` groups by name.
    pub radius: BTreeMap<String, Arc<RadiusGroup>>,
    /// SAML service providers and the SSO login state.
    pub saml: crate::saml_web::SamlState,
    /// Logins waiting for the response to a RADIUS Access-Challenge.
    pub challenges: Arc<crate::login::Challenges>,
    /// ACLs and IP-to-SGT bindings the dataplane enforces.
    pub policy: Arc<crate::policy_state::PolicyState>,
    /// SHA-1 of the TLS certificate (DER), upper-case hex: the success answer's
    /// `<server-cert-hash>`, as ASA sends it.
    pub server_cert_hash: String,
    /// Threat detection (shuns) and local user lockout.
    pub threats: Arc<crate::threat::Threats>,
    /// Sessions shared with other headends through Redis (issue 19).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// TLS for new connections (the `ssl trust-point` identity).
    pub tls: TlsAcceptor,
}

/// The current [`Headend`]. Each HTTP request loads it once, so a login step
/// sees one consistent config, user list, RADIUS groups and SAML IdPs;
/// `reload` (`reload.rs`) stores a new one built from the re-read config. A
/// running tunnel keeps the config it connected with (`tunnel::TunnelContext`,
/// not the whole snapshot); the session table,
/// policy and dataplane are shared by all snapshots.
pub type LiveHeadend = Arc<arc_swap::ArcSwap<Headend>>;

/// The TLS acceptor and the `<server-cert-hash>` (SHA-1 of the certificate,
/// upper-case hex, as ASA sends it) for `cfg`'s `ssl trust-point`, or for the
/// `--tls-cert`/`--tls-key` files when given.
pub fn tls_for(cfg: &Config, files: Option<&(PathBuf, PathBuf)>) -> Result<(TlsAcceptor, String)> {
    let identity = match files {
        Some((c, k)) => Identity::from_pem_files(c, k)?,
        None => Identity::from_config(cfg)?,
    };
    let hash = identity
        .chain
        .first()
        .map(|c| {
            openssl::sha::sha1(c.as_ref())
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        })
        .unwrap_or_default();
    Ok((TlsAcceptor::from(identity.server_config()?), hash))
}

/// How often the accounting journal checkpoints every session's counters.
const ACCOUNTING_CHECKPOINT: Duration = Duration::from_secs(60);
/// How long a TLS handshake or an incomplete request may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle keep-alive connection between requests.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(args: RunArgs) -> Result<()> {
    run_with(args, None).await
}

/// [`run`] with the admin socket already bound (by root, before `--user`).
pub async fn run_with(
    args: RunArgs,
    admin_listener: Option<std::os::unix::net::UnixListener>,
) -> Result<()> {
    let config = crate::config::load_file(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::syslog::init(
        &config.management.logging,
        config.hostname.as_deref().unwrap_or("headend"),
    );
    for w in &config.warnings {
        tracing::warn!("{}:{}: {}", config.source, w.line, w.message);
    }
    let nofile = raise_nofile_limit();
    match config.vpn_sessiondb.anyconnect_limit() {
        Some(n) => tracing::info!("vpn-sessiondb: at most {n} AnyConnect sessions"),
        None => tracing::info!(
            "vpn-sessiondb: no session limit configured (bounded by RLIMIT_NOFILE {nofile})"
        ),
    }
    let tls_files = args.tls_cert.clone().zip(args.tls_key.clone());
    let (tls, server_cert_hash) = tls_for(&config, tls_files.as_ref())?;

    let users = Arc::new(auth::LocalUserDb::new(
        config
            .usernames
            .values()
            .map(|u| (u.name.as_str(), u.password.as_str())),
    ));

    let (tun_addr, tun_prefix) = config
        .ip_local_pools
        .values()
        .next()
        .map(|p| AddressPool::new(p).gateway_address())
        .context("no `ip local pool` configured: clients need addresses")?;
    // One address per distinct IPv6 pool prefix (the first pool of each wins).
    let mut tun_v6: Vec<(std::net::Ipv6Addr, u8)> = Vec::new();
    for p in config.ipv6_local_pools.values() {
        let (gw, len) = crate::pool::Ipv6AddressPool::new(p).gateway_address();
        let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        let same_prefix = |(a, l): &(std::net::Ipv6Addr, u8)| {
            *l == len && u128::from(*a) & !host == u128::from(gw) & !host
        };
        if !tun_v6.iter().any(same_prefix) {
            tun_v6.push((gw, len));
        }
    }
    let mtu = config
        .group_policies
        .keys()
        .map(|gp| config.effective_policy(gp).anyconnect_mtu)
        .chain(std::iter::once(
            config
                .effective_policy(crate::config::DEFAULT_GROUP_POLICY)
                .anyconnect_mtu,
        ))
        .max()
        .unwrap_or(1406);
    let worker_count = crate::workers::configured_count(args.workers)?;
    // One TUN queue per worker; `--workers 0`: one queue on the shared runtime.
    let tun_queues = dataplane::tun::TunQueue::open_all(
        &dataplane::tun::TunConfig {
            name: args.tun_name.clone(),
            ipv4: Some((tun_addr, tun_prefix)),
            ipv6: tun_v6.clone(),
            mtu,
            offload: args.tun_offload,
        },
        worker_count,
    )
    .with_context(|| format!("creating TUN device {}", args.tun_name))?;
    tracing::info!(
        "TUN {} up with {tun_addr}/{tun_prefix}{}, MTU {mtu}, offload {} (TSO {}), {} queue(s)",
        args.tun_name,
        tun_v6
            .iter()
            .map(|(a, l)| format!(" {a}/{l}"))
            .collect::<String>(),
        args.tun_offload,
        tun_queues.first().is_some_and(|q| q.tcp_gso()),
        tun_queues.len()
    );

    let cluster = crate::cluster::Cluster::new(&args.cluster)?;
    if let Some(c) = &cluster {
        c.flush_stale_proxies(&config);
        c.set_listen(args.listen);
        c.configure_load_balancing(&config);
    }
    // Before the session table: the Stops a crash left unsent, and new
    // Acct-Session-Ids (boot second + index) that cannot collide with theirs.
    let journal = if config.aaa_server_groups.is_empty() {
        None
    } else {
        let (j, mut stops) = crate::acct_journal::AcctJournal::open(
            &args.accounting_journal,
            crate::acct_journal::DEFAULT_MAX_BYTES,
        )
        .with_context(|| format!("accounting journal {}", args.accounting_journal.display()))?;
        // Sessions another node took over after this one died: their Stop is
        // the new owner's to send.
        if let Some(c) = &cluster {
            let ids: Vec<String> = stops.iter().map(|s| s.acct_session_id.clone()).collect();
            let live = c.live_accounting_sessions(&ids).await;
            if !live.is_empty() {
                tracing::info!(
                    "accounting journal: {} session(s) live on in the cluster; their Stops are left to their new owner",
                    live.len()
                );
                stops.retain(|s| !live.contains(&s.acct_session_id));
                for id in &live {
                    let _ = j.ended(id);
                }
            }
        }
        if !stops.is_empty() {
            tracing::warn!(
                "accounting journal {}: {} session(s) left open by a crash; sending their Stops (NAS-Reboot)",
                args.accounting_journal.display(),
                stops.len()
            );
            let newest = stops
                .iter()
                .filter_map(|s| u32::from_str_radix(s.acct_session_id.get(..8)?, 16).ok())
                .max()
                .unwrap_or(0);
            while std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() <= u64::from(newest))
                .unwrap_or(false)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Some((Arc::new(j), stops))
    };
    let sessions = Arc::new(SessionTable::new(&config));
    let policy = Arc::new(crate::policy_state::PolicyState::new(&config)?);
    sessions.set_policy(policy.clone());
    let cluster_task = cluster.as_ref().map(|c| {
        c.set_sessions(sessions.clone());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        sessions.set_cluster(tx);
        tokio::spawn(c.clone().run(sessions.clone(), rx))
    });
    let node_id = match args.listen.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
    };
    let sxp = crate::sxp_io::SxpState::from_config(&config, policy.clone(), node_id)?;
    let mut sxp_task = match &sxp {
        Some(s) => tokio::spawn(crate::sxp_io::serve(s.clone(), auth::sxp::SXP_PORT)),
        None => tokio::spawn(std::future::pending()),
    };
    let counters = Arc::new(dataplane::DataplaneCounters::default());
    let routes = Arc::new(dataplane::SessionRoutes::default());
    // The DTLS hub's own pool (its batches go to sessions on every worker,
    // which put them into their worker's pool).
    let batch_pool = dataplane::BatchPool::default();

    let listener = crate::listen::bind_tls(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let dtls_wanted = std::iter::once(crate::config::DEFAULT_GROUP_POLICY)
        .chain(config.group_policies.keys().map(String::as_str))
        .any(|gp| config.effective_policy(gp).anyconnect_dtls);
    let dtls = if dtls_wanted {
        let hub = crate::dtls::DtlsHub::bind(args.listen)?;
        tracing::info!(
            "DTLS on UDP {} (GSO segments {})",
            args.listen,
            hub.gso_segments()
        );
        Some(hub)
    } else {
        None
    };
    let mut dtls_rx = match &dtls {
        Some(hub) => tokio::spawn(hub.clone().run_receiver(batch_pool.clone())),
        None => tokio::spawn(std::future::pending()),
    };
    let saml = crate::saml_web::SamlState::from_config(&config)?;
    for (tg, sp) in &saml.sps {
        tracing::info!(
            "SAML tunnel-group {tg}: SP entity {} ACS {}",
            sp.entity_id(),
            sp.acs_url()
        );
    }
    let mut radius = BTreeMap::new();
    for g in config.aaa_server_groups.values() {
        let group = RadiusGroup::spawn(g).await?;
        tracing::info!(
            "aaa-server {} (RADIUS): {} host(s), NAS-IP-Address {}",
            g.name,
            g.hosts.len(),
            group.nas_ip
        );
        radius.insert(g.name.clone(), group);
    }
    // Always on, even with no aaa-server yet: a reload may add one and the
    // tunnel groups' `accounting-server-group` (reload.rs).
    let (acct_tx, acct_rx) = tokio::sync::mpsc::unbounded_channel();
    let nas_ip = radius
        .values()
        .next()
        .map(|g| g.nas_ip)
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let journal = journal.map(|(j, stops)| {
        for stop in stops {
            let _ = acct_tx.send(stop);
        }
        sessions.set_accounting_journal(j.clone());
        j
    });
    sessions.set_accounting(acct_tx, nas_ip);
    let dynauth_settings = crate::dynauth_listener::DynAuthSettings::from_config(&config);
    if let Some(s) = &dynauth_settings {
        s.check_port()?;
    }
    let threats = Arc::new(crate::threat::Threats::new(
        &config,
        crate::threat::admission::SourceLimits {
            max_half_open: args.max_half_open_per_source,
            max_unauthenticated: args.max_unauthenticated_per_source,
        },
    ));
    if let Some(hub) = &dtls {
        hub.set_shuns(threats.clone());
    }
    let headend = Arc::new(Headend {
        config: Arc::new(config),
        users,
        sessions: sessions.clone(),
        routes: routes.clone(),
        counters: counters.clone(),
        dtls,
        radius,
        saml,
        challenges: Arc::default(),
        policy: policy.clone(),
        server_cert_hash,
        threats: threats.clone(),
        tls,
        cluster: cluster.clone(),
    });
    let live: LiveHeadend = Arc::new(arc_swap::ArcSwap::new(headend.clone()));
    let accounting = {
        // Groups are looked up in the live snapshot, so a reload reaches
        // sessions that start after it (accounting.rs).
        let live = live.clone();
        let groups: crate::accounting::GroupSource = Arc::new(move |name: &str| {
            let h = live.load();
            (h.radius.get(name).cloned(), h.config.hostname.clone())
        });
        (
            tokio::spawn(crate::accounting::run(acct_rx, groups, journal.clone())),
            journal.map(|j| {
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(ACCOUNTING_CHECKPOINT);
                    loop {
                        tick.tick().await;
                        let snap = sessions.accounting_snapshot(Instant::now());
                        if let Err(e) = j.checkpoint(&snap) {
                            tracing::error!("accounting journal checkpoint: {e}");
                        }
                    }
                })
            }),
        )
    };
    // Restarted by a reload that changes its clients or port (dynauth_listener.rs).
    let dynauth = {
        let live = live.clone();
        let apply: crate::radius_io::DynAuthApply =
            Arc::new(move |req: &auth::radius::DynAuthRequest| {
                crate::coa::handle(&live.load_full(), req)
            });
        // Cluster: requests for sessions other nodes hold go to them.
        let forward = headend.cluster.clone().map(|c| {
            let clients = dynauth_settings
                .as_ref()
                .map(crate::dynauth_listener::DynAuthSettings::clients)
                .unwrap_or_default();
            c.set_dynauth(clients, apply.clone());
            tokio::spawn(c.clone().listen());
            let f: crate::radius_io::DynAuthForward = Arc::new(move |req, packet, from| {
                let c = c.clone();
                Box::pin(async move { c.forward_dynauth(&req, &packet, from).await })
            });
            f
        });
        crate::dynauth_listener::spawn(dynauth_settings, apply, forward)
    };

    // Each worker reads its own TUN queue; a read that fails for good (the
    // device is gone) stops the server.
    let (downlink_tx, mut downlink_stopped) = tokio::sync::mpsc::unbounded_channel();
    let workers = Arc::new(crate::workers::start(
        tun_queues,
        worker_count > 0,
        routes.clone(),
        counters.clone(),
        downlink_tx,
    )?);
    tracing::info!(
        "{} worker(s){}",
        workers.len(),
        if workers.threaded() {
            ", each with its own thread, TUN queue and buffer pool"
        } else {
            " (--workers 0): connections on the shared runtime"
        }
    );
    let admin_ctx = Arc::new(AdminContext {
        sessions: sessions.clone(),
        counters: counters.clone(),
        dtls: headend.dtls.clone(),
        config_path: args.config.clone(),
        policy: policy.clone(),
        sxp: sxp.clone(),
        threats,
        live: live.clone(),
        reload: Arc::new(
            crate::reload::Reloader::new(live.clone(), args.config.clone(), tls_files)
                .with_dynamic_authorization(dynauth)
                .with_sxp(sxp.clone()),
        ),
        cluster: headend.cluster.clone(),
        workers: workers.clone(),
        routes: routes.clone(),
    });
    let mut metrics_task = match args.metrics_listen {
        Some(addr) => {
            let registry = crate::metrics::registry(crate::metrics::Sources {
                sessions: sessions.clone(),
                counters: counters.clone(),
                dtls: headend.dtls.clone(),
                policy: policy.clone(),
                sxp: sxp.clone(),
                tunnel_groups: {
                    let live = live.clone();
                    Arc::new(move || live.load().config.tunnel_groups.keys().cloned().collect())
                },
            });
            let listener = crate::metrics::bind(addr).await?;
            tokio::spawn(crate::metrics::serve(listener, Arc::new(registry)))
        }
        None => tokio::spawn(std::future::pending()),
    };
    // The SSH CLI runs when the config has `ssh IP MASK IF` lines, as on ASA;
    // a reload starts or stops it (cli/ssh.rs).
    admin_ctx.reload.set_ssh(crate::cli::ssh::spawn(
        crate::cli::ssh::SshArgs {
            port: args.ssh_port,
            host_key: args.ssh_host_key.clone(),
        },
        admin_ctx.clone(),
    ));
    let admin_path = args.admin_socket.clone();
    let admin_listener = match admin_listener {
        Some(l) => l,
        None => admin::bind(&admin_path)?,
    };
    let mut admin_task = tokio::spawn(admin::serve_on(
        admin_listener,
        admin_path,
        admin_ctx.clone(),
    ));

    // SIGHUP re-reads the whole config, as `headend reload` does (reload.rs).
    let hup = {
        let reload = admin_ctx.reload.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                crate::service::notify_status("reloading configuration");
                let _ = reload.reload();
                crate::service::notify_status("running");
            }
        })
    };

    let reaper = {
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                sessions.reap(Instant::now());
            }
        })
    };

    tracing::info!(
        "headend {} listening on {} (TLS)",
        headend.config.hostname.as_deref().unwrap_or("headend"),
        args.listen
    );
    // Listeners bound, TUN up, admin socket served: ready for systemd.
    crate::service::notify_ready();
    // Connection slots: TLS connections and sessions' connected DTLS
    // sockets (dtls_direct.rs) draw from the same fd budget.
    let slot_count = connection_slots();
    let slots = Arc::new(tokio::sync::Semaphore::new(slot_count));
    if let Some(hub) = &headend.dtls {
        hub.set_direct_slots(crate::dtls_direct::DirectSlots::new(
            slots.clone(),
            slot_count,
        ));
    }
    let accept = accept_loop(listener, live.clone(), slots, workers);
    let result = tokio::select! {
        r = accept => r,
        Some(e) = downlink_stopped.recv() => Err(anyhow::Error::from(e).context("dataplane stopped")),
        r = &mut dtls_rx => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("DTLS receiver stopped")),
            Err(e) => Err(anyhow::Error::from(e).context("DTLS task")),
        },
        r = &mut sxp_task => match r {
            Ok(r) => r.context("SXP listener"),
            Err(e) => Err(anyhow::Error::from(e).context("SXP task")),
        },
        r = &mut metrics_task => match r {
            Ok(r) => r.context("metrics endpoint"),
            Err(e) => Err(anyhow::Error::from(e).context("metrics task")),
        },
        r = &mut admin_task => match r {
            Ok(r) => r.context("admin socket"),
            Err(e) => Err(anyhow::Error::from(e).context("admin task")),
        },
        _ = shutdown_signal() => {
            crate::service::notify_stopping();
            tracing::info!("shutting down: logging off all sessions");
            Ok(())
        }
    };
    let n = sessions.logoff(LogoffSelector::All, EndReason::Shutdown);
    if n > 0 {
        // Let the connections tell their clients before the process exits.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Every Start gets its Stop: close the event stream and let the
    // accounting task finish its last requests (bounded by the RADIUS timeouts).
    drop(headend);
    drop(live);
    if let Some(t) = cluster_task {
        // Let the releases of the sessions just logged off reach the store.
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.abort();
    }
    sessions.close_accounting();
    let (task, checkpoints) = accounting;
    if let Some(c) = checkpoints {
        c.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    reaper.abort();
    hup.abort();
    let _ = std::fs::remove_file(&args.admin_socket);
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (a systemd service starts
/// with a soft limit of 1024: one fd per session would stop at ~1000) and
/// returns the soft limit now in force.
fn raise_nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a live local rlimit.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    if !got {
        tracing::warn!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return 1024;
    }
    let before = r.rlim_cur;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            tracing::warn!(
                "raising RLIMIT_NOFILE {before} to {}: {}",
                r.rlim_max,
                std::io::Error::last_os_error()
            );
            return before;
        }
    }
    tracing::info!(
        "RLIMIT_NOFILE raised from {before} to {} (hard limit)",
        r.rlim_cur
    );
    r.rlim_cur
}

/// fds kept for everything but client connections (TUN queues, UDP, logs,
/// RADIUS, admin socket...).
const RESERVED_FDS: usize = 256;

/// Concurrent TLS connections (tunnels and logins): what RLIMIT_NOFILE allows;
/// more wait in the backlog instead of failing accept() with EMFILE. How many
/// sessions may exist is `vpn-sessiondb`'s business, not this.
fn connection_slots() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a pointer to a live local rlimit.
    let cur = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    cur.saturating_sub(RESERVED_FDS)
        .clamp(64, tokio::sync::Semaphore::MAX_PERMITS)
}

async fn accept_loop(
    listener: TcpListener,
    live: LiveHeadend,
    slots: Arc<tokio::sync::Semaphore>,
    workers: Arc<crate::workers::Workers>,
) -> Result<()> {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            bail!("connection limiter closed");
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let h = live.load_full();
        // A shunned source is dropped before any TLS work (issue 17).
        if h.threats.is_shunned(peer.ip()) {
            drop(tcp);
            continue;
        }
        // Per-source limits: a few sources cannot hold every slot (issue 17).
        let Ok(ticket) = h.threats.admission.admit(peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, live) = (h.tls.clone(), live.clone());
        drop(h);
        // The connection lives on one worker from here to its close: the
        // stream leaves this runtime's reactor and joins the worker's.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%peer, "handing the connection to a worker: {e}");
                continue;
            }
        };
        workers.spawn(move |lane| async move {
            let result = match TcpStream::from_std(tcp) {
                Ok(tcp) => connection(tcp, peer, acceptor, live, ticket, lane).await,
                Err(e) => Err(anyhow::Error::from(e).context("registering the connection")),
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection closed: {e:#}");
            }
            drop(permit);
        });
    }
}

pub type Tls = tokio_rustls::server::TlsStream<TcpStream>;

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    live: LiveHeadend,
    mut ticket: crate::threat::admission::Ticket,
    lane: crate::workers::Lane,
) -> Result<()> {
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
    ticket.handshake_done();
    // `vpn load-balancing`: the director is the node this connection reached
    // on the cluster address.
    let local_ip = tls.get_ref().0.local_addr().ok().map(|a| a.ip());
    let mut parser = RequestParser::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let req = match next_request(&mut tls, &mut parser, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(ReadError::Http(e)) => {
                let resp = e.to_response();
                tls.write_all(&resp.to_bytes()).await?;
                tls.shutdown().await?;
                bail!("bad request from {peer}: {e}");
            }
            Err(ReadError::Io(e)) => return Err(e),
        };
        // One snapshot per request: a reload in between applies to the next.
        let h = live.load_full();
        if req.method == "CONNECT" {
            if req.path == "/CSCOSSLC/tunnel" {
                if let Some(c) = &h.cluster
                    && let Err(e) = cluster_connect(c, &h, &req).await
                {
                    let (code, reason) = match e {
                        crate::cluster::ConnectRefusal::Unknown => (401, "Unauthorized"),
                        _ => (503, "Service Unavailable"),
                    };
                    tracing::info!(%peer, "CONNECT refused: {e}");
                    let resp = Response::new(code, reason)
                        .header("X-Reason", &e.to_string())
                        .body(format!("{e}\n").into_bytes());
                    write_response(&mut tls, &resp).await?;
                    let _ = tls.shutdown().await;
                    return Ok(());
                }
                let leftover = parser.take_remaining();
                ticket.tunnel();
                // The login's 16 KiB read buffer and parser would otherwise
                // live in this future for the whole session (issue 12).
                drop(parser);
                drop(buf);
                // The tunnel takes what it uses; the snapshot goes.
                let cx = tunnel::TunnelContext::new(&h, lane);
                drop(h);
                return tunnel::run(tls, leftover, req, peer, cx).await;
            }
            write_response(&mut tls, &Response::new(404, "Not Found")).await?;
            return Ok(());
        }
        let redirect = match &h.cluster {
            Some(c) => c.lb_redirect(&req, local_ip, h.sessions.len()).await,
            None => None,
        };
        let resp = match redirect {
            Some(r) => r,
            None => route(&req, peer.ip(), &h).await,
        };
        write_response(&mut tls, &resp).await?;
        if req.wants_close() {
            tls.shutdown().await?;
            return Ok(());
        }
    }
}

/// The cluster's part of a CONNECT: own the session (or take it over) first.
async fn cluster_connect(
    c: &crate::cluster::Cluster,
    h: &Headend,
    req: &Request,
) -> Result<(), crate::cluster::ConnectRefusal> {
    let Some(cookie) = req.cookie("webvpn").filter(|c| !c.is_empty()) else {
        // tunnel::run answers this one.
        return Ok(());
    };
    let previous = req
        .header("X-CSTP-Address")
        .and_then(|a| a.trim().parse::<std::net::Ipv4Addr>().ok());
    c.prepare_connect(&h.sessions, &h.config, cookie, previous)
        .await
}

async fn write_response(tls: &mut Tls, resp: &Response) -> Result<()> {
    tls.write_all(&resp.to_bytes()).await?;
    tls.flush().await?;
    Ok(())
}

enum ReadError {
    Http(crate::proto::http::HttpError),
    Io(anyhow::Error),
}

async fn next_request(
    tls: &mut Tls,
    parser: &mut RequestParser,
    buf: &mut [u8],
) -> Result<Option<Request>, ReadError> {
    loop {
        if let Some(r) = parser.next_request().map_err(ReadError::Http)? {
            return Ok(Some(r));
        }
        let limit = if parser.has_partial_request() {
            REQUEST_TIMEOUT
        } else {
            KEEPALIVE_TIMEOUT
        };
        let n = match tokio::time::timeout(limit, tls.read(buf)).await {
            Err(_) => return Err(ReadError::Io(anyhow::anyhow!("request timed out"))),
            Ok(Err(e)) => return Err(ReadError::Io(e.into())),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => n,
        };
        parser
            .feed(buf.get(..n).unwrap_or_default())
            .map_err(ReadError::Http)?;
    }
}

/// Plain HTTP requests on the control channel: the XML login and a small page.
async fn route(req: &Request, client_ip: IpAddr, h: &Headend) -> Response {
    if let Some(resp) = crate::saml_web::route(req, &h.saml, h.cluster.as_deref()).await {
        return resp;
    }
    match req.method.as_str() {
        "POST" => login::handle(req, client_ip, h).await,
        "GET" | "HEAD" => {
            let title = h.config.hostname.as_deref().unwrap_or("headend");
            let body = format!(
                "<!DOCTYPE html><html><head><title>{t}</title></head><body><h1>{t}</h1>\
                 <p>This is an AnyConnect-compatible VPN headend. Connect with an \
                 AnyConnect or openconnect client.</p></body></html>\n",
                t = crate::proto::xmlauth::escape(title)
            );
            Response::new(200, "OK")
                .header("Content-Type", "text/html; charset=utf-8")
                .header("Cache-Control", "no-store")
                .body(if req.method == "HEAD" {
                    Vec::new()
                } else {
                    body.into_bytes()
                })
        }
        _ => Response::new(405, "Method Not Allowed").header("Allow", "GET, POST, CONNECT"),
    }
}

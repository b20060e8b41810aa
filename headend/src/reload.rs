//! `headend reload` / SIGHUP: re-read the whole configuration and apply it
//! without dropping a session.
//!
//! Everything a new login reads (tunnel groups, group-policies, LOCAL users,
//! SAML IdPs and their certificates, the TLS identity, address pools, aaa-server
//! groups, access-lists, `cts role-based sgt-map`, logging) is built from the new
//! file first; any error (a `file:line` from the parser, an unusable certificate,
//! an access-list that does not compile) refuses the reload and changes nothing.
//! Then the new [`Headend`] snapshot is stored: each later request loads it once,
//! so one login step never mixes two configs.
//!
//! Running sessions keep their address, tunnel and tunnel group, even when the
//! pool or tunnel group is gone (ASA lets them run until they log off). A
//! session whose group-policy changed gets its live parts ([`live_policy`]):
//! the vpn-filter (unless RADIUS chose the filter), idle and session timeouts
//! (unless RADIUS set them). On ASA a group-policy change reaches a running
//! session only at its next login; applying it at once is what an operator who
//! edits a vpn-filter wants.
//!
//! RADIUS accounting follows the new aaa-server groups: a session that starts
//! after the reload sends its Start to the group of the new config, a session
//! that started before keeps sending its Interim-Updates and Stop to the group
//! that has its Start (accounting.rs).
//!
//! The dynamic-authorization (CoA) listener takes the new clients and port
//! (dynauth_listener.rs); a port that cannot be bound refuses the reload.
//!
//! Threat detection (`threat-detection service remote-access-*`) and `aaa
//! local authentication attempts max-fail` take their new thresholds; the
//! events seen, shuns and lockouts stay, and LOCAL users added by the reload
//! are tracked for lockout (threat/mod.rs).
//!
//! The metrics endpoint's per-tunnel-group series follow the new tunnel
//! groups (read from the live snapshot at each scrape).
//!
//! Not reloaded (they need a restart, as the reply says when they changed):
//! DTLS on/off, the TUN addresses and MTU, `cts sxp enable` and the SXP
//! listener hold-time.
//!
//! The SSH listener starts with the first `ssh` line and stops with the last
//! (cli/ssh.rs); its port is `--ssh-port`. SXP peers and passwords are
//! reloaded: removed or changed peers' connections close (they reconnect with
//! the new key), unchanged ones keep theirs (sxp_io.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{Config, EffectivePolicy};
use crate::radius_io::RadiusGroup;
use crate::server::{Headend, LiveHeadend};

/// The live parts of a changed group-policy for one running session. `was`
/// and `now` are the group-policy before and after the reload, `current` what
/// the session has (it may differ from `was` where RADIUS set a value at
/// login: Session-Timeout, Idle-Timeout; those stay). Everything else that only
/// matters at connect time (pools, split tunnel, DNS, MTU, DPD) is taken from
/// `now` too, so `show vpn-sessiondb detail` and a reconnect see the new values.
pub fn live_policy(
    was: &EffectivePolicy,
    now: &EffectivePolicy,
    current: &EffectivePolicy,
) -> EffectivePolicy {
    let mut p = now.clone();
    if current.vpn_session_timeout != was.vpn_session_timeout {
        p.vpn_session_timeout = current.vpn_session_timeout;
        p.vpn_session_timeout_min = current.vpn_session_timeout_min;
    }
    if current.vpn_idle_timeout != was.vpn_idle_timeout {
        p.vpn_idle_timeout = current.vpn_idle_timeout;
        p.vpn_idle_timeout_min = current.vpn_idle_timeout_min;
    }
    p
}

/// What changed between two configs in the parts that need a restart.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    let dtls = |c: &Config| {
        std::iter::once(crate::config::DEFAULT_GROUP_POLICY)
            .chain(c.group_policies.keys().map(String::as_str))
            .any(|gp| c.effective_policy(gp).anyconnect_dtls)
    };
    if dtls(old) != dtls(new) {
        v.push("DTLS on/off");
    }
    // By value, not line: lines added above a pool move it without a change.
    let first_pool = |c: &Config| {
        c.ip_local_pools
            .values()
            .next()
            .map(|p| (p.name.clone(), p.first, p.last, p.mask))
    };
    let v6_pools = |c: &Config| {
        c.ipv6_local_pools
            .values()
            .map(|p| (p.name.clone(), p.first, p.prefix_len, p.count))
            .collect::<Vec<_>>()
    };
    if first_pool(old) != first_pool(new) || v6_pools(old) != v6_pools(new) {
        v.push("the TUN interface's addresses (first `ip local pool`, `ipv6 local pool`)");
    }
    // Peers and passwords are reloaded (sxp_io.rs); the listener itself is not.
    if old.cts.sxp_enable != new.cts.sxp_enable
        || old.cts.sxp_listener_hold_time != new.cts.sxp_listener_hold_time
    {
        v.push("cts sxp enable / listener hold-time");
    }
    v
}

/// Re-reads the config file and swaps it in; shared by the admin `reload`
/// command and SIGHUP.
pub struct Reloader {
    live: LiveHeadend,
    path: PathBuf,
    tls_files: Option<(PathBuf, PathBuf)>,
    /// One reload at a time (SIGHUP and the admin socket may race).
    busy: Mutex<()>,
    /// The CoA listener, restarted when its clients or port change.
    dynauth: Option<crate::dynauth_listener::DynAuthControl>,
    /// The SXP listener (with `cts sxp enable` at start), for new peers.
    sxp: Option<Arc<crate::sxp_io::SxpState>>,
    /// The SSH listener, started and stopped by `ssh` lines (set once at start).
    ssh: std::sync::OnceLock<crate::cli::ssh::SshControl>,
}

impl Reloader {
    pub fn new(live: LiveHeadend, path: PathBuf, tls_files: Option<(PathBuf, PathBuf)>) -> Self {
        Self {
            live,
            path,
            tls_files,
            busy: Mutex::new(()),
            dynauth: None,
            sxp: None,
            ssh: std::sync::OnceLock::new(),
        }
    }

    /// Reloads start and stop the SSH listener through `control`.
    pub fn set_ssh(&self, control: crate::cli::ssh::SshControl) {
        let _ = self.ssh.set(control);
    }

    /// Reloads re-apply the SXP peers through `sxp`.
    pub fn with_sxp(mut self, sxp: Option<Arc<crate::sxp_io::SxpState>>) -> Self {
        self.sxp = sxp;
        self
    }

    /// Reloads re-apply the dynamic-authorization listener through `control`.
    pub fn with_dynamic_authorization(
        mut self,
        control: crate::dynauth_listener::DynAuthControl,
    ) -> Self {
        self.dynauth = Some(control);
        self
    }

    /// Re-reads and applies the config. Returns the admin reply (`INFO:`,
    /// `WARNING:` and `ERROR:` lines); the outcome is logged either way.
    pub fn reload(&self) -> String {
        let _one = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let refuse = |e: &dyn std::fmt::Display| {
            tracing::warn!("reload refused, configuration unchanged: {e}");
            format!("ERROR: reload refused, configuration unchanged: {e}\n")
        };
        let cfg = match crate::config::load_file(&self.path) {
            Ok(c) => c,
            Err(e) => return refuse(&e),
        };
        let old = self.live.load_full();
        match self.apply(&old, cfg) {
            Ok(out) => out,
            Err(e) => refuse(&format!("{e:#}")),
        }
    }

    fn apply(&self, old: &Arc<Headend>, cfg: Config) -> anyhow::Result<String> {
        // Everything that can fail, before anything changes.
        let saml = crate::saml_web::SamlState::reloaded(&cfg, &old.saml)?;
        let (tls, server_cert_hash) = crate::server::tls_for(&cfg, self.tls_files.as_ref())?;
        let users = Arc::new(auth::LocalUserDb::new(
            cfg.usernames
                .values()
                .map(|u| (u.name.as_str(), u.password.as_str())),
        ));
        let mut radius = BTreeMap::new();
        for g in cfg.aaa_server_groups.values() {
            let same = old.config.aaa_server_groups.get(&g.name) == Some(g);
            let group = match old.radius.get(&g.name) {
                // Unchanged: keep its socket, dead-server state and counters.
                Some(r) if same => r.clone(),
                _ => spawn_group(g)?,
            };
            radius.insert(g.name.clone(), group);
        }
        // A new CoA port that cannot be bound.
        if let Some(d) = &self.dynauth {
            d.check(&cfg)?;
        }
        if let Some(s) = self.ssh.get() {
            s.check(&cfg)?;
        }
        let summary = old
            .policy
            .reload(&cfg)
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        // Commit: sessions first (pools, live group-policy parts), then the
        // snapshot new requests load.
        let notes = old.sessions.reload(&old.config, &cfg);
        // The audit-session-id prefix follows the first group's NAS-IP-Address,
        // as at start (server.rs), also when the reload adds the first group.
        if let Some(g) = radius.values().next() {
            old.sessions.set_nas_ip(g.nas_ip);
        }
        let dynauth_note = self.dynauth.as_ref().and_then(|d| d.apply(&cfg));
        old.threats.reconfigure(&cfg);
        let sxp_notes = match (&self.sxp, cfg.cts.sxp_enable) {
            (Some(sxp), true) => sxp.reconfigure(&cfg).unwrap_or_else(|e| {
                tracing::warn!("reload: SXP peers: {e:#}");
                vec![format!("SXP peers not all applied: {e:#}")]
            }),
            _ => Vec::new(),
        };
        let restart = needs_restart(&old.config, &cfg);
        let mut out = format!(
            "INFO: configuration and policy reloaded from {}\n",
            self.path.display()
        );
        out.push_str(&summary.to_string());
        for w in &cfg.warnings {
            tracing::warn!("{}:{}: {}", cfg.source, w.line, w.message);
        }
        if crate::syslog::reconfigure(
            &cfg.management.logging,
            cfg.hostname.as_deref().unwrap_or("headend"),
        ) {
            out.push_str("INFO: logging settings re-applied\n");
        }
        for n in dynauth_note.iter().chain(&sxp_notes).chain(&notes) {
            tracing::info!("reload: {n}");
            out.push_str(&format!("INFO: {n}\n"));
        }
        for r in &restart {
            tracing::warn!("reload: {r} changed; takes effect at the next start");
            out.push_str(&format!(
                "WARNING: {r} changed; takes effect at the next start\n"
            ));
        }
        let new = Headend {
            config: Arc::new(cfg),
            users,
            sessions: old.sessions.clone(),
            routes: old.routes.clone(),
            counters: old.counters.clone(),
            dtls: old.dtls.clone(),
            radius,
            saml,
            challenges: old.challenges.clone(),
            policy: old.policy.clone(),
            server_cert_hash,
            threats: old.threats.clone(),
            cluster: old.cluster.clone(),
            tls,
        };
        self.live.store(Arc::new(new));
        let now_live = self.live.load_full();
        if let Some(c) = &now_live.cluster {
            let cfg = &now_live.config;
            c.configure_load_balancing(cfg);
            c.update_dynauth_clients(
                crate::dynauth_listener::DynAuthSettings::from_config(cfg)
                    .as_ref()
                    .map(crate::dynauth_listener::DynAuthSettings::clients)
                    .unwrap_or_default(),
            );
        }
        // After the store: the listener reads the new config when it starts.
        if let Some(n) = self
            .ssh
            .get()
            .and_then(|s| s.apply(&self.live.load().config))
        {
            tracing::info!("reload: {n}");
            out.push_str(&format!("INFO: {n}\n"));
        }
        tracing::info!(
            added = ?summary.added,
            changed = ?summary.changed,
            removed = ?summary.removed,
            sessions_changed = notes.len(),
            "configuration and policy reloaded from {}",
            self.path.display()
        );
        // Configured and downloadable ACLs alike: what the dataplane now has.
        let tables = old.policy.handle.load_full();
        for s in old.sessions.list(Instant::now()) {
            if let Some(f) = s.filter.as_deref().filter(|f| tables.acl(f).is_none()) {
                tracing::warn!(
                    user = %s.username,
                    index = s.index,
                    "session filter {f} is no longer configured: its traffic is dropped until a CoA or a new login"
                );
                out.push_str(&format!(
                    "WARNING: session {} ({}) uses filter {f}, which is no longer configured: its traffic is dropped\n",
                    s.index, s.username
                ));
            }
        }
        Ok(out)
    }
}

/// Starts a new or changed aaa-server group. The reload runs on the admin
/// socket's task or the SIGHUP task, both on the multi-threaded runtime.
fn spawn_group(g: &crate::config::AaaServerGroup) -> anyhow::Result<Arc<RadiusGroup>> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("aaa-server {}: no async runtime", g.name))?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        anyhow::bail!(
            "aaa-server {} is new or changed: restart the headend to apply it",
            g.name
        );
    }
    let group = tokio::task::block_in_place(|| handle.block_on(RadiusGroup::spawn(g)))?;
    tracing::info!(
        "aaa-server {} (RADIUS): {} host(s), NAS-IP-Address {}",
        g.name,
        g.hosts.len(),
        group.nas_ip
    );
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::SessionTable;

    fn cfg(text: &str) -> Config {
        crate::config::parse_str(text, "r.cfg").unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = "\
ip local pool P 198.18.100.10-198.18.100.20 mask 255.255.255.0
access-list A extended permit ip any any
access-list B extended deny ip any any
group-policy G internal
group-policy G attributes
 vpn-filter value A
 vpn-idle-timeout 30
 vpn-session-timeout 600
tunnel-group T type remote-access
tunnel-group T general-attributes
 address-pool P
 default-group-policy G
";

    #[test]
    fn live_policy_takes_the_new_filter_and_timeouts_but_keeps_radius_ones() {
        let old = cfg(BASE);
        let new = cfg(&BASE
            .replace("vpn-filter value A", "vpn-filter value B")
            .replace("vpn-idle-timeout 30", "vpn-idle-timeout 5")
            .replace("vpn-session-timeout 600", "vpn-session-timeout 60"));
        let (was, now) = (old.effective_policy("G"), new.effective_policy("G"));
        // A session that took everything from the group-policy.
        let p = live_policy(&was, &now, &was);
        assert_eq!(p, now);
        assert_eq!(p.vpn_filter.as_deref(), Some("B"));
        // A session whose Session-Timeout came from RADIUS keeps it.
        let mut radius = was.clone();
        radius.vpn_session_timeout = Some(std::time::Duration::from_secs(77));
        let p = live_policy(&was, &now, &radius);
        assert_eq!(
            p.vpn_session_timeout,
            Some(std::time::Duration::from_secs(77))
        );
        assert_eq!(p.vpn_idle_timeout, now.vpn_idle_timeout);
        assert_eq!(p.vpn_filter.as_deref(), Some("B"));
    }

    #[test]
    fn needs_restart_names_dtls_and_tun_changes_only() {
        let old = cfg(BASE);
        assert!(needs_restart(&old, &old).is_empty());
        let new = cfg(&BASE.replace("vpn-filter value A", "vpn-filter value B"));
        assert!(needs_restart(&old, &new).is_empty());
        let new = cfg(&BASE.replace("198.18.100.10-198.18.100.20", "198.18.101.10-198.18.101.20"));
        assert_eq!(needs_restart(&old, &new).len(), 1);
        // Lines added above the pool move it; that is no change.
        let new = cfg(&format!("hostname asa\n!\n{BASE}"));
        assert!(needs_restart(&old, &new).is_empty());
    }

    /// A session that logged in under `c`, attached with an address, and
    /// with the group-policy's filter, as login.rs sets it.
    fn session(
        table: &SessionTable,
        c: &Config,
        user: &str,
    ) -> (u64, std::net::Ipv4Addr, crate::sessions::Attached) {
        let policy = c.effective_policy("G");
        let authz = crate::sessions::SessionAuthz {
            filter: policy.vpn_filter.clone(),
            ..Default::default()
        };
        let (index, cookie) = table
            .login(
                crate::sessions::NewSession {
                    username: user,
                    tunnel_group: "T",
                    group_policy: "G",
                    policy,
                    pools: vec!["P".into()],
                    public_ip: "198.18.0.2".parse().unwrap(),
                    authz,
                    audit_session_id: table.new_audit_session_id(),
                },
                Instant::now(),
            )
            .expect("login");
        let att = table
            .attach(&cookie, "198.18.0.2".parse().unwrap(), None, false)
            .expect("attach");
        (index, att.address, att)
    }

    #[test]
    fn sessions_reload_keeps_addresses_and_applies_the_new_filter() {
        let old = cfg(BASE);
        let table = SessionTable::new(&old);
        let (i1, a1, mut att) = session(&table, &old, "alice");
        // The pool changes (grows), the filter and the idle timeout change.
        let new = cfg(&BASE
            .replace("198.18.100.20", "198.18.100.30")
            .replace("vpn-filter value A", "vpn-filter value B")
            .replace("vpn-idle-timeout 30", "vpn-idle-timeout 5"));
        let notes = table.reload(&old, &new);
        assert_eq!(notes.len(), 1, "{notes:?}");
        let v = table.list(Instant::now());
        let s = v.iter().find(|s| s.index == i1).unwrap();
        assert_eq!(s.assigned_v4, Some(a1), "address kept");
        assert_eq!(s.filter.as_deref(), Some("B"));
        // The live tunnel is told the new timers.
        match att.control.try_recv() {
            Ok(crate::sessions::SessionCommand::Timeouts {
                idle,
                session_deadline,
            }) => {
                assert_eq!(idle, Some(std::time::Duration::from_secs(300)));
                assert!(session_deadline.is_some());
            }
            other => panic!("no Timeouts command: {other:?}"),
        }
        // The kept address is taken in the rebuilt pool: a new login gets another.
        let (_, a2, _) = session(&table, &new, "bob");
        assert_ne!(a1, a2);
        assert_eq!(table.pool_usage("P").unwrap().4, 2);
    }

    #[test]
    fn a_removed_pool_and_group_policy_end_no_session() {
        let old = cfg(BASE);
        let table = SessionTable::new(&old);
        let (i1, a1, _att) = session(&table, &old, "alice");
        let new = cfg("ip local pool Q 198.18.102.10-198.18.102.20 mask 255.255.255.0\n");
        let notes = table.reload(&old, &new);
        assert!(notes[0].contains("no longer configured"), "{notes:?}");
        let v = table.list(Instant::now());
        let s = v.iter().find(|s| s.index == i1).expect("session kept");
        assert_eq!(s.assigned_v4, Some(a1));
        assert_eq!(s.filter.as_deref(), Some("A"), "filter unchanged");
        assert!(table.pool_usage("P").is_none());
    }
}

//! The aggregate-auth login exchange (protocol.md section 1): picks the tunnel
//! group, shows the form, checks the password, creates the session and its cookie.
//! Stateless between requests: the chosen tunnel group travels in `<opaque>` and
//! `<group-select>`, so a reply may arrive on any TLS connection. The one
//! exception is a RADIUS Access-Challenge: its State waits in [`Challenges`]
//! under a random handle that the form's `<opaque>` carries back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{Config, TunnelAuthentication, TunnelGroup};
use crate::proto::http::{Request, Response};
use crate::proto::xmlauth::{self, ClientMessage, MessageKind};
use crate::server::Headend;
use crate::sessions::{NewSession, SessionAuthz};
use crate::threat::tracker::ThreatEvent;
use auth::radius::{self, Authorization, Code};

/// What the login step decided, before it is rendered as XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Show the username/password form for `tunnel_group`, maybe with an error.
    Form {
        tunnel_group: String,
        error: Option<String>,
    },
    /// Nothing can be done for this tunnel group: a form without inputs makes
    /// openconnect stop, with this message.
    Refuse {
        tunnel_group: Option<String>,
        message: String,
    },
    Success {
        cookie: String,
        tunnel_group: String,
        username: String,
    },
    /// A RADIUS Access-Challenge (MFA): ask for the response, the pending login
    /// bound to `handle` (sent back in the opaque).
    Challenge {
        tunnel_group: String,
        handle: String,
        message: String,
    },
    /// Only the group chooser: openconnect re-inits with `<group-select>`
    /// (it never does once it sees an SSO form, so the chooser comes first).
    Chooser { tunnel_group: String },
    /// The SSO form of a SAML tunnel group (external or embedded browser).
    Sso {
        tunnel_group: String,
        login_url: String,
        final_url: String,
        error: Option<String>,
        /// `<sso-v2-browser-mode>external`: the tunnel group enables the external
        /// browser and the client offered it; else the embedded browser (no element).
        external: bool,
    },
}

/// Counts the outcome of a login exchange for the metrics endpoint: forms
/// without an error and SSO/challenge steps are not outcomes yet.
fn record_login(step: &LoginStep) {
    let (tg, result) = match step {
        LoginStep::Success { tunnel_group, .. } => (tunnel_group.as_str(), "success"),
        LoginStep::Form {
            tunnel_group,
            error: Some(_),
        }
        | LoginStep::Sso {
            tunnel_group,
            error: Some(_),
            ..
        } => (tunnel_group.as_str(), "failure"),
        LoginStep::Refuse { tunnel_group, .. } => {
            (tunnel_group.as_deref().unwrap_or(""), "refused")
        }
        _ => return,
    };
    crate::metrics::record_login(tg, result);
}

/// Resolves the tunnel group a message is about, in ASA's order: an explicit
/// group-select (alias), the group carried in opaque, the group-url, then the
/// default (DefaultWEBVPNGroup if configured, else the first alias in the list).
pub fn select_tunnel_group<'c>(cfg: &'c Config, msg: &ClientMessage) -> Option<&'c TunnelGroup> {
    if let Some(sel) = msg.group_select.as_deref().filter(|s| !s.is_empty()) {
        return cfg
            .tunnel_group_for_alias(sel)
            .or_else(|| cfg.tunnel_groups.get(sel));
    }
    if let Some(tg) = msg.opaque_tunnel_group.as_deref()
        && let Some(t) = cfg.tunnel_groups.get(tg)
    {
        return Some(t);
    }
    if let Some(url) = msg.group_access.as_deref()
        && let Some(t) = cfg.tunnel_group_for_url(url)
    {
        return Some(t);
    }
    cfg.tunnel_groups.get("DefaultWEBVPNGroup").or_else(|| {
        cfg.group_list()
            .first()
            .and_then(|(_, tg)| cfg.tunnel_groups.get(tg))
    })
}

pub async fn handle(req: &Request, client_ip: IpAddr, h: &Headend) -> Response {
    let msg = match xmlauth::parse_client(&req.body) {
        Ok(m) => m,
        Err(e) => {
            tracing::info!(%client_ip, "rejected login request: {e}");
            return Response::new(400, "Bad Request")
                .header("Content-Type", "text/plain")
                .body(format!("bad aggregate-auth request: {e}\n"));
        }
    };
    let strap_dh = req.header("X-AnyConnect-STRAP-DH-Pubkey");
    let step = decide(&msg, client_ip, strap_dh, req.header("Host"), h).await;
    record_login(&step);
    render(h, &step)
}

async fn decide(
    msg: &ClientMessage,
    client_ip: IpAddr,
    strap_dh: Option<&str>,
    host: Option<&str>,
    h: &Headend,
) -> LoginStep {
    let cfg = &h.config;
    // A shunned source that still holds a keep-alive connection from before
    // the shun gets no further attempts on it.
    if h.threats.is_shunned(client_ip) {
        tracing::info!(%client_ip, "login refused: the source address is shunned");
        return LoginStep::Refuse {
            tunnel_group: None,
            message: "Login denied.".into(),
        };
    }
    if msg.kind == MessageKind::Init {
        h.threats.record(ThreatEvent::ClientInitiation, client_ip);
    }
    let Some(tg) = select_tunnel_group(cfg, msg) else {
        if let Some(sel) = msg.group_select.as_deref().filter(|s| !s.is_empty()) {
            tracing::info!(%client_ip, "login refused: tunnel group {sel} does not exist or is disabled");
            h.threats.record(ThreatEvent::InvalidVpnAccess, client_ip);
        }
        return LoginStep::Refuse {
            tunnel_group: None,
            message: "No tunnel group is configured for remote access.".into(),
        };
    };
    let name = tg.name.clone();
    if tg.authentication == TunnelAuthentication::Saml {
        return saml_step(msg, client_ip, strap_dh, host, tg, h).await;
    }
    if tg.authentication == TunnelAuthentication::Certificate {
        return LoginStep::Refuse {
            tunnel_group: Some(name),
            message: "Certificate authentication is not supported.".into(),
        };
    }
    if msg.kind == MessageKind::AuthReply
        && let Some(handle) = msg.opaque_context.as_deref()
        && let Some(pending) = h.challenges.take(handle, Instant::now())
    {
        if pending.tunnel_group != name || pending.client_ip != client_ip {
            tracing::warn!(%client_ip, user = %pending.user, tunnel_group = %name, "challenge response refused: it belongs to another tunnel group or client address");
            return LoginStep::Form {
                tunnel_group: name,
                error: Some("Login failed.".into()),
            };
        }
        let Some(answer) = msg.password.as_deref() else {
            return LoginStep::Form {
                tunnel_group: name,
                error: Some("Login failed.".into()),
            };
        };
        let user = pending.user.clone();
        return radius_password_step(h, tg, &user, answer, client_ip, Some(pending)).await;
    }
    if msg.kind != MessageKind::AuthReply {
        return LoginStep::Form {
            tunnel_group: name,
            error: None,
        };
    }
    let (Some(user), Some(password)) = (msg.username.as_deref(), msg.password.as_deref()) else {
        return LoginStep::Form {
            tunnel_group: name,
            error: None,
        };
    };
    let server_group = tg.authentication_server_group.as_deref().unwrap_or("LOCAL");
    if server_group != "LOCAL" {
        return radius_password_step(h, tg, user, password, client_ip, None).await;
    }
    if h.threats.local_user_locked(user) {
        tracing::info!(%client_ip, user, tunnel_group = %name, "login failed: local user is locked out (clear aaa local user lockout)");
        h.threats
            .record(ThreatEvent::AuthenticationFailed, client_ip);
        return LoginStep::Form {
            tunnel_group: name,
            error: Some("Login failed.".into()),
        };
    }
    // LOCAL: PBKDF2 is deliberately slow, keep it off the async workers, and
    // no more at once than there are cores (blocking.rs).
    let check = {
        let (user, password) = (user.to_string(), password.to_string());
        let users = h.users.clone();
        crate::blocking::LOGIN
            .run(move || users.check(&user, &password))
            .await
    };
    if !matches!(check, Ok(auth::PasswordCheck::Accepted)) {
        crate::syslog::emit(crate::syslog::Message::LocalAuthRejected {
            reason: "Invalid password".into(),
            user: user.to_string(),
            user_ip: client_ip,
        });
        tracing::info!(%client_ip, user, tunnel_group = %name, "login failed: wrong username or password (LOCAL)");
        h.threats.local_login_failed(user);
        h.threats
            .record(ThreatEvent::AuthenticationFailed, client_ip);
        return LoginStep::Form {
            tunnel_group: name,
            error: Some("Login failed.".into()),
        };
    }
    h.threats.local_login_succeeded(user);
    crate::syslog::emit(crate::syslog::Message::LocalAuthSuccess {
        user: user.to_string(),
    });
    crate::syslog::emit(crate::syslog::Message::AaaAccept {
        user: user.to_string(),
    });
    let audit_session_id = h.sessions.new_audit_session_id();
    finish(
        h,
        tg,
        user,
        client_ip,
        audit_session_id,
        None,
        server_group,
        None,
    )
    .await
}

/// A login whose password (or, with `pending`, the response to an
/// Access-Challenge) is checked by the tunnel group's RADIUS
/// `authentication-server-group`: Accept goes on to authorization, a Challenge
/// (one-time code, MFA) asks the client for the response, anything else fails.
async fn radius_password_step(
    h: &Headend,
    tg: &crate::config::TunnelGroup,
    user: &str,
    password: &str,
    client_ip: IpAddr,
    pending: Option<PendingChallenge>,
) -> LoginStep {
    let name = tg.name.clone();
    let server_group = tg.authentication_server_group.as_deref().unwrap_or("LOCAL");
    let (audit_session_id, state, rounds) = match pending {
        Some(p) => (p.audit_session_id, Some(p.state), p.rounds),
        None => (h.sessions.new_audit_session_id(), None, 0),
    };
    let Some(group) = h.radius.get(server_group) else {
        tracing::warn!(%client_ip, user, tunnel_group = %name, "login failed: authentication-server-group {server_group} is not a RADIUS group");
        return LoginStep::Form {
            tunnel_group: name,
            error: Some("Login failed: the authentication server is not available.".into()),
        };
    };
    let ctx = radius_context(h, group, user, client_ip, &audit_session_id, &name);
    let request = match radius::pap_authentication(&ctx, password.as_bytes()) {
        Ok(r) => match &state {
            Some(s) => r.with_state(s),
            None => r,
        },
        Err(e) => {
            tracing::info!(%client_ip, user, tunnel_group = %name, "login failed: {e}");
            return LoginStep::Form {
                tunnel_group: name,
                error: Some("Login failed.".into()),
            };
        }
    };
    let radius_authz = match group.request_with_server(request).await {
        Ok((reply, server)) if reply.code == Code::AccessAccept => {
            crate::syslog::emit(crate::syslog::Message::AaaSuccess {
                server,
                user: user.to_string(),
            });
            crate::syslog::emit(crate::syslog::Message::AaaAccept {
                user: user.to_string(),
            });
            Authorization::from_accept(&reply)
        }
        Ok((reply, _)) if reply.code == Code::AccessChallenge => {
            let message = radius::authz::reply_messages(&reply).join(" ");
            let state = reply.attributes.iter().find_map(|a| match a {
                radius::Attribute::State(v) => Some(v.clone()),
                _ => None,
            });
            let Some(state) = state.filter(|_| rounds < MAX_CHALLENGE_ROUNDS) else {
                tracing::info!(%client_ip, user, tunnel_group = %name, "login failed: RADIUS {server_group} sent an Access-Challenge without State or after {MAX_CHALLENGE_ROUNDS} rounds");
                h.threats
                    .record(ThreatEvent::AuthenticationFailed, client_ip);
                return LoginStep::Form {
                    tunnel_group: name,
                    error: Some("Login failed.".into()),
                };
            };
            let pending = PendingChallenge {
                user: user.to_owned(),
                tunnel_group: name.clone(),
                client_ip,
                state,
                audit_session_id,
                rounds: rounds + 1,
                expires: Instant::now() + CHALLENGE_TTL,
            };
            let Some(handle) = h.challenges.insert(pending, Instant::now()) else {
                tracing::warn!(%client_ip, user, tunnel_group = %name, "login failed: too many logins waiting for a challenge response");
                return LoginStep::Form {
                    tunnel_group: name,
                    error: Some("Login failed: try again later.".into()),
                };
            };
            tracing::info!(%client_ip, user, tunnel_group = %name, "RADIUS {server_group} challenges the login: {message}");
            return LoginStep::Challenge {
                tunnel_group: name,
                handle,
                message: if message.is_empty() {
                    "Enter the response.".into()
                } else {
                    message
                },
            };
        }
        Ok((reply, server)) => {
            let why = radius::authz::reply_messages(&reply).join(" ");
            // [U] "AAA failure" is the reason real ASA logs show for a server's
            // Access-Reject (asa-syntax.md section 7 leaves the reason open).
            crate::syslog::emit(crate::syslog::Message::AaaRejected {
                reason: "AAA failure".into(),
                server,
                user: user.to_string(),
                user_ip: client_ip,
            });
            tracing::info!(%client_ip, user, tunnel_group = %name, "login failed: RADIUS {server_group} answered {:?} {why}", reply.code);
            h.threats
                .record(ThreatEvent::AuthenticationFailed, client_ip);
            return LoginStep::Form {
                tunnel_group: name,
                error: Some(if why.is_empty() {
                    "Login failed.".into()
                } else {
                    format!("Login failed: {why}")
                }),
            };
        }
        Err(e) => {
            tracing::warn!(%client_ip, user, tunnel_group = %name, "login failed: RADIUS {server_group}: {e}");
            return LoginStep::Form {
                tunnel_group: name,
                error: Some(server_failure_message("Login failed", "authentication", &e)),
            };
        }
    };
    finish(
        h,
        tg,
        user,
        client_ip,
        audit_session_id,
        Some(radius_authz),
        server_group,
        None,
    )
    .await
}

/// How long a login waits for the response to an Access-Challenge.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(180);
/// Most logins waiting for a response at once (each holds a few hundred bytes).
pub const MAX_PENDING_CHALLENGES: usize = 10_000;
/// Most Access-Challenges in one login.
pub const MAX_CHALLENGE_ROUNDS: u8 = 5;

/// A login waiting for the response to an Access-Challenge.
#[derive(Debug)]
pub struct PendingChallenge {
    user: String,
    tunnel_group: String,
    client_ip: IpAddr,
    state: Vec<u8>,
    audit_session_id: String,
    rounds: u8,
    expires: Instant,
}

/// Logins waiting for a challenge response, by the random handle sent in the
/// form's opaque (`aggauth-handle`). Single use, bounded, expiring.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: std::sync::Mutex<HashMap<String, PendingChallenge>>,
}

impl Challenges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingChallenge>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `p` and returns its handle; `None` when too many are waiting.
    fn insert(&self, p: PendingChallenge, now: Instant) -> Option<String> {
        let mut m = self.lock();
        // Expired entries are swept only when they could be in the way: the
        // table is bounded either way.
        if m.len() >= MAX_PENDING_CHALLENGES {
            m.retain(|_, v| v.expires > now);
            if m.len() >= MAX_PENDING_CHALLENGES {
                return None;
            }
        }
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
        let handle: String = b.iter().map(|x| format!("{x:02x}")).collect();
        m.insert(handle.clone(), p);
        Some(handle)
    }

    /// The login waiting under `handle`, once, if it has not expired.
    fn take(&self, handle: &str, now: Instant) -> Option<PendingChallenge> {
        self.lock().remove(handle).filter(|p| p.expires > now)
    }
}

/// Authorization and session creation, common to every way of authenticating.
#[allow(clippy::too_many_arguments)]
async fn finish(
    h: &Headend,
    tg: &crate::config::TunnelGroup,
    user: &str,
    client_ip: IpAddr,
    audit_session_id: String,
    mut radius_authz: Option<Authorization>,
    authenticated_by: &str,
    saml: Option<auth::saml::SamlLogin>,
) -> LoginStep {
    let cfg = &h.config;
    let name = tg.name.clone();
    // Issue 19: without the cluster's store no address can be handed out safely.
    if let Some(c) = &h.cluster
        && !c.is_healthy()
    {
        tracing::warn!(%client_ip, user, tunnel_group = %name, "login refused: the cluster's session store (Redis) is unreachable");
        return LoginStep::Refuse {
            tunnel_group: Some(name),
            message: "Login denied: the cluster's session store is unreachable. Try again later."
                .into(),
        };
    }
    if let Some(authz_group) = tg.authorization_server_group.as_deref() {
        let Some(group) = h.radius.get(authz_group) else {
            return LoginStep::Refuse {
                tunnel_group: Some(name),
                message: "Login denied: the authorization server is not available.".into(),
            };
        };
        let ctx = radius_context(h, group, user, client_ip, &audit_session_id, &name);
        match group.request(radius::authorize_only(&ctx)).await {
            Ok(reply) if reply.code == Code::AccessAccept => {
                radius_authz = Some(Authorization::from_accept(&reply));
            }
            Ok(reply) => {
                let why = radius::authz::reply_messages(&reply).join(" ");
                tracing::info!(%client_ip, user, tunnel_group = %name, "login refused: authorization by {authz_group} answered {:?} {why}", reply.code);
                return LoginStep::Refuse {
                    tunnel_group: Some(name),
                    message: if why.is_empty() {
                        "Login denied: authorization failed.".into()
                    } else {
                        format!("Login denied: {why}")
                    },
                };
            }
            Err(e) => {
                tracing::warn!(%client_ip, user, tunnel_group = %name, "login refused: authorization by {authz_group}: {e}");
                return LoginStep::Refuse {
                    tunnel_group: Some(name),
                    message: server_failure_message("Login denied", "authorization", &e),
                };
            }
        }
    }
    // Group-policy precedence (asa-aaa.md): RADIUS Class OU= / ASA-Group-Policy,
    // then the tunnel group's default, then DfltGrpPolicy.
    let default_gp = tg
        .default_group_policy
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_GROUP_POLICY.to_string());
    let gp_name = match radius_authz.as_ref().and_then(|a| a.group_policy.clone()) {
        Some(gp)
            if cfg.group_policies.contains_key(&gp)
                || gp == crate::config::DEFAULT_GROUP_POLICY =>
        {
            gp
        }
        Some(gp) => {
            tracing::warn!(user, tunnel_group = %name, "RADIUS named group-policy {gp}, which is not configured; using {default_gp}");
            default_gp
        }
        None => default_gp,
    };
    let mut policy = cfg.effective_policy(&gp_name);
    if !policy
        .vpn_tunnel_protocols
        .iter()
        .any(|p| p == "ssl-client")
    {
        tracing::info!(%client_ip, user, tunnel_group = %name, group_policy = %gp_name, "login refused: vpn-tunnel-protocol does not include ssl-client");
        return LoginStep::Refuse {
            tunnel_group: Some(name),
            message: "Login denied: SSL VPN is not allowed by your group policy.".into(),
        };
    }
    let mut authz = SessionAuthz {
        filter: policy.vpn_filter.clone(),
        accounting_group: tg
            .accounting_server_group
            .clone()
            .filter(|g| h.radius.contains_key(g)),
        ..SessionAuthz::default()
    };
    if let Some(a) = &radius_authz {
        // RADIUS attributes beat the group-policy's.
        if let Some(t) = a.session_timeout {
            policy.vpn_session_timeout = Some(t);
        }
        if let Some(t) = a.idle_timeout {
            policy.vpn_idle_timeout = Some(t);
        }
        if let Some(n) = a.simultaneous_logins {
            policy.vpn_simultaneous_logins = n;
        }
        if let Some(f) = &a.filter_id {
            if h.policy.handle.load().acl(f).is_none() {
                tracing::warn!(user, tunnel_group = %name, "login refused: RADIUS Filter-Id {f} names no configured access-list");
                return LoginStep::Refuse {
                    tunnel_group: Some(name),
                    message: "Login denied: the filter assigned by the authorization server is not configured.".into(),
                };
            }
            authz.filter = Some(f.clone());
        }
        authz.downloadable_aces = a.inacl.clone();
        if let Some(acl) = &a.downloadable_acl {
            // A named (ISE) downloadable ACL wins over inline entries. Its name
            // changes with its content: fetch it only if no session has it.
            if !a.inacl.is_empty() {
                tracing::warn!(user, tunnel_group = %name, "RADIUS sent both ip:inacl entries and the downloadable ACL {acl}; using {acl}");
            }
            authz.downloadable_aces = Vec::new();
            if !h.policy.has_downloadable(acl) {
                let group = tg
                    .authorization_server_group
                    .as_deref()
                    .or(tg.authentication_server_group.as_deref())
                    .and_then(|g| h.radius.get(g));
                let fetched = match group {
                    Some(g) => crate::radius_io::download_acl(g, acl).await,
                    None => Err("no RADIUS server group to fetch it from".into()),
                };
                match fetched {
                    Ok(entries) => {
                        tracing::info!(user, tunnel_group = %name, acl = %acl, entries = entries.len(), "downloadable access-list fetched");
                        authz.downloadable_aces = entries;
                    }
                    Err(e) => {
                        tracing::warn!(user, tunnel_group = %name, "login refused: downloadable access-list {acl} could not be fetched: {e}");
                        return LoginStep::Refuse {
                            tunnel_group: Some(name),
                            message: "Login denied: the access list from the authorization server could not be downloaded.".into(),
                        };
                    }
                }
            }
            authz.downloadable_name = Some(acl.clone());
        }
        authz.sgt = a.sgt;
        authz.classes = a.classes.clone();
        authz.framed_ip = a.framed_ip;
        for w in &a.warnings {
            tracing::warn!(user, tunnel_group = %name, "RADIUS attribute ignored: {w:?}");
        }
    }
    if let Some(login) = &saml {
        // The VPN session must not outlive the IdP's session.
        if let Some(until) = login.session_not_on_or_after
            && let Ok(left) = until.duration_since(std::time::SystemTime::now())
        {
            policy.vpn_session_timeout =
                Some(policy.vpn_session_timeout.map_or(left, |t| t.min(left)));
        }
        authz.saml_attributes = login.attributes.clone();
    }
    let pools = cfg
        .address_pools_for(tg, &policy)
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let new = NewSession {
        username: user,
        tunnel_group: &name,
        group_policy: &gp_name,
        policy,
        pools,
        public_ip: client_ip,
        authz,
        audit_session_id,
    };
    match h.sessions.login(new, Instant::now()) {
        Ok((index, cookie)) => {
            tracing::info!(%client_ip, user, tunnel_group = %name, group_policy = %gp_name, index, "login succeeded ({authenticated_by})");
            h.threats.login_succeeded(client_ip);
            LoginStep::Success {
                cookie,
                tunnel_group: name,
                username: user.to_string(),
            }
        }
        Err(e) => {
            tracing::info!(%client_ip, user, tunnel_group = %name, "login refused: {e}");
            LoginStep::Refuse {
                tunnel_group: Some(name),
                message: format!("Login denied: {e}."),
            }
        }
    }
}

fn radius_context<'a>(
    h: &'a Headend,
    group: &crate::radius_io::RadiusGroup,
    user: &'a str,
    client_ip: IpAddr,
    audit_session_id: &'a str,
    tunnel_group: &'a str,
) -> radius::SessionContext<'a> {
    radius::SessionContext {
        user_name: user,
        nas_ip: group.nas_ip,
        nas_identifier: h.config.hostname.as_deref(),
        client_ip,
        audit_session_id,
        tunnel_group,
    }
}

fn render(h: &Headend, step: &LoginStep) -> Response {
    let cfg = &h.config;
    let xml_response = |body: String| {
        Response::new(200, "OK")
            .header("Content-Type", "text/xml")
            .header("Cache-Control", "no-store")
            .header("X-Transcend-Version", "1")
            .body(body.into_bytes())
    };
    // (alias, tunnel group) pairs; on the wire, as on ASA, both the option value
    // and its label are the alias (`--authgroup` matches labels).
    let aliases = if cfg.webvpn.tunnel_group_list_enable {
        cfg.group_list()
    } else {
        Vec::new()
    };
    let alias_of = |tg: &str| {
        aliases
            .iter()
            .find(|(_, t)| t == tg)
            .map(|(a, _)| a.clone())
    };
    let group_list: Vec<(String, String)> = aliases
        .iter()
        .map(|(a, _)| (a.clone(), a.clone()))
        .collect();
    match step {
        LoginStep::Form {
            tunnel_group,
            error,
        } => xml_response(xmlauth::render_password_form(
            tunnel_group,
            &group_list,
            alias_of(tunnel_group).as_deref(),
            error.as_deref(),
        )),
        LoginStep::Refuse {
            tunnel_group,
            message,
        } => xml_response(xmlauth::render_refusal(tunnel_group.as_deref(), message)),
        LoginStep::Success { cookie, .. } => {
            xml_response(xmlauth::render_success(cookie, &h.server_cert_hash)).header(
                "Set-Cookie",
                &format!("webvpn={cookie}; Secure; HttpOnly; path=/"),
            )
        }
        LoginStep::Challenge {
            tunnel_group,
            handle,
            message,
        } => xml_response(
            xmlauth::AuthRequestForm {
                opaque_tunnel_group: Some(tunnel_group.clone()),
                opaque_context: Some(handle.clone()),
                inputs: xmlauth::FormInputs::Challenge,
                ..xmlauth::AuthRequestForm::password("Login", message.clone())
            }
            .render(),
        ),
        LoginStep::Chooser { tunnel_group } => xml_response(
            xmlauth::AuthRequestForm {
                opaque_tunnel_group: Some(tunnel_group.clone()),
                group_list: group_list.clone(),
                selected: alias_of(tunnel_group),
                inputs: xmlauth::FormInputs::None,
                ..xmlauth::AuthRequestForm::password("Login", "Please select your group.")
            }
            .render(),
        ),
        LoginStep::Sso {
            tunnel_group,
            login_url,
            final_url,
            error,
            external,
        } => xml_response(
            xmlauth::AuthRequestForm {
                error: error.clone(),
                opaque_tunnel_group: Some(tunnel_group.clone()),
                inputs: xmlauth::FormInputs::Sso(if *external {
                    xmlauth::SsoLogin::external(login_url.clone(), final_url.clone())
                } else {
                    xmlauth::SsoLogin::embedded(login_url.clone(), final_url.clone())
                }),
                ..xmlauth::AuthRequestForm::password(
                    "Login",
                    "Please complete the authentication process in the browser.",
                )
            }
            .render(),
        ),
    }
}

/// A login to a SAML tunnel group: the chooser, the SSO form, or the
/// `<sso-token>` reply that completes it.
async fn saml_step(
    msg: &ClientMessage,
    client_ip: IpAddr,
    strap_dh: Option<&str>,
    host: Option<&str>,
    tg: &crate::config::TunnelGroup,
    h: &Headend,
) -> LoginStep {
    let name = tg.name.clone();
    // ASA uses the client's embedded browser unless the tunnel group enables the
    // external one (9.17+), and then only for a client that offers it.
    let external =
        tg.saml_external_browser && msg.has_capability("single-sign-on-external-browser");
    // Seal for the STRAP key only in the external-browser flow, on every SSO form
    // (also the one that follows a refused token).
    let strap_dh = external_key(msg, strap_dh).filter(|_| external);
    let Some(sp) = h.saml.sp(&name, host) else {
        return LoginStep::Refuse {
            tunnel_group: Some(name),
            message: "SAML is not configured for this tunnel group.".into(),
        };
    };
    let sp = &*sp;
    if msg.kind == MessageKind::AuthReply
        && let Some(token) = msg.sso_token.as_deref()
    {
        let grant = match crate::saml_web::redeem_token(&h.saml, h.cluster.as_deref(), token).await
        {
            Ok(g) if g.tunnel_group == name => g,
            Ok(g) => {
                tracing::warn!(%client_ip, tunnel_group = %name, "SSO token for tunnel group {} presented to {name}", g.tunnel_group);
                h.threats
                    .record(ThreatEvent::AuthenticationFailed, client_ip);
                return sso_form(
                    h,
                    sp,
                    &name,
                    strap_dh,
                    external,
                    Some("Login failed: the SSO token belongs to another group.".into()),
                );
            }
            Err(e) => {
                tracing::info!(%client_ip, tunnel_group = %name, "SSO token refused: {e}");
                h.threats
                    .record(ThreatEvent::AuthenticationFailed, client_ip);
                return sso_form(
                    h,
                    sp,
                    &name,
                    strap_dh,
                    external,
                    Some("Login failed: the SSO token is not valid. Please log in again.".into()),
                );
            }
        };
        let user = grant.login.name_id.clone();
        let audit_session_id = h.sessions.new_audit_session_id();
        return finish(
            h,
            tg,
            &user,
            client_ip,
            audit_session_id,
            None,
            "SAML",
            Some(grant.login),
        )
        .await;
    }
    // The first init without an explicit group: show the chooser so that the
    // client can pick another group before SSO starts.
    if msg.kind == MessageKind::Init
        && msg.group_select.is_none()
        && h.config.webvpn.tunnel_group_list_enable
        && h.config.group_list().len() > 1
    {
        return LoginStep::Chooser { tunnel_group: name };
    }
    sso_form(h, sp, &name, strap_dh, external, None)
}

/// The STRAP key to seal the token for, if the client runs an external
/// browser; embedded-browser clients read the `acSamlv2Token` cookie instead.
fn external_key<'a>(msg: &ClientMessage, strap_dh: Option<&'a str>) -> Option<&'a str> {
    strap_dh.filter(|_| msg.has_capability("single-sign-on-external-browser"))
}

fn sso_form(
    h: &Headend,
    sp: &auth::saml::SamlSp,
    tunnel_group: &str,
    strap_dh: Option<&str>,
    external: bool,
    error: Option<String>,
) -> LoginStep {
    let context = crate::saml_web::SsoContext {
        tunnel_group: tunnel_group.to_string(),
        strap_dh: strap_dh.map(str::to_string),
    };
    let ctx = h
        .saml
        .contexts
        .mint(std::time::Instant::now(), context.clone());
    // The IdP may post to another node's ACS (cluster/saml.rs).
    if let Some(c) = &h.cluster {
        c.saml_publish_context(&ctx, &context, crate::saml_web::CONTEXT_TTL);
    }
    let base = sp.config().entity_id();
    let base = base
        .split("/saml/sp/metadata/")
        .next()
        .unwrap_or_default()
        .to_string();
    LoginStep::Sso {
        tunnel_group: tunnel_group.to_string(),
        login_url: format!("{base}/+CSCOE+/saml/sp/login?tgname={tunnel_group}&ctx={ctx}"),
        final_url: format!("{base}/+CSCOE+/saml_ac_login.html"),
        error,
        external,
    }
}

/// What the client is told when a RADIUS request failed: "not available" only
/// when no server answered; a server whose answer was refused (unsigned, wrong
/// secret) is named as such, so the admin looks at the right thing.
fn server_failure_message(prefix: &str, what: &str, e: &auth::radius::RadiusError) -> String {
    match e {
        auth::radius::RadiusError::ReplyRefused { .. } => format!(
            "{prefix}: the {what} server answered, but its answer was refused (not signed or not authentic; see the headend log)."
        ),
        _ => format!("{prefix}: the {what} server is not available."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
webvpn
 tunnel-group-list enable
tunnel-group A type remote-access
tunnel-group A webvpn-attributes
 group-alias alpha enable
 group-url https://vpn.example.com/alpha enable
tunnel-group B type remote-access
tunnel-group B webvpn-attributes
 group-alias beta enable
";

    fn msg(
        group_select: Option<&str>,
        opaque: Option<&str>,
        access: Option<&str>,
    ) -> ClientMessage {
        ClientMessage {
            kind: MessageKind::Init,
            group_access: access.map(str::to_owned),
            group_select: group_select.map(str::to_owned),
            opaque: None,
            opaque_tunnel_group: opaque.map(str::to_owned),
            opaque_context: None,
            username: None,
            password: None,
            sso_token: None,
            other_auth_fields: Vec::new(),
            version: None,
            device_id: None,
            capabilities: Vec::new(),
        }
    }

    fn pick(cfg: &Config, m: &ClientMessage) -> Option<String> {
        select_tunnel_group(cfg, m).map(|t| t.name.clone())
    }

    #[test]
    fn tunnel_group_selection_order() {
        let cfg = crate::config::parse_str(CFG, "t.cfg").unwrap();
        // Default: first alias of the list.
        assert_eq!(pick(&cfg, &msg(None, None, None)).as_deref(), Some("A"));
        // group-select by alias wins over everything.
        assert_eq!(
            pick(
                &cfg,
                &msg(
                    Some("beta"),
                    Some("A"),
                    Some("https://vpn.example.com/alpha")
                )
            )
            .as_deref(),
            Some("B")
        );
        // opaque carries the group between requests.
        assert_eq!(
            pick(&cfg, &msg(None, Some("B"), None)).as_deref(),
            Some("B")
        );
        // group-url.
        assert_eq!(
            pick(
                &cfg,
                &msg(None, None, Some("https://vpn.example.com/alpha"))
            )
            .as_deref(),
            Some("A")
        );
        // An unknown alias selects nothing rather than silently another group.
        assert_eq!(pick(&cfg, &msg(Some("gamma"), None, None)), None);
    }

    fn pending(tg: &str, expires: Instant) -> PendingChallenge {
        PendingChallenge {
            user: "dana".into(),
            tunnel_group: tg.into(),
            client_ip: "198.18.0.2".parse().unwrap(),
            state: b"s".to_vec(),
            audit_session_id: "a".into(),
            rounds: 1,
            expires,
        }
    }

    #[test]
    fn challenges_are_single_use_expiring_and_bounded() {
        let c = Challenges::default();
        let now = Instant::now();
        let h1 = c.insert(pending("MFA", now + CHALLENGE_TTL), now).unwrap();
        let h2 = c.insert(pending("MFA", now + CHALLENGE_TTL), now).unwrap();
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 32);
        assert!(c.take("not-a-handle", now).is_none());
        assert_eq!(c.take(&h1, now).unwrap().user, "dana");
        assert!(c.take(&h1, now).is_none(), "single use");
        assert!(
            c.take(&h2, now + CHALLENGE_TTL).is_none(),
            "expired at its deadline"
        );
        // Full: refused; expired entries make room again.
        for _ in 0..MAX_PENDING_CHALLENGES {
            c.insert(pending("MFA", now + Duration::from_secs(1)), now)
                .unwrap();
        }
        assert!(c.insert(pending("MFA", now + CHALLENGE_TTL), now).is_none());
        let later = now + Duration::from_secs(2);
        assert!(
            c.insert(pending("MFA", later + CHALLENGE_TTL), later)
                .is_some()
        );
    }
}

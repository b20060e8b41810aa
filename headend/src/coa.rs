//! ISE Change of Authorization that needs RADIUS round trips (asa-aaa.md §3):
//!
//! - `subscriber:command=reauthenticate` (posture, profiling, a policy change on
//!   ISE): the session's authorization is asked again (authorize-only, as at
//!   login) and the answer applied live: group-policy and its filter and
//!   timeouts, SGT, Filter-Id, downloadable ACL. An Access-Reject ends the session
//!   (ISE no longer authorizes it); no answer leaves it as it was.
//! - A CoA naming an ISE downloadable ACL (`ACS:CiscoSecure-Defined-ACL`): the ACL
//!   is fetched as at login, unless a session already has it, and becomes the
//!   filter of the sessions the CoA selects.
//!
//! Both are acknowledged once the sessions are found (CoA-ACK; CoA-NAK 503
//! Session-Context-Not-Found otherwise, 405 Unsupported-Service for other
//! commands) and applied right after, as ASA does: the new authorization arrives
//! in the Access-Accept that follows, which is what ISE waits for. Everything else
//! (SGT, Filter-Id, `ip:inacl` entries) is applied before the answer by
//! `SessionTable::dynamic_authorization`.

use std::sync::Arc;

use auth::radius::{
    self, Authorization, Code, DynAuthKind, DynAuthRequest, ErrorCause, SessionContext,
};

use crate::server::Headend;
use crate::sessions::{EndReason, LogoffSelector};

/// Decides a CoA / Disconnect-Request; spawns the RADIUS work it needs.
pub fn handle(h: &Arc<Headend>, req: &DynAuthRequest) -> Result<(), ErrorCause> {
    let named_acl = req.changes.downloadable_acl.clone();
    let deferred = req.kind == DynAuthKind::Coa && (req.command.is_some() || named_acl.is_some());
    if !deferred {
        let policy = h.policy.clone();
        return h
            .sessions
            .dynamic_authorization(req, |acl| policy.handle.load().acl(acl).is_some());
    }
    match req.command.as_deref() {
        None | Some("reauthenticate") => {}
        Some(other) => {
            tracing::info!("CoA command `{other}` is not supported");
            return Err(ErrorCause::UnsupportedService);
        }
    }
    if req.selectors.is_empty() {
        return Err(ErrorCause::MissingAttribute);
    }
    let sessions = h.sessions.select(&req.selectors);
    if sessions.is_empty() {
        return Err(ErrorCause::SessionContextNotFound);
    }
    for index in sessions {
        let h = h.clone();
        let named_acl = named_acl.clone();
        let reauth = req.command.is_some();
        tokio::spawn(async move {
            if reauth {
                reauthenticate(&h, index).await;
            } else if let Some(acl) = named_acl {
                push_named_acl(&h, index, &acl).await;
            }
        });
    }
    Ok(())
}

/// The RADIUS group a session's authorization comes from.
fn authz_group(h: &Headend, tunnel_group: &str) -> Option<Arc<crate::radius_io::RadiusGroup>> {
    let tg = h.config.tunnel_groups.get(tunnel_group)?;
    tg.authorization_server_group
        .as_deref()
        .or(tg.authentication_server_group.as_deref())
        .and_then(|g| h.radius.get(g))
        .cloned()
}

/// Installs downloadable ACL `name` (fetched from `group` unless installed)
/// with `inline` entries when it has no name; returns the installed name.
async fn install_acl(
    h: &Headend,
    group: Option<&crate::radius_io::RadiusGroup>,
    user: &str,
    named: Option<&str>,
    inline: &[String],
) -> Result<Option<String>, String> {
    let (name, entries) = match named {
        Some(n) if h.policy.has_downloadable(n) => (n.to_string(), Vec::new()),
        Some(n) => {
            let g = group.ok_or("no RADIUS server group to fetch it from")?;
            (n.to_string(), crate::radius_io::download_acl(g, n).await?)
        }
        None if inline.is_empty() => return Ok(None),
        None => (
            crate::policy_compile::downloadable_name(user, inline),
            inline.to_vec(),
        ),
    };
    h.policy.acquire_downloadable(&name, &entries)?;
    Ok(Some(name))
}

async fn push_named_acl(h: &Headend, index: u64, acl: &str) {
    let Some((user, tg, _, _)) = h.sessions.identity(index) else {
        return;
    };
    let group = authz_group(h, &tg);
    match install_acl(h, group.as_deref(), &user, Some(acl), &[]).await {
        Ok(name) => {
            h.sessions.reauthorize(index, None, None, None, name);
        }
        Err(e) => {
            tracing::warn!(
                user,
                index,
                "CoA: downloadable access-list {acl} could not be installed: {e}; the session keeps its filter"
            );
        }
    }
}

async fn reauthenticate(h: &Headend, index: u64) {
    let Some((user, tg_name, public_ip, audit)) = h.sessions.identity(index) else {
        return;
    };
    let Some(group) = authz_group(h, &tg_name) else {
        tracing::warn!(user, index, tunnel_group = %tg_name, "CoA reauthenticate: the tunnel group has no RADIUS authorization server group");
        return;
    };
    let ctx = SessionContext {
        user_name: &user,
        nas_ip: group.nas_ip,
        nas_identifier: h.config.hostname.as_deref(),
        client_ip: public_ip,
        audit_session_id: &audit,
        tunnel_group: &tg_name,
    };
    let reply = match group.request(radius::authorize_only(&ctx)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                user,
                index,
                "CoA reauthenticate: {e}; the session keeps its authorization"
            );
            return;
        }
    };
    if reply.code != Code::AccessAccept {
        tracing::info!(
            user,
            index,
            "CoA reauthenticate: {} answered {:?}; ending the session",
            group.name,
            reply.code
        );
        h.sessions
            .logoff(LogoffSelector::Index(index), EndReason::RadiusDisconnect);
        return;
    }
    let a = Authorization::from_accept(&reply);
    for w in &a.warnings {
        tracing::warn!(user, index, "RADIUS attribute ignored: {w:?}");
    }
    let cfg = &h.config;
    let tg = cfg.tunnel_groups.get(&tg_name);
    // The same precedence as at login: Class OU= / ASA-Group-Policy, then the
    // tunnel group's default group-policy.
    let gp = a
        .group_policy
        .clone()
        .filter(|gp| {
            cfg.group_policies.contains_key(gp) || gp == crate::config::DEFAULT_GROUP_POLICY
        })
        .or_else(|| tg.and_then(|t| t.default_group_policy.clone()))
        .unwrap_or_else(|| crate::config::DEFAULT_GROUP_POLICY.to_string());
    let mut policy = cfg.effective_policy(&gp);
    if let Some(t) = a.session_timeout {
        policy.vpn_session_timeout = Some(t);
    }
    if let Some(t) = a.idle_timeout {
        policy.vpn_idle_timeout = Some(t);
    }
    let filter_id = a
        .filter_id
        .clone()
        .filter(|f| h.policy.handle.load().acl(f).is_some());
    if let (Some(f), None) = (&a.filter_id, &filter_id) {
        tracing::warn!(
            user,
            index,
            "CoA reauthenticate: Filter-Id {f} names no configured access-list; ignored"
        );
    }
    let acl = match install_acl(
        h,
        Some(&group),
        &user,
        a.downloadable_acl.as_deref(),
        &a.inacl,
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(
                user,
                index,
                "CoA reauthenticate: downloadable access-list refused: {e}; ending the session"
            );
            h.sessions
                .logoff(LogoffSelector::Index(index), EndReason::RadiusDisconnect);
            return;
        }
    };
    tracing::info!(user, index, group_policy = %gp, sgt = ?a.sgt, "CoA reauthenticate: new authorization applied");
    h.sessions
        .reauthorize(index, Some((gp, policy)), a.sgt, filter_id, acl);
}

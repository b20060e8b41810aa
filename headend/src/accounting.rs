//! RADIUS accounting (RFC 2866): turns the session table's events into
//! Start / Interim-Update / Stop requests for the tunnel group's
//! `accounting-server-group`, with Class echoed and 64-bit counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use auth::radius::{self, AccountingRecord, AcctStatusType, Code, SessionContext};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::radius_io::RadiusGroup;
use crate::sessions::AcctEvent;

/// Sends accounting until the event stream closes, then waits for what is in
/// flight (each request is bounded by its group's timeouts).
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<AcctEvent>,
    groups: BTreeMap<String, Arc<RadiusGroup>>,
    hostname: Option<String>,
    journal: Option<Arc<crate::acct_journal::AcctJournal>>,
) {
    let mut in_flight = JoinSet::new();
    while let Some(ev) = rx.recv().await {
        if let Some(j) = &journal {
            // A Stop is journaled before it is sent: after a crash, never a
            // second Stop for this session (acct_journal.rs).
            let r = match ev.status {
                AcctStatusType::Stop => j.ended(&ev.acct_session_id),
                AcctStatusType::InterimUpdate => j.checkpoint(std::slice::from_ref(&ev)),
                _ => Ok(()),
            };
            if let Err(e) = r {
                tracing::error!(user = %ev.username, session = %ev.acct_session_id, "accounting journal: {e}");
            }
        }
        let Some(group) = groups.get(&ev.group).cloned() else {
            tracing::warn!(group = %ev.group, "accounting-server-group is not a RADIUS group; record dropped");
            continue;
        };
        let hostname = hostname.clone();
        in_flight.spawn(async move { send(&group, &ev, hostname.as_deref()).await });
        // Reap finished requests so the set stays small.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

async fn send(group: &RadiusGroup, ev: &AcctEvent, hostname: Option<&str>) {
    let record = AccountingRecord {
        status: ev.status,
        context: SessionContext {
            user_name: &ev.username,
            nas_ip: group.nas_ip,
            nas_identifier: hostname,
            client_ip: ev.public_ip,
            audit_session_id: &ev.audit_session_id,
            tunnel_group: &ev.tunnel_group,
        },
        acct_session_id: &ev.acct_session_id,
        framed_ip: ev.framed_ip,
        framed_ipv6: ev.framed_ipv6,
        classes: &ev.classes,
        counters: Some(ev.counters),
        session_time: Some(ev.session_time),
        terminate_cause: ev.terminate_cause,
        event_timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as u32),
    };
    match group.request(radius::accounting(&record)).await {
        Ok(reply) if reply.code == Code::AccountingResponse => {
            tracing::debug!(user = %ev.username, session = %ev.acct_session_id, status = ?ev.status, "accounting acknowledged");
        }
        Ok(reply) => {
            tracing::warn!(user = %ev.username, session = %ev.acct_session_id, "accounting answered with {:?}", reply.code)
        }
        Err(e) => {
            tracing::warn!(user = %ev.username, session = %ev.acct_session_id, status = ?ev.status, "accounting lost: {e}")
        }
    }
}

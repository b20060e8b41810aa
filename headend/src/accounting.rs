//! RADIUS accounting (RFC 2866): turns the session table's events into
//! Start / Interim-Update / Stop requests for the tunnel group's
//! `accounting-server-group`, with Class echoed and 64-bit counters.
//!
//! The groups come from the live config ([`GroupSource`]): after a reload a
//! session that starts uses the new or changed aaa-server group. A session
//! keeps the group it started with for its Interim-Updates and its Stop, even
//! when the reload changed or removed that group (its RADIUS client lives on
//! until the Stop is sent), so the server that saw the Start sees the Stop.

use std::collections::HashMap;
use std::sync::Arc;

use auth::radius::{self, AccountingRecord, AcctStatusType, Code, SessionContext};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::radius_io::RadiusGroup;
use crate::sessions::AcctEvent;

/// The running aaa-server group of a name and the NAS-Identifier (hostname),
/// as of now: the server's live snapshot, which a reload replaces.
pub type GroupSource =
    Arc<dyn Fn(&str) -> (Option<Arc<RadiusGroup>>, Option<String>) + Send + Sync>;

/// Sends accounting until the event stream closes, then waits for what is in
/// flight (each request is bounded by its group's timeouts).
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<AcctEvent>,
    groups: GroupSource,
    journal: Option<Arc<crate::acct_journal::AcctJournal>>,
) {
    let mut in_flight = JoinSet::new();
    // Acct-Session-Id -> the group (and NAS-Identifier) its Start went to.
    let mut started: HashMap<String, (Arc<RadiusGroup>, Option<String>)> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        if let Some(j) = &journal {
            // A Stop is journaled before it is sent: after a crash, never a
            // second Stop for this session (acct_journal.rs). A Start was
            // written by the session table; its sync may still be running
            // there, and no Start leaves before it is on disk.
            let r = match ev.status {
                AcctStatusType::Start => j.sync_written(),
                AcctStatusType::Stop => j.ended(&ev.acct_session_id),
                AcctStatusType::InterimUpdate => j.checkpoint(std::slice::from_ref(&ev)),
                _ => Ok(()),
            };
            if let Err(e) = r {
                tracing::error!(user = %ev.username, session = %ev.acct_session_id, "accounting journal: {e}");
            }
        }
        let pinned = match ev.status {
            AcctStatusType::Stop => started.remove(&ev.acct_session_id),
            _ => started.get(&ev.acct_session_id).cloned(),
        };
        // Not started here (a Stop recovered from the journal): the group of
        // that name now.
        let (group, hostname) = match pinned {
            Some(p) => p,
            None => match groups(&ev.group) {
                (Some(g), hostname) => (g, hostname),
                (None, _) => {
                    tracing::warn!(group = %ev.group, "accounting-server-group is not a RADIUS group; record dropped");
                    continue;
                }
            },
        };
        if matches!(ev.status, AcctStatusType::Start) {
            started.insert(
                ev.acct_session_id.clone(),
                (group.clone(), hostname.clone()),
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use auth::radius::{Attribute, Packet};
    use std::sync::Mutex;
    use tokio::net::UdpSocket;

    const SECRET: &[u8] = b"s3cret";

    /// An accounting server that answers every request and reports its
    /// (Acct-Status-Type, Acct-Session-Id).
    async fn server() -> (u16, std::sync::mpsc::Receiver<(AcctStatusType, String)>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // Bounded: more than any test sends.
            for _ in 0..32 {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let req = Packet::decode(&buf[..len]).unwrap();
                let status = req.attributes.iter().find_map(|a| match a {
                    Attribute::AcctStatusType(s) => Some(*s),
                    _ => None,
                });
                let id = req.attributes.iter().find_map(|a| match a {
                    Attribute::AcctSessionId(s) => Some(s.clone()),
                    _ => None,
                });
                let _ = tx.send((status.unwrap(), id.unwrap()));
                let reply = Packet {
                    code: Code::AccountingResponse,
                    identifier: req.identifier,
                    authenticator: [0; 16],
                    attributes: vec![],
                };
                let bytes = reply.encode_reply(&req.authenticator, SECRET).unwrap();
                let _ = sock.send_to(&bytes, from).await;
            }
        });
        (port, rx)
    }

    async fn group(port: u16) -> Arc<RadiusGroup> {
        let cfg = crate::config::parse_str(
            &format!(
                "aaa-server ACCT protocol radius\naaa-server ACCT (inside) host 127.0.0.1\n key s3cret\n accounting-port {port}\n timeout 2\n"
            ),
            "t.cfg",
        )
        .unwrap();
        RadiusGroup::spawn(&cfg.aaa_server_groups["ACCT"])
            .await
            .unwrap()
    }

    fn event(status: AcctStatusType, id: &str) -> AcctEvent {
        AcctEvent {
            status,
            terminate_cause: None,
            group: "ACCT".into(),
            username: "alice".into(),
            tunnel_group: "TG".into(),
            public_ip: "198.18.0.2".parse().unwrap(),
            audit_session_id: "c612".into(),
            acct_session_id: id.into(),
            framed_ip: None,
            framed_ipv6: None,
            classes: vec![],
            counters: Default::default(),
            session_time: 1,
        }
    }

    fn drain(rx: &std::sync::mpsc::Receiver<(AcctStatusType, String)>) -> Vec<String> {
        let mut v: Vec<String> = rx.try_iter().map(|(s, id)| format!("{s:?} {id}")).collect();
        v.sort();
        v
    }

    type Seen = std::sync::mpsc::Receiver<(AcctStatusType, String)>;

    /// The next request a server saw (bounded: the server task ends after 32).
    async fn next(rx: Seen) -> ((AcctStatusType, String), Seen) {
        tokio::task::spawn_blocking(move || (rx.recv().unwrap(), rx))
            .await
            .unwrap()
    }

    /// A reload changes the group (another host): a session that starts
    /// afterwards goes to the new host; one that started before keeps sending
    /// its Interim-Update and Stop to the host that has its Start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_sessions_use_the_reloaded_group_running_ones_keep_theirs() {
        let (port_a, rx_a) = server().await;
        let (port_b, rx_b) = server().await;
        let current = Arc::new(Mutex::new(Some(group(port_a).await)));
        let source: GroupSource = {
            let current = current.clone();
            Arc::new(move |name: &str| {
                let g = current.lock().unwrap().clone().filter(|_| name == "ACCT");
                (g, Some("asa".into()))
            })
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rx, source, None));
        tx.send(event(AcctStatusType::Start, "S1")).unwrap();
        // The Start has reached A before the "reload".
        let (r, rx_a) = next(rx_a).await;
        assert_eq!(r, (AcctStatusType::Start, "S1".to_string()));

        *current.lock().unwrap() = Some(group(port_b).await);
        tx.send(event(AcctStatusType::Start, "S2")).unwrap();
        tx.send(event(AcctStatusType::InterimUpdate, "S1")).unwrap();
        tx.send(event(AcctStatusType::Stop, "S1")).unwrap();
        let (r, rx_b) = next(rx_b).await;
        assert_eq!(r, (AcctStatusType::Start, "S2".to_string()));
        // The group is removed by a later reload: S2's Stop still goes out.
        *current.lock().unwrap() = None;
        tx.send(event(AcctStatusType::Stop, "S2")).unwrap();
        // A Stop of a session this task never started, with no group: dropped.
        tx.send(event(AcctStatusType::Stop, "S3")).unwrap();
        drop(tx);
        // Ends once every request is answered.
        task.await.unwrap();
        assert_eq!(drain(&rx_a), ["InterimUpdate S1", "Stop S1"]);
        assert_eq!(drain(&rx_b), ["Stop S2"]);
    }
}

//! The cluster's part of the admin commands: `show vpn-sessiondb [detail]
//! anyconnect` lists the sessions other nodes hold (with `Cluster Node`), and
//! `vpn-sessiondb logoff name U | all` reaches them.

use std::time::{Duration, SystemTime};

use super::Cluster;
use super::record::{SessionRecord, unix_now};
use crate::sessions::{SessionTable, SessionView};

/// A record as the admin view shows it (index 0: indexes are per node).
fn view_of(r: &SessionRecord, now_unix: u64) -> SessionView {
    SessionView {
        index: 0,
        username: r.username.clone(),
        tunnel_group: r.tunnel_group.clone(),
        group_policy: r.group_policy.clone(),
        public_ip: r.public_ip,
        assigned_v4: r.v4.as_ref().map(|a| a.0),
        assigned_v6: r.v6,
        bytes_tx: r.counters[0],
        bytes_rx: r.counters[1],
        login_time: SystemTime::UNIX_EPOCH + Duration::from_secs(r.login_unix),
        duration: Duration::from_secs(now_unix.saturating_sub(r.login_unix)),
        state: "Remote",
        protocol: "AnyConnect-Parent SSL-Tunnel",
        sgt: r.sgt,
        filter: r.filter.clone(),
        audit_session_id: r.audit_session_id.clone(),
        pkts_tx_drop: 0,
        pkts_rx_drop: 0,
        dtls_cipher: None,
        tls_cipher: None,
    }
}

/// The blocks of other nodes' sessions, each with its `Cluster Node`.
pub fn remote_section(records: &[SessionRecord], detail: bool) -> String {
    if records.is_empty() {
        return String::new();
    }
    let now = unix_now();
    let mut out = format!(
        "\nSessions held by other cluster nodes: {}\n",
        records.len()
    );
    for r in records {
        let v = [view_of(r, now)];
        let block = if detail {
            crate::show::detail_anyconnect(&v)
        } else {
            crate::show::anyconnect(&v)
        };
        // Drop the `Session Type` header the renderer starts with.
        let body = block.splitn(3, '\n').nth(2).unwrap_or_default();
        for line in body.lines() {
            out.push_str(line);
            out.push('\n');
            if line.starts_with("Security Grp") {
                out.push_str(&format!("{:<13}: {}\n", "Cluster Node", r.node));
            }
        }
    }
    out
}

/// Adds the cluster to the reply `local` that this node's `execute` gave `line`.
pub async fn extend_admin_reply(
    c: &Cluster,
    sessions: &SessionTable,
    line: &str,
    local: String,
) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let none = "INFO: There are presently no active sessions\n";
    match words.as_slice() {
        // Not a command of the node alone: the members live in Redis.
        ["show", "vpn", "load-balancing"] => c.show_load_balancing(sessions.len()).await,
        ["show", "vpn-sessiondb", rest @ ..]
            if rest == ["anyconnect"] || rest == ["detail", "anyconnect"] =>
        {
            let detail = rest.len() == 2;
            match c.remote_sessions().await {
                Ok(r) if r.is_empty() => local,
                Ok(r) => {
                    let mut out = if local == none { String::new() } else { local };
                    out.push_str(&remote_section(&r, detail));
                    out
                }
                Err(e) => {
                    format!("{local}WARNING: sessions of other cluster nodes not shown: {e}\n")
                }
            }
        }
        [
            "vpn-sessiondb",
            "logoff",
            kind @ ("name" | "all"),
            rest @ ..,
        ] => {
            let name = match (*kind, rest) {
                ("name", [user, ..]) => Some(*user),
                ("all", _) => None,
                _ => return local,
            };
            let n = c.logoff_elsewhere(name).await;
            if n == 0 {
                return local;
            }
            let what = name.map_or_else(|| "all".to_string(), |u| format!("name \"{u}\""));
            let remote = format!(
                "INFO: Number of sessions with {what} logged off on other cluster nodes : {n}\n"
            );
            if local.starts_with("ERROR: No sessions") {
                remote
            } else {
                format!("{local}{remote}")
            }
        }
        _ => local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_sessions_name_their_node() {
        let r = SessionRecord::from_json(
            &serde_json::json!({
                "v": 1, "username": "alice", "tunnel_group": "TG", "group_policy": "GP",
                "public_ip": "198.18.0.2", "login_unix": 0,
                "v4": ["198.18.100.10", "P"], "v6": null, "sgt": 10, "filter": "F",
                "classes": [], "framed_ip": null, "accounting_group": null,
                "downloadable_aces": [], "downloadable_name": null, "saml_attributes": {},
                "audit_session_id": "AUD", "acct_session_id": "ACC",
                "acct_start_unix": null, "counters": [5, 6, 0, 0], "node": "A"
            })
            .to_string(),
        )
        .unwrap();
        let out = remote_section(std::slice::from_ref(&r), true);
        assert!(
            out.starts_with("\nSessions held by other cluster nodes: 1\n"),
            "{out}"
        );
        assert!(!out.contains("Session Type"), "{out}");
        assert!(out.contains("Username     : alice"), "{out}");
        assert!(out.contains("Assigned IP  : 198.18.100.10"), "{out}");
        assert!(
            out.contains("Security Grp : 10\nCluster Node : A\n"),
            "{out}"
        );
        assert!(out.contains("Status       : Remote"), "{out}");
        assert!(remote_section(&[], false).is_empty());
    }
}

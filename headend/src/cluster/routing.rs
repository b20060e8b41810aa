//! Messages between cluster nodes (Redis pub/sub, one channel per node): a RADIUS
//! CoA / Disconnect-Request that reached a node which does not hold the session is
//! handed, as the verbatim datagram, to the node that does; that node verifies and
//! applies it with its own dynamic-authorization server (same clients and secrets:
//! same config) and sends the reply datagram back, which the first node sends to
//! the RADIUS server (which expects the answer from the address it sent to).

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeMessage {
    /// A dynamic-authorization request for a session the receiver holds.
    DynAuth {
        id: u64,
        reply_to: String,
        from: SocketAddr,
        /// base64 of the datagram.
        packet: String,
    },
    /// The receiver's answer datagram (None: it dropped the request).
    DynAuthReply { id: u64, packet: Option<String> },
    /// `vpn-sessiondb logoff name USER` (None: `all`) given on another node.
    Logoff {
        id: u64,
        reply_to: String,
        name: Option<String>,
    },
    /// How many sessions the receiver logged off.
    LogoffReply { id: u64, count: usize },
}

impl NodeMessage {
    pub fn dynauth(id: u64, reply_to: &str, from: SocketAddr, packet: &[u8]) -> Self {
        NodeMessage::DynAuth {
            id,
            reply_to: reply_to.to_owned(),
            from,
            packet: STANDARD.encode(packet),
        }
    }

    pub fn reply(id: u64, packet: Option<&[u8]>) -> Self {
        NodeMessage::DynAuthReply {
            id,
            packet: packet.map(|p| STANDARD.encode(p)),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| format!("bad node message: {e}"))
    }
}

/// Decodes a base64 datagram of a message.
pub fn datagram(b64: &str) -> Option<Vec<u8>> {
    STANDARD.decode(b64).ok()
}

/// Does a session record match these RFC 5176 selectors (all given must match)?
pub fn record_matches(
    r: &super::record::SessionRecord,
    sel: &auth::radius::SessionSelectors,
) -> bool {
    sel.acct_session_id
        .as_ref()
        .is_none_or(|v| *v == r.acct_session_id)
        && sel
            .audit_session_id
            .as_ref()
            .is_none_or(|v| *v == r.audit_session_id)
        && sel
            .framed_ip
            .is_none_or(|ip| r.v4.as_ref().is_some_and(|a| a.0 == ip))
        && sel.user_name.as_ref().is_none_or(|v| *v == r.username)
        && !sel.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = NodeMessage::dynauth(7, "A", "198.18.1.20:3799".parse().unwrap(), &[1, 2, 3]);
        assert_eq!(NodeMessage::from_json(&m.to_json()), Ok(m.clone()));
        let NodeMessage::DynAuth { packet, .. } = m else {
            panic!()
        };
        assert_eq!(datagram(&packet), Some(vec![1, 2, 3]));
        let r = NodeMessage::reply(7, None);
        assert_eq!(NodeMessage::from_json(&r.to_json()), Ok(r));
        assert!(NodeMessage::from_json("{\"kind\":\"nope\"}").is_err());
        assert_eq!(datagram("!!"), None);
    }

    #[test]
    fn selectors_match_records() {
        let mut r = super::super::record::SessionRecord::from_json(
            &serde_json::json!({
                "v": 1, "username": "alice", "tunnel_group": "TG", "group_policy": "GP",
                "public_ip": "198.18.0.2", "login_unix": 0,
                "v4": ["198.18.100.10", "P"], "v6": null, "sgt": null, "filter": null,
                "classes": [], "framed_ip": null, "accounting_group": null,
                "downloadable_aces": [], "downloadable_name": null, "saml_attributes": {},
                "audit_session_id": "AUD", "acct_session_id": "ACC",
                "acct_start_unix": null, "counters": [0, 0, 0, 0], "node": "A"
            })
            .to_string(),
        )
        .unwrap();
        let sel = |f: &dyn Fn(&mut auth::radius::SessionSelectors)| {
            let mut s = auth::radius::SessionSelectors::default();
            f(&mut s);
            s
        };
        assert!(record_matches(
            &r,
            &sel(&|s| s.acct_session_id = Some("ACC".into()))
        ));
        assert!(record_matches(
            &r,
            &sel(&|s| s.framed_ip = Some("198.18.100.10".parse().unwrap()))
        ));
        assert!(!record_matches(
            &r,
            &sel(&|s| {
                s.user_name = Some("alice".into());
                s.audit_session_id = Some("other".into());
            })
        ));
        assert!(
            !record_matches(&r, &sel(&|_| {})),
            "no selector matches nothing"
        );
        r.v4 = None;
        assert!(!record_matches(
            &r,
            &sel(&|s| s.framed_ip = Some("198.18.100.10".parse().unwrap()))
        ));
    }
}

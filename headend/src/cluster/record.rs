//! What the cluster keeps of a session: everything another node needs to take it
//! over with the same address, SGT, filter and accounting session.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Version of the record format; a node refuses records of a newer one.
pub const RECORD_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub v: u8,
    pub username: String,
    pub tunnel_group: String,
    pub group_policy: String,
    pub public_ip: IpAddr,
    /// Seconds since the epoch of the login (vpn-session-timeout counts from it).
    pub login_unix: u64,
    /// (address, pool name; "" for a Framed-IP-Address outside every pool)
    pub v4: Option<(Ipv4Addr, String)>,
    /// Informational: IPv6 leases are not cluster-wide yet.
    pub v6: Option<Ipv6Addr>,
    pub sgt: Option<u16>,
    pub filter: Option<String>,
    pub classes: Vec<Vec<u8>>,
    pub framed_ip: Option<Ipv4Addr>,
    pub accounting_group: Option<String>,
    pub downloadable_aces: Vec<String>,
    pub downloadable_name: Option<String>,
    pub saml_attributes: BTreeMap<String, Vec<String>>,
    pub audit_session_id: String,
    pub acct_session_id: String,
    /// Seconds since the epoch of the accounting Start (None: none sent yet).
    pub acct_start_unix: Option<u64>,
    /// Counters checkpoint: bytes tx, bytes rx, packets tx, packets rx.
    pub counters: [u64; 4],
    /// The node that wrote it (for `show vpn-sessiondb`).
    pub node: String,
}

impl SessionRecord {
    pub fn to_json(&self) -> String {
        // A struct of plain fields always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Self, String> {
        let r: SessionRecord =
            serde_json::from_str(s).map_err(|e| format!("bad session record: {e}"))?;
        if r.v > RECORD_VERSION {
            return Err(format!(
                "session record version {} is newer than this node's {RECORD_VERSION}",
                r.v
            ));
        }
        Ok(r)
    }
}

/// Seconds since the epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> SessionRecord {
        SessionRecord {
            v: RECORD_VERSION,
            username: "alice".into(),
            tunnel_group: "RADIUS-PW".into(),
            group_policy: "GP-EMPLOYEES".into(),
            public_ip: "198.18.0.2".parse().unwrap(),
            login_unix: 1_800_000_000,
            v4: Some(("198.18.100.10".parse().unwrap(), "VPN-POOL".into())),
            v6: None,
            sgt: Some(10),
            filter: Some("VPN-FILTER".into()),
            classes: vec![b"OU=GP-EMPLOYEES;".to_vec()],
            framed_ip: None,
            accounting_group: Some("ISE".into()),
            downloadable_aces: vec![],
            downloadable_name: None,
            saml_attributes: BTreeMap::new(),
            audit_session_id: "c6120101000000016930a2c0".into(),
            acct_session_id: "6930A2C000000001".into(),
            acct_start_unix: Some(1_800_000_001),
            counters: [1, 2, 3, 4],
            node: "A".into(),
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(SessionRecord::from_json(&r.to_json()), Ok(r));
    }

    #[test]
    fn garbage_and_newer_versions_are_refused() {
        assert!(SessionRecord::from_json("{").is_err());
        assert!(SessionRecord::from_json("{}").is_err());
        let mut r = sample();
        r.v = RECORD_VERSION + 1;
        let e = SessionRecord::from_json(&r.to_json()).unwrap_err();
        assert!(e.contains("newer"), "{e}");
    }
}

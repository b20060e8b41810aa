//! VPN load balancing as ASA does it (`vpn load-balancing`, asa-syntax.md §8; Cisco
//! ASA VPN config guide, "Configuring Load Balancing"): the director, the member
//! that holds the `cluster ip address`, sends each new login to the least-loaded
//! member with an HTTP 302 whose Location is that member's address, keeping the
//! path. openconnect 9.01 follows it: in `cstp_obtain_cookie` a redirect of the
//! initial XML POST to another host (`handle_redirect`, REDIR_TYPE_NEWHOST)
//! closes the connection and posts the same `init` to the new host; only a
//! same-host redirect makes it give up XML POST.
//!
//! Who directs: a connection that reached this node on the cluster address (or
//! whose `Host` names it) reached the director; keepalived/VRRP moves that
//! address (give the member with the highest `priority` the highest VRRP
//! priority). Clients may use a name that resolves to it: the local address
//! decides. A login to a member's own address is never redirected, so a
//! redirect cannot loop.
//!
//! Load: every participating member writes `headend:lb:member:{NODE}` (its
//! address, session count and priority) with every write-back, expiring with
//! the node lease: a dead member drops out within a lease. ASA compares load
//! in percent of each member's licence; members with the same config have the
//! same limit, so comparing session counts is the same.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::keys::PREFIX;
use crate::config::Config;
use crate::proto::http::{Request, Response};

fn member_key(node: &str) -> String {
    format!("{PREFIX}lb:member:{node}")
}

fn member_pattern() -> String {
    format!("{PREFIX}lb:member:*")
}

/// What this node knows of its own part in load balancing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbSettings {
    pub participate: bool,
    pub priority: u8,
    /// The director's address (`cluster ip address`), as a `Host` names it.
    pub cluster_host: Option<String>,
    /// Where other members send logins to this one: `HOST[:PORT]`.
    pub public: Option<String>,
}

impl LbSettings {
    /// From the config's `vpn load-balancing` and the address this node
    /// listens on (`--cluster-public` overrides it).
    pub fn new(cfg: &Config, listen: SocketAddr, public: Option<&str>) -> Self {
        let Some(lb) = &cfg.vpn_load_balancing else {
            return LbSettings::default();
        };
        let public = public.map(str::to_string).or_else(|| {
            let ip = listen.ip();
            if ip.is_unspecified() || lb.cluster_ip.map(IpAddr::V4) == Some(ip) {
                // Only reachable through the cluster address: not a target.
                return None;
            }
            Some(host_port(ip, listen.port()))
        });
        LbSettings {
            participate: lb.participate,
            priority: lb.priority,
            cluster_host: lb.cluster_ip.map(|a| a.to_string()),
            public,
        }
    }
}

fn host_port(ip: IpAddr, port: u16) -> String {
    let host = match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// A member as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    /// `HOST[:PORT]` logins are redirected to; None: not a redirect target.
    pub public: Option<String>,
    pub sessions: u64,
    pub priority: u8,
}

/// The member a new login should go to, or None to keep it here: the least
/// loaded; on a tie the director keeps it, then the higher priority, then the
/// node name (so every director decides alike).
pub fn choose<'a>(own_node: &str, own_sessions: u64, members: &'a [Member]) -> Option<&'a Member> {
    let best = members
        .iter()
        .filter(|m| m.node != own_node && m.public.is_some())
        .min_by(|a, b| {
            a.sessions
                .cmp(&b.sessions)
                .then(b.priority.cmp(&a.priority))
                .then(a.node.cmp(&b.node))
        })?;
    (best.sessions < own_sessions).then_some(best)
}

/// `Host` without its port (`[v6]:port` keeps the brackets off).
fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Is `req` a new login (not a step of one in progress here)? The XML `init`
/// (openconnect, AnyConnect) or a browser's GET of a page.
fn is_new_login(req: &Request) -> bool {
    match req.method.as_str() {
        "POST" => crate::proto::xmlauth::parse_client(&req.body)
            .is_ok_and(|m| m.kind == crate::proto::xmlauth::MessageKind::Init),
        "GET" => !req.path.starts_with("/+CSCOE+/") && !req.path.starts_with("/saml/"),
        _ => false,
    }
}

impl Cluster {
    /// Takes this node's load-balancing part (at start and on reload).
    pub fn set_load_balancing(&self, s: LbSettings) {
        *self.lb.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn lb_settings(&self) -> LbSettings {
        self.lb.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// With every write-back: this member's load, for the director.
    pub(super) async fn publish_member(&self, sessions: usize) -> redis::RedisResult<()> {
        let s = self.lb_settings();
        let mut c = self.conn.clone();
        if !s.participate {
            return Ok(());
        }
        let m = Member {
            node: self.node.clone(),
            public: s.public,
            sessions: sessions as u64,
            priority: s.priority,
        };
        let json = serde_json::to_string(&m).unwrap_or_default();
        c.pset_ex(member_key(&self.node), json, self.lease_ms())
            .await
    }

    /// Every live member's record (bounded scan).
    pub async fn lb_members(&self) -> redis::RedisResult<Vec<Member>> {
        let mut c = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        for _ in 0..1000 {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(member_pattern())
                .arg("COUNT")
                .arg(100)
                .query_async(&mut c)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let vals: Vec<Option<String>> = c.mget(&keys).await?;
        let mut v: Vec<Member> = vals
            .into_iter()
            .flatten()
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(v)
    }

    /// The director's answer to a new login that another member should take:
    /// `302 Found` to it. None: serve it here (not the director, not a new
    /// login, this member is the least loaded, or Redis did not answer in time:
    /// a login is better served here than refused).
    pub async fn lb_redirect(
        &self,
        req: &Request,
        local_ip: Option<IpAddr>,
        own_sessions: usize,
    ) -> Option<Response> {
        let s = self.lb_settings();
        let cluster_host = s.cluster_host.as_deref().filter(|_| s.participate)?;
        let on_cluster_address = local_ip.is_some_and(|ip| ip.to_string() == cluster_host)
            || req.header("Host").map(host_only) == Some(cluster_host);
        if !on_cluster_address || !is_new_login(req) {
            return None;
        }
        let members = match tokio::time::timeout(Duration::from_secs(1), self.lb_members()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::debug!("load balancing: members unknown ({e}); login served here");
                return None;
            }
            Err(_) => return None,
        };
        let to = choose(&self.node, own_sessions as u64, &members)?;
        let public = to.public.as_deref()?;
        let path = if req.path.starts_with('/') {
            req.path.as_str()
        } else {
            "/"
        };
        let location = format!("https://{public}{path}");
        tracing::info!(
            "load balancing: new login redirected to node {} ({} session(s); here {own_sessions}): {location}",
            to.node,
            to.sessions
        );
        Some(
            Response::new(302, "Found")
                .header("Location", &location)
                .header("Cache-Control", "no-store")
                .body(Vec::new()),
        )
    }

    /// `show vpn load-balancing`, in ASA's layout (genieparser's sample).
    pub async fn show_load_balancing(&self, own_sessions: usize) -> String {
        let s = self.lb_settings();
        let members = self.lb_members().await.unwrap_or_default();
        render_show(&self.node, &s, own_sessions as u64, &members)
    }
}

/// `show vpn load-balancing`. This node is `Master` (the director) when it
/// holds the cluster address.
pub fn render_show(own: &str, s: &LbSettings, own_sessions: u64, members: &[Member]) -> String {
    let mut out = String::new();
    let status = if s.participate { "Enabled" } else { "Disabled" };
    out.push_str("--------------------------------------------------------------------------\n");
    out.push_str("Status     Role     Failover   Encryption   Peers     Cluster IP\n");
    out.push_str("--------------------------------------------------------------------------\n");
    out.push_str(&format!(
        "{status:<10} {:<8} {:<10} {:<12} {:>5}     {}\n",
        "Member",
        "n/a",
        "n/a",
        members.iter().filter(|m| m.node != own).count(),
        s.cluster_host.as_deref().unwrap_or("none"),
    ));
    out.push_str("\nPeers:\n");
    out.push_str("--------------------------------------------------------------------------\n");
    out.push_str("Node             Pri  Sessions  Public IP\n");
    out.push_str("--------------------------------------------------------------------------\n");
    for m in members {
        let (sessions, mark) = if m.node == own {
            (own_sessions, "*")
        } else {
            (m.sessions, "")
        };
        out.push_str(&format!(
            "{:<16} {:>3}  {:>8}  {}{mark}\n",
            m.node,
            m.priority,
            sessions,
            m.public.as_deref().unwrap_or("(cluster address only)")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(node: &str, sessions: u64, priority: u8) -> Member {
        Member {
            node: node.into(),
            public: Some(format!("{node}.example")),
            sessions,
            priority,
        }
    }

    #[test]
    fn the_least_loaded_other_member_gets_the_login() {
        let ms = [m("A", 5, 5), m("B", 1, 5), m("C", 3, 5)];
        assert_eq!(choose("A", 5, &ms).map(|x| x.node.as_str()), Some("B"));
    }

    #[test]
    fn the_director_keeps_a_login_when_nobody_is_less_loaded() {
        let ms = [m("A", 2, 5), m("B", 2, 5)];
        assert_eq!(choose("A", 2, &ms), None);
        assert_eq!(choose("A", 0, &[m("B", 0, 5)]), None);
        assert_eq!(choose("A", 1, &[]), None);
    }

    #[test]
    fn ties_go_to_the_higher_priority_then_the_name() {
        let ms = [m("C", 1, 5), m("B", 1, 9), m("D", 1, 9)];
        assert_eq!(choose("A", 4, &ms).map(|x| x.node.as_str()), Some("B"));
    }

    #[test]
    fn a_member_without_its_own_address_is_no_target() {
        let mut b = m("B", 0, 5);
        b.public = None;
        assert_eq!(choose("A", 3, &[b]), None);
    }

    #[test]
    fn host_header_without_port() {
        assert_eq!(host_only("198.18.0.1"), "198.18.0.1");
        assert_eq!(host_only("198.18.0.1:443"), "198.18.0.1");
        assert_eq!(host_only("[fd00::1]:443"), "fd00::1");
    }

    #[test]
    fn settings_from_the_config() {
        let cfg = crate::config::parse_str(
            "vpn load-balancing\n cluster ip address 198.18.0.1\n priority 8\n participate\n",
            "lb.cfg",
        )
        .unwrap();
        let on_vip = LbSettings::new(&cfg, "198.18.0.1:443".parse().unwrap(), None);
        assert_eq!(on_vip.public, None, "the VIP is not a member's own address");
        assert_eq!(on_vip.cluster_host.as_deref(), Some("198.18.0.1"));
        let own = LbSettings::new(&cfg, "198.18.0.12:8443".parse().unwrap(), None);
        assert_eq!(own.public.as_deref(), Some("198.18.0.12:8443"));
        assert!(own.participate);
        assert_eq!(own.priority, 8);
        let flag = LbSettings::new(&cfg, "0.0.0.0:443".parse().unwrap(), Some("vpn-b.example"));
        assert_eq!(flag.public.as_deref(), Some("vpn-b.example"));
        let none = LbSettings::new(
            &crate::config::parse_str("hostname x\n", "x.cfg").unwrap(),
            "198.18.0.12:443".parse().unwrap(),
            None,
        );
        assert!(!none.participate);
    }

    #[test]
    fn show_lists_the_members_with_this_one_marked() {
        let s = LbSettings {
            participate: true,
            priority: 5,
            cluster_host: Some("198.18.0.1".into()),
            public: None,
        };
        let text = render_show("A", &s, 3, &[m("A", 1, 5), m("B", 0, 7)]);
        assert!(text.contains("Enabled"), "{text}");
        assert!(text.contains("198.18.0.1"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("A ") && l.contains(" 3 ") && l.ends_with('*')),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("B ") && l.contains("B.example")),
            "{text}"
        );
    }
}

//! Group-policy inheritance and tunnel-group lookups.
//!
//! As on ASA, an attribute not set in a group policy comes from `DfltGrpPolicy`,
//! and one not set there either has the built-in default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::DEFAULT_GROUP_POLICY;
use super::model::*;
use super::parse::normalize_url;

/// ASA built-in defaults for an attribute set nowhere.
mod builtin {
    pub const TUNNEL_PROTOCOLS: &[&str] = &["ssl-client"];
    pub const IDLE_TIMEOUT_MIN: u32 = 30;
    pub const SIMULTANEOUS_LOGINS: u32 = 3;
    pub const DPD_CLIENT_SECS: u32 = 30;
    pub const DPD_GATEWAY_SECS: u32 = 30;
    pub const KEEPALIVE_SECS: u32 = 20;
    pub const MTU: u16 = 1406;
}

/// Every group-policy attribute resolved for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePolicy {
    /// The group-policy name that was asked for.
    pub name: String,
    /// False when that name is not configured (everything then comes from
    /// DfltGrpPolicy and the built-in defaults).
    pub defined: bool,
    pub vpn_tunnel_protocols: Vec<String>,
    pub split_tunnel_policy: SplitTunnelPolicy,
    /// ACL name; None = no list.
    pub split_tunnel_network_list: Option<String>,
    pub dns_servers: Vec<IpAddr>,
    pub default_domain: Option<String>,
    /// ACL name; None = no filter.
    pub vpn_filter: Option<String>,
    /// Minutes; None = no limit.
    pub vpn_idle_timeout_min: Option<u32>,
    /// Minutes; None = no limit.
    pub vpn_session_timeout_min: Option<u32>,
    /// `vpn_idle_timeout_min` as a Duration (None = no limit).
    pub vpn_idle_timeout: Option<Duration>,
    /// `vpn_session_timeout_min` as a Duration (None = no limit).
    pub vpn_session_timeout: Option<Duration>,
    pub vpn_simultaneous_logins: u32,
    pub address_pools: Vec<String>,
    pub ipv6_address_pools: Vec<String>,
    /// Seconds; None = DPD off on that side.
    pub anyconnect_dpd_client_secs: Option<u32>,
    pub anyconnect_dpd_gateway_secs: Option<u32>,
    /// Seconds; None = no keepalive.
    pub anyconnect_keepalive_secs: Option<u32>,
    pub anyconnect_mtu: u16,
    pub anyconnect_dtls: bool,
    /// None = no banner.
    pub banner: Option<String>,
}

impl EffectivePolicy {
    /// Whether AnyConnect (`ssl-client`) may use this policy at all.
    pub fn allows_ssl_client(&self) -> bool {
        self.vpn_tunnel_protocols.iter().any(|p| p == "ssl-client")
    }
}

/// `Some("")` / `Some(0)` in the model mean an explicit `none`: stop inheriting,
/// and resolve to "nothing".
fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

fn zero_is_none(v: u32) -> Option<u32> {
    (v != 0).then_some(v)
}

impl Config {
    /// Resolve `group_policy_name` against DfltGrpPolicy and ASA's defaults.
    pub fn effective_policy(&self, group_policy_name: &str) -> EffectivePolicy {
        let named = self.group_policies.get(group_policy_name);
        let dflt = self.group_policies.get(DEFAULT_GROUP_POLICY);
        // First value set in the named policy, then in DfltGrpPolicy.
        macro_rules! pick {
            ($f:ident) => {
                named
                    .and_then(|g| g.$f.as_ref())
                    .or_else(|| dflt.and_then(|g| g.$f.as_ref()))
            };
        }
        let idle_min = zero_is_none(
            pick!(vpn_idle_timeout_min)
                .copied()
                .unwrap_or(builtin::IDLE_TIMEOUT_MIN),
        );
        let session_min = pick!(vpn_session_timeout_min)
            .copied()
            .and_then(zero_is_none);
        let minutes = |m: Option<u32>| m.map(|m| Duration::from_secs(u64::from(m) * 60));
        EffectivePolicy {
            name: group_policy_name.to_string(),
            defined: named.is_some(),
            vpn_tunnel_protocols: pick!(vpn_tunnel_protocols).cloned().unwrap_or_else(|| {
                builtin::TUNNEL_PROTOCOLS
                    .iter()
                    .map(|s| (*s).to_string())
                    .collect()
            }),
            split_tunnel_policy: pick!(split_tunnel_policy).copied().unwrap_or_default(),
            split_tunnel_network_list: non_empty(pick!(split_tunnel_network_list)),
            dns_servers: pick!(dns_servers).cloned().unwrap_or_default(),
            default_domain: non_empty(pick!(default_domain)),
            vpn_filter: non_empty(pick!(vpn_filter)),
            vpn_idle_timeout_min: idle_min,
            vpn_session_timeout_min: session_min,
            vpn_idle_timeout: minutes(idle_min),
            vpn_session_timeout: minutes(session_min),
            vpn_simultaneous_logins: pick!(vpn_simultaneous_logins)
                .copied()
                .unwrap_or(builtin::SIMULTANEOUS_LOGINS),
            address_pools: pick!(address_pools).cloned().unwrap_or_default(),
            ipv6_address_pools: pick!(ipv6_address_pools).cloned().unwrap_or_default(),
            anyconnect_dpd_client_secs: zero_is_none(
                pick!(anyconnect_dpd_client_secs)
                    .copied()
                    .unwrap_or(builtin::DPD_CLIENT_SECS),
            ),
            anyconnect_dpd_gateway_secs: zero_is_none(
                pick!(anyconnect_dpd_gateway_secs)
                    .copied()
                    .unwrap_or(builtin::DPD_GATEWAY_SECS),
            ),
            anyconnect_keepalive_secs: zero_is_none(
                pick!(anyconnect_keepalive_secs)
                    .copied()
                    .unwrap_or(builtin::KEEPALIVE_SECS),
            ),
            anyconnect_mtu: pick!(anyconnect_mtu).copied().unwrap_or(builtin::MTU),
            anyconnect_dtls: pick!(anyconnect_dtls).copied().unwrap_or(true),
            banner: non_empty(pick!(banner)),
        }
    }

    /// The IPv4 networks of the policy's split-tunnel-network-list, as
    /// (network, mask), when the policy is `tunnelspecified`; empty otherwise
    /// (with `tunnelall` the list must not leak into a split include).
    pub fn split_include_routes(&self, policy: &EffectivePolicy) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        if policy.split_tunnel_policy != SplitTunnelPolicy::TunnelSpecified {
            return Vec::new();
        }
        self.split_networks(policy)
    }

    /// Same networks when the policy is `excludespecified`; empty otherwise.
    pub fn split_exclude_routes(&self, policy: &EffectivePolicy) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        if policy.split_tunnel_policy != SplitTunnelPolicy::ExcludeSpecified {
            return Vec::new();
        }
        self.split_networks(policy)
    }

    /// Permit entries of the split ACL: standard networks, or the source of
    /// extended `ip SRC any` entries (how ASA reads an extended split list).
    fn split_networks(&self, policy: &EffectivePolicy) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        self.split_list_sources(policy, |net, _| match net {
            AddrMatch::Any | AddrMatch::Any4 => {
                Some((Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED))
            }
            AddrMatch::Prefix(IpAddr::V4(a), len) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from((*len).min(32)))
                    .unwrap_or(0);
                Some((*a, Ipv4Addr::from(mask)))
            }
            _ => None,
        })
    }

    /// The IPv6 networks of the policy's split-tunnel-network-list, as
    /// (network, prefix length), for `tunnelspecified` and `excludespecified`
    /// (empty for `tunnelall`). On ASA an IPv6 split list is an extended ACL:
    /// the source of each `permit ip SRC any6` entry (`any`/`any6` = `::/0`);
    /// standard ACLs are IPv4 only.
    pub fn split_networks_v6(&self, policy: &EffectivePolicy) -> Vec<(Ipv6Addr, u8)> {
        if policy.split_tunnel_policy == SplitTunnelPolicy::TunnelAll {
            return Vec::new();
        }
        self.split_list_sources(policy, |net, extended| match net {
            // Standard lists are IPv4 only: their `any` is `any4`.
            AddrMatch::Any | AddrMatch::Any6 if extended => Some((Ipv6Addr::UNSPECIFIED, 0)),
            AddrMatch::Prefix(IpAddr::V6(a), len) => Some((*a, (*len).min(128))),
            _ => None,
        })
    }

    /// The permitted networks of the policy's split-tunnel-network-list, each
    /// mapped by `route` (given the network and whether its entry is extended),
    /// without repeats, in list order. An entry naming a network object-group
    /// gives each of its networks; inactive extended ACEs give none.
    fn split_list_sources<T: PartialEq>(
        &self,
        policy: &EffectivePolicy,
        route: impl Fn(&AddrMatch, bool) -> Option<T>,
    ) -> Vec<T> {
        let Some(acl) = policy
            .split_tunnel_network_list
            .as_ref()
            .and_then(|n| self.access_lists.get(n))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in acl.entries.iter().filter(|e| e.action == AclAction::Permit) {
            let nets: Vec<&AddrMatch> = match &e.kind {
                AclEntryKind::Standard { network } => vec![network],
                _ => e
                    .extended_aces()
                    .iter()
                    .filter(|a| !a.inactive)
                    .map(|a| &a.src)
                    .collect(),
            };
            for r in nets.into_iter().filter_map(|n| route(n, e.is_extended())) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// The tunnel group with this enabled `group-alias`.
    pub fn tunnel_group_for_alias(&self, alias: &str) -> Option<&TunnelGroup> {
        self.tunnel_groups
            .values()
            .filter(|tg| tg.remote_access)
            .find(|tg| tg.group_aliases.iter().any(|(a, on)| *on && a == alias))
    }

    /// The tunnel group with this enabled `group-url`. `url` may be the full URL
    /// (scheme and host must then match) or just its path (`/ALIAS`).
    pub fn tunnel_group_for_url(&self, url: &str) -> Option<&TunnelGroup> {
        let want = normalize_url(url);
        let path_only = !want.contains("://");
        let want_path = if path_only {
            let p = want.trim_end_matches('/');
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("/{p}")
            }
        } else {
            String::new()
        };
        self.tunnel_groups
            .values()
            .filter(|tg| tg.remote_access)
            .find(|tg| {
                tg.group_urls.iter().any(|(u, on)| {
                    if !*on {
                        return false;
                    }
                    let have = normalize_url(u);
                    if path_only {
                        url_path(&have) == want_path
                    } else {
                        have == want
                    }
                })
            })
    }

    /// (alias, tunnel group) for every enabled alias, in config order: what the
    /// login page's group list shows (when `tunnel-group-list enable`).
    pub fn group_list(&self) -> Vec<(String, String)> {
        let mut tgs: Vec<&TunnelGroup> = self
            .tunnel_groups
            .values()
            .filter(|tg| tg.remote_access)
            .collect();
        tgs.sort_by_key(|tg| tg.line);
        tgs.iter()
            .flat_map(|tg| {
                tg.group_aliases
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(a, _)| (a.clone(), tg.name.clone()))
            })
            .collect()
    }

    /// Address pools for a session: the group policy's `address-pools` win over
    /// the tunnel group's `address-pool`, as on ASA.
    pub fn address_pools_for(&self, tg: &TunnelGroup, policy: &EffectivePolicy) -> Vec<&Ipv4Pool> {
        let names = if policy.address_pools.is_empty() {
            &tg.address_pools
        } else {
            &policy.address_pools
        };
        names
            .iter()
            .filter_map(|n| self.ip_local_pools.get(n))
            .collect()
    }
}

/// Path part of a normalized URL ("" becomes "/").
fn url_path(u: &str) -> String {
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest.get(i..).unwrap_or("/").to_string(),
        None => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn cfg(lines: &[&str]) -> Config {
        parse_str(&lines.join("\n"), "t.cfg").unwrap()
    }

    #[test]
    fn config_effective_policy_builtin_defaults() {
        let p = Config::default().effective_policy("Nope");
        assert_eq!(
            p,
            EffectivePolicy {
                name: "Nope".into(),
                defined: false,
                vpn_tunnel_protocols: vec!["ssl-client".into()],
                split_tunnel_policy: SplitTunnelPolicy::TunnelAll,
                split_tunnel_network_list: None,
                dns_servers: vec![],
                default_domain: None,
                vpn_filter: None,
                vpn_idle_timeout_min: Some(30),
                vpn_session_timeout_min: None,
                vpn_idle_timeout: Some(Duration::from_secs(1800)),
                vpn_session_timeout: None,
                vpn_simultaneous_logins: 3,
                address_pools: vec![],
                ipv6_address_pools: vec![],
                anyconnect_dpd_client_secs: Some(30),
                anyconnect_dpd_gateway_secs: Some(30),
                anyconnect_keepalive_secs: Some(20),
                anyconnect_mtu: 1406,
                anyconnect_dtls: true,
                banner: None,
            }
        );
        assert!(p.allows_ssl_client());
    }

    #[test]
    fn config_effective_policy_inherits_from_dflt() {
        let c = cfg(&[
            "access-list F extended deny ip any any",
            "group-policy DfltGrpPolicy attributes",
            " vpn-tunnel-protocol ikev2",
            " dns-server value 10.0.0.53",
            " vpn-simultaneous-logins 5",
            " vpn-filter value F",
            " vpn-idle-timeout none",
            " vpn-session-timeout 600",
            " anyconnect dpd-interval client none",
            " banner value Hello",
            "group-policy GP internal",
            "group-policy GP attributes",
            " vpn-tunnel-protocol ssl-client",
            " vpn-filter none",
            " default-domain value corp.example",
            " anyconnect ssl keepalive none",
            " anyconnect mtu 1300",
        ]);
        let p = c.effective_policy("GP");
        assert!(p.defined);
        assert_eq!(p.vpn_tunnel_protocols, vec!["ssl-client".to_string()]);
        assert_eq!(p.dns_servers, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.vpn_simultaneous_logins, 5);
        assert_eq!(p.vpn_filter, None, "`none` stops inheritance");
        assert_eq!(p.default_domain.as_deref(), Some("corp.example"));
        assert_eq!((p.vpn_idle_timeout_min, p.vpn_idle_timeout), (None, None));
        assert_eq!(p.vpn_session_timeout_min, Some(600));
        assert_eq!(p.vpn_session_timeout, Some(Duration::from_secs(36000)));
        assert_eq!(p.anyconnect_dpd_client_secs, None);
        assert_eq!(p.anyconnect_dpd_gateway_secs, Some(30));
        assert_eq!(p.anyconnect_keepalive_secs, None);
        assert_eq!(p.anyconnect_mtu, 1300);
        assert_eq!(p.banner.as_deref(), Some("Hello"));
        let d = c.effective_policy(DEFAULT_GROUP_POLICY);
        assert_eq!(d.vpn_filter.as_deref(), Some("F"));
        assert!(!d.allows_ssl_client());
        // an unknown name resolves like DfltGrpPolicy
        let u = c.effective_policy("Unknown");
        assert!(!u.defined);
        assert_eq!(u.vpn_simultaneous_logins, 5);
    }

    #[test]
    fn config_split_routes() {
        let c = cfg(&[
            "access-list S standard permit 198.18.1.0 255.255.255.0",
            "access-list S standard deny 198.18.9.0 255.255.255.0",
            "access-list S standard permit host 198.18.2.7",
            "access-list X extended permit ip 10.0.0.0 255.0.0.0 any",
            "access-list X extended permit ip 172.16.0.0 255.240.0.0 any inactive",
            "access-list X extended permit ip any6 any",
            "access-list X remark nothing",
            "group-policy A internal",
            "group-policy A attributes",
            " split-tunnel-policy tunnelspecified",
            " split-tunnel-network-list value S",
            "group-policy B internal",
            "group-policy B attributes",
            " split-tunnel-policy excludespecified",
            " split-tunnel-network-list value X",
            "group-policy C internal",
            "group-policy C attributes",
            " split-tunnel-network-list value S",
        ]);
        let a = c.effective_policy("A");
        assert_eq!(
            c.split_include_routes(&a),
            vec![
                (
                    Ipv4Addr::new(198, 18, 1, 0),
                    Ipv4Addr::new(255, 255, 255, 0)
                ),
                (
                    Ipv4Addr::new(198, 18, 2, 7),
                    Ipv4Addr::new(255, 255, 255, 255)
                ),
            ]
        );
        assert!(c.split_exclude_routes(&a).is_empty());
        let b = c.effective_policy("B");
        assert!(c.split_include_routes(&b).is_empty());
        assert_eq!(
            c.split_exclude_routes(&b),
            vec![(Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(255, 0, 0, 0))]
        );
        // tunnelall (the default) never yields split routes
        assert!(c.split_include_routes(&c.effective_policy("C")).is_empty());
    }

    #[test]
    fn config_ipv6_split_networks_from_an_extended_acl() {
        let c = cfg(&[
            "access-list S extended permit ip 198.18.1.0 255.255.255.0 any4",
            "access-list S extended permit ip fd00:1::/64 any6",
            "access-list S extended permit ip host fd00:3::7 any6",
            "access-list S extended deny ip fd00:2::/64 any6",
            "access-list S extended permit ip fd00:1::/64 any",
            "access-list V4 standard permit 198.18.1.0 255.255.255.0",
            "group-policy A internal",
            "group-policy A attributes",
            " split-tunnel-policy tunnelspecified",
            " split-tunnel-network-list value S",
            "group-policy B internal",
            "group-policy B attributes",
            " split-tunnel-policy tunnelspecified",
            " split-tunnel-network-list value V4",
            "group-policy C internal",
            "group-policy C attributes",
            " split-tunnel-network-list value S",
        ]);
        let a = c.effective_policy("A");
        assert_eq!(
            c.split_networks_v6(&a),
            vec![
                ("fd00:1::".parse::<Ipv6Addr>().unwrap(), 64),
                ("fd00:3::7".parse::<Ipv6Addr>().unwrap(), 128),
            ]
        );
        // The IPv4 routes of the same list are unchanged by the v6 entries.
        assert_eq!(
            c.split_include_routes(&a),
            vec![(
                Ipv4Addr::new(198, 18, 1, 0),
                Ipv4Addr::new(255, 255, 255, 0)
            )]
        );
        assert!(c.split_networks_v6(&c.effective_policy("B")).is_empty());
        // tunnelall: no split routes of either family.
        assert!(c.split_networks_v6(&c.effective_policy("C")).is_empty());
    }

    #[test]
    fn config_tunnel_group_lookups() {
        let c = cfg(&[
            "ip local pool P 10.0.0.10-10.0.0.20 mask 255.255.255.0",
            "ip local pool Q 10.0.1.10-10.0.1.20 mask 255.255.255.0",
            "group-policy G internal",
            "group-policy G attributes",
            " address-pools value Q",
            "tunnel-group Zeta type remote-access",
            "tunnel-group Zeta general-attributes",
            " address-pool P",
            "tunnel-group Zeta webvpn-attributes",
            " group-alias Zed enable",
            " group-alias Z2 enable",
            " group-alias Off disable",
            " group-url https://VPN.example/zeta/ enable",
            "tunnel-group Alpha type remote-access",
            "tunnel-group Alpha webvpn-attributes",
            " group-alias Alpha",
            " group-url https://vpn.example/alpha disable",
        ]);
        assert_eq!(
            c.group_list(),
            vec![
                ("Zed".to_string(), "Zeta".to_string()),
                ("Z2".into(), "Zeta".into()),
                ("Alpha".into(), "Alpha".into()),
            ]
        );
        assert_eq!(c.tunnel_group_for_alias("Zed").unwrap().name, "Zeta");
        assert!(c.tunnel_group_for_alias("Off").is_none());
        assert!(
            c.tunnel_group_for_alias("zed").is_none(),
            "names are case-sensitive"
        );
        for u in [
            "https://vpn.example/zeta",
            "https://vpn.example/zeta/",
            "HTTPS://VPN.EXAMPLE/zeta",
            "/zeta",
            "zeta",
        ] {
            assert_eq!(
                c.tunnel_group_for_url(u).map(|t| t.name.as_str()),
                Some("Zeta"),
                "{u}"
            );
        }
        assert!(
            c.tunnel_group_for_url("https://other.example/zeta")
                .is_none()
        );
        assert!(c.tunnel_group_for_url("/ZETA").is_none());
        assert!(c.tunnel_group_for_url("/alpha").is_none(), "disabled url");
        let tg = &c.tunnel_groups["Zeta"];
        let names = |v: Vec<&Ipv4Pool>| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(c.address_pools_for(tg, &c.effective_policy("G"))),
            vec!["Q"]
        );
        assert_eq!(
            names(c.address_pools_for(tg, &c.effective_policy("X"))),
            vec!["P"]
        );
    }
}

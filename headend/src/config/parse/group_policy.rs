//! `group-policy NAME internal|attributes` and its sub-modes (attributes, webvpn),
//! with the `anyconnect ...` lines and the pushed client settings (`client_settings.rs`).

use super::*;

impl Parser<'_> {
    // ------------------------------------------------------------- group-policy

    pub(super) fn group_policy(&mut self, c: &Cmd) -> Step {
        match c.toks.as_slice() {
            [_, name, "internal"] => {
                self.cfg
                    .group_policies
                    .entry((*name).to_string())
                    .or_insert_with(|| GroupPolicy {
                        name: (*name).to_string(),
                        line: c.line,
                        ..GroupPolicy::default()
                    });
                Ok(None)
            }
            [_, name, "attributes"] => {
                if !self.cfg.group_policies.contains_key(*name) {
                    // DfltGrpPolicy exists on every ASA without `internal`.
                    if *name != DEFAULT_GROUP_POLICY {
                        return fail(format!(
                            "group-policy `{name}` is not defined; add `group-policy {name} internal` first"
                        ));
                    }
                    self.cfg.group_policies.insert(
                        (*name).to_string(),
                        GroupPolicy {
                            name: (*name).to_string(),
                            line: c.line,
                            ..GroupPolicy::default()
                        },
                    );
                }
                Ok(Some(Mode::GroupPolicy((*name).to_string())))
            }
            [_, name, "external", ..] => {
                self.warn(
                    c.line,
                    format!("external group-policy `{name}` is not supported; ignored"),
                );
                Ok(Some(Mode::Unknown))
            }
            _ => fail("expected `group-policy NAME internal` or `group-policy NAME attributes`"),
        }
    }

    pub(super) fn sub_group_policy(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        if self.gp_anyconnect(name, c)? || self.gp_client_settings(name, c, false)? {
            return Ok(None);
        }
        let t = c.toks.as_slice();
        let slot = |what: &str| format!("group-policy {name} {what}");
        // References first (they need &mut self, the policy borrow comes after).
        match t {
            ["split-tunnel-network-list", "value", acl] => self.set_ref(
                slot("split"),
                c.line,
                RefKind::SplitAcl,
                vec![(*acl).to_string()],
            ),
            ["split-tunnel-network-list", "none"] => {
                self.set_ref(slot("split"), c.line, RefKind::SplitAcl, vec![])
            }
            ["vpn-filter", "value", acl] => self.set_ref(
                slot("filter"),
                c.line,
                RefKind::FilterAcl,
                vec![(*acl).to_string()],
            ),
            ["vpn-filter", "none"] => {
                self.set_ref(slot("filter"), c.line, RefKind::FilterAcl, vec![])
            }
            ["address-pools", "value", pools @ ..] => {
                let names = pools.iter().map(|p| (*p).to_string()).collect();
                self.set_ref(slot("pools"), c.line, RefKind::Pool4, names)
            }
            ["address-pools", "none"] => {
                self.set_ref(slot("pools"), c.line, RefKind::Pool4, vec![])
            }
            ["ipv6-address-pools", "value", pools @ ..] => {
                let names = pools.iter().map(|p| (*p).to_string()).collect();
                self.set_ref(slot("pools6"), c.line, RefKind::Pool6, names)
            }
            ["ipv6-address-pools", "none"] => {
                self.set_ref(slot("pools6"), c.line, RefKind::Pool6, vec![])
            }
            _ => {}
        }
        let Some(gp) = self.cfg.group_policies.get_mut(name) else {
            return Ok(None);
        };
        match t {
            ["vpn-tunnel-protocol", protos @ ..] if !protos.is_empty() => {
                for p in protos {
                    if !matches!(
                        *p,
                        "ssl-client" | "ssl-clientless" | "ikev1" | "ikev2" | "l2tp-ipsec"
                    ) {
                        return fail(format!(
                            "unknown vpn-tunnel-protocol `{p}` (expected ssl-client, ssl-clientless, ikev1, ikev2 or l2tp-ipsec)"
                        ));
                    }
                }
                gp.vpn_tunnel_protocols = Some(protos.iter().map(|p| (*p).to_string()).collect());
            }
            ["split-tunnel-policy", p] => {
                gp.split_tunnel_policy = Some(match *p {
                    "tunnelall" => SplitTunnelPolicy::TunnelAll,
                    "tunnelspecified" => SplitTunnelPolicy::TunnelSpecified,
                    "excludespecified" => SplitTunnelPolicy::ExcludeSpecified,
                    _ => {
                        return fail(format!(
                            "bad split-tunnel-policy `{p}` (expected tunnelall, tunnelspecified or excludespecified)"
                        ));
                    }
                })
            }
            ["split-tunnel-network-list", "value", acl] => {
                gp.split_tunnel_network_list = Some((*acl).to_string())
            }
            ["split-tunnel-network-list", "none"] => {
                gp.split_tunnel_network_list = Some(String::new())
            }
            ["dns-server", "value", addrs @ ..] if !addrs.is_empty() => {
                let mut v = Vec::new();
                for a in addrs {
                    v.push(parse_ip(a)?);
                }
                gp.dns_servers = Some(v);
            }
            ["dns-server", "none"] => gp.dns_servers = Some(Vec::new()),
            ["default-domain", "value", d] => gp.default_domain = Some((*d).to_string()),
            ["default-domain", "none"] => gp.default_domain = Some(String::new()),
            ["vpn-filter", "value", acl] => gp.vpn_filter = Some((*acl).to_string()),
            ["vpn-filter", "none"] => gp.vpn_filter = Some(String::new()),
            ["vpn-idle-timeout", "alert-interval", ..]
            | ["vpn-session-timeout", "alert-interval", ..] => {
                return self.unknown(c, Some(mode));
            }
            ["vpn-idle-timeout", v] => gp.vpn_idle_timeout_min = Some(minutes_or_none(v)?),
            ["vpn-session-timeout", v] => gp.vpn_session_timeout_min = Some(minutes_or_none(v)?),
            ["vpn-simultaneous-logins", n] => {
                gp.vpn_simultaneous_logins =
                    Some(parse_num(n, "simultaneous logins", 0, 2_147_483_647)?)
            }
            ["address-pools", "value", pools @ ..] if !pools.is_empty() => {
                gp.address_pools = Some(pools.iter().map(|p| (*p).to_string()).collect())
            }
            ["address-pools", "none"] => gp.address_pools = Some(Vec::new()),
            ["ipv6-address-pools", "value", pools @ ..] if !pools.is_empty() => {
                gp.ipv6_address_pools = Some(pools.iter().map(|p| (*p).to_string()).collect())
            }
            ["ipv6-address-pools", "none"] => gp.ipv6_address_pools = Some(Vec::new()),
            ["banner", "value", ..] => {
                let text = rest_after(c.text, 2);
                // Each `banner value` line adds one line, as on ASA.
                gp.banner = Some(match gp.banner.take() {
                    Some(old) if !old.is_empty() => format!("{old}\n{text}"),
                    _ => text.to_string(),
                });
            }
            ["banner", "none"] => gp.banner = Some(String::new()),
            ["webvpn"] => return Ok(Some(Mode::GroupPolicyWebvpn(name.to_string()))),
            [
                "vpn-tunnel-protocol"
                | "split-tunnel-policy"
                | "split-tunnel-network-list"
                | "dns-server"
                | "default-domain"
                | "vpn-filter"
                | "vpn-idle-timeout"
                | "vpn-session-timeout"
                | "vpn-simultaneous-logins"
                | "address-pools"
                | "ipv6-address-pools"
                | "banner",
                ..,
            ] => {
                return fail(format!(
                    "bad arguments to `{}` (expected `value ...` or `none`)",
                    t.first().copied().unwrap_or_default()
                ));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    /// Pushed client settings (`client_settings.rs`). False when not one of them.
    pub(super) fn gp_client_settings(
        &mut self,
        name: &str,
        c: &Cmd,
        webvpn: bool,
    ) -> PResult<bool> {
        let Some(gp) = self.cfg.group_policies.get_mut(name) else {
            return Ok(false);
        };
        match crate::config::client_settings::parse(&c.toks, webvpn, &mut gp.client)? {
            crate::config::client_settings::Parsed::NotMine => Ok(false),
            crate::config::client_settings::Parsed::Done => Ok(true),
            crate::config::client_settings::Parsed::Warn(m) => {
                self.warn(c.line, m);
                Ok(true)
            }
        }
    }

    /// `anyconnect ...` settings, valid directly in group-policy attributes and in
    /// its `webvpn` sub-mode. Returns false when the line is not one of them.
    pub(super) fn gp_anyconnect(&mut self, name: &str, c: &Cmd) -> PResult<bool> {
        let Some(gp) = self.cfg.group_policies.get_mut(name) else {
            return Ok(false);
        };
        match c.toks.as_slice() {
            ["anyconnect", "dpd-interval", rest @ ..] => {
                if rest.is_empty() {
                    return fail("expected `anyconnect dpd-interval client N|none gateway N|none`");
                }
                let mut rest = rest;
                loop {
                    rest = match rest {
                        [] => break,
                        ["client", v, tail @ ..] => {
                            gp.anyconnect_dpd_client_secs =
                                Some(secs_or_none(v, "dpd-interval", 5, 3600)?);
                            tail
                        }
                        ["gateway", v, tail @ ..] => {
                            gp.anyconnect_dpd_gateway_secs =
                                Some(secs_or_none(v, "dpd-interval", 5, 3600)?);
                            tail
                        }
                        _ => {
                            return fail(
                                "expected `anyconnect dpd-interval client N|none gateway N|none`",
                            );
                        }
                    };
                }
            }
            ["anyconnect", "ssl", "keepalive", v] => {
                gp.anyconnect_keepalive_secs = Some(secs_or_none(v, "keepalive", 15, 600)?)
            }
            ["anyconnect", "mtu", n] => {
                gp.anyconnect_mtu = Some(parse_num(n, "MTU", 576, 1462)? as u16)
            }
            ["anyconnect", "ssl", "dtls", "enable"] => gp.anyconnect_dtls = Some(true),
            ["anyconnect", "ssl", "dtls", "disable" | "none"] => gp.anyconnect_dtls = Some(false),
            ["anyconnect", "ssl", "keepalive" | "dtls", ..] | ["anyconnect", "mtu", ..] => {
                return fail(format!("bad arguments to `{}`", words(&c.toks)));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::test_util::*;

    // ------------------------------------------------------------- group-policy

    #[test]
    fn config_group_policy() {
        let c = ok(&cfg(&[
            "ip local pool P 10.0.0.10-10.0.0.20 mask 255.255.255.0",
            "ipv6 local pool P6 fd00::10/64 100",
            "access-list SPLIT standard permit 198.18.1.0 255.255.255.0",
            "access-list F extended permit ip any any",
            "group-policy GP internal",
            "group-policy GP attributes",
            " vpn-tunnel-protocol ssl-client ikev2",
            " split-tunnel-policy tunnelspecified",
            " split-tunnel-network-list value SPLIT",
            " dns-server value 198.18.1.53 2001:db8::53",
            " default-domain value corp.example",
            " vpn-filter value F",
            " vpn-idle-timeout 45",
            " vpn-session-timeout none",
            " vpn-simultaneous-logins 2",
            " address-pools value P",
            " ipv6-address-pools value P6",
            " anyconnect dpd-interval client 40 gateway none",
            " anyconnect ssl keepalive 25",
            " anyconnect mtu 1300",
            " anyconnect ssl dtls disable",
            " banner value Welcome",
            " banner value Authorized use only",
            " anyconnect keep-installer none",
            " webvpn",
            "  anyconnect mtu 1350",
            "  anyconnect modules value dart",
            " vpn-idle-timeout alert-interval 1",
            "group-policy DfltGrpPolicy attributes",
            " dns-server none",
            " default-domain none",
            " vpn-filter none",
            " split-tunnel-network-list none",
            " address-pools none",
            " banner none",
        ]));
        let g = &c.group_policies["GP"];
        assert_eq!(g.line, 5);
        assert_eq!(
            g.vpn_tunnel_protocols,
            Some(vec!["ssl-client".to_string(), "ikev2".into()])
        );
        assert_eq!(
            g.split_tunnel_policy,
            Some(SplitTunnelPolicy::TunnelSpecified)
        );
        assert_eq!(g.split_tunnel_network_list.as_deref(), Some("SPLIT"));
        assert_eq!(
            g.dns_servers,
            Some(vec![
                "198.18.1.53".parse().unwrap(),
                "2001:db8::53".parse().unwrap()
            ])
        );
        assert_eq!(g.default_domain.as_deref(), Some("corp.example"));
        assert_eq!(g.vpn_filter.as_deref(), Some("F"));
        assert_eq!(g.vpn_idle_timeout_min, Some(45));
        assert_eq!(g.vpn_session_timeout_min, Some(0));
        assert_eq!(g.vpn_simultaneous_logins, Some(2));
        assert_eq!(g.address_pools, Some(vec!["P".to_string()]));
        assert_eq!(g.ipv6_address_pools, Some(vec!["P6".to_string()]));
        assert_eq!(g.anyconnect_dpd_client_secs, Some(40));
        assert_eq!(g.anyconnect_dpd_gateway_secs, Some(0));
        assert_eq!(g.anyconnect_keepalive_secs, Some(25));
        assert_eq!(g.anyconnect_mtu, Some(1350));
        assert_eq!(g.anyconnect_dtls, Some(false));
        assert_eq!(g.banner.as_deref(), Some("Welcome\nAuthorized use only"));
        let d = &c.group_policies["DfltGrpPolicy"];
        assert_eq!(d.dns_servers, Some(vec![]));
        assert_eq!(d.default_domain.as_deref(), Some(""));
        assert_eq!(d.vpn_filter.as_deref(), Some(""));
        assert_eq!(d.address_pools, Some(vec![]));
        assert_eq!(d.banner.as_deref(), Some(""));
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![24, 27, 28], "{:?}", c.warnings);
    }

    #[test]
    fn config_group_policy_errors() {
        let gp = |l: &str| format!("group-policy G internal\ngroup-policy G attributes\n{l}");
        bad(
            &gp(" split-tunnel-policy sometimes"),
            3,
            "bad split-tunnel-policy `sometimes`",
        );
        bad(
            &gp(" vpn-tunnel-protocol ssl-client pptp"),
            3,
            "unknown vpn-tunnel-protocol `pptp`",
        );
        bad(&gp(" vpn-idle-timeout soon"), 3, "bad timeout (minutes)");
        bad(&gp(" dns-server value 1.2.3"), 3, "bad IP address `1.2.3`");
        bad(
            &gp(" dns-server 1.2.3.4"),
            3,
            "bad arguments to `dns-server`",
        );
        bad(&gp(" anyconnect mtu 9000"), 3, "bad MTU `9000`");
        bad(&gp(" anyconnect dpd-interval client 2"), 3, "dpd-interval");
        bad(
            &gp(" anyconnect dpd-interval server 30"),
            3,
            "expected `anyconnect dpd-interval",
        );
        bad(&gp(" anyconnect ssl dtls maybe"), 3, "bad arguments");
        bad(
            &gp(" address-pools value NOPE"),
            3,
            "ip local pool `NOPE` is not defined",
        );
        bad(
            &gp(" ipv6-address-pools value NOPE"),
            3,
            "ipv6 local pool `NOPE` is not defined",
        );
        bad(
            &gp(" split-tunnel-network-list value NOPE"),
            3,
            "access-list `NOPE` is not defined",
        );
        bad(
            &gp(" vpn-filter value NOPE"),
            3,
            "access-list `NOPE` is not defined",
        );
        bad(
            &format!(
                "access-list S standard permit any4\n{}",
                gp(" vpn-filter value S")
            ),
            4,
            "vpn-filter needs an extended access-list",
        );
        bad(
            "group-policy G attributes",
            1,
            "group-policy `G` is not defined",
        );
        bad("group-policy G", 1, "expected `group-policy NAME internal`");
        // a later line replaces the reference: no error for the overridden name
        ok(&gp(" vpn-filter value NOPE\n vpn-filter none"));
    }
}

//! Human summary of a loaded configuration, for `headend check-config FILE`.

use std::fmt::Write as _;

use super::model::*;

impl Config {
    /// What the headend understood from the file, then its warnings as
    /// `file:line: warning: ...`. Secrets are never printed.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail; the results are ignored on purpose.
        let _ = self.write_summary(&mut s);
        s
    }

    fn write_summary(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "hostname: {}",
            self.hostname.as_deref().unwrap_or("(not set)")
        )?;

        writeln!(s, "tunnel groups: {}", self.tunnel_groups.len())?;
        let mut tgs: Vec<&TunnelGroup> = self.tunnel_groups.values().collect();
        tgs.sort_by_key(|t| t.line);
        for tg in tgs {
            let auth = match tg.authentication {
                TunnelAuthentication::Aaa => format!(
                    "aaa ({})",
                    tg.authentication_server_group.as_deref().unwrap_or("LOCAL")
                ),
                TunnelAuthentication::Saml => format!(
                    "saml ({})",
                    tg.saml_identity_provider.as_deref().unwrap_or("no idp")
                ),
                TunnelAuthentication::Certificate => "certificate".into(),
            };
            let aliases: Vec<&str> = tg
                .group_aliases
                .iter()
                .filter(|(_, on)| *on)
                .map(|(a, _)| a.as_str())
                .collect();
            writeln!(
                s,
                "  {}: auth {auth}, pool {}, default-group-policy {}, aliases [{}]{}{}",
                tg.name,
                list_or(&tg.address_pools, "-"),
                tg.default_group_policy
                    .as_deref()
                    .unwrap_or(super::DEFAULT_GROUP_POLICY),
                aliases.join(", "),
                tg.authorization_server_group
                    .as_ref()
                    .map(|g| format!(", authorization {g}"))
                    .unwrap_or_default(),
                tg.accounting_server_group
                    .as_ref()
                    .map(|g| format!(", accounting {g}"))
                    .unwrap_or_default(),
            )?;
        }

        writeln!(
            s,
            "address pools: {}",
            self.ip_local_pools.len() + self.ipv6_local_pools.len()
        )?;
        for p in self.ip_local_pools.values() {
            writeln!(s, "  {}: {}-{} mask {}", p.name, p.first, p.last, p.mask)?;
        }
        for p in self.ipv6_local_pools.values() {
            writeln!(
                s,
                "  {}: {}/{} ({} addresses)",
                p.name, p.first, p.prefix_len, p.count
            )?;
        }

        let names: Vec<&str> = self.group_policies.keys().map(|k| k.as_str()).collect();
        writeln!(s, "group policies: {} [{}]", names.len(), names.join(", "))?;

        writeln!(s, "access lists: {}", self.access_lists.len())?;
        for acl in self.access_lists.values() {
            let n = acl
                .entries
                .iter()
                .filter(|e| !matches!(e.kind, AclEntryKind::Remark(_)))
                .count();
            // Entries naming object-groups count as ASA's `elements` do, expanded.
            let expanded: usize = acl
                .entries
                .iter()
                .map(|e| match e.kind {
                    AclEntryKind::Remark(_) => 0,
                    AclEntryKind::Standard { .. } => 1,
                    _ => e.extended_aces().len(),
                })
                .sum();
            let elements = if expanded == n {
                String::new()
            } else {
                format!(" ({expanded} elements)")
            };
            writeln!(
                s,
                "  {}: {n} entr{}{elements}",
                acl.name,
                if n == 1 { "y" } else { "ies" }
            )?;
        }
        let o = &self.objects;
        if !(o.network.is_empty() && o.service.is_empty() && o.groups.is_empty()) {
            writeln!(
                s,
                "objects: {} network, {} service; object-groups: {}",
                o.network.len(),
                o.service.len(),
                o.groups.len()
            )?;
        }

        writeln!(s, "aaa-server groups: {}", self.aaa_server_groups.len())?;
        for g in self.aaa_server_groups.values() {
            let hosts: Vec<String> = g
                .hosts
                .iter()
                .map(|h| format!("{}:{}", h.address, h.authentication_port))
                .collect();
            writeln!(
                s,
                "  {}: radius{}, hosts [{}]",
                g.name,
                if g.authorize_only {
                    ", authorize-only"
                } else {
                    ""
                },
                hosts.join(", ")
            )?;
        }

        writeln!(s, "saml idps: {}", self.webvpn.saml_idps.len())?;
        for idp in self.webvpn.saml_idps.values() {
            writeln!(
                s,
                "  {}: sign-in {}, trustpoint idp {}",
                idp.entity_id,
                idp.sign_in_url.as_deref().unwrap_or("-"),
                idp.trustpoint_idp.as_deref().unwrap_or("-")
            )?;
        }

        let peers: Vec<String> = self
            .cts
            .sxp_connections
            .iter()
            .map(|c| c.peer.to_string())
            .collect();
        writeln!(
            s,
            "cts: {} sgt-map entries, sxp {}, sxp peers [{}]",
            self.cts.sgt_map.len(),
            if self.cts.sxp_enable {
                "enabled"
            } else {
                "disabled"
            },
            peers.join(", ")
        )?;

        writeln!(s, "warnings: {}", self.warnings.len())?;
        for w in &self.warnings {
            writeln!(s, "{}:{}: warning: {}", self.source, w.line, w.message)?;
        }
        Ok(())
    }
}

fn list_or(v: &[String], empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        v.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    #[test]
    fn config_summary_lists_everything_but_secrets() {
        let c = parse_str(
            &[
                "hostname gw",
                "names",
                "ip local pool P 10.0.0.10-10.0.0.20 mask 255.255.255.0",
                "aaa-server ISE protocol radius",
                " authorize-only",
                "aaa-server ISE (inside) host 10.1.1.1",
                " key topsecret",
                "access-list A extended permit ip any any",
                "access-list A remark x",
                "group-policy GP internal",
                "webvpn",
                " saml idp urn:idp",
                "  url sign-in https://idp/sso",
                "tunnel-group T type remote-access",
                "tunnel-group T general-attributes",
                " address-pool P",
                " authentication-server-group ISE",
                " default-group-policy GP",
                "tunnel-group T webvpn-attributes",
                " group-alias Corp enable",
                "cts role-based sgt-map 10.0.0.0/8 sgt 5",
                "cts sxp enable",
                "cts sxp connection peer 10.1.1.2 password none mode local listener",
            ]
            .join("\n"),
            "gw.cfg",
        )
        .unwrap();
        let s = c.summary();
        for want in [
            "hostname: gw",
            "tunnel groups: 1",
            "T: auth aaa (ISE), pool P, default-group-policy GP, aliases [Corp]",
            "P: 10.0.0.10-10.0.0.20 mask 255.255.255.0",
            "group policies: 1 [GP]",
            "A: 1 entry",
            "ISE: radius, authorize-only, hosts [10.1.1.1:1812]",
            "urn:idp: sign-in https://idp/sso",
            "cts: 1 sgt-map entries, sxp enabled, sxp peers [10.1.1.2]",
            "gw.cfg:2: warning: unknown command `names` ignored",
        ] {
            assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
        }
        assert!(!s.contains("topsecret"));
    }
}

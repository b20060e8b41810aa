//! Cross-checks run once the whole file is read: every recorded reference
//! (pools, group-policies, ACLs, aaa-server groups, IdPs, trustpoints) and the SAML
//! rules. Errors point at the referencing line.

use super::*;

impl Parser<'_> {
    // ----------------------------------------------------------- cross-checks

    /// Check every recorded reference and the SAML rules; report the earliest
    /// offending line so fixing errors top to bottom works.
    pub(super) fn check_references(&self) -> Result<(), ConfigError> {
        let cfg = &self.cfg;
        let mut errors: Vec<(usize, String)> = Vec::new();
        for r in self.refs.values() {
            for n in &r.names {
                if let Some(m) = self.check_ref(r.kind, n) {
                    errors.push((r.line, m));
                }
            }
        }
        for (tg_name, line) in &self.saml_auth_lines {
            if tg_name.contains('.') || tg_name.contains('/') {
                errors.push((
                    *line,
                    format!("tunnel-group `{tg_name}` cannot use SAML: its name goes into the SAML entity ID and ACS URL, so it must not contain dots or slashes"),
                ));
            }
            let Some(tg) = cfg.tunnel_groups.get(tg_name) else {
                continue;
            };
            let Some(entity) = &tg.saml_identity_provider else {
                errors.push((
                    *line,
                    format!("tunnel-group `{tg_name}` uses `authentication saml` but has no `saml identity-provider`"),
                ));
                continue;
            };
            let ref_line = self
                .refs
                .get(&format!("tunnel-group {tg_name} saml"))
                .map_or(*line, |r| r.line);
            if let Some(idp) = cfg.webvpn.saml_idps.get(entity) {
                if idp.sign_in_url.is_none() {
                    errors.push((
                        ref_line,
                        format!("saml idp `{entity}` has no `url sign-in`"),
                    ));
                }
                if idp.trustpoint_idp.is_none() {
                    errors.push((
                        ref_line,
                        format!("saml idp `{entity}` has no `trustpoint idp`: its responses could not be verified"),
                    ));
                }
            }
        }
        for idp in cfg.webvpn.saml_idps.values() {
            if idp.signature.is_some() && idp.trustpoint_sp.is_none() {
                errors.push((
                    idp.line,
                    format!("saml idp `{}` signs requests (`signature`) but has no `trustpoint sp` with a key", idp.entity_id),
                ));
            }
            if idp.signature.is_some()
                && let Some(sp) = &idp.trustpoint_sp
                && cfg.trustpoints.get(sp).is_some_and(|t| t.pkcs12.is_none())
            {
                let line = self
                    .refs
                    .get(&format!("saml idp {} trustpoint sp", idp.entity_id))
                    .map_or(idp.line, |r| r.line);
                errors.push((
                    line,
                    format!("trustpoint `{sp}` has no identity key (`crypto ca import {sp} pkcs12 ...`), needed to sign SAML requests"),
                ));
            }
        }
        if cfg.cts.sxp_default_password.is_none() {
            for conn in &cfg.cts.sxp_connections {
                if conn.password == SxpPassword::Default {
                    errors.push((
                        conn.line,
                        "SXP connection uses `password default` but there is no `cts sxp default password`".into(),
                    ));
                }
            }
        }
        match errors.into_iter().min_by_key(|e| e.0) {
            Some((line, m)) => Err(self.err(line, m)),
            None => Ok(()),
        }
    }

    pub(super) fn check_ref(&self, kind: RefKind, n: &str) -> Option<String> {
        let cfg = &self.cfg;
        match kind {
            RefKind::Pool4 => (!cfg.ip_local_pools.contains_key(n))
                .then(|| format!("ip local pool `{n}` is not defined")),
            RefKind::Pool6 => (!cfg.ipv6_local_pools.contains_key(n))
                .then(|| format!("ipv6 local pool `{n}` is not defined")),
            RefKind::GroupPolicy => (n != DEFAULT_GROUP_POLICY
                && !cfg.group_policies.contains_key(n))
            .then(|| format!("group-policy `{n}` is not defined")),
            RefKind::SplitAcl => (!cfg.access_lists.contains_key(n))
                .then(|| format!("access-list `{n}` is not defined")),
            RefKind::FilterAcl => match cfg.access_lists.get(n) {
                None => Some(format!("access-list `{n}` is not defined")),
                Some(acl)
                    if acl
                        .entries
                        .iter()
                        .any(|e| matches!(e.kind, AclEntryKind::Standard { .. })) =>
                {
                    Some(format!(
                        "vpn-filter needs an extended access-list; `{n}` is standard"
                    ))
                }
                Some(_) => None,
            },
            RefKind::AaaGroup { local_ok } => {
                if n == "LOCAL" {
                    return (!local_ok).then(|| {
                        "LOCAL cannot be used here; name an aaa-server group".to_string()
                    });
                }
                if cfg.aaa_server_groups.contains_key(n) {
                    return None;
                }
                Some(match self.ignored_aaa.get(n) {
                    Some(p) => format!(
                        "aaa-server group `{n}` uses protocol {p}, which the headend does not support"
                    ),
                    None => format!("aaa-server group `{n}` is not defined"),
                })
            }
            RefKind::SamlIdp => (!cfg.webvpn.saml_idps.contains_key(n))
                .then(|| format!("saml idp `{n}` is not defined under webvpn")),
            RefKind::TrustpointIdp => match cfg.trustpoints.get(n) {
                None => Some(format!("trustpoint `{n}` is not defined")),
                Some(t) if t.ca_certs_der.is_empty() => Some(format!(
                    "trustpoint `{n}` has no certificate (missing `crypto ca authenticate {n}`): IdP signatures could not be checked"
                )),
                Some(_) => None,
            },
            RefKind::TrustpointSp => (!cfg.trustpoints.contains_key(n))
                .then(|| format!("trustpoint `{n}` is not defined")),
            RefKind::SslTrustPoint => match cfg.trustpoints.get(n) {
                None => Some(format!("trustpoint `{n}` is not defined")),
                Some(t) if t.pkcs12.is_none() => Some(format!(
                    "trustpoint `{n}` has no identity certificate and key (missing `crypto ca import {n} pkcs12 ...`)"
                )),
                Some(_) => None,
            },
        }
    }
}

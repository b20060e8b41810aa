//! `tunnel-group NAME type|general-attributes|webvpn-attributes` and their
//! sub-modes. The SAML lines of `webvpn-attributes` beyond `saml identity-provider`
//! are in `saml.rs`.

use super::*;

impl Parser<'_> {
    // ------------------------------------------------------------- tunnel-group

    pub(super) fn tunnel_group(&mut self, c: &Cmd) -> Step {
        match c.toks.as_slice() {
            [_, name, "type", "remote-access"] => {
                let tg = self
                    .cfg
                    .tunnel_groups
                    .entry((*name).to_string())
                    .or_insert_with(|| TunnelGroup {
                        name: (*name).to_string(),
                        line: c.line,
                        ..TunnelGroup::default()
                    });
                tg.remote_access = true;
                Ok(None)
            }
            [_, name, "type", ty @ ("ipsec-l2l" | "webvpn" | "ipsec-ra")] => {
                self.ignored_tgs.insert((*name).to_string());
                self.warn(
                    c.line,
                    format!(
                        "tunnel-group `{name}` of type {ty} is not served by the headend; ignored"
                    ),
                );
                Ok(None)
            }
            [_, _, "type", ty] => fail(format!(
                "unknown tunnel-group type `{ty}` (expected remote-access)"
            )),
            [_, name, kind @ ("general-attributes" | "webvpn-attributes")] => {
                if self.ignored_tgs.contains(*name) {
                    return Ok(Some(Mode::Unknown));
                }
                if !self.cfg.tunnel_groups.contains_key(*name) {
                    // These two exist on every ASA without a `type` line.
                    if !matches!(*name, "DefaultRAGroup" | "DefaultWEBVPNGroup") {
                        return fail(format!(
                            "tunnel-group `{name}` is not defined; add `tunnel-group {name} type remote-access` first"
                        ));
                    }
                    self.cfg.tunnel_groups.insert(
                        (*name).to_string(),
                        TunnelGroup {
                            name: (*name).to_string(),
                            remote_access: true,
                            line: c.line,
                            ..TunnelGroup::default()
                        },
                    );
                }
                let n = (*name).to_string();
                Ok(Some(if *kind == "general-attributes" {
                    Mode::TunnelGeneral(n)
                } else {
                    Mode::TunnelWebvpn(n)
                }))
            }
            [_, name, "ipsec-attributes" | "ppp-attributes"] => {
                if self.ignored_tgs.contains(*name) {
                    // Already warned about at its `type` line.
                    return Ok(Some(Mode::Unknown));
                }
                self.unknown(c, None)
            }
            _ => fail(
                "expected `tunnel-group NAME type remote-access`, `general-attributes` or `webvpn-attributes`",
            ),
        }
    }

    pub(super) fn sub_tunnel_general(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        let slot = |what: &str| format!("tunnel-group {name} {what}");
        let toks: &[&str] = c.toks.as_slice();
        match toks {
            ["address-pool", rest @ ..] | ["ipv6-address-pool", rest @ ..] => {
                // `(inside)` names the interface; the headend has no use for it.
                let rest = match rest {
                    [i, tail @ ..] if i.starts_with('(') => tail,
                    _ => rest,
                };
                if rest.is_empty() || rest.len() > 6 {
                    return fail("expected `address-pool POOL [POOL...]` (at most 6 pools)");
                }
                let names: Vec<String> = rest.iter().map(|p| (*p).to_string()).collect();
                let v6 = toks.first() == Some(&"ipv6-address-pool");
                let (s, kind) = if v6 {
                    (slot("ipv6-address-pool"), RefKind::Pool6)
                } else {
                    (slot("address-pool"), RefKind::Pool4)
                };
                self.set_ref(s, c.line, kind, names.clone());
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    if v6 {
                        tg.ipv6_address_pools = names;
                    } else {
                        tg.address_pools = names;
                    }
                }
            }
            ["no", "address-pool", ..] => {
                self.set_ref(slot("address-pool"), c.line, RefKind::Pool4, vec![]);
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.address_pools.clear();
                }
            }
            ["authentication-server-group", rest @ ..] => {
                let group = match rest {
                    [i, g] | [i, g, "LOCAL"] if i.starts_with('(') => *g,
                    [g] | [g, "LOCAL"] => *g,
                    _ => {
                        return fail(
                            "expected `authentication-server-group [(INTERFACE)] GROUP [LOCAL]`",
                        );
                    }
                };
                let value = (group != "LOCAL").then(|| group.to_string());
                let names = value.iter().cloned().collect();
                self.set_ref(
                    slot("authentication"),
                    c.line,
                    RefKind::AaaGroup { local_ok: true },
                    names,
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.authentication_server_group = value;
                }
            }
            ["authorization-server-group", g] => {
                self.set_ref(
                    slot("authorization"),
                    c.line,
                    RefKind::AaaGroup { local_ok: true },
                    vec![(*g).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.authorization_server_group = Some((*g).to_string());
                }
            }
            ["accounting-server-group", g] => {
                self.set_ref(
                    slot("accounting"),
                    c.line,
                    RefKind::AaaGroup { local_ok: false },
                    vec![(*g).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.accounting_server_group = Some((*g).to_string());
                }
            }
            ["default-group-policy", p] => {
                self.set_ref(
                    slot("default-group-policy"),
                    c.line,
                    RefKind::GroupPolicy,
                    vec![(*p).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.default_group_policy = Some((*p).to_string());
                }
            }
            [
                "authorization-server-group" | "accounting-server-group" | "default-group-policy",
                ..,
            ] => {
                return fail(format!("expected `{} NAME`", words(toks)));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    pub(super) fn sub_tunnel_webvpn(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        if let Some(step) = self.tunnel_webvpn_saml(name, mode, c) {
            return step;
        }
        let t = c.toks.as_slice();
        match t {
            ["authentication", methods @ ..] => {
                let auth = match methods {
                    ["aaa"] => TunnelAuthentication::Aaa,
                    ["saml"] => TunnelAuthentication::Saml,
                    ["certificate"] => TunnelAuthentication::Certificate,
                    [] => return fail("expected `authentication saml|aaa|certificate`"),
                    [_, _, ..] => {
                        return fail(format!(
                            "combined authentication `{}` is not supported (use one of saml, aaa, certificate)",
                            methods.join(" ")
                        ));
                    }
                    [m] => {
                        return fail(format!(
                            "unknown authentication method `{m}` (expected saml, aaa or certificate)"
                        ));
                    }
                };
                if auth == TunnelAuthentication::Saml {
                    self.saml_auth_lines.insert(name.to_string(), c.line);
                } else {
                    self.saml_auth_lines.remove(name);
                }
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.authentication = auth;
                }
            }
            ["group-alias", a, rest @ ..] | ["group-url", a, rest @ ..] => {
                let is_url = t.first() == Some(&"group-url");
                let enabled = match rest {
                    [] | ["enable"] => true,
                    ["disable"] => false,
                    _ => {
                        return fail(format!(
                            "expected `{} {} enable|disable`",
                            if is_url { "group-url" } else { "group-alias" },
                            if is_url { "URL" } else { "ALIAS" }
                        ));
                    }
                };
                let value = if is_url {
                    check_url(a)?
                } else {
                    (*a).to_string()
                };
                let owners = if is_url {
                    &mut self.url_owner
                } else {
                    &mut self.alias_owner
                };
                let key = if is_url {
                    normalize_url(&value)
                } else {
                    value.clone()
                };
                if enabled {
                    if let Some((other, l)) = owners.get(&key)
                        && other != name
                    {
                        return fail(format!(
                            "{} `{value}` is already used by tunnel-group `{other}` (line {l})",
                            if is_url { "group-url" } else { "group-alias" }
                        ));
                    }
                    owners.insert(key, (name.to_string(), c.line));
                } else if owners.get(&key).is_some_and(|(o, _)| o == name) {
                    owners.remove(&key);
                }
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    let list = if is_url {
                        &mut tg.group_urls
                    } else {
                        &mut tg.group_aliases
                    };
                    match list.iter_mut().find(|(v, _)| *v == value) {
                        Some(e) => e.1 = enabled,
                        None => list.push((value, enabled)),
                    }
                }
            }
            ["group-alias" | "group-url"] => {
                return fail(format!("`{}` needs a value", words(t)));
            }
            ["no", kind @ ("group-alias" | "group-url"), a, ..] => {
                let is_url = *kind == "group-url";
                let owners = if is_url {
                    &mut self.url_owner
                } else {
                    &mut self.alias_owner
                };
                let key = if is_url {
                    normalize_url(a)
                } else {
                    (*a).to_string()
                };
                if owners.get(&key).is_some_and(|(o, _)| o == name) {
                    owners.remove(&key);
                }
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    if is_url {
                        tg.group_urls.retain(|(v, _)| v != a);
                    } else {
                        tg.group_aliases.retain(|(v, _)| v != a);
                    }
                }
            }
            ["saml", "identity-provider", e] => {
                self.set_ref(
                    format!("tunnel-group {name} saml"),
                    c.line,
                    RefKind::SamlIdp,
                    vec![(*e).to_string()],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.saml_identity_provider = Some((*e).to_string());
                }
            }
            ["no", "saml", "identity-provider", ..] => {
                self.set_ref(
                    format!("tunnel-group {name} saml"),
                    c.line,
                    RefKind::SamlIdp,
                    vec![],
                );
                if let Some(tg) = self.cfg.tunnel_groups.get_mut(name) {
                    tg.saml_identity_provider = None;
                }
            }
            ["saml", ..] => return fail("expected `saml identity-provider ENTITY-ID`"),
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::test_util::*;

    // ------------------------------------------------------------- tunnel-group

    #[test]
    fn config_tunnel_group() {
        let (text, n) = with_tps(&[
            "ip local pool P 10.0.0.10-10.0.0.20 mask 255.255.255.0",
            "ip local pool Q 10.0.1.10-10.0.1.20 mask 255.255.255.0",
            "ipv6 local pool P6 fd00::10/64 100",
            "aaa-server ISE protocol radius",
            "group-policy GP internal",
            "webvpn",
            " saml idp https://idp/x",
            "  url sign-in https://idp/sso",
            "  trustpoint idp IDP",
            "tunnel-group TG type remote-access",
            "tunnel-group TG general-attributes",
            " address-pool (inside) P Q",
            " ipv6-address-pool P6",
            " authentication-server-group (inside) ISE LOCAL",
            " authorization-server-group ISE",
            " accounting-server-group ISE",
            " default-group-policy GP",
            " password-management",
            "tunnel-group TG webvpn-attributes",
            " authentication saml",
            " group-alias Corp enable",
            " group-alias Old disable",
            " group-url https://vpn.example/corp enable",
            " saml identity-provider https://idp/x",
            "tunnel-group L2L type ipsec-l2l",
            "tunnel-group L2L ipsec-attributes",
            " ikev2 remote-authentication pre-shared-key secret",
            "tunnel-group DefaultWEBVPNGroup general-attributes",
            " authentication-server-group LOCAL",
        ]);
        let c = ok(&text);
        let tg = &c.tunnel_groups["TG"];
        assert!(tg.remote_access);
        assert_eq!(tg.line, n + 10);
        assert_eq!(tg.address_pools, vec!["P".to_string(), "Q".into()]);
        assert_eq!(tg.ipv6_address_pools, vec!["P6".to_string()]);
        assert_eq!(tg.authentication_server_group.as_deref(), Some("ISE"));
        assert_eq!(tg.authorization_server_group.as_deref(), Some("ISE"));
        assert_eq!(tg.accounting_server_group.as_deref(), Some("ISE"));
        assert_eq!(tg.default_group_policy.as_deref(), Some("GP"));
        assert_eq!(tg.authentication, TunnelAuthentication::Saml);
        assert_eq!(
            tg.group_aliases,
            vec![("Corp".to_string(), true), ("Old".to_string(), false)]
        );
        assert_eq!(
            tg.group_urls,
            vec![("https://vpn.example/corp".to_string(), true)]
        );
        assert_eq!(tg.saml_identity_provider.as_deref(), Some("https://idp/x"));
        assert!(!c.tunnel_groups.contains_key("L2L"));
        let d = &c.tunnel_groups["DefaultWEBVPNGroup"];
        assert_eq!(d.authentication_server_group, None);
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![n + 18, n + 25], "{:?}", c.warnings);
        // the l2l pre-shared key must not appear in any warning
        assert!(c.warnings.iter().all(|w| !w.message.contains("secret")));
    }

    #[test]
    fn config_tunnel_group_errors() {
        let base = "tunnel-group T type remote-access\ntunnel-group T general-attributes\n";
        bad(
            &format!("{base} address-pool NOPE"),
            3,
            "ip local pool `NOPE` is not defined",
        );
        bad(
            &format!("{base} ipv6-address-pool NOPE"),
            3,
            "ipv6 local pool `NOPE` is not defined",
        );
        bad(
            &format!("{base} default-group-policy NOPE"),
            3,
            "group-policy `NOPE` is not defined",
        );
        bad(
            &format!("{base} authentication-server-group NOPE"),
            3,
            "aaa-server group `NOPE` is not defined",
        );
        bad(
            &format!("{base} authorization-server-group NOPE"),
            3,
            "aaa-server group `NOPE` is not defined",
        );
        bad(
            &format!("{base} accounting-server-group LOCAL"),
            3,
            "LOCAL cannot be used here",
        );
        bad(
            &format!("aaa-server AD protocol ldap\n{base} authentication-server-group AD"),
            4,
            "protocol ldap",
        );
        bad(
            &format!("{base} address-pool"),
            3,
            "expected `address-pool POOL",
        );
        bad(
            &format!("{base} default-group-policy"),
            3,
            "expected `default-group-policy NAME`",
        );
        // DfltGrpPolicy and LOCAL always exist; forward references are fine
        ok(&format!(
            "{base} default-group-policy DfltGrpPolicy\n authentication-server-group LOCAL\n authorization-server-group LOCAL\n address-pool LATER\nip local pool LATER 10.0.0.1-10.0.0.9 mask 255.255.255.0"
        ));
        bad(
            "tunnel-group T general-attributes",
            1,
            "tunnel-group `T` is not defined",
        );
        bad(
            "tunnel-group T type site-to-moon",
            1,
            "unknown tunnel-group type",
        );
        let web = "tunnel-group T type remote-access\ntunnel-group T webvpn-attributes\n";
        bad(
            &format!("{web} authentication aaa certificate"),
            3,
            "combined authentication",
        );
        bad(
            &format!("{web} authentication magic"),
            3,
            "unknown authentication method `magic`",
        );
        bad(&format!("{web} group-alias A maybe"), 3, "enable|disable");
        bad(&format!("{web} group-url ftp://x/a enable"), 3, "bad URL");
        bad(
            &format!("{web} saml identity-provider NOPE"),
            3,
            "saml idp `NOPE` is not defined",
        );
        bad(
            &format!("{web} authentication saml"),
            3,
            "has no `saml identity-provider`",
        );
        // duplicate aliases across tunnel groups
        bad(
            "tunnel-group A type remote-access\ntunnel-group A webvpn-attributes\n group-alias X enable\ntunnel-group B type remote-access\ntunnel-group B webvpn-attributes\n group-alias X enable",
            6,
            "already used by tunnel-group `A` (line 3)",
        );
    }

    #[test]
    fn config_saml_tunnel_group_rules() {
        let saml_tg = |name: &str, idp_extra: &[&str]| {
            let mut v = vec!["webvpn", " saml idp E"];
            v.extend_from_slice(idp_extra);
            let tg = [
                format!("tunnel-group {name} type remote-access"),
                format!("tunnel-group {name} webvpn-attributes"),
                " authentication saml".into(),
                " saml identity-provider E".into(),
            ];
            let mut all: Vec<String> = trustpoints();
            let n = all.len();
            all.extend(v.iter().map(|s| s.to_string()));
            all.extend(tg);
            (all.join("\n"), n + v.len())
        };
        let full = ["  url sign-in https://idp/sso", "  trustpoint idp IDP"];
        let (t, _) = saml_tg("corp", &full);
        ok(&t);
        let (t, n) = saml_tg("corp.vpn", &full);
        bad(&t, n + 3, "must not contain dots or slashes");
        let (t, n) = saml_tg("corp", &["  trustpoint idp IDP"]);
        bad(&t, n + 4, "has no `url sign-in`");
        let (t, n) = saml_tg("corp", &["  url sign-in https://idp/sso"]);
        bad(&t, n + 4, "has no `trustpoint idp`");
        let (t, n) = saml_tg(
            "corp",
            &[
                "  url sign-in https://idp/sso",
                "  trustpoint idp IDP",
                "  signature",
            ],
        );
        bad(&t, n - 3, "no `trustpoint sp`");
        let (t, n) = saml_tg(
            "corp",
            &[
                "  url sign-in https://idp/sso",
                "  trustpoint idp IDP",
                "  signature",
                "  trustpoint sp IDP",
            ],
        );
        bad(&t, n, "has no identity key");
        let (t, _) = saml_tg(
            "corp",
            &[
                "  url sign-in https://idp/sso",
                "  trustpoint idp IDP",
                "  signature",
                "  trustpoint sp ID",
            ],
        );
        ok(&t);
    }
}

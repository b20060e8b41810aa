//! `webvpn` and `saml idp ENTITY-ID` sub-modes. The `webvpn` SAML extras
//! (`anyconnect external-browser-pkg`) are in `saml.rs`.

use super::*;

impl Parser<'_> {
    pub(super) fn sub_webvpn(&mut self, mode: &Mode, c: &Cmd) -> Step {
        if let Some(step) = self.webvpn_saml(c) {
            return step;
        }
        let w = &mut self.cfg.webvpn;
        match c.toks.as_slice() {
            ["enable", iface] => {
                if !w.enable_interfaces.iter().any(|i| i == iface) {
                    w.enable_interfaces.push((*iface).to_string());
                }
            }
            ["no", "enable", iface] => w.enable_interfaces.retain(|i| i != iface),
            ["anyconnect", "enable"] => w.anyconnect_enable = true,
            ["no", "anyconnect", "enable"] => w.anyconnect_enable = false,
            ["tunnel-group-list", "enable"] => w.tunnel_group_list_enable = true,
            ["no", "tunnel-group-list", "enable"] => w.tunnel_group_list_enable = false,
            ["saml", "idp", entity] => {
                let idp = w
                    .saml_idps
                    .entry((*entity).to_string())
                    .or_insert_with(|| SamlIdp {
                        entity_id: (*entity).to_string(),
                        line: c.line,
                        ..SamlIdp::default()
                    });
                return Ok(Some(Mode::SamlIdp(idp.entity_id.clone())));
            }
            ["saml", ..] => return fail("expected `saml idp ENTITY-ID`"),
            ["no", "saml", "idp", entity] => {
                w.saml_idps.remove(*entity);
            }
            // A `saml idp` sub-command at webvpn level would silently leave the
            // IdP half-configured: say where it belongs instead.
            ["url" | "base-url" | "signature" | "force" | "timeout", ..]
            | ["trustpoint", "idp" | "sp", ..]
            | ["no", "signature" | "force", ..] => {
                return fail(format!(
                    "`{}` belongs under `saml idp ENTITY-ID`: indent it deeper than the `saml idp` line",
                    words(&c.toks)
                ));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    pub(super) fn sub_saml_idp(&mut self, entity: &str, mode: &Mode, c: &Cmd) -> Step {
        let tp_slot = |which: &str| format!("saml idp {entity} trustpoint {which}");
        let t = c.toks.as_slice();
        match t {
            ["trustpoint", "idp", n] => {
                self.set_ref(
                    tp_slot("idp"),
                    c.line,
                    RefKind::TrustpointIdp,
                    vec![(*n).to_string()],
                );
            }
            ["trustpoint", "sp", n] => {
                self.set_ref(
                    tp_slot("sp"),
                    c.line,
                    RefKind::TrustpointSp,
                    vec![(*n).to_string()],
                );
            }
            _ => {}
        }
        let Some(idp) = self.cfg.webvpn.saml_idps.get_mut(entity) else {
            return Ok(None);
        };
        match t {
            ["url", "sign-in", u] => idp.sign_in_url = Some(check_url(u)?),
            ["url", "sign-out", u] => idp.sign_out_url = Some(check_url(u)?),
            ["url", ..] => return fail("expected `url sign-in URL` or `url sign-out URL`"),
            ["base-url", u] => idp.base_url = Some(check_url(u)?),
            ["base-url", ..] => return fail("expected `base-url URL`"),
            ["trustpoint", "idp", n] => idp.trustpoint_idp = Some((*n).to_string()),
            ["trustpoint", "sp", n] => idp.trustpoint_sp = Some((*n).to_string()),
            ["trustpoint", ..] => {
                return fail("expected `trustpoint idp NAME` or `trustpoint sp NAME`");
            }
            // ASA's bare `signature` means SHA-1; we take SHA-256 so that a
            // signed request never uses SHA-1 unless asked for by name.
            ["signature"] => idp.signature = Some("rsa-sha256".into()),
            [
                "signature",
                alg @ ("rsa-sha1" | "rsa-sha256" | "rsa-sha384" | "rsa-sha512"),
            ] => idp.signature = Some((*alg).to_string()),
            ["signature", alg, ..] => {
                return fail(format!(
                    "bad signature algorithm `{alg}` (expected rsa-sha1, rsa-sha256, rsa-sha384 or rsa-sha512)"
                ));
            }
            ["no", "signature", ..] => idp.signature = None,
            ["force", "re-authentication"] => idp.force_reauthentication = true,
            ["no", "force", "re-authentication"] => idp.force_reauthentication = false,
            ["timeout", "assertion", n] => {
                idp.timeout_assertion_secs =
                    Some(parse_num(n, "assertion timeout (seconds)", 1, 86400)?)
            }
            ["no", "timeout", "assertion", ..] => idp.timeout_assertion_secs = None,
            ["timeout", ..] => return fail("expected `timeout assertion SECONDS`"),
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse::test_util::*;

    // ------------------------------------------------------------- webvpn / saml

    #[test]
    fn config_webvpn_and_saml_idp() {
        let (text, n) = with_tps(&[
            "webvpn",
            " enable outside",
            " anyconnect enable",
            " tunnel-group-list enable",
            " anyconnect image disk0:/anyconnect.pkg 1",
            " saml idp https://idp.example/meta",
            "  url sign-in https://idp.example/sso",
            "  url sign-out https://idp.example/slo",
            "  base-url https://vpn.example",
            "  trustpoint idp IDP",
            "  trustpoint sp ID",
            "  signature rsa-sha512",
            "  force re-authentication",
            "  timeout assertion 300",
            "  internal",
            " saml idp urn:other",
            "  trustpoint idp IDP",
            "  signature",
            "  trustpoint sp ID",
            "  no signature",
            "  no force re-authentication",
            " error-recovery disable",
        ]);
        let c = ok(&text);
        let w = &c.webvpn;
        assert_eq!(w.enable_interfaces, vec!["outside".to_string()]);
        assert!(w.anyconnect_enable && w.tunnel_group_list_enable);
        let idp = &w.saml_idps["https://idp.example/meta"];
        assert_eq!(idp.sign_in_url.as_deref(), Some("https://idp.example/sso"));
        assert_eq!(idp.sign_out_url.as_deref(), Some("https://idp.example/slo"));
        assert_eq!(idp.base_url.as_deref(), Some("https://vpn.example"));
        assert_eq!(idp.trustpoint_idp.as_deref(), Some("IDP"));
        assert_eq!(idp.trustpoint_sp.as_deref(), Some("ID"));
        assert_eq!(idp.signature.as_deref(), Some("rsa-sha512"));
        assert!(idp.force_reauthentication);
        assert_eq!(idp.timeout_assertion_secs, Some(300));
        assert_eq!(idp.line, n + 6);
        let other = &w.saml_idps["urn:other"];
        assert_eq!(other.signature, None);
        assert!(!other.force_reauthentication);
        // image, `internal` and error-recovery are warnings; error-recovery is
        // back at webvpn level (less indented than the idp sub-commands)
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![n + 5, n + 15, n + 22]);
        assert!(
            c.warnings[2].message.contains("in `webvpn`"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[1]
                .message
                .contains("in `saml idp https://idp.example/meta`")
        );
    }

    #[test]
    fn config_saml_idp_errors() {
        bad("webvpn\n saml idp X\n  url sign-in ftp://x", 3, "bad URL");
        bad(
            "webvpn\n saml idp X\n  url sign-in",
            3,
            "expected `url sign-in URL`",
        );
        bad(
            "webvpn\n saml idp X\n  signature md5",
            3,
            "bad signature algorithm `md5`",
        );
        bad(
            "webvpn\n saml idp X\n  timeout assertion x",
            3,
            "assertion timeout",
        );
        bad(
            "webvpn\n saml idp X\n  trustpoint idp NOPE",
            3,
            "trustpoint `NOPE` is not defined",
        );
        bad(
            "webvpn\n saml idp X\n  trustpoint sp NOPE",
            3,
            "trustpoint `NOPE` is not defined",
        );
        bad(
            "crypto ca trustpoint T\nwebvpn\n saml idp X\n  trustpoint idp T",
            4,
            "has no certificate",
        );
        bad("webvpn\n saml\n", 2, "expected `saml idp ENTITY-ID`");
        bad(
            "webvpn\n saml idp X\n url sign-in https://a/b",
            3,
            "indent it deeper than the `saml idp` line",
        );
    }
}

//! SAML lines beyond `saml identity-provider` (`asa-syntax.md` section 1):
//!
//! - the ASA 9.17+ external browser per tunnel group (AnyConnect 4.10+). Cisco's
//!   guides only say "activate the External Browser from the CLI"; real configs and
//!   write-ups spell it `saml external-browser [enable]`, `external-browser enable`
//!   and `authentication saml external-browser` under `tunnel-group NAME
//!   webvpn-attributes`. All are accepted; without one the client's embedded browser
//!   is used, as on ASA.
//! - `anyconnect external-browser-pkg FILE` under `webvpn` (the package the ASA
//!   pushes for it): accepted and not needed here.
//! - other `saml ...` lines of `webvpn-attributes`: warned about and ignored.

use super::*;

impl Parser<'_> {
    /// A `tunnel-group NAME webvpn-attributes` line this file handles, if it is one.
    pub(super) fn tunnel_webvpn_saml(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Option<Step> {
        let set = |p: &mut Self, on: bool| {
            if let Some(tg) = p.cfg.tunnel_groups.get_mut(name) {
                tg.saml_external_browser = on;
            }
        };
        match c.toks.as_slice() {
            ["saml", "external-browser"]
            | ["saml", "external-browser", "enable"]
            | ["external-browser", "enable"] => {
                set(self, true);
                Some(Ok(None))
            }
            ["saml", "external-browser", "disable"]
            | ["external-browser", "disable"]
            | ["no", "saml", "external-browser", ..]
            | ["no", "external-browser", ..] => {
                set(self, false);
                Some(Ok(None))
            }
            ["authentication", "saml", "external-browser"] => {
                let plain = Cmd {
                    line: c.line,
                    text: c.text,
                    toks: vec!["authentication", "saml"],
                };
                let r = self.sub_tunnel_webvpn(name, mode, &plain);
                set(self, true);
                Some(r)
            }
            ["saml" | "external-browser", w, ..] if *w != "identity-provider" => {
                self.warn(
                    c.line,
                    format!(
                        "`{}` in `{}` is not supported; ignored",
                        words(&c.toks),
                        mode.label()
                    ),
                );
                Some(Ok(None))
            }
            _ => None,
        }
    }

    /// A `webvpn` line this file handles, if it is one.
    pub(super) fn webvpn_saml(&mut self, c: &Cmd) -> Option<Step> {
        match c.toks.as_slice() {
            ["anyconnect", "external-browser-pkg", _, ..] => Some(Ok(None)),
            ["anyconnect", "external-browser-pkg"] => Some(fail(
                "expected `anyconnect external-browser-pkg disk0:/FILE.zip`",
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::*;

    fn tg(lines: &[&str]) -> Config {
        let mut all = vec![
            "tunnel-group T type remote-access",
            "tunnel-group T webvpn-attributes",
        ];
        all.extend_from_slice(lines);
        parse_str(&all.join("\n"), "s.cfg").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn config_external_browser_spellings() {
        assert!(!tg(&[" group-alias T enable"]).tunnel_groups["T"].saml_external_browser);
        for on in [
            " saml external-browser",
            " saml external-browser enable",
            " external-browser enable",
        ] {
            let c = tg(&[on]);
            assert!(c.tunnel_groups["T"].saml_external_browser, "{on}");
            assert!(c.warnings.is_empty(), "{on}: {:?}", c.warnings);
        }
        for off in [
            " no saml external-browser",
            " saml external-browser disable",
            " no external-browser enable",
        ] {
            let c = tg(&[" saml external-browser enable", off]);
            assert!(!c.tunnel_groups["T"].saml_external_browser, "{off}");
        }
        let c = parse_str(
            "tunnel-group T type remote-access\ntunnel-group T webvpn-attributes\n authentication saml external-browser\n",
            "s.cfg",
        )
        .unwrap_err();
        // `authentication saml` is read as such (and then needs its IdP).
        assert!(c.message.contains("no `saml identity-provider`"), "{c}");
        let c = tg(&[" saml idp-certificate-override X"]);
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].line, 3);
    }

    #[test]
    fn config_webvpn_external_browser_pkg() {
        let c = parse_str(
            "webvpn\n anyconnect external-browser-pkg disk0:/external-sso-4.10.04071-webdeploy-k9.zip\n anyconnect enable\n",
            "s.cfg",
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.webvpn.anyconnect_enable);
        let e = parse_str("webvpn\n anyconnect external-browser-pkg\n", "s.cfg").unwrap_err();
        assert_eq!(e.line, 2);
    }
}

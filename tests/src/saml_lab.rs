//! The SAML tests' lab (tests/tests/saml.rs, saml_embedded.rs, saml_browser.rs): the
//! network-namespace lab, the lab IdP (SimpleSAMLphp, [`crate::idp`]) with alice and
//! bob, who have IdP passwords of their own ([`idp_password`]), and the IdP's blocks
//! appended to the headend's config before it starts: the trustpoint and
//! `webvpn / saml idp ...`, then tunnel group [`TG`] with `authentication saml` and
//! group policy [`GP`].

use crate::Lab;
use crate::idp::{self, Idp};
use crate::lab::{self, OUTSIDE_IP};

/// The SAML tunnel group (seed-asa.cfg's name for it).
pub const TG: &str = "company-vpn";
/// Its group policy, from the lab config.
pub const GP: &str = "GP-EMPLOYEES";

/// How the SAML blocks differ from the integration guides' form.
#[derive(Debug, Clone, Copy)]
pub struct SamlLabOptions {
    /// The SAML tunnel group comes before LOCAL-PW in the config, so it heads the
    /// group list and is the default (the headend then shows the group chooser
    /// before any form).
    pub saml_first: bool,
    /// `base-url` in `saml idp`. Without it (as seed guide 000 has it; the lab has
    /// no `domain-name`) the headend takes the base URL from the request's Host.
    pub base_url: bool,
    /// `saml external-browser enable` in the tunnel group. Without it: ASA's
    /// default, the embedded browser only.
    pub external_browser: bool,
}

impl Default for SamlLabOptions {
    fn default() -> Self {
        Self {
            saml_first: false,
            base_url: true,
            external_browser: true,
        }
    }
}

/// `user`'s password at the IdP: not their local (LOCAL-PW) password.
pub fn idp_password(lab: &Lab, user: &str) -> String {
    format!("idp-{}", lab.password(user))
}

/// Starts the IdP beside `lab`, appends the SAML blocks to the lab's config (the
/// comment names `test_file`) and starts the headend. `None` (skipped) when the IdP
/// cannot run here.
pub fn start(lab: Lab, opts: SamlLabOptions, test_file: &str) -> Option<(Lab, Idp)> {
    if !idp::available() {
        return None;
    }
    let users = [
        ("alice", idp_password(&lab, "alice")),
        ("bob", idp_password(&lab, "bob")),
    ];
    let users: Vec<(&str, &str)> = users.iter().map(|(u, p)| (*u, p.as_str())).collect();
    let idp = Idp::start(&lab, &users, &[TG]);
    let config = std::fs::read_to_string(lab.config_path()).expect("read lab config");
    let config = with_saml_blocks(config, &idp, opts, test_file);
    std::fs::write(lab.config_path(), config).expect("write lab config");
    lab.start_headend();
    Some((lab, idp))
}

fn with_saml_blocks(
    mut config: String,
    idp: &Idp,
    opts: SamlLabOptions,
    test_file: &str,
) -> String {
    let mut tunnel_group = idp.asa_tunnel_group_block(TG, GP);
    let external = " saml external-browser enable\n";
    assert!(tunnel_group.contains(external), "{tunnel_group}");
    if !opts.external_browser {
        tunnel_group = tunnel_group.replace(external, "");
    }
    let mut saml_idp = idp.asa_config_block(&format!("https://{OUTSIDE_IP}"));
    let base_line = format!("  base-url https://{OUTSIDE_IP}\n");
    assert!(saml_idp.contains(&base_line), "{saml_idp}");
    if !opts.base_url {
        saml_idp = saml_idp.replace(&base_line, "");
    }
    if opts.saml_first {
        let at = config
            .find(&format!("tunnel-group {} type", lab::AUTHGROUP))
            .expect("LOCAL-PW in the lab config");
        config.insert_str(at, &tunnel_group);
    }
    config.push_str(&format!(
        "!\n! SAML (appended by tests/tests/{test_file})\n"
    ));
    config.push_str(&saml_idp);
    if !opts.saml_first {
        config.push_str(&tunnel_group);
    }
    config
}

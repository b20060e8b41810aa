//! Fuzz the aggregate-auth XML parser; whatever it accepts, echoing its fields
//! into a server form must give XML that parses again (escaping is complete).
#![no_main]

use headend::proto::xmlauth::{self, AuthRequestForm, FormInputs, MAX_XML_LEN, SsoLogin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = xmlauth::parse_client(data) else {
        return;
    };
    let text = |o: &Option<String>| o.clone().unwrap_or_default();
    let form = AuthRequestForm {
        title: text(&msg.username),
        message: text(&msg.password),
        error: msg.version.clone(),
        opaque_tunnel_group: msg.opaque_tunnel_group.clone(),
        opaque_context: msg.group_select.clone(),
        action: msg.group_access.clone(),
        group_list: msg
            .capabilities
            .iter()
            .map(|c| (c.clone(), text(&msg.device_id)))
            .collect(),
        selected: msg.capabilities.first().cloned(),
        inputs: match &msg.sso_token {
            Some(t) => FormInputs::Sso(SsoLogin::external(t.clone(), text(&msg.opaque))),
            None => FormInputs::Password,
        },
    };
    for xml in [
        form.render(),
        xmlauth::render_success(&text(&msg.sso_token), "00FF"),
    ] {
        if xml.len() <= MAX_XML_LEN {
            let again = xmlauth::parse_client(xml.as_bytes());
            assert!(again.is_ok(), "{again:?}\n{xml}");
        }
    }
});

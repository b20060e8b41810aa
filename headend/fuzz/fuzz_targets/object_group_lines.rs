#![no_main]
//! `object` and `object-group` blocks (network, service, protocol, icmp-type,
//! security; nested `group-object`) and the `access-list` lines that reference
//! them, as the config parser reads them and the policy compiler expands them
//! into the dataplane's tables (issue 17 item 5). The input is a config
//! fragment of at most 128 lines; the seed is the object section of
//! `headend/tests/data/asa-objects.cfg`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut cfg_text = String::new();
    for line in text.lines().take(128) {
        cfg_text.push_str(line);
        cfg_text.push('\n');
    }
    if let Ok(cfg) = headend::config::parse_str(&cfg_text, "fuzz.cfg") {
        let _ = headend::policy_state::PolicyState::new(&cfg);
    }
});

#![no_main]
//! `access-list` lines (standard, extended, security-group, object forms) as
//! the config parser reads them and the policy compiler turns them into the
//! dataplane's tables. Each input line becomes `access-list FUZZ <line>`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut cfg_text = String::new();
    for line in text.lines().take(64) {
        cfg_text.push_str("access-list FUZZ ");
        cfg_text.push_str(line);
        cfg_text.push('\n');
    }
    if let Ok(cfg) = headend::config::parse_str(&cfg_text, "fuzz.cfg") {
        let _ = headend::policy_state::PolicyState::new(&cfg);
    }
});

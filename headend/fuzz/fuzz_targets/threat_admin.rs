#![no_main]
//! Threat detection fed by an attacker-chosen stream of events from chosen
//! sources, mixed with admin command lines (`show shun`, `no shun IP`,
//! `clear ...`, `show threat-detection service ...`). Each input line is
//! either an event (first byte < 0x20: kind and source address from the next
//! bytes) or an admin command. Invariants: nothing panics, a cleared shun
//! list is empty, and a source reported shunned is listed by `show shun`.
use std::net::IpAddr;

use headend::threat::Threats;
use headend::threat::admission::SourceLimits;
use headend::threat::tracker::ThreatEvent;
use libfuzzer_sys::fuzz_target;

const CFG: &str = "\
threat-detection service invalid-vpn-access
threat-detection service remote-access-client-initiations hold-down 10 threshold 5
threat-detection service remote-access-authentication hold-down 10 threshold 3
aaa local authentication attempts max-fail 2
username alice password a
username root password r privilege 15
";

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = headend::config::parse_str(CFG, "fuzz.cfg") else {
        return;
    };
    let threats = Threats::new(&cfg, SourceLimits::default());
    for line in data.split(|b| *b == b'\n').take(256) {
        match line {
            [k, a, b, rest @ ..] if *k < 0x20 => {
                let src = if k & 0x10 != 0 {
                    IpAddr::from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, *a, *b])
                } else {
                    IpAddr::from([198, 18, *a, *b])
                };
                match k % 5 {
                    0 => threats.record(ThreatEvent::AuthenticationFailed, src),
                    1 => threats.record(ThreatEvent::ClientInitiation, src),
                    2 => threats.record(ThreatEvent::InvalidVpnAccess, src),
                    3 => threats.login_succeeded(src),
                    _ => {
                        let user = String::from_utf8_lossy(rest);
                        threats.local_login_failed(&user);
                        let _ = threats.local_user_locked(&user);
                    }
                }
                if threats.is_shunned(src) {
                    let shown = threats.admin(&["show", "shun"]).unwrap_or_default();
                    assert!(shown.contains(&format!(" {src} ")), "{src} not in {shown}");
                }
            }
            _ => {
                let text = String::from_utf8_lossy(line);
                let words: Vec<&str> = text.split_whitespace().collect();
                let _ = threats.admin(&words);
            }
        }
    }
    let _ = threats.admin(&["clear", "shun"]);
    assert_eq!(threats.admin(&["show", "shun"]).as_deref(), Some(""));
});

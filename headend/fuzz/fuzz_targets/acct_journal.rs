#![no_main]
//! The accounting journal is read back after a crash, torn lines and all:
//! replay must never panic, and every record that decodes must re-encode to
//! the same line.
use headend::acct_journal::{OpenSessions, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (open, _bad) = OpenSessions::replay(&text);
    for line in text.lines() {
        if let Some(r) = Record::decode(line) {
            let again = r.encode();
            assert_eq!(Record::decode(again.trim_end()).as_ref(), Some(&r));
        }
    }
    for s in open.0.values() {
        let _ = s.crash_stop();
    }
});

//! Whatever an SSH user types, the CLI answers without panicking, never runs a
//! privileged command without the enable password, and its running-config view
//! masks what it must.
#![no_main]

use headend::cli::{Backend, CliEvent, CliSession};
use libfuzzer_sys::fuzz_target;

struct Fake {
    privileged_runs: usize,
}

impl Backend for Fake {
    fn run(&mut self, command: &str) -> String {
        if command.starts_with("vpn-sessiondb") {
            self.privileged_runs += 1;
        }
        "line\n".repeat(40)
    }
    fn running_config(&mut self, section: &[String]) -> String {
        headend::cli::running_config("username a password s\n", section)
    }
    fn show_logging(&mut self) -> String {
        String::new()
    }
    fn event(&mut self, _: CliEvent) {}
    fn check_login(&mut self, _: &str, _: &str) -> Option<u8> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    // No enable password configured: nothing may reach level 15.
    let mut cli = CliSession::new("fw", "u", None);
    let mut f = Fake { privileged_runs: 0 };
    let _ = cli.start();
    for chunk in data.chunks(7) {
        let _ = cli.input(chunk, &mut f);
    }
    assert!(cli.privilege() < 15);
    assert_eq!(f.privileged_runs, 0);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = headend::cli::running_config(text, &[]);
        for line in text.lines() {
            let _ = headend::cli::mask_secrets(line);
        }
    }
});

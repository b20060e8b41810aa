//! Runs `benches`' `loadgen` binary in a client namespace of a [`Lab`]: many
//! sessions over the real protocol from one process (no openconnect, no TUN).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::lab::{HANG_GUARD, Lab, OUTSIDE_IP, headend_bin};
use crate::netns;

/// `target/<profile>/loadgen`, next to the headend binary (`cargo build --workspace --bins`).
pub fn loadgen_bin() -> PathBuf {
    let p = headend_bin().with_file_name("loadgen");
    assert!(
        p.is_file(),
        "{} missing: run `cargo build --workspace --bins`",
        p.display()
    );
    p
}

/// Adds `count` local users `PREFIXn` (n = 0..count) with `password` to the lab's
/// config (before `start_headend`): loadgen logs in as `PREFIX{n}`.
pub fn add_users(lab: &Lab, prefix: &str, count: usize, password: &str) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(lab.config_path())
        .expect("open lab config");
    let mut s = String::from("!\n! loadgen users\n");
    for n in 0..count {
        s.push_str(&format!("username {prefix}{n} password {password}\n"));
    }
    f.write_all(s.as_bytes()).expect("append users");
}

/// Appends `text` to the lab's config (before `start_headend`).
pub fn append_config(lab: &Lab, text: &str) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(lab.config_path())
        .expect("open lab config");
    f.write_all(text.as_bytes()).expect("append to config");
}

/// One local user `name` that may hold `sessions` sessions at once (LOCAL-PW's
/// group policy GP-EMPLOYEES). Cheaper to start than many users: every local
/// password is hashed (PBKDF2) when the headend starts.
pub fn add_shared_user(lab: &Lab, name: &str, password: &str, sessions: usize) {
    append_config(
        lab,
        &format!(
            "!\ngroup-policy GP-EMPLOYEES attributes\n vpn-simultaneous-logins {sessions}\n\
             username {name} password {password}\n"
        ),
    );
}

/// A running loadgen started with `--wait-stdin`: its sessions stay up until
/// [`Loadgen::finish`].
pub struct Loadgen {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Everything loadgen printed on stdout so far.
    pub stdout: Vec<String>,
    /// The `LOADGEN_READY up=N failed=M` line.
    pub ready: String,
}

/// The longest loadgen may take to bring its sessions up and drain (a hang guard,
/// not a speed requirement).
const LOADGEN_GUARD: Duration = Duration::from_secs(300);

impl Loadgen {
    /// Starts loadgen from client namespace 0 against the lab's headend with
    /// the lab's certificate pin and `args`; returns once all sessions are up
    /// (or failed) and their echoes drained.
    pub fn start(lab: &Lab, name: &str, args: &[&str]) -> Loadgen {
        Loadgen::start_from(lab, 0, OUTSIDE_IP, name, args)
    }

    /// As [`start`](Self::start), from client namespace `host` against the headend
    /// listening on `server` (e.g. a second cluster node).
    pub fn start_from(
        lab: &Lab,
        host: usize,
        server: std::net::Ipv4Addr,
        name: &str,
        args: &[&str],
    ) -> Loadgen {
        let log = File::create(lab.dir().join(format!("{name}.log"))).expect("loadgen log");
        let server = format!("https://{server}/");
        let pin = format!("pin-sha256:{}", lab.pin());
        let bin = loadgen_bin();
        let mut c = netns::exec(&lab.client_host(host).ns, &[bin.as_os_str()]);
        c.args(["--server", &server, "--servercert", &pin])
            .args(args)
            .arg("--wait-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = c.spawn().expect("spawn loadgen");
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout");
        let lines = stdout_lines(out);
        let mut l = Loadgen {
            child,
            stdin,
            lines,
            stdout: Vec::new(),
            ready: String::new(),
        };
        l.ready = l
            .read_until("LOADGEN_READY")
            .unwrap_or_else(|| panic!("loadgen never got ready:\n{}", l.stdout.join("\n")));
        l
    }

    fn read_until(&mut self, prefix: &str) -> Option<String> {
        // Bounded: each wait has the guard; loadgen exits at the latest after it.
        while let Ok(line) = self.lines.recv_timeout(LOADGEN_GUARD) {
            self.stdout.push(line.clone());
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
        None
    }

    /// Lets loadgen log out, waits for it, and returns its `RESULT_JSON`.
    pub fn finish(mut self) -> serde_json::Value {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"\n");
        }
        let line = self
            .read_until("RESULT_JSON ")
            .unwrap_or_else(|| panic!("no RESULT_JSON from loadgen:\n{}", self.stdout.join("\n")));
        let json: serde_json::Value =
            serde_json::from_str(line.trim_start_matches("RESULT_JSON ")).expect("RESULT_JSON");
        let _ = crate::wait_until(HANG_GUARD, || self.child.try_wait().ok().flatten());
        json
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `show ip local pool NAME`: (free, in use).
pub fn pool_usage(lab: &Lab, pool: &str) -> (u64, u64) {
    let out = lab.show(&["ip", "local", "pool", pool]);
    let nums: Vec<u64> = out
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("show ip local pool {pool}:\n{out}"))
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums.as_slice() {
        [free, _held, used] => (*free, *used),
        _ => panic!("show ip local pool {pool}: unexpected\n{out}"),
    }
}

/// `target/<profile>/tput` (benches/src/bin/tput.rs), next to loadgen.
pub fn tput_bin() -> PathBuf {
    let p = headend_bin().with_file_name("tput");
    assert!(
        p.is_file(),
        "{} missing: run `cargo build --workspace --bins`",
        p.display()
    );
    p
}

/// A running `tput sink` on the lab's inside host: counts the UDP datagrams
/// that arrive on `INSIDE_HOST:port` until [`Sink::finish`].
pub struct Sink {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub stdout: Vec<String>,
}

impl Sink {
    pub fn start(lab: &Lab, port: u16) -> Sink {
        let bind = format!("{}:{port}", crate::lab::INSIDE_HOST);
        let mut c = netns::exec(lab.inside_ns(), &[tput_bin().as_os_str()]);
        c.args(["sink", "--bind", &bind, "--max-secs", "600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("spawn tput sink");
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout");
        let lines = stdout_lines(out);
        let mut s = Sink {
            child,
            stdin,
            lines,
            stdout: Vec::new(),
        };
        assert!(
            s.read_until("TPUT_SINK_READY").is_some(),
            "tput sink never got ready: {:?}",
            s.stdout
        );
        s
    }

    fn read_until(&mut self, prefix: &str) -> Option<String> {
        // Bounded: each wait has the guard.
        while let Ok(line) = self.lines.recv_timeout(HANG_GUARD) {
            self.stdout.push(line.clone());
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
        None
    }

    /// Stops counting and returns the sink's `RESULT_JSON`.
    pub fn finish(mut self) -> serde_json::Value {
        drop(self.stdin.take());
        let line = self
            .read_until("RESULT_JSON ")
            .unwrap_or_else(|| panic!("no RESULT_JSON from tput sink: {:?}", self.stdout));
        let _ = crate::wait_until(HANG_GUARD, || self.child.try_wait().ok().flatten());
        serde_json::from_str(line.trim_start_matches("RESULT_JSON ")).expect("sink RESULT_JSON")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tput send` from the lab's inside host to every address in `addresses`
/// (loadgen `--addresses-out`); its `RESULT_JSON`.
pub fn tput_send(lab: &Lab, addresses: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = netns::exec(lab.inside_ns(), &[tput_bin().as_os_str()])
        .arg("send")
        .arg("--addresses")
        .arg(addresses)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tput send");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tput send failed: {text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT_JSON "))
        .unwrap_or_else(|| panic!("no RESULT_JSON from tput send: {text}"));
    serde_json::from_str(line).expect("send RESULT_JSON")
}

/// The lines a child prints on stdout, read by a thread of their own (it ends
/// with the child's stdout or when the receiver is dropped).
fn stdout_lines(out: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

//! Stock openconnect in the SAML modes of protocol.md section 1: external-browser
//! login (`--external-browser=PROG`), `--cookieonly` and `--cookie-on-stdin`.
//!
//! Unlike [`crate::Client`] (password logins), [`SsoClient`] keeps openconnect's
//! stdout (where `--cookieonly` prints the cookie) apart from its `-v` chatter on
//! stderr, passes only the arguments the test gives, and feeds stdin only when asked.
//!
//! The hang guard that external-browser logins need: openconnect spawns the browser
//! and then waits on `[::1]:29786` with no timeout, and never reaps the browser, so it
//! cannot notice that the browser gave up. [`SsoClient::wait`] therefore also watches
//! the exit status that [`Idp::browser_for`]'s wrapper records, and returns as soon as
//! the browser failed; dropping the client then kills openconnect.

use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::idp::Idp;
use crate::lab::{self, Lab, tail, workspace_root};
use crate::{cmd, netns, wait_until};

/// Hang guard for a whole SAML login (TLS, IdP form, signature check, token, CSTP):
/// more steps than a password login, so more than [`lab::HANG_GUARD`]. Never a speed
/// assertion.
pub const SSO_GUARD: Duration = Duration::from_secs(90);

static COUNTER: AtomicUsize = AtomicUsize::new(1);

/// One openconnect process started by [`SsoClient::spawn`]. Dropping it stops
/// openconnect (SIGTERM, then SIGKILL after 5 s).
pub struct SsoClient {
    label: String,
    ns: String,
    ifname: String,
    log_path: PathBuf,
    out_path: PathBuf,
    child: Child,
    started: Instant,
}

/// How [`SsoClient::wait`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The tunnel is up: this address on the TUN device and at least one route.
    Connected(Ipv4Addr),
    /// openconnect exited.
    Exited(ExitStatus),
    /// The watched browser exited with this non-zero status; openconnect still waits
    /// for it on its listener.
    BrowserFailed(i32),
    /// The guard ran out.
    TimedOut,
}

impl SsoClient {
    /// Starts `openconnect --protocol=anyconnect -v --non-inter --servercert=pin-sha256:PIN
    /// --interface ocsN-LABEL --script=<vpnc-script-min> ARGS URL` in client namespace
    /// `host`; writes `stdin` (plus a newline) to its standard input when given, else
    /// gives it an empty one. stderr goes to `LABDIR/ocsN-LABEL.log` (dumped when a test
    /// panics), stdout to `LABDIR/ocsN-LABEL.out`.
    pub fn spawn(
        lab: &Lab,
        host: usize,
        label: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> SsoClient {
        let ns = lab.client_host(host).ns.clone();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut ifname = format!("ocs{n}-{label}");
        ifname.truncate(15);
        let log_path = lab.dir().join(format!("{ifname}.log"));
        let out_path = lab.dir().join(format!("{ifname}.out"));
        let log = File::create(&log_path).expect("create openconnect log");
        let out = File::create(&out_path).expect("create openconnect stdout");
        let script = workspace_root().join("netns/vpnc-script-min");
        assert!(script.is_file(), "{} missing", script.display());
        let mut command = netns::exec(&ns, &["openconnect"]);
        command
            .args(["--protocol=anyconnect", "-v", "--non-inter"])
            .arg(format!("--servercert=pin-sha256:{}", lab.pin()))
            .args(["--interface", &ifname])
            .arg(format!("--script=/bin/sh {}", script.display()))
            .args(args)
            .arg(lab.url())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out)
            .stderr(log);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            // openconnect may already have failed and closed it: not an error here.
            let _ = writeln!(pipe, "{text}");
        }
        SsoClient {
            label: label.to_owned(),
            ns,
            ifname,
            log_path,
            out_path,
            child,
            started,
        }
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    pub fn started(&self) -> Instant {
        self.started
    }
    /// What openconnect wrote to stderr so far (its progress messages, `-v`).
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
    /// What openconnect wrote to stdout so far (`--cookieonly`: the cookie).
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out_path).unwrap_or_default()
    }
    /// The IPv4 address on its TUN device, if any.
    pub fn tun_addr(&self) -> Option<Ipv4Addr> {
        lab::ipv4_of(&self.ns, &self.ifname)
    }
    /// `ip -4 route show dev TUN`, one line per route.
    pub fn routes(&self) -> Vec<String> {
        cmd::run(&mut cmd::command(
            "ip",
            &["-n", &self.ns, "-4", "route", "show", "dev", &self.ifname],
        ))
        .map(|s| s.lines().map(|l| l.trim().to_owned()).collect())
        .unwrap_or_default()
    }
    /// Whether a route to `prefix` goes through its TUN device.
    pub fn has_route(&self, prefix: &str) -> bool {
        self.routes()
            .iter()
            .any(|r| r.split_whitespace().next() == Some(prefix))
    }
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waitpid openconnect")
    }

    /// Waits (at most `guard`) until openconnect exits, or, with `want_tunnel`, the
    /// tunnel is up, or the browser of `browser` = (IdP, user) exited non-zero.
    pub fn wait(
        &mut self,
        guard: Duration,
        want_tunnel: bool,
        browser: Option<(&Idp, &str)>,
    ) -> Outcome {
        wait_until(guard, || {
            if let Some(status) = self.exit_status() {
                return Some(Outcome::Exited(status));
            }
            if want_tunnel
                && let Some(addr) = self.tun_addr()
                && !self.routes().is_empty()
            {
                return Some(Outcome::Connected(addr));
            }
            match browser.and_then(|(idp, user)| idp.browser_exit(user)) {
                Some(rc) if rc != 0 => Some(Outcome::BrowserFailed(rc)),
                _ => None,
            }
        })
        .unwrap_or(Outcome::TimedOut)
    }

    /// Everything useful for a failure message: openconnect's stdout and stderr, the
    /// browser's log when given, and the tail of the headend's log.
    pub fn report(&self, lab: &Lab, browser: Option<(&Idp, &str)>) -> String {
        let mut s = format!(
            "--- openconnect {} ({} in {}) stderr ---\n{}\n--- its stdout ---\n{}\n",
            self.label,
            self.ifname,
            self.ns,
            self.output(),
            self.stdout()
        );
        if let Some((idp, user)) = browser {
            s.push_str(&format!(
                "--- sso-browser ({user}, exit {:?}) ---\n{}\n",
                idp.browser_exit(user),
                idp.browser_log(user)
            ));
        }
        s.push_str(&format!(
            "--- headend log (tail) ---\n{}\n",
            tail(&lab.headend_log(), 60)
        ));
        s
    }

    /// Stops openconnect (SIGTERM, then SIGKILL after 5 s) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall; the child is not reaped yet, so the pid is ours.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if let Some(status) = wait_until(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten()
        }) {
            return Some(status);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for SsoClient {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stock openconnect given a bearer cookie (`webvpn=...`) on its stdin
/// (`--cookie-on-stdin`): waits until its tunnel is up, checks that the address is
/// the pool's, and returns the client and its address. `what` names the cookie's
/// origin in the failure message.
pub fn cookie_tunnel(lab: &Lab, label: &str, cookie: &str, what: &str) -> (SsoClient, Ipv4Addr) {
    let mut tunnel = SsoClient::spawn(lab, 0, label, &["--cookie-on-stdin"], Some(cookie));
    let addr = match tunnel.wait(lab::HANG_GUARD, true, None) {
        Outcome::Connected(addr) => addr,
        other => panic!(
            "openconnect --cookie-on-stdin with {what}: no tunnel ({other:?})\n{}",
            tunnel.report(lab, None)
        ),
    };
    assert!(lab::in_pool(addr), "assigned {addr} is outside the pool");
    (tunnel, addr)
}

/// Waits until `show vpn-sessiondb` lists exactly one session and checks that it is
/// `user`'s, in `tunnel_group` (and `group_policy` when given), with address `addr`.
pub fn expect_sole_session(
    lab: &Lab,
    user: &str,
    tunnel_group: &str,
    group_policy: Option<&str>,
    addr: Ipv4Addr,
) {
    let sessions = lab.wait_sessions("one session", |s| s.len() == 1);
    let s = crate::sessiondb::session_of(&sessions, user)
        .unwrap_or_else(|| panic!("no session for {user} in {sessions:?}"));
    let field = |k: &str| s.get(k).map(String::as_str);
    assert_eq!(field("Tunnel Group"), Some(tunnel_group), "{s:?}");
    if let Some(gp) = group_policy {
        assert_eq!(field("Group Policy"), Some(gp), "{s:?}");
    }
    assert_eq!(
        field("Assigned IP"),
        Some(addr.to_string().as_str()),
        "{s:?}"
    );
}

/// The `webvpn=VALUE` part of what `openconnect --cookieonly` prints
/// (`openconnect_strapkey=...; webvpn=...`, protocol.md section 1).
pub fn webvpn_cookie(cookieonly_stdout: &str) -> Option<String> {
    cookieonly_stdout
        .lines()
        .flat_map(|l| l.split(';'))
        .map(str::trim)
        .find(|part| part.starts_with("webvpn=") && part.len() > "webvpn=".len())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cookie_part() {
        assert_eq!(
            super::webvpn_cookie("openconnect_strapkey=MIG2Ag==; webvpn=ABC123\n").as_deref(),
            Some("webvpn=ABC123")
        );
        assert_eq!(
            super::webvpn_cookie("webvpn=XYZ\n").as_deref(),
            Some("webvpn=XYZ")
        );
        assert_eq!(super::webvpn_cookie("webvpn=\n"), None);
        assert_eq!(super::webvpn_cookie(""), None);
    }
}

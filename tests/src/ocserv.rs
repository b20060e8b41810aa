//! ocserv (Debian), the open-source AnyConnect server, as a reference server in the same
//! lab: same address, port, certificate, users, pool and split route as the headend's
//! lab config. A control for the harness (when a test passes against ocserv and fails
//! against the headend, the headend is at fault) and the base of side-by-side runs.
//! Test-only settings (`run-as-user`, `isolate-workers = false`), never the product's.

use std::fs::{self, File};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::lab::{HANG_GUARD, Lab, OUTSIDE_IP, TLS_PORT, USERS, required};
use crate::{cmd, netns, wait_until};

/// A running ocserv in the lab's headend namespace; dropping it stops it.
pub struct Ocserv {
    child: Child,
}

impl Ocserv {
    /// Starts ocserv in `lab`'s headend namespace (instead of the headend, not beside it:
    /// both want 198.18.0.1:443). `None` (reason printed) when ocserv is not installed,
    /// unless `E2E_REQUIRED=1`.
    pub fn start(lab: &Lab) -> Option<Ocserv> {
        for program in ["ocserv", "ocpasswd"] {
            if !cmd::in_path(program) {
                let reason = format!("`{program}` not found (run netns/install-deps.sh)");
                assert!(!required(), "E2E_REQUIRED=1 but {reason}");
                eprintln!("SKIP: {reason}");
                return None;
            }
        }
        let d = lab.dir();
        let passwd = d.join("ocpasswd");
        for user in USERS {
            let mut c = Command::new("ocpasswd")
                .arg("-c")
                .arg(&passwd)
                .arg(user)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn ocpasswd");
            let pw = lab.password(user);
            write!(c.stdin.take().expect("stdin"), "{pw}\n{pw}\n").expect("write ocpasswd");
            assert!(
                c.wait().expect("wait ocpasswd").success(),
                "ocpasswd {user}"
            );
        }
        let conf = format!(
            r#"auth = "plain[passwd={passwd}]"
listen-host = {OUTSIDE_IP}
tcp-port = {TLS_PORT}
udp-port = {TLS_PORT}
run-as-user = root
run-as-group = root
socket-file = {d}/ocserv.sock
pid-file = {d}/ocserv.pid
server-cert = {cert}
server-key = {key}
isolate-workers = false
use-occtl = false
max-clients = 16
max-same-clients = 4
keepalive = 32400
dpd = 90
try-mtu-discovery = false
auth-timeout = 240
cookie-timeout = 300
deny-roaming = false
rekey-time = 172800
rekey-method = new-tunnel
device = vpns
predictable-ips = true
ipv4-network = 198.18.100.0
ipv4-netmask = 255.255.255.0
dns = 198.18.1.53
default-domain = corp.example
route = 198.18.1.0/255.255.255.0
"#,
            passwd = passwd.display(),
            d = d.display(),
            cert = lab.cert_path().display(),
            key = lab.key_path().display(),
        );
        let conf_path = d.join("ocserv.conf");
        fs::write(&conf_path, conf).expect("write ocserv.conf");
        let log = File::create(d.join("ocserv.log")).expect("create ocserv.log");
        let mut command = netns::exec(lab.gw_ns(), &["ocserv", "-f", "-d", "1", "-c"]);
        command
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        let mut oc = Ocserv { child };
        let sport = format!("sport = :{TLS_PORT}");
        let ready = wait_until(HANG_GUARD, || {
            if let Ok(Some(status)) = oc.child.try_wait() {
                panic!(
                    "ocserv exited ({status}):\n{}",
                    fs::read_to_string(d.join("ocserv.log")).unwrap_or_default()
                );
            }
            let out = cmd::output(&mut netns::exec(lab.gw_ns(), &["ss", "-Hltn", &sport])).ok()?;
            (!out.stdout.trim_ascii().is_empty()).then_some(())
        });
        if ready.is_none() {
            oc.stop();
            panic!("ocserv not listening after {HANG_GUARD:?}");
        }
        Some(oc)
    }

    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait()
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            // SAFETY: plain syscall; the child is not reaped yet, so the pid is ours.
            // SIGTERM lets ocserv stop its own workers.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if wait_until(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten()
        })
        .is_none()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Ocserv {
    fn drop(&mut self) {
        self.stop();
    }
}

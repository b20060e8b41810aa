//! The lab (mirror of `netns/lab.sh`; keep the two in step):
//!
//! ```text
//! vpnc-ID   eth0 198.18.0.2/24 ──veth── c1 ┐
//! vpnc2-ID  eth0 198.18.0.3/24 ──veth── c2 ┼ bridge "outside" 198.18.0.1/24   vpngw-ID
//!                                          ┘ TUN vpn0 198.18.100.1/24 (made by headend)
//!                                                       fd00:100::1/64 (VPN-POOL6)
//! inside-ID eth0 198.18.1.10/24 ──veth── inside 198.18.1.1/24       (ip_forward=1)
//!                fd00:1::10/64                  fd00:1::1/64         (v6 forwarding=1)
//!           default via 198.18.1.1 / fd00:1::1, so replies to the pools go back
//!           through the headend
//! ```
//!
//! ID is `<pid>-<counter>`, so parallel tests and leftovers of a crashed run never share
//! a name. Every lab has its own directory `/tmp/headend-lab-ID/` with the headend's
//! self-signed certificate, its config rendered from `netns/lab-asa.cfg.in` with random
//! passwords, and the logs of every process it starts. Dropping the [`Lab`] (also when
//! a test panics) stops those processes and removes the namespaces and the directory;
//! when the test panicked it first prints the tails of the logs. `E2E_KEEP=1` keeps
//! the directory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sessiondb::{self, Session};
use crate::{cmd, netns, wait_until};

/// The headend's outside address (where openconnect connects).
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The TLS port.
pub const TLS_PORT: u16 = 443;
/// The headend's inside address, default gateway of the inside host.
pub const INSIDE_GW: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// A protected host behind the headend (the split-include network 198.18.1.0/24).
pub const INSIDE_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
/// The split-include network pushed to clients.
pub const SPLIT_INCLUDE: &str = "198.18.1.0/24";
/// `ip local pool VPN-POOL 198.18.100.10-198.18.100.250 mask 255.255.255.0`.
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 10);
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 250);
/// The headend's inside IPv6 address, default gateway of the inside host.
pub const INSIDE_GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
/// The inside host's IPv6 address (in the IPv6 split-include network fd00:1::/64).
pub const INSIDE_HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10);
/// The IPv6 split-include network pushed to LOCAL-DUAL clients.
pub const SPLIT_INCLUDE6: &str = "fd00:1::/64";
/// `ipv6 local pool VPN-POOL6 fd00:100::10/64 200`: fd00:100::10 - fd00:100::d7.
pub const POOL6_FIRST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x10);
pub const POOL6_LAST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0xd7);
/// The pool's prefix length, as the client gets it (`X-CSTP-Address-IP6: A/64`).
pub const POOL6_PREFIX_LEN: u8 = 64;
/// The tunnel group with local passwords.
pub const AUTHGROUP: &str = "LOCAL-PW";
/// The same login, dual stack (group policy GP-DUAL with `ipv6-address-pools`).
pub const AUTHGROUP_DUAL: &str = "LOCAL-DUAL";
/// The same local-password login with a group policy that has
/// `anyconnect ssl dtls disable`.
pub const AUTHGROUP_NO_DTLS: &str = "LOCAL-NODTLS";
/// Local users of the lab config (each gets a random password).
pub const USERS: [&str; 2] = ["alice", "bob"];
/// Name of the headend's TUN device in its namespace.
pub const HEADEND_TUN: &str = "vpn0";
/// Hang guard for anything that should happen "soon": connecting, exiting, closing.
/// Generous on purpose: tests assert behaviour, never speed.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The address of client namespace number `host` (0-based).
pub fn client_ip(host: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        18,
        0,
        2 + u8::try_from(host).expect("client host index"),
    )
}

pub fn in_pool(addr: Ipv4Addr) -> bool {
    (POOL_FIRST..=POOL_LAST).contains(&addr)
}

pub fn in_pool6(addr: Ipv6Addr) -> bool {
    (POOL6_FIRST..=POOL6_LAST).contains(&addr)
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Why the end-to-end tests cannot run here, if they cannot.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need root)".into());
    }
    for program in [
        "ip",
        "openconnect",
        "openssl",
        "ping",
        "ss",
        "curl",
        "sysctl",
    ] {
        if !cmd::in_path(program) {
            return Some(format!("`{program}` not found (run netns/install-deps.sh)"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun missing".into());
    }
    None
}

/// True when the environment demands the end-to-end tests (CI via netns/test.sh).
pub fn required() -> bool {
    std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1")
}

/// The headend binary: `$HEADEND_BIN`, else `target/<profile>/headend` next to this test
/// binary, else `<workspace>/target/debug/headend`.
pub fn headend_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HEADEND_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "HEADEND_BIN={} does not exist; run `cargo build --bins` or fix HEADEND_BIN",
            p.display()
        );
        return p;
    }
    let mut candidates = Vec::new();
    // The test binary is target/<profile>/deps/NAME-HASH.
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join("headend"));
    }
    candidates.push(workspace_root().join("target/debug/headend"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "headend binary not found (looked at {candidates:?}): run `cargo build --bins` \
                 first (netns/test.sh does), or set HEADEND_BIN"
            )
        })
}

/// Removes the namespaces and directories of labs whose test process is gone (killed
/// before its Drop could run). Lab names carry the pid of the process that made them;
/// lab.sh's names (`up t1`) do not look like that and are left alone. Once per process.
fn sweep_stale_labs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let gone = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
        if let Ok(entries) = fs::read_dir("/run/netns") {
            for name in entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
            {
                if lab_pid(&name).is_some_and(gone) {
                    netns::destroy(&name);
                }
            }
        }
        if let Ok(entries) = fs::read_dir("/tmp") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name
                    .strip_prefix("headend-lab-")
                    .and_then(|rest| lab_pid(&format!("lab-{rest}")))
                    .is_some_and(gone)
                {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    });
}

/// The pid in a lab name `PREFIX-PID-N` made by [`Lab::with_clients`].
fn lab_pid(name: &str) -> Option<u32> {
    let mut parts = name.split('-');
    let prefix = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<usize>().ok()?;
    let known = ["vpngw", "vpngwb", "inside", "lab"].contains(&prefix)
        || prefix
            .strip_prefix("vpnc")
            .is_some_and(|k| k.chars().all(|c| c.is_ascii_digit()));
    (known && parts.next().is_none()).then_some(pid)
}

/// A client namespace.
#[derive(Debug, Clone)]
pub struct ClientHost {
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// One lab: namespaces, veths, certificate, config, and the processes started in it.
pub struct Lab {
    id: String,
    dir: PathBuf,
    gw_ns: String,
    inside_ns: String,
    clients: Vec<ClientHost>,
    pin: String,
    passwords: HashMap<String, String>,
    headend: Mutex<Option<Child>>,
    next_client: AtomicUsize,
}

impl Lab {
    /// A lab with one client namespace. `None` means "skip this test": the reason has
    /// been printed. With `E2E_REQUIRED=1` it panics instead of skipping.
    pub fn new() -> Option<Lab> {
        Lab::with_clients(1)
    }

    /// A lab with `n` client namespaces (198.18.0.2, .3, …). See [`Lab::new`].
    pub fn with_clients(n: usize) -> Option<Lab> {
        assert!((1..=9).contains(&n), "1..=9 client namespaces");
        if let Some(reason) = unavailable_reason() {
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            if required() {
                panic!("E2E_REQUIRED=1 but the end-to-end test {test} cannot run: {reason}");
            }
            eprintln!("SKIP {test}: {reason}");
            return None;
        }
        sweep_stale_labs();
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let clients = (0..n)
            .map(|k| ClientHost {
                ns: if k == 0 {
                    format!("vpnc-{id}")
                } else {
                    format!("vpnc{}-{id}", k + 1)
                },
                ip: client_ip(k),
            })
            .collect();
        let mut lab = Lab {
            dir: PathBuf::from(format!("/tmp/headend-lab-{id}")),
            gw_ns: format!("vpngw-{id}"),
            inside_ns: format!("inside-{id}"),
            clients,
            id,
            pin: String::new(),
            passwords: HashMap::new(),
            headend: Mutex::new(None),
            next_client: AtomicUsize::new(1),
        };
        // On a panic in here, Drop removes whatever was made so far.
        lab.build();
        Some(lab)
    }

    fn namespaces(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.clients.iter().map(|c| c.ns.as_str()).collect();
        v.push(&self.gw_ns);
        v.push(&self.inside_ns);
        v
    }

    fn ip(&self, args: &[&str]) {
        cmd::must(&mut cmd::command("ip", args));
    }

    fn build(&mut self) {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir).expect("remove stale lab dir");
        }
        fs::create_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", self.dir.display()));
        set_mode(&self.dir, 0o700);
        for ns in self.namespaces() {
            // Leftover of a crashed run whose pid was the same as ours.
            netns::destroy(ns);
            netns::add(ns).unwrap_or_else(|e| panic!("{e}"));
        }
        let (gw, inside) = (self.gw_ns.clone(), self.inside_ns.clone());
        // Outside: a bridge, so several client namespaces share 198.18.0.0/24.
        self.ip(&["-n", &gw, "link", "add", "outside", "type", "bridge"]);
        self.ip(&[
            "-n",
            &gw,
            "addr",
            "add",
            &format!("{OUTSIDE_IP}/24"),
            "dev",
            "outside",
        ]);
        self.ip(&["-n", &gw, "link", "set", "outside", "up"]);
        for (k, c) in self.clients.clone().iter().enumerate() {
            let port = format!("c{}", k + 1);
            self.ip(&[
                "-n", &c.ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &gw,
            ]);
            self.ip(&["-n", &gw, "link", "set", &port, "master", "outside"]);
            self.ip(&["-n", &gw, "link", "set", &port, "up"]);
            self.ip(&[
                "-n",
                &c.ns,
                "addr",
                "add",
                &format!("{}/24", c.ip),
                "dev",
                "eth0",
            ]);
            self.ip(&["-n", &c.ns, "link", "set", "eth0", "up"]);
        }
        // Inside.
        self.ip(&[
            "-n", &gw, "link", "add", "inside", "type", "veth", "peer", "name", "eth0", "netns",
            &inside,
        ]);
        self.ip(&[
            "-n",
            &gw,
            "addr",
            "add",
            &format!("{INSIDE_GW}/24"),
            "dev",
            "inside",
        ]);
        self.ip(&["-n", &gw, "link", "set", "inside", "up"]);
        self.ip(&[
            "-n",
            &inside,
            "addr",
            "add",
            &format!("{INSIDE_HOST}/24"),
            "dev",
            "eth0",
        ]);
        self.ip(&["-n", &inside, "link", "set", "eth0", "up"]);
        self.ip(&[
            "-n",
            &inside,
            "route",
            "add",
            "default",
            "via",
            &INSIDE_GW.to_string(),
        ]);
        // IPv6 on the inside link (nodad: usable at once, no duplicate to detect).
        self.ip(&[
            "-n",
            &gw,
            "-6",
            "addr",
            "add",
            &format!("{INSIDE_GW6}/64"),
            "dev",
            "inside",
            "nodad",
        ]);
        self.ip(&[
            "-n",
            &inside,
            "-6",
            "addr",
            "add",
            &format!("{INSIDE_HOST6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        self.ip(&[
            "-n",
            &inside,
            "-6",
            "route",
            "add",
            "default",
            "via",
            &INSIDE_GW6.to_string(),
        ]);
        for sysctl in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            cmd::must(&mut netns::exec(&gw, &["sysctl", "-qw", sysctl]));
        }

        // The headend's TLS identity: self-signed for the outside address.
        let (cert, key) = (self.cert_path(), self.key_path());
        cmd::must(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                ])
                .arg("-subj")
                .arg(format!("/CN={OUTSIDE_IP}"))
                .arg("-addext")
                .arg(format!("subjectAltName=IP:{OUTSIDE_IP}"))
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        set_mode(&key, 0o600);
        self.pin = spki_pin(&cert);
        fs::write(self.dir.join("pin"), format!("{}\n", self.pin)).expect("write pin");

        // The config, with a random password per local user.
        let template_path = workspace_root().join("netns/lab-asa.cfg.in");
        let mut config = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", template_path.display()));
        for user in USERS {
            let password = random_hex(12);
            let placeholder = format!("@{}_PASSWORD@", user.to_uppercase());
            assert!(
                config.contains(&placeholder),
                "{} has no {placeholder}",
                template_path.display()
            );
            config = config.replace(&placeholder, &password);
            let path = self.dir.join(format!("password-{user}"));
            fs::write(&path, format!("{password}\n")).expect("write password");
            set_mode(&path, 0o600);
            self.passwords.insert(user.to_owned(), password);
        }
        fs::write(self.config_path(), config).expect("write config");
        set_mode(&self.config_path(), 0o600);
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    /// `/tmp/headend-lab-ID/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn gw_ns(&self) -> &str {
        &self.gw_ns
    }
    pub fn inside_ns(&self) -> &str {
        &self.inside_ns
    }
    /// Client namespace number `host` (0-based).
    pub fn client_host(&self, host: usize) -> &ClientHost {
        &self.clients[host]
    }
    /// The first client namespace.
    pub fn client_ns(&self) -> &str {
        &self.clients[0].ns
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("headend.cfg")
    }
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("server-cert.pem")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }
    pub fn headend_log_path(&self) -> PathBuf {
        self.dir.join("headend.log")
    }
    /// base64 SHA-256 of the server certificate's SubjectPublicKeyInfo.
    pub fn pin(&self) -> &str {
        &self.pin
    }
    /// The random password of a local user of the lab config.
    pub fn password(&self, user: &str) -> &str {
        self.passwords
            .get(user)
            .unwrap_or_else(|| panic!("no lab user {user:?} (users: {USERS:?})"))
    }
    /// `https://198.18.0.1/`
    pub fn url(&self) -> String {
        format!("https://{OUTSIDE_IP}/")
    }
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(OUTSIDE_IP, TLS_PORT))
    }

    /// Runs `headend check-config`, then starts `headend run` in the headend namespace,
    /// logging to `headend.log`, and waits until it listens, has its admin socket and
    /// its TUN device has an address.
    pub fn start_headend(&self) {
        self.start_headend_with(&[]);
    }

    /// [`Lab::start_headend_with`] as root told to become `user` (`--user`): the
    /// config, certificate and key become root:GROUP 0640 (GROUP: `user`'s), as
    /// a package installs them.
    pub fn start_headend_as(&self, user: &str, extra: &[&str]) {
        let gid = cmd::must(&mut cmd::command("id", &["-g", user]));
        let gid: u32 = gid
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("id -g {user}: {gid:?}: {e}"));
        for p in [self.config_path(), self.cert_path(), self.key_path()] {
            std::os::unix::fs::chown(&p, Some(0), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
            set_mode(&p, 0o640);
        }
        // The lab dir is 0700: let the user reach its files (not list the dir).
        set_mode(&self.dir, 0o711);
        // The accounting journal is the user's to write (and compact) in its own
        // directory, as /var/lib/headend is the service's.
        let state = self.state_dir();
        let uid = cmd::must(&mut cmd::command("id", &["-u", user]));
        let uid: u32 = uid
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("id -u {user}: {uid:?}: {e}"));
        std::os::unix::fs::chown(&state, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", state.display()));
        set_mode(&state, 0o700);
        let mut args = vec!["--user", user];
        args.extend_from_slice(extra);
        self.start_headend_with(&args);
    }

    /// The headend's state directory in this lab (the accounting journal lives there).
    fn state_dir(&self) -> PathBuf {
        let d = self.dir.join("state");
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        d
    }

    /// The crash-safe accounting journal this lab's headend writes.
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir().join("accounting.journal")
    }

    /// [`Lab::start_headend`] with `extra` arguments to `headend run`.
    pub fn start_headend_with(&self, extra: &[&str]) {
        let bin = headend_bin();
        let check = cmd::output(
            Command::new(&bin)
                .arg("check-config")
                .arg(self.config_path()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            check.status.success(),
            "headend check-config {} failed ({}):\n{}",
            self.config_path().display(),
            check.status,
            cmd::combined(&check)
        );

        let mut guard = self.headend.lock().unwrap();
        assert!(guard.is_none(), "headend already started");
        let log = File::create(self.headend_log_path()).expect("create headend.log");
        let mut command = netns::exec(&self.gw_ns, &[bin.as_os_str()]);
        command
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .arg("--tls-cert")
            .arg(self.cert_path())
            .arg("--tls-key")
            .arg(self.key_path())
            .arg("--listen")
            .arg(format!("{OUTSIDE_IP}:{TLS_PORT}"))
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .arg("--tun-name")
            .arg(HEADEND_TUN)
            .arg("--accounting-journal")
            .arg(self.journal_path())
            .args(extra)
            // Used only when the config has `ssh` lines (tests/tests/mgmt.rs).
            .arg("--ssh-host-key")
            .arg(self.dir.join("ssh_host_ed25519_key"))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        *guard = Some(child);
        drop(guard);

        let mut missing = String::new();
        let ready = wait_until(HANG_GUARD, || {
            if let Some(status) = self.headend_exit_status() {
                panic!(
                    "headend exited ({status}) during startup; log:\n{}",
                    self.headend_log()
                );
            }
            missing.clear();
            let listening = cmd::output(&mut netns::exec(
                &self.gw_ns,
                &["ss", "-Hltn", &format!("sport = :{TLS_PORT}")],
            ))
            .is_ok_and(|o| !o.stdout.trim_ascii().is_empty());
            if !listening {
                missing.push_str(&format!(" listening on {OUTSIDE_IP}:{TLS_PORT};"));
            }
            if !self.admin_socket().exists() {
                missing.push_str(&format!(" admin socket {};", self.admin_socket().display()));
            }
            if ipv4_of(&self.gw_ns, HEADEND_TUN).is_none() {
                missing.push_str(&format!(" an IPv4 address on TUN {HEADEND_TUN};"));
            }
            missing.is_empty().then_some(())
        });
        if ready.is_none() {
            panic!(
                "headend not ready after {HANG_GUARD:?}: missing{missing}\nlog:\n{}",
                self.headend_log()
            );
        }
    }

    /// After the headend has exited (a crash, `kill -9`): keeps its log as
    /// `headend.N.log` and starts it again with the same config and state dir.
    pub fn restart_headend(&self) {
        self.restart_headend_with(&[]);
    }

    /// [`Lab::restart_headend`] with `extra` arguments to `headend run`.
    pub fn restart_headend_with(&self, extra: &[&str]) {
        let status = wait_until(HANG_GUARD, || self.headend_exit_status())
            .unwrap_or_else(|| panic!("headend still running: restart_headend needs it exited"));
        eprintln!("headend exited ({status}); restarting it");
        *self.headend.lock().unwrap() = None;
        let mut n = 1;
        while self.dir.join(format!("headend.{n}.log")).exists() {
            n += 1;
        }
        fs::rename(
            self.headend_log_path(),
            self.dir.join(format!("headend.{n}.log")),
        )
        .expect("keep the old headend log");
        self.start_headend_with(extra);
    }

    /// `Some(status)` once the headend has exited; `None` while it runs or was not started.
    pub fn headend_exit_status(&self) -> Option<ExitStatus> {
        let mut guard = self.headend.lock().unwrap();
        guard
            .as_mut()
            .and_then(|c| c.try_wait().expect("waitpid headend"))
    }

    /// The headend's pid (`ip netns exec` execs it, so the child's pid is its own).
    pub fn headend_pid(&self) -> u32 {
        self.headend
            .lock()
            .unwrap()
            .as_ref()
            .map(Child::id)
            .expect("headend was never started")
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the headend.
    pub fn signal_headend(&self, signal: i32) {
        let pid = self.headend_pid() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Panics (with the log) unless the headend is still running.
    pub fn assert_headend_running(&self) {
        assert!(
            self.headend.lock().unwrap().is_some(),
            "headend was never started"
        );
        if let Some(status) = self.headend_exit_status() {
            panic!("headend exited ({status}); log:\n{}", self.headend_log());
        }
    }

    /// Everything the headend logged so far.
    pub fn headend_log(&self) -> String {
        fs::read_to_string(self.headend_log_path()).unwrap_or_default()
    }

    /// `headend ARGS... --admin-socket SOCKET` in the headend's namespace (any admin
    /// command: `show ...`, `reload`, `vpn-sessiondb ...`).
    pub fn headend_cli(&self, args: &[&str]) -> Output {
        let bin = headend_bin();
        let mut c = netns::exec(&self.gw_ns, &[bin.as_os_str()]);
        c.args(args).arg("--admin-socket").arg(self.admin_socket());
        cmd::output(&mut c).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Local ports of client 0's established TCP connections to the headend's TLS
    /// port, sorted (which connection `ss -K` must kill, or whether one is new).
    pub fn client_tls_ports(&self) -> Vec<u16> {
        let out = self.exec_client(&[
            "ss",
            "-Htn",
            "state",
            "established",
            "dst",
            &format!("{OUTSIDE_IP}:{TLS_PORT}"),
        ]);
        assert!(out.status.success(), "ss: {}", cmd::combined(&out));
        let me = format!("{}:", self.client_host(0).ip);
        let mut ports: Vec<u16> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(&me)?.parse().ok())
            .collect();
        ports.sort_unstable();
        ports
    }

    /// Raw output of `headend show WHAT...` (e.g. `show(&["access-list"])`); panics
    /// unless the command succeeds.
    pub fn show(&self, what: &[&str]) -> String {
        let mut args = vec!["show"];
        args.extend_from_slice(what);
        let out = self.headend_cli(&args);
        assert!(
            out.status.success(),
            "headend {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            cmd::combined(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Raw output of `headend show counters` (dataplane and DTLS counters).
    pub fn show_counters_raw(&self) -> String {
        let out = self.headend_cli(&["show", "counters"]);
        assert!(
            out.status.success(),
            "headend show counters failed ({}):\n{}",
            out.status,
            cmd::combined(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Raw output of `headend show vpn-sessiondb detail anyconnect`: ASA's session
    /// fields plus the headend's extras (`Filter Name`, `Pkts Tx Drop`, `Status`).
    pub fn show_sessions_raw(&self) -> String {
        let out = self.headend_cli(&["show", "vpn-sessiondb", "detail", "anyconnect"]);
        assert!(
            out.status.success(),
            "headend show vpn-sessiondb detail anyconnect failed ({}):\n{}",
            out.status,
            cmd::combined(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `headend show vpn-sessiondb detail anyconnect`, one map per session (see
    /// [`sessiondb`]).
    pub fn show_sessions(&self) -> Vec<Session> {
        sessiondb::parse(&self.show_sessions_raw())
    }

    /// Polls `show vpn-sessiondb` until `pred` holds (hang guard [`HANG_GUARD`]); panics
    /// with the last output otherwise.
    pub fn wait_sessions(&self, what: &str, pred: impl Fn(&[Session]) -> bool) -> Vec<Session> {
        let mut last = String::new();
        wait_until(HANG_GUARD, || {
            last = self.show_sessions_raw();
            let s = sessiondb::parse(&last);
            pred(&s).then_some(s)
        })
        .unwrap_or_else(|| panic!("show vpn-sessiondb: not {what} after {HANG_GUARD:?}:\n{last}"))
    }

    /// `headend vpn-sessiondb logoff index N noconfirm`; panics unless it succeeds.
    pub fn logoff_index(&self, index: u32) -> String {
        let out = self.headend_cli(&[
            "vpn-sessiondb",
            "logoff",
            "index",
            &index.to_string(),
            "noconfirm",
        ]);
        assert!(
            out.status.success(),
            "logoff index {index} failed ({}):\n{}",
            out.status,
            cmd::combined(&out)
        );
        cmd::combined(&out)
    }

    /// `headend vpn-sessiondb logoff name USER noconfirm`; panics unless it succeeds.
    pub fn logoff_name(&self, user: &str) -> String {
        let out = self.headend_cli(&["vpn-sessiondb", "logoff", "name", user, "noconfirm"]);
        assert!(
            out.status.success(),
            "logoff name {user} failed ({}):\n{}",
            out.status,
            cmd::combined(&out)
        );
        cmd::combined(&out)
    }

    /// Starts openconnect for `user` in client namespace `host` without waiting for the
    /// tunnel. The password goes to `--passwd-on-stdin`.
    pub fn spawn_client(&self, host: usize, user: &str, password: &str, extra: &[&str]) -> Client {
        self.spawn_client_in_group(host, user, password, AUTHGROUP, extra)
    }

    /// [`Lab::spawn_client`] with `--authgroup authgroup` instead of [`AUTHGROUP`].
    pub fn spawn_client_in_group(
        &self,
        host: usize,
        user: &str,
        password: &str,
        authgroup: &str,
        extra: &[&str],
    ) -> Client {
        let ns = self.clients[host].ns.clone();
        let n = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut ifname = format!("oc{n}-{user}");
        ifname.truncate(15);
        let log_path = self.dir.join(format!("{ifname}.log"));
        let log = File::create(&log_path).expect("create client log");
        let script = workspace_root().join("netns/vpnc-script-min");
        assert!(script.is_file(), "{} missing", script.display());
        let mut command = netns::exec(&ns, &["openconnect"]);
        command
            .args([
                "--protocol=anyconnect",
                "-v",
                "--non-inter",
                "--passwd-on-stdin",
            ])
            .args(["--user", user, "--authgroup", authgroup])
            .arg(format!("--servercert=pin-sha256:{}", self.pin))
            .args(["--interface", &ifname])
            // openconnect runs the script through `/bin/sh -c`: no +x needed this way.
            .arg(format!("--script=/bin/sh {}", script.display()))
            .args(extra)
            .arg(self.url())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        let mut stdin = child.stdin.take().expect("stdin");
        // openconnect may already have failed (it then closes stdin): not an error here.
        let _ = writeln!(stdin, "{password}");
        drop(stdin);
        Client {
            user: user.to_owned(),
            ns,
            ifname,
            log_path,
            child,
            started,
        }
    }

    /// Connects `user` from the first client namespace and waits for the tunnel (address
    /// and routes on its TUN); panics with openconnect's and the headend's logs if it
    /// does not come up.
    pub fn connect(&self, user: &str, password: &str, extra: &[&str]) -> Client {
        self.connect_from(0, user, password, extra)
    }

    /// [`Lab::connect`] from client namespace `host`.
    pub fn connect_from(&self, host: usize, user: &str, password: &str, extra: &[&str]) -> Client {
        self.connect_in_group(host, user, password, AUTHGROUP, extra)
    }

    /// [`Lab::connect_from`] with `--authgroup authgroup`.
    pub fn connect_in_group(
        &self,
        host: usize,
        user: &str,
        password: &str,
        authgroup: &str,
        extra: &[&str],
    ) -> Client {
        let mut client = self.spawn_client_in_group(host, user, password, authgroup, extra);
        if let Err(e) = client.wait_connected(HANG_GUARD) {
            panic!(
                "{e}\n--- headend log ---\n{}",
                tail(&self.headend_log(), 60)
            );
        }
        client
    }

    /// Runs a command in the first client namespace.
    pub fn exec_client(&self, args: &[&str]) -> Output {
        exec_in(&self.clients[0].ns, args)
    }
    /// Runs a command in the headend namespace.
    pub fn exec_gw(&self, args: &[&str]) -> Output {
        exec_in(&self.gw_ns, args)
    }
    /// Runs a command in the inside namespace.
    pub fn exec_inside(&self, args: &[&str]) -> Output {
        exec_in(&self.inside_ns, args)
    }

    /// Starts `args` in namespace `ns` in the background, output to `NAME.log` in the lab
    /// directory (printed with the other logs when a test fails). Dropping the returned
    /// [`Background`] stops it.
    pub fn spawn_in(&self, ns: &str, name: &str, args: &[&str]) -> Background {
        let log_path = self.dir.join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create log");
        let mut command = netns::exec(ns, args);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        Background {
            name: name.to_owned(),
            log_path,
            child,
        }
    }

    /// Pings `ip` from the first client namespace (3 probes; true if any answer).
    pub fn ping_from_client(&self, ip: Ipv4Addr) -> bool {
        ping(&self.clients[0].ns, ip)
    }

    /// Pings `ip` from client namespace `host`.
    pub fn ping_from(&self, host: usize, ip: Ipv4Addr) -> bool {
        ping(&self.clients[host].ns, ip)
    }

    /// `ping -6` to `ip` from client namespace `host` (3 probes; true if any answer).
    pub fn ping6_from(&self, host: usize, ip: Ipv6Addr) -> bool {
        ping6(&self.clients[host].ns, ip, None)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            self.dump_logs();
        }
        // Stop the headend gracefully first (it removes its TUN and admin socket).
        if let Some(mut child) = self.headend.get_mut().map(Option::take).unwrap_or(None) {
            stop(&mut child, Duration::from_secs(5));
        }
        for ns in self.namespaces() {
            netns::destroy(ns);
        }
        if std::env::var("E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("E2E_KEEP=1: lab files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Lab {
    fn dump_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for path in logs {
            let text = fs::read_to_string(&path).unwrap_or_default();
            eprintln!(
                "===== {} (last 80 lines) =====\n{}",
                path.display(),
                tail(&text, 80)
            );
        }
    }
}

/// One openconnect process, in the foreground, owned by the test. Dropping it stops
/// openconnect (SIGTERM: it says DISCONNECT to the headend; SIGKILL after 5 s).
pub struct Client {
    user: String,
    ns: String,
    ifname: String,
    log_path: PathBuf,
    child: Child,
    started: Instant,
}

impl Client {
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The client namespace it runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }
    /// Its TUN device (`--interface`).
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// When openconnect was started.
    pub fn started(&self) -> Instant {
        self.started
    }
    /// Everything openconnect printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The IPv4 address on its TUN device, if the device exists and has one.
    pub fn tun_addr(&self) -> Option<Ipv4Addr> {
        ipv4_of(&self.ns, &self.ifname)
    }

    /// The global IPv6 address on its TUN device with its prefix length, if any
    /// (link-local addresses are left out).
    pub fn tun_addr6(&self) -> Option<(Ipv6Addr, u8)> {
        ipv6_of(&self.ns, &self.ifname)
    }

    /// `ip -6 route show dev TUN` in its namespace, one line per route.
    pub fn routes6(&self) -> Vec<String> {
        cmd::run(&mut cmd::command(
            "ip",
            &["-n", &self.ns, "-6", "route", "show", "dev", &self.ifname],
        ))
        .map(|s| s.lines().map(|l| l.trim().to_owned()).collect())
        .unwrap_or_default()
    }

    /// Whether an IPv6 route to `prefix` (e.g. `fd00:1::/64`) goes through its TUN.
    pub fn has_route6(&self, prefix: &str) -> bool {
        self.routes6()
            .iter()
            .any(|r| r.split_whitespace().next() == Some(prefix))
    }

    /// `ip -4 route show dev TUN` in its namespace, one line per route.
    pub fn routes(&self) -> Vec<String> {
        cmd::run(&mut cmd::command(
            "ip",
            &["-n", &self.ns, "-4", "route", "show", "dev", &self.ifname],
        ))
        .map(|s| s.lines().map(|l| l.trim().to_owned()).collect())
        .unwrap_or_default()
    }

    /// Whether a route to `prefix` (e.g. `198.18.1.0/24`) goes through its TUN device.
    pub fn has_route(&self, prefix: &str) -> bool {
        self.routes()
            .iter()
            .any(|r| r.split_whitespace().next() == Some(prefix))
    }

    /// `Some(status)` once openconnect has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waitpid openconnect")
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits until openconnect exits; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.exit_status())
    }

    /// Waits until the tunnel is up: an address on the TUN device and at least one
    /// route through it (the script adds routes after the address). Err (with
    /// openconnect's output) when openconnect exits first or `timeout` passes.
    pub fn wait_connected(&mut self, timeout: Duration) -> Result<Ipv4Addr, String> {
        let up = wait_until(timeout, || {
            if let Some(status) = self.exit_status() {
                return Some(Err(status));
            }
            let addr = self.tun_addr()?;
            (!self.routes().is_empty()).then_some(Ok(addr))
        });
        match up {
            Some(Ok(addr)) => Ok(addr),
            Some(Err(status)) => Err(format!(
                "openconnect ({} in {}) exited with {status} before the tunnel came up; \
                 output:\n{}",
                self.user,
                self.ns,
                self.output()
            )),
            None => Err(format!(
                "openconnect ({} in {}): no address and route on {} after {timeout:?}; \
                 output:\n{}",
                self.user,
                self.ns,
                self.ifname,
                self.output()
            )),
        }
    }

    /// Stops openconnect (SIGTERM, then SIGKILL after 5 s) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        stop(&mut self.child, Duration::from_secs(5))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Client {
    /// The local UDP port of openconnect's DTLS socket (connected to the headend's
    /// port 443), if it has one now. openconnect opens a new socket, so a new port,
    /// for every DTLS (re)connect.
    pub fn dtls_port(&self) -> Option<u16> {
        let out = cmd::run(&mut netns::exec(
            &self.ns,
            &["ss", "-Hunp", "dst", &format!("{OUTSIDE_IP}:{TLS_PORT}")],
        ))
        .ok()?;
        let me = format!("pid={},", self.pid());
        out.lines()
            .filter(|l| l.contains(&me))
            .flat_map(str::split_whitespace)
            .find_map(|w| {
                let (ip, port) = w.rsplit_once(':')?;
                (ip != OUTSIDE_IP.to_string()).then(|| port.parse().ok())?
            })
    }

    /// How often openconnect logged that DTLS came up ("Established DTLS connection").
    pub fn dtls_established_count(&self) -> usize {
        self.output().matches("Established DTLS connection").count()
    }
}

/// A helper program (iperf3 server, …) in a lab namespace; dropping it stops it.
pub struct Background {
    name: String,
    log_path: PathBuf,
    child: Child,
}

impl Background {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What it printed so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
    /// `Some(status)` once it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waitpid")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; reaps the child.
fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain syscall; the child is not reaped yet, so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if let Some(status) = wait_until(grace, || child.try_wait().ok().flatten()) {
        return Some(status);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Runs `args` in namespace `ns`, capturing output.
pub fn exec_in(ns: &str, args: &[&str]) -> Output {
    cmd::output(&mut netns::exec(ns, args)).unwrap_or_else(|e| panic!("{e}"))
}

/// Pings `ip` from namespace `ns`: 3 probes 0.2 s apart, 2 s wait each; true if any
/// answer came back.
pub fn ping(ns: &str, ip: Ipv4Addr) -> bool {
    let ip = ip.to_string();
    exec_in(
        ns,
        &["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", &ip],
    )
    .status
    .success()
}

/// `ping -6` to `ip` from namespace `ns` (from source address `from` if given):
/// 3 probes 0.2 s apart, 2 s wait each; true if any answer came back.
pub fn ping6(ns: &str, ip: Ipv6Addr, from: Option<Ipv6Addr>) -> bool {
    let ip = ip.to_string();
    let from = from.map(|a| a.to_string());
    let mut args = vec!["ping", "-6", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2"];
    if let Some(f) = &from {
        args.extend(["-I", f.as_str()]);
    }
    args.push(&ip);
    exec_in(ns, &args).status.success()
}

/// `ping -6` once a second-ish from `ns` until `ip` answers; the time it took, or
/// `None` after `timeout`.
pub fn wait_ping6(ns: &str, ip: Ipv6Addr, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let ip = ip.to_string();
    wait_until(timeout, || {
        exec_in(ns, &["ping", "-6", "-n", "-q", "-c", "1", "-W", "1", &ip])
            .status
            .success()
            .then(|| start.elapsed())
    })
}

/// Pings once a second-ish from `ns` until `ip` answers; the time it took, or `None`
/// after `timeout`.
pub fn wait_ping(ns: &str, ip: Ipv4Addr, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let ip = ip.to_string();
    wait_until(timeout, || {
        exec_in(ns, &["ping", "-n", "-q", "-c", "1", "-W", "1", &ip])
            .status
            .success()
            .then(|| start.elapsed())
    })
}

/// The first IPv4 address of `dev` in namespace `ns`.
pub fn ipv4_of(ns: &str, dev: &str) -> Option<Ipv4Addr> {
    let out = cmd::run(&mut cmd::command(
        "ip",
        &["-n", ns, "-4", "-o", "addr", "show", "dev", dev],
    ))
    .ok()?;
    // "5: oc1-alice    inet 198.18.100.10 peer 198.18.100.10/32 scope global oc1-alice"
    let mut words = out.split_whitespace();
    words.find(|w| *w == "inet")?;
    words.next()?.split('/').next()?.parse().ok()
}

/// The first global IPv6 address of `dev` in namespace `ns`, with its prefix length.
pub fn ipv6_of(ns: &str, dev: &str) -> Option<(Ipv6Addr, u8)> {
    let out = cmd::run(&mut cmd::command(
        "ip",
        &[
            "-n", ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "global",
        ],
    ))
    .ok()?;
    // "5: oc1-alice    inet6 fd00:100::10/64 scope global \       valid_lft forever ..."
    let mut words = out.split_whitespace();
    words.find(|w| *w == "inet6")?;
    let (a, len) = words.next()?.split_once('/')?;
    Some((a.parse().ok()?, len.parse().ok()?))
}

/// base64(SHA-256(SubjectPublicKeyInfo DER)) of a PEM certificate: openconnect's
/// `--servercert pin-sha256:` value.
pub fn spki_pin(cert_pem: &Path) -> String {
    let pem = fs::read(cert_pem).unwrap_or_else(|e| panic!("read {}: {e}", cert_pem.display()));
    let cert = openssl::x509::X509::from_pem(&pem).expect("parse certificate");
    let spki = cert
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .expect("certificate public key");
    openssl::base64::encode_block(&openssl::sha::sha256(&spki))
}

fn random_hex(n: usize) -> String {
    crate::probe::random_bytes(n)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn lab_names() {
        assert_eq!(super::lab_pid("vpngw-123-0"), Some(123));
        assert_eq!(super::lab_pid("vpnc-123-4"), Some(123));
        assert_eq!(super::lab_pid("vpnc2-123-4"), Some(123));
        assert_eq!(super::lab_pid("inside-9-1"), Some(9));
        assert_eq!(super::lab_pid("lab-9-1"), Some(9));
        // Node B of a cluster lab (cluster_lab.rs).
        assert_eq!(super::lab_pid("vpngwb-77-2"), Some(77));
        assert_eq!(super::lab_pid("vpngw-t1"), None);
        assert_eq!(super::lab_pid("vpnc-demo42"), None);
        assert_eq!(super::lab_pid("other-1-2"), None);
        assert_eq!(super::lab_pid("vpngw-1-2-3"), None);
    }
}

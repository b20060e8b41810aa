//! A two-headend cluster lab (issue 19): the lab of [`Lab`] (node A in its headend
//! namespace) plus node B in a namespace of its own, both on the same outside and
//! inside segments, and a real `redis-server` on the inside host.
//!
//! ```text
//!                       vpngw-ID (node A)                         vpngwb-ID (node B)
//! vpnc-ID 198.18.0.2 ── bridge outside 198.18.0.1 (VIP) ──veth── outside 198.18.0.12
//!                       bridge inbr    198.18.1.1       ──veth── inside  198.18.1.2
//!                         └─veth── inside-ID eth0 198.18.1.10  redis-server :6379
//!                                  (198.18.100.0/24 on-link: A or B answers ARP
//!                                   for each session address, proxy ARP)
//! ```
//!
//! The VIP 198.18.0.1 is where openconnect connects; [`ClusterLab::move_vip_to_b`]
//! moves it as keepalived would (address off A, onto B, unsolicited ARP). B binds the
//! VIP while it is not local (`net.ipv4.ip_nonlocal_bind=1`, as keepalived setups
//! do). Dropping the lab stops B and Redis and removes B's namespace; the [`Lab`]
//! cleans up the rest.

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::lab::{HANG_GUARD, INSIDE_HOST, Lab, OUTSIDE_IP, TLS_PORT, headend_bin, tail};
use crate::sessiondb::{self, Session};
use crate::{cmd, netns, wait_until};

/// Node B's own addresses.
pub const B_OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
pub const B_INSIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// Redis listens on the inside host.
pub const REDIS_PORT: u16 = 6379;
/// The pool of the lab config, on-link on the inside segment.
pub const POOL_NET: &str = "198.18.100.0/24";
/// Node lease of the lab's headends (seconds): short, so takeovers come soon.
pub const LEASE_SECS: &str = "2";

pub struct ClusterLab {
    pub lab: Lab,
    pub b_ns: String,
    b: Mutex<Option<Child>>,
    redis: Mutex<Option<Child>>,
    redis_args: Vec<String>,
}

fn ip(args: &[&str]) {
    cmd::must(&mut cmd::command("ip", args));
}

impl ClusterLab {
    /// Builds node B's namespace and the shared inside segment around `lab` (whose
    /// headend must not run yet) and starts Redis. `redis_extra`: more
    /// `redis-server` arguments (e.g. `--requirepass`).
    pub fn build(lab: Lab, redis_extra: &[&str]) -> ClusterLab {
        let b_ns = format!("vpngwb-{}", lab.id());
        netns::destroy(&b_ns);
        netns::add(&b_ns).unwrap_or_else(|e| panic!("{e}"));
        let mut cl = ClusterLab {
            lab,
            b_ns,
            b: Mutex::new(None),
            redis: Mutex::new(None),
            redis_args: redis_extra.iter().map(|s| s.to_string()).collect(),
        };
        cl.plumb();
        cl.start_redis();
        cl
    }

    fn plumb(&mut self) {
        let gw = self.lab.gw_ns().to_owned();
        let b = self.b_ns.clone();
        let inside = self.lab.inside_ns().to_owned();
        // A's inside veth becomes a port of a bridge that B joins too.
        ip(&["-n", &gw, "addr", "flush", "dev", "inside"]);
        ip(&["-n", &gw, "link", "add", "inbr", "type", "bridge"]);
        ip(&["-n", &gw, "link", "set", "inside", "master", "inbr"]);
        ip(&["-n", &gw, "addr", "add", "198.18.1.1/24", "dev", "inbr"]);
        ip(&["-n", &gw, "link", "set", "inbr", "up"]);
        ip(&[
            "-n", &gw, "link", "add", "binside", "type", "veth", "peer", "name", "inside", "netns",
            &b,
        ]);
        ip(&["-n", &gw, "link", "set", "binside", "master", "inbr"]);
        ip(&["-n", &gw, "link", "set", "binside", "up"]);
        ip(&[
            "-n",
            &b,
            "addr",
            "add",
            &format!("{B_INSIDE}/24"),
            "dev",
            "inside",
        ]);
        ip(&["-n", &b, "link", "set", "inside", "up"]);
        ip(&[
            "-n", &gw, "link", "add", "bout", "type", "veth", "peer", "name", "outside", "netns",
            &b,
        ]);
        ip(&["-n", &gw, "link", "set", "bout", "master", "outside"]);
        ip(&["-n", &gw, "link", "set", "bout", "up"]);
        ip(&[
            "-n",
            &b,
            "addr",
            "add",
            &format!("{B_OUTSIDE}/24"),
            "dev",
            "outside",
        ]);
        ip(&["-n", &b, "link", "set", "outside", "up"]);
        for sysctl in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.ip_nonlocal_bind=1",
            "net.ipv6.conf.all.forwarding=1",
        ] {
            cmd::must(&mut netns::exec(&b, &["sysctl", "-qw", sysctl]));
        }
        // Node A binds the VIP after a restart too, when B has it.
        cmd::must(&mut netns::exec(
            &gw,
            &["sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"],
        ));
        // The pool is on the inside segment: whichever node holds a session
        // answers ARP for its address.
        ip(&["-n", &inside, "route", "replace", POOL_NET, "dev", "eth0"]);
    }

    /// The CA file when Redis serves TLS (`--tls-ca-cert-file` among its args).
    fn tls_ca(&self) -> Option<String> {
        self.redis_args
            .iter()
            .position(|a| a == "--tls-ca-cert-file")
            .and_then(|i| self.redis_args.get(i + 1))
            .cloned()
    }

    pub fn redis_url(&self) -> String {
        let scheme = if self.tls_ca().is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{INSIDE_HOST}:{REDIS_PORT}/0")
    }

    fn redis_log(&self) -> PathBuf {
        self.lab.dir().join("redis.log")
    }

    /// Starts `redis-server` on the inside host (no persistence: a restart
    /// loses everything, the hardest case for the cluster).
    pub fn start_redis(&self) {
        let mut guard = self.redis.lock().unwrap();
        assert!(guard.is_none(), "redis already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.redis_log())
            .expect("redis.log");
        let port = REDIS_PORT.to_string();
        let host = INSIDE_HOST.to_string();
        let dir = self.lab.dir().to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec![
            "redis-server",
            "--bind",
            &host,
            "--port",
            &port,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--dir",
            &dir,
            "--logfile",
            "",
        ];
        args.extend(self.redis_args.iter().map(String::as_str));
        let child = netns::exec(self.lab.inside_ns(), &args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        *guard = Some(child);
        drop(guard);
        let up = wait_until(HANG_GUARD, || {
            let o = self.redis_cli(&["PING"]);
            let text = cmd::combined(&o);
            (text.contains("PONG") || text.contains("NOAUTH")).then_some(())
        });
        assert!(
            up.is_some(),
            "redis-server not answering after {HANG_GUARD:?}:\n{}",
            tail(
                &fs::read_to_string(self.redis_log()).unwrap_or_default(),
                40
            )
        );
    }

    /// Stops Redis (SIGKILL: its data is gone, no persistence).
    pub fn stop_redis(&self) {
        if let Some(mut c) = self.redis.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Milliseconds since the store was marked born (`headend:born`, Redis TIME),
    /// None while no node has written to it yet.
    pub fn store_age_ms(&self) -> Option<i64> {
        const AGE: &str = "local b = redis.call('GET', 'headend:born') if not b then \
            return -1 end local t = redis.call('TIME') return tonumber(t[1]) * 1000 + \
            math.floor(tonumber(t[2]) / 1000) - tonumber(b)";
        let o = self.redis_cli(&["EVAL", AGE, "0"]);
        let age: i64 = String::from_utf8_lossy(&o.stdout).trim().parse().ok()?;
        (age >= 0).then_some(age)
    }

    /// Waits out the refill grace of the fresh store (keys.rs: a store that
    /// started empty hands out no address for two leases, so the first logins
    /// of a new cluster wait): what a benchmark of steady-state logins needs.
    pub fn wait_store_settled(&self) {
        let lease_ms: i64 = LEASE_SECS.parse::<i64>().expect("LEASE_SECS") * 1000;
        // REFILL_GRACE_LEASES (headend/src/cluster/keys.rs) is 2.
        let grace = 2 * lease_ms;
        wait_until(HANG_GUARD, || {
            self.store_age_ms().filter(|a| *a >= grace).map(|_| ())
        })
        .expect("the cluster store's refill grace never ended");
    }

    /// `redis-cli` against the lab's Redis (with `-a` from the `--requirepass` given).
    pub fn redis_cli(&self, args: &[&str]) -> Output {
        let host = INSIDE_HOST.to_string();
        let port = REDIS_PORT.to_string();
        let mut all = vec!["redis-cli", "-h", &host, "-p", &port];
        let pass = self
            .redis_args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.redis_args.get(i + 1))
            .cloned();
        if let Some(p) = &pass {
            all.extend(["--no-auth-warning", "-a", p]);
        }
        let ca = self.tls_ca();
        if let Some(ca) = &ca {
            all.extend(["--tls", "--cacert", ca]);
        }
        all.extend_from_slice(args);
        cmd::output(&mut netns::exec(self.lab.inside_ns(), &all)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The `headend run` arguments that make a node of this cluster.
    pub fn node_args(&self, node: &str, inside_dev: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .tls_ca()
            .map(|ca| vec!["--cluster-ca".into(), ca])
            .unwrap_or_default();
        v.extend([
            "--cluster".into(),
            self.redis_url_with_auth(),
            "--node-id".into(),
            node.into(),
            "--cluster-lease".into(),
            LEASE_SECS.into(),
            "--cluster-inside".into(),
            inside_dev.into(),
        ]);
        v
    }

    fn redis_url_with_auth(&self) -> String {
        match self
            .redis_args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.redis_args.get(i + 1))
        {
            Some(p) => self.redis_url().replacen("://", &format!("://:{p}@"), 1),
            None => self.redis_url(),
        }
    }

    /// Starts node A (the lab's headend) as a cluster member.
    pub fn start_a(&self) {
        self.start_a_with(&[]);
    }

    /// [`start_a`](Self::start_a) with more `headend run` arguments.
    pub fn start_a_with(&self, extra: &[&str]) {
        let mut args = self.node_args("A", "inbr");
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lab.start_headend_with(&args);
    }

    pub fn b_admin_socket(&self) -> PathBuf {
        self.lab.dir().join("admin-b.sock")
    }

    pub fn b_log_path(&self) -> PathBuf {
        self.lab.dir().join("headend-b.log")
    }

    pub fn b_log(&self) -> String {
        fs::read_to_string(self.b_log_path()).unwrap_or_default()
    }

    /// Starts node B with the same config, certificate and key, listening on the
    /// VIP (not local to B until [`move_vip_to_b`](Self::move_vip_to_b)).
    pub fn start_b(&self) {
        self.start_b_on(OUTSIDE_IP);
    }

    /// Starts node B listening on `listen` (e.g. [`B_OUTSIDE`], its own address,
    /// where the VIP does not matter or a director redirects to it).
    pub fn start_b_on(&self, listen: Ipv4Addr) {
        self.start_b_on_with(listen, &[]);
    }

    /// [`start_b_on`](Self::start_b_on) with more `headend run` arguments.
    pub fn start_b_on_with(&self, listen: Ipv4Addr, extra: &[&str]) {
        let mut guard = self.b.lock().unwrap();
        assert!(guard.is_none(), "node B already started");
        let state = self.lab.dir().join("state-b");
        fs::create_dir_all(&state).expect("state-b");
        let log = File::create(self.b_log_path()).expect("headend-b.log");
        let bin = headend_bin();
        let mut command = netns::exec(&self.b_ns, &[bin.as_os_str()]);
        command
            .arg("run")
            .arg("--config")
            .arg(self.lab.config_path())
            .arg("--tls-cert")
            .arg(self.lab.cert_path())
            .arg("--tls-key")
            .arg(self.lab.key_path())
            .arg("--listen")
            .arg(format!("{listen}:{TLS_PORT}"))
            .arg("--admin-socket")
            .arg(self.b_admin_socket())
            .arg("--tun-name")
            .arg("vpn0")
            .arg("--accounting-journal")
            .arg(state.join("accounting.journal"))
            .arg("--ssh-host-key")
            .arg(self.lab.dir().join("ssh_host_ed25519_key_b"))
            .args(self.node_args("B", "inside"))
            .args(extra)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        *guard = Some(child);
        drop(guard);
        let ready = wait_until(HANG_GUARD, || {
            if let Some(status) = self
                .b
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "node B exited ({status}) during startup; log:\n{}",
                    self.b_log()
                );
            }
            (self.b_admin_socket().exists() && self.b_log().contains("listening on")).then_some(())
        });
        assert!(
            ready.is_some(),
            "node B not ready after {HANG_GUARD:?}; log:\n{}",
            self.b_log()
        );
    }

    /// Starts node A again after it exited (the lab keeps its old log).
    pub fn restart_a(&self) {
        let args = self.node_args("A", "inbr");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lab.restart_headend_with(&args);
    }

    /// SIGKILL to node A (no Stop, no cleanup: a crash).
    pub fn kill_a(&self) {
        self.lab.signal_headend(libc::SIGKILL);
        wait_until(HANG_GUARD, || self.lab.headend_exit_status())
            .expect("node A still running after SIGKILL");
    }

    /// What keepalived does when B becomes master: the VIP leaves A (whose
    /// notify script flushes its proxy ARP entries) and comes up on B, which
    /// announces it with unsolicited ARP.
    pub fn move_vip_to_b(&self) {
        let vip = format!("{OUTSIDE_IP}/24");
        ip(&[
            "-n",
            self.lab.gw_ns(),
            "addr",
            "del",
            &vip,
            "dev",
            "outside",
        ]);
        // keepalived's notify_backup on A (README): a hung A's kernel would
        // otherwise still answer ARP for its sessions' addresses.
        ip(&[
            "-n",
            self.lab.gw_ns(),
            "neigh",
            "flush",
            "proxy",
            "dev",
            "inbr",
        ]);
        ip(&["-n", &self.b_ns, "addr", "add", &vip, "dev", "outside"]);
        let vip = OUTSIDE_IP.to_string();
        // arping exits 1 when nothing answered, which unsolicited ARP never gets.
        let out = cmd::output(&mut netns::exec(
            &self.b_ns,
            &["arping", "-U", "-c", "2", "-i", "outside", "-S", &vip, &vip],
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "arping -U: {}",
            cmd::combined(&out)
        );
    }

    /// `headend ARGS` against node B's admin socket.
    /// The MAC address of `dev` in namespace `ns`.
    pub fn mac(ns: &str, dev: &str) -> String {
        let out = cmd::must(&mut cmd::command(
            "ip",
            &["-n", ns, "-o", "link", "show", "dev", dev],
        ));
        let text = out;
        let mut words = text.split_whitespace();
        // `... link/ether 02:..:.. brd ff:ff:ff:ff:ff:ff ...`
        words
            .by_ref()
            .find(|w| *w == "link/ether")
            .and_then(|_| words.next())
            .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {text}"))
            .to_owned()
    }

    /// Node A's and node B's MACs on the inside segment (what their ARP answers
    /// and announcements carry).
    pub fn inside_macs(&self) -> (String, String) {
        (
            Self::mac(self.lab.gw_ns(), "inbr"),
            Self::mac(&self.b_ns, "inside"),
        )
    }

    /// The inside host's neighbour entry for `addr`: its MAC, if it has one.
    pub fn inside_host_neigh(&self, addr: Ipv4Addr) -> Option<String> {
        let a = addr.to_string();
        let out = cmd::must(&mut cmd::command(
            "ip",
            &[
                "-n",
                self.lab.inside_ns(),
                "neigh",
                "show",
                &a,
                "dev",
                "eth0",
            ],
        ));
        let text = out;
        let mut words = text.split_whitespace();
        words.by_ref().find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// Points the inside host's entry for `addr` at `mac` (state STALE: nothing
    /// re-resolves it until traffic goes there or an announcement arrives).
    pub fn set_inside_host_neigh(&self, addr: Ipv4Addr, mac: &str) {
        let a = addr.to_string();
        ip(&[
            "-n",
            self.lab.inside_ns(),
            "neigh",
            "replace",
            &a,
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "stale",
        ]);
    }

    pub fn b_cli(&self, args: &[&str]) -> Output {
        let (first, rest) = args.split_first().expect("a command");
        let mut c = Command::new(headend_bin());
        c.arg(first)
            .arg("--admin-socket")
            .arg(self.b_admin_socket())
            .args(rest);
        cmd::output(&mut c).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Node B's `show vpn-sessiondb detail anyconnect`.
    pub fn b_sessions(&self) -> Vec<Session> {
        let out = self.b_cli(&["show", "vpn-sessiondb", "detail", "anyconnect"]);
        assert!(out.status.success(), "{}", cmd::combined(&out));
        sessiondb::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Polls node B's sessions until `pred` holds.
    pub fn wait_b_sessions(&self, what: &str, pred: impl Fn(&[Session]) -> bool) -> Vec<Session> {
        let mut last = Vec::new();
        wait_until(HANG_GUARD + Duration::from_secs(30), || {
            last = self.b_sessions();
            pred(&last).then(|| last.clone())
        })
        .unwrap_or_else(|| {
            panic!(
                "node B: not {what}: {last:#?}\nlog:\n{}",
                tail(&self.b_log(), 60)
            )
        })
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        if let Some(mut c) = self.b.get_mut().map(Option::take).unwrap_or(None) {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let done = wait_until(Duration::from_secs(5), || c.try_wait().ok().flatten());
            if done.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.stop_redis();
        netns::destroy(&self.b_ns);
    }
}

/// Makes a CA and a Redis server certificate for 198.18.1.10 signed by it in
/// `dir`; returns the `redis-server` arguments that serve TLS only with them.
pub fn redis_tls_args(dir: &std::path::Path) -> Vec<String> {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=lab-redis-ca"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("redis-ca.key"), p("redis-ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    cmd::must(&mut cmd::command("openssl", &ca));
    let (key, csr, pem, ext) = (
        p("redis.key"),
        p("redis.csr"),
        p("redis.pem"),
        p("redis.ext"),
    );
    fs::write(
        &ext,
        format!("subjectAltName=IP:{INSIDE_HOST}\nbasicConstraints=CA:FALSE\n"),
    )
    .expect("redis.ext");
    let mut req = vec!["req", "-subj", "/CN=lab-redis"];
    req.extend(ec);
    req.extend(["-keyout", &key, "-out", &csr]);
    cmd::must(&mut cmd::command("openssl", &req));
    cmd::must(&mut cmd::command(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    ));
    [
        "--port",
        "0",
        "--tls-port",
        "6379",
        "--tls-cert-file",
        &pem,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_pem,
        "--tls-auth-clients",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

//! FreeRADIUS 3.2 (Debian) in the lab: the RADIUS server the headend asks (Cisco ISE in
//! production), and `radclient` as ISE's CoA / Disconnect sender.
//!
//! ```text
//! vpngw-ID  inside 198.18.1.1 ──veth── eth0 198.18.1.10 (inside host)      inside-ID
//!   headend: RADIUS client,                 198.18.1.20 RADIUS_PRIMARY   (freeradius -X)
//!   dynamic-authorization :1700             198.18.1.21 RADIUS_SECONDARY (freeradius -X)
//! ```
//!
//! Each [`RadiusServer`] is `freeradius -X` in the lab's inside namespace, listening on
//! its own address (added to the inside host's `eth0`) on UDP 1812/1813, with a raddb
//! rendered from the templates in `netns/freeradius/` into `LABDIR/radius-ADDR/`
//! (mode 0700, root; it runs as root). Its `-X` log — every attribute of every packet
//! received and sent — is `LABDIR/radius-ADDR.log` (printed with the lab's other logs
//! when a test fails); accounting packets go to `LABDIR/radius-ADDR/detail`.
//!
//! Users (`netns/freeradius/users`): `alice` and `bob` with the lab's passwords
//! ([`Lab::password`]), PAP; `carol` always rejected with `Reply-Message = "Account
//! disabled"`; an authorize-only request (Service-Type = Authorize-Only, no password)
//! for a known user is accepted with the same reply attributes. Extra users
//! ([`RadiusUser`]) go before those and win over them. Every Access-Accept and
//! Access-Reject carries a Message-Authenticator, as ISE's do (but see
//! [`RadiusUser::unsigned_reply`]). The only client is the headend (198.18.1.1) with
//! the lab secret ([`lab_secret`]); `require_message_authenticator = yes`, so an
//! Access-Request without Message-Authenticator is dropped (and logged).
//!
//! ```no_run
//! use e2e::Lab;
//! use e2e::radius::{self, RadiusServer, RADIUS_PRIMARY};
//! let Some(lab) = Lab::new() else { return };
//! let secret = radius::lab_secret(&lab);
//! let Some(ise) = RadiusServer::start(&lab, RADIUS_PRIMARY, &secret, &[]) else { return };
//! // ... the headend logs alice in ...
//! let req = ise.wait_for_request("Access-Request", "alice");
//! assert_eq!(req.get("Service-Type"), Some("Authorize-Only"));
//! let acct = ise.accounting_records();
//! let reply = ise.coa(&[("Acct-Session-Id", "..."), ("Cisco-AVPair", "cts:security-group-tag=000b-00")]);
//! assert_eq!(reply.code.as_deref(), Some("CoA-ACK"));
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use crate::lab::{HANG_GUARD, INSIDE_GW, Lab, required, tail, workspace_root};
use crate::{Client, Session};
use crate::{cmd, netns, wait_until};

/// The first RADIUS server (ISE PSN 1): `aaa-server ISE (inside) host 198.18.1.20`.
pub const RADIUS_PRIMARY: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);
/// The second RADIUS server, for failover: `aaa-server ISE (inside) host 198.18.1.21`.
pub const RADIUS_SECONDARY: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 21);
pub const AUTH_PORT: u16 = 1812;
pub const ACCT_PORT: u16 = 1813;
/// The headend's dynamic-authorization (CoA / Disconnect) port.
pub const DYNAUTH_PORT: u16 = 1700;
/// How long [`RadiusServer::coa`] and friends wait for an answer (one attempt, no
/// retransmission). A hang guard: the lab's peers answer in milliseconds.
pub const RADCLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The lab's RADIUS shared secret: 32 random hex digits, made on first use and kept in
/// `LABDIR/radius-secret` (so the headend config and every server of the lab agree).
pub fn lab_secret(lab: &Lab) -> String {
    let path = lab.dir().join("radius-secret");
    let fresh: String = crate::probe::random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut f) => {
            set_mode(&path, 0o600);
            writeln!(f, "{fresh}").expect("write radius-secret");
            fresh
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned(),
        Err(e) => panic!("create {}: {e}", path.display()),
    }
}

/// The `aaa-server` lines for a headend config using the lab's two FreeRADIUS servers
/// as the server group `ISE` (reference them from a tunnel group with
/// `authentication-server-group ISE`, `authorization-server-group ISE`,
/// `accounting-server-group ISE`).
pub fn asa_config(secret: &str) -> String {
    asa_config_timed(secret, 5, 2)
}

/// [`asa_config`] with `timeout SECONDS` and `retry-interval SECONDS` on both hosts
/// (the headend tries a host `timeout / retry-interval` times, `retry-interval` apart,
/// then fails over): small values make failover tests quick.
pub fn asa_config_timed(secret: &str, timeout_secs: u32, retry_interval_secs: u32) -> String {
    let mut s = String::from(
        "aaa-server ISE protocol radius\n \
         authorize-only\n \
         dynamic-authorization port 1700\n \
         interim-accounting-update periodic 1\n",
    );
    for host in [RADIUS_PRIMARY, RADIUS_SECONDARY] {
        s.push_str(&format!(
            "aaa-server ISE (inside) host {host}\n \
             key {secret}\n \
             authentication-port {AUTH_PORT}\n \
             accounting-port {ACCT_PORT}\n \
             timeout {timeout_secs}\n \
             retry-interval {retry_interval_secs}\n"
        ));
    }
    s
}

/// The config of the RADIUS tunnel group `RADIUS-PW` (PAP, authorize-only and
/// accounting with `ISE`, default group policy `GP-RADIUS-DEFAULT`) and of
/// `GP-CONTRACTORS` (bob's Class `OU=GP-CONTRACTORS;`); both group policies get
/// `vpn-filter value FILTER` when given. Append after [`asa_config`]'s lines.
pub fn tunnel_group_config(vpn_filter: Option<&str>) -> String {
    let filter = vpn_filter
        .map(|f| format!(" vpn-filter value {f}\n"))
        .unwrap_or_default();
    let mut s = String::new();
    for gp in ["GP-CONTRACTORS", "GP-RADIUS-DEFAULT"] {
        s.push_str(&format!(
            "group-policy {gp} internal\n\
             group-policy {gp} attributes\n \
             vpn-tunnel-protocol ssl-client\n \
             split-tunnel-policy tunnelspecified\n \
             split-tunnel-network-list value SPLIT\n \
             address-pools value VPN-POOL\n\
             {filter}!\n"
        ));
    }
    s.push_str(
        "tunnel-group RADIUS-PW type remote-access\n\
         tunnel-group RADIUS-PW general-attributes\n \
         address-pool VPN-POOL\n \
         authentication-server-group ISE\n \
         authorization-server-group ISE\n \
         accounting-server-group ISE\n \
         default-group-policy GP-RADIUS-DEFAULT\n\
         tunnel-group RADIUS-PW webvpn-attributes\n \
         authentication aaa\n \
         group-alias RADIUS-PW enable\n",
    );
    s
}

/// Appends `text` to the lab's rendered headend config (`headend.cfg`), e.g.
/// [`asa_config`] and tunnel-group lines; call it before [`Lab::start_headend`].
pub fn append_headend_config(lab: &Lab, text: &str) {
    let path = lab.config_path();
    let mut f = OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    write!(f, "!\n{text}").expect("append to headend.cfg");
    if !text.ends_with('\n') {
        writeln!(f).expect("append to headend.cfg");
    }
}

/// Why FreeRADIUS cannot run here, if it cannot.
pub fn unavailable_reason() -> Option<String> {
    for program in ["freeradius", "radclient", "radtest"] {
        if !cmd::in_path(program) {
            return Some(format!(
                "`{program}` not found (apt-get install freeradius freeradius-utils; \
                 netns/install-deps.sh)"
            ));
        }
    }
    if !Path::new("/usr/share/freeradius/dictionary.cisco.asa").is_file() {
        return Some("/usr/share/freeradius/dictionary.cisco.asa missing".into());
    }
    None
}

/// An extra entry of the users file (placed before alice/bob/carol, so it wins over an
/// entry with the same name).
#[derive(Debug, Clone, Default)]
pub struct RadiusUser {
    name: String,
    check: Vec<(String, String, String)>,
    reply: Vec<(String, String)>,
}

impl RadiusUser {
    pub fn new(name: &str) -> RadiusUser {
        RadiusUser {
            name: name.to_owned(),
            ..RadiusUser::default()
        }
    }
    /// PAP password (`Cleartext-Password := "…"`).
    pub fn password(self, password: &str) -> RadiusUser {
        self.check("Cleartext-Password", ":=", password)
    }
    /// Always rejected (also for authorize-only), with this Reply-Message.
    pub fn reject(self, message: &str) -> RadiusUser {
        self.check("Auth-Type", ":=", "Reject")
            .reply("Reply-Message", message)
    }
    /// Its Access-Accept / Access-Reject carry no Message-Authenticator (every other
    /// reply does, as ISE's do): for testing that the headend refuses unsigned replies.
    pub fn unsigned_reply(self) -> RadiusUser {
        self.check("Tmp-String-9", ":=", "unsigned-reply")
    }
    /// A check item, e.g. `("Service-Type", "==", "Authorize-Only")`.
    pub fn check(mut self, attr: &str, op: &str, value: &str) -> RadiusUser {
        self.check.push((attr.into(), op.into(), value.into()));
        self
    }
    /// A reply attribute of the Access-Accept, e.g. `("Class", "OU=GP-EMPLOYEES;")`,
    /// `("Cisco-AVPair", "cts:security-group-tag=000a-00")`, `("Session-Timeout",
    /// "3600")`, `("ASA-Group-Policy", "GP-X")`. Repeat for several.
    pub fn reply(mut self, attr: &str, value: &str) -> RadiusUser {
        self.reply.push((attr.into(), value.into()));
        self
    }

    /// A named downloadable ACL as ISE serves it: the entry the headend's
    /// `aaa:event=acl-download` request (User-Name = `name`, null password) is
    /// answered from, with `ip:inacl#N` entries. `name` like
    /// `#ACSACL#-IP-LAB_WEB-5f3c1a2b` (quoted in the users file: `#` starts a comment).
    pub fn downloadable_acl(name: &str, entries: &[&str]) -> RadiusUser {
        let mut u = RadiusUser::new(name).check("Auth-Type", ":=", "Accept");
        for (i, e) in entries.iter().enumerate() {
            u = u.reply("Cisco-AVPair", &format!("ip:inacl#{}={e}", i + 1));
        }
        u
    }

    /// Its entry in FreeRADIUS `users` syntax.
    pub fn render(&self) -> String {
        let user_name = match self.name.strip_prefix("#ACSACL#-") {
            Some(rest) => {
                check_name(rest);
                format!("\"{}\"", self.name)
            }
            None => {
                check_name(&self.name);
                self.name.clone()
            }
        };
        let check: Vec<String> = self
            .check
            .iter()
            .map(|(a, op, v)| {
                check_name(a);
                format!("{a} {op} {}", quote(v))
            })
            .collect();
        let mut s = format!("{user_name}\t{}\n", check.join(", "));
        let reply: Vec<String> = self
            .reply
            .iter()
            .map(|(a, v)| {
                check_name(a);
                // `+=`: a repeated attribute (several Cisco-AVPair) is added each time.
                format!("\t{a} += {}", quote(v))
            })
            .collect();
        if !reply.is_empty() {
            s.push_str(&reply.join(",\n"));
            s.push('\n');
        }
        s.push('\n');
        s
    }
}

/// Attributes in order, as FreeRADIUS prints them: strings unquoted, octets that are
/// printable ASCII shown as text (`Class = OU=GP-EMPLOYEES;`, not `0x4f55…`), anything
/// else as printed (`0x…` hex, integers by name: `Service-Type = Authorize-Only`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs(pub Vec<(String, String)>);

impl Attrs {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of `name`, in order (e.g. all Cisco-AVPairs).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// Whether some `name` has exactly `value`.
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.all(name).contains(&value)
    }
    /// One map per name; repeated attributes joined with `\n` in order.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = HashMap::new();
        for (n, v) in &self.0 {
            m.entry(n.clone())
                .and_modify(|old| {
                    old.push('\n');
                    old.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
        m
    }
}

/// A packet FreeRADIUS logged as received (`-X`: `(N) Received KIND Id I from A to B`).
#[derive(Debug, Clone)]
pub struct LoggedPacket {
    /// `Access-Request`, `Accounting-Request`, `CoA-Request`, …
    pub kind: String,
    /// `198.18.1.1:41234`
    pub from: String,
    pub attrs: Attrs,
}

impl LoggedPacket {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.get(name)
    }
}

/// What `radclient -x` (or `radtest`) got back.
#[derive(Debug, Clone)]
pub struct RadclientReply {
    /// `Access-Accept`, `Access-Reject`, `Accounting-Response`, `CoA-ACK`, `CoA-NAK`,
    /// `Disconnect-ACK`, `Disconnect-NAK`; `None` when nothing came back in time.
    pub code: Option<String>,
    /// The answer's attributes (e.g. `Error-Cause = Session-Context-Not-Found`).
    pub attrs: Attrs,
    /// radclient's whole output (stdout then stderr), for messages.
    pub output: String,
}

impl RadclientReply {
    /// Parses `radclient -x` / `radtest` output.
    pub fn parse(output: &str) -> RadclientReply {
        let mut code = None;
        let mut attrs = Vec::new();
        let mut lines = output.lines();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("Received ") {
                code = rest.split_whitespace().next().map(str::to_owned);
                for l in lines.by_ref() {
                    let Some(l) = l.strip_prefix('\t') else {
                        break;
                    };
                    if let Some(kv) = attr_line(l) {
                        attrs.push(kv);
                    }
                }
                break;
            }
        }
        RadclientReply {
            code,
            attrs: Attrs(attrs),
            output: output.to_owned(),
        }
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.get(name)
    }
    /// Whether the answer was `code` (e.g. `Access-Accept`).
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
    /// No answer in time.
    pub fn timed_out(&self) -> bool {
        self.code.is_none()
    }
}

/// Runs `radclient -x -t TIMEOUT -r 1 SERVER COMMAND SECRET` in namespace `ns` with
/// `attrs` as its input (one attempt, no retransmission). `server` is `ADDR` or
/// `ADDR:PORT`; `command` is `auth`, `acct`, `status`, `coa` or `disconnect`. Values are
/// quoted when needed; give `("Message-Authenticator", "0x00")` to have one computed,
/// `("Packet-Src-IP-Address", ADDR)` to send from a given local address.
pub fn radclient(
    ns: &str,
    server: &str,
    command: &str,
    secret: &str,
    attrs: &[(&str, &str)],
    timeout: Duration,
) -> RadclientReply {
    let input: String = attrs
        .iter()
        .map(|(a, v)| {
            check_name(a);
            format!("{a} = {}\n", quote(v))
        })
        .collect();
    let t = format!("{}", timeout.as_secs_f64());
    let mut c = netns::exec(
        ns,
        &[
            "radclient",
            "-x",
            "-t",
            &t,
            "-r",
            "1",
            server,
            command,
            secret,
        ],
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&c)));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write radclient input");
    let out = child.wait_with_output().expect("wait radclient");
    RadclientReply::parse(&cmd::combined(&out))
}

/// Which dynamic-authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynAuth {
    Coa,
    Disconnect,
}

/// Sends a CoA-Request or Disconnect-Request the way ISE does: from `from` (a RADIUS
/// server's address in the inside namespace; added to its `eth0` if missing) to the
/// headend's 198.18.1.1:1700 with the lab secret, with a Message-Authenticator added
/// unless `attrs` has one. Typical attributes: `Acct-Session-Id`, `Cisco-AVPair`
/// `audit-session-id=…`, `Framed-IP-Address`, `Cisco-AVPair`
/// `cts:security-group-tag=000b-00`.
pub fn dynauth(lab: &Lab, from: Ipv4Addr, kind: DynAuth, attrs: &[(&str, &str)]) -> RadclientReply {
    ensure_inside_addr(lab, from);
    let secret = lab_secret(lab);
    send_dynauth(lab.inside_ns(), from, &secret, kind, attrs)
}

/// [`dynauth`] CoA-Request from [`RADIUS_PRIMARY`].
pub fn coa(lab: &Lab, attrs: &[(&str, &str)]) -> RadclientReply {
    dynauth(lab, RADIUS_PRIMARY, DynAuth::Coa, attrs)
}

/// [`dynauth`] Disconnect-Request from [`RADIUS_PRIMARY`].
pub fn disconnect(lab: &Lab, attrs: &[(&str, &str)]) -> RadclientReply {
    dynauth(lab, RADIUS_PRIMARY, DynAuth::Disconnect, attrs)
}

fn send_dynauth(
    ns: &str,
    from: Ipv4Addr,
    secret: &str,
    kind: DynAuth,
    attrs: &[(&str, &str)],
) -> RadclientReply {
    let from = from.to_string();
    let mut all: Vec<(&str, &str)> = attrs.to_vec();
    if !attrs.iter().any(|(a, _)| *a == "Message-Authenticator") {
        all.push(("Message-Authenticator", "0x00"));
    }
    all.push(("Packet-Src-IP-Address", &from));
    let command = match kind {
        DynAuth::Coa => "coa",
        DynAuth::Disconnect => "disconnect",
    };
    radclient(
        ns,
        &format!("{INSIDE_GW}:{DYNAUTH_PORT}"),
        command,
        secret,
        &all,
        RADCLIENT_TIMEOUT,
    )
}

/// Adds `addr/24` to the inside namespace's `eth0` unless it is there.
pub fn ensure_inside_addr(lab: &Lab, addr: Ipv4Addr) {
    let ns = lab.inside_ns();
    let have = cmd::must(&mut cmd::command(
        "ip",
        &["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"],
    ));
    let needle = format!("inet {addr}/");
    if !have.contains(&needle) {
        cmd::must(&mut cmd::command(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ],
        ));
    }
}

/// One `freeradius -X` of the lab. Dropping it stops it.
pub struct RadiusServer {
    ns: String,
    addr: Ipv4Addr,
    secret: String,
    raddb: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl RadiusServer {
    /// Starts FreeRADIUS in `lab`'s inside namespace on `addr` (e.g. [`RADIUS_PRIMARY`])
    /// UDP 1812/1813, for the headend (198.18.1.1) with `secret` (normally
    /// [`lab_secret`]), with the lab users plus `users` (first). Waits until it is ready.
    /// `None` (reason printed) when FreeRADIUS is not installed, unless `E2E_REQUIRED=1`.
    pub fn start(
        lab: &Lab,
        addr: Ipv4Addr,
        secret: &str,
        users: &[RadiusUser],
    ) -> Option<RadiusServer> {
        if skip() {
            return None;
        }
        ensure_inside_addr(lab, addr);
        let extra: String = users.iter().map(RadiusUser::render).collect();
        let vars = [
            ("ADDR", addr.to_string()),
            ("CLIENT", INSIDE_GW.to_string()),
            ("SECRET", secret.to_owned()),
            ("ALICE_PASSWORD", lab.password("alice").to_owned()),
            ("BOB_PASSWORD", lab.password("bob").to_owned()),
            ("EXTRA_USERS", extra),
        ];
        let raddb = lab.dir().join(format!("radius-{addr}"));
        let log_path = lab.dir().join(format!("radius-{addr}.log"));
        render(&raddb, "site-auth.conf", &vars, secret);
        let mut server = RadiusServer {
            ns: lab.inside_ns().to_owned(),
            addr,
            secret: secret.to_owned(),
            raddb,
            log_path,
            child: None,
        };
        server.spawn();
        Some(server)
    }

    /// A stand-in for the headend's dynamic-authorization port, to test the CoA /
    /// Disconnect sender without a headend (never together with one: both want
    /// 198.18.1.1:1700): FreeRADIUS in the headend namespace answering ACK to requests
    /// whose Acct-Session-Id is `live_session` and NAK (Error-Cause =
    /// Session-Context-Not-Found) to others, from clients 198.18.1.0/24 with the lab
    /// secret. What it received: [`RadiusServer::received`], [`RadiusServer::accounting_records`].
    pub fn start_dynauth_standin(lab: &Lab, live_session: &str) -> Option<RadiusServer> {
        if skip() {
            return None;
        }
        let secret = lab_secret(lab);
        assert!(
            !live_session.contains(['"', '\\', '\n']),
            "session id {live_session:?}"
        );
        let vars = [
            ("ADDR", INSIDE_GW.to_string()),
            ("COA_PORT", DYNAUTH_PORT.to_string()),
            ("LIVE_SESSION", live_session.to_owned()),
            ("CLIENT", "198.18.1.0/24".to_owned()),
            ("SECRET", secret.clone()),
            ("ALICE_PASSWORD", lab.password("alice").to_owned()),
            ("BOB_PASSWORD", lab.password("bob").to_owned()),
            ("EXTRA_USERS", String::new()),
        ];
        let raddb = lab.dir().join(format!("radius-dynauth-{INSIDE_GW}"));
        let log_path = lab.dir().join(format!("radius-dynauth-{INSIDE_GW}.log"));
        render(&raddb, "site-coa.conf", &vars, &secret);
        let mut server = RadiusServer {
            ns: lab.gw_ns().to_owned(),
            addr: INSIDE_GW,
            secret,
            raddb,
            log_path,
            child: None,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "FreeRADIUS on {} already runs",
            self.addr
        );
        let mark = fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path.display()));
        set_mode(&self.log_path, 0o600);
        let mut command = netns::exec(&self.ns, &["freeradius", "-X", "-d"]);
        command
            .arg(&self.raddb)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        self.child = Some(child);
        let ready = wait_until(HANG_GUARD, || {
            if let Some(status) = self.exit_status() {
                panic!(
                    "FreeRADIUS on {} exited ({status}) during startup; log:\n{}",
                    self.addr,
                    tail(&self.log_since(mark), 60)
                );
            }
            self.log_since(mark)
                .contains("Ready to process requests")
                .then_some(())
        });
        if ready.is_none() {
            let text = self.log_since(mark);
            self.stop();
            panic!(
                "FreeRADIUS on {} not ready after {HANG_GUARD:?}; log:\n{}",
                self.addr,
                tail(&text, 60)
            );
        }
    }

    /// Its address (198.18.1.20 …).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn secret(&self) -> &str {
        &self.secret
    }
    /// The rendered raddb directory (`LABDIR/radius-ADDR/`).
    pub fn raddb(&self) -> &Path {
        &self.raddb
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn detail_path(&self) -> PathBuf {
        self.raddb.join("detail")
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once it has exited; `None` while it runs or after [`stop`](Self::stop).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("waitpid freeradius"))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exit_status().is_none()
    }

    /// Stops it (SIGTERM, SIGKILL after 5 s). Its address stays, so requests to it get
    /// ICMP port unreachable: "RADIUS service down". Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: plain syscalls; the child is not reaped yet, so the pid is ours.
            // SIGCONT first in case it was paused.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if let Some(status) = wait_until(Duration::from_secs(5), || child.try_wait().ok().flatten())
        {
            return Some(status);
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Starts it again after [`stop`](Self::stop), with the same raddb (same users,
    /// detail file kept, log appended).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGSTOP: it keeps its socket but answers nothing and no ICMP comes back, like a
    /// hung or unreachable server (requests queue in the socket; after
    /// [`resume`](Self::resume) it may still answer them, late).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let child = self.child.as_ref().expect("FreeRADIUS is not running");
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: plain syscall on our own unreaped child.
        unsafe { libc::kill(pid, sig) };
    }

    /// Everything it logged so far (`-X`: each packet received and sent with all its
    /// attributes, and how it was processed).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Length of the log now: a mark for [`log_since`](Self::log_since).
    pub fn log_mark(&self) -> u64 {
        fs::metadata(&self.log_path).map_or(0, |m| m.len())
    }

    /// The log after `mark` (from [`log_mark`](Self::log_mark)).
    pub fn log_since(&self, mark: u64) -> String {
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(mark).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// Waits until the log contains `pattern` (a plain substring); returns the log.
    /// `timeout` is a hang guard: panics with the log's tail when it passes.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> String {
        let mut last = String::new();
        wait_until(timeout, || {
            last = self.log();
            last.contains(pattern).then(|| last.clone())
        })
        .unwrap_or_else(|| {
            panic!(
                "FreeRADIUS on {}: no {pattern:?} in its log after {timeout:?}; log tail:\n{}",
                self.addr,
                tail(&last, 60)
            )
        })
    }

    /// Every packet it received so far, in order, with all attributes as logged by `-X`
    /// (Message-Authenticator included when present: a request without one is not
    /// listed, FreeRADIUS drops it before logging).
    pub fn received(&self) -> Vec<LoggedPacket> {
        parse_received(&self.log())
    }

    /// Waits (hang guard [`HANG_GUARD`]) until it has received a `kind` packet (e.g.
    /// `Access-Request`) with `User-Name = user`; returns the latest such packet.
    pub fn wait_for_request(&self, kind: &str, user: &str) -> LoggedPacket {
        wait_until(HANG_GUARD, || {
            self.received()
                .into_iter()
                .rev()
                .find(|p| p.kind == kind && p.get("User-Name") == Some(user))
        })
        .unwrap_or_else(|| {
            panic!(
                "FreeRADIUS on {}: no {kind} for {user} after {HANG_GUARD:?}; log tail:\n{}",
                self.addr,
                tail(&self.log(), 60)
            )
        })
    }

    /// Waits (hang guard [`HANG_GUARD`]) until it has received a packet for which
    /// `pred` holds; returns the latest such packet. `what` names it in the panic.
    pub fn wait_for_packet(
        &self,
        what: &str,
        pred: impl Fn(&LoggedPacket) -> bool,
    ) -> LoggedPacket {
        wait_until(HANG_GUARD, || self.received().into_iter().rev().find(&pred)).unwrap_or_else(
            || {
                panic!(
                    "FreeRADIUS on {}: no {what} after {HANG_GUARD:?}; log tail:\n{}",
                    self.addr,
                    tail(&self.log(), 60)
                )
            },
        )
    }

    /// The accounting packets it recorded (its detail file), in order: one map per
    /// packet, attribute name to value (see [`Attrs`]; repeated attributes such as
    /// Cisco-AVPair joined with `\n`). E.g. `Acct-Status-Type = Start`, `Class =
    /// OU=GP-EMPLOYEES;`, `Acct-Session-Id`, `Acct-Input-Octets`, `Timestamp`.
    pub fn accounting_records(&self) -> Vec<HashMap<String, String>> {
        self.accounting_packets()
            .iter()
            .map(Attrs::to_map)
            .collect()
    }

    /// [`accounting_records`](Self::accounting_records) with every attribute in order.
    pub fn accounting_packets(&self) -> Vec<Attrs> {
        parse_detail(&fs::read_to_string(self.detail_path()).unwrap_or_default())
    }

    /// Waits (hang guard) until `pred` holds for the accounting records; returns them.
    pub fn wait_accounting(
        &self,
        what: &str,
        pred: impl Fn(&[HashMap<String, String>]) -> bool,
    ) -> Vec<HashMap<String, String>> {
        wait_until(HANG_GUARD, || {
            let r = self.accounting_records();
            pred(&r).then_some(r)
        })
        .unwrap_or_else(|| {
            panic!(
                "FreeRADIUS on {}: accounting not {what} after {HANG_GUARD:?}: {:#?}",
                self.addr,
                self.accounting_records()
            )
        })
    }

    /// A CoA-Request from this server (as ISE sends it) to the headend's
    /// 198.18.1.1:1700; see [`dynauth`].
    pub fn coa(&self, attrs: &[(&str, &str)]) -> RadclientReply {
        send_dynauth(&self.ns, self.addr, &self.secret, DynAuth::Coa, attrs)
    }

    /// A Disconnect-Request from this server to the headend's 198.18.1.1:1700.
    pub fn disconnect(&self, attrs: &[(&str, &str)]) -> RadclientReply {
        send_dynauth(
            &self.ns,
            self.addr,
            &self.secret,
            DynAuth::Disconnect,
            attrs,
        )
    }
}

impl Drop for RadiusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn skip() -> bool {
    let Some(reason) = unavailable_reason() else {
        return false;
    };
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    assert!(
        !required(),
        "E2E_REQUIRED=1 but the end-to-end test {test} cannot run: {reason}"
    );
    eprintln!("SKIP {test}: {reason}");
    true
}

/// Renders the templates of `netns/freeradius/` into `raddb` (fresh, 0700, files 0600),
/// with `site` as `site.conf`; `@NAME@` placeholders from `vars`, all of them required.
fn render(raddb: &Path, site: &str, vars: &[(&str, String)], secret: &str) {
    assert!(
        !secret.is_empty()
            && secret.len() <= 128
            && secret
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'),
        "RADIUS secret must be 1-128 printable ASCII characters without quotes or \
         backslashes, no spaces"
    );
    let templates = workspace_root().join("netns/freeradius");
    if raddb.exists() {
        fs::remove_dir_all(raddb).unwrap_or_else(|e| panic!("rm {}: {e}", raddb.display()));
    }
    fs::create_dir_all(raddb).unwrap_or_else(|e| panic!("mkdir {}: {e}", raddb.display()));
    set_mode(raddb, 0o700);
    for (from, to) in [
        ("radiusd.conf", "radiusd.conf"),
        ("clients.conf", "clients.conf"),
        ("users", "users"),
        ("attrs.access_reject", "attrs.access_reject"),
        (site, "site.conf"),
    ] {
        let path = templates.join(from);
        let mut text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        text = text.replace("@RADDB@", &raddb.display().to_string());
        for (name, value) in vars {
            text = text.replace(&format!("@{name}@"), value);
        }
        if let Some(left) = placeholder(&text) {
            panic!("{}: placeholder {left} has no value", path.display());
        }
        let out = raddb.join(to);
        let mut f = File::create(&out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
        set_mode(&out, 0o600);
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    }
}

/// The first `@NAME@` (capitals, digits, `_`) left in `text`.
fn placeholder(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find('@') {
        let start = i + off;
        let mut j = start + 1;
        while j < bytes.len()
            && (bytes[j].is_ascii_uppercase() || bytes[j].is_ascii_digit() || bytes[j] == b'_')
        {
            j += 1;
        }
        if j > start + 1 && j < bytes.len() && bytes[j] == b'@' {
            return Some(&text[start..=j]);
        }
        i = start + 1;
    }
    None
}

/// A value in FreeRADIUS syntax: bare when it is a plain word (`Authorize-Only`,
/// `198.18.100.10`, `0x00`, `3600`), else double-quoted.
fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))
    {
        v.to_owned()
    } else {
        assert!(!v.contains('\n'), "newline in RADIUS value {v:?}");
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn check_name(name: &str) {
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
        "bad RADIUS attribute or user name {name:?}"
    );
}

/// `Name = value` (as FreeRADIUS prints it) to (name, decoded value).
fn attr_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let (name, op_value) = line.split_once(' ')?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return None;
    }
    // radclient prints `=`; FreeRADIUS may print `:=` / `+=` for reply items.
    let value = op_value
        .strip_prefix("= ")
        .or_else(|| op_value.strip_prefix(":= "))
        .or_else(|| op_value.strip_prefix("+= "))?;
    Some((name.to_owned(), decode_value(value)))
}

fn decode_value(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    if let Some(hex) = v.strip_prefix("0x")
        && !hex.is_empty()
        && hex.len() % 2 == 0
        && let Some(bytes) = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()
        && bytes.iter().all(|b| (0x20..0x7f).contains(b))
    {
        return String::from_utf8(bytes).expect("ASCII");
    }
    v.to_owned()
}

/// Packets in a `-X` log: `(N) Received KIND Id I from A to B length L` followed by
/// `(N)   Name = value` lines.
fn parse_received(log: &str) -> Vec<LoggedPacket> {
    let mut packets = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((num, rest)) = line
            .strip_prefix('(')
            .and_then(|l| l.split_once(") Received "))
        else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let (Some(kind), Some(from)) = (words.first(), words.get(4)) else {
            continue;
        };
        let prefix = format!("({num})   ");
        let mut attrs = Vec::new();
        while let Some(next) = lines.peek() {
            let Some(kv) = next.strip_prefix(&prefix).and_then(attr_line) else {
                break;
            };
            attrs.push(kv);
            lines.next();
        }
        packets.push(LoggedPacket {
            kind: (*kind).to_owned(),
            from: (*from).to_owned(),
            attrs: Attrs(attrs),
        });
    }
    packets
}

/// Records of a detail file: a header line (the date), then `\tName = value` lines,
/// then a blank line.
fn parse_detail(text: &str) -> Vec<Attrs> {
    let mut records = Vec::new();
    let mut current: Option<Vec<(String, String)>> = None;
    for line in text.lines() {
        if let Some(attr) = line.strip_prefix('\t') {
            if let (Some(rec), Some(kv)) = (current.as_mut(), attr_line(attr)) {
                rec.push(kv);
            }
        } else if line.trim().is_empty() {
            records.extend(current.take().map(Attrs));
        } else {
            records.extend(current.take().map(Attrs));
            current = Some(Vec::new());
        }
    }
    records.extend(current.map(Attrs));
    records
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A lab whose headend uses the FreeRADIUS servers. Fields drop in order: the servers
/// stop before the lab removes the namespaces.
pub struct RadiusLab {
    pub primary: RadiusServer,
    pub secondary: Option<RadiusServer>,
    pub lab: Lab,
    tunnel_group: &'static str,
}

/// What [`RadiusLab::start`] builds.
pub struct RadiusSetup {
    pub clients: usize,
    /// Also start FreeRADIUS on 198.18.1.21 (the config always names both hosts).
    pub secondary: bool,
    /// `timeout` and `retry-interval` of both `aaa-server ISE` hosts.
    pub timing: (u32, u32),
    /// Appended to the headend config after the `aaa-server ISE` lines (ACLs, group
    /// policies, the tunnel group using ISE).
    pub config: String,
    /// Tunnel group the clients log in to.
    pub tunnel_group: &'static str,
    /// Extra users of both FreeRADIUS servers (before the lab's).
    pub users: Vec<RadiusUser>,
    /// Start the headend as root with `--user NAME` ([`Lab::start_headend_as`]).
    pub run_as: Option<&'static str>,
    /// More arguments to `headend run`.
    pub headend_args: Vec<&'static str>,
}

impl Default for RadiusSetup {
    fn default() -> Self {
        RadiusSetup {
            clients: 1,
            secondary: false,
            timing: (5, 2),
            config: String::new(),
            tunnel_group: "RADIUS-PW",
            users: Vec::new(),
            run_as: None,
            headend_args: Vec::new(),
        }
    }
}

impl RadiusLab {
    /// `None` = skipped (reason printed; a failure with `E2E_REQUIRED=1`).
    pub fn start(setup: RadiusSetup) -> Option<RadiusLab> {
        let lab = Lab::with_clients(setup.clients)?;
        let secret = lab_secret(&lab);
        let primary = RadiusServer::start(&lab, RADIUS_PRIMARY, &secret, &setup.users)?;
        let secondary = if setup.secondary {
            Some(RadiusServer::start(
                &lab,
                RADIUS_SECONDARY,
                &secret,
                &setup.users,
            )?)
        } else {
            None
        };
        let (timeout, retry) = setup.timing;
        append_headend_config(
            &lab,
            &format!(
                "{}!\n{}",
                asa_config_timed(&secret, timeout, retry),
                setup.config
            ),
        );
        match setup.run_as {
            Some(user) => lab.start_headend_as(user, &setup.headend_args),
            None => lab.start_headend_with(&setup.headend_args),
        }
        Some(RadiusLab {
            primary,
            secondary,
            lab,
            tunnel_group: setup.tunnel_group,
        })
    }

    pub fn secondary(&self) -> &RadiusServer {
        self.secondary.as_ref().expect("secondary server started")
    }

    /// Starts openconnect for `user` on the RADIUS tunnel group from client `host`.
    pub fn spawn(&self, host: usize, user: &str, password: &str) -> Client {
        // lab.rs passes `--authgroup LOCAL-PW`; openconnect keeps the last one.
        self.lab
            .spawn_client(host, user, password, &["--authgroup", self.tunnel_group])
    }

    /// Logs `user` in with its lab password and waits for the tunnel.
    pub fn login(&self, host: usize, user: &str) -> Client {
        let mut client = self.spawn(host, user, self.lab.password(user));
        if let Err(e) = client.wait_connected(HANG_GUARD) {
            panic!(
                "{e}\n--- headend log ---\n{}",
                tail(&self.lab.headend_log(), 60)
            );
        }
        client
    }

    /// A login that must fail: openconnect exits unsuccessfully without a tunnel;
    /// returns its output.
    pub fn failed_login(&self, host: usize, user: &str, password: &str) -> String {
        let mut client = self.spawn(host, user, password);
        let status = client.wait_exit(HANG_GUARD).unwrap_or_else(|| {
            panic!(
                "openconnect ({user}) still running after {HANG_GUARD:?}:\n{}\n--- headend log ---\n{}",
                client.output(),
                tail(&self.lab.headend_log(), 60)
            )
        });
        let output = client.output();
        assert!(
            !status.success(),
            "openconnect ({user}) succeeded:\n{output}"
        );
        assert_eq!(client.tun_addr(), None, "a tunnel address for {user}");
        output
    }

    pub fn session(&self, user: &str) -> Session {
        let raw = self.lab.show_sessions_raw();
        crate::sessiondb::session_of(&crate::sessiondb::parse(&raw), user)
            .unwrap_or_else(|| panic!("no session for {user}:\n{raw}"))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_radclient_output() {
        let out = "Sent Access-Request Id 78 from 0.0.0.0:49247 to 198.18.1.20:1812 length 104\n\
                   \tUser-Name = \"alice\"\n\
                   \tService-Type = Authorize-Only\n\
                   Received Access-Accept Id 78 from 198.18.1.20:1812 to 198.18.1.1:49247 length 88\n\
                   \tClass = 0x4f553d47502d454d504c4f594545533b\n\
                   \tCisco-AVPair = \"cts:security-group-tag=000a-00\"\n\
                   \tFilter-Id = \"VPN-FILTER\"\n";
        let r = RadclientReply::parse(out);
        assert!(r.is("Access-Accept"));
        assert_eq!(r.get("Class"), Some("OU=GP-EMPLOYEES;"));
        assert_eq!(
            r.get("Cisco-AVPair"),
            Some("cts:security-group-tag=000a-00")
        );
        assert_eq!(r.get("Filter-Id"), Some("VPN-FILTER"));
        assert_eq!(r.get("User-Name"), None);

        let nak = RadclientReply::parse(
            "Received Disconnect-NAK Id 139 from 198.18.1.1:1700 to 198.18.1.20:53516 length 26\n\
             \tError-Cause = Session-Context-Not-Found\n",
        );
        assert!(nak.is("Disconnect-NAK"));
        assert_eq!(nak.get("Error-Cause"), Some("Session-Context-Not-Found"));

        let none = RadclientReply::parse(
            "Sent CoA-Request Id 1 from 0.0.0.0:1 to 198.18.1.1:1700 length 20\n\
             (0) No reply from server for ID 1 socket 3\n",
        );
        assert!(none.timed_out());
    }

    #[test]
    fn parses_debug_log_and_detail() {
        let log = "Ready to process requests\n\
                   (3) Received Access-Request Id 5 from 198.18.1.1:4000 to 198.18.1.20:1812 length 75\n\
                   (3)   User-Name = \"alice\"\n\
                   (3)   Service-Type = Authorize-Only\n\
                   (3)   Cisco-AVPair = \"audit-session-id=ab\"\n\
                   (3)   Cisco-AVPair = \"coa-push=true\"\n\
                   (3) # Executing section authorize from file x\n\
                   (3)   authorize {\n\
                   (3) Sent Access-Accept Id 5 from 198.18.1.20:1812 to 198.18.1.1:4000 length 20\n";
        let p = parse_received(log);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, "Access-Request");
        assert_eq!(p[0].from, "198.18.1.1:4000");
        assert_eq!(p[0].get("Service-Type"), Some("Authorize-Only"));
        assert_eq!(
            p[0].attrs.all("Cisco-AVPair"),
            ["audit-session-id=ab", "coa-push=true"]
        );

        let detail = "Mon Nov 23 09:16:04 2026\n\
                      \tAcct-Status-Type = Start\n\
                      \tClass = 0x4f553d47502d454d504c4f594545533b\n\
                      \tCisco-AVPair = \"a=1\"\n\
                      \tCisco-AVPair = \"b=2\"\n\
                      \n\
                      Mon Nov 23 09:16:05 2026\n\
                      \tAcct-Status-Type = Stop\n\
                      \tAcct-Input-Octets = 1234\n";
        let r: Vec<HashMap<String, String>> =
            parse_detail(detail).iter().map(Attrs::to_map).collect();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["Acct-Status-Type"], "Start");
        assert_eq!(r[0]["Class"], "OU=GP-EMPLOYEES;");
        assert_eq!(r[0]["Cisco-AVPair"], "a=1\nb=2");
        assert_eq!(r[1]["Acct-Input-Octets"], "1234");
    }

    #[test]
    fn users_and_values() {
        let u = RadiusUser::new("dave")
            .password("pw d\"x")
            .reply("Class", "OU=GP-X;")
            .reply("Session-Timeout", "3600");
        assert_eq!(
            u.render(),
            "dave\tCleartext-Password := \"pw d\\\"x\"\n\
             \tClass += \"OU=GP-X;\",\n\
             \tSession-Timeout += 3600\n\n"
        );
        let acl = RadiusUser::downloadable_acl("#ACSACL#-IP-WEB-1", &["permit ip any any"]);
        assert_eq!(
            acl.render(),
            "\"#ACSACL#-IP-WEB-1\"\tAuth-Type := Accept\n\
             \tCisco-AVPair += \"ip:inacl#1=permit ip any any\"\n\n"
        );
        assert_eq!(quote("0x00"), "0x00");
        assert_eq!(quote("audit-session-id=1"), "\"audit-session-id=1\"");
        assert_eq!(placeholder("a @B_1@ c"), Some("@B_1@"));
        assert_eq!(placeholder("user@example.com"), None);
        assert_eq!(decode_value("0x0102"), "0x0102");
    }

    #[test]
    fn asa_config_names_both_hosts() {
        let c = asa_config("s3cret");
        assert!(c.contains("aaa-server ISE (inside) host 198.18.1.20\n key s3cret\n"));
        assert!(c.contains("aaa-server ISE (inside) host 198.18.1.21\n key s3cret\n"));
        assert!(c.contains(" timeout 5\n retry-interval 2\n"));
        let quick = asa_config_timed("s3cret", 2, 1);
        assert_eq!(quick.matches(" timeout 2\n retry-interval 1\n").count(), 2);
    }
}

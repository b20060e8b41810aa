//! The lab's SAML identity provider: SimpleSAMLphp 1.19 from Debian, served by
//! `php -S` in its own namespace on the outside bridge, so the client's "external
//! browser" (`netns/sso-browser.sh`) reaches it before any tunnel exists, while the
//! client still has no route to the inside network:
//!
//! ```text
//! vpnc-ID  eth0 198.18.0.2/24  ──veth── c1  ┐
//! idp-ID   eth0 198.18.0.30/24 ──veth── idp ┴ bridge "outside" 198.18.0.1/24  vpngw-ID
//!          php -S 198.18.0.30:8080, docroot DIR/docroot with simplesaml -> /usr/share/simplesamlphp/www
//! ```
//!
//! Its config is `netns/saml/*.php` copied into `LABDIR/idp/config/` with a `lab.json`
//! holding this lab's values (users, tunnel groups, base URL, salt); the signing key is a
//! per-lab RSA 2048 key made with openssl (signatures RSA-SHA256, digests SHA-256).
//! Everything it logs (php -S access lines and SimpleSAMLphp's DEBUG log, which includes
//! every SAML message it sends) goes to `LABDIR/idp.log`, dumped by [`Lab`] when a
//! test panics.
//!
//! The headend's side of the contract (ASA conventions, per SAML tunnel group TG):
//! SP entity ID [`sp_entity_id`] `https://198.18.0.1/saml/sp/metadata/TG`, ACS
//! [`acs_url`] `https://198.18.0.1/+CSCOE+/saml/sp/acs?tgname=TG` (HTTP-POST), and
//! [`Idp::asa_config_block`] for the config lines that trust this IdP.

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::lab::{self, HANG_GUARD, Lab, OUTSIDE_IP};
use crate::{cmd, netns, wait_until};

/// The IdP's address on the outside bridge.
pub const IDP_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 30);
/// Its plain-HTTP port.
pub const IDP_PORT: u16 = 8080;
/// The trustpoint that holds the IdP's signing certificate in [`Idp::asa_config_block`].
pub const IDP_TRUSTPOINT: &str = "LAB-IDP";
/// Where Debian installs SimpleSAMLphp's web root (1.x: `www`, not `public`).
pub const SIMPLESAMLPHP_WWW: &str = "/usr/share/simplesamlphp/www";
/// The veth port of the IdP on the headend namespace's outside bridge.
const BRIDGE_PORT: &str = "idp";

/// Why the IdP cannot run here, if it cannot (besides what [`lab::unavailable_reason`]
/// checks).
pub fn unavailable_reason() -> Option<String> {
    if let Some(reason) = lab::unavailable_reason() {
        return Some(reason);
    }
    if !cmd::in_path("php") {
        return Some("`php` not found (run netns/install-deps.sh)".into());
    }
    if !Path::new(SIMPLESAMLPHP_WWW)
        .join("saml2/idp/SSOService.php")
        .is_file()
    {
        return Some(format!(
            "SimpleSAMLphp not installed ({SIMPLESAMLPHP_WWW} missing; run netns/install-deps.sh)"
        ));
    }
    None
}

/// True when the IdP can run; otherwise prints `SKIP test: reason` and returns false, or
/// panics under `E2E_REQUIRED=1` (like [`Lab::new`]).
pub fn available() -> bool {
    let Some(reason) = unavailable_reason() else {
        return true;
    };
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    if lab::required() {
        panic!("E2E_REQUIRED=1 but the end-to-end test {test} cannot run: {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

/// The headend's SP entity ID for tunnel group `tg` (ASA: `https://<base-url>/saml/sp/metadata/<TG>`).
pub fn sp_entity_id(tg: &str) -> String {
    format!("https://{OUTSIDE_IP}/saml/sp/metadata/{tg}")
}

/// The headend's assertion consumer service for tunnel group `tg` (HTTP-POST).
pub fn acs_url(tg: &str) -> String {
    format!("https://{OUTSIDE_IP}/+CSCOE+/saml/sp/acs?tgname={tg}")
}

/// The headend's single logout endpoint (ASA: `https://<base-url>/+CSCOE+/saml/sp/logout`).
pub fn sp_logout_url() -> String {
    format!("https://{OUTSIDE_IP}/+CSCOE+/saml/sp/logout")
}

/// The NameID (and `email` attribute) the IdP asserts for `user`.
pub fn email_of(user: &str) -> String {
    format!("{user}@corp.example")
}

/// The `memberOf` values the IdP asserts for `user`: everyone is in `vpn-users`; alice
/// also in `engineering`, bob also in `sales`.
pub fn groups_of(user: &str) -> Vec<String> {
    let mut groups = vec!["vpn-users".to_owned()];
    match user {
        "alice" => groups.push("engineering".into()),
        "bob" => groups.push("sales".into()),
        _ => {}
    }
    groups
}

/// Optional behaviour of [`Idp::start_with`].
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    /// Tunnel groups whose whole Response is signed too. The Assertion is always signed;
    /// by default only the Assertion is (Entra ID's default, the harder case for the SP).
    pub sign_response_for: Vec<String>,
}

/// A running lab IdP. Dropping it stops php and removes its namespace.
pub struct Idp {
    ns: String,
    dir: PathBuf,
    log_path: PathBuf,
    base_url: String,
    entity_id: String,
    cert_pem: String,
    child: Option<Child>,
}

impl Idp {
    /// Starts the IdP for `lab` with `users` (name, password) and one SP per SAML tunnel
    /// group in `sps`, and waits until the client namespace can fetch its metadata.
    /// Panics (with its log) when it does not come up; check [`available`] first.
    pub fn start(lab: &Lab, users: &[(&str, &str)], sps: &[&str]) -> Idp {
        Idp::start_with(lab, users, sps, &IdpOptions::default())
    }

    /// [`Idp::start`] with options.
    pub fn start_with(
        lab: &Lab,
        users: &[(&str, &str)],
        sps: &[&str],
        options: &IdpOptions,
    ) -> Idp {
        if let Some(reason) = unavailable_reason() {
            panic!("the lab IdP cannot run: {reason}");
        }
        sweep_stale();
        let ns = format!("idp-{}", lab.id());
        let dir = lab.dir().join("idp");
        let base_url = format!("http://{IDP_IP}:{IDP_PORT}/simplesaml/");
        let mut idp = Idp {
            entity_id: format!("{base_url}saml2/idp/metadata.php"),
            log_path: lab.dir().join("idp.log"),
            ns,
            dir,
            base_url,
            cert_pem: String::new(),
            child: None,
        };
        // On a panic from here on, Drop removes what was made.
        idp.build_network(lab);
        idp.render_config(users, sps, options);
        idp.spawn();
        idp.wait_ready(lab);
        idp
    }

    fn build_network(&self, lab: &Lab) {
        let (ns, gw) = (self.ns.as_str(), lab.gw_ns());
        netns::destroy(ns);
        netns::add(ns).unwrap_or_else(|e| panic!("{e}"));
        let ip = |args: &[&str]| cmd::must(&mut cmd::command("ip", args));
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            BRIDGE_PORT,
            "netns",
            gw,
        ]);
        ip(&["-n", gw, "link", "set", BRIDGE_PORT, "master", "outside"]);
        ip(&["-n", gw, "link", "set", BRIDGE_PORT, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{IDP_IP}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
    }

    fn render_config(&mut self, users: &[(&str, &str)], sps: &[&str], options: &IdpOptions) {
        let config = self.config_dir();
        for sub in ["log", "data", "tmp", "sessions", "docroot"] {
            fs::create_dir_all(self.dir.join(sub)).expect("mkdir idp state");
        }
        fs::create_dir_all(config.join("cert")).expect("mkdir idp config");
        std::os::unix::fs::symlink(SIMPLESAMLPHP_WWW, self.docroot().join("simplesaml"))
            .expect("symlink docroot/simplesaml");
        let templates = lab::workspace_root().join("netns/saml");
        for name in [
            "lab.php",
            "config.php",
            "authsources.php",
            "saml20-idp-hosted.php",
            "saml20-sp-remote.php",
        ] {
            fs::copy(templates.join(name), config.join(name))
                .unwrap_or_else(|e| panic!("copy {}/{name}: {e}", templates.display()));
        }

        // The signing key pair, RSA 2048, self-signed with SHA-256.
        cmd::must(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes"])
                .args(["-days", "30", "-subj", "/O=corp.example/CN=lab-idp"])
                .arg("-keyout")
                .arg(self.key_path())
                .arg("-out")
                .arg(self.cert_path()),
        );
        self.cert_pem = fs::read_to_string(self.cert_path()).expect("read idp cert");

        let users: Vec<serde_json::Value> = users
            .iter()
            .map(|(user, password)| {
                assert!(!user.contains(':'), "IdP user names cannot contain ':'");
                serde_json::json!({
                    "user": user,
                    "password": password,
                    "attributes": {
                        "uid": [user],
                        "email": [email_of(user)],
                        "displayName": [display_name(user)],
                        "memberOf": groups_of(user),
                    },
                })
            })
            .collect();
        let sps: Vec<serde_json::Value> = sps
            .iter()
            .map(|tg| {
                serde_json::json!({
                    "entity_id": sp_entity_id(tg),
                    "acs": acs_url(tg),
                    "slo": sp_logout_url(),
                    "sign_response": options.sign_response_for.iter().any(|t| t == tg),
                })
            })
            .collect();
        let settings = serde_json::json!({
            "base_url": self.base_url,
            "entity_id": self.entity_id,
            "dir": self.dir,
            "secret_salt": hex(&crate::probe::random_bytes(16)),
            "admin_password": hex(&crate::probe::random_bytes(12)),
            "users": users,
            "sps": sps,
        });
        let json = serde_json::to_string_pretty(&settings).expect("lab.json");
        fs::write(config.join("lab.json"), json).expect("write lab.json");
    }

    fn spawn(&mut self) {
        let log = File::create(&self.log_path).expect("create idp.log");
        let listen = format!("{IDP_IP}:{IDP_PORT}");
        let docroot = self.docroot();
        let mut command = netns::exec(&self.ns, &["php"]);
        command
            // The built-in server logs to stderr; keep PHP errors there too.
            .args(["-d", "display_errors=stderr", "-d", "log_errors=0"])
            .args(["-S", &listen, "-t"])
            .arg(&docroot)
            .env("SIMPLESAMLPHP_CONFIG_DIR", self.config_dir())
            // Several workers, so one slow request cannot stall the login of another.
            .env("PHP_CLI_SERVER_WORKERS", "4")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        self.child = Some(child);
    }

    fn wait_ready(&mut self, lab: &Lab) {
        let url = self.metadata_url();
        let mut last = String::new();
        let ready = wait_until(HANG_GUARD, || {
            if let Some(status) = self.exit_status() {
                panic!(
                    "the IdP (php -S) exited ({status}) during startup; log:\n{}",
                    self.log()
                );
            }
            let out = lab.exec_client(&["curl", "-sS", "--max-time", "5", "--noproxy", "*", &url]);
            last = cmd::combined(&out);
            (out.status.success() && last.contains(&self.entity_id)).then_some(())
        });
        if ready.is_none() {
            panic!(
                "the IdP did not serve {url} to {} after {HANG_GUARD:?}; last answer:\n{last}\nlog:\n{}",
                lab.client_ns(),
                self.log()
            );
        }
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("waitpid php"))
    }

    /// Its namespace (`idp-ID`).
    pub fn ns(&self) -> &str {
        &self.ns
    }
    /// `LABDIR/idp/`: config, key pair, sessions.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// SimpleSAMLphp's config dir (`SIMPLESAMLPHP_CONFIG_DIR`), also its metadata dir.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("config")
    }
    fn docroot(&self) -> PathBuf {
        self.dir.join("docroot")
    }
    /// `http://198.18.0.30:8080/simplesaml/`
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// The IdP entity ID, which is also its metadata URL:
    /// `http://198.18.0.30:8080/simplesaml/saml2/idp/metadata.php`.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }
    pub fn metadata_url(&self) -> String {
        self.entity_id.clone()
    }
    /// SingleSignOnService (HTTP-Redirect; SP-initiated with SAMLRequest, or
    /// IdP-initiated with `spentityid`): `.../simplesaml/saml2/idp/SSOService.php`.
    pub fn sso_url(&self) -> String {
        format!("{}saml2/idp/SSOService.php", self.base_url)
    }
    /// SingleLogoutService (HTTP-Redirect): `.../simplesaml/saml2/idp/SingleLogoutService.php`.
    pub fn slo_url(&self) -> String {
        format!("{}saml2/idp/SingleLogoutService.php", self.base_url)
    }
    /// The signing certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    pub fn cert_path(&self) -> PathBuf {
        self.config_dir().join("cert/idp.crt")
    }
    pub fn key_path(&self) -> PathBuf {
        self.config_dir().join("cert/idp.key")
    }
    /// The base64 lines of the certificate between the BEGIN/END lines (what
    /// `@IDP_SIGNING_CERT@` stands for in `shared/examples/seed-asa.cfg`).
    pub fn cert_body(&self) -> String {
        self.cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The headend config lines that trust this IdP, in the shape of
    /// `shared/examples/seed-asa.cfg`: the trustpoint with the signing certificate and
    /// the `webvpn` / `saml idp` block. `base_url` is the headend's own base URL, e.g.
    /// `https://198.18.0.1`. No `trustpoint sp` (the lab's TLS identity comes from
    /// `--tls-cert`, and AuthnRequests are unsigned: `no signature`). Each SAML tunnel
    /// group then needs [`Idp::asa_tunnel_group_block`] (or its `saml identity-provider`
    /// line).
    pub fn asa_config_block(&self, base_url: &str) -> String {
        let base_url = base_url.trim_end_matches('/');
        format!(
            "crypto ca trustpoint {tp}\n revocation-check none\n no id-usage\n no ca-check\n \
             enrollment terminal\ncrypto ca authenticate {tp}\n{pem}\nquit\n!\nwebvpn\n \
             saml idp {entity}\n  url sign-in {sso}\n  url sign-out {slo}\n  base-url {base_url}\n  \
             trustpoint idp {tp}\n  no signature\n  force re-authentication\n!\n",
            tp = IDP_TRUSTPOINT,
            pem = self.cert_pem.trim_end(),
            entity = self.entity_id,
            sso = self.sso_url(),
            slo = self.slo_url(),
        )
    }

    /// A SAML tunnel group in the shape of seed-asa.cfg's `company-vpn`, on the lab
    /// config's `VPN-POOL` and `group_policy`.
    /// With `saml external-browser enable` (ASA 9.17+), which stock openconnect needs.
    pub fn asa_tunnel_group_block(&self, tg: &str, group_policy: &str) -> String {
        format!(
            "tunnel-group {tg} type remote-access\ntunnel-group {tg} general-attributes\n \
             address-pool VPN-POOL\n default-group-policy {group_policy}\n\
             tunnel-group {tg} webvpn-attributes\n authentication saml\n group-alias {tg} enable\n \
             saml identity-provider {entity}\n saml external-browser enable\n!\n",
            entity = self.entity_id
        )
    }

    /// Everything the IdP logged so far (php -S and SimpleSAMLphp at DEBUG level,
    /// including each SAML message it sent).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// An SP-initiated login URL as the headend would redirect to (HTTP-Redirect
    /// binding, unsigned): `sso_url()?SAMLRequest=...&RelayState=...`.
    pub fn sp_initiated_url(&self, request: &AuthnRequest, relay_state: Option<&str>) -> String {
        let mut url = format!(
            "{}?SAMLRequest={}",
            self.sso_url(),
            url_encode(&redirect_encode(&request.xml(&self.sso_url())))
        );
        if let Some(relay) = relay_state {
            url.push_str("&RelayState=");
            url.push_str(&url_encode(relay));
        }
        url
    }

    /// An IdP-initiated (unsolicited) login for tunnel group `tg`: the Response has no
    /// InResponseTo, which the headend must refuse.
    pub fn idp_initiated_url(&self, tg: &str, relay_state: Option<&str>) -> String {
        let mut url = format!(
            "{}?spentityid={}",
            self.sso_url(),
            url_encode(&sp_entity_id(tg))
        );
        if let Some(relay) = relay_state {
            url.push_str("&RelayState=");
            url.push_str(&url_encode(relay));
        }
        url
    }

    /// An executable wrapper around `netns/sso-browser.sh` that logs in as `user`:
    /// pass it to openconnect as `--external-browser=PATH` (openconnect posix_spawns
    /// it with the login URL and its own environment). It logs to
    /// `LABDIR/sso-browser-USER.log` (dumped on panic), keeps the password in a
    /// 0600 file next to it, and records the browser's exit status for
    /// [`Idp::browser_exit`] (openconnect never reaps it, and waits forever on its
    /// listener when the browser fails).
    pub fn browser_for(&self, user: &str, password: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let safe = safe_name(user);
        let pw_file = self.dir.join(format!("sso-password-{safe}"));
        fs::write(&pw_file, format!("{password}\n")).expect("write sso password");
        fs::set_permissions(&pw_file, fs::Permissions::from_mode(0o600)).expect("chmod");
        let lab_dir = self.dir.parent().expect("idp dir has a parent");
        let path = self.dir.join(format!("sso-browser-{safe}.sh"));
        let status = self.browser_status_path(user);
        let _ = fs::remove_file(&status);
        let script = format!(
            "#!/bin/sh\nrm -f {status}\n\
             SSO_USER={user} SSO_PASSWORD_FILE={pw} SSO_LOG={log} /bin/bash {browser} \"$@\"\n\
             rc=$?\necho \"$rc\" >{status}.tmp && mv -f {status}.tmp {status}\nexit \"$rc\"\n",
            status = shell_quote(&status.to_string_lossy()),
            user = shell_quote(user),
            pw = shell_quote(&pw_file.to_string_lossy()),
            log = shell_quote(
                &lab_dir
                    .join(format!("sso-browser-{safe}.log"))
                    .to_string_lossy()
            ),
            browser = shell_quote(&sso_browser_path().to_string_lossy()),
        );
        fs::write(&path, script).expect("write browser wrapper");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
        path
    }

    /// Where the wrapper of [`Idp::browser_for`] writes the exit status of its last run.
    pub fn browser_status_path(&self, user: &str) -> PathBuf {
        self.dir
            .join(format!("sso-browser-{}.status", safe_name(user)))
    }

    /// The exit status of the last finished run of [`Idp::browser_for`]`(user)`'s
    /// wrapper (see `netns/sso-browser.sh`: 0 done, 2 credentials rejected, 3 HTTP
    /// error, ...); `None` while it runs or before it ran.
    pub fn browser_exit(&self, user: &str) -> Option<i32> {
        fs::read_to_string(self.browser_status_path(user))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The step log of [`Idp::browser_for`]`(user)`'s wrapper (`LABDIR/sso-browser-USER.log`).
    pub fn browser_log(&self, user: &str) -> String {
        let lab_dir = self.dir.parent().expect("idp dir has a parent");
        fs::read_to_string(lab_dir.join(format!("sso-browser-{}.log", safe_name(user))))
            .unwrap_or_default()
    }
}

/// `user` with everything but ASCII letters and digits replaced by `_`, for file names.
fn safe_name(user: &str) -> String {
    user.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: plain syscall; the child is not reaped yet, so the pid is ours.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            if wait_until(Duration::from_secs(3), || child.try_wait().ok().flatten()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Kills the php workers still there; the veth pair goes with the namespace.
        netns::destroy(&self.ns);
    }
}

/// `netns/sso-browser.sh`.
pub fn sso_browser_path() -> PathBuf {
    lab::workspace_root().join("netns/sso-browser.sh")
}

/// A SAML 2.0 AuthnRequest as the headend sends it for tunnel group `tg`.
#[derive(Debug, Clone)]
pub struct AuthnRequest {
    /// Its ID (an NCName: starts with a letter or `_`); the Response's InResponseTo.
    pub id: String,
    pub tg: String,
    /// `ForceAuthn="true"` (ASA: `force re-authentication`).
    pub force_authn: bool,
}

impl AuthnRequest {
    /// A request for `tg` with a random ID and ForceAuthn.
    pub fn new(tg: &str) -> AuthnRequest {
        AuthnRequest {
            id: format!("_{}", hex(&crate::probe::random_bytes(16))),
            tg: tg.to_owned(),
            force_authn: true,
        }
    }

    /// The XML, addressed to `destination` (the IdP's SSO URL).
    pub fn xml(&self, destination: &str) -> String {
        format!(
            "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
             xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" \
             IssueInstant=\"{now}\" Destination=\"{dest}\" ForceAuthn=\"{force}\" IsPassive=\"false\" \
             ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" \
             AssertionConsumerServiceURL=\"{acs}\">\
             <saml:Issuer>{issuer}</saml:Issuer>\
             <samlp:NameIDPolicy Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\" AllowCreate=\"true\"/>\
             </samlp:AuthnRequest>",
            id = self.id,
            now = xs_datetime(SystemTime::now()),
            dest = xml_escape(destination),
            force = self.force_authn,
            acs = xml_escape(&acs_url(&self.tg)),
            issuer = xml_escape(&sp_entity_id(&self.tg)),
        )
    }
}

/// The HTTP-Redirect binding's encoding of a SAML message: raw DEFLATE (RFC 1951), then
/// base64 (not yet URL-encoded). Uses stored (uncompressed) DEFLATE blocks, which every
/// inflater accepts, so no compression library is needed.
pub fn redirect_encode(xml: &str) -> String {
    let data = xml.as_bytes();
    let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / 0xffff + 1));
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = u16::try_from(chunk.len()).expect("chunk <= 65535");
        out.push(u8::from(last)); // BFINAL, BTYPE=00 (stored)
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    openssl::base64::encode_block(&out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `xs:dateTime` in UTC with seconds, as SAML wants: `2026-11-23T09:16:51Z`.
pub fn xs_datetime(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs();
    let days = i64::try_from(secs / 86_400).expect("days fit");
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn display_name(user: &str) -> String {
    let mut c = user.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes `idp-PID-N` namespaces whose test process is gone (killed before Drop ran).
/// [`Lab`]'s own sweep does not know this prefix. Once per process.
fn sweep_stale() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir("/run/netns") else {
            return;
        };
        for name in entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
        {
            if idp_ns_pid(&name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                netns::destroy(&name);
            }
        }
    });
}

/// The pid in a namespace name `idp-PID-N`.
fn idp_ns_pid(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix("idp-")?.split('-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<usize>().ok()?;
    parts.next().is_none().then_some(pid)
}

/// What one run of `netns/sso-browser.sh` did.
#[derive(Debug)]
pub struct BrowserRun {
    pub status: ExitStatus,
    /// Its step log (`SSO_LOG`).
    pub log: String,
    /// The SAMLResponse it got from the IdP, if it got that far (`SSO_SAML_OUT`).
    pub saml: Option<SamlCapture>,
}

/// The IdP's HTTP-POST to the ACS, as the browser saw it.
#[derive(Debug, Clone)]
pub struct SamlCapture {
    /// The form field as posted (base64).
    pub response_b64: String,
    /// Its decoded XML.
    pub xml: String,
    pub relay_state: Option<String>,
    /// The form's action.
    pub acs: String,
}

/// Runs `netns/sso-browser.sh URL` in namespace `ns` as `user`/`password`, with extra
/// environment `env` (e.g. `SSO_STOP_AT_ACS=1`); its files go to `work` (created).
pub fn run_browser(
    ns: &str,
    url: &str,
    user: &str,
    password: &str,
    env: &[(&str, &str)],
    work: &Path,
) -> BrowserRun {
    fs::create_dir_all(work).expect("mkdir browser work dir");
    let log = work.join("sso-browser.log");
    let saml_dir = work.join("saml");
    let _ = fs::remove_dir_all(&saml_dir);
    let _ = fs::remove_file(&log);
    let browser = sso_browser_path();
    let mut command = netns::exec(ns, &[Path::new("/bin/bash"), &browser, Path::new(url)]);
    command
        .env("SSO_USER", user)
        .env("SSO_PASSWORD", password)
        .env("SSO_LOG", &log)
        .env("SSO_SAML_OUT", &saml_dir)
        .envs(env.iter().copied());
    let out = cmd::output(&mut command).unwrap_or_else(|e| panic!("{e}"));
    let mut log_text = fs::read_to_string(&log).unwrap_or_default();
    let printed = cmd::combined(&out);
    if !printed.trim().is_empty() {
        log_text.push_str("--- sso-browser.sh stdout/stderr ---\n");
        log_text.push_str(&printed);
    }
    let saml = fs::read_to_string(saml_dir.join("SAMLResponse"))
        .ok()
        .map(|b64| {
            let der = openssl::base64::decode_block(b64.trim())
                .unwrap_or_else(|e| panic!("SAMLResponse is not base64: {e}"));
            SamlCapture {
                xml: String::from_utf8(der).expect("SAMLResponse XML is UTF-8"),
                response_b64: b64,
                relay_state: fs::read_to_string(saml_dir.join("RelayState")).ok(),
                acs: fs::read_to_string(saml_dir.join("acs")).unwrap_or_default(),
            }
        });
    BrowserRun {
        status: out.status,
        log: log_text,
        saml,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime() {
        assert_eq!(xs_datetime(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_425_411);
        assert_eq!(xs_datetime(t), "2026-11-23T09:16:51Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(xs_datetime(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn stored_deflate() {
        // Empty input: one final stored block of length 0.
        assert_eq!(
            redirect_encode(""),
            openssl::base64::encode_block(&[1, 0, 0, 0xff, 0xff])
        );
        let enc = openssl::base64::decode_block(&redirect_encode("<a/>")).unwrap();
        assert_eq!(enc, [1, 4, 0, 0xfb, 0xff, b'<', b'a', b'/', b'>']);
        // Two blocks past 65535 bytes, only the last one final.
        let big = "x".repeat(70_000);
        let enc = openssl::base64::decode_block(&redirect_encode(&big)).unwrap();
        assert_eq!(enc.len(), 70_000 + 10);
        assert_eq!(enc[0], 0);
        assert_eq!(enc[5 + 0xffff], 1);
    }

    #[test]
    fn names_and_urls() {
        assert_eq!(idp_ns_pid("idp-123-4"), Some(123));
        assert_eq!(idp_ns_pid("idp-t1"), None);
        assert_eq!(idp_ns_pid("vpngw-1-2"), None);
        assert_eq!(url_encode("a+b/c=d e&f"), "a%2Bb%2Fc%3Dd%20e%26f");
        assert_eq!(
            acs_url("company-vpn"),
            "https://198.18.0.1/+CSCOE+/saml/sp/acs?tgname=company-vpn"
        );
        assert_eq!(
            sp_entity_id("company-vpn"),
            "https://198.18.0.1/saml/sp/metadata/company-vpn"
        );
        assert_eq!(display_name("alice"), "Alice");
    }
}

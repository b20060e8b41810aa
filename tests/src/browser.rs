//! A real browser for the SAML tests: Debian's headless Chromium, driven over WebDriver
//! (W3C WebDriver, chromedriver) with the `fantoccini` client.
//!
//! chromedriver, and so Chromium, runs inside a client namespace, where openconnect
//! runs, so the browser sees the network a user's browser would (the headend and the
//! IdP on the outside bridge, openconnect's listener on its loopback) and nothing of
//! the host. chromedriver listens on that namespace's loopback only; the test reaches
//! it from threads that joined the namespace ([`crate::netns`]): every WebDriver call
//! runs on such a thread, on a current-thread tokio runtime, so each socket the client
//! opens lives in the namespace.
//!
//! Chromium runs as root, so `--no-sandbox` (Chromium refuses root with its sandbox);
//! with a throwaway profile (`--user-data-dir`) and `HOME` under the lab directory. It
//! does not ignore certificate errors wholesale: `--ignore-certificate-errors-spki-list`
//! trusts exactly the lab headend's key (the same pin openconnect gets). Every wait is
//! bounded (WebDriver page-load and script timeouts, and the guards of the callers).
//! Dropping a [`Chromium`] ends the WebDriver session, kills chromedriver's process
//! group (chromedriver and every Chromium process it started) and removes the profile.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::lab::{self, HANG_GUARD, Lab};
use crate::{cmd, netns, wait_until};

/// The Chromium and chromedriver programs (Debian `chromium`, `chromium-driver`).
pub const CHROMIUM: &str = "chromium";
pub const CHROMEDRIVER: &str = "chromedriver";

/// WebDriver page-load timeout: a navigation (and the redirects and the auto-POST of a
/// SAML login behind it) that has not loaded by then fails the command. A hang guard.
const PAGE_LOAD: Duration = Duration::from_secs(30);

/// chromedriver's port on the namespace's loopback: one per [`Chromium`] of this
/// process, so two browsers in one namespace never meet.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Why the browser tests cannot run here, if they cannot (besides the lab's reasons).
pub fn unavailable_reason() -> Option<String> {
    if let Some(reason) = lab::unavailable_reason() {
        return Some(reason);
    }
    for program in [CHROMIUM, CHROMEDRIVER] {
        if !cmd::in_path(program) {
            return Some(format!(
                "`{program}` not found (Debian chromium and chromium-driver: run netns/install-deps.sh)"
            ));
        }
    }
    None
}

/// True when Chromium can run; otherwise prints `SKIP test: reason` and returns false,
/// or panics under `E2E_REQUIRED=1` (like [`Lab::new`]).
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

/// Headless Chromium in a client namespace, with an open WebDriver session.
pub struct Chromium {
    ns: String,
    name: String,
    port: u16,
    dir: PathBuf,
    driver_log: PathBuf,
    driver: Option<Child>,
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    session_id: String,
}

impl Chromium {
    /// Starts chromedriver in client namespace `host` of `lab` and opens a session with
    /// a fresh headless Chromium that trusts the headend's key. `name` labels its files:
    /// `LABDIR/chromedriver-NAME.log` (dumped when a test panics) and the profile in
    /// `LABDIR/chromium-NAME/`.
    pub fn start(lab: &Lab, host: usize, name: &str) -> Chromium {
        if let Some(reason) = unavailable_reason() {
            panic!("Chromium cannot run: {reason}");
        }
        let ns = lab.client_host(host).ns.clone();
        let port = 9515 + NEXT_PORT.fetch_add(1, Ordering::Relaxed) % 1000;
        let dir = lab.dir().join(format!("chromium-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("profile")).expect("mkdir chromium profile");
        let driver_log = lab.dir().join(format!("chromedriver-{name}.log"));
        let out = File::create(lab.dir().join(format!("chromedriver-{name}.out.log")))
            .expect("create chromedriver output");
        let mut command = netns::exec(&ns, &[CHROMEDRIVER]);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", driver_log.display()))
            .arg("--readable-timestamp")
            // Chromium's dot files, crash dumps and caches go to the throwaway dir.
            .env("HOME", &dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            // Its own process group: Drop kills chromedriver and every Chromium process
            // with one signal, and only those.
            .process_group(0);
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", cmd::describe(&command)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut chromium = Chromium {
            ns,
            name: name.to_owned(),
            port,
            dir,
            driver_log,
            driver: Some(driver),
            rt,
            client: None,
            session_id: String::new(),
        };
        // From here on a panic drops `chromium`, which kills chromedriver.
        chromium.wait_driver();
        chromium.open_session(lab.pin());
        chromium
    }

    /// Waits (hang guard) until chromedriver accepts connections on its port.
    fn wait_driver(&mut self) {
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        let ready = wait_until(HANG_GUARD, || {
            if let Some(status) = self
                .driver
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "chromedriver exited ({status}) during startup:\n{}",
                    self.driver_output()
                );
            }
            let ns = self.ns.clone();
            netns::in_netns(&ns, move || {
                TcpStream::connect_timeout(&addr.into(), Duration::from_secs(1)).is_ok()
            })
            .then_some(())
        });
        if ready.is_none() {
            panic!(
                "chromedriver did not listen on {addr} in {} after {HANG_GUARD:?}:\n{}",
                self.ns,
                self.driver_output()
            );
        }
    }

    fn open_session(&mut self, pin: &str) {
        let profile = self.dir.join("profile");
        let args = vec![
            "--headless=new".to_owned(),
            // Root cannot run Chromium's sandbox.
            "--no-sandbox".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            // Trust the headend's certificate by its key only (base64 SHA-256 of the
            // SubjectPublicKeyInfo, as openconnect's --servercert pin-sha256:).
            format!("--ignore-certificate-errors-spki-list={pin}"),
            "--no-proxy-server".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--password-store=basic".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // No update checks, safe-browsing or metrics calls (there is no Internet in
            // the namespace; they would only add noise to the log).
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            // The lab IdP speaks plain HTTP on an address: keep Chromium from trying
            // https:// first, so every navigation goes where the server said.
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".to_owned(),
            "--window-size=1280,900".to_owned(),
        ];
        let caps = serde_json::json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "acceptInsecureCerts": false,
            "timeouts": {
                "pageLoad": u64::try_from(PAGE_LOAD.as_millis()).expect("ms"),
                "script": 30_000,
                "implicit": 0,
            },
            "goog:chromeOptions": {
                "binary": which(CHROMIUM),
                "args": args,
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let url = format!("http://127.0.0.1:{}/", self.port);
        let result = self.block_on(async move {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(caps);
            let client = tokio::time::timeout(HANG_GUARD, builder.connect(&url))
                .await
                .map_err(|_| format!("no WebDriver session after {HANG_GUARD:?}"))?
                .map_err(|e| format!("WebDriver new session: {e}"))?;
            let id = client
                .session_id()
                .await
                .map_err(|e| format!("session id: {e}"))?
                .unwrap_or_default();
            Ok::<_, String>((client, id))
        });
        match result {
            Ok((client, id)) => {
                self.client = Some(client);
                self.session_id = id;
            }
            Err(e) => panic!(
                "Chromium session in {}: {e}\n--- chromedriver ---\n{}",
                self.ns,
                self.driver_output()
            ),
        }
    }

    /// Runs `fut` to completion on a thread inside the namespace (so any connection the
    /// WebDriver client opens is made there), with the session's runtime.
    fn block_on<T: Send>(&self, fut: impl std::future::Future<Output = T> + Send) -> T {
        let path = Path::new("/run/netns").join(&self.ns);
        let rt = &self.rt;
        std::thread::scope(|s| {
            s.spawn(move || {
                let file =
                    File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                // SAFETY: setns on a valid fd; CLONE_NEWNET changes only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                rt.block_on(fut)
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    fn client(&self) -> Client {
        self.client.clone().expect("WebDriver session open")
    }

    /// The WebDriver session ID.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
    /// chromedriver's base URL as seen from inside the namespace.
    pub fn driver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The namespace Chromium runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Navigates to `url` (WebDriver "Navigate To": returns once the page loaded).
    pub fn goto(&self, url: &str) -> Result<(), String> {
        let client = self.client();
        let url = url.to_owned();
        self.block_on(async move { client.goto(&url).await.map_err(|e| e.to_string()) })
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> Result<String, String> {
        let client = self.client();
        self.block_on(async move {
            client
                .current_url()
                .await
                .map(|u| u.to_string())
                .map_err(|e| e.to_string())
        })
    }

    /// Whether the current page has an element matching CSS `selector`.
    pub fn has(&self, selector: &str) -> bool {
        let client = self.client();
        let selector = selector.to_owned();
        self.block_on(async move {
            client
                .find_all(Locator::Css(&selector))
                .await
                .is_ok_and(|v| !v.is_empty())
        })
    }

    /// The visible text of the page (`document.body.innerText`), empty when none.
    pub fn text(&self) -> String {
        let client = self.client();
        self.block_on(async move {
            client
                .execute(
                    "return document.body ? document.body.innerText : '';",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
    }

    /// Waits (at most `guard`) until `f(current URL)` holds; returns that URL.
    pub fn wait_url(&self, guard: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        wait_until(guard, || self.current_url().ok().filter(|u| f(u)))
    }

    /// Waits (at most `guard`) until the page shows a login form (a password field).
    pub fn wait_login_form(&self, guard: Duration) -> bool {
        wait_until(guard, || {
            self.has("form input[type=password]").then_some(())
        })
        .is_some()
    }

    /// Fills the login form of the current page as a person does: types `user` into
    /// its user-name field and `password` into its password field, then clicks its
    /// submit button. Returns once the click is done (the navigation it starts may
    /// still be under way).
    pub fn log_in(&self, user: &str, password: &str) -> Result<(), String> {
        let client = self.client();
        let (user, password) = (user.to_owned(), password.to_owned());
        self.block_on(async move {
            let e = |what: &str, err: fantoccini::error::CmdError| format!("{what}: {err}");
            let form = client
                .find(Locator::Css("form:has(input[type=password])"))
                .await
                .map_err(|err| e("no form with a password field", err))?;
            let name = form
                .find(Locator::Css(
                    "input[name=username], input[type=email], input[type=text]",
                ))
                .await
                .map_err(|err| e("no user-name field", err))?;
            name.clear()
                .await
                .map_err(|err| e("clear user name", err))?;
            name.send_keys(&user)
                .await
                .map_err(|err| e("type the user name", err))?;
            let pass = form
                .find(Locator::Css("input[type=password]"))
                .await
                .map_err(|err| e("no password field", err))?;
            pass.send_keys(&password)
                .await
                .map_err(|err| e("type the password", err))?;
            let submit = form
                .find(Locator::Css(
                    "button[type=submit], input[type=submit], button:not([type])",
                ))
                .await
                .map_err(|err| e("no submit button", err))?;
            submit.click().await.map_err(|err| e("click submit", err))
        })
    }

    /// The value of cookie `name` as the current page sees it (WebDriver "Get Named
    /// Cookie"), if set.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let client = self.client();
        let name = name.to_owned();
        self.block_on(async move {
            client
                .get_named_cookie(&name)
                .await
                .ok()
                .map(|c| c.value().to_owned())
        })
    }

    /// Saves a screenshot of the current page as `LABDIR/chromium-NAME-LABEL.png` (outside
    /// the profile, so `E2E_KEEP=1` keeps it) and returns its path.
    pub fn screenshot(&self, label: &str) -> Option<PathBuf> {
        let client = self.client();
        let png = self.block_on(async move { client.screenshot().await.ok() })?;
        let path = self
            .driver_log
            .with_file_name(format!("chromium-{}-{label}.png", self.name));
        fs::write(&path, png).ok()?;
        Some(path)
    }

    /// What the browser shows now, for failure messages: the URL, the page text, a
    /// screenshot ([`Chromium::screenshot`] "report") and the tail of chromedriver's log.
    pub fn report(&self) -> String {
        let shot = self
            .screenshot("report")
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
        format!(
            "--- Chromium {} in {}: {} (screenshot: {shot}) ---\n{}\n\
             --- chromedriver log (tail) ---\n{}\n",
            self.name,
            self.ns,
            self.current_url().unwrap_or_else(|e| format!("<{e}>")),
            lab::tail(&self.text(), 40),
            lab::tail(
                &fs::read_to_string(&self.driver_log).unwrap_or_default(),
                30
            ),
        )
    }

    fn driver_output(&self) -> String {
        let out = self
            .driver_log
            .with_file_name(format!("chromedriver-{}.out.log", self.name));
        format!(
            "{}\n{}",
            fs::read_to_string(out).unwrap_or_default(),
            lab::tail(
                &fs::read_to_string(&self.driver_log).unwrap_or_default(),
                40
            )
        )
    }

    /// An executable for `openconnect --external-browser=PATH`: it hands the login URL
    /// it is given to this Chromium (WebDriver "Navigate To" on this session, with
    /// curl), as `xdg-open` hands a URL to the browser a person has open. It logs to
    /// `LABDIR/open-in-chromium-NAME.log`; [`Chromium::opened`] tells whether it ran and
    /// how it ended.
    pub fn external_browser(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join("open-in-chromium.sh");
        let log = self
            .driver_log
            .with_file_name(format!("open-in-chromium-{}.log", self.name));
        let status = self.opened_status_path();
        let _ = fs::remove_file(&status);
        let script = open_url_script(&log, &status, &self.driver_url(), &self.session_id);
        fs::write(&path, script).expect("write external browser");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
        path
    }

    fn opened_status_path(&self) -> PathBuf {
        self.dir.join("open-in-chromium.status")
    }

    /// The exit status of the [`Chromium::external_browser`] program once it finished
    /// (0: Chromium loaded the URL); `None` while it runs or before it ran.
    pub fn opened(&self) -> Option<i32> {
        fs::read_to_string(self.opened_status_path())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The log of the [`Chromium::external_browser`] program.
    pub fn opened_log(&self) -> String {
        fs::read_to_string(
            self.driver_log
                .with_file_name(format!("open-in-chromium-{}.log", self.name)),
        )
        .unwrap_or_default()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The namespace goes with the lab; were it gone already, chromedriver went with it.
        if let Some(client) = self.client.take().filter(|_| netns::exists(&self.ns)) {
            // Ends the session (chromedriver then quits Chromium); bounded, best effort.
            let _ = self.block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        if let Some(mut driver) = self.driver.take() {
            if let Ok(pid) = i32::try_from(driver.id()) {
                // SAFETY: plain syscall; the group is the one chromedriver leads (it is
                // not reaped yet), holding only it and the Chromium it started.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = driver.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The `--external-browser` program of [`Chromium::external_browser`]: `PROG URL` asks
/// chromedriver at `driver_url` to navigate session `session` to URL (curl, bounded),
/// appends to `log` and writes its exit status to `status` (via a rename, so a reader
/// never sees half of it). Only `http(s)://` URLs without quotes, backslashes, spaces
/// or control characters go into the JSON body; anything else is refused with 1.
fn open_url_script(log: &Path, status: &Path, driver_url: &str, session: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # openconnect --external-browser: open the login URL in the lab's Chromium.\n\
         log={log}\nstatus={status}\n\
         refuse() {{ echo \"refused: $1\" >>\"$log\"; echo 1 >\"$status.tmp\" && mv -f \"$status.tmp\" \"$status\"; exit 1; }}\n\
         echo \"$(date -u +%T.%N) open: $1\" >>\"$log\"\n\
         [ $# -eq 1 ] || refuse 'not one argument'\n\
         case \"$1\" in\n  https://*|http://*) ;;\n  *) refuse 'not a web URL' ;;\nesac\n\
         case \"$1\" in\n  *'\"'*|*'\\'*|*[[:space:]]*|*[[:cntrl:]]*) refuse 'a quote, backslash, space or control character' ;;\nesac\n\
         curl -sS --noproxy '*' --max-time 60 --fail-with-body -H 'Content-Type: application/json' \\\n  \
         -d \"{{\\\"url\\\": \\\"$1\\\"}}\" {driver_url}/session/{session}/url >>\"$log\" 2>&1\n\
         rc=$?\necho \"$(date -u +%T.%N) navigate done: exit $rc\" >>\"$log\"\n\
         echo \"$rc\" >\"$status.tmp\" && mv -f \"$status.tmp\" \"$status\"\nexit \"$rc\"\n",
        log = shell_quote(&log.to_string_lossy()),
        status = shell_quote(&status.to_string_lossy()),
    )
}

/// The absolute path of `program` in `PATH` (chromedriver wants the binary's path).
fn which(program: &str) -> String {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_owned())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }

    /// Runs the external-browser program with `args` against a chromedriver that is not
    /// there (port 1); returns (exit status, status file, log).
    fn run_open(args: &[&str]) -> (Option<i32>, String, String) {
        let dir = std::env::temp_dir().join(format!(
            "e2e-open-url-{}-{}",
            std::process::id(),
            NEXT_PORT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        let (log, status, script) = (dir.join("log"), dir.join("status"), dir.join("open.sh"));
        fs::write(
            &script,
            open_url_script(&log, &status, "http://127.0.0.1:1", "SESSION"),
        )
        .unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        let result = (
            out.status.code(),
            fs::read_to_string(&status).unwrap_or_default(),
            fs::read_to_string(&log).unwrap_or_default(),
        );
        fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn open_url_refuses_what_cannot_go_into_json_or_is_no_web_url() {
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "https://198.18.0.1/\"}, \"x\": \"",
            "https://198.18.0.1/a\\b",
            "https://198.18.0.1/a b",
            "https://198.18.0.1/a\nb",
        ] {
            let (code, status, log) = run_open(&[bad]);
            assert_eq!(code, Some(1), "{bad:?}: {log}");
            assert_eq!(status.trim(), "1", "{bad:?}");
            assert!(log.contains("refused:"), "{bad:?}: {log}");
            assert!(!log.contains("navigate done"), "{bad:?}: curl ran:\n{log}");
        }
        let (code, _, log) = run_open(&[]);
        assert_eq!(code, Some(1), "{log}");
    }

    #[test]
    fn open_url_records_a_failed_navigation() {
        if !cmd::in_path("curl") {
            eprintln!("SKIP: no curl");
            return;
        }
        // Nothing listens on port 1: curl fails (7), and the status says so.
        let (code, status, log) =
            run_open(&["https://198.18.0.1/+CSCOE+/saml/sp/login?tgname=TG&ctx=abc"]);
        assert_eq!(code, Some(7), "{log}");
        assert_eq!(status.trim(), "7");
        assert!(log.contains("open: https://198.18.0.1/"), "{log}");
        assert!(log.contains("navigate done: exit 7"), "{log}");
    }
}

//! End-to-end SAML: stock Debian openconnect 9.01 in external-browser mode against the
//! headend, with the lab IdP (SimpleSAMLphp, `e2e::idp`) and `netns/sso-browser.sh`
//! (curl) as the browser, all in the network-namespace lab.
//!
//! The lab config (`netns/lab-asa.cfg.in`: LOCAL-PW, LOCAL-NODTLS) gets the IdP's
//! blocks appended: the trustpoint with its certificate, `webvpn / saml idp ...`, and
//! tunnel group `company-vpn` with `authentication saml`. openconnect picks it with
//! `--authgroup company-vpn`; the headend answers with the SSO form, openconnect spawns
//! the browser, the browser walks headend → IdP → login → ACS → the sealed token on
//! `http://localhost:29786/api/sso/...`, and openconnect redeems it as `<sso-token>`.
//!
//! Hang guards: openconnect waits forever on its `[::1]:29786` listener when the
//! browser fails, so every wait also watches the browser's exit status
//! (`e2e::sso::SsoClient::wait`) and openconnect is killed when the test is done with
//! it. Deadlines are hang guards, never speed assertions.

use std::path::Path;

use e2e::idp::{self, Idp};
use e2e::lab::{self, HANG_GUARD, INSIDE_HOST, OUTSIDE_IP, SPLIT_INCLUDE};
use e2e::saml_lab::{self, GP, SamlLabOptions, TG, idp_password};
use e2e::sessiondb::{expect_session, get};
use e2e::sso::{self, Outcome, SSO_GUARD, SsoClient};
use e2e::{Lab, Session, cmd};

/// A lab with `clients` client namespaces, the IdP and the SAML blocks
/// (`e2e::saml_lab`), and a running headend; `None` = skipped.
fn saml_lab(clients: usize) -> Option<(Lab, Idp)> {
    saml_lab_with(clients, SamlLabOptions::default())
}

fn saml_lab_with(clients: usize, opts: SamlLabOptions) -> Option<(Lab, Idp)> {
    saml_lab::start(Lab::with_clients(clients)?, opts, "saml.rs")
}

/// `--external-browser=WRAPPER` for `user` with `password` at the IdP.
fn browser_arg(idp: &Idp, user: &str, password: &str) -> String {
    format!(
        "--external-browser={}",
        idp.browser_for(user, password).display()
    )
}

/// Starts openconnect for the SAML tunnel group in client namespace `host`, with
/// `extra` arguments (e.g. `--cookieonly`), logging in at the IdP as `user`.
fn spawn_saml(
    lab: &Lab,
    idp: &Idp,
    host: usize,
    user: &str,
    password: &str,
    extra: &[&str],
) -> SsoClient {
    let browser = browser_arg(idp, user, password);
    let mut args = vec!["--authgroup", TG, browser.as_str()];
    args.extend_from_slice(extra);
    SsoClient::spawn(lab, host, &format!("saml-{user}"), &args, None)
}

/// [`spawn_saml`] and wait for the tunnel; panics with every log otherwise.
fn connect_saml(lab: &Lab, idp: &Idp, host: usize, user: &str) -> (SsoClient, std::net::Ipv4Addr) {
    let password = idp_password(lab, user);
    let mut client = spawn_saml(lab, idp, host, user, &password, &[]);
    match client.wait(SSO_GUARD, true, Some((idp, user))) {
        Outcome::Connected(addr) => (client, addr),
        other => panic!(
            "SAML login of {user} to {TG}: no tunnel ({other:?} after up to {SSO_GUARD:?})\n{}",
            client.report(lab, Some((idp, user)))
        ),
    }
}

fn assert_pings(ns: &str, what: &str) {
    assert!(
        lab::wait_ping(ns, INSIDE_HOST, HANG_GUARD).is_some(),
        "{what}: no ping reply from {INSIDE_HOST} through the tunnel from {ns} after {HANG_GUARD:?}"
    );
}

/// `curl -k` from the first client namespace: (HTTP status, body). `args` go before
/// the URL (e.g. `--data-urlencode`).
fn curl(lab: &Lab, url: &str, args: &[&str], body_file: &Path) -> (u16, String) {
    let body = body_file.to_string_lossy().into_owned();
    let mut argv = vec![
        "curl",
        "-sS",
        "-k",
        "--noproxy",
        "*",
        "--max-time",
        "20",
        "-o",
        body.as_str(),
        "-w",
        "%{http_code}",
    ];
    argv.extend_from_slice(args);
    argv.push(url);
    let out = lab.exec_client(&argv);
    assert!(
        out.status.success(),
        "curl {url} failed: {}",
        cmd::combined(&out)
    );
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl printed no status: {}", cmd::combined(&out)));
    (code, std::fs::read_to_string(body_file).unwrap_or_default())
}

/// The headend log lines that contain `needle`, without terminal colour codes.
fn log_lines(lab: &Lab, needle: &str) -> Vec<String> {
    lab.headend_log()
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains(needle))
        .collect()
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// (1) alice logs in to the SAML tunnel group with the external browser: tunnel up,
/// the inside host answers through it, and the session carries her NameID and the
/// tunnel group.
#[test]
fn saml_login_tunnel_ping_and_session() {
    let Some((lab, idp)) = saml_lab(1) else {
        return;
    };
    assert!(
        !lab.ping_from_client(INSIDE_HOST),
        "{INSIDE_HOST} reachable from the client without a tunnel: the lab leaks"
    );

    let (mut client, addr) = connect_saml(&lab, &idp, 0, "alice");
    println!(
        "SAML login to tunnel address and routes: {:?} (measured, not asserted)",
        client.started().elapsed()
    );
    assert!(lab::in_pool(addr), "assigned {addr} is outside the pool");
    assert!(
        client.has_route(SPLIT_INCLUDE),
        "no route {SPLIT_INCLUDE} via {}: {:?}",
        client.ifname(),
        client.routes()
    );
    assert_pings(client.ns(), "after the SAML login");

    // The browser went the whole way: IdP login, ACS, openconnect's listener.
    assert_eq!(idp.browser_exit("alice"), Some(0));
    let browser_log = idp.browser_log("alice");
    assert!(
        browser_log.contains("login form: posting")
            && browser_log.contains("IdP produced a SAMLResponse")
            && browser_log.contains("openconnect's listener answered"),
        "browser log:\n{browser_log}"
    );

    let email = idp::email_of("alice");
    let raw = lab.show_sessions_raw();
    println!("headend show vpn-sessiondb:\n{raw}");
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 1, "one session expected:\n{raw}");
    let s = expect_session(&sessions, &email);
    assert_eq!(get(s, "Tunnel Group"), Some(TG), "{s:?}");
    assert_eq!(
        get(s, "Assigned IP"),
        Some(addr.to_string().as_str()),
        "{s:?}"
    );
    assert_eq!(
        get(s, "Public IP"),
        Some(lab.client_host(0).ip.to_string().as_str()),
        "{s:?}"
    );
    assert_eq!(get(s, "Group Policy"), Some(GP), "{s:?}");
    assert!(
        !log_lines(&lab, "SAML assertion accepted").is_empty(),
        "no \"SAML assertion accepted\" in the headend log:\n{}",
        lab.headend_log()
    );

    // Disconnect: the session goes away.
    client.stop();
    lab.wait_sessions(
        "empty after openconnect disconnected",
        <[Session]>::is_empty,
    );
    lab.assert_headend_running();
}

/// (2) The IdP refuses alice's password: the browser gives up (the IdP's login form came
/// back: exit 2) and never reaches the ACS, openconnect waits on its listener until the
/// guard kills it; no tunnel, no session.
#[test]
fn saml_wrong_idp_password_gives_nothing() {
    let Some((lab, idp)) = saml_lab(1) else {
        return;
    };
    let mut client = spawn_saml(&lab, &idp, 0, "alice", "not-the-idp-password", &[]);
    let outcome = client.wait(SSO_GUARD, true, Some((&idp, "alice")));
    let report = client.report(&lab, Some((&idp, "alice")));
    match outcome {
        Outcome::BrowserFailed(2) => {}
        other => panic!(
            "expected the browser to fail with 2 (credentials rejected), got {other:?}\n{report}"
        ),
    }
    let browser_log = idp.browser_log("alice");
    assert!(
        browser_log.contains("credentials rejected"),
        "browser log:\n{browser_log}"
    );
    assert!(
        !browser_log.contains("IdP produced a SAMLResponse"),
        "the IdP issued a response for a wrong password:\n{browser_log}"
    );
    assert_eq!(
        client.tun_addr(),
        None,
        "tunnel address without a login\n{report}"
    );
    // openconnect does not notice the browser's failure: it still waits (guard).
    let still_waiting = client.exit_status().is_none();
    client.stop();
    println!("openconnect still waiting on its listener when the browser failed: {still_waiting}");
    assert_eq!(client.tun_addr(), None);
    let sessions = lab.show_sessions();
    assert!(
        sessions.is_empty(),
        "sessions without a login: {sessions:?}"
    );
    assert!(
        log_lines(&lab, "SAML assertion accepted").is_empty(),
        "the headend accepted an assertion:\n{}",
        lab.headend_log()
    );
    lab.assert_headend_running();
}

/// (3) The password tunnel group (LOCAL-PW) still works on the same headend with the
/// same config, next to a SAML session.
#[test]
fn password_group_beside_saml() {
    let Some((lab, idp)) = saml_lab(2) else {
        return;
    };
    let (saml_client, saml_addr) = connect_saml(&lab, &idp, 0, "alice");
    let pw_client = lab.connect_from(1, "bob", lab.password("bob"), &[]);
    let pw_addr = pw_client.tun_addr().expect("tunnel address");
    assert_ne!(saml_addr, pw_addr, "two sessions share an address");
    assert_pings(saml_client.ns(), "SAML session");
    assert_pings(pw_client.ns(), "LOCAL-PW session");

    let sessions = lab.wait_sessions("two sessions", |s| s.len() == 2);
    let alice = expect_session(&sessions, &idp::email_of("alice"));
    assert_eq!(get(alice, "Tunnel Group"), Some(TG), "{alice:?}");
    assert_eq!(
        get(alice, "Assigned IP"),
        Some(saml_addr.to_string().as_str())
    );
    let bob = expect_session(&sessions, "bob");
    assert_eq!(get(bob, "Tunnel Group"), Some(lab::AUTHGROUP), "{bob:?}");
    assert_eq!(get(bob, "Assigned IP"), Some(pw_addr.to_string().as_str()));

    // A wrong local password is still refused on the password group.
    let mut wrong = lab.spawn_client(1, "alice", "not-the-password", &[]);
    let status = wrong.wait_exit(HANG_GUARD).unwrap_or_else(|| {
        panic!(
            "openconnect still running after {HANG_GUARD:?} with a wrong password:\n{}",
            wrong.output()
        )
    });
    assert!(
        !status.success(),
        "wrong password accepted:\n{}",
        wrong.output()
    );
    assert_eq!(lab.show_sessions().len(), 2);
    lab.assert_headend_running();
}

/// (3b) The SAML tunnel group heads the group list (the default): the headend shows the
/// group chooser first, with no SSO in it, so openconnect can still pick LOCAL-PW; and
/// picking the SAML group from the chooser leads to the SSO form. (openconnect
/// `--non-inter` without `--authgroup` cannot answer any group list: it prompts.)
#[test]
fn chooser_first_when_saml_group_is_default() {
    let Some((lab, idp)) = saml_lab_with(
        2,
        SamlLabOptions {
            saml_first: true,
            ..Default::default()
        },
    ) else {
        return;
    };
    let pw_client = lab.connect_from(1, "bob", lab.password("bob"), &[]);
    assert!(
        pw_client.output().contains("Please select your group."),
        "openconnect did not see the group chooser:\n{}",
        pw_client.output()
    );
    assert_pings(pw_client.ns(), "LOCAL-PW session");

    let (saml_client, saml_addr) = connect_saml(&lab, &idp, 0, "alice");
    assert!(
        saml_client.output().contains("Please select your group."),
        "openconnect did not see the group chooser:\n{}",
        saml_client.output()
    );
    assert_pings(saml_client.ns(), "SAML session");

    let sessions = lab.wait_sessions("two sessions", |s| s.len() == 2);
    let alice = expect_session(&sessions, &idp::email_of("alice"));
    assert_eq!(get(alice, "Tunnel Group"), Some(TG), "{alice:?}");
    assert_eq!(
        get(alice, "Assigned IP"),
        Some(saml_addr.to_string().as_str())
    );
    let bob = expect_session(&sessions, "bob");
    assert_eq!(get(bob, "Tunnel Group"), Some(lab::AUTHGROUP), "{bob:?}");
    lab.assert_headend_running();
}

/// (4) `openconnect --cookieonly` with the browser prints the cookie and exits; then
/// `openconnect --cookie-on-stdin` given its `webvpn=` part connects without any login.
#[test]
fn cookieonly_then_cookie_on_stdin() {
    let Some((lab, idp)) = saml_lab(1) else {
        return;
    };
    let password = idp_password(&lab, "alice");
    let mut auth = spawn_saml(&lab, &idp, 0, "alice", &password, &["--cookieonly"]);
    let outcome = auth.wait(SSO_GUARD, false, Some((&idp, "alice")));
    let report = auth.report(&lab, Some((&idp, "alice")));
    match outcome {
        Outcome::Exited(status) if status.success() => {}
        other => panic!("openconnect --cookieonly: {other:?}\n{report}"),
    }
    let printed = auth.stdout();
    let cookie = sso::webvpn_cookie(&printed)
        .unwrap_or_else(|| panic!("no webvpn= cookie printed by --cookieonly\n{report}"));
    assert_eq!(auth.tun_addr(), None, "--cookieonly made a tunnel");
    drop(auth);

    let (tunnel, addr) = sso::cookie_tunnel(&lab, "cookie", &cookie, "the --cookieonly cookie");
    assert!(
        !tunnel.output().contains("Spawning external browser"),
        "--cookie-on-stdin ran a login:\n{}",
        tunnel.output()
    );
    assert_pings(tunnel.ns(), "tunnel from the --cookieonly cookie");
    sso::expect_sole_session(&lab, &idp::email_of("alice"), TG, None, addr);
    lab.assert_headend_running();
}

/// (5) The SP endpoints an IdP admin sees: metadata names the entity ID and the ACS; the
/// ACS refuses garbage, an IdP Response with its signature stripped and one with a
/// changed NameID, each with an error page (403/400, nothing echoed unescaped) and a
/// logged reason; no session comes of it.
#[test]
fn sp_metadata_and_acs_refusals() {
    // The IdP must live as long as the test (the browser logs in there).
    let Some((lab, _idp)) = saml_lab(1) else {
        return;
    };
    let work = lab.dir().join("acs-probe");
    std::fs::create_dir_all(&work).expect("mkdir");

    // Metadata.
    let entity = idp::sp_entity_id(TG);
    let acs = idp::acs_url(TG);
    let (code, metadata) = curl(&lab, &entity, &[], &work.join("metadata.xml"));
    assert_eq!(code, 200, "GET {entity}:\n{metadata}");
    assert!(
        metadata.contains(&format!("entityID=\"{entity}\"")),
        "metadata lacks entityID=\"{entity}\":\n{metadata}"
    );
    assert!(
        metadata.contains(&format!("Location=\"{acs}\"")),
        "metadata lacks the ACS {acs}:\n{metadata}"
    );
    assert!(
        metadata.contains("AssertionConsumerService") && metadata.contains("HTTP-POST"),
        "metadata lacks an HTTP-POST AssertionConsumerService:\n{metadata}"
    );
    let (code, _) = curl(
        &lab,
        &idp::sp_entity_id("no-such-group"),
        &[],
        &work.join("metadata-unknown.html"),
    );
    assert_eq!(code, 404, "metadata for an unknown tunnel group");

    // A genuine IdP Response for a request of the headend, stopped before the ACS.
    let login = format!("https://{OUTSIDE_IP}/+CSCOE+/saml/sp/login?tgname={TG}&ctx=probe");
    let run = idp::run_browser(
        lab.client_ns(),
        &login,
        "alice",
        &idp_password(&lab, "alice"),
        &[("SSO_STOP_AT_ACS", "1")],
        &work.join("browser"),
    );
    assert!(run.status.success(), "browser to the ACS: {}", run.log);
    let genuine = run
        .saml
        .unwrap_or_else(|| panic!("no SAMLResponse captured:\n{}", run.log));
    assert_eq!(genuine.acs, acs, "the IdP posts to our ACS");
    let relay = genuine.relay_state.clone().unwrap_or_default();
    let xml = &genuine.xml;
    let (sig_start, sig_end) = (
        xml.find("<ds:Signature").expect("signed assertion"),
        xml.find("</ds:Signature>").expect("signature end") + "</ds:Signature>".len(),
    );
    let unsigned = format!("{}{}", &xml[..sig_start], &xml[sig_end..]);
    assert!(!unsigned.contains("Signature"), "all signatures stripped");
    let forged_name = xml.replacen(
        "alice@corp.example</saml:NameID>",
        "mallory@corp.example</saml:NameID>",
        1,
    );
    assert_ne!(&forged_name, xml, "NameID found");

    let b64 = |s: &str| openssl::base64::encode_block(s.as_bytes());
    let cases: Vec<(&str, String)> = vec![
        ("garbage", b64("<script>alert(1)</script> not SAML at all")),
        ("not base64", "%%%<script>alert(1)</script>".to_owned()),
        ("signature stripped", b64(&unsigned)),
        ("NameID changed after signing", b64(&forged_name)),
    ];
    for (i, (what, response)) in cases.iter().enumerate() {
        let before = log_lines(&lab, "SAML response refused").len();
        let saml_field = format!("SAMLResponse={response}");
        let relay_field = format!("RelayState={relay}");
        let (code, body) = curl(
            &lab,
            &acs,
            &[
                "--data-urlencode",
                &saml_field,
                "--data-urlencode",
                &relay_field,
            ],
            &work.join(format!("acs-{i}.html")),
        );
        assert!(
            code == 403 || code == 400,
            "{what}: the ACS answered {code}, not 403/400:\n{body}"
        );
        assert!(
            body.contains("<html") || body.contains("<!DOCTYPE"),
            "{what}: not an error page:\n{body}"
        );
        assert!(
            !body.contains("<script>"),
            "{what}: the error page echoes markup unescaped:\n{body}"
        );
        assert!(
            !body.contains("localhost:29786"),
            "{what}: a token for openconnect's listener:\n{body}"
        );
        let refused = log_lines(&lab, "SAML response refused");
        assert!(
            refused.len() > before,
            "{what}: no \"SAML response refused\" line with its reason in the headend log:\n{}",
            lab.headend_log()
        );
        println!("{what}: HTTP {code}; headend: {}", refused.last().unwrap());
    }
    assert!(
        log_lines(&lab, "SAML assertion accepted").is_empty(),
        "the headend accepted an assertion:\n{}",
        lab.headend_log()
    );
    let sessions = lab.show_sessions();
    assert!(
        sessions.is_empty(),
        "sessions after refused responses: {sessions:?}"
    );
    lab.assert_headend_running();
}

/// Without `base-url` (and without `domain-name` to derive it from) the headend
/// says at start that it uses the request's Host, and openconnect's external-browser
/// login works as with it.
#[test]
fn saml_without_base_url_uses_the_request_host() {
    let Some((lab, idp)) = saml_lab_with(
        1,
        SamlLabOptions {
            base_url: false,
            ..Default::default()
        },
    ) else {
        return;
    };
    let log = lab.headend_log();
    assert!(
        log.contains("the base URL is https://<the request's Host>"),
        "start log does not say where the base URL comes from:\n{}",
        lab::tail(&log, 30)
    );
    let (_client, addr) = connect_saml(&lab, &idp, 0, "alice");
    assert!(lab::in_pool(addr), "assigned {addr} is outside the pool");
    assert_pings(_client.ns(), "after the SAML login without base-url");
    assert!(
        lab.headend_log().contains(&format!(
            "base URL https://{OUTSIDE_IP} (from the request's Host)"
        )),
        "{}",
        lab::tail(&lab.headend_log(), 30)
    );
}

//! End-to-end SAML with a real browser: headless Chromium (Debian `chromium`), driven
//! over WebDriver (`chromium-driver`, `e2e::browser`), logs in at the lab IdP
//! (SimpleSAMLphp, `e2e::idp`) the way a person does: it loads the page, types the user
//! name and password into the IdP's form and clicks its button; the IdP's auto-POST of
//! the SAMLResponse to the headend's ACS is Chromium's own (the page's JavaScript).
//!
//! (1) and (2): stock openconnect 9.01 with `--external-browser=PROG`, where PROG hands
//! the login URL to the running Chromium (WebDriver "Navigate To"), as `xdg-open` hands
//! it to a person's browser; the headend's ACS sends Chromium to openconnect's listener
//! on `localhost:29786`, and openconnect redeems the token. (3): an AnyConnect-style
//! client whose embedded browser is Chromium: the aggregate-auth XML exchange (played
//! with curl, as tests/tests/saml_embedded.rs does, openconnect-sso's requests), the
//! browser sent to `<sso-v2-login>`, the client waiting for `<sso-v2-login-final>` and
//! reading the cookie named by `<sso-v2-token-cookie-name>` from the browser over
//! WebDriver, then `<sso-token>` in the auth-reply and the tunnel with the bearer cookie.
//!
//! Skipped (or, with `E2E_REQUIRED=1`, failed) without root, the lab's programs, the
//! IdP or Chromium. Deadlines are hang guards, never speed assertions.

use std::time::Instant;

use e2e::aggauth::{Flavour, XmlClient};
use e2e::browser::{self, Chromium};
use e2e::idp::{self, Idp};
use e2e::lab::{self, HANG_GUARD, INSIDE_HOST, OUTSIDE_IP};
use e2e::saml_lab::{self, GP, SamlLabOptions, TG, idp_password};
use e2e::sessiondb::{expect_session, get};
use e2e::sso::{self, Outcome, SSO_GUARD, SsoClient};
use e2e::{Lab, Session};

/// Where the ACS sends an embedded browser (`<sso-v2-login-final>`).
const FINAL_PATH: &str = "/+CSCOE+/saml_ac_login.html";

/// A lab with the IdP (alice and bob, with IdP passwords of their own), the SAML blocks
/// appended to the config (with `saml external-browser enable`, as tests/tests/saml.rs
/// does), a running headend, and Chromium in the client namespace; `None` = skipped.
fn browser_lab(name: &str) -> Option<(Lab, Idp, Chromium)> {
    let lab = Lab::new()?;
    if !browser::available() {
        return None;
    }
    let (lab, idp) = saml_lab::start(lab, SamlLabOptions::default(), "saml_browser.rs")?;
    let started = Instant::now();
    let chromium = Chromium::start(&lab, 0, name);
    println!(
        "chromedriver and Chromium session up: {:?} (measured, not asserted)",
        started.elapsed()
    );
    Some((lab, idp, chromium))
}

/// Whether `url` is a page of the lab IdP.
fn at_idp(idp: &Idp, url: &str) -> bool {
    url.starts_with(idp.base_url())
}

/// openconnect in external-browser mode for the SAML tunnel group, with Chromium as
/// its browser; returns once Chromium shows the IdP's login form (openconnect asked
/// the headend, got the SSO form, and ran the browser program with its login URL).
fn spawn_with_chromium(lab: &Lab, idp: &Idp, chromium: &Chromium, label: &str) -> SsoClient {
    let browser = format!(
        "--external-browser={}",
        chromium.external_browser().display()
    );
    let mut client = SsoClient::spawn(lab, 0, label, &["--authgroup", TG, &browser], None);
    let shown = chromium.wait_login_form(SSO_GUARD);
    if !shown || !chromium.current_url().is_ok_and(|u| at_idp(idp, &u)) {
        panic!(
            "Chromium shows no IdP login form after up to {SSO_GUARD:?} (openconnect exit: {:?})\n\
             --- browser program ---\n{}\n{}\n{}",
            client.exit_status(),
            chromium.opened_log(),
            chromium.report(),
            client.report(lab, None)
        );
    }
    client
}

/// (1) openconnect opens the login URL in Chromium; Chromium logs alice in at the IdP,
/// the IdP posts to the headend's ACS, the headend sends Chromium to openconnect's
/// listener, openconnect redeems the token: tunnel up, the inside host answers through
/// it, `show vpn-sessiondb` shows alice's NameID in the SAML tunnel group.
#[test]
fn chromium_external_browser_login_tunnel_and_session() {
    let Some((lab, idp, chromium)) = browser_lab("external") else {
        return;
    };
    let started = Instant::now();
    let mut client = spawn_with_chromium(&lab, &idp, &chromium, "chromium");
    chromium
        .log_in("alice", &idp_password(&lab, "alice"))
        .unwrap_or_else(|e| panic!("IdP login form: {e}\n{}", chromium.report()));
    let addr = match client.wait(SSO_GUARD, true, None) {
        Outcome::Connected(addr) => addr,
        other => panic!(
            "SAML login of alice with Chromium: no tunnel ({other:?})\n{}\n{}",
            chromium.report(),
            client.report(&lab, None)
        ),
    };
    println!(
        "openconnect start to tunnel, Chromium as the browser: {:?} (measured, not asserted)",
        started.elapsed()
    );
    assert_eq!(
        chromium.opened(),
        Some(0),
        "the browser program did not load the login URL:\n{}",
        chromium.opened_log()
    );
    let opened = chromium.opened_log();
    assert!(
        opened.contains(&format!("open: https://{OUTSIDE_IP}/")),
        "openconnect did not hand the headend's login URL to Chromium:\n{opened}"
    );
    // Chromium went the whole way: the ACS sent it to openconnect's listener with the
    // sealed token, and openconnect 9.01 answers there with its own page.
    let final_url = chromium.current_url().unwrap_or_default();
    println!("Chromium's last page: {final_url}");
    assert!(
        final_url.starts_with("http://localhost:29786/api/sso/"),
        "Chromium did not end at openconnect's listener\n{}",
        chromium.report()
    );
    assert!(!at_idp(&idp, &final_url), "{}", chromium.report());
    assert!(lab::in_pool(addr), "assigned {addr} is outside the pool");
    assert!(
        lab::wait_ping(client.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping reply from {INSIDE_HOST} through the tunnel after {HANG_GUARD:?}"
    );
    let raw = lab.show_sessions_raw();
    println!("headend show vpn-sessiondb:\n{raw}");
    let sessions = e2e::sessiondb::parse(&raw);
    assert_eq!(sessions.len(), 1, "one session expected:\n{raw}");
    let s = expect_session(&sessions, &idp::email_of("alice"));
    assert_eq!(get(s, "Tunnel Group"), Some(TG), "{s:?}");
    assert_eq!(get(s, "Group Policy"), Some(GP), "{s:?}");
    assert_eq!(
        get(s, "Assigned IP"),
        Some(addr.to_string().as_str()),
        "{s:?}"
    );
    assert!(
        lab.headend_log().contains("SAML assertion accepted"),
        "no \"SAML assertion accepted\" in the headend log"
    );

    client.stop();
    lab.wait_sessions(
        "empty after openconnect disconnected",
        <[Session]>::is_empty,
    );
    lab.assert_headend_running();
}

/// (2) A wrong IdP password typed into Chromium: the IdP shows its form again with an
/// error, nothing reaches the ACS, openconnect keeps waiting on its listener (it has no
/// way to learn that the user gave up) until it is stopped: no tunnel, no session.
#[test]
fn chromium_wrong_password_gives_no_session() {
    let Some((lab, idp, chromium)) = browser_lab("wrong-pw") else {
        return;
    };
    let mut client = spawn_with_chromium(&lab, &idp, &chromium, "chromium-bad");
    let before = chromium.current_url().unwrap_or_default();
    chromium
        .log_in("alice", "not-the-idp-password")
        .unwrap_or_else(|e| panic!("IdP login form: {e}\n{}", chromium.report()));
    // SimpleSAMLphp answers the POST with its form again, under its WRONGUSERPASS error.
    let refused = e2e::wait_until(SSO_GUARD, || {
        (chromium.has("form input[type=password]")
            && chromium.text().contains("Incorrect username or password"))
        .then_some(())
    });
    assert!(
        refused.is_some(),
        "no \"Incorrect username or password\" from the IdP after a wrong password \
         (page before: {before})\n{}",
        chromium.report()
    );
    let url = chromium.current_url().unwrap_or_default();
    assert!(at_idp(&idp, &url), "Chromium left the IdP: {url}");
    assert_eq!(client.tun_addr(), None, "a tunnel without a login");
    assert_eq!(
        client.exit_status(),
        None,
        "openconnect gave up by itself:\n{}",
        client.output()
    );
    client.stop();
    assert!(
        lab.show_sessions().is_empty(),
        "sessions without a login:\n{}",
        lab.show_sessions_raw()
    );
    let log = lab.headend_log();
    assert!(
        !log.contains("SAML assertion accepted"),
        "the headend accepted an assertion"
    );
    lab.assert_headend_running();
}

/// (3) Chromium as the embedded browser of an AnyConnect-style client: the init gets
/// the SSO form; the client opens `<sso-v2-login>` in Chromium, which logs bob in at
/// the IdP and is sent by the ACS to `<sso-v2-login-final>`; the client sees that URL,
/// reads the `<sso-v2-token-cookie-name>` cookie from Chromium over WebDriver and
/// posts it as `<sso-token>`: success and a bearer cookie, with which stock openconnect
/// (`--cookie-on-stdin`) brings the tunnel up; ping through it, bob's session shown.
#[test]
fn chromium_embedded_browser_login_tunnel_and_session() {
    let Some((lab, idp, chromium)) = browser_lab("embedded") else {
        return;
    };
    let xml = XmlClient::new(&lab, "embedded-client", Flavour::OpenconnectSso, TG);
    let init = xml.init();
    assert_eq!(init.code, 200, "init:\n{init}");
    let login_url = init
        .element("sso-v2-login")
        .unwrap_or_else(|| panic!("no <sso-v2-login>:\n{init}"));
    let final_url = init
        .element("sso-v2-login-final")
        .unwrap_or_else(|| panic!("no <sso-v2-login-final>:\n{init}"));
    let cookie_name = init
        .element("sso-v2-token-cookie-name")
        .unwrap_or_else(|| panic!("no <sso-v2-token-cookie-name>:\n{init}"));
    assert_eq!(final_url, format!("https://{OUTSIDE_IP}{FINAL_PATH}"));
    assert_eq!(
        init.element("sso-v2-browser-mode"),
        None,
        "an embedded client told to use an external browser:\n{init}"
    );
    let opaque = {
        let open = init.body.find("<opaque").expect("<opaque>");
        let close = init.body[open..].find("</opaque>").expect("</opaque>") + open;
        init.body[open..close + "</opaque>".len()].to_owned()
    };

    let started = Instant::now();
    chromium
        .goto(&login_url)
        .unwrap_or_else(|e| panic!("Chromium to {login_url}: {e}\n{}", chromium.report()));
    assert!(
        chromium.wait_login_form(HANG_GUARD)
            && chromium.current_url().is_ok_and(|u| at_idp(&idp, &u)),
        "sso-v2-login did not lead to the IdP's login form\n{}",
        chromium.report()
    );
    chromium
        .log_in("bob", &idp_password(&lab, "bob"))
        .unwrap_or_else(|e| panic!("IdP login form: {e}\n{}", chromium.report()));
    // The embedded browser's client watches the URL until it is sso-v2-login-final.
    let landed = chromium.wait_url(SSO_GUARD, |u| u == final_url);
    assert!(
        landed.is_some(),
        "Chromium never reached {final_url}\n{}\n--- headend log ---\n{}",
        chromium.report(),
        lab::tail(&lab.headend_log(), 40)
    );
    let token = chromium.cookie(&cookie_name).unwrap_or_else(|| {
        panic!(
            "no {cookie_name} cookie in Chromium at {final_url}\n{}",
            chromium.report()
        )
    });
    assert!(
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric()),
        "token {token:?}"
    );
    println!(
        "sso-v2-login to the token cookie in Chromium: {:?} (measured, not asserted)",
        started.elapsed()
    );

    let success = xml.reply("auth-reply", &opaque, &token);
    assert_eq!(success.code, 200, "auth-reply:\n{success}");
    assert!(
        success.body.contains("<auth id=\"success\">"),
        "the token from Chromium was not accepted:\n{success}"
    );
    let webvpn = success
        .set_cookie("webvpn")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| panic!("no webvpn cookie:\n{success}"));

    let (tunnel, addr) = sso::cookie_tunnel(
        &lab,
        "embedded",
        &format!("webvpn={webvpn}"),
        "the cookie of the Chromium login",
    );
    assert!(
        lab::wait_ping(tunnel.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping reply from {INSIDE_HOST} through the tunnel after {HANG_GUARD:?}"
    );
    sso::expect_sole_session(&lab, &idp::email_of("bob"), TG, Some(GP), addr);

    // The token is single use, also when it came from a browser.
    let again = xml.reply("auth-reply-again", &opaque, &token);
    assert!(
        !again.body.contains("<auth id=\"success\">") && again.set_cookie("webvpn").is_none(),
        "the same token accepted twice:\n{again}"
    );
    drop(tunnel);
    lab.assert_headend_running();
}

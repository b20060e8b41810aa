//! End-to-end SAML, embedded-browser flow (protocol.md section 1, last SAML bullet): the
//! flow of Cisco AnyConnect's built-in browser and of openconnect-sso, which never run
//! an external browser and never listen on `localhost:29786`. They read the one-time
//! token from the `acSamlv2Token` cookie that the headend sets when the browser reaches
//! `sso-v2-login-final`, and post it as `<sso-token>`.
//!
//! The client is played with curl in the client namespace, request by request as
//! openconnect-sso 0.8 (`openconnect_sso/authenticator.py`) sends them: headers
//! `X-Transcend-Version: 1`, `X-Aggregate-Auth: 1`, the (sic) form Content-Type, an
//! `<?xml ...?>` declaration, `<group-select>` before `<group-access>`, capabilities
//! `single-sign-on-v2` only, and an auth-reply with empty `<session-token/>` and
//! `<session-id/>` and the server's `<opaque>` copied back. The IdP login is
//! `netns/sso-browser.sh` with `SSO_STOP_AT_ACS=1` (the lab IdP, SimpleSAMLphp, up to the
//! signed Response it would post); the ACS POST and the final page are requested here
//! with the browser's cookie jar, so the test sees the ACS answer itself.
//!
//! The headend seals the token for the client's STRAP key only when the init listed the
//! capability `single-sign-on-external-browser`; every other client gets the cookie and
//! a redirect to `/+CSCOE+/saml_ac_login.html`. Deadlines are hang guards, never speed
//! assertions.

use std::path::Path;

use e2e::Lab;
use e2e::aggauth::{Curl, Flavour, Reply, XmlClient, element, jar_cookie, opaque_element};
use e2e::idp::{self, Idp, SamlCapture};
use e2e::lab::{self, HANG_GUARD, INSIDE_HOST, OUTSIDE_IP};
use e2e::saml_lab::{self, GP, SamlLabOptions, TG, idp_password};
use e2e::sso;

/// A lab with the IdP and the SAML blocks (`e2e::saml_lab`), and a running headend;
/// `None` = skipped.
fn saml_lab() -> Option<(Lab, Idp)> {
    saml_lab_with(true)
}

/// [`saml_lab`]; `external_browser` false leaves `saml external-browser enable` out
/// of the tunnel group (ASA's default: the embedded browser only).
fn saml_lab_with(external_browser: bool) -> Option<(Lab, Idp)> {
    let opts = SamlLabOptions {
        external_browser,
        ..Default::default()
    };
    saml_lab::start(Lab::new()?, opts, "saml_embedded.rs")
}

/// Where the ACS sends an embedded browser; the client waits for this URL.
const FINAL_PATH: &str = "/+CSCOE+/saml_ac_login.html";
/// The cookie the token travels in (`<sso-v2-token-cookie-name>`).
const TOKEN_COOKIE: &str = "acSamlv2Token";

/// What the SSO form of an init told the client.
#[derive(Debug)]
struct SsoForm {
    login_url: String,
    final_url: String,
    opaque: String,
}

/// Checks the init's answer is the SSO form (and no group chooser) and returns it.
fn expect_sso_form(reply: &Reply) -> SsoForm {
    assert_eq!(reply.code, 200, "init:\n{reply}");
    assert!(
        reply.body.contains("type=\"auth-request\"") && reply.body.contains("<auth id=\"main\">"),
        "init: not an auth-request:\n{reply}"
    );
    assert!(
        reply
            .body
            .contains("<input type=\"sso\" name=\"sso-token\""),
        "init: no sso input:\n{reply}"
    );
    assert!(
        !reply.body.contains("<select"),
        "init with group-select: the SSO form carries a group chooser:\n{reply}"
    );
    let login_url = reply
        .element("sso-v2-login")
        .unwrap_or_else(|| panic!("no <sso-v2-login>:\n{reply}"));
    let final_url = reply
        .element("sso-v2-login-final")
        .unwrap_or_else(|| panic!("no <sso-v2-login-final>:\n{reply}"));
    assert_eq!(
        reply.element("sso-v2-token-cookie-name").as_deref(),
        Some(TOKEN_COOKIE),
        "{reply}"
    );
    assert!(
        login_url.starts_with(&format!("https://{OUTSIDE_IP}/")),
        "sso-v2-login {login_url} is not on the headend"
    );
    assert_eq!(
        final_url,
        format!("https://{OUTSIDE_IP}{FINAL_PATH}"),
        "{reply}"
    );
    let opaque = opaque_element(&reply.body)
        .unwrap_or_else(|| panic!("no <opaque> to copy back:\n{reply}"))
        .to_owned();
    SsoForm {
        login_url,
        final_url,
        opaque,
    }
}

/// The IdP's signed Response to the AuthnRequest behind `login_url`, for `user`: the
/// browser script walks headend → IdP → login form → the auto-POST form, and stops there.
fn idp_response(lab: &Lab, user: &str, login_url: &str, work: &Path) -> SamlCapture {
    let run = idp::run_browser(
        lab.client_ns(),
        login_url,
        user,
        &idp_password(lab, user),
        &[("SSO_STOP_AT_ACS", "1")],
        work,
    );
    assert!(
        run.status.success(),
        "browser to the IdP's Response ({}):\n{}",
        run.status,
        run.log
    );
    let saml = run
        .saml
        .unwrap_or_else(|| panic!("no SAMLResponse captured:\n{}", run.log));
    assert_eq!(saml.acs, idp::acs_url(TG), "the IdP posts to our ACS");
    saml
}

/// The browser's POST of `saml` to the ACS, with cookie jar `jar`.
fn post_acs(curl: &Curl<'_>, saml: &SamlCapture, jar: &Path) -> Reply {
    let jar = jar.to_string_lossy().into_owned();
    let saml_field = format!("SAMLResponse={}", saml.response_b64.trim());
    let relay_field = format!(
        "RelayState={}",
        saml.relay_state.clone().unwrap_or_default()
    );
    curl.request(
        &[
            "-b",
            &jar,
            "-c",
            &jar,
            "--data-urlencode",
            &saml_field,
            "--data-urlencode",
            &relay_field,
        ],
        &saml.acs,
    )
}

/// The ACS answer of the embedded flow: 302 to the final page (not to openconnect's
/// listener) with `Set-Cookie: acSamlv2Token=TOKEN`; returns TOKEN.
fn expect_cookie_redirect(acs: &Reply) -> String {
    assert_eq!(acs.code, 302, "ACS:\n{acs}");
    let location = acs
        .header("Location")
        .unwrap_or_else(|| panic!("ACS 302 without Location:\n{acs}"));
    assert!(
        !location.contains("localhost:29786") && !location.contains("/api/sso/"),
        "ACS sent an embedded browser to openconnect's listener: {location}"
    );
    assert!(
        location == FINAL_PATH || location == format!("https://{OUTSIDE_IP}{FINAL_PATH}"),
        "ACS Location {location}, expected {FINAL_PATH}"
    );
    let token = acs
        .set_cookie(TOKEN_COOKIE)
        .unwrap_or_else(|| panic!("ACS set no {TOKEN_COOKIE} cookie:\n{acs}"));
    assert!(
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric()),
        "token {token:?} is not alphanumeric"
    );
    token
}

/// Checks a successful auth-reply answer; returns the bearer cookie value (the
/// `<session-token>`, equal to `Set-Cookie: webvpn=`).
fn expect_success(reply: &Reply) -> String {
    assert_eq!(reply.code, 200, "auth-reply:\n{reply}");
    assert!(
        reply.body.contains("<auth id=\"success\">"),
        "auth-reply with the token: no <auth id=\"success\">:\n{reply}"
    );
    let session_token = reply
        .element("session-token")
        .unwrap_or_else(|| panic!("no <session-token>:\n{reply}"));
    let webvpn = reply
        .set_cookie("webvpn")
        .unwrap_or_else(|| panic!("no Set-Cookie: webvpn=:\n{reply}"));
    assert!(!webvpn.is_empty(), "empty webvpn cookie:\n{reply}");
    assert_eq!(
        session_token, webvpn,
        "<session-token> and Set-Cookie webvpn= differ"
    );
    webvpn
}

/// A refused token: the SSO form again with an error, no success, no bearer cookie.
fn expect_token_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.code, 200, "{what}:\n{reply}");
    assert!(
        !reply.body.contains("<auth id=\"success\">") && reply.set_cookie("webvpn").is_none(),
        "{what}: accepted:\n{reply}"
    );
    assert!(
        reply.body.contains("<error") && reply.body.contains("sso-v2-login"),
        "{what}: expected the SSO form again with an error:\n{reply}"
    );
}

/// The whole embedded-browser login of `user` with `client`, up to the bearer cookie;
/// returns (token, auth-reply answer).
fn embedded_login(lab: &Lab, client: &XmlClient<'_>, user: &str) -> (String, Reply, SsoForm) {
    let form = expect_sso_form(&client.init());
    let saml = idp_response(lab, user, &form.login_url, &client.curl.path("browser"));
    let jar = client.curl.path("browser-cookies");
    let acs = post_acs(&client.curl, &saml, &jar);
    let token = expect_cookie_redirect(&acs);
    // The embedded browser lands on sso-v2-login-final and reads the cookie there.
    let jar_s = jar.to_string_lossy().into_owned();
    let landing = client
        .curl
        .request(&["-b", &jar_s, "-c", &jar_s], &form.final_url);
    assert_eq!(landing.code, 200, "{}:\n{landing}", form.final_url);
    assert_eq!(
        jar_cookie(&jar, TOKEN_COOKIE).as_deref(),
        Some(token.as_str()),
        "the browser's cookie jar lacks {TOKEN_COOKIE}=TOKEN at {}",
        form.final_url
    );
    let success = client.reply("reply", &form.opaque, &token);
    (token, success, form)
}

/// (1) openconnect-sso's exchange: init without the external-browser capability → SSO
/// form; IdP login; the ACS answers 302 to `/+CSCOE+/saml_ac_login.html` with
/// `Set-Cookie: acSamlv2Token=TOKEN`; the auth-reply with `<sso-token>TOKEN` gives
/// `<auth id="success">` and the bearer cookie; `openconnect --cookie-on-stdin` with it
/// connects and the inside host answers. The same token again is refused (single use).
#[test]
fn embedded_browser_token_cookie_login_connects() {
    let Some((lab, idp)) = saml_lab() else {
        return;
    };
    let client = XmlClient::new(&lab, "openconnect-sso", Flavour::OpenconnectSso, TG);
    let (token, success, form) = embedded_login(&lab, &client, "alice");
    let cookie = expect_success(&success);
    assert!(
        !idp.browser_log("alice").contains("localhost:29786"),
        "the wrapper browser was not used here"
    );

    // Single use: the same token once more is refused, and makes no session.
    let again = client.reply("reply-again", &form.opaque, &token);
    expect_token_refused(&again, "the same sso-token a second time");
    assert!(
        lab.headend_log().contains("SSO token refused"),
        "no \"SSO token refused\" in the headend log:\n{}",
        lab.headend_log()
    );

    // The bearer cookie opens the tunnel with stock openconnect, no login.
    let (tunnel, addr) = sso::cookie_tunnel(
        &lab,
        "cookie",
        &format!("webvpn={cookie}"),
        "the embedded login's cookie",
    );
    assert!(
        lab::wait_ping(tunnel.ns(), INSIDE_HOST, HANG_GUARD).is_some(),
        "no ping reply from {INSIDE_HOST} through the tunnel after {HANG_GUARD:?}"
    );
    sso::expect_sole_session(&lab, &idp::email_of("alice"), TG, Some(GP), addr);

    // Still refused with a session up; still one session.
    let third = client.reply("reply-third", &form.opaque, &token);
    expect_token_refused(&third, "the same sso-token after the tunnel came up");
    assert_eq!(lab.show_sessions().len(), 1);
    lab.assert_headend_running();
}

/// (2) The capability decides, not the key: a client that sends STRAP keys but does not
/// list `single-sign-on-external-browser` still gets the cookie flow (and its token
/// works); the same client listing it gets the sealed token on openconnect's listener.
#[test]
fn strap_key_without_external_capability_gets_cookie() {
    let Some((lab, _idp)) = saml_lab() else {
        return;
    };
    let embedded = XmlClient::new(&lab, "strap-embedded", Flavour::StrapEmbedded, TG);
    let (_, success, _) = embedded_login(&lab, &embedded, "bob");
    expect_success(&success);

    let external = XmlClient::new(&lab, "strap-external", Flavour::StrapExternal, TG);
    let form = expect_sso_form(&external.init());
    let saml = idp_response(&lab, "bob", &form.login_url, &external.curl.path("browser"));
    let acs = post_acs(
        &external.curl,
        &saml,
        &external.curl.path("browser-cookies"),
    );
    assert_eq!(acs.code, 302, "ACS (external browser):\n{acs}");
    let location = acs.header("Location").unwrap_or_default();
    assert!(
        location.starts_with("http://localhost:29786/api/sso/"),
        "ACS for a client with single-sign-on-external-browser: Location {location:?}, \
         expected openconnect's listener"
    );
    lab.assert_headend_running();
}

/// (3) What openconnect-sso 0.8 reads from the success answer besides the token
/// (`parse_auth_complete_response`: `xml.auth.message` and
/// `xml.config["vpn-base-config"]["server-cert-hash"]`, which it passes to openconnect
/// as `--servercert`; lxml objectify raises AttributeError when either is missing), as
/// an ASA sends them: the SHA-1 of the server certificate in hex.
#[test]
fn success_answer_has_what_openconnect_sso_reads() {
    let Some((lab, _idp)) = saml_lab() else {
        return;
    };
    let client = XmlClient::new(&lab, "openconnect-sso", Flavour::OpenconnectSso, TG);
    let (_, success, _) = embedded_login(&lab, &client, "alice");
    expect_success(&success);
    let auth = element(&success.body, "auth").unwrap_or_default();
    assert!(
        auth.contains("<message"),
        "<auth id=\"success\"> has no <message>:\n{success}"
    );
    let pem = std::fs::read(lab.cert_path()).expect("read server cert");
    let der = openssl::x509::X509::from_pem(&pem)
        .and_then(|c| c.to_der())
        .expect("server cert");
    let sha1: String = openssl::sha::sha1(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let base = element(&success.body, "vpn-base-config")
        .unwrap_or_else(|| panic!("no <config><vpn-base-config>:\n{success}"));
    let hash = element(base, "server-cert-hash")
        .unwrap_or_else(|| panic!("no <server-cert-hash>:\n{success}"));
    assert!(
        hash.eq_ignore_ascii_case(&sha1),
        "server-cert-hash {hash}, the certificate's SHA-1 is {sha1}"
    );
}

/// (4) After a refused token the SSO form comes again with a new login context; for a
/// client that did not list `single-sign-on-external-browser` that context must still be
/// the embedded (cookie) flow, whatever STRAP key the client sent: its browser cannot
/// reach `localhost:29786`, and would never see `sso-v2-login-final`.
#[test]
fn embedded_retry_after_refused_token_stays_embedded() {
    let Some((lab, _idp)) = saml_lab() else {
        return;
    };
    let client = XmlClient::new(&lab, "strap-retry", Flavour::StrapEmbedded, TG);
    let first = expect_sso_form(&client.init());
    // A token the headend never minted (e.g. one that expired): refused, new form.
    let refused = client.reply("reply-bogus", &first.opaque, "NOSUCHTOKEN0123456789");
    expect_token_refused(&refused, "a token the headend never minted");
    let retry = expect_sso_form(&refused);
    assert_ne!(retry.login_url, first.login_url, "a new login context");
    let saml = idp_response(
        &lab,
        "alice",
        &retry.login_url,
        &client.curl.path("browser"),
    );
    let acs = post_acs(&client.curl, &saml, &client.curl.path("browser-cookies"));
    let token = expect_cookie_redirect(&acs);
    expect_success(&client.reply("reply", &retry.opaque, &token));
    lab.assert_headend_running();
}

/// (5) The browser mode is the tunnel group's (ASA 9.17+): with `saml external-browser
/// enable` only a client offering `single-sign-on-external-browser` is told
/// `<sso-v2-browser-mode>external`; without it (ASA's default) even that client gets
/// the embedded flow: no browser mode, and the ACS sets the token cookie instead of
/// sending the browser to openconnect's listener.
#[test]
fn browser_mode_follows_the_tunnel_group() {
    let mode = |r: &Reply| r.element("sso-v2-browser-mode");
    if let Some((lab, _idp)) = saml_lab_with(true) {
        let external = XmlClient::new(&lab, "ext-on-external", Flavour::StrapExternal, TG);
        let reply = external.init();
        expect_sso_form(&reply);
        assert_eq!(mode(&reply).as_deref(), Some("external"), "{reply}");
        let embedded = XmlClient::new(&lab, "ext-on-embedded", Flavour::StrapEmbedded, TG);
        let reply = embedded.init();
        expect_sso_form(&reply);
        assert_eq!(
            mode(&reply),
            None,
            "an embedded client told external:\n{reply}"
        );
    }
    let Some((lab, _idp)) = saml_lab_with(false) else {
        return;
    };
    let external = XmlClient::new(&lab, "ext-off-external", Flavour::StrapExternal, TG);
    let reply = external.init();
    let form = expect_sso_form(&reply);
    assert_eq!(
        mode(&reply),
        None,
        "external mode without the command:\n{reply}"
    );
    let saml = idp_response(&lab, "bob", &form.login_url, &external.curl.path("browser"));
    let acs = post_acs(
        &external.curl,
        &saml,
        &external.curl.path("browser-cookies"),
    );
    let location = acs.header("Location").unwrap_or_default();
    assert!(
        !location.starts_with("http://localhost:29786/"),
        "embedded tunnel group sent the browser to openconnect's listener:\n{acs}"
    );
    lab.assert_headend_running();
}

//! The lab's SAML IdP (SimpleSAMLphp in namespace `idp-ID` on the outside bridge) and
//! the external-browser program `netns/sso-browser.sh`, proven without the headend:
//! the browser, run in the client namespace, walks an SP-initiated login against the
//! IdP up to the signed SAMLResponse it would post to the headend's ACS; and the rest
//! of the walk (POST to the ACS, redirect to openconnect's listener on
//! `http://localhost:29786/api/sso/...`) against a stand-in headend and listener.
//!
//! `E2E_SAML_FIXTURE_DIR=DIR` makes `sp_initiated_login_gives_signed_assertion` and
//! `idp_initiated_response_signed_too` write the responses they got, with the IdP's
//! certificate, to DIR (that is how `tests/data/saml/` was made).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use e2e::idp::{self, AuthnRequest, Idp, IdpOptions, SamlCapture};
use e2e::lab::{self, INSIDE_HOST, OUTSIDE_IP, TLS_PORT};
use e2e::{Lab, cmd, netns};

const TG: &str = "company-vpn";
const TG2: &str = "contractors-vpn";
const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// A lab with the IdP for alice and bob (the lab's passwords) and SPs for TG and TG2;
/// `None` = skipped.
fn lab_with_idp(options: &IdpOptions) -> Option<(Lab, Idp)> {
    let lab = Lab::new()?;
    if !idp::available() {
        return None;
    }
    let users = [
        ("alice", lab.password("alice").to_owned()),
        ("bob", lab.password("bob").to_owned()),
    ];
    let users: Vec<(&str, &str)> = users.iter().map(|(u, p)| (*u, p.as_str())).collect();
    let idp = Idp::start_with(&lab, &users, &[TG, TG2], options);
    Some((lab, idp))
}

fn work_dir(lab: &Lab, name: &str) -> PathBuf {
    lab.dir().join(name)
}

/// The text between the end of the first `start` tag opener (`<saml:Audience`) and the
/// next `end` after it.
fn element<'a>(xml: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = xml.find(start)?;
    let rest = &xml[from..];
    let open_end = rest.find('>')? + 1;
    let close = rest[open_end..].find(end)?;
    Some(&rest[open_end..open_end + close])
}

/// The value of `name="..."` in the first tag starting with `tag`.
fn attribute<'a>(xml: &'a str, tag: &str, name: &str) -> Option<&'a str> {
    let from = xml.find(tag)?;
    let open = &xml[from..from + xml[from..].find('>')?];
    let key = format!(" {name}=\"");
    let v = open.find(&key)? + key.len();
    Some(&open[v..v + open[v..].find('"')?])
}

/// xmlsec1 checks the signature at `xpath` in `xml` with `cert` (and nothing else).
fn xmlsec_verify(xml: &str, cert: &Path, xpath: &str, dir: &Path) -> Result<(), String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let file = dir.join(format!("verify-{}.xml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, xml).expect("write xml");
    let out = cmd::output(
        Command::new("xmlsec1")
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(cert)
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:protocol:Response",
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
                "--node-xpath",
                xpath,
            ])
            .arg(&file),
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(cmd::combined(&out))
    }
}

const ASSERTION_SIG: &str = "//*[local-name()='Assertion']/*[local-name()='Signature']";
const RESPONSE_SIG: &str = "/*[local-name()='Response']/*[local-name()='Signature']";

fn xmlsec_available() -> bool {
    if cmd::in_path("xmlsec1") {
        return true;
    }
    assert!(
        !lab::required(),
        "E2E_REQUIRED=1 but xmlsec1 is missing (run netns/install-deps.sh)"
    );
    eprintln!("note: xmlsec1 missing, signatures only checked for presence");
    false
}

/// Checks what the headend's validator will check, on a Response the IdP made for
/// `user` and tunnel group `tg`.
fn check_response(
    idp: &Idp,
    saml: &SamlCapture,
    user: &str,
    tg: &str,
    in_response_to: Option<&str>,
) {
    let xml = &saml.xml;
    let acs = idp::acs_url(tg);
    assert_eq!(saml.acs, acs, "form action = the ACS of {tg}");
    assert!(
        xml.starts_with("<samlp:Response"),
        "a samlp:Response:\n{xml}"
    );
    assert_eq!(
        attribute(xml, "<samlp:Response", "Destination"),
        Some(acs.as_str())
    );
    assert_eq!(
        attribute(xml, "<samlp:Response", "InResponseTo"),
        in_response_to
    );
    assert!(
        xml.contains("<samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/>"),
        "status Success:\n{xml}"
    );
    assert_eq!(
        xml.matches("<saml:Assertion ").count(),
        1,
        "exactly one Assertion"
    );
    let assertion = element(xml, "<saml:Assertion ", "</saml:Assertion>").expect("Assertion");
    let assertion_id = attribute(xml, "<saml:Assertion ", "ID").expect("Assertion ID");
    assert_eq!(
        element(assertion, "<saml:Issuer", "</saml:Issuer>"),
        Some(idp.entity_id())
    );
    // Signed: an enveloped ds:Signature inside the Assertion, referencing it, RSA-SHA256.
    let signature = element(assertion, "<ds:Signature", "</ds:Signature>")
        .unwrap_or_else(|| panic!("no ds:Signature in the Assertion:\n{xml}"));
    assert_eq!(
        attribute(signature, "<ds:Reference", "URI"),
        Some(format!("#{assertion_id}").as_str())
    );
    assert_eq!(
        attribute(signature, "<ds:SignatureMethod", "Algorithm"),
        Some("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    );
    assert_eq!(
        attribute(signature, "<ds:DigestMethod", "Algorithm"),
        Some("http://www.w3.org/2001/04/xmlenc#sha256")
    );
    let email = idp::email_of(user);
    assert_eq!(
        element(assertion, "<saml:NameID", "</saml:NameID>"),
        Some(email.as_str())
    );
    assert_eq!(
        attribute(assertion, "<saml:NameID", "Format"),
        Some(EMAIL_FORMAT)
    );
    assert_eq!(
        attribute(assertion, "<saml:SubjectConfirmationData", "Recipient"),
        Some(acs.as_str())
    );
    assert_eq!(
        attribute(assertion, "<saml:SubjectConfirmationData", "InResponseTo"),
        in_response_to
    );
    assert!(attribute(assertion, "<saml:SubjectConfirmationData", "NotOnOrAfter").is_some());
    assert!(attribute(assertion, "<saml:Conditions", "NotBefore").is_some());
    assert!(attribute(assertion, "<saml:Conditions", "NotOnOrAfter").is_some());
    let audience = idp::sp_entity_id(tg);
    assert_eq!(
        element(assertion, "<saml:Audience>", "</saml:Audience>"),
        Some(audience.as_str())
    );
    let member_of = element(
        assertion,
        "<saml:Attribute Name=\"memberOf\"",
        "</saml:Attribute>",
    )
    .unwrap_or_else(|| panic!("no memberOf attribute:\n{xml}"));
    for group in idp::groups_of(user) {
        assert!(
            member_of.contains(&format!(">{group}</saml:AttributeValue>")),
            "memberOf has {group}: {member_of}"
        );
    }

    if xmlsec_available() {
        let dir = idp.dir();
        xmlsec_verify(xml, &idp.cert_path(), ASSERTION_SIG, dir)
            .unwrap_or_else(|e| panic!("xmlsec1: the Assertion's signature does not verify:\n{e}"));
        // The signature covers the NameID: changing it breaks the signature.
        let forged = xml.replacen(
            &format!(">{email}</saml:NameID>"),
            ">mallory@corp.example</saml:NameID>",
            1,
        );
        assert_ne!(&forged, xml);
        assert!(
            xmlsec_verify(&forged, &idp.cert_path(), ASSERTION_SIG, dir).is_err(),
            "a changed NameID must break the Assertion's signature"
        );
        // And it is this IdP's key that verifies, not the certificate in KeyInfo.
        let other = dir.join("other-cert.pem");
        cmd::must(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args(["-subj", "/CN=other", "-keyout", "/dev/null", "-out"])
                .arg(&other),
        );
        assert!(
            xmlsec_verify(xml, &other, ASSERTION_SIG, dir).is_err(),
            "another certificate must not verify the Assertion"
        );
    }
}

/// Copies a response (`NAME.xml`, `NAME.b64` as posted), the IdP certificate
/// (`NAME.idp-cert.pem`) and the request facts (`NAME.txt`) to `$E2E_SAML_FIXTURE_DIR`,
/// if set.
fn save_fixture(idp: &Idp, saml: &SamlCapture, name: &str, request_id: Option<&str>) {
    let Some(dir) = std::env::var_os("E2E_SAML_FIXTURE_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("mkdir fixture dir");
    std::fs::write(dir.join(format!("{name}.idp-cert.pem")), idp.cert_pem()).expect("write cert");
    std::fs::write(dir.join(format!("{name}.xml")), &saml.xml).expect("write xml");
    std::fs::write(dir.join(format!("{name}.b64")), &saml.response_b64).expect("write b64");
    let facts = format!(
        "idp_entity_id={}\nsso_url={}\nacs={}\nrequest_id={}\nrelay_state={}\n",
        idp.entity_id(),
        idp.sso_url(),
        saml.acs,
        request_id.unwrap_or(""),
        saml.relay_state.as_deref().unwrap_or("")
    );
    std::fs::write(dir.join(format!("{name}.txt")), facts).expect("write facts");
    eprintln!("saved {name} in {}", dir.display());
}

/// The IdP is on the outside bridge: reachable from the client namespace before any
/// tunnel, which still has no route to the inside network. alice logs in through an
/// SP-initiated HTTP-Redirect AuthnRequest for TG; the IdP answers with an
/// auto-submitting form to TG's ACS carrying a Response whose Assertion is signed
/// (RSA-SHA256, verified with xmlsec1 against the IdP's certificate), for TG's
/// audience, alice@corp.example, in response to our request.
#[test]
fn sp_initiated_login_gives_signed_assertion() {
    let Some((lab, idp)) = lab_with_idp(&IdpOptions::default()) else {
        return;
    };
    assert!(
        !lab.ping_from_client(INSIDE_HOST),
        "the client must have no way to the inside network before the tunnel"
    );
    assert!(idp.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    // The IdP's metadata names itself and its endpoints as idp.rs says.
    let meta = lab.exec_client(&["curl", "-sS", "--noproxy", "*", &idp.metadata_url()]);
    let meta = String::from_utf8_lossy(&meta.stdout).into_owned();
    assert!(
        meta.contains(&format!("entityID=\"{}\"", idp.entity_id())),
        "{meta}"
    );
    assert!(
        meta.contains(&format!("Location=\"{}\"", idp.sso_url())),
        "{meta}"
    );
    assert!(
        meta.contains(&format!("Location=\"{}\"", idp.slo_url())),
        "{meta}"
    );
    assert!(
        meta.contains(&idp.cert_body().replace('\n', "")),
        "metadata has the cert"
    );

    // The headend config block that trusts this IdP (printed for whoever wires it up).
    let block = idp.asa_config_block(&format!("https://{OUTSIDE_IP}"));
    eprintln!("{block}{}", idp.asa_tunnel_group_block(TG, "GP-EMPLOYEES"));
    for line in [
        format!("crypto ca trustpoint {}\n", idp::IDP_TRUSTPOINT),
        format!(
            "crypto ca authenticate {}\n{}",
            idp::IDP_TRUSTPOINT,
            idp.cert_pem()
        ),
        "-----END CERTIFICATE-----\nquit\n".to_owned(),
        format!("\n saml idp {}\n", idp.entity_id()),
        format!("\n  url sign-in {}\n", idp.sso_url()),
        format!("\n  url sign-out {}\n", idp.slo_url()),
        format!("\n  base-url https://{OUTSIDE_IP}\n"),
        format!("\n  trustpoint idp {}\n", idp::IDP_TRUSTPOINT),
    ] {
        assert!(
            block.contains(&line),
            "config block lacks {line:?}:\n{block}"
        );
    }

    let request = AuthnRequest::new(TG);
    let relay = "ctx+/=&x y";
    let url = idp.sp_initiated_url(&request, Some(relay));
    let run = idp::run_browser(
        lab.client_ns(),
        &url,
        "alice",
        lab.password("alice"),
        &[("SSO_STOP_AT_ACS", "1")],
        &work_dir(&lab, "browser-alice"),
    );
    assert!(
        run.status.success(),
        "sso-browser.sh failed ({}):\n{}",
        run.status,
        run.log
    );
    let saml = run
        .saml
        .unwrap_or_else(|| panic!("no SAMLResponse:\n{}\n{}", run.log, idp.log()));
    assert_eq!(
        saml.relay_state.as_deref(),
        Some(relay),
        "RelayState comes back as sent"
    );
    check_response(&idp, &saml, "alice", TG, Some(&request.id));
    // Entra's default: the Assertion is signed, the Response itself is not.
    let before_assertion = &saml.xml[..saml.xml.find("<saml:Assertion ").unwrap()];
    assert!(
        !before_assertion.contains("<ds:Signature"),
        "Response not signed by default"
    );
    save_fixture(&idp, &saml, "response-assertion-signed", Some(&request.id));

    // The IdP logged the Response it sent (what to look at when the headend rejects it).
    assert!(
        idp.log().contains(&request.id),
        "idp.log shows the exchange"
    );
}

/// A wrong password: the IdP shows its login form again; sso-browser.sh stops with
/// status 2, says so in its log, and nothing is posted anywhere.
#[test]
fn wrong_password_gives_no_response() {
    let Some((lab, idp)) = lab_with_idp(&IdpOptions::default()) else {
        return;
    };
    let url = idp.sp_initiated_url(&AuthnRequest::new(TG), Some("ctx"));
    let run = idp::run_browser(
        lab.client_ns(),
        &url,
        "alice",
        "not-the-password",
        &[],
        &work_dir(&lab, "browser-wrong"),
    );
    assert_eq!(
        run.status.code(),
        Some(2),
        "exit 2 on rejected credentials:\n{}",
        run.log
    );
    assert!(run.saml.is_none(), "no SAMLResponse for a wrong password");
    assert!(run.log.contains("credentials rejected"), "{}", run.log);
    assert!(
        run.log.contains("Incorrect username or password"),
        "{}",
        run.log
    );
    assert!(
        !run.log.contains("not-the-password"),
        "the password is not logged"
    );

    // bob's password is not alice's either.
    let run = idp::run_browser(
        lab.client_ns(),
        &url,
        "alice",
        lab.password("bob"),
        &[],
        &work_dir(&lab, "browser-wrong2"),
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.log);
}

/// Per-SP signing: TG2 gets the whole Response signed as well (both signatures verify);
/// and an IdP-initiated (unsolicited) login, which has no InResponseTo. bob's groups
/// are his. A kept cookie jar carries the IdP session: without ForceAuthn the second
/// login needs no password.
#[test]
fn idp_initiated_response_signed_too() {
    let options = IdpOptions {
        sign_response_for: vec![TG2.to_owned()],
    };
    let Some((lab, idp)) = lab_with_idp(&options) else {
        return;
    };
    let jar = lab.dir().join("bob-cookies");
    let jar_s = jar.to_string_lossy().into_owned();
    let url = idp.idp_initiated_url(TG2, Some("unsolicited"));
    let run = idp::run_browser(
        lab.client_ns(),
        &url,
        "bob",
        lab.password("bob"),
        &[("SSO_STOP_AT_ACS", "1"), ("SSO_COOKIE_JAR", &jar_s)],
        &work_dir(&lab, "browser-bob"),
    );
    assert!(
        run.status.success(),
        "sso-browser.sh failed ({}):\n{}",
        run.status,
        run.log
    );
    let saml = run
        .saml
        .unwrap_or_else(|| panic!("no SAMLResponse:\n{}", run.log));
    check_response(&idp, &saml, "bob", TG2, None);
    let before_assertion = &saml.xml[..saml.xml.find("<saml:Assertion ").unwrap()];
    assert!(
        before_assertion.contains("<ds:Signature"),
        "Response signed for {TG2}"
    );
    if xmlsec_available() {
        xmlsec_verify(&saml.xml, &idp.cert_path(), RESPONSE_SIG, idp.dir())
            .unwrap_or_else(|e| panic!("the Response's signature does not verify:\n{e}"));
    }
    save_fixture(&idp, &saml, "response-both-signed-unsolicited", None);

    // Same jar, SP-initiated without ForceAuthn: the IdP session is reused, no form.
    let mut request = AuthnRequest::new(TG);
    request.force_authn = false;
    let run = idp::run_browser(
        lab.client_ns(),
        &idp.sp_initiated_url(&request, None),
        "bob",
        "unused-password",
        &[("SSO_STOP_AT_ACS", "1"), ("SSO_COOKIE_JAR", &jar_s)],
        &work_dir(&lab, "browser-bob2"),
    );
    assert!(run.status.success(), "{}", run.log);
    assert!(
        !run.log.contains("login form"),
        "no login form the second time:\n{}",
        run.log
    );
    let saml = run.saml.expect("SAMLResponse");
    check_response(&idp, &saml, "bob", TG, Some(&request.id));
}

// --- the whole browser walk, with stand-ins for the headend and openconnect ----------------

/// A server thread on a listener made in a namespace; stops and joins on drop.
struct Stub {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Stub {
    fn start(listener: TcpListener, mut handle: impl FnMut(TcpStream) + Send + 'static) -> Stub {
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).expect("blocking");
                        stream
                            .set_read_timeout(Some(Duration::from_secs(10)))
                            .expect("timeout");
                        handle(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Stub {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 request: request line, headers (lower-case names), body.
struct Request {
    line: String,
    headers: HashMap<String, String>,
    body: String,
}

fn read_request<R: Read>(stream: R) -> Option<Request> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let line = line.trim_end().to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        line,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn form_decode(s: &str) -> HashMap<String, String> {
    let decode = |v: &str| {
        let bytes = v.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// What the stand-in headend saw.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    acs_cookie: Option<String>,
    acs_form: HashMap<String, String>,
}

/// sso-browser.sh does the whole external-browser walk: GET the headend's login URL
/// (stand-in: sets a cookie, 302 to the IdP with an AuthnRequest and RelayState), log in
/// at the IdP, POST the SAMLResponse to the ACS (stand-in: checks the cookie came back,
/// 302 to http://localhost:29786/api/sso/<blob>?return=...), and GET that URL exactly
/// as written (%2B %2F %3D kept) from a stand-in of openconnect's [::1]:29786 listener,
/// which answers 302 to the return URL, as openconnect 9 does. Exit status 0.
#[test]
fn browser_walk_to_the_listener() {
    let Some((lab, idp)) = lab_with_idp(&IdpOptions::default()) else {
        return;
    };
    let ctx = "ctx0123456789abcdef";
    let request = AuthnRequest::new(TG);
    let idp_url = idp.sp_initiated_url(&request, Some(ctx));
    let listener_path = "/api/sso/AAEAAQ%2Bq%2Fw%3D%3D?return=https%3A%2F%2F198.18.0.1%2F%2BCSCOE%2B%2Fsaml_ac_login.html";
    let listener_url = format!("http://localhost:29786{listener_path}");

    // The stand-in headend: TLS on 198.18.0.1:443 in the headend namespace, with the
    // lab's self-signed certificate (the browser uses -k, as it must for the lab).
    let tls = {
        let mut b = openssl::ssl::SslAcceptor::mozilla_intermediate_v5(
            openssl::ssl::SslMethod::tls_server(),
        )
        .expect("acceptor");
        b.set_private_key_file(lab.key_path(), openssl::ssl::SslFiletype::PEM)
            .expect("key");
        b.set_certificate_chain_file(lab.cert_path()).expect("cert");
        b.build()
    };
    let addr = SocketAddr::from((OUTSIDE_IP, TLS_PORT));
    let gw_listener =
        netns::in_netns(lab.gw_ns(), move || TcpListener::bind(addr)).expect("bind 443");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    let (idp_url2, listener_url2) = (idp_url.clone(), listener_url.clone());
    let _headend = Stub::start(gw_listener, move |tcp| {
        let Ok(mut tls) = tls.accept(tcp) else {
            return;
        };
        let Some(req) = read_request(&mut tls) else {
            return;
        };
        let mut seen = seen2.lock().unwrap();
        seen.requests.push(req.line.clone());
        let reply = if req
            .line
            .starts_with(&format!("GET /+CSCOE+/saml/sp/login?ctx={ctx} "))
        {
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {idp_url2}\r\nSet-Cookie: webvpnlogin={ctx}; \
                 Secure; HttpOnly; path=/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        } else if req.line == format!("POST /+CSCOE+/saml/sp/acs?tgname={TG} HTTP/1.1") {
            seen.acs_cookie = req.headers.get("cookie").cloned();
            seen.acs_form = form_decode(&req.body);
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {listener_url2}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
        };
        let _ = tls.write_all(reply.as_bytes());
        let _ = tls.shutdown();
    });

    // The stand-in of openconnect's listener: [::1]:29786 in the client namespace.
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 29786));
    let oc_listener =
        netns::in_netns(lab.client_ns(), move || TcpListener::bind(v6)).expect("bind ::1");
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let got2 = got.clone();
    let _listener = Stub::start(oc_listener, move |mut tcp| {
        let Some(req) = read_request(&mut tcp) else {
            return;
        };
        let returl = req
            .line
            .split_once("?return=")
            .map(|(_, r)| r.trim_end_matches(" HTTP/1.1").to_owned())
            .unwrap_or_default();
        got2.lock().unwrap().push(req.line);
        let _ = write!(
            tcp,
            "HTTP/1.1 302 Found\r\nConnection: close\r\nContent-Type: text/html\r\n\
             Content-Length: 0\r\nLocation: {returl}\r\n\r\n"
        );
    });

    let start = format!("https://{OUTSIDE_IP}/+CSCOE+/saml/sp/login?ctx={ctx}");
    let run = idp::run_browser(
        lab.client_ns(),
        &start,
        "alice",
        lab.password("alice"),
        &[],
        &work_dir(&lab, "browser-walk"),
    );
    let seen = seen.lock().unwrap();
    assert!(
        run.status.success(),
        "sso-browser.sh failed ({}):\n{}\nheadend saw: {:?}",
        run.status,
        run.log,
        seen.requests
    );
    assert_eq!(
        *got.lock().unwrap(),
        vec![format!("GET {listener_path} HTTP/1.1")],
        "the listener got the URL exactly as the headend wrote it"
    );
    assert_eq!(seen.requests.len(), 2, "{:?}", seen.requests);
    assert_eq!(
        seen.acs_cookie.as_deref(),
        Some(format!("webvpnlogin={ctx}").as_str()),
        "the headend's cookie came back to the ACS"
    );
    assert_eq!(
        seen.acs_form.get("RelayState").map(String::as_str),
        Some(ctx)
    );
    let b64 = seen
        .acs_form
        .get("SAMLResponse")
        .expect("SAMLResponse posted");
    let xml = String::from_utf8(openssl::base64::decode_block(b64).expect("base64")).unwrap();
    let saml = SamlCapture {
        response_b64: b64.clone(),
        xml,
        relay_state: Some(ctx.to_owned()),
        acs: idp::acs_url(TG),
    };
    check_response(&idp, &saml, "alice", TG, Some(&request.id));
    assert!(
        run.log.contains("openconnect's listener answered 302"),
        "{}",
        run.log
    );
    drop(seen);

    // The wrapper for `openconnect --external-browser=` walks the same way.
    let wrapper = idp.browser_for("alice", lab.password("alice"));
    let out = lab.exec_client(&[&wrapper.to_string_lossy(), &start]);
    let log = std::fs::read_to_string(lab.dir().join("sso-browser-alice.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}:\n{}\n{log}",
        wrapper.display(),
        cmd::combined(&out)
    );
    assert_eq!(got.lock().unwrap().len(), 2);
}

/// The saved fixtures (tests/data/saml) still verify with their certificate, and not
/// once changed. No root needed.
#[test]
fn saml_fixtures_verify() {
    let dir = lab::workspace_root().join("tests/data/saml");
    if !dir.is_dir() {
        eprintln!("SKIP saml_fixtures_verify: no {}", dir.display());
        return;
    }
    if !cmd::in_path("xmlsec1") {
        assert!(!lab::required(), "E2E_REQUIRED=1 but xmlsec1 is missing");
        eprintln!("SKIP saml_fixtures_verify: xmlsec1 missing");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("saml-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (name, sigs) in [
        ("response-assertion-signed", vec![ASSERTION_SIG]),
        (
            "response-both-signed-unsolicited",
            vec![ASSERTION_SIG, RESPONSE_SIG],
        ),
    ] {
        let xml = std::fs::read_to_string(dir.join(format!("{name}.xml")))
            .unwrap_or_else(|e| panic!("{name}.xml: {e}"));
        let b64 = std::fs::read_to_string(dir.join(format!("{name}.b64"))).unwrap();
        let cert = dir.join(format!("{name}.idp-cert.pem"));
        assert_eq!(
            openssl::base64::decode_block(b64.trim()).unwrap(),
            xml.as_bytes()
        );
        for sig in sigs {
            xmlsec_verify(&xml, &cert, sig, &tmp)
                .unwrap_or_else(|e| panic!("{name}: {sig} does not verify:\n{e}"));
            let forged = xml.replacen(
                "@corp.example</saml:NameID>",
                "@corp.example.evil</saml:NameID>",
                1,
            );
            assert!(
                xmlsec_verify(&forged, &cert, sig, &tmp).is_err(),
                "{name}: forged verifies"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

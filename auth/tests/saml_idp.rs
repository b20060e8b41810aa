//! A test IdP: an RSA key + self-signed certificate made with the openssl crate,
//! SAML Responses built as text, signed at test time with the `xmlsec1` CLI
//! (Debian package `xmlsec1`). Included by the saml_* test files with
//! `#[path = "saml_idp.rs"] mod saml_idp;` (on its own it has no tests).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

pub const IDP_ENTITY: &str = "https://idp.example.com/saml2/idp/metadata.php";
pub const IDP_SSO: &str = "https://idp.example.com/saml2/idp/SSOService.php";
pub const BASE_URL: &str = "https://vpn.example.com";

pub const NS: &str = r#"xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A key pair + certificate, and a scratch directory for xmlsec1.
pub struct TestIdp {
    pub key: PKey<Private>,
    pub cert_der: Vec<u8>,
    dir: PathBuf,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn make_key_and_cert(cn: &str) -> (PKey<Private>, X509) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}

/// RSA key generation costs ~0.5 s on a busy box: tests share one IdP key
/// unless they need another (`with_fresh_key`).
fn shared_key() -> &'static (PKey<Private>, X509) {
    static SHARED: std::sync::OnceLock<(PKey<Private>, X509)> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| make_key_and_cert("test-idp"))
}

impl TestIdp {
    /// The shared test IdP key and certificate.
    pub fn new(_cn: &str) -> Self {
        let (key, cert) = shared_key();
        Self::from_parts(key.clone(), cert.clone())
    }

    /// A different key (and self-signed certificate) with the same name.
    pub fn with_fresh_key(cn: &str) -> Self {
        let (key, cert) = make_key_and_cert(cn);
        Self::from_parts(key, cert)
    }

    fn from_parts(key: PKey<Private>, cert: X509) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "auth-saml-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key.pem"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.to_pem().unwrap()).unwrap();
        TestIdp {
            key,
            cert_der: cert.to_der().unwrap(),
            dir,
        }
    }

    /// Signs the signature template at `xpath` with xmlsec1. IDs are declared
    /// on Response, Assertion and (for one attack) Status.
    pub fn sign_at(&self, xml: &str, xpath: &str) -> String {
        self.sign_with_keys(xml, xpath, "key.pem")
    }

    /// Like `sign_at`, and xmlsec1 also fills an `<ds:X509Data/>` template in the
    /// signature's KeyInfo with this IdP's certificate.
    pub fn sign_at_embedding_cert(&self, xml: &str, xpath: &str) -> String {
        self.sign_with_keys(xml, xpath, "key.pem,cert.pem")
    }

    fn sign_with_keys(&self, xml: &str, xpath: &str, keys: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let input = self.dir.join(format!("in-{n}.xml"));
        let output = self.dir.join(format!("out-{n}.xml"));
        std::fs::write(&input, xml).unwrap();
        let out = Command::new("xmlsec1")
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(keys)
            .current_dir(&self.dir)
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            ])
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            ])
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:protocol:Status",
            ])
            .args(["--node-xpath", xpath])
            .arg("--output")
            .arg(&output)
            .arg(&input)
            .output()
            .expect("xmlsec1 CLI (Debian package xmlsec1) is needed to sign test responses");
        assert!(
            out.status.success(),
            "xmlsec1 failed: {}\n{xml}",
            String::from_utf8_lossy(&out.stderr)
        );
        let signed = std::fs::read_to_string(&output).unwrap();
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_file(&output);
        signed
    }

    /// Whether the xmlsec1 CLI verifies every signature of `xml` with this
    /// IdP's certificate (shows a tampered document still "verifies").
    pub fn xmlsec1_verifies(&self, xml: &str) -> bool {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let input = self.dir.join(format!("verify-{n}.xml"));
        std::fs::write(&input, xml).unwrap();
        let ok = Command::new("xmlsec1")
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(self.dir.join("cert.pem"))
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            ])
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            ])
            .arg(&input)
            .output()
            .expect("xmlsec1 CLI")
            .status
            .success();
        let _ = std::fs::remove_file(&input);
        ok
    }

    /// Builds and signs `spec` as it asks (assertion first, then response).
    pub fn issue(&self, spec: &ResponseSpec) -> String {
        let mut xml = spec.to_xml();
        if spec.sign_assertion.is_some() {
            xml = self.sign_at(&xml, ASSERTION_SIG_XPATH);
        }
        if spec.sign_response.is_some() {
            xml = self.sign_at(&xml, RESPONSE_SIG_XPATH);
        }
        xml
    }
}

pub const ASSERTION_SIG_XPATH: &str =
    "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']";
pub const RESPONSE_SIG_XPATH: &str = "/*[local-name()='Response']/*[local-name()='Signature']";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RsaSha256,
    RsaSha1,
}

/// An unsigned signature template for xmlsec1: enveloped, exclusive c14n.
pub fn sig_template(reference_id: &str, alg: Alg) -> String {
    let (sig, digest) = match alg {
        Alg::RsaSha256 => (
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmlenc#sha256",
        ),
        Alg::RsaSha1 => (
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "http://www.w3.org/2000/09/xmldsig#sha1",
        ),
    };
    format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{sig}"/><ds:Reference URI="#{reference_id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>"##
    )
}

pub fn t(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn b64(xml: &str) -> String {
    STANDARD.encode(xml)
}

pub fn fresh_id() -> String {
    format!(
        "_t{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every field of a Response we may want to get wrong.
#[derive(Debug, Clone)]
pub struct ResponseSpec {
    pub response_id: String,
    pub assertion_id: String,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub response_issuer: Option<String>,
    pub assertion_issuer: String,
    pub status: String,
    /// Inserted verbatim (may contain markup for attacks).
    pub name_id_xml: String,
    pub name_id_format: String,
    pub recipient: String,
    pub scd_in_response_to: Option<String>,
    pub audience: Option<String>,
    pub issue_instant: SystemTime,
    pub not_before: SystemTime,
    pub not_on_or_after: SystemTime,
    pub scd_not_on_or_after: SystemTime,
    pub session_not_on_or_after: Option<SystemTime>,
    pub attributes: Vec<(String, Vec<String>)>,
    pub sign_assertion: Option<Alg>,
    pub sign_response: Option<Alg>,
}

impl ResponseSpec {
    /// A Response that must be accepted by `sp` for `request_id` at `now`:
    /// assertion signed with RSA-SHA256, Response unsigned (the Entra default).
    pub fn valid(entity_id: &str, acs_url: &str, request_id: &str, now: SystemTime) -> Self {
        ResponseSpec {
            response_id: fresh_id(),
            assertion_id: fresh_id(),
            destination: Some(acs_url.to_string()),
            in_response_to: Some(request_id.to_string()),
            response_issuer: Some(IDP_ENTITY.to_string()),
            assertion_issuer: IDP_ENTITY.to_string(),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".to_string(),
            name_id_xml: "alice@corp.example".to_string(),
            name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".to_string(),
            recipient: acs_url.to_string(),
            scd_in_response_to: Some(request_id.to_string()),
            audience: Some(entity_id.to_string()),
            issue_instant: now - secs(2),
            not_before: now - secs(5),
            not_on_or_after: now + secs(300),
            scd_not_on_or_after: now + secs(300),
            session_not_on_or_after: Some(now + secs(8 * 3600)),
            attributes: vec![
                (
                    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups".to_string(),
                    vec!["vpn-users".to_string(), "engineering".to_string()],
                ),
                ("mail".to_string(), vec!["alice@corp.example".to_string()]),
            ],
            sign_assertion: Some(Alg::RsaSha256),
            sign_response: None,
        }
    }

    /// The assertion element alone (with its signature template if asked).
    pub fn assertion_xml(&self) -> String {
        let sig = self
            .sign_assertion
            .map(|a| sig_template(&self.assertion_id, a))
            .unwrap_or_default();
        let irt = self
            .scd_in_response_to
            .as_ref()
            .map(|i| format!(r#" InResponseTo="{i}""#))
            .unwrap_or_default();
        let audience = self
            .audience
            .as_ref()
            .map(|a| {
                format!(
                    "<saml:AudienceRestriction><saml:Audience>{a}</saml:Audience></saml:AudienceRestriction>"
                )
            })
            .unwrap_or_default();
        let session = self
            .session_not_on_or_after
            .map(|s| format!(r#" SessionNotOnOrAfter="{}""#, t(s)))
            .unwrap_or_default();
        let mut attrs = String::new();
        if !self.attributes.is_empty() {
            attrs.push_str("<saml:AttributeStatement>");
            for (name, values) in &self.attributes {
                attrs.push_str(&format!(r#"<saml:Attribute Name="{name}">"#));
                for v in values {
                    attrs.push_str(&format!("<saml:AttributeValue>{v}</saml:AttributeValue>"));
                }
                attrs.push_str("</saml:Attribute>");
            }
            attrs.push_str("</saml:AttributeStatement>");
        }
        format!(
            r#"<saml:Assertion ID="{id}" Version="2.0" IssueInstant="{ii}"><saml:Issuer>{issuer}</saml:Issuer>{sig}<saml:Subject><saml:NameID Format="{fmt}">{name}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{scd_noa}" Recipient="{recipient}"{irt}/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{nb}" NotOnOrAfter="{noa}">{audience}</saml:Conditions><saml:AuthnStatement AuthnInstant="{ii}"{session} SessionIndex="_s1"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>{attrs}</saml:Assertion>"#,
            id = self.assertion_id,
            ii = t(self.issue_instant),
            issuer = self.assertion_issuer,
            fmt = self.name_id_format,
            name = self.name_id_xml,
            scd_noa = t(self.scd_not_on_or_after),
            recipient = self.recipient,
            nb = t(self.not_before),
            noa = t(self.not_on_or_after),
        )
    }

    pub fn to_xml(&self) -> String {
        let dest = self
            .destination
            .as_ref()
            .map(|d| format!(r#" Destination="{d}""#))
            .unwrap_or_default();
        let irt = self
            .in_response_to
            .as_ref()
            .map(|i| format!(r#" InResponseTo="{i}""#))
            .unwrap_or_default();
        let issuer = self
            .response_issuer
            .as_ref()
            .map(|i| format!("<saml:Issuer>{i}</saml:Issuer>"))
            .unwrap_or_default();
        let sig = self
            .sign_response
            .map(|a| sig_template(&self.response_id, a))
            .unwrap_or_default();
        format!(
            r#"<samlp:Response {NS} ID="{id}" Version="2.0" IssueInstant="{ii}"{dest}{irt}>{issuer}{sig}<samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status>{assertion}</samlp:Response>"#,
            id = self.response_id,
            ii = t(self.issue_instant),
            status = self.status,
            assertion = self.assertion_xml(),
        )
    }
}

/// The first `<saml:Assertion ...>...</saml:Assertion>` in `xml` (no nesting in
/// the documents we build).
pub fn extract_assertion(xml: &str) -> &str {
    let start = xml.find("<saml:Assertion ").expect("assertion start");
    let end = xml[start..]
        .find("</saml:Assertion>")
        .expect("assertion end")
        + start;
    &xml[start..end + "</saml:Assertion>".len()]
}

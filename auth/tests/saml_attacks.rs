//! The SAML attack suite: every Response is built as text and signed at test
//! time (openssl crate for the IdP key and certificate, the `xmlsec1` CLI for
//! XML-DSig), then tampered with the way an attacker would. Each must be refused
//! with its specific `SamlReject`; the valid ones must pass. Where a rule is also
//! samael's, a "samael alone" check shows what the library itself does with the
//! same document (stripping unsigned content, or a gap we close).

#[path = "saml_idp.rs"]
mod saml_idp;

use std::time::SystemTime;

use auth::saml::{SamlLogin, SamlReject, SamlSp, SpConfig, SpConfigError, XmlSignatureAlgorithm};
use samael::crypto::{CertificateDer, CryptoProvider, ReduceMode, XmlSec};
use saml_idp::*;

const RELAY: &str = "ctx-0123456789";

struct Ctx {
    idp: TestIdp,
    sp: SamlSp,
    now: SystemTime,
}

fn config(idp: &TestIdp, tg: &str) -> SpConfig {
    SpConfig::new(
        tg,
        BASE_URL,
        IDP_ENTITY,
        IDP_SSO,
        vec![idp.cert_der.clone()],
    )
}

fn ctx() -> Ctx {
    ctx_with(|_| {})
}

fn ctx_with(f: impl FnOnce(&mut SpConfig)) -> Ctx {
    let idp = TestIdp::new("test-idp");
    let mut cfg = config(&idp, "SAML-TG");
    f(&mut cfg);
    let sp = SamlSp::new(cfg).unwrap();
    Ctx {
        idp,
        sp,
        now: SystemTime::now(),
    }
}

impl Ctx {
    fn request(&self) -> String {
        self.sp
            .authn_request(self.now, Some(RELAY))
            .unwrap()
            .request_id
    }
    fn spec(&self, request_id: &str) -> ResponseSpec {
        ResponseSpec::valid(self.sp.entity_id(), self.sp.acs_url(), request_id, self.now)
    }
    /// A fresh request and a valid, signed answer to it.
    fn valid(&self) -> (String, String) {
        let req = self.request();
        let xml = self.idp.issue(&self.spec(&req));
        (req, xml)
    }
    fn submit(&self, xml: &str) -> Result<SamlLogin, SamlReject> {
        self.sp.validate_response(self.now, &b64(xml), Some(RELAY))
    }
    fn samael_alone(&self) -> samael::service_provider::ServiceProvider {
        samael_sp(&self.idp, &self.sp)
    }
}

/// samael configured like ours (same certificate, SHA-256+), time windows
/// widened; for showing what the library does on its own.
fn samael_sp(idp: &TestIdp, sp: &SamlSp) -> samael::service_provider::ServiceProvider {
    use base64::Engine as _;
    let md = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP_ENTITY}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO}"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
        base64::engine::general_purpose::STANDARD.encode(&idp.cert_der)
    );
    let idp_md: samael::metadata::EntityDescriptor = md.parse().unwrap();
    samael::service_provider::ServiceProviderBuilder::default()
        .entity_id(sp.entity_id().to_string())
        .acs_url(sp.acs_url().to_string())
        .idp_metadata(idp_md)
        .allowed_signature_algorithms(vec![samael::crypto::AllowedSignatureAlgorithm::RsaSha256])
        .max_issue_delay(chrono::TimeDelta::days(1))
        .max_clock_skew(chrono::TimeDelta::days(1))
        .build()
        .unwrap()
}

/// What samael alone returns as the NameID, or its error as text.
fn samael_name(
    s: &samael::service_provider::ServiceProvider,
    xml: &str,
    req: &str,
) -> Result<String, String> {
    s.parse_xml_response(xml, Some(&[req]))
        .map(|a| a.subject.unwrap().name_id.unwrap().value)
        .map_err(|e| e.to_string())
}

/// samael's signature reduction: only what a verified signature covers.
fn samael_reduce(idp: &TestIdp, xml: &str) -> Result<String, String> {
    XmlSec::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &[CertificateDer::from(idp.cert_der.clone())],
        ReduceMode::default(),
        Some(&[samael::crypto::AllowedSignatureAlgorithm::RsaSha256]),
    )
    .map_err(|e| e.to_string())
}

fn evil_assertion(c: &Ctx, req: &str) -> String {
    let mut evil = c.spec(req);
    evil.assertion_id = fresh_id();
    evil.name_id_xml = "mallory@corp.example".into();
    evil.attributes = vec![("groups".into(), vec!["domain-admins".into()])];
    evil.sign_assertion = None;
    evil.assertion_xml()
}

// ---------------------------------------------------------------- accepted

#[test]
fn valid_assertion_signed_response_accepted() {
    let c = ctx();
    let (req, xml) = c.valid();
    let login = c.submit(&xml).unwrap();
    assert_eq!(login.name_id, "alice@corp.example");
    assert_eq!(
        login.name_id_format.as_deref(),
        Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
    );
    assert_eq!(login.tunnel_group, "SAML-TG");
    assert_eq!(
        login.attributes["http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"],
        vec!["vpn-users".to_string(), "engineering".to_string()]
    );
    assert_eq!(login.attributes["mail"], vec!["alice@corp.example"]);
    let session_end = login.session_not_on_or_after.unwrap();
    let expect = c.spec(&req).session_not_on_or_after.unwrap();
    let diff = session_end
        .duration_since(expect)
        .unwrap_or_else(|e| e.duration());
    assert!(diff.as_secs() <= 1, "SessionNotOnOrAfter returned");
    assert!(!login.assertion_id.is_empty());
    assert_eq!(c.sp.replay_cache_len(), 1);
}

#[test]
fn valid_response_signed_only_accepted() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.sign_assertion = None;
    spec.sign_response = Some(Alg::RsaSha256);
    assert_eq!(
        c.submit(&c.idp.issue(&spec)).unwrap().name_id,
        "alice@corp.example"
    );
}

#[test]
fn valid_both_signed_accepted() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.sign_response = Some(Alg::RsaSha256);
    assert!(c.submit(&c.idp.issue(&spec)).is_ok());
}

#[test]
fn rsa_sha1_accepted_only_when_configured() {
    let c = ctx_with(|cfg| {
        cfg.allowed_signature_algorithms = vec![
            XmlSignatureAlgorithm::RsaSha1,
            XmlSignatureAlgorithm::RsaSha256,
        ]
    });
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.sign_assertion = Some(Alg::RsaSha1);
    assert!(c.submit(&c.idp.issue(&spec)).is_ok());
}

#[test]
fn verification_works_from_many_threads() {
    let c = std::sync::Arc::new(ctx());
    let docs: Vec<String> = (0..4).map(|_| c.valid().1).collect();
    let handles: Vec<_> = docs
        .into_iter()
        .map(|xml| {
            let c = c.clone();
            std::thread::spawn(move || c.submit(&xml).map(|l| l.name_id))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), "alice@corp.example");
    }
}

// ---------------------------------------------------------------- signatures

#[test]
fn unsigned_response_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.sign_assertion = None;
    let xml = c.idp.issue(&spec);
    assert_eq!(c.submit(&xml), Err(SamlReject::Unsigned));
    // samael alone refuses it too (it has a certificate configured).
    assert!(samael_name(&c.samael_alone(), &xml, &req).is_err());
}

#[test]
fn sp_without_idp_certificate_refuses_to_start() {
    let idp = TestIdp::new("x");
    let mut cfg = config(&idp, "SAML-TG");
    cfg.idp_signing_certs.clear();
    assert_eq!(
        SamlSp::new(cfg).unwrap_err(),
        SpConfigError::MissingIdpCertificate
    );
}

#[test]
fn tampered_assertion_in_signed_response_refused() {
    // The IdP signed the whole Response (assertion unsigned inside); the attacker
    // swaps the name.
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.sign_assertion = None;
    spec.sign_response = Some(Alg::RsaSha256);
    let xml = c.idp.issue(&spec).replace(
        ">alice@corp.example</saml:NameID>",
        ">mallory@corp.example</saml:NameID>",
    );
    assert!(xml.contains("mallory"));
    assert_eq!(c.submit(&xml), Err(SamlReject::BadSignature));
}

#[test]
fn unsigned_assertion_next_to_signed_one_refused() {
    // A Response whose (signed) assertion is genuine, plus an injected unsigned one.
    let c = ctx();
    let (req, signed) = c.valid();
    let evil = evil_assertion(&c, &req);
    let xml = signed.replace("</samlp:Response>", &format!("{evil}</samlp:Response>"));
    assert_eq!(c.submit(&xml), Err(SamlReject::AssertionCount { found: 2 }));
    // samael alone strips the unsigned one and returns the signed (alice) one.
    assert_eq!(
        samael_name(&c.samael_alone(), &xml, &req).as_deref(),
        Ok("alice@corp.example")
    );
}

#[test]
fn unsigned_assertion_in_response_signed_over_other_element_refused() {
    // The Response carries a valid IdP signature, but over its Status only; the
    // assertion is unsigned.
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.sign_assertion = None;
    let status_id = fresh_id();
    let unsigned = spec.to_xml().replacen(
        "<samlp:Status>",
        &format!(
            "{}<samlp:Status ID=\"{status_id}\">",
            sig_template(&status_id, Alg::RsaSha256)
        ),
        1,
    );
    let xml = c.idp.sign_at(&unsigned, RESPONSE_SIG_XPATH);
    assert_eq!(
        c.submit(&xml),
        Err(SamlReject::SignatureStructure(
            "Reference does not point at the signed element"
        ))
    );
    // Proof that samael strips unsigned content: its reduction keeps the Status
    // and drops the assertion, so it finds no assertion to return.
    let reduced = samael_reduce(&c.idp, &xml).unwrap();
    assert!(reduced.contains("StatusCode"));
    assert!(!reduced.contains("Assertion"), "{reduced}");
    assert!(samael_name(&c.samael_alone(), &xml, &req).is_err());
}

#[test]
fn signature_by_another_key_refused() {
    let c = ctx();
    let req = c.request();
    let evil_idp = TestIdp::with_fresh_key("test-idp"); // same name, other key
    let xml = evil_idp.issue(&c.spec(&req));
    assert_eq!(c.submit(&xml), Err(SamlReject::BadSignature));

    // Same, with the attacker's certificate embedded in KeyInfo: it is ignored,
    // only the configured `trustpoint idp` certificate counts.
    let req = c.request();
    let template = c.spec(&req).to_xml().replacen(
        "<ds:SignatureValue/></ds:Signature>",
        "<ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>",
        1,
    );
    let xml = evil_idp.sign_at_embedding_cert(&template, ASSERTION_SIG_XPATH);
    assert!(xml.contains("<ds:X509Certificate>"));
    assert!(
        evil_idp.xmlsec1_verifies(&xml),
        "self-consistent with its own cert"
    );
    assert_eq!(c.submit(&xml), Err(SamlReject::BadSignature));
}

#[test]
fn key_info_retrieval_method_refused() {
    let c = ctx();
    let (_, signed) = c.valid();
    let xml = signed.replacen(
        "</ds:SignatureValue>",
        "</ds:SignatureValue><ds:KeyInfo><ds:RetrievalMethod URI=\"http://198.18.1.66/key\"/></ds:KeyInfo>",
        1,
    );
    assert_eq!(
        c.submit(&xml),
        Err(SamlReject::SignatureStructure(
            "ds:RetrievalMethod in a signature"
        ))
    );
}

#[test]
fn rsa_sha1_refused_by_default() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.sign_assertion = Some(Alg::RsaSha1);
    let xml = c.idp.issue(&spec);
    assert_eq!(
        c.submit(&xml),
        Err(SamlReject::DisallowedAlgorithm {
            algorithm: "http://www.w3.org/2000/09/xmldsig#rsa-sha1".into()
        })
    );
    // samael alone, with its allow-list set, refuses it as well.
    assert!(samael_name(&c.samael_alone(), &xml, &req).is_err());
}

// ---------------------------------------------------------------- wrapping (XSW)

#[test]
fn xsw_signed_assertion_moved_into_extensions_refused() {
    let c = ctx();
    let (req, signed) = c.valid();
    let original = extract_assertion(&signed).to_string();
    let evil = evil_assertion(&c, &req);
    let xml = signed.replace(
        &original,
        &format!("{evil}<samlp:Extensions>{original}</samlp:Extensions>"),
    );
    assert_eq!(c.submit(&xml), Err(SamlReject::AssertionCount { found: 2 }));
    // samael alone: whatever it returns, it is never mallory.
    let reduced = samael_reduce(&c.idp, &xml).unwrap();
    assert!(!reduced.contains("mallory"), "{reduced}");
    assert_ne!(
        samael_name(&c.samael_alone(), &xml, &req).as_deref(),
        Ok("mallory@corp.example")
    );
}

#[test]
fn xsw_evil_first_signed_second_refused() {
    let c = ctx();
    let (req, signed) = c.valid();
    let original = extract_assertion(&signed).to_string();
    let evil = evil_assertion(&c, &req);
    let xml = signed.replace(&original, &format!("{evil}{original}"));
    assert_eq!(c.submit(&xml), Err(SamlReject::AssertionCount { found: 2 }));
    assert_ne!(
        samael_name(&c.samael_alone(), &xml, &req).as_deref(),
        Ok("mallory@corp.example")
    );
}

#[test]
fn xsw_duplicated_assertion_same_id_evil_content_refused() {
    let c = ctx();
    let (req, signed) = c.valid();
    let original = extract_assertion(&signed).to_string();
    // A copy of the signed assertion (same ID, same signature) with the name changed.
    let evil_copy = original.replace(
        ">alice@corp.example</saml:NameID>",
        ">mallory@corp.example</saml:NameID>",
    );
    let xml = signed.replace(&original, &format!("{evil_copy}{original}"));
    assert!(matches!(
        c.submit(&xml),
        Err(SamlReject::DuplicateId { .. })
    ));
    // samael alone refuses duplicate IDs too.
    assert!(samael_name(&c.samael_alone(), &xml, &req).is_err());
}

#[test]
fn xsw_signed_assertion_inside_evil_advice_refused() {
    let c = ctx();
    let (req, signed) = c.valid();
    let original = extract_assertion(&signed).to_string();
    let evil = evil_assertion(&c, &req).replace(
        "</saml:Assertion>",
        &format!("<saml:Advice>{original}</saml:Advice></saml:Assertion>"),
    );
    let xml = signed.replace(&original, &evil);
    assert_eq!(c.submit(&xml), Err(SamlReject::AssertionCount { found: 2 }));
    assert_ne!(
        samael_name(&c.samael_alone(), &xml, &req).as_deref(),
        Ok("mallory@corp.example")
    );
}

#[test]
fn xsw_signed_assertion_inside_signature_object_refused() {
    let c = ctx();
    let (req, signed) = c.valid();
    let original = extract_assertion(&signed).to_string();
    // Evil assertion that carries the original signature's element with the
    // genuine assertion tucked into a ds:Object (XSW-7/8 shape).
    let evil = evil_assertion(&c, &req).replacen(
        "<saml:Subject>",
        &format!(
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:Object>{original}</ds:Object></ds:Signature><saml:Subject>"
        ),
        1,
    );
    let xml = signed.replace(&original, &evil);
    assert_eq!(
        c.submit(&xml),
        Err(SamlReject::SignatureStructure(
            "ds:Object or ds:Manifest in a signature"
        ))
    );
    assert_ne!(
        samael_name(&c.samael_alone(), &xml, &req).as_deref(),
        Ok("mallory@corp.example")
    );
}

// ---------------------------------------------------------------- addressing

#[test]
fn wrong_audience_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.audience = Some("https://other-sp.example.com/metadata".into());
    assert_eq!(
        c.submit(&c.idp.issue(&spec)),
        Err(SamlReject::WrongAudience)
    );
}

#[test]
fn missing_audience_refused_though_samael_accepts_it() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.audience = None;
    let xml = c.idp.issue(&spec);
    assert_eq!(c.submit(&xml), Err(SamlReject::WrongAudience));
    // The gap: samael alone skips the audience check without an AudienceRestriction.
    assert_eq!(
        samael_name(&c.samael_alone(), &xml, &req).as_deref(),
        Ok("alice@corp.example")
    );
}

#[test]
fn wrong_recipient_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.recipient = "https://evil.example.com/acs".into();
    assert_eq!(
        c.submit(&c.idp.issue(&spec)),
        Err(SamlReject::WrongRecipient {
            found: "https://evil.example.com/acs".into()
        })
    );
}

#[test]
fn wrong_destination_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.destination = Some("https://evil.example.com/acs".into());
    assert_eq!(
        c.submit(&c.idp.issue(&spec)),
        Err(SamlReject::WrongDestination {
            found: "https://evil.example.com/acs".into()
        })
    );
}

#[test]
fn missing_destination_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.destination = None;
    assert_eq!(
        c.submit(&c.idp.issue(&spec)),
        Err(SamlReject::WrongDestination {
            found: "(none)".into()
        })
    );
}

#[test]
fn wrong_issuer_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.assertion_issuer = "https://evil-idp.example.com".into();
    spec.response_issuer = None;
    assert_eq!(
        c.submit(&c.idp.issue(&spec)),
        Err(SamlReject::WrongIssuer {
            found: "https://evil-idp.example.com".into()
        })
    );
}

#[test]
fn response_for_another_tunnel_group_refused() {
    let idp = TestIdp::new("test-idp");
    let sp_a = SamlSp::new(config(&idp, "SAML-A")).unwrap();
    let sp_b = SamlSp::new(config(&idp, "SAML-B")).unwrap();
    let now = SystemTime::now();
    let req_a = sp_a.authn_request(now, Some(RELAY)).unwrap().request_id;
    let req_b = sp_b.authn_request(now, Some(RELAY)).unwrap().request_id;

    // (1) B's genuine answer to B's request, posted to A's ACS.
    let for_b = idp.issue(&ResponseSpec::valid(
        sp_b.entity_id(),
        sp_b.acs_url(),
        &req_b,
        now,
    ));
    assert!(matches!(
        sp_a.validate_response(now, &b64(&for_b), Some(RELAY)),
        Err(SamlReject::WrongDestination { .. })
    ));

    // (2) Answers A's request, but addressed (audience, recipient, destination) to B.
    let crossed = idp.issue(&ResponseSpec::valid(
        sp_b.entity_id(),
        sp_b.acs_url(),
        &req_a,
        now,
    ));
    assert!(matches!(
        sp_a.validate_response(now, &b64(&crossed), Some(RELAY)),
        Err(SamlReject::WrongDestination { .. })
    ));

    // (3) Everything A's except the audience, which is B's.
    let req_a2 = sp_a.authn_request(now, Some(RELAY)).unwrap().request_id;
    let mut spec = ResponseSpec::valid(sp_a.entity_id(), sp_a.acs_url(), &req_a2, now);
    spec.audience = Some(sp_b.entity_id().to_string());
    assert_eq!(
        sp_a.validate_response(now, &b64(&idp.issue(&spec)), Some(RELAY)),
        Err(SamlReject::WrongAudience)
    );

    // (4) A's Destination, B's request ID: A never sent it.
    let req_b2 = sp_b.authn_request(now, Some(RELAY)).unwrap().request_id;
    let spec = ResponseSpec::valid(sp_a.entity_id(), sp_a.acs_url(), &req_b2, now);
    assert_eq!(
        sp_a.validate_response(now, &b64(&idp.issue(&spec)), Some(RELAY)),
        Err(SamlReject::UnknownRequest)
    );
    // ... and B still accepts a correct answer to it? No: B's request is intact,
    // since A never consumed it.
    let spec = ResponseSpec::valid(sp_b.entity_id(), sp_b.acs_url(), &req_b2, now);
    assert!(
        sp_b.validate_response(now, &b64(&idp.issue(&spec)), Some(RELAY))
            .is_ok()
    );
}

// ---------------------------------------------------------------- time

#[test]
fn expired_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.not_before = c.now - secs(900);
    spec.not_on_or_after = c.now - secs(600);
    spec.scd_not_on_or_after = c.now - secs(600);
    assert_eq!(c.submit(&c.idp.issue(&spec)), Err(SamlReject::Expired));
}

#[test]
fn expired_by_injected_clock_refused() {
    // Sans-IO: the same valid response (NotOnOrAfter +300 s), judged 7 minutes later.
    let c = ctx();
    let (_, xml) = c.valid();
    assert_eq!(
        c.sp.validate_response(c.now + secs(420), &b64(&xml), Some(RELAY)),
        Err(SamlReject::Expired)
    );
}

#[test]
fn not_yet_valid_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.not_before = c.now + secs(600);
    spec.not_on_or_after = c.now + secs(900);
    assert_eq!(c.submit(&c.idp.issue(&spec)), Err(SamlReject::NotYetValid));
}

#[test]
fn small_skew_tolerated() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.issue_instant = c.now + secs(20);
    spec.not_before = c.now + secs(20);
    assert!(c.submit(&c.idp.issue(&spec)).is_ok());
}

#[test]
fn timeout_assertion_caps_validity() {
    let c = ctx_with(|cfg| cfg.timeout_assertion = Some(secs(30)));
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.issue_instant = c.now - secs(80);
    spec.not_before = c.now - secs(120);
    // The IdP says 5 more minutes; `timeout assertion 30` says it ended 90 s ago
    // (skew capped to 30 s too).
    assert_eq!(c.submit(&c.idp.issue(&spec)), Err(SamlReject::Expired));
}

#[test]
fn stale_issue_instant_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.issue_instant = c.now - secs(600);
    spec.not_before = c.now - secs(600);
    assert_eq!(c.submit(&c.idp.issue(&spec)), Err(SamlReject::Stale));
}

#[test]
fn ended_idp_session_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.session_not_on_or_after = Some(c.now - secs(1));
    assert_eq!(
        c.submit(&c.idp.issue(&spec)),
        Err(SamlReject::SessionExpired)
    );
}

// ---------------------------------------------------------------- one-time use

#[test]
fn replayed_assertion_refused() {
    let c = ctx();
    let (_, xml) = c.valid();
    assert!(c.submit(&xml).is_ok());
    assert_eq!(c.submit(&xml), Err(SamlReject::Replayed));
}

#[test]
fn replayed_assertion_refused_even_for_a_new_request() {
    // The same assertion ID re-signed into an answer to a new request (an IdP
    // bug or a stolen signing key replaying): the replay cache still says no.
    let c = ctx();
    let req1 = c.request();
    let spec1 = c.spec(&req1);
    assert!(c.submit(&c.idp.issue(&spec1)).is_ok());
    let req2 = c.request();
    let mut spec2 = c.spec(&req2);
    spec2.assertion_id = spec1.assertion_id.clone();
    assert_eq!(c.submit(&c.idp.issue(&spec2)), Err(SamlReject::Replayed));
}

#[test]
fn unknown_in_response_to_refused() {
    let c = ctx();
    let xml = c.idp.issue(&c.spec("_never_sent_by_us"));
    assert_eq!(c.submit(&xml), Err(SamlReject::UnknownRequest));
}

#[test]
fn in_response_to_reused_refused() {
    let c = ctx();
    let req = c.request();
    assert!(c.submit(&c.idp.issue(&c.spec(&req))).is_ok());
    // A second, different, genuinely signed assertion for the same request.
    let xml = c.idp.issue(&c.spec(&req));
    assert_eq!(c.submit(&xml), Err(SamlReject::RequestAlreadyAnswered));
}

#[test]
fn expired_request_refused() {
    let c = ctx();
    let req =
        c.sp.authn_request(c.now - secs(3600), Some(RELAY))
            .unwrap()
            .request_id;
    let xml = c.idp.issue(&c.spec(&req));
    assert_eq!(c.submit(&xml), Err(SamlReject::RequestExpired));
}

#[test]
fn unsolicited_response_refused() {
    let c = ctx();
    let mut spec = c.spec("_x");
    spec.in_response_to = None;
    spec.scd_in_response_to = None;
    assert_eq!(c.submit(&c.idp.issue(&spec)), Err(SamlReject::Unsolicited));
}

#[test]
fn relay_state_mismatch_refused() {
    let c = ctx();
    let (_, xml) = c.valid();
    assert_eq!(
        c.sp.validate_response(c.now, &b64(&xml), Some("someone-else")),
        Err(SamlReject::RelayStateMismatch)
    );
}

// ---------------------------------------------------------------- NameID tricks

#[test]
fn name_id_with_xml_comment_refused() {
    // The IdP signs the attacker's own account name; the attacker adds a comment
    // after signing (exclusive c14n drops comments, so the signature still holds).
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.name_id_xml = "alice@corp.example.evil.com".into();
    let signed = c.idp.issue(&spec);
    let xml = signed.replace(
        ">alice@corp.example.evil.com<",
        ">alice@corp.example<!---->.evil.com<",
    );
    assert_ne!(xml, signed);
    assert_eq!(c.submit(&xml), Err(SamlReject::XmlComment));

    // The attack is real at the XML-DSig level: the signature still verifies.
    assert!(c.idp.xmlsec1_verifies(&xml));
    // samael 0.0.22 alone happens to refuse it (its signed-content reduction);
    // what matters is that it never yields the truncated name.
    let samael_says = samael_name(&c.samael_alone(), &xml, &req);
    println!("samael alone on the commented NameID: {samael_says:?}");
    assert_ne!(samael_says.as_deref(), Ok("alice@corp.example"));
}

#[test]
fn name_id_split_by_cdata_never_truncated() {
    // Same idea with CDATA (c14n turns CDATA into text, so the signature holds):
    // either the full name or a refusal, never "alice@corp.example".
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.name_id_xml = "alice@corp.example.evil.com".into();
    let xml = c.idp.issue(&spec).replace(
        ">alice@corp.example.evil.com<",
        ">alice@corp.example<![CDATA[.evil.com]]><",
    );
    assert!(c.idp.xmlsec1_verifies(&xml));
    // samael 0.0.22 refuses the signature after its reduction step (BadSignature);
    // our own reading would be the full string or BadNameId. Never truncated.
    match c.submit(&xml) {
        Ok(login) => assert_eq!(login.name_id, "alice@corp.example.evil.com"),
        Err(e) => assert!(
            matches!(e, SamlReject::BadNameId | SamlReject::BadSignature),
            "{e:?}"
        ),
    }
    assert_ne!(
        samael_name(&c.samael_alone(), &xml, &req).as_deref(),
        Ok("alice@corp.example")
    );
}

#[test]
fn name_id_with_nested_element_refused() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.name_id_xml = "alice@corp.example<x>y</x>".into();
    assert_eq!(c.submit(&c.idp.issue(&spec)), Err(SamlReject::BadNameId));
}

// ---------------------------------------------------------------- DTD / XXE

#[test]
fn doctype_xxe_and_entity_expansion_refused() {
    let c = ctx();
    let (_, signed) = c.valid();
    let body = signed
        .trim_start_matches("<?xml version=\"1.0\"?>")
        .trim_start();
    let xxe = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n{}",
        body.replace(">alice@corp.example<", ">&xxe;<")
    );
    let laughs = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>\n{}",
        body.replace(">alice@corp.example<", ">&c;<")
    );
    let external_dtd = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE samlp:Response SYSTEM \"http://198.18.1.66/evil.dtd\">\n{body}"
    );
    let plain_doctype = format!("<!DOCTYPE samlp:Response>{body}");
    for doc in [xxe, laughs, external_dtd, plain_doctype] {
        assert_eq!(c.submit(&doc), Err(SamlReject::Dtd), "{doc}");
    }
    // An entity reference without a DTD is undefined: refused the same way.
    let undeclared = signed.replace(">alice@corp.example<", ">&xxe;<");
    assert_eq!(c.submit(&undeclared), Err(SamlReject::Dtd));
}

// ---------------------------------------------------------------- odd documents

#[test]
fn idp_error_status_refused() {
    let c = ctx();
    let req = c.request();
    let xml = format!(
        r#"<samlp:Response {NS} ID="{}" Version="2.0" IssueInstant="{}" Destination="{}" InResponseTo="{req}"><saml:Issuer>{IDP_ENTITY}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode></samlp:Status></samlp:Response>"#,
        fresh_id(),
        t(c.now),
        c.sp.acs_url()
    );
    let err = c.submit(&xml).unwrap_err();
    assert_eq!(
        err,
        SamlReject::IdpStatus {
            status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into()
        }
    );
    // The page echoes it escaped, never raw.
    assert!(err.error_page().contains("status:Responder"));
}

#[test]
fn encrypted_assertion_refused() {
    let c = ctx();
    let (_, signed) = c.valid();
    let original = extract_assertion(&signed).to_string();
    let xml = signed.replace(
        &original,
        r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedAssertion>"#,
    );
    assert_eq!(c.submit(&xml), Err(SamlReject::EncryptedAssertion));
}

#[test]
fn xss_in_echoed_fields_is_escaped() {
    let c = ctx();
    let req = c.request();
    let mut spec = c.spec(&req);
    spec.destination = Some("https://x/&lt;script&gt;alert(1)&lt;/script&gt;".into());
    let err = c.submit(&c.idp.issue(&spec)).unwrap_err();
    assert!(matches!(err, SamlReject::WrongDestination { .. }));
    let page = err.error_page();
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;"));
}

#[test]
fn garbage_never_panics() {
    let c = ctx();
    let (_, signed) = c.valid();
    assert_eq!(
        c.sp.validate_response(c.now, "%%% not base64 %%%", Some(RELAY)),
        Err(SamlReject::BadEncoding)
    );
    assert!(matches!(
        c.sp.validate_response(c.now, &"A".repeat(auth::saml::MAX_RESPONSE_B64 + 4), None),
        Err(SamlReject::TooLarge { .. })
    ));
    assert!(matches!(c.submit("<a>"), Err(SamlReject::NotAResponse)));
    // Every truncation of a valid response: refused, never a panic.
    let step = (signed.len() / 97).max(1);
    for cut in (1..signed.len()).step_by(step) {
        assert!(c.submit(&signed[..cut]).is_err());
    }
    // Byte flips inside the signed assertion.
    for i in (signed.len() / 2..signed.len()).step_by(step) {
        let mut b = signed.clone().into_bytes();
        b[i] ^= 0x01;
        if let Ok(s) = String::from_utf8(b) {
            let _ = c.submit(&s);
        }
    }
}

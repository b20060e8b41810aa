//! SP metadata, the HTTP-Redirect AuthnRequest, configuration checks, and the
//! STRAP token sealing checked against an independent implementation (OpenSSL
//! ECDH / HKDF / AES-GCM, as openconnect's OpenSSL build would decrypt it).

#[path = "saml_idp.rs"]
mod saml_idp;

use std::io::Read;
use std::time::{Duration, SystemTime};

use auth::saml::{
    AuthnRequestError, RequestSignature, SamlSp, SpConfig, SpConfigError, SpCredentials,
    open_token, seal_token, sso_listener_url,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use saml_idp::*;

fn sp_config() -> (TestIdp, SpConfig) {
    let idp = TestIdp::new("idp");
    let cfg = SpConfig::new(
        "SAML-TG",
        BASE_URL,
        IDP_ENTITY,
        IDP_SSO,
        vec![idp.cert_der.clone()],
    );
    (idp, cfg)
}

fn signing_config() -> (TestIdp, SpConfig, openssl::x509::X509) {
    let (idp, mut cfg) = sp_config();
    let (key, cert) = make_key_and_cert("vpn.example.com");
    cfg.sp_credentials = Some(SpCredentials {
        key,
        cert_der: cert.to_der().unwrap(),
    });
    cfg.request_signature = Some(RequestSignature::RsaSha256);
    (idp, cfg, cert)
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// (raw query, params decoded)
fn query(url: &str) -> (String, Vec<(String, String)>) {
    let q = url.split_once('?').unwrap().1.to_string();
    let params = q
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), pct_decode(v))
        })
        .collect();
    (q, params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn inflate(b64: &str) -> String {
    let raw = STANDARD.decode(b64).unwrap();
    let mut out = String::new();
    flate2::read::DeflateDecoder::new(&raw[..])
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[test]
fn urls_follow_asa_conventions() {
    let (_idp, cfg) = sp_config();
    let sp = SamlSp::new(cfg).unwrap();
    assert_eq!(
        sp.entity_id(),
        "https://vpn.example.com/saml/sp/metadata/SAML-TG"
    );
    assert_eq!(
        sp.acs_url(),
        "https://vpn.example.com/+CSCOE+/saml/sp/acs?tgname=SAML-TG"
    );
}

#[test]
fn metadata_unsigned_sp() {
    let (_idp, cfg) = sp_config();
    let sp = SamlSp::new(cfg).unwrap();
    let md = sp.metadata_xml();
    assert!(md.contains(r#"entityID="https://vpn.example.com/saml/sp/metadata/SAML-TG""#));
    assert!(md.contains(r#"Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://vpn.example.com/+CSCOE+/saml/sp/acs?tgname=SAML-TG""#));
    assert!(md.contains(
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>"
    ));
    assert!(md.contains(r#"AuthnRequestsSigned="false""#));
    assert!(!md.contains("X509Certificate"));
    // It parses as SAML metadata.
    let parsed: samael::metadata::EntityDescriptor = md.parse().unwrap();
    assert_eq!(parsed.entity_id.as_deref(), Some(sp.entity_id()));
}

#[test]
fn metadata_signing_sp_publishes_cert() {
    let (_idp, cfg, cert) = signing_config();
    let sp = SamlSp::new(cfg).unwrap();
    let md = sp.metadata_xml();
    assert!(md.contains(r#"AuthnRequestsSigned="true""#));
    assert!(md.contains(&format!(
        "<ds:X509Certificate>{}</ds:X509Certificate>",
        STANDARD.encode(cert.to_der().unwrap())
    )));
}

#[test]
fn authn_request_redirect_unsigned() {
    let (_idp, cfg) = sp_config();
    let sp = SamlSp::new(cfg).unwrap();
    let now = SystemTime::now();
    let r = sp.authn_request(now, Some("ctx/1 +x")).unwrap();
    assert!(r.url.starts_with(&format!("{IDP_SSO}?SAMLRequest=")));
    assert_eq!(r.expires, now + Duration::from_secs(600));
    let (_, params) = query(&r.url);
    assert_eq!(param(&params, "RelayState"), Some("ctx/1 +x"));
    assert_eq!(param(&params, "SigAlg"), None);
    assert_eq!(param(&params, "Signature"), None);
    let xml = inflate(param(&params, "SAMLRequest").unwrap());
    assert!(xml.contains(&format!(r#"ID="{}""#, r.request_id)));
    assert!(xml.contains(&format!(r#"Destination="{IDP_SSO}""#)));
    assert!(xml.contains(
        r#"AssertionConsumerServiceURL="https://vpn.example.com/+CSCOE+/saml/sp/acs?tgname=SAML-TG""#
    ));
    assert!(
        xml.contains("<saml:Issuer>https://vpn.example.com/saml/sp/metadata/SAML-TG</saml:Issuer>")
    );
    assert!(!xml.contains("ForceAuthn"));
    // samael can read what we wrote.
    let parsed: samael::schema::AuthnRequest = xml.parse().unwrap();
    assert_eq!(parsed.id, r.request_id);
    assert_eq!(sp.outstanding_requests(), 1);

    let r2 = sp.authn_request(now, None).unwrap();
    assert_ne!(r.request_id, r2.request_id);
    assert!(!r2.url.contains("RelayState"));
}

#[test]
fn authn_request_force_authn_and_relay_state_limit() {
    let (_idp, mut cfg) = sp_config();
    cfg.force_reauthentication = true;
    let sp = SamlSp::new(cfg).unwrap();
    let r = sp.authn_request(SystemTime::now(), None).unwrap();
    let (_, params) = query(&r.url);
    assert!(inflate(param(&params, "SAMLRequest").unwrap()).contains(r#"ForceAuthn="true""#));
    assert_eq!(
        sp.authn_request(SystemTime::now(), Some(&"x".repeat(81))),
        Err(AuthnRequestError::RelayStateTooLong)
    );
}

#[test]
fn authn_request_signed_query_verifies() {
    let (_idp, cfg, cert) = signing_config();
    let sp = SamlSp::new(cfg).unwrap();
    let r = sp.authn_request(SystemTime::now(), Some("ctx")).unwrap();
    let (raw, params) = query(&r.url);
    assert_eq!(
        param(&params, "SigAlg"),
        Some("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    );
    // Bindings 3.4.4.1: the signature covers the URL-encoded octets of
    // SAMLRequest=..&RelayState=..&SigAlg=.. in that order.
    let (signed_part, sig) = raw.split_once("&Signature=").unwrap();
    assert!(signed_part.starts_with("SAMLRequest="));
    assert!(signed_part.contains("&RelayState=ctx&SigAlg="));
    let sig = STANDARD.decode(pct_decode(sig)).unwrap();
    let pubkey = cert.public_key().unwrap();
    let mut v =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pubkey).unwrap();
    v.update(signed_part.as_bytes()).unwrap();
    assert!(v.verify(&sig).unwrap());
}

#[test]
fn config_errors() {
    let (_idp, cfg) = sp_config();
    let mut c = cfg.clone();
    c.tunnel_group = "bad.name/x".into();
    assert!(matches!(
        SamlSp::new(c).unwrap_err(),
        SpConfigError::BadTunnelGroupName(_)
    ));
    let mut c = cfg.clone();
    c.idp_signing_certs = vec![b"not a certificate".to_vec()];
    assert!(matches!(
        SamlSp::new(c).unwrap_err(),
        SpConfigError::BadIdpCertificate(0, _)
    ));
    let mut c = cfg.clone();
    c.request_signature = Some(RequestSignature::RsaSha256);
    assert_eq!(
        SamlSp::new(c).unwrap_err(),
        SpConfigError::SigningWithoutKey
    );
    let mut c = cfg.clone();
    c.allowed_signature_algorithms.clear();
    assert_eq!(
        SamlSp::new(c).unwrap_err(),
        SpConfigError::NoSignatureAlgorithm
    );
    let mut c = cfg.clone();
    c.base_url = "http://vpn.example.com".into();
    assert!(matches!(
        SamlSp::new(c).unwrap_err(),
        SpConfigError::BadUrl("base-url", _)
    ));
    let mut c = cfg.clone();
    c.timeout_assertion = Some(Duration::ZERO);
    assert_eq!(
        SamlSp::new(c).unwrap_err(),
        SpConfigError::DurationOutOfRange("timeout assertion", 0)
    );
    let mut c = cfg.clone();
    c.clock_skew = Duration::from_secs(86_400);
    assert!(matches!(
        SamlSp::new(c).unwrap_err(),
        SpConfigError::DurationOutOfRange("clock skew", _)
    ));
    // A bare host gets https://, as `base-url vpn.example.com` would.
    let mut c = cfg;
    c.base_url = "vpn.example.com/".into();
    assert_eq!(
        SamlSp::new(c).unwrap().entity_id(),
        "https://vpn.example.com/saml/sp/metadata/SAML-TG"
    );
    assert_eq!(
        RequestSignature::from_asa(""),
        Some(RequestSignature::RsaSha256)
    );
    assert_eq!(RequestSignature::from_asa("rsa-md5"), None);
}

#[test]
fn reconfigured_sp_keeps_outstanding_requests() {
    let (idp, cfg) = sp_config();
    let sp = SamlSp::new(cfg.clone()).unwrap();
    let now = SystemTime::now();
    let req = sp.authn_request(now, Some("r")).unwrap().request_id;
    let mut cfg2 = cfg;
    cfg2.force_reauthentication = true;
    let sp2 = sp.reconfigured(cfg2).unwrap();
    let xml = idp.issue(&ResponseSpec::valid(
        sp2.entity_id(),
        sp2.acs_url(),
        &req,
        now,
    ));
    assert!(sp2.validate_response(now, &b64(&xml), Some("r")).is_ok());
    // ... and the replay cache is shared too.
    assert!(sp.validate_response(now, &b64(&xml), Some("r")).is_err());
}

// ------------------------------------------------------------------ STRAP

/// openconnect's client side with OpenSSL primitives, independent of ours.
fn openssl_open(client: &openssl::pkey::PKey<openssl::pkey::Private>, segment: &str) -> String {
    let data = STANDARD.decode(pct_decode(segment)).unwrap();
    assert_eq!(&data[..2], &[0, 1]);
    let mut pos = 2;
    let mut f: [Vec<u8>; 5] = Default::default();
    while pos < data.len() {
        let tag = u16::from_be_bytes([data[pos], data[pos + 1]]) as usize;
        let len = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
        f[tag] = data[pos + 4..pos + 4 + len].to_vec();
        pos += 4 + len;
    }
    let server = openssl::pkey::PKey::public_key_from_der(&f[1]).unwrap();
    let mut d = openssl::derive::Deriver::new(client).unwrap();
    d.set_peer(&server).unwrap();
    let x = d.derive_to_vec().unwrap();
    assert_eq!(x.len(), 32);

    let mut ctx = openssl::pkey_ctx::PkeyCtx::new_id(openssl::pkey::Id::HKDF).unwrap();
    ctx.derive_init().unwrap();
    ctx.set_hkdf_md(openssl::md::Md::sha256()).unwrap();
    ctx.set_hkdf_key(&x).unwrap();
    ctx.add_hkdf_info(b"AC_ECIES").unwrap();
    let mut key = [0u8; 32];
    ctx.derive(Some(&mut key)).unwrap();

    assert_eq!(f[2].len(), 12, "tag truncated to 12 bytes");
    assert_eq!(f[4].len(), 12, "12-byte IV");
    let pt = openssl::symm::decrypt_aead(
        openssl::symm::Cipher::aes_256_gcm(),
        &key,
        Some(&f[4]),
        &[],
        &f[3],
        &f[2],
    )
    .unwrap();
    String::from_utf8(pt).unwrap()
}

#[test]
fn sealed_token_opens_with_openssl_and_with_open_token() {
    // The client's STRAP DH key as openconnect sends it: base64 of SPKI DER.
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let ec = openssl::ec::EcKey::generate(&group).unwrap();
    let client = openssl::pkey::PKey::from_ec_key(ec.clone()).unwrap();
    let header = STANDARD.encode(client.public_key_to_der().unwrap());

    let long = "Q".repeat(200);
    for token in ["A", "abcXYZ0123456789", long.as_str()] {
        let sealed = seal_token(header.as_bytes(), token).unwrap();
        assert!(!sealed.contains(['+', '/', '=', '?', '#', ' ']));
        assert_eq!(openssl_open(&client, &sealed), token);

        // Our own client-side decoder with the same key.
        let sk = p256::SecretKey::from_slice(&ec.private_key().to_vec_padded(32).unwrap()).unwrap();
        assert_eq!(open_token(&sk, &sealed).unwrap(), token);
    }
    let url = sso_listener_url("BLOB", Some("https://vpn.example.com/done?x=1"));
    assert_eq!(
        url,
        "http://localhost:29786/api/sso/BLOB?return=https%3A%2F%2Fvpn.example.com%2Fdone%3Fx%3D1"
    );
}

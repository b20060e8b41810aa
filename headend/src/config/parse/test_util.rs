//! Helpers for the section parsers' unit tests: config text builders, `ok` /
//! `bad` assertions, and a self-signed certificate + PKCS#12 made once per run.

use super::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Builder, X509NameBuilder};
use std::sync::OnceLock;

pub(super) const P12_PASS: &str = "p12-secret";

pub(super) struct Creds {
    pub(super) cert_der: Vec<u8>,
    pub(super) cert_b64: String,
    pub(super) p12_b64: String,
}

/// A self-signed certificate and a PKCS#12 of it, made once per test run.
pub(super) fn creds() -> &'static Creds {
    static C: OnceLock<Creds> = OnceLock::new();
    C.get_or_init(|| {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key: PKey<Private> = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "test.example").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let p12 = Pkcs12::builder()
            .name("id")
            .pkey(&key)
            .cert(&cert)
            .build2(P12_PASS)
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let cert_der = cert.to_der().unwrap();
        Creds {
            cert_b64: b64.encode(&cert_der),
            cert_der,
            p12_b64: b64.encode(p12.to_der().unwrap()),
        }
    })
}

/// Base64 wrapped at 64 columns, as PEM and ASA exports do.
pub(super) fn wrap64(s: &str) -> Vec<String> {
    s.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect()
}

pub(super) fn cfg(lines: &[&str]) -> String {
    lines.join("\n")
}

pub(super) fn ok(text: &str) -> Config {
    match parse_str(text, "t.cfg") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}\n{text}"),
    }
}

#[track_caller]
pub(super) fn bad(text: &str, line: usize, needle: &str) -> ConfigError {
    let e = match parse_str(text, "t.cfg") {
        Ok(_) => panic!("expected an error at line {line} containing {needle:?}\n{text}"),
        Err(e) => e,
    };
    assert_eq!(e.line, line, "wrong line for: {e}");
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
    assert_eq!(e.file, "t.cfg");
    assert_eq!(e.to_string(), format!("t.cfg:{line}: {}", e.message));
    e
}

/// Trustpoint `IDP` with a CA cert and `ID` with a PKCS#12 identity.
pub(super) fn trustpoints() -> Vec<String> {
    let c = creds();
    let mut v: Vec<String> = vec![
        "crypto ca trustpoint IDP".into(),
        " enrollment terminal".into(),
        "crypto ca authenticate IDP".into(),
        "-----BEGIN CERTIFICATE-----".into(),
    ];
    v.extend(wrap64(&c.cert_b64));
    v.push("-----END CERTIFICATE-----".into());
    v.push("quit".into());
    v.push("crypto ca trustpoint ID".into());
    v.push(format!("crypto ca import ID pkcs12 {P12_PASS}"));
    v.extend(wrap64(&c.p12_b64));
    v.push("quit".into());
    v
}

pub(super) fn with_tps(rest: &[&str]) -> (String, usize) {
    let mut v = trustpoints();
    let n = v.len();
    v.extend(rest.iter().map(|s| s.to_string()));
    (v.join("\n"), n)
}

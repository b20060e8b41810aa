//! The TLS client of the control channel: trusts exactly the server whose
//! certificate matches the pin, as `openconnect --servercert pin-sha256:...`
//! does (base64 SHA-256 of the SubjectPublicKeyInfo), or `sha256:HEX` of the
//! whole certificate. No session resumption: every loadgen session is a fresh
//! client, like a fresh openconnect process.

use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// What the certificate must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// SHA-256 of the SubjectPublicKeyInfo (openconnect `pin-sha256:`).
    Spki([u8; 32]),
    /// SHA-256 of the certificate DER (openconnect `sha256:`).
    Cert([u8; 32]),
}

impl Pin {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(b64) = s.strip_prefix("pin-sha256:") {
            let v = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("pin-sha256: {e}"))?;
            return v
                .try_into()
                .map(Pin::Spki)
                .map_err(|_| "pin-sha256 is not 32 bytes".into());
        }
        if let Some(hex) = s.strip_prefix("sha256:") {
            let hex = hex.trim();
            let v: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            return v
                .and_then(|v| v.try_into().ok())
                .map(Pin::Cert)
                .ok_or_else(|| "sha256: wants 64 hex digits".into());
        }
        Err(format!(
            "unknown pin {s:?}: use pin-sha256:BASE64 or sha256:HEX"
        ))
    }

    pub fn matches(&self, cert_der: &[u8]) -> bool {
        match self {
            Pin::Cert(h) => Sha256::digest(cert_der).as_slice() == h,
            Pin::Spki(h) => openssl::x509::X509::from_der(cert_der)
                .and_then(|c| c.public_key())
                .and_then(|k| k.public_key_to_der())
                .is_ok_and(|spki| Sha256::digest(&spki).as_slice() == h),
        }
    }
}

#[derive(Debug)]
struct PinVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pin.matches(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pin".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn client_config(pin: Pin) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier { pin, provider }))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};

    fn self_signed() -> Vec<u8> {
        let key = PKey::from_ec_key(
            ec::EcKey::generate(&ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap())
                .unwrap(),
        )
        .unwrap();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    #[test]
    fn pins_match_only_their_certificate() {
        let cert = self_signed();
        let other = self_signed();
        let spki = openssl::x509::X509::from_der(&cert)
            .unwrap()
            .public_key()
            .unwrap()
            .public_key_to_der()
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki));
        let pin = Pin::parse(&format!("pin-sha256:{b64}")).unwrap();
        assert!(pin.matches(&cert));
        assert!(!pin.matches(&other));
        assert!(!pin.matches(b"not a certificate"));

        let hex: String = Sha256::digest(&cert)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let pin = Pin::parse(&format!("sha256:{hex}")).unwrap();
        assert!(pin.matches(&cert) && !pin.matches(&other));

        for bad in [
            "pin-sha256:!!",
            "pin-sha256:AAAA",
            "sha256:abc",
            "md5:00",
            "",
        ] {
            assert!(Pin::parse(bad).is_err(), "{bad}");
        }
    }
}

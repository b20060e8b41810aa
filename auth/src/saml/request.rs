//! SP metadata and the HTTP-Redirect AuthnRequest (SAML bindings §3.4).

use std::io::Write;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use rand::RngCore;

use super::config::SpConfig;

const HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// A ready AuthnRequest: send the browser to `url` (302).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRedirect {
    /// The IdP sign-in URL with `SAMLRequest`, `RelayState` and, when signing is
    /// configured, `SigAlg` and `Signature`.
    pub url: String,
    /// The request ID the Response must answer (`InResponseTo`).
    pub request_id: String,
    /// The request is forgotten after this.
    pub expires: SystemTime,
}

/// Why an AuthnRequest could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnRequestError {
    #[error("RelayState longer than 80 bytes (SAML bindings 3.4.3)")]
    RelayStateTooLong,
    #[error("could not sign the AuthnRequest: {0}")]
    Signing(String),
    #[error("could not compress the AuthnRequest: {0}")]
    Deflate(String),
}

/// `_` + 32 hex digits (128 random bits): an NCName, unguessable.
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    let mut s = String::with_capacity(33);
    s.push('_');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn saml_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// SP metadata served at the entity-ID URL.
pub(crate) fn metadata_xml(cfg: &SpConfig) -> String {
    let signing = cfg.request_signature.is_some();
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{}\">\n",
        xml_escape(&cfg.entity_id())
    ));
    x.push_str(&format!(
        "  <md:SPSSODescriptor AuthnRequestsSigned=\"{signing}\" WantAssertionsSigned=\"true\" \
         protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n"
    ));
    if let (true, Some(creds)) = (signing, cfg.sp_credentials.as_ref()) {
        x.push_str(&format!(
            "    <md:KeyDescriptor use=\"signing\"><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\
             <ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n",
            STANDARD.encode(&creds.cert_der)
        ));
    }
    x.push_str(&format!(
        "    <md:NameIDFormat>{}</md:NameIDFormat>\n",
        xml_escape(&cfg.name_id_format)
    ));
    x.push_str(&format!(
        "    <md:AssertionConsumerService Binding=\"{HTTP_POST}\" Location=\"{}\" index=\"0\" isDefault=\"true\"/>\n",
        xml_escape(&cfg.acs_url())
    ));
    x.push_str("  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n");
    x
}

/// The AuthnRequest document (unsigned: the Redirect binding signs the query).
pub(crate) fn authn_request_xml(cfg: &SpConfig, id: &str, now: SystemTime) -> String {
    let force = if cfg.force_reauthentication {
        " ForceAuthn=\"true\""
    } else {
        ""
    };
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{}\" AssertionConsumerServiceURL=\"{}\" \
         ProtocolBinding=\"{HTTP_POST}\"{force}><saml:Issuer>{}</saml:Issuer>\
         <samlp:NameIDPolicy Format=\"{}\" AllowCreate=\"true\"/></samlp:AuthnRequest>",
        saml_time(now),
        xml_escape(&cfg.idp_sign_in_url),
        xml_escape(&cfg.acs_url()),
        xml_escape(&cfg.entity_id()),
        xml_escape(&cfg.name_id_format),
    )
}

/// Deflate + base64 + URL-encode, add RelayState and, if configured, sign the
/// exact query octets `SAMLRequest=..&RelayState=..&SigAlg=..` (bindings §3.4.4.1).
pub(crate) fn redirect_url(
    cfg: &SpConfig,
    request_xml: &str,
    relay_state: Option<&str>,
) -> Result<String, AuthnRequestError> {
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    enc.write_all(request_xml.as_bytes())
        .map_err(|e| AuthnRequestError::Deflate(e.to_string()))?;
    let deflated = enc
        .finish()
        .map_err(|e| AuthnRequestError::Deflate(e.to_string()))?;
    let mut query = format!("SAMLRequest={}", url_encode(&STANDARD.encode(deflated)));
    if let Some(rs) = relay_state {
        query.push_str(&format!("&RelayState={}", url_encode(rs)));
    }
    if let (Some(alg), Some(creds)) = (cfg.request_signature, cfg.sp_credentials.as_ref()) {
        query.push_str(&format!("&SigAlg={}", url_encode(alg.uri())));
        let mut signer = openssl::sign::Signer::new(alg.digest(), &creds.key)
            .map_err(|e| AuthnRequestError::Signing(e.to_string()))?;
        let sig = signer
            .sign_oneshot_to_vec(query.as_bytes())
            .map_err(|e| AuthnRequestError::Signing(e.to_string()))?;
        query.push_str(&format!("&Signature={}", url_encode(&STANDARD.encode(sig))));
    }
    let sep = if cfg.idp_sign_in_url.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(format!("{}{sep}{query}", cfg.idp_sign_in_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ncnames_and_unique() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('_'));
    }

    #[test]
    fn url_encoding_is_rfc3986() {
        assert_eq!(url_encode("a+b/c=d e~"), "a%2Bb%2Fc%3Dd%20e~");
    }
}

//! What one SAML tunnel group needs, independent of the headend's config model
//! (the headend maps `saml idp` + `tunnel-group ... webvpn-attributes` onto this).

use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

/// Name formats an SP may ask for (`NameIDPolicy`, metadata `NameIDFormat`).
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// Algorithm for signing our AuthnRequest (HTTP-Redirect `SigAlg`), from
/// `signature [rsa-sha1|rsa-sha256|rsa-sha384|rsa-sha512]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSignature {
    RsaSha1,
    RsaSha256,
    RsaSha384,
    RsaSha512,
}

impl RequestSignature {
    /// Parses the ASA keyword (`rsa-sha256`); a bare `signature` means rsa-sha256.
    pub fn from_asa(keyword: &str) -> Option<Self> {
        match keyword.to_ascii_lowercase().as_str() {
            "" | "rsa-sha256" => Some(Self::RsaSha256),
            "rsa-sha1" => Some(Self::RsaSha1),
            "rsa-sha384" => Some(Self::RsaSha384),
            "rsa-sha512" => Some(Self::RsaSha512),
            _ => None,
        }
    }

    /// The `SigAlg` URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            Self::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            Self::RsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
            Self::RsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        }
    }

    pub(crate) fn digest(self) -> openssl::hash::MessageDigest {
        use openssl::hash::MessageDigest;
        match self {
            Self::RsaSha1 => MessageDigest::sha1(),
            Self::RsaSha256 => MessageDigest::sha256(),
            Self::RsaSha384 => MessageDigest::sha384(),
            Self::RsaSha512 => MessageDigest::sha512(),
        }
    }
}

/// XML-DSig algorithms accepted on a Response. The default set is RSA-SHA256 and
/// stronger; SHA-1 only when listed explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XmlSignatureAlgorithm {
    RsaSha1,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
}

impl XmlSignatureAlgorithm {
    /// RSA-SHA256 and stronger (the default when nothing is configured).
    pub const DEFAULT: &'static [XmlSignatureAlgorithm] = &[
        Self::RsaSha256,
        Self::RsaSha384,
        Self::RsaSha512,
        Self::EcdsaSha256,
        Self::EcdsaSha384,
        Self::EcdsaSha512,
    ];

    /// `SignatureMethod` URI.
    pub fn signature_uri(self) -> &'static str {
        match self {
            Self::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            Self::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            Self::RsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
            Self::RsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
            Self::EcdsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            Self::EcdsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
            Self::EcdsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        }
    }

    /// The `DigestMethod` URI that goes with it.
    pub fn digest_uri(self) -> &'static str {
        match self {
            Self::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            Self::RsaSha256 | Self::EcdsaSha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            Self::RsaSha384 | Self::EcdsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#sha384",
            Self::RsaSha512 | Self::EcdsaSha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    /// samael's equivalent; `None` for SHA-1, which samael's allow-list cannot
    /// express (see `SamlSp::new`).
    pub(crate) fn to_samael(self) -> Option<samael::crypto::AllowedSignatureAlgorithm> {
        use samael::crypto::AllowedSignatureAlgorithm as A;
        match self {
            Self::RsaSha1 => None,
            Self::RsaSha256 => Some(A::RsaSha256),
            Self::RsaSha384 => Some(A::RsaSha384),
            Self::RsaSha512 => Some(A::RsaSha512),
            Self::EcdsaSha256 => Some(A::EcdsaSha256),
            Self::EcdsaSha384 => Some(A::EcdsaSha384),
            Self::EcdsaSha512 => Some(A::EcdsaSha512),
        }
    }
}

/// The SP's own key and certificate (`trustpoint sp`), used to sign AuthnRequests
/// and published in metadata.
#[derive(Clone)]
pub struct SpCredentials {
    pub key: PKey<Private>,
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for SpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpCredentials")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// One SAML tunnel group's service-provider settings.
#[derive(Debug, Clone)]
pub struct SpConfig {
    /// Tunnel-group name (no dots, slashes or spaces: it is part of URLs).
    pub tunnel_group: String,
    /// `base-url`, e.g. `https://vpn.example.com` (a bare host gets `https://`).
    pub base_url: String,
    /// `saml idp ENTITY-ID`.
    pub idp_entity_id: String,
    /// `url sign-in`: where the HTTP-Redirect AuthnRequest goes.
    pub idp_sign_in_url: String,
    /// `trustpoint idp`: DER certificates; at least one is required (an SP without
    /// one would accept unsigned Responses, see dependencies.md).
    pub idp_signing_certs: Vec<Vec<u8>>,
    /// `trustpoint sp`: optional key + certificate.
    pub sp_credentials: Option<SpCredentials>,
    /// `signature ...`: sign AuthnRequests (needs `sp_credentials`). None = `no signature`.
    pub request_signature: Option<RequestSignature>,
    /// `force re-authentication`: `ForceAuthn="true"`.
    pub force_reauthentication: bool,
    /// `timeout assertion SECONDS`: an assertion is valid at most this long after
    /// its NotBefore (or IssueInstant), and the clock skew never exceeds it.
    pub timeout_assertion: Option<Duration>,
    /// Accepted XML-DSig algorithms on Responses.
    pub allowed_signature_algorithms: Vec<XmlSignatureAlgorithm>,
    /// Allowed clock difference with the IdP.
    pub clock_skew: Duration,
    /// How long after IssueInstant a Response is still accepted (plus skew).
    pub max_issue_delay: Duration,
    /// How long an AuthnRequest waits for its answer.
    pub request_ttl: Duration,
    /// `NameIDPolicy` format asked for and listed in metadata.
    pub name_id_format: String,
}

impl SpConfig {
    /// Defaults: RSA-SHA256+ only, 60 s skew, 90 s issue delay (as samael), requests
    /// valid 10 minutes (long enough for an MFA prompt), unspecified NameID format.
    pub fn new(
        tunnel_group: impl Into<String>,
        base_url: impl Into<String>,
        idp_entity_id: impl Into<String>,
        idp_sign_in_url: impl Into<String>,
        idp_signing_certs: Vec<Vec<u8>>,
    ) -> Self {
        SpConfig {
            tunnel_group: tunnel_group.into(),
            base_url: base_url.into(),
            idp_entity_id: idp_entity_id.into(),
            idp_sign_in_url: idp_sign_in_url.into(),
            idp_signing_certs,
            sp_credentials: None,
            request_signature: None,
            force_reauthentication: false,
            timeout_assertion: None,
            allowed_signature_algorithms: XmlSignatureAlgorithm::DEFAULT.to_vec(),
            clock_skew: Duration::from_secs(60),
            max_issue_delay: Duration::from_secs(90),
            request_ttl: Duration::from_secs(600),
            name_id_format: NAMEID_UNSPECIFIED.to_string(),
        }
    }

    fn base(&self) -> String {
        let b = self.base_url.trim().trim_end_matches('/');
        if b.contains("://") {
            b.to_string()
        } else {
            format!("https://{b}")
        }
    }

    /// `https://<base-url>/saml/sp/metadata/<TG>`: entity ID, Issuer, Audience.
    pub fn entity_id(&self) -> String {
        format!("{}/saml/sp/metadata/{}", self.base(), self.tunnel_group)
    }

    /// `https://<base-url>/+CSCOE+/saml/sp/acs?tgname=<TG>`: Destination, Recipient.
    pub fn acs_url(&self) -> String {
        format!(
            "{}/+CSCOE+/saml/sp/acs?tgname={}",
            self.base(),
            self.tunnel_group
        )
    }

    /// Clock skew, never more than `timeout assertion`.
    pub(crate) fn effective_skew(&self) -> Duration {
        match self.timeout_assertion {
            Some(t) => self.clock_skew.min(t),
            None => self.clock_skew,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SpConfigError> {
        let tg = &self.tunnel_group;
        if tg.is_empty()
            || !tg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(SpConfigError::BadTunnelGroupName(tg.clone()));
        }
        let base = self.base();
        if !base.starts_with("https://") || base.len() <= "https://".len() {
            return Err(SpConfigError::BadUrl("base-url", self.base_url.clone()));
        }
        let sign_in = &self.idp_sign_in_url;
        if !(sign_in.starts_with("https://") || sign_in.starts_with("http://"))
            || sign_in.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(SpConfigError::BadUrl("url sign-in", sign_in.clone()));
        }
        if self.idp_entity_id.trim().is_empty() {
            return Err(SpConfigError::MissingIdpEntityId);
        }
        if self.idp_signing_certs.is_empty() {
            return Err(SpConfigError::MissingIdpCertificate);
        }
        for (i, der) in self.idp_signing_certs.iter().enumerate() {
            X509::from_der(der).map_err(|e| SpConfigError::BadIdpCertificate(i, e.to_string()))?;
        }
        if self.allowed_signature_algorithms.is_empty() {
            return Err(SpConfigError::NoSignatureAlgorithm);
        }
        if let Some(_alg) = self.request_signature {
            let creds = self
                .sp_credentials
                .as_ref()
                .ok_or(SpConfigError::SigningWithoutKey)?;
            if creds.key.rsa().is_err() {
                return Err(SpConfigError::SigningKeyNotRsa);
            }
            X509::from_der(&creds.cert_der)
                .map_err(|e| SpConfigError::BadSpCertificate(e.to_string()))?;
        }
        const HOUR: Duration = Duration::from_secs(3600);
        let bounded = [
            (
                "request ttl",
                Some(self.request_ttl),
                Duration::from_secs(1),
                24 * HOUR,
            ),
            ("clock skew", Some(self.clock_skew), Duration::ZERO, HOUR),
            (
                "max issue delay",
                Some(self.max_issue_delay),
                Duration::from_secs(1),
                HOUR,
            ),
            (
                "timeout assertion",
                self.timeout_assertion,
                Duration::from_secs(1),
                30 * 24 * HOUR,
            ),
        ];
        for (what, value, min, max) in bounded {
            if let Some(v) = value
                && (v < min || v > max)
            {
                return Err(SpConfigError::DurationOutOfRange(what, v.as_secs()));
            }
        }
        Ok(())
    }
}

/// Why a tunnel group's SAML settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpConfigError {
    #[error("tunnel-group name {0:?} cannot be used in SAML URLs (letters, digits, - and _ only)")]
    BadTunnelGroupName(String),
    #[error("{0} {1:?} is not a usable URL")]
    BadUrl(&'static str, String),
    #[error("saml idp has no entity ID")]
    MissingIdpEntityId,
    #[error(
        "saml idp has no `trustpoint idp` signing certificate; refusing to accept unsigned responses"
    )]
    MissingIdpCertificate,
    #[error("IdP certificate #{0} is not valid DER: {1}")]
    BadIdpCertificate(usize, String),
    #[error("SP certificate is not valid DER: {0}")]
    BadSpCertificate(String),
    #[error("no signature algorithm allowed for responses")]
    NoSignatureAlgorithm,
    #[error("`signature` is set but there is no `trustpoint sp` key")]
    SigningWithoutKey,
    #[error("the `trustpoint sp` key is not RSA (signature rsa-* needs RSA)")]
    SigningKeyNotRsa,
    #[error("{0} of {1} s is out of range")]
    DurationOutOfRange(&'static str, u64),
    #[error("samael rejected the IdP settings: {0}")]
    Samael(String),
}

//! Why a SAML Response was refused: one typed reason per rule, a short log line
//! (`Display`) and an escaped browser page (`error_page`).
//!
//! Everything a reject carries that came from the Response (a destination, an
//! issuer, a status code) is attacker-controlled: `Display` clips it and replaces
//! control characters (no log injection), and `error_page` HTML-escapes the whole
//! text (the ASA CVE-2020-3580 XSS came from echoing SAML fields unescaped).

use std::fmt;

/// Longest echoed value kept in a reject (a log line, not a dump).
const MAX_ECHO: usize = 120;

/// A SAML Response that was refused, with the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlReject {
    /// The form value is larger than any real Response.
    TooLarge { bytes: usize },
    /// The form value is not base64 of UTF-8 text.
    BadEncoding,
    /// A DTD (`<!DOCTYPE`) or entity declaration: refused before any parser sees it
    /// (XXE, entity expansion).
    Dtd,
    /// An XML comment. Exclusive canonicalization drops comments, so they are
    /// outside every signature; `alice@corp.example<!---->.evil.com` is the classic
    /// truncation attack. Real IdPs never send comments: refuse them anywhere.
    XmlComment,
    /// A processing instruction other than the XML declaration.
    ProcessingInstruction,
    /// Not well-formed XML, or a structure no IdP produces.
    Malformed(String),
    /// The document root is not a SAML 2.0 protocol `Response`.
    NotAResponse,
    /// The IdP answered with a non-success status (user cancelled, MFA failed...).
    IdpStatus { status: String },
    /// Exactly one Assertion is required; signature wrapping needs two. The scan
    /// stops at the second one, so `found` is 0 or 2.
    AssertionCount { found: usize },
    /// Encrypted assertions are not accepted (the SP publishes no encryption key).
    EncryptedAssertion,
    /// An `ID` value appears twice, or `xml:id` is used: a reference could resolve
    /// to a different element than the one we read.
    DuplicateId { id: String },
    /// No signature covers the Assertion (neither on it nor on the Response).
    Unsigned,
    /// A signature that is not where SAML puts it (enveloped in the Response or
    /// the Assertion, one Reference to its parent's ID, standard transforms).
    SignatureStructure(&'static str),
    /// A signature or digest algorithm that the configuration does not allow.
    DisallowedAlgorithm { algorithm: String },
    /// The signature does not verify with the configured IdP certificate(s):
    /// another key, or content changed after signing.
    BadSignature,
    /// The assertion returned by the verifier is not the one in the document.
    SignatureNotOverAssertion,
    /// Response or Assertion Issuer is not the configured IdP entity ID.
    WrongIssuer { found: String },
    /// Response Destination is not our ACS URL.
    WrongDestination { found: String },
    /// SubjectConfirmationData Recipient is not our ACS URL.
    WrongRecipient { found: String },
    /// No AudienceRestriction, or one that does not name our entity ID.
    WrongAudience,
    /// No bearer SubjectConfirmation with SubjectConfirmationData.
    MissingSubjectConfirmation,
    /// No InResponseTo: IdP-initiated (unsolicited) login is not accepted.
    Unsolicited,
    /// InResponseTo names no AuthnRequest that this tunnel group sent.
    UnknownRequest,
    /// InResponseTo names a request that was already answered.
    RequestAlreadyAnswered,
    /// InResponseTo names a request that timed out.
    RequestExpired,
    /// Response and Assertion disagree on InResponseTo.
    InResponseToMismatch,
    /// The RelayState is not the one sent with the AuthnRequest.
    RelayStateMismatch,
    /// NotBefore (or IssueInstant) is in the future beyond the allowed skew.
    NotYetValid,
    /// NotOnOrAfter (or `timeout assertion`) has passed.
    Expired,
    /// IssueInstant is older than the allowed issue delay.
    Stale,
    /// The IdP session (SessionNotOnOrAfter) has already ended.
    SessionExpired,
    /// This assertion ID was already accepted once.
    Replayed,
    /// The replay cache is full of live entries: refuse rather than forget.
    ReplayCacheFull,
    /// No AuthnStatement (the Web SSO profile requires one).
    MissingAuthnStatement,
    /// No NameID, or an empty one.
    MissingNameId,
    /// A NameID with control characters, or one that two parsers read differently.
    BadNameId,
    /// Anything else that went wrong inside the verifier.
    Internal(String),
}

impl SamlReject {
    /// A small HTML page for the browser. Every character of the reason is
    /// escaped; nothing from the Response reaches the page unescaped.
    pub fn error_page(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
             <title>VPN login failed</title></head>\n<body><h1>VPN login failed</h1>\n\
             <p>The identity provider's answer was refused: {}.</p>\n\
             <p>Close this window and start the VPN login again.</p></body></html>\n",
            html_escape(&self.to_string())
        )
    }

    /// A stable short name for counters and tests (`wrong_audience`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            SamlReject::TooLarge { .. } => "too_large",
            SamlReject::BadEncoding => "bad_encoding",
            SamlReject::Dtd => "dtd",
            SamlReject::XmlComment => "xml_comment",
            SamlReject::ProcessingInstruction => "processing_instruction",
            SamlReject::Malformed(_) => "malformed",
            SamlReject::NotAResponse => "not_a_response",
            SamlReject::IdpStatus { .. } => "idp_status",
            SamlReject::AssertionCount { .. } => "assertion_count",
            SamlReject::EncryptedAssertion => "encrypted_assertion",
            SamlReject::DuplicateId { .. } => "duplicate_id",
            SamlReject::Unsigned => "unsigned",
            SamlReject::SignatureStructure(_) => "signature_structure",
            SamlReject::DisallowedAlgorithm { .. } => "disallowed_algorithm",
            SamlReject::BadSignature => "bad_signature",
            SamlReject::SignatureNotOverAssertion => "signature_not_over_assertion",
            SamlReject::WrongIssuer { .. } => "wrong_issuer",
            SamlReject::WrongDestination { .. } => "wrong_destination",
            SamlReject::WrongRecipient { .. } => "wrong_recipient",
            SamlReject::WrongAudience => "wrong_audience",
            SamlReject::MissingSubjectConfirmation => "missing_subject_confirmation",
            SamlReject::Unsolicited => "unsolicited",
            SamlReject::UnknownRequest => "unknown_request",
            SamlReject::RequestAlreadyAnswered => "request_already_answered",
            SamlReject::RequestExpired => "request_expired",
            SamlReject::InResponseToMismatch => "in_response_to_mismatch",
            SamlReject::RelayStateMismatch => "relay_state_mismatch",
            SamlReject::NotYetValid => "not_yet_valid",
            SamlReject::Expired => "expired",
            SamlReject::Stale => "stale",
            SamlReject::SessionExpired => "session_expired",
            SamlReject::Replayed => "replayed",
            SamlReject::ReplayCacheFull => "replay_cache_full",
            SamlReject::MissingAuthnStatement => "missing_authn_statement",
            SamlReject::MissingNameId => "missing_name_id",
            SamlReject::BadNameId => "bad_name_id",
            SamlReject::Internal(_) => "internal",
        }
    }
}

impl fmt::Display for SamlReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamlReject::TooLarge { bytes } => write!(f, "SAMLResponse too large ({bytes} bytes)"),
            SamlReject::BadEncoding => f.write_str("SAMLResponse is not base64 of UTF-8 XML"),
            SamlReject::Dtd => f.write_str("DTD or entity declaration in SAMLResponse"),
            SamlReject::XmlComment => f.write_str("XML comment in SAMLResponse"),
            SamlReject::ProcessingInstruction => {
                f.write_str("processing instruction in SAMLResponse")
            }
            SamlReject::Malformed(why) => write!(f, "malformed SAMLResponse: {}", clip(why)),
            SamlReject::NotAResponse => f.write_str("document is not a SAML 2.0 Response"),
            SamlReject::IdpStatus { status } => {
                write!(f, "identity provider returned status {}", clip(status))
            }
            SamlReject::AssertionCount { found: 0 } => f.write_str("no Assertion"),
            SamlReject::AssertionCount { .. } => f.write_str("more than one Assertion"),
            SamlReject::EncryptedAssertion => f.write_str("encrypted assertions are not accepted"),
            SamlReject::DuplicateId { id } => write!(f, "duplicate or xml:id ID {}", clip(id)),
            SamlReject::Unsigned => f.write_str("assertion is not signed"),
            SamlReject::SignatureStructure(why) => write!(f, "unexpected signature layout: {why}"),
            SamlReject::DisallowedAlgorithm { algorithm } => {
                write!(f, "signature algorithm not allowed: {}", clip(algorithm))
            }
            SamlReject::BadSignature => {
                f.write_str("signature does not verify with the IdP certificate")
            }
            SamlReject::SignatureNotOverAssertion => {
                f.write_str("signature does not cover the assertion used")
            }
            SamlReject::WrongIssuer { found } => write!(f, "wrong issuer {}", clip(found)),
            SamlReject::WrongDestination { found } => {
                write!(f, "wrong destination {}", clip(found))
            }
            SamlReject::WrongRecipient { found } => write!(f, "wrong recipient {}", clip(found)),
            SamlReject::WrongAudience => f.write_str("assertion is not for this service provider"),
            SamlReject::MissingSubjectConfirmation => f.write_str("no bearer subject confirmation"),
            SamlReject::Unsolicited => f.write_str("unsolicited response (no InResponseTo)"),
            SamlReject::UnknownRequest => f.write_str("response to a request we did not send"),
            SamlReject::RequestAlreadyAnswered => f.write_str("request was already answered"),
            SamlReject::RequestExpired => f.write_str("login request timed out"),
            SamlReject::InResponseToMismatch => f.write_str("InResponseTo values disagree"),
            SamlReject::RelayStateMismatch => f.write_str("RelayState does not match the request"),
            SamlReject::NotYetValid => f.write_str("assertion is not yet valid"),
            SamlReject::Expired => f.write_str("assertion has expired"),
            SamlReject::Stale => f.write_str("response was issued too long ago"),
            SamlReject::SessionExpired => f.write_str("IdP session has already ended"),
            SamlReject::Replayed => f.write_str("assertion was already used"),
            SamlReject::ReplayCacheFull => f.write_str("too many logins in flight"),
            SamlReject::MissingAuthnStatement => f.write_str("no AuthnStatement"),
            SamlReject::MissingNameId => f.write_str("no NameID"),
            SamlReject::BadNameId => f.write_str("NameID is ambiguous or has control characters"),
            SamlReject::Internal(why) => write!(f, "verifier error: {}", clip(why)),
        }
    }
}

impl std::error::Error for SamlReject {}

/// Clips an echoed value and replaces control characters, so a reject is one
/// short log line whatever the Response contained.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_ECHO)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX_ECHO).is_some() {
        out.push_str("...");
    }
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page_escapes_echoed_fields() {
        let r = SamlReject::WrongDestination {
            found: "<script>alert('x')</script>\"&".into(),
        };
        let page = r.error_page();
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
    }

    #[test]
    fn display_is_one_clipped_line() {
        let r = SamlReject::WrongIssuer {
            found: format!("evil\r\nInjected: yes{}", "x".repeat(500)),
        };
        let line = r.to_string();
        assert!(!line.contains('\n') && !line.contains('\r'));
        assert!(line.len() < 200);
        assert!(line.ends_with("..."));
    }
}

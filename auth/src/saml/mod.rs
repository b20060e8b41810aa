//! SAML 2.0 service provider (per tunnel group). See asa-aaa.md section 2.
//!
//! One [`SamlSp`] per SAML tunnel group, built from an [`SpConfig`] (the headend
//! maps `saml idp ...` and `tunnel-group ... webvpn-attributes` onto it):
//!
//! - [`SamlSp::metadata_xml`] for `https://<base-url>/saml/sp/metadata/<TG>`;
//! - [`SamlSp::authn_request`] for the HTTP-Redirect to `url sign-in` (its ID is
//!   remembered, single use, expiring);
//! - [`SamlSp::validate_response`] for the ACS POST: samael verifies every
//!   signature with the `trustpoint idp` certificate(s) only and strips unsigned
//!   content; our own pass and checks add what samael lacks (no DTD, no comments,
//!   exactly one Assertion, signature layout pinned to the assertion used,
//!   Destination, audience required, InResponseTo consumed, time window against
//!   the given `now` capped by `timeout assertion`, SessionNotOnOrAfter, replay
//!   cache, RSA-SHA256+ unless SHA-1 is configured). Blocking FFI: call it from
//!   `spawn_blocking`.
//! - [`seal_token`] / [`SsoTokenStore`] for openconnect's external-browser flow.
//!
//! NameID with an XML comment (`alice@corp.example<!---->.evil.com`): REJECTED.
//! Comments are outside every signature (exclusive c14n drops them), no IdP sends
//! them, so any comment anywhere in a Response is refused ([`SamlReject::XmlComment`]).
//! In addition the NameID is read as the concatenation of all its text, CDATA and
//! character-reference pieces and must equal what samael read, or the Response is
//! refused ([`SamlReject::BadNameId`]): a login is never granted for a truncated name.
//!
//! Diagnostics: xmlsec prints verification failures to stderr itself (routing
//! them to tracing needs an FFI hook, and this crate forbids `unsafe`).

mod config;
mod reject;
mod request;
mod scan;
mod sp;
mod store;
mod strap;

pub use config::{
    NAMEID_EMAIL, NAMEID_UNSPECIFIED, RequestSignature, SpConfig, SpConfigError, SpCredentials,
    XmlSignatureAlgorithm,
};
pub use reject::{SamlReject, html_escape};
pub use request::{AuthnRedirect, AuthnRequestError, url_encode};
pub use sp::{MAX_RESPONSE_B64, SamlLogin, SamlSp};
pub use strap::{
    OPENCONNECT_SSO_LISTENER, SsoTokenStore, StrapError, TokenError, open_token, seal_token,
    sso_listener_url,
};

//! The service provider of one tunnel group: AuthnRequests out, Responses in.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::{Error as SamaelError, ServiceProvider, ServiceProviderBuilder};

use super::config::{SpConfig, SpConfigError, XmlSignatureAlgorithm};
use super::reject::SamlReject;
use super::request::{self, AuthnRedirect, AuthnRequestError, xml_escape};
use super::scan::{self, Scanned};
use super::store::{ReplayCache, RequestStore};

/// Largest accepted `SAMLResponse` form value (base64). Entra responses with
/// hundreds of groups stay well below this.
pub const MAX_RESPONSE_B64: usize = 512 * 1024;

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// samael compares times with the system clock (it has no injectable "now").
/// Its windows are set this wide so that the authoritative time rules are ours,
/// evaluated against the `now` we are given; samael's stay as a backstop.
const SAMAEL_CLOCK_BACKSTOP_HOURS: i64 = 24;

const REQUEST_CAPACITY: usize = 10_000;
const REPLAY_CAPACITY: usize = 100_000;

/// A successful SAML login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlLogin {
    /// The username (Entra default: the UPN).
    pub name_id: String,
    pub name_id_format: Option<String>,
    /// AttributeStatement, by attribute Name (groups, mail, ...), values in order.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// The IdP's SessionNotOnOrAfter: the VPN session must not outlive it.
    pub session_not_on_or_after: Option<SystemTime>,
    pub assertion_id: String,
    pub tunnel_group: String,
    /// Until when the assertion ID must stay in a replay cache (after that the
    /// assertion could not pass anyway): for a replay cache shared by a cluster.
    pub replay_until: SystemTime,
}

/// State that outlives a configuration reload: outstanding requests and the
/// replay cache.
pub struct SpState {
    requests: Mutex<RequestStore>,
    replay: Mutex<ReplayCache>,
}

impl Default for SpState {
    fn default() -> Self {
        SpState {
            requests: Mutex::new(RequestStore::new(REQUEST_CAPACITY)),
            replay: Mutex::new(ReplayCache::new(REPLAY_CAPACITY)),
        }
    }
}

impl SpState {
    fn requests(&self) -> MutexGuard<'_, RequestStore> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn replay(&self) -> MutexGuard<'_, ReplayCache> {
        self.replay.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The XML of a `SAMLResponse` form value (base64, possibly wrapped in lines).
fn decode_response(saml_response: &str) -> Result<String, SamlReject> {
    if saml_response.len() > MAX_RESPONSE_B64 {
        return Err(SamlReject::TooLarge {
            bytes: saml_response.len(),
        });
    }
    // Some IdPs wrap the base64 in lines.
    let compact: Vec<u8> = saml_response
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bytes = STANDARD
        .decode(compact)
        .map_err(|_| SamlReject::BadEncoding)?;
    String::from_utf8(bytes).map_err(|_| SamlReject::BadEncoding)
}

/// The SAML service provider of one tunnel group.
///
/// `validate_response` runs libxml2/xmlsec through FFI and blocks for about a
/// millisecond: from async code call it inside `tokio::task::spawn_blocking`
/// (`SamlSp` is `Send + Sync`; share it in an `Arc`).
pub struct SamlSp {
    config: SpConfig,
    entity_id: String,
    acs_url: String,
    samael: ServiceProvider,
    state: Arc<SpState>,
}

impl std::fmt::Debug for SamlSp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlSp")
            .field("tunnel_group", &self.config.tunnel_group)
            .field("entity_id", &self.entity_id)
            .finish_non_exhaustive()
    }
}

impl SamlSp {
    /// Checks the configuration and builds the verifier. Refuses to build
    /// without an IdP signing certificate (samael would then accept unsigned
    /// Responses).
    pub fn new(config: SpConfig) -> Result<Self, SpConfigError> {
        Self::with_state(config, Arc::new(SpState::default()))
    }

    /// A new SP for a changed configuration that keeps this one's outstanding
    /// requests and replay cache (config reload).
    pub fn reconfigured(&self, config: SpConfig) -> Result<Self, SpConfigError> {
        Self::with_state(config, self.state.clone())
    }

    fn with_state(config: SpConfig, state: Arc<SpState>) -> Result<Self, SpConfigError> {
        config.validate()?;
        let entity_id = config.entity_id();
        let acs_url = config.acs_url();
        let samael = build_samael(&config, &entity_id, &acs_url)?;
        Ok(SamlSp {
            config,
            entity_id,
            acs_url,
            samael,
            state,
        })
    }

    pub fn config(&self) -> &SpConfig {
        &self.config
    }
    pub fn tunnel_group(&self) -> &str {
        &self.config.tunnel_group
    }
    /// `https://<base-url>/saml/sp/metadata/<TG>`.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }
    /// `https://<base-url>/+CSCOE+/saml/sp/acs?tgname=<TG>`.
    pub fn acs_url(&self) -> &str {
        &self.acs_url
    }

    /// SP metadata XML, to serve at the entity-ID URL.
    pub fn metadata_xml(&self) -> String {
        request::metadata_xml(&self.config)
    }

    /// Makes an AuthnRequest for the HTTP-Redirect binding and remembers its ID
    /// (single use, valid `request_ttl`). `relay_state` (at most 80 bytes) must
    /// come back unchanged with the Response; use it for the login context.
    pub fn authn_request(
        &self,
        now: SystemTime,
        relay_state: Option<&str>,
    ) -> Result<AuthnRedirect, AuthnRequestError> {
        let relay_state = relay_state.filter(|r| !r.is_empty());
        if relay_state.is_some_and(|r| r.len() > 80) {
            return Err(AuthnRequestError::RelayStateTooLong);
        }
        let id = request::new_id();
        let xml = request::authn_request_xml(&self.config, &id, now);
        let url = request::redirect_url(&self.config, &xml, relay_state)?;
        let expires = now.checked_add(self.config.request_ttl).unwrap_or(now);
        self.state
            .requests()
            .insert(now, id.clone(), relay_state.map(str::to_string), expires);
        Ok(AuthnRedirect {
            url,
            request_id: id,
            expires,
        })
    }

    /// Forgets expired requests and replay entries (also done lazily).
    pub fn purge(&self, now: SystemTime) {
        self.state.requests().purge(now);
        self.state.replay().purge(now);
    }

    /// Outstanding (and recently answered) AuthnRequests, for metrics.
    pub fn outstanding_requests(&self) -> usize {
        self.state.requests().len()
    }

    /// Live replay-cache entries, for metrics.
    pub fn replay_cache_len(&self) -> usize {
        self.state.replay().len()
    }

    /// The AuthnRequest ID (InResponseTo) and the assertion ID a Response names,
    /// from the structural scan alone (nothing verified): a cluster of SPs uses
    /// them to adopt a request another node sent and to consult its shared replay
    /// cache before [`validate_response`](Self::validate_response). None when the
    /// Response does not scan (validation then says why).
    pub fn response_ids(&self, saml_response: &str) -> Option<(String, Option<String>)> {
        let xml = decode_response(saml_response).ok()?;
        scan::reject_dtd(&xml).ok()?;
        let scanned = scan::scan(&xml, &self.config.allowed_signature_algorithms).ok()?;
        let request_id = scanned.request_id().ok()?.to_string();
        Some((request_id, scanned.assertion.map(|a| a.id)))
    }

    /// Adopts an AuthnRequest another node of a cluster sent (ID, RelayState and
    /// expiry from the shared store) so that its Response validates here; still
    /// single use.
    pub fn import_request(
        &self,
        now: SystemTime,
        id: &str,
        relay_state: Option<String>,
        expires: SystemTime,
    ) {
        self.state
            .requests()
            .insert(now, id.to_string(), relay_state, expires);
    }

    /// Marks a request answered here because the cluster's shared store says it
    /// was answered (or never sent): its Response is then refused.
    pub fn forget_request(&self, now: SystemTime, id: &str) {
        let _ = self.state.requests().take(now, id);
    }

    /// Validates the `SAMLResponse` form value POSTed to the ACS, with the
    /// `RelayState` form value (`None` or empty when the form has none).
    ///
    /// Blocking (libxml2 + xmlsec FFI): use `spawn_blocking` from async code.
    /// Every rule of asa-aaa.md §2 applies; see [`SamlReject`] for the reasons.
    /// The AuthnRequest named by InResponseTo is consumed by this call whatever
    /// the outcome (a forged answer costs the user one retry, never a second
    /// chance for the forger).
    pub fn validate_response(
        &self,
        now: SystemTime,
        saml_response: &str,
        relay_state: Option<&str>,
    ) -> Result<SamlLogin, SamlReject> {
        if saml_response.len() > MAX_RESPONSE_B64 {
            return Err(SamlReject::TooLarge {
                bytes: saml_response.len(),
            });
        }
        let xml = decode_response(saml_response)?;

        // 1. Our structural pass, before libxml2 ever parses the document.
        scan::reject_dtd(&xml)?;
        let scanned = scan::scan(&xml, &self.config.allowed_signature_algorithms)?;
        let assertion_scan = self.check_structure(&scanned)?;

        // 2. The request it answers: known, unanswered, same RelayState.
        let request_id = scanned.request_id()?.to_string();
        if self.state.replay().contains(now, &assertion_scan.id) {
            return Err(SamlReject::Replayed);
        }
        let sent_relay_state = self.state.requests().take(now, &request_id)?;
        // An empty RelayState form field is the same as none.
        if sent_relay_state.as_deref() != relay_state.filter(|r| !r.is_empty()) {
            return Err(SamlReject::RelayStateMismatch);
        }

        // 3. samael: every signature verified with the configured certificates
        //    only, unsigned content stripped, SAML checks against the system clock
        //    (wide backstop). Its errors are !Send: converted right here.
        let ids = [request_id.as_str()];
        let verified = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.samael
                .parse_xml_response(&xml, Some(&ids))
                .map_err(map_samael)
        }))
        .map_err(|_| SamlReject::Internal("verifier panicked".into()))??;

        // 4. Our rules on the verified assertion, against `now`.
        let checked = self.check_assertion(now, &verified, &scanned, &request_id)?;

        // 5. One-time use of the assertion ID, until it could not pass anyway.
        self.state
            .replay()
            .insert(now, &verified.id, checked.replay_until)?;

        let a = scanned.assertion.unwrap_or_default();
        Ok(SamlLogin {
            name_id: checked.name_id,
            name_id_format: a.name_id_format,
            attributes: a.attributes,
            session_not_on_or_after: checked.session_not_on_or_after,
            assertion_id: verified.id,
            tunnel_group: self.config.tunnel_group.clone(),
            replay_until: checked.replay_until,
        })
    }

    /// Rules checkable on the raw document before any crypto.
    fn check_structure<'s>(
        &self,
        s: &'s Scanned,
    ) -> Result<&'s scan::ScannedAssertion, SamlReject> {
        match s.status.as_deref() {
            Some(STATUS_SUCCESS) => {}
            Some(other) => {
                return Err(SamlReject::IdpStatus {
                    status: other.to_string(),
                });
            }
            None => return Err(SamlReject::Malformed("no StatusCode".into())),
        }
        if s.encrypted_assertion {
            return Err(SamlReject::EncryptedAssertion);
        }
        let assertion = match (&s.assertion, s.assertion_count) {
            (Some(a), 1) => a,
            (_, found) => return Err(SamlReject::AssertionCount { found }),
        };
        if s.signatures.is_empty() {
            return Err(SamlReject::Unsigned);
        }
        // Destination is required (the Response may be unsigned when only the
        // Assertion is; samael then never looks at it).
        match s.destination.as_deref() {
            Some(d) if d == self.acs_url => {}
            other => {
                return Err(SamlReject::WrongDestination {
                    found: other.unwrap_or("(none)").to_string(),
                });
            }
        }
        if let Some(issuer) = s.issuer.as_deref()
            && issuer != self.config.idp_entity_id
        {
            return Err(SamlReject::WrongIssuer {
                found: issuer.to_string(),
            });
        }
        Ok(assertion)
    }

    fn check_assertion(
        &self,
        now: SystemTime,
        a: &Assertion,
        s: &Scanned,
        request_id: &str,
    ) -> Result<Checked, SamlReject> {
        let raw = s
            .assertion
            .as_ref()
            .ok_or(SamlReject::AssertionCount { found: 0 })?;
        // The verified assertion must be the one and only assertion in the
        // document: then what we read from the document is what was signed.
        if a.id != raw.id {
            return Err(SamlReject::SignatureNotOverAssertion);
        }
        let idp = &self.config.idp_entity_id;
        if a.issuer.value.as_deref() != Some(idp.as_str())
            || raw.issuer.as_deref() != Some(idp.as_str())
        {
            return Err(SamlReject::WrongIssuer {
                found: a.issuer.value.clone().unwrap_or_default(),
            });
        }

        // Audience: every AudienceRestriction must name us, and there must be one.
        let conditions = a.conditions.as_ref().ok_or(SamlReject::WrongAudience)?;
        let restrictions = conditions
            .audience_restrictions
            .as_deref()
            .unwrap_or_default();
        if restrictions.is_empty()
            || !restrictions
                .iter()
                .all(|r| r.audience.iter().any(|x| x == &self.entity_id))
        {
            return Err(SamlReject::WrongAudience);
        }

        let now_c: DateTime<Utc> = now.into();
        let skew = TimeDelta::from_std(self.config.effective_skew())
            .map_err(|_| SamlReject::Internal("skew out of range".into()))?;
        let plus_skew = |t: DateTime<Utc>| {
            t.checked_add_signed(skew)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        let minus_skew = |t: DateTime<Utc>| {
            t.checked_sub_signed(skew)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };

        // Bearer subject confirmation: Recipient = ACS, InResponseTo = our request,
        // inside its window. The first one that passes is used.
        let confirmations = a
            .subject
            .as_ref()
            .and_then(|s| s.subject_confirmations.as_deref())
            .unwrap_or_default();
        let mut first_err = None;
        let mut scd_not_on_or_after = None;
        for c in confirmations
            .iter()
            .filter(|c| c.method.as_deref() == Some(BEARER))
        {
            let Some(d) = c.subject_confirmation_data.as_ref() else {
                continue;
            };
            let err = if d.recipient.as_deref() != Some(self.acs_url.as_str()) {
                Some(SamlReject::WrongRecipient {
                    found: d.recipient.clone().unwrap_or_else(|| "(none)".into()),
                })
            } else if d.in_response_to.as_deref() != Some(request_id) {
                Some(SamlReject::InResponseToMismatch)
            } else if d.not_before.is_some_and(|nb| now_c < minus_skew(nb)) {
                Some(SamlReject::NotYetValid)
            } else {
                match d.not_on_or_after {
                    None => Some(SamlReject::MissingSubjectConfirmation),
                    Some(t) if now_c >= plus_skew(t) => Some(SamlReject::Expired),
                    Some(t) => {
                        scd_not_on_or_after = Some(t);
                        None
                    }
                }
            };
            match err {
                None => break,
                Some(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let Some(scd_not_on_or_after) = scd_not_on_or_after else {
            return Err(first_err.unwrap_or(SamlReject::MissingSubjectConfirmation));
        };

        // Time window: NotBefore/IssueInstant not in the future, NotOnOrAfter (and
        // `timeout assertion` from NotBefore) not passed, IssueInstant recent.
        if now_c < minus_skew(a.issue_instant)
            || conditions
                .not_before
                .is_some_and(|nb| now_c < minus_skew(nb))
        {
            return Err(SamlReject::NotYetValid);
        }
        let mut expiry = scd_not_on_or_after;
        if let Some(t) = conditions.not_on_or_after {
            expiry = expiry.min(t);
        }
        if let Some(timeout) = self.config.timeout_assertion {
            let start = conditions.not_before.unwrap_or(a.issue_instant);
            let limit = TimeDelta::from_std(timeout)
                .ok()
                .and_then(|d| start.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            expiry = expiry.min(limit);
        }
        if now_c >= plus_skew(expiry) {
            return Err(SamlReject::Expired);
        }
        let issue_limit = TimeDelta::from_std(self.config.max_issue_delay)
            .ok()
            .and_then(|d| a.issue_instant.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if now_c >= plus_skew(issue_limit) {
            return Err(SamlReject::Stale);
        }

        // AuthnStatement required; the IdP session must still be running.
        let statements = a.authn_statements.as_deref().unwrap_or_default();
        if statements.is_empty() {
            return Err(SamlReject::MissingAuthnStatement);
        }
        let session_end = statements
            .iter()
            .filter_map(|s| s.session_not_on_or_after)
            .min();
        if session_end.is_some_and(|t| t <= now_c) {
            return Err(SamlReject::SessionExpired);
        }

        // NameID: both parsers must read the same complete string.
        let ours = raw.name_id.as_deref().unwrap_or_default();
        let theirs = a
            .subject
            .as_ref()
            .and_then(|s| s.name_id.as_ref())
            .map(|n| n.value.trim())
            .unwrap_or_default();
        if ours.is_empty() {
            return Err(SamlReject::MissingNameId);
        }
        if ours != theirs || ours.chars().any(|c| c.is_control()) {
            return Err(SamlReject::BadNameId);
        }

        Ok(Checked {
            name_id: ours.to_string(),
            session_not_on_or_after: session_end.map(SystemTime::from),
            replay_until: SystemTime::from(plus_skew(expiry.min(issue_limit))),
        })
    }
}

struct Checked {
    name_id: String,
    session_not_on_or_after: Option<SystemTime>,
    replay_until: SystemTime,
}

fn build_samael(
    cfg: &SpConfig,
    entity_id: &str,
    acs_url: &str,
) -> Result<ServiceProvider, SpConfigError> {
    let mut md = format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
         xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{}\">\
         <md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">",
        xml_escape(&cfg.idp_entity_id)
    );
    for der in &cfg.idp_signing_certs {
        md.push_str(&format!(
            "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}\
             </ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
            STANDARD.encode(der)
        ));
    }
    md.push_str(&format!(
        "<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" \
         Location=\"{}\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
        xml_escape(&cfg.idp_sign_in_url)
    ));
    let idp = <EntityDescriptor as std::str::FromStr>::from_str(&md)
        .map_err(|e| SpConfigError::Samael(e.to_string()))?;

    // samael's allow-list has no SHA-1 entry: with SHA-1 configured it must be
    // told "any" (None) and our scan enforces the exact list; otherwise samael
    // gets the list too.
    let allowed = &cfg.allowed_signature_algorithms;
    let samael_allowed = if allowed.contains(&XmlSignatureAlgorithm::RsaSha1) {
        None
    } else {
        Some(
            allowed
                .iter()
                .filter_map(|a| a.to_samael())
                .collect::<Vec<_>>(),
        )
    };
    let backstop = TimeDelta::hours(SAMAEL_CLOCK_BACKSTOP_HOURS);
    let sp = ServiceProviderBuilder::default()
        .entity_id(entity_id.to_string())
        .acs_url(acs_url.to_string())
        .idp_metadata(idp)
        .allowed_signature_algorithms(samael_allowed)
        .allow_idp_initiated(false)
        .force_authn(cfg.force_reauthentication)
        .max_issue_delay(backstop)
        .max_clock_skew(backstop)
        .build()
        .map_err(|e| SpConfigError::Samael(e.to_string()))?;

    // Gap (1) of dependencies.md: without signing certs samael skips signature
    // verification entirely. Make sure it sees every one of ours.
    match sp.idp_signing_certs() {
        Ok(Some(certs)) if certs.len() == cfg.idp_signing_certs.len() => Ok(sp),
        Ok(_) => Err(SpConfigError::MissingIdpCertificate),
        Err(e) => Err(SpConfigError::Samael(e.to_string())),
    }
}

/// samael's error (which is !Send) to ours, at once.
fn map_samael(e: SamaelError) -> SamlReject {
    use SamaelError as E;
    match e {
        E::FailedToValidateSignature => SamlReject::BadSignature,
        E::DestinationValidationError {
            response_destination,
            ..
        } => SamlReject::WrongDestination {
            found: response_destination.unwrap_or_else(|| "(none)".into()),
        },
        E::AssertionExpired { .. } | E::ResponseExpired { .. } => SamlReject::Stale,
        E::AssertionSubjectConfirmationExpired { .. } | E::AssertionConditionExpired { .. } => {
            SamlReject::Expired
        }
        E::AssertionSubjectConfirmationExpiredBefore { .. }
        | E::AssertionConditionExpiredBefore { .. } => SamlReject::NotYetValid,
        E::AssertionIssuerMismatch { issuer, .. } | E::ResponseIssuerMismatch { issuer, .. } => {
            SamlReject::WrongIssuer {
                found: issuer.unwrap_or_else(|| "(none)".into()),
            }
        }
        E::AssertionConditionAudienceRestrictionFailed { .. } => SamlReject::WrongAudience,
        E::AssertionRecipientMismatch {
            assertion_recipient,
            ..
        } => SamlReject::WrongRecipient {
            found: assertion_recipient.unwrap_or_else(|| "(none)".into()),
        },
        E::AssertionInResponseToInvalid { .. } | E::ResponseInResponseToInvalid { .. } => {
            SamlReject::InResponseToMismatch
        }
        E::ResponseBadStatusCode { code } => SamlReject::IdpStatus { status: code },
        E::AssertionBearerSubjectConfirmationMissing | E::AssertionSubjectConfirmationMissing => {
            SamlReject::MissingSubjectConfirmation
        }
        E::EncryptedAssertionsNotYetSupported
        | E::MissingEncryptedKeyInfo
        | E::MissingEncryptedValueInfo
        | E::EncryptedAssertionKeyMethodUnsupported { .. }
        | E::EncryptedAssertionValueMethodUnsupported { .. }
        | E::EncryptedAssertionInvalid
        | E::FailedToDecryptAssertion => SamlReject::EncryptedAssertion,
        E::FailedToParseSamlResponse(e) => SamlReject::Malformed(e.to_string()),
        E::FailedToParseSamlAssertion(e) => SamlReject::Malformed(e.to_string()),
        E::CryptoXmlError(e) => SamlReject::Malformed(e.to_string()),
        other => SamlReject::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sp_is_send_sync() {
        assert_send_sync::<SamlSp>();
        assert_send_sync::<SamlReject>();
    }
}

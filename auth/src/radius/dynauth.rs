//! Dynamic authorization server (RFC 5176): CoA-Request and Disconnect-Request
//! from ISE on UDP 1700 (`dynamic-authorization`), sans-IO.
//!
//! Order of checks, each failure counted in [`DynAuthStats`]:
//! 1. source address is a configured client, else dropped;
//! 2. framing (length rules), else dropped;
//! 3. code is CoA-Request or Disconnect-Request, else dropped;
//! 4. Request Authenticator with that client's secret and the
//!    Message-Authenticator when present (or required by config), else
//!    silently dropped (RFC 5176 section 3.4/3.5);
//! 5. a retransmission (same source, identifier and authenticator within
//!    `duplicate_window`) gets the cached reply again, without a second lookup;
//! 6. attributes decode, else NAK 404 Invalid Request;
//! 7. NAS identification matches ours, else NAK 403; unsupported attributes NAK
//!    401; malformed av-pair values NAK 407; no session selector NAK 402;
//! 8. the caller's lookup applies it: `Ok` = ACK, `Err(cause)` = NAK with cause.
//!
//! Every reply carries a Message-Authenticator and echoes Proxy-State.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::attribute::{AsaAttribute, Attribute, CiscoAttribute, ErrorCause, VendorSpecific};
use super::authz::{Authorization, AuthorizationWarning};
use super::crypto::{self, MessageAuthenticatorPolicy};
use super::packet::{Code, Packet, frame};

/// Proxy-State (RFC 2865 section 5.33), copied unmodified into replies.
const PROXY_STATE: u8 = 33;
/// Cap on cached replies for duplicate detection.
const DUPLICATE_CACHE_MAX: usize = 4096;

/// A RADIUS server allowed to send CoA/Disconnect (an `aaa-server` host of a
/// group with `dynamic-authorization`).
#[derive(Clone)]
pub struct DynAuthClient {
    pub addr: IpAddr,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for DynAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynAuthClient")
            .field("addr", &self.addr)
            .field("secret", &"<hidden>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct DynAuthConfig {
    pub clients: Vec<DynAuthClient>,
    /// Our NAS-IP-Address; a request naming another is NAKed 403.
    pub nas_ip: Option<Ipv4Addr>,
    /// Our NAS-Identifier; a request naming another is NAKed 403.
    pub nas_identifier: Option<String>,
    /// Drop requests without a Message-Authenticator.
    pub require_message_authenticator: bool,
    /// How long a reply is kept to answer a retransmission (RFC 5176 section 2.3).
    pub duplicate_window: Duration,
}

impl DynAuthConfig {
    pub fn new(clients: Vec<DynAuthClient>) -> Self {
        Self {
            clients,
            nas_ip: None,
            nas_identifier: None,
            require_message_authenticator: false,
            duplicate_window: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DynAuthKind {
    Disconnect,
    Coa,
}

/// How the request names the session(s) (RFC 5176 section 3, asa-aaa.md:
/// Acct-Session-Id, audit-session-id or Framed-IP-Address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSelectors {
    pub acct_session_id: Option<String>,
    /// `Cisco-AVPair = audit-session-id=...`.
    pub audit_session_id: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
    pub user_name: Option<String>,
    pub calling_station_id: Option<String>,
}

impl SessionSelectors {
    pub fn is_empty(&self) -> bool {
        self.acct_session_id.is_none()
            && self.audit_session_id.is_none()
            && self.framed_ip.is_none()
            && self.user_name.is_none()
            && self.calling_station_id.is_none()
    }
}

/// A verified, parsed CoA-Request or Disconnect-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynAuthRequest {
    pub kind: DynAuthKind,
    pub from: SocketAddr,
    pub identifier: u8,
    pub selectors: SessionSelectors,
    /// For CoA: the new authorization (`sgt`, `filter_id`, `inacl`, timeouts,
    /// group policy...). Empty for Disconnect. Every av-pair, including ones
    /// this module does not interpret, is in `changes.av_pairs`.
    pub changes: Authorization,
    /// `subscriber:command=...` (e.g. `reauthenticate`), when present.
    pub command: Option<String>,
}

/// Counters for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DynAuthStats {
    pub received: u64,
    pub unknown_client: u64,
    pub malformed: u64,
    pub unexpected_code: u64,
    pub bad_authenticator: u64,
    pub duplicates: u64,
    pub acks: u64,
    pub naks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DuplicateKey {
    from: SocketAddr,
    identifier: u8,
    authenticator: [u8; 16],
}

/// The CoA/Disconnect responder.
#[derive(Debug)]
pub struct DynAuthServer {
    config: DynAuthConfig,
    stats: DynAuthStats,
    replies: HashMap<DuplicateKey, Vec<u8>>,
    expiry: VecDeque<(Instant, DuplicateKey)>,
}

/// Outcome of parsing, before the lookup.
enum Parsed {
    Request(Box<DynAuthRequest>),
    Nak(ErrorCause),
}

impl DynAuthServer {
    pub fn new(config: DynAuthConfig) -> Self {
        Self {
            config,
            stats: DynAuthStats::default(),
            replies: HashMap::new(),
            expiry: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> DynAuthStats {
        self.stats
    }

    /// Handles one datagram. `lookup` finds the session(s) and applies the
    /// request: `Ok(())` answers ACK; `Err(cause)` answers NAK with that
    /// Error-Cause (e.g. [`ErrorCause::SessionContextNotFound`]). Returns the
    /// reply to send back to `from`, or `None` when the datagram is dropped.
    pub fn handle<F>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        lookup: F,
    ) -> Option<Vec<u8>>
    where
        F: FnOnce(&DynAuthRequest) -> Result<(), ErrorCause>,
    {
        self.stats.received += 1;
        self.expire(now);
        let Some(client) = self.config.clients.iter().find(|c| c.addr == from.ip()) else {
            self.stats.unknown_client += 1;
            return None;
        };
        let secret = client.secret.clone();
        let Ok(packet_bytes) = frame(bytes) else {
            self.stats.malformed += 1;
            return None;
        };
        let code = Code::from(packet_bytes[0]);
        let kind = match code {
            Code::DisconnectRequest => DynAuthKind::Disconnect,
            Code::CoaRequest => DynAuthKind::Coa,
            _ => {
                self.stats.unexpected_code += 1;
                return None;
            }
        };
        let policy = if self.config.require_message_authenticator {
            MessageAuthenticatorPolicy::Required
        } else {
            MessageAuthenticatorPolicy::IfPresent
        };
        if crypto::verify_request(packet_bytes, &secret, policy).is_err() {
            self.stats.bad_authenticator += 1;
            return None;
        }
        let identifier = packet_bytes[1];
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&packet_bytes[4..20]);
        let key = DuplicateKey {
            from,
            identifier,
            authenticator,
        };
        if let Some(reply) = self.replies.get(&key) {
            self.stats.duplicates += 1;
            return Some(reply.clone());
        }

        let (outcome, proxy_states) = match Packet::decode(packet_bytes) {
            Ok(packet) => {
                let proxy_states: Vec<Attribute> = packet
                    .attributes
                    .iter()
                    .filter(|a| a.type_code() == PROXY_STATE)
                    .cloned()
                    .collect();
                let outcome = match self.parse(kind, from, &packet) {
                    Parsed::Request(request) => lookup(&request),
                    Parsed::Nak(cause) => Err(cause),
                };
                (outcome, proxy_states)
            }
            Err(_) => (Err(ErrorCause::InvalidRequest), Vec::new()),
        };

        let (reply_code, error_cause) = match (kind, outcome) {
            (DynAuthKind::Disconnect, Ok(())) => (Code::DisconnectAck, None),
            (DynAuthKind::Coa, Ok(())) => (Code::CoaAck, None),
            (DynAuthKind::Disconnect, Err(c)) => (Code::DisconnectNak, Some(c)),
            (DynAuthKind::Coa, Err(c)) => (Code::CoaNak, Some(c)),
        };
        let mut reply = Packet::new(reply_code, identifier, [0; 16]);
        reply
            .attributes
            .push(Attribute::MessageAuthenticator([0; 16]));
        if let Some(cause) = error_cause {
            reply.attributes.push(Attribute::ErrorCause(cause));
        }
        reply.attributes.extend(proxy_states);
        let bytes = match reply.encode_reply(&authenticator, &secret) {
            Ok(b) => b,
            Err(_) => {
                // Only an oversized Proxy-State echo can fail; answer without it.
                reply.attributes.retain(|a| a.type_code() != PROXY_STATE);
                reply.encode_reply(&authenticator, &secret).ok()?
            }
        };
        if error_cause.is_some() {
            self.stats.naks += 1;
        } else {
            self.stats.acks += 1;
        }
        self.remember(now, key, bytes.clone());
        Some(bytes)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now && self.expiry.len() <= DUPLICATE_CACHE_MAX {
                break;
            }
            if let Some((_, key)) = self.expiry.pop_front() {
                self.replies.remove(&key);
            }
        }
    }

    fn remember(&mut self, now: Instant, key: DuplicateKey, reply: Vec<u8>) {
        if self.config.duplicate_window.is_zero() {
            return;
        }
        self.expiry
            .push_back((now + self.config.duplicate_window, key.clone()));
        self.replies.insert(key, reply);
        self.expire(now);
    }

    fn parse(&self, kind: DynAuthKind, from: SocketAddr, packet: &Packet) -> Parsed {
        let mut selectors = SessionSelectors::default();
        let mut command = None;
        let mut authorization_attribute = false;
        for attribute in &packet.attributes {
            match attribute {
                Attribute::AcctSessionId(s) => {
                    selectors.acct_session_id.get_or_insert_with(|| s.clone());
                }
                Attribute::FramedIpAddress(ip) => {
                    // In a CoA, Framed-IP-Address identifies the session; it is
                    // not a request to renumber it (RFC 5176 section 3).
                    selectors.framed_ip.get_or_insert(*ip);
                }
                Attribute::UserName(s) => {
                    selectors.user_name.get_or_insert_with(|| s.clone());
                }
                Attribute::CallingStationId(s) => {
                    selectors
                        .calling_station_id
                        .get_or_insert_with(|| s.clone());
                }
                Attribute::NasIpAddress(ip) => {
                    if self.config.nas_ip.is_some_and(|ours| ours != *ip) {
                        return Parsed::Nak(ErrorCause::NasIdentificationMismatch);
                    }
                }
                Attribute::NasIdentifier(id) => {
                    if self
                        .config
                        .nas_identifier
                        .as_deref()
                        .is_some_and(|ours| ours != id)
                    {
                        return Parsed::Nak(ErrorCause::NasIdentificationMismatch);
                    }
                }
                Attribute::FilterId(_)
                | Attribute::SessionTimeout(_)
                | Attribute::IdleTimeout(_)
                | Attribute::Class(_) => authorization_attribute = true,
                Attribute::VendorSpecific(VendorSpecific::Cisco(CiscoAttribute::AvPair(_))) => {
                    // Interpreted below via Authorization.
                }
                Attribute::VendorSpecific(VendorSpecific::Asa(
                    AsaAttribute::GroupPolicy(_) | AsaAttribute::SimultaneousLogins(_),
                )) => authorization_attribute = true,
                Attribute::MessageAuthenticator(_)
                | Attribute::State(_)
                | Attribute::ReplyMessage(_)
                | Attribute::EventTimestamp(_)
                | Attribute::ServiceType(_)
                | Attribute::NasPortType(_)
                | Attribute::CalledStationId(_) => {}
                Attribute::Other { typ, .. } if *typ == PROXY_STATE => {}
                _ => return Parsed::Nak(ErrorCause::UnsupportedAttribute),
            }
        }

        let changes = Authorization::from_attributes(&packet.attributes);
        if changes.warnings.iter().any(|w| {
            matches!(
                w,
                AuthorizationWarning::MalformedAvPair { .. }
                    | AuthorizationWarning::BadSecurityGroupTag(_)
                    | AuthorizationWarning::BadInaclIndex(_)
                    | AuthorizationWarning::EmptyGroupPolicy
            )
        }) {
            return Parsed::Nak(ErrorCause::InvalidAttributeValue);
        }
        for pair in &changes.av_pairs {
            match pair.key.as_str() {
                "audit-session-id" => {
                    selectors
                        .audit_session_id
                        .get_or_insert_with(|| pair.value.clone());
                }
                "subscriber:command" => {
                    command.get_or_insert_with(|| pair.value.clone());
                }
                "cts:security-group-tag" => authorization_attribute = true,
                k if k.starts_with("ip:inacl#") => authorization_attribute = true,
                _ => {}
            }
        }
        if kind == DynAuthKind::Disconnect && authorization_attribute {
            // RFC 5176 section 3: a Disconnect-Request carries no authorization changes.
            return Parsed::Nak(ErrorCause::UnsupportedAttribute);
        }
        if selectors.is_empty() {
            return Parsed::Nak(ErrorCause::MissingAttribute);
        }
        let changes = if kind == DynAuthKind::Coa {
            changes
        } else {
            Authorization {
                av_pairs: changes.av_pairs,
                ..Authorization::default()
            }
        };
        Parsed::Request(Box::new(DynAuthRequest {
            kind,
            from,
            identifier: packet.identifier,
            selectors,
            changes,
            command,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::attribute::types;
    use std::cell::Cell;

    const ISE: &str = "198.18.1.20:40000";

    fn server() -> DynAuthServer {
        let mut config = DynAuthConfig::new(vec![DynAuthClient {
            addr: "198.18.1.20".parse().unwrap(),
            secret: b"coa-secret".to_vec(),
        }]);
        config.nas_ip = Some(Ipv4Addr::new(198, 18, 1, 1));
        DynAuthServer::new(config)
    }

    fn request(code: Code, id: u8, attributes: Vec<Attribute>, secret: &[u8]) -> Vec<u8> {
        let mut p = Packet::new(code, id, [0; 16]);
        p.attributes = attributes;
        p.attributes.push(Attribute::MessageAuthenticator([0; 16]));
        p.encode_request(secret).unwrap()
    }

    /// Verifies the reply like ISE would and returns it decoded.
    fn check_reply(request: &[u8], reply: &[u8]) -> Packet {
        let authenticator: [u8; 16] = request[4..20].try_into().unwrap();
        crypto::verify_reply(
            reply,
            &authenticator,
            b"coa-secret",
            MessageAuthenticatorPolicy::Required,
        )
        .unwrap();
        let p = Packet::decode(reply).unwrap();
        assert_eq!(p.identifier, request[1]);
        p
    }

    fn error_cause(p: &Packet) -> Option<ErrorCause> {
        p.attributes.iter().find_map(|a| match a {
            Attribute::ErrorCause(c) => Some(*c),
            _ => None,
        })
    }

    #[test]
    fn disconnect_by_acct_session_id_is_acked() {
        let mut s = server();
        let req = request(
            Code::DisconnectRequest,
            5,
            vec![
                Attribute::AcctSessionId("A1".into()),
                Attribute::NasIpAddress(Ipv4Addr::new(198, 18, 1, 1)),
            ],
            b"coa-secret",
        );
        let mut seen = None;
        let reply = s
            .handle(Instant::now(), ISE.parse().unwrap(), &req, |r| {
                seen = Some(r.clone());
                Ok(())
            })
            .unwrap();
        let p = check_reply(&req, &reply);
        assert_eq!(p.code, Code::DisconnectAck);
        assert_eq!(error_cause(&p), None);
        let seen = seen.unwrap();
        assert_eq!(seen.kind, DynAuthKind::Disconnect);
        assert_eq!(seen.selectors.acct_session_id.as_deref(), Some("A1"));
        assert_eq!(s.stats().acks, 1);
    }

    #[test]
    fn coa_changes_sgt_and_acl_by_audit_session_id() {
        let mut s = server();
        let req = request(
            Code::CoaRequest,
            6,
            vec![
                Attribute::cisco_av_pair("audit-session-id=c612"),
                Attribute::cisco_av_pair("cts:security-group-tag=0014-01"),
                Attribute::cisco_av_pair("ip:inacl#1=deny ip any any"),
                Attribute::FilterId("QUARANTINE".into()),
                Attribute::Other {
                    typ: PROXY_STATE,
                    value: b"ps".to_vec(),
                },
            ],
            b"coa-secret",
        );
        let mut seen = None;
        let reply = s
            .handle(Instant::now(), ISE.parse().unwrap(), &req, |r| {
                seen = Some(r.clone());
                Ok(())
            })
            .unwrap();
        let p = check_reply(&req, &reply);
        assert_eq!(p.code, Code::CoaAck);
        assert!(p.attributes.contains(&Attribute::Other {
            typ: PROXY_STATE,
            value: b"ps".to_vec()
        }));
        let seen = seen.unwrap();
        assert_eq!(seen.selectors.audit_session_id.as_deref(), Some("c612"));
        assert_eq!(seen.changes.sgt, Some(20));
        assert_eq!(seen.changes.filter_id.as_deref(), Some("QUARANTINE"));
        assert_eq!(seen.changes.inacl, vec!["deny ip any any"]);
    }

    #[test]
    fn naks_carry_error_cause() {
        let cases: Vec<(Code, Vec<Attribute>, ErrorCause)> = vec![
            (
                Code::DisconnectRequest,
                vec![Attribute::FramedIpAddress(Ipv4Addr::new(198, 18, 100, 9))],
                ErrorCause::SessionContextNotFound,
            ),
            (
                Code::DisconnectRequest,
                vec![Attribute::ReplyMessage("no selector".into())],
                ErrorCause::MissingAttribute,
            ),
            (
                Code::DisconnectRequest,
                vec![
                    Attribute::AcctSessionId("A1".into()),
                    Attribute::FilterId("X".into()),
                ],
                ErrorCause::UnsupportedAttribute,
            ),
            (
                Code::CoaRequest,
                vec![
                    Attribute::AcctSessionId("A1".into()),
                    Attribute::Other {
                        typ: 99,
                        value: vec![1],
                    },
                ],
                ErrorCause::UnsupportedAttribute,
            ),
            (
                Code::CoaRequest,
                vec![
                    Attribute::AcctSessionId("A1".into()),
                    Attribute::NasIpAddress(Ipv4Addr::new(198, 18, 1, 99)),
                ],
                ErrorCause::NasIdentificationMismatch,
            ),
            (
                Code::CoaRequest,
                vec![
                    Attribute::AcctSessionId("A1".into()),
                    Attribute::cisco_av_pair("cts:security-group-tag=nope"),
                ],
                ErrorCause::InvalidAttributeValue,
            ),
            (
                // Session-Timeout of 3 octets: authenticated but malformed.
                Code::CoaRequest,
                vec![
                    Attribute::AcctSessionId("A1".into()),
                    Attribute::Other {
                        typ: types::SESSION_TIMEOUT,
                        value: vec![0, 0, 1],
                    },
                ],
                ErrorCause::InvalidRequest,
            ),
        ];
        for (i, (code, attributes, cause)) in cases.into_iter().enumerate() {
            let mut s = server();
            let req = request(code, i as u8, attributes, b"coa-secret");
            let reply = s
                .handle(Instant::now(), ISE.parse().unwrap(), &req, |_| {
                    Err(ErrorCause::SessionContextNotFound)
                })
                .unwrap();
            let p = check_reply(&req, &reply);
            let nak = if code == Code::CoaRequest {
                Code::CoaNak
            } else {
                Code::DisconnectNak
            };
            assert_eq!(p.code, nak, "case {i}");
            assert_eq!(error_cause(&p), Some(cause), "case {i}");
            assert_eq!(s.stats().naks, 1);
        }
    }

    #[test]
    fn drops_what_must_be_dropped() {
        let mut s = server();
        let now = Instant::now();
        let good = request(
            Code::DisconnectRequest,
            1,
            vec![Attribute::AcctSessionId("A1".into())],
            b"coa-secret",
        );
        let never = |_: &DynAuthRequest| -> Result<(), ErrorCause> { panic!("lookup called") };
        // Unknown client.
        assert!(
            s.handle(now, "198.18.1.66:1700".parse().unwrap(), &good, never)
                .is_none()
        );
        // Wrong secret.
        let bad = request(
            Code::DisconnectRequest,
            1,
            vec![Attribute::AcctSessionId("A1".into())],
            b"other",
        );
        assert!(s.handle(now, ISE.parse().unwrap(), &bad, never).is_none());
        // Tampered Message-Authenticator with a recomputed Request Authenticator.
        let mut forged = good.clone();
        let n = forged.len();
        forged[n - 1] ^= 1;
        forged[4..20].fill(0);
        let md5 = crypto::md5_of(&[&forged, b"coa-secret"]);
        forged[4..20].copy_from_slice(&md5);
        assert!(
            s.handle(now, ISE.parse().unwrap(), &forged, never)
                .is_none()
        );
        // Not a dyn-auth request code, truncated.
        let access = request(Code::AccountingRequest, 1, vec![], b"coa-secret");
        assert!(
            s.handle(now, ISE.parse().unwrap(), &access, never)
                .is_none()
        );
        assert!(
            s.handle(now, ISE.parse().unwrap(), &good[..19], never)
                .is_none()
        );
        let st = s.stats();
        assert_eq!(
            (
                st.unknown_client,
                st.bad_authenticator,
                st.unexpected_code,
                st.malformed
            ),
            (1, 2, 1, 1)
        );
        assert_eq!(st.acks + st.naks, 0);
    }

    #[test]
    fn message_authenticator_can_be_required() {
        let mut s = server();
        s.config.require_message_authenticator = true;
        let mut p = Packet::new(Code::DisconnectRequest, 1, [0; 16]);
        p.attributes.push(Attribute::AcctSessionId("A1".into()));
        let bytes = p.encode_request(b"coa-secret").unwrap();
        assert!(
            s.handle(Instant::now(), ISE.parse().unwrap(), &bytes, |_| Ok(()))
                .is_none()
        );
        s.config.require_message_authenticator = false;
        assert!(
            s.handle(Instant::now(), ISE.parse().unwrap(), &bytes, |_| Ok(()))
                .is_some()
        );
    }

    #[test]
    fn retransmission_gets_the_same_answer_once_applied() {
        let mut s = server();
        let t0 = Instant::now();
        let req = request(
            Code::DisconnectRequest,
            9,
            vec![Attribute::AcctSessionId("A1".into())],
            b"coa-secret",
        );
        let calls = Cell::new(0);
        let lookup = |_: &DynAuthRequest| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Ok(())
            } else {
                Err(ErrorCause::SessionContextNotFound)
            }
        };
        let first = s.handle(t0, ISE.parse().unwrap(), &req, lookup).unwrap();
        let again = s
            .handle(
                t0 + Duration::from_secs(3),
                ISE.parse().unwrap(),
                &req,
                lookup,
            )
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(calls.get(), 1);
        assert_eq!(s.stats().duplicates, 1);
        // After the window it is a new request.
        let late = s
            .handle(
                t0 + Duration::from_secs(31),
                ISE.parse().unwrap(),
                &req,
                lookup,
            )
            .unwrap();
        assert_eq!(check_reply(&req, &late).code, Code::DisconnectNak);
    }
}

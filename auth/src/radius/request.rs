//! Requests the headend sends, in the ISE dialect of asa-aaa.md section 3.
//!
//! An [`OutgoingRequest`] is a template, not bytes: the identifier, the Request
//! Authenticator, the hidden User-Password and the authenticators depend on the
//! server it goes to (each host has its own secret), so the client encodes it
//! again for every host it fails over to.

use std::net::{IpAddr, Ipv4Addr};

use zeroize::Zeroizing;

use super::attribute::{
    ASA_CLIENT_TYPE_ANYCONNECT_SSL, AcctStatusType, AsaAttribute, Attribute, NasPortType,
    ServiceType, TerminateCause,
};
use super::crypto::{self, MAX_PASSWORD_LEN};
use super::packet::{Code, EncodeError, Packet};

/// Which server port a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Access-Request, to the authentication port (1812).
    Authentication,
    /// Accounting-Request, to the accounting port (1813).
    Accounting,
}

/// A request before it is bound to a host.
#[derive(Clone)]
pub struct OutgoingRequest {
    code: Code,
    attributes: Vec<Attribute>,
    /// Plaintext for PAP, hidden per host at encode time.
    password: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for OutgoingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingRequest")
            .field("code", &self.code)
            .field("attributes", &self.attributes)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// One encoding of a request for one host.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub bytes: Vec<u8>,
    /// The Request Authenticator, needed to verify the reply.
    pub authenticator: [u8; 16],
}

impl OutgoingRequest {
    /// An Access-Request with these attributes (a Message-Authenticator is
    /// added first at encode time; do not list User-Password, use
    /// [`OutgoingRequest::with_password`]).
    pub fn access_request(attributes: Vec<Attribute>) -> Self {
        Self {
            code: Code::AccessRequest,
            attributes,
            password: None,
        }
    }

    /// An Accounting-Request with these attributes.
    pub fn accounting_request(attributes: Vec<Attribute>) -> Self {
        Self {
            code: Code::AccountingRequest,
            attributes,
            password: None,
        }
    }

    /// Adds the State of an Access-Challenge being answered (RFC 2865 5.24).
    pub fn with_state(mut self, state: &[u8]) -> Self {
        self.attributes.push(Attribute::State(state.to_vec()));
        self
    }

    /// Adds a PAP password (hidden per host at encode time).
    pub fn with_password(mut self, password: &[u8]) -> Result<Self, EncodeError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(EncodeError::PasswordTooLong(password.len()));
        }
        self.password = Some(Zeroizing::new(password.to_vec()));
        Ok(self)
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn kind(&self) -> RequestKind {
        if self.code == Code::AccountingRequest {
            RequestKind::Accounting
        } else {
            RequestKind::Authentication
        }
    }

    pub fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    /// Sets Acct-Delay-Time (RFC 2866 section 5.2), replacing any present.
    pub fn set_acct_delay_time(&mut self, seconds: u32) {
        self.attributes
            .retain(|a| !matches!(a, Attribute::AcctDelayTime(_)));
        self.attributes.push(Attribute::AcctDelayTime(seconds));
    }

    pub(crate) fn acct_delay_time(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::AcctDelayTime(v) => Some(*v),
            _ => None,
        })
    }

    /// Encodes for one host: a fresh random Request Authenticator for an
    /// Access-Request (password hidden with it), the computed one otherwise.
    pub fn encode(&self, identifier: u8, secret: &[u8]) -> Result<EncodedRequest, EncodeError> {
        let authenticator = if self.code == Code::AccessRequest {
            crypto::random_authenticator()
        } else {
            [0; 16]
        };
        let mut packet = Packet::new(self.code, identifier, authenticator);
        packet.attributes = self
            .attributes
            .iter()
            .filter(|a| !matches!(a, Attribute::UserPassword(_)))
            .cloned()
            .collect();
        if let Some(password) = &self.password {
            let hidden = crypto::hide_password(password, secret, &authenticator)?;
            // Right after User-Name, where servers and humans look for it.
            let at = packet
                .attributes
                .iter()
                .position(|a| matches!(a, Attribute::UserName(_)))
                .map_or(0, |i| i + 1);
            packet
                .attributes
                .insert(at, Attribute::UserPassword(hidden));
        }
        let bytes = packet.encode_request(secret)?;
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&bytes[4..20]);
        Ok(EncodedRequest {
            bytes,
            authenticator,
        })
    }
}

/// What the headend knows about a session when it talks to ISE.
#[derive(Debug, Clone, Copy)]
pub struct SessionContext<'a> {
    pub user_name: &'a str,
    /// NAS-IP-Address: the headend's address as ISE knows the network device.
    pub nas_ip: Ipv4Addr,
    /// NAS-Identifier, when configured (ASA sends none by default).
    pub nas_identifier: Option<&'a str>,
    /// The client's public address: Calling-Station-Id and `ip:source-ip`.
    pub client_ip: IpAddr,
    /// `audit-session-id`, the key ISE uses for CoA.
    pub audit_session_id: &'a str,
    /// ASA-TunnelGroupName (3076/146).
    pub tunnel_group: &'a str,
}

impl SessionContext<'_> {
    fn common_attributes(&self, out: &mut Vec<Attribute>) {
        out.push(Attribute::UserName(self.user_name.to_owned()));
        out.push(Attribute::NasIpAddress(self.nas_ip));
        if let Some(id) = self.nas_identifier {
            out.push(Attribute::NasIdentifier(id.to_owned()));
        }
        out.push(Attribute::NasPortType(NasPortType::Virtual));
        out.push(Attribute::CallingStationId(self.client_ip.to_string()));
        out.push(Attribute::cisco_av_pair(format!(
            "audit-session-id={}",
            self.audit_session_id
        )));
        out.push(Attribute::cisco_av_pair(format!(
            "ip:source-ip={}",
            self.client_ip
        )));
        out.push(Attribute::asa(AsaAttribute::TunnelGroupName(
            self.tunnel_group.to_owned(),
        )));
        out.push(Attribute::asa(AsaAttribute::ClientType(
            ASA_CLIENT_TYPE_ANYCONNECT_SSL,
        )));
    }
}

/// Authorize-only Access-Request (after SAML or a local password check):
/// Service-Type = Authorize-Only, no User-Password, `coa-push=true`.
pub fn authorize_only(ctx: &SessionContext<'_>) -> OutgoingRequest {
    let mut attributes = Vec::with_capacity(12);
    ctx.common_attributes(&mut attributes);
    attributes.insert(1, Attribute::ServiceType(ServiceType::AuthorizeOnly));
    attributes.push(Attribute::cisco_av_pair("coa-push=true"));
    OutgoingRequest::access_request(attributes)
}

/// PAP Access-Request: the authorize-only attributes with User-Password, and
/// Service-Type = Framed instead of Authorize-Only (Authorize-Only tells the
/// server not to authenticate, RFC 5176 section 3.2, which must never be sent
/// with a password the server is meant to check).
pub fn pap_authentication(
    ctx: &SessionContext<'_>,
    password: &[u8],
) -> Result<OutgoingRequest, EncodeError> {
    let mut attributes = Vec::with_capacity(12);
    ctx.common_attributes(&mut attributes);
    attributes.insert(1, Attribute::ServiceType(ServiceType::Framed));
    attributes.push(Attribute::cisco_av_pair("coa-push=true"));
    OutgoingRequest::access_request(attributes).with_password(password)
}

/// The Access-Request ASA sends for a named downloadable ACL (an Accept carried
/// `ACS:CiscoSecure-Defined-ACL=NAME`): User-Name = NAME, a null User-Password,
/// cisco-av-pairs `aaa:service=ip_admission` and `aaa:event=acl-download`.
/// A large ACL comes back in several Access-Challenges, each with a State; the
/// next request repeats this one with that `state`, until an Access-Accept.
pub fn acl_download(
    name: &str,
    nas_ip: Ipv4Addr,
    state: Option<&[u8]>,
) -> Result<OutgoingRequest, EncodeError> {
    let mut attributes = vec![
        Attribute::UserName(name.to_owned()),
        Attribute::NasIpAddress(nas_ip),
        Attribute::cisco_av_pair("aaa:service=ip_admission"),
        Attribute::cisco_av_pair("aaa:event=acl-download"),
    ];
    if let Some(s) = state {
        attributes.push(Attribute::State(s.to_vec()));
    }
    OutgoingRequest::access_request(attributes).with_password(b"")
}

/// Traffic counters of a session, 64-bit. "Input" is what the NAS received
/// from the user (RFC 2866 section 5.3), i.e. the client's upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub input_octets: u64,
    pub output_octets: u64,
    pub input_packets: u64,
    pub output_packets: u64,
}

/// Splits a 64-bit octet counter into (Gigawords, low 32 bits) (RFC 2869
/// section 5.1/5.2).
pub fn split_gigawords(value: u64) -> (u32, u32) {
    ((value >> 32) as u32, value as u32)
}

/// One accounting record.
#[derive(Debug, Clone, Copy)]
pub struct AccountingRecord<'a> {
    pub status: AcctStatusType,
    pub context: SessionContext<'a>,
    pub acct_session_id: &'a str,
    /// The address assigned to the client.
    pub framed_ip: Option<Ipv4Addr>,
    /// The IPv6 address assigned to the client (Framed-IPv6-Address, RFC 6911).
    pub framed_ipv6: Option<std::net::Ipv6Addr>,
    /// Every Class from the Access-Accept, in order (RFC 2865 section 5.25).
    pub classes: &'a [Vec<u8>],
    /// Interim-Update and Stop.
    pub counters: Option<Counters>,
    /// Seconds since the session started (Interim-Update and Stop).
    pub session_time: Option<u32>,
    /// Stop only.
    pub terminate_cause: Option<TerminateCause>,
    /// Seconds since the Unix epoch when the event happened.
    pub event_timestamp: Option<u32>,
}

/// Accounting-Request for `record`. Packet counters have no Gigawords
/// attribute: they are sent modulo 2^32 like any wrapping 32-bit counter.
pub fn accounting(record: &AccountingRecord<'_>) -> OutgoingRequest {
    let ctx = &record.context;
    let mut a = Vec::with_capacity(24 + record.classes.len());
    a.push(Attribute::AcctStatusType(record.status));
    a.push(Attribute::AcctSessionId(record.acct_session_id.to_owned()));
    a.push(Attribute::UserName(ctx.user_name.to_owned()));
    a.push(Attribute::NasIpAddress(ctx.nas_ip));
    if let Some(id) = ctx.nas_identifier {
        a.push(Attribute::NasIdentifier(id.to_owned()));
    }
    a.push(Attribute::NasPortType(NasPortType::Virtual));
    a.push(Attribute::CallingStationId(ctx.client_ip.to_string()));
    if let Some(ip) = record.framed_ip {
        a.push(Attribute::FramedIpAddress(ip));
    }
    if let Some(ip) = record.framed_ipv6 {
        a.push(Attribute::FramedIpv6Address(ip));
    }
    a.extend(record.classes.iter().map(|c| Attribute::Class(c.clone())));
    if let Some(c) = record.counters {
        let (in_giga, in_low) = split_gigawords(c.input_octets);
        let (out_giga, out_low) = split_gigawords(c.output_octets);
        a.push(Attribute::AcctInputOctets(in_low));
        a.push(Attribute::AcctInputGigawords(in_giga));
        a.push(Attribute::AcctOutputOctets(out_low));
        a.push(Attribute::AcctOutputGigawords(out_giga));
        a.push(Attribute::AcctInputPackets(c.input_packets as u32));
        a.push(Attribute::AcctOutputPackets(c.output_packets as u32));
    }
    if let Some(t) = record.session_time {
        a.push(Attribute::AcctSessionTime(t));
    }
    if let Some(cause) = record.terminate_cause {
        a.push(Attribute::AcctTerminateCause(cause));
    }
    if let Some(ts) = record.event_timestamp {
        a.push(Attribute::EventTimestamp(ts));
    }
    a.push(Attribute::AcctDelayTime(0));
    a.push(Attribute::cisco_av_pair(format!(
        "audit-session-id={}",
        ctx.audit_session_id
    )));
    a.push(Attribute::asa(AsaAttribute::TunnelGroupName(
        ctx.tunnel_group.to_owned(),
    )));
    a.push(Attribute::asa(AsaAttribute::ClientType(
        ASA_CLIENT_TYPE_ANYCONNECT_SSL,
    )));
    OutgoingRequest::accounting_request(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::attribute::{CiscoAttribute, VendorSpecific};
    use crate::radius::crypto::{MessageAuthenticatorPolicy, reveal_password, verify_request};

    fn ctx() -> SessionContext<'static> {
        SessionContext {
            user_name: "alice@corp.example",
            nas_ip: Ipv4Addr::new(198, 18, 1, 1),
            nas_identifier: None,
            client_ip: "198.18.0.2".parse().unwrap(),
            audit_session_id: "c6120101000010006590a1b2",
            tunnel_group: "SAML-TG",
        }
    }

    #[test]
    fn authorize_only_has_the_ise_attributes() {
        let req = authorize_only(&ctx());
        assert_eq!(req.kind(), RequestKind::Authentication);
        let enc = req.encode(17, b"secret").unwrap();
        let p = Packet::decode(&enc.bytes).unwrap();
        assert_eq!(p.code, Code::AccessRequest);
        assert_eq!(p.identifier, 17);
        assert_eq!(p.authenticator, enc.authenticator);
        assert!(matches!(
            p.attributes[0],
            Attribute::MessageAuthenticator(_)
        ));
        assert_eq!(
            &p.attributes[1..],
            &[
                Attribute::UserName("alice@corp.example".into()),
                Attribute::ServiceType(ServiceType::AuthorizeOnly),
                Attribute::NasIpAddress(Ipv4Addr::new(198, 18, 1, 1)),
                Attribute::NasPortType(NasPortType::Virtual),
                Attribute::CallingStationId("198.18.0.2".into()),
                Attribute::cisco_av_pair("audit-session-id=c6120101000010006590a1b2"),
                Attribute::cisco_av_pair("ip:source-ip=198.18.0.2"),
                Attribute::asa(AsaAttribute::TunnelGroupName("SAML-TG".into())),
                Attribute::asa(AsaAttribute::ClientType(2)),
                Attribute::cisco_av_pair("coa-push=true"),
            ]
        );
        assert_eq!(
            crypto::verify_access_request(
                &enc.bytes,
                b"secret",
                MessageAuthenticatorPolicy::Required
            ),
            Ok(true)
        );
        // Two encodings never share a Request Authenticator.
        assert_ne!(
            req.encode(17, b"secret").unwrap().authenticator,
            enc.authenticator
        );
    }

    #[test]
    fn pap_hides_the_password_per_host() {
        let req = pap_authentication(&ctx(), b"correct horse battery staple").unwrap();
        assert!(!format!("{req:?}").contains("horse"));
        for secret in [&b"one"[..], b"two"] {
            let enc = req.encode(1, secret).unwrap();
            let p = Packet::decode(&enc.bytes).unwrap();
            assert!(
                p.attributes
                    .contains(&Attribute::ServiceType(ServiceType::Framed))
            );
            let hidden = p
                .attributes
                .iter()
                .find_map(|a| match a {
                    Attribute::UserPassword(h) => Some(h.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(hidden.len(), 32);
            assert_eq!(
                &reveal_password(&hidden, secret, &enc.authenticator).unwrap()[..],
                b"correct horse battery staple"
            );
        }
        assert_eq!(
            pap_authentication(&ctx(), &[b'x'; 129]).map(|_| ()),
            Err(EncodeError::PasswordTooLong(129))
        );
    }

    #[test]
    fn acl_download_is_asa_s_request_with_a_null_password_and_state() {
        let name = "#ACSACL#-IP-PERMIT_WEB-5f3c1a2b";
        let nas = Ipv4Addr::new(198, 18, 1, 1);
        for state in [None, Some(&b"ise-state-1"[..])] {
            let enc = acl_download(name, nas, state)
                .unwrap()
                .encode(3, b"secret")
                .unwrap();
            let p = Packet::decode(&enc.bytes).unwrap();
            assert_eq!(p.code, Code::AccessRequest);
            assert!(matches!(
                p.attributes[0],
                Attribute::MessageAuthenticator(_)
            ));
            assert!(p.attributes.contains(&Attribute::UserName(name.into())));
            assert!(p.attributes.contains(&Attribute::NasIpAddress(nas)));
            assert!(
                p.attributes
                    .contains(&Attribute::cisco_av_pair("aaa:service=ip_admission"))
            );
            assert!(
                p.attributes
                    .contains(&Attribute::cisco_av_pair("aaa:event=acl-download"))
            );
            let hidden = p
                .attributes
                .iter()
                .find_map(|a| match a {
                    Attribute::UserPassword(h) => Some(h.clone()),
                    _ => None,
                })
                .expect("a (null) User-Password");
            assert_eq!(hidden.len(), 16);
            assert!(
                reveal_password(&hidden, b"secret", &enc.authenticator)
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                p.attributes.iter().find_map(|a| match a {
                    Attribute::State(v) => Some(v.as_slice()),
                    _ => None,
                }),
                state
            );
        }
    }

    #[test]
    fn gigawords_split() {
        assert_eq!(split_gigawords(0), (0, 0));
        assert_eq!(split_gigawords(u64::from(u32::MAX)), (0, u32::MAX));
        assert_eq!(split_gigawords(1 << 32), (1, 0));
        assert_eq!(split_gigawords((5 << 32) + 7), (5, 7));
        assert_eq!(split_gigawords(u64::MAX), (u32::MAX, u32::MAX));
    }

    #[test]
    fn accounting_stop_record() {
        let classes = vec![b"CACS:c612:ise/1".to_vec(), b"OU=GP;".to_vec()];
        let record = AccountingRecord {
            status: AcctStatusType::Stop,
            context: ctx(),
            acct_session_id: "A1B2C3",
            framed_ip: Some(Ipv4Addr::new(198, 18, 100, 10)),
            framed_ipv6: Some("fd00:100::10".parse().unwrap()),
            classes: &classes,
            counters: Some(Counters {
                input_octets: (3 << 32) + 100,
                output_octets: 42,
                input_packets: (1 << 32) + 5,
                output_packets: 6,
            }),
            session_time: Some(3600),
            terminate_cause: Some(TerminateCause::IdleTimeout),
            event_timestamp: Some(1_700_000_000),
        };
        let req = accounting(&record);
        assert_eq!(req.kind(), RequestKind::Accounting);
        let enc = req.encode(9, b"secret").unwrap();
        assert_eq!(
            verify_request(&enc.bytes, b"secret", MessageAuthenticatorPolicy::IfPresent),
            Ok(false)
        );
        let p = Packet::decode(&enc.bytes).unwrap();
        let has = |a: Attribute| assert!(p.attributes.contains(&a), "missing {a:?}");
        has(Attribute::AcctStatusType(AcctStatusType::Stop));
        has(Attribute::AcctSessionId("A1B2C3".into()));
        has(Attribute::FramedIpAddress(Ipv4Addr::new(198, 18, 100, 10)));
        has(Attribute::FramedIpv6Address(
            "fd00:100::10".parse().unwrap(),
        ));
        has(Attribute::AcctInputOctets(100));
        has(Attribute::AcctInputGigawords(3));
        has(Attribute::AcctOutputOctets(42));
        has(Attribute::AcctOutputGigawords(0));
        has(Attribute::AcctInputPackets(5));
        has(Attribute::AcctOutputPackets(6));
        has(Attribute::AcctSessionTime(3600));
        has(Attribute::AcctTerminateCause(TerminateCause::IdleTimeout));
        has(Attribute::EventTimestamp(1_700_000_000));
        has(Attribute::AcctDelayTime(0));
        let echoed: Vec<_> = p
            .attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::Class(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(echoed, classes);
        assert!(p.attributes.iter().any(|a| matches!(
            a,
            Attribute::VendorSpecific(VendorSpecific::Cisco(CiscoAttribute::AvPair(s)))
                if s == "audit-session-id=c6120101000010006590a1b2"
        )));
        assert!(
            !p.attributes
                .iter()
                .any(|a| matches!(a, Attribute::MessageAuthenticator(_)))
        );
    }

    #[test]
    fn acct_delay_time_is_replaced() {
        let mut req = OutgoingRequest::accounting_request(vec![Attribute::AcctDelayTime(0)]);
        req.set_acct_delay_time(7);
        assert_eq!(req.attributes(), &[Attribute::AcctDelayTime(7)]);
        assert_eq!(req.acct_delay_time(), Some(7));
    }
}

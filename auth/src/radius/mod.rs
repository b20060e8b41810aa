//! RADIUS (RFC 2865/2866/5176, ISE dialect): codec and client. See asa-aaa.md section 3.
//!
//! Everything here is sans-IO: bytes and `Instant`s in, bytes and timers out.
//! - [`packet`] / [`attribute`]: the typed codec (`Packet::decode`, `Packet::encode*`).
//! - [`crypto`]: User-Password hiding, Request/Response Authenticators,
//!   Message-Authenticator; constant-time checks on the raw bytes.
//! - [`request`]: ISE-dialect builders (authorize-only, PAP, accounting).
//! - [`authz`]: what an Access-Accept grants ([`Authorization::from_accept`]).
//! - [`client`]: the server-group client state machine (retransmit,
//!   failover, dead time).
//! - [`dynauth`]: the RFC 5176 CoA / Disconnect server.

pub mod attribute;
pub mod authz;
pub mod client;
pub mod crypto;
pub mod dynauth;
pub mod packet;
pub mod request;

pub use attribute::{
    AcctStatusType, AsaAttribute, Attribute, CiscoAttribute, ErrorCause, NasPortType, ServiceType,
    TerminateCause, VendorSpecific,
};
pub use authz::{Authorization, AuthorizationWarning, AvPair};
pub use client::{
    ClientConfig, ClientStats, DROP_REPORT_INTERVAL, DropReason, DroppedReply, Event, HostConfig,
    HostCounters, HostStatus, RadiusClient, RadiusError, RequestId, Transmit,
};
pub use crypto::{AuthenticatorError, MessageAuthenticatorPolicy};
pub use dynauth::{
    DynAuthClient, DynAuthConfig, DynAuthKind, DynAuthRequest, DynAuthServer, DynAuthStats,
    SessionSelectors,
};
pub use packet::{Code, DecodeError, EncodeError, Packet};
pub use request::{
    AccountingRecord, Counters, EncodedRequest, OutgoingRequest, RequestKind, SessionContext,
    accounting, acl_download, authorize_only, pap_authentication,
};

//! SXP (Cisco TrustSec SGT Exchange Protocol, draft-smith-kandula-sxp v4)
//! listener: the headend learns IP-to-SGT bindings from ISE. See asa-aaa.md
//! section 4 and `shared/lab/sxp-reference.md` (recorded sxpd bytes).
//!
//! Everything here is sans-IO: bytes and `Instant`s in, bytes, binding events
//! and timers out.
//! - [`message`] / [`attribute`]: the typed codec (`Message::decode`,
//!   `Message::encode`), v4 and legacy v1-v3 forms.
//! - [`framer`]: cuts the TCP stream into messages by the length field.
//! - [`update`]: what an UPDATE means (additions, deletions, loop detection).
//! - [`listener`]: one connection's state machine ([`SxpListener`]): OPEN /
//!   OPEN_RESP, version and hold-time negotiation, hold timer, the
//!   connection's binding table.
//! - [`test_speaker`]: recorded sxpd byte sequences and builders for
//!   end-to-end tests.
//!
//! What the I/O layer must do (not done here):
//! - Listen on TCP 64999 ([`SXP_PORT`]). One [`SxpListener::new`] per
//!   accepted connection; [`SxpListener::connect`] when we dial the speaker.
//!   Feed reads to [`SxpListener::on_bytes`], write every
//!   [`Output::Transmit`] in order, sleep until
//!   [`SxpListener::poll_timeout`] and call [`SxpListener::on_timeout`],
//!   call [`SxpListener::on_transport_closed`] on EOF or a socket error, and
//!   close the socket after [`Output::Close`] (once the Transmits before it
//!   are written).
//! - TCP-MD5 (RFC 2385) with `cts sxp connection peer ... password default`:
//!   set `TCP_MD5SIG` on the LISTENING socket, one `struct tcp_md5sig` per
//!   speaker address (key = `cts sxp default password`), before `accept`;
//!   accepted sockets inherit it. Outgoing connections set it on the socket
//!   before `connect`. With a missing or wrong key the kernel silently drops
//!   the speaker's SYNs: no connection, no SXP ERROR, only a counter
//!   (`TCPMD5NotFound` / `TCPMD5Unexpected` / `TCPMD5Failure` in
//!   `/proc/net/netstat`) - worth logging when a configured peer never
//!   connects. `password none` peers get no key. The key is at most 80
//!   bytes (`TCP_MD5SIG_MAXKEYLEN`); on a dual-stack IPv6 listening socket
//!   an IPv4 speaker's key goes in as its v4-mapped address.
//! - Keep bindings per connection, not per peer address: a speaker that
//!   reconnects sends everything again on the new connection, and the old
//!   connection's final [`BindingEvent::PurgeAll`] must not remove what the
//!   new one re-added.

pub mod attribute;
pub mod framer;
pub mod listener;
pub mod message;
pub mod test_speaker;
pub mod update;
mod wire;

pub use attribute::{
    Attribute, AttributeFlags, AttributeType, AttributeValue, Capability, CapabilityCode,
    HOLD_TIME_MINIMUM, HOLD_TIME_UNUSED, HoldTime, LegacyBinding, LegacyTlv, LegacyTlvType, NodeId,
    Prefix, PrefixError, Sgt,
};
pub use framer::Framer;
pub use listener::{
    Binding, BindingEvent, CloseReason, ConfigError, HoldTimeRange, ListenerConfig, ListenerStats,
    Output, ProtocolError, PurgeReason, Role, Session, SxpListener, VersionRange,
};
pub use message::{
    DecodeError, EncodeError, ErrorCode, ErrorMessage, ErrorSubCode, HEADER_LEN, Header,
    LegacyErrorCode, MAX_MESSAGE_LEN, MAX_VERSION, Message, MessageType, Mode, Open, SXP_PORT,
    Update,
};
pub use update::{BindingChange, UpdateContext, UpdateError, UpdateSummary, update_changes};

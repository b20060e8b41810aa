//! Sans-IO codecs for the AnyConnect control and tunnel protocols, as the stock
//! openconnect 9.01 client speaks them (see `shared/docs/protocol.md`).
//!
//! Nothing in here does I/O or reads a clock: callers feed bytes and
//! `Instant`s in and write the bytes that come out, so every rule is testable
//! without sockets and every parser is fuzzable (`headend/fuzz`).
//!
//! - [`http`]: HTTP/1.1 request-head framing for the TLS control channel and a
//!   response writer that keeps header case (openconnect matches `X-CSTP-` /
//!   `X-DTLS-` names case-sensitively).
//! - [`xmlauth`]: the aggregate-auth `<config-auth>` XML exchange.
//! - [`cstp`]: CSTP framing (`STF\x01`) and the per-session DPD / keepalive /
//!   idle / session-timeout state machine.
//!
//! No function here panics on untrusted input.

#![forbid(unsafe_code)]

pub mod cstp;
pub mod dtls_dpd;
pub mod dtls_hello;
pub mod dtls_record;
pub mod dtls_resume;
pub mod http;
pub mod tcp_seg;
pub mod xmlauth;

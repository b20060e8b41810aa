//! `loadgen`: many AnyConnect sessions from one process, over the real
//! protocol as openconnect 9.01 speaks it (see `benches/README.md`).
//!
//! - [`auth`]: the aggregate-auth XML login (sans-IO state machine)
//! - [`http`]: the auth POSTs, the CONNECT and response heads
//! - [`tls`]: the control-channel TLS client with a certificate pin
//! - [`dtls`]: the DTLS 1.2 PSK-NEGOTIATE client (OpenSSL, memory I/O)
//! - [`packet`]: inner IPv4 ICMP/UDP packets and their replies
//! - [`pace`]: how many packets are due at a constant offered rate
//! - [`session`]: the task that runs one session
//! - [`report`], [`procstat`]: counters, timeline, JSON/CSV/SVG, server samples

pub mod auth;
pub mod dtls;
pub mod http;
pub mod pace;
pub mod packet;
pub mod procstat;
pub mod report;
pub mod session;
pub mod tls;

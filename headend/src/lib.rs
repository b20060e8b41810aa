//! VPN headend library: configuration, protocol codecs and the server.
pub mod accounting;
pub mod admin;
pub mod coa;
pub mod config;
pub mod dtls;
pub mod login;
pub mod policy_compile;
pub mod policy_state;
pub mod pool;
pub mod proto;
pub mod radius_io;
pub mod saml_web;
pub mod server;
pub mod sessions;
pub mod sxp_io;
pub mod tls;
pub mod tunnel;

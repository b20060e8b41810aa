//! VPN headend library: configuration, protocol codecs and the server.
pub mod accounting;
pub mod admin;
pub mod config;
pub mod dtls;
pub mod login;
pub mod pool;
pub mod proto;
pub mod radius_io;
pub mod saml_web;
pub mod server;
pub mod sessions;
pub mod tls;
pub mod tunnel;

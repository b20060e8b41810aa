//! Authentication and authorization for the headend: local users, the SAML
//! service provider and the RADIUS client.
#![forbid(unsafe_code)]

pub mod local;
pub mod radius;
pub mod saml;

pub use local::{LocalUserDb, PasswordCheck};

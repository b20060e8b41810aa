//! Authentication and authorization for the headend: local users, the SAML
//! service provider and the RADIUS client.
#![forbid(unsafe_code)]

pub mod local;
pub mod radius;
pub mod saml;
pub mod sxp;

pub use local::{LocalUserDb, PasswordCheck};

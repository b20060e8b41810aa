//! Authentication and authorization for the headend: local users today; the
//! SAML service provider and the RADIUS client come next.
#![forbid(unsafe_code)]

pub mod local;

pub use local::{LocalUserDb, PasswordCheck};

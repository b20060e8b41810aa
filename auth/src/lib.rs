//! Authentication and authorization for the headend: local users and the
//! RADIUS client (codec, server-group client, CoA/Disconnect server).
#![forbid(unsafe_code)]

pub mod local;
pub mod radius;

pub use local::{LocalUserDb, PasswordCheck};

//! The headend's configuration: the ASA CLI subset of `asa-aaa.md` section 1.
//!
//! [`parse_str`] / [`load_file`] turn the text into a typed [`Config`] (see
//! `model.rs`), check every cross-reference, and collect warnings for the many ASA
//! commands the headend does not need. `objects.rs` holds objects and object-groups and expands access-list entries
//! that name them; `policy.rs` resolves group-policy
//! inheritance and tunnel-group lookups; `summary.rs` renders `check-config` output.

pub mod ace_log;
mod client_settings;
pub mod mgmt;
pub mod model;
pub mod objects;
mod parse;
mod policy;
pub mod sessiondb;
mod summary;
mod threat;

pub use client_settings::{EffectiveClientSettings, RekeyMethod, ResumePolicy};
pub use model::*;
pub use objects::*;
pub use parse::{load_file, parse_str};
pub use policy::EffectivePolicy;
pub use sessiondb::VpnSessionDb;
pub use threat::{ServiceLimit, ThreatDetection};

/// A configuration error, always tied to a line so the operator can find it.
/// `line` is 0 when the problem is the file itself (unreadable, not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Name of the group policy that always exists on ASA, configured or not.
pub const DEFAULT_GROUP_POLICY: &str = "DfltGrpPolicy";

//! End-to-end test harness: the lab of `shared/docs/lab.md` (network namespaces with
//! the headend, stock openconnect clients and an inside host) built from Rust, so the
//! tests in `tests/` drive real peers. `netns/lab.sh` builds the same topology from a
//! shell; keep the two in step.
//!
//! Tests need root. Without it (or without openconnect) a test prints why and passes
//! as skipped, unless `E2E_REQUIRED=1` (set by `netns/test.sh`), which makes it fail.

pub mod aggauth;
pub mod browser;
pub mod cluster_lab;
pub mod cmd;
pub mod idp;
pub mod lab;
pub mod loadgen;
pub mod netns;
pub mod nft;
pub mod ocserv;
pub mod probe;
pub mod radius;
pub mod saml_lab;
pub mod service;
pub mod sessiondb;
pub mod sso;
pub mod sxp;
pub mod textfsm;
pub mod udp;

pub use lab::{Client, Lab};
pub use sessiondb::Session;

use std::time::{Duration, Instant};

/// Polls `f` every 100 ms until it returns `Some`, or `None` once `timeout` has passed.
/// The timeouts in these tests are hang guards, never speed assertions.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

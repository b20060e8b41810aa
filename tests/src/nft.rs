//! nftables in a lab namespace: rulesets the tests load (counters that show which
//! transport carried the tunnel, drops that cut UDP, stateless rewrites that play a
//! NAT), and reading their named counters.

use std::io::Write;
use std::process::Stdio;

use crate::{cmd, netns};

/// Loads `ruleset` (nft syntax, as for `nft -f`) in namespace `ns`.
pub fn apply(ns: &str, ruleset: &str) -> Result<(), String> {
    let mut c = netns::exec(ns, &["nft", "-f", "-"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = cmd::describe(&c);
    let mut child = c.spawn().map_err(|e| format!("cannot run `{what}`: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ruleset.as_bytes())
        .map_err(|e| format!("writing the ruleset to `{what}`: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for `{what}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{what}` failed ({}) on\n{ruleset}\n{}",
            out.status,
            cmd::combined(&out)
        ))
    }
}

/// [`apply`], panicking on failure.
pub fn must_apply(ns: &str, ruleset: &str) {
    apply(ns, ruleset).unwrap_or_else(|e| panic!("{e}"));
}

/// Deletes table `family name` in `ns`; panics on failure (e.g. no such table).
pub fn delete_table(ns: &str, family: &str, name: &str) {
    cmd::must(&mut netns::exec(
        ns,
        &["nft", "delete", "table", family, name],
    ));
}

/// Packets and bytes a named nftables counter has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::Sub for Counter {
    type Output = Counter;
    fn sub(self, earlier: Counter) -> Counter {
        Counter {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

/// The named counter `name` of table `family table` in `ns` (`nft -j list counter`).
pub fn counter(ns: &str, family: &str, table: &str, name: &str) -> Counter {
    let out = cmd::must(&mut netns::exec(
        ns,
        &["nft", "-j", "list", "counter", family, table, name],
    ));
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j output: {e}:\n{out}"));
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|item| {
            let c = item.get("counter")?;
            Some(Counter {
                packets: c.get("packets")?.as_u64()?,
                bytes: c.get("bytes")?.as_u64()?,
            })
        })
        .unwrap_or_else(|| panic!("no counter {family} {table} {name} in:\n{out}"))
}

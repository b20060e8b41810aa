//! The policy the dataplane enforces, kept current: compiled ACLs from the
//! config, and the IP-to-SGT map built from `cts role-based sgt-map`, SXP
//! peers and VPN sessions (priority session > SXP > static). Every change
//! builds a new map and publishes it atomically; packets in flight finish on
//! the old version.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use dataplane::policy::{PolicyHandle, SgtMapBuilder, Source};

use crate::config::Config;

/// A prefix as the map keys it.
pub type Prefix = (IpAddr, u8);

#[derive(Default)]
struct Sources {
    builder: SgtMapBuilder,
    /// SXP bindings per connection id, so that several peers advertising the
    /// same prefix, or a peer's reconnect, resolve correctly.
    sxp: BTreeMap<u64, BTreeMap<Prefix, u16>>,
    /// VPN session addresses with their SGT.
    sessions: BTreeMap<IpAddr, u16>,
}

pub struct PolicyState {
    pub handle: Arc<PolicyHandle>,
    sources: Mutex<Sources>,
}

impl PolicyState {
    pub fn new(cfg: &Config) -> Result<Self> {
        let tables = crate::policy_compile::compile(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        let builder =
            crate::policy_compile::static_sgt_bindings(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            handle: Arc::new(PolicyHandle::new(tables)),
            sources: Mutex::new(Sources {
                builder,
                ..Sources::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, s: &Sources) {
        self.handle.publish_sgt_map(s.builder.build());
    }

    /// A VPN session's address and SGT (None removes the binding).
    pub fn set_session(&self, addr: IpAddr, sgt: Option<u16>) {
        let mut s = self.lock();
        let len = if addr.is_ipv4() { 32 } else { 128 };
        let changed = match sgt {
            Some(t) => {
                let old = s.sessions.insert(addr, t);
                let _ = s.builder.insert(addr, len, t, Source::Session);
                old != Some(t)
            }
            None => {
                let had = s.sessions.remove(&addr).is_some();
                s.builder.remove(addr, len, Source::Session);
                had
            }
        };
        if changed {
            self.publish(&s);
        }
    }

    /// Applies one SXP connection's binding changes (adds with their SGT,
    /// deletes as None) and republishes once.
    pub fn sxp_changes(&self, conn: u64, changes: &[(Prefix, Option<u16>)]) {
        if changes.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let s = &mut *guard;
        for &(prefix, sgt) in changes {
            let table = s.sxp.entry(conn).or_default();
            match sgt {
                Some(t) => {
                    table.insert(prefix, t);
                }
                None => {
                    table.remove(&prefix);
                }
            }
            // The newest connection that still has the prefix wins.
            let winner = s.sxp.values().rev().find_map(|t| t.get(&prefix).copied());
            match winner {
                Some(t) => {
                    let _ = s.builder.insert(prefix.0, prefix.1, t, Source::Sxp);
                }
                None => {
                    s.builder.remove(prefix.0, prefix.1, Source::Sxp);
                }
            }
        }
        s.sxp.retain(|_, t| !t.is_empty());
        self.publish(s);
    }

    /// Everything a connection advertised is gone (peer lost, PURGE_ALL).
    pub fn sxp_forget(&self, conn: u64) {
        let prefixes: Vec<Prefix> = self
            .lock()
            .sxp
            .get(&conn)
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default();
        let changes: Vec<(Prefix, Option<u16>)> = prefixes.into_iter().map(|p| (p, None)).collect();
        self.sxp_changes(conn, &changes);
    }

    /// `show cts role-based sgt-map all`, as ASA prints it.
    pub fn show_sgt_map(&self, cfg: &Config) -> String {
        use std::fmt::Write as _;
        let s = self.lock();
        let mut rows: BTreeMap<Prefix, (u16, &'static str)> = BTreeMap::new();
        for e in &cfg.cts.sgt_map {
            rows.insert((e.address, e.prefix_len), (e.sgt, "CLI"));
        }
        for t in s.sxp.values() {
            for (p, sgt) in t {
                rows.insert(*p, (*sgt, "SXP"));
            }
        }
        for (a, sgt) in &s.sessions {
            let len = if a.is_ipv4() { 32 } else { 128 };
            rows.insert((*a, len), (*sgt, "LOCAL"));
        }
        let mut out = String::from("Active IP-SGT Bindings Information\n\n");
        let _ = writeln!(out, "{:<40} {:>5}  Source", "IP Address", "SGT");
        let _ = writeln!(out, "{}", "=".repeat(56));
        for ((addr, len), (sgt, src)) in &rows {
            let full = if addr.is_ipv4() { 32 } else { 128 };
            let ip = if *len == full {
                addr.to_string()
            } else {
                format!("{addr}/{len}")
            };
            let _ = writeln!(out, "{ip:<40} {sgt:>5}  {src}");
        }
        let _ = write!(
            out,
            "\nIP-SGT Active Bindings Summary\n{}\nTotal number of CLI      bindings = {}\nTotal number of SXP      bindings = {}\nTotal number of LOCAL    bindings = {}\nTotal number of active   bindings = {}\n",
            "=".repeat(56),
            cfg.cts.sgt_map.len(),
            s.sxp.values().map(BTreeMap::len).sum::<usize>(),
            s.sessions.len(),
            rows.len()
        );
        out
    }
}

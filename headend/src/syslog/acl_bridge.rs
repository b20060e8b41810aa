//! 106100 from the dataplane's `log` matches. The dataplane (sans syslog)
//! reports a match on an ACE with `log` as a `tracing` event of target
//! `dataplane::enforce`, at most one per second per session, in ASA's words:
//! `access-list ACL denied tcp SRC(SPORT) -> DST(DPORT) (FromClient, rule N)`.
//! This layer turns those events into typed [`Message::AclHit`]s.
//!
//! Limits, until the dataplane hands over a typed event: the ACE's own `log
//! LEVEL` and interval are not kept by the config, so the level is ASA's default
//! (informational) and the count is `hit-cnt 1 first hit` per logged match.

use std::fmt::Write as _;
use std::net::IpAddr;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::{Message, emit};

/// ASA's default level of `log` on an ACE (informational).
const DEFAULT_ACE_LEVEL: u8 = 6;
pub const TARGET: &str = "dataplane::enforce";

pub struct AclLogBridge;

#[derive(Default)]
struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}

impl<S: Subscriber> Layer<S> for AclLogBridge {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut text = MessageText::default();
        event.record(&mut text);
        if let Some(m) = parse(&text.0) {
            emit(m);
        }
    }
}

/// `198.18.1.5(22)` or `198.18.1.5` (no ports: ICMP and others).
fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    match s.split_once('(') {
        Some((ip, port)) => Some((ip.parse().ok()?, port.strip_suffix(')')?.parse().ok()?)),
        None => Some((s.parse().ok()?, 0)),
    }
}

/// The dataplane's line to a 106100 message; None for anything else.
pub fn parse(line: &str) -> Option<Message> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let ["access-list", acl, verdict, proto, src, "->", dst, dir, ..] = w.as_slice() else {
        return None;
    };
    let permitted = match *verdict {
        "permitted" => true,
        "denied" => false,
        _ => return None,
    };
    let (src, sport) = endpoint(src)?;
    let (dst, dport) = endpoint(dst)?;
    // A vpn-filter sees client traffic arrive on the outside interface.
    let (src_if, dst_if) = if dir.contains("ToClient") {
        ("inside", "outside")
    } else {
        ("outside", "inside")
    };
    Some(Message::AclHit {
        acl: (*acl).to_string(),
        permitted,
        protocol: (*proto).to_string(),
        src_if: src_if.into(),
        src,
        sport,
        dst_if: dst_if.into(),
        dst,
        dport,
        hits: 1,
        interval: None,
        level: DEFAULT_ACE_LEVEL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataplane_lines_become_106100() {
        let m = parse("access-list VPN-FILTER denied tcp 198.18.100.10(40000) -> 198.18.1.10(22) (FromClient, rule 3)").unwrap();
        assert_eq!(
            format!("%ASA-{}-{}: {}", m.severity(), m.id(), m.text(true)),
            "%ASA-6-106100: access-list VPN-FILTER denied tcp outside/198.18.100.10(40000) -> inside/198.18.1.10(22) hit-cnt 1 first hit"
        );
        let m =
            parse("access-list F permitted icmp 198.18.1.10 -> 198.18.100.10 (ToClient, rule 1)")
                .unwrap();
        assert!(m.text(true).starts_with(
            "access-list F permitted icmp inside/198.18.1.10(0) -> outside/198.18.100.10(0)"
        ));
        assert!(parse("session ended: Idle Timeout").is_none());
        assert!(parse("access-list F maybe tcp 1.2.3.4 -> 5.6.7.8 (x").is_none());
    }
}

//! 106100 from the dataplane's `log` matches. The dataplane (sans syslog)
//! aggregates the hits per flow as ASA does ([`dataplane::hitlog`]) and reports
//! a first hit or an interval's count as a `tracing` event of target
//! `dataplane::enforce`, in ASA's words:
//! `access-list ACL denied tcp SRC(SPORT) -> DST(DPORT) (FromClient, rule N)`,
//! with the fields `level` (the ACE's `log LEVEL`), `hits` and `interval`
//! (seconds; 0 for a first hit). This layer turns those events into typed
//! [`Message::AclHit`]s.

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

/// The event's message and numeric fields.
#[derive(Default)]
struct HitEvent {
    text: String,
    level: Option<u64>,
    hits: Option<u64>,
    interval: Option<u64>,
}

impl Visit for HitEvent {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "level" => self.level = Some(value),
            "hits" => self.hits = Some(value),
            "interval" => self.interval = Some(value),
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(v) = u64::try_from(value) {
            self.record_u64(field, v);
        }
    }
}

impl<S: Subscriber> Layer<S> for AclLogBridge {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut e = HitEvent::default();
        event.record(&mut e);
        if let Some(m) = hit_message(&e) {
            emit(m);
        }
    }
}

/// The event to a 106100 at the ACE's level with its hit count.
fn hit_message(e: &HitEvent) -> Option<Message> {
    let mut m = parse(&e.text)?;
    if let Message::AclHit {
        hits,
        interval,
        level,
        ..
    } = &mut m
    {
        *level = e.level.map_or(DEFAULT_ACE_LEVEL, |l| l.min(7) as u8);
        *hits = e.hits.unwrap_or(1).max(1);
        *interval = e
            .interval
            .filter(|&i| i > 0)
            .and_then(|i| u32::try_from(i).ok());
    }
    Some(m)
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
        // The ACE's level and the interval's count, from the event's fields.
        let line =
            "access-list F denied udp 198.18.100.10(5000) -> 198.18.1.10(53) (FromClient, rule 2)";
        let ev = |level, hits, interval| HitEvent {
            text: line.into(),
            level,
            hits,
            interval,
        };
        let full = |m: Message| format!("%ASA-{}-{}: {}", m.severity(), m.id(), m.text(true));
        assert_eq!(
            full(hit_message(&ev(Some(4), Some(1), Some(0))).unwrap()),
            "%ASA-4-106100: access-list F denied udp outside/198.18.100.10(5000) -> inside/198.18.1.10(53) hit-cnt 1 first hit"
        );
        assert!(
            full(hit_message(&ev(Some(2), Some(17), Some(60))).unwrap()).starts_with(
                "%ASA-2-106100: access-list F denied udp outside/198.18.100.10(5000) -> inside/198.18.1.10(53) hit-cnt 17 60-second interval"
            )
        );
        assert!(parse("access-list F maybe tcp 1.2.3.4 -> 5.6.7.8 (x").is_none());
    }
}

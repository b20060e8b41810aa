//! Address pools: `ip local pool` (IPv4) and `ipv6 local pool` (IPv6):
//! allocation, sticky reuse and release.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::{Ipv4Pool, Ipv6Pool};

/// Free/used state of an address range, for either family (addresses as u128).
#[derive(Debug)]
struct Range {
    first: u128,
    last: u128,
    used: BTreeSet<u128>,
    /// Next address to try, so a freed address is not handed out again at once
    /// (a stale client's packets must not reach the next user).
    cursor: u128,
}

impl Range {
    fn new(first: u128, last: u128) -> Self {
        let last = last.max(first);
        Self {
            first,
            last,
            used: BTreeSet::new(),
            cursor: first,
        }
    }

    fn contains(&self, a: u128) -> bool {
        (self.first..=self.last).contains(&a)
    }

    /// Takes `want` if it is in the range and free, else the next free address.
    fn allocate(&mut self, want: Option<u128>) -> Option<u128> {
        if let Some(w) = want
            && self.contains(w)
            && self.used.insert(w)
        {
            return Some(w);
        }
        // From the cursor to the end, then from the start: the first gap in
        // the used set. A cursor that wrapped onto a run of long-lived
        // sessions walks that run once: a step of the set's iterator per
        // address (nanoseconds), not a tree insert per address as probing
        // each one did.
        let a = self
            .next_free(self.cursor)
            .or_else(|| self.next_free(self.first))?;
        self.used.insert(a);
        self.cursor = if a == self.last { self.first } else { a + 1 };
        Some(a)
    }

    /// The first free address in `[from, last]`.
    fn next_free(&self, from: u128) -> Option<u128> {
        let mut want = from;
        for &u in self.used.range(from..=self.last) {
            if u != want {
                break;
            }
            if want == self.last {
                return None;
            }
            want += 1;
        }
        (want <= self.last).then_some(want)
    }

    fn take(&mut self, a: u128) -> bool {
        self.contains(a) && self.used.insert(a)
    }

    fn release(&mut self, a: u128) -> bool {
        self.used.remove(&a)
    }
}

/// Free/used state of one configured IPv4 pool.
#[derive(Debug)]
pub struct AddressPool {
    pub name: String,
    range: Range,
    pub mask: Ipv4Addr,
}

impl AddressPool {
    pub fn new(p: &Ipv4Pool) -> Self {
        Self {
            name: p.name.clone(),
            range: Range::new(
                u128::from(u32::from(p.first)),
                u128::from(u32::from(p.last)),
            ),
            mask: p.mask,
        }
    }

    pub fn size(&self) -> u64 {
        (self.range.last - self.range.first) as u64 + 1
    }

    pub fn in_use(&self) -> usize {
        self.range.used.len()
    }

    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.range.first as u32)
    }

    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.range.last as u32)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.range.contains(v4(a))
    }

    /// Takes `want` if it is in this pool and free, else the next free address.
    pub fn allocate(&mut self, want: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.range.allocate(want.map(v4)).map(to_v4)
    }

    /// Takes exactly `a` (a RADIUS Framed-IP-Address); false if outside or taken.
    pub fn take(&mut self, a: Ipv4Addr) -> bool {
        self.range.take(v4(a))
    }

    pub fn release(&mut self, a: Ipv4Addr) -> bool {
        self.range.release(v4(a))
    }

    /// The address the headend's own TUN interface takes in this pool's subnet:
    /// the first host of the subnet, or the last one if the range starts there.
    pub fn gateway_address(&self) -> (Ipv4Addr, u8) {
        let mask = u32::from(self.mask);
        let prefix = mask.leading_ones() as u8;
        let first = self.range.first as u32;
        let net = first & mask;
        let bcast = net | !mask;
        let mut gw = net.saturating_add(1);
        if self.contains(Ipv4Addr::from(gw)) {
            gw = bcast.saturating_sub(1);
        }
        (Ipv4Addr::from(gw), prefix)
    }
}

fn v4(a: Ipv4Addr) -> u128 {
    u128::from(u32::from(a))
}

fn to_v4(a: u128) -> Ipv4Addr {
    Ipv4Addr::from(a as u32)
}

/// Free/used state of one `ipv6 local pool NAME ADDR/PREFIX COUNT`: COUNT
/// addresses from ADDR, each handed out with the pool's prefix length (as ASA
/// does: the client sees `ADDR/PREFIX`).
#[derive(Debug)]
pub struct Ipv6AddressPool {
    pub name: String,
    range: Range,
    pub prefix_len: u8,
}

impl Ipv6AddressPool {
    pub fn new(p: &Ipv6Pool) -> Self {
        let first = u128::from(p.first);
        // COUNT addresses, but never past the end of the prefix.
        let prefix_end = first | host_mask(p.prefix_len);
        let last = first
            .saturating_add(u128::from(p.count.max(1)) - 1)
            .min(prefix_end);
        Self {
            name: p.name.clone(),
            range: Range::new(first, last),
            prefix_len: p.prefix_len,
        }
    }

    pub fn size(&self) -> u64 {
        (self.range.last - self.range.first) as u64 + 1
    }

    pub fn in_use(&self) -> usize {
        self.range.used.len()
    }

    pub fn contains(&self, a: Ipv6Addr) -> bool {
        self.range.contains(u128::from(a))
    }

    /// Takes `want` if it is in this pool and free, else the next free address.
    pub fn allocate(&mut self, want: Option<Ipv6Addr>) -> Option<Ipv6Addr> {
        self.range
            .allocate(want.map(u128::from))
            .map(Ipv6Addr::from)
    }

    pub fn release(&mut self, a: Ipv6Addr) -> bool {
        self.range.release(u128::from(a))
    }

    /// The headend's own address in the pool's prefix: the first address after
    /// the subnet-router anycast address (`PREFIX::1`), or the last one of the
    /// prefix if the range starts there.
    pub fn gateway_address(&self) -> (Ipv6Addr, u8) {
        let host = host_mask(self.prefix_len);
        let net = self.range.first & !host;
        let mut gw = net.saturating_add(1);
        if self.range.contains(gw) {
            gw = (net | host).saturating_sub(1);
        }
        (Ipv6Addr::from(gw), self.prefix_len)
    }
}

/// The host bits of a /`len` IPv6 prefix.
fn host_mask(len: u8) -> u128 {
    u128::MAX.checked_shr(u32::from(len.min(128))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(first: &str, last: &str) -> AddressPool {
        AddressPool::new(&Ipv4Pool {
            name: "P".into(),
            first: first.parse().unwrap(),
            last: last.parse().unwrap(),
            mask: "255.255.255.0".parse().unwrap(),
            line: 1,
        })
    }

    #[test]
    fn allocates_in_order_then_exhausts() {
        let mut p = pool("198.18.100.10", "198.18.100.12");
        assert_eq!(p.size(), 3);
        let got: Vec<_> = (0..3).map(|_| p.allocate(None).unwrap()).collect();
        assert_eq!(
            got,
            ["198.18.100.10", "198.18.100.11", "198.18.100.12"]
                .map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(p.allocate(None), None);
    }

    #[test]
    fn freed_address_is_reused_only_after_others() {
        let mut p = pool("198.18.100.10", "198.18.100.12");
        let a = p.allocate(None).unwrap();
        assert!(p.release(a));
        assert_eq!(p.allocate(None), Some("198.18.100.11".parse().unwrap()));
        assert_eq!(p.allocate(None), Some("198.18.100.12".parse().unwrap()));
        assert_eq!(p.allocate(None), Some(a));
        assert!(!p.release("198.18.100.99".parse().unwrap()));
    }

    #[test]
    fn requested_address_is_honoured_when_free() {
        let mut p = pool("198.18.100.10", "198.18.100.20");
        let want: Ipv4Addr = "198.18.100.15".parse().unwrap();
        assert_eq!(p.allocate(Some(want)), Some(want));
        // Taken now: falls back to the next free one.
        assert_ne!(p.allocate(Some(want)), Some(want));
        // Outside the pool: ignored.
        let out: Ipv4Addr = "198.18.1.1".parse().unwrap();
        let got = p.allocate(Some(out)).unwrap();
        assert!(p.contains(got));
    }

    #[test]
    fn take_is_exact() {
        let mut p = pool("198.18.100.10", "198.18.100.20");
        let a: Ipv4Addr = "198.18.100.15".parse().unwrap();
        assert!(p.take(a));
        assert!(!p.take(a));
        assert!(!p.take("198.18.100.21".parse().unwrap()));
        assert_ne!(p.allocate(Some(a)), Some(a));
    }

    #[test]
    fn gateway_is_outside_the_range() {
        let p = pool("198.18.100.10", "198.18.100.250");
        assert_eq!(p.gateway_address(), ("198.18.100.1".parse().unwrap(), 24));
        let p = pool("198.18.100.1", "198.18.100.100");
        assert_eq!(p.gateway_address(), ("198.18.100.254".parse().unwrap(), 24));
    }

    fn pool6(first: &str, prefix_len: u8, count: u32) -> Ipv6AddressPool {
        Ipv6AddressPool::new(&Ipv6Pool {
            name: "P6".into(),
            first: first.parse().unwrap(),
            prefix_len,
            count,
            line: 1,
        })
    }

    fn a6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_pool_allocates_count_addresses_in_order() {
        let mut p = pool6("fd00:100::10", 64, 3);
        assert_eq!(p.size(), 3);
        let got: Vec<_> = (0..3).map(|_| p.allocate(None).unwrap()).collect();
        assert_eq!(
            got,
            [a6("fd00:100::10"), a6("fd00:100::11"), a6("fd00:100::12")]
        );
        assert_eq!(p.allocate(None), None);
        assert_eq!(p.in_use(), 3);
        assert!(p.release(a6("fd00:100::11")));
        assert!(!p.release(a6("fd00:100::11")));
        assert_eq!(p.allocate(None), Some(a6("fd00:100::11")));
    }

    #[test]
    fn ipv6_freed_address_is_reused_only_after_others_and_wish_is_honoured() {
        let mut p = pool6("fd00:100::10", 64, 200);
        let a = p.allocate(None).unwrap();
        assert!(p.release(a));
        assert_eq!(p.allocate(None), Some(a6("fd00:100::11")));
        // A free address asked for (a reconnecting client's) is given back.
        assert_eq!(p.allocate(Some(a)), Some(a));
        assert_ne!(p.allocate(Some(a)), Some(a));
        // Outside the pool: ignored.
        let got = p.allocate(Some(a6("fd00:1::10"))).unwrap();
        assert!(p.contains(got));
        assert!(!p.contains(a6("fd00:100::d8")));
        assert!(p.contains(a6("fd00:100::d7")));
    }

    #[test]
    fn ipv6_pool_stays_inside_its_prefix() {
        let p = pool6("fd00:100::fffe", 112, 16384);
        assert_eq!(p.size(), 2);
        let p = pool6("fd00:100::10", 128, 5);
        assert_eq!(p.size(), 1);
    }

    #[test]
    fn ipv6_gateway_is_the_first_of_the_prefix() {
        assert_eq!(
            pool6("fd00:100::10", 64, 200).gateway_address(),
            (a6("fd00:100::1"), 64)
        );
        assert_eq!(
            pool6("fd00:100::1", 64, 200).gateway_address(),
            (a6("fd00:100::ffff:ffff:ffff:fffe"), 64)
        );
    }

    #[test]
    fn gaps_are_found_after_the_cursor_wraps_onto_used_runs() {
        let mut p = pool("198.18.64.10", "198.18.83.145"); // 5,000 addresses
        assert_eq!(p.size(), 5000);
        let all: Vec<Ipv4Addr> = (0..5000).map(|_| p.allocate(None).unwrap()).collect();
        assert_eq!(p.allocate(None), None, "full");
        // Cursor back at the start: the only free address is deep inside.
        assert!(p.release(all[3210]));
        assert_eq!(p.allocate(None), Some(all[3210]));
        assert_eq!(p.allocate(None), None);
        // Two gaps: the one after the cursor first, then the wrap.
        assert!(p.release(all[100]));
        assert!(p.release(all[4000]));
        assert_eq!(p.allocate(None), Some(all[4000]));
        assert_eq!(p.allocate(None), Some(all[100]));
        assert_eq!(p.allocate(None), None);
        // The last address itself.
        assert!(p.release(all[4999]));
        assert_eq!(p.allocate(None), Some(all[4999]));
        assert_eq!(p.in_use(), 5000);
    }
}

//! IPv4 address pools (`ip local pool`): allocation, sticky reuse and release.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::config::Ipv4Pool;

/// Free/used state of one configured pool.
#[derive(Debug)]
pub struct AddressPool {
    pub name: String,
    first: u32,
    last: u32,
    pub mask: Ipv4Addr,
    used: BTreeSet<u32>,
    /// Next address to try, so a freed address is not handed out again at once
    /// (a stale client's packets must not reach the next user).
    cursor: u32,
}

impl AddressPool {
    pub fn new(p: &Ipv4Pool) -> Self {
        let first = u32::from(p.first);
        let last = u32::from(p.last).max(first);
        Self {
            name: p.name.clone(),
            first,
            last,
            mask: p.mask,
            used: BTreeSet::new(),
            cursor: first,
        }
    }

    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(a))
    }

    /// Takes `want` if it is in this pool and free, else the next free address.
    pub fn allocate(&mut self, want: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(w) = want.map(u32::from)
            && (self.first..=self.last).contains(&w)
            && self.used.insert(w)
        {
            return Some(Ipv4Addr::from(w));
        }
        let span = self.last - self.first + 1;
        for i in 0..span {
            let a = self.first + (self.cursor - self.first + i) % span;
            if self.used.insert(a) {
                self.cursor = if a == self.last { self.first } else { a + 1 };
                return Some(Ipv4Addr::from(a));
            }
        }
        None
    }

    /// Takes exactly `a` (a RADIUS Framed-IP-Address); false if outside or taken.
    pub fn take(&mut self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        (self.first..=self.last).contains(&a) && self.used.insert(a)
    }

    pub fn release(&mut self, a: Ipv4Addr) -> bool {
        self.used.remove(&u32::from(a))
    }

    /// The address the headend's own TUN interface takes in this pool's subnet:
    /// the first host of the subnet, or the last one if the range starts there.
    pub fn gateway_address(&self) -> (Ipv4Addr, u8) {
        let mask = u32::from(self.mask);
        let prefix = mask.leading_ones() as u8;
        let net = self.first & mask;
        let bcast = net | !mask;
        let mut gw = net.saturating_add(1);
        if (self.first..=self.last).contains(&gw) {
            gw = bcast.saturating_sub(1);
        }
        (Ipv4Addr::from(gw), prefix)
    }
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
}

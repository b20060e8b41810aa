//! `interface` sub-mode and the address pools (`ip local pool`, `ipv6 local pool`).

use super::*;

impl Parser<'_> {
    pub(super) fn ip_local_pool(&mut self, c: &Cmd) -> Step {
        // ip local pool NAME FIRST-LAST [mask MASK]
        let (name, range, mask) = match c.toks.as_slice() {
            [_, _, _, name, range] => (*name, *range, None),
            [_, _, _, name, range, "mask", m] => (*name, *range, Some(*m)),
            _ => return fail("expected `ip local pool NAME FIRST-LAST mask MASK`"),
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (parse_v4(a)?, parse_v4(b)?),
            None => {
                let a = parse_v4(range)?;
                (a, a)
            }
        };
        let mask = match mask {
            Some(m) => parse_mask(m)?,
            // As on ASA: without `mask` the pool uses the classful mask.
            None => classful_mask(first),
        };
        if first > last {
            return fail(format!(
                "pool range {first}-{last} is reversed: the first address is above the last"
            ));
        }
        let m = u32::from(mask);
        if u32::from(first) & m != u32::from(last) & m {
            return fail(format!(
                "pool range {first}-{last} is not inside one network with mask {mask}"
            ));
        }
        if let Some(old) = self.cfg.ip_local_pools.get(name) {
            return fail(format!(
                "ip local pool `{name}` is already defined at line {}",
                old.line
            ));
        }
        self.cfg.ip_local_pools.insert(
            name.to_string(),
            Ipv4Pool {
                name: name.to_string(),
                first,
                last,
                mask,
                line: c.line,
            },
        );
        Ok(None)
    }

    pub(super) fn ipv6_local_pool(&mut self, c: &Cmd) -> Step {
        // ipv6 local pool NAME ADDR/PREFIX COUNT
        let [_, _, _, name, prefix, count] = c.toks.as_slice() else {
            return fail("expected `ipv6 local pool NAME ADDRESS/PREFIX COUNT`");
        };
        let Some((addr, len)) = prefix.split_once('/') else {
            return fail(format!("expected ADDRESS/PREFIX, found `{prefix}`"));
        };
        let first: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("bad IPv6 address `{addr}`"))?;
        let prefix_len = parse_num(len, "IPv6 prefix length", 1, 128)? as u8;
        let count = parse_num(count, "number of addresses", 1, 16384)?;
        if let Some(old) = self.cfg.ipv6_local_pools.get(*name) {
            return fail(format!(
                "ipv6 local pool `{name}` is already defined at line {}",
                old.line
            ));
        }
        self.cfg.ipv6_local_pools.insert(
            (*name).to_string(),
            Ipv6Pool {
                name: (*name).to_string(),
                first,
                prefix_len,
                count,
                line: c.line,
            },
        );
        Ok(None)
    }

    pub(super) fn sub_interface(&mut self, idx: usize, mode: &Mode, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        let ip = match t {
            ["ip", "address", a, m] | ["ip", "address", a, m, "standby", _] => {
                Some((parse_v4(a)?, parse_mask(m)?))
            }
            _ => None,
        };
        let Some(i) = self.cfg.interfaces.get_mut(idx) else {
            return Ok(None);
        };
        match t {
            ["nameif", n] => i.nameif = Some((*n).to_string()),
            ["no", "nameif"] => i.nameif = None,
            ["ip", "address", ..] if ip.is_some() => i.ip_address = ip,
            ["no", "ip", "address", ..] => i.ip_address = None,
            ["nameif", ..] => return fail("expected `nameif NAME`"),
            ["ip", "address", ..] => return fail("expected `ip address ADDRESS MASK`"),
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::test_util::*;

    #[test]
    fn config_ip_local_pool() {
        let c = ok(&cfg(&[
            "ip local pool P 198.18.100.10-198.18.100.250 mask 255.255.255.0",
            "ip local pool Q 10.1.2.3-10.1.2.9",
        ]));
        let p = &c.ip_local_pools["P"];
        assert_eq!(p.first, Ipv4Addr::new(198, 18, 100, 10));
        assert_eq!(p.last, Ipv4Addr::new(198, 18, 100, 250));
        assert_eq!(p.mask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(p.line, 1);
        // classful default without `mask`
        assert_eq!(c.ip_local_pools["Q"].mask, Ipv4Addr::new(255, 0, 0, 0));
    }

    #[test]
    fn config_ip_local_pool_errors() {
        bad(
            "!\nip local pool P 198.18.100.300-198.18.100.250 mask 255.255.255.0",
            2,
            "bad IPv4 address `198.18.100.300`",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask 255.0.255.0",
            1,
            "bad netmask `255.0.255.0`",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask 255.255.255.x",
            1,
            "bad netmask",
        );
        bad(
            "ip local pool P 1.1.1.9-1.1.1.1 mask 255.255.255.0",
            1,
            "reversed",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.2.1 mask 255.255.255.0",
            1,
            "not inside one network",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask",
            1,
            "expected `ip local pool NAME",
        );
        bad(
            "ip local pool P 1.1.1.1-1.1.1.9 mask 255.255.255.0\nip local pool P 1.1.1.1-1.1.1.9 mask 255.255.255.0",
            2,
            "already defined at line 1",
        );
    }

    #[test]
    fn config_ipv6_local_pool() {
        let c = ok("ipv6 local pool P6 fd00:100::10/64 200");
        let p = &c.ipv6_local_pools["P6"];
        assert_eq!(p.first, "fd00:100::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!((p.prefix_len, p.count, p.line), (64, 200, 1));
        bad("ipv6 local pool P6 fd00:100::10 200", 1, "ADDRESS/PREFIX");
        bad(
            "ipv6 local pool P6 fd00:zz::10/64 200",
            1,
            "bad IPv6 address",
        );
        bad("ipv6 local pool P6 fd00::10/64 0", 1, "number of addresses");
    }

    #[test]
    fn config_interface() {
        let c = ok(&cfg(&[
            "interface GigabitEthernet0/0",
            " nameif outside",
            " security-level 0",
            " ip address 203.0.113.2 255.255.255.0 standby 203.0.113.3",
            "interface GigabitEthernet0/1",
            " nameif inside",
            " ip address 198.18.1.1 255.255.255.0",
            " no nameif",
        ]));
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[0].nameif.as_deref(), Some("outside"));
        assert_eq!(
            c.interfaces[0].ip_address,
            Some((
                Ipv4Addr::new(203, 0, 113, 2),
                Ipv4Addr::new(255, 255, 255, 0)
            ))
        );
        assert_eq!(c.interfaces[1].nameif, None);
        assert_eq!(c.interfaces[1].line, 5);
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].line, 3);
        assert!(
            c.warnings[0].message.contains("security-level"),
            "{:?}",
            c.warnings
        );
        bad(
            "interface G0\n ip address 1.2.3.4 255.255.0.255",
            2,
            "bad netmask",
        );
        bad(
            "interface G0\n ip address 1.2.3 255.255.255.0",
            2,
            "bad IPv4 address",
        );
    }
}

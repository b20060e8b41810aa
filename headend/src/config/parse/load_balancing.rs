//! `vpn load-balancing` (asa-syntax.md §8; Cisco config guide, "Configuring Load
//! Balancing"): the members of a cluster share their load through the cluster's
//! Redis (issue 19); the director, the member that holds the `cluster ip address`,
//! redirects new logins to the least-loaded member.

use super::*;

impl Parser<'_> {
    // ------------------------------------------------------- vpn load-balancing

    pub(super) fn vpn_load_balancing(&mut self, c: &Cmd) -> Step {
        match c.toks.as_slice() {
            ["vpn", "load-balancing"] => {
                self.cfg
                    .vpn_load_balancing
                    .get_or_insert_with(|| VpnLoadBalancing {
                        line: c.line,
                        ..VpnLoadBalancing::default()
                    });
                Ok(Some(Mode::LoadBalancing))
            }
            _ => fail("expected `vpn load-balancing`"),
        }
    }

    pub(super) fn sub_load_balancing(&mut self, mode: &Mode, c: &Cmd) -> Step {
        let lb = self
            .cfg
            .vpn_load_balancing
            .get_or_insert_with(VpnLoadBalancing::default);
        match c.toks.as_slice() {
            ["participate"] => lb.participate = true,
            ["no", "participate"] => lb.participate = false,
            ["priority", n] => lb.priority = parse_num(n, "priority", 1, 10)? as u8,
            ["priority", ..] => return fail("expected `priority 1-10`"),
            ["cluster", "ip", "address", a] => {
                lb.cluster_ip = Some(parse_v4(a)?);
                lb.cluster_ip_line = c.line;
            }
            ["cluster", "ip", ..] => return fail("expected `cluster ip address A.B.C.D`"),
            ["cluster", "port", p] => {
                lb.cluster_port = parse_num(p, "cluster port", 1, 65535)? as u16
            }
            ["cluster", "port", ..] => return fail("expected `cluster port 1-65535`"),
            ["cluster", "key", rest @ ..] => {
                let key = match rest {
                    [k] | ["0", k] => *k,
                    _ => return fail("expected `cluster key SECRET`"),
                };
                if is_masked(key) {
                    return fail("the cluster key is masked (`*****`); give the real key");
                }
                lb.key = Some(key.to_string());
            }
            ["cluster", "encryption"] => {
                lb.encryption = true;
                lb.encryption_line = c.line;
            }
            ["no", "cluster", "encryption"] => lb.encryption = false,
            ["redirect-fqdn", "enable"] => lb.redirect_fqdn = true,
            ["no", "redirect-fqdn", "enable"] => lb.redirect_fqdn = false,
            ["interface", "lbpublic", n] => lb.lbpublic = Some((*n).to_string()),
            ["interface", "lbprivate", n] => lb.lbprivate = Some((*n).to_string()),
            ["interface", ..] => {
                return fail(
                    "expected `interface lbpublic NAMEIF` or `interface lbprivate NAMEIF`",
                );
            }
            ["nat", ..] => {
                let w = words(&c.toks);
                self.warn(
                    c.line,
                    format!("`{w}` ignored: members redirect to the address they listen on"),
                );
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    /// Once the whole file is read: a participating member needs the cluster
    /// address, encryption needs the key (as ASA refuses `participate` and
    /// `cluster encryption` without them).
    pub(super) fn check_load_balancing(&self) -> Result<(), ConfigError> {
        let Some(lb) = &self.cfg.vpn_load_balancing else {
            return Ok(());
        };
        if lb.participate && lb.cluster_ip.is_none() {
            return Err(self.err(
                lb.line,
                "vpn load-balancing: `participate` needs `cluster ip address A.B.C.D`",
            ));
        }
        if lb.encryption && lb.key.is_none() {
            return Err(self.err(
                lb.encryption_line,
                "vpn load-balancing: `cluster encryption` needs `cluster key SECRET`",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    #[test]
    fn a_participating_member_with_its_settings() {
        let c = parse_str(
            "vpn load-balancing\n interface lbpublic outside\n interface lbprivate inside\n \
             cluster ip address 192.0.2.10\n cluster port 9023\n cluster key s3cret\n \
             cluster encryption\n priority 7\n redirect-fqdn enable\n participate\n",
            "lb.cfg",
        )
        .unwrap();
        let lb = c.vpn_load_balancing.unwrap();
        assert!(lb.participate && lb.encryption && lb.redirect_fqdn);
        assert_eq!(lb.cluster_ip, Some("192.0.2.10".parse().unwrap()));
        assert_eq!((lb.priority, lb.cluster_port), (7, 9023));
        assert_eq!(lb.key.as_deref(), Some("s3cret"));
        assert_eq!(lb.lbpublic.as_deref(), Some("outside"));
        assert_eq!(lb.line, 1);
    }

    #[test]
    fn defaults_as_asa() {
        let c = parse_str(
            "vpn load-balancing\n cluster ip address 192.0.2.10\n",
            "lb.cfg",
        )
        .unwrap();
        let lb = c.vpn_load_balancing.unwrap();
        assert!(!lb.participate);
        assert_eq!((lb.priority, lb.cluster_port), (5, 9023));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_str("hostname x\nvpn load-balancing\n priority 11\n", "lb.cfg").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("priority"), "{e}");
        let e = parse_str(
            "vpn load-balancing\n cluster ip address 192.0.2\n",
            "lb.cfg",
        )
        .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse_str("!\nvpn load-balancing\n participate\n", "lb.cfg").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().starts_with("lb.cfg:2: "), "{e}");
        assert!(e.message.contains("cluster ip address"), "{e}");
        let e = parse_str(
            "vpn load-balancing\n cluster ip address 192.0.2.10\n cluster encryption\n",
            "lb.cfg",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("cluster key"), "{e}");
    }

    #[test]
    fn unknown_lines_in_the_block_are_warned_about() {
        let c = parse_str(
            "vpn load-balancing\n cluster ip address 192.0.2.10\n frobnicate\n",
            "lb.cfg",
        )
        .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.line == 3 && w.message.contains("frobnicate")),
            "{:?}",
            c.warnings
        );
    }
}

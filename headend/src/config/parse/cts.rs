//! `cts ...` (TrustSec: `cts role-based sgt-map`, `cts sxp ...`).

use super::*;

impl Parser<'_> {
    // ---------------------------------------------------------------------- cts

    pub(super) fn cts(&mut self, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        match t {
            [_, "role-based", "sgt-map", rest @ ..] => {
                let (address, prefix_len, sgt) = match rest {
                    ["host", a, "sgt", n] => {
                        let ip = parse_ip(a)?;
                        (ip, full_len(ip), *n)
                    }
                    [p, "sgt", n] if p.contains('/') => {
                        let (ip, len) = parse_prefix(p)?;
                        (ip, len, *n)
                    }
                    [a, "sgt", n] => {
                        let ip = parse_ip(a)?;
                        (ip, full_len(ip), *n)
                    }
                    _ => return fail("expected `cts role-based sgt-map ADDRESS[/LEN] sgt N`"),
                };
                let sgt = parse_num(sgt, "SGT", 2, 65519)? as u16;
                let map = &mut self.cfg.cts.sgt_map;
                map.retain(|e| !(e.address == address && e.prefix_len == prefix_len));
                map.push(SgtMapEntry {
                    address,
                    prefix_len,
                    sgt,
                    line: c.line,
                });
                Ok(None)
            }
            [_, "role-based", "sgt", n, "name", name] => {
                let sgt = parse_num(n, "SGT", 2, 65519)? as u16;
                self.cfg.cts.sgt_names.insert((*name).to_string(), sgt);
                Ok(None)
            }
            [_, "sxp", "enable"] => {
                self.cfg.cts.sxp_enable = true;
                Ok(None)
            }
            [_, "sxp", "default", "password", rest @ ..] => {
                let secret = match rest {
                    [s] | ["0", s] => *s,
                    ["8", _] => {
                        return fail(
                            "encrypted (type 8) SXP passwords are not supported; give it in clear",
                        );
                    }
                    _ => return fail("expected `cts sxp default password SECRET`"),
                };
                if is_masked(secret) {
                    return fail("the SXP password is masked (`*****`); give the real password");
                }
                self.cfg.cts.sxp_default_password = Some(secret.to_string());
                Ok(None)
            }
            [_, "sxp", "default", "source-ip", a] => {
                self.cfg.cts.sxp_default_source_ip = Some(parse_ip(a)?);
                Ok(None)
            }
            [_, "sxp", "connection", "peer", peer, rest @ ..] => {
                let peer = parse_ip(peer)?;
                let mut rest = rest;
                let mut source = None;
                if let ["source", s, tail @ ..] = rest {
                    source = Some(parse_ip(s)?);
                    rest = tail;
                }
                let password = match rest {
                    ["password", "default", tail @ ..] => {
                        rest = tail;
                        SxpPassword::Default
                    }
                    ["password", "none", tail @ ..] => {
                        rest = tail;
                        SxpPassword::None
                    }
                    ["password", ..] => {
                        return fail(
                            "per-connection SXP passwords are not supported: use `password default` or `password none`",
                        );
                    }
                    _ => {
                        return fail(
                            "expected `password default|none` in `cts sxp connection peer`",
                        );
                    }
                };
                // `mode [local|peer] listener|speaker`; "peer speaker" means we listen.
                let (peer_side, role) = match rest {
                    ["mode", "local", r] | ["mode", r] | [r] => (false, *r),
                    ["mode", "peer", r] => (true, *r),
                    _ => return fail("expected `mode local listener` (or `mode peer speaker`)"),
                };
                let mode = match (peer_side, role) {
                    (false, "listener") | (true, "speaker") => SxpMode::Listener,
                    (false, "speaker") | (true, "listener") => SxpMode::Speaker,
                    _ => {
                        return fail(format!(
                            "bad SXP mode `{role}` (expected listener or speaker)"
                        ));
                    }
                };
                let conns = &mut self.cfg.cts.sxp_connections;
                conns.retain(|x| x.peer != peer);
                conns.push(SxpConnection {
                    peer,
                    source,
                    password,
                    mode,
                    line: c.line,
                });
                Ok(None)
            }
            [_, "sxp", "listener", "hold-time", a, b] => {
                let a = parse_num(a, "hold time", 1, 65534)? as u16;
                let b = parse_num(b, "hold time", 1, 65534)? as u16;
                if a > b {
                    return fail("hold-time minimum is above the maximum");
                }
                self.cfg.cts.sxp_listener_hold_time = Some((a, b));
                Ok(None)
            }
            [_, "sxp", what @ ("retry" | "reconcile"), "period", n] => {
                parse_num(n, "period", 0, 64000)?;
                self.warn(
                    c.line,
                    format!("`cts sxp {what} period` is accepted but not used"),
                );
                Ok(None)
            }
            [_, "role-based", "sgt", ..]
            | [
                _,
                "sxp",
                "enable" | "default" | "connection" | "listener",
                ..,
            ] => fail(format!("bad arguments to `{}`", words(t))),
            _ => self.unknown(c, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::test_util::*;

    // ---------------------------------------------------------------------- cts

    #[test]
    fn config_cts() {
        let c = ok(&cfg(&[
            "cts role-based sgt-map 198.18.1.0/28 sgt 20",
            "cts role-based sgt-map 2001:db8:1::/48 sgt 30",
            "cts role-based sgt-map host 198.18.2.5 sgt 40",
            "cts role-based sgt-map 198.18.2.6 sgt 41",
            "cts role-based sgt-map 198.18.1.0/28 sgt 21",
            "cts role-based sgt 20 name Servers",
            "cts sxp enable",
            "cts sxp default password s3cret",
            "cts sxp default source-ip 198.18.1.1",
            "cts sxp connection peer 198.18.1.20 password default mode local listener",
            "cts sxp connection peer 198.18.1.21 source 198.18.1.1 password none mode peer speaker",
            "cts sxp connection peer 198.18.1.22 password none mode local speaker",
            "cts sxp listener hold-time 90 180",
            "cts sxp retry period 60",
            "cts manual",
        ]));
        let m = &c.cts.sgt_map;
        assert_eq!(m.len(), 4);
        assert!(m.contains(&SgtMapEntry {
            address: "2001:db8:1::".parse().unwrap(),
            prefix_len: 48,
            sgt: 30,
            line: 2
        }));
        assert!(m.contains(&SgtMapEntry {
            address: "198.18.2.5".parse().unwrap(),
            prefix_len: 32,
            sgt: 40,
            line: 3
        }));
        assert!(m.contains(&SgtMapEntry {
            address: "198.18.2.6".parse().unwrap(),
            prefix_len: 32,
            sgt: 41,
            line: 4
        }));
        assert!(m.contains(&SgtMapEntry {
            address: "198.18.1.0".parse().unwrap(),
            prefix_len: 28,
            sgt: 21,
            line: 5
        }));
        assert_eq!(c.cts.sgt_names.get("Servers"), Some(&20));
        assert!(c.cts.sxp_enable);
        assert_eq!(c.cts.sxp_default_password.as_deref(), Some("s3cret"));
        assert_eq!(
            c.cts.sxp_default_source_ip,
            Some("198.18.1.1".parse().unwrap())
        );
        let s = &c.cts.sxp_connections;
        assert_eq!(
            s[0],
            SxpConnection {
                peer: "198.18.1.20".parse().unwrap(),
                source: None,
                password: SxpPassword::Default,
                mode: SxpMode::Listener,
                line: 10
            }
        );
        assert_eq!(
            (s[1].source, s[1].password, s[1].mode),
            (
                Some("198.18.1.1".parse().unwrap()),
                SxpPassword::None,
                SxpMode::Listener
            )
        );
        assert_eq!(s[2].mode, SxpMode::Speaker);
        assert_eq!(c.cts.sxp_listener_hold_time, Some((90, 180)));
        assert_eq!(
            c.warnings.iter().map(|w| w.line).collect::<Vec<_>>(),
            vec![14, 15]
        );
        assert!(!ok("cts sxp enable\nno cts sxp enable").cts.sxp_enable);
    }

    #[test]
    fn config_cts_errors() {
        bad(
            "cts role-based sgt-map 198.18.1.0/24 sgt 70000",
            1,
            "bad SGT `70000`",
        );
        bad(
            "cts role-based sgt-map 198.18.1.1/24 sgt 5",
            1,
            "host bits set",
        );
        bad(
            "cts role-based sgt-map 198.18.1.0/33 sgt 5",
            1,
            "prefix length",
        );
        bad(
            "cts role-based sgt-map 198.18.1.0/24 tag 5",
            1,
            "expected `cts role-based sgt-map",
        );
        bad(
            "cts sxp connection peer 1.2.3.4 password default mode local listener",
            1,
            "no `cts sxp default password`",
        );
        bad(
            "cts sxp connection peer 1.2.3.4 password required x mode local listener",
            1,
            "per-connection SXP passwords",
        );
        bad(
            "cts sxp connection peer 1.2.3.4 password none mode local talker",
            1,
            "bad SXP mode `talker`",
        );
        bad(
            "cts sxp connection peer 1.2.3.x password none mode local listener",
            1,
            "bad IP address",
        );
        bad("cts sxp default password 8 abc", 1, "encrypted (type 8)");
        bad(
            "cts sxp listener hold-time 200 100",
            1,
            "minimum is above the maximum",
        );
        bad("cts sxp enable now", 1, "bad arguments to `cts sxp enable");
    }
}

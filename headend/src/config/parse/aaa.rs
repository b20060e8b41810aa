//! `aaa-server` groups and hosts (RADIUS; other protocols are warned about and
//! ignored) and local users (`username NAME password ...`).

use super::*;

impl Parser<'_> {
    // --------------------------------------------------------------- aaa-server

    pub(super) fn aaa_server(&mut self, c: &Cmd) -> Step {
        let t = c.toks.as_slice();
        let (group, iface, rest) = match t {
            [_, name, "protocol", proto] => {
                if *proto != "radius" {
                    self.ignored_aaa
                        .insert((*name).to_string(), (*proto).to_string());
                    self.warn(
                        c.line,
                        format!("aaa-server group `{name}` uses protocol {proto}, which the headend does not support; ignored"),
                    );
                    return Ok(Some(Mode::Unknown));
                }
                let g = self
                    .cfg
                    .aaa_server_groups
                    .entry((*name).to_string())
                    .or_insert_with(|| AaaServerGroup {
                        name: (*name).to_string(),
                        protocol: AaaProtocol::Radius,
                        max_failed_attempts: 3,
                        deadtime_minutes: 10,
                        line: c.line,
                        ..AaaServerGroup::default()
                    });
                return Ok(Some(Mode::AaaGroup(g.name.clone())));
            }
            [_, _, "protocol", ..] => return fail("expected `aaa-server NAME protocol radius`"),
            [_, name, iface, "host", rest @ ..] if iface.starts_with('(') => {
                let Some(i) = iface
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .filter(|s| !s.is_empty())
                else {
                    return fail(format!("bad interface `{iface}` (expected `(NAME)`)"));
                };
                (*name, Some(i.to_string()), rest)
            }
            [_, name, "host", rest @ ..] => (*name, None, rest),
            _ => return self.unknown(c, None),
        };
        let (addr, key, timeout) = match rest {
            [a] => (*a, None, None),
            [a, "timeout", n] => (*a, None, Some(*n)),
            [a, k] => (*a, Some(*k), None),
            [a, k, "timeout", n] => (*a, Some(*k), Some(*n)),
            _ => {
                return fail(
                    "expected `aaa-server NAME (INTERFACE) host ADDRESS [KEY] [timeout SECONDS]`",
                );
            }
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("bad server address `{addr}` (an IP address is needed)"))?;
        if let Some(k) = key
            && is_masked(k)
        {
            return fail(masked_key_msg());
        }
        let timeout = timeout
            .map(|n| parse_num(n, "timeout", 1, 300))
            .transpose()?;
        if self.ignored_aaa.contains_key(group) {
            return Ok(Some(Mode::Unknown));
        }
        let Some(g) = self.cfg.aaa_server_groups.get_mut(group) else {
            return fail(format!(
                "aaa-server group `{group}` is not defined; add `aaa-server {group} protocol radius` before its hosts"
            ));
        };
        let idx = match g
            .hosts
            .iter()
            .position(|h| h.address == address && h.interface == iface)
        {
            Some(i) => i,
            None => {
                g.hosts.push(AaaServerHost {
                    interface: iface,
                    address,
                    key: None,
                    authentication_port: 1812,
                    accounting_port: 1813,
                    timeout_secs: 10,
                    retry_interval_secs: 10,
                    accept_unsigned_replies: false,
                    line: c.line,
                });
                g.hosts.len() - 1
            }
        };
        if let Some(h) = g.hosts.get_mut(idx) {
            if let Some(k) = key {
                h.key = Some(k.to_string());
            }
            if let Some(t) = timeout {
                h.timeout_secs = t;
            }
        }
        Ok(Some(Mode::AaaHost(group.to_string(), idx)))
    }

    // ----------------------------------------------------------------- username

    pub(super) fn username(&mut self, c: &Cmd) -> Step {
        match c.toks.as_slice() {
            [_, name, "password", secret, opts @ ..] => {
                if is_masked(secret) {
                    return fail(
                        "the password is masked (`*****`); give the real password or its pbkdf2 hash",
                    );
                }
                let mut form = PasswordForm::Plain;
                let mut privilege = 2u8;
                let mut rest = opts;
                loop {
                    rest = match rest {
                        [] => break,
                        ["pbkdf2", tail @ ..] => {
                            form = PasswordForm::Pbkdf2;
                            tail
                        }
                        ["encrypted" | "nt-encrypted", tail @ ..] => {
                            form = PasswordForm::Encrypted;
                            tail
                        }
                        ["privilege", n, tail @ ..] => {
                            privilege = parse_num(n, "privilege level", 0, 15)? as u8;
                            tail
                        }
                        [other, ..] => {
                            return fail(format!(
                                "unexpected `{}` in `username`: expected pbkdf2, encrypted or privilege N",
                                words(&[other])
                            ));
                        }
                    };
                }
                self.cfg.usernames.insert(
                    (*name).to_string(),
                    LocalUser {
                        name: (*name).to_string(),
                        password: (*secret).to_string(),
                        password_form: form,
                        privilege,
                        line: c.line,
                    },
                );
                Ok(None)
            }
            [_, _, "password"] => fail("`username NAME password` needs the password"),
            [_, name, "nopassword", ..] => {
                self.warn(
                    c.line,
                    format!("user `{name}` has no password and cannot log in; ignored"),
                );
                Ok(None)
            }
            [_, _, "attributes"] => self.unknown(c, None),
            _ => fail("expected `username NAME password SECRET [privilege N]`"),
        }
    }

    pub(super) fn sub_aaa_group(&mut self, name: &str, mode: &Mode, c: &Cmd) -> Step {
        let Some(g) = self.cfg.aaa_server_groups.get_mut(name) else {
            return Ok(None);
        };
        match c.toks.as_slice() {
            ["authorize-only"] => g.authorize_only = true,
            ["no", "authorize-only"] => g.authorize_only = false,
            ["dynamic-authorization"] => g.dynamic_authorization = Some(1700),
            ["dynamic-authorization", "port", p] => {
                g.dynamic_authorization = Some(parse_num(p, "port", 1, 65535)? as u16)
            }
            ["no", "dynamic-authorization", ..] => g.dynamic_authorization = None,
            ["dynamic-authorization", ..] => {
                return fail("expected `dynamic-authorization [port N]`");
            }
            // Without `periodic` ASA sends interim updates only when an address is
            // assigned; we record that as 0 hours.
            ["interim-accounting-update"] => g.interim_accounting_update_hours = Some(0),
            ["interim-accounting-update", "periodic"] => {
                g.interim_accounting_update_hours = Some(24)
            }
            ["interim-accounting-update", "periodic", h] => {
                g.interim_accounting_update_hours = Some(parse_num(h, "hours", 1, 120)?)
            }
            ["no", "interim-accounting-update", ..] => g.interim_accounting_update_hours = None,
            ["interim-accounting-update", ..] => {
                return fail("expected `interim-accounting-update [periodic HOURS]`");
            }
            ["max-failed-attempts", n] => {
                g.max_failed_attempts = parse_num(n, "max-failed-attempts", 1, 5)?
            }
            ["max-failed-attempts", ..] => return fail("expected `max-failed-attempts N`"),
            ["reactivation-mode", "depletion"] => {}
            ["reactivation-mode", "depletion", "deadtime", n] | ["deadtime", n] => {
                g.deadtime_minutes = parse_num(n, "deadtime (minutes)", 0, 1440)?
            }
            // Timed mode retries a failed server after 30 s: the closest whole
            // number of minutes is 0, i.e. no dead time.
            ["reactivation-mode", "timed"] => g.deadtime_minutes = 0,
            ["reactivation-mode", ..] => {
                return fail(
                    "expected `reactivation-mode depletion [deadtime MINUTES]` or `reactivation-mode timed`",
                );
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }

    pub(super) fn sub_aaa_host(&mut self, group: &str, idx: usize, mode: &Mode, c: &Cmd) -> Step {
        let Some(h) = self
            .cfg
            .aaa_server_groups
            .get_mut(group)
            .and_then(|g| g.hosts.get_mut(idx))
        else {
            return Ok(None);
        };
        match c.toks.as_slice() {
            ["key", k] => {
                if is_masked(k) {
                    return fail(masked_key_msg());
                }
                h.key = Some((*k).to_string());
            }
            ["key", ..] => return fail("expected `key SECRET` (no spaces)"),
            ["no", "key", ..] => h.key = None,
            ["authentication-port", p] => {
                h.authentication_port = parse_num(p, "port", 1, 65535)? as u16
            }
            ["accounting-port", p] => h.accounting_port = parse_num(p, "port", 1, 65535)? as u16,
            ["timeout", n] => h.timeout_secs = parse_num(n, "timeout (seconds)", 1, 300)?,
            ["retry-interval", n] => {
                h.retry_interval_secs = parse_num(n, "retry-interval (seconds)", 1, 10)?
            }
            // Not an ASA command (ASA has none for this): see AaaServerHost.
            ["accept-unsigned-replies"] => h.accept_unsigned_replies = true,
            ["no", "accept-unsigned-replies"] => h.accept_unsigned_replies = false,
            [
                "authentication-port" | "accounting-port" | "timeout" | "retry-interval",
                ..,
            ] => {
                return fail(format!("expected `{} N`", words(&c.toks)));
            }
            _ => return self.unknown(c, Some(mode)),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::test_util::*;

    // --------------------------------------------------------------- aaa-server

    #[test]
    fn config_aaa_server() {
        let c = ok(&cfg(&[
            "aaa-server ISE protocol radius",
            " authorize-only",
            " interim-accounting-update periodic 1",
            " dynamic-authorization",
            " max-failed-attempts 4",
            " reactivation-mode depletion deadtime 5",
            " merge-dacl before-avpair",
            "aaa-server ISE (inside) host 198.18.1.20",
            " key s3cret",
            " authentication-port 1645",
            " accounting-port 1646",
            " timeout 5",
            " retry-interval 2",
            "aaa-server ISE (inside) host 198.18.1.21 k2 timeout 7",
            "aaa-server ISE host 2001:db8::1",
            "aaa-server R2 protocol radius",
            " dynamic-authorization port 3799",
            " interim-accounting-update",
            "aaa-server R2 host 10.0.0.1",
        ]));
        let g = &c.aaa_server_groups["ISE"];
        assert_eq!(g.protocol, AaaProtocol::Radius);
        assert!(g.authorize_only);
        assert_eq!(g.interim_accounting_update_hours, Some(1));
        assert_eq!(g.dynamic_authorization, Some(1700));
        assert_eq!(
            (g.max_failed_attempts, g.deadtime_minutes, g.line),
            (4, 5, 1)
        );
        assert_eq!(g.hosts.len(), 3);
        let h = &g.hosts[0];
        assert_eq!(h.interface.as_deref(), Some("inside"));
        assert_eq!(h.address, "198.18.1.20".parse::<IpAddr>().unwrap());
        assert_eq!(h.key.as_deref(), Some("s3cret"));
        assert_eq!(
            (
                h.authentication_port,
                h.accounting_port,
                h.timeout_secs,
                h.retry_interval_secs,
                h.line
            ),
            (1645, 1646, 5, 2, 8)
        );
        let h = &g.hosts[1];
        assert_eq!((h.key.as_deref(), h.timeout_secs), (Some("k2"), 7));
        assert_eq!(
            (
                h.authentication_port,
                h.accounting_port,
                h.retry_interval_secs
            ),
            (1812, 1813, 10)
        );
        assert_eq!(g.hosts[2].interface, None);
        let r2 = &c.aaa_server_groups["R2"];
        assert_eq!(r2.dynamic_authorization, Some(3799));
        assert_eq!(r2.interim_accounting_update_hours, Some(0));
        assert_eq!((r2.max_failed_attempts, r2.deadtime_minutes), (3, 10));
        assert!(!format!("{h:?}").contains("k2"), "Debug must hide the key");
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].line, 7);
    }

    #[test]
    fn config_aaa_server_errors() {
        bad(
            "aaa-server ISE (inside) host 1.2.3.4",
            1,
            "aaa-server group `ISE` is not defined",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE (inside) host 1.2.3.999",
            2,
            "bad server address",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n timeout 0",
            3,
            "bad timeout (seconds) `0`",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n retry-interval 11",
            3,
            "retry-interval",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n authentication-port 70000",
            3,
            "bad port",
        );
        bad(
            "aaa-server ISE protocol radius\naaa-server ISE host 1.2.3.4\n key *****",
            3,
            "masked",
        );
        bad(
            "aaa-server ISE protocol radius\n max-failed-attempts 9",
            2,
            "max-failed-attempts",
        );
        bad(
            "aaa-server ISE protocol radius\n dynamic-authorization port x",
            2,
            "bad port",
        );
        bad("aaa-server ISE protocol", 1, "protocol radius");
        // other protocols are ignored with a warning, their hosts too
        let c = ok(
            "aaa-server AD protocol ldap\n ldap-base-dn dc=x\naaa-server AD (inside) host 1.2.3.4\n ldap-login-password secret",
        );
        assert!(c.aaa_server_groups.is_empty());
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].message.contains("protocol ldap"));
    }

    // ----------------------------------------------------------------- username

    #[test]
    fn config_username() {
        let c = ok(&cfg(&[
            "username alice password s3cret",
            "username bob password $sha512$5000$abc pbkdf2 privilege 15",
            "username carol password xyz encrypted",
            "username dave nopassword",
            "username alice attributes",
            " vpn-group-policy GP",
        ]));
        let a = &c.usernames["alice"];
        assert_eq!(
            (a.password.as_str(), a.password_form, a.privilege, a.line),
            ("s3cret", PasswordForm::Plain, 2, 1)
        );
        let b = &c.usernames["bob"];
        assert_eq!((b.password_form, b.privilege), (PasswordForm::Pbkdf2, 15));
        assert_eq!(c.usernames["carol"].password_form, PasswordForm::Encrypted);
        assert!(!c.usernames.contains_key("dave"));
        assert!(!format!("{a:?}").contains("s3cret"));
        assert_eq!(
            c.warnings.iter().map(|w| w.line).collect::<Vec<_>>(),
            vec![4, 5]
        );
        bad(
            "username a password x privilege 16",
            1,
            "bad privilege level `16`",
        );
        bad("username a password", 1, "needs the password");
        bad("username a password x bogus", 1, "unexpected `bogus`");
    }
}

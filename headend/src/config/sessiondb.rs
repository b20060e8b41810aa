//! `vpn-sessiondb max-anyconnect-premium-or-essentials-limit N`,
//! `vpn-sessiondb max-other-vpn-limit N` and `vpn-sessiondb max-session-limit N`
//! (global commands; asa-syntax.md section 6). On ASA the defaults are the
//! platform/licence maximum; here, with no command, only memory and
//! RLIMIT_NOFILE bound the session count.

/// The `vpn-sessiondb` limits as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VpnSessionDb {
    pub max_anyconnect_premium_or_essentials_limit: Option<u32>,
    /// Stored for `show running-config`; the headend serves no other VPN type.
    pub max_other_vpn_limit: Option<u32>,
    pub max_session_limit: Option<u32>,
}

impl VpnSessionDb {
    /// How many AnyConnect sessions may exist at once: the smaller of the
    /// AnyConnect limit and the overall session limit.
    pub fn anyconnect_limit(&self) -> Option<u32> {
        match (
            self.max_anyconnect_premium_or_essentials_limit,
            self.max_session_limit,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Largest value accepted (ASA's own maxima are per platform and far lower).
const MAX_LIMIT: u32 = 1_000_000;

/// Parses the words of one `vpn-sessiondb ...` line into `db`.
pub fn parse(db: &mut VpnSessionDb, toks: &[&str]) -> Result<(), String> {
    let num = |s: &str, what: &str| -> Result<u32, String> {
        match s.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "{what}: expected a number 1-{MAX_LIMIT}, got `{s}`"
            )),
        }
    };
    match toks {
        [
            "vpn-sessiondb",
            "max-anyconnect-premium-or-essentials-limit",
            n,
        ] => {
            db.max_anyconnect_premium_or_essentials_limit = Some(num(
                n,
                "vpn-sessiondb max-anyconnect-premium-or-essentials-limit",
            )?);
        }
        ["vpn-sessiondb", "max-other-vpn-limit", n] => {
            db.max_other_vpn_limit = Some(num(n, "vpn-sessiondb max-other-vpn-limit")?);
        }
        ["vpn-sessiondb", "max-session-limit", n] => {
            db.max_session_limit = Some(num(n, "vpn-sessiondb max-session-limit")?);
        }
        _ => {
            return Err(
                "expected `vpn-sessiondb max-anyconnect-premium-or-essentials-limit N`, \
                 `vpn-sessiondb max-other-vpn-limit N` or `vpn-sessiondb max-session-limit N`"
                    .into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn cfg(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::parse_str(text, "t.cfg")
    }

    #[test]
    fn limits_parse_and_combine() {
        let c = cfg("vpn-sessiondb max-anyconnect-premium-or-essentials-limit 500\n").unwrap();
        assert_eq!(c.vpn_sessiondb.anyconnect_limit(), Some(500));
        let c = cfg("vpn-sessiondb max-session-limit 100\n\
                     vpn-sessiondb max-anyconnect-premium-or-essentials-limit 500\n\
                     vpn-sessiondb max-other-vpn-limit 7\n")
        .unwrap();
        assert_eq!(c.vpn_sessiondb.anyconnect_limit(), Some(100));
        assert_eq!(c.vpn_sessiondb.max_other_vpn_limit, Some(7));
        assert_eq!(
            cfg("hostname x\n")
                .unwrap()
                .vpn_sessiondb
                .anyconnect_limit(),
            None
        );
    }

    #[test]
    fn bad_limits_name_the_line() {
        for bad in [
            "vpn-sessiondb max-session-limit 0",
            "vpn-sessiondb max-session-limit lots",
            "vpn-sessiondb max-session-limit 5000000",
            "vpn-sessiondb max-session-limit",
            "vpn-sessiondb max-bogus-limit 3",
        ] {
            let e = cfg(&format!("hostname x\n{bad}\n")).unwrap_err();
            assert_eq!(e.line, 2, "{bad}: {e}");
            assert!(e.message.contains("vpn-sessiondb"), "{bad}: {e}");
        }
    }
}

//! An ACE's `log` option, as ASA reads it after the matches:
//! `log [LEVEL] [interval SECS]`, `log default` (level 6, 300 s) and
//! `log disable` (no 106100 for the entry). LEVEL is 0-7 or a level name; the
//! interval is 1-600 seconds (Cisco ASA command reference, `access-list
//! extended`, keyword `log`).

use super::model::AceLog;

const LEVEL_NAMES: [&str; 8] = [
    "emergencies",
    "alerts",
    "critical",
    "errors",
    "warnings",
    "notifications",
    "informational",
    "debugging",
];

/// Reads the words after `log`; returns the option and how many words it used.
pub fn parse(t: &[&str]) -> Result<(Option<AceLog>, usize), String> {
    let mut log = AceLog::default();
    let mut used = 0;
    match t.first().copied() {
        Some("disable") => return Ok((None, 1)),
        Some("default") => return Ok((Some(log), 1)),
        Some(lv) if lv.chars().all(|c| c.is_ascii_digit()) => {
            log.level = match lv.parse::<u8>() {
                Ok(n @ 0..=7) => n,
                _ => return Err(format!("bad log level `{lv}` (expected 0-7)")),
            };
            used = 1;
        }
        Some(name) if LEVEL_NAMES.contains(&name) => {
            log.level = LEVEL_NAMES.iter().position(|n| *n == name).unwrap_or(6) as u8;
            used = 1;
        }
        _ => {}
    }
    if t.get(used) == Some(&"interval") {
        let Some(s) = t.get(used + 1) else {
            return Err("access-list entry ends early: missing log interval".into());
        };
        log.interval = match s.parse::<u16>() {
            Ok(n @ 1..=600) => n,
            _ => return Err(format!("bad log interval (seconds) `{s}` (expected 1-600)")),
        };
        used += 2;
    }
    Ok((Some(log), used))
}

/// The option as `show access-list` prints it: `log warnings interval 60`.
pub fn render(l: &AceLog) -> String {
    format!(
        "log {} interval {}",
        LEVEL_NAMES[usize::from(l.level.min(7))],
        l.interval
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<(Option<AceLog>, usize), String> {
        parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn levels_intervals_and_disable() {
        let def = AceLog::default();
        assert_eq!(p(""), Ok((Some(def), 0)));
        assert_eq!(p("inactive"), Ok((Some(def), 0)));
        assert_eq!(p("default"), Ok((Some(def), 1)));
        assert_eq!(p("disable"), Ok((None, 1)));
        assert_eq!(
            p("4"),
            Ok((
                Some(AceLog {
                    level: 4,
                    interval: 300
                }),
                1
            ))
        );
        assert_eq!(
            p("critical interval 60 inactive"),
            Ok((
                Some(AceLog {
                    level: 2,
                    interval: 60
                }),
                3
            ))
        );
        assert_eq!(
            p("interval 5"),
            Ok((
                Some(AceLog {
                    level: 6,
                    interval: 5
                }),
                2
            ))
        );
        assert!(p("8").unwrap_err().contains("bad log level"));
        assert!(p("3 interval 0").unwrap_err().contains("log interval"));
        assert!(p("3 interval 601").unwrap_err().contains("log interval"));
        assert!(p("interval").unwrap_err().contains("missing log interval"));
        assert_eq!(
            render(&AceLog {
                level: 4,
                interval: 60
            }),
            "log warnings interval 60"
        );
    }
}

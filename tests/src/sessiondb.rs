//! A tolerant reader of `headend show vpn-sessiondb` output (ASA style):
//!
//! ```text
//! Username     : alice                  Index        : 1
//! Assigned IP  : 198.18.100.10          Public IP    : 198.18.0.2
//! Login Time   : 08:45:12 UTC Sun Nov 23 2025
//! ```
//!
//! Fields are `Key : value`; a value ends at two or more spaces or at the end of the
//! line; two fields may share a line. A new session starts at each `Username` field.
//! Anything before the first `Username` (a `Session Type:` header, `INFO:` lines) is
//! ignored. In `detail` output a field repeated in a tunnel section (`Public IP`,
//! `Bytes Tx`) keeps the session-level value, which comes first.

use std::collections::HashMap;

/// One session: field name (as printed, e.g. `Assigned IP`) to value.
pub type Session = HashMap<String, String>;

/// The session of `user` (its `Username` field).
pub fn session_of<'a>(sessions: &'a [Session], user: &str) -> Option<&'a Session> {
    sessions
        .iter()
        .find(|s| s.get("Username").map(String::as_str) == Some(user))
}

/// The session of `user`; panics (showing every session) when there is none.
pub fn expect_session<'a>(sessions: &'a [Session], user: &str) -> &'a Session {
    session_of(sessions, user).unwrap_or_else(|| panic!("no session for {user} in {sessions:?}"))
}

/// Field `key` of `s`, if it has one.
pub fn get<'a>(s: &'a Session, key: &str) -> Option<&'a str> {
    s.get(key).map(String::as_str)
}

/// Field `key` of `s`; panics (showing the session) when it is missing.
pub fn field<'a>(s: &'a Session, key: &str) -> &'a str {
    s.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {key:?} in {s:?}"))
}

pub fn parse(text: &str) -> Vec<Session> {
    let mut sessions = Vec::new();
    let mut current: Option<Session> = None;
    for line in text.lines() {
        for (key, value) in fields(line) {
            if key == "Username" {
                sessions.extend(current.take());
                current = Some(Session::new());
            }
            if let Some(s) = current.as_mut() {
                s.entry(key).or_insert(value);
            }
        }
    }
    sessions.extend(current);
    sessions
}

/// The `Key : value` fields of one line.
pub fn fields(line: &str) -> Vec<(String, String)> {
    enum State {
        Idle,
        /// A bare key; its `: value` follows in the next segment.
        Key(String),
        /// `Key :`; its value follows in the next segment.
        KeyColon(String),
    }
    fn start(split: Option<(&str, &str)>, seg: &str, out: &mut Vec<(String, String)>) -> State {
        match split {
            None => State::Key(seg.to_owned()),
            // A stray `: value` with no key before it.
            Some(("", _)) => State::Idle,
            Some((k, "")) => State::KeyColon(k.to_owned()),
            Some((k, v)) => {
                out.push((k.to_owned(), v.to_owned()));
                State::Idle
            }
        }
    }
    let mut out = Vec::new();
    let mut state = State::Idle;
    for seg in segments(line) {
        let split = split_field(seg);
        state = match state {
            State::Idle => start(split, seg, &mut out),
            State::Key(k) => match split {
                Some(("", "")) => State::KeyColon(k),
                Some(("", v)) => {
                    out.push((k, v.to_owned()));
                    State::Idle
                }
                // The bare words before were not a key.
                _ => start(split, seg, &mut out),
            },
            State::KeyColon(k) => match split {
                None => {
                    out.push((k, seg.to_owned()));
                    State::Idle
                }
                _ => {
                    out.push((k, String::new()));
                    start(split, seg, &mut out)
                }
            },
        };
    }
    if let State::KeyColon(k) = state {
        out.push((k, String::new()));
    }
    out
}

/// Splits a line at runs of two or more whitespace characters; trimmed, non-empty.
fn segments(line: &str) -> Vec<&str> {
    let mut segs = Vec::new();
    let bytes = line.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace()
            && bytes.get(i + 1).is_some_and(|b| b.is_ascii_whitespace())
        {
            segs.push(&line[start..i]);
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            start = i;
        } else {
            i += 1;
        }
    }
    segs.push(&line[start..]);
    segs.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `Key : value`, `Key: value`, `Key :`, `: value`, `:` into (key, value), trimmed.
/// A colon inside a value (`08:45:12`, `0h:00m:05s`) is not a separator: only a colon
/// followed by a space or ending the segment is.
fn split_field(seg: &str) -> Option<(&str, &str)> {
    let (a, b) = if let Some(i) = seg.find(": ") {
        (i, i + 2)
    } else if seg.ends_with(':') {
        (seg.len() - 1, seg.len())
    } else {
        return None;
    };
    Some((seg[..a].trim(), seg[b..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
Session Type: AnyConnect

Username     : alice                  Index        : 1
Assigned IP  : 198.18.100.10          Public IP    : 198.18.0.2
Protocol     : AnyConnect-Parent SSL-Tunnel
License      : AnyConnect Premium
Encryption   : AnyConnect-Parent: (1)none  SSL-Tunnel: (1)AES-GCM-256
Bytes Tx     : 15880                  Bytes Rx     : 2010
Group Policy : GP-EMPLOYEES           Tunnel Group : LOCAL-PW
Login Time   : 08:45:12 UTC Sun Nov 23 2025
Duration     : 0h:00m:05s
Inactivity   : 0h:00m:00s
VLAN Mapping : N/A                    VLAN         : none

Username     : bob                    Index        : 2
Assigned IP  : 198.18.100.11          Public IP    : 198.18.0.3
Security Grp :
";

    #[test]
    fn two_sessions() {
        let s = parse(TWO);
        assert_eq!(s.len(), 2, "{s:?}");
        let a = &s[0];
        assert_eq!(a["Username"], "alice");
        assert_eq!(a["Index"], "1");
        assert_eq!(a["Assigned IP"], "198.18.100.10");
        assert_eq!(a["Public IP"], "198.18.0.2");
        assert_eq!(a["Protocol"], "AnyConnect-Parent SSL-Tunnel");
        assert_eq!(a["Bytes Tx"], "15880");
        assert_eq!(a["Bytes Rx"], "2010");
        assert_eq!(a["Group Policy"], "GP-EMPLOYEES");
        assert_eq!(a["Tunnel Group"], "LOCAL-PW");
        assert_eq!(a["Login Time"], "08:45:12 UTC Sun Nov 23 2025");
        assert_eq!(a["Duration"], "0h:00m:05s");
        assert_eq!(a["Encryption"], "AnyConnect-Parent: (1)none");
        assert!(!a.contains_key("Session Type"));
        let b = &s[1];
        assert_eq!(b["Username"], "bob");
        assert_eq!(b["Index"], "2");
        assert_eq!(b["Public IP"], "198.18.0.3");
        assert_eq!(b["Security Grp"], "");
    }

    #[test]
    fn no_sessions() {
        assert!(parse("INFO: There are presently no active sessions\n").is_empty());
        assert!(parse("").is_empty());
    }

    #[test]
    fn single_space_and_odd_spacing() {
        let s = parse(
            "Username : carol Index : 7\nAssigned IP: 198.18.100.12\nPublic IP  :  198.18.0.2\n",
        );
        // "carol Index : 7" has no wide gap: one field, as far as a reader can tell.
        assert_eq!(s.len(), 1);
        assert_eq!(s[0]["Username"], "carol Index : 7");
        assert_eq!(s[0]["Assigned IP"], "198.18.100.12");
        assert_eq!(s[0]["Public IP"], "198.18.0.2");
    }

    #[test]
    fn fields_of_a_line() {
        assert_eq!(
            fields("Group Policy : GP  Tunnel Group : TG"),
            vec![
                ("Group Policy".to_owned(), "GP".to_owned()),
                ("Tunnel Group".to_owned(), "TG".to_owned())
            ]
        );
        assert_eq!(
            fields("Key :   value"),
            vec![("Key".to_owned(), "value".to_owned())]
        );
        assert_eq!(fields("Key :"), vec![("Key".to_owned(), String::new())]);
        assert!(fields("just words").is_empty());
    }
}

//! Small helpers shared by the section parsers: tokens, numbers, addresses, URLs.

use super::*;

pub(super) fn is_comment(text: &str) -> bool {
    // `:` starts the header/footer lines of `show running-config` (`: Saved`, `:end`).
    text.is_empty() || text.starts_with('!') || text.starts_with(':')
}

/// `@NAME@` (upper case, digits, `_`), the lab's fill-in marker.
pub(super) fn find_placeholder(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b.get(i) != Some(&b'@') {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while b
            .get(j)
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
        {
            j += 1;
        }
        let starts_upper = b.get(i + 1).is_some_and(|c| c.is_ascii_uppercase());
        if starts_upper && b.get(j) == Some(&b'@') {
            return s.get(i..=j);
        }
        i = j;
    }
    None
}

/// The leading keywords of a command, for messages. Stops before anything that
/// may be a secret (`key X`, `password X`, or a non-keyword token).
pub(super) fn words(toks: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for t in toks.iter().take(4) {
        let keyword = !t.is_empty()
            && t.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '+');
        if !keyword {
            break;
        }
        out.push(t);
        if matches!(
            *t,
            "password" | "passwd" | "key" | "secret" | "community" | "pre-shared-key"
        ) {
            break;
        }
    }
    if out.is_empty() {
        "…".into()
    } else {
        out.join(" ")
    }
}

/// The text after the first `n` whitespace-separated tokens.
pub(super) fn rest_after(text: &str, n: usize) -> &str {
    let mut s = text.trim_start();
    for _ in 0..n {
        match s.find(char::is_whitespace) {
            Some(i) => s = s.get(i..).unwrap_or("").trim_start(),
            None => return "",
        }
    }
    s.trim_end()
}

pub(super) fn is_masked(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c == '*')
}

pub(super) fn masked_key_msg() -> String {
    "the key is masked (`*****`, as `show running-config` prints it); give the real key (`more system:running-config` shows it)".into()
}

pub(super) fn ssl_msg(e: &openssl::error::ErrorStack) -> String {
    let s = e.to_string();
    if s.is_empty() {
        "invalid data".into()
    } else {
        s
    }
}

pub(super) fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    b.chunks(2)
        .map(|p| {
            let hi = (*p.first().unwrap_or(&b'x') as char).to_digit(16);
            let lo = (*p.get(1).unwrap_or(&b'x') as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err("bad hex digit".to_string()),
            }
        })
        .collect()
}

pub(super) fn parse_num(s: &str, what: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= u64::from(min) && n <= u64::from(max) => Ok(n as u32),
        _ => Err(format!(
            "bad {what} `{s}` (expected a number from {min} to {max})"
        )),
    }
}

/// Minutes, or `none` = no limit (stored as 0).
pub(super) fn minutes_or_none(s: &str) -> Result<u32, String> {
    if s == "none" {
        Ok(0)
    } else {
        parse_num(s, "timeout (minutes)", 1, 35_791_394)
    }
}

/// Seconds, or `none` = disabled (stored as 0).
pub(super) fn secs_or_none(s: &str, what: &str, min: u32, max: u32) -> Result<u32, String> {
    if s == "none" {
        Ok(0)
    } else {
        parse_num(s, what, min, max)
    }
}

pub(super) fn parse_v4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("bad IPv4 address `{s}`"))
}

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("bad IP address `{s}`"))
}

pub(super) fn parse_mask(s: &str) -> Result<Ipv4Addr, String> {
    let m: Ipv4Addr = s.parse().map_err(|_| format!("bad netmask `{s}`"))?;
    let v = u32::from(m);
    if v.leading_ones() + v.trailing_zeros() != 32 {
        return Err(format!(
            "bad netmask `{s}`: the one bits must be contiguous"
        ));
    }
    Ok(m)
}

pub(super) fn mask_len(m: Ipv4Addr) -> u8 {
    u32::from(m).leading_ones() as u8
}

pub(super) fn classful_mask(a: Ipv4Addr) -> Ipv4Addr {
    match a.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

pub(super) fn full_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// True when `ip` has bits set beyond `len` (ASA rejects such address/mask pairs).
pub(super) fn host_bits_set(ip: IpAddr, len: u8) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & !m != 0
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & !m != 0
        }
    }
}

/// `ADDR/LEN` (IPv4 or IPv6), network address only.
pub(super) fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let Some((a, l)) = s.split_once('/') else {
        return Err(format!("expected ADDRESS/LENGTH, found `{s}`"));
    };
    let ip = parse_ip(a)?;
    let len = parse_num(l, "prefix length", 0, u32::from(full_len(ip)))? as u8;
    if host_bits_set(ip, len) {
        return Err(format!(
            "`{s}` has host bits set: the network address is needed"
        ));
    }
    Ok((ip, len))
}

pub(super) fn check_url(u: &str) -> Result<String, String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(u.to_string()),
        _ => Err(format!("bad URL `{u}` (expected https://HOST/...)")),
    }
}

/// Group URLs compare without scheme case, host case or a trailing slash.
pub(in crate::config) fn normalize_url(u: &str) -> String {
    let lower = u.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("https://") {
        ("https://", u.get(8..).unwrap_or(""))
    } else if lower.starts_with("http://") {
        ("http://", u.get(7..).unwrap_or(""))
    } else {
        ("", u)
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    format!(
        "{scheme}{}{}",
        host.to_ascii_lowercase(),
        path.trim_end_matches('/')
    )
}

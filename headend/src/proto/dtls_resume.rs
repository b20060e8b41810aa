//! AnyConnect's session-resumption DTLS (legacy-dtls.md): the mode Cisco
//! AnyConnect / Secure Client use, and openconnect against an ASA. Sans-IO parts:
//! which DTLS mode a CONNECT gets, the suite and its reply header, the
//! `X-DTLS-MTU` for the suite, and the DER of the OpenSSL session to resume.
//!
//! The client sends 48 random bytes as `X-DTLS-Master-Secret`; the server replies
//! with a 32-byte `X-DTLS-Session-ID` and one suite, and the client then "resumes"
//! that session: its ClientHello carries the Session-ID (routed like the App-ID
//! of PSK mode, `dtls_hello.rs`) and both sides derive the keys from the master
//! secret, with no certificate and no key exchange.

use crate::proto::http::Request;

/// `X-DTLS-Master-Secret`: 48 bytes, 96 hex characters (openconnect cstp.c).
pub const MASTER_SECRET_LEN: usize = 48;

/// Which clients get resume mode (`anyconnect dtls-resume` in a group-policy,
/// a headend extension; DfltGrpPolicy makes it global).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResumePolicy {
    /// PSK-NEGOTIATE when offered, resume mode otherwise (default).
    #[default]
    Enable,
    /// Never resume mode: clients without PSK-NEGOTIATE get CSTP only.
    Disable,
    /// Resume mode even when PSK-NEGOTIATE is offered, as an ASA does.
    Always,
}

/// A DTLS 1.2 AES-GCM suite served in resume mode (OpenSSL 3 cannot serve the
/// DTLS 0.9 suites, legacy-dtls.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeSuite {
    Aes256GcmSha384,
    Aes128GcmSha256,
    EcdheRsaAes256GcmSha384,
    EcdheRsaAes128GcmSha256,
}

impl ResumeSuite {
    /// The OpenSSL (and openconnect `X-DTLS12-CipherSuite`) name.
    pub fn openssl_name(self) -> &'static str {
        match self {
            Self::Aes256GcmSha384 => "AES256-GCM-SHA384",
            Self::Aes128GcmSha256 => "AES128-GCM-SHA256",
            Self::EcdheRsaAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
            Self::EcdheRsaAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
        }
    }

    /// The IANA cipher suite number (RFC 5288, RFC 5289).
    pub fn id(self) -> [u8; 2] {
        match self {
            Self::Aes256GcmSha384 => [0x00, 0x9d],
            Self::Aes128GcmSha256 => [0x00, 0x9c],
            Self::EcdheRsaAes256GcmSha384 => [0xc0, 0x30],
            Self::EcdheRsaAes128GcmSha256 => [0xc0, 0x2f],
        }
    }
}

/// `Encryption` / `Hashing` of an OpenSSL suite name as ASA's `show
/// vpn-sessiondb` prints them (`AES-GCM-256` / `SHA384`), for resume and PSK
/// suites alike.
pub fn asa_algorithms(openssl_name: &str) -> (&'static str, &'static str) {
    let enc = if openssl_name.contains("AES256-GCM") {
        "AES-GCM-256"
    } else if openssl_name.contains("AES128-GCM") {
        "AES-GCM-128"
    } else if openssl_name.contains("CHACHA20") {
        "CHACHA20-POLY1305"
    } else {
        "unknown"
    };
    let hash = if openssl_name.ends_with("SHA384") {
        "SHA384"
    } else if openssl_name.ends_with("SHA256") || openssl_name.contains("CHACHA20") {
        "SHA256"
    } else {
        "unknown"
    };
    (enc, hash)
}

/// The DTLS mode chosen for one CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsMode {
    /// openconnect's PSK-NEGOTIATE.
    Psk,
    /// Session resumption with `suite`, announced as `reply_header: reply_name`.
    Resume {
        suite: ResumeSuite,
        reply_header: &'static str,
        reply_name: &'static str,
        master: [u8; MASTER_SECRET_LEN],
    },
    /// CSTP only (no `X-DTLS-*` reply headers).
    None,
}

/// X-DTLS12-CipherSuite names in our order of preference: AES-256 first (ocserv's
/// priority), the RSA-key-exchange name before ECDHE (no key exchange happens on
/// resumption, both are on Cisco's list).
const DTLS12: [ResumeSuite; 4] = [
    ResumeSuite::Aes256GcmSha384,
    ResumeSuite::EcdheRsaAes256GcmSha384,
    ResumeSuite::Aes128GcmSha256,
    ResumeSuite::EcdheRsaAes128GcmSha256,
];

/// openconnect's names in X-DTLS-CipherSuite for DTLS 1.2 AES-GCM (gnutls-dtls.c).
const OC_DTLS12: [(&str, ResumeSuite); 2] = [
    ("OC-DTLS1_2-AES256-GCM", ResumeSuite::Aes256GcmSha384),
    ("OC-DTLS1_2-AES128-GCM", ResumeSuite::Aes128GcmSha256),
];

fn names<'a>(req: &'a Request, header: &str) -> Vec<&'a str> {
    req.headers_named(header)
        .flat_map(|v| v.split(':'))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The master secret of `X-DTLS-Master-Secret`: exactly 96 hex characters
/// (openconnect sends upper case; accept both).
pub fn master_secret(req: &Request) -> Option<[u8; MASTER_SECRET_LEN]> {
    let hex = req.header("X-DTLS-Master-Secret")?.trim().as_bytes();
    if hex.len() != 2 * MASTER_SECRET_LEN {
        return None;
    }
    let mut out = [0u8; MASTER_SECRET_LEN];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// The DTLS mode for a CONNECT, per legacy-dtls.md section 2: PSK-NEGOTIATE when
/// offered (unless `Always`); otherwise the first AES-GCM suite of
/// `X-DTLS12-CipherSuite`, else `OC-DTLS1_2-AES*-GCM` of `X-DTLS-CipherSuite`;
/// otherwise none. Resume mode also needs a well-formed master secret.
pub fn choose(req: &Request, policy: ResumePolicy) -> DtlsMode {
    let legacy = names(req, "X-DTLS-CipherSuite");
    let psk = legacy.contains(&"PSK-NEGOTIATE");
    if psk && policy != ResumePolicy::Always {
        return DtlsMode::Psk;
    }
    if policy == ResumePolicy::Disable {
        return DtlsMode::None;
    }
    let Some(master) = master_secret(req) else {
        return if psk { DtlsMode::Psk } else { DtlsMode::None };
    };
    let dtls12 = names(req, "X-DTLS12-CipherSuite");
    if let Some(suite) = DTLS12.iter().find(|s| dtls12.contains(&s.openssl_name())) {
        return DtlsMode::Resume {
            suite: *suite,
            reply_header: "X-DTLS12-CipherSuite",
            reply_name: suite.openssl_name(),
            master,
        };
    }
    if let Some((name, suite)) = OC_DTLS12.iter().find(|(n, _)| legacy.contains(n)) {
        return DtlsMode::Resume {
            suite: *suite,
            reply_header: "X-DTLS-CipherSuite",
            reply_name: name,
            master,
        };
    }
    if psk { DtlsMode::Psk } else { DtlsMode::None }
}

/// The `X-DTLS-*` reply headers of resume mode (openconnect cstp.c 440-500):
/// Session-ID (64 hex, lower case as ocserv), port, keepalive, DPD, the one
/// suite header, and the MTU. Never `X-DTLS-App-ID` (PSK mode only) nor
/// `X-DTLS-Rekey-Method: ssl` (a DTLS rehandshake trips openconnect's MITM check).
pub fn reply_headers(
    session_id: &[u8; 32],
    port: u16,
    keepalive: Option<u32>,
    dpd: Option<u32>,
    mode: &DtlsMode,
    mtu: u32,
) -> String {
    use std::fmt::Write as _;
    let DtlsMode::Resume {
        reply_header,
        reply_name,
        ..
    } = mode
    else {
        return String::new();
    };
    let mut r = String::with_capacity(256);
    let hex: String = session_id.iter().map(|b| format!("{b:02x}")).collect();
    let _ = write!(r, "X-DTLS-Session-ID: {hex}\r\n");
    let _ = write!(r, "X-DTLS-Port: {port}\r\n");
    if let Some(k) = keepalive {
        let _ = write!(r, "X-DTLS-Keepalive: {k}\r\n");
    }
    if let Some(d) = dpd {
        let _ = write!(r, "X-DTLS-DPD: {d}\r\n");
    }
    let _ = write!(r, "{reply_header}: {reply_name}\r\n");
    let _ = write!(r, "X-DTLS-MTU: {mtu}\r\n");
    r
}

/// DTLS 1.2 AES-GCM record overhead: header 13, explicit nonce 8, tag 16.
const GCM_OVERHEAD: u32 = 13 + 8 + 16;

/// `X-DTLS-MTU`: the largest tunnelled packet that fits one datagram of
/// `datagram_mtu` bytes (base MTU minus outer IP and UDP headers) with the
/// suite's overhead and AnyConnect's 1-byte type header, never above the tunnel
/// MTU (openconnect uses max(X-CSTP-MTU, X-DTLS-MTU), cstp.c). 1500 over IPv4
/// gives 1434, what ocserv sends (legacy-dtls.md section 6).
pub fn dtls_mtu(datagram_mtu: u32, tunnel_mtu: u16) -> u32 {
    datagram_mtu
        .saturating_sub(GCM_OVERHEAD + 1)
        .min(u32::from(tunnel_mtu))
}

/// DER of the OpenSSL session the client resumes (`d2i_SSL_SESSION`, ssl_asn1.c):
/// `SEQUENCE { INTEGER 1, INTEGER 0xfefd, OCTET STRING suite, OCTET STRING id,
/// OCTET STRING master, [1] INTEGER time, [2] INTEGER timeout }`. The explicit
/// time and timeout matter: without them OpenSSL gives the session 3 s
/// (legacy-dtls.md section 4).
pub fn session_der(
    suite: ResumeSuite,
    session_id: &[u8; 32],
    master: &[u8; MASTER_SECRET_LEN],
    now_unix: u64,
    timeout_secs: u64,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    der_uint(&mut body, 1);
    der_uint(&mut body, 0xfefd);
    der_tlv(&mut body, 0x04, &suite.id());
    der_tlv(&mut body, 0x04, session_id);
    der_tlv(&mut body, 0x04, master);
    let mut t = Vec::new();
    der_uint(&mut t, now_unix);
    der_tlv(&mut body, 0xa1, &t);
    let mut t = Vec::new();
    der_uint(&mut t, timeout_secs);
    der_tlv(&mut body, 0xa2, &t);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_tlv(&mut out, 0x30, &body);
    out
}

fn der_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    // Every value here is far below 64 KiB.
    match value.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
}

/// A non-negative INTEGER, minimal two's complement (0xfefd is `02 03 00 fe fd`).
fn der_uint(out: &mut Vec<u8>, v: u64) {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    let mut value = Vec::with_capacity(9);
    if bytes[first] & 0x80 != 0 {
        value.push(0);
    }
    value.extend_from_slice(&bytes[first..]);
    der_tlv(out, 0x02, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F";
    const OC_DEFAULT: &str = "PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC2-DTLS1_2-CHACHA20-POLY1305:OC-DTLS1_2-AES128-GCM:DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA";
    const OC_DTLS12: &str = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-GCM-SHA256:DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA";

    fn req(headers: &[(&str, &str)]) -> Request {
        let mut text = String::from("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn\r\n");
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        crate::proto::http::RequestParser::new()
            .parse(text.as_bytes())
            .unwrap()
            .expect("complete request")
    }

    fn resumed(m: &DtlsMode) -> (ResumeSuite, &'static str, &'static str) {
        match m {
            DtlsMode::Resume {
                suite,
                reply_header,
                reply_name,
                master,
            } => {
                assert_eq!(master[0x2f], 0x2f);
                (*suite, *reply_header, *reply_name)
            }
            other => panic!("not resume mode: {other:?}"),
        }
    }

    #[test]
    fn psk_wins_when_offered_unless_always() {
        let r = req(&[
            ("X-DTLS-Master-Secret", SECRET),
            ("X-DTLS-CipherSuite", OC_DEFAULT),
            ("X-DTLS12-CipherSuite", OC_DTLS12),
        ]);
        assert_eq!(choose(&r, ResumePolicy::Enable), DtlsMode::Psk);
        assert_eq!(choose(&r, ResumePolicy::Disable), DtlsMode::Psk);
        assert_eq!(
            resumed(&choose(&r, ResumePolicy::Always)),
            (
                ResumeSuite::Aes256GcmSha384,
                "X-DTLS12-CipherSuite",
                "AES256-GCM-SHA384"
            )
        );
    }

    #[test]
    fn dtls12_list_then_oc_names_then_nothing() {
        let ecdhe = req(&[
            ("X-DTLS-Master-Secret", SECRET),
            ("X-DTLS12-CipherSuite", "ECDHE-RSA-AES256-GCM-SHA384"),
        ]);
        assert_eq!(
            resumed(&choose(&ecdhe, ResumePolicy::Enable)).2,
            "ECDHE-RSA-AES256-GCM-SHA384"
        );
        let oc = req(&[
            ("X-DTLS-Master-Secret", SECRET),
            ("X-DTLS-CipherSuite", "OC-DTLS1_2-AES128-GCM:AES256-SHA"),
        ]);
        assert_eq!(
            resumed(&choose(&oc, ResumePolicy::Enable)),
            (
                ResumeSuite::Aes128GcmSha256,
                "X-DTLS-CipherSuite",
                "OC-DTLS1_2-AES128-GCM"
            )
        );
        // DTLS 0.9 only: not served.
        let old = req(&[
            ("X-DTLS-Master-Secret", SECRET),
            ("X-DTLS-CipherSuite", "AES256-SHA:AES128-SHA"),
        ]);
        assert_eq!(choose(&old, ResumePolicy::Enable), DtlsMode::None);
        assert_eq!(choose(&old, ResumePolicy::Always), DtlsMode::None);
        // Resume mode turned off.
        assert_eq!(choose(&ecdhe, ResumePolicy::Disable), DtlsMode::None);
        // No DTLS headers at all (--no-dtls).
        assert_eq!(choose(&req(&[]), ResumePolicy::Always), DtlsMode::None);
    }

    #[test]
    fn bad_master_secrets_get_no_resume_mode() {
        for bad in [
            &SECRET[..94],
            "ZZ",
            &format!("{SECRET}00"),
            &SECRET.replace('0', "g"),
        ] {
            let r = req(&[
                ("X-DTLS-Master-Secret", bad),
                ("X-DTLS12-CipherSuite", "AES256-GCM-SHA384"),
            ]);
            assert_eq!(choose(&r, ResumePolicy::Enable), DtlsMode::None, "{bad}");
        }
        let lower = req(&[
            ("X-DTLS-Master-Secret", &SECRET.to_lowercase()),
            ("X-DTLS12-CipherSuite", "AES256-GCM-SHA384"),
        ]);
        resumed(&choose(&lower, ResumePolicy::Enable));
    }

    #[test]
    fn reply_headers_of_resume_mode() {
        let r = req(&[
            ("X-DTLS-Master-Secret", SECRET),
            ("X-DTLS-CipherSuite", "OC-DTLS1_2-AES256-GCM"),
        ]);
        let h = reply_headers(
            &[0xab; 32],
            443,
            Some(20),
            None,
            &choose(&r, ResumePolicy::Enable),
            1406,
        );
        let want = format!(
            "X-DTLS-Session-ID: {}\r\nX-DTLS-Port: 443\r\nX-DTLS-Keepalive: 20\r\n\
             X-DTLS-CipherSuite: OC-DTLS1_2-AES256-GCM\r\nX-DTLS-MTU: 1406\r\n",
            "ab".repeat(32)
        );
        assert_eq!(h, want);
        assert_eq!(
            reply_headers(&[0; 32], 443, None, None, &DtlsMode::Psk, 1),
            ""
        );
    }

    #[test]
    fn asa_names_of_suites() {
        assert_eq!(
            asa_algorithms("AES256-GCM-SHA384"),
            ("AES-GCM-256", "SHA384")
        );
        assert_eq!(
            asa_algorithms("ECDHE-RSA-AES128-GCM-SHA256"),
            ("AES-GCM-128", "SHA256")
        );
        assert_eq!(
            asa_algorithms("PSK-CHACHA20-POLY1305"),
            ("CHACHA20-POLY1305", "SHA256")
        );
        assert_eq!(asa_algorithms("NULL"), ("unknown", "unknown"));
    }

    #[test]
    fn mtu_for_gcm_matches_ocserv() {
        assert_eq!(dtls_mtu(1500 - 28, 1500), 1434);
        assert_eq!(dtls_mtu(1500 - 28, 1406), 1406);
        assert_eq!(dtls_mtu(10, 1406), 0);
    }

    #[test]
    fn session_der_layout() {
        let der = session_der(
            ResumeSuite::Aes256GcmSha384,
            &[0xaa; 32],
            &[0xbb; 48],
            0x6000_0000,
            7200,
        );
        let body = &der[2..];
        assert_eq!(der[0], 0x30);
        assert_eq!(usize::from(der[1]), body.len());
        assert_eq!(&body[..3], &[0x02, 0x01, 0x01]);
        assert_eq!(&body[3..8], &[0x02, 0x03, 0x00, 0xfe, 0xfd]);
        assert_eq!(&body[8..12], &[0x04, 0x02, 0x00, 0x9d]);
        assert_eq!(&body[12..14], &[0x04, 0x20]);
        assert_eq!(&body[46..48], &[0x04, 0x30]);
        assert_eq!(
            &body[96..],
            &[
                0xa1, 6, 0x02, 4, 0x60, 0, 0, 0, 0xa2, 4, 0x02, 2, 0x1c, 0x20
            ]
        );
    }
}

//! HTTP/1.1 on the TLS control channel, client side: the auth POSTs and the
//! CONNECT with openconnect 9.01's headers (protocol.md sections 1 and 2), and
//! a response-head parser (`httparse`). Sans-IO.

use std::fmt::Write as _;

/// Largest response head we accept.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest auth body we accept (the headend caps XML at 32 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
}

impl ResponseHead {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("Content-Length")?.trim().parse().ok()
    }

    /// The value of `Set-Cookie: webvpn=VALUE` (openconnect splits at `;`).
    pub fn webvpn_cookie(&self) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Set-Cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.trim().strip_prefix("webvpn="))
            .find(|v| !v.is_empty())
    }
}

/// `Ok(None)`: need more bytes.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Ok(Some(ResponseHead {
            status: r.code.unwrap_or(0),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            head_len: n,
        })),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            Err("response head too long".into())
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("bad response head: {e}")),
    }
}

/// Headers sent with every auth POST (openconnect `http.c`/`auth.c`).
pub struct AuthHeaders {
    /// base64 DER SubjectPublicKeyInfo of the STRAP key (one per process).
    pub strap_pubkey: String,
    pub strap_dh_pubkey: String,
}

pub fn auth_post(host: &str, strap: &AuthHeaders, body: &str) -> Vec<u8> {
    let mut r = String::with_capacity(512 + body.len());
    r.push_str("POST / HTTP/1.1\r\n");
    let _ = write!(r, "Host: {host}\r\n");
    r.push_str("User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n");
    r.push_str("Accept: */*\r\nAccept-Encoding: identity\r\n");
    r.push_str("X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n");
    let _ = write!(
        r,
        "X-AnyConnect-STRAP-Pubkey: {}\r\nX-AnyConnect-STRAP-DH-Pubkey: {}\r\n",
        strap.strap_pubkey, strap.strap_dh_pubkey
    );
    r.push_str("X-Support-HTTP-Auth: true\r\n");
    r.push_str("Content-Type: application/xml; charset=utf-8\r\n");
    let _ = write!(r, "Content-Length: {}\r\n\r\n", body.len());
    r.push_str(body);
    r.into_bytes()
}

/// The CONNECT; the `X-DTLS-*` lines only when DTLS is wanted (openconnect
/// omits them with `--no-dtls`).
/// `previous`: the address of the tunnel this CONNECT replaces (a reconnect);
/// openconnect sends it as `X-CSTP-Address` so the server keeps it.
pub fn connect_request(
    host: &str,
    cookie: &str,
    mtu: u16,
    dtls: bool,
    previous: Option<std::net::Ipv4Addr>,
) -> Vec<u8> {
    let mut r = String::with_capacity(1024);
    r.push_str("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n");
    let _ = write!(r, "Host: {host}\r\n");
    r.push_str("User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n");
    let _ = write!(r, "Cookie: webvpn={cookie}\r\n");
    r.push_str("X-CSTP-Version: 1\r\nX-CSTP-Hostname: loadgen\r\n");
    r.push_str("X-CSTP-Accept-Encoding: oc-lz4,lzs\r\n");
    let _ = write!(r, "X-CSTP-Base-MTU: 1500\r\nX-CSTP-MTU: {mtu}\r\n");
    r.push_str("X-CSTP-Address-Type: IPv4\r\n");
    if let Some(a) = previous {
        let _ = write!(r, "X-CSTP-Address: {a}\r\n");
    }
    if dtls {
        r.push_str(
            "X-DTLS-CipherSuite: PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC-DTLS1_2-AES128-GCM\r\n",
        );
        r.push_str("X-DTLS12-CipherSuite: ECDHE-RSA-AES256-GCM-SHA384:AES256-SHA\r\n");
        r.push_str("X-DTLS-Accept-Encoding: oc-lz4,lzs\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// What the CONNECT reply gave the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub address: std::net::Ipv4Addr,
    pub mtu: u16,
    pub keepalive_secs: Option<u64>,
    pub dpd_secs: Option<u64>,
    /// App-ID bytes and UDP port, when the server offers DTLS.
    pub dtls: Option<(Vec<u8>, u16)>,
}

/// Reads the tunnel parameters from a `200` CONNECT reply.
pub fn parse_tunnel(head: &ResponseHead) -> Result<Tunnel, String> {
    if head.status != 200 {
        let why = head.header("X-Reason").unwrap_or("");
        return Err(format!("CONNECT refused: HTTP {} {why}", head.status));
    }
    let address = head
        .header("X-CSTP-Address")
        .ok_or("CONNECT reply without X-CSTP-Address")?
        .trim()
        .parse()
        .map_err(|e| format!("bad X-CSTP-Address: {e}"))?;
    let mtu = head
        .header("X-CSTP-MTU")
        .ok_or("CONNECT reply without X-CSTP-MTU")?
        .trim()
        .parse()
        .map_err(|e| format!("bad X-CSTP-MTU: {e}"))?;
    let secs = |n: &str| head.header(n).and_then(|v| v.trim().parse().ok());
    let app_id = head.header("X-DTLS-App-ID").and_then(hex_decode);
    let port = head
        .header("X-DTLS-Port")
        .and_then(|p| p.trim().parse().ok());
    Ok(Tunnel {
        address,
        mtu,
        keepalive_secs: secs("X-CSTP-Keepalive"),
        dpd_secs: secs("X-CSTP-DPD"),
        dtls: app_id.zip(port),
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use headend::proto::http::{RequestParser, Response};

    #[test]
    fn headend_parses_our_requests() {
        let strap = AuthHeaders {
            strap_pubkey: "AAAA".into(),
            strap_dh_pubkey: "BBBB".into(),
        };
        let mut p = RequestParser::new();
        let body = "<config-auth/>";
        let req = p
            .parse(&auth_post("198.18.0.1", &strap, body))
            .unwrap()
            .unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.header("X-Aggregate-Auth"), Some("1"));
        assert_eq!(req.body, body.as_bytes());

        let mut p = RequestParser::new();
        let req = p
            .parse(&connect_request("198.18.0.1", "TOK", 1390, true, None))
            .unwrap()
            .unwrap();
        assert_eq!(req.method, "CONNECT");
        assert_eq!(req.cookie("webvpn"), Some("TOK"));
        assert!(
            req.header("X-DTLS-CipherSuite")
                .unwrap()
                .contains("PSK-NEGOTIATE")
        );
        let mut p = RequestParser::new();
        let req = p
            .parse(&connect_request("h", "TOK", 1390, false, None))
            .unwrap()
            .unwrap();
        assert_eq!(req.header("X-DTLS-CipherSuite"), None);
        assert_eq!(req.header("X-CSTP-Address"), None);
        let mut p = RequestParser::new();
        let req = p
            .parse(&connect_request(
                "h",
                "TOK",
                1390,
                false,
                Some("198.18.112.10".parse().unwrap()),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(req.header("X-CSTP-Address"), Some("198.18.112.10"));
    }

    #[test]
    fn response_heads_and_tunnel_parameters() {
        let reply = b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Version: 1\r\n\
X-CSTP-Address: 198.18.100.10\r\nX-CSTP-MTU: 1399\r\nX-CSTP-Keepalive: 20\r\n\
X-CSTP-DPD: 30\r\nX-DTLS-App-ID: 00ff10\r\nX-DTLS-Port: 443\r\n\r\nSTF";
        assert_eq!(parse_response_head(&reply[..20]).unwrap(), None);
        let head = parse_response_head(reply).unwrap().unwrap();
        assert_eq!(head.head_len, reply.len() - 3);
        let t = parse_tunnel(&head).unwrap();
        assert_eq!(t.address.to_string(), "198.18.100.10");
        assert_eq!(t.mtu, 1399);
        assert_eq!(t.keepalive_secs, Some(20));
        assert_eq!(t.dtls, Some((vec![0, 0xff, 0x10], 443)));

        let refused = b"HTTP/1.1 503 Service Unavailable\r\nX-Reason: limit\r\n\r\n";
        let head = parse_response_head(refused).unwrap().unwrap();
        assert!(parse_tunnel(&head).unwrap_err().contains("503 limit"));
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn webvpn_cookie_from_headend_response() {
        let r = Response::new(200, "OK")
            .header("Set-Cookie", "webvpncontext=x; Secure")
            .header("Set-Cookie", "webvpn=ABC; Secure; HttpOnly")
            .body("x");
        let bytes = r.to_bytes();
        let head = parse_response_head(&bytes).unwrap().unwrap();
        assert_eq!(head.webvpn_cookie(), Some("ABC"));
        assert_eq!(head.content_length(), Some(1));
    }

    #[test]
    fn bad_app_ids_mean_no_dtls() {
        assert_eq!(hex_decode("0g"), None);
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode(&"00".repeat(33)), None);
        assert_eq!(hex_decode("0a0B"), Some(vec![10, 11]));
    }
}

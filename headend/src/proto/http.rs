//! HTTP/1.1 request framing for the TLS control channel (protocol.md §1, §2, §4).
//!
//! We parse request heads with `httparse` and write replies by hand: openconnect
//! matches `X-CSTP-` / `X-DTLS-` header names case-sensitively (cstp.c uses
//! `strncmp`), so a library that lower-cases names breaks the CONNECT reply.
//!
//! [`RequestParser`] is fed bytes as they arrive and yields a [`Request`] once
//! the head and a `Content-Length` body are complete. Bytes after a request stay
//! buffered: a pipelined request, or the CSTP stream that follows `CONNECT`
//! (take it with [`RequestParser::take_remaining`]). Slow clients are the
//! caller's business: [`RequestParser::has_partial_request`] says when a header
//! timeout should be running.

use thiserror::Error;

/// Largest request head (request line + headers + blank line) we accept.
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Largest request body (the auth XML is a few hundred bytes).
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Size limits applied by [`RequestParser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_head: usize,
    pub max_headers: usize,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: MAX_HEAD_LEN,
            max_headers: MAX_HEADERS,
            max_body: MAX_BODY_LEN,
        }
    }
}

/// Why a request was refused. Each maps to the status we answer with before
/// closing the connection ([`HttpError::status`], [`HttpError::to_response`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("more than {limit} request headers")]
    TooManyHeaders { limit: usize },
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("request body of {len} bytes exceeds the limit of {limit}")]
    BodyTooLarge { len: u64, limit: usize },
    #[error("more than {limit} bytes buffered without a complete request")]
    BufferFull { limit: usize },
    #[error("chunked request bodies are not supported")]
    ChunkedBody,
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
}

impl HttpError {
    /// The HTTP status code that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::BadContentLength => 400,
            HttpError::BodyTooLarge { .. } | HttpError::BufferFull { .. } => 413,
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::ChunkedBody | HttpError::UnsupportedTransferEncoding => 501,
        }
    }

    /// The reason phrase for [`HttpError::status`].
    pub fn reason(&self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            _ => "Not Implemented",
        }
    }

    /// A complete error reply: empty body, `Connection: close` (the parser is
    /// unusable after an error, so the caller closes the connection).
    pub fn to_response(&self) -> Response {
        Response::new(self.status(), self.reason())
            .header("Connection", "close")
            .body(Vec::new())
    }
}

fn map_httparse(e: httparse::Error, limits: &Limits) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders {
            limit: limits.max_headers,
        },
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Status => HttpError::Malformed("invalid status"),
        httparse::Error::Token => HttpError::Malformed("invalid token"),
        httparse::Error::Version => HttpError::Malformed("invalid HTTP version"),
    }
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0 (httparse accepts nothing else).
    pub version_minor: u8,
    /// Header names as sent; values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).next()
    }

    /// Every header with this name, in order (ASCII case-insensitive).
    pub fn headers_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Value of cookie `name` from any `Cookie:` header. Pairs are split at `;`
    /// and at the first `=`, then trimmed, as openconnect itself does; names
    /// compare case-sensitively.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers_named("cookie")
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim())
    }

    /// Whether the client asked to close after this request: HTTP/1.1 with
    /// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
    pub fn wants_close(&self) -> bool {
        let has_token = |tok: &str| {
            self.headers_named("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(tok))
        };
        if self.version_minor == 0 {
            !has_token("keep-alive")
        } else {
            has_token("close")
        }
    }
}

/// A parsed head waiting for its body.
#[derive(Debug)]
struct PendingHead {
    method: String,
    path: String,
    version_minor: u8,
    headers: Vec<(String, String)>,
    head_len: usize,
    body_len: usize,
}

/// Incremental request parser; see the module docs.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    /// Every byte not yet returned as part of a [`Request`].
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no end-of-head marker (saves re-parsing the head
    /// on every byte a slow client sends).
    scanned: usize,
    pending: Option<PendingHead>,
    /// Set after an error; the connection must be closed.
    failed: Option<HttpError>,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestParser {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            scanned: 0,
            pending: None,
            failed: None,
        }
    }

    /// Most bytes we buffer while no complete request is available.
    fn buffer_limit(&self) -> usize {
        self.limits.max_head.saturating_add(self.limits.max_body)
    }

    /// Append received bytes. Fails once more than `max_head + max_body` bytes
    /// are buffered (the caller should be draining with [`Self::next_request`]).
    pub fn feed(&mut self, data: &[u8]) -> Result<(), HttpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let limit = self.buffer_limit();
        if self.buf.len().saturating_add(data.len()) > limit {
            return Err(self.fail(HttpError::BufferFull { limit }));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// `feed` then `next_request`.
    pub fn parse(&mut self, data: &[u8]) -> Result<Option<Request>, HttpError> {
        self.feed(data)?;
        self.next_request()
    }

    /// The next complete request, if the buffer holds one. Call repeatedly to
    /// drain pipelined requests. After an error the parser stays failed.
    pub fn next_request(&mut self) -> Result<Option<Request>, HttpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.pending.is_none() {
            match self.parse_head() {
                Ok(Some(head)) => self.pending = Some(head),
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            }
        }
        let Some(head) = &self.pending else {
            return Ok(None);
        };
        let total = head.head_len.saturating_add(head.body_len);
        if self.buf.len() < total {
            return Ok(None);
        }
        let Some(head) = self.pending.take() else {
            return Ok(None);
        };
        let body = self
            .buf
            .get(head.head_len..total)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.buf.drain(..total);
        self.scanned = 0;
        Ok(Some(Request {
            method: head.method,
            path: head.path,
            version_minor: head.version_minor,
            headers: head.headers,
            body,
        }))
    }

    /// True while some bytes of an unfinished request are buffered (run the
    /// header / body timeout then).
    pub fn has_partial_request(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Bytes received but not returned in a [`Request`]; after a `CONNECT`
    /// these are the first bytes of the CSTP stream.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Take the buffered bytes (see [`Self::buffered`]) and reset the parser.
    pub fn take_remaining(&mut self) -> Vec<u8> {
        self.scanned = 0;
        self.pending = None;
        std::mem::take(&mut self.buf)
    }

    fn fail(&mut self, e: HttpError) -> HttpError {
        self.failed = Some(e.clone());
        e
    }

    /// Parse the head once an end-of-head marker is buffered.
    fn parse_head(&mut self) -> Result<Option<PendingHead>, HttpError> {
        loop {
            let Some(end) = find_head_end(&self.buf, self.scanned) else {
                if self.buf.len() > self.limits.max_head {
                    return Err(HttpError::HeadTooLarge {
                        limit: self.limits.max_head,
                    });
                }
                // Keep 3 bytes: a marker may straddle this and the next feed.
                self.scanned = self.scanned.max(self.buf.len().saturating_sub(3));
                return Ok(None);
            };
            let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&self.buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    if head_len > self.limits.max_head {
                        return Err(HttpError::HeadTooLarge {
                            limit: self.limits.max_head,
                        });
                    }
                    return self.finish_head(&req, head_len).map(Some);
                }
                Ok(httparse::Status::Partial) => {
                    // The marker was leading blank lines, which httparse skips
                    // (RFC 9112 §2.2); look for the next one.
                    if end > self.limits.max_head {
                        return Err(HttpError::HeadTooLarge {
                            limit: self.limits.max_head,
                        });
                    }
                    self.scanned = end;
                }
                Err(e) => return Err(map_httparse(e, &self.limits)),
            }
        }
    }

    fn finish_head(
        &self,
        req: &httparse::Request<'_, '_>,
        head_len: usize,
    ) -> Result<PendingHead, HttpError> {
        let method = req.method.ok_or(HttpError::Malformed("no method"))?;
        let path = req.path.ok_or(HttpError::Malformed("no path"))?;
        let version_minor = req.version.ok_or(HttpError::Malformed("no version"))?;
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();

        // No chunked bodies: openconnect never sends one, and refusing them
        // (and Transfer-Encoding generally) closes the request-smuggling door.
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("transfer-encoding") {
                let chunked = v
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("chunked"));
                return Err(if chunked {
                    HttpError::ChunkedBody
                } else {
                    HttpError::UnsupportedTransferEncoding
                });
            }
        }

        let mut content_length: Option<u64> = None;
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(v)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::BadContentLength);
                }
                content_length = Some(n);
            }
        }
        let len = content_length.unwrap_or(0);
        let body_len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= self.limits.max_body)
            .ok_or(HttpError::BodyTooLarge {
                len,
                limit: self.limits.max_body,
            })?;

        Ok(PendingHead {
            method: method.to_owned(),
            path: path.to_owned(),
            version_minor,
            headers,
            head_len,
            body_len,
        })
    }
}

/// Index just past the first `\n\r\n` or `\n\n` at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    tail.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        let rest = tail.get(i + 1..)?;
        if rest.starts_with(b"\n") {
            Some(from + i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(from + i + 3)
        } else {
            None
        }
    })
}

/// Strict `Content-Length`: 1..=19 ASCII digits, optional surrounding blanks.
fn parse_content_length(v: &str) -> Result<u64, HttpError> {
    let v = v.trim_matches([' ', '\t']);
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadContentLength);
    }
    v.parse().map_err(|_| HttpError::BadContentLength)
}

/// A reply written by hand: header names keep their case exactly.
///
/// Always `HTTP/1.1` (openconnect requires `HTTP/1.1 200 ` on CONNECT).
/// `Content-Length` is added whenever [`Response::body`] was called, even for an
/// empty body (openconnect otherwise reads until close); a CONNECT reply never
/// calls `body`. `Connection` handling is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Response {
    pub fn new(status: u16, reason: &str) -> Self {
        Self {
            status,
            reason: sanitize_value(reason),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Add a header. CR, LF and NUL (and in names also `:` and blanks) are
    /// replaced so that no value can inject a header line.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((sanitize_name(name), sanitize_value(value)));
        self
    }

    /// Set the body; `Content-Length` is then written by [`Self::to_bytes`] and
    /// any `Content-Length` header added by hand is dropped.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Append the serialised reply to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::fmt::Write as _;
        let mut head = String::with_capacity(64 + self.headers.len() * 32);
        let _ = write!(head, "HTTP/1.1 {:03} {}\r\n", self.status, self.reason);
        for (k, v) in &self.headers {
            if self.body.is_some() && k.eq_ignore_ascii_case("content-length") {
                continue;
            }
            let _ = write!(head, "{k}: {v}\r\n");
        }
        if let Some(body) = &self.body {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        if let Some(body) = &self.body {
            out.extend_from_slice(body);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

fn sanitize_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '\r' | '\n' | '\0') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn sanitize_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_control() || c == ':' || c == ' ' {
                '-'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CONNECT openconnect 9.01 sends (cstp.c start_cstp_connection).
    const CONNECT: &[u8] = b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\
Host: vpn.example.com\r\n\
User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n\
Cookie: webvpn=ABCDEF0123\r\n\
X-CSTP-Version: 1\r\n\
X-CSTP-Hostname: client\r\n\
X-CSTP-Accept-Encoding: oc-lz4,lzs\r\n\
X-CSTP-Base-MTU: 1500\r\n\
X-CSTP-MTU: 1399\r\n\
X-CSTP-Address-Type: IPv6,IPv4\r\n\
X-CSTP-Full-IPv6-Capability: true\r\n\
X-DTLS-Master-Secret: 00112233\r\n\
X-DTLS-CipherSuite: PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM\r\n\
\r\n";

    fn auth_post(body: &str) -> Vec<u8> {
        format!(
            "POST / HTTP/1.1\r\nHost: vpn.example.com\r\n\
User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n\
Cookie: webvpncontext=ctx1; other = two=2 ;noeq\r\n\
X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n\
Content-Type: application/xml; charset=utf-8\r\n\
Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn connect_then_cstp_bytes_left_over() {
        let mut p = RequestParser::new();
        let mut input = CONNECT.to_vec();
        input.extend_from_slice(b"STF\x01\x00\x00\x07\x00");
        let req = p.parse(&input).unwrap().unwrap();
        assert_eq!(req.method, "CONNECT");
        assert_eq!(req.path, "/CSCOSSLC/tunnel");
        assert_eq!(req.version_minor, 1);
        assert_eq!(req.header("x-cstp-mtu"), Some("1399"));
        assert_eq!(req.header("X-CSTP-Base-MTU"), Some("1500"));
        assert_eq!(req.cookie("webvpn"), Some("ABCDEF0123"));
        assert!(req.body.is_empty());
        assert!(!req.wants_close());
        assert_eq!(p.buffered(), b"STF\x01\x00\x00\x07\x00");
        assert_eq!(p.take_remaining(), b"STF\x01\x00\x00\x07\x00".to_vec());
        assert!(!p.has_partial_request());
    }

    #[test]
    fn byte_by_byte_post_with_body() {
        let input = auth_post("<config-auth/>");
        let mut p = RequestParser::new();
        let mut got = None;
        for (i, b) in input.iter().enumerate() {
            let r = p.parse(std::slice::from_ref(b)).unwrap();
            if i + 1 < input.len() {
                assert!(r.is_none(), "complete too early at {i}");
                assert!(p.has_partial_request());
            } else {
                got = r;
            }
        }
        let req = got.unwrap();
        assert_eq!(req.body, b"<config-auth/>");
        assert_eq!(req.cookie("webvpncontext"), Some("ctx1"));
        assert_eq!(req.cookie("other"), Some("two=2"));
        assert_eq!(req.cookie("noeq"), None);
        assert_eq!(req.cookie("Webvpncontext"), None);
        assert!(p.buffered().is_empty());
    }

    #[test]
    fn pipelined_requests() {
        let mut input = auth_post("a");
        input.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        let mut p = RequestParser::new();
        p.feed(&input).unwrap();
        let a = p.next_request().unwrap().unwrap();
        assert_eq!(a.body, b"a");
        let b = p.next_request().unwrap().unwrap();
        assert_eq!(b.method, "GET");
        assert_eq!(b.version_minor, 0);
        assert!(b.wants_close());
        assert_eq!(p.next_request().unwrap(), None);
    }

    #[test]
    fn bare_lf_and_leading_blank_lines() {
        let mut p = RequestParser::new();
        let r = p.parse(b"\r\n\r\nGET /x HTTP/1.1\nHost: a\n\n").unwrap();
        assert_eq!(r.unwrap().path, "/x");
    }

    #[test]
    fn chunked_rejected_501() {
        let mut p = RequestParser::new();
        let e = p
            .parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap_err();
        assert_eq!(e, HttpError::ChunkedBody);
        assert_eq!(e.status(), 501);
        // Stays failed.
        assert_eq!(p.next_request().unwrap_err(), HttpError::ChunkedBody);
        let e = RequestParser::new()
            .parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")
            .unwrap_err();
        assert_eq!(e, HttpError::UnsupportedTransferEncoding);
    }

    #[test]
    fn head_too_large_431() {
        let mut p = RequestParser::new();
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD_LEN + 10, b'a');
        let e = p.parse(&big).unwrap_err();
        assert_eq!(
            e,
            HttpError::HeadTooLarge {
                limit: MAX_HEAD_LEN
            }
        );
        assert_eq!(e.status(), 431);

        // Complete but over the limit.
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD_LEN + 10, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        let e = RequestParser::new().parse(&big).unwrap_err();
        assert_eq!(e.status(), 431);
    }

    #[test]
    fn too_many_headers_431() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let e = RequestParser::new().parse(&req).unwrap_err();
        assert_eq!(e, HttpError::TooManyHeaders { limit: MAX_HEADERS });
        assert_eq!(e.status(), 431);
    }

    #[test]
    fn body_too_large_413() {
        let req = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_LEN + 1
        );
        let e = RequestParser::new().parse(req.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 413);
        let e = RequestParser::new()
            .parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n")
            .unwrap_err();
        assert_eq!(e, HttpError::BadContentLength);
    }

    #[test]
    fn bad_content_length_400() {
        for cl in ["-1", "1,1", "", "0x10", "+5"] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            let e = RequestParser::new().parse(req.as_bytes()).unwrap_err();
            assert_eq!(e, HttpError::BadContentLength, "{cl}");
            assert_eq!(e.status(), 400);
        }
        let e = RequestParser::new()
            .parse(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
            .unwrap_err();
        assert_eq!(e, HttpError::BadContentLength);
        // Identical duplicates are fine.
        let r = RequestParser::new()
            .parse(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na")
            .unwrap();
        assert_eq!(r.unwrap().body, b"a");
    }

    #[test]
    fn malformed_400() {
        for bad in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n",
        ] {
            let e = RequestParser::new().parse(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn buffer_full() {
        let mut p = RequestParser::with_limits(Limits {
            max_head: 64,
            max_headers: 4,
            max_body: 64,
        });
        assert!(p.feed(&[b'a'; 100]).is_ok());
        assert_eq!(
            p.feed(&[b'a'; 100]).unwrap_err(),
            HttpError::BufferFull { limit: 128 }
        );
    }

    #[test]
    fn response_keeps_case_and_adds_length() {
        let r = Response::new(200, "CONNECTED")
            .header("X-CSTP-Version", "1")
            .header("X-CSTP-MTU", "1399")
            .header("X-DTLS-App-ID", "ab");
        assert_eq!(
            r.to_bytes(),
            b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Version: 1\r\nX-CSTP-MTU: 1399\r\nX-DTLS-App-ID: ab\r\n\r\n"
        );
        let r = Response::new(200, "OK")
            .header("Content-Type", "text/xml")
            .header("Content-Length", "999")
            .body("<x/>");
        assert_eq!(
            r.to_bytes(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 4\r\n\r\n<x/>"
        );
        let r = Response::new(404, "Not Found").body(Vec::new());
        assert_eq!(
            r.to_bytes(),
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn response_header_injection_neutralised() {
        let r = Response::new(200, "OK\r\nX: y")
            .header("Set-Cookie", "webvpn=a\r\nX-Evil: 1")
            .header("Bad:Name\n", "v");
        let s = String::from_utf8(r.to_bytes()).unwrap();
        assert_eq!(s.matches("\r\n").count(), 4, "{s}");
        assert!(s.contains("Set-Cookie: webvpn=a  X-Evil: 1\r\n"));
        assert!(s.contains("Bad-Name-: v\r\n"));
    }

    #[test]
    fn error_response() {
        let r = HttpError::ChunkedBody.to_response().to_bytes();
        assert_eq!(
            r,
            b"HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }
}

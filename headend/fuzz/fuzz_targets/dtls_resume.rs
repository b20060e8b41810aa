#![no_main]
//! Resume-mode DTLS (issue 14): the CONNECT headers that choose the mode
//! (`X-DTLS-Master-Secret`, `X-DTLS-CipherSuite`, `X-DTLS12-CipherSuite`) are
//! untrusted, and so is every ClientHello routed by its session id. Arbitrary
//! bytes as a request head, then as a datagram: no panic, and what comes out is
//! well-formed.
use headend::proto::dtls_hello::client_hello_session_id;
use headend::proto::dtls_resume::{DtlsMode, ResumePolicy, choose, reply_headers};
use headend::proto::http::RequestParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The demux: a 32-byte session id is the only thing that can select a session.
    if let Some(sid) = client_hello_session_id(data) {
        assert!((1..=32).contains(&sid.len()));
        let _ = <[u8; 32]>::try_from(sid);
    }
    let mut head = b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n".to_vec();
    head.extend_from_slice(data);
    head.extend_from_slice(b"\r\n\r\n");
    let Ok(Some(req)) = RequestParser::new().parse(&head) else {
        return;
    };
    for policy in [ResumePolicy::Enable, ResumePolicy::Disable, ResumePolicy::Always] {
        let mode = choose(&req, policy);
        let h = reply_headers(&[0x5a; 32], 443, Some(20), Some(30), &mode, 1400);
        match mode {
            DtlsMode::Resume { .. } => {
                assert!(policy != ResumePolicy::Disable);
                assert!(h.contains(&format!("X-DTLS-Session-ID: {}\r\n", "5a".repeat(32))));
                assert!(!h.contains("App-ID"));
                assert!(h.chars().all(|c| c.is_ascii() && (c >= ' ' || c == '\r' || c == '\n')));
            }
            DtlsMode::Psk | DtlsMode::None => assert!(h.is_empty()),
        }
    }
});

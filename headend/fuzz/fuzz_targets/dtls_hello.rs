#![no_main]
//! The ClientHello peek runs on every datagram from an unknown address.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = headend::proto::dtls_hello::is_client_hello(data);
    if let Some(sid) = headend::proto::dtls_hello::client_hello_session_id(data) {
        assert!((1..=32).contains(&sid.len()));
    }
});

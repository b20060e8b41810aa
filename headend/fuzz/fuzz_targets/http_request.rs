//! Fuzz the control-channel request framing: arbitrary bytes fed in arbitrary
//! chunk sizes must never panic, and the parser must never buffer past its limit.
#![no_main]

use headend::proto::http::{Limits, RequestParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let limits = Limits::default();
    let mut parser = RequestParser::with_limits(limits);
    for piece in input.chunks(chunk) {
        if parser.feed(piece).is_err() {
            break;
        }
        loop {
            match parser.next_request() {
                Ok(Some(req)) => {
                    assert!(req.body.len() <= limits.max_body);
                    let _ = req.header("content-type");
                    let _ = req.cookie("webvpn");
                    let _ = req.wants_close();
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.to_response().to_bytes();
                    return;
                }
            }
        }
        assert!(parser.buffered().len() <= limits.max_head + limits.max_body);
    }
    let _ = parser.take_remaining();
});

//! Fuzz CSTP deframing and the session state machine: arbitrary bytes, chunk
//! sizes and clock steps must never panic.
#![no_main]

use std::time::{Duration, Instant};

use headend::proto::cstp::{CstpConfig, CstpSession, FrameAction, FrameDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[chunk, max_hi, step], input)) = data.split_first_chunk::<3>() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new(usize::from(max_hi) << 8);
    let t0 = Instant::now();
    let secs = |n: u64| Some(Duration::from_secs(n));
    let mut session = CstpSession::new(
        CstpConfig {
            dpd_interval: secs(30),
            keepalive: secs(20),
            idle_timeout: secs(600),
            session_timeout: secs(3600),
        },
        t0,
    );
    let mut now = t0;
    for piece in input.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    now += Duration::from_secs(u64::from(step % 64));
                    if let FrameAction::Deliver(p) =
                        session.on_frame(now, frame.kind, frame.payload)
                    {
                        session.on_data_sent(now, p.len(), true);
                    }
                    if let Some(deadline) = session.poll_timeout() {
                        let _ = session.on_timeout(deadline);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

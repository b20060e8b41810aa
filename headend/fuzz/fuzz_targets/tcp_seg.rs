//! Fuzz the inner TCP header reader and the learnt pacing rate it feeds
//! (`proto::tcp_seg`, `dtls_pace_rate`): arbitrary packets from the client
//! and to it, with arbitrary clock steps, must never panic.
#![no_main]

use std::time::{Duration, Instant};

use headend::dtls_pace_rate::LearntRate;
use headend::proto::tcp_seg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut rate = LearntRate::new(375_000_000, t0);
    // Records: [control byte][length byte][packet]; the control byte's low
    // bit says the direction, the rest the clock step in 100 us.
    let mut rest = data;
    while let Some((&[ctl, len], tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(len).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        let _ = tcp_seg::parse(pkt);
        now += Duration::from_micros(u64::from(ctl >> 1) * 100);
        if ctl & 1 == 0 {
            rate.on_down(pkt);
        } else {
            rate.on_up(now, pkt);
        }
        let _ = rate.rate(now);
    }
    let _ = tcp_seg::parse(data);
});

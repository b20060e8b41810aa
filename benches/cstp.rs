//! CSTP frame codec throughput: encoding a batch of DATA frames into headroom and
//! decoding a stream of them, as the tunnel loop does per TLS read/flush.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headend::proto::cstp::{FrameDecoder, FrameType, HEADER_LEN, encode_header, encode_into};

const PACKETS: usize = 64;
const PACKET_LEN: usize = 1400;

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("cstp");
    g.throughput(Throughput::Elements(PACKETS as u64));
    let mut frames = vec![0u8; PACKETS * (HEADER_LEN + PACKET_LEN)];
    g.bench_function("encode_header_64x1400", |b| {
        b.iter(|| {
            for f in frames.chunks_exact_mut(HEADER_LEN + PACKET_LEN) {
                let mut hdr = [0u8; HEADER_LEN];
                encode_header(FrameType::Data, PACKET_LEN as u16, &mut hdr);
                f[..HEADER_LEN].copy_from_slice(&hdr);
            }
            black_box(&frames);
        })
    });
    let mut stream = Vec::new();
    for _ in 0..PACKETS {
        encode_into(FrameType::Data, &[0x45; PACKET_LEN], &mut stream).expect("frame fits");
    }
    g.bench_function("decode_64x1400", |b| {
        let mut dec = FrameDecoder::default();
        b.iter(|| {
            dec.feed(&stream);
            let mut n = 0;
            while let Ok(Some(f)) = dec.next_frame() {
                n += f.payload.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);

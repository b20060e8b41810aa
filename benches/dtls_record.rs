//! DTLS 1.2 application-data records of 1400 bytes: sealed and opened by our
//! code (`proto::dtls_record`, in place) versus OpenSSL's `SSL_write` /
//! `SSL_read` over the headend's memory datagram BIO (`dtls::DatagramIo`, what
//! the tunnel uses today). Both sides come from one in-memory PSK handshake,
//! so the keys are the ones OpenSSL negotiated.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use headend::dtls::DatagramIo;
use headend::dtls_keys::{client_record_layer, server_record_layer};
use headend::proto::dtls_record::{FIRST_EPOCH, MAX_HEADROOM, Opened, RecordSealer, TAILROOM};
use openssl::ssl::{
    ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVersion,
};

const PAYLOAD: usize = 1400;

type Peer = SslStream<DatagramIo>;

fn peer(cipher: &str, server: bool) -> Peer {
    let mut b = SslContextBuilder::new(SslMethod::dtls()).expect("ctx");
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))
        .expect("min");
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))
        .expect("max");
    b.set_cipher_list(cipher).expect("cipher");
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
    if server {
        b.set_psk_server_callback(|_, _, out| {
            out[..32].copy_from_slice(&[7; 32]);
            Ok(32)
        });
    } else {
        b.set_psk_client_callback(|_, _, id, out| {
            id[..4].copy_from_slice(b"psk\0");
            out[..32].copy_from_slice(&[7; 32]);
            Ok(32)
        });
    }
    let mut ssl = Ssl::new(&b.build()).expect("ssl");
    ssl.set_mtu(1500).expect("mtu");
    if server {
        ssl.set_accept_state();
    } else {
        ssl.set_connect_state();
    }
    SslStream::new(ssl, DatagramIo::default()).expect("stream")
}

fn done(p: &mut Peer) -> bool {
    match p.do_handshake() {
        Ok(()) => true,
        Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => false,
        Err(e) => panic!("handshake: {e}"),
    }
}

/// Moves each datagram `from` wrote into `to`, one `do_handshake` per datagram.
fn deliver(from: &mut Peer, to: &mut Peer) -> bool {
    let mut up = false;
    for d in from.get_mut().out.take_datagrams() {
        to.get_mut().set_inbound(&d);
        up |= done(to);
    }
    up
}

fn pair(cipher: &str) -> (Peer, Peer) {
    let (mut s, mut c) = (peer(cipher, true), peer(cipher, false));
    let (mut s_up, mut c_up) = (false, done(&mut c));
    for _ in 0..10 {
        s_up |= deliver(&mut c, &mut s);
        c_up |= deliver(&mut s, &mut c);
        if s_up && c_up {
            return (s, c);
        }
    }
    panic!("{cipher}: no handshake");
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dtls_record_1400");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    for (name, cipher) in [
        ("aes128gcm", "PSK-AES128-GCM-SHA256"),
        ("aes256gcm", "PSK-AES256-GCM-SHA384"),
        ("chacha20poly1305", "PSK-CHACHA20-POLY1305"),
    ] {
        let (mut server, client) = pair(cipher);
        let (mut sealer, mut opener) =
            server_record_layer(server.ssl(), FIRST_EPOCH).expect("AEAD suite");
        let (mut client_sealer, _) =
            client_record_layer(client.ssl(), FIRST_EPOCH).expect("AEAD suite");
        let payload = vec![0x45u8; PAYLOAD];

        // Seal: the payload already sits in the batch buffer with headroom.
        let mut buf = vec![0u8; MAX_HEADROOM + PAYLOAD + TAILROOM];
        buf[MAX_HEADROOM..MAX_HEADROOM + PAYLOAD].copy_from_slice(&payload);
        g.bench_function(format!("{name}/seal_ours"), |b| {
            b.iter(|| {
                let r = sealer
                    .seal(&mut buf, MAX_HEADROOM..MAX_HEADROOM + PAYLOAD)
                    .expect("seal");
                black_box(r)
            })
        });
        g.bench_function(format!("{name}/ssl_write"), |b| {
            b.iter(|| {
                server.ssl_write(black_box(&payload)).expect("SSL_write");
                server.get_mut().out.drain(|d| {
                    black_box(d);
                });
            })
        });

        // Open: every iteration needs a fresh record (both replay windows).
        let fresh = |s: &mut RecordSealer| {
            let mut buf = vec![0u8; MAX_HEADROOM + PAYLOAD + TAILROOM];
            let r = s
                .seal(&mut buf, MAX_HEADROOM..MAX_HEADROOM + PAYLOAD)
                .expect("seal");
            buf[r].to_vec()
        };
        g.bench_function(format!("{name}/open_ours"), |b| {
            b.iter_batched(
                || fresh(&mut client_sealer),
                |mut d| {
                    let mut at = 0;
                    let Some(Opened::AppData(r)) = opener.open_next(&mut d, &mut at) else {
                        panic!("not opened");
                    };
                    black_box(r);
                    d
                },
                BatchSize::SmallInput,
            )
        });
        let mut rbuf = vec![0u8; 2048];
        g.bench_function(format!("{name}/ssl_read"), |b| {
            b.iter_batched(
                || fresh(&mut client_sealer),
                |d| {
                    let io = server.get_mut();
                    io.set_inbound(&d);
                    let n = server.ssl_read(&mut rbuf).expect("SSL_read");
                    assert_eq!(n, PAYLOAD);
                    d
                },
                BatchSize::SmallInput,
            )
        });
        assert_eq!(opener.counters().dropped(), 0);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

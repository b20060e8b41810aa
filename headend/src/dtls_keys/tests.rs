//! Interop of `proto::dtls_record` with OpenSSL's own DTLS 1.2, both ways:
//! in-memory associations (PSK like openconnect's PSK-NEGOTIATE, and resumed
//! sessions like AnyConnect's resume mode), our records read by `SSL_read`,
//! OpenSSL's `SSL_write` records opened by us.

use std::collections::VecDeque;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::ssl::{
    ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslSession, SslSessionCacheMode,
    SslStream,
};

use super::*;
use crate::proto::dtls_record::{
    self, DropReason, FIRST_EPOCH, MAX_HEADROOM, OPENSSL_SEQ_GAP, Opened, RecordHeader, TAILROOM,
};
use crate::proto::dtls_resume::{ResumeSuite, session_der};

/// Datagrams in, datagrams out; one `read` is one datagram.
#[derive(Default)]
pub(crate) struct Io {
    pub inbox: VecDeque<Vec<u8>>,
    pub out: Vec<Vec<u8>>,
}

impl io::Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let d = self.inbox.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl io::Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Peer = SslStream<Io>;

/// `SSL_OP_NO_EXTENDED_MASTER_SECRET`, as `dtls_resume.rs` sets it.
const NO_EMS: u64 = 1 << 0;

#[derive(Clone, Copy, Debug)]
enum Suite {
    /// openconnect's PSK-NEGOTIATE (full handshake, EMS on).
    Psk(&'static str),
    /// AnyConnect resume mode (abbreviated handshake from a master secret).
    Resume(ResumeSuite),
}

const SUITES: [Suite; 7] = [
    Suite::Psk("PSK-AES128-GCM-SHA256"),
    Suite::Psk("PSK-AES256-GCM-SHA384"),
    Suite::Psk("PSK-CHACHA20-POLY1305"),
    Suite::Resume(ResumeSuite::Aes256GcmSha384),
    Suite::Resume(ResumeSuite::EcdheRsaAes256GcmSha384),
    Suite::Resume(ResumeSuite::Aes128GcmSha256),
    Suite::Resume(ResumeSuite::EcdheRsaAes128GcmSha256),
];

fn builder(cipher: &str, extra: SslOptions) -> SslContextBuilder {
    let mut b = SslContextBuilder::new(SslMethod::dtls()).unwrap();
    b.set_min_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
    b.set_max_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
    b.set_cipher_list(cipher).unwrap();
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET | extra);
    b
}

fn stream(ssl: Ssl) -> Peer {
    let mut ssl = ssl;
    ssl.set_mtu(1400).unwrap();
    SslStream::new(ssl, Io::default()).unwrap()
}

fn psk_pair(cipher: &str) -> (Peer, Peer) {
    let mut s = builder(cipher, SslOptions::empty());
    s.set_psk_server_callback(|_, _, out| {
        out[..32].copy_from_slice(&[7; 32]);
        Ok(32)
    });
    let mut c = builder(cipher, SslOptions::empty());
    c.set_psk_client_callback(|_, _, identity, out| {
        identity[..4].copy_from_slice(b"psk\0");
        out[..32].copy_from_slice(&[7; 32]);
        Ok(32)
    });
    let mut server = Ssl::new(&s.build()).unwrap();
    server.set_accept_state();
    let mut client = Ssl::new(&c.build()).unwrap();
    client.set_connect_state();
    (stream(server), stream(client))
}

/// Both sides resume the same session built from a master secret, as
/// `dtls_resume.rs` and openconnect do.
fn resume_pair(suite: ResumeSuite) -> (Peer, Peer) {
    let (sid, master) = ([0x5a; 32], [0x33; 48]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = || SslSession::from_der(&session_der(suite, &sid, &master, now, 3600)).unwrap();
    let no_ems = SslOptions::from_bits_retain(NO_EMS as _);
    let mut s = builder(suite.openssl_name(), no_ems);
    s.set_session_cache_mode(SslSessionCacheMode::SERVER | SslSessionCacheMode::NO_INTERNAL);
    let server_session = session();
    // SAFETY: the callback returns an owned session (a new reference), which
    // is what OpenSSL's get-session callback hands over.
    unsafe {
        s.set_get_session_callback(move |_, id| {
            (server_session.id() == id).then(|| server_session.clone())
        });
    }
    let c = builder(suite.openssl_name(), no_ems);
    let mut server = Ssl::new(&s.build()).unwrap();
    server.set_accept_state();
    let mut client = Ssl::new(&c.build()).unwrap();
    // SAFETY: the session is DTLS 1.2, this client's protocol version.
    unsafe { client.set_session(&session()).unwrap() };
    client.set_connect_state();
    (stream(server), stream(client))
}

fn step(p: &mut Peer) -> bool {
    match p.do_handshake() {
        Ok(()) => true,
        Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => false,
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// Runs the handshake in memory; returns the pair and every datagram the
/// server's OpenSSL wrote (for `observe_openssl`).
fn connect(suite: Suite) -> (Peer, Peer, Vec<Vec<u8>>) {
    let (mut s, mut c) = match suite {
        Suite::Psk(name) => psk_pair(name),
        Suite::Resume(r) => resume_pair(r),
    };
    let mut server_out = Vec::new();
    for _ in 0..10 {
        let c_done = step(&mut c);
        let flight: Vec<_> = c.get_mut().out.drain(..).collect();
        s.get_mut().inbox.extend(flight);
        let s_done = step(&mut s);
        let flight: Vec<_> = s.get_mut().out.drain(..).collect();
        server_out.extend(flight.iter().cloned());
        c.get_mut().inbox.extend(flight);
        if c_done && s_done && c.get_ref().inbox.is_empty() && s.get_ref().inbox.is_empty() {
            if let Suite::Resume(_) = suite {
                assert!(c.ssl().session_reused(), "{suite:?}: not a resumption");
            }
            return (s, c, server_out);
        }
    }
    panic!("{suite:?}: handshake did not finish");
}

/// Seals `payload` as one record of its own datagram.
fn seal(sealer: &mut dtls_record::RecordSealer, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HEADROOM + payload.len() + TAILROOM];
    let p = MAX_HEADROOM..MAX_HEADROOM + payload.len();
    buf[p.clone()].copy_from_slice(payload);
    let rec = sealer.seal(&mut buf, p).unwrap();
    buf[rec].to_vec()
}

/// Opens every record of `d`; returns plaintexts and the other outcomes.
fn open(o: &mut dtls_record::RecordOpener, d: &[u8]) -> (Vec<Vec<u8>>, Vec<Opened>) {
    let mut d = d.to_vec();
    let (mut plain, mut other) = (Vec::new(), Vec::new());
    let mut at = 0;
    while let Some(r) = o.open_next(&mut d, &mut at) {
        match r {
            Opened::AppData(range) => plain.push(d[range].to_vec()),
            r => other.push(r),
        }
    }
    (plain, other)
}

fn ssl_read_all(p: &mut Peer) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 20000];
    for _ in 0..1000 {
        match p.ssl_read(&mut buf) {
            // An empty record reads as 0 bytes (server) or not at all (client).
            Ok(0) => {}
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e) if e.code() == ErrorCode::WANT_READ => break,
            Err(e) => panic!("SSL_read: {e}"),
        }
    }
    got
}

fn payloads() -> Vec<Vec<u8>> {
    let mut ip = vec![0u8; 1400];
    ip[0] = 0x00; // AnyConnect DTLS DATA
    ip[1] = 0x45;
    for (i, b) in ip.iter_mut().enumerate().skip(2) {
        *b = i as u8;
    }
    vec![ip, vec![3, 1, 2, 3, 4], vec![4], Vec::new()]
}

/// What `ssl_read_all` returns for one record.
fn nonempty(p: Vec<u8>) -> Vec<Vec<u8>> {
    if p.is_empty() { vec![] } else { vec![p] }
}

#[test]
fn our_records_and_openssls_interoperate_both_ways_for_every_suite() {
    for suite in SUITES {
        let (mut s, mut c, server_out) = connect(suite);
        let (aead_s, kb_s) = export_key_block(s.ssl()).unwrap();
        let (aead_c, kb_c) = export_key_block(c.ssl()).unwrap();
        assert_eq!(
            (aead_s, &kb_s),
            (aead_c, &kb_c),
            "{suite:?}: both ends agree"
        );
        let (mut s_seal, mut s_open) = server_record_layer(s.ssl(), FIRST_EPOCH).unwrap();
        let (mut c_seal, mut c_open) = client_record_layer(c.ssl(), FIRST_EPOCH).unwrap();

        // Our first sequence number is above OpenSSL's Finished.
        for d in &server_out {
            s_seal.observe_openssl(d);
        }
        let openssl_max = server_out
            .iter()
            .flat_map(|d| dtls_record::records(d).map(|(h, _)| h))
            .filter(|h| h.epoch == FIRST_EPOCH)
            .map(|h| h.seq)
            .max()
            .expect("OpenSSL sent its Finished on epoch 1");
        assert_eq!(s_seal.next_seq(), openssl_max + 1 + OPENSSL_SEQ_GAP);

        // Server: our seal -> client SSL_read.
        for p in payloads() {
            let d = seal(&mut s_seal, &p);
            c.get_mut().inbox.push_back(d);
            assert_eq!(ssl_read_all(&mut c), nonempty(p), "{suite:?}");
        }
        // Two of our records in one datagram.
        let mut two = seal(&mut s_seal, b"\x00one");
        two.extend_from_slice(&seal(&mut s_seal, b"\x00two"));
        c.get_mut().inbox.push_back(two);
        assert_eq!(
            ssl_read_all(&mut c),
            vec![b"\x00one".to_vec(), b"\x00two".to_vec()],
            "{suite:?}"
        );

        // Client SSL_write -> our open on the server.
        for p in payloads() {
            c.ssl_write(&p).unwrap();
        }
        let mut got = Vec::new();
        for d in c.get_mut().out.drain(..).collect::<Vec<_>>() {
            let (plain, other) = open(&mut s_open, &d);
            assert!(other.is_empty(), "{suite:?}: {other:?}");
            got.extend(plain);
        }
        // SSL_write of 0 bytes writes no record.
        assert_eq!(got, payloads()[..3].to_vec(), "{suite:?}");

        // The other role: our client seal -> server SSL_read; server
        // SSL_write -> our client open.
        for p in payloads() {
            let d = seal(&mut c_seal, &p);
            s.get_mut().inbox.push_back(d);
            assert_eq!(ssl_read_all(&mut s), nonempty(p), "{suite:?}");
        }
        s.ssl_write(b"\x04").unwrap();
        let out: Vec<_> = s.get_mut().out.drain(..).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(open(&mut c_open, &out[0]).0, vec![b"\x04".to_vec()]);

        let c = s_open.counters();
        assert_eq!((c.opened, c.dropped()), (3, 0), "{suite:?}");
        assert_eq!(s_seal.counters().sealed, 6);
        assert_eq!(s_seal.counters().openssl_overlap, 0);
    }
}

/// Replay, reordering, truncation, the wrong epoch and bit flips on records
/// that OpenSSL sealed: dropped and counted by reason, and only authentic
/// records move the window.
#[test]
fn bad_openssl_records_are_dropped_and_counted() {
    for suite in &SUITES[..3] {
        let (s, mut c, _) = connect(*suite);
        let (_, mut o) = server_record_layer(s.ssl(), FIRST_EPOCH).unwrap();
        for i in 0..4u8 {
            c.ssl_write(&[0, i]).unwrap();
        }
        let d: Vec<Vec<u8>> = c.get_mut().out.drain(..).collect();
        assert_eq!(d.len(), 4);
        let ok = |o: &mut dtls_record::RecordOpener, d: &[u8], want: u8| {
            assert_eq!(open(o, d), (vec![vec![0, want]], vec![]), "{suite:?}");
        };
        let dropped = |o: &mut dtls_record::RecordOpener, d: &[u8], why| {
            assert_eq!(
                open(o, d),
                (vec![], vec![Opened::Dropped(why)]),
                "{suite:?}"
            );
        };
        // Reordered: 2 before 0.
        ok(&mut o, &d[2], 2);
        ok(&mut o, &d[0], 0);
        // Replayed.
        dropped(&mut o, &d[0], DropReason::Replayed);
        dropped(&mut o, &d[2], DropReason::Replayed);
        // Bit flips in the ciphertext and in the tag; then the genuine one
        // still opens (the forgery did not mark its sequence number).
        let mut flip = d[1].clone();
        flip[dtls_record::HEADER_LEN + 9] ^= 0x80;
        dropped(&mut o, &flip, DropReason::BadTag);
        let mut flip = d[1].clone();
        *flip.last_mut().unwrap() ^= 1;
        dropped(&mut o, &flip, DropReason::BadTag);
        ok(&mut o, &d[1], 1);
        // Truncated, and from another epoch.
        dropped(&mut o, &d[3][..d[3].len() - 1], DropReason::Truncated);
        dropped(&mut o, &d[3][..5], DropReason::Truncated);
        let mut epoch2 = d[3].clone();
        epoch2[4] = 2;
        dropped(&mut o, &epoch2, DropReason::WrongEpoch);
        ok(&mut o, &d[3], 3);
        // 70 more records push 0..=3 out of the 64-record window.
        for i in 4..74u8 {
            c.ssl_write(&[0, i]).unwrap();
        }
        for (i, d) in c.get_mut().out.drain(..).enumerate() {
            ok(&mut o, &d, i as u8 + 4);
        }
        dropped(&mut o, &d[3], DropReason::TooOld);
        let k = o.counters();
        assert_eq!(
            (
                k.opened,
                k.replayed,
                k.bad_tag,
                k.truncated,
                k.wrong_epoch,
                k.too_old,
                k.malformed
            ),
            (74, 2, 2, 2, 1, 1, 0),
            "{suite:?}"
        );
    }
}

/// An alert from the client is not ours to open: it goes to OpenSSL, which
/// sees the close_notify.
#[test]
fn alerts_go_to_openssl() {
    let (mut s, mut c, _) = connect(Suite::Psk("PSK-AES128-GCM-SHA256"));
    let (_, mut o) = server_record_layer(s.ssl(), FIRST_EPOCH).unwrap();
    c.ssl_write(b"\x00data").unwrap();
    let _ = c.shutdown().unwrap();
    let out: Vec<Vec<u8>> = c.get_mut().out.drain(..).collect();
    assert_eq!(out.len(), 2);
    assert_eq!(open(&mut o, &out[0]).0, vec![b"\x00data".to_vec()]);
    let mut alert = out[1].clone();
    let mut at = 0;
    let Some(Opened::ForOpenssl(r)) = o.open_next(&mut alert, &mut at) else {
        panic!("alert not handed to OpenSSL");
    };
    assert_eq!(alert[r.clone()], out[1][..]);
    s.get_mut().inbox.push_back(alert[r].to_vec());
    let mut buf = [0u8; 64];
    let e = s.ssl_read(&mut buf).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ZERO_RETURN);
    assert_eq!(o.counters().for_openssl, 1);
}

/// Records OpenSSL still writes after we took over (here: SSL_write, as an
/// alert or a retransmitted Finished would be) use its own, lower sequence
/// numbers: they never collide with ours and the client accepts both.
#[test]
fn late_openssl_records_do_not_clash_with_ours() {
    let (mut s, mut c, server_out) = connect(Suite::Psk("PSK-AES256-GCM-SHA384"));
    let (mut sealer, _) = server_record_layer(s.ssl(), FIRST_EPOCH).unwrap();
    for d in &server_out {
        sealer.observe_openssl(d);
    }
    let mut ours = Vec::new();
    for i in 0..3u8 {
        c.get_mut().inbox.push_back(seal(&mut sealer, &[0, i]));
        ours.push(vec![0, i]);
    }
    for i in 0..5u8 {
        s.ssl_write(&[0, 100 + i]).unwrap();
        let d: Vec<Vec<u8>> = s.get_mut().out.drain(..).collect();
        for d in d {
            let h = RecordHeader::parse(&d).unwrap();
            assert!(h.seq < OPENSSL_SEQ_GAP, "OpenSSL keeps its own counter");
            sealer.observe_openssl(&d);
            c.get_mut().inbox.push_back(d);
        }
        c.get_mut().inbox.push_back(seal(&mut sealer, &[1, i]));
    }
    let got = ssl_read_all(&mut c);
    assert_eq!(got.len(), 3 + 5 + 5, "{got:?}");
    assert_eq!(&got[..3], &ours[..]);
    assert_eq!(sealer.counters().openssl_overlap, 0);
}

#[test]
fn non_aead_suites_and_unfinished_handshakes_are_refused() {
    let (mut s, _c) = psk_pair("PSK-AES128-CBC-SHA256");
    assert_eq!(
        export_key_block(s.ssl()).unwrap_err(),
        KeyExportError::NotEstablished
    );
    let _ = s.do_handshake();
    assert!(server_record_layer(s.ssl(), FIRST_EPOCH).is_err());
    let (s, c, _) = connect(Suite::Psk("PSK-AES128-CBC-SHA256"));
    for p in [&s, &c] {
        assert_eq!(
            export_key_block(p.ssl()).unwrap_err(),
            KeyExportError::NotAead("PSK-AES128-CBC-SHA256".into())
        );
    }
}

/// Our PRF with the session's secrets equals OpenSSL's keying-material
/// exporter (RFC 5705: PRF(master, label, client_random + server_random)),
/// with and without Extended Master Secret and with either hash.
#[test]
fn prf_matches_openssl_exporter() {
    for suite in [
        Suite::Psk("PSK-AES256-GCM-SHA384"),
        Suite::Psk("PSK-CHACHA20-POLY1305"),
        Suite::Resume(ResumeSuite::Aes128GcmSha256),
        Suite::Resume(ResumeSuite::EcdheRsaAes256GcmSha384),
    ] {
        let (s, _c, _) = connect(suite);
        let ssl = s.ssl();
        let mut want = [0u8; 80];
        ssl.export_keying_material(&mut want, "EXPORTER-headend-test", None)
            .unwrap();
        let (mut cr, mut sr, mut m) = ([0u8; 32], [0u8; 32], [0u8; 48]);
        ssl.client_random(&mut cr);
        ssl.server_random(&mut sr);
        ssl.session().unwrap().master_key(&mut m);
        let hash = if ssl.current_cipher().unwrap().name().ends_with("SHA384") {
            PrfHash::Sha384
        } else {
            PrfHash::Sha256
        };
        let mut seed = cr.to_vec();
        seed.extend_from_slice(&sr);
        let mut got = [0u8; 80];
        dtls_record::prf(hash, &m, b"EXPORTER-headend-test", &seed, &mut got);
        assert_eq!(got, want, "{suite:?}");
    }
}

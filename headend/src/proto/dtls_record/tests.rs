//! Sans-IO tests: our sealer against our opener. Interop with OpenSSL's own
//! DTLS is tested in `crate::dtls_keys`.

use super::*;

const ALL: [RecordAead; 3] = [
    RecordAead::Aes128Gcm,
    RecordAead::Aes256Gcm,
    RecordAead::Chacha20Poly1305,
];

fn keys(aead: RecordAead) -> KeyBlock {
    let hash = if aead == RecordAead::Aes256Gcm {
        PrfHash::Sha384
    } else {
        PrfHash::Sha256
    };
    KeyBlock::derive(aead, hash, &[9; 48], &[1; 32], &[2; 32])
}

/// A server sealer and the client-side opener of the same direction.
fn pair(aead: RecordAead) -> (RecordSealer, RecordOpener) {
    let kb = keys(aead);
    (
        RecordSealer::new(&kb.server_write, FIRST_EPOCH),
        RecordOpener::new(&kb.server_write, FIRST_EPOCH),
    )
}

/// Seals each payload as its own record, back to back in one datagram.
fn datagram(s: &mut RecordSealer, payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        let mut buf = vec![0u8; MAX_HEADROOM + p.len() + TAILROOM];
        buf[MAX_HEADROOM..MAX_HEADROOM + p.len()].copy_from_slice(p);
        let rec = s
            .seal(&mut buf, MAX_HEADROOM..MAX_HEADROOM + p.len())
            .unwrap();
        out.extend_from_slice(&buf[rec]);
    }
    out
}

/// Opens everything; returns the plaintexts and the other outcomes.
fn open_all(o: &mut RecordOpener, d: &mut [u8]) -> (Vec<Vec<u8>>, Vec<Opened>) {
    let (mut plain, mut other) = (Vec::new(), Vec::new());
    let mut at = 0;
    let mut n = 0;
    while let Some(r) = o.open_next(d, &mut at) {
        n += 1;
        assert!(n <= d.len(), "open_next must make progress");
        match r {
            Opened::AppData(range) => plain.push(d[range].to_vec()),
            r => other.push(r),
        }
    }
    (plain, other)
}

#[test]
fn seal_then_open_every_suite_several_records_per_datagram() {
    for aead in ALL {
        let (mut s, mut o) = pair(aead);
        let big = vec![0x45u8; 1400];
        let payloads: [&[u8]; 4] = [b"\x00hello", b"", &big, b"\x03probe"];
        let mut d = datagram(&mut s, &payloads);
        let overhead = s.overhead();
        assert_eq!(
            d.len(),
            payloads.iter().map(|p| p.len() + overhead).sum::<usize>()
        );
        let (plain, other) = open_all(&mut o, &mut d);
        assert_eq!(plain, payloads.map(<[u8]>::to_vec), "{aead:?}");
        assert!(other.is_empty(), "{other:?}");
        assert_eq!(o.counters().opened, 4);
        assert_eq!(o.counters().dropped(), 0);
        assert_eq!(s.counters().sealed, 4);
        assert_eq!(o.highest_seq(), Some(OPENSSL_SEQ_GAP + 3));
    }
}

#[test]
fn header_fields_and_explicit_nonce_are_on_the_wire() {
    for aead in ALL {
        let (mut s, _) = pair(aead);
        let d = datagram(&mut s, &[b"abc"]);
        let h = RecordHeader::parse(&d).unwrap();
        assert_eq!(h.content_type, ContentType::ApplicationData);
        assert_eq!(h.version, DTLS1_2);
        assert_eq!(h.epoch, FIRST_EPOCH);
        assert_eq!(h.seq, OPENSSL_SEQ_GAP);
        assert_eq!(
            usize::from(h.length),
            aead.explicit_nonce_len() + 3 + TAG_LEN
        );
        if aead.explicit_nonce_len() == 8 {
            // We send epoch||seq as GCM's explicit nonce.
            assert_eq!(&d[HEADER_LEN..HEADER_LEN + 8], &d[3..11]);
        }
        // The payload is not in clear.
        assert!(!d.windows(3).any(|w| w == b"abc"));
    }
}

#[test]
fn record_sits_right_before_the_payload_wherever_it_is() {
    let (mut s, mut o) = pair(RecordAead::Aes128Gcm);
    let mut buf = vec![0xeeu8; 100];
    buf[40..45].copy_from_slice(b"hello");
    let rec = s.seal(&mut buf, 40..45).unwrap();
    assert_eq!(rec, 40 - s.headroom()..45 + TAG_LEN);
    // Bytes outside the record are untouched.
    assert!(buf[..rec.start].iter().all(|&b| b == 0xee));
    assert!(buf[rec.end..].iter().all(|&b| b == 0xee));
    let mut d = buf[rec].to_vec();
    assert_eq!(open_all(&mut o, &mut d).0, vec![b"hello".to_vec()]);
}

#[test]
fn seal_refuses_bad_buffers_and_exhausted_sequence() {
    let kb = keys(RecordAead::Aes256Gcm);
    let mut s = RecordSealer::new(&kb.server_write, 1);
    let mut buf = vec![0u8; 100];
    assert_eq!(
        s.seal(&mut buf, 20..30),
        Err(SealError::NoHeadroom { need: 21, have: 20 })
    );
    assert_eq!(s.seal(&mut buf, 21..85), Err(SealError::NoTailroom));
    assert_eq!(
        s.seal(&mut buf, Range { start: 30, end: 20 }),
        Err(SealError::NoTailroom)
    );
    assert!(s.seal(&mut buf, 21..84).is_ok());
    let mut big = vec![0u8; MAX_HEADROOM + MAX_PLAINTEXT + 1 + TAILROOM];
    assert_eq!(
        s.seal(&mut big, MAX_HEADROOM..MAX_HEADROOM + MAX_PLAINTEXT + 1),
        Err(SealError::TooLong(MAX_PLAINTEXT + 1))
    );
    assert!(
        s.seal(&mut big, MAX_HEADROOM..MAX_HEADROOM + MAX_PLAINTEXT)
            .is_ok()
    );
    // ChaCha20-Poly1305 has no explicit nonce: 13 bytes of headroom suffice.
    let kc = keys(RecordAead::Chacha20Poly1305);
    let mut c = RecordSealer::new(&kc.server_write, 1);
    assert_eq!(c.headroom(), HEADER_LEN);
    assert!(c.seal(&mut buf, 13..20).is_ok());
    // The last sequence number is usable, the one after is not.
    let mut s = RecordSealer::with_next_seq(&kb.server_write, 1, MAX_SEQ);
    assert!(s.seal(&mut buf, 21..30).is_ok());
    assert_eq!(
        s.seal(&mut buf, 21..30),
        Err(SealError::SequenceExhausted(1))
    );
    assert_eq!(s.counters().sealed, 1);
}

#[test]
fn replayed_reordered_and_old_records_are_counted() {
    let (mut s, mut o) = pair(RecordAead::Aes128Gcm);
    let recs: Vec<Vec<u8>> = (0..100u8).map(|i| datagram(&mut s, &[&[i]])).collect();
    // Reordered inside the window: accepted.
    for i in [5, 3, 4] {
        let mut d = recs[i].clone();
        assert_eq!(open_all(&mut o, &mut d).0, vec![vec![i as u8]]);
    }
    // The same again: replayed.
    let mut d = recs[3].clone();
    assert_eq!(
        open_all(&mut o, &mut d).1,
        vec![Opened::Dropped(DropReason::Replayed)]
    );
    // Move the window 64 past record 5; records 0..=35 fall out of it.
    let mut d = recs[99].clone();
    assert_eq!(open_all(&mut o, &mut d).0, vec![vec![99]]);
    let mut d = recs[35].clone();
    assert_eq!(
        open_all(&mut o, &mut d).1,
        vec![Opened::Dropped(DropReason::TooOld)]
    );
    let mut d = recs[36].clone();
    assert_eq!(open_all(&mut o, &mut d).0, vec![vec![36]]);
    let c = o.counters();
    assert_eq!((c.opened, c.replayed, c.too_old), (5, 1, 1));
}

#[test]
fn bad_tag_does_not_move_the_window() {
    for aead in ALL {
        let (mut s, mut o) = pair(aead);
        let good = datagram(&mut s, &[b"payload"]);
        // Flip a bit in the ciphertext, in the tag, in the explicit nonce /
        // header fields covered by the additional data.
        let last = good.len() - 1;
        for at in [HEADER_LEN + aead.explicit_nonce_len() + 1, last, 10] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                open_all(&mut o, &mut bad).1,
                vec![Opened::Dropped(DropReason::BadTag)],
                "{aead:?} byte {at}"
            );
        }
        // A forged higher sequence number does not push the window either.
        let mut forged = good.clone();
        forged[10] = 0xff;
        forged[9] = 0xff;
        assert_eq!(
            open_all(&mut o, &mut forged).1,
            vec![Opened::Dropped(DropReason::BadTag)]
        );
        assert_eq!(o.highest_seq(), None);
        let mut d = good.clone();
        assert_eq!(open_all(&mut o, &mut d).0, vec![b"payload".to_vec()]);
        assert_eq!(o.counters().bad_tag, 4);
    }
}

#[test]
fn truncated_records_drop_the_rest_of_the_datagram() {
    let (mut s, mut o) = pair(RecordAead::Aes256Gcm);
    let d = datagram(&mut s, &[b"one", b"two"]);
    let first_len = 3 + s.overhead();
    // Cut inside the second record's fragment: the first still opens.
    let mut cut = d[..d.len() - 1].to_vec();
    let (plain, other) = open_all(&mut o, &mut cut);
    assert_eq!(plain, vec![b"one".to_vec()]);
    assert_eq!(other, vec![Opened::Dropped(DropReason::Truncated)]);
    // Cut inside the second header.
    let (mut s, mut o) = pair(RecordAead::Aes256Gcm);
    let d = datagram(&mut s, &[b"one", b"two"]);
    let mut cut = d[..first_len + 5].to_vec();
    let (plain, other) = open_all(&mut o, &mut cut);
    assert_eq!(plain, vec![b"one".to_vec()]);
    assert_eq!(other, vec![Opened::Dropped(DropReason::Truncated)]);
    // A length field past the end of the datagram.
    let mut long = d[..first_len].to_vec();
    long[12] = long[12].wrapping_add(1);
    assert_eq!(
        open_all(&mut o, &mut long).1,
        vec![Opened::Dropped(DropReason::Truncated)]
    );
    assert_eq!(o.counters().truncated, 2);
    assert_eq!(open_all(&mut o, &mut []).1, vec![]);
}

#[test]
fn malformed_and_wrong_epoch_records_are_dropped_unopened() {
    let (mut s, mut o) = pair(RecordAead::Aes128Gcm);
    let good = datagram(&mut s, &[b"x"]);
    let mut v = good.clone();
    v[1] = 0xfe;
    v[2] = 0xff; // DTLS 1.0
    let mut t = good.clone();
    t[0] = 99;
    let mut e = good.clone();
    e[4] = 2;
    // Fragment shorter than explicit nonce + tag.
    let mut short = good[..HEADER_LEN + 10].to_vec();
    short[11..13].copy_from_slice(&10u16.to_be_bytes());
    for (mut d, want) in [
        (v, DropReason::Malformed),
        (t, DropReason::Malformed),
        (e, DropReason::WrongEpoch),
        (short, DropReason::Malformed),
    ] {
        assert_eq!(open_all(&mut o, &mut d).1, vec![Opened::Dropped(want)]);
    }
    // Epoch 0 application data (never valid) is the wrong epoch too.
    let mut z = good.clone();
    z[4] = 0;
    assert_eq!(
        open_all(&mut o, &mut z).1,
        vec![Opened::Dropped(DropReason::WrongEpoch)]
    );
    let c = o.counters();
    assert_eq!((c.malformed, c.wrong_epoch, c.opened), (3, 2, 0));
    // None of them touched the window: the genuine record still opens.
    let mut d = good.clone();
    assert_eq!(open_all(&mut o, &mut d).0, vec![b"x".to_vec()]);
}

#[test]
fn non_application_records_go_to_openssl_untouched() {
    let (mut s, mut o) = pair(RecordAead::Chacha20Poly1305);
    // An alert and a handshake record of epoch 1 (opaque to us), an epoch 0
    // handshake record, then data, in one datagram.
    let mut d = Vec::new();
    for (ty, epoch) in [(21u8, 1u8), (22, 1), (22, 0), (20, 0)] {
        d.extend_from_slice(&[ty, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0, 7, 0, 3, 1, 2, 3]);
    }
    let alert = d[..16].to_vec();
    d.extend_from_slice(&datagram(&mut s, &[b"data"]));
    let (plain, other) = open_all(&mut o, &mut d);
    assert_eq!(plain, vec![b"data".to_vec()]);
    assert_eq!(
        other,
        vec![
            Opened::ForOpenssl(0..16),
            Opened::ForOpenssl(16..32),
            Opened::ForOpenssl(32..48),
            Opened::ForOpenssl(48..64)
        ]
    );
    assert_eq!(&d[..16], &alert[..]);
    assert_eq!(o.counters().for_openssl, 4);
}

/// An epoch-1 record header as OpenSSL would write it.
fn openssl_record(epoch: u16, seq: u64) -> Vec<u8> {
    let mut r = vec![22, 0xfe, 0xfd];
    r.extend_from_slice(&epoch_seq(epoch, seq));
    r.extend_from_slice(&[0, 2, 0xaa, 0xbb]);
    r
}

#[test]
fn our_sequence_starts_above_what_openssl_sent() {
    let kb = keys(RecordAead::Aes128Gcm);
    let mut s = RecordSealer::new(&kb.server_write, 1);
    assert_eq!(s.next_seq(), OPENSSL_SEQ_GAP);
    // Finished at seq 0 and three retransmissions, plus epoch-0 noise with a
    // high sequence number (another sequence space: ignored).
    let mut d = openssl_record(0, 5000);
    for seq in 0..4 {
        d.extend_from_slice(&openssl_record(1, seq));
    }
    s.observe_openssl(&d);
    assert_eq!(s.next_seq(), 3 + 1 + OPENSSL_SEQ_GAP);
    let mut buf = [0u8; 64];
    let rec = s.seal(&mut buf, 21..30).unwrap();
    assert_eq!(
        RecordHeader::parse(&buf[rec]).unwrap().seq,
        4 + OPENSSL_SEQ_GAP
    );
    // A late retransmission below us: no effect, no overlap.
    s.observe_openssl(&openssl_record(1, 4));
    assert_eq!(s.next_seq(), 5 + OPENSSL_SEQ_GAP);
    assert_eq!(s.counters().openssl_overlap, 0);
    // OpenSSL getting close: we jump a gap ahead of it.
    s.observe_openssl(&openssl_record(1, 4 + OPENSSL_SEQ_GAP / 2 + 2));
    assert_eq!(s.next_seq(), 4 + OPENSSL_SEQ_GAP / 2 + 3 + OPENSSL_SEQ_GAP);
    assert_eq!(s.counters().openssl_overlap, 0);
    // OpenSSL reusing a number we sent: counted.
    s.observe_openssl(&openssl_record(1, 4 + OPENSSL_SEQ_GAP));
    assert_eq!(s.counters().openssl_overlap, 1);
    // Truncated junk is ignored.
    s.observe_openssl(&[22, 0xfe]);
}

#[test]
fn keys_of_the_other_direction_do_not_open() {
    let kb = keys(RecordAead::Aes256Gcm);
    let mut s = RecordSealer::new(&kb.server_write, 1);
    let mut o = RecordOpener::new(&kb.client_write, 1);
    let mut d = datagram(&mut s, &[b"x"]);
    assert_eq!(
        open_all(&mut o, &mut d).1,
        vec![Opened::Dropped(DropReason::BadTag)]
    );
}

#[test]
fn header_parse_and_record_walk() {
    assert_eq!(RecordHeader::parse(&[23; 12]), None);
    let r = openssl_record(0x0102, 0x0304_0506_0708);
    let h = RecordHeader::parse(&r).unwrap();
    assert_eq!(
        (h.content_type, h.version, h.epoch, h.seq, h.length),
        (ContentType::Handshake, DTLS1_2, 0x0102, 0x0304_0506_0708, 2)
    );
    let mut two = r.clone();
    two.extend_from_slice(&r);
    two.push(0);
    let walked: Vec<_> = records(&two).map(|(_, r)| r).collect();
    assert_eq!(walked, vec![0..15, 15..30]);
}

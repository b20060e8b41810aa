#![no_main]
//! The DTLS record opener (issue 13) sees every datagram of an established
//! association, and a spoofed source address is enough to send one. The input
//! is a small program that builds datagrams from genuine records (sealed with
//! the association's keys at chosen sequence numbers), raw bytes and bit flips,
//! and opens them: no panic, the cursor always advances, every plaintext is
//! one that was sealed under that sequence number, no sequence number is ever
//! accepted twice (the replay window), and every record is counted once.
//! Records left for OpenSSL also go through `open_control` (how alerts are
//! read once OpenSSL's state is freed): nothing forged ever opens there.
use std::collections::{HashMap, HashSet};

use headend::proto::dtls_record::{
    FIRST_EPOCH, HEADER_LEN, KeyBlock, MAX_HEADROOM, Opened, PrfHash, RecordAead, RecordHeader,
    RecordOpener, RecordSealer, TAILROOM,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut prog)) = data.split_first() else {
        return;
    };
    let aead = [
        RecordAead::Aes128Gcm,
        RecordAead::Aes256Gcm,
        RecordAead::Chacha20Poly1305,
    ][usize::from(sel % 3)];
    let kb = KeyBlock::derive(aead, PrfHash::Sha256, &[7; 48], &[1; 32], &[2; 32]);
    let mut opener = RecordOpener::new(&kb.client_write, FIRST_EPOCH);
    let mut sealed: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    let mut accepted: HashSet<u64> = HashSet::new();
    let mut dgram: Vec<u8> = Vec::new();
    let mut outcomes = 0u64;
    let mut control_drops = 0u64;
    let take = |prog: &mut &[u8], n: usize| -> Vec<u8> {
        let n = n.min(prog.len());
        let (a, b) = prog.split_at(n);
        *prog = b;
        a.to_vec()
    };
    while let Some((&op, rest)) = prog.split_first() {
        prog = rest;
        match op % 4 {
            0 => {
                // A genuine record at sequence number `seq`.
                let a = take(&mut prog, 3);
                let seq = u64::from(a.first().copied().unwrap_or(0)) * 256
                    + u64::from(a.get(1).copied().unwrap_or(0));
                let len = usize::from(a.get(2).copied().unwrap_or(0));
                let payload = take(&mut prog, len);
                let mut sealer = RecordSealer::with_next_seq(&kb.client_write, FIRST_EPOCH, seq);
                let mut buf = vec![0u8; MAX_HEADROOM + payload.len() + TAILROOM];
                let p = MAX_HEADROOM..MAX_HEADROOM + payload.len();
                buf[p.clone()].copy_from_slice(&payload);
                let rec = sealer.seal(&mut buf, p).expect("room reserved");
                dgram.extend_from_slice(&buf[rec]);
                sealed.entry(seq).or_default().push(payload);
            }
            1 => {
                let n = take(&mut prog, 1).first().copied().unwrap_or(0);
                let raw = take(&mut prog, usize::from(n));
                dgram.extend_from_slice(&raw);
            }
            2 => {
                let a = take(&mut prog, 2);
                if !dgram.is_empty() && a.len() == 2 {
                    let i = usize::from(a[0]) % dgram.len();
                    dgram[i] ^= 1 << (a[1] % 8);
                }
            }
            _ => {
                outcomes += open(
                    &mut opener,
                    &mut dgram,
                    &sealed,
                    &mut accepted,
                    aead,
                    &mut control_drops,
                )
            }
        }
    }
    outcomes += open(
        &mut opener,
        &mut dgram,
        &sealed,
        &mut accepted,
        aead,
        &mut control_drops,
    );
    let c = opener.counters();
    assert_eq!(c.opened + c.for_openssl + c.dropped(), outcomes + control_drops);
    assert_eq!(c.opened, accepted.len() as u64);
});

fn open(
    opener: &mut RecordOpener,
    dgram: &mut Vec<u8>,
    sealed: &HashMap<u64, Vec<Vec<u8>>>,
    accepted: &mut HashSet<u64>,
    aead: RecordAead,
    control_drops: &mut u64,
) -> u64 {
    let original = dgram.clone();
    let mut at = 0;
    let mut n = 0u64;
    while let Some(r) = opener.open_next(dgram, &mut at) {
        n += 1;
        assert!(n <= original.len() as u64, "cursor must advance");
        assert!(at <= dgram.len());
        match r {
            Opened::AppData(range) => {
                assert!(range.end <= at);
                let hdr = range.start - HEADER_LEN - aead.explicit_nonce_len();
                let h = RecordHeader::parse(&original[hdr..]).expect("header");
                assert!(accepted.insert(h.seq), "seq {} accepted twice", h.seq);
                let p = &dgram[range];
                assert!(
                    sealed.get(&h.seq).is_some_and(|v| v.iter().any(|s| s == p)),
                    "plaintext that was never sealed"
                );
            }
            Opened::ForOpenssl(range) => {
                assert!(range.end <= at);
                assert_eq!(dgram[range.clone()], original[range.clone()]);
                // Only data records were sealed with the key: no control
                // record can authenticate.
                assert!(opener.open_control(dgram, range).is_err());
                *control_drops += 1;
            }
            Opened::Dropped(_) => {}
        }
    }
    dgram.clear();
    n
}

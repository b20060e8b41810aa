//! DTLS 1.2 application-data records sealed and opened by our code, in place,
//! once OpenSSL has finished the handshake (issue 13 item 2). OpenSSL keeps
//! the handshake, alerts, ChangeCipherSpec and re-handshakes; this module only
//! does what every data packet needs: the record header (RFC 6347 §4.1), the
//! negotiated AEAD with its nonce and additional data (RFC 5246 §6.2.3.3,
//! RFC 5288, RFC 7905), sequence numbers and the anti-replay window
//! (RFC 6347 §4.1.2.6). Sans-IO: no sockets, no clock, no allocation per record.
//!
//! # How the tunnel uses it
//!
//! 1. Handshake with OpenSSL as today, keeping the datagrams OpenSSL wrote
//!    (at least those of its last flight: they carry its epoch-1 Finished).
//! 2. Once `SSL_do_handshake` is done, drain `SSL_read` once (records that
//!    arrived with the client's Finished), then
//!    `let (mut sealer, mut opener) = crate::dtls_keys::server_record_layer(ssl,
//!    FIRST_EPOCH)?`: the sealer has the server write keys, the opener the
//!    client's. It refuses non-AEAD suites: then stay on `SSL_read`/`SSL_write`.
//!    Pass the kept datagrams to [`RecordSealer::observe_openssl`], and from
//!    then on every datagram OpenSSL writes on this association.
//! 3. **Send** (TUN → client): put the AnyConnect DTLS payload (type byte +
//!    packet) at `buf[p..p + n]` with `p >= sealer.headroom()` (reserve
//!    [`MAX_HEADROOM`] to fit every suite) and [`TAILROOM`] bytes free after it,
//!    then `let rec = sealer.seal(&mut buf, p..p + n)?`: `buf[rec]` is one
//!    complete record, ready for `sendmmsg`/GSO. For equal-stride GSO slots
//!    put the payload at `slot + sealer.headroom()`; the record then starts at
//!    `slot`.
//! 4. **Receive** (client → TUN): for each datagram,
//!    `let mut at = 0; while let Some(r) = opener.open_next(&mut dgram, &mut at)`:
//!    - [`Opened::AppData`]`(range)`: `dgram[range]` is the decrypted payload
//!      (type byte + packet), in place.
//!    - [`Opened::ForOpenssl`]`(range)`: `dgram[range]` is a whole record that
//!      is not application data (alert, handshake — e.g. a retransmitted
//!      Finished —, ChangeCipherSpec) or belongs to epoch 0: feed it to
//!      OpenSSL as one datagram and call `SSL_read` (it answers, e.g. by
//!      retransmitting its last flight, or reports close_notify). Anything
//!      OpenSSL writes then goes through `observe_openssl` on its way out.
//!    - [`Opened::Dropped`]`(reason)`: already counted in
//!      [`RecordOpener::counters`]; nothing to do.
//!
//!    A record that authenticated proves the peer's address: that is the
//!    moment to accept a rebinding.
//!    Once the tunnel has freed OpenSSL's state (`dtls.rs` does so when the
//!    handshake completes, issue 12), [`RecordOpener::open_control`] opens
//!    such a record of the current epoch instead (alerts, a retransmitted
//!    Finished), with the same replay window.
//! 5. A re-handshake (new epoch) or a new association: build a new sealer and
//!    opener from the new `SslRef`. Records of another epoch are dropped as
//!    [`DropReason::WrongEpoch`] until then.
//!
//! # Sequence numbers we send
//!
//! OpenSSL and we share the server's write sequence of the epoch: OpenSSL sent
//! its Finished on epoch 1 (seq 0, 1, … with each retransmission) and may
//! still send records after we take over (a retransmitted Finished when the
//! client repeats its last flight because ours was lost, an alert). The peer
//! drops a repeated (epoch, seq) as a replay, so ours must never reuse one of
//! OpenSSL's. [`RecordSealer`] therefore starts [`OPENSSL_SEQ_GAP`] above the
//! highest sequence number it has seen OpenSSL send on its epoch (or at the
//! gap itself if it saw none) and moves up again whenever OpenSSL's sequence
//! gets near ours. The gap leaves OpenSSL room for that many late records
//! without a clash, small enough that they stay inside the client's replay
//! window ([`replay::WINDOW`]) while our first records are in flight.
//! Overlaps that still happen are counted ([`SealCounters::openssl_overlap`]).
//!
//! The opener's replay window starts empty: records that OpenSSL read before
//! the hand-over (those drained in step 2) are not in it, so a replay of one
//! of them would be accepted once. Marking them would need OpenSSL to tell
//! which ones authenticated; seeding the window from unauthenticated headers
//! would let a forged sequence number push it away.
//!
//! # Choice of crypto crate
//!
//! `ring`: it is already compiled into the workspace (rustls and russh use
//! it), so this adds no second C/asm crypto build (aws-lc-sys is the slowest
//! unit of a clean build here); its `LessSafeKey` seals and opens in place
//! with a separate tag, which is exactly the record layout; it has AES-NI /
//! CLMUL / ChaCha20 assembly and constant-time tag checks.

#![forbid(unsafe_code)]

mod keys;
pub mod replay;

use std::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey};

pub use keys::{DirectionKeys, KeyBlock, PrfHash, RecordAead, prf};
use replay::{ReplayVerdict, ReplayWindow};

/// type(1) version(2) epoch(2) sequence_number(6) length(2) (RFC 6347 §4.1).
pub const HEADER_LEN: usize = 13;
/// DTLS 1.2 on the wire (RFC 6347 §4.1: 1's complement of 1.2).
pub const DTLS1_2: u16 = 0xfefd;
/// The AEAD tag of every supported suite.
pub const TAG_LEN: usize = 16;
/// Room to keep before a payload so any suite can seal it in place.
pub const MAX_HEADROOM: usize = HEADER_LEN + 8;
/// Room to keep after a payload for the tag.
pub const TAILROOM: usize = TAG_LEN;
/// The epoch after the first handshake (RFC 6347 §4.1: 0, then +1 per
/// ChangeCipherSpec).
pub const FIRST_EPOCH: u16 = 1;
/// `TLSPlaintext.length` limit (RFC 5246 §6.2.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// `TLSCiphertext.length` limit (RFC 5246 §6.2.3).
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 2048;
/// The sequence number is 48 bits; it must not wrap (RFC 6347 §4.1).
pub const MAX_SEQ: u64 = (1 << 48) - 1;
/// How far above OpenSSL's highest sequence number our records start (see
/// the module header).
pub const OPENSSL_SEQ_GAP: u64 = 32;

/// `ContentType` (RFC 5246 §6.2.1, RFC 6520).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    ChangeCipherSpec,
    Alert,
    Handshake,
    ApplicationData,
    Heartbeat,
    Unknown(u8),
}

impl From<u8> for ContentType {
    fn from(b: u8) -> Self {
        match b {
            20 => Self::ChangeCipherSpec,
            21 => Self::Alert,
            22 => Self::Handshake,
            23 => Self::ApplicationData,
            24 => Self::Heartbeat,
            x => Self::Unknown(x),
        }
    }
}

const APPLICATION_DATA: u8 = 23;

/// The 13-byte DTLS record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: ContentType,
    pub version: u16,
    pub epoch: u16,
    /// 48 bits.
    pub seq: u64,
    /// Length of the fragment that follows the header.
    pub length: u16,
}

impl RecordHeader {
    /// Parses the header at the start of `b`; `None` if `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        let seq = h[5..11]
            .iter()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        Some(Self {
            content_type: ContentType::from(h[0]),
            version: u16::from_be_bytes([h[1], h[2]]),
            epoch: u16::from_be_bytes([h[3], h[4]]),
            seq,
            length: u16::from_be_bytes([h[11], h[12]]),
        })
    }
}

/// `epoch || sequence_number`: the 64-bit "seq_num" of the AEAD additional
/// data (RFC 6347 §4.1.2.1) and of the ChaCha20-Poly1305 nonce.
fn epoch_seq(epoch: u16, seq: u64) -> [u8; 8] {
    ((u64::from(epoch) << 48) | (seq & MAX_SEQ)).to_be_bytes()
}

/// `seq_num || type || version || length` (RFC 5246 §6.2.3.3), length being
/// the plaintext's.
fn additional_data(epoch: u16, seq: u64, content_type: u8, plaintext_len: usize) -> [u8; 13] {
    let mut ad = [0u8; 13];
    ad[..8].copy_from_slice(&epoch_seq(epoch, seq));
    ad[8] = content_type;
    ad[9..11].copy_from_slice(&DTLS1_2.to_be_bytes());
    // Callers bound plaintext_len by MAX_CIPHERTEXT (< 2^16).
    ad[11..13].copy_from_slice(&(plaintext_len as u16).to_be_bytes());
    ad
}

/// One direction's AEAD state shared by sealer and opener.
struct Protection {
    aead: RecordAead,
    key: LessSafeKey,
    iv: [u8; 12],
}

impl Protection {
    fn new(keys: &DirectionKeys) -> Self {
        let unbound = UnboundKey::new(keys.aead.ring_algorithm(), keys.key())
            .unwrap_or_else(|_| unreachable!("DirectionKeys has the suite's key length"));
        let mut iv = [0u8; 12];
        iv[..keys.iv().len()].copy_from_slice(keys.iv());
        Self {
            aead: keys.aead,
            key: LessSafeKey::new(unbound),
            iv,
        }
    }

    /// GCM: salt || explicit nonce (RFC 5288 §3). ChaCha20-Poly1305: the IV
    /// xor the left-padded epoch||seq (RFC 7905 §2).
    fn nonce(&self, explicit_or_seq: &[u8; 8]) -> Nonce {
        let mut n = self.iv;
        match self.aead {
            RecordAead::Aes128Gcm | RecordAead::Aes256Gcm => {
                n[4..].copy_from_slice(explicit_or_seq)
            }
            RecordAead::Chacha20Poly1305 => {
                for (a, b) in n[4..].iter_mut().zip(explicit_or_seq) {
                    *a ^= b;
                }
            }
        }
        Nonce::assume_unique_for_key(n)
    }

    fn headroom(&self) -> usize {
        HEADER_LEN + self.aead.explicit_nonce_len()
    }
}

/// Why [`RecordSealer::seal`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("payload needs {need} bytes of headroom, has {have}")]
    NoHeadroom { need: usize, have: usize },
    #[error("payload needs {TAG_LEN} bytes after it for the tag")]
    NoTailroom,
    #[error("payload of {0} bytes exceeds the 2^14-byte record limit")]
    TooLong(usize),
    #[error("sequence numbers of epoch {0} exhausted: re-handshake")]
    SequenceExhausted(u16),
}

/// Counts of one [`RecordSealer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealCounters {
    pub sealed: u64,
    /// Records OpenSSL sent with a sequence number we may already have used.
    pub openssl_overlap: u64,
}

/// Seals application-data records of one epoch with our write keys.
pub struct RecordSealer {
    prot: Protection,
    epoch: u16,
    next_seq: u64,
    /// Our first sequence number, once we sealed one.
    first_sealed: Option<u64>,
    counters: SealCounters,
}

impl std::fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSealer")
            .field("aead", &self.prot.aead)
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    /// A sealer for `epoch` that has seen no OpenSSL record yet: it starts at
    /// [`OPENSSL_SEQ_GAP`] (OpenSSL's Finished is seq 0 of the epoch).
    pub fn new(keys: &DirectionKeys, epoch: u16) -> Self {
        Self::with_next_seq(keys, epoch, OPENSSL_SEQ_GAP)
    }

    /// A sealer whose next record gets `next_seq` (tests, fuzzing, tools).
    pub fn with_next_seq(keys: &DirectionKeys, epoch: u16, next_seq: u64) -> Self {
        Self {
            prot: Protection::new(keys),
            epoch,
            next_seq,
            first_sealed: None,
            counters: SealCounters::default(),
        }
    }

    /// Bytes a payload needs in front of it: header (+ GCM explicit nonce).
    pub fn headroom(&self) -> usize {
        self.prot.headroom()
    }

    /// Bytes a record adds to its payload.
    pub fn overhead(&self) -> usize {
        self.headroom() + TAG_LEN
    }

    pub fn aead(&self) -> RecordAead {
        self.prot.aead
    }

    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// The sequence number of the next record [`seal`](Self::seal) makes.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn counters(&self) -> SealCounters {
        self.counters
    }

    /// Notes the records of a datagram OpenSSL wrote on this association, so
    /// ours never reuse its sequence numbers (module header).
    pub fn observe_openssl(&mut self, datagram: &[u8]) {
        for (h, _) in records(datagram) {
            if h.epoch != self.epoch {
                continue;
            }
            if self
                .first_sealed
                .is_some_and(|f| h.seq >= f && h.seq < self.next_seq)
            {
                self.counters.openssl_overlap += 1;
            }
            let floor = h.seq.saturating_add(1 + OPENSSL_SEQ_GAP).min(MAX_SEQ + 1);
            if self.first_sealed.is_none() {
                self.next_seq = self.next_seq.max(floor);
            } else if h.seq.saturating_add(OPENSSL_SEQ_GAP / 2) >= self.next_seq {
                // OpenSSL's sequence is catching up with ours: jump ahead.
                self.next_seq = self.next_seq.max(floor);
            }
        }
    }

    /// Seals `buf[payload]` in place into one application-data record and
    /// returns where the record is: it starts `headroom()` bytes before the
    /// payload and ends [`TAG_LEN`] bytes after it.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Range<usize>, SealError> {
        self.seal_as(buf, payload, ContentType::ApplicationData)
    }

    /// [`Self::seal`] for another content type (an alert we send, or tests
    /// that play a client's handshake retransmission).
    pub fn seal_as(
        &mut self,
        buf: &mut [u8],
        payload: Range<usize>,
        content_type: ContentType,
    ) -> Result<Range<usize>, SealError> {
        let ct = match content_type {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => APPLICATION_DATA,
            ContentType::Heartbeat => 24,
            ContentType::Unknown(x) => x,
        };
        let hr = self.headroom();
        let (start, end) = (payload.start, payload.end);
        if start < hr {
            return Err(SealError::NoHeadroom {
                need: hr,
                have: start,
            });
        }
        if end < start || end.saturating_add(TAG_LEN) > buf.len() {
            return Err(SealError::NoTailroom);
        }
        let n = end - start;
        if n > MAX_PLAINTEXT {
            return Err(SealError::TooLong(n));
        }
        if self.next_seq > MAX_SEQ {
            return Err(SealError::SequenceExhausted(self.epoch));
        }
        let seq = self.next_seq;
        let es = epoch_seq(self.epoch, seq);
        let rec = start - hr;
        let fragment_len = self.prot.aead.explicit_nonce_len() + n + TAG_LEN;
        let h = &mut buf[rec..start];
        h[0] = ct;
        h[1..3].copy_from_slice(&DTLS1_2.to_be_bytes());
        h[3..11].copy_from_slice(&es);
        h[11..13].copy_from_slice(&(fragment_len as u16).to_be_bytes());
        // GCM: we send epoch||seq as the explicit nonce; unique per key
        // (RFC 5288 §3 allows the sequence number). OpenSSL's own records
        // under the same key count up from a random 64-bit start (OpenSSL 3
        // `gcm_tls_iv_set_fixed`), so they meet ours with negligible chance.
        if hr > HEADER_LEN {
            h[HEADER_LEN..].copy_from_slice(&es);
        }
        let nonce = self.prot.nonce(&es);
        let aad = Aad::from(additional_data(self.epoch, seq, ct, n));
        let tag: Tag = self
            .prot
            .key
            .seal_in_place_separate_tag(nonce, aad, &mut buf[start..end])
            .unwrap_or_else(|_| unreachable!("ring seals any length below 2^36"));
        buf[end..end + TAG_LEN].copy_from_slice(tag.as_ref());
        self.first_sealed.get_or_insert(seq);
        self.next_seq += 1;
        self.counters.sealed += 1;
        Ok(rec..end + TAG_LEN)
    }
}

/// Why a record was dropped (each has a counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The datagram ends inside a record header or fragment: the rest of the
    /// datagram is dropped (RFC 6347 §4.1.2.7).
    Truncated,
    /// Not DTLS 1.2, too short for nonce and tag, over the length limit, or
    /// an unknown content type.
    Malformed,
    /// Application data of another epoch than the current keys'.
    WrongEpoch,
    /// A sequence number already received (RFC 6347 §4.1.2.6).
    Replayed,
    /// Left of the replay window.
    TooOld,
    /// Failed authentication (tampered, or not ours).
    BadTag,
}

impl DropReason {
    /// A stable name for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::WrongEpoch => "wrong_epoch",
            Self::Replayed => "replayed",
            Self::TooOld => "too_old",
            Self::BadTag => "bad_tag",
        }
    }
}

/// What [`RecordOpener::open_next`] made of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Decrypted application data, in place, at this range of the datagram.
    AppData(Range<usize>),
    /// A whole record (header included) for OpenSSL, untouched.
    ForOpenssl(Range<usize>),
    Dropped(DropReason),
}

/// Counts of one [`RecordOpener`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenCounters {
    pub opened: u64,
    pub for_openssl: u64,
    pub truncated: u64,
    pub malformed: u64,
    pub wrong_epoch: u64,
    pub replayed: u64,
    pub too_old: u64,
    pub bad_tag: u64,
}

impl OpenCounters {
    pub fn dropped(&self) -> u64 {
        self.truncated
            + self.malformed
            + self.wrong_epoch
            + self.replayed
            + self.too_old
            + self.bad_tag
    }

    fn count(&mut self, r: DropReason) {
        let c = match r {
            DropReason::Truncated => &mut self.truncated,
            DropReason::Malformed => &mut self.malformed,
            DropReason::WrongEpoch => &mut self.wrong_epoch,
            DropReason::Replayed => &mut self.replayed,
            DropReason::TooOld => &mut self.too_old,
            DropReason::BadTag => &mut self.bad_tag,
        };
        *c += 1;
    }
}

/// Opens application-data records of one epoch with the peer's write keys.
pub struct RecordOpener {
    prot: Protection,
    epoch: u16,
    window: ReplayWindow,
    counters: OpenCounters,
}

impl std::fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordOpener")
            .field("aead", &self.prot.aead)
            .field("epoch", &self.epoch)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl RecordOpener {
    pub fn new(keys: &DirectionKeys, epoch: u16) -> Self {
        Self {
            prot: Protection::new(keys),
            epoch,
            window: ReplayWindow::default(),
            counters: OpenCounters::default(),
        }
    }

    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    pub fn counters(&self) -> OpenCounters {
        self.counters
    }

    /// The highest sequence number that authenticated, if any.
    pub fn highest_seq(&self) -> Option<u64> {
        self.window.highest()
    }

    /// Handles the record at `*cursor` in `datagram` and moves the cursor past
    /// it; `None` once the datagram is consumed. Application data is
    /// decrypted in place.
    pub fn open_next(&mut self, datagram: &mut [u8], cursor: &mut usize) -> Option<Opened> {
        let rest = datagram.get(*cursor..).filter(|r| !r.is_empty())?;
        let Some(h) = RecordHeader::parse(rest) else {
            *cursor = datagram.len();
            return Some(self.drop(DropReason::Truncated));
        };
        let start = *cursor;
        let body = start + HEADER_LEN;
        let end = body + usize::from(h.length);
        if end > datagram.len() {
            *cursor = datagram.len();
            return Some(self.drop(DropReason::Truncated));
        }
        *cursor = end;
        match h.content_type {
            ContentType::ApplicationData => {}
            // OpenSSL has its own read state for these (and for epoch 0).
            ContentType::ChangeCipherSpec
            | ContentType::Alert
            | ContentType::Handshake
            | ContentType::Heartbeat => {
                self.counters.for_openssl += 1;
                return Some(Opened::ForOpenssl(start..end));
            }
            ContentType::Unknown(_) => return Some(self.drop(DropReason::Malformed)),
        }
        Some(match self.open_body(datagram, start, h, APPLICATION_DATA) {
            Ok(r) => {
                self.counters.opened += 1;
                Opened::AppData(r)
            }
            Err(why) => self.drop(why),
        })
    }

    /// Opens a record that [`Self::open_next`] left for OpenSSL
    /// (`Opened::ForOpenssl(range)`): an alert or handshake message of this
    /// epoch, once OpenSSL's state is gone (issue 12: no OpenSSL state kept
    /// per established session). Returns the plaintext's range, in place;
    /// epoch-0 records (plaintext, never authenticated) and every failure
    /// are dropped and counted.
    pub fn open_control(
        &mut self,
        datagram: &mut [u8],
        record: Range<usize>,
    ) -> Result<Range<usize>, DropReason> {
        let Some(h) = datagram
            .get(record.clone())
            .and_then(RecordHeader::parse)
            .filter(|h| HEADER_LEN + usize::from(h.length) == record.len())
        else {
            self.counters.count(DropReason::Truncated);
            return Err(DropReason::Truncated);
        };
        let ct = match h.content_type {
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            _ => {
                self.counters.count(DropReason::Malformed);
                return Err(DropReason::Malformed);
            }
        };
        let r = self.open_body(datagram, record.start, h, ct);
        if let Err(why) = r {
            self.counters.count(why);
        }
        r
    }

    /// Checks and decrypts the fragment of the record at `start` with header
    /// `h`, authenticated as content type `ct`.
    fn open_body(
        &mut self,
        datagram: &mut [u8],
        start: usize,
        h: RecordHeader,
        ct: u8,
    ) -> Result<Range<usize>, DropReason> {
        let body = start + HEADER_LEN;
        let end = body + usize::from(h.length);
        if h.version != DTLS1_2 || end > datagram.len() {
            return Err(DropReason::Malformed);
        }
        if h.epoch != self.epoch {
            return Err(DropReason::WrongEpoch);
        }
        let explicit = self.prot.aead.explicit_nonce_len();
        let len = usize::from(h.length);
        if len < explicit + TAG_LEN || len > MAX_CIPHERTEXT {
            return Err(DropReason::Malformed);
        }
        let plain_len = len - explicit - TAG_LEN;
        if plain_len > MAX_PLAINTEXT {
            return Err(DropReason::Malformed);
        }
        // Cheap check first: a duplicate costs no AEAD work.
        if let Err(v) = self.window.check(h.seq) {
            return Err(match v {
                ReplayVerdict::Replayed => DropReason::Replayed,
                ReplayVerdict::TooOld => DropReason::TooOld,
            });
        }
        let nonce_src: [u8; 8] = if explicit > 0 {
            let mut e = [0u8; 8];
            e.copy_from_slice(&datagram[body..body + 8]);
            e
        } else {
            epoch_seq(h.epoch, h.seq)
        };
        let nonce = self.prot.nonce(&nonce_src);
        let aad = Aad::from(additional_data(h.epoch, h.seq, ct, plain_len));
        let cts = body + explicit;
        match self
            .prot
            .key
            .open_in_place(nonce, aad, &mut datagram[cts..end])
        {
            Ok(p) => {
                debug_assert_eq!(p.len(), plain_len);
                // Only an authentic record moves the window.
                self.window.mark(h.seq);
                Ok(cts..cts + plain_len)
            }
            Err(_) => Err(DropReason::BadTag),
        }
    }

    fn drop(&mut self, r: DropReason) -> Opened {
        self.counters.count(r);
        Opened::Dropped(r)
    }
}

/// The complete records of a datagram, in order, with their ranges; stops at
/// a truncated one.
pub fn records(datagram: &[u8]) -> impl Iterator<Item = (RecordHeader, Range<usize>)> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = RecordHeader::parse(datagram.get(at..)?)?;
        let end = at + HEADER_LEN + usize::from(h.length);
        if end > datagram.len() {
            return None;
        }
        let r = at..end;
        at = end;
        Some((h, r))
    })
}

#[cfg(test)]
mod tests;

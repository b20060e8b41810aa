//! CSTP: the framing of the TLS tunnel after `CONNECT` (protocol.md §2;
//! openconnect `cstp.c`) and the per-session liveness state machine.
//!
//! Frame: `'S' 'T' 'F' 0x01`, 16-bit big-endian payload length, type, `0x00`,
//! payload. openconnect reads exactly one frame per TLS record (it compares the
//! `SSL_read` length with the header), so the caller must write every encoded
//! frame as its own TLS record.
//!
//! [`CstpSession`] takes frames and `Instant`s and says what to do; it never
//! reads a clock or a socket, so every timer rule is tested with simulated time.

use std::time::{Duration, Instant};

use thiserror::Error;

/// `STF\x01`.
pub const MAGIC: [u8; 4] = *b"STF\x01";
/// Header bytes before the payload.
pub const HEADER_LEN: usize = 8;
/// Default largest payload we accept. openconnect itself allows
/// `max(16384, MTU)` (cstp.c `receive_mtu`).
pub const DEFAULT_MAX_PAYLOAD: usize = 16384;
/// First payload byte of the DISCONNECT openconnect sends on exit (cstp.c
/// `cstp_bye`), followed by an ASCII reason.
pub const DISCONNECT_LOGOUT: u8 = 0xb0;
/// Longest reason text we put in a server DISCONNECT.
pub const MAX_DISCONNECT_REASON: usize = 256;

/// CSTP packet type (byte 6 of the header; openconnect `AC_PKT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// 0: an IP packet.
    Data,
    /// 3: dead-peer-detection request (`AC_PKT_DPD_OUT`).
    DpdReq,
    /// 4: DPD response.
    DpdResp,
    /// 5: disconnect notice, payload = code byte + reason text.
    Disconnect,
    /// 7: keepalive.
    Keepalive,
    /// 8: compressed data (we never negotiate compression).
    Compressed,
    /// 9: server terminate (`AC_PKT_TERM_SERVER`).
    Terminate,
    /// Anything else; openconnect quits on an unknown type.
    Unknown(u8),
}

impl FrameType {
    pub const fn from_u8(b: u8) -> Self {
        match b {
            0 => FrameType::Data,
            3 => FrameType::DpdReq,
            4 => FrameType::DpdResp,
            5 => FrameType::Disconnect,
            7 => FrameType::Keepalive,
            8 => FrameType::Compressed,
            9 => FrameType::Terminate,
            other => FrameType::Unknown(other),
        }
    }

    pub const fn to_u8(self) -> u8 {
        match self {
            FrameType::Data => 0,
            FrameType::DpdReq => 3,
            FrameType::DpdResp => 4,
            FrameType::Disconnect => 5,
            FrameType::Keepalive => 7,
            FrameType::Compressed => 8,
            FrameType::Terminate => 9,
            FrameType::Unknown(b) => b,
        }
    }
}

impl From<u8> for FrameType {
    fn from(b: u8) -> Self {
        FrameType::from_u8(b)
    }
}

impl From<FrameType> for u8 {
    fn from(t: FrameType) -> Self {
        t.to_u8()
    }
}

/// Framing errors. Any of them ends that session (log it; never the process).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("bad CSTP magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("CSTP payload of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("payload of {0} bytes does not fit a CSTP frame")]
    PayloadTooLarge(usize),
}

/// Write the 8-byte header for a payload of `len` bytes.
pub fn encode_header(kind: FrameType, len: u16, out: &mut [u8; HEADER_LEN]) {
    let [hi, lo] = len.to_be_bytes();
    *out = [
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        hi,
        lo,
        kind.to_u8(),
        0,
    ];
}

/// A header-only frame (DPD-REQ, DPD-RESP, KEEPALIVE, TERMINATE).
pub const fn empty_frame(kind: FrameType) -> [u8; HEADER_LEN] {
    [
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        0,
        0,
        kind.to_u8(),
        0,
    ]
}

/// Append one frame to `out`; allocates nothing beyond `out`'s growth.
pub fn encode_into(kind: FrameType, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len =
        u16::try_from(payload.len()).map_err(|_| FrameError::PayloadTooLarge(payload.len()))?;
    let mut hdr = [0u8; HEADER_LEN];
    encode_header(kind, len, &mut hdr);
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&hdr);
    out.extend_from_slice(payload);
    Ok(())
}

/// A server DISCONNECT (admin logoff). openconnect logs
/// `Received server disconnect: <code> '<reason>'` for payloads of 2+ bytes,
/// replacing non-printable bytes, and quits without reconnecting. The reason
/// is cut to [`MAX_DISCONNECT_REASON`] bytes of printable ASCII.
pub fn disconnect_frame(reason: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + reason.len().min(MAX_DISCONNECT_REASON));
    payload.push(DISCONNECT_LOGOUT);
    payload.extend(
        reason
            .bytes()
            .take(MAX_DISCONNECT_REASON)
            .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'.' }),
    );
    if payload.len() == 1 {
        // openconnect prints the reason only for payloads of 2+ bytes.
        payload.extend_from_slice(b"Disconnected");
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    // Cannot fail: the payload is at most 1 + MAX_DISCONNECT_REASON bytes.
    let _ = encode_into(FrameType::Disconnect, &payload, &mut out);
    out
}

/// One decoded frame, borrowing its payload from the decoder's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameType,
    pub payload: &'a [u8],
}

/// Decode one frame from the start of `buf`. `Ok(None)` means more bytes are
/// needed; `Ok(Some((frame, n)))` consumed `n` bytes. Header byte 7 is ignored
/// (openconnect always sends 0 there).
pub fn decode_frame(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    // Check the magic as soon as we have it, so garbage fails fast.
    let have = buf.len().min(MAGIC.len());
    if buf.get(..have) != MAGIC.get(..have) {
        let mut m = [0u8; 4];
        if let (Some(dst), Some(src)) = (m.get_mut(..have), buf.get(..have)) {
            dst.copy_from_slice(src);
        }
        return Err(FrameError::BadMagic(m));
    }
    let Some(&[_, _, _, _, hi, lo, kind, _]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > max_payload {
        return Err(FrameError::TooLong {
            len,
            max: max_payload,
        });
    }
    let total = HEADER_LEN + len;
    let Some(payload) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((
        Frame {
            kind: FrameType::from_u8(kind),
            payload,
        },
        total,
    )))
}

/// Streaming decoder: [`feed`](Self::feed) received bytes, then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. Frames borrow
/// the internal buffer (no copy); consumed bytes are discarded on the next
/// `feed`.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    max_payload: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl FrameDecoder {
    /// `max_payload`: e.g. tunnel MTU + 256, or [`DEFAULT_MAX_PAYLOAD`].
    pub fn new(max_payload: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            max_payload,
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Append bytes read from TLS (e.g. [`super::http::RequestParser::take_remaining`]
    /// after the CONNECT, then each read).
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an
    /// error the stream cannot be resynchronised: end the session.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match decode_frame(rest, self.max_payload)? {
            None => Ok(None),
            Some((frame, used)) => {
                self.pos = self.pos.saturating_add(used);
                Ok(Some(frame))
            }
        }
    }

    /// Gives the buffer back when everything was consumed (an idle session
    /// should not keep what a burst of jumbo frames grew it to).
    pub fn shrink_if_empty(&mut self) {
        if self.pending() == 0 {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

// ---------------------------------------------------------------------------
// Session state machine
// ---------------------------------------------------------------------------

/// Timers of one CSTP session. `None` (or a zero duration) disables a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CstpConfig {
    /// Gateway DPD: after this long without receiving anything we send a
    /// DPD-REQ; if nothing arrives within another interval the peer is dead.
    pub dpd_interval: Option<Duration>,
    /// Send a KEEPALIVE after this long without sending anything (keeps NAT
    /// and middlebox state; openconnect just logs it).
    pub keepalive: Option<Duration>,
    /// End when no DATA moved in either direction (either channel) this long.
    pub idle_timeout: Option<Duration>,
    /// End this long after the session started, whatever happens.
    pub session_timeout: Option<Duration>,
}

/// What to do with a received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameAction<'a> {
    /// DATA: hand this IP packet to the dataplane.
    Deliver(&'a [u8]),
    /// DPD-REQ: answer with an empty DPD-RESP (`empty_frame(FrameType::DpdResp)`).
    SendDpdResp,
    /// KEEPALIVE, DPD-RESP to our probe, or anything after the session ended.
    Nothing,
    /// The session ended; see [`EndReason`] (logout, disconnect, protocol error).
    End(EndReason),
}

/// What a timer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerAction {
    Nothing,
    /// Send `empty_frame(FrameType::DpdReq)`.
    SendDpdReq,
    /// Send `empty_frame(FrameType::Keepalive)`.
    SendKeepalive,
    /// The session ended; see [`EndReason`].
    End(EndReason),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// DISCONNECT with `0xb0`: the user logged out (openconnect exit, not
    /// SIGHUP/SIGUSR2). End the session and free the address.
    UserLogout {
        reason: String,
    },
    /// Another DISCONNECT payload (empty, or another code).
    ClientDisconnect {
        code: Option<u8>,
        reason: String,
    },
    /// A frame we never accept from a client: TERMINATE, COMPRESSED (no
    /// compression was negotiated) or an unknown type.
    UnexpectedFrame(FrameType),
    /// No frame for a DPD interval after our DPD-REQ.
    DeadPeer,
    IdleTimeout,
    SessionTimeout,
}

/// Traffic counters (DATA payload bytes, as `show vpn-sessiondb` reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CstpCounters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// Non-DATA frames received (DPD, keepalive, ...).
    pub control_in: u64,
}

/// Liveness and timeout state of one tunnel (see module docs).
#[derive(Debug, Clone)]
pub struct CstpSession {
    config: CstpConfig,
    started: Instant,
    /// Last frame of any type received on CSTP.
    last_rx: Instant,
    /// Last frame of any type we sent (data or control).
    last_tx: Instant,
    last_data_rx: Instant,
    last_data_tx: Instant,
    /// When we sent a DPD-REQ that has not been followed by any receive.
    dpd_sent: Option<Instant>,
    counters: CstpCounters,
    ended: Option<EndReason>,
}

fn enabled(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

impl CstpSession {
    pub fn new(config: CstpConfig, now: Instant) -> Self {
        Self {
            config,
            started: now,
            last_rx: now,
            last_tx: now,
            last_data_rx: now,
            last_data_tx: now,
            dpd_sent: None,
            counters: CstpCounters::default(),
            ended: None,
        }
    }

    /// New idle timeout and absolute session deadline, from a reload that
    /// changed the session's group-policy. A deadline already past ends the
    /// session at the next timer check.
    pub fn set_timeouts(&mut self, idle: Option<Duration>, session_deadline: Option<Instant>) {
        self.config.idle_timeout = idle;
        self.config.session_timeout = session_deadline.map(|d| {
            d.saturating_duration_since(self.started)
                .max(Duration::from_millis(1))
        });
    }

    pub fn config(&self) -> &CstpConfig {
        &self.config
    }

    pub fn counters(&self) -> &CstpCounters {
        &self.counters
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Last DATA in either direction (on either channel).
    pub fn last_data(&self) -> Instant {
        self.last_data_rx.max(self.last_data_tx)
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<&EndReason> {
        self.ended.as_ref()
    }

    fn finish(&mut self, reason: EndReason) -> EndReason {
        self.ended = Some(reason.clone());
        reason
    }

    /// Handle one received frame.
    pub fn on_frame<'a>(
        &mut self,
        now: Instant,
        kind: FrameType,
        payload: &'a [u8],
    ) -> FrameAction<'a> {
        if self.ended.is_some() {
            return FrameAction::Nothing;
        }
        // Any frame proves the peer alive (openconnect does the same).
        self.last_rx = self.last_rx.max(now);
        self.dpd_sent = None;
        if kind != FrameType::Data {
            self.counters.control_in = self.counters.control_in.saturating_add(1);
        }
        match kind {
            FrameType::Data => {
                self.note_data_rx(now, payload.len());
                FrameAction::Deliver(payload)
            }
            FrameType::DpdReq => {
                // The answer is another frame we send.
                self.last_tx = self.last_tx.max(now);
                FrameAction::SendDpdResp
            }
            FrameType::DpdResp | FrameType::Keepalive => FrameAction::Nothing,
            FrameType::Disconnect => {
                let reason = match payload.split_first() {
                    Some((&DISCONNECT_LOGOUT, text)) => EndReason::UserLogout {
                        reason: printable(text),
                    },
                    Some((&code, text)) => EndReason::ClientDisconnect {
                        code: Some(code),
                        reason: printable(text),
                    },
                    None => EndReason::ClientDisconnect {
                        code: None,
                        reason: String::new(),
                    },
                };
                FrameAction::End(self.finish(reason))
            }
            FrameType::Compressed | FrameType::Terminate | FrameType::Unknown(_) => {
                FrameAction::End(self.finish(EndReason::UnexpectedFrame(kind)))
            }
        }
    }

    fn note_data_rx(&mut self, now: Instant, len: usize) {
        self.last_data_rx = self.last_data_rx.max(now);
        self.counters.bytes_in = self.counters.bytes_in.saturating_add(len as u64);
        self.counters.packets_in = self.counters.packets_in.saturating_add(1);
    }

    /// A packet of `len` bytes arrived for this session over DTLS: counts for
    /// the idle timer and counters, not for CSTP liveness.
    pub fn on_data_received(&mut self, now: Instant, len: usize) {
        self.note_data_rx(now, len);
    }

    /// A packet of `len` bytes was sent to the client (CSTP DATA or DTLS).
    /// `on_cstp` says whether it went over this TLS connection.
    pub fn on_data_sent(&mut self, now: Instant, len: usize, on_cstp: bool) {
        self.last_data_tx = self.last_data_tx.max(now);
        if on_cstp {
            self.last_tx = self.last_tx.max(now);
        }
        self.counters.bytes_out = self.counters.bytes_out.saturating_add(len as u64);
        self.counters.packets_out = self.counters.packets_out.saturating_add(1);
    }

    fn dpd_probe_at(&self, dpd: Duration) -> Option<Instant> {
        match self.dpd_sent {
            Some(_) => None,
            None => self.last_rx.checked_add(dpd),
        }
    }

    fn dead_at(&self, dpd: Duration) -> Option<Instant> {
        self.dpd_sent.and_then(|t| t.checked_add(dpd))
    }

    /// The earliest instant at which [`Self::on_timeout`] has work, or `None`
    /// if no timer is armed (or the session ended).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        let dpd = enabled(self.config.dpd_interval);
        [
            dpd.and_then(|d| self.dpd_probe_at(d)),
            dpd.and_then(|d| self.dead_at(d)),
            enabled(self.config.keepalive).and_then(|k| self.last_tx.checked_add(k)),
            enabled(self.config.idle_timeout).and_then(|i| self.last_data().checked_add(i)),
            enabled(self.config.session_timeout).and_then(|s| self.started.checked_add(s)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run due timers. Returns one action per call: act on it and call again
    /// until [`TimerAction::Nothing`], then re-arm with [`Self::poll_timeout`].
    /// Ending takes precedence over probing; a DPD-REQ also serves as a
    /// keepalive.
    pub fn on_timeout(&mut self, now: Instant) -> TimerAction {
        if self.ended.is_some() {
            return TimerAction::Nothing;
        }
        let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);

        if due(enabled(self.config.session_timeout).and_then(|s| self.started.checked_add(s))) {
            return TimerAction::End(self.finish(EndReason::SessionTimeout));
        }
        if due(enabled(self.config.idle_timeout).and_then(|i| self.last_data().checked_add(i))) {
            return TimerAction::End(self.finish(EndReason::IdleTimeout));
        }
        if let Some(dpd) = enabled(self.config.dpd_interval) {
            if due(self.dead_at(dpd)) {
                return TimerAction::End(self.finish(EndReason::DeadPeer));
            }
            if due(self.dpd_probe_at(dpd)) {
                self.dpd_sent = Some(now);
                self.last_tx = self.last_tx.max(now);
                return TimerAction::SendDpdReq;
            }
        }
        if due(enabled(self.config.keepalive).and_then(|k| self.last_tx.checked_add(k))) {
            self.last_tx = self.last_tx.max(now);
            return TimerAction::SendKeepalive;
        }
        TimerAction::Nothing
    }
}

/// Reason text for logs: lossy UTF-8, control characters replaced by `.`.
fn printable(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_gives_its_buffer_back_only_when_empty() {
        let mut f = Vec::new();
        encode_into(FrameType::Data, &[1u8; 9000], &mut f).unwrap();
        let mut d = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
        d.feed(&f[..100]);
        // A partial frame is kept.
        d.shrink_if_empty();
        assert_eq!(d.pending(), 100);
        d.feed(&f[100..]);
        assert_eq!(d.next_frame().unwrap().unwrap().payload.len(), 9000);
        d.shrink_if_empty();
        assert_eq!(d.pending(), 0);
        d.feed(&f);
        assert_eq!(d.next_frame().unwrap().unwrap().kind, FrameType::Data);
    }

    const S: Duration = Duration::from_secs(1);

    fn frame(kind: FrameType, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_into(kind, payload, &mut v).unwrap();
        v
    }

    #[test]
    fn frame_type_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(FrameType::from_u8(b).to_u8(), b);
        }
        assert_eq!(FrameType::from(3), FrameType::DpdReq);
        assert_eq!(FrameType::from_u8(6), FrameType::Unknown(6));
        assert_eq!(u8::from(FrameType::Terminate), 9);
    }

    #[test]
    fn encodes_like_openconnect() {
        let mut h = [0u8; 8];
        encode_header(FrameType::Data, 0x0102, &mut h);
        assert_eq!(h, *b"STF\x01\x01\x02\x00\x00");
        assert_eq!(empty_frame(FrameType::DpdResp), *b"STF\x01\x00\x00\x04\x00");
        assert_eq!(frame(FrameType::Data, b"ab"), b"STF\x01\x00\x02\x00\x00ab");
        let mut out = Vec::new();
        assert_eq!(
            encode_into(FrameType::Data, &vec![0; 65536], &mut out),
            Err(FrameError::PayloadTooLarge(65536))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn disconnect_frame_layout() {
        let f = disconnect_frame("Administrator\x07 reset");
        assert_eq!(&f[..8], b"STF\x01\x00\x15\x05\x00");
        assert_eq!(f[8], 0xb0);
        assert_eq!(&f[9..], b"Administrator. reset");
        let f = disconnect_frame("");
        assert_eq!(&f[9..], b"Disconnected");
        let f = disconnect_frame(&"x".repeat(10_000));
        assert_eq!(f.len(), 8 + 1 + MAX_DISCONNECT_REASON);
    }

    #[test]
    fn partial_frames_across_feeds() {
        let bytes = frame(FrameType::Data, b"\x45hello");
        let mut d = FrameDecoder::default();
        for (i, b) in bytes.iter().enumerate() {
            d.feed(std::slice::from_ref(b));
            let r = d.next_frame().unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(r, None, "at {i}");
            } else {
                assert_eq!(
                    r,
                    Some(Frame {
                        kind: FrameType::Data,
                        payload: b"\x45hello"
                    })
                );
            }
        }
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn two_frames_in_one_buffer_and_a_partial_third() {
        let mut bytes = frame(FrameType::Keepalive, b"");
        bytes.extend(frame(FrameType::Data, b"pkt"));
        bytes.extend_from_slice(b"STF\x01\x00\x04\x00");
        let mut d = FrameDecoder::new(1500);
        d.feed(&bytes);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.payload), (FrameType::Keepalive, &b""[..]));
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.payload), (FrameType::Data, &b"pkt"[..]));
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.pending(), 7);
        d.feed(b"\x00abcd");
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.payload), (FrameType::Data, &b"abcd"[..]));
    }

    #[test]
    fn bad_magic() {
        let mut d = FrameDecoder::default();
        d.feed(b"GET / HTTP/1.1\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadMagic(*b"GET ")));
        // Detected from the first wrong byte, before a full header arrives.
        assert_eq!(
            decode_frame(b"SX", 100),
            Err(FrameError::BadMagic(*b"SX\0\0"))
        );
        assert_eq!(
            decode_frame(b"STF\x02", 100),
            Err(FrameError::BadMagic(*b"STF\x02"))
        );
        assert_eq!(decode_frame(b"ST", 100), Ok(None));
        assert_eq!(decode_frame(b"", 100), Ok(None));
    }

    #[test]
    fn oversize_rejected_from_header_alone() {
        let mut d = FrameDecoder::new(1400 + 256);
        d.feed(b"STF\x01\x06\x81\x00\x00");
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLong {
                len: 0x0681,
                max: 1656
            })
        );
        assert_eq!(decode_frame(b"STF\x01\x06\x80\x00\x00", 1664), Ok(None));
    }

    #[test]
    fn unknown_type_decodes_then_ends_session() {
        let t0 = Instant::now();
        let bytes = frame(FrameType::Unknown(0x42), b"z");
        let (f, n) = decode_frame(&bytes, 100).unwrap().unwrap();
        assert_eq!(n, 9);
        assert_eq!(f.kind, FrameType::Unknown(0x42));
        let mut s = CstpSession::new(cfg(), t0);
        assert_eq!(
            s.on_frame(t0, f.kind, f.payload),
            FrameAction::End(EndReason::UnexpectedFrame(FrameType::Unknown(0x42)))
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.on_frame(t0, FrameType::Data, b"x"), FrameAction::Nothing);
        for kind in [FrameType::Terminate, FrameType::Compressed] {
            let mut s = CstpSession::new(cfg(), t0);
            assert_eq!(
                s.on_frame(t0, kind, b""),
                FrameAction::End(EndReason::UnexpectedFrame(kind))
            );
        }
    }

    fn cfg() -> CstpConfig {
        CstpConfig {
            dpd_interval: Some(30 * S),
            keepalive: Some(20 * S),
            idle_timeout: Some(1800 * S),
            session_timeout: Some(3600 * S),
        }
    }

    fn only_dpd() -> CstpConfig {
        CstpConfig {
            dpd_interval: Some(30 * S),
            keepalive: None,
            idle_timeout: None,
            session_timeout: None,
        }
    }

    #[test]
    fn data_delivered_and_counted() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(cfg(), t0);
        assert_eq!(
            s.on_frame(t0 + S, FrameType::Data, b"abc"),
            FrameAction::Deliver(&b"abc"[..])
        );
        s.on_data_sent(t0 + 2 * S, 100, true);
        s.on_data_received(t0 + 3 * S, 10);
        assert_eq!(
            s.on_frame(t0 + 4 * S, FrameType::Keepalive, b""),
            FrameAction::Nothing
        );
        let c = *s.counters();
        assert_eq!(
            c,
            CstpCounters {
                bytes_in: 13,
                bytes_out: 100,
                packets_in: 2,
                packets_out: 1,
                control_in: 1
            }
        );
        assert_eq!(s.last_data(), t0 + 3 * S);
        assert_eq!(s.last_rx(), t0 + 4 * S);
    }

    #[test]
    fn dpd_request_answered_with_response() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(only_dpd(), t0);
        assert_eq!(
            s.on_frame(t0 + 10 * S, FrameType::DpdReq, b""),
            FrameAction::SendDpdResp
        );
        // Receiving it pushed our own probe out.
        assert_eq!(s.poll_timeout(), Some(t0 + 40 * S));
    }

    #[test]
    fn dpd_req_after_silence_then_answer_keeps_alive() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(only_dpd(), t0);
        assert_eq!(s.poll_timeout(), Some(t0 + 30 * S));
        assert_eq!(s.on_timeout(t0 + 29 * S), TimerAction::Nothing);
        assert_eq!(s.on_timeout(t0 + 30 * S), TimerAction::SendDpdReq);
        // Not sent twice; the next deadline is the dead check.
        assert_eq!(s.on_timeout(t0 + 31 * S), TimerAction::Nothing);
        assert_eq!(s.poll_timeout(), Some(t0 + 60 * S));
        assert_eq!(
            s.on_frame(t0 + 35 * S, FrameType::DpdResp, b""),
            FrameAction::Nothing
        );
        assert_eq!(s.poll_timeout(), Some(t0 + 65 * S));
        assert_eq!(s.on_timeout(t0 + 60 * S), TimerAction::Nothing);
        assert_eq!(s.ended(), None);
    }

    #[test]
    fn dead_after_unanswered_dpd() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(only_dpd(), t0);
        // Timer fired late: the client still gets a full interval to answer.
        assert_eq!(s.on_timeout(t0 + 32 * S), TimerAction::SendDpdReq);
        assert_eq!(s.poll_timeout(), Some(t0 + 62 * S));
        assert_eq!(s.on_timeout(t0 + 61 * S), TimerAction::Nothing);
        assert_eq!(
            s.on_timeout(t0 + 62 * S),
            TimerAction::End(EndReason::DeadPeer)
        );
        assert_eq!(s.ended(), Some(&EndReason::DeadPeer));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.on_timeout(t0 + 100 * S), TimerAction::Nothing);
    }

    #[test]
    fn keepalive_after_send_silence() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(
            CstpConfig {
                keepalive: Some(20 * S),
                ..only_dpd()
            },
            t0,
        );
        assert_eq!(s.poll_timeout(), Some(t0 + 20 * S));
        s.on_data_sent(t0 + 10 * S, 50, true);
        assert_eq!(s.on_timeout(t0 + 20 * S), TimerAction::Nothing);
        // Data sent over DTLS does not refresh the TLS connection.
        s.on_data_sent(t0 + 25 * S, 50, false);
        assert_eq!(s.on_timeout(t0 + 30 * S), TimerAction::SendDpdReq);
        // The DPD-REQ counted as a send.
        assert_eq!(s.on_timeout(t0 + 49 * S), TimerAction::Nothing);
        assert_eq!(s.on_timeout(t0 + 50 * S), TimerAction::SendKeepalive);
        assert_eq!(s.poll_timeout(), Some(t0 + 60 * S));
    }

    #[test]
    fn idle_timeout_counts_data_both_ways_and_dtls() {
        let t0 = Instant::now();
        let c = CstpConfig {
            dpd_interval: None,
            keepalive: None,
            idle_timeout: Some(100 * S),
            session_timeout: None,
        };
        let mut s = CstpSession::new(c, t0);
        s.on_frame(t0 + 50 * S, FrameType::Data, b"x");
        // Keepalives and DPD are not activity.
        s.on_frame(t0 + 120 * S, FrameType::Keepalive, b"");
        assert_eq!(s.on_timeout(t0 + 149 * S), TimerAction::Nothing);
        s.on_data_sent(t0 + 149 * S, 1, false);
        s.on_data_received(t0 + 200 * S, 1);
        assert_eq!(s.poll_timeout(), Some(t0 + 300 * S));
        assert_eq!(s.on_timeout(t0 + 299 * S), TimerAction::Nothing);
        assert_eq!(
            s.on_timeout(t0 + 300 * S),
            TimerAction::End(EndReason::IdleTimeout)
        );
        assert_eq!(
            s.on_frame(t0 + 301 * S, FrameType::Data, b"x"),
            FrameAction::Nothing
        );
    }

    #[test]
    fn set_timeouts_from_a_reload_moves_the_deadlines() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(only_dpd(), t0);
        s.on_frame(t0 + 100 * S, FrameType::Data, b"x");
        // A reload sets a 60 s idle timeout and a deadline at t0 + 120 s.
        s.set_timeouts(Some(60 * S), Some(t0 + 120 * S));
        assert_eq!(s.config().idle_timeout, Some(60 * S));
        assert_eq!(s.config().session_timeout, Some(120 * S));
        assert_eq!(s.on_timeout(t0 + 110 * S), TimerAction::Nothing);
        s.on_frame(t0 + 110 * S, FrameType::Data, b"x");
        assert_eq!(
            s.on_timeout(t0 + 120 * S),
            TimerAction::End(EndReason::SessionTimeout)
        );
        // A deadline already past ends the session at the next check.
        let mut s = CstpSession::new(only_dpd(), t0 + 10 * S);
        s.set_timeouts(None, Some(t0));
        assert_eq!(s.config().idle_timeout, None);
        assert_eq!(
            s.on_timeout(t0 + 11 * S),
            TimerAction::End(EndReason::SessionTimeout)
        );
    }

    #[test]
    fn session_timeout_wins_over_activity() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(cfg(), t0);
        let mut t = t0;
        while t < t0 + 3590 * S {
            t += 10 * S;
            s.on_frame(t, FrameType::Data, b"x");
            s.on_data_sent(t, 1, true);
            assert_eq!(s.on_timeout(t), TimerAction::Nothing);
        }
        assert_eq!(s.poll_timeout(), Some(t0 + 3600 * S));
        assert_eq!(
            s.on_timeout(t0 + 3600 * S),
            TimerAction::End(EndReason::SessionTimeout)
        );
    }

    #[test]
    fn logout_with_reason() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(cfg(), t0);
        // cstp.c cstp_bye(): 0xb0 + reason.
        let bye = frame(FrameType::Disconnect, b"\xb0Client received SIGINT\n");
        let (f, _) = decode_frame(&bye, 16384).unwrap().unwrap();
        assert_eq!(
            s.on_frame(t0, f.kind, f.payload),
            FrameAction::End(EndReason::UserLogout {
                reason: "Client received SIGINT.".into()
            })
        );
        assert!(matches!(s.ended(), Some(EndReason::UserLogout { .. })));
    }

    #[test]
    fn other_disconnects() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(cfg(), t0);
        assert_eq!(
            s.on_frame(t0, FrameType::Disconnect, b"\x01bye\xff"),
            FrameAction::End(EndReason::ClientDisconnect {
                code: Some(1),
                reason: "bye\u{FFFD}".into()
            })
        );
        let mut s = CstpSession::new(cfg(), t0);
        assert_eq!(
            s.on_frame(t0, FrameType::Disconnect, b""),
            FrameAction::End(EndReason::ClientDisconnect {
                code: None,
                reason: String::new()
            })
        );
    }

    #[test]
    fn disabled_timers_and_huge_durations() {
        let t0 = Instant::now();
        let mut s = CstpSession::new(
            CstpConfig {
                dpd_interval: Some(Duration::ZERO),
                keepalive: None,
                idle_timeout: Some(Duration::MAX),
                session_timeout: Some(Duration::MAX),
            },
            t0,
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.on_timeout(t0 + 1_000_000 * S), TimerAction::Nothing);
        // Time going backwards does not panic or rewind state.
        s.on_frame(t0 + 10 * S, FrameType::Keepalive, b"");
        s.on_frame(t0, FrameType::Keepalive, b"");
        assert_eq!(s.last_rx(), t0 + 10 * S);
    }
}

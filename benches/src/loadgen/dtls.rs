//! The DTLS 1.2 PSK-NEGOTIATE client of openconnect (protocol.md section 3):
//! PSK = TLS exporter `EXPORTER-openconnect-psk` of the CSTP connection,
//! identity `psk`, the App-ID in the ClientHello `session_id`. OpenSSL over a
//! memory "BIO" (datagrams in and out by the caller): sans-IO like the
//! headend's `dtls.rs`.
//!
//! OpenSSL puts a session_id into a ClientHello only when it offers to resume a
//! session, so, exactly like openconnect's OpenSSL backend
//! (`openssl-dtls.c: generate_dtls_session`), we hand it a made-up session
//! whose id is the App-ID and whose master key is random: the server does not
//! know it and runs a full PSK handshake.
//!
//! Once the handshake is done with an AEAD suite, application-data records
//! are sealed and opened by the headend's own record layer
//! (`headend::proto::dtls_record`, keys from `headend::dtls_keys`), as the
//! headend does on its side: OpenSSL's generic `SSL_write`/`SSL_read` per
//! record would make the client, not the server, the limit of a throughput
//! run. OpenSSL keeps alerts and anything else that is not application data.

use foreign_types::{ForeignType, ForeignTypeRef};

use headend::proto::dtls_record::{
    FIRST_EPOCH, MAX_HEADROOM, Opened, RecordOpener, RecordSealer, TAILROOM,
};
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslMethod, SslOptions, SslStream, SslVersion};

/// Suites in openconnect's order that OpenSSL and the headend share.
const PSK_CIPHERS: &str = "PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305";

/// OpenSSL functions the `openssl-sys` crate does not declare (libssl 3 has
/// them; openssl-sys links it).
mod ffi {
    use openssl_sys::{SSL, SSL_CIPHER, SSL_SESSION};
    use std::os::raw::{c_int, c_uchar, c_uint};
    unsafe extern "C" {
        pub fn SSL_SESSION_new() -> *mut SSL_SESSION;
        pub fn SSL_SESSION_set1_id(s: *mut SSL_SESSION, sid: *const c_uchar, len: c_uint) -> c_int;
        pub fn SSL_SESSION_set1_master_key(
            s: *mut SSL_SESSION,
            key: *const c_uchar,
            len: usize,
        ) -> c_int;
        pub fn SSL_SESSION_set_cipher(s: *mut SSL_SESSION, c: *const SSL_CIPHER) -> c_int;
        pub fn SSL_SESSION_set_protocol_version(s: *mut SSL_SESSION, v: c_int) -> c_int;
        pub fn SSL_CIPHER_find(ssl: *mut SSL, ptr: *const c_uchar) -> *const SSL_CIPHER;
    }
    /// `DTLS_CTRL_HANDLE_TIMEOUT` (ssl.h), for `DTLSv1_handle_timeout`.
    pub const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;
    pub const DTLS1_2_VERSION: c_int = 0xfefd;
}

/// The BIO under OpenSSL: the headend's own (one datagram in, datagrams out
/// back to back), so client and server move DTLS bytes the same way.
pub use headend::dtls::DatagramIo as Datagrams;

/// The shared client context (one per process).
pub struct DtlsClientContext {
    ctx: SslContext,
    psk_index: openssl::ex_data::Index<Ssl, [u8; 32]>,
}

impl DtlsClientContext {
    pub fn new() -> Result<Self, openssl::error::ErrorStack> {
        let psk_index = Ssl::new_ex_index::<[u8; 32]>()?;
        let mut b = SslContext::builder(SslMethod::dtls())?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_cipher_list(PSK_CIPHERS)?;
        b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
        b.set_psk_client_callback(move |ssl, _hint, identity, out| {
            let Some(psk) = ssl.ex_data(psk_index) else {
                return Ok(0);
            };
            if identity.len() < 4 || out.len() < psk.len() {
                return Ok(0);
            }
            identity[..4].copy_from_slice(b"psk\0");
            out[..psk.len()].copy_from_slice(psk);
            Ok(psk.len())
        });
        Ok(Self {
            ctx: b.build(),
            psk_index,
        })
    }

    /// A client association for `app_id`, keyed with `psk`; the ClientHello is
    /// in [`DtlsClient::take_out`] right away.
    pub fn connect(&self, psk: [u8; 32], app_id: &[u8], mtu: u32) -> Result<DtlsClient, String> {
        let mut ssl = Ssl::new(&self.ctx).map_err(|e| e.to_string())?;
        ssl.set_ex_data(self.psk_index, psk);
        ssl.set_mtu(mtu).map_err(|e| e.to_string())?;
        set_resumption_id(&mut ssl, app_id)?;
        ssl.set_connect_state();
        let stream = SslStream::new(ssl, Datagrams::default()).map_err(|e| e.to_string())?;
        let mut c = DtlsClient {
            stream,
            established: false,
            records: None,
            scratch: vec![0; SCRATCH],
            sealed: Vec::new(),
            sealed_lens: Vec::new(),
        };
        c.drive()?;
        Ok(c)
    }
}

/// A fake session carrying `app_id` as its id (see the module comment).
fn set_resumption_id(ssl: &mut Ssl, app_id: &[u8]) -> Result<(), String> {
    if app_id.is_empty() || app_id.len() > 32 {
        return Err(format!("App-ID of {} bytes", app_id.len()));
    }
    let mut key = [0u8; 48];
    openssl::rand::rand_bytes(&mut key).map_err(|e| e.to_string())?;
    // PSK-AES256-GCM-SHA384 (0x00A9), the first suite of PSK_CIPHERS.
    let suite = [0x00u8, 0xa9];
    // SAFETY: `ssl` is a live SSL*; the session is freshly allocated, checked
    // for NULL, and every pointer/length pair points into live local arrays.
    // SSL_set_session takes its own reference, so we free ours afterwards.
    unsafe {
        let sess = ffi::SSL_SESSION_new();
        if sess.is_null() {
            return Err("SSL_SESSION_new failed".into());
        }
        let cipher = ffi::SSL_CIPHER_find(ssl.as_ptr(), suite.as_ptr());
        let ok = !cipher.is_null()
            && ffi::SSL_SESSION_set_protocol_version(sess, ffi::DTLS1_2_VERSION) == 1
            && ffi::SSL_SESSION_set_cipher(sess, cipher) == 1
            && ffi::SSL_SESSION_set1_master_key(sess, key.as_ptr(), key.len()) == 1
            && ffi::SSL_SESSION_set1_id(sess, app_id.as_ptr(), app_id.len() as u32) == 1
            && openssl_sys::SSL_set_session(ssl.as_ptr(), sess) == 1;
        openssl_sys::SSL_SESSION_free(sess);
        if !ok {
            return Err("cannot put the App-ID into the DTLS session".into());
        }
    }
    Ok(())
}

/// Room to seal one record in place: headroom, a payload up to a 1500-byte
/// path's datagram, the tag.
const SCRATCH: usize = MAX_HEADROOM + MAX_PAYLOAD + TAILROOM;
/// Largest payload (type byte + packet) a record may carry.
const MAX_PAYLOAD: usize = 1500;

/// One client DTLS association.
pub struct DtlsClient {
    stream: SslStream<Datagrams>,
    pub established: bool,
    /// Our own sealer (client write keys) and opener (server write keys)
    /// once established with an AEAD suite; `None`: OpenSSL per record.
    records: Option<(RecordSealer, RecordOpener)>,
    scratch: Vec<u8>,
    /// Records we sealed, back to back, not sent yet (sent after OpenSSL's).
    sealed: Vec<u8>,
    sealed_lens: Vec<usize>,
}

impl DtlsClient {
    fn drive(&mut self) -> Result<(), String> {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.established = true;
                // Not an AEAD suite (cannot happen with PSK_CIPHERS): stay
                // on SSL_read/SSL_write.
                self.records =
                    headend::dtls_keys::client_record_layer(self.stream.ssl(), FIRST_EPOCH).ok();
                Ok(())
            }
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(()),
            Err(e) => Err(format!("DTLS handshake: {e}")),
        }
    }

    /// Hands each datagram to send to `send`, then forgets them.
    pub fn drain_out(&mut self, mut send: impl FnMut(&[u8])) {
        self.stream.get_mut().out.drain(&mut send);
        let mut off = 0;
        for &l in &self.sealed_lens {
            send(&self.sealed[off..off + l]);
            off += l;
        }
        self.sealed.clear();
        self.sealed_lens.clear();
    }

    /// The pending datagrams, copied (tests).
    pub fn take_out(&mut self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        self.drain_out(|d| v.push(d.to_vec()));
        v
    }

    /// The handshake's retransmission timer fired (DTLSv1_handle_timeout).
    pub fn on_timeout(&mut self) {
        // SAFETY: a live SSL*; the ctrl takes no pointer argument.
        unsafe {
            openssl_sys::SSL_ctrl(
                self.stream.ssl().as_ptr(),
                ffi::DTLS_CTRL_HANDLE_TIMEOUT,
                0,
                std::ptr::null_mut(),
            );
        }
    }

    /// Feeds one datagram; decrypted records go to `on_record` (decrypted in
    /// place in `dgram` once our record layer has taken over). `Err` means
    /// the association is dead.
    pub fn input(
        &mut self,
        dgram: &mut [u8],
        rbuf: &mut [u8],
        mut on_record: impl FnMut(&[u8]),
    ) -> Result<(), String> {
        if let Some((_, opener)) = self.records.as_mut() {
            let mut at = 0;
            // Bounded: every step moves the cursor forward or ends the datagram.
            while let Some(r) = opener.open_next(dgram, &mut at) {
                match r {
                    Opened::AppData(range) => on_record(&dgram[range]),
                    // An alert (close_notify) or a retransmitted handshake
                    // message: OpenSSL's read state still has the epoch.
                    Opened::ForOpenssl(range) => {
                        openssl_read(&mut self.stream, &dgram[range], rbuf, &mut on_record)?;
                    }
                    // Counted in the opener.
                    Opened::Dropped(_) => {}
                }
            }
            return Ok(());
        }
        if !self.established {
            self.stream.get_mut().set_inbound(dgram);
            self.drive()?;
            if !self.established {
                self.stream.get_mut().clear_inbound();
                return Ok(());
            }
            // Records that came with the server's Finished.
            read_all(&mut self.stream, rbuf, &mut on_record)?;
            self.stream.get_mut().clear_inbound();
            return Ok(());
        }
        openssl_read(&mut self.stream, dgram, rbuf, &mut on_record)
    }

    /// Records the server sent that our opener dropped (replayed, bad tag,
    /// wrong epoch, truncated).
    pub fn record_drops(&self) -> u64 {
        self.records
            .as_ref()
            .map_or(0, |(_, o)| o.counters().dropped())
    }

    /// Seals one record whose payload (type byte + packet) `fill` writes into
    /// the slice it gets and returns the length of, and queues it; false if
    /// the association cannot send (not established, too long). With our
    /// record layer the payload is built and sealed in place in the queue.
    pub fn write_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if !self.established {
            return false;
        }
        let Some((sealer, _)) = self.records.as_mut() else {
            let n = fill(&mut self.scratch[..MAX_PAYLOAD]);
            return n <= MAX_PAYLOAD && self.stream.ssl_write(&self.scratch[..n]).is_ok();
        };
        let hr = sealer.headroom();
        let start = self.sealed.len();
        self.sealed.resize(start + hr + MAX_PAYLOAD + TAILROOM, 0);
        let n = fill(&mut self.sealed[start + hr..start + hr + MAX_PAYLOAD]);
        if n > MAX_PAYLOAD {
            self.sealed.truncate(start);
            return false;
        }
        match sealer.seal(&mut self.sealed[start..], hr..hr + n) {
            Ok(rec) => {
                self.sealed.truncate(start + rec.end);
                self.sealed_lens.push(rec.len());
                true
            }
            Err(_) => {
                self.sealed.truncate(start);
                false
            }
        }
    }

    /// Hands what is queued to `send` as (bytes, segment size): OpenSSL's
    /// datagrams one by one, then our records in runs of equal size (the last
    /// may be shorter) of at most `max_segs`, for one UDP GSO send each
    /// (`bytes.len() == segment size`: a single datagram). Then forgets them.
    pub fn drain_runs(&mut self, max_segs: usize, mut send: impl FnMut(&[u8], usize)) {
        self.stream.get_mut().out.drain(|d| send(d, d.len()));
        let mut off = 0;
        for (i, j) in headend::dtls::gso_runs(&self.sealed_lens, max_segs) {
            let bytes: usize = self.sealed_lens[i..j].iter().sum();
            send(&self.sealed[off..off + bytes], self.sealed_lens[i]);
            off += bytes;
        }
        self.sealed.clear();
        self.sealed_lens.clear();
    }

    /// Encrypts one record (type byte + payload) into the outbound queue.
    pub fn write_record(&mut self, record: &[u8]) -> bool {
        self.write_with(|buf| {
            let n = record.len().min(buf.len());
            buf[..n].copy_from_slice(&record[..n]);
            if n < record.len() { buf.len() + 1 } else { n }
        })
    }

    /// Whether our record layer seals and opens the data records.
    pub fn own_records(&self) -> bool {
        self.records.is_some()
    }

    pub fn cipher(&self) -> Option<&'static str> {
        self.stream.ssl().current_cipher().map(|c| c.name())
    }
}

/// One datagram through OpenSSL's own read path.
fn openssl_read(
    stream: &mut SslStream<Datagrams>,
    dgram: &[u8],
    rbuf: &mut [u8],
    on_record: &mut impl FnMut(&[u8]),
) -> Result<(), String> {
    stream.get_mut().set_inbound(dgram);
    let r = read_all(stream, rbuf, on_record);
    stream.get_mut().clear_inbound();
    r
}

fn read_all(
    stream: &mut SslStream<Datagrams>,
    rbuf: &mut [u8],
    on_record: &mut impl FnMut(&[u8]),
) -> Result<(), String> {
    // Bounded: each read consumes the one datagram or fails.
    for _ in 0..64 {
        match stream.ssl_read(rbuf) {
            Ok(0) => break,
            Ok(n) => on_record(&rbuf[..n]),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                return Err("server sent close_notify".into());
            }
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use headend::dtls::DtlsServerContext;
    use headend::proto::dtls_hello::client_hello_session_id;

    #[test]
    fn hello_carries_the_app_id_and_handshakes_with_the_headend() {
        let ctx = DtlsClientContext::new().unwrap();
        let app_id = [0x5au8; 32];
        let psk = [9u8; 32];
        let mut c = ctx.connect(psk, &app_id, 1400).unwrap();
        let hello: Vec<Vec<u8>> = c.take_out();
        assert_eq!(hello.len(), 1);
        // The headend routes by exactly this.
        assert_eq!(client_hello_session_id(&hello[0]), Some(&app_id[..]));

        let server_ctx = DtlsServerContext::new().unwrap();
        let mut s = server_ctx
            .channel(psk, "198.18.0.2:1".parse().unwrap(), 1400)
            .unwrap();
        let mut rbuf = vec![0u8; 4096];
        let mut to_server = hello;
        let mut server_got = Vec::new();
        // A handshake is a few flights; bounded.
        for _ in 0..10 {
            for d in to_server.drain(..) {
                s.input(&d, &mut rbuf, |r| server_got.push(r.to_vec()));
            }
            let out = s.outbound();
            if out.is_empty() {
                break;
            }
            let bytes = take_outbound(out);
            for mut d in bytes {
                c.input(&mut d, &mut rbuf, |_| {}).unwrap();
            }
            to_server = c.take_out();
        }
        assert!(c.established && s.established);
        assert_eq!(c.cipher(), Some("PSK-AES256-GCM-SHA384"));
        // Data records go through our record layer, and the headend opens them.
        assert!(c.own_records());
        assert!(c.write_record(&[0, 0x45, 0, 1]));
        assert!(c.write_with(|b| {
            b[..3].copy_from_slice(&[0, 0x45, 2]);
            3
        }));
        for d in c.take_out() {
            s.input(&d, &mut rbuf, |r| server_got.push(r.to_vec()));
        }
        assert_eq!(server_got, vec![vec![0, 0x45, 0, 1], vec![0, 0x45, 2]]);
        // A payload that does not fit is refused, not truncated.
        assert!(!c.write_record(&[0u8; 4000]));

        // The headend's records open in place on our side; a replay of one
        // is dropped and counted.
        assert!(s.write_record(&[0, 0x45, 9, 9]));
        let down = take_outbound(s.outbound());
        assert_eq!(down.len(), 1);
        let mut got = Vec::new();
        let mut d = down[0].clone();
        c.input(&mut d, &mut rbuf, |r| got.push(r.to_vec()))
            .unwrap();
        assert_eq!(got, vec![vec![0, 0x45, 9, 9]]);
        let mut again = down[0].clone();
        c.input(&mut again, &mut rbuf, |r| got.push(r.to_vec()))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(c.record_drops(), 1);
    }

    fn take_outbound(out: &mut headend::dtls::Outbound) -> Vec<Vec<u8>> {
        out.take_datagrams()
    }

    #[test]
    fn wrong_psk_never_establishes_and_junk_is_ignored() {
        let ctx = DtlsClientContext::new().unwrap();
        let mut c = ctx.connect([1; 32], &[1, 2, 3], 1400).unwrap();
        let mut rbuf = vec![0u8; 2048];
        for junk in [&b""[..], &[22u8; 13][..], &[0xff; 300][..]] {
            let mut junk = junk.to_vec();
            let _ = c.input(&mut junk, &mut rbuf, |_| panic!("no record from junk"));
        }
        assert!(!c.established);
        assert!(!c.write_record(&[0, 1]));
        assert!(ctx.connect([1; 32], &[], 1400).is_err());
        assert!(ctx.connect([1; 32], &[0; 33], 1400).is_err());
    }
}

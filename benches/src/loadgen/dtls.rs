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

use foreign_types::{ForeignType, ForeignTypeRef};

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

/// One client DTLS association.
pub struct DtlsClient {
    stream: SslStream<Datagrams>,
    pub established: bool,
}

impl DtlsClient {
    fn drive(&mut self) -> Result<(), String> {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.established = true;
                Ok(())
            }
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(()),
            Err(e) => Err(format!("DTLS handshake: {e}")),
        }
    }

    /// Hands each datagram OpenSSL wants sent to `send`, then forgets them.
    pub fn drain_out(&mut self, send: impl FnMut(&[u8])) {
        self.stream.get_mut().out.drain(send);
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

    /// Feeds one datagram; decrypted records go to `on_record`. `Err` means
    /// the association is dead.
    pub fn input(
        &mut self,
        dgram: &[u8],
        rbuf: &mut [u8],
        mut on_record: impl FnMut(&[u8]),
    ) -> Result<(), String> {
        let io = self.stream.get_mut();
        io.set_inbound(dgram);
        if !self.established {
            self.drive()?;
            if !self.established {
                return Ok(());
            }
        }
        // Bounded: each read consumes the one datagram or fails.
        for _ in 0..64 {
            match self.stream.ssl_read(rbuf) {
                Ok(0) => break,
                Ok(n) => on_record(&rbuf[..n]),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    return Err("server sent close_notify".into());
                }
                Err(_) => break,
            }
        }
        self.stream.get_mut().clear_inbound();
        Ok(())
    }

    /// Encrypts one record (type byte + payload) into the outbound queue.
    pub fn write_record(&mut self, record: &[u8]) -> bool {
        self.established && self.stream.ssl_write(record).is_ok()
    }

    pub fn cipher(&self) -> Option<&'static str> {
        self.stream.ssl().current_cipher().map(|c| c.name())
    }
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
            for d in bytes {
                c.input(&d, &mut rbuf, |_| {}).unwrap();
            }
            to_server = c.take_out();
        }
        assert!(c.established && s.established);
        assert_eq!(c.cipher(), Some("PSK-AES256-GCM-SHA384"));
        assert!(c.write_record(&[0, 0x45, 0, 1]));
        for d in c.take_out() {
            s.input(&d, &mut rbuf, |r| server_got.push(r.to_vec()));
        }
        assert_eq!(server_got, vec![vec![0, 0x45, 0, 1]]);
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
            let _ = c.input(junk, &mut rbuf, |_| panic!("no record from junk"));
        }
        assert!(!c.established);
        assert!(!c.write_record(&[0, 1]));
        assert!(ctx.connect([1; 32], &[], 1400).is_err());
        assert!(ctx.connect([1; 32], &[0; 33], 1400).is_err());
    }
}

//! The OpenSSL side of resume-mode DTLS (legacy-dtls.md section 4): a server
//! context separate from the PSK one (so its session callback never sees
//! App-IDs), with no tickets, no internal cache and Extended Master Secret off,
//! and a fresh session built from the newest CONNECT's master secret for every
//! handshake attempt. The sans-IO choices are in `proto/dtls_resume.rs`.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use openssl::ex_data::Index;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSession, SslSessionCacheMode,
    SslVersion,
};

use crate::dtls::DtlsChannel;
use crate::proto::dtls_resume::{MASTER_SECRET_LEN, ResumeSuite, session_der};

/// Every suite `proto::dtls_resume::choose` can pick.
const RESUME_CIPHERS: &str =
    "AES256-GCM-SHA384:AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256";

/// `SSL_OP_NO_EXTENDED_MASTER_SECRET` (openssl/ssl.h; the crate does not name
/// it). The session comes from a bare master secret, so it has no EMS, and
/// OpenSSL refuses to resume a non-EMS session for a client offering EMS.
const NO_EXTENDED_MASTER_SECRET: u64 = 1 << 0;

/// Lifetime given to each built session; it only has to outlive the handshake.
const SESSION_TIMEOUT_SECS: u64 = 3600;

struct ResumeContext {
    ctx: SslContext,
    /// The session an association may resume (its own, nothing else).
    session: Index<Ssl, SslSession>,
}

fn context() -> Result<&'static ResumeContext> {
    static CTX: OnceLock<Result<ResumeContext, String>> = OnceLock::new();
    CTX.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("DTLS resume context: {e}"))
}

fn build() -> Result<ResumeContext> {
    let session = Ssl::new_ex_index::<SslSession>()?;
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(RESUME_CIPHERS)?;
    b.set_options(
        SslOptions::NO_QUERY_MTU
            | SslOptions::NO_TICKET
            | SslOptions::from_bits_retain(NO_EXTENDED_MASTER_SECRET as _),
    );
    // Sessions come only from the callback below: nothing is cached, so a
    // session id can never be resumed by another association.
    b.set_session_cache_mode(SslSessionCacheMode::SERVER | SslSessionCacheMode::NO_INTERNAL);
    // SAFETY: the callback returns an owned session (a new reference), which is
    // what OpenSSL's get-session callback hands over.
    unsafe {
        b.set_get_session_callback(move |ssl, id| {
            let s = ssl.ex_data(session)?;
            (s.id() == id).then(|| s.clone())
        });
    }
    Ok(ResumeContext {
        ctx: b.build(),
        session,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh server association that resumes `session_id` with `master` and
/// `suite` (and accepts nothing else: without a certificate a full handshake
/// cannot succeed, and openconnect treats one as an attack anyway).
pub fn channel(
    suite: ResumeSuite,
    session_id: &[u8; 32],
    master: &[u8; MASTER_SECRET_LEN],
    peer: SocketAddr,
    mtu: u32,
) -> Result<DtlsChannel> {
    let rc = context()?;
    let der = session_der(suite, session_id, master, now(), SESSION_TIMEOUT_SECS);
    let session = SslSession::from_der(&der)?;
    let mut ssl = Ssl::new(&rc.ctx)?;
    ssl.set_ex_data(rc.session, session);
    ssl.set_mtu(mtu)?;
    DtlsChannel::from_ssl(ssl, peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::DtlsEvent;
    use openssl::ssl::{ErrorCode, SslStream};
    use std::collections::VecDeque;
    use std::io;

    #[derive(Default)]
    struct Io {
        inbox: VecDeque<Vec<u8>>,
        out: Vec<Vec<u8>>,
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

    /// A client resuming like openconnect (gnutls_session_set_premaster): the same
    /// session built on its side, EMS and tickets off.
    fn client(suite: ResumeSuite, sid: &[u8; 32], master: &[u8; 48]) -> SslStream<Io> {
        let mut b = SslContextBuilder::new(SslMethod::dtls()).unwrap();
        b.set_min_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
        b.set_max_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
        b.set_cipher_list(suite.openssl_name()).unwrap();
        b.set_options(
            SslOptions::NO_QUERY_MTU
                | SslOptions::NO_TICKET
                | SslOptions::from_bits_retain(NO_EXTENDED_MASTER_SECRET as _),
        );
        let ctx = b.build();
        let mut ssl = Ssl::new(&ctx).unwrap();
        let session = SslSession::from_der(&session_der(suite, sid, master, now(), 3600)).unwrap();
        // SAFETY: the session is for this client's context's protocol version.
        unsafe { ssl.set_session(&session).unwrap() };
        ssl.set_mtu(1400).unwrap();
        ssl.set_connect_state();
        SslStream::new(ssl, Io::default()).unwrap()
    }

    /// Runs the handshake; returns whether both sides completed.
    fn handshake(server: &mut DtlsChannel, c: &mut SslStream<Io>) -> bool {
        let peer: SocketAddr = "198.18.0.2:5000".parse().unwrap();
        assert_eq!(server.peer, peer);
        let mut rbuf = vec![0u8; 4096];
        let mut server_up = false;
        for _ in 0..10 {
            match c.do_handshake() {
                Ok(()) if server_up => return true,
                Ok(()) => {}
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {}
                Err(e) => {
                    eprintln!("client: {e}");
                    return false;
                }
            }
            let flight: Vec<Vec<u8>> = c.get_mut().out.drain(..).collect();
            for d in flight {
                match server.input(&d, &mut rbuf, |_| {}) {
                    Some(DtlsEvent::Established) => server_up = true,
                    Some(DtlsEvent::Failed(e)) => {
                        eprintln!("server: {e}");
                        return false;
                    }
                    None => {}
                }
            }
            for d in server.outbound().take_datagrams() {
                c.get_mut().inbox.push_back(d);
            }
        }
        false
    }

    const PEER: &str = "198.18.0.2:5000";

    #[test]
    fn each_suite_resumes_and_carries_records() {
        for suite in [
            ResumeSuite::Aes256GcmSha384,
            ResumeSuite::EcdheRsaAes256GcmSha384,
            ResumeSuite::Aes128GcmSha256,
            ResumeSuite::EcdheRsaAes128GcmSha256,
        ] {
            let (sid, master) = ([0x5a; 32], [0x33; 48]);
            let mut s = channel(suite, &sid, &master, PEER.parse().unwrap(), 1400).unwrap();
            let mut c = client(suite, &sid, &master);
            assert!(handshake(&mut s, &mut c), "{suite:?}");
            assert!(c.ssl().session_reused(), "{suite:?}: not a resumption");
            assert_eq!(s.cipher_name(), Some(suite.openssl_name()));
            // A record each way under the derived keys.
            assert!(s.write_record(&[0, 1, 2, 3]));
            for d in s.outbound().take_datagrams() {
                c.get_mut().inbox.push_back(d);
            }
            let mut buf = [0u8; 64];
            let n = c.ssl_read(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[0, 1, 2, 3]);
            c.ssl_write(&[0, 9, 9]).unwrap();
            let mut got = Vec::new();
            let mut rbuf = vec![0u8; 4096];
            for d in c.get_mut().out.drain(..).collect::<Vec<_>>() {
                s.input(&d, &mut rbuf, |r| got.push(r.to_vec()));
            }
            assert_eq!(got, vec![vec![0, 9, 9]]);
        }
    }

    #[test]
    fn wrong_master_or_session_id_never_establishes() {
        let suite = ResumeSuite::Aes256GcmSha384;
        let (sid, master) = ([0x5a; 32], [0x33; 48]);
        let mut s = channel(suite, &sid, &master, PEER.parse().unwrap(), 1400).unwrap();
        let mut c = client(suite, &sid, &[0x34; 48]);
        assert!(!handshake(&mut s, &mut c));
        assert!(!s.established);
        // Another session id: OpenSSL would need a full handshake, which has no
        // certificate to run with.
        let mut s = channel(suite, &sid, &master, PEER.parse().unwrap(), 1400).unwrap();
        let mut c = client(suite, &[0x5b; 32], &master);
        assert!(!handshake(&mut s, &mut c));
        assert!(!s.established);
    }
}

//! OpenSSL glue for `proto::dtls_record`: reads what an established DTLS 1.2
//! association negotiated (suite, master secret, hello randoms) and derives
//! the record keys, so application data can be sealed and opened without
//! OpenSSL per record. OpenSSL keeps the association for everything else
//! (see the `proto::dtls_record` module header for the calling sequence).

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{SslRef, SslVersion};

use crate::proto::dtls_record::{KeyBlock, PrfHash, RecordAead, RecordOpener, RecordSealer};

/// Why the keys of an association cannot be exported: the caller keeps
/// using `SSL_read`/`SSL_write` for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyExportError {
    #[error("DTLS handshake not finished")]
    NotEstablished,
    #[error("not DTLS 1.2 ({0})")]
    NotDtls12(String),
    #[error("suite {0} is not AES-GCM or ChaCha20-Poly1305: records stay with OpenSSL")]
    NotAead(String),
    #[error("suite {0}: PRF hash is neither SHA-256 nor SHA-384")]
    UnknownPrf(String),
    #[error("no session, master secret or hello random on the association")]
    MissingSecrets,
}

/// The suite's record AEAD and the key block of the association.
pub fn export_key_block(ssl: &SslRef) -> Result<(RecordAead, KeyBlock), KeyExportError> {
    if !ssl.is_init_finished() {
        return Err(KeyExportError::NotEstablished);
    }
    if ssl.version2() != Some(SslVersion::DTLS1_2) {
        return Err(KeyExportError::NotDtls12(ssl.version_str().to_string()));
    }
    let cipher = ssl.current_cipher().ok_or(KeyExportError::NotEstablished)?;
    let aead = match cipher.cipher_nid() {
        Some(Nid::AES_128_GCM) => RecordAead::Aes128Gcm,
        Some(Nid::AES_256_GCM) => RecordAead::Aes256Gcm,
        Some(Nid::CHACHA20_POLY1305) => RecordAead::Chacha20Poly1305,
        _ => return Err(KeyExportError::NotAead(cipher.name().to_string())),
    };
    // TLS 1.2's PRF hash is the suite's handshake digest (RFC 5246 §5,
    // RFC 5289 §3.2 for the *_SHA384 suites).
    let md = cipher
        .handshake_digest()
        .ok_or_else(|| KeyExportError::UnknownPrf(cipher.name().to_string()))?;
    let hash = if md.type_() == MessageDigest::sha256().type_() {
        PrfHash::Sha256
    } else if md.type_() == MessageDigest::sha384().type_() {
        PrfHash::Sha384
    } else {
        return Err(KeyExportError::UnknownPrf(cipher.name().to_string()));
    };
    let (mut client_random, mut server_random) = ([0u8; 32], [0u8; 32]);
    let mut master = [0u8; 48];
    let session = ssl.session().ok_or(KeyExportError::MissingSecrets)?;
    let lens = (
        ssl.client_random(&mut client_random),
        ssl.server_random(&mut server_random),
        session.master_key(&mut master),
    );
    if lens != (32, 32, 48) {
        return Err(KeyExportError::MissingSecrets);
    }
    let block = KeyBlock::derive(aead, hash, &master, &server_random, &client_random);
    master.fill(0);
    Ok((aead, block))
}

/// The server's sealer (server write keys) and opener (client write keys)
/// for `epoch` ([`crate::proto::dtls_record::FIRST_EPOCH`] after the first
/// handshake).
pub fn server_record_layer(
    ssl: &SslRef,
    epoch: u16,
) -> Result<(RecordSealer, RecordOpener), KeyExportError> {
    let (_, kb) = export_key_block(ssl)?;
    Ok((
        RecordSealer::new(&kb.server_write, epoch),
        RecordOpener::new(&kb.client_write, epoch),
    ))
}

/// The client's side (tests, load generators).
pub fn client_record_layer(
    ssl: &SslRef,
    epoch: u16,
) -> Result<(RecordSealer, RecordOpener), KeyExportError> {
    let (_, kb) = export_key_block(ssl)?;
    Ok((
        RecordSealer::new(&kb.client_write, epoch),
        RecordOpener::new(&kb.server_write, epoch),
    ))
}

#[cfg(test)]
pub(crate) mod tests;

//! Sealing the SSO token for openconnect's external-browser flow, and the
//! one-time token store behind it.
//!
//! After the ACS accepted a login, the browser is redirected to
//! `http://localhost:29786/api/sso/<blob>`, where openconnect listens. The blob
//! carries the one-time token encrypted to the `X-AnyConnect-STRAP-DH-Pubkey` the
//! client sent with the auth request that started this login (openconnect
//! `hpke.c`, `handle_external_browser`, and `gnutls.c` for the primitives):
//!
//! ```text
//! 00 01, then TLVs (2-byte BE tag, 2-byte BE length), tags 1..4 once each:
//!   1 = server ephemeral P-256 SubjectPublicKeyInfo DER
//!   2 = AES-GCM tag truncated to 12 bytes
//!   3 = ciphertext (same length as the token)
//!   4 = 12-byte IV
//! key = HKDF-SHA256(ikm = ECDH x-coordinate, salt = none, info = "AC_ECIES", 32 bytes)
//! AES-256-GCM, no AAD
//! ```
//! The client URL-decodes the path (`+` becomes a space) and decodes standard
//! base64 with padding, so `+ / =` are percent-encoded here. It then insists the
//! plaintext is alphanumeric.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use aes_gcm::aead::consts::U12;
use aes_gcm::aes::Aes256;
use aes_gcm::{AeadInOut, AesGcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use p256::{PublicKey, SecretKey};
use rand::Rng;
use rand::RngCore;
use sha2::Sha256;

/// AES-256-GCM with a 96-bit nonce and the tag cut to 12 bytes, as hpke.c checks it.
type TokenCipher = AesGcm<Aes256, U12, U12>;

const TAG_PUBKEY: u16 = 1;
const TAG_AEAD_TAG: u16 = 2;
const TAG_CIPHERTEXT: u16 = 3;
const TAG_IV: u16 = 4;
const HKDF_INFO: &[u8] = b"AC_ECIES";

/// Where openconnect's external-browser listener is (IPv6 loopback only: use
/// `localhost`, not 127.0.0.1).
pub const OPENCONNECT_SSO_LISTENER: &str = "http://localhost:29786/api/sso/";

/// Why a token could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrapError {
    #[error("client STRAP DH public key is not base64 / DER of a P-256 SubjectPublicKeyInfo")]
    BadClientKey,
    #[error("SSO token must be non-empty ASCII alphanumeric (openconnect checks)")]
    TokenNotAlphanumeric,
    #[error("sealed token is not percent-encoded standard base64")]
    BadEncoding,
    #[error("sealed token TLVs are malformed")]
    BadTlv,
    #[error("server public key in the sealed token is unusable")]
    BadServerKey,
    #[error("sealed token does not decrypt (wrong key or tampered)")]
    DecryptFailed,
    #[error("crypto failure: {0}")]
    Crypto(String),
}

/// Seals `token` for the client whose `X-AnyConnect-STRAP-DH-Pubkey` is
/// `client_dh_pubkey` (either the header's base64 text or the DER it decodes
/// to) and returns the URL path segment to put after
/// [`OPENCONNECT_SSO_LISTENER`].
pub fn seal_token(client_dh_pubkey: &[u8], token: &str) -> Result<String, StrapError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StrapError::TokenNotAlphanumeric);
    }
    if token.len() > 1024 {
        return Err(StrapError::TokenNotAlphanumeric);
    }
    let client = parse_client_key(client_dh_pubkey)?;

    let eph = EphemeralSecret::generate();
    let eph_spki = eph
        .public_key()
        .to_public_key_der()
        .map_err(|e| StrapError::Crypto(e.to_string()))?;
    let shared = eph.diffie_hellman(&client);
    let key = derive_key(shared.raw_secret_bytes().as_slice())?;

    let mut iv = [0u8; 12];
    rand::rng().fill_bytes(&mut iv);
    let cipher =
        TokenCipher::new_from_slice(&key).map_err(|e| StrapError::Crypto(e.to_string()))?;
    let mut ct = token.as_bytes().to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Nonce::<U12>::from(iv), &[], ct.as_mut_slice().into())
        .map_err(|e| StrapError::Crypto(e.to_string()))?;

    let mut blob = Vec::with_capacity(2 + 4 * 4 + 91 + 12 + ct.len() + 12);
    blob.extend_from_slice(&[0x00, 0x01]);
    push_tlv(&mut blob, TAG_PUBKEY, eph_spki.as_bytes());
    push_tlv(&mut blob, TAG_AEAD_TAG, tag.as_slice());
    push_tlv(&mut blob, TAG_CIPHERTEXT, &ct);
    push_tlv(&mut blob, TAG_IV, &iv);
    Ok(percent_encode_b64(&STANDARD.encode(blob)))
}

/// The full redirect target for the browser: listener URL + sealed token, and
/// optionally `?return=<url>` (openconnect answers with a 302 to it).
pub fn sso_listener_url(sealed: &str, return_url: Option<&str>) -> String {
    match return_url {
        Some(r) => format!(
            "{OPENCONNECT_SSO_LISTENER}{sealed}?return={}",
            super::request::url_encode(r)
        ),
        None => format!("{OPENCONNECT_SSO_LISTENER}{sealed}"),
    }
}

/// The client side, exactly as openconnect's `handle_external_browser` does it:
/// URL-decode (`+` is a space), base64-decode, walk the TLVs with its checks,
/// ECDH with the client's STRAP DH private key, HKDF, AES-256-GCM with a 12-byte
/// tag, then require an alphanumeric token. Public for tests and the lab.
pub fn open_token(client_dh_secret: &SecretKey, path_segment: &str) -> Result<String, StrapError> {
    let b64 = url_decode(path_segment).ok_or(StrapError::BadEncoding)?;
    let data = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| StrapError::BadEncoding)?;

    // hpke.c: the first word must be 0x0001, then TLVs; every tag 1..4 at most
    // once, lengths within the buffer; pubkey, ciphertext, a 12-byte tag and a
    // 12-byte IV required.
    let mut fields: [Option<&[u8]>; 5] = [None; 5];
    let mut pos = 0usize;
    while pos < data.len() {
        if pos + 4 > data.len() {
            return Err(StrapError::BadTlv);
        }
        let tag = u16::from_be_bytes([data[pos], data[pos + 1]]);
        let len = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
        if pos == 0 {
            if tag != 0x0001 {
                return Err(StrapError::BadTlv);
            }
            pos += 2;
            continue;
        }
        if !(TAG_PUBKEY..=TAG_IV).contains(&tag)
            || fields[tag as usize].is_some()
            || pos + 4 + len > data.len()
        {
            return Err(StrapError::BadTlv);
        }
        fields[tag as usize] = Some(&data[pos + 4..pos + 4 + len]);
        pos += len + 4;
    }
    let (Some(pubkey), Some(tag), Some(ct), Some(iv)) = (
        fields[TAG_PUBKEY as usize],
        fields[TAG_AEAD_TAG as usize],
        fields[TAG_CIPHERTEXT as usize],
        fields[TAG_IV as usize],
    ) else {
        return Err(StrapError::BadTlv);
    };
    let tag: [u8; 12] = tag.try_into().map_err(|_| StrapError::BadTlv)?;
    let iv: [u8; 12] = iv.try_into().map_err(|_| StrapError::BadTlv)?;

    let server = PublicKey::from_public_key_der(pubkey).map_err(|_| StrapError::BadServerKey)?;
    let shared =
        p256::ecdh::diffie_hellman(client_dh_secret.to_nonzero_scalar(), server.as_affine());
    let key = derive_key(shared.raw_secret_bytes().as_slice())?;
    let cipher =
        TokenCipher::new_from_slice(&key).map_err(|e| StrapError::Crypto(e.to_string()))?;
    let mut pt = ct.to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::<U12>::from(iv),
            &[],
            pt.as_mut_slice().into(),
            &tag.into(),
        )
        .map_err(|_| StrapError::DecryptFailed)?;
    if pt.is_empty() || !pt.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StrapError::TokenNotAlphanumeric);
    }
    String::from_utf8(pt).map_err(|_| StrapError::TokenNotAlphanumeric)
}

fn parse_client_key(input: &[u8]) -> Result<PublicKey, StrapError> {
    let der = if input.first() == Some(&0x30) {
        input.to_vec()
    } else {
        let text = std::str::from_utf8(input).map_err(|_| StrapError::BadClientKey)?;
        STANDARD
            .decode(text.trim())
            .map_err(|_| StrapError::BadClientKey)?
    };
    PublicKey::from_public_key_der(&der).map_err(|_| StrapError::BadClientKey)
}

fn derive_key(x_coordinate: &[u8]) -> Result<[u8; 32], StrapError> {
    let hk = Hkdf::<Sha256>::new(None, x_coordinate);
    let mut okm = [0u8; 32];
    hk.expand(HKDF_INFO, &mut okm)
        .map_err(|e| StrapError::Crypto(e.to_string()))?;
    Ok(okm)
}

fn push_tlv(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    // Every value here is far below 64 KiB (the token length is capped above).
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// Percent-encodes the three base64 characters the client's URL decoder would
/// otherwise mangle (`+` becomes a space) or that mean something in a path.
fn percent_encode_b64(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + 16);
    for c in b64.chars() {
        match c {
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

/// openconnect's `urldecode_inplace`: `%XX` decoded, `+` becomes a space.
fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'%' => return None,
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Why a token was not redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("unknown or already used SSO token")]
    Unknown,
    #[error("SSO token expired")]
    Expired,
}

struct TokenEntry<C> {
    expires: Instant,
    context: C,
}

/// One-time SSO tokens: minted after a SAML login, redeemed once by the
/// `<sso-token>` auth-reply (possibly on another TLS connection), short-lived.
/// Bounded: when full, the oldest token is dropped (its login must restart).
pub struct SsoTokenStore<C> {
    inner: std::sync::Mutex<TokenInner<C>>,
    ttl: Duration,
    capacity: usize,
}

struct TokenInner<C> {
    map: HashMap<String, TokenEntry<C>>,
    order: VecDeque<String>,
}

/// Token length: 32 alphanumerics, about 190 bits.
const TOKEN_LEN: usize = 32;

impl<C> SsoTokenStore<C> {
    /// `ttl`: how long a token stays redeemable (a minute or two is plenty:
    /// openconnect posts it as soon as the browser hits its listener).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        SsoTokenStore {
            inner: std::sync::Mutex::new(TokenInner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenInner<C>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `context` under a fresh alphanumeric token and returns the token.
    pub fn mint(&self, now: Instant, context: C) -> String {
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(TOKEN_LEN)
            .map(char::from)
            .collect();
        let mut inner = self.lock();
        Self::purge_locked(&mut inner, now);
        while inner.map.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
        inner.order.push_back(token.clone());
        inner.map.insert(
            token.clone(),
            TokenEntry {
                expires: now.checked_add(self.ttl).unwrap_or(now),
                context,
            },
        );
        token
    }

    /// Takes the context of `token`; a token works once.
    pub fn redeem(&self, now: Instant, token: &str) -> Result<C, TokenError> {
        let mut inner = self.lock();
        let entry = inner.map.remove(token).ok_or(TokenError::Unknown)?;
        inner.order.retain(|t| t != token);
        if entry.expires <= now {
            return Err(TokenError::Expired);
        }
        Ok(entry.context)
    }

    /// Drops expired tokens (also done on every mint).
    pub fn purge(&self, now: Instant) {
        Self::purge_locked(&mut self.lock(), now);
    }

    fn purge_locked(inner: &mut TokenInner<C>, now: Instant) {
        inner.map.retain(|_, e| e.expires > now);
        let TokenInner { map, order } = inner;
        order.retain(|t| map.contains_key(t));
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> (SecretKey, String) {
        let sk = SecretKey::generate();
        let der = sk.public_key().to_public_key_der().unwrap();
        (sk, STANDARD.encode(der.as_bytes()))
    }

    #[test]
    fn round_trip_base64_and_der_keys() {
        let (sk, b64) = client();
        let sealed = seal_token(b64.as_bytes(), "AbC123xyz").unwrap();
        assert!(!sealed.contains(['+', '/', '=']));
        assert_eq!(open_token(&sk, &sealed).unwrap(), "AbC123xyz");

        let der = STANDARD.decode(&b64).unwrap();
        let sealed = seal_token(&der, "Z9").unwrap();
        assert_eq!(open_token(&sk, &sealed).unwrap(), "Z9");
    }

    #[test]
    fn blob_layout_matches_hpke_c() {
        let (_, b64) = client();
        let sealed = seal_token(b64.as_bytes(), "tok").unwrap();
        let blob = STANDARD
            .decode(url_decode(&sealed).unwrap().as_bytes())
            .unwrap();
        assert_eq!(&blob[..2], &[0, 1]);
        // tag 1, SPKI of an uncompressed P-256 point is 91 bytes (hpke.c's example: 00 5b)
        assert_eq!(&blob[2..6], &[0, 1, 0, 0x5b]);
        let p = 6 + 0x5b;
        assert_eq!(&blob[p..p + 4], &[0, 2, 0, 12]);
        let p = p + 4 + 12;
        assert_eq!(&blob[p..p + 4], &[0, 3, 0, 3]);
        let p = p + 4 + 3;
        assert_eq!(&blob[p..p + 4], &[0, 4, 0, 12]);
        assert_eq!(blob.len(), p + 4 + 12);
    }

    #[test]
    fn wrong_key_and_tampering_fail() {
        let (_, b64) = client();
        let (other, _) = client();
        let sealed = seal_token(b64.as_bytes(), "tok").unwrap();
        assert_eq!(open_token(&other, &sealed), Err(StrapError::DecryptFailed));
        assert_eq!(
            seal_token(b64.as_bytes(), "not alnum!"),
            Err(StrapError::TokenNotAlphanumeric)
        );
        assert_eq!(
            seal_token(b"bm90IGEga2V5", "tok"),
            Err(StrapError::BadClientKey)
        );
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let store = SsoTokenStore::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let a = store.mint(t0, 1u32);
        let b = store.mint(t0, 2u32);
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(store.redeem(t0, &a), Ok(1));
        assert_eq!(store.redeem(t0, &a), Err(TokenError::Unknown));
        assert_eq!(
            store.redeem(t0 + Duration::from_secs(60), &b),
            Err(TokenError::Expired)
        );
        assert!(store.is_empty());
    }
}

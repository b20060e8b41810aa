//! The TLS 1.2 key block of an AEAD suite (RFC 5246 §6.3), from the PRF of
//! RFC 5246 §5 over the session's master secret and the two hello randoms.
//! DTLS 1.2 uses TLS 1.2's key schedule unchanged (RFC 6347 §4.2.1).

use ring::hmac;

/// The record protection of a negotiated suite. Only AEAD suites are here:
/// CBC/HMAC suites stay with OpenSSL (the key export refuses them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordAead {
    /// `*_AES_128_GCM_*` (RFC 5288).
    Aes128Gcm,
    /// `*_AES_256_GCM_*` (RFC 5288).
    Aes256Gcm,
    /// `*_CHACHA20_POLY1305_*` (RFC 7905).
    Chacha20Poly1305,
}

impl RecordAead {
    /// `enc_key_length` (RFC 5246 §6.3).
    pub const fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm | Self::Chacha20Poly1305 => 32,
        }
    }

    /// `fixed_iv_length`: GCM's 4-byte implicit salt (RFC 5288 §3), or
    /// ChaCha20-Poly1305's 12-byte IV (RFC 7905 §2).
    pub const fn fixed_iv_len(self) -> usize {
        match self {
            Self::Aes128Gcm | Self::Aes256Gcm => 4,
            Self::Chacha20Poly1305 => 12,
        }
    }

    /// `record_iv_length`: GCM sends an 8-byte explicit nonce in each record
    /// (RFC 5288 §3); ChaCha20-Poly1305 sends none (RFC 7905 §2).
    pub const fn explicit_nonce_len(self) -> usize {
        match self {
            Self::Aes128Gcm | Self::Aes256Gcm => 8,
            Self::Chacha20Poly1305 => 0,
        }
    }

    pub(super) fn ring_algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Self::Aes128Gcm => &ring::aead::AES_128_GCM,
            Self::Aes256Gcm => &ring::aead::AES_256_GCM,
            Self::Chacha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
        }
    }
}

/// The PRF's hash: the suite's (SHA-384 for `*_SHA384` suites, RFC 5289 §3.2),
/// SHA-256 otherwise (RFC 5246 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrfHash {
    Sha256,
    Sha384,
}

/// `PRF(secret, label, seed)` of RFC 5246 §5, written into `out`:
/// `P_hash(secret, label + seed)`, where
/// `P_hash = HMAC(secret, A(1) + seed') + HMAC(secret, A(2) + seed') + ...`,
/// `A(0) = seed'`, `A(i) = HMAC(secret, A(i-1))`.
pub fn prf(hash: PrfHash, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let alg = match hash {
        PrfHash::Sha256 => hmac::HMAC_SHA256,
        PrfHash::Sha384 => hmac::HMAC_SHA384,
    };
    let key = hmac::Key::new(alg, secret);
    // A(1) = HMAC(secret, label + seed).
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(label);
    ctx.update(seed);
    let mut a = ctx.sign();
    for chunk in out.chunks_mut(alg.digest_algorithm().output_len()) {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(label);
        ctx.update(seed);
        let block = ctx.sign();
        chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        a = hmac::sign(&key, a.as_ref());
    }
}

/// One direction's record protection: `*_write_key` and `*_write_IV`.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectionKeys {
    pub aead: RecordAead,
    key: [u8; 32],
    iv: [u8; 12],
}

impl DirectionKeys {
    /// Keys from raw bytes (tests, tools). `None` if a length is not the
    /// suite's.
    pub fn new(aead: RecordAead, key: &[u8], iv: &[u8]) -> Option<Self> {
        if key.len() != aead.key_len() || iv.len() != aead.fixed_iv_len() {
            return None;
        }
        let mut k = Self {
            aead,
            key: [0; 32],
            iv: [0; 12],
        };
        k.key[..key.len()].copy_from_slice(key);
        k.iv[..iv.len()].copy_from_slice(iv);
        Some(k)
    }

    pub fn key(&self) -> &[u8] {
        &self.key[..self.aead.key_len()]
    }

    /// The 4-byte GCM salt or the 12-byte ChaCha20-Poly1305 IV.
    pub fn iv(&self) -> &[u8] {
        &self.iv[..self.aead.fixed_iv_len()]
    }
}

impl std::fmt::Debug for DirectionKeys {
    // Key material never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionKeys")
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        self.key = [0; 32];
        self.iv = [0; 12];
    }
}

/// Both directions' keys of one DTLS epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBlock {
    pub client_write: DirectionKeys,
    pub server_write: DirectionKeys,
}

impl KeyBlock {
    /// `key_block = PRF(master_secret, "key expansion", server_random +
    /// client_random)`, cut into client_write_MAC_key, server_write_MAC_key
    /// (both empty for AEAD suites), client_write_key, server_write_key,
    /// client_write_IV, server_write_IV (RFC 5246 §6.3).
    pub fn derive(
        aead: RecordAead,
        hash: PrfHash,
        master_secret: &[u8],
        server_random: &[u8; 32],
        client_random: &[u8; 32],
    ) -> Self {
        let (kl, il) = (aead.key_len(), aead.fixed_iv_len());
        let mut block = [0u8; 2 * 32 + 2 * 12];
        let block = &mut block[..2 * (kl + il)];
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(server_random);
        seed[32..].copy_from_slice(client_random);
        prf(hash, master_secret, b"key expansion", &seed, block);
        let (keys, ivs) = block.split_at(2 * kl);
        let pick = |k: &[u8], i: &[u8]| {
            DirectionKeys::new(aead, k, i).unwrap_or_else(|| unreachable!("lengths from aead"))
        };
        let out = Self {
            client_write: pick(&keys[..kl], &ivs[..il]),
            server_write: pick(&keys[kl..], &ivs[il..]),
        };
        block.fill(0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The TLS 1.2 PRF test vector posted to the IETF TLS list (SHA-256,
    /// 100 bytes), also what `openssl kdf -kdfopt digest:SHA256 TLS1-PRF` gives.
    #[test]
    fn prf_sha256_matches_the_published_vector() {
        let mut out = [0u8; 100];
        prf(
            PrfHash::Sha256,
            &unhex("9bbe436ba940f017b17652849a71db35"),
            b"test label",
            &unhex("a0ba9f936cda311827a6f796ffd5198c"),
            &mut out,
        );
        assert_eq!(
            out.to_vec(),
            unhex(
                "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a
                 6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab
                 4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701
                 87347b66"
            )
        );
    }

    /// SHA-384, 148 bytes (not a multiple of 48), from
    /// `openssl kdf -keylen 148 -kdfopt digest:SHA384 TLS1-PRF` (OpenSSL 3.0.19).
    #[test]
    fn prf_sha384_matches_openssl() {
        let mut out = [0u8; 148];
        prf(
            PrfHash::Sha384,
            &unhex("b80b733d6ceefcdc71566ea48e5567df"),
            b"test label",
            &unhex("cd665cf6a8447dd6ff8b27555edb7465"),
            &mut out,
        );
        assert_eq!(
            out.to_vec(),
            unhex(
                "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cd
                 e9ca0faa60be9fe34f82b1233c9146a0e534cb400fed2700884f9dc236f80edd
                 8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d918425
                 9b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee6
                 91c8f3a26854308d5eaa3be85e0990703d73e56f"
            )
        );
    }

    #[test]
    fn key_block_is_cut_in_rfc_order() {
        let (m, sr, cr) = ([1u8; 48], [2u8; 32], [3u8; 32]);
        for (aead, hash) in [
            (RecordAead::Aes128Gcm, PrfHash::Sha256),
            (RecordAead::Aes256Gcm, PrfHash::Sha384),
            (RecordAead::Chacha20Poly1305, PrfHash::Sha256),
        ] {
            let kb = KeyBlock::derive(aead, hash, &m, &sr, &cr);
            let (kl, il) = (aead.key_len(), aead.fixed_iv_len());
            let mut seed = sr.to_vec();
            seed.extend_from_slice(&cr);
            let mut want = vec![0u8; 2 * (kl + il)];
            prf(hash, &m, b"key expansion", &seed, &mut want);
            assert_eq!(kb.client_write.key(), &want[..kl]);
            assert_eq!(kb.server_write.key(), &want[kl..2 * kl]);
            assert_eq!(kb.client_write.iv(), &want[2 * kl..2 * kl + il]);
            assert_eq!(kb.server_write.iv(), &want[2 * kl + il..]);
            assert_ne!(kb.client_write, kb.server_write);
        }
        // Swapping the randoms gives other keys (the seed's order matters).
        let a = KeyBlock::derive(RecordAead::Aes128Gcm, PrfHash::Sha256, &m, &sr, &cr);
        let b = KeyBlock::derive(RecordAead::Aes128Gcm, PrfHash::Sha256, &m, &cr, &sr);
        assert_ne!(a, b);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let k = DirectionKeys::new(RecordAead::Aes128Gcm, &[0xab; 16], &[0xcd; 4]).unwrap();
        let s = format!("{k:?}");
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab"),
            "{s}"
        );
        assert!(DirectionKeys::new(RecordAead::Aes128Gcm, &[0; 32], &[0; 4]).is_none());
        assert!(DirectionKeys::new(RecordAead::Chacha20Poly1305, &[0; 32], &[0; 4]).is_none());
    }
}

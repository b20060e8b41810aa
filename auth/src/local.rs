//! Local user database (`username NAME password SECRET` lines).
//!
//! The plaintext from the config is never kept: at load each password becomes a
//! PBKDF2-HMAC-SHA256 hash with a random per-user salt, and checks compare hashes
//! in constant time. An unknown user costs the same work as a known one so that
//! response time does not reveal which names exist.

use std::collections::HashMap;

use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Work factor: enough to make an offline guess expensive, small enough that a
/// login burst on a 2-core box stays responsive (~10 ms per check in release).
const PBKDF2_ROUNDS: u32 = 20_000;

struct StoredPassword {
    salt: [u8; 16],
    hash: [u8; 32],
}

/// Result of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Accepted,
    /// Wrong password or unknown user (deliberately not distinguished).
    Rejected,
}

/// Users allowed to log in with a password against LOCAL.
pub struct LocalUserDb {
    users: HashMap<String, StoredPassword>,
    /// Hash target for unknown users so both paths do the same work.
    decoy: StoredPassword,
    rounds: u32,
}

impl std::fmt::Debug for LocalUserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUserDb")
            .field("users", &self.users.len())
            .finish()
    }
}

/// PBKDF2-HMAC-SHA256 (RFC 8018 section 5.2) with one 32-byte output block.
///
/// HMAC's inner and outer key states (RFC 2104) are computed once; after that
/// every iteration is exactly two SHA-256 compressions of a pre-padded block
/// (a 32-byte message fits one block with its padding), with no HMAC object
/// cloned or finalized per iteration. This is the login's largest cost (issue
/// 12: 58 % of the headend's CPU while 64 logins were in flight, 13.5 % of it
/// the generic implementation's per-iteration overhead); the work factor is
/// unchanged, and `derive_matches_the_generic_pbkdf2` checks the output.
fn derive(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    use sha2::Digest;
    use sha2::block_api::compress256;

    const IV: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    // U1 = HMAC(P, S || INT(1)), once per check: the generic HMAC is fine.
    let mut first =
        hmac::Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes a key of any length");
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let u1: [u8; 32] = first.finalize().into_bytes().into();
    if rounds <= 1 {
        return u1;
    }
    // The HMAC key block: the password, or its hash if longer than a block.
    let mut key = [0u8; 64];
    if password.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let (mut inner, mut outer) = (IV, IV);
    compress256(&mut inner, &[key.map(|b| b ^ 0x36)]);
    compress256(&mut outer, &[key.map(|b| b ^ 0x5c)]);
    key.fill(0);
    // One block: 32 message bytes, 0x80, zeros, the bit length of key block
    // plus message (64 + 32 bytes = 768 bits), big-endian.
    let mut block = [0u8; 64];
    block[32] = 0x80;
    block[56..].copy_from_slice(&768u64.to_be_bytes());
    let put = |block: &mut [u8; 64], words: &[u32; 8]| {
        for (dst, w) in block.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
    };
    let mut u = [0u32; 8];
    for (w, b) in u.iter_mut().zip(u1.chunks_exact(4)) {
        *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    }
    let mut acc = u;
    for _ in 1..rounds {
        put(&mut block, &u);
        let mut s = inner;
        compress256(&mut s, &[block]);
        put(&mut block, &s);
        let mut o = outer;
        compress256(&mut o, &[block]);
        u = o;
        for (a, x) in acc.iter_mut().zip(&u) {
            *a ^= x;
        }
    }
    block.fill(0);
    let mut out = [0u8; 32];
    for (dst, w) in out.chunks_exact_mut(4).zip(&acc) {
        dst.copy_from_slice(&w.to_be_bytes());
    }
    out
}

fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    salt
}

impl LocalUserDb {
    /// Builds the database from (username, plaintext password) pairs.
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::with_rounds(users, PBKDF2_ROUNDS)
    }

    fn with_rounds<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>, rounds: u32) -> Self {
        let users = users
            .into_iter()
            .map(|(name, password)| {
                let salt = random_salt();
                let hash = derive(password.as_bytes(), &salt, rounds);
                (name.to_string(), StoredPassword { salt, hash })
            })
            .collect();
        let salt = random_salt();
        let decoy = StoredPassword {
            salt,
            hash: derive(&salt, &salt, rounds),
        };
        Self {
            users,
            decoy,
            rounds,
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Checks a password. Blocking (PBKDF2); call from a blocking-friendly context.
    pub fn check(&self, username: &str, password: &str) -> PasswordCheck {
        let (stored, known) = match self.users.get(username) {
            Some(s) => (s, true),
            None => (&self.decoy, false),
        };
        let candidate = derive(password.as_bytes(), &stored.salt, self.rounds);
        let equal: bool = candidate.ct_eq(&stored.hash).into();
        if equal && known {
            PasswordCheck::Accepted
        } else {
            PasswordCheck::Rejected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> LocalUserDb {
        LocalUserDb::with_rounds([("alice", "s3cret"), ("bob", "hunter2")], 10)
    }

    #[test]
    fn right_password_is_accepted() {
        assert_eq!(db().check("alice", "s3cret"), PasswordCheck::Accepted);
        assert_eq!(db().check("bob", "hunter2"), PasswordCheck::Accepted);
    }

    #[test]
    fn wrong_password_and_unknown_user_are_rejected() {
        let db = db();
        assert_eq!(db.check("alice", "hunter2"), PasswordCheck::Rejected);
        assert_eq!(db.check("alice", ""), PasswordCheck::Rejected);
        assert_eq!(db.check("alice", "s3cret "), PasswordCheck::Rejected);
        assert_eq!(db.check("mallory", "s3cret"), PasswordCheck::Rejected);
        assert_eq!(db.check("", ""), PasswordCheck::Rejected);
    }

    #[test]
    fn usernames_are_case_sensitive() {
        assert_eq!(db().check("Alice", "s3cret"), PasswordCheck::Rejected);
    }

    #[test]
    fn decoy_does_not_accept_its_own_salt() {
        // The decoy hash is derived from its salt; even guessing that must not log in.
        let db = db();
        let salt = db.decoy.salt;
        let guess = String::from_utf8_lossy(&salt).into_owned();
        assert_eq!(db.check("nobody", &guess), PasswordCheck::Rejected);
    }

    #[test]
    fn plaintext_is_not_retained() {
        let db = db();
        let dump = format!("{db:?}");
        assert!(!dump.contains("s3cret"));
        for stored in db.users.values() {
            assert_ne!(&stored.hash[..6], b"s3cret");
        }
    }

    #[test]
    fn derive_matches_the_generic_pbkdf2() {
        let long = "x".repeat(200);
        let passwords: [&[u8]; 6] = [
            b"",
            b"s3cret",
            &[0x41; 63],
            &[0x42; 64],
            &[0x43; 65],
            long.as_bytes(),
        ];
        for password in passwords {
            for rounds in [1, 2, 3, 1000] {
                let salt = random_salt();
                let mut want = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, rounds, &mut want);
                assert_eq!(
                    derive(password, &salt, rounds),
                    want,
                    "password of {} bytes, {rounds} rounds",
                    password.len()
                );
            }
        }
    }

    #[test]
    fn derive_gives_the_rfc_7914_vector() {
        // RFC 7914 section 11, PBKDF2-HMAC-SHA-256 (P "passwd", S "salt",
        // c 1): the first 32 of its 64 bytes.
        let want = [
            0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91, 0xc2, 0x25, 0x44,
            0xb6, 0x05, 0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde, 0x04, 0x65, 0xe6, 0x8b, 0x9d, 0x57,
            0xc2, 0x0d, 0xac, 0xbc,
        ];
        assert_eq!(derive(b"passwd", b"salt", 1), want);
    }
}

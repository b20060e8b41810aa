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

fn derive(password: &[u8], salt: &[u8; 16], rounds: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
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
}

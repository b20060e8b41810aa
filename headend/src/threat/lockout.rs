//! Local user lockout: `aaa local authentication attempts max-fail N` (asa-syntax.md
//! section 4). Sans-IO; the caller logs 113006/113007.
//!
//! ASA counts successive failed attempts per configured local user; at N the
//! user is locked until `clear aaa local user lockout`, and a success before that
//! resets the count. Users with privilege level 15 are never locked out (ASA
//! command reference, `aaa local authentication attempts max-fail`), so an
//! attacker cannot lock out the administrators. Only configured usernames are
//! tracked, so memory is bounded by the config.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserState {
    pub failed_attempts: u32,
    pub locked: bool,
}

#[derive(Debug, Default)]
pub struct LocalLockout {
    max_fail: Option<u32>,
    /// Configured users that can be locked out (privilege below 15).
    users: BTreeMap<String, UserState>,
    /// Configured users of privilege 15: listed, never locked.
    exempt: BTreeMap<String, UserState>,
}

/// What a failed attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Counted,
    /// This attempt locked the user: log 113006 with `max_fail`.
    LockedOut {
        max_fail: u32,
    },
}

impl LocalLockout {
    /// `users`: (name, privilege) of every configured local user.
    pub fn new<'a>(max_fail: Option<u32>, users: impl IntoIterator<Item = (&'a str, u8)>) -> Self {
        let mut l = LocalLockout {
            max_fail,
            ..LocalLockout::default()
        };
        for (name, privilege) in users {
            let map = if privilege >= 15 {
                &mut l.exempt
            } else {
                &mut l.users
            };
            map.insert(name.to_string(), UserState::default());
        }
        l
    }

    /// A reload: the new `max-fail` and users. Users still configured keep
    /// their count and lock (a lower `max-fail` locks them at their next
    /// failure); new users start clean; removed users are forgotten. A user
    /// who became privilege 15 is no longer locked.
    pub fn reconfigure<'a>(
        &mut self,
        max_fail: Option<u32>,
        users: impl IntoIterator<Item = (&'a str, u8)>,
    ) {
        let mut old = std::mem::take(&mut self.users);
        old.append(&mut self.exempt);
        let mut new = LocalLockout::new(max_fail, users);
        for (name, state) in new.users.iter_mut() {
            if let Some(s) = old.get(name) {
                *state = *s;
            }
        }
        for (name, state) in new.exempt.iter_mut() {
            if let Some(s) = old.get(name) {
                *state = UserState {
                    locked: false,
                    ..*s
                };
            }
        }
        *self = new;
    }

    pub fn max_fail(&self) -> Option<u32> {
        self.max_fail
    }

    pub fn is_locked(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|s| s.locked)
    }

    pub fn failed(&mut self, user: &str) -> Failure {
        if let Some(s) = self.exempt.get_mut(user) {
            s.failed_attempts = s.failed_attempts.saturating_add(1);
            return Failure::Counted;
        }
        let Some(s) = self.users.get_mut(user) else {
            return Failure::Counted;
        };
        s.failed_attempts = s.failed_attempts.saturating_add(1);
        match self.max_fail {
            Some(max) if !s.locked && s.failed_attempts >= max => {
                s.locked = true;
                Failure::LockedOut { max_fail: max }
            }
            _ => Failure::Counted,
        }
    }

    pub fn succeeded(&mut self, user: &str) {
        if let Some(s) = self
            .users
            .get_mut(user)
            .or_else(|| self.exempt.get_mut(user))
        {
            s.failed_attempts = 0;
        }
    }

    /// `clear aaa local user lockout username U`: whether `user` was locked.
    pub fn unlock(&mut self, user: &str) -> bool {
        let Some(s) = self.users.get_mut(user) else {
            return false;
        };
        let was = s.locked;
        *s = UserState::default();
        was
    }

    /// `clear aaa local user lockout all`: the users that were locked.
    pub fn unlock_all(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, s) in self.users.iter_mut().chain(self.exempt.iter_mut()) {
            if s.locked {
                out.push(name.clone());
            }
            *s = UserState::default();
        }
        out
    }

    /// Every configured user, by name, for `show aaa local user`.
    pub fn users(&self) -> Vec<(&str, UserState)> {
        let mut v: Vec<(&str, UserState)> = self
            .users
            .iter()
            .chain(self.exempt.iter())
            .map(|(n, s)| (n.as_str(), *s))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout(max: Option<u32>) -> LocalLockout {
        LocalLockout::new(max, [("alice", 2), ("bob", 2), ("root", 15)])
    }

    #[test]
    fn a_reload_keeps_counts_applies_the_new_max_and_tracks_new_users() {
        let mut l = lockout(Some(5));
        for _ in 0..5 {
            l.failed("alice");
        }
        assert!(l.is_locked("alice"));
        l.failed("bob");
        l.failed("bob");
        // max-fail 3, carol added, root removed, bob still privilege 2.
        l.reconfigure(Some(3), [("alice", 2), ("bob", 2), ("carol", 2)]);
        assert!(l.is_locked("alice"), "a lock survives the reload");
        assert_eq!(l.failed("bob"), Failure::LockedOut { max_fail: 3 });
        assert_eq!(l.failed("carol"), Failure::Counted);
        assert_eq!(l.failed("carol"), Failure::Counted);
        assert_eq!(
            l.failed("carol"),
            Failure::LockedOut { max_fail: 3 },
            "a user added by reload is tracked"
        );
        assert!(l.users().iter().all(|(n, _)| *n != "root"));
        // alice becomes privilege 15: never locked.
        l.reconfigure(Some(3), [("alice", 15), ("bob", 2), ("carol", 2)]);
        assert!(!l.is_locked("alice"));
        assert!(l.is_locked("bob"));
    }

    #[test]
    fn successive_failures_lock_until_cleared() {
        let mut l = lockout(Some(3));
        assert_eq!(l.failed("alice"), Failure::Counted);
        assert_eq!(l.failed("alice"), Failure::Counted);
        assert!(!l.is_locked("alice"));
        assert_eq!(l.failed("alice"), Failure::LockedOut { max_fail: 3 });
        assert!(l.is_locked("alice"));
        // Locked: more failures do not log 113006 again.
        assert_eq!(l.failed("alice"), Failure::Counted);
        assert!(!l.is_locked("bob"));
        assert!(l.unlock("alice"));
        assert!(!l.unlock("alice"));
        assert!(!l.is_locked("alice"));
        assert_eq!(l.users()[0], ("alice", UserState::default()));
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut l = lockout(Some(2));
        l.failed("bob");
        l.succeeded("bob");
        assert_eq!(l.failed("bob"), Failure::Counted);
        assert_eq!(l.failed("bob"), Failure::LockedOut { max_fail: 2 });
    }

    #[test]
    fn privilege_15_unknown_users_and_no_max_fail_never_lock() {
        let mut l = lockout(Some(1));
        for _ in 0..5 {
            assert_eq!(l.failed("root"), Failure::Counted);
            assert_eq!(l.failed("mallory"), Failure::Counted);
        }
        assert!(!l.is_locked("root"));
        assert_eq!(l.users().len(), 3, "unknown users are not tracked");
        let mut l = lockout(None);
        for _ in 0..20 {
            assert_eq!(l.failed("alice"), Failure::Counted);
        }
        assert!(!l.is_locked("alice"));
    }

    #[test]
    fn unlock_all_lists_the_locked() {
        let mut l = lockout(Some(1));
        l.failed("bob");
        l.failed("alice");
        assert_eq!(l.unlock_all(), vec!["alice".to_string(), "bob".to_string()]);
        assert!(l.unlock_all().is_empty());
    }
}

//! Bounded in-memory state of a SAML SP: outstanding AuthnRequest IDs (each
//! answered at most once) and accepted assertion IDs (the replay cache). Time is
//! passed in; nothing here reads a clock.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::SystemTime;

use super::reject::SamlReject;

struct RequestEntry {
    expires: SystemTime,
    relay_state: Option<String>,
    answered: bool,
}

/// AuthnRequest IDs we sent and have not seen answered.
///
/// Anyone can make us issue requests (the login URL is public), so the store is
/// bounded and the oldest request is forgotten first: that only fails a slow
/// login, it never lets a response through. An answered ID is kept (marked)
/// until its expiry so a second answer gets a precise reason.
pub(crate) struct RequestStore {
    map: HashMap<String, RequestEntry>,
    order: VecDeque<String>,
    capacity: usize,
}

impl RequestStore {
    pub fn new(capacity: usize) -> Self {
        RequestStore {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn insert(
        &mut self,
        now: SystemTime,
        id: String,
        relay_state: Option<String>,
        expires: SystemTime,
    ) {
        self.purge(now);
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id.clone());
        self.map.insert(
            id,
            RequestEntry {
                expires,
                relay_state,
                answered: false,
            },
        );
    }

    /// Marks `id` answered and returns the RelayState it was sent with. Single
    /// use: a second call for the same ID fails, whatever the first outcome.
    pub fn take(&mut self, now: SystemTime, id: &str) -> Result<Option<String>, SamlReject> {
        let entry = self.map.get_mut(id).ok_or(SamlReject::UnknownRequest)?;
        if entry.answered {
            return Err(SamlReject::RequestAlreadyAnswered);
        }
        entry.answered = true;
        if entry.expires <= now {
            return Err(SamlReject::RequestExpired);
        }
        Ok(entry.relay_state.clone())
    }

    /// Forgets requests past their expiry (answered or not).
    pub fn purge(&mut self, now: SystemTime) {
        self.map.retain(|_, e| e.expires > now);
        let map = &self.map;
        self.order.retain(|id| map.contains_key(id));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Assertion IDs already accepted, each kept until the assertion could no
/// longer be accepted anyway (its effective expiry plus skew). When full of live
/// entries it refuses new logins instead of forgetting (forgetting would reopen
/// replay).
pub(crate) struct ReplayCache {
    until: HashMap<String, SystemTime>,
    by_expiry: BTreeSet<(SystemTime, String)>,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            until: HashMap::new(),
            by_expiry: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn contains(&mut self, now: SystemTime, id: &str) -> bool {
        self.purge(now);
        self.until.contains_key(id)
    }

    /// Records `id` as used until `until`; fails if it was already used.
    pub fn insert(
        &mut self,
        now: SystemTime,
        id: &str,
        until: SystemTime,
    ) -> Result<(), SamlReject> {
        self.purge(now);
        if self.until.contains_key(id) {
            return Err(SamlReject::Replayed);
        }
        if self.until.len() >= self.capacity {
            return Err(SamlReject::ReplayCacheFull);
        }
        self.until.insert(id.to_string(), until);
        self.by_expiry.insert((until, id.to_string()));
        Ok(())
    }

    pub fn purge(&mut self, now: SystemTime) {
        while let Some((t, _)) = self.by_expiry.first() {
            if *t > now {
                break;
            }
            if let Some((_, id)) = self.by_expiry.pop_first() {
                self.until.remove(&id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn request_ids_are_single_use_and_expire() {
        let mut s = RequestStore::new(10);
        s.insert(t(0), "_a".into(), Some("rs".into()), t(600));
        s.insert(t(0), "_b".into(), None, t(600));
        assert_eq!(s.take(t(1), "_a"), Ok(Some("rs".into())));
        assert_eq!(s.take(t(2), "_a"), Err(SamlReject::RequestAlreadyAnswered));
        assert_eq!(s.take(t(2), "_zz"), Err(SamlReject::UnknownRequest));
        assert_eq!(s.take(t(600), "_b"), Err(SamlReject::RequestExpired));
        s.purge(t(601));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn request_store_forgets_oldest_when_full() {
        let mut s = RequestStore::new(2);
        for id in ["_1", "_2", "_3"] {
            s.insert(t(0), id.into(), None, t(600));
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.take(t(1), "_1"), Err(SamlReject::UnknownRequest));
        assert!(s.take(t(1), "_3").is_ok());
    }

    #[test]
    fn replay_cache_keeps_until_expiry_and_fails_closed() {
        let mut c = ReplayCache::new(2);
        c.insert(t(0), "a", t(100)).unwrap();
        assert_eq!(c.insert(t(1), "a", t(100)), Err(SamlReject::Replayed));
        c.insert(t(1), "b", t(200)).unwrap();
        assert_eq!(
            c.insert(t(2), "c", t(200)),
            Err(SamlReject::ReplayCacheFull)
        );
        assert!(c.contains(t(99), "a"));
        assert!(!c.contains(t(100), "a"));
        c.insert(t(100), "c", t(300)).unwrap();
        assert_eq!(c.len(), 2);
    }
}

//! Logins in progress, between the redirect to the provider and the
//! callback, and between the callback and the person's confirmation. Each
//! entry is bound to one pending registration, taken at most once, forgotten
//! after a while, and their number is bounded so nobody can fill memory by
//! opening links.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use parking_lot::Mutex;

/// Entries keyed by an unguessable token. Time is a parameter.
#[derive(Debug)]
pub(crate) struct SingleUse<T> {
    entries: Mutex<HashMap<String, (DateTime<Utc>, T)>>,
    ttl: Duration,
    max: usize,
}

impl<T> SingleUse<T> {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max: max.max(1),
        }
    }

    /// Stores `value` under `key`. Expired entries go first; when still
    /// full, the oldest entry makes room.
    pub(crate) fn insert(&self, key: String, value: T, now: DateTime<Utc>) {
        let mut entries = self.entries.lock();
        entries.retain(|_, (at, _)| now - *at < self.ttl);
        while entries.len() >= self.max {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            entries.remove(&oldest);
        }
        entries.insert(key, (now, value));
    }

    /// Removes and returns the entry, if it is there and has not expired.
    pub(crate) fn take(&self, key: &str, now: DateTime<Utc>) -> Option<T> {
        let (at, value) = self.entries.lock().remove(key)?;
        (now - at < self.ttl).then_some(value)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn an_entry_is_taken_once() {
        let s = SingleUse::new(Duration::minutes(10), 10);
        s.insert("state".into(), 1, t0());
        assert_eq!(s.take("state", t0()), Some(1));
        assert_eq!(s.take("state", t0()), None);
        assert_eq!(s.take("other", t0()), None);
    }

    #[test]
    fn an_entry_expires() {
        let s = SingleUse::new(Duration::minutes(10), 10);
        s.insert("state".into(), 1, t0());
        assert_eq!(s.take("state", t0() + Duration::minutes(10)), None);
        s.insert("a".into(), 2, t0());
        s.insert("b".into(), 3, t0() + Duration::minutes(11));
        assert_eq!(s.len(), 1, "inserting prunes expired entries");
    }

    #[test]
    fn the_oldest_entry_makes_room() {
        let s = SingleUse::new(Duration::minutes(10), 2);
        s.insert("a".into(), 1, t0());
        s.insert("b".into(), 2, t0() + Duration::seconds(1));
        s.insert("c".into(), 3, t0() + Duration::seconds(2));
        assert_eq!(s.len(), 2);
        assert_eq!(s.take("a", t0()), None);
        assert_eq!(s.take("b", t0()), Some(2));
        assert_eq!(s.take("c", t0()), Some(3));
    }
}

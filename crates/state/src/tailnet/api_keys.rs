//! API keys: the credentials of the admin API (REST and gRPC) over the
//! network. The local unix socket needs none; it is trusted by its file
//! permissions.
//!
//! A key is `hskey-api-<prefix>-<secret>` (headscale's form): shown once at
//! creation, stored as the SHA-256 of its 256-bit random secret (see
//! [`crate::keys`] for why a fast hash is right here), listed by prefix.
//!
//! Checking a key never touches the database: the keys live in memory. The
//! time of last use is kept in memory at once and written to the store at
//! most once a minute per key ([`Tailnet::persist_api_key_use`]), so an API
//! call is not a database write.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::Tailnet;
use crate::error::{Error, Result};
use crate::keys::{self, API_KEY_PREFIX};
use crate::model::{ApiKey, ApiKeyId};

/// How stale the stored last-use time may get before a use writes it.
pub const LAST_SEEN_WRITE_INTERVAL: Duration = Duration::minutes(1);

/// The keys in memory.
#[derive(Debug, Default)]
pub(crate) struct ApiKeys {
    by_id: BTreeMap<ApiKeyId, ApiKey>,
    by_prefix: HashMap<String, ApiKeyId>,
}

impl ApiKeys {
    pub(crate) fn load(keys: Vec<ApiKey>) -> Self {
        let mut all = ApiKeys::default();
        for k in keys {
            all.put(k);
        }
        all
    }

    fn put(&mut self, key: ApiKey) {
        self.by_prefix.insert(key.prefix.clone(), key.id);
        self.by_id.insert(key.id, key);
    }

    fn remove(&mut self, id: ApiKeyId) -> Option<ApiKey> {
        let key = self.by_id.remove(&id)?;
        self.by_prefix.remove(&key.prefix);
        Some(key)
    }
}

/// A key that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyUse {
    pub id: ApiKeyId,
    pub prefix: String,
    /// The stored last-use time is stale: call
    /// [`Tailnet::persist_api_key_use`] (off the request path).
    pub persist_due: bool,
}

/// The one message for a key that is not accepted: it says neither whether
/// the prefix exists nor anything of what was sent.
/// The longest description an API key may carry.
pub const MAX_API_KEY_DESCRIPTION: usize = 200;

pub const INVALID_API_KEY: &str = "invalid API key: create one with `headway apikeys create` and send it as `Authorization: Bearer <key>`";

impl Tailnet {
    /// Creates an API key valid until `expiration` (`None`: never expires).
    /// Returns the stored record and the full key, shown this once.
    pub async fn create_api_key(
        &self,
        expiration: Option<DateTime<Utc>>,
    ) -> Result<(ApiKey, String)> {
        self.create_described_api_key(expiration, "").await
    }

    /// [`Tailnet::create_api_key`] with a description of what the key is
    /// for (at most [`MAX_API_KEY_DESCRIPTION`] characters, one line).
    pub async fn create_described_api_key(
        &self,
        expiration: Option<DateTime<Utc>>,
        description: &str,
    ) -> Result<(ApiKey, String)> {
        let description = description.trim();
        if description.chars().count() > MAX_API_KEY_DESCRIPTION
            || description.chars().any(char::is_control)
        {
            return Err(Error::Invalid(format!(
                "the description must be one line of at most {MAX_API_KEY_DESCRIPTION} characters"
            )));
        }
        let now = self.now();
        if let Some(exp) = expiration
            && exp <= now
        {
            return Err(Error::Invalid(format!(
                "expiration {} is in the past; give a positive duration such as --expiration 90d",
                exp.to_rfc3339()
            )));
        }
        let _w = self.write.lock().await;
        let secret = keys::generate(API_KEY_PREFIX);
        let mut key = ApiKey {
            id: 0,
            prefix: secret.prefix,
            hash: keys::SecretHash::Sha256(secret.hash),
            expiration,
            created_at: now,
            last_seen: None,
            description: description.to_string(),
        };
        let mut tx = self.store.begin().await?;
        key.id = tx.insert_api_key(&key).await?;
        tx.commit().await?;
        self.api_keys.write().put(key.clone());
        tracing::info!(api_key.id = key.id, api_key.prefix = %key.prefix, "API key created");
        Ok((key, secret.full))
    }

    /// Every key, sorted by id.
    pub fn list_api_keys(&self) -> Vec<ApiKey> {
        self.api_keys.read().by_id.values().cloned().collect()
    }

    /// The key with this prefix (as listed), or with this id.
    pub fn find_api_key(&self, prefix_or_id: &str) -> Result<ApiKey> {
        let keys = self.api_keys.read();
        let text = prefix_or_id.trim();
        let text = keys::split(API_KEY_PREFIX, text)
            .map(|(prefix, _)| prefix)
            .unwrap_or(text);
        keys.by_prefix
            .get(text)
            .copied()
            .or_else(|| text.parse::<ApiKeyId>().ok())
            .and_then(|id| keys.by_id.get(&id))
            .cloned()
            .ok_or_else(|| Error::not_found("API key", prefix_or_id))
    }

    /// Expires the key now (it stays listed). Expiring an expired key keeps
    /// its original expiry.
    pub async fn expire_api_key(&self, id: ApiKeyId) -> Result<ApiKey> {
        let _w = self.write.lock().await;
        let Some(mut key) = self.api_keys.read().by_id.get(&id).cloned() else {
            return Err(Error::not_found("API key", id));
        };
        let now = self.now();
        if !key.is_expired(now) {
            key.expiration = Some(now);
        }
        let mut tx = self.store.begin().await?;
        tx.update_api_key(&key).await?;
        tx.commit().await?;
        self.api_keys.write().put(key.clone());
        tracing::info!(api_key.id = id, "API key expired");
        Ok(key)
    }

    pub async fn delete_api_key(&self, id: ApiKeyId) -> Result<()> {
        let _w = self.write.lock().await;
        if !self.api_keys.read().by_id.contains_key(&id) {
            return Err(Error::not_found("API key", id));
        }
        let mut tx = self.store.begin().await?;
        tx.delete_api_key(id).await?;
        tx.commit().await?;
        self.api_keys.write().remove(id);
        tracing::info!(api_key.id = id, "API key deleted");
        Ok(())
    }

    /// Checks a presented key (in memory, constant-time comparison of the
    /// secret's hash) and notes its use. Refusals are
    /// [`Error::Unauthorized`] with a message that quotes nothing sent.
    pub fn authenticate_api_key(&self, text: &str) -> Result<ApiKeyUse> {
        let invalid = || Error::Unauthorized(INVALID_API_KEY.into());
        let text = text.trim();
        // Headway's shape, or headscale's older `prefix.secret` (imported).
        let (prefix, secret) = keys::split(API_KEY_PREFIX, text)
            .or_else(|| keys::split_legacy_api_key(text))
            .ok_or_else(invalid)?;
        let now = self.now();
        // Verified under the read lock; the use is noted under the write
        // lock only when the stored time is stale (once a minute a key).
        let (id, prefix, persist_due) = {
            let keys = self.api_keys.read();
            let key = keys
                .by_prefix
                .get(prefix)
                .and_then(|id| keys.by_id.get(id))
                .ok_or_else(invalid)?;
            if !key.hash.verify(secret) {
                return Err(invalid());
            }
            if key.is_expired(now) {
                return Err(Error::Unauthorized(format!(
                    "API key {API_KEY_PREFIX}{}-*** expired; create a new one with `headway apikeys create`",
                    key.prefix
                )));
            }
            let due = key
                .last_seen
                .is_none_or(|seen| now - seen >= LAST_SEEN_WRITE_INTERVAL);
            (key.id, key.prefix.clone(), due)
        };
        let persist_due = persist_due && {
            let mut keys = self.api_keys.write();
            match keys.by_id.get_mut(&id) {
                // Re-checked: another request may have just noted it.
                Some(key)
                    if key
                        .last_seen
                        .is_none_or(|seen| now - seen >= LAST_SEEN_WRITE_INTERVAL) =>
                {
                    key.last_seen = Some(now);
                    true
                }
                _ => false,
            }
        };
        Ok(ApiKeyUse {
            id,
            prefix,
            persist_due,
        })
    }

    /// Writes a key's last-use time as memory has it. Called after
    /// [`Tailnet::authenticate_api_key`] said `persist_due`, off the request
    /// path; a key deleted meanwhile is skipped.
    pub async fn persist_api_key_use(&self, id: ApiKeyId) -> Result<()> {
        let _w = self.write.lock().await;
        let Some(key) = self.api_keys.read().by_id.get(&id).cloned() else {
            return Ok(());
        };
        let mut tx = self.store.begin().await?;
        tx.update_api_key(&key).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::clock::ManualClock;
    use crate::memstore::MemStore;
    use crate::settings::Settings;
    use crate::store::Store;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    async fn tailnet() -> (Arc<Tailnet>, MemStore, Arc<ManualClock>) {
        let store = MemStore::default();
        let clock = Arc::new(ManualClock::new(t0()));
        let t = Tailnet::load(Arc::new(store.clone()), clock.clone(), Settings::default())
            .await
            .unwrap();
        (t, store, clock)
    }

    async fn stored(store: &MemStore) -> Vec<ApiKey> {
        store.load().await.unwrap().api_keys
    }

    #[tokio::test]
    async fn a_created_key_authenticates_and_is_stored_hashed() {
        let (t, store, _) = tailnet().await;
        let (key, full) = t
            .create_api_key(Some(t0() + Duration::days(90)))
            .await
            .unwrap();
        assert!(full.starts_with("hskey-api-"), "{full}");
        let (prefix, secret) = keys::split(API_KEY_PREFIX, &full).unwrap();
        assert_eq!(prefix, key.prefix);
        assert_eq!((prefix.len(), secret.len()), (12, 64));
        let saved = stored(&store).await;
        assert_eq!(saved, vec![key.clone()]);
        assert!(!format!("{saved:?}").contains(secret));
        let used = t.authenticate_api_key(&full).unwrap();
        assert_eq!(used.id, key.id);
        assert!(used.persist_due);
    }

    #[tokio::test]
    async fn wrong_unknown_expired_and_deleted_keys_are_refused() {
        let (t, _, clock) = tailnet().await;
        let (key, full) = t
            .create_api_key(Some(t0() + Duration::hours(1)))
            .await
            .unwrap();
        let wrong = format!("{API_KEY_PREFIX}{}-{}", key.prefix, "0".repeat(64));
        let unknown = format!("{API_KEY_PREFIX}000000000000-{}", "0".repeat(64));
        for bad in [
            "",
            "Bearer",
            wrong.as_str(),
            unknown.as_str(),
            &full[..full.len() - 1],
        ] {
            let e = t.authenticate_api_key(bad).unwrap_err();
            assert!(matches!(e, Error::Unauthorized(_)), "{bad}: {e}");
            assert!(!e.to_string().contains(&full[23..]), "{e}");
        }
        clock.advance(Duration::hours(2));
        let e = t.authenticate_api_key(&full).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");

        let (key2, full2) = t.create_api_key(None).await.unwrap();
        t.authenticate_api_key(&full2).unwrap();
        t.delete_api_key(key2.id).await.unwrap();
        assert!(t.authenticate_api_key(&full2).is_err());
    }

    #[tokio::test]
    async fn expiring_stops_the_key_now_and_keeps_it_listed() {
        let (t, store, clock) = tailnet().await;
        let (key, full) = t.create_api_key(None).await.unwrap();
        clock.advance(Duration::minutes(3));
        let expired = t.expire_api_key(key.id).await.unwrap();
        assert_eq!(expired.expiration, Some(t0() + Duration::minutes(3)));
        assert!(t.authenticate_api_key(&full).is_err());
        assert_eq!(t.list_api_keys().len(), 1);
        assert_eq!(stored(&store).await[0].expiration, expired.expiration);
        // Again: the first expiry stays.
        clock.advance(Duration::minutes(3));
        let again = t.expire_api_key(key.id).await.unwrap();
        assert_eq!(again.expiration, expired.expiration);
        assert!(t.expire_api_key(999).await.is_err());
        assert!(t.delete_api_key(999).await.is_err());
    }

    #[tokio::test]
    async fn last_use_is_written_at_most_once_a_minute() {
        let (t, store, clock) = tailnet().await;
        let (key, full) = t.create_api_key(None).await.unwrap();
        let first = t.authenticate_api_key(&full).unwrap();
        assert!(first.persist_due);
        // Memory knows at once; the store when asked to persist.
        assert_eq!(t.find_api_key(&key.prefix).unwrap().last_seen, Some(t0()));
        assert_eq!(stored(&store).await[0].last_seen, None);
        t.persist_api_key_use(key.id).await.unwrap();
        assert_eq!(stored(&store).await[0].last_seen, Some(t0()));
        clock.advance(Duration::seconds(30));
        for _ in 0..100 {
            assert!(!t.authenticate_api_key(&full).unwrap().persist_due);
        }
        clock.advance(Duration::seconds(31));
        assert!(t.authenticate_api_key(&full).unwrap().persist_due);
        assert!(!t.authenticate_api_key(&full).unwrap().persist_due);
    }

    #[tokio::test]
    async fn keys_are_found_by_prefix_full_text_or_id_and_survive_a_reload() {
        let (t, store, _) = tailnet().await;
        let (key, full) = t.create_api_key(None).await.unwrap();
        assert_eq!(t.find_api_key(&key.prefix).unwrap().id, key.id);
        assert_eq!(t.find_api_key(&full).unwrap().id, key.id);
        assert_eq!(t.find_api_key(&key.id.to_string()).unwrap().id, key.id);
        assert!(t.find_api_key("nope").is_err());
        let reloaded = Tailnet::load(
            Arc::new(store.clone()),
            Arc::new(ManualClock::new(t0())),
            Settings::default(),
        )
        .await
        .unwrap();
        assert_eq!(reloaded.authenticate_api_key(&full).unwrap().id, key.id);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let (t, store, _) = tailnet().await;
        let (key, _) = t.create_api_key(None).await.unwrap();
        store.fail_commits(true);
        assert!(t.create_api_key(None).await.is_err());
        assert!(t.expire_api_key(key.id).await.is_err());
        assert!(t.delete_api_key(key.id).await.is_err());
        assert_eq!(t.list_api_keys(), vec![key]);
    }

    #[tokio::test]
    async fn an_expiration_in_the_past_is_refused() {
        let (t, _, _) = tailnet().await;
        let e = t
            .create_api_key(Some(t0() - Duration::seconds(1)))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(t.list_api_keys().is_empty());
    }
}

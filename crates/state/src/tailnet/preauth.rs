//! Pre-auth keys: created for a user (or for tags alone), used at registration.

use chrono::{DateTime, Utc};

use super::{Tailnet, normalize_tags};
use crate::error::{Error, Result};
use crate::keys::{self, AUTH_KEY_PREFIX};
use crate::model::{PreAuthKey, PreAuthKeyId, UserId};

#[derive(Debug, Default, Clone)]
pub struct NewPreAuthKey {
    /// Owner of the nodes it registers; `None` needs `tags`.
    pub user: Option<UserId>,
    pub reusable: bool,
    pub ephemeral: bool,
    pub expiration: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
}

/// Why a presented key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRefusal {
    Unknown,
    Expired,
    Used,
}

impl KeyRefusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            KeyRefusal::Unknown => {
                "invalid auth key: no such pre-auth key on this server (check for typos, or create one with `headway preauthkeys create`)"
            }
            KeyRefusal::Expired => {
                "auth key expired: create a new one with `headway preauthkeys create`"
            }
            KeyRefusal::Used => {
                "auth key already used: it was a single-use key; create a new one or use --reusable"
            }
        }
    }
}

impl Tailnet {
    /// Creates a key. Returns the stored record and the full key text, which
    /// is shown once and never stored.
    pub async fn create_preauth_key(&self, new: NewPreAuthKey) -> Result<(PreAuthKey, String)> {
        let tags = normalize_tags(&new.tags)?;
        // An administrator makes keys: any tag the policy defines.
        self.check_tag_claim(None, &tags)?;
        if new.user.is_none() && tags.is_empty() {
            return Err(Error::Invalid(
                "a pre-auth key needs a user (--user) or tags (--tags)".into(),
            ));
        }
        let now = self.now();
        if let Some(exp) = new.expiration
            && exp <= now
        {
            return Err(Error::Invalid(format!(
                "expiration {} is in the past; give a positive duration such as --expiration 24h",
                exp.to_rfc3339()
            )));
        }
        let _w = self.write.lock().await;
        if let Some(u) = new.user {
            self.require_user(u)?;
        }
        let secret = keys::generate(AUTH_KEY_PREFIX);
        let mut key = PreAuthKey {
            id: 0,
            prefix: secret.prefix,
            hash: keys::SecretHash::Sha256(secret.hash),
            user_id: new.user,
            reusable: new.reusable,
            ephemeral: new.ephemeral,
            used: false,
            expiration: new.expiration,
            created_at: now,
            tags,
        };
        let mut tx = self.store.begin().await?;
        key.id = tx.insert_preauth_key(&key).await?;
        tx.commit().await?;
        self.inner.write().put_key(key.clone());
        tracing::info!(key.id = key.id, key.prefix = %key.prefix, user = ?key.user_id, "pre-auth key created");
        Ok((key, secret.full))
    }

    pub fn list_preauth_keys(&self, user: Option<UserId>) -> Vec<PreAuthKey> {
        self.inner
            .read()
            .keys
            .values()
            .filter(|k| user.is_none() || k.user_id == user)
            .cloned()
            .collect()
    }

    /// Finds a key by id, by its prefix, or by its full text.
    pub fn find_preauth_key(&self, id_or_key: &str) -> Result<PreAuthKey> {
        let inner = self.inner.read();
        let found = if let Ok(id) = id_or_key.parse::<PreAuthKeyId>() {
            inner.keys.get(&id)
        } else if let Some((prefix, _)) = keys::split(AUTH_KEY_PREFIX, id_or_key) {
            inner
                .key_by_prefix
                .get(prefix)
                .and_then(|id| inner.keys.get(id))
        } else {
            inner
                .key_by_prefix
                .get(id_or_key)
                .and_then(|id| inner.keys.get(id))
        };
        found
            .cloned()
            .ok_or_else(|| Error::not_found("pre-auth key", id_or_key))
    }

    pub async fn expire_preauth_key(&self, id: PreAuthKeyId) -> Result<PreAuthKey> {
        let _w = self.write.lock().await;
        let Some(mut key) = self.inner.read().keys.get(&id).cloned() else {
            return Err(Error::not_found("pre-auth key", id));
        };
        let now = self.now();
        if !key.is_expired(now) {
            key.expiration = Some(now);
        }
        let mut tx = self.store.begin().await?;
        tx.update_preauth_key(&key).await?;
        tx.commit().await?;
        self.inner.write().put_key(key.clone());
        tracing::info!(key.id = id, "pre-auth key expired");
        Ok(key)
    }

    pub async fn delete_preauth_key(&self, id: PreAuthKeyId) -> Result<()> {
        let _w = self.write.lock().await;
        if !self.inner.read().keys.contains_key(&id) {
            return Err(Error::not_found("pre-auth key", id));
        }
        let mut tx = self.store.begin().await?;
        tx.delete_preauth_key(id).await?;
        tx.commit().await?;
        let mut inner = self.inner.write();
        if let Some(k) = inner.keys.remove(&id) {
            inner.key_by_prefix.remove(&k.prefix);
        }
        // Nodes keep working; they just no longer name the key.
        Ok(())
    }

    /// Looks a presented key up and checks its secret (constant time).
    pub(crate) fn lookup_auth_key(
        &self,
        text: &str,
    ) -> std::result::Result<PreAuthKey, KeyRefusal> {
        let text = text.trim();
        // Headway's shape, or headscale's older bare keys (imported).
        let (prefix, secret) = match keys::split(AUTH_KEY_PREFIX, text) {
            Some((prefix, secret)) => (prefix.to_string(), secret),
            None => keys::split_legacy_auth_key(text).ok_or(KeyRefusal::Unknown)?,
        };
        let inner = self.inner.read();
        let key = inner
            .key_by_prefix
            .get(&prefix)
            .and_then(|id| inner.keys.get(id))
            .ok_or(KeyRefusal::Unknown)?;
        if !key.hash.verify(secret) {
            return Err(KeyRefusal::Unknown);
        }
        Ok(key.clone())
    }
}

/// Whether a key may register a (new or re-keyed) node now.
pub(crate) fn check_usable(
    key: &PreAuthKey,
    now: DateTime<Utc>,
) -> std::result::Result<(), KeyRefusal> {
    if key.is_expired(now) {
        return Err(KeyRefusal::Expired);
    }
    if key.used && !key.reusable {
        return Err(KeyRefusal::Used);
    }
    Ok(())
}

//! Users: create, rename, delete.

use std::sync::Arc;

use super::Tailnet;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::model::{User, UserId};

/// What a user name may look like: what people type in `--user`, policies
/// (`alice@`) and OIDC logins (`alice@example.com`) all fit.
pub fn validate_user_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(Error::Invalid(format!(
            "user name {name:?} must be between 1 and 255 characters long"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+')))
    {
        return Err(Error::Invalid(format!(
            "user name {name:?} contains {c:?}; use letters, digits and . _ - + @"
        )));
    }
    if !name.chars().next().is_some_and(|c| c.is_alphanumeric()) {
        return Err(Error::Invalid(format!(
            "user name {name:?} must start with a letter or digit"
        )));
    }
    if name.matches('@').count() > 1 {
        return Err(Error::Invalid(format!(
            "user name {name:?} may contain at most one '@'"
        )));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "user name {name:?} must not be all digits (it would be mistaken for a user id)"
        )));
    }
    Ok(())
}

/// Optional fields of a new user.
#[derive(Debug, Default, Clone)]
pub struct NewUser {
    pub name: String,
    pub display_name: String,
    pub email: String,
    pub profile_pic_url: String,
    pub provider: String,
    pub provider_id: Option<String>,
}

impl Tailnet {
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        validate_user_name(&new.name)?;
        if !new.email.is_empty() && !new.email.contains('@') {
            return Err(Error::Invalid(format!(
                "email {:?} is not an e-mail address",
                new.email
            )));
        }
        let _w = self.write.lock().await;
        if self.inner.read().user_by_name(&new.name).is_some() {
            return Err(Error::Conflict(format!(
                "user {:?} already exists",
                new.name
            )));
        }
        let mut user = User {
            id: 0,
            name: new.name,
            display_name: new.display_name,
            email: new.email,
            provider: new.provider,
            provider_id: new.provider_id,
            profile_pic_url: new.profile_pic_url,
            created_at: self.now(),
        };
        let mut tx = self.store.begin().await?;
        user.id = tx.insert_user(&user).await?;
        tx.commit().await?;
        self.inner
            .write()
            .users
            .insert(user.id, Arc::new(user.clone()));
        tracing::info!(user.id = user.id, user.name = %user.name, "user created");
        self.announce(Event::UserChanged { user: user.id });
        Ok(user)
    }

    /// Finds a user by numeric id or by name.
    pub fn resolve_user(&self, name_or_id: &str) -> Result<Arc<User>> {
        let inner = self.inner.read();
        if let Ok(id) = name_or_id.parse::<UserId>()
            && let Some(u) = inner.users.get(&id)
        {
            return Ok(u.clone());
        }
        inner
            .user_by_name(name_or_id)
            .cloned()
            .ok_or_else(|| Error::not_found("user", name_or_id))
    }

    pub async fn rename_user(&self, id: UserId, new_name: &str) -> Result<User> {
        validate_user_name(new_name)?;
        let _w = self.write.lock().await;
        let old = self.require_user(id)?;
        if self
            .inner
            .read()
            .user_by_name(new_name)
            .is_some_and(|u| u.id != id)
        {
            return Err(Error::Conflict(format!("user {new_name:?} already exists")));
        }
        let user = User {
            name: new_name.to_string(),
            ..(*old).clone()
        };
        let mut tx = self.store.begin().await?;
        tx.update_user(&user).await?;
        tx.commit().await?;
        self.inner.write().users.insert(id, Arc::new(user.clone()));
        tracing::info!(user.id = id, from = %old.name, to = %user.name, "user renamed");
        self.announce(Event::UserChanged { user: id });
        Ok(user)
    }

    /// Deletes a user that owns no nodes (and its pre-auth keys).
    pub async fn delete_user(&self, id: UserId) -> Result<()> {
        let _w = self.write.lock().await;
        let user = self.require_user(id)?;
        let (owned, keys): (usize, Vec<i64>) = {
            let inner = self.inner.read();
            (
                inner
                    .nodes
                    .values()
                    .filter(|n| n.user_id == Some(id))
                    .count(),
                inner
                    .keys
                    .values()
                    .filter(|k| k.user_id == Some(id))
                    .map(|k| k.id)
                    .collect(),
            )
        };
        if owned > 0 {
            return Err(Error::Conflict(format!(
                "user {:?} still owns {owned} node(s); delete or move them first (headway nodes list --user {})",
                user.name, user.name
            )));
        }
        let mut tx = self.store.begin().await?;
        for k in &keys {
            tx.delete_preauth_key(*k).await?;
        }
        tx.delete_user(id).await?;
        tx.commit().await?;
        {
            let mut inner = self.inner.write();
            for k in &keys {
                if let Some(key) = inner.keys.remove(k) {
                    inner.key_by_prefix.remove(&key.prefix);
                }
            }
            inner.users.remove(&id);
        }
        tracing::info!(user.id = id, user.name = %user.name, "user deleted");
        self.announce(Event::UserRemoved { user: id });
        Ok(())
    }
}

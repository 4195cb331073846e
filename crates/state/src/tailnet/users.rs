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

// --- users from the identity provider (OIDC) ---------------------------------

/// The `provider` of users that log in through the identity provider.
pub const OIDC_PROVIDER: &str = "oidc";

/// What the identity provider vouches for about a person, once their ID
/// token has been verified and they are allowed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcIdentity {
    /// The stable key of the person: issuer and subject
    /// (`https://idp.example.com/248289761001`). Never the e-mail, which the
    /// person or the provider may change.
    pub provider_id: String,
    /// `preferred_username`, when the provider sends one.
    pub preferred_username: String,
    /// An e-mail address the server trusts (verified, or verification not
    /// required); empty when there is none.
    pub email: String,
    pub display_name: String,
    pub profile_pic_url: String,
}

/// `alice-2` for `alice`, `alice-2@example.com` for `alice@example.com`.
fn numbered_name(base: &str, n: usize) -> String {
    match base.split_once('@') {
        Some((local, domain)) => format!("{local}-{n}@{domain}"),
        None => format!("{base}-{n}"),
    }
}

/// The name of a user from the identity provider. Names are unique here
/// (headscale lets OIDC users share one), so: the preferred user name, else
/// the e-mail address, when valid and free; a returning user keeps the name
/// they have unless the provider's preferred one has become free; a new user
/// whose names are all taken gets a numbered one (`alice-2`).
pub fn oidc_user_name(
    who: &OidcIdentity,
    current: Option<&str>,
    taken: impl Fn(&str) -> bool,
) -> String {
    let wanted: Vec<&str> = [who.preferred_username.as_str(), who.email.as_str()]
        .into_iter()
        .filter(|n| validate_user_name(n).is_ok())
        .collect();
    let free = |n: &str| current == Some(n) || !taken(n);
    if let Some(current) = current {
        return match wanted.first() {
            Some(first) if free(first) => (*first).to_string(),
            _ => current.to_string(),
        };
    }
    if let Some(n) = wanted.iter().find(|n| free(n)) {
        return (*n).to_string();
    }
    let base = wanted.first().copied().unwrap_or("user");
    if free(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| numbered_name(base, n))
        .find(|n| validate_user_name(n).is_ok() && free(n))
        .unwrap_or_else(|| base.to_string())
}

impl Tailnet {
    /// The user the identity provider knows as `provider_id`.
    pub fn oidc_user(&self, provider_id: &str) -> Option<Arc<User>> {
        self.inner
            .read()
            .users
            .values()
            .find(|u| u.provider == OIDC_PROVIDER && u.provider_id.as_deref() == Some(provider_id))
            .cloned()
    }

    /// Creates the user of an identity provider login, or brings the one
    /// with the same issuer and subject up to date (name, display name,
    /// e-mail, picture). An empty `email` keeps the one on file: an address
    /// the provider stops vouching for is not a reason to forget it.
    /// Returns the user and whether it was created.
    pub async fn upsert_oidc_user(&self, who: &OidcIdentity) -> Result<(User, bool)> {
        if who.provider_id.is_empty() {
            return Err(Error::Invalid(
                "an identity provider login without issuer and subject cannot name a user".into(),
            ));
        }
        let _w = self.write.lock().await;
        let existing = self.oidc_user(&who.provider_id);
        let name = {
            let inner = self.inner.read();
            oidc_user_name(who, existing.as_ref().map(|u| u.name.as_str()), |n| {
                inner.user_by_name(n).is_some()
            })
        };
        validate_user_name(&name)?;
        let email = if who.email.contains('@') {
            who.email.clone()
        } else {
            existing
                .as_ref()
                .map(|u| u.email.clone())
                .unwrap_or_default()
        };
        let (user, created) = match existing {
            Some(old) => {
                let user = User {
                    name,
                    display_name: who.display_name.clone(),
                    email,
                    profile_pic_url: who.profile_pic_url.clone(),
                    ..(*old).clone()
                };
                if user == *old {
                    return Ok((user, false));
                }
                let mut tx = self.store.begin().await?;
                tx.update_user(&user).await?;
                tx.commit().await?;
                (user, false)
            }
            None => {
                let mut user = User {
                    id: 0,
                    name,
                    display_name: who.display_name.clone(),
                    email,
                    provider: OIDC_PROVIDER.to_string(),
                    provider_id: Some(who.provider_id.clone()),
                    profile_pic_url: who.profile_pic_url.clone(),
                    created_at: self.now(),
                };
                let mut tx = self.store.begin().await?;
                user.id = tx.insert_user(&user).await?;
                tx.commit().await?;
                (user, true)
            }
        };
        self.inner
            .write()
            .users
            .insert(user.id, Arc::new(user.clone()));
        if created {
            tracing::info!(user.id = user.id, user.name = %user.name, "user created from an identity provider login");
        } else {
            tracing::info!(user.id = user.id, user.name = %user.name, "user updated from an identity provider login");
        }
        self.announce(Event::UserChanged { user: user.id });
        Ok((user, created))
    }
}

#[cfg(test)]
mod oidc_tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::memstore::MemStore;
    use crate::model::RegisterMethod;
    use crate::settings::Settings;
    use chrono::TimeZone;

    async fn tailnet() -> Arc<Tailnet> {
        let clock = Arc::new(ManualClock::new(
            chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ));
        Tailnet::load(Arc::new(MemStore::default()), clock, Settings::default())
            .await
            .unwrap()
    }

    fn alice() -> OidcIdentity {
        OidcIdentity {
            provider_id: "https://idp.example.com/sub-1".into(),
            preferred_username: "alice".into(),
            email: "alice@example.com".into(),
            display_name: "Alice Liddell".into(),
            profile_pic_url: "https://idp.example.com/alice.png".into(),
        }
    }

    #[tokio::test]
    async fn same_subject_is_the_same_user_even_when_the_email_changes() {
        let t = tailnet().await;
        let (first, created) = t.upsert_oidc_user(&alice()).await.unwrap();
        assert!(created);
        assert_eq!(first.name, "alice");
        assert_eq!(first.provider, "oidc");
        assert_eq!(first.email, "alice@example.com");

        let changed = OidcIdentity {
            email: "alice@wonderland.example".into(),
            display_name: "Alice L.".into(),
            profile_pic_url: "https://idp.example.com/new.png".into(),
            ..alice()
        };
        let (again, created) = t.upsert_oidc_user(&changed).await.unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        assert_eq!(again.email, "alice@wonderland.example");
        assert_eq!(again.display_name, "Alice L.");
        assert_eq!(again.profile_pic_url, "https://idp.example.com/new.png");
        assert_eq!(t.users().len(), 1);
        assert_eq!(*t.user(first.id).unwrap(), again);
    }

    #[tokio::test]
    async fn another_subject_with_the_same_email_is_another_user() {
        let t = tailnet().await;
        let (a, _) = t.upsert_oidc_user(&alice()).await.unwrap();
        let impostor = OidcIdentity {
            provider_id: "https://idp.example.com/sub-2".into(),
            ..alice()
        };
        let (b, created) = t.upsert_oidc_user(&impostor).await.unwrap();
        assert!(created);
        assert_ne!(a.id, b.id);
        // "alice" is taken: the e-mail address is the next choice.
        assert_eq!(b.name, "alice@example.com");
        // Another issuer with the same subject is another person too.
        let elsewhere = OidcIdentity {
            provider_id: "https://other.example.com/sub-1".into(),
            ..alice()
        };
        let (c, created) = t.upsert_oidc_user(&elsewhere).await.unwrap();
        assert!(created);
        assert_eq!(c.name, "alice-2");
    }

    #[tokio::test]
    async fn a_local_user_is_never_taken_over_by_name() {
        let t = tailnet().await;
        let local = t
            .create_user(NewUser {
                name: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let (u, created) = t.upsert_oidc_user(&alice()).await.unwrap();
        assert!(created);
        assert_ne!(u.id, local.id);
        assert_eq!(u.name, "alice@example.com");
        assert_eq!(t.user(local.id).unwrap().provider, "");
    }

    #[tokio::test]
    async fn an_empty_email_keeps_the_one_on_file_and_nothing_changes_twice() {
        let t = tailnet().await;
        let (first, _) = t.upsert_oidc_user(&alice()).await.unwrap();
        let mut events = t.subscribe();
        let unverified = OidcIdentity {
            email: String::new(),
            ..alice()
        };
        let (again, _) = t.upsert_oidc_user(&unverified).await.unwrap();
        assert_eq!(again, first);
        assert!(events.try_recv().is_err(), "no change, no event");
    }

    #[tokio::test]
    async fn a_login_without_a_subject_is_refused() {
        let t = tailnet().await;
        let err = t
            .upsert_oidc_user(&OidcIdentity::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(t.users().is_empty());
    }

    #[tokio::test]
    async fn an_approval_can_carry_the_token_expiry() {
        use headway_proto::keys::{MachinePublic, NodePublic};
        use headway_proto::tailcfg::{Hostinfo, RegisterRequest};
        let t = tailnet().await;
        let (user, _) = t.upsert_oidc_user(&alice()).await.unwrap();
        let req = RegisterRequest {
            version: 133,
            node_key: NodePublic([7; 32]),
            hostinfo: Some(Hostinfo {
                hostname: "laptop".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (resp, _) = t.register(MachinePublic([7; 32]), &req).await.unwrap();
        let auth_id = resp.auth_url.rsplit('/').next().unwrap().to_string();
        let until = t.now() + chrono::Duration::hours(1);
        let node = t
            .approve_registration_until(&auth_id, user.id, RegisterMethod::Oidc, Some(until))
            .await
            .unwrap();
        assert_eq!(node.expiry, Some(until));
        assert_eq!(node.user_id, Some(user.id));
        assert_eq!(node.register_method, RegisterMethod::Oidc);
    }

    #[test]
    fn names_prefer_the_username_then_the_email_then_a_number() {
        let none = |_: &str| false;
        assert_eq!(oidc_user_name(&alice(), None, none), "alice");
        let bad_username = OidcIdentity {
            preferred_username: "Alice Liddell".into(),
            ..alice()
        };
        assert_eq!(
            oidc_user_name(&bad_username, None, none),
            "alice@example.com"
        );
        let nothing = OidcIdentity {
            preferred_username: String::new(),
            email: String::new(),
            ..alice()
        };
        assert_eq!(oidc_user_name(&nothing, None, none), "user");
        assert_eq!(oidc_user_name(&nothing, None, |n| n == "user"), "user-2");
        let all_taken = |n: &str| ["alice", "alice@example.com", "alice-2"].contains(&n);
        assert_eq!(oidc_user_name(&alice(), None, all_taken), "alice-3");
        let only_email = OidcIdentity {
            preferred_username: String::new(),
            ..alice()
        };
        assert_eq!(
            oidc_user_name(&only_email, None, |n| n == "alice@example.com"),
            "alice-2@example.com"
        );
        // A returning user follows the provider's preferred name when it
        // is free, and otherwise keeps the name they have.
        assert_eq!(oidc_user_name(&alice(), Some("alice-2"), none), "alice");
        assert_eq!(
            oidc_user_name(&alice(), Some("alice-2"), |n| n == "alice"),
            "alice-2"
        );
        assert_eq!(
            oidc_user_name(&alice(), Some("alice"), |n| n == "alice"),
            "alice"
        );
    }
}

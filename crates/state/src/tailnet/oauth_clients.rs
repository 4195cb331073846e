//! OAuth clients of the Tailscale-compatible v2 API, and the access tokens
//! they obtain with the client-credentials grant.
//!
//! A client has a public id (the 12-hex-digit prefix of its secret), a
//! secret `hskey-client-<id>-<secret>` shown once and stored hashed like
//! every key here, the scopes its tokens may carry, and the tags they may
//! give to devices and auth keys. Tokens (`hskey-token-…`) live one hour, in
//! memory only: a restart makes clients ask for a new one, which OAuth
//! clients do when a token is refused or runs out. Deleting a client ends
//! its tokens at once.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::{Tailnet, normalize_tags};
use crate::error::{Error, Result};
use crate::keys::{self, ACCESS_TOKEN_PREFIX, OAUTH_CLIENT_PREFIX};
use crate::model::{OAuthClient, OAuthClientId};

/// How long an access token is valid (Tailscale's tokens: one hour).
pub const ACCESS_TOKEN_TTL: Duration = Duration::hours(1);

/// The scopes a client may be given. Each `X` also exists as `X:read`; `all`
/// is every scope.
pub const SCOPES: [&str; 5] = [
    "all",
    "devices:core",
    "devices:routes",
    "auth_keys",
    "policy_file",
];

/// Whether `granted` scopes allow `write` (or read) access to `needed`
/// (one of [`SCOPES`] other than `all`).
pub fn scope_allows(granted: &[String], needed: &str, write: bool) -> bool {
    granted.iter().any(|g| match g.strip_suffix(":read") {
        Some(base) => !write && (base == needed || base == "all"),
        None => g == needed || g == "all",
    })
}

fn validate_scopes(scopes: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(scopes.len());
    for s in scopes {
        let s = s.trim();
        let base = s.strip_suffix(":read").unwrap_or(s);
        if !SCOPES.contains(&base) {
            return Err(Error::Invalid(format!(
                "scope {s:?} is not known; use {} (each also as <scope>:read)",
                SCOPES.join(", ")
            )));
        }
        out.push(s.to_string());
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(Error::Invalid(
            "an OAuth client needs at least one scope, e.g. --scopes devices:core,auth_keys".into(),
        ));
    }
    Ok(out)
}

#[derive(Debug, Default, Clone)]
pub struct NewOAuthClient {
    pub description: String,
    pub scopes: Vec<String>,
    /// Tags its tokens may assign (`tag:…`); required with write access to
    /// auth keys, as keys made through OAuth are always tagged.
    pub tags: Vec<String>,
}

/// An access token just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token text, shown this once.
    pub token: String,
    pub expires_in: Duration,
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
}

/// What an accepted access token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client: OAuthClientId,
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
}

#[derive(Debug)]
struct Token {
    hash: [u8; 32],
    grant: Grant,
    expires: DateTime<Utc>,
}

/// Clients and live tokens in memory.
#[derive(Debug, Default)]
pub(crate) struct OAuth {
    clients: BTreeMap<OAuthClientId, OAuthClient>,
    by_prefix: HashMap<String, OAuthClientId>,
    tokens: HashMap<String, Token>,
}

impl OAuth {
    pub(crate) fn load(clients: Vec<OAuthClient>) -> Self {
        let mut all = OAuth::default();
        for c in clients {
            all.by_prefix.insert(c.prefix.clone(), c.id);
            all.clients.insert(c.id, c);
        }
        all
    }

    /// Takes the stored clients (another replica changed them); live tokens
    /// of clients that still exist stay.
    pub(crate) fn replace_clients(&mut self, clients: Vec<OAuthClient>) {
        let tokens = std::mem::take(&mut self.tokens);
        *self = Self::load(clients);
        let clients = &self.clients;
        self.tokens = tokens
            .into_iter()
            .filter(|(_, t)| clients.contains_key(&t.grant.client))
            .collect();
    }
}

/// The one message for credentials that are not accepted.
const INVALID_CLIENT: &str = "invalid OAuth client credentials (client_id and client_secret)";
const INVALID_TOKEN: &str =
    "invalid or expired access token: request a new one at /api/v2/oauth/token";

impl Tailnet {
    /// Creates an OAuth client; returns it and its secret, shown this once.
    pub async fn create_oauth_client(&self, new: NewOAuthClient) -> Result<(OAuthClient, String)> {
        let scopes = validate_scopes(&new.scopes)?;
        let tags = normalize_tags(&new.tags)?;
        if tags.is_empty() && scope_allows(&scopes, "auth_keys", true) {
            return Err(Error::Invalid(
                "an OAuth client with write access to auth keys needs the tags it may give them (--tags tag:ci,…)".into(),
            ));
        }
        let _w = self.write.lock().await;
        let secret = keys::generate(OAUTH_CLIENT_PREFIX);
        let mut client = OAuthClient {
            id: 0,
            prefix: secret.prefix,
            hash: secret.hash,
            description: new.description.trim().to_string(),
            scopes,
            tags,
            created_at: self.now(),
        };
        let mut tx = self.store.begin().await?;
        client.id = tx.insert_oauth_client(&client).await?;
        tx.commit().await?;
        let mut oauth = self.oauth.write();
        oauth.by_prefix.insert(client.prefix.clone(), client.id);
        oauth.clients.insert(client.id, client.clone());
        tracing::info!(oauth_client.id = client.id, oauth_client.client_id = %client.prefix, "OAuth client created");
        Ok((client, secret.full))
    }

    /// Every client, sorted by id.
    pub fn list_oauth_clients(&self) -> Vec<OAuthClient> {
        self.oauth.read().clients.values().cloned().collect()
    }

    /// The client with this client id, or this id.
    pub fn find_oauth_client(&self, client_id_or_id: &str) -> Result<OAuthClient> {
        let oauth = self.oauth.read();
        let text = client_id_or_id.trim();
        oauth
            .by_prefix
            .get(text)
            .copied()
            .or_else(|| text.parse::<OAuthClientId>().ok())
            .and_then(|id| oauth.clients.get(&id))
            .cloned()
            .ok_or_else(|| Error::not_found("OAuth client", client_id_or_id))
    }

    /// Deletes a client; its tokens stop working at once.
    pub async fn delete_oauth_client(&self, id: OAuthClientId) -> Result<()> {
        let _w = self.write.lock().await;
        if !self.oauth.read().clients.contains_key(&id) {
            return Err(Error::not_found("OAuth client", id));
        }
        let mut tx = self.store.begin().await?;
        tx.delete_oauth_client(id).await?;
        tx.commit().await?;
        let mut oauth = self.oauth.write();
        if let Some(c) = oauth.clients.remove(&id) {
            oauth.by_prefix.remove(&c.prefix);
        }
        oauth.tokens.retain(|_, t| t.grant.client != id);
        tracing::info!(oauth_client.id = id, "OAuth client deleted");
        Ok(())
    }

    /// The client-credentials grant: a token for `client_id` when `secret`
    /// is its secret, with the requested scopes and tags (each one the
    /// client has; all of the client's when none are asked for).
    pub fn issue_access_token(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
        tags: &[String],
    ) -> Result<AccessToken> {
        let invalid = || Error::Unauthorized(INVALID_CLIENT.into());
        let (prefix, secret) =
            keys::split(OAUTH_CLIENT_PREFIX, secret.trim()).ok_or_else(invalid)?;
        let client_id = client_id.trim();
        if !client_id.is_empty() && client_id != prefix {
            return Err(invalid());
        }
        let client = {
            let oauth = self.oauth.read();
            let client = oauth
                .by_prefix
                .get(prefix)
                .and_then(|id| oauth.clients.get(id))
                .ok_or_else(invalid)?;
            if !keys::verify(secret, &client.hash) {
                return Err(invalid());
            }
            client.clone()
        };
        let scopes = if scopes.is_empty() {
            client.scopes.clone()
        } else {
            let asked = validate_scopes(scopes)?;
            for s in &asked {
                let base = s.strip_suffix(":read").unwrap_or(s);
                let write = !s.ends_with(":read");
                let ok = if base == "all" {
                    client
                        .scopes
                        .iter()
                        .any(|g| g == "all" || (!write && g == "all:read"))
                } else {
                    scope_allows(&client.scopes, base, write)
                };
                if !ok {
                    return Err(Error::Forbidden(format!(
                        "scope {s:?} was not granted to this OAuth client (it has {})",
                        client.scopes.join(", ")
                    )));
                }
            }
            asked
        };
        let tags = if tags.is_empty() {
            client.tags.clone()
        } else {
            let asked = normalize_tags(tags)?;
            if let Some(t) = asked.iter().find(|t| !client.tags.contains(t)) {
                return Err(Error::Forbidden(format!(
                    "tag {t:?} was not granted to this OAuth client"
                )));
            }
            asked
        };
        let now = self.now();
        let new = keys::generate(ACCESS_TOKEN_PREFIX);
        let mut oauth = self.oauth.write();
        oauth.tokens.retain(|_, t| t.expires > now);
        oauth.tokens.insert(
            new.prefix,
            Token {
                hash: new.hash,
                grant: Grant {
                    client: client.id,
                    scopes: scopes.clone(),
                    tags: tags.clone(),
                },
                expires: now + ACCESS_TOKEN_TTL,
            },
        );
        tracing::info!(oauth_client.id = client.id, "access token issued");
        Ok(AccessToken {
            token: new.full,
            expires_in: ACCESS_TOKEN_TTL,
            scopes,
            tags,
        })
    }

    /// Checks a presented access token; refusals are
    /// [`Error::Unauthorized`] and quote nothing sent.
    pub fn authenticate_access_token(&self, text: &str) -> Result<Grant> {
        let invalid = || Error::Unauthorized(INVALID_TOKEN.into());
        let (prefix, secret) = keys::split(ACCESS_TOKEN_PREFIX, text.trim()).ok_or_else(invalid)?;
        let oauth = self.oauth.read();
        let token = oauth.tokens.get(prefix).ok_or_else(invalid)?;
        if !keys::verify(secret, &token.hash)
            || token.expires <= self.now()
            || !oauth.clients.contains_key(&token.grant.client)
        {
            return Err(invalid());
        }
        Ok(token.grant.clone())
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

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ci_client() -> NewOAuthClient {
        NewOAuthClient {
            description: "terraform".into(),
            scopes: strings(&["devices:core", "auth_keys"]),
            tags: strings(&["tag:ci", "tag:web"]),
        }
    }

    #[test]
    fn scopes_allow_what_they_name() {
        let g = strings(&["devices:core:read", "auth_keys"]);
        assert!(scope_allows(&g, "devices:core", false));
        assert!(!scope_allows(&g, "devices:core", true));
        assert!(scope_allows(&g, "auth_keys", true));
        assert!(!scope_allows(&g, "policy_file", false));
        assert!(scope_allows(&strings(&["all"]), "policy_file", true));
        assert!(scope_allows(&strings(&["all:read"]), "policy_file", false));
        assert!(!scope_allows(&strings(&["all:read"]), "policy_file", true));
    }

    #[tokio::test]
    async fn a_client_gets_tokens_with_its_scopes_and_tags() {
        let (t, store, clock) = tailnet().await;
        let (client, secret) = t.create_oauth_client(ci_client()).await.unwrap();
        assert!(secret.starts_with("hskey-client-"));
        assert_eq!(
            store.load().await.unwrap().oauth_clients,
            vec![client.clone()]
        );
        let token = t
            .issue_access_token(&client.prefix, &secret, &[], &[])
            .unwrap();
        assert_eq!(token.scopes, client.scopes);
        let grant = t.authenticate_access_token(&token.token).unwrap();
        assert_eq!(grant.tags, strings(&["tag:ci", "tag:web"]));
        // Narrower on request.
        let narrow = t
            .issue_access_token(
                "",
                &secret,
                &strings(&["devices:core:read"]),
                &strings(&["tag:ci"]),
            )
            .unwrap();
        let grant = t.authenticate_access_token(&narrow.token).unwrap();
        assert_eq!(
            (grant.scopes, grant.tags),
            (strings(&["devices:core:read"]), strings(&["tag:ci"]))
        );
        // An hour later, gone.
        clock.advance(ACCESS_TOKEN_TTL);
        assert!(t.authenticate_access_token(&token.token).is_err());
    }

    #[tokio::test]
    async fn wrong_credentials_and_wider_requests_are_refused() {
        let (t, _, _) = tailnet().await;
        let (client, secret) = t.create_oauth_client(ci_client()).await.unwrap();
        let wrong = format!("{OAUTH_CLIENT_PREFIX}{}-{}", client.prefix, "0".repeat(64));
        for (id, s) in [
            (client.prefix.as_str(), wrong.as_str()),
            ("000000000000", secret.as_str()),
            ("", "nope"),
        ] {
            let e = t.issue_access_token(id, s, &[], &[]).unwrap_err();
            assert!(matches!(e, Error::Unauthorized(_)), "{e}");
        }
        let e = t
            .issue_access_token("", &secret, &strings(&["policy_file"]), &[])
            .unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e}");
        let e = t
            .issue_access_token("", &secret, &strings(&["all"]), &[])
            .unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e}");
        let e = t
            .issue_access_token("", &secret, &[], &strings(&["tag:prod"]))
            .unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e}");
        assert!(t.authenticate_access_token("hskey-token-nope").is_err());
    }

    #[tokio::test]
    async fn deleting_a_client_ends_its_tokens() {
        let (t, store, _) = tailnet().await;
        let (client, secret) = t.create_oauth_client(ci_client()).await.unwrap();
        let token = t.issue_access_token("", &secret, &[], &[]).unwrap();
        t.delete_oauth_client(client.id).await.unwrap();
        assert!(t.authenticate_access_token(&token.token).is_err());
        assert!(t.issue_access_token("", &secret, &[], &[]).is_err());
        assert!(store.load().await.unwrap().oauth_clients.is_empty());
        assert!(t.delete_oauth_client(client.id).await.is_err());
    }

    #[tokio::test]
    async fn clients_are_validated() {
        let (t, _, _) = tailnet().await;
        for bad in [
            NewOAuthClient {
                scopes: vec![],
                ..ci_client()
            },
            NewOAuthClient {
                scopes: strings(&["devices"]),
                ..ci_client()
            },
            NewOAuthClient {
                tags: strings(&["ci"]),
                ..ci_client()
            },
            NewOAuthClient {
                tags: vec![],
                ..ci_client()
            },
        ] {
            let e = t.create_oauth_client(bad.clone()).await.unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{bad:?}: {e}");
        }
        // Read-only clients need no tags.
        t.create_oauth_client(NewOAuthClient {
            scopes: strings(&["all:read"]),
            tags: vec![],
            ..ci_client()
        })
        .await
        .unwrap();
        assert_eq!(t.list_oauth_clients().len(), 1);
    }

    #[tokio::test]
    async fn clients_survive_a_reload_but_tokens_do_not() {
        let (t, store, _) = tailnet().await;
        let (client, secret) = t.create_oauth_client(ci_client()).await.unwrap();
        let token = t.issue_access_token("", &secret, &[], &[]).unwrap();
        let reloaded = Tailnet::load(
            Arc::new(store.clone()),
            Arc::new(ManualClock::new(t0())),
            Settings::default(),
        )
        .await
        .unwrap();
        assert_eq!(reloaded.find_oauth_client(&client.prefix).unwrap(), client);
        assert!(reloaded.authenticate_access_token(&token.token).is_err());
        assert!(reloaded.issue_access_token("", &secret, &[], &[]).is_ok());
    }
}

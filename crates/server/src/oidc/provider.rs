//! The identity provider as discovered from `oidc.issuer`: its endpoints,
//! its signing keys, and the client Headway is there. Discovery is kept and
//! redone when it is old, when a token names a key we do not have (the
//! provider rotated its keys), or after it failed — never more often than
//! every few seconds, whoever asks.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use headway_config::OidcConfig;
use openidconnect::core::{CoreClient, CoreClientAuthMethod, CoreProviderMetadata};
use openidconnect::{
    AuthType, ClientId, ClientSecret, DiscoveryError, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, RedirectUrl,
};
use parking_lot::RwLock;

use super::claims::TrustAnchor;
use super::http::{HttpClient, HttpError};

pub(crate) type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Discovery is redone after this long even when nothing asks for it.
const MAX_AGE: Duration = Duration::hours(1);
/// And never more often than this.
const MIN_INTERVAL: Duration = Duration::seconds(10);

/// What discovery found.
pub(crate) struct Provider {
    pub client: Client,
    pub anchor: TrustAnchor,
    pub fetched_at: DateTime<Utc>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.anchor.issuer.as_str())
            .field("fetched_at", &self.fetched_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryFailed {
    #[error("OpenID Connect discovery at {issuer} failed: {reason}")]
    Failed { issuer: String, reason: String },
    #[error(
        "OpenID Connect discovery at {issuer} failed a moment ago; it is tried again in a few seconds"
    )]
    RecentlyFailed { issuer: String },
}

/// The provider, discovered on demand.
pub(crate) struct Discovery {
    issuer: String,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect: RedirectUrl,
    http: HttpClient,
    current: RwLock<Option<Arc<Provider>>>,
    /// Serialises discovery; holds when it was last tried.
    attempt: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

/// The issuer as written can differ from its parsed form by a trailing
/// slash (`https://idp.example.com` parses to `https://idp.example.com/`);
/// providers compare issuers as strings, so both are tried.
fn issuer_candidates(issuer: &url::Url) -> Vec<String> {
    let written = issuer.as_str().to_string();
    let mut v = Vec::new();
    if issuer.path() == "/" && issuer.query().is_none() {
        v.push(written.trim_end_matches('/').to_string());
    }
    v.push(written);
    v
}

impl Discovery {
    pub(crate) fn new(config: &OidcConfig, redirect: RedirectUrl, http: HttpClient) -> Self {
        Discovery {
            issuer: config.issuer.as_str().to_string(),
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: ClientSecret::new(config.client_secret.expose().to_string()),
            redirect,
            http,
            current: RwLock::new(None),
            attempt: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider, discovering it first when needed.
    pub(crate) async fn get(&self, now: DateTime<Utc>) -> Result<Arc<Provider>, DiscoveryFailed> {
        if let Some(p) = self.current.read().clone()
            && now - p.fetched_at < MAX_AGE
        {
            return Ok(p);
        }
        self.refresh(now, false).await
    }

    /// Discovers again (a token named a key we do not have). Returns the
    /// provider as it now is.
    pub(crate) async fn refresh_keys(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Arc<Provider>, DiscoveryFailed> {
        self.refresh(now, true).await
    }

    async fn refresh(
        &self,
        now: DateTime<Utc>,
        forced: bool,
    ) -> Result<Arc<Provider>, DiscoveryFailed> {
        let mut last = self.attempt.lock().await;
        let current = self.current.read().clone();
        // Fresh enough, or someone else refreshed while we waited.
        if let Some(p) = &current {
            let age = now - p.fetched_at;
            if age < MIN_INTERVAL || (!forced && age < MAX_AGE) {
                return Ok(p.clone());
            }
        }
        if last.is_some_and(|at| now - at < MIN_INTERVAL) {
            return current.ok_or_else(|| DiscoveryFailed::RecentlyFailed {
                issuer: self.issuer.clone(),
            });
        }
        *last = Some(now);
        match self.discover(now).await {
            Ok(p) => {
                let p = Arc::new(p);
                *self.current.write() = Some(p.clone());
                tracing::info!(issuer = %p.anchor.issuer.as_str(), keys = p.anchor.keys.keys().len(), "oidc: provider discovered");
                Ok(p)
            }
            Err(e) => match current {
                Some(old) => {
                    tracing::warn!("{e}; keeping what was discovered before");
                    Ok(old)
                }
                None => Err(e),
            },
        }
    }

    async fn discover(&self, now: DateTime<Utc>) -> Result<Provider, DiscoveryFailed> {
        let failed = |reason: String| DiscoveryFailed::Failed {
            issuer: self.issuer.clone(),
            reason,
        };
        let parsed = url::Url::parse(&self.issuer).map_err(|e| failed(e.to_string()))?;
        let mut last_error = String::new();
        for candidate in issuer_candidates(&parsed) {
            let issuer = IssuerUrl::new(candidate).map_err(|e| failed(e.to_string()))?;
            match CoreProviderMetadata::discover_async(issuer, &self.http).await {
                Ok(metadata) => return Ok(self.provider(metadata, now)),
                // The other spelling of the issuer may match.
                Err(DiscoveryError::Validation(e)) => last_error = e,
                Err(e) => return Err(failed(describe(&e))),
            }
        }
        Err(failed(last_error))
    }

    fn provider(&self, metadata: CoreProviderMetadata, now: DateTime<Utc>) -> Provider {
        let auth_type = match metadata.token_endpoint_auth_methods_supported() {
            Some(methods)
                if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
            {
                AuthType::RequestBody
            }
            _ => AuthType::BasicAuth,
        };
        let anchor = TrustAnchor {
            issuer: metadata.issuer().clone(),
            client_id: self.client_id.clone(),
            keys: metadata.jwks().clone(),
            algorithms: TrustAnchor::accepted_algorithms(
                metadata.id_token_signing_alg_values_supported(),
            ),
        };
        let client = CoreClient::from_provider_metadata(
            metadata,
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        )
        .set_redirect_uri(self.redirect.clone())
        .set_auth_type(auth_type);
        Provider {
            client,
            anchor,
            fetched_at: now,
        }
    }
}

/// A discovery error in one line, without the response body (which can be
/// a large HTML page).
fn describe(e: &DiscoveryError<HttpError>) -> String {
    match e {
        DiscoveryError::Request(e) => format!("cannot reach the provider: {e}"),
        DiscoveryError::Response(status, _, msg) => format!("{msg} (HTTP {status})"),
        DiscoveryError::Parse(e) => format!("the discovery document is not valid: {e}"),
        DiscoveryError::UrlParse(e) => format!("bad URL: {e}"),
        DiscoveryError::Validation(e) => e.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_a_bare_issuer_are_tried() {
        let u = url::Url::parse("https://idp.example.com").unwrap();
        assert_eq!(
            issuer_candidates(&u),
            ["https://idp.example.com", "https://idp.example.com/"]
        );
        let u = url::Url::parse("https://idp.example.com/realms/main").unwrap();
        assert_eq!(
            issuer_candidates(&u),
            ["https://idp.example.com/realms/main"]
        );
    }
}

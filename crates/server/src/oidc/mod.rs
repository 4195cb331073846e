//! OpenID Connect login (`oidc.*`): a machine's AuthURL sends its person to
//! the identity provider; the provider sends them back to `/oidc/callback`;
//! Headway checks everything there (state bound to this browser and this
//! registration, the code exchanged with PKCE when configured, the ID
//! token's signature and claims, the nonce, `allowed_*`), asks the person to
//! confirm the machine, and only then creates or updates the user — matched
//! by issuer and subject — and approves the waiting registration.
//!
//! The web console's sign-in for administrators uses the same provider,
//! client and checks with its own callback (`admin`).
//!
//! This module speaks HTTP and OpenID Connect; who a user is and what a
//! registration does stay in `headway-state`.

mod access;
mod admin;
mod claims;
mod handlers;
mod http;
mod logins;
mod provider;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use headway_config::{OidcConfig, PkceMethod};
use headway_state::Tailnet;
use openidconnect::{RedirectUrl, Scope};

use access::AllowRules;
pub(crate) use admin::AdminSignIn;
use handlers::{Confirmation, Login};
use logins::SingleUse;
use provider::Discovery;

/// Where the provider sends people back (headscale's path, so provider
/// configurations carry over).
pub(crate) const CALLBACK_PATH: &str = "/oidc/callback";
/// How long a login may take at the provider, and a confirmation to be
/// clicked.
const LOGIN_TTL: chrono::Duration = chrono::Duration::minutes(15);
const CONFIRM_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// Logins in progress kept at most (the oldest makes room).
const MAX_LOGINS: usize = 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Parameters the login request sets itself; `oidc.extra_params` may not
/// replace them.
const RESERVED_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// OpenID Connect login, configured and (once reachable) discovered.
pub(crate) struct Oidc {
    tailnet: Arc<Tailnet>,
    discovery: Discovery,
    /// Where the provider sends people signing in to the web console.
    console_redirect: RedirectUrl,
    http: http::HttpClient,
    rules: AllowRules,
    scopes: Vec<Scope>,
    extra_params: Vec<(String, String)>,
    pkce: Option<PkceMethod>,
    email_verified_required: bool,
    use_expiry_from_token: bool,
    /// `Secure` cookies when the server URL is https (behind a TLS proxy the
    /// request itself may be plain HTTP).
    secure_cookies: bool,
    logins: SingleUse<Login>,
    confirmations: SingleUse<Confirmation>,
}

impl Oidc {
    /// Sets up OIDC and discovers the provider. A provider that cannot be
    /// reached is fatal with `oidc.only_start_if_oidc_is_available`, and
    /// otherwise a warning: discovery is retried when someone logs in.
    pub(crate) async fn start(
        config: &OidcConfig,
        server_url: &url::Url,
        tailnet: Arc<Tailnet>,
    ) -> anyhow::Result<Arc<Self>> {
        let redirect = format!(
            "{}{CALLBACK_PATH}",
            server_url.as_str().trim_end_matches('/')
        );
        let redirect = RedirectUrl::new(redirect.clone())
            .with_context(|| format!("server_url: {redirect} is not a valid redirect URL"))?;
        let console_redirect = format!(
            "{}{}",
            server_url.as_str().trim_end_matches('/'),
            admin::CONSOLE_CALLBACK_PATH
        );
        let console_redirect = RedirectUrl::new(console_redirect.clone()).with_context(|| {
            format!("server_url: {console_redirect} is not a valid redirect URL")
        })?;
        let http = http::HttpClient::new(HTTP_TIMEOUT);
        let mut extra_params = Vec::new();
        for (k, v) in &config.extra_params {
            if RESERVED_PARAMS.contains(&k.as_str()) {
                tracing::warn!(
                    "oidc.extra_params.{k}: Headway sets this parameter itself; ignored"
                );
            } else {
                extra_params.push((k.clone(), v.clone()));
            }
        }
        let oidc = Arc::new(Oidc {
            discovery: Discovery::new(config, redirect, http.clone()),
            console_redirect,
            http,
            rules: AllowRules::from_config(config),
            // `openid` is always requested.
            scopes: config
                .scope
                .iter()
                .filter(|s| s.as_str() != "openid")
                .map(|s| Scope::new(s.clone()))
                .collect(),
            extra_params,
            pkce: config.pkce,
            email_verified_required: config.email_verified_required,
            use_expiry_from_token: config.use_expiry_from_token,
            secure_cookies: server_url.scheme() == "https",
            logins: SingleUse::new(LOGIN_TTL, MAX_LOGINS),
            confirmations: SingleUse::new(CONFIRM_TTL, MAX_LOGINS),
            tailnet,
        });
        match oidc.discovery.get(oidc.tailnet.now()).await {
            Ok(_) => {}
            Err(e) if config.only_start_if_oidc_is_available => bail!(
                "{e}. Check oidc.issuer and that the provider is up, or set oidc.only_start_if_oidc_is_available to false to start anyway and retry at each login"
            ),
            Err(e) => tracing::warn!(
                "{e}; starting anyway (oidc.only_start_if_oidc_is_available is false): discovery is retried when someone logs in"
            ),
        }
        tracing::info!(issuer = %oidc.discovery.issuer(), "OpenID Connect login enabled");
        Ok(oidc)
    }

    /// `/register/<auth_id>` (sends the person to the provider), the
    /// callback, and the confirmation.
    pub(crate) fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/register/{auth_id}", get(handlers::start_login))
            .route(CALLBACK_PATH, get(handlers::callback))
            .route(
                "/register/confirm/{auth_id}",
                post(handlers::confirm).layer(DefaultBodyLimit::max(4096)),
            )
            .with_state(self)
    }
}

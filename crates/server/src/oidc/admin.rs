//! Sign-in to the web console with the identity provider: the console's
//! [`AdminOidc`], over the same discovery, HTTP client, authorization
//! request and ID-token verification as machine logins, with its own
//! callback (`/admin/oidc/callback`).
//!
//! It says who the provider vouches for, nothing more: whether that person
//! is an administrator (`console.admins`, `console.admin_groups`) is the
//! console's decision, and no user is created and no registration touched
//! here. `oidc.allowed_*` govern machine logins and do not apply.

use std::sync::Arc;

use futures::future::BoxFuture;
use headway_console::{AdminIdentity, AdminOidc, OidcFailure};
use openidconnect::{Nonce, PkceCodeVerifier, RedirectUrl};

use super::handlers::{CallbackParams, LoginError, same_secret};
use super::logins::SingleUse;
use super::{LOGIN_TTL, MAX_LOGINS, Oidc};

/// Where the provider sends administrators back.
pub(crate) const CONSOLE_CALLBACK_PATH: &str = "/admin/oidc/callback";

/// A console sign-in between the redirect to the provider and the callback.
struct AdminLogin {
    nonce: Nonce,
    pkce_verifier: Option<PkceCodeVerifier>,
}

/// The console's sign-in with the server's identity provider.
pub(crate) struct AdminSignIn {
    oidc: Arc<Oidc>,
    redirect: RedirectUrl,
    /// Keyed by the state sent to the provider. The console binds each
    /// state to the browser that started the sign-in.
    logins: SingleUse<AdminLogin>,
}

impl AdminSignIn {
    pub(crate) fn new(oidc: Arc<Oidc>) -> Self {
        AdminSignIn {
            redirect: oidc.console_redirect.clone(),
            oidc,
            logins: SingleUse::new(LOGIN_TTL, MAX_LOGINS),
        }
    }

    async fn finish_sign_in(&self, state: &str, query: &str) -> Result<AdminIdentity, LoginError> {
        let now = self.oidc.tailnet.now();
        let login = self
            .logins
            .take(state, now)
            .ok_or(LoginError::UnknownState)?;
        let params = CallbackParams::from_query(query);
        match params.state() {
            None | Some("") => return Err(LoginError::MissingState),
            Some(s) if !same_secret(s, state) => return Err(LoginError::StateMismatch),
            Some(_) => {}
        }
        let (provider, code) = self.oidc.provider_answer(params, now).await?;
        let person = self
            .oidc
            .verified_person(
                provider,
                code,
                &login.nonce,
                login.pkce_verifier,
                Some(&self.redirect),
                now,
            )
            .await?;
        let name = [person.name.as_str(), person.preferred_username.as_str()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or(person.subject.as_str())
            .to_string();
        Ok(AdminIdentity {
            name,
            email: person.email,
            email_verified: person.email_verified,
            groups: person.groups,
        })
    }
}

/// What the person is told; the log gets the details.
fn explain(e: &LoginError) -> String {
    use LoginError::*;
    match e {
        MissingState | MissingCode | UnknownState | StateMismatch => {
            "This sign-in is incomplete, has expired, or was not started in this browser; start again.".into()
        }
        Provider { error, description } => format!(
            "The identity provider did not sign you in: {error}{}",
            description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        IssuerMismatch(_) => {
            "This answer did not come from the identity provider this server uses.".into()
        }
        Discovery(_) => "The identity provider cannot be reached right now; try again in a minute, or sign in with an API key.".into(),
        CodeExchange(_) | NoIdToken => {
            "The identity provider did not confirm this sign-in; start again.".into()
        }
        Token(_) => {
            "The identity provider's answer could not be verified (its signature or contents are not valid), so it was refused.".into()
        }
        NotAllowed(_)
        | RegistrationGone
        | SshCheckRefused(_)
        | ConfirmMismatch
        | UnknownConfirmation
        | Internal(_) => {
            "The server could not complete this sign-in; an administrator finds the cause in the server's log.".into()
        }
    }
}

fn failure(e: LoginError) -> OidcFailure {
    if e.status().is_server_error() {
        tracing::warn!(stage = "console", "oidc: console sign-in failed: {e}");
    } else {
        tracing::info!(stage = "console", "oidc: console sign-in refused: {e}");
    }
    OidcFailure(explain(&e))
}

impl AdminOidc for AdminSignIn {
    fn begin(&self) -> BoxFuture<'_, Result<(String, String), OidcFailure>> {
        Box::pin(async move {
            let now = self.oidc.tailnet.now();
            let provider = self
                .oidc
                .discovery
                .get(now)
                .await
                .map_err(|e| failure(LoginError::Discovery(e)))?;
            let a = self.oidc.authorization(&provider, Some(&self.redirect));
            self.logins.insert(
                a.state.clone(),
                AdminLogin {
                    nonce: a.nonce,
                    pkce_verifier: a.pkce_verifier,
                },
                now,
            );
            tracing::debug!("oidc: sending an administrator to the identity provider");
            Ok((a.url.to_string(), a.state))
        })
    }

    fn finish(
        &self,
        state: String,
        query: String,
    ) -> BoxFuture<'_, Result<AdminIdentity, OidcFailure>> {
        Box::pin(async move {
            let who = self.finish_sign_in(&state, &query).await.map_err(failure)?;
            tracing::info!(
                email = %who.email,
                email_verified = who.email_verified,
                groups = ?who.groups,
                "oidc: the identity provider vouched for a console sign-in"
            );
            Ok(who)
        })
    }
}

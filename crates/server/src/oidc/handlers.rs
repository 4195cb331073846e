//! The three steps of a login, as HTTP handlers, and the pages they show.
//! Everything that came from a client (host names) or from the provider
//! (names, addresses, error texts) is escaped.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use headway_state::error::ErrorKind;
use headway_state::model::RegisterMethod;
use headway_state::tailnet::{OidcIdentity, SshApprover};
use openidconnect::core::{CoreAuthenticationFlow, CoreGenderClaim};
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RequestTokenError, TokenResponse,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::claims::{ExtraClaims, Person, TokenError, verify_id_token};
use super::provider::DiscoveryFailed;
use super::{CALLBACK_PATH, Oidc, access};
use crate::register_page::{escape, page};
use headway_config::PkceMethod;

/// A login between the redirect to the provider and the callback.
pub(crate) struct Login {
    auth_id: String,
    nonce: Nonce,
    pkce_verifier: Option<PkceCodeVerifier>,
}

/// A verified, allowed login waiting for the person to confirm the machine.
pub(crate) struct Confirmation {
    auth_id: String,
    identity: OidcIdentity,
    expiry: Option<DateTime<Utc>>,
}

const CONFIRM_COOKIE: &str = "headway_confirm";

/// The state cookie's name carries the start of the state, so several
/// logins in one browser do not overwrite each other's cookie.
fn state_cookie_name(state: &str) -> String {
    let prefix: String = state.chars().take(8).collect();
    format!("headway_oidc_{prefix}")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Oidc {
    fn set_cookie(
        &self,
        name: &str,
        value: &str,
        path: &str,
        same_site: &str,
        max_age: i64,
    ) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
        )
    }
}

/// A page that must not be cached, nor leak its URL (which can hold a
/// login code) to anything it links to.
fn html(status: StatusCode, title: &str, body_html: &str) -> Response {
    let mut r = page(status, title, body_html);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn with_cookies(mut r: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn unknown_link() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Unknown or expired link",
        "<p>This login link is unknown or has expired. Run <code>tailscale up</code> again on the machine to get a new one.</p>",
    )
}

/// Why a login did not go through. Nothing is created in any of these cases.
#[derive(Debug, thiserror::Error)]
enum LoginError {
    #[error("callback without state")]
    MissingState,
    #[error("unknown, expired or already used state")]
    UnknownState,
    #[error("the state does not match this browser's cookie")]
    StateMismatch,
    #[error("the provider refused the login: {error}")]
    Provider {
        error: String,
        description: Option<String>,
    },
    #[error("the callback names issuer {0:?}, not ours")]
    IssuerMismatch(String),
    #[error("callback without a code")]
    MissingCode,
    #[error(transparent)]
    Discovery(#[from] DiscoveryFailed),
    #[error("the code exchange failed: {0}")]
    CodeExchange(String),
    #[error("the token answer holds no ID token")]
    NoIdToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("not allowed: {0}")]
    NotAllowed(access::Refusal),
    #[error("the registration is no longer waiting")]
    RegistrationGone,
    #[error("the SSH check is refused: {0}")]
    SshCheckRefused(String),
    #[error("the confirmation does not match this browser's cookie or this machine")]
    ConfirmMismatch,
    #[error("unknown, expired or already used confirmation")]
    UnknownConfirmation,
    #[error("{0}")]
    Internal(String),
}

impl LoginError {
    fn status(&self) -> StatusCode {
        use LoginError::*;
        match self {
            MissingState | MissingCode | UnknownState | UnknownConfirmation | IssuerMismatch(_) => {
                StatusCode::BAD_REQUEST
            }
            StateMismatch
            | ConfirmMismatch
            | Provider { .. }
            | Token(_)
            | NotAllowed(_)
            | SshCheckRefused(_) => StatusCode::FORBIDDEN,
            RegistrationGone => StatusCode::GONE,
            Discovery(_) => StatusCode::SERVICE_UNAVAILABLE,
            CodeExchange(_) | NoIdToken => StatusCode::BAD_GATEWAY,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn page(&self) -> Response {
        use LoginError::*;
        let again = "Open the login link from your machine again (run <code>tailscale up</code> again if it has expired).";
        let (title, body) = match self {
            MissingState | MissingCode => (
                "Incomplete login",
                format!("<p>This page was opened without the details of a login. {again}</p>"),
            ),
            UnknownState => (
                "Login expired",
                format!("<p>This login is unknown, has expired, or was already used. {again}</p>"),
            ),
            StateMismatch => (
                "Login not started here",
                format!(
                    "<p>This login was not started in this browser (or its cookie is gone), so it is not completed: someone may be trying to log you in to their machine. {again}</p>"
                ),
            ),
            Provider { error, description } => (
                "Login refused by the identity provider",
                format!(
                    "<p>The identity provider did not log you in: <code>{}</code>{}</p><p>{again}</p>",
                    escape(error),
                    description
                        .as_deref()
                        .map(|d| format!(" — {}", escape(d)))
                        .unwrap_or_default()
                ),
            ),
            IssuerMismatch(_) => (
                "Wrong identity provider",
                "<p>This answer did not come from the identity provider this server uses. Nothing was changed.</p>".to_string(),
            ),
            Discovery(_) => (
                "Login is unavailable",
                "<p>The identity provider cannot be reached right now. Try again in a minute: the machine keeps waiting.</p>".to_string(),
            ),
            CodeExchange(_) | NoIdToken => (
                "Login failed",
                format!(
                    "<p>The identity provider did not confirm this login. Nothing was changed. {again}</p>"
                ),
            ),
            Token(_) => (
                "Login could not be verified",
                format!(
                    "<p>The identity provider's answer could not be verified (its signature or contents are not valid), so it was refused. Nothing was changed. {again}</p>"
                ),
            ),
            NotAllowed(why) => (
                "Not allowed",
                format!(
                    "<p>You are signed in at the identity provider, but you may not log in machines to this tailnet: {}.</p><p>Nothing was created. Ask an administrator if you should have access, or sign in with another account.</p>",
                    escape(&why.to_string())
                ),
            ),
            SshCheckRefused(why) => (
                "SSH connection not approved",
                format!(
                    "<p>{}</p><p>Nothing was approved. Sign in as the owner of the device the connection comes from, or ask an administrator to approve it.</p>",
                    escape(why)
                ),
            ),
            RegistrationGone => (
                "The machine stopped waiting",
                "<p>The machine is no longer waiting for this login. Run <code>tailscale up</code> on it again to get a new link.</p>".to_string(),
            ),
            ConfirmMismatch | UnknownConfirmation => (
                "Confirmation expired",
                format!(
                    "<p>This confirmation is unknown, has expired, was already used, or was not made in this browser. {again}</p>"
                ),
            ),
            Internal(_) => (
                "Something went wrong",
                "<p>The server could not complete this login. Try again; if it keeps failing, an administrator finds the cause in the server's log.</p>".to_string(),
            ),
        };
        html(self.status(), title, &body)
    }

    fn into_page(self, stage: &'static str) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(stage, "oidc: login failed: {self}");
        } else {
            tracing::info!(stage, "oidc: login refused: {self}");
        }
        self.page()
    }
}

/// `GET /register/<auth_id>`: sends the person to the identity provider.
pub(super) async fn start_login(
    State(oidc): State<Arc<Oidc>>,
    Path(auth_id): Path<String>,
) -> Response {
    let now = oidc.tailnet.now();
    // A machine logging in, or an SSH connection a `check` rule holds
    // until the source node's owner signs in again.
    if oidc.tailnet.pending_registration(&auth_id).is_err()
        && oidc.tailnet.pending_ssh_check(&auth_id).is_err()
    {
        return unknown_link();
    }
    let provider = match oidc.discovery.get(now).await {
        Ok(p) => p,
        Err(e) => return LoginError::Discovery(e).into_page("start"),
    };
    let mut request = provider.client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in &oidc.scopes {
        request = request.add_scope(scope.clone());
    }
    for (k, v) in &oidc.extra_params {
        request = request.add_extra_param(k.as_str(), v.as_str());
    }
    let mut pkce_verifier = None;
    if let Some(method) = oidc.pkce {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        request = match method {
            PkceMethod::S256 => request.set_pkce_challenge(challenge),
            // For providers without SHA-256: the verifier is the challenge.
            PkceMethod::Plain => request
                .add_extra_param("code_challenge", verifier.secret().clone())
                .add_extra_param("code_challenge_method", "plain"),
        };
        pkce_verifier = Some(verifier);
    }
    let (url, state, nonce) = request.url();
    let state = state.secret().clone();
    let cookie = oidc.set_cookie(
        &state_cookie_name(&state),
        &state,
        CALLBACK_PATH,
        // Lax: the callback is a top-level navigation from the provider's site.
        "Lax",
        super::LOGIN_TTL.num_seconds(),
    );
    oidc.logins.insert(
        state,
        Login {
            auth_id: auth_id.clone(),
            nonce,
            pkce_verifier,
        },
        now,
    );
    tracing::debug!(
        auth_id,
        "oidc: sending the browser to the identity provider"
    );
    let mut r = (StatusCode::FOUND, [(header::LOCATION, url.as_str())]).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_cookies(r, &[cookie])
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// `GET /oidc/callback`: checks the login and asks the person to confirm.
pub(super) async fn callback(
    State(oidc): State<Arc<Oidc>>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    match oidc.finish_login(&headers, params).await {
        Ok(r) => r,
        Err(e) => e.into_page("callback"),
    }
}

fn token_error<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: &RequestTokenError<RE, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!("the provider answered {r}"),
        RequestTokenError::Request(e) => format!("cannot reach the provider: {e}"),
        // Not the body: it could hold anything.
        RequestTokenError::Parse(e, _) => format!("unreadable token answer: {e}"),
        RequestTokenError::Other(e) => e.clone(),
    }
}

impl Oidc {
    async fn finish_login(
        &self,
        headers: &HeaderMap,
        params: CallbackParams,
    ) -> Result<Response, LoginError> {
        let now = self.tailnet.now();
        let state = params
            .state
            .filter(|s| !s.is_empty())
            .ok_or(LoginError::MissingState)?;
        // Taken whatever happens next: a state serves one callback.
        let login = self
            .logins
            .take(&state, now)
            .ok_or(LoginError::UnknownState)?;
        let state_cookie = state_cookie_name(&state);
        if !cookie(headers, &state_cookie).is_some_and(|v| same_secret(v, &state)) {
            return Err(LoginError::StateMismatch);
        }
        if let Some(error) = params.error {
            return Err(LoginError::Provider {
                error,
                description: params.error_description,
            });
        }
        let mut provider = self.discovery.get(now).await?;
        if let Some(iss) = params.iss
            && iss != provider.anchor.issuer.as_str()
        {
            return Err(LoginError::IssuerMismatch(iss));
        }
        let code = params
            .code
            .filter(|c| !c.is_empty())
            .ok_or(LoginError::MissingCode)?;

        let mut exchange = provider
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| {
                LoginError::Internal(format!("the provider has no token endpoint: {e}"))
            })?;
        if let Some(v) = login.pkce_verifier {
            exchange = exchange.set_pkce_verifier(v);
        }
        let token = exchange
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::CodeExchange(token_error(&e)))?;
        let raw = token.id_token().ok_or(LoginError::NoIdToken)?.to_string();
        let access_token = token.access_token();
        let claims = match verify_id_token(
            &raw,
            Some(access_token),
            &provider.anchor,
            &login.nonce,
            now,
        ) {
            Err(e) if e.may_be_key_rotation() => {
                provider = self.discovery.refresh_keys(now).await?;
                verify_id_token(
                    &raw,
                    Some(access_token),
                    &provider.anchor,
                    &login.nonce,
                    now,
                )?
            }
            other => other?,
        };
        let mut person = Person::from_id_token(&claims);
        if let Ok(request) = provider
            .client
            .user_info(access_token.clone(), Some(claims.subject().clone()))
        {
            match request
                .request_async::<ExtraClaims, _, CoreGenderClaim>(&self.http)
                .await
            {
                Ok(info) => person.merge_user_info(&info),
                Err(e) => tracing::warn!(
                    "oidc: the user-info request failed ({e}); using the ID token's claims only"
                ),
            }
        }

        access::check(&self.rules, &person).map_err(LoginError::NotAllowed)?;
        if self.tailnet.pending_ssh_check(&login.auth_id).is_ok() {
            let identity = person.identity(self.email_verified_required);
            let clear = self.set_cookie(&state_cookie, "", CALLBACK_PATH, "Lax", 0);
            return self
                .approve_ssh_check(&login.auth_id, &identity)
                .map(|r| with_cookies(r, &[clear]));
        }
        let pending = self
            .tailnet
            .pending_registration(&login.auth_id)
            .map_err(|_| LoginError::RegistrationGone)?;
        let identity = person.identity(self.email_verified_required);
        let who = [
            person.name.as_str(),
            identity.email.as_str(),
            person.preferred_username.as_str(),
            person.subject.as_str(),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_string();
        let email_line = if identity.email.is_empty() || identity.email == who {
            String::new()
        } else {
            format!(" ({})", escape(&identity.email))
        };
        let csrf = CsrfToken::new_random().secret().clone();
        let cookies = [
            self.set_cookie(&state_cookie, "", CALLBACK_PATH, "Lax", 0),
            self.set_cookie(
                CONFIRM_COOKIE,
                &csrf,
                &format!("/register/confirm/{}", login.auth_id),
                "Strict",
                super::CONFIRM_TTL.num_seconds(),
            ),
        ];
        tracing::info!(
            auth_id = %login.auth_id,
            subject = %person.subject,
            "oidc: login verified; waiting for the person to confirm the machine"
        );
        let host = if pending.hostname.is_empty() {
            "a machine".to_string()
        } else {
            format!("“{}”", pending.hostname)
        };
        let body = format!(
            "<p>You are signed in as <strong>{who}</strong>{email_line}.</p>\
             <p>Log in {host} (machine key <code>{mkey}</code>) to this tailnet as you?</p>\
             <p>Only continue if you have just run <code>tailscale up</code> or a Tailscale login on that machine yourself. If someone sent you this link, close this page.</p>\
             <form method=\"post\" action=\"/register/confirm/{auth_id}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Log in this machine</button></form>",
            who = escape(&who),
            host = escape(&host),
            mkey = escape(&pending.machine_key.short()),
            auth_id = escape(&login.auth_id),
            csrf = escape(&csrf),
        );
        self.confirmations.insert(
            csrf,
            Confirmation {
                auth_id: login.auth_id,
                identity,
                expiry: self.use_expiry_from_token.then_some(person.token_expiry),
            },
            now,
        );
        Ok(with_cookies(
            html(StatusCode::OK, "Log in this machine?", &body),
            &cookies,
        ))
    }

    /// An SSH check passed by signing in again: the person must be the
    /// owner of the source node, known by the subject of an earlier login
    /// (nobody is created here). The person started the SSH connection
    /// themselves, so there is nothing further to confirm.
    fn approve_ssh_check(
        &self,
        auth_id: &str,
        identity: &OidcIdentity,
    ) -> Result<Response, LoginError> {
        let user = self
            .tailnet
            .oidc_user(&identity.provider_id)
            .ok_or_else(|| {
                LoginError::SshCheckRefused(
                "You have no devices in this tailnet, so this connection is not yours to approve."
                    .into(),
            )
            })?;
        let check = self
            .tailnet
            .approve_ssh_check(auth_id, SshApprover::User(user.id))
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => LoginError::SshCheckRefused(
                    "The SSH connection is no longer waiting: connect again.".into(),
                ),
                _ => LoginError::SshCheckRefused(e.to_string()),
            })?;
        tracing::info!(
            auth_id,
            user.id = user.id,
            src = check.src_node,
            dst = check.dst_node,
            "oidc: SSH check passed by the source node's owner"
        );
        let body = format!(
            "<p>The SSH connection from “{src}” to “{dst}” as “{local}” is approved and continues by itself.</p><p>You can close this window.</p>",
            src = escape(&check.src_name),
            dst = escape(&check.dst_name),
            local = escape(&check.local_user),
        );
        Ok(html(StatusCode::OK, "SSH connection approved", &body))
    }

    async fn confirm_login(
        &self,
        auth_id: &str,
        headers: &HeaderMap,
        csrf: &str,
    ) -> Result<Response, LoginError> {
        let now = self.tailnet.now();
        if !cookie(headers, CONFIRM_COOKIE)
            .is_some_and(|v| !csrf.is_empty() && same_secret(v, csrf))
        {
            return Err(LoginError::ConfirmMismatch);
        }
        let confirmation = self
            .confirmations
            .take(csrf, now)
            .ok_or(LoginError::UnknownConfirmation)?;
        if confirmation.auth_id != auth_id {
            return Err(LoginError::ConfirmMismatch);
        }
        let pending = self
            .tailnet
            .pending_registration(auth_id)
            .map_err(|_| LoginError::RegistrationGone)?;
        let (user, created) = self
            .tailnet
            .upsert_oidc_user(&confirmation.identity)
            .await
            .map_err(|e| LoginError::Internal(format!("cannot save the user: {e}")))?;
        let node = self
            .tailnet
            .approve_registration_until(auth_id, user.id, RegisterMethod::Oidc, confirmation.expiry)
            .await
            .map_err(|e| match e {
                headway_state::Error::NotFound { .. } => LoginError::RegistrationGone,
                e => LoginError::Internal(format!("cannot approve the registration: {e}")),
            })?;
        tracing::info!(
            user.id = user.id,
            user.name = %user.name,
            user.created = created,
            node.id = node.id,
            node.name = %node.given_name,
            "oidc: machine logged in"
        );
        let host = if pending.hostname.is_empty() {
            "The machine".to_string()
        } else {
            format!("“{}”", pending.hostname)
        };
        let body = format!(
            "<p>{host} is logged in as <strong>{user}</strong> and connects by itself.</p><p>You can close this window.</p>",
            host = escape(&host),
            user = escape(&user.name),
        );
        let clear = self.set_cookie(
            CONFIRM_COOKIE,
            "",
            &format!("/register/confirm/{auth_id}"),
            "Strict",
            0,
        );
        Ok(with_cookies(
            html(StatusCode::OK, "Machine logged in", &body),
            &[clear],
        ))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ConfirmForm {
    csrf: String,
}

/// `POST /register/confirm/<auth_id>`: the person confirms the machine;
/// the user is created or updated and the registration approved.
pub(super) async fn confirm(
    State(oidc): State<Arc<Oidc>>,
    Path(auth_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    match oidc.confirm_login(&auth_id, &headers, &csrf).await {
        Ok(r) => r,
        Err(e) => e.into_page("confirm"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; headway_oidc_abcdefgh=abcdefghXYZ; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("headway_confirm=c1"),
        );
        assert_eq!(
            cookie(&h, &state_cookie_name("abcdefghXYZ")),
            Some("abcdefghXYZ")
        );
        assert_eq!(cookie(&h, CONFIRM_COOKIE), Some("c1"));
        assert_eq!(cookie(&h, "headway_oidc_zzzzzzzz"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }
}

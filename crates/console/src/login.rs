//! Signing in and out. Two ways in:
//! * an API key, checked by calling the API with it; the session then
//!   calls the API with that key;
//! * OpenID Connect, when the server has a provider and names its
//!   administrators (`console.admins`, `console.admin_groups`): the
//!   session gets an API key of its own, minted for its lifetime and
//!   deleted at sign-out.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use headway_api::wire::{CreateApiKeyRequest, CreateApiKeyResponse, Empty, ListApiKeysResponse};
use maud::html;
use serde::Deserialize;
use tokio::time::Instant;

use crate::api::{Credentials, segment};
use crate::layout::{bare, html_response};
use crate::session::{
    LOGIN_COOKIE, NewSession, SESSION_COOKIE, cookie, random_token, same_secret, set_cookie,
};
use crate::{Console, Ctx};

const LOGIN_FIELD: &str = "_login";
const LOGIN_TTL: Duration = Duration::from_secs(3600);
const OIDC_COOKIE: &str = "headway_console_oidc";
const OIDC_TTL: Duration = Duration::from_secs(600);
/// OIDC logins under way at once, at most.
const MAX_OIDC_LOGINS: usize = 256;

fn with_cookies(mut r: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn login_form(console: &Console, status: StatusCode, error: Option<&str>) -> Response {
    let token = random_token();
    let oidc = console.options.oidc.is_some();
    let body = html! {
        h1 { "Headway" }
        p.muted { "Sign in to administer this tailnet." }
        @if let Some(e) = error { p.flash.err role="alert" { (e) } }
        @if oidc {
            p { a.button.primary href="/admin/oidc/start" { "Sign in with your identity provider" } }
            p.muted { "or with an API key:" }
        }
        form #login method="post" action="/admin/login" {
            input type="hidden" name=(LOGIN_FIELD) value=(token);
            label for="api_key" { "API key" }
            input #api_key type="password" name="api_key" required autocomplete="off"
                placeholder="hskey-api-…" autofocus;
            p.muted { "Create one on the server with " code { "headway apikeys create --expiration 1d" } "." }
            button.primary type="submit" { "Sign in" }
        }
    };
    with_cookies(
        html_response(status, bare("Sign in", body)),
        &[set_cookie(
            LOGIN_COOKIE,
            &token,
            LOGIN_TTL,
            console.options.secure_cookies,
        )],
    )
}

pub(crate) async fn login_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    if cookie(&headers, SESSION_COOKIE)
        .and_then(|t| console.sessions.get(t))
        .is_some()
    {
        return Redirect::to("/admin").into_response();
    }
    login_form(&console, StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub(crate) struct KeyForm {
    #[serde(default)]
    api_key: String,
    #[serde(default, rename = "_login")]
    login: String,
}

fn peer(ext: &http::Extensions) -> Option<std::net::SocketAddr> {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
}

/// Opens a session and sends the browser to the console.
fn signed_in(console: &Console, new: NewSession) -> Response {
    let ttl = new.ttl;
    let (token, _) = console.sessions.open(new);
    with_cookies(
        Redirect::to("/admin").into_response(),
        &[
            set_cookie(SESSION_COOKIE, &token, ttl, console.options.secure_cookies),
            set_cookie(
                LOGIN_COOKIE,
                "",
                Duration::ZERO,
                console.options.secure_cookies,
            ),
        ],
    )
}

pub(crate) async fn login_with_key(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    req_ext: axum::extract::Request,
) -> Response {
    let peer = peer(req_ext.extensions());
    let bytes = match axum::body::to_bytes(req_ext.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return login_form(
                &console,
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("The form is too large."),
            );
        }
    };
    let Ok(form) = serde_urlencoded::from_bytes::<KeyForm>(&bytes) else {
        return login_form(
            &console,
            StatusCode::BAD_REQUEST,
            Some("The form could not be read."),
        );
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_secret(expected, &form.login) {
        return login_form(
            &console,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or did not come from this page; try again."),
        );
    }
    let key = form.api_key.trim().to_string();
    if key.is_empty() {
        return login_form(&console, StatusCode::BAD_REQUEST, Some("Enter an API key."));
    }
    let who = Credentials { key: &key, peer };
    let listed: ListApiKeysResponse = match console.api.get("/api/v1/apikey", who).await {
        Ok(l) => l,
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            return login_form(&console, e.status, Some(&e.detail));
        }
        Err(e) if e.is_unauthorized() => {
            return login_form(
                &console,
                StatusCode::UNAUTHORIZED,
                Some("This API key is not valid: it is unknown, wrong, expired or deleted."),
            );
        }
        Err(e) => return login_form(&console, e.status, Some(&e.detail)),
    };
    // `hskey-api-<prefix>-<secret>`: the prefix names the key.
    let prefix = key
        .strip_prefix("hskey-api-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or("")
        .to_string();
    let now = console.now();
    let mut ttl = console.options.session_ttl;
    if let Some(exp) = listed
        .api_keys
        .iter()
        .find(|k| k.prefix == prefix)
        .and_then(|k| k.expiration)
    {
        let left = (exp - now).to_std().unwrap_or(Duration::ZERO);
        ttl = ttl.min(left);
    }
    tracing::info!(api_key.prefix = %prefix, "console: signed in with an API key");
    signed_in(
        &console,
        NewSession {
            api_key: key,
            who: format!("API key {prefix}"),
            minted_key_prefix: None,
            ttl,
        },
    )
}

pub(crate) async fn logout(
    State(console): State<Arc<Console>>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        console.sessions.close(token);
    }
    if let (Some(prefix), Some(trusted)) = (&ctx.session.minted_key_prefix, &console.trusted_api) {
        let path = format!("/api/v1/apikey/{}", segment(prefix));
        let r: Result<Empty, _> = trusted
            .call(
                Method::DELETE,
                &path,
                Credentials {
                    key: "",
                    peer: None,
                },
                None::<&()>,
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(api_key.prefix = %prefix, "console: could not delete a signed-out session's API key: {e}");
        }
    }
    let secure = console.options.secure_cookies;
    with_cookies(
        html_response(
            StatusCode::OK,
            bare(
                "Signed out",
                html! {
                    h1 { "Signed out" }
                    p { "You are signed out of the console." }
                    p { a.button href="/admin/login" { "Sign in again" } }
                },
            ),
        ),
        &[set_cookie(SESSION_COOKIE, "", Duration::ZERO, secure)],
    )
}

pub(crate) async fn oidc_start(State(console): State<Arc<Console>>) -> Response {
    let Some((oidc, _)) = &console.options.oidc else {
        return login_form(
            &console,
            StatusCode::NOT_FOUND,
            Some("Sign-in with an identity provider is not configured on this server."),
        );
    };
    let (url, state) = match oidc.begin().await {
        Ok(v) => v,
        Err(e) => return login_form(&console, StatusCode::BAD_GATEWAY, Some(&e.0)),
    };
    let token = random_token();
    {
        let mut logins = console.oidc_logins.lock();
        let now = Instant::now();
        logins.retain(|_, (_, exp)| *exp > now);
        if logins.len() >= MAX_OIDC_LOGINS {
            return login_form(
                &console,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many sign-ins under way; try again in a few minutes."),
            );
        }
        logins.insert(token.clone(), (state, now + OIDC_TTL));
    }
    // The provider sends the browser back from another site: the cookie
    // must be Lax to come along on that top-level navigation.
    let c = format!(
        "{OIDC_COOKIE}={token}; Path=/admin/oidc; Max-Age={}; HttpOnly; SameSite=Lax{}",
        OIDC_TTL.as_secs(),
        if console.options.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    with_cookies(Redirect::to(&url).into_response(), &[c])
}

pub(crate) async fn oidc_callback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((oidc, rule)) = &console.options.oidc else {
        return login_form(
            &console,
            StatusCode::NOT_FOUND,
            Some("Sign-in with an identity provider is not configured on this server."),
        );
    };
    let pending = cookie(&headers, OIDC_COOKIE)
        .and_then(|t| console.oidc_logins.lock().remove(t))
        .filter(|(_, exp)| *exp > Instant::now());
    let Some((state, _)) = pending else {
        return login_form(
            &console,
            StatusCode::BAD_REQUEST,
            Some("This sign-in link is unknown or expired; start again."),
        );
    };
    let who = match oidc.finish(state, query.unwrap_or_default()).await {
        Ok(w) => w,
        Err(e) => return login_form(&console, StatusCode::FORBIDDEN, Some(&e.0)),
    };
    if !rule.admits(&who) {
        tracing::info!(email = %who.email, "console: OIDC sign-in refused: not an administrator");
        return login_form(
            &console,
            StatusCode::FORBIDDEN,
            Some(&format!(
                "{} is not an administrator of this server (console.admins / console.admin_groups).",
                if who.email.is_empty() {
                    &who.name
                } else {
                    &who.email
                }
            )),
        );
    }
    let Some(trusted) = &console.trusted_api else {
        return login_form(
            &console,
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("The console cannot open sessions for identity-provider sign-ins on this server."),
        );
    };
    let ttl = console.options.session_ttl;
    let name = if who.email.is_empty() {
        who.name.clone()
    } else {
        who.email.clone()
    };
    // The audit log names the person behind this key by its description.
    let req = CreateApiKeyRequest {
        expiration: Some(
            console.now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12)),
        ),
        description: format!("console:{name}"),
    };
    let minted: CreateApiKeyResponse = match trusted
        .call(
            Method::POST,
            "/api/v1/apikey",
            Credentials {
                key: "",
                peer: None,
            },
            Some(&req),
        )
        .await
    {
        Ok(k) => k,
        Err(e) => return login_form(&console, StatusCode::INTERNAL_SERVER_ERROR, Some(&e.detail)),
    };
    let prefix = minted
        .api_key
        .strip_prefix("hskey-api-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or("")
        .to_string();
    tracing::info!(email = %who.email, api_key.prefix = %prefix, "console: administrator signed in with OIDC");
    let response = signed_in(
        &console,
        NewSession {
            api_key: minted.api_key,
            who: name,
            minted_key_prefix: Some(prefix),
            ttl,
        },
    );
    with_cookies(
        response,
        &[format!(
            "{OIDC_COOKIE}=; Path=/admin/oidc; Max-Age=0; HttpOnly; SameSite=Lax"
        )],
    )
}

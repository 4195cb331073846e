//! `POST /api/v2/oauth/token`: the OAuth 2.0 client-credentials grant
//! (RFC 6749 §4.4), as Tailscale's API and `golang.org/x/oauth2` speak it.
//!
//! The form (`application/x-www-form-urlencoded`) carries `client_id` and
//! `client_secret` (or they come as HTTP Basic credentials), optionally
//! `grant_type=client_credentials`, a space-separated `scope` and `tags`
//! (commas work too) narrowing the token to part of its client's grant.
//! The answer is `{"access_token", "token_type": "Bearer", "expires_in",
//! "scope"}`; refusals are RFC 6749 error bodies (`{"error",
//! "error_description"}`), 401 for wrong credentials (counted by the
//! guard's failure limiter, see [`crate::guard::limit_failures`]).
//!
//! Neither the secret nor the token is logged or quoted in an answer.

use std::sync::Arc;

use axum::Form;
use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use headway_state::Tailnet;
use headway_state::error::ErrorKind;
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<Arc<Tailnet>> {
    Router::new().route("/api/v2/oauth/token", post(issue_token))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    client_secret: String,
    scope: String,
    tags: String,
}

/// The answer to a successful grant.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
}

/// An RFC 6749 §5.2 error.
#[derive(Debug, Serialize)]
struct OAuthError<'a> {
    error: &'a str,
    error_description: &'a str,
}

fn refuse(status: StatusCode, error: &str, description: &str) -> Response {
    tracing::debug!(
        status = status.as_u16(),
        error,
        "OAuth token request refused"
    );
    no_store(
        (
            status,
            Json(OAuthError {
                error,
                error_description: description,
            }),
        )
            .into_response(),
    )
}

/// Token answers must not be cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `%xx` and `+` decoded, as in a form value (x/oauth2 escapes Basic
/// credentials that way).
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(client_id, client_secret)` from an HTTP Basic header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

fn words(text: &str) -> Vec<String> {
    text.split([' ', ','])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

async fn issue_token(State(tailnet): State<Arc<Tailnet>>, req: Request) -> Response {
    let headers = req.headers().clone();
    let form = match Form::<TokenForm>::from_request(req, &()).await {
        Ok(Form(form)) => form,
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a form (application/x-www-form-urlencoded) with client_id and client_secret",
            );
        }
    };
    if !form.grant_type.is_empty() && form.grant_type != "client_credentials" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only the client_credentials grant is supported",
        );
    }
    let (client_id, secret) = if form.client_secret.is_empty() {
        basic_credentials(&headers).unwrap_or_default()
    } else {
        (form.client_id, form.client_secret)
    };
    if secret.is_empty() {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "no client credentials: send client_id and client_secret",
        );
    }
    match tailnet.issue_access_token(&client_id, &secret, &words(&form.scope), &words(&form.tags)) {
        Ok(token) => no_store(
            Json(TokenResponse {
                access_token: token.token,
                token_type: "Bearer".into(),
                expires_in: token.expires_in.num_seconds(),
                scope: token.scopes.join(" "),
            })
            .into_response(),
        ),
        Err(e) => match e.kind() {
            ErrorKind::Unauthorized => {
                refuse(StatusCode::UNAUTHORIZED, "invalid_client", &e.to_string())
            }
            ErrorKind::Forbidden | ErrorKind::Invalid => {
                refuse(StatusCode::BAD_REQUEST, "invalid_scope", &e.to_string())
            }
            _ => {
                tracing::warn!("issuing an access token failed: {e}");
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the token could not be issued; see the server's log",
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(form_decode("a%2Db+c"), "a-b c");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
        assert_eq!(form_decode("%4"), "%4");
        assert_eq!(form_decode("%+1"), "% 1");
        assert_eq!(form_decode("plain"), "plain");
    }

    #[test]
    fn scopes_split_on_spaces_or_commas() {
        assert_eq!(
            words("devices:core  auth_keys,policy_file:read"),
            ["devices:core", "auth_keys", "policy_file:read"]
        );
        assert!(words("").is_empty());
    }
}

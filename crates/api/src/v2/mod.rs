//! A subset of Tailscale's v2 API, so that Tailscale's own tools (the
//! Terraform provider, `tailscale.com/client/tailscale/v2`, scripts written
//! for api.tailscale.com) can drive Headway. Paths, JSON shapes and error
//! bodies are Tailscale's; what each call does is one service method.
//!
//! | operation | path | scope |
//! |---|---|---|
//! | access token (client credentials) | `POST /api/v2/oauth/token` | — |
//! | list devices | `GET /api/v2/tailnet/{tailnet}/devices` | `devices:core:read` |
//! | get, delete device | `GET`, `DELETE /api/v2/device/{id}` | `devices:core[:read]` |
//! | authorize device | `POST /api/v2/device/{id}/authorized` | `devices:core` |
//! | set device tags | `POST /api/v2/device/{id}/tags` | `devices:core` |
//! | device routes | `GET`, `POST /api/v2/device/{id}/routes` | `devices:routes[:read]` |
//! | auth keys | `GET`, `POST /api/v2/tailnet/{tailnet}/keys`, `GET`, `DELETE …/keys/{id}` | `auth_keys[:read]` |
//! | policy file | `GET`, `POST /api/v2/tailnet/{tailnet}/acl` | `policy_file[:read]` |
//! | validate a policy or tests | `POST /api/v2/tailnet/{tailnet}/acl/validate` | `policy_file:read` |
//!
//! Callers: an API key may do everything; an OAuth access token what its
//! scopes allow, and it may only give devices and auth keys the tags its
//! client was given (auth keys made with a token must be tagged). The
//! tailnet in paths is `-` (Tailscale's "the caller's tailnet") or the
//! server's MagicDNS base domain; anything else is 404.
//!
//! Errors are Tailscale's body, `{"message": "…", "status": 404}` (the
//! Tailscale clients read `message`), not problem documents. As Tailscale's
//! API, lists are not paginated: every device and key comes in one answer.
//!
//! Not here: device names, key expiry settings, posture, DNS, users,
//! webhooks, and the rest of Tailscale's API.

mod acl;
mod devices;
mod hujson;
mod keys;
mod token;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headway_state::Tailnet;
use headway_state::error::ErrorKind;
use headway_state::tailnet::scope_allows;
use serde::Serialize;

use crate::error::ApiError;
use crate::guard::Caller;

/// The guarded routes (behind the API-key guard, which also takes OAuth
/// access tokens under `/api/v2/`).
pub(crate) fn routes() -> Router<Arc<Tailnet>> {
    devices::routes().merge(keys::routes()).merge(acl::routes())
}

/// The token endpoint: public (it checks client credentials itself).
pub(crate) fn token_routes() -> Router<Arc<Tailnet>> {
    token::routes()
}

/// An error as Tailscale's API writes it.
#[derive(Debug)]
pub(crate) struct V2Error {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// Tailscale's error body.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    status: u16,
}

impl V2Error {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::PRECONDITION_FAILED => "precondition_failed",
            _ => "error",
        };
        V2Error {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn not_found(what: &str, key: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} {key:?} not found"))
    }

    /// The body Tailscale's API answers an error with.
    pub(crate) fn response(status: StatusCode, message: &str) -> Response {
        let mut response = (
            status,
            Json(ErrorBody {
                message,
                status: status.as_u16(),
            }),
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl From<ApiError> for V2Error {
    fn from(e: ApiError) -> Self {
        // Tailscale answers invalid values with 400, where v1 says 422.
        let status = match &e {
            ApiError::Service(s) if s.kind() == ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            other => other.status(),
        };
        V2Error {
            status,
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<headway_state::Error> for V2Error {
    fn from(e: headway_state::Error) -> Self {
        ApiError::Service(e).into()
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "v2 API request failed");
        } else {
            // Not the message: it may quote what the client sent.
            tracing::debug!(
                status = self.status.as_u16(),
                code = self.code,
                "v2 API request refused"
            );
        }
        Self::response(self.status, &self.message)
    }
}

/// The caller, as the guard established it. A request that did not come
/// through the guard is refused: this API is never open without a key.
#[derive(Debug, Clone)]
pub(crate) struct Who(pub(crate) Caller);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = V2Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, V2Error> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Who)
            .ok_or_else(|| {
                V2Error::new(
                    StatusCode::UNAUTHORIZED,
                    "this API needs an API key or an OAuth access token",
                )
            })
    }
}

impl Who {
    /// Refuses an access token without `scope` (read, or `write`). API keys
    /// and the local socket may do everything.
    pub(crate) fn require(&self, scope: &str, write: bool) -> Result<(), V2Error> {
        match &self.0 {
            Caller::OAuth(grant) if !scope_allows(&grant.scopes, scope, write) => {
                let needed = if write {
                    scope.to_string()
                } else {
                    format!("{scope}:read")
                };
                Err(V2Error::forbidden(format!(
                    "this access token lacks the {needed} scope (it has {}); create the OAuth client with it",
                    grant.scopes.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// The tags an access token may give; `None` for callers without limit.
    pub(crate) fn tag_limit(&self) -> Option<&[String]> {
        match &self.0 {
            Caller::OAuth(grant) => Some(&grant.tags),
            _ => None,
        }
    }

    /// Refuses `tags` an access token may not give.
    pub(crate) fn may_give_tags(&self, tags: &[String]) -> Result<(), V2Error> {
        let Some(allowed) = self.tag_limit() else {
            return Ok(());
        };
        match tags.iter().find(|t| !allowed.contains(t)) {
            None => Ok(()),
            Some(t) => Err(V2Error::forbidden(format!(
                "tag {t:?} is not among the tags of this OAuth client ({}); create a client with it",
                if allowed.is_empty() {
                    "it has none".to_string()
                } else {
                    allowed.join(", ")
                }
            ))),
        }
    }

    pub(crate) fn is_oauth(&self) -> bool {
        matches!(self.0, Caller::OAuth(_))
    }
}

/// Path parameters; a malformed path is a 400 in Tailscale's shape.
pub(crate) struct V2Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for V2Path<T> {
    type Rejection = V2Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, V2Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| V2Path(p.0))
            .map_err(|r| V2Error::bad_request(format!("path: {}", r.body_text())))
    }
}

/// A JSON request body (an empty body reads as `{}`, as Tailscale's
/// clients send none for some calls); unreadable JSON is a 400.
pub(crate) struct V2Json<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for V2Json<T> {
    type Rejection = V2Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, V2Error> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| V2Error::new(r.status(), format!("request body: {}", r.body_text())))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(V2Json)
            .map_err(|e| V2Error::bad_request(format!("request body: {e}")))
    }
}

/// Refuses a tailnet other than `-` or the server's base domain.
pub(crate) fn require_tailnet(tailnet: &Tailnet, name: &str) -> Result<(), V2Error> {
    let base_domain = &tailnet.settings().dns.base_domain;
    if name == "-" || (!base_domain.is_empty() && name == base_domain) {
        Ok(())
    } else {
        Err(V2Error::not_found("tailnet", name))
    }
}

#[cfg(test)]
mod tests;

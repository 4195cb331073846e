//! The one door every console request passes: security headers on every
//! answer; a session for everything but the sign-in pages and the assets;
//! and, for every request that may change something (any method but GET
//! and HEAD), a same-origin check and the session's CSRF token. Handlers
//! never see a request that failed here, so no page can forget a check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::session::{SESSION_COOKIE, cookie};
use crate::{Console, Ctx};

/// Largest console form (the policy text is the big one).
pub(crate) const MAX_FORM_BYTES: usize = 1024 * 1024;

/// The form field and header that carry the CSRF token.
pub(crate) const CSRF_FIELD: &str = "_csrf";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Scripts and styles from the console's own files only: no inline script,
/// no inline style, nothing from elsewhere, no framing.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn is_public(path: &str) -> bool {
    path == "/admin/login" || path.starts_with("/admin/oidc/") || path.starts_with("/admin/static/")
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

pub(crate) fn refuse(status: StatusCode, why: &str) -> Response {
    let mut r = (status, why.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A request that changes something must come from a page of this
/// server: when the browser says where it comes from (`Origin`, or
/// `Sec-Fetch-Site`), it must be here. (The referrer policy is
/// `same-origin`, not `no-referrer`: with the latter, browsers send
/// `Origin: null` on form posts.)
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

/// The CSRF token of a form body (`application/x-www-form-urlencoded`).
pub(crate) fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded_pairs(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

pub(crate) async fn gate(
    State(console): State<Arc<Console>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = check(console, req, next).await;
    secure_headers(response.headers_mut());
    response
}

async fn check(console: Arc<Console>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes && !same_origin(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "refused: this request did not come from a page of this console",
        );
    }
    if is_public(&path) {
        return next.run(req).await;
    }
    let session = cookie(req.headers(), SESSION_COOKIE).and_then(|t| console.sessions.get(t));
    let Some(session) = session else {
        if changes || path == "/admin/events" {
            return refuse(StatusCode::UNAUTHORIZED, "sign in first: /admin/login");
        }
        return Redirect::to("/admin/login").into_response();
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (mut parts, body) = req.into_parts();
    let body = if changes {
        let bytes = match to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"),
        };
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .or_else(|| form_field(&bytes, CSRF_FIELD));
        if !session.csrf_ok(presented.as_deref()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token is missing or wrong; reload the page and try again",
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(Ctx { session, peer });
    next.run(Request::from_parts(parts, body)).await
}

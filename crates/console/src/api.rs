//! The console's only way to the tailnet: the admin REST API, called in
//! process through the same router (and the same API-key guard) that serves
//! `/api/v1` on the network. Each call carries the signed-in person's key
//! and the browser's address, so the guard checks and rate-limits console
//! calls exactly as it does any other client's.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// Largest API answer the console reads (lists of a large tailnet).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// A refused or failed API call: the status and the API's own explanation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiFailure {
    fn internal(detail: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: detail.into(),
        }
    }

    /// The key is no longer accepted (expired, deleted): the session is over.
    pub fn is_unauthorized(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }
}

/// The REST API, in process.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// Who calls: the API key and where the browser is.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub key: &'a str,
    pub peer: Option<SocketAddr>,
}

impl Api {
    pub fn new(router: Router) -> Self {
        Api { router }
    }

    /// Sends one request and returns the raw response (the event stream).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        who: Credentials<'_>,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ApiFailure> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", who.key));
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .map_err(|e| ApiFailure::internal(format!("building an API request: {e}")))?;
        if let Some(peer) = who.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        self.router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| ApiFailure::internal(format!("calling the API: {e}")))
    }

    /// Sends a request and decodes a JSON answer (or the problem document).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        who: Credentials<'_>,
        body: Option<&impl Serialize>,
    ) -> Result<T, ApiFailure> {
        let body = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|e| ApiFailure::internal(format!("encoding a request: {e}")))?,
            ),
            None => None,
        };
        let response = self.send(method, path, who, body).await?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ApiFailure::internal(format!("reading an API answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ApiFailure { status, detail });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiFailure::internal(format!(
                "the API's answer to {path} was not understood: {e}"
            ))
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        who: Credentials<'_>,
    ) -> Result<T, ApiFailure> {
        self.call(Method::GET, path, who, None::<&()>).await
    }
}

/// Escapes one path segment (user and node names go into API paths).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

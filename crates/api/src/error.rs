//! The API's one error type and its one conversion to HTTP: an RFC 7807
//! `application/problem+json` body with the status derived from the error.
//!
//! Service errors keep their message (it names the thing, the value and the
//! fix) and get their status from their kind. Mistakes in the request itself
//! (unreadable JSON, a path segment that is not an id) are 400 with a detail
//! saying which part was wrong; they never reach the service.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use headway_state::error::ErrorKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service layer refused or failed.
    #[error(transparent)]
    Service(#[from] headway_state::Error),
    /// The request could not be read: bad JSON, a bad path or query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// The request body was refused before it was read (too large, …).
    #[error("{detail}")]
    Body { status: StatusCode, detail: String },
    /// A documented option this server does not support yet.
    #[error("{0}")]
    NotImplemented(String),
    /// Too many failed authentications from the caller's address.
    #[error("{0}")]
    TooManyRequests(String),
    /// A dependency (the database) does not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error("no route for {method} {path}")]
    NoRoute { method: Method, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: Method, path: String },
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest(detail.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Service(e) => match e.kind() {
                ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Forbidden => StatusCode::FORBIDDEN,
                ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Body { status, .. } => *status,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// A stable, machine-readable code (the last part of the problem `type`).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Service(e) => e.code(),
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Body { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                "too_large"
            }
            ApiError::Body { .. } => "bad_body",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NoRoute { .. } => "no_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        Problem {
            r#type: format!("{PROBLEM_TYPE_PREFIX}{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
        }
    }
}

/// Problem types are URNs: stable identifiers, not links to fetch.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:headway:problem:";

/// An RFC 7807 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:headway:problem:not_found",
    "title": "Not Found",
    "status": 404,
    "detail": "user \"bob\" not found"
}))]
pub struct Problem {
    /// `urn:headway:problem:<code>`, e.g. `urn:headway:problem:conflict`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, naming the value and, where there is one, the fix.
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "API request failed");
        } else {
            // Not the detail: it may quote what the client sent, secrets included.
            tracing::debug!(
                status = status.as_u16(),
                code = self.code(),
                "API request refused"
            );
        }
        let mut response = (status, Json(self.to_problem())).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// The answer for a path the API does not have.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method,
        path: uri.path().to_string(),
    }
}

/// The answer for a known path with a method it does not have.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_kind_has_its_status() {
        let cases = [
            (headway_state::Error::Invalid("x".into()), 422),
            (headway_state::Error::not_found("user", "bob"), 404),
            (headway_state::Error::Conflict("x".into()), 409),
            (headway_state::Error::Forbidden("x".into()), 403),
            (headway_state::Error::Unauthorized("x".into()), 401),
            (headway_state::Error::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            let code = error.code();
            let problem = ApiError::from(error).to_problem();
            assert_eq!(problem.status, status, "{problem:?}");
            assert_eq!(problem.r#type, format!("urn:headway:problem:{code}"));
        }
    }

    #[test]
    fn the_detail_is_the_service_message() {
        let problem = ApiError::from(headway_state::Error::not_found("user", "bob")).to_problem();
        assert_eq!(problem.detail, "user \"bob\" not found");
        assert_eq!(problem.title, "Not Found");
    }
}

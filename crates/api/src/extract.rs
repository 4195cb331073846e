//! Request extractors whose failures are [`ApiError::BadRequest`] problems
//! that say which part of the request was wrong, and the parsing of ids
//! named in paths and query strings.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::wire::Id;

/// A JSON request body. An empty body reads as `{}` (every field of the
/// API's requests is optional) and the content type is not checked, as
/// grpc-gateway did not check it.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        let text: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => b"{}",
            Some(b'{') => &bytes,
            // serde would read a struct from an array too; the API's bodies are objects.
            Some(_) => {
                return Err(ApiError::bad_request(
                    "request body: expected a JSON object ({...})",
                ));
            }
        };
        axum::Json::<T>::from_bytes(text)
            .map(|json| JsonBody(json.0))
            .map_err(|rejection| {
                ApiError::bad_request(format!("request body: {}", rejection.body_text()))
            })
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    ApiError::Body {
        status: rejection.status(),
        detail: format!("request body: {}", rejection.body_text()),
    }
}

/// Query parameters.
pub(crate) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|rejection| {
                ApiError::bad_request(format!("query string: {}", rejection.body_text()))
            })
    }
}

/// Path parameters, as text; the handler parses them with [`path_id`].
pub(crate) struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|rejection| ApiError::bad_request(format!("path: {}", rejection.body_text())))
    }
}

/// An id from the path, e.g. `path_id("nodeId", "node", "12")`.
pub(crate) fn path_id(param: &str, what: &str, text: &str) -> Result<i64, ApiError> {
    let id: Id = text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "path parameter {param}: {text:?} is not a {what} id (expected a whole number such as 12)"
        ))
    })?;
    // Id 0 names nothing; the service says so with a 404 like for any unknown id.
    Ok(id.get().unwrap_or(0))
}

/// An optional id from the query string: absent, empty or `0` is `None`.
pub(crate) fn query_id(
    param: &str,
    what: &str,
    text: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<Id>().map(Id::get).map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter {param}: {text:?} is not a {what} id (expected a whole number such as 12)"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids_name_the_parameter_when_wrong() {
        assert_eq!(path_id("nodeId", "node", "12").unwrap(), 12);
        let err = path_id("nodeId", "node", "twelve").unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
        assert!(err.to_string().contains("path parameter nodeId"), "{err}");
        assert!(err.to_string().contains("\"twelve\""), "{err}");
        assert!(path_id("nodeId", "node", "-1").is_err());
    }

    #[test]
    fn query_ids_are_optional() {
        assert_eq!(query_id("id", "user", None).unwrap(), None);
        assert_eq!(query_id("id", "user", Some("")).unwrap(), None);
        assert_eq!(query_id("id", "user", Some("0")).unwrap(), None);
        assert_eq!(query_id("id", "user", Some("4")).unwrap(), Some(4));
        assert!(
            query_id("id", "user", Some("x"))
                .unwrap_err()
                .to_string()
                .contains("query parameter id")
        );
    }
}

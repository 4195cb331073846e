//! The policy file: get it, set it (with `If-Match`), validate a policy or
//! a list of tests.
//!
//! GET answers the policy text as it was written (`Accept:
//! application/hujson`) or as plain JSON (comments and trailing commas
//! blanked), with an `ETag` that is the SHA-256 of the text. With no policy
//! set, the answer is an allow-all policy, Tailscale's default, whose ETag
//! also matches `If-Match: "ts-default"` (what the Terraform provider sends
//! to refuse overwriting a policy someone already wrote).
//!
//! Validate answers 200 with `{}` when the policy (or the tests, run
//! against the policy in force) would be accepted, and 200 with `{"message":
//! …, "data": [{"errors": [...]}]}` when not, as Tailscale's API does.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use headway_state::Tailnet;
use headway_state::error::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hujson::standardize;
use super::{V2Error, V2Path, Who, require_tailnet};

/// What GET answers when no policy is set: everyone may reach everything,
/// which is what no policy means.
pub(crate) const DEFAULT_POLICY: &str = "// No policy is set: every node may reach every node.
{
\t\"acls\": [
\t\t{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]},
\t],
}
";

const HUJSON: &str = "application/hujson";

pub(super) fn routes() -> Router<Arc<Tailnet>> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/acl", get(get_acl).post(set_acl))
        .route("/api/v2/tailnet/{tailnet}/acl/validate", post(validate_acl))
}

/// The policy text in force, or the default; and whether it is the default.
fn current(tailnet: &Tailnet) -> (String, bool) {
    match tailnet.policy_info().text {
        Some(text) => (text, false),
        None => (DEFAULT_POLICY.to_string(), true),
    }
}

/// A quoted, content-derived ETag.
pub(crate) fn etag(text: &str) -> String {
    let hash = headway_state::keys::hash_secret(text);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailsQuery {
    #[serde(default)]
    details: Option<String>,
}

#[derive(Debug, Serialize)]
struct Details {
    /// The text, base64 (what older Tailscale clients decode into bytes).
    acl: String,
    warnings: Vec<String>,
}

fn wants_hujson(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(HUJSON))
}

/// The policy as the caller asked for it, with its ETag.
fn policy_response(text: &str, headers: &HeaderMap, details: bool) -> Response {
    let mut response = if details {
        Json(Details {
            acl: base64::engine::general_purpose::STANDARD.encode(text),
            warnings: Vec::new(),
        })
        .into_response()
    } else if wants_hujson(headers) {
        ([(header::CONTENT_TYPE, HUJSON)], text.to_string()).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            standardize(text),
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag(text)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

async fn get_acl(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(name): V2Path<String>,
    headers: HeaderMap,
    Query(query): Query<DetailsQuery>,
) -> Result<Response, V2Error> {
    who.require("policy_file", false)?;
    require_tailnet(&tailnet, &name)?;
    let (text, _) = current(&tailnet);
    let details = matches!(query.details.as_deref(), Some("1" | "true"));
    Ok(policy_response(&text, &headers, details))
}

/// Whether `If-Match` lets a write through: `*`, the current ETag, or
/// `ts-default` while no policy is set.
fn precondition_holds(if_match: &str, text: &str, is_default: bool) -> bool {
    if_match.split(',').map(str::trim).any(|tag| {
        let bare = tag.trim_start_matches("W/").trim_matches('"');
        tag == "*"
            || (bare == "ts-default" && is_default)
            || tag.trim_start_matches("W/") == etag(text)
    })
}

fn body_text(body: &Bytes) -> Result<&str, V2Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| V2Error::bad_request("request body: the policy is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(V2Error::bad_request(
            "request body: send the policy (HuJSON or JSON)",
        ));
    }
    Ok(text)
}

async fn set_acl(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(name): V2Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V2Error> {
    who.require("policy_file", true)?;
    require_tailnet(&tailnet, &name)?;
    let text = body_text(&body)?;
    if let Some(if_match) = headers.get(header::IF_MATCH) {
        let if_match = if_match
            .to_str()
            .map_err(|_| V2Error::bad_request("the If-Match header is not text"))?;
        let (current, is_default) = current(&tailnet);
        if !precondition_holds(if_match, &current, is_default) {
            return Err(V2Error::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition failed: the policy changed since you read it (its ETag differs); read it again",
            ));
        }
    }
    let info = tailnet.set_policy(text).await?;
    let text = info.text.unwrap_or_else(|| DEFAULT_POLICY.to_string());
    Ok(policy_response(&text, &headers, false))
}

/// Tailscale's answer to a validation that found problems.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Validation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub data: Vec<ValidationData>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct ValidationData {
    pub errors: Vec<String>,
}

/// A refusal as a validation answer: failed tests one per line.
fn refusal(message: &str) -> Validation {
    let message = message.strip_prefix("policy refused: ").unwrap_or(message);
    match message.split_once("test(s) failed") {
        Some((_, rest)) => Validation {
            message: Some("test(s) failed".into()),
            data: vec![ValidationData {
                errors: rest
                    .trim_start_matches(':')
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
            }],
        },
        None => Validation {
            message: Some(message.to_string()),
            data: Vec::new(),
        },
    }
}

/// The policy in force with its `tests` replaced by `tests`.
fn with_tests(tailnet: &Tailnet, tests: Value) -> Result<String, V2Error> {
    let (text, _) = current(tailnet);
    let mut policy: Value = serde_json::from_str(&standardize(&text)).map_err(|e| {
        V2Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the policy in force could not be read as JSON: {e}"),
        )
    })?;
    let Some(object) = policy.as_object_mut() else {
        return Err(V2Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the policy in force is not a JSON object",
        ));
    };
    object.insert("tests".into(), tests);
    Ok(policy.to_string())
}

async fn validate_acl(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(name): V2Path<String>,
    body: Bytes,
) -> Result<Json<Validation>, V2Error> {
    who.require("policy_file", false)?;
    require_tailnet(&tailnet, &name)?;
    let text = body_text(&body)?;
    let candidate = if text.trim_start().starts_with('[') {
        // Tests to run against the policy in force.
        let tests: Value = serde_json::from_str(&standardize(text)).map_err(|e| {
            V2Error::bad_request(format!("request body: the tests are not JSON: {e}"))
        })?;
        with_tests(&tailnet, tests)?
    } else {
        text.to_string()
    };
    match tailnet.check_policy(&candidate) {
        Ok(_) => Ok(Json(Validation {
            message: None,
            data: Vec::new(),
        })),
        Err(e) if e.kind() == ErrorKind::Invalid => Ok(Json(refusal(&e.to_string()))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions() {
        let text = "{}";
        let tag = etag(text);
        assert!(precondition_holds("*", text, false));
        assert!(precondition_holds(&tag, text, false));
        assert!(precondition_holds(&format!("W/{tag}"), text, false));
        assert!(precondition_holds(&format!("\"x\", {tag}"), text, false));
        assert!(!precondition_holds("\"x\"", text, false));
        assert!(precondition_holds("\"ts-default\"", DEFAULT_POLICY, true));
        assert!(precondition_holds("ts-default", DEFAULT_POLICY, true));
        assert!(!precondition_holds("\"ts-default\"", text, false));
    }

    #[test]
    fn etags_are_quoted_hex_of_the_text() {
        let tag = etag("{}");
        assert_eq!(tag.len(), 66);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_ne!(tag, etag("{ }"));
    }

    #[test]
    fn failed_tests_are_listed_one_per_line() {
        let v = refusal("policy refused: test(s) failed:\n  a -> b: expected accept\n  c\n");
        assert_eq!(v.message.as_deref(), Some("test(s) failed"));
        assert_eq!(v.data[0].errors, ["a -> b: expected accept", "c"]);
        let v = refusal("policy refused: acls[0] (line 1, column 2): bad");
        assert_eq!(
            v.message.as_deref(),
            Some("acls[0] (line 1, column 2): bad")
        );
        assert!(v.data.is_empty());
    }

    #[test]
    fn the_default_policy_is_json_once_standardized() {
        let v: Value = serde_json::from_str(&standardize(DEFAULT_POLICY)).unwrap();
        assert_eq!(v["acls"][0]["dst"][0], "*:*");
    }
}

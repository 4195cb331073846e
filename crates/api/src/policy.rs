//! `/api/v1/policy`: the policy in force, setting it (`policy.mode:
//! database`), and checking or explaining a candidate against the tailnet
//! without applying it.
//!
//! A refused policy is a 422 whose detail is the engine's message: the JSON
//! path of the offending value, its line and column, and what is wrong. In
//! `policy.mode: file` setting is refused (409) with where to edit instead.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use headway_state::Tailnet;
use headway_state::tailnet::PolicyInfo;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::wire::{Empty, ExplainPolicyResponse, PolicyRequest, PolicyResponse};

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, set_policy))
        .routes(routes!(check_policy))
        .routes(routes!(explain_policy))
}

fn response(info: PolicyInfo) -> Json<PolicyResponse> {
    Json(PolicyResponse {
        policy: info.text.unwrap_or_default(),
        updated_at: info.updated_at,
    })
}

/// Get policy
///
/// The policy in force, as its text. An empty `policy` means there is none:
/// every node may reach every node.
#[utoipa::path(
    get, path = "/api/v1/policy", operation_id = "getPolicy", tag = "Policy",
    responses((status = 200, body = PolicyResponse))
)]
pub(crate) async fn get_policy(State(tailnet): State<Arc<Tailnet>>) -> Json<PolicyResponse> {
    response(tailnet.policy_info())
}

/// Set policy
///
/// Checks the policy against the tailnet (references, compilation, its own
/// `tests`), stores it and applies it to every node at once. Only with
/// `policy.mode: database`.
#[utoipa::path(
    put, path = "/api/v1/policy", operation_id = "setPolicy", tag = "Policy",
    request_body = PolicyRequest,
    responses(
        (status = 200, body = PolicyResponse),
        (status = 400, description = "The body is not a PolicyRequest", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "policy.mode is file: the file is the policy", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy is refused; the detail names the JSON path, line and column", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_policy(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let before = response(tailnet.policy_info()).0;
    let after = response(tailnet.set_policy(&body.policy).await?).0;
    audit::note(
        "policy.set",
        "policy",
        audit::snapshot(&before),
        audit::snapshot(&after),
    );
    Ok(Json(after))
}

/// Check policy
///
/// What setting it would say, against the tailnet as it is (its users and
/// nodes, and the policy's own `tests`), without applying or storing it.
#[utoipa::path(
    post, path = "/api/v1/policy/check", operation_id = "checkPolicy", tag = "Policy",
    request_body = PolicyRequest,
    responses(
        (status = 200, description = "The policy would be accepted", body = Empty),
        (status = 400, description = "The body is not a PolicyRequest", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy would be refused; the detail says why and where", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn check_policy(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<Json<Empty>, ApiError> {
    tailnet.check_policy(&body.policy)?;
    Ok(Json(Empty {}))
}

/// Explain policy
///
/// What the policy would give every node of the tailnet as it is: its
/// packet filter rules, its peers (with AllowedIPs and PrimaryRoutes), its
/// SSH rules and its capabilities; without applying or storing it. An empty
/// `policy` explains "no policy" (everyone reaches everyone).
#[utoipa::path(
    post, path = "/api/v1/policy/explain", operation_id = "explainPolicy", tag = "Policy",
    request_body = PolicyRequest,
    responses(
        (status = 200, body = ExplainPolicyResponse),
        (status = 400, description = "The body is not a PolicyRequest", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy would be refused; the detail says why and where", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn explain_policy(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<Json<ExplainPolicyResponse>, ApiError> {
    let nodes = match tailnet.explain_policy(&body.policy)? {
        serde_json::Value::Object(mut explained) => match explained.remove("nodes") {
            Some(serde_json::Value::Object(nodes)) => nodes,
            _ => serde_json::Map::new(),
        },
        _ => serde_json::Map::new(),
    };
    Ok(Json(ExplainPolicyResponse { nodes }))
}

//! Interactive registration: a machine that ran `tailscale up` without a key
//! waits on its AuthURL (`<server_url>/register/<authId>`) until an
//! administrator registers it for a user, approves it (a known machine
//! logging in again), or rejects it.
//!
//! `/api/v1/auth/*` is headscale's current form; `POST /api/v1/node/register`
//! (`headscale nodes register`) the older one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use headway_state::Tailnet;
use headway_state::model::RegisterMethod;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, QueryParams};
use crate::wire::{AuthDecisionRequest, AuthRegisterRequest, Empty, Node, NodeResponse};

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new()
        .routes(routes!(list_pending))
        .routes(routes!(auth_register))
        .routes(routes!(auth_approve))
        .routes(routes!(auth_reject))
        .routes(routes!(register_node))
}

fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::bad_request(format!("{what} is required")));
    }
    Ok(value)
}

/// A machine waiting on its AuthURL for an administrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRegistration {
    /// The id in the AuthURL (what `authId` takes).
    pub auth_id: String,
    /// The host name the machine reported.
    pub hostname: String,
    pub machine_key: String,
    pub node_key: String,
    pub created_at: DateTime<Utc>,
    /// When the request is forgotten unless approved.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPendingResponse {
    pub registrations: Vec<PendingRegistration>,
}

/// List pending registrations
///
/// Machines that ran `tailscale up` without a key and wait for an
/// administrator, oldest first.
#[utoipa::path(
    get, path = "/api/v1/auth/pending", operation_id = "listPendingRegistrations", tag = "Auth",
    responses((status = 200, body = ListPendingResponse))
)]
pub(crate) async fn list_pending(State(tailnet): State<Arc<Tailnet>>) -> Json<ListPendingResponse> {
    let registrations = tailnet
        .pending_registrations()
        .into_iter()
        .map(|p| PendingRegistration {
            auth_id: p.auth_id,
            hostname: p.hostname,
            machine_key: p.machine_key.to_string(),
            node_key: p.node_key.to_string(),
            created_at: p.created_at,
            expires_at: p.expires_at,
        })
        .collect();
    Json(ListPendingResponse { registrations })
}

/// Registers the waiting machine as a node of `user`.
pub(crate) async fn register_for(
    tailnet: &Tailnet,
    user: &str,
    auth_id: &str,
) -> Result<Json<NodeResponse>, ApiError> {
    let user = tailnet.resolve_user(user)?;
    let node = tailnet
        .approve_registration(auth_id, user.id, RegisterMethod::Cli)
        .await?;
    Ok(Json(NodeResponse {
        node: Node::from_domain(tailnet, &node),
    }))
}

/// Register node via auth flow
///
/// Makes the machine waiting on the AuthURL a node of `user`; its
/// `tailscale up` then completes.
#[utoipa::path(
    post, path = "/api/v1/auth/register", operation_id = "authRegister", tag = "Auth",
    request_body = AuthRegisterRequest,
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`user` or `authId` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or no machine waiting with that id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn auth_register(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<AuthRegisterRequest>,
) -> Result<Json<NodeResponse>, ApiError> {
    let user = required(&body.user, "request body, field user")?;
    let auth_id = required(&body.auth_id, "request body, field authId")?;
    register_for(&tailnet, user, auth_id).await
}

/// Approve a pending auth session
///
/// Lets an SSH connection held by a policy `check` rule through, or
/// approves a machine logging in again to a node it already has (the node
/// keeps its owner). A new machine is registered with `/api/v1/auth/register`.
#[utoipa::path(
    post, path = "/api/v1/auth/approve", operation_id = "authApprove", tag = "Auth",
    request_body = AuthDecisionRequest,
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "`authId` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No machine or SSH connection waiting with that id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A new machine: it needs a user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn auth_approve(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<AuthDecisionRequest>,
) -> Result<Json<Empty>, ApiError> {
    tailnet
        .approve_auth_request(required(&body.auth_id, "request body, field authId")?)
        .await?;
    Ok(Json(Empty {}))
}

/// Reject a pending auth session
///
/// The machine's `tailscale up` fails, or the held SSH connection is refused.
#[utoipa::path(
    post, path = "/api/v1/auth/reject", operation_id = "authReject", tag = "Auth",
    request_body = AuthDecisionRequest,
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "`authId` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No machine waiting with that id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn auth_reject(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<AuthDecisionRequest>,
) -> Result<Json<Empty>, ApiError> {
    tailnet.reject_auth_request(required(&body.auth_id, "request body, field authId")?, "")?;
    Ok(Json(Empty {}))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RegisterNodeQuery {
    /// The new node's owner (name or id).
    #[param(required = true)]
    pub(crate) user: Option<String>,
    /// The id from the AuthURL.
    #[param(required = true)]
    pub(crate) key: Option<String>,
}

/// Register node
///
/// headscale's older form of `/api/v1/auth/register`.
#[utoipa::path(
    post, path = "/api/v1/node/register", operation_id = "registerNode", tag = "Nodes",
    params(RegisterNodeQuery),
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`user` or `key` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or no machine waiting with that id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register_node(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(query): QueryParams<RegisterNodeQuery>,
) -> Result<Json<NodeResponse>, ApiError> {
    let user = required(
        query.user.as_deref().unwrap_or_default(),
        "query parameter user",
    )?;
    let auth_id = required(
        query.key.as_deref().unwrap_or_default(),
        "query parameter key",
    )?;
    register_for(&tailnet, user, auth_id).await
}

//! `/api/v1/node`: list, get, delete, expire, rename, move to another user,
//! set tags, approve routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use headway_state::Tailnet;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, PathParams, QueryParams, path_id};
use crate::page::PageQuery;
use crate::wire::{
    Empty, ExpireNodeRequest, ListNodesResponse, MoveNodeRequest, Node, NodeResponse,
    SetApprovedRoutesRequest, SetTagsRequest,
};

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new()
        .routes(routes!(list_nodes))
        .routes(routes!(get_node, delete_node))
        .routes(routes!(expire_node))
        .routes(routes!(rename_node))
        .routes(routes!(move_node))
        .routes(routes!(set_tags))
        .routes(routes!(set_approved_routes))
}

fn node_response(tailnet: &Tailnet, node: &headway_state::model::Node) -> Json<NodeResponse> {
    Json(NodeResponse {
        node: Node::from_domain(tailnet, node),
    })
}

fn node_id(text: &str) -> Result<i64, ApiError> {
    path_id("nodeId", "node", text)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListNodesQuery {
    /// Only the nodes of this user (name or id).
    pub(crate) user: Option<String>,
}

/// List nodes
///
/// Sorted by id; in pages with `pageSize`.
#[utoipa::path(
    get, path = "/api/v1/node", operation_id = "listNodes", tag = "Nodes",
    params(ListNodesQuery, PageQuery),
    responses(
        (status = 200, body = ListNodesResponse),
        (status = 400, description = "The page size or token is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_nodes(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(query): QueryParams<ListNodesQuery>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<ListNodesResponse>, ApiError> {
    let user = match query.user.as_deref() {
        None | Some("") => None,
        Some(name_or_id) => Some(tailnet.resolve_user(name_or_id)?.id),
    };
    let page = page.apply(tailnet.list_nodes(user), |n| n.id)?;
    Ok(Json(ListNodesResponse {
        nodes: page
            .items
            .iter()
            .map(|n| Node::from_domain(&tailnet, n))
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Get node
#[utoipa::path(
    get, path = "/api/v1/node/{nodeId}", operation_id = "getNode", tag = "Nodes",
    params(("nodeId" = String, Path, format = "uint64", description = "The node's id")),
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`nodeId` is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_node(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(id): PathParams<String>,
) -> Result<Json<NodeResponse>, ApiError> {
    let node = tailnet.get_node(node_id(&id)?)?;
    Ok(node_response(&tailnet, &node))
}

/// Delete node
#[utoipa::path(
    delete, path = "/api/v1/node/{nodeId}", operation_id = "deleteNode", tag = "Nodes",
    params(("nodeId" = String, Path, format = "uint64", description = "The node's id")),
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "`nodeId` is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_node(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Empty>, ApiError> {
    let id = node_id(&id)?;
    let before = tailnet.delete_node(id).await?;
    audit::note_node("node.delete", id, Some(&before), None);
    Ok(Json(Empty {}))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExpireNodeQuery {
    /// When the key expires (RFC 3339), as headscale 0.27 clients send it;
    /// the body's `expiry` is the current form.
    #[param(value_type = Option<String>, format = DateTime)]
    pub(crate) expiry: Option<String>,
}

/// Expire node
///
/// Expires the node's key now, or at `expiry`: the node must log in again.
/// With `disableExpiry` the key never expires instead.
#[utoipa::path(
    post, path = "/api/v1/node/{nodeId}/expire", operation_id = "expireNode", tag = "Nodes",
    params(("nodeId" = String, Path, format = "uint64", description = "The node's id"), ExpireNodeQuery),
    request_body(content = Option<ExpireNodeRequest>, description = "Optional"),
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`nodeId` or `expiry` is not valid, or both `expiry` and `disableExpiry` are given", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn expire_node(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<ExpireNodeQuery>,
    JsonBody(body): JsonBody<ExpireNodeRequest>,
) -> Result<Json<NodeResponse>, ApiError> {
    let id = node_id(&id)?;
    let query_expiry = match query.expiry.as_deref() {
        None | Some("") => None,
        Some(text) => Some(DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| {
            ApiError::bad_request(format!(
                "query parameter expiry: {text:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z ({e})"
            ))
        })?),
    };
    let before = tailnet.node(id);
    let expiry = body.expiry.or(query_expiry);
    let node = match (body.disable_expiry, expiry) {
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "disableExpiry and expiry contradict each other: give one of them",
            ));
        }
        (true, None) => tailnet.disable_node_expiry(id).await?,
        (false, expiry) => tailnet.expire_node(id, expiry).await?,
    };
    audit::note_node("node.expire", id, before.as_deref(), Some(&node));
    Ok(node_response(&tailnet, &node))
}

/// Rename node
///
/// Sets the node's name in the tailnet (its MagicDNS label).
#[utoipa::path(
    post, path = "/api/v1/node/{nodeId}/rename/{newName}", operation_id = "renameNode", tag = "Nodes",
    params(
        ("nodeId" = String, Path, format = "uint64", description = "The node's id"),
        ("newName" = String, Path, description = "The new name: a DNS label"),
    ),
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`nodeId` is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another node has that name", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is not a valid DNS label", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rename_node(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams((id, new_name)): PathParams<(String, String)>,
) -> Result<Json<NodeResponse>, ApiError> {
    let id = node_id(&id)?;
    let before = tailnet.node(id);
    let node = tailnet.rename_node(id, &new_name).await?;
    audit::note_node("node.rename", id, before.as_deref(), Some(&node));
    Ok(node_response(&tailnet, &node))
}

/// Move node
///
/// Gives the node to another user.
#[utoipa::path(
    post, path = "/api/v1/node/{nodeId}/user", operation_id = "moveNode", tag = "Nodes",
    params(("nodeId" = String, Path, format = "uint64", description = "The node's id")),
    request_body = MoveNodeRequest,
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`nodeId` or `user` is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node or user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn move_node(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<MoveNodeRequest>,
) -> Result<Json<NodeResponse>, ApiError> {
    let id = node_id(&id)?;
    let Some(user) = body.user.get() else {
        return Err(ApiError::bad_request(
            "request body, field user: the id of the new owner is required",
        ));
    };
    let before = tailnet.node(id);
    let node = tailnet.move_node(id, user).await?;
    audit::note_node("node.move", id, before.as_deref(), Some(&node));
    Ok(node_response(&tailnet, &node))
}

/// Set tags
///
/// Replaces the node's tags.
#[utoipa::path(
    post, path = "/api/v1/node/{nodeId}/tags", operation_id = "setTags", tag = "Nodes",
    params(("nodeId" = String, Path, format = "uint64", description = "The node's id")),
    request_body = SetTagsRequest,
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`nodeId` is not an id, or the body is not a SetTagsRequest", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A tag is not valid, or a node owned by tags alone would have none", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_tags(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<SetTagsRequest>,
) -> Result<Json<NodeResponse>, ApiError> {
    let id = node_id(&id)?;
    let before = tailnet.node(id);
    let node = tailnet.set_node_tags(id, &body.tags).await?;
    audit::note_node("node.tags", id, before.as_deref(), Some(&node));
    Ok(node_response(&tailnet, &node))
}

/// Set approved routes
///
/// Replaces the node's approved routes. A route is served once the node
/// announces it too (`tailscale up --advertise-routes=…`); `subnetRoutes`
/// in the answer are the ones it serves as primary router. Approving
/// `0.0.0.0/0` or `::/0` approves both: the node becomes an exit node.
#[utoipa::path(
    post, path = "/api/v1/node/{nodeId}/approve_routes", operation_id = "setApprovedRoutes", tag = "Nodes",
    params(("nodeId" = String, Path, format = "uint64", description = "The node's id")),
    request_body = SetApprovedRoutesRequest,
    responses(
        (status = 200, body = NodeResponse),
        (status = 400, description = "`nodeId` is not an id, or the body is not a SetApprovedRoutesRequest", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such node", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A route is not a prefix, or has host bits set", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_approved_routes(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<SetApprovedRoutesRequest>,
) -> Result<Json<NodeResponse>, ApiError> {
    let id = node_id(&id)?;
    let before = tailnet.node(id);
    tailnet.approve_routes(id, &body.routes).await?;
    let node = tailnet.get_node(id)?;
    audit::note_node("node.approve_routes", id, before.as_deref(), Some(&node));
    Ok(node_response(&tailnet, &node))
}

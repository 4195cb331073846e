//! Devices (Tailscale's name for nodes): list, get, delete, authorize,
//! tags, subnet routes. A device's `id` and `nodeId` are both the node's
//! decimal id.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use headway_state::Tailnet;
use headway_state::model::{Node, TAGGED_DEVICES_USER_NAME};
use headway_state::tailnet::NodeRoutes;
use serde::{Deserialize, Serialize};

use super::{V2Error, V2Json, V2Path, Who, require_tailnet};
use crate::wire::Empty;

pub(super) fn routes() -> Router<Arc<Tailnet>> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/devices", get(list_devices))
        .route("/api/v2/device/{id}", get(get_device).delete(delete_device))
        .route("/api/v2/device/{id}/authorized", post(authorize_device))
        .route("/api/v2/device/{id}/tags", post(set_device_tags))
        .route(
            "/api/v2/device/{id}/routes",
            get(get_device_routes).post(set_device_routes),
        )
}

/// A device as Tailscale's API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Device {
    pub addresses: Vec<String>,
    /// The MagicDNS name (`<name>.<base_domain>`).
    pub name: String,
    pub id: String,
    pub node_id: String,
    /// Always true: nodes are authorized when they register.
    pub authorized: bool,
    /// The owner's login, or `tagged-devices`.
    pub user: String,
    pub tags: Vec<String>,
    pub key_expiry_disabled: bool,
    pub blocks_incoming_connections: bool,
    pub client_version: String,
    pub created: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    pub hostname: String,
    pub is_ephemeral: bool,
    pub is_external: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    pub machine_key: String,
    pub node_key: String,
    pub os: String,
    pub tailnet_lock_error: String,
    pub tailnet_lock_key: String,
    pub update_available: bool,
    /// With `fields=all` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_routes: Option<Vec<String>>,
    /// With `fields=all` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_routes: Option<Vec<String>>,
}

/// What a device announces, and what is enabled (approved) for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRoutes {
    pub advertised_routes: Vec<String>,
    pub enabled_routes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DeviceList {
    pub devices: Vec<Device>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FieldsQuery {
    /// `all` adds the route fields; `default` (or nothing) leaves them out.
    #[serde(default)]
    fields: Option<String>,
}

impl FieldsQuery {
    fn all(&self) -> bool {
        self.fields.as_deref() == Some("all")
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn routes_of(routes: &NodeRoutes) -> DeviceRoutes {
    DeviceRoutes {
        advertised_routes: strings(&routes.announced),
        enabled_routes: strings(&routes.approved),
    }
}

pub(crate) fn device(tailnet: &Tailnet, node: &Node, all_fields: bool) -> Device {
    let id = node.id.to_string();
    let base_domain = &tailnet.settings().dns.base_domain;
    let name = if base_domain.is_empty() {
        node.given_name.clone()
    } else {
        format!("{}.{base_domain}", node.given_name)
    };
    let user = if node.is_tagged() {
        TAGGED_DEVICES_USER_NAME.to_string()
    } else {
        node.user_id
            .and_then(|u| tailnet.user(u))
            .map(|u| {
                if u.email.is_empty() {
                    u.name.clone()
                } else {
                    u.email.clone()
                }
            })
            .unwrap_or_default()
    };
    let routes = all_fields.then(|| tailnet.node_routes(node.id).ok().map(|r| routes_of(&r)));
    let routes = routes.flatten();
    Device {
        addresses: node.ips().map(|ip| ip.to_string()).collect(),
        name,
        id: id.clone(),
        node_id: id,
        authorized: true,
        user,
        tags: node.tags.clone(),
        key_expiry_disabled: node.expiry.is_none(),
        blocks_incoming_connections: false,
        client_version: node.hostinfo.ipn_version.clone(),
        created: node.created_at,
        expires: node.expiry,
        hostname: node.hostname.clone(),
        is_ephemeral: node.ephemeral,
        is_external: false,
        last_seen: node.last_seen,
        machine_key: node.machine_key.to_string(),
        node_key: node.node_key.to_string(),
        os: node.hostinfo.os.clone(),
        tailnet_lock_error: String::new(),
        tailnet_lock_key: String::new(),
        update_available: false,
        advertised_routes: routes.as_ref().map(|r| r.advertised_routes.clone()),
        enabled_routes: routes.map(|r| r.enabled_routes),
    }
}

/// The node a device id names; an id that is not a number names nothing.
fn find(tailnet: &Tailnet, id: &str) -> Result<Arc<Node>, V2Error> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .and_then(|id| tailnet.node(id))
        .ok_or_else(|| V2Error::not_found("device", id))
}

async fn list_devices(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(name): V2Path<String>,
    Query(query): Query<FieldsQuery>,
) -> Result<Json<DeviceList>, V2Error> {
    who.require("devices:core", false)?;
    require_tailnet(&tailnet, &name)?;
    let devices = tailnet
        .list_nodes(None)
        .iter()
        .map(|n| device(&tailnet, n, query.all()))
        .collect();
    Ok(Json(DeviceList { devices }))
}

async fn get_device(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(id): V2Path<String>,
    Query(query): Query<FieldsQuery>,
) -> Result<Json<Device>, V2Error> {
    who.require("devices:core", false)?;
    let node = find(&tailnet, &id)?;
    Ok(Json(device(&tailnet, &node, query.all())))
}

async fn delete_device(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(id): V2Path<String>,
) -> Result<Json<Empty>, V2Error> {
    who.require("devices:core", true)?;
    let node = find(&tailnet, &id)?;
    tailnet.delete_node(node.id).await?;
    Ok(Json(Empty {}))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizedRequest {
    authorized: bool,
}

/// Nodes are authorized when they register (with a key, by an
/// administrator, or through OIDC), so authorizing is a no-op and
/// de-authorizing is refused rather than pretended.
async fn authorize_device(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(id): V2Path<String>,
    V2Json(body): V2Json<AuthorizedRequest>,
) -> Result<Json<Empty>, V2Error> {
    who.require("devices:core", true)?;
    find(&tailnet, &id)?;
    if !body.authorized {
        return Err(V2Error::bad_request(
            "this server has no de-authorized devices: a device is authorized when it registers; delete the device or expire its key instead",
        ));
    }
    Ok(Json(Empty {}))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TagsRequest {
    /// `null` reads as no tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
}

async fn set_device_tags(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(id): V2Path<String>,
    V2Json(body): V2Json<TagsRequest>,
) -> Result<Json<Empty>, V2Error> {
    who.require("devices:core", true)?;
    let node = find(&tailnet, &id)?;
    let tags = body.tags.unwrap_or_default();
    who.may_give_tags(&tags)?;
    tailnet.set_node_tags(node.id, &tags).await?;
    Ok(Json(Empty {}))
}

async fn get_device_routes(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(id): V2Path<String>,
) -> Result<Json<DeviceRoutes>, V2Error> {
    who.require("devices:routes", false)?;
    let node = find(&tailnet, &id)?;
    Ok(Json(routes_of(&tailnet.node_routes(node.id)?)))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RoutesRequest {
    #[serde(default)]
    routes: Option<Vec<String>>,
}

/// Replaces the enabled routes: Tailscale's "enabled" is Headway's
/// "approved".
async fn set_device_routes(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(id): V2Path<String>,
    V2Json(body): V2Json<RoutesRequest>,
) -> Result<Json<DeviceRoutes>, V2Error> {
    who.require("devices:routes", true)?;
    let node = find(&tailnet, &id)?;
    let routes = tailnet
        .approve_routes(node.id, &body.routes.unwrap_or_default())
        .await?;
    Ok(Json(routes_of(&routes)))
}

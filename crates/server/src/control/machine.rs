//! The HTTP/2 service inside one Noise connection. Every request is
//! authenticated by the connection's machine key; handlers check that the node
//! key in the body belongs to it (in the service layer).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use headway_proto::framing::{self, Compression};
use headway_proto::keys::MachinePublic;
use headway_proto::tailcfg::{MapRequest, RegisterRequest};
use headway_state::error::{Error, ErrorKind};
use serde::de::DeserializeOwned;

use super::{Control, poll};

/// Requests are small JSON documents; anything larger is refused.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(super) struct Machine {
    pub c: Control,
    pub key: MachinePublic,
}

pub(super) fn router(c: Control, key: MachinePublic) -> Router {
    Router::new()
        .route("/machine/register", post(register))
        .route("/machine/map", post(map))
        .route("/machine/set-dns", post(not_supported))
        .route("/machine/id-token", post(not_supported))
        .route("/machine/set-device-attr", patch(not_supported))
        .route("/machine/feature/query", post(not_supported))
        .route("/machine/audit-log", post(accepted))
        .route("/machine/update-health", post(accepted))
        .route("/machine/whoami", get(whoami))
        .route(
            "/machine/ssh/action/{src}/to/{dst}",
            get(super::ssh_action::ssh_action),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such control endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Machine { c, key })
}

pub(super) fn error_response(e: &Error) -> Response {
    let status = match e.kind() {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!("control request failed: {e}");
        return (status, "internal error; see the server log").into_response();
    }
    (status, e.to_string()).into_response()
}

fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed {what} request: {e}"))
}

pub(super) fn json(body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn register(State(m): State<Machine>, body: Bytes) -> Response {
    let req: RegisterRequest = match parse("register", &body) {
        Ok(r) => r,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    match m.c.tailnet.register(m.key, &req).await {
        Ok((resp, outcome)) => {
            tracing::debug!(machine = %m.key.short(), node_key = %req.node_key.short(), ?outcome, "register");
            json(&resp)
        }
        Err(e) => {
            tracing::info!(machine = %m.key.short(), node_key = %req.node_key.short(), "register refused: {e}");
            error_response(&e)
        }
    }
}

async fn map(State(m): State<Machine>, body: Bytes) -> Response {
    let req: MapRequest = match parse("map", &body) {
        Ok(r) => r,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    let update = match m.c.tailnet.apply_map_request(m.key, &req).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(machine = %m.key.short(), node_key = %req.node_key.short(), "map refused: {e}");
            return error_response(&e);
        }
    };
    let compression = Compression::from_request(&req.compress);
    let kind = match (req.stream, req.omit_peers) {
        (true, _) => "stream",
        (false, true) => "update",
        (false, false) => "poll",
    };
    m.c.tailnet
        .metrics()
        .map_requests
        .get_or_create(&headway_state::metrics::KindLabel { kind })
        .inc();
    if req.stream {
        return poll::stream(m.c, update.node, &req, compression).await;
    }
    if req.omit_peers {
        // A "lite" update: applied above; the client discards the body.
        return StatusCode::OK.into_response();
    }
    let msg = headway_mapper::full_map(m.c.tailnet.as_ref(), &update.node, false);
    match framing::frame(&msg, compression) {
        Ok(frame) => Response::new(Body::from(frame)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn not_supported() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        "not supported by this Headway server",
    )
        .into_response()
}

async fn accepted() -> Response {
    StatusCode::OK.into_response()
}

async fn whoami(State(m): State<Machine>) -> Response {
    json(&serde_json::json!({ "machineKey": m.key }))
}

//! headway-api: the admin REST API, with headscale's v1 paths and JSON shapes
//! so that tools written for headscale work unchanged.
//!
//! Every handler parses its input, calls one method of
//! [`headway_state::Tailnet`], and renders the result; there is no domain logic
//! here. Errors become RFC 7807 `application/problem+json` in one place
//! ([`error`]). The OpenAPI 3.1 document is generated from the handlers'
//! annotations and served at `/api/v1/openapi.yaml` and `/api/v1/openapi.json`.
//!
//! This crate does not authenticate: [`router`] returns a plain
//! [`axum::Router`] that the server mounts on its trusted unix socket, and
//! wraps in an API-key layer (`Router::layer`) where it faces the network.
//!
//! The JSON shapes live in [`wire`] so that the CLI decodes exactly what the
//! server encodes.

mod auth;
pub mod error;
mod extract;
mod health;
mod nodes;
mod openapi;
mod preauth_keys;
mod users;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use headway_state::Tailnet;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, Problem};

/// Largest request body accepted; the API's bodies are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Where the OpenAPI document is served (`.yaml` and `.json`).
pub const OPENAPI_PATH: &str = "/api/v1/openapi";

/// The REST API over `tailnet`, with its OpenAPI document.
pub fn router(tailnet: Arc<Tailnet>) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    api.merge(openapi::routes(&doc))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(tailnet)
}

/// The OpenAPI document of [`router`] (what `/api/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// Every operation of the API. Routes are added here only through
/// `utoipa_axum::routes!`, which puts each into the document as it puts it
/// into the router.
fn api_routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::routes())
        .merge(users::routes())
        .merge(preauth_keys::routes())
        .merge(nodes::routes())
        .merge(auth::routes())
}

#[cfg(test)]
mod tests;

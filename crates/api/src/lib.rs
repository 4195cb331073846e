//! headway-api: the admin API. REST with headscale's v1 paths and JSON
//! shapes (so that tools written for headscale work unchanged), gRPC with
//! headscale's `headscale.v1.HeadscaleService`, a subset of Tailscale's v2
//! API for Tailscale's own tools, and the API-key guard for all of them.
//!
//! Every handler parses its input, calls one method of
//! [`headway_state::Tailnet`], and renders the result; there is no domain logic
//! here. gRPC methods are adapters over the REST handlers ([`grpc`]). Errors
//! become RFC 7807 `application/problem+json` in one place ([`error`]). The
//! OpenAPI 3.1 document is generated from the handlers' annotations and
//! served at `/api/v1/openapi.yaml` and `/api/v1/openapi.json`, with a page
//! for people at `/api/v1/docs` (embedded, no external assets).
//!
//! Three routers, one per door:
//! * [`router`]: the trusted unix socket: REST v1, gRPC, docs; no key.
//! * [`network_router`]: the main TCP listener: REST v1 and v2 behind the
//!   [`guard`]; the OpenAPI document, the docs page and the OAuth token
//!   endpoint are public (they hold no tailnet data; the token endpoint
//!   checks client credentials itself and counts failures).
//! * [`grpc_network_router`]: `grpc_listen_addr`: gRPC behind the guard.
//!
//! The JSON shapes live in [`wire`] so that the CLI decodes exactly what the
//! server encodes.

mod api_keys;
pub mod audit;
pub mod auth;
pub mod dns;
mod docs;
pub mod error;
pub mod events;
mod extract;
pub mod grpc;
pub mod guard;
mod health;
pub mod listen;
mod nodes;
mod oauth_clients;
mod openapi;
mod page;
mod policy;
mod preauth_keys;
mod users;
pub mod v2;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::any;
use headway_state::Tailnet;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, Problem};
pub use guard::{Caller, Guard};

/// Largest request body accepted; the API's bodies are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Where the OpenAPI document is served (`.yaml` and `.json`).
pub const OPENAPI_PATH: &str = "/api/v1/openapi";

/// Where the page for people is served.
pub const DOCS_PATH: &str = "/api/v1/docs";

/// The trusted door (the unix socket): the REST API with its OpenAPI
/// document and docs page, and the gRPC service. No key is asked for.
pub fn router(tailnet: Arc<Tailnet>) -> Router {
    let (api, mut doc) = api_routes().split_for_parts();
    openapi::document_auth(&mut doc);
    api.merge(openapi::routes(&doc))
        .merge(docs::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(tailnet.clone())
        .merge(grpc::routes(tailnet.clone()))
        // Every caller here is the local administrator (no Caller: `local`).
        .layer(from_fn_with_state(tailnet, audit::record))
}

/// The network door (the main listener): REST v1 and the v2 subset, each
/// call with a key checked by `guard`. Unknown paths under `/api/` are
/// guarded too (a 401 without a key, a 404 problem with one); other paths
/// are left to the router this is merged into.
pub fn network_router(tailnet: Arc<Tailnet>, guard: Arc<Guard>) -> Router {
    let (api, mut doc) = api_routes().split_for_parts();
    openapi::document_auth(&mut doc);
    let guarded = api
        .merge(v2::routes())
        .route("/api/{*rest}", any(error::no_route))
        .method_not_allowed_fallback(error::method_not_allowed)
        // Inside the guard: the audit log sees the caller it established.
        .layer(from_fn_with_state(tailnet.clone(), audit::record))
        .layer(from_fn_with_state(guard.clone(), guard::require_key))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(tailnet.clone());
    let public = openapi::routes(&doc)
        .merge(docs::routes())
        .merge(
            v2::token_routes()
                .layer(from_fn_with_state(guard, guard::limit_failures))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(tailnet);
    public.merge(guarded)
}

/// The gRPC door (`grpc_listen_addr`): the gRPC service, each call with an
/// API key checked by `guard`.
pub fn grpc_network_router(tailnet: Arc<Tailnet>, guard: Arc<Guard>) -> Router {
    grpc::routes(tailnet.clone())
        .route("/{*rest}", any(grpc::no_method))
        .layer(from_fn_with_state(tailnet, audit::record))
        .layer(from_fn_with_state(guard, guard::require_key))
}

/// The OpenAPI document of [`router`] (what `/api/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().into_openapi();
    openapi::document_auth(&mut doc);
    doc
}

/// Every operation of the API. Routes are added here only through
/// `utoipa_axum::routes!`, which puts each into the document as it puts it
/// into the router.
fn api_routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::routes())
        .merge(audit::routes())
        .merge(users::routes())
        .merge(preauth_keys::routes())
        .merge(nodes::routes())
        .merge(auth::routes())
        .merge(api_keys::routes())
        .merge(policy::routes())
        .merge(oauth_clients::routes())
        .merge(events::routes())
        .merge(dns::routes())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_network;

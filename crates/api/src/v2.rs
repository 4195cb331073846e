//! A subset of Tailscale's v2 API (stub; filled in below).

use std::sync::Arc;

use axum::Router;
use headway_state::Tailnet;

pub(crate) fn routes() -> Router<Arc<Tailnet>> {
    Router::new()
}

pub(crate) fn token_routes() -> Router<Arc<Tailnet>> {
    Router::new()
}

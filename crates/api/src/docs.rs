//! `/api/v1/docs`: a page for people that renders the OpenAPI document
//! (fetched from `openapi.json` beside it) as a list of operations and
//! schemas. It is one embedded HTML file with no external assets, so it
//! works on servers without Internet access.

use std::sync::Arc;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use headway_state::Tailnet;

use crate::DOCS_PATH;

const PAGE: &str = include_str!("../assets/docs.html");

pub(crate) fn routes() -> Router<Arc<Tailnet>> {
    Router::new().route(DOCS_PATH, get(|| async { Html(PAGE) }))
}

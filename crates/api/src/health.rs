//! `GET /api/v1/health`: whether the server can serve, which means whether
//! its database answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use headway_state::Tailnet;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::wire::HealthResponse;

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Health check
///
/// Asks the database; answers 503 when it does not respond.
#[utoipa::path(
    get, path = "/api/v1/health", operation_id = "health", tag = "Health",
    responses(
        (status = 200, description = "The database answers", body = HealthResponse),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn health(
    State(tailnet): State<Arc<Tailnet>>,
) -> Result<Json<HealthResponse>, ApiError> {
    match tailnet.store().ping().await {
        Ok(()) => Ok(Json(HealthResponse {
            database_connectivity: true,
        })),
        Err(e) => Err(ApiError::Unavailable(format!(
            "the database does not answer: {e}"
        ))),
    }
}

//! `/api/v1/oauthclient`: list, create, delete the OAuth clients of the
//! Tailscale-compatible v2 API (what the Terraform provider, the Kubernetes
//! operator and other Tailscale tools log in with).
//!
//! A client's secret is returned once, in the answer to its creation;
//! nothing here logs it. Deleting a client ends its access tokens at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use headway_state::Tailnet;
use headway_state::keys::OAUTH_CLIENT_PREFIX;
use headway_state::tailnet::NewOAuthClient;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::page::PageQuery;
use crate::wire::{
    CreateOAuthClientRequest, CreateOAuthClientResponse, Empty, ListOAuthClientsResponse,
    OAuthClient,
};

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new()
        .routes(routes!(list_oauth_clients, create_oauth_client))
        .routes(routes!(delete_oauth_client))
}

/// List OAuth clients
///
/// Sorted by id, without their secrets; in pages with `pageSize`.
#[utoipa::path(
    get, path = "/api/v1/oauthclient", operation_id = "listOAuthClients", tag = "OAuthClients",
    params(PageQuery),
    responses(
        (status = 200, body = ListOAuthClientsResponse),
        (status = 400, description = "The page size or token is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_oauth_clients(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<ListOAuthClientsResponse>, ApiError> {
    let page = page.apply(tailnet.list_oauth_clients(), |c| c.id)?;
    Ok(Json(ListOAuthClientsResponse {
        oauth_clients: page.items.iter().map(OAuthClient::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Create OAuth client
///
/// The answer holds the client's secret; it is not shown again.
#[utoipa::path(
    post, path = "/api/v1/oauthclient", operation_id = "createOAuthClient", tag = "OAuthClients",
    request_body = CreateOAuthClientRequest,
    responses(
        (status = 200, body = CreateOAuthClientResponse),
        (status = 400, description = "The body is not a CreateOAuthClientRequest", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No scope, an unknown scope, an invalid tag, or write access to auth keys without tags", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_oauth_client(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<CreateOAuthClientRequest>,
) -> Result<Json<CreateOAuthClientResponse>, ApiError> {
    let (client, client_secret) = tailnet
        .create_oauth_client(NewOAuthClient {
            description: body.description,
            scopes: body.scopes,
            tags: body.tags,
        })
        .await?;
    let oauth_client = OAuthClient::from(&client);
    audit::note(
        "oauth_client.create",
        format!("oauth_client:#{}", client.id),
        None,
        audit::snapshot(&oauth_client),
    );
    Ok(Json(CreateOAuthClientResponse {
        oauth_client,
        client_secret,
    }))
}

/// Delete OAuth client
///
/// Its access tokens stop working at once.
#[utoipa::path(
    delete, path = "/api/v1/oauthclient/{clientId}", operation_id = "deleteOAuthClient", tag = "OAuthClients",
    params(("clientId" = String, Path, description = "The client id, as listed (or the numeric id)")),
    responses(
        (status = 200, body = Empty),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_oauth_client(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(client_id): PathParams<String>,
) -> Result<Json<Empty>, ApiError> {
    let client = tailnet.find_oauth_client(client_id_of(client_id.trim()))?;
    tailnet.delete_oauth_client(client.id).await?;
    audit::note(
        "oauth_client.delete",
        format!("oauth_client:#{}", client.id),
        audit::snapshot(&OAuthClient::from(&client)),
        None,
    );
    Ok(Json(Empty {}))
}

/// A secret pasted where its client id belongs becomes the client id, so
/// that the secret goes no further (not into an error message or a log).
fn client_id_of(text: &str) -> &str {
    match text.strip_prefix(OAUTH_CLIENT_PREFIX) {
        Some(rest) => rest.split('-').next().unwrap_or(rest),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_client_id_of_a_secret_is_looked_up() {
        let secret = format!("hskey-client-0123456789ab-{}", "f".repeat(64));
        assert_eq!(client_id_of(&secret), "0123456789ab");
        assert_eq!(client_id_of("0123456789ab"), "0123456789ab");
        assert_eq!(client_id_of("7"), "7");
    }
}

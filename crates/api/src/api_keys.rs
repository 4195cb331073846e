//! `/api/v1/apikey`: list, create, expire, delete the keys that open this
//! API over the network.
//!
//! A key's full text is returned once, in the answer to its creation;
//! listings show its prefix. Nothing here logs a key.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use headway_state::Tailnet;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, PathParams, QueryParams, query_id};
use crate::guard::Caller;
use crate::page::PageQuery;
use crate::wire::{
    ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, Empty, ExpireApiKeyRequest,
    ListApiKeysResponse,
};

/// How the description of a key minted for a console sign-in begins
/// (`console:<e-mail>`).
pub const CONSOLE_KEY_PREFIX: &str = "console:";

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(expire_api_key))
        .routes(routes!(delete_api_key))
}

/// List API keys
///
/// Sorted by id, each by its prefix; in pages with `pageSize`.
#[utoipa::path(
    get, path = "/api/v1/apikey", operation_id = "listApiKeys", tag = "ApiKeys",
    params(PageQuery),
    responses(
        (status = 200, body = ListApiKeysResponse),
        (status = 400, description = "The page size or token is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_api_keys(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<ListApiKeysResponse>, ApiError> {
    let page = page.apply(tailnet.list_api_keys(), |k| k.id)?;
    Ok(Json(ListApiKeysResponse {
        api_keys: page.items.iter().map(ApiKey::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Create API key
///
/// The answer holds the full key; it is not shown again.
#[utoipa::path(
    post, path = "/api/v1/apikey", operation_id = "createApiKey", tag = "ApiKeys",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 200, body = CreateApiKeyResponse),
        (status = 400, description = "The body is not a CreateApiKeyRequest", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The expiration is in the past, the description is too long, or it claims a console sign-in over the network", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_api_key(
    State(tailnet): State<Arc<Tailnet>>,
    caller: Option<Extension<Caller>>,
    JsonBody(body): JsonBody<CreateApiKeyRequest>,
) -> Result<Json<CreateApiKeyResponse>, ApiError> {
    // The audit log names the person behind a `console:` key, so only the
    // console (through the local door) may mint one.
    let local = matches!(caller.as_deref(), None | Some(Caller::Local));
    if !local
        && body
            .description
            .trim_start()
            .starts_with(CONSOLE_KEY_PREFIX)
    {
        return Err(ApiError::Service(headway_state::Error::Invalid(format!(
            "descriptions starting with {CONSOLE_KEY_PREFIX:?} are reserved for the keys the web console mints at sign-in"
        ))));
    }
    let (key, api_key) = tailnet
        .create_described_api_key(body.expiration, &body.description)
        .await?;
    audit::note(
        "api_key.create",
        format!("api_key:{}", key.prefix),
        None,
        audit::snapshot(&ApiKey::from(&key)),
    );
    Ok(Json(CreateApiKeyResponse { api_key }))
}

/// The key named by an id (wins) or a prefix; only the prefix of a full key
/// text goes to the service.
fn named_key(tailnet: &Tailnet, id: Option<i64>, prefix: &str) -> Result<i64, ApiError> {
    if let Some(id) = id {
        return Ok(id);
    }
    let prefix = key_prefix(prefix.trim());
    if prefix.is_empty() {
        return Err(ApiError::bad_request(
            "name the API key by its prefix (as listed) or by its id",
        ));
    }
    // Looked up by prefix only: a number here is a prefix, not an id.
    let key = tailnet
        .list_api_keys()
        .into_iter()
        .find(|k| k.prefix == prefix)
        .ok_or_else(|| headway_state::Error::not_found("API key", prefix))?;
    Ok(key.id)
}

fn note_key(action: &str, tailnet: &Tailnet, id: i64) {
    let key = tailnet.list_api_keys().into_iter().find(|k| k.id == id);
    let target = key.as_ref().map_or(format!("api_key:#{id}"), |k| {
        format!("api_key:{}", k.prefix)
    });
    audit::note(
        action,
        target,
        None,
        key.as_ref().and_then(|k| audit::snapshot(&ApiKey::from(k))),
    );
}

/// `hskey-api-<prefix>-<secret>` (or `…-***`) → `<prefix>`.
fn key_prefix(text: &str) -> &str {
    match text.strip_prefix(headway_state::keys::API_KEY_PREFIX) {
        Some(rest) => rest.split('-').next().unwrap_or(rest),
        None => text,
    }
}

/// Expire API key
///
/// The key stays listed but opens nothing any more.
#[utoipa::path(
    post, path = "/api/v1/apikey/expire", operation_id = "expireApiKey", tag = "ApiKeys",
    request_body = ExpireApiKeyRequest,
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "Neither `prefix` nor `id` given", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn expire_api_key(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<ExpireApiKeyRequest>,
) -> Result<Json<Empty>, ApiError> {
    let id = named_key(&tailnet, body.id.get(), &body.prefix)?;
    tailnet.expire_api_key(id).await?;
    note_key("api_key.expire", &tailnet, id);
    Ok(Json(Empty {}))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteApiKeyQuery {
    /// The key's id; when given, it names the key instead of the prefix.
    #[param(value_type = Option<String>, format = "uint64")]
    pub(crate) id: Option<String>,
}

/// Delete API key
#[utoipa::path(
    delete, path = "/api/v1/apikey/{prefix}", operation_id = "deleteApiKey", tag = "ApiKeys",
    params(("prefix" = String, Path, description = "The key's prefix, as listed"), DeleteApiKeyQuery),
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "`id` is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_api_key(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(prefix): PathParams<String>,
    QueryParams(query): QueryParams<DeleteApiKeyQuery>,
) -> Result<Json<Empty>, ApiError> {
    let id = query_id("id", "API key", query.id.as_deref())?;
    let id = named_key(&tailnet, id, &prefix)?;
    let before = tailnet.list_api_keys().into_iter().find(|k| k.id == id);
    tailnet.delete_api_key(id).await?;
    let target = before.as_ref().map_or(format!("api_key:#{id}"), |k| {
        format!("api_key:{}", k.prefix)
    });
    audit::note(
        "api_key.delete",
        target,
        before
            .as_ref()
            .and_then(|k| audit::snapshot(&ApiKey::from(k))),
        None,
    );
    Ok(Json(Empty {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_prefix_of_a_key_is_looked_up() {
        let full = format!("hskey-api-0123456789ab-{}", "f".repeat(64));
        assert_eq!(key_prefix(&full), "0123456789ab");
        assert_eq!(key_prefix("hskey-api-0123456789ab-***"), "0123456789ab");
        assert_eq!(key_prefix("0123456789ab"), "0123456789ab");
    }
}

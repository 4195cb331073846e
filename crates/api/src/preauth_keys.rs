//! `/api/v1/preauthkey`: list, create, expire, delete.
//!
//! A key's secret is returned once, in the answer to its creation; every
//! other answer shows `hskey-auth-<prefix>-***`. Nothing here logs a key.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use headway_state::Tailnet;
use headway_state::keys::AUTH_KEY_PREFIX;
use headway_state::tailnet::NewPreAuthKey;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, QueryParams, query_id};
use crate::page::PageQuery;
use crate::wire::{
    CreatePreAuthKeyRequest, Empty, ExpirePreAuthKeyRequest, ListPreAuthKeysResponse, PreAuthKey,
    PreAuthKeyResponse,
};

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new()
        .routes(routes!(
            list_preauth_keys,
            create_preauth_key,
            delete_preauth_key
        ))
        .routes(routes!(expire_preauth_key))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListPreAuthKeysQuery {
    /// Only the keys of this user (id or name); absent or `0`: all keys.
    pub(crate) user: Option<String>,
}

/// List pre-auth keys
///
/// Sorted by id; in pages with `pageSize`. Keys are shown masked.
#[utoipa::path(
    get, path = "/api/v1/preauthkey", operation_id = "listPreAuthKeys", tag = "PreAuthKeys",
    params(ListPreAuthKeysQuery, PageQuery),
    responses(
        (status = 200, body = ListPreAuthKeysResponse),
        (status = 400, description = "The page size or token is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_preauth_keys(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(query): QueryParams<ListPreAuthKeysQuery>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<ListPreAuthKeysResponse>, ApiError> {
    let user = match query.user.as_deref() {
        None | Some("") | Some("0") => None,
        Some(name_or_id) => Some(tailnet.resolve_user(name_or_id)?.id),
    };
    let page = page.apply(tailnet.list_preauth_keys(user), |k| k.id)?;
    Ok(Json(ListPreAuthKeysResponse {
        pre_auth_keys: page
            .items
            .iter()
            .map(|k| PreAuthKey::stored(&tailnet, k))
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Create pre-auth key
///
/// The answer holds the full key; it is not shown again.
#[utoipa::path(
    post, path = "/api/v1/preauthkey", operation_id = "createPreAuthKey", tag = "PreAuthKeys",
    request_body = CreatePreAuthKeyRequest,
    responses(
        (status = 200, body = PreAuthKeyResponse),
        (status = 400, description = "The body is not a CreatePreAuthKeyRequest", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No user and no tags, an invalid tag, or an expiration in the past", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_preauth_key(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<CreatePreAuthKeyRequest>,
) -> Result<Json<PreAuthKeyResponse>, ApiError> {
    let (key, full_text) = tailnet
        .create_preauth_key(NewPreAuthKey {
            user: body.user.get(),
            reusable: body.reusable,
            ephemeral: body.ephemeral,
            expiration: body.expiration,
            tags: body.acl_tags,
        })
        .await?;
    // The listing form: the key by its prefix, never its secret.
    audit::note(
        "preauth_key.create",
        format!("preauth_key:{}", key.id),
        None,
        audit::snapshot(&PreAuthKey::stored(&tailnet, &key)),
    );
    Ok(Json(PreAuthKeyResponse {
        pre_auth_key: PreAuthKey::created(&tailnet, &key, full_text),
    }))
}

/// Expire pre-auth key
///
/// The key stays listed but registers nothing any more.
#[utoipa::path(
    post, path = "/api/v1/preauthkey/expire", operation_id = "expirePreAuthKey", tag = "PreAuthKeys",
    request_body = ExpirePreAuthKeyRequest,
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "Neither `id` nor `key` given, or not an ExpirePreAuthKeyRequest", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key (for that user)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn expire_preauth_key(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<ExpirePreAuthKeyRequest>,
) -> Result<Json<Empty>, ApiError> {
    let id = match (body.id.get(), body.key.trim()) {
        (Some(id), _) => id,
        (None, "") => {
            return Err(ApiError::bad_request(
                "request body: name the key by \"id\" (or by \"key\": its text or prefix)",
            ));
        }
        (None, text) => {
            let key = tailnet.find_preauth_key(key_prefix(text))?;
            if body
                .user
                .get()
                .is_some_and(|user| key.user_id != Some(user))
            {
                return Err(
                    headway_state::Error::not_found("pre-auth key of user", body.user).into(),
                );
            }
            key.id
        }
    };
    tailnet.expire_preauth_key(id).await?;
    audit::note(
        "preauth_key.expire",
        format!("preauth_key:{id}"),
        None,
        None,
    );
    Ok(Json(Empty {}))
}

/// The look-up part of a key's text: `hskey-auth-<prefix>-<secret>` and the
/// masked `hskey-auth-<prefix>-***` become `<prefix>`, so that the secret
/// goes no further (not into the service, an error message or a log).
fn key_prefix(text: &str) -> &str {
    match text.strip_prefix(AUTH_KEY_PREFIX) {
        Some(rest) => rest.split('-').next().unwrap_or(rest),
        None => text,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeletePreAuthKeyQuery {
    /// The key's id.
    #[param(value_type = String, format = "uint64", required = true)]
    pub(crate) id: Option<String>,
}

/// Delete pre-auth key
///
/// Nodes registered with it keep working.
#[utoipa::path(
    delete, path = "/api/v1/preauthkey", operation_id = "deletePreAuthKey", tag = "PreAuthKeys",
    params(DeletePreAuthKeyQuery),
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "`id` is missing or not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_preauth_key(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(query): QueryParams<DeletePreAuthKeyQuery>,
) -> Result<Json<Empty>, ApiError> {
    let Some(id) = query_id("id", "pre-auth key", query.id.as_deref())? else {
        return Err(ApiError::bad_request(
            "query parameter id is required: the id of the key to delete",
        ));
    };
    tailnet.delete_preauth_key(id).await?;
    audit::note(
        "preauth_key.delete",
        format!("preauth_key:{id}"),
        None,
        None,
    );
    Ok(Json(Empty {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_prefix_of_a_key_is_looked_up() {
        let full = format!("hskey-auth-0123456789ab-{}", "f".repeat(64));
        assert_eq!(key_prefix(&full), "0123456789ab");
        assert_eq!(key_prefix("hskey-auth-0123456789ab-***"), "0123456789ab");
        assert_eq!(key_prefix("0123456789ab"), "0123456789ab");
        assert_eq!(key_prefix("12"), "12");
    }
}

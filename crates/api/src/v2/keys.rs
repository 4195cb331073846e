//! Keys: auth keys (Headway's pre-auth keys) and, as Tailscale multiplexes
//! them on the same resource, OAuth clients (`keyType: "client"`).
//!
//! An auth key made here belongs to its tags (`capabilities.devices.create.
//! tags`): keys owned by a person are made with `/api/v1/preauthkey`. With
//! an access token, every tag must be one its OAuth client was given. A key
//! without `expirySeconds` lives 90 days, as Tailscale's. Its id is the
//! pre-auth key's decimal id; an OAuth client's id is its client id.
//!
//! OAuth clients are made, listed and deleted here with an API key only
//! (there is no scope for them). Key descriptions are not kept.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use headway_state::Tailnet;
use headway_state::model::{self, PreAuthKeyId};
use headway_state::tailnet::{NewOAuthClient, NewPreAuthKey};
use serde::{Deserialize, Serialize};

use super::{V2Error, V2Json, V2Path, Who, require_tailnet};
use crate::wire::Empty;

/// An auth key's life when the request gives none (Tailscale's default).
pub(crate) const DEFAULT_EXPIRY: Duration = Duration::days(90);

pub(super) fn routes() -> Router<Arc<Tailnet>> {
    Router::new()
        .route(
            "/api/v2/tailnet/{tailnet}/keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/keys/{keyId}",
            get(get_key).delete(delete_key),
        )
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct CreateCapabilities {
    pub reusable: bool,
    pub ephemeral: bool,
    /// Accepted; every key here registers authorized devices.
    pub preauthorized: bool,
    /// `null` reads as none.
    #[serde(deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct DeviceCapabilities {
    pub create: CreateCapabilities,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Capabilities {
    pub devices: DeviceCapabilities,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CreateKeyRequest {
    /// `auth` (or absent) for an auth key, `client` for an OAuth client.
    key_type: String,
    capabilities: Capabilities,
    expiry_seconds: i64,
    description: String,
    /// OAuth clients only.
    #[serde(deserialize_with = "null_as_empty")]
    scopes: Vec<String>,
    /// OAuth clients only.
    #[serde(deserialize_with = "null_as_empty")]
    tags: Vec<String>,
}

/// A key as Tailscale's API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Key {
    pub id: String,
    pub key_type: String,
    /// The secret, in the answer to its creation only.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub key: String,
    pub description: String,
    /// Seconds from creation to expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_seconds: Option<i64>,
    pub created: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    /// Expired, or a single-use key that was used.
    pub invalid: bool,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    pub tags: Vec<String>,
    /// The owner of a key owned by a user.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub user_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyList {
    pub keys: Vec<Key>,
}

fn auth_key(key: &model::PreAuthKey, secret: String, now: DateTime<Utc>) -> Key {
    Key {
        id: key.id.to_string(),
        key_type: "auth".into(),
        key: secret,
        description: String::new(),
        expiry_seconds: key
            .expiration
            .map(|e| (e - key.created_at).num_seconds().max(0)),
        created: key.created_at,
        expires: key.expiration,
        invalid: key.is_expired(now) || (key.used && !key.reusable),
        capabilities: Capabilities {
            devices: DeviceCapabilities {
                create: CreateCapabilities {
                    reusable: key.reusable,
                    ephemeral: key.ephemeral,
                    preauthorized: true,
                    tags: key.tags.clone(),
                },
            },
        },
        scopes: None,
        tags: key.tags.clone(),
        user_id: key.user_id.map(|u| u.to_string()).unwrap_or_default(),
    }
}

fn client_key(client: &model::OAuthClient, secret: String) -> Key {
    Key {
        id: client.prefix.clone(),
        key_type: "client".into(),
        key: secret,
        description: client.description.clone(),
        expiry_seconds: None,
        created: client.created_at,
        expires: None,
        invalid: false,
        capabilities: Capabilities::default(),
        scopes: Some(client.scopes.clone()),
        tags: client.tags.clone(),
        user_id: String::new(),
    }
}

/// What a key id names.
enum Named {
    AuthKey(model::PreAuthKey),
    Client(model::OAuthClient),
}

/// Client ids are looked up by client id only, and only for callers that
/// may see clients; a decimal id names an auth key.
fn find(tailnet: &Tailnet, who: &Who, id: &str) -> Result<Named, V2Error> {
    if !who.is_oauth()
        && let Some(c) = tailnet
            .list_oauth_clients()
            .into_iter()
            .find(|c| c.prefix == id)
    {
        return Ok(Named::Client(c));
    }
    id.parse::<PreAuthKeyId>()
        .ok()
        .and_then(|id| {
            tailnet
                .list_preauth_keys(None)
                .into_iter()
                .find(|k| k.id == id)
        })
        .map(Named::AuthKey)
        .ok_or_else(|| V2Error::not_found("key", id))
}

async fn list_keys(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(name): V2Path<String>,
) -> Result<Json<KeyList>, V2Error> {
    who.require("auth_keys", false)?;
    require_tailnet(&tailnet, &name)?;
    let now = tailnet.now();
    let mut keys: Vec<Key> = tailnet
        .list_preauth_keys(None)
        .iter()
        .map(|k| auth_key(k, String::new(), now))
        .collect();
    if !who.is_oauth() {
        keys.extend(
            tailnet
                .list_oauth_clients()
                .iter()
                .map(|c| client_key(c, String::new())),
        );
    }
    Ok(Json(KeyList { keys }))
}

async fn get_key(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path((name, id)): V2Path<(String, String)>,
) -> Result<Json<Key>, V2Error> {
    who.require("auth_keys", false)?;
    require_tailnet(&tailnet, &name)?;
    Ok(Json(match find(&tailnet, &who, &id)? {
        Named::AuthKey(k) => auth_key(&k, String::new(), tailnet.now()),
        Named::Client(c) => client_key(&c, String::new()),
    }))
}

async fn delete_key(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path((name, id)): V2Path<(String, String)>,
) -> Result<Json<Empty>, V2Error> {
    who.require("auth_keys", true)?;
    require_tailnet(&tailnet, &name)?;
    match find(&tailnet, &who, &id)? {
        Named::AuthKey(k) => tailnet.delete_preauth_key(k.id).await?,
        Named::Client(c) => tailnet.delete_oauth_client(c.id).await?,
    }
    Ok(Json(Empty {}))
}

async fn create_key(
    State(tailnet): State<Arc<Tailnet>>,
    who: Who,
    V2Path(name): V2Path<String>,
    V2Json(body): V2Json<CreateKeyRequest>,
) -> Result<Json<Key>, V2Error> {
    require_tailnet(&tailnet, &name)?;
    match body.key_type.as_str() {
        "" | "auth" => create_auth_key(&tailnet, &who, body).await,
        "client" => create_client(&tailnet, &who, body).await,
        other => Err(V2Error::bad_request(format!(
            "keyType {other:?} is not supported; use \"auth\" or \"client\""
        ))),
    }
}

async fn create_auth_key(
    tailnet: &Tailnet,
    who: &Who,
    body: CreateKeyRequest,
) -> Result<Json<Key>, V2Error> {
    who.require("auth_keys", true)?;
    let create = body.capabilities.devices.create;
    if create.tags.is_empty() {
        return Err(V2Error::bad_request(
            "an auth key made through this API needs tags (capabilities.devices.create.tags): its devices belong to their tags; for a key owned by a user, use `headway preauthkeys create --user …` or /api/v1/preauthkey",
        ));
    }
    who.may_give_tags(&create.tags)?;
    let now = tailnet.now();
    let valid_for = if body.expiry_seconds > 0 {
        Duration::try_seconds(body.expiry_seconds).ok_or_else(|| {
            V2Error::bad_request(format!(
                "expirySeconds {} is too large",
                body.expiry_seconds
            ))
        })?
    } else if body.expiry_seconds < 0 {
        return Err(V2Error::bad_request(format!(
            "expirySeconds {} is negative; give the key's life in seconds, e.g. 86400",
            body.expiry_seconds
        )));
    } else {
        DEFAULT_EXPIRY
    };
    let expiration = now.checked_add_signed(valid_for).ok_or_else(|| {
        V2Error::bad_request(format!(
            "expirySeconds {} is too large",
            body.expiry_seconds
        ))
    })?;
    let (key, secret) = tailnet
        .create_preauth_key(NewPreAuthKey {
            user: None,
            reusable: create.reusable,
            ephemeral: create.ephemeral,
            expiration: Some(expiration),
            tags: create.tags,
        })
        .await?;
    Ok(Json(auth_key(&key, secret, now)))
}

async fn create_client(
    tailnet: &Tailnet,
    who: &Who,
    body: CreateKeyRequest,
) -> Result<Json<Key>, V2Error> {
    if who.is_oauth() {
        return Err(V2Error::forbidden(
            "OAuth clients are made with an API key (or `headway oauth-clients create`), not with an access token",
        ));
    }
    let (client, secret) = tailnet
        .create_oauth_client(NewOAuthClient {
            description: body.description,
            scopes: body.scopes,
            tags: body.tags,
        })
        .await?;
    Ok(Json(client_key(&client, secret)))
}

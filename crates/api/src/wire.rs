//! The JSON shapes of the v1 API: headscale's messages as protojson writes
//! them (camelCase names, 64-bit ids as decimal strings, RFC 3339 times,
//! empty lists as `[]`, absent records as `null`).
//!
//! The server encodes these and the CLI decodes them, so the two cannot drift
//! apart. Request fields are all optional, as in proto3: a missing field is
//! its zero value. Conversions from the domain records are at the bottom.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use headway_state::Tailnet;
use headway_state::model::{
    self, RegisterMethod, TAGGED_DEVICES_USER_ID, TAGGED_DEVICES_USER_NAME,
};
use headway_state::tailnet::{NodeRoutes, is_exit_route};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};

// --- ids ------------------------------------------------------------------

/// A 64-bit id. Written as a decimal string (`"12"`) like protojson writes
/// uint64; read from a string or a number. `0` means "none".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(i64);

impl Id {
    /// The domain's id, `None` for `0` (proto3's "not set").
    pub fn get(self) -> Option<i64> {
        (self.0 != 0).then_some(self.0)
    }
}

impl From<i64> for Id {
    fn from(id: i64) -> Self {
        // Domain ids are positive.
        Id(id.max(0))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a text is not an [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an id (expected a whole number from 0 to 9223372036854775807)")]
pub struct IdError(pub String);

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // Digits only: no sign, no spaces, no "+1".
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError(s.to_string()));
        }
        s.parse::<i64>().map(Id).map_err(|_| IdError(s.to_string()))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id: a whole number, as a JSON number or a decimal string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v)
                    .map(Id)
                    .map_err(|_| E::custom(IdError(v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Id, E> {
                if v < 0 {
                    Err(E::custom(IdError(v.to_string())))
                } else {
                    Ok(Id(v))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                if v.is_empty() {
                    return Ok(Id(0));
                }
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uint64".into())))
            .description(Some(
                "A 64-bit id as a decimal string; requests may also give a JSON number. \"0\" means none.",
            ))
            .examples(["12"])
            .into()
    }
}

impl ToSchema for Id {}

// --- users ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Id,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub display_name: String,
    pub email: String,
    /// The identity provider's subject for OIDC users, else empty.
    pub provider_id: String,
    /// `oidc` for users from the identity provider, else empty.
    pub provider: String,
    pub profile_pic_url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CreateUserRequest {
    /// The login name (`alice`, `alice@example.com`).
    pub name: String,
    pub display_name: String,
    pub email: String,
    pub picture_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserResponse {
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListUsersResponse {
    pub users: Vec<User>,
    /// Present when more items follow: pass it as `pageToken` for the next page.
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_page_token: Option<String>,
}

// --- pre-auth keys ----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreAuthKey {
    /// The owner of the nodes it registers; `null` for keys owned by tags.
    #[schema(required = true)]
    pub user: Option<User>,
    pub id: Id,
    /// The full key in the answer to its creation, and only there; listings
    /// show `hskey-auth-<prefix>-***`.
    pub key: String,
    pub reusable: bool,
    pub ephemeral: bool,
    pub used: bool,
    /// `null`: never expires.
    #[schema(required = true)]
    pub expiration: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub acl_tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CreatePreAuthKeyRequest {
    /// The owner's id; `"0"` or absent for a key owned by its tags alone.
    pub user: Id,
    pub reusable: bool,
    pub ephemeral: bool,
    /// Absent: the key never expires.
    pub expiration: Option<DateTime<Utc>>,
    /// `tag:…` tags given to the nodes it registers.
    pub acl_tags: Vec<String>,
}

/// Names the key by `id`, or (headscale 0.27 and older) by `key`: its full
/// text, its prefix, or its masked form from a listing, optionally with the
/// owner's id in `user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ExpirePreAuthKeyRequest {
    pub id: Id,
    pub user: Id,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreAuthKeyResponse {
    pub pre_auth_key: PreAuthKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPreAuthKeysResponse {
    pub pre_auth_keys: Vec<PreAuthKey>,
    /// Present when more items follow: pass it as `pageToken` for the next page.
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_page_token: Option<String>,
}

// --- nodes ----------------------------------------------------------------

/// How a node was (last) authorised, as headscale's enum names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WireRegisterMethod {
    RegisterMethodUnspecified,
    RegisterMethodAuthKey,
    RegisterMethodCli,
    RegisterMethodOidc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: Id,
    pub machine_key: String,
    pub node_key: String,
    pub disco_key: String,
    /// IPv4 first, then IPv6.
    pub ip_addresses: Vec<String>,
    /// The host name the client reported.
    pub name: String,
    /// The owner; for tagged nodes the `tagged-devices` pseudo-user.
    #[schema(required = true)]
    pub user: Option<User>,
    #[schema(required = true)]
    pub last_seen: Option<DateTime<Utc>>,
    /// `null`: the node key never expires.
    #[schema(required = true)]
    pub expiry: Option<DateTime<Utc>>,
    /// The key it registered with, while that key exists.
    #[schema(required = true)]
    pub pre_auth_key: Option<PreAuthKey>,
    pub created_at: DateTime<Utc>,
    pub register_method: WireRegisterMethod,
    /// Its DNS label in the tailnet.
    pub given_name: String,
    pub online: bool,
    pub approved_routes: Vec<String>,
    /// Routes the node announces.
    pub available_routes: Vec<String>,
    /// Routes the node currently serves as primary router.
    pub subnet_routes: Vec<String>,
    pub tags: Vec<String>,
}

/// Optional; no body (or `{}`) expires the node now. headscale 0.27 clients
/// send `expiry` as a query parameter instead, which is accepted too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ExpireNodeRequest {
    pub expiry: Option<DateTime<Utc>>,
    /// Make the key never expire (until the node logs in again); not with `expiry`.
    pub disable_expiry: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SetTagsRequest {
    /// The complete new list (`tag:…`); an empty list makes a user-owned
    /// node untagged again.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct MoveNodeRequest {
    /// The new owner's id.
    pub user: Id,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeResponse {
    pub node: Node,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListNodesResponse {
    pub nodes: Vec<Node>,
    /// Present when more items follow: pass it as `pageToken` for the next page.
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_page_token: Option<String>,
}

/// The whole list of approved routes (headscale's `SetApprovedRoutesRequest`);
/// an empty list withdraws every approval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SetApprovedRoutesRequest {
    /// Prefixes such as `10.0.0.0/24`; `0.0.0.0/0` or `::/0` approves the
    /// node as an exit node (both families).
    pub routes: Vec<String>,
}

// --- interactive registration ---------------------------------------------------

/// Approves a machine waiting on its AuthURL as a node of `user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthRegisterRequest {
    /// The new node's owner (name or id).
    pub user: String,
    /// The last part of the AuthURL the client shows (`…/register/<authId>`).
    pub auth_id: String,
}

/// Names a machine waiting on its AuthURL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthDecisionRequest {
    /// The last part of the AuthURL the client shows (`…/register/<authId>`).
    pub auth_id: String,
}

// --- API keys ---------------------------------------------------------------

/// An API key as listed: its prefix, never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: Id,
    /// The public part of the key (`hskey-api-<prefix>-…`).
    pub prefix: String,
    /// `null`: never expires.
    #[schema(required = true)]
    pub expiration: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// When the key was last used (to within a minute); `null`: never.
    #[schema(required = true)]
    pub last_seen: Option<DateTime<Utc>>,
    /// What the key is for (a Headway extension; may be empty).
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CreateApiKeyRequest {
    /// Absent: the key never expires.
    pub expiration: Option<DateTime<Utc>>,
    /// What the key is for, one line of at most 200 characters (a Headway
    /// extension). `console:<e-mail>` marks a key minted for a person's
    /// console sign-in: the audit log names that person.
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateApiKeyResponse {
    /// The full key (`hskey-api-<prefix>-<secret>`), shown this once.
    pub api_key: String,
}

/// Names the key by `prefix` or by `id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ExpireApiKeyRequest {
    pub prefix: String,
    pub id: Id,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListApiKeysResponse {
    pub api_keys: Vec<ApiKey>,
    /// Present when more items follow: pass it as `pageToken` for the next page.
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_page_token: Option<String>,
}

// --- policy ---------------------------------------------------------------------

/// The policy in force (headscale's `GetPolicyResponse`/`SetPolicyResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResponse {
    /// The HuJSON text; empty when there is no policy (every node may
    /// reach every node).
    pub policy: String,
    /// When it was set or loaded; `null` when there is no policy.
    #[schema(required = true)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A policy to set or to check (headscale's `SetPolicyRequest`/`CheckPolicyRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PolicyRequest {
    /// The HuJSON text; empty means no policy.
    pub policy: String,
}

/// What a policy gives every node of the tailnet (`headway policy explain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExplainPolicyResponse {
    /// By node name: its `packet_filter_rules`, its `peers` (each with
    /// `AllowedIPs` and `PrimaryRoutes`), its `ssh_rules` and its `cap_map`.
    #[schema(value_type = Object)]
    pub nodes: serde_json::Map<String, serde_json::Value>,
}

// --- OAuth clients ----------------------------------------------------------------

/// An OAuth client of the v2 API, as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClient {
    pub id: Id,
    /// The public client id (`client_id` at the token endpoint).
    pub client_id: String,
    pub description: String,
    /// What its tokens may do (`devices:core`, `auth_keys:read`, `all`…).
    pub scopes: Vec<String>,
    /// The tags its tokens may give to devices and auth keys.
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateOAuthClientRequest {
    pub description: String,
    /// At least one of `all`, `devices:core`, `devices:routes`, `auth_keys`,
    /// `policy_file`, each also as `<scope>:read`.
    pub scopes: Vec<String>,
    /// Required with write access to auth keys (keys made through OAuth are
    /// always tagged).
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOAuthClientResponse {
    pub oauth_client: OAuthClient,
    /// The secret (`hskey-client-<clientId>-<secret>`), shown this once.
    pub client_secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListOAuthClientsResponse {
    pub oauth_clients: Vec<OAuthClient>,
    /// Present when more items follow: pass it as `pageToken` for the next page.
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_page_token: Option<String>,
}

// --- misc -----------------------------------------------------------------

/// The answer of operations that return nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    /// The database answered.
    pub database_connectivity: bool,
}

// --- from the domain ----------------------------------------------------------

/// The start of a key as listings show it: never the secret.
fn masked_key(key: &model::PreAuthKey) -> String {
    format!("{}{}-***", headway_state::keys::AUTH_KEY_PREFIX, key.prefix)
}

impl From<&model::User> for User {
    fn from(u: &model::User) -> Self {
        User {
            id: u.id.into(),
            name: u.name.clone(),
            created_at: u.created_at,
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            provider_id: u.provider_id.clone().unwrap_or_default(),
            provider: u.provider.clone(),
            profile_pic_url: u.profile_pic_url.clone(),
        }
    }
}

impl User {
    /// The owner tagged nodes are shown with (headscale's `tagged-devices`).
    pub(crate) fn tagged_devices(created_at: DateTime<Utc>) -> Self {
        User {
            id: TAGGED_DEVICES_USER_ID.into(),
            name: TAGGED_DEVICES_USER_NAME.into(),
            created_at,
            display_name: "Tagged Devices".into(),
            email: String::new(),
            provider_id: String::new(),
            provider: String::new(),
            profile_pic_url: String::new(),
        }
    }
}

impl PreAuthKey {
    /// A stored key: the secret is not known, only its masked form is shown.
    pub(crate) fn stored(tailnet: &Tailnet, key: &model::PreAuthKey) -> Self {
        Self::with_text(tailnet, key, masked_key(key))
    }

    /// A key just created, with its full text (shown this once).
    pub(crate) fn created(tailnet: &Tailnet, key: &model::PreAuthKey, full_text: String) -> Self {
        Self::with_text(tailnet, key, full_text)
    }

    fn with_text(tailnet: &Tailnet, key: &model::PreAuthKey, text: String) -> Self {
        PreAuthKey {
            user: key
                .user_id
                .and_then(|id| tailnet.user(id))
                .map(|u| User::from(&*u)),
            id: key.id.into(),
            key: text,
            reusable: key.reusable,
            ephemeral: key.ephemeral,
            used: key.used,
            expiration: key.expiration,
            created_at: key.created_at,
            acl_tags: key.tags.clone(),
        }
    }
}

impl From<&model::ApiKey> for ApiKey {
    fn from(k: &model::ApiKey) -> Self {
        ApiKey {
            id: k.id.into(),
            prefix: k.prefix.clone(),
            expiration: k.expiration,
            created_at: k.created_at,
            last_seen: k.last_seen,
            description: k.description.clone(),
        }
    }
}

impl From<RegisterMethod> for WireRegisterMethod {
    fn from(m: RegisterMethod) -> Self {
        match m {
            RegisterMethod::AuthKey => WireRegisterMethod::RegisterMethodAuthKey,
            RegisterMethod::Cli => WireRegisterMethod::RegisterMethodCli,
            RegisterMethod::Oidc => WireRegisterMethod::RegisterMethodOidc,
        }
    }
}

/// The routes a node serves to its peers right now, as headscale reports
/// them: the subnet routes it is the primary router for, and the exit
/// routes it serves (every approved exit node serves them).
pub(crate) fn subnet_routes(routes: &NodeRoutes) -> Vec<String> {
    let mut out: Vec<_> = routes
        .primary
        .iter()
        .chain(routes.serving.iter().filter(|r| is_exit_route(r)))
        .copied()
        .collect();
    out.sort();
    out.dedup();
    out.iter().map(|r| r.to_string()).collect()
}

impl From<&model::OAuthClient> for OAuthClient {
    fn from(c: &model::OAuthClient) -> Self {
        OAuthClient {
            id: c.id.into(),
            client_id: c.prefix.clone(),
            description: c.description.clone(),
            scopes: c.scopes.clone(),
            tags: c.tags.clone(),
            created_at: c.created_at,
        }
    }
}

impl Node {
    pub(crate) fn from_domain(tailnet: &Tailnet, node: &model::Node) -> Self {
        let user = if node.is_tagged() {
            Some(User::tagged_devices(node.created_at))
        } else {
            node.user_id
                .and_then(|id| tailnet.user(id))
                .map(|u| User::from(&*u))
        };
        let pre_auth_key = node
            .auth_key_id
            .and_then(|id| tailnet.find_preauth_key(&id.to_string()).ok())
            .map(|k| PreAuthKey::stored(tailnet, &k));
        Node {
            id: node.id.into(),
            machine_key: node.machine_key.to_string(),
            node_key: node.node_key.to_string(),
            disco_key: node.disco_key.to_string(),
            ip_addresses: node.ips().map(|ip| ip.to_string()).collect(),
            name: node.hostname.clone(),
            user,
            last_seen: node.last_seen,
            expiry: node.expiry,
            pre_auth_key,
            created_at: node.created_at,
            register_method: node.register_method.into(),
            given_name: node.given_name.clone(),
            online: tailnet.is_online(node.id),
            approved_routes: node.approved_routes.iter().map(|r| r.to_string()).collect(),
            available_routes: node
                .announced_routes()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            subnet_routes: tailnet
                .node_routes(node.id)
                .map(|r| subnet_routes(&r))
                .unwrap_or_default(),
            tags: node.tags.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_strings_and_read_from_strings_or_numbers() {
        assert_eq!(serde_json::to_string(&Id::from(12)).unwrap(), "\"12\"");
        assert_eq!(serde_json::from_str::<Id>("\"12\"").unwrap(), Id::from(12));
        assert_eq!(serde_json::from_str::<Id>("12").unwrap(), Id::from(12));
        assert_eq!(serde_json::from_str::<Id>("\"\"").unwrap(), Id::from(0));
        assert!(serde_json::from_str::<Id>("-1").is_err());
        assert!(serde_json::from_str::<Id>("\"twelve\"").is_err());
        assert!(serde_json::from_str::<Id>("1.5").is_err());
        assert!(serde_json::from_str::<Id>("\"9223372036854775808\"").is_err());
        assert!(serde_json::from_str::<Id>("\"+1\"").is_err());
    }

    #[test]
    fn id_zero_is_none() {
        assert_eq!(Id::from(0).get(), None);
        assert_eq!(Id::from(7).get(), Some(7));
    }

    #[test]
    fn register_methods_use_headscales_enum_names() {
        let m: WireRegisterMethod = RegisterMethod::AuthKey.into();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            "\"REGISTER_METHOD_AUTH_KEY\""
        );
    }

    #[test]
    fn requests_default_missing_fields() {
        let r: CreatePreAuthKeyRequest =
            serde_json::from_str(r#"{"user":"3","aclTags":["tag:a"]}"#).unwrap();
        assert_eq!(r.user, Id::from(3));
        assert!(!r.reusable);
        assert_eq!(r.expiration, None);
        assert_eq!(r.acl_tags, vec!["tag:a".to_string()]);
    }
}

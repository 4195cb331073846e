//! Statements and row mapping. The code is written once and instantiated
//! per backend by `backend!` (concrete connection and row types, so no
//! generic trait bounds), and the SQL is shared by both.

use headway_state::keys::SecretHash;
use headway_state::model::*;
use headway_state::store::StoreError;

pub const SELECT_USERS: &str = "SELECT id, name, display_name, email, provider, provider_id, profile_pic_url, created_at FROM users ORDER BY id";
pub const SELECT_NODES: &str = "SELECT id, machine_key, node_key, disco_key, hostname, given_name, user_id, tags, ipv4, ipv6, endpoints, hostinfo, home_derp, expiry, register_method, auth_key_id, ephemeral, approved_routes, cap_version, created_at, updated_at, last_seen FROM nodes ORDER BY id";
pub const SELECT_KEYS: &str = "SELECT id, prefix, hash, user_id, reusable, ephemeral, used, expiration, created_at, tags FROM preauth_keys ORDER BY id";
pub const SELECT_POLICY: &str = "SELECT text, updated_at FROM policies WHERE id = 1";
pub const SELECT_API_KEYS: &str = "SELECT id, prefix, hash, expiration, created_at, last_seen, description FROM api_keys ORDER BY id";
pub const SELECT_OAUTH_CLIENTS: &str =
    "SELECT id, prefix, hash, description, scopes, tags, created_at FROM oauth_clients ORDER BY id";

const INSERT_USER: &str = "INSERT INTO users (name, display_name, email, provider, provider_id, profile_pic_url, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
const UPDATE_USER: &str = "UPDATE users SET name = $2, display_name = $3, email = $4, provider = $5, provider_id = $6, profile_pic_url = $7 WHERE id = $1";
const INSERT_NODE: &str = "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, given_name, user_id, tags, ipv4, ipv6, endpoints, hostinfo, home_derp, expiry, register_method, auth_key_id, ephemeral, approved_routes, cap_version, created_at, updated_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) RETURNING id";
const UPDATE_NODE: &str = "UPDATE nodes SET machine_key = $1, node_key = $2, disco_key = $3, hostname = $4, given_name = $5, user_id = $6, tags = $7, ipv4 = $8, ipv6 = $9, endpoints = $10, hostinfo = $11, home_derp = $12, expiry = $13, register_method = $14, auth_key_id = $15, ephemeral = $16, approved_routes = $17, cap_version = $18, created_at = $19, updated_at = $20, last_seen = $21 WHERE id = $22";
const INSERT_KEY: &str = "INSERT INTO preauth_keys (prefix, hash, user_id, reusable, ephemeral, used, expiration, created_at, tags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id";
const UPDATE_KEY: &str = "UPDATE preauth_keys SET user_id = $2, reusable = $3, ephemeral = $4, used = $5, expiration = $6, tags = $7 WHERE id = $1";
const INSERT_API_KEY: &str = "INSERT INTO api_keys (prefix, hash, expiration, created_at, last_seen, description) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
const UPDATE_API_KEY: &str = "UPDATE api_keys SET expiration = $2, last_seen = $3 WHERE id = $1";
const INSERT_OAUTH_CLIENT: &str = "INSERT INTO oauth_clients (prefix, hash, description, scopes, tags, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
const UPSERT_POLICY: &str = "INSERT INTO policies (id, text, updated_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at";

fn corrupt(table: &str, id: i64, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table} row {id}: column {what}: {e}"))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Serialising plain domain data cannot fail; fall back to an empty JSON value.
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Ensures an UPDATE/DELETE touched a row: a missing row is a bug upstream
/// (memory and database disagree) and must not pass silently.
fn one_row(affected: u64, table: &str, id: i64) -> Result<(), StoreError> {
    if affected == 1 {
        Ok(())
    } else {
        Err(StoreError::Database(format!("{table} row {id} not found")))
    }
}

macro_rules! backend {
    ($module:ident, $db:ty, $row:ty) => {
        pub mod $module {
            use super::*;
            use crate::db_err;
            use sqlx::Row;

            type Conn = <$db as sqlx::Database>::Connection;

            pub async fn insert_user(c: &mut Conn, u: &User) -> Result<UserId, StoreError> {
                let row = sqlx::query(INSERT_USER)
                    .bind(&u.name)
                    .bind(&u.display_name)
                    .bind(&u.email)
                    .bind(&u.provider)
                    .bind(&u.provider_id)
                    .bind(&u.profile_pic_url)
                    .bind(u.created_at)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                row.try_get::<i64, _>(0).map_err(db_err)
            }

            pub async fn update_user(c: &mut Conn, u: &User) -> Result<(), StoreError> {
                let r = sqlx::query(UPDATE_USER)
                    .bind(u.id)
                    .bind(&u.name)
                    .bind(&u.display_name)
                    .bind(&u.email)
                    .bind(&u.provider)
                    .bind(&u.provider_id)
                    .bind(&u.profile_pic_url)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                one_row(r.rows_affected(), "users", u.id)
            }

            pub async fn delete(
                c: &mut Conn,
                sql: &'static str,
                id: i64,
            ) -> Result<(), StoreError> {
                let r = sqlx::query(sql)
                    .bind(id)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                one_row(r.rows_affected(), sql, id)
            }

            fn bind_node<'q>(
                q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
                n: &'q Node,
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
                q.bind(n.machine_key.to_string())
                    .bind(n.node_key.to_string())
                    .bind(n.disco_key.to_string())
                    .bind(&n.hostname)
                    .bind(&n.given_name)
                    .bind(n.user_id)
                    .bind(json(&n.tags))
                    .bind(n.ipv4.map(|a| a.to_string()))
                    .bind(n.ipv6.map(|a| a.to_string()))
                    .bind(json(&n.endpoints))
                    .bind(json(&n.hostinfo))
                    .bind(n.home_derp)
                    .bind(n.expiry)
                    .bind(n.register_method.as_str())
                    .bind(n.auth_key_id)
                    .bind(n.ephemeral)
                    .bind(json(&n.approved_routes))
                    .bind(n.cap_version)
                    .bind(n.created_at)
                    .bind(n.updated_at)
                    .bind(n.last_seen)
            }

            pub async fn insert_node(c: &mut Conn, n: &Node) -> Result<NodeId, StoreError> {
                let row = bind_node(sqlx::query(INSERT_NODE), n)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                row.try_get::<i64, _>(0).map_err(db_err)
            }

            pub async fn update_node(c: &mut Conn, n: &Node) -> Result<(), StoreError> {
                let r = bind_node(sqlx::query(UPDATE_NODE), n)
                    .bind(n.id)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                one_row(r.rows_affected(), "nodes", n.id)
            }

            pub async fn insert_key(
                c: &mut Conn,
                k: &PreAuthKey,
            ) -> Result<PreAuthKeyId, StoreError> {
                let row = sqlx::query(INSERT_KEY)
                    .bind(&k.prefix)
                    .bind(k.hash.to_bytes())
                    .bind(k.user_id)
                    .bind(k.reusable)
                    .bind(k.ephemeral)
                    .bind(k.used)
                    .bind(k.expiration)
                    .bind(k.created_at)
                    .bind(json(&k.tags))
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                row.try_get::<i64, _>(0).map_err(db_err)
            }

            pub async fn update_key(c: &mut Conn, k: &PreAuthKey) -> Result<(), StoreError> {
                let r = sqlx::query(UPDATE_KEY)
                    .bind(k.id)
                    .bind(k.user_id)
                    .bind(k.reusable)
                    .bind(k.ephemeral)
                    .bind(k.used)
                    .bind(k.expiration)
                    .bind(json(&k.tags))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                one_row(r.rows_affected(), "preauth_keys", k.id)
            }

            pub async fn set_policy(c: &mut Conn, p: &StoredPolicy) -> Result<(), StoreError> {
                sqlx::query(UPSERT_POLICY)
                    .bind(&p.text)
                    .bind(p.updated_at)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            pub async fn insert_api_key(c: &mut Conn, k: &ApiKey) -> Result<ApiKeyId, StoreError> {
                let row = sqlx::query(INSERT_API_KEY)
                    .bind(&k.prefix)
                    .bind(k.hash.to_bytes())
                    .bind(k.expiration)
                    .bind(k.created_at)
                    .bind(k.last_seen)
                    .bind(&k.description)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                row.try_get::<i64, _>(0).map_err(db_err)
            }

            pub async fn update_api_key(c: &mut Conn, k: &ApiKey) -> Result<(), StoreError> {
                let r = sqlx::query(UPDATE_API_KEY)
                    .bind(k.id)
                    .bind(k.expiration)
                    .bind(k.last_seen)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                one_row(r.rows_affected(), "api_keys", k.id)
            }

            pub async fn insert_oauth_client(
                c: &mut Conn,
                o: &OAuthClient,
            ) -> Result<OAuthClientId, StoreError> {
                let row = sqlx::query(INSERT_OAUTH_CLIENT)
                    .bind(&o.prefix)
                    .bind(o.hash.to_vec())
                    .bind(&o.description)
                    .bind(json(&o.scopes))
                    .bind(json(&o.tags))
                    .bind(o.created_at)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                row.try_get::<i64, _>(0).map_err(db_err)
            }

            fn get<'r, T>(r: &'r $row, table: &str, id: i64, col: &str) -> Result<T, StoreError>
            where
                T: sqlx::Decode<'r, $db> + sqlx::Type<$db>,
            {
                r.try_get::<T, _>(col)
                    .map_err(|e| corrupt(table, id, col, e))
            }

            fn parse<T: std::str::FromStr>(
                s: &str,
                table: &str,
                id: i64,
                col: &str,
            ) -> Result<T, StoreError>
            where
                T::Err: std::fmt::Display,
            {
                s.parse::<T>().map_err(|e| corrupt(table, id, col, e))
            }

            fn from_json<T: serde::de::DeserializeOwned>(
                s: &str,
                table: &str,
                id: i64,
                col: &str,
            ) -> Result<T, StoreError> {
                serde_json::from_str(s).map_err(|e| corrupt(table, id, col, e))
            }

            pub fn user(r: &$row) -> Result<User, StoreError> {
                let id: i64 = r.try_get("id").map_err(db_err)?;
                let t = "users";
                Ok(User {
                    id,
                    name: get(r, t, id, "name")?,
                    display_name: get(r, t, id, "display_name")?,
                    email: get(r, t, id, "email")?,
                    provider: get(r, t, id, "provider")?,
                    provider_id: get(r, t, id, "provider_id")?,
                    profile_pic_url: get(r, t, id, "profile_pic_url")?,
                    created_at: get(r, t, id, "created_at")?,
                })
            }

            pub fn node(r: &$row) -> Result<Node, StoreError> {
                let id: i64 = r.try_get("id").map_err(db_err)?;
                let t = "nodes";
                let method: String = get(r, t, id, "register_method")?;
                Ok(Node {
                    id,
                    machine_key: parse(
                        &get::<String>(r, t, id, "machine_key")?,
                        t,
                        id,
                        "machine_key",
                    )?,
                    node_key: parse(&get::<String>(r, t, id, "node_key")?, t, id, "node_key")?,
                    disco_key: parse(&get::<String>(r, t, id, "disco_key")?, t, id, "disco_key")?,
                    hostname: get(r, t, id, "hostname")?,
                    given_name: get(r, t, id, "given_name")?,
                    user_id: get(r, t, id, "user_id")?,
                    tags: from_json(&get::<String>(r, t, id, "tags")?, t, id, "tags")?,
                    ipv4: get::<Option<String>>(r, t, id, "ipv4")?
                        .map(|s| parse(&s, t, id, "ipv4"))
                        .transpose()?,
                    ipv6: get::<Option<String>>(r, t, id, "ipv6")?
                        .map(|s| parse(&s, t, id, "ipv6"))
                        .transpose()?,
                    endpoints: from_json(
                        &get::<String>(r, t, id, "endpoints")?,
                        t,
                        id,
                        "endpoints",
                    )?,
                    hostinfo: from_json(&get::<String>(r, t, id, "hostinfo")?, t, id, "hostinfo")?,
                    home_derp: get(r, t, id, "home_derp")?,
                    expiry: get(r, t, id, "expiry")?,
                    register_method: RegisterMethod::parse(&method).ok_or_else(|| {
                        corrupt(
                            t,
                            id,
                            "register_method",
                            format!("unknown method {method:?}"),
                        )
                    })?,
                    auth_key_id: get(r, t, id, "auth_key_id")?,
                    ephemeral: get(r, t, id, "ephemeral")?,
                    approved_routes: from_json(
                        &get::<String>(r, t, id, "approved_routes")?,
                        t,
                        id,
                        "approved_routes",
                    )?,
                    cap_version: get(r, t, id, "cap_version")?,
                    created_at: get(r, t, id, "created_at")?,
                    updated_at: get(r, t, id, "updated_at")?,
                    last_seen: get(r, t, id, "last_seen")?,
                })
            }

            pub fn preauth_key(r: &$row) -> Result<PreAuthKey, StoreError> {
                let id: i64 = r.try_get("id").map_err(db_err)?;
                let t = "preauth_keys";
                let hash: Vec<u8> = get(r, t, id, "hash")?;
                Ok(PreAuthKey {
                    id,
                    prefix: get(r, t, id, "prefix")?,
                    hash: SecretHash::from_bytes(&hash).ok_or_else(|| {
                        corrupt(t, id, "hash", "neither a SHA-256 nor a bcrypt hash")
                    })?,
                    user_id: get(r, t, id, "user_id")?,
                    reusable: get(r, t, id, "reusable")?,
                    ephemeral: get(r, t, id, "ephemeral")?,
                    used: get(r, t, id, "used")?,
                    expiration: get(r, t, id, "expiration")?,
                    created_at: get(r, t, id, "created_at")?,
                    tags: from_json(&get::<String>(r, t, id, "tags")?, t, id, "tags")?,
                })
            }

            pub fn api_key(r: &$row) -> Result<ApiKey, StoreError> {
                let id: i64 = r.try_get("id").map_err(db_err)?;
                let t = "api_keys";
                let hash: Vec<u8> = get(r, t, id, "hash")?;
                Ok(ApiKey {
                    id,
                    prefix: get(r, t, id, "prefix")?,
                    hash: SecretHash::from_bytes(&hash).ok_or_else(|| {
                        corrupt(t, id, "hash", "neither a SHA-256 nor a bcrypt hash")
                    })?,
                    expiration: get(r, t, id, "expiration")?,
                    created_at: get(r, t, id, "created_at")?,
                    last_seen: get(r, t, id, "last_seen")?,
                    description: get(r, t, id, "description")?,
                })
            }

            pub fn oauth_client(r: &$row) -> Result<OAuthClient, StoreError> {
                let id: i64 = r.try_get("id").map_err(db_err)?;
                let t = "oauth_clients";
                let hash: Vec<u8> = get(r, t, id, "hash")?;
                Ok(OAuthClient {
                    id,
                    prefix: get(r, t, id, "prefix")?,
                    hash: hash
                        .try_into()
                        .map_err(|_| corrupt(t, id, "hash", "not 32 bytes"))?,
                    description: get(r, t, id, "description")?,
                    scopes: from_json(&get::<String>(r, t, id, "scopes")?, t, id, "scopes")?,
                    tags: from_json(&get::<String>(r, t, id, "tags")?, t, id, "tags")?,
                    created_at: get(r, t, id, "created_at")?,
                })
            }

            pub fn policy(r: &$row) -> Result<StoredPolicy, StoreError> {
                Ok(StoredPolicy {
                    text: get(r, "policies", 1, "text")?,
                    updated_at: get(r, "policies", 1, "updated_at")?,
                })
            }
        }
    };
}

backend!(sqlite, sqlx::Sqlite, sqlx::sqlite::SqliteRow);
backend!(pg, sqlx::Postgres, sqlx::postgres::PgRow);

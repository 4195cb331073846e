#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! Migration from headscale: a headscale database laid out as headscale's
//! published schema has it (SQLite and PostgreSQL flavours), filled the way
//! headscale fills it (prefixed keys with bcrypt hashes, older plain-text
//! pre-auth keys and `prefix.secret` API keys, soft-deleted rows, tagged
//! nodes without a user), imported into a new Headway database; then the
//! imported keys are used for real through the service layer.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::settings::Settings;
use headway_state::store::Store;
use headway_store::SqlStore;
use headway_store::import::{self, ImportError};
use sqlx::Connection;

const SQLITE_SCHEMA: &str = r#"
CREATE TABLE migrations(id text, PRIMARY KEY(id));
CREATE TABLE users(id integer PRIMARY KEY AUTOINCREMENT, name text, display_name text,
  email text, provider_identifier text, provider text, profile_pic_url text,
  created_at datetime, updated_at datetime, deleted_at datetime);
CREATE TABLE pre_auth_keys(id integer PRIMARY KEY AUTOINCREMENT, key text, prefix text,
  hash blob, user_id integer, description text, reusable numeric, ephemeral numeric DEFAULT false,
  used numeric DEFAULT false, tags text, expiration datetime, revoked datetime, created_at datetime);
CREATE TABLE api_keys(id integer PRIMARY KEY AUTOINCREMENT, prefix text, hash blob,
  user_id integer, expiration datetime, last_seen datetime, created_at datetime);
CREATE TABLE nodes(id integer PRIMARY KEY AUTOINCREMENT, machine_key text, node_key text,
  disco_key text, endpoints text, host_info text, ipv4 text, ipv6 text, hostname text,
  given_name varchar(63), user_id integer, register_method text, tags text, auth_key_id integer,
  last_seen datetime, expiry datetime, approved_routes text, created_at datetime,
  updated_at datetime, deleted_at datetime);
CREATE TABLE policies(id integer PRIMARY KEY AUTOINCREMENT, data text, created_at datetime,
  updated_at datetime, deleted_at datetime);
"#;

const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE users(id bigserial PRIMARY KEY, name text, display_name text, email text,
  provider_identifier text, provider text, profile_pic_url text, created_at timestamptz,
  updated_at timestamptz, deleted_at timestamptz);
CREATE TABLE pre_auth_keys(id bigserial PRIMARY KEY, key text, prefix text, hash bytea,
  user_id bigint, description text, reusable boolean, ephemeral boolean DEFAULT false,
  used boolean DEFAULT false, tags text, expiration timestamptz, revoked timestamptz,
  created_at timestamptz);
CREATE TABLE api_keys(id bigserial PRIMARY KEY, prefix text, hash bytea, user_id bigint,
  expiration timestamptz, last_seen timestamptz, created_at timestamptz);
CREATE TABLE nodes(id bigserial PRIMARY KEY, machine_key text, node_key text, disco_key text,
  endpoints text, host_info text, ipv4 text, ipv6 text, hostname text, given_name varchar(63),
  user_id bigint, register_method text, tags text, auth_key_id bigint, last_seen timestamptz,
  expiry timestamptz, approved_routes text, created_at timestamptz, updated_at timestamptz,
  deleted_at timestamptz);
CREATE TABLE policies(id bigserial PRIMARY KEY, data text, created_at timestamptz,
  updated_at timestamptz, deleted_at timestamptz);
"#;

const POLICY: &str = r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}"#;

/// The secrets the fixture's keys were made from (headscale only stored
/// their bcrypt hashes, or the whole key for its older pre-auth keys).
struct Secrets {
    api_new: String,
    api_legacy: String,
    auth_new: String,
    auth_legacy: String,
}

fn key(kind: &str, b: u8) -> String {
    format!("{kind}:{}", hex::encode([b; 32]))
}

/// Rows as headscale writes them. `b` is how booleans are spelled and `t` a
/// timestamp, as each backend's driver writes them.
fn fixture_rows(b: fn(bool) -> &'static str, t: &str) -> (Vec<String>, Secrets) {
    let api_new_prefix = "0123456789ab";
    let api_new_secret = "c".repeat(64);
    let api_legacy_secret = "legacysecretlegacysecret12345678";
    let auth_new_prefix = "ba9876543210";
    let auth_new_secret = "d".repeat(64);
    let auth_legacy = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
    // Cost 4 keeps the test fast; headscale uses bcrypt's default, 10.
    let h = |s: &str| bcrypt::hash(s, 4).unwrap();
    let hostinfo = r#"{"Hostname":"laptop","OS":"linux","NetInfo":{"PreferredDERP":999}}"#;
    let rows = vec![
        format!(
            "INSERT INTO users (id, name, display_name, email, created_at) VALUES (1, 'alice', 'Alice', 'alice@example.com', {t})"
        ),
        format!(
            "INSERT INTO users (id, name, created_at, deleted_at) VALUES (2, 'gone', {t}, {t})"
        ),
        format!(
            "INSERT INTO users (id, name, email, provider_identifier, provider, created_at) VALUES (5, 'bob@example.com', 'bob@example.com', 'https://idp/sub-bob', 'oidc', {t})"
        ),
        // A prefixed key (bcrypt), an older plain-text one, a tagged one
        // without a user, and one whose user is gone.
        format!(
            "INSERT INTO pre_auth_keys (id, prefix, hash, user_id, reusable, ephemeral, used, tags, expiration, created_at) VALUES (3, '{auth_new_prefix}', '{}', 1, {}, {}, {}, '[]', '2999-01-01 00:00:00+00:00', {t})",
            h(&auth_new_secret),
            b(true),
            b(false),
            b(false)
        ),
        format!(
            "INSERT INTO pre_auth_keys (id, key, user_id, reusable, ephemeral, used, created_at) VALUES (4, '{auth_legacy}', 5, {}, {}, {}, {t})",
            b(true),
            b(true),
            b(false)
        ),
        format!(
            "INSERT INTO pre_auth_keys (id, prefix, hash, user_id, reusable, ephemeral, used, tags, created_at) VALUES (6, 'aaaaaaaaaaaa', '{}', NULL, {}, {}, {}, '[\"tag:server\"]', {t})",
            h("x"),
            b(false),
            b(false),
            b(true)
        ),
        format!(
            "INSERT INTO pre_auth_keys (id, prefix, hash, user_id, reusable, ephemeral, used, created_at) VALUES (7, 'bbbbbbbbbbbb', '{}', 2, {}, {}, {}, {t})",
            h("y"),
            b(false),
            b(false),
            b(false)
        ),
        format!(
            "INSERT INTO api_keys (id, prefix, hash, created_at) VALUES (2, '{api_new_prefix}', '{}', {t})",
            h(&api_new_secret)
        ),
        format!(
            "INSERT INTO api_keys (id, prefix, hash, expiration, created_at) VALUES (3, 'abcdefg', '{}', '2999-01-01 00:00:00+00:00', {t})",
            h(api_legacy_secret)
        ),
        // A user's node with approved routes, a tagged node (no user), and
        // a soft-deleted node.
        format!(
            "INSERT INTO nodes (id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, hostname, given_name, user_id, register_method, tags, auth_key_id, last_seen, expiry, approved_routes, created_at, updated_at) VALUES (4, '{}', '{}', '{}', '[\"192.0.2.1:41641\", \"bogus\"]', '{hostinfo}', '100.64.0.1', 'fd7a:115c:a1e0::1', 'laptop', 'laptop', 1, 'authkey', '[]', 3, {t}, '0001-01-01 00:00:00+00:00', '[\"10.1.0.0/24\"]', {t}, {t})",
            key("mkey", 1),
            key("nodekey", 1),
            key("discokey", 1)
        ),
        format!(
            "INSERT INTO nodes (id, machine_key, node_key, disco_key, ipv4, ipv6, hostname, given_name, user_id, register_method, tags, auth_key_id, expiry, created_at, updated_at) VALUES (9, '{}', '{}', '{}', '100.64.0.2', 'fd7a:115c:a1e0::2', 'srv', 'srv', NULL, 'authkey', '[\"tag:server\"]', 6, '2999-01-01 00:00:00+00:00', {t}, {t})",
            key("mkey", 2),
            key("nodekey", 2),
            key("discokey", 2)
        ),
        format!(
            "INSERT INTO nodes (id, machine_key, node_key, hostname, given_name, user_id, created_at, deleted_at) VALUES (10, '{}', '{}', 'old', 'old', 1, {t}, {t})",
            key("mkey", 3),
            key("nodekey", 3)
        ),
        format!(
            "INSERT INTO policies (id, data, created_at, updated_at) VALUES (1, '{{}}', {t}, {t})"
        ),
        format!(
            "INSERT INTO policies (id, data, created_at, updated_at) VALUES (2, '{POLICY}', {t}, {t})"
        ),
    ];
    let secrets = Secrets {
        api_new: format!("hskey-api-{api_new_prefix}-{api_new_secret}"),
        api_legacy: format!("abcdefg.{api_legacy_secret}"),
        auth_new: format!("hskey-auth-{auth_new_prefix}-{auth_new_secret}"),
        auth_legacy: auth_legacy.to_string(),
    };
    (rows, secrets)
}

async fn sqlite_fixture(path: &std::path::Path) -> Secrets {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(SQLITE_SCHEMA).execute(&mut c).await.unwrap();
    let (rows, secrets) = fixture_rows(
        |b| if b { "1" } else { "0" },
        "'2025-06-01 10:11:12.123456789+00:00'",
    );
    for r in rows {
        sqlx::query(&r).execute(&mut c).await.unwrap();
    }
    secrets
}

fn pg_admin_url() -> Option<String> {
    if std::env::var("HEADWAY_TEST_POSTGRES").as_deref() == Ok("off") {
        eprintln!("HEADWAY_TEST_POSTGRES=off: PostgreSQL import test not run");
        return None;
    }
    Some(
        std::env::var("HEADWAY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
}

async fn pg_create(admin: &str, name: &str) -> String {
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL not reachable at {admin}: {e}; start it, point HEADWAY_TEST_POSTGRES_URL at one, or set HEADWAY_TEST_POSTGRES=off"));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let mut u = url::Url::parse(admin).unwrap();
    u.set_path(name);
    u.to_string()
}

async fn pg_drop(admin: &str, name: &str) {
    if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
}

/// Reads, converts and imports `from` into `target`, then checks every
/// record and uses the imported keys.
async fn import_and_check(from: &str, target: SqlStore, secrets: &Secrets) {
    let source = import::open_source(from).await.unwrap();
    let raw = import::read(&source).await.unwrap();
    let plan = import::convert(&raw, now()).unwrap();
    assert_eq!(
        plan.users.iter().map(|u| u.id).collect::<Vec<_>>(),
        [1, 5],
        "soft-deleted users stay behind"
    );
    assert_eq!(
        plan.preauth_keys.iter().map(|k| k.id).collect::<Vec<_>>(),
        [3, 4, 6]
    );
    assert_eq!(plan.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [4, 9]);
    let text = plan.to_string();
    assert!(text.contains("nodes:         2 (1 tagged)"), "{text}");
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("pre_auth_keys row 7") && w.contains("user 2 is gone")),
        "{:?}",
        plan.warnings
    );
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("nodes row 4") && w.contains("\"bogus\"")),
        "{:?}",
        plan.warnings
    );

    target.import(&plan).await.unwrap();
    // A second import into the same database is refused, nothing written.
    match target.import(&plan).await {
        Err(ImportError::TargetNotEmpty(why)) => assert!(why.contains("users"), "{why}"),
        other => panic!("expected TargetNotEmpty, got {other:?}"),
    }

    let store: Arc<dyn Store> = Arc::new(target);
    let clock = Arc::new(ManualClock::new(now()));
    let tn = Tailnet::load(store, clock, Settings::default())
        .await
        .unwrap();
    let alice = tn.users().into_iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(alice.id, 1);
    let bob = tn
        .users()
        .into_iter()
        .find(|u| u.name == "bob@example.com")
        .unwrap();
    assert_eq!(
        (bob.id, bob.provider.as_str(), bob.provider_id.as_deref()),
        (5, "oidc", Some("https://idp/sub-bob"))
    );

    let laptop = tn.get_node(4).unwrap();
    assert_eq!(laptop.user_id, Some(1));
    assert_eq!(laptop.node_key, NodePublic([1; 32]));
    assert_eq!(laptop.machine_key, MachinePublic([1; 32]));
    assert_eq!(laptop.ipv4.unwrap().to_string(), "100.64.0.1");
    assert_eq!(laptop.expiry, None, "Go's zero time means no expiry");
    assert_eq!(laptop.home_derp, 999);
    assert_eq!(laptop.approved_routes[0].to_string(), "10.1.0.0/24");
    assert_eq!(laptop.endpoints.len(), 1);
    let srv = tn.get_node(9).unwrap();
    assert_eq!(
        (srv.user_id, srv.tags.clone()),
        (None, vec!["tag:server".to_string()])
    );

    // The API keys headscale handed out still open the API.
    tn.authenticate_api_key(&secrets.api_new).unwrap();
    tn.authenticate_api_key(&secrets.api_legacy).unwrap();
    assert!(
        tn.authenticate_api_key(&secrets.api_new.replace("-ccc", "-ccd"))
            .is_err()
    );
    assert!(tn.authenticate_api_key("abcdefg.wrongsecret").is_err());

    // And its pre-auth keys still register machines: the prefixed one and
    // the older plain-text one (ephemeral, of the OIDC user).
    for (i, (k, user)) in [(&secrets.auth_new, 1), (&secrets.auth_legacy, 5)]
        .into_iter()
        .enumerate()
    {
        let b = 50 + i as u8;
        let req = RegisterRequest {
            version: 133,
            node_key: NodePublic([b; 32]),
            auth: Some(RegisterResponseAuth {
                auth_key: k.clone(),
                ..Default::default()
            }),
            hostinfo: Some(Hostinfo {
                hostname: format!("new{i}"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (resp, _) = tn.register(MachinePublic([b; 32]), &req).await.unwrap();
        assert!(resp.error.is_empty(), "key {i}: {}", resp.error);
        let node = tn
            .list_nodes(None)
            .into_iter()
            .find(|n| n.node_key == NodePublic([b; 32]))
            .unwrap();
        assert_eq!(node.user_id, Some(user));
        assert!(node.id > 9, "new ids continue after the imported ones");
        assert_eq!(node.ephemeral, i == 1);
    }
}

#[tokio::test]
async fn a_headscale_sqlite_database_imports_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("headscale.sqlite");
    let secrets = sqlite_fixture(&src).await;
    let target = SqlStore::open_sqlite(&dir.path().join("headway/db.sqlite"))
        .await
        .unwrap();
    import_and_check(src.to_str().unwrap(), target, &secrets).await;
}

#[tokio::test]
async fn a_headscale_postgres_database_imports_into_postgres() {
    let Some(admin) = pg_admin_url() else { return };
    let suffix = rand::random::<u32>();
    let (src_db, dst_db) = (
        format!("headscale_src_{suffix}"),
        format!("headway_dst_{suffix}"),
    );
    let src_url = pg_create(&admin, &src_db).await;
    let (rows, secrets) = fixture_rows(|b| if b { "true" } else { "false" }, "now()");
    {
        let mut c = sqlx::PgConnection::connect(&src_url).await.unwrap();
        sqlx::raw_sql(POSTGRES_SCHEMA)
            .execute(&mut c)
            .await
            .unwrap();
        // A bcrypt hash given as text lands in bytea as its bytes, as
        // headscale's driver writes it.
        for r in &rows {
            sqlx::query(r).execute(&mut c).await.unwrap();
        }
    }
    let dst_url = pg_create(&admin, &dst_db).await;
    let u = url::Url::parse(&dst_url).unwrap();
    let target = SqlStore::open_postgres(&headway_store::PostgresOptions {
        host: u.host_str().unwrap_or("127.0.0.1").into(),
        port: u.port().unwrap_or(5432),
        database: dst_db.clone(),
        user: if u.username().is_empty() {
            "postgres".into()
        } else {
            u.username().into()
        },
        password: u.password().map(String::from),
        ssl_mode: "disable".into(),
        ssl_root_cert: None,
        max_connections: 4,
    })
    .await
    .unwrap();
    import_and_check(&src_url, target.clone(), &secrets).await;
    target.close().await;
    pg_drop(&admin, &src_db).await;
    pg_drop(&admin, &dst_db).await;
}

#[tokio::test]
async fn a_database_that_is_not_headscale_is_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("other.sqlite");
    let url = format!("sqlite://{}?mode=rwc", src.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE users(id integer PRIMARY KEY, email text);")
        .execute(&mut c)
        .await
        .unwrap();
    let source = import::open_source(src.to_str().unwrap()).await.unwrap();
    let err = import::read(&source).await.unwrap_err().to_string();
    assert!(
        err.contains("users") && err.contains("column name"),
        "{err}"
    );

    let err = import::open_source("/nonexistent/db.sqlite")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no such file"), "{err}");
}

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! The same store test-suite against SQLite and PostgreSQL.
//!
//! PostgreSQL tests create and drop their own database on the server named by
//! `HEADWAY_TEST_POSTGRES_URL` (default: postgres://postgres@127.0.0.1:5432/postgres).
//! They fail when it is unreachable, unless `HEADWAY_TEST_POSTGRES=off` says
//! to run without it.

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use headway_proto::keys::{DiscoPublic, MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::model::*;
use headway_state::settings::Settings;
use headway_state::store::{Store, StoreError};
use headway_state::tailnet::{NewPreAuthKey, NewUser};
use headway_store::{PostgresOptions, SqlStore, SqliteOptions};
use sqlx::Connection;

use common::{PgDb, pg_admin_url};

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
}

fn sample_node(user: Option<UserId>, n: u8) -> Node {
    Node {
        id: 0,
        machine_key: MachinePublic([n; 32]),
        node_key: NodePublic([n; 32]),
        disco_key: DiscoPublic([n + 1; 32]),
        hostname: format!("Host {n}"),
        given_name: format!("host-{n}"),
        user_id: user,
        tags: vec![],
        ipv4: Some(format!("100.64.0.{n}").parse().unwrap()),
        ipv6: Some(format!("fd7a:115c:a1e0::{n}").parse().unwrap()),
        endpoints: vec!["192.0.2.1:41641".parse().unwrap()],
        hostinfo: Hostinfo {
            hostname: format!("Host {n}"),
            os: "linux".into(),
            ..Default::default()
        },
        home_derp: 999,
        expiry: Some(t0()),
        register_method: RegisterMethod::AuthKey,
        auth_key_id: None,
        ephemeral: false,
        approved_routes: vec!["10.0.0.0/24".parse().unwrap()],
        cap_version: 133,
        created_at: t0(),
        updated_at: t0(),
        last_seen: None,
    }
}

async fn round_trips_every_record(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    let mut user = User {
        id: 0,
        name: "alice".into(),
        display_name: "Alice".into(),
        email: "alice@example.com".into(),
        provider: "".into(),
        provider_id: None,
        profile_pic_url: "".into(),
        created_at: t0(),
    };
    user.id = tx.insert_user(&user).await.unwrap();
    let mut key = PreAuthKey {
        id: 0,
        prefix: "0123456789ab".into(),
        hash: headway_state::keys::SecretHash::Sha256([9; 32]),
        user_id: Some(user.id),
        reusable: true,
        ephemeral: false,
        used: false,
        expiration: Some(t0()),
        created_at: t0(),
        tags: vec!["tag:a".into()],
    };
    key.id = tx.insert_preauth_key(&key).await.unwrap();
    let mut node = sample_node(Some(user.id), 1);
    node.auth_key_id = Some(key.id);
    node.id = tx.insert_node(&node).await.unwrap();
    tx.set_policy(&StoredPolicy {
        text: "{}".into(),
        updated_at: t0(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let snap = store.load().await.unwrap();
    assert_eq!(snap.users, vec![user.clone()]);
    assert_eq!(snap.preauth_keys, vec![key.clone()]);
    assert_eq!(snap.nodes, vec![node.clone()]);
    assert_eq!(snap.policy.unwrap().text, "{}");

    // Updates.
    let mut tx = store.begin().await.unwrap();
    node.given_name = "renamed".into();
    node.expiry = None;
    node.last_seen = Some(t0());
    node.tags = vec!["tag:x".into()];
    tx.update_node(&node).await.unwrap();
    key.used = true;
    tx.update_preauth_key(&key).await.unwrap();
    user.display_name = "Alice A.".into();
    tx.update_user(&user).await.unwrap();
    tx.set_policy(&StoredPolicy {
        text: "{\"acls\":[]}".into(),
        updated_at: t0(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let snap = store.load().await.unwrap();
    assert_eq!(snap.nodes, vec![node.clone()]);
    assert!(snap.preauth_keys[0].used);
    assert_eq!(snap.users[0].display_name, "Alice A.");
    assert_eq!(snap.policy.unwrap().text, "{\"acls\":[]}");

    // A transaction that is dropped leaves nothing behind.
    let mut tx = store.begin().await.unwrap();
    tx.insert_node(&sample_node(Some(user.id), 2))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(store.load().await.unwrap().nodes.len(), 1);

    // Uniqueness: a second node with the same address or name is a conflict.
    let mut tx = store.begin().await.unwrap();
    let mut dup = sample_node(Some(user.id), 3);
    dup.ipv4 = node.ipv4;
    let err = tx.insert_node(&dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    drop(tx);

    // Deleting a key keeps the node (its reference is cleared).
    let mut tx = store.begin().await.unwrap();
    tx.delete_preauth_key(key.id).await.unwrap();
    tx.commit().await.unwrap();
    let snap = store.load().await.unwrap();
    assert_eq!(snap.nodes[0].auth_key_id, None);

    // Deleting what does not exist is an error, not a silent no-op.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_node(9999).await.is_err());
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    tx.delete_node(node.id).await.unwrap();
    tx.delete_user(user.id).await.unwrap();
    tx.commit().await.unwrap();
    let snap = store.load().await.unwrap();
    assert!(snap.nodes.is_empty() && snap.users.is_empty());
}

async fn tailnet_survives_a_restart(
    store: Arc<dyn Store>,
    reopen: impl std::future::Future<Output = Arc<dyn Store>>,
) {
    let clock = Arc::new(ManualClock::new(t0()));
    let tn = Tailnet::load(store.clone(), clock.clone(), Settings::default())
        .await
        .unwrap();
    let user = tn
        .create_user(NewUser {
            name: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, key) = tn
        .create_preauth_key(NewPreAuthKey {
            user: Some(user.id),
            reusable: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=3u8 {
        let req = RegisterRequest {
            version: 133,
            node_key: NodePublic([i; 32]),
            auth: Some(RegisterResponseAuth {
                auth_key: key.clone(),
                ..Default::default()
            }),
            hostinfo: Some(Hostinfo {
                hostname: "box".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (resp, _) = tn.register(MachinePublic([i; 32]), &req).await.unwrap();
        assert!(resp.error.is_empty(), "{}", resp.error);
    }
    let before: Vec<Node> = tn.list_nodes(None).iter().map(|n| (**n).clone()).collect();
    let again = Tailnet::load(reopen.await, clock, Settings::default())
        .await
        .unwrap();
    let after: Vec<Node> = again
        .list_nodes(None)
        .iter()
        .map(|n| (**n).clone())
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        after
            .iter()
            .map(|n| n.given_name.as_str())
            .collect::<Vec<_>>(),
        ["box", "box-1", "box-2"]
    );
}

#[tokio::test]
async fn sqlite_store_round_trips_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("db/headway.sqlite"))
        .await
        .unwrap();
    round_trips_every_record(&store).await;
}

#[tokio::test]
async fn postgres_store_round_trips_every_record() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let store = SqlStore::open_postgres(&opts).await.unwrap();
    round_trips_every_record(&store).await;
    store.close().await;
}

/// A replica flushing the soft state of the nodes connected to it writes
/// only those columns: an administrative change made meanwhile (by another
/// replica) survives it.
async fn soft_update_keeps_administrative_changes(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    let mut node = sample_node(None, 7);
    node.id = tx.insert_node(&node).await.unwrap();
    tx.commit().await.unwrap();

    let mut renamed = node.clone();
    renamed.given_name = "renamed".into();
    renamed.tags = vec!["tag:server".into()];
    let mut tx = store.begin().await.unwrap();
    tx.update_node(&renamed).await.unwrap();
    tx.commit().await.unwrap();

    // The flushing replica's copy predates the rename.
    let mut flushed = node.clone();
    flushed.endpoints = vec!["198.51.100.7:41641".parse().unwrap()];
    flushed.disco_key = DiscoPublic([77; 32]);
    flushed.home_derp = 901;
    flushed.last_seen = Some(t0());
    let mut tx = store.begin().await.unwrap();
    tx.update_node_soft(&flushed).await.unwrap();
    tx.commit().await.unwrap();

    let stored = store.load().await.unwrap().nodes.remove(0);
    assert_eq!(stored.given_name, "renamed");
    assert_eq!(stored.tags, ["tag:server"]);
    assert_eq!(stored.endpoints, flushed.endpoints);
    assert_eq!(stored.disco_key, DiscoPublic([77; 32]));
    assert_eq!(stored.home_derp, 901);
    assert_eq!(stored.last_seen, Some(t0()));
}

#[tokio::test]
async fn sqlite_soft_update_keeps_administrative_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("headway.sqlite"))
        .await
        .unwrap();
    soft_update_keeps_administrative_changes(&store).await;
}

#[tokio::test]
async fn postgres_soft_update_keeps_administrative_changes() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let store = SqlStore::open_postgres(&opts).await.unwrap();
    soft_update_keeps_administrative_changes(&store).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_tailnet_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headway.sqlite");
    let store = Arc::new(SqlStore::open_sqlite(&path).await.unwrap());
    tailnet_survives_a_restart(store, async {
        Arc::new(SqlStore::open_sqlite(&path).await.unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test]
async fn postgres_tailnet_survives_a_restart() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let store = Arc::new(SqlStore::open_postgres(&opts).await.unwrap());
    let o2 = opts.clone();
    tailnet_survives_a_restart(store, async move {
        Arc::new(SqlStore::open_postgres(&o2).await.unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test]
async fn migrations_can_be_rerun_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/headway.sqlite");
    SqlStore::open_sqlite(&path).await.unwrap().close().await;
    SqlStore::open_sqlite(&path).await.unwrap().close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }
}

#[tokio::test]
async fn sqlite_journal_settings_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headway.sqlite");
    let mode = |options: SqliteOptions| async move {
        let store = SqlStore::open_sqlite_with(&options).await.unwrap();
        let SqlStore::Sqlite { pool, .. } = &store else {
            unreachable!()
        };
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        let checkpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(pool)
            .await
            .unwrap();
        store.close().await;
        (journal, checkpoint)
    };
    let rollback = SqliteOptions {
        write_ahead_log: false,
        wal_autocheckpoint: 0,
        ..SqliteOptions::new(&path)
    };
    assert_eq!(mode(rollback).await, ("delete".to_string(), 0));
    let wal = SqliteOptions {
        wal_autocheckpoint: 250,
        ..SqliteOptions::new(&path)
    };
    assert_eq!(mode(wal).await, ("wal".to_string(), 250));
}

/// The default build has no SQLCipher: a key is refused before anything is
/// written, never ignored (that would leave the file unencrypted).
#[cfg(not(feature = "sqlcipher"))]
#[tokio::test]
async fn a_key_without_sqlcipher_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/headway.sqlite");
    let options = SqliteOptions {
        key: Some(headway_store::SqliteKey::new("a passphrase")),
        ..SqliteOptions::new(&path)
    };
    let err = SqlStore::open_sqlite_with(&options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("built without SQLCipher") && err.contains("--features sqlcipher"),
        "{err}"
    );
    assert!(!path.exists() && !path.parent().unwrap().exists());
}

#[tokio::test]
async fn a_corrupt_row_is_reported_with_table_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headway.sqlite");
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_node(&sample_node(None, 5)).await.unwrap();
    tx.commit().await.unwrap();
    let SqlStore::Sqlite { pool, .. } = &store else {
        unreachable!()
    };
    sqlx::query("UPDATE nodes SET node_key = 'garbage'")
        .execute(pool)
        .await
        .unwrap();
    let err = store.load().await.unwrap_err().to_string();
    assert!(
        err.contains("nodes row") && err.contains("node_key"),
        "{err}"
    );
}

/// API keys and OAuth clients (migrations 0002 and 0003): written, updated,
/// read back and deleted, each change in its transaction.
async fn round_trips_api_keys_and_oauth_clients(store: &dyn Store) {
    let mut key = ApiKey {
        id: 0,
        prefix: "0123456789ab".into(),
        hash: headway_state::keys::SecretHash::Sha256([7; 32]),
        expiration: Some(t0() + chrono::Duration::days(90)),
        created_at: t0(),
        last_seen: None,
        description: "console:alice@example.com".into(),
    };
    let mut tx = store.begin().await.unwrap();
    key.id = tx.insert_api_key(&key).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.load().await.unwrap().api_keys, vec![key.clone()]);

    key.last_seen = Some(t0() + chrono::Duration::minutes(5));
    key.expiration = Some(t0() + chrono::Duration::hours(1));
    let mut tx = store.begin().await.unwrap();
    tx.update_api_key(&key).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.load().await.unwrap().api_keys, vec![key.clone()]);

    // The prefix is unique.
    let mut tx = store.begin().await.unwrap();
    let dup = tx.insert_api_key(&key).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    drop(tx);

    let mut client = OAuthClient {
        id: 0,
        prefix: "ba9876543210".into(),
        hash: [9; 32],
        description: "terraform".into(),
        scopes: vec!["auth_keys".into(), "devices:core".into()],
        tags: vec!["tag:ci".into()],
        created_at: t0(),
    };
    let mut tx = store.begin().await.unwrap();
    client.id = tx.insert_oauth_client(&client).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.load().await.unwrap().oauth_clients,
        vec![client.clone()]
    );

    let mut tx = store.begin().await.unwrap();
    tx.delete_api_key(key.id).await.unwrap();
    tx.delete_oauth_client(client.id).await.unwrap();
    tx.commit().await.unwrap();
    let loaded = store.load().await.unwrap();
    assert!(loaded.api_keys.is_empty() && loaded.oauth_clients.is_empty());
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_api_key(key.id).await.is_err());
}

#[tokio::test]
async fn sqlite_store_round_trips_api_keys_and_oauth_clients() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("headway.sqlite"))
        .await
        .unwrap();
    round_trips_api_keys_and_oauth_clients(&store).await;
}

#[tokio::test]
async fn postgres_store_round_trips_api_keys_and_oauth_clients() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let store = SqlStore::open_postgres(&opts).await.unwrap();
    round_trips_api_keys_and_oauth_clients(&store).await;
    store.close().await;
}

/// `database.postgres.ssl: verify-full` with `ssl_root_cert`: the store
/// talks TLS to PostgreSQL and checks the server's certificate and name.
/// Uses the certificate the test server itself is configured with (Debian
/// turns `ssl` on with a self-signed certificate for `localhost`).
#[tokio::test]
async fn postgres_over_tls_checks_the_server_certificate_and_name() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
    let (ssl,): (String,) = sqlx::query_as("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        ssl, "on",
        "the test PostgreSQL server has ssl off; turn it on (ssl = on with a certificate for localhost) to test TLS to the database"
    );
    let (cert_file,): (String,) = sqlx::query_as("SHOW ssl_cert_file")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("server-ca.pem");
    std::fs::copy(&cert_file, &ca).unwrap_or_else(|e| panic!("reading {cert_file}: {e}"));

    let tls = |host: &str, mode: &str, root: Option<std::path::PathBuf>| PostgresOptions {
        host: host.into(),
        ssl_mode: mode.into(),
        ssl_root_cert: root,
        ..opts.clone()
    };
    // The right CA and the name on the certificate: connected, encrypted.
    let store = SqlStore::open_postgres(&tls("localhost", "verify-full", Some(ca.clone())))
        .await
        .unwrap();
    let SqlStore::Postgres { pool, .. } = &store else {
        panic!("not PostgreSQL")
    };
    let (encrypted,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(encrypted, "verify-full must encrypt the connection");
    store.close().await;

    // Another name than the certificate's: refused under verify-full.
    let err = SqlStore::open_postgres(&tls("127.0.0.1", "verify-full", Some(ca.clone())))
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // A CA that did not sign the server's certificate: refused.
    let public_roots = std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if public_roots.exists() {
        let err = SqlStore::open_postgres(&tls("localhost", "verify-ca", Some(public_roots)))
            .await
            .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
    }
    // A root certificate that is not there: a clear error naming the key.
    let err = SqlStore::open_postgres(&tls(
        "localhost",
        "verify-full",
        Some(dir.path().join("missing.pem")),
    ))
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("database.postgres.ssl_root_cert"),
        "{err}"
    );
}

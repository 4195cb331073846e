//! Moving in and keeping safe: clients registered with headscale keep
//! working once Headway takes its place (`headway import headscale`), and a
//! backup taken while the server runs brings the tailnet back
//! (`headway backup` / `headway restore`).

use std::time::Duration;

use sqlx::Connection;

use crate::kit::*;

/// headscale's tables, as its published schema lays them out (the columns
/// the importer reads; headscale has a few more).
const HEADSCALE_SCHEMA: &str = r#"
CREATE TABLE users(id integer PRIMARY KEY AUTOINCREMENT, name text, display_name text,
  email text, provider_identifier text, provider text, profile_pic_url text,
  created_at datetime, updated_at datetime, deleted_at datetime);
CREATE TABLE pre_auth_keys(id integer PRIMARY KEY AUTOINCREMENT, key text, prefix text,
  hash blob, user_id integer, reusable numeric, ephemeral numeric DEFAULT false,
  used numeric DEFAULT false, tags text, expiration datetime, created_at datetime);
CREATE TABLE api_keys(id integer PRIMARY KEY AUTOINCREMENT, prefix text, hash blob,
  expiration datetime, last_seen datetime, created_at datetime);
CREATE TABLE nodes(id integer PRIMARY KEY AUTOINCREMENT, machine_key text, node_key text,
  disco_key text, endpoints text, host_info text, ipv4 text, ipv6 text, hostname text,
  given_name varchar(63), user_id integer, register_method text, tags text, auth_key_id integer,
  last_seen datetime, expiry datetime, approved_routes text, created_at datetime,
  updated_at datetime, deleted_at datetime);
CREATE TABLE policies(id integer PRIMARY KEY AUTOINCREMENT, data text, created_at datetime,
  updated_at datetime, deleted_at datetime);
"#;

async fn sqlite(path: &std::path::Path, create: bool) -> sqlx::SqliteConnection {
    let mode = if create { "rwc" } else { "ro" };
    sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode={mode}", path.display()))
        .await
        .unwrap()
}

/// Writes, in headscale's layout, the tailnet a first server registered:
/// what a headscale that had registered these same clients would hold.
/// Pre-auth keys get bcrypt hashes, as headscale stores them.
async fn headscale_db_from(headway_db: &std::path::Path, out: &std::path::Path, key: &str) {
    let mut from = sqlite(headway_db, false).await;
    let mut to = sqlite(out, true).await;
    sqlx::raw_sql(HEADSCALE_SCHEMA)
        .execute(&mut to)
        .await
        .unwrap();
    let users: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM users")
        .fetch_all(&mut from)
        .await
        .unwrap();
    for (id, name) in users {
        sqlx::query("INSERT INTO users (id, name, created_at) VALUES ($1, $2, '2025-06-01 10:11:12.5+00:00')")
            .bind(id)
            .bind(name)
            .execute(&mut to)
            .await
            .unwrap();
    }
    let (prefix, secret) = key
        .strip_prefix("hskey-auth-")
        .and_then(|r| r.split_once('-'))
        .unwrap();
    let (kid, uid): (i64, i64) = sqlx::query_as("SELECT id, user_id FROM preauth_keys")
        .fetch_one(&mut from)
        .await
        .unwrap();
    sqlx::query("INSERT INTO pre_auth_keys (id, prefix, hash, user_id, reusable, ephemeral, used, tags, expiration, created_at) VALUES ($1, $2, $3, $4, 1, 0, 1, '[]', '2999-01-01 00:00:00+00:00', '2025-06-01 10:11:12+00:00')")
        .bind(kid)
        .bind(prefix)
        .bind(bcrypt::hash(secret, 4).unwrap().into_bytes())
        .bind(uid)
        .execute(&mut to)
        .await
        .unwrap();
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        String,
        i64,
        String,
        String,
        String,
    );
    let nodes: Vec<Row> = sqlx::query_as(
        "SELECT id, machine_key, node_key, disco_key, hostname, given_name, user_id, ipv4, ipv6, hostinfo FROM nodes",
    )
    .fetch_all(&mut from)
    .await
    .unwrap();
    for (id, mk, nk, dk, host, given, uid, v4, v6, hostinfo) in nodes {
        sqlx::query("INSERT INTO nodes (id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, hostname, given_name, user_id, register_method, tags, auth_key_id, expiry, approved_routes, created_at, updated_at) VALUES ($1, $2, $3, $4, '[]', $5, $6, $7, $8, $9, $10, 'authkey', '[]', $11, '0001-01-01 00:00:00+00:00', '[]', '2025-06-01 10:11:12+00:00', '2025-06-01 10:11:12+00:00')")
            .bind(id)
            .bind(mk)
            .bind(nk)
            .bind(dk)
            .bind(hostinfo)
            .bind(v4)
            .bind(v6)
            .bind(host)
            .bind(given)
            .bind(uid)
            .bind(kid)
            .execute(&mut to)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_headscale_database_keep_working_after_the_import() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("before"), dir.path().join("after"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let mut before = Headway::start(&dir_a, ServerOpts::default()).await;
    let key = before.user_with_key("alice", &["--reusable"]).await;
    let one = Node::start(dir.path(), "one", MODERN, &[]).await;
    let two = Node::start(dir.path(), "two", MODERN, &[]).await;
    one.up_ok(&before, &key).await;
    two.up_ok(&before, &key).await;
    one.wait_sees_online(&["two"]).await;
    let ip_one = one.ipv4().await;
    before.stop().await;

    let headscale_db = dir.path().join("headscale.sqlite");
    headscale_db_from(&before.data_dir().join("db.sqlite"), &headscale_db, &key).await;

    // The new server: a new database, headscale's Noise key, the same URL.
    let noise = before.data_dir().join("noise_private.key");
    let setup = dir_b.join("import.yaml");
    std::fs::write(
        &setup,
        format!(
            "data_dir: {}\nunix_socket: {}\n",
            dir_b.join("data").display(),
            dir_b.join("headway.sock").display()
        ),
    )
    .unwrap();
    let import = |extra: &'static [&'static str]| {
        let (setup, from) = (setup.clone(), headscale_db.clone());
        async move {
            let out = headway_command()
                .arg("--config")
                .arg(&setup)
                .args(["import", "headscale", "--from"])
                .arg(&from)
                .args(extra)
                .output()
                .await
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
    };
    let (ok, text) = import(&["--dry-run"]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("nodes:         2") && text.contains("dry run: nothing written"),
        "{text}"
    );
    let (ok, text) = import(&[]).await;
    assert!(ok && text.contains("imported"), "{text}");
    // Once is enough: a second import into the same database is refused.
    let (ok, text) = import(&[]).await;
    assert!(!ok && text.contains("not empty"), "{text}");

    let after = Headway::launch(
        &dir_b,
        ServerOpts {
            extra_yaml: format!("noise:\n  private_key_path: {}\n", noise.display()),
        },
        Launch {
            port: Some(before.port),
            ..Launch::default()
        },
    )
    .await;
    // The clients were never told anything: they reconnect to the same URL,
    // are recognised by their keys and see each other again.
    one.wait_sees_online(&["two"]).await;
    two.wait_sees_online(&["one"]).await;
    assert_eq!(one.ipv4().await, ip_one, "addresses survive the move");
    two.ping("one").await;
    let nodes = after.nodes().await;
    assert_eq!(nodes.len(), 2, "{nodes:?}");

    // headscale's pre-auth key (a bcrypt hash) still registers machines.
    let three = Node::start(dir.path(), "three", MODERN, &[]).await;
    three.up_ok(&after, &key).await;
    three.wait_sees_online(&["one", "two"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_the_tailnet() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Headway::start(dir.path(), ServerOpts::default()).await;
    let key = server.user_with_key("alice", &["--reusable"]).await;
    let one = Node::start(dir.path(), "one", MODERN, &[]).await;
    let two = Node::start(dir.path(), "two", MODERN, &[]).await;
    one.up_ok(&server, &key).await;
    two.up_ok(&server, &key).await;
    one.wait_sees_online(&["two"]).await;

    let backup = dir.path().join("backup.sqlite");
    let b = backup.display().to_string();
    let v = server.cli_json(&["backup", &b]).await;
    assert_eq!(
        (v["users"].as_i64(), v["nodes"].as_i64()),
        (Some(1), Some(2)),
        "{v}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a backup holds keys: owner only");
    // Never over an existing file.
    let (ok, _, err) = server.cli(&["backup", &b]).await;
    assert!(!ok && err.contains("exists"), "{err}");

    // Changes after the backup are what a restore takes back.
    server.cli_json(&["users", "create", "later"]).await;
    // A restore under a running server is refused, and changes nothing.
    let (ok, _, err) = server.cli(&["restore", &b]).await;
    assert!(!ok && err.contains("stop it first"), "{err}");
    // Neither is a file that is not a backup accepted.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not a database").unwrap();
    server.stop().await;
    let (ok, _, err) = server.cli(&["restore", &junk.display().to_string()]).await;
    assert!(!ok && err.contains("not a Headway backup"), "{err}");

    let v = server.cli_json(&["restore", &b]).await;
    assert!(v["previous"].as_str().is_some(), "{v}");
    server.restart().await;
    let users = server.cli_json(&["users", "list"]).await;
    let list = users
        .as_array()
        .cloned()
        .unwrap_or_else(|| users["users"].as_array().cloned().unwrap_or_default());
    let names: Vec<&str> = list.iter().filter_map(|u| u["name"].as_str()).collect();
    assert_eq!(names, ["alice"], "{users}");
    one.wait_sees_online(&["two"]).await;
    eventually(
        Duration::from_secs(30),
        "two nodes after restore",
        async || (server.nodes().await.len() == 2).then_some(()),
    )
    .await;
    one.ping("two").await;
}

//! The SQLite database encrypted at rest (SQLCipher; `headway` built with
//! `--features sqlcipher`): an existing tailnet is encrypted with
//! `headway encrypt`, its clients carry on, a new one joins, backups are
//! encrypted too, and nothing the clients sent is in the files in clear.
//!
//! `cargo test -p headway --features sqlcipher --test e2e -- data_at_rest::`

use std::path::Path;
use std::time::Duration;

use crate::kit::*;

/// The database file and its write-ahead log, as bytes.
fn on_disk(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    if let Ok(wal) = std::fs::read(format!("{}-wal", path.display())) {
        bytes.extend(wal);
    }
    bytes
}

fn in_clear(path: &Path, text: &str) -> bool {
    let bytes = on_disk(path);
    bytes.starts_with(b"SQLite format 3\0")
        || bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

fn write_key(path: &Path, key: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, key).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `headway serve` that is expected to refuse to start: its error output.
async fn refused_start(server: &Headway) -> String {
    let (ok, out, err) = tokio::time::timeout(Duration::from_secs(60), server.cli(&["serve"]))
        .await
        .expect("the server started although it should have refused");
    assert!(!ok, "the server ran: {out}{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_database_serves_official_clients_and_keeps_nothing_in_clear() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let plain_yaml = "database:\n  type: sqlite\n";
    let mut server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: plain_yaml.into(),
        },
    )
    .await;
    let authkey = server.user_with_key("cipheruser", &["--reusable"]).await;
    let one = Node::start(dir.path(), "cipherhost-one", MODERN, &[]).await;
    let two = Node::start(dir.path(), "cipherhost-two", MODERN, &[]).await;
    one.up_ok(&server, &authkey).await;
    two.up_ok(&server, &authkey).await;
    one.wait_sees_online(&["cipherhost-two"]).await;
    let db = server.data_dir().join("db.sqlite");
    assert!(
        in_clear(&db, "cipherhost-one"),
        "unencrypted, the host name is in the file (else this test could not fail)"
    );

    // The key goes into the config; `headway encrypt` waits for the server
    // to stop.
    let key_file = dir.path().join("db.key");
    write_key(&key_file, "a passphrase for the tailnet\n", 0o600);
    let config = std::fs::read_to_string(&server.config).unwrap();
    let keyed_yaml = format!(
        "database:\n  type: sqlite\n  sqlite:\n    key_path: {}\n",
        key_file.display()
    );
    std::fs::write(&server.config, config.replace(plain_yaml, &keyed_yaml)).unwrap();
    let (ok, _, err) = server.cli(&["encrypt"]).await;
    assert!(!ok && err.contains("stop it first"), "{err}");
    server.stop().await;
    let v = server.cli_json(&["encrypt"]).await;
    assert_eq!(
        (
            v["encrypted"].as_bool(),
            v["users"].as_i64(),
            v["nodes"].as_i64()
        ),
        (Some(true), Some(1), Some(2)),
        "{v}"
    );
    assert!(!in_clear(&db, "cipherhost-one"));
    assert!(!in_clear(&db, "cipheruser"));
    let (ok, _, err) = server.cli(&["encrypt"]).await;
    assert!(!ok && err.contains("already encrypted"), "{err}");

    // The server opens it with the key; the clients, never told, carry on.
    server.restart().await;
    one.wait_sees_online(&["cipherhost-two"]).await;
    two.wait_sees_online(&["cipherhost-one"]).await;
    one.ping("cipherhost-two").await;
    let three = Node::start(dir.path(), "cipherhost-three", MODERN, &[]).await;
    three.up_ok(&server, &authkey).await;
    three
        .wait_sees_online(&["cipherhost-one", "cipherhost-two"])
        .await;
    assert_eq!(server.nodes().await.len(), 3);

    // A backup taken while serving is encrypted with the same key.
    let backup = dir.path().join("backup.sqlite");
    let v = server
        .cli_json(&["backup", &backup.display().to_string()])
        .await;
    assert_eq!(v["nodes"].as_i64(), Some(3), "{v}");
    assert!(!in_clear(&backup, "cipherhost-three"));

    server.stop().await;
    assert!(!in_clear(&db, "cipherhost-three"));
    assert!(
        !in_clear(&db, &authkey),
        "the pre-auth key is stored hashed anyway"
    );

    // A wrong key, no key, a key file others can read: the server says what
    // is wrong and does not start.
    write_key(&key_file, "not the passphrase\n", 0o600);
    let err = refused_start(&server).await;
    assert!(err.contains("the key is wrong"), "{err}");
    assert!(
        !err.contains("not the passphrase"),
        "the key is shown: {err}"
    );
    std::fs::write(&server.config, config.clone()).unwrap();
    let err = refused_start(&server).await;
    assert!(err.contains("database.sqlite.key_path"), "{err}");
    write_key(&key_file, "a passphrase for the tailnet\n", 0o644);
    std::fs::write(&server.config, config.replace(plain_yaml, &keyed_yaml)).unwrap();
    let err = refused_start(&server).await;
    assert!(err.contains("chmod 600"), "{err}");

    // The right key again: the tailnet is whole.
    write_key(&key_file, "a passphrase for the tailnet\n", 0o600);
    server.restart().await;
    three
        .wait_sees_online(&["cipherhost-one", "cipherhost-two"])
        .await;
    assert_eq!(server.nodes().await.len(), 3);
}

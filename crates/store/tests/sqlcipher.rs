#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! SQLite encrypted at rest (SQLCipher, cargo feature `sqlcipher`): what is
//! written cannot be read from the files without the key, the wrong key or
//! no key is refused with a message saying so, and an unencrypted database
//! converts. `cargo test -p headway-store --features sqlcipher --test sqlcipher`
#![cfg(feature = "sqlcipher")]

use std::path::Path;

use chrono::{TimeZone, Utc};
use headway_state::model::User;
use headway_state::store::Store;
use headway_store::SqlStore;
use headway_store::sqlite::{self, SqliteKey, SqliteOptions};

/// A string that must not be found in the files on disk.
const MARKER: &str = "marker-e-mail-7f3a91@example.com";

fn user(name: &str) -> User {
    User {
        id: 0,
        name: name.into(),
        display_name: "Marker User".into(),
        email: MARKER.into(),
        provider: "".into(),
        provider_id: None,
        profile_pic_url: "".into(),
        created_at: Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap(),
    }
}

fn keyed(path: &Path, key: Option<&str>) -> SqliteOptions {
    SqliteOptions {
        key: key.map(SqliteKey::new),
        ..SqliteOptions::new(path)
    }
}

async fn add_user(store: &SqlStore, name: &str) {
    let mut tx = store.begin().await.unwrap();
    tx.insert_user(&user(name)).await.unwrap();
    tx.commit().await.unwrap();
}

/// The database file and its write-ahead log, as bytes.
fn on_disk(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    if let Ok(wal) = std::fs::read(format!("{}-wal", path.display())) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn open_error(options: &SqliteOptions) -> String {
    SqlStore::open_sqlite_with(options)
        .await
        .unwrap_err()
        .to_string()
}

/// Named as the end-to-end module is, so one test filter (`data_at_rest::`)
/// selects both in `scripts/test`.
mod data_at_rest {
    use super::*;

    #[tokio::test]
    async fn the_file_is_unreadable_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/headway.sqlite");
        let passphrase = "correct horse battery staple";
        let store = SqlStore::open_sqlite_with(&keyed(&path, Some(passphrase)))
            .await
            .unwrap();
        add_user(&store, "alice").await;
        // Read while the write-ahead log still holds the row, then after close.
        assert!(!contains(&on_disk(&path), MARKER));
        store.close().await;
        let bytes = on_disk(&path);
        assert!(!contains(&bytes, MARKER));
        assert!(!contains(&bytes, "alice@"));
        assert_ne!(&bytes[..16], b"SQLite format 3\0", "the header is in clear");
        // A plain database written the same way shows it, so the check can fail.
        let plain = dir.path().join("plain.sqlite");
        let store = SqlStore::open_sqlite(&plain).await.unwrap();
        add_user(&store, "alice").await;
        store.close().await;
        let bytes = on_disk(&plain);
        assert!(contains(&bytes, MARKER));
        assert_eq!(&bytes[..16], b"SQLite format 3\0");

        // No key, a wrong key: refused, and the message says which way round.
        let err = open_error(&keyed(&path, None)).await;
        assert!(err.contains("is not readable as SQLite"), "{err}");
        assert!(err.contains("database.sqlite.key_path"), "{err}");
        let err = open_error(&keyed(&path, Some("correct horse battery stapler"))).await;
        assert!(err.contains("the key is wrong"), "{err}");
        assert!(
            !err.contains("correct horse"),
            "the key is in the message: {err}"
        );
        // A key for a file that is not encrypted.
        let err = open_error(&keyed(&plain, Some(passphrase))).await;
        assert!(err.contains("the file is not encrypted"), "{err}");

        // The right key: everything is there, the migrations re-run cleanly,
        // and the file is still its owner's alone.
        let store = SqlStore::open_sqlite_with(&keyed(&path, Some(passphrase)))
            .await
            .unwrap();
        let snapshot = store.load().await.unwrap();
        assert_eq!(snapshot.users.len(), 1);
        assert_eq!(snapshot.users[0].email, MARKER);
        store.close().await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[tokio::test]
    async fn a_raw_hex_key_works_and_a_passphrase_of_the_same_text_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headway.sqlite");
        let hex = "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c";
        let store = SqlStore::open_sqlite_with(&keyed(&path, Some(hex)))
            .await
            .unwrap();
        add_user(&store, "bob").await;
        store.close().await;
        assert!(!contains(&on_disk(&path), MARKER));
        let store = SqlStore::open_sqlite_with(&keyed(&path, Some(&hex.to_uppercase())))
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().users.len(), 1);
        store.close().await;
        // One digit fewer is a passphrase, not the key.
        let err = open_error(&keyed(&path, Some(&hex[1..]))).await;
        assert!(err.contains("the key is wrong"), "{err}");
    }

    #[tokio::test]
    async fn an_unencrypted_database_exports_to_an_encrypted_copy() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("headway.sqlite");
        let store = SqlStore::open_sqlite(&plain).await.unwrap();
        add_user(&store, "carol").await;
        add_user(&store, "dave").await;
        store.close().await;

        let copy = dir.path().join("headway.encrypting");
        let key = SqliteKey::new("export passphrase");
        sqlite::export_encrypted(&plain, &copy, &key).await.unwrap();
        assert!(!contains(&on_disk(&copy), MARKER));
        let store = SqlStore::open_sqlite_with(&keyed(&copy, Some("export passphrase")))
            .await
            .unwrap();
        let users = store.load().await.unwrap().users;
        let mut names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["carol", "dave"]);
        store.close().await;
    }
}

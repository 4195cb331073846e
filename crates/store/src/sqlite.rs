//! How a SQLite database is opened: journal settings from the config, and
//! SQLCipher encryption at rest when a key is given (`database.sqlite.key`).
//!
//! SQLCipher comes with the cargo feature `sqlcipher` (SQLite built as
//! SQLCipher, linked with the system's libcrypto). A build without it
//! refuses a key: plain SQLite ignores `PRAGMA key` and would write the
//! file unencrypted. With the feature, [`verify_cipher`] checks on every
//! open that SQLCipher is really what reads the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use headway_state::store::StoreError;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// Whether this build can encrypt SQLite databases.
pub const SQLCIPHER: bool = cfg!(feature = "sqlcipher");

/// A SQLCipher key: a passphrase (stretched by SQLCipher's PBKDF2), or 64
/// hex digits taken as the raw 256-bit key (no derivation: faster opens).
/// Its `Debug` is redacted.
#[derive(Clone)]
pub struct SqliteKey {
    /// What SQLCipher is handed: the passphrase, or `x'<hex>'`.
    material: String,
}

impl SqliteKey {
    pub fn new(secret: &str) -> Self {
        let secret = secret.trim();
        let material = if secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!("x'{secret}'")
        } else {
            secret.to_string()
        };
        Self { material }
    }

    /// The key as the value of `PRAGMA key = ...`: a quoted SQL string.
    fn pragma_value(&self) -> String {
        format!("'{}'", self.material.replace('\'', "''"))
    }

    /// The key as a bound parameter (`ATTACH ... KEY $2`).
    pub(crate) fn material(&self) -> &str {
        &self.material
    }
}

impl fmt::Debug for SqliteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteKey(<redacted>)")
    }
}

/// `database.sqlite.*`: where the file is and how it is kept.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    /// Write-ahead logging (else a rollback journal).
    pub write_ahead_log: bool,
    /// WAL frames before an automatic checkpoint; 0 disables.
    pub wal_autocheckpoint: u32,
    pub key: Option<SqliteKey>,
}

impl SqliteOptions {
    /// The defaults: WAL, checkpoints every 1000 frames, no encryption.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            write_ahead_log: true,
            wal_autocheckpoint: 1000,
            key: None,
        }
    }

    /// Options for one connection to the file (the pool's, or the offline
    /// commands'): the key first, as SQLCipher requires.
    pub fn connect_options(&self) -> Result<SqliteConnectOptions, StoreError> {
        let journal = if self.write_ahead_log {
            SqliteJournalMode::Wal
        } else {
            SqliteJournalMode::Delete
        };
        let options = keyed(&self.path, self.key.as_ref())?
            .journal_mode(journal)
            .pragma("wal_autocheckpoint", self.wal_autocheckpoint.to_string())
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Ok(options)
    }
}

/// Connect options for `path` with nothing but the key set (a backup, a
/// file to check): refuses a key this build cannot use.
pub fn keyed(path: &Path, key: Option<&SqliteKey>) -> Result<SqliteConnectOptions, StoreError> {
    let options = SqliteConnectOptions::new().filename(path);
    let Some(key) = key else {
        return Ok(options);
    };
    if !SQLCIPHER {
        return Err(StoreError::Database(format!(
            "database.sqlite.key is set, but this headway was built without SQLCipher and would write {} unencrypted: \
             build it with `cargo build --release --features sqlcipher` (needs libssl-dev), or remove the key",
            path.display()
        )));
    }
    // The key is set by a statement, and sqlx logs statements (at debug
    // level, or when slow): not on a connection that carries a key.
    Ok(options
        .pragma("key", key.pragma_value())
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, Duration::MAX))
}

/// After opening with a key: the file is read by SQLCipher (plain SQLite
/// accepts `PRAGMA key` and ignores it).
pub async fn verify_cipher(
    conn: &mut sqlx::SqliteConnection,
    key: Option<&SqliteKey>,
    path: &Path,
) -> Result<(), StoreError> {
    if key.is_none() {
        return Ok(());
    }
    let version: Option<String> = sqlx::query_scalar("PRAGMA cipher_version")
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| explain_open_error(e, path, true))?;
    match version {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err(StoreError::Database(format!(
            "{} was opened by plain SQLite, which ignores database.sqlite.key: this build's SQLite is not SQLCipher",
            path.display()
        ))),
    }
}

/// SQLite's "file is not a database" (SQLITE_NOTADB) is what a wrong key,
/// a missing key or a key for a plain file all look like: say which.
pub fn explain_open_error(e: sqlx::Error, path: &Path, keyed: bool) -> StoreError {
    let not_a_database =
        matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("26"));
    let message = match (not_a_database, keyed) {
        (true, true) => format!(
            "cannot open {} with database.sqlite.key: the key is wrong, or the file is not encrypted \
             (encrypt an existing database with `headway encrypt`)",
            path.display()
        ),
        (true, false) => format!(
            "{} is not readable as SQLite: if it is encrypted, set database.sqlite.key_path to its key \
             (and run a headway built with `--features sqlcipher`)",
            path.display()
        ),
        (false, _) => format!("opening SQLite database {}: {e}", path.display()),
    };
    StoreError::Database(message)
}

/// Writes an encrypted copy of the unencrypted database `from` to the new
/// file `to` (SQLCipher's `sqlcipher_export`, in one read transaction).
pub async fn export_encrypted(from: &Path, to: &Path, key: &SqliteKey) -> Result<(), StoreError> {
    use sqlx::Connection;
    if !SQLCIPHER {
        return Err(StoreError::Database(
            "this headway was built without SQLCipher: build it with `cargo build --release --features sqlcipher`".into(),
        ));
    }
    let fail = |what: &str, e: sqlx::Error| {
        StoreError::Database(format!(
            "{what} ({} -> {}): {e}",
            from.display(),
            to.display()
        ))
    };
    if to.exists() {
        return Err(StoreError::Database(format!(
            "{} exists: the encrypted copy goes to a new file",
            to.display()
        )));
    }
    // Created here so it is private from its first byte (ATTACH could not
    // create it anyway: the connection opens files without SQLITE_OPEN_CREATE).
    crate::create_private_file(to)?;
    let options = keyed(from, None)?
        .busy_timeout(Duration::from_secs(30))
        .log_statements(log::LevelFilter::Off);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| explain_open_error(e, from, false))?;
    sqlx::query("ATTACH DATABASE $1 AS encrypted KEY $2")
        .bind(to.display().to_string())
        .bind(key.material())
        .execute(&mut conn)
        .await
        .map_err(|e| fail("creating the encrypted copy", e))?;
    let mut tx = conn.begin().await.map_err(|e| fail("exporting", e))?;
    sqlx::query("SELECT sqlcipher_export('encrypted')")
        .execute(&mut *tx)
        .await
        .map_err(|e| fail("exporting", e))?;
    tx.commit().await.map_err(|e| fail("exporting", e))?;
    sqlx::query("DETACH DATABASE encrypted")
        .execute(&mut conn)
        .await
        .map_err(|e| fail("closing the encrypted copy", e))?;
    conn.close().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_and_raw_keys_recognised() {
        let pass = SqliteKey::new(" it's a passphrase \n");
        assert_eq!(pass.pragma_value(), "'it''s a passphrase'");
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        assert_eq!(SqliteKey::new(hex).material(), format!("x'{hex}'"));
        // One digit short is a passphrase.
        assert_eq!(SqliteKey::new(&hex[1..]).material(), &hex[1..]);
        assert_eq!(format!("{pass:?}"), "SqliteKey(<redacted>)");
    }

    #[test]
    fn a_build_without_sqlcipher_refuses_a_key() {
        let result = keyed(Path::new("/tmp/x.sqlite"), Some(&SqliteKey::new("k")));
        if SQLCIPHER {
            assert!(result.is_ok());
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("--features sqlcipher"), "{err}");
        }
    }
}

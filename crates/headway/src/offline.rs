//! The commands that work on databases directly rather than through the
//! server: `import headscale`, `backup`, `restore` and `encrypt`. Everything
//! else goes through the running server.

#[cfg(feature = "server")]
pub use with_server::*;
#[cfg(not(feature = "server"))]
pub use without_server::*;

#[cfg(not(feature = "server"))]
mod without_server {
    use crate::cli::{BackupArgs, ImportHeadscale, RestoreArgs};
    use crate::output::Output;
    use headway_config::Config;

    fn refuse() -> anyhow::Result<()> {
        anyhow::bail!(
            "this headway binary was built without the server (cargo feature `server`), which import, backup, restore and encrypt need"
        )
    }
    pub async fn encrypt(_: Output, _: &Config) -> anyhow::Result<()> {
        refuse()
    }
    pub async fn import_headscale(
        _: Output,
        _: &Config,
        _: &ImportHeadscale,
    ) -> anyhow::Result<()> {
        refuse()
    }
    pub async fn backup(_: Output, _: &Config, _: &BackupArgs) -> anyhow::Result<()> {
        refuse()
    }
    pub async fn restore(_: Output, _: &Config, _: &RestoreArgs) -> anyhow::Result<()> {
        refuse()
    }
}

#[cfg(feature = "server")]
mod with_server {
    use std::path::{Path, PathBuf};

    use anyhow::{Context, bail};
    use headway_config::{Config, DatabaseBackend, Env, Overrides};
    use headway_store::SqlStore;
    use headway_store::import;
    use headway_store::sqlite::{self, SqliteKey, SqliteOptions};
    use sqlx::Connection;

    use crate::cli::{BackupArgs, ImportHeadscale, RestoreArgs};
    use crate::output::Output;

    /// `headway import headscale`: headscale's database into this server's
    /// (empty) database.
    pub async fn import_headscale(
        out: Output,
        config: &Config,
        args: &ImportHeadscale,
    ) -> anyhow::Result<()> {
        let env = Env::from_process();
        let headscale = match &args.headscale_config {
            Some(path) => Some(
                headway_config::load(Some(path), &env, &Overrides::new())
                    .with_context(|| format!("headscale configuration {}", path.display()))?
                    .config,
            ),
            None => None,
        };
        let from = match (&args.from, &headscale) {
            (Some(from), _) => from.clone(),
            (None, Some(hs)) => database_url(hs),
            (None, None) => bail!(
                "say which headscale database to read: --from <db.sqlite or postgres:// URL>, or --headscale-config <headscale's config.yaml>"
            ),
        };
        let source = import::open_source(&from).await?;
        let raw = import::read(&source).await?;
        let now = headway_state::clock::Clock::now(&headway_state::clock::SystemClock);
        let plan = import::convert(&raw, now)?;
        let described = import::describe_source(&from);
        let target = open_sql_store(config).await?;
        let target_name = headway_state::store::Store::describe(&target);
        let mut text = format!("from {described}\ninto {target_name}\n{plan}");
        if let Some(hs) = &headscale {
            text.push_str(&format!(
                "clients keep working only with headscale's Noise key: set noise.private_key_path: {} in Headway's config\n",
                hs.noise.private_key_path.display()
            ));
        }
        if args.dry_run {
            text.push_str("dry run: nothing written\n");
        } else {
            target.import(&plan).await?;
            text.push_str("imported\n");
        }
        target.close().await;
        let summary = serde_json::json!({
            "from": described,
            "into": target_name,
            "dryRun": args.dry_run,
            "users": plan.users.len(),
            "nodes": plan.nodes.len(),
            "preAuthKeys": plan.preauth_keys.len(),
            "apiKeys": plan.api_keys.len(),
            "policy": plan.policy.is_some(),
            "warnings": plan.warnings,
        });
        out.print(&summary, || text)
    }

    /// A headscale config's database as something [`import::open_source`] opens.
    fn database_url(config: &Config) -> String {
        match &config.database.backend {
            DatabaseBackend::Sqlite(s) => s.path.display().to_string(),
            DatabaseBackend::Postgres(p) => {
                let mut u = format!("postgres://{}", p.user);
                if let Some(pass) = &p.pass {
                    u.push(':');
                    u.push_str(&urlencode(pass.expose()));
                }
                u.push_str(&format!(
                    "@{}:{}/{}?sslmode={}",
                    p.host,
                    p.port,
                    p.name,
                    p.ssl.as_str()
                ));
                u
            }
        }
    }

    fn urlencode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    async fn open_sql_store(config: &Config) -> anyhow::Result<SqlStore> {
        headway_server::open_sql_store(config).await
    }

    /// `database.sqlite.*`, for the commands that only work on SQLite.
    fn sqlite_config(config: &Config, what: &str) -> anyhow::Result<SqliteOptions> {
        match &config.database.backend {
            DatabaseBackend::Sqlite(s) => Ok(headway_server::sqlite_options(s)),
            DatabaseBackend::Postgres(_) => bail!(
                "`headway {what}` works on SQLite databases; for PostgreSQL use pg_dump and pg_restore (see docs/ha.md, \"Backups\")"
            ),
        }
    }

    /// `headway backup FILE`: a consistent copy of the SQLite database, taken
    /// while the server runs (SQLite's `VACUUM INTO` reads one snapshot).
    /// With a key, the copy is encrypted with the same key.
    pub async fn backup(out: Output, config: &Config, args: &BackupArgs) -> anyhow::Result<()> {
        let sqlite = sqlite_config(config, "backup")?;
        let (db, key) = (sqlite.path.clone(), sqlite.key.as_ref());
        if !db.is_file() {
            bail!(
                "no database at {} (database.sqlite.path): nothing to back up",
                db.display()
            );
        }
        if args.file.exists() {
            bail!(
                "{} exists; give a new file name (a backup never overwrites)",
                args.file.display()
            );
        }
        create_private_file(&args.file)?;
        // VACUUM INTO wants to create the file itself.
        std::fs::remove_file(&args.file).ok();
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlite::keyed(&db, key)?.busy_timeout(std::time::Duration::from_secs(30)),
        )
        .await
        .map_err(|e| sqlite::explain_open_error(e, &db, key.is_some()))?;
        sqlite::verify_cipher(&mut conn, key, &db).await?;
        sqlx::query("VACUUM INTO $1")
            .bind(args.file.display().to_string())
            .execute(&mut conn)
            .await
            .with_context(|| format!("copying {} to {}", db.display(), args.file.display()))?;
        conn.close().await.ok();
        restrict(&args.file)?;
        let counts = check_backup(&args.file, key).await?;
        let text = format!(
            "backed up {} to {} ({})\n",
            db.display(),
            args.file.display(),
            counts.describe()
        );
        out.print(
            &serde_json::json!({"from": db, "to": args.file, "users": counts.users, "nodes": counts.nodes}),
            || text,
        )
    }

    /// `headway restore FILE`: puts a backup in place of the SQLite database.
    /// The server must be stopped; the database it replaces is kept beside it.
    pub async fn restore(out: Output, config: &Config, args: &RestoreArgs) -> anyhow::Result<()> {
        let sqlite = sqlite_config(config, "restore")?;
        let db = sqlite.path.clone();
        refuse_while_serving(config, "restore").await?;
        let counts = check_backup(&args.file, sqlite.key.as_ref())
            .await
            .with_context(|| format!("{} is not a Headway backup", args.file.display()))?;
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = db.with_extension("restoring");
        std::fs::remove_file(&tmp).ok();
        create_private_file(&tmp)?;
        std::fs::copy(&args.file, &tmp)
            .with_context(|| format!("copying {} to {}", args.file.display(), tmp.display()))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        let mut kept = None;
        if db.exists() {
            let stamp = headway_state::clock::Clock::now(&headway_state::clock::SystemClock)
                .format("%Y%m%dT%H%M%SZ");
            let aside = PathBuf::from(format!("{}.pre-restore-{stamp}", db.display()));
            // The write-ahead log and its index belong to the database they
            // came with: they move aside with it.
            for suffix in ["", "-wal", "-shm"] {
                let from = PathBuf::from(format!("{}{suffix}", db.display()));
                if from.exists() {
                    let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                    std::fs::rename(&from, &to).with_context(|| {
                        format!("moving {} aside to {}", from.display(), to.display())
                    })?;
                }
            }
            kept = Some(aside);
        }
        std::fs::rename(&tmp, &db)
            .with_context(|| format!("moving {} to {}", tmp.display(), db.display()))?;
        let mut text = format!(
            "restored {} from {} ({})\n",
            db.display(),
            args.file.display(),
            counts.describe()
        );
        if let Some(k) = &kept {
            text.push_str(&format!("the database it replaced is at {}\n", k.display()));
        }
        out.print(
            &serde_json::json!({"database": db, "from": args.file, "previous": kept, "users": counts.users, "nodes": counts.nodes}),
            || text,
        )
    }

    /// The offline commands that replace the database file refuse while a
    /// server has it open.
    async fn refuse_while_serving(config: &Config, what: &str) -> anyhow::Result<()> {
        if tokio::net::UnixStream::connect(&config.unix_socket)
            .await
            .is_ok()
        {
            bail!(
                "a server is running (it answers on {}): stop it first, then {what}",
                config.unix_socket.display()
            );
        }
        Ok(())
    }

    /// `headway encrypt`: the unencrypted SQLite database rewritten encrypted
    /// with `database.sqlite.key` (SQLCipher). The server must be stopped.
    /// The encrypted copy is checked (it opens with the key, is intact, and
    /// holds as many users and nodes) before it replaces the original, whose
    /// file is then deleted.
    pub async fn encrypt(out: Output, config: &Config) -> anyhow::Result<()> {
        let sqlite = sqlite_config(config, "encrypt")?;
        let db = sqlite.path.clone();
        let Some(key) = sqlite.key.as_ref() else {
            bail!(
                "no key to encrypt with: set database.sqlite.key_path to a file holding the key (a passphrase, or 64 hex digits), then run `headway encrypt` again"
            );
        };
        if !db.is_file() {
            bail!(
                "no database at {} (database.sqlite.path): nothing to encrypt; a new database is created encrypted when the key is set",
                db.display()
            );
        }
        refuse_while_serving(config, "encrypt").await?;
        if check_backup(&db, Some(key)).await.is_ok() {
            bail!("{} is already encrypted with this key", db.display());
        }
        let before = check_backup(&db, None).await.with_context(|| {
            format!(
                "{} does not open without a key either: is it encrypted with another key?",
                db.display()
            )
        })?;
        let tmp = db.with_extension("encrypting");
        std::fs::remove_file(&tmp).ok();
        sqlite::export_encrypted(&db, &tmp, key).await?;
        restrict(&tmp)?;
        let after = check_backup(&tmp, Some(key))
            .await
            .with_context(|| format!("checking the encrypted copy {}", tmp.display()))?;
        if (after.users, after.nodes) != (before.users, before.nodes) {
            bail!(
                "the encrypted copy {} holds {} but the database holds {}: nothing replaced",
                tmp.display(),
                after.describe(),
                before.describe()
            );
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        // The write-ahead log and its index belong to the unencrypted file.
        for suffix in ["-wal", "-shm"] {
            let stale = PathBuf::from(format!("{}{suffix}", db.display()));
            if stale.exists() {
                std::fs::remove_file(&stale)
                    .with_context(|| format!("removing {}", stale.display()))?;
            }
        }
        std::fs::rename(&tmp, &db)
            .with_context(|| format!("moving {} to {}", tmp.display(), db.display()))?;
        let text = format!(
            "encrypted {} ({}); the unencrypted file is deleted, but its blocks may remain on the disk until overwritten\n",
            db.display(),
            after.describe()
        );
        out.print(
            &serde_json::json!({"database": db, "encrypted": true, "users": after.users, "nodes": after.nodes}),
            || text,
        )
    }

    struct Counts {
        users: i64,
        nodes: i64,
    }

    impl Counts {
        fn describe(&self) -> String {
            format!("{} users, {} nodes", self.users, self.nodes)
        }
    }

    /// Opens a backup read-only, with the database's key if it has one:
    /// intact, and a Headway database.
    async fn check_backup(path: &Path, key: Option<&SqliteKey>) -> anyhow::Result<Counts> {
        if !path.is_file() {
            bail!("no file at {}", path.display());
        }
        let mut c =
            sqlx::SqliteConnection::connect_with(&sqlite::keyed(path, key)?.read_only(true))
                .await
                .map_err(|e| sqlite::explain_open_error(e, path, key.is_some()))?;
        sqlite::verify_cipher(&mut c, key, path).await?;
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut c)
            .await
            .with_context(|| format!("checking {}", path.display()))?;
        if integrity != "ok" {
            bail!("{} is damaged: {integrity}", path.display());
        }
        let migrated: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_sqlx_migrations', 'users', 'nodes')",
        )
        .fetch_one(&mut c)
        .await?;
        if migrated != 3 {
            bail!(
                "{} is an SQLite file but not a Headway database",
                path.display()
            );
        }
        let users = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut c)
            .await?;
        let nodes = sqlx::query_scalar("SELECT COUNT(*) FROM nodes")
            .fetch_one(&mut c)
            .await?;
        c.close().await.ok();
        Ok(Counts { users, nodes })
    }

    #[cfg(unix)]
    fn create_private_file(path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(|_| ())
            .with_context(|| format!("creating {}", path.display()))
    }

    #[cfg(unix)]
    fn restrict(path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))
    }
}

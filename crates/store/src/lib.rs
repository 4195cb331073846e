//! Persistence of the domain in SQL: SQLite by default, PostgreSQL when one
//! server is not enough. One schema, one set of statements (`$n` parameters
//! work on both), migrations per backend run at start-up.
//!
//! This crate holds no logic: it reads and writes the records the service
//! layer (`headway-state`) decides on, each change in one transaction.

mod audit;
pub mod cluster;
pub mod import;
mod rows;
pub mod sqlite;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use cluster::{ChangeNotice, Leadership, PgCluster, Touched};
use headway_state::audit::{AuditEntry, AuditFilter};
use headway_state::model::*;
use headway_state::store::{Snapshot, Store, StoreError, StoreTx};
pub use sqlite::{SqliteKey, SqliteOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Where PostgreSQL lives (`database.postgres.*`).
#[derive(Clone)]
pub struct PostgresOptions {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    /// `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub ssl_mode: String,
    /// The CA certificate (PEM file) the server's certificate must chain to
    /// for `verify-ca` / `verify-full`, besides the public CAs (webpki roots).
    pub ssl_root_cert: Option<std::path::PathBuf>,
    pub max_connections: u32,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .finish()
    }
}

/// A SQL database holding a tailnet.
#[derive(Debug, Clone)]
pub enum SqlStore {
    Sqlite {
        pool: SqlitePool,
        path: String,
    },
    Postgres {
        pool: PgPool,
        describe: String,
        /// With several replicas: this replica's id, named in the change
        /// notices its transactions send.
        origin: Option<String>,
    },
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_string())
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::Conflict(d.message().to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

impl SqlStore {
    /// Opens (creating if needed) a SQLite database with the default
    /// settings (WAL, no encryption) and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::open_sqlite_with(&SqliteOptions::new(path)).await
    }

    /// Opens (creating if needed) a SQLite database and migrates it.
    /// A new database file is created readable by its owner only, in a
    /// directory only its owner can enter: it holds keys and user data.
    /// With a key the file is encrypted (SQLCipher; see [`sqlite`]).
    pub async fn open_sqlite_with(o: &SqliteOptions) -> Result<Self, StoreError> {
        let path = o.path.as_path();
        let options = o.connect_options()?.create_if_missing(true);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        create_private_file(path)?;
        let key = o.key.as_ref();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| sqlite::explain_open_error(e, path, key.is_some()))?;
        let mut conn = pool.acquire().await.map_err(db_err)?;
        sqlite::verify_cipher(&mut conn, key, path).await?;
        drop(conn);
        SQLITE_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(format!("{} ({})", e, path.display())))?;
        Ok(SqlStore::Sqlite {
            pool,
            path: path.display().to_string(),
        })
    }

    /// Connects to PostgreSQL and migrates the database (under the
    /// migrator's advisory lock, so replicas starting together are safe).
    pub async fn open_postgres(o: &PostgresOptions) -> Result<Self, StoreError> {
        let ssl = PgSslMode::from_str(&o.ssl_mode).map_err(|_| {
            StoreError::Database(format!(
                "database.postgres.ssl: unknown mode {:?}",
                o.ssl_mode
            ))
        })?;
        let mut options = PgConnectOptions::new()
            .host(&o.host)
            .port(o.port)
            .database(&o.database)
            .username(&o.user)
            .ssl_mode(ssl);
        if let Some(p) = &o.password {
            options = options.password(p);
        }
        if let Some(ca) = &o.ssl_root_cert {
            if !ca.is_file() {
                return Err(StoreError::Database(format!(
                    "database.postgres.ssl_root_cert: {} is not a readable file; give the PEM certificate of the CA that signed the database server's certificate",
                    ca.display()
                )));
            }
            options = options.ssl_root_cert(ca);
        }
        let describe = format!("postgres://{}@{}:{}/{}", o.user, o.host, o.port, o.database);
        let pool = PgPoolOptions::new()
            .max_connections(o.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Database(format!("connecting to {describe}: {e}")))?;
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(format!("{e} ({describe})")))?;
        Ok(SqlStore::Postgres {
            pool,
            describe,
            origin: None,
        })
    }

    /// Joins the replicas serving this database as `replica`: from now on
    /// every transaction announces the rows it wrote on the change channel.
    /// `None` on SQLite (one server only).
    pub fn join_cluster(&mut self, replica: String) -> Option<PgCluster> {
        match self {
            SqlStore::Sqlite { .. } => None,
            SqlStore::Postgres { pool, origin, .. } => {
                *origin = Some(replica.clone());
                Some(PgCluster::new(pool.clone(), replica))
            }
        }
    }

    pub async fn close(&self) {
        match self {
            SqlStore::Sqlite { pool, .. } => pool.close().await,
            SqlStore::Postgres { pool, .. } => pool.close().await,
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            StoreError::Database(format!("creating data directory {}: {e}", dir.display()))
        })
}

#[cfg(unix)]
pub(crate) fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .map_err(|e| {
            StoreError::Database(format!("creating database file {}: {e}", path.display()))
        })
}

impl SqlStore {
    /// Writes an import plan (see [`import`]) into this database, ids kept,
    /// in one transaction: all of it or nothing. The database must hold no
    /// users, nodes, keys or policy yet.
    pub async fn import(&self, plan: &import::Plan) -> Result<(), import::ImportError> {
        use import::ImportError;
        let write = |e: StoreError| ImportError::Write(e.to_string());
        for table in ["users", "nodes", "preauth_keys", "api_keys", "policies"] {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let n: i64 = match self {
                SqlStore::Sqlite { pool, .. } => sqlx::query_scalar(&sql).fetch_one(pool).await,
                SqlStore::Postgres { pool, .. } => sqlx::query_scalar(&sql).fetch_one(pool).await,
            }
            .map_err(|e| write(db_err(e)))?;
            if n > 0 {
                return Err(ImportError::TargetNotEmpty(format!(
                    "{} has {n} rows in {table}",
                    self.describe()
                )));
            }
        }
        let mut tx = match self {
            SqlStore::Sqlite { pool, .. } => {
                SqlTx::Sqlite(pool.begin().await.map_err(|e| write(db_err(e)))?)
            }
            SqlStore::Postgres { pool, .. } => {
                // An import is announced to nobody: replicas start after it.
                SqlTx::Postgres(pool.begin().await.map_err(|e| write(db_err(e)))?, None)
            }
        };
        let mismatch = |table: &str, want: i64, got: i64| {
            ImportError::Write(format!(
                "{table}: the database gave id {got} where {want} was asked; nothing was written"
            ))
        };
        let mut users: Vec<_> = plan.users.iter().collect();
        users.sort_by_key(|u| u.id);
        for u in users {
            claim_id(&mut tx, "users", u.id).await.map_err(write)?;
            let got = tx.insert_user(u).await.map_err(write)?;
            if got != u.id {
                return Err(mismatch("users", u.id, got));
            }
        }
        let mut keys: Vec<_> = plan.preauth_keys.iter().collect();
        keys.sort_by_key(|k| k.id);
        for k in keys {
            claim_id(&mut tx, "preauth_keys", k.id)
                .await
                .map_err(write)?;
            let got = tx.insert_preauth_key(k).await.map_err(write)?;
            if got != k.id {
                return Err(mismatch("preauth_keys", k.id, got));
            }
        }
        let mut nodes: Vec<_> = plan.nodes.iter().collect();
        nodes.sort_by_key(|n| n.id);
        for n in nodes {
            claim_id(&mut tx, "nodes", n.id).await.map_err(write)?;
            let got = tx.insert_node(n).await.map_err(write)?;
            if got != n.id {
                return Err(mismatch("nodes", n.id, got));
            }
        }
        let mut api_keys: Vec<_> = plan.api_keys.iter().collect();
        api_keys.sort_by_key(|k| k.id);
        for k in api_keys {
            claim_id(&mut tx, "api_keys", k.id).await.map_err(write)?;
            let got = tx.insert_api_key(k).await.map_err(write)?;
            if got != k.id {
                return Err(mismatch("api_keys", k.id, got));
            }
        }
        if let Some(p) = &plan.policy {
            tx.set_policy(p).await.map_err(write)?;
        }
        if let SqlTx::Postgres(c, _) = &mut tx {
            // Later inserts continue after the highest imported id.
            for table in ["users", "preauth_keys", "nodes", "api_keys"] {
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                );
                sqlx::query(&sql)
                    .execute(&mut **c)
                    .await
                    .map_err(|e| write(db_err(e)))?;
            }
        }
        Box::new(tx).commit().await.map_err(write)
    }
}

/// Makes the next id the database hands out for `table` be `id` (rows are
/// inserted in ascending id order into an empty table, so it is free).
async fn claim_id(tx: &mut SqlTx, table: &str, id: i64) -> Result<(), StoreError> {
    match tx {
        SqlTx::Sqlite(c) => {
            let r = sqlx::query("UPDATE sqlite_sequence SET seq = $2 WHERE name = $1")
                .bind(table)
                .bind(id - 1)
                .execute(&mut **c)
                .await
                .map_err(db_err)?;
            if r.rows_affected() == 0 {
                sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ($1, $2)")
                    .bind(table)
                    .bind(id - 1)
                    .execute(&mut **c)
                    .await
                    .map_err(db_err)?;
            }
        }
        SqlTx::Postgres(c, _) => {
            sqlx::query("SELECT setval(pg_get_serial_sequence($1, 'id'), $2, false)")
                .bind(table)
                .bind(id)
                .execute(&mut **c)
                .await
                .map_err(db_err)?;
        }
    }
    Ok(())
}

/// One open transaction on either backend.
pub enum SqlTx {
    Sqlite(Transaction<'static, Sqlite>),
    /// With the rows written so far, announced at commit when the store
    /// has joined a cluster.
    Postgres(Transaction<'static, Postgres>, Option<Notice>),
}

/// What a PostgreSQL transaction will announce.
#[derive(Debug)]
pub struct Notice {
    origin: String,
    touched: Touched,
}

impl SqlTx {
    fn touched(&mut self) -> Option<&mut Touched> {
        match self {
            SqlTx::Postgres(_, Some(n)) => Some(&mut n.touched),
            _ => None,
        }
    }

    fn touch_node(&mut self, id: NodeId) {
        if let Some(t) = self.touched() {
            t.nodes.insert(id);
        }
    }

    fn touch_user(&mut self, id: UserId) {
        if let Some(t) = self.touched() {
            t.users.insert(id);
        }
    }

    fn touch_other(&mut self) {
        if let Some(t) = self.touched() {
            t.other = true;
        }
    }
}

/// Runs the same code against whichever backend: the statements are shared,
/// only the executor type differs.
macro_rules! on_tx {
    ($tx:expr, $f:ident($($arg:expr),*)) => {
        match $tx {
            SqlTx::Sqlite(c) => rows::sqlite::$f(&mut **c, $($arg),*).await,
            SqlTx::Postgres(c, _) => rows::pg::$f(&mut **c, $($arg),*).await,
        }
    };
}

macro_rules! on_pool {
    ($store:expr, |$p:ident, $m:ident| $body:expr) => {
        match $store {
            SqlStore::Sqlite { pool: $p, .. } => {
                use rows::sqlite as $m;
                $body
            }
            SqlStore::Postgres { pool: $p, .. } => {
                use rows::pg as $m;
                $body
            }
        }
    };
}

#[async_trait]
impl Store for SqlStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        on_pool!(self, |pool, m| {
            let users = sqlx::query(rows::SELECT_USERS)
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
            let nodes = sqlx::query(rows::SELECT_NODES)
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
            let keys = sqlx::query(rows::SELECT_KEYS)
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
            let policy = sqlx::query(rows::SELECT_POLICY)
                .fetch_optional(pool)
                .await
                .map_err(db_err)?;
            let api_keys = sqlx::query(rows::SELECT_API_KEYS)
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
            let oauth_clients = sqlx::query(rows::SELECT_OAUTH_CLIENTS)
                .fetch_all(pool)
                .await
                .map_err(db_err)?;
            Ok(Snapshot {
                users: users.iter().map(m::user).collect::<Result<_, _>>()?,
                nodes: nodes.iter().map(m::node).collect::<Result<_, _>>()?,
                preauth_keys: keys.iter().map(m::preauth_key).collect::<Result<_, _>>()?,
                policy: policy.as_ref().map(m::policy).transpose()?,
                api_keys: api_keys.iter().map(m::api_key).collect::<Result<_, _>>()?,
                oauth_clients: oauth_clients
                    .iter()
                    .map(m::oauth_client)
                    .collect::<Result<_, _>>()?,
            })
        })
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        Ok(Box::new(match self {
            SqlStore::Sqlite { pool, .. } => SqlTx::Sqlite(pool.begin().await.map_err(db_err)?),
            SqlStore::Postgres { pool, origin, .. } => SqlTx::Postgres(
                pool.begin().await.map_err(db_err)?,
                origin.as_ref().map(|o| Notice {
                    origin: o.clone(),
                    touched: Touched::default(),
                }),
            ),
        }))
    }

    fn describe(&self) -> String {
        match self {
            SqlStore::Sqlite { path, .. } => format!("sqlite:{path}"),
            SqlStore::Postgres { describe, .. } => describe.clone(),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            SqlStore::Sqlite { pool, .. } => sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(db_err),
            SqlStore::Postgres { pool, .. } => sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(db_err),
        }
    }

    async fn migrated(&self) -> Result<bool, StoreError> {
        // The highest version this build knows against the highest applied
        // successfully (sqlx's own bookkeeping table).
        const APPLIED: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
        let (known, applied) = match self {
            SqlStore::Sqlite { pool, .. } => (
                SQLITE_MIGRATIONS.iter().map(|m| m.version).max(),
                sqlx::query_scalar::<_, Option<i64>>(APPLIED)
                    .fetch_one(pool)
                    .await
                    .map_err(db_err)?,
            ),
            SqlStore::Postgres { pool, .. } => (
                POSTGRES_MIGRATIONS.iter().map(|m| m.version).max(),
                sqlx::query_scalar::<_, Option<i64>>(APPLIED)
                    .fetch_one(pool)
                    .await
                    .map_err(db_err)?,
            ),
        };
        Ok(applied >= known)
    }

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        match self {
            SqlStore::Sqlite { pool, .. } => audit::sqlite::insert(pool, entry).await,
            SqlStore::Postgres { pool, .. } => audit::pg::insert(pool, entry).await,
        }
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            SqlStore::Sqlite { pool, .. } => audit::sqlite::list(pool, filter).await,
            SqlStore::Postgres { pool, .. } => audit::pg::list(pool, filter).await,
        }
    }

    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        match self {
            SqlStore::Sqlite { pool, .. } => audit::sqlite::prune(pool, before).await,
            SqlStore::Postgres { pool, .. } => audit::pg::prune(pool, before).await,
        }
    }
}

#[async_trait]
impl StoreTx for SqlTx {
    async fn insert_user(&mut self, u: &User) -> Result<UserId, StoreError> {
        let id = on_tx!(self, insert_user(u))?;
        self.touch_user(id);
        Ok(id)
    }
    async fn update_user(&mut self, u: &User) -> Result<(), StoreError> {
        self.touch_user(u.id);
        on_tx!(self, update_user(u))
    }
    async fn delete_user(&mut self, id: UserId) -> Result<(), StoreError> {
        self.touch_user(id);
        on_tx!(self, delete("DELETE FROM users WHERE id = $1", id))
    }
    async fn insert_node(&mut self, n: &Node) -> Result<NodeId, StoreError> {
        let id = on_tx!(self, insert_node(n))?;
        self.touch_node(id);
        Ok(id)
    }
    async fn update_node(&mut self, n: &Node) -> Result<(), StoreError> {
        self.touch_node(n.id);
        on_tx!(self, update_node(n))
    }
    async fn update_node_soft(&mut self, n: &Node) -> Result<(), StoreError> {
        // Not announced: the replica holding the node's session publishes
        // its soft state as it changes.
        match self {
            SqlTx::Sqlite(c) => cluster::update_node_soft_sqlite(c, n).await,
            SqlTx::Postgres(c, _) => cluster::update_node_soft_pg(c, n).await,
        }
    }
    async fn delete_node(&mut self, id: NodeId) -> Result<(), StoreError> {
        self.touch_node(id);
        on_tx!(self, delete("DELETE FROM nodes WHERE id = $1", id))
    }
    async fn insert_preauth_key(&mut self, k: &PreAuthKey) -> Result<PreAuthKeyId, StoreError> {
        self.touch_other();
        on_tx!(self, insert_key(k))
    }
    async fn update_preauth_key(&mut self, k: &PreAuthKey) -> Result<(), StoreError> {
        self.touch_other();
        on_tx!(self, update_key(k))
    }
    async fn delete_preauth_key(&mut self, id: PreAuthKeyId) -> Result<(), StoreError> {
        self.touch_other();
        on_tx!(self, delete("DELETE FROM preauth_keys WHERE id = $1", id))
    }
    async fn set_policy(&mut self, p: &StoredPolicy) -> Result<(), StoreError> {
        self.touch_other();
        on_tx!(self, set_policy(p))
    }
    async fn insert_api_key(&mut self, k: &ApiKey) -> Result<ApiKeyId, StoreError> {
        self.touch_other();
        on_tx!(self, insert_api_key(k))
    }
    async fn update_api_key(&mut self, k: &ApiKey) -> Result<(), StoreError> {
        self.touch_other();
        on_tx!(self, update_api_key(k))
    }
    async fn delete_api_key(&mut self, id: ApiKeyId) -> Result<(), StoreError> {
        self.touch_other();
        on_tx!(self, delete("DELETE FROM api_keys WHERE id = $1", id))
    }
    async fn insert_oauth_client(&mut self, c: &OAuthClient) -> Result<OAuthClientId, StoreError> {
        self.touch_other();
        on_tx!(self, insert_oauth_client(c))
    }
    async fn delete_oauth_client(&mut self, id: OAuthClientId) -> Result<(), StoreError> {
        self.touch_other();
        on_tx!(self, delete("DELETE FROM oauth_clients WHERE id = $1", id))
    }
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        match *self {
            SqlTx::Sqlite(t) => t.commit().await.map_err(db_err),
            SqlTx::Postgres(mut t, notice) => {
                // In the transaction: the notice goes out if and only if
                // the change commits, and after it is visible.
                if let Some(n) = notice.filter(|n| !n.touched.is_empty()) {
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(cluster::CHANNEL)
                        .bind(cluster::rows_payload(&n.origin, &n.touched))
                        .execute(&mut *t)
                        .await
                        .map_err(db_err)?;
                }
                t.commit().await.map_err(db_err)
            }
        }
    }
}

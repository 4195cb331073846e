//! Migration from headscale: reads a headscale database (SQLite file or
//! PostgreSQL) and turns it into Headway's records, ids kept, so that the
//! clients registered there keep working once the server is swapped (with the
//! same Noise private key).
//!
//! Three steps, so that a dry run shows exactly what a real run writes:
//! [`read`] the source (columns as text, whatever the backend's types),
//! [`convert`] it (pure: every refusal and every lossy choice is named), and
//! [`SqlStore::import`](crate::SqlStore::import) writes the plan into an empty
//! Headway database in one transaction.
//!
//! The source is read as headscale lays it out in its published schema
//! (`users`, `nodes`, `pre_auth_keys`, `api_keys`, `policies`); columns that
//! older headscale versions lack are read as absent, never guessed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use headway_proto::tailcfg::Hostinfo;
use headway_state::keys::{self, SecretHash};
use headway_state::model::*;
use ipnet::IpNet;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

/// Why an import cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("opening the headscale database {what}: {why}")]
    Open { what: String, why: String },
    #[error("reading headscale's {table}: {why}")]
    Read { table: &'static str, why: String },
    #[error(
        "headscale's table {table} has no column {column}: this importer reads the schema of headscale 0.26 and later; let a newer headscale migrate the database first"
    )]
    Schema {
        table: &'static str,
        column: &'static str,
    },
    #[error("headscale's {table} row {id}: {why}")]
    Row {
        table: &'static str,
        id: i64,
        why: String,
    },
    #[error("the Headway database is not empty ({0}): import into a new database")]
    TargetNotEmpty(String),
    #[error("writing the Headway database: {0}")]
    Write(String),
}

/// An open headscale database.
pub enum Source {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Opens `from`: a `postgres://` (or `postgresql://`) URL, or the path of a
/// SQLite file, opened read-only.
pub async fn open_source(from: &str) -> Result<Source, ImportError> {
    let open_err = |why: String| ImportError::Open {
        what: describe_source(from),
        why,
    };
    if from.starts_with("postgres://") || from.starts_with("postgresql://") {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(from)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        return Ok(Source::Postgres(pool));
    }
    let path = Path::new(from);
    if !path.is_file() {
        return Err(open_err(
            "no such file; give the path of headscale's db.sqlite or a postgres:// URL".into(),
        ));
    }
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| open_err(e.to_string()))?;
    Ok(Source::Sqlite(pool))
}

/// The source named for messages, without a password.
pub fn describe_source(from: &str) -> String {
    match url::Url::parse(from) {
        Ok(mut u) if u.scheme().starts_with("postgres") => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        _ => from.to_string(),
    }
}

/// One row, every column as text (`None` for NULL or a column the source
/// does not have), the secret hash as bytes.
#[derive(Debug, Clone, Default)]
pub struct RawRow {
    pub cols: HashMap<&'static str, Option<String>>,
    pub hash: Option<Vec<u8>>,
}

impl RawRow {
    fn text(&self, c: &str) -> Option<&str> {
        self.cols
            .get(c)
            .and_then(|v| v.as_deref())
            .filter(|s| !s.is_empty())
    }
}

/// What was read from headscale.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub users: Vec<RawRow>,
    pub nodes: Vec<RawRow>,
    pub preauth_keys: Vec<RawRow>,
    pub api_keys: Vec<RawRow>,
    pub policy: Option<RawRow>,
}

struct Table {
    name: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
    hash: bool,
}

const USERS: Table = Table {
    name: "users",
    required: &["id", "name", "created_at"],
    optional: &[
        "display_name",
        "email",
        "provider_identifier",
        "provider",
        "profile_pic_url",
        "deleted_at",
    ],
    hash: false,
};
const NODES: Table = Table {
    name: "nodes",
    required: &[
        "id",
        "machine_key",
        "node_key",
        "hostname",
        "given_name",
        "user_id",
        "created_at",
    ],
    optional: &[
        "disco_key",
        "endpoints",
        "host_info",
        "ipv4",
        "ipv6",
        "register_method",
        "tags",
        "forced_tags",
        "auth_key_id",
        "last_seen",
        "expiry",
        "approved_routes",
        "updated_at",
        "deleted_at",
    ],
    hash: false,
};
const PREAUTH_KEYS: Table = Table {
    name: "pre_auth_keys",
    required: &[
        "id",
        "user_id",
        "reusable",
        "ephemeral",
        "used",
        "created_at",
    ],
    optional: &["key", "prefix", "tags", "expiration", "revoked"],
    hash: true,
};
const API_KEYS: Table = Table {
    name: "api_keys",
    required: &["id", "prefix", "created_at"],
    optional: &["expiration", "last_seen"],
    hash: true,
};
const POLICIES: Table = Table {
    name: "policies",
    required: &["id", "data"],
    optional: &["updated_at", "created_at", "deleted_at"],
    hash: false,
};

/// Reads everything the import needs from headscale's database.
pub async fn read(src: &Source) -> Result<Raw, ImportError> {
    let users = read_table(src, &USERS).await?;
    let nodes = read_table(src, &NODES).await?;
    let preauth_keys = read_table(src, &PREAUTH_KEYS).await?;
    let api_keys = if has_table(src, API_KEYS.name).await? {
        read_table(src, &API_KEYS).await?
    } else {
        Vec::new()
    };
    let policy = if has_table(src, POLICIES.name).await? {
        read_table(src, &POLICIES).await?.into_iter().last()
    } else {
        None
    };
    Ok(Raw {
        users: live(users),
        nodes: live(nodes),
        preauth_keys,
        api_keys,
        policy: policy.filter(|p| p.text("deleted_at").is_none()),
    })
}

/// Rows headscale soft-deleted are not imported.
fn live(rows: Vec<RawRow>) -> Vec<RawRow> {
    rows.into_iter()
        .filter(|r| r.text("deleted_at").is_none())
        .collect()
}

async fn has_table(src: &Source, table: &str) -> Result<bool, ImportError> {
    Ok(!columns(src, table).await?.is_empty())
}

async fn columns(src: &Source, table: &str) -> Result<HashSet<String>, ImportError> {
    let read_err = |e: sqlx::Error| ImportError::Read {
        table: "the schema",
        why: e.to_string(),
    };
    let names: Vec<String> = match src {
        Source::Sqlite(pool) => {
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(table)
                .fetch_all(pool)
                .await
                .map_err(read_err)?
        }
        Source::Postgres(pool) => sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .map_err(read_err)?,
    };
    Ok(names.into_iter().collect())
}

async fn read_table(src: &Source, t: &Table) -> Result<Vec<RawRow>, ImportError> {
    let present = columns(src, t.name).await?;
    if present.is_empty() {
        return Err(ImportError::Read {
            table: t.name,
            why: "no such table: is this a headscale database?".into(),
        });
    }
    for c in t.required {
        if !present.contains(*c) {
            return Err(ImportError::Schema {
                table: t.name,
                column: c,
            });
        }
    }
    let all: Vec<&'static str> = t.required.iter().chain(t.optional).copied().collect();
    let mut select: Vec<String> = all
        .iter()
        .map(|c| {
            if present.contains(*c) {
                format!("CAST({c} AS TEXT) AS {c}")
            } else {
                format!("CAST(NULL AS TEXT) AS {c}")
            }
        })
        .collect();
    let with_hash = t.hash && present.contains("hash");
    if with_hash {
        select.push(match src {
            Source::Sqlite(_) => "CAST(hash AS BLOB) AS hash".into(),
            Source::Postgres(_) => "hash".into(),
        });
    }
    let sql = format!("SELECT {} FROM {} ORDER BY id", select.join(", "), t.name);
    let read_err = |e: sqlx::Error| ImportError::Read {
        table: t.name,
        why: e.to_string(),
    };
    macro_rules! rows {
        ($pool:expr) => {{
            use sqlx::Row;
            let rows = sqlx::query(&sql).fetch_all($pool).await.map_err(read_err)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut row = RawRow::default();
                for c in &all {
                    row.cols
                        .insert(*c, r.try_get::<Option<String>, _>(*c).map_err(read_err)?);
                }
                if with_hash {
                    row.hash = r.try_get::<Option<Vec<u8>>, _>("hash").map_err(read_err)?;
                }
                out.push(row);
            }
            out
        }};
    }
    Ok(match src {
        Source::Sqlite(pool) => rows!(pool),
        Source::Postgres(pool) => rows!(pool),
    })
}

/// What an import writes, and what it had to leave out or change.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub users: Vec<User>,
    pub nodes: Vec<Node>,
    pub preauth_keys: Vec<PreAuthKey>,
    pub api_keys: Vec<ApiKey>,
    pub policy: Option<StoredPolicy>,
    /// Lossy choices, one line each (`nodes row 7: …`).
    pub warnings: Vec<String>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tagged = self.nodes.iter().filter(|n| n.is_tagged()).count();
        let legacy = self
            .preauth_keys
            .iter()
            .filter(|k| k.prefix.starts_with(keys::LEGACY_AUTH_PREFIX))
            .count();
        writeln!(f, "users:         {}", self.users.len())?;
        writeln!(f, "nodes:         {} ({tagged} tagged)", self.nodes.len())?;
        writeln!(
            f,
            "pre-auth keys: {} ({legacy} of headscale's older plain-text shape)",
            self.preauth_keys.len()
        )?;
        writeln!(f, "API keys:      {}", self.api_keys.len())?;
        match &self.policy {
            Some(p) => writeln!(f, "policy:        {} bytes", p.text.len())?,
            None => writeln!(f, "policy:        none stored in the database")?,
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Parses headscale's timestamps as either backend prints them; Go's zero
/// time (`0001-01-01 …`) means "not set".
pub fn parse_time(s: &str) -> Result<Option<DateTime<Utc>>, String> {
    let s = s.trim();
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
    }
    // Go's time.String() form, which GORM writes on some drivers:
    // `2024-05-01 10:11:12.123 +0000 UTC`.
    if let Some(head) = s.strip_suffix(" UTC")
        && let Ok(t) = DateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S%.f %z")
    {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(format!("{s:?} is not a time"))
}

fn parse_bool(s: Option<&str>) -> Result<bool, String> {
    match s.map(str::trim) {
        None => Ok(false),
        Some("1" | "true" | "t" | "TRUE") => Ok(true),
        Some("0" | "false" | "f" | "FALSE") => Ok(false),
        Some(other) => Err(format!("{other:?} is not a boolean")),
    }
}

fn json_list(s: Option<&str>) -> Result<Vec<String>, String> {
    match s {
        None | Some("null") => Ok(Vec::new()),
        Some(text) => serde_json::from_str::<Option<Vec<String>>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| format!("{text:?} is not a JSON list of strings: {e}")),
    }
}

struct RowCtx<'a> {
    table: &'static str,
    row: &'a RawRow,
    id: i64,
}

impl RowCtx<'_> {
    fn err(&self, why: impl Into<String>) -> ImportError {
        ImportError::Row {
            table: self.table,
            id: self.id,
            why: why.into(),
        }
    }
    fn text(&self, c: &str) -> Option<&str> {
        self.row.text(c)
    }
    fn need(&self, c: &str) -> Result<&str, ImportError> {
        self.text(c)
            .ok_or_else(|| self.err(format!("column {c} is empty")))
    }
    fn time(&self, c: &str) -> Result<Option<DateTime<Utc>>, ImportError> {
        self.text(c)
            .map(parse_time)
            .transpose()
            .map(Option::flatten)
            .map_err(|e| self.err(format!("column {c}: {e}")))
    }
    fn id_col(&self, c: &str) -> Result<Option<i64>, ImportError> {
        self.text(c)
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| self.err(format!("column {c}: {s:?} is not an id")))
            })
            .transpose()
    }
    fn bool(&self, c: &str) -> Result<bool, ImportError> {
        parse_bool(self.text(c)).map_err(|e| self.err(format!("column {c}: {e}")))
    }
    fn list(&self, c: &str) -> Result<Vec<String>, ImportError> {
        json_list(self.text(c)).map_err(|e| self.err(format!("column {c}: {e}")))
    }
}

fn ctx<'a>(table: &'static str, row: &'a RawRow) -> Result<RowCtx<'a>, ImportError> {
    let id = row
        .text("id")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| ImportError::Row {
            table,
            id: 0,
            why: format!("id {:?} is not an id", row.text("id")),
        })?;
    Ok(RowCtx { table, row, id })
}

/// Turns what was read into Headway's records. Pure: `now` stands in for
/// timestamps headscale left empty.
pub fn convert(raw: &Raw, now: DateTime<Utc>) -> Result<Plan, ImportError> {
    let mut plan = Plan::default();

    let mut names = HashSet::new();
    for row in &raw.users {
        let r = ctx("users", row)?;
        let name = r.need("name")?.to_string();
        if !names.insert(name.clone()) {
            return Err(r.err(format!(
                "a second user named {name:?} (headscale allows one per identity provider, Headway one in all); rename one of them in headscale first"
            )));
        }
        let provider_id = r.text("provider_identifier").map(str::to_string);
        plan.users.push(User {
            id: r.id,
            name,
            display_name: r.text("display_name").unwrap_or_default().to_string(),
            email: r.text("email").unwrap_or_default().to_string(),
            provider: match (&provider_id, r.text("provider")) {
                (None, _) => String::new(),
                (Some(_), Some(p)) => p.to_string(),
                (Some(_), None) => "oidc".to_string(),
            },
            provider_id,
            profile_pic_url: r.text("profile_pic_url").unwrap_or_default().to_string(),
            created_at: r.time("created_at")?.unwrap_or(now),
        });
    }
    let user_ids: HashSet<i64> = plan.users.iter().map(|u| u.id).collect();

    let mut ephemeral_keys = HashSet::new();
    let mut key_ids = HashSet::new();
    for row in &raw.preauth_keys {
        let r = ctx("pre_auth_keys", row)?;
        let user_id = r.id_col("user_id")?;
        let tags = r.list("tags")?;
        if user_id.is_none() && tags.is_empty() {
            plan.warnings.push(format!(
                "pre_auth_keys row {}: neither a user nor tags; left out",
                r.id
            ));
            continue;
        }
        if let Some(u) = user_id
            && !user_ids.contains(&u)
        {
            plan.warnings.push(format!(
                "pre_auth_keys row {}: its user {u} is gone; left out",
                r.id
            ));
            continue;
        }
        let (prefix, hash) = match (r.text("prefix"), &row.hash, r.text("key")) {
            (Some(prefix), Some(hash), _) if !hash.is_empty() => {
                let hash = SecretHash::from_bytes(hash)
                    .ok_or_else(|| r.err("column hash is neither bcrypt nor SHA-256"))?;
                (prefix.to_string(), hash)
            }
            (_, _, Some(text)) => {
                let (prefix, secret) = keys::split_legacy_auth_key(text)
                    .ok_or_else(|| r.err("column key is not a key headscale could have made"))?;
                (prefix, SecretHash::Sha256(keys::hash_secret(secret)))
            }
            _ => return Err(r.err("neither prefix and hash nor a plain-text key")),
        };
        let mut expiration = r.time("expiration")?;
        if let Some(revoked) = r.time("revoked")? {
            // Headway has no separate revocation: a revoked key is an
            // expired one.
            expiration = Some(expiration.map_or(revoked, |e| e.min(revoked)));
        }
        let ephemeral = r.bool("ephemeral")?;
        if ephemeral {
            ephemeral_keys.insert(r.id);
        }
        key_ids.insert(r.id);
        plan.preauth_keys.push(PreAuthKey {
            id: r.id,
            prefix,
            hash,
            user_id,
            reusable: r.bool("reusable")?,
            ephemeral,
            used: r.bool("used")?,
            expiration,
            created_at: r.time("created_at")?.unwrap_or(now),
            tags,
        });
    }

    let mut given = HashSet::new();
    for row in &raw.nodes {
        let r = ctx("nodes", row)?;
        let machine_key = r
            .need("machine_key")?
            .parse()
            .map_err(|e| r.err(format!("machine_key: {e}")))?;
        let node_key = r
            .need("node_key")?
            .parse()
            .map_err(|e| r.err(format!("node_key: {e}")))?;
        let disco_key = match r.text("disco_key") {
            Some(k) => k.parse().map_err(|e| r.err(format!("disco_key: {e}")))?,
            // The client sends its disco key with its next map request.
            None => Default::default(),
        };
        let mut tags = r.list("tags")?;
        if tags.is_empty() {
            tags = r.list("forced_tags")?;
        }
        tags.sort();
        tags.dedup();
        let mut user_id = r.id_col("user_id")?;
        if let Some(u) = user_id
            && !user_ids.contains(&u)
        {
            if tags.is_empty() {
                plan.warnings.push(format!(
                    "nodes row {}: its user {u} is gone and it has no tags; left out",
                    r.id
                ));
                continue;
            }
            user_id = None;
        }
        if !tags.is_empty() {
            // Tagged nodes belong to their tags alone.
            user_id = None;
        }
        if user_id.is_none() && tags.is_empty() {
            plan.warnings.push(format!(
                "nodes row {}: neither a user nor tags; left out",
                r.id
            ));
            continue;
        }
        let given_name = r.need("given_name")?.to_string();
        if !given.insert(given_name.clone()) {
            return Err(r.err(format!(
                "a second node named {given_name:?}; rename one in headscale first"
            )));
        }
        let ipv4 = r
            .text("ipv4")
            .map(|s| s.parse::<Ipv4Addr>())
            .transpose()
            .map_err(|e| r.err(format!("ipv4: {e}")))?;
        let ipv6 = r
            .text("ipv6")
            .map(|s| s.parse::<Ipv6Addr>())
            .transpose()
            .map_err(|e| r.err(format!("ipv6: {e}")))?;
        let mut endpoints = Vec::new();
        for e in r.list("endpoints")? {
            match e.parse::<SocketAddr>() {
                Ok(a) => endpoints.push(a),
                Err(_) => plan.warnings.push(format!(
                    "nodes row {}: endpoint {e:?} is not ip:port; dropped (the client reports its endpoints again)",
                    r.id
                )),
            }
        }
        let hostinfo: Hostinfo = match r.text("host_info") {
            None => Hostinfo::default(),
            Some(text) => serde_json::from_str(text).unwrap_or_else(|e| {
                plan.warnings.push(format!(
                    "nodes row {}: host_info is not a Hostinfo ({e}); left empty until the client reports it",
                    r.id
                ));
                Hostinfo::default()
            }),
        };
        let home_derp = hostinfo.net_info.as_ref().map_or(0, |n| n.preferred_derp);
        let mut approved_routes = Vec::new();
        for p in r.list("approved_routes")? {
            approved_routes.push(
                p.parse::<IpNet>()
                    .map_err(|e| r.err(format!("approved_routes: {p:?}: {e}")))?,
            );
        }
        let register_method = match r.text("register_method") {
            Some(m) => RegisterMethod::parse(m).unwrap_or_else(|| {
                plan.warnings.push(format!(
                    "nodes row {}: register method {m:?} unknown; recorded as cli",
                    r.id
                ));
                RegisterMethod::Cli
            }),
            None => RegisterMethod::Cli,
        };
        let auth_key_id = r.id_col("auth_key_id")?.filter(|k| key_ids.contains(k));
        let created_at = r.time("created_at")?.unwrap_or(now);
        plan.nodes.push(Node {
            id: r.id,
            machine_key,
            node_key,
            disco_key,
            hostname: r.need("hostname")?.to_string(),
            given_name,
            user_id,
            tags,
            ipv4,
            ipv6,
            endpoints,
            hostinfo,
            home_derp,
            expiry: r.time("expiry")?,
            register_method,
            auth_key_id,
            ephemeral: auth_key_id.is_some_and(|k| ephemeral_keys.contains(&k)),
            approved_routes,
            cap_version: 0,
            created_at,
            updated_at: r.time("updated_at")?.unwrap_or(created_at),
            last_seen: r.time("last_seen")?,
        });
    }
    check_unique(&plan.nodes, |n| Some(n.node_key.to_string()), "node_key")?;
    check_unique(&plan.nodes, |n| n.ipv4, "ipv4")?;
    check_unique(&plan.nodes, |n| n.ipv6, "ipv6")?;

    for row in &raw.api_keys {
        let r = ctx("api_keys", row)?;
        let Some(hash) = row.hash.as_deref().and_then(SecretHash::from_bytes) else {
            plan.warnings.push(format!(
                "api_keys row {}: no usable hash; left out (create a new key with `headway apikeys create`)",
                r.id
            ));
            continue;
        };
        plan.api_keys.push(ApiKey {
            id: r.id,
            prefix: r.need("prefix")?.to_string(),
            hash,
            expiration: r.time("expiration")?,
            created_at: r.time("created_at")?.unwrap_or(now),
            last_seen: r.time("last_seen")?,
            description: "imported from headscale".into(),
        });
    }

    if let Some(row) = &raw.policy {
        let r = ctx("policies", row)?;
        let text = r.text("data").unwrap_or_default().to_string();
        if !text.trim().is_empty() {
            plan.policy = Some(StoredPolicy {
                text,
                updated_at: r
                    .time("updated_at")?
                    .or(r.time("created_at")?)
                    .unwrap_or(now),
            });
        }
    }
    Ok(plan)
}

fn check_unique<K: Ord + fmt::Debug>(
    nodes: &[Node],
    key: impl Fn(&Node) -> Option<K>,
    what: &str,
) -> Result<(), ImportError> {
    let mut seen: BTreeMap<K, i64> = BTreeMap::new();
    for n in nodes {
        let Some(k) = key(n) else { continue };
        if let Some(first) = seen.insert(k, n.id) {
            return Err(ImportError::Row {
                table: "nodes",
                id: n.id,
                why: format!("same {what} as node {first}; delete one of them in headscale first"),
            });
        }
    }
    Ok(())
}

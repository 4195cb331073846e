//! The audit log's statements (shared SQL, one instantiation per backend).
//! Text filters match by prefix (`substr(col, 1, length($n)) = $n`, which
//! both backends read the same way, case-sensitively).

use chrono::{DateTime, Utc};
use headway_state::audit::AuditEntry;
use headway_state::store::StoreError;

pub(crate) const INSERT: &str = "INSERT INTO audit_log (at, actor, action, target, before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
pub(crate) const PRUNE: &str = "DELETE FROM audit_log WHERE at < $1";
pub(crate) const LIST: &str = "SELECT id, at, actor, action, target, before_json, after_json FROM audit_log \
     WHERE ($1 IS NULL OR at >= $1) \
       AND ($2 IS NULL OR at < $2) \
       AND ($3 IS NULL OR substr(actor, 1, length($3)) = $3) \
       AND ($4 IS NULL OR substr(action, 1, length($4)) = $4) \
       AND ($5 IS NULL OR substr(target, 1, length($5)) = $5) \
     ORDER BY id DESC LIMIT $6";

pub(crate) fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

fn json_value(
    id: i64,
    column: &str,
    text: Option<String>,
) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("audit_log row {id}: column {column}: {e}")))
    })
    .transpose()
}

pub(crate) fn entry(
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    target: String,
    before: Option<String>,
    after: Option<String>,
) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id,
        at,
        actor,
        action,
        target,
        before: json_value(id, "before_json", before)?,
        after: json_value(id, "after_json", after)?,
    })
}

macro_rules! audit_backend {
    ($module:ident, $pool:ty) => {
        pub(crate) mod $module {
            use chrono::{DateTime, Utc};
            use headway_state::audit::{AuditEntry, AuditFilter};
            use headway_state::store::StoreError;
            use sqlx::Row;

            use super::*;
            use crate::db_err;

            pub(crate) async fn insert(pool: &$pool, e: &AuditEntry) -> Result<i64, StoreError> {
                let row = sqlx::query(INSERT)
                    .bind(e.at)
                    .bind(&e.actor)
                    .bind(&e.action)
                    .bind(&e.target)
                    .bind(json_text(&e.before))
                    .bind(json_text(&e.after))
                    .fetch_one(pool)
                    .await
                    .map_err(db_err)?;
                row.try_get::<i64, _>(0).map_err(db_err)
            }

            pub(crate) async fn list(
                pool: &$pool,
                f: &AuditFilter,
            ) -> Result<Vec<AuditEntry>, StoreError> {
                let rows = sqlx::query(LIST)
                    .bind(f.since)
                    .bind(f.until)
                    .bind(f.actor.as_deref())
                    .bind(f.action.as_deref())
                    .bind(f.target.as_deref())
                    .bind(i64::from(f.effective_limit()))
                    .fetch_all(pool)
                    .await
                    .map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        entry(
                            r.try_get("id").map_err(db_err)?,
                            r.try_get("at").map_err(db_err)?,
                            r.try_get("actor").map_err(db_err)?,
                            r.try_get("action").map_err(db_err)?,
                            r.try_get("target").map_err(db_err)?,
                            r.try_get("before_json").map_err(db_err)?,
                            r.try_get("after_json").map_err(db_err)?,
                        )
                    })
                    .collect()
            }

            pub(crate) async fn prune(
                pool: &$pool,
                before: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                sqlx::query(PRUNE)
                    .bind(before)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(db_err)
            }
        }
    };
}

audit_backend!(sqlite, sqlx::SqlitePool);
audit_backend!(pg, sqlx::PgPool);

//! What several replicas on one PostgreSQL database need from it, built on
//! PostgreSQL alone (no broker to run):
//!
//! - a change feed: `NOTIFY headway_changes` with a small JSON
//!   [`ChangeNotice`]; durable changes are announced inside the transaction
//!   that makes them (PostgreSQL delivers the notice only if it commits),
//!   soft state (online, endpoints…) on its own;
//! - liveness: each replica's row in `replicas` with a `last_seen` kept
//!   fresh, judged by the database's clock so the hosts' clocks do not matter;
//! - leadership for singleton jobs: a session-level advisory lock held on a
//!   dedicated connection; it is released when that connection ends, so a
//!   replica that dies (or loses the database) hands it over.
//!
//! SQLite has one server by definition and none of this.

use std::collections::BTreeSet;
use std::time::Duration;

use headway_state::model::{Node, NodeId, UserId};
use headway_state::store::StoreError;
use headway_state::tailnet::SoftState;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgNotification};
use sqlx::{Connection, PgConnection, PgPool};

use crate::db_err;

/// The LISTEN/NOTIFY channel.
pub const CHANNEL: &str = "headway_changes";
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
pub const MAX_PAYLOAD: usize = 7900;
/// The advisory lock key of the singleton jobs ("headway1" in ASCII).
const LEADER_LOCK: i64 = 0x6865_6164_7761_7931;

/// Rows a transaction wrote, by table.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub nodes: BTreeSet<NodeId>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub users: BTreeSet<UserId>,
    /// Pre-auth keys, API keys, OAuth clients or the policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other: bool,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.users.is_empty() && !self.other
    }
}

/// One notice on the channel. `origin` is the replica that sent it (each
/// replica skips its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeNotice {
    /// A transaction committed: read these rows again.
    Rows { origin: String, touched: Touched },
    /// The soft state of a node connected to `origin` (boxed: by far the
    /// largest variant).
    Soft {
        origin: String,
        state: Box<SoftState>,
    },
    /// `origin` started (or lost notices): everyone, publish the soft state
    /// of your connected nodes again.
    Hello { origin: String },
    /// `origin` is shutting down: its nodes are offline now.
    Goodbye { origin: String },
    /// A client answered, at `origin`, a router health probe another
    /// replica sent.
    PingAnswer { origin: String, id: String },
}

impl ChangeNotice {
    pub fn origin(&self) -> &str {
        match self {
            ChangeNotice::Rows { origin, .. }
            | ChangeNotice::Soft { origin, .. }
            | ChangeNotice::Hello { origin }
            | ChangeNotice::Goodbye { origin }
            | ChangeNotice::PingAnswer { origin, .. } => origin,
        }
    }

    /// The JSON payload; `None` when it would not fit in a NOTIFY.
    pub fn payload(&self) -> Option<String> {
        let text = serde_json::to_string(self).ok()?;
        (text.len() <= MAX_PAYLOAD).then_some(text)
    }

    pub fn parse(n: &PgNotification) -> Result<Self, serde_json::Error> {
        serde_json::from_str(n.payload())
    }
}

/// A `Rows` notice too big to carry its ids says "reload everything".
pub(crate) fn rows_payload(origin: &str, touched: &Touched) -> String {
    let notice = ChangeNotice::Rows {
        origin: origin.to_string(),
        touched: touched.clone(),
    };
    notice.payload().unwrap_or_else(|| {
        let all = ChangeNotice::Rows {
            origin: origin.to_string(),
            touched: Touched {
                other: true,
                ..Touched::default()
            },
        };
        serde_json::to_string(&all).unwrap_or_default()
    })
}

const UPDATE_NODE_SOFT: &str = "UPDATE nodes SET disco_key = $1, hostname = $2, endpoints = $3, hostinfo = $4, home_derp = $5, cap_version = $6, last_seen = $7 WHERE id = $8";

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

macro_rules! update_node_soft {
    ($name:ident, $conn:ty) => {
        /// Writes the soft columns of a node (a missing row is fine: the
        /// node was deleted meanwhile).
        pub(crate) async fn $name(c: &mut $conn, n: &Node) -> Result<(), StoreError> {
            sqlx::query(UPDATE_NODE_SOFT)
                .bind(n.disco_key.to_string())
                .bind(&n.hostname)
                .bind(json(&n.endpoints))
                .bind(json(&n.hostinfo))
                .bind(n.home_derp)
                .bind(n.cap_version)
                .bind(n.last_seen)
                .bind(n.id)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
            Ok(())
        }
    };
}
update_node_soft!(update_node_soft_sqlite, sqlx::SqliteConnection);
update_node_soft!(update_node_soft_pg, PgConnection);

/// This replica's handle on the shared database.
#[derive(Debug, Clone)]
pub struct PgCluster {
    pool: PgPool,
    replica: String,
}

impl PgCluster {
    pub(crate) fn new(pool: PgPool, replica: String) -> Self {
        Self { pool, replica }
    }

    /// This replica's id (random per start).
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// Sends a notice outside any transaction (soft state, hello, goodbye).
    /// A notice too big for NOTIFY is refused with `Ok(false)`.
    pub async fn notify(&self, notice: &ChangeNotice) -> Result<bool, StoreError> {
        let Some(payload) = notice.payload() else {
            return Ok(false);
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(true)
    }

    /// A connection listening on the channel (its own connection, outside
    /// the pool). Use `try_recv`: `Ok(None)` means the connection was lost
    /// and notices may have been missed.
    pub async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut l = PgListener::connect_with(&self.pool).await.map_err(db_err)?;
        l.listen(CHANNEL).await.map_err(db_err)?;
        Ok(l)
    }

    /// Creates or refreshes this replica's row. Returns true when the row
    /// had to be created: at start, or because the others took this replica
    /// for dead (it was silent too long) and forgot its nodes.
    pub async fn heartbeat(&self) -> Result<bool, StoreError> {
        // `xmax = 0` holds for a freshly inserted row, not an updated one.
        sqlx::query_scalar(
            "INSERT INTO replicas (id, started_at, last_seen) VALUES ($1, now(), now()) \
             ON CONFLICT (id) DO UPDATE SET last_seen = now() \
             RETURNING (xmax = 0)",
        )
        .bind(&self.replica)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    /// Declares dead the replicas that have not refreshed their row for
    /// `after` (by the database's clock): removes their rows and, in the
    /// same transaction, announces a [`ChangeNotice::Goodbye`] on behalf of
    /// each, so that every replica forgets their nodes, not only the one
    /// that noticed. Of several replicas noticing at once only one removes
    /// a row, so each death is announced once. A replica that was only
    /// slow finds its row gone at its next heartbeat and announces its
    /// nodes again (after the goodbye: the row lock orders them).
    pub async fn reap_silent(&self, after: Duration) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let gone: Vec<String> = sqlx::query_scalar(
            "DELETE FROM replicas WHERE id <> $1 \
             AND last_seen < now() - make_interval(secs => $2) RETURNING id",
        )
        .bind(&self.replica)
        .bind(after.as_secs_f64())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for id in &gone {
            let goodbye = ChangeNotice::Goodbye { origin: id.clone() };
            if let Some(payload) = goodbye.payload() {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(gone)
    }

    /// The replicas whose rows exist (alive, or not yet found silent).
    pub async fn live_replicas(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT id FROM replicas")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Removes rows of replicas gone (or of this one, at shutdown).
    pub async fn remove_replica(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Tries to become the leader. `Some` holds the lock for as long as it
    /// lives (and its connection does).
    pub async fn try_lead(&self) -> Result<Option<Leadership>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut conn)
            .await
            .map_err(db_err)?;
        if got {
            Ok(Some(Leadership { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}

/// The singleton lock, held on its own connection.
#[derive(Debug)]
pub struct Leadership {
    conn: PgConnection,
}

impl Leadership {
    /// Whether the lock is still held: its connection still answers (the
    /// server releases a session lock only when the session ends).
    pub async fn still_held(&mut self) -> bool {
        tokio::time::timeout(Duration::from_secs(5), self.conn.ping())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Gives the lock up (at shutdown), so another replica takes over at once.
    /// Unlocked explicitly: closing the connection alone frees the lock only
    /// once the server's backend has exited, a moment later.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LEADER_LOCK)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}

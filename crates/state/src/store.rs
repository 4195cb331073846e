//! What the service layer needs from persistent storage. The SQL
//! implementations live in `headway-store`; tests use [`crate::memstore`].
//!
//! Every state change runs in one [`StoreTx`]: either all of its writes land
//! or none do, so a crash never leaves half a registration.

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use crate::audit::{AuditEntry, AuditFilter};
use crate::model::{ApiKey, ApiKeyId, OAuthClient, OAuthClientId};
use crate::model::{Node, NodeId, PreAuthKey, PreAuthKeyId, StoredPolicy, User, UserId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (another replica won a race,
    /// or the caller asked for a duplicate).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A stored row could not be read back into the domain (hand-edited database?).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// Everything loaded at start-up.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub users: Vec<User>,
    pub nodes: Vec<Node>,
    pub preauth_keys: Vec<PreAuthKey>,
    pub policy: Option<StoredPolicy>,
    pub api_keys: Vec<ApiKey>,
    pub oauth_clients: Vec<OAuthClient>,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    async fn load(&self) -> Result<Snapshot, StoreError>;
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError>;
    /// A short description for logs (`sqlite:/path`, `postgres://host/db`), no secrets.
    fn describe(&self) -> String;
    /// Whether the database answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether every migration this build knows is applied (for readiness
    /// checks: a database another version migrated further is not ready).
    async fn migrated(&self) -> Result<bool, StoreError>;

    /// Appends an audit entry (its own statement: audit entries are
    /// written after the change they describe); returns its id.
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;
    /// Audit entries matching `filter`, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
    /// Deletes audit entries older than `before`; returns how many.
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// One transaction. Inserts return the id the database assigned.
#[async_trait]
pub trait StoreTx: Send {
    async fn insert_user(&mut self, user: &User) -> Result<UserId, StoreError>;
    async fn update_user(&mut self, user: &User) -> Result<(), StoreError>;
    async fn delete_user(&mut self, id: UserId) -> Result<(), StoreError>;

    async fn insert_node(&mut self, node: &Node) -> Result<NodeId, StoreError>;
    async fn update_node(&mut self, node: &Node) -> Result<(), StoreError>;
    /// Writes only what the node's map session reports (disco key,
    /// endpoints, host info, DERP home, capability version, last seen), so
    /// that a replica flushing it never undoes an administrative change
    /// another replica made meanwhile.
    async fn update_node_soft(&mut self, node: &Node) -> Result<(), StoreError> {
        self.update_node(node).await
    }
    async fn delete_node(&mut self, id: NodeId) -> Result<(), StoreError>;

    async fn insert_preauth_key(&mut self, key: &PreAuthKey) -> Result<PreAuthKeyId, StoreError>;
    async fn update_preauth_key(&mut self, key: &PreAuthKey) -> Result<(), StoreError>;
    async fn delete_preauth_key(&mut self, id: PreAuthKeyId) -> Result<(), StoreError>;

    async fn set_policy(&mut self, policy: &StoredPolicy) -> Result<(), StoreError>;

    async fn insert_api_key(&mut self, key: &ApiKey) -> Result<ApiKeyId, StoreError>;
    async fn update_api_key(&mut self, key: &ApiKey) -> Result<(), StoreError>;
    async fn delete_api_key(&mut self, id: ApiKeyId) -> Result<(), StoreError>;

    async fn insert_oauth_client(
        &mut self,
        client: &OAuthClient,
    ) -> Result<OAuthClientId, StoreError>;
    async fn delete_oauth_client(&mut self, id: OAuthClientId) -> Result<(), StoreError>;

    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

//! An in-memory [`Store`] for tests of the service layer: transactions are
//! staged and applied on commit, and a failure can be injected to check that
//! nothing half-done becomes visible.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;

use chrono::{DateTime, Utc};

use crate::audit::{AuditEntry, AuditFilter};
use crate::model::*;
use crate::store::{Snapshot, Store, StoreError, StoreTx};

#[derive(Debug, Default)]
struct Data {
    users: BTreeMap<UserId, User>,
    nodes: BTreeMap<NodeId, Node>,
    keys: BTreeMap<PreAuthKeyId, PreAuthKey>,
    policy: Option<StoredPolicy>,
    next_id: i64,
    api_keys: BTreeMap<ApiKeyId, ApiKey>,
    oauth_clients: BTreeMap<OAuthClientId, OAuthClient>,
    audit: Vec<AuditEntry>,
}

#[derive(Debug, Default, Clone)]
pub struct MemStore {
    data: Arc<Mutex<Data>>,
    fail_commit: Arc<AtomicBool>,
}

impl MemStore {
    /// Makes the next commits fail (until reset), as a lost database would.
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commit.store(fail, Ordering::SeqCst);
    }

    pub fn node_count(&self) -> usize {
        self.data.lock().nodes.len()
    }
}

#[allow(clippy::large_enum_variant)] // test-only staging list
enum Op {
    User(User),
    DelUser(UserId),
    Node(Node),
    DelNode(NodeId),
    Key(PreAuthKey),
    DelKey(PreAuthKeyId),
    Policy(StoredPolicy),
    ApiKey(ApiKey),
    DelApiKey(ApiKeyId),
    OAuthClient(OAuthClient),
    DelOAuthClient(OAuthClientId),
}

struct MemTx {
    store: MemStore,
    ops: Vec<Op>,
}

impl MemTx {
    fn next_id(&self) -> i64 {
        let mut d = self.store.data.lock();
        d.next_id += 1;
        d.next_id
    }
}

#[async_trait]
impl Store for MemStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        let d = self.data.lock();
        Ok(Snapshot {
            users: d.users.values().cloned().collect(),
            nodes: d.nodes.values().cloned().collect(),
            preauth_keys: d.keys.values().cloned().collect(),
            policy: d.policy.clone(),
            api_keys: d.api_keys.values().cloned().collect(),
            oauth_clients: d.oauth_clients.values().cloned().collect(),
        })
    }
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        Ok(Box::new(MemTx {
            store: self.clone(),
            ops: Vec::new(),
        }))
    }
    fn describe(&self) -> String {
        "memory".into()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.fail_commit.load(Ordering::SeqCst) {
            return Err(StoreError::Database("injected failure".into()));
        }
        Ok(())
    }
    async fn migrated(&self) -> Result<bool, StoreError> {
        self.ping().await.map(|()| true)
    }
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut d = self.data.lock();
        d.next_id += 1;
        let id = d.next_id;
        d.audit.push(AuditEntry {
            id,
            ..entry.clone()
        });
        Ok(id)
    }
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let d = self.data.lock();
        Ok(d.audit
            .iter()
            .rev()
            .filter(|e| filter.matches(e))
            .take(filter.effective_limit() as usize)
            .cloned()
            .collect())
    }
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut d = self.data.lock();
        let n = d.audit.len();
        d.audit.retain(|e| e.at >= before);
        Ok((n - d.audit.len()) as u64)
    }
}

#[async_trait]
impl StoreTx for MemTx {
    async fn insert_user(&mut self, user: &User) -> Result<UserId, StoreError> {
        let id = self.next_id();
        self.ops.push(Op::User(User { id, ..user.clone() }));
        Ok(id)
    }
    async fn update_user(&mut self, user: &User) -> Result<(), StoreError> {
        self.ops.push(Op::User(user.clone()));
        Ok(())
    }
    async fn delete_user(&mut self, id: UserId) -> Result<(), StoreError> {
        self.ops.push(Op::DelUser(id));
        Ok(())
    }
    async fn insert_node(&mut self, node: &Node) -> Result<NodeId, StoreError> {
        let id = self.next_id();
        self.ops.push(Op::Node(Node { id, ..node.clone() }));
        Ok(id)
    }
    async fn update_node(&mut self, node: &Node) -> Result<(), StoreError> {
        self.ops.push(Op::Node(node.clone()));
        Ok(())
    }
    async fn delete_node(&mut self, id: NodeId) -> Result<(), StoreError> {
        self.ops.push(Op::DelNode(id));
        Ok(())
    }
    async fn insert_preauth_key(&mut self, key: &PreAuthKey) -> Result<PreAuthKeyId, StoreError> {
        let id = self.next_id();
        self.ops.push(Op::Key(PreAuthKey { id, ..key.clone() }));
        Ok(id)
    }
    async fn update_preauth_key(&mut self, key: &PreAuthKey) -> Result<(), StoreError> {
        self.ops.push(Op::Key(key.clone()));
        Ok(())
    }
    async fn delete_preauth_key(&mut self, id: PreAuthKeyId) -> Result<(), StoreError> {
        self.ops.push(Op::DelKey(id));
        Ok(())
    }
    async fn set_policy(&mut self, policy: &StoredPolicy) -> Result<(), StoreError> {
        self.ops.push(Op::Policy(policy.clone()));
        Ok(())
    }
    async fn insert_api_key(&mut self, key: &ApiKey) -> Result<ApiKeyId, StoreError> {
        let id = self.next_id();
        self.ops.push(Op::ApiKey(ApiKey { id, ..key.clone() }));
        Ok(id)
    }
    async fn update_api_key(&mut self, key: &ApiKey) -> Result<(), StoreError> {
        self.ops.push(Op::ApiKey(key.clone()));
        Ok(())
    }
    async fn delete_api_key(&mut self, id: ApiKeyId) -> Result<(), StoreError> {
        self.ops.push(Op::DelApiKey(id));
        Ok(())
    }
    async fn insert_oauth_client(
        &mut self,
        client: &OAuthClient,
    ) -> Result<OAuthClientId, StoreError> {
        let id = self.next_id();
        self.ops.push(Op::OAuthClient(OAuthClient {
            id,
            ..client.clone()
        }));
        Ok(id)
    }
    async fn delete_oauth_client(&mut self, id: OAuthClientId) -> Result<(), StoreError> {
        self.ops.push(Op::DelOAuthClient(id));
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if self.store.fail_commit.load(Ordering::SeqCst) {
            return Err(StoreError::Database("injected failure".into()));
        }
        let mut d = self.store.data.lock();
        for op in self.ops {
            match op {
                Op::User(u) => {
                    d.users.insert(u.id, u);
                }
                Op::DelUser(id) => {
                    d.users.remove(&id);
                }
                Op::Node(n) => {
                    d.nodes.insert(n.id, n);
                }
                Op::DelNode(id) => {
                    d.nodes.remove(&id);
                }
                Op::Key(k) => {
                    d.keys.insert(k.id, k);
                }
                Op::DelKey(id) => {
                    d.keys.remove(&id);
                }
                Op::Policy(p) => d.policy = Some(p),
                Op::ApiKey(k) => {
                    d.api_keys.insert(k.id, k);
                }
                Op::DelApiKey(id) => {
                    d.api_keys.remove(&id);
                }
                Op::OAuthClient(c) => {
                    d.oauth_clients.insert(c.id, c);
                }
                Op::DelOAuthClient(id) => {
                    d.oauth_clients.remove(&id);
                }
            }
        }
        Ok(())
    }
}

//! The tailnet in memory and its service methods.
//!
//! Writers are serialised by one async mutex: a change is validated against
//! memory, written to the store in one transaction, applied to memory, then
//! announced. Readers (map building, listings) take a short read lock and
//! never touch the database.

mod api_keys;
mod control;
mod dns;
mod nodes;
mod oauth_clients;
mod policy;
mod preauth;
mod register;
mod replica;
mod route_health;
mod routes;
mod ssh_check;
mod users;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{FilterRule, PeerChange, SshPolicy};

use crate::access::{Access, policy_node, policy_user};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use crate::audit::{AuditEntry, AuditFilter, AuditSink};
use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ipalloc::IpAllocator;
use crate::metrics::{Metrics, StateLabel, TimedStore};
use crate::model::*;
use crate::sessions::Sessions;
use crate::settings::Settings;
use crate::store::Store;

pub use crate::settings::PolicySource;
pub use api_keys::{ApiKeyUse, INVALID_API_KEY, LAST_SEEN_WRITE_INTERVAL};
pub use control::{MapUpdate, peer_visible_hostinfo};
pub use dns::parse_extra_records;
pub use oauth_clients::{
    ACCESS_TOKEN_TTL, AccessToken, Grant, NewOAuthClient, SCOPES, scope_allows,
};
pub use policy::PolicyInfo;
pub use preauth::NewPreAuthKey;
pub use register::{PENDING_REGISTRATION_TTL, PendingInfo, RegisterOutcome};
pub use replica::{ChangeFeed, ReloadStats, SoftState};
pub use route_health::{PING_RESPONSE_PATH, Ping};
pub use routes::{NodeRoutes, is_exit_route, parse_routes};
pub use ssh_check::{Approved, PENDING_SSH_CHECK_TTL, SshApprover, SshCheckInfo, SshCheckRequest};
pub use users::{NewUser, OIDC_PROVIDER, OidcIdentity, validate_user_name};

#[derive(Debug)]
struct Inner {
    users: BTreeMap<UserId, Arc<User>>,
    nodes: BTreeMap<NodeId, Arc<Node>>,
    by_node_key: HashMap<NodePublic, NodeId>,
    by_machine: HashMap<MachinePublic, Vec<NodeId>>,
    by_name: HashMap<String, NodeId>,
    keys: BTreeMap<PreAuthKeyId, PreAuthKey>,
    key_by_prefix: HashMap<String, PreAuthKeyId>,
    ipalloc: IpAllocator,
    /// When each offline node went offline (for ephemeral clean-up).
    offline_since: HashMap<NodeId, DateTime<Utc>>,
}

impl Inner {
    fn put_node(&mut self, node: Arc<Node>) {
        if let Some(old) = self.nodes.get(&node.id).cloned() {
            self.unindex(&old);
        }
        self.by_node_key.insert(node.node_key, node.id);
        self.by_machine
            .entry(node.machine_key)
            .or_default()
            .push(node.id);
        self.by_name.insert(node.given_name.clone(), node.id);
        for ip in node.ips() {
            self.ipalloc.mark_used(ip);
        }
        self.nodes.insert(node.id, node);
    }

    fn unindex(&mut self, node: &Node) {
        if self.by_node_key.get(&node.node_key) == Some(&node.id) {
            self.by_node_key.remove(&node.node_key);
        }
        if let Some(ids) = self.by_machine.get_mut(&node.machine_key) {
            ids.retain(|id| *id != node.id);
            if ids.is_empty() {
                self.by_machine.remove(&node.machine_key);
            }
        }
        if self.by_name.get(&node.given_name) == Some(&node.id) {
            self.by_name.remove(&node.given_name);
        }
    }

    fn remove_node(&mut self, id: NodeId) -> Option<Arc<Node>> {
        let node = self.nodes.remove(&id)?;
        self.unindex(&node);
        for ip in node.ips() {
            self.ipalloc.release(ip);
        }
        self.offline_since.remove(&id);
        Some(node)
    }

    fn put_key(&mut self, key: PreAuthKey) {
        self.key_by_prefix.insert(key.prefix.clone(), key.id);
        self.keys.insert(key.id, key);
    }

    fn user_by_name(&self, name: &str) -> Option<&Arc<User>> {
        self.users.values().find(|u| u.name == name)
    }

    fn name_taken(&self, name: &str, except: Option<NodeId>) -> bool {
        self.by_name.get(name).is_some_and(|id| Some(*id) != except)
    }
}

/// The tailnet: users, nodes, keys, access control, and open map sessions.
#[derive(Debug)]
pub struct Tailnet {
    inner: RwLock<Inner>,
    write: tokio::sync::Mutex<()>,
    store: Arc<dyn Store>,
    clock: SharedClock,
    settings: Arc<Settings>,
    sessions: Sessions,
    access: RwLock<Arc<Access>>,
    /// The policy text in force and where it came from.
    policy: RwLock<policy::PolicyState>,
    /// Records from `dns.extra_records_path` (added to the config's own).
    extra_dns: RwLock<Arc<Vec<headway_proto::tailcfg::DnsRecord>>>,
    events: broadcast::Sender<Event>,
    /// Nodes whose soft state (endpoints, host info, last seen) changed
    /// since the last flush to the store.
    soft_dirty: Mutex<HashSet<NodeId>>,
    /// Interactive registrations waiting for a decision (memory only: a
    /// restart makes clients ask for a new link).
    pending: Mutex<register::Pending>,
    /// SSH connections held by a `check` rule, and checks passed (memory only).
    ssh_checks: Mutex<ssh_check::SshChecks>,
    /// Health marks of HA subnet routers and their probes in flight.
    route_health: Mutex<route_health::RouteHealth>,
    /// Admin API keys (memory is the truth for checks; see `api_keys`).
    api_keys: RwLock<api_keys::ApiKeys>,
    /// OAuth clients of the v2 API and their live access tokens.
    oauth: RwLock<oauth_clients::OAuth>,
    /// The other replicas' sessions and the feed to them (see `replica`).
    cluster: replica::Cluster,
    metrics: Metrics,
    /// Where audit entries are copied as JSON lines (`audit.log_path`).
    audit_sink: RwLock<Option<Arc<AuditSink>>>,
}

impl Tailnet {
    /// Loads the tailnet from the store.
    pub async fn load(
        store: Arc<dyn Store>,
        clock: SharedClock,
        settings: Settings,
    ) -> Result<Arc<Self>> {
        let metrics = Metrics::new();
        let store: Arc<dyn Store> = Arc::new(TimedStore::new(store, metrics.clone()));
        let snapshot = store.load().await?;
        let now = clock.now();
        let mut inner = Inner {
            users: BTreeMap::new(),
            nodes: BTreeMap::new(),
            by_node_key: HashMap::new(),
            by_machine: HashMap::new(),
            by_name: HashMap::new(),
            keys: BTreeMap::new(),
            key_by_prefix: HashMap::new(),
            ipalloc: IpAllocator::new(settings.prefix_v4, settings.prefix_v6, settings.allocation),
            offline_since: HashMap::new(),
        };
        for u in snapshot.users {
            inner.users.insert(u.id, Arc::new(u));
        }
        for n in snapshot.nodes {
            inner.offline_since.insert(n.id, now);
            inner.put_node(Arc::new(n));
        }
        for k in snapshot.preauth_keys {
            inner.put_key(k);
        }
        let stored_policy = snapshot.policy;
        let api_keys = RwLock::new(api_keys::ApiKeys::load(snapshot.api_keys));
        let oauth = RwLock::new(oauth_clients::OAuth::load(snapshot.oauth_clients));
        let (events, _) = broadcast::channel(4096);
        let access = {
            let users: Vec<_> = inner.users.values().map(|u| policy_user(u)).collect();
            let nodes: Vec<_> = inner
                .nodes
                .values()
                .map(|n| policy_node(n, false))
                .collect();
            Access::compile(None, &users, &nodes, &settings.server_url)
                .map_err(|e| Error::Internal(format!("compiling the default policy: {e}")))?
        };
        let tailnet = Arc::new(Self {
            inner: RwLock::new(inner),
            write: tokio::sync::Mutex::new(()),
            store,
            clock,
            settings: Arc::new(settings),
            sessions: Sessions::with_metrics(metrics.clone()),
            access: RwLock::new(Arc::new(access)),
            policy: RwLock::new(policy::PolicyState::default()),
            extra_dns: RwLock::new(Arc::new(Vec::new())),
            events,
            soft_dirty: Mutex::new(HashSet::new()),
            pending: Mutex::new(register::Pending::default()),
            ssh_checks: Mutex::new(ssh_check::SshChecks::default()),
            route_health: Mutex::new(route_health::RouteHealth::default()),
            api_keys,
            oauth,
            cluster: replica::Cluster::default(),
            metrics,
            audit_sink: RwLock::new(None),
        });
        if let Some(p) = stored_policy
            .filter(|_| matches!(tailnet.settings.policy_source, PolicySource::Database))
        {
            tailnet.install_policy(&p.text, p.updated_at).map_err(|e: Error| {
                Error::Invalid(format!(
                    "the policy stored in the database no longer compiles: {e}; start with policy.mode: file (or fix it in the database) to recover"
                ))
            })?;
        }
        Ok(tailnet)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Sets the gauges that describe the tailnet (nodes by state, open map
    /// sessions) from what memory holds: one pass over the nodes, no I/O.
    /// Called at scrape time.
    pub fn refresh_gauges(&self) {
        let now = self.now();
        let (mut online, mut offline, mut expired) = (0i64, 0i64, 0i64);
        for n in self.inner.read().nodes.values() {
            if n.is_expired(now) {
                expired += 1;
            } else if self.is_online(n.id) {
                online += 1;
            } else {
                offline += 1;
            }
        }
        for (state, count) in [
            ("online", online),
            ("offline", offline),
            ("expired", expired),
        ] {
            self.metrics
                .nodes
                .get_or_create(&StateLabel { state })
                .set(count);
        }
        self.metrics
            .map_sessions
            .set(i64::try_from(self.sessions.len()).unwrap_or(i64::MAX));
    }

    /// Copies every audit entry recorded from now on to `sink` too.
    pub fn set_audit_sink(&self, sink: Option<AuditSink>) {
        *self.audit_sink.write() = sink.map(Arc::new);
    }

    /// Records an audit entry: stored, and copied to the sink if one is set.
    /// The action it describes has already happened, so a failure to record
    /// is logged, not returned (an admin must not retry a done deletion).
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) {
        let mut entry = AuditEntry {
            id: 0,
            at: self.now(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            before,
            after,
        };
        match self.store.insert_audit(&entry).await {
            Ok(id) => entry.id = id,
            Err(e) => tracing::error!(actor, action, target, "could not store an audit entry: {e}"),
        }
        self.metrics.audit_entries.inc();
        let sink = self.audit_sink.read().clone();
        if let Some(sink) = sink
            && let Err(e) = sink.write(&entry)
        {
            tracing::error!(
                sink = sink.describe(),
                "could not write an audit entry to the audit log sink: {e}"
            );
        }
    }

    /// Audit entries matching `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        Ok(self.store.list_audit(filter).await?)
    }

    /// Deletes audit entries older than `retention`; returns how many.
    pub async fn prune_audit(&self, retention: std::time::Duration) -> Result<u64> {
        let retention = chrono::Duration::from_std(retention)
            .map_err(|e| Error::Invalid(format!("audit retention {retention:?}: {e}")))?;
        Ok(self.store.prune_audit(self.now() - retention).await?)
    }

    /// Listeners beyond the map sessions (audit, metrics, replicas).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The compiled policy in force (a snapshot: cheap to hold).
    pub fn access(&self) -> Arc<Access> {
        self.access.read().clone()
    }

    // --- readers ---------------------------------------------------------

    pub fn node(&self, id: NodeId) -> Option<Arc<Node>> {
        self.inner.read().nodes.get(&id).cloned()
    }

    pub fn node_by_key(&self, key: &NodePublic) -> Option<Arc<Node>> {
        let inner = self.inner.read();
        inner
            .by_node_key
            .get(key)
            .and_then(|id| inner.nodes.get(id))
            .cloned()
    }

    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.inner.read().nodes.values().cloned().collect()
    }

    pub fn nodes_by_id(&self, ids: impl IntoIterator<Item = NodeId>) -> Vec<Arc<Node>> {
        let inner = self.inner.read();
        ids.into_iter()
            .filter_map(|id| inner.nodes.get(&id).cloned())
            .collect()
    }

    pub fn user(&self, id: UserId) -> Option<Arc<User>> {
        self.inner.read().users.get(&id).cloned()
    }

    pub fn users(&self) -> Vec<Arc<User>> {
        self.inner.read().users.values().cloned().collect()
    }

    /// Whether the node has a map session here or on another replica.
    pub fn is_online(&self, id: NodeId) -> bool {
        self.sessions.is_online(id) || self.cluster.is_remote_online(id)
    }

    /// The peers `node` receives in its map, sorted by id.
    pub fn peers_of(&self, node: &Node) -> Vec<Arc<Node>> {
        let ids = self.access().peers_of(node.id);
        self.nodes_by_id(ids)
    }

    pub fn packet_filter(&self, node: &Node) -> Vec<FilterRule> {
        self.access().packet_filter(node.id)
    }

    pub fn ssh_policy(&self, node: &Node) -> Option<SshPolicy> {
        self.access().ssh_policy(node.id)
    }

    // --- change propagation -------------------------------------------------

    /// Compiles the policy in force against the tailnet as it is now. On
    /// failure (only possible if the tailnet stops satisfying the policy,
    /// which checks at set time rule out) the previous compilation stays.
    fn recompile(&self) -> Arc<Access> {
        let started = std::time::Instant::now();
        let before = self.access();
        let (users, nodes) = {
            let inner = self.inner.read();
            (
                inner
                    .users
                    .values()
                    .map(|u| policy_user(u))
                    .collect::<Vec<_>>(),
                inner
                    .nodes
                    .values()
                    .map(|n| policy_node(n, self.routes_online(n.id)))
                    .collect::<Vec<_>>(),
            )
        };
        match Access::recompile_from(
            Some(&before),
            before.policy().cloned(),
            &users,
            &nodes,
            &self.settings.server_url,
        ) {
            Ok(a) => {
                self.metrics
                    .policy_compile
                    .observe(started.elapsed().as_secs_f64());
                let a = Arc::new(a);
                *self.access.write() = a.clone();
                a
            }
            Err(e) => {
                tracing::error!(
                    "the policy no longer compiles against the tailnet ({e}); keeping the previous compilation"
                );
                before
            }
        }
    }

    /// Applies a committed change of one node to memory and tells every
    /// session that can notice it: peers that gain, keep or lose it, the
    /// node itself, filters that name it, and routers whose primary routes
    /// moved. `old`/`new` are `None` for a node that did not exist / is gone.
    fn commit_node(&self, old: Option<&Node>, new: Option<Arc<Node>>) {
        let Some(id) = new.as_ref().map(|n| n.id).or(old.map(|n| n.id)) else {
            return;
        };
        {
            let mut inner = self.inner.write();
            match &new {
                Some(n) => inner.put_node(n.clone()),
                None => {
                    inner.remove_node(id);
                }
            }
        }
        let before = self.access();
        let online = self.routes_online(id);
        let facts = |n: Option<&Node>| n.map(|n| policy_node(n, online));
        let facts_changed = facts(old) != facts(new.as_deref());
        let after = if facts_changed {
            self.recompile()
        } else {
            before.clone()
        };

        let was: HashSet<NodeId> = old
            .map(|_| before.peers_of(id))
            .unwrap_or_default()
            .into_iter()
            .collect();
        let is: HashSet<NodeId> = new
            .as_ref()
            .map(|_| after.peers_of(id))
            .unwrap_or_default()
            .into_iter()
            .collect();
        let peer_visible_changed = match (old, new.as_deref()) {
            (Some(o), Some(n)) => facts_changed || peer_record_changed(o, n),
            _ => true,
        };
        for s in self.sessions.of(was.difference(&is).copied()) {
            s.update(|p| p.peer_removed(id));
        }
        if peer_visible_changed {
            for s in self.sessions.of(is.iter().copied()) {
                s.update(|p| p.peer_changed(id));
            }
        } else {
            for s in self.sessions.of(is.difference(&was).copied()) {
                s.update(|p| p.peer_changed(id));
            }
        }
        match &new {
            Some(_) => {
                if let Some(s) = self.sessions.get(id) {
                    s.update(|p| {
                        p.self_changed = true;
                        for gone in was.difference(&is) {
                            p.peer_removed(*gone);
                        }
                        for came in is.difference(&was) {
                            p.peer_changed(*came);
                        }
                    });
                }
            }
            None => {
                if let Some(s) = self.sessions.get(id) {
                    s.close();
                }
            }
        }
        if facts_changed {
            self.fan_out_recompile(&before, &after, id);
        }
        let event = match (old, &new) {
            (None, _) => Event::NodeAdded { node: id },
            (Some(_), None) => Event::NodeRemoved { node: id },
            _ => Event::NodeUpdated { node: id },
        };
        let _ = self.events.send(event);
    }

    /// After a recompile caused by `changed`: filters and SSH policies of the
    /// nodes that can notice, and the peers of routers whose primaries moved.
    fn fan_out_recompile(&self, before: &Access, after: &Access, changed: NodeId) {
        for s in self.sessions.of(before.affected_by(after, changed)) {
            s.update(|p| {
                p.packet_filter = true;
                p.ssh_policy = true;
            });
        }
        for router in before.routers_with_new_primaries(after) {
            for s in self.sessions.of(after.peers_of(router)) {
                s.update(|p| p.peer_changed(router));
            }
            if let Some(s) = self.sessions.get(router) {
                s.update(|p| p.self_changed = true);
            }
        }
    }

    /// Marks what each affected session must send, then tells other listeners.
    fn announce(&self, event: Event) {
        match &event {
            Event::NodeAdded { node } | Event::NodeUpdated { node } => {
                // Full node changes go through `commit_node`; this is for
                // listeners replaying events (other replicas).
                for s in self.sessions.of(self.access().peers_of(*node)) {
                    s.update(|p| p.peer_changed(*node));
                }
            }
            Event::NodeRemoved { node } => {
                for s in self.sessions.all() {
                    if s.node_id == *node {
                        s.close();
                    } else {
                        s.update(|p| p.peer_removed(*node));
                    }
                }
            }
            Event::NodePatched { change } => {
                for s in self.sessions.of(self.access().peers_of(change.node_id)) {
                    s.update(|p| p.patch(change));
                }
            }
            Event::UserChanged { .. } | Event::UserRemoved { .. } => {
                // Users are named in policies: recompile, and let every
                // session re-read its view.
                self.recompile();
                for s in self.sessions.all() {
                    s.update(|p| p.resync());
                }
            }
            Event::PolicyChanged => {
                for s in self.sessions.all() {
                    s.update(|p| p.resync());
                }
            }
            Event::DnsChanged => {
                for s in self.sessions.all() {
                    s.update(|p| p.dns = true);
                }
            }
            Event::DerpMapChanged => {
                for s in self.sessions.all() {
                    s.update(|p| p.derp_map = true);
                }
            }
        }
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    fn patch_peers(&self, change: PeerChange) {
        self.announce(Event::NodePatched { change });
    }

    fn mark_soft_dirty(&self, id: NodeId) {
        self.soft_dirty.lock().insert(id);
    }

    /// Writes soft state (endpoints, host info, disco key, last seen) that
    /// changed since the last flush, in one transaction. Runs periodically and
    /// at shutdown; a crash loses at most one interval of it, which clients
    /// re-send on reconnect anyway.
    pub async fn flush_soft_state(&self) -> Result<usize> {
        let _w = self.write.lock().await;
        let ids: Vec<NodeId> = self.soft_dirty.lock().drain().collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let nodes = self.nodes_by_id(ids.iter().copied());
        let result = async {
            let mut tx = self.store.begin().await?;
            for n in &nodes {
                tx.update_node_soft(n).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            // Keep them dirty for the next attempt.
            self.soft_dirty.lock().extend(ids);
            return Err(e.into());
        }
        Ok(nodes.len())
    }

    fn require_node(&self, id: NodeId) -> Result<Arc<Node>> {
        self.node(id).ok_or_else(|| Error::not_found("node", id))
    }

    fn require_user(&self, id: UserId) -> Result<Arc<User>> {
        self.user(id).ok_or_else(|| Error::not_found("user", id))
    }
}

/// Whether peers must be sent a node's full record again (as opposed to a
/// patch, or nothing): the fields of a peer entry other than the patchable
/// ones (endpoints, DERP home, disco key, online state).
fn peer_record_changed(old: &Node, new: &Node) -> bool {
    old.node_key != new.node_key
        || old.given_name != new.given_name
        || old.user_id != new.user_id
        || old.tags != new.tags
        || old.ipv4 != new.ipv4
        || old.ipv6 != new.ipv6
        || old.expiry != new.expiry
        || old.approved_routes != new.approved_routes
        || control::peer_visible_hostinfo(&old.hostinfo)
            != control::peer_visible_hostinfo(&new.hostinfo)
}

/// Tags must look like `tag:name` (letters, digits, hyphens; a letter first).
pub fn validate_tag(tag: &str) -> Result<()> {
    let Some(name) = tag.strip_prefix("tag:") else {
        return Err(Error::Invalid(format!(
            "tag {tag:?} must start with \"tag:\", e.g. tag:server"
        )));
    };
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(Error::Invalid(format!(
            "tag {tag:?} is not valid: after \"tag:\" use a letter, then letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// Validated, sorted, de-duplicated tags.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.trim();
        validate_tag(t)?;
        out.push(t.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests;

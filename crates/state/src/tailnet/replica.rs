//! Several replicas in front of one database.
//!
//! Every replica holds the whole tailnet in memory. Durable changes made by
//! another replica arrive as "something changed" notices (the SQL store sends
//! them with the transaction); [`Tailnet::reload_from_store`] then reads the
//! database and applies the difference to memory, telling this replica's map
//! sessions exactly as a local change would. Soft state (online, endpoints,
//! DERP home, host info) is not written on every change, so the replica that
//! holds a node's map session publishes it through the [`ChangeFeed`] and the
//! others apply it with [`Tailnet::apply_remote_soft`].
//!
//! The replica that holds a node's session is the authority for that node's
//! soft state; the database is the authority for everything else. A node is
//! online when any replica holds a session for it.
//!
//! This module speaks no SQL and no network: the server wiring carries the
//! notices.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use headway_proto::keys::DiscoPublic;
use headway_proto::tailcfg::{Hostinfo, PeerChange};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::{Tailnet, api_keys, peer_record_changed};
use crate::error::Result;
use crate::events::Event;
use crate::model::{Node, NodeId, User};
use crate::settings::PolicySource;

/// Where this replica publishes the soft state of the nodes connected to it.
/// Called on the request path: implementations queue and return at once.
pub trait ChangeFeed: Send + Sync + std::fmt::Debug {
    fn soft_changed(&self, state: SoftState);
    /// A client answered a router health probe that another replica sent
    /// (its id is not waiting here): pass it on.
    fn ping_answered(&self, _id: &str) {}
}

/// The soft state of one node, as the replica holding its session knows it.
/// Always complete (not a delta), so applying it twice or out of a burst is
/// harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftState {
    pub node: NodeId,
    /// Whether the publishing replica holds a session for the node.
    pub online: bool,
    pub disco_key: DiscoPublic,
    pub endpoints: Vec<SocketAddr>,
    pub home_derp: i32,
    pub cap_version: i32,
    pub hostname: String,
    /// Left out when the message would be too big for the carrier; the
    /// receiver then keeps what it has (the database catches up at the
    /// next soft-state flush and full reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostinfo: Option<Hostinfo>,
    pub last_seen: Option<DateTime<Utc>>,
}

impl SoftState {
    pub fn of(node: &Node, online: bool) -> Self {
        Self {
            node: node.id,
            online,
            disco_key: node.disco_key,
            endpoints: node.endpoints.clone(),
            home_derp: node.home_derp,
            cap_version: node.cap_version,
            hostname: node.hostname.clone(),
            hostinfo: Some(node.hostinfo.clone()),
            last_seen: node.last_seen,
        }
    }

    fn apply_to(&self, node: &mut Node) {
        node.disco_key = self.disco_key;
        node.endpoints = self.endpoints.clone();
        node.home_derp = self.home_derp;
        node.cap_version = self.cap_version;
        node.hostname = self.hostname.clone();
        if let Some(h) = &self.hostinfo {
            node.hostinfo = h.clone();
        }
        node.last_seen = self.last_seen;
    }
}

/// Copies the soft fields of `from` onto `to`.
fn keep_soft(to: &mut Node, from: &Node) {
    SoftState::of(from, false).apply_to(to);
}

/// The database keeps microseconds; memory may hold nanoseconds. Two
/// records are the same when they agree to the microsecond.
fn normalized_node(n: &Node) -> Node {
    let mut n = n.clone();
    n.created_at = n.created_at.trunc_subsecs(6);
    n.updated_at = n.updated_at.trunc_subsecs(6);
    n.expiry = n.expiry.map(|t| t.trunc_subsecs(6));
    n.last_seen = n.last_seen.map(|t| t.trunc_subsecs(6));
    n
}

fn normalized_user(u: &User) -> User {
    let mut u = u.clone();
    u.created_at = u.created_at.trunc_subsecs(6);
    u
}

/// What a replica knows about the others.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    feed: RwLock<Option<Arc<dyn ChangeFeed>>>,
    /// Nodes with a session on another replica, and which replicas.
    remote: RwLock<HashMap<NodeId, BTreeSet<String>>>,
    /// Soft state of nodes this replica has not loaded yet (the notice of
    /// their registration is still on its way).
    parked: Mutex<HashMap<NodeId, SoftState>>,
    /// The latest soft state published by a replica holding a session for
    /// the node, kept even while a (stale) session here outranks it: when
    /// that session ends, it is the truth.
    latest: Mutex<HashMap<NodeId, SoftState>>,
}

impl Cluster {
    pub(super) fn is_remote_online(&self, id: NodeId) -> bool {
        self.remote.read().get(&id).is_some_and(|r| !r.is_empty())
    }
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadStats {
    pub nodes_changed: usize,
    pub nodes_removed: usize,
    pub users_changed: usize,
    pub policy_changed: bool,
}

impl Tailnet {
    /// Publishes the soft state of nodes connected here from now on.
    pub fn set_change_feed(&self, feed: Arc<dyn ChangeFeed>) {
        *self.cluster.feed.write() = Some(feed);
    }

    /// Tells the feed (if any) about the soft state of a node connected here.
    pub(super) fn publish_soft(&self, id: NodeId) {
        let Some(feed) = self.cluster.feed.read().clone() else {
            return;
        };
        if let Some(node) = self.node(id) {
            feed.soft_changed(SoftState::of(&node, self.sessions.is_online(id)));
        }
    }

    /// Passes a probe answer on to the other replicas; false without any
    /// (one server: the id is simply unknown).
    pub(super) fn forward_ping_answer(&self, id: &str) -> bool {
        match self.cluster.feed.read().clone() {
            Some(feed) => {
                feed.ping_answered(id);
                true
            }
            None => false,
        }
    }

    /// The soft state of every node connected to this replica (what a
    /// replica that just started, or lost notices, asks for).
    pub fn local_soft_states(&self) -> Vec<SoftState> {
        self.nodes_by_id(self.sessions.online_nodes())
            .iter()
            .map(|n| SoftState::of(n, true))
            .collect()
    }

    /// Applies soft state published by replica `origin`.
    pub async fn apply_remote_soft(&self, origin: &str, s: SoftState) {
        let id = s.node;
        let w = self.write.lock().await;
        let was_online = self.is_online(id);
        let held_elsewhere = {
            let mut remote = self.cluster.remote.write();
            let set = remote.entry(id).or_default();
            if s.online {
                set.insert(origin.to_string());
            } else {
                set.remove(origin);
            }
            let held = !set.is_empty();
            if !held {
                remote.remove(&id);
            }
            held
        };
        // A replica letting go of a node that another replica now holds
        // (the client moved) speaks for it no more: its fields are older.
        let authoritative = s.online || !held_elsewhere;
        if s.online {
            self.cluster.latest.lock().insert(id, s.clone());
        } else if !held_elsewhere {
            self.cluster.latest.lock().remove(&id);
        }
        let Some(old) = self.node(id) else {
            if authoritative {
                self.cluster.parked.lock().insert(id, s);
            }
            return;
        };
        // The replica holding the session here is the authority.
        if authoritative && !self.sessions.is_online(id) {
            let mut node = (*old).clone();
            s.apply_to(&mut node);
            if node != *old {
                self.apply_soft_locked(&old, node);
            }
        }
        let now_online = self.is_online(id);
        drop(w);
        if was_online != now_online {
            self.remote_online_changed(id, now_online).await;
        }
    }

    /// The last session here ended while another replica holds one for the
    /// node (the client moved there): peers keep seeing it online, with the
    /// soft state that replica published. Returns false when no other
    /// replica holds the node.
    pub(super) async fn session_moved_away(&self, id: NodeId) -> bool {
        // One server (SQLite), or nobody else holds it: no lock to take.
        if !self.cluster.is_remote_online(id) {
            return false;
        }
        let _w = self.write.lock().await;
        if !self.cluster.is_remote_online(id) {
            return false;
        }
        // Tell the others this replica let go (they keep the node online).
        self.publish_soft(id);
        let latest = self.cluster.latest.lock().get(&id).cloned();
        if let (Some(s), Some(old)) = (latest, self.node(id)) {
            let mut node = (*old).clone();
            s.apply_to(&mut node);
            if node != *old {
                self.apply_soft_locked(&old, node);
            }
        }
        tracing::debug!(node.id = id, "node's session moved to another replica");
        true
    }

    /// Puts a node whose soft fields changed in memory and tells peers, as
    /// a map request here would.
    fn apply_soft_locked(&self, old: &Arc<Node>, node: Node) {
        let mut patch = PeerChange {
            node_id: node.id,
            ..Default::default()
        };
        let mut patched = false;
        if node.disco_key != old.disco_key {
            patch.disco_key = Some(node.disco_key);
            patched = true;
        }
        if node.endpoints != old.endpoints {
            patch.endpoints = Some(node.endpoints.clone());
            patched = true;
        }
        if node.home_derp != old.home_derp {
            patch.derp_region = node.home_derp;
            patched = true;
        }
        if node.cap_version != old.cap_version {
            patch.cap = node.cap_version;
            patched = true;
        }
        let node = Arc::new(node);
        if old.hostinfo.routable_ips != node.hostinfo.routable_ips
            || peer_record_changed(old, &node)
        {
            self.commit_node(Some(old), Some(node));
        } else {
            self.inner.write().put_node(node);
            if patched {
                self.patch_peers(patch);
            }
        }
    }

    /// A node came online or went offline through another replica.
    async fn remote_online_changed(&self, id: NodeId, online: bool) {
        let now = self.now();
        {
            let mut inner = self.inner.write();
            if online {
                inner.offline_since.remove(&id);
            } else {
                inner.offline_since.insert(id, now);
            }
        }
        let last_seen = if online {
            None
        } else {
            Some(self.node(id).and_then(|n| n.last_seen).unwrap_or(now))
        };
        self.patch_peers(PeerChange {
            node_id: id,
            online: Some(online),
            last_seen,
            ..Default::default()
        });
        self.online_changed(id).await;
        tracing::debug!(
            node.id = id,
            online,
            "node online state from another replica"
        );
    }

    /// The other replicas this one believes hold sessions.
    pub fn remote_replicas(&self) -> BTreeSet<String> {
        self.cluster
            .remote
            .read()
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// Replica `origin` is gone (stopped heartbeating, or said goodbye):
    /// the nodes only it held are offline. Returns how many went offline.
    pub async fn forget_replica(&self, origin: &str) -> usize {
        let affected: Vec<NodeId> = {
            let mut remote = self.cluster.remote.write();
            let ids: Vec<NodeId> = remote
                .iter()
                .filter(|(_, r)| r.contains(origin))
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                if let Some(r) = remote.get_mut(id) {
                    r.remove(origin);
                    if r.is_empty() {
                        remote.remove(id);
                    }
                }
            }
            ids
        };
        let mut offline = 0;
        for id in affected {
            if !self.cluster.is_remote_online(id) {
                self.cluster.latest.lock().remove(&id);
            }
            if !self.is_online(id) {
                offline += 1;
                self.remote_online_changed(id, false).await;
            }
        }
        offline
    }

    /// Reads the database and applies what differs from memory, telling the
    /// sessions here what changed. `full` (at start, after the notice
    /// channel was lost) also takes the soft state of nodes connected
    /// elsewhere from the database, since notices about it may be lost.
    pub async fn reload_from_store(&self, full: bool) -> Result<ReloadStats> {
        // Under the writer lock: a local change committed after the read
        // must not be undone by applying an older snapshot.
        let _w = self.write.lock().await;
        let snapshot = self.store.load().await?;
        let mut stats = ReloadStats::default();

        let mut changed_user = None;
        {
            let mut inner = self.inner.write();
            let fresh: HashMap<_, _> = snapshot.users.into_iter().map(|u| (u.id, u)).collect();
            let gone: Vec<_> = inner
                .users
                .keys()
                .filter(|id| !fresh.contains_key(id))
                .copied()
                .collect();
            for id in gone {
                inner.users.remove(&id);
                stats.users_changed += 1;
                changed_user = Some(id);
            }
            for (id, u) in fresh {
                let same = inner
                    .users
                    .get(&id)
                    .is_some_and(|m| normalized_user(m) == normalized_user(&u));
                if !same {
                    inner.users.insert(id, Arc::new(u));
                    stats.users_changed += 1;
                    changed_user = Some(id);
                }
            }
            inner.keys.clear();
            inner.key_by_prefix.clear();
            for k in snapshot.preauth_keys {
                inner.put_key(k);
            }
        }
        *self.api_keys.write() = api_keys::ApiKeys::load(snapshot.api_keys);
        self.oauth.write().replace_clients(snapshot.oauth_clients);

        let mut fresh: HashMap<NodeId, Node> =
            snapshot.nodes.into_iter().map(|n| (n.id, n)).collect();
        let in_memory = self.nodes();
        for old in &in_memory {
            match fresh.remove(&old.id) {
                None => {
                    self.soft_dirty.lock().remove(&old.id);
                    self.cluster.remote.write().remove(&old.id);
                    self.cluster.latest.lock().remove(&old.id);
                    self.commit_node(Some(old), None);
                    stats.nodes_removed += 1;
                }
                Some(mut n) => {
                    let local = self.sessions.is_online(old.id);
                    if local || !full {
                        keep_soft(&mut n, old);
                    }
                    if normalized_node(&n) != normalized_node(old) {
                        self.commit_node(Some(old), Some(Arc::new(n)));
                        stats.nodes_changed += 1;
                    }
                }
            }
        }
        let now = self.now();
        let mut added: Vec<Node> = fresh.into_values().collect();
        added.sort_by_key(|n| n.id);
        for mut n in added {
            if let Some(s) = self.cluster.parked.lock().remove(&n.id) {
                s.apply_to(&mut n);
            }
            if !self.is_online(n.id) {
                self.inner.write().offline_since.insert(n.id, now);
            }
            self.commit_node(None, Some(Arc::new(n)));
            stats.nodes_changed += 1;
        }
        self.cluster.parked.lock().clear();

        if let Some(user) = changed_user {
            self.announce(Event::UserChanged { user });
        }
        if matches!(self.settings.policy_source, PolicySource::Database) {
            let stored = snapshot.policy.map(|p| (p.text, p.updated_at));
            let current = self.policy.read().text.clone();
            let stored_text = stored.as_ref().map(|(t, _)| t.as_str()).unwrap_or("");
            if current.as_deref().unwrap_or("").trim() != stored_text.trim() {
                let at = stored.as_ref().map(|(_, at)| *at).unwrap_or(now);
                match self.install_policy(stored_text, at) {
                    Ok(()) => stats.policy_changed = true,
                    Err(e) => tracing::error!(
                        "the policy another replica stored does not compile here ({e}); keeping the previous one"
                    ),
                }
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use headway_proto::keys::{MachinePublic, NodePublic};
    use headway_proto::tailcfg::{MapRequest, RegisterRequest, RegisterResponseAuth};

    use super::*;
    use crate::clock::ManualClock;
    use crate::memstore::MemStore;
    use crate::settings::Settings;
    use crate::tailnet::{NewPreAuthKey, NewUser};

    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<SoftState>>);
    impl ChangeFeed for Collect {
        fn soft_changed(&self, state: SoftState) {
            self.0.lock().push(state);
        }
    }

    async fn replica(store: &MemStore) -> Arc<Tailnet> {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ));
        Tailnet::load(Arc::new(store.clone()), clock, Settings::default())
            .await
            .unwrap()
    }

    fn req(n: u8, key: &str) -> RegisterRequest {
        RegisterRequest {
            version: 133,
            node_key: NodePublic([n; 32]),
            auth: Some(RegisterResponseAuth {
                auth_key: key.into(),
                ..Default::default()
            }),
            hostinfo: Some(Hostinfo {
                hostname: format!("host{n}"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_replica_follows_another_through_the_store_and_soft_notices() {
        let store = MemStore::default();
        let a = replica(&store).await;
        let b = replica(&store).await;
        let feed = Arc::new(Collect::default());
        a.set_change_feed(feed.clone());

        let user = a
            .create_user(NewUser {
                name: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let (_, key) = a
            .create_preauth_key(NewPreAuthKey {
                user: Some(user.id),
                reusable: true,
                ..Default::default()
            })
            .await
            .unwrap();
        a.register(MachinePublic([1; 32]), &req(1, &key))
            .await
            .unwrap();
        a.register(MachinePublic([2; 32]), &req(2, &key))
            .await
            .unwrap();
        let stats = b.reload_from_store(false).await.unwrap();
        assert_eq!((stats.nodes_changed, stats.users_changed), (2, 1));
        assert_eq!(b.nodes().len(), 2);
        // Nothing differs now: a second reload changes nothing (timestamps
        // compare to the microsecond, as the database keeps them).
        assert_eq!(
            b.reload_from_store(false).await.unwrap(),
            ReloadStats::default()
        );
        let (n1, n2) = (a.nodes()[0].id, a.nodes()[1].id);

        // Node 2 is connected to B; node 1 gets renamed through A.
        let s2 = b.open_session(n2).await;
        s2.take();
        a.rename_node(n1, "renamed").await.unwrap();
        let stats = b.reload_from_store(false).await.unwrap();
        assert_eq!(stats.nodes_changed, 1);
        assert_eq!(b.node(n1).unwrap().given_name, "renamed");
        assert!(s2.take().peers_changed.contains(&n1));

        // Node 1 comes online on A: A publishes, B applies.
        let _s1 = a.open_session(n1).await;
        let published = feed.0.lock().pop().unwrap();
        assert!(published.online && published.node == n1);
        assert!(!b.is_online(n1));
        let mut with_endpoints = published.clone();
        with_endpoints.endpoints = vec!["192.0.2.1:41641".parse().unwrap()];
        b.apply_remote_soft("replica-a", with_endpoints).await;
        assert!(b.is_online(n1));
        assert_eq!(b.node(n1).unwrap().endpoints.len(), 1);
        let p = s2.take();
        assert_eq!(p.patches[&n1].online, Some(true), "{p:?}");
        // The endpoints B learnt survive a reload of the (older) stored row.
        b.reload_from_store(false).await.unwrap();
        assert_eq!(b.node(n1).unwrap().endpoints.len(), 1);

        // A dies: B forgets its sessions, node 1 goes offline.
        assert_eq!(b.forget_replica("replica-a").await, 1);
        assert!(!b.is_online(n1));
        assert_eq!(s2.take().patches[&n1].online, Some(false));
        // Node 2, connected to B itself, is not A's to take offline.
        b.apply_remote_soft("replica-a", SoftState::of(&b.node(n2).unwrap(), false))
            .await;
        assert!(b.is_online(n2));

        // Policy and deletions travel too.
        a.set_policy(r#"{"acls":[{"action":"accept","src":["*"],"dst":["*:22"]}]}"#)
            .await
            .unwrap();
        a.delete_node(n1).await.unwrap();
        let stats = b.reload_from_store(false).await.unwrap();
        assert!(stats.policy_changed);
        assert_eq!(stats.nodes_removed, 1);
        assert!(b.policy_info().text.unwrap().contains("*:22"));
        let p = s2.take();
        assert!(p.full || p.peers_removed.contains(&n1), "{p:?}");
    }

    /// A client moves from replica A to replica B before A notices its old
    /// session is gone: nobody sees it offline, and nobody takes A's older
    /// disco key over B's.
    #[tokio::test]
    async fn a_client_moving_between_replicas_stays_online_with_its_new_state() {
        let store = MemStore::default();
        let (a, b, c) = (
            replica(&store).await,
            replica(&store).await,
            replica(&store).await,
        );
        let (feed_a, feed_b) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
        a.set_change_feed(feed_a.clone());
        b.set_change_feed(feed_b.clone());
        let user = a
            .create_user(NewUser {
                name: "carol".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let (_, key) = a
            .create_preauth_key(NewPreAuthKey {
                user: Some(user.id),
                reusable: true,
                ..Default::default()
            })
            .await
            .unwrap();
        a.register(MachinePublic([4; 32]), &req(4, &key))
            .await
            .unwrap();
        a.register(MachinePublic([5; 32]), &req(5, &key))
            .await
            .unwrap();
        b.reload_from_store(false).await.unwrap();
        c.reload_from_store(false).await.unwrap();
        let moving = a.nodes()[0].id;
        let watcher = a.nodes()[1].id;
        let on_c = c.open_session(watcher).await;

        // On A first.
        let old_session = a.open_session(moving).await;
        let from_a = std::mem::take(&mut *feed_a.0.lock());
        for s in from_a {
            b.apply_remote_soft("a", s.clone()).await;
            c.apply_remote_soft("a", s).await;
        }
        assert!(c.is_online(moving) && b.is_online(moving));
        on_c.take();

        // Then on B, with a new disco key, while A's session lingers.
        let _new_session = b.open_session(moving).await;
        let map = MapRequest {
            version: 133,
            node_key: NodePublic([4; 32]),
            disco_key: DiscoPublic([44; 32]),
            ..Default::default()
        };
        b.apply_map_request(MachinePublic([4; 32]), &map)
            .await
            .unwrap();
        let from_b = std::mem::take(&mut *feed_b.0.lock());
        for s in from_b {
            a.apply_remote_soft("b", s.clone()).await;
            c.apply_remote_soft("b", s).await;
        }
        assert_eq!(c.node(moving).unwrap().disco_key, DiscoPublic([44; 32]));

        // A's old session ends at last.
        a.close_session(&old_session).await;
        assert!(a.is_online(moving), "A must know B holds the node");
        assert_eq!(a.node(moving).unwrap().disco_key, DiscoPublic([44; 32]));
        let from_a = std::mem::take(&mut *feed_a.0.lock());
        assert!(from_a.iter().any(|s| s.node == moving && !s.online));
        for s in from_a {
            c.apply_remote_soft("a", s).await;
        }
        assert!(c.is_online(moving));
        assert_eq!(c.node(moving).unwrap().disco_key, DiscoPublic([44; 32]));
        let seen = on_c.take();
        assert!(
            seen.patches
                .get(&moving)
                .is_none_or(|p| p.online != Some(false)),
            "{seen:?}"
        );

        // B goes away for good: now the node is offline everywhere.
        assert_eq!(c.forget_replica("b").await, 1);
        assert!(!c.is_online(moving));
        assert_eq!(on_c.take().patches[&moving].online, Some(false));
    }

    #[derive(Debug, Default)]
    struct Answers(Mutex<Vec<String>>);
    impl ChangeFeed for Answers {
        fn soft_changed(&self, _: SoftState) {}
        fn ping_answered(&self, id: &str) {
            self.0.lock().push(id.to_string());
        }
    }

    /// A router's answer to a health probe reaches whichever replica the
    /// load balancer picks; the one that sent the probe must still get it.
    #[tokio::test]
    async fn a_probe_answer_reaching_another_replica_is_passed_on() {
        let store = MemStore::default();
        let (a, b) = (replica(&store).await, replica(&store).await);
        let user = a
            .create_user(NewUser {
                name: "dave".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let (_, key) = a
            .create_preauth_key(NewPreAuthKey {
                user: Some(user.id),
                ..Default::default()
            })
            .await
            .unwrap();
        a.register(MachinePublic([6; 32]), &req(6, &key))
            .await
            .unwrap();
        let router = a.nodes()[0].id;
        let _session = a.open_session(router).await;
        let ping = a.ping_node(router).unwrap();

        // One server: an id not waiting is unknown.
        assert!(!b.answer_ping(&ping.id));
        // Several: B passes it on, A completes the probe.
        let feed = Arc::new(Answers::default());
        b.set_change_feed(feed.clone());
        assert!(b.answer_ping(&ping.id));
        let forwarded = feed.0.lock().pop().unwrap();
        assert_eq!(forwarded, ping.id);
        assert!(!b.answer_forwarded_ping(&forwarded), "not B's probe");
        assert!(a.answer_forwarded_ping(&forwarded));
        ping.answered.await.unwrap();
        // Once only.
        assert!(!a.answer_forwarded_ping(&forwarded));
    }

    #[tokio::test]
    async fn soft_state_of_a_node_not_loaded_yet_waits_for_its_row() {
        let store = MemStore::default();
        let a = replica(&store).await;
        let b = replica(&store).await;
        let user = a
            .create_user(NewUser {
                name: "bob".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let (_, key) = a
            .create_preauth_key(NewPreAuthKey {
                user: Some(user.id),
                ..Default::default()
            })
            .await
            .unwrap();
        a.register(MachinePublic([3; 32]), &req(3, &key))
            .await
            .unwrap();
        let mut s = SoftState::of(&a.nodes()[0], true);
        s.home_derp = 999;
        b.apply_remote_soft("replica-a", s).await;
        b.reload_from_store(false).await.unwrap();
        let id = a.nodes()[0].id;
        assert!(b.is_online(id));
        assert_eq!(b.node(id).unwrap().home_derp, 999);
    }
}

//! Change propagation to connected map sessions.
//!
//! Every open streaming `/machine/map` request is a [`Session`]. A change is
//! not pushed as bytes: it marks what the session must tell its client in the
//! session's [`Pending`] set, and wakes it. The session then builds one message
//! from the current state. Bursts collapse (ten endpoint changes of one peer
//! become one patch, latest wins), a slow client accumulates at most one entry
//! per peer instead of an unbounded queue, and nothing stale is ever sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use headway_proto::tailcfg::{PeerChange, PingRequest};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::metrics::{KindLabel, Metrics};
use crate::model::NodeId;

/// What a session still has to tell its client.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pending {
    /// Resend everything (policy change, resync after trouble).
    pub full: bool,
    /// The receiving node's own record changed.
    pub self_changed: bool,
    /// Peers to send as full objects (`PeersChanged`): new or changed.
    pub peers_changed: BTreeSet<NodeId>,
    /// Peers gone (`PeersRemoved`).
    pub peers_removed: BTreeSet<NodeId>,
    /// Small per-peer changes (`PeersChangedPatch`), merged, latest wins.
    pub patches: BTreeMap<NodeId, PeerChange>,
    pub packet_filter: bool,
    pub dns: bool,
    pub derp_map: bool,
    pub ssh_policy: bool,
    pub user_profiles: bool,
}

/// Peer entries a pending set holds before it becomes a full resync. A
/// session that has not sent for this long (its connection gone, or its
/// client far behind) is cheaper to send a full map than a delta this big,
/// and it stops collecting: in a reconnect storm every dropped connection
/// announces itself offline to every session not yet closed, which would
/// otherwise hold N²/2 patches at once.
pub const MAX_PENDING_PEERS: usize = 256;

impl Pending {
    pub fn is_empty(&self) -> bool {
        *self == Pending::default()
    }

    /// A full resync instead, once the set holds too many peers.
    fn bound(&mut self) {
        if self.patches.len() + self.peers_changed.len() + self.peers_removed.len()
            > MAX_PENDING_PEERS
        {
            self.resync();
        }
    }

    pub fn peer_changed(&mut self, id: NodeId) {
        if self.full {
            return;
        }
        self.peers_removed.remove(&id);
        // The full object carries the patchable fields too.
        self.patches.remove(&id);
        self.peers_changed.insert(id);
        self.bound();
    }

    pub fn peer_removed(&mut self, id: NodeId) {
        if self.full {
            return;
        }
        self.peers_changed.remove(&id);
        self.patches.remove(&id);
        self.peers_removed.insert(id);
        self.bound();
    }

    pub fn patch(&mut self, change: &PeerChange) {
        if self.full
            || self.peers_changed.contains(&change.node_id)
            || self.peers_removed.contains(&change.node_id)
        {
            return;
        }
        match self.patches.get_mut(&change.node_id) {
            Some(p) => p.merge(change.clone()),
            None => {
                self.patches.insert(change.node_id, change.clone());
                self.bound();
            }
        }
    }

    pub fn resync(&mut self) {
        *self = Pending {
            full: true,
            ..Pending::default()
        };
    }
}

/// One open streaming map request.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub node_id: NodeId,
    /// What to send, and since when something has been waiting (for the
    /// map update latency metric).
    pending: Mutex<(Pending, Option<Instant>)>,
    /// A request for the client to call a URL back (health probes); sent
    /// on its own, not merged into the shared deltas.
    ping: Mutex<Option<PingRequest>>,
    notify: Notify,
    closed: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Session {
    /// Marks something to send and wakes the session.
    pub fn update(&self, f: impl FnOnce(&mut Pending)) {
        {
            let mut p = self.pending.lock();
            p.1.get_or_insert_with(Instant::now);
            f(&mut p.0);
        }
        self.notify.notify_one();
    }

    /// Takes everything pending (leaving nothing), to build one message
    /// from; counts it as a map update and how long it waited.
    pub fn take(&self) -> Pending {
        let (pending, since) = std::mem::take(&mut *self.pending.lock());
        if let Some(since) = since.filter(|_| !pending.is_empty()) {
            let kind = if pending.full { "full" } else { "delta" };
            self.metrics.map_update_sent(kind, since.elapsed());
        }
        pending
    }

    /// The session is about to read the tailnet for its first full map:
    /// what was marked until now is in that map, so it is dropped; what is
    /// marked from now on is sent after it. Until this is called, a new
    /// session's pending set is `full` and every change to it is a no-op,
    /// so a reconnect storm does not pile a patch per peer on each of the
    /// sessions still waiting for their map (N² patches held in memory).
    pub fn start_initial_map(&self) {
        *self.pending.lock() = (Pending::default(), None);
    }

    /// Asks the client to call `request.url` back; wakes the session.
    pub fn ping(&self, request: PingRequest) {
        *self.ping.lock() = Some(request);
        self.notify.notify_one();
    }

    /// The ping request to send, if any (leaving none).
    pub fn take_ping(&self) -> Option<PingRequest> {
        self.ping.lock().take()
    }

    /// Resolves when there is something pending or the session was closed.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// Ends the session (replaced by a newer one, node deleted, shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// All open sessions, by node.
#[derive(Debug, Default)]
pub struct Sessions {
    by_node: RwLock<HashMap<NodeId, Arc<Session>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Sessions {
    /// Sessions that count their map updates in `metrics`.
    pub fn with_metrics(metrics: Metrics) -> Self {
        Sessions {
            metrics: Arc::new(metrics),
            ..Sessions::default()
        }
    }

    /// Opens a session for `node_id`. A session the node already had is closed:
    /// a new streaming request replaces the old one. Returns the session and
    /// whether the node was offline before (it has just come online).
    pub fn open(&self, node_id: NodeId) -> (Arc<Session>, bool) {
        let session = Arc::new(Session {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            node_id,
            // Nothing is collected for it until it starts building its
            // first map (`start_initial_map`): that map will hold it all.
            pending: Mutex::new((
                Pending {
                    full: true,
                    ..Pending::default()
                },
                None,
            )),
            ping: Mutex::new(None),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            metrics: self.metrics.clone(),
        });
        // Its first message is the full map (built by the server right away).
        self.metrics
            .map_updates_sent
            .get_or_create(&KindLabel { kind: "initial" })
            .inc();
        let old = self.by_node.write().insert(node_id, session.clone());
        let came_online = match old {
            Some(old) => {
                old.close();
                false
            }
            None => true,
        };
        (session, came_online)
    }

    /// Forgets a session. Returns true when the node has no session left
    /// (it has just gone offline).
    pub fn close(&self, session: &Session) -> bool {
        session.close();
        let mut map = self.by_node.write();
        match map.get(&session.node_id) {
            Some(current) if current.id == session.id => {
                map.remove(&session.node_id);
                true
            }
            _ => false,
        }
    }

    pub fn is_online(&self, node_id: NodeId) -> bool {
        self.by_node.read().contains_key(&node_id)
    }

    pub fn get(&self, node_id: NodeId) -> Option<Arc<Session>> {
        self.by_node.read().get(&node_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_node.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sessions of the given nodes (those that have one).
    pub fn of(&self, nodes: impl IntoIterator<Item = NodeId>) -> Vec<Arc<Session>> {
        let map = self.by_node.read();
        nodes
            .into_iter()
            .filter_map(|id| map.get(&id).cloned())
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.by_node.read().values().cloned().collect()
    }

    /// Node ids with an open session.
    pub fn online_nodes(&self) -> Vec<NodeId> {
        self.by_node.read().keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_collapses_patches_and_full_objects() {
        let mut p = Pending::default();
        p.patch(&PeerChange {
            node_id: 2,
            derp_region: 900,
            ..Default::default()
        });
        p.patch(&PeerChange {
            node_id: 2,
            online: Some(true),
            ..Default::default()
        });
        assert_eq!(p.patches.len(), 1);
        assert_eq!(p.patches[&2].derp_region, 900);
        p.peer_changed(2);
        assert!(p.patches.is_empty());
        // A patch after a pending full object is redundant.
        p.patch(&PeerChange {
            node_id: 2,
            online: Some(false),
            ..Default::default()
        });
        assert!(p.patches.is_empty());
        p.peer_removed(2);
        assert!(p.peers_changed.is_empty());
        assert!(p.peers_removed.contains(&2));
        p.peer_changed(2);
        assert!(!p.peers_removed.contains(&2));
        p.resync();
        p.peer_changed(3);
        assert!(p.full && p.peers_changed.is_empty());
    }

    #[test]
    fn newer_session_replaces_older_and_online_follows() {
        let s = Sessions::default();
        let (a, online) = s.open(1);
        assert!(online);
        let (b, online) = s.open(1);
        assert!(!online);
        assert!(a.is_closed());
        // The replaced session going away does not take the node offline.
        assert!(!s.close(&a));
        assert!(s.is_online(1));
        assert!(s.close(&b));
        assert!(!s.is_online(1));
    }

    #[test]
    fn a_new_session_collects_nothing_until_it_starts_its_first_map() {
        let s = Sessions::default();
        let (a, _) = s.open(1);
        for peer in 2..1000 {
            a.update(|p| {
                p.patch(&PeerChange {
                    node_id: peer,
                    online: Some(true),
                    ..Default::default()
                });
                p.peer_changed(peer);
            });
        }
        {
            let held = a.pending.lock();
            assert!(held.0.full && held.0.patches.is_empty() && held.0.peers_changed.is_empty());
        }
        // The first map reads the tailnet after this: later changes count.
        a.start_initial_map();
        a.update(|p| p.peer_changed(7));
        let p = a.take();
        assert!(!p.full && p.peers_changed.contains(&7) && p.patches.is_empty());
    }

    #[test]
    fn a_session_far_behind_gets_a_full_map_instead_of_a_growing_delta() {
        let mut p = Pending::default();
        for peer in 1..=MAX_PENDING_PEERS as NodeId {
            p.patch(&PeerChange {
                node_id: peer,
                online: Some(false),
                ..Default::default()
            });
        }
        assert!(!p.full && p.patches.len() == MAX_PENDING_PEERS);
        // Joins and removals count too.
        let mut q = p.clone();
        q.peer_removed(100_000);
        assert!(q.full && q.patches.is_empty() && q.peers_removed.is_empty());
        p.patch(&PeerChange {
            node_id: 100_001,
            online: Some(false),
            ..Default::default()
        });
        assert!(p.full && p.patches.is_empty(), "one more peer: a resync");
        // Collecting stops: a full map holds everything.
        p.peer_changed(100_002);
        assert_eq!(
            p,
            Pending {
                full: true,
                ..Pending::default()
            }
        );
    }

    #[tokio::test]
    async fn update_wakes_the_session() {
        let s = Sessions::default();
        let (a, _) = s.open(1);
        a.update(|p| p.dns = true);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.changed())
            .await
            .unwrap();
        assert!(a.take().dns);
        assert!(a.take().is_empty());
    }
}

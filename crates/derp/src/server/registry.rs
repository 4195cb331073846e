//! Who is connected: node key → connections, mesh forwarders and watchers, and who
//! must hear `PeerGone` when a key leaves.
//!
//! A key may be connected more than once (a client reconnecting before its old
//! TCP connection died, or a cloned key). All its connections stay open; packets
//! go to the active one: the newest, or whichever spoke last.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use headway_proto::keys::NodePublic;
use tokio_util::sync::CancellationToken;

use super::outbox::{Control, Outbox};
use super::{lock, read, write};
use crate::frame::{PeerGoneReason, peer_present_flags};

/// Something that can deliver a packet to a node connected elsewhere in the
/// region: a mesh link to another DERP server.
///
/// `forward_packet` is called on the sender's read path and must not block:
/// queue the packet (or drop it) and return.
pub trait PacketForwarder: Send + Sync + 'static {
    fn forward_packet(
        &self,
        src: NodePublic,
        dst: NodePublic,
        packet: Bytes,
    ) -> Result<(), ForwardError>;
}

/// A mesh forwarder could not take a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("mesh link to the DERP peer is down")]
    LinkDown,
    #[error("mesh link queue to the DERP peer is full")]
    QueueFull,
}

/// One accepted, authenticated connection as others see it.
pub(crate) struct ClientHandle {
    pub id: u64,
    pub key: NodePublic,
    pub remote: Option<SocketAddr>,
    pub can_mesh: bool,
    pub is_prober: bool,
    pub outbox: Outbox,
    /// True while another connection shares this key (enables the activity check).
    pub is_dup: AtomicBool,
    pub preferred: AtomicBool,
    /// Cancelled to make the connection hang up (ClosePeer, server shutdown).
    pub closed: CancellationToken,
    /// Keys this connection has received packets from (its `PeerGone` subscriptions).
    pub sources: Mutex<HashSet<NodePublic>>,
}

impl ClientHandle {
    pub fn presence_flags(&self) -> u8 {
        let mut f = 0;
        if self.is_prober {
            f |= peer_present_flags::PROBER;
        }
        if self.can_mesh {
            f |= peer_present_flags::MESH_PEER;
        }
        if f == 0 {
            peer_present_flags::REGULAR
        } else {
            f
        }
    }
}

/// Where a packet for a key goes.
pub(crate) enum Route {
    Local(Arc<ClientHandle>),
    Mesh(Arc<dyn PacketForwarder>),
    Unknown,
}

struct ClientSet {
    /// Oldest first.
    conns: Vec<Arc<ClientHandle>>,
    active: Arc<ClientHandle>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<NodePublic, ClientSet>,
    /// Mesh forwarders per key; the first registered is preferred.
    forwarders: HashMap<NodePublic, Vec<Arc<dyn PacketForwarder>>>,
    /// Mesh peers subscribed to connection changes.
    watchers: HashMap<u64, Arc<ClientHandle>>,
}

impl Inner {
    fn broadcast(&self, c: &Control, except: u64) {
        for w in self.watchers.values().filter(|w| w.id != except) {
            w.outbox.push_control(c.clone());
        }
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    inner: RwLock<Inner>,
    /// source key → connections that received packets from it.
    peer_gone_subscribers: Mutex<HashMap<NodePublic, HashMap<u64, Weak<ClientHandle>>>>,
}

impl Registry {
    pub fn route(&self, dst: &NodePublic) -> Route {
        let inner = read(&self.inner);
        if let Some(set) = inner.clients.get(dst) {
            return Route::Local(set.active.clone());
        }
        match inner.forwarders.get(dst).and_then(|f| f.first()) {
            Some(fwd) => Route::Mesh(fwd.clone()),
            None => Route::Unknown,
        }
    }

    pub fn is_connected(&self, key: &NodePublic) -> bool {
        read(&self.inner).clients.contains_key(key)
    }

    /// Adds a connection and makes it the active one for its key; returns whether
    /// the key was already connected.
    pub fn register(&self, h: &Arc<ClientHandle>) -> bool {
        let mut inner = write(&self.inner);
        let duplicate = match inner.clients.get_mut(&h.key) {
            Some(set) => {
                set.conns.push(h.clone());
                set.active = h.clone();
                for c in &set.conns {
                    c.is_dup.store(true, Ordering::Relaxed);
                }
                true
            }
            None => {
                inner.clients.insert(
                    h.key,
                    ClientSet {
                        conns: vec![h.clone()],
                        active: h.clone(),
                    },
                );
                false
            }
        };
        let present = Control::PeerPresent {
            key: h.key,
            addr: h.remote,
            flags: h.presence_flags(),
        };
        inner.broadcast(&present, h.id);
        duplicate
    }

    /// Removes a connection. When its key has left the region (no connection here,
    /// no mesh forwarder), returns the connections to tell with `PeerGone`.
    pub fn unregister(&self, h: &Arc<ClientHandle>) -> Vec<Arc<ClientHandle>> {
        let gone = {
            let mut inner = write(&self.inner);
            inner.watchers.remove(&h.id);
            let mut key_left = false;
            if let Some(set) = inner.clients.get_mut(&h.key) {
                set.conns.retain(|c| c.id != h.id);
                match set.conns.last() {
                    None => key_left = true,
                    Some(newest) => {
                        if set.active.id == h.id {
                            set.active = newest.clone();
                        }
                        if set.conns.len() == 1 {
                            newest.is_dup.store(false, Ordering::Relaxed);
                        }
                    }
                }
            }
            if key_left {
                inner.clients.remove(&h.key);
                inner.broadcast(
                    &Control::PeerGone(h.key, PeerGoneReason::Disconnected),
                    h.id,
                );
            }
            key_left && !inner.forwarders.contains_key(&h.key)
        };

        let mut subs = lock(&self.peer_gone_subscribers);
        for src in lock(&h.sources).iter() {
            if let Some(m) = subs.get_mut(src) {
                m.remove(&h.id);
                if m.is_empty() {
                    subs.remove(src);
                }
            }
        }
        if !gone {
            return Vec::new();
        }
        subs.remove(&h.key)
            .map(|m| m.into_values().filter_map(|w| w.upgrade()).collect())
            .unwrap_or_default()
    }

    /// Makes a duplicate connection that is sending the active one ("last writer wins").
    pub fn note_activity(&self, h: &Arc<ClientHandle>) {
        if !h.is_dup.load(Ordering::Relaxed) {
            return;
        }
        if read(&self.inner)
            .clients
            .get(&h.key)
            .is_some_and(|s| s.active.id == h.id)
        {
            return;
        }
        if let Some(set) = write(&self.inner).clients.get_mut(&h.key)
            && set.conns.iter().any(|c| c.id == h.id)
        {
            set.active = h.clone();
        }
    }

    /// Notes that `h` was sent a packet from `src`, so that it hears when `src` leaves.
    pub fn subscribe_peer_gone(&self, src: NodePublic, h: &Arc<ClientHandle>) {
        lock(&self.peer_gone_subscribers)
            .entry(src)
            .or_default()
            .insert(h.id, Arc::downgrade(h));
    }

    /// Subscribes a mesh peer to connection changes, starting with everyone else connected now.
    pub fn add_watcher(&self, h: &Arc<ClientHandle>) {
        let mut inner = write(&self.inner);
        for set in inner.clients.values().filter(|s| s.active.key != h.key) {
            let a = &set.active;
            h.outbox.push_control(Control::PeerPresent {
                key: a.key,
                addr: a.remote,
                flags: a.presence_flags(),
            });
        }
        inner.watchers.insert(h.id, h.clone());
    }

    /// Hangs up every connection of `key`; returns how many there were.
    pub fn close_peer(&self, key: &NodePublic) -> usize {
        let inner = read(&self.inner);
        let Some(set) = inner.clients.get(key) else {
            return 0;
        };
        for c in &set.conns {
            c.closed.cancel();
        }
        set.conns.len()
    }

    pub fn add_forwarder(&self, dst: NodePublic, fwd: Arc<dyn PacketForwarder>) {
        let mut inner = write(&self.inner);
        let list = inner.forwarders.entry(dst).or_default();
        if !list.iter().any(|f| Arc::ptr_eq(f, &fwd)) {
            list.push(fwd);
        }
    }

    /// Removes a forwarder; returns the connections to tell with `PeerGone` when
    /// that was the key's last trace in the region.
    pub fn remove_forwarder(
        &self,
        dst: &NodePublic,
        fwd: &Arc<dyn PacketForwarder>,
    ) -> Vec<Arc<ClientHandle>> {
        {
            let mut inner = write(&self.inner);
            let Some(list) = inner.forwarders.get_mut(dst) else {
                return Vec::new();
            };
            list.retain(|f| !Arc::ptr_eq(f, fwd));
            if !list.is_empty() {
                return Vec::new();
            }
            inner.forwarders.remove(dst);
            if inner.clients.contains_key(dst) {
                return Vec::new();
            }
        }
        lock(&self.peer_gone_subscribers)
            .remove(dst)
            .map(|m| m.into_values().filter_map(|w| w.upgrade()).collect())
            .unwrap_or_default()
    }

    /// Every connection (to hang them all up at shutdown).
    pub fn all_connections(&self) -> Vec<Arc<ClientHandle>> {
        read(&self.inner)
            .clients
            .values()
            .flat_map(|s| s.conns.iter().cloned())
            .collect()
    }

    pub fn unique_clients(&self) -> usize {
        read(&self.inner).clients.len()
    }
}

//! Work shared between sessions: a change reaches every session that sees the
//! changed node, and without a policy (or for viewers the policy treats
//! alike) they all need the same message. Instead of building and encoding
//! it once per receiver, a session resolves what its message depends on
//! ([`DeltaInputs`]: the peer records by identity, their online state, the
//! routes it sees through them) and looks the encoded frame up by that in a
//! [`DeltaCache`]. Full maps are assembled from per-peer JSON kept in a
//! [`PeerCache`] instead of formatting and serialising every peer again.
//!
//! Both caches key on the `Arc<Node>` a peer record was built from (the
//! tailnet replaces a node's `Arc` on every change, and an entry holds its
//! `Arc`, so a pointer can never be reused for another version) plus every
//! other input of the record: a hit is byte-for-byte what a fresh build
//! would give.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use headway_proto::tailcfg::{MapResponse, PeerChange, UserProfile};
use headway_state::access::{Access, PeerRoutes};
use headway_state::model::{Node, NodeId, User, UserId};
use headway_state::sessions::Pending;
use headway_state::settings::Settings;

use crate::nodes::peer_record;
use crate::{MapSource, presented_user, user_profile};

/// The inputs of one peer record as one viewer sees it.
#[derive(Debug, Clone)]
pub struct PeerInput {
    pub node: Arc<Node>,
    pub online: bool,
    pub expired: bool,
    pub routes: Option<PeerRoutes>,
}

impl PartialEq for PeerInput {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.node, &other.node)
            && self.online == other.online
            && self.expired == other.expired
            && self.routes == other.routes
    }
}

impl PeerInput {
    fn resolve(src: &dyn MapSource, access: &Access, viewer: NodeId, node: Arc<Node>) -> Self {
        let now = src.now();
        PeerInput {
            online: src.is_online(node.id),
            expired: node.is_expired(now),
            routes: access.peer_routes(viewer, node.id),
            node,
        }
    }

    fn record_json(&self, settings: &Settings) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&peer_record(
            settings,
            &self.node,
            self.online,
            self.expired,
            self.routes.as_ref(),
        ))
    }
}

/// Everything a delta made only of peer changes depends on, for one viewer.
/// Equal inputs give equal messages, whoever the viewer is.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaInputs {
    /// Peers to send whole, by id, with the owner shown for each.
    changed: Vec<(PeerInput, Option<Arc<UserRef>>)>,
    removed: Vec<NodeId>,
    patches: Vec<PeerChange>,
}

/// A user compared by identity (users are replaced, not mutated, on change).
#[derive(Debug)]
pub struct UserRef(Arc<User>);

impl PartialEq for UserRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The inputs of the delta for `pending`, when it holds nothing but peer
/// changes (the common case: joins, endpoint and online changes); `None`
/// when it also carries viewer-specific parts (own record, filter, DNS…),
/// which are built per session as before.
pub fn delta_inputs(src: &dyn MapSource, me: &Node, pending: &Pending) -> Option<DeltaInputs> {
    // Exhaustive on purpose: a new kind of pending change must decide here
    // whether it is shared.
    let Pending {
        full,
        self_changed,
        peers_changed,
        peers_removed,
        patches,
        packet_filter,
        dns,
        derp_map,
        ssh_policy,
        user_profiles,
    } = pending;
    if *full
        || *self_changed
        || *packet_filter
        || *dns
        || *derp_map
        || *ssh_policy
        || *user_profiles
    {
        return None;
    }
    let access = src.access();
    let mut removed = peers_removed.clone();
    let mut changed = Vec::with_capacity(peers_changed.len());
    for id in peers_changed {
        match src.node(*id).filter(|p| access.can_see(me.id, p.id)) {
            Some(p) => {
                let owner = presented_user(&p);
                let user = src.user(owner).map(|u| Arc::new(UserRef(u)));
                changed.push((PeerInput::resolve(src, &access, me.id, p), user));
            }
            None => {
                removed.insert(*id);
            }
        }
    }
    Some(DeltaInputs {
        changed,
        removed: removed.into_iter().collect(),
        patches: patches.values().cloned().collect(),
    })
}

/// The delta for these inputs (`None` when there is nothing to send).
pub fn delta_from(settings: &Settings, inputs: &DeltaInputs) -> Option<MapResponse> {
    let mut msg = MapResponse::default();
    let mut profiles: BTreeMap<UserId, UserProfile> = BTreeMap::new();
    for (p, user) in &inputs.changed {
        msg.peers_changed.push(peer_record(
            settings,
            &p.node,
            p.online,
            p.expired,
            p.routes.as_ref(),
        ));
        let owner = presented_user(&p.node);
        if let Some(profile) = user_profile(owner, user.as_deref().map(|u| u.0.as_ref())) {
            profiles.insert(owner, profile);
        }
    }
    msg.peers_removed = inputs.removed.clone();
    msg.peers_changed_patch = inputs.patches.clone();
    msg.user_profiles = profiles.into_values().collect();
    if msg == MapResponse::default() {
        return None;
    }
    Some(msg)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is a cache: a panic elsewhere leaves nothing half-written
    // that matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Recently encoded deltas, by their inputs (and whatever else the encoding
/// depends on, `K`: the compression). Small: it only has to hold the
/// messages of one batch while every session of the tailnet picks its own.
#[derive(Debug)]
pub struct DeltaCache<K, V> {
    entries: Mutex<VecDeque<(DeltaInputs, K, V)>>,
    capacity: usize,
}

impl<K: PartialEq, V: Clone> DeltaCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
        }
    }

    /// The value for `inputs`, built (outside the lock) on a miss.
    pub fn get_or_build<E>(
        &self,
        inputs: DeltaInputs,
        key: K,
        build: impl FnOnce(&DeltaInputs) -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some((_, _, v)) = lock(&self.entries)
            .iter()
            .find(|(i, k, _)| *k == key && *i == inputs)
        {
            return Ok(v.clone());
        }
        let v = build(&inputs)?;
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity {
            entries.pop_back();
        }
        entries.push_front((inputs, key, v.clone()));
        Ok(v)
    }
}

/// A peer record's encoded JSON, with the inputs it was built from.
type PeerVariant = (PeerInput, Arc<[u8]>);

/// Each node's peer record as JSON, for the viewers that see it alike
/// (usually all of them: one variant per node).
#[derive(Debug, Default)]
pub struct PeerCache {
    by_node: Mutex<HashMap<NodeId, Vec<PeerVariant>>>,
}

/// Variants kept per node (viewers that see different routes through it).
const VARIANTS: usize = 4;

impl PeerCache {
    fn json(&self, settings: &Settings, input: PeerInput) -> Result<Arc<[u8]>, serde_json::Error> {
        let id = input.node.id;
        if let Some(v) = lock(&self.by_node)
            .get(&id)
            .and_then(|vs| vs.iter().find(|(i, _)| *i == input))
        {
            return Ok(v.1.clone());
        }
        let json: Arc<[u8]> = input.record_json(settings)?.into();
        let mut by_node = lock(&self.by_node);
        let variants = by_node.entry(id).or_default();
        // Records of an older version of the node are never asked for again.
        variants.retain(|(i, _)| Arc::ptr_eq(&i.node, &input.node));
        if variants.len() >= VARIANTS {
            variants.remove(0);
        }
        variants.push((input, json.clone()));
        Ok(json)
    }

    /// Drops the records of nodes that no longer exist.
    pub fn retain(&self, exists: impl Fn(NodeId) -> bool) {
        lock(&self.by_node).retain(|id, _| exists(*id));
    }

    pub fn len(&self) -> usize {
        lock(&self.by_node).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The full map for `me` as JSON: [`crate::full_map`] byte for byte in
/// content, with the peers spliced in from `cache`.
pub fn full_map_json(
    src: &dyn MapSource,
    me: &Node,
    resync: bool,
    cache: &PeerCache,
) -> Result<Vec<u8>, serde_json::Error> {
    let access = src.access();
    let peers = src.nodes_by_id(access.peers_of(me.id));
    let msg = crate::full_map_parts(src, &access, me, &peers, resync);
    let mut out = serde_json::to_vec(&msg)?;
    if peers.is_empty() {
        return Ok(out);
    }
    // `msg` is an object with fields (it always has `Node`): reopen it.
    out.pop();
    out.extend_from_slice(br#","Peers":["#);
    let settings = src.settings();
    for (i, p) in peers.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let input = PeerInput::resolve(src, &access, me.id, p);
        out.extend_from_slice(&cache.json(settings, input)?);
    }
    out.extend_from_slice(b"]}");
    if cache.len() > 2 * src.all_node_count() + 1024 {
        cache.retain(|id| src.node(id).is_some());
    }
    Ok(out)
}

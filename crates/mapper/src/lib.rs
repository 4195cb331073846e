//! Per-node views of the tailnet: what a node's map says.
//!
//! Pure: given a [`MapSource`] (the tailnet in memory) and a node, build the
//! full map a session sends when it connects, or the delta for what its
//! [`Pending`] set says changed. No I/O, no locks held across calls.

mod derp;
mod dns;
mod nodes;
mod shared;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use headway_proto::tailcfg::{self, MapResponse, UserProfile};
use headway_state::Tailnet;
use headway_state::access::Access;
use headway_state::model::{
    Node, NodeId, TAGGED_DEVICES_USER_ID, TAGGED_DEVICES_USER_NAME, User, UserId,
};
use headway_state::sessions::Pending;
use headway_state::settings::Settings;

pub use derp::derp_map_for;
pub use dns::dns_config;
pub use nodes::{fqdn, peer_node, self_node};
pub use shared::{
    DeltaCache, DeltaInputs, PeerCache, PeerInput, delta_from, delta_inputs, full_map_json,
};

/// What the mapper reads. The tailnet implements it; tests can fake it.
pub trait MapSource {
    fn now(&self) -> DateTime<Utc>;
    fn settings(&self) -> &Settings;
    fn node(&self, id: NodeId) -> Option<Arc<Node>>;
    fn nodes_by_id(&self, ids: Vec<NodeId>) -> Vec<Arc<Node>>;
    fn user(&self, id: UserId) -> Option<Arc<User>>;
    fn is_online(&self, id: NodeId) -> bool;
    /// The compiled policy in force (one snapshot per message).
    fn access(&self) -> Arc<Access>;
    fn all_node_ids(&self) -> Vec<NodeId>;
    fn all_node_count(&self) -> usize {
        self.all_node_ids().len()
    }
    /// DNS records beyond the settings' own (`dns.extra_records_path`).
    fn extra_dns_records(&self) -> Arc<Vec<tailcfg::DnsRecord>>;
}

impl MapSource for Tailnet {
    fn now(&self) -> DateTime<Utc> {
        Tailnet::now(self)
    }
    fn settings(&self) -> &Settings {
        Tailnet::settings(self)
    }
    fn node(&self, id: NodeId) -> Option<Arc<Node>> {
        Tailnet::node(self, id)
    }
    fn nodes_by_id(&self, ids: Vec<NodeId>) -> Vec<Arc<Node>> {
        Tailnet::nodes_by_id(self, ids)
    }
    fn user(&self, id: UserId) -> Option<Arc<User>> {
        Tailnet::user(self, id)
    }
    fn is_online(&self, id: NodeId) -> bool {
        Tailnet::is_online(self, id)
    }
    fn access(&self) -> Arc<Access> {
        Tailnet::access(self)
    }
    fn all_node_ids(&self) -> Vec<NodeId> {
        self.nodes().iter().map(|n| n.id).collect()
    }
    fn extra_dns_records(&self) -> Arc<Vec<tailcfg::DnsRecord>> {
        Tailnet::extra_dns_records(self)
    }
}

/// The user id a node presents (tagged nodes belong to "tagged devices").
pub fn presented_user(node: &Node) -> UserId {
    match node.user_id {
        Some(u) if !node.is_tagged() => u,
        _ => TAGGED_DEVICES_USER_ID,
    }
}

fn profile(src: &dyn MapSource, id: UserId) -> Option<UserProfile> {
    if id == TAGGED_DEVICES_USER_ID {
        return user_profile(id, None);
    }
    user_profile(id, src.user(id).as_deref())
}

/// The profile shown for user `id`, read from `user`.
fn user_profile(id: UserId, user: Option<&User>) -> Option<UserProfile> {
    if id == TAGGED_DEVICES_USER_ID {
        return Some(UserProfile {
            id,
            login_name: TAGGED_DEVICES_USER_NAME.into(),
            display_name: "Tagged Devices".into(),
            ..Default::default()
        });
    }
    let u = user?;
    Some(UserProfile {
        id,
        login_name: u.login_name(),
        display_name: u.display().to_string(),
        profile_pic_url: u.profile_pic_url.clone(),
    })
}

fn profiles(src: &dyn MapSource, ids: impl IntoIterator<Item = UserId>) -> Vec<UserProfile> {
    let ids: BTreeSet<UserId> = ids.into_iter().collect();
    ids.into_iter().filter_map(|id| profile(src, id)).collect()
}

/// The complete map a session sends first (and after a resync).
pub fn full_map(src: &dyn MapSource, me: &Node, resync: bool) -> MapResponse {
    let now = src.now();
    let access = src.access();
    let peers = src.nodes_by_id(access.peers_of(me.id));
    let mut msg = full_map_parts(src, &access, me, &peers, resync);
    msg.peers = peers
        .iter()
        .map(|p| peer_node(src, &access, me, p, now))
        .collect();
    msg
}

/// The full map without its `Peers` (the caller adds them: built, or
/// spliced in as JSON by [`full_map_json`]).
fn full_map_parts(
    src: &dyn MapSource,
    access: &Access,
    me: &Node,
    peers: &[Arc<Node>],
    resync: bool,
) -> MapResponse {
    let settings = src.settings();
    let now = src.now();
    let users = profiles(
        src,
        std::iter::once(presented_user(me)).chain(peers.iter().map(|p| presented_user(p))),
    );
    // An empty `Peers` means "unchanged" to the client: a resync to an empty
    // peer list must remove the old ones explicitly.
    let peers_removed = if resync && peers.is_empty() {
        src.all_node_ids()
            .into_iter()
            .filter(|id| *id != me.id)
            .collect()
    } else {
        Vec::new()
    };
    MapResponse {
        node: Some(self_node(src, access, me, now)),
        derp_map: Some(derp_map_for(&settings.derp_map, me.cap_version).into_owned()),
        peers_removed,
        dns_config: Some(dns_config(settings, &src.extra_dns_records(), me)),
        domain: settings.dns.base_domain.clone(),
        packet_filter: Some(access.packet_filter(me.id)),
        user_profiles: users,
        ssh_policy: Some(access.ssh_policy(me.id).unwrap_or_default()),
        collect_services: Some(false),
        control_time: Some(now),
        // Unless logtail is enabled, tell clients not to upload their logs.
        debug: Some(tailcfg::Debug {
            disable_log_tail: !settings.logtail,
        }),
        ..Default::default()
    }
}

/// The message for what `pending` says changed, or `None` when nothing the
/// client needs remains (e.g. only peers it cannot see changed).
pub fn delta(src: &dyn MapSource, me: &Node, pending: Pending) -> Option<MapResponse> {
    if pending.full {
        return Some(full_map(src, me, true));
    }
    if let Some(inputs) = delta_inputs(src, me, &pending) {
        return delta_from(src.settings(), &inputs);
    }
    let now = src.now();
    let settings = src.settings();
    let access = src.access();
    let mut msg = MapResponse::default();
    if pending.self_changed {
        msg.node = Some(self_node(src, &access, me, now));
    }
    let mut removed: BTreeSet<NodeId> = pending.peers_removed;
    let mut user_ids = BTreeSet::new();
    for id in pending.peers_changed {
        match src.node(id).filter(|p| access.can_see(me.id, p.id)) {
            Some(p) => {
                user_ids.insert(presented_user(&p));
                msg.peers_changed.push(peer_node(src, &access, me, &p, now));
            }
            None => {
                removed.insert(id);
            }
        }
    }
    msg.peers_removed = removed.into_iter().collect();
    msg.peers_changed_patch = pending.patches.into_values().collect();
    if pending.packet_filter {
        msg.packet_filter = Some(access.packet_filter(me.id));
    }
    if pending.dns {
        msg.dns_config = Some(dns_config(settings, &src.extra_dns_records(), me));
    }
    if pending.derp_map {
        msg.derp_map = Some(derp_map_for(&settings.derp_map, me.cap_version).into_owned());
    }
    if pending.ssh_policy {
        msg.ssh_policy = Some(access.ssh_policy(me.id).unwrap_or_default());
    }
    if pending.user_profiles {
        user_ids.insert(presented_user(me));
        user_ids.extend(
            src.nodes_by_id(access.peers_of(me.id))
                .iter()
                .map(|p| presented_user(p)),
        );
    }
    msg.user_profiles = profiles(src, user_ids);
    if msg == MapResponse::default() {
        return None;
    }
    Some(msg)
}

/// A keep-alive message.
pub fn keep_alive() -> MapResponse {
    MapResponse {
        keep_alive: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;

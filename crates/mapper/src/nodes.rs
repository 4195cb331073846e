//! A domain node as the client sees it: itself, or a peer.

use chrono::{DateTime, Utc};
use headway_proto::tailcfg::{self, NodeCapMap};
use headway_state::access::{Access, PeerRoutes};
use headway_state::model::Node;
use headway_state::settings::Settings;
use headway_state::tailnet::peer_visible_hostinfo;

use crate::{MapSource, presented_user};

/// `<name>.<base_domain>.` (the MagicDNS name, with the trailing dot).
pub fn fqdn(node: &Node, base_domain: &str) -> String {
    if base_domain.is_empty() {
        format!("{}.", node.given_name)
    } else {
        format!("{}.{}.", node.given_name, base_domain.trim_end_matches('.'))
    }
}

fn common(src: &dyn MapSource, node: &Node, now: DateTime<Utc>) -> tailcfg::Node {
    record(
        src.settings(),
        node,
        src.is_online(node.id),
        node.is_expired(now),
    )
}

/// The fields the node itself and its peers share, from exactly these inputs.
fn record(settings: &Settings, node: &Node, online: bool, expired: bool) -> tailcfg::Node {
    let addresses = node.prefixes();
    tailcfg::Node {
        id: node.id,
        stable_id: node.id.to_string(),
        name: fqdn(node, &settings.dns.base_domain),
        user: presented_user(node),
        key: node.node_key,
        key_expiry: node.expiry,
        machine: node.machine_key,
        disco_key: node.disco_key,
        // Always sent: clients before capver 112 need it spelt out.
        allowed_ips: addresses.clone(),
        addresses,
        endpoints: node.endpoints.clone(),
        home_derp: node.home_derp,
        // Clients before capver 111 only read the legacy form.
        legacy_derp: if node.home_derp != 0 {
            format!("127.3.3.40:{}", node.home_derp)
        } else {
            String::new()
        },
        created: Some(node.created_at),
        cap: node.cap_version,
        tags: node.tags.clone(),
        online: Some(online),
        last_seen: if online { None } else { node.last_seen },
        machine_authorized: true,
        expired,
        ..Default::default()
    }
}

/// The receiving node's own record.
pub fn self_node(
    src: &dyn MapSource,
    access: &Access,
    node: &Node,
    now: DateTime<Utc>,
) -> tailcfg::Node {
    let mut n = common(src, node, now);
    n.hostinfo = Some(node.hostinfo.clone());
    n.primary_routes = access.primary_routes_of(node.id);
    n.allowed_ips.extend(n.primary_routes.iter().copied());
    let mut caps = NodeCapMap::new();
    // Lets the node run the Tailscale SSH server when the policy allows it.
    caps.insert("https://tailscale.com/cap/ssh".into(), vec![]);
    if src.settings().taildrop {
        caps.insert("https://tailscale.com/cap/file-sharing".into(), vec![]);
    }
    caps.insert(
        "default-auto-update".into(),
        vec![serde_json::Value::Bool(src.settings().default_auto_update)],
    );
    caps.extend(access.node_attrs(node.id));
    n.cap_map = caps;
    n
}

/// A peer's record as `viewer` sees it: only what peers need (host info
/// trimmed to what is shown; the routes this viewer may use through it).
pub fn peer_node(
    src: &dyn MapSource,
    access: &Access,
    viewer: &Node,
    node: &Node,
    now: DateTime<Utc>,
) -> tailcfg::Node {
    peer_record(
        src.settings(),
        node,
        src.is_online(node.id),
        node.is_expired(now),
        access.peer_routes(viewer.id, node.id).as_ref(),
    )
}

/// A peer's record from exactly these inputs (what [`peer_node`] resolves
/// for one viewer); the shared caches key their bytes on them.
pub(crate) fn peer_record(
    settings: &Settings,
    node: &Node,
    online: bool,
    expired: bool,
    routes: Option<&PeerRoutes>,
) -> tailcfg::Node {
    let mut n = record(settings, node, online, expired);
    n.hostinfo = Some(peer_visible_hostinfo(&node.hostinfo));
    if let Some(routes) = routes {
        n.allowed_ips = routes.allowed_ips.clone();
        n.primary_routes = routes.primary_routes.clone();
    }
    n
}

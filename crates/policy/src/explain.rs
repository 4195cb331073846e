//! "What if", offline: a policy and a tailnet description in, every node's view out.
//!
//! This is what `headway policy explain` prints, and what the conformance
//! test compares with Tailscale's own answers. The topology format is the
//! one of the conformance corpus:
//!
//! ```json
//! {"users": [{"id": 1, "name": "odin", "email": "odin@example.com"}],
//!  "nodes": {"laptop": {"hostname": "laptop", "user": "odin", "tags": [],
//!                       "ipv4": "100.64.0.1", "ipv6": "fd7a:115c:a1e0::1",
//!                       "routable_ips": [], "approved_routes": [],
//!                       "id": 7, "online": true}}}
//! ```
//!
//! `id` (registration order; decides the primary of several routers),
//! `online` and a top-level `control_url` (for SSH check rules) are optional: without `id`, nodes are numbered in hostname order
//! after the highest given id; `online` defaults to true.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::compile::CompiledPolicy;
use crate::error::{ErrorKind, PolicyError, Result};
use crate::syntax::Policy;
use crate::topology::{PolicyNode, PolicyUser};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyIn {
    #[serde(default)]
    control_url: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    users: Vec<UserIn>,
    #[serde(default)]
    nodes: BTreeMap<String, NodeIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIn {
    id: i64,
    name: String,
    #[serde(default)]
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeIn {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    tags: Vec<String>,
    #[serde(default)]
    ipv4: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    ipv6: Option<std::net::Ipv6Addr>,
    #[serde(default, deserialize_with = "null_as_empty")]
    routable_ips: Vec<IpNet>,
    #[serde(default, deserialize_with = "null_as_empty")]
    approved_routes: Vec<IpNet>,
    #[serde(default = "yes")]
    online: bool,
}

/// `null` lists read as empty ones.
fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn yes() -> bool {
    true
}

/// A tailnet described for [`explain`]: users and nodes (keyed by hostname).
#[derive(Debug, Clone)]
pub struct Topology {
    pub users: Vec<PolicyUser>,
    pub nodes: Vec<PolicyNode>,
    /// The control server's URL, named by SSH `check` rules. Offline there is
    /// none; the default is Tailscale's placeholder `https://unused`.
    pub control_url: String,
}

/// The control URL used when the topology names none.
pub const PLACEHOLDER_CONTROL_URL: &str = "https://unused";

impl Topology {
    /// Reads the JSON topology format described in the module docs.
    pub fn from_json(text: &str) -> Result<Topology> {
        let t: TopologyIn = serde_json::from_str(text)
            .map_err(|e| PolicyError::new(ErrorKind::Topology, format!("invalid topology: {e}")))?;
        let users: Vec<PolicyUser> = t
            .users
            .into_iter()
            .map(|u| PolicyUser {
                id: u.id,
                name: u.name,
                email: u.email,
            })
            .collect();
        let mut next_id = t.nodes.values().filter_map(|n| n.id).max().unwrap_or(0) + 1;
        let mut nodes = Vec::with_capacity(t.nodes.len());
        for (key, n) in t.nodes {
            let user = match &n.user {
                Some(name) => Some(
                    users
                        .iter()
                        .find(|u| &u.name == name || &u.email == name)
                        .map(|u| u.id)
                        .ok_or_else(|| {
                            PolicyError::new(
                                ErrorKind::Topology,
                                format!("node {key:?}: unknown user {name:?}"),
                            )
                        })?,
                ),
                None => None,
            };
            let id = n.id.unwrap_or_else(|| {
                next_id += 1;
                next_id - 1
            });
            nodes.push(PolicyNode {
                id,
                hostname: n.hostname.unwrap_or_else(|| key.clone()),
                user,
                tags: n.tags,
                ipv4: n.ipv4,
                ipv6: n.ipv6,
                routable_ips: n.routable_ips,
                approved_routes: n.approved_routes,
                online: n.online,
            });
        }
        Ok(Topology {
            users,
            nodes,
            control_url: t
                .control_url
                .unwrap_or_else(|| PLACEHOLDER_CONTROL_URL.to_owned()),
        })
    }
}

/// Explains a policy for a tailnet: for every node its packet filter, its
/// peers (with AllowedIPs and PrimaryRoutes), its SSH rules and its CapMap,
/// as `{"nodes": {"<hostname>": {...}}}` — or the reason the policy is refused
/// (including a failing `tests`/`sshTests` block).
pub fn explain(policy_text: &str, topology_json: &str) -> Result<Value> {
    let topology = Topology::from_json(topology_json)?;
    explain_topology(policy_text, &topology)
}

/// [`explain`] for an already-built topology.
pub fn explain_topology(policy_text: &str, topology: &Topology) -> Result<Value> {
    let policy = Arc::new(Policy::parse(policy_text)?);
    let compiled = CompiledPolicy::new(Some(policy.clone()), &topology.users, &topology.nodes)?;
    crate::policytest::run_tests(&policy, &compiled)?;
    Ok(render(&compiled, &topology.control_url))
}

/// Renders every node's view of a compiled policy in the explain format.
pub fn render(compiled: &CompiledPolicy, control_url: &str) -> Value {
    let mut out = Map::new();
    let name_of: BTreeMap<i64, &str> = compiled
        .nodes
        .iter()
        .map(|n| (n.node.id, n.node.hostname.as_str()))
        .collect();
    for n in &compiled.nodes {
        let id = n.node.id;
        let mut peers = Map::new();
        for peer in compiled.peers_of(id) {
            let Some(view) = compiled.peer_view(id, peer) else {
                continue;
            };
            let mut allowed: Vec<String> = view.allowed_ips.iter().map(|p| p.to_string()).collect();
            allowed.sort();
            let mut primary: Vec<String> =
                view.primary_routes.iter().map(|p| p.to_string()).collect();
            primary.sort();
            peers.insert(
                name_of.get(&peer).copied().unwrap_or_default().to_owned(),
                json!({"AllowedIPs": allowed, "PrimaryRoutes": primary}),
            );
        }
        let ssh = compiled.ssh_policy_for(id, control_url);
        out.insert(
            n.node.hostname.clone(),
            json!({
                "packet_filter_rules": compiled.shared_filter_for(id),
                "peers": peers,
                "ssh_rules": ssh.map(|s| s.rules).unwrap_or_default(),
                "cap_map": compiled.cap_map_for(id),
            }),
        );
    }
    json!({ "nodes": out })
}

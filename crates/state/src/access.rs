//! Access control as the service layer and the mapper see it: the compiled
//! policy for the tailnet as it is now — who gets whom as a peer (and with
//! which routes), each node's packet filter, SSH policy and capabilities.
//!
//! With no policy the same engine applies Tailscale's default (everyone may
//! reach everything), so routes and primaries work the same either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use headway_policy::{CompiledPolicy, Policy, PolicyError, PolicyNode, PolicyUser};
use headway_proto::tailcfg::{FilterRule, NodeCapMap, SshPolicy};
use ipnet::IpNet;

use crate::model::{Node, NodeId, User};

/// The policy in force, compiled against one version of the tailnet.
#[derive(Debug)]
pub struct Access {
    compiled: CompiledPolicy,
    /// Which node is primary for each subnet route (for change fan-out).
    primaries: BTreeMap<IpNet, NodeId>,
    /// Base of URLs the SSH `check` action points clients at.
    control_url: String,
}

/// What a peer carries for one viewer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerRoutes {
    /// Addresses plus the routes the viewer may use through this peer.
    pub allowed_ips: Vec<IpNet>,
    /// Subnet routes this peer is the primary router for (as the viewer sees it).
    pub primary_routes: Vec<IpNet>,
}

/// The policy engine's view of a user.
pub fn policy_user(u: &User) -> PolicyUser {
    PolicyUser {
        id: u.id,
        name: u.name.clone(),
        email: u.email.clone(),
    }
}

/// The policy engine's view of a node.
pub fn policy_node(n: &Node, online: bool) -> PolicyNode {
    PolicyNode {
        id: n.id,
        hostname: n.given_name.clone(),
        user: n.user_id,
        tags: n.tags.clone(),
        ipv4: n.ipv4,
        ipv6: n.ipv6,
        routable_ips: n.hostinfo.routable_ips.clone(),
        approved_routes: n.approved_routes.clone(),
        online,
    }
}

impl Access {
    /// Compiles `policy` (or the default) for these users and nodes.
    pub fn compile(
        policy: Option<Arc<Policy>>,
        users: &[PolicyUser],
        nodes: &[PolicyNode],
        control_url: &str,
    ) -> Result<Self, PolicyError> {
        Self::recompile_from(None, policy, users, nodes, control_url)
    }

    /// Compiles for the tailnet as it is now; routers that are primary in
    /// `previous` stay primary while they qualify (no flapping when a
    /// failed router comes back).
    pub fn recompile_from(
        previous: Option<&Access>,
        policy: Option<Arc<Policy>>,
        users: &[PolicyUser],
        nodes: &[PolicyNode],
        control_url: &str,
    ) -> Result<Self, PolicyError> {
        let empty = BTreeMap::new();
        let before = previous.map(|p| &p.primaries).unwrap_or(&empty);
        let compiled = CompiledPolicy::new_with_primaries(policy, users, nodes, before)?;
        Ok(Self {
            primaries: compiled.primaries(),
            compiled,
            control_url: control_url.to_string(),
        })
    }

    pub fn compiled(&self) -> &CompiledPolicy {
        &self.compiled
    }

    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.compiled.policy()
    }

    pub fn can_see(&self, viewer: NodeId, peer: NodeId) -> bool {
        self.compiled.can_see(viewer, peer)
    }

    /// The ids of the peers `node` receives.
    pub fn peers_of(&self, node: NodeId) -> Vec<NodeId> {
        self.compiled.peers_of(node)
    }

    /// A peer's AllowedIPs and PrimaryRoutes as `viewer` sees them.
    pub fn peer_routes(&self, viewer: NodeId, peer: NodeId) -> Option<PeerRoutes> {
        self.compiled.peer_view(viewer, peer).map(|v| PeerRoutes {
            allowed_ips: v.allowed_ips,
            primary_routes: v.primary_routes,
        })
    }

    /// Subnet routes `node` is the primary router for.
    pub fn primary_routes_of(&self, node: NodeId) -> Vec<IpNet> {
        self.primaries
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(r, _)| *r)
            .collect()
    }

    pub fn packet_filter(&self, node: NodeId) -> Vec<FilterRule> {
        self.compiled.filter_for(node)
    }

    pub fn ssh_policy(&self, node: NodeId) -> Option<SshPolicy> {
        self.compiled.ssh_policy_for(node, &self.control_url)
    }

    pub fn node_attrs(&self, node: NodeId) -> NodeCapMap {
        self.compiled.cap_map_for(node)
    }

    /// Nodes whose view (filter, peers, SSH policy) may differ between
    /// `self` and `next` because `node` changed.
    pub fn affected_by(&self, next: &Access, node: NodeId) -> Vec<NodeId> {
        self.compiled.affected_by_node_change(&next.compiled, node)
    }

    /// Routers whose primary routes differ between `self` and `next`.
    pub fn routers_with_new_primaries(&self, next: &Access) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for (route, id) in self.primaries.iter().chain(next.primaries.iter()) {
            if self.primaries.get(route) != next.primaries.get(route) && !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }
}

//! Node capabilities from the policy: `nodeAttrs` and `randomizeClientPort`.

use headway_proto::tailcfg::{NodeCapMap, NodeId};

use crate::compile::{CompiledPolicy, NodeFacts, Resolver};
use crate::syntax::{Alias, Policy};

/// The attribute that makes a node IPv6-only: it loses its IPv4 address and
/// sees its peers without theirs.
pub(crate) const DISABLE_IPV4: &str = "disable-ipv4";
const RANDOMIZE_CLIENT_PORT: &str = "randomize-client-port";

/// Every node's capabilities, in node order.
pub(crate) fn node_caps(policy: &Policy, res: &Resolver, nodes: &[NodeFacts]) -> Vec<NodeCapMap> {
    let targets: Vec<_> = policy
        .node_attrs
        .iter()
        .filter(|a| !a.attr.is_empty())
        .map(|a| {
            let aliases: Vec<Alias> = a.target.iter().map(|t| t.value.clone()).collect();
            (res.sources(&aliases).0, &a.attr)
        })
        .collect();
    nodes
        .iter()
        .map(|n| {
            let mut caps = NodeCapMap::new();
            if policy.randomize_client_port {
                caps.insert(RANDOMIZE_CLIENT_PORT.to_owned(), vec![]);
            }
            for (set, attrs) in &targets {
                if n.ips.iter().any(|ip| set.contains_ip(*ip)) {
                    for a in attrs.iter() {
                        caps.entry(a.clone()).or_default();
                    }
                }
            }
            caps
        })
        .collect()
}

impl CompiledPolicy {
    /// The capabilities the policy gives a node (`nodeAttrs`, `randomizeClientPort`).
    /// Capabilities that come from tailnet settings (Taildrop, admin roles, …) are the
    /// control plane's to add.
    pub fn cap_map_for(&self, id: NodeId) -> NodeCapMap {
        self.index_of(id)
            .and_then(|i| self.caps.get(i).cloned())
            .unwrap_or_default()
    }

    pub(crate) fn ipv4_disabled(&self, i: usize) -> bool {
        self.caps
            .get(i)
            .is_some_and(|c| c.contains_key(DISABLE_IPV4))
    }
}

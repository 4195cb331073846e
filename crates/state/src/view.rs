//! Access control as the service layer sees it: who gets whom as a peer, and
//! each node's packet filter and SSH policy. The policy engine provides the
//! real implementation; [`AllowAll`] is the behaviour without a policy.

use std::sync::Arc;

use headway_proto::tailcfg::{FilterRule, NodeCapMap, SshPolicy};

use crate::model::Node;

pub trait AccessControl: Send + Sync + std::fmt::Debug {
    /// Whether `viewer` receives `peer` in its map. Must be symmetric: a node
    /// that may talk to another, or be talked to by it, sees it.
    fn can_see(&self, viewer: &Node, peer: &Node) -> bool;

    /// The packet filter of `node`.
    fn packet_filter(&self, node: &Node) -> Arc<Vec<FilterRule>>;

    /// The SSH policy of `node` (`None`: Tailscale SSH refuses everything).
    fn ssh_policy(&self, node: &Node) -> Option<SshPolicy>;

    /// Extra node attributes from the policy (`nodeAttrs`).
    fn node_attrs(&self, _node: &Node) -> NodeCapMap {
        NodeCapMap::new()
    }

    /// Whether packet filters name peers' addresses, so that a node joining
    /// or leaving changes other nodes' filters.
    fn filters_depend_on_nodes(&self) -> bool;

    /// Whether every node sees every node (lets fan-out skip visibility checks).
    fn everyone_sees_everyone(&self) -> bool {
        false
    }
}

/// No policy: everyone may reach everyone.
#[derive(Debug, Default)]
pub struct AllowAll {
    filter: Arc<Vec<FilterRule>>,
}

impl AllowAll {
    pub fn new() -> Self {
        Self {
            filter: Arc::new(FilterRule::allow_all()),
        }
    }
}

impl AccessControl for AllowAll {
    fn can_see(&self, _viewer: &Node, _peer: &Node) -> bool {
        true
    }
    fn packet_filter(&self, _node: &Node) -> Arc<Vec<FilterRule>> {
        self.filter.clone()
    }
    fn ssh_policy(&self, _node: &Node) -> Option<SshPolicy> {
        None
    }
    fn filters_depend_on_nodes(&self) -> bool {
        false
    }
    fn everyone_sees_everyone(&self) -> bool {
        true
    }
}

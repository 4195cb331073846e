//! Node capabilities (`nodeAttrs`, `randomizeClientPort`).

use headway_proto::tailcfg::{NodeCapMap, NodeId};

use crate::compile::CompiledPolicy;

impl CompiledPolicy {
    /// The capabilities the policy gives a node.
    pub fn cap_map_for(&self, _id: NodeId) -> NodeCapMap {
        NodeCapMap::new()
    }
}

//! SSH policy compilation (the `ssh` block) for a node.

use headway_proto::tailcfg::{NodeId, SshPolicy};

use crate::compile::CompiledPolicy;

impl CompiledPolicy {
    /// The SSH policy a node enforces as an SSH server; `None` when the policy has no `ssh` block.
    pub fn ssh_policy_for(&self, _id: NodeId) -> Option<SshPolicy> {
        None
    }
}

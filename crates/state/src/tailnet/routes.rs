//! Subnet routes and exit nodes: what a node announces, what is approved
//! (by an administrator or the policy's `autoApprovers`), and which router
//! is primary. Peers get routes through the compiled policy; this module
//! owns approval.

use std::sync::Arc;

use headway_policy::PolicyNode;
use ipnet::IpNet;
use serde::Serialize;

use super::Tailnet;
use crate::access::{policy_node, policy_user};
use crate::error::{Error, Result};
use crate::model::{Node, NodeId};

/// `0.0.0.0/0` or `::/0`: offering them makes a node an exit node.
pub fn is_exit_route(r: &IpNet) -> bool {
    r.prefix_len() == 0
}

/// A node's routes as admins see them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeRoutes {
    pub node_id: NodeId,
    /// What the node offers (`--advertise-routes`, `--advertise-exit-node`).
    pub announced: Vec<IpNet>,
    /// What is approved (by an administrator or an auto-approver).
    pub approved: Vec<IpNet>,
    /// Announced and approved: what the node really serves.
    pub serving: Vec<IpNet>,
    /// Subnet routes it is the primary router for right now.
    pub primary: Vec<IpNet>,
}

/// Parses and checks routes an administrator typed. Both exit routes go
/// together: approving one approves the other, as in Tailscale.
pub fn parse_routes(routes: &[String]) -> Result<Vec<IpNet>> {
    let mut out: Vec<IpNet> = Vec::new();
    for r in routes {
        let r = r.trim();
        if r.is_empty() {
            continue;
        }
        let net: IpNet = r.parse().map_err(|_| {
            Error::Invalid(format!(
                "route {r:?} is not a prefix; write it like 10.0.0.0/24 or 0.0.0.0/0"
            ))
        })?;
        if net.trunc() != net {
            return Err(Error::Invalid(format!(
                "route {r} has host bits set; did you mean {}?",
                net.trunc()
            )));
        }
        out.push(net);
    }
    if out.iter().any(is_exit_route) {
        for exit in ["0.0.0.0/0", "::/0"] {
            if let Ok(e) = exit.parse::<IpNet>()
                && !out.contains(&e)
            {
                out.push(e);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl Tailnet {
    pub fn node_routes(&self, id: NodeId) -> Result<NodeRoutes> {
        let node = self.require_node(id)?;
        Ok(self.routes_of(&node))
    }

    pub(super) fn routes_of(&self, node: &Node) -> NodeRoutes {
        let announced = node.hostinfo.routable_ips.clone();
        let approved = node.approved_routes.clone();
        let serving = approved
            .iter()
            .copied()
            .filter(|r| announced.contains(r))
            .collect();
        NodeRoutes {
            node_id: node.id,
            primary: self.access().primary_routes_of(node.id),
            announced,
            approved,
            serving,
        }
    }

    /// Sets a node's approved routes (the whole list, as headscale's
    /// `approve-routes` does; an empty list withdraws every approval).
    pub async fn approve_routes(&self, id: NodeId, routes: &[String]) -> Result<NodeRoutes> {
        let routes = parse_routes(routes)?;
        let node = self
            .update_node(id, |n| {
                n.approved_routes = routes;
                Ok(())
            })
            .await?;
        tracing::info!(node.id = id, approved = ?node.approved_routes, "routes approved");
        Ok(self.routes_of(&node))
    }

    /// Routes of `node` the policy's `autoApprovers` approve but that are
    /// not approved yet.
    pub(super) fn auto_approvable(&self, node: &Node) -> Vec<IpNet> {
        let access = self.access();
        let Some(policy) = access.policy() else {
            return Vec::new();
        };
        let users: Vec<_> = self.users().iter().map(|u| policy_user(u)).collect();
        let facts: PolicyNode = policy_node(node, self.routes_online(node.id));
        node.hostinfo
            .routable_ips
            .iter()
            .filter(|r| !node.approved_routes.contains(r))
            .filter(|r| policy.auto_approves(&users, &facts, r))
            .copied()
            .collect()
    }

    /// Records what the auto-approvers approve for `id` (writer lock held).
    /// Returns the updated node when something was approved.
    pub(super) async fn auto_approve_locked(&self, id: NodeId) -> Result<Option<Arc<Node>>> {
        let Some(node) = self.node(id) else {
            return Ok(None);
        };
        let new = self.auto_approvable(&node);
        if new.is_empty() {
            return Ok(None);
        }
        let updated = self
            .update_node_locked(id, |n| {
                n.approved_routes.extend(new.iter().copied());
                n.approved_routes.sort();
                n.approved_routes.dedup();
                Ok(())
            })
            .await?;
        tracing::info!(node.id = id, routes = ?new, "routes approved by the policy's autoApprovers");
        Ok(Some(Arc::new(updated)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_pairs_exit_routes_and_refuses_host_bits() {
        let r = parse_routes(&["10.0.0.0/24".into(), " 0.0.0.0/0 ".into()]).unwrap();
        let s: Vec<String> = r.iter().map(|r| r.to_string()).collect();
        assert_eq!(s, ["0.0.0.0/0", "10.0.0.0/24", "::/0"]);
        let e = parse_routes(&["10.0.0.1/24".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 10.0.0.0/24"), "{e}");
        assert!(parse_routes(&["bogus".into()]).is_err());
        assert!(parse_routes(&[]).unwrap().is_empty());
    }
}

//! Route approval by policy (`autoApprovers`) and primary router selection.

use ipnet::IpNet;

use crate::addr::well_known;
use crate::syntax::{Alias, AutoGroup, Policy};
use crate::topology::{PolicyNode, PolicyUser};

impl Policy {
    /// Whether the policy's `autoApprovers` approve `route` when `node` advertises it.
    ///
    /// A subnet route is approved when it lies within a prefix of
    /// `autoApprovers.routes` whose approvers include the node (its tag, or
    /// for an untagged node its user or a group of its user). An exit route
    /// (`0.0.0.0/0`, `::/0`) is approved only by `autoApprovers.exitNode`.
    pub fn auto_approves(&self, users: &[PolicyUser], node: &PolicyNode, route: &IpNet) -> bool {
        let route = route.trunc();
        let matches = |approvers: &[Alias]| {
            approvers
                .iter()
                .any(|a| self.approver_matches(users, node, a))
        };
        if well_known::is_exit_route(&route) {
            // Tailscale approves exit routes only through `exitNode`, even when
            // `routes` lists 0.0.0.0/0 or ::/0.
            return matches(&self.auto_approvers.exit_node);
        }
        self.auto_approvers
            .routes
            .iter()
            .any(|(prefix, approvers)| prefix.contains(&route) && matches(approvers))
    }

    fn approver_matches(&self, users: &[PolicyUser], node: &PolicyNode, approver: &Alias) -> bool {
        let owner = node
            .owner()
            .and_then(|id| users.iter().find(|u| u.id == id));
        match approver {
            Alias::Tag(t) => node.has_tag(t),
            Alias::User(u) => owner.is_some_and(|o| o.matches(u)),
            Alias::Group(g) => owner.is_some_and(|o| {
                self.groups
                    .get(g)
                    .is_some_and(|members| members.iter().any(|m| o.matches(m)))
            }),
            Alias::Auto(AutoGroup::Member) => owner.is_some(),
            Alias::Auto(AutoGroup::Tagged) => node.is_tagged(),
            _ => false,
        }
    }

    /// The node with the routes the policy auto-approves added to its approved routes.
    pub fn with_auto_approved_routes(&self, users: &[PolicyUser], node: &PolicyNode) -> PolicyNode {
        let mut n = node.clone();
        for r in &node.routable_ips {
            if !n.approved_routes.contains(r) && self.auto_approves(users, node, r) {
                n.approved_routes.push(*r);
            }
        }
        n
    }
}

//! The tailnet as the policy engine sees it: users and nodes, as plain data.
//!
//! The control plane builds these from its state; they are small and cheap
//! to construct. Nothing here is looked up elsewhere: the engine only knows
//! what is passed in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use headway_proto::tailcfg::{NodeId, UserId};
use ipnet::IpNet;

use crate::addr::well_known;

/// A user of the tailnet. Policies name users by e-mail (`odin@example.com`)
/// or by login name followed by `@` (`odin@`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyUser {
    pub id: UserId,
    /// Login name, e.g. `odin`.
    pub name: String,
    /// E-mail / login e-mail, e.g. `odin@example.com`; may be empty.
    pub email: String,
}

impl PolicyUser {
    /// Whether a policy token (`odin@example.com`, `odin@`) names this user.
    pub fn matches(&self, token: &str) -> bool {
        if !self.email.is_empty() && self.email == token {
            return true;
        }
        if self.name == token {
            return true;
        }
        match token.strip_suffix('@') {
            Some(name) => !name.contains('@') && self.name == name,
            None => false,
        }
    }

    /// The domain part of the user's e-mail, if any.
    pub fn email_domain(&self) -> Option<&str> {
        self.email
            .rsplit_once('@')
            .map(|(_, d)| d)
            .filter(|d| !d.is_empty())
    }

    /// The local part of the user's e-mail, if any.
    pub fn email_local_part(&self) -> Option<&str> {
        self.email.rsplit_once('@').map(|(l, _)| l)
    }
}

/// A node (device) of the tailnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyNode {
    /// Stable id; also decides which of several routers is primary for a
    /// route (the lowest id, i.e. the earliest registered, among online ones).
    pub id: NodeId,
    pub hostname: String,
    /// The owning user. Ignored for tagged nodes: a tagged node belongs to its tags.
    pub user: Option<UserId>,
    /// `tag:…` names. A node with tags is a tagged node.
    pub tags: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// Routes the node advertises (Hostinfo.RoutableIPs).
    pub routable_ips: Vec<IpNet>,
    /// Routes an administrator (or an auto-approver) approved.
    pub approved_routes: Vec<IpNet>,
    /// Offline routers are not chosen as primary.
    pub online: bool,
}

impl PolicyNode {
    pub fn is_tagged(&self) -> bool {
        !self.tags.is_empty()
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The user that owns the node, unless it is tagged.
    pub fn owner(&self) -> Option<UserId> {
        if self.is_tagged() { None } else { self.user }
    }

    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ipv6.map(IpAddr::V6))
    }

    /// Routes both advertised and approved: the ones the node really serves.
    pub fn served_routes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.approved_routes
            .iter()
            .copied()
            .filter(|r| self.routable_ips.contains(r))
    }

    /// Served routes that are subnets (not exit routes).
    pub fn subnet_routes(&self) -> Vec<IpNet> {
        self.served_routes()
            .filter(|r| !well_known::is_exit_route(r))
            .collect()
    }

    /// Served exit routes (`0.0.0.0/0`, `::/0`).
    pub fn exit_routes(&self) -> Vec<IpNet> {
        self.served_routes()
            .filter(well_known::is_exit_route)
            .collect()
    }

    pub fn is_exit_node(&self) -> bool {
        self.served_routes().any(|r| well_known::is_exit_route(&r))
    }
}

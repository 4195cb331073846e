//! headway-policy: Tailscale-compatible access policy.
//!
//! Operators write one HuJSON policy in Tailscale's language (groups, hosts,
//! tagOwners, acls, grants, ssh, nodeAttrs, autoApprovers, tests, sshTests);
//! every node's packet filter, peer list, SSH policy and capabilities follow
//! from it. Pure logic: no I/O, no clock, no randomness.
//!
//! # Using it from the control plane
//!
//! ```no_run
//! use std::sync::Arc;
//! use headway_policy::{CompiledPolicy, Policy, PolicyNode, PolicyUser, TagClaimant};
//! # fn demo(text: &str, users: Vec<PolicyUser>, nodes: Vec<PolicyNode>) -> Result<(), headway_policy::PolicyError> {
//! // 1. When the operator sets a policy: parse (refuses with path + line/column),
//! //    compile against the tailnet, and run its own tests before accepting it.
//! let policy = Arc::new(Policy::parse(text)?);
//! let compiled = CompiledPolicy::new(Some(policy.clone()), &users, &nodes)?;
//! headway_policy::run_tests(&policy, &compiled)?;
//!
//! // 2. Full map for a node (at connect):
//! let id = nodes[0].id;
//! let filter = compiled.filter_for(id);              // or shared_filter_for (no copies)
//! for peer in compiled.peers_of(id) {
//!     let view = compiled.peer_view(id, peer);       // AllowedIPs + PrimaryRoutes for this viewer
//! }
//! let ssh = compiled.ssh_policy_for(id, "https://headway.example.com");
//! let caps = compiled.cap_map_for(id);               // policy capabilities (add tailnet ones)
//!
//! // 3. A node joined / left / changed: recompile, then rebuild only the
//! //    views of the nodes that can notice (everyone else's view is unchanged).
//! let after = compiled.recompile(&users, &nodes)?;
//! for affected in compiled.affected_by_node_change(&after, id) { /* send deltas */ }
//!
//! // 4. Registration: may this user (or this tagged key) put these tags on a node?
//! policy.may_claim_tags(TagClaimant::User(&users[0]), &["tag:server".to_owned()])
//!     .map_err(|refusal| println!("{refusal}")).ok();
//! // Route approval by autoApprovers (the compile already applies it):
//! let approved = policy.auto_approves(&users, &nodes[0], &"10.0.0.0/24".parse().unwrap());
//! # Ok(()) }
//! ```
//!
//! Without a policy (`CompiledPolicy::new(None, …)`), or with a policy that
//! has neither `acls` nor `grants`, everyone may reach everything, exactly as
//! Tailscale's default.
//!
//! Offline, [`explain`] answers the same questions for a policy text and a
//! JSON tailnet description (what `headway policy explain` prints).
//!
//! # Modules
//! - `hujson`: HuJSON text to a positioned JSON tree.
//! - `syntax`: the policy language, its checks and refusal messages.
//! - `compile`: rules resolved against a tailnet, identity classes, filters, peers.
//! - `ssh`, `caps`, `routes`, `tags`: SSH policy, node capabilities, route
//!   approval and primary routers, tag ownership.
//! - `policytest`: the policy's `tests` and `sshTests`.
//! - `explain`: the offline what-if and its JSON formats.

mod addr;
mod bitset;
mod caps;
mod compile;
mod error;
mod explain;
mod hujson;
mod policytest;
mod routes;
mod ssh;
mod syntax;
mod tags;
mod topology;

pub use addr::AddrSet;
pub use compile::{
    CompiledPolicy, PeerView, SharedFilterRule, primary_routes, sticky_primary_routes,
};
pub use error::{ErrorKind, PolicyError, Position};
pub use explain::{PLACEHOLDER_CONTROL_URL, Topology, explain, explain_topology, render};
pub use policytest::run_tests;
pub use syntax::Policy;
pub use tags::{TagClaimError, TagClaimant};
pub use topology::{PolicyNode, PolicyUser};

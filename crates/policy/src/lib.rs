//! headway-policy: Tailscale-compatible access policy.
//!
//! Operators write one HuJSON policy in Tailscale's language (groups, hosts,
//! tagOwners, acls, grants, ssh, nodeAttrs, autoApprovers, tests); this crate
//! reads and checks it ([`Policy::parse`]), compiles it against the tailnet
//! ([`CompiledPolicy`]) into each node's packet filter, peer list, SSH policy
//! and capabilities, and explains it offline ([`explain`]).
//!
//! Pure logic: no I/O, no clock, no randomness.

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
pub use compile::{CompiledPolicy, PeerView, SharedFilterRule, primary_routes};
pub use error::{ErrorKind, PolicyError, Position};
pub use explain::{PLACEHOLDER_CONTROL_URL, Topology, explain, explain_topology, render};
pub use policytest::run_tests;
pub use syntax::Policy;
pub use tags::{TagClaimError, TagClaimant};
pub use topology::{PolicyNode, PolicyUser};

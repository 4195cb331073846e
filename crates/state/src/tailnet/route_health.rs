//! Health of high-availability subnet routers (`node.routes.ha.*`).
//!
//! A router that keeps its map session open but no longer answers (a hung
//! or overloaded `tailscaled`) would stay primary for its routes: nothing
//! closes the session. Where two or more online routers serve one route,
//! the server asks each, over its map stream, to call a one-time URL back
//! (a `PingRequest`). A router that does not call back in time is marked
//! unhealthy and counts as offline for the election of primaries, so the
//! route moves to a healthy router. A router that answers again is healthy
//! again but does not take its routes back (primaries are sticky).
//!
//! Marks live in memory. A router's mark goes when it stops being a
//! candidate (it went offline, or is the last router of its routes): a
//! route is never left without a primary because of probes alone.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use headway_proto::tailcfg::PingRequest;
use ipnet::IpNet;
use tokio::sync::oneshot;

use super::Tailnet;
use super::register::new_auth_id;
use crate::access::policy_node;
use crate::model::NodeId;

/// Where clients answer a probe (`?id=<ping id>`).
pub const PING_RESPONSE_PATH: &str = "/machine/ping-response";

#[derive(Debug, Default)]
pub(super) struct RouteHealth {
    unhealthy: HashSet<NodeId>,
    pings: HashMap<String, PendingPing>,
}

#[derive(Debug)]
struct PendingPing {
    node: NodeId,
    sent_at: DateTime<Utc>,
    answered: oneshot::Sender<()>,
}

/// A probe on its way.
#[derive(Debug)]
pub struct Ping {
    pub id: String,
    pub node: NodeId,
    /// The map session the request went out on.
    pub session: u64,
    /// Completes when the client calls back.
    pub answered: oneshot::Receiver<()>,
}

impl Tailnet {
    /// Whether `id` counts as online when primaries are elected: it has a
    /// map session and has not failed a health probe.
    pub(super) fn routes_online(&self, id: NodeId) -> bool {
        // Online on any replica (several replicas share one tailnet).
        self.is_online(id) && !self.route_health.lock().unhealthy.contains(&id)
    }

    /// The online routers of every subnet route served by more than one.
    fn ha_groups(&self) -> BTreeMap<IpNet, Vec<NodeId>> {
        let mut by_route: BTreeMap<IpNet, Vec<NodeId>> = BTreeMap::new();
        let inner = self.inner.read();
        for n in inner.nodes.values() {
            // Most nodes serve no route: skip them before building the
            // policy view (served routes are approved and announced).
            if n.approved_routes.is_empty()
                || n.hostinfo.routable_ips.is_empty()
                || !self.sessions.is_online(n.id)
            {
                continue;
            }
            for r in policy_node(n, true).subnet_routes() {
                by_route.entry(r).or_default().push(n.id);
            }
        }
        by_route.retain(|_, ids| ids.len() > 1);
        by_route
    }

    /// Routers to probe: online nodes that share a subnet route with
    /// another online node. Marks of nodes that are no longer candidates
    /// are dropped (and the election rerun when that changes anything).
    pub async fn ha_routers(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.ha_groups().into_values().flatten().collect();
        ids.sort_unstable();
        ids.dedup();
        let dropped: Vec<NodeId> = {
            let mut h = self.route_health.lock();
            let gone: Vec<NodeId> = h
                .unhealthy
                .iter()
                .filter(|id| ids.binary_search(id).is_err())
                .copied()
                .collect();
            for id in &gone {
                h.unhealthy.remove(id);
            }
            gone
        };
        if !dropped.is_empty() {
            tracing::info!(nodes = ?dropped, "route health: no longer HA routers, health marks cleared");
            self.rerun_election(&dropped).await;
        }
        ids
    }

    /// Asks `node`'s client to call back over its map stream. `None` when
    /// the node has no map session here.
    pub fn ping_node(&self, node: NodeId) -> Option<Ping> {
        let session = self.sessions.get(node)?;
        let id = new_auth_id();
        let (tx, rx) = oneshot::channel();
        self.route_health.lock().pings.insert(
            id.clone(),
            PendingPing {
                node,
                sent_at: self.now(),
                answered: tx,
            },
        );
        let base = self.settings.server_url.trim_end_matches('/');
        session.ping(PingRequest {
            url: format!("{base}{PING_RESPONSE_PATH}?id={id}"),
            ..Default::default()
        });
        Some(Ping {
            id,
            node,
            session: session.id,
            answered: rx,
        })
    }

    /// A client called a probe URL back. The unguessable id, sent to that
    /// node only, is what authenticates the answer. Returns whether the id
    /// was waiting here, or was passed on.
    ///
    /// With several replicas the answer may reach another replica than the
    /// one that sent the probe (the load balancer picks): an id not waiting
    /// here is passed on to the others (and counts as taken).
    pub fn answer_ping(&self, id: &str) -> bool {
        self.complete_ping(id) || self.forward_ping_answer(id)
    }

    /// A probe answer another replica received and passed on.
    pub fn answer_forwarded_ping(&self, id: &str) -> bool {
        self.complete_ping(id)
    }

    fn complete_ping(&self, id: &str) -> bool {
        let Some(p) = self.route_health.lock().pings.remove(id) else {
            return false;
        };
        let took = self.now() - p.sent_at;
        tracing::debug!(
            node.id = p.node,
            ms = took.num_milliseconds(),
            "route health: probe answered"
        );
        let _ = p.answered.send(());
        true
    }

    /// Forgets a probe nobody answered.
    pub fn forget_ping(&self, id: &str) {
        self.route_health.lock().pings.remove(id);
    }

    /// The session a node has now, if any.
    pub fn session_id(&self, node: NodeId) -> Option<u64> {
        self.sessions.get(node).map(|s| s.id)
    }

    /// Records one probe round. A route whose online routers would all be
    /// unhealthy keeps them as they were (a probe alone never leaves a
    /// route without a primary). Returns the routers whose mark changed.
    pub async fn set_router_health(&self, results: &[(NodeId, bool)]) -> Vec<NodeId> {
        let groups = self.ha_groups();
        let changed: Vec<NodeId> = {
            let mut h = self.route_health.lock();
            let mut next = h.unhealthy.clone();
            for (id, healthy) in results {
                if *healthy {
                    next.remove(id);
                } else {
                    next.insert(*id);
                }
            }
            for routers in groups.values() {
                if routers.iter().all(|id| next.contains(id)) {
                    for id in routers {
                        if !h.unhealthy.contains(id) {
                            next.remove(id);
                        }
                    }
                }
            }
            let changed: Vec<NodeId> = next.symmetric_difference(&h.unhealthy).copied().collect();
            h.unhealthy = next;
            changed
        };
        for id in &changed {
            if self.route_health.lock().unhealthy.contains(id) {
                tracing::warn!(
                    node.id = id,
                    "route health: router did not answer its probe; its routes move to a healthy router"
                );
            } else {
                tracing::info!(
                    node.id = id,
                    "route health: router answers again (it does not take its routes back)"
                );
            }
        }
        if !changed.is_empty() {
            self.rerun_election(&changed).await;
        }
        changed
    }

    /// Routers whose health mark is set, sorted.
    pub fn unhealthy_routers(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.route_health.lock().unhealthy.iter().copied().collect();
        v.sort_unstable();
        v
    }

    async fn rerun_election(&self, routers: &[NodeId]) {
        let _w = self.write.lock().await;
        let before = self.access();
        let after = self.recompile();
        for id in routers {
            self.fan_out_recompile(&before, &after, *id);
        }
    }
}

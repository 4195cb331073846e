//! What the control protocol asks of the tailnet: registration, map-request
//! updates, online/offline, and the clean-up of ephemeral nodes.

use std::sync::Arc;

use headway_proto::capver;
use headway_proto::keys::MachinePublic;
use headway_proto::tailcfg::{self, Hostinfo, MapRequest, PeerChange};

use super::Tailnet;
use crate::error::{Error, Result};
use crate::model::*;
use crate::sessions::Session;

/// What a map request changed.
#[derive(Debug, Clone)]
pub struct MapUpdate {
    pub node: Arc<Node>,
}

/// Host info fields peers see. A change to anything else (NetInfo latencies,
/// Go version…) is kept but told to nobody.
pub fn peer_visible_hostinfo(h: &Hostinfo) -> Hostinfo {
    Hostinfo {
        ipn_version: h.ipn_version.clone(),
        os: h.os.clone(),
        os_version: h.os_version.clone(),
        hostname: h.hostname.clone(),
        routable_ips: h.routable_ips.clone(),
        request_tags: h.request_tags.clone(),
        services: h.services.clone(),
        ssh_host_keys: h.ssh_host_keys.clone(),
        shields_up: h.shields_up,
        net_info: None,
        other: Default::default(),
    }
}

impl Tailnet {
    /// The `User`/`Login` pair a client stores for its profile.
    pub fn login_of(&self, node: &Node) -> (tailcfg::User, tailcfg::Login) {
        match node
            .user_id
            .and_then(|u| self.user(u))
            .filter(|_| !node.is_tagged())
        {
            Some(u) => (
                tailcfg::User {
                    id: u.id,
                    display_name: u.display().to_string(),
                    profile_pic_url: u.profile_pic_url.clone(),
                    created: Some(u.created_at),
                },
                tailcfg::Login {
                    id: u.id,
                    provider: if u.provider.is_empty() {
                        "headway".into()
                    } else {
                        u.provider.clone()
                    },
                    login_name: u.login_name(),
                    display_name: u.display().to_string(),
                    profile_pic_url: u.profile_pic_url.clone(),
                },
            ),
            None => (
                tailcfg::User {
                    id: TAGGED_DEVICES_USER_ID,
                    display_name: "Tagged Devices".into(),
                    ..Default::default()
                },
                tailcfg::Login {
                    id: TAGGED_DEVICES_USER_ID,
                    provider: "headway".into(),
                    login_name: TAGGED_DEVICES_USER_NAME.into(),
                    display_name: "Tagged Devices".into(),
                    ..Default::default()
                },
            ),
        }
    }

    /// Applies what a `/machine/map` request says about the node (disco key,
    /// endpoints, host info) and tells peers what they need to know.
    pub async fn apply_map_request(
        &self,
        machine_key: MachinePublic,
        req: &MapRequest,
    ) -> Result<MapUpdate> {
        if !capver::is_supported(req.version) {
            return Err(Error::Invalid(capver::unsupported_message(req.version)));
        }
        let _w = self.write.lock().await;
        let Some(old) = self.node_by_key(&req.node_key) else {
            return Err(Error::not_found("node key", req.node_key.short()));
        };
        if old.machine_key != machine_key {
            return Err(Error::Unauthorized(
                "node key belongs to another machine".into(),
            ));
        }
        let mut node = (*old).clone();
        let mut patch = PeerChange {
            node_id: node.id,
            ..Default::default()
        };
        let mut patched = false;
        if !req.disco_key.is_zero() && req.disco_key != node.disco_key {
            node.disco_key = req.disco_key;
            patch.disco_key = Some(req.disco_key);
            patched = true;
        }
        if !req.endpoints.is_empty() && req.endpoints != node.endpoints {
            node.endpoints = req.endpoints.clone();
            patch.endpoints = Some(req.endpoints.clone());
            patched = true;
        }
        if req.version != node.cap_version {
            node.cap_version = req.version;
            patch.cap = req.version;
            patched = true;
        }
        if let Some(h) = &req.hostinfo {
            let merged = merge_hostinfo(&node.hostinfo, h.clone());
            if let Some(derp) = merged
                .net_info
                .as_ref()
                .map(|i| i.preferred_derp)
                .filter(|d| *d != 0)
                && derp != node.home_derp
            {
                node.home_derp = derp;
                patch.derp_region = derp;
                patched = true;
            }
            if !merged.hostname.is_empty() {
                node.hostname = merged.hostname.clone();
            }
            node.hostinfo = merged;
        }
        if *old == node {
            return Ok(MapUpdate { node: old });
        }
        let node = Arc::new(node);
        self.mark_soft_dirty(node.id);
        let node = if old.hostinfo.routable_ips != node.hostinfo.routable_ips {
            // Newly announced routes may be auto-approved: a durable change.
            self.commit_node(Some(&old), Some(node.clone()));
            self.auto_approve_locked(node.id).await?.unwrap_or(node)
        } else if super::peer_record_changed(&old, &node) {
            // Peers need the whole record (and a policy recompile may follow).
            self.commit_node(Some(&old), Some(node.clone()));
            node
        } else {
            self.inner.write().put_node(node.clone());
            if patched {
                self.patch_peers(patch);
            }
            node
        };
        // Once memory holds the new state: that is what gets published.
        self.publish_soft(node.id);
        Ok(MapUpdate { node })
    }

    /// A streaming map request began. Peers learn the node is online.
    pub async fn open_session(&self, node_id: NodeId) -> Arc<Session> {
        let (session, came_online) = self.sessions.open(node_id);
        if came_online {
            self.inner.write().offline_since.remove(&node_id);
            self.publish_soft(node_id);
            self.patch_peers(PeerChange {
                node_id,
                online: Some(true),
                ..Default::default()
            });
            self.online_changed(node_id).await;
            tracing::debug!(node.id = node_id, "node online");
        }
        session
    }

    /// A router coming or going can move primary routes: recompile then.
    pub(super) async fn online_changed(&self, node_id: NodeId) {
        let serves_routes = self.node(node_id).is_some_and(|n| {
            n.approved_routes
                .iter()
                .any(|r| n.hostinfo.routable_ips.contains(r))
        });
        if !serves_routes {
            return;
        }
        let _w = self.write.lock().await;
        let before = self.access();
        let after = self.recompile();
        self.fan_out_recompile(&before, &after, node_id);
    }

    /// A streaming map request ended. When it was the node's last, peers
    /// learn it went offline and when it was last seen.
    pub async fn close_session(&self, session: &Session) {
        if !self.sessions.close(session) {
            return;
        }
        // Several replicas: the client may already be connected to another.
        if self.session_moved_away(session.node_id).await {
            return;
        }
        let now = self.now();
        let updated = {
            let mut inner = self.inner.write();
            inner.offline_since.insert(session.node_id, now);
            match inner.nodes.get(&session.node_id).cloned() {
                Some(n) => {
                    let mut n = (*n).clone();
                    n.last_seen = Some(now);
                    inner.put_node(Arc::new(n));
                    true
                }
                None => false,
            }
        };
        if updated {
            self.mark_soft_dirty(session.node_id);
            self.publish_soft(session.node_id);
            self.patch_peers(PeerChange {
                node_id: session.node_id,
                online: Some(false),
                last_seen: Some(now),
                ..Default::default()
            });
            self.online_changed(session.node_id).await;
            tracing::debug!(node.id = session.node_id, "node offline");
        }
    }

    /// Deletes ephemeral nodes offline for longer than the inactivity timeout.
    /// Returns the ids deleted.
    pub async fn collect_ephemeral(&self) -> Result<Vec<NodeId>> {
        let now = self.now();
        let timeout = chrono::Duration::from_std(self.settings.ephemeral_inactivity_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let due: Vec<NodeId> = {
            let inner = self.inner.read();
            inner
                .nodes
                .values()
                .filter(|n| n.ephemeral && !self.is_online(n.id))
                .filter(|n| {
                    inner
                        .offline_since
                        .get(&n.id)
                        .is_some_and(|t| now - *t >= timeout)
                })
                .map(|n| n.id)
                .collect()
        };
        let mut deleted = Vec::new();
        for id in due {
            let _w = self.write.lock().await;
            // Re-check under the writer lock: it may have reconnected.
            if self.is_online(id) || self.node(id).is_none() {
                continue;
            }
            self.delete_node_locked(id).await?;
            tracing::info!(node.id = id, "ephemeral node removed after inactivity");
            deleted.push(id);
        }
        Ok(deleted)
    }
}

/// A new Hostinfo replaces the old one, except that a missing NetInfo keeps
/// the previous one (clients omit it until they have measured).
pub(super) fn merge_hostinfo(old: &Hostinfo, mut new: Hostinfo) -> Hostinfo {
    if new.net_info.is_none() {
        new.net_info = old.net_info.clone();
    }
    new
}

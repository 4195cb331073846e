//! What the control protocol asks of the tailnet: registration, map-request
//! updates, online/offline, and the clean-up of ephemeral nodes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use headway_proto::capver;
use headway_proto::keys::MachinePublic;
use headway_proto::tailcfg::{self, Hostinfo, MapRequest, PeerChange, RegisterRequest, RegisterResponse};
use rand::SeedableRng;

use super::Tailnet;
use super::preauth::check_usable;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::model::*;
use crate::naming;
use crate::sessions::Session;

/// How a registration ended, for the caller's logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// A node was created.
    Created,
    /// An existing node was re-authorised (re-login, key rotation).
    Reauthorized,
    /// A known node asked for its current state (tailscaled restart).
    Refreshed,
    LoggedOut,
    /// The request was refused with a message for the user.
    Refused,
    /// The client must log in interactively.
    NeedsLogin,
}

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

fn refused(message: impl Into<String>) -> RegisterResponse {
    RegisterResponse { error: message.into(), ..Default::default() }
}

impl Tailnet {
    /// The `User`/`Login` pair a client stores for its profile.
    pub fn login_of(&self, node: &Node) -> (tailcfg::User, tailcfg::Login) {
        match node.user_id.and_then(|u| self.user(u)).filter(|_| !node.is_tagged()) {
            Some(u) => (
                tailcfg::User {
                    id: u.id,
                    display_name: u.display().to_string(),
                    profile_pic_url: u.profile_pic_url.clone(),
                    created: Some(u.created_at),
                },
                tailcfg::Login {
                    id: u.id,
                    provider: if u.provider.is_empty() { "headway".into() } else { u.provider.clone() },
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

    fn register_ok(&self, node: &Node) -> RegisterResponse {
        let (user, login) = self.login_of(node);
        RegisterResponse {
            user,
            login,
            machine_authorized: true,
            node_key_expired: node.is_expired(self.now()),
            ..Default::default()
        }
    }

    /// `/machine/register`. `Err` is for requests the protocol answers with an
    /// HTTP error (a node key presented from another machine, an attempt to
    /// extend a key); refusals the user should read come back as
    /// `RegisterResponse::error`.
    pub async fn register(
        &self,
        machine_key: MachinePublic,
        req: &RegisterRequest,
    ) -> Result<(RegisterResponse, RegisterOutcome)> {
        if !capver::is_supported(req.version) {
            return Ok((refused(capver::unsupported_message(req.version)), RegisterOutcome::Refused));
        }
        if req.node_key.is_zero() {
            return Err(Error::Invalid("register request without a node key".into()));
        }
        let now = self.now();
        let _w = self.write.lock().await;
        let known = self.node_by_key(&req.node_key);
        if let Some(n) = &known
            && n.machine_key != machine_key {
                return Err(Error::Unauthorized(
                    "node key belongs to another machine".into(),
                ));
            }

        // 1. A past expiry is a logout, whatever else the request carries.
        if req.expiry.is_some_and(|e| e <= now) {
            return match known {
                Some(node) => self.logout_locked(&node, now).await,
                None => Ok((RegisterResponse::default(), RegisterOutcome::LoggedOut)),
            };
        }

        let auth_key = req.auth.as_ref().map(|a| a.auth_key.as_str()).filter(|k| !k.is_empty());

        // 2. No key: a known node refreshing after a restart, or asking for an
        //    earlier expiry.
        if auth_key.is_none() {
            if let Some(node) = known {
                if node.is_expired(now) {
                    return Ok((
                        RegisterResponse { node_key_expired: true, ..Default::default() },
                        RegisterOutcome::NeedsLogin,
                    ));
                }
                if let Some(want) = req.expiry {
                    if node.expiry.is_some_and(|cur| want > cur) {
                        return Err(Error::Invalid("extending the key expiry is not allowed".into()));
                    }
                    let node = self
                        .update_node_locked(node.id, |n| {
                            n.expiry = Some(want);
                            Ok(())
                        })
                        .await?;
                    return Ok((self.register_ok(&node), RegisterOutcome::Refreshed));
                }
                return Ok((self.register_ok(&node), RegisterOutcome::Refreshed));
            }
            return Ok((
                refused(
                    "this Headway server needs an auth key: run `tailscale up --login-server=<url> --authkey=<key>` with a key from `headway preauthkeys create`",
                ),
                RegisterOutcome::NeedsLogin,
            ));
        }

        // 3. Pre-auth key.
        let key = match self.lookup_auth_key(auth_key.unwrap_or_default()) {
            Ok(k) => k,
            Err(r) => {
                tracing::info!(machine = %machine_key.short(), "registration refused: {}", r.message());
                return Ok((refused(r.message()), RegisterOutcome::Refused));
            }
        };
        self.register_with_key(machine_key, req, key, known, now).await
    }

    async fn logout_locked(&self, node: &Arc<Node>, now: DateTime<Utc>) -> Result<(RegisterResponse, RegisterOutcome)> {
        if node.ephemeral {
            self.delete_node_locked(node.id).await?;
            return Ok((
                RegisterResponse { node_key_expired: true, ..Default::default() },
                RegisterOutcome::LoggedOut,
            ));
        }
        // Store "now", not the client's 1970 sentinel.
        let node = self
            .update_node_locked(node.id, |n| {
                n.expiry = Some(now);
                Ok(())
            })
            .await?;
        if let Some(s) = self.sessions.get(node.id) {
            s.close();
        }
        tracing::info!(node.id = node.id, node.name = %node.given_name, "node logged out");
        Ok((self.register_ok(&node), RegisterOutcome::LoggedOut))
    }

    async fn register_with_key(
        &self,
        machine_key: MachinePublic,
        req: &RegisterRequest,
        mut key: PreAuthKey,
        known: Option<Arc<Node>>,
        now: DateTime<Utc>,
    ) -> Result<(RegisterResponse, RegisterOutcome)> {
        // The node this machine already has for this owner, if any: the node
        // key itself, the key being rotated, or the machine's node of the
        // same owner.
        let existing = known.or_else(|| {
            let inner = self.inner.read();
            let by_old = (!req.old_node_key.is_zero())
                .then(|| inner.by_node_key.get(&req.old_node_key))
                .flatten()
                .and_then(|id| inner.nodes.get(id))
                .filter(|n| n.machine_key == machine_key);
            by_old
                .or_else(|| {
                    inner.by_machine.get(&machine_key).and_then(|ids| {
                        ids.iter().filter_map(|id| inner.nodes.get(id)).find(|n| {
                            if key.tags.is_empty() { n.user_id == key.user_id && !n.is_tagged() } else { n.is_tagged() || n.user_id == key.user_id }
                        })
                    })
                })
                .cloned()
        });

        // A node re-sending the key it registered with, unchanged, is a
        // refresh: containers run `tailscale up --authkey` at every start and
        // a single-use key must not lock them out.
        let is_refresh = existing.as_ref().is_some_and(|n| {
            n.node_key == req.node_key && n.auth_key_id == Some(key.id) && !n.is_expired(now)
        });
        if !is_refresh
            && let Err(r) = check_usable(&key, now) {
                tracing::info!(machine = %machine_key.short(), key.prefix = %key.prefix, "registration refused: {}", r.message());
                return Ok((refused(r.message()), RegisterOutcome::Refused));
            }
        if let Some(other) = self.node_by_key(&req.node_key)
            && other.machine_key != machine_key {
                return Err(Error::Unauthorized("node key belongs to another machine".into()));
            }

        let hostinfo = req.hostinfo.clone().unwrap_or_default();
        let expiry = if !key.tags.is_empty() {
            None
        } else {
            req.expiry
                .filter(|e| *e > now)
                .or_else(|| self.settings.node_expiry.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now + d))
        };
        let ephemeral = key.ephemeral || req.ephemeral;

        let mut tx = self.store.begin().await?;
        let (node, outcome) = match existing {
            Some(old) => {
                let mut n = (*old).clone();
                n.node_key = req.node_key;
                n.hostname = hostinfo.hostname.clone();
                n.hostinfo = merge_hostinfo(&old.hostinfo, hostinfo);
                n.register_method = RegisterMethod::AuthKey;
                n.auth_key_id = Some(key.id);
                if !key.tags.is_empty() {
                    n.tags = key.tags.clone();
                    n.expiry = None;
                } else {
                    n.user_id = key.user_id;
                    n.tags.clear();
                    n.expiry = expiry;
                }
                n.ephemeral = ephemeral;
                n.cap_version = req.version;
                n.updated_at = now;
                tx.update_node(&n).await?;
                (n, RegisterOutcome::Reauthorized)
            }
            None => {
                let (ipv4, ipv6) = {
                    let mut rng = rand::rngs::StdRng::from_entropy();
                    self.inner.write().ipalloc.allocate(&mut rng).map_err(|e| Error::Conflict(e.to_string()))?
                };
                let given_name = {
                    let inner = self.inner.read();
                    naming::unique_label(&naming::sanitize_label(&hostinfo.hostname), |n| inner.name_taken(n, None))
                };
                let mut n = Node {
                    id: 0,
                    machine_key,
                    node_key: req.node_key,
                    disco_key: Default::default(),
                    hostname: hostinfo.hostname.clone(),
                    given_name,
                    user_id: key.user_id,
                    tags: key.tags.clone(),
                    ipv4,
                    ipv6,
                    endpoints: Vec::new(),
                    home_derp: hostinfo.net_info.as_ref().map(|i| i.preferred_derp).unwrap_or(0),
                    hostinfo,
                    expiry,
                    register_method: RegisterMethod::AuthKey,
                    auth_key_id: Some(key.id),
                    ephemeral,
                    approved_routes: Vec::new(),
                    cap_version: req.version,
                    created_at: now,
                    updated_at: now,
                    last_seen: None,
                };
                match tx.insert_node(&n).await {
                    Ok(id) => n.id = id,
                    Err(e) => {
                        self.release_ips(&n);
                        return Err(e.into());
                    }
                }
                (n, RegisterOutcome::Created)
            }
        };
        let key_changed = !key.used;
        if key_changed {
            key.used = true;
            tx.update_preauth_key(&key).await?;
        }
        if let Err(e) = tx.commit().await {
            if outcome == RegisterOutcome::Created {
                self.release_ips(&node);
            }
            return Err(e.into());
        }
        let viewers_before = match outcome {
            RegisterOutcome::Created => Vec::new(),
            _ => self.node(node.id).map(|o| self.viewers_of(&o)).unwrap_or_default(),
        };
        {
            let mut inner = self.inner.write();
            inner.put_node(Arc::new(node.clone()));
            inner.offline_since.entry(node.id).or_insert(now);
            if key_changed {
                inner.put_key(key.clone());
            }
        }
        tracing::info!(
            node.id = node.id,
            node.name = %node.given_name,
            machine = %machine_key.short(),
            key.prefix = %key.prefix,
            outcome = ?outcome,
            "node registered with pre-auth key"
        );
        match outcome {
            RegisterOutcome::Created => self.announce(Event::NodeAdded { node: node.id }),
            _ => self.announce_visibility_change(&viewers_before, &node),
        }
        Ok((self.register_ok(&node), outcome))
    }

    fn release_ips(&self, node: &Node) {
        let mut inner = self.inner.write();
        for ip in node.ips() {
            inner.ipalloc.release(ip);
        }
    }

    /// Applies what a `/machine/map` request says about the node (disco key,
    /// endpoints, host info) and tells peers what they need to know.
    pub async fn apply_map_request(&self, machine_key: MachinePublic, req: &MapRequest) -> Result<MapUpdate> {
        if !capver::is_supported(req.version) {
            return Err(Error::Invalid(capver::unsupported_message(req.version)));
        }
        let _w = self.write.lock().await;
        let Some(old) = self.node_by_key(&req.node_key) else {
            return Err(Error::not_found("node key", req.node_key.short()));
        };
        if old.machine_key != machine_key {
            return Err(Error::Unauthorized("node key belongs to another machine".into()));
        }
        let mut node = (*old).clone();
        let mut patch = PeerChange { node_id: node.id, ..Default::default() };
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
        let mut full_change = false;
        if let Some(h) = &req.hostinfo {
            let merged = merge_hostinfo(&node.hostinfo, h.clone());
            if let Some(derp) = merged.net_info.as_ref().map(|i| i.preferred_derp).filter(|d| *d != 0)
                && derp != node.home_derp {
                    node.home_derp = derp;
                    patch.derp_region = derp;
                    patched = true;
                }
            if peer_visible_hostinfo(&merged) != peer_visible_hostinfo(&node.hostinfo) {
                full_change = true;
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
        self.inner.write().put_node(node.clone());
        self.mark_soft_dirty(node.id);
        if full_change {
            self.announce(Event::NodeUpdated { node: node.id });
        } else if patched {
            self.patch_peers(patch);
        }
        Ok(MapUpdate { node })
    }

    /// A streaming map request began. Peers learn the node is online.
    pub fn open_session(&self, node_id: NodeId) -> Arc<Session> {
        let (session, came_online) = self.sessions.open(node_id);
        if came_online {
            self.inner.write().offline_since.remove(&node_id);
            self.patch_peers(PeerChange { node_id, online: Some(true), ..Default::default() });
            tracing::debug!(node.id = node_id, "node online");
        }
        session
    }

    /// A streaming map request ended. When it was the node's last, peers
    /// learn it went offline and when it was last seen.
    pub fn close_session(&self, session: &Session) {
        if !self.sessions.close(session) {
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
            self.patch_peers(PeerChange {
                node_id: session.node_id,
                online: Some(false),
                last_seen: Some(now),
                ..Default::default()
            });
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
                .filter(|n| n.ephemeral && !self.sessions.is_online(n.id))
                .filter(|n| inner.offline_since.get(&n.id).is_some_and(|t| now - *t >= timeout))
                .map(|n| n.id)
                .collect()
        };
        let mut deleted = Vec::new();
        for id in due {
            let _w = self.write.lock().await;
            // Re-check under the writer lock: it may have reconnected.
            if self.sessions.is_online(id) || self.node(id).is_none() {
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
fn merge_hostinfo(old: &Hostinfo, mut new: Hostinfo) -> Hostinfo {
    if new.net_info.is_none() {
        new.net_info = old.net_info.clone();
    }
    new
}

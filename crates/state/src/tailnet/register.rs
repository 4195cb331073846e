//! `/machine/register`: logout, restart refresh, pre-auth keys, and the
//! interactive flow (an AuthURL the client waits on until an administrator
//! — or, later, the identity provider — decides).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use headway_proto::capver;
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponse};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;

use super::Tailnet;
use super::control::merge_hostinfo;
use super::preauth::check_usable;
use crate::error::{Error, Result};
use crate::model::*;
use crate::naming;

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
    /// The client must log in: it was given an AuthURL (or told its key expired).
    NeedsLogin,
}

/// How long an interactive registration waits for someone to approve it.
pub const PENDING_REGISTRATION_TTL: Duration = Duration::from_secs(15 * 60);

fn refused(message: impl Into<String>) -> RegisterResponse {
    RegisterResponse {
        error: message.into(),
        ..Default::default()
    }
}

/// The decision on a pending interactive registration.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Approved(NodeId),
    Rejected(String),
}

/// A machine waiting at its AuthURL.
#[derive(Debug)]
pub(super) struct PendingRegistration {
    machine_key: MachinePublic,
    node_key: NodePublic,
    old_node_key: NodePublic,
    hostinfo: Hostinfo,
    ephemeral: bool,
    expiry: Option<DateTime<Utc>>,
    version: i32,
    created_at: DateTime<Utc>,
    verdict: watch::Sender<Option<Verdict>>,
}

/// A pending registration as admins see it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingInfo {
    pub auth_id: String,
    pub hostname: String,
    pub machine_key: MachinePublic,
    pub node_key: NodePublic,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    by_id: HashMap<String, PendingRegistration>,
}

/// What a registration grants, whoever vouches for it (a key, an admin, an IdP).
struct Grant {
    user_id: Option<UserId>,
    tags: Vec<String>,
    ephemeral: bool,
    method: RegisterMethod,
    auth_key: Option<PreAuthKey>,
}

/// The parts of a register request an authorisation needs.
struct Request<'a> {
    node_key: NodePublic,
    old_node_key: NodePublic,
    hostinfo: &'a Hostinfo,
    expiry: Option<DateTime<Utc>>,
    version: i32,
}

pub(super) fn new_auth_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Tailnet {
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

    /// The AuthURL of a pending registration.
    pub fn auth_url(&self, auth_id: &str) -> String {
        format!(
            "{}/register/{auth_id}",
            self.settings.server_url.trim_end_matches('/')
        )
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
        let now = self.now();
        let method = if req.expiry.is_some_and(|e| e <= now) {
            "logout"
        } else if req.auth.as_ref().is_some_and(|a| !a.auth_key.is_empty()) {
            "authkey"
        } else {
            "interactive"
        };
        let result = self.register_inner(machine_key, req).await;
        let outcome = match &result {
            Ok((_, RegisterOutcome::Created)) => "created",
            Ok((_, RegisterOutcome::Reauthorized)) => "reauthorized",
            Ok((_, RegisterOutcome::Refreshed)) => "refreshed",
            Ok((_, RegisterOutcome::LoggedOut)) => "logged_out",
            Ok((_, RegisterOutcome::Refused)) => "refused",
            Ok((_, RegisterOutcome::NeedsLogin)) => "needs_login",
            Err(_) => "error",
        };
        self.metrics.registration(method, outcome);
        result
    }

    async fn register_inner(
        &self,
        machine_key: MachinePublic,
        req: &RegisterRequest,
    ) -> Result<(RegisterResponse, RegisterOutcome)> {
        if !capver::is_supported(req.version) {
            return Ok((
                refused(capver::unsupported_message(req.version)),
                RegisterOutcome::Refused,
            ));
        }
        if req.node_key.is_zero() {
            return Err(Error::Invalid("register request without a node key".into()));
        }
        let now = self.now();
        let auth_key = req
            .auth
            .as_ref()
            .map(|a| a.auth_key.as_str())
            .filter(|k| !k.is_empty());
        let logout = req.expiry.is_some_and(|e| e <= now);
        // Waiting on an AuthURL holds no lock: it can take minutes.
        if !req.followup.is_empty() && auth_key.is_none() && !logout {
            return self.wait_followup(machine_key, req).await;
        }

        let _w = self.write.lock().await;
        let known = self.node_by_key(&req.node_key);
        if let Some(n) = &known
            && n.machine_key != machine_key
        {
            return Err(Error::Unauthorized(
                "node key belongs to another machine".into(),
            ));
        }

        // 1. A past expiry is a logout, whatever else the request carries.
        if logout {
            return match known {
                Some(node) => self.logout_locked(&node, now).await,
                None => Ok((RegisterResponse::default(), RegisterOutcome::LoggedOut)),
            };
        }

        // 2. No key: a known node refreshing after a restart or asking for an
        //    earlier expiry; otherwise an interactive login.
        let Some(auth_key) = auth_key else {
            if let Some(node) = known.as_ref().filter(|n| !n.is_expired(now)) {
                if let Some(want) = req.expiry {
                    if node.expiry.is_some_and(|cur| want > cur) {
                        return Err(Error::Invalid(
                            "extending the key expiry is not allowed".into(),
                        ));
                    }
                    let node = self
                        .update_node_locked(node.id, |n| {
                            n.expiry = Some(want);
                            Ok(())
                        })
                        .await?;
                    return Ok((self.register_ok(&node), RegisterOutcome::Refreshed));
                }
                return Ok((self.register_ok(node), RegisterOutcome::Refreshed));
            }
            if let Some(node) = &known {
                // Expired: the client makes a new node key and logs in again.
                self.record_audit(
                    &format!("machine:{}", machine_key.short()),
                    "node.key_expired",
                    &format!("node:{}", node.id),
                    None,
                    Some(serde_json::json!({
                        "name": node.given_name,
                        "expiry": node.expiry,
                    })),
                )
                .await;
                return Ok((
                    RegisterResponse {
                        node_key_expired: true,
                        ..Default::default()
                    },
                    RegisterOutcome::NeedsLogin,
                ));
            }
            let id = self.start_interactive(machine_key, req, now);
            tracing::info!(machine = %machine_key.short(), auth_id = %id, "interactive registration started");
            return Ok((
                RegisterResponse {
                    auth_url: self.auth_url(&id),
                    ..Default::default()
                },
                RegisterOutcome::NeedsLogin,
            ));
        };

        // 3. Pre-auth key.
        let key = match self.lookup_auth_key(auth_key) {
            Ok(k) => k,
            Err(r) => {
                tracing::info!(machine = %machine_key.short(), "registration refused: {}", r.message());
                return Ok((refused(r.message()), RegisterOutcome::Refused));
            }
        };
        // A node re-sending the key it registered with, unchanged, is a
        // refresh: containers run `tailscale up --authkey` at every start and
        // a single-use key must not lock them out.
        let is_refresh = known.as_ref().is_some_and(|n| {
            n.node_key == req.node_key && n.auth_key_id == Some(key.id) && !n.is_expired(now)
        });
        if !is_refresh && let Err(r) = check_usable(&key, now) {
            tracing::info!(machine = %machine_key.short(), key.prefix = %key.prefix, "registration refused: {}", r.message());
            self.record_audit(
                &format!("preauth_key:{}", key.prefix),
                "node.register_refused",
                &format!("machine:{}", machine_key.short()),
                None,
                Some(serde_json::json!({ "reason": r.message() })),
            )
            .await;
            return Ok((refused(r.message()), RegisterOutcome::Refused));
        }
        let hostinfo = req.hostinfo.clone().unwrap_or_default();
        let tags = match self.claim_tags(&key, &hostinfo.request_tags) {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(machine = %machine_key.short(), "registration refused: {e}");
                return Ok((refused(e.to_string()), RegisterOutcome::Refused));
            }
        };
        let grant = Grant {
            user_id: key.user_id,
            tags,
            ephemeral: key.ephemeral || req.ephemeral,
            method: RegisterMethod::AuthKey,
            auth_key: Some(key),
        };
        let request = Request {
            node_key: req.node_key,
            old_node_key: req.old_node_key,
            hostinfo: &hostinfo,
            expiry: req.expiry,
            version: req.version,
        };
        let (node, outcome) = self
            .authorize_locked(machine_key, &request, grant, known, now)
            .await?;
        let node = match self.auto_approve_locked(node.id).await? {
            Some(n) => (*n).clone(),
            None => node,
        };
        Ok((self.register_ok(&node), outcome))
    }

    async fn logout_locked(
        &self,
        node: &Arc<Node>,
        now: DateTime<Utc>,
    ) -> Result<(RegisterResponse, RegisterOutcome)> {
        if node.ephemeral {
            self.delete_node_locked(node.id).await?;
            return Ok((
                RegisterResponse {
                    node_key_expired: true,
                    ..Default::default()
                },
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
        self.record_audit(
            &format!("machine:{}", node.machine_key.short()),
            "node.logout",
            &format!("node:{}", node.id),
            None,
            Some(serde_json::json!({ "name": node.given_name })),
        )
        .await;
        Ok((self.register_ok(&node), RegisterOutcome::LoggedOut))
    }

    /// Creates the node, or re-authorises the one this machine already has
    /// for this owner (keeping its id, name and addresses). Writer lock held.
    async fn authorize_locked(
        &self,
        machine_key: MachinePublic,
        req: &Request<'_>,
        grant: Grant,
        known: Option<Arc<Node>>,
        now: DateTime<Utc>,
    ) -> Result<(Node, RegisterOutcome)> {
        if let Some(other) = self.node_by_key(&req.node_key)
            && other.machine_key != machine_key
        {
            return Err(Error::Unauthorized(
                "node key belongs to another machine".into(),
            ));
        }
        // The node this machine already has: the node key itself, the key
        // being rotated, or the machine's node of the same owner.
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
                            if grant.tags.is_empty() {
                                n.user_id == grant.user_id && !n.is_tagged()
                            } else {
                                n.is_tagged() || n.user_id == grant.user_id
                            }
                        })
                    })
                })
                .cloned()
        });

        let expiry = if !grant.tags.is_empty() {
            // Tagged devices do not expire, as in Tailscale.
            None
        } else {
            req.expiry.filter(|e| *e > now).or_else(|| {
                self.settings
                    .node_expiry
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .map(|d| now + d)
            })
        };

        let (node, outcome) = match existing {
            Some(old) => {
                let mut n = (*old).clone();
                n.node_key = req.node_key;
                n.hostname = req.hostinfo.hostname.clone();
                n.hostinfo = merge_hostinfo(&old.hostinfo, req.hostinfo.clone());
                n.register_method = grant.method;
                n.auth_key_id = grant.auth_key.as_ref().map(|k| k.id);
                if grant.tags.is_empty() {
                    n.user_id = grant.user_id;
                    n.tags.clear();
                } else {
                    n.tags = grant.tags.clone();
                }
                n.expiry = expiry;
                n.ephemeral = grant.ephemeral;
                n.cap_version = req.version;
                n.updated_at = now;
                (n, RegisterOutcome::Reauthorized)
            }
            None => {
                let (ipv4, ipv6) = {
                    let mut rng = rand::rngs::StdRng::from_entropy();
                    self.inner
                        .write()
                        .ipalloc
                        .allocate(&mut rng)
                        .map_err(|e| Error::Conflict(e.to_string()))?
                };
                let given_name = {
                    let inner = self.inner.read();
                    naming::unique_label(&naming::sanitize_label(&req.hostinfo.hostname), |n| {
                        inner.name_taken(n, None)
                    })
                };
                let node = Node {
                    id: 0,
                    machine_key,
                    node_key: req.node_key,
                    disco_key: Default::default(),
                    hostname: req.hostinfo.hostname.clone(),
                    given_name,
                    user_id: grant.user_id,
                    tags: grant.tags.clone(),
                    ipv4,
                    ipv6,
                    endpoints: Vec::new(),
                    home_derp: req
                        .hostinfo
                        .net_info
                        .as_ref()
                        .map(|i| i.preferred_derp)
                        .unwrap_or(0),
                    hostinfo: req.hostinfo.clone(),
                    expiry,
                    register_method: grant.method,
                    auth_key_id: grant.auth_key.as_ref().map(|k| k.id),
                    ephemeral: grant.ephemeral,
                    approved_routes: Vec::new(),
                    cap_version: req.version,
                    created_at: now,
                    updated_at: now,
                    last_seen: None,
                };
                (node, RegisterOutcome::Created)
            }
        };
        let key_prefix = grant.auth_key.as_ref().map(|k| k.prefix.clone());
        let mut key = grant.auth_key;
        let key_changed = key.as_ref().is_some_and(|k| !k.used);
        if let Some(k) = key.as_mut() {
            k.used = true;
        }
        let written = async {
            let mut tx = self.store.begin().await?;
            let mut node = node.clone();
            match outcome {
                RegisterOutcome::Created => node.id = tx.insert_node(&node).await?,
                _ => tx.update_node(&node).await?,
            }
            if let Some(k) = key.as_ref().filter(|_| key_changed) {
                tx.update_preauth_key(k).await?;
            }
            tx.commit().await?;
            Ok::<Node, Error>(node)
        }
        .await;
        let node = match written {
            Ok(n) => n,
            Err(e) => {
                if outcome == RegisterOutcome::Created {
                    self.release_ips(&node);
                }
                return Err(e);
            }
        };
        let old = self.node(node.id);
        {
            let mut inner = self.inner.write();
            inner.offline_since.entry(node.id).or_insert(now);
            if let Some(k) = key.filter(|_| key_changed) {
                inner.put_key(k);
            }
        }
        self.commit_node(old.as_deref(), Some(Arc::new(node.clone())));
        tracing::info!(
            node.id = node.id,
            node.name = %node.given_name,
            machine = %machine_key.short(),
            method = node.register_method.as_str(),
            outcome = ?outcome,
            "node authorised"
        );
        // Who vouched for the node: its pre-auth key (by prefix), or the
        // owner who logged in (OIDC) or approved it (CLI; the admin action
        // is recorded by the API too).
        let actor = match (key_prefix, grant.method) {
            (Some(prefix), _) => format!("preauth_key:{prefix}"),
            (None, method) => match node.user_id.and_then(|u| self.user(u)) {
                Some(u) => format!("{}:{}", method.as_str(), u.name),
                None => method.as_str().to_string(),
            },
        };
        let action = match outcome {
            RegisterOutcome::Created => "node.register",
            _ => "node.login",
        };
        self.record_audit(
            &actor,
            action,
            &format!("node:{}", node.id),
            None,
            Some(serde_json::json!({
                "name": node.given_name,
                "user": node.user_id,
                "tags": node.tags,
                "method": node.register_method.as_str(),
                "machineKey": machine_key.to_string(),
                "nodeKey": node.node_key.to_string(),
                "expiry": node.expiry,
                "ephemeral": node.ephemeral,
            })),
        )
        .await;
        Ok((node, outcome))
    }

    /// The tags a node registering with `key` gets: the key's own, or the
    /// ones it asks for (`--advertise-tags`) when the policy lets the key's
    /// owner apply them.
    fn claim_tags(&self, key: &PreAuthKey, requested: &[String]) -> Result<Vec<String>> {
        let requested = super::normalize_tags(requested)?;
        if !key.tags.is_empty() {
            self.check_tag_claim(None, &key.tags)?;
            if let Some(extra) = requested.iter().find(|t| !key.tags.contains(t)) {
                return Err(Error::Forbidden(format!(
                    "this auth key registers nodes with tags {}; --advertise-tags asks for {extra} too: use a key with that tag or drop it",
                    key.tags.join(", ")
                )));
            }
            return Ok(key.tags.clone());
        }
        self.check_tag_claim(key.user_id, &requested)?;
        Ok(requested)
    }

    fn release_ips(&self, node: &Node) {
        let mut inner = self.inner.write();
        for ip in node.ips() {
            inner.ipalloc.release(ip);
        }
    }

    // --- interactive registration --------------------------------------------

    fn start_interactive(
        &self,
        machine_key: MachinePublic,
        req: &RegisterRequest,
        now: DateTime<Utc>,
    ) -> String {
        let id = new_auth_id();
        let (verdict, _) = watch::channel(None);
        let pending = PendingRegistration {
            machine_key,
            node_key: req.node_key,
            old_node_key: req.old_node_key,
            hostinfo: req.hostinfo.clone().unwrap_or_default(),
            ephemeral: req.ephemeral,
            expiry: req.expiry,
            version: req.version,
            created_at: now,
            verdict,
        };
        self.pending.lock().by_id.insert(id.clone(), pending);
        id
    }

    /// The client waits on its AuthURL until the registration is decided.
    /// An unknown or expired id gets a fresh AuthURL (the client restarts
    /// its wait), as the protocol expects.
    async fn wait_followup(
        &self,
        machine_key: MachinePublic,
        req: &RegisterRequest,
    ) -> Result<(RegisterResponse, RegisterOutcome)> {
        let id = req
            .followup
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let receiver = {
            let pending = self.pending.lock();
            pending
                .by_id
                .get(&id)
                .filter(|p| p.machine_key == machine_key && p.node_key == req.node_key)
                .map(|p| p.verdict.subscribe())
        };
        let Some(mut receiver) = receiver else {
            let id = self.start_interactive(machine_key, req, self.now());
            return Ok((
                RegisterResponse {
                    auth_url: self.auth_url(&id),
                    ..Default::default()
                },
                RegisterOutcome::NeedsLogin,
            ));
        };
        let verdict = loop {
            if let Some(v) = receiver.borrow_and_update().clone() {
                break Some(v);
            }
            if receiver.changed().await.is_err() {
                // Dropped: it expired or the server is stopping.
                break None;
            }
        };
        match verdict {
            Some(Verdict::Approved(node_id)) => match self.node(node_id) {
                Some(node) => Ok((self.register_ok(&node), RegisterOutcome::Created)),
                None => Ok((
                    refused("the node was deleted right after its approval; log in again"),
                    RegisterOutcome::Refused,
                )),
            },
            Some(Verdict::Rejected(reason)) => Ok((refused(reason), RegisterOutcome::Refused)),
            None => {
                let id = self.start_interactive(machine_key, req, self.now());
                Ok((
                    RegisterResponse {
                        auth_url: self.auth_url(&id),
                        ..Default::default()
                    },
                    RegisterOutcome::NeedsLogin,
                ))
            }
        }
    }

    /// Registrations waiting for approval.
    pub fn pending_registrations(&self) -> Vec<PendingInfo> {
        let ttl =
            chrono::Duration::from_std(PENDING_REGISTRATION_TTL).unwrap_or(chrono::Duration::MAX);
        let mut v: Vec<PendingInfo> = self
            .pending
            .lock()
            .by_id
            .iter()
            .map(|(id, p)| PendingInfo {
                auth_id: id.clone(),
                hostname: p.hostinfo.hostname.clone(),
                machine_key: p.machine_key,
                node_key: p.node_key,
                created_at: p.created_at,
                expires_at: p.created_at + ttl,
            })
            .collect();
        v.sort_by_key(|p| p.created_at);
        v
    }

    pub fn pending_registration(&self, auth_id: &str) -> Result<PendingInfo> {
        self.pending_registrations()
            .into_iter()
            .find(|p| p.auth_id == auth_id)
            .ok_or_else(|| Error::not_found("pending registration", auth_id))
    }

    /// Approves a waiting machine as a node of `user` (`headway auth register`).
    pub async fn approve_registration(
        &self,
        auth_id: &str,
        user: UserId,
        method: RegisterMethod,
    ) -> Result<Node> {
        self.approve_registration_until(auth_id, user, method, None)
            .await
    }

    /// [`Tailnet::approve_registration`] with the node key expiring at
    /// `expiry` rather than when the client asked or `node.expiry` says:
    /// an identity provider's token expiry (`oidc.use_expiry_from_token`).
    pub async fn approve_registration_until(
        &self,
        auth_id: &str,
        user: UserId,
        method: RegisterMethod,
        expiry: Option<DateTime<Utc>>,
    ) -> Result<Node> {
        self.require_user(user)?;
        let _w = self.write.lock().await;
        let Some(p) = self.pending.lock().by_id.remove(auth_id) else {
            return Err(Error::NotFound {
                what: "pending registration",
                key: format!(
                    "{auth_id} (it may have expired: the machine gets a new link when it retries `tailscale up`)"
                ),
            });
        };
        let now = self.now();
        let known = self
            .node_by_key(&p.node_key)
            .filter(|n| n.machine_key == p.machine_key);
        let request = Request {
            node_key: p.node_key,
            old_node_key: p.old_node_key,
            hostinfo: &p.hostinfo,
            expiry: expiry.or(p.expiry),
            version: p.version,
        };
        let tags = super::normalize_tags(&p.hostinfo.request_tags)?;
        if let Err(e) = self.check_tag_claim(Some(user), &tags) {
            self.pending.lock().by_id.insert(auth_id.to_string(), p);
            return Err(e);
        }
        let grant = Grant {
            user_id: Some(user),
            tags,
            ephemeral: p.ephemeral,
            method,
            auth_key: None,
        };
        match self
            .authorize_locked(p.machine_key, &request, grant, known, now)
            .await
        {
            Ok((node, _)) => {
                let node = match self.auto_approve_locked(node.id).await {
                    Ok(Some(n)) => (*n).clone(),
                    Ok(None) => node,
                    Err(e) => {
                        tracing::warn!(node.id = node.id, "auto-approving routes failed: {e}");
                        node
                    }
                };
                let _ = p.verdict.send(Some(Verdict::Approved(node.id)));
                Ok(node)
            }
            Err(e) => {
                // Keep it pending: the admin can fix the cause and retry.
                self.pending.lock().by_id.insert(auth_id.to_string(), p);
                Err(e)
            }
        }
    }

    /// Approves a waiting machine without naming a user: only for a machine
    /// re-authenticating a node it already has (the node keeps its owner).
    pub async fn approve_pending(&self, auth_id: &str) -> Result<Node> {
        let owner = {
            let pending = self.pending.lock();
            let p = pending
                .by_id
                .get(auth_id)
                .ok_or_else(|| Error::not_found("pending registration", auth_id))?;
            let inner = self.inner.read();
            [p.node_key, p.old_node_key]
                .iter()
                .filter(|k| !k.is_zero())
                .filter_map(|k| inner.by_node_key.get(k))
                .filter_map(|id| inner.nodes.get(id))
                .find(|n| n.machine_key == p.machine_key)
                .and_then(|n| n.user_id)
        };
        let Some(user) = owner else {
            return Err(Error::Invalid(format!(
                "registration {auth_id} is for a new machine: approve it for a user with `headway auth register --auth-id {auth_id} --user <USER>`"
            )));
        };
        self.approve_registration(auth_id, user, RegisterMethod::Cli)
            .await
    }

    /// Refuses a waiting machine; its `tailscale up` fails with `reason`.
    pub fn reject_registration(&self, auth_id: &str, reason: &str) -> Result<()> {
        let Some(p) = self.pending.lock().by_id.remove(auth_id) else {
            return Err(Error::not_found("pending registration", auth_id));
        };
        let reason = if reason.is_empty() {
            "registration rejected by an administrator"
        } else {
            reason
        };
        let _ = p.verdict.send(Some(Verdict::Rejected(reason.to_string())));
        tracing::info!(auth_id, "interactive registration rejected");
        Ok(())
    }

    /// Forgets registrations nobody decided on in time. Their clients get a
    /// new AuthURL on their next attempt.
    pub fn expire_pending_registrations(&self) -> usize {
        let now = self.now();
        let ttl =
            chrono::Duration::from_std(PENDING_REGISTRATION_TTL).unwrap_or(chrono::Duration::MAX);
        let mut pending = self.pending.lock();
        let before = pending.by_id.len();
        pending.by_id.retain(|_, p| now - p.created_at < ttl);
        before - pending.by_id.len()
    }
}

//! Tailscale SSH `check`: where the policy says `check`, the destination
//! node holds an incoming SSH connection and asks the control server (over
//! Noise, `/machine/ssh/action/<src>/to/<dst>`) what to do. The first answer
//! carries a link for the person and a follow-up URL the node long-polls;
//! the follow-up answers Accept once the source node's owner signed in again
//! (OIDC) or an administrator approved (`headway auth approve`), or Reject.
//! A check passed for a (source node, destination node) pair counts for the
//! rule's `checkPeriod`.
//!
//! Pending checks and passed checks live in memory only, as pending
//! registrations do: after a restart, people check again.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use headway_proto::keys::MachinePublic;
use headway_proto::tailcfg::SshAction;
use serde::Serialize;
use tokio::sync::watch;

use super::Tailnet;
use super::register::new_auth_id;
use crate::error::{Error, Result};
use crate::model::{Node, NodeId, UserId};

/// How long a check waits for someone to decide.
pub const PENDING_SSH_CHECK_TTL: Duration = Duration::from_secs(15 * 60);

/// Passed checks older than the longest allowed `checkPeriod` (168h) are forgotten.
const MAX_CHECK_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Accepted,
    Rejected(String),
}

#[derive(Debug)]
struct PendingCheck {
    src: NodeId,
    dst: NodeId,
    local_user: String,
    created_at: DateTime<Utc>,
    /// Set once decided; the entry stays until it expires so that a
    /// follow-up arriving after the decision still gets it.
    verdict: watch::Sender<Option<Verdict>>,
}

#[derive(Debug, Default)]
pub(super) struct SshChecks {
    pending: HashMap<String, PendingCheck>,
    /// When each (source node, destination node) pair last passed a check.
    passed: HashMap<(NodeId, NodeId), DateTime<Utc>>,
}

/// A check waiting for a decision, as people and administrators see it.
#[derive(Debug, Clone, Serialize)]
pub struct SshCheckInfo {
    pub auth_id: String,
    pub src_node: NodeId,
    pub src_name: String,
    /// The source node's owner (none for a tagged node).
    pub src_user: Option<UserId>,
    pub dst_node: NodeId,
    pub dst_name: String,
    pub local_user: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A check URL as the destination node fetched it.
#[derive(Debug, Clone, Copy)]
pub struct SshCheckRequest<'a> {
    pub src: NodeId,
    pub dst: NodeId,
    pub local_user: &'a str,
    /// Present on the follow-up URL.
    pub auth_id: Option<&'a str>,
}

/// Who decides a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshApprover {
    /// An administrator (`headway auth approve`).
    Admin,
    /// A person who signed in at the identity provider: must own the source node.
    User(UserId),
}

/// What `headway auth approve` approved.
#[derive(Debug, Clone)]
pub enum Approved {
    Registration(Box<Node>),
    SshCheck(SshCheckInfo),
}

fn accept() -> SshAction {
    SshAction {
        accept: true,
        allow_agent_forwarding: true,
        allow_local_port_forwarding: true,
        allow_remote_port_forwarding: true,
        ..Default::default()
    }
}

fn reject(message: impl Into<String>) -> SshAction {
    let mut message = message.into();
    if !message.ends_with('\n') {
        message.push('\n');
    }
    SshAction {
        reject: true,
        message,
        ..Default::default()
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Records the first decision only; later ones change nothing.
fn decide(slot: &mut Option<Verdict>, verdict: Verdict) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(verdict);
    true
}

fn ttl() -> chrono::Duration {
    chrono::Duration::from_std(PENDING_SSH_CHECK_TTL).unwrap_or(chrono::Duration::MAX)
}

impl Tailnet {
    /// `GET /machine/ssh/action/<src>/to/<dst>`: what the destination node
    /// does with an SSH connection a `check` rule holds. `machine_key` is
    /// the Noise peer's: only the destination node may ask. The follow-up
    /// (with `auth_id`) waits until the check is decided.
    pub async fn ssh_action(
        &self,
        machine_key: MachinePublic,
        req: SshCheckRequest<'_>,
    ) -> Result<SshAction> {
        let dst = self.require_node(req.dst)?;
        if dst.machine_key != machine_key {
            return Err(Error::Unauthorized(format!(
                "node {} belongs to another machine: only the destination node asks about SSH connections to it",
                req.dst
            )));
        }
        let src = self.require_node(req.src)?;
        let now = self.now();
        // The policy in force decides, not the URL.
        let Some(period) = self.access().compiled().ssh_check_period(src.id, dst.id) else {
            tracing::info!(
                src = src.id,
                dst = dst.id,
                "ssh check: no check rule applies (any more)"
            );
            return Ok(reject(format!(
                "The tailnet policy has no SSH check rule from {} to {}; connect again.",
                src.given_name, dst.given_name
            )));
        };
        let recently_passed = |checks: &SshChecks| {
            !period.is_zero()
                && checks
                    .passed
                    .get(&(src.id, dst.id))
                    .is_some_and(|t| chrono::Duration::from_std(period).is_ok_and(|p| now - *t < p))
        };

        let Some(auth_id) = req.auth_id.filter(|a| !a.is_empty()) else {
            if recently_passed(&self.ssh_checks.lock()) {
                tracing::info!(
                    src = src.id,
                    dst = dst.id,
                    "ssh check: passed within the check period"
                );
                return Ok(accept());
            }
            return Ok(self.hold_and_delegate(&src, &dst, req.local_user, now));
        };

        let receiver = {
            let checks = self.ssh_checks.lock();
            match checks.pending.get(auth_id) {
                Some(p) if p.src != src.id || p.dst != dst.id => {
                    return Err(Error::Unauthorized(format!(
                        "SSH check {auth_id} is for node {} to node {}, not {} to {}",
                        p.src, p.dst, src.id, dst.id
                    )));
                }
                Some(p) => Some(p.verdict.subscribe()),
                None if recently_passed(&checks) => return Ok(accept()),
                None => None,
            }
        };
        // Gone (expired, or lost in a restart): a new link, so the person can still pass.
        let Some(mut receiver) = receiver else {
            return Ok(self.hold_and_delegate(&src, &dst, req.local_user, now));
        };
        let verdict = loop {
            if let Some(v) = receiver.borrow_and_update().clone() {
                break Some(v);
            }
            if receiver.changed().await.is_err() {
                break None;
            }
        };
        Ok(match verdict {
            Some(Verdict::Accepted) => accept(),
            Some(Verdict::Rejected(reason)) => reject(reason),
            None => reject("Nobody approved this SSH connection in time; connect again."),
        })
    }

    fn hold_and_delegate(
        &self,
        src: &Node,
        dst: &Node,
        local_user: &str,
        now: DateTime<Utc>,
    ) -> SshAction {
        let auth_id = new_auth_id();
        let (verdict, _) = watch::channel(None);
        self.ssh_checks.lock().pending.insert(
            auth_id.clone(),
            PendingCheck {
                src: src.id,
                dst: dst.id,
                local_user: local_user.to_string(),
                created_at: now,
                verdict,
            },
        );
        tracing::info!(
            auth_id = %auth_id,
            src = src.id,
            dst = dst.id,
            local_user,
            "ssh check: waiting for the source's owner or an administrator"
        );
        let base = self.settings.server_url.trim_end_matches('/');
        SshAction {
            message: format!(
                "# Headway SSH requires an additional check.\n\
                 # To authenticate, visit: {url}\n\
                 # (or an administrator runs: headway auth approve --auth-id {auth_id})\n",
                url = self.auth_url(&auth_id),
            ),
            hold_and_delegate: format!(
                "{base}/machine/ssh/action/{}/to/{}?local_user={}&auth_id={auth_id}",
                src.id,
                dst.id,
                query_escape(local_user)
            ),
            allow_agent_forwarding: true,
            allow_local_port_forwarding: true,
            allow_remote_port_forwarding: true,
            ..Default::default()
        }
    }

    /// An undecided SSH check.
    pub fn pending_ssh_check(&self, auth_id: &str) -> Result<SshCheckInfo> {
        let checks = self.ssh_checks.lock();
        let p = checks
            .pending
            .get(auth_id)
            .filter(|p| p.verdict.borrow().is_none())
            .ok_or_else(|| Error::not_found("pending SSH check", auth_id))?;
        Ok(self.check_info(auth_id, p))
    }

    /// Undecided SSH checks, oldest first.
    pub fn pending_ssh_checks(&self) -> Vec<SshCheckInfo> {
        let checks = self.ssh_checks.lock();
        let mut v: Vec<SshCheckInfo> = checks
            .pending
            .iter()
            .filter(|(_, p)| p.verdict.borrow().is_none())
            .map(|(id, p)| self.check_info(id, p))
            .collect();
        v.sort_by_key(|c| c.created_at);
        v
    }

    fn check_info(&self, auth_id: &str, p: &PendingCheck) -> SshCheckInfo {
        let src = self.node(p.src);
        let dst = self.node(p.dst);
        SshCheckInfo {
            auth_id: auth_id.to_string(),
            src_node: p.src,
            src_name: src
                .as_ref()
                .map(|n| n.given_name.clone())
                .unwrap_or_default(),
            src_user: src
                .as_ref()
                .filter(|n| !n.is_tagged())
                .and_then(|n| n.user_id),
            dst_node: p.dst,
            dst_name: dst.map(|n| n.given_name.clone()).unwrap_or_default(),
            local_user: p.local_user.clone(),
            created_at: p.created_at,
            expires_at: p.created_at + ttl(),
        }
    }

    /// Lets a held SSH connection through. A person approving must own the
    /// source node (a tagged source has no owner: only an administrator
    /// approves it).
    pub fn approve_ssh_check(&self, auth_id: &str, by: SshApprover) -> Result<SshCheckInfo> {
        let info = self.pending_ssh_check(auth_id)?;
        if let SshApprover::User(user) = by
            && info.src_user != Some(user)
        {
            return Err(Error::Forbidden(format!(
                "SSH check {auth_id} is for a connection from {}, which is not your device: only its owner (or an administrator) can approve it",
                info.src_name
            )));
        }
        let now = self.now();
        let mut checks = self.ssh_checks.lock();
        let decided = checks
            .pending
            .get(auth_id)
            .is_some_and(|p| p.verdict.send_if_modified(|v| decide(v, Verdict::Accepted)));
        if !decided {
            return Err(Error::not_found("pending SSH check", auth_id));
        }
        checks.passed.insert((info.src_node, info.dst_node), now);
        tracing::info!(auth_id, src = info.src_node, dst = info.dst_node, approver = ?by, "ssh check approved");
        Ok(info)
    }

    /// Refuses a held SSH connection; the person's `ssh` shows `reason`.
    pub fn reject_ssh_check(&self, auth_id: &str, reason: &str) -> Result<SshCheckInfo> {
        let info = self.pending_ssh_check(auth_id)?;
        let reason = if reason.is_empty() {
            "An administrator refused this SSH connection."
        } else {
            reason
        };
        let checks = self.ssh_checks.lock();
        let decided = checks.pending.get(auth_id).is_some_and(|p| {
            p.verdict
                .send_if_modified(|v| decide(v, Verdict::Rejected(reason.to_string())))
        });
        if !decided {
            return Err(Error::not_found("pending SSH check", auth_id));
        }
        tracing::info!(
            auth_id,
            src = info.src_node,
            dst = info.dst_node,
            "ssh check rejected"
        );
        Ok(info)
    }

    /// `headway auth approve`: a waiting SSH check, or a machine logging in
    /// again to a node it already has.
    pub async fn approve_auth_request(&self, auth_id: &str) -> Result<Approved> {
        if self.pending_ssh_check(auth_id).is_ok() {
            return self
                .approve_ssh_check(auth_id, SshApprover::Admin)
                .map(Approved::SshCheck);
        }
        self.approve_pending(auth_id)
            .await
            .map(|n| Approved::Registration(Box::new(n)))
    }

    /// `headway auth reject`: a waiting SSH check or registration.
    pub fn reject_auth_request(&self, auth_id: &str, reason: &str) -> Result<()> {
        if self.pending_ssh_check(auth_id).is_ok() {
            return self.reject_ssh_check(auth_id, reason).map(|_| ());
        }
        self.reject_registration(auth_id, reason)
    }

    /// Forgets checks nobody decided in time (their connections are refused)
    /// and passed checks older than any check period.
    pub fn expire_ssh_checks(&self) -> usize {
        let now = self.now();
        let ttl = ttl();
        let max = chrono::Duration::from_std(MAX_CHECK_PERIOD).unwrap_or(chrono::Duration::MAX);
        let mut checks = self.ssh_checks.lock();
        let before = checks.pending.len();
        checks.pending.retain(|_, p| now - p.created_at < ttl);
        checks.passed.retain(|_, t| now - *t < max);
        before - checks.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use headway_proto::keys::NodePublic;
    use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};

    use super::*;
    use crate::clock::ManualClock;
    use crate::error::ErrorKind;
    use crate::memstore::MemStore;
    use crate::settings::Settings;
    use crate::tailnet::{NewPreAuthKey, NewUser};

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("alice"), "alice");
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    struct Kit {
        tailnet: Arc<Tailnet>,
        clock: Arc<ManualClock>,
        /// The node ids of alice's laptop, bob's laptop and the server, as
        /// the store assigned them.
        alice: NodeId,
        bob: NodeId,
        server: NodeId,
    }

    impl Kit {
        /// The first request for an SSH connection from `src` to the server.
        fn first(&self, src: NodeId) -> SshCheckRequest<'static> {
            SshCheckRequest {
                src,
                dst: self.server,
                local_user: "root",
                auth_id: None,
            }
        }
    }

    /// The server's machine key: only it may ask about connections to it.
    const SERVER_MACHINE: MachinePublic = MachinePublic([3; 32]);

    /// The auth id in a HoldAndDelegate URL.
    fn auth_id(a: &SshAction) -> String {
        assert!(!a.accept && !a.reject, "{a:?}");
        assert!(a.message.contains("/register/"), "{a:?}");
        a.hold_and_delegate
            .split("auth_id=")
            .nth(1)
            .unwrap_or_else(|| panic!("no auth_id in {a:?}"))
            .to_string()
    }

    /// alice's laptop (machine key 1), bob's laptop (2), and a `tag:server`
    /// owned by alice (3).
    async fn kit(ssh: &str) -> Kit {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ));
        let tailnet = Tailnet::load(
            Arc::new(MemStore::default()),
            clock.clone(),
            Settings::default(),
        )
        .await
        .unwrap();
        for (n, user, tags) in [
            (1u8, "alice", vec![]),
            (2, "bob", vec![]),
            (3, "alice", vec!["tag:server".to_string()]),
        ] {
            let uid = match tailnet.resolve_user(user) {
                Ok(u) => u.id,
                Err(_) => {
                    tailnet
                        .create_user(NewUser {
                            name: user.into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .id
                }
            };
            let (_, key) = tailnet
                .create_preauth_key(NewPreAuthKey {
                    user: Some(uid),
                    tags,
                    ..Default::default()
                })
                .await
                .unwrap();
            let req = RegisterRequest {
                version: 133,
                node_key: NodePublic([n; 32]),
                auth: Some(RegisterResponseAuth {
                    auth_key: key,
                    ..Default::default()
                }),
                hostinfo: Some(Hostinfo {
                    hostname: format!("n{n}"),
                    ..Default::default()
                }),
                ..Default::default()
            };
            tailnet
                .register(MachinePublic([n; 32]), &req)
                .await
                .unwrap();
        }
        let policy = format!(
            r#"{{"tagOwners": {{"tag:server": ["alice@"]}}, "acls": [{{"action": "accept", "src": ["*"], "dst": ["*:*"]}}], "ssh": [{ssh}]}}"#
        );
        tailnet.load_policy_file(&policy).await.unwrap();
        let id = |n: u8| {
            tailnet
                .node_by_key(&NodePublic([n; 32]))
                .unwrap_or_else(|| panic!("node {n} was registered"))
                .id
        };
        let (alice, bob, server) = (id(1), id(2), id(3));
        assert!(alice != bob && bob != server && alice != server);
        Kit {
            tailnet,
            clock,
            alice,
            bob,
            server,
        }
    }

    const CHECK: &str = r#"{"action": "check", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"], "checkPeriod": "1h"}"#;

    #[tokio::test]
    async fn only_the_destination_machine_may_ask() {
        let k = kit(CHECK).await;
        let unknown = k.alice.max(k.bob).max(k.server) + 100;
        // alice's machine asking about the server; the server's machine
        // asking about a node that does not exist.
        for (machine, node) in [(1u8, k.server), (3, unknown)] {
            let mut req = k.first(k.alice);
            req.dst = node;
            let err = k
                .tailnet
                .ssh_action(MachinePublic([machine; 32]), req)
                .await
                .unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::Unauthorized | ErrorKind::NotFound),
                "{err}"
            );
        }
        assert!(k.tailnet.pending_ssh_checks().is_empty());
    }

    #[tokio::test]
    async fn held_until_approved_then_passed_for_the_check_period() {
        let k = kit(CHECK).await;
        let t = &k.tailnet;
        let held = t
            .ssh_action(SERVER_MACHINE, k.first(k.alice))
            .await
            .unwrap();
        let prefix = format!(
            "http://127.0.0.1:8080/machine/ssh/action/{}/to/{}?local_user=root&auth_id=",
            k.alice, k.server
        );
        assert!(held.hold_and_delegate.starts_with(&prefix), "{held:?}");
        let id = auth_id(&held);
        let info = t.pending_ssh_check(&id).unwrap();
        assert_eq!(
            (info.src_node, info.dst_node, info.local_user.as_str()),
            (k.alice, k.server, "root")
        );

        // The follow-up waits; the decision releases it.
        let follow = SshCheckRequest {
            auth_id: Some(&id),
            ..k.first(k.alice)
        };
        let waiting = {
            let t = t.clone();
            let id = id.clone();
            let req = k.first(k.alice);
            tokio::spawn(async move {
                let req = SshCheckRequest {
                    auth_id: Some(&id),
                    ..req
                };
                t.ssh_action(SERVER_MACHINE, req).await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the follow-up waits for a decision");
        // Another node's follow-up with this id is refused.
        let other = SshCheckRequest {
            src: k.bob,
            ..follow
        };
        assert_eq!(
            t.ssh_action(SERVER_MACHINE, other)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Unauthorized
        );
        match t.approve_auth_request(&id).await.unwrap() {
            Approved::SshCheck(c) => assert_eq!(c.auth_id, id),
            other => panic!("{other:?}"),
        }
        assert!(waiting.await.unwrap().unwrap().accept);
        // A follow-up arriving after the decision still gets it.
        assert!(t.ssh_action(SERVER_MACHINE, follow).await.unwrap().accept);
        assert!(t.approve_auth_request(&id).await.is_err(), "decided once");

        // Within the period: accepted at once. For bob's node: not.
        k.clock.advance(chrono::Duration::minutes(59));
        assert!(
            t.ssh_action(SERVER_MACHINE, k.first(k.alice))
                .await
                .unwrap()
                .accept
        );
        auth_id(&t.ssh_action(SERVER_MACHINE, k.first(k.bob)).await.unwrap());
        // After it: held again.
        k.clock.advance(chrono::Duration::minutes(2));
        auth_id(
            &t.ssh_action(SERVER_MACHINE, k.first(k.alice))
                .await
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn only_the_source_owner_approves_as_a_person_and_rejections_reach_the_client() {
        let k = kit(CHECK).await;
        let t = &k.tailnet;
        let id = auth_id(
            &t.ssh_action(SERVER_MACHINE, k.first(k.alice))
                .await
                .unwrap(),
        );
        let bob = t.resolve_user("bob").unwrap().id;
        let alice = t.resolve_user("alice").unwrap().id;
        let err = t
            .approve_ssh_check(&id, SshApprover::User(bob))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
        t.approve_ssh_check(&id, SshApprover::User(alice)).unwrap();

        let id = auth_id(&t.ssh_action(SERVER_MACHINE, k.first(k.bob)).await.unwrap());
        t.reject_auth_request(&id, "").unwrap();
        let req = SshCheckRequest {
            auth_id: Some(&id),
            ..k.first(k.bob)
        };
        let a = t.ssh_action(SERVER_MACHINE, req).await.unwrap();
        assert!(a.reject && a.message.contains("refused"), "{a:?}");
    }

    #[tokio::test]
    async fn without_a_check_rule_the_connection_is_refused_and_stale_checks_expire() {
        let k = kit(CHECK).await;
        let t = &k.tailnet;
        let id = auth_id(
            &t.ssh_action(SERVER_MACHINE, k.first(k.alice))
                .await
                .unwrap(),
        );
        k.clock.advance(chrono::Duration::minutes(16));
        assert_eq!(t.expire_ssh_checks(), 1);
        assert!(t.pending_ssh_check(&id).is_err());
        // An unknown id gets a new link.
        let req = SshCheckRequest {
            auth_id: Some(&id),
            ..k.first(k.alice)
        };
        let fresh = auth_id(&t.ssh_action(SERVER_MACHINE, req).await.unwrap());
        assert_ne!(fresh, id);

        let k = kit(r#"{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]}"#).await;
        let a = k
            .tailnet
            .ssh_action(SERVER_MACHINE, k.first(k.alice))
            .await
            .unwrap();
        assert!(a.reject && a.message.contains("no SSH check rule"), "{a:?}");
    }
}

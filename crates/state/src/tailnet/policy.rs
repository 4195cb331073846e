//! The policy in force: setting it (from the API in database mode, from the
//! server's file watcher in file mode), checking a candidate without
//! applying it, and who may put which tags on a node.
//!
//! A policy that does not parse, names undefined things, or fails its own
//! `tests` is refused and the running policy stays.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use headway_policy::{Policy, PolicyError, TagClaimError, TagClaimant};
use serde::Serialize;

use super::Tailnet;
use crate::access::{Access, policy_node, policy_user};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::model::{StoredPolicy, UserId};
pub use crate::settings::PolicySource;

#[derive(Debug, Default)]
pub(super) struct PolicyState {
    pub(super) text: Option<String>,
    updated_at: Option<DateTime<Utc>>,
}

/// The policy as admins see it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// `None`: no policy, every node may reach every node.
    pub text: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    /// `"file"` or `"database"`.
    pub mode: &'static str,
    /// The file in file mode.
    pub path: Option<String>,
}

fn invalid(e: PolicyError) -> Error {
    Error::Invalid(format!("policy refused: {e}"))
}

/// Whether `text` says "no policy" (an empty file).
fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

impl Tailnet {
    pub fn policy_info(&self) -> PolicyInfo {
        let state = self.policy.read();
        let (mode, path) = match &self.settings.policy_source {
            PolicySource::File(p) => ("file", p.as_ref().map(|p| p.display().to_string())),
            PolicySource::Database => ("database", None),
        };
        PolicyInfo {
            text: state.text.clone(),
            updated_at: state.updated_at,
            mode,
            path,
        }
    }

    /// Parses and compiles `text` against the tailnet as it is, and runs its
    /// `tests`: what would be applied, without applying it.
    pub fn check_policy(&self, text: &str) -> Result<Option<Arc<Access>>> {
        if is_blank(text) {
            return Ok(None);
        }
        let policy = Arc::new(Policy::parse(text).map_err(invalid)?);
        let (users, nodes) = {
            let inner = self.inner.read();
            (
                inner
                    .users
                    .values()
                    .map(|u| policy_user(u))
                    .collect::<Vec<_>>(),
                inner
                    .nodes
                    .values()
                    .map(|n| policy_node(n, self.routes_online(n.id)))
                    .collect::<Vec<_>>(),
            )
        };
        policy.check_tailnet_references(&users).map_err(invalid)?;
        let access = Access::recompile_from(
            Some(&self.access()),
            Some(policy.clone()),
            &users,
            &nodes,
            &self.settings.server_url,
        )
        .map_err(invalid)?;
        headway_policy::run_tests(&policy, access.compiled()).map_err(invalid)?;
        Ok(Some(Arc::new(access)))
    }

    /// What `text` would give every node of the tailnet as it is (filter
    /// rules, peers with their routes, SSH rules, capabilities), in the
    /// format of `headway policy explain`, without applying it; or why it
    /// would be refused. A blank `text` explains "no policy".
    pub fn explain_policy(&self, text: &str) -> Result<serde_json::Value> {
        let access = match self.check_policy(text)? {
            Some(access) => access,
            None => Arc::new(self.default_access()?),
        };
        Ok(headway_policy::render(
            access.compiled(),
            &self.settings.server_url,
        ))
    }

    /// Tailscale's default (everyone reaches everything), compiled for the
    /// tailnet as it is.
    fn default_access(&self) -> Result<Access> {
        let (users, nodes) = {
            let inner = self.inner.read();
            (
                inner
                    .users
                    .values()
                    .map(|u| policy_user(u))
                    .collect::<Vec<_>>(),
                inner
                    .nodes
                    .values()
                    .map(|n| policy_node(n, self.routes_online(n.id)))
                    .collect::<Vec<_>>(),
            )
        };
        Access::compile(None, &users, &nodes, &self.settings.server_url).map_err(invalid)
    }

    /// Applies `text` (already known to be wanted) and resends every map.
    pub(super) fn install_policy(&self, text: &str, updated_at: DateTime<Utc>) -> Result<()> {
        let access = match self.check_policy(text)? {
            Some(a) => a,
            // No policy: Tailscale's default, compiled for the tailnet.
            None => Arc::new(self.default_access()?),
        };
        *self.access.write() = access;
        *self.policy.write() = PolicyState {
            text: (!is_blank(text)).then(|| text.to_string()),
            updated_at: Some(updated_at),
        };
        tracing::info!(bytes = text.len(), "policy applied");
        self.announce(Event::PolicyChanged);
        Ok(())
    }

    /// Sets the policy through the API (`policy.mode: database`): checked,
    /// stored, then applied. In file mode the file is the policy.
    pub async fn set_policy(&self, text: &str) -> Result<PolicyInfo> {
        if let PolicySource::File(path) = &self.settings.policy_source {
            let where_ = path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "policy.path".into());
            return Err(Error::Conflict(format!(
                "policy.mode is file: edit {where_} instead (it is reloaded on change and on SIGHUP), or set policy.mode: database"
            )));
        }
        let _w = self.write.lock().await;
        self.check_policy(text)?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        tx.set_policy(&StoredPolicy {
            text: text.to_string(),
            updated_at: now,
        })
        .await?;
        tx.commit().await?;
        self.install_policy(text, now)?;
        self.auto_approve_all_locked().await;
        Ok(self.policy_info())
    }

    /// Applies the policy file's content (file mode: at start, on change,
    /// on SIGHUP). A refused policy leaves the running one in place.
    pub async fn load_policy_file(&self, text: &str) -> Result<()> {
        let _w = self.write.lock().await;
        if self.policy.read().text.as_deref() == Some(text) {
            return Ok(());
        }
        let now = self.now();
        self.install_policy(text, now)?;
        self.auto_approve_all_locked().await;
        Ok(())
    }

    /// A new policy may auto-approve routes already announced.
    async fn auto_approve_all_locked(&self) {
        let ids: Vec<_> = self
            .nodes()
            .iter()
            .filter(|n| !self.auto_approvable(n).is_empty())
            .map(|n| n.id)
            .collect();
        for id in ids {
            if let Err(e) = self.auto_approve_locked(id).await {
                tracing::warn!(node.id = id, "auto-approving routes failed: {e}");
            }
        }
    }

    /// Whether `user` (or, for a user-less key, an administrator) may put
    /// `tags` on a node under the policy in force.
    pub(super) fn check_tag_claim(&self, user: Option<UserId>, tags: &[String]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let access = self.access();
        let Some(policy) = access.policy() else {
            return match user {
                // Tags an administrator put on a key stand without a policy.
                None => Ok(()),
                Some(_) => Err(Error::Forbidden(format!(
                    "cannot apply {}: there is no policy, so no tagOwners say who may use tags; set a policy with tagOwners first",
                    tags.join(", ")
                ))),
            };
        };
        let result = match user.and_then(|u| self.user(u)) {
            Some(u) => policy.may_claim_tags(TagClaimant::User(&policy_user(&u)), tags),
            // Administrators may apply any tag the policy defines: only an
            // undefined tag is refused.
            None => match policy.may_claim_tags(TagClaimant::Tags(&[]), tags) {
                Err(e @ TagClaimError::Undefined { .. }) => Err(e),
                _ => Ok(()),
            },
        };
        result.map_err(|e| Error::Forbidden(e.to_string()))
    }
}

//! Administrative node operations: delete, expire, rename, move, tag.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Tailnet, normalize_tags};
use crate::error::{Error, Result};
use crate::model::{Node, NodeId, UserId};
use crate::naming;

impl Tailnet {
    pub fn list_nodes(&self, user: Option<UserId>) -> Vec<Arc<Node>> {
        self.inner
            .read()
            .nodes
            .values()
            .filter(|n| user.is_none() || n.user_id == user)
            .cloned()
            .collect()
    }

    pub fn get_node(&self, id: NodeId) -> Result<Arc<Node>> {
        self.require_node(id)
    }

    pub async fn delete_node(&self, id: NodeId) -> Result<Node> {
        let _w = self.write.lock().await;
        self.delete_node_locked(id).await
    }

    /// Deletes with the writer lock already held.
    pub(super) async fn delete_node_locked(&self, id: NodeId) -> Result<Node> {
        let node = self.require_node(id)?;
        let mut tx = self.store.begin().await?;
        tx.delete_node(id).await?;
        tx.commit().await?;
        self.soft_dirty.lock().remove(&id);
        tracing::info!(node.id = id, node.name = %node.given_name, "node deleted");
        self.commit_node(Some(&node), None);
        Ok((*node).clone())
    }

    /// Expires the node's key now (or at `at`): it must log in again.
    pub async fn expire_node(&self, id: NodeId, at: Option<DateTime<Utc>>) -> Result<Node> {
        let now = self.now();
        let at = at.unwrap_or(now);
        self.update_node(id, |n| {
            n.expiry = Some(at);
            Ok(())
        })
        .await
    }

    /// Turns key expiry off for a user-owned node (Tailscale's "disable key
    /// expiry"): its key never expires, and an expired node works again. It
    /// lasts until the node logs in again, which applies `node.expiry`.
    pub async fn disable_node_expiry(&self, id: NodeId) -> Result<Node> {
        let node = self
            .update_node(id, |n| {
                n.expiry = None;
                Ok(())
            })
            .await?;
        tracing::info!(node.id = id, node.name = %node.given_name, "node key expiry disabled");
        Ok(node)
    }

    pub async fn rename_node(&self, id: NodeId, new_name: &str) -> Result<Node> {
        naming::validate_label(new_name).map_err(Error::Invalid)?;
        let _w = self.write.lock().await;
        if self.inner.read().name_taken(new_name, Some(id)) {
            return Err(Error::Conflict(format!(
                "node name {new_name:?} is already used by another node; names are unique in the tailnet"
            )));
        }
        self.update_node_locked(id, |n| {
            n.given_name = new_name.to_string();
            Ok(())
        })
        .await
    }

    /// Gives a user-owned node to another user.
    pub async fn move_node(&self, id: NodeId, user: UserId) -> Result<Node> {
        let _w = self.write.lock().await;
        self.require_user(user)?;
        self.update_node_locked(id, |n| {
            n.user_id = Some(user);
            Ok(())
        })
        .await
    }

    /// Replaces a node's tags (an empty list makes it user-owned again, which
    /// needs an owner).
    pub async fn set_node_tags(&self, id: NodeId, tags: &[String]) -> Result<Node> {
        let tags = normalize_tags(tags)?;
        self.check_tag_claim(None, &tags)?;
        self.update_node(id, |n| {
            if tags.is_empty() && n.user_id.is_none() {
                return Err(Error::Invalid(format!(
                    "node {} is owned by its tags alone; it needs at least one tag (or move it to a user first)",
                    n.id
                )));
            }
            if !tags.is_empty() {
                // Tagged devices do not expire, as in Tailscale.
                n.expiry = None;
            }
            n.tags = tags;
            Ok(())
        })
        .await
    }

    pub(super) async fn update_node(
        &self,
        id: NodeId,
        change: impl FnOnce(&mut Node) -> Result<()>,
    ) -> Result<Node> {
        let _w = self.write.lock().await;
        self.update_node_locked(id, change).await
    }

    /// Applies `change` to a copy, stores it, swaps it in, and tells whoever
    /// saw the node before or sees it now.
    pub(super) async fn update_node_locked(
        &self,
        id: NodeId,
        change: impl FnOnce(&mut Node) -> Result<()>,
    ) -> Result<Node> {
        let old = self.require_node(id)?;
        let mut node = (*old).clone();
        change(&mut node)?;
        node.updated_at = self.now();
        let mut tx = self.store.begin().await?;
        tx.update_node(&node).await?;
        tx.commit().await?;
        self.commit_node(Some(&old), Some(Arc::new(node.clone())));
        Ok(node)
    }
}

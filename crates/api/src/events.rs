//! `GET /api/v1/events`: the tailnet's change events as a server-sent event
//! stream, for dashboards (the web console's live view) and scripts.
//!
//! Each subscriber is one receiver of the tailnet's broadcast channel: a
//! change costs one small JSON line per subscriber, whatever the size of
//! the tailnet. Events carry ids, not records: a listener reads the current
//! record through the API when it needs more. A subscriber that falls too
//! far behind is sent `resync` (read everything again) and goes on.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::Stream;
use headway_state::Tailnet;
use headway_state::events::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::wire::Id;

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new().routes(routes!(events))
}

/// One change, as sent in an event's `data` (the SSE event name is `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEvent {
    /// `node_added`, `node_updated`, `node_removed`, `node_online`
    /// (online state or last seen), `node_patched` (endpoints and the like),
    /// `user_changed`, `user_removed`, `policy_changed`, `dns_changed`,
    /// `derp_map_changed`, or `resync` (events were missed: read again).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Id>,
    /// With `node_online`: whether the node is connected now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// With `node_online` when it went offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
}

impl ChangeEvent {
    fn kind(kind: &str) -> Self {
        ChangeEvent {
            kind: kind.to_string(),
            node: None,
            user: None,
            online: None,
            last_seen: None,
        }
    }

    fn node(kind: &str, id: i64) -> Self {
        ChangeEvent {
            node: Some(Id::from(id)),
            ..Self::kind(kind)
        }
    }

    pub fn from_domain(event: &Event) -> Self {
        match event {
            Event::NodeAdded { node } => Self::node("node_added", *node),
            Event::NodeUpdated { node } => Self::node("node_updated", *node),
            Event::NodeRemoved { node } => Self::node("node_removed", *node),
            Event::NodePatched { change } if change.online.is_some() => ChangeEvent {
                online: change.online,
                last_seen: change.last_seen,
                ..Self::node("node_online", change.node_id)
            },
            Event::NodePatched { change } => Self::node("node_patched", change.node_id),
            Event::UserChanged { user } => ChangeEvent {
                user: Some(Id::from(*user)),
                ..Self::kind("user_changed")
            },
            Event::UserRemoved { user } => ChangeEvent {
                user: Some(Id::from(*user)),
                ..Self::kind("user_removed")
            },
            Event::PolicyChanged => Self::kind("policy_changed"),
            Event::DnsChanged => Self::kind("dns_changed"),
            Event::DerpMapChanged => Self::kind("derp_map_changed"),
        }
    }

    fn to_sse(&self) -> SseEvent {
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string());
        SseEvent::default().event(self.kind.clone()).data(data)
    }
}

/// Stream change events
///
/// A `text/event-stream` of the tailnet's changes as they are committed:
/// each event is named by its kind and carries a `ChangeEvent` as its
/// data. A comment is sent every 15 s to keep proxies from closing an idle
/// stream.
#[utoipa::path(
    get, path = "/api/v1/events", operation_id = "streamEvents", tag = "Events",
    responses(
        (status = 200, description = "Server-sent events, each with a ChangeEvent as data", body = ChangeEvent, content_type = "text/event-stream"),
    )
)]
pub(crate) async fn events(
    State(tailnet): State<Arc<Tailnet>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = tailnet.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let change = match receiver.recv().await {
            Ok(event) => ChangeEvent::from_domain(&event),
            Err(RecvError::Lagged(_)) => ChangeEvent::kind("resync"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(change.to_sse()), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

//! The audit log at the API's edge: who called ([`Caller`]), recorded for
//! every admin action that succeeded, and `GET /api/v1/audit` to read it.
//!
//! [`record`] is a middleware on every door (unix socket, REST on the
//! network, gRPC). It runs the request with a per-request note slot (a
//! task-local) that handlers fill with [`note`]: the action's canonical
//! name, its target, and before/after snapshots. gRPC methods run the REST
//! handlers, so both doors record the same entry. A mutating request whose
//! handler left no note is still recorded, named by its method and path:
//! no admin action goes unrecorded because a handler forgot.
//!
//! Snapshots are the public wire shapes (no key material: created keys are
//! recorded by prefix, never in full).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use headway_state::Tailnet;
use headway_state::audit::{AuditEntry, AuditFilter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::QueryParams;
use crate::guard::{Caller, is_grpc};

/// What a handler tells the audit log about the action it performed.
#[derive(Debug, Default, Clone)]
struct Note {
    action: String,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
}

tokio::task_local! {
    static NOTE: Arc<Mutex<Option<Note>>>;
}

/// Describes the action the current request performed (call it after the
/// service call succeeded). Outside the middleware (in-process tests that
/// call a handler directly) it does nothing.
pub(crate) fn note(
    action: &str,
    target: impl Into<String>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let n = Note {
        action: action.to_string(),
        target: target.into(),
        before,
        after,
    };
    let _ = NOTE.try_with(|slot| *slot.lock() = Some(n));
}

/// A value as JSON for a snapshot (`None` if it cannot be written, which
/// plain wire types never fail).
pub(crate) fn snapshot<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

/// The parts of a node an administrator changes (not its host info).
pub(crate) fn node_summary(n: &headway_state::model::Node) -> Option<serde_json::Value> {
    Some(serde_json::json!({
        "id": n.id,
        "name": n.given_name,
        "hostname": n.hostname,
        "user": n.user_id,
        "tags": n.tags,
        "expiry": n.expiry,
        "approvedRoutes": n.approved_routes,
        "ipv4": n.ipv4,
        "ipv6": n.ipv6,
        "machineKey": n.machine_key.to_string(),
    }))
}

/// Notes a node action with its state before and after.
pub(crate) fn note_node(
    action: &str,
    id: i64,
    before: Option<&headway_state::model::Node>,
    after: Option<&headway_state::model::Node>,
) {
    note(
        action,
        format!("node:{id}"),
        before.and_then(node_summary),
        after.and_then(node_summary),
    );
}

/// How an actor is named in the log: never with a secret.
pub fn actor_name(tailnet: &Tailnet, caller: Option<&Caller>) -> String {
    match caller {
        None | Some(Caller::Local) => "local".into(),
        Some(Caller::ApiKey { id }) => match tailnet.list_api_keys().iter().find(|k| k.id == *id) {
            // A console session of a person signed in with OIDC: that person.
            Some(k)
                if k.description
                    .starts_with(crate::api_keys::CONSOLE_KEY_PREFIX) =>
            {
                format!("{} (api_key:{})", k.description, k.prefix)
            }
            Some(k) => format!("api_key:{}", k.prefix),
            None => format!("api_key:#{id}"),
        },
        Some(Caller::OAuth(grant)) => format!("oauth_client:#{}", grant.client),
    }
}

/// Whether a request can change anything (reads are not audited).
fn mutating(method: &Method, path: &str, grpc: bool) -> bool {
    if grpc {
        let name = path.rsplit('/').next().unwrap_or_default();
        return !["List", "Get", "Health", "Check", "Explain"]
            .iter()
            .any(|p| name.starts_with(p));
    }
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !path.ends_with("/policy/check")
        && !path.ends_with("/policy/explain")
        && !path.ends_with("/oauth/token")
}

/// The middleware: runs the request, and records it when it was a
/// successful admin action.
pub async fn record(State(tailnet): State<Arc<Tailnet>>, req: Request, next: Next) -> Response {
    let grpc = is_grpc(req.headers());
    let path = req.uri().path().to_string();
    if !mutating(req.method(), &path, grpc) {
        return next.run(req).await;
    }
    let caller = req.extensions().get::<Caller>().cloned();
    let fallback = if grpc {
        format!("grpc:{}", path.rsplit('/').next().unwrap_or_default())
    } else {
        format!("{} {path}", req.method())
    };
    let slot = Arc::new(Mutex::new(None));
    let response = NOTE.scope(slot.clone(), next.run(req)).await;
    // gRPC errors come back as a trailers-only answer: status in the headers.
    let ok = if grpc {
        response
            .headers()
            .get("grpc-status")
            .is_none_or(|s| s.as_bytes() == b"0")
    } else {
        response.status().is_success()
    };
    if ok {
        let n = slot.lock().take().unwrap_or(Note {
            action: fallback,
            ..Note::default()
        });
        let actor = actor_name(&tailnet, caller.as_ref());
        tailnet
            .record_audit(&actor, &n.action, &n.target, n.before, n.after)
            .await;
    }
    response
}

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// Filters of `GET /api/v1/audit` (all optional; text filters match by prefix).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListAuditQuery {
    /// Only entries at or after this time (RFC 3339).
    pub(crate) since: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub(crate) until: Option<String>,
    /// Only entries whose actor starts with this, e.g. `api_key:` or `local`.
    pub(crate) actor: Option<String>,
    /// Only entries whose action starts with this, e.g. `node.` or `user.create`.
    pub(crate) action: Option<String>,
    /// Only entries whose target starts with this, e.g. `node:12`.
    pub(crate) target: Option<String>,
    /// At most this many entries, newest first (default 1000, at most 100000).
    pub(crate) limit: Option<u32>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryWire {
    #[schema(value_type = String, format = "int64")]
    pub id: String,
    pub at: DateTime<Utc>,
    /// `local` (unix socket), `api_key:<prefix>`, `oauth_client:#<id>`,
    /// `oidc:<user>`, `preauth_key:<prefix>`, `machine:<key>`, `system`, …
    pub actor: String,
    /// `thing.verb`, e.g. `user.create`, `node.register`.
    pub action: String,
    /// `kind:id`, e.g. `node:12`; empty when the action has none.
    pub target: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<AuditEntry> for AuditEntryWire {
    fn from(e: AuditEntry) -> Self {
        AuditEntryWire {
            id: e.id.to_string(),
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
        }
    }
}

/// Audit log entries, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListAuditResponse {
    pub entries: Vec<AuditEntryWire>,
}

fn time_param(name: &str, text: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "query parameter {name}: {t:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z ({e})"
                ))
            }),
    }
}

/// List audit log entries
///
/// Admin actions and node authentication events, newest first.
#[utoipa::path(
    get, path = "/api/v1/audit", operation_id = "listAudit", tag = "Audit",
    params(ListAuditQuery),
    responses(
        (status = 200, body = ListAuditResponse),
        (status = 400, description = "A filter is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_audit(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(q): QueryParams<ListAuditQuery>,
) -> Result<Json<ListAuditResponse>, ApiError> {
    let text = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = AuditFilter {
        since: time_param("since", q.since)?,
        until: time_param("until", q.until)?,
        actor: text(q.actor),
        action: text(q.action),
        target: text(q.target),
        limit: q.limit.unwrap_or(0),
    };
    let entries = tailnet
        .list_audit(&filter)
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the audit log: {e}")))?;
    Ok(Json(ListAuditResponse {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_audited_and_writes_are() {
        assert!(!mutating(&Method::GET, "/api/v1/node", false));
        assert!(mutating(&Method::POST, "/api/v1/user", false));
        assert!(mutating(&Method::DELETE, "/api/v1/node/3", false));
        assert!(!mutating(&Method::POST, "/api/v1/policy/check", false));
        assert!(!mutating(
            &Method::POST,
            "/headscale.v1.HeadscaleService/ListNodes",
            true
        ));
        assert!(mutating(
            &Method::POST,
            "/headscale.v1.HeadscaleService/DeleteNode",
            true
        ));
    }
}

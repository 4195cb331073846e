//! What operators watch: the metrics listener (`metrics_listen_addr`:
//! `/metrics`, `/health`, `/ready`, `/debug/*`), the headscale-compatible
//! `/health` of the main listener, the DERP relay's counters as metrics, and
//! request ids on HTTP requests.
//!
//! The metrics listener is meant for a private network (Prometheus, a load
//! balancer's probes): `/debug` answers only there, never on the main
//! listener. Nothing it serves holds a secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use headway_derp::DerpServer;
use headway_state::Tailnet;
use headway_state::metrics::CONTENT_TYPE;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use rand::Rng;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The metrics listener's routes.
pub(crate) fn metrics_router(tailnet: Arc<Tailnet>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(live))
        .route("/ready", get(ready))
        .route("/debug", get(debug_index))
        .route("/debug/tailnet", get(debug_tailnet))
        .route("/debug/sessions", get(debug_sessions))
        .with_state(tailnet)
}

/// Binds `metrics_listen_addr` and serves [`metrics_router`] on it.
pub(crate) async fn spawn_metrics_listener(
    addr: std::net::SocketAddr,
    tailnet: Arc<Tailnet>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for metrics (metrics_listen_addr); is another server using it?"
        )
    })?;
    let bound = listener.local_addr()?;
    let router = metrics_router(tailnet).layer(axum::middleware::from_fn(request_id));
    tasks.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("metrics listener failed")
    });
    tracing::info!(%bound, "metrics, health and debug endpoints listening");
    Ok(bound)
}

async fn metrics(State(tailnet): State<Arc<Tailnet>>) -> Response {
    tailnet.refresh_gauges();
    let text = tailnet.metrics().encode();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

fn health_json(status: StatusCode, pass: bool, detail: Option<String>) -> Response {
    let mut body = json!({ "status": if pass { "pass" } else { "fail" } });
    if let Some(d) = detail {
        body["output"] = d.into();
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/health+json")],
        body.to_string(),
    )
        .into_response()
}

/// Liveness: the process answers HTTP. It does not look at the database,
/// so an orchestrator does not restart a server for a database outage.
async fn live() -> Response {
    health_json(StatusCode::OK, true, None)
}

/// Readiness: the database answers and every migration this build knows is
/// applied. 503 otherwise, saying which.
async fn ready(State(tailnet): State<Arc<Tailnet>>) -> Response {
    let store = tailnet.store();
    let check = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        store.ping().await?;
        store.migrated().await
    })
    .await;
    match check {
        Ok(Ok(true)) => health_json(StatusCode::OK, true, None),
        Ok(Ok(false)) => health_json(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            Some("the database is missing migrations this build needs".into()),
        ),
        Ok(Err(e)) => health_json(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            Some(format!("the database does not answer: {e}")),
        ),
        Err(_) => health_json(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            Some("the database did not answer within 5 s".into()),
        ),
    }
}

/// `/health` on the main listener, as headscale answers it: the database
/// is pinged; `{"status":"pass"}` or a 500 with `{"status":"fail"}`.
pub(crate) async fn headscale_health(tailnet: Arc<Tailnet>) -> Response {
    match tailnet.store().ping().await {
        Ok(()) => health_json(StatusCode::OK, true, None),
        Err(e) => {
            tracing::warn!("/health: the database does not answer: {e}");
            health_json(StatusCode::INTERNAL_SERVER_ERROR, false, None)
        }
    }
}

async fn debug_index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "/debug/tailnet   counts: users, nodes, sessions, pending registrations\n\
         /debug/sessions  the nodes with an open map session\n",
    )
        .into_response()
}

async fn debug_tailnet(State(tailnet): State<Arc<Tailnet>>) -> Response {
    let body = json!({
        "users": tailnet.users().len(),
        "nodes": tailnet.nodes().len(),
        "mapSessions": tailnet.sessions().len(),
        "pendingRegistrations": tailnet.pending_registrations().len(),
        "database": tailnet.store().describe(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    axum::Json(body).into_response()
}

async fn debug_sessions(State(tailnet): State<Arc<Tailnet>>) -> Response {
    let mut ids = tailnet.sessions().online_nodes();
    ids.sort_unstable();
    let nodes: Vec<_> = tailnet
        .nodes_by_id(ids)
        .iter()
        .map(|n| json!({ "id": n.id, "name": n.given_name }))
        .collect();
    axum::Json(json!({ "nodes": nodes })).into_response()
}

/// The embedded DERP relay's counters, read at scrape time.
#[derive(Debug)]
struct DerpCollector(Arc<DerpServer>);

impl Collector for DerpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let counters: [(&str, &str, u64); 8] = [
            (
                "derp_connections",
                "DERP connections accepted (including failed handshakes)",
                s.connections_total,
            ),
            (
                "derp_received_bytes",
                "Bytes of packets DERP clients sent to the relay",
                s.bytes_received,
            ),
            (
                "derp_sent_bytes",
                "Bytes of packets the relay delivered to DERP clients",
                s.bytes_sent,
            ),
            (
                "derp_received_packets",
                "Packets DERP clients sent to the relay",
                s.packets_received,
            ),
            (
                "derp_sent_packets",
                "Packets the relay delivered to DERP clients",
                s.packets_sent,
            ),
            (
                "derp_dropped_packets",
                "Packets dropped: unknown destination, full queue or gone client",
                s.packets_dropped_unknown_dest
                    + s.packets_dropped_queue_full
                    + s.packets_dropped_gone,
            ),
            (
                "derp_mesh_forwarded_out_packets",
                "Packets handed to another replica's relay for a client connected there",
                s.packets_forwarded_out,
            ),
            (
                "derp_mesh_forwarded_in_packets",
                "Packets another replica's relay handed over for a client connected here",
                s.packets_forwarded_in,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let g = ConstGauge::new(i64::try_from(s.connections_current).unwrap_or(i64::MAX));
        g.encode(encoder.encode_descriptor(
            "derp_connections_current",
            "DERP connections being served",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Exposes `server`'s counters in the tailnet's metrics.
pub(crate) fn register_derp(tailnet: &Tailnet, server: &Arc<DerpServer>) {
    tailnet
        .metrics()
        .register_collector(Box::new(DerpCollector(server.clone())));
}

/// The header carrying a request's id (taken from the client when it
/// sends a sane one, so a proxy's id follows the request through).
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn new_request_id() -> String {
    // A per-process random prefix and a counter: unique, short, and
    // telling how many requests came before.
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| rand::thread_rng().r#gen());
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:08x}-{n}")
}

fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| v.to_string())
}

/// Middleware: gives every request an id, runs it in a span carrying the
/// id, method and path (never the query string: OAuth codes travel there),
/// logs its outcome at debug level, and returns the id in `x-request-id`.
pub(crate) async fn request_id(req: Request, next: Next) -> Response {
    let id = client_request_id(&req).unwrap_or_else(new_request_id);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_are_checked() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let req = |v: &str| {
            axum::http::Request::builder()
                .header("x-request-id", v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(
            client_request_id(&req("lb-1234.abc")),
            Some("lb-1234.abc".into())
        );
        assert_eq!(client_request_id(&req("has space")), None);
        assert_eq!(client_request_id(&req(&"x".repeat(65))), None);
    }
}

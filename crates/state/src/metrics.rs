//! Prometheus metrics of the control plane, served on `metrics_listen_addr`.
//!
//! Hot paths only touch atomics (a counter increment, a histogram
//! observation); the gauges that describe the tailnet (nodes by state, open
//! map sessions) are set at scrape time from counts the tailnet already
//! keeps, by [`crate::Tailnet::refresh_gauges`]. Other crates add their own
//! families (the DERP relay's counters) with [`Metrics::register_collector`].
//!
//! The text is OpenMetrics (`prometheus-client`), which Prometheus reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::audit::{AuditEntry, AuditFilter};
use crate::store::{Snapshot, Store, StoreError, StoreTx};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `online`, `offline` or `expired`.
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `initial` (the full map a session starts with), `full` (a resync)
    /// or `delta`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    /// `authkey`, `interactive` (no key: a login URL or its follow-up), `logout`.
    pub method: &'static str,
    /// `created`, `reauthorized`, `refreshed`, `needs_login`, `logged_out`,
    /// `refused`, `error`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// `load`, `begin`, `ping`, `audit_insert`, `audit_list`, `audit_prune`.
    pub op: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s: map updates and queries are milliseconds when well.
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The control plane's metrics (cheap to clone: every metric is shared).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub nodes: Family<StateLabel, Gauge>,
    pub map_sessions: Gauge,
    pub map_updates_sent: Family<KindLabel, Counter>,
    /// `/machine/map` requests received, by kind: `stream` (a map
    /// session), `update` (a client reporting endpoints or host info),
    /// `poll` (one full map).
    pub map_requests: Family<KindLabel, Counter>,
    pub map_update_latency: HistogramFamily<KindLabel>,
    pub registrations: Family<RegistrationLabels, Counter>,
    pub policy_compile: Histogram,
    pub db_latency: HistogramFamily<OpLabel>,
    pub db_errors: Family<OpLabel, Counter>,
    pub audit_entries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("headway");
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            nodes: Family::default(),
            map_sessions: Gauge::default(),
            map_updates_sent: Family::default(),
            map_requests: Family::default(),
            map_update_latency: Family::new_with_constructor(latency_histogram),
            registrations: Family::default(),
            policy_compile: Histogram::new([
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            db_latency: Family::new_with_constructor(latency_histogram),
            db_errors: Family::default(),
            audit_entries: Counter::default(),
        };
        r.register(
            "nodes",
            "Nodes by state: online (a map session is open), offline, expired (key expired)",
            m.nodes.clone(),
        );
        r.register(
            "map_sessions",
            "Open streaming map sessions (connected clients)",
            m.map_sessions.clone(),
        );
        r.register(
            "map_updates_sent",
            "Map messages handed to sessions to send: the initial full map, resyncs, deltas",
            m.map_updates_sent.clone(),
        );
        r.register(
            "map_requests",
            "Map requests received: stream (a map session), update (a client reporting endpoints or host info), poll (one full map)",
            m.map_requests.clone(),
        );
        r.register_with_unit(
            "map_update_latency",
            "From the first change waiting for a session to the session taking it to build its message (batching included)",
            Unit::Seconds,
            m.map_update_latency.clone(),
        );
        r.register(
            "registrations",
            "Answers to /machine/register, by method and outcome",
            m.registrations.clone(),
        );
        r.register_with_unit(
            "policy_compile",
            "Time to compile the policy against the tailnet",
            Unit::Seconds,
            m.policy_compile.clone(),
        );
        r.register_with_unit(
            "db_latency",
            "Database round trips: starting a transaction (with the wait for a connection), loads, pings, audit queries",
            Unit::Seconds,
            m.db_latency.clone(),
        );
        r.register(
            "db_errors",
            "Database operations that failed",
            m.db_errors.clone(),
        );
        r.register(
            "audit_entries",
            "Audit log entries recorded",
            m.audit_entries.clone(),
        );
        r.register(
            "build",
            "The running build",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("package", "headway"),
            ]),
        );
        *m.registry.lock() = r;
        m
    }

    /// Adds a family computed at scrape time (under the `headway_` prefix).
    pub fn register_collector(&self, c: Box<dyn Collector>) {
        self.registry.lock().register_collector(c);
    }

    /// The metrics as OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; a collector that fails leaves
        // what was written so far, which is still valid up to that point.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock()) {
            tracing::warn!("encoding metrics failed: {e}");
        }
        out
    }

    pub fn observe_db(&self, op: &'static str, started: Instant, ok: bool) {
        self.db_latency
            .get_or_create(&OpLabel { op })
            .observe(started.elapsed().as_secs_f64());
        if !ok {
            self.db_errors.get_or_create(&OpLabel { op }).inc();
        }
    }

    pub fn map_update_sent(&self, kind: &'static str, latency: Duration) {
        let l = KindLabel { kind };
        self.map_updates_sent.get_or_create(&l).inc();
        self.map_update_latency
            .get_or_create(&l)
            .observe(latency.as_secs_f64());
    }

    pub fn registration(&self, method: &'static str, outcome: &'static str) {
        self.registrations
            .get_or_create(&RegistrationLabels { method, outcome })
            .inc();
    }
}

/// A [`Store`] that times what it forwards into [`Metrics`]: starting a
/// transaction, loads, pings and audit queries.
#[derive(Debug)]
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Metrics) -> Self {
        TimedStore { inner, metrics }
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        let t = Instant::now();
        let r = self.inner.load().await;
        self.metrics.observe_db("load", t, r.is_ok());
        r
    }
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        // Taking a connection and starting a transaction: one round trip
        // (plus a wait for a free connection). The transaction itself is
        // not wrapped, so every backend's own StoreTx methods stay in force.
        let t = Instant::now();
        let r = self.inner.begin().await;
        self.metrics.observe_db("begin", t, r.is_ok());
        r
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.ping().await;
        self.metrics.observe_db("ping", t, r.is_ok());
        r
    }
    async fn migrated(&self) -> Result<bool, StoreError> {
        self.inner.migrated().await
    }
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let t = Instant::now();
        let r = self.inner.insert_audit(entry).await;
        self.metrics.observe_db("audit_insert", t, r.is_ok());
        r
    }
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let t = Instant::now();
        let r = self.inner.list_audit(filter).await;
        self.metrics.observe_db("audit_list", t, r.is_ok());
        r
    }
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let t = Instant::now();
        let r = self.inner.prune_audit(before).await;
        self.metrics.observe_db("audit_prune", t, r.is_ok());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_every_family_and_moves() {
        let m = Metrics::new();
        m.registration("authkey", "created");
        m.map_update_sent("delta", Duration::from_millis(3));
        m.nodes
            .get_or_create(&StateLabel { state: "online" })
            .set(2);
        let text = m.encode();
        for want in [
            "headway_registrations_total{method=\"authkey\",outcome=\"created\"} 1",
            "headway_map_updates_sent_total{kind=\"delta\"} 1",
            "headway_map_update_latency_seconds_count{kind=\"delta\"} 1",
            "headway_nodes{state=\"online\"} 2",
            "headway_build_info{version=",
            "# TYPE headway_policy_compile_seconds histogram",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}

//! What one run measured, as written to JSON and read back by `report`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// One benchmark run at one tailnet size. Fields missing from an older
/// file read as their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    /// Simulated nodes kept connected (streaming).
    pub nodes: usize,
    pub environment: Environment,
    pub ramp: Ramp,
    pub registration: Registration,
    pub join: Propagation,
    pub endpoint: Propagation,
    pub offline: Propagation,
    pub idle: Idle,
    pub storm: Option<Storm>,
    pub server: ResourceUse,
    pub generator: ResourceUse,
    /// Every streaming node ended with exactly the registered nodes as peers.
    pub converged: bool,
    /// Messages the strict decoding (full `tailcfg` types) refused.
    pub strict_errors: u64,
    /// Flat CPU profiles of the server per phase (`perf`), when asked for.
    pub profiles: BTreeMap<String, Vec<ProfileLine>>,
    pub targets: Vec<Target>,
    /// The server's CPU and memory once a second through the run.
    pub timeline: Vec<Point>,
    /// Why the run stopped early (the memory guard killed the server).
    pub aborted: Option<String>,
}

/// The server once a second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Point {
    pub seconds: f64,
    pub phase: String,
    /// Nodes streaming, as the phase counts them (ramp: joined so far;
    /// storm: reconnected so far).
    pub connected: usize,
    pub server_cpu_seconds: f64,
    pub server_rss_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
    /// How the server was started.
    pub server_command: String,
    pub database: String,
    pub open_files_limit: u64,
}

/// Bringing the tailnet up from nothing: each node dials, registers, opens
/// its map stream and receives its full map, `concurrency` at a time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ramp {
    pub concurrency: usize,
    pub seconds: f64,
    pub nodes_per_second: f64,
    /// `/machine/register` round trips.
    pub register: Summary,
    /// From the map request to its full map.
    pub first_map: Summary,
    /// From the last node's full map until every node knew every peer.
    pub converge_seconds: f64,
    pub failed_attempts: usize,
    pub server_cpu_seconds: f64,
    pub generator_cpu_seconds: f64,
}

/// New nodes registering while the tailnet is up and every node streams.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registration {
    pub nodes: usize,
    pub concurrency: usize,
    /// Streaming nodes while they registered.
    pub connected: usize,
    pub seconds: f64,
    pub nodes_per_second: f64,
    /// Dial plus register, per node.
    pub latency: Summary,
    pub failed: usize,
    pub server_cpu_seconds: f64,
}

/// How fast one change reaches every connected node, and what it costs each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Propagation {
    pub probes: usize,
    pub receivers_per_probe: usize,
    /// From the change (request sent) until a receiver had the message;
    /// pooled over all receivers of all probes.
    pub latency: Summary,
    /// The slowest receiver of each probe.
    pub last_receiver_ms: Vec<f64>,
    /// Receivers that had not seen the change when the probe timed out.
    pub missed: usize,
    /// Mean size of the frame carrying the change, per receiver.
    pub wire_bytes_per_receiver: f64,
    pub json_bytes_per_receiver: f64,
}

/// Nothing happens but keep-alives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Idle {
    pub seconds: f64,
    pub server_cpu_seconds: f64,
    /// Server CPU as a percentage of one core.
    pub server_core_percent: f64,
    pub generator_core_percent: f64,
    pub keep_alives: u64,
    /// Messages other than keep-alives (should be none).
    pub other_messages: u64,
    pub wire_bytes: u64,
}

/// Every node drops its connection at once and reconnects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Storm {
    pub clients: usize,
    /// Until the last client had its new full map (`None`: some never did).
    pub settled_seconds: Option<f64>,
    /// When half the clients had their full map.
    pub half_seconds: f64,
    pub reconnected: usize,
    pub failed_attempts: usize,
    pub failures: BTreeMap<String, usize>,
    pub clients_retried: usize,
    pub max_attempts: usize,
    /// Clients with no full map by the deadline.
    pub gave_up: usize,
    pub server_cpu_seconds: f64,
    pub server_peak_rss_bytes: u64,
    pub generator_cpu_seconds: f64,
    /// Why the storm was cut short (the RSS guard), if it was.
    pub aborted: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceUse {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// With every node connected and streaming, after the ramp.
    pub rss_bytes_connected: u64,
    pub rss_bytes_per_node: f64,
    pub cpu_seconds_per_node: f64,
    pub open_files_connected: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileLine {
    pub percent: f64,
    pub symbol: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub value: String,
    pub limit: String,
    pub met: bool,
}

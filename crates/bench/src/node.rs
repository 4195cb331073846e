//! One simulated node: its keys, its control connection (TCP, the `/ts2021`
//! upgrade, Noise IK, HTTP/2), registration with a pre-auth key, the streaming
//! `/machine/map` request read by a task of its own, and lite map requests
//! with new endpoints.
//!
//! The client side is `headway_proto::noise`, the code the protocol tests use;
//! nothing here reaches into the server's process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use headway_proto::capver;
use headway_proto::keys::{DiscoPublic, MachinePublic, NodePublic, PrivateKey};
use headway_proto::noise::{self, ControlClient, DialError};
use headway_proto::tailcfg::{
    Hostinfo, MapRequest, MapResponse, NetInfo, RegisterRequest, RegisterResponse,
    RegisterResponseAuth,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::digest::{Digest, Frame, PeerSet, split_frames};

/// The capability version sent in the Noise handshake (the newest we speak).
pub const NOISE_VERSION: u16 = capver::CURRENT as u16;
/// The official client gives a dial (TCP, upgrade, Noise) about 10 s.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a register or lite map request may take before the node counts
/// it as failed (the official client's request timeout is of this order).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The official client's map-poll watchdog: no message for this long and it
/// drops the stream.
pub const MAP_WATCHDOG: Duration = Duration::from_secs(120);

/// Why a node's exchange with the server failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("dial failed: {0}")]
    Dial(#[from] DialError),
    #[error("{request} answered {status}: {body}")]
    Status {
        request: &'static str,
        status: u16,
        body: String,
    },
    #[error("registration refused: {0}")]
    Refused(String),
    #[error("the map stream ended before its first message")]
    StreamEnded,
    #[error("the run was aborted")]
    Aborted,
    #[error("{0} needs a connection; connect first")]
    NotConnected(&'static str),
    #[error("reading the {request} answer failed: {source}")]
    Body {
        request: &'static str,
        source: hyper::Error,
    },
    #[error("the {request} answer is not JSON of the expected shape: {source}")]
    Json {
        request: &'static str,
        source: serde_json::Error,
    },
}

impl NodeError {
    /// A short class for failure counts in the results.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Timeout(what) => what,
            NodeError::Dial(_) => "dial error",
            NodeError::Status { .. } => "HTTP error status",
            NodeError::Refused(_) => "registration refused",
            NodeError::StreamEnded => "map stream ended early",
            NodeError::NotConnected(_) => "not connected",
            NodeError::Aborted => "aborted",
            NodeError::Body { .. } | NodeError::Json { .. } => "bad answer",
        }
    }
}

/// What the generator is waiting to see arrive at every node.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Probe {
    #[default]
    Nothing,
    /// A node with this key registered: the first `PeersChanged` naming it.
    Join { id: u32, key: NodePublic },
    /// A node reported new endpoints: the patch carrying `endpoint`.
    Endpoint {
        id: u32,
        node_id: u64,
        endpoint: String,
    },
    /// A node's stream ended: the patch saying it is offline.
    Offline { id: u32, node_id: u64 },
}

impl Probe {
    pub fn id(&self) -> u32 {
        match self {
            Probe::Nothing => 0,
            Probe::Join { id, .. } | Probe::Endpoint { id, .. } | Probe::Offline { id, .. } => *id,
        }
    }

    fn seen_in(&self, m: &Digest) -> bool {
        match self {
            Probe::Nothing => false,
            Probe::Join { key, .. } => m.peers_changed.iter().any(|p| p.key == *key),
            Probe::Endpoint {
                node_id, endpoint, ..
            } => m.patches.iter().any(|p| {
                p.node_id == *node_id
                    && p.endpoints
                        .as_ref()
                        .is_some_and(|e| e.iter().any(|e| e == endpoint))
            }),
            Probe::Offline { node_id, .. } => m
                .patches
                .iter()
                .any(|p| p.node_id == *node_id && p.online == Some(false)),
        }
    }
}

/// One node seeing the current probe.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub probe: u32,
    pub node: usize,
    pub at: Instant,
    /// Size of the frame that carried it, compressed (on the wire) and as JSON.
    pub wire_bytes: usize,
    pub json_bytes: usize,
}

/// What every simulated node shares: where the server is, the key to
/// register with, and where to report what it sees.
#[derive(Debug)]
pub struct Shared {
    pub url: String,
    pub server_key: MachinePublic,
    pub auth_key: String,
    pub probes: watch::Receiver<Probe>,
    pub observations: mpsc::UnboundedSender<Observation>,
    /// Also decode every message with the full `tailcfg::MapResponse`.
    pub strict: bool,
    /// Messages the strict decoding refused.
    pub strict_errors: AtomicU64,
}

/// Message and byte counts of one node's streams.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub keep_alives: AtomicU64,
    pub full_maps: AtomicU64,
    pub wire_bytes: AtomicU64,
    pub json_bytes: AtomicU64,
    pub stream_errors: AtomicU64,
}

/// What a node's reader task knows, readable by the generator.
#[derive(Debug)]
pub struct NodeState {
    pub index: usize,
    pub node_key: NodePublic,
    node_id: AtomicU64,
    peers: Mutex<PeerSet>,
    pub counters: Counters,
}

impl NodeState {
    /// The node's id, once a map has told it (0 before).
    pub fn node_id(&self) -> u64 {
        self.node_id.load(Ordering::Relaxed)
    }

    /// Whether this node's peers are exactly `expected` less itself.
    pub fn sees_exactly(&self, expected: &PeerSet) -> bool {
        let me = self.node_id();
        let peers = self.peers.lock();
        let mut want = expected.len();
        if expected.contains(me) {
            want -= 1;
        }
        peers.len() == want && !peers.contains(me) && peers.is_subset_of(expected)
    }

    pub fn peer_ids(&self) -> Vec<u64> {
        self.peers.lock().iter().collect()
    }

    pub fn peer_count(&self) -> usize {
        self.peers.lock().len()
    }

    fn apply(&self, m: &Digest, frame: &Frame) {
        let c = &self.counters;
        c.messages.fetch_add(1, Ordering::Relaxed);
        c.wire_bytes
            .fetch_add(frame.wire_bytes as u64, Ordering::Relaxed);
        c.json_bytes
            .fetch_add(frame.json.len() as u64, Ordering::Relaxed);
        if m.keep_alive {
            c.keep_alives.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(me) = m.node {
            self.node_id.store(me.id, Ordering::Relaxed);
        }
        let mut peers = self.peers.lock();
        if m.is_full_map() {
            c.full_maps.fetch_add(1, Ordering::Relaxed);
            peers.clear();
            // An empty `Peers` in a full map means "none" at connect.
            for p in &m.peers {
                peers.insert(p.id);
            }
        }
        for p in &m.peers_changed {
            peers.insert(p.id);
        }
        for id in &m.peers_removed {
            peers.remove(*id);
        }
    }
}

/// Aborts the reader task when the connection is dropped.
#[derive(Debug)]
struct Reader(JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
struct Link {
    ctl: ControlClient,
    reader: Option<Reader>,
}

/// A simulated node.
#[derive(Debug)]
pub struct SimNode {
    pub state: Arc<NodeState>,
    machine: PrivateKey,
    node: PrivateKey,
    disco: DiscoPublic,
    hostname: String,
    endpoints: Vec<SocketAddr>,
    link: Option<Link>,
}

impl SimNode {
    pub fn new(index: usize) -> Self {
        let node = PrivateKey::generate();
        // Documentation addresses (TEST-NET): data in the map, never dialled.
        let endpoints = vec![
            SocketAddr::from(([192, 0, 2, (index % 250) as u8 + 1], 41641)),
            SocketAddr::from((
                [198, 51, 100, (index / 250 % 250) as u8 + 1],
                41641 + (index % 1000) as u16,
            )),
        ];
        Self {
            state: Arc::new(NodeState {
                index,
                node_key: node.node_public(),
                node_id: AtomicU64::new(0),
                peers: Mutex::new(PeerSet::default()),
                counters: Counters::default(),
            }),
            machine: PrivateKey::generate(),
            disco: PrivateKey::generate().disco_public(),
            node,
            hostname: format!("bench-{index}"),
            endpoints,
            link: None,
        }
    }

    pub fn node_key(&self) -> NodePublic {
        self.state.node_key
    }

    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// A Hostinfo like a Linux client's, so peer records have a real size.
    fn hostinfo(&self) -> Hostinfo {
        Hostinfo {
            ipn_version: "1.96.4-headway-bench".into(),
            os: "linux".into(),
            os_version: "Debian 13.0 (trixie); kernel=6.12.0".into(),
            hostname: self.hostname.clone(),
            net_info: Some(NetInfo {
                preferred_derp: 999,
                derp_latency: [("999-v4".to_string(), 0.0012)].into_iter().collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Opens the control connection (TCP, `/ts2021`, Noise, HTTP/2).
    pub async fn connect(&mut self, shared: &Shared) -> Result<(), NodeError> {
        self.link = None;
        let dial = noise::dial(
            &shared.url,
            &self.machine,
            &shared.server_key,
            NOISE_VERSION,
        );
        let dialed = tokio::time::timeout(DIAL_TIMEOUT, async { dial.await?.http2().await })
            .await
            .map_err(|_| NodeError::Timeout("dial"))??;
        self.link = Some(Link {
            ctl: dialed,
            reader: None,
        });
        Ok(())
    }

    /// Closes the connection (and the map stream with it).
    pub fn disconnect(&mut self) {
        self.link = None;
    }

    fn ctl(&mut self, request: &'static str) -> Result<&mut ControlClient, NodeError> {
        self.link
            .as_mut()
            .map(|l| &mut l.ctl)
            .ok_or(NodeError::NotConnected(request))
    }

    async fn post(
        &mut self,
        request: &'static str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Incoming, NodeError> {
        let ctl = self.ctl(request)?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, ctl.post(path, body))
            .await
            .map_err(|_| NodeError::Timeout(request))??;
        let status = response.status().as_u16();
        if status != 200 {
            let body = read_body(request, response.into_body())
                .await
                .unwrap_or_default();
            return Err(NodeError::Status {
                request,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(response.into_body())
    }

    /// `/machine/register` with the shared pre-auth key.
    pub async fn register(&mut self, shared: &Shared) -> Result<(), NodeError> {
        let req = RegisterRequest {
            version: capver::CURRENT,
            node_key: self.node.node_public(),
            auth: Some(RegisterResponseAuth {
                auth_key: shared.auth_key.clone(),
                ..Default::default()
            }),
            hostinfo: Some(self.hostinfo()),
            ..Default::default()
        };
        let body = self
            .post("register", "/machine/register", to_json(&req))
            .await?;
        let bytes = tokio::time::timeout(REQUEST_TIMEOUT, read_body("register", body))
            .await
            .map_err(|_| NodeError::Timeout("register"))??;
        let resp: RegisterResponse =
            serde_json::from_slice(&bytes).map_err(|source| NodeError::Json {
                request: "register",
                source,
            })?;
        if !resp.error.is_empty() || !resp.machine_authorized {
            return Err(NodeError::Refused(if resp.error.is_empty() {
                "machine not authorised".into()
            } else {
                resp.error
            }));
        }
        Ok(())
    }

    fn map_request(&self, stream: bool) -> MapRequest {
        MapRequest {
            version: capver::CURRENT,
            compress: "zstd".into(),
            keep_alive: true,
            node_key: self.node.node_public(),
            disco_key: self.disco,
            stream,
            omit_peers: !stream,
            hostinfo: Some(self.hostinfo()),
            endpoints: self.endpoints.clone(),
            ..Default::default()
        }
    }

    /// Starts the streaming map request; returns when the full map has
    /// arrived (and when). The stream is then read by a task of its own.
    pub async fn stream(
        &mut self,
        shared: &Arc<Shared>,
        first_map_within: Duration,
    ) -> Result<Instant, NodeError> {
        let req = self.map_request(true);
        let body = self
            .post("map stream", "/machine/map", to_json(&req))
            .await?;
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(read_stream(
            body,
            self.state.clone(),
            shared.clone(),
            first_tx,
        ));
        if let Some(link) = self.link.as_mut() {
            link.reader = Some(Reader(task));
        }
        match tokio::time::timeout(first_map_within, first_rx).await {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(_)) => Err(NodeError::StreamEnded),
            Err(_) => Err(NodeError::Timeout("first map")),
        }
    }

    /// A lite map request (no stream, peers omitted) reporting new endpoints.
    pub async fn set_endpoints(&mut self, endpoints: Vec<SocketAddr>) -> Result<(), NodeError> {
        self.endpoints = endpoints;
        let req = self.map_request(false);
        let body = self
            .post("endpoint update", "/machine/map", to_json(&req))
            .await?;
        read_body("endpoint update", body).await?;
        Ok(())
    }
}

fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    // Serialising these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

async fn read_body(request: &'static str, body: Incoming) -> Result<bytes::Bytes, NodeError> {
    Ok(body
        .collect()
        .await
        .map_err(|source| NodeError::Body { request, source })?
        .to_bytes())
}

/// Reads a map stream until it ends: counts, tracks peers, reports probes.
async fn read_stream(
    mut body: Incoming,
    state: Arc<NodeState>,
    shared: Arc<Shared>,
    first_map: oneshot::Sender<Instant>,
) {
    let mut first_map = Some(first_map);
    let mut probes = shared.probes.clone();
    let mut reported = 0;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let at = Instant::now();
        let Ok(frame) = frame else {
            state.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        let frames = match split_frames(&mut buf) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(node = state.index, "undecodable map frame: {e}");
                state.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        for frame in frames {
            let digest = match Digest::parse(&frame.json) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(node = state.index, "map message is not a MapResponse: {e}");
                    state.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            if shared.strict && serde_json::from_slice::<MapResponse>(&frame.json).is_err() {
                shared.strict_errors.fetch_add(1, Ordering::Relaxed);
            }
            state.apply(&digest, &frame);
            if digest.is_full_map()
                && let Some(tx) = first_map.take()
            {
                let _ = tx.send(at);
            }
            let probe = probes.borrow_and_update().clone();
            if probe.id() != reported && probe.seen_in(&digest) {
                reported = probe.id();
                let _ = shared.observations.send(Observation {
                    probe: reported,
                    node: state.index,
                    at,
                    wire_bytes: frame.wire_bytes,
                    json_bytes: frame.json.len(),
                });
            }
        }
    }
}

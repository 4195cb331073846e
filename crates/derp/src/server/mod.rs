//! The DERP relay: handshake, admission, routing of packets between connected
//! node keys, keep-alives, `PeerGone` notices and the server side of meshing.
//!
//! It serves any byte stream (an upgraded HTTP connection, a WebSocket adapter,
//! a raw TLS stream). It knows nodes only through the admission hook.

mod outbox;
mod registry;
mod stall;
mod stats;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::BytesMut;
use futures::future::BoxFuture;
use headway_proto::keys::{NodePublic, PrivateKey};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::outbox::{Control, Outbox, Pushed, Queues};
use self::registry::{ClientHandle, Registry, Route};
use self::stall::StallGuard;
use self::stats::{Counters, add, dec, inc};
use crate::frame::{
    self, FrameType, HEADER_LEN, KEY_LEN, MAX_CLIENT_INFO_LEN, MAX_PACKET_SIZE, MAX_PING_LEN,
    NONCE_LEN, PROTOCOL_VERSION, PeerGoneReason,
};
use crate::handshake::{self, BoxError, ClientInfo, MeshKey, ServerInfo};

pub use self::registry::{ForwardError, PacketForwarder};
pub use self::stats::DerpStats;

const READ_BUFFER: usize = 8 << 10;
const WRITE_BUFFER: usize = 16 << 10;

/// Tuning of a [`DerpServer`]; the defaults are those of Tailscale's derper.
#[derive(Debug, Clone)]
pub struct DerpConfig {
    /// Packets queued per connection (each for disco and for other packets)
    /// before the oldest are dropped.
    pub send_queue_depth: usize,
    /// Time a new connection has to send its `ClientInfo`.
    pub handshake_timeout: Duration,
    /// Time the admission hook has to answer before the client is refused.
    pub verify_timeout: Duration,
    /// A client that reads nothing for this long is disconnected (zero: never).
    pub write_timeout: Duration,
    /// Interval of `KeepAlive` frames, plus a random jitter of up to `keep_alive_jitter`.
    pub keep_alive: Duration,
    pub keep_alive_jitter: Duration,
    /// Clients presenting this key are mesh peers: admitted without the hook and
    /// allowed to watch connections, forward packets and close peers.
    pub mesh_key: Option<MeshKey>,
}

impl Default for DerpConfig {
    fn default() -> Self {
        Self {
            send_queue_depth: 32,
            handshake_timeout: Duration::from_secs(10),
            verify_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(2),
            keep_alive: frame::KEEP_ALIVE,
            keep_alive_jitter: Duration::from_secs(5),
            mesh_key: None,
        }
    }
}

/// The client asking to be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The node key the client proved it holds (its DERP address).
    pub node_key: NodePublic,
    pub remote_addr: Option<SocketAddr>,
}

/// Admission hook: decides whether a node key may use this relay (headscale's
/// `verify_clients`). Mesh peers are admitted without asking.
///
/// Any `Fn(&NodePublic) -> bool` is one; implement the trait for an async check.
pub trait VerifyClient: Send + Sync + 'static {
    fn verify(&self, client: ClientIdentity) -> BoxFuture<'_, bool>;
}

impl<F> VerifyClient for F
where
    F: Fn(&NodePublic) -> bool + Send + Sync + 'static,
{
    fn verify(&self, client: ClientIdentity) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(self(&client.node_key)))
    }
}

/// Admits every client (an open relay: only for tests and trusted networks).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl VerifyClient for AllowAll {
    fn verify(&self, _client: ClientIdentity) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }
}

/// Why a DERP connection ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("DERP connection I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("DERP handshake did not finish within {0:?}: no valid ClientInfo frame arrived")]
    HandshakeTimeout(Duration),
    #[error("DERP client sent frame type {got:#04x} where {want:#04x} was expected")]
    UnexpectedFrame { got: u8, want: u8 },
    #[error("DERP ClientInfo frame of {0} bytes is outside the accepted 56..=262144 bytes")]
    ClientInfoLength(u32),
    #[error(
        "DERP ClientInfo claiming node key {key:?} is not sealed to this server's key: {source}"
    )]
    ClientInfoSeal { key: NodePublic, source: BoxError },
    #[error("DERP ClientInfo from {key:?} is not valid JSON: {source}")]
    ClientInfoJson {
        key: NodePublic,
        source: serde_json::Error,
    },
    #[error(
        "DERP client {0:?} was refused by the admission hook (unknown or unauthorised node key)"
    )]
    Rejected(NodePublic),
    #[error("DERP client {0:?} was refused: the admission hook did not answer within {1:?}")]
    VerifyTimeout(NodePublic, Duration),
    #[error("DERP client sent a malformed {frame} frame of {len} bytes")]
    MalformedFrame { frame: &'static str, len: u32 },
    #[error("DERP client sent a {0} frame, which needs the mesh key")]
    NotMeshPeer(&'static str),
    #[error("DERP server is shutting down")]
    ServerClosed,
}

/// A DERP server. Share it behind an `Arc`; hand it connections with [`DerpServer::accept`].
pub struct DerpServer {
    private_key: PrivateKey,
    public_key: NodePublic,
    config: DerpConfig,
    verifier: Box<dyn VerifyClient>,
    registry: Registry,
    counters: Counters,
    next_conn_id: AtomicU64,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for DerpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerpServer")
            .field("public_key", &self.public_key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DerpServer {
    /// A server with the given long-lived key, admitting every client.
    pub fn new(private_key: PrivateKey, config: DerpConfig) -> Self {
        Self {
            public_key: private_key.node_public(),
            private_key,
            config,
            verifier: Box::new(AllowAll),
            registry: Registry::default(),
            counters: Counters::default(),
            next_conn_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
        }
    }

    /// Admits only the clients `verifier` accepts.
    pub fn with_verifier(mut self, verifier: impl VerifyClient) -> Self {
        self.verifier = Box::new(verifier);
        self
    }

    /// The key clients learn from the server-key frame.
    pub fn public_key(&self) -> NodePublic {
        self.public_key
    }

    /// The server's key, for mesh links that log in to peers as this server.
    pub(crate) fn private_key(&self) -> &PrivateKey {
        &self.private_key
    }

    pub fn config(&self) -> &DerpConfig {
        &self.config
    }

    pub fn stats(&self) -> DerpStats {
        self.counters.snapshot()
    }

    /// Whether a node key has a connection to this server.
    pub fn is_connected(&self, key: &NodePublic) -> bool {
        self.registry.is_connected(key)
    }

    /// How many distinct node keys are connected.
    pub fn connected_clients(&self) -> usize {
        self.registry.unique_clients()
    }

    /// Hangs up every connection of `key` (a node deleted, expired or whose key
    /// rotated: the admission hook is only asked at connect time). Returns how
    /// many connections there were.
    pub fn disconnect(&self, key: &NodePublic) -> usize {
        self.registry.close_peer(key)
    }

    /// Hangs up every connection and refuses new ones.
    pub fn close(&self) {
        self.shutdown.cancel();
        for c in self.registry.all_connections() {
            c.closed.cancel();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Routes packets for `dst` (connected to a mesh peer) through `fwd` while
    /// `dst` has no connection here. The first forwarder added is preferred.
    pub fn add_packet_forwarder(&self, dst: NodePublic, fwd: Arc<dyn PacketForwarder>) {
        self.registry.add_forwarder(dst, fwd);
    }

    /// Undoes [`DerpServer::add_packet_forwarder`]; clients that received packets
    /// from `dst` hear `PeerGone` if it has left the region.
    pub fn remove_packet_forwarder(&self, dst: &NodePublic, fwd: &Arc<dyn PacketForwarder>) {
        let notify = self.registry.remove_forwarder(dst, fwd);
        self.notify_peer_gone(*dst, notify);
    }

    /// Serves one DERP connection (the server speaks first) until it ends.
    ///
    /// Returns `Ok` when the client hangs up or the server closes it.
    pub async fn accept<S>(
        &self,
        stream: S,
        remote_addr: Option<SocketAddr>,
    ) -> Result<(), ConnError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        inc(&self.counters.connections_total);
        if self.is_closed() {
            return Err(ConnError::ServerClosed);
        }
        let (rd, wr) = tokio::io::split(stream);
        let mut reader = BufReader::with_capacity(READ_BUFFER, rd);
        let mut writer =
            BufWriter::with_capacity(WRITE_BUFFER, StallGuard::new(wr, self.config.write_timeout));

        let limit = self.config.handshake_timeout;
        let handshake = tokio::time::timeout(limit, self.handshake(&mut reader, &mut writer));
        let (node_key, info) = match handshake.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                inc(&self.counters.handshake_failures);
                return Err(e);
            }
            Err(_) => {
                inc(&self.counters.handshake_failures);
                return Err(ConnError::HandshakeTimeout(limit));
            }
        };

        let can_mesh = match (&self.config.mesh_key, &info.mesh_key) {
            (Some(ours), Some(theirs)) => !ours.is_zero() && ours.matches(theirs),
            _ => false,
        };
        if !can_mesh {
            self.admit(ClientIdentity {
                node_key,
                remote_addr,
            })
            .await?;
        }

        let handle = Arc::new(ClientHandle {
            id: self.next_conn_id.fetch_add(1, Ordering::Relaxed),
            key: node_key,
            remote: remote_addr,
            can_mesh,
            is_prober: info.is_prober,
            outbox: Outbox::new(self.config.send_queue_depth),
            is_dup: AtomicBool::new(false),
            preferred: AtomicBool::new(false),
            closed: self.shutdown.child_token(),
            sources: Mutex::new(HashSet::new()),
        });
        let _registration = Registration::new(self, handle.clone());
        tracing::debug!(node_key = ?node_key, remote = ?remote_addr, mesh = can_mesh, "DERP client connected");

        tokio::select! {
            r = self.read_loop(&handle, &mut reader) => r,
            r = self.write_loop(&handle, &mut writer) => r,
            () = handle.closed.cancelled() => Ok(()),
        }
    }

    async fn handshake<R, W>(
        &self,
        r: &mut R,
        w: &mut W,
    ) -> Result<(NodePublic, ClientInfo), ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        frame::write_frame(
            w,
            FrameType::SERVER_KEY,
            &frame::server_key_payload(&self.public_key),
        )
        .await?;
        w.flush().await?;

        let (t, len) = frame::read_header(r).await?;
        if t != FrameType::CLIENT_INFO {
            return Err(ConnError::UnexpectedFrame {
                got: t.0,
                want: FrameType::CLIENT_INFO.0,
            });
        }
        if len < (KEY_LEN + NONCE_LEN) as u32 || len > MAX_CLIENT_INFO_LEN {
            return Err(ConnError::ClientInfoLength(len));
        }
        let mut buf = vec![0u8; len as usize];
        r.read_exact(&mut buf).await?;
        let key = frame::key_at(&buf, 0).ok_or(ConnError::ClientInfoLength(len))?;
        let json = handshake::open(&self.private_key, &key, &buf[KEY_LEN..])
            .map_err(|source| ConnError::ClientInfoSeal { key, source })?;
        let info = serde_json::from_slice(&json)
            .map_err(|source| ConnError::ClientInfoJson { key, source })?;
        Ok((key, info))
    }

    async fn admit(&self, client: ClientIdentity) -> Result<(), ConnError> {
        let limit = self.config.verify_timeout;
        match tokio::time::timeout(limit, self.verifier.verify(client)).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                inc(&self.counters.clients_rejected);
                Err(ConnError::Rejected(client.node_key))
            }
            Err(_) => {
                inc(&self.counters.clients_rejected);
                Err(ConnError::VerifyTimeout(client.node_key, limit))
            }
        }
    }

    async fn read_loop<R>(&self, h: &Arc<ClientHandle>, r: &mut R) -> Result<(), ConnError>
    where
        R: AsyncRead + Unpin,
    {
        let mut not_here = NotHereLimiter::new();
        loop {
            let (t, len) = match frame::read_header(r).await {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            self.registry.note_activity(h);
            match t {
                FrameType::SEND_PACKET => {
                    if len < KEY_LEN as u32 || len as usize > KEY_LEN + MAX_PACKET_SIZE {
                        return Err(ConnError::MalformedFrame {
                            frame: "SendPacket",
                            len,
                        });
                    }
                    let dst = read_key(r).await?;
                    let pkt = read_recv_frame(r, len - KEY_LEN as u32, "SendPacket").await?;
                    add(
                        &self.counters.bytes_received,
                        (pkt.len() - HEADER_LEN - KEY_LEN) as u64,
                    );
                    inc(&self.counters.packets_received);
                    self.deliver(h, h.key, dst, pkt, false, &mut not_here);
                }
                FrameType::FORWARD_PACKET => {
                    if !h.can_mesh {
                        return Err(ConnError::NotMeshPeer("ForwardPacket"));
                    }
                    if len < 2 * KEY_LEN as u32 || len as usize > 2 * KEY_LEN + MAX_PACKET_SIZE {
                        return Err(ConnError::MalformedFrame {
                            frame: "ForwardPacket",
                            len,
                        });
                    }
                    let src = read_key(r).await?;
                    let dst = read_key(r).await?;
                    let pkt = read_recv_frame(r, len - 2 * KEY_LEN as u32, "ForwardPacket").await?;
                    inc(&self.counters.packets_forwarded_in);
                    self.deliver(h, src, dst, pkt, true, &mut not_here);
                }
                FrameType::NOTE_PREFERRED => {
                    if len != 1 {
                        return Err(ConnError::MalformedFrame {
                            frame: "NotePreferred",
                            len,
                        });
                    }
                    let preferred = r.read_u8().await? != 0;
                    if h.preferred.swap(preferred, Ordering::Relaxed) != preferred {
                        if preferred {
                            inc(&self.counters.home_connections_current);
                        } else {
                            dec(&self.counters.home_connections_current);
                        }
                    }
                }
                FrameType::PING => {
                    inc(&self.counters.pings_received);
                    if !(8..=MAX_PING_LEN).contains(&len) {
                        return Err(ConnError::MalformedFrame { frame: "Ping", len });
                    }
                    let mut data = [0u8; 8];
                    r.read_exact(&mut data).await?;
                    frame::skip(r, len - 8).await?;
                    h.outbox.push_pong(data);
                }
                FrameType::WATCH_CONNS => {
                    if !h.can_mesh {
                        return Err(ConnError::NotMeshPeer("WatchConns"));
                    }
                    if len != 0 {
                        return Err(ConnError::MalformedFrame {
                            frame: "WatchConns",
                            len,
                        });
                    }
                    // A mesh peer configured with our own address is talking to itself.
                    if h.key != self.public_key {
                        self.registry.add_watcher(h);
                    }
                }
                FrameType::CLOSE_PEER => {
                    if !h.can_mesh {
                        return Err(ConnError::NotMeshPeer("ClosePeer"));
                    }
                    if len != KEY_LEN as u32 {
                        return Err(ConnError::MalformedFrame {
                            frame: "ClosePeer",
                            len,
                        });
                    }
                    let target = read_key(r).await?;
                    let n = self.registry.close_peer(&target);
                    tracing::debug!(peer = ?target, connections = n, by = ?h.key, "DERP mesh peer closed a client");
                }
                FrameType::PONG => frame::skip(r, len).await?,
                _ => {
                    inc(&self.counters.unknown_frames);
                    frame::skip(r, len).await?;
                }
            }
        }
    }

    /// Hands a `RecvPacket` frame (source key not yet filled in) to its destination.
    fn deliver(
        &self,
        from: &ClientHandle,
        src: NodePublic,
        dst: NodePublic,
        mut pkt: BytesMut,
        forwarded: bool,
        not_here: &mut NotHereLimiter,
    ) {
        let disco = frame::looks_like_disco(&pkt[HEADER_LEN + KEY_LEN..]);
        if disco {
            inc(&self.counters.disco_packets_received);
        }
        pkt[HEADER_LEN..HEADER_LEN + KEY_LEN].copy_from_slice(src.as_bytes());
        match self.registry.route(&dst) {
            Route::Local(to) => match to.outbox.push_packet(pkt.freeze(), disco) {
                Pushed::Queued => {}
                Pushed::QueuedDroppingOldest => inc(&self.counters.packets_dropped_queue_full),
                Pushed::Closed => inc(&self.counters.packets_dropped_gone),
            },
            // Forwarded packets are never forwarded again: no loops between meshed servers.
            Route::Mesh(fwd) if !forwarded => {
                let payload = pkt.freeze().slice(HEADER_LEN + KEY_LEN..);
                match fwd.forward_packet(src, dst, payload) {
                    Ok(()) => inc(&self.counters.packets_forwarded_out),
                    Err(_) => inc(&self.counters.packets_dropped_gone),
                }
            }
            Route::Mesh(_) | Route::Unknown => {
                inc(&self.counters.packets_dropped_unknown_dest);
                // Telling a sender of disco pings that the peer is not here lets it
                // stop trying this path; the limit keeps this from being an amplifier.
                if disco && not_here.allow(Instant::now()) {
                    from.outbox
                        .push_control(Control::PeerGone(dst, PeerGoneReason::NotHere));
                }
            }
        }
    }

    async fn write_loop<W>(&self, h: &Arc<ClientHandle>, w: &mut W) -> Result<(), ConnError>
    where
        W: AsyncWrite + Unpin,
    {
        let info = ServerInfo {
            version: PROTOCOL_VERSION,
            ..ServerInfo::default()
        };
        let json = serde_json::to_vec(&info).map_err(std::io::Error::other)?;
        let sealed = handshake::seal(&self.private_key, &h.key, &json);
        frame::write_frame(w, FrameType::SERVER_INFO, &sealed).await?;
        w.flush().await?;

        let period = self.keep_alive_period();
        let mut keep_alive = tokio::time::interval_at(Instant::now() + period, period);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Queues::default();
        let mut seen_sources = HashSet::new();
        loop {
            let mut send_keep_alive = false;
            tokio::select! {
                () = h.outbox.wait() => {}
                _ = keep_alive.tick() => send_keep_alive = true,
            }
            h.outbox.take(&mut batch);
            if let Err(e) = self.write_batch(h, w, &mut batch, &mut seen_sources).await {
                let unsent = batch.disco.len() + batch.other.len();
                add(&self.counters.packets_dropped_gone, unsent as u64);
                return Err(e.into());
            }
            if send_keep_alive {
                w.write_all(&frame::header(FrameType::KEEP_ALIVE, 0))
                    .await?;
                inc(&self.counters.keepalives_sent);
            }
            w.flush().await?;
        }
    }

    async fn write_batch<W>(
        &self,
        h: &Arc<ClientHandle>,
        w: &mut W,
        batch: &mut Queues,
        seen_sources: &mut HashSet<NodePublic>,
    ) -> std::io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        while let Some(c) = batch.control.pop_front() {
            match c {
                Control::PeerGone(peer, reason) => {
                    match reason {
                        PeerGoneReason::NotHere => inc(&self.counters.peer_gone_not_here_sent),
                        _ => inc(&self.counters.peer_gone_disconnected_sent),
                    }
                    frame::write_frame(
                        w,
                        FrameType::PEER_GONE,
                        &frame::peer_gone_payload(&peer, reason),
                    )
                    .await?;
                }
                Control::PeerPresent { key, addr, flags } => {
                    let payload = frame::peer_present_payload(&key, addr, flags);
                    frame::write_frame(w, FrameType::PEER_PRESENT, &payload).await?;
                }
            }
        }
        if let Some(data) = batch.pong.take() {
            frame::write_frame(w, FrameType::PONG, &data).await?;
        }
        while let Some(pkt) = batch.disco.pop_front().or_else(|| batch.other.pop_front()) {
            if let Some(src) = frame::key_at(&pkt, HEADER_LEN)
                && seen_sources.insert(src)
            {
                lock(&h.sources).insert(src);
                self.registry.subscribe_peer_gone(src, h);
            }
            w.write_all(&pkt).await?;
            inc(&self.counters.packets_sent);
            add(
                &self.counters.bytes_sent,
                (pkt.len() - HEADER_LEN - KEY_LEN) as u64,
            );
        }
        Ok(())
    }

    fn keep_alive_period(&self) -> Duration {
        let jitter = self.config.keep_alive_jitter;
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(Duration::ZERO..=jitter)
        };
        (self.config.keep_alive + extra).max(Duration::from_millis(1))
    }

    fn notify_peer_gone(&self, gone: NodePublic, to: Vec<Arc<ClientHandle>>) {
        for c in to {
            c.outbox
                .push_control(Control::PeerGone(gone, PeerGoneReason::Disconnected));
        }
    }
}

/// Registers a connection for its lifetime; unregistering also runs when the
/// connection's future is dropped mid-way.
struct Registration<'a> {
    server: &'a DerpServer,
    handle: Arc<ClientHandle>,
}

impl<'a> Registration<'a> {
    fn new(server: &'a DerpServer, handle: Arc<ClientHandle>) -> Self {
        if server.registry.register(&handle) {
            inc(&server.counters.duplicate_connections_total);
        }
        inc(&server.counters.connections_current);
        Self { server, handle }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let (s, h) = (self.server, &self.handle);
        add(&s.counters.packets_dropped_gone, h.outbox.close() as u64);
        let notify = s.registry.unregister(h);
        s.notify_peer_gone(h.key, notify);
        dec(&s.counters.connections_current);
        if h.preferred.load(Ordering::Relaxed) {
            dec(&s.counters.home_connections_current);
        }
        tracing::debug!(node_key = ?h.key, remote = ?h.remote, "DERP client disconnected");
    }
}

/// At most 3 `PeerGone(NotHere)` at once, refilled at one per second (per connection).
struct NotHereLimiter {
    tokens: f64,
    last: Option<Instant>,
}

impl NotHereLimiter {
    const BURST: f64 = 3.0;

    fn new() -> Self {
        Self {
            tokens: Self::BURST,
            last: None,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + refill).min(Self::BURST);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn read_key<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<NodePublic> {
    let mut k = [0u8; KEY_LEN];
    r.read_exact(&mut k).await?;
    Ok(NodePublic::from_bytes(k))
}

/// Reads a packet of `packet_len` bytes straight into a complete `RecvPacket`
/// frame whose source key is left zero: relaying then needs no further copy.
async fn read_recv_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    packet_len: u32,
    frame_name: &'static str,
) -> Result<BytesMut, ConnError> {
    if packet_len as usize > MAX_PACKET_SIZE {
        return Err(ConnError::MalformedFrame {
            frame: frame_name,
            len: packet_len,
        });
    }
    let mut pkt = BytesMut::zeroed(HEADER_LEN + KEY_LEN + packet_len as usize);
    pkt[..HEADER_LEN].copy_from_slice(&frame::header(
        FrameType::RECV_PACKET,
        KEY_LEN as u32 + packet_len,
    ));
    r.read_exact(&mut pkt[HEADER_LEN + KEY_LEN..]).await?;
    Ok(pkt)
}

/// Locks ignoring poisoning: the guarded data stays consistent across a panic
/// because every critical section here is a plain collection update.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_here_limiter_allows_a_burst_of_three_then_one_per_second() {
        let mut l = NotHereLimiter::new();
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow(t0)));
        assert!(!l.allow(t0));
        assert!(!l.allow(t0 + Duration::from_millis(500)));
        assert!(l.allow(t0 + Duration::from_millis(1100)));
        assert!(!l.allow(t0 + Duration::from_millis(1200)));
    }

    #[test]
    fn keep_alive_period_stays_within_jitter() {
        let s = DerpServer::new(PrivateKey::generate(), DerpConfig::default());
        for _ in 0..20 {
            let p = s.keep_alive_period();
            assert!(
                p >= Duration::from_secs(60) && p <= Duration::from_secs(65),
                "{p:?}"
            );
        }
    }
}

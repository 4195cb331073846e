//! The streaming `/machine/map` response: the full map first, then deltas as
//! the session's pending set fills, and keep-alives in between.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use headway_mapper as mapper;
use headway_proto::framing::{self, Compression, FramingError};
use headway_proto::tailcfg::{MapRequest, MapResponse};
use headway_state::model::{Node, NodeId};
use headway_state::sessions::{Pending, Session};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::Control;

/// Frames queued per session. Small on purpose: a slow client makes the
/// session wait, and changes keep collapsing in its pending set meanwhile.
const QUEUE: usize = 4;

pub(super) async fn stream(
    c: Control,
    node: Arc<Node>,
    req: &MapRequest,
    compression: Compression,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(QUEUE);
    // Registered before the full map is built: changes from here on are
    // either in that map or pending (never lost, at worst sent twice).
    let session = c.tailnet.open_session(node.id).await;
    let keep_alive = req.keep_alive;
    tokio::spawn(async move {
        let session_for_close = session.clone();
        run(&c, node, &session, tx, compression, keep_alive).await;
        c.tailnet.close_session(&session_for_close).await;
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    Response::new(body)
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn next_keep_alive(base: Duration) -> Instant {
    // Jitter spreads the keep-alives of a whole tailnet over time.
    let jitter = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 5);
    Instant::now() + base + Duration::from_millis(jitter)
}

/// Work the map sessions of one server share: encoded deltas (one per batch
/// and viewer class instead of one per receiver), the peer records full maps
/// are assembled from, and the right to build a full map.
#[derive(Debug)]
pub struct Shared {
    deltas: mapper::DeltaCache<Compression, Option<Bytes>>,
    peers: mapper::PeerCache,
    /// A full map costs O(tailnet): a reconnect storm waits its turn here,
    /// on blocking threads, instead of starving the runtime's workers (and
    /// with them handshakes and keep-alives) until clients time out.
    full_maps: Semaphore,
    /// Kibibytes of framed full maps not yet written to their connection.
    /// A storm builds maps faster than the clients read them; without this
    /// bound thousands of them wait in HTTP/2 send buffers at once (the
    /// peak memory of a storm), with it the builders wait instead.
    in_flight: Arc<Semaphore>,
    in_flight_kib: u32,
    /// Batches start on a common clock so that sessions woken by the same
    /// change read the same inputs and share one encoded message.
    epoch: Instant,
}

/// Deltas kept for sharing: a batch usually has one per viewer class.
const SHARED_DELTAS: usize = 64;

/// The budget of full maps in flight (see [`Shared::in_flight`]): enough
/// for hundreds of maps of a 10,000-node tailnet, far below its RSS.
const IN_FLIGHT_KIB: u32 = 128 * 1024;

/// How long a frame counts against the budget at most: a client that stops
/// reading must not hold back everyone else's maps.
const IN_FLIGHT_HOLD: Duration = Duration::from_secs(20);

/// A framed map holding its share of the in-flight budget until the
/// connection has written (and dropped) its last byte, or until
/// [`IN_FLIGHT_HOLD`] has passed.
struct InFlight {
    frame: Bytes,
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl AsRef<[u8]> for InFlight {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.permit.lock().take();
    }
}

impl Shared {
    /// `frame`, counted against the in-flight budget: waits while the
    /// maps already sent but not yet written use it up.
    async fn in_flight(&self, frame: Bytes) -> Bytes {
        let kib = u32::try_from(frame.len().div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.in_flight_kib);
        let Ok(permit) = self.in_flight.clone().acquire_many_owned(kib).await else {
            return frame;
        };
        let permit = Arc::new(Mutex::new(Some(permit)));
        let expire = permit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(IN_FLIGHT_HOLD).await;
            expire.lock().take();
        });
        Bytes::from_owner(InFlight { frame, permit })
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::with_in_flight_budget(IN_FLIGHT_KIB)
    }
}

impl Shared {
    fn with_in_flight_budget(kib: u32) -> Self {
        let builders = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            deltas: mapper::DeltaCache::new(SHARED_DELTAS),
            peers: mapper::PeerCache::default(),
            full_maps: Semaphore::new(builders),
            in_flight: Arc::new(Semaphore::new(kib as usize)),
            in_flight_kib: kib,
            epoch: Instant::now(),
        }
    }
}

impl Shared {
    /// The end of the batch window that `now` falls in.
    fn batch_end(&self, batch: Duration) -> Instant {
        let now = Instant::now();
        let nanos = batch.as_nanos().max(1);
        let since = now.duration_since(self.epoch).as_nanos();
        let wait = nanos - since % nanos;
        now + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send_frame(tx: &Tx, frame: Result<Bytes, FramingError>) -> bool {
    match frame {
        Ok(frame) => tx.send(Ok(frame)).await.is_ok(),
        Err(e) => {
            tracing::error!("could not encode a map response: {e}");
            false
        }
    }
}

/// The full map of `node_id`, framed; `None` when there is no one left to
/// send it to (the client went away while waiting, or the node is gone).
/// For the first map, `session` stops collecting changes that the map is
/// about to contain (see [`Session::start_initial_map`]).
async fn full_map_frame(
    c: &Control,
    node_id: NodeId,
    initial: Option<&Session>,
    compression: Compression,
    tx: &Tx,
) -> Option<Result<Bytes, FramingError>> {
    let resync = initial.is_none();
    let _permit = c.shared.full_maps.acquire().await.ok()?;
    if tx.is_closed() {
        return None;
    }
    if let Some(session) = initial {
        // From here on changes are collected; the map reads the tailnet
        // after this, so nothing between is lost (at worst sent twice).
        session.start_initial_map();
    }
    let tailnet = c.tailnet.clone();
    let shared = c.shared.clone();
    let built = tokio::task::spawn_blocking(move || {
        let me = tailnet.node(node_id)?;
        let json = mapper::full_map_json(tailnet.as_ref(), &me, resync, &shared.peers);
        Some(
            json.map_err(FramingError::from)
                .and_then(|j| framing::frame_json(&j, compression)),
        )
    })
    .await;
    match built {
        // The build permit is held meanwhile: no new map is built while
        // the budget is spent.
        Ok(Some(Ok(frame))) => Some(Ok(c.shared.in_flight(frame).await)),
        Ok(frame) => frame,
        Err(e) => {
            tracing::error!("building a full map failed: {e}");
            None
        }
    }
}

/// The delta for `pending`, framed; `Ok(None)` when nothing is left to tell.
/// Deltas made only of peer changes are shared by every session that
/// resolves the same inputs.
fn delta_frame(
    c: &Control,
    me: &Node,
    pending: Pending,
    compression: Compression,
) -> Result<Option<Bytes>, FramingError> {
    let src = c.tailnet.as_ref();
    let encode =
        |msg: Option<MapResponse>| msg.map(|m| framing::frame(&m, compression)).transpose();
    match mapper::delta_inputs(src, me, &pending) {
        Some(inputs) => c.shared.deltas.get_or_build(inputs, compression, |i| {
            encode(mapper::delta_from(src.settings(), i))
        }),
        None => encode(mapper::delta(src, me, pending)),
    }
}

async fn run(
    c: &Control,
    node: Arc<Node>,
    session: &Session,
    tx: Tx,
    compression: Compression,
    keep_alive: bool,
) {
    let node_id = node.id;
    // Built from the latest record, not kept: held across the loop's awaits,
    // every session would keep a copy of the whole tailnet.
    drop(node);
    let Some(full) = full_map_frame(c, node_id, Some(session), compression, &tx).await else {
        return;
    };
    if !send_frame(&tx, full).await {
        return;
    }
    tracing::debug!(node.id = node_id, "map stream started");
    let mut deadline = next_keep_alive(c.timing.keep_alive);
    loop {
        tokio::select! {
            _ = session.changed() => {
                if session.is_closed() {
                    return;
                }
                // A health probe goes out at once, on a keep-alive (which
                // the client reads for its ping before anything else).
                if let Some(ping) = session.take_ping() {
                    let msg = MapResponse {
                        ping_request: Some(ping),
                        ..mapper::keep_alive()
                    };
                    if !send_frame(&tx, framing::frame(&msg, compression)).await {
                        return;
                    }
                }
                // Let a burst of changes land, then send them as one message.
                tokio::time::sleep_until(c.shared.batch_end(c.timing.batch_delay)).await;
                if session.is_closed() {
                    return;
                }
                let pending = session.take();
                if pending.is_empty() {
                    continue;
                }
                let frame = if pending.full {
                    full_map_frame(c, node_id, None, compression, &tx).await
                } else {
                    let Some(me) = c.tailnet.node(node_id) else { return };
                    delta_frame(c, &me, pending, compression).transpose()
                };
                if let Some(frame) = frame {
                    if !send_frame(&tx, frame).await {
                        return;
                    }
                    deadline = next_keep_alive(c.timing.keep_alive);
                }
            }
            _ = tokio::time::sleep_until(deadline), if keep_alive => {
                if !send_frame(&tx, framing::frame(&mapper::keep_alive(), compression)).await {
                    return;
                }
                deadline = next_keep_alive(c.timing.keep_alive);
            }
            _ = tx.closed() => return,
            _ = c.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn full_maps_in_flight_wait_for_the_budget_until_written_or_expired() {
        let shared = Shared::with_in_flight_budget(8);
        let a = shared.in_flight(Bytes::from(vec![1u8; 6 * 1024])).await;
        assert_eq!(&a[..], &[1u8; 6 * 1024][..], "the frame is unchanged");
        // A slice (what HTTP/2 keeps of a frame it is writing) holds it too.
        let tail = a.slice(5 * 1024..);
        drop(a);
        let second = shared.in_flight(Bytes::from(vec![2u8; 4 * 1024]));
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut second)
                .await
                .is_err(),
            "6 + 4 KiB do not fit in 8"
        );
        drop(tail);
        let b = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("written frames give their share back");
        // A frame nobody writes gives it back after IN_FLIGHT_HOLD; one larger
        // than the whole budget still goes out.
        let big = shared.in_flight(Bytes::from(vec![3u8; 64 * 1024]));
        tokio::pin!(big);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut big)
                .await
                .is_err()
        );
        let big = tokio::time::timeout(IN_FLIGHT_HOLD, big)
            .await
            .expect("a stuck client's share expires");
        assert_eq!(big.len(), 64 * 1024);
        drop(b);
    }
}

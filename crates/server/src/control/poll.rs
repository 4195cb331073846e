//! The streaming `/machine/map` response: the full map first, then deltas as
//! the session's pending set fills, and keep-alives in between.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use headway_mapper as mapper;
use headway_proto::framing::{self, Compression};
use headway_proto::tailcfg::{MapRequest, MapResponse};
use headway_state::model::Node;
use headway_state::sessions::Session;
use rand::Rng;
use tokio::sync::mpsc;
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

async fn send(
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    msg: &MapResponse,
    compression: Compression,
) -> bool {
    match framing::frame(msg, compression) {
        Ok(frame) => tx.send(Ok(frame)).await.is_ok(),
        Err(e) => {
            tracing::error!("could not encode a map response: {e}");
            false
        }
    }
}

async fn run(
    c: &Control,
    node: Arc<Node>,
    session: &Session,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    compression: Compression,
    keep_alive: bool,
) {
    let node_id = node.id;
    let full = mapper::full_map(c.tailnet.as_ref(), &node, false);
    if !send(&tx, &full, compression).await {
        return;
    }
    tracing::debug!(
        node.id = node_id,
        peers = full.peers.len(),
        "map stream started"
    );
    // Not kept for the life of the stream: held across the loop's awaits,
    // every session would keep a copy of the whole tailnet.
    drop(full);
    let mut deadline = next_keep_alive(c.timing.keep_alive);
    loop {
        tokio::select! {
            _ = session.changed() => {
                if session.is_closed() {
                    return;
                }
                // Let a burst of changes land, then send them as one message.
                tokio::time::sleep(c.timing.batch_delay).await;
                if session.is_closed() {
                    return;
                }
                let pending = session.take();
                if pending.is_empty() {
                    continue;
                }
                let Some(me) = c.tailnet.node(node_id) else { return };
                if let Some(msg) = mapper::delta(c.tailnet.as_ref(), &me, pending) {
                    if !send(&tx, &msg, compression).await {
                        return;
                    }
                    deadline = next_keep_alive(c.timing.keep_alive);
                }
            }
            _ = tokio::time::sleep_until(deadline), if keep_alive => {
                if !send(&tx, &mapper::keep_alive(), compression).await {
                    return;
                }
                deadline = next_keep_alive(c.timing.keep_alive);
            }
            _ = tx.closed() => return,
            _ = c.shutdown.cancelled() => return,
        }
    }
}

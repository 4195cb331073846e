//! A connection's outgoing queues: bounded packet queues (disco first), control
//! frames and a pending pong, drained in batches by the connection's writer.
//!
//! Senders never wait: when a packet queue is full its oldest packet is dropped,
//! so one slow receiver cannot stall the readers of other connections.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use headway_proto::keys::NodePublic;
use tokio::sync::Notify;

use super::lock;
use crate::frame::PeerGoneReason;

/// Control frames are few (one per peer event); the cap only bounds abuse.
const MAX_CONTROL_QUEUE: usize = 4096;

/// A frame other than a relayed packet.
#[derive(Debug, Clone)]
pub(crate) enum Control {
    PeerGone(NodePublic, PeerGoneReason),
    PeerPresent {
        key: NodePublic,
        addr: Option<SocketAddr>,
        flags: u8,
    },
}

/// Everything waiting to be written; also the writer's batch buffer.
#[derive(Default)]
pub(crate) struct Queues {
    /// Complete `RecvPacket` frames carrying disco messages.
    pub disco: VecDeque<Bytes>,
    /// Complete `RecvPacket` frames carrying anything else.
    pub other: VecDeque<Bytes>,
    pub control: VecDeque<Control>,
    pub pong: Option<[u8; 8]>,
}

#[cfg(test)]
impl Queues {
    pub fn is_empty(&self) -> bool {
        self.disco.is_empty()
            && self.other.is_empty()
            && self.control.is_empty()
            && self.pong.is_none()
    }
}

/// What happened to a packet handed to [`Outbox::push_packet`].
#[derive(Debug)]
pub(crate) enum Pushed {
    Queued,
    /// Queued, after dropping the oldest queued packet.
    QueuedDroppingOldest,
    /// The connection is gone; the packet was not queued.
    Closed,
}

struct State {
    queues: Queues,
    closed: bool,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    depth: usize,
}

impl Outbox {
    pub fn new(depth: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queues: Queues::default(),
                closed: false,
            }),
            wake: Notify::new(),
            depth: depth.max(1),
        }
    }

    pub fn push_packet(&self, frame: Bytes, disco: bool) -> Pushed {
        let outcome = {
            let mut st = lock(&self.state);
            if st.closed {
                return Pushed::Closed;
            }
            let q = if disco {
                &mut st.queues.disco
            } else {
                &mut st.queues.other
            };
            // Dropping the head keeps the freshest packets, which matter most to
            // WireGuard and disco; the queue never grows past its depth.
            let dropped = q.len() >= self.depth && q.pop_front().is_some();
            q.push_back(frame);
            if dropped {
                Pushed::QueuedDroppingOldest
            } else {
                Pushed::Queued
            }
        };
        self.wake.notify_one();
        outcome
    }

    /// Queues a control frame; false if the connection is gone or flooded.
    pub fn push_control(&self, c: Control) -> bool {
        {
            let mut st = lock(&self.state);
            if st.closed || st.queues.control.len() >= MAX_CONTROL_QUEUE {
                return false;
            }
            st.queues.control.push_back(c);
        }
        self.wake.notify_one();
        true
    }

    /// Queues a pong; a client pinging faster than it reads gets only the first one answered.
    pub fn push_pong(&self, data: [u8; 8]) {
        {
            let mut st = lock(&self.state);
            if st.closed || st.queues.pong.is_some() {
                return;
            }
            st.queues.pong = Some(data);
        }
        self.wake.notify_one();
    }

    /// Moves everything queued into `batch`, which must be empty (its buffers are reused).
    pub fn take(&self, batch: &mut Queues) {
        let mut st = lock(&self.state);
        std::mem::swap(&mut st.queues.disco, &mut batch.disco);
        std::mem::swap(&mut st.queues.other, &mut batch.other);
        std::mem::swap(&mut st.queues.control, &mut batch.control);
        batch.pong = st.queues.pong.take();
    }

    /// Waits until something was queued since the last [`Outbox::take`] (or was already).
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Refuses further frames and returns how many queued packets were discarded.
    pub fn close(&self) -> usize {
        let mut st = lock(&self.state);
        st.closed = true;
        let n = st.queues.disco.len() + st.queues.other.len();
        st.queues = Queues::default();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_oldest_and_disco_has_its_own_queue() {
        let o = Outbox::new(2);
        for i in 0..3u8 {
            let r = o.push_packet(Bytes::from(vec![i]), false);
            assert_eq!(matches!(r, Pushed::QueuedDroppingOldest), i == 2);
        }
        assert!(matches!(
            o.push_packet(Bytes::from_static(b"d"), true),
            Pushed::Queued
        ));
        let mut batch = Queues::default();
        o.take(&mut batch);
        assert_eq!(batch.other, [Bytes::from(vec![1]), Bytes::from(vec![2])]);
        assert_eq!(batch.disco, [Bytes::from_static(b"d")]);
        let mut again = Queues::default();
        o.take(&mut again);
        assert!(again.is_empty());
    }

    #[test]
    fn closed_outbox_refuses_and_counts_discarded() {
        let o = Outbox::new(4);
        o.push_packet(Bytes::from_static(b"x"), false);
        o.push_packet(Bytes::from_static(b"y"), true);
        assert_eq!(o.close(), 2);
        assert!(matches!(
            o.push_packet(Bytes::from_static(b"z"), false),
            Pushed::Closed
        ));
        assert!(!o.push_control(Control::PeerGone(NodePublic::ZERO, PeerGoneReason::NotHere)));
    }

    #[test]
    fn only_one_pong_is_pending() {
        let o = Outbox::new(1);
        o.push_pong([1; 8]);
        o.push_pong([2; 8]);
        let mut batch = Queues::default();
        o.take(&mut batch);
        assert_eq!(batch.pong, Some([1; 8]));
    }

    #[tokio::test]
    async fn wait_returns_after_a_push_made_before_it() {
        let o = Outbox::new(1);
        o.push_pong([0; 8]);
        tokio::time::timeout(std::time::Duration::from_secs(1), o.wait())
            .await
            .unwrap();
    }
}

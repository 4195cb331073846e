//! Counters of a DERP server, kept as relaxed atomics and read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of a DERP server's counters (for metrics).
///
/// Gauges say `current`; everything else only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DerpStats {
    /// Connections that completed the handshake and are being served.
    pub connections_current: u64,
    /// Connections handed to the server (including those that failed the handshake).
    pub connections_total: u64,
    /// Connections whose client said this server is its home region.
    pub home_connections_current: u64,
    /// Connections that share their node key with an older one.
    pub duplicate_connections_total: u64,
    pub handshake_failures: u64,
    /// Clients refused by the admission hook.
    pub clients_rejected: u64,
    /// `SendPacket` frames read from clients.
    pub packets_received: u64,
    pub bytes_received: u64,
    /// ...of which disco messages.
    pub disco_packets_received: u64,
    /// `RecvPacket` frames written to clients.
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Packets for a key with no connection here (nor a mesh peer).
    pub packets_dropped_unknown_dest: u64,
    /// Packets dropped from the head of a full per-client queue.
    pub packets_dropped_queue_full: u64,
    /// Packets still queued for, or sent to, a connection that went away.
    pub packets_dropped_gone: u64,
    /// Packets handed to a mesh peer for one of its clients.
    pub packets_forwarded_out: u64,
    /// Packets a mesh peer handed to us for one of our clients.
    pub packets_forwarded_in: u64,
    pub peer_gone_disconnected_sent: u64,
    pub peer_gone_not_here_sent: u64,
    pub pings_received: u64,
    pub unknown_frames: u64,
    pub keepalives_sent: u64,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        #[derive(Default)]
        pub(crate) struct Counters {
            $(pub $name: AtomicU64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> DerpStats {
                DerpStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters!(
    connections_current,
    connections_total,
    home_connections_current,
    duplicate_connections_total,
    handshake_failures,
    clients_rejected,
    packets_received,
    bytes_received,
    disco_packets_received,
    packets_sent,
    bytes_sent,
    packets_dropped_unknown_dest,
    packets_dropped_queue_full,
    packets_dropped_gone,
    packets_forwarded_out,
    packets_forwarded_in,
    peer_gone_disconnected_sent,
    peer_gone_not_here_sent,
    pings_received,
    unknown_frames,
    keepalives_sent,
);

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

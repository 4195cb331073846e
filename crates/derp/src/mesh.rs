//! Meshing: relays of one region (several Headway replicas) forward packets to
//! each other, so that two nodes homed on different replicas can still talk.
//!
//! Each server runs one link per peer server. A link logs in to the peer with
//! the shared mesh key and this server's own key, subscribes to the peer's
//! connection changes, and registers itself as the forwarder for every node
//! key the peer reports present. Links are one-way; the peer runs its own link
//! back.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use headway_proto::keys::NodePublic;
use rustls::ClientConfig;
use tokio::sync::mpsc;

use crate::client::{ClientError, ClientOptions, DerpClient, ReceivedMessage};
use crate::handshake::MeshKey;
use crate::server::{DerpServer, ForwardError, PacketForwarder};

/// Packets waiting for the link's writer; beyond this they are dropped.
const LINK_QUEUE: usize = 1024;
/// A peer that does not take a packet within this time is reconnected to.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where a peer relay is reached.
#[derive(Debug, Clone)]
pub struct MeshPeer {
    /// `https://host:port/derp` (or `http://` for a plain-HTTP relay).
    pub url: String,
    /// TLS client configuration (for instance [`crate::tls::pinned_client_config`]).
    pub tls: Option<Arc<ClientConfig>>,
}

struct LinkForwarder {
    tx: mpsc::Sender<(NodePublic, NodePublic, Bytes)>,
}

impl PacketForwarder for LinkForwarder {
    fn forward_packet(
        &self,
        src: NodePublic,
        dst: NodePublic,
        packet: Bytes,
    ) -> Result<(), ForwardError> {
        self.tx.try_send((src, dst, packet)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ForwardError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => ForwardError::LinkDown,
        })
    }
}

/// How a link's connection ended.
enum LinkEnd {
    /// Broken; `connected` says whether it got as far as logging in.
    Down { connected: bool, error: ClientError },
    /// The peer has this server's own key: there is nothing to mesh with.
    SameKey,
}

/// Keeps `server` meshed with `peer` until `shutdown` resolves, reconnecting
/// with backoff when the link breaks. Returns early when the peer turns out
/// to have this server's own key (it is this server, or a relay sharing its
/// private key, which cannot mesh: each side ignores a peer with its key).
pub async fn run_mesh_link(
    server: Arc<DerpServer>,
    peer: MeshPeer,
    mesh_key: MeshKey,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            result = link_once(&server, &peer, &mesh_key) => {
                match result {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(LinkEnd::SameKey) => {
                        tracing::error!(
                            peer = %peer.url,
                            "the DERP relay at this mesh address has this relay's own key: either it is this \
                             relay (leave it out of the mesh list) or it shares this relay's DERP private key \
                             (give every relay its own); not meshing with it"
                        );
                        return;
                    }
                    Err(LinkEnd::Down { connected, error }) => {
                        if connected {
                            backoff = Duration::from_millis(100);
                        }
                        tracing::warn!(peer = %peer.url, %error, "DERP mesh link down");
                    }
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life.
async fn link_once(
    server: &DerpServer,
    peer: &MeshPeer,
    mesh_key: &MeshKey,
) -> Result<(), LinkEnd> {
    let options = ClientOptions {
        mesh_key: Some(mesh_key.clone()),
        ..ClientOptions::default()
    };
    let down = |connected| move |error| LinkEnd::Down { connected, error };
    let mut client =
        DerpClient::connect(&peer.url, server.private_key(), peer.tls.clone(), &options)
            .await
            .map_err(down(false))?;
    if client.server_key() == server.public_key() {
        let _ = client.sender().shutdown().await;
        return Err(LinkEnd::SameKey);
    }
    tracing::info!(peer = %peer.url, "DERP mesh link up");
    let sender = client.sender();
    sender.watch_connections().await.map_err(down(true))?;

    let (tx, mut rx) = mpsc::channel(LINK_QUEUE);
    let fwd: Arc<dyn PacketForwarder> = Arc::new(LinkForwarder { tx });
    let mut present: HashSet<NodePublic> = HashSet::new();

    let write = async {
        while let Some((src, dst, packet)) = rx.recv().await {
            match tokio::time::timeout(FORWARD_TIMEOUT, sender.forward(&src, &dst, &packet)).await {
                Ok(r) => r?,
                Err(_) => return Err(ClientError::Timeout(FORWARD_TIMEOUT)),
            }
        }
        Ok(())
    };
    let read = async {
        loop {
            match client.recv().await? {
                ReceivedMessage::PeerPresent { peer: key, .. } if present.insert(key) => {
                    server.add_packet_forwarder(key, fwd.clone());
                }
                ReceivedMessage::PeerGone { peer: key, .. } if present.remove(&key) => {
                    server.remove_packet_forwarder(&key, &fwd);
                }
                _ => {}
            }
        }
    };
    let result: Result<(), ClientError> = tokio::select! {
        r = write => r,
        r = read => r,
    };
    for key in &present {
        server.remove_packet_forwarder(key, &fwd);
    }
    result.map_err(down(true))
}

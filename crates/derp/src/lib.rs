//! DERP relay and STUN for Headway.
//!
//! This crate owns the DERP protocol (framing, the NaCl-boxed login, relaying
//! between node keys, keep-alives, `PeerGone`, the server side of meshing), its
//! HTTP endpoints (`/derp` upgrade, probes, captive-portal check), a TLS listener
//! with a self-signed certificate clients can pin, the STUN server and a DERP
//! client. It knows nothing about nodes beyond "is this node key allowed", which
//! the server wiring answers through [`VerifyClient`].
//!
//! Wiring, in short:
//! - [`DerpServer::new`] with the persisted DERP private key, `.with_verifier(..)`;
//! - [`http::router`] merged into the main router when Headway serves HTTPS, or
//!   served by [`tls::serve_tls`] on its own port with a [`tls::SelfSignedCert`]
//!   whose [`tls::SelfSignedCert::cert_name`] goes into the DERP map;
//! - [`region::EmbeddedRegion`] for the DERP map entry;
//! - [`stun::serve_stun`] on a UDP socket;
//! - with several replicas, [`mesh::run_mesh_link`] from each to every other one.

pub mod client;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mesh;
pub mod region;
pub mod server;
pub mod stun;
pub mod tls;

pub use client::{ClientError, ClientOptions, DerpClient, DerpSender, ReceivedMessage};
pub use handshake::{ClientInfo, MeshKey, ServerInfo};
pub use http::router;
pub use mesh::{MeshPeer, run_mesh_link};
pub use region::{EmbeddedRegion, embedded_region};
pub use server::{
    AllowAll, ClientIdentity, ConnError, DerpConfig, DerpServer, DerpStats, ForwardError,
    PacketForwarder, VerifyClient,
};
pub use stun::serve_stun;
pub use tls::{SelfSignedCert, serve_tls};

//! The Noise `ts2021` transport: the encrypted pipe that carries HTTP/2 between
//! a Tailscale client and its control server.
//!
//! A client upgrades `POST /ts2021` (HTTP/1.1) and puts the first Noise IK
//! message in the `X-Tailscale-Handshake` header; the server answers `101`,
//! writes its handshake response, optionally an "early payload", and from then
//! on both sides speak HTTP/2 (prior knowledge) inside Noise records.
//!
//! This module owns the bytes of that exchange and nothing above it:
//! - [`handshake`]: Noise_IK_25519_ChaChaPoly_BLAKE2s for both roles, with the
//!   prologue and message framing Tailscale uses ([`accept`], [`ClientHandshake`]);
//! - [`stream`]: [`NoiseStream`], the record layer as a tokio
//!   `AsyncRead + AsyncWrite`, and the early payload;
//! - [`client`]: what a client does around it (`/key`, the HTTP upgrade,
//!   HTTP/2 over the stream), for the load generator and protocol tests.
//!
//! It does not decide who may connect: the caller checks the peer's machine
//! key and capability version.
//!
//! # Server side
//!
//! Run [`accept`] while handling the upgrade request, answer `101` either
//! way, then on the upgraded connection either report the failure in an
//! [`error_frame`] (the client logs its text) or start HTTP/2:
//!
//! ```no_run
//! use headway_proto::keys::{ChallengePublic, PrivateKey};
//! use headway_proto::noise::{self, HandshakeError, ServerHandshake};
//! use headway_proto::tailcfg::EarlyNoise;
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn example(
//! #     server_key: PrivateKey,
//! #     header: &[u8],
//! #     upgraded: hyper::upgrade::Upgraded,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! // In the handler, before answering: a header that is not base64 gets a 400.
//! let initiation = noise::decode_handshake_header(header)?;
//! let accepted: Result<ServerHandshake, HandshakeError> = noise::accept(&server_key, &initiation);
//! // …answer 101 with `Upgrade: tailscale-control-protocol`, `Connection: upgrade`,
//! // then, once hyper hands over the connection:
//! let mut io = TokioIo::new(upgraded);
//! let handshake = match accepted {
//!     Ok(handshake) => handshake,
//!     Err(e) => {
//!         io.write_all(&noise::error_frame(&e.to_string())).await?;
//!         return Err(e.into());
//!     }
//! };
//! let machine_key = handshake.machine_key(); // the client's authenticated identity
//! let version = handshake.protocol_version(); // refuse old clients here (error frame)
//! let mut stream = handshake.into_stream(io); // the 51-byte response is queued
//! let challenge = EarlyNoise { node_key_challenge: ChallengePublic([0; 32]) };
//! stream.write_early_payload(&challenge).await?; // response + payload in one write
//! let service = hyper::service::service_fn(|_request| async {
//!     Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! });
//! hyper::server::conn::http2::Builder::new(TokioExecutor::new())
//!     .serve_connection(TokioIo::new(stream), service)
//!     .await?;
//! # let _ = (machine_key, version);
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod handshake;
pub mod stream;

pub use client::{ClientStream, ControlClient, DialError, Dialed, dial, fetch_server_key};
pub use handshake::{
    ClientHandshake, HandshakeError, INITIATION_LEN, RESPONSE_LEN, ServerHandshake, TransportKeys,
    accept, decode_handshake_header, error_frame,
};
pub use stream::{
    EARLY_PAYLOAD_MAGIC, MAX_EARLY_PAYLOAD_LEN, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN, NoiseStream,
    RecordError, encode_early_payload,
};

/// The path a client posts to for the Noise upgrade.
pub const UPGRADE_PATH: &str = "/ts2021";

/// The `Upgrade` header value both sides send; the Go client compares the
/// server's value byte for byte, so it must be sent exactly like this.
pub const UPGRADE_PROTOCOL: &str = "tailscale-control-protocol";

/// The request header carrying the base64 (standard, padded) initiation message.
pub const HANDSHAKE_HEADER: &str = "X-Tailscale-Handshake";

// Message types: the first byte of every frame (after the version, for the initiation).
const MSG_INITIATION: u8 = 0x01;
const MSG_RESPONSE: u8 = 0x02;
const MSG_ERROR: u8 = 0x03;
const MSG_RECORD: u8 = 0x04;

//! The control protocol's HTTP side: `GET /key`, the `/ts2021` upgrade to
//! Noise, and the HTTP/2 service (`/machine/*`) inside each Noise connection.

pub mod attempts;
mod machine;
mod poll;
mod ssh_action;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use headway_proto::keys::{MachinePublic, PrivateKey};
use headway_proto::tailcfg::OverTlsPublicKeyResponse;
use headway_state::Tailnet;
use serde::Deserialize;

pub use upgrade::serve_noise_connection;

/// What the control handlers share.
#[derive(Debug, Clone)]
pub struct Control {
    pub tailnet: Arc<Tailnet>,
    pub noise_key: Arc<PrivateKey>,
    pub noise_public: MachinePublic,
    pub timing: Timing,
    /// Ends open streams at shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Failed handshakes and registrations per address.
    pub attempts: Arc<attempts::Attempts>,
    /// The client's address, on a Noise connection's copy.
    pub peer: Option<std::net::IpAddr>,
    /// Caches and limits the map sessions share.
    shared: Arc<poll::Shared>,
}

/// Timers of the map stream (shortened in tests).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Base interval between keep-alives (jitter is added). The client gives
    /// up after 120 s of silence.
    pub keep_alive: Duration,
    /// How long a session waits after the first change before sending, so a
    /// burst of changes becomes one message.
    pub batch_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(50),
            batch_delay: Duration::from_millis(50),
        }
    }
}

impl Control {
    pub fn new(
        tailnet: Arc<Tailnet>,
        noise_key: PrivateKey,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let noise_public = noise_key.machine_public();
        Self {
            tailnet,
            noise_key: Arc::new(noise_key),
            noise_public,
            timing: Timing::default(),
            shutdown,
            attempts: Arc::default(),
            peer: None,
            shared: Arc::default(),
        }
    }

    /// Public routes of the main listener: `/key`, `/ts2021`, and the URL
    /// clients call back to answer a router health probe.
    pub fn router(self) -> Router {
        Router::new()
            .route("/key", get(key))
            .route("/ts2021", any(upgrade::ts2021))
            .route(
                headway_state::tailnet::PING_RESPONSE_PATH,
                get(ping_response).head(ping_response).post(ping_response),
            )
            .with_state(self)
    }
}

#[derive(Debug, Deserialize)]
struct PingQuery {
    id: Option<String>,
}

/// A client answering a `PingRequest` (`HEAD <url>`). The one-time id,
/// sent only to the probed node over its Noise map stream, is the proof.
async fn ping_response(State(c): State<Control>, Query(q): Query<PingQuery>) -> StatusCode {
    match q.id.filter(|id| !id.is_empty()) {
        Some(id) if c.tailnet.answer_ping(&id) => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    }
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    v: Option<String>,
}

/// `GET /key?v=N`: the server's Noise public key.
async fn key(State(c): State<Control>, Query(q): Query<KeyQuery>) -> Response {
    let Some(v) = q.v else {
        return (
            StatusCode::BAD_REQUEST,
            "missing capability version: use /key?v=<capver>",
        )
            .into_response();
    };
    if v.parse::<i32>().is_err() {
        return (
            StatusCode::BAD_REQUEST,
            format!("capability version {v:?} is not a number"),
        )
            .into_response();
    }
    axum::Json(OverTlsPublicKeyResponse {
        legacy_public_key: MachinePublic::ZERO,
        public_key: c.noise_public,
    })
    .into_response()
}

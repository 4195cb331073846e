//! Per-address limits on failed attempts at the control protocol's doors:
//! Noise handshakes on `/ts2021` and registrations on `/machine/register`.
//!
//! Only failures cost (a handshake that does not decrypt, a refused auth
//! key), so many honest nodes behind one NAT are never slowed down, while a
//! client guessing keys, or burning the server's CPU on handshakes that
//! cannot succeed, gets 429 with `Retry-After` before any work is done. The
//! buckets are the API guard's (`headway_api::guard::FailureLimiter`: per
//! IPv4 address or IPv6 /64), with time from the tailnet's clock.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use headway_api::guard::FailureLimiter;
use headway_proto::tailcfg::RegisterResponse;
use headway_state::Tailnet;
use parking_lot::Mutex;

/// Failed handshakes or registrations an address may make in a burst.
pub const BURST: u32 = 10;
/// One more is allowed every this many seconds.
pub const REFILL_SECS: u32 = 6;

/// Register answers are small JSON documents.
const MAX_REGISTER_RESPONSE: usize = 1 << 20;

/// The two doors' failure buckets.
#[derive(Debug)]
pub struct Attempts {
    handshakes: Mutex<FailureLimiter>,
    registrations: Mutex<FailureLimiter>,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts {
            handshakes: Mutex::new(FailureLimiter::new(BURST, REFILL_SECS)),
            registrations: Mutex::new(FailureLimiter::new(BURST, REFILL_SECS)),
        }
    }
}

/// Which door.
#[derive(Debug, Clone, Copy)]
pub enum Door {
    Handshake,
    Register,
}

impl Attempts {
    fn bucket(&self, door: Door) -> &Mutex<FailureLimiter> {
        match door {
            Door::Handshake => &self.handshakes,
            Door::Register => &self.registrations,
        }
    }

    /// `Some(429 answer)` while `ip` has no failures left at `door`.
    pub fn refuse(&self, tailnet: &Tailnet, door: Door, ip: Option<IpAddr>) -> Option<Response> {
        let ip = ip?;
        let wait = self.bucket(door).lock().retry_after(ip, tailnet.now())?;
        tracing::info!(%ip, ?door, retry_after = wait, "too many failed attempts from this address");
        Some(too_many(wait))
    }

    /// Counts a failure of `ip` at `door`.
    pub fn fail(&self, tailnet: &Tailnet, door: Door, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.bucket(door).lock().fail(ip, tailnet.now());
        }
    }
}

fn too_many(wait: u64) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed attempts from this address; retry in {wait} s"),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// What the registration middleware needs about the connection.
#[derive(Debug, Clone)]
pub struct RegisterGuard {
    pub attempts: Arc<Attempts>,
    pub tailnet: Arc<Tailnet>,
    pub peer: Option<IpAddr>,
}

/// Middleware on the Noise connection's router: refuses `/machine/register`
/// from an address out of failures, and counts refused registrations
/// (unknown, expired or used auth keys, node keys of another machine).
pub async fn guard_register(
    axum::extract::State(g): axum::extract::State<RegisterGuard>,
    req: Request<Body>,
    next: Next,
) -> Response {
    if req.uri().path() != "/machine/register" {
        return next.run(req).await;
    }
    if let Some(refused) = g.attempts.refuse(&g.tailnet, Door::Register, g.peer) {
        return refused;
    }
    let resp = next.run(req).await;
    // A refused auth key is a 200 whose `Error` the client shows; other
    // refusals are 401/403.
    let (parts, body) = resp.into_parts();
    let refused_status = matches!(
        parts.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    let bytes = match axum::body::to_bytes(body, MAX_REGISTER_RESPONSE).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("register: could not read the answer: {e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let refused_key = parts.status == StatusCode::OK
        && serde_json::from_slice::<RegisterResponse>(&bytes).is_ok_and(|r| !r.error.is_empty());
    if refused_status || refused_key {
        g.attempts.fail(&g.tailnet, Door::Register, g.peer);
    }
    Response::from_parts(parts, Body::from(bytes))
}

//! Who may call the API over the network: every request carries a key in
//! `Authorization: Bearer <key>` (REST and gRPC alike; gRPC sends it as the
//! `authorization` metadata). The local unix socket does not come through
//! here: its file permissions are its guard.
//!
//! * `/api/v1` and gRPC take an API key (`hskey-api-…`).
//! * `/api/v2` (the Tailscale-compatible API) takes an API key or an OAuth
//!   access token (`hskey-token-…`), as `Bearer` or as HTTP Basic with the
//!   key as the user name (`curl -u <key>:`), as Tailscale's API does.
//!
//! Failed attempts are rate limited per client address (a token bucket per
//! IPv4 address or IPv6 /64): once a client has spent its budget of
//! failures, it is answered 429 with `Retry-After` until the bucket refills,
//! before its key is even looked at. Successful calls cost nothing.
//!
//! The accepted caller is put in the request's extensions as a [`Caller`].
//! Nothing here logs a presented key or quotes it in an answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use headway_state::Tailnet;
use headway_state::keys::{ACCESS_TOKEN_PREFIX, API_KEY_PREFIX};
use headway_state::tailnet::Grant;
use parking_lot::Mutex;

use crate::error::ApiError;

/// Who is calling, as established by the guard (or the listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Over the local unix socket: trusted by its file permissions.
    Local,
    /// With an API key: every operation.
    ApiKey { id: i64 },
    /// With an OAuth access token: what its scopes and tags allow.
    OAuth(Grant),
}

/// Failures a client may make in a burst before it is slowed down.
pub const FAILURE_BURST: u32 = 10;
/// One more failure is allowed every this many seconds.
pub const FAILURE_REFILL_SECS: u32 = 6;
/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 4096;

/// A token bucket of failures per client address; time is a parameter.
#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    refill_secs: f64,
    buckets: HashMap<IpAddr, (f64, DateTime<Utc>)>,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(FAILURE_BURST, FAILURE_REFILL_SECS)
    }
}

impl FailureLimiter {
    pub fn new(burst: u32, refill_secs: u32) -> Self {
        FailureLimiter {
            burst: f64::from(burst.max(1)),
            refill_secs: f64::from(refill_secs.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// The bucket of `ip`: IPv6 clients by their /64, which one client
    /// usually has whole.
    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        }
    }

    fn tokens(&self, key: IpAddr, now: DateTime<Utc>) -> f64 {
        match self.buckets.get(&key) {
            None => self.burst,
            Some((tokens, at)) => {
                let elapsed = (now - *at).num_milliseconds().max(0) as f64 / 1000.0;
                (tokens + elapsed / self.refill_secs).min(self.burst)
            }
        }
    }

    /// `Some(seconds to wait)` while `ip` has no failures left.
    pub fn retry_after(&self, ip: IpAddr, now: DateTime<Utc>) -> Option<u64> {
        let tokens = self.tokens(Self::key(ip), now);
        (tokens < 1.0).then(|| ((1.0 - tokens) * self.refill_secs).ceil().max(1.0) as u64)
    }

    /// Counts a failure of `ip`.
    pub fn fail(&mut self, ip: IpAddr, now: DateTime<Utc>) {
        let key = Self::key(ip);
        let tokens = (self.tokens(key, now) - 1.0).max(0.0);
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
            let burst = self.burst;
            let full: Vec<IpAddr> = self
                .buckets
                .keys()
                .copied()
                .filter(|k| self.tokens(*k, now) >= burst)
                .collect();
            for k in full {
                self.buckets.remove(&k);
            }
        }
        self.buckets.insert(key, (tokens, now));
    }
}

/// The guard's state: the tailnet that knows the keys, and the limiter.
#[derive(Debug)]
pub struct Guard {
    tailnet: Arc<Tailnet>,
    limiter: Mutex<FailureLimiter>,
}

impl Guard {
    pub fn new(tailnet: Arc<Tailnet>) -> Arc<Self> {
        Self::with_limiter(tailnet, FailureLimiter::default())
    }

    pub fn with_limiter(tailnet: Arc<Tailnet>, limiter: FailureLimiter) -> Arc<Self> {
        Arc::new(Guard {
            tailnet,
            limiter: Mutex::new(limiter),
        })
    }

    pub(crate) fn retry_after(&self, ip: IpAddr) -> Option<u64> {
        self.limiter.lock().retry_after(ip, self.tailnet.now())
    }

    pub(crate) fn fail(&self, ip: IpAddr) {
        self.limiter.lock().fail(ip, self.tailnet.now());
    }

    /// Checks the credentials in `headers`; `v2` also takes OAuth tokens.
    fn authenticate(&self, headers: &HeaderMap, v2: bool) -> Result<Caller, &'static str> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(MISSING);
        };
        let value = value.to_str().map_err(|_| MALFORMED)?.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let credential = if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().to_string()
        } else if v2 && scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| MALFORMED)?;
            let text = String::from_utf8(decoded).map_err(|_| MALFORMED)?;
            text.split(':').next().unwrap_or_default().to_string()
        } else {
            return Err(MALFORMED);
        };
        if credential.starts_with(API_KEY_PREFIX) {
            let used = self
                .tailnet
                .authenticate_api_key(&credential)
                .map_err(|_| REFUSED)?;
            if used.persist_due {
                let tailnet = self.tailnet.clone();
                tokio::spawn(async move {
                    if let Err(e) = tailnet.persist_api_key_use(used.id).await {
                        tracing::warn!(
                            api_key.id = used.id,
                            "could not save an API key's last use (kept in memory): {e}"
                        );
                    }
                });
            }
            Ok(Caller::ApiKey { id: used.id })
        } else if v2 && credential.starts_with(ACCESS_TOKEN_PREFIX) {
            self.tailnet
                .authenticate_access_token(&credential)
                .map(Caller::OAuth)
                .map_err(|_| REFUSED)
        } else {
            Err(REFUSED)
        }
    }
}

const MISSING: &str = "this API needs a key: send `Authorization: Bearer <key>` (create one with `headway apikeys create` on the server)";
const MALFORMED: &str = "the Authorization header is not `Bearer <key>`";
const REFUSED: &str = "the key is not valid: it is unknown, wrong, expired or deleted (create one with `headway apikeys create`)";

/// The client's address, from the listener (absent only in tests that call
/// a router in process, which all count as one client).
fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The middleware: refuses, or passes the request on with its [`Caller`].
pub async fn require_key(
    State(guard): State<Arc<Guard>>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&req);
    let grpc = is_grpc(req.headers());
    let v2 = req.uri().path().starts_with("/api/v2/");
    let shape = match (grpc, v2) {
        (true, _) => Shape::Grpc,
        (false, true) => Shape::Tailscale,
        (false, false) => Shape::Problem,
    };
    if let Some(wait) = guard.retry_after(ip) {
        tracing::debug!(%ip, wait, "API call refused: too many failed authentications");
        return too_many(shape, wait);
    }
    match guard.authenticate(req.headers(), v2) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(why) => {
            guard.fail(ip);
            tracing::debug!(%ip, path = req.uri().path(), "API call refused: {why}");
            unauthorized(shape, why)
        }
    }
}

/// Counts the answer to an endpoint that authenticates by itself (the
/// OAuth token endpoint): a 401 is a failure like any other.
pub async fn limit_failures(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    if let Some(wait) = guard.retry_after(ip) {
        return too_many(Shape::Tailscale, wait);
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        guard.fail(ip);
    }
    response
}

/// How a refusal is written: a gRPC status, Tailscale's error body (the
/// v2 API, whose clients read `message`), or a problem document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Grpc,
    Tailscale,
    Problem,
}

fn unauthorized(shape: Shape, why: &str) -> Response {
    let mut response = match shape {
        Shape::Grpc => return tonic::Status::unauthenticated(why).into_http(),
        Shape::Tailscale => crate::v2::V2Error::response(StatusCode::UNAUTHORIZED, why),
        Shape::Problem => {
            ApiError::Service(headway_state::Error::Unauthorized(why.to_string())).into_response()
        }
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"headway\""),
    );
    response
}

fn too_many(shape: Shape, wait: u64) -> Response {
    let detail = format!("too many failed authentications from this address; retry in {wait} s");
    let mut response = match shape {
        Shape::Grpc => tonic::Status::resource_exhausted(detail).into_http(),
        Shape::Tailscale => crate::v2::V2Error::response(StatusCode::TOO_MANY_REQUESTS, &detail),
        Shape::Problem => ApiError::TooManyRequests(detail).into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn a_burst_of_failures_is_allowed_then_one_per_refill() {
        let mut l = FailureLimiter::new(3, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.retry_after(ip, t0()), None);
            l.fail(ip, t0());
        }
        assert_eq!(l.retry_after(ip, t0()), Some(10));
        assert_eq!(l.retry_after(ip, t0() + Duration::seconds(4)), Some(6));
        let later = t0() + Duration::seconds(10);
        assert_eq!(l.retry_after(ip, later), None);
        l.fail(ip, later);
        assert!(l.retry_after(ip, later).is_some());
        // Other clients are not affected.
        assert_eq!(l.retry_after("192.0.2.2".parse().unwrap(), t0()), None);
        // Refilled, never above the burst.
        let much_later = t0() + Duration::hours(1);
        for _ in 0..3 {
            l.fail(ip, much_later);
        }
        assert!(l.retry_after(ip, much_later).is_some());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let mut l = FailureLimiter::new(1, 60);
        l.fail("2001:db8:1:2::1".parse().unwrap(), t0());
        assert!(
            l.retry_after("2001:db8:1:2::ffff".parse().unwrap(), t0())
                .is_some()
        );
        assert!(
            l.retry_after("2001:db8:1:3::1".parse().unwrap(), t0())
                .is_none()
        );
        l.fail("::ffff:192.0.2.9".parse().unwrap(), t0());
        assert!(l.retry_after("192.0.2.9".parse().unwrap(), t0()).is_some());
    }

    #[test]
    fn full_buckets_are_forgotten_when_there_are_too_many() {
        let mut l = FailureLimiter::new(2, 1);
        for i in 0..MAX_BUCKETS as u32 {
            l.fail(IpAddr::V4(i.into()), t0());
        }
        assert_eq!(l.buckets.len(), MAX_BUCKETS);
        l.fail("198.51.100.1".parse().unwrap(), t0() + Duration::seconds(5));
        assert_eq!(l.buckets.len(), 1);
    }
}

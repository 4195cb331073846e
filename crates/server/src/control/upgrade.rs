//! `/ts2021`: the HTTP upgrade to the Noise transport, then HTTP/2 inside it.

use std::pin::pin;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headway_proto::capver;
use headway_proto::keys::{ChallengePublic, PrivateKey};
use headway_proto::noise::{self, HandshakeError, ServerHandshake};
use headway_proto::tailcfg::EarlyNoise;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::attempts::{self, Door, RegisterGuard};
use super::{Control, machine};

const PROTOCOL: &str = "tailscale-control-protocol";
const HANDSHAKE_HEADER: &str = "x-tailscale-handshake";

pub(super) async fn ts2021(State(mut c): State<Control>, req: Request) -> Response {
    c.peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|ci| ci.0.ip());
    if let Some(refused) = c.attempts.refuse(&c.tailnet, Door::Handshake, c.peer) {
        return refused;
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match upgrade.as_str() {
        PROTOCOL => post_upgrade(c, req),
        "websocket" => websocket_upgrade(c, req).await,
        _ => (
            StatusCode::BAD_REQUEST,
            "/ts2021 needs `Upgrade: tailscale-control-protocol`; if a reverse proxy is in front of Headway, make it pass the Upgrade and Connection headers through",
        )
            .into_response(),
    }
}

fn post_upgrade(c: Control, mut req: Request) -> Response {
    let Some(value) = req.headers().get(HANDSHAKE_HEADER) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing X-Tailscale-Handshake header",
        )
            .into_response();
    };
    let initiation = match noise::decode_handshake_header(value.as_bytes()) {
        Ok(i) => i,
        Err(e) => {
            c.attempts.fail(&c.tailnet, Door::Handshake, c.peer);
            return (
                StatusCode::BAD_REQUEST,
                format!("X-Tailscale-Handshake: {e}"),
            )
                .into_response();
        }
    };
    let accepted = noise::accept(&c.noise_key, &initiation);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_noise_connection(c, TokioIo::new(upgraded), accepted).await,
            Err(e) => tracing::debug!("ts2021 upgrade did not complete: {e}"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    // The client compares this value exactly.
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp
}

/// The WebSocket form (used by the JS/WASM client): the initiation comes in
/// the query string and Noise records ride binary messages.
async fn websocket_upgrade(c: Control, req: Request) -> Response {
    let initiation = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case(HANDSHAKE_HEADER))
            .map(|(_, v)| v.into_owned())
    });
    let Some(initiation) = initiation else {
        return (
            StatusCode::BAD_REQUEST,
            "missing X-Tailscale-Handshake query parameter",
        )
            .into_response();
    };
    let initiation = match noise::decode_handshake_header(initiation.as_bytes()) {
        Ok(i) => i,
        Err(e) => {
            c.attempts.fail(&c.tailnet, Door::Handshake, c.peer);
            return (
                StatusCode::BAD_REQUEST,
                format!("X-Tailscale-Handshake: {e}"),
            )
                .into_response();
        }
    };
    let accepted = noise::accept(&c.noise_key, &initiation);
    let (mut parts, _body) = req.into_parts();
    let ws = match <axum::extract::ws::WebSocketUpgrade as axum::extract::FromRequestParts<()>>::from_request_parts(
        &mut parts,
        &(),
    )
    .await
    {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    ws.protocols([PROTOCOL])
        .on_upgrade(move |socket| async move {
            let stream = headway_derp::http::WsStream::<_, axum::extract::ws::Message>::new(socket);
            serve_noise_connection(c, stream, accepted).await;
        })
}

/// Completes the Noise handshake on an upgraded connection and serves the
/// `/machine/*` HTTP/2 service inside it until either side closes.
pub async fn serve_noise_connection<T>(
    c: Control,
    mut io: T,
    accepted: Result<ServerHandshake, HandshakeError>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = match accepted {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(peer = ?c.peer, "Noise handshake refused: {e}");
            c.attempts.fail(&c.tailnet, Door::Handshake, c.peer);
            let _ = io
                .write_all(&noise::error_frame(&format!("handshake failed: {e}")))
                .await;
            let _ = io.shutdown().await;
            return;
        }
    };
    let version = i32::from(handshake.protocol_version());
    if !capver::is_supported(version) {
        tracing::info!(capver = version, "refusing a client that is too old");
        let _ = io
            .write_all(&noise::error_frame(&capver::unsupported_message(version)))
            .await;
        let _ = io.shutdown().await;
        return;
    }
    let machine_key = handshake.machine_key();
    let mut stream = handshake.into_stream(io);
    let challenge = EarlyNoise {
        node_key_challenge: ChallengePublic(PrivateKey::generate().public_bytes()),
    };
    if let Err(e) = stream.write_early_payload(&challenge).await {
        tracing::debug!(machine = %machine_key.short(), "early payload not delivered: {e}");
        return;
    }
    let shutdown = c.shutdown.clone();
    let guard = RegisterGuard {
        attempts: c.attempts.clone(),
        tailnet: c.tailnet.clone(),
        peer: c.peer,
    };
    let router = machine::router(c, machine_key).layer(axum::middleware::from_fn_with_state(
        guard,
        attempts::guard_register,
    ));
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(machine = %machine_key.short(), "control connection ended: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        }
    }
}

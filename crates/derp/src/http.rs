//! HTTP side of the relay: `GET /derp` (upgrade to DERP, or to a WebSocket
//! carrying the same bytes), the latency probes and the captive-portal check.
//!
//! The router serves HTTP/1.1 with upgrades; mount it on a listener that keeps
//! them (`axum::serve`, or [`crate::tls::serve_tls`]). A `ConnectInfo<SocketAddr>`
//! request extension, when present, gives the server the client's address.

use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::frame::PROTOCOL_VERSION;
use crate::server::{ConnError, DerpServer};

/// Path of the DERP upgrade endpoint.
pub const DERP_PATH: &str = "/derp";
const CHALLENGE_HEADER: &str = "x-tailscale-challenge";
const RESPONSE_HEADER: &str = "x-tailscale-response";

/// Routes `/derp`, `/derp/probe`, `/derp/latency-check` and `/generate_204`.
pub fn router(server: Arc<DerpServer>) -> Router {
    Router::new()
        .route(DERP_PATH, any(derp_upgrade))
        .route("/derp/probe", any(probe))
        .route("/derp/latency-check", any(probe))
        .route("/generate_204", any(no_content))
        .with_state(server)
}

async fn derp_upgrade(State(server): State<Arc<DerpServer>>, req: Request) -> Response {
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match upgrade.as_str() {
        "derp" => upgrade_to_derp(server, req, remote),
        "websocket" => upgrade_to_websocket(server, req, remote).await,
        other => {
            if !other.is_empty() {
                tracing::debug!(upgrade = other, remote = ?remote, "DERP request with an unknown Upgrade header");
            }
            upgrade_required()
        }
    }
}

fn upgrade_required() -> Response {
    (
        StatusCode::UPGRADE_REQUIRED,
        "DERP requires connection upgrade",
    )
        .into_response()
}

fn upgrade_to_derp(
    server: Arc<DerpServer>,
    mut req: Request,
    remote: Option<SocketAddr>,
) -> Response {
    // Only an HTTP/1.1 connection served with upgrades can be taken over.
    let on_upgrade = match req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
        Some(u) if req.version() == Version::HTTP_11 => u,
        _ => return upgrade_required(),
    };
    let public_key = HeaderValue::try_from(server.public_key().hex()).ok();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_connection(&server, TokioIo::new(upgraded), remote).await,
            Err(e) => tracing::debug!(remote = ?remote, error = %e, "DERP upgrade failed"),
        }
    });

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("DERP"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert("derp-version", HeaderValue::from(PROTOCOL_VERSION));
    if let Some(k) = public_key {
        h.insert("derp-public-key", k);
    }
    resp
}

async fn upgrade_to_websocket(
    server: Arc<DerpServer>,
    req: Request,
    remote: Option<SocketAddr>,
) -> Response {
    let (mut parts, _body) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws.protocols(["derp"]),
        Err(rejection) => return rejection.into_response(),
    };
    if ws.selected_protocol().is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "DERP over WebSocket needs the \"derp\" subprotocol",
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| async move {
        serve_connection(&server, WsStream::<_, Message>::new(socket), remote).await;
    })
}

async fn serve_connection<S>(server: &DerpServer, stream: S, remote: Option<SocketAddr>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match server.accept(stream, remote).await {
        Ok(()) => {}
        Err(e @ (ConnError::Rejected(_) | ConnError::VerifyTimeout(..))) => {
            tracing::info!(remote = ?remote, "{e}");
        }
        Err(e) => tracing::debug!(remote = ?remote, "DERP connection ended: {e}"),
    }
}

/// `GET|HEAD` → 200 with `Access-Control-Allow-Origin: *` (netcheck's HTTPS latency probe).
async fn probe(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        ([(ACCESS_CONTROL_ALLOW_ORIGIN, "*")], "").into_response()
    } else {
        (StatusCode::METHOD_NOT_ALLOWED, "bogus probe method").into_response()
    }
}

/// Captive-portal check: 204, echoing a well-formed challenge as `response <challenge>`.
async fn no_content(headers: HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let challenge = headers.get(CHALLENGE_HEADER).and_then(|v| v.to_str().ok());
    if let Some(c) = challenge.filter(|c| is_valid_challenge(c))
        && let Ok(v) = HeaderValue::try_from(format!("response {c}"))
    {
        resp.headers_mut().insert(RESPONSE_HEADER, v);
    }
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate, no-transform, max-age=0"),
    );
    resp
}

fn is_valid_challenge(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | ':'))
}

/// The part of a WebSocket message the byte-stream adapter cares about.
pub enum WsPayload {
    Bytes(Bytes),
    Ignore,
    Close,
    Text,
}

/// A WebSocket message type that can carry a byte stream in binary messages.
pub trait WsMessage: Sized {
    fn binary(data: Bytes) -> Self;
    fn payload(self) -> WsPayload;
}

impl WsMessage for Message {
    fn binary(data: Bytes) -> Self {
        Message::Binary(data)
    }

    fn payload(self) -> WsPayload {
        match self {
            Message::Binary(b) => WsPayload::Bytes(b),
            Message::Ping(_) | Message::Pong(_) => WsPayload::Ignore,
            Message::Close(_) => WsPayload::Close,
            Message::Text(_) => WsPayload::Text,
        }
    }
}

/// A byte stream over WebSocket binary messages (message boundaries carry no meaning).
pub struct WsStream<S, M> {
    inner: S,
    pending: Bytes,
    _message: PhantomData<fn() -> M>,
}

impl<S, M> WsStream<S, M> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Bytes::new(),
            _message: PhantomData,
        }
    }
}

impl<S, M, E> AsyncRead for WsStream<S, M>
where
    S: Stream<Item = Result<M, E>> + Unpin,
    M: WsMessage,
    E: std::error::Error + Send + Sync + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                Some(Ok(m)) => match m.payload() {
                    WsPayload::Bytes(b) => this.pending = b,
                    WsPayload::Ignore => {}
                    WsPayload::Close => return Poll::Ready(Ok(())),
                    WsPayload::Text => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "this WebSocket carries binary messages only, got a text message",
                        )));
                    }
                },
            }
        }
    }
}

impl<S, M, E> AsyncWrite for WsStream<S, M>
where
    S: Sink<M, Error = E> + Unpin,
    M: WsMessage,
    E: std::error::Error + Send + Sync + 'static,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_ready(cx)).map_err(io::Error::other)?;
        Pin::new(&mut this.inner)
            .start_send(M::binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::DerpConfig;
    use headway_proto::keys::PrivateKey;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app() -> Router {
        router(Arc::new(DerpServer::new(
            PrivateKey::generate(),
            DerpConfig::default(),
        )))
    }

    async fn call(req: http::Request<Body>) -> Response {
        app().oneshot(req).await.unwrap()
    }

    fn get(uri: &str) -> http::Request<Body> {
        http::Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn probes_answer_get_and_head_with_cors_and_refuse_other_methods() {
        for path in ["/derp/probe", "/derp/latency-check"] {
            for method in [Method::GET, Method::HEAD] {
                let req = http::Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .body(Body::empty())
                    .unwrap();
                let resp = call(req).await;
                assert_eq!(resp.status(), StatusCode::OK, "{method} {path}");
                assert_eq!(resp.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            }
            let req = http::Request::post(path).body(Body::empty()).unwrap();
            assert_eq!(call(req).await.status(), StatusCode::METHOD_NOT_ALLOWED);
        }
    }

    #[tokio::test]
    async fn derp_without_upgrade_is_426() {
        let resp = call(get("/derp")).await;
        assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"DERP requires connection upgrade");
        let req = http::Request::get("/derp")
            .header(UPGRADE, "h2c")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(req).await.status(), StatusCode::UPGRADE_REQUIRED);
    }

    #[tokio::test]
    async fn derp_upgrade_on_a_connection_that_cannot_upgrade_is_426() {
        // oneshot has no underlying connection, so there is nothing to take over.
        let req = http::Request::get("/derp")
            .header(UPGRADE, "DERP")
            .header(CONNECTION, "Upgrade")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(req).await.status(), StatusCode::UPGRADE_REQUIRED);
    }

    impl WsMessage for tokio_tungstenite::tungstenite::Message {
        fn binary(data: Bytes) -> Self {
            Self::Binary(data)
        }

        fn payload(self) -> WsPayload {
            match self {
                Self::Binary(b) => WsPayload::Bytes(b),
                Self::Close(_) => WsPayload::Close,
                Self::Text(_) => WsPayload::Text,
                Self::Ping(_) | Self::Pong(_) | Self::Frame(_) => WsPayload::Ignore,
            }
        }
    }

    /// Serves the router on plain HTTP the way `axum::serve` does for the main listener.
    async fn serve_plain(server: Arc<DerpServer>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(server).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn websocket_and_plain_upgrade_clients_relay_to_each_other() {
        use crate::client::{ClientOptions, DerpClient, ReceivedMessage};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;

        let server = Arc::new(DerpServer::new(
            PrivateKey::generate(),
            DerpConfig::default(),
        ));
        let addr = serve_plain(server.clone()).await;
        let options = ClientOptions::default();

        let kb = PrivateKey::generate();
        let mut b = DerpClient::connect(&format!("http://{addr}/derp"), &kb, None, &options)
            .await
            .unwrap();

        let mut req = format!("ws://{addr}/derp").into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("derp"));
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], "derp");
        let ka = PrivateKey::generate();
        let stream = WsStream::<_, tokio_tungstenite::tungstenite::Message>::new(ws);
        let mut a = DerpClient::handshake(stream, &ka, &options).await.unwrap();

        a.send(&kb.node_public(), b"over websocket").await.unwrap();
        let got = b.recv().await.unwrap();
        let want = ReceivedMessage::Packet {
            source: ka.node_public(),
            data: Bytes::from_static(b"over websocket"),
        };
        assert_eq!(got, want);
        b.send(&ka.node_public(), &[3u8; 40_000]).await.unwrap();
        let got = a.recv().await.unwrap();
        let want = ReceivedMessage::Packet {
            source: kb.node_public(),
            data: Bytes::from(vec![3u8; 40_000]),
        };
        assert_eq!(got, want);
        assert_eq!(server.stats().connections_current, 2);

        // Without the derp subprotocol the upgrade is refused.
        let req = format!("ws://{addr}/derp").into_client_request().unwrap();
        assert!(tokio_tungstenite::connect_async(req).await.is_err());
    }

    #[tokio::test]
    async fn captive_portal_check_echoes_valid_challenges_only() {
        let req = http::Request::get("/generate_204")
            .header("X-Tailscale-Challenge", "abc.DEF-1_2:3")
            .body(Body::empty())
            .unwrap();
        let resp = call(req).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(resp.headers()[RESPONSE_HEADER], "response abc.DEF-1_2:3");
        let req = http::Request::get("/generate_204")
            .header("X-Tailscale-Challenge", "bad challenge!")
            .body(Body::empty())
            .unwrap();
        let resp = call(req).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert!(resp.headers().get(RESPONSE_HEADER).is_none());
        assert!(!is_valid_challenge(&"a".repeat(65)));
    }
}

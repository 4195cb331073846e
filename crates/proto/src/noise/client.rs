//! The client side around the transport, behaving like the official client:
//! `GET /key`, the `POST /ts2021` upgrade, the early payload and HTTP/2 with
//! prior knowledge inside the Noise stream.
//!
//! Used by the load generator and the protocol tests; the server never dials.
//! Only `http://` server URLs are supported (the official client also dials
//! plain HTTP first, and only plain HTTP for loopback and private addresses).

use std::io;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::handshake::{ClientHandshake, HandshakeError};
use super::stream::NoiseStream;
use super::{HANDSHAKE_HEADER, UPGRADE_PATH, UPGRADE_PROTOCOL};
use crate::keys::{MachinePublic, PrivateKey};
use crate::tailcfg::{EarlyNoise, OverTlsPublicKeyResponse};

/// The official client reads at most this much of a `/key` answer.
const KEY_RESPONSE_LIMIT: usize = 64 << 10;
/// How much of an unexpected HTTP answer's body goes into the error.
const ERROR_BODY_LIMIT: usize = 1 << 10;

/// Why talking to the control server failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("server URL {url:?} cannot be dialled: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("connecting to {addr} failed: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("building the request failed: {0}")]
    Request(#[from] http::Error),
    #[error("HTTP exchange with the control server failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("reading the response body failed: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{request} answered {status}, expected {expected}: {body:?}")]
    Status {
        request: String,
        status: StatusCode,
        expected: StatusCode,
        body: String,
    },
    #[error("server switched to protocol {0:?}; expected \"tailscale-control-protocol\"")]
    UnexpectedProtocol(String),
    #[error("Noise handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("reading the early payload failed: {0}")]
    EarlyPayload(#[source] io::Error),
    #[error("the /key answer is not the expected JSON: {0}")]
    KeyJson(#[source] serde_json::Error),
    #[error(
        "the server sent no Noise key in /key (publicKey missing or zero); it cannot speak ts2021"
    )]
    NoNoiseKey,
}

/// The Noise stream of a client connection (over an HTTP/1.1 upgrade).
pub type ClientStream = NoiseStream<TokioIo<Upgraded>>;

/// A dialled, handshaken control connection, ready for HTTP/2.
#[derive(Debug)]
pub struct Dialed {
    pub stream: ClientStream,
    /// What the server sent before HTTP/2, if anything.
    pub early_payload: Option<EarlyNoise>,
    /// `host[:port]` of the server URL, used as the HTTP/2 `:authority`.
    pub authority: String,
}

impl Dialed {
    /// Starts HTTP/2 on the connection.
    pub async fn http2(self) -> Result<ControlClient, DialError> {
        ControlClient::handshake(self.stream, &self.authority).await
    }
}

/// Where a server URL points.
struct Target {
    authority: String,
    host: String,
    port: u16,
}

fn parse_server_url(url: &str) -> Result<Target, DialError> {
    let bad = |reason| DialError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// URLs are supported by this client"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        port: authority.port_u16().unwrap_or(80),
    })
}

async fn connect(target: &Target) -> Result<TcpStream, DialError> {
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| DialError::Connect {
            addr: addr.clone(),
            source,
        })?;
    // Control traffic is small request/response exchanges; like Go, don't
    // let Nagle hold them back.
    tcp.set_nodelay(true)
        .map_err(|source| DialError::Connect { addr, source })?;
    Ok(tcp)
}

/// Reads (a bounded part of) an unexpected response into an error.
async fn status_error(
    request: String,
    expected: StatusCode,
    response: Response<Incoming>,
) -> DialError {
    let status = response.status();
    let body = match Limited::new(response.into_body(), ERROR_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    DialError::Status {
        request,
        status,
        expected,
        body,
    }
}

/// Fetches the server's Noise public key from `GET /key?v=<capability_version>`.
pub async fn fetch_server_key(
    server_url: &str,
    capability_version: u16,
) -> Result<MachinePublic, DialError> {
    let target = parse_server_url(server_url)?;
    let tcp = connect(&target).await?;
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp)).await?;
    let path = format!("/key?v={capability_version}");
    let request = Request::get(path.as_str())
        .header(header::HOST, target.authority.as_str())
        .body(Empty::new())?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(format!("GET {path}"), StatusCode::OK, response).await);
        }
        let body = Limited::new(response.into_body(), KEY_RESPONSE_LIMIT)
            .collect()
            .await
            .map_err(DialError::Body)?
            .to_bytes();
        drop(sender); // lets the connection close once the answer is in
        Ok(body)
    };
    let (body, ()) = tokio::try_join!(exchange, async {
        connection.await.map_err(DialError::Http)
    })?;
    let answer: OverTlsPublicKeyResponse =
        serde_json::from_slice(&body).map_err(DialError::KeyJson)?;
    if answer.public_key.is_zero() {
        return Err(DialError::NoNoiseKey);
    }
    Ok(answer.public_key)
}

/// Dials `server_url` (`http://host[:port]`, path ignored) as the official
/// client does: `POST /ts2021` with the initiation in `X-Tailscale-Handshake`,
/// `101` with exactly `Upgrade: tailscale-control-protocol`, the Noise
/// response (or the server's error frame, returned as
/// [`HandshakeError::Refused`]), then the optional early payload.
///
/// There is no timeout here: wrap the call in `tokio::time::timeout` (the
/// official client allows about 10 s).
pub async fn dial(
    server_url: &str,
    machine_key: &PrivateKey,
    server_key: &MachinePublic,
    protocol_version: u16,
) -> Result<Dialed, DialError> {
    let target = parse_server_url(server_url)?;
    let handshake = ClientHandshake::new(machine_key, server_key, protocol_version)?;
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        handshake.initiation(),
    );

    let tcp = connect(&target).await?;
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp)).await?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(UPGRADE_PATH)
        .header(header::HOST, target.authority.as_str())
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .header(header::CONNECTION, "upgrade")
        .header(HANDSHAKE_HEADER, encoded)
        .header(header::CONTENT_LENGTH, "0")
        .body(Empty::new())?;
    let upgrade = async {
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(status_error(
                format!("POST {UPGRADE_PATH}"),
                StatusCode::SWITCHING_PROTOCOLS,
                response,
            )
            .await);
        }
        // The Go client compares the value exactly, so we do too.
        let protocol = response
            .headers()
            .get(header::UPGRADE)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if protocol != UPGRADE_PROTOCOL.as_bytes() {
            return Err(DialError::UnexpectedProtocol(
                String::from_utf8_lossy(protocol).into_owned(),
            ));
        }
        Ok(hyper::upgrade::on(response).await?)
    };
    let ((), upgraded) = tokio::try_join!(
        async { connection.with_upgrades().await.map_err(DialError::Http) },
        upgrade
    )?;

    // Bytes the server sent right behind the 101 are kept inside `Upgraded`.
    let mut stream = handshake.finish_on(TokioIo::new(upgraded)).await?;
    let early_payload = stream
        .read_early_payload()
        .await
        .map_err(DialError::EarlyPayload)?;
    Ok(Dialed {
        stream,
        early_payload,
        authority: target.authority,
    })
}

/// An HTTP/2 client over a Noise stream, sending requests the way the
/// official client does (`https://<authority><path>`, no content type).
///
/// Clones share the connection; the connection closes when the last clone
/// (and every response body) is dropped.
#[derive(Debug, Clone)]
pub struct ControlClient {
    sender: http2::SendRequest<Full<Bytes>>,
    authority: String,
}

impl ControlClient {
    /// Starts HTTP/2 (prior knowledge) on `stream`; the connection is driven
    /// by a spawned task. If the early payload was not read first, its bytes
    /// reach HTTP/2 and the connection fails.
    pub async fn handshake<T>(stream: NoiseStream<T>, authority: &str) -> Result<Self, DialError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) =
            http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        // Its error also reaches every pending and later request.
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority: authority.to_string(),
        })
    }

    /// POSTs `body` to `path` (e.g. `/machine/map`) and returns the response
    /// head; the body streams as it arrives.
    pub async fn post(
        &mut self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<Response<Incoming>, DialError> {
        let request = Request::post(format!("https://{}{path}", self.authority))
            .body(Full::new(body.into()))?;
        self.send(request).await
    }

    /// Sends any request (relative URIs are not completed: use an absolute one).
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, DialError> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// The `:authority` requests are sent with.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use hyper::service::service_fn;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::keys::ChallengePublic;
    use crate::noise::{ServerHandshake, accept, decode_handshake_header, error_frame};

    const CHALLENGE: ChallengePublic = ChallengePublic([5; 32]);
    const BIG_LEN: usize = 3 << 20;

    fn big_body() -> Bytes {
        (0..BIG_LEN)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    /// The control endpoints of the tests: echo, and a large answer like a
    /// full map for a big tailnet.
    async fn control_endpoint(
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let path = request.uri().path().to_string();
        let body = request.into_body().collect().await?.to_bytes();
        let answer = match path.as_str() {
            "/machine/big" => big_body(),
            _ => Bytes::from(format!("{path}:{}", String::from_utf8_lossy(&body))),
        };
        Ok(Response::new(Full::new(answer)))
    }

    /// What the server side does after the upgrade: early payload (optional),
    /// then HTTP/2 on the Noise stream.
    async fn serve_noise<T>(handshake: ServerHandshake, io: T, early: bool)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut stream = handshake.into_stream(io);
        if early {
            let payload = EarlyNoise {
                node_key_challenge: CHALLENGE,
            };
            stream.write_early_payload(&payload).await.unwrap();
        }
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service_fn(control_endpoint))
            .await
            .unwrap();
    }

    async fn http2_over_duplex(early: bool) {
        let server_key = PrivateKey::generate();
        let machine_key = PrivateKey::generate();
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let handshake =
            ClientHandshake::new(&machine_key, &server_key.machine_public(), 133).unwrap();
        let accepted = accept(&server_key, handshake.initiation()).unwrap();
        assert_eq!(accepted.machine_key(), machine_key.machine_public());
        tokio::spawn(serve_noise(accepted, server_io, early));

        let mut stream = handshake.finish_on(client_io).await.unwrap();
        let payload = stream.read_early_payload().await.unwrap();
        assert_eq!(
            payload.map(|p| p.node_key_challenge),
            early.then_some(CHALLENGE)
        );
        let mut client = ControlClient::handshake(stream, "control.example")
            .await
            .unwrap();

        let response = client
            .post("/machine/register", r#"{"Version":133}"#)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"/machine/register:{"Version":133}"#);

        // A large request and a large answer, on two streams at once.
        let mut second = client.clone();
        let large_request = vec![b'x'; 1 << 20];
        let (echo, big) = tokio::join!(
            client.post("/machine/map", large_request),
            second.post("/machine/big", "")
        );
        let echo = echo
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(echo.len(), "/machine/map:".len() + (1 << 20));
        let big = big.unwrap().into_body().collect().await.unwrap().to_bytes();
        assert!(big == big_body(), "large answer differs");
    }

    #[tokio::test]
    async fn http2_over_noise_with_early_payload() {
        http2_over_duplex(true).await;
    }

    #[tokio::test]
    async fn http2_over_noise_without_early_payload() {
        // The 9 bytes peeked for the magic must reach HTTP/2 intact.
        http2_over_duplex(false).await;
    }

    /// A minimal HTTP/1.1 front door like the server's: `/key` and the
    /// `/ts2021` upgrade. Capability versions pick failure modes: 1 → 400,
    /// 2 → a wrong `Upgrade` value, below 109 → an error frame.
    async fn front_door(
        request: Request<Incoming>,
        key: Arc<PrivateKey>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let reply = |status: StatusCode, body: &str| {
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = status;
            Ok(response)
        };
        match request.uri().path() {
            "/key" => {
                let json = format!(
                    r#"{{"legacyPublicKey":"{}","publicKey":"{}"}}"#,
                    MachinePublic::ZERO,
                    key.machine_public()
                );
                reply(StatusCode::OK, &json)
            }
            UPGRADE_PATH => {
                let Some(header) = request.headers().get(HANDSHAKE_HEADER) else {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "missing Tailscale handshake header",
                    );
                };
                if request.headers().get(header::UPGRADE).map(|v| v.as_bytes())
                    != Some(UPGRADE_PROTOCOL.as_bytes())
                {
                    return reply(StatusCode::BAD_REQUEST, "unknown next protocol");
                }
                let Ok(initiation) = decode_handshake_header(header.as_bytes()) else {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "invalid tailscale handshake header",
                    );
                };
                let version = u16::from_be_bytes([initiation[0], initiation[1]]);
                if version == 1 {
                    return reply(StatusCode::BAD_REQUEST, "go away");
                }
                let accepted = accept(&key, &initiation);
                let upgrade = hyper::upgrade::on(request);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(upgrade.await.unwrap());
                    match accepted {
                        Ok(handshake) if handshake.protocol_version() >= 109 => {
                            serve_noise(handshake, io, true).await
                        }
                        Ok(_) => io.write_all(&error_frame("client too old")).await.unwrap(),
                        Err(e) => io.write_all(&error_frame(&e.to_string())).await.unwrap(),
                    }
                });
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let protocol = if version == 2 {
                    "websocket"
                } else {
                    UPGRADE_PROTOCOL
                };
                response
                    .headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static(protocol));
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                Ok(response)
            }
            _ => reply(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Starts the front door on a free loopback port; returns its URL and key.
    async fn start_server() -> (String, MachinePublic) {
        let key = Arc::new(PrivateKey::generate());
        let public = key.machine_public();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let key = key.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| front_door(request, key.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        (url, public)
    }

    #[tokio::test]
    async fn fetch_key_dial_and_talk_http2() {
        let (url, server_key) = start_server().await;
        assert_eq!(fetch_server_key(&url, 133).await.unwrap(), server_key);
        let machine_key = PrivateKey::generate();
        let dialed = dial(&url, &machine_key, &server_key, 133).await.unwrap();
        assert_eq!(
            dialed.early_payload.as_ref().map(|p| p.node_key_challenge),
            Some(CHALLENGE)
        );
        assert_eq!(dialed.authority, url.trim_start_matches("http://"));
        let mut client = dialed.http2().await.unwrap();
        let response = client.post("/machine/register", "{}").await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"/machine/register:{}");
        let big = client
            .post("/machine/big", "")
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(big.len(), BIG_LEN);
    }

    #[tokio::test]
    async fn dial_reports_the_servers_refusals() {
        let (url, server_key) = start_server().await;
        let machine_key = PrivateKey::generate();

        let err = dial(&url, &machine_key, &server_key, 100)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DialError::Handshake(HandshakeError::Refused(text)) if text == "client too old"),
            "{err}"
        );

        let err = dial(
            &url,
            &machine_key,
            &PrivateKey::generate().machine_public(),
            133,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, DialError::Handshake(HandshakeError::Refused(text)) if text.contains("cannot decrypt")),
            "{err}"
        );

        let err = dial(&url, &machine_key, &server_key, 1).await.unwrap_err();
        assert!(
            matches!(&err, DialError::Status { status: StatusCode::BAD_REQUEST, body, .. } if body == "go away"),
            "{err}"
        );

        let err = dial(&url, &machine_key, &server_key, 2).await.unwrap_err();
        assert!(
            matches!(&err, DialError::UnexpectedProtocol(p) if p == "websocket"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_urls_and_missing_keys() {
        assert!(matches!(
            fetch_server_key("https://example.com", 133).await,
            Err(DialError::BadUrl { .. })
        ));
        assert!(matches!(
            fetch_server_key("not a url", 133).await,
            Err(DialError::BadUrl { .. })
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        assert!(matches!(
            fetch_server_key(&url, 133).await,
            Err(DialError::Connect { .. })
        ));

        // A /key answer without a Noise key.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = service_fn(|_request: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(br#"{"legacyPublicKey":"mkey:0000000000000000000000000000000000000000000000000000000000000000","publicKey":"mkey:0000000000000000000000000000000000000000000000000000000000000000"}"#))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        let err = fetch_server_key(&url, 133).await.unwrap_err();
        assert!(matches!(err, DialError::NoNoiseKey), "{err}");
    }
}

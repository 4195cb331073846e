//! A DERP client: dials `https://host:port/derp` (or speaks over any stream),
//! logs in with a node key, sends packets to node keys and receives what the
//! server relays. Used by tests, and by mesh links between Headway replicas.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use headway_proto::keys::{NodePublic, PrivateKey};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
    ReadHalf, WriteHalf,
};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use crate::frame::{
    self, FrameType, KEY_LEN, MAGIC, MAX_PACKET_SIZE, MAX_SERVER_FRAME_LEN, NONCE_LEN,
    PROTOCOL_VERSION, PeerGoneReason,
};
use crate::handshake::{self, BoxError, ClientInfo, MeshKey, ServerInfo};

/// Largest HTTP response head accepted before the switch to DERP.
const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// How a client presents itself.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Makes the client a mesh peer (or privileged watcher) of the server.
    pub mesh_key: Option<MeshKey>,
    pub can_ack_pings: bool,
    pub is_prober: bool,
    /// Bound on dialing, TLS, the HTTP upgrade and the DERP handshake together.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            mesh_key: None,
            can_ack_pings: true,
            is_prober: false,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a DERP client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("DERP connection I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("DERP URL {0:?} is not http(s)://host[:port]/path")]
    BadUrl(String),
    #[error("DERP URL {0:?} uses https but no TLS client configuration was given")]
    NoTlsConfig(String),
    #[error("DERP host {0:?} is not a valid TLS server name")]
    BadServerName(String),
    #[error("connecting to the DERP server took longer than {0:?}")]
    Timeout(Duration),
    #[error("DERP server answered {0:?} instead of \"101 Switching Protocols\"")]
    UpgradeRefused(String),
    #[error("DERP server sent a malformed HTTP response head")]
    BadResponseHead,
    #[error("DERP server did not start with a valid server-key frame")]
    BadGreeting,
    #[error("DERP server closed the connection during the handshake (is this node key admitted?)")]
    ClosedDuringHandshake,
    #[error("DERP server sent frame type {got:#04x} where {want:#04x} was expected")]
    UnexpectedFrame { got: u8, want: u8 },
    #[error("DERP ServerInfo does not open with the server key: {0}")]
    ServerInfoSeal(BoxError),
    #[error("DERP ServerInfo is not valid JSON: {0}")]
    ServerInfoJson(serde_json::Error),
    #[error("DERP server sent a frame of {0} bytes, more than the 1 MiB limit")]
    FrameTooLarge(u32),
    #[error("packet of {0} bytes exceeds the DERP limit of 65536 bytes")]
    PacketTooLarge(usize),
}

/// Something the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivedMessage {
    /// A packet relayed from `source`.
    Packet {
        source: NodePublic,
        data: Bytes,
    },
    /// `peer` is not reachable through this server.
    PeerGone {
        peer: NodePublic,
        reason: PeerGoneReason,
    },
    /// (Mesh watchers) `peer` connected to the server.
    PeerPresent {
        peer: NodePublic,
        addr: Option<std::net::SocketAddr>,
        flags: u8,
    },
    KeepAlive,
    /// The server pinged; the client has already answered.
    Ping([u8; 8]),
    Pong([u8; 8]),
    /// A problem with this connection (empty: healthy again).
    Health(String),
    /// The server is restarting: reconnect after `reconnect_in`, keep trying for `try_for`.
    Restarting {
        reconnect_in: Duration,
        try_for: Duration,
    },
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}
type BoxedStream = Box<dyn Stream>;
type Reader = BufReader<ReadHalf<BoxedStream>>;
type Writer = BufWriter<WriteHalf<BoxedStream>>;

/// A logged-in DERP connection. Receive with [`DerpClient::recv`]; send from
/// anywhere through [`DerpClient::sender`].
pub struct DerpClient {
    reader: Reader,
    sender: DerpSender,
    server_key: NodePublic,
    public_key: NodePublic,
    server_info: ServerInfo,
}

impl std::fmt::Debug for DerpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerpClient")
            .field("public_key", &self.public_key)
            .field("server_key", &self.server_key)
            .finish_non_exhaustive()
    }
}

impl DerpClient {
    /// Dials `url` (`https://host[:port]/derp`, or `http://` for plain-HTTP
    /// relays), upgrades to DERP and logs in as `private_key`'s node key.
    pub async fn connect(
        url: &str,
        private_key: &PrivateKey,
        tls: Option<Arc<ClientConfig>>,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let bad_url = || ClientError::BadUrl(url.to_string());
        let uri: http::Uri = url.parse().map_err(|_| bad_url())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url()),
        };
        let authority = uri.authority().ok_or_else(bad_url)?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = match uri.path() {
            "" | "/" => crate::http::DERP_PATH,
            p => p,
        };

        let limit = options.connect_timeout;
        let dial = async {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream: BoxedStream = if https {
                let tls = tls.ok_or_else(|| ClientError::NoTlsConfig(url.to_string()))?;
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| ClientError::BadServerName(host.clone()))?;
                Box::new(TlsConnector::from(tls).connect(name, tcp).await?)
            } else {
                Box::new(tcp)
            };
            Self::upgrade_boxed(stream, authority.as_str(), path, private_key, options).await
        };
        tokio::time::timeout(limit, dial)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// Sends the HTTP upgrade request over `stream` (already TLS if needed) and logs in.
    pub async fn upgrade<S>(
        stream: S,
        host: &str,
        private_key: &PrivateKey,
        options: &ClientOptions,
    ) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::upgrade_boxed(
            Box::new(stream),
            host,
            crate::http::DERP_PATH,
            private_key,
            options,
        )
        .await
    }

    /// Logs in over a stream that already speaks DERP (the server talks first).
    pub async fn handshake<S>(
        stream: S,
        private_key: &PrivateKey,
        options: &ClientOptions,
    ) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(Box::new(stream) as BoxedStream);
        Self::login(BufReader::new(rd), BufWriter::new(wr), private_key, options).await
    }

    async fn upgrade_boxed(
        stream: BoxedStream,
        host: &str,
        path: &str,
        private_key: &PrivateKey,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let (rd, wr) = tokio::io::split(stream);
        let mut writer = BufWriter::new(wr);
        // The same request the official client writes.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n"
        );
        writer.write_all(request.as_bytes()).await?;
        writer.flush().await?;

        // Bytes after the response head are DERP; the buffered reader keeps them.
        let mut reader = BufReader::new(rd);
        let mut line = Vec::new();
        let mut head_len = reader.read_until(b'\n', &mut line).await?;
        let status = String::from_utf8_lossy(&line).trim_end().to_string();
        if status.split_whitespace().nth(1) != Some("101") {
            return Err(ClientError::UpgradeRefused(status));
        }
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).await?;
            head_len += n;
            if n == 0 || head_len > MAX_RESPONSE_HEAD {
                return Err(ClientError::BadResponseHead);
            }
            if line == b"\r\n" || line == b"\n" {
                break;
            }
        }
        Self::login(reader, writer, private_key, options).await
    }

    async fn login(
        mut reader: Reader,
        mut writer: Writer,
        private_key: &PrivateKey,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let (t, len) = frame::read_header(&mut reader)
            .await
            .map_err(|_| ClientError::BadGreeting)?;
        if t != FrameType::SERVER_KEY || !(40..=1024).contains(&len) {
            return Err(ClientError::BadGreeting);
        }
        let mut greeting = vec![0u8; len as usize];
        reader.read_exact(&mut greeting).await?;
        if greeting[..MAGIC.len()] != MAGIC {
            return Err(ClientError::BadGreeting);
        }
        let server_key = frame::key_at(&greeting, MAGIC.len()).ok_or(ClientError::BadGreeting)?;

        let info = ClientInfo {
            mesh_key: options.mesh_key.clone(),
            version: PROTOCOL_VERSION,
            can_ack_pings: options.can_ack_pings,
            is_prober: options.is_prober,
        };
        let json = serde_json::to_vec(&info).map_err(io::Error::other)?;
        let public_key = private_key.node_public();
        let mut payload = public_key.as_bytes().to_vec();
        payload.extend_from_slice(&handshake::seal(private_key, &server_key, &json));
        frame::write_frame(&mut writer, FrameType::CLIENT_INFO, &payload).await?;
        writer.flush().await?;

        let (t, len) = match frame::read_header(&mut reader).await {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Err(ClientError::ClosedDuringHandshake);
            }
            Err(e) => return Err(e.into()),
        };
        if t != FrameType::SERVER_INFO {
            return Err(ClientError::UnexpectedFrame {
                got: t.0,
                want: FrameType::SERVER_INFO.0,
            });
        }
        if len > MAX_SERVER_FRAME_LEN + NONCE_LEN as u32 {
            return Err(ClientError::FrameTooLarge(len));
        }
        let mut sealed = vec![0u8; len as usize];
        reader.read_exact(&mut sealed).await?;
        let json = handshake::open(private_key, &server_key, &sealed)
            .map_err(ClientError::ServerInfoSeal)?;
        let server_info = serde_json::from_slice(&json).map_err(ClientError::ServerInfoJson)?;

        Ok(Self {
            reader,
            sender: DerpSender {
                writer: Arc::new(Mutex::new(writer)),
            },
            server_key,
            public_key,
            server_info,
        })
    }

    /// The server's key, learnt from its greeting.
    pub fn server_key(&self) -> NodePublic {
        self.server_key
    }

    /// This client's node key (its DERP address).
    pub fn public_key(&self) -> NodePublic {
        self.public_key
    }

    pub fn server_info(&self) -> &ServerInfo {
        &self.server_info
    }

    /// A handle for sending, usable while another task receives.
    pub fn sender(&self) -> DerpSender {
        self.sender.clone()
    }

    /// Shorthand for `sender().send(..)`.
    pub async fn send(&self, dst: &NodePublic, packet: &[u8]) -> Result<(), ClientError> {
        self.sender.send(dst, packet).await
    }

    /// The next message from the server. Pings are answered before they are
    /// returned; frames this version does not know are skipped.
    pub async fn recv(&mut self) -> Result<ReceivedMessage, ClientError> {
        loop {
            let (t, len) = frame::read_header(&mut self.reader).await?;
            if len > MAX_SERVER_FRAME_LEN {
                return Err(ClientError::FrameTooLarge(len));
            }
            let mut buf = BytesMut::zeroed(len as usize);
            self.reader.read_exact(&mut buf).await?;
            let buf = buf.freeze();
            let eight = |b: &Bytes| -> Option<[u8; 8]> { b.get(..8)?.try_into().ok() };
            let msg = match t {
                FrameType::RECV_PACKET => {
                    frame::key_at(&buf, 0).map(|source| ReceivedMessage::Packet {
                        source,
                        data: buf.slice(KEY_LEN..),
                    })
                }
                FrameType::KEEP_ALIVE => Some(ReceivedMessage::KeepAlive),
                FrameType::PEER_GONE => {
                    frame::key_at(&buf, 0).map(|peer| ReceivedMessage::PeerGone {
                        peer,
                        reason: buf.get(KEY_LEN).map_or(PeerGoneReason::Disconnected, |b| {
                            PeerGoneReason::from_byte(*b)
                        }),
                    })
                }
                FrameType::PEER_PRESENT => frame::parse_peer_present(&buf)
                    .map(|(peer, addr, flags)| ReceivedMessage::PeerPresent { peer, addr, flags }),
                FrameType::PING => match eight(&buf) {
                    Some(data) => {
                        self.sender.pong(data).await?;
                        Some(ReceivedMessage::Ping(data))
                    }
                    None => None,
                },
                FrameType::PONG => eight(&buf).map(ReceivedMessage::Pong),
                FrameType::HEALTH => Some(ReceivedMessage::Health(
                    String::from_utf8_lossy(&buf).into_owned(),
                )),
                FrameType::RESTARTING => eight(&buf).map(|b| {
                    let ms = |x: &[u8]| {
                        Duration::from_millis(u64::from(u32::from_be_bytes([
                            x[0], x[1], x[2], x[3],
                        ])))
                    };
                    ReceivedMessage::Restarting {
                        reconnect_in: ms(&b[..4]),
                        try_for: ms(&b[4..]),
                    }
                }),
                _ => None,
            };
            if let Some(msg) = msg {
                return Ok(msg);
            }
        }
    }
}

/// The sending half of a [`DerpClient`]; cheap to clone.
#[derive(Clone)]
pub struct DerpSender {
    writer: Arc<Mutex<Writer>>,
}

impl std::fmt::Debug for DerpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerpSender")
    }
}

impl DerpSender {
    async fn write(&self, t: FrameType, parts: &[&[u8]]) -> Result<(), ClientError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(len).map_err(|_| ClientError::PacketTooLarge(len))?;
        let mut w = self.writer.lock().await;
        w.write_all(&frame::header(t, len)).await?;
        for p in parts {
            w.write_all(p).await?;
        }
        w.flush().await?;
        Ok(())
    }

    /// Relays `packet` to the node with key `dst`.
    pub async fn send(&self, dst: &NodePublic, packet: &[u8]) -> Result<(), ClientError> {
        if packet.len() > MAX_PACKET_SIZE {
            return Err(ClientError::PacketTooLarge(packet.len()));
        }
        self.write(FrameType::SEND_PACKET, &[dst.as_bytes(), packet])
            .await
    }

    /// (Mesh peers) Hands the server a packet from `src` for its client `dst`.
    pub async fn forward(
        &self,
        src: &NodePublic,
        dst: &NodePublic,
        packet: &[u8],
    ) -> Result<(), ClientError> {
        if packet.len() > MAX_PACKET_SIZE {
            return Err(ClientError::PacketTooLarge(packet.len()));
        }
        self.write(
            FrameType::FORWARD_PACKET,
            &[src.as_bytes(), dst.as_bytes(), packet],
        )
        .await
    }

    pub async fn ping(&self, data: [u8; 8]) -> Result<(), ClientError> {
        self.write(FrameType::PING, &[&data]).await
    }

    pub async fn pong(&self, data: [u8; 8]) -> Result<(), ClientError> {
        self.write(FrameType::PONG, &[&data]).await
    }

    /// Tells the server whether it is this client's home relay (statistics only).
    pub async fn note_preferred(&self, preferred: bool) -> Result<(), ClientError> {
        self.write(FrameType::NOTE_PREFERRED, &[&[u8::from(preferred)]])
            .await
    }

    /// (Mesh peers) Subscribes to `PeerPresent`/`PeerGone` for every client of the server.
    pub async fn watch_connections(&self) -> Result<(), ClientError> {
        self.write(FrameType::WATCH_CONNS, &[]).await
    }

    /// (Mesh peers) Asks the server to hang up `peer`.
    pub async fn close_peer(&self, peer: &NodePublic) -> Result<(), ClientError> {
        self.write(FrameType::CLOSE_PEER, &[peer.as_bytes()]).await
    }

    /// Writes raw bytes (tests of how servers treat malformed input).
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<(), ClientError> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await?;
        w.flush().await?;
        Ok(())
    }

    /// Closes the sending direction (the server sees end of stream).
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.writer.lock().await.shutdown().await?;
        Ok(())
    }
}

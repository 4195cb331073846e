//! The CLI's way to the server: the REST API with the API's own wire types,
//! over the server's unix socket (trusted by its file permissions), or over
//! the network to a remote server (`--address`/`cli.address`) with an API
//! key, over TLS (rustls; the system's roots, or `SSL_CERT_FILE`/
//! `SSL_CERT_DIR`; `cli.insecure` skips verification only when set).
//! The CLI never opens the database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use headway_api::Problem;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpStream, UnixStream};

use crate::remote::{Connected, Remote};

/// An error the server answered with; shown as its detail.
#[derive(Debug)]
pub struct ServerError {
    pub detail: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ServerError {}

/// A client of one server: its admin socket, or its address.
#[derive(Debug, Clone)]
pub struct Client {
    way: Way,
    timeout: Duration,
}

#[derive(Debug, Clone)]
enum Way {
    Socket(PathBuf),
    Remote(Remote),
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Client {
            way: Way::Socket(socket.into()),
            timeout,
        }
    }

    /// A client of a remote server (see [`Remote`]).
    pub fn remote(remote: Remote, timeout: Duration) -> Self {
        Client {
            way: Way::Remote(remote),
            timeout,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(Method::POST, path, Some(serde_json::to_vec(body)?))
            .await
    }

    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(Method::PUT, path, Some(serde_json::to_vec(body)?))
            .await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::DELETE, path, None).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let what = format!("{method} {path}");
        let (status, bytes) = tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| {
                anyhow!(
                    "the server did not answer {what} within {:?} (cli.timeout in the config)",
                    self.timeout
                )
            })??;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(problem) => ServerError {
                    detail: problem.detail,
                },
                Err(_) => ServerError {
                    detail: format!(
                        "the server answered {what} with {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                },
            }
            .into());
        }
        serde_json::from_slice(&bytes).with_context(|| {
            format!("the server's answer to {what} is not what this CLI expects (is it the same version?)")
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/json");
        let mut sender = match &self.way {
            Way::Socket(socket) => {
                let stream = UnixStream::connect(socket)
                    .await
                    .map_err(|e| connect_error(socket, e))?;
                request = request.header(header::HOST, "localhost");
                handshake(stream).await?
            }
            Way::Remote(remote) => {
                let tcp = TcpStream::connect((remote.host.as_str(), remote.port))
                    .await
                    .with_context(|| format!("cannot connect to the Headway server at {remote}"))?;
                request = request
                    .header(header::HOST, remote.host_header())
                    .header(header::AUTHORIZATION, remote.authorization()?);
                match remote.connect(tcp).await? {
                    Connected::Tls(tls) => handshake(tls).await?,
                    Connected::Plain(tcp) => handshake(tcp).await?,
                }
            }
        };
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender
            .send_request(request)
            .await
            .context("the request to the server failed")?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the server's answer failed")?
            .to_bytes();
        Ok((status, bytes))
    }
}

async fn handshake<S>(
    stream: S,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the server failed")?;
    // Drives the connection; it ends when `sender` is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn connect_error(socket: &Path, e: std::io::Error) -> anyhow::Error {
    let socket = socket.display();
    match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!(
            "cannot reach the Headway server: socket {socket} not found; is `headway serve` running? \
             (the path is unix_socket in the config; give the server's config with -c)"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow!(
            "no permission to use the socket {socket}; run this as the user that runs `headway serve`, \
             or one in its group (unix_socket_permission in the config)"
        ),
        std::io::ErrorKind::ConnectionRefused => {
            anyhow!("nobody listens on the socket {socket}; is `headway serve` running?")
        }
        _ => anyhow!("cannot connect to the Headway server's socket {socket}: {e}"),
    }
}

/// `text` as one path segment or query value: everything but unreserved
/// characters percent-encoded.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode("alice"), "alice");
        assert_eq!(encode("alice@example.com"), "alice%40example.com");
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode("bö"), "b%C3%B6");
    }

    #[tokio::test]
    async fn a_missing_socket_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("headway.sock");
        let client = Client::new(&socket, Duration::from_secs(1));
        let e = client
            .get::<serde_json::Value>("/api/v1/health")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not found") && e.contains("headway serve"),
            "{e}"
        );
        assert!(e.contains(&socket.display().to_string()), "{e}");
    }
}

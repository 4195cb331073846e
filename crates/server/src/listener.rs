//! The main listener (`listen_addr`), plain or TLS, with the limits that keep
//! one client from holding the server: a deadline for the TLS handshake and
//! for the request head (a slowloris connection sending its headers a byte at
//! a time is closed), a cap on the head's size (431), on HTTP/2 streams and
//! header lists per connection, and on request bodies (413, for routes
//! without a tighter limit of their own). Upgraded connections (`/ts2021`,
//! DERP) leave these timers once upgraded.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From accepting the TCP connection to a finished TLS handshake.
    pub tls_handshake: Duration,
    /// From the first byte of a request (or the connection) to its last header.
    pub header_read: Duration,
    /// Largest HTTP/1 request head in bytes (hyper's read buffer).
    pub max_head_bytes: usize,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_streams: u32,
    /// Largest HTTP/2 header list in bytes.
    pub h2_max_header_list: u32,
    /// Largest request body for routes that set no limit of their own.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            max_head_bytes: 64 * 1024,
            h2_max_streams: 100,
            h2_max_header_list: 64 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// How long open connections may finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let app = app.layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let acceptor = tls.map(TlsAcceptor::from);
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    connections.spawn(connection(acceptor.clone(), tcp, remote, app.clone(), limits, stop.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "listen_addr: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    stop.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
    Ok(())
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(limits.max_head_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(limits.h2_max_header_list)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

async fn connection(
    acceptor: Option<TlsAcceptor>,
    tcp: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    match acceptor {
        None => http(TokioIo::new(tcp), remote, app, limits, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => http(TokioIo::new(tls), remote, app, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(io: I, remote: SocketAddr, app: Router, limits: Limits, stop: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let builder = builder(&limits);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
        let app = Router::new().route("/", get(|| async { "ok" })).route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let sd = CancellationToken::new();
        tokio::spawn(serve(l, None, app, limits, sd.clone()));
        (addr, sd)
    }

    /// Sends `req` and reads until the server closes (or 20 s pass).
    async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_connection_that_never_finishes_its_headers_is_closed() {
        let limits = Limits {
            header_read: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _sd) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The server must close the connection by itself (EOF), not wait for us.
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "a slowloris connection was still open after 20 s"
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains("200 OK"), "{text}");
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let (addr, _sd) = start(Limits::default()).await;
        let big = "a".repeat(200 * 1024);
        let answer = exchange(
            addr,
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused_with_413_and_a_small_one_served() {
        let limits = Limits {
            max_body_bytes: 1000,
            ..Limits::default()
        };
        let (addr, _sd) = start(limits).await;
        let body = "x".repeat(5000);
        let answer = exchange(
            addr,
            format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.200}");
        let answer = exchange(
            addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("3"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn http2_connections_get_the_stream_limit_in_their_settings() {
        let limits = Limits {
            h2_max_streams: 7,
            ..Limits::default()
        };
        let (addr, _sd) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Prior-knowledge HTTP/2: the preface and an empty SETTINGS frame.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(head[3], 4, "the server's first frame is SETTINGS");
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        let settings: Vec<(u16, u32)> = payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect();
        // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
        assert!(settings.contains(&(3, 7)), "{settings:?}");
    }
}

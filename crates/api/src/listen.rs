//! The gRPC listener (`grpc_listen_addr`): HTTP/2 (and HTTP/1.1) over TCP,
//! with TLS when the server has a certificate. Each request carries the
//! client's address ([`ConnectInfo`]) for the guard's per-address limits.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long open connections may finish their calls at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `tls` with the protocols gRPC clients ask for (h2 first).
pub fn grpc_tls(tls: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut config = tls.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Serves `app` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    connections.spawn(connection(acceptor.clone(), tcp, remote, app.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "gRPC listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
    Ok(())
}

async fn connection(
    acceptor: Option<TlsAcceptor>,
    tcp: TcpStream,
    remote: SocketAddr,
    app: Router,
) {
    let _ = tcp.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let result = match acceptor {
        None => builder.serve_connection(TokioIo::new(tcp), service).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => builder.serve_connection(TokioIo::new(tls), service).await,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "gRPC listener: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "gRPC listener: TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "gRPC listener: connection ended with an error");
    }
}

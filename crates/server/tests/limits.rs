//! Limits at the control protocol's doors, against a real server: failed
//! Noise handshakes and refused registrations from one address are answered
//! 429 once its budget is spent, before any handshake work; honest clients
//! elsewhere are unaffected; bodies over the limit are refused with 413 on
//! the main listener, and a connection that never finishes its request head
//! is closed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::Duration;

use headway_config::{Env, Overrides};
use headway_proto::keys::PrivateKey;
use headway_proto::noise::{self, ControlClient};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponse, RegisterResponseAuth};
use headway_server::Server;
use headway_server::control::attempts::BURST;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct TestServer {
    server: Server,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let env: Env = [("HEADWAY_DATA_DIR", dir.path().display().to_string())]
        .into_iter()
        .collect();
    let overrides = Overrides::new()
        .with("server_url", &url)
        .with("listen_addr", format!("127.0.0.1:{port}"))
        .with("derp.server.enabled", "false")
        .with("metrics_listen_addr", "127.0.0.1:0");
    let loaded = headway_config::load(None, &env, &overrides).unwrap();
    let server = Server::start(loaded.config, CancellationToken::new())
        .await
        .unwrap();
    TestServer {
        server,
        url,
        _dir: dir,
    }
}

async fn connect(url: &str) -> Result<ControlClient, noise::DialError> {
    let server_key = noise::fetch_server_key(url, 133).await?;
    let machine = PrivateKey::generate();
    let dialed = tokio::time::timeout(
        Duration::from_secs(10),
        noise::dial(url, &machine, &server_key, 133),
    )
    .await
    .expect("dial timed out")?;
    dialed.http2().await
}

/// A raw `/ts2021` upgrade request with `handshake` as the header; the status.
async fn raw_upgrade(s: &TestServer, handshake: &str) -> (u16, String) {
    let addr = s.server.listen_addr;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /ts2021 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade\r\nX-Tailscale-Handshake: {handshake}\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn failed_handshakes_from_one_address_are_answered_429_before_any_work() {
    let s = start().await;
    // A well-formed header (base64 of 101 bytes) that cannot decrypt.
    let garbage = base64_of(&[0u8; 101]);
    for i in 0..BURST {
        let (status, text) = raw_upgrade(&s, &garbage).await;
        assert_ne!(status, 429, "attempt {i} was limited early: {text}");
    }
    let (status, text) = raw_upgrade(&s, &garbage).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    // The address is now refused even with a correct handshake.
    let Err(err) = connect(&s.url).await else {
        panic!("the limited address got through");
    };
    assert!(format!("{err:?}").contains("429"), "{err:?}");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn register(ctl: &mut ControlClient, authkey: &str) -> (u16, Option<RegisterResponse>) {
    let req = RegisterRequest {
        version: 133,
        node_key: PrivateKey::generate().node_public(),
        auth: Some(RegisterResponseAuth {
            auth_key: authkey.into(),
            ..Default::default()
        }),
        hostinfo: Some(Hostinfo {
            hostname: "guesser".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = ctl
        .post("/machine/register", serde_json::to_vec(&req).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).ok())
}

#[tokio::test]
async fn guessing_auth_keys_is_answered_429_even_on_a_new_connection() {
    let s = start().await;
    let mut ctl = connect(&s.url).await.unwrap();
    let wrong =
        "hskey-auth-000000000000-0000000000000000000000000000000000000000000000000000000000000000";
    for i in 0..BURST {
        let (status, resp) = register(&mut ctl, wrong).await;
        assert_eq!(status, 200, "attempt {i}");
        assert!(resp.unwrap().error.contains("invalid auth key"));
    }
    let (status, _) = register(&mut ctl, wrong).await;
    assert_eq!(status, 429);
    // A new connection from the same address is limited as well.
    let mut again = connect(&s.url).await.unwrap();
    assert_eq!(register(&mut again, wrong).await.0, 429);
    assert!(s.server.tailnet.nodes().is_empty());
}

#[tokio::test]
async fn oversized_bodies_get_413_and_a_slow_head_is_cut_off() {
    let s = start().await;
    let addr = s.server.listen_addr;
    let (_, api_key) = s.server.tailnet.create_api_key(None).await.unwrap();
    // 5 MiB to an API route, with a valid key: refused, not buffered.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/user HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {api_key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        5 << 20
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let _ = tcp.write_all(&vec![b' '; 2 << 20]).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text:.300}");
    assert!(s.server.tailnet.users().is_empty());

    // A head sent a byte at a time, never finished: the server hangs up.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 256];
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a never-finished request head kept its connection for 30 s"
    );
}

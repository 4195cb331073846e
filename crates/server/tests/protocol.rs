//! The control protocol at the wire level, with a client that speaks it the
//! way the official one does (Noise over `/ts2021`, HTTP/2, zstd frames):
//! what each message contains, that changes arrive as deltas, and that bad
//! requests are refused without harm.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::Duration;

use bytes::BytesMut;
use headway_config::{Env, Overrides};
use headway_proto::framing::{self, Compression};
use headway_proto::keys::{DiscoPublic, PrivateKey};
use headway_proto::noise::{self, ControlClient};
use headway_proto::tailcfg::*;
use headway_server::{Server, Timing};
use headway_state::tailnet::{NewPreAuthKey, NewUser};
use http_body_util::BodyExt;
use hyper::body::Incoming;
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
        .with("derp.server.stun_listen_addr", "127.0.0.1:0")
        .with("derp.server.tls_listen_addr", "127.0.0.1:0")
        .with("metrics_listen_addr", {
            // Its own port: parallel tests must not share the default 9090.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("127.0.0.1:{}", l.local_addr().unwrap().port())
        });
    let loaded = headway_config::load(None, &env, &overrides).unwrap();
    let timing = Timing {
        keep_alive: Duration::from_millis(300),
        batch_delay: Duration::from_millis(20),
    };
    let server = Server::start_with(loaded.config, timing, CancellationToken::new())
        .await
        .unwrap();
    TestServer {
        server,
        url,
        _dir: dir,
    }
}

impl TestServer {
    async fn key(&self) -> String {
        let t = &self.server.tailnet;
        let u = match t.resolve_user("alice") {
            Ok(u) => u.id,
            Err(_) => {
                t.create_user(NewUser {
                    name: "alice".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .id
            }
        };
        t.create_preauth_key(NewPreAuthKey {
            user: Some(u),
            reusable: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .1
    }
}

/// A client with its own machine and node keys.
struct Client {
    ctl: ControlClient,
    node: PrivateKey,
    disco: DiscoPublic,
    name: String,
}

async fn connect(url: &str, name: &str, version: u16) -> Result<Client, noise::DialError> {
    let server_key = noise::fetch_server_key(url, version).await?;
    let machine = PrivateKey::generate();
    let dialed = tokio::time::timeout(
        Duration::from_secs(10),
        noise::dial(url, &machine, &server_key, version),
    )
    .await
    .expect("dial timed out")?;
    Ok(Client {
        ctl: dialed.http2().await?,
        node: PrivateKey::generate(),
        disco: PrivateKey::generate().disco_public(),
        name: name.into(),
    })
}

impl Client {
    async fn post(&mut self, path: &str, body: Vec<u8>) -> (u16, Incoming) {
        let resp = self.ctl.post(path, body).await.unwrap();
        (resp.status().as_u16(), resp.into_body())
    }

    async fn register(&mut self, key: &str) -> RegisterResponse {
        let req = RegisterRequest {
            version: 133,
            node_key: self.node.node_public(),
            auth: Some(RegisterResponseAuth {
                auth_key: key.into(),
                ..Default::default()
            }),
            hostinfo: Some(Hostinfo {
                hostname: self.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (status, body) = self
            .post("/machine/register", serde_json::to_vec(&req).unwrap())
            .await;
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn map_request(&self, stream: bool) -> MapRequest {
        MapRequest {
            version: 133,
            compress: "zstd".into(),
            keep_alive: true,
            node_key: self.node.node_public(),
            disco_key: self.disco,
            stream,
            omit_peers: !stream,
            hostinfo: Some(Hostinfo {
                hostname: self.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn stream(&mut self) -> MapStream {
        let req = self.map_request(true);
        let (status, body) = self
            .post("/machine/map", serde_json::to_vec(&req).unwrap())
            .await;
        assert_eq!(status, 200);
        MapStream {
            body,
            buf: BytesMut::new(),
            queue: Vec::new(),
        }
    }

    async fn lite(&mut self, endpoints: &[&str]) -> u16 {
        let mut req = self.map_request(false);
        req.endpoints = endpoints.iter().map(|e| e.parse().unwrap()).collect();
        self.post("/machine/map", serde_json::to_vec(&req).unwrap())
            .await
            .0
    }
}

struct MapStream {
    body: Incoming,
    buf: BytesMut,
    queue: Vec<MapResponse>,
}

impl MapStream {
    /// The next message, keep-alives included.
    async fn next_any(&mut self, within: Duration) -> Option<MapResponse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if !self.queue.is_empty() {
                return Some(self.queue.remove(0));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
                for payload in framing::decode_frames(&mut self.buf, Compression::Zstd).unwrap() {
                    self.queue.push(serde_json::from_slice(&payload).unwrap());
                }
            }
        }
    }

    /// The next message that is not a keep-alive.
    async fn next(&mut self, within: Duration) -> Option<MapResponse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next_any(left).await?;
            if !m.keep_alive {
                return Some(m);
            }
        }
    }
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn first_message_is_a_full_map_and_changes_arrive_as_deltas() {
    let s = start().await;
    let key = s.key().await;
    let mut a = connect(&s.url, "alpha", 133).await.unwrap();
    let reg = a.register(&key).await;
    assert!(reg.machine_authorized && reg.error.is_empty(), "{reg:?}");
    let mut sa = a.stream().await;
    let first = sa.next(SEC).await.expect("a first map");
    let me = first.node.as_ref().expect("the first message carries Node");
    assert_eq!(me.name, "alpha.headway.internal.");
    assert!(me.machine_authorized);
    assert!(first.derp_map.as_ref().unwrap().regions.contains_key(&999));
    assert!(first.packet_filter.is_some());
    assert!(first.peers.is_empty());

    // A node joins: alpha hears of it as PeersChanged within a second.
    let mut b = connect(&s.url, "bravo", 133).await.unwrap();
    b.register(&key).await;
    let m = sa.next(SEC).await.expect("a delta for the new node");
    assert!(m.peers.is_empty(), "a delta, not a full map: {m:?}");
    assert_eq!(m.peers_changed.len(), 1);
    assert_eq!(m.peers_changed[0].name, "bravo.headway.internal.");
    assert!(m.node.is_none());

    // It connects: an online patch.
    let mut sb = b.stream().await;
    let full_b = sb.next(SEC).await.unwrap();
    assert_eq!(full_b.peers.len(), 1);
    assert_eq!(
        full_b.peers[0].online,
        Some(true),
        "alpha is online from bravo's view"
    );
    let m = sa.next(SEC).await.expect("online patch");
    let p = &m.peers_changed_patch;
    assert!(p.iter().any(|c| c.online == Some(true)), "{m:?}");

    // Endpoints change: a patch with the endpoints only.
    assert_eq!(b.lite(&["192.0.2.7:41641"]).await, 200);
    let m = sa.next(SEC).await.expect("endpoint patch");
    assert_eq!(m.peers_changed_patch.len(), 1, "{m:?}");
    assert_eq!(
        m.peers_changed_patch[0].endpoints.as_ref().unwrap()[0].to_string(),
        "192.0.2.7:41641"
    );
    assert!(m.peers_changed.is_empty() && m.peers.is_empty());

    // The same again: nothing but keep-alives.
    assert_eq!(b.lite(&["192.0.2.7:41641"]).await, 200);
    let m = sa
        .next_any(Duration::from_millis(900))
        .await
        .expect("keep-alives keep coming");
    assert!(
        m.keep_alive,
        "an unchanged lite update must not reach peers: {m:?}"
    );

    // Bravo goes away: an offline patch with LastSeen.
    drop(sb);
    drop(b);
    let m = sa
        .next(Duration::from_secs(3))
        .await
        .expect("offline patch");
    let c = &m.peers_changed_patch[0];
    assert_eq!(c.online, Some(false));
    assert!(c.last_seen.is_some());
}

#[tokio::test]
async fn one_shot_map_and_lite_update_shapes() {
    let s = start().await;
    let key = s.key().await;
    let mut a = connect(&s.url, "solo", 133).await.unwrap();
    a.register(&key).await;
    // Non-streaming, peers wanted: exactly one framed full map, then the body ends.
    let mut req = a.map_request(true);
    req.stream = false;
    let (status, body) = a
        .post("/machine/map", serde_json::to_vec(&req).unwrap())
        .await;
    assert_eq!(status, 200);
    let mut bytes = BytesMut::from(&body.collect().await.unwrap().to_bytes()[..]);
    let frames = framing::decode_frames(&mut bytes, Compression::Zstd).unwrap();
    assert_eq!(frames.len(), 1);
    let m: MapResponse = serde_json::from_slice(&frames[0]).unwrap();
    assert!(m.node.is_some());
    // Lite update: 200, empty body.
    assert_eq!(a.lite(&["192.0.2.1:1"]).await, 200);
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let s = start().await;
    let key = s.key().await;
    let mut a = connect(&s.url, "victim", 133).await.unwrap();
    a.register(&key).await;

    let mut m = connect(&s.url, "mallory", 133).await.unwrap();
    // Malformed JSON.
    let (status, body) = m.post("/machine/register", b"{not json".to_vec()).await;
    let text = String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned();
    assert_eq!(status, 400);
    assert!(text.contains("malformed register request"), "{text}");
    // Oversized body.
    let (status, _) = m.post("/machine/map", vec![b' '; 2 << 20]).await;
    assert_eq!(status, 413);
    // Someone else's node key from another machine.
    let mut stolen = a.map_request(true);
    stolen.hostinfo = None;
    let (status, _) = m
        .post("/machine/map", serde_json::to_vec(&stolen).unwrap())
        .await;
    assert_eq!(status, 401);
    // A node key nobody registered.
    let (status, _) = m
        .post(
            "/machine/map",
            serde_json::to_vec(&m.map_request(true)).unwrap(),
        )
        .await;
    assert_eq!(status, 404);
    // An invalid key: 200 with an error the client shows.
    let reg = m.register("hskey-auth-000000000000-0000000000000000000000000000000000000000000000000000000000000000").await;
    assert!(reg.error.contains("invalid auth key"), "{reg:?}");
    // Unknown endpoints.
    let (status, _) = m.post("/machine/nope", b"{}".to_vec()).await;
    assert_eq!(status, 404);

    // Nothing changed; the victim still streams normally.
    assert_eq!(s.server.tailnet.nodes().len(), 1);
    let mut st = a.stream().await;
    assert_eq!(
        st.next(SEC).await.unwrap().node.unwrap().name,
        "victim.headway.internal."
    );
}

#[tokio::test]
async fn clients_older_than_1_78_are_refused_with_a_clear_message() {
    let s = start().await;
    match connect(&s.url, "ancient", 90).await {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("1.78"), "{msg}");
        }
        Ok(_) => panic!("a capver 90 client must be refused"),
    }
    // And a supported one still gets in.
    assert!(connect(&s.url, "fine", 109).await.is_ok());
}

#[tokio::test]
async fn a_new_stream_replaces_the_old_one() {
    let s = start().await;
    let key = s.key().await;
    let mut a = connect(&s.url, "twice", 133).await.unwrap();
    a.register(&key).await;
    let mut first = a.stream().await;
    first.next(SEC).await.unwrap();
    let mut second = a.stream().await;
    second.next(SEC).await.unwrap();
    // The first stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match first.body.frame().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the replaced stream must end");
    assert!(s.server.tailnet.is_online(s.server.tailnet.nodes()[0].id));
}

//! End-to-end tests of the relay: real TLS listener on 127.0.0.1, real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use headway_derp::frame::PeerGoneReason;
use headway_derp::stun;
use headway_derp::tls::pinned_client_config;
use headway_derp::{
    ClientError, ClientOptions, DerpClient, DerpConfig, DerpServer, ForwardError, MeshKey,
    MeshPeer, PacketForwarder, ReceivedMessage, SelfSignedCert, VerifyClient, router,
    run_mesh_link, serve_tls,
};
use headway_proto::keys::{NodePublic, PrivateKey};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(5);

/// A relay served over TLS with a fresh self-signed certificate.
struct Relay {
    server: Arc<DerpServer>,
    url: String,
    addr: SocketAddr,
    pin: Arc<ClientConfig>,
    _stop: oneshot::Sender<()>,
}

impl Relay {
    async fn start(config: DerpConfig) -> Self {
        Self::start_with(DerpServer::new(PrivateKey::generate(), config)).await
    }

    async fn start_with(server: DerpServer) -> Self {
        let server = Arc::new(server);
        let cert = SelfSignedCert::generate(&["127.0.0.1"]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let tls = cert.server_config().unwrap();
        tokio::spawn(serve_tls(
            listener,
            tls,
            router(server.clone()),
            async move {
                let _ = stopped.await;
            },
        ));
        Relay {
            server,
            url: format!("https://127.0.0.1:{}/derp", addr.port()),
            addr,
            pin: pinned_client_config(&cert.cert_name()).unwrap(),
            _stop: stop,
        }
    }

    async fn try_client(
        &self,
        key: &PrivateKey,
        options: &ClientOptions,
    ) -> Result<DerpClient, ClientError> {
        DerpClient::connect(&self.url, key, Some(self.pin.clone()), options).await
    }

    async fn client(&self, key: &PrivateKey) -> DerpClient {
        self.try_client(key, &ClientOptions::default())
            .await
            .unwrap()
    }
}

/// The next message other than a keep-alive.
async fn next(c: &mut DerpClient) -> ReceivedMessage {
    tokio::time::timeout(WAIT, async {
        loop {
            match c.recv().await.unwrap() {
                ReceivedMessage::KeepAlive => continue,
                m => return m,
            }
        }
    })
    .await
    .expect("no message from the DERP server in time")
}

async fn next_packet(c: &mut DerpClient) -> (NodePublic, Bytes) {
    match next(c).await {
        ReceivedMessage::Packet { source, data } => (source, data),
        other => panic!("expected a packet, got {other:?}"),
    }
}

/// Round-trips a ping: everything the server queued before the pong has arrived.
async fn barrier(c: &mut DerpClient) {
    let data = rand::random();
    c.sender().ping(data).await.unwrap();
    assert_eq!(next(c).await, ReceivedMessage::Pong(data));
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn disco_packet() -> Vec<u8> {
    let mut p = b"TS\xF0\x9F\x92\xAC".to_vec();
    p.resize(100, 0xab);
    p
}

#[tokio::test]
async fn two_clients_relay_both_ways_over_pinned_tls() {
    let relay = Relay::start(DerpConfig::default()).await;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = relay.client(&ka).await;
    let mut b = relay.client(&kb).await;
    assert_eq!(a.server_key(), relay.server.public_key());
    assert_eq!(a.server_info().version, 2);

    a.send(&kb.node_public(), b"hello from a").await.unwrap();
    assert_eq!(
        next_packet(&mut b).await,
        (ka.node_public(), Bytes::from_static(b"hello from a"))
    );
    let big = vec![7u8; 64 << 10];
    b.send(&ka.node_public(), &big).await.unwrap();
    assert_eq!(
        next_packet(&mut a).await,
        (kb.node_public(), Bytes::from(big))
    );

    let s = relay.server.stats();
    assert_eq!(s.connections_current, 2);
    assert_eq!(s.packets_received, 2);
    assert_eq!(s.packets_sent, 2);
    assert_eq!(s.bytes_sent, 12 + (64 << 10));
    assert!(relay.server.is_connected(&ka.node_public()));
}

#[tokio::test]
async fn a_wrong_pin_is_refused_by_the_client() {
    let relay = Relay::start(DerpConfig::default()).await;
    let other = SelfSignedCert::generate(&["127.0.0.1"]).unwrap();
    let pin = pinned_client_config(&other.sha256_hex()).unwrap();
    let err = DerpClient::connect(
        &relay.url,
        &PrivateKey::generate(),
        Some(pin),
        &ClientOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Io(_)), "{err}");
}

#[tokio::test]
async fn receivers_hear_peer_gone_when_a_sender_disconnects() {
    let relay = Relay::start(DerpConfig::default()).await;
    let (ka, kb, kc) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let a = relay.client(&ka).await;
    let mut b = relay.client(&kb).await;
    let mut c = relay.client(&kc).await;
    a.send(&kb.node_public(), b"x").await.unwrap();
    next_packet(&mut b).await;
    drop(a);
    assert_eq!(
        next(&mut b).await,
        ReceivedMessage::PeerGone {
            peer: ka.node_public(),
            reason: PeerGoneReason::Disconnected
        }
    );
    // C never received from A: nothing for it.
    barrier(&mut c).await;
    eventually("A is unregistered", || {
        !relay.server.is_connected(&ka.node_public())
    })
    .await;
    assert_eq!(relay.server.stats().peer_gone_disconnected_sent, 1);
}

#[tokio::test]
async fn unknown_destinations_drop_and_only_disco_gets_not_here() {
    let relay = Relay::start(DerpConfig::default()).await;
    let ka = PrivateKey::generate();
    let mut a = relay.client(&ka).await;
    let (nobody, nobody_disco) = (
        PrivateKey::generate().node_public(),
        PrivateKey::generate().node_public(),
    );
    a.send(&nobody, b"data for nobody").await.unwrap();
    a.send(&nobody_disco, &disco_packet()).await.unwrap();
    assert_eq!(
        next(&mut a).await,
        ReceivedMessage::PeerGone {
            peer: nobody_disco,
            reason: PeerGoneReason::NotHere
        }
    );
    let s = relay.server.stats();
    assert_eq!(s.packets_dropped_unknown_dest, 2);
    assert_eq!(s.peer_gone_not_here_sent, 1);

    // Rate limited: a burst of disco packets gets at most the remaining burst of answers.
    for _ in 0..10 {
        a.send(&nobody_disco, &disco_packet()).await.unwrap();
    }
    a.sender().ping([5; 8]).await.unwrap();
    let mut not_here = 0;
    loop {
        match next(&mut a).await {
            ReceivedMessage::PeerGone {
                reason: PeerGoneReason::NotHere,
                ..
            } => not_here += 1,
            ReceivedMessage::Pong(d) if d == [5; 8] => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        (1..=3).contains(&not_here),
        "{not_here} NotHere answers to a burst of 10"
    );
    assert_eq!(relay.server.stats().packets_dropped_unknown_dest, 12);
}

#[tokio::test]
async fn the_verify_hook_refuses_unknown_node_keys() {
    let allowed = PrivateKey::generate();
    let allowed_key = allowed.node_public();
    let server = DerpServer::new(PrivateKey::generate(), DerpConfig::default())
        .with_verifier(move |k: &NodePublic| *k == allowed_key);
    let relay = Relay::start_with(server).await;

    let stranger = PrivateKey::generate();
    let err = relay
        .try_client(&stranger, &ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ClosedDuringHandshake), "{err}");
    assert_eq!(relay.server.stats().clients_rejected, 1);
    assert!(!relay.server.is_connected(&stranger.node_public()));

    let mut ok = relay.client(&allowed).await;
    barrier(&mut ok).await;
}

struct SlowVerifier;

impl VerifyClient for SlowVerifier {
    fn verify(
        &self,
        _client: headway_derp::ClientIdentity,
    ) -> futures::future::BoxFuture<'_, bool> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            true
        })
    }
}

#[tokio::test]
async fn a_verify_hook_that_does_not_answer_refuses() {
    let config = DerpConfig {
        verify_timeout: Duration::from_millis(200),
        ..DerpConfig::default()
    };
    let relay = Relay::start_with(
        DerpServer::new(PrivateKey::generate(), config).with_verifier(SlowVerifier),
    )
    .await;
    let err = relay
        .try_client(&PrivateKey::generate(), &ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ClosedDuringHandshake), "{err}");
}

#[tokio::test]
async fn junk_and_stalled_handshakes_do_not_stop_later_clients() {
    let config = DerpConfig {
        handshake_timeout: Duration::from_millis(300),
        ..DerpConfig::default()
    };
    let relay = Relay::start(config).await;

    // Garbage instead of a TLS ClientHello.
    let mut junk = TcpStream::connect(relay.addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\x00\xff\xfe garbage\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, junk.read_to_end(&mut sink))
        .await
        .expect("junk connection not closed");

    // A TCP connection that never starts TLS stays open meanwhile.
    let _idle = TcpStream::connect(relay.addr).await.unwrap();

    // A client that upgrades but never sends its ClientInfo is hung up on.
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(relay.pin.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(
        b"GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    // The server answers 101, sends its key frame, then hangs up when the deadline passes.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut got))
        .await
        .expect("stalled client not dropped");
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let magic_at = got.windows(8).position(|w| w == headway_derp::frame::MAGIC);
    assert!(magic_at.is_some(), "no server-key frame after the 101");
    eventually("the stalled handshake is counted", || {
        relay.server.stats().handshake_failures >= 1
    })
    .await;

    // Later clients are served as usual.
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let a = relay.client(&ka).await;
    let mut b = relay.client(&kb).await;
    a.send(&kb.node_public(), b"still relaying").await.unwrap();
    assert_eq!(
        next_packet(&mut b).await.1,
        Bytes::from_static(b"still relaying")
    );
}

#[tokio::test]
async fn malformed_frames_end_only_that_connection() {
    let relay = Relay::start(DerpConfig::default()).await;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = relay.client(&ka).await;
    let mut b = relay.client(&kb).await;
    // A SendPacket announcing more than 64 KiB of packet.
    let mut bad = vec![0x04];
    bad.extend_from_slice(&(32u32 + (64 << 10) + 1).to_be_bytes());
    a.sender().send_raw(&bad).await.unwrap();
    assert!(tokio::time::timeout(WAIT, a.recv()).await.unwrap().is_err());
    // Unknown frame types are skipped without harm.
    b.sender()
        .send_raw(&[0x7f, 0, 0, 0, 3, 1, 2, 3])
        .await
        .unwrap();
    barrier(&mut b).await;
    assert_eq!(relay.server.stats().unknown_frames, 1);
}

#[tokio::test]
async fn newest_duplicate_gets_packets_and_the_last_writer_wins() {
    let relay = Relay::start(DerpConfig::default()).await;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a1 = relay.client(&ka).await;
    let mut a2 = relay.client(&ka).await;
    let mut b = relay.client(&kb).await;
    assert_eq!(relay.server.stats().duplicate_connections_total, 1);
    assert_eq!(relay.server.connected_clients(), 2);

    b.send(&ka.node_public(), b"1").await.unwrap();
    assert_eq!(next_packet(&mut a2).await.1, Bytes::from_static(b"1"));

    // The older connection speaks and becomes the active one.
    a1.send(&kb.node_public(), b"from a1").await.unwrap();
    next_packet(&mut b).await;
    b.send(&ka.node_public(), b"2").await.unwrap();
    assert_eq!(next_packet(&mut a1).await.1, Bytes::from_static(b"2"));

    // One of two connections leaving is not the key leaving: no PeerGone.
    drop(a1);
    eventually("a1 is unregistered", || {
        relay.server.stats().connections_current == 2
    })
    .await;
    b.send(&ka.node_public(), b"3").await.unwrap();
    assert_eq!(next_packet(&mut a2).await.1, Bytes::from_static(b"3"));
    barrier(&mut b).await;
}

#[tokio::test]
async fn pings_are_answered_and_keepalives_arrive() {
    let config = DerpConfig {
        keep_alive: Duration::from_millis(100),
        keep_alive_jitter: Duration::ZERO,
        ..DerpConfig::default()
    };
    let relay = Relay::start(config).await;
    let mut a = relay.client(&PrivateKey::generate()).await;
    a.sender().note_preferred(true).await.unwrap();
    barrier(&mut a).await;
    assert_eq!(relay.server.stats().home_connections_current, 1);
    let got = tokio::time::timeout(WAIT, a.recv()).await.unwrap().unwrap();
    assert_eq!(got, ReceivedMessage::KeepAlive);
    drop(a);
    eventually("the home gauge drops", || {
        relay.server.stats().home_connections_current == 0
    })
    .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_neither_blocks_others_nor_stays() {
    let config = DerpConfig {
        send_queue_depth: 4,
        write_timeout: Duration::from_millis(500),
        ..DerpConfig::default()
    };
    let relay = Relay::start(config).await;
    let (ka, kb, kc) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let mut a = relay.client(&ka).await;
    let b = relay.client(&kb).await;
    let _stuck = relay.client(&kc).await; // never reads

    let big = vec![1u8; 60_000];
    let mut sent = 0;
    while relay.server.stats().packets_dropped_queue_full == 0 {
        assert!(sent < 5_000, "queue never filled");
        for _ in 0..20 {
            b.send(&kc.node_public(), &big).await.unwrap();
        }
        sent += 20;
    }
    b.send(&ka.node_public(), b"not stuck").await.unwrap();
    assert_eq!(
        next_packet(&mut a).await.1,
        Bytes::from_static(b"not stuck")
    );
    // Once the socket buffers are full the server stops waiting for it.
    while relay.server.is_connected(&kc.node_public()) {
        assert!(sent < 5_000, "stuck client never disconnected");
        for _ in 0..20 {
            b.send(&kc.node_public(), &big).await.unwrap();
        }
        sent += 20;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.send(&ka.node_public(), b"still fine").await.unwrap();
    assert_eq!(
        next_packet(&mut a).await.1,
        Bytes::from_static(b"still fine")
    );
}

#[tokio::test]
async fn a_node_key_can_be_disconnected_by_the_control_plane() {
    let relay = Relay::start(DerpConfig::default()).await;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = relay.client(&ka).await;
    let mut b = relay.client(&kb).await;
    assert_eq!(relay.server.disconnect(&ka.node_public()), 1);
    assert!(tokio::time::timeout(WAIT, a.recv()).await.unwrap().is_err());
    barrier(&mut b).await;
    assert_eq!(
        relay
            .server
            .disconnect(&PrivateKey::generate().node_public()),
        0
    );
}

#[tokio::test]
async fn closing_the_server_hangs_up_everyone() {
    let relay = Relay::start(DerpConfig::default()).await;
    let mut a = relay.client(&PrivateKey::generate()).await;
    relay.server.close();
    assert!(tokio::time::timeout(WAIT, a.recv()).await.unwrap().is_err());
    let err = relay
        .try_client(&PrivateKey::generate(), &ClientOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::BadGreeting | ClientError::Io(_)),
        "{err}"
    );
}

#[tokio::test]
async fn mesh_peers_watch_connections_and_forward_packets() {
    let mesh_key: MeshKey = "42".repeat(32).parse().unwrap();
    let admitted = PrivateKey::generate();
    let admitted_key = admitted.node_public();
    let config = DerpConfig {
        mesh_key: Some(mesh_key.clone()),
        ..DerpConfig::default()
    };
    let server = DerpServer::new(PrivateKey::generate(), config)
        .with_verifier(move |k: &NodePublic| *k == admitted_key);
    let relay = Relay::start_with(server).await;

    let mut a = relay.client(&admitted).await;
    // The mesh peer is not known to the verify hook; the mesh key admits it.
    let mesh_options = ClientOptions {
        mesh_key: Some(mesh_key),
        ..ClientOptions::default()
    };
    let mesh_private = PrivateKey::generate();
    let mut mesh = relay
        .try_client(&mesh_private, &mesh_options)
        .await
        .unwrap();
    mesh.sender().watch_connections().await.unwrap();
    match next(&mut mesh).await {
        ReceivedMessage::PeerPresent { peer, addr, flags } => {
            assert_eq!(peer, admitted.node_public());
            assert!(addr.is_some_and(|a| a.ip().is_loopback()));
            assert_eq!(flags, 1);
        }
        other => panic!("expected PeerPresent, got {other:?}"),
    }

    // A packet from a client of the other server, for our client.
    let remote = PrivateKey::generate().node_public();
    mesh.sender()
        .forward(&remote, &admitted.node_public(), b"via mesh")
        .await
        .unwrap();
    assert_eq!(
        next_packet(&mut a).await,
        (remote, Bytes::from_static(b"via mesh"))
    );

    drop(a);
    assert_eq!(
        next(&mut mesh).await,
        ReceivedMessage::PeerGone {
            peer: admitted.node_public(),
            reason: PeerGoneReason::Disconnected
        }
    );
    assert_eq!(relay.server.stats().packets_forwarded_in, 1);
}

#[tokio::test]
async fn clients_without_the_mesh_key_may_not_watch() {
    let config = DerpConfig {
        mesh_key: Some("42".repeat(32).parse().unwrap()),
        ..DerpConfig::default()
    };
    let relay = Relay::start(config).await;
    let wrong = ClientOptions {
        mesh_key: Some("43".repeat(32).parse().unwrap()),
        ..ClientOptions::default()
    };
    let mut c = relay
        .try_client(&PrivateKey::generate(), &wrong)
        .await
        .unwrap();
    c.sender().watch_connections().await.unwrap();
    assert!(tokio::time::timeout(WAIT, c.recv()).await.unwrap().is_err());
}

#[tokio::test]
async fn meshed_relays_carry_packets_between_their_clients() {
    let mesh_key: MeshKey = "17".repeat(32).parse().unwrap();
    let config = DerpConfig {
        mesh_key: Some(mesh_key.clone()),
        ..DerpConfig::default()
    };
    let (r1, r2) = (
        Relay::start(config.clone()).await,
        Relay::start(config).await,
    );
    let (stop, stopped) = tokio::sync::watch::channel(());
    for (from, to) in [(&r1, &r2), (&r2, &r1)] {
        let peer = MeshPeer {
            url: to.url.clone(),
            tls: Some(to.pin.clone()),
        };
        let mut stopped = stopped.clone();
        tokio::spawn(run_mesh_link(
            from.server.clone(),
            peer,
            mesh_key.clone(),
            async move {
                let _ = stopped.changed().await;
            },
        ));
    }
    let (kx, ky) = (PrivateKey::generate(), PrivateKey::generate());
    let mut x = r1.client(&kx).await;
    let mut y = r2.client(&ky).await;

    // The links learn about Y (on r2) asynchronously: retry until r1 forwards.
    let deadline = tokio::time::Instant::now() + WAIT;
    while r1.server.stats().packets_forwarded_out == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "r1 never learnt where Y is"
        );
        x.send(&ky.node_public(), b"x to y").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        next_packet(&mut y).await,
        (kx.node_public(), Bytes::from_static(b"x to y"))
    );
    y.send(&kx.node_public(), b"y to x").await.unwrap();
    assert_eq!(
        next_packet(&mut x).await,
        (ky.node_public(), Bytes::from_static(b"y to x"))
    );

    // Y leaving r2 reaches X on r1 as PeerGone.
    drop(y);
    loop {
        match next(&mut x).await {
            ReceivedMessage::PeerGone { peer, reason } => {
                assert_eq!(
                    (peer, reason),
                    (ky.node_public(), PeerGoneReason::Disconnected)
                );
                break;
            }
            ReceivedMessage::Packet { .. } => continue, // retries that arrived late
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(stop);
}

/// Relays sharing one private key cannot mesh (each ignores a watcher with
/// its own key), and a relay listed as its own peer has nothing to mesh
/// with: the link says so and ends instead of retrying for ever.
#[tokio::test]
async fn a_mesh_link_to_a_relay_with_the_same_key_ends() {
    let mesh_key: MeshKey = "18".repeat(32).parse().unwrap();
    let config = DerpConfig {
        mesh_key: Some(mesh_key.clone()),
        ..DerpConfig::default()
    };
    let key = PrivateKey::generate();
    let r1 = Relay::start_with(DerpServer::new(key.clone(), config.clone())).await;
    let r2 = Relay::start_with(DerpServer::new(key, config)).await;
    let peer = MeshPeer {
        url: r2.url.clone(),
        tls: Some(r2.pin.clone()),
    };
    tokio::time::timeout(
        WAIT,
        run_mesh_link(r1.server.clone(), peer, mesh_key, std::future::pending()),
    )
    .await
    .expect("the link should give up on a peer with its own key");
}

#[derive(Default)]
struct Collect(Mutex<Vec<(NodePublic, NodePublic, Bytes)>>);

impl PacketForwarder for Collect {
    fn forward_packet(
        &self,
        src: NodePublic,
        dst: NodePublic,
        packet: Bytes,
    ) -> Result<(), ForwardError> {
        self.0.lock().unwrap().push((src, dst, packet));
        Ok(())
    }
}

#[tokio::test]
async fn packets_for_keys_on_a_mesh_peer_go_to_its_forwarder() {
    let relay = Relay::start(DerpConfig::default()).await;
    let ka = PrivateKey::generate();
    let mut a = relay.client(&ka).await;
    let elsewhere = PrivateKey::generate().node_public();
    let collect = Arc::new(Collect::default());
    let fwd: Arc<dyn PacketForwarder> = collect.clone();
    relay.server.add_packet_forwarder(elsewhere, fwd.clone());
    a.send(&elsewhere, b"over there").await.unwrap();
    eventually("the forwarder got the packet", || {
        !collect.0.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        collect.0.lock().unwrap()[0],
        (
            ka.node_public(),
            elsewhere,
            Bytes::from_static(b"over there")
        )
    );

    relay.server.remove_packet_forwarder(&elsewhere, &fwd);
    a.send(&elsewhere, b"gone").await.unwrap();
    barrier(&mut a).await;
    assert_eq!(collect.0.lock().unwrap().len(), 1);
    assert_eq!(relay.server.stats().packets_dropped_unknown_dest, 1);
}

#[tokio::test]
async fn stun_answers_with_the_observed_address_and_ignores_junk() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_addr = socket.local_addr().unwrap();
    let stats = Arc::new(stun::StunStats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(stun::serve_stun_with_stats(
        socket,
        stats.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let request = stun::binding_request([9; 12]);
    for junk in [&b"hello"[..], &request[..25], &[0xff; 40][..], &[][..]] {
        client.send_to(junk, server_addr).await.unwrap();
    }
    let mapped = stun::stun_query(&client, server_addr, WAIT).await.unwrap();
    assert_eq!(mapped, client.local_addr().unwrap());
    let s = stats.snapshot();
    assert_eq!(s.requests_ipv4, 1);
    assert_eq!(s.not_stun, 4);

    if let Ok(v6) = UdpSocket::bind("[::1]:0").await {
        let v6_server = UdpSocket::bind("[::1]:0").await.unwrap();
        let v6_addr = v6_server.local_addr().unwrap();
        tokio::spawn(stun::serve_stun(v6_server, std::future::pending()));
        assert_eq!(
            stun::stun_query(&v6, v6_addr, WAIT).await.unwrap(),
            v6.local_addr().unwrap()
        );
    }

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

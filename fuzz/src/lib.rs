//! The fuzz targets' bodies, shared by the libFuzzer binaries
//! (`fuzz_targets/`, nightly `cargo fuzz`) and the stable harness
//! (`tests/stable.rs`). Each takes arbitrary bytes and must neither panic,
//! hang, nor break an invariant of the code under test.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use headway_derp::frame::{self, FrameType};
use headway_derp::{DerpConfig, DerpServer, handshake, stun};
use headway_proto::keys::PrivateKey;
use headway_proto::noise::{self, ClientHandshake, NoiseStream};
use headway_proto::tailcfg::{MapRequest, RegisterRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest any one input may keep a target busy before it counts as a hang.
const HANG: Duration = Duration::from_secs(10);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a tokio runtime for the fuzz targets: {e}"))
    })
}

fn block_on_bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    runtime().block_on(async {
        match tokio::time::timeout(HANG, f).await {
            Ok(v) => v,
            Err(_) => panic!("{what}: the input kept the target busy for {HANG:?} (a hang)"),
        }
    })
}

/// HuJSON policy parsing, then compilation of what parses.
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(policy) = headway_policy::Policy::parse(&text) {
        let _ = headway_policy::CompiledPolicy::new(Some(Arc::new(policy)), &[], &[]);
    }
}

/// The control protocol's JSON bodies (`/machine/register`, `/machine/map`):
/// whatever parses must serialise and parse again.
pub fn control_json(data: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<RegisterRequest>(data) {
        let again = serde_json::to_vec(&req)
            .unwrap_or_else(|e| panic!("a parsed RegisterRequest does not serialise: {e}"));
        if let Err(e) = serde_json::from_slice::<RegisterRequest>(&again) {
            panic!("a RegisterRequest does not survive a round trip: {e}");
        }
    }
    if let Ok(req) = serde_json::from_slice::<MapRequest>(data) {
        let again = serde_json::to_vec(&req)
            .unwrap_or_else(|e| panic!("a parsed MapRequest does not serialise: {e}"));
        if let Err(e) = serde_json::from_slice::<MapRequest>(&again) {
            panic!("a MapRequest does not survive a round trip: {e}");
        }
    }
    let mut buf = bytes::BytesMut::from(data);
    let _ =
        headway_proto::framing::decode_frames(&mut buf, headway_proto::framing::Compression::None);
}

fn keys() -> &'static (PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| (PrivateKey::generate(), PrivateKey::generate()))
}

/// The Noise transport as the server sees it. The first byte chooses:
/// 0: the handshake header and initiation as a client could send them;
/// 1: raw bytes where records are expected after a good handshake;
/// 2: well-encrypted records carrying arbitrary plaintext, then raw bytes.
pub fn noise_framing(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (server_key, machine_key) = keys();
    match mode % 3 {
        0 => {
            if let Ok(initiation) = noise::decode_handshake_header(rest) {
                let _ = noise::accept(server_key, &initiation);
            }
            let _ = noise::accept(server_key, rest);
        }
        1 => {
            let Ok(client) = ClientHandshake::new(machine_key, &server_key.machine_public(), 130)
            else {
                return;
            };
            let Ok(server) = noise::accept(server_key, client.initiation()) else {
                panic!("the server refused a good initiation");
            };
            let io = tokio::io::join(rest, tokio::io::sink());
            let mut stream = server.into_stream(io);
            block_on_bounded("noise_framing raw", async move {
                let mut out = Vec::new();
                let _ = stream.read_to_end(&mut out).await;
            });
        }
        _ => {
            let Ok(client) = ClientHandshake::new(machine_key, &server_key.machine_public(), 130)
            else {
                return;
            };
            let Ok(server) = noise::accept(server_key, client.initiation()) else {
                panic!("the server refused a good initiation");
            };
            let response = *server.response();
            let Ok(client_keys) = client.finish(&response) else {
                panic!("the client refused the server's response");
            };
            // Plaintext chunks: a length byte, then that many bytes; a zero
            // length ends them, and what follows goes out raw.
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < rest.len() {
                let n = usize::from(rest[at]) * 64;
                at += 1;
                if n == 0 {
                    break;
                }
                let end = (at + n).min(rest.len());
                chunks.push(&rest[at..end]);
                at = end;
            }
            let tail = &rest[at.min(rest.len())..];
            block_on_bounded("noise_framing records", async move {
                // Encrypt the chunks as the client would, collect the wire bytes.
                let (a, mut b) = tokio::io::duplex(1 << 22);
                let mut sender = NoiseStream::new(a, client_keys);
                let mut sent = Vec::new();
                for c in &chunks {
                    if sender.write_all(c).await.is_err() {
                        return;
                    }
                    sent.extend_from_slice(c);
                }
                let _ = sender.flush().await;
                drop(sender);
                let mut wire = Vec::new();
                let _ = b.read_to_end(&mut wire).await;
                wire.extend_from_slice(tail);
                let io = tokio::io::join(&wire[..], tokio::io::sink());
                let mut receiver = server.into_stream(io);
                let mut got = Vec::new();
                let _ = receiver.read_to_end(&mut got).await;
                assert!(
                    got.len() >= sent.len() && got[..sent.len()] == sent[..],
                    "records sent through Noise came out different ({} bytes in, {} out)",
                    sent.len(),
                    got.len()
                );
            });
        }
    }
}

/// A DERP server connection: a correct `ClientInfo` handshake, then the
/// input as the frames a client sends.
pub fn derp_frames(data: &[u8]) {
    let (server_key, client_key) = keys();
    block_on_bounded("derp_frames", async move {
        let config = DerpConfig {
            handshake_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            ..DerpConfig::default()
        };
        let server = Arc::new(DerpServer::new(server_key.clone(), config));
        let (mut ours, theirs) = tokio::io::duplex(1 << 20);
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.accept(theirs, None).await }
        });
        let info = serde_json::to_vec(&headway_derp::ClientInfo::default())
            .unwrap_or_else(|e| panic!("ClientInfo serialises: {e}"));
        let sealed = handshake::seal(client_key, &server.public_key(), &info);
        let mut payload = client_key.node_public().as_bytes().to_vec();
        payload.extend_from_slice(&sealed);
        let _ = ours
            .write_all(&frame::header(FrameType::CLIENT_INFO, payload.len() as u32))
            .await;
        let _ = ours.write_all(&payload).await;
        let _ = ours.write_all(data).await;
        let _ = ours.shutdown().await;
        // Read what the server says until it hangs up.
        let mut sink = Vec::new();
        let _ = ours.read_to_end(&mut sink).await;
        let _ = serving.await;
        server.close();
    });
}

/// STUN: whatever parses as a binding request gets a response that parses
/// back to the same transaction and address.
pub fn stun(data: &[u8]) {
    let _ = stun::is_stun(data);
    let _ = stun::parse_binding_response(data);
    if let Ok(tx) = stun::parse_binding_request(data) {
        let addr: std::net::SocketAddr = ([192, 0, 2, 7], 41641).into();
        let response = stun::binding_response(tx, addr);
        match stun::parse_binding_response(&response) {
            Ok((tx2, addr2)) => assert!(
                tx2 == tx && addr2 == addr,
                "a binding response does not parse back to its transaction and address"
            ),
            Err(e) => panic!("our own binding response does not parse: {e}"),
        }
    }
}

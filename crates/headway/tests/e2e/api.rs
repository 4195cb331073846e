//! The admin API over the network against a real server: API keys minted
//! on the socket open REST (the remote CLI) and gRPC over TCP and nothing
//! opens without one; a key minted through the REST API lets an official
//! client join; a node deleted through the API leaves its peers' maps; the
//! served OpenAPI document validates and real responses match it
//! (schemathesis); a gRPC client generated in Python from our .proto files
//! works; and no secret reaches the server's log.
//!
//! The Python tools come from `scripts/api-test-tools` (a venv under target/).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::kit::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The venv with the Python tools, installed on first use.
fn venv() -> PathBuf {
    let root = root();
    let out = std::process::Command::new(root.join("scripts/api-test-tools"))
        .current_dir(&root)
        .output()
        .expect("running scripts/api-test-tools");
    assert!(
        out.status.success(),
        "scripts/api-test-tools failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim(),
    )
}

/// One HTTP/1.1 exchange over TCP: (status, body).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs the CLI against the server's TCP address with `key`.
async fn remote_cli(server: &Headway, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = headway_command()
        .arg("--config")
        .arg(&server.config)
        .arg("--address")
        .arg(server.url())
        .arg("--api-key")
        .arg(key)
        .args(args)
        .env_remove("HEADWAY_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn remote_json(server: &Headway, key: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let (ok, out, err) = remote_cli(server, key, &a).await;
    assert!(ok, "headway --address … {args:?} failed: {err}{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_minted_over_rest_lets_a_client_join_and_a_deletion_reaches_the_peers() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(dir.path(), ServerOpts::default()).await;

    // Nothing over TCP without a key; the socket needs none.
    let (status, body) = http(server.port, "GET", "/api/v1/user", None, "").await;
    assert_eq!(status, 401, "{body}");
    let (ok, _, err) = remote_cli(&server, "hskey-api-000000000000-0000", &["users", "list"]).await;
    assert!(!ok && err.contains("not valid"), "{err}");
    let api_key = server
        .cli_json(&["apikeys", "create", "--expiration", "1h"])
        .await["apiKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(api_key.starts_with("hskey-api-"), "{api_key}");

    // The remote CLI: a user and a reusable pre-auth key through REST over TCP.
    remote_json(&server, &api_key, &["users", "create", "alice"]).await;
    let created = remote_json(
        &server,
        &api_key,
        &[
            "preauthkeys",
            "create",
            "--user",
            "alice",
            "--reusable",
            "--expiration",
            "1h",
        ],
    )
    .await;
    let auth_key = created["key"].as_str().unwrap().to_string();

    let a = Node::start(dir.path(), "api-a", MODERN, &[]).await;
    let b = Node::start(dir.path(), "api-b", MODERN, &[]).await;
    a.up_ok(&server, &auth_key).await;
    b.up_ok(&server, &auth_key).await;
    a.wait_sees_online(&["api-b"]).await;

    // Delete b through the API: it leaves a's map.
    let nodes = remote_json(&server, &api_key, &["nodes", "list"]).await;
    let b_id = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["givenName"] == "api-b")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    remote_json(
        &server,
        &api_key,
        &["nodes", "delete", "-i", &b_id, "--force"],
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "api-b to leave api-a's peers",
        async || a.peer("api-b").await.is_none().then_some(()),
    )
    .await;

    // The key's use is visible (within a minute); expired, it opens nothing.
    let keys = server.cli_json(&["apikeys", "list"]).await;
    assert!(keys[0]["lastSeen"].is_string(), "{keys}");
    let prefix = keys[0]["prefix"].as_str().unwrap().to_string();
    server
        .cli_json(&["apikeys", "expire", "--prefix", &prefix])
        .await;
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/user",
        Some(&format!("Bearer {api_key}")),
        "",
    )
    .await;
    assert_eq!(status, 401);

    // No secret in the log.
    let log = server.log_text();
    for secret in [&api_key, &auth_key] {
        assert!(
            !log.contains(&secret[secret.len() - 64..]),
            "a secret reached the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_needs_a_key_over_tcp() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(dir.path(), ServerOpts::default()).await;
    let (status, doc) = http(server.port, "GET", "/api/v1/openapi.json", None, "").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let users_before = server.cli_json(&["users", "list"]).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let concrete = path.replace(['{', '}'], "");
            let (status, body) = http(
                server.port,
                &method.to_uppercase(),
                &concrete,
                Some("Bearer hskey-api-nope"),
                "{}",
            )
            .await;
            // The limiter may answer first once this client has failed often.
            assert!(
                status == 401 || status == 429,
                "{method} {path}: {status} {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
    assert_eq!(server.cli_json(&["users", "list"]).await, users_before);
    // The public routes stay public.
    for path in ["/health", "/key?v=130", "/api/v1/docs"] {
        let (status, _) = http(server.port, "GET", path, None, "").await;
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_responses_match_it() {
    let _slot = slot().await;
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(dir.path(), ServerOpts::default()).await;
    let key = server.cli_json(&["apikeys", "create"]).await["apiKey"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, doc) = http(server.port, "GET", "/api/v1/openapi.json", None, "").await;
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, doc).unwrap();

    let out = Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&doc_path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(venv.join("bin/schemathesis"))
        .args(["run", &doc_path.display().to_string(), "--url", &server.url()])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--max-examples", "8", "--seed", "1", "--phases", "examples,fuzzing"])
        // These two revoke the key the run authenticates with.
        .args(["--exclude-operation-id", "deleteApiKey", "--exclude-operation-id", "expireApiKey"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis:\n{text}");
    assert!(!server.log_text().contains(&key[key.len() - 64..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpc_client_from_our_proto_creates_a_user_and_a_key_and_lists_nodes() {
    let _slot = slot().await;
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: "grpc_allow_insecure: true\n".into(),
        },
    )
    .await;
    let grpc_port = server.grpc_port;
    eventually(Duration::from_secs(10), "the gRPC listener", async || {
        TcpStream::connect(("127.0.0.1", grpc_port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let key = server.cli_json(&["apikeys", "create"]).await["apiKey"]
        .as_str()
        .unwrap()
        .to_string();

    let generated = dir.path().join("py");
    std::fs::create_dir_all(&generated).unwrap();
    let proto = root().join("crates/api/proto");
    let files: Vec<String> = std::fs::read_dir(proto.join("headscale/v1"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let out = Command::new(venv.join("bin/python"))
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto.display()))
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .args(&files)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "grpc_tools.protoc: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let script = root().join("crates/headway/tests/e2e/grpc_client.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(&script)
        .arg(format!("127.0.0.1:{grpc_port}"))
        .arg(&key)
        .env("PYTHONPATH", &generated)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpc_client.py: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["user"], "grpc-user");
    assert!(v["key"].as_str().unwrap().starts_with("hskey-auth-"));
    assert_eq!(v["nodes"], serde_json::json!([]));
    // What gRPC created is what REST sees.
    let users = server.cli_json(&["users", "list"]).await;
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "grpc-user"),
        "{users}"
    );
    assert!(!server.log_text().contains(&key[key.len() - 64..]));
}

//! The real `headway` binary against the REST API served on a unix socket
//! in a temporary directory (a tailnet over the in-memory store): what an
//! admin types, what a script reads with `-o json`, and how errors look.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::{Clock, SystemClock};
use headway_state::memstore::MemStore;
use headway_state::model;
use headway_state::settings::Settings;
use headway_state::tailnet::{NewPreAuthKey, NewUser};
use serde_json::Value;
use tokio::net::UnixListener;

struct Kit {
    tailnet: Arc<Tailnet>,
    config: PathBuf,
    dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Kit {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }

    /// The error a script reads with `-o json`.
    #[track_caller]
    fn json_error(&self) -> String {
        assert_eq!(
            self.code, 1,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(self.stdout.is_empty(), "{}", self.stdout);
        let v: Value =
            serde_json::from_str(&self.stderr).unwrap_or_else(|e| panic!("{e}: {:?}", self.stderr));
        v["error"].as_str().unwrap().to_string()
    }
}

impl Kit {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("headway.sock");
        let tailnet = Tailnet::load(
            Arc::new(MemStore::default()),
            Arc::new(SystemClock),
            Settings::default(),
        )
        .await
        .unwrap();
        let listener = UnixListener::bind(&socket).unwrap();
        let router = headway_api::router(tailnet.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "data_dir: {}\nunix_socket: {}\n",
                dir.path().display(),
                socket.display()
            ),
        )
        .unwrap();
        Kit {
            tailnet,
            config,
            dir,
            server,
        }
    }

    /// Runs `headway -c <config> args…` with no terminal on stdin.
    async fn run(&self, args: &[&str]) -> Run {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_headway"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("HEADWAY_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        Run::from(out)
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        self.run(&all).await.json()
    }

    async fn json_error(&self, args: &[&str]) -> String {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        self.run(&all).await.json_error()
    }

    async fn user(&self, name: &str) -> model::User {
        self.tailnet
            .create_user(NewUser {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    async fn node(&self, user: &model::User, n: u8, host: &str) -> model::Node {
        let (_, key) = self
            .tailnet
            .create_preauth_key(NewPreAuthKey {
                user: Some(user.id),
                ..Default::default()
            })
            .await
            .unwrap();
        let req = RegisterRequest {
            version: 133,
            node_key: NodePublic([n; 32]),
            auth: Some(RegisterResponseAuth {
                auth_key: key,
                ..Default::default()
            }),
            hostinfo: Some(Hostinfo {
                hostname: host.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.tailnet
            .register(MachinePublic([n; 32]), &req)
            .await
            .unwrap();
        self.tailnet
            .node_by_key(&NodePublic([n; 32]))
            .map(|n| (*n).clone())
            .unwrap()
    }
}

impl Kit {
    /// A machine that ran `tailscale up` without a key: its auth id.
    async fn waiting(&self, n: u8, host: &str) -> String {
        let req = RegisterRequest {
            version: 133,
            node_key: NodePublic([n; 32]),
            hostinfo: Some(Hostinfo {
                hostname: host.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (resp, _) = self
            .tailnet
            .register(MachinePublic([n; 32]), &req)
            .await
            .unwrap();
        resp.auth_url.rsplit('/').next().unwrap().to_string()
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users() {
    let k = Kit::new().await;
    let alice = k
        .json(&[
            "users",
            "create",
            "alice",
            "--display-name",
            "Alice A.",
            "--email",
            "alice@example.com",
        ])
        .await;
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["displayName"], "Alice A.");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["id"], "1");

    let e = k.json_error(&["users", "create", "alice"]).await;
    assert!(e.contains("already exists"), "{e}");

    k.json(&["users", "create", "bob"]).await;
    let all = k.json(&["users", "list"]).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(
        k.json(&["users", "list", "--name", "bob"]).await[0]["name"],
        "bob"
    );
    assert_eq!(
        k.json(&["users", "list", "-e", "alice@example.com"]).await[0]["name"],
        "alice"
    );

    let renamed = k
        .json(&["users", "rename", "--name", "bob", "--new-name", "carol"])
        .await;
    assert_eq!(renamed["name"], "carol");
    let renamed = k
        .json(&["users", "rename", "-i", "1", "-r", "alice2"])
        .await;
    assert_eq!(renamed["name"], "alice2");

    let e = k
        .json_error(&["users", "delete", "--name", "nobody", "--force"])
        .await;
    assert!(e.contains("\"nobody\" not found"), "{e}");
    // No terminal to confirm on: nothing is deleted without --force.
    let e = k.json_error(&["users", "delete", "--name", "carol"]).await;
    assert!(e.contains("--force"), "{e}");
    assert!(k.tailnet.resolve_user("carol").is_ok());
    assert_eq!(
        k.json(&["users", "delete", "--name", "carol", "--force"])
            .await,
        serde_json::json!({})
    );
    assert!(k.tailnet.resolve_user("carol").is_err());

    // The default output is headscale's table.
    let table = k.run(&["users", "list"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let mut lines = table.stdout.lines();
    assert_eq!(
        lines
            .next()
            .unwrap()
            .split(" | ")
            .map(str::trim)
            .collect::<Vec<_>>(),
        ["ID", "Name", "Username", "Email", "Created"]
    );
    assert!(lines.next().unwrap().contains("alice2"), "{}", table.stdout);

    let human = k.run(&["users", "create", "alice2"]).await;
    assert_eq!(human.code, 1);
    assert!(
        human.stderr.starts_with("Error: ") && human.stderr.contains("already exists"),
        "{}",
        human.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preauthkeys() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    k.user("bob").await;

    let before = SystemClock.now();
    let key = k
        .json(&[
            "preauthkeys",
            "create",
            "-u",
            "alice",
            "--reusable",
            "--expiration",
            "24h",
        ])
        .await;
    let text = key["key"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("hskey-auth-") && !text.ends_with("***"),
        "{text}"
    );
    assert_eq!(key["user"]["name"], "alice");
    assert_eq!(key["reusable"], true);
    let expiration = time(&key["expiration"]);
    assert!(
        expiration >= before + Duration::hours(24)
            && expiration <= SystemClock.now() + Duration::hours(24)
    );

    // headscale's older spelling: the user by id, before the verb; tags.
    let tagged = k
        .json(&[
            "preauthkeys",
            "--user",
            &alice.id.to_string(),
            "create",
            "--tags",
            "tag:a,tag:b",
        ])
        .await;
    assert_eq!(tagged["aclTags"], serde_json::json!(["tag:a", "tag:b"]));
    assert_eq!(tagged["reusable"], false);

    // People get the key alone.
    let human = k
        .run(&["preauthkeys", "create", "-u", "bob", "-e", "1h30m"])
        .await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.trim().starts_with("hskey-auth-") && human.stdout.trim().lines().count() == 1
    );

    let alices = k.json(&["preauthkeys", "list", "-u", "alice"]).await;
    assert_eq!(alices.as_array().unwrap().len(), 2);
    assert!(alices[0]["key"].as_str().unwrap().ends_with("-***"));
    assert!(
        !alices
            .to_string()
            .contains(&text["hskey-auth-".len() + 13..]),
        "a listing shows a secret"
    );
    assert_eq!(
        k.json(&["preauthkeys", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let id = key["id"].as_str().unwrap().to_string();
    assert_eq!(
        k.json(&["preauthkeys", "expire", "--id", &id]).await,
        serde_json::json!({})
    );
    let listed = k.json(&["preauthkeys", "list", "-u", "alice"]).await;
    assert!(time(&listed[0]["expiration"]) <= SystemClock.now());
    // The key's text works as well as its id (headscale 0.27's form).
    k.json(&[
        "preauthkeys",
        "-u",
        "alice",
        "expire",
        tagged["key"].as_str().unwrap(),
    ])
    .await;
    let e = k
        .json_error(&["preauthkeys", "-u", "bob", "expire", &text])
        .await;
    assert!(e.contains("not found"), "{e}");

    assert_eq!(
        k.json(&["preauthkeys", "delete", "--id", &id]).await,
        serde_json::json!({})
    );
    assert_eq!(
        k.json(&["preauthkeys", "list", "-u", "alice"])
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let e = k
        .json_error(&["preauthkeys", "create", "-u", "nobody"])
        .await;
    assert!(e.contains("\"nobody\" not found"), "{e}");
    let e = k
        .json_error(&[
            "preauthkeys",
            "create",
            "-u",
            "alice",
            "--expiration",
            "soon",
        ])
        .await;
    assert!(e.contains("--expiration") && e.contains("\"soon\""), "{e}");
    let e = k.json_error(&["preauthkeys", "create"]).await;
    assert!(e.contains("user") && e.contains("tags"), "{e}");
    let e = k.json_error(&["preauthkeys", "delete", "--id", "99"]).await;
    assert!(e.contains("not found"), "{e}");

    let table = k.run(&["preauthkeys", "list"]).await;
    assert!(
        table.stdout.starts_with("ID | Key/Prefix"),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains(&text), "the table shows a full key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    k.user("bob").await;
    let laptop = k.node(&alice, 1, "laptop").await;
    k.node(&alice, 2, "desktop").await;
    let id = laptop.id.to_string();

    let all = k.json(&["nodes", "list"]).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[0]["givenName"], "laptop");
    assert_eq!(all[0]["user"]["name"], "alice");
    assert_eq!(all[0]["ipAddresses"][0], "100.64.0.1");
    assert_eq!(
        k.json(&["nodes", "list", "--user", "bob"]).await,
        serde_json::json!([])
    );
    let e = k.json_error(&["nodes", "list", "--user", "nobody"]).await;
    assert!(e.contains("not found"), "{e}");

    assert_eq!(
        k.json(&["nodes", "rename", "-i", &id, "work"]).await["givenName"],
        "work"
    );
    let e = k
        .json_error(&["nodes", "rename", "-i", &id, "desktop"])
        .await;
    assert!(e.contains("already used"), "{e}");

    assert_eq!(
        k.json(&["nodes", "move", "-i", &id, "--user", "bob"]).await["user"]["name"],
        "bob"
    );
    assert_eq!(
        k.json(&["nodes", "list", "-u", "bob"]).await[0]["id"],
        id.as_str()
    );

    let tagged = k
        .json(&["nodes", "tag", "-i", &id, "-t", "tag:web,tag:db"])
        .await;
    assert_eq!(tagged["tags"], serde_json::json!(["tag:db", "tag:web"]));
    let e = k
        .json_error(&["nodes", "tag", "-i", &id, "-t", "web"])
        .await;
    assert!(e.contains("tag:"), "{e}");

    let expired = k.json(&["nodes", "expire", "-i", &id]).await;
    assert!(time(&expired["expiry"]) <= SystemClock.now());
    let later = k
        .json(&[
            "nodes",
            "expire",
            "-i",
            &id,
            "--expiry",
            "2030-01-01T00:00:00Z",
        ])
        .await;
    assert_eq!(later["expiry"], "2030-01-01T00:00:00Z");
    let e = k
        .json_error(&["nodes", "expire", "-i", &id, "--expiry", "tomorrow"])
        .await;
    assert!(e.contains("RFC 3339"), "{e}");

    let table = k.run(&["nodes", "list"]).await;
    assert!(
        table.stdout.starts_with("ID | Hostname"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("tag:db, tag:web"), "{}", table.stdout);

    let e = k.json_error(&["nodes", "delete", "-i", &id]).await;
    assert!(e.contains("--force"), "{e}");
    assert_eq!(
        k.json(&["nodes", "delete", "-i", &id, "--force"]).await,
        serde_json::json!({})
    );
    assert_eq!(k.tailnet.list_nodes(None).len(), 1);
    let e = k
        .json_error(&["nodes", "delete", "-i", &id, "--force"])
        .await;
    assert!(e.contains("not found"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_registration() {
    let k = Kit::new().await;
    k.user("alice").await;
    let first = k.waiting(1, "laptop").await;
    let node = k
        .json(&["auth", "register", "--user", "alice", "--auth-id", &first])
        .await;
    assert_eq!(node["givenName"], "laptop");
    assert_eq!(node["user"]["name"], "alice");

    let human = k
        .run(&[
            "nodes",
            "register",
            "-u",
            "alice",
            "-k",
            &k.waiting(2, "desktop").await,
        ])
        .await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert_eq!(human.stdout.trim(), "Node desktop registered");

    let third = k.waiting(3, "phone").await;
    let e = k
        .json_error(&["auth", "approve", "--auth-id", &third])
        .await;
    assert!(e.contains("auth register"), "{e}");
    assert_eq!(
        k.json(&["auth", "reject", "--auth-id", &third]).await,
        serde_json::json!({})
    );
    let e = k
        .json_error(&["auth", "register", "-u", "alice", "--auth-id", &third])
        .await;
    assert!(e.contains("not found"), "{e}");
    assert_eq!(k.tailnet.list_nodes(None).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_version_and_a_missing_server() {
    let k = Kit::new().await;
    assert_eq!(
        k.json(&["health"]).await,
        serde_json::json!({"databaseConnectivity": true})
    );
    let v = k.json(&["version"]).await;
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["minCapabilityVersion"], 109);

    let completions = k.run(&["completions", "bash"]).await;
    assert_eq!(completions.code, 0, "{}", completions.stderr);
    assert!(
        completions.stdout.contains("preauthkeys"),
        "{}",
        completions.stdout
    );

    k.server.abort();
    let _ = std::fs::remove_file(k.dir.path().join("headway.sock"));
    let human = k.run(&["users", "list"]).await;
    assert_eq!(human.code, 1);
    assert!(
        human.stderr.contains("headway serve") && human.stderr.contains("headway.sock"),
        "{}",
        human.stderr
    );
    assert!(human.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check() {
    let k = Kit::new().await;
    let ok = k.run(&["config", "check"]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.starts_with("configuration OK"), "{}", ok.stdout);

    let bad = k.dir.path().join("bad.yaml");
    std::fs::write(&bad, "log:\n  level: loud\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(["config", "check", "-c"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("log.level") && run.stderr.contains("loud"),
        "{}",
        run.stderr
    );
}

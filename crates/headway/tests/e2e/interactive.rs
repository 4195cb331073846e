//! Interactive registration decided from the CLI: `tailscale up` without a
//! key prints an AuthURL and waits; `headway auth register` (or `reject`)
//! ends the wait. And key expiry set, then disabled, from `headway nodes
//! expire`, as the client sees it.

use std::time::Duration;

use crate::kit::*;

async fn page(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_registers_or_rejects_a_waiting_machine_and_disables_key_expiry() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(dir.path(), ServerOpts::default()).await;
    let (ok, _, err) = server.cli(&["users", "create", "alice"]).await;
    assert!(ok, "{err}");
    let laptop = Node::start(dir.path(), "laptop", MODERN, &[]).await;
    let up = Up::start(&laptop, &server).await;
    let auth_url = up.auth_url(&server).await;
    let id = auth_url.rsplit('/').next().unwrap().to_string();

    // The AuthURL's page names the machine and the command.
    let (status, body) = page(&auth_url).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("laptop"), "{body}");
    assert!(
        body.contains(&format!("headway auth register --auth-id {id} --user")),
        "{body}"
    );
    // A wrong id or user is a clear error and registers nothing.
    let (ok, _, err) = server
        .cli(&[
            "auth",
            "register",
            "--auth-id",
            "not-an-id",
            "--user",
            "alice",
        ])
        .await;
    assert!(!ok && err.contains("not-an-id"), "{err}");
    let (ok, _, err) = server
        .cli(&["auth", "register", "--auth-id", &id, "--user", "nobody"])
        .await;
    assert!(!ok && err.contains("nobody"), "{err}");
    assert!(server.nodes().await.is_empty());

    let node = server
        .cli_json(&["auth", "register", "--auth-id", &id, "--user", "alice"])
        .await;
    assert_eq!(node["user"]["name"], "alice", "{node}");
    // The waiting `tailscale up` completes by itself.
    let (ok, out) = up.finish().await;
    assert!(ok, "tailscale up: {out}");
    let status = laptop.status().await;
    assert_eq!(status["BackendState"], "Running", "{status}");
    let uid = status["Self"]["UserID"].to_string();
    assert_eq!(status["User"][&uid]["LoginName"], "alice@", "{status}");
    // The link is used up.
    let (status, body) = page(&auth_url).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown or has expired"), "{body}");

    // A rejected machine's `tailscale up` fails with the reason.
    let intruder = Node::start(dir.path(), "intruder", MODERN, &[]).await;
    let up = Up::start(&intruder, &server).await;
    let url = up.auth_url(&server).await;
    let other = url.rsplit('/').next().unwrap();
    let (ok, _, err) = server.cli(&["auth", "reject", "--auth-id", other]).await;
    assert!(ok, "{err}");
    let (ok, out) = up.finish().await;
    assert!(!ok && out.contains("rejected"), "{out}");
    assert_eq!(server.nodes().await.len(), 1);

    // Key expiry: set in the future, the client shows it; disabled, it is gone.
    let id = node["id"]
        .as_str()
        .map_or_else(|| node["id"].to_string(), str::to_string);
    let at = "2099-01-01T00:00:00Z";
    let n = server
        .cli_json(&["nodes", "expire", "-i", &id, "--expiry", at])
        .await;
    assert!(n["expiry"].is_string(), "{n}");
    eventually(
        Duration::from_secs(20),
        "the client to see its key expiry",
        async || {
            laptop.status().await["Self"]["KeyExpiry"]
                .is_string()
                .then_some(())
        },
    )
    .await;
    let n = server
        .cli_json(&["nodes", "expire", "-i", &id, "--disable"])
        .await;
    assert!(n["expiry"].is_null(), "{n}");
    let (ok, out, _) = server
        .cli(&["nodes", "expire", "-i", &id, "--disable"])
        .await;
    assert!(ok && out.contains("Node expiry disabled"), "{out}");
    eventually(
        Duration::from_secs(20),
        "the client to see no key expiry",
        async || {
            laptop.status().await["Self"]["KeyExpiry"]
                .is_null()
                .then_some(())
        },
    )
    .await;
    let (ok, _, err) = server
        .cli(&["nodes", "expire", "-i", &id, "--disable", "--expiry", at])
        .await;
    assert!(!ok && err.contains("--expiry"), "{err}");
    let listed = server.nodes().await;
    assert!(listed[0]["expiry"].is_null(), "{listed:?}");
    assert_eq!(laptop.status().await["BackendState"], "Running");
}

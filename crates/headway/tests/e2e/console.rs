//! The web console in a real browser: headless Chromium (Debian's
//! `chromium`) driven by `playwright-core` from tests/console (`npm ci`
//! there on first use). The browser signs in with an API key, creates a
//! user and a pre-auth key, watches an official client join and come
//! online without a reload, renames it, approves its route, has a bad
//! policy refused with its line marked and saves a good one, sees the
//! client go offline live, reads and filters the audit log, and signs out.
//! Screenshots of the main pages go to docs/console/.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::kit::*;

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// `npm ci` once per test run when playwright-core is missing.
fn install_driver() -> PathBuf {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let dir = root().join("tests/console");
    INSTALLED.get_or_init(|| {
        if dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("running npm ci in tests/console (Node.js 20+ and npm are needed)");
        assert!(status.success(), "npm ci in tests/console failed");
    });
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_with_an_official_client() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package (scripts/test does: apt-get install -y chromium)"
    );
    let driver = install_driver();
    let _slot = slot().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = Headway::start(
        tmp.path(),
        ServerOpts {
            extra_yaml: "policy:\n  mode: database\n".into(),
        },
    )
    .await;
    let (ok, key, err) = server
        .cli(&["apikeys", "create", "--expiration", "1h"])
        .await;
    assert!(ok, "apikeys create: {err}");
    let api_key = key
        .split_whitespace()
        .find(|w| w.starts_with("hskey-api-"))
        .unwrap_or_else(|| panic!("no key in {key:?}"))
        .to_string();
    let mut node = Node::start(tmp.path(), "console-laptop", MODERN, &[]).await;

    let shots = root().join("docs/console");
    let mut browser = Command::new("node")
        .arg(driver.join("console.test.mjs"))
        .current_dir(&driver)
        .env("HEADWAY_URL", server.url())
        .env("HEADWAY_API_KEY", &api_key)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node tests/console/console.test.mjs");
    let mut stdin = browser.stdin.take().unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut done = false;
    let mut offline_ms = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(180), lines.next_line()).await
    {
        println!("browser: {line}");
        let Some(request) = line.strip_prefix("@@ ") else {
            continue;
        };
        let (verb, arg) = request.split_once(' ').unwrap_or((request, ""));
        let reply = match verb {
            "JOIN" => {
                let (ok, out) = node
                    .up(&server, arg.trim(), &["--advertise-routes=10.77.0.0/24"])
                    .await;
                if ok {
                    "ok".to_string()
                } else {
                    format!("tailscale up failed: {out}")
                }
            }
            "STOP" => {
                node.stop().await;
                "ok".to_string()
            }
            "OFFLINE_SHOWN_MS" => {
                offline_ms = arg.trim().parse::<u64>().ok();
                continue;
            }
            "DONE" => {
                // The script waits for its stdin to close before it exits.
                done = true;
                break;
            }
            other => format!("unknown request {other}"),
        };
        stdin
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .unwrap();
    }
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait())
        .await
        .expect("the browser test did not end")
        .unwrap();
    assert!(
        status.success() && done,
        "the browser test failed ({status})"
    );
    assert!(
        offline_ms.is_some(),
        "the browser never reported the node going offline"
    );
    println!(
        "browser test took {:?}; offline shown {offline_ms:?} ms after the stop request",
        started.elapsed()
    );

    // What the browser did is what the server has.
    let nodes = server.nodes().await;
    let n = nodes
        .iter()
        .find(|n| n["givenName"] == "renamed-laptop" || n["given_name"] == "renamed-laptop")
        .unwrap_or_else(|| panic!("no renamed node in {nodes:?}"));
    let approved = n
        .get("approvedRoutes")
        .or_else(|| n.get("approved_routes"))
        .unwrap();
    assert!(approved.to_string().contains("10.77.0.0/24"), "{n}");
    let policy = reqwest::Client::new()
        .get(format!("{}/api/v1/policy", server.url()))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    assert!(
        policy["policy"].as_str().unwrap().contains("lab:22"),
        "{policy}"
    );
    for page in [
        "sign-in",
        "nodes",
        "node",
        "policy-error",
        "policy",
        "overview",
        "keys",
        "audit",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}

//! OpenID Connect login with official clients and a real OpenID provider
//! (panva's certified `oidc-provider`, run on loopback from
//! tests/oidc-provider; `npm ci` there on first use). A cookie-keeping HTTP
//! client plays the person: it opens the client's AuthURL, signs in at the
//! provider's login form, and confirms the machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::kit::*;

const CLIENT_ID: &str = "headway";
const CLIENT_SECRET: &str = "e2e-client-secret";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/oidc-provider")
        .canonicalize()
        .expect("tests/oidc-provider")
}

/// `npm ci` once per test run when the provider's packages are missing.
fn install_provider() -> PathBuf {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let dir = provider_dir();
    INSTALLED.get_or_init(|| {
        if dir.join("node_modules/oidc-provider/package.json").exists() {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("running npm ci in tests/oidc-provider (Node.js 20+ and npm are needed)");
        assert!(status.success(), "npm ci in tests/oidc-provider failed");
    });
    dir
}

/// The provider's people, by login name, as the account file holds them.
fn accounts() -> Value {
    json!({
        "alice": {
            "sub": "248289761001",
            "email": "alice@example.com",
            "email_verified": true,
            "name": "Alice Liddell",
            "preferred_username": "alice",
            "picture": "https://pics.example.com/alice.png",
            "groups": ["vpn", "staff"]
        },
        "bob": {
            "sub": "248289761002",
            "email": "bob@example.com",
            "email_verified": true,
            "name": "Bob",
            "preferred_username": "bob",
            "groups": ["staff"]
        },
        "carol": {
            "sub": "248289761003",
            "email": "carol@example.com",
            "email_verified": true,
            "preferred_username": "carol",
            "groups": ["vpn"]
        },
        "mallory": {
            "sub": "248289761004",
            "email": "mallory@evil.example",
            "email_verified": true,
            "preferred_username": "mallory",
            "groups": ["vpn"]
        },
        "dave": {
            "sub": "248289761005",
            "email": "dave@example.com",
            "email_verified": false,
            "preferred_username": "dave",
            "groups": ["vpn"]
        }
    })
}

/// A running `oidc-provider`.
struct Provider {
    issuer: String,
    accounts: PathBuf,
    log: PathBuf,
    _child: Child,
}

impl Drop for Provider {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== oidc-provider log ({}) =====\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Provider {
    async fn start(dir: &Path, mode: &str, port: Option<u16>) -> Provider {
        let script_dir = install_provider();
        let accounts = dir.join(format!("accounts-{}.json", free_tcp_port()));
        std::fs::write(&accounts, accounts_json(&self::accounts())).unwrap();
        let log_path = dir.join(format!("oidc-provider-{}.log", free_tcp_port()));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&script_dir)
            .env("OIDC_TEST_ACCOUNTS", &accounts)
            .env("OIDC_TEST_CLIENT_ID", CLIENT_ID)
            .env("OIDC_TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_TEST_MODE", mode)
            .env(
                "OIDC_TEST_PORT",
                port.map(|p| p.to_string()).unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting node tests/oidc-provider/provider.mjs");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the OpenID provider did not start within 30 s")
            .unwrap()
            .expect("the OpenID provider exited");
        // Keep reading: a closed pipe would stop the provider.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let issuer = first
            .strip_prefix("issuer ")
            .unwrap_or_else(|| panic!("unexpected first line from the provider: {first}"))
            .to_string();
        Provider {
            issuer,
            accounts,
            log: log_path,
            _child: child,
        }
    }

    /// Changes a person's claims at the provider (read at each login).
    fn update_account(&self, login: &str, changes: Value) {
        let mut all: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.accounts).unwrap()).unwrap();
        for (k, v) in changes.as_object().unwrap() {
            all[login][k] = v.clone();
        }
        std::fs::write(&self.accounts, accounts_json(&all)).unwrap();
    }
}

fn accounts_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

/// The `oidc:` section for a provider at `issuer`; `extra` adds keys.
fn oidc_yaml(issuer: &str, extra: &str) -> String {
    format!(
        "oidc:\n  issuer: {issuer}\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  scope: [openid, profile, email, groups]\n  pkce:\n    enabled: true\n    method: S256\n{extra}"
    )
}

/// A page as the browser ended on it.
#[derive(Debug)]
struct Page {
    url: Url,
    status: StatusCode,
    body: String,
}

/// A person's browser: keeps cookies, follows redirects itself (so a test
/// can stop before one), fills in the provider's login form.
struct Browser {
    http: reqwest::Client,
}

fn attr_after(body: &str, marker: &str, attr: &str) -> Option<String> {
    let rest = &body[body.find(marker)?..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].replace("&amp;", "&"))
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Opens `url` and follows redirects, signing in as `login` when the
    /// provider asks, until a page is shown or the next URL satisfies
    /// `stop_before` (then that URL is returned, not opened).
    async fn walk(
        &self,
        url: &str,
        login: &str,
        stop_before: impl Fn(&Url) -> bool,
    ) -> Result<Page, Url> {
        let mut url = Url::parse(url).unwrap();
        let mut form: Option<Vec<(String, String)>> = None;
        let mut signed_in = false;
        for _ in 0..20 {
            let request = match form.take() {
                Some(f) => self.http.post(url.clone()).form(&f),
                None => self.http.get(url.clone()),
            };
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers()[reqwest::header::LOCATION]
                    .to_str()
                    .unwrap()
                    .to_string();
                url = url.join(&location).unwrap();
                if stop_before(&url) {
                    return Err(url);
                }
                continue;
            }
            let body = response.text().await.unwrap();
            if !signed_in
                && body.contains("name=\"login\"")
                && let Some(action) = attr_after(&body, "<form", "action")
            {
                signed_in = true;
                url = url.join(&action).unwrap();
                form = Some(vec![("login".into(), login.into())]);
                continue;
            }
            return Ok(Page { url, status, body });
        }
        panic!("more than 20 redirects from {url}");
    }

    /// From the AuthURL to the page Headway shows after the provider.
    async fn log_in(&self, auth_url: &str, login: &str) -> Page {
        self.walk(auth_url, login, |_| false).await.unwrap()
    }

    /// Clicks the confirmation button of a confirmation page.
    async fn confirm(&self, page: &Page) -> Page {
        let action = attr_after(&page.body, "<form", "action")
            .unwrap_or_else(|| panic!("no confirmation form in: {}", page.body));
        let csrf = attr_after(&page.body, "name=\"csrf\"", "value").unwrap();
        let url = page.url.join(&action).unwrap();
        let response = self
            .http
            .post(url.clone())
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap();
        Page {
            url,
            status: response.status(),
            body: response.text().await.unwrap(),
        }
    }
}

async fn users(server: &Headway) -> Vec<Value> {
    let v = server.cli_json(&["users", "list"]).await;
    v.as_array()
        .cloned()
        .unwrap_or_else(|| v["users"].as_array().cloned().unwrap_or_default())
}

fn is_callback(url: &Url) -> bool {
    url.path() == "/oidc/callback"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_login_brings_an_official_client_up_as_that_user() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path(), "", None).await;
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: oidc_yaml(
                &provider.issuer,
                "  use_expiry_from_token: false\n  extra_params:\n    login_hint: alice\n",
            ),
        },
    )
    .await;
    let node = Node::start(dir.path(), "laptop", MODERN, &[]).await;
    let up = Up::start(&node, &server).await;
    let auth_url = up.auth_url(&server).await;

    // The AuthURL sends the browser to the provider's authorization
    // endpoint with the configured scopes, PKCE and extra parameters.
    let browser = Browser::new();
    let authorize = browser
        .walk(&auth_url, "alice", |u| u.path() == "/auth")
        .await
        .expect_err("Headway redirects to the provider");
    let q: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["scope"], "openid profile email groups");
    assert_eq!(q["redirect_uri"], format!("{}/oidc/callback", server.url()));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["login_hint"], "alice");
    assert!(q["state"].len() >= 16 && q["nonce"].len() >= 16, "{q:?}");
    assert!(!q.contains_key("code_verifier"));

    // After signing in, Headway asks to confirm the machine, naming it and
    // the person.
    let page = browser
        .walk(authorize.as_str(), "alice", |_| false)
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("laptop"), "{}", page.body);
    assert!(page.body.contains("Alice Liddell"), "{}", page.body);
    assert!(
        users(&server).await.is_empty(),
        "nothing is created before the person confirms"
    );

    let done = browser.confirm(&page).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("is logged in as"), "{}", done.body);

    // The waiting `tailscale up` completes by itself.
    let (ok, out) = up.finish().await;
    assert!(ok, "tailscale up failed: {out}");
    let status = node.status().await;
    assert_eq!(status["BackendState"], "Running", "{status}");
    let uid = status["Self"]["UserID"].to_string();
    assert_eq!(
        status["User"][&uid]["LoginName"], "alice@example.com",
        "{status}"
    );
    assert_eq!(status["User"][&uid]["DisplayName"], "Alice Liddell");

    // The server's view: one user from the provider, owning the node.
    let all = users(&server).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let alice = &all[0];
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["provider"], "oidc");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["displayName"], "Alice Liddell");
    assert_eq!(alice["profilePicUrl"], "https://pics.example.com/alice.png");
    assert_eq!(
        alice["providerId"],
        format!("{}/248289761001", provider.issuer)
    );
    let nodes = server.nodes().await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["user"]["name"], "alice");
    assert!(
        nodes[0]["expiry"].is_null(),
        "node.expiry is off: {}",
        nodes[0]
    );
    assert!(
        nodes[0]["registerMethod"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("oidc"),
        "{}",
        nodes[0]
    );

    // The same person, whose e-mail and name changed at the provider, logs
    // in a second machine: same user, details brought up to date.
    provider.update_account(
        "alice",
        json!({"email": "alice@wonderland.example", "name": "Alice L."}),
    );
    let second = Node::start(dir.path(), "desktop", MODERN, &[]).await;
    let up = Up::start(&second, &server).await;
    let auth_url = up.auth_url(&server).await;
    let browser = Browser::new();
    let page = browser.log_in(&auth_url, "alice").await;
    let done = browser.confirm(&page).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (ok, out) = up.finish().await;
    assert!(ok, "second tailscale up failed: {out}");
    let all = users(&server).await;
    assert_eq!(all.len(), 1, "same subject, same user: {all:?}");
    assert_eq!(all[0]["id"], alice["id"]);
    assert_eq!(all[0]["email"], "alice@wonderland.example");
    assert_eq!(all[0]["displayName"], "Alice L.");
    let nodes = server.nodes().await;
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n["user"]["id"] == alice["id"]));
    second.wait_sees_online(&["laptop"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_are_not_allowed_get_a_clear_page_and_nothing_is_created() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path(), "", None).await;
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: oidc_yaml(
                &provider.issuer,
                "  allowed_domains: [example.com]\n  allowed_users: [alice@example.com, bob@example.com, dave@example.com]\n  allowed_groups: [vpn]\n  use_expiry_from_token: true\n",
            ),
        },
    )
    .await;
    let node = Node::start(dir.path(), "kiosk", MODERN, &[]).await;
    let mut up = Up::start(&node, &server).await;
    let auth_url = up.auth_url(&server).await;

    for (login, why) in [
        ("mallory", "e-mail domain is not one of those allowed"),
        ("carol", "account is not one of those allowed"),
        ("bob", "not in any of the groups allowed"),
        ("dave", "e-mail address is not verified"),
    ] {
        let page = Browser::new().log_in(&auth_url, login).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{login}: {}", page.body);
        assert!(page.body.contains("Not allowed"), "{login}: {}", page.body);
        assert!(page.body.contains(why), "{login}: {}", page.body);
        assert!(page.body.contains("Nothing was created"), "{}", page.body);
        assert!(
            users(&server).await.is_empty(),
            "{login}: a user was created"
        );
        assert!(
            server.nodes().await.is_empty(),
            "{login}: a node was created"
        );
        assert!(up.still_waiting(), "{login}: the client stopped waiting");
    }

    // The link still works for someone who is allowed.
    let browser = Browser::new();
    let page = browser.log_in(&auth_url, "alice").await;
    let done = browser.confirm(&page).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (ok, out) = up.finish().await;
    assert!(ok, "{out}");
    let all = users(&server).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["name"], "alice");

    // use_expiry_from_token: the node key expires with the ID token
    // (oidc-provider issues them for an hour), not never (node.expiry off).
    let nodes = server.nodes().await;
    let time = |key: &str| {
        nodes[0][key]
            .as_str()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .unwrap_or_else(|| panic!("no {key} on the node: {}", nodes[0]))
    };
    let left = time("expiry") - time("createdAt");
    assert!(
        left > chrono::Duration::minutes(55) && left <= chrono::Duration::minutes(60),
        "the node expires {left} after its creation, not with the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_signed_with_a_key_the_provider_does_not_publish_is_refused() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    // This provider signs with one key and publishes another under its ID.
    let provider = Provider::start(dir.path(), "wrong-jwks", None).await;
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: oidc_yaml(&provider.issuer, ""),
        },
    )
    .await;
    let node = Node::start(dir.path(), "victim", MODERN, &[]).await;
    let mut up = Up::start(&node, &server).await;
    let auth_url = up.auth_url(&server).await;
    let page = Browser::new().log_in(&auth_url, "alice").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("could not be verified"), "{}", page.body);
    assert!(users(&server).await.is_empty());
    assert!(server.nodes().await.is_empty());
    assert!(up.still_waiting());
    let log = server.log_text();
    assert!(log.contains("failed verification"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_a_wrong_foreign_or_replayed_state_is_refused() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path(), "", None).await;
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: oidc_yaml(&provider.issuer, ""),
        },
    )
    .await;
    let node = Node::start(dir.path(), "target", MODERN, &[]).await;
    let mut up = Up::start(&node, &server).await;
    let auth_url = up.auth_url(&server).await;

    // Sign in, but stop before the provider's redirect back to Headway.
    let browser = Browser::new();
    let callback = browser
        .walk(&auth_url, "alice", is_callback)
        .await
        .expect_err("the provider redirects to the callback");
    let state = callback
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    // Another state: unknown.
    let mut tampered = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let page = browser
        .walk(tampered.as_str(), "alice", |_| false)
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("unknown, has expired"), "{}", page.body);

    // The right state from another browser (no state cookie): refused, and
    // the login is spent.
    let page = Browser::new()
        .walk(callback.as_str(), "alice", |_| false)
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.body.contains("not started in this browser"),
        "{}",
        page.body
    );

    // Replayed in the right browser: single use.
    let page = browser
        .walk(callback.as_str(), "alice", |_| false)
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(!state.is_empty());

    // A callback without any state at all.
    let page = browser
        .walk(
            &format!("{}/oidc/callback?code=abc", server.url()),
            "alice",
            |_| false,
        )
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);

    assert!(users(&server).await.is_empty());
    assert!(server.nodes().await.is_empty());
    assert!(up.still_waiting());

    // The machine can still log in properly through its link.
    let browser = Browser::new();
    let page = browser.log_in(&auth_url, "alice").await;
    let done = browser.confirm(&page).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (ok, out) = up.finish().await;
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_stops_the_start_or_is_retried_as_configured() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let issuer = format!("http://127.0.0.1:{port}");

    // only_start_if_oidc_is_available (the default): the server refuses to start.
    let strict = dir.path().join("strict");
    std::fs::create_dir_all(&strict).unwrap();
    let config = strict.join("config.yaml");
    let p = free_tcp_port();
    std::fs::write(
        &config,
        format!(
            "server_url: http://127.0.0.1:{p}\nlisten_addr: 127.0.0.1:{p}\ndata_dir: {data}\nunix_socket: {sock}\nderp:\n  server:\n    enabled: false\n  urls: []\n{oidc}",
            data = strict.join("data").display(),
            sock = strict.join("headway.sock").display(),
            oidc = oidc_yaml(&issuer, ""),
        ),
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        headway_command()
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("headway serve should stop at once")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("only_start_if_oidc_is_available"), "{text}");
    assert!(text.contains(&issuer), "{text}");

    // Set to false: the server starts, says why OIDC is not ready, and
    // logins work once the provider is up.
    let lenient = dir.path().join("lenient");
    std::fs::create_dir_all(&lenient).unwrap();
    let server = Headway::start(
        &lenient,
        ServerOpts {
            extra_yaml: oidc_yaml(&issuer, "  only_start_if_oidc_is_available: false\n"),
        },
    )
    .await;
    assert!(
        server.log_text().contains("starting anyway"),
        "{}",
        server.log_text()
    );
    let node = Node::start(&lenient, "early", MODERN, &[]).await;
    let up = Up::start(&node, &server).await;
    let auth_url = up.auth_url(&server).await;
    let page = Browser::new().log_in(&auth_url, "alice").await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );

    let _provider = Provider::start(&lenient, "", Some(port)).await;
    // Discovery is retried at most every 10 s.
    let browser = Browser::new();
    let page = eventually(
        Duration::from_secs(30),
        "discovery to be retried",
        async || {
            let page = browser.log_in(&auth_url, "alice").await;
            (page.status == StatusCode::OK).then_some(page)
        },
    )
    .await;
    let done = browser.confirm(&page).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (ok, out) = up.finish().await;
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_check_is_passed_by_the_source_owner_signing_in_again() {
    use crate::ssh_check::{Ssh, policy, rule, set_policy, wait_ssh_policy};
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path(), "", None).await;
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: format!(
                "policy:\n  mode: database\n{}",
                oidc_yaml(&provider.issuer, "")
            ),
        },
    )
    .await;
    set_policy(&server, &policy(&rule("check", r#", "checkPeriod": "1h""#))).await;

    // alice logs her laptop in through the provider.
    let laptop = Node::start(dir.path(), "laptop", MODERN, &[]).await;
    let up = Up::start(&laptop, &server).await;
    let auth_url = up.auth_url(&server).await;
    let browser = Browser::new();
    let page = browser.log_in(&auth_url, "alice").await;
    let done = browser.confirm(&page).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (ok, out) = up.finish().await;
    assert!(ok, "tailscale up failed: {out}");

    // A tagged server with Tailscale SSH, from a key for the tag alone.
    let key = server
        .cli_json(&[
            "preauthkeys",
            "create",
            "--tags",
            "tag:server",
            "--expiration",
            "1h",
        ])
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let db = Node::start(dir.path(), "db", MODERN, &[]).await;
    let (ok, out) = db.up(&server, &key, &["--ssh"]).await;
    assert!(ok, "tailscale up --ssh: {out}");
    let db_ip = db.ipv4().await;
    laptop.wait_sees_online(&["db"]).await;
    wait_ssh_policy(&db, true, 1).await;

    let mut ssh = Ssh::start(&laptop, db_ip);
    let id = ssh.check_id(&server).await;
    let link = format!("{}/register/{id}", server.url());

    // Someone else signing in at the link approves nothing.
    let page = Browser::new().log_in(&link, "bob").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("not approved"), "{}", page.body);
    assert!(
        users(&server).await.len() == 1,
        "signing in at an SSH check creates nobody"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ssh.still_waiting(), "ssh went on: {}", ssh.output());

    // alice signs in again: the connection goes through, no admin involved.
    let page = Browser::new().log_in(&link, "alice").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("SSH connection approved"),
        "{}",
        page.body
    );
    let (ok, out) = ssh.finish().await;
    assert!(ok && out.lines().any(|l| l == "ok"), "{out}");

    // The link is used up.
    let page = Browser::new().log_in(&link, "alice").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
}

/// The API keys the server holds.
async fn api_keys(server: &Headway) -> Vec<Value> {
    let v = server.cli_json(&["apikeys", "list"]).await;
    v.as_array()
        .cloned()
        .unwrap_or_else(|| v["apiKeys"].as_array().cloned().unwrap_or_default())
}

/// Signs in to the console at the provider as `login`; returns the page
/// the browser ends on.
async fn console_sign_in(server: &Headway, login: &str) -> (Browser, Page) {
    let browser = Browser::new();
    let page = browser
        .walk(&format!("{}/admin/oidc/start", server.url()), login, |_| {
            false
        })
        .await
        .unwrap();
    (browser, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_sign_in_to_the_console_with_the_provider_and_nobody_else_does() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(dir.path(), "", None).await;
    // Machine logins are for the vpn group; the console is for the staff
    // group and two named addresses (dave's is not verified).
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: format!(
                "{}console:\n  admins: [carol@example.com, dave@example.com]\n  admin_groups: [staff]\n",
                oidc_yaml(&provider.issuer, "  allowed_groups: [vpn]\n")
            ),
        },
    )
    .await;

    // The sign-in page offers the provider.
    let browser = Browser::new();
    let login_page = browser
        .walk(&format!("{}/admin/login", server.url()), "", |_| false)
        .await
        .unwrap();
    assert!(
        login_page.body.contains("href=\"/admin/oidc/start\""),
        "{}",
        login_page.body
    );

    // The console's own callback, PKCE and the configured scopes.
    let authorize = browser
        .walk(&format!("{}/admin/oidc/start", server.url()), "bob", |u| {
            u.path() == "/auth"
        })
        .await
        .expect_err("the console redirects to the provider");
    let q: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(
        q["redirect_uri"],
        format!("{}/admin/oidc/callback", server.url())
    );
    assert_eq!(q["scope"], "openid profile email groups");
    assert_eq!(q["code_challenge_method"], "S256");

    // Bob is in the staff group: signed in (machine logins' allowed_groups
    // do not apply to the console), with an API key minted for the session.
    let page = browser
        .walk(authorize.as_str(), "bob", |_| false)
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.url.path(), "/admin", "{}", page.body);
    assert!(page.body.contains("bob@example.com"), "{}", page.body);
    assert!(page.body.contains("Overview"), "{}", page.body);
    assert_eq!(api_keys(&server).await.len(), 1);
    let users_page = browser
        .walk(&format!("{}/admin/users", server.url()), "", |_| false)
        .await
        .unwrap();
    assert_eq!(users_page.status, StatusCode::OK);
    assert!(users_page.body.contains("Create a user"));

    // Carol is named by her verified address.
    let (_, page) = console_sign_in(&server, "carol").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.url.path(), "/admin");
    assert!(page.body.contains("carol@example.com"), "{}", page.body);
    assert_eq!(api_keys(&server).await.len(), 2);

    // Mallory is neither; Dave's address is named but not verified.
    for login in ["mallory", "dave"] {
        let (browser, page) = console_sign_in(&server, login).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{login}: {}", page.body);
        assert!(
            page.body.contains("is not an administrator"),
            "{login}: {}",
            page.body
        );
        let next = browser
            .walk(&format!("{}/admin/nodes", server.url()), "", |u| {
                u.path() == "/admin/login"
            })
            .await;
        assert!(next.is_err(), "{login} has a session: {next:?}");
        assert_eq!(api_keys(&server).await.len(), 2, "{login} got a key");
    }
    assert!(
        users(&server).await.is_empty(),
        "signing in to the console creates no user"
    );

    // What bob does in the console is his in the audit log, and his
    // session's key says whose it is.
    let at = page_csrf(&users_page.body);
    let response = browser
        .http
        .post(format!("{}/admin/users", server.url()))
        .form(&[("_csrf", at.as_str()), ("name", "eve")])
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success() || response.status().is_redirection(),
        "{}",
        response.status()
    );
    let keys = api_keys(&server).await;
    assert!(
        keys.iter()
            .any(|k| k["description"] == "console:bob@example.com"),
        "{keys:?}"
    );
    let entries = server
        .cli_json(&["audit", "list", "--action", "user.create"])
        .await;
    let by_bob = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["after"]["name"] == "eve")
        .unwrap_or_else(|| panic!("no user.create of eve in {entries:#}"));
    assert!(
        by_bob["actor"]
            .as_str()
            .unwrap()
            .starts_with("console:bob@example.com (api_key:"),
        "{by_bob:#}"
    );
    // Nobody can forge such a key over the network.
    let key = server.cli_json(&["apikeys", "create"]).await;
    let key = key["apiKey"]
        .as_str()
        .or(key.as_str())
        .unwrap_or_default()
        .to_string();
    let forged = reqwest::Client::new()
        .post(format!("{}/api/v1/apikey", server.url()))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(json!({"description": "console:ceo@example.com"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Signing out ends the session and deletes its key.
    let response = browser
        .http
        .post(format!("{}/admin/logout", server.url()))
        .form(&[("_csrf", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        api_keys(&server).await.len(),
        2,
        "carol's and the one made above"
    );
    let after = browser
        .walk(&format!("{}/admin/users", server.url()), "", |u| {
            u.path() == "/admin/login"
        })
        .await;
    assert!(after.is_err(), "still signed in: {after:?}");
}

/// The CSRF token a console page carries.
fn page_csrf(body: &str) -> String {
    attr_after(body, "name=\"csrf-token\"", "content")
        .unwrap_or_else(|| panic!("no CSRF token in: {body}"))
}

//! The router in process: every operation's happy path, each class of
//! error, and that a refused request changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, TimeZone, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::memstore::MemStore;
use headway_state::model;
use headway_state::settings::Settings;
use headway_state::tailnet::{NewPreAuthKey, NewUser};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Kit {
    tailnet: Arc<Tailnet>,
    store: MemStore,
    clock: Arc<ManualClock>,
    router: Router,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl Reply {
    /// Asserts a problem document with this status, and returns its detail.
    #[track_caller]
    fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:headway:problem:"),
            "{:#}",
            self.body
        );
        assert!(!self.body["title"].as_str().unwrap().is_empty());
        self.body["detail"].as_str().unwrap().to_string()
    }

    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{:#}", self.body);
        assert_eq!(self.content_type, "application/json");
        &self.body
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

impl Kit {
    async fn new() -> Self {
        Self::with_settings(Settings::default()).await
    }

    async fn with_settings(settings: Settings) -> Self {
        let store = MemStore::default();
        let clock = Arc::new(ManualClock::new(t0()));
        let tailnet = Tailnet::load(Arc::new(store.clone()), clock.clone(), settings)
            .await
            .unwrap();
        let router = crate::router(tailnet.clone());
        Kit {
            tailnet,
            store,
            clock,
            router,
        }
    }

    async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            content_type,
            body,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        match body {
            Some(b) => {
                self.raw(
                    method,
                    uri,
                    Body::from(b.to_string()),
                    Some("application/json"),
                )
                .await
            }
            None => self.raw(method, uri, Body::empty(), None).await,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None).await
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

    /// A node of `user` registered with a pre-auth key; `n` makes its keys unique.
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

    /// A node of `user` that announces `routes` (`--advertise-routes`).
    async fn router(&self, user: &model::User, n: u8, host: &str, routes: &[&str]) -> model::Node {
        let node = self.node(user, n, host).await;
        let req = headway_proto::tailcfg::MapRequest {
            version: 133,
            node_key: NodePublic([n; 32]),
            hostinfo: Some(Hostinfo {
                hostname: host.into(),
                routable_ips: routes.iter().map(|r| r.parse().unwrap()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.tailnet
            .apply_map_request(MachinePublic([n; 32]), &req)
            .await
            .unwrap();
        (*self.tailnet.node(node.id).unwrap()).clone()
    }

    async fn put(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::PUT, uri, Some(body)).await
    }

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

    /// Everything the API can change, to check that a refusal changed nothing.
    fn snapshot(&self) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            self.tailnet.users(),
            self.tailnet.list_preauth_keys(None),
            self.tailnet.list_nodes(None),
            self.tailnet.policy_info(),
            self.tailnet.list_oauth_clients()
        )
    }

    /// Sends the request, expects the problem status, and checks nothing changed.
    async fn refused(&self, method: Method, uri: &str, body: Option<Value>, status: u16) -> String {
        let before = self.snapshot();
        let detail = self.call(method, uri, body).await.problem(status);
        assert_eq!(
            self.snapshot(),
            before,
            "a refused request changed the tailnet"
        );
        detail
    }
}

// --- health, routing, errors ------------------------------------------------

#[tokio::test]
async fn health_reports_the_database() {
    let k = Kit::new().await;
    assert_eq!(
        k.get("/api/v1/health").await.ok(),
        &json!({"databaseConnectivity": true})
    );
    k.store.fail_commits(true);
    let detail = k.get("/api/v1/health").await.problem(503);
    assert!(detail.contains("database"), "{detail}");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let k = Kit::new().await;
    let detail = k.get("/api/v1/nope").await.problem(404);
    assert!(detail.contains("/api/v1/nope"), "{detail}");
    assert_eq!(
        k.get("/api/v1/nope").await.body["type"],
        "urn:headway:problem:no_route"
    );
    let detail = k.call(Method::PUT, "/api/v1/user", None).await.problem(405);
    assert!(detail.contains("PUT"), "{detail}");
}

#[tokio::test]
async fn a_storage_failure_is_a_500_and_changes_nothing() {
    let k = Kit::new().await;
    k.user("alice").await;
    k.store.fail_commits(true);
    let detail = k
        .refused(
            Method::POST,
            "/api/v1/user",
            Some(json!({"name": "bob"})),
            500,
        )
        .await;
    assert!(detail.contains("storage"), "{detail}");
    k.refused(Method::DELETE, "/api/v1/user/1", None, 500).await;
}

#[tokio::test]
async fn malformed_bodies_are_400_and_say_where() {
    let k = Kit::new().await;
    let before = k.snapshot();
    let detail = k
        .raw(
            Method::POST,
            "/api/v1/user",
            Body::from("{\"name\": "),
            Some("application/json"),
        )
        .await
        .problem(400);
    assert!(detail.contains("request body"), "{detail}");
    let detail = k
        .post("/api/v1/user", json!({"name": 5}))
        .await
        .problem(400);
    assert!(detail.contains("name"), "{detail}");
    let detail = k
        .post("/api/v1/preauthkey", json!({"user": "alice"}))
        .await
        .problem(400);
    assert!(
        detail.contains("user") && detail.contains("not an id"),
        "{detail}"
    );
    let detail = k
        .post("/api/v1/preauthkey", json!({"user": -3}))
        .await
        .problem(400);
    assert!(detail.contains("user"), "{detail}");
    let detail = k
        .post("/api/v1/preauthkey", json!({"expiration": "tomorrow"}))
        .await
        .problem(400);
    assert!(detail.contains("expiration"), "{detail}");
    let detail = k.post("/api/v1/user", json!(["alice"])).await.problem(400);
    assert!(detail.contains("request body"), "{detail}");
    assert_eq!(k.snapshot(), before);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let k = Kit::new().await;
    let big = format!(
        "{{\"name\": \"{}\"}}",
        "a".repeat(crate::MAX_BODY_BYTES + 1)
    );
    let before = k.snapshot();
    k.raw(
        Method::POST,
        "/api/v1/user",
        Body::from(big),
        Some("application/json"),
    )
    .await
    .problem(413);
    assert_eq!(k.snapshot(), before);
}

#[tokio::test]
async fn bodies_are_read_whatever_their_content_type() {
    let k = Kit::new().await;
    let r = k
        .raw(
            Method::POST,
            "/api/v1/user",
            Body::from(r#"{"name":"alice"}"#),
            None,
        )
        .await;
    assert_eq!(r.ok()["user"]["name"], "alice");
}

// --- users ------------------------------------------------------------------

#[tokio::test]
async fn create_user_answers_headscales_shape() {
    let k = Kit::new().await;
    let body = json!({"name": "alice", "displayName": "Alice A.", "email": "alice@example.com", "pictureUrl": "https://example.com/a.png"});
    let r = k.post("/api/v1/user", body).await;
    assert_eq!(
        r.ok(),
        &json!({"user": {
            "id": "1",
            "name": "alice",
            "createdAt": "2026-01-01T00:00:00Z",
            "displayName": "Alice A.",
            "email": "alice@example.com",
            "providerId": "",
            "provider": "",
            "profilePicUrl": "https://example.com/a.png",
        }})
    );
    assert_eq!(
        k.tailnet.resolve_user("alice").unwrap().display_name,
        "Alice A."
    );
}

#[tokio::test]
async fn create_user_refusals() {
    let k = Kit::new().await;
    k.user("alice").await;
    let detail = k
        .refused(
            Method::POST,
            "/api/v1/user",
            Some(json!({"name": "alice"})),
            409,
        )
        .await;
    assert!(detail.contains("alice"), "{detail}");
    k.refused(
        Method::POST,
        "/api/v1/user",
        Some(json!({"name": "no spaces"})),
        422,
    )
    .await;
    k.refused(Method::POST, "/api/v1/user", Some(json!({})), 422)
        .await;
    k.refused(
        Method::POST,
        "/api/v1/user",
        Some(json!({"name": "bob", "email": "nope"})),
        422,
    )
    .await;
}

#[tokio::test]
async fn list_users_with_filters() {
    let k = Kit::new().await;
    k.user("alice").await;
    k.tailnet
        .create_user(NewUser {
            name: "bob".into(),
            email: "bob@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let names = |r: &Reply| -> Vec<String> {
        r.ok()["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&k.get("/api/v1/user").await), ["alice", "bob"]);
    assert_eq!(names(&k.get("/api/v1/user?name=bob").await), ["bob"]);
    assert_eq!(
        names(&k.get("/api/v1/user?email=bob%40example.com").await),
        ["bob"]
    );
    assert_eq!(names(&k.get("/api/v1/user?id=1").await), ["alice"]);
    assert_eq!(names(&k.get("/api/v1/user?id=0").await), ["alice", "bob"]);
    // name wins over id, as in headscale.
    assert_eq!(names(&k.get("/api/v1/user?id=1&name=bob").await), ["bob"]);
    assert!(names(&k.get("/api/v1/user?name=carol").await).is_empty());
    let detail = k.get("/api/v1/user?id=abc").await.problem(400);
    assert!(
        detail.contains("query parameter id") && detail.contains("abc"),
        "{detail}"
    );
}

#[tokio::test]
async fn lists_come_in_pages_when_asked() {
    let k = Kit::new().await;
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        k.user(name).await;
    }
    for _ in 0..3 {
        k.post("/api/v1/apikey", json!({})).await.ok();
    }
    // Without pageSize: the whole list and no token, as headscale answers.
    let all = k.get("/api/v1/user").await;
    assert_eq!(all.ok()["users"].as_array().unwrap().len(), 5);
    assert!(all.ok().get("nextPageToken").is_none(), "{:#}", all.body);

    // Page by page, following the tokens, every user exactly once, in order.
    let mut seen = Vec::new();
    let mut url = "/api/v1/user?pageSize=2".to_string();
    let mut pages = 0;
    loop {
        let r = k.get(&url).await;
        let body = r.ok();
        let users = body["users"].as_array().unwrap();
        assert!(users.len() <= 2);
        seen.extend(
            users
                .iter()
                .map(|u| u["name"].as_str().unwrap().to_string()),
        );
        pages += 1;
        match body["nextPageToken"].as_str() {
            Some(t) => url = format!("/api/v1/user?pageSize=2&pageToken={t}"),
            None => break,
        }
    }
    assert_eq!(
        (pages, seen),
        (
            3,
            vec!["u1", "u2", "u3", "u4", "u5"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        )
    );

    // The filters and pages combine; other lists page the same way.
    let r = k.get("/api/v1/user?name=u3&pageSize=1").await;
    assert_eq!(r.ok()["users"][0]["name"], "u3");
    assert!(r.ok().get("nextPageToken").is_none());
    let r = k.get("/api/v1/apikey?pageSize=2").await;
    assert_eq!(r.ok()["apiKeys"].as_array().unwrap().len(), 2);
    let t = r.ok()["nextPageToken"].as_str().unwrap().to_string();
    let r = k
        .get(&format!("/api/v1/apikey?pageSize=2&pageToken={t}"))
        .await;
    assert_eq!(r.ok()["apiKeys"].as_array().unwrap().len(), 1);
    for path in ["/api/v1/node", "/api/v1/preauthkey", "/api/v1/oauthclient"] {
        k.get(&format!("{path}?pageSize=1")).await.ok();
    }

    // Bad sizes and tokens are 400s that name the parameter.
    for (query, what) in [
        ("pageSize=0", "pageSize"),
        ("pageSize=5000", "pageSize"),
        ("pageSize=many", "pageSize"),
        ("pageToken=xyz", "pageToken"),
    ] {
        for path in ["/api/v1/user", "/api/v1/node", "/api/v1/apikey"] {
            let detail = k.get(&format!("{path}?{query}")).await.problem(400);
            assert!(detail.contains(what), "{path}?{query}: {detail}");
        }
    }
}

#[tokio::test]
async fn rename_user() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    k.user("bob").await;
    let r = k
        .call(
            Method::POST,
            &format!("/api/v1/user/{}/rename/carol", alice.id),
            None,
        )
        .await;
    assert_eq!(r.ok()["user"]["name"], "carol");
    assert_eq!(r.body["user"]["id"], alice.id.to_string());
    assert_eq!(k.tailnet.user(alice.id).unwrap().name, "carol");

    k.refused(
        Method::POST,
        &format!("/api/v1/user/{}/rename/bob", alice.id),
        None,
        409,
    )
    .await;
    k.refused(
        Method::POST,
        &format!("/api/v1/user/{}/rename/bad%20name", alice.id),
        None,
        422,
    )
    .await;
    k.refused(Method::POST, "/api/v1/user/99/rename/dave", None, 404)
        .await;
    let detail = k
        .refused(Method::POST, "/api/v1/user/alice/rename/dave", None, 400)
        .await;
    assert!(
        detail.contains("oldId") && detail.contains("alice"),
        "{detail}"
    );
}

#[tokio::test]
async fn delete_user() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let bob = k.user("bob").await;
    k.node(&bob, 1, "laptop").await;
    assert_eq!(
        k.delete(&format!("/api/v1/user/{}", alice.id)).await.ok(),
        &json!({})
    );
    assert!(k.tailnet.user(alice.id).is_none());

    let detail = k
        .refused(
            Method::DELETE,
            &format!("/api/v1/user/{}", bob.id),
            None,
            409,
        )
        .await;
    assert!(detail.contains("node"), "{detail}");
    k.refused(
        Method::DELETE,
        &format!("/api/v1/user/{}", alice.id),
        None,
        404,
    )
    .await;
    k.refused(Method::DELETE, "/api/v1/user/x1", None, 400)
        .await;
    k.refused(Method::DELETE, "/api/v1/user/-1", None, 400)
        .await;
}

// --- pre-auth keys ------------------------------------------------------------

#[tokio::test]
async fn create_preauth_key_returns_the_full_key_once() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let expiration = t0() + Duration::hours(24);
    let r = k
        .post(
            "/api/v1/preauthkey",
            json!({"user": alice.id.to_string(), "reusable": true, "expiration": expiration, "aclTags": []}),
        )
        .await;
    let key = &r.ok()["preAuthKey"];
    let text = key["key"].as_str().unwrap();
    assert!(
        text.starts_with("hskey-auth-") && !text.ends_with("***"),
        "{text}"
    );
    assert_eq!(key["user"]["name"], "alice");
    assert_eq!(key["reusable"], true);
    assert_eq!(key["ephemeral"], false);
    assert_eq!(key["used"], false);
    assert_eq!(key["expiration"], "2026-01-02T00:00:00Z");
    assert_eq!(key["createdAt"], "2026-01-01T00:00:00Z");
    assert_eq!(key["aclTags"], json!([]));

    // The listing never shows the secret.
    let list = k.get("/api/v1/preauthkey").await;
    let listed = &list.ok()["preAuthKeys"][0];
    assert_eq!(listed["id"], key["id"]);
    let masked = listed["key"].as_str().unwrap();
    assert!(masked.ends_with("-***"), "{masked}");
    assert!(
        text.starts_with(masked.trim_end_matches("***")),
        "{masked} vs {text}"
    );
    assert!(
        !list
            .body
            .to_string()
            .contains(&text["hskey-auth-".len() + 13..])
    );
}

#[tokio::test]
async fn create_preauth_key_for_tags_alone_and_with_a_numeric_user() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let r = k
        .post(
            "/api/v1/preauthkey",
            json!({"aclTags": ["tag:server"], "ephemeral": true}),
        )
        .await;
    assert_eq!(r.ok()["preAuthKey"]["user"], Value::Null);
    assert_eq!(r.body["preAuthKey"]["aclTags"], json!(["tag:server"]));
    assert_eq!(r.body["preAuthKey"]["expiration"], Value::Null);
    let r = k
        .post("/api/v1/preauthkey", json!({"user": alice.id}))
        .await;
    assert_eq!(r.ok()["preAuthKey"]["user"]["id"], alice.id.to_string());
}

#[tokio::test]
async fn create_preauth_key_refusals() {
    let k = Kit::new().await;
    k.user("alice").await;
    k.refused(
        Method::POST,
        "/api/v1/preauthkey",
        Some(json!({"user": "99"})),
        404,
    )
    .await;
    let detail = k
        .refused(Method::POST, "/api/v1/preauthkey", Some(json!({})), 422)
        .await;
    assert!(detail.contains("user"), "{detail}");
    k.refused(
        Method::POST,
        "/api/v1/preauthkey",
        Some(json!({"user": "1", "aclTags": ["server"]})),
        422,
    )
    .await;
    let past = t0() - Duration::hours(1);
    k.refused(
        Method::POST,
        "/api/v1/preauthkey",
        Some(json!({"user": "1", "expiration": past})),
        422,
    )
    .await;
}

#[tokio::test]
async fn list_preauth_keys_by_user() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let bob = k.user("bob").await;
    for user in [&alice, &bob, &bob] {
        k.tailnet
            .create_preauth_key(NewPreAuthKey {
                user: Some(user.id),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let count = |r: Reply| r.ok()["preAuthKeys"].as_array().unwrap().len();
    assert_eq!(count(k.get("/api/v1/preauthkey").await), 3);
    assert_eq!(
        count(k.get(&format!("/api/v1/preauthkey?user={}", bob.id)).await),
        2
    );
    assert_eq!(count(k.get("/api/v1/preauthkey?user=alice").await), 1);
    assert_eq!(count(k.get("/api/v1/preauthkey?user=0").await), 3);
    k.get("/api/v1/preauthkey?user=carol").await.problem(404);
    k.get("/api/v1/preauthkey?user=99").await.problem(404);
}

#[tokio::test]
async fn expire_preauth_key_by_id_or_by_key() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let bob = k.user("bob").await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(
            k.tailnet
                .create_preauth_key(NewPreAuthKey {
                    user: Some(alice.id),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    let expired = |id: i64| {
        k.tailnet
            .find_preauth_key(&id.to_string())
            .unwrap()
            .is_expired(k.tailnet.now())
    };

    assert_eq!(
        k.post(
            "/api/v1/preauthkey/expire",
            json!({"id": made[0].0.id.to_string()})
        )
        .await
        .ok(),
        &json!({})
    );
    assert!(expired(made[0].0.id));
    // headscale 0.27: the key's text and its owner.
    let r = k
        .post(
            "/api/v1/preauthkey/expire",
            json!({"user": alice.id, "key": made[1].1}),
        )
        .await;
    r.ok();
    assert!(expired(made[1].0.id));
    // The masked form a listing shows.
    let masked = format!("hskey-auth-{}-***", made[2].0.prefix);
    k.refused(
        Method::POST,
        "/api/v1/preauthkey/expire",
        Some(json!({"user": bob.id, "key": masked})),
        404,
    )
    .await;
    k.post("/api/v1/preauthkey/expire", json!({"key": masked}))
        .await
        .ok();
    assert!(expired(made[2].0.id));

    k.refused(
        Method::POST,
        "/api/v1/preauthkey/expire",
        Some(json!({"id": "99"})),
        404,
    )
    .await;
    // An unknown key's secret is not echoed back.
    let unknown = format!("hskey-auth-ffffffffffff-{}", "e".repeat(64));
    let detail = k
        .refused(
            Method::POST,
            "/api/v1/preauthkey/expire",
            Some(json!({"key": unknown})),
            404,
        )
        .await;
    assert!(
        detail.contains("ffffffffffff") && !detail.contains("eeee"),
        "{detail}"
    );
    let detail = k
        .refused(
            Method::POST,
            "/api/v1/preauthkey/expire",
            Some(json!({})),
            400,
        )
        .await;
    assert!(detail.contains("id"), "{detail}");
    k.refused(
        Method::POST,
        "/api/v1/preauthkey/expire",
        Some(json!({"id": "x"})),
        400,
    )
    .await;
}

#[tokio::test]
async fn delete_preauth_key() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let (key, _) = k
        .tailnet
        .create_preauth_key(NewPreAuthKey {
            user: Some(alice.id),
            ..Default::default()
        })
        .await
        .unwrap();
    k.refused(Method::DELETE, "/api/v1/preauthkey", None, 400)
        .await;
    k.refused(Method::DELETE, "/api/v1/preauthkey?id=abc", None, 400)
        .await;
    k.refused(Method::DELETE, "/api/v1/preauthkey?id=99", None, 404)
        .await;
    assert_eq!(
        k.delete(&format!("/api/v1/preauthkey?id={}", key.id))
            .await
            .ok(),
        &json!({})
    );
    assert!(k.tailnet.list_preauth_keys(None).is_empty());
}

// --- nodes ------------------------------------------------------------------

#[tokio::test]
async fn get_node_answers_headscales_shape() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k.node(&alice, 1, "My Laptop").await;
    let r = k.get(&format!("/api/v1/node/{}", node.id)).await;
    let n = &r.ok()["node"];
    assert_eq!(n["id"], node.id.to_string());
    assert_eq!(n["machineKey"], format!("mkey:{}", "01".repeat(32)));
    assert_eq!(n["nodeKey"], format!("nodekey:{}", "01".repeat(32)));
    assert!(n["discoKey"].as_str().unwrap().starts_with("discokey:"));
    assert_eq!(n["ipAddresses"], json!(["100.64.0.1", "fd7a:115c:a1e0::1"]));
    assert_eq!(n["name"], "My Laptop");
    assert_eq!(n["givenName"], "my-laptop");
    assert_eq!(n["user"]["name"], "alice");
    assert_eq!(n["registerMethod"], "REGISTER_METHOD_AUTH_KEY");
    assert_eq!(n["online"], false);
    assert_eq!(n["createdAt"], "2026-01-01T00:00:00Z");
    assert_eq!(n["expiry"], Value::Null);
    assert!(n.get("lastSeen").is_some());
    assert!(n["preAuthKey"]["key"].as_str().unwrap().ends_with("-***"));
    assert_eq!(n["tags"], json!([]));
    assert_eq!(n["approvedRoutes"], json!([]));
    assert_eq!(n["availableRoutes"], json!([]));
    assert_eq!(n["subnetRoutes"], json!([]));

    k.get("/api/v1/node/99").await.problem(404);
    let detail = k.get("/api/v1/node/laptop").await.problem(400);
    assert!(
        detail.contains("nodeId") && detail.contains("laptop"),
        "{detail}"
    );
}

#[tokio::test]
async fn list_nodes_by_user() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let bob = k.user("bob").await;
    k.node(&alice, 1, "a1").await;
    k.node(&bob, 2, "b1").await;
    k.node(&alice, 3, "a2").await;
    let names = |r: Reply| -> Vec<String> {
        r.ok()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["givenName"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(k.get("/api/v1/node").await), ["a1", "b1", "a2"]);
    assert_eq!(names(k.get("/api/v1/node?user=alice").await), ["a1", "a2"]);
    assert_eq!(
        names(k.get(&format!("/api/v1/node?user={}", bob.id)).await),
        ["b1"]
    );
    k.get("/api/v1/node?user=carol").await.problem(404);
}

#[tokio::test]
async fn delete_node() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k.node(&alice, 1, "laptop").await;
    k.refused(Method::DELETE, "/api/v1/node/99", None, 404)
        .await;
    k.refused(Method::DELETE, "/api/v1/node/abc", None, 400)
        .await;
    assert_eq!(
        k.delete(&format!("/api/v1/node/{}", node.id)).await.ok(),
        &json!({})
    );
    assert!(k.tailnet.list_nodes(None).is_empty());
}

#[tokio::test]
async fn expire_node_now_at_a_time_or_from_the_query() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k.node(&alice, 1, "laptop").await;
    let uri = format!("/api/v1/node/{}/expire", node.id);

    k.clock.advance(Duration::minutes(5));
    let r = k.call(Method::POST, &uri, None).await;
    assert_eq!(r.ok()["node"]["expiry"], "2026-01-01T00:05:00Z");

    let r = k
        .post(&uri, json!({"expiry": "2026-03-01T12:00:00+01:00"}))
        .await;
    assert_eq!(r.ok()["node"]["expiry"], "2026-03-01T11:00:00Z");

    let r = k
        .call(
            Method::POST,
            &format!("{uri}?expiry=2026-04-01T00:00:00Z"),
            None,
        )
        .await;
    assert_eq!(r.ok()["node"]["expiry"], "2026-04-01T00:00:00Z");

    let detail = k
        .refused(Method::POST, &format!("{uri}?expiry=soon"), None, 400)
        .await;
    assert!(
        detail.contains("expiry") && detail.contains("soon"),
        "{detail}"
    );
    let detail = k
        .refused(
            Method::POST,
            &uri,
            Some(json!({"disableExpiry": true, "expiry": "2026-05-01T00:00:00Z"})),
            400,
        )
        .await;
    assert!(detail.contains("disableExpiry"), "{detail}");
    assert_eq!(
        k.tailnet.get_node(node.id).unwrap().expiry,
        Some("2026-04-01T00:00:00Z".parse().unwrap()),
        "a refused request changes nothing"
    );
    // Disabled: the key never expires, even after it had expired.
    k.post(&uri, json!({})).await.ok();
    assert!(
        k.tailnet
            .get_node(node.id)
            .unwrap()
            .is_expired(k.tailnet.now())
    );
    let r = k.post(&uri, json!({"disableExpiry": true})).await;
    assert!(r.ok()["node"]["expiry"].is_null());
    let n = k.tailnet.get_node(node.id).unwrap();
    assert_eq!(n.expiry, None);
    k.clock.advance(Duration::days(3650));
    assert!(!n.is_expired(k.tailnet.now()));
    k.refused(Method::POST, "/api/v1/node/99/expire", None, 404)
        .await;
}

#[tokio::test]
async fn rename_node() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k.node(&alice, 1, "laptop").await;
    k.node(&alice, 2, "desktop").await;
    let r = k
        .call(
            Method::POST,
            &format!("/api/v1/node/{}/rename/work", node.id),
            None,
        )
        .await;
    assert_eq!(r.ok()["node"]["givenName"], "work");
    assert_eq!(r.body["node"]["name"], "laptop");

    k.refused(
        Method::POST,
        &format!("/api/v1/node/{}/rename/desktop", node.id),
        None,
        409,
    )
    .await;
    k.refused(
        Method::POST,
        &format!("/api/v1/node/{}/rename/Not_A_Label", node.id),
        None,
        422,
    )
    .await;
    k.refused(Method::POST, "/api/v1/node/99/rename/x", None, 404)
        .await;
}

#[tokio::test]
async fn move_node() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let bob = k.user("bob").await;
    let node = k.node(&alice, 1, "laptop").await;
    let uri = format!("/api/v1/node/{}/user", node.id);
    let r = k.post(&uri, json!({"user": bob.id.to_string()})).await;
    assert_eq!(r.ok()["node"]["user"]["name"], "bob");
    assert_eq!(k.tailnet.get_node(node.id).unwrap().user_id, Some(bob.id));

    k.refused(Method::POST, &uri, Some(json!({"user": "99"})), 404)
        .await;
    k.refused(Method::POST, &uri, Some(json!({})), 400).await;
    k.refused(
        Method::POST,
        "/api/v1/node/99/user",
        Some(json!({"user": alice.id})),
        404,
    )
    .await;
}

#[tokio::test]
async fn set_tags() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k.node(&alice, 1, "laptop").await;
    let uri = format!("/api/v1/node/{}/tags", node.id);
    let r = k.post(&uri, json!({"tags": ["tag:web", "tag:db"]})).await;
    let n = &r.ok()["node"];
    assert_eq!(n["tags"], json!(["tag:db", "tag:web"]));
    // Tagged nodes are shown as owned by the tagged-devices pseudo-user.
    assert_eq!(n["user"]["name"], "tagged-devices");

    k.refused(Method::POST, &uri, Some(json!({"tags": ["web"]})), 422)
        .await;
    k.refused(Method::POST, &uri, Some(json!({"tags": "tag:web"})), 400)
        .await;
    k.refused(
        Method::POST,
        "/api/v1/node/99/tags",
        Some(json!({"tags": ["tag:a"]})),
        404,
    )
    .await;

    let r = k.post(&uri, json!({"tags": []})).await;
    assert_eq!(r.ok()["node"]["user"]["name"], "alice");
}

// --- interactive registration ------------------------------------------------

#[tokio::test]
async fn auth_register_makes_a_waiting_machine_a_node() {
    let k = Kit::new().await;
    k.user("alice").await;
    let auth_id = k.waiting(1, "laptop").await;
    let r = k
        .post(
            "/api/v1/auth/register",
            json!({"user": "alice", "authId": auth_id}),
        )
        .await;
    let node = &r.ok()["node"];
    assert_eq!(node["givenName"], "laptop");
    assert_eq!(node["user"]["name"], "alice");
    assert_eq!(node["registerMethod"], "REGISTER_METHOD_CLI");
    assert_eq!(k.tailnet.list_nodes(None).len(), 1);
    // It is no longer waiting.
    k.refused(
        Method::POST,
        "/api/v1/auth/register",
        Some(json!({"user": "alice", "authId": auth_id})),
        404,
    )
    .await;
}

#[tokio::test]
async fn auth_register_refusals() {
    let k = Kit::new().await;
    k.user("alice").await;
    let auth_id = k.waiting(1, "laptop").await;
    k.refused(
        Method::POST,
        "/api/v1/auth/register",
        Some(json!({"user": "bob", "authId": auth_id})),
        404,
    )
    .await;
    k.refused(
        Method::POST,
        "/api/v1/auth/register",
        Some(json!({"user": "alice", "authId": "nope"})),
        404,
    )
    .await;
    let detail = k
        .refused(
            Method::POST,
            "/api/v1/auth/register",
            Some(json!({"authId": auth_id})),
            400,
        )
        .await;
    assert!(detail.contains("user"), "{detail}");
    k.refused(
        Method::POST,
        "/api/v1/auth/register",
        Some(json!({"user": "alice"})),
        400,
    )
    .await;
    // Still waiting after all that.
    assert!(k.tailnet.pending_registration(&auth_id).is_ok());
}

#[tokio::test]
async fn the_older_node_register_form() {
    let k = Kit::new().await;
    k.user("alice").await;
    let auth_id = k.waiting(1, "laptop").await;
    k.refused(Method::POST, "/api/v1/node/register?user=alice", None, 400)
        .await;
    let r = k
        .call(
            Method::POST,
            &format!("/api/v1/node/register?user=alice&key={auth_id}"),
            None,
        )
        .await;
    assert_eq!(r.ok()["node"]["user"]["name"], "alice");
}

#[tokio::test]
async fn auth_approve_and_reject() {
    let k = Kit::new().await;
    let auth_id = k.waiting(1, "laptop").await;
    // A new machine needs a user.
    let detail = k
        .refused(
            Method::POST,
            "/api/v1/auth/approve",
            Some(json!({"authId": auth_id})),
            422,
        )
        .await;
    assert!(detail.contains("auth register"), "{detail}");
    assert_eq!(
        k.post("/api/v1/auth/reject", json!({"authId": auth_id}))
            .await
            .ok(),
        &json!({})
    );
    assert!(k.tailnet.pending_registration(&auth_id).is_err());
    k.refused(
        Method::POST,
        "/api/v1/auth/reject",
        Some(json!({"authId": auth_id})),
        404,
    )
    .await;
    k.refused(Method::POST, "/api/v1/auth/approve", Some(json!({})), 400)
        .await;
}

#[tokio::test]
async fn auth_approve_lets_a_known_machine_back_in() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k.node(&alice, 1, "laptop").await;
    k.tailnet.expire_node(node.id, None).await.unwrap();
    // The client logs in again with a new node key.
    let req = RegisterRequest {
        version: 133,
        node_key: NodePublic([9; 32]),
        old_node_key: NodePublic([1; 32]),
        hostinfo: Some(Hostinfo {
            hostname: "laptop".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (resp, _) = k
        .tailnet
        .register(MachinePublic([1; 32]), &req)
        .await
        .unwrap();
    let auth_id = resp.auth_url.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        k.post("/api/v1/auth/approve", json!({"authId": auth_id}))
            .await
            .ok(),
        &json!({})
    );
    let nodes = k.tailnet.list_nodes(None);
    assert_eq!(nodes.len(), 1);
    assert_eq!((nodes[0].id, nodes[0].user_id), (node.id, Some(alice.id)));
    assert_eq!(nodes[0].node_key, NodePublic([9; 32]));
}

// --- the OpenAPI document -----------------------------------------------------

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `{nodeId}` → `1`: a concrete path that the route matches.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('1');
            }
            '}' => in_param = false,
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn the_document_is_served_as_yaml_and_json() {
    let k = Kit::new().await;
    let json_doc = k.get("/api/v1/openapi.json").await;
    assert_eq!(json_doc.ok()["openapi"], "3.1.0");
    let yaml = k
        .raw(Method::GET, "/api/v1/openapi.yaml", Body::empty(), None)
        .await;
    assert_eq!(yaml.status, StatusCode::OK);
    assert_eq!(yaml.content_type, "application/yaml");
    let from_yaml: Value = serde_yaml_ng::from_str(yaml.body.as_str().unwrap()).unwrap();
    assert_eq!(from_yaml, json_doc.body);
    assert!(json_doc.body["paths"]["/api/v1/node/{nodeId}/user"]["post"].is_object());
}

/// Every operation in the document is served, with exactly the document's
/// methods on each path.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let k = Kit::new().await;
    let doc = serde_json::to_value(crate::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{paths:?}");
    for (path, item) in paths {
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // An event stream (`GET /api/v1/events`) never ends: a call
            // still answering after a while was routed (a refusal is
            // immediate).
            let uri = concrete(path);
            let call = k.call(m, &uri, None);
            let body = match tokio::time::timeout(std::time::Duration::from_secs(5), call).await {
                Ok(r) => r.body,
                Err(_) => serde_json::json!({"type": "still streaming"}),
            };
            let routed = body["type"] != "urn:headway:problem:no_route"
                && body["type"] != "urn:headway:problem:method_not_allowed";
            assert_eq!(
                routed,
                item.get(method).is_some(),
                "{method} {path}: {body:#}"
            );
        }
    }
}

/// Every path of the router is in the document (the routes serving the
/// document itself excepted). axum does not list its routes, so they are
/// read from its debug output; the count check makes this test fail rather
/// than pass vacuously should that output change.
#[tokio::test]
async fn every_routed_path_is_documented() {
    let k = Kit::new().await;
    let debug = format!("{:?}", k.router);
    let routed: BTreeSet<String> = debug
        .split('"')
        .filter(|s| s.starts_with("/api/"))
        .map(str::to_string)
        .collect();
    let doc = serde_json::to_value(crate::openapi()).unwrap();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let meta: BTreeSet<String> = ["yaml", "json"]
        .iter()
        .map(|ext| format!("{}.{ext}", crate::OPENAPI_PATH))
        .chain([crate::DOCS_PATH.to_string()])
        .collect();
    assert_eq!(
        routed.len(),
        documented.len() + meta.len(),
        "routed: {routed:?}"
    );
    let undocumented: Vec<_> = routed
        .difference(&documented)
        .filter(|p| !meta.contains(*p))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
}

/// headscale's paths that tools call; a missing one breaks them.
#[test]
fn headscales_paths_are_all_present() {
    let doc = serde_json::to_value(crate::openapi()).unwrap();
    let expected: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("/api/v1/health", &["get"][..]),
        ("/api/v1/user", &["get", "post"][..]),
        ("/api/v1/user/{oldId}/rename/{newName}", &["post"][..]),
        ("/api/v1/user/{id}", &["delete"][..]),
        ("/api/v1/preauthkey", &["get", "post", "delete"][..]),
        ("/api/v1/preauthkey/expire", &["post"][..]),
        ("/api/v1/node", &["get"][..]),
        ("/api/v1/node/{nodeId}", &["get", "delete"][..]),
        ("/api/v1/node/{nodeId}/expire", &["post"][..]),
        ("/api/v1/node/{nodeId}/rename/{newName}", &["post"][..]),
        ("/api/v1/node/{nodeId}/user", &["post"][..]),
        ("/api/v1/node/{nodeId}/tags", &["post"][..]),
        ("/api/v1/node/register", &["post"][..]),
        ("/api/v1/auth/register", &["post"][..]),
        ("/api/v1/auth/approve", &["post"][..]),
        ("/api/v1/auth/reject", &["post"][..]),
        ("/api/v1/node/{nodeId}/approve_routes", &["post"][..]),
        ("/api/v1/policy", &["get", "put"][..]),
        ("/api/v1/policy/check", &["post"][..]),
        ("/api/v1/policy/explain", &["post"][..]),
    ]);
    for (path, methods) in expected {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing"
            );
        }
    }
}

// --- policy -------------------------------------------------------------------

const POLICY: &str = r#"// who may reach what
{
  "tagOwners": {"tag:web": ["alice@"]},
  "acls": [
    {"action": "accept", "src": ["alice@"], "dst": ["tag:web:443"]},
  ],
}
"#;

#[tokio::test]
async fn get_set_and_check_the_policy() {
    let k = Kit::new().await;
    k.user("alice").await;
    // None yet: every node may reach every node.
    assert_eq!(
        k.get("/api/v1/policy").await.ok(),
        &json!({"policy": "", "updatedAt": null})
    );
    // Checking changes nothing.
    let r = k
        .post("/api/v1/policy/check", json!({ "policy": POLICY }))
        .await;
    assert_eq!(r.ok(), &json!({}));
    assert!(k.tailnet.policy_info().text.is_none());

    let r = k.put("/api/v1/policy", json!({ "policy": POLICY })).await;
    assert_eq!(
        r.ok(),
        &json!({"policy": POLICY, "updatedAt": "2026-01-01T00:00:00Z"})
    );
    k.clock.advance(Duration::minutes(1));
    assert_eq!(k.get("/api/v1/policy").await.ok()["policy"], POLICY);
    assert_eq!(k.tailnet.policy_info().text.as_deref(), Some(POLICY));
    assert_eq!(
        headway_state::store::Store::load(&k.store)
            .await
            .unwrap()
            .policy
            .map(|p| p.text),
        Some(POLICY.to_string())
    );
}

#[tokio::test]
async fn a_refused_policy_says_where_and_changes_nothing() {
    let k = Kit::new().await;
    k.user("alice").await;
    k.put("/api/v1/policy", json!({ "policy": POLICY }))
        .await
        .ok();
    let bad = "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"group:nobody\"], \"dst\": [\"*:*\"]},\n  ],\n}";
    for uri in ["/api/v1/policy", "/api/v1/policy/check"] {
        let method = if uri.ends_with("check") {
            Method::POST
        } else {
            Method::PUT
        };
        let detail = k
            .refused(method, uri, Some(json!({ "policy": bad })), 422)
            .await;
        assert!(detail.contains("group:nobody"), "{detail}");
        assert!(detail.contains("acls[0].src[0]"), "{detail}");
        assert!(detail.contains("line 3"), "{detail}");
    }
    // Not HuJSON at all.
    let detail = k
        .refused(
            Method::PUT,
            "/api/v1/policy",
            Some(json!({"policy": "{\"acls\": [}"})),
            422,
        )
        .await;
    assert!(detail.contains("line 1"), "{detail}");
    // A failing test of its own.
    let failing = r#"{"acls": [], "tests": [{"src": "alice@", "accept": ["100.64.0.9:22"]}]}"#;
    k.refused(
        Method::PUT,
        "/api/v1/policy",
        Some(json!({ "policy": failing })),
        422,
    )
    .await;
    // A body that is not a PolicyRequest.
    k.refused(
        Method::PUT,
        "/api/v1/policy",
        Some(json!({"policy": 7})),
        400,
    )
    .await;
    assert_eq!(k.get("/api/v1/policy").await.ok()["policy"], POLICY);
}

#[tokio::test]
async fn in_file_mode_the_file_is_the_policy() {
    let k = Kit::with_settings(Settings {
        policy_source: headway_state::tailnet::PolicySource::File(Some(
            "/etc/headway/policy.hujson".into(),
        )),
        ..Settings::default()
    })
    .await;
    k.tailnet.load_policy_file(POLICY).await.unwrap();
    let r = k.get("/api/v1/policy").await;
    assert_eq!(r.ok()["policy"], POLICY);
    let detail = k
        .refused(
            Method::PUT,
            "/api/v1/policy",
            Some(json!({"policy": "{}"})),
            409,
        )
        .await;
    assert!(
        detail.contains("policy.mode is file") && detail.contains("/etc/headway/policy.hujson"),
        "{detail}"
    );
    // Checking a candidate works in either mode.
    k.post("/api/v1/policy/check", json!({"policy": "{}"}))
        .await
        .ok();
}

#[tokio::test]
async fn explaining_a_policy_shows_every_node_and_applies_nothing() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let bob = k.user("bob").await;
    k.node(&alice, 1, "alice-laptop").await;
    k.node(&bob, 2, "bob-laptop").await;
    // No policy: everyone sees everyone.
    let r = k
        .post("/api/v1/policy/explain", json!({"policy": ""}))
        .await;
    let nodes = &r.ok()["nodes"];
    assert!(
        nodes["alice-laptop"]["peers"]["bob-laptop"]["AllowedIPs"].is_array(),
        "{nodes}"
    );
    // alice keeps to herself: nobody sees anybody.
    let own = r#"{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["alice@:*"]}]}"#;
    let r = k
        .post("/api/v1/policy/explain", json!({ "policy": own }))
        .await;
    let nodes = &r.ok()["nodes"];
    assert_eq!(nodes["alice-laptop"]["peers"], json!({}), "{nodes}");
    assert_eq!(nodes["bob-laptop"]["peers"], json!({}), "{nodes}");
    assert!(
        nodes["alice-laptop"]["packet_filter_rules"].is_array(),
        "{nodes}"
    );
    assert!(k.tailnet.policy_info().text.is_none(), "explain applied it");
    // A refused policy says why and where.
    let bad = "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"group:nobody\"], \"dst\": [\"*:*\"]},\n  ],\n}";
    let detail = k
        .refused(
            Method::POST,
            "/api/v1/policy/explain",
            Some(json!({ "policy": bad })),
            422,
        )
        .await;
    assert!(
        detail.contains("group:nobody") && detail.contains("line 3"),
        "{detail}"
    );
}

// --- routes ------------------------------------------------------------------------

#[tokio::test]
async fn approve_routes_and_see_them_on_the_node() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k
        .router(&alice, 1, "router", &["10.0.0.0/24", "192.168.1.0/24"])
        .await;
    let uri = format!("/api/v1/node/{}/approve_routes", node.id);
    let n = &k.get(&format!("/api/v1/node/{}", node.id)).await.ok()["node"].clone();
    assert_eq!(
        n["availableRoutes"],
        json!(["10.0.0.0/24", "192.168.1.0/24"])
    );
    assert_eq!(n["approvedRoutes"], json!([]));

    let r = k.post(&uri, json!({"routes": ["10.0.0.0/24"]})).await;
    let n = &r.ok()["node"];
    assert_eq!(n["approvedRoutes"], json!(["10.0.0.0/24"]));
    assert_eq!(
        n["availableRoutes"],
        json!(["10.0.0.0/24", "192.168.1.0/24"])
    );
    // Offline routers serve nothing.
    assert_eq!(n["subnetRoutes"], json!([]));
    let _session = k.tailnet.open_session(node.id).await;
    let n = &k.get("/api/v1/node").await.ok()["nodes"][0].clone();
    assert_eq!(n["subnetRoutes"], json!(["10.0.0.0/24"]));

    // Exit routes come in pairs; the whole list is replaced.
    let r = k.post(&uri, json!({"routes": ["0.0.0.0/0"]})).await;
    assert_eq!(
        r.ok()["node"]["approvedRoutes"],
        json!(["0.0.0.0/0", "::/0"])
    );
    // An empty list withdraws every approval.
    let r = k.post(&uri, json!({"routes": []})).await;
    assert_eq!(r.ok()["node"]["approvedRoutes"], json!([]));
    assert!(k.tailnet.node(node.id).unwrap().approved_routes.is_empty());
}

#[tokio::test]
async fn approve_routes_refusals() {
    let k = Kit::new().await;
    let alice = k.user("alice").await;
    let node = k.router(&alice, 1, "router", &["10.0.0.0/24"]).await;
    let uri = format!("/api/v1/node/{}/approve_routes", node.id);
    let detail = k
        .refused(Method::POST, &uri, Some(json!({"routes": ["bogus"]})), 422)
        .await;
    assert!(
        detail.contains("\"bogus\" is not a prefix") && detail.contains("10.0.0.0/24"),
        "{detail}"
    );
    let detail = k
        .refused(
            Method::POST,
            &uri,
            Some(json!({"routes": ["10.0.0.1/24"]})),
            422,
        )
        .await;
    assert!(detail.contains("did you mean 10.0.0.0/24"), "{detail}");
    k.refused(
        Method::POST,
        "/api/v1/node/99/approve_routes",
        Some(json!({"routes": []})),
        404,
    )
    .await;
    k.refused(
        Method::POST,
        "/api/v1/node/x/approve_routes",
        Some(json!({"routes": []})),
        400,
    )
    .await;
    k.refused(
        Method::POST,
        &uri,
        Some(json!({"routes": "10.0.0.0/24"})),
        400,
    )
    .await;
}

// --- OAuth clients -------------------------------------------------------------------

#[tokio::test]
async fn oauth_clients_create_list_delete() {
    let k = Kit::new().await;
    let r = k
        .post(
            "/api/v1/oauthclient",
            json!({"description": "terraform", "scopes": ["devices:core", "auth_keys"], "tags": ["tag:ci"]}),
        )
        .await;
    let created = r.ok().clone();
    let secret = created["clientSecret"].as_str().unwrap().to_string();
    let client_id = created["oauthClient"]["clientId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        secret.starts_with(&format!("hskey-client-{client_id}-")),
        "{created}"
    );
    assert_eq!(
        created["oauthClient"]["scopes"],
        json!(["auth_keys", "devices:core"])
    );
    assert_eq!(created["oauthClient"]["tags"], json!(["tag:ci"]));
    assert_eq!(created["oauthClient"]["createdAt"], "2026-01-01T00:00:00Z");
    // The secret works, and is never shown again.
    k.tailnet
        .issue_access_token(&client_id, &secret, &[], &[])
        .unwrap();
    let listed = k.get("/api/v1/oauthclient").await;
    assert_eq!(
        listed.ok()["oauthClients"][0]["clientId"],
        client_id.as_str()
    );
    assert!(!listed.body.to_string().contains(&secret[26..]));

    // Refusals.
    for (body, status) in [
        (json!({"scopes": []}), 422),
        (json!({"scopes": ["devices"]}), 422),
        (json!({"scopes": ["auth_keys"]}), 422),
        (json!({"scopes": ["devices:core"], "tags": ["ci"]}), 422),
        (json!({"scopes": "all"}), 400),
    ] {
        let detail = k
            .refused(
                Method::POST,
                "/api/v1/oauthclient",
                Some(body.clone()),
                status,
            )
            .await;
        assert!(!detail.is_empty(), "{body}");
    }
    k.refused(
        Method::DELETE,
        "/api/v1/oauthclient/000000000000",
        None,
        404,
    )
    .await;
    // A pasted secret is looked up by its client id, and not quoted back.
    let detail = k
        .refused(
            Method::DELETE,
            &format!(
                "/api/v1/oauthclient/hskey-client-000000000000-{}",
                "f".repeat(64)
            ),
            None,
            404,
        )
        .await;
    assert!(!detail.contains("ffff"), "{detail}");

    k.delete(&format!("/api/v1/oauthclient/{client_id}"))
        .await
        .ok();
    assert!(k.tailnet.list_oauth_clients().is_empty());
    assert!(k.tailnet.issue_access_token("", &secret, &[], &[]).is_err());
}

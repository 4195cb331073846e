//! The network doors in process: API keys over REST, the guard on every
//! route of the network router and the gRPC router, the failure limiter,
//! and every gRPC method through a generated client.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, TimeZone, Utc};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::memstore::MemStore;
use headway_state::settings::Settings;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tonic::Code;
use tower::ServiceExt;

use crate::grpc::pb;
use crate::grpc::pb::headscale_service_client::HeadscaleServiceClient;
use crate::guard::{FAILURE_BURST, FailureLimiter, Guard};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct Net {
    tailnet: Arc<Tailnet>,
    clock: Arc<ManualClock>,
    rest: Router,
    grpc: Router,
    socket: Router,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Net {
    async fn new() -> Self {
        // A limiter that never trips, so that the auth tests are about keys.
        Self::with_limiter(FailureLimiter::new(1_000_000, 1)).await
    }

    async fn with_limiter(limiter: FailureLimiter) -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let tailnet = Tailnet::load(
            Arc::new(MemStore::default()),
            clock.clone(),
            Settings::default(),
        )
        .await
        .unwrap();
        let guard = Guard::with_limiter(tailnet.clone(), limiter);
        Net {
            rest: crate::network_router(tailnet.clone(), guard.clone()),
            grpc: crate::grpc_network_router(tailnet.clone(), guard),
            socket: crate::router(tailnet.clone()),
            tailnet,
            clock,
        }
    }

    async fn key(&self) -> String {
        self.tailnet.create_api_key(None).await.unwrap().1
    }

    async fn send(&self, router: &Router, req: Request<Body>) -> Reply {
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .extension(ConnectInfo::<SocketAddr>("192.0.2.7:5555".parse().unwrap()));
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let body = match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        };
        self.send(&self.rest, req.body(body).unwrap()).await
    }

    fn snapshot(&self) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}",
            self.tailnet.users(),
            self.tailnet.list_preauth_keys(None),
            self.tailnet.list_nodes(None),
            self.tailnet
                .list_api_keys()
                .iter()
                .map(|k| (k.id, k.expiration))
                .collect::<Vec<_>>()
        )
    }

    fn grpc_client(
        &self,
        router: Router,
        key: Option<String>,
    ) -> HeadscaleServiceClient<AuthRouter> {
        HeadscaleServiceClient::new(AuthRouter { router, key })
    }
}

/// The router as a gRPC transport, adding the key as the client would.
#[derive(Clone)]
struct AuthRouter {
    router: Router,
    key: Option<String>,
}

impl tower::Service<http::Request<tonic::body::Body>> for AuthRouter {
    type Response = http::Response<axum::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(key) = &self.key {
            req.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {key}").parse().unwrap(),
            );
        }
        req.extensions_mut()
            .insert(ConnectInfo::<SocketAddr>("192.0.2.8:5555".parse().unwrap()));
        let router = self.router.clone();
        Box::pin(async move { router.oneshot(req.map(axum::body::Body::new)).await })
    }
}

/// `{id}` → `1`.
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

/// The paths of a router, read from its debug output (axum lists no routes).
fn routed_paths(router: &Router) -> BTreeSet<String> {
    format!("{router:?}")
        .split('"')
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// Served without a key over the network: the API's description and the
/// page that renders it (no tailnet data; headscale serves its document
/// openly too), and the OAuth token endpoint, which checks client
/// credentials itself.
const PUBLIC: [&str; 4] = [
    "/api/v1/openapi.yaml",
    "/api/v1/openapi.json",
    "/api/v1/docs",
    "/api/v2/oauth/token",
];

// --- the guard -------------------------------------------------------------------

#[tokio::test]
async fn every_network_route_refuses_a_call_without_a_valid_key() {
    let n = Net::new().await;
    let (expired_key, expired) = n
        .tailnet
        .create_api_key(Some(t0() + Duration::hours(1)))
        .await
        .unwrap();
    let _ = expired_key;
    let (deleted_key, deleted) = n.tailnet.create_api_key(None).await.unwrap();
    n.tailnet.delete_api_key(deleted_key.id).await.unwrap();
    let good = n.key().await;
    n.clock.advance(Duration::hours(2));
    let (prefix, _) =
        headway_state::keys::split(headway_state::keys::API_KEY_PREFIX, &good).unwrap();
    let wrong = format!("Bearer hskey-api-{prefix}-{}", "0".repeat(64));
    let refusals: Vec<(String, Option<String>)> = vec![
        ("no key".into(), None),
        ("expired".into(), Some(format!("Bearer {expired}"))),
        ("deleted".into(), Some(format!("Bearer {deleted}"))),
        ("wrong secret".into(), Some(wrong)),
        ("not a key".into(), Some("Bearer nope".into())),
        ("not bearer".into(), Some(format!("Token {good}"))),
    ];
    let paths = routed_paths(&n.rest);
    assert!(paths.len() >= 18, "{paths:?}");
    // The v2 API is behind the same guard.
    for v2 in [
        "/api/v2/tailnet/{tailnet}/devices",
        "/api/v2/device/{id}/routes",
        "/api/v2/tailnet/{tailnet}/keys/{keyId}",
        "/api/v2/tailnet/{tailnet}/acl/validate",
    ] {
        assert!(paths.contains(v2), "{v2} not routed: {paths:?}");
    }
    let mut checked = 0;
    for path in &paths {
        let uri = concrete(path).replace("{*rest}", "anything");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if PUBLIC.contains(&path.as_str()) {
                continue;
            }
            for (why, auth) in &refusals {
                let before = n.snapshot();
                let r = n
                    .call(
                        method.clone(),
                        &uri,
                        auth.as_deref(),
                        Some(json!({"name": "x"})),
                    )
                    .await;
                assert_eq!(
                    r.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} ({why}): {:?}",
                    r.body
                );
                assert_eq!(r.body["status"], 401);
                assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
                assert_eq!(
                    n.snapshot(),
                    before,
                    "{method} {uri} ({why}) changed the tailnet"
                );
                for secret in [&expired, &deleted, &good] {
                    assert!(!r.body.to_string().contains(&secret[23..]));
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
    // The public routes answer without a key.
    for path in &PUBLIC[..3] {
        assert_eq!(
            n.call(Method::GET, path, None, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    // And with a good key the API answers.
    let r = n
        .call(
            Method::GET,
            "/api/v1/user",
            Some(&format!("Bearer {good}")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Unknown API paths: 401 without a key, 404 with one.
    let r = n
        .call(
            Method::GET,
            "/api/v1/nope",
            Some(&format!("Bearer {good}")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_good_key_is_recorded_as_used() {
    let n = Net::new().await;
    let key = n.key().await;
    let r = n
        .call(
            Method::GET,
            "/api/v1/node",
            Some(&format!("Bearer {key}")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(n.tailnet.list_api_keys()[0].last_seen, Some(t0()));
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address_with_retry_after() {
    let n = Net::with_limiter(FailureLimiter::default()).await;
    let good = format!("Bearer {}", n.key().await);
    for i in 0..FAILURE_BURST {
        let r = n
            .call(
                Method::GET,
                "/api/v1/user",
                Some("Bearer hskey-api-nope"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = n
        .call(
            Method::GET,
            "/api/v1/user",
            Some("Bearer hskey-api-nope"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["status"], 429);
    let wait: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "{wait}");
    // Even a good key waits: the limiter answers before any key is checked.
    let r = n.call(Method::GET, "/api/v1/user", Some(&good), None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    n.clock.advance(Duration::seconds(wait as i64));
    let r = n.call(Method::GET, "/api/v1/user", Some(&good), None).await;
    assert_eq!(r.status, StatusCode::OK);
}

// --- API keys over REST ------------------------------------------------------------

#[tokio::test]
async fn api_keys_over_rest() {
    let n = Net::new().await;
    let admin = format!("Bearer {}", n.key().await);
    let auth = Some(admin.as_str());
    let r = n
        .call(
            Method::POST,
            "/api/v1/apikey",
            auth,
            Some(json!({"expiration": "2026-02-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let full = r.body["apiKey"].as_str().unwrap().to_string();
    assert!(full.starts_with("hskey-api-"), "{full}");
    let prefix = full[10..22].to_string();

    let r = n.call(Method::GET, "/api/v1/apikey", auth, None).await;
    let keys = r.body["apiKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let listed = keys
        .iter()
        .find(|k| k["prefix"] == prefix.as_str())
        .unwrap();
    assert_eq!(listed["expiration"], "2026-02-01T00:00:00Z");
    assert_eq!(listed["lastSeen"], Value::Null);
    assert!(!r.body.to_string().contains(&full[23..]));

    // The new key works, until expired.
    let new = format!("Bearer {full}");
    assert_eq!(
        n.call(Method::GET, "/api/v1/user", Some(&new), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = n
        .call(
            Method::POST,
            "/api/v1/apikey/expire",
            auth,
            Some(json!({"prefix": prefix})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        n.call(Method::GET, "/api/v1/user", Some(&new), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Refusals.
    for (method, uri, body, status) in [
        (
            Method::POST,
            "/api/v1/apikey",
            Some(json!({"expiration": "2025-01-01T00:00:00Z"})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/apikey",
            Some(json!({"expiration": "soon"})),
            400,
        ),
        (Method::POST, "/api/v1/apikey/expire", Some(json!({})), 400),
        (
            Method::POST,
            "/api/v1/apikey/expire",
            Some(json!({"prefix": "000000000000"})),
            404,
        ),
        (
            Method::POST,
            "/api/v1/apikey/expire",
            Some(json!({"id": "99"})),
            404,
        ),
        (Method::DELETE, "/api/v1/apikey/000000000000", None, 404),
        (Method::DELETE, "/api/v1/apikey/x?id=abc", None, 400),
    ] {
        let before = n.snapshot();
        let r = n.call(method.clone(), uri, auth, body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {uri}: {:?}", r.body);
        assert_eq!(n.snapshot(), before);
    }

    let r = n
        .call(
            Method::DELETE,
            &format!("/api/v1/apikey/{prefix}"),
            auth,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(n.tailnet.list_api_keys().len(), 1);
    // By id.
    let (k, _) = n.tailnet.create_api_key(None).await.unwrap();
    let r = n
        .call(
            Method::DELETE,
            &format!("/api/v1/apikey/-?id={}", k.id),
            auth,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(n.tailnet.list_api_keys().len(), 1);
}

// --- gRPC ---------------------------------------------------------------------------

#[tokio::test]
async fn grpc_refuses_calls_without_a_valid_key_and_changes_nothing() {
    let n = Net::new().await;
    let (k, expired) = n
        .tailnet
        .create_api_key(Some(t0() + Duration::minutes(1)))
        .await
        .unwrap();
    let _ = k;
    n.clock.advance(Duration::minutes(2));
    for key in [None, Some(expired), Some("hskey-api-nope".to_string())] {
        let mut c = n.grpc_client(n.grpc.clone(), key.clone());
        let before = n.snapshot();
        let e = c
            .create_user(pb::CreateUserRequest {
                name: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{key:?}: {e:?}");
        let e = c
            .list_nodes(pb::ListNodesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert_eq!(n.snapshot(), before);
    }
    // A good key opens it; an unknown method is UNIMPLEMENTED.
    let mut c = n.grpc_client(n.grpc.clone(), Some(n.key().await));
    c.list_users(pb::ListUsersRequest::default()).await.unwrap();
    let r = n
        .send(
            &n.grpc,
            Request::post("/headscale.v1.HeadscaleService/Nope")
                .header(header::CONTENT_TYPE, "application/grpc")
                .header(header::AUTHORIZATION, "Bearer nope")
                .extension(ConnectInfo::<SocketAddr>("192.0.2.9:1".parse().unwrap()))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.headers["grpc-status"], "16");
}

#[tokio::test]
async fn every_grpc_method_over_the_socket() {
    let n = Net::new().await;
    let mut c = n.grpc_client(n.socket.clone(), None);
    // Users.
    let alice = c
        .create_user(pb::CreateUserRequest {
            name: "alice".into(),
            email: "a@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (alice.name.as_str(), alice.created_at.unwrap().seconds),
        ("alice", t0().timestamp())
    );
    let e = c
        .create_user(pb::CreateUserRequest {
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = c
        .create_user(pb::CreateUserRequest {
            name: "bad name".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let bob = c
        .create_user(pb::CreateUserRequest {
            name: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let listed = c
        .list_users(pb::ListUsersRequest {
            name: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 1);
    let renamed = c
        .rename_user(pb::RenameUserRequest {
            old_id: bob.id,
            new_name: "carol".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.user.unwrap().name, "carol");
    let e = c
        .rename_user(pb::RenameUserRequest {
            old_id: 99,
            new_name: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    c.delete_user(pb::DeleteUserRequest { id: bob.id })
        .await
        .unwrap();
    assert_eq!(
        c.delete_user(pb::DeleteUserRequest { id: bob.id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Pre-auth keys.
    let key = c
        .create_pre_auth_key(pb::CreatePreAuthKeyRequest {
            user: alice.id,
            reusable: true,
            expiration: Some(prost_types::Timestamp {
                seconds: (t0() + Duration::hours(1)).timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pre_auth_key
        .unwrap();
    assert!(key.key.starts_with("hskey-auth-") && !key.key.ends_with("***"));
    let e = c
        .create_pre_auth_key(pb::CreatePreAuthKeyRequest {
            user: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let listed = c
        .list_pre_auth_keys(pb::ListPreAuthKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.pre_auth_keys[0].key.ends_with("-***"));
    c.expire_pre_auth_key(pb::ExpirePreAuthKeyRequest { id: key.id })
        .await
        .unwrap();
    assert_eq!(
        c.expire_pre_auth_key(pb::ExpirePreAuthKeyRequest { id: 0 })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    c.delete_pre_auth_key(pb::DeletePreAuthKeyRequest { id: key.id })
        .await
        .unwrap();
    assert_eq!(
        c.delete_pre_auth_key(pb::DeletePreAuthKeyRequest { id: key.id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Nodes: none yet; errors name the node.
    assert!(
        c.list_nodes(pb::ListNodesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .nodes
            .is_empty()
    );
    assert_eq!(
        c.list_nodes(pb::ListNodesRequest {
            user: "nobody".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    for e in [
        c.get_node(pb::GetNodeRequest { node_id: 5 })
            .await
            .unwrap_err(),
        c.delete_node(pb::DeleteNodeRequest { node_id: 5 })
            .await
            .unwrap_err(),
        c.expire_node(pb::ExpireNodeRequest {
            node_id: 5,
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.rename_node(pb::RenameNodeRequest {
            node_id: 5,
            new_name: "x".into(),
        })
        .await
        .unwrap_err(),
        c.move_node(pb::MoveNodeRequest {
            node_id: 5,
            user: alice.id,
        })
        .await
        .unwrap_err(),
        c.set_tags(pb::SetTagsRequest {
            node_id: 5,
            tags: vec!["tag:a".into()],
        })
        .await
        .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    let e = c
        .register_node(pb::RegisterNodeRequest {
            user: "alice".into(),
            key: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .auth_register(pb::AuthRegisterRequest {
            user: "alice".into(),
            auth_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .auth_approve(pb::AuthApproveRequest {
            auth_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .auth_reject(pb::AuthRejectRequest {
            auth_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A node: every node method's happy path.
    let (_, auth_key) = n
        .tailnet
        .create_preauth_key(headway_state::tailnet::NewPreAuthKey {
            user: Some(i64::try_from(alice.id).unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let req = headway_proto::tailcfg::RegisterRequest {
        version: 133,
        node_key: headway_proto::keys::NodePublic([1; 32]),
        auth: Some(headway_proto::tailcfg::RegisterResponseAuth {
            auth_key,
            ..Default::default()
        }),
        hostinfo: Some(headway_proto::tailcfg::Hostinfo {
            hostname: "laptop".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    n.tailnet
        .register(headway_proto::keys::MachinePublic([1; 32]), &req)
        .await
        .unwrap();
    let nodes = c
        .list_nodes(pb::ListNodesRequest {
            user: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1);
    let id = nodes[0].id;
    assert_eq!(nodes[0].register_method, pb::RegisterMethod::AuthKey as i32);
    assert_eq!(
        c.get_node(pb::GetNodeRequest { node_id: id })
            .await
            .unwrap()
            .into_inner()
            .node
            .unwrap()
            .given_name,
        "laptop"
    );
    let node = c
        .rename_node(pb::RenameNodeRequest {
            node_id: id,
            new_name: "work".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(node.given_name, "work");
    let node = c
        .set_tags(pb::SetTagsRequest {
            node_id: id,
            tags: vec!["tag:web".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(node.tags, ["tag:web"]);
    assert_eq!(
        c.set_tags(pb::SetTagsRequest {
            node_id: id,
            tags: vec!["web".into()]
        })
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );
    c.set_tags(pb::SetTagsRequest {
        node_id: id,
        tags: vec![],
    })
    .await
    .unwrap();
    let dave = c
        .create_user(pb::CreateUserRequest {
            name: "dave".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let node = c
        .move_node(pb::MoveNodeRequest {
            node_id: id,
            user: dave.id,
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(node.user.unwrap().name, "dave");
    let node = c
        .expire_node(pb::ExpireNodeRequest {
            node_id: id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(node.expiry.unwrap().seconds, t0().timestamp());
    let node = c
        .expire_node(pb::ExpireNodeRequest {
            node_id: id,
            disable_expiry: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(node.expiry, None, "disableExpiry: the key never expires");
    c.delete_node(pb::DeleteNodeRequest { node_id: id })
        .await
        .unwrap();
    assert!(n.tailnet.list_nodes(None).is_empty());

    // API keys.
    let created = c
        .create_api_key(pb::CreateApiKeyRequest { expiration: None })
        .await
        .unwrap()
        .into_inner();
    assert!(created.api_key.starts_with("hskey-api-"));
    let keys = c
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(keys.len(), 1);
    c.expire_api_key(pb::ExpireApiKeyRequest {
        prefix: keys[0].prefix.clone(),
        id: 0,
    })
    .await
    .unwrap();
    assert!(n.tailnet.authenticate_api_key(&created.api_key).is_err());
    c.delete_api_key(pb::DeleteApiKeyRequest {
        prefix: String::new(),
        id: keys[0].id,
    })
    .await
    .unwrap();
    assert_eq!(
        c.delete_api_key(pb::DeleteApiKeyRequest {
            prefix: keys[0].prefix.clone(),
            id: 0
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    let past = prost_types::Timestamp {
        seconds: (t0() - Duration::hours(1)).timestamp(),
        nanos: 0,
    };
    assert_eq!(
        c.create_api_key(pb::CreateApiKeyRequest {
            expiration: Some(past)
        })
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );

    // Not supported yet: said so.
    for e in [
        c.debug_create_node(pb::DebugCreateNodeRequest::default())
            .await
            .unwrap_err(),
        c.backfill_node_i_ps(pb::BackfillNodeIPsRequest { confirmed: true })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    }
    assert!(
        c.health(pb::HealthRequest {})
            .await
            .unwrap()
            .into_inner()
            .database_connectivity
    );
}

#[tokio::test]
async fn grpc_policy_methods() {
    let n = Net::new().await;
    let mut c = n.grpc_client(n.socket.clone(), None);
    let none = c
        .get_policy(pb::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((none.policy.as_str(), none.updated_at), ("", None));
    let policy = r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}]}"#;
    c.check_policy(pb::CheckPolicyRequest {
        policy: policy.into(),
    })
    .await
    .unwrap();
    assert!(n.tailnet.policy_info().text.is_none());
    let set = c
        .set_policy(pb::SetPolicyRequest {
            policy: policy.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.policy, policy);
    assert_eq!(set.updated_at.unwrap().seconds, t0().timestamp());
    assert_eq!(
        c.get_policy(pb::GetPolicyRequest {})
            .await
            .unwrap()
            .into_inner()
            .policy,
        policy
    );
    for e in [
        c.set_policy(pb::SetPolicyRequest {
            policy: r#"{"acls": [{"action": "allow"}]}"#.into(),
        })
        .await
        .unwrap_err(),
        c.check_policy(pb::CheckPolicyRequest { policy: "{".into() })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("line 1"), "{e:?}");
    }
    assert_eq!(n.tailnet.policy_info().text.as_deref(), Some(policy));
}

#[tokio::test]
async fn grpc_set_approved_routes() {
    let n = Net::new().await;
    let mut c = n.grpc_client(n.socket.clone(), None);
    let alice = n
        .tailnet
        .create_user(headway_state::tailnet::NewUser {
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, auth_key) = n
        .tailnet
        .create_preauth_key(headway_state::tailnet::NewPreAuthKey {
            user: Some(alice.id),
            ..Default::default()
        })
        .await
        .unwrap();
    let hostinfo = headway_proto::tailcfg::Hostinfo {
        hostname: "router".into(),
        routable_ips: vec!["10.1.0.0/16".parse().unwrap()],
        ..Default::default()
    };
    let req = headway_proto::tailcfg::RegisterRequest {
        version: 133,
        node_key: headway_proto::keys::NodePublic([4; 32]),
        auth: Some(headway_proto::tailcfg::RegisterResponseAuth {
            auth_key,
            ..Default::default()
        }),
        hostinfo: Some(hostinfo),
        ..Default::default()
    };
    n.tailnet
        .register(headway_proto::keys::MachinePublic([4; 32]), &req)
        .await
        .unwrap();
    let id = n.tailnet.list_nodes(None)[0].id;
    let node = c
        .set_approved_routes(pb::SetApprovedRoutesRequest {
            node_id: id as u64,
            routes: vec!["10.1.0.0/16".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(node.approved_routes, ["10.1.0.0/16"]);
    for (node_id, routes, code) in [
        (
            id as u64,
            vec!["10.1.0.0/33".to_string()],
            Code::InvalidArgument,
        ),
        (99, vec![], Code::NotFound),
    ] {
        let e = c
            .set_approved_routes(pb::SetApprovedRoutesRequest { node_id, routes })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
    }
    let approved: Vec<String> = n
        .tailnet
        .node(id)
        .unwrap()
        .approved_routes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(approved, ["10.1.0.0/16"]);
}

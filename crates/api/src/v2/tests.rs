//! The v2 API in process, through the network router and its guard: the
//! token endpoint, every operation's happy path with an API key and with an
//! access token, each class of error in Tailscale's shape, scopes and tag
//! limits, and that a refused request changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::memstore::MemStore;
use headway_state::model;
use headway_state::settings::Settings;
use headway_state::tailnet::{NewOAuthClient, NewPreAuthKey, NewUser};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::acl::{DEFAULT_POLICY, etag};
use crate::guard::{FailureLimiter, Guard};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct V2 {
    tailnet: Arc<Tailnet>,
    clock: Arc<ManualClock>,
    rest: Router,
    /// `Bearer <API key>`.
    admin: String,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
    body: Value,
}

impl Reply {
    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        &self.body
    }

    /// Asserts Tailscale's error body with this status; returns its message.
    #[track_caller]
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(self.body["status"], status, "{}", self.text);
        let message = self.body["message"].as_str().unwrap().to_string();
        assert!(!message.is_empty());
        message
    }
}

impl V2 {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let tailnet = Tailnet::load(
            Arc::new(MemStore::default()),
            clock.clone(),
            Settings::default(),
        )
        .await
        .unwrap();
        let guard = Guard::with_limiter(tailnet.clone(), FailureLimiter::new(1_000_000, 1));
        let admin = format!("Bearer {}", tailnet.create_api_key(None).await.unwrap().1);
        V2 {
            rest: crate::network_router(tailnet.clone(), guard),
            tailnet,
            clock,
            admin,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.rest.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, auth);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn get(&self, uri: &str, auth: &str) -> Reply {
        self.call(Method::GET, uri, auth, &[], "").await
    }

    async fn post(&self, uri: &str, auth: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            uri,
            auth,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
        .await
    }

    async fn delete(&self, uri: &str, auth: &str) -> Reply {
        self.call(Method::DELETE, uri, auth, &[], "").await
    }

    async fn token_form(&self, form: &str, basic: Option<(&str, &str)>) -> Reply {
        let mut req = Request::post("/api/v2/oauth/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            req = req.header(header::AUTHORIZATION, format!("Basic {creds}"));
        }
        self.send(req.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// An OAuth client with `scopes` and `tags`: (client id, secret).
    async fn client(&self, scopes: &[&str], tags: &[&str]) -> (String, String) {
        let (c, secret) = self
            .tailnet
            .create_oauth_client(NewOAuthClient {
                description: "test".into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
            })
            .await
            .unwrap();
        (c.prefix, secret)
    }

    /// `Bearer <access token>` of a new client with `scopes` and `tags`.
    async fn token(&self, scopes: &[&str], tags: &[&str]) -> String {
        let (id, secret) = self.client(scopes, tags).await;
        let r = self
            .token_form(&format!("client_id={id}&client_secret={secret}"), None)
            .await;
        format!("Bearer {}", r.ok()["access_token"].as_str().unwrap())
    }

    async fn user(&self, name: &str) -> model::User {
        self.tailnet
            .create_user(NewUser {
                name: name.into(),
                email: format!("{name}@example.com"),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// A node of `user` announcing `routes`.
    async fn node(&self, user: &model::User, n: u8, host: &str, routes: &[&str]) -> model::Node {
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
                os: "linux".into(),
                ipn_version: "1.96.4".into(),
                routable_ips: routes.iter().map(|r| r.parse().unwrap()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.tailnet
            .register(MachinePublic([n; 32]), &req)
            .await
            .unwrap();
        (*self.tailnet.node_by_key(&NodePublic([n; 32])).unwrap()).clone()
    }

    fn snapshot(&self) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}",
            self.tailnet.list_preauth_keys(None),
            self.tailnet.list_nodes(None),
            self.tailnet.policy_info(),
            self.tailnet.list_oauth_clients()
        )
    }

    /// Sends, expects Tailscale's error with `status`, and checks that
    /// nothing changed; returns the message.
    async fn refused(
        &self,
        method: Method,
        uri: &str,
        auth: &str,
        body: Option<Value>,
        status: u16,
    ) -> String {
        let before = self.snapshot();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let message = self
            .call(method.clone(), uri, auth, &[], &body)
            .await
            .error(status);
        assert_eq!(
            self.snapshot(),
            before,
            "{method} {uri} changed the tailnet"
        );
        message
    }
}

// --- the token endpoint ----------------------------------------------------------

#[tokio::test]
async fn client_credentials_give_a_token_with_the_clients_grant() {
    let v = V2::new().await;
    let (id, secret) = v
        .client(&["devices:core", "auth_keys"], &["tag:ci", "tag:web"])
        .await;
    let r = v
        .token_form(
            &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
            None,
        )
        .await;
    let t = r.ok().clone();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    assert_eq!(t["scope"], "auth_keys devices:core");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let token = t["access_token"].as_str().unwrap();
    assert!(token.starts_with("hskey-token-"), "{token}");
    let grant = v.tailnet.authenticate_access_token(token).unwrap();
    assert_eq!(grant.tags, ["tag:ci", "tag:web"]);

    // HTTP Basic, as golang.org/x/oauth2 sends it; narrower on request.
    let r = v
        .token_form(
            "grant_type=client_credentials&scope=devices%3Acore%3Aread&tags=tag:ci",
            Some((&id, &secret)),
        )
        .await;
    let grant = v
        .tailnet
        .authenticate_access_token(r.ok()["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(grant.scopes, ["devices:core:read"]);
    assert_eq!(grant.tags, ["tag:ci"]);

    // An hour later the token is refused (in Tailscale's shape).
    v.clock.advance(Duration::hours(1));
    let r = v
        .get("/api/v2/tailnet/-/devices", &format!("Bearer {token}"))
        .await;
    let message = r.error(401);
    assert!(!message.contains(token), "{message}");
}

#[tokio::test]
async fn token_refusals_are_oauth_errors() {
    let v = V2::new().await;
    let (id, secret) = v.client(&["devices:core"], &["tag:ci"]).await;
    let wrong = format!("hskey-client-{id}-{}", "0".repeat(64));
    for (form, basic, status, error) in [
        (
            format!("client_id={id}&client_secret={wrong}"),
            None,
            401,
            "invalid_client",
        ),
        (
            format!("client_id=000000000000&client_secret={secret}"),
            None,
            401,
            "invalid_client",
        ),
        (String::new(), None, 401, "invalid_client"),
        (
            String::from("grant_type=client_credentials"),
            Some((id.as_str(), wrong.as_str())),
            401,
            "invalid_client",
        ),
        (
            format!("grant_type=password&client_id={id}&client_secret={secret}"),
            None,
            400,
            "unsupported_grant_type",
        ),
        (
            format!("client_id={id}&client_secret={secret}&scope=policy_file"),
            None,
            400,
            "invalid_scope",
        ),
        (
            format!("client_id={id}&client_secret={secret}&scope=nonsense"),
            None,
            400,
            "invalid_scope",
        ),
        (
            format!("client_id={id}&client_secret={secret}&tags=tag:prod"),
            None,
            400,
            "invalid_scope",
        ),
    ] {
        let r = v.token_form(&form, basic).await;
        assert_eq!(r.status.as_u16(), status, "{form}: {}", r.text);
        assert_eq!(r.body["error"], error, "{form}: {}", r.text);
        assert!(
            !r.body["error_description"].as_str().unwrap().is_empty(),
            "{}",
            r.text
        );
        assert!(!r.text.contains(&secret[26..]) && !r.text.contains(&wrong[26..]));
    }
    // Not a form at all.
    let r = v
        .send(
            Request::post("/api/v2/oauth/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_request");
}

// --- the guard's answers on v2 --------------------------------------------------------

#[tokio::test]
async fn v2_refusals_without_a_key_are_in_tailscales_shape() {
    let v = V2::new().await;
    let r = v
        .send(
            Request::get("/api/v2/tailnet/-/devices")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.error(401);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    // HTTP Basic with the key as user name, as Tailscale's clients send it.
    let key = v.admin.trim_start_matches("Bearer ");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    v.get("/api/v2/tailnet/-/devices", &format!("Basic {basic}"))
        .await
        .ok();
}

// --- devices ---------------------------------------------------------------------------

#[tokio::test]
async fn devices_list_get_delete() {
    let v = V2::new().await;
    let alice = v.user("alice").await;
    let node = v.node(&alice, 1, "laptop", &["10.0.0.0/24"]).await;
    v.node(&alice, 2, "phone", &[]).await;
    let r = v.get("/api/v2/tailnet/-/devices", &v.admin).await;
    let devices = r.ok()["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2);
    let d = &devices[0];
    assert_eq!(d["id"], node.id.to_string());
    assert_eq!(d["nodeId"], node.id.to_string());
    assert_eq!(d["name"], "laptop.headway.internal");
    assert_eq!(d["hostname"], "laptop");
    assert_eq!(d["user"], "alice@example.com");
    assert_eq!(d["addresses"], json!(["100.64.0.1", "fd7a:115c:a1e0::1"]));
    assert_eq!(d["authorized"], true);
    assert_eq!(d["os"], "linux");
    assert_eq!(d["clientVersion"], "1.96.4");
    assert_eq!(d["keyExpiryDisabled"], true);
    assert_eq!(d["created"], "2026-01-01T00:00:00Z");
    assert_eq!(d["tags"], json!([]));
    assert!(d.get("advertisedRoutes").is_none(), "{d}");
    // The route fields come with fields=all.
    let r = v
        .get(&format!("/api/v2/device/{}?fields=all", node.id), &v.admin)
        .await;
    assert_eq!(r.ok()["advertisedRoutes"], json!(["10.0.0.0/24"]));
    assert_eq!(r.ok()["enabledRoutes"], json!([]));
    // The server's base domain names the tailnet too.
    v.get("/api/v2/tailnet/headway.internal/devices", &v.admin)
        .await
        .ok();

    let uri = format!("/api/v2/device/{}", node.id);
    v.delete(&uri, &v.admin).await.ok();
    assert!(v.tailnet.node(node.id).is_none());
    v.get(&uri, &v.admin).await.error(404);

    for uri in [
        "/api/v2/device/99",
        "/api/v2/device/laptop",
        "/api/v2/device/-1",
        "/api/v2/tailnet/example.com/devices",
    ] {
        let message = v.get(uri, &v.admin).await.error(404);
        assert!(message.contains("not found"), "{message}");
    }
    v.refused(Method::DELETE, "/api/v2/device/99", &v.admin, None, 404)
        .await;
}

#[tokio::test]
async fn devices_authorize_tags_and_routes() {
    let v = V2::new().await;
    let alice = v.user("alice").await;
    let node = v.node(&alice, 1, "router", &["10.0.0.0/24"]).await;
    let base = format!("/api/v2/device/{}", node.id);
    v.post(
        &format!("{base}/authorized"),
        &v.admin,
        json!({"authorized": true}),
    )
    .await
    .ok();
    let message = v
        .refused(
            Method::POST,
            &format!("{base}/authorized"),
            &v.admin,
            Some(json!({"authorized": false})),
            400,
        )
        .await;
    assert!(message.contains("delete the device"), "{message}");

    v.post(
        &format!("{base}/tags"),
        &v.admin,
        json!({"tags": ["tag:web"]}),
    )
    .await
    .ok();
    assert_eq!(v.tailnet.node(node.id).unwrap().tags, ["tag:web"]);
    let message = v
        .refused(
            Method::POST,
            &format!("{base}/tags"),
            &v.admin,
            Some(json!({"tags": ["web"]})),
            400,
        )
        .await;
    assert!(message.contains("web"), "{message}");

    let r = v.get(&format!("{base}/routes"), &v.admin).await;
    assert_eq!(
        r.ok(),
        &json!({"advertisedRoutes": ["10.0.0.0/24"], "enabledRoutes": []})
    );
    let r = v
        .post(
            &format!("{base}/routes"),
            &v.admin,
            json!({"routes": ["10.0.0.0/24", "0.0.0.0/0"]}),
        )
        .await;
    assert_eq!(
        r.ok(),
        &json!({"advertisedRoutes": ["10.0.0.0/24"], "enabledRoutes": ["0.0.0.0/0", "10.0.0.0/24", "::/0"]})
    );
    let message = v
        .refused(
            Method::POST,
            &format!("{base}/routes"),
            &v.admin,
            Some(json!({"routes": ["10.0.0.1/24"]})),
            400,
        )
        .await;
    assert!(message.contains("did you mean 10.0.0.0/24"), "{message}");
    v.refused(
        Method::POST,
        &format!("{base}/routes"),
        &v.admin,
        Some(json!({"routes": "10.0.0.0/24"})),
        400,
    )
    .await;
    v.refused(
        Method::POST,
        "/api/v2/device/99/routes",
        &v.admin,
        Some(json!({"routes": []})),
        404,
    )
    .await;
}

#[tokio::test]
async fn access_tokens_are_held_to_their_scopes_and_tags() {
    let v = V2::new().await;
    let alice = v.user("alice").await;
    let node = v.node(&alice, 1, "router", &["10.0.0.0/24"]).await;
    let base = format!("/api/v2/device/{}", node.id);
    let reader = v.token(&["devices:core:read"], &[]).await;
    v.get("/api/v2/tailnet/-/devices", &reader).await.ok();
    v.get(&base, &reader).await.ok();
    for (method, uri, body) in [
        (Method::DELETE, base.clone(), None),
        (
            Method::POST,
            format!("{base}/tags"),
            Some(json!({"tags": ["tag:ci"]})),
        ),
        (Method::GET, format!("{base}/routes"), None),
        (
            Method::POST,
            format!("{base}/routes"),
            Some(json!({"routes": []})),
        ),
        (Method::GET, "/api/v2/tailnet/-/keys".to_string(), None),
        (Method::GET, "/api/v2/tailnet/-/acl".to_string(), None),
    ] {
        let message = v.refused(method, &uri, &reader, body, 403).await;
        assert!(message.contains("scope"), "{message}");
    }
    // Routes with devices:routes; tags within the client's tags only.
    let router = v
        .token(&["devices:routes", "devices:core"], &["tag:ci"])
        .await;
    v.post(
        &format!("{base}/routes"),
        &router,
        json!({"routes": ["10.0.0.0/24"]}),
    )
    .await
    .ok();
    let message = v
        .refused(
            Method::POST,
            &format!("{base}/tags"),
            &router,
            Some(json!({"tags": ["tag:prod"]})),
            403,
        )
        .await;
    assert!(
        message.contains("tag:prod") && message.contains("tag:ci"),
        "{message}"
    );
    v.post(
        &format!("{base}/tags"),
        &router,
        json!({"tags": ["tag:ci"]}),
    )
    .await
    .ok();
    // `all` covers everything.
    let all = v.token(&["all"], &["tag:ci"]).await;
    v.get("/api/v2/tailnet/-/acl", &all).await.ok();
    v.delete(&base, &all).await.ok();
}

// --- keys ----------------------------------------------------------------------------

#[tokio::test]
async fn auth_keys_made_with_a_token_carry_its_tags() {
    let v = V2::new().await;
    let ci = v.token(&["auth_keys"], &["tag:ci"]).await;
    let r = v
        .post(
            "/api/v2/tailnet/-/keys",
            &ci,
            json!({"capabilities": {"devices": {"create": {"reusable": true, "ephemeral": false, "preauthorized": true, "tags": ["tag:ci"]}}}, "description": "ci runners"}),
        )
        .await;
    let key = r.ok().clone();
    let secret = key["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("hskey-auth-"), "{key}");
    assert_eq!(key["keyType"], "auth");
    assert_eq!(key["expirySeconds"], 90 * 24 * 3600);
    assert_eq!(key["expires"], "2026-04-01T00:00:00Z");
    assert_eq!(key["invalid"], false);
    assert_eq!(
        key["capabilities"]["devices"]["create"],
        json!({"reusable": true, "ephemeral": false, "preauthorized": true, "tags": ["tag:ci"]})
    );
    let id = key["id"].as_str().unwrap().to_string();
    let stored = v.tailnet.find_preauth_key(&id).unwrap();
    assert_eq!(
        (stored.user_id, stored.tags.clone()),
        (None, vec!["tag:ci".to_string()])
    );

    // Listed and read without the secret.
    let r = v.get("/api/v2/tailnet/-/keys", &ci).await;
    assert_eq!(r.ok()["keys"][0]["id"], id.as_str());
    assert!(!r.text.contains(&secret[23..]));
    let r = v.get(&format!("/api/v2/tailnet/-/keys/{id}"), &ci).await;
    assert_eq!(
        r.ok()["capabilities"]["devices"]["create"]["reusable"],
        true
    );
    assert!(r.body.get("key").is_none(), "{}", r.text);

    // A given life.
    let r = v
        .post(
            "/api/v2/tailnet/-/keys",
            &ci,
            json!({"capabilities": {"devices": {"create": {"tags": ["tag:ci"]}}}, "expirySeconds": 3600}),
        )
        .await;
    assert_eq!(r.ok()["expires"], "2026-01-01T01:00:00Z");
    assert_eq!(r.ok()["expirySeconds"], 3600);

    // Refusals.
    for (body, status, needle) in [
        (
            json!({"capabilities": {"devices": {"create": {"tags": ["tag:prod"]}}}}),
            403,
            "tag:prod",
        ),
        (
            json!({"capabilities": {"devices": {"create": {"tags": null}}}}),
            400,
            "needs tags",
        ),
        (json!({}), 400, "needs tags"),
        (
            json!({"capabilities": {"devices": {"create": {"tags": ["tag:ci"]}}}, "expirySeconds": -5}),
            400,
            "negative",
        ),
        (json!({"keyType": "api"}), 400, "keyType"),
        (
            json!({"keyType": "client", "scopes": ["all"]}),
            403,
            "API key",
        ),
        (json!({"capabilities": "all"}), 400, "request body"),
    ] {
        let message = v
            .refused(
                Method::POST,
                "/api/v2/tailnet/-/keys",
                &ci,
                Some(body.clone()),
                status,
            )
            .await;
        assert!(message.contains(needle), "{body}: {message}");
    }
    v.refused(Method::GET, "/api/v2/tailnet/-/keys/99", &ci, None, 404)
        .await;
    v.refused(Method::GET, "/api/v2/tailnet/nope/keys", &ci, None, 404)
        .await;

    // Deleted: gone.
    v.delete(&format!("/api/v2/tailnet/-/keys/{id}"), &ci)
        .await
        .ok();
    v.get(&format!("/api/v2/tailnet/-/keys/{id}"), &ci)
        .await
        .error(404);
    let reader = v.token(&["auth_keys:read"], &[]).await;
    v.get("/api/v2/tailnet/-/keys", &reader).await.ok();
    let second = v.tailnet.list_preauth_keys(None)[0].id;
    v.refused(
        Method::DELETE,
        &format!("/api/v2/tailnet/-/keys/{second}"),
        &reader,
        None,
        403,
    )
    .await;
}

#[tokio::test]
async fn oauth_clients_through_the_keys_resource_with_an_api_key() {
    let v = V2::new().await;
    let r = v
        .post(
            "/api/v2/tailnet/-/keys",
            &v.admin,
            json!({"keyType": "client", "scopes": ["devices:core"], "tags": ["tag:k8s"], "description": "operator"}),
        )
        .await;
    let client = r.ok().clone();
    assert_eq!(client["keyType"], "client");
    assert_eq!(client["scopes"], json!(["devices:core"]));
    let id = client["id"].as_str().unwrap().to_string();
    let secret = client["key"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with(&format!("hskey-client-{id}-")),
        "{client}"
    );
    let r = v.get("/api/v2/tailnet/-/keys", &v.admin).await;
    assert!(
        r.ok()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["keyType"] == "client"),
        "{}",
        r.text
    );
    assert!(!r.text.contains(&secret[26..]));
    v.get(&format!("/api/v2/tailnet/-/keys/{id}"), &v.admin)
        .await
        .ok();
    // Tokens do not see clients.
    let token = v.token(&["auth_keys"], &["tag:ci"]).await;
    v.get(&format!("/api/v2/tailnet/-/keys/{id}"), &token)
        .await
        .error(404);
    let message = v
        .refused(
            Method::POST,
            "/api/v2/tailnet/-/keys",
            &v.admin,
            Some(json!({"keyType": "client", "scopes": ["auth_keys"]})),
            400,
        )
        .await;
    assert!(message.contains("tags"), "{message}");
    v.delete(&format!("/api/v2/tailnet/-/keys/{id}"), &v.admin)
        .await
        .ok();
    assert!(
        v.tailnet
            .issue_access_token(&id, &secret, &[], &[])
            .is_err()
    );
}

// --- the policy file --------------------------------------------------------------------

const POLICY: &str = r#"// the policy
{
  "acls": [
    {"action": "accept", "src": ["*"], "dst": ["*:22"]},
  ],
}
"#;

#[tokio::test]
async fn policy_file_get_set_with_etags() {
    let v = V2::new().await;
    let acl = "/api/v2/tailnet/-/acl";
    // No policy: Tailscale's allow-all default.
    let r = v
        .call(
            Method::GET,
            acl,
            &v.admin,
            &[("accept", "application/hujson")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, DEFAULT_POLICY);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/hujson");
    assert_eq!(r.headers[header::ETAG], etag(DEFAULT_POLICY).as_str());
    // As JSON by default.
    let r = v.get(acl, &v.admin).await;
    assert_eq!(r.ok()["acls"][0]["src"], json!(["*"]));

    // Set, on condition that nobody wrote one yet.
    let r = v
        .call(
            Method::POST,
            acl,
            &v.admin,
            &[
                ("if-match", "\"ts-default\""),
                ("content-type", "application/hujson"),
                ("accept", "application/hujson"),
            ],
            POLICY,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.text, POLICY);
    assert_eq!(r.headers[header::ETAG], etag(POLICY).as_str());
    assert_eq!(v.tailnet.policy_info().text.as_deref(), Some(POLICY));
    let r = v.get(acl, &v.admin).await;
    assert_eq!(r.ok()["acls"][0]["dst"], json!(["*:22"]));
    assert_eq!(r.headers[header::ETAG], etag(POLICY).as_str());
    // Older clients ask for details: the text, base64.
    let r = v.get(&format!("{acl}?details=1"), &v.admin).await;
    let text = base64::engine::general_purpose::STANDARD
        .decode(r.ok()["acl"].as_str().unwrap())
        .unwrap();
    assert_eq!(text, POLICY.as_bytes());

    // Stale: 412, nothing changed.
    let before = v.snapshot();
    for stale in ["\"ts-default\"", "\"0123\""] {
        let r = v
            .call(Method::POST, acl, &v.admin, &[("if-match", stale)], "{}")
            .await;
        r.error(412);
    }
    assert_eq!(v.snapshot(), before);
    // With the current ETag it goes through.
    let tag = etag(POLICY);
    let r = v
        .call(Method::POST, acl, &v.admin, &[("if-match", &tag)], "{}")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(v.tailnet.policy_info().text.as_deref(), Some("{}"));

    // Refused policies say where; empty bodies are refused.
    let message = v
        .call(
            Method::POST,
            acl,
            &v.admin,
            &[],
            "{\n \"acls\": [{\"action\": \"accept\", \"src\": [\"group:x\"], \"dst\": [\"*:*\"]}]}",
        )
        .await
        .error(400);
    assert!(
        message.contains("group:x") && message.contains("line 2"),
        "{message}"
    );
    v.call(Method::POST, acl, &v.admin, &[], " ")
        .await
        .error(400);
    assert_eq!(v.tailnet.policy_info().text.as_deref(), Some("{}"));
    // A reader may read, not write.
    let reader = v.token(&["policy_file:read"], &[]).await;
    v.get(acl, &reader).await.ok();
    v.call(Method::POST, acl, &reader, &[], POLICY)
        .await
        .error(403);
}

#[tokio::test]
async fn validate_a_policy_or_tests() {
    let v = V2::new().await;
    let alice = v.user("alice").await;
    v.node(&alice, 1, "laptop", &[]).await;
    v.tailnet.set_policy(POLICY).await.unwrap();
    let validate = "/api/v2/tailnet/-/acl/validate";
    let reader = v.token(&["policy_file:read"], &[]).await;
    let before = v.snapshot();
    // A good policy.
    let r = v.call(Method::POST, validate, &reader, &[], POLICY).await;
    assert_eq!(r.ok(), &json!({}));
    // A bad one: 200 with the message.
    let r = v
        .call(
            Method::POST,
            validate,
            &reader,
            &[],
            r#"{"acls": [{"action": "allow"}]}"#,
        )
        .await;
    let message = r.ok()["message"].as_str().unwrap().to_string();
    assert!(message.contains("acls[0]"), "{message}");
    // Tests against the policy in force: alice may reach :22, not :80.
    let r = v
        .call(
            Method::POST,
            validate,
            &reader,
            &[],
            r#"[{"src": "alice@example.com", "accept": ["100.64.0.1:22"], "deny": ["100.64.0.1:80"]}]"#,
        )
        .await;
    assert_eq!(r.ok(), &json!({}));
    let r = v
        .call(
            Method::POST,
            validate,
            &reader,
            &[],
            r#"[{"src": "alice@example.com", "accept": ["100.64.0.1:80"]}]"#,
        )
        .await;
    assert_eq!(r.ok()["message"], "test(s) failed", "{}", r.text);
    let errors = r.body["data"][0]["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{}", r.text);
    assert!(
        errors[0].as_str().unwrap().contains("100.64.0.1:80"),
        "{}",
        r.text
    );
    // Nothing to validate; not JSON tests.
    v.call(Method::POST, validate, &reader, &[], "")
        .await
        .error(400);
    v.call(Method::POST, validate, &reader, &[], "[{]")
        .await
        .error(400);
    assert_eq!(v.snapshot(), before);
    let nobody = v.token(&["devices:core:read"], &[]).await;
    v.call(Method::POST, validate, &nobody, &[], POLICY)
        .await
        .error(403);
}

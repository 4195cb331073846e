#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

//! The console's doors, in process: no state change without a session and
//! its CSRF token (and from this origin), sign-in and sign-out, security
//! headers, and that what a machine reports (its host name) is shown as
//! text, never run.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, MapRequest, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::memstore::MemStore;
use headway_state::settings::Settings;
use headway_state::tailnet::{NewPreAuthKey, NewUser};
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOST: &str = "console.test";
const EVIL: &str = "<script>alert(1)</script>";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct Kit {
    tailnet: Arc<Tailnet>,
    app: Router,
    api_key: String,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap()[name.len() + 1..].to_string())
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// A signed-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Kit {
    async fn new() -> Kit {
        let clock = Arc::new(ManualClock::new(t0()));
        let tailnet = Tailnet::load(Arc::new(MemStore::default()), clock, Settings::default())
            .await
            .unwrap();
        let guard = headway_api::Guard::new(tailnet.clone());
        let t = tailnet.clone();
        let options = headway_console::Options::new(Arc::new(move || t.now()));
        let app =
            headway_console::router(headway_api::network_router(tailnet.clone(), guard), options);
        let (_, api_key) = tailnet.create_api_key(None).await.unwrap();
        Kit {
            tailnet,
            app,
            api_key,
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        cookies: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if !cookies.is_empty() {
            req = req.header(header::COOKIE, cookies);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, cookies: &str) -> Reply {
        self.send(Method::GET, uri, cookies, &[], "").await
    }

    async fn sign_in_with(&self, key: &str) -> Reply {
        let form = self.get("/admin/login", "").await;
        assert_eq!(form.status, StatusCode::OK);
        let login = form.cookie("headway_console_login").unwrap();
        self.send(
            Method::POST,
            "/admin/login",
            &format!("headway_console_login={login}"),
            &[],
            &format!("_login={login}&api_key={key}"),
        )
        .await
    }

    async fn sign_in(&self) -> Browser {
        let r = self.sign_in_with(&self.api_key.clone()).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location(), "/admin");
        let cookie = format!("headway_console={}", r.cookie("headway_console").unwrap());
        let page = self.get("/admin", &cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let at = page.body.find("name=\"csrf-token\" content=\"").unwrap() + 27;
        let csrf = page.body[at..at + 64].to_string();
        Browser { cookie, csrf }
    }

    async fn node(&self, user: u64, n: u8, host: &str, routes: &[&str]) -> i64 {
        let (_, key) = self
            .tailnet
            .create_preauth_key(NewPreAuthKey {
                user: Some(user as i64),
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
        let map = MapRequest {
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
            .apply_map_request(MachinePublic([n; 32]), &map)
            .await
            .unwrap();
        self.tailnet.node_by_key(&NodePublic([n; 32])).unwrap().id
    }

    /// Everything a refused request could have changed.
    fn snapshot(&self) -> String {
        let nodes: Vec<String> = self
            .tailnet
            .nodes()
            .iter()
            .map(|n| {
                format!(
                    "{} {} {:?} {:?} {:?} {}",
                    n.id,
                    n.given_name,
                    n.tags,
                    n.approved_routes,
                    n.expiry,
                    n.user_id.unwrap_or(0)
                )
            })
            .collect();
        let users: Vec<String> = self
            .tailnet
            .users()
            .iter()
            .map(|u| u.name.clone())
            .collect();
        format!(
            "{nodes:?} {users:?} {:?} {} {:?} {:?}",
            self.tailnet.policy_info().text,
            self.tailnet.list_api_keys().len(),
            self.tailnet
                .list_preauth_keys(None)
                .iter()
                .map(|k| (k.id, k.expiration))
                .collect::<Vec<_>>(),
            self.tailnet
                .list_api_keys()
                .iter()
                .map(|k| k.expiration)
                .collect::<Vec<_>>(),
        )
    }
}

/// A tailnet with something to change: a user, a node with a route, a
/// pre-auth key, a waiting machine.
async fn populated() -> (Kit, i64, String) {
    let kit = Kit::new().await;
    let user = kit
        .tailnet
        .create_user(NewUser {
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let node = kit
        .node(user.id as u64, 1, "laptop", &["10.1.0.0/24"])
        .await;
    let waiting = RegisterRequest {
        version: 133,
        node_key: NodePublic([9; 32]),
        hostinfo: Some(Hostinfo {
            hostname: "waiting".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (resp, _) = kit
        .tailnet
        .register(MachinePublic([9; 32]), &waiting)
        .await
        .unwrap();
    let auth_id = resp.auth_url.rsplit('/').next().unwrap().to_string();
    (kit, node, auth_id)
}

/// Every state-changing console request with a form that would work.
fn changes(node: i64, user: i64, auth_id: &str, api_prefix: &str) -> Vec<(String, String)> {
    vec![
        ("/admin/users".into(), "name=mallory".into()),
        (format!("/admin/users/{user}/rename"), "name=eve".into()),
        (format!("/admin/users/{user}/delete"), "confirm=yes".into()),
        (format!("/admin/nodes/{node}/rename"), "name=pwned".into()),
        (format!("/admin/nodes/{node}/expire"), "confirm=yes".into()),
        (format!("/admin/nodes/{node}/delete"), "confirm=yes".into()),
        (format!("/admin/nodes/{node}/move"), format!("user={user}")),
        (format!("/admin/nodes/{node}/tags"), "tags=tag%3Ax".into()),
        (
            format!("/admin/nodes/{node}/routes"),
            "route=10.1.0.0%2F24".into(),
        ),
        ("/admin/keys/preauth".into(), format!("user={user}&hours=5")),
        ("/admin/keys/preauth/1/expire".into(), "confirm=yes".into()),
        ("/admin/keys/api".into(), "days=5".into()),
        (
            format!("/admin/keys/api/{api_prefix}/expire"),
            "confirm=yes".into(),
        ),
        (
            "/admin/registrations/approve".into(),
            format!("auth_id={auth_id}&user=alice"),
        ),
        (
            "/admin/registrations/reject".into(),
            format!("auth_id={auth_id}&confirm=yes"),
        ),
        ("/admin/policy".into(), "policy=%7B%7D".into()),
        ("/admin/policy/check".into(), "policy=%7B%7D".into()),
        ("/admin/logout".into(), String::new()),
    ]
}

#[tokio::test]
async fn without_a_session_no_request_changes_anything() {
    let (kit, node, auth_id) = populated().await;
    let prefix = kit.tailnet.list_api_keys()[0].prefix.clone();
    let before = kit.snapshot();
    let bogus = "headway_console=0000000000000000000000000000000000000000000000000000000000000000";
    for (path, form) in changes(node, 1, &auth_id, &prefix) {
        for cookies in ["", bogus] {
            let r = kit
                .send(
                    Method::POST,
                    &path,
                    cookies,
                    &[],
                    &format!("{form}&_csrf=x"),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "POST {path} ({cookies:?}): {}",
                r.body
            );
        }
    }
    assert_eq!(kit.snapshot(), before);
    assert_eq!(kit.tailnet.pending_registrations().len(), 1);
}

#[tokio::test]
async fn without_the_csrf_token_or_from_another_site_no_request_changes_anything() {
    let (kit, node, auth_id) = populated().await;
    let browser = kit.sign_in().await;
    let prefix = kit.tailnet.list_api_keys()[0].prefix.clone();
    let before = kit.snapshot();
    for (path, form) in changes(node, 1, &auth_id, &prefix) {
        let missing = kit
            .send(Method::POST, &path, &browser.cookie, &[], &form)
            .await;
        assert_eq!(
            missing.status,
            StatusCode::FORBIDDEN,
            "POST {path} without a token"
        );
        let wrong = kit
            .send(
                Method::POST,
                &path,
                &browser.cookie,
                &[],
                &format!("{form}&_csrf={}", "f".repeat(64)),
            )
            .await;
        assert_eq!(
            wrong.status,
            StatusCode::FORBIDDEN,
            "POST {path} with a wrong token"
        );
        let wrong_header = kit
            .send(
                Method::POST,
                &path,
                &browser.cookie,
                &[("x-csrf-token", "nope")],
                &form,
            )
            .await;
        assert_eq!(
            wrong_header.status,
            StatusCode::FORBIDDEN,
            "POST {path} with a wrong header"
        );
        let good = format!("{form}&_csrf={}", browser.csrf);
        let foreign = kit
            .send(
                Method::POST,
                &path,
                &browser.cookie,
                &[("origin", "https://evil.example")],
                &good,
            )
            .await;
        assert_eq!(
            foreign.status,
            StatusCode::FORBIDDEN,
            "POST {path} from another origin"
        );
        let cross_site = kit
            .send(
                Method::POST,
                &path,
                &browser.cookie,
                &[("sec-fetch-site", "cross-site")],
                &good,
            )
            .await;
        assert_eq!(
            cross_site.status,
            StatusCode::FORBIDDEN,
            "POST {path} cross-site"
        );
        // Other methods are state changes too.
        for method in [Method::PUT, Method::DELETE, Method::PATCH] {
            let r = kit
                .send(method.clone(), &path, &browser.cookie, &[], &form)
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path} without a token"
            );
        }
    }
    assert_eq!(kit.snapshot(), before);
    assert_eq!(kit.tailnet.pending_registrations().len(), 1);
    // The session survived all that: the same requests with the token work.
    let ok = kit
        .send(
            Method::POST,
            &format!("/admin/nodes/{node}/rename"),
            &browser.cookie,
            &[("origin", &format!("http://{HOST}"))],
            &format!("name=renamed&_csrf={}", browser.csrf),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(kit.tailnet.node(node).unwrap().given_name, "renamed");
    let created = kit
        .send(
            Method::POST,
            "/admin/users",
            &browser.cookie,
            &[],
            &format!("name=bob&_csrf={}", browser.csrf),
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);
    assert!(kit.tailnet.users().iter().any(|u| u.name == "bob"));
}

#[tokio::test]
async fn destructive_actions_need_their_confirmation() {
    let (kit, node, _) = populated().await;
    let browser = kit.sign_in().await;
    let r = kit
        .send(
            Method::POST,
            &format!("/admin/nodes/{node}/delete"),
            &browser.cookie,
            &[],
            &format!("_csrf={}", browser.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        kit.tailnet.node(node).is_some(),
        "deleted without confirmation"
    );
    let page = kit
        .get(&format!("/admin/nodes/{node}"), &browser.cookie)
        .await;
    assert!(
        page.body.contains("tick the confirmation box"),
        "{}",
        page.body
    );
    kit.send(
        Method::POST,
        &format!("/admin/nodes/{node}/delete"),
        &browser.cookie,
        &[],
        &format!("confirm=yes&_csrf={}", browser.csrf),
    )
    .await;
    assert!(kit.tailnet.node(node).is_none());
}

#[tokio::test]
async fn sign_in_needs_a_valid_key_and_this_page_and_sign_out_ends_the_session() {
    let kit = Kit::new().await;
    // Without a session every page sends the browser to sign in.
    let r = kit.get("/admin/nodes", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/admin/login");
    assert_eq!(
        kit.get("/admin/events", "").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A wrong key.
    let wrong = kit.sign_in_with("hskey-api-AAAAAAAAAAAA-wrong").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie("headway_console").is_none());
    // The right key, but not from the sign-in page (no login cookie).
    let forged = kit
        .send(
            Method::POST,
            "/admin/login",
            "",
            &[],
            &format!("_login=abc&api_key={}", kit.api_key),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.cookie("headway_console").is_none());
    // Signed in: the cookie is HttpOnly and SameSite=Strict.
    let ok = kit.sign_in_with(&kit.api_key.clone()).await;
    let set = ok
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("headway_console="))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/admin"),
        "{set}"
    );
    assert!(
        !set.contains(&kit.api_key),
        "the cookie must not carry the API key"
    );
    let browser = kit.sign_in().await;
    assert_eq!(
        kit.get("/admin/nodes", &browser.cookie).await.status,
        StatusCode::OK
    );
    let out = kit
        .send(
            Method::POST,
            "/admin/logout",
            &browser.cookie,
            &[],
            &format!("_csrf={}", browser.csrf),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.cookie("headway_console").as_deref(), Some(""));
    let after = kit.get("/admin/nodes", &browser.cookie).await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the session must be over"
    );
    // A key that stops working ends the session too.
    let browser = kit.sign_in().await;
    let id = kit.tailnet.list_api_keys()[0].id;
    kit.tailnet.expire_api_key(id).await.unwrap();
    let r = kit.get("/admin/nodes", &browser.cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/admin/login");
}

#[tokio::test]
async fn a_script_in_a_host_name_is_shown_as_text_and_pages_carry_a_strict_csp() {
    let kit = Kit::new().await;
    let user = kit
        .tailnet
        .create_user(NewUser {
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let node = kit.node(user.id as u64, 1, EVIL, &[]).await;
    let waiting = RegisterRequest {
        version: 133,
        node_key: NodePublic([7; 32]),
        hostinfo: Some(Hostinfo {
            hostname: EVIL.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    kit.tailnet
        .register(MachinePublic([7; 32]), &waiting)
        .await
        .unwrap();
    let browser = kit.sign_in().await;
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    for path in [
        "/admin".to_string(),
        "/admin/nodes".to_string(),
        format!("/admin/nodes/{node}"),
        "/admin/registrations".to_string(),
        "/admin/users".to_string(),
        "/admin/keys".to_string(),
        "/admin/policy".to_string(),
        "/admin/dns".to_string(),
        "/admin/audit".to_string(),
        "/admin/login".to_string(),
    ] {
        let page = kit.get(&path, &browser.cookie).await;
        assert!(
            page.status == StatusCode::OK || page.status == StatusCode::SEE_OTHER,
            "{path}: {}",
            page.status
        );
        assert!(
            !page.body.contains(EVIL),
            "{path} renders the host name as markup"
        );
        let csp = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        // No inline script: every <script> has a src.
        for (i, _) in page.body.match_indices("<script") {
            let tag_end = page.body[i..].find('>').unwrap();
            assert!(
                page.body[i..i + tag_end].contains("src="),
                "{path}: inline script"
            );
        }
    }
    let nodes = kit.get("/admin/nodes", &browser.cookie).await;
    assert!(
        nodes.body.contains(escaped),
        "the host name is shown, escaped"
    );
    let pending = kit.get("/admin/registrations", &browser.cookie).await;
    assert!(
        pending.body.contains(escaped),
        "the waiting machine's host name is shown, escaped"
    );
    // A search term comes back escaped too.
    let search = kit
        .get(
            "/admin/nodes?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            &browser.cookie,
        )
        .await;
    assert!(!search.body.contains(EVIL));
}

#[tokio::test]
async fn a_refused_policy_is_kept_and_its_line_marked() {
    let kit = Kit::new().await;
    let browser = kit.sign_in().await;
    let bad = "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]},\n    {\"action\": \"allow\" \"src\": []}\n  ]\n}\n";
    let body = format!(
        "policy={}&_csrf={}",
        bad.replace('%', "%25")
            .replace('\n', "%0A")
            .replace(' ', "+")
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace(':', "%3A")
            .replace('*', "%2A"),
        browser.csrf
    );
    let r = kit
        .send(Method::POST, "/admin/policy", &browser.cookie, &[], &body)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("data-line=\"4\""), "{}", r.body);
    assert!(
        r.body.contains("{&quot;action&quot;: &quot;allow&quot;")
            || r.body.contains("{\"action\": \"allow\""),
        "the text is kept"
    );
    assert!(
        kit.tailnet.policy_info().text.is_none(),
        "a refused policy is not saved"
    );
}

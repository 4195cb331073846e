#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

//! The audit log page, in process: what the console did shows up with who
//! did it and what changed; filters narrow it down (and a bad one is
//! explained, not ignored); an empty log and an empty result say so; what
//! the log holds is shown as text.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::memstore::MemStore;
use headway_state::settings::Settings;
use http_body_util::BodyExt;
use tower::ServiceExt;

const EVIL: &str = "<script>alert(1)</script>";

struct Kit {
    tailnet: Arc<Tailnet>,
    app: Router,
    cookie: String,
    csrf: String,
    key_prefix: String,
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    cookie: &str,
    body: &str,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if !cookie.is_empty() {
        req = req.header(header::COOKIE, cookie);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("headway_console="));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        set_cookie,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

impl Kit {
    /// A console signed in with an API key, over an empty tailnet.
    async fn new() -> Kit {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
        ));
        let tailnet: Arc<Tailnet> =
            Tailnet::load(Arc::new(MemStore::default()), clock, Settings::default())
                .await
                .unwrap();
        let guard = headway_api::Guard::new(tailnet.clone());
        let t = tailnet.clone();
        let options = headway_console::Options::new(Arc::new(move || t.now()));
        let app =
            headway_console::router(headway_api::network_router(tailnet.clone(), guard), options);
        let (_, api_key) = tailnet.create_api_key(None).await.unwrap();
        let key_prefix = api_key
            .strip_prefix("hskey-api-")
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_string();

        let (_, _, form) = send(&app, Method::GET, "/admin/login", "", "").await;
        let at = form.find("name=\"_login\" value=\"").unwrap() + 21;
        let login = form[at..at + 64].to_string();
        let (status, cookie, body) = send(
            &app,
            Method::POST,
            "/admin/login",
            &format!("headway_console_login={login}"),
            &format!("_login={login}&api_key={api_key}"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let cookie = cookie.unwrap();
        let (_, _, page) = send(&app, Method::GET, "/admin", &cookie, "").await;
        let at = page.find("name=\"csrf-token\" content=\"").unwrap() + 27;
        let csrf = page[at..at + 64].to_string();
        Kit {
            tailnet,
            app,
            cookie,
            csrf,
            key_prefix,
        }
    }

    fn user_id(&self, name: &str) -> i64 {
        self.tailnet
            .users()
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no user {name}"))
            .id
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let (status, _, body) = send(&self.app, Method::GET, uri, &self.cookie, "").await;
        (status, body)
    }

    async fn post(&self, uri: &str, form: &str) {
        let (status, _, body) = send(
            &self.app,
            Method::POST,
            uri,
            &self.cookie,
            &format!("_csrf={}&{form}", self.csrf),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}: {body}");
    }
}

/// The rows of the audit table: (actor, action, target) of each.
fn rows(page: &str) -> Vec<String> {
    page.split("<tr data-audit-id=")
        .skip(1)
        .map(|row| row[..row.find("</tr>").unwrap()].to_string())
        .collect()
}

#[tokio::test]
async fn actions_show_up_with_who_did_them_and_what_changed() {
    let kit = Kit::new().await;
    let (status, page) = kit.get("/admin/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("The audit log is empty."), "{page}");
    assert!(page.contains("aria-current=\"page\">Audit log"), "{page}");

    kit.post(
        "/admin/users",
        &format!(
            "name=alice&display_name={}",
            urlencode("Alice <script>alert(1)</script>")
        ),
    )
    .await;
    let alice = kit.user_id("alice");
    kit.post(&format!("/admin/users/{alice}/rename"), "name=alicia")
        .await;

    let (status, page) = kit.get("/admin/audit").await;
    assert_eq!(status, StatusCode::OK);
    let rows = rows(&page);
    assert_eq!(rows.len(), 2, "{page}");
    // Newest first; each names the API key the console acted with.
    assert!(rows[0].contains(">user.rename<"), "{}", rows[0]);
    assert!(rows[1].contains(">user.create<"), "{}", rows[1]);
    for row in &rows {
        assert!(
            row.contains(&format!(">api_key:{}<", kit.key_prefix)),
            "{row}"
        );
        assert!(row.contains(&format!(">user:{alice}<")), "{row}");
    }
    // The rename: the name field, before and after.
    assert!(
        rows[0].contains("<del>alice</del> → <ins>alicia</ins>"),
        "{}",
        rows[0]
    );
    // What the log holds is text, never markup.
    assert!(!page.contains(EVIL), "{page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
    // Each value links to the log filtered by it.
    assert!(
        page.contains("href=\"/admin/audit?action=user.create\""),
        "{page}"
    );
}

#[tokio::test]
async fn filters_narrow_the_log_and_a_bad_filter_is_explained() {
    let kit = Kit::new().await;
    kit.post("/admin/users", "name=alice").await;
    kit.post("/admin/users", "name=bob").await;
    let bob = kit.user_id("bob");
    kit.post(&format!("/admin/users/{bob}/rename"), "name=robert")
        .await;

    let (_, page) = kit.get("/admin/audit?action=user.create").await;
    assert_eq!(rows(&page).len(), 2, "{page}");
    assert!(page.contains("value=\"user.create\""), "the form keeps it");
    let (_, page) = kit.get(&format!("/admin/audit?target=user%3A{bob}")).await;
    assert_eq!(rows(&page).len(), 2, "{page}");
    let (_, page) = kit.get("/admin/audit?action=user.&limit=1").await;
    let shown = rows(&page);
    assert_eq!(shown.len(), 1, "{page}");
    assert!(shown[0].contains(">user.rename<"));
    assert!(page.contains("Older entries"), "a full page links to older");
    // A day in "To" includes that day; the whole log is on 2026-03-01.
    let (_, page) = kit
        .get("/admin/audit?since=2026-03-01&until=2026-03-01")
        .await;
    assert_eq!(rows(&page).len(), 3, "{page}");
    let (_, page) = kit.get("/admin/audit?since=2026-03-02").await;
    assert!(rows(&page).is_empty());
    assert!(page.contains("No entry matches these filters."), "{page}");
    let (_, page) = kit.get("/admin/audit?action=node.").await;
    assert!(page.contains("No entry matches these filters."), "{page}");

    let (status, page) = kit.get("/admin/audit?since=last+tuesday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("since &quot;last tuesday&quot;: give a day such as 2026-01-31"),
        "{page}"
    );
    assert!(rows(&page).is_empty());
    let (status, page) = kit.get("/admin/audit?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("give a whole number from 1 to 10000"),
        "{page}"
    );
}

#[tokio::test]
async fn the_audit_log_needs_a_session() {
    let kit = Kit::new().await;
    let (status, _, _) = send(&kit.app, Method::GET, "/admin/audit", "", "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

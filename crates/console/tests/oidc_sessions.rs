#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

//! The console's side of OIDC sign-in, with a stand-in provider: only
//! administrators get a session; the session calls the API with a key
//! minted for it, which is deleted at sign-out; a callback without the
//! login's cookie is refused.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;
use headway_console::{AdminIdentity, AdminOidc, AdminRule, OidcFailure};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::memstore::MemStore;
use headway_state::settings::Settings;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Hands out `who` for any callback whose query carries the state it gave.
struct Provider {
    who: AdminIdentity,
}

impl AdminOidc for Provider {
    fn begin(&self) -> BoxFuture<'_, Result<(String, String), OidcFailure>> {
        Box::pin(async { Ok(("https://idp.example/authorize?state=s1".into(), "s1".into())) })
    }

    fn finish(
        &self,
        state: String,
        query: String,
    ) -> BoxFuture<'_, Result<AdminIdentity, OidcFailure>> {
        Box::pin(async move {
            if query.contains(&format!("state={state}")) {
                Ok(self.who.clone())
            } else {
                Err(OidcFailure("state mismatch".into()))
            }
        })
    }
}

async fn app(who: AdminIdentity) -> (Arc<Tailnet>, Router) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    ));
    let tailnet = Tailnet::load(Arc::new(MemStore::default()), clock, Settings::default())
        .await
        .unwrap();
    let t = tailnet.clone();
    let mut options = headway_console::Options::new(Arc::new(move || t.now()));
    options.oidc = Some((
        Arc::new(Provider { who }),
        AdminRule {
            emails: vec!["root@example.com".into()],
            groups: vec!["admins".into()],
        },
    ));
    options.trusted_api = Some(headway_api::router(tailnet.clone()));
    let guard = headway_api::Guard::new(tailnet.clone());
    let router =
        headway_console::router(headway_api::network_router(tailnet.clone(), guard), options);
    (tailnet, router)
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    cookie: &str,
    body: &str,
) -> (StatusCode, Vec<String>, String) {
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
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, cookies, String::from_utf8_lossy(&body).into_owned())
}

fn named<'a>(cookies: &'a [String], name: &str) -> &'a str {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
}

#[tokio::test]
async fn an_administrator_gets_a_session_with_its_own_key_deleted_at_sign_out() {
    let (tailnet, app) = app(AdminIdentity {
        name: "Root".into(),
        email: "root@example.com".into(),
        email_verified: true,
        groups: vec![],
    })
    .await;
    let (status, cookies, _) = send(&app, Method::GET, "/admin/oidc/start", "", "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let login = named(&cookies, "headway_console_oidc").to_string();
    // Without the login's cookie the callback is refused.
    let (status, cookies_none, _) = send(
        &app,
        Method::GET,
        "/admin/oidc/callback?code=c&state=s1",
        "",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        !cookies_none
            .iter()
            .any(|c| c.starts_with("headway_console="))
    );
    let (status, cookies, body) = send(
        &app,
        Method::GET,
        "/admin/oidc/callback?code=c&state=s1",
        &login,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let session = named(&cookies, "headway_console").to_string();
    assert_eq!(
        tailnet.list_api_keys().len(),
        1,
        "a key is minted for the session"
    );
    // The cookie of a finished login cannot be used again.
    let (status, _, _) = send(
        &app,
        Method::GET,
        "/admin/oidc/callback?code=c&state=s1",
        &login,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, page) = send(&app, Method::GET, "/admin", &session, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("root@example.com"));
    let at = page.find("name=\"csrf-token\" content=\"").unwrap() + 27;
    let csrf = &page[at..at + 64];
    let (status, _, _) = send(
        &app,
        Method::POST,
        "/admin/logout",
        &session,
        &format!("_csrf={csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        tailnet.list_api_keys().is_empty(),
        "the session's key is deleted at sign-out"
    );
}

#[tokio::test]
async fn someone_who_is_not_an_administrator_gets_no_session_and_no_key() {
    for who in [
        AdminIdentity {
            name: "Eve".into(),
            email: "eve@example.com".into(),
            email_verified: true,
            groups: vec!["staff".into()],
        },
        // The right address, but not verified by the provider.
        AdminIdentity {
            name: "Root?".into(),
            email: "root@example.com".into(),
            email_verified: false,
            groups: vec![],
        },
    ] {
        let (tailnet, app) = app(who).await;
        let (_, cookies, _) = send(&app, Method::GET, "/admin/oidc/start", "", "").await;
        let login = named(&cookies, "headway_console_oidc").to_string();
        let (status, cookies, body) = send(
            &app,
            Method::GET,
            "/admin/oidc/callback?code=c&state=s1",
            &login,
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("is not an administrator"));
        assert!(!cookies.iter().any(|c| c.starts_with("headway_console=")));
        assert!(tailnet.list_api_keys().is_empty());
    }
}

#[test]
fn group_members_are_administrators() {
    let rule = AdminRule {
        emails: vec![],
        groups: vec!["admins".into()],
    };
    assert!(rule.admits(&AdminIdentity {
        groups: vec!["staff".into(), "admins".into()],
        ..Default::default()
    }));
    assert!(!rule.admits(&AdminIdentity::default()));
}

//! headway-console: the web admin console at `/admin`, served by the
//! server itself with every asset embedded (no CDN, works offline).
//!
//! Server-rendered HTML ([`maud`] templates, which escape every value) and
//! one small script for progressive enhancement: live online state over
//! server-sent events, the policy editor's check-as-you-go and line marks.
//! Every page works without the script except the live updates.
//!
//! The console has no back door: everything it shows or changes goes
//! through the admin REST API ([`api`]), in process, with the signed-in
//! person's API key, through the same guard as any other API client. The
//! one exception is sign-in with OIDC, which mints a short-lived API key
//! for the session over the trusted (local) API door and deletes it at
//! sign-out.
//!
//! What this crate owns: sessions, CSRF, security headers, pages. What it
//! must not do: decide anything about the tailnet (the API and the state
//! crate do).

pub mod api;
mod assets;
mod audit_page;
mod gate;
mod layout;
mod login;
mod pages;
mod policy_page;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::api::{Api, Credentials};
use crate::session::{Session, Sessions};

/// Where the console lives.
pub const BASE: &str = "/admin";

/// The time, from the server's clock (tests move it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A person the identity provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminIdentity {
    /// Shown in the console header.
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    pub groups: Vec<String>,
}

/// Why an OIDC sign-in failed (shown to the person).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct OidcFailure(pub String);

/// Sign-in with the server's OpenID Connect provider, implemented by the
/// server over its OIDC client (this crate does not speak OIDC itself).
pub trait AdminOidc: Send + Sync {
    /// Starts a login that returns to `/admin/oidc/callback`: the
    /// provider's URL to send the browser to, and the state to keep until
    /// the callback.
    fn begin(&self) -> BoxFuture<'_, Result<(String, String), OidcFailure>>;
    /// Finishes it: `state` is what `begin` returned, `query` the
    /// callback's query string.
    fn finish(
        &self,
        state: String,
        query: String,
    ) -> BoxFuture<'_, Result<AdminIdentity, OidcFailure>>;
}

/// Who may sign in with OIDC (`console.admins`, `console.admin_groups`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminRule {
    /// Email addresses (verified) that are administrators.
    pub emails: Vec<String>,
    /// Groups (from the `groups` claim) whose members are administrators.
    pub groups: Vec<String>,
}

impl AdminRule {
    pub fn admits(&self, who: &AdminIdentity) -> bool {
        let by_email = who.email_verified
            && !who.email.is_empty()
            && self
                .emails
                .iter()
                .any(|e| e.eq_ignore_ascii_case(&who.email));
        let by_group = who.groups.iter().any(|g| self.groups.contains(g));
        by_email || by_group
    }
}

/// How the console is set up by the server.
pub struct Options {
    /// Cookies get `Secure` (the server speaks TLS).
    pub secure_cookies: bool,
    /// How long a session lasts.
    pub session_ttl: Duration,
    pub clock: Clock,
    /// OIDC sign-in, when the server has a provider and admins are named.
    pub oidc: Option<(Arc<dyn AdminOidc>, AdminRule)>,
    /// The trusted API door (no key), used only to mint and delete the
    /// API keys of OIDC sessions.
    pub trusted_api: Option<Router>,
}

impl Options {
    pub fn new(clock: Clock) -> Self {
        Options {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            clock,
            oidc: None,
            trusted_api: None,
        }
    }
}

pub(crate) struct Console {
    pub api: Api,
    pub trusted_api: Option<Api>,
    pub sessions: Sessions,
    pub options: Options,
    /// OIDC logins under way: state cookie → (provider state, expiry).
    pub oidc_logins:
        parking_lot::Mutex<std::collections::HashMap<String, (String, tokio::time::Instant)>>,
}

impl Console {
    pub fn now(&self) -> DateTime<Utc> {
        (self.options.clock)()
    }
}

/// What every signed-in handler gets: the session and the browser's address.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub session: Arc<Session>,
    pub peer: Option<SocketAddr>,
}

impl Ctx {
    pub fn who(&self) -> Credentials<'_> {
        Credentials {
            key: &self.session.api_key,
            peer: self.peer,
        }
    }
}

/// The console's routes, to be merged into the main listener's router.
/// `api` is the network door of the REST API (`headway_api::network_router`).
pub fn router(api: Router, options: Options) -> Router {
    let console = Arc::new(Console {
        api: Api::new(api),
        trusted_api: options.trusted_api.clone().map(Api::new),
        sessions: Sessions::default(),
        options,
        oidc_logins: Default::default(),
    });
    Router::new()
        .route("/admin", get(pages::overview))
        .route("/admin/", get(pages::overview))
        .route(
            "/admin/login",
            get(login::login_page).post(login::login_with_key),
        )
        .route("/admin/logout", post(login::logout))
        .route("/admin/oidc/start", get(login::oidc_start))
        .route("/admin/oidc/callback", get(login::oidc_callback))
        .route("/admin/events", get(pages::events))
        .route("/admin/users", get(pages::users).post(pages::create_user))
        .route("/admin/users/{id}/rename", post(pages::rename_user))
        .route("/admin/users/{id}/delete", post(pages::delete_user))
        .route("/admin/nodes", get(pages::nodes))
        .route("/admin/nodes/{id}", get(pages::node))
        .route("/admin/nodes/{id}/rename", post(pages::rename_node))
        .route("/admin/nodes/{id}/expire", post(pages::expire_node))
        .route("/admin/nodes/{id}/delete", post(pages::delete_node))
        .route("/admin/nodes/{id}/move", post(pages::move_node))
        .route("/admin/nodes/{id}/tags", post(pages::set_tags))
        .route("/admin/nodes/{id}/routes", post(pages::approve_routes))
        .route("/admin/keys", get(pages::keys))
        .route("/admin/keys/preauth", post(pages::create_preauth_key))
        .route(
            "/admin/keys/preauth/{id}/expire",
            post(pages::expire_preauth_key),
        )
        .route("/admin/keys/api", post(pages::create_api_key))
        .route(
            "/admin/keys/api/{prefix}/expire",
            post(pages::expire_api_key),
        )
        .route("/admin/registrations", get(pages::registrations))
        .route(
            "/admin/registrations/approve",
            post(pages::approve_registration),
        )
        .route(
            "/admin/registrations/reject",
            post(pages::reject_registration),
        )
        .route(
            "/admin/policy",
            get(policy_page::editor).post(policy_page::save),
        )
        .route("/admin/policy/check", post(policy_page::check))
        .route("/admin/dns", get(pages::dns))
        .route("/admin/audit", get(audit_page::audit))
        .route("/admin/static/{file}", get(assets::asset))
        .route(
            "/admin/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .layer(from_fn_with_state(console.clone(), gate::gate))
        .with_state(console)
}

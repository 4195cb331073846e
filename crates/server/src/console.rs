//! The web console at `/admin` (`headway-console`), over the REST API's
//! network door: every console call goes through the same API-key guard
//! as any other API client. With an identity provider and administrators
//! named (`console.admins`, `console.admin_groups`), administrators also
//! sign in with the provider; their sessions get API keys minted over the
//! trusted in-process door.

use std::sync::Arc;

use axum::Router;
use headway_config::Config;
use headway_console::AdminRule;
use headway_state::Tailnet;

use crate::oidc::{AdminSignIn, Oidc};

pub(crate) fn router(
    config: &Config,
    tailnet: &Arc<Tailnet>,
    guard: Arc<headway_api::Guard>,
    oidc: Option<&Arc<Oidc>>,
) -> Router {
    let clock = tailnet.clone();
    let mut options = headway_console::Options::new(Arc::new(move || clock.now()));
    // Behind a TLS proxy the request itself may be plain HTTP: the public
    // URL says whether browsers speak HTTPS.
    options.secure_cookies = config.tls.is_some() || config.server_url.scheme() == "https";
    match oidc {
        Some(oidc) if config.console.names_admins() => {
            options.oidc = Some((
                Arc::new(AdminSignIn::new(oidc.clone())),
                AdminRule {
                    emails: config.console.admins.clone(),
                    groups: config.console.admin_groups.clone(),
                },
            ));
            options.trusted_api = Some(headway_api::router(tailnet.clone()));
            tracing::info!(
                admins = config.console.admins.len(),
                admin_groups = config.console.admin_groups.len(),
                "console: administrators may sign in with the identity provider"
            );
        }
        Some(_) => tracing::info!(
            "console: sign-in with API keys only (name administrators in console.admins or console.admin_groups to let them sign in with the identity provider)"
        ),
        None => {}
    }
    headway_console::router(headway_api::network_router(tailnet.clone(), guard), options)
}

//! The web console at `/admin` (`headway-console`), over the REST API's
//! network door: every console call goes through the same API-key guard
//! as any other API client.

use std::sync::Arc;

use axum::Router;
use headway_config::Config;
use headway_state::Tailnet;

pub(crate) fn router(
    config: &Config,
    tailnet: &Arc<Tailnet>,
    guard: Arc<headway_api::Guard>,
) -> Router {
    let clock = tailnet.clone();
    let mut options = headway_console::Options::new(Arc::new(move || clock.now()));
    // Behind a TLS proxy the request itself may be plain HTTP: the public
    // URL says whether browsers speak HTTPS.
    options.secure_cookies = config.tls.is_some() || config.server_url.scheme() == "https";
    headway_console::router(headway_api::network_router(tailnet.clone(), guard), options)
}

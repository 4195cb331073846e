//! The OpenAPI document: its header, and the two routes that serve it
//! (`/api/v1/openapi.yaml`, `/api/v1/openapi.json`). The operations and
//! schemas come from the handlers' `#[utoipa::path]` annotations; nothing
//! here lists them.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use headway_state::Tailnet;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Tag};

use crate::OPENAPI_PATH;
use crate::error::ApiError;

/// The document's header; operations are added by the router.
pub(crate) fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("Headway API")
        .version("v1")
        .description(Some(
            "The admin API of Headway, a Tailscale control server. Paths and JSON shapes are \
             headscale's v1 API: 64-bit ids are decimal strings, times are RFC 3339, errors are \
             RFC 7807 problem documents (application/problem+json). Lists are complete: as in \
             headscale's v1 API, nothing is paginated. The Tailscale-compatible subset under \
             /api/v2 is described by Tailscale's own API documentation.",
        ))
        .build();
    let tag = |name: &str, description: &str| {
        let mut t = Tag::new(name);
        t.description = Some(description.to_string());
        t
    };
    OpenApiBuilder::new()
        .info(info)
        .tags(Some([
            tag("Health", "Is the server able to serve"),
            tag(
                "Audit",
                "Who did what: admin actions and node authentication events",
            ),
            tag(
                "Users",
                "People (and identity-provider accounts) that own nodes",
            ),
            tag(
                "PreAuthKeys",
                "Keys that register nodes without an interactive login",
            ),
            tag("Nodes", "Devices in the tailnet"),
            tag(
                "Auth",
                "Machines waiting on their AuthURL (`tailscale up` without a key)",
            ),
            tag("ApiKeys", "Keys that open this API over the network"),
            tag(
                "Policy",
                "Who may reach what: the HuJSON policy in force (Tailscale's policy language)",
            ),
            tag(
                "OAuthClients",
                "Clients of the Tailscale-compatible API under /api/v2 (client-credentials grant)",
            ),
        ]))
        .build()
}

/// Adds what the guard does to every operation: the bearer scheme (an API
/// key; the unix socket needs none), and the 401 and 429 answers.
pub(crate) fn document_auth(doc: &mut OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "apiKey",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key (`headway apikeys create`): `Authorization: Bearer hskey-api-…`. \
                     Needed over the network; the local unix socket needs none.",
                ))
                .build(),
        ),
    );
    doc.security = Some(vec![SecurityRequirement::new(
        "apiKey",
        Vec::<String>::new(),
    )]);
    let problem = |description: &str| -> RefOr<utoipa::openapi::Response> {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    crate::error::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut op.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                problem("No API key, or one that is unknown, wrong, expired or deleted")
            });
            responses.entry("429".into()).or_insert_with(|| {
                problem("Too many failed authentications from this address; see Retry-After")
            });
        }
    }
}

/// The routes serving `doc`, rendered once.
pub(crate) fn routes(doc: &OpenApi) -> Router<Arc<Tailnet>> {
    let yaml = render(serde_yaml_ng::to_string(doc), "application/yaml");
    let json = render(serde_json::to_string_pretty(doc), "application/json");
    Router::new()
        .route(
            &format!("{OPENAPI_PATH}.yaml"),
            get(move || std::future::ready(yaml.clone())),
        )
        .route(
            &format!("{OPENAPI_PATH}.json"),
            get(move || std::future::ready(json.clone())),
        )
}

/// A ready response body; a document that cannot be serialised (a bug) is
/// reported when asked for rather than stopping the server.
#[derive(Clone)]
struct Rendered(Result<(Arc<str>, &'static str), Arc<str>>);

fn render<E: std::fmt::Display>(text: Result<String, E>, content_type: &'static str) -> Rendered {
    Rendered(match text {
        Ok(text) => Ok((text.into(), content_type)),
        Err(e) => Err(format!("the OpenAPI document could not be rendered: {e}").into()),
    })
}

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        match self.0 {
            Ok((text, content_type)) => (
                [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
                text.to_string(),
            )
                .into_response(),
            Err(e) => {
                ApiError::Service(headway_state::Error::Internal(e.to_string())).into_response()
            }
        }
    }
}

//! gRPC: `headscale.v1.HeadscaleService`, the interface headscale's CLI and
//! tools speak (the .proto files are in `proto/`).
//!
//! Each method is an adapter over the REST handler of the same operation:
//! the protobuf request becomes the handler's inputs, its JSON answer
//! becomes the protobuf answer, and its error a gRPC status. So REST and
//! gRPC run the same parsing, the same service call and the same mapping
//! from the domain; there is no second copy of any of it.
//!
//! The service is mounted in axum routers: [`routes`] (trusted, for the unix
//! socket) and, behind the API-key guard, on `grpc_listen_addr`.

// tonic's generated trait fixes the error type (tonic::Status, ~176 bytes).
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use chrono::{DateTime, Utc};
use headway_state::Tailnet;
use prost_types::Timestamp;
use tonic::{Code, Request, Response, Status};

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::page::PageQuery;
use crate::{api_keys, auth, health, nodes, policy, preauth_keys, users, wire};

/// The code generated from `proto/headscale/v1/*.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("headscale.v1");
}

use pb::headscale_service_server::{HeadscaleService, HeadscaleServiceServer};

/// The gRPC service's routes (`/headscale.v1.HeadscaleService/<Method>`).
pub fn routes(tailnet: Arc<Tailnet>) -> Router {
    let service = HeadscaleServiceServer::new(Grpc { tailnet });
    Router::new().route_service("/headscale.v1.HeadscaleService/{method}", service)
}

/// The path prefix of the service's methods.
pub const SERVICE_PATH: &str = "/headscale.v1.HeadscaleService/";

struct Grpc {
    tailnet: Arc<Tailnet>,
}

type Answer<T> = Result<Response<T>, Status>;

/// An API error as a gRPC status: the same message, the code of its kind.
fn status(e: ApiError) -> Status {
    let code = match e.status().as_u16() {
        400 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        413 | 429 => Code::ResourceExhausted,
        405 | 501 => Code::Unimplemented,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

fn ok<T>(value: T) -> Answer<T> {
    Ok(Response::new(value))
}

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn from_ts(t: Timestamp, field: &str) -> Result<DateTime<Utc>, Status> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| Status::invalid_argument(format!("{field}: {t:?} is not a valid timestamp")))
}

fn id_out(id: wire::Id) -> u64 {
    id.get().and_then(|i| u64::try_from(i).ok()).unwrap_or(0)
}

fn id_in(id: u64, field: &str) -> Result<wire::Id, Status> {
    i64::try_from(id)
        .map(wire::Id::from)
        .map_err(|_| Status::invalid_argument(format!("{field}: {id} is not an id (too large)")))
}

fn text_id(id: u64) -> String {
    id.to_string()
}

fn user(u: wire::User) -> pb::User {
    pb::User {
        id: id_out(u.id),
        name: u.name,
        created_at: Some(ts(u.created_at)),
        display_name: u.display_name,
        email: u.email,
        provider_id: u.provider_id,
        provider: u.provider,
        profile_pic_url: u.profile_pic_url,
    }
}

fn preauth_key(k: wire::PreAuthKey) -> pb::PreAuthKey {
    pb::PreAuthKey {
        user: k.user.map(user),
        id: id_out(k.id),
        key: k.key,
        reusable: k.reusable,
        ephemeral: k.ephemeral,
        used: k.used,
        expiration: k.expiration.map(ts),
        created_at: Some(ts(k.created_at)),
        acl_tags: k.acl_tags,
    }
}

fn node(n: wire::Node) -> pb::Node {
    let register_method = match n.register_method {
        wire::WireRegisterMethod::RegisterMethodUnspecified => pb::RegisterMethod::Unspecified,
        wire::WireRegisterMethod::RegisterMethodAuthKey => pb::RegisterMethod::AuthKey,
        wire::WireRegisterMethod::RegisterMethodCli => pb::RegisterMethod::Cli,
        wire::WireRegisterMethod::RegisterMethodOidc => pb::RegisterMethod::Oidc,
    };
    pb::Node {
        id: id_out(n.id),
        machine_key: n.machine_key,
        node_key: n.node_key,
        disco_key: n.disco_key,
        ip_addresses: n.ip_addresses,
        name: n.name,
        user: n.user.map(user),
        last_seen: n.last_seen.map(ts),
        expiry: n.expiry.map(ts),
        pre_auth_key: n.pre_auth_key.map(preauth_key),
        created_at: Some(ts(n.created_at)),
        register_method: register_method.into(),
        given_name: n.given_name,
        online: n.online,
        approved_routes: n.approved_routes,
        available_routes: n.available_routes,
        subnet_routes: n.subnet_routes,
        tags: n.tags,
    }
}

fn api_key(k: wire::ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: id_out(k.id),
        prefix: k.prefix,
        expiration: k.expiration.map(ts),
        created_at: Some(ts(k.created_at)),
        last_seen: k.last_seen.map(ts),
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not supported by this server yet"))
}

impl Grpc {
    fn state(&self) -> State<Arc<Tailnet>> {
        State(self.tailnet.clone())
    }
}

#[tonic::async_trait]
impl HeadscaleService for Grpc {
    // --- users ---------------------------------------------------------------

    async fn create_user(
        &self,
        r: Request<pb::CreateUserRequest>,
    ) -> Answer<pb::CreateUserResponse> {
        let r = r.into_inner();
        let body = wire::CreateUserRequest {
            name: r.name,
            display_name: r.display_name,
            email: r.email,
            picture_url: r.picture_url,
        };
        let Json(out) = users::create_user(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::CreateUserResponse {
            user: Some(user(out.user)),
        })
    }

    async fn rename_user(
        &self,
        r: Request<pb::RenameUserRequest>,
    ) -> Answer<pb::RenameUserResponse> {
        let r = r.into_inner();
        let Json(out) =
            users::rename_user(self.state(), PathParams((text_id(r.old_id), r.new_name)))
                .await
                .map_err(status)?;
        ok(pb::RenameUserResponse {
            user: Some(user(out.user)),
        })
    }

    async fn delete_user(
        &self,
        r: Request<pb::DeleteUserRequest>,
    ) -> Answer<pb::DeleteUserResponse> {
        let r = r.into_inner();
        let _ = users::delete_user(self.state(), PathParams(text_id(r.id)))
            .await
            .map_err(status)?;
        ok(pb::DeleteUserResponse {})
    }

    async fn list_users(&self, r: Request<pb::ListUsersRequest>) -> Answer<pb::ListUsersResponse> {
        let r = r.into_inner();
        let query = users::ListUsersQuery {
            id: Some(text_id(r.id)),
            name: Some(r.name),
            email: Some(r.email),
        };
        let Json(out) = users::list_users(
            self.state(),
            QueryParams(query),
            QueryParams(PageQuery::default()),
        )
        .await
        .map_err(status)?;
        ok(pb::ListUsersResponse {
            users: out.users.into_iter().map(user).collect(),
        })
    }

    // --- pre-auth keys --------------------------------------------------------

    async fn create_pre_auth_key(
        &self,
        r: Request<pb::CreatePreAuthKeyRequest>,
    ) -> Answer<pb::CreatePreAuthKeyResponse> {
        let r = r.into_inner();
        let body = wire::CreatePreAuthKeyRequest {
            user: id_in(r.user, "user")?,
            reusable: r.reusable,
            ephemeral: r.ephemeral,
            expiration: r.expiration.map(|t| from_ts(t, "expiration")).transpose()?,
            acl_tags: r.acl_tags,
        };
        let Json(out) = preauth_keys::create_preauth_key(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::CreatePreAuthKeyResponse {
            pre_auth_key: Some(preauth_key(out.pre_auth_key)),
        })
    }

    async fn expire_pre_auth_key(
        &self,
        r: Request<pb::ExpirePreAuthKeyRequest>,
    ) -> Answer<pb::ExpirePreAuthKeyResponse> {
        let r = r.into_inner();
        let body = wire::ExpirePreAuthKeyRequest {
            id: id_in(r.id, "id")?,
            ..Default::default()
        };
        let _ = preauth_keys::expire_preauth_key(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::ExpirePreAuthKeyResponse {})
    }

    async fn delete_pre_auth_key(
        &self,
        r: Request<pb::DeletePreAuthKeyRequest>,
    ) -> Answer<pb::DeletePreAuthKeyResponse> {
        let r = r.into_inner();
        let query = preauth_keys::DeletePreAuthKeyQuery {
            id: Some(text_id(r.id)),
        };
        let _ = preauth_keys::delete_preauth_key(self.state(), QueryParams(query))
            .await
            .map_err(status)?;
        ok(pb::DeletePreAuthKeyResponse {})
    }

    async fn list_pre_auth_keys(
        &self,
        _: Request<pb::ListPreAuthKeysRequest>,
    ) -> Answer<pb::ListPreAuthKeysResponse> {
        let query = preauth_keys::ListPreAuthKeysQuery { user: None };
        let Json(out) = preauth_keys::list_preauth_keys(
            self.state(),
            QueryParams(query),
            QueryParams(PageQuery::default()),
        )
        .await
        .map_err(status)?;
        ok(pb::ListPreAuthKeysResponse {
            pre_auth_keys: out.pre_auth_keys.into_iter().map(preauth_key).collect(),
        })
    }

    // --- nodes -----------------------------------------------------------------

    async fn debug_create_node(
        &self,
        _: Request<pb::DebugCreateNodeRequest>,
    ) -> Answer<pb::DebugCreateNodeResponse> {
        Err(not_yet("DebugCreateNode"))
    }

    async fn get_node(&self, r: Request<pb::GetNodeRequest>) -> Answer<pb::GetNodeResponse> {
        let r = r.into_inner();
        let Json(out) = nodes::get_node(self.state(), PathParams(text_id(r.node_id)))
            .await
            .map_err(status)?;
        ok(pb::GetNodeResponse {
            node: Some(node(out.node)),
        })
    }

    async fn set_tags(&self, r: Request<pb::SetTagsRequest>) -> Answer<pb::SetTagsResponse> {
        let r = r.into_inner();
        let body = wire::SetTagsRequest { tags: r.tags };
        let Json(out) =
            nodes::set_tags(self.state(), PathParams(text_id(r.node_id)), JsonBody(body))
                .await
                .map_err(status)?;
        ok(pb::SetTagsResponse {
            node: Some(node(out.node)),
        })
    }

    async fn set_approved_routes(
        &self,
        r: Request<pb::SetApprovedRoutesRequest>,
    ) -> Answer<pb::SetApprovedRoutesResponse> {
        let r = r.into_inner();
        let body = wire::SetApprovedRoutesRequest { routes: r.routes };
        let Json(out) = nodes::set_approved_routes(
            self.state(),
            PathParams(text_id(r.node_id)),
            JsonBody(body),
        )
        .await
        .map_err(status)?;
        ok(pb::SetApprovedRoutesResponse {
            node: Some(node(out.node)),
        })
    }

    async fn register_node(
        &self,
        r: Request<pb::RegisterNodeRequest>,
    ) -> Answer<pb::RegisterNodeResponse> {
        let r = r.into_inner();
        let query = auth::RegisterNodeQuery {
            user: Some(r.user),
            key: Some(r.key),
        };
        let Json(out) = auth::register_node(self.state(), QueryParams(query))
            .await
            .map_err(status)?;
        ok(pb::RegisterNodeResponse {
            node: Some(node(out.node)),
        })
    }

    async fn delete_node(
        &self,
        r: Request<pb::DeleteNodeRequest>,
    ) -> Answer<pb::DeleteNodeResponse> {
        let r = r.into_inner();
        let _ = nodes::delete_node(self.state(), PathParams(text_id(r.node_id)))
            .await
            .map_err(status)?;
        ok(pb::DeleteNodeResponse {})
    }

    async fn expire_node(
        &self,
        r: Request<pb::ExpireNodeRequest>,
    ) -> Answer<pb::ExpireNodeResponse> {
        let r = r.into_inner();
        let body = wire::ExpireNodeRequest {
            expiry: r.expiry.map(|t| from_ts(t, "expiry")).transpose()?,
            disable_expiry: r.disable_expiry,
        };
        let Json(out) = nodes::expire_node(
            self.state(),
            PathParams(text_id(r.node_id)),
            QueryParams(nodes::ExpireNodeQuery { expiry: None }),
            JsonBody(body),
        )
        .await
        .map_err(status)?;
        ok(pb::ExpireNodeResponse {
            node: Some(node(out.node)),
        })
    }

    async fn rename_node(
        &self,
        r: Request<pb::RenameNodeRequest>,
    ) -> Answer<pb::RenameNodeResponse> {
        let r = r.into_inner();
        let Json(out) =
            nodes::rename_node(self.state(), PathParams((text_id(r.node_id), r.new_name)))
                .await
                .map_err(status)?;
        ok(pb::RenameNodeResponse {
            node: Some(node(out.node)),
        })
    }

    async fn list_nodes(&self, r: Request<pb::ListNodesRequest>) -> Answer<pb::ListNodesResponse> {
        let r = r.into_inner();
        let query = nodes::ListNodesQuery { user: Some(r.user) };
        let Json(out) = nodes::list_nodes(
            self.state(),
            QueryParams(query),
            QueryParams(PageQuery::default()),
        )
        .await
        .map_err(status)?;
        ok(pb::ListNodesResponse {
            nodes: out.nodes.into_iter().map(node).collect(),
        })
    }

    async fn move_node(&self, r: Request<pb::MoveNodeRequest>) -> Answer<pb::MoveNodeResponse> {
        let r = r.into_inner();
        let body = wire::MoveNodeRequest {
            user: id_in(r.user, "user")?,
        };
        let Json(out) =
            nodes::move_node(self.state(), PathParams(text_id(r.node_id)), JsonBody(body))
                .await
                .map_err(status)?;
        ok(pb::MoveNodeResponse {
            node: Some(node(out.node)),
        })
    }

    async fn backfill_node_i_ps(
        &self,
        _: Request<pb::BackfillNodeIPsRequest>,
    ) -> Answer<pb::BackfillNodeIPsResponse> {
        Err(not_yet("BackfillNodeIPs"))
    }

    // --- interactive registration ----------------------------------------------

    async fn auth_register(
        &self,
        r: Request<pb::AuthRegisterRequest>,
    ) -> Answer<pb::AuthRegisterResponse> {
        let r = r.into_inner();
        let body = wire::AuthRegisterRequest {
            user: r.user,
            auth_id: r.auth_id,
        };
        let Json(out) = auth::auth_register(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::AuthRegisterResponse {
            node: Some(node(out.node)),
        })
    }

    async fn auth_approve(
        &self,
        r: Request<pb::AuthApproveRequest>,
    ) -> Answer<pb::AuthApproveResponse> {
        let body = wire::AuthDecisionRequest {
            auth_id: r.into_inner().auth_id,
        };
        let _ = auth::auth_approve(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::AuthApproveResponse {})
    }

    async fn auth_reject(
        &self,
        r: Request<pb::AuthRejectRequest>,
    ) -> Answer<pb::AuthRejectResponse> {
        let body = wire::AuthDecisionRequest {
            auth_id: r.into_inner().auth_id,
        };
        let _ = auth::auth_reject(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::AuthRejectResponse {})
    }

    // --- API keys ----------------------------------------------------------------

    async fn create_api_key(
        &self,
        r: Request<pb::CreateApiKeyRequest>,
    ) -> Answer<pb::CreateApiKeyResponse> {
        let r = r.into_inner();
        let body = wire::CreateApiKeyRequest {
            expiration: r.expiration.map(|t| from_ts(t, "expiration")).transpose()?,
            description: String::new(),
        };
        let Json(out) = api_keys::create_api_key(self.state(), None, JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::CreateApiKeyResponse {
            api_key: out.api_key,
        })
    }

    async fn expire_api_key(
        &self,
        r: Request<pb::ExpireApiKeyRequest>,
    ) -> Answer<pb::ExpireApiKeyResponse> {
        let r = r.into_inner();
        let body = wire::ExpireApiKeyRequest {
            prefix: r.prefix,
            id: id_in(r.id, "id")?,
        };
        let _ = api_keys::expire_api_key(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::ExpireApiKeyResponse {})
    }

    async fn list_api_keys(
        &self,
        _: Request<pb::ListApiKeysRequest>,
    ) -> Answer<pb::ListApiKeysResponse> {
        let Json(out) = api_keys::list_api_keys(self.state(), QueryParams(PageQuery::default()))
            .await
            .map_err(status)?;
        ok(pb::ListApiKeysResponse {
            api_keys: out.api_keys.into_iter().map(api_key).collect(),
        })
    }

    async fn delete_api_key(
        &self,
        r: Request<pb::DeleteApiKeyRequest>,
    ) -> Answer<pb::DeleteApiKeyResponse> {
        let r = r.into_inner();
        let query = api_keys::DeleteApiKeyQuery {
            id: Some(text_id(r.id)),
        };
        let _ = api_keys::delete_api_key(self.state(), PathParams(r.prefix), QueryParams(query))
            .await
            .map_err(status)?;
        ok(pb::DeleteApiKeyResponse {})
    }

    // --- policy ------------------------------------------------------------------

    async fn get_policy(&self, _: Request<pb::GetPolicyRequest>) -> Answer<pb::GetPolicyResponse> {
        let Json(out) = policy::get_policy(self.state()).await;
        ok(pb::GetPolicyResponse {
            policy: out.policy,
            updated_at: out.updated_at.map(ts),
        })
    }

    async fn set_policy(&self, r: Request<pb::SetPolicyRequest>) -> Answer<pb::SetPolicyResponse> {
        let body = wire::PolicyRequest {
            policy: r.into_inner().policy,
        };
        let Json(out) = policy::set_policy(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::SetPolicyResponse {
            policy: out.policy,
            updated_at: out.updated_at.map(ts),
        })
    }

    async fn check_policy(
        &self,
        r: Request<pb::CheckPolicyRequest>,
    ) -> Answer<pb::CheckPolicyResponse> {
        let body = wire::PolicyRequest {
            policy: r.into_inner().policy,
        };
        let _ = policy::check_policy(self.state(), JsonBody(body))
            .await
            .map_err(status)?;
        ok(pb::CheckPolicyResponse {})
    }

    // --- health -------------------------------------------------------------------

    async fn health(&self, _: Request<pb::HealthRequest>) -> Answer<pb::HealthResponse> {
        let Json(out) = health::health(self.state()).await.map_err(status)?;
        ok(pb::HealthResponse {
            database_connectivity: out.database_connectivity,
        })
    }
}

/// The answer for a path that names no method of the service.
pub(crate) async fn no_method() -> axum::response::Response {
    Status::unimplemented(
        "no such gRPC method on this server (see proto/headscale/v1/headscale.proto)",
    )
    .into_http()
}

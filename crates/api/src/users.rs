//! `/api/v1/user`: list (filtered by id, name or e-mail), create, rename,
//! delete.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use headway_state::Tailnet;
use headway_state::tailnet::NewUser;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, PathParams, QueryParams, path_id, query_id};
use crate::page::PageQuery;
use crate::wire::{CreateUserRequest, Empty, ListUsersResponse, User, UserResponse};

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(rename_user))
        .routes(routes!(delete_user))
}

/// At most one filter applies: `name`, else `email`, else `id` (headscale's order).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListUsersQuery {
    /// Only the user with this id (`0`: all users).
    #[param(value_type = Option<String>, format = "uint64")]
    pub(crate) id: Option<String>,
    /// Only the user with this name.
    pub(crate) name: Option<String>,
    /// Only users with this e-mail address.
    pub(crate) email: Option<String>,
}

/// List users
///
/// Sorted by id; in pages with `pageSize`.
#[utoipa::path(
    get, path = "/api/v1/user", operation_id = "listUsers", tag = "Users",
    params(ListUsersQuery, PageQuery),
    responses(
        (status = 200, body = ListUsersResponse),
        (status = 400, description = "`id` is not an id, or the page size or token is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_users(
    State(tailnet): State<Arc<Tailnet>>,
    QueryParams(query): QueryParams<ListUsersQuery>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<ListUsersResponse>, ApiError> {
    // Checked even when another filter wins, as headscale does.
    let id = query_id("id", "user", query.id.as_deref())?;
    let name = query.name.filter(|n| !n.is_empty());
    let email = query.email.filter(|e| !e.is_empty());
    let users: Vec<_> = tailnet
        .users()
        .into_iter()
        .filter(|u| match (&name, &email, id) {
            (Some(name), _, _) => &u.name == name,
            (None, Some(email), _) => &u.email == email,
            (None, None, Some(id)) => u.id == id,
            (None, None, None) => true,
        })
        .collect();
    let page = page.apply(users, |u| u.id)?;
    Ok(Json(ListUsersResponse {
        users: page.items.iter().map(|u| User::from(&**u)).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Create user
#[utoipa::path(
    post, path = "/api/v1/user", operation_id = "createUser", tag = "Users",
    request_body = CreateUserRequest,
    responses(
        (status = 200, body = UserResponse),
        (status = 400, description = "The body is not a CreateUserRequest", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A user of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name or e-mail address is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_user(
    State(tailnet): State<Arc<Tailnet>>,
    JsonBody(body): JsonBody<CreateUserRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    let user = tailnet
        .create_user(NewUser {
            name: body.name,
            display_name: body.display_name,
            email: body.email,
            profile_pic_url: body.picture_url,
            ..NewUser::default()
        })
        .await?;
    let user = User::from(&user);
    audit::note(
        "user.create",
        format!("user:{}", user.id),
        None,
        audit::snapshot(&user),
    );
    Ok(Json(UserResponse { user }))
}

/// Rename user
#[utoipa::path(
    post, path = "/api/v1/user/{oldId}/rename/{newName}", operation_id = "renameUser", tag = "Users",
    params(
        ("oldId" = String, Path, format = "uint64", description = "The user's id"),
        ("newName" = String, Path, description = "The new name"),
    ),
    responses(
        (status = 200, body = UserResponse),
        (status = 400, description = "`oldId` is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another user has that name", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new name is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rename_user(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams((old_id, new_name)): PathParams<(String, String)>,
) -> Result<Json<UserResponse>, ApiError> {
    let id = path_id("oldId", "user", &old_id)?;
    let before = tailnet.user(id).map(|u| User::from(&*u));
    let user = User::from(&tailnet.rename_user(id, &new_name).await?);
    audit::note(
        "user.rename",
        format!("user:{id}"),
        before.as_ref().and_then(audit::snapshot),
        audit::snapshot(&user),
    );
    Ok(Json(UserResponse { user }))
}

/// Delete user
///
/// Deletes its pre-auth keys too. A user that still owns nodes is not
/// deleted (409).
#[utoipa::path(
    delete, path = "/api/v1/user/{id}", operation_id = "deleteUser", tag = "Users",
    params(("id" = String, Path, format = "uint64", description = "The user's id")),
    responses(
        (status = 200, body = Empty),
        (status = 400, description = "`id` is not an id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user still owns nodes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_user(
    State(tailnet): State<Arc<Tailnet>>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Empty>, ApiError> {
    let id = path_id("id", "user", &id)?;
    let before = tailnet.user(id).map(|u| User::from(&*u));
    tailnet.delete_user(id).await?;
    audit::note(
        "user.delete",
        format!("user:{id}"),
        before.as_ref().and_then(audit::snapshot),
        None,
    );
    Ok(Json(Empty {}))
}

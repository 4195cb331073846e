//! The console's pages and their actions. Each handler reads or changes
//! through one or a few API calls, then renders (GET) or redirects back
//! with a one-shot message (POST, so a reload never repeats an action).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};
use headway_api::auth::ListPendingResponse;
use headway_api::dns::DnsResponse;
use headway_api::wire::{
    ApiKey, AuthDecisionRequest, AuthRegisterRequest, CreateApiKeyRequest, CreateApiKeyResponse,
    CreatePreAuthKeyRequest, CreateUserRequest, Empty, ExpireApiKeyRequest, ExpireNodeRequest,
    ExpirePreAuthKeyRequest, Id, ListApiKeysResponse, ListNodesResponse, ListPreAuthKeysResponse,
    ListUsersResponse, MoveNodeRequest, Node, NodeResponse, PreAuthKeyResponse,
    SetApprovedRoutesRequest, SetTagsRequest, User, UserResponse,
};
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::{ApiFailure, segment};
use crate::layout::{confirm, csrf, empty, error_page, html_response, online_badge, page, when};
use crate::session::Flash;
use crate::{Console, Ctx};

type St = State<Arc<Console>>;

/// Reads from the API for a page; on failure, the answer to send instead
/// (back to sign-in when the key stopped working).
pub(crate) async fn read<T: DeserializeOwned>(
    console: &Console,
    ctx: &Ctx,
    current: &str,
    path: &str,
) -> Result<T, Response> {
    console
        .api
        .get(path, ctx.who())
        .await
        .map_err(|e| failure_page(ctx, current, e))
}

fn failure_page(ctx: &Ctx, current: &str, e: ApiFailure) -> Response {
    if e.is_unauthorized() {
        return Redirect::to("/admin/login").into_response();
    }
    error_page(ctx, current, e.status, &e.detail)
}

/// The outcome of an action: a message for the next page, and back.
fn done(ctx: &Ctx, back: &str, result: Result<String, ApiFailure>) -> Response {
    match result {
        Ok(text) => ctx.session.push_flash(Flash::Done(text)),
        Err(e) if e.is_unauthorized() => return Redirect::to("/admin/login").into_response(),
        Err(e) => ctx.session.push_flash(Flash::Failed(e.detail)),
    }
    Redirect::to(back).into_response()
}

fn unconfirmed(ctx: &Ctx, back: &str) -> Response {
    ctx.session.push_flash(Flash::Failed(
        "nothing was changed: tick the confirmation box first".into(),
    ));
    Redirect::to(back).into_response()
}

fn confirmed(confirm: &Option<String>) -> bool {
    confirm.as_deref() == Some("yes")
}

fn user_label(u: &Option<User>) -> String {
    match u {
        Some(u) if !u.display_name.is_empty() => format!("{} ({})", u.name, u.display_name),
        Some(u) => u.name.clone(),
        None => "tagged".into(),
    }
}

fn is_exit(route: &str) -> bool {
    route == "0.0.0.0/0" || route == "::/0"
}

/// Routes a node advertises that are not approved yet.
fn pending_routes(n: &Node) -> Vec<&String> {
    n.available_routes
        .iter()
        .filter(|r| !n.approved_routes.contains(r))
        .collect()
}

// --- overview ---------------------------------------------------------------

pub(crate) async fn overview(State(console): St, Extension(ctx): Extension<Ctx>) -> Response {
    let cur = "/admin";
    let nodes: ListNodesResponse = match read(&console, &ctx, cur, "/api/v1/node").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let users: ListUsersResponse = match read(&console, &ctx, cur, "/api/v1/user").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let pending: ListPendingResponse = match read(&console, &ctx, cur, "/api/v1/auth/pending").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let keys: ListPreAuthKeysResponse = match read(&console, &ctx, cur, "/api/v1/preauthkey").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = console.now();
    let soon = now + Duration::days(7);
    let online = nodes.nodes.iter().filter(|n| n.online).count();
    let offline = nodes.nodes.len() - online;
    let with_pending_routes: Vec<&Node> = nodes
        .nodes
        .iter()
        .filter(|n| !pending_routes(n).is_empty())
        .collect();
    let expiring_nodes: Vec<&Node> = nodes
        .nodes
        .iter()
        .filter(|n| n.expiry.is_some_and(|e| e > now && e < soon))
        .collect();
    let expiring_keys = keys
        .pre_auth_keys
        .iter()
        .filter(|k| k.expiration.is_some_and(|e| e > now && e < soon))
        .count();
    let body = html! {
        @if nodes.nodes.is_empty() && users.users.is_empty() {
            (empty("Your tailnet is empty.", html! {
                "Start by " a href="/admin/users" { "creating a user" } ", then a "
                a href="/admin/keys" { "pre-auth key" } " to join a machine with "
                code { "tailscale up --login-server=… --authkey=…" } "."
            }))
        }
        section.cards aria-label="Summary" {
            a.card href="/admin/nodes" {
                span.big #count-online { (online) } span { " online" }
                span.small { (offline) " offline · " (nodes.nodes.len()) " nodes" }
            }
            a.card href="/admin/users" {
                span.big { (users.users.len()) } span { " users" }
            }
            a.card href="/admin/registrations" {
                span.big { (pending.registrations.len()) } span { " waiting registrations" }
            }
            a.card href="/admin/nodes?q=routes:pending" {
                span.big { (with_pending_routes.len()) } span { " nodes with routes to approve" }
            }
            a.card href="/admin/keys" {
                span.big { (expiring_nodes.len() + expiring_keys) } span { " expiring within 7 days" }
                span.small { (expiring_nodes.len()) " node keys · " (expiring_keys) " pre-auth keys" }
            }
        }
        @if !with_pending_routes.is_empty() {
            h2 { "Routes waiting for approval" }
            ul {
                @for n in &with_pending_routes {
                    li {
                        a href={ "/admin/nodes/" (n.id) } { (n.given_name) }
                        ": " (pending_routes(n).iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
                    }
                }
            }
        }
        @if !expiring_nodes.is_empty() {
            h2 { "Node keys expiring soon" }
            ul {
                @for n in &expiring_nodes {
                    li { a href={ "/admin/nodes/" (n.id) } { (n.given_name) } " " (when(n.expiry, now, "never")) }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&ctx, cur, "Overview", body))
}

// --- live events --------------------------------------------------------------

/// The API's event stream, passed through for this session.
pub(crate) async fn events(State(console): St, Extension(ctx): Extension<Ctx>) -> Response {
    match console
        .api
        .send(Method::GET, "/api/v1/events", ctx.who(), None)
        .await
    {
        Ok(r) if r.status().is_success() => {
            let mut out = Response::new(Body::new(r.into_body()));
            out.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            out.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            out
        }
        Ok(r) => r.status().into_response(),
        Err(e) => e.status.into_response(),
    }
}

// --- users ------------------------------------------------------------------

pub(crate) async fn users(State(console): St, Extension(ctx): Extension<Ctx>) -> Response {
    let cur = "/admin/users";
    let users: ListUsersResponse = match read(&console, &ctx, cur, "/api/v1/user").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let nodes: ListNodesResponse = match read(&console, &ctx, cur, "/api/v1/node").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = console.now();
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    for n in &nodes.nodes {
        if let Some(u) = &n.user {
            *per_user.entry(u.id.to_string()).or_default() += 1;
        }
    }
    let body = html! {
        section.panel {
            h2 { "Create a user" }
            form.inline method="post" action="/admin/users" {
                (csrf(&ctx))
                label { "Name " input name="name" required autocomplete="off" placeholder="alice"; }
                label { "Display name " input name="display_name" autocomplete="off"; }
                label { "Email " input name="email" type="email" autocomplete="off"; }
                button type="submit" { "Create user" }
            }
        }
        @if users.users.is_empty() {
            (empty("No users yet.", html! { "Create one above; machines join as one of its nodes." }))
        } @else {
            div.scroll {
                table #users {
                    thead { tr { th { "Name" } th { "Email" } th { "Nodes" } th { "Created" } th { "Actions" } } }
                    tbody {
                        @for u in &users.users {
                            tr data-user-id=(u.id) {
                                td { strong { (u.name) } @if !u.display_name.is_empty() { br; span.muted { (u.display_name) } } }
                                td { (u.email) }
                                td { a href={ "/admin/nodes?q=user:" (u.name) } { (per_user.get(&u.id.to_string()).copied().unwrap_or(0)) } }
                                td { (when(Some(u.created_at), now, "")) }
                                td.actions {
                                    details {
                                        summary { "Rename" }
                                        form.inline method="post" action={ "/admin/users/" (u.id) "/rename" } {
                                            (csrf(&ctx))
                                            label { "New name " input name="name" required value=(u.name); }
                                            button type="submit" { "Rename" }
                                        }
                                    }
                                    details {
                                        summary.danger { "Delete" }
                                        form.inline method="post" action={ "/admin/users/" (u.id) "/delete" } {
                                            (csrf(&ctx))
                                            (confirm(&format!("Yes, delete {}", u.name)))
                                            button.danger type="submit" { "Delete user" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&ctx, cur, "Users", body))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewUserForm {
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
}

pub(crate) async fn create_user(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<NewUserForm>,
) -> Response {
    let req = CreateUserRequest {
        name: form.name.trim().to_string(),
        display_name: form.display_name.trim().to_string(),
        email: form.email.trim().to_string(),
        picture_url: String::new(),
    };
    let r: Result<UserResponse, _> = console
        .api
        .call(Method::POST, "/api/v1/user", ctx.who(), Some(&req))
        .await;
    done(
        &ctx,
        "/admin/users",
        r.map(|u| format!("User {} created.", u.user.name)),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct NameForm {
    name: String,
}

pub(crate) async fn rename_user(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<NameForm>,
) -> Response {
    let path = format!(
        "/api/v1/user/{}/rename/{}",
        segment(&id),
        segment(form.name.trim())
    );
    let r: Result<UserResponse, _> = console
        .api
        .call(Method::POST, &path, ctx.who(), None::<&()>)
        .await;
    done(
        &ctx,
        "/admin/users",
        r.map(|u| format!("User renamed to {}.", u.user.name)),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmForm {
    confirm: Option<String>,
}

pub(crate) async fn delete_user(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if !confirmed(&form.confirm) {
        return unconfirmed(&ctx, "/admin/users");
    }
    let path = format!("/api/v1/user/{}", segment(&id));
    let r: Result<Empty, _> = console
        .api
        .call(Method::DELETE, &path, ctx.who(), None::<&()>)
        .await;
    done(&ctx, "/admin/users", r.map(|_| "User deleted.".to_string()))
}

// --- nodes ------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
}

/// Whether node `n` matches every word of the search: free text matches
/// names, addresses, tags and the owner; `user:`, `tag:`, `online`,
/// `offline` and `routes:pending` narrow down.
pub(crate) fn matches(n: &Node, q: &str) -> bool {
    q.split_whitespace().all(|word| {
        let w = word.to_lowercase();
        if let Some(user) = w.strip_prefix("user:") {
            return n
                .user
                .as_ref()
                .is_some_and(|u| u.name.to_lowercase() == user);
        }
        match w.as_str() {
            "online" => return n.online,
            "offline" => return !n.online,
            "routes:pending" => return !pending_routes(n).is_empty(),
            _ => {}
        }
        n.given_name.to_lowercase().contains(&w)
            || n.name.to_lowercase().contains(&w)
            || n.ip_addresses.iter().any(|ip| ip.contains(&w))
            || n.tags.iter().any(|t| t.to_lowercase().contains(&w))
            || n.user
                .as_ref()
                .is_some_and(|u| u.name.to_lowercase().contains(&w))
    })
}

pub(crate) async fn nodes(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Query(search): Query<Search>,
) -> Response {
    let cur = "/admin/nodes";
    let all: ListNodesResponse = match read(&console, &ctx, cur, "/api/v1/node").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = console.now();
    let shown: Vec<&Node> = all.nodes.iter().filter(|n| matches(n, &search.q)).collect();
    let body = html! {
        form.search role="search" method="get" action="/admin/nodes" {
            label for="q" { "Search nodes" }
            input #q type="search" name="q" value=(search.q)
                placeholder="name, address, tag:…, user:…, online, offline, routes:pending";
            button type="submit" { "Search" }
        }
        @if all.nodes.is_empty() {
            (empty("No nodes yet.", html! {
                "Create a " a href="/admin/keys" { "pre-auth key" } " and run "
                code { "tailscale up --login-server=<this server> --authkey=<key>" }
                ", or approve a machine under " a href="/admin/registrations" { "Registrations" } "."
            }))
        } @else if shown.is_empty() {
            (empty("No node matches this search.", html! { a href="/admin/nodes" { "Show all nodes" } }))
        } @else {
            div.scroll {
                table #nodes {
                    thead { tr {
                        th { "Name" } th { "Owner" } th { "Addresses" } th { "Tags" }
                        th { "State" } th { "Last seen" } th { "Routes" }
                    } }
                    tbody {
                        @for n in &shown {
                            tr data-node-id=(n.id) {
                                td { a.node-name href={ "/admin/nodes/" (n.id) } { (n.given_name) }
                                     @if n.given_name != n.name { br; span.muted { (n.name) } } }
                                td { (user_label(&n.user)) }
                                td.mono { @for ip in &n.ip_addresses { (ip) br; } }
                                td { @for t in &n.tags { span.tag { (t) } " " } }
                                td { (online_badge(&n.id.to_string(), n.online)) }
                                td { @if n.online { span.muted { "now" } } @else { (when(n.last_seen, now, "never")) } }
                                td {
                                    @let waiting = pending_routes(n);
                                    @if !waiting.is_empty() { span.badge.warn { (waiting.len()) " to approve" } }
                                    @else if !n.approved_routes.is_empty() { (n.approved_routes.len()) " approved" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&ctx, cur, "Nodes", body))
}

pub(crate) async fn node(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let cur = "/admin/nodes";
    let path = format!("/api/v1/node/{}", segment(&id));
    let n: NodeResponse = match read(&console, &ctx, cur, &path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let users: ListUsersResponse = match read(&console, &ctx, cur, "/api/v1/user").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let n = n.node;
    let now = console.now();
    let base = format!("/admin/nodes/{}", n.id);
    let body = html! {
        p { (online_badge(&n.id.to_string(), n.online)) " "
            @if !n.online { "last seen " (when(n.last_seen, now, "never")) } }
        dl.facts data-node-id=(n.id) {
            dt { "Host name" } dd { (n.name) }
            dt { "Owner" } dd { (user_label(&n.user)) }
            dt { "Addresses" } dd.mono { @for ip in &n.ip_addresses { (ip) br; } }
            dt { "Tags" } dd { @if n.tags.is_empty() { span.muted { "none" } } @for t in &n.tags { span.tag { (t) } " " } }
            dt { "Key expiry" } dd { (when(n.expiry, now, "never")) }
            dt { "Registered" } dd { (when(Some(n.created_at), now, "")) " " span.muted { "(" (format!("{:?}", n.register_method)) ")" } }
            dt { "Node key" } dd.mono.wrap { (n.node_key) }
            dt { "Machine key" } dd.mono.wrap { (n.machine_key) }
        }
        section.panel {
            h2 { "Routes" }
            @if n.available_routes.is_empty() {
                p.muted { "This node advertises no routes. Run "
                    code { "tailscale set --advertise-routes=10.0.0.0/24" } " or "
                    code { "--advertise-exit-node" } " on it." }
            } @else {
                form method="post" action={ (base) "/routes" } {
                    (csrf(&ctx))
                    fieldset {
                        legend { "Approved routes" }
                        @for r in &n.available_routes {
                            label.check {
                                input type="checkbox" name="route" value=(r) checked[n.approved_routes.contains(r)];
                                " " code { (r) }
                                @if is_exit(r) { " " span.badge { "exit node" } }
                                @if n.subnet_routes.contains(r) { " " span.badge.online { "serving" } }
                            }
                        }
                    }
                    button type="submit" { "Save approvals" }
                }
            }
        }
        section.panel {
            h2 { "Rename" }
            form.inline method="post" action={ (base) "/rename" } {
                (csrf(&ctx))
                label { "Name " input name="name" required value=(n.given_name); }
                button type="submit" { "Rename" }
            }
        }
        section.panel {
            h2 { "Tags" }
            form.inline method="post" action={ (base) "/tags" } {
                (csrf(&ctx))
                label { "Tags (comma-separated) " input name="tags" value=(n.tags.join(", ")) placeholder="tag:server, tag:prod"; }
                button type="submit" { "Set tags" }
            }
        }
        section.panel {
            h2 { "Owner" }
            form.inline method="post" action={ (base) "/move" } {
                (csrf(&ctx))
                label { "Move to user "
                    select name="user" required {
                        @for u in &users.users {
                            option value=(u.id) selected[n.user.as_ref().is_some_and(|o| o.id == u.id)] { (u.name) }
                        }
                    }
                }
                button type="submit" { "Move" }
            }
        }
        section.panel.danger-zone {
            h2 { "Expire or delete" }
            form.inline method="post" action={ (base) "/expire" } {
                (csrf(&ctx))
                (confirm("Yes, expire its key now (it must log in again)"))
                button.danger type="submit" { "Expire key" }
            }
            form.inline method="post" action={ (base) "/delete" } {
                (csrf(&ctx))
                (confirm(&format!("Yes, delete {}", n.given_name)))
                button.danger type="submit" { "Delete node" }
            }
        }
    };
    html_response(StatusCode::OK, page(&ctx, cur, &n.given_name, body))
}

fn node_back(id: &str) -> String {
    format!("/admin/nodes/{}", segment(id))
}

pub(crate) async fn rename_node(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<NameForm>,
) -> Response {
    let path = format!(
        "/api/v1/node/{}/rename/{}",
        segment(&id),
        segment(form.name.trim())
    );
    let r: Result<NodeResponse, _> = console
        .api
        .call(Method::POST, &path, ctx.who(), None::<&()>)
        .await;
    done(
        &ctx,
        &node_back(&id),
        r.map(|n| format!("Renamed to {}.", n.node.given_name)),
    )
}

pub(crate) async fn expire_node(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if !confirmed(&form.confirm) {
        return unconfirmed(&ctx, &node_back(&id));
    }
    let path = format!("/api/v1/node/{}/expire", segment(&id));
    let req = ExpireNodeRequest {
        expiry: None,
        disable_expiry: false,
    };
    let r: Result<NodeResponse, _> = console
        .api
        .call(Method::POST, &path, ctx.who(), Some(&req))
        .await;
    done(
        &ctx,
        &node_back(&id),
        r.map(|_| "The node's key is expired.".to_string()),
    )
}

pub(crate) async fn delete_node(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if !confirmed(&form.confirm) {
        return unconfirmed(&ctx, &node_back(&id));
    }
    let path = format!("/api/v1/node/{}", segment(&id));
    let r: Result<Empty, _> = console
        .api
        .call(Method::DELETE, &path, ctx.who(), None::<&()>)
        .await;
    match r {
        Ok(_) => done(&ctx, "/admin/nodes", Ok("Node deleted.".into())),
        Err(e) => done(&ctx, &node_back(&id), Err(e)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct MoveForm {
    user: String,
}

pub(crate) async fn move_node(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<MoveForm>,
) -> Response {
    let user: Id = match form.user.trim().parse() {
        Ok(u) => u,
        Err(_) => {
            return done(
                &ctx,
                &node_back(&id),
                Err(ApiFailure {
                    status: StatusCode::BAD_REQUEST,
                    detail: format!("user {:?} is not a user id", form.user),
                }),
            );
        }
    };
    let path = format!("/api/v1/node/{}/user", segment(&id));
    let r: Result<NodeResponse, _> = console
        .api
        .call(
            Method::POST,
            &path,
            ctx.who(),
            Some(&MoveNodeRequest { user }),
        )
        .await;
    done(
        &ctx,
        &node_back(&id),
        r.map(|n| format!("Moved to {}.", user_label(&n.node.user))),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct TagsForm {
    #[serde(default)]
    tags: String,
}

pub(crate) async fn set_tags(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<TagsForm>,
) -> Response {
    let tags: Vec<String> = form
        .tags
        .split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let path = format!("/api/v1/node/{}/tags", segment(&id));
    let r: Result<NodeResponse, _> = console
        .api
        .call(
            Method::POST,
            &path,
            ctx.who(),
            Some(&SetTagsRequest { tags }),
        )
        .await;
    done(
        &ctx,
        &node_back(&id),
        r.map(|n| {
            if n.node.tags.is_empty() {
                "Tags removed.".to_string()
            } else {
                format!("Tags set: {}.", n.node.tags.join(", "))
            }
        }),
    )
}

pub(crate) async fn approve_routes(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // Repeated `route` fields: serde_urlencoded reads them as pairs.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let routes: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "route")
        .map(|(_, v)| v)
        .collect();
    let path = format!("/api/v1/node/{}/approve_routes", segment(&id));
    let r: Result<NodeResponse, _> = console
        .api
        .call(
            Method::POST,
            &path,
            ctx.who(),
            Some(&SetApprovedRoutesRequest { routes }),
        )
        .await;
    done(
        &ctx,
        &node_back(&id),
        r.map(|n| {
            if n.node.approved_routes.is_empty() {
                "No route is approved now.".to_string()
            } else {
                format!("Approved: {}.", n.node.approved_routes.join(", "))
            }
        }),
    )
}

// --- keys -------------------------------------------------------------------

pub(crate) async fn keys(State(console): St, Extension(ctx): Extension<Ctx>) -> Response {
    let cur = "/admin/keys";
    let pre: ListPreAuthKeysResponse = match read(&console, &ctx, cur, "/api/v1/preauthkey").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let api_keys: ListApiKeysResponse = match read(&console, &ctx, cur, "/api/v1/apikey").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let users: ListUsersResponse = match read(&console, &ctx, cur, "/api/v1/user").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = console.now();
    let live = |e: Option<DateTime<Utc>>| e.is_none_or(|e| e > now);
    let body = html! {
        h2 { "Pre-auth keys" }
        p.muted { "A pre-auth key lets a machine join without a person approving it: "
            code { "tailscale up --login-server=<this server> --authkey=<key>" } }
        section.panel {
            h3 { "Create a pre-auth key" }
            @if users.users.is_empty() {
                p { "Keys belong to a user: " a href="/admin/users" { "create a user first" } ", or give the key tags." }
            }
            form.inline #create-preauth method="post" action="/admin/keys/preauth" {
                (csrf(&ctx))
                label { "User "
                    select name="user" {
                        option value="0" { "(none: tagged key)" }
                        @for u in &users.users { option value=(u.id) { (u.name) } }
                    }
                }
                label.check { input type="checkbox" name="reusable" value="yes"; " Reusable" }
                label.check { input type="checkbox" name="ephemeral" value="yes"; " Ephemeral" }
                label { "Expires in (hours) " input name="hours" type="number" min="1" value="24" required; }
                label { "Tags " input name="tags" placeholder="tag:server"; }
                button type="submit" { "Create key" }
            }
        }
        @if pre.pre_auth_keys.is_empty() {
            (empty("No pre-auth keys.", html! { "Create one above to join a machine." }))
        } @else {
            div.scroll { table #preauth-keys {
                thead { tr { th { "Key" } th { "User" } th { "Kind" } th { "Used" } th { "Expires" } th { "Tags" } th { "" } } }
                tbody { @for k in &pre.pre_auth_keys {
                    tr {
                        td.mono { (k.key) }
                        td { (user_label(&k.user)) }
                        td { @if k.reusable { "reusable " } @if k.ephemeral { "ephemeral" } @if !k.reusable && !k.ephemeral { "one-off" } }
                        td { @if k.used { "yes" } @else { "no" } }
                        td { (when(k.expiration, now, "never")) }
                        td { @for t in &k.acl_tags { span.tag { (t) } " " } }
                        td { @if live(k.expiration) {
                            form.inline method="post" action={ "/admin/keys/preauth/" (k.id) "/expire" } {
                                (csrf(&ctx))
                                (confirm("Yes, expire"))
                                button.danger type="submit" { "Expire" }
                            }
                        } @else { span.muted { "expired" } } }
                    }
                } }
            } }
        }
        h2 { "API keys" }
        p.muted { "API keys open the admin API (and this console) with every right." }
        section.panel {
            form.inline method="post" action="/admin/keys/api" {
                (csrf(&ctx))
                label { "Expires in (days) " input name="days" type="number" min="1" value="90" required; }
                button type="submit" { "Create API key" }
            }
        }
        @if api_keys.api_keys.is_empty() {
            (empty("No API keys.", html! { "Create one above, or on the server with " code { "headway apikeys create" } "." }))
        } @else {
            div.scroll { table #api-keys {
                thead { tr { th { "Prefix" } th { "Created" } th { "Expires" } th { "Last used" } th { "" } } }
                tbody { @for k in &api_keys.api_keys { (api_key_row(&ctx, k, now, live(k.expiration))) } }
            } }
        }
    };
    html_response(StatusCode::OK, page(&ctx, cur, "Keys", body))
}

fn api_key_row(ctx: &Ctx, k: &ApiKey, now: DateTime<Utc>, live: bool) -> Markup {
    html! {
        tr {
            td.mono { (k.prefix) }
            td { (when(Some(k.created_at), now, "")) }
            td { (when(k.expiration, now, "never")) }
            td { (when(k.last_seen, now, "never")) }
            td { @if live {
                form.inline method="post" action={ "/admin/keys/api/" (k.prefix) "/expire" } {
                    (csrf(ctx))
                    (confirm("Yes, expire"))
                    button.danger type="submit" { "Expire" }
                }
            } @else { span.muted { "expired" } } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PreAuthForm {
    user: String,
    reusable: Option<String>,
    ephemeral: Option<String>,
    hours: String,
    #[serde(default)]
    tags: String,
}

pub(crate) async fn create_preauth_key(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<PreAuthForm>,
) -> Response {
    let back = "/admin/keys";
    let bad = |detail: String| {
        done(
            &ctx,
            back,
            Err(ApiFailure {
                status: StatusCode::BAD_REQUEST,
                detail,
            }),
        )
    };
    let Ok(user) = form.user.trim().parse::<Id>() else {
        return bad(format!("user {:?} is not a user id", form.user));
    };
    let hours: i64 = match form.hours.trim().parse() {
        Ok(h) if (1..=24 * 365 * 10).contains(&h) => h,
        _ => {
            return bad(format!(
                "expires in {:?} hours: give a whole number of hours, 1 or more",
                form.hours
            ));
        }
    };
    let req = CreatePreAuthKeyRequest {
        user,
        reusable: form.reusable.is_some(),
        ephemeral: form.ephemeral.is_some(),
        expiration: Some(console.now() + Duration::hours(hours)),
        acl_tags: form
            .tags
            .split([',', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
    };
    let r: Result<PreAuthKeyResponse, _> = console
        .api
        .call(Method::POST, "/api/v1/preauthkey", ctx.who(), Some(&req))
        .await;
    match r {
        Ok(k) => {
            ctx.session.push_flash(Flash::Secret {
                what: "New pre-auth key".into(),
                secret: k.pre_auth_key.key,
            });
            Redirect::to(back).into_response()
        }
        Err(e) => done(&ctx, back, Err(e)),
    }
}

pub(crate) async fn expire_preauth_key(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let back = "/admin/keys";
    if !confirmed(&form.confirm) {
        return unconfirmed(&ctx, back);
    }
    let Ok(id) = id.parse::<Id>() else {
        return Redirect::to(back).into_response();
    };
    let req = ExpirePreAuthKeyRequest {
        id,
        ..Default::default()
    };
    let r: Result<Empty, _> = console
        .api
        .call(
            Method::POST,
            "/api/v1/preauthkey/expire",
            ctx.who(),
            Some(&req),
        )
        .await;
    done(&ctx, back, r.map(|_| "Pre-auth key expired.".to_string()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiKeyForm {
    days: String,
}

pub(crate) async fn create_api_key(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<ApiKeyForm>,
) -> Response {
    let back = "/admin/keys";
    let days: i64 = match form.days.trim().parse() {
        Ok(d) if (1..=3650).contains(&d) => d,
        _ => {
            return done(
                &ctx,
                back,
                Err(ApiFailure {
                    status: StatusCode::BAD_REQUEST,
                    detail: format!(
                        "expires in {:?} days: give a whole number of days, 1 to 3650",
                        form.days
                    ),
                }),
            );
        }
    };
    let req = CreateApiKeyRequest {
        expiration: Some(console.now() + Duration::days(days)),
        ..CreateApiKeyRequest::default()
    };
    let r: Result<CreateApiKeyResponse, _> = console
        .api
        .call(Method::POST, "/api/v1/apikey", ctx.who(), Some(&req))
        .await;
    match r {
        Ok(k) => {
            ctx.session.push_flash(Flash::Secret {
                what: "New API key".into(),
                secret: k.api_key,
            });
            Redirect::to(back).into_response()
        }
        Err(e) => done(&ctx, back, Err(e)),
    }
}

pub(crate) async fn expire_api_key(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Path(prefix): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let back = "/admin/keys";
    if !confirmed(&form.confirm) {
        return unconfirmed(&ctx, back);
    }
    let req = ExpireApiKeyRequest {
        prefix,
        ..Default::default()
    };
    let r: Result<Empty, _> = console
        .api
        .call(Method::POST, "/api/v1/apikey/expire", ctx.who(), Some(&req))
        .await;
    done(&ctx, back, r.map(|_| "API key expired.".to_string()))
}

// --- registrations -----------------------------------------------------------

pub(crate) async fn registrations(State(console): St, Extension(ctx): Extension<Ctx>) -> Response {
    let cur = "/admin/registrations";
    let pending: ListPendingResponse = match read(&console, &ctx, cur, "/api/v1/auth/pending").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let users: ListUsersResponse = match read(&console, &ctx, cur, "/api/v1/user").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = console.now();
    let body = html! {
        p.muted { "Machines that ran " code { "tailscale up" } " without a key wait here until you register them for a user." }
        @if pending.registrations.is_empty() {
            (empty("No machine is waiting.", html! {
                "Run " code { "tailscale up --login-server=<this server>" } " on a machine; it shows up here within a second."
            }))
        } @else if users.users.is_empty() {
            p.flash.err { "Machines are registered for a user: " a href="/admin/users" { "create a user first" } "." }
        }
        @if !pending.registrations.is_empty() {
            div.scroll { table #registrations {
                thead { tr { th { "Host name" } th { "Id" } th { "Asked" } th { "Forgotten" } th { "Register for" } th { "" } } }
                tbody { @for p in &pending.registrations {
                    tr {
                        td { (p.hostname) }
                        td.mono { (p.auth_id) }
                        td { (when(Some(p.created_at), now, "")) }
                        td { (when(Some(p.expires_at), now, "")) }
                        td {
                            form.inline method="post" action="/admin/registrations/approve" {
                                (csrf(&ctx))
                                input type="hidden" name="auth_id" value=(p.auth_id);
                                label { span.visually-hidden { "User for " (p.hostname) }
                                    select name="user" required {
                                        @for u in &users.users { option value=(u.name) { (u.name) } }
                                    }
                                }
                                button type="submit" { "Register" }
                            }
                        }
                        td {
                            form.inline method="post" action="/admin/registrations/reject" {
                                (csrf(&ctx))
                                input type="hidden" name="auth_id" value=(p.auth_id);
                                (confirm("Yes, refuse"))
                                button.danger type="submit" { "Refuse" }
                            }
                        }
                    }
                } }
            } }
        }
    };
    html_response(
        StatusCode::OK,
        page(&ctx, cur, "Pending registrations", body),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApproveForm {
    auth_id: String,
    user: String,
}

pub(crate) async fn approve_registration(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<ApproveForm>,
) -> Response {
    let req = AuthRegisterRequest {
        user: form.user,
        auth_id: form.auth_id,
    };
    let r: Result<NodeResponse, _> = console
        .api
        .call(Method::POST, "/api/v1/auth/register", ctx.who(), Some(&req))
        .await;
    done(
        &ctx,
        "/admin/registrations",
        r.map(|n| {
            format!(
                "{} registered for {}.",
                n.node.given_name,
                user_label(&n.node.user)
            )
        }),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct RejectForm {
    auth_id: String,
    confirm: Option<String>,
}

pub(crate) async fn reject_registration(
    State(console): St,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<RejectForm>,
) -> Response {
    let back = "/admin/registrations";
    if !confirmed(&form.confirm) {
        return unconfirmed(&ctx, back);
    }
    let req = AuthDecisionRequest {
        auth_id: form.auth_id,
    };
    let r: Result<Empty, _> = console
        .api
        .call(Method::POST, "/api/v1/auth/reject", ctx.who(), Some(&req))
        .await;
    done(&ctx, back, r.map(|_| "Registration refused.".to_string()))
}

// --- DNS --------------------------------------------------------------------

pub(crate) async fn dns(State(console): St, Extension(ctx): Extension<Ctx>) -> Response {
    let cur = "/admin/dns";
    let d: DnsResponse = match read(&console, &ctx, cur, "/api/v1/dns").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body = html! {
        p.muted { "Read only: DNS is set in the server's configuration file ("
            code { "dns:" } "); extra records may come from " code { "dns.extra_records_path" }
            ", which the server follows while it runs." }
        dl.facts {
            dt { "MagicDNS" } dd { @if d.magic_dns { "on" } @else { "off" } }
            dt { "Base domain" } dd.mono { (d.base_domain) }
            dt { "Override local DNS" } dd { @if d.override_local_dns { "yes" } @else { "no" } }
            dt { "Nameservers" } dd.mono { @if d.nameservers.is_empty() { span.muted { "none" } } @for s in &d.nameservers { (s) br; } }
            dt { "Search domains" } dd.mono { @if d.search_domains.is_empty() { span.muted { "none" } } @for s in &d.search_domains { (s) br; } }
        }
        h2 { "Split DNS" }
        @if d.split.is_empty() { p.muted { "No split DNS." } } @else {
            table { thead { tr { th { "Domain" } th { "Resolvers" } } }
                tbody { @for (domain, servers) in &d.split { tr { td.mono { (domain) } td.mono { (servers.join(", ")) } } } } }
        }
        h2 { "Extra records" }
        @if d.extra_records.is_empty() { p.muted { "No extra records." } } @else {
            table { thead { tr { th { "Name" } th { "Type" } th { "Value" } } }
                tbody { @for r in &d.extra_records { tr { td.mono { (r.name) } td { (r.kind) } td.mono { (r.value) } } } } }
        }
    };
    html_response(StatusCode::OK, page(&ctx, cur, "DNS", body))
}

pub(crate) async fn not_found(Extension(ctx): Extension<Ctx>) -> Response {
    error_page(
        &ctx,
        "/admin",
        StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, online: bool, tags: &[&str]) -> Node {
        serde_json::from_value(serde_json::json!({
            "id": "1", "machineKey": "", "nodeKey": "", "discoKey": "",
            "ipAddresses": ["100.64.0.1"], "name": name, "user": null,
            "lastSeen": null, "expiry": null, "preAuthKey": null,
            "createdAt": "2026-01-01T00:00:00Z", "registerMethod": "REGISTER_METHOD_AUTH_KEY",
            "givenName": name, "online": online, "approvedRoutes": [],
            "availableRoutes": ["10.0.0.0/24"], "subnetRoutes": [],
            "tags": tags,
        }))
        .unwrap()
    }

    #[test]
    fn search_words_all_have_to_match() {
        let n = node("web-1", true, &["tag:prod"]);
        assert!(matches(&n, ""));
        assert!(matches(&n, "web"));
        assert!(matches(&n, "WEB online"));
        assert!(!matches(&n, "web offline"));
        assert!(matches(&n, "tag:prod 100.64"));
        assert!(matches(&n, "routes:pending"));
        assert!(!matches(&n, "db"));
        assert!(!matches(&n, "user:alice"));
    }
}

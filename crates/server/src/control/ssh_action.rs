//! `GET /machine/ssh/action/<src>/to/<dst>`: a destination node asking what
//! to do with an SSH connection a `check` rule holds (Tailscale's
//! `HoldAndDelegate`). The follow-up request, with `auth_id`, is a long poll
//! that returns once the check is decided.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use headway_state::tailnet::SshCheckRequest;
use serde::Deserialize;

use super::machine::{Machine, error_response, json};

#[derive(Debug, Deserialize)]
pub(super) struct ActionQuery {
    #[serde(default)]
    local_user: String,
    #[serde(default)]
    auth_id: Option<String>,
}

/// A node id from the URL, or what to say about it.
fn node_id(what: &str, text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .map_err(|_| format!("{what} node id {text:?} in the SSH action URL is not a number"))
}

pub(super) async fn ssh_action(
    State(m): State<Machine>,
    Path((src, dst)): Path<(String, String)>,
    Query(q): Query<ActionQuery>,
) -> Response {
    let (src, dst) = match (node_id("source", &src), node_id("destination", &dst)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(why), _) | (_, Err(why)) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let req = SshCheckRequest {
        src,
        dst,
        local_user: &q.local_user,
        auth_id: q.auth_id.as_deref(),
    };
    let waiting = m.c.tailnet.ssh_action(m.key, req);
    let result = tokio::select! {
        r = waiting => r,
        _ = m.c.shutdown.cancelled() => {
            return (StatusCode::SERVICE_UNAVAILABLE, "the server is stopping; ask again").into_response();
        }
    };
    match result {
        Ok(action) => json(&action),
        Err(e) => {
            tracing::info!(machine = %m.key.short(), src, dst, "ssh action refused: {e}");
            error_response(&e)
        }
    }
}

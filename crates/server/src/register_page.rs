//! `/register/<auth-id>`: the page a client's AuthURL opens. It tells the
//! person what happens next (an administrator approves the machine with the
//! command shown). Host names come from clients: everything is escaped.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use headway_state::Tailnet;
use std::sync::Arc;

/// Minimal HTML escaping for text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Headway</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         code,pre{{background:#f3f3f3;padding:.2rem .4rem;border-radius:4px}}pre{{padding:1rem;overflow-x:auto}}\
         @media (prefers-color-scheme:dark){{body{{background:#111;color:#eee}}code,pre{{background:#222}}}}</style>\
         </head><body><main><h1>{title}</h1>{body_html}</main></body></html>",
        title = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

pub(crate) async fn register_page(
    State(tailnet): State<Arc<Tailnet>>,
    Path(auth_id): Path<String>,
) -> Response {
    match tailnet.pending_registration(&auth_id) {
        Ok(p) => {
            let host = if p.hostname.is_empty() {
                "A machine".to_string()
            } else {
                format!("The machine “{}”", p.hostname)
            };
            page(
                StatusCode::OK,
                "Waiting for approval",
                &format!(
                    "<p>{} is asking to join this tailnet. It is waiting and will connect by itself once an administrator approves it.</p>\
                     <p>An administrator approves it on the Headway server with:</p>\
                     <pre>headway auth register --auth-id {} --user &lt;USER&gt;</pre>\
                     <p>This link expires at {} UTC.</p>",
                    escape(&host),
                    escape(&p.auth_id),
                    escape(&p.expires_at.format("%Y-%m-%d %H:%M").to_string()),
                ),
            )
        }
        Err(_) => match tailnet.pending_ssh_check(&auth_id) {
            Ok(c) => ssh_check_page(&c),
            Err(_) => unknown_page(),
        },
    }
}

/// The link an SSH connection held by a `check` rule shows.
pub(crate) fn ssh_check_page(c: &headway_state::tailnet::SshCheckInfo) -> Response {
    page(
        StatusCode::OK,
        "SSH connection waiting for a check",
        &format!(
            "<p>An SSH connection from “{src}” to “{dst}” as local user “{local}” is held until it is approved. It continues by itself once an administrator approves it with:</p>\
             <pre>headway auth approve --auth-id {id}</pre>\
             <p>This link expires at {expires} UTC.</p>",
            src = escape(&c.src_name),
            dst = escape(&c.dst_name),
            local = escape(&c.local_user),
            id = escape(&c.auth_id),
            expires = escape(&c.expires_at.format("%Y-%m-%d %H:%M").to_string()),
        ),
    )
}

fn unknown_page() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Unknown or expired link",
        "<p>This link is unknown or has expired. Run <code>tailscale up</code> (or <code>ssh</code>) again on the machine to get a new one.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_a_client_could_inject() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}

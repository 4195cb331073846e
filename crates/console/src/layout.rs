//! The page frame (head, navigation, flash messages) and small renderers
//! shared by the pages. Everything goes through maud, which escapes every
//! value: a node's host name is text, never markup.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::Ctx;
use crate::gate::CSRF_FIELD;
use crate::session::Flash;

/// The sections, in navigation order: path, label.
const SECTIONS: &[(&str, &str)] = &[
    ("/admin", "Overview"),
    ("/admin/nodes", "Nodes"),
    ("/admin/users", "Users"),
    ("/admin/keys", "Keys"),
    ("/admin/registrations", "Registrations"),
    ("/admin/policy", "Policy"),
    ("/admin/dns", "DNS"),
    ("/admin/audit", "Audit log"),
];

pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            @if let Some(token) = csrf { meta name="csrf-token" content=(token); }
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · Headway" }
            link rel="stylesheet" href="/admin/static/console.css";
            link rel="icon" href="/admin/static/favicon.svg" type="image/svg+xml";
            script src="/admin/static/console.js" defer {}
        }
    }
}

/// A page without a session (sign-in, errors before sign-in).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body.bare {
                main #main.narrow { (body) }
            }
        }
    }
}

/// A page of the signed-in console: `current` is the section's path.
pub(crate) fn page(ctx: &Ctx, current: &str, title: &str, body: Markup) -> Markup {
    let flashes = ctx.session.take_flash();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, Some(&ctx.session.csrf)))
            body data-live="/admin/events" {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/admin" { "Headway" }
                    nav aria-label="Sections" {
                        ul {
                            @for (path, label) in SECTIONS {
                                li {
                                    @if *path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.whoami {
                        span.live #live-state role="status" title="Live updates" { "connecting…" }
                        span.who { (ctx.session.who) }
                        form method="post" action="/admin/logout" {
                            (csrf(ctx))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @for f in &flashes { (flash(f)) }
                    (body)
                }
            }
        }
    }
}

pub(crate) fn flash(f: &Flash) -> Markup {
    match f {
        Flash::Done(text) => html! { p.flash.ok role="status" { (text) } },
        Flash::Failed(text) => html! { p.flash.err role="alert" { (text) } },
        Flash::Secret { what, secret } => html! {
            div.flash.secret role="status" {
                p { (what) " — copy it now: it is shown this once." }
                p { code.secret #new-secret { (secret) } }
            }
        },
    }
}

pub(crate) fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.session.csrf); }
}

/// The confirmation every destructive form asks for (works without script).
pub(crate) fn confirm(label: &str) -> Markup {
    html! {
        label.confirm {
            input type="checkbox" name="confirm" value="yes" required;
            " " (label)
        }
    }
}

/// An empty state: what is missing and what to do next.
pub(crate) fn empty(what: &str, next: Markup) -> Markup {
    html! {
        div.empty {
            p { strong { (what) } }
            p { (next) }
        }
    }
}

/// `2026-01-02 03:04 UTC (in 3 days)`.
pub(crate) fn when(at: Option<DateTime<Utc>>, now: DateTime<Utc>, never: &str) -> Markup {
    match at {
        None => html! { span.muted { (never) } },
        Some(t) => html! {
            time datetime=(t.to_rfc3339()) title=(t.format("%Y-%m-%d %H:%M:%S UTC").to_string()) {
                (relative(t, now))
            }
        },
    }
}

pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t - now;
    let secs = d.num_seconds();
    let abs = secs.unsigned_abs();
    let text = if abs < 60 {
        return if secs.abs() < 5 {
            "just now".into()
        } else if secs < 0 {
            format!("{abs} s ago")
        } else {
            format!("in {abs} s")
        };
    } else if abs < 3600 {
        format!("{} min", abs / 60)
    } else if abs < 86400 {
        format!("{} h", abs / 3600)
    } else {
        format!("{} days", abs / 86400)
    };
    if secs < 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

pub(crate) fn online_badge(node_id: &str, online: bool) -> Markup {
    html! {
        span.badge.online[online].offline[!online] data-online-of=(node_id) {
            @if online { "online" } @else { "offline" }
        }
    }
}

/// An error page inside the console frame.
pub(crate) fn error_page(ctx: &Ctx, current: &str, status: StatusCode, detail: &str) -> Response {
    html_response(
        status,
        page(
            ctx,
            current,
            "Something went wrong",
            html! {
                p.flash.err role="alert" { (detail) }
                p { a href=(current) { "Back" } }
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(
            relative(now - chrono::Duration::seconds(30), now),
            "30 s ago"
        );
        assert_eq!(
            relative(now + chrono::Duration::minutes(5), now),
            "in 5 min"
        );
        assert_eq!(relative(now - chrono::Duration::hours(3), now), "3 h ago");
        assert_eq!(relative(now + chrono::Duration::days(9), now), "in 9 days");
    }
}

//! The policy editor: the HuJSON text, `check` before save (the API's
//! check runs the policy's own tests), the line of a refused policy
//! marked, and a diff against the policy in force.
//!
//! Works without script (Check and Save are form buttons); the script
//! checks as you type and draws line numbers with the error line marked.

use std::sync::Arc;

use axum::Extension;
use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use headway_api::wire::{Empty, PolicyRequest, PolicyResponse};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use crate::api::ApiFailure;
use crate::layout::{csrf, html_response, page, when};
use crate::pages::read;
use crate::session::Flash;
use crate::{Console, Ctx};

const CUR: &str = "/admin/policy";

#[derive(Debug, Deserialize)]
pub(crate) struct PolicyForm {
    #[serde(default)]
    policy: String,
}

/// Where a refusal points: the line and column in the engine's message
/// (`… (line 7, column 14): …`).
pub(crate) fn error_position(detail: &str) -> Option<(usize, usize)> {
    let at = detail.find("line ")?;
    let rest = &detail[at + 5..];
    let line_end = rest.find(|c: char| !c.is_ascii_digit())?;
    let line: usize = rest[..line_end].parse().ok()?;
    let column = rest[line_end..]
        .strip_prefix(", column ")
        .and_then(|c| {
            let end = c.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(c.len());
            c[..end].parse().ok()
        })
        .unwrap_or(1);
    (line > 0).then_some((line, column))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "op", content = "text")]
pub(crate) enum DiffLine {
    Same(String),
    Added(String),
    Removed(String),
}

/// Most lines a diff is computed for (the table is lines × lines).
const MAX_DIFF_LINES: usize = 3000;

/// A line diff of `old` → `new` (longest common subsequence); `None` when
/// the texts are too long to compare here.
pub(crate) fn diff(old: &str, new: &str) -> Option<Vec<DiffLine>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return None;
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(DiffLine::Same(a[i].to_string()));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[at(i, j + 1)] >= lcs[at(i + 1, j)]) {
            out.push(DiffLine::Added(b[j].to_string()));
            j += 1;
        } else {
            out.push(DiffLine::Removed(a[i].to_string()));
            i += 1;
        }
    }
    Some(out)
}

fn diff_view(lines: Option<&[DiffLine]>) -> Markup {
    match lines {
        None => html! { p.muted { "Too long to compare here." } },
        Some(lines) if lines.iter().all(|l| matches!(l, DiffLine::Same(_))) => {
            html! { p.muted #policy-diff-none { "No change from the policy in force." } }
        }
        Some(lines) => html! {
            pre.diff #policy-diff {
                @for l in lines {
                    @match l {
                        DiffLine::Same(t) => { span.same { "  " (t) "\n" } }
                        DiffLine::Added(t) => { ins { "+ " (t) "\n" } }
                        DiffLine::Removed(t) => { del { "- " (t) "\n" } }
                    }
                }
            }
        },
    }
}

/// What a check or a save said.
enum Verdict {
    None,
    Accepted,
    Refused(String),
}

fn editor_page(
    ctx: &Ctx,
    running: &PolicyResponse,
    text: &str,
    verdict: &Verdict,
    read_only: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    let position = match verdict {
        Verdict::Refused(d) => error_position(d),
        _ => None,
    };
    let changed = text != running.policy;
    html! {
        p.muted {
            @if running.policy.is_empty() { "No policy is in force: every node may reach every node. " }
            @else { "The policy in force was set " (when(running.updated_at, now, "at start")) ". " }
            "The policy is HuJSON (JSON with comments and trailing commas); "
            "its " code { "tests" } " run at every check and save."
        }
        @if let Some(why) = read_only { p.flash.err role="alert" { (why) } }
        div #policy-verdict aria-live="polite" {
            @match verdict {
                Verdict::None => {}
                Verdict::Accepted => { p.flash.ok role="status" { "The policy is valid and its tests pass." } }
                Verdict::Refused(detail) => {
                    div.flash.err role="alert" {
                        p { "Refused: " (detail) }
                        @if let Some((line, column)) = position {
                            p.error-at data-line=(line) data-column=(column) {
                                "Line " (line) ", column " (column) ": "
                                code { (text.lines().nth(line - 1).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        form #policy-form method="post" action="/admin/policy" {
            (csrf(ctx))
            div.editor {
                label for="policy" .visually-hidden { "Policy" }
                textarea #policy name="policy" spellcheck="false" autocomplete="off" rows="28"
                    data-error-line=[position.map(|p| p.0)]
                    readonly[read_only.is_some()] { (text) }
            }
            div.buttons {
                button type="submit" formaction="/admin/policy/check" { "Check" }
                @if read_only.is_none() { button.primary type="submit" { "Save" } }
            }
        }
        details #diff-box open[changed] {
            summary { "Changes against the policy in force" }
            div #policy-diff-view { (diff_view(diff(&running.policy, text).as_deref())) }
        }
    }
}

pub(crate) async fn editor(
    State(console): State<Arc<Console>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let running: PolicyResponse = match read(&console, &ctx, CUR, "/api/v1/policy").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body = editor_page(
        &ctx,
        &running,
        &running.policy,
        &Verdict::None,
        None,
        console.now(),
    );
    html_response(StatusCode::OK, page(&ctx, CUR, "Policy", body))
}

pub(crate) async fn save(
    State(console): State<Arc<Console>>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<PolicyForm>,
) -> Response {
    let req = PolicyRequest {
        policy: form.policy.clone(),
    };
    let r: Result<PolicyResponse, ApiFailure> = console
        .api
        .call(Method::PUT, "/api/v1/policy", ctx.who(), Some(&req))
        .await;
    match r {
        Ok(_) => {
            ctx.session.push_flash(Flash::Done(
                "Policy saved and applied to every node.".into(),
            ));
            Redirect::to(CUR).into_response()
        }
        Err(e) if e.is_unauthorized() => Redirect::to("/admin/login").into_response(),
        Err(e) => {
            // Keep what was typed: a refused policy is shown again, marked.
            let running: PolicyResponse = match read(&console, &ctx, CUR, "/api/v1/policy").await {
                Ok(v) => v,
                Err(r) => return r,
            };
            let read_only = (e.status == StatusCode::CONFLICT).then_some(e.detail.as_str());
            let verdict = if read_only.is_some() {
                Verdict::None
            } else {
                Verdict::Refused(e.detail.clone())
            };
            let body = editor_page(
                &ctx,
                &running,
                &form.policy,
                &verdict,
                read_only,
                console.now(),
            );
            html_response(e.status, page(&ctx, CUR, "Policy", body))
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CheckAnswer {
    ok: bool,
    detail: String,
    line: Option<usize>,
    column: Option<usize>,
    /// The diff against the policy in force, rendered.
    diff_html: String,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("application/json"))
}

/// Checks without saving: JSON for the script, the editor page otherwise.
pub(crate) async fn check(
    State(console): State<Arc<Console>>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    Form(form): Form<PolicyForm>,
) -> Response {
    let req = PolicyRequest {
        policy: form.policy.clone(),
    };
    let r: Result<Empty, ApiFailure> = console
        .api
        .call(Method::POST, "/api/v1/policy/check", ctx.who(), Some(&req))
        .await;
    if let Err(e) = &r
        && e.is_unauthorized()
    {
        return Redirect::to("/admin/login").into_response();
    }
    let running: PolicyResponse = match read(&console, &ctx, CUR, "/api/v1/policy").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let verdict = match &r {
        Ok(_) => Verdict::Accepted,
        Err(e) => Verdict::Refused(e.detail.clone()),
    };
    if wants_json(&headers) {
        let (detail, position) = match &verdict {
            Verdict::Refused(d) => (d.clone(), error_position(d)),
            _ => (String::new(), None),
        };
        return Json(CheckAnswer {
            ok: r.is_ok(),
            detail,
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            diff_html: diff_view(diff(&running.policy, &form.policy).as_deref()).into_string(),
        })
        .into_response();
    }
    let body = editor_page(&ctx, &running, &form.policy, &verdict, None, console.now());
    html_response(StatusCode::OK, page(&ctx, CUR, "Policy", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_is_read_from_the_engine_message() {
        assert_eq!(
            error_position("acls[0].src[1] (line 7, column 14): src=tag not found"),
            Some((7, 14))
        );
        assert_eq!(error_position("(line 3): x"), Some((3, 1)));
        assert_eq!(error_position("tests failed: alice cannot reach db"), None);
        assert_eq!(error_position("line 0, column 1"), None);
    }

    #[test]
    fn the_diff_keeps_common_lines_and_marks_the_rest() {
        let d = diff("a\nb\nc", "a\nx\nc\nd").unwrap();
        assert_eq!(
            d,
            vec![
                DiffLine::Same("a".into()),
                DiffLine::Added("x".into()),
                DiffLine::Removed("b".into()),
                DiffLine::Same("c".into()),
                DiffLine::Added("d".into()),
            ]
        );
        assert!(diff("", "").unwrap().is_empty());
    }
}

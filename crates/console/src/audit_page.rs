//! The audit log: who changed what and when, newest first, read from
//! `GET /api/v1/audit` with its filters (actor, action and target by
//! prefix, a time range, how many). Filters are a GET form, so a filtered
//! view is a link to share. Each entry shows what changed, field by field,
//! from the before/after snapshots the API recorded (never key material).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use headway_api::audit::{AuditEntryWire, ListAuditResponse};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::layout::{empty, html_response, page, relative};
use crate::{Console, Ctx};

const CUR: &str = "/admin/audit";
/// Entries per page unless the form asks for another number.
const DEFAULT_LIMIT: u32 = 100;
const LIMITS: &[u32] = &[50, 100, 500, 1000];
/// Field changes listed per entry before "and N more".
const MAX_CHANGES_SHOWN: usize = 12;
/// Longest value shown in a change (the snapshot has the rest).
const MAX_VALUE_CHARS: usize = 80;

/// The page's filters, as the form sends them.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct AuditFilters {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    /// A day (`2026-01-31`, from its start) or an RFC 3339 time.
    #[serde(default)]
    since: String,
    /// A day (up to its end, included) or an RFC 3339 time (excluded).
    #[serde(default)]
    until: String,
    #[serde(default)]
    limit: String,
}

impl AuditFilters {
    fn narrows(&self) -> bool {
        [
            &self.actor,
            &self.action,
            &self.target,
            &self.since,
            &self.until,
        ]
        .iter()
        .any(|f| !f.trim().is_empty())
    }

    fn limit(&self) -> Result<u32, String> {
        let text = self.limit.trim();
        if text.is_empty() {
            return Ok(DEFAULT_LIMIT);
        }
        match text.parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(format!(
                "show {text:?} entries: give a whole number from 1 to 10000"
            )),
        }
    }

    /// The API's query string for these filters.
    fn api_query(&self) -> Result<String, String> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (name, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
        ] {
            let v = value.trim();
            if !v.is_empty() {
                pairs.push((name, v.to_string()));
            }
        }
        if let Some(t) = api_time("since", &self.since, false)? {
            pairs.push(("since", t));
        }
        if let Some(t) = api_time("until", &self.until, true)? {
            pairs.push(("until", t));
        }
        pairs.push(("limit", self.limit()?.to_string()));
        serde_urlencoded::to_string(&pairs)
            .map_err(|e| format!("the filters could not be encoded: {e}"))
    }

    /// This page's address with these filters and `until` replaced (the
    /// link to older entries).
    fn older_than(&self, at: DateTime<Utc>) -> String {
        let until = at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let pairs: Vec<(&str, &str)> = [
            ("actor", self.actor.trim()),
            ("action", self.action.trim()),
            ("target", self.target.trim()),
            ("since", self.since.trim()),
            ("until", until.as_str()),
            ("limit", self.limit.trim()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        format!(
            "{CUR}?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    }
}

/// A filter link: this page narrowed to one actor, action or target.
fn filter_link(name: &str, value: &str) -> String {
    format!(
        "{CUR}?{}",
        serde_urlencoded::to_string([(name, value)]).unwrap_or_default()
    )
}

/// A time filter as the API wants it (RFC 3339). A bare day means its
/// start for `since` and, for `until`, the start of the next day, so the
/// day itself is included.
pub(crate) fn api_time(name: &str, text: &str, end: bool) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end {
            day.succ_opt().unwrap_or(day)
        } else {
            day
        };
        return Ok(Some(format!("{day}T00:00:00Z")));
    }
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Ok(Some(
            t.with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        )),
        Err(_) => Err(format!(
            "{name} {text:?}: give a day such as 2026-01-31 or a time such as 2026-01-31T12:00:00Z"
        )),
    }
}

/// One field that an action changed; `None` where the field was absent
/// (created, or removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

fn shown(v: &Value) -> String {
    let text = match v {
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_VALUE_CHARS {
        let cut: String = text.chars().take(MAX_VALUE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A field with nothing in it (left out of creations and deletions).
fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// What an action changed, field by field, from its snapshots: the fields
/// that differ when both are objects, the fields with a value of the one
/// that exists otherwise (a creation or a deletion). Fields in name order.
pub(crate) fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    match (
        before.and_then(Value::as_object),
        after.and_then(Value::as_object),
    ) {
        (None, None) => {
            // Not objects: the values themselves, when they differ.
            let (b, a) = (before.map(shown), after.map(shown));
            if (b.is_none() && a.is_none()) || b == a {
                Vec::new()
            } else {
                vec![Change {
                    field: String::new(),
                    before: b,
                    after: a,
                }]
            }
        }
        (b, a) => {
            let names: BTreeSet<&String> = b
                .iter()
                .flat_map(|m| m.keys())
                .chain(a.iter().flat_map(|m| m.keys()))
                .collect();
            names
                .into_iter()
                .filter_map(|name| {
                    let old = b.and_then(|m| m.get(name));
                    let new = a.and_then(|m| m.get(name));
                    let one_sided = b.is_none() || a.is_none();
                    if one_sided && old.or(new).is_some_and(blank) {
                        return None;
                    }
                    (old != new).then(|| Change {
                        field: name.clone(),
                        before: old.map(shown),
                        after: new.map(shown),
                    })
                })
                .collect()
        }
    }
}

fn entry_changes(e: &AuditEntryWire) -> Markup {
    let all = changes(e.before.as_ref(), e.after.as_ref());
    let more = all.len().saturating_sub(MAX_CHANGES_SHOWN);
    html! {
        @if !all.is_empty() {
            ul.changes {
                @for c in all.iter().take(MAX_CHANGES_SHOWN) {
                    li {
                        @if !c.field.is_empty() { span.field { (c.field) } ": " }
                        @match (&c.before, &c.after) {
                            (Some(b), Some(a)) => { del { (b) } " → " ins { (a) } }
                            (None, Some(a)) => { ins { (a) } }
                            (Some(b), None) => { del { (b) } " (removed)" }
                            (None, None) => {}
                        }
                    }
                }
                @if more > 0 { li.muted { "and " (more) " more" } }
            }
        }
        @if e.before.is_some() || e.after.is_some() {
            details {
                summary { "Snapshots" }
                @if let Some(b) = &e.before {
                    h3 { "Before" }
                    pre.snapshot { (serde_json::to_string_pretty(b).unwrap_or_default()) }
                }
                @if let Some(a) = &e.after {
                    h3 { "After" }
                    pre.snapshot { (serde_json::to_string_pretty(a).unwrap_or_default()) }
                }
            }
        }
    }
}

fn filter_form(f: &AuditFilters) -> Markup {
    let limit = f.limit().unwrap_or(DEFAULT_LIMIT);
    html! {
        form.inline #audit-filters role="search" method="get" action=(CUR) {
            label { "Action " input name="action" value=(f.action) list="audit-actions"
                placeholder="node., user.create" autocomplete="off"; }
            datalist #audit-actions {
                @for a in ["node.", "node.register", "user.", "api_key.", "preauth_key.", "oauth_client."] { option value=(a) {} }
            }
            label { "Who " input name="actor" value=(f.actor)
                placeholder="api_key:, local, oidc:" autocomplete="off"; }
            label { "Target " input name="target" value=(f.target)
                placeholder="node:12, user:3" autocomplete="off"; }
            label { "From " input name="since" value=(f.since) placeholder="2026-01-31" autocomplete="off"; }
            label { "To " input name="until" value=(f.until) placeholder="2026-01-31" autocomplete="off"; }
            label { "Show "
                select name="limit" {
                    @for n in LIMITS { option value=(n) selected[*n == limit] { (n) } }
                    @if !LIMITS.contains(&limit) { option value=(limit) selected { (limit) } }
                }
            }
            button type="submit" { "Filter" }
            @if f.narrows() { a.button href=(CUR) { "Clear" } }
        }
        p.muted { "Actor, action and target match by their start: " code { "node." }
            " finds every node action, " code { "api_key:" } " every API key." }
    }
}

fn entries_table(ctx_now: DateTime<Utc>, entries: &[AuditEntryWire]) -> Markup {
    html! {
        div.scroll {
            table #audit {
                thead { tr { th { "When (UTC)" } th { "Who" } th { "What" } th { "Target" } th { "Changes" } } }
                tbody {
                    @for e in entries {
                        tr data-audit-id=(e.id) {
                            td.when {
                                time datetime=(e.at.to_rfc3339()) { (e.at.format("%Y-%m-%d %H:%M:%S")) }
                                br; span.muted { (relative(e.at, ctx_now)) }
                            }
                            td.mono { a href=(filter_link("actor", &e.actor)) { (e.actor) } }
                            td.mono { a href=(filter_link("action", &e.action)) { (e.action) } }
                            td.mono {
                                @if e.target.is_empty() { span.muted { "—" } }
                                @else { a href=(filter_link("target", &e.target)) { (e.target) } }
                            }
                            td { (entry_changes(e)) }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn audit(
    State(console): State<Arc<Console>>,
    Extension(ctx): Extension<Ctx>,
    Query(filters): Query<AuditFilters>,
) -> Response {
    let now = console.now();
    let listed: Result<ListAuditResponse, String> = match filters.api_query() {
        Err(e) => Err(e),
        Ok(q) => match console
            .api
            .get(&format!("/api/v1/audit?{q}"), ctx.who())
            .await
        {
            Ok(l) => Ok(l),
            Err(e) if e.is_unauthorized() => return Redirect::to("/admin/login").into_response(),
            Err(e) => Err(e.detail),
        },
    };
    let (status, body) = match listed {
        Err(why) => (
            StatusCode::BAD_REQUEST,
            html! {
                (filter_form(&filters))
                p.flash.err role="alert" { (why) }
            },
        ),
        Ok(l) => {
            let full = filters.limit().is_ok_and(|n| l.entries.len() >= n as usize);
            (
                StatusCode::OK,
                html! {
                    (filter_form(&filters))
                    @if l.entries.is_empty() && filters.narrows() {
                        (empty("No entry matches these filters.", html! {
                            a href=(CUR) { "Show every entry" } " or widen the filters."
                        }))
                    } @else if l.entries.is_empty() {
                        (empty("The audit log is empty.", html! {
                            "Every change made through the API, the CLI or this console is recorded here, with who made it, as are machines logging in."
                        }))
                    } @else {
                        (entries_table(now, &l.entries))
                        @if full {
                            @if let Some(last) = l.entries.last() {
                                p { a.button href=(filters.older_than(last.at)) { "Older entries" } }
                            }
                        }
                    }
                },
            )
        }
    };
    html_response(status, page(&ctx, CUR, "Audit log", body))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn days_and_times_become_api_times() {
        assert_eq!(api_time("since", "", false), Ok(None));
        assert_eq!(
            api_time("since", "2026-01-31", false),
            Ok(Some("2026-01-31T00:00:00Z".into()))
        );
        // A day in `until` is included: the range ends when the next begins.
        assert_eq!(
            api_time("until", "2026-01-31", true),
            Ok(Some("2026-02-01T00:00:00Z".into()))
        );
        assert_eq!(
            api_time("until", "2026-01-31T12:00:00+02:00", true),
            Ok(Some("2026-01-31T10:00:00Z".into()))
        );
        let err = api_time("since", "yesterday", false).unwrap_err();
        assert!(err.starts_with("since \"yesterday\": give a day"), "{err}");
    }

    #[test]
    fn filters_become_the_api_query() {
        let f = AuditFilters {
            action: " node. ".into(),
            actor: "api_key:".into(),
            since: "2026-01-01".into(),
            ..Default::default()
        };
        assert!(f.narrows());
        assert_eq!(
            f.api_query().unwrap(),
            "actor=api_key%3A&action=node.&since=2026-01-01T00%3A00%3A00Z&limit=100"
        );
        assert!(!AuditFilters::default().narrows());
        let bad = AuditFilters {
            limit: "lots".into(),
            ..Default::default()
        };
        assert!(bad.api_query().unwrap_err().contains("\"lots\""));
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            f.older_than(at),
            "/admin/audit?actor=api_key%3A&action=node.&since=2026-01-01&until=2026-01-02T03%3A04%3A05.500Z"
        );
    }

    #[test]
    fn changes_list_the_fields_that_differ() {
        let before = json!({"name": "laptop", "tags": [], "id": 3});
        let after = json!({"name": "renamed", "tags": ["tag:a"], "id": 3, "expiry": null});
        assert_eq!(
            changes(Some(&before), Some(&after)),
            [
                Change {
                    field: "expiry".into(),
                    before: None,
                    after: Some("null".into())
                },
                Change {
                    field: "name".into(),
                    before: Some("laptop".into()),
                    after: Some("renamed".into())
                },
                Change {
                    field: "tags".into(),
                    before: Some("[]".into()),
                    after: Some("[\"tag:a\"]".into())
                },
            ]
        );
        // A creation lists what was created (not its blank fields); a
        // deletion what was removed.
        assert_eq!(
            changes(
                None,
                Some(&json!({"name": "alice", "email": "", "tags": [], "x": null}))
            ),
            [Change {
                field: "name".into(),
                before: None,
                after: Some("alice".into())
            }]
        );
        // An empty text that changed is shown as "".
        assert_eq!(
            changes(Some(&json!({"email": ""})), Some(&json!({"email": "a@b"})))[0].before,
            Some("\"\"".into())
        );
        assert_eq!(
            changes(Some(&json!({"name": "alice"})), None)[0].after,
            None
        );
        assert!(changes(Some(&before), Some(&before)).is_empty());
        assert!(changes(None, None).is_empty());
        // Scalars (a policy's text, say) compare as values, long ones cut.
        let long = "x".repeat(200);
        let c = changes(None, Some(&json!(long)));
        assert_eq!(
            c[0].after.as_ref().unwrap().chars().count(),
            MAX_VALUE_CHARS
        );
    }

    #[test]
    fn filter_links_escape_their_value() {
        assert_eq!(
            filter_link("actor", "api_key:ab&c"),
            "/admin/audit?actor=api_key%3Aab%26c"
        );
    }
}

//! `headway audit list`: the audit log (admin actions and node
//! authentication events), newest first.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use headway_api::audit::{AuditEntryWire, ListAuditResponse};
use headway_state::clock::{Clock, SystemClock};

use super::Ctx;
use crate::client::encode;
use crate::duration::parse_duration;
use crate::output::{self, Table};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit log entries, newest first
    #[command(visible_alias = "ls")]
    List(ListAudit),
}

#[derive(Debug, Args)]
pub struct ListAudit {
    /// Only entries since this time: RFC 3339 (2026-01-31T12:00:00Z) or a
    /// duration back from now (24h, 7d)
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries whose actor starts with this (local, api_key:, api_key:<prefix>, oidc:alice)
    #[arg(long)]
    pub actor: Option<String>,
    /// Only entries whose action starts with this (node., user.create, node.register)
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries whose target starts with this (node:12, user:3)
    #[arg(long)]
    pub target: Option<String>,
    /// At most this many entries
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

pub async fn run(ctx: &Ctx, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List(args) => list(ctx, args, SystemClock.now()).await,
    }
}

/// `--since`: a time, or a duration back from `now`.
fn since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let back = parse_duration(text).with_context(|| {
        format!("--since {text:?}: expected an RFC 3339 time (2026-01-31T12:00:00Z) or a duration (24h, 7d)")
    })?;
    let back = chrono::Duration::from_std(back)
        .with_context(|| format!("--since {text:?} is too long ago"))?;
    match now.checked_sub_signed(back) {
        Some(t) => Ok(t),
        None => bail!("--since {text:?} is too long ago"),
    }
}

fn query(args: &ListAudit, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut q = vec![format!("limit={}", args.limit)];
    if let Some(s) = &args.since {
        q.push(format!("since={}", encode(&since(s, now)?.to_rfc3339())));
    }
    for (name, value) in [
        ("actor", &args.actor),
        ("action", &args.action),
        ("target", &args.target),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            q.push(format!("{name}={}", encode(v)));
        }
    }
    Ok(format!("/api/v1/audit?{}", q.join("&")))
}

async fn list(ctx: &Ctx, args: ListAudit, now: DateTime<Utc>) -> anyhow::Result<()> {
    let listed: ListAuditResponse = ctx.client.get(&query(&args, now)?).await?;
    ctx.out
        .print(&listed.entries, || table(&listed.entries).to_string())
}

fn table(entries: &[AuditEntryWire]) -> Table {
    let mut t = Table::new(&["ID", "Time", "Actor", "Action", "Target"]);
    for e in entries {
        t.row(vec![
            e.id.clone(),
            output::time(&e.at),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_back() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        assert_eq!(
            since("24h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            since("2025-12-31T10:00:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2025, 12, 31, 10, 0, 0).unwrap()
        );
        assert!(since("yesterday", now).is_err());
        let args = ListAudit {
            since: None,
            actor: Some("api_key:".into()),
            action: Some("node.".into()),
            target: None,
            limit: 5,
        };
        let q = query(&args, now).unwrap();
        assert!(q.starts_with("/api/v1/audit?limit=5&actor=api_key"), "{q}");
        assert!(q.contains("action=node."), "{q}");
    }
}

//! The audit log: who did what to which thing, and when.
//!
//! Entries are written by the doors that know the caller (the admin API
//! records admin actions with the caller's identity) and by the service
//! layer for node authentication events (register, login, logout, expired
//! key). Each entry is stored through the [`crate::store::Store`] and, when
//! a sink is set, also written as one JSON line (for a SIEM).
//!
//! Nothing secret goes in: actors are named by key *prefixes* (the public
//! half of a key), never by keys; before/after snapshots are the public
//! wire shapes the API returns, with key material stripped by the caller.

use std::io::Write;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store; `0` before it is stored.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who: `api_key:<prefix>`, `oauth:<client id>`, `local` (unix socket),
    /// `oidc:<user>`, `console:<user>`, `preauth_key:<prefix>`,
    /// `machine:<short key>`, `system`.
    pub actor: String,
    /// What, as `thing.verb`: `user.create`, `node.rename`, `node.register`.
    pub action: String,
    /// Which thing: `user:3`, `node:12`, `api_key:abc123`; empty when none.
    pub target: String,
    /// The thing before the action, when cheap to know.
    pub before: Option<serde_json::Value>,
    /// The thing after the action (or the action's parameters).
    pub after: Option<serde_json::Value>,
}

/// What to list. Text filters match by prefix (`--action node.` finds
/// every node action, `--actor api_key:` every API key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Newest first, at most this many (0: the default).
    pub limit: u32,
}

/// Entries listed when no limit is given, and the most ever listed at once.
pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 100_000;

impl AuditFilter {
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        }
    }

    /// Whether `e` passes (for stores that filter in memory).
    pub fn matches(&self, e: &AuditEntry) -> bool {
        let prefix =
            |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| have.starts_with(w));
        self.since.is_none_or(|s| e.at >= s)
            && self.until.is_none_or(|u| e.at < u)
            && prefix(&self.actor, &e.actor)
            && prefix(&self.action, &e.action)
            && prefix(&self.target, &e.target)
    }
}

/// Where entries are copied as JSON lines, besides the database.
pub struct AuditSink {
    out: Mutex<Box<dyn Write + Send>>,
    describe: String,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("to", &self.describe)
            .finish()
    }
}

impl AuditSink {
    pub fn new(out: Box<dyn Write + Send>, describe: impl Into<String>) -> Self {
        AuditSink {
            out: Mutex::new(out),
            describe: describe.into(),
        }
    }

    /// Standard output.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()), "stdout")
    }

    /// A file, appended to (created 0600: the log names people and machines).
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let f = o.open(path)?;
        Ok(Self::new(Box::new(f), path.display().to_string()))
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Writes one line. A failing sink does not stop the action it records
    /// (the database has the entry); the caller logs the error.
    pub fn write(&self, e: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut out = self.out.lock();
        out.write_all(&line)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn entry(actor: &str, action: &str, target: &str, secs: i64) -> AuditEntry {
        AuditEntry {
            id: 1,
            at: Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            before: None,
            after: None,
        }
    }

    #[test]
    fn filters_match_by_prefix_and_time() {
        let e = entry("api_key:abc", "node.rename", "node:3", 10);
        assert!(AuditFilter::default().matches(&e));
        let f = |actor: Option<&str>, action: Option<&str>, target: Option<&str>| AuditFilter {
            actor: actor.map(Into::into),
            action: action.map(Into::into),
            target: target.map(Into::into),
            ..Default::default()
        };
        assert!(f(Some("api_key:"), Some("node."), Some("node:3")).matches(&e));
        assert!(!f(Some("local"), None, None).matches(&e));
        assert!(!f(None, Some("user."), None).matches(&e));
        assert!(!f(None, None, Some("node:4")).matches(&e));
        let since = |s: i64| AuditFilter {
            since: Some(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()),
            ..Default::default()
        };
        assert!(since(10).matches(&e));
        assert!(!since(11).matches(&e));
        assert_eq!(AuditFilter::default().effective_limit(), DEFAULT_LIMIT);
        let huge = AuditFilter {
            limit: u32::MAX,
            ..Default::default()
        };
        assert_eq!(huge.effective_limit(), MAX_LIMIT);
    }

    #[test]
    fn the_sink_writes_one_json_object_a_line() {
        let dir = std::env::temp_dir().join(format!("headway-audit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let sink = AuditSink::file(&path).unwrap();
        sink.write(&entry("local", "user.create", "user:1", 0))
            .unwrap();
        sink.write(&entry("local", "user.delete", "user:1", 1))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<AuditEntry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].action, "user.delete");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The audit log's server side: its JSON-lines copy (`audit.log_path`) and
//! the pruning job (`audit.retention`). Entries themselves are recorded by
//! the API (admin actions) and the service layer (node authentication).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use headway_config::{AuditConfig, AuditSinkPath};
use headway_state::Tailnet;
use headway_state::audit::AuditSink;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often old entries are looked for (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often a replica that may not prune yet asks again (several replicas:
/// the singleton lock is taken a moment after start).
const PRUNE_RETRY: Duration = Duration::from_secs(30);

pub(crate) fn start(
    config: &AuditConfig,
    tailnet: &Arc<Tailnet>,
    singleton: crate::replicas::Singleton,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sink = match &config.log_path {
        None => None,
        Some(AuditSinkPath::Stdout) => Some(AuditSink::stdout()),
        Some(AuditSinkPath::File(path)) => Some(AuditSink::file(path).with_context(|| {
            format!(
                "audit.log_path: cannot open {} for appending",
                path.display()
            )
        })?),
    };
    if let Some(s) = &sink {
        tracing::info!(
            to = s.describe(),
            "audit log entries are copied as JSON lines"
        );
    }
    tailnet.set_audit_sink(sink);
    if let Some(retention) = config.retention {
        let t = tailnet.clone();
        tasks.spawn(async move {
            let mut wait = Duration::ZERO;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                // With several replicas, only the singleton lock holder prunes.
                if !singleton.may_run() {
                    wait = PRUNE_RETRY;
                    continue;
                }
                wait = PRUNE_EVERY;
                match t.prune_audit(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        deleted = n,
                        "audit log entries older than audit.retention deleted"
                    ),
                    Err(e) => tracing::warn!("pruning the audit log failed (will retry): {e}"),
                }
            }
        });
    }
    Ok(())
}

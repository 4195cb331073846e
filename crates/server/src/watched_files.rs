//! `policy.mode: file`: the policy file is read at start (a bad one stops
//! start-up with its error), and re-read when it changes or on SIGHUP. A
//! refused file is logged and the running policy stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use headway_state::Tailnet;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the file's metadata is checked for changes.
const POLL: Duration = Duration::from_secs(1);

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("policy.path: reading {}", path.display()))
}

/// What identifies a version of the file without reading it.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Loads the file once; errors are fatal at start-up.
pub(crate) async fn load_at_start(tailnet: &Tailnet, path: &Path) -> anyhow::Result<()> {
    let text = read(path)?;
    tailnet
        .load_policy_file(&text)
        .await
        .with_context(|| format!("policy.path {}", path.display()))?;
    tracing::info!(path = %path.display(), "policy loaded");
    Ok(())
}

async fn reload(tailnet: &Tailnet, path: &Path, why: &str) {
    match read(path) {
        Ok(text) => match tailnet.load_policy_file(&text).await {
            Ok(()) => tracing::info!(path = %path.display(), why, "policy reloaded"),
            Err(e) => {
                tracing::error!(path = %path.display(), "policy file refused, the running policy stays: {e}")
            }
        },
        Err(e) => tracing::error!("{e:#}; the running policy stays"),
    }
}

/// Watches the file (and SIGHUP) until shutdown.
pub(crate) fn spawn_watch(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    tailnet: Arc<Tailnet>,
    path: PathBuf,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last = stamp(&path);
        let mut tick = tokio::time::interval(POLL);
        loop {
            #[cfg(unix)]
            let sighup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<()>();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = sighup => {
                    last = stamp(&path);
                    reload(&tailnet, &path, "SIGHUP").await;
                }
                _ = tick.tick() => {
                    let now = stamp(&path);
                    if now != last {
                        last = now;
                        reload(&tailnet, &path, "file changed").await;
                    }
                }
            }
        }
    });
}

//! Files the server follows while it runs: the policy (`policy.mode: file`)
//! and extra DNS records (`dns.extra_records_path`). Each is read at start
//! (a bad one stops start-up with its error) and re-read when it changes or
//! on SIGHUP; a refused new version is logged and the running one stays.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use headway_state::Tailnet;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often a file's metadata is checked for changes.
const POLL: Duration = Duration::from_secs(1);

type Apply =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

fn read(path: &Path, key: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{key}: reading {}", path.display()))
}

/// What identifies a version of the file without reading it.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Applies the file once (fatal on error), then follows it until shutdown.
async fn follow(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    path: PathBuf,
    key: &'static str,
    apply: Apply,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let text = read(&path, key)?;
    apply(text)
        .await
        .with_context(|| format!("{key} {}", path.display()))?;
    tracing::info!(path = %path.display(), "{key} loaded");
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
            let why = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = sighup => "SIGHUP",
                _ = tick.tick() => {
                    let now = stamp(&path);
                    if now == last {
                        continue;
                    }
                    "file changed"
                }
            };
            last = stamp(&path);
            match read(&path, key) {
                Ok(text) => match apply(text).await {
                    Ok(()) => tracing::info!(path = %path.display(), why, "{key} reloaded"),
                    Err(e) => tracing::error!(path = %path.display(), "{key} refused, the running version stays: {e:#}"),
                },
                Err(e) => tracing::error!("{e:#}; the running version stays"),
            }
        }
    });
    Ok(())
}

/// `policy.mode: file`.
pub(crate) async fn follow_policy(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    tailnet: Arc<Tailnet>,
    path: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let apply: Apply = Arc::new(move |text| {
        let t = tailnet.clone();
        Box::pin(async move { t.load_policy_file(&text).await.map_err(anyhow::Error::from) })
    });
    follow(tasks, path, "policy file", apply, shutdown).await
}

/// `dns.extra_records_path`.
pub(crate) async fn follow_extra_records(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    tailnet: Arc<Tailnet>,
    path: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let apply: Apply = Arc::new(move |text| {
        let t = tailnet.clone();
        Box::pin(async move {
            let records = headway_state::tailnet::parse_extra_records(&text)?;
            t.set_extra_dns_records(records);
            Ok(())
        })
    });
    follow(tasks, path, "dns.extra_records_path", apply, shutdown).await
}

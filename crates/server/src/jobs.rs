//! Background work: removing inactive ephemeral nodes (on one replica at a
//! time) and saving soft node state (endpoints, host info, last seen) in
//! batches (every replica, for the nodes connected to it).

use std::sync::Arc;
use std::time::Duration;

use headway_state::Tailnet;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const EPHEMERAL_SWEEP: Duration = Duration::from_secs(5);
const SOFT_STATE_FLUSH: Duration = Duration::from_secs(10);

pub(crate) fn spawn(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    tailnet: Arc<Tailnet>,
    singleton: crate::replicas::Singleton,
    shutdown: CancellationToken,
) {
    let t = tailnet.clone();
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(EPHEMERAL_SWEEP);
        loop {
            tokio::select! {
                _ = sd.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    // With several replicas, only the lock holder deletes.
                    if singleton.may_run()
                        && let Err(e) = t.collect_ephemeral().await
                    {
                        tracing::warn!("ephemeral node clean-up failed (will retry): {e}");
                    }
                    let expired = t.expire_pending_registrations();
                    if expired > 0 {
                        tracing::info!(expired, "interactive registrations expired without a decision");
                    }
                    let expired = t.expire_ssh_checks();
                    if expired > 0 {
                        tracing::info!(expired, "SSH checks expired without a decision");
                    }
                }
            }
        }
    });
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(SOFT_STATE_FLUSH);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    if let Err(e) = tailnet.flush_soft_state().await {
                        tracing::warn!("saving node state failed (will retry): {e}");
                    }
                }
            }
        }
    });
}

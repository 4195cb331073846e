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

/// Probes high-availability subnet routers every `interval`
/// (`node.routes.ha.*`): each online router sharing a route with another
/// is asked to call back within `timeout`; see
/// `headway_state::tailnet::route_health`.
pub(crate) fn spawn_route_probes(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    tailnet: Arc<Tailnet>,
    interval: Duration,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    tracing::info!(?interval, ?timeout, "HA subnet router health probes on");
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => probe_routers(&tailnet, timeout).await,
            }
        }
    });
}

/// One round: every probe in parallel, then one decision for all, so the
/// election sees a single change. A router that reconnected during its
/// probe is left out of the round (its new session may not have the
/// request), as is one that went offline (going offline moves its routes
/// anyway).
async fn probe_routers(tailnet: &Tailnet, timeout: Duration) {
    let routers = tailnet.ha_routers().await;
    if routers.is_empty() {
        return;
    }
    let probes = routers.into_iter().filter_map(|id| tailnet.ping_node(id));
    let answers = probes.map(|ping| async move {
        let answered = tokio::time::timeout(timeout, ping.answered).await;
        let answered = matches!(answered, Ok(Ok(())));
        if !answered {
            tailnet.forget_ping(&ping.id);
        }
        let same_session = tailnet.session_id(ping.node) == Some(ping.session);
        same_session.then_some((ping.node, answered))
    });
    let results: Vec<(headway_state::model::NodeId, bool)> = futures::future::join_all(answers)
        .await
        .into_iter()
        .flatten()
        .collect();
    tracing::debug!(?results, "route health: probe round done");
    tailnet.set_router_health(&results).await;
}

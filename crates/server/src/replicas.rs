//! Several replicas on one PostgreSQL database: carries the tailnet's
//! changes between them over `LISTEN/NOTIFY`, keeps this replica's
//! heartbeat, takes the nodes of silent replicas offline, and holds the
//! singleton lock that lets exactly one replica run the singleton jobs.
//!
//! What the notices mean and how memory follows them is `headway-state`'s
//! (`Tailnet::reload_from_store`, `apply_remote_soft`, `forget_replica`);
//! the SQL is `headway-store`'s (`PgCluster`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use headway_state::Tailnet;
use headway_state::tailnet::{ChangeFeed, SoftState, peer_visible_hostinfo};
use headway_store::{ChangeNotice, PgCluster};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const HEARTBEAT: Duration = Duration::from_secs(2);
/// A replica silent this long is dead: its nodes go offline.
pub(crate) const SILENT_AFTER: Duration = Duration::from_secs(10);
const LEADER_RETRY: Duration = Duration::from_secs(2);
/// Notices arriving this close together cause one reload.
const COALESCE: Duration = Duration::from_millis(20);
const SOFT_QUEUE: usize = 8192;
/// Probe answers waiting to be passed on; beyond this they are dropped (the
/// probe then times out and is retried next round).
const PING_QUEUE: usize = 256;

/// Whether this process may run the singleton jobs now. Without a cluster
/// (SQLite) it always may.
#[derive(Debug, Clone, Default)]
pub(crate) struct Singleton(Option<Arc<AtomicBool>>);

impl Singleton {
    pub(crate) fn may_run(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f.load(Ordering::SeqCst))
    }
}

/// A random id per process start.
pub(crate) fn new_replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let n: u64 = rand::random();
    if host.is_empty() {
        format!("{n:016x}")
    } else {
        format!("{host}-{n:08x}", n = n as u32)
    }
}

/// The tailnet's hook to the other replicas: queues, never blocks.
#[derive(Debug)]
struct Feed {
    tx: mpsc::Sender<SoftState>,
    overflow: Arc<AtomicBool>,
    pings: mpsc::Sender<String>,
}

impl ChangeFeed for Feed {
    fn soft_changed(&self, state: SoftState) {
        if self.tx.try_send(state).is_err() {
            self.overflow.store(true, Ordering::SeqCst);
        }
    }

    fn ping_answered(&self, id: &str) {
        if self.pings.try_send(id.to_string()).is_err() {
            tracing::debug!("too many probe answers to pass on; dropping one");
        }
    }
}

enum Heard {
    Notice(ChangeNotice),
    /// The listening connection is (again) up: notices before it may be lost.
    Listening,
}

/// Starts the replica machinery; returns the singleton gate for the jobs.
pub(crate) fn spawn(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    tailnet: Arc<Tailnet>,
    cluster: PgCluster,
    shutdown: CancellationToken,
) -> Singleton {
    tracing::info!(
        replica = cluster.replica_id(),
        "running as one of several replicas (PostgreSQL change channel)"
    );
    let (soft_tx, soft_rx) = mpsc::channel(SOFT_QUEUE);
    let (ping_tx, ping_rx) = mpsc::channel(PING_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    tailnet.set_change_feed(Arc::new(Feed {
        tx: soft_tx,
        overflow: overflow.clone(),
        pings: ping_tx,
    }));
    tasks.spawn(pass_ping_answers(
        cluster.clone(),
        ping_rx,
        shutdown.clone(),
    ));
    tasks.spawn(publish(
        tailnet.clone(),
        cluster.clone(),
        soft_rx,
        overflow,
        shutdown.clone(),
    ));
    let (heard_tx, heard_rx) = mpsc::channel(SOFT_QUEUE);
    tasks.spawn(listen(cluster.clone(), heard_tx, shutdown.clone()));
    tasks.spawn(follow(
        tailnet.clone(),
        cluster.clone(),
        heard_rx,
        shutdown.clone(),
    ));
    tasks.spawn(heartbeat(tailnet, cluster.clone(), shutdown.clone()));
    let leader = Arc::new(AtomicBool::new(false));
    tasks.spawn(lead(cluster, leader.clone(), shutdown));
    Singleton(Some(leader))
}

/// Makes a soft-state notice fit in a NOTIFY. A large host info (long
/// service lists, NetInfo) is cut to what peers see, which carries the
/// announced routes; if even that is too big, it stays out and reaches the
/// others only when they reload everything.
fn fit_soft(notice: &mut ChangeNotice) {
    if notice.payload().is_some() {
        return;
    }
    if let ChangeNotice::Soft { state, .. } = notice {
        state.hostinfo = state.hostinfo.as_ref().map(peer_visible_hostinfo);
    }
    if notice.payload().is_some() {
        return;
    }
    if let ChangeNotice::Soft { state, .. } = notice {
        state.hostinfo = None;
    }
}

async fn send_soft(cluster: &PgCluster, state: SoftState) {
    let mut notice = ChangeNotice::Soft {
        origin: cluster.replica_id().to_string(),
        state: Box::new(state),
    };
    fit_soft(&mut notice);
    if let Err(e) = cluster.notify(&notice).await {
        tracing::warn!("publishing node state to the other replicas failed: {e}");
    }
}

/// Sends this replica's soft state changes, the latest per node.
async fn publish(
    tailnet: Arc<Tailnet>,
    cluster: PgCluster,
    mut rx: mpsc::Receiver<SoftState>,
    overflow: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = rx.recv() => match s { Some(s) => s, None => break },
        };
        let mut latest: HashMap<_, SoftState> = HashMap::new();
        latest.insert(first.node, first);
        while let Ok(s) = rx.try_recv() {
            latest.insert(s.node, s);
        }
        if overflow.swap(false, Ordering::SeqCst) {
            for s in tailnet.local_soft_states() {
                latest.insert(s.node, s);
            }
        }
        for (_, s) in latest {
            send_soft(&cluster, s).await;
        }
    }
    let _ = cluster
        .notify(&ChangeNotice::Goodbye {
            origin: cluster.replica_id().to_string(),
        })
        .await;
    let _ = cluster.remove_replica(cluster.replica_id()).await;
    Ok(())
}

/// Passes on probe answers that reached this replica for another one's
/// probe (the load balancer chose where the client's callback went).
async fn pass_ping_answers(
    cluster: PgCluster,
    mut rx: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let id = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            id = rx.recv() => match id { Some(id) => id, None => return Ok(()) },
        };
        let notice = ChangeNotice::PingAnswer {
            origin: cluster.replica_id().to_string(),
            id,
        };
        if let Err(e) = cluster.notify(&notice).await {
            tracing::warn!("passing a probe answer to the other replicas failed: {e}");
        }
    }
}

/// Owns the listening connection (never cancelled mid-read) and hands
/// what it hears to `follow`.
async fn listen(
    cluster: PgCluster,
    tx: mpsc::Sender<Heard>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = loop {
            match cluster.listen().await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(
                        "listening for the other replicas' changes failed (retrying): {e}"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        backoff = Duration::from_millis(200);
        if tx.send(Heard::Listening).await.is_err() {
            return Ok(());
        }
        loop {
            let r = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = listener.try_recv() => r,
            };
            match r {
                Ok(Some(n)) => match ChangeNotice::parse(&n) {
                    Ok(notice) if notice.origin() != cluster.replica_id() => {
                        if tx.send(Heard::Notice(notice)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("ignoring a change notice that does not parse: {e}"),
                },
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        "lost the change channel; reconnecting, then reloading everything"
                    );
                    break;
                }
            }
        }
    }
}

/// Applies what the other replicas announce.
async fn follow(
    tailnet: Arc<Tailnet>,
    cluster: PgCluster,
    mut rx: mpsc::Receiver<Heard>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut full = false;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            h = rx.recv() => match h { Some(h) => h, None => return Ok(()) },
        };
        let mut batch = vec![first];
        while let Ok(Some(h)) = tokio::time::timeout(COALESCE, rx.recv()).await {
            batch.push(h);
            if batch.len() >= 1024 {
                break;
            }
        }
        let mut reload = false;
        let mut hello = false;
        for h in batch {
            match h {
                Heard::Listening => {
                    full = true;
                    hello = true;
                }
                Heard::Notice(ChangeNotice::Rows { .. }) => reload = true,
                Heard::Notice(ChangeNotice::Soft { origin, state }) => {
                    tailnet.apply_remote_soft(&origin, *state).await;
                }
                Heard::Notice(ChangeNotice::Hello { origin }) => {
                    tracing::debug!(replica = %origin, "a replica asks for the nodes connected here");
                    for s in tailnet.local_soft_states() {
                        send_soft(&cluster, s).await;
                    }
                }
                Heard::Notice(ChangeNotice::PingAnswer { id, .. }) => {
                    tailnet.answer_forwarded_ping(&id);
                }
                Heard::Notice(ChangeNotice::Goodbye { origin }) => {
                    let n = tailnet.forget_replica(&origin).await;
                    tracing::info!(replica = %origin, offline = n, "a replica shut down");
                }
            }
        }
        if reload || full {
            match tailnet.reload_from_store(full).await {
                Ok(stats) => {
                    tracing::debug!(?stats, full, "reloaded changes made by other replicas");
                    if full {
                        forget_dead(&tailnet, &cluster).await;
                    }
                    full = false;
                }
                Err(e) => {
                    tracing::warn!(
                        "reloading changes from the database failed (will retry on the next notice): {e}"
                    );
                }
            }
        }
        if hello {
            // Ask the others for their connected nodes, and tell ours.
            let _ = cluster
                .notify(&ChangeNotice::Hello {
                    origin: cluster.replica_id().to_string(),
                })
                .await;
            for s in tailnet.local_soft_states() {
                send_soft(&cluster, s).await;
            }
        }
    }
}

/// After notices may have been lost: replicas whose goodbye this one
/// missed (their rows are gone) hold no nodes any more.
async fn forget_dead(tailnet: &Tailnet, cluster: &PgCluster) {
    match cluster.live_replicas().await {
        Ok(live) => {
            for id in tailnet.remote_replicas() {
                if !live.contains(&id) {
                    let n = tailnet.forget_replica(&id).await;
                    tracing::info!(replica = %id, offline = n, "a replica left while this one was not listening");
                }
            }
        }
        Err(e) => tracing::warn!("listing the live replicas failed: {e}"),
    }
}

/// Keeps this replica's row fresh and takes silent replicas' nodes offline.
async fn heartbeat(
    tailnet: Arc<Tailnet>,
    cluster: PgCluster,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut first = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        match cluster.heartbeat().await {
            Ok(true) if !first => {
                // The others took this replica for dead and took its nodes
                // offline: tell them again which nodes are connected here.
                tracing::warn!(
                    "this replica's heartbeat row was gone (it was silent too long); announcing its nodes again"
                );
                for s in tailnet.local_soft_states() {
                    send_soft(&cluster, s).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("replica heartbeat failed: {e}");
                continue;
            }
        }
        first = false;
        match cluster.reap_silent(SILENT_AFTER).await {
            Ok(silent) => {
                // Everyone (this replica too) hears the goodbye announced on
                // their behalf; forgetting here as well costs nothing.
                for id in silent {
                    let n = tailnet.forget_replica(&id).await;
                    tracing::warn!(replica = %id, offline = n, "a replica stopped answering; its nodes are offline until they reconnect");
                }
            }
            Err(e) => tracing::warn!("checking the other replicas failed: {e}"),
        }
    }
}

/// Holds the singleton lock when it can, and says so in `leader`.
async fn lead(
    cluster: PgCluster,
    leader: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut held: Option<headway_store::Leadership> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(LEADER_RETRY) => {}
        }
        match held.take() {
            Some(mut l) => {
                if l.still_held().await {
                    held = Some(l);
                } else {
                    leader.store(false, Ordering::SeqCst);
                    tracing::warn!(
                        "lost the singleton lock (database connection gone); another replica takes over"
                    );
                }
            }
            None => match cluster.try_lead().await {
                Ok(Some(l)) => {
                    tracing::info!(
                        "this replica runs the singleton jobs (ephemeral node clean-up)"
                    );
                    held = Some(l);
                    leader.store(true, Ordering::SeqCst);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("trying for the singleton lock failed: {e}"),
            },
        }
    }
    leader.store(false, Ordering::SeqCst);
    if let Some(l) = held {
        l.release().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use headway_proto::keys::DiscoPublic;
    use headway_proto::tailcfg::{Hostinfo, NetInfo};

    use super::*;

    fn notice(hostinfo: Hostinfo) -> ChangeNotice {
        ChangeNotice::Soft {
            origin: "replica-a".into(),
            state: Box::new(SoftState {
                node: 7,
                online: true,
                disco_key: DiscoPublic([1; 32]),
                endpoints: vec!["192.0.2.1:41641".parse().unwrap()],
                home_derp: 999,
                cap_version: 133,
                hostname: "box".into(),
                hostinfo: Some(hostinfo),
                last_seen: None,
            }),
        }
    }

    fn hostinfo_of(n: &ChangeNotice) -> Option<Hostinfo> {
        match n {
            ChangeNotice::Soft { state, .. } => state.hostinfo.clone(),
            _ => None,
        }
    }

    /// Announced routes must reach the other replicas even when the rest of
    /// the host info is too big for a NOTIFY.
    #[test]
    fn a_large_host_info_is_cut_to_what_peers_see() {
        let routes = vec!["10.1.0.0/24".parse().unwrap()];
        let small = Hostinfo {
            hostname: "box".into(),
            routable_ips: routes.clone(),
            ..Default::default()
        };
        let mut n = notice(small.clone());
        fit_soft(&mut n);
        assert_eq!(
            hostinfo_of(&n),
            Some(small.clone()),
            "a small one travels whole"
        );

        let mut latencies = std::collections::BTreeMap::new();
        for i in 0..1000 {
            latencies.insert(format!("{i}-v4"), 0.012_345);
        }
        let big = Hostinfo {
            net_info: Some(NetInfo {
                derp_latency: latencies,
                ..Default::default()
            }),
            ..small.clone()
        };
        let mut n = notice(big);
        assert!(
            n.payload().is_none(),
            "the test's host info must be too big"
        );
        fit_soft(&mut n);
        assert!(n.payload().is_some());
        let sent = hostinfo_of(&n).unwrap();
        assert_eq!(sent.routable_ips, routes);
        assert!(sent.net_info.is_none());

        // Even the peer-visible part too big: no host info, the rest travels.
        let huge = Hostinfo {
            hostname: "h".repeat(9000),
            ..small
        };
        let mut n = notice(huge);
        fit_soft(&mut n);
        assert!(n.payload().is_some());
        assert_eq!(hostinfo_of(&n), None);
    }
}

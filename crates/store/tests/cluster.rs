#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! Several replicas on one PostgreSQL database, without clients: the change
//! channel (a notice per committed transaction, none for a rolled-back one),
//! two tailnets following each other through it, the heartbeat table, and the
//! singleton lock passing from one replica to another.
//!
//! Needs PostgreSQL as the store suite does (`HEADWAY_TEST_POSTGRES_URL`,
//! or `HEADWAY_TEST_POSTGRES=off` to skip).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::model::*;
use headway_state::settings::Settings;
use headway_state::store::Store;
use headway_state::tailnet::{ChangeFeed, NewPreAuthKey, NewUser, ReloadStats, SoftState};
use headway_store::{ChangeNotice, PgCluster, SqlStore, Touched};
use sqlx::postgres::PgListener;

use common::PgDb;

/// Generous: the notices arrive in milliseconds; this only bounds a failure.
const WAIT: Duration = Duration::from_secs(10);

/// The next notice on the channel (panics after `WAIT`).
async fn next_notice(l: &mut PgListener) -> ChangeNotice {
    let n = tokio::time::timeout(WAIT, l.recv())
        .await
        .expect("no change notice within 10 s")
        .unwrap();
    ChangeNotice::parse(&n).unwrap()
}

async fn replica(opts: &headway_store::PostgresOptions, id: &str) -> (Arc<SqlStore>, PgCluster) {
    let mut store = SqlStore::open_postgres(opts).await.unwrap();
    let cluster = store.join_cluster(id.into()).unwrap();
    (Arc::new(store), cluster)
}

fn user(name: &str) -> User {
    User {
        id: 0,
        name: name.into(),
        display_name: String::new(),
        email: String::new(),
        provider: String::new(),
        provider_id: None,
        profile_pic_url: String::new(),
        created_at: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
    }
}

#[tokio::test]
async fn a_committed_transaction_is_announced_and_a_rolled_back_one_is_not() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let (a, a_cluster) = replica(&opts, "replica-a").await;
    let (_b, b_cluster) = replica(&opts, "replica-b").await;
    let mut heard = b_cluster.listen().await.unwrap();

    // Rolled back: nothing written, nothing said.
    let mut tx = a.begin().await.unwrap();
    tx.insert_user(&user("ghost")).await.unwrap();
    drop(tx);

    let mut tx = a.begin().await.unwrap();
    let id = tx.insert_user(&user("alice")).await.unwrap();
    tx.commit().await.unwrap();
    // The first notice heard is the commit's, naming the row.
    assert_eq!(
        next_notice(&mut heard).await,
        ChangeNotice::Rows {
            origin: "replica-a".into(),
            touched: Touched {
                users: [id].into(),
                ..Touched::default()
            },
        }
    );

    // Soft state travels outside transactions; a store that joined no
    // cluster announces nothing.
    let plain = SqlStore::open_postgres(&opts).await.unwrap();
    let mut tx = plain.begin().await.unwrap();
    tx.insert_user(&user("quiet")).await.unwrap();
    tx.commit().await.unwrap();
    let hello = ChangeNotice::Hello {
        origin: "replica-a".into(),
    };
    assert!(a_cluster.notify(&hello).await.unwrap());
    assert_eq!(next_notice(&mut heard).await, hello);
}

#[derive(Debug, Default)]
struct Collect(std::sync::Mutex<Vec<SoftState>>);
impl ChangeFeed for Collect {
    fn soft_changed(&self, state: SoftState) {
        self.0.lock().unwrap().push(state);
    }
}

/// Two tailnets on one database, B following A through the channel as the
/// server wiring does: a notice, then a reload that finds the change.
#[tokio::test]
async fn a_tailnet_follows_another_through_postgresql() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
    ));
    let (sa, ca) = replica(&opts, "a").await;
    let (sb, cb) = replica(&opts, "b").await;
    let a = Tailnet::load(sa as Arc<dyn Store>, clock.clone(), Settings::default())
        .await
        .unwrap();
    let b = Tailnet::load(sb as Arc<dyn Store>, clock, Settings::default())
        .await
        .unwrap();
    let mut heard = cb.listen().await.unwrap();
    let feed = Arc::new(Collect::default());
    a.set_change_feed(feed.clone());

    let u = a
        .create_user(NewUser {
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, key) = a
        .create_preauth_key(NewPreAuthKey {
            user: Some(u.id),
            reusable: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=2u8 {
        let req = RegisterRequest {
            version: 133,
            node_key: NodePublic([i; 32]),
            auth: Some(RegisterResponseAuth {
                auth_key: key.clone(),
                ..Default::default()
            }),
            hostinfo: Some(Hostinfo {
                hostname: format!("box{i}"),
                ..Default::default()
            }),
            ..Default::default()
        };
        a.register(MachinePublic([i; 32]), &req).await.unwrap();
    }
    // Each transaction was announced; the nodes' ids are in the notices.
    let mut announced_nodes = std::collections::BTreeSet::new();
    while announced_nodes.len() < 2 {
        if let ChangeNotice::Rows { origin, touched } = next_notice(&mut heard).await {
            assert_eq!(origin, "a");
            announced_nodes.extend(touched.nodes);
        }
    }
    let ids: std::collections::BTreeSet<NodeId> = a.nodes().iter().map(|n| n.id).collect();
    assert_eq!(announced_nodes, ids);

    let stats = b.reload_from_store(false).await.unwrap();
    assert_eq!((stats.nodes_changed, stats.users_changed), (2, 1));
    // PostgreSQL keeps microseconds: a second reload must find no change.
    assert_eq!(
        b.reload_from_store(false).await.unwrap(),
        ReloadStats::default()
    );

    // A policy stored through A is B's after the notice.
    let (n1, n2) = (a.nodes()[0].id, a.nodes()[1].id);
    let session = b.open_session(n2).await;
    session.take();
    a.set_policy(r#"{"acls":[{"action":"accept","src":["*"],"dst":["*:22"]}]}"#)
        .await
        .unwrap();
    assert!(matches!(
        next_notice(&mut heard).await,
        ChangeNotice::Rows { touched, .. } if touched.other
    ));
    assert!(b.reload_from_store(false).await.unwrap().policy_changed);
    assert!(b.policy_info().text.unwrap().contains("*:22"));
    let p = session.take();
    assert!(p.packet_filter || p.full, "{p:?}");

    // Node 1 comes online on A: its soft state, carried by NOTIFY, makes
    // it online on B.
    let _s1 = a.open_session(n1).await;
    let soft = feed.0.lock().unwrap().pop().unwrap();
    let notice = ChangeNotice::Soft {
        origin: "a".into(),
        state: Box::new(soft),
    };
    assert!(ca.notify(&notice).await.unwrap());
    let ChangeNotice::Soft { origin, state } = next_notice(&mut heard).await else {
        panic!("expected the soft state notice");
    };
    b.apply_remote_soft(&origin, *state).await;
    assert!(b.is_online(n1));
    assert_eq!(session.take().patches[&n1].online, Some(true));
}

/// Heartbeats by the database's clock; a silent replica's row goes with a
/// goodbye every replica hears, and the replica, if only slow, notices.
#[tokio::test]
async fn a_silent_replica_is_announced_gone_once_and_finds_out() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let (_a, a) = replica(&opts, "a").await;
    let (_b, b) = replica(&opts, "b").await;
    let (_c, c) = replica(&opts, "c").await;
    let mut heard_by_c = c.listen().await.unwrap();
    assert!(
        a.heartbeat().await.unwrap(),
        "the first heartbeat creates the row"
    );
    assert!(!a.heartbeat().await.unwrap(), "the next ones refresh it");
    b.heartbeat().await.unwrap();
    let mut live = b.live_replicas().await.unwrap();
    live.sort();
    assert_eq!(live, ["a", "b"]);

    // Not silent for an hour: nobody is reaped.
    assert!(
        b.reap_silent(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    // Silent "for zero seconds" (its row is older than this transaction):
    // B declares A dead, once; C, which noticed nothing, hears it.
    assert_eq!(b.reap_silent(Duration::ZERO).await.unwrap(), ["a"]);
    assert!(
        !c.reap_silent(Duration::ZERO)
            .await
            .unwrap()
            .contains(&"a".to_string())
    );
    assert_eq!(
        next_notice(&mut heard_by_c).await,
        ChangeNotice::Goodbye { origin: "a".into() }
    );
    // A was only slow: its next heartbeat finds its row gone.
    assert!(a.heartbeat().await.unwrap());
}

/// The singleton lock: one holder at a time; it passes on when the holder
/// lets go or loses its connection.
#[tokio::test]
async fn the_singleton_lock_passes_to_another_replica() {
    let Some((_db, opts)) = PgDb::create().await else {
        return;
    };
    let (_a, a) = replica(&opts, "a").await;
    let (_b, b) = replica(&opts, "b").await;
    let mut held_by_a = a.try_lead().await.unwrap().expect("A takes the lock");
    assert!(
        b.try_lead().await.unwrap().is_none(),
        "B must not hold it too"
    );
    assert!(held_by_a.still_held().await);

    // A lets go (clean shutdown): B takes it at once.
    held_by_a.release().await;
    let mut held_by_b = b.try_lead().await.unwrap().expect("B takes the lock");
    assert!(a.try_lead().await.unwrap().is_none());

    // B's connection dies (as when its host or PostgreSQL drops it): B
    // finds out and A can take over.
    let admin = common::pg_admin_url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    // This test's database only: other tests (and migrations) take advisory
    // locks in theirs at the same time.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1",
    )
    .bind(&opts.database)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(killed, [true]);
    assert!(!held_by_b.still_held().await);
    let start = tokio::time::Instant::now();
    loop {
        // The server releases the lock as the terminated backend exits.
        if a.try_lead().await.unwrap().is_some() {
            break;
        }
        assert!(start.elapsed() < WAIT, "the lock never came free");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

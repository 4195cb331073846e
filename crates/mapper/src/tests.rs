use std::sync::Arc;

use chrono::{TimeZone, Utc};
use headway_proto::keys::{MachinePublic, NodePublic};
use headway_proto::tailcfg::{Hostinfo, RegisterRequest, RegisterResponseAuth};
use headway_state::Tailnet;
use headway_state::clock::ManualClock;
use headway_state::memstore::MemStore;
use headway_state::settings::Settings;
use headway_state::tailnet::{NewPreAuthKey, NewUser};

use super::*;

async fn tailnet_with(n: u8) -> Arc<Tailnet> {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    ));
    let tn = Tailnet::load(Arc::new(MemStore::default()), clock, Settings::default())
        .await
        .unwrap();
    let u = tn
        .create_user(NewUser {
            name: "alice".into(),
            email: "alice@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, key) = tn
        .create_preauth_key(NewPreAuthKey {
            user: Some(u.id),
            reusable: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=n {
        let req = RegisterRequest {
            version: 133,
            node_key: NodePublic([i; 32]),
            auth: Some(RegisterResponseAuth {
                auth_key: key.clone(),
                ..Default::default()
            }),
            hostinfo: Some(Hostinfo {
                hostname: format!("node{i}"),
                os: "linux".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        tn.register(MachinePublic([i; 32]), &req).await.unwrap();
    }
    tn
}

#[tokio::test]
async fn full_map_has_everything_the_client_requires() {
    let tn = tailnet_with(3).await;
    let me = tn.node_by_key(&NodePublic([1; 32])).unwrap();
    let m = full_map(tn.as_ref(), &me, false);
    let node = m.node.as_ref().unwrap();
    assert_eq!(node.name, "node1.headway.internal.");
    assert!(node.machine_authorized);
    assert_eq!(node.addresses.len(), 2);
    assert_eq!(node.allowed_ips, node.addresses);
    assert!(node.cap_map.contains_key("https://tailscale.com/cap/ssh"));
    assert_eq!(m.peers.len(), 2);
    assert!(
        m.peers.windows(2).all(|w| w[0].id < w[1].id),
        "peers sorted by id"
    );
    assert!(
        m.peers
            .iter()
            .all(|p| p.machine_authorized && !p.addresses.is_empty())
    );
    assert!(m.packet_filter.is_some());
    assert!(m.dns_config.as_ref().unwrap().proxied);
    assert_eq!(
        m.dns_config.as_ref().unwrap().domains,
        vec!["headway.internal"]
    );
    assert_eq!(m.user_profiles.len(), 1);
    assert_eq!(m.user_profiles[0].login_name, "alice@example.com");
    assert!(m.debug.as_ref().unwrap().disable_log_tail);
    assert!(m.control_time.is_some());
    // The JSON carries the Go spellings and no deprecated fields.
    let v = serde_json::to_value(&m).unwrap();
    assert!(v["PacketFilter"][0]["SrcIPs"].is_array());
    assert!(v["Peers"][0].get("Hostinfo").is_some());
    assert!(
        v["Peers"][0]["Hostinfo"].get("NetInfo").is_none(),
        "peers get trimmed host info"
    );
}

#[tokio::test]
async fn deltas_carry_only_what_changed() {
    let tn = tailnet_with(2).await;
    let a = tn.node_by_key(&NodePublic([1; 32])).unwrap();
    let b = tn.node_by_key(&NodePublic([2; 32])).unwrap();
    let sb = tn.open_session(b.id).await;
    sb.take();
    let sa = tn.open_session(a.id).await;
    sa.start_initial_map();
    let m = delta(tn.as_ref(), &b, sb.take()).unwrap();
    assert_eq!(m.peers_changed_patch.len(), 1);
    assert_eq!(m.peers_changed_patch[0].online, Some(true));
    assert!(m.node.is_none() && m.peers.is_empty() && m.packet_filter.is_none());

    tn.rename_node(a.id, "web").await.unwrap();
    let m = delta(tn.as_ref(), &b, sb.take()).unwrap();
    assert_eq!(m.peers_changed.len(), 1);
    assert_eq!(m.peers_changed[0].name, "web.headway.internal.");
    let a_now = tn.node(a.id).unwrap();
    let m = delta(tn.as_ref(), &a_now, sa.take()).unwrap();
    assert_eq!(m.node.unwrap().name, "web.headway.internal.");

    tn.delete_node(a.id).await.unwrap();
    let m = delta(tn.as_ref(), &b, sb.take()).unwrap();
    assert_eq!(m.peers_removed, vec![a.id]);
    assert!(delta(tn.as_ref(), &b, sb.take()).is_none());
}

#[tokio::test]
async fn a_resync_to_no_peers_removes_them_explicitly() {
    let tn = tailnet_with(1).await;
    let me = tn.node_by_key(&NodePublic([1; 32])).unwrap();
    let m = full_map(tn.as_ref(), &me, true);
    assert!(m.peers.is_empty());
    assert!(m.peers_removed.is_empty(), "no other node exists");
    let tn = tailnet_with(2).await;
    let me = tn.node_by_key(&NodePublic([1; 32])).unwrap();
    // With allow-all every node is a peer, so nothing to remove either.
    assert!(full_map(tn.as_ref(), &me, true).peers_removed.is_empty());
}

#[tokio::test]
async fn full_map_json_is_the_full_map_and_follows_changes() {
    let tn = tailnet_with(3).await;
    let cache = PeerCache::default();
    let me = tn.node_by_key(&NodePublic([1; 32])).unwrap();
    let same = |resync: bool| {
        let json = full_map_json(tn.as_ref(), &me, resync, &cache).unwrap();
        let spliced: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let built = serde_json::to_value(full_map(tn.as_ref(), &me, resync)).unwrap();
        assert_eq!(spliced, built);
    };
    same(false);
    assert_eq!(cache.len(), 2, "one record per peer");
    same(false);
    // A changed peer is not served from its old record.
    let other = tn.node_by_key(&NodePublic([2; 32])).unwrap();
    tn.rename_node(other.id, "web").await.unwrap();
    same(true);
    let _s = tn.open_session(other.id).await;
    same(false);
    // A single node has no peers to splice in.
    let alone = tailnet_with(1).await;
    let me = alone.node_by_key(&NodePublic([1; 32])).unwrap();
    let json = full_map_json(alone.as_ref(), &me, true, &cache).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v,
        serde_json::to_value(full_map(alone.as_ref(), &me, true)).unwrap()
    );
}

#[tokio::test]
async fn viewers_that_see_a_change_alike_share_one_delta() {
    let tn = tailnet_with(3).await;
    let ids: Vec<_> = (1..=3u8)
        .map(|i| tn.node_by_key(&NodePublic([i; 32])).unwrap().id)
        .collect();
    let _sessions = open_sessions(&tn, &ids[1..]).await;
    tn.rename_node(ids[0], "web").await.unwrap();
    // What a join or a rename leaves in every peer's pending set.
    let mut one = Pending::default();
    one.peer_changed(ids[0]);
    let pending = [one.clone(), one];
    let b = tn.node(ids[1]).unwrap();
    let c = tn.node(ids[2]).unwrap();
    let ib = delta_inputs(tn.as_ref(), &b, &pending[0]).unwrap();
    let ic = delta_inputs(tn.as_ref(), &c, &pending[1]).unwrap();
    assert_eq!(ib, ic, "without a policy everyone sees the change alike");
    let shared = delta_from(tn.settings(), &ib).unwrap();
    assert_eq!(shared.peers_changed[0].name, "web.headway.internal.");
    assert_eq!(
        Some(&shared),
        delta(tn.as_ref(), &c, pending[1].clone()).as_ref()
    );

    let cache: DeltaCache<(), usize> = DeltaCache::new(4);
    let mut builds = 0;
    for inputs in [ib.clone(), ic] {
        cache
            .get_or_build::<()>(inputs, (), |_| {
                builds += 1;
                Ok(builds)
            })
            .unwrap();
    }
    assert_eq!(builds, 1, "the second viewer got the first one's message");
    // The same pending set after another change is other inputs.
    tn.rename_node(ids[0], "www").await.unwrap();
    let again = delta_inputs(tn.as_ref(), &b, &pending[0]).unwrap();
    assert_ne!(again, ib);
    // A pending set with viewer-specific parts is not shared.
    let mut own = pending[0].clone();
    own.self_changed = true;
    assert!(delta_inputs(tn.as_ref(), &b, &own).is_none());
}

async fn open_sessions(
    tn: &Arc<Tailnet>,
    ids: &[headway_state::model::NodeId],
) -> Vec<Arc<headway_state::sessions::Session>> {
    let mut out = Vec::new();
    for id in ids {
        let s = tn.open_session(*id).await;
        // As the server does right before it builds the first map.
        s.start_initial_map();
        out.push(s);
    }
    out
}

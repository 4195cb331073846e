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

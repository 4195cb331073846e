use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use headway_proto::keys::{DiscoPublic, MachinePublic, NodePublic};
use headway_proto::tailcfg::{
    Hostinfo, MapRequest, NetInfo, RegisterRequest, RegisterResponseAuth,
};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::memstore::MemStore;
use crate::model::RegisterMethod;
use crate::settings::Settings;

struct Kit {
    tailnet: Arc<Tailnet>,
    store: MemStore,
    clock: Arc<ManualClock>,
}

async fn kit() -> Kit {
    kit_with(Settings::default()).await
}

async fn kit_with(settings: Settings) -> Kit {
    let store = MemStore::default();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    ));
    let tailnet = Tailnet::load(Arc::new(store.clone()), clock.clone(), settings)
        .await
        .unwrap();
    Kit {
        tailnet,
        store,
        clock,
    }
}

fn mk(n: u8) -> MachinePublic {
    MachinePublic([n; 32])
}
fn nk(n: u8) -> NodePublic {
    NodePublic([n; 32])
}

fn req(node_key: NodePublic, key: &str, host: &str) -> RegisterRequest {
    RegisterRequest {
        version: 133,
        node_key,
        auth: Some(RegisterResponseAuth {
            auth_key: key.into(),
            ..Default::default()
        }),
        hostinfo: Some(Hostinfo {
            hostname: host.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn user_and_key(k: &Kit, reusable: bool) -> (crate::model::User, String) {
    let user = k
        .tailnet
        .create_user(NewUser {
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, key) = k
        .tailnet
        .create_preauth_key(NewPreAuthKey {
            user: Some(user.id),
            reusable,
            ..Default::default()
        })
        .await
        .unwrap();
    (user, key)
}

#[tokio::test]
async fn registers_with_a_key_and_allocates_addresses_and_names() {
    let k = kit().await;
    let (user, key) = user_and_key(&k, true).await;
    let (resp, outcome) = k
        .tailnet
        .register(mk(1), &req(nk(1), &key, "My Laptop"))
        .await
        .unwrap();
    assert_eq!(outcome, RegisterOutcome::Created);
    assert!(resp.machine_authorized, "{resp:?}");
    assert!(resp.error.is_empty());
    assert_eq!(resp.user.id, user.id);
    assert_eq!(resp.login.login_name, "alice@");
    let (_, outcome) = k
        .tailnet
        .register(mk(2), &req(nk(2), &key, "my-laptop"))
        .await
        .unwrap();
    assert_eq!(outcome, RegisterOutcome::Created);
    let nodes = k.tailnet.list_nodes(None);
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].given_name, "my-laptop");
    assert_eq!(nodes[1].given_name, "my-laptop-1");
    assert_eq!(nodes[0].ipv4.unwrap().to_string(), "100.64.0.1");
    assert_eq!(nodes[1].ipv4.unwrap().to_string(), "100.64.0.2");
    assert_eq!(nodes[1].ipv6.unwrap().to_string(), "fd7a:115c:a1e0::2");
    assert_eq!(k.store.node_count(), 2);
}

#[tokio::test]
async fn single_use_key_refused_for_a_second_machine_but_not_for_a_refresh() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, false).await;
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    let (resp, outcome) = k
        .tailnet
        .register(mk(2), &req(nk(2), &key, "b"))
        .await
        .unwrap();
    assert_eq!(outcome, RegisterOutcome::Refused);
    assert!(resp.error.contains("already used"), "{}", resp.error);
    // The same machine and node key re-sending the key: a refresh, not a refusal.
    let (resp, outcome) = k
        .tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    assert_eq!(outcome, RegisterOutcome::Reauthorized);
    assert!(resp.error.is_empty(), "{}", resp.error);
    assert_eq!(k.tailnet.list_nodes(None).len(), 1);
}

#[tokio::test]
async fn bad_expired_and_malformed_keys_are_refused_with_messages_and_change_nothing() {
    let k = kit().await;
    let (user, _) = user_and_key(&k, true).await;
    let (short, key) = k
        .tailnet
        .create_preauth_key(NewPreAuthKey {
            user: Some(user.id),
            reusable: true,
            expiration: Some(k.clock.now() + Duration::hours(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    k.clock.advance(Duration::hours(2));
    let (resp, _) = k
        .tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    assert!(resp.error.contains("expired"), "{}", resp.error);
    for junk in ["nonsense", "hskey-auth-000000000000-0000"] {
        let (resp, _) = k
            .tailnet
            .register(mk(1), &req(nk(1), junk, "a"))
            .await
            .unwrap();
        assert!(!resp.error.is_empty());
    }
    // An empty key is no key: the interactive flow, not a refusal.
    let (resp, _) = k
        .tailnet
        .register(mk(1), &req(nk(1), "", "a"))
        .await
        .unwrap();
    assert!(
        resp.error.is_empty() && !resp.auth_url.is_empty(),
        "{resp:?}"
    );
    // Right prefix, wrong secret.
    let forged = format!("hskey-auth-{}-{}", short.prefix, "0".repeat(64));
    let (resp, _) = k
        .tailnet
        .register(mk(1), &req(nk(1), &forged, "a"))
        .await
        .unwrap();
    assert!(resp.error.contains("invalid auth key"), "{}", resp.error);
    assert!(k.tailnet.list_nodes(None).is_empty());
    assert_eq!(k.store.node_count(), 0);
}

#[tokio::test]
async fn node_key_from_another_machine_is_unauthorized() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    let err = k
        .tailnet
        .register(mk(9), &req(nk(1), &key, "evil"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Unauthorized);
    let restart = RegisterRequest {
        version: 133,
        node_key: nk(1),
        ..Default::default()
    };
    assert!(k.tailnet.register(mk(9), &restart).await.is_err());
    let map = MapRequest {
        version: 133,
        node_key: nk(1),
        ..Default::default()
    };
    assert!(k.tailnet.apply_map_request(mk(9), &map).await.is_err());
}

#[tokio::test]
async fn restart_refresh_logout_and_relogin_keep_the_node() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    let id = k.tailnet.list_nodes(None)[0].id;
    let ip = k.tailnet.list_nodes(None)[0].ipv4;

    let restart = RegisterRequest {
        version: 133,
        node_key: nk(1),
        ..Default::default()
    };
    let (resp, outcome) = k.tailnet.register(mk(1), &restart).await.unwrap();
    assert_eq!(outcome, RegisterOutcome::Refreshed);
    assert!(resp.machine_authorized);

    let logout = RegisterRequest {
        version: 133,
        node_key: nk(1),
        expiry: Some(Utc.timestamp_opt(123, 0).unwrap()),
        ..Default::default()
    };
    let (_, outcome) = k.tailnet.register(mk(1), &logout).await.unwrap();
    assert_eq!(outcome, RegisterOutcome::LoggedOut);
    let node = k.tailnet.get_node(id).unwrap();
    assert_eq!(node.expiry, Some(k.clock.now()), "stores now, not 1970");
    // The expired node must log in again; without a key it is told so.
    let (resp, _) = k.tailnet.register(mk(1), &restart).await.unwrap();
    assert!(resp.node_key_expired);
    // Logging in again (new node key, old one named) keeps id and address.
    let mut again = req(nk(2), &key, "a");
    again.old_node_key = nk(1);
    let (resp, outcome) = k.tailnet.register(mk(1), &again).await.unwrap();
    assert_eq!(outcome, RegisterOutcome::Reauthorized);
    assert!(!resp.node_key_expired);
    let node = k.tailnet.get_node(id).unwrap();
    assert_eq!(node.node_key, nk(2));
    assert_eq!(node.ipv4, ip);
    assert!(node.expiry.is_none());
    assert!(k.tailnet.node_by_key(&nk(1)).is_none());
}

#[tokio::test]
async fn ephemeral_nodes_go_at_logout_and_after_inactivity() {
    let k = kit_with(Settings {
        ephemeral_inactivity_timeout: std::time::Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let user = k
        .tailnet
        .create_user(NewUser {
            name: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, key) = k
        .tailnet
        .create_preauth_key(NewPreAuthKey {
            user: Some(user.id),
            reusable: true,
            ephemeral: true,
            ..Default::default()
        })
        .await
        .unwrap();
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "e1"))
        .await
        .unwrap();
    k.tailnet
        .register(mk(2), &req(nk(2), &key, "e2"))
        .await
        .unwrap();
    let ids: Vec<_> = k.tailnet.list_nodes(None).iter().map(|n| n.id).collect();
    assert!(k.tailnet.list_nodes(None).iter().all(|n| n.ephemeral));

    // Logout deletes at once.
    let logout = RegisterRequest {
        version: 133,
        node_key: nk(1),
        expiry: Some(Utc.timestamp_opt(123, 0).unwrap()),
        ..Default::default()
    };
    k.tailnet.register(mk(1), &logout).await.unwrap();
    assert!(k.tailnet.node(ids[0]).is_none());

    // Online nodes stay; offline ones go after the timeout, not before.
    let s = k.tailnet.open_session(ids[1]).await;
    k.clock.advance(Duration::minutes(10));
    assert!(k.tailnet.collect_ephemeral().await.unwrap().is_empty());
    k.tailnet.close_session(&s).await;
    k.clock.advance(Duration::seconds(30));
    assert!(k.tailnet.collect_ephemeral().await.unwrap().is_empty());
    k.clock.advance(Duration::seconds(31));
    assert_eq!(k.tailnet.collect_ephemeral().await.unwrap(), vec![ids[1]]);
    assert_eq!(k.store.node_count(), 0);
}

#[tokio::test]
async fn map_updates_reach_peers_as_patches_and_repeats_reach_nobody() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    k.tailnet
        .register(mk(2), &req(nk(2), &key, "b"))
        .await
        .unwrap();
    let a = k.tailnet.node_by_key(&nk(1)).unwrap();
    let b = k.tailnet.node_by_key(&nk(2)).unwrap();
    let sb = k.tailnet.open_session(b.id).await;
    sb.start_initial_map();
    let sa = k.tailnet.open_session(a.id).await;
    sa.start_initial_map();
    // b saw a come online.
    assert_eq!(sb.take().patches[&a.id].online, Some(true));

    let lite = MapRequest {
        version: 133,
        node_key: nk(1),
        disco_key: DiscoPublic([7; 32]),
        endpoints: vec!["192.0.2.1:41641".parse().unwrap()],
        hostinfo: Some(Hostinfo {
            hostname: "a".into(),
            net_info: Some(NetInfo {
                preferred_derp: 999,
                ..Default::default()
            }),
            ..Default::default()
        }),
        omit_peers: true,
        ..Default::default()
    };
    k.tailnet.apply_map_request(mk(1), &lite).await.unwrap();
    let p = sb.take();
    let patch = &p.patches[&a.id];
    assert_eq!(patch.derp_region, 999);
    assert_eq!(patch.disco_key, Some(DiscoPublic([7; 32])));
    assert_eq!(patch.endpoints.as_ref().unwrap().len(), 1);
    assert!(p.peers_changed.is_empty());
    assert!(sa.take().is_empty(), "a is not told about itself");

    // The same again: nothing for anyone.
    k.tailnet.apply_map_request(mk(1), &lite).await.unwrap();
    assert!(sb.take().is_empty());

    // NetInfo noise (latency) without a DERP change: nothing either.
    let mut noisy = lite.clone();
    noisy
        .hostinfo
        .as_mut()
        .unwrap()
        .net_info
        .as_mut()
        .unwrap()
        .derp_latency
        .insert("999-v4".into(), 0.01);
    k.tailnet.apply_map_request(mk(1), &noisy).await.unwrap();
    assert!(sb.take().is_empty());

    // A peer-visible host info change: a full object.
    let mut renamed = lite.clone();
    renamed.hostinfo.as_mut().unwrap().os = "linux".into();
    k.tailnet.apply_map_request(mk(1), &renamed).await.unwrap();
    assert!(sb.take().peers_changed.contains(&a.id));

    k.tailnet.close_session(&sa).await;
    let p = sb.take();
    assert_eq!(p.patches[&a.id].online, Some(false));
    assert!(p.patches[&a.id].last_seen.is_some());
}

#[tokio::test]
async fn admin_changes_reach_peers_and_the_node_itself() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    k.tailnet
        .register(mk(2), &req(nk(2), &key, "b"))
        .await
        .unwrap();
    let a = k.tailnet.node_by_key(&nk(1)).unwrap();
    let b = k.tailnet.node_by_key(&nk(2)).unwrap();
    let sa = k.tailnet.open_session(a.id).await;
    let sb = k.tailnet.open_session(b.id).await;
    sa.take();
    sb.take();

    let err = k.tailnet.rename_node(a.id, "b").await.unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Conflict);
    assert!(k.tailnet.rename_node(a.id, "Bad Name").await.is_err());
    k.tailnet.rename_node(a.id, "web").await.unwrap();
    assert!(sa.take().self_changed);
    assert!(sb.take().peers_changed.contains(&a.id));
    assert_eq!(k.tailnet.get_node(a.id).unwrap().given_name, "web");

    k.tailnet.delete_node(a.id).await.unwrap();
    assert!(sa.is_closed());
    assert!(sb.take().peers_removed.contains(&a.id));
    // Its name and address are free again.
    k.tailnet.rename_node(b.id, "web").await.unwrap();
}

#[tokio::test]
async fn a_failed_commit_changes_nothing_in_memory() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    k.store.fail_commits(true);
    assert!(
        k.tailnet
            .register(mk(1), &req(nk(1), &key, "a"))
            .await
            .is_err()
    );
    assert!(
        k.tailnet
            .create_user(NewUser {
                name: "carol".into(),
                ..Default::default()
            })
            .await
            .is_err()
    );
    k.store.fail_commits(false);
    assert!(k.tailnet.list_nodes(None).is_empty());
    assert!(k.tailnet.resolve_user("carol").is_err());
    // The address that was briefly taken was given back.
    assert!(
        !k.tailnet
            .inner
            .read()
            .ipalloc
            .is_used("100.64.0.1".parse().unwrap())
    );
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    assert_eq!(k.tailnet.list_nodes(None).len(), 1);
}

#[tokio::test]
async fn users_validate_names_and_refuse_deletion_while_owning_nodes() {
    let k = kit().await;
    for bad in ["", "with space", "two@@at", "123", "-x"] {
        assert!(
            k.tailnet
                .create_user(NewUser {
                    name: bad.into(),
                    ..Default::default()
                })
                .await
                .is_err(),
            "{bad}"
        );
    }
    let (user, key) = user_and_key(&k, true).await;
    assert!(
        k.tailnet
            .create_user(NewUser {
                name: "alice".into(),
                ..Default::default()
            })
            .await
            .is_err()
    );
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    let err = k.tailnet.delete_user(user.id).await.unwrap_err();
    assert!(err.to_string().contains("still owns 1 node"), "{err}");
    let id = k.tailnet.list_nodes(None)[0].id;
    k.tailnet.delete_node(id).await.unwrap();
    k.tailnet.delete_user(user.id).await.unwrap();
    assert!(k.tailnet.list_preauth_keys(None).is_empty());
    assert_eq!(
        k.tailnet
            .resolve_user(&user.id.to_string())
            .unwrap_err()
            .kind(),
        crate::error::ErrorKind::NotFound
    );
}

#[tokio::test]
async fn tagged_keys_make_tagged_nodes_without_expiry() {
    let k = kit_with(Settings {
        node_expiry: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    })
    .await;
    let (_, key) = k
        .tailnet
        .create_preauth_key(NewPreAuthKey {
            tags: vec!["tag:server".into()],
            reusable: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let (resp, _) = k
        .tailnet
        .register(mk(1), &req(nk(1), &key, "srv"))
        .await
        .unwrap();
    assert_eq!(resp.user.id, crate::model::TAGGED_DEVICES_USER_ID);
    let n = k.tailnet.node_by_key(&nk(1)).unwrap();
    assert_eq!(n.tags, vec!["tag:server"]);
    assert!(n.expiry.is_none());
    assert!(
        k.tailnet
            .create_preauth_key(NewPreAuthKey {
                tags: vec!["server".into()],
                ..Default::default()
            })
            .await
            .is_err()
    );
    assert!(
        k.tailnet
            .create_preauth_key(NewPreAuthKey::default())
            .await
            .is_err()
    );
    // A user node gets the default expiry.
    let (_, ukey) = {
        let u = k
            .tailnet
            .create_user(NewUser {
                name: "dave".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        k.tailnet
            .create_preauth_key(NewPreAuthKey {
                user: Some(u.id),
                ..Default::default()
            })
            .await
            .unwrap()
    };
    k.tailnet
        .register(mk(2), &req(nk(2), &ukey, "laptop"))
        .await
        .unwrap();
    let n = k.tailnet.node_by_key(&nk(2)).unwrap();
    assert_eq!(n.expiry, Some(k.clock.now() + Duration::hours(1)));
}

#[tokio::test]
async fn reload_from_store_keeps_nodes_addresses_and_keys() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "a"))
        .await
        .unwrap();
    let before = k.tailnet.list_nodes(None);
    let again = Tailnet::load(
        Arc::new(k.store.clone()),
        k.clock.clone(),
        Settings::default(),
    )
    .await
    .unwrap();
    let after = again.list_nodes(None);
    assert_eq!(before.len(), after.len());
    assert_eq!(*before[0], *after[0]);
    // The key still works and the next address is not the one in use.
    again.register(mk(2), &req(nk(2), &key, "b")).await.unwrap();
    assert_eq!(
        again.node_by_key(&nk(2)).unwrap().ipv4.unwrap().to_string(),
        "100.64.0.2"
    );
}

#[tokio::test]
async fn old_clients_are_refused_with_a_clear_message() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    let mut r = req(nk(1), &key, "a");
    r.version = 90;
    let (resp, outcome) = k.tailnet.register(mk(1), &r).await.unwrap();
    assert_eq!(outcome, RegisterOutcome::Refused);
    assert!(resp.error.contains("1.78"), "{}", resp.error);
}

fn interactive(node_key: NodePublic, host: &str) -> RegisterRequest {
    RegisterRequest {
        version: 133,
        node_key,
        hostinfo: Some(Hostinfo {
            hostname: host.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn interactive_registration_waits_for_an_admin_and_then_proceeds() {
    let k = kit().await;
    let user = k
        .tailnet
        .create_user(NewUser {
            name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (resp, outcome) = k
        .tailnet
        .register(mk(1), &interactive(nk(1), "laptop"))
        .await
        .unwrap();
    assert_eq!(outcome, RegisterOutcome::NeedsLogin);
    assert!(
        resp.auth_url.starts_with("http://127.0.0.1:8080/register/"),
        "{}",
        resp.auth_url
    );
    let id = resp.auth_url.rsplit('/').next().unwrap().to_string();
    assert_eq!(k.tailnet.pending_registrations()[0].hostname, "laptop");

    // The client waits on the URL…
    let mut follow = interactive(nk(1), "laptop");
    follow.followup = resp.auth_url.clone();
    let t = k.tailnet.clone();
    let waiter = tokio::spawn(async move { t.register(mk(1), &follow).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "must wait for a decision");
    // …an unknown id or another machine cannot approve or hijack it…
    assert!(
        k.tailnet
            .approve_registration("nope", user.id, RegisterMethod::Cli)
            .await
            .is_err()
    );
    let mut other = interactive(nk(9), "evil");
    other.followup = resp.auth_url.clone();
    let (r, _) = k.tailnet.register(mk(9), &other).await.unwrap();
    assert_ne!(
        r.auth_url, resp.auth_url,
        "another machine gets its own link, not this one"
    );
    // …until the admin approves: the same request completes by itself.
    let node = k
        .tailnet
        .approve_registration(&id, user.id, RegisterMethod::Cli)
        .await
        .unwrap();
    let (resp, _) = tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(resp.machine_authorized && resp.error.is_empty(), "{resp:?}");
    assert_eq!(resp.user.id, user.id);
    assert_eq!(node.register_method, RegisterMethod::Cli);
    assert_eq!(k.tailnet.node_by_key(&nk(1)).unwrap().given_name, "laptop");
    assert!(
        k.tailnet.pending_registration(&id).is_err(),
        "decided registrations are gone"
    );
}

#[tokio::test]
async fn rejected_and_expired_registrations() {
    let k = kit().await;
    let (resp, _) = k
        .tailnet
        .register(mk(1), &interactive(nk(1), "x"))
        .await
        .unwrap();
    let id = resp.auth_url.rsplit('/').next().unwrap().to_string();
    let mut follow = interactive(nk(1), "x");
    follow.followup = resp.auth_url.clone();
    let t = k.tailnet.clone();
    let f2 = follow.clone();
    let waiter = tokio::spawn(async move { t.register(mk(1), &f2).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    k.tailnet.reject_registration(&id, "not today").unwrap();
    let (resp, outcome) = waiter.await.unwrap();
    assert_eq!(outcome, RegisterOutcome::Refused);
    assert_eq!(resp.error, "not today");
    assert!(k.tailnet.list_nodes(None).is_empty());

    // An expired one: the client's next follow-up gets a fresh link.
    let (resp, _) = k
        .tailnet
        .register(mk(2), &interactive(nk(2), "y"))
        .await
        .unwrap();
    k.clock.advance(Duration::minutes(16));
    assert_eq!(k.tailnet.expire_pending_registrations(), 1);
    let mut follow = interactive(nk(2), "y");
    follow.followup = resp.auth_url.clone();
    let (again, outcome) = k.tailnet.register(mk(2), &follow).await.unwrap();
    assert_eq!(outcome, RegisterOutcome::NeedsLogin);
    assert!(!again.auth_url.is_empty() && again.auth_url != resp.auth_url);
}

#[tokio::test]
async fn an_expired_node_reauthenticates_interactively_and_keeps_its_address() {
    let k = kit().await;
    let (user, key) = user_and_key(&k, true).await;
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "box"))
        .await
        .unwrap();
    let before = k.tailnet.node_by_key(&nk(1)).unwrap();
    k.tailnet.expire_node(before.id, None).await.unwrap();
    // New node key, naming the old one, no auth key: interactive.
    let mut r = interactive(nk(2), "box");
    r.old_node_key = nk(1);
    let (resp, _) = k.tailnet.register(mk(1), &r).await.unwrap();
    let id = resp.auth_url.rsplit('/').next().unwrap().to_string();
    let node = k
        .tailnet
        .approve_registration(&id, user.id, RegisterMethod::Cli)
        .await
        .unwrap();
    assert_eq!(node.id, before.id);
    assert_eq!(node.ipv4, before.ipv4);
    assert_eq!(node.given_name, before.given_name);
    assert_eq!(node.node_key, nk(2));
    assert!(!node.is_expired(k.clock.now()));
}

fn announce(node_key: NodePublic, routes: &[&str]) -> MapRequest {
    MapRequest {
        version: 133,
        node_key,
        omit_peers: true,
        hostinfo: Some(Hostinfo {
            hostname: "r".into(),
            routable_ips: routes.iter().map(|r| r.parse().unwrap()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn routes_are_pending_until_approved_then_reach_peers_and_fail_over() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    for i in 1..=3u8 {
        k.tailnet
            .register(mk(i), &req(nk(i), &key, &format!("n{i}")))
            .await
            .unwrap();
    }
    let r1 = k.tailnet.node_by_key(&nk(1)).unwrap();
    let r2 = k.tailnet.node_by_key(&nk(2)).unwrap();
    let client = k.tailnet.node_by_key(&nk(3)).unwrap();
    let _s1 = k.tailnet.open_session(r1.id).await;
    let s2 = k.tailnet.open_session(r2.id).await;
    let sc = k.tailnet.open_session(client.id).await;
    sc.take();

    k.tailnet
        .apply_map_request(mk(1), &announce(nk(1), &["10.1.0.0/24"]))
        .await
        .unwrap();
    let routes = k.tailnet.node_routes(r1.id).unwrap();
    assert_eq!(routes.announced.len(), 1);
    assert!(
        routes.approved.is_empty() && routes.serving.is_empty(),
        "pending until approved"
    );
    let view = k.tailnet.access().peer_routes(client.id, r1.id).unwrap();
    assert_eq!(view.allowed_ips.len(), 2, "only its addresses: {view:?}");

    k.tailnet
        .approve_routes(r1.id, &["10.1.0.0/24".into()])
        .await
        .unwrap();
    let view = k.tailnet.access().peer_routes(client.id, r1.id).unwrap();
    assert!(
        view.allowed_ips
            .iter()
            .any(|r| r.to_string() == "10.1.0.0/24"),
        "{view:?}"
    );
    assert_eq!(view.primary_routes.len(), 1);
    assert!(
        sc.take().peers_changed.contains(&r1.id),
        "the client hears of the route"
    );

    // A second router for the same prefix: the first stays primary.
    k.tailnet
        .apply_map_request(mk(2), &announce(nk(2), &["10.1.0.0/24"]))
        .await
        .unwrap();
    k.tailnet
        .approve_routes(r2.id, &["10.1.0.0/24".into()])
        .await
        .unwrap();
    assert_eq!(k.tailnet.node_routes(r1.id).unwrap().primary.len(), 1);
    assert!(k.tailnet.node_routes(r2.id).unwrap().primary.is_empty());
    sc.take();

    // The primary goes offline: the other takes over, and the client is told about both.
    let s1 = k.tailnet.sessions().get(r1.id).unwrap();
    k.tailnet.close_session(&s1).await;
    assert!(k.tailnet.node_routes(r1.id).unwrap().primary.is_empty());
    assert_eq!(k.tailnet.node_routes(r2.id).unwrap().primary.len(), 1);
    let p = sc.take();
    assert!(
        p.peers_changed.contains(&r1.id) && p.peers_changed.contains(&r2.id),
        "{p:?}"
    );
    let view = k.tailnet.access().peer_routes(client.id, r2.id).unwrap();
    assert_eq!(view.primary_routes.len(), 1);
    // It comes back: no flapping, the standby stays primary.
    let _s1 = k.tailnet.open_session(r1.id).await;
    assert!(
        k.tailnet.node_routes(r1.id).unwrap().primary.is_empty(),
        "no flapping back"
    );
    assert_eq!(k.tailnet.node_routes(r2.id).unwrap().primary.len(), 1);
    drop(s2);

    // Withdrawing the approval removes the route from the client's view.
    k.tailnet.approve_routes(r2.id, &[]).await.unwrap();
    let view = k.tailnet.access().peer_routes(client.id, r2.id).unwrap();
    assert_eq!(view.allowed_ips.len(), 2, "{view:?}");
}

#[tokio::test]
async fn routers_that_fail_probes_lose_their_routes_but_never_the_last_router() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    for i in 1..=4u8 {
        k.tailnet
            .register(mk(i), &req(nk(i), &key, &format!("n{i}")))
            .await
            .unwrap();
    }
    let id = |i: u8| k.tailnet.node_by_key(&nk(i)).unwrap().id;
    let (r1, r2, lone, client) = (id(1), id(2), id(3), id(4));
    let mut sessions = Vec::new();
    for n in [r1, r2, lone, client] {
        sessions.push(k.tailnet.open_session(n).await);
    }
    for (i, route) in [(1u8, "10.1.0.0/24"), (2, "10.1.0.0/24"), (3, "10.2.0.0/24")] {
        k.tailnet
            .apply_map_request(mk(i), &announce(nk(i), &[route]))
            .await
            .unwrap();
        k.tailnet
            .approve_routes(id(i), &[route.into()])
            .await
            .unwrap();
    }
    let primary = |n| k.tailnet.node_routes(n).unwrap().primary.len() == 1;
    assert!(primary(r1) && !primary(r2) && primary(lone));

    // Only routers sharing a route are probed; a probe goes out on the
    // router's map stream and its answer is taken once.
    assert_eq!(k.tailnet.ha_routers().await, vec![r1, r2]);
    let ping = k.tailnet.ping_node(r1).unwrap();
    let sent = sessions[0]
        .take_ping()
        .expect("the probe is on r1's session");
    let ping_id = sent.url.rsplit("id=").next().unwrap().to_string();
    assert!(
        sent.url
            .starts_with("http://127.0.0.1:8080/machine/ping-response?id=")
    );
    assert_eq!(ping_id, ping.id);
    assert!(!k.tailnet.answer_ping("not-a-ping"));
    assert!(k.tailnet.answer_ping(&ping_id));
    assert!(!k.tailnet.answer_ping(&ping_id), "answered once");
    ping.answered.await.unwrap();

    // r1 fails its probe: the route moves to r2 and the client hears of it.
    let sc = &sessions[3];
    sc.take();
    let changed = k
        .tailnet
        .set_router_health(&[(r1, false), (r2, true)])
        .await;
    assert_eq!(changed, vec![r1]);
    assert!(!primary(r1) && primary(r2));
    let p = sc.take();
    assert!(
        p.peers_changed.contains(&r1) && p.peers_changed.contains(&r2),
        "{p:?}"
    );
    assert!(
        k.tailnet.is_online(r1),
        "a failed probe is not a disconnection"
    );

    // r2 fails too: it is the route's last healthy router, so it keeps it.
    assert!(k.tailnet.set_router_health(&[(r2, false)]).await.is_empty());
    assert!(primary(r2));
    // r1 answers again: healthy, and the route stays with r2 (no flapping).
    assert_eq!(k.tailnet.set_router_health(&[(r1, true)]).await, vec![r1]);
    assert!(!primary(r1) && primary(r2));
    assert!(k.tailnet.unhealthy_routers().is_empty());

    // A marked router that stops sharing its route loses its mark.
    k.tailnet.set_router_health(&[(r1, false)]).await;
    assert_eq!(k.tailnet.unhealthy_routers(), vec![r1]);
    k.tailnet.approve_routes(r2, &[]).await.unwrap();
    assert!(k.tailnet.ha_routers().await.is_empty());
    assert!(k.tailnet.unhealthy_routers().is_empty());
    assert!(primary(r1), "the only router serves its route again");
}

#[tokio::test]
async fn auto_approvers_approve_announced_routes_and_exit_nodes() {
    let k = kit().await;
    let (_, key) = user_and_key(&k, true).await;
    k.tailnet
        .set_policy(
            r#"{
              "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
              "autoApprovers": {"routes": {"10.0.0.0/8": ["alice@"]}, "exitNode": ["alice@"]},
            }"#,
        )
        .await
        .unwrap();
    k.tailnet
        .register(mk(1), &req(nk(1), &key, "router"))
        .await
        .unwrap();
    k.tailnet
        .register(mk(2), &req(nk(2), &key, "client"))
        .await
        .unwrap();
    let router = k.tailnet.node_by_key(&nk(1)).unwrap();
    let client = k.tailnet.node_by_key(&nk(2)).unwrap();
    k.tailnet
        .apply_map_request(
            mk(1),
            &announce(
                nk(1),
                &["10.2.0.0/16", "192.168.7.0/24", "0.0.0.0/0", "::/0"],
            ),
        )
        .await
        .unwrap();
    let routes = k.tailnet.node_routes(router.id).unwrap();
    let approved: Vec<String> = routes.approved.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        approved,
        ["0.0.0.0/0", "10.2.0.0/16", "::/0"],
        "192.168.7.0/24 is outside the auto-approver"
    );
    let view = k
        .tailnet
        .access()
        .peer_routes(client.id, router.id)
        .unwrap();
    assert!(
        view.allowed_ips
            .iter()
            .any(|r| r.to_string() == "0.0.0.0/0"),
        "exit node visible: {view:?}"
    );
    assert!(
        !view
            .allowed_ips
            .iter()
            .any(|r| r.to_string() == "192.168.7.0/24")
    );
    // Persisted: a reload keeps them approved.
    let again = Tailnet::load(
        Arc::new(k.store.clone()),
        k.clock.clone(),
        Settings::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        again.node_routes(router.id).unwrap().approved,
        routes.approved
    );
}

#[tokio::test]
async fn policy_set_is_checked_and_a_refused_one_changes_nothing() {
    let k = kit().await;
    let good = r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}]}"#;
    k.tailnet.set_policy(good).await.unwrap();
    for bad in [
        "{ not json",
        r#"{"acls": [{"action": "accept", "src": ["group:ghosts"], "dst": ["*:*"]}]}"#,
        r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}], "tests": [{"src": "alice@", "accept": ["100.64.0.1:80"]}]}"#,
        r#"{"bogusField": 1}"#,
    ] {
        let e = k.tailnet.set_policy(bad).await.unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Invalid, "{bad}: {e}");
        assert_eq!(
            k.tailnet.policy_info().text.as_deref(),
            Some(good),
            "the running policy stays"
        );
    }
    let stored = k.store.load().await.unwrap().policy.unwrap();
    assert_eq!(stored.text, good);
    // File mode refuses API changes, pointing at the file.
    let k2 = kit_with(Settings {
        policy_source: crate::settings::PolicySource::File(Some(
            "/etc/headway/policy.hujson".into(),
        )),
        ..Default::default()
    })
    .await;
    let e = k2.tailnet.set_policy(good).await.unwrap_err().to_string();
    assert!(e.contains("/etc/headway/policy.hujson"), "{e}");
}

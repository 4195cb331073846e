//! Behaviour the conformance corpus does not cover: the no-policy default,
//! users with several devices, tag claims, route auto-approval, primary
//! routers, danger-all, and the incremental API (which views a change touches).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;

use headway_policy::{
    CompiledPolicy, Policy, PolicyNode, PolicyUser, TagClaimError, TagClaimant, primary_routes,
};
use serde_json::json;

fn user(id: i64, name: &str, email: &str) -> PolicyUser {
    PolicyUser {
        id,
        name: name.into(),
        email: email.into(),
    }
}

fn node(id: i64, host: &str, user: Option<i64>, tags: &[&str]) -> PolicyNode {
    PolicyNode {
        id,
        hostname: host.into(),
        user,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ipv4: Some(format!("100.64.0.{id}").parse().unwrap()),
        ipv6: Some(format!("fd7a:115c:a1e0::{id:x}").parse().unwrap()),
        routable_ips: vec![],
        approved_routes: vec![],
        online: true,
    }
}

fn users() -> Vec<PolicyUser> {
    vec![
        user(1, "odin", "odin@example.com"),
        user(2, "thor", "thor@example.org"),
    ]
}

fn compile(policy: &str, nodes: &[PolicyNode]) -> CompiledPolicy {
    let p = Arc::new(Policy::parse(policy).unwrap());
    CompiledPolicy::new(Some(p), &users(), nodes).unwrap()
}

#[test]
fn no_policy_lets_everyone_reach_everyone() {
    let nodes = vec![
        node(1, "a", Some(1), &[]),
        node(2, "b", Some(2), &[]),
        node(3, "c", None, &["tag:x"]),
    ];
    for c in [
        CompiledPolicy::new(None, &users(), &nodes).unwrap(),
        compile("{}", &nodes),
    ] {
        for n in &nodes {
            let others: Vec<i64> = nodes
                .iter()
                .map(|m| m.id)
                .filter(|id| *id != n.id)
                .collect();
            assert_eq!(c.peers_of(n.id), others);
            let f = serde_json::to_value(c.filter_for(n.id)).unwrap();
            assert_eq!(
                f,
                json!([{"SrcIPs": ["100.64.0.0-100.115.91.255", "100.115.94.0-100.127.255.255", "fd7a:115c:a1e0::/48"],
                        "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}]}])
            );
        }
    }
}

#[test]
fn autogroup_self_covers_all_of_a_users_devices() {
    let nodes = vec![
        node(1, "odin-laptop", Some(1), &[]),
        node(2, "odin-phone", Some(1), &[]),
        node(3, "thor-laptop", Some(2), &[]),
        node(4, "server", Some(1), &["tag:server"]),
    ];
    let c = compile(
        r#"{"tagOwners": {"tag:server": ["odin@example.com"]},
            "acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}]}"#,
        &nodes,
    );
    assert_eq!(c.peers_of(1), vec![2]);
    assert_eq!(c.peers_of(3), Vec::<i64>::new());
    assert_eq!(
        c.peers_of(4),
        Vec::<i64>::new(),
        "a tagged node is nobody's self"
    );
    let f = serde_json::to_value(c.filter_for(2)).unwrap();
    assert_eq!(
        f,
        json!([{"SrcIPs": ["100.64.0.1", "fd7a:115c:a1e0::1", "100.64.0.2", "fd7a:115c:a1e0::2"],
                "DstPorts": [{"IP": "100.64.0.2", "Ports": {"First": 0, "Last": 65535}},
                             {"IP": "fd7a:115c:a1e0::2", "Ports": {"First": 0, "Last": 65535}}]}])
    );
    assert!(c.filter_for(4).is_empty());
    // Both of odin's devices are one class; thor's device is another.
    assert_eq!(c.class_of(1), c.class_of(2));
    assert_ne!(c.class_of(1), c.class_of(3));
}

#[test]
fn shared_filters_serialise_like_the_wire_type() {
    let nodes = vec![node(1, "a", Some(1), &[]), node(2, "b", None, &["tag:s"])];
    let c = compile(
        r#"{"tagOwners": {"tag:s": []}, "grants": [{"src": ["*"], "dst": ["tag:s"], "ip": ["tcp:22", "*"], "app": {"example.com/cap/x": [{"k": 1}]}}]}"#,
        &nodes,
    );
    for id in [1, 2] {
        let shared = serde_json::to_value(c.shared_filter_for(id)).unwrap();
        assert_eq!(shared, serde_json::to_value(c.filter_for(id)).unwrap());
    }
    assert_eq!(
        c.filter_for(2).len(),
        3,
        "two port rules and one capability rule"
    );
}

#[test]
fn danger_all_sources_are_written_as_star() {
    let nodes = vec![node(1, "a", Some(1), &[])];
    let c = compile(
        r#"{"grants": [{"src": ["autogroup:danger-all"], "dst": ["*"], "ip": ["tcp:443"]}]}"#,
        &nodes,
    );
    let f = serde_json::to_value(c.filter_for(1)).unwrap();
    assert_eq!(f[0]["SrcIPs"], json!(["*"]));
    assert_eq!(f[0]["IPProto"], json!([6]));
}

#[test]
fn tag_claims() {
    let p = Policy::parse(
        r#"{"groups": {"group:ops": ["thor@example.org"]},
            "tagOwners": {"tag:web": ["odin@example.com"], "tag:db": ["group:ops"], "tag:sidecar": ["tag:web"],
                          "tag:any": ["autogroup:member"]}}"#,
    )
    .unwrap();
    let [odin, thor] = [&users()[0], &users()[1]].map(|u| u.clone());
    let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(
        p.may_claim_tags(TagClaimant::User(&odin), &tags(&["tag:web", "tag:any"]))
            .is_ok()
    );
    assert!(
        p.may_claim_tags(TagClaimant::User(&thor), &tags(&["tag:db"]))
            .is_ok()
    );
    let err = p
        .may_claim_tags(TagClaimant::User(&thor), &tags(&["tag:db", "tag:web"]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "user \"thor@example.org\" may not apply tag \"tag:web\": tagOwners[\"tag:web\"] lists odin@example.com; \
         add user \"thor@example.org\" (or one of their groups) there"
    );
    assert_eq!(
        p.may_claim_tags(TagClaimant::User(&odin), &tags(&["tag:nope"])),
        Err(TagClaimError::Undefined {
            tag: "tag:nope".into()
        })
    );
    // A node tagged tag:web may add tag:sidecar (owned by tag:web) and keep its own tag.
    let web = tags(&["tag:web"]);
    assert!(
        p.may_claim_tags(TagClaimant::Tags(&web), &tags(&["tag:web", "tag:sidecar"]))
            .is_ok()
    );
    assert!(
        p.may_claim_tags(TagClaimant::Tags(&web), &tags(&["tag:db"]))
            .is_err()
    );
    // Users never inherit through tag owners.
    assert!(
        p.may_claim_tags(TagClaimant::User(&odin), &tags(&["tag:sidecar"]))
            .is_err()
    );
}

#[test]
fn route_auto_approval() {
    let p = Policy::parse(
        r#"{"groups": {"group:net": ["odin@example.com"]}, "tagOwners": {"tag:router": [], "tag:exit": []},
            "autoApprovers": {"routes": {"10.0.0.0/8": ["tag:router", "group:net"], "0.0.0.0/0": ["tag:router"]},
                              "exitNode": ["tag:exit"]}}"#,
    )
    .unwrap();
    let us = users();
    let router = node(1, "r", None, &["tag:router"]);
    let exit = node(2, "e", None, &["tag:exit"]);
    let odin = node(3, "o", Some(1), &[]);
    let thor = node(4, "t", Some(2), &[]);
    let r = |s: &str| s.parse().unwrap();
    assert!(p.auto_approves(&us, &router, &r("10.1.0.0/16")));
    assert!(
        p.auto_approves(&us, &router, &r("11.0.0.0/8")),
        "0.0.0.0/0 in routes covers every IPv4 subnet"
    );
    assert!(
        !p.auto_approves(&us, &router, &r("fd00::/64")),
        "outside every approved prefix"
    );
    assert!(
        !p.auto_approves(&us, &router, &r("0.0.0.0/0")),
        "exit routes only through exitNode"
    );
    assert!(p.auto_approves(&us, &exit, &r("::/0")));
    assert!(
        p.auto_approves(&us, &odin, &r("10.0.0.0/8")),
        "user in an approving group"
    );
    assert!(!p.auto_approves(&us, &thor, &r("10.0.0.0/8")));
}

#[test]
fn primary_router_is_the_earliest_online_one() {
    let mut a = node(5, "a", None, &["tag:r"]);
    let mut b = node(3, "b", None, &["tag:r"]);
    for n in [&mut a, &mut b] {
        n.routable_ips = vec!["10.9.0.0/16".parse().unwrap()];
        n.approved_routes = n.routable_ips.clone();
    }
    let route = "10.9.0.0/16".parse().unwrap();
    assert_eq!(
        primary_routes(&[a.clone(), b.clone()]).get(&route),
        Some(&3)
    );
    b.online = false;
    assert_eq!(
        primary_routes(&[a.clone(), b.clone()]).get(&route),
        Some(&5)
    );
    a.approved_routes.clear();
    assert_eq!(
        primary_routes(&[a, b]).get(&route),
        None,
        "advertised but not approved"
    );
}

/// Everything a node is sent, for comparing views before and after a change.
fn view(c: &CompiledPolicy, id: i64) -> serde_json::Value {
    let peers: Vec<serde_json::Value> = c
        .peers_of(id)
        .into_iter()
        .map(|p| {
            let v = c.peer_view(id, p).unwrap();
            json!([p, v.allowed_ips, v.primary_routes])
        })
        .collect();
    json!({"filter": c.filter_for(id), "peers": peers, "ssh": c.ssh_policy_for(id, "https://c"), "caps": c.cap_map_for(id)})
}

#[test]
fn a_node_change_touches_only_the_views_reported() {
    let policy = r#"{
        "groups": {"group:eng": ["odin@example.com"]},
        "tagOwners": {"tag:server": ["group:eng"], "tag:router": ["group:eng"], "tag:db": ["group:eng"]},
        "autoApprovers": {"routes": {"10.0.0.0/8": ["tag:router"]}},
        "acls": [
            {"action": "accept", "src": ["group:eng"], "dst": ["tag:server:22", "10.1.0.0/16:*"]},
            {"action": "accept", "src": ["tag:server"], "dst": ["tag:db:5432"]},
            {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
            {"action": "accept", "src": ["*"], "dst": ["tag:server:443"]}
        ],
        "ssh": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:server"], "users": ["root"]}]
    }"#;
    let mut router = node(6, "router", None, &["tag:router"]);
    router.routable_ips = vec!["10.1.0.0/16".parse().unwrap()];
    let base = vec![
        node(1, "odin-1", Some(1), &[]),
        node(2, "odin-2", Some(1), &[]),
        node(3, "thor-1", Some(2), &[]),
        node(4, "web", None, &["tag:server"]),
        node(5, "db", None, &["tag:db"]),
        router,
        node(7, "db-2", None, &["tag:db"]),
    ];
    let before = compile(policy, &base);

    let mut changes: Vec<(i64, Vec<PolicyNode>)> = Vec::new();
    let mut add = base.clone();
    add.push(node(8, "web-2", None, &["tag:server"]));
    changes.push((8, add));
    changes.push((5, base.iter().filter(|n| n.id != 5).cloned().collect()));
    let mut readdress = base.clone();
    readdress[2].ipv4 = Some("100.64.1.3".parse().unwrap());
    changes.push((3, readdress));
    let mut retag = base.clone();
    retag[6].tags = vec!["tag:server".into()];
    changes.push((7, retag));
    let mut second_router = base.clone();
    let mut r2 = node(9, "router-2", None, &["tag:router"]);
    r2.routable_ips = vec!["10.1.0.0/16".parse().unwrap()];
    second_router.push(r2);
    changes.push((9, second_router));

    for (changed, nodes) in changes {
        let after = before.recompile(&users(), &nodes).unwrap();
        let affected = before.affected_by_node_change(&after, changed);
        for n in nodes.iter().filter(|n| !affected.contains(&n.id)) {
            assert_eq!(
                view(&before, n.id),
                view(&after, n.id),
                "node {} changed after a change to {changed}",
                n.id
            );
        }
        assert!(affected.contains(&changed));
        assert!(
            affected.len() < nodes.len() + 1,
            "a change to {changed} should not touch everyone: {affected:?}"
        );
    }
}

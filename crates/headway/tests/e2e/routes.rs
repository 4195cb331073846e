//! Subnet routers, exit nodes and DNS on official clients: an advertised
//! route is pending until approved (through the CLI, or by the policy's
//! `autoApprovers`), then reaches peers; a second router takes over when
//! the primary's tailscaled stops, without flapping back; an approved exit
//! node is offered to peers; DNS settings and extra records reach the
//! client's resolver; a policy set through the CLI changes who sees whom,
//! and a bad one is refused with its line and changes nothing.
//!
//! No traffic is forwarded through the routers: the prefixes are only
//! announced, never used.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kit::*;

const ROUTE: &str = "10.99.0.0/24";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `host` as `viewer` sees it: (AllowedIPs, PrimaryRoutes), or `None` when
/// it is not a peer.
async fn view_of(viewer: &Node, host: &str) -> Option<(Vec<String>, Vec<String>)> {
    let p = viewer.peer(host).await?;
    Some((strings(&p["AllowedIPs"]), strings(&p["PrimaryRoutes"])))
}

/// Whether `viewer` routes `route` through `host` (primary and allowed).
async fn serves(viewer: &Node, host: &str, route: &str) -> bool {
    view_of(viewer, host)
        .await
        .is_some_and(|(allowed, primary)| {
            allowed.iter().any(|r| r == route) && primary.iter().any(|r| r == route)
        })
}

/// Whether `route` appears anywhere in `host`'s entry in `viewer`'s status.
async fn mentions(viewer: &Node, host: &str, route: &str) -> bool {
    view_of(viewer, host)
        .await
        .is_some_and(|(allowed, primary)| allowed.iter().chain(&primary).any(|r| r == route))
}

/// Waits until `viewer` routes `route` through `router` only; returns how
/// long it took.
async fn wait_primary(viewer: &Node, router: &str, others: &[&str], route: &str) -> Duration {
    let start = Instant::now();
    eventually(
        Duration::from_secs(15),
        &format!("{} to route {route} through {router} only", viewer.name),
        async || {
            if !serves(viewer, router, route).await {
                return None;
            }
            for o in others {
                if mentions(viewer, o, route).await {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    start.elapsed()
}

/// The server's id of the node named `name`.
async fn node_id(server: &Headway, name: &str) -> String {
    let n = server
        .nodes()
        .await
        .into_iter()
        .find(|n| n["givenName"] == name)
        .unwrap_or_else(|| panic!("no node {name}"));
    n["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| n["id"].to_string())
}

async fn approve(server: &Headway, name: &str, routes: &str) -> Value {
    let id = node_id(server, name).await;
    server
        .cli_json(&[
            "nodes",
            "approve-routes",
            "--identifier",
            &id,
            "--routes",
            routes,
        ])
        .await
}

/// `headway nodes list-routes -o json`, by node name.
async fn listed_routes(server: &Headway, name: &str) -> Option<Value> {
    let v = server.cli_json(&["nodes", "list-routes"]).await;
    v.as_array()?
        .iter()
        .find(|n| n["givenName"] == name)
        .cloned()
}

/// Asserts that `viewer` keeps routing `route` through `router` for a while
/// (no flapping).
async fn stays_primary(viewer: &Node, router: &str, route: &str, for_: Duration) {
    let start = Instant::now();
    while start.elapsed() < for_ {
        assert!(
            serves(viewer, router, route).await,
            "{} stopped routing {route} through {router}: {:?}",
            viewer.name,
            viewer.peers().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_routes_wait_for_approval_then_fail_over_between_routers() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(dir.path(), ServerOpts::default()).await;
    let key = server.user_with_key("alice", &["--reusable"]).await;
    let advertise = format!("--advertise-routes={ROUTE}");

    let mut r1 = Node::start(dir.path(), "router-1", MODERN, &[]).await;
    let r2 = Node::start(dir.path(), "router-2", MODERN, &[]).await;
    let c = Node::start(dir.path(), "client", MODERN, &[]).await;
    let (ok, out) = r1.up(&server, &key, &[&advertise]).await;
    assert!(ok, "{out}");
    c.up_ok(&server, &key).await;
    c.wait_sees_online(&["router-1"]).await;

    // Advertised, not approved: the server lists it as available only and
    // the client gets no route.
    let listed = eventually(
        Duration::from_secs(10),
        "router-1 to be listed with its route",
        async || listed_routes(&server, "router-1").await,
    )
    .await;
    assert_eq!(strings(&listed["availableRoutes"]), [ROUTE], "{listed}");
    assert!(strings(&listed["approvedRoutes"]).is_empty(), "{listed}");
    assert!(strings(&listed["subnetRoutes"]).is_empty(), "{listed}");
    assert!(
        !mentions(&c, "router-1", ROUTE).await,
        "a pending route reached a peer: {:?}",
        view_of(&c, "router-1").await
    );

    // Approved through the CLI: the client routes it through router-1.
    let node = approve(&server, "router-1", ROUTE).await;
    assert_eq!(strings(&node["approvedRoutes"]), [ROUTE], "{node}");
    assert_eq!(strings(&node["subnetRoutes"]), [ROUTE], "{node}");
    let took = wait_primary(&c, "router-1", &[], ROUTE).await;
    eprintln!("approved route reached the peer in {took:?}");

    // A second router for the same prefix: approved, but router-1 stays
    // primary.
    let (ok, out) = r2.up(&server, &key, &[&advertise]).await;
    assert!(ok, "{out}");
    c.wait_sees_online(&["router-2"]).await;
    approve(&server, "router-2", ROUTE).await;
    stays_primary(&c, "router-1", ROUTE, Duration::from_secs(2)).await;
    assert!(!mentions(&c, "router-2", ROUTE).await);
    let listed = listed_routes(&server, "router-2").await.unwrap();
    assert_eq!(strings(&listed["approvedRoutes"]), [ROUTE], "{listed}");
    assert!(strings(&listed["subnetRoutes"]).is_empty(), "{listed}");

    // The primary's tailscaled stops: router-2 takes over in the client's view.
    r1.stop().await;
    let took = wait_primary(&c, "router-2", &["router-1"], ROUTE).await;
    eprintln!("failover to router-2 reached the peer in {took:?}");
    let listed = listed_routes(&server, "router-2").await.unwrap();
    assert_eq!(strings(&listed["subnetRoutes"]), [ROUTE], "{listed}");

    // router-1 comes back: router-2 keeps the route (no flapping).
    r1.restart().await;
    c.wait_sees_online(&["router-1"]).await;
    stays_primary(&c, "router-2", ROUTE, Duration::from_secs(3)).await;
    assert!(!mentions(&c, "router-1", ROUTE).await);

    // Withdrawing router-2's approval hands the route back to router-1;
    // withdrawing router-1's too takes it away from the client.
    approve(&server, "router-2", "").await;
    let took = wait_primary(&c, "router-1", &["router-2"], ROUTE).await;
    eprintln!("unapproval moved the route to router-1 in {took:?}");
    approve(&server, "router-1", "").await;
    let start = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the route to leave the client's view",
        async || {
            (!mentions(&c, "router-1", ROUTE).await && !mentions(&c, "router-2", ROUTE).await)
                .then_some(())
        },
    )
    .await;
    eprintln!("withdrawn route left the peer in {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_stops_answering_probes_loses_its_routes_while_connected() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml:
                "node:\n  routes:\n    ha:\n      probe_interval: 2s\n      probe_timeout: 1s\n"
                    .into(),
        },
    )
    .await;
    let key = server.user_with_key("alice", &["--reusable"]).await;
    let advertise = format!("--advertise-routes={ROUTE}");
    let r1 = Node::start(dir.path(), "router-1", MODERN, &[]).await;
    let r2 = Node::start(dir.path(), "router-2", OLD, &[]).await;
    let c = Node::start(dir.path(), "client", MODERN, &[]).await;
    let (ok, out) = r1.up(&server, &key, &[&advertise]).await;
    assert!(ok, "{out}");
    approve(&server, "router-1", ROUTE).await;
    c.up_ok(&server, &key).await;
    wait_primary(&c, "router-1", &[], ROUTE).await;
    let (ok, out) = r2.up(&server, &key, &[&advertise]).await;
    assert!(ok, "{out}");
    approve(&server, "router-2", ROUTE).await;
    c.wait_sees_online(&["router-1", "router-2"]).await;

    // Both routers answer their probes: router-1 stays primary.
    eventually(
        Duration::from_secs(20),
        "both routers to answer a probe",
        async || {
            let log = server.log_text();
            (log.matches("route health: probe answered").count() >= 4).then_some(())
        },
    )
    .await;
    stays_primary(&c, "router-1", ROUTE, Duration::from_secs(5)).await;

    // router-1's tailscaled hangs: its connection stays open, so the server
    // still counts it online, but it answers no probe. router-2 takes over.
    r1.signal("STOP");
    let took = wait_primary(&c, "router-2", &["router-1"], ROUTE).await;
    eprintln!("a hung router's route moved in {took:?}");
    let online = |nodes: &[Value], name: &str| {
        nodes
            .iter()
            .find(|n| n["givenName"] == name)
            .map(|n| n["online"] == true)
    };
    assert_eq!(
        online(&server.nodes().await, "router-1"),
        Some(true),
        "the failover must come from the probe, not from a closed session"
    );
    assert!(server.log_text().contains("did not answer its probe"));
    let listed = listed_routes(&server, "router-2").await.unwrap();
    assert_eq!(strings(&listed["subnetRoutes"]), [ROUTE], "{listed}");

    // It wakes up and answers again: healthy, but router-2 keeps the route.
    r1.signal("CONT");
    eventually(
        Duration::from_secs(20),
        "router-1 to answer again",
        async || {
            server
                .log_text()
                .contains("router answers again")
                .then_some(())
        },
    )
    .await;
    stays_primary(&c, "router-2", ROUTE, Duration::from_secs(5)).await;
    assert!(!mentions(&c, "router-1", ROUTE).await);

    // A hung router that is the last one of its route keeps it.
    r2.signal("STOP");
    let took = wait_primary(&c, "router-1", &["router-2"], ROUTE).await;
    eprintln!("the route moved back to the healthy router in {took:?}");
    r1.signal("STOP");
    stays_primary(&c, "router-1", ROUTE, Duration::from_secs(6)).await;
    r1.signal("CONT");
    r2.signal("CONT");
}

fn write(path: &Path, text: &str) {
    // Write then rename, so the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const AUTO_POLICY: &str = r#"{
  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
  // alice's routers need no administrator; bob's do.
  "autoApprovers": {"routes": {"10.99.0.0/16": ["alice@"]}},
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_approvers_approve_routes_and_an_approved_exit_node_is_offered() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: "policy:\n  mode: database\n".into(),
        },
    )
    .await;
    let policy = dir.path().join("policy.hujson");
    write(&policy, AUTO_POLICY);
    let (ok, out, err) = server.cli(&["policy", "set", "--file"]).await;
    assert!(!ok, "--file needs a value: {out}{err}");
    let policy_arg = policy.display().to_string();
    let (ok, out, err) = server.cli(&["policy", "set", "--file", &policy_arg]).await;
    assert!(ok && out.contains("Policy updated"), "{out}{err}");

    let alice = server.user_with_key("alice", &["--reusable"]).await;
    let bob = server.user_with_key("bob", &["--reusable"]).await;
    let ra = Node::start(dir.path(), "alice-router", MODERN, &[]).await;
    let rb = Node::start(dir.path(), "bob-router", MODERN, &[]).await;
    let c = Node::start(dir.path(), "client", MODERN, &[]).await;
    let (ok, out) = ra
        .up(&server, &alice, &["--advertise-routes=10.99.1.0/24"])
        .await;
    assert!(ok, "{out}");
    let (ok, out) = rb
        .up(
            &server,
            &bob,
            &["--advertise-routes=10.99.2.0/24", "--advertise-exit-node"],
        )
        .await;
    assert!(ok, "{out}");
    c.up_ok(&server, &alice).await;
    c.wait_sees_online(&["alice-router", "bob-router"]).await;

    // alice's route is approved by the policy alone.
    let took = wait_primary(&c, "alice-router", &[], "10.99.1.0/24").await;
    eprintln!("auto-approved route reached the peer in {took:?}");
    let listed = listed_routes(&server, "alice-router").await.unwrap();
    assert_eq!(
        strings(&listed["approvedRoutes"]),
        ["10.99.1.0/24"],
        "{listed}"
    );

    // bob's route and exit node wait for an administrator.
    let listed = listed_routes(&server, "bob-router").await.unwrap();
    assert!(strings(&listed["approvedRoutes"]).is_empty(), "{listed}");
    let mut available = strings(&listed["availableRoutes"]);
    available.sort();
    assert_eq!(available, ["0.0.0.0/0", "10.99.2.0/24", "::/0"], "{listed}");
    assert!(!mentions(&c, "bob-router", "10.99.2.0/24").await);
    assert!(!mentions(&c, "bob-router", "0.0.0.0/0").await);
    let (ok, out) = c.ts(&["exit-node", "list"]).await;
    assert!(
        !ok && out.contains("no exit nodes found"),
        "an unapproved exit node is offered: {out}"
    );

    // Approving the exit node (one family approves both) offers it to peers.
    let node = approve(&server, "bob-router", "0.0.0.0/0").await;
    assert_eq!(
        strings(&node["approvedRoutes"]),
        ["0.0.0.0/0", "::/0"],
        "{node}"
    );
    let bob_ip = rb.ipv4().await.to_string();
    let listing = eventually(
        Duration::from_secs(10),
        "the client to list bob-router as an exit node",
        async || {
            let (ok, out) = c.ts(&["exit-node", "list"]).await;
            (ok && out.contains("bob-router") && out.contains(&bob_ip)).then_some(out)
        },
    )
    .await;
    assert!(!listing.contains("alice-router"), "{listing}");
    let p = c.peer("bob-router").await.unwrap();
    assert_eq!(p["ExitNodeOption"], true, "{p}");
    // The subnet route still waits: only what was approved is served.
    assert!(!mentions(&c, "bob-router", "10.99.2.0/24").await);

    // The client may use it.
    let (ok, out) = c.ts(&["set", &format!("--exit-node={bob_ip}")]).await;
    assert!(ok, "tailscale set --exit-node: {out}");
    eventually(
        Duration::from_secs(10),
        "the client to use bob-router as its exit node",
        async || {
            let s = c.status().await;
            let peer = s["Peer"]
                .as_object()?
                .values()
                .find(|p| p["HostName"] == "bob-router")?
                .clone();
            (peer["ExitNode"] == true).then_some(())
        },
    )
    .await;
    let (ok, out) = c.ts(&["set", "--exit-node="]).await;
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_settings_and_extra_records_reach_the_client_resolver() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.json");
    let record =
        |ip: &str| format!(r#"[{{"name": "db.tailnet.test", "type": "A", "value": "{ip}"}}]"#);
    write(&records, &record("100.64.0.99"));
    // Documentation addresses (RFC 5737): configured, never contacted.
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: format!(
                "dns:\n  magic_dns: true\n  base_domain: tailnet.test\n  \
                 nameservers:\n    global: [\"192.0.2.53\"]\n    split:\n      corp.test: [\"192.0.2.54\"]\n  \
                 search_domains: [\"corp.test\"]\n  extra_records_path: {}\n",
                records.display()
            ),
        },
    )
    .await;
    let key = server.user_with_key("alice", &[]).await;
    let n = Node::start(dir.path(), "laptop", MODERN, &[]).await;
    n.up_ok(&server, &key).await;

    let (ok, out) = n.ts(&["dns", "status", "--all", "--json"]).await;
    assert!(ok, "{out}");
    let dns: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(dns["CurrentTailnet"]["MagicDNSEnabled"], true, "{dns}");
    assert_eq!(
        dns["CurrentTailnet"]["MagicDNSSuffix"], "tailnet.test",
        "{dns}"
    );
    assert_eq!(
        dns["CurrentTailnet"]["SelfDNSName"], "laptop.tailnet.test.",
        "{dns}"
    );
    let resolvers: Vec<&str> = dns["Resolvers"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["Addr"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(resolvers, ["192.0.2.53"], "{dns}");
    let split = dns["SplitDNSRoutes"]
        .as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.trim_end_matches('.') == "corp.test")
        })
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no split DNS route for corp.test: {dns}"));
    assert_eq!(split[0]["Addr"], "192.0.2.54", "{dns}");
    let search = strings(&dns["SearchDomains"]);
    assert!(
        search
            .iter()
            .any(|d| d.trim_end_matches('.') == "corp.test"),
        "{dns}"
    );
    assert!(
        search
            .iter()
            .any(|d| d.trim_end_matches('.') == "tailnet.test"),
        "{dns}"
    );
    let extra = dns["ExtraRecords"].to_string();
    assert!(extra.contains("db.tailnet.test"), "{dns}");

    // The record resolves through the client's own resolver…
    let answer = async |want: &str| {
        eventually(
            Duration::from_secs(10),
            &format!("db.tailnet.test to resolve to {want}"),
            async || {
                let (ok, out) = n
                    .ts(&["dns", "query", "--json", "db.tailnet.test", "A"])
                    .await;
                if !ok {
                    return None;
                }
                let v: Value = serde_json::from_str(&out).ok()?;
                let bodies: Vec<String> = v["Answers"]
                    .as_array()?
                    .iter()
                    .filter_map(|a| a["Body"].as_str().map(str::to_string))
                    .collect();
                (v["ResponseCode"] == "RCodeSuccess" && bodies.iter().any(|b| b.contains(want)))
                    .then_some(bodies)
            },
        )
        .await
    };
    let first = answer("100.64.0.99").await;
    assert!(
        !first.iter().any(|b| b.contains("100.64.0.100")),
        "{first:?}"
    );
    // …and follows the file when it is rewritten.
    write(&records, &record("100.64.0.100"));
    let second = answer("100.64.0.100").await;
    assert!(
        !second.iter().any(|b| b.contains("100.64.0.99")),
        "{second:?}"
    );

    // A broken file is refused and the records in force stay.
    write(
        &records,
        r#"[{"name": "bad name!", "type": "A", "value": "100.64.0.1"}]"#,
    );
    eventually(
        Duration::from_secs(10),
        "the server to refuse the bad records file",
        async || server.log_text().contains("bad name!").then_some(()),
    )
    .await;
    answer("100.64.0.100").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_through_the_cli_changes_who_sees_whom_and_a_bad_one_changes_nothing() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: "policy:\n  mode: database\n".into(),
        },
    )
    .await;
    let alice = server.user_with_key("alice", &[]).await;
    let bob = server.user_with_key("bob", &[]).await;
    let a = Node::start(dir.path(), "alice-laptop", MODERN, &[]).await;
    let b = Node::start(dir.path(), "bob-laptop", MODERN, &[]).await;
    a.up_ok(&server, &alice).await;
    b.up_ok(&server, &bob).await;

    // No policy: everyone reaches everyone, and `policy get` says so.
    let (ok, out, err) = server.cli(&["policy", "get"]).await;
    assert!(ok && out.is_empty(), "{out}{err}");
    assert!(err.contains("no policy"), "{err}");
    a.wait_sees_online(&["bob-laptop"]).await;

    let good = dir.path().join("good.hujson");
    let text = "// alice keeps to herself\n{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": [\"alice@:*\"]},\n  ],\n}\n";
    write(&good, text);
    let good_arg = good.display().to_string();

    // Checked and explained against the live tailnet, nothing applied yet.
    let (ok, out, err) = server.cli(&["policy", "check", "--file", &good_arg]).await;
    assert!(ok && out.contains("Policy is valid"), "{out}{err}");
    let explained = server
        .cli_json(&["policy", "explain", "--policy", &good_arg])
        .await;
    let nodes = explained["nodes"].as_object().unwrap();
    assert!(
        nodes.contains_key("alice-laptop") && nodes.contains_key("bob-laptop"),
        "{explained}"
    );
    assert_eq!(
        explained["nodes"]["alice-laptop"]["peers"],
        serde_json::json!({}),
        "{explained}"
    );
    assert!(
        a.peer("bob-laptop").await.is_some(),
        "check or explain applied the policy"
    );

    // Set: bob's laptop leaves alice's view, and alice's leaves bob's.
    let (ok, out, err) = server.cli(&["policy", "set", "--file", &good_arg]).await;
    assert!(ok && out.contains("Policy updated"), "{out}{err}");
    let start = Instant::now();
    eventually(
        Duration::from_secs(10),
        "alice and bob to lose each other",
        async || {
            (a.peer("bob-laptop").await.is_none() && b.peer("alice-laptop").await.is_none())
                .then_some(())
        },
    )
    .await;
    eprintln!("the policy reached both clients in {:?}", start.elapsed());
    let got = server.cli_json(&["policy", "get"]).await;
    assert_eq!(got["policy"], text, "{got}");

    // A bad policy (an unknown field on line 5) is refused with its line
    // and changes nothing.
    let bad = dir.path().join("bad.hujson");
    write(
        &bad,
        "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]},\n  ],\n  \"aclz\": [],\n}\n",
    );
    let bad_arg = bad.display().to_string();
    for verb in ["check", "set"] {
        let (ok, out, err) = server.cli(&["policy", verb, "--file", &bad_arg]).await;
        assert!(!ok, "policy {verb} accepted a bad policy: {out}");
        assert!(
            err.contains("aclz") && err.contains("line 5"),
            "policy {verb}: {err}"
        );
    }
    let got = server.cli_json(&["policy", "get"]).await;
    assert_eq!(got["policy"], text, "the bad policy replaced the good one");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        a.peer("bob-laptop").await.is_none(),
        "the bad policy opened the tailnet"
    );
}

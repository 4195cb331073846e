//! The policy engine on real clients: allowed flows open, denied flows are
//! blocked, tags obey tagOwners, a changed policy file takes effect live, a
//! bad one is refused and changes nothing, SSH rules reach the netmap.

use std::path::Path;
use std::time::Duration;

use crate::kit::*;

fn policy(alice_port: u16, bob_port: Option<u16>) -> String {
    let bob_rule = match bob_port {
        Some(p) => {
            format!(r#"{{"action": "accept", "src": ["bob@"], "dst": ["tag:server:{p}"]}},"#)
        }
        None => String::new(),
    };
    format!(
        r#"// Headway e2e policy
{{
  "groups": {{"group:admins": ["alice@"]}},
  "tagOwners": {{"tag:server": ["group:admins"]}},
  "acls": [
    {{"action": "accept", "src": ["group:admins"], "dst": ["tag:server:{alice_port}"]}},
    {bob_rule}
  ],
  "ssh": [
    {{"action": "accept", "src": ["group:admins"], "dst": ["tag:server"], "users": ["root", "autogroup:nonroot"]}},
  ],
}}
"#
    )
}

fn write(path: &Path, text: &str) {
    // Write then rename, so the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_decides_who_reaches_what_and_changes_apply_live() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let (allowed, _svc1) = greeter("allowed service").await;
    let (other, _svc2) = greeter("other service").await;
    let policy_path = dir.path().join("policy.hujson");
    write(&policy_path, &policy(allowed, None));
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: format!("policy:\n  mode: file\n  path: {}\n", policy_path.display()),
        },
    )
    .await;

    let alice_key = server.user_with_key("alice", &["--reusable"]).await;
    let bob_key = server.user_with_key("bob", &["--reusable"]).await;
    let server_key = server
        .user_with_key("alice", &["--tags", "tag:server"])
        .await;
    let a = Node::start(dir.path(), "alice-laptop", MODERN, &[]).await;
    let b = Node::start(dir.path(), "bob-laptop", MODERN, &[]).await;
    let s = Node::start(dir.path(), "db-server", MODERN, &[]).await;
    a.up_ok(&server, &alice_key).await;
    b.up_ok(&server, &bob_key).await;
    s.up_ok(&server, &server_key).await;
    let s_ip = s.ipv4().await;
    let a_ip = a.ipv4().await;

    // The tagged node is owned by its tag.
    let srv = server
        .nodes()
        .await
        .into_iter()
        .find(|n| n["givenName"] == "db-server")
        .unwrap();
    assert_eq!(srv["tags"], serde_json::json!(["tag:server"]));

    // Alice reaches the server on the allowed port only.
    a.wait_sees_online(&["db-server"]).await;
    assert_eq!(a.eventually_tcp(s_ip, allowed).await, "allowed service");
    a.assert_tcp_blocked(s_ip, other).await;
    // Peers follow from the policy: bob sees nobody, the server sees alice only.
    assert!(
        b.peers().await.is_empty(),
        "bob may talk to nobody: {:?}",
        b.peers().await
    );
    let srv_peers: Vec<String> = s
        .peers()
        .await
        .iter()
        .map(|p| p["HostName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(srv_peers, ["alice-laptop"]);
    b.assert_tcp_blocked(s_ip, allowed).await;
    s.assert_tcp_blocked(a_ip, allowed).await;

    // The SSH rule reaches the server's netmap.
    let nm = s.netmap().await;
    let rules = nm["SSHPolicy"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !rules.is_empty(),
        "no SSH rules in the netmap: {}",
        nm["SSHPolicy"]
    );
    assert!(rules[0]["sshUsers"].get("root").is_some(), "{rules:?}");

    // A live change: bob gets the allowed port, without restarting anything.
    write(&policy_path, &policy(allowed, Some(allowed)));
    eventually(
        Duration::from_secs(10),
        "bob to see the server",
        async || b.peer("db-server").await.map(|_| ()),
    )
    .await;
    assert_eq!(b.eventually_tcp(s_ip, allowed).await, "allowed service");

    // A broken policy is refused and the running one stays.
    write(
        &policy_path,
        "{ \"acls\": [ {\"action\": \"accept\", \"src\": [\"group:nobody\"], \"dst\": [\"*:*\"]} ] }",
    );
    eventually(
        Duration::from_secs(10),
        "the server to refuse the bad policy",
        async || {
            server
                .log_text()
                .contains("policy file refused")
                .then_some(())
        },
    )
    .await;
    assert!(
        server.log_text().contains("group:nobody"),
        "the refusal names the problem"
    );
    assert_eq!(b.eventually_tcp(s_ip, allowed).await, "allowed service");

    // Taking the rule away closes the flow again.
    write(&policy_path, &policy(allowed, None));
    eventually(
        Duration::from_secs(10),
        "bob to lose the server",
        async || b.peer("db-server").await.is_none().then_some(()),
    )
    .await;
    b.assert_tcp_blocked(s_ip, allowed).await;
    assert_eq!(a.eventually_tcp(s_ip, allowed).await, "allowed service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_owners_decide_who_may_register_tagged_nodes() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.hujson");
    write(&policy_path, &policy(1, None));
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: format!("policy:\n  mode: file\n  path: {}\n", policy_path.display()),
        },
    )
    .await;
    let alice_key = server.user_with_key("alice", &["--reusable"]).await;
    let bob_key = server.user_with_key("bob", &["--reusable"]).await;

    // A key with a tag the policy does not define is refused at creation.
    let (ok, out, err) = server
        .cli(&[
            "preauthkeys",
            "create",
            "--user",
            "alice",
            "--tags",
            "tag:nope",
        ])
        .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("tag:nope") && err.contains("tagOwners"),
        "{err}"
    );

    // Bob does not own tag:server: his --advertise-tags is refused, clearly.
    let b = Node::start(dir.path(), "bob-box", MODERN, &[]).await;
    let (ok, out) = b
        .up(
            &server,
            &bob_key,
            &["--advertise-tags=tag:server", "--timeout=20s"],
        )
        .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("tag:server") && out.contains("tagOwners"),
        "{out}"
    );
    assert!(server.nodes().await.is_empty());

    // Alice (in group:admins) may: the node becomes a tagged node.
    let a = Node::start(dir.path(), "alice-box", MODERN, &[]).await;
    let (ok, out) = a
        .up(&server, &alice_key, &["--advertise-tags=tag:server"])
        .await;
    assert!(ok, "{out}");
    let n = server
        .nodes()
        .await
        .into_iter()
        .find(|n| n["givenName"] == "alice-box")
        .unwrap();
    assert_eq!(n["tags"], serde_json::json!(["tag:server"]));
}

//! `CompiledPolicy::ssh_check_period`: which SSH connections fall under a
//! `check` rule, and for how long a passed check counts. The control server
//! asks this when a destination node fetches a check URL, rather than trust
//! anything the URL carries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use headway_policy::{CompiledPolicy, Policy, PolicyNode, PolicyUser};

fn user(id: i64, name: &str) -> PolicyUser {
    PolicyUser {
        id,
        name: name.into(),
        email: format!("{name}@example.com"),
    }
}

fn node(id: i64, user: i64, tags: &[&str]) -> PolicyNode {
    PolicyNode {
        id,
        hostname: format!("n{id}"),
        user: Some(user),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ipv4: Some(Ipv4Addr::new(100, 64, 0, id as u8)),
        ipv6: None,
        routable_ips: vec![],
        approved_routes: vec![],
        online: true,
    }
}

/// alice owns 1 and 2, bob owns 3; 4 is tagged `tag:server` (owned by alice's key).
fn compile(ssh: &str) -> CompiledPolicy {
    let text = format!(
        r#"{{
  "tagOwners": {{"tag:server": ["alice@example.com"]}},
  "acls": [{{"action": "accept", "src": ["*"], "dst": ["*:*"]}}],
  "ssh": [{ssh}]
}}"#
    );
    let policy = Policy::parse(&text).unwrap();
    let users = [user(1, "alice"), user(2, "bob")];
    let nodes = [
        node(1, 1, &[]),
        node(2, 1, &[]),
        node(3, 2, &[]),
        node(4, 1, &["tag:server"]),
    ];
    CompiledPolicy::new(Some(Arc::new(policy)), &users, &nodes).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_check_rule_to_own_devices_applies_between_them_only() {
    let c = compile(
        r#"{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]}"#,
    );
    assert_eq!(c.ssh_check_period(1, 2), Some(12 * HOUR), "default 12h");
    assert_eq!(c.ssh_check_period(2, 1), Some(12 * HOUR));
    assert_eq!(c.ssh_check_period(3, 1), None, "bob's node is not alice's");
    assert_eq!(c.ssh_check_period(1, 3), None);
    assert_eq!(
        c.ssh_check_period(1, 4),
        None,
        "a tagged node is nobody's own"
    );
    assert_eq!(c.ssh_check_period(1, 99), None, "unknown node");
}

#[test]
fn the_shortest_matching_period_wins_and_always_is_zero() {
    let c = compile(
        r#"{"action": "check", "src": ["alice@example.com"], "dst": ["tag:server"], "users": ["root"], "checkPeriod": "2h"},
           {"action": "check", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"], "checkPeriod": "30m"},
           {"action": "check", "src": ["bob@example.com"], "dst": ["tag:server"], "users": ["ubuntu"], "checkPeriod": "always"}"#,
    );
    assert_eq!(c.ssh_check_period(1, 4), Some(HOUR / 2));
    assert_eq!(c.ssh_check_period(3, 4), Some(Duration::ZERO));
}

#[test]
fn accept_rules_and_no_ssh_block_ask_for_no_check() {
    let c = compile(
        r#"{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["root"]}"#,
    );
    assert_eq!(c.ssh_check_period(1, 4), None);
    let c = compile("");
    assert_eq!(c.ssh_check_period(1, 4), None);
}

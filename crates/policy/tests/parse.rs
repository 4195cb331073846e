//! The policy reader: accepted HuJSON variants, and every kind of refusal
//! with its message, JSON path and position.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use headway_policy::{ErrorKind, Policy, PolicyError, Position};

fn refuse(text: &str) -> PolicyError {
    match Policy::parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

fn at(line: usize, column: usize) -> Option<Position> {
    Some(Position { line, column })
}

#[test]
fn hujson_variants_are_accepted() {
    for text in [
        "",
        "{}",
        "  // nothing but a comment\n{}",
        "{\"acls\": []}",
        // Comments of both kinds, trailing commas everywhere.
        r#"{
            // who may talk to whom
            "groups": {"group:eng": ["odin@example.com",],},
            /* servers */
            "tagOwners": {"tag:server": ["group:eng"],},
            "acls": [
                {"action": "accept", "src": ["group:eng"], "dst": ["tag:server:22,80-90"],},
            ],
        }"#,
        // Go's JSON matches field names case-insensitively; old policies use Action/Users/Ports.
        r#"{"ACLs": [{"Action": "accept", "Users": ["*"], "Ports": ["*:*"]}]}"#,
        // Fields Tailscale accepts that do not change access.
        r#"{"derpMap": {"Regions": {}}, "disableIPv4": false, "randomizeClientPort": true}"#,
        // Bracketed IPv6 destinations, protocols by name and number.
        r#"{"acls": [{"action": "accept", "src": ["*"], "proto": "17", "dst": ["[fd7a:115c:a1e0::1]:53"]},
                     {"action": "accept", "src": ["*"], "proto": "icmp", "dst": ["100.64.0.1:*"]}]}"#,
        r#"{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["tcp:443", "udp:53", "icmp:*", "22"]}]}"#,
    ] {
        if let Err(e) = Policy::parse(text) {
            panic!("refused {text}: {e}");
        }
    }
}

#[test]
fn syntax_errors_point_at_the_character() {
    let e = refuse("{\n  \"acls\": [\n    {\"action\": \"accept\",, }\n  ]\n}");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.position, at(3, 25));
    assert!(e.message.contains("quoted member name"), "{e}");
    assert_eq!(e.to_string(), format!("line 3, column 25: {}", e.message));
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let e = refuse(
        "{\n  \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"], \"srcs\": []}]\n}",
    );
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_eq!(e.path, "acls[0].srcs");
    assert_eq!(e.position, at(2, 63));
    assert!(
        e.message
            .starts_with("unknown field \"srcs\"; expected one of: action, src, dst"),
        "{e}"
    );

    let e = refuse("{\"tagowners\": {}, \"postures\": {}}");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::UnknownField, "postures")
    );
}

#[test]
fn wrong_types_are_refused() {
    let e = refuse(r#"{"groups": {"group:a": "odin@example.com"}}"#);
    assert_eq!(e.kind, ErrorKind::InvalidType);
    assert_eq!(e.path, "groups[\"group:a\"]");
    assert_eq!(e.message, "expected an array, got string");
    assert_eq!(e.position, at(1, 24));

    let e = refuse(r#"{"acls": {"action": "accept"}}"#);
    assert_eq!((e.kind, e.path.as_str()), (ErrorKind::InvalidType, "acls"));
}

#[test]
fn undefined_names_are_refused() {
    let e = refuse(
        "{\"acls\": [{\"action\": \"accept\",\n \"src\": [\"tag:nonexistent\"], \"dst\": [\"*:*\"]}]}",
    );
    assert_eq!(e.kind, ErrorKind::Undefined);
    assert_eq!(e.path, "acls[0].src[0]");
    assert_eq!(e.position, at(2, 10));
    assert_eq!(e.message, "src=tag not found: \"tag:nonexistent\"");

    let e =
        refuse(r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:nonexistent:22"]}]}"#);
    assert_eq!(
        e.message,
        "dst=\"tag:nonexistent\": tag not found: \"tag:nonexistent\""
    );

    let e = refuse(r#"{"acls": [{"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}]}"#);
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::Undefined, "acls[0].src[0]")
    );
    assert!(e.message.contains("group not found: \"group:nope\""), "{e}");

    let e = refuse(r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["webserver:80"]}]}"#);
    assert_eq!(e.kind, ErrorKind::InvalidValue);
    assert!(
        e.message.starts_with("\"webserver\": invalid address"),
        "{e}"
    );

    let e = refuse(r#"{"tagOwners": {"tag:a": ["tag:b"]}}"#);
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::Undefined, "tagOwners[\"tag:a\"][0]")
    );

    let e = refuse(
        r#"{"tagOwners": {"tag:r": []}, "grants": [{"src": ["*"], "dst": ["10.0.0.0/8"], "ip": ["*"], "via": ["tag:x"]}]}"#,
    );
    assert_eq!(e.message, "tag \"tag:x\" not found");
}

#[test]
fn invalid_values_are_refused() {
    for (text, path, message) in [
        (
            r#"{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}"#,
            "acls[0].action",
            "action=\"deny\" is not supported",
        ),
        (
            r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["autogroup:self"]}]}"#,
            "acls[0].dst[0]",
            "dst=\"autogroup:self\": port range \"self\": invalid first integer",
        ),
        (
            r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:70000"]}]}"#,
            "acls[0].dst[0]",
            "port range \"70000\"",
        ),
        (
            r#"{"acls": [{"action": "accept", "src": ["*"], "proto": "bogus", "dst": ["*:*"]}]}"#,
            "acls[0].proto",
            "proto name \"bogus\" not known",
        ),
        (
            r#"{"acls": [{"action": "accept", "src": ["*"], "proto": "icmp", "dst": ["*:22"]}]}"#,
            "acls[0].dst[0]",
            "does not support specific ports",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["*"]}]}"#,
            "grants[0]",
            "ip and app can not both be empty",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["icmp"]}]}"#,
            "grants[0].ip[0]",
            "port range \"icmp\": invalid first integer",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["0.0.0.0/0"], "ip": ["*"]}]}"#,
            "grants[0].dst",
            "to allow all IP addresses, use \"*\"",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["*"], "app": {"tailscale.com/cap/funnel": [{}]}}]}"#,
            "grants[0].app[\"tailscale.com/cap/funnel\"]",
            "capability name must not be in the tailscale.com domain",
        ),
        (
            r#"{"grants": [{"src": ["autogroup:self"], "dst": ["*"], "ip": ["*"]}]}"#,
            "grants[0].src[0]",
            "not valid on the src side",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["autogroup:danger-all"], "ip": ["*"]}]}"#,
            "grants[0].dst[0]",
            "cannot use autogroup:danger-all as a dst",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["autogroup:bogus"], "ip": ["*"]}]}"#,
            "grants[0].dst[0]",
            "autogroup \"autogroup:bogus\" is not valid",
        ),
        (
            r#"{"hosts": {"web": "not-an-ip"}}"#,
            "hosts[\"web\"]",
            "is not an IP address or CIDR",
        ),
        (
            r#"{"groups": {"admins": []}}"#,
            "groups[\"admins\"]",
            "must start with 'group:'",
        ),
        (
            r#"{"groups": {"group:a": ["group:b"], "group:b": []}}"#,
            "groups[\"group:a\"][0]",
            "group members cannot be recursive",
        ),
        (
            r#"{"tagOwners": {"tag:1x": []}}"#,
            "tagOwners[\"tag:1x\"]",
            "tag names must start with a letter",
        ),
        (
            r#"{"ssh": [{"action": "accept", "src": ["*"], "dst": ["*"], "users": ["root"]}]}"#,
            "ssh[0].dst[0]",
            "invalid dst \"*\"",
        ),
        (
            r#"{"ssh": [{"src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]}]}"#,
            "ssh[0].action",
            "action must be specified",
        ),
        (
            r#"{"ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": []}]}"#,
            "ssh[0].users",
            "users must be specified",
        ),
        (
            r#"{"ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["*"]}]}"#,
            "ssh[0].users[0]",
            "user \"*\" is not valid",
        ),
        (
            r#"{"ssh": [{"action": "check", "checkPeriod": "200h", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]}]}"#,
            "ssh[0].checkPeriod",
            "checkPeriod 200h0m0s is above the max (168h)",
        ),
        (
            r#"{"autoApprovers": {"routes": {"10.0.0.0/33": []}}}"#,
            "autoApprovers.routes[\"10.0.0.0/33\"]",
            "is not a CIDR",
        ),
        (
            r#"{"nodeAttrs": [{"target": ["autogroup:self"], "attr": ["x"]}]}"#,
            "nodeAttrs[0].target[0]",
            "internal server error",
        ),
    ] {
        let e = refuse(text);
        assert_eq!(e.path, path, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
        assert!(e.position.is_some(), "{text}: no position");
    }
}

#[test]
fn forbidden_combinations_are_refused() {
    for (text, message) in [
        (
            r#"{"tagOwners": {"tag:c": []}, "acls": [{"action": "accept", "src": ["tag:c"], "dst": ["autogroup:self:*"]}]}"#,
            "autogroup:self can only be used with users, groups, or supported autogroups",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["autogroup:self"], "ip": ["*"]}]}"#,
            "autogroup:self can only be used with users, groups, or supported autogroups",
        ),
        (
            r#"{"grants": [{"src": ["*"], "dst": ["autogroup:internet"], "app": {"example.com/cap/x": [{}]}}]}"#,
            "cannot use app grants with autogroup:internet",
        ),
        (
            r#"{"tagOwners": {"tag:c": []}, "ssh": [{"action": "accept", "src": ["tag:c"], "dst": ["autogroup:member"], "users": ["root"]}]}"#,
            "tags in SSH source cannot access user-owned devices",
        ),
        (
            r#"{"ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["odin@example.com"], "users": ["root"]}]}"#,
            "requires the source to be that same user only",
        ),
    ] {
        let e = refuse(text);
        assert_eq!(e.kind, ErrorKind::InvalidCombination, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
    // An ACL may combine "*" with autogroup:self (it narrows to the owner's devices).
    assert!(
        Policy::parse(
            r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["autogroup:self:*"]}]}"#
        )
        .is_ok()
    );
}

#[test]
fn failing_tests_block_refuses_the_policy() {
    let policy = r#"{
        "acls": [{"action": "accept", "src": ["odin@example.com"], "dst": ["tag:server:22"]}],
        "tagOwners": {"tag:server": ["odin@example.com"]},
        "tests": [{"src": "odin@example.com", "accept": ["tag:server:22"], "deny": ["tag:server:80"]},
                  {"src": "odin@example.com", "accept": ["tag:server:443"]}]
    }"#;
    let topology = r#"{"users": [{"id": 1, "name": "odin", "email": "odin@example.com"}],
        "nodes": {"laptop": {"user": "odin", "ipv4": "100.64.0.1", "ipv6": "fd7a:115c:a1e0::1"},
                  "server": {"tags": ["tag:server"], "ipv4": "100.64.0.2", "ipv6": "fd7a:115c:a1e0::2"}}}"#;
    let e = headway_policy::explain(policy, topology).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TestsFailed);
    assert_eq!(
        e.message,
        "test(s) failed:\ntests[1]: odin@example.com -> tag:server:443: expected ALLOWED, got DENIED"
    );
}

#[test]
fn localpart_domains_must_belong_to_the_tailnet() {
    let policy = r#"{"tagOwners": {"tag:s": []},
        "ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:s"], "users": ["localpart:*@elsewhere.org"]}]}"#;
    let topology =
        r#"{"users": [{"id": 1, "name": "odin", "email": "odin@example.com"}], "nodes": {}}"#;
    let e = headway_policy::explain(policy, topology).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Undefined);
    assert_eq!(e.path, "ssh[0].users[0]");
    assert!(
        e.message
            .starts_with("elsewhere.org is not associated with this Tailnet"),
        "{e}"
    );
}

#[test]
fn topology_errors_are_not_policy_errors() {
    let e = headway_policy::explain("{}", r#"{"nodes": {"a": {"user": "ghost"}}}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Topology);
    assert!(e.message.contains("unknown user \"ghost\""), "{e}");
}

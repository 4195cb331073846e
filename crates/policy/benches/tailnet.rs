//! Synthetic tailnets for the benchmarks (shared with the profiling example).

use headway_policy::{PolicyNode, PolicyUser};

/// A small deterministic generator (no randomness in benchmarks).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

pub struct Tailnet {
    pub policy: String,
    pub users: Vec<PolicyUser>,
    pub nodes: Vec<PolicyNode>,
}

/// `nodes` nodes (80% owned by users, 20% tagged, 2% subnet routers) and a
/// policy of `rules` ACL entries and grants over 40 groups and 50 tags.
pub fn tailnet(nodes: usize, rules: usize) -> Tailnet {
    let mut rng = Lcg(42);
    let user_count = (nodes / 5).max(1);
    let users: Vec<PolicyUser> = (0..user_count)
        .map(|i| PolicyUser {
            id: i as i64 + 1,
            name: format!("u{i}"),
            email: format!("u{i}@example.com"),
        })
        .collect();
    let tags: Vec<String> = (0..50).map(|i| format!("tag:t{i}")).collect();
    let mut out = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let id = i as i64 + 1;
        let v4 = format!("100.{}.{}.{}", 64 + (i >> 16), (i >> 8) & 0xff, i & 0xff)
            .parse()
            .ok();
        let v6 = format!("fd7a:115c:a1e0::{:x}", i + 1).parse().ok();
        let tagged = i % 5 == 4;
        let mut node = PolicyNode {
            id,
            hostname: format!("n{i}"),
            user: (!tagged).then(|| (rng.next(user_count) + 1) as i64),
            tags: if tagged {
                vec![tags[rng.next(tags.len())].clone()]
            } else {
                vec![]
            },
            ipv4: v4,
            ipv6: v6,
            routable_ips: vec![],
            approved_routes: vec![],
            online: true,
        };
        if tagged && i % 50 == 4 {
            let route = format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff)
                .parse()
                .unwrap_or_else(|_| unreachable!());
            node.routable_ips = vec![route];
            node.approved_routes = vec![route];
        }
        out.push(node);
    }
    let groups: Vec<String> = (0..40)
        .map(|g| {
            let members: Vec<String> = (0..10)
                .map(|_| format!("\"u{}@example.com\"", rng.next(user_count)))
                .collect();
            format!("\"group:g{g}\": [{}]", members.join(", "))
        })
        .collect();
    let tag_owners: Vec<String> = tags
        .iter()
        .map(|t| format!("\"{t}\": [\"group:g0\"]"))
        .collect();
    let mut acls = Vec::new();
    let mut grants = Vec::new();
    for r in 0..rules {
        let tag = &tags[rng.next(tags.len())];
        let other = &tags[rng.next(tags.len())];
        match r % 10 {
            0 => acls.push(format!(
                r#"{{"action": "accept", "src": ["group:g{}"], "dst": ["{tag}:22,443"]}}"#,
                rng.next(40)
            )),
            1 => acls.push(format!(r#"{{"action": "accept", "src": ["{other}"], "dst": ["{tag}:5432"]}}"#)),
            2 => acls.push(format!(
                r#"{{"action": "accept", "src": ["u{}@example.com"], "dst": ["{tag}:*"]}}"#,
                rng.next(user_count)
            )),
            3 => acls.push(r#"{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}"#.to_owned()),
            4 => acls.push(format!(
                r#"{{"action": "accept", "src": ["group:g{}"], "dst": ["10.{}.0.0/16:*"]}}"#,
                rng.next(40),
                rng.next(40)
            )),
            5 => grants.push(format!(r#"{{"src": ["{other}"], "dst": ["{tag}"], "ip": ["tcp:80", "udp:53"]}}"#)),
            6 => grants.push(format!(
                r#"{{"src": ["group:g{}"], "dst": ["{tag}"], "app": {{"example.com/cap/r{r}": [{{"level": {r}}}]}}}}"#,
                rng.next(40)
            )),
            7 => acls.push(format!(r#"{{"action": "accept", "src": ["autogroup:member"], "dst": ["{tag}:80"]}}"#)),
            8 => acls.push(format!(r#"{{"action": "accept", "src": ["{tag}"], "dst": ["autogroup:member:8080"]}}"#)),
            _ => acls.push(format!(r#"{{"action": "accept", "src": ["*"], "dst": ["{tag}:{}"]}}"#, 1000 + r)),
        }
    }
    let policy = format!(
        r#"{{
  // synthetic benchmark policy
  "groups": {{{}}},
  "tagOwners": {{{}}},
  "autoApprovers": {{"routes": {{"10.0.0.0/8": ["group:g0"]}}}},
  "acls": [{}],
  "grants": [{}],
  "ssh": [{{"action": "accept", "src": ["group:g1"], "dst": ["{}"], "users": ["root", "autogroup:nonroot"]}}]
}}"#,
        groups.join(",\n    "),
        tag_owners.join(", "),
        acls.join(",\n    "),
        grants.join(",\n    "),
        tags[0],
    );
    Tailnet {
        policy,
        users,
        nodes: out,
    }
}

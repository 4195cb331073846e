//! Policy engine benchmarks on synthetic tailnets: 1,000 nodes / 200 rules and
//! 10,000 nodes / 1,000 rules. See BENCHMARKS.md for the numbers and how they grow.
//!
//! Run with a short measurement time, e.g.
//! `cargo bench -p headway-policy -- --measurement-time 2 --warm-up-time 1`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use headway_policy::{CompiledPolicy, Policy, PolicyNode, PolicyUser};

/// A small deterministic generator (no randomness in benchmarks).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

struct Tailnet {
    policy: String,
    users: Vec<PolicyUser>,
    nodes: Vec<PolicyNode>,
}

/// `nodes` nodes (80% owned by users, 20% tagged, 2% subnet routers) and a
/// policy of `rules` ACL entries and grants over 40 groups and 50 tags.
fn tailnet(nodes: usize, rules: usize) -> Tailnet {
    let mut rng = Lcg(42);
    let user_count = (nodes / 5).max(1);
    let users: Vec<PolicyUser> = (0..user_count)
        .map(|i| PolicyUser { id: i as i64 + 1, name: format!("u{i}"), email: format!("u{i}@example.com") })
        .collect();
    let tags: Vec<String> = (0..50).map(|i| format!("tag:t{i}")).collect();
    let mut out = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let id = i as i64 + 1;
        let v4 = format!("100.{}.{}.{}", 64 + (i >> 16), (i >> 8) & 0xff, i & 0xff).parse().ok();
        let v6 = format!("fd7a:115c:a1e0::{:x}", i + 1).parse().ok();
        let tagged = i % 5 == 4;
        let mut node = PolicyNode {
            id,
            hostname: format!("n{i}"),
            user: (!tagged).then(|| (rng.next(user_count) + 1) as i64),
            tags: if tagged { vec![tags[rng.next(tags.len())].clone()] } else { vec![] },
            ipv4: v4,
            ipv6: v6,
            routable_ips: vec![],
            approved_routes: vec![],
            online: true,
        };
        if tagged && i % 50 == 4 {
            let route = format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff).parse().unwrap_or_else(|_| unreachable!());
            node.routable_ips = vec![route];
            node.approved_routes = vec![route];
        }
        out.push(node);
    }
    let groups: Vec<String> = (0..40)
        .map(|g| {
            let members: Vec<String> = (0..10).map(|_| format!("\"u{}@example.com\"", rng.next(user_count))).collect();
            format!("\"group:g{g}\": [{}]", members.join(", "))
        })
        .collect();
    let tag_owners: Vec<String> = tags.iter().map(|t| format!("\"{t}\": [\"group:g0\"]")).collect();
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
    Tailnet { policy, users, nodes: out }
}

fn bench_size(c: &mut Criterion, nodes: usize, rules: usize) {
    let t = tailnet(nodes, rules);
    let label = format!("{nodes}n_{rules}r");
    let policy = Arc::new(Policy::parse(&t.policy).unwrap_or_else(|e| panic!("{e}")));
    let compiled = CompiledPolicy::new(Some(policy.clone()), &t.users, &t.nodes).unwrap_or_else(|e| panic!("{e}"));
    println!("{label}: {} identity classes", compiled.class_count());

    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("parse", &label), &t.policy, |b, text| b.iter(|| Policy::parse(black_box(text))));
    g.bench_function(BenchmarkId::new("compile", &label), |b| {
        b.iter(|| CompiledPolicy::new(Some(policy.clone()), black_box(&t.users), black_box(&t.nodes)))
    });
    // One node's full view: filter, peers with their routes, SSH policy.
    let sample: Vec<i64> = (0..nodes).step_by((nodes / 50).max(1)).map(|i| i as i64 + 1).collect();
    g.bench_function(BenchmarkId::new("node_view_x50", &label), |b| {
        b.iter(|| {
            for &id in &sample {
                black_box(compiled.filter_for(id));
                for p in compiled.peers_of(id) {
                    black_box(compiled.peer_view(id, p));
                }
                black_box(compiled.ssh_policy_for(id, "https://control"));
            }
        })
    });
    g.bench_function(BenchmarkId::new("filter_all_nodes", &label), |b| {
        b.iter(|| {
            for n in &t.nodes {
                black_box(compiled.filter_for(n.id));
            }
        })
    });
    // A node joins: recompile and find who must hear about it.
    let mut joined = t.nodes.clone();
    let mut new = t.nodes[0].clone();
    new.id = nodes as i64 + 1;
    new.ipv4 = "100.127.255.254".parse().ok();
    new.ipv6 = "fd7a:115c:a1e0::ffff:fffe".parse().ok();
    joined.push(new);
    g.bench_function(BenchmarkId::new("node_joins", &label), |b| {
        b.iter(|| {
            let after = compiled.recompile(&t.users, &joined).unwrap_or_else(|e| panic!("{e}"));
            black_box(compiled.affected_by_node_change(&after, nodes as i64 + 1))
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_size(c, 1_000, 200);
    bench_size(c, 10_000, 1_000);
}

criterion_group! {
    name = policy;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(policy);

//! Policy engine benchmarks on synthetic tailnets: 1,000 nodes / 200 rules and
//! 10,000 nodes / 1,000 rules. See BENCHMARKS.md for the numbers and how they grow.
//!
//! Run with a short measurement time, e.g.
//! `cargo bench -p headway-policy -- --measurement-time 2 --warm-up-time 1`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // developer tooling: a panic is the report

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use headway_policy::{CompiledPolicy, Policy};

mod tailnet;
use tailnet::tailnet;

fn bench_size(c: &mut Criterion, nodes: usize, rules: usize) {
    let t = tailnet(nodes, rules);
    let label = format!("{nodes}n_{rules}r");
    let policy = Arc::new(Policy::parse(&t.policy).unwrap_or_else(|e| panic!("{e}")));
    let compiled = CompiledPolicy::new(Some(policy.clone()), &t.users, &t.nodes)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{label}: {} identity classes", compiled.class_count());

    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("parse", &label), &t.policy, |b, text| {
        b.iter(|| Policy::parse(black_box(text)))
    });
    g.bench_function(BenchmarkId::new("compile", &label), |b| {
        b.iter(|| {
            CompiledPolicy::new(
                Some(policy.clone()),
                black_box(&t.users),
                black_box(&t.nodes),
            )
        })
    });
    // One node's full view: filter, peers with their routes, SSH policy.
    let sample: Vec<i64> = (0..nodes)
        .step_by((nodes / 50).max(1))
        .map(|i| i as i64 + 1)
        .collect();
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
    // Every node's packet filter, sharing SrcIPs lists (what a full rebuild costs the mapper).
    g.bench_function(BenchmarkId::new("filter_all_nodes", &label), |b| {
        b.iter(|| {
            for n in &t.nodes {
                black_box(compiled.shared_filter_for(n.id));
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
            let after = compiled
                .recompile(&t.users, &joined)
                .unwrap_or_else(|e| panic!("{e}"));
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

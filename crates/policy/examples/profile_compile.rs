//! Profiling/scaling helper: `cargo run --release --example profile_compile -- <nodes> <rules>`
//! compiles a synthetic tailnet and times the main operations once each.

#![allow(clippy::unwrap_used, clippy::expect_used)] // developer tooling: a panic is the report

#[path = "../benches/tailnet.rs"]
mod tailnet;

use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (nodes, rules) = (
        args.first().copied().unwrap_or(10_000),
        args.get(1).copied().unwrap_or(1_000),
    );
    let t = tailnet::tailnet(nodes, rules);
    let policy = std::sync::Arc::new(headway_policy::Policy::parse(&t.policy).unwrap());
    let start = Instant::now();
    let c = headway_policy::CompiledPolicy::new(Some(policy.clone()), &t.users, &t.nodes).unwrap();
    let compile = start.elapsed();
    let start = Instant::now();
    let mut dst_ports = 0usize;
    for n in &t.nodes {
        dst_ports += c
            .shared_filter_for(n.id)
            .iter()
            .map(|r| r.dst_ports.len())
            .sum::<usize>();
    }
    let filters = start.elapsed();
    let start = Instant::now();
    let mut peers = 0usize;
    for n in t.nodes.iter().step_by((nodes / 100).max(1)) {
        for p in c.peers_of(n.id) {
            peers += 1;
            std::hint::black_box(c.peer_view(n.id, p));
        }
    }
    let views = start.elapsed();
    println!(
        "{nodes} nodes, {rules} rules: {} classes; compile {compile:.1?}; all filters {filters:.1?} ({dst_ports} DstPorts); \
         100 nodes' peer lists {views:.1?} ({peers} peers)",
        c.class_count()
    );
}

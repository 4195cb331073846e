//! Profiling helper: compiles a synthetic 10k-node policy a few times.

#![allow(clippy::unwrap_used, clippy::expect_used)] // developer tooling: a panic is the report
#[path = "../benches/tailnet.rs"]
mod tailnet;

fn main() {
    let t = tailnet::tailnet(10_000, 1_000);
    let policy = std::sync::Arc::new(
        headway_policy::Policy::parse(&t.policy).unwrap_or_else(|e| panic!("{e}")),
    );
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let c = headway_policy::CompiledPolicy::new(Some(policy.clone()), &t.users, &t.nodes)
            .unwrap_or_else(|e| panic!("{e}"));
        println!("compile {:?}, {} classes", start.elapsed(), c.class_count());
    }
}

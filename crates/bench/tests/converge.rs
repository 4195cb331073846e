//! The load generator as a behaviour check, small enough for the test suite:
//! 200 nodes against a real server process must all converge (every node
//! sees every other), every change must reach every node, the reconnect storm
//! must bring every client back, and a change must cost each receiver bytes
//! in proportion to the change, not to the tailnet. Nothing here is timed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::Duration;

use headway_bench::{Options, ServerCommand, run};

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_nodes_converge_and_hear_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerCommand {
        program: env!("CARGO_BIN_EXE_headway-bench").into(),
        args: vec!["serve".into()],
    };
    let mut opts = Options::new(200, server, dir.path().to_path_buf());
    opts.register_burst = 20;
    opts.probes = 2;
    opts.idle = Duration::from_secs(1);
    opts.storm_deadline = Duration::from_secs(120);
    opts.converge_timeout = Duration::from_secs(120);
    opts.strict = true;
    let r = run(&opts).await.unwrap();

    assert!(r.converged, "every node must see every other node");
    assert_eq!(
        r.strict_errors, 0,
        "every message must decode as a tailcfg::MapResponse"
    );
    for (what, p) in [
        ("join", &r.join),
        ("endpoint", &r.endpoint),
        ("offline", &r.offline),
    ] {
        assert_eq!(p.probes, 2, "{what}");
        assert_eq!(
            p.missed, 0,
            "{what}: every connected node must hear of the change"
        );
        assert_eq!(p.latency.count, 2 * p.receivers_per_probe, "{what}");
    }
    assert_eq!(r.join.receivers_per_probe, 200);
    assert_eq!(r.endpoint.receivers_per_probe, 199);
    // One peer's record, one patch: not the 200-node map.
    assert!(
        r.join.json_bytes_per_receiver < 2_000.0,
        "{}",
        r.join.json_bytes_per_receiver
    );
    assert!(
        r.endpoint.json_bytes_per_receiver < 300.0,
        "{}",
        r.endpoint.json_bytes_per_receiver
    );
    assert_eq!(r.registration.failed, 0);
    assert_eq!(
        r.idle.other_messages, 0,
        "an idle tailnet sends nothing but keep-alives"
    );
    let storm = r.storm.expect("the storm ran");
    assert_eq!((storm.reconnected, storm.gave_up), (200, 0), "{storm:?}");
}

//! The fuzz targets on the stable toolchain: each runs over its seeds (built
//! here and any files in `corpus/<target>/`), every saved crash in
//! `regressions/<target>/`, then mutated inputs from a seeded generator for a
//! fixed budget. A failing input is written to `target/fuzz-failures/` with
//! the command that replays it; add it to `regressions/<target>/` with the fix.
//!
//! Budget: `HEADWAY_FUZZ_ITERS` inputs (default 3000) or `HEADWAY_FUZZ_SECS`
//! seconds (default 15) per target, whichever ends first; the generator's
//! seed is `HEADWAY_FUZZ_SEED` (default: fixed, so CI is repeatable).
//! `HEADWAY_FUZZ_REPLAY=<file>` runs that one input only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headway_derp::frame::{self, FrameType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MAX_INPUT: usize = 16 * 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

/// One mutation of `input` (or a splice with `other`).
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = rng.gen_range(1..=4);
    for _ in 0..rounds {
        match rng.gen_range(0..8) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.r#gen();
            }
            2 => {
                let i = rng.gen_range(0..=v.len());
                let n = rng.gen_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                v.splice(i..i, bytes);
            }
            3 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                let n = rng.gen_range(1..=(v.len() - i).min(32));
                v.drain(i..i + n);
            }
            4 if !v.is_empty() => {
                let cut = rng.gen_range(0..v.len());
                v.truncate(cut);
            }
            5 if !other.is_empty() => {
                let i = rng.gen_range(0..=v.len());
                let a = rng.gen_range(0..other.len());
                let b = rng.gen_range(a..=other.len());
                v.splice(i..i, other[a..b].iter().copied());
            }
            6 if !v.is_empty() => {
                // Interesting integers where lengths and counts live.
                let i = rng.gen_range(0..v.len());
                let special = [0u8, 1, 0x7f, 0x80, 0xff];
                v[i] = special[rng.gen_range(0..special.len())];
            }
            _ => {
                let i = rng.gen_range(0..=v.len());
                let n = rng.gen_range(0..=8);
                let b: u8 = rng.r#gen();
                v.splice(i..i, std::iter::repeat_n(b, n));
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

fn record_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let hash = input.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    let path = dir.join(format!("{target}-{hash:016x}"));
    std::fs::write(&path, input).unwrap();
    path
}

fn run(target: &str, f: fn(&[u8]), seeds: Vec<Vec<u8>>) {
    if let Ok(file) = std::env::var("HEADWAY_FUZZ_REPLAY") {
        let data = std::fs::read(&file).unwrap();
        f(&data);
        return;
    }
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let try_one = |input: &[u8], origin: &str| {
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            let saved = record_failure(target, input);
            panic!(
                "fuzz target {target} failed on {origin}; input saved at {} \
                 (replay: HEADWAY_FUZZ_REPLAY={} cargo test --manifest-path fuzz/Cargo.toml --test stable {target})",
                saved.display(),
                saved.display()
            );
        }
    };
    for (path, data) in files(&base.join("regressions").join(target)) {
        try_one(&data, &format!("regression {}", path.display()));
    }
    let mut pool = seeds;
    for (_, data) in files(&base.join("corpus").join(target)) {
        pool.push(data);
    }
    pool.push(Vec::new());
    for (i, s) in pool.iter().enumerate() {
        try_one(s, &format!("seed {i}"));
    }
    let iters = env_u64("HEADWAY_FUZZ_ITERS", 3000);
    let budget = Duration::from_secs(env_u64("HEADWAY_FUZZ_SECS", 15));
    let seed = env_u64("HEADWAY_FUZZ_SEED", 0x4845_4144_5741_59);
    let mut rng = StdRng::seed_from_u64(seed ^ target.len() as u64);
    let start = Instant::now();
    let mut ran = 0u64;
    while ran < iters && start.elapsed() < budget {
        let a = &pool[rng.gen_range(0..pool.len())];
        let b = &pool[rng.gen_range(0..pool.len())];
        let input = if rng.gen_ratio(1, 20) {
            let n = rng.gen_range(0..512);
            (0..n).map(|_| rng.r#gen()).collect()
        } else {
            mutate(&mut rng, a, b)
        };
        try_one(&input, &format!("mutated input {ran} (seed {seed})"));
        // Inputs that parse a little further are worth mutating again.
        if pool.len() < 512 && rng.gen_ratio(1, 50) {
            pool.push(input);
        }
        ran += 1;
    }
    eprintln!(
        "fuzz {target}: {ran} mutated inputs in {:.1?} (seed {seed}), no failure",
        start.elapsed()
    );
    assert!(ran > 0, "the budget allowed no input at all");
}

#[test]
fn policy() {
    let seeds = [
        r#"{
  // groups, tags and hosts
  "groups": {"group:admins": ["alice@", "bob@example.com"]},
  "tagOwners": {"tag:server": ["group:admins"], "tag:ci": ["autogroup:member"]},
  "hosts": {"db": "100.64.0.10", "office": "10.1.0.0/16"},
  "acls": [
    {"action": "accept", "src": ["group:admins"], "dst": ["*:*"]},
    {"action": "accept", "src": ["tag:ci"], "dst": ["db:5432", "office:22,80-90"], "proto": "tcp"},
  ],
  /* trailing commas and comments are HuJSON */
  "ssh": [{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"], "checkPeriod": "12h"}],
  "grants": [{"src": ["alice@"], "dst": ["tag:server"], "ip": ["tcp:443"], "app": {"example.com/cap/x": [{"k": 1}]}}],
  "nodeAttrs": [{"target": ["*"], "attr": ["funnel"]}],
  "autoApprovers": {"routes": {"10.0.0.0/8": ["tag:server"]}, "exitNode": ["group:admins"]},
  "tests": [{"src": "alice@", "accept": ["db:5432"], "deny": ["100.64.0.11:80"]}],
}"#,
        r#"{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}"#,
        r#"{"acls":[{"action":"accept","src":["100.64.0.0/10","fd7a:115c:a1e0::/48"],"dst":["[fd7a:115c:a1e0::1]:*"]}]}"#,
        "{\"acls\": [ // unterminated\n",
        "",
    ];
    run(
        "policy",
        headway_fuzz::policy,
        seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
    );
}

#[test]
fn control_json() {
    let register = serde_json::to_vec(&headway_proto::tailcfg::RegisterRequest::default()).unwrap();
    let map = serde_json::to_vec(&headway_proto::tailcfg::MapRequest::default()).unwrap();
    let seeds = vec![
        register,
        map,
        br#"{"Version":133,"NodeKey":"nodekey:0000000000000000000000000000000000000000000000000000000000000001","Auth":{"AuthKey":"hskey-auth-x"},"Hostinfo":{"Hostname":"laptop","OS":"linux","RoutableIPs":["10.0.0.0/24"]},"Expiry":"2030-01-01T00:00:00Z","Followup":"https://h/register/abc"}"#.to_vec(),
        br#"{"Version":133,"Compress":"zstd","KeepAlive":true,"Stream":true,"OmitPeers":false,"DiscoKey":"discokey:0000000000000000000000000000000000000000000000000000000000000002","Endpoints":["1.2.3.4:41641","[::1]:5"],"EndpointTypes":[1,2],"Hostinfo":{"Services":[{"Proto":"tcp","Port":22}]}}"#.to_vec(),
        b"\x05\x00\x00\x00{\"a\":1}".to_vec(),
    ];
    run("control_json", headway_fuzz::control_json, seeds);
}

#[test]
fn noise_framing() {
    let mut record = vec![2u8, 4, 0, 0, 16];
    record.extend([0u8; 16]);
    let seeds = vec![
        vec![0u8],
        [
            &[0u8][..],
            b"AB4AAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB",
        ]
        .concat(),
        [&[1u8][..], &record[..]].concat(),
        [&[1u8][..], &[4u8, 0xff, 0xff][..]].concat(),
        [
            &[2u8][..],
            &[1u8][..],
            &[b'x'; 64][..],
            &[0u8][..],
            &record[..],
        ]
        .concat(),
        [&[2u8][..], &[255u8][..], &[7u8; 16320][..]].concat(),
    ];
    run("noise_framing", headway_fuzz::noise_framing, seeds);
}

fn derp_frame(t: FrameType, payload: &[u8]) -> Vec<u8> {
    let mut v = frame::header(t, payload.len() as u32).to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn derp_frames() {
    let peer = [9u8; 32];
    let mut send = peer.to_vec();
    send.extend_from_slice(b"hello");
    let seeds = vec![
        derp_frame(FrameType::PING, &[1, 2, 3, 4, 5, 6, 7, 8]),
        derp_frame(FrameType::NOTE_PREFERRED, &[1]),
        derp_frame(FrameType::SEND_PACKET, &send),
        [
            derp_frame(FrameType::PONG, &[0; 8]),
            derp_frame(FrameType::WATCH_CONNS, &[]),
            derp_frame(FrameType::CLOSE_PEER, &peer),
        ]
        .concat(),
        derp_frame(FrameType::FORWARD_PACKET, &[peer, peer].concat()),
        frame::header(FrameType::SEND_PACKET, u32::MAX).to_vec(),
    ];
    run("derp_frames", headway_fuzz::derp_frames, seeds);
}

#[test]
fn stun() {
    let request = headway_derp::stun::binding_request([3u8; 12]);
    let response =
        headway_derp::stun::binding_response([4u8; 12], "[2001:db8::1]:3478".parse().unwrap());
    run("stun", headway_fuzz::stun, vec![request, response]);
}

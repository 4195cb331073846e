//! The idle cost of a tailnet of official clients: N real `tailscaled`
//! processes (userspace networking, each with its own socket and state)
//! log into the server, and once they have converged (every node online,
//! every client seeing every other) the server's CPU time is read over an
//! idle window. Official clients are not quiet: they re-report endpoints
//! and host info as their network checks run, and a server that forwards
//! every such report to every peer pays for it here, which the simulated
//! nodes of `run` cannot show.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::procstat::Sample;
use crate::server::{ServerCommand, ServerProcess, admin, metric};

/// What to run.
#[derive(Debug, Clone)]
pub struct ClientsOptions {
    pub clients: usize,
    /// Where `tailscale` and `tailscaled` are (scripts/fetch-tailscale).
    pub tailscale_dir: PathBuf,
    pub server: ServerCommand,
    pub work_dir: PathBuf,
    /// `tailscale up` at once.
    pub concurrency: usize,
    /// Waited after convergence, before the window (start-up chatter).
    pub settle: Duration,
    /// The measured idle window.
    pub idle: Duration,
}

/// What was measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientsResults {
    pub clients: usize,
    pub client_version: String,
    pub server: String,
    /// From the first `tailscale up` to every client seeing every other online.
    pub converge_secs: f64,
    pub settle_secs: f64,
    /// The settling window, right after convergence: the clients' start-up
    /// reports (network checks, DERP homes) still arrive.
    pub settle_server_cpu_percent: f64,
    pub settle_client_updates: f64,
    pub settle_deltas: f64,
    pub idle_secs: f64,
    /// Server CPU over the idle window, in % of one core.
    pub idle_server_cpu_percent: f64,
    /// Map messages (deltas) the server handed to sessions in the window,
    /// all sessions together, and per second.
    pub idle_deltas: f64,
    pub idle_deltas_per_sec: f64,
    /// Full maps (resyncs) in the window: should be none.
    pub idle_full_maps: f64,
    /// What the clients sent meanwhile: map requests reporting endpoints
    /// or host info (`update`), and new map sessions (`stream`).
    pub idle_client_updates: f64,
    pub idle_client_streams: f64,
    /// Keep-alives are not counted: they carry nothing.
    pub server_rss_bytes: u64,
    pub server_peak_rss_bytes: u64,
}

struct Client {
    name: String,
    dir: PathBuf,
    daemon: Child,
}

impl Client {
    fn socket(&self) -> PathBuf {
        self.dir.join("tailscaled.sock")
    }
}

/// Starts the server and the clients, waits for convergence, measures.
pub async fn run_clients(o: &ClientsOptions) -> anyhow::Result<ClientsResults> {
    let tailscale = o.tailscale_dir.join("tailscale");
    let tailscaled = o.tailscale_dir.join("tailscaled");
    for bin in [&tailscale, &tailscaled] {
        if !bin.exists() {
            bail!(
                "{} is missing: install the official client with scripts/fetch-tailscale <version> <dir>",
                bin.display()
            );
        }
    }
    let client_version = version(&tailscale).await?;
    let mut server = ServerProcess::spawn(&o.server, &o.work_dir.join("server")).await?;
    let key = server.create_auth_key("bench").await?;

    let mut clients = Vec::with_capacity(o.clients);
    for i in 0..o.clients {
        clients.push(start_daemon(&tailscaled, &o.work_dir, i).await?);
    }
    let started = Instant::now();
    let ups = futures::stream::iter(clients.iter().map(|c| up(&tailscale, c, &server.url, &key)))
        .buffer_unordered(o.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for r in ups {
        r?;
    }
    wait_converged(&server, &tailscale, &clients).await?;
    let converge = started.elapsed();
    tracing::info!(?converge, "every client sees every other online");

    let counters = [
        "headway_map_updates_sent_total{kind=\"delta\"}",
        "headway_map_updates_sent_total{kind=\"full\"}",
        "headway_map_requests_total{kind=\"update\"}",
        "headway_map_requests_total{kind=\"stream\"}",
    ];
    let read = async || -> anyhow::Result<[f64; 4]> {
        let mut v = [0.0; 4];
        for (slot, name) in v.iter_mut().zip(counters) {
            *slot = metric(server.metrics_addr, name).await?;
        }
        Ok(v)
    };
    let settling = (server.process().sample()?, read().await?);
    tokio::time::sleep(o.settle).await;
    let before = (server.process().sample()?, read().await?, Instant::now());
    tokio::time::sleep(o.idle).await;
    let after: (Sample, [f64; 4]) = (server.process().sample()?, read().await?);
    let delta = |i: usize| after.1[i] - before.1[i];
    let settled = |i: usize| before.1[i] - settling.1[i];
    let settle_secs = o.settle.as_secs_f64().max(0.001);
    let window = before.2.elapsed().as_secs_f64();
    if !server.is_running() {
        bail!(
            "the server exited during the run; see {}",
            server.log.display()
        );
    }
    let results = ClientsResults {
        clients: o.clients,
        client_version,
        server: o.server.describe(),
        converge_secs: converge.as_secs_f64(),
        settle_secs: o.settle.as_secs_f64(),
        settle_server_cpu_percent: 100.0 * (before.0.cpu_seconds - settling.0.cpu_seconds)
            / settle_secs,
        settle_client_updates: settled(2),
        settle_deltas: settled(0),
        idle_secs: window,
        idle_server_cpu_percent: 100.0 * (after.0.cpu_seconds - before.0.cpu_seconds) / window,
        idle_deltas: delta(0),
        idle_deltas_per_sec: delta(0) / window,
        idle_full_maps: delta(1),
        idle_client_updates: delta(2),
        idle_client_streams: delta(3),
        server_rss_bytes: after.0.rss_bytes,
        server_peak_rss_bytes: after.0.peak_rss_bytes,
    };
    for mut c in clients {
        let _ = c.daemon.start_kill();
        let _ = c.daemon.wait().await;
    }
    server.stop().await?;
    Ok(results)
}

async fn version(tailscale: &Path) -> anyhow::Result<String> {
    let out = Command::new(tailscale).arg("version").output().await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

async fn start_daemon(tailscaled: &Path, work: &Path, i: usize) -> anyhow::Result<Client> {
    let name = format!("client-{i:03}");
    let dir = std::path::absolute(work.join(&name))?;
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("tailscaled.log"))?;
    let socket = dir.join("tailscaled.sock");
    let daemon = Command::new(tailscaled)
        .arg("--tun=userspace-networking")
        .arg("--no-logs-no-support")
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--statedir={}", dir.join("state").display()))
        .arg("--port=0")
        .env("TS_NO_LOGS_NO_SUPPORT", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", tailscaled.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!(
                "{name}: tailscaled made no socket within 30 s; see {}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Client { name, dir, daemon })
}

async fn ts(tailscale: &Path, c: &Client, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(tailscale)
        .arg(format!("--socket={}", c.socket().display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "{}: tailscale {}: {}{}",
            c.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn up(tailscale: &Path, c: &Client, url: &str, key: &str) -> anyhow::Result<()> {
    let login = format!("--login-server={url}");
    let key = format!("--authkey={key}");
    let host = format!("--hostname={}", c.name);
    ts(tailscale, c, &["up", &login, &key, &host, "--timeout=120s"])
        .await
        .map(|_| ())
}

/// Every node online on the server, then every client seeing all others
/// online (each client asked until it does, 120 s at most).
async fn wait_converged(
    server: &ServerProcess,
    tailscale: &Path,
    clients: &[Client],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let nodes = admin(&server.socket, Method::GET, "/api/v1/node", None).await?;
        let online = nodes["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["online"] == true).count());
        if online == clients.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("{online} of {} nodes online after 120 s", clients.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for c in clients {
        loop {
            let status: Value =
                serde_json::from_str(&ts(tailscale, c, &["status", "--json"]).await?)?;
            let seen = status["Peer"]
                .as_object()
                .map_or(0, |p| p.values().filter(|p| p["Online"] == true).count());
            if seen + 1 == clients.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} sees {seen} of {} peers online after 120 s",
                    c.name,
                    clients.len() - 1
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// The results as a Markdown table (for `docs/benchmarks.md`).
pub fn markdown(r: &ClientsResults) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "| measure | value |\n|---|---|\n\
         | official clients | {} ({}) |\n\
         | converged (every client sees every other online) | {:.1} s after the first `tailscale up` |\n\
         | settling, the {:.0} s after convergence | server CPU {:.2}% of one core; {:.0} reports from the clients; {:.0} map deltas sent |\n\
         | idle window | {:.0} s, after the settling |\n\
         | **server CPU while idle** | **{:.2}% of one core** |\n\
         | endpoint/host-info reports from the clients while idle | {:.0} ({:.2}/s), and {:.0} new map sessions |\n\
         | map deltas sent while idle | {:.0} ({:.2}/s, all sessions together) |\n\
         | full maps sent while idle | {:.0} |\n\
         | server RSS / peak | {:.1} MiB / {:.1} MiB |\n",
        r.clients,
        r.client_version,
        r.converge_secs,
        r.settle_secs,
        r.settle_server_cpu_percent,
        r.settle_client_updates,
        r.settle_deltas,
        r.idle_secs,
        r.idle_server_cpu_percent,
        r.idle_client_updates,
        r.idle_client_updates / r.idle_secs.max(1.0),
        r.idle_client_streams,
        r.idle_deltas,
        r.idle_deltas_per_sec,
        r.idle_full_maps,
        mib(r.server_rss_bytes),
        mib(r.server_peak_rss_bytes),
    )
}

//! One benchmark run: start the server, bring up N simulated nodes, then
//! measure registration, propagation of joins, endpoint changes and
//! disconnects, the idle cost, and a reconnect storm.
//!
//! Phases run one after the other so each measurement has the machine to
//! itself (apart from the generator, which shares it with the server).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use headway_proto::noise;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::digest::PeerSet;
use crate::node::{MAP_WATCHDOG, NOISE_VERSION, NodeError, Observation, Probe, Shared, SimNode};
use crate::procstat::{Process, Sample};
use crate::profile::Recording;
use crate::results::*;
use crate::server::{ServerCommand, ServerProcess};
use crate::stats::Summary;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes kept connected and streaming.
    pub nodes: usize,
    /// Nodes joining at once while the tailnet is brought up, and in the
    /// registration measurement.
    pub concurrency: usize,
    /// Nodes registered for the registration-throughput measurement.
    pub register_burst: usize,
    /// Changes measured per kind (join, endpoint, offline).
    pub probes: usize,
    /// Length of the keep-alive-only window.
    pub idle: Duration,
    /// Run the reconnect storm.
    pub storm: bool,
    /// How long the storm's clients keep trying.
    pub storm_deadline: Duration,
    /// How long to wait for every node to know every peer.
    pub converge_timeout: Duration,
    /// Decode every message with the full `tailcfg` types too.
    pub strict: bool,
    pub server: ServerCommand,
    /// Holds the server's data directory, log and profiles.
    pub work_dir: PathBuf,
    /// The server is killed if its RSS passes this (protects the machine).
    pub rss_limit_bytes: u64,
    /// Record a `perf` profile of the server in each phase.
    pub profile: bool,
    /// Stop (keeping what was measured) when the run takes longer.
    pub time_limit: Option<Duration>,
}

impl Options {
    pub fn new(nodes: usize, server: ServerCommand, work_dir: PathBuf) -> Self {
        Self {
            nodes,
            concurrency: 32,
            register_burst: 200,
            probes: 5,
            idle: Duration::from_secs(60),
            storm: true,
            storm_deadline: Duration::from_secs(180),
            converge_timeout: Duration::from_secs(600),
            strict: false,
            server,
            work_dir,
            rss_limit_bytes: 12 << 30,
            profile: false,
            time_limit: None,
        }
    }
}

/// Runs the benchmark. The server process is stopped whatever happens.
pub async fn run(opts: &Options) -> anyhow::Result<Results> {
    check_open_files(opts.nodes)?;
    let server = ServerProcess::spawn(&opts.server, &opts.work_dir.join("server")).await?;
    let pid = server.pid;
    let mut bench = Bench::start(opts, server).await?;
    let outcome = bench.phases().await;
    let Bench {
        server, results, ..
    } = bench;
    let stopped = server.stop().await;
    if let Err(e) = &outcome {
        tracing::error!(server.pid = pid, "run failed: {e:#}");
    }
    outcome?;
    stopped?;
    Ok(results)
}

fn check_open_files(nodes: usize) -> anyhow::Result<()> {
    let limit = Process::Current.open_files_limit()?;
    // Each node holds one connection in the generator and one in the server
    // (which inherits this limit); the probes and the burst add a few hundred.
    let need = nodes as u64 + 1000;
    if limit < need {
        bail!(
            "the open-files limit is {limit}, and {nodes} nodes need about {need}: raise it first, e.g. `ulimit -n {}` (scripts/bench does)",
            need.max(20_000)
        );
    }
    Ok(())
}

/// The state of a run between phases.
struct Bench<'a> {
    opts: &'a Options,
    server: ServerProcess,
    shared: Arc<Shared>,
    probe_tx: watch::Sender<Probe>,
    observations: mpsc::UnboundedReceiver<Observation>,
    next_probe: u32,
    /// The streaming nodes, in index order.
    nodes: Vec<SimNode>,
    /// Nodes registered (burst, join probes) that do not stream.
    registered_only: usize,
    results: Results,
    monitor: Monitor,
    before_storm_peak: u64,
    /// The profile being recorded, with its phase.
    recording: Option<(&'static str, Recording)>,
}

impl<'a> Bench<'a> {
    async fn start(opts: &'a Options, server: ServerProcess) -> anyhow::Result<Self> {
        let auth_key = server
            .create_auth_key("bench")
            .await
            .context("creating the benchmark's user and key")?;
        // Fetched once for all nodes: the official client also keeps it.
        let server_key = noise::fetch_server_key(&server.url, NOISE_VERSION).await?;
        let (probe_tx, probes) = watch::channel(Probe::Nothing);
        let (observations_tx, observations) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            url: server.url.clone(),
            server_key,
            auth_key,
            probes,
            observations: observations_tx,
            strict: opts.strict,
            strict_errors: AtomicU64::new(0),
        });
        let monitor = Monitor::spawn(server.pid, opts.rss_limit_bytes, opts.time_limit);
        let results = Results {
            nodes: opts.nodes,
            environment: environment(opts)?,
            ..Default::default()
        };
        Ok(Self {
            opts,
            server,
            shared,
            probe_tx,
            observations,
            next_probe: 1,
            nodes: Vec::new(),
            registered_only: 0,
            results,
            monitor,
            before_storm_peak: 0,
            recording: None,
        })
    }

    fn server_sample(&self) -> anyhow::Result<Sample> {
        self.server
            .process()
            .sample()
            .context("reading the server's /proc entries (has it exited?)")
    }

    fn profile_start(&mut self, phase: &'static str) {
        if !self.opts.profile {
            return;
        }
        let path = self.opts.work_dir.join(format!("perf-{phase}.data"));
        match Recording::start(self.server.pid, &path) {
            Ok(r) => self.recording = Some((phase, r)),
            Err(e) => tracing::warn!("no profile of {phase}: {e:#}"),
        }
    }

    /// Ends the open profile (also after a phase failed) and keeps it.
    async fn profile_finish(&mut self) {
        if let Some((phase, r)) = self.recording.take() {
            match r.finish(25).await {
                Ok(lines) => {
                    self.results.profiles.insert(phase.to_string(), lines);
                }
                Err(e) => tracing::warn!("no profile of {phase}: {e:#}"),
            }
        }
    }

    fn registered(&self) -> usize {
        self.nodes.len() + self.registered_only
    }

    /// Runs every phase; when the memory guard stops the server, the
    /// results so far are kept and marked as aborted.
    async fn phases(&mut self) -> anyhow::Result<()> {
        let generator_start = Process::Current.sample()?;
        let outcome = self.measure().await;
        self.profile_finish().await;
        let generator_end = Process::Current.sample()?;
        let end = self.server_sample().ok();
        let storm_peak = self
            .results
            .storm
            .as_ref()
            .map_or(0, |s| s.server_peak_rss_bytes);
        let timeline = std::mem::take(&mut *self.monitor.state.timeline.lock());
        let s = &mut self.results.server;
        s.cpu_seconds = end.map_or_else(
            || timeline.last().map_or(0.0, |p| p.server_cpu_seconds),
            |e| e.cpu_seconds,
        );
        s.peak_rss_bytes = self
            .before_storm_peak
            .max(storm_peak)
            .max(self.monitor.peak())
            .max(end.map_or(0, |e| e.peak_rss_bytes));
        s.cpu_seconds_per_node = self.results.ramp.server_cpu_seconds / self.opts.nodes as f64;
        let g = &mut self.results.generator;
        g.cpu_seconds = generator_end.cpu_seconds - generator_start.cpu_seconds;
        g.peak_rss_bytes = generator_end.peak_rss_bytes;
        g.cpu_seconds_per_node = g.cpu_seconds / self.opts.nodes as f64;
        self.results.timeline = timeline;
        self.results.strict_errors = self.shared.strict_errors.load(Ordering::Relaxed);
        self.results.aborted = self.monitor.tripped();
        self.results.targets = targets(&self.results, self.opts.storm);
        match self.results.aborted {
            Some(_) => Ok(()),
            None => outcome,
        }
    }

    async fn measure(&mut self) -> anyhow::Result<()> {
        self.ramp().await?;
        let connected = self.server_sample()?;
        self.results.server.rss_bytes_connected = connected.rss_bytes;
        self.results.server.rss_bytes_per_node =
            connected.rss_bytes as f64 / self.opts.nodes as f64;
        self.results.server.open_files_connected = self.server.process().open_files().unwrap_or(0);
        self.monitor.check()?;
        self.monitor.set_phase("registration");
        self.registration().await?;
        self.monitor.check()?;
        self.monitor.set_phase("probes");
        self.results.join = self.join_probes().await?;
        self.results.endpoint = self.endpoint_probes().await?;
        self.results.offline = self.offline_probes().await?;
        self.monitor.check()?;
        self.monitor.set_phase("idle");
        self.idle().await?;
        self.before_storm_peak = self.server_sample()?.peak_rss_bytes;
        if self.opts.storm {
            self.monitor.check()?;
            self.monitor.set_phase("storm");
            self.results.storm = Some(self.storm().await?);
        }
        self.monitor.set_phase("end");
        self.results.converged = self.converged().await;
        Ok(())
    }

    /// Brings the tailnet up: every node dials, registers and streams.
    async fn ramp(&mut self) -> anyhow::Result<()> {
        let n = self.opts.nodes;
        progress(format_args!(
            "ramp: bringing up {n} nodes, {} at a time",
            self.opts.concurrency
        ));
        self.profile_start("ramp");
        let server0 = self.server_sample()?;
        let generator0 = Process::Current.sample()?;
        let start = Instant::now();
        self.monitor.set_phase("ramp");
        let monitor = self.monitor.state.clone();
        let ticker = Ticker::spawn("ramp", n, monitor.clone(), self.server.pid);
        let shared = self.shared.clone();
        let outcomes = each_node(
            (0..n).map(SimNode::new).collect(),
            self.opts.concurrency,
            move |mut node| {
                let shared = shared.clone();
                let monitor = monitor.clone();
                async move {
                    if monitor.stop.load(Ordering::Relaxed) {
                        return (node, Err(NodeError::Aborted));
                    }
                    let outcome = bring_up(&mut node, &shared, &monitor.stop).await;
                    if outcome.is_ok() {
                        monitor.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    (node, outcome)
                }
            },
        )
        .await?;
        drop(ticker);
        let up_at = Instant::now();
        let mut register = Vec::new();
        let mut first_map = Vec::new();
        let mut failed_attempts = 0;
        for (node, outcome) in outcomes {
            match outcome {
                Ok(up) => {
                    register.push(up.register);
                    first_map.push(up.first_map);
                    failed_attempts += up.failed_attempts;
                    self.nodes.push(node);
                }
                Err(e) => {
                    self.monitor.check()?;
                    bail!(
                        "node {} could not join after several attempts: {e}",
                        node.state.index
                    )
                }
            }
        }
        self.monitor.check()?;
        let converge_seconds = self.wait_converged("ramp").await?;
        let seconds = (up_at - start).as_secs_f64();
        let server1 = self.server_sample()?;
        let generator1 = Process::Current.sample()?;
        self.results.ramp = Ramp {
            concurrency: self.opts.concurrency,
            seconds,
            nodes_per_second: n as f64 / seconds,
            register: Summary::of(&register),
            first_map: Summary::of(&first_map),
            converge_seconds,
            failed_attempts,
            server_cpu_seconds: server1.cpu_seconds - server0.cpu_seconds,
            generator_cpu_seconds: generator1.cpu_seconds - generator0.cpu_seconds,
        };
        self.profile_finish().await;
        progress(format_args!(
            "ramp: {n} nodes up in {seconds:.1} s, converged {converge_seconds:.1} s later; server RSS {} MiB",
            server1.rss_bytes >> 20
        ));
        Ok(())
    }

    /// Polls until every streaming node has every registered node as a peer.
    async fn wait_converged(&self, phase: &str) -> anyhow::Result<f64> {
        let start = Instant::now();
        let want = self.registered() - 1;
        loop {
            let behind = self
                .nodes
                .iter()
                .filter(|n| n.state.peer_count() != want)
                .count();
            if behind == 0 {
                return Ok(start.elapsed().as_secs_f64());
            }
            if start.elapsed() > self.opts.converge_timeout {
                bail!(
                    "{phase}: {behind} nodes still do not know all {want} peers after {:?}",
                    self.opts.converge_timeout
                );
            }
            self.monitor.check()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every streaming node knows exactly the same registered nodes.
    async fn converged(&self) -> bool {
        if self.wait_converged("final check").await.is_err() {
            return false;
        }
        let all_ids = union_of_views(&self.nodes);
        all_ids.len() == self.registered()
            && self.nodes.iter().all(|n| n.state.sees_exactly(&all_ids))
    }

    /// New nodes register while every node streams.
    async fn registration(&mut self) -> anyhow::Result<()> {
        let m = self.opts.register_burst;
        if m == 0 {
            return Ok(());
        }
        progress(format_args!(
            "registration: {m} new nodes while {} stream",
            self.nodes.len()
        ));
        self.profile_start("registration");
        let server0 = self.server_sample()?;
        let shared = self.shared.clone();
        let first = self.nodes.len() + self.registered_only;
        let start = Instant::now();
        let outcomes = each_node(
            (first..first + m).map(SimNode::new).collect(),
            self.opts.concurrency,
            move |mut node| {
                let shared = shared.clone();
                async move {
                    let t = Instant::now();
                    let outcome = async {
                        node.connect(&shared).await?;
                        node.register(&shared).await
                    }
                    .await
                    .map(|()| t.elapsed());
                    node.disconnect();
                    (node, outcome)
                }
            },
        )
        .await?;
        let seconds = start.elapsed().as_secs_f64();
        let server1 = self.server_sample()?;
        let mut latency = Vec::new();
        let mut failed = 0;
        for (_, outcome) in outcomes {
            match outcome {
                Ok(d) => latency.push(d),
                Err(e) => {
                    tracing::warn!("registration failed: {e}");
                    failed += 1;
                }
            }
        }
        self.registered_only += latency.len();
        self.results.registration = Registration {
            nodes: m,
            concurrency: self.opts.concurrency,
            connected: self.nodes.len(),
            seconds,
            nodes_per_second: latency.len() as f64 / seconds,
            latency: Summary::of(&latency),
            failed,
            server_cpu_seconds: server1.cpu_seconds - server0.cpu_seconds,
        };
        self.profile_finish().await;
        self.wait_converged("registration").await?;
        progress(format_args!(
            "registration: {:.0} nodes/s",
            self.results.registration.nodes_per_second
        ));
        Ok(())
    }

    fn new_probe(&mut self, probe: impl FnOnce(u32) -> Probe) -> u32 {
        let id = self.next_probe;
        self.next_probe += 1;
        self.probe_tx.send_replace(probe(id));
        id
    }

    /// Collects the receivers' observations of probe `id` since `t0`.
    async fn collect(
        &mut self,
        id: u32,
        receivers: usize,
        t0: Instant,
        probe: &mut ProbeTally,
    ) -> anyhow::Result<()> {
        let deadline = t0 + Duration::from_secs(60);
        let mut seen = 0;
        let mut last = Duration::ZERO;
        while seen < receivers {
            match tokio::time::timeout_at(deadline, self.observations.recv()).await {
                Ok(Some(o)) if o.probe == id => {
                    let latency = o.at.saturating_duration_since(t0);
                    last = last.max(latency);
                    probe.latencies.push(latency);
                    probe.wire_bytes += o.wire_bytes as u64;
                    probe.json_bytes += o.json_bytes as u64;
                    seen += 1;
                }
                Ok(Some(_)) => {} // a late report of an earlier probe
                Ok(None) => bail!("the observation channel closed"),
                Err(_) => break,
            }
        }
        probe.missed += receivers - seen;
        probe.last.push(last.as_secs_f64() * 1e3);
        self.probe_tx.send_replace(Probe::Nothing);
        // Let the change's other consequences (filters, online state) settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    /// A new node registers; every streaming node must hear of it.
    async fn join_probes(&mut self) -> anyhow::Result<Propagation> {
        progress(format_args!(
            "join propagation: {} probes",
            self.opts.probes
        ));
        let mut tally = ProbeTally::default();
        for _ in 0..self.opts.probes {
            let mut node = SimNode::new(self.registered());
            node.connect(&self.shared).await?;
            let key = node.node_key();
            let id = self.new_probe(|id| Probe::Join { id, key });
            let t0 = Instant::now();
            node.register(&self.shared).await?;
            node.disconnect();
            self.registered_only += 1;
            self.collect(id, self.nodes.len(), t0, &mut tally).await?;
        }
        Ok(tally.finish(self.nodes.len()))
    }

    /// A streaming node reports new endpoints; every other must get the patch.
    async fn endpoint_probes(&mut self) -> anyhow::Result<Propagation> {
        progress(format_args!(
            "endpoint propagation: {} probes",
            self.opts.probes
        ));
        let mut tally = ProbeTally::default();
        let k = self.opts.probes;
        for i in 0..k {
            let at = i * self.nodes.len() / k.max(1);
            let node_id = self.nodes[at].state.node_id();
            let endpoint: std::net::SocketAddr =
                ([203, 0, 113, (i % 250) as u8 + 1], 40_000 + i as u16).into();
            let endpoints = vec![endpoint, ([192, 0, 2, 254], 41641).into()];
            let id = self.new_probe(|id| Probe::Endpoint {
                id,
                node_id,
                endpoint: endpoint.to_string(),
            });
            let t0 = Instant::now();
            self.nodes[at].set_endpoints(endpoints).await?;
            self.collect(id, self.nodes.len() - 1, t0, &mut tally)
                .await?;
        }
        Ok(tally.finish(self.nodes.len() - 1))
    }

    /// A streaming node disconnects; every other must see it go offline.
    /// It then reconnects, so the idle phase has every node again.
    async fn offline_probes(&mut self) -> anyhow::Result<Propagation> {
        progress(format_args!(
            "offline propagation: {} probes",
            self.opts.probes
        ));
        let mut tally = ProbeTally::default();
        let k = self.opts.probes;
        for i in 0..k {
            let at = (i * self.nodes.len() / k.max(1) + 1) % self.nodes.len();
            let node_id = self.nodes[at].state.node_id();
            let id = self.new_probe(|id| Probe::Offline { id, node_id });
            let t0 = Instant::now();
            self.nodes[at].disconnect();
            self.collect(id, self.nodes.len() - 1, t0, &mut tally)
                .await?;
            let shared = self.shared.clone();
            let node = &mut self.nodes[at];
            node.connect(&shared).await?;
            node.stream(&shared, MAP_WATCHDOG).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(tally.finish(self.nodes.len() - 1))
    }

    fn message_totals(&self) -> (u64, u64, u64) {
        self.nodes.iter().fold((0, 0, 0), |(m, k, w), n| {
            let c = &n.state.counters;
            (
                m + c.messages.load(Ordering::Relaxed),
                k + c.keep_alives.load(Ordering::Relaxed),
                w + c.wire_bytes.load(Ordering::Relaxed),
            )
        })
    }

    /// Nothing changes: the server only sends keep-alives.
    async fn idle(&mut self) -> anyhow::Result<()> {
        if self.opts.idle.is_zero() {
            return Ok(());
        }
        progress(format_args!(
            "idle: {:?} of keep-alives only",
            self.opts.idle
        ));
        self.profile_start("idle");
        let (m0, k0, w0) = self.message_totals();
        let server0 = self.server_sample()?;
        let generator0 = Process::Current.sample()?;
        let start = Instant::now();
        tokio::time::sleep(self.opts.idle).await;
        let seconds = start.elapsed().as_secs_f64();
        let server1 = self.server_sample()?;
        let generator1 = Process::Current.sample()?;
        let (m1, k1, w1) = self.message_totals();
        let cpu = server1.cpu_seconds - server0.cpu_seconds;
        self.results.idle = Idle {
            seconds,
            server_cpu_seconds: cpu,
            server_core_percent: 100.0 * cpu / seconds,
            generator_core_percent: 100.0 * (generator1.cpu_seconds - generator0.cpu_seconds)
                / seconds,
            keep_alives: k1 - k0,
            other_messages: (m1 - m0) - (k1 - k0),
            wire_bytes: w1 - w0,
        };
        self.profile_finish().await;
        progress(format_args!(
            "idle: server at {:.2}% of a core",
            self.results.idle.server_core_percent
        ));
        Ok(())
    }

    /// Every node drops its connection at once and reconnects at once.
    async fn storm(&mut self) -> anyhow::Result<Storm> {
        let n = self.nodes.len();
        progress(format_args!("reconnect storm: {n} clients"));
        self.profile_start("storm");
        reset_peak_rss(self.server.pid);
        let server0 = self.server_sample()?;
        let generator0 = Process::Current.sample()?;
        let full_maps0: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.state.counters.full_maps.load(Ordering::Relaxed))
            .collect();
        let start = Instant::now();
        for node in &mut self.nodes {
            node.disconnect();
        }
        let monitor = self.monitor.state.clone();
        monitor.connected.store(0, Ordering::Relaxed);
        let ticker = Ticker::spawn("storm", n, monitor.clone(), self.server.pid);
        let shared = self.shared.clone();
        let deadline = start + self.opts.storm_deadline;
        let nodes = std::mem::take(&mut self.nodes);
        // No limit: all clients at once, as after a server restart.
        let outcomes = each_node(nodes, usize::MAX, move |mut node| {
            let shared = shared.clone();
            let monitor = monitor.clone();
            async move {
                let outcome = reconnect(&mut node, &shared, deadline, &monitor.stop).await;
                if outcome.settled_at.is_some() {
                    monitor.connected.fetch_add(1, Ordering::Relaxed);
                }
                (node, outcome)
            }
        })
        .await?;
        drop(ticker);
        // The memory guard may have killed the server: keep what is known.
        let server1 = self.server_sample().unwrap_or(server0);
        let generator1 = Process::Current.sample()?;
        let mut storm = Storm {
            clients: n,
            server_cpu_seconds: server1.cpu_seconds - server0.cpu_seconds,
            server_peak_rss_bytes: server1.peak_rss_bytes.max(self.monitor.peak()),
            generator_cpu_seconds: generator1.cpu_seconds - generator0.cpu_seconds,
            aborted: self.monitor.tripped(),
            ..Default::default()
        };
        let mut settled = Vec::new();
        for (node, outcome) in outcomes {
            storm.max_attempts = storm.max_attempts.max(outcome.attempts);
            storm.failed_attempts += outcome.failures.len();
            if !outcome.failures.is_empty() {
                storm.clients_retried += 1;
            }
            for f in outcome.failures {
                *storm.failures.entry(f).or_default() += 1;
            }
            match outcome.settled_at {
                Some(at) => settled.push(at.saturating_duration_since(start)),
                None => storm.gave_up += 1,
            }
            self.nodes.push(node);
        }
        storm.reconnected = settled.len();
        settled.sort();
        if let Some(half) = settled.get(settled.len() / 2) {
            storm.half_seconds = half.as_secs_f64();
        }
        if storm.gave_up == 0 {
            storm.settled_seconds = settled.last().map(Duration::as_secs_f64);
        }
        // Every node must have had a new full map.
        let fresh = self
            .nodes
            .iter()
            .zip(&full_maps0)
            .filter(|(n, before)| n.state.counters.full_maps.load(Ordering::Relaxed) > **before)
            .count();
        if fresh != n && storm.gave_up == 0 {
            tracing::warn!("only {fresh} of {n} clients received a new full map");
        }
        self.profile_finish().await;
        progress(format_args!(
            "reconnect storm: {} of {n} back, last after {:.1} s, {} failed attempts",
            storm.reconnected,
            settled.last().map_or(f64::NAN, Duration::as_secs_f64),
            storm.failed_attempts
        ));
        Ok(storm)
    }
}

/// The observations of one kind of probe.
#[derive(Debug, Default)]
struct ProbeTally {
    latencies: Vec<Duration>,
    last: Vec<f64>,
    missed: usize,
    wire_bytes: u64,
    json_bytes: u64,
}

impl ProbeTally {
    fn finish(self, receivers: usize) -> Propagation {
        let seen = self.latencies.len().max(1) as f64;
        Propagation {
            probes: self.last.len(),
            receivers_per_probe: receivers,
            latency: Summary::of(&self.latencies),
            last_receiver_ms: self.last,
            missed: self.missed,
            wire_bytes_per_receiver: self.wire_bytes as f64 / seen,
            json_bytes_per_receiver: self.json_bytes as f64 / seen,
        }
    }
}

/// The union of all streaming nodes' peers and themselves: every node the
/// tailnet has, as far as its members know.
fn union_of_views(nodes: &[SimNode]) -> PeerSet {
    let mut all = PeerSet::default();
    for n in nodes {
        all.insert(n.state.node_id());
    }
    if let Some(first) = nodes.first() {
        for id in first.state.peer_ids() {
            all.insert(id);
        }
    }
    all
}

struct BroughtUp {
    register: Duration,
    first_map: Duration,
    failed_attempts: usize,
}

/// Dial, register and stream, retrying a few times like a client would.
async fn bring_up(
    node: &mut SimNode,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
) -> Result<BroughtUp, NodeError> {
    let mut failed_attempts = 0;
    let mut registered = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(NodeError::Aborted);
        }
        let attempt = async {
            node.connect(shared).await?;
            if registered.is_none() {
                let t = Instant::now();
                node.register(shared).await?;
                registered = Some(t.elapsed());
            }
            let t = Instant::now();
            node.stream(shared, MAP_WATCHDOG).await?;
            Ok::<_, NodeError>(t.elapsed())
        };
        match attempt.await {
            Ok(first_map) => {
                return Ok(BroughtUp {
                    register: registered.unwrap_or_default(),
                    first_map,
                    failed_attempts,
                });
            }
            Err(e) if failed_attempts < 4 => {
                tracing::warn!(
                    node = node.state.index,
                    "join attempt failed, retrying: {e}"
                );
                failed_attempts += 1;
                node.disconnect();
                tokio::time::sleep(Duration::from_secs(1 << failed_attempts)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

struct Reconnected {
    settled_at: Option<Instant>,
    attempts: usize,
    failures: Vec<String>,
}

/// Reconnects (dial and stream, no new registration, as a client does when
/// its connection breaks) until a full map arrives or `deadline` passes.
/// Failed attempts back off like the official client (1 s doubling, 30 s cap).
async fn reconnect(
    node: &mut SimNode,
    shared: &Arc<Shared>,
    deadline: Instant,
    stop: &AtomicBool,
) -> Reconnected {
    let mut out = Reconnected {
        settled_at: None,
        attempts: 0,
        failures: Vec::new(),
    };
    let mut backoff = Duration::from_secs(1);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        out.attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = async {
            node.connect(shared).await?;
            node.stream(shared, MAP_WATCHDOG.min(left)).await
        };
        match attempt.await {
            Ok(at) => {
                out.settled_at = Some(at);
                return out;
            }
            Err(e) => {
                out.failures.push(e.kind().to_string());
                node.disconnect();
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    out
}

/// Runs `f` on every node, at most `limit` at a time, each in a task of its
/// own (so both cores work); returns the nodes with their outcomes in order.
async fn each_node<F, Fut, R>(
    nodes: Vec<SimNode>,
    limit: usize,
    f: F,
) -> anyhow::Result<Vec<(SimNode, R)>>
where
    F: Fn(SimNode) -> Fut,
    Fut: Future<Output = (SimNode, R)> + Send + 'static,
    R: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS)));
    let mut tasks = Vec::with_capacity(nodes.len());
    for node in nodes {
        let permits = permits.clone();
        let work = f(node);
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            work.await
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.context("a simulated node's task panicked")?);
    }
    Ok(out)
}

/// Prints progress of a long phase every few seconds.
struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    fn spawn(phase: &'static str, total: usize, monitor: Arc<MonitorState>, pid: u32) -> Self {
        Self(tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let s = Process::Pid(pid).sample().unwrap_or_default();
                progress(format_args!(
                    "{phase}: {}/{total} after {:.0} s; server CPU {:.0} s, RSS {} MiB",
                    monitor.connected.load(Ordering::Relaxed),
                    start.elapsed().as_secs_f64(),
                    s.cpu_seconds,
                    s.rss_bytes >> 20
                ));
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Samples the server every 200 ms: kills it if its memory passes a limit
/// (so a run that goes wrong cannot take the machine down with it), keeps
/// the highest RSS seen, and records a timeline point every second.
struct Monitor {
    task: tokio::task::JoinHandle<()>,
    state: Arc<MonitorState>,
}

#[derive(Default)]
struct MonitorState {
    peak: AtomicU64,
    tripped: parking_lot::Mutex<Option<String>>,
    stop: std::sync::atomic::AtomicBool,
    timeline: parking_lot::Mutex<Vec<Point>>,
    phase: parking_lot::Mutex<&'static str>,
    /// Nodes with an open map stream, as the current phase counts them.
    connected: AtomicUsize,
}

impl Monitor {
    fn spawn(pid: u32, limit: u64, time_limit: Option<Duration>) -> Self {
        let state = Arc::new(MonitorState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut next_point = start;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(limit) = time_limit
                    && start.elapsed() > limit
                    && !st.stop.load(Ordering::Relaxed)
                {
                    // Stop starting new work; the server keeps running.
                    *st.tripped.lock() = Some(format!(
                        "the run's time limit ({} s) passed with {} nodes connected ({})",
                        limit.as_secs(),
                        st.connected.load(Ordering::Relaxed),
                        st.phase.lock(),
                    ));
                    st.stop.store(true, Ordering::Relaxed);
                }
                let Ok(s) = Process::Pid(pid).sample() else {
                    return;
                };
                st.peak.fetch_max(s.rss_bytes, Ordering::Relaxed);
                if Instant::now() >= next_point {
                    next_point += Duration::from_secs(1);
                    st.timeline.lock().push(Point {
                        seconds: start.elapsed().as_secs_f64(),
                        phase: st.phase.lock().to_string(),
                        connected: st.connected.load(Ordering::Relaxed),
                        server_cpu_seconds: s.cpu_seconds,
                        server_rss_bytes: s.rss_bytes,
                    });
                }
                if s.rss_bytes > limit {
                    *st.tripped.lock() = Some(format!(
                        "server RSS {} MiB passed the {} MiB guard with {} nodes connected ({}); the server was killed",
                        s.rss_bytes >> 20,
                        limit >> 20,
                        st.connected.load(Ordering::Relaxed),
                        st.phase.lock(),
                    ));
                    st.stop.store(true, Ordering::Relaxed);
                    let _ = tokio::process::Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status()
                        .await;
                    return;
                }
            }
        });
        Self { task, state }
    }

    fn set_phase(&self, phase: &'static str) {
        *self.state.phase.lock() = phase;
    }

    fn peak(&self) -> u64 {
        self.state.peak.load(Ordering::Relaxed)
    }

    fn tripped(&self) -> Option<String> {
        self.state.tripped.lock().clone()
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.tripped() {
            Some(why) => bail!("{why}"),
            None => Ok(()),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resets the kernel's peak-RSS mark of `pid` so `VmHWM` is the storm's own.
fn reset_peak_rss(pid: u32) {
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        tracing::debug!("cannot reset the peak RSS of {pid}: {e}");
    }
}

fn progress(message: std::fmt::Arguments<'_>) {
    tracing::info!("{message}");
}

fn environment(opts: &Options) -> anyhow::Result<Environment> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok(Environment {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        memory_gib: mem_kib / (1 << 20) as f64,
        server_command: opts.server.describe(),
        database: "SQLite (the default configuration)".into(),
        open_files_limit: Process::Current.open_files_limit()?,
    })
}

/// The targets at this size (they are stated for 10,000 nodes).
fn targets(r: &Results, storm: bool) -> Vec<Target> {
    let not_measured = || "not measured (run aborted)".to_string();
    let mut t = vec![
        Target {
            name: "join propagation p99".into(),
            value: if r.join.probes == 0 {
                not_measured()
            } else {
                format!("{:.0} ms", r.join.latency.p99_ms)
            },
            limit: "< 1000 ms".into(),
            met: r.join.probes > 0 && r.join.latency.p99_ms < 1000.0 && r.join.missed == 0,
        },
        Target {
            name: "server peak RSS".into(),
            value: format!("{} MiB", r.server.peak_rss_bytes >> 20),
            limit: "< 1024 MiB".into(),
            met: r.aborted.is_none() && r.server.peak_rss_bytes < 1 << 30,
        },
        Target {
            name: "idle server CPU".into(),
            value: if r.idle.seconds == 0.0 {
                not_measured()
            } else {
                format!("{:.2}% of a core", r.idle.server_core_percent)
            },
            limit: "< 5%".into(),
            met: r.idle.seconds > 0.0 && r.idle.server_core_percent < 5.0,
        },
    ];
    if storm && r.storm.is_none() {
        t.push(Target {
            name: "reconnect storm settled".into(),
            value: not_measured(),
            limit: "< 60 s, no client giving up".into(),
            met: false,
        });
    }
    if let Some(s) = &r.storm {
        t.push(Target {
            name: "reconnect storm settled".into(),
            value: match s.settled_seconds {
                Some(secs) => format!(
                    "{secs:.1} s, {} failed attempts, {} gave up",
                    s.failed_attempts, s.gave_up
                ),
                None => format!("{} of {} never reconnected", s.gave_up, s.clients),
            },
            limit: "< 60 s, no client giving up".into(),
            met: s.settled_seconds.is_some_and(|secs| secs < 60.0)
                && s.failed_attempts == 0
                && s.gave_up == 0,
        });
    }
    t
}

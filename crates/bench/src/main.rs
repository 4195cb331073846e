//! `headway-bench`: run the load generator, serve (the server process it
//! starts), or render `docs/benchmarks.md` from saved results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use headway_bench::{Options, Results, ServerCommand, official, report};
use tracing_subscriber::EnvFilter;

/// Headway's protocol-level load generator.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a server and measure it under N simulated nodes
    Run(RunArgs),
    /// Start a server and N official Tailscale clients; measure the idle cost once they converge
    Clients(ClientsArgs),
    /// Run the server (what `run` starts in a process of its own); the
    /// configuration comes from HEADWAY_ environment variables
    Serve,
    /// Render a Markdown page from a template and saved results
    Report {
        /// The page template, with {{environment}}, {{results}}, {{targets}} and {{profiles}}
        #[arg(long)]
        template: PathBuf,
        /// Where to write the page
        #[arg(long)]
        out: PathBuf,
        /// Results of a what-if run (a patched server), for {{patched_results}} and {{patched_targets}}
        #[arg(long)]
        patched: Vec<PathBuf>,
        /// Results of `clients --json`, for {{official_clients}}
        #[arg(long)]
        clients: Option<PathBuf>,
        /// Results files written by `run --json`, in column order
        results: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct ClientsArgs {
    /// Official clients (tailscaled processes) to run
    #[arg(long, short = 'n', default_value_t = 60)]
    clients: usize,
    /// The directory holding `tailscale` and `tailscaled` (scripts/fetch-tailscale)
    #[arg(long)]
    tailscale_dir: PathBuf,
    /// `tailscale up` commands at once
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds waited after convergence before measuring
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
    /// Seconds of the measured idle window
    #[arg(long, default_value_t = 120)]
    idle_secs: u64,
    /// Run this binary's `serve` instead of `headway-bench serve` (e.g. target/release/headway)
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Directory for the server's and the clients' state and logs (default: a new temporary one)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write the results as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Simulated nodes kept connected and streaming
    #[arg(long, short = 'n', default_value_t = 1000)]
    nodes: usize,
    /// Nodes joining at once while the tailnet comes up and in the registration measurement
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// New nodes registered for the registration-throughput measurement
    #[arg(long, default_value_t = 200)]
    register_burst: usize,
    /// Changes measured per kind (join, endpoint change, disconnect)
    #[arg(long, default_value_t = 5)]
    probes: usize,
    /// Seconds of keep-alive-only traffic to measure the idle cost over
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Skip the reconnect storm
    #[arg(long)]
    no_storm: bool,
    /// Seconds the storm's clients keep trying before they count as given up
    #[arg(long, default_value_t = 180)]
    storm_deadline_secs: u64,
    /// Also decode every map message with the full tailcfg types
    #[arg(long)]
    strict: bool,
    /// Run this binary's `serve` instead of `headway-bench serve` (e.g. target/release/headway)
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Directory for the server's data, its log and profiles (default: a new temporary one)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write the results as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
    /// Record a perf profile of the server in each phase
    #[arg(long)]
    profile: bool,
    /// Stop starting new work after this many seconds, keeping what was measured
    #[arg(long)]
    time_limit_secs: Option<u64>,
    /// Kill the server if its RSS passes this many MiB (protects the machine)
    #[arg(long, default_value_t = 12 * 1024)]
    rss_limit_mib: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve => serve(),
        Command::Run(args) => run(args),
        Command::Clients(args) => clients(args),
        Command::Report {
            template,
            out,
            patched,
            clients,
            results,
        } => render(&template, &out, &results, &patched, clients.as_deref()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headway-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve() -> anyhow::Result<()> {
    let loaded = headway_config::load(
        None,
        &headway_config::Env::from_process(),
        &headway_config::Overrides::new(),
    )?;
    let level = match loaded.config.log.level {
        headway_config::LogLevel::Trace => "trace",
        headway_config::LogLevel::Debug => "debug",
        headway_config::LogLevel::Info => "info",
        headway_config::LogLevel::Warn => "warn",
        headway_config::LogLevel::Error => "error",
        headway_config::LogLevel::Off => "off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    runtime()?.block_on(headway_server::serve(loaded))
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let server = match args.server_bin {
        Some(program) => ServerCommand {
            program,
            args: vec!["serve".into()],
        },
        None => ServerCommand::this_executable()?,
    };
    let temp;
    let work_dir = match args.work_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };
    let mut opts = Options::new(args.nodes, server, work_dir.clone());
    opts.concurrency = args.concurrency.max(1);
    opts.register_burst = args.register_burst;
    opts.probes = args.probes;
    opts.idle = Duration::from_secs(args.idle_secs);
    opts.storm = !args.no_storm;
    opts.storm_deadline = Duration::from_secs(args.storm_deadline_secs);
    opts.strict = args.strict;
    opts.profile = args.profile;
    opts.rss_limit_bytes = args.rss_limit_mib << 20;
    opts.time_limit = args.time_limit_secs.map(Duration::from_secs);
    let results = runtime()?.block_on(headway_bench::run(&opts))?;
    println!("{}", report::table(&results));
    let json = serde_json::to_string_pretty(&results)?;
    println!("{json}");
    if let Some(path) = args.json {
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("server data, log and profiles: {}", work_dir.display());
    Ok(())
}

fn clients(args: ClientsArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let server = match args.server_bin {
        Some(program) => ServerCommand {
            program,
            args: vec!["serve".into()],
        },
        None => ServerCommand::this_executable()?,
    };
    let work_dir = match args.work_dir {
        Some(dir) => dir,
        None => tempfile_dir()?,
    };
    let opts = official::ClientsOptions {
        clients: args.clients.max(2),
        tailscale_dir: args.tailscale_dir,
        server,
        work_dir: work_dir.clone(),
        concurrency: args.concurrency,
        settle: Duration::from_secs(args.settle_secs),
        idle: Duration::from_secs(args.idle_secs),
    };
    let results = runtime()?.block_on(official::run_clients(&opts))?;
    println!("{}", official::markdown(&results));
    let json = serde_json::to_string_pretty(&results)?;
    if let Some(path) = args.json {
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("server and client state and logs: {}", work_dir.display());
    Ok(())
}

/// A fresh directory under the system's temporary directory, kept after the
/// run so the server's log can be read.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..1000 {
        let dir = base.join(format!("headway-bench-{}-{i}", std::process::id()));
        if std::fs::create_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    anyhow::bail!("cannot create a work directory under {}", base.display())
}

fn render(
    template: &Path,
    out: &Path,
    files: &[PathBuf],
    patched: &[PathBuf],
    clients: Option<&Path>,
) -> anyhow::Result<()> {
    let template = std::fs::read_to_string(template)
        .with_context(|| format!("reading {}", template.display()))?;
    let page = report::render(&template, &read_results(files)?, &read_results(patched)?);
    let official = match clients {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let r: official::ClientsResults = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a `clients` results file", f.display()))?;
            official::markdown(&r)
        }
        None => "Not measured yet: `scripts/bench` runs it (`headway-bench clients`).\n".into(),
    };
    let page = page.replace("{{official_clients}}", &official);
    std::fs::write(out, page).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn read_results(files: &[PathBuf]) -> anyhow::Result<Vec<Results>> {
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a results file", f.display()))
        })
        .collect()
}

//! `headway`: the server (`headway serve`) and its admin CLI, which talks to
//! the running server over its unix socket and never opens the database.
//!
//! Exit status: 0 on success, 1 with a message on stderr on any error (2 for
//! a command line clap cannot parse). With `-o`, errors are printed as
//! `{"error": "…"}` in that format.

mod cli;
mod client;
mod commands;
mod duration;
mod man;
mod offline;
mod output;
mod remote;
mod serve;
mod version;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use headway_api::wire::HealthResponse;
use headway_config::{Env, Loaded, Overrides};
use serde::Serialize;

use crate::cli::{Cli, Command, ConfigCommand, ExplainPolicy, ImportCommand, PolicyCommand};
use crate::client::Client;
use crate::commands::Ctx;
use crate::output::{ErrorOutput, Output};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output { format: cli.output };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            report(out, &e);
            ExitCode::FAILURE
        }
    }
}

fn report(out: Output, e: &anyhow::Error) {
    // A server's refusal is shown as its detail alone; local errors with
    // their causes.
    let message = match e.downcast_ref::<client::ServerError>() {
        Some(server) => server.detail.clone(),
        None => format!("{e:#}"),
    };
    match out.format.map(|f| {
        output::render(
            f,
            &ErrorOutput {
                error: message.clone(),
            },
        )
    }) {
        Some(Ok(text)) => eprintln!("{}", text.trim_end()),
        _ => eprintln!("Error: {message}"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    let config_path = cli
        .config
        .clone()
        .or_else(|| headway_config::find_config_file(&env));
    let out = Output { format: cli.output };
    match cli.command {
        Command::Serve => serve::run(load_config(config_path.as_deref(), &env)?)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Version => {
            let info = version::info();
            out.print(&info, || info.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) | Command::Configtest => {
            Ok(config_check(out, config_path, &env))
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "headway", &mut script);
            output::write_stdout(&String::from_utf8_lossy(&script))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            man::run(dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        // Offline: a policy and a described tailnet, no server.
        Command::Policy(PolicyCommand::Explain(ExplainPolicy {
            policy,
            topology: Some(topology),
        })) => {
            commands::policy::explain_offline(out, &policy, &topology)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(ImportCommand::Headscale(args)) => {
            let loaded = load_config(config_path.as_deref(), &env)?;
            offline::import_headscale(out, &loaded.config, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => {
            let loaded = load_config(config_path.as_deref(), &env)?;
            offline::backup(out, &loaded.config, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            let loaded = load_config(config_path.as_deref(), &env)?;
            offline::restore(out, &loaded.config, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Encrypt => {
            let loaded = load_config(config_path.as_deref(), &env)?;
            offline::encrypt(out, &loaded.config).await?;
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let loaded = load_config(config_path.as_deref(), &env)?;
            let ctx = Ctx {
                client: client_for(&loaded, cli.address.as_deref(), cli.api_key.as_deref())?,
                out,
                force: cli.force,
            };
            match command {
                Command::Users(c) => commands::users::run(&ctx, c).await?,
                Command::Preauthkeys(c) => commands::preauthkeys::run(&ctx, c).await?,
                Command::Nodes(c) => commands::nodes::run(&ctx, c).await?,
                Command::Auth(c) => commands::auth::run(&ctx, c).await?,
                Command::Apikeys(c) => commands::apikeys::run(&ctx, c).await?,
                Command::Audit(c) => commands::audit::run(&ctx, c).await?,
                Command::Policy(c) => commands::policy::run(&ctx, c).await?,
                Command::OauthClients(c) => commands::oauth_clients::run(&ctx, c).await?,
                Command::Health => health(&ctx).await?,
                Command::Serve
                | Command::Version
                | Command::Config(_)
                | Command::Configtest
                | Command::Completions { .. }
                | Command::Man { .. }
                | Command::Import(_)
                | Command::Backup(_)
                | Command::Restore(_)
                | Command::Encrypt => {}
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_config(path: Option<&Path>, env: &Env) -> anyhow::Result<Loaded> {
    let loaded = headway_config::load(path, env, &Overrides::new());
    loaded.with_context(|| match path {
        Some(p) => format!("configuration {}", p.display()),
        None => "configuration (defaults and HEADWAY_ variables; no config file found)".to_string(),
    })
}

/// The client of a remote server (`--address`, `HEADWAY_CLI_ADDRESS` or
/// `cli.address`, with its API key), else of the local server's admin
/// socket (`unix_socket`).
fn client_for(
    loaded: &Loaded,
    address: Option<&str>,
    api_key: Option<&str>,
) -> anyhow::Result<Client> {
    let config = &loaded.config;
    let address = address.filter(|a| !a.trim().is_empty()).or(config
        .cli
        .address
        .as_deref()
        .filter(|a| !a.trim().is_empty()));
    match address {
        Some(address) => {
            let key = api_key.or(config.cli.api_key.as_ref().map(|k| k.expose()));
            let remote = remote::Remote::new(address, key, config.cli.insecure)?;
            Ok(Client::remote(remote, config.cli.timeout))
        }
        None => Ok(Client::new(&config.unix_socket, config.cli.timeout)),
    }
}

async fn health(ctx: &Ctx) -> anyhow::Result<()> {
    let health: HealthResponse = ctx.client.get("/api/v1/health").await?;
    ctx.out
        .print(&health, || "OK: the server and its database answer".into())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckOutput {
    ok: bool,
    source: Option<String>,
    warnings: Vec<String>,
    error: Option<String>,
}

/// `headway config check`: warnings and "configuration OK" on stdout, or the
/// error (naming each invalid key) on stderr and exit status 1.
fn config_check(out: Output, path: Option<PathBuf>, env: &Env) -> ExitCode {
    let result = headway_config::load(path.as_deref(), env, &Overrides::new());
    let shown = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no config file".into());
    let check = match &result {
        Ok(loaded) => CheckOutput {
            ok: true,
            source: Some(loaded.source_description.clone()),
            warnings: loaded.warnings.clone(),
            error: None,
        },
        Err(e) => CheckOutput {
            ok: false,
            source: None,
            warnings: Vec::new(),
            error: Some(e.to_string()),
        },
    };
    match out.format {
        Some(format) => match output::render(format, &check) {
            Ok(text) if check.ok => {
                let _ = output::write_stdout(&text);
            }
            Ok(text) => eprintln!("{}", text.trim_end()),
            Err(e) => eprintln!("Error: {e}"),
        },
        None => {
            for w in &check.warnings {
                eprintln!("warning: {w}");
            }
            match (&check.source, &check.error) {
                (Some(source), _) => {
                    let _ = output::write_stdout(&format!("configuration OK ({source})"));
                }
                (None, error) => eprintln!(
                    "Error: configuration {shown}: {}",
                    error.as_deref().unwrap_or("invalid")
                ),
            }
        }
    }
    if check.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

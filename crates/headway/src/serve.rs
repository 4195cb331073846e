//! `headway serve`: logging as the config says, then the server.
//!
//! The server itself is `headway_server::serve`; this is the one place that
//! calls it, so a binary built without the `server` feature is the CLI alone.

use headway_config::{Loaded, LogConfig, LogFormat, LogLevel};
use tracing_subscriber::EnvFilter;

pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    init_logging(loaded.config.log)?;
    start(loaded).await
}

#[cfg(feature = "server")]
async fn start(loaded: Loaded) -> anyhow::Result<()> {
    headway_server::serve(loaded).await
}

#[cfg(not(feature = "server"))]
async fn start(_loaded: Loaded) -> anyhow::Result<()> {
    anyhow::bail!("this headway binary was built without the server (cargo feature `server`)")
}

/// The filter for `log.level`; `RUST_LOG`, when set, wins.
fn filter(level: LogLevel) -> EnvFilter {
    let level = match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Off => "off",
    };
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
}

/// Logs go to stderr, as text or one JSON object a line (`log.format`).
fn init_logging(log: LogConfig) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(log.level))
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

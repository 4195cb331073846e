//! headway-config: reads Headway's configuration, which uses headscale's
//! `config.yaml` keys so an existing headscale file works unchanged.
//!
//! This crate owns the key names, their defaults, the layering of sources,
//! and validation. It starts nothing and logs nothing: problems come back as
//! a [`ConfigError`], suspicious settings as warnings in [`Loaded`] for the
//! caller to log.
//!
//! # Layers
//! Later layers win, key by key (a list or mapping is replaced whole):
//! 1. defaults (the values `config-example.yaml` shows);
//! 2. the YAML file, if any;
//! 3. `HEADWAY_` environment variables: the key upper-cased with nested
//!    keys joined by `__` (`HEADWAY_DATABASE__SQLITE__PATH`,
//!    `HEADWAY_SERVER_URL`). String settings are taken verbatim; others are
//!    read as YAML, so `HEADWAY_DERP__URLS='[]'` is an empty list. A secret's
//!    variable with a `_FILE` suffix (`HEADWAY_OIDC__CLIENT_SECRET_FILE`)
//!    names a file holding it;
//! 4. [`Overrides`] from the caller (command-line flags).
//!
//! # Paths
//! Relative state paths (database, keys, socket, certificates) live in
//! `data_dir` (`$HEADWAY_DATA_DIR`, else `$XDG_DATA_HOME/headway`, else
//! `~/.local/share/headway`). Relative input paths (policy, extra records,
//! TLS files, DERP maps, secret files) are relative to the config file when
//! written there, as in headscale.
//!
//! # Messages
//! Unknown keys, headscale-only knobs, deprecated names and settings for
//! features not built yet are warnings naming the key. Invalid values are
//! errors naming the key, the value (never a secret's) and what is expected;
//! all of them are reported at once.

mod decode;
mod error;
mod keys;
mod model;
mod notices;
mod source;
mod validate;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem};
pub use model::*;
pub use source::{Env, Overrides};

/// A successfully loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// One line each, starting with the key or variable concerned; the
    /// caller logs them at start-up.
    pub warnings: Vec<String>,
    /// Where the settings came from, e.g.
    /// `defaults + /etc/headway/config.yaml + 1 HEADWAY_ environment variable`.
    pub source_description: String,
}

/// Loads the configuration from `path` (no file: defaults only), the
/// environment and the caller's overrides.
pub fn load(path: Option<&Path>, env: &Env, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let file = path.map(source::read_file).transpose()?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let layers = source::Layers::new(file, env, overrides, &mut problems, &mut warnings);
    notices::check_keys(&layers, &mut problems, &mut warnings);

    let mut reader = decode::Reader::new(&layers, env);
    let config = decode::decode(&mut reader);
    if let Some(config) = &config {
        validate::validate(config, &mut reader);
    }
    problems.append(&mut reader.problems);
    warnings.append(&mut reader.warnings);

    match config {
        Some(config) if problems.is_empty() => Ok(Loaded {
            config,
            warnings,
            source_description: layers.describe(),
        }),
        Some(_) => Err(ConfigError::Invalid(problems)),
        // Decoding gives up only after recording a problem; keep the error
        // meaningful should that ever change.
        None if problems.is_empty() => Err(ConfigError::Invalid(vec![Problem {
            key: "config".to_owned(),
            origin: String::new(),
            message: "could not be decoded (a bug in headway-config: no problem was recorded)"
                .to_owned(),
        }])),
        None => Err(ConfigError::Invalid(problems)),
    }
}

/// Where Headway looks for a config file when none is given, in order
/// (headscale's search order with Headway's names).
pub fn config_file_candidates(env: &Env) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/etc/headway")];
    if let Some(home) = env.get("HOME").filter(|h| !h.is_empty()) {
        dirs.push(Path::new(home).join(".headway"));
    }
    dirs.push(PathBuf::new());
    dirs.iter()
        .flat_map(|dir| [dir.join("config.yaml"), dir.join("config.json")])
        .collect()
}

/// The first of [`config_file_candidates`] that exists.
pub fn find_config_file(env: &Env) -> Option<PathBuf> {
    config_file_candidates(env)
        .into_iter()
        .find(|p| p.is_file())
}

/// The outcome of `headway config check`: print it, exit non-zero unless
/// [`CheckReport::ok`].
#[derive(Debug)]
pub struct CheckReport {
    result: Result<Loaded, ConfigError>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    pub fn result(&self) -> &Result<Loaded, ConfigError> {
        &self.result
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(loaded) => {
                writeln!(
                    f,
                    "OK: configuration is valid ({})",
                    loaded.source_description
                )?;
                for warning in &loaded.warnings {
                    writeln!(f, "warning: {warning}")?;
                }
                Ok(())
            }
            Err(error) => writeln!(f, "error: {error}"),
        }
    }
}

/// Loads the configuration as `headway serve` would and reports the result.
pub fn check(path: Option<&Path>, env: &Env, overrides: &Overrides) -> CheckReport {
    CheckReport {
        result: load(path, env, overrides),
    }
}

#[cfg(test)]
mod tests;

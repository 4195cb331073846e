//! Where settings come from: the YAML file, `HEADWAY_` environment
//! variables and the caller's overrides (CLI flags), each turned into a tree
//! of YAML values; finding a key in them by precedence; and walking them for
//! keys Headway does not know. Defaults live in `keys`; turning values into
//! types is `decode`'s job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::error::{ConfigError, Problem};
use crate::keys::{self, Shape};

const ENV_PREFIX: &str = "HEADWAY_";

/// Environment variables, passed in so tests need not touch the process
/// environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    /// `HEADWAY_` variables whose value is not UTF-8.
    unreadable: Vec<String>,
}

impl Env {
    /// A snapshot of this process's environment.
    pub fn from_process() -> Self {
        let mut env = Self::default();
        for (name, value) in std::env::vars_os() {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => {
                    env.vars.insert(name, value);
                }
                (Ok(name), Err(_)) if name.starts_with(ENV_PREFIX) => env.unreadable.push(name),
                _ => {}
            }
        }
        env
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Expands `$NAME` and `${NAME}` (unset: empty), as headscale does for
    /// `oidc.client_secret_path`.
    pub(crate) fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) => (&braced[..end], &braced[end + 1..]),
                    None => ("", after),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if name.is_empty() {
                out.push('$');
                rest = after;
            } else {
                out.push_str(self.get(name).unwrap_or(""));
                rest = tail;
            }
        }
        out.push_str(rest);
        out
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            unreadable: Vec::new(),
        }
    }
}

/// Settings given by the caller (command-line flags). They win over
/// everything else. Values are written as in an environment variable.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: Vec<(String, String)>,
}

impl Overrides {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (dotted, e.g. `listen_addr` or `database.sqlite.path`).
    /// An unknown key is an error at load time.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.entries.push((key.into(), value.into()));
        self
    }

    /// Builder form of [`Overrides::set`].
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Which layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Default,
    File,
    Env(String),
    Override,
}

impl Origin {
    /// Appended to a key in messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Default => " (default)".to_owned(),
            Self::File => String::new(),
            Self::Env(name) => format!(" (from {name})"),
            Self::Override => " (from the command line)".to_owned(),
        }
    }
}

/// The loaded config file.
#[derive(Debug)]
pub(crate) struct FileLayer {
    pub path: PathBuf,
    pub root: Value,
}

/// All non-default layers.
#[derive(Debug)]
pub(crate) struct Layers {
    pub file: Option<FileLayer>,
    env: Value,
    /// Key path → the variable that set it.
    env_names: BTreeMap<String, String>,
    env_count: usize,
    overrides: Value,
}

/// Something a walk over a layer found that is not a plain known key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finding {
    Unknown(String),
    HeadscaleOnly(String),
    /// A section (like `database`) given a value instead of keys.
    NotASection(String, &'static str),
}

impl Layers {
    /// Builds the environment and override layers. Conflicting or unusable
    /// entries are reported in `problems`, odd ones in `warnings`.
    pub(crate) fn new(
        file: Option<FileLayer>,
        env: &Env,
        overrides: &Overrides,
        problems: &mut Vec<Problem>,
        warnings: &mut Vec<String>,
    ) -> Self {
        let mut layers = Self {
            file,
            env: Value::Mapping(Mapping::new()),
            env_names: BTreeMap::new(),
            env_count: 0,
            overrides: Value::Mapping(Mapping::new()),
        };
        for name in &env.unreadable {
            warnings.push(format!("{name}: value is not valid UTF-8; ignored"));
        }
        for (name, raw) in &env.vars {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                if keys::RESERVED_ENV.contains(&name.as_str()) {
                    continue;
                }
                let path = env_path(rest);
                let value = parse_layer_value(&path, raw);
                if let Err(existing) = insert(&mut layers.env, &path, value) {
                    problems.push(Problem {
                        key: path.clone(),
                        origin: format!(" (from {name})"),
                        message: format!(
                            "conflicts with {}, which sets {existing}",
                            section_var(&path)
                        ),
                    });
                    continue;
                }
                layers.env_names.insert(path, name.clone());
                layers.env_count += 1;
            } else if let Some(rest) = name.strip_prefix("HEADSCALE_") {
                warnings.push(headscale_env_warning(name, rest));
            }
        }
        for (key, raw) in &overrides.entries {
            let value = parse_layer_value(key, raw);
            if let Err(existing) = insert(&mut layers.overrides, key, value) {
                problems.push(Problem {
                    key: key.clone(),
                    origin: Origin::Override.describe(),
                    message: format!("conflicts with another override, which sets {existing}"),
                });
            }
        }
        layers
    }

    /// The value of `key` from the highest layer that sets it.
    pub(crate) fn lookup(&self, key: &str) -> Option<(&Value, Origin)> {
        if let Some(value) = find(&self.overrides, key) {
            return Some((value, Origin::Override));
        }
        if let Some(value) = find(&self.env, key) {
            let name = self
                .env_names
                .get(key)
                .cloned()
                .unwrap_or_else(|| keys::env_name(key));
            return Some((value, Origin::Env(name)));
        }
        let file = self.file.as_ref()?;
        find(&file.root, key).map(|value| (value, Origin::File))
    }

    /// Is `key` set by any layer?
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.lookup(key).is_some()
    }

    /// Walks each layer for keys that are not plain known keys.
    pub(crate) fn findings(&self) -> (Vec<Finding>, Vec<Finding>, Vec<Finding>) {
        let walk = |tree: &Value| {
            let mut found = Vec::new();
            walk(tree, "", &mut found);
            found
        };
        let file = self
            .file
            .as_ref()
            .map(|f| walk(&f.root))
            .unwrap_or_default();
        (file, walk(&self.env), walk(&self.overrides))
    }

    /// The variable that set `path`, for messages about env findings.
    pub(crate) fn env_var_for(&self, path: &str) -> String {
        self.env_names
            .get(path)
            .cloned()
            .unwrap_or_else(|| keys::env_name(path))
    }

    /// "defaults + /etc/headway/config.yaml + 2 HEADWAY_ variables".
    pub(crate) fn describe(&self) -> String {
        let mut parts = vec!["defaults".to_owned()];
        if let Some(file) = &self.file {
            parts.push(file.path.display().to_string());
        }
        match self.env_count {
            0 => {}
            1 => parts.push("1 HEADWAY_ environment variable".to_owned()),
            n => parts.push(format!("{n} HEADWAY_ environment variables")),
        }
        if let Value::Mapping(m) = &self.overrides
            && !m.is_empty()
        {
            parts.push("command-line overrides".to_owned());
        }
        parts.join(" + ")
    }
}

/// Reads and parses the config file.
pub(crate) fn read_file(path: &Path) -> Result<FileLayer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let syntax = |e: serde_yaml_ng::Error| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: full.replacen(&suffix, "", 1),
        }
    };
    let mut root: Value = serde_yaml_ng::from_str(&text).map_err(syntax)?;
    root.apply_merge().map_err(syntax)?;
    let root = match root {
        Value::Null => Value::Mapping(Mapping::new()),
        Value::Mapping(_) => root,
        other => {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                line: 1,
                column: 1,
                message: format!("the file must be a mapping of keys, not {}", kind(&other)),
            });
        }
    };
    Ok(FileLayer {
        path: path.to_owned(),
        root,
    })
}

/// `DATABASE__SQLITE__PATH` → `database.sqlite.path`; a `_FILE` suffix on a
/// secret's variable means its `_path` key.
fn env_path(rest: &str) -> String {
    let path = rest
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(".");
    match path.strip_suffix("_file") {
        Some(base) if keys::key(base).is_some_and(|k| k.secret) => format!("{base}_path"),
        _ => path,
    }
}

/// A value from the environment or the command line: verbatim for string
/// keys, otherwise YAML (`[]`, `true`, `30m`), falling back to the text.
fn parse_layer_value(path: &str, raw: &str) -> Value {
    if keys::key(path).is_some_and(|k| k.shape == Shape::Text) {
        return Value::String(raw.to_owned());
    }
    match serde_yaml_ng::from_str::<Value>(raw) {
        Ok(Value::Tagged(_)) | Err(_) => Value::String(raw.to_owned()),
        Ok(value) => value,
    }
}

/// Puts `value` at `path`, creating sections. Fails with a description of
/// what is in the way when a prefix of `path` already holds a value.
fn insert(tree: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = tree;
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return Ok(());
    };
    for segment in parents {
        let Value::Mapping(map) = node else {
            return Err(kind(node).to_owned());
        };
        node = map
            .entry(Value::String((*segment).to_owned()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    match node {
        Value::Mapping(map) => {
            map.insert(Value::String((*last).to_owned()), value);
            Ok(())
        }
        other => Err(kind(other).to_owned()),
    }
}

fn section_var(path: &str) -> String {
    let parent = path.rsplit_once('.').map_or(path, |(parent, _)| parent);
    keys::env_name(parent)
}

fn find<'v>(tree: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.').try_fold(tree, |node, segment| match node {
        Value::Mapping(map) => map.get(segment),
        _ => None,
    })
}

fn walk(tree: &Value, prefix: &str, found: &mut Vec<Finding>) {
    let Value::Mapping(map) = tree else { return };
    for (name, value) in map {
        let name = match name {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => "<complex key>".to_owned(),
        };
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        if keys::key(&path).is_some() || keys::is_legacy(&path) {
            continue;
        }
        if keys::prefix_entry(keys::HEADSCALE_ONLY, &path).is_some() {
            // Name the leaves, not the section they are in.
            match value {
                Value::Mapping(_) => walk(value, &path, found),
                _ => found.push(Finding::HeadscaleOnly(path)),
            }
        } else if keys::is_section(&path) {
            match value {
                Value::Mapping(_) => walk(value, &path, found),
                Value::Null => {}
                other => found.push(Finding::NotASection(path, kind(other))),
            }
        } else {
            found.push(Finding::Unknown(path));
        }
    }
}

/// What kind of YAML value this is, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// headscale reads `HEADSCALE_` variables with `_` for nesting; point such
/// a variable at its Headway name.
fn headscale_env_warning(name: &str, rest: &str) -> String {
    let wanted = rest.to_ascii_lowercase();
    let known = keys::KEYS
        .iter()
        .find(|k| k.path.replace('.', "_") == wanted);
    match known {
        Some(k) => format!(
            "{name} is a headscale variable and is ignored; Headway reads {}",
            keys::env_name(k.path)
        ),
        None => format!(
            "{name} is a headscale variable and is ignored; Headway reads HEADWAY_ variables (nested keys joined with __)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(env: &[(&str, &str)]) -> (Layers, Vec<Problem>, Vec<String>) {
        let env: Env = env.iter().copied().collect();
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let layers = Layers::new(None, &env, &Overrides::new(), &mut problems, &mut warnings);
        (layers, problems, warnings)
    }

    #[test]
    fn env_names_map_to_nested_keys() {
        let (layers, problems, _) = layers(&[
            ("HEADWAY_DATABASE__SQLITE__PATH", "/tmp/x.db"),
            ("HEADWAY_DERP__URLS", "[]"),
            ("HEADWAY_OIDC__CLIENT_SECRET_FILE", "/run/secret"),
        ]);
        assert!(problems.is_empty());
        let (value, origin) = layers
            .lookup("database.sqlite.path")
            .unwrap_or_else(|| panic!("not set"));
        assert_eq!(value, &Value::String("/tmp/x.db".into()));
        assert_eq!(origin, Origin::Env("HEADWAY_DATABASE__SQLITE__PATH".into()));
        assert_eq!(
            layers.lookup("derp.urls").map(|(v, _)| v.clone()),
            Some(Value::Sequence(vec![]))
        );
        assert!(layers.is_set("oidc.client_secret_path"));
        assert!(!layers.is_set("oidc.client_secret"));
    }

    #[test]
    fn text_keys_are_verbatim_from_env() {
        let (layers, _, _) = layers(&[
            ("HEADWAY_OIDC__CLIENT_SECRET", "!tag: [x"),
            ("HEADWAY_LOG__LEVEL", "123"),
        ]);
        assert_eq!(
            layers.lookup("oidc.client_secret").map(|(v, _)| v.clone()),
            Some(Value::String("!tag: [x".into()))
        );
        assert_eq!(
            layers.lookup("log.level").map(|(v, _)| v.clone()),
            Some(Value::String("123".into()))
        );
    }

    #[test]
    fn section_and_key_from_env_conflict() {
        let (_, problems, _) = layers(&[
            ("HEADWAY_DATABASE", "sqlite"),
            ("HEADWAY_DATABASE__TYPE", "sqlite"),
        ]);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .contains("conflicts with HEADWAY_DATABASE"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn headscale_variables_are_pointed_at_headway_names() {
        let (_, _, warnings) = layers(&[("HEADSCALE_DATABASE_SQLITE_PATH", "/x")]);
        assert_eq!(
            warnings,
            [
                "HEADSCALE_DATABASE_SQLITE_PATH is a headscale variable and is ignored; Headway reads HEADWAY_DATABASE__SQLITE__PATH"
            ]
        );
    }

    #[test]
    fn expand_variables() {
        let env: Env = [("CREDENTIALS_DIRECTORY", "/run/creds"), ("X", "1")]
            .into_iter()
            .collect();
        assert_eq!(
            env.expand("${CREDENTIALS_DIRECTORY}/oidc"),
            "/run/creds/oidc"
        );
        assert_eq!(env.expand("$X/$MISSING/a$"), "1//a$");
        assert_eq!(env.expand("${unterminated"), "${unterminated");
    }
}

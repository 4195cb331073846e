//! Messages about keys themselves rather than their values: unknown keys
//! (with a suggestion), headscale's renamed and removed keys, headscale
//! knobs that mean nothing to Headway, and features Headway has not built
//! yet.

use serde_yaml_ng::Value;

use crate::decode::default_value;
use crate::error::Problem;
use crate::keys::{self, HEADSCALE_ONLY, KEYS, NOT_YET_SUPPORTED, REMOVED, RENAMED};
use crate::source::{Finding, Layers, Origin};

pub(crate) fn check_keys(layers: &Layers, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    unknown_and_misplaced(layers, problems, warnings);
    legacy(layers, problems, warnings);
    not_yet_supported(layers, warnings);
}

fn did_you_mean(path: &str, spell: impl Fn(&str) -> String) -> String {
    keys::suggest(path)
        .map(|k| format!("; did you mean {}?", spell(k)))
        .unwrap_or_default()
}

fn unknown_and_misplaced(layers: &Layers, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    let (file, env, overrides) = layers.findings();
    let file_name = layers
        .file
        .as_ref()
        .map(|f| f.path.display().to_string())
        .unwrap_or_default();
    let mut headscale_only = Vec::new();

    for finding in file {
        match finding {
            Finding::Unknown(path) => warnings.push(format!(
                "{path}: unknown key in {file_name}, ignored{}",
                did_you_mean(&path, str::to_owned)
            )),
            Finding::HeadscaleOnly(path) => headscale_only.push(path),
            Finding::NotASection(path, found) => {
                problems.push(not_a_section(path, found, &Origin::File))
            }
        }
    }
    for finding in env {
        match finding {
            Finding::Unknown(path) => warnings.push(format!(
                "{}: not a Headway setting, ignored{}",
                layers.env_var_for(&path),
                did_you_mean(&path, keys::env_name)
            )),
            Finding::HeadscaleOnly(path) => headscale_only.push(path),
            Finding::NotASection(path, found) => {
                let origin = Origin::Env(layers.env_var_for(&path));
                problems.push(not_a_section(path, found, &origin));
            }
        }
    }
    for finding in overrides {
        match finding {
            Finding::Unknown(path) => problems.push(Problem {
                origin: Origin::Override.describe(),
                message: format!("is not a setting{}", did_you_mean(&path, str::to_owned)),
                key: path,
            }),
            Finding::HeadscaleOnly(path) => headscale_only.push(path),
            Finding::NotASection(path, found) => {
                problems.push(not_a_section(path, found, &Origin::Override))
            }
        }
    }

    for (prefix, why) in HEADSCALE_ONLY {
        let set: Vec<&str> = headscale_only
            .iter()
            .filter(|path| keys::prefix_entry(&[(*prefix, *why)], path).is_some())
            .map(String::as_str)
            .collect();
        if !set.is_empty() {
            warnings.push(format!(
                "{}: no effect in Headway ({why}); remove to silence this",
                set.join(", ")
            ));
        }
    }
}

fn not_a_section(path: String, found: &str, origin: &Origin) -> Problem {
    let children = keys::section_children(&path).join(", ");
    Problem {
        message: format!("is a section with the keys {children}, but is set to {found}"),
        origin: origin.describe(),
        key: path,
    }
}

/// headscale's renamed and removed keys: errors, as in headscale, unless
/// the new name is set too.
fn legacy(layers: &Layers, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    for (old, new) in RENAMED {
        let Some((_, origin)) = layers.lookup(old) else {
            continue;
        };
        if layers.is_set(new) {
            warnings.push(format!(
                "{old} is the old name of {new}, which is also set; {old} is ignored, remove it"
            ));
        } else {
            problems.push(Problem {
                key: (*old).to_owned(),
                origin: origin.describe(),
                message: format!("was renamed to {new}; rename it"),
            });
        }
    }
    for (key, hint) in REMOVED {
        let Some((_, origin)) = layers.lookup(key) else {
            continue;
        };
        problems.push(Problem {
            key: (*key).to_owned(),
            origin: origin.describe(),
            message: format!("is no longer supported ({hint}); remove it"),
        });
    }
}

/// One warning per feature that is switched on, naming the keys set to
/// something other than their default.
fn not_yet_supported(layers: &Layers, warnings: &mut Vec<String>) {
    let changed = |path: &str| {
        layers
            .lookup(path)
            .is_some_and(|(value, _)| !same_as_default(path, value))
    };
    let mut features: Vec<&str> = NOT_YET_SUPPORTED
        .iter()
        .map(|(_, feature, _)| *feature)
        .collect();
    features.dedup();
    for feature in features {
        let mut set: Vec<&str> = Vec::new();
        for (prefix, _, switch) in NOT_YET_SUPPORTED.iter().filter(|(_, f, _)| *f == feature) {
            if switch.is_some_and(|s| !changed(s)) {
                continue;
            }
            set.extend(
                KEYS.iter()
                    .map(|k| k.path)
                    .filter(|path| path.starts_with(prefix) && changed(path)),
            );
        }
        set.dedup();
        if !set.is_empty() {
            warnings.push(format!(
                "{}: {feature} is not built into Headway yet; ignored",
                set.join(", ")
            ));
        }
    }
}

/// Does `value` mean the same as `key`'s default? Scalars compare as text,
/// and nothing equals the empty string, list or mapping, so `true` and
/// `"true"`, or `""`, `[]` and nothing, are the same.
pub(crate) fn same_as_default(key: &str, value: &Value) -> bool {
    canonical(value) == canonical(&default_value(key))
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Null => Value::String(String::new()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::String(s) => Value::String(s.trim().to_owned()),
        Value::Sequence(items) if items.is_empty() => Value::String(String::new()),
        Value::Mapping(entries) if entries.is_empty() => Value::String(String::new()),
        Value::Sequence(items) => Value::Sequence(items.iter().map(canonical).collect()),
        Value::Mapping(entries) => Value::Mapping(
            entries
                .iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect(),
        ),
        Value::Tagged(tagged) => canonical(&tagged.value),
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

//! What ships around the binary: the release script's artefacts and their
//! signature (checked with the commands the book documents), the systemd
//! unit, and the documentation's claims about commands and config keys.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn headway() -> &'static str {
    env!("CARGO_BIN_EXE_headway")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The fenced block that follows `marker` in a Markdown file.
fn block_after(markdown: &str, marker: &str) -> String {
    let rest = &markdown[markdown.find(marker).expect("marker in the book")..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// Runs scripts/release on the test build of headway, signs with a fresh
/// key, then verifies with the commands from docs/book/src/install.md.
#[test]
fn release_artefacts_verify_with_the_documented_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("release-key");
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "release@headway",
            "-f",
        ])
        .arg(&key));
    let release = |out: &Path| {
        run(Command::new(repo().join("scripts/release"))
            .arg("--binary")
            .arg(headway())
            .arg("--out")
            .arg(out)
            .arg("--key")
            .arg(&key)
            .env("SOURCE_DATE_EPOCH", "1767225600"))
    };
    let dist = tmp.path().join("dist");
    release(&dist);

    let version = env!("CARGO_PKG_VERSION");
    let name = format!("headway-{version}-x86_64-unknown-linux-musl");
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    for file in [
        name.clone(),
        format!("{name}.tar.gz"),
        format!("headway-{version}.cdx.json"),
    ] {
        assert!(
            sums.lines().any(|l| l.ends_with(&format!("  {file}"))),
            "{file} not in SHA256SUMS:\n{sums}"
        );
    }

    // The tarball carries the man pages, completions, unit and config.
    let listing = run(Command::new("tar")
        .arg("-tzf")
        .arg(dist.join(format!("{name}.tar.gz"))))
    .stdout;
    let listing = String::from_utf8(listing).unwrap();
    for entry in [
        "headway",
        "man/headway.1",
        "man/headway-users-create.1",
        "completions/headway.bash",
        "completions/_headway",
        "completions/headway.fish",
        "headway.service",
        "config-example.yaml",
        "SECURITY.md",
    ] {
        assert!(
            listing.lines().any(|l| l == format!("{name}/{entry}")),
            "{entry} missing from the tarball:\n{listing}"
        );
    }

    // The SBOM is CycloneDX and names what the binary is built from.
    let sbom: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dist.join(format!("headway-{version}.cdx.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let components = sbom["components"].as_array().unwrap();
    for crate_name in ["tokio", "rustls", "headway-server", "clap_mangen"] {
        assert!(
            components.iter().any(|c| c["name"] == crate_name),
            "{crate_name} not in the SBOM"
        );
    }
    assert!(
        !components.iter().any(|c| c["name"] == "tempfile"),
        "a dev-dependency is in the SBOM"
    );
    let serde = components.iter().find(|c| c["name"] == "serde").unwrap();
    assert_eq!(serde["hashes"][0]["alg"], "SHA-256");

    // The verification commands, exactly as the book prints them.
    let install = std::fs::read_to_string(repo().join("docs/book/src/install.md")).unwrap();
    let verify = block_after(&install, "<!-- verify-release");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    std::fs::write(
        dist.join("allowed_signers"),
        format!("release@headway namespaces=\"headway-release\" {public}"),
    )
    .unwrap();
    let documented = |dir: &Path| {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &verify])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let ok = documented(&dist);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        ok.status.success(),
        "documented verification failed:\n{said}"
    );
    assert!(
        said.contains("Good \"headway-release\" signature for release@headway"),
        "{said}"
    );

    // A changed artefact, or changed checksums, fail the same commands.
    let sbom_path = dist.join(format!("headway-{version}.cdx.json"));
    let original = std::fs::read(&sbom_path).unwrap();
    std::fs::write(&sbom_path, [&original[..], b" "].concat()).unwrap();
    assert!(
        !documented(&dist).status.success(),
        "a changed SBOM verified"
    );
    std::fs::write(&sbom_path, &original).unwrap();
    std::fs::write(
        dist.join("SHA256SUMS"),
        sums.replacen(&sums[..1], if &sums[..1] == "0" { "1" } else { "0" }, 1),
    )
    .unwrap();
    assert!(
        !documented(&dist).status.success(),
        "changed checksums verified"
    );

    // Packaging is deterministic: the same binary and SOURCE_DATE_EPOCH give
    // the same tarball and SBOM, byte for byte.
    let again = tmp.path().join("again");
    release(&again);
    assert_eq!(
        std::fs::read_to_string(again.join("SHA256SUMS")).unwrap(),
        sums
    );
}

#[test]
fn the_bash_completions_parse() {
    let script = run(Command::new(headway()).args(["completions", "bash"])).stdout;
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), script).unwrap();
    run(Command::new("bash").arg("-n").arg(tmp.path()));
}

/// `systemd-analyze verify` accepts the unit, and its exposure score stays
/// where the hardening put it.
#[test]
fn the_systemd_unit_verifies_and_stays_hardened() {
    let unit = std::fs::read_to_string(repo().join("packaging/systemd/headway.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/headway serve"));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("headway.service");
    // verify checks that ExecStart's program exists.
    std::fs::write(&path, unit.replace("/usr/local/bin/headway", headway())).unwrap();
    run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path));
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path));
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for headway.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an exposure level")
        .parse()
        .unwrap();
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// The documentation's Markdown files.
fn docs() -> Vec<(PathBuf, String)> {
    let mut files = vec![repo().join("README.md"), repo().join("SECURITY.md")];
    for entry in std::fs::read_dir(repo().join("docs/book/src")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Every `headway ...` command line in the docs' shell blocks parses: its
/// subcommands and flags exist (clap checks them before `--help` answers).
#[test]
fn every_documented_command_exists() {
    let mut checked = 0;
    for (path, text) in docs() {
        let mut in_shell = false;
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(lang) = trimmed.strip_prefix("```") {
                in_shell = !in_shell && matches!(lang, "sh" | "bash" | "console");
                continue;
            }
            if !in_shell {
                continue;
            }
            let command = trimmed.strip_prefix("sudo ").unwrap_or(trimmed);
            let Some(args) = command.strip_prefix("headway ") else {
                continue;
            };
            // Up to a comment, pipe or redirection.
            let args: Vec<&str> = args
                .split_whitespace()
                .take_while(|w| !matches!(*w, "#" | "|" | ">" | "<" | "&&"))
                .collect();
            let out = Command::new(headway())
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: `headway {}` is not a valid command line:\n{}",
                path.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} command lines found");
}

/// Every dotted config key the docs name in backticks (`database.postgres.ssl`,
/// `oidc.*`) is a key or section of config-example.yaml, which a test in
/// headway-config holds to the keys the server accepts.
#[test]
fn every_documented_config_key_exists() {
    fn walk(value: &serde_yaml_ng::Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let serde_yaml_ng::Value::Mapping(map) = value {
            for (name, child) in map {
                let path = match prefix {
                    "" => name.as_str().unwrap().to_string(),
                    _ => format!("{prefix}.{}", name.as_str().unwrap()),
                };
                out.insert(path.clone());
                if !matches!(path.as_str(), "dns.nameservers.split" | "oidc.extra_params") {
                    walk(child, &path, out);
                }
            }
        }
    }
    let example = std::fs::read_to_string(repo().join("config-example.yaml")).unwrap();
    let mut known = BTreeSet::new();
    walk(&serde_yaml_ng::from_str(&example).unwrap(), "", &mut known);
    let sections: BTreeSet<&str> = known
        .iter()
        .filter(|k| !k.contains('.'))
        .map(String::as_str)
        .collect();

    let mut checked = 0;
    for (path, text) in docs() {
        for (i, span) in text.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let key = span.strip_suffix(".*").unwrap_or(span);
            let Some((first, _)) = key.split_once('.') else {
                continue;
            };
            let looks_like_key = key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
            // headscale-only sections, named in the migration chapter; the
            // config crate warns that they do nothing.
            let headscale_only = ["database.gorm", "tuning"].contains(&key);
            if !looks_like_key || !sections.contains(first) || headscale_only {
                continue;
            }
            assert!(
                known.contains(key),
                "{}: `{span}` is not a configuration key",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} keys found");
}

//! `headway policy get|set|check|explain`.
//!
//! The server decides: a policy it refuses comes back with its reason (the
//! JSON path, line and column) and nothing changes. `explain --topology`
//! is the one command that needs no server: it runs the policy engine here,
//! on a described tailnet.

use std::path::Path;

use anyhow::Context;
use headway_api::wire::{Empty, ExplainPolicyResponse, PolicyRequest, PolicyResponse};
use serde_json::{Map, Value};

use super::Ctx;
use crate::cli::{ExplainPolicy, PolicyCommand, PolicyFile};
use crate::output::Output;

pub async fn run(ctx: &Ctx, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Get => get(ctx).await,
        PolicyCommand::Set(args) => set(ctx, args).await,
        PolicyCommand::Check(args) => check(ctx, args).await,
        PolicyCommand::Explain(args) => explain(ctx, args).await,
    }
}

async fn explain(ctx: &Ctx, args: ExplainPolicy) -> anyhow::Result<()> {
    if let Some(topology) = &args.topology {
        return explain_offline(ctx.out, &args.policy, topology);
    }
    let request = PolicyRequest {
        policy: read(&args.policy)?,
    };
    let explained: ExplainPolicyResponse =
        ctx.client.post("/api/v1/policy/explain", &request).await?;
    print_explained(ctx.out, &explained)
}

/// `explain --topology`: offline, with no server and no configuration.
pub fn explain_offline(out: Output, policy: &Path, topology: &Path) -> anyhow::Result<()> {
    let policy_text = read(policy)?;
    let topology_text = read(topology)?;
    let explained = headway_policy::explain(&policy_text, &topology_text)
        .map_err(|e| anyhow::anyhow!("policy {} refused: {e}", shown(policy)))?;
    let nodes = match explained {
        Value::Object(mut v) => match v.remove("nodes") {
            Some(Value::Object(nodes)) => nodes,
            _ => Map::new(),
        },
        _ => Map::new(),
    };
    print_explained(out, &ExplainPolicyResponse { nodes })
}

fn shown(path: &Path) -> String {
    if path == Path::new("-") {
        "(standard input)".into()
    } else {
        path.display().to_string()
    }
}

/// The file's text; `-` is standard input.
fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).context("reading standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

async fn get(ctx: &Ctx) -> anyhow::Result<()> {
    let policy: PolicyResponse = ctx.client.get("/api/v1/policy").await?;
    if ctx.out.format.is_none() && policy.policy.is_empty() {
        // Standard output stays empty (a saved copy is "no policy" too); the
        // explanation goes to the terminal.
        eprintln!("There is no policy: every node may reach every node.");
        return Ok(());
    }
    // The HuJSON text as it was written, comments and all.
    ctx.out
        .print(&policy, || policy.policy.trim_end().to_string())
}

async fn set(ctx: &Ctx, args: PolicyFile) -> anyhow::Result<()> {
    let request = PolicyRequest {
        policy: read(&args.file)?,
    };
    let policy: PolicyResponse = ctx.client.put("/api/v1/policy", &request).await?;
    ctx.out.print(&policy, || "Policy updated.".into())
}

async fn check(ctx: &Ctx, args: PolicyFile) -> anyhow::Result<()> {
    let request = PolicyRequest {
        policy: read(&args.file)?,
    };
    let done: Empty = ctx.client.post("/api/v1/policy/check", &request).await?;
    ctx.out.print(&done, || "Policy is valid".into())
}

fn print_explained(out: Output, explained: &ExplainPolicyResponse) -> anyhow::Result<()> {
    out.print(explained, || summary(&explained.nodes))
}

/// One paragraph per node: who it sees (with routes beyond their own
/// addresses), how many filter and SSH rules it gets.
fn summary(nodes: &Map<String, Value>) -> String {
    let mut text = String::new();
    for (name, view) in nodes {
        let rules = view["packet_filter_rules"].as_array().map_or(0, Vec::len);
        let ssh = view["ssh_rules"].as_array().map_or(0, Vec::len);
        text.push_str(&format!(
            "{name}: {rules} packet filter rule(s), {ssh} SSH rule(s)\n"
        ));
        let peers = view["peers"].as_object();
        match peers {
            Some(peers) if !peers.is_empty() => {
                for (peer, p) in peers {
                    let list = |key: &str| -> Vec<String> {
                        p[key]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let primary = list("PrimaryRoutes");
                    text.push_str(&format!(
                        "  peer {peer}: AllowedIPs {}",
                        list("AllowedIPs").join(", ")
                    ));
                    if !primary.is_empty() {
                        text.push_str(&format!("; PrimaryRoutes {}", primary.join(", ")));
                    }
                    text.push('\n');
                }
            }
            _ => text.push_str("  no peers\n"),
        }
    }
    if text.is_empty() {
        text.push_str("The tailnet has no nodes.");
    }
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_names_peers_and_their_routes() {
        let nodes = json!({
            "laptop": {
                "packet_filter_rules": [{"SrcIPs": ["*"]}],
                "peers": {"router": {"AllowedIPs": ["10.0.0.0/24", "100.64.0.2/32"],
                                     "PrimaryRoutes": ["10.0.0.0/24"]}},
                "ssh_rules": [],
                "cap_map": {}
            },
            "router": {"packet_filter_rules": [], "peers": {}, "ssh_rules": [], "cap_map": {}}
        });
        let text = summary(nodes.as_object().unwrap());
        assert_eq!(
            text,
            "laptop: 1 packet filter rule(s), 0 SSH rule(s)\n  \
             peer router: AllowedIPs 10.0.0.0/24, 100.64.0.2/32; PrimaryRoutes 10.0.0.0/24\n\
             router: 0 packet filter rule(s), 0 SSH rule(s)\n  no peers"
        );
        assert_eq!(summary(&Map::new()), "The tailnet has no nodes.");
    }

    #[test]
    fn offline_explain_refuses_a_bad_policy_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("p.hujson");
        let topology = dir.path().join("t.json");
        std::fs::write(
            &policy,
            r#"{"acls": [{"action": "accept", "src": ["group:x"], "dst": ["*:*"]}]}"#,
        )
        .unwrap();
        std::fs::write(&topology, r#"{"users": [], "nodes": {}}"#).unwrap();
        let e = explain_offline(Output { format: None }, &policy, &topology)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.hujson") && e.contains("group:x"), "{e}");
    }
}

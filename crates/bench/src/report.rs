//! Results as a terminal table and as the Markdown of `docs/benchmarks.md`.

use std::fmt::Write as _;

use crate::results::{Propagation, Results};

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

fn latency(p: &Propagation) -> String {
    if p.probes == 0 {
        return "–".into();
    }
    let missed = if p.missed > 0 {
        format!(" ({} missed)", p.missed)
    } else {
        String::new()
    };
    format!(
        "{:.0} / {:.0} / {:.0}{missed}",
        p.latency.p50_ms, p.latency.p99_ms, p.latency.max_ms
    )
}

fn bytes(p: &Propagation) -> String {
    if p.probes == 0 {
        return "–".into();
    }
    format!(
        "{:.0} / {:.0}",
        p.wire_bytes_per_receiver, p.json_bytes_per_receiver
    )
}

/// The rows of the results table: a label and one cell per run.
fn rows(r: &Results) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if let Some(why) = &r.aborted {
        rows.push(("RUN ABORTED", why.clone()));
    }
    rows.extend([
        (
            "ramp: N nodes dial, register, stream (s)",
            format!("{:.1}", r.ramp.seconds),
        ),
        ("ramp: nodes/s", format!("{:.0}", r.ramp.nodes_per_second)),
        (
            "ramp: register p50 / p99 (ms)",
            format!(
                "{:.0} / {:.0}",
                r.ramp.register.p50_ms, r.ramp.register.p99_ms
            ),
        ),
        (
            "ramp: full map p50 / p99 (ms)",
            format!(
                "{:.0} / {:.0}",
                r.ramp.first_map.p50_ms, r.ramp.first_map.p99_ms
            ),
        ),
        (
            "ramp: server CPU (s)",
            format!("{:.1}", r.ramp.server_cpu_seconds),
        ),
        (
            "registration while N stream (nodes/s)",
            format!("{:.0}", r.registration.nodes_per_second),
        ),
        (
            "registration: dial+register p50 / p99 (ms)",
            format!(
                "{:.0} / {:.0}",
                r.registration.latency.p50_ms, r.registration.latency.p99_ms
            ),
        ),
        ("join propagation p50 / p99 / max (ms)", latency(&r.join)),
        ("join: bytes per receiver, wire / JSON", bytes(&r.join)),
        ("endpoint change p50 / p99 / max (ms)", latency(&r.endpoint)),
        (
            "endpoint: bytes per receiver, wire / JSON",
            bytes(&r.endpoint),
        ),
        (
            "disconnect (offline) p50 / p99 / max (ms)",
            latency(&r.offline),
        ),
        (
            "offline: bytes per receiver, wire / JSON",
            bytes(&r.offline),
        ),
        (
            "idle: server CPU (% of one core)",
            format!("{:.2}", r.idle.server_core_percent),
        ),
        (
            "idle: keep-alives/s, other messages",
            format!(
                "{:.0}, {}",
                r.idle.keep_alives as f64 / r.idle.seconds.max(1e-9),
                r.idle.other_messages
            ),
        ),
    ]);
    if let Some(s) = &r.storm {
        let settled = match s.settled_seconds {
            Some(secs) => format!("{secs:.1}"),
            None => format!("never ({} of {} back)", s.reconnected, s.clients),
        };
        rows.extend([
            ("storm: all reconnected (s)", settled),
            (
                "storm: half reconnected (s)",
                format!("{:.1}", s.half_seconds),
            ),
            (
                "storm: failed attempts / clients gave up",
                format!("{} / {}", s.failed_attempts, s.gave_up),
            ),
            (
                "storm: server CPU (s)",
                format!("{:.1}", s.server_cpu_seconds),
            ),
            ("storm: server peak RSS", mib(s.server_peak_rss_bytes)),
        ]);
        if let Some(why) = &s.aborted {
            rows.push(("storm: aborted", why.clone()));
        }
    }
    rows.extend([
        (
            "server RSS, all connected",
            mib(r.server.rss_bytes_connected),
        ),
        (
            "server RSS per node (KiB)",
            format!("{:.1}", r.server.rss_bytes_per_node / 1024.0),
        ),
        ("server peak RSS", mib(r.server.peak_rss_bytes)),
        (
            "server CPU per node joined (ms)",
            format!("{:.1}", r.server.cpu_seconds_per_node * 1e3),
        ),
        (
            "server CPU, whole run (s)",
            format!("{:.1}", r.server.cpu_seconds),
        ),
        (
            "generator CPU, whole run (s)",
            format!("{:.1}", r.generator.cpu_seconds),
        ),
        ("generator peak RSS", mib(r.generator.peak_rss_bytes)),
        (
            "converged (every node sees every node)",
            if r.converged {
                "yes".into()
            } else {
                "NO".into()
            },
        ),
    ]);
    // An aborted run has phases it never measured: leave their rows out.
    let ramp = r.ramp.seconds > 0.0;
    let registration = r.registration.seconds > 0.0;
    let idle = r.idle.seconds > 0.0;
    let connected = r.server.rss_bytes_connected > 0;
    rows.retain(|(label, _)| {
        if label.starts_with("ramp:") || label.starts_with("server CPU per node") {
            ramp
        } else if label.starts_with("registration") {
            registration
        } else if label.starts_with("idle:") {
            idle
        } else if label.starts_with("server RSS, all") || label.starts_with("server RSS per") {
            connected
        } else {
            true
        }
    });
    rows
}

/// A plain table for the terminal.
pub fn table(r: &Results) -> String {
    let rows = rows(r);
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = format!(
        "Headway benchmark, N = {} (server and generator share {} cores)\n",
        r.nodes, r.environment.cores
    );
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<width$}  {value}");
    }
    out.push_str("targets:\n");
    for t in &r.targets {
        let _ = writeln!(
            out,
            "  [{}] {}: {} (target {})",
            if t.met { "met" } else { "NOT met" },
            t.name,
            t.value,
            t.limit
        );
    }
    out
}

/// The results of several runs side by side.
pub fn markdown_results(runs: &[Results]) -> String {
    let mut out = String::from("| metric |");
    for r in runs {
        let _ = write!(out, " N = {} |", r.nodes);
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(runs.len()));
    out.push('\n');
    let tables: Vec<Vec<(&str, String)>> = runs.iter().map(rows).collect();
    // Rows by label, in order of first appearance: an aborted run has fewer.
    let mut labels: Vec<&str> = Vec::new();
    for t in &tables {
        for (label, _) in t {
            if !labels.contains(label) {
                labels.push(label);
            }
        }
    }
    // Say first that a run was cut short.
    labels.sort_by_key(|l| !l.starts_with("RUN ABORTED"));
    for label in labels {
        let _ = write!(out, "| {label} |");
        for t in &tables {
            let cell = t
                .iter()
                .find(|(l, _)| *l == label)
                .map_or("–", |(_, v)| v.as_str());
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}

/// The targets of each run.
pub fn markdown_targets(runs: &[Results]) -> String {
    let mut out = String::from("| N | target | measured | limit | met |\n|---:|---|---|---|---|\n");
    for r in runs {
        for t in &r.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.nodes,
                t.name,
                t.value,
                t.limit,
                match (t.met, &r.aborted) {
                    // A run cut short met nothing: its peak is not the peak.
                    (true, Some(_)) => "**no** (run incomplete)",
                    (true, None) => "yes",
                    (false, _) => "**no**",
                }
            );
        }
    }
    out
}

/// The server's flat CPU profiles of the largest run, phase by phase.
pub fn markdown_profiles(runs: &[Results]) -> String {
    let Some(r) = runs
        .iter()
        .filter(|r| !r.profiles.is_empty())
        .max_by_key(|r| r.nodes)
    else {
        return "(no profile was recorded: run with `--profile`)\n".into();
    };
    let mut out = format!(
        "Server CPU by symbol at N = {}, sampled with `perf record -e cpu-clock` (top entries):\n\n",
        r.nodes
    );
    for (phase, lines) in &r.profiles {
        let _ = writeln!(
            out,
            "<details><summary>{phase}</summary>\n\n| % | symbol |\n|---:|---|"
        );
        for l in lines {
            // Results written before the parser dropped perf's empty columns.
            let symbol = crate::profile::without_empty_columns(&l.symbol).replace('|', "\\|");
            let _ = writeln!(out, "| {:.1} | `{symbol}` |", l.percent);
        }
        out.push_str("\n</details>\n\n");
    }
    out
}

/// The machine, from the first run.
pub fn markdown_environment(runs: &[Results]) -> String {
    let Some(e) = runs.first().map(|r| &r.environment) else {
        return String::new();
    };
    format!(
        "- CPU: {} cores, {}\n- memory: {:.0} GiB; kernel {}\n- server: `{}` (release build), database {}\n- open-files limit: {}\n- **the generator and the server share these {} cores**\n",
        e.cores,
        e.cpu_model,
        e.memory_gib,
        e.kernel,
        e.server_command,
        e.database,
        e.open_files_limit,
        e.cores
    )
}

/// Fills `{{environment}}`, `{{results}}`, `{{targets}}` and `{{profiles}}`
/// from `runs`, and `{{patched_results}}`, `{{patched_targets}}` and
/// `{{patched_profiles}}` from the runs of a patched server.
pub fn render(template: &str, runs: &[Results], patched: &[Results]) -> String {
    let or_not_run = |text: String, runs: &[Results]| {
        if runs.is_empty() {
            "(not run)\n".to_string()
        } else {
            text
        }
    };
    template
        .replace("{{environment}}", &markdown_environment(runs))
        .replace("{{results}}", &markdown_results(runs))
        .replace("{{targets}}", &markdown_targets(runs))
        .replace("{{profiles}}", &markdown_profiles(runs))
        .replace(
            "{{patched_results}}",
            &or_not_run(markdown_results(patched), patched),
        )
        .replace(
            "{{patched_targets}}",
            &or_not_run(markdown_targets(patched), patched),
        )
        .replace(
            "{{patched_profiles}}",
            &or_not_run(markdown_profiles(patched), patched),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Target;

    #[test]
    fn runs_become_columns_and_targets_rows() {
        let mut a = Results {
            nodes: 1000,
            ..Default::default()
        };
        a.targets.push(Target {
            name: "idle".into(),
            value: "1%".into(),
            limit: "< 5%".into(),
            met: true,
        });
        let b = Results {
            nodes: 5000,
            ..Default::default()
        };
        let md = render(
            "{{results}}\n{{targets}}\n{{patched_results}}",
            &[a, b],
            &[],
        );
        assert!(md.contains("| metric | N = 1000 | N = 5000 |"), "{md}");
        assert!(md.contains("| 1000 | idle | 1% | < 5% | yes |"), "{md}");
        assert!(
            md.contains("| converged (every node sees every node) | NO | NO |"),
            "{md}"
        );
    }
}

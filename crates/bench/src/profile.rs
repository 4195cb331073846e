//! Flat CPU profiles of the server process with `perf` (software clock
//! sampling, so it works in VMs without hardware counters).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::results::ProfileLine;

/// Sampling rate: low enough not to disturb the server noticeably.
const FREQUENCY: &str = "499";

/// A `perf record` attached to a process for one phase.
#[derive(Debug)]
pub struct Recording {
    child: Child,
    output: PathBuf,
}

impl Recording {
    pub fn start(pid: u32, output: &Path) -> anyhow::Result<Self> {
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                FREQUENCY,
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting `perf record` (is perf installed?)")?;
        Ok(Self {
            child,
            output: output.to_path_buf(),
        })
    }

    /// Stops recording and returns the hottest symbols.
    pub async fn finish(mut self, limit: usize) -> anyhow::Result<Vec<ProfileLine>> {
        if let Some(pid) = self.child.id() {
            // SIGINT makes perf write its file; `kill` because signals need `unsafe`.
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(pid.to_string())
                .status()
                .await;
        }
        self.child.wait().await?;
        let out = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                "symbol",
                "--percent-limit",
                "0.5",
                "-i",
            ])
            .arg(&self.output)
            .stderr(Stdio::null())
            .output()
            .await
            .context("running `perf report`")?;
        Ok(parse_report(&String::from_utf8_lossy(&out.stdout), limit))
    }
}

/// Empty columns some perf versions print after the symbol (IPC and its
/// coverage, `-` when the machine has no such counters).
pub(crate) fn without_empty_columns(mut symbol: &str) -> &str {
    while let Some(rest) = symbol.strip_suffix('-') {
        if !rest.ends_with(char::is_whitespace) {
            break;
        }
        symbol = rest.trim_end();
    }
    symbol
}

/// Lines like `    12.34%  [.] serde_json::ser::format_escaped_str`.
fn parse_report(text: &str, limit: usize) -> Vec<ProfileLine> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (percent, rest) = l.trim().split_once('%')?;
            let symbol = without_empty_columns(
                rest.trim()
                    .trim_start_matches("[.]")
                    .trim_start_matches("[k]")
                    .trim(),
            );
            Some(ProfileLine {
                percent: percent.trim().parse().ok()?,
                symbol: symbol.to_string(),
            })
        })
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_become_symbols_with_percentages() {
        let text = "# Samples: 1K\n#\n    41.20%  [.] ZSTD_compressBlock_fast\n     3.05%  [k] _raw_spin_unlock\n\n";
        let lines = parse_report(text, 10);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].percent, 41.2);
        assert_eq!(lines[0].symbol, "ZSTD_compressBlock_fast");
        assert_eq!(lines[1].symbol, "_raw_spin_unlock");
        assert_eq!(parse_report(text, 1).len(), 1);
        let with_ipc = "    21.80%  [k] finish_task_switch.isra.0          -      -  \n     1.00%  [.] core::ops::Sub<i64>::sub -  -\n";
        let lines = parse_report(with_ipc, 10);
        assert_eq!(lines[0].symbol, "finish_task_switch.isra.0");
        assert_eq!(lines[1].symbol, "core::ops::Sub<i64>::sub");
    }
}

"""Plots for docs/benchmarks.md from `headway-bench run --json` results.

Usage: plot.py OUT_DIR RESULTS.json...
Writes OUT_DIR/{memory,timeline,propagation,bytes}.png.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIB = 1 << 20
KINDS = [("join", "join"), ("endpoint", "endpoint change"), ("offline", "disconnect")]


def load(paths):
    runs = [json.loads(Path(p).read_text()) for p in paths]
    return sorted(runs, key=lambda r: r["nodes"])


def label(run):
    return f"N = {run['nodes']:,}" + (" (aborted)" if run.get("aborted") else "")


def memory(runs, out):
    """Server RSS against nodes connected while the tailnet comes up."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in runs:
        pts = [p for p in run["timeline"] if p["phase"] == "ramp"]
        ax.plot([p["connected"] for p in pts], [p["server_rss_bytes"] / MIB for p in pts], label=label(run))
    ax.axhline(1024, color="red", linestyle="--", linewidth=1, label="target: 1 GiB")
    ax.set_xlabel("nodes connected and streaming")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_title("Server memory while the tailnet comes up")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=110)


def timeline(runs, out):
    """Server RSS and CPU over each whole run, phases marked."""
    fig, (rss, cpu) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for run in runs:
        pts = run["timeline"]
        if len(pts) < 2:
            continue
        t = [p["seconds"] for p in pts]
        rss.plot(t, [p["server_rss_bytes"] / MIB for p in pts], label=label(run))
        cores = [0.0] + [
            (b["server_cpu_seconds"] - a["server_cpu_seconds"]) / max(b["seconds"] - a["seconds"], 1e-9)
            for a, b in zip(pts, pts[1:])
        ]
        line = cpu.plot(t, cores, linewidth=0.8, label=label(run))[0]
        # Phase boundaries of this run.
        for a, b in zip(pts, pts[1:]):
            if a["phase"] != b["phase"]:
                cpu.axvline(b["seconds"], color=line.get_color(), alpha=0.25, linewidth=0.8)
                cpu.text(b["seconds"], 2.02, b["phase"], rotation=90, fontsize=6, va="bottom", color=line.get_color())
    rss.axhline(1024, color="red", linestyle="--", linewidth=1)
    rss.set_ylabel("server RSS (MiB)")
    rss.legend(fontsize=8)
    rss.grid(alpha=0.3)
    cpu.set_ylabel("server CPU (cores)")
    cpu.set_ylim(0, 2.4)
    cpu.set_xlabel("seconds since the server started")
    cpu.grid(alpha=0.3)
    fig.suptitle("Server over the whole run (2 cores, shared with the generator)")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)


def propagation(runs, out):
    """p50 and p99 of each kind of change, per tailnet size."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    measured = [r for r in runs if r["join"]["probes"] > 0]
    width = 0.8 / max(len(measured), 1)
    for i, run in enumerate(measured):
        xs = [k + i * width for k in range(len(KINDS))]
        p50 = [run[key]["latency"]["p50_ms"] for key, _ in KINDS]
        p99 = [run[key]["latency"]["p99_ms"] for key, _ in KINDS]
        bars = ax.bar(xs, p99, width, alpha=0.45, label=f"{label(run)} p99")
        ax.bar(xs, p50, width, color=bars.patches[0].get_facecolor(), alpha=1.0, label=f"{label(run)} p50")
    ax.axhline(1000, color="red", linestyle="--", linewidth=1, label="target (join p99): 1 s")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(KINDS))], [name for _, name in KINDS])
    ax.set_ylabel("ms until every connected node had it")
    ax.set_title("Change propagation (pale: p99, solid: p50)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "propagation.png", dpi=110)


def bytes_per_change(runs, out):
    """Bytes each receiver gets for one change: flat in N means O(change)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    measured = [r for r in runs if r["join"]["probes"] > 0]
    ns = [r["nodes"] for r in measured]
    for key, name in KINDS:
        ax.plot(ns, [r[key]["json_bytes_per_receiver"] for r in measured], marker="o", label=f"{name}, JSON")
        ax.plot(ns, [r[key]["wire_bytes_per_receiver"] for r in measured], marker="s", linestyle="--", label=f"{name}, zstd frame")
    ax.set_xscale("log")
    ax.set_xticks(ns, [f"{n:,}" for n in ns])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("nodes in the tailnet")
    ax.set_ylabel("bytes per receiver per change")
    ax.set_title("Bytes per change per receiver (flat: O(change), not O(N))")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bytes.png", dpi=110)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    runs = load(sys.argv[2:])
    memory(runs, out)
    timeline(runs, out)
    propagation(runs, out)
    bytes_per_change(runs, out)


if __name__ == "__main__":
    main()

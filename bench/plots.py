"""Charts, one per question, from run folders (the results contract) only: never from the runner.

Every function takes the runs (one or several, overlaid or side by side) and returns a matplotlib
figure, or None when the runs hold no data for that question.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # headless files by default; notebooks keep their inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .errors import UsageError
from .runs import Run, cell_label, error_count, load_run

OPS = ("enqueue", "dequeue", "ack", "e2e")
PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99)
ERROR_COLORS = {
    "connection_refused": "tab:red",
    "timeout": "tab:orange",
    "clusterdown": "tab:purple",
    "tryagain": "tab:pink",
    "moved": "tab:brown",
    "oom": "tab:olive",
    "pool_exhausted": "tab:gray",
}


def _title(fig: Figure, text: str, runs: list[Run]) -> None:
    incomplete = [r.name for r in runs if not r.complete]
    suffix = f"  [INCOMPLETE: {', '.join(incomplete)}]" if incomplete else ""
    fig.suptitle(text + suffix, fontsize=13, fontweight="bold")


def _cells(runs: list[Run], keep: Callable[[dict[str, Any]], bool] = lambda c: True) -> list[tuple[Run, dict]]:
    return [(run, cell) for run in runs for cell in run.cells if keep(cell)]


def throughput(runs: list[Run]) -> Figure | None:
    """Ops/s per operation for each cell, repeat min..max as error bars."""
    items = _cells(runs, lambda c: c["params"].get("fault", "none") == "none" and bool(c["ops"]))
    if not items:
        return None
    ops = [op for op in ("enqueue", "enqueue_many", "dequeue", "ack") if any(op in c["ops"] for _, c in items)]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(items) + 3), 5.5))
    width = 0.8 / len(ops)
    x = np.arange(len(items))
    for i, op in enumerate(ops):
        med = [c["ops"].get(op, {}).get("ops_per_s") or 0 for _, c in items]
        lo = [m - (c["ops"].get(op, {}).get("ops_per_s_min") or m) for m, (_, c) in zip(med, items, strict=True)]
        hi = [(c["ops"].get(op, {}).get("ops_per_s_max") or m) - m for m, (_, c) in zip(med, items, strict=True)]
        ax.bar(x + (i - (len(ops) - 1) / 2) * width, med, width, yerr=[lo, hi], capsize=3, label=op)
    ax.set_xticks(x, [cell_label(c, r, len(runs) > 1) for r, c in items], rotation=25, ha="right")
    ax.set_ylabel("operations per second (median of repeats)")
    ax.legend(title="operation")
    ax.grid(axis="y", alpha=0.3)
    _title(fig, "Throughput by configuration", runs)
    fig.text(0.01, 0.01, "error bars: min..max over repeats; cells with faults are left out", fontsize=8, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return fig


def latency_spectrum(runs: list[Run]) -> Figure | None:
    """HDR percentile curves per operation: x = 1/(1-p) on a log axis, y = µs (log)."""
    items = [(r, c, r.histograms(c)) for r, c in _cells(runs)]
    items = [(r, c, h) for r, c, h in items if h]
    ops = [op for op in OPS if any(op in h for _, _, h in items)]
    if not ops:
        return None
    cols = 2 if len(ops) > 1 else 1
    rows = (len(ops) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.6 * rows), squeeze=False)
    xs = [1 / (1 - p / 100) for p in PERCENTILES]
    styles = ["-", "--", ":", "-."]
    for ax, op in zip(axes.flat, ops, strict=False):
        for run_index, run in enumerate(runs):
            for r, c, h in items:
                if r is run and op in h and h[op].get_total_count():
                    ys = [h[op].get_value_at_percentile(p) for p in PERCENTILES]
                    ax.plot(xs, ys, styles[run_index % 4], marker="o", ms=3, label=cell_label(c, r, len(runs) > 1))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({0, *range(0, len(PERCENTILES), 2), len(PERCENTILES) - 1})
        ax.set_xticks([xs[i] for i in ticks], [f"{PERCENTILES[i]:g}%" for i in ticks])
        ax.minorticks_off()
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (µs)")
        ax.set_title(f"{op}" + (" (enqueue → dequeue, incl. queueing)" if op == "e2e" else ""))
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    _title(fig, "Latency percentile spectrum (HdrHistogram, µs)", runs)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def pool_sizes(runs: list[Run]) -> Figure | None:
    """Ops/s and p99 vs pool size, blocking vs non-blocking, exhaustion errors marked."""
    items = _cells(
        runs, lambda c: c["params"].get("fault", "none") == "none" and c["params"].get("maxmemory") in ("0", 0)
    )
    sizes = {c["params"]["pool_size"] for _, c in items}
    if len(sizes) < 2:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    # One line per (run, backend, users, blocking): only the pool differs along a line.
    keys = sorted(
        {
            (ri, c["params"]["backend"], c["params"]["users"], c["params"]["pool_blocking"])
            for ri, run in enumerate(runs)
            for r, c in items
            if r is run
        }
    )
    for ri, backend, users_n, blocking in keys:
        group = sorted(
            [
                c
                for r, c in items
                if r is runs[ri]
                and (c["params"]["backend"], c["params"]["users"], c["params"]["pool_blocking"])
                == (backend, users_n, blocking)
            ],
            key=lambda c: c["params"]["pool_size"],
        )
        name = f"{'blocking' if blocking else 'non-blocking'}, {backend}, {users_n} users"
        name += f" ({runs[ri].name})" if len(runs) > 1 else ""
        xs = [c["params"]["pool_size"] for c in group]
        enq = [c["ops"].get("enqueue", {}) for c in group]
        line = ax1.plot(xs, [e.get("ops_per_s") or 0 for e in enq], marker="o", label=name)[0]
        ax2.plot(xs, [e.get("p99_us") or np.nan for e in enq], marker="o", label=name, color=line.get_color())
        for x, c in zip(xs, group, strict=True):
            exhausted = error_count(c, "pool_exhausted")
            if exhausted:
                y = c["ops"].get("enqueue", {}).get("ops_per_s") or 0
                ax1.plot([x], [y], "x", color="tab:red", ms=12, mew=2)
                ax1.annotate(
                    f"{exhausted:,} PoolExhausted errors",
                    (x, y),
                    textcoords="offset points",
                    xytext=(6, 8),
                    fontsize=8,
                    color="tab:red",
                )
    all_sizes = sorted(sizes)
    users = sorted({c["params"]["users"] for _, c in items})
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(all_sizes, [str(x) for x in all_sizes])
        ax.minorticks_off()
        ax.set_xlabel("pool size (connections per process / per node)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("enqueue ops/s")
    ax2.set_ylabel("enqueue p99 latency (µs)")
    ax2.set_yscale("log")
    _title(fig, f"Pool-size sweep at {', '.join(map(str, users))} users", runs)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def _memory_label(cell: dict[str, Any], run: Run, many: bool) -> str:
    p = cell["params"]
    label = cell_label(cell, run, many)
    return label if p["maxmemory_policy"] in label else f"{label}\n{p['maxmemory_policy']} {p['maxmemory']}"


def memory_policies(runs: list[Run]) -> Figure | None:
    """Per policy: tasks ok / delivered / lost / rejected, and used memory + evictions over time."""
    items = _cells(runs, lambda c: str(c["params"].get("maxmemory", "0")) not in ("0", ""))
    if not items:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5))
    fields = [
        ("enqueued_ok", "enqueued ok", "tab:blue"),
        ("delivered_unique", "delivered", "tab:green"),
        ("lost", "LOST", "tab:red"),
        ("rejected", "rejected (OOM)", "tab:gray"),
    ]
    x = np.arange(len(items))
    width = 0.8 / len(fields)
    for i, (key, name, color) in enumerate(fields):
        values = [c["audit"].get(key, 0) for _, c in items]
        bars = ax1.bar(x + (i - 1.5) * width, values, width, label=name, color=color)
        if key == "lost":
            ax1.bar_label(bars, labels=[f"{v:,}" if v else "0" for v in values], fontsize=8, color="tab:red")
    ax1.set_xticks(x, [_memory_label(c, r, len(runs) > 1) for r, c in items], fontsize=8)
    ax1.set_ylabel("tasks")
    ax1.set_title("What happened to the tasks")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4)
    ax1.grid(axis="y", alpha=0.3)
    ax3 = ax2.twinx()
    ax3.set_ylim(
        bottom=0,
        top=max(1, max((row.get("evicted_keys") or 0 for r, c in items for row in r.info(c)), default=1) * 1.1),
    )
    for r, c in items:
        rows = [row for row in r.info(c) if row.get("used_memory") is not None]
        if not rows:
            continue
        t = [row["t_s"] for row in rows]
        line = ax2.plot(
            t, [row["used_memory"] / 2**20 for row in rows], label=_memory_label(c, r, len(runs) > 1).replace("\n", " ")
        )[0]
        ax3.plot(t, [row["evicted_keys"] or 0 for row in rows], "--", color=line.get_color(), alpha=0.7)
    ax2.set_xlabel("seconds since cell start")
    ax2.set_ylabel("used_memory (MiB, solid)")
    ax3.set_ylabel("evicted_keys (cumulative, dashed)")
    ax2.set_title("Memory and evictions over time")
    ax2.legend(fontsize=8, loc="upper left")
    ax2.grid(alpha=0.3)
    evicting = any(c["params"]["maxmemory_policy"] != "noeviction" for _, c in items)
    _title(
        fig,
        "maxmemory policies: evicting policies delete whole queue keys (tasks lost)"
        if evicting
        else "At the memory limit (noeviction): enqueues rejected, nothing lost",
        runs,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def failover_timelines(runs: list[Run]) -> Figure | None:
    """Per faulted cell: ops/s, p99 and errors per second, fault window shaded, events marked."""
    items = [(r, c) for r, c in _cells(runs) if c.get("fault")]
    if not items:
        return None
    fig, axes = plt.subplots(len(items), 1, figsize=(12, 3.6 * len(items)), squeeze=False)
    for ax, (run, cell) in zip(axes[:, 0], items, strict=True):
        rows = run.timeseries(cell)
        fault = cell["fault"]
        ax2 = ax.twinx()
        for op, color in (("enqueue", "tab:blue"), ("dequeue", "tab:green")):
            series = sorted(
                (row["t_s"], row["count"] or 0, row["p99_us"], row["errors"] or 0)
                for row in rows
                if row["operation"] == op
            )
            if not series:
                continue
            t = [s[0] + 0.5 for s in series]
            ax.plot(t, [s[1] for s in series], color=color, label=f"{op} ops/s")
            ax2.plot(t, [(s[2] or np.nan) / 1000 for s in series], ":", color=color, label=f"{op} p99 (ms)")
            errs = [s[3] for s in series]
            if any(errs):
                ax.bar(t, errs, width=0.8, color="tab:red", alpha=0.5, label=f"{op} errors/s")
        start = fault.get("injected_at_s")
        end = fault.get("recovered_at_s") or fault.get("promoted_at_s") or fault.get("resumed_at_s")
        if start is not None and end is not None and end > start:
            ax.axvspan(start, end, color="tab:red", alpha=0.08)
        for n, (key, name, style) in enumerate(
            (
                ("injected_at_s", "injected", "-"),
                ("node_failed_at_s", "node failed", "--"),
                ("promoted_at_s", "replica promoted", "-."),
                ("recovered_at_s", "clients recovered", ":"),
                ("restarted_at_s", "node restarted", (0, (1, 3))),
            )
        ):
            if fault.get(key) is not None:
                ax.axvline(fault[key], color="black", linestyle=style, lw=1)
                ax.text(
                    fault[key],
                    ax.get_ylim()[1] * (0.97 - 0.25 * (n % 2)),
                    f" {name}",
                    rotation=90,
                    va="top",
                    fontsize=7,
                )
        audit = cell["audit"]
        errors = {k: v for kinds in cell["errors"].values() for k, v in kinds.items()}
        text = (
            f"lost {audit.get('lost', 0):,} · duplicated {audit.get('duplicates', 0):,} · "
            f"ambiguous {audit.get('ambiguous', 0):,} · rejected {audit.get('rejected', 0):,}\n"
            f"unavailable {fault.get('unavailable_s') or 0:.2f} s · errors: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(errors.items())) or "none")
        )
        ax.text(0.01, 0.04, text, transform=ax.transAxes, fontsize=8, bbox={"facecolor": "white", "alpha": 0.85})
        ax.set_title(f"{cell_label(cell, run, len(runs) > 1)} — {fault['kind']} of master {fault.get('target')}")
        ax.set_xlabel("seconds since load start")
        ax.set_ylabel("operations / errors per second")
        ax2.set_ylabel("p99 latency (ms, dotted)")
        ax2.set_yscale("log")
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    _title(fig, "Failover timelines (shaded: fault injected → clients recovered)", runs)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def latency_vs_load(runs: list[Run]) -> Figure | None:
    """p50/p99 of (coordinated-omission corrected) enqueue vs offered open-loop rate."""
    items = _cells(runs, lambda c: (c["params"].get("rate") or 0) > 0)
    if len({c["params"]["rate"] for _, c in items}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(9, 5))
    for run in runs:
        group = sorted([c for r, c in items if r is run], key=lambda c: c["params"]["rate"])
        xs = [c["params"]["rate"] for c in group]
        for key, style in (("p50_us", "-o"), ("p99_us", "--o")):
            ax.plot(
                xs,
                [c["ops"].get("enqueue", {}).get(key) for c in group],
                style,
                label=f"{key[:-3]}" + (f" ({run.name})" if len(runs) > 1 else ""),
            )
    ax.set_xlabel("offered rate (tasks/s)")
    ax.set_ylabel("enqueue latency from intended send time (µs)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _title(fig, "Latency vs offered load (open loop, coordinated-omission corrected)", runs)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def microbenchmarks(benchmark_json: Path | None) -> Figure | None:
    """Ops/s per operation and backend from pytest-benchmark's saved JSON, raw redis-py beside ours."""
    if benchmark_json is None or not benchmark_json.exists():
        return None
    data = json.loads(benchmark_json.read_text())
    rows = [
        (b.get("group") or b["name"], str(b.get("param") or b["name"]), b["stats"]["ops"])
        for b in data.get("benchmarks", [])
    ]
    rows = [r for r in rows if "pool" not in r[0]]
    if not rows:
        return None
    groups = sorted({g for g, _, _ in rows})
    fig, ax = plt.subplots(figsize=(11, max(4, 0.42 * len(rows) + 2)))
    y, labels, colors = [], [], []
    pos = 0.0
    for group in groups:
        for _, name, ops in sorted((r for r in rows if r[0] == group), key=lambda r: "raw" in r[1]):
            y.append((pos, ops))
            operation = name.rsplit("-", 1)[-1].replace("_", " ")
            context = group.split(" vs ")[-1].split(" ", 1)[-1] if " vs " in group else group
            labels.append(f"{operation}  ({context})")
            colors.append("tab:gray" if "raw" in name else "tab:blue")
            pos += 1
        pos += 0.6
    ax.barh([p for p, _ in y], [o for _, o in y], color=colors)
    ax.set_yticks([p for p, _ in y], labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("operations per second (pytest-benchmark, mean)")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Micro-benchmarks: TaskQueue (blue) vs raw redis-py (gray), same client", fontweight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def _engine_of(cell: dict[str, Any]) -> str:
    queue = cell["params"].get("queue") or ""
    return queue.rsplit(":", 1)[-1] if queue else f"TaskQueue {cell['params'].get('engine', 'list')}"


def peers(runs: list[Run]) -> Figure | None:
    """Queue engines side by side at equal load: ops/s and end-to-end latency per engine."""
    items = _cells(
        runs,
        lambda c: (
            c["params"].get("fault", "none") == "none"
            and bool(c["ops"])
            and str(c["params"].get("maxmemory", "0")) in ("0", "")
        ),
    )
    if len({_engine_of(c) for _, c in items}) < 2:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5))
    labels = [
        cell_label(c, r, len(runs) > 1) + ("" if c["id"] in _engine_of(c) else f"\n[{_engine_of(c)}]") for r, c in items
    ]
    x = np.arange(len(items))
    for i, (op, name) in enumerate((("enqueue", "enqueue"), ("ack", "dequeue+ack"))):
        ax1.bar(x + (i - 0.5) * 0.4, [c["ops"].get(op, {}).get("ops_per_s") or 0 for _, c in items], 0.4, label=name)
    ax1.set_xticks(x, labels, fontsize=8)
    ax1.set_ylabel("operations per second")
    ax1.set_title("Throughput")
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    for j, op in enumerate(("enqueue", "e2e")):
        for i, (key, name) in enumerate((("p50_us", "p50"), ("p99_us", "p99"))):
            values = [(c["ops"].get(op, {}).get(key) or np.nan) / 1000 for _, c in items]
            ax2.bar(x + (2 * j + i - 1.5) * 0.2, values, 0.2, label=f"{op} {name}")
    ax2.set_yscale("log")
    ax2.set_xticks(x, labels, fontsize=8)
    ax2.set_ylabel("latency (ms, log)")
    ax2.set_title("Latency: the enqueue call, and end to end (enqueue → dequeue, incl. backlog)")
    ax2.legend(fontsize=8)
    ax2.grid(axis="y", alpha=0.3)
    _title(fig, "Queue engines at equal load", runs)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


CHARTS: dict[str, Callable[[list[Run]], Figure | None]] = {
    "peers": peers,
    "throughput": throughput,
    "latency-spectrum": latency_spectrum,
    "pool-sizes": pool_sizes,
    "memory-policies": memory_policies,
    "failover-timelines": failover_timelines,
    "latency-vs-load": latency_vs_load,
}


def latest_benchmark_json(root: Path = Path("results/benchmarks")) -> Path | None:
    files = sorted(root.glob("*/*.json"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


def plot_runs(
    paths: list[Path], only: list[str] | None = None, out: Path | None = None, benchmark_json: Path | None = None
) -> list[Path]:
    """Write every chart the runs have data for into ``out`` (default: first run's charts/)."""
    names = [*CHARTS, "microbenchmarks"]
    unknown = [n for n in only or [] if n not in names]
    if unknown:
        raise UsageError(f"unknown chart {', '.join(unknown)}: valid are {', '.join(names)}")
    runs = [load_run(p) for p in paths]
    out = out or runs[0].path / "charts"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in only or names:
        fig = microbenchmarks(benchmark_json) if name == "microbenchmarks" else CHARTS[name](runs)
        if fig is None:
            continue
        for ext in ("png", "svg"):
            fig.savefig(out / f"{name}.{ext}", dpi=110)
        plt.close(fig)
        written.append(out / f"{name}.png")
    return written

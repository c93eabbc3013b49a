"""Charts, one per question, from run folders (the results contract) only: never from the runner.

Every function takes the runs (one or several, overlaid or side by side) and returns a matplotlib
figure, or None when the runs hold no data for that question. Here: the registry (``CHARTS``,
``plot_runs``) and the throughput chart; each family of charts has its module, re-exported here:
``plots_latency`` (spectrum, latency vs load), ``plots_memory`` (pool sizes, maxmemory policies),
``plots_peers`` (engines and peers, micro-benchmarks), ``plots_faults``, ``plots_partitions``,
``plots_capacity``, ``plots_soak``, ``plots_pool`` (pool size vs round trip).
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # headless files by default; notebooks keep their inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .cells import cell_label, is_faulted
from .chartstyle import cells as _cells
from .chartstyle import title as _title
from .errors import UsageError
from .plots_capacity import capacity_curves
from .plots_faults import failover_timelines
from .plots_latency import latency_spectrum, latency_vs_load
from .plots_memory import memory_policies, pool_sizes
from .plots_partitions import partitions
from .plots_peers import microbenchmarks, peers
from .plots_pool import pool_rtt
from .plots_soak import soak
from .plots_studies import FEW, throughput_by_study, top_margin
from .plots_studies import repeats as _repeats
from .plots_studies import top as _top
from .runs import Run, load_run


def throughput(runs: list[Run]) -> Figure | None:
    """Ops/s per operation for each cell, repeat min..max as error bars, rejected enqueues and errors marked."""
    items = _cells(runs, lambda c: not is_faulted(c) and bool(c["ops"]))
    if not items:
        return None
    ops = [op for op in ("enqueue", "enqueue_many", "dequeue", "ack") if any(op in c["ops"] for _, c in items)]
    if len(items) > FEW:  # one panel per study, horizontal bars
        fig = throughput_by_study(runs, items, ops)
        _title(fig, "Throughput by configuration", runs)
        fig.text(0.01, 0.005, _bars_note(items, ops), fontsize=8, alpha=0.7)
        fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, top_margin(fig)))
        return fig
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(items) + 3), 5.5))
    width = 0.8 / len(ops)
    x = np.arange(len(items))
    hatched = False
    for i, op in enumerate(ops):
        stats = [c["ops"].get(op, {}) for _, c in items]
        med = [s.get("ops_per_s") or 0 for s in stats]
        several = [_repeats(c, op) > 1 for _, c in items]  # one repeat has no spread to show
        lo = [m - (s.get("ops_per_s_min") or m) if k else np.nan for m, s, k in zip(med, stats, several, strict=True)]
        hi = [(s.get("ops_per_s_max") or m) - m if k else np.nan for m, s, k in zip(med, stats, several, strict=True)]
        bars = ax.bar(x + (i - (len(ops) - 1) / 2) * width, med, width, yerr=[lo, hi], capsize=3, label=op)
        for bar, (_, c) in zip(bars, items, strict=True):
            if sum(c["errors"].get(op, {}).values()):
                bar.set_hatch("///")
                bar.set_edgecolor("tab:red")
                hatched = True
    peak = max((_top(c, op) for _, c in items for op in ops), default=0)
    for xi, (_, c) in enumerate(items):
        rejected = (c.get("audit") or {}).get("rejected", 0)
        errors = {op: sum(kinds.values()) for op, kinds in c["errors"].items() if sum(kinds.values())}
        lines = [f"{rejected:,} enqueues rejected (whole load)"] if rejected else []
        lines += [f"{op} errors {n:,} (measured)" for op, n in sorted(errors.items())]
        if lines:
            group_top = max(_top(c, op) for op in ops)
            ax.annotate(
                "\n".join(textwrap.fill(line, 18) for line in lines),  # as narrow as its group: no neighbour hidden
                (xi, group_top),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color="tab:red",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1},
            )
    ax.set_ylim(0, max(peak, 1) * 1.2)
    ax.set_xticks(x, [cell_label(c, r, len(runs) > 1) for r, c in items], rotation=25, ha="right")
    ax.set_ylabel("operations per second (median of repeats)")
    handles = ax.get_legend_handles_labels()[0]
    if hatched:
        handles.append(Patch(facecolor="none", edgecolor="tab:red", hatch="///", label="had errors"))
    ax.legend(handles=handles, title="operation")
    ax.grid(axis="y", alpha=0.3)
    _title(fig, "Throughput by configuration", runs)
    fig.text(0.01, 0.01, _bars_note(items, ops), fontsize=8, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return fig


def _bars_note(items: list[tuple[Run, dict[str, Any]]], ops: list[str]) -> str:
    single = [c["id"] for _, c in items if all(_repeats(c, op) <= 1 for op in ops)]
    bars_note = (
        "1 repeat: no error bars"
        if len(single) == len(items)
        else "error bars: min..max over repeats" + (f" (1 repeat, none: {', '.join(single)})" if single else "")
    )
    return f"{bars_note}; cells with faults are left out"


CHARTS: dict[str, Callable[[list[Run]], Figure | None]] = {
    "peers": peers,
    "throughput": throughput,
    "latency-spectrum": latency_spectrum,
    "pool-sizes": pool_sizes,
    "memory-policies": memory_policies,
    "failover-timelines": failover_timelines,
    "partitions": partitions,
    "latency-vs-load": latency_vs_load,
    "capacity": capacity_curves,
    "soak": soak,
    "pool-rtt": pool_rtt,
}
# A capacity run's cells are its configurations at their capacity: the capacity chart, plus the charts that
# compare configurations at one load (the others assume a sweep of one parameter at a fixed load).
CAPACITY_CHARTS = ("capacity", "throughput", "latency-spectrum")


def benchmark_json_arg(value: str | Path | None) -> Path | None:
    """``--benchmarks FILE|latest``: the pytest-benchmark JSON to chart, None when not asked for (a run's charts
    never pick up an unrelated micro-benchmark file by themselves)."""
    if value is None:
        return None
    if str(value) == "latest":
        newest = latest_benchmark_json()
        if newest is None:
            raise UsageError("--benchmarks latest: no results under results/benchmarks (run `make bench` first)")
        return newest
    path = Path(value)
    if not path.is_file():
        raise UsageError(f"--benchmarks {value} does not exist")
    return path


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
    if "microbenchmarks" in (only or []) and benchmark_json is None:
        raise UsageError("the microbenchmarks chart needs --benchmarks FILE|latest (pytest-benchmark JSON)")
    runs = [load_run(p) for p in paths]
    if not only and all(r.summary.get("kind") == "capacity-run" for r in runs):
        names = list(CAPACITY_CHARTS)
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

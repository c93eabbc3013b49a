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
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, NullLocator

from .cells import cell_label, error_count, is_faulted, is_plain, lost, memory_limited
from .chartstyle import cells as _cells
from .chartstyle import latency_axis, parse_memory
from .chartstyle import title as _title
from .errors import UsageError
from .plots_capacity import capacity_curves
from .plots_faults import failover_timelines
from .plots_partitions import partitions
from .plots_soak import soak
from .runs import Run, load_run

OPS = ("enqueue", "dequeue", "ack", "e2e")
PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99)


def _repeats(cell: dict[str, Any], op: str) -> int:
    return int(cell["ops"].get(op, {}).get("repeats") or len(cell.get("repeats") or []) or 1)


def _top(cell: dict[str, Any], op: str) -> float:
    stats = cell["ops"].get(op, {})
    return max(stats.get("ops_per_s_max") or 0, stats.get("ops_per_s") or 0)


def throughput(runs: list[Run]) -> Figure | None:
    """Ops/s per operation for each cell, repeat min..max as error bars, rejected enqueues and errors marked."""
    items = _cells(runs, lambda c: not is_faulted(c) and bool(c["ops"]))
    if not items:
        return None
    ops = [op for op in ("enqueue", "enqueue_many", "dequeue", "ack") if any(op in c["ops"] for _, c in items)]
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
                "\n".join(lines),
                (xi, group_top),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color="tab:red",
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
    single = [c["id"] for _, c in items if all(_repeats(c, op) <= 1 for op in ops)]
    bars_note = (
        "1 repeat: no error bars"
        if len(single) == len(items)
        else "error bars: min..max over repeats" + (f" (1 repeat, none: {', '.join(single)})" if single else "")
    )
    fig.text(0.01, 0.01, f"{bars_note}; cells with faults are left out", fontsize=8, alpha=0.7)
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
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: dict[str, Any] = {}  # one legend for the figure: a cell keeps its colour in every panel
    for ax, op in zip(axes.flat, ops, strict=False):
        values: list[float] = []
        for run_index, run in enumerate(runs):
            for index, (r, c, h) in enumerate(items):
                count = h[op].get_total_count() if op in h else 0
                if r is not run or not count:
                    continue
                # A percentile needs samples beyond it: the 99.99th of 7,000 samples is just the max.
                shown = [i for i, p in enumerate(PERCENTILES) if count * (1 - p / 100) >= 1]
                ys = [h[op].get_value_at_percentile(PERCENTILES[i]) for i in shown]
                values += ys
                label = cell_label(c, r, len(runs) > 1)
                line = ax.plot(
                    [xs[i] for i in shown], ys, styles[run_index % 4], marker="o", ms=3, color=colors[index % 10]
                )[0]
                ax.annotate(
                    f"n={count:,}",
                    (xs[shown[-1]], ys[-1]),
                    textcoords="offset points",
                    xytext=(4, 0),
                    fontsize=6,
                    color=colors[index % 10],
                    va="center",
                )
                handles.setdefault(label, line)
        ax.set_xscale("log")
        latency_axis(ax, values, label="latency (log)")
        ticks = sorted({0, *range(0, len(PERCENTILES), 2), len(PERCENTILES) - 1})
        ax.set_xticks([xs[i] for i in ticks], [f"{PERCENTILES[i]:g}%" for i in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("percentile (curves end where fewer than one sample lies beyond; n = samples)")
        ax.set_title(f"{op}" + (" (enqueue → dequeue, incl. queueing)" if op == "e2e" else ""))
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    legend_rows = (len(handles) + 3) // 4
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, len(handles)), fontsize=8)
    _title(fig, "Latency percentile spectrum (HdrHistogram)", runs)
    fig.tight_layout(rect=(0, 0.035 * legend_rows + 0.02, 1, 0.95))
    return fig


def pool_sizes(runs: list[Run]) -> Figure | None:
    """Ops/s and p99 vs pool size, blocking vs non-blocking, exhaustion errors marked."""
    items = _cells(runs, is_plain)
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
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("pool size (connections per process / per node)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("enqueue ops/s")
    p99s = [c["ops"].get("enqueue", {}).get("p99_us") for _, c in items]
    latency_axis(ax2, p99s, label="enqueue p99 latency (log)")
    _title(fig, f"Pool-size sweep at {', '.join(map(str, users))} users", runs)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def _memory_label(cell: dict[str, Any], run: Run, many: bool) -> str:
    p = cell["params"]
    label = cell_label(cell, run, many)
    return label if p["maxmemory_policy"] in label else f"{label}\n{p['maxmemory_policy']} {p['maxmemory']}"


def _memory_rounds(rows: list[dict[str, Any]]) -> tuple[list[float], list[int], list[int], int | None]:
    """Per INFO sampling round (all nodes polled at one epoch): time, the highest used_memory of any node (the limit
    is per node), evicted keys summed over nodes, and the nodes' maxmemory."""
    rounds: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("used_memory") is not None:
            rounds.setdefault(row.get("epoch_s", row["t_s"]), []).append(row)
    ordered = [rounds[k] for k in sorted(rounds)]
    limit = max((int(row.get("maxmemory") or 0) for rnd in ordered for row in rnd), default=0) or None
    return (
        [min(row["t_s"] for row in rnd) for rnd in ordered],
        [max(int(row["used_memory"]) for row in rnd) for rnd in ordered],
        [sum(int(row.get("evicted_keys") or 0) for row in rnd) for rnd in ordered],
        limit,
    )


def memory_policies(runs: list[Run]) -> Figure | None:
    """Per policy: tasks ok / delivered / lost / rejected, and used memory + evictions over time."""
    items = _cells(runs, memory_limited)
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
        values = [(lost(c["audit"])[0] or 0) if key == "lost" else c["audit"].get(key, 0) for _, c in items]
        bars = ax1.bar(x + (i - 1.5) * width, values, width, label=name, color=color)
        if key == "lost":
            texts = [("≤ " if lost(c["audit"])[1] else "") + f"{v:,}" for v, (_, c) in zip(values, items, strict=True)]
            ax1.bar_label(bars, labels=texts, fontsize=8, color="tab:red")
    ax1.set_xticks(x, [_memory_label(c, r, len(runs) > 1) for r, c in items], fontsize=8)
    ax1.set_ylabel("tasks")
    ax1.set_title("What happened to the tasks")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4)
    ax1.grid(axis="y", alpha=0.3)
    ax3 = ax2.twinx()
    peak_evicted, limits = 0, set()
    for r, c in items:
        t, used, evicted, limit = _memory_rounds(r.info(c))
        if not t:
            continue
        many_nodes = " (max over nodes)" if len({row["node"] for row in r.info(c)}) > 1 else ""
        label = _memory_label(c, r, len(runs) > 1).replace("\n", " ") + many_nodes
        line = ax2.plot(t, [u / 2**20 for u in used], label=label)[0]
        ax3.plot(t, evicted, "--", color=line.get_color(), alpha=0.7)
        peak_evicted = max(peak_evicted, *evicted)
        limit = limit or parse_memory(c["params"].get("maxmemory"))
        if limit and limit not in limits:
            limits.add(limit)
            ax2.axhline(limit / 2**20, color=line.get_color(), ls=":", lw=1.5, label=f"maxmemory {limit / 2**20:g} MiB")
    ax3.set_ylim(0, max(1, peak_evicted) * 1.1)
    ax3.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylim(bottom=0, top=max(ax2.get_ylim()[1], max(limits, default=0) / 2**20 * 1.08))
    ax2.set_xlabel("seconds since cell start")
    ax2.set_ylabel("used_memory (MiB, solid)")
    ax3.set_ylabel("evicted_keys (cumulative, dashed)")
    ax2.set_title("Memory and evictions over time")
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
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


def latency_vs_load(runs: list[Run]) -> Figure | None:
    """p50/p99 of (coordinated-omission corrected) enqueue vs offered open-loop rate. Cells that did not reach their
    rate (open_loop.rate_reached false) are not drawn as the latency at that rate: only marked on the rate axis."""
    items = _cells(runs, lambda c: (c["params"].get("rate") or 0) > 0)
    if len({c["params"]["rate"] for _, c in items}) < 2:
        return None
    reached = [(r, c) for r, c in items if (c.get("open_loop") or {}).get("rate_reached") is not False]
    fig, ax = plt.subplots(figsize=(9, 5))
    for run in runs:
        group = sorted([c for r, c in reached if r is run], key=lambda c: c["params"]["rate"])
        xs = [c["params"]["rate"] for c in group]
        for key, style in (("p50_us", "-o"), ("p99_us", "--o")):
            ax.plot(
                xs,
                [c["ops"].get("enqueue", {}).get(key) for c in group],
                style,
                label=f"{key[:-3]}" + (f" ({run.name})" if len(runs) > 1 else ""),
            )
    for _, c in items:
        if not any(c is x for _, x in reached):
            achieved = (c.get("open_loop") or {}).get("achieved_rate") or 0
            ax.axvline(c["params"]["rate"], color="tab:red", ls=":", lw=1, gid="rate-not-reached")
            ax.annotate(
                f"{c['params']['rate']:,.0f}/s not reached\n(achieved {achieved:,.0f}/s)",
                (c["params"]["rate"], 0.03),
                xycoords=ax.get_xaxis_transform(),
                xytext=(-3, 0),
                textcoords="offset points",
                ha="right",
                fontsize=7,
                color="tab:red",
            )
    ax.set_xlabel("offered rate (tasks/s)")
    latency_axis(
        ax,
        [c["ops"].get("enqueue", {}).get(k) for _, c in reached for k in ("p50_us", "p99_us")],
        label="enqueue latency from intended send time (log)",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    _title(fig, "Latency vs offered load (open loop, coordinated-omission corrected)", runs)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def microbenchmarks(benchmark_json: Path | None) -> Figure | None:
    """Tasks/s per operation and backend from pytest-benchmark's saved JSON, raw redis-py beside ours. A batch call
    (``enqueue_many(100)``, ``LPUSH`` of 100 values) counts its tasks (``extra_info.tasks_per_call``), so it shares
    the axis with single enqueues."""
    if benchmark_json is None or not benchmark_json.exists():
        return None
    data = json.loads(benchmark_json.read_text())
    rows = [
        (
            b.get("group") or b["name"],
            str(b.get("param") or b["name"]),
            b["stats"]["ops"] * int((b.get("extra_info") or {}).get("tasks_per_call") or 1),
            int((b.get("extra_info") or {}).get("tasks_per_call") or 1),
        )
        for b in data.get("benchmarks", [])
    ]
    rows = [r for r in rows if "pool" not in r[0]]
    if not rows:
        return None
    groups = sorted({r[0] for r in rows})
    fig, ax = plt.subplots(figsize=(11, max(4, 0.42 * len(rows) + 2)))
    y, labels, colors = [], [], []
    pos = 0.0
    for group in groups:
        for _, name, tasks_per_s, per_call in sorted((r for r in rows if r[0] == group), key=lambda r: "raw" in r[1]):
            y.append((pos, tasks_per_s))
            operation = name.rsplit("-", 1)[-1].replace("_", " ")
            context = " ".join(group.split()[-2:])  # group names end in backend and payload
            batch = f", {per_call} tasks per call" if per_call > 1 else ""
            labels.append(f"{operation}  ({context}{batch})")
            colors.append("tab:gray" if "raw" in name else "tab:blue")
            pos += 1
        pos += 0.6
    ax.barh([p for p, _ in y], [o for _, o in y], color=colors)
    ax.set_yticks([p for p, _ in y], labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("tasks per second (pytest-benchmark mean; batch calls: calls/s × tasks per call)")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Micro-benchmarks: TaskQueue (blue) vs raw redis-py (gray), same client", fontweight="bold")
    fig.text(0.01, 0.01, f"from {benchmark_json}", fontsize=7, alpha=0.7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    return fig


def _engine_of(cell: dict[str, Any]) -> str:
    queue = cell["params"].get("queue") or ""
    return queue.rsplit(":", 1)[-1] if queue else f"TaskQueue {cell['params'].get('engine', 'list')}"


def peers(runs: list[Run]) -> Figure | None:
    """Queue engines side by side at equal load: ops/s and end-to-end latency per engine."""
    items = _cells(runs, lambda c: is_plain(c) and bool(c["ops"]))
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
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax1.grid(axis="y", alpha=0.3)
    latencies: list[float] = []
    for j, op in enumerate(("enqueue", "e2e")):
        for i, (key, name) in enumerate((("p50_us", "p50"), ("p99_us", "p99"))):
            values = [c["ops"].get(op, {}).get(key) or np.nan for _, c in items]
            ax2.bar(x + (2 * j + i - 1.5) * 0.2, values, 0.2, label=f"{op} {name}")
            latencies += values
    latency_axis(ax2, latencies, label="latency (log)")
    ax2.set_xticks(x, labels, fontsize=8)
    ax2.set_title("Latency: the enqueue call, and end to end\n(enqueue → dequeue, incl. backlog)")
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4)
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
    "partitions": partitions,
    "latency-vs-load": latency_vs_load,
    "capacity": capacity_curves,
    "soak": soak,
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

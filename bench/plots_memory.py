"""The resource-limit charts: pool-size sweeps (throughput, p99, PoolExhausted) and maxmemory policies
(what happened to the tasks, memory and evictions over time). Registered in ``bench.plots.CHARTS``."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from .cells import cell_label, error_count, is_plain, lost, memory_limited
from .chartstyle import cells as _cells
from .chartstyle import latency_axis, parse_memory
from .chartstyle import title as _title
from .runs import Run


def _line_key(cell: dict[str, Any]) -> tuple[str, int, bool, float]:
    p = cell["params"]
    return p["backend"], p["users"], p["pool_blocking"], float(p.get("rtt_ms") or 0.0)


def pool_sizes(runs: list[Run]) -> Figure | None:
    """Ops/s and p99 vs pool size, blocking vs non-blocking, exhaustion errors marked."""
    items = _cells(runs, is_plain)
    sizes = {c["params"]["pool_size"] for _, c in items}
    if len(sizes) < 2:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    # One line per (run, backend, users, blocking, round trip): only the pool differs along a line.
    keys = sorted({(ri, *_line_key(c)) for ri, run in enumerate(runs) for r, c in items if r is run})
    for ri, backend, users_n, blocking, rtt in keys:
        group = sorted(
            [c for r, c in items if r is runs[ri] and _line_key(c) == (backend, users_n, blocking, rtt)],
            key=lambda c: c["params"]["pool_size"],
        )
        name = f"{'blocking' if blocking else 'non-blocking'}, {backend}, {users_n} users"
        name += f", {rtt:g} ms RTT" if rtt else ""
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

"""The comparison charts: queue engines and peer queues side by side at equal load (``peers``), and
pytest-benchmark micro-benchmarks, TaskQueue beside raw redis-py (``microbenchmarks``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .cells import cell_label, is_plain
from .chartstyle import cells as _cells
from .chartstyle import latency_axis
from .chartstyle import title as _title
from .runs import Run


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

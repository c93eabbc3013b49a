"""The soak chart: for each long cell (bench.drift.drift_cells), the drift series over the
whole run — per-second p99 read from the HdrHistogram logs, queue depth and in-flight leases, and
memory (the servers' used_memory summed, the Locust process tree's RSS) — with the first and last
tenth shaded (what the drift table compares) and every fault injection marked. Registered in
``bench.plots.CHARTS``."""

from __future__ import annotations

import statistics
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .cells import cell_label
from .chartstyle import latency_axis, title
from .drift import SHARE, drift_cells, used_memory_rounds
from .runs import Run

SMOOTH_S = 30  # the bold line: a rolling median over this many seconds (one failover is a spike, not a trend)
P99_OPS = (("e2e", "tab:blue"), ("enqueue", "tab:green"))


def rolling_median(points: list[tuple[float, float]], width: int = SMOOTH_S) -> list[tuple[float, float]]:
    """Centred rolling median over ``width`` points (fewer at the ends)."""
    half = width // 2
    values = [v for _, v in points]
    return [(t, statistics.median(values[max(0, i - half) : i + half + 1])) for i, (t, _) in enumerate(points)]


def _line(ax: Any, points: list[tuple[float, float]], color: str, label: str, gid: str) -> None:
    if not points:
        return
    ax.plot(*zip(*points, strict=True), color=color, lw=0.5, alpha=0.35, gid=f"{gid}-raw")
    ax.plot(*zip(*rolling_median(points), strict=True), color=color, lw=1.8, label=label, gid=gid)


def soak(runs: list[Run]) -> Figure | None:
    found = [(run, c) for run in runs for c in drift_cells(run.cells)]
    if not found:
        return None
    fig, grid = plt.subplots(3, len(found), figsize=(6.5 * len(found) + 2, 9.5), squeeze=False, sharex="col")
    for col, (run, cell) in enumerate(found):
        lat, tasks, mem = grid[0][col], grid[1][col], grid[2][col]
        p99s = []
        for op, color in P99_OPS:
            points = [(r["t_s"], r["p99_us"]) for r in run.intervals(cell, op) if r["count"]]
            p99s += [v for _, v in points]
            _line(lat, points, color, f"{op} p99", f"p99-{op}")
        latency_axis(lat, p99s, label="p99 per second")
        probes = run.probes(cell)
        for key, color, label in (("depth", "tab:orange", "queue depth"), ("inflight", "tab:purple", "in-flight")):
            points = [(float(r["t_s"]), float(r[key])) for r in probes if r.get(key) not in (None, "")]
            _line(tasks, points, color, label, key)
        tasks.set_ylabel("tasks")
        tasks.set_ylim(bottom=0)
        rss = [(float(r["t_s"]), float(r["load_rss_bytes"]) / 1e6) for r in probes if r.get("load_rss_bytes")]
        used = [(t, v / 1e6) for t, v in used_memory_rounds(run.info(cell))]
        _line(mem, rss, "tab:red", "Locust processes RSS", "rss")
        _line(mem, used, "tab:gray", "Redis used_memory (all nodes)", "used-memory")
        mem.set_ylabel("MB")
        mem.set_ylim(bottom=0)
        mem.set_xlabel("seconds since load start")
        end = float(cell.get("params", {}).get("duration") or 0)
        injected = [t for t in (cell.get("fault_series") or {}).get("injected_at_s", []) if t is not None]
        for ax in (lat, tasks, mem):
            for start, stop in ((0.0, SHARE * end), ((1 - SHARE) * end, end)):
                ax.axvspan(start, stop, color="tab:olive", alpha=0.08, lw=0)
            for i, t in enumerate(injected):
                ax.axvline(t, color="black", lw=0.8, ls=":", label="failover" if i == 0 and ax is lat else None)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left")
        lat.set_title(
            f"{cell_label(cell, run, len(runs) > 1)}\nshaded: first and last tenth (compared in the drift table)",
            fontsize=9,
        )
    title(fig, "Soak: does anything creep up? (thin: per second; bold: 30 s rolling median)", runs)
    fig.tight_layout()
    return fig

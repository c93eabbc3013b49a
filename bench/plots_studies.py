"""Cells grouped by study for charts of many cells: a pool sweep (cells that differ only in ``pool_size``, one
per backend and round trip), memory policies (a ``maxmemory`` set), faults (``fault`` other than none), and
the rest. Charts of more than :data:`FEW` cells draw one panel (row) per study, at most :data:`PER_PANEL`
cells in a panel; fewer cells keep one panel. Also the throughput chart's horizontal bars per study."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .cells import cell_label, is_faulted, memory_limited
from .runs import Run

FEW = 6  # up to this many cells: one panel, as before
PER_PANEL = 6  # at most this many cells (lines, bar groups) in one panel

Item = tuple[Run, dict[str, Any]]


@dataclass
class Study:
    title: str
    items: list[Item]


def _rtt(params: dict[str, Any]) -> str:
    rtt = float(params.get("rtt_ms") or 0)
    return f"{rtt:g} ms RTT" if rtt else "loopback"


def studies(items: list[Item]) -> list[Study]:
    """The cells' studies in order of first appearance (pool sweeps, the rest, memory policies, faults), each
    split into panels of at most :data:`PER_PANEL` cells ("(1/2)", "(2/2)")."""
    sweeps: dict[str, list[Item]] = {}
    memory: list[Item] = []
    faults: list[Item] = []
    for item in items:
        params = item[1]["params"]
        if is_faulted(item[1]):
            faults.append(item)
        elif memory_limited(item[1]):
            memory.append(item)
        else:
            key = repr(sorted((k, str(v)) for k, v in params.items() if k != "pool_size"))
            sweeps.setdefault(key, []).append(item)
    found: list[Study] = []
    rest: list[Item] = []
    for group in sweeps.values():
        if len({str(c["params"].get("pool_size")) for _, c in group}) < 2:
            rest += group
            continue
        params = group[0][1]["params"]
        ordered = sorted(group, key=lambda item: float(item[1]["params"].get("pool_size") or 0))
        found.append(Study(f"pool sweep: {params.get('backend')}, {_rtt(params)}", ordered))
    found += [Study(t, g) for t, g in (("other cells", rest), ("memory policies", memory), ("faults", faults)) if g]
    panels: list[Study] = []
    for study in found:
        parts = math.ceil(len(study.items) / PER_PANEL)
        size = math.ceil(len(study.items) / parts)  # even panels: 7 cells are 4 + 3, not 6 + 1
        for k in range(parts):
            suffix = f" ({k + 1}/{parts})" if parts > 1 else ""
            panels.append(Study(study.title + suffix, study.items[k * size : (k + 1) * size]))
    return panels


def repeats(cell: dict[str, Any], op: str) -> int:
    return int(cell["ops"].get(op, {}).get("repeats") or len(cell.get("repeats") or []) or 1)


def top(cell: dict[str, Any], op: str) -> float:
    stats = cell["ops"].get(op, {})
    return max(stats.get("ops_per_s_max") or 0, stats.get("ops_per_s") or 0)


def _notes(cell: dict[str, Any]) -> str:
    rejected = (cell.get("audit") or {}).get("rejected", 0)
    errors = {op: sum(kinds.values()) for op, kinds in cell["errors"].items() if sum(kinds.values())}
    lines = [f"{rejected:,} enqueues rejected (whole load)"] if rejected else []
    return "; ".join(lines + [f"{op} errors {n:,} (measured)" for op, n in sorted(errors.items())])


def _panel(ax: Axes, study: Study, ops: list[str], many_runs: bool) -> bool:
    """One study's cells as horizontal bar groups, top to bottom in the study's order; True if a bar had errors."""
    height = 0.8 / len(ops)
    y = np.arange(len(study.items))
    hatched = False
    for i, op in enumerate(ops):
        stats = [c["ops"].get(op, {}) for _, c in study.items]
        med = [s.get("ops_per_s") or 0 for s in stats]
        several = [repeats(c, op) > 1 for _, c in study.items]
        lo = [m - (s.get("ops_per_s_min") or m) if k else np.nan for m, s, k in zip(med, stats, several, strict=True)]
        hi = [(s.get("ops_per_s_max") or m) - m if k else np.nan for m, s, k in zip(med, stats, several, strict=True)]
        at = y + (i - (len(ops) - 1) / 2) * height
        bars = ax.barh(at, med, height, xerr=[lo, hi], capsize=2, label=op, color=f"C{i}")
        for bar, (_, c) in zip(bars, study.items, strict=True):
            if sum(c["errors"].get(op, {}).values()):
                bar.set_hatch("///")
                bar.set_edgecolor("tab:red")
                hatched = True
    for yi, (_, c) in enumerate(study.items):
        note = _notes(c)
        if note:
            ax.annotate(
                note,
                (max(top(c, op) for op in ops), yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color="tab:red",
                gid="cell-note",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1},
            )
    ax.set_yticks(y, [cell_label(c, r, many_runs) for r, c in study.items], fontsize=8)
    ax.set_ylim(len(study.items) - 0.5, -0.5)  # the first cell on top
    ax.set_title(study.title, loc="left", fontsize=10, fontweight="bold")
    ax.grid(axis="x", alpha=0.3)
    return hatched


def throughput_by_study(runs: list[Run], items: list[Item], ops: list[str]) -> Figure:
    """Throughput of many cells: one panel per study, horizontal bars (cell labels never crowd), one x scale."""
    panels = studies(items)
    heights = [len(p.items) * 0.32 * max(1, len(ops) / 2.5) + 0.6 for p in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, sum(heights) + 1.4), sharex=True, squeeze=False, height_ratios=heights
    )
    hatched = False
    for ax, study in zip(axes[:, 0], panels, strict=True):
        hatched = _panel(ax, study, ops, len(runs) > 1) or hatched
    peak = max((top(c, op) for _, c in items for op in ops), default=0)
    axes[0, 0].set_xlim(0, max(peak, 1) * 1.35)  # room right of the bars for a cell's notes
    axes[-1, 0].set_xlabel("operations per second (median of repeats)")
    handles = axes[0, 0].get_legend_handles_labels()[0]
    if hatched:
        handles.append(Patch(facecolor="none", edgecolor="tab:red", hatch="///", label="had errors"))
    top_in = 0.55 / fig.get_figheight()  # the title and, below it, the legend of operations in one row
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - top_in), ncol=len(handles), fontsize=8)
    return fig


def top_margin(fig: Figure) -> float:
    """Where the panels of :func:`throughput_by_study` end: below the title and the legend row."""
    return 1 - 0.85 / fig.get_figheight()

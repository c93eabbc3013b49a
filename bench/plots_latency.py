"""The latency charts: the HDR percentile spectrum of every cell, and open-loop latency against the
offered rate. Registered in ``bench.plots.CHARTS``."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .cells import cell_label
from .chartstyle import cell_style, latency_axis, spread
from .chartstyle import cells as _cells
from .chartstyle import title as _title
from .metrics import clamped
from .plots_studies import FEW, studies
from .runs import Run
from .stats import range_text

OPS = ("enqueue", "dequeue", "ack", "e2e")
LABEL_GAP_PT = 7.0  # a 6-point label and a point of air
PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99)


Entry = tuple[int, Run, dict[str, Any], dict[str, Any]]  # run index, run, cell, its histograms per operation
XS = [1 / (1 - p / 100) for p in PERCENTILES]


def latency_spectrum(runs: list[Run]) -> Figure | None:
    """HDR percentile curves per operation: x = 1/(1-p) on a log axis, y = µs (log). More than
    :data:`~bench.plots_studies.FEW` cells: one row of panels per study (:func:`~bench.plots_studies.studies`)."""
    entries = [(runs.index(r), r, c, r.histograms(c)) for r, c in _cells(runs)]
    entries = [e for e in entries if e[3]]
    ops = [op for op in OPS if any(op in e[3] for e in entries)]
    if not ops:
        return None
    if len(entries) > FEW:
        return _spectrum_by_study(runs, entries, ops)
    cols = 2 if len(ops) > 1 else 1
    rows = (len(ops) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.6 * rows), squeeze=False)
    handles: dict[str, Any] = {}  # one legend for the figure: a cell keeps its colour in every panel
    ends: list[tuple[Axes, float, float, str, str]] = []  # each curve's "n=" label: axes, x, y, text, colour
    for ax, op in zip(axes.flat, ops, strict=False):
        _draw_op(ax, op, list(enumerate(entries)), len(runs) > 1, ends, handles)  # a cell's colour: its index
        ax.set_xlabel("percentile (curves end where fewer than one sample lies beyond; n = samples)")
        ax.set_title(f"{op}" + (" (enqueue → dequeue, incl. queueing)" if op == "e2e" else ""))
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    legend_rows = (len(handles) + 3) // 4
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, len(handles)), fontsize=8)
    _title(fig, "Latency percentile spectrum (HdrHistogram)", runs)
    fig.tight_layout(rect=(0, 0.035 * legend_rows + 0.02, 1, 0.95))
    _label_ends(fig, ends)
    return fig


def _spectrum_by_study(runs: list[Run], entries: list[Entry], ops: list[str]) -> Figure:
    """Small multiples: a row per study (at most six curves), a column per operation, a legend per row."""
    panels = studies([(r, c) for _, r, c, _ in entries])
    by_cell = {id(c): e for e in entries for c in [e[2]]}
    fig, axes = plt.subplots(len(panels), len(ops), figsize=(4.1 * len(ops) + 2.6, 3.0 * len(panels) + 1.2))
    axes = axes.reshape(len(panels), len(ops))
    ends: list[tuple[Axes, float, float, str, str]] = []
    for row, study in zip(axes, panels, strict=True):
        handles: dict[str, Any] = {}
        mine = [(i, by_cell[id(c)]) for i, (_, c) in enumerate(study.items)]  # colours restart in each row
        for ax, op in zip(row, ops, strict=True):
            _draw_op(ax, op, mine, len(runs) > 1, ends, handles)
            ax.set_title(f"{study.title} · {op}", fontsize=9)
            ax.set_xlabel("percentile" if study is panels[-1] else "")
            ax.set_ylabel("latency (log)" if op == ops[0] else "")
            ax.tick_params(labelsize=7)
        row[-1].legend(
            list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title=None
        )
    _title(fig, "Latency percentile spectrum (HdrHistogram), one row per study", runs)
    fig.text(
        0.01,
        0.005,
        "curves end where fewer than one sample lies beyond; n = samples; each panel has its own latency scale",
        fontsize=8,
        alpha=0.7,
    )
    fig.tight_layout(rect=(0, 0.3 / fig.get_figheight(), 1, 1 - 0.5 / fig.get_figheight()))
    _label_ends(fig, ends)
    return fig


def _draw_op(
    ax: Axes,
    op: str,
    entries: list[tuple[int, Entry]],
    many_runs: bool,
    ends: list[tuple[Axes, float, float, str, str]],
    handles: dict[str, Any],
) -> None:
    """One operation's curves on ``ax``: ``entries`` are (colour index, entry)."""
    styles = ["-", "--", ":", "-."]
    values: list[float] = []
    for index, (run_index, r, c, h) in entries:
        count = h[op].get_total_count() if op in h else 0
        if not count:
            continue
        # A percentile needs samples beyond it: the 99.99th of 7,000 samples is just the max.
        shown = [i for i, p in enumerate(PERCENTILES) if count * (1 - p / 100) >= 1]
        ys = [h[op].get_value_at_percentile(PERCENTILES[i]) for i in shown]
        values += ys
        style = cell_style(index)
        line = ax.plot(
            [XS[i] for i in shown], ys, styles[run_index % 4], ms=3, label=cell_label(c, r, many_runs), **style
        )[0]
        top = clamped(h[op])  # the curve's end sits at the range's top: a bound, said so beside it
        bound = f", {top:,} ≥ {range_text(h[op].highest_trackable_value)} (clamped)" if top else ""
        ends.append((ax, XS[shown[-1]], ys[-1], f"n={count:,}{bound}", style["color"]))
        handles.setdefault(cell_label(c, r, many_runs), line)
    ax.set_xscale("log")
    ax.set_xlim(XS[0] / 1.4, XS[-1] * 4)  # room on the right for the "n=" labels of the last percentile
    latency_axis(ax, values, label="latency (log)")
    ticks = sorted({0, *range(0, len(PERCENTILES), 2), len(PERCENTILES) - 1})
    ax.set_xticks([XS[i] for i in ticks], [f"{PERCENTILES[i]:g}%" for i in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(True, which="major", alpha=0.3)


def _label_ends(fig: Figure, ends: list[tuple[Axes, float, float, str, str]]) -> None:
    """Each curve's sample count beside its last point; labels ending at the same percentile of one panel
    fan out vertically so none hides another (placed after the layout, in points: what the reader sees)."""
    groups: dict[tuple[int, float], list[tuple[Axes, float, float, str, str]]] = {}
    for end in ends:
        groups.setdefault((id(end[0]), end[1]), []).append(end)
    points_per_pixel = 72 / fig.dpi
    for group in groups.values():
        ys = [float(ax.transData.transform((x, y))[1]) * points_per_pixel for ax, x, y, _, _ in group]
        for (ax, x, y, text, color), at, y_points in zip(group, spread(ys, LABEL_GAP_PT), ys, strict=True):
            ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=(4, at - y_points),
                fontsize=6,
                color=color,
                va="center",
                gid="sample-count",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.3},  # legible over a curve
            )


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

"""The capacity chart (``bench capacity``): corrected latency against the achieved rate, per configuration,
every step of the search a point, the SLO line, each configuration's capacity marked. Reads only
``summary.json`` of capacity runs (``configurations[].steps[].step``)."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from .chartstyle import Log125Locator, latency_axis
from .chartstyle import title as _title
from .runs import Run

NAMES = {"p50_us": "p50", "p90_us": "p90", "p99_us": "p99", "p999_us": "p99.9", "p9999_us": "p99.99"}


def _rate_label(value: float, _pos: object = None) -> str:
    if not (math.isfinite(value) and value > 0):
        return ""
    return f"{value / 1000:g}k" if value >= 10_000 else f"{value:,.0f}"


def _points(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per step that has its verdict: x = achieved rate, the measured and judged values."""
    out = []
    for record in config.get("steps") or []:
        step = record.get("step")
        if not step:
            continue
        measured, verdict = step["measured"], step["verdict"]
        achieved = measured.get("achieved_rate")
        if not achieved:
            continue
        out.append(
            {
                "index": step["index"],
                "rate": step["rate"],
                "x": achieved,
                "corrected": measured.get("corrected") or {},
                "passed": verdict["passed"],
                "harness": verdict["harness_bound"],
            }
        )
    return sorted(out, key=lambda p: (p["rate"], p["index"]))


def _capacity_index(config: dict[str, Any]) -> int | None:
    at = (config.get("capacity") or {}).get("at_capacity") or {}
    return at.get("step")


def capacity_curves(runs: list[Run]) -> Figure | None:
    """One panel per configuration, all on the same axes: corrected enqueue latency at the SLO's percentile
    (solid) and p50 (dashed) against the achieved rate, one point per step: passed filled, failed hollow,
    harness-bound crosses; the capacity a star with a dotted line down to its rate; the SLO a red line."""
    configs = [
        (run, c) for run in runs if run.summary.get("kind") == "capacity-run" for c in run.summary["configurations"]
    ]
    configs = [(run, c) for run, c in configs if _points(c)]
    if not configs:
        return None
    slos = {k: float(v) for run in runs for k, v in ((run.summary.get("criteria") or {}).get("slo") or {}).items()}
    name = next((k for k in ("p99", "p99.9", "p99.99", "p90", "p50") if k in slos), "p99")
    key = {v: k for k, v in NAMES.items()}[name]
    cols = min(3, len(configs))
    rows = math.ceil(len(configs) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(5.6 * cols, 11.5), 4.3 * rows + 1.2), sharex=True, sharey=True, squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    many = len(runs) > 1
    xs_all: list[float] = []
    values: list[float] = list(slos.values())
    for i, (ax, (run, config)) in enumerate(zip(axes.flat, configs, strict=False)):
        color = colors[i % len(colors)]
        points = _points(config)
        xs_all += [p["x"] for p in points]
        latest = {p["rate"]: p for p in sorted(points, key=lambda p: p["index"])}  # a re-run supersedes
        line = [latest[r] for r in sorted(latest)]
        for k, style, width in ((key, "-", 1.4), ("p50_us", "--", 1.0)):
            ys = [p["corrected"].get(k) for p in points]
            values += [y for y in ys if y]
            ax.plot(
                [p["x"] for p in line],
                [p["corrected"].get(k) or math.nan for p in line],
                style,
                color=color,
                lw=width,
                alpha=0.7,
            )
            size = 1.0 if k == key else 0.7
            for p, y in zip(points, ys, strict=True):
                if not y:
                    continue
                if p["harness"]:
                    ax.plot([p["x"]], [y], "x", color=color, ms=8 * size, mew=2 * size)
                elif p["passed"]:
                    ax.plot([p["x"]], [y], "o", color=color, ms=5 * size)
                else:
                    ax.plot([p["x"]], [y], "o", mfc="white", mec=color, ms=6 * size, mew=1.5 * size)
        cap = next((p for p in points if p["index"] == _capacity_index(config)), None)
        if cap is not None and cap["corrected"].get(key):
            ax.plot([cap["x"]], [cap["corrected"][key]], "*", color=color, ms=18, mec="black", mew=0.8, zorder=5)
            ax.axvline(cap["x"], color=color, ls=":", lw=1.2)
        for slo_name, limit in slos.items():
            ax.axhline(limit, color="tab:red", lw=1.4, ls="--", zorder=1)
            ax.annotate(
                f"SLO {slo_name} ≤ {_us_text(limit)}",
                (0.01, limit),
                xycoords=ax.get_yaxis_transform(),
                xytext=(2, 3),
                textcoords="offset points",
                fontsize=8,
                color="tab:red",
            )
        ax.set_title(_panel_title(config, run if many else None), fontsize=10, color=color)
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(configs) :]:
        ax.set_visible(False)
    first = axes.flat[0]
    latency_axis(first, values)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"enqueue latency, corrected (log)\n{name} solid, p50 dashed")
    for ax in axes.flat[: len(configs)]:
        _rate_axis(ax, xs_all)
    handles = [
        Line2D([], [], color="gray", lw=1.4, label=f"corrected {name} (from the intended send)"),
        Line2D([], [], color="gray", lw=1.0, ls="--", label="corrected p50"),
        Line2D([], [], ls="", marker="o", color="gray", label="step passed"),
        Line2D([], [], ls="", marker="o", mfc="white", mec="gray", label="step failed"),
        Line2D([], [], ls="", marker="x", color="gray", mew=2, label="failed, harness-bound: server not saturated"),
        Line2D([], [], ls="", marker="*", color="gray", mec="black", ms=14, label="capacity (passed twice)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    text = ", ".join(f"{k} ≤ {_us_text(v)}" for k, v in slos.items())
    _title(fig, f"Capacity at {text}: corrected latency vs achieved rate (open loop, one point per step)", runs)
    fig.tight_layout(rect=(0, 0.9 / (4.3 * rows + 1.2), 1, 1 - 0.55 / (4.3 * rows + 1.2)))
    return fig


def _panel_title(config: dict[str, Any], run: Run | None) -> str:
    capacity = config.get("capacity") or {}
    rate = capacity.get("rate")
    head = config["id"] + (f" ({run.name})" if run is not None else "")
    if rate is None:
        return f"{head}\nno step passed (limit: {capacity.get('limit', '?')})"
    bound = "≥ " if capacity.get("lower_bound") else ""
    return f"{head}\ncapacity {bound}{rate:,.0f}/s, limit: {capacity.get('limit')}"


class RateLocator(Log125Locator):
    """Rates on a log axis: 1-2-5 per decade; 1-2-3-5, then 1-1.5-2-3-4-5-7, when that leaves fewer than
    four ticks (never 1..9, whose labels collide on a short axis)."""

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        lo, hi = sorted((vmin, vmax))
        if not (lo > 0 and math.isfinite(hi)):
            return list(super().tick_values(vmin, vmax))
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        ticks: list[float] = []
        for mantissas in ((1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)):
            ticks = [m * 10.0**e for e in decades for m in mantissas if lo <= m * 10.0**e <= hi]
            if len(ticks) >= 4:
                break
        return ticks if len(ticks) <= 12 else ticks[:: math.ceil(len(ticks) / 8)]


def _rate_axis(ax: Axes, xs: list[float]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(RateLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(_rate_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if xs:
        ax.set_xlim(min(xs) / 1.25, max(xs) * 1.25)
    ax.set_xlabel("achieved rate (tasks/s, log)")
    ax.tick_params(axis="x", labelbottom=True)


def _us_text(us: float) -> str:
    for scale, unit in ((1e6, "s"), (1e3, "ms")):
        if us >= scale:
            return f"{us / scale:g} {unit}"
    return f"{us:g} µs"

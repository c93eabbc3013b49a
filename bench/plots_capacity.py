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
    """Corrected enqueue latency (the SLO's percentile, and p50) vs achieved rate: passing steps filled,
    failed ones hollow, harness-bound ones as crosses, the capacity as a star; the SLO as a red line."""
    configs = [
        (run, c) for run in runs if run.summary.get("kind") == "capacity-run" for c in run.summary["configurations"]
    ]
    configs = [(run, c) for run, c in configs if _points(c)]
    if not configs:
        return None
    slos = {k: float(v) for run in runs for k, v in ((run.summary.get("criteria") or {}).get("slo") or {}).items()}
    first = next((k for k in ("p99", "p99.9", "p99.99", "p90") if k in slos), "p99")
    panels = [(first, {v: k for k, v in NAMES.items()}[first]), ("p50", "p50_us")]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.2), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    many = len(runs) > 1
    xs_all: list[float] = []
    for ax, (name, key) in zip(axes, panels, strict=True):
        values: list[float] = []
        for i, (run, config) in enumerate(configs):
            color = colors[i % len(colors)]
            points = _points(config)
            label = config["id"] + (f" ({run.name})" if many else "")
            ys = [p["corrected"].get(key) for p in points]
            xs_all += [p["x"] for p in points]
            values += [y for y in ys if y]
            latest = {p["rate"]: p for p in sorted(points, key=lambda p: p["index"])}  # a re-run supersedes
            line = [latest[r] for r in sorted(latest)]
            line_ys = [p["corrected"].get(key) or math.nan for p in line]
            ax.plot([p["x"] for p in line], line_ys, "-", color=color, lw=1.2, alpha=0.6, label=label)
            for p, y in zip(points, ys, strict=True):
                if not y:
                    continue
                if p["harness"]:
                    ax.plot([p["x"]], [y], "x", color=color, ms=8, mew=2)
                elif p["passed"]:
                    ax.plot([p["x"]], [y], "o", color=color, ms=5)
                else:
                    ax.plot([p["x"]], [y], "o", mfc="white", mec=color, ms=6, mew=1.5)
            cap_index = _capacity_index(config)
            cap = next((p for p in points if p["index"] == cap_index), None)
            if cap is not None and cap["corrected"].get(key):
                y = cap["corrected"][key]
                ax.plot([cap["x"]], [y], "*", color=color, ms=17, mec="black", mew=0.8, zorder=5)
                bound = (config.get("capacity") or {}).get("lower_bound")
                text = ("≥ " if bound else "") + f"{cap['rate']:,.0f}/s"
                ax.annotate(text, (cap["x"], y), xytext=(6, -12), textcoords="offset points", fontsize=8, color=color)
        limit = slos.get(name)
        if limit:
            ax.axhline(limit, color="tab:red", lw=1.5, ls="--", zorder=1)
            ax.annotate(
                f"SLO {name} ≤ {_us_text(limit)}",
                (0.01, limit),
                xycoords=ax.get_yaxis_transform(),
                xytext=(2, 4),
                textcoords="offset points",
                fontsize=9,
                color="tab:red",
            )
            values.append(limit)
        latency_axis(ax, values, label=f"enqueue {name}, corrected: from the intended send (log)")
        ax.set_title(f"corrected {name}" + (" (the SLO percentile)" if limit else ""))
        ax.grid(True, which="major", alpha=0.3)
    _rate_axis(axes[0], xs_all)
    _rate_axis(axes[1], xs_all)
    handles, _ = axes[0].get_legend_handles_labels()
    handles += [
        Line2D([], [], ls="", marker="o", color="gray", label="step passed"),
        Line2D([], [], ls="", marker="o", mfc="white", mec="gray", label="step failed"),
        Line2D([], [], ls="", marker="x", color="gray", mew=2, label="failed, harness-bound (server not saturated)"),
        Line2D([], [], ls="", marker="*", color="gray", mec="black", ms=14, label="capacity (highest passing rate)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    text = ", ".join(f"{k} ≤ {_us_text(v)}" for k, v in slos.items())
    _title(fig, f"Capacity at the SLO ({text}): latency vs achieved rate, open loop", runs)
    fig.tight_layout(rect=(0, 0.03 + 0.035 * math.ceil((len(configs) + 4) / 3), 1, 0.95))
    return fig


class RateLocator(Log125Locator):
    """Rates on a log axis: 1-2-5 per decade; 1-2-3-5 when that leaves fewer than four ticks (never 1..9,
    whose labels collide on a short axis)."""

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        lo, hi = sorted((vmin, vmax))
        if not (lo > 0 and math.isfinite(hi)):
            return list(super().tick_values(vmin, vmax))
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        ticks: list[float] = []
        for mantissas in ((1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0)):
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

"""The pool-vs-round-trip chart: enqueue p99 and throughput against the pool size, one line per round trip
(``rtt_ms``), the model's p99 dotted beside each, its predicted knee a dashed vertical line and the measured
knee a star (:mod:`bench.poolsweep`). Drawn for open-loop sweeps of the pool size, with or without ``rtt_ms``
(then one line). Registered in ``bench.plots.CHARTS`` as ``pool-rtt``."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from .chartstyle import cell_style, latency_axis
from .chartstyle import title as _title
from .poolsize import KNEE_P99_TOLERANCE, KNEE_RATE_TOLERANCE
from .poolsweep import RttLine, pool_sweeps
from .runs import Run


def _name(line: RttLine) -> str:
    return "loopback" if not line.rtt_ms else f"RTT {line.rtt_ms:g} ms"


def _draw(axes: tuple[plt.Axes, plt.Axes], line: RttLine, index: int, prefix: str) -> list[float]:
    ax_p99, ax_rate = axes
    color = cell_style(index)["color"]
    name = prefix + _name(line)
    xs = [p.pool for p in line.points]
    p99 = [p.p99_us if p.p99_us is not None else math.nan for p in line.points]
    rate = [p.ops_per_s if p.ops_per_s is not None else math.nan for p in line.points]
    ax_p99.plot(xs, p99, marker="o", color=color, label=name, gid=f"p99 {name}")
    ax_rate.plot(xs, rate, marker="o", color=color, label=name, gid=f"throughput {name}")
    model = [(x, v) for x, v in line.predicted_p99_us.items() if math.isfinite(v)]
    if model:
        ax_p99.plot(*zip(*model, strict=True), ls=":", lw=1.5, color=color, alpha=0.8, gid=f"model {name}")
    if line.predicted is not None:
        for ax in axes:
            ax.axvline(line.predicted, color=color, ls="--", lw=1.3, alpha=0.8, gid=f"predicted knee {name}")
    if line.knee is not None:
        k = line.knee.point
        ax_p99.plot(
            [k.pool], [k.p99_us or math.nan], "*", ms=17, mfc="none", mew=1.8, color=color, gid=f"measured knee {name}"
        )
        ax_rate.plot(
            [k.pool],
            [k.ops_per_s or math.nan],
            "*",
            ms=17,
            mfc="none",
            mew=1.8,
            color=color,
            gid=f"measured knee {name}",
        )
    return [v for v in p99 if math.isfinite(v)] + [v for _, v in model]


def pool_rtt(runs: list[Run]) -> Figure | None:
    """p99 and throughput vs pool size per round trip, the predicted knee (dashed) and the measured one (star)."""
    sweeps = [(run, sweep) for run in runs for sweep in pool_sweeps(run.cells)]
    if not sweeps:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    ax_p99, ax_rate = axes
    latencies: list[float] = []
    sizes: set[int] = set()
    index = 0
    many = len(sweeps) > 1
    for run, sweep in sweeps:
        prefix = (f"{run.name}: " if len(runs) > 1 else "") + (f"{sweep.label}, " if many else "")
        for line in sweep.lines:
            latencies += _draw((ax_p99, ax_rate), line, index, prefix)
            sizes |= set(line.sizes) | ({line.predicted} if line.predicted else set())
            index += 1
        ax_rate.axhline(sweep.rate_per_s, color="0.4", ls=":", lw=1, gid=f"offered {sweep.label}")
        ax_rate.axhline(sweep.rate_per_s * (1 - KNEE_RATE_TOLERANCE), color="0.7", ls=":", lw=1)
    ticks = sorted(sizes)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
        ax.set_xlabel("pool size (connections per process)")
        ax.grid(True, which="major", alpha=0.3)
    latency_axis(ax_p99, latencies, label="enqueue p99 (log; from the intended send)")
    ax_p99.set_title("p99: measured (solid), model (dotted)", fontsize=10)
    top = max((p.ops_per_s or 0 for _, s in sweeps for line in s.lines for p in line.points), default=0)
    ax_rate.set_ylim(0, max(top, max(s.rate_per_s for _, s in sweeps)) * 1.15)
    ax_rate.set_ylabel(f"{sweeps[0][1].op} calls/s")
    ax_rate.set_title("throughput; offered rate and 95 % of it dotted", fontsize=10)
    keys = [
        Line2D([], [], color="0.3", ls="--", label="predicted knee (model)"),
        Line2D([], [], color="0.3", ls="", marker="*", ms=12, mfc="none", label="measured knee"),
    ]
    ax_p99.legend(handles=ax_p99.get_legend_handles_labels()[0] + keys, fontsize=8, loc="upper right")
    rates = ", ".join(sorted({f"{s.rate_per_s:,.0f}/s" for _, s in sweeps}))
    _title(fig, f"Pool size vs round trip at {rates} offered: the knee moves with RTT × rate", runs)
    fig.text(
        0.01,
        0.01,
        f"knee: the smallest pool within {KNEE_P99_TOLERANCE:.0%} of the best p99 (model: of the no-wait p99) and, "
        f"measured, within {KNEE_RATE_TOLERANCE:.0%} of the offered rate; model: M/G/c (Erlang C, Allen–Cunneen), "
        "service time from the largest pool at the smallest RTT",
        fontsize=8,
        alpha=0.7,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.94))
    return fig

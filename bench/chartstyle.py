"""Shared chart pieces: latency axes (values in µs) labelled in 1-2-5 steps ("200 µs", "1 ms", "2 s"), memory
sizes as Redis writes them ("6mb"), figure titles and cell selection."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, Locator, LogLocator, NullFormatter

from .runs import Run

STEPS_125 = (1.0, 2.0, 5.0)
STEPS_ALL = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def title(fig: Figure, text: str, runs: list[Run]) -> None:
    incomplete = [r.name for r in runs if not r.complete]
    suffix = f"  [INCOMPLETE: {', '.join(incomplete)}]" if incomplete else ""
    fig.suptitle(text + suffix, fontsize=13, fontweight="bold")


def cells(runs: list[Run], keep: Callable[[dict[str, Any]], bool] = lambda c: True) -> list[tuple[Run, dict]]:
    return [(run, cell) for run in runs for cell in run.cells if keep(cell)]


def format_us(value: float, _pos: object = None) -> str:
    """A latency in µs as a short label: 200 µs, 1 ms, 20 ms, 1.5 s."""
    if not (math.isfinite(value) and value > 0):
        return ""
    value = float(f"{value:.3g}")
    for scale, unit in ((1e6, "s"), (1e3, "ms")):
        if value >= scale:
            scaled = value / scale
            return f"{scaled:.3g} {unit}" if scaled < 1000 else f"{scaled:,.0f} {unit}"
    return f"{value:.3g} µs"


def _steps(vmin: float, vmax: float, mantissas: Sequence[float]) -> list[float]:
    lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
    values = (m * 10.0**e for e in range(lo, hi + 1) for m in mantissas)
    return [v for v in values if vmin * (1 - 1e-9) <= v <= vmax * (1 + 1e-9)]


def steps_125(vmin: float, vmax: float) -> list[float]:
    """Readable log ticks in [vmin, vmax]: 1-2-5 per decade; 1..9 when that leaves fewer than four;
    decades only (thinned) when the view is wide."""
    vmin, vmax = sorted((vmin, vmax))
    if not (math.isfinite(vmax) and vmax > 0):
        return []
    vmin = vmin if math.isfinite(vmin) and vmin > 0 else vmax / 1e3
    ticks = _steps(vmin, vmax, STEPS_125)
    if len(ticks) < 4:
        ticks = max(ticks, _steps(vmin, vmax, STEPS_ALL), key=len)
    elif len(ticks) > 12:  # beyond about four decades
        ticks = _steps(vmin, vmax, (1.0,))
        ticks = ticks[:: max(1, math.ceil(len(ticks) / 8))]
    return ticks


class Log125Locator(Locator):
    """Major ticks of a log axis at :func:`steps_125`."""

    def __call__(self) -> Sequence[float]:
        vmin, vmax = self.axis.get_view_interval() if self.axis is not None else (1.0, 10.0)
        return self.tick_values(vmin, vmax)

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        return steps_125(vmin, vmax)


def floor_125(value: float) -> float:
    """The largest 1-2-5 value (…, 100, 200, 500, 1000, …) at or below ``value`` (> 0)."""
    exp = math.floor(math.log10(value))
    return max(m * 10.0**e for e in (exp - 1, exp, exp + 1) for m in STEPS_125 if m * 10.0**e <= value * (1 + 1e-9))


def ceil_125(value: float) -> float:
    exp = math.floor(math.log10(value))
    return min(m * 10.0**e for e in (exp - 1, exp, exp + 1) for m in STEPS_125 if m * 10.0**e >= value * (1 - 1e-9))


def latency_axis(ax: Axes, values: Iterable[float | None] = (), which: str = "y", label: str | None = None) -> None:
    """Make ``ax``'s y (or x) axis a log latency axis for values in µs: major ticks in 1-2-5 steps labelled with
    their unit, unlabelled minor ticks, and limits widened to the 1-2-5 values around ``values``."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(Log125Locator())
    axis.set_major_formatter(FuncFormatter(format_us))
    axis.set_minor_locator(LogLocator(subs=tuple(STEPS_ALL[1:])))
    axis.set_minor_formatter(NullFormatter())
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if finite:
        limits = (floor_125(min(finite) / 1.04), ceil_125(max(finite) * 1.04))
        (ax.set_ylim if which == "y" else ax.set_xlim)(*limits)
    if label:
        axis.set_label_text(label)


def parse_memory(value: Any) -> int | None:
    """Bytes from a Redis memory setting: 4194304, "4194304", "4mb" (MiB), "4m" (10^6), "1gb"; None if unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", str(value).lower())
    return int(float(match[1]) * MEMORY_UNITS[match[2]]) if match else None


def event_label(ax: Any, t: float, name: str, color: str, gid: str | None = None) -> Any:
    """A fault event's label at the top of ``ax``, just right of its line (both fault charts)."""
    return ax.annotate(
        name,
        (t, 0.985),
        xycoords=ax.get_xaxis_transform(),
        xytext=(3, 0),
        textcoords="offset points",
        va="top",
        fontsize=7,
        color=color,
        gid=gid,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1},
    )


def spread(values: Sequence[float], gap: float) -> list[float]:
    """Label positions as close to ``values`` as a minimum ``gap`` between neighbours allows: labels
    that would overlap fan out, in order, around the mean of where they belong. Pure: any units."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    clusters: list[list[int]] = []  # each laid out at its members' mean, ``gap`` apart

    def start(members: list[int]) -> float:
        return sum(values[i] for i in members) / len(members) - gap * (len(members) - 1) / 2

    for i in order:
        clusters.append([i])
        while len(clusters) > 1 and start(clusters[-1]) < start(clusters[-2]) + gap * len(clusters[-2]):
            last = clusters.pop()
            clusters[-1] += last
    out = [0.0] * len(values)
    for members in clusters:
        first = start(members)
        for k, i in enumerate(members):
            out[i] = first + k * gap
    return out


CELL_MARKERS = ("o", "s", "^", "D", "v")


def cell_style(index: int) -> dict[str, Any]:
    """Colour and marker of the ``index``-th cell: ten colours, then the same ten with the next marker,
    so cells 0 and 10 never look alike."""
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {"color": colors[index % len(colors)], "marker": CELL_MARKERS[index // len(colors) % len(CELL_MARKERS)]}

"""The failover timeline: per faulted cell, operations per second (a rate over each bucket's covered seconds), p99,
errors, the warm-up, the fault / no-success / error windows and the cluster's and clients' events, labelled so that
no two labels overlap. Registered in ``bench.plots.CHARTS``."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Annotation

from .cells import cell_label, fault_timeline
from .chartstyle import cells, event_label, latency_axis, title
from .runs import Run

MIN_SPAN_S = 0.25  # shorter (partial) buckets are left out: 3 operations in 28 ms is not a rate
MIN_WINDOW = 0.006  # of the x range: the narrowest a window is drawn, so a 20 ms fault still shows
OPS = (("enqueue", "tab:blue", "tab:red"), ("dequeue", "tab:green", "darkred"))
EVENTS = (  # key, label, colour, line style
    ("injected_at_s", "injected", "black", "-"),
    ("suspected_at_s", "suspected (PFAIL)", "tab:olive", "--"),
    ("node_failed_at_s", "node failed (FAIL, quorum)", "tab:orange", "--"),
    ("promoted_at_s", "replica promoted", "tab:purple", "-."),
    ("client_saw_new_master_at_s", "client saw new master", "tab:cyan", "-"),
    ("recovered_at_s", "clients recovered (after last error)", "tab:green", ":"),
    ("resumed_at_s", "node resumed", "tab:brown", "-."),
    ("restarted_at_s", "node restarted", "tab:gray", (0, (1, 2))),
    ("restored_at_s", "topology restored", "dimgray", ":"),
)


def buckets(rows: list[dict[str, Any]], op: str) -> tuple[list[dict[str, Any]], set[float]]:
    """One operation's 1-second buckets as (start, span, rate, p99, errors/s, warmup), partial ones (< MIN_SPAN_S)
    dropped; and the seconds dropped. Without a span_s column (older runs) every bucket counts as 1 s."""
    out: list[dict[str, Any]] = []
    dropped: set[float] = set()
    for row in sorted((r for r in rows if r["operation"] == op), key=lambda r: r["t_s"]):
        span = row.get("span_s")
        span = 1.0 if span is None else float(span)
        if span < MIN_SPAN_S:
            dropped.add(row["t_s"])
            continue
        out.append(
            {
                "t": row["t_s"],
                "span": span,
                "rate": (row["count"] or 0) / span,
                "p99": row["p99_us"],
                "errors": (row["errors"] or 0) / span,
                "warmup": row.get("warmup"),
            }
        )
    return out, dropped


def events(fault: dict[str, Any]) -> list[tuple[float, str, str, Any]]:
    """(time, label, colour, style), events at the same millisecond merged into one label."""
    old_format = "suspected_at_s" not in fault  # then node_failed_at_s was the first "fail" flag polled
    sources = fault.get("timeline_source") or {}
    found: list[tuple[float, str, str, Any]] = []
    for key, name, color, style in EVENTS:
        at = fault.get(key)
        if at is None:
            continue
        if key == "node_failed_at_s" and old_format:
            name = "node failed (polled)"
        elif key == "recovered_at_s" and fault.get("client_saw_new_master_at_s") is not None:
            name = "clients recovered"
        if sources.get(key.removesuffix("_at_s")) == "poll":
            name += " (polled)"
        same = [i for i, e in enumerate(found) if abs(e[0] - at) < 0.0005]
        if same:
            t, label, c, s = found[same[0]]
            found[same[0]] = (t, f"{label} = {name}", c, s)
        else:
            found.append((float(at), name, color, style))
    return sorted(found, key=lambda e: e[0])


def windows(fault: dict[str, Any], load_end: float) -> dict[str, tuple[float, float] | None]:
    """The fault window (injected → first success after it / recovered / promoted / resumed), the outage (no
    successful operation; to the load end when none came back) and the error window (first → last error)."""
    injected = fault.get("injected_at_s")
    end = next(
        (
            fault[k]
            for k in ("outage_end_s", "recovered_at_s", "promoted_at_s", "resumed_at_s", "restarted_at_s")
            if fault.get(k) is not None
        ),
        load_end,
    )
    out_start, out_end = fault.get("outage_start_s"), fault.get("outage_end_s")
    first, last = fault.get("first_error_at_s"), fault.get("last_error_at_s")
    return {
        "fault": (injected, max(end, injected)) if injected is not None else None,
        "no success": (out_start, out_end if out_end is not None else load_end) if out_start is not None else None,
        "errors": (first, last) if first is not None and last is not None else None,
    }


def summary_text(cell: dict[str, Any]) -> str:
    fault, audit = cell["fault"], cell.get("audit") or {}
    lost = f"{audit['lost']:,}" if "lost" in audit else f"≤ {audit.get('lost_upper_bound', 0):,}"
    lines = [
        f"lost {lost} · duplicated {audit.get('duplicates', 0):,}",
        f"ambiguous {audit.get('ambiguous', 0):,} · rejected {audit.get('rejected', 0):,}",
    ]
    if "error_window_s" in fault or "outage_start_s" in fault:
        lines.append(f"unavailable {fault.get('unavailable_s') or 0:.2f} s (no success)")
        lines.append(f"errors for {fault.get('error_window_s') or 0:.2f} s")
        if fault.get("healthy_unavailable_s"):
            lines.append(f"healthy masters also unavailable {fault['healthy_unavailable_s']:.2f} s")
    else:
        lines.append(f"unavailable {fault.get('unavailable_s') or 0:.2f} s (first → last error, old format)")
    errors: dict[str, int] = {}
    for kinds in cell.get("errors", {}).values():
        for kind, n in kinds.items():
            errors[kind] = errors.get(kind, 0) + n
    lines.append("errors: " + (", ".join(f"{k} {v:,}" for k, v in sorted(errors.items())) or "none"))
    return "\n".join(lines)


def place_labels(fig: Figure, ax: Axes, labels: list[Annotation], top: float = 0.985, pad_px: float = 4.0) -> float:
    """Stagger the event labels into rows from the top of ``ax`` so that no two overlap (pixel extents, after
    layout), flipping a label to the left of its line at the right edge. Returns the axes fraction used."""
    if not labels:
        return 0.0
    fig.draw_without_rendering()
    for label in labels:
        if label.get_window_extent().x1 > ax.bbox.x1:
            label.set_horizontalalignment("right")
            label.set_position((-3, 0))
    fig.draw_without_rendering()
    extents = sorted(((label.get_window_extent(), label) for label in labels), key=lambda e: e[0].x0)
    row_height = 1.3 * max(bb.height for bb, _ in extents) / ax.bbox.height
    right_edges: list[float] = []
    for bb, label in extents:
        row = next((i for i, right in enumerate(right_edges) if bb.x0 > right + pad_px), len(right_edges))
        if row == len(right_edges):
            right_edges.append(bb.x1)
        right_edges[row] = bb.x1
        label.xy = (label.xy[0], top - row * row_height)
    return 1 - top + len(right_edges) * row_height


def _stairs(ax: Axes, series: list[dict[str, Any]], values: list[float], **style: Any) -> None:
    """Values as steps over their buckets; a gap where a bucket is missing or was left out."""
    edges, steps = [series[0]["t"]], []
    for bucket, value in zip(series, values, strict=True):
        if abs(bucket["t"] - edges[-1]) > 1e-6:
            steps.append(np.nan)
            edges.append(bucket["t"])
        steps.append(value)
        edges.append(bucket["t"] + bucket["span"])
    ax.stairs(steps, edges, baseline=None, **style)


def _draw_window(ax: Axes, window: tuple[float, float], min_width: float, **style: Any) -> None:
    start, end = window
    if end - start < min_width:  # keep the true start; widen only the drawing
        end = start + min_width
    ax.axvspan(start, end, **style)


def _timeline(fig: Figure, ax: Axes, strip: Axes, run: Run, cell: dict[str, Any], many: bool) -> dict[str, Any]:
    rows, fault = run.timeseries(cell), cell["fault"]
    ax2 = ax.twinx()
    dropped, has_span, peak, p99s, ends = set(), any("span_s" in r for r in rows), 0.0, [], [0.0]
    warm: list[float] = []
    for op, color, err_color in OPS:
        series, n = buckets(rows, op)
        dropped |= n
        if not series:
            continue
        x = [b["t"] + b["span"] / 2 for b in series]
        rates = [b["rate"] for b in series]
        ax.plot(x, rates, "o", ms=3, color=color, gid=f"rate-{op}")  # the data, at bucket centres
        _stairs(ax, series, rates, color=color, lw=1.6, label=f"{op} ops/s")  # each bucket's rate over its span
        if not has_span:  # an older run cannot tell a partial last bucket: mark it as doubtful
            ax.plot(x[-1:], rates[-1:], "o", ms=8, mfc="white", mec=color, mew=1.5, gid="maybe-partial")
        p99 = [b["p99"] if b["p99"] else np.nan for b in series]
        ax2.plot(x, p99, ".", ms=3, color=color, gid=f"p99-{op}")
        _stairs(ax2, series, p99, color=color, ls=":", lw=1.3, label=f"{op} p99")
        errs = [b["errors"] for b in series]
        if any(errs):
            shift = -0.2 if op == "enqueue" else 0.2
            widths = [0.4 * b["span"] for b in series]
            ax.bar(
                [xi + shift * b["span"] for xi, b in zip(x, series, strict=True)],
                errs,
                widths,
                color=err_color,
                alpha=0.6,
                label=f"{op} errors/s",
            )
        peak = max(peak, *rates, *errs)
        p99s += [v for v in p99 if not math.isnan(v)]
        ends.append(max(b["t"] + b["span"] for b in series))
        warm += [t for b in series if b["warmup"] for t in (b["t"], b["t"] + b["span"])]
    if not warm and (cell["params"].get("warmup") or 0) > 0 and not any("warmup" in r for r in rows):
        warm = [0.0, float(cell["params"]["warmup"])]
    load_end = max(ends)
    found = events(fault)
    right = max([load_end, *(t for t, *_ in found)])
    ax.set_xlim(min(0.0, *(t for t, *_ in found)) - 0.02 * right, right * 1.03)
    min_width = MIN_WINDOW * (ax.get_xlim()[1] - ax.get_xlim()[0])
    handles: list[Any] = []
    if warm:
        ax.axvspan(min(warm), max(warm), color="0.5", alpha=0.12, lw=0, gid="warmup")
        handles.append(Patch(color="0.5", alpha=0.25, label="warm-up (not measured)"))
    spans = windows(fault, load_end)
    style: dict[str, dict[str, Any]] = {
        "fault": {"facecolor": "tab:red", "alpha": 0.25, "edgecolor": "tab:red", "lw": 1},
        "no success": {"facecolor": "0.15", "alpha": 0.8, "edgecolor": "black", "lw": 1},
        "errors": {"facecolor": "none", "hatch": "////", "edgecolor": "tab:orange", "lw": 1},
    }
    if spans["fault"]:
        _draw_window(ax, spans["fault"], min_width, color="tab:red", alpha=0.08, lw=0, gid="fault-window")
        for edge in spans["fault"]:
            ax.axvline(edge, color="tab:red", lw=0.6, alpha=0.6)
        handles.append(Patch(color="tab:red", alpha=0.2, label="fault window"))
    if spans["no success"]:
        _draw_window(
            ax,
            spans["no success"],
            min_width,
            facecolor="none",
            hatch="\\\\",
            edgecolor="0.35",
            lw=0,
            gid="outage-window",
        )
        handles.append(Patch(facecolor="none", hatch="\\\\\\", edgecolor="0.35", label="no successful operation"))
    old_format = "outage_start_s" not in fault and "error_window_s" not in fault
    for row, name in enumerate(("errors", "no success", "fault")):
        window = spans[name]
        if window is None:
            text = "not measured (older run)" if name == "no success" and old_format else "none"
            strip.text(0.005, row, text, transform=strip.get_yaxis_transform(), va="center", fontsize=7, alpha=0.7)
            continue
        start, end = window
        strip.barh(row, max(end - start, min_width), left=start, height=0.6, **style[name])
        strip.text(max(end, start + min_width), row, f"  {end - start:.2f} s", va="center", fontsize=7)
    strip.set_yticks([0, 1, 2], ["errors", "no success", "fault"], fontsize=8)
    strip.set_ylim(-0.6, 2.6)
    labels = []
    for t, name, color, linestyle in found:
        for a in (ax, strip):
            a.axvline(t, color=color, linestyle=linestyle, lw=1.1)
        labels.append(event_label(ax, t, name, color, gid="event-label"))
    latency_axis(ax2, p99s, label="p99 latency (dotted, log)")
    ax.set_ylim(0, max(peak, 1) * 1.05)
    ax.set_ylabel("operations / errors per second")
    ax.tick_params(labelbottom=False)
    strip.set_xlabel("seconds since load start")
    strip.grid(axis="x", alpha=0.3)
    ax.grid(alpha=0.3)
    ax.set_title(f"{cell_label(cell, run, many)} — {fault['kind']} of master {fault.get('target')}", fontsize=10)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=lines + handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.1, 1.0), borderaxespad=0)
    ax.text(
        1.1,
        0.0,
        summary_text(cell),
        transform=ax.transAxes,
        fontsize=7.5,
        va="bottom",
        bbox={"facecolor": "white", "edgecolor": "0.6"},
    )
    return {"ax": ax, "ax2": ax2, "labels": labels, "peak": peak, "dropped": len(dropped), "has_span": has_span}


def failover_timelines(runs: list[Run]) -> Figure | None:
    """Per faulted cell: ops/s, p99 and errors per second, the fault, outage and error windows, events labelled."""
    items = [(r, c) for r, c in cells(runs) if fault_timeline(c)]
    if not items:
        return None
    fig = plt.figure(figsize=(13, 4.9 * len(items)))
    outer = fig.add_gridspec(len(items), 1)
    drawn = []
    for i, (run, cell) in enumerate(items):
        grid = outer[i].subgridspec(2, 1, height_ratios=[3.3, 1.0], hspace=0.06)
        ax = fig.add_subplot(grid[0])
        strip = fig.add_subplot(grid[1], sharex=ax)
        drawn.append(_timeline(fig, ax, strip, run, cell, len(runs) > 1))
    dropped = sum(d["dropped"] for d in drawn)
    note = (
        "ops/s = operations in each 1-s bucket ÷ the seconds of it the run covered; "
        + (f"{dropped} partial bucket(s) shorter than {MIN_SPAN_S} s left out" if dropped else "no partial buckets")
        if all(d["has_span"] for d in drawn)
        else "older run without span_s: every bucket counted as 1 s, so a partial last bucket (hollow) reads low"
    )
    fig.text(
        0.01, 0.005, note + ". Windows narrower than the axis resolution are drawn wider.", fontsize=7.5, alpha=0.8
    )
    title(fig, "Failover timelines: fault window, outage (no success) and errors", runs)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97), h_pad=0.6)
    for d in drawn:  # after the layout, when label widths in pixels are final: stagger, then make room above data
        band = place_labels(fig, d["ax"], d["labels"])
        d["ax"].set_ylim(0, max(d["peak"], 1) * 1.05 / max(0.3, 1 - band))
        low, high = (math.log10(v) for v in d["ax2"].get_ylim())
        d["ax2"].set_ylim(10**low, 10 ** (low + (high - low) / max(0.3, 1 - band)))
    return fig

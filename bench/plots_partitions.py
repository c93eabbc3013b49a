"""The partition chart: per network-fault cell, acknowledged enqueues per second on each queue partition
(from the clients' ack log), the partition window shaded, the isolated master's loss window hatched, the lost
tasks marked when they were acknowledged, and the cluster's events labelled. Registered in ``bench.plots.CHARTS``."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .acklog import AckLog
from .cells import cell_label
from .chartstyle import cells, event_label, format_us, title
from .plots_faults import place_labels
from .runs import Run

BIN_S = 0.2  # the ack log's 20 ms buckets, summed into bins this long for the rates
EVENTS = (  # key, label, colour, line style
    ("partitioned_at_s", "partitioned", "black", "-"),
    ("isolated_down_at_s", "isolated master stops writes", "tab:red", "--"),
    ("node_failed_at_s", "node failed (FAIL, quorum)", "tab:orange", "--"),
    ("promoted_at_s", "replica promoted", "tab:purple", "-."),
    ("healed_at_s", "healed", "tab:green", "-"),
    ("demoted_at_s", "old master → replica", "tab:brown", ":"),
    ("resynced_at_s", "old master resynced", "tab:gray", ":"),
)


def _binned(counts: dict[int, int], bucket_s: float, start_epoch: float) -> dict[int, int]:
    per_bin = max(1, round(BIN_S / bucket_s))
    out: dict[int, int] = {}
    for bucket, n in counts.items():
        b = math.floor((bucket * bucket_s - start_epoch) / (per_bin * bucket_s) + 1e-9)
        out[b] = out.get(b, 0) + n
    return out


def _series(counts: dict[int, int], bin_s: float, end_s: float) -> tuple[list[float], list[float]]:
    """Steps of a rate per bin from 0 to ``end_s`` (bins without acks are 0: nothing was acknowledged)."""
    last = math.ceil(end_s / bin_s)
    xs = [b * bin_s for b in range(last + 1)]
    return xs, [counts.get(b, 0) / bin_s for b in range(last)]


def _events(fault: dict[str, Any]) -> list[tuple[float, str, str, Any]]:
    found: list[tuple[float, str, str, Any]] = []
    for key, name, color, style in EVENTS:
        at = fault.get(key)
        if at is None:
            continue
        same = [i for i, e in enumerate(found) if abs(e[0] - at) < 0.0005]
        if same:
            t, label, c, s = found[same[0]]
            found[same[0]] = (t, f"{label} = {name}", c, s)
        else:
            found.append((float(at), name, color, style))
    return sorted(found, key=lambda e: e[0])


def summary_text(cell: dict[str, Any]) -> str:
    fault, audit = cell["fault"], cell.get("audit") or {}
    loss = fault.get("loss") or {}
    lost = f"{audit['lost']:,}" if "lost" in audit else f"≤ {audit.get('lost_upper_bound', 0):,}"
    lines = [f"lost {lost} acknowledged tasks"]
    if loss:
        lines.append(f"acked by the isolated master in the window: {loss['acked_in_window']:,}")
        if loss.get("lost"):
            lines.append(
                f"lost inside that window: {loss['lost_in_window']:,} (outside: {loss['lost_outside_window']:,})"
            )
    lines.append(f"rejected {audit.get('rejected', 0):,} · ambiguous {audit.get('ambiguous', 0):,}")
    errors: dict[str, int] = {}
    for kinds in cell.get("errors", {}).values():
        for kind, n in kinds.items():
            errors[kind] = errors.get(kind, 0) + n
    lines.append("errors: " + (", ".join(f"{k} {v:,}" for k, v in sorted(errors.items())) or "none"))
    before = (fault.get("before") or {}).get("enqueue")
    if before:
        lines.append(
            f"before the fault: {before['ops_per_s']:,.0f} enq/s, p99 {format_us(before['p99_us'])} "
            f"({before['seconds']:.0f} s)"
        )
    return "\n".join(lines)


def _panel(fig: Figure, ax: Any, run: Run, cell: dict[str, Any], many: bool) -> dict[str, Any]:
    fault = cell["fault"]
    loss = fault.get("loss") or {}
    dirs = run.repeat_dirs(cell)
    path = dirs[0] / "acked-ids.json.gz" if dirs else None
    acks = AckLog.load(path) if path is not None and path.exists() else None
    start_epoch = _start_epoch(dirs[0]) if dirs else None
    if start_epoch is None:
        acks = None
    load_end = float(cell["params"].get("duration") or 0)
    peak = 1.0
    faulted = set(
        loss.get("partitions") or [int(p) for p, d in (fault.get("partitions") or {}).items() if d["faulted"]]
    )
    handles: list[Any] = []
    if acks is not None:
        assert start_epoch is not None
        per_bin = max(1, round(BIN_S / acks.bucket_s))
        bin_s = per_bin * acks.bucket_s
        lost_bins: dict[int, int] = {}
        for t, _p, n in loss.get("lost_by_time") or []:
            b = math.floor(t / bin_s + 1e-9)
            lost_bins[b] = lost_bins.get(b, 0) + int(n)
        if lost_bins:  # under the lines: lost is a part of what the isolated master acknowledged
            xs, lost_rates = _series(lost_bins, bin_s, load_end)
            ax.stairs(lost_rates, xs, fill=True, color="darkred", alpha=0.55, lw=0, zorder=1)
            handles.append(Patch(color="darkred", alpha=0.6, label="lost tasks/s, by when they were acknowledged"))
        groups = (
            (sorted(p for p in acks.partitions if p not in faulted), "tab:blue", (0, (4, 2)), 3, "healthy masters"),
            (sorted(p for p in acks.partitions if p in faulted), "tab:red", "-", 4, "its master cut off"),
        )
        for members, color, style, z, what in groups:
            if not members:
                continue
            total: dict[int, int] = {}
            for p in members:
                for b, n in _binned(acks.counts(p), acks.bucket_s, start_epoch).items():
                    total[b] = total.get(b, 0) + n
            xs, rates = _series(total, bin_s, load_end)
            named = f"partition{'s' if len(members) > 1 else ''} {', '.join(map(str, members))}"
            label = f"{named} ({what}): acknowledged enqueues/s"
            ax.stairs(rates, xs, color=color, lw=1.6, ls=style, baseline=None, zorder=z, label=label)
            peak = max(peak, *rates)
    else:
        ax.text(0.5, 0.5, "no ack log (acked-ids.json.gz) in this cell", transform=ax.transAxes, ha="center")
    part, healed = fault.get("partitioned_at_s"), fault.get("healed_at_s")
    if part is not None:
        ax.axvspan(part, healed if healed is not None else load_end, color="tab:red", alpha=0.09, lw=0)
        handles.append(Patch(color="tab:red", alpha=0.2, label="partition in force"))
    if loss and fault.get("kind") == "partition-master":
        ax.axvspan(
            loss["window_start_s"], loss["window_end_s"], facecolor="none", hatch="//", edgecolor="tab:red", lw=0
        )
        handles.append(
            Patch(
                facecolor="none",
                hatch="///",
                edgecolor="tab:red",
                label="loss window: partition → isolated master's own cluster_state:fail",
            )
        )
    labels = []
    for t, name, color, style in _events(fault):
        ax.axvline(t, color=color, linestyle=style, lw=1.1)
        labels.append(event_label(ax, t, name, color))
    ax.set_xlim(0, load_end)
    ax.set_ylabel(f"per second ({BIN_S:g} s bins)")
    ax.grid(alpha=0.3)
    kind = fault.get("kind", "")
    target = fault.get("target", "")
    what = "cut off from the other nodes" if kind == "partition-master" else "cut off from the clients"
    ax.set_title(f"{cell_label(cell, run, many)}: master {target} {what}", fontsize=10)
    lines = ax.get_legend_handles_labels()[0]
    ax.legend(handles=lines + handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.text(
        1.01,
        0.0,
        summary_text(cell),
        transform=ax.transAxes,
        fontsize=7.5,
        va="bottom",
        bbox={"facecolor": "white", "edgecolor": "0.6"},
    )
    return {"ax": ax, "labels": labels, "peak": peak}


def _start_epoch(rep_dir: Path) -> float | None:
    """The load's start (epoch s), as the runner measured every relative time in the summary from it."""
    try:
        return datetime.fromisoformat(json.loads((rep_dir / "summary.json").read_text())["started_at"]).timestamp()
    except (OSError, ValueError, KeyError):
        return None


def partitions(runs: list[Run]) -> Figure | None:
    """Per network-fault cell: acknowledged enqueues/s per partition, the partition and loss windows, lost tasks."""
    items = [
        (r, c) for r, c in cells(runs) if (c.get("fault") or {}).get("kind") in ("partition-master", "partition-client")
    ]
    if not items:
        return None
    fig, axes = plt.subplots(len(items), 1, figsize=(13, 3.6 * len(items)), sharex=True, squeeze=False)
    drawn = [_panel(fig, axes[i][0], run, cell, len(runs) > 1) for i, (run, cell) in enumerate(items)]
    axes[-1][0].set_xlabel("seconds since load start")
    fig.text(
        0.01,
        0.005,
        "Rates from the clients' own record of acknowledged enqueues (20 ms buckets, summed per bin). Lost = "
        "acknowledged, never delivered after the drain; placed at the bucket in which it was acknowledged.",
        fontsize=7.5,
        alpha=0.8,
    )
    title(fig, "Partitions: where acknowledged tasks are lost", runs)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97), h_pad=0.8)
    for d in drawn:
        band = place_labels(fig, d["ax"], d["labels"])
        d["ax"].set_ylim(0, max(d["peak"], 1) * 1.05 / max(0.3, 1 - band))
    return fig

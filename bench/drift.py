"""Drift over a long run: the first 10 % against the last 10 %. Pure: no Redis, no I/O.

Soak tests exist to find slow growth: a p99 that creeps up, a backlog or a lease set that grows,
server memory or the load processes' own memory that climbs. Each series is compared by the
median of its first and last tenth (medians, so one failover spike does not decide it); a
series "grows" when the last tenth is above the first by more than both a relative and an
absolute threshold, which keeps noise on small numbers from being called a leak.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SHARE = 0.10  # the first and last tenth of the run


@dataclass(frozen=True)
class Series:
    name: str
    unit: str
    points: Sequence[tuple[float, float]]  # (t s, value), any order
    min_growth: float  # absolute change below which growth is noise (in ``unit``)
    max_ratio: float = 1.5  # last/first above this (and above min_growth) is growth


def compare(series: Series, share: float = SHARE) -> dict[str, object] | None:
    """First vs last ``share`` of the run; None with fewer than 10 points."""
    points = sorted(series.points)
    if len(points) < 10:
        return None
    t0, t1 = points[0][0], points[-1][0]
    span = t1 - t0
    if span <= 0:
        return None
    first = [v for t, v in points if t <= t0 + share * span]
    last = [v for t, v in points if t >= t1 - share * span]
    a, b = statistics.median(first), statistics.median(last)
    change = b - a
    ratio = b / a if a > 0 else (float("inf") if b > 0 else 1.0)
    grows = change > series.min_growth and ratio > series.max_ratio
    return {
        "name": series.name,
        "unit": series.unit,
        "first": a,
        "last": b,
        "change": change,
        "ratio": None if ratio == float("inf") else round(ratio, 3),
        "grows": grows,
        "points": len(points),
    }


def finding(row: dict[str, object]) -> str:
    ratio = f" ({row['ratio']}×)" if row["ratio"] is not None else ""
    return (
        f"{row['name']} grew from {row['first']:,.0f} to {row['last']:,.0f} {row['unit']}{ratio} "
        "between the first and the last tenth of the run"
    )


MiB = 1024 * 1024
P99_OPS = ("e2e", "enqueue", "dequeue")  # enqueue-to-delivery first: what a queue's user feels


def of_cell(
    intervals: dict[str, list[dict[str, float]]],
    probes: list[dict[str, Any]],
    info: list[dict[str, Any]],
) -> list[dict[str, object]]:
    """Every drift series a cell recorded, compared: per-second p99 from the ``.hlog`` intervals,
    queue depth, in-flight leases and the load processes' RSS from ``probes.csv``, and the servers'
    used_memory summed over nodes (per sampling round, rounds with an unreachable node left out)
    from ``info.csv``. Thresholds: growth must beat both the ratio and an absolute floor, so a
    backlog of 40 tasks or 3 MB of allocator noise is not a leak."""
    series = [
        Series(f"{op} p99", "µs", [(r["t_s"], r[key]) for r in intervals[op] if r["count"]], min_growth=1000.0)
        for op in P99_OPS
        if op in intervals
        for key in ["p99_us"]
    ]
    for key, name, floor in (("depth", "queue depth", 100.0), ("inflight", "in-flight leases", 100.0)):
        points = [(float(r["t_s"]), float(r[key])) for r in probes if r.get(key) not in (None, "")]
        series.append(Series(name, "tasks", points, min_growth=floor))
    rss = [(float(r["t_s"]), float(r["load_rss_bytes"])) for r in probes if r.get("load_rss_bytes")]
    series.append(Series("load processes RSS", "bytes", rss, min_growth=16 * MiB, max_ratio=1.1))
    series.append(Series("Redis used_memory", "bytes", used_memory_rounds(info), min_growth=16 * MiB, max_ratio=1.1))
    return [row for s in series if (row := compare(s)) is not None]


def used_memory_rounds(info: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(t s, used_memory summed over nodes) per sampling round: the rows sharing one ``t_s`` (the
    sampler stamps every node it reads in a round with the round's time)."""
    rounds: dict[float, list[dict[str, Any]]] = {}
    for row in info:
        rounds.setdefault(float(row["t_s"]), []).append(row)
    nodes = {row["node"] for row in info}
    out = []
    for sec, rows in sorted(rounds.items()):
        if {r["node"] for r in rows} != nodes or any(r.get("used_memory") in (None, "") for r in rows):
            continue
        out.append((sec, float(sum(int(r["used_memory"]) for r in rows))))
    return out


DRIFT_MIN_S = 120.0  # shorter cells are warm-up and one fault: a tenth of them is seconds, not a trend


def drift_cells(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells long enough to speak about drift (or with a repeated fault, a soak by construction)."""
    return [
        c
        for c in cells
        if c.get("drift")
        and (float(c.get("params", {}).get("duration") or 0) >= DRIFT_MIN_S or c.get("params", {}).get("fault_every"))
    ]

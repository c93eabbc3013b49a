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

"""How long a partition went without a successful operation. Pure: no Redis, no Locust.

Errors alone understate an outage: between the last error and the recovery, calls *hang* (no
error, no success). So availability is measured from successes. Each load process keeps, per
partition, the gaps between the replies of successful operations that were at least
``GAP_MIN_S`` long. A hanging call that finally succeeds ends its gap when its reply arrives, so
time spent hanging counts as unavailable. Processes are combined by intersection: a partition
was unavailable only while *no* process got a successful reply from it.
"""

from __future__ import annotations

import math
from typing import Any

GAP_MIN_S = 0.05  # shorter gaps are ordinary spacing between calls, not kept

Interval = tuple[float, float]


class SuccessGaps:
    """One process's record of success gaps per partition (the hot-path part is ``success``)."""

    def __init__(self) -> None:
        self.first_ok: dict[int, float] = {}
        self.last_ok: dict[int, float] = {}
        self.gaps: dict[int, list[Interval]] = {}

    def success(self, partition: int, at: float) -> None:
        """A successful reply from ``partition`` arrived at ``at`` (epoch s)."""
        last = self.last_ok.get(partition)
        if last is None:
            self.first_ok[partition] = self.last_ok[partition] = at
            return
        if at - last >= GAP_MIN_S:
            self.gaps.setdefault(partition, []).append((last, at))
        if at > last:
            self.last_ok[partition] = at

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            str(p): {
                "first_ok": self.first_ok[p],
                "last_ok": self.last_ok[p],
                "gaps": [list(g) for g in self.gaps.get(p, [])],
            }
            for p in self.first_ok
        }


def no_success_intervals(entry: dict[str, Any]) -> list[Interval]:
    """One process, one partition: every interval without a success, sorted, unbounded at both ends."""
    out: list[Interval] = [(-math.inf, float(entry["first_ok"]))]
    out += [(float(a), float(b)) for a, b in entry.get("gaps", [])]
    out.append((float(entry["last_ok"]), math.inf))
    return _union(out)


def _union(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for lo, hi in sorted(intervals):
        if merged and lo < merged[-1][1]:  # touching intervals stay apart: a success lies between
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Intersection of two sorted lists of disjoint intervals."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def combined(snapshots: list[dict[str, dict[str, Any]]], partition: str) -> list[Interval]:
    """Intervals where no process had a success on ``partition``; a process that never succeeded
    there says nothing (it may not have used it). No process succeeded: one unbounded interval."""
    result: list[Interval] = [(-math.inf, math.inf)]
    for snap in snapshots:
        entry = snap.get(partition)
        if entry:
            result = intersect(result, no_success_intervals(entry))
    return result


def longest_outage(intervals: list[Interval], window: Interval, run: Interval) -> dict[str, Any]:
    """The longest no-success interval overlapping ``window`` (epoch s), cut to the load's own
    ``run`` (start, end). ``end`` is None when no success came back before the load ended."""
    best: dict[str, Any] = {"start": None, "end": None, "seconds": 0.0}
    run_start, run_end = run
    for start, end in intervals:
        start = max(start, run_start)
        if end <= window[0] or start >= window[1] or start >= run_end:
            continue
        open_end = end >= run_end
        length = (run_end if open_end else end) - start
        if length > best["seconds"]:
            best = {"start": start, "end": None if open_end else end, "seconds": length}
    return best

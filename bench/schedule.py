"""Open-loop send schedule shared by all producer users of one process. Pure: no Redis, no I/O.

Every send takes the next slot ``start + n / rate``; slots never move, so a slow response delays
later sends (their lag is measured) instead of silently lowering the offered rate, and users
take distinct slots instead of firing in synchronized bursts. At the end, the slots that came
due but were never sent are the *backlog*, reported as its own figure beside the histograms
(which hold only sends that were made), with the delay of the oldest one.
"""

from __future__ import annotations

import math
from typing import Any

RATE_REACHED = 0.95  # at least this share of the planned sends made, or the rate was not reached


class Schedule:
    """Slots at a rate that may change (a worker learns its share of ``--rate`` once its users are
    dealt): slots already handed out keep their times, later ones follow the new rate, and the
    backlog (slots that came due but were not sent) carries over."""

    def __init__(self, rate_per_s: float, start: float) -> None:
        if rate_per_s < 0:
            raise ValueError(f"rate must be >= 0, got {rate_per_s}")
        self.start = start
        self._next = 0
        self.sent = 0  # sends actually started (a slot taken is not yet a send: its user may wait)
        # (first slot number, its time, rate) per stretch of constant rate
        self._segments: list[tuple[int, float, float]] = [(0, start, rate_per_s)]

    @property
    def rate(self) -> float:
        return self._segments[-1][2]

    def set_rate(self, rate_per_s: float, now: float) -> None:
        if rate_per_s < 0:
            raise ValueError(f"rate must be >= 0, got {rate_per_s}")
        n0, t0, rate = self._segments[-1]
        # When the next slot was due at the old rate (a backlog stays a backlog); now after no rate.
        due = t0 + (self._next - n0) / rate if rate > 0 else now
        if self._next == n0:  # no slot was handed out at the old rate: it never applied
            self._segments.pop()
        self._segments.append((self._next, due, rate_per_s))

    def _time_of(self, n: int) -> float:
        for first, t, rate in reversed(self._segments):
            if n >= first:
                return t + (n - first) / rate if rate > 0 else math.inf
        return self.start

    def next_slot(self) -> float:
        """The intended send time of the next operation (same clock as ``start``)."""
        slot = self._time_of(self._next)
        self._next += 1
        return slot

    @property
    def issued(self) -> int:
        """Slots handed out (some may still be waiting for their time)."""
        return self._next

    def planned_by(self, now: float) -> int:
        """Sends due by ``now``: slots whose intended time is at or before it."""
        total = 0
        for i, (first, t, rate) in enumerate(self._segments):
            last = self._segments[i + 1][0] if i + 1 < len(self._segments) else None
            if rate <= 0 or now < t:
                continue
            due = math.floor((now - t) * rate + 1e-9) + 1
            total += due if last is None else min(due, last - first)
        return total

    def oldest_unsent_delay(self, now: float) -> float:
        """How late, at ``now``, the oldest send that came due but was never made is (0 if none)."""
        if self.planned_by(now) <= self.sent:
            return 0.0
        return max(0.0, now - self._time_of(self.sent))


def per_process_rate(total_rate: float, processes: int) -> float:
    """Each of ``processes`` load processes offers an equal share of the total rate."""
    return total_rate / max(1, processes)


def coverage(rate: float, planned: int, issued: int, elapsed_s: float, oldest_delay_s: float = 0.0) -> dict[str, Any]:
    """The open loop's report: how much of the offered load was really sent."""
    issued = min(issued, planned) if planned else issued
    share = issued / planned if planned else 0.0
    return {
        "rate": rate,
        "planned": planned,
        "issued": issued,
        "backlog": max(0, planned - issued),
        "backlog_oldest_delay_s": round(oldest_delay_s, 3),
        "achieved_rate": round(issued / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "coverage": round(share, 4),
        "rate_reached": share >= RATE_REACHED,
    }


def merge_coverage(parts: list[dict[str, Any]], rate: float, elapsed_s: float) -> dict[str, Any]:
    """Several processes' (or repeats') planned/issued added up."""
    planned = sum(int(p.get("planned") or 0) for p in parts)
    issued = sum(int(p.get("issued") or 0) for p in parts)
    oldest = max((float(p.get("oldest_delay_s") or 0.0) for p in parts), default=0.0)
    return coverage(rate, planned, issued, elapsed_s, oldest)

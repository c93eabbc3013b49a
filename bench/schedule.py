"""Open-loop send schedule shared by all producer users of one process. Pure: no Redis, no I/O.

Every send takes the next slot ``start + n / rate``; slots never move, so a slow response delays
later sends (their lag is measured) instead of silently lowering the offered rate, and users
take distinct slots instead of firing in synchronized bursts.
"""

from __future__ import annotations


class Schedule:
    def __init__(self, rate_per_s: float, start: float) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be > 0, got {rate_per_s}")
        self.rate = rate_per_s
        self.interval = 1.0 / rate_per_s
        self.start = start
        self._next = 0

    def next_slot(self) -> float:
        """The intended send time of the next operation (same clock as ``start``)."""
        slot = self.start + self._next * self.interval
        self._next += 1
        return slot

    @property
    def issued(self) -> int:
        return self._next


def per_process_rate(total_rate: float, processes: int) -> float:
    """Each of ``processes`` load processes offers an equal share of the total rate."""
    return total_rate / max(1, processes)

"""µs latency recording into HdrHistograms: per operation, per second, mergeable across processes.

Locust rounds response times (and its CSV truncates percentiles to whole ms), so Redis operations
of 50-500 µs are recorded here instead. Each process records into the histogram of the current
second; workers ship encoded histograms to the master, which merges them by second. A second is
*finalized* (turned into a time-series row and added to the cumulative histogram, unless it is
warm-up) once no more reports can arrive for it. No Redis import.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from .outage import SuccessGaps

LOWEST_US = 1
HIGHEST_US = 60_000_000  # 60 s for a Redis call (far past any socket timeout); ~139 KB of counts
# Ages, not calls: enqueue -> dequeue (and the open loop's send lag) grow with a backlog, for the
# whole of a soak. 24 h at 3 digits: 28,672 counts, ~229 KB (+90 KB); encoded sizes do not change.
AGE_HIGHEST_US = 86_400_000_000
AGE_OPS = frozenset({"e2e", "send_lag"})
SIGNIFICANT_DIGITS = 3


def highest_us(op: str | None) -> int:
    return AGE_HIGHEST_US if op in AGE_OPS else HIGHEST_US


def new_histogram(op: str | None = None) -> HdrHistogram:
    """An empty histogram for ``op``; anything slower than its range is recorded at the top of it
    (``clamped`` counts those: a percentile up there is a bound, "≥ range", not a measurement)."""
    return HdrHistogram(LOWEST_US, highest_us(op), SIGNIFICANT_DIGITS)


def clamped(hist: HdrHistogram) -> int:
    """Values at the top of ``hist``'s range (its highest trackable value's bucket and above):
    clamped there when recorded, so their real size is unknown. Read from the counts, so it holds
    for merged and decoded histograms (hlog/, histograms.json) too."""
    if not hist.get_total_count():
        return 0
    counts = np.ctypeslib.as_array(hist.counts, shape=(hist.counts_len,))
    return int(counts[hist._counts_index_for(hist.highest_trackable_value) :].sum())


def decode(encoded: str | bytes) -> HdrHistogram:
    return HdrHistogram.decode(encoded)


def release(hist: HdrHistogram) -> None:
    """Done with ``hist``. An HdrHistogram and its encoder point at each other, so a dropped one
    (with its ~70 KB of counts) waits for the cyclic garbage collector; at one per operation per
    second that is megabytes a minute in a soak. Breaking the cycle frees it at once."""
    hist.encoder.histogram = None


def _encode_and_release(hist: HdrHistogram) -> str:
    text = hist.encode().decode()
    release(hist)
    return text


class Recorder:
    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._open: dict[int, dict[str, HdrHistogram]] = {}
        self._open_errors: dict[int, Counter[tuple[str, str]]] = {}
        self._sec = -1
        self._current: dict[str, HdrHistogram] = {}
        self.rows: list[dict[str, Any]] = []  # finalized per-second rows, epoch seconds
        self.cumulative: dict[str, HdrHistogram] = {}  # measured (post-warm-up) seconds only
        self.errors: Counter[tuple[str, str]] = Counter()  # measured seconds only
        self.errors_all: Counter[tuple[str, str]] = Counter()  # including warm-up
        self.measure_from: float = 0.0  # epoch s on a whole second; earlier seconds are warm-up
        self.measured_seconds: set[int] = set()
        self.sink: Any = None  # gets each closed second (row, histogram) instead of ``rows``
        self.closed_until: float = 0.0  # epoch s: every second before it is final

    # -- hot path -------------------------------------------------------------------------------

    def record(self, op: str, us: float) -> None:
        sec = int(self._clock())
        if sec != self._sec:
            self._sec = sec
            self._current = self._open.setdefault(sec, {})
        hist = self._current.get(op)
        if hist is None:
            hist = self._current[op] = new_histogram(op)
        value, top = int(us), hist.highest_trackable_value
        hist.record_value(LOWEST_US if value < LOWEST_US else top if value > top else value)

    def error(self, op: str, kind: str) -> None:
        sec = int(self._clock())
        self._open_errors.setdefault(sec, Counter())[(op, kind)] += 1
        self._open.setdefault(sec, {})

    # -- distributed ----------------------------------------------------------------------------

    def drain(self) -> dict[str, Any]:
        """Everything recorded since the last drain, encoded for ``report_to_master``."""
        report = {
            "hist": {
                str(sec): {op: _encode_and_release(h) for op, h in ops.items()} for sec, ops in self._open.items()
            },
            "errors": {
                str(sec): [[op, kind, n] for (op, kind), n in errs.items()] for sec, errs in self._open_errors.items()
            },
        }
        self._open, self._open_errors, self._sec, self._current = {}, {}, -1, {}
        return report

    def merge(self, report: dict[str, Any]) -> None:
        """Add a worker's drained report into this recorder."""
        for sec_text, ops in report.get("hist", {}).items():
            bucket = self._open.setdefault(int(sec_text), {})
            for op, encoded in ops.items():
                hist = decode(encoded)
                if op in bucket:
                    bucket[op].add(hist)
                    release(hist)
                else:
                    bucket[op] = hist
        for sec_text, errs in report.get("errors", {}).items():
            counter = self._open_errors.setdefault(int(sec_text), Counter())
            self._open.setdefault(int(sec_text), {})
            for op, kind, n in errs:
                counter[(op, kind)] += n
        self._sec = -1  # the current-second cache may point at a dict merge replaced

    # -- finalizing -----------------------------------------------------------------------------

    def finalize(self, before: float = math.inf) -> None:
        """Turn every open second earlier than ``before`` (epoch s) into rows and cumulative data."""
        for sec in sorted(s for s in self._open if s < before):
            ops = self._open.pop(sec)
            errs = self._open_errors.pop(sec, Counter())
            self.closed_until = max(self.closed_until, sec + 1.0)
            measured = sec >= self.measure_from
            if measured:
                self.measured_seconds.add(sec)
            self.errors_all.update(errs)
            if measured:
                self.errors.update(errs)
            for op in sorted(set(ops) | {o for o, _ in errs}):
                hist = ops.get(op)
                count = hist.get_total_count() if hist is not None else 0
                row = {
                    "epoch_s": sec,
                    "operation": op,
                    "count": count,
                    "p50_us": hist.get_value_at_percentile(50) if hist is not None and count else None,
                    "p99_us": hist.get_value_at_percentile(99) if hist is not None and count else None,
                    "max_us": hist.get_max_value() if hist is not None and count else None,
                    "errors": sum(n for (o, _), n in errs.items() if o == op),
                    "warmup": not measured,
                }
                if self.sink is None:
                    self.rows.append(row)
                else:  # streamed: a soak holds only its open seconds and the whole-run histograms
                    self.sink.second(row, hist)
                if hist is not None:
                    if measured:
                        self.cumulative.setdefault(op, new_histogram(op)).add(hist)
                    release(hist)
        if self._sec not in self._open:
            self._sec = -1


class PartitionTimeline:
    """Per partition: first error, last error, error count, the first success after the last error
    (epoch s), and the gaps between successes (``outage.SuccessGaps``) that outages are measured by."""

    def __init__(self) -> None:
        self.state: dict[int, dict[str, float | None]] = {}
        self.awaiting: set[int] = set()
        self.successes = SuccessGaps()

    def error(self, partition: int, at: float) -> None:
        entry = self.state.setdefault(
            partition, {"first_error_at": at, "last_error_at": at, "recovered_at": None, "errors": 0}
        )
        entry["last_error_at"] = at
        entry["recovered_at"] = None
        entry["errors"] = (entry["errors"] or 0) + 1
        self.awaiting.add(partition)

    def success(self, partition: int, at: float) -> None:
        self.successes.success(partition, at)
        if partition in self.awaiting:
            self.state[partition]["recovered_at"] = at
            self.awaiting.discard(partition)

    def snapshot(self) -> dict[str, dict[str, float | None]]:
        return {str(p): dict(v) for p, v in self.state.items()}


def merge_timelines(snapshots: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """Combine processes: earliest first error, latest last error; recovered when *every* process
    that failed has succeeded again (the latest of their recoveries), else None."""
    merged: dict[str, dict[str, float | None]] = {}
    for snap in snapshots:
        for p, entry in snap.items():
            m = merged.setdefault(p, {"first_error_at": None, "last_error_at": None, "recovered_at": 0.0, "errors": 0})
            m["errors"] = (m["errors"] or 0) + (entry.get("errors") or 0)
            first, last = entry.get("first_error_at"), entry.get("last_error_at")
            if first is not None:
                m["first_error_at"] = first if m["first_error_at"] is None else min(m["first_error_at"], first)
            if last is not None:
                m["last_error_at"] = last if m["last_error_at"] is None else max(m["last_error_at"], last)
            rec = entry.get("recovered_at")
            m["recovered_at"] = None if rec is None or m["recovered_at"] is None else max(m["recovered_at"], rec)
    return merged

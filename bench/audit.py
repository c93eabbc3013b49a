"""The task audit: every task accounted for, in a few bits per task. Pure: no Redis.

Producers record each task id with its enqueue outcome, consumers record every delivery, outside
Redis (Redis may lose it). Load processes ship their records to the Locust master, the harness
adds what its drain delivered, and ``count()`` says what happened to every task:

- ``enqueued_ok``: the queue confirmed the enqueue.
- ``rejected``: the queue refused it (OOM, pool exhausted, connection refused, CLUSTERDOWN …).
- ``ambiguous``: the call failed in a way that may or may not have stored it (timeout, lost
  connection mid-call, not replicated in time).
- ``delivered_unique`` / ``duplicates`` (deliveries beyond the first).
- ``lost``: enqueued ok, never delivered, after the queue was drained empty. ``lost_ambiguous``:
  ambiguous, never delivered (cannot tell whether it was ever stored), kept apart. Before a drain
  these are ``undelivered`` (may still be queued); after a drain that timed out they are
  ``lost_upper_bound``: a number is only called lost when the suite is sure.
- ``delivered_after_reject``: refused, yet delivered (a retry inside the client had stored it):
  reported, never hidden.

Soak tests run for hours, so the audit must not grow like a list of strings. Generated task ids
are ``<prefix>-<hex counter>`` (a random prefix per process), so per prefix each outcome and
"delivered at least once" is a Roaring bitmap of counters (runs of consecutive counters cost
almost nothing, a dense random set one bit per task) and extra deliveries go in a small side
table. Ids of any other form (a user's own adapter) are kept as strings, as before.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyroaring import BitMap

from taskqueue.errors import AMBIGUOUS_KINDS

OUTCOMES = ("ok", "rejected", "ambiguous")
_SETS = (*OUTCOMES, "delivered")
MAX_COUNTER = 2**32 - 1  # Roaring bitmaps hold 32-bit values; beyond that, ids are kept as strings


def outcome_of(kind: str | None) -> str:
    """Enqueue outcome for an error kind (``None`` = success)."""
    if kind is None:
        return "ok"
    return "ambiguous" if kind in AMBIGUOUS_KINDS else "rejected"


def split_id(task_id: str) -> tuple[str, int] | None:
    """``(prefix, counter)`` of a generated id, None for any other form."""
    prefix, sep, tail = task_id.rpartition("-")
    if not sep or not prefix:
        return None
    try:
        counter = int(tail, 16)
    except ValueError:
        return None
    return (prefix, counter) if 0 <= counter <= MAX_COUNTER and tail == f"{counter:x}" else None


class _Prefix:
    """One id prefix: a bitmap per outcome, delivered-at-least-once, and extra deliveries."""

    __slots__ = ("ambiguous", "delivered", "extra", "ok", "rejected")

    def __init__(self) -> None:
        self.ok, self.rejected, self.ambiguous, self.delivered = BitMap(), BitMap(), BitMap(), BitMap()
        self.extra: Counter[int] = Counter()  # counter -> deliveries beyond the first

    def deliver_many(self, counters: list[int]) -> None:
        batch = BitMap(counters)
        if len(batch) != len(counters):  # the same task twice within the batch (rare)
            for counter, n in Counter(counters).items():
                if n > 1:
                    self.extra[counter] += n - 1
        for counter in self.delivered & batch:  # delivered before this batch too
            self.extra[counter] += 1
        self.delivered |= batch

    def merge(self, other: _Prefix) -> None:
        for name in OUTCOMES:
            getattr(self, name).update(getattr(other, name))
        for counter in self.delivered & other.delivered:  # delivered here and there: one more each
            self.extra[counter] += 1
        self.delivered.update(other.delivered)
        self.extra.update(other.extra)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: bytes(getattr(self, name).serialize()) for name in _SETS}
        out["extra"] = [[c, n] for c, n in self.extra.items()]
        return out

    @classmethod
    def decode(cls, data: dict[str, Any]) -> _Prefix:
        p = cls()
        for name in _SETS:
            setattr(p, name, BitMap.deserialize(_bytes(data[name])))
        p.extra = Counter({int(c): int(n) for c, n in data.get("extra", [])})
        return p


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else base64.b64decode(value)


FLUSH_AT = 4096  # ids buffered as strings, then turned into bitmap entries in bulk


def _counters(ids: list[str]) -> tuple[str, list[int]] | None:
    """Fast path for a batch of generated ids of one prefix: (prefix, counters), else None.
    Done with C-level string operations: this runs for every task of a soak."""
    first = ids[0]
    cut = first.rfind("-") + 1
    if cut < 2:
        return None
    head = first[:cut]
    joined = "\n" + "\n".join(ids)  # generated ids hold no newline
    if joined.count("\n" + head) != len(ids):  # not all of this prefix
        return None
    tails = joined.replace("\n" + head, "\n")
    if "\n0" in tails or "\n\n" in tails or tails.endswith("\n"):  # not as a counter prints
        return None
    try:
        counters = list(map(int, tails[1:].split("\n"), itertools.repeat(16)))
    except ValueError:
        return None
    return (head[:-1], counters) if max(counters) <= MAX_COUNTER else None


class AuditLog:
    def __init__(self) -> None:
        self.prefixes: dict[str, _Prefix] = {}
        # Ids that are not <prefix>-<hex counter>: kept whole.
        self.other_produced: dict[str, list[str]] = {o: [] for o in OUTCOMES}
        self.other_deliveries: list[str] = []
        # The hot path only appends; ``_flush`` turns the strings into bitmap entries in bulk.
        self._pending: dict[str, list[str]] = {o: [] for o in (*OUTCOMES, "delivered")}

    def _prefix(self, prefix: str) -> _Prefix:
        entry = self.prefixes.get(prefix)
        if entry is None:
            entry = self.prefixes[prefix] = _Prefix()
        return entry

    def produce(self, ids: Iterable[str], outcome: str) -> None:
        pending = self._pending[outcome]
        pending.extend(ids)
        if len(pending) >= FLUSH_AT:
            self._flush()

    def deliver(self, task_id: str) -> None:
        pending = self._pending["delivered"]
        pending.append(task_id)
        if len(pending) >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        for outcome in OUTCOMES:
            ids, self._pending[outcome] = self._pending[outcome], []
            if not ids:
                continue
            fast = _counters(ids)
            if fast is not None:
                getattr(self._prefix(fast[0]), outcome).update(fast[1])
                continue
            for task_id in ids:
                parts = split_id(task_id)
                if parts is None:
                    self.other_produced[outcome].append(task_id)
                else:
                    getattr(self._prefix(parts[0]), outcome).add(parts[1])
        ids, self._pending["delivered"] = self._pending["delivered"], []
        if not ids:
            return
        fast = _counters(ids)
        if fast is not None:
            self._prefix(fast[0]).deliver_many(fast[1])
            return
        for task_id in ids:
            parts = split_id(task_id)
            if parts is None:
                self.other_deliveries.append(task_id)
            else:
                self._prefix(parts[0]).deliver_many([parts[1]])

    def encode(self) -> dict[str, Any]:
        """Compact form (bitmaps as bytes): for Locust's messages and, base64'd, for files."""
        self._flush()
        return {
            "format": "roaring-v1",
            "prefixes": {prefix: p.encode() for prefix, p in self.prefixes.items()},
            "other": {"produced": self.other_produced, "deliveries": self.other_deliveries},
        }

    def drain(self) -> dict[str, Any]:
        """What was recorded since the last drain (then forgotten here): a worker's report."""
        report = self.encode()
        self.prefixes = {}
        self.other_produced = {o: [] for o in OUTCOMES}
        self.other_deliveries = []
        return report

    def merge(self, report: dict[str, Any]) -> None:
        if report.get("format") != "roaring-v1":  # the older list-of-ids form
            report = {"other": report}
        for prefix, data in report.get("prefixes", {}).items():
            self._prefix(prefix).merge(_Prefix.decode(data))
        other = report.get("other", {})
        for outcome, ids in other.get("produced", {}).items():
            self.produce(ids, outcome)
        for task_id in other.get("deliveries", []):
            self.deliver(task_id)
        self._flush()

    def save(self, path: Path) -> None:
        """The evidence behind the counts, kept beside them (gzip'd JSON, bitmaps base64'd)."""
        data = self.encode()
        for p in data["prefixes"].values():
            for name in _SETS:
                p[name] = base64.b64encode(p[name]).decode()
        with gzip.open(path, "wt") as fh:
            json.dump(data, fh)

    @classmethod
    def load(cls, path: Path) -> AuditLog:
        log = cls()
        with gzip.open(path, "rt") as fh:
            log.merge(json.load(fh))
        return log

    def lost_ids(self) -> tuple[dict[str, BitMap], set[str]]:
        """Enqueued ok, never delivered: counters per prefix, and ids of other forms. Lost only
        after a drain that emptied the queue (before, they may still be queued)."""
        self._flush()
        lost = {prefix: p.ok - p.delivered for prefix, p in self.prefixes.items()}
        other = set(self.other_produced["ok"]) - set(self.other_deliveries)
        return {prefix: bm for prefix, bm in lost.items() if bm}, other

    def memory_bytes(self) -> int:
        """Bytes held by the bitmaps' containers and the side tables (the soak memory check)."""
        self._flush()
        total = 0
        for p in self.prefixes.values():
            for name in _SETS:
                stats = getattr(p, name).get_statistics()
                total += sum(stats[f"n_bytes_{kind}_containers"] for kind in ("array", "run", "bitset"))
            total += 100 * len(p.extra)  # a dict entry of two small ints, generously
        return total


LOST_NAMES = {
    # What the never-delivered counts may be called, by how sure they are.
    "drained": ("lost", "lost_ambiguous"),  # the queue was drained empty: not delivered means lost
    "drain_timed_out": ("lost_upper_bound", "lost_ambiguous_upper_bound"),  # some may still be queued
    "load": ("undelivered", "undelivered_ambiguous"),  # no drain yet: may simply still be queued
}


def count(log: AuditLog, stage: str = "drained") -> dict[str, int]:
    """Every task's fate. ``stage`` names the never-delivered counts honestly (see LOST_NAMES)."""
    lost_name, lost_ambiguous_name = LOST_NAMES[stage]
    log._flush()
    totals: Counter[str] = Counter()
    for p in log.prefixes.values():
        known = p.ok | p.rejected | p.ambiguous
        totals.update(
            {
                "enqueued_ok": len(p.ok),
                "rejected": len(p.rejected),
                "ambiguous": len(p.ambiguous),
                "deliveries": len(p.delivered) + sum(p.extra.values()),
                "delivered_unique": p.delivered.intersection_cardinality(known),
                "duplicates": sum(p.extra.values()),
                lost_name: p.ok.difference_cardinality(p.delivered),
                lost_ambiguous_name: p.ambiguous.difference_cardinality(p.delivered),
                "delivered_ambiguous": p.ambiguous.intersection_cardinality(p.delivered),
                "delivered_after_reject": p.rejected.intersection_cardinality(p.delivered),
                "delivered_unknown": p.delivered.difference_cardinality(known),
            }
        )
    totals.update(_count_other(log, lost_name, lost_ambiguous_name))
    keys = (
        "enqueued_ok",
        "rejected",
        "ambiguous",
        "deliveries",
        "delivered_unique",
        "duplicates",
        lost_name,
        lost_ambiguous_name,
        "delivered_ambiguous",
        "delivered_after_reject",
        "delivered_unknown",
    )
    return {k: totals[k] for k in keys}


def _count_other(log: AuditLog, lost_name: str, lost_ambiguous_name: str) -> dict[str, int]:
    ok, rejected, ambiguous = (set(log.other_produced[o]) for o in OUTCOMES)
    deliveries = Counter(log.other_deliveries)
    delivered = set(deliveries)
    known = ok | rejected | ambiguous
    return {
        "enqueued_ok": len(ok),
        "rejected": len(rejected),
        "ambiguous": len(ambiguous),
        "deliveries": sum(deliveries.values()),
        "delivered_unique": len(delivered & known),
        "duplicates": sum(n - 1 for n in deliveries.values() if n > 1),
        lost_name: len(ok - delivered),
        lost_ambiguous_name: len(ambiguous - delivered),
        "delivered_ambiguous": len(ambiguous & delivered),
        "delivered_after_reject": len(rejected & delivered),
        "delivered_unknown": len(delivered - known),
    }

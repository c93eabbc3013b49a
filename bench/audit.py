"""The task audit: every task accounted for. Pure: no Redis.

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
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from taskqueue.errors import AMBIGUOUS_KINDS

OUTCOMES = ("ok", "rejected", "ambiguous")


def outcome_of(kind: str | None) -> str:
    """Enqueue outcome for an error kind (``None`` = success)."""
    if kind is None:
        return "ok"
    return "ambiguous" if kind in AMBIGUOUS_KINDS else "rejected"


class AuditLog:
    def __init__(self) -> None:
        self.produced: dict[str, list[str]] = {o: [] for o in OUTCOMES}
        self.deliveries: list[str] = []

    def produce(self, ids: Iterable[str], outcome: str) -> None:
        self.produced[outcome].extend(ids)

    def deliver(self, task_id: str) -> None:
        self.deliveries.append(task_id)

    def drain(self) -> dict[str, Any]:
        report = {"produced": self.produced, "deliveries": self.deliveries}
        self.produced = {o: [] for o in OUTCOMES}
        self.deliveries = []
        return report

    def merge(self, report: dict[str, Any]) -> None:
        for outcome, ids in report.get("produced", {}).items():
            self.produced[outcome].extend(ids)
        self.deliveries.extend(report.get("deliveries", []))

    def save(self, path: Path) -> None:
        """Ids are the evidence behind the counts: kept gzip-compressed beside them."""
        with gzip.open(path, "wt") as fh:
            json.dump({"produced": self.produced, "deliveries": self.deliveries}, fh)

    @classmethod
    def load(cls, path: Path) -> AuditLog:
        log = cls()
        with gzip.open(path, "rt") as fh:
            log.merge(json.load(fh))
        return log


LOST_NAMES = {
    # What the never-delivered counts may be called, by how sure they are.
    "drained": ("lost", "lost_ambiguous"),  # the queue was drained empty: not delivered means lost
    "drain_timed_out": ("lost_upper_bound", "lost_ambiguous_upper_bound"),  # some may still be queued
    "load": ("undelivered", "undelivered_ambiguous"),  # no drain yet: may simply still be queued
}


def count(log: AuditLog, stage: str = "drained") -> dict[str, int]:
    """Every task's fate. ``stage`` names the never-delivered counts honestly (see LOST_NAMES)."""
    lost_name, lost_ambiguous_name = LOST_NAMES[stage]
    ok, rejected, ambiguous = (set(log.produced[o]) for o in OUTCOMES)
    deliveries = Counter(log.deliveries)
    delivered = set(deliveries)
    known = ok | rejected | ambiguous
    return {
        "enqueued_ok": len(ok),
        "rejected": len(rejected),
        "ambiguous": len(ambiguous),
        "deliveries": sum(deliveries.values()),
        "delivered_unique": len(delivered & known),
        "duplicates": sum(n - 1 for task_id, n in deliveries.items() if n > 1),
        lost_name: len(ok - delivered),
        lost_ambiguous_name: len(ambiguous - delivered),
        "delivered_ambiguous": len(ambiguous & delivered),
        "delivered_after_reject": len(rejected & delivered),
        "delivered_unknown": len(delivered - known),
    }

"""The task audit, pure: literal counts, the compact form against a plain-set reference on random
histories (several processes, duplicates, odd ids), and its size per task in memory, on the wire
and on disk (soak tests run for hours)."""

from __future__ import annotations

import gzip
import json
import random
import tracemalloc
from collections import Counter
from pathlib import Path

import msgpack
import pytest

from bench.audit import OUTCOMES, AuditLog, count, outcome_of
from taskqueue.codec import IdFactory


def test_audit_counts_literal() -> None:
    log = AuditLog()
    log.produce(["a", "b", "c", "d"], "ok")
    log.produce(["r1", "r2"], "rejected")
    log.produce(["x1", "x2"], "ambiguous")
    for task_id in ["a", "b", "b", "b", "c", "x1", "r2", "zz"]:
        log.deliver(task_id)
    assert count(log) == {
        "enqueued_ok": 4,
        "rejected": 2,
        "ambiguous": 2,
        "deliveries": 8,
        "delivered_unique": 5,
        "duplicates": 2,
        "lost": 1,
        "lost_ambiguous": 1,
        "delivered_ambiguous": 1,
        "delivered_after_reject": 1,
        "delivered_unknown": 1,
    }
    assert [outcome_of(k) for k in (None, "oom", "timeout", "connection_refused", "not_replicated")] == [
        "ok",
        "rejected",
        "ambiguous",
        "rejected",
        "ambiguous",
    ]


def test_audit_merge_and_save_roundtrip(tmp_path: Path) -> None:
    worker = AuditLog()
    worker.produce(["a"], "ok")
    worker.deliver("a")
    master = AuditLog()
    master.merge(worker.drain())
    master.save(tmp_path / "a.json.gz")
    assert count(AuditLog.load(tmp_path / "a.json.gz"))["delivered_unique"] == 1


def reference_count(produced: dict[str, list[str]], deliveries: list[str]) -> dict[str, int]:
    """The audit's definitions written the plain way, with sets of strings."""
    ok, rejected, ambiguous = (set(produced[o]) for o in OUTCOMES)
    seen = Counter(deliveries)
    delivered = set(seen)
    known = ok | rejected | ambiguous
    return {
        "enqueued_ok": len(ok),
        "rejected": len(rejected),
        "ambiguous": len(ambiguous),
        "deliveries": len(deliveries),
        "delivered_unique": len(delivered & known),
        "duplicates": sum(n - 1 for n in seen.values()),
        "lost": len(ok - delivered),
        "lost_ambiguous": len(ambiguous - delivered),
        "delivered_ambiguous": len(ambiguous & delivered),
        "delivered_after_reject": len(rejected & delivered),
        "delivered_unknown": len(delivered - known),
    }


@pytest.mark.parametrize("seed", range(6))
def test_compact_audit_counts_like_plain_sets_across_processes(seed: int) -> None:
    rng = random.Random(seed)
    factories = [IdFactory() for _ in range(3)]  # three load processes
    produced: dict[str, list[str]] = {o: [] for o in OUTCOMES}
    deliveries: list[str] = []
    workers = [AuditLog() for _ in factories]
    master = AuditLog()
    odd = ["job-0a", "job-a", "uuid-like-7f3e", "plain", "x-", "-1", "p-100000000"]  # not counters, or not canonical
    for step in range(rng.randint(5_000, 12_000)):
        w = rng.randrange(len(factories))
        ids = [factories[w]() for _ in range(rng.choice((1, 1, 1, 5)))]
        if rng.random() < 0.01:
            ids.append(rng.choice(odd) + str(step))
        outcome = rng.choices(OUTCOMES, weights=(90, 6, 4))[0]
        workers[w].produce(ids, outcome)
        produced[outcome] += ids
        for task_id in ids:
            for _ in range(rng.choices((0, 1, 2), weights=(8, 90, 2))[0]):  # lost, delivered, duplicated
                consumer = rng.randrange(len(workers))  # any process may deliver it
                workers[consumer].deliver(task_id)
                deliveries.append(task_id)
        if rng.random() < 0.002:
            stray = rng.choice(odd)
            workers[w].deliver(stray)
            deliveries.append(stray)
        if rng.random() < 0.01:  # a report to the master: only what is new since the last one
            master.merge(msgpack.loads(msgpack.dumps(workers[w].drain()), raw=False, strict_map_key=False))
    for worker in workers:
        master.merge(worker.drain())
    assert count(master) == reference_count(produced, deliveries)


def test_generated_ids_go_into_bitmaps_and_odd_ids_stay_strings() -> None:
    f = IdFactory(prefix="abcd")
    log = AuditLog()
    log.produce([f(), f(), "abcd-0f", "other"], "ok")
    log.deliver("abcd-1")
    log.deliver("abcd-0f")  # a leading zero is not how a counter prints: not counter 15
    count(log)
    assert list(log.prefixes["abcd"].ok) == [1, 2] and list(log.prefixes["abcd"].delivered) == [1]
    assert log.other_produced["ok"] == ["abcd-0f", "other"] and log.other_deliveries == ["abcd-0f"]


def test_a_report_to_the_master_carries_only_what_is_new() -> None:
    f = IdFactory()
    worker = AuditLog()
    ids = [f() for _ in range(50_000)]
    worker.produce(ids, "ok")
    for task_id in random.Random(3).sample(ids, 25_000):  # every other one, scattered
        worker.deliver(task_id)
    first = len(msgpack.dumps(worker.drain()))
    worker.produce([f() for _ in range(10)], "ok")
    second = len(msgpack.dumps(worker.drain()))
    assert second < 300 and 10 * second < first


def test_audit_size_per_task_in_memory_on_the_wire_and_on_disk(tmp_path: Path) -> None:
    """200,000 tasks, 99 % delivered slightly out of order, 1 % twice: ≤ 2 bytes per task in
    memory (bitmap containers plus every Python object the audit keeps) and on the wire, ≤ 1 byte
    per task in the audit file."""
    tasks = 200_000
    rng = random.Random(7)
    f = IdFactory()
    ids = [f() for _ in range(tasks)]
    order = [task_id for i in range(0, tasks, 64) for task_id in rng.sample(ids[i : i + 64], len(ids[i : i + 64]))]
    log = AuditLog()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for task_id in ids:
        log.produce([task_id], "ok")
    for task_id in order[: int(tasks * 0.99)]:
        log.deliver(task_id)
    for task_id in order[: tasks // 100]:
        log.deliver(task_id)
    count(log)  # flushes what is buffered
    python_side = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert (python_side + log.memory_bytes()) / tasks <= 2.0
    assert len(msgpack.dumps(log.encode())) / tasks <= 2.0
    log.save(tmp_path / "audit.json.gz")
    assert (tmp_path / "audit.json.gz").stat().st_size / tasks <= 1.0
    again = AuditLog.load(tmp_path / "audit.json.gz")
    assert count(again) == count(log) and count(log)["duplicates"] == tasks // 100
    with gzip.open(tmp_path / "audit.json.gz", "rt") as fh:
        assert json.load(fh)["format"] == "roaring-v1"

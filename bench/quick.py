"""The quick side-by-side: TaskQueue operations vs the raw redis-py commands they build on,
through the *same* client object, interleaved in one process so drift hits both equally."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from taskqueue import TaskQueue


@dataclass
class Rate:
    name: str
    ops_per_s: float  # median of repeats
    low: float
    high: float


def _rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def measure(queue: TaskQueue, tasks: int = 2000, payload_size: int = 100, repeats: int = 3) -> list[Rate]:
    """enqueue, dequeue+ack, raw LPUSH and raw LMOVE+LREM rates (median of ``repeats``)."""
    payload = b"x" * payload_size
    client = queue.client
    raw_src, raw_dst = "bench:{raw}:src", "bench:{raw}:dst"
    samples: dict[str, list[float]] = {k: [] for k in ("raw LPUSH", "enqueue", "raw LMOVE+LREM", "dequeue+ack")}

    def dequeue_ack() -> None:
        task = queue.dequeue()
        assert task is not None, "queue drained early"
        queue.ack(task)

    def lmove_lrem() -> None:
        value = client.lmove(raw_src, raw_dst, "RIGHT", "LEFT")
        client.lrem(raw_dst, 1, value)  # type: ignore[arg-type]

    for _ in range(repeats):
        queue.purge()
        client.delete(raw_src, raw_dst)
        samples["raw LPUSH"].append(_rate(lambda: client.lpush(raw_src, payload), tasks))
        samples["enqueue"].append(_rate(lambda: queue.enqueue(payload), tasks))
        samples["raw LMOVE+LREM"].append(_rate(lmove_lrem, tasks))
        samples["dequeue+ack"].append(_rate(dequeue_ack, tasks))
    client.delete(raw_src, raw_dst)
    queue.purge()
    return [Rate(k, statistics.median(v), min(v), max(v)) for k, v in samples.items()]

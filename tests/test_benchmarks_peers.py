"""Peer micro-benchmarks: TaskQueue's list and stream engines and RQ, side by side in one run.

Groups ``peers <operation> <backend>`` hold one row per queue design (list, stream, RQ), each
through its adapter (``bench.adapters``), 100 B payloads, the rows run back to back. RQ is
standalone only (it does not support Redis Cluster) and skipped when not installed. As with the
other benchmarks, plain ``pytest`` runs each once; ``pytest --benchmark-only`` measures.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import adapters
from bench.options import LoadOptions

ROUNDS = 1000
WARMUP = 50
PAYLOAD = b"x" * 100
DESIGNS = {"list": "bench.adapters:list_engine", "stream": "bench.adapters:stream_engine", "rq": "bench.adapters:rq"}
CASES = [("standalone", d) for d in DESIGNS] + [("cluster", d) for d in ("list", "stream")]


@pytest.fixture(params=CASES, ids=[f"{b}-{d}" for b, d in CASES])
def peer(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Any]]:
    kind, design = request.param
    if design == "rq":
        pytest.importorskip("rq")
    backend = request.getfixturevalue(kind)
    options = LoadOptions(queue_name=f"peer-{uuid.uuid4().hex[:8]}", pool_size=10, visibility_timeout=30)
    queue = adapters.build(DESIGNS[design], backend.target, options)
    try:
        yield kind, design, queue
    finally:
        queue.purge()
        queue.close()


def _info(benchmark: BenchmarkFixture, kind: str, design: str, queue: Any) -> None:
    described = queue.describe()
    benchmark.extra_info.update(
        backend=kind,
        design=design,
        engine=described.get("engine"),
        server_version=described.get("server_version"),
        payload_bytes=len(PAYLOAD),
    )


def test_peer_enqueue(benchmark: BenchmarkFixture, peer: tuple[str, str, Any]) -> None:
    kind, design, queue = peer
    benchmark.group = f"peers enqueue {kind}"
    benchmark.name = design
    _info(benchmark, kind, design, queue)
    benchmark.pedantic(lambda: queue.enqueue(PAYLOAD, task_id=queue.new_id()), rounds=ROUNDS, warmup_rounds=WARMUP)
    assert queue.depth() > 0


def test_peer_dequeue_ack(benchmark: BenchmarkFixture, peer: tuple[str, str, Any]) -> None:
    kind, design, queue = peer
    benchmark.group = f"peers dequeue+ack {kind}"
    benchmark.name = design
    _info(benchmark, kind, design, queue)
    for _ in range(ROUNDS + WARMUP + 10):  # filled up front (untimed), never runs dry
        queue.enqueue(PAYLOAD, task_id=queue.new_id())

    def consume() -> None:
        task = queue.dequeue(0.5)
        assert task is not None
        queue.ack(task)

    benchmark.pedantic(consume, rounds=ROUNDS, warmup_rounds=WARMUP)


def test_peer_round_trip(benchmark: BenchmarkFixture, peer: tuple[str, str, Any]) -> None:
    """One task through the whole queue: enqueue, dequeue, ack (end-to-end cost at no backlog)."""
    kind, design, queue = peer
    benchmark.group = f"peers enqueue->dequeue->ack {kind}"
    benchmark.name = design
    _info(benchmark, kind, design, queue)

    def round_trip() -> None:
        queue.enqueue(PAYLOAD, task_id=queue.new_id())
        task = queue.dequeue(0.5)
        assert task is not None and task.payload == PAYLOAD
        queue.ack(task)

    benchmark.pedantic(round_trip, rounds=ROUNDS, warmup_rounds=WARMUP)

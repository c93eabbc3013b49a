"""Micro-benchmarks: TaskQueue operations next to the raw redis-py commands they build on.

``pytest`` runs every benchmark once as a plain test (``--benchmark-disable`` is in addopts), so
they cannot rot; ``pytest --benchmark-only`` benchmarks them for real and autosaves the results
under ``results/benchmarks`` (see ``pytest_configure`` in conftest.py), so a later
``pytest --benchmark-only --benchmark-compare`` compares against the previous run.

Each pytest-benchmark group holds one TaskQueue operation and its raw reference on the same
backend and payload size, through the *same* client object (``queue.client``), so the table
shows ours vs raw side by side:

    enqueue vs LPUSH                        TaskQueue.enqueue     vs  LPUSH
    dequeue+ack vs LMOVE+LREM               dequeue() + ack()     vs  LMOVE src->dst + LREM dst
    enqueue_many(100) vs LPUSH(100 values)  enqueue_many(100)     vs  one LPUSH of 100 values
    pool size (16 threads)                  16 threads x 200 enqueues, blocking pool of 1/4/16

Group names end in backend and payload ("enqueue vs LPUSH cluster 10KB"; the pool groups in the
backend). The two rows of a pair run back to back, so slow drift of the machine hits both alike.
Every benchmark uses ``benchmark.pedantic`` with a fixed number of rounds: the work (and the run
time) is bounded, and the ours/raw rows of a group are measured the same way. Queue refills and
trims happen in pedantic's ``setup``, outside the timed part.

External servers: set ``TQB_BENCH_REDIS_URL`` (standalone) and/or ``TQB_BENCH_CLUSTER_NODES``
(``host:port,host:port``) to benchmark those instead of embedded servers; a backend without its
variable is then skipped. Only the benchmark's own queue keys and raw keys are ever deleted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.target import Target
from taskqueue import TaskQueue
from taskqueue.connection import Client

PAYLOADS = {"100B": 100, "10KB": 10 * 1024}
BACKENDS = ("standalone", "cluster")

# One-operation benchmarks: rounds of a single call each, so the median is one call's latency.
SINGLE_ROUNDS = 2000
SINGLE_WARMUP = 100
REFILL = 500  # consumer benchmarks: tasks added (outside the timing) every REFILL rounds
MARGIN = 64  # ... on top of a standing reserve, so no partition ever runs dry
TRIM_EVERY = 1000  # producer benchmarks: keys emptied every TRIM_EVERY rounds (bounds memory)

BATCH = 100  # enqueue_many / multi-value LPUSH size
BATCH_ROUNDS = 200
BATCH_WARMUP = 10
BATCH_TRIM_EVERY = 20  # at most 2000 tasks (20 MB at 10 KB) held at once

POOL_SIZES = (1, 4, 16)
POOL_THREADS = 16
POOL_PER_THREAD = 200
POOL_ROUNDS = 4
POOL_TIMEOUT_S = 10.0

payload_sizes = pytest.mark.parametrize("payload_size", list(PAYLOADS.values()), ids=list(PAYLOADS))


# -- where to run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchTarget:
    kind: str  # "standalone" | "cluster"
    target: Target
    external: bool


def external_targets() -> dict[str, Target | None] | None:
    """``None`` unless an external server is configured; else kind -> target (``None``: skip)."""
    url = os.environ.get("TQB_BENCH_REDIS_URL", "").strip()
    nodes = os.environ.get("TQB_BENCH_CLUSTER_NODES", "").strip()
    if not url and not nodes:
        return None
    return {
        "standalone": Target(redis_url=url) if url else None,
        "cluster": Target(cluster_nodes=nodes) if nodes else None,
    }


@pytest.fixture(params=BACKENDS)
def bench_target(request: pytest.FixtureRequest) -> BenchTarget:
    """The external server when configured, else the embedded session backend (started lazily)."""
    kind = str(request.param)
    external = external_targets()
    if external is None:
        return BenchTarget(kind, request.getfixturevalue(kind).target, external=False)
    target = external[kind]
    if target is None:
        var = "TQB_BENCH_REDIS_URL" if kind == "standalone" else "TQB_BENCH_CLUSTER_NODES"
        pytest.skip(f"external Redis configured but {var} is not set: no {kind} to benchmark")
    return BenchTarget(kind, target, external=True)


def clear_queue(queue: TaskQueue) -> None:
    """Delete this queue's keys, partition by partition (one slot each): no SCAN, no FLUSH."""
    for p in range(queue.partitions):
        queue.client.delete(*queue.keys_of(p).all())


@pytest.fixture
def make_bench_queue(bench_target: BenchTarget) -> Iterator[Callable[..., TaskQueue]]:
    """Queues with unique names on the benchmark target; purged (own keys only) and closed after."""
    made: list[TaskQueue] = []

    def make(**kwargs: Any) -> TaskQueue:
        kwargs.setdefault("name", f"bench-{uuid.uuid4().hex[:8]}")
        queue = TaskQueue(bench_target.target.redis_url, bench_target.target.cluster_nodes, **kwargs)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        try:
            queue.purge()
        finally:
            queue.close()


@pytest.fixture
def bench_queue(make_bench_queue: Callable[..., TaskQueue]) -> TaskQueue:
    return make_bench_queue()


@pytest.fixture
def raw_keys(bench_queue: TaskQueue) -> Iterator[tuple[str, str]]:
    """A source and a destination list in one hash slot (works on a cluster), unique per test."""
    tag = f"raw-{uuid.uuid4().hex[:8]}"
    src, dst = f"bench:{{{tag}}}:src", f"bench:{{{tag}}}:dst"
    yield src, dst
    bench_queue.client.delete(src, dst)


# -- helpers ----------------------------------------------------------------------------------------


class Every:
    """A ``benchmark.pedantic`` setup that runs ``action`` before rounds 0, n, 2n, … (warm-up
    rounds included), outside the timed part."""

    def __init__(self, n: int, action: Callable[[], object]) -> None:
        self.n = n
        self.action = action
        self.calls = 0

    def __call__(self) -> None:
        if self.calls % self.n == 0:
            self.action()
        self.calls += 1


def plan(benchmark: BenchmarkFixture, rounds: int, warmup: int) -> tuple[int, int]:
    """The rounds to run: all of them when benchmarking, a single call when disabled (a test)."""
    return (rounds, warmup) if benchmark.enabled else (1, 0)


def label(payload_size: int) -> str:
    return next(name for name, size in PAYLOADS.items() if size == payload_size)


def record(
    benchmark: BenchmarkFixture,
    queue: TaskQueue,
    target: BenchTarget,
    family: str,
    implementation: str,
    payload_size: int,
    **more: Any,
) -> None:
    """Group the benchmark with its ours/raw counterpart and note what it ran against."""
    described = queue.describe()
    benchmark.group = f"{family} {target.kind} {label(payload_size)}"
    benchmark.extra_info.update(
        implementation=implementation,
        backend=target.kind,
        external=target.external,
        payload_bytes=payload_size,
        pool_size=described["pool_size"],
        pool_blocking=described["pool_blocking"],
        partitions=described["partitions"],
        server_version=described["server_version"],
        redis_py=described["redis_py"],
        **more,
    )


def fill_queue(queue: TaskQueue, payload: bytes, count: int) -> None:
    for start in range(0, count, BATCH):
        queue.enqueue_many([payload] * min(BATCH, count - start))


def fill_list(client: Client, key: str, payload: bytes, count: int) -> None:
    for start in range(0, count, BATCH):
        client.lpush(key, *[payload] * min(BATCH, count - start))


# -- the ours/raw pairs: one test per family, the implementation varying fastest, so the two rows of
# a group run back to back and slow drift of the machine hits both alike.

PUSH = {"enqueue": "TaskQueue.enqueue", "raw_LPUSH": "raw LPUSH"}
CONSUME = {"dequeue+ack": "TaskQueue.dequeue+ack", "raw_LMOVE+LREM": "raw LMOVE+LREM"}
PUSH_MANY = {
    f"enqueue_many{BATCH}": f"TaskQueue.enqueue_many({BATCH})",
    f"raw_LPUSH{BATCH}": f"raw LPUSH({BATCH} values)",
}


@pytest.mark.parametrize("impl", list(PUSH))
@payload_sizes
def test_push(
    benchmark: BenchmarkFixture,
    bench_target: BenchTarget,
    bench_queue: TaskQueue,
    raw_keys: tuple[str, str],
    payload_size: int,
    impl: str,
) -> None:
    """One TaskQueue.enqueue (EVALSHA: HSETNX record + LPUSH id) vs one raw LPUSH of the payload."""
    queue, client, (src, _), payload = bench_queue, bench_queue.client, raw_keys, b"x" * payload_size
    record(benchmark, queue, bench_target, "enqueue vs LPUSH", PUSH[impl], payload_size)
    rounds, warmup = plan(benchmark, SINGLE_ROUNDS, SINGLE_WARMUP)
    target: Callable[..., object]
    args: tuple[object, ...]
    trim: Callable[[], object]
    held: Callable[[], int]
    if impl == "enqueue":
        target, args, trim, held = queue.enqueue, (payload,), (lambda: clear_queue(queue)), queue.depth
    else:
        target, args, trim, held = (
            client.lpush,
            (src, payload),
            (lambda: client.delete(src)),
            (lambda: client.llen(src)),
        )
    benchmark.pedantic(target, args=args, setup=Every(TRIM_EVERY, trim), rounds=rounds, warmup_rounds=warmup)
    assert 1 <= held() <= TRIM_EVERY


@pytest.mark.parametrize("impl", list(CONSUME))
@payload_sizes
def test_consume(
    benchmark: BenchmarkFixture,
    bench_target: BenchTarget,
    bench_queue: TaskQueue,
    raw_keys: tuple[str, str],
    payload_size: int,
    impl: str,
) -> None:
    """One dequeue() then ack() of that task vs a raw LMOVE src->dst then LREM of it from dst.
    A reserve of MARGIN items plus a refill every REFILL rounds (untimed) keeps it from running dry."""
    queue, client, (src, dst), payload = bench_queue, bench_queue.client, raw_keys, b"x" * payload_size
    record(benchmark, queue, bench_target, "dequeue+ack vs LMOVE+LREM", CONSUME[impl], payload_size)
    rounds, warmup = plan(benchmark, SINGLE_ROUNDS, SINGLE_WARMUP)
    refill = min(REFILL, rounds + warmup)

    def dequeue_ack() -> None:
        task = queue.dequeue()
        assert task is not None, "queue ran dry"
        queue.ack(task)

    def lmove_lrem() -> None:
        value = client.lmove(src, dst, "RIGHT", "LEFT")
        assert value is not None, "list ran dry"
        client.lrem(dst, 1, value)  # type: ignore[arg-type]

    if impl == "dequeue+ack":
        target, fill = dequeue_ack, (lambda n: fill_queue(queue, payload, n))
    else:
        target, fill = lmove_lrem, (lambda n: fill_list(client, src, payload, n))
    fill(MARGIN)
    benchmark.pedantic(target, setup=Every(refill, lambda: fill(refill)), rounds=rounds, warmup_rounds=warmup)
    assert queue.depth() + client.llen(src) >= MARGIN
    assert queue.inflight() == 0
    assert client.llen(dst) == 0


@pytest.mark.parametrize("impl", list(PUSH_MANY))
@payload_sizes
def test_push_many(
    benchmark: BenchmarkFixture,
    bench_target: BenchTarget,
    bench_queue: TaskQueue,
    raw_keys: tuple[str, str],
    payload_size: int,
    impl: str,
) -> None:
    """enqueue_many of BATCH tasks (one pipelined EVALSHA per partition) vs one LPUSH of BATCH values."""
    queue, client, (src, _), payloads = bench_queue, bench_queue.client, raw_keys, [b"x" * payload_size] * BATCH
    family = f"enqueue_many({BATCH}) vs LPUSH({BATCH} values)"
    record(benchmark, queue, bench_target, family, PUSH_MANY[impl], payload_size, tasks_per_call=BATCH)
    rounds, warmup = plan(benchmark, BATCH_ROUNDS, BATCH_WARMUP)
    target: Callable[..., object]
    args: tuple[object, ...]
    trim: Callable[[], object]
    held: Callable[[], int]
    if impl.startswith("enqueue_many"):
        target, args, trim, held = queue.enqueue_many, (payloads,), (lambda: clear_queue(queue)), queue.depth
    else:
        target, args, trim, held = (
            client.lpush,
            (src, *payloads),
            (lambda: client.delete(src)),
            (lambda: client.llen(src)),
        )
    benchmark.pedantic(target, args=args, setup=Every(BATCH_TRIM_EVERY, trim), rounds=rounds, warmup_rounds=warmup)
    assert BATCH <= held() <= BATCH * BATCH_TRIM_EVERY


# -- pool size at fixed concurrency -----------------------------------------------------------------


@pytest.mark.parametrize("pool_size", POOL_SIZES, ids=[f"pool{n}" for n in POOL_SIZES])
def test_pool_size(
    benchmark: BenchmarkFixture,
    bench_target: BenchTarget,
    make_bench_queue: Callable[..., TaskQueue],
    pool_size: int,
) -> None:
    """16 threads share one queue (one client, one pool per node) and each enqueue
    POOL_PER_THREAD tasks of 100 B; a blocking pool makes small pools wait instead of failing.
    One round = all threads done; throughput = extra_info["enqueues_per_round"] / round time."""
    queue = make_bench_queue(pool_size=pool_size, pool_blocking=True, pool_timeout=POOL_TIMEOUT_S)
    payload = b"x" * PAYLOADS["100B"]
    per_thread = POOL_PER_THREAD if benchmark.enabled else 5
    record(benchmark, queue, bench_target, "pool size", "TaskQueue.enqueue", len(payload))
    benchmark.group = f"pool size ({POOL_THREADS} threads) {bench_target.kind}"
    benchmark.extra_info.update(threads=POOL_THREADS, enqueues_per_round=POOL_THREADS * per_thread)
    assert benchmark.extra_info["pool_size"] == pool_size
    assert benchmark.extra_info["pool_blocking"] is True

    def work() -> None:
        for _ in range(per_thread):
            queue.enqueue(payload)

    rounds, warmup = plan(benchmark, POOL_ROUNDS, 1)
    with ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="bench-pool") as pool:

        def all_threads() -> None:
            for future in [pool.submit(work) for _ in range(POOL_THREADS)]:
                future.result()

        benchmark.pedantic(all_threads, setup=lambda: clear_queue(queue), rounds=rounds, warmup_rounds=warmup)
    assert queue.depth() == POOL_THREADS * per_thread

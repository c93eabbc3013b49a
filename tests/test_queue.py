"""TaskQueue behaviour on a real standalone server and a real 6-node cluster."""

from __future__ import annotations

import threading
import time

import pytest
from redis.cluster import RedisCluster
from redis.exceptions import OutOfMemoryError

from taskqueue import PoolExhausted, QueueFull, TaskQueue


@pytest.fixture(params=["list", "stream"])
def engine(request: pytest.FixtureRequest) -> str:
    """Both engines pass the same behavioural suite."""
    return str(request.param)


def test_round_trip(make_queue) -> None:
    q = make_queue()
    task_id = q.enqueue(b"hello")
    assert q.depth() == 1
    task = q.dequeue(timeout=1.0)
    assert task is not None
    assert (task.id, task.payload, task.attempts) == (task_id, b"hello", 1)
    assert abs(task.enqueued_at - time.time_ns()) < 60e9
    assert q.depth() == 0 and q.inflight() == 1
    assert q.ack(task) is True
    assert q.inflight() == 0
    assert q.dequeue(timeout=0.05) is None


def test_fifo_within_partition_and_every_task_once(make_queue) -> None:
    q = make_queue(partitions=1)
    ids = [q.enqueue(f"{i}".encode()) for i in range(50)]
    got = []
    for _ in range(60):  # bounded
        task = q.dequeue(timeout=0.05)
        if task is None:
            break
        got.append(task.id)
        q.ack(task)
    assert got == ids


def test_unacked_task_returns_after_visibility_timeout(make_queue) -> None:
    q = make_queue(visibility_timeout=0.3)
    task_id = q.enqueue(b"work")
    first = q.dequeue(timeout=1.0)
    assert first is not None and first.id == task_id
    assert q.requeue_expired() == 0  # lease still valid
    time.sleep(0.45)
    assert q.requeue_expired() == 1
    again = q.dequeue(timeout=1.0)
    assert again is not None and again.id == task_id and again.attempts == 2
    assert q.ack(again) is True
    assert q.depth() == 0 and q.inflight() == 0


def test_late_ack_after_requeue_prevents_second_delivery(make_queue) -> None:
    q = make_queue(visibility_timeout=0.2)
    q.enqueue(b"slow")
    task = q.dequeue(timeout=1.0)
    time.sleep(0.3)
    assert q.requeue_expired() == 1
    held = q.ack(task)  # the work is recorded done either way
    if q.engine.name == "list":
        assert held is False  # its lease had expired and it was back in ready
    assert q.dequeue(timeout=0.05) is None  # and it is not delivered a second time


def test_nack_redelivers_immediately(make_queue) -> None:
    q = make_queue()
    q.enqueue(b"a")
    task = q.dequeue(timeout=1.0)
    assert q.nack(task) is True
    again = q.dequeue(timeout=1.0)
    assert again is not None and again.id == task.id and again.attempts == 2
    q.ack(again)


def test_retried_enqueue_is_idempotent(make_queue) -> None:
    q = make_queue()
    task_id = q.new_id()
    for _ in range(3):  # a client retrying after a timeout sends the same id
        assert q.enqueue(b"once", task_id=task_id) == task_id
    q.enqueue_many([b"once"], task_ids=[task_id])
    assert q.depth() == 1
    custom = "order-42"
    q.enqueue(b"x", task_id=custom)
    q.enqueue(b"x", task_id=custom)
    assert q.depth() == 2


def test_batches(make_queue) -> None:
    q = make_queue()
    ids = q.enqueue_many([b"p%d" % i for i in range(100)])
    assert len(set(ids)) == 100 and q.depth() == 100
    seen: set[str] = set()
    for _ in range(100):  # bounded
        batch = q.dequeue_many(30, timeout=0.1)
        if not batch:
            break
        seen.update(t.id for t in batch)
        for t in batch:
            q.ack(t)
    assert seen == set(ids)


def test_blocking_dequeue_wakes_on_enqueue(make_queue) -> None:
    q = make_queue()
    producer = make_queue(name=q.settings.name)
    timer = threading.Timer(0.2, lambda: producer.enqueue(b"late"))
    timer.start()
    try:
        task = q.dequeue(timeout=3.0)
    finally:
        timer.join()
    assert task is not None and task.payload == b"late"


def test_purge_and_counts(make_queue) -> None:
    q = make_queue()
    q.enqueue_many([b"x"] * 10)
    q.dequeue()
    assert (q.depth(), q.inflight()) == (9, 1)
    assert q.purge() > 0
    assert (q.depth(), q.inflight()) == (0, 0)


def test_effective_pool_size_is_what_was_asked(make_queue) -> None:
    q = make_queue(pool_size=7)
    described = q.describe()
    assert described["pool_size"] == 7
    assert described["pool_class"] == "ConnectionPool"
    if described["backend"] == "cluster":
        assert set(described["pool_size_per_node"].values()) == {7}
        assert len(described["pool_size_per_node"]) == 6
    blocking = make_queue(pool_size=3, pool_blocking=True).describe()
    assert (blocking["pool_size"], blocking["pool_class"]) == (3, "BlockingConnectionPool")
    assert described["server_version"]


def _pool_for(q: TaskQueue):
    if isinstance(q.client, RedisCluster):
        key = q.keys_of(0).ready
        return q.client.get_node_from_key(key).redis_connection.connection_pool
    return q.client.connection_pool


def test_non_blocking_pool_exhaustion_raises(make_queue) -> None:
    q = make_queue(pool_size=1, partitions=1)
    q.enqueue(b"warm")
    pool = _pool_for(q)
    held = pool.get_connection()
    try:
        with pytest.raises(PoolExhausted) as info:
            q.enqueue(b"x")
        assert info.value.kind == "pool_exhausted" and info.value.cause is not None
    finally:
        pool.release(held)
    q.enqueue(b"after")


def test_blocking_pool_waits_for_a_connection(make_queue) -> None:
    q = make_queue(pool_size=1, partitions=1, pool_blocking=True, pool_timeout=3.0)
    q.enqueue(b"warm")
    pool = _pool_for(q)
    held = pool.get_connection()
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.3)
        released.set()
        pool.release(held)

    thread = threading.Thread(target=release_later)
    thread.start()
    q.enqueue(b"waited")  # blocks until the connection comes back instead of failing
    assert released.is_set()
    thread.join()
    short = make_queue(name=q.settings.name, pool_size=1, partitions=1, pool_blocking=True, pool_timeout=0.2)
    short.enqueue(b"warm")
    pool = _pool_for(short)
    held = pool.get_connection()
    try:
        with pytest.raises(PoolExhausted):
            short.enqueue(b"x")
    finally:
        pool.release(held)


def test_cluster_partitions_cover_every_master(cluster) -> None:
    q = TaskQueue(cluster_nodes=cluster.nodes, name="spread")
    try:
        masters = {n.address for n in cluster.topology() if n.is_master}
        assert len(masters) == 3
        assert set(q.partition_masters().values()) == masters
        assert q.partitions >= 3
        ids = q.enqueue_many([b"x"] * 30)
        assert {q.partition_for(i) for i in ids} == set(range(q.partitions))  # round-robin
    finally:
        q.purge()
        q.close()


def test_oom_surfaces_as_queue_full_and_consumers_still_drain(standalone, engine: str) -> None:
    q = TaskQueue(standalone.url, name=f"oom-{engine}", engine=engine)
    with standalone.server.client() as r:
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", used + 2 * 1024 * 1024)
        try:
            stored = 0
            with pytest.raises(QueueFull) as info:
                for _ in range(1000):  # 1000 x 10 KB would exceed the 2 MB headroom
                    q.enqueue(b"x" * 10_000)
                    stored += 1
            assert info.value.kind == "oom" and isinstance(info.value.cause, OutOfMemoryError)
            assert stored > 0 and q.depth() == stored  # nothing half-written
            task = q.dequeue(timeout=1.0)  # consumers keep draining at the limit
            assert task is not None and q.ack(task)
        finally:
            r.config_set("maxmemory", 0)
            q.purge()
            q.close()


def test_at_oom_raw_lmove_is_refused_while_both_engines_drain(standalone) -> None:
    """Why the consumer scripts are allow-oom: at maxmemory under noeviction a plain LMOVE (the
    classic reliable-queue pop) is refused, XREADGROUP is not, and both TaskQueue engines drain."""
    from redis.exceptions import OutOfMemoryError

    queues = {e: TaskQueue(standalone.url, name=f"drain-{e}", engine=e) for e in ("list", "stream")}
    with standalone.server.client() as r:
        r.rpush("raw:{oom}:src", *[b"x"] * 10)
        r.xgroup_create("raw:{oom}:stream", "g", id="0", mkstream=True)
        r.xadd("raw:{oom}:stream", {"f": "v"})
        for q in queues.values():
            q.enqueue(b"task")
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", 1)  # every write that may grow memory is now refused
        try:
            with pytest.raises(OutOfMemoryError):
                r.lmove("raw:{oom}:src", "raw:{oom}:dst", "RIGHT", "LEFT")
            assert r.xreadgroup("g", "c", {"raw:{oom}:stream": ">"}, count=1)
            for q in queues.values():
                with pytest.raises(QueueFull):
                    q.enqueue(b"more")
                task = q.dequeue(timeout=1.0)
                assert task is not None and q.ack(task), q.engine.name
        finally:
            r.config_set("maxmemory", 0)
            r.delete("raw:{oom}:src", "raw:{oom}:dst", "raw:{oom}:stream")
            for q in queues.values():
                q.purge()
                q.close()

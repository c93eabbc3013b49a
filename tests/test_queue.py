"""TaskQueue behaviour on a real standalone server and a real 6-node cluster."""

from __future__ import annotations

import array
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_until
from redis.backoff import ConstantBackoff
from redis.cluster import RedisCluster
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bench.audit import outcome_of
from bench.backends import ClusterBackend
from bench.ports import free_port
from bench.servers import RedisServer, find_server_bin
from taskqueue import PoolExhausted, QueueFull, QueueSettings, QueueUnavailable, TaskQueue, TaskQueueError
from taskqueue.codec import IdFactory, decode_record
from taskqueue.connection import CALL, CallScope, DeadlineBackoff, DeadlineRetry
from taskqueue.errors import AMBIGUOUS_KINDS, DeadlineExceeded, PayloadTooLarge
from taskqueue.task import partition_of

pytestmark = pytest.mark.client  # make test-latest runs this file under the newest redis-py too


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
    q = make_queue(visibility_timeout=0.5)
    task_id = q.enqueue(b"work")
    leased_at = time.monotonic()
    first = q.dequeue(timeout=1.0)
    assert first is not None and first.id == task_id
    # never earlier than the lease (server clock): a lease that expires early fails here on any machine
    assert q.requeue_expired() == 0 or time.monotonic() - leased_at >= 0.5
    wait_until(lambda: q.requeue_expired() == 1, 5.0, "the expired lease to be requeued")
    assert time.monotonic() - leased_at >= 0.5 - 0.01  # 10 ms: server TIME vs client monotonic clock
    again = q.dequeue(timeout=1.0)
    assert again is not None and again.id == task_id and again.attempts == 2
    assert q.ack(again) is True
    assert q.depth() == 0 and q.inflight() == 0


def test_late_ack_after_requeue_prevents_second_delivery(make_queue) -> None:
    q = make_queue(visibility_timeout=0.2)
    q.enqueue(b"slow")
    task = q.dequeue(timeout=1.0)
    assert task is not None
    wait_until(lambda: q.requeue_expired() == 1, 5.0, "the expired lease to be requeued")
    held = q.ack(task)  # the work is recorded done either way
    # list: the lease was taken back into ready, so the ack no longer held it; stream: an expired entry stays
    # pending until the next dequeue's XAUTOCLAIM, so the late ack still holds (and XACKs) it
    assert held is (q.engine.name == "stream")
    assert q.dequeue(timeout=0.05) is None  # and it is not delivered a second time
    assert q.depth() == 0 and q.inflight() == 0


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


def _stored(q: TaskQueue, p: int) -> tuple[list[str], dict[str, bytes]]:
    """Partition ``p`` read raw: the ids waiting, oldest first, and the payload stored for each id."""
    k, client = q.keys_of(p), q.client
    replies: Any  # bytes replies (no decode_responses); redis-py types them loosely
    records: Any
    if q.engine.name == "list":
        replies = client.lrange(k.ready, 0, -1)
        waiting = [i.decode() for i in reversed(replies)]
        records = client.hgetall(k.tasks)
    else:
        replies = client.xrange(k.stream)
        waiting = [fields[b"id"].decode() for _, fields in replies]
        records = {fields[b"id"]: fields[b"r"] for _, fields in replies}
        replies = client.hkeys(k.ids)
        assert {i.decode() for i in replies} == set(waiting)
    return waiting, {i.decode(): decode_record(r)[1] for i, r in records.items()}


def test_enqueue_many_with_repeated_and_known_ids_stores_each_task_once_on_its_partition(make_queue) -> None:
    """One script call per partition: ids already stored keep their first record, a repeat within the batch is
    skipped (first copy wins), every new task gets its record and one place in its partition, in batch order."""
    q = make_queue()
    expected: dict[int, tuple[list[str], dict[str, bytes]]] = {p: ([], {}) for p in range(q.partitions)}

    def enqueue(ids: list[str] | None, payloads: list[bytes]) -> None:
        given = ids
        ids = q.enqueue_many(payloads, task_ids=given)
        assert len(ids) == len(payloads) and (given is None or ids == given)
        for task_id, payload in zip(ids, payloads, strict=True):
            waiting, records = expected[q.partition_for(task_id)]
            if task_id not in records:
                waiting.append(task_id)
                records[task_id] = payload
        for p in range(q.partitions):
            assert _stored(q, p) == expected[p], p

    known = [f"known-{i}" for i in range(5)] + [q.new_id() for _ in range(5)]
    enqueue([*known, *known[:4]], [b"first-%d" % i for i in range(14)])  # repeats, nothing stored yet
    fresh = [q.new_id() for _ in range(80)] + [f"order-{i}" for i in range(10)]
    ids = fresh[:40] + known[:5] + fresh[40:] + fresh[:3] + known[5:7]  # 100 ids, 90 of them new
    enqueue(ids, [b"p-%d" % i for i in range(len(ids))])
    assert q.depth() == 100
    enqueue(None, [b"generated-%d" % i for i in range(31)])  # generated ids: one partition, picked by counters
    assert q.depth() == 131


def test_enqueue_many_of_generated_ids_sticks_to_one_partition_per_batch(make_queue) -> None:
    """A batch of generated ids lands in ONE partition (one script call on one node), consecutive batches rotate
    over every partition, single enqueues in between still go round-robin, every id is new; caller-given ids go
    to their own partitions."""
    q = make_queue(partitions=3)
    expected: dict[int, list[str]] = {p: [] for p in range(3)}
    batch_partitions = []
    for size in (7, 1, 30, 5, 12, 2):
        ids = q.enqueue_many([b"b"] * size)
        parts = {q.partition_for(i) for i in ids}
        assert len(ids) == size and len(parts) == 1, parts
        batch_partitions.append(parts.pop())
        expected[batch_partitions[-1]].extend(ids)
        singles = [q.enqueue(b"s") for _ in range(3)]
        assert {q.partition_for(i) for i in singles} == {0, 1, 2}  # round-robin
        for task_id in singles:
            expected[q.partition_for(task_id)].append(task_id)
    assert batch_partitions == [0, 1, 2, 0, 1, 2]
    given = [f"order-{i}" for i in range(40)]
    q.enqueue_many([b"g"] * len(given), task_ids=given)
    for task_id in given:
        expected[q.partition_for(task_id)].append(task_id)
    assert len({q.partition_for(i) for i in given}) == 3
    every = [i for ids in expected.values() for i in ids]
    assert len(every) == len(set(every)) == q.depth() == 57 + 18 + 40
    for p in range(3):
        assert _stored(q, p)[0] == expected[p], p


def test_generated_ids_stay_unique_across_threads_and_interleaved_calls() -> None:
    """Sticky batches skip the counters of other partitions; no counter is ever handed out twice, and the ids the
    factory returns are the ones its counters spell."""
    factory = IdFactory("pre")
    ids, first, partition = factory.sticky(4, 3)
    assert (ids, first, partition) == (["pre-3", "pre-6", "pre-9", "pre-c"], 3, 0)
    assert factory() == "pre-d" and factory.sticky(2, 3) == (["pre-10", "pre-13"], 16, 1)
    assert factory.sticky(1, 3) == (["pre-14"], 20, 2) and factory.sticky(2, 1)[0] == ["pre-15", "pre-16"]
    assert [partition_of(i, 5) for i in factory.sticky(50, 5)[0]] == [4] * 50  # 5th batch: 4 % 5

    got: list[list[str]] = []

    def produce(k: int) -> None:
        mine = []
        for n in range(300):
            mine.extend(factory.sticky(n % 7 + 1, 4)[0] if (n + k) % 2 else [factory()])
        got.append(mine)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in got for i in ids]
    assert len(every) == len(set(every)) > 4 * 300


def test_enqueue_many_of_more_tasks_than_one_script_chunk(make_queue) -> None:
    """The script works in chunks (Lua's unpack() takes at most 8000 values): repeats across a chunk boundary
    and in one chunk are still stored once, in batch order."""
    q = make_queue(partitions=1)
    ids = [f"t-{i}" for i in range(4500)]
    ids[1000] = ids[999]  # across the boundary of the first chunk (1000 tasks)
    ids[3001] = ids[10]
    ids[4499] = ids[4498]
    q.enqueue_many([b"x"] * len(ids), task_ids=ids)
    unique = list(dict.fromkeys(ids))
    assert q.depth() == len(unique) == 4497
    waiting, records = _stored(q, 0)
    assert waiting == unique and set(records) == set(unique)


def test_enqueue_many_checks_the_ids_and_stores_nothing_at_oom(make_queue, standalone) -> None:
    q = make_queue(partitions=1)
    with pytest.raises(ValueError, match="2 task_ids for 3 payloads"):
        q.enqueue_many([b"a", b"b", b"c"], task_ids=["x", "y"])
    assert q.enqueue_many([]) == []
    if q.is_cluster:
        return
    with standalone.server.client() as r:
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", 1)  # every write that may grow memory is now refused
        try:
            with pytest.raises(QueueFull) as info:
                q.enqueue_many([b"x"] * 10)
            assert info.value.kind == "oom" and outcome_of(info.value.kind) == "rejected"
        finally:
            r.config_set("maxmemory", 0)
    assert q.depth() == 0


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
        ids = [i for _ in range(q.partitions) for i in q.enqueue_many([b"x"] * 30)]  # a partition per batch
        assert {q.partition_for(i) for i in ids} == set(range(q.partitions))  # batches rotate
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


# -- client guards: payload type and size, checked before anything is sent ----------------------

OFFLINE = "redis://127.0.0.1:1/0"  # nothing listens: anything sent would fail as connection_refused


@pytest.mark.parametrize(
    ("payload", "type_name"),
    [("text", "str"), (42, "int"), (None, "NoneType"), ([1, 2], "list"), ({"a": 1}, "dict"), (1.5, "float")],
)
def test_non_bytes_payload_is_a_type_error_before_sending(payload: Any, type_name: str) -> None:
    q = TaskQueue(OFFLINE, name="guards")
    try:
        with pytest.raises(TypeError, match=f"^payload must be bytes, got {type_name}: encode it first, e.g. "):
            q.enqueue(payload)
        with pytest.raises(TypeError, match=f"^payloads\\[1\\] must be bytes, got {type_name}: encode it first"):
            q.enqueue_many([b"fine", payload, b"fine"])
    finally:
        q.close()


def test_type_error_messages_are_exact() -> None:
    q = TaskQueue(OFFLINE, name="guards")
    with pytest.raises(TypeError) as info:
        q.enqueue("hello")  # type: ignore[arg-type]
    assert str(info.value) == "payload must be bytes, got str: encode it first, e.g. payload.encode()"
    with pytest.raises(TypeError) as info:
        q.enqueue_many(["a"])  # type: ignore[list-item]
    assert str(info.value) == "payloads[0] must be bytes, got str: encode it first, e.g. payloads[0].encode()"
    for one in (b"abc", bytearray(b"abc"), memoryview(b"abc"), "abc"):  # one payload where a list belongs
        with pytest.raises(TypeError, match="payloads must be a sequence of payloads, got one"):
            q.enqueue_many(one)  # type: ignore[arg-type]
    q.close()


def test_payload_over_the_limit_is_rejected_before_sending() -> None:
    q = TaskQueue(OFFLINE, name="guards", max_payload_bytes=10)
    try:
        with pytest.raises(PayloadTooLarge) as info:
            q.enqueue(b"x" * 11)
        err = info.value
        assert isinstance(err, TaskQueueError) and isinstance(err, ValueError)
        assert err.kind == "payload_too_large" and err.kind not in AMBIGUOUS_KINDS
        assert outcome_of(err.kind) == "rejected"  # the Locust harness counts it as refused
        message = str(err)
        assert message.startswith("payload_too_large: payload is 11 bytes, over max_payload_bytes=10 ")
        assert "max_payload_bytes=N" in message  # how to raise it
        for big in (bytearray(11), memoryview(b"x" * 11), memoryview(array.array("i", [0, 0, 0])).cast("B")):
            with pytest.raises(PayloadTooLarge):
                q.enqueue(big)
        # 3 ints are 12 bytes though len() says 3: the size counted is bytes, not items.
        with pytest.raises(PayloadTooLarge, match="12 bytes"):
            q.enqueue(memoryview(array.array("i", [0, 0, 0])))
        with pytest.raises(PayloadTooLarge, match=r"payloads\[2\] is 11 bytes"):
            q.enqueue_many([b"ok", b"x" * 10, b"x" * 11])
        # At the limit, the check passes and the call goes on to the (absent) server.
        with pytest.raises(QueueUnavailable, match="connection_refused"):
            q.enqueue(b"x" * 10)
    finally:
        q.close()


def test_default_payload_limit_is_64_mib() -> None:
    q = TaskQueue(OFFLINE, name="guards")
    assert q.settings.max_payload_bytes == 64 * 2**20
    with pytest.raises(PayloadTooLarge, match="over max_payload_bytes=67,108,864 \\(64 MiB\\)"):
        q.enqueue(bytes(64 * 2**20 + 1))
    q.close()
    configured = TaskQueue(OFFLINE, settings=QueueSettings(name="guards", max_payload_bytes=5))
    with pytest.raises(PayloadTooLarge):
        configured.enqueue(b"123456")
    configured.close()


def test_bytes_like_payloads_round_trip_and_oversized_batches_store_nothing(make_queue) -> None:
    q = make_queue(partitions=1, max_payload_bytes=16)
    strided = memoryview(b"a-b-c-d")[::2]  # not contiguous: copied before sending
    ints = memoryview(array.array("i", [1, 2]))  # 8 bytes, 2 items
    payloads = [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"), strided, ints, b"x" * 16]
    ids = [q.enqueue(p) for p in payloads]
    with pytest.raises(PayloadTooLarge):
        q.enqueue_many([b"small", b"x" * 17])  # one too large: none of the batch is stored
    assert q.depth() == len(payloads)
    got = []
    for _ in payloads:
        task = q.dequeue(timeout=1.0)
        assert task is not None and q.ack(task)
        got.append((task.id, task.payload))
    expected = [b"bytes", b"bytearray", b"memoryview", b"abcd", ints.tobytes(), b"x" * 16]
    assert got == list(zip(ids, expected, strict=True))
    assert all(type(payload) is bytes for _, payload in got)
    described = q.describe()
    assert (described["max_payload_bytes"], described["operation_timeout_s"]) == (16, None)


# -- operation deadline ------------------------------------------------------------------------------


def test_operation_timeout_leaves_a_healthy_queue_working(make_queue) -> None:
    q = make_queue(operation_timeout=2.0, pool_blocking=True)
    ids = [*q.enqueue_many([b"a", b"b"]), q.enqueue(b"c")]
    assert q.depth() == 3
    got = set()
    for _ in range(3):
        task = q.dequeue(timeout=0.5)
        assert task is not None and q.ack(task)
        got.add(task.id)
    assert got == set(ids) and q.dequeue(timeout=0.2) is None
    described = q.describe()
    assert described["operation_timeout_s"] == 2.0 and described["pool_blocking"] is True
    assert described["pool_class"] == "BlockingConnectionPool"
    with pytest.raises(ValueError, match="below operation_timeout"):
        q.dequeue(timeout=2.0)


def test_raw_client_calls_get_the_full_socket_timeout_back(standalone) -> None:
    """A bounded call caps the socket timeout of the connection it used; a raw call on the same
    client (the harness's RawLpushUser) runs with no deadline and gets socket_timeout again."""
    q = TaskQueue(standalone.url, name=f"t-{uuid.uuid4().hex[:8]}", operation_timeout=1.0, pool_size=1)
    try:
        q.enqueue(b"x")
        assert isinstance(q.client, redis.Redis)
        pool = q.client.connection_pool
        conn = pool.get_connection()
        try:
            assert conn._sock is not None and 0 < conn._sock.gettimeout() <= 1.0
        finally:
            pool.release(conn)
        assert q.client.ping()
        conn = pool.get_connection()
        try:
            assert conn._sock is not None and conn._sock.gettimeout() == q.settings.socket_timeout
        finally:
            pool.release(conn)
    finally:
        q.purge()
        q.close()


def test_deadline_retry_stops_at_the_deadline() -> None:
    """Without the deadline check, redis-py's Retry would make all 50 attempts (>= 5 s)."""
    retry = DeadlineRetry(ConstantBackoff(0.1), 50)
    attempts: list[float] = []

    def attempt() -> None:
        attempts.append(time.monotonic())
        raise RedisTimeoutError("Timeout reading from socket")

    token = CALL.set(CallScope(time.monotonic() + 0.35, 0.35))
    started = time.monotonic()
    try:
        with pytest.raises(RedisTimeoutError):
            retry.call_with_retry(attempt, lambda _error: None)
    finally:
        CALL.reset(token)
    assert time.monotonic() - started < 0.35 + 0.15
    assert 3 <= len(attempts) <= 5
    # A DeadlineExceeded ends the retries at once; outside a bounded call it is plain Retry.
    calls: list[int] = []

    def expired() -> None:
        calls.append(1)
        raise DeadlineExceeded("operation_timeout=1s ran out before sending")

    token = CALL.set(CallScope(time.monotonic() + 10, 10.0))
    try:
        with pytest.raises(DeadlineExceeded):
            retry.call_with_retry(expired, lambda _error: None)
    finally:
        CALL.reset(token)
    assert len(calls) == 1
    unbounded = DeadlineRetry(ConstantBackoff(0), 3)
    with pytest.raises(RedisTimeoutError):
        unbounded.call_with_retry(attempt, lambda _error: None)
    assert len(attempts) >= 3 + 4


def test_deadline_backoff_never_sleeps_past_the_deadline() -> None:
    """redis-py 8.2's cluster client sleeps ``retry._backoff.compute(n)`` itself, outside Retry: the
    backoff is what must stop at the deadline."""
    backoff = DeadlineBackoff(ConstantBackoff(0.5))
    assert backoff.compute(1) == 0.5  # outside a call: the backoff as configured
    token = CALL.set(CallScope(time.monotonic() + 0.2, 0.2))
    try:
        assert 0.1 < backoff.compute(1) <= 0.2
        CALL.set(CallScope(time.monotonic() - 1, 0.2))
        assert backoff.compute(1) == 0.0
    finally:
        CALL.reset(token)


def test_without_operation_timeout_the_client_is_plain_redis_py(standalone) -> None:
    """No deadline parts: redis-py's own Retry and backoff; the connection class is redis-py's,
    with only the mixin that notes a lost reply (see test_sent.py)."""
    q = TaskQueue(standalone.url, name="plain")
    try:
        assert isinstance(q.client, redis.Redis)
        connection_class = q.client.connection_pool.connection_class
        assert connection_class.__mro__[2] is redis.Connection and issubclass(connection_class, redis.Connection)
        retry = q.client.connection_pool.connection_kwargs["retry"]
        assert type(retry).__name__ == "Retry" and type(retry._backoff).__name__ == "ExponentialWithJitterBackoff"
    finally:
        q.close()


@pytest.fixture
def stoppable_server() -> Iterator[RedisServer]:
    """A standalone server of its own, for SIGSTOP: always continued and stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="tq-stop-") as folder:
        server = RedisServer(find_server_bin(), free_port(start=26800), Path(folder))
        try:
            server.start()
            yield server
        finally:
            server.signal(signal.SIGCONT)
            server.stop()


OPERATION_TIMEOUT = 1.0
SLACK_S = 1.0  # a behaviour bound (the call ends near its deadline), not a performance target
STOPPED_CALLS: dict[str, Callable[[TaskQueue], Any]] = {
    "enqueue": lambda q: q.enqueue(b"x"),
    "enqueue_many": lambda q: q.enqueue_many([b"x"] * 5),
    "dequeue": lambda q: q.dequeue(timeout=0.5),
    "depth": lambda q: q.depth(),
    "describe": lambda q: q.describe(),
}


def _time_stopped_call(server: RedisServer, q: TaskQueue, call: Callable[[TaskQueue], Any]) -> tuple[float, Any]:
    server.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(QueueUnavailable) as info:
            call(q)
        return time.monotonic() - started, info.value
    finally:
        server.signal(signal.SIGCONT)


@pytest.mark.parametrize("warm", [True, False], ids=["pooled-connection", "new-connection"])
@pytest.mark.parametrize("method", sorted(STOPPED_CALLS))
def test_operation_timeout_bounds_a_call_on_a_stopped_server(
    stoppable_server: RedisServer, method: str, warm: bool
) -> None:
    """SIGSTOP: the kernel still accepts connections and buffers the request, nothing answers.
    Without operation_timeout this costs socket_timeout x (retries + 1) = 20 s (see README)."""
    url = f"redis://127.0.0.1:{stoppable_server.port}/0"
    q = TaskQueue(url, name=f"t-{uuid.uuid4().hex[:8]}", operation_timeout=OPERATION_TIMEOUT)
    try:
        if warm:
            q.enqueue(b"warm")
        elapsed, err = _time_stopped_call(stoppable_server, q, STOPPED_CALLS[method])
        assert err.kind == "timeout", err
        assert elapsed < OPERATION_TIMEOUT + SLACK_S, f"{method} took {elapsed:.2f}s"
        assert f"operation_timeout={OPERATION_TIMEOUT:g}s" in str(err)
        if method.startswith("enqueue"):
            assert outcome_of(err.kind) == "ambiguous"
        # Continued, the server answers again on the same queue object, and the queue holds what it should: the
        # warm task, plus the timed-out enqueue's tasks if the server read them after SIGCONT (ambiguous), minus the
        # warm task if the timed-out dequeue leased it
        base = 1 if warm else 0
        possible = {
            "enqueue": {base, base + 1},
            "enqueue_many": {base, base + 5},
            "dequeue": {base, max(base - 1, 0)},
        }.get(method, {base})
        assert q.depth() in possible, (method, warm)
    finally:
        q.close()


def test_operation_timeout_bounds_the_constructor(stoppable_server: RedisServer) -> None:
    """The stream engine creates its consumer groups in the constructor: bounded too."""
    url = f"redis://127.0.0.1:{stoppable_server.port}/0"
    make = lambda: TaskQueue(url, name="ctor", engine="stream", operation_timeout=OPERATION_TIMEOUT)  # noqa: E731
    elapsed, err = _time_stopped_call(stoppable_server, None, lambda _q: make())  # type: ignore[arg-type]
    assert err.kind == "timeout" and elapsed < OPERATION_TIMEOUT + SLACK_S


def test_operation_timeout_bounds_the_cluster_constructor(stoppable_cluster: ClusterBackend) -> None:
    """RedisCluster maps the cluster in its constructor, asking the startup nodes in order: the
    first one stopped costs socket_timeout (5 s) without a deadline, and the deadline bounds it."""
    stopped, *others = stoppable_cluster.servers
    nodes = [stopped.address, *(s.address for s in others)]
    stopped.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(QueueUnavailable) as info:
            TaskQueue(cluster_nodes=nodes, name="cctor", operation_timeout=OPERATION_TIMEOUT)
        elapsed = time.monotonic() - started
    finally:
        stopped.signal(signal.SIGCONT)
    assert info.value.kind == "timeout" and elapsed < OPERATION_TIMEOUT + SLACK_S, f"{elapsed:.2f}s"
    TaskQueue(cluster_nodes=nodes, name="cctor", operation_timeout=OPERATION_TIMEOUT).close()  # continued: fine


def test_operation_timeout_bounds_a_call_on_a_stopped_cluster_master(stoppable_cluster: ClusterBackend) -> None:
    """On a cluster the client refreshes its slot map after a timeout; with the deadline gone that
    refresh fails too, and the error is still kind timeout (not cluster_unreachable)."""
    q = TaskQueue(cluster_nodes=stoppable_cluster.nodes, name="cstop", operation_timeout=OPERATION_TIMEOUT)
    try:
        q.enqueue(b"warm")
        master = q.partition_masters()[0]
        server = next(s for s in stoppable_cluster.servers if s.address == master)
        on_partition_0 = f"{q.new_id().rpartition('-')[0]}-{q.partitions:x}"  # counter % partitions == 0
        assert q.partition_for(on_partition_0) == 0
        elapsed, err = _time_stopped_call(server, q, lambda q: q.enqueue(b"x", task_id=on_partition_0))
        assert (err.kind, outcome_of(err.kind)) == ("timeout", "ambiguous"), err
        assert elapsed < OPERATION_TIMEOUT + SLACK_S, f"took {elapsed:.2f}s"
        q.enqueue(b"after", task_id=on_partition_0)  # continued: served again, same id deduplicated
    finally:
        q.purge()
        q.close()


def test_operation_timeout_bounds_connecting() -> None:
    """A listener whose accept queue is full drops new SYNs: connect() hangs (socket_connect_timeout
    2 s per attempt, 4 attempts, without a deadline). The deadline caps the connect too."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # accept queue of one, never accepted
        filler.connect(listener.getsockname())
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        q = TaskQueue(url, name="blackhole", operation_timeout=OPERATION_TIMEOUT)
        started = time.monotonic()
        with pytest.raises(QueueUnavailable) as info:
            q.enqueue(b"x")
        elapsed = time.monotonic() - started
        assert info.value.kind == "timeout" and elapsed < OPERATION_TIMEOUT + SLACK_S, f"{elapsed:.2f}s"
        q.close()
    finally:
        filler.close()
        listener.close()


def test_operation_timeout_bounds_the_wait_for_a_pooled_connection(standalone) -> None:
    q = TaskQueue(
        standalone.url, name="poolwait", pool_size=1, pool_blocking=True, pool_timeout=10.0, operation_timeout=0.5
    )
    try:
        q.enqueue(b"warm")
        assert isinstance(q.client, redis.Redis)
        pool = q.client.connection_pool
        held = pool.get_connection()
        try:
            started = time.monotonic()
            with pytest.raises(PoolExhausted):  # nothing was sent: a rejection, not a timeout
                q.enqueue(b"x")
            assert time.monotonic() - started < 0.5 + SLACK_S
        finally:
            pool.release(held)
        assert getattr(pool, "timeout", None) == 10.0  # outside a call the configured pool_timeout is back
    finally:
        q.purge()
        q.close()


def test_cluster_layout_is_the_same_whatever_the_queue_name(cluster) -> None:
    masters = sorted((n for n in cluster.topology() if n.is_master), key=lambda n: min(lo for lo, _ in n.slots))
    layouts = []
    for name in ("cell0", "cell1", "cell2", "cell3", "cell4", "cell5"):
        with TaskQueue(cluster_nodes=cluster.nodes, name=name) as q:
            layouts.append(q.partition_masters())
        with TaskQueue(cluster_nodes=cluster.nodes, name=name, partitions=5) as q:  # explicit: kept, round-robin
            assert q.partitions == 5
            assert list(q.partition_masters().values()) == [masters[p % 3].address for p in range(5)]
    assert layouts == [{p: m.address for p, m in enumerate(masters)}] * 6

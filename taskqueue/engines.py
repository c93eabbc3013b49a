"""Queue engines: how tasks are laid out in Redis. Same API, hash tags and guarantees for both.

- ``list``: a ready LIST of ids, records in a HASH, leases in a ZSET (deadline = visibility
  timeout, returned to ready by ``requeue_expired``).
- ``stream``: one STREAM per partition with a consumer group: XADD / XREADGROUP / XACK, and
  XAUTOCLAIM of idle pending entries as the visibility timeout.

An engine (the :class:`Engine` Protocol) turns queue operations into script calls or commands; the
TaskQueue around it owns the client, partitions, ids and error translation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from redis import exceptions as rex
from redis.commands.core import Script

from . import scripts
from .codec import decode_record
from .errors import TaskQueueError
from .keys import STREAM_GROUP
from .task import Task

if TYPE_CHECKING:
    from .queue import TaskQueue

ENGINES = ("list", "stream")


class Engine(Protocol):
    """What a TaskQueue asks of its engine. ``p`` is a partition; pipelines get commands added, whose
    replies (per partition, in order) ``count`` turns into a number of tasks."""

    name: str
    enqueue_script: Script  # KEYS = enqueue_keys(p); ARGV = task id, record
    enqueue_many_script: Script  # KEYS = enqueue_keys(p); ARGV = id, record, id, record, …

    def prepare(self) -> None: ...  # once, after connecting (e.g. create consumer groups)
    def enqueue_keys(self, p: int) -> list[str]: ...
    def lease(self, p: int, count: int) -> list[Task]: ...  # up to count tasks, without waiting
    def wait(self, p: int, count: int, seconds: float) -> list[Task]: ...  # block until ready; may lease
    def ack(self, task: Task) -> bool: ...
    def nack(self, task: Task) -> bool: ...
    def requeue_expired(self, p: int, limit: int) -> int: ...
    def depth_commands(self, pipe: Any, p: int) -> None: ...
    def inflight_commands(self, pipe: Any, p: int) -> None: ...
    def count(self, results: list[Any]) -> int: ...


class ListEngine:
    name = "list"

    def __init__(self, queue: TaskQueue) -> None:
        self.q = queue
        register = queue.client.register_script
        self.enqueue_script = register(scripts.ENQUEUE)
        self.enqueue_many_script = register(scripts.ENQUEUE_MANY)
        self._dequeue = register(scripts.DEQUEUE)
        self._ack = register(scripts.ACK)
        self._nack = register(scripts.NACK)
        self._requeue = register(scripts.REQUEUE_EXPIRED)

    def enqueue_keys(self, p: int) -> list[str]:
        k = self.q.keys_of(p)
        return [k.ready, k.tasks]

    def lease(self, p: int, count: int) -> list[Task]:
        k = self.q.keys_of(p)
        flat = self.q.call(
            self._dequeue, k.ready, k.inflight, k.tasks, k.attempts, self.q.lease_ms, count, numkeys=4, partition=p
        )
        tasks = []
        for i in range(0, len(flat), 3):
            enqueued_at, payload = decode_record(flat[i + 1])
            tasks.append(Task(flat[i].decode(), payload, enqueued_at, int(flat[i + 2]), p))
        return tasks

    def wait(self, p: int, count: int, seconds: float) -> list[Task]:
        # BLMOVE from a list onto its own tail moves nothing but blocks until the list has an
        # element: an event-driven wait, after which the next lease is one EVALSHA.
        ready = self.q.keys_of(p).ready
        self.q.command("BLMOVE", ready, ready, "RIGHT", "RIGHT", seconds, partition=p)
        return []

    def ack(self, task: Task) -> bool:
        k = self.q.keys_of(task.partition)
        return bool(
            self.q.call(self._ack, k.inflight, k.tasks, k.attempts, task.id, numkeys=3, partition=task.partition)
        )

    def nack(self, task: Task) -> bool:
        k = self.q.keys_of(task.partition)
        return bool(self.q.call(self._nack, k.ready, k.inflight, task.id, numkeys=2, partition=task.partition))

    def requeue_expired(self, p: int, limit: int) -> int:
        k = self.q.keys_of(p)
        return int(self.q.call(self._requeue, k.ready, k.inflight, limit, numkeys=2, partition=p))

    def depth_commands(self, pipe: Any, p: int) -> None:
        pipe.llen(self.q.keys_of(p).ready)

    def inflight_commands(self, pipe: Any, p: int) -> None:
        pipe.zcard(self.q.keys_of(p).inflight)

    def count(self, results: list[Any]) -> int:
        return int(results[0])

    def prepare(self) -> None:
        pass


class StreamEngine:
    name = "stream"

    def __init__(self, queue: TaskQueue) -> None:
        self.q = queue
        register = queue.client.register_script
        self.enqueue_script = register(scripts.STREAM_ENQUEUE)
        self.enqueue_many_script = register(scripts.STREAM_ENQUEUE_MANY)
        self._dequeue = register(scripts.STREAM_DEQUEUE)
        self._ack = register(scripts.STREAM_ACK)
        self._nack = register(scripts.STREAM_NACK)
        self.consumer = f"c-{queue.new_id()}"  # one consumer name per queue object (per process)

    def prepare(self) -> None:
        for p in range(self.q.partitions):
            self._create_group(p)

    def _create_group(self, p: int) -> None:
        try:
            self.q.command("XGROUP", "CREATE", self.q.keys_of(p).stream, STREAM_GROUP, "0", "MKSTREAM", partition=p)
        except TaskQueueError as exc:
            if not isinstance(exc.cause, rex.ResponseError) or "BUSYGROUP" not in str(exc.cause):
                raise

    def _retrying_nogroup(self, p: int, fn: Any) -> Any:
        """The group vanishes with its stream (flush, eviction): recreate it once and retry."""
        try:
            return fn()
        except TaskQueueError as exc:
            if "NOGROUP" not in str(exc.cause):
                raise
            self._create_group(p)
            return fn()

    def enqueue_keys(self, p: int) -> list[str]:
        k = self.q.keys_of(p)
        return [k.stream, k.ids]

    def lease(self, p: int, count: int) -> list[Task]:
        stream = self.q.keys_of(p).stream
        flat = self._retrying_nogroup(
            p,
            lambda: self.q.call(
                self._dequeue, stream, STREAM_GROUP, self.consumer, self.q.lease_ms, count, numkeys=1, partition=p
            ),
        )
        tasks = []
        for i in range(0, len(flat), 4):
            enqueued_at, payload = decode_record(flat[i + 2])
            tasks.append(Task(flat[i + 1].decode(), payload, enqueued_at, int(flat[i + 3]), p, flat[i].decode()))
        return tasks

    def wait(self, p: int, count: int, seconds: float) -> list[Task]:
        """A blocking XREADGROUP: it returns the entries themselves, so waiting is leasing."""
        stream = self.q.keys_of(p).stream
        block_ms = max(1, int(seconds * 1000))
        args = ("XREADGROUP", "GROUP", STREAM_GROUP, self.consumer, "COUNT", count, "BLOCK", block_ms)
        reply = self._retrying_nogroup(p, lambda: self.q.command(*args, "STREAMS", stream, ">", partition=p))
        tasks = []
        for _stream, entries in _stream_entries(reply):
            for entry_id, fields in entries:
                if not fields:
                    continue
                enqueued_at, payload = decode_record(fields[b"r"])
                eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                tasks.append(Task(fields[b"id"].decode(), payload, enqueued_at, 1, p, eid))
        return tasks

    def ack(self, task: Task) -> bool:
        k = self.q.keys_of(task.partition)
        return bool(
            self.q.call(
                self._ack, k.stream, k.ids, STREAM_GROUP, task.receipt, task.id, numkeys=2, partition=task.partition
            )
        )

    def nack(self, task: Task) -> bool:
        stream = self.q.keys_of(task.partition).stream
        idle = self.q.lease_ms + 1
        return bool(
            self.q.call(
                self._nack, stream, STREAM_GROUP, self.consumer, task.receipt, idle, numkeys=1, partition=task.partition
            )
        )

    def requeue_expired(self, p: int, limit: int) -> int:
        """Expired leases need no moving: the next dequeue's XAUTOCLAIM takes them. Counts them."""
        stream = self.q.keys_of(p).stream
        try:
            pending = self.q.guarded(
                lambda: self.q.client.xpending_range(stream, STREAM_GROUP, "-", "+", limit, idle=self.q.lease_ms),
                partition=p,
            )
        except TaskQueueError as exc:
            if "NOGROUP" in str(exc.cause):
                return 0
            raise
        return len(pending or [])

    def depth_commands(self, pipe: Any, p: int) -> None:
        # Acked entries are XDEL'd, so XLEN = waiting + pending; pending comes from XPENDING.
        stream = self.q.keys_of(p).stream
        pipe.execute_command("XLEN", stream)
        pipe.execute_command("XPENDING", stream, STREAM_GROUP)

    def inflight_commands(self, pipe: Any, p: int) -> None:
        pipe.execute_command("XPENDING", self.q.keys_of(p).stream, STREAM_GROUP)

    def count(self, results: list[Any]) -> int:
        if len(results) == 2:  # depth
            return int(results[0]) - _pending_count(results[1])
        return _pending_count(results[0])


def _pending_count(reply: Any) -> int:
    if isinstance(reply, Exception):  # NOGROUP: no group, nothing pending
        return 0
    if isinstance(reply, dict):
        return int(reply.get("pending", 0))
    if isinstance(reply, list | tuple) and reply:
        return int(reply[0])
    return 0


def _stream_entries(reply: Any) -> list[tuple[Any, list[tuple[Any, dict[bytes, bytes]]]]]:
    """XREADGROUP's reply as [(stream, [(entry id, fields dict)])], RESP2 list or RESP3 dict."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(item[0], item[1]) for item in reply]


def make_engine(name: str, queue: TaskQueue) -> Engine:
    if name == "list":
        return ListEngine(queue)
    if name == "stream":
        return StreamEngine(queue)
    raise ValueError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")

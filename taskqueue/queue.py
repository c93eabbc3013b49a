"""TaskQueue: an at-least-once task queue on Redis or Redis Cluster (the system under test)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import Any

from redis import exceptions as rex
from redis.cluster import RedisCluster

from .calls import bounded, call_scope, typed_error, typed_errors
from .codec import IdFactory, encode_record, encode_records, interleaved
from .connection import Client, build_cluster, build_standalone, endpoint_report, pool_report, server_report, time_left
from .engines import ENGINES, make_engine
from .errors import REDIS_ERRORS, TaskQueueError
from .keys import PartitionKeys, queue_pattern
from .layout import cluster_groups, layout
from .payload import PAYLOAD_TYPES, Payload, checked_payload, checked_payloads
from .replication import enqueue_replicated
from .settings import QueueSettings, backend_from_env, parse_nodes
from .task import Task, partition_of


class TaskQueue:
    """A named logical queue spread over ``partitions`` (each one hash slot; layout: taskqueue.layout).

    >>> q = TaskQueue("redis://127.0.0.1:6379/0")            # doctest: +SKIP
    >>> q = TaskQueue(cluster_nodes=["127.0.0.1:7000"])       # doctest: +SKIP

    Every failure talking to Redis, in the constructor and in every method, comes out as a
    :class:`~taskqueue.errors.TaskQueueError` subclass (``QueueUnavailable`` with kind
    ``cluster_unreachable`` when no cluster node can be reached, ``AccessDenied`` for bad
    credentials …). Bad arguments stay ``ValueError``: an unknown engine, both or neither of
    ``redis_url`` / ``cluster_nodes``, a URL with a wrong scheme (raised by redis-py) or an
    unparsable node list. Those are programming or configuration errors, not failures. A payload
    that is not bytes (``bytes``, ``bytearray`` or ``memoryview``) is a ``TypeError``; one over
    ``max_payload_bytes`` (default 64 MiB) is ``PayloadTooLarge`` (a TaskQueueError and a
    ValueError, kind ``payload_too_large``): both raised before anything is sent.

    ``operation_timeout`` (seconds, default None) bounds every public call, retries, reconnects
    and pool waits included; when it runs out the call raises ``QueueUnavailable`` with kind
    ``timeout`` (ambiguous for a write). Without it a call is bounded only per attempt: a server
    that stops answering costs ``socket_timeout × (retries + 1)`` (about 20 s by default).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        cluster_nodes: str | Iterable[Any] | None = None,
        *,
        name: str = "default",
        partitions: int | None = None,
        pool_size: int = QueueSettings.pool_size,
        pool_blocking: bool = False,
        pool_timeout: float = QueueSettings.pool_timeout,
        visibility_timeout: float = QueueSettings.visibility_timeout,
        socket_timeout: float = QueueSettings.socket_timeout,
        retries: int = QueueSettings.retries,
        sync_replicas: int = 0,
        sync_timeout_ms: int = QueueSettings.sync_timeout_ms,
        max_payload_bytes: int = QueueSettings.max_payload_bytes,
        operation_timeout: float | None = None,
        engine: str = "list",
        settings: QueueSettings | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
        if settings is None:
            settings = QueueSettings(
                name=name,
                partitions=partitions,
                pool_size=pool_size,
                pool_blocking=pool_blocking,
                pool_timeout=pool_timeout,
                visibility_timeout=visibility_timeout,
                socket_timeout=socket_timeout,
                retries=retries,
                sync_replicas=sync_replicas,
                sync_timeout_ms=sync_timeout_ms,
                max_payload_bytes=max_payload_bytes,
                operation_timeout=operation_timeout,
            )
        if (redis_url is None) == (cluster_nodes is None):
            raise ValueError("give exactly one of redis_url or cluster_nodes (or use TaskQueue.from_env())")
        self.settings = settings
        self.is_cluster = cluster_nodes is not None
        with call_scope(settings.operation_timeout):  # one scope (and deadline) for all the constructor's I/O
            self._connect(redis_url, cluster_nodes, engine)

    def _connect(self, redis_url: str | None, cluster_nodes: str | Iterable[Any] | None, engine: str) -> None:
        settings = self.settings
        with typed_errors():
            if cluster_nodes is not None:  # RedisCluster maps the cluster here: it talks to the nodes
                self.client: Client = build_cluster(parse_nodes(cluster_nodes), settings)
            else:
                assert redis_url is not None
                self.client = build_standalone(redis_url, settings)
        try:
            with typed_errors():
                groups = cluster_groups(self.client) if isinstance(self.client, RedisCluster) else []
                self._keys = layout(settings.name, settings.partitions, groups)
                self.partitions = len(self._keys)
                self.lease_ms = int(settings.visibility_timeout * 1000)
                self._new_id = IdFactory()
                self._consume_start = itertools.count()
                self.engine = make_engine(engine, self)
                self.engine.prepare()
        except BaseException:
            with contextlib.suppress(*REDIS_ERRORS):
                self.client.close()
            raise

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **kwargs: Any) -> TaskQueue:
        """From the seed's ``REDIS_URL`` / ``REDIS_CLUSTER_ENABLED`` / ``REDIS_CLUSTER_NODES``."""
        url, nodes = backend_from_env(env)
        return cls(redis_url=url, cluster_nodes=nodes, **kwargs)

    # -- topology ---------------------------------------------------------------------------

    def _master_of(self, key: str) -> str:
        assert isinstance(self.client, RedisCluster)
        return str(self.client.get_node_from_key(key).name)

    @bounded
    def partition_masters(self) -> dict[int, str]:
        """Partition -> ``host:port`` of the master that owns it now (standalone: the server)."""
        if not isinstance(self.client, RedisCluster):
            return {p: endpoint_report(self.client)["url"] for p in range(self.partitions)}
        with typed_errors():
            return {p: self._master_of(k.ready) for p, k in enumerate(self._keys)}

    @bounded
    def describe(self) -> dict[str, Any]:
        """Effective configuration, read back from the client and the server."""
        with typed_errors():
            info = self.client.info("server")
        if isinstance(self.client, RedisCluster):
            info = next(iter(info.values())) if info and isinstance(next(iter(info.values())), dict) else info
        return {
            **endpoint_report(self.client),
            **pool_report(self.client),
            "queue": self.settings.name,
            "engine": self.engine.name,
            "partitions": self.partitions,
            "partition_masters": self.partition_masters(),
            "visibility_timeout_s": self.settings.visibility_timeout,
            "socket_timeout_s": self.settings.socket_timeout,
            "retries": self.settings.retries,
            "sync_replicas": self.settings.sync_replicas,
            "max_payload_bytes": self.settings.max_payload_bytes,
            "operation_timeout_s": self.settings.operation_timeout,
            "redis_py": version("redis"),
            **server_report(info),
        }

    def keys_of(self, partition: int) -> PartitionKeys:
        return self._keys[partition]

    # -- producer ---------------------------------------------------------------------------

    def new_id(self) -> str:
        return self._new_id()

    def partition_for(self, task_id: str) -> int:
        """The partition a task id lives in: a pure function of the id, so a retried enqueue
        lands on the same partition and is deduplicated there. Generated ids end in a counter
        (``partition = counter % partitions``): consecutive ``enqueue`` calls go round-robin over the
        partitions, and a batch of ``enqueue_many`` gets counters that all map to one partition
        (rotating batch after batch)."""
        return partition_of(task_id, self.partitions)

    @bounded
    def enqueue(self, payload: Payload, *, task_id: str | None = None) -> str:
        """Store one task; returns its id. Retrying with the same ``task_id`` never duplicates it
        while the first copy is queued or in flight."""
        checked = checked_payload(payload, self.settings.max_payload_bytes)
        task_id = task_id or self._new_id()
        p = partition_of(task_id, self.partitions) if self.partitions > 1 else 0
        record = encode_record(time.time_ns(), checked)
        if self.settings.sync_replicas:
            enqueue_replicated(self.client, self.engine, self.settings, p, task_id, record)
        else:
            keys = self.engine.enqueue_keys(p)
            self.call(self.engine.enqueue_script, *keys, task_id, record, numkeys=len(keys), partition=p)
        return task_id

    @bounded
    def call(self, script: Any, *keys_and_args: Any, numkeys: int, partition: int | None = None) -> Any:
        """EVALSHA in one round trip; on NOSCRIPT (new master after failover, flushed cache)
        load the script and retry once. Errors come out typed. Inlined rather than a context
        manager or redis-py's Script wrapper: this is the hot path of every operation."""
        try:
            try:
                return self.client.execute_command("EVALSHA", script.sha, numkeys, *keys_and_args)
            except rex.NoScriptError:
                self.client.script_load(script.script)
                return self.client.execute_command("EVALSHA", script.sha, numkeys, *keys_and_args)
        except REDIS_ERRORS as exc:
            raise typed_error(exc, partition) from exc

    @bounded
    def command(self, *args: Any, partition: int | None = None) -> Any:
        """One plain command, errors typed (and tagged with the partition)."""
        return self.guarded(lambda: self.client.execute_command(*args), partition=partition)

    @bounded
    def guarded(self, fn: Any, partition: int | None = None) -> Any:
        """Run a client call with errors typed (and tagged with the partition)."""
        try:
            return fn()
        except REDIS_ERRORS as exc:
            raise typed_error(exc, partition) from exc

    @bounded
    def enqueue_many(self, payloads: Sequence[Payload], *, task_ids: Sequence[str] | None = None) -> list[str]:
        """Store a batch; returns its ids. Every payload is checked (type, ``max_payload_bytes``)
        before any is sent.

        Generated ids (no ``task_ids``): the whole batch goes to ONE partition, one script call on
        one node (a sticky partitioner, as Kafka's): the ids are made to map there, and the partition
        rotates batch after batch, so batches spread over every partition and single ``enqueue`` calls
        still go round-robin. Given ``task_ids``: each task goes to its id's partition
        (:meth:`partition_for`, retries deduplicated there), one script call per partition, all in
        one round trip per node."""
        if isinstance(payloads, (*PAYLOAD_TYPES, str)):
            raise TypeError(
                f"payloads must be a sequence of payloads, got one {type(payloads).__name__}: "
                "use enqueue(payload) or enqueue_many([payload])"
            )
        checked = checked_payloads(payloads, self.settings.max_payload_bytes)
        script = self.engine.enqueue_many_script
        if task_ids is None:
            if not checked:
                return []
            ids, _, p = self._new_id.sticky(len(checked), self.partitions)
            keys = self.engine.enqueue_keys(p)
            args = interleaved(ids, encode_records(time.time_ns(), checked))
            self.call(script, *keys, *args, numkeys=len(keys), partition=p)
            return ids
        ids = list(task_ids)
        if len(ids) != len(checked):
            raise ValueError(f"{len(ids)} task_ids for {len(checked)} payloads: give one id per payload")
        if not ids:
            return ids
        batches = self._by_partition(ids, encode_records(time.time_ns(), checked))
        if len(batches) == 1:  # no pipeline needed: the plain call path, NOSCRIPT retry included
            p, args = batches[0]
            keys = self.engine.enqueue_keys(p)
            self.call(script, *keys, *args, numkeys=len(keys), partition=p)
            return ids
        calls = [(p, self.engine.enqueue_keys(p), args) for p, args in batches]
        results = self._pipelined_script(script, calls)
        for (p, _, _), result in zip(calls, results, strict=True):
            if isinstance(result, Exception):
                raise typed_error(result, p) from result
        return ids

    def _by_partition(self, ids: list[str], records: list[bytes]) -> list[tuple[int, list[Any]]]:
        """``(partition, [id, record, id, record, …])`` per partition, tasks in batch order, partitions
        in the order of their first task."""
        parts = self.partitions
        if parts == 1:
            return [(0, interleaved(ids, records))]
        groups: dict[int, list[Any]] = {}
        for task_id, record in zip(ids, records, strict=True):
            groups.setdefault(partition_of(task_id, parts), []).extend((task_id, record))
        return list(groups.items())

    def _pipelined_script(self, script: Any, calls: list[tuple[int, list[str], list[Any]]]) -> list[Any]:
        cluster = self.client if isinstance(self.client, RedisCluster) else None
        results: list[Any] = []
        for attempt in range(2):
            with typed_errors():
                pipe = self.client.pipeline(transaction=False)
                for _, keys, args in calls:
                    # execute_command: ClusterPipeline blocks the evalsha() helper, not the command.
                    if cluster is None:
                        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                        continue
                    # Routed here by the partition's key: left to itself, ClusterPipeline asks a node for
                    # an EVALSHA's keys (COMMAND GETKEYS), one more round trip per call. A MOVED or ASK
                    # reply is still followed, by the client's own routing.
                    node = cluster.get_node_from_key(keys[0])
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, target_nodes=node)
                results = pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, rex.NoScriptError) for r in results):
                # A new master (after failover) or a flushed script cache: load, retry once.
                with typed_errors():
                    self.client.script_load(script.script)
                continue
            break
        return list(results)

    # -- consumer ---------------------------------------------------------------------------

    @bounded
    def dequeue(self, timeout: float = 0.0) -> Task | None:
        """Lease the next task, waiting up to ``timeout`` s; ``None`` when nothing arrived."""
        tasks = self.dequeue_many(1, timeout=timeout)
        return tasks[0] if tasks else None

    @bounded
    def dequeue_many(self, count: int, timeout: float = 0.0) -> list[Task]:
        """Lease up to ``count`` tasks from one partition (partitions rotate between calls)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        if timeout >= self.settings.socket_timeout:
            raise ValueError(f"timeout={timeout} must be below socket_timeout={self.settings.socket_timeout}")
        operation_timeout = self.settings.operation_timeout
        if operation_timeout is not None and timeout >= operation_timeout:
            raise ValueError(f"timeout={timeout} must be below operation_timeout={operation_timeout}")
        deadline = time.monotonic() + timeout
        start = next(self._consume_start)
        while True:
            for i in range(self.partitions):
                tasks = self.engine.lease((start + i) % self.partitions, count)
                if tasks:
                    return tasks
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Block on one partition for a slice, so the others are looked at again soon; the
            # reply of a blocking wait must arrive well within the socket and operation timeouts.
            bound = self.settings.socket_timeout
            left = time_left()
            if left is not None:
                bound = min(bound, left)
            slice_s = max(0.01, min(remaining, 1.0, bound / 2) / self.partitions)
            tasks = self.engine.wait(start % self.partitions, count, slice_s)
            if tasks:
                return tasks
            start += 1

    @bounded
    def ack(self, task: Task) -> bool:
        """Finish a task. ``False`` if its lease had already expired (it may be delivered twice)."""
        return self.engine.ack(task)

    @bounded
    def nack(self, task: Task) -> bool:
        """Give a task back for immediate redelivery. ``False`` if the lease was already gone."""
        return self.engine.nack(task)

    @bounded
    def requeue_expired(self, limit: int = 1000) -> int:
        """The visibility-timeout reaper: expired leases become deliverable again. Returns how many."""
        return sum(self.engine.requeue_expired(p, limit) for p in range(self.partitions))

    # -- inspection -------------------------------------------------------------------------

    @bounded
    def depth(self) -> int:
        """Tasks waiting to be delivered (all partitions)."""
        return self._count(self.engine.depth_commands)

    @bounded
    def inflight(self) -> int:
        """Tasks leased and not yet acked."""
        return self._count(self.engine.inflight_commands)

    def _count(self, add_commands: Any) -> int:
        total = 0
        with typed_errors():
            for p in range(self.partitions):
                pipe = self.client.pipeline(transaction=False)
                add_commands(pipe, p)
                total += self.engine.count(pipe.execute(raise_on_error=False))
        return total

    @bounded
    def purge(self) -> int:
        """Delete every key of this queue (all partitions). Returns the number of keys deleted."""
        deleted = 0
        with typed_errors():
            for k in self._keys:
                deleted += int(self.client.delete(*k.all()))
            # Partitions from an earlier run with a different partition count.
            for key in self.client.scan_iter(match=queue_pattern(self.settings.name), count=1000):
                deleted += int(self.client.delete(key))
        return deleted

    @bounded
    def close(self) -> None:
        with typed_errors():
            self.client.close()

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Task", "TaskQueue", "TaskQueueError"]

"""Queue adapters: benchmark any queue with the same locustfile, micro-benchmarks and scenarios.

An adapter is what ``--queue module:factory`` names: ``factory(target, options)`` returns a
:class:`QueueAdapter` (TaskQueue is one already); optional extras the load uses when present:
``enqueue_many(payloads, *, task_ids)``, ``dequeue_many(count, timeout)``, ``partition_for(task_id) -> int``.

``target`` is a :class:`bench.target.Target` (``redis_url`` or ``cluster_nodes``, ``host:port,…``; it also
reads as the dict ``{"redis_url": …}`` / ``{"cluster_nodes": …}``); ``options`` is the run's ``LoadOptions``.
Failures should raise ``taskqueue.TaskQueueError`` (its ``kind`` is the error class in reports); any other
exception from redis-py is classified the same way.
Shipped: ``bench.adapters:taskqueue`` (``--engine`` list|stream), ``:list_engine``,
``:stream_engine`` and ``:rq`` (``pip install -e '.[rq]'``, standalone Redis only).
arq is not shipped: its current release pins redis-py < 6, while this suite needs redis-py 8.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from taskqueue import Task, TaskQueue
from taskqueue.codec import IdFactory
from taskqueue.connection import server_report
from taskqueue.errors import TaskQueueError, translate

from .errors import UsageError
from .target import Target

DEFAULT = "bench.adapters:taskqueue"


@runtime_checkable
class QueueAdapter(Protocol):
    """The queue interface every benchmark drives."""

    def new_id(self) -> str: ...  # a fresh task id (the audit records it)
    def enqueue(self, payload: bytes, *, task_id: str) -> str: ...  # store one task under that id
    # Lease one task (taskqueue.Task: id, payload, enqueued_at ns, attempts, partition, receipt).
    def dequeue(self, timeout: float) -> Task | None: ...
    def ack(self, task: Task) -> bool: ...  # finish it
    def depth(self) -> int: ...  # waiting; with inflight(): for the drain after the load
    def inflight(self) -> int: ...
    def requeue_expired(self) -> int: ...  # redeliver expired leases (0 if the queue does it itself)
    def describe(self) -> dict[str, Any]: ...  # effective config, read back
    def purge(self) -> int: ...
    def close(self) -> None: ...


REQUIRED = tuple(name for name in vars(QueueAdapter) if not name.startswith("_"))


def taskqueue(target: Target, options: Any) -> QueueAdapter:
    """Our TaskQueue with the engine of ``--engine``."""
    return TaskQueue(**_common(target, options), engine=getattr(options, "engine", "list"))


def list_engine(target: Target, options: Any) -> QueueAdapter:
    return TaskQueue(**_common(target, options), engine="list")


def stream_engine(target: Target, options: Any) -> QueueAdapter:
    return TaskQueue(**_common(target, options), engine="stream")


def _common(target: Target, options: Any) -> dict[str, Any]:
    return {
        "redis_url": target.redis_url,
        "cluster_nodes": target.cluster_nodes,
        "name": options.queue_name,
        "partitions": options.partitions or None,
        "pool_size": options.pool_size,
        "pool_blocking": options.pool_blocking,
        "visibility_timeout": options.visibility_timeout,
        "sync_replicas": options.sync_replicas,
    }


def resolve(spec: str) -> Callable[..., object]:
    """``module:factory`` -> the factory, or a UsageError saying what is wrong."""
    module_name, sep, attr = (spec or DEFAULT).partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--queue {spec!r}: expected module:factory, e.g. {DEFAULT} or bench.adapters:rq")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--queue {spec!r}: cannot import module {module_name!r} ({exc})") from None
    factory: object = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--queue {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def build(spec: str, target: Target, options: Any) -> QueueAdapter:
    """Resolve, call and check the adapter (a clear error, not a traceback, when it is wrong)."""
    factory = resolve(spec)
    try:
        adapter = factory(target, options)
    except (UsageError, TaskQueueError):
        raise
    except ImportError as exc:
        raise UsageError(f"--queue {spec!r}: {exc}") from None
    except TypeError as exc:
        raise UsageError(f"--queue {spec!r}: the factory must accept (target, options): {exc}") from None
    except ValueError as exc:
        raise UsageError(f"--queue {spec!r}: {exc}") from None
    missing = [name for name in REQUIRED if not callable(getattr(adapter, name, None))]
    if missing or not isinstance(adapter, QueueAdapter):
        raise UsageError(
            f"--queue {spec!r}: {type(adapter).__name__} is not a queue adapter, it lacks {', '.join(missing)} "
            "(see bench/adapters.py for the interface)"
        )
    return adapter


# -- RQ -------------------------------------------------------------------------------------------


def rq_job(payload: bytes) -> None:
    """The function RQ jobs name (never run here: the benchmark measures the queue, not work)."""


def rq(target: Target, options: Any) -> QueueAdapter:
    """RQ's real ``Queue.enqueue`` and its worker-side dequeue and success handling."""
    if target.redis_url is None:
        raise UsageError("--queue bench.adapters:rq: RQ does not support Redis Cluster; use a standalone backend")
    try:
        import rq as _rq  # noqa: F401
    except ImportError:
        raise UsageError("--queue bench.adapters:rq needs RQ: pip install -e '.[rq]'") from None
    return RQAdapter(target.redis_url, options.queue_name, options.pool_size)


class RQAdapter:
    """RQ as its users run it: producers call ``Queue.enqueue``; the consumer side runs the same
    steps an RQ worker runs per job (``Queue.dequeue_any``, ``prepare_execution``,
    ``prepare_job_execution``, ``handle_job_success``) without forking a work horse."""

    name = "rq"

    def __init__(self, url: str, queue_name: str, pool_size: int) -> None:
        import redis
        from rq import Queue, Worker

        class QuietWorker(Worker):
            def procline(self, message: str) -> None:
                """An RQ worker renames its process (setproctitle) for every job: this one runs inside
                the load process, which must keep its own name (ps, port owners, the password scrubbing)."""

        self.redis = redis.Redis.from_url(url, max_connections=pool_size)
        self.queue = Queue(queue_name, connection=self.redis)
        self.worker = QuietWorker([self.queue], connection=self.redis)
        self._ids = IdFactory()

    def new_id(self) -> str:
        return self._ids()

    def partition_for(self, task_id: str) -> int:
        return 0

    def enqueue(self, payload: bytes, *, task_id: str | None = None) -> str:
        task_id = task_id or self._ids()
        try:
            self.queue.enqueue(rq_job, payload, job_id=task_id, result_ttl=0)
        except Exception as exc:
            raise _typed(exc) from exc
        return task_id

    def dequeue(self, timeout: float = 0.0) -> Task | None:
        from rq import Queue

        try:
            # RQ types its timeout as int; Redis (and RQ's LMOVE path) accept fractions of a second.
            found = Queue.dequeue_any([self.queue], timeout or None, connection=self.redis)  # type: ignore[arg-type]
        except Exception as exc:
            if type(exc).__name__ == "DequeueTimeout":
                return None
            raise _typed(exc) from exc
        if found is None:
            return None
        job, queue = found
        try:
            execution = self.worker.prepare_execution(job)
            self.worker.prepare_job_execution(job, remove_from_intermediate_queue=True)
        except Exception as exc:
            raise _typed(exc) from exc
        enqueued = job.enqueued_at.timestamp() if job.enqueued_at else time.time()
        if job.enqueued_at is not None and job.enqueued_at.tzinfo is None:  # RQ stores naive UTC
            import calendar

            enqueued = calendar.timegm(job.enqueued_at.utctimetuple()) + job.enqueued_at.microsecond / 1e6
        return Task(job.id, job.args[0], int(enqueued * 1e9), 1, 0, (job, queue, execution))

    def ack(self, task: Task) -> bool:
        from rq.utils import now

        job, queue, execution = task.receipt
        try:
            job.ended_at = now()
            self.worker.handle_job_success(job, queue, queue.started_job_registry, execution)
        except Exception as exc:
            raise _typed(exc) from exc
        return True

    def depth(self) -> int:
        return int(self.queue.count)

    def inflight(self) -> int:
        return int(self.queue.started_job_registry.count)

    def requeue_expired(self) -> int:
        return 0  # RQ moves abandoned jobs to the failed registry (no redelivery): counted as lost

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        pool = self.redis.connection_pool
        return {"backend": "standalone", "engine": "rq", "rq": version("rq"), "pool_class": type(pool).__name__,
                "pool_size": pool.max_connections, "partitions": 1,
                **server_report(self.redis.info("server"))}  # fmt: skip

    def purge(self) -> int:
        keys = list(self.redis.scan_iter(match="rq:*", count=1000))
        return int(self.redis.delete(*keys)) if keys else 0

    def close(self) -> None:
        self.redis.close()


def _typed(exc: BaseException) -> TaskQueueError:
    import redis

    if isinstance(exc, TaskQueueError):
        return exc
    if isinstance(exc, redis.RedisError):
        return translate(exc)
    return TaskQueueError(f"other: {type(exc).__name__}: {exc}", cause=exc)

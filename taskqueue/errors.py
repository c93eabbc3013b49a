"""Typed queue errors, so a load harness can classify failures without parsing strings.

Every error keeps the redis-py exception that caused it (``__cause__`` and ``.cause``) and a
short ``kind`` label (``oom``, ``connection_refused``, ``clusterdown`` …) used as the error
class in reports.
"""

from __future__ import annotations

import errno

from redis import exceptions as rex

__all__ = [
    "PoolExhausted",
    "QueueFull",
    "QueueUnavailable",
    "TaskQueueError",
    "classify",
    "translate",
]


class TaskQueueError(Exception):
    """Base class: something went wrong talking to the queue's Redis."""

    kind = "other"

    def __init__(self, message: str, *, cause: BaseException | None = None, kind: str | None = None):
        super().__init__(message)
        self.cause = cause
        self.partition: int | None = None  # set by the queue: which partition the call was for
        if kind is not None:
            self.kind = kind


class QueueFull(TaskQueueError):
    """Redis refused a write because it is at ``maxmemory`` (OOM): the task was not stored."""

    kind = "oom"


class QueueUnavailable(TaskQueueError):
    """Redis could not be reached or could not serve the slot (refused, CLUSTERDOWN, TRYAGAIN, timeout).

    For a write, the outcome is *ambiguous* when ``kind`` is ``timeout`` or ``connection_lost``:
    the command may have been applied before the failure.
    """

    kind = "unavailable"


class PoolExhausted(TaskQueueError):
    """No free connection in the client pool (non-blocking pool full, or blocking pool timed out)."""

    kind = "pool_exhausted"


# Kinds where a write may or may not have happened on the server.
AMBIGUOUS_KINDS = frozenset({"timeout", "connection_lost", "not_replicated"})


def classify(exc: BaseException) -> str:
    """Short error class for a redis-py (or OS) exception, as used in reports."""
    if isinstance(exc, TaskQueueError):
        return exc.kind
    if isinstance(exc, rex.MaxConnectionsError):
        return "pool_exhausted"
    message = str(exc)
    if isinstance(exc, rex.ConnectionError) and "No connection available" in message:
        return "pool_exhausted"
    if isinstance(exc, rex.OutOfMemoryError) or message.startswith("OOM") or "-OOM" in message or " OOM " in message:
        return "oom"
    if isinstance(exc, rex.ClusterDownError) or "CLUSTERDOWN" in message:
        return "clusterdown"
    if isinstance(exc, rex.TryAgainError) or message.startswith("TRYAGAIN"):
        return "tryagain"
    if isinstance(exc, (rex.MovedError, rex.AskError)):
        return "moved"
    if isinstance(exc, rex.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, rex.ConnectionError | OSError):
        cause = exc.__cause__ or exc.__context__
        codes = {getattr(exc, "errno", None), getattr(cause, "errno", None)}
        if errno.ECONNREFUSED in codes or "Connection refused" in message:
            return "connection_refused"
        if "Timeout" in message or "timed out" in message:
            return "timeout"
        return "connection_lost"
    if isinstance(exc, rex.ReadOnlyError) or message.startswith("READONLY"):
        return "readonly"
    if isinstance(exc, rex.ClusterError | rex.RedisClusterException | rex.SlotNotCoveredError):
        return "clusterdown"
    return "other"


def translate(exc: BaseException) -> TaskQueueError:
    """Wrap a redis-py exception in the matching typed queue error (cause kept)."""
    if isinstance(exc, TaskQueueError):
        return exc
    kind = classify(exc)
    text = f"{kind}: {exc}"
    if kind == "oom":
        return QueueFull(text, cause=exc, kind=kind)
    if kind == "pool_exhausted":
        return PoolExhausted(text, cause=exc, kind=kind)
    if kind in {
        "connection_refused",
        "connection_lost",
        "timeout",
        "clusterdown",
        "tryagain",
        "moved",
        "readonly",
        "not_replicated",
    }:
        return QueueUnavailable(text, cause=exc, kind=kind)
    return TaskQueueError(text, cause=exc, kind=kind)

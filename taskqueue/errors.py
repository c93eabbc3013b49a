"""Typed queue errors, so a load harness can classify failures without parsing strings.

Every error keeps the redis-py exception that caused it (``__cause__`` and ``.cause``) and a
short ``kind`` label (``oom``, ``connection_refused``, ``clusterdown`` …) used as the error
class in reports.

``classify`` and ``translate`` are pure functions; ``REDIS_ERRORS`` is what the queue catches to
translate (``RedisClusterException`` is not a ``RedisError``). Kinds, by typed error:

- ``QueueFull``: ``oom``
- ``PoolExhausted``: ``pool_exhausted``
- ``AccessDenied``: ``auth`` (NOAUTH, WRONGPASS, NOPERM, failed AUTH)
- ``PayloadTooLarge``: ``payload_too_large`` (over ``max_payload_bytes``; raised before sending)
- ``QueueUnavailable``: ``connection_refused``, ``connection_lost``, ``timeout``, ``clusterdown``,
  ``cluster_unreachable``, ``tryagain``, ``moved``, ``readonly``, ``not_replicated``, ``noreplicas``
  (the master refused the write: fewer good replicas than ``min-replicas-to-write``)
- ``TaskQueueError``: ``other``

Only ``AMBIGUOUS_KINDS`` leave a write's outcome unknown; every other kind is a rejection.

Classified by what was sent. A write is ambiguous when its command may have left the client: a
timeout, a connection lost after the send, or a cluster client error (redis-py 8.2's
``RedisClusterUnreachableError``) caused by a command error on a connection the command was
written to. It is a rejection only when nothing was sent: connect refused, no node reachable while
mapping the cluster, an exhausted pool, bad credentials, a reply that refused it (OOM …). The
queue adds what one exception cannot show, an earlier attempt of the same call whose reply was
lost (``taskqueue.calls.typed_error``).

A call that runs out of its ``operation_timeout`` fails with kind ``timeout``: the client raises
``DeadlineExceeded`` (a redis-py ``TimeoutError``), and ``classify`` also finds it in the cause
chain of a cluster client error (redis-py 8.1: a topology refresh cut short by the deadline).
"""

from __future__ import annotations

import errno

from redis import exceptions as rex
from redis.connection import AbstractConnection

__all__ = [
    "AMBIGUOUS_KINDS",
    "REDIS_ERRORS",
    "AccessDenied",
    "DeadlineExceeded",
    "PayloadTooLarge",
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
    """Redis could not be reached or could not serve the slot (refused, CLUSTERDOWN, TRYAGAIN, timeout,
    or the cluster client could not connect to / map the cluster: ``cluster_unreachable``).

    For a write, the outcome is *ambiguous* when ``kind`` is ``timeout`` or ``connection_lost``:
    the command may have been applied before the failure.
    """

    kind = "unavailable"


class PoolExhausted(TaskQueueError):
    """No free connection in the client pool (non-blocking pool full, or blocking pool timed out)."""

    kind = "pool_exhausted"


class AccessDenied(TaskQueueError):
    """Redis refused the credentials or the command (NOAUTH, WRONGPASS, NOPERM): nothing was run.

    A configuration problem rather than an outage: retrying does not help.
    """

    kind = "auth"


class PayloadTooLarge(TaskQueueError, ValueError):
    """A payload over ``max_payload_bytes``: refused before anything was sent (a rejection).

    Also a ``ValueError``: it is a bad argument, and a TaskQueueError so a load harness counts it.
    """

    kind = "payload_too_large"


class DeadlineExceeded(rex.TimeoutError):
    """The call's ``operation_timeout`` ran out before (or during) an attempt: kind ``timeout``.

    A redis-py ``TimeoutError`` on purpose, so redis-py handles it like a socket timeout (the
    connection is dropped) and the queue translates it like any other timeout (ambiguous)."""


# What the queue catches and translates: every redis-py error, cluster client errors included.
REDIS_ERRORS: tuple[type[BaseException], ...] = (rex.RedisError, rex.RedisClusterException)

# Kinds where a write may or may not have happened on the server.
AMBIGUOUS_KINDS = frozenset({"timeout", "connection_lost", "not_replicated"})

UNAVAILABLE_KINDS = frozenset(
    {
        "connection_refused",
        "connection_lost",
        "timeout",
        "clusterdown",
        "cluster_unreachable",
        "tryagain",
        "moved",
        "readonly",
        "not_replicated",
        "noreplicas",
    }
)

_AUTH_ERRORS = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.AuthenticationWrongNumberOfArgsError,
    rex.NoPermissionError,
    rex.ExternalAuthProviderError,
)
_AUTH_CODES = ("NOAUTH", "WRONGPASS", "NOPERM")
# RedisClusterException messages that mean the client could not reach or map the cluster.
_UNREACHABLE_MESSAGES = (
    "cannot be connected",
    "could not agree",
    "cluster mode is not enabled",
    "has no redis_connection",
    "doesn't exist in the cluster",
)


def _has_code(message: str, code: str) -> bool:
    """``code`` as a Redis error code: at the start, after ``-``, or as a word (script errors)."""
    return message.startswith(code) or f"-{code}" in message or f" {code} " in message


def _is_auth(exc: BaseException, message: str) -> bool:
    return isinstance(exc, _AUTH_ERRORS) or any(_has_code(message, code) for code in _AUTH_CODES)


def _deadline_in_chain(exc: BaseException) -> bool:
    """True if the operation deadline caused ``exc`` (anywhere in its cause/context chain)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        if isinstance(item, DeadlineExceeded):
            return True
        seen.add(id(item))
        todo += [item.__cause__, item.__context__]
    return False


def _written_to(exc: BaseException) -> bool:
    """The cluster client failed on a connection it had checked out, so the command may have been
    written to it. redis-py sets ``.connection`` to that connection, or to the ClusterNode when it
    never got one (the connect or its handshake failed: nothing of the command was sent)."""
    return isinstance(getattr(exc, "connection", None), AbstractConnection)


def _classify_cluster_client(exc: rex.RedisClusterException) -> str:
    """RedisClusterException and subclasses: raised by the cluster client itself, either before
    sending (no node to map the slots from) or, in redis-py 8.2, *instead of* the command's own
    connection or timeout error once a topology refresh reached no node: that error is the cause,
    and classified as itself when the command had been written (a timed-out write may have run)."""
    if _deadline_in_chain(exc):  # e.g. the slot-map refresh after a timeout ran out of deadline
        return "timeout"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and classify(cause) == "auth":
        return "auth"
    if isinstance(cause, rex.ConnectionError | rex.TimeoutError) and _written_to(cause):
        kind = classify(cause)
        if kind in AMBIGUOUS_KINDS:
            return kind
    message = str(exc)
    if isinstance(exc, rex.SlotNotCoveredError) or "not covered" in message:
        return "clusterdown"
    connection_cause = isinstance(cause, rex.ConnectionError | rex.TimeoutError | OSError)
    if connection_cause or any(m in message.lower() for m in _UNREACHABLE_MESSAGES):
        return "cluster_unreachable"
    return "other"  # misuse: cross-slot transaction, unsupported command or argument …


def classify(exc: BaseException) -> str:
    """Short error class for a redis-py (or OS) exception, as used in reports."""
    if isinstance(exc, TaskQueueError):
        return exc.kind
    if isinstance(exc, rex.RedisClusterException):
        return _classify_cluster_client(exc)
    if isinstance(exc, rex.MaxConnectionsError):
        return "pool_exhausted"
    message = str(exc)
    if isinstance(exc, rex.ConnectionError) and "No connection available" in message:
        return "pool_exhausted"
    # Before the ConnectionError branch: AuthenticationError is a ConnectionError.
    if _is_auth(exc, message):
        return "auth"
    if isinstance(exc, rex.OutOfMemoryError) or message.startswith("OOM") or "-OOM" in message or " OOM " in message:
        return "oom"
    if _has_code(message, "NOREPLICAS"):  # min-replicas-to-write: refused, nothing was written
        return "noreplicas"
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
    if isinstance(exc, rex.ClusterError):  # TTL exhausted after redirections
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
    if kind == "auth":
        return AccessDenied(text, cause=exc, kind=kind)
    if kind in UNAVAILABLE_KINDS:
        return QueueUnavailable(text, cause=exc, kind=kind)
    return TaskQueueError(text, cause=exc, kind=kind)

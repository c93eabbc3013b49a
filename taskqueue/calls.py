"""The wrapping every TaskQueue call gets: its call scope with the ``operation_timeout`` deadline
(``bounded``, ``call_scope``) and the translation of redis-py errors into partition-tagged
TaskQueueErrors, classified by what the call sent (``typed_error``, ``typed_errors``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from .connection import CALL, CallScope
from .errors import AMBIGUOUS_KINDS, REDIS_ERRORS, QueueUnavailable, TaskQueueError, translate

if TYPE_CHECKING:
    from .queue import TaskQueue

P = ParamSpec("P")
R = TypeVar("R")


def typed_error(exc: BaseException, partition: int | None = None) -> TaskQueueError:
    """The one translation point: every redis-py error (``REDIS_ERRORS``) caught by the queue goes
    through here and comes out as a TaskQueueError tagged with the partition it was for.

    Classified by what was sent: when a command of the running call went out and its reply never
    came (noted by the connection, see ``taskqueue.connection``), the call's outcome is unknown,
    whatever a later attempt failed with (a retry refused, CLUSTERDOWN, no node reachable)."""
    err = translate(exc)
    scope = CALL.get()
    if scope is not None and scope.reply_lost is not None and err.kind not in AMBIGUOUS_KINDS:
        err = QueueUnavailable(
            f"{scope.reply_lost}: a command of this call got no reply, then {err}", cause=exc, kind=scope.reply_lost
        )
    err.partition = partition
    return err


@contextmanager
def typed_errors(partition: int | None = None) -> Iterator[None]:
    try:
        yield
    except REDIS_ERRORS as exc:
        raise typed_error(exc, partition) from exc


def _name_the_deadline(exc: QueueUnavailable, timeout: float) -> None:
    """A timeout of a bounded call says which limit it ran into."""
    message = str(exc)
    if exc.kind == "timeout" and "operation_timeout=" not in message:
        exc.args = (f"{message} (operation_timeout={timeout:g}s)",)


def _new_scope(timeout: float | None) -> CallScope:
    return CallScope(None if timeout is None else time.monotonic() + timeout, timeout)


@contextmanager
def call_scope(timeout: float | None) -> Iterator[None]:
    """Run the calls inside in one ``CallScope`` (with the ``operation_timeout`` deadline, if any),
    unless one is already running: a public method calling another stays in the outer call."""
    if CALL.get() is not None:
        yield
        return
    token = CALL.set(_new_scope(timeout))
    try:
        yield
    except QueueUnavailable as exc:
        if timeout is not None:
            _name_the_deadline(exc, timeout)
        raise
    finally:
        CALL.reset(token)


def bounded(method: Callable[Concatenate[TaskQueue, P], R]) -> Callable[Concatenate[TaskQueue, P], R]:
    """A public method run in its own call scope (see ``call_scope``): bounded by ``operation_timeout``,
    retries included, and with what it sent tracked. Inlined rather than ``with call_scope(…)``: it
    wraps the hot path of every operation."""

    @functools.wraps(method)
    def wrapper(self: TaskQueue, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if CALL.get() is not None:
            return method(self, *args, **kwargs)
        timeout = self.settings.operation_timeout
        token = CALL.set(_new_scope(timeout))
        try:
            return method(self, *args, **kwargs)
        except QueueUnavailable as exc:
            if timeout is not None:
                _name_the_deadline(exc, timeout)
            raise
        finally:
            CALL.reset(token)

    return wrapper

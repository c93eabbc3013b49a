"""The wrapping every TaskQueue call gets: the ``operation_timeout`` deadline (``bounded``,
``operation_deadline``) and the translation of redis-py errors into partition-tagged
TaskQueueErrors (``typed_error``, ``typed_errors``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from .connection import DEADLINE
from .errors import REDIS_ERRORS, QueueUnavailable, TaskQueueError, translate

if TYPE_CHECKING:
    from .queue import TaskQueue

P = ParamSpec("P")
R = TypeVar("R")


def typed_error(exc: BaseException, partition: int | None = None) -> TaskQueueError:
    """The one translation point: every redis-py error (``REDIS_ERRORS``) caught by the queue goes
    through here and comes out as a TaskQueueError tagged with the partition it was for."""
    err = translate(exc)
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


@contextmanager
def operation_deadline(timeout: float | None) -> Iterator[None]:
    """Start the operation deadline for the calls inside, unless one is already running (a public
    method calling another keeps the outer call's deadline) or there is no ``operation_timeout``."""
    if timeout is None or DEADLINE.get() is not None:
        yield
        return
    token = DEADLINE.set((time.monotonic() + timeout, timeout))
    try:
        yield
    except QueueUnavailable as exc:
        _name_the_deadline(exc, timeout)
        raise
    finally:
        DEADLINE.reset(token)


def bounded(method: Callable[Concatenate[TaskQueue, P], R]) -> Callable[Concatenate[TaskQueue, P], R]:
    """A public method bounded by ``operation_timeout`` (see ``operation_deadline``), retries included.
    Inlined rather than ``with operation_deadline(…)``: it wraps the hot path of every operation."""

    @functools.wraps(method)
    def wrapper(self: TaskQueue, /, *args: P.args, **kwargs: P.kwargs) -> R:
        timeout = self.settings.operation_timeout
        if timeout is None or DEADLINE.get() is not None:
            return method(self, *args, **kwargs)
        token = DEADLINE.set((time.monotonic() + timeout, timeout))
        try:
            return method(self, *args, **kwargs)
        except QueueUnavailable as exc:
            _name_the_deadline(exc, timeout)
            raise
        finally:
            DEADLINE.reset(token)

    return wrapper

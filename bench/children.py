"""Child processes the harness starts: the kernel kills them if the harness dies, and a Ctrl-C or
SIGTERM that arrives while one is being forked is never lost.

Python runs a signal handler's Python code at the next bytecode of the main thread. During a fork with
a ``preexec_fn`` that can be inside an at-fork callback (logging's ``_releaseLock``), where an exception
is printed ("Exception ignored in ...") and dropped: a SIGTERM that landed there was lost, and the run
went on to its end (seen once in the suite). So the harness's handlers hand the exception to
:func:`deliver`, which holds it while the main thread forks and raises it as soon as the fork is over.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any


class _Held:
    depth = 0  # nesting of forks in progress on the main thread
    pending: BaseException | None = None


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def deliver(exc: BaseException) -> None:
    """Raise ``exc`` now (from a signal handler), or, while the main thread forks, once the fork is over."""
    if _Held.depth:
        _Held.pending = _Held.pending or exc
        return
    raise exc


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Hold what :func:`deliver` is given until the block is over, then raise it."""
    if threading.current_thread() is not threading.main_thread():  # handlers run on the main thread only
        yield
        return
    _Held.depth += 1
    try:
        yield
    finally:
        _Held.depth -= 1
        if not _Held.depth and _Held.pending is not None:
            exc, _Held.pending = _Held.pending, None
            raise exc


def interrupt_as_exception(signum: int, frame: object) -> None:
    """SIGINT's handler for the harness: Python's own KeyboardInterrupt, through :func:`deliver`."""
    deliver(KeyboardInterrupt())


def spawn(cmd: Sequence[str], owned: bool = True, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` of a child the kernel kills when the harness dies (``owned``: PR_SET_PDEATHSIG).
    An interruption during the fork is raised right after it, and then this child, which nobody holds
    yet, is killed first."""
    if not owned:  # no preexec_fn: no at-fork callbacks run, nothing to hold
        return subprocess.Popen(cmd, **kwargs)
    proc: subprocess.Popen[Any] | None = None
    try:
        with forking():
            proc = subprocess.Popen(cmd, preexec_fn=die_with_parent, **kwargs)
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    return proc


def run(cmd: Sequence[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=...)`` for an owned child."""
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    with proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:  # the timeout, or an interruption: the child goes with it
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, stdout, stderr)

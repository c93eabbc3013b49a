"""Children of the harness: an interruption that lands while one is forked is raised after the fork,
never dropped inside an at-fork callback, and the child nobody holds yet is killed."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from bench import children
from bench.cli_common import sigterm_as_interrupt
from bench.runner import Terminated

ARMED: list[int] = []  # the signal the at-fork callback sends on the next fork, once


def _signal_mid_fork() -> None:
    if ARMED:
        os.kill(os.getpid(), ARMED.pop())


os.register_at_fork(after_in_parent=_signal_mid_fork)  # for the life of this process, so armed once at a time


def _my_children(marker: str) -> list[int]:
    """Live (not zombie) children of this process whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            state, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if int(ppid) == os.getpid() and state != "Z" and marker in cmdline:
            found.append(int(proc.name))
    return found


def test_deliver_raises_at_once_outside_a_fork_and_after_it_inside() -> None:
    with pytest.raises(KeyboardInterrupt):
        children.deliver(KeyboardInterrupt())
    first, second = Terminated(), KeyboardInterrupt()
    with pytest.raises(Terminated) as info, children.forking():
        with children.forking():
            children.deliver(first)
            children.deliver(second)
        reached = True  # the inner block's end raises nothing: the outer fork is still on
    assert reached and info.value is first
    with children.forking():  # nothing pending any more
        pass


def test_a_fork_on_another_thread_holds_nothing() -> None:
    depths = []

    def fork_elsewhere() -> None:
        with children.forking():
            depths.append(children._Held.depth)

    thread = threading.Thread(target=fork_elsewhere)
    thread.start()
    thread.join(10)
    assert depths == [0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interruption_during_the_fork_is_raised_after_it_and_kills_that_child(sig: signal.Signals) -> None:
    marker = f"31.{sig.value}"
    with sigterm_as_interrupt():
        ARMED.append(sig)
        with pytest.raises(Terminated if sig == signal.SIGTERM else KeyboardInterrupt):
            children.spawn(["sleep", marker])
        assert not ARMED, "the fork did not run the at-fork callback"
    assert _my_children(marker) == []  # killed and reaped, not left for the kernel at our exit


def test_run_is_subprocess_run_for_an_owned_child() -> None:
    done = children.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    with pytest.raises(children.subprocess.TimeoutExpired):
        children.run(["sleep", "32.5"], timeout=0.2)
    assert _my_children("32.5") == []

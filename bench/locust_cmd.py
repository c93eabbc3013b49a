"""Running the suite's locustfile headless: its command line, its start and stop, reading its refusals.

One place for how ``bench run`` (a cell's repeat), ``bench capacity`` (a step) and ``bench overhead`` start
Locust as a child process, so they start it the same way and none of them imports another's orchestrator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from . import netns
from .children import spawn
from .options import LoadOptions
from .scenario import Cell
from .target import Target

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locustfiles" / "queue.py"
STOP_TIMEOUT_S = 5  # Locust lets users finish their current task (a consumer acks what it holds)
LOCUST_STOP_GRACE_S = 30  # after SIGTERM, Locust writes its partial results; then its group is killed

# ``python -m locust``, except that the workers ``--processes`` forks get PR_SET_PDEATHSIG too: the
# kernel clears it on fork, and a worker whose master died keeps running (Locust's master heartbeat
# timeout is 60 s). A child whose parent died before the prctl exits at once.
LOCUST_MAIN = """\
import os, runpy
from bench.children import die_with_parent
parent = [0]
def _before_fork():
    parent[0] = os.getpid()
def _in_child():
    die_with_parent()
    if os.getppid() != parent[0]:
        os._exit(1)
os.register_at_fork(before=_before_fork, after_in_child=_in_child)
runpy.run_module("locust", run_name="__main__", alter_sys=True)
"""


def headless_locust(users: int, spawn_rate: float, seconds: float) -> list[str]:
    """The start of every headless Locust run of the suite's locustfile."""
    return [
        sys.executable,
        "-c",
        LOCUST_MAIN,  # python -m locust, whose --processes workers die with it too
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{max(1, round(seconds))}s",
    ]


def cell_load_options(cell: Cell, target: Target, queue_name: str, rep_dir: Path) -> LoadOptions:
    """The cell's load as Locust options (validated), on this target, queue and results folder."""
    return dataclasses.replace(
        cell.load,
        redis_url=target.redis_url or "",
        cluster_nodes=target.cluster_nodes or "",
        queue_name=queue_name,
        audit=True,
        ack_log=cell.harness["fault"] in netns.NETWORK_FAULTS,  # which partition acknowledged which id, when
        results_dir=str(rep_dir),
    ).validated()


def locust_command(params: dict[str, Any], opts: LoadOptions, rep_dir: Path) -> list[str]:
    """The headless Locust command line of a cell; secret options (a password in the URL) are
    not on it: pass ``opts.as_env()`` as the child's environment (:func:`locust_env`)."""
    users = params["users"]
    cmd = [
        *headless_locust(users, params["spawn_rate"] or users, params["duration"]),
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        "--csv",
        str(rep_dir / "locust"),
        "--csv-full-history",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
        *opts.as_args(),
    ]
    if params["processes"]:
        cmd += ["--processes", str(params["processes"])]
    return cmd


def locust_env(opts: LoadOptions, client_path: Path | None = None) -> dict[str, str]:
    """The child's environment: ours plus the options kept off the command line; with ``client_path``
    (a cell's ``redis_py``, see ``bench.clientlib``) that redis-py first on its path."""
    env = {**os.environ, **opts.as_env()}
    if client_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(client_path), os.environ.get("PYTHONPATH")]))
    return env


def launch(cmd: list[str], env: dict[str, str], rep_dir: Path) -> subprocess.Popen[bytes]:
    """:func:`start_locust` with its stderr in ``rep_dir/locust.log`` (where :func:`usage_line` reads it)."""
    with open(rep_dir / "locust.log", "w") as log:
        return start_locust(cmd, log, env=env)


def start_locust(cmd: list[str], log: IO[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Locust in its own session and process group: a terminal's Ctrl-C reaches only the harness,
    which stops Locust itself (:func:`end_locust`). PR_SET_PDEATHSIG: the kernel kills it if the
    harness dies, even by SIGKILL (and its workers, see ``LOCUST_MAIN``)."""
    return spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)


def wait_for_start(proc: subprocess.Popen[bytes], rep_dir: Path, timeout: float = 60) -> float:
    """Epoch time the load started: Locust creates its CSV history when the test starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (rep_dir / "locust_stats_history.csv").exists():
            return time.time()
        time.sleep(0.05)
    return time.time()


def end_locust(proc: subprocess.Popen[bytes], *, stop: bool, grace: float = LOCUST_STOP_GRACE_S) -> None:
    """Wait for Locust to exit, first sending SIGTERM when ``stop``, SIGKILL after ``grace`` s; then
    SIGKILL whatever is left of its process group (a ``--processes`` worker outlives a master that
    crashed). SIGTERM, not SIGINT: Locust shuts down in order on it and writes its partial results,
    while a SIGINT is a KeyboardInterrupt in whichever greenlet runs (in a ``--processes`` master,
    often the one merging the workers' reports, which then dies and loses them)."""
    try:
        if stop and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group outlives its leader while members remain
        proc.wait()


def usage_line(rep_dir: Path) -> str | None:
    """Locust's own refusal of its options (``locust: error: …`` in ``locust.log``, exit 2), if any."""
    try:
        lines = (rep_dir / "locust.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((ln.split("error: ", 1)[1] for ln in lines if "locust: error: " in ln), None)

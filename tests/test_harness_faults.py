"""A nemesis aimed at the harness itself: SIGKILL, SIGTERM and SIGINT sent to `bench run` at chosen
moments (start-up, mid-cell, the restore after a fault), then: no process it started is left, no
server listens on its ports, summary.json is valid and says incomplete, the exit code is right.
Also a `bench up` whose server never answers, and `bench down` with a corrupt state file.

Each run's process tree is recorded from /proc (ppid links) while the run is alive, so a child
re-parented to init after the harness died is still known.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.ports import free_port
from bench.servers import pid_is_redis

ROOT = Path(__file__).resolve().parent.parent
GONE_WITHIN_S = 5.0

# Short on purpose: each run is one cell, a few seconds of load.
STANDALONE = """\
name = "harness-faults"
[params]
backend = "standalone"
duration = 4
warmup = 0.5
users = 2
pool_size = 4
visibility_timeout = 2
drain_timeout = 5
"""
CLUSTER_KILL = """\
name = "harness-faults-kill"
[params]
backend = "cluster"
duration = 4
warmup = 0
users = 2
pool_size = 4
node_timeout = 1000
fault = "kill"
fault_at = 1
visibility_timeout = 2
drain_timeout = 10
"""


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class ProcessTree:
    """Every process seen below ``root``, as (pid, start time) so a reused pid is not mistaken."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, str] = {}  # pid -> start time (field 22 of /proc/PID/stat)
        self.commands: dict[int, str] = {}

    def record(self) -> None:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        todo = [self.root]
        while todo:
            for child in children.get(todo.pop(), []):
                fields = _stat(child)
                if fields is None:
                    continue
                if child not in self.seen:
                    self.seen[child] = fields[19]
                if self.seen[child] == fields[19] and (cmd := _cmdline(child)):
                    self.commands[child] = cmd  # again: one seen between fork and exec had its parent's
                todo.append(child)

    def alive(self) -> dict[int, str]:
        """Recorded processes still running (zombies count as gone)."""
        left = {}
        for pid, started in self.seen.items():
            fields = _stat(pid)
            if fields is not None and fields[19] == started and fields[0] != "Z":
                left[pid] = self.commands.get(pid, "?")
        return left

    def redis_servers(self) -> dict[int, int]:
        """pid -> port of the redis-servers seen: ``--port N`` at exec, ``redis-server
        127.0.0.1:N`` once the server has renamed itself."""
        servers = {}
        for pid, cmd in self.commands.items():
            words = cmd.split()
            if not words or "redis-server" not in words[0]:
                continue
            if "--port" in words:
                servers[pid] = int(words[words.index("--port") + 1])
            elif "127.0.0.1:" in cmd:
                servers[pid] = int(cmd.split("127.0.0.1:", 1)[1].split()[0])
        return servers


class BenchRun:
    """`python -m bench run SCENARIO --no-charts` in the background, watched through /proc."""

    def __init__(self, tmp_path: Path, scenario: str) -> None:
        self.out = tmp_path / "run"
        self.tmp = tmp_path / "tmp"  # TMPDIR of the run: where its bench-run-* folder goes
        self.tmp.mkdir()
        toml = tmp_path / "scenario.toml"
        toml.write_text(scenario)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench", "run", str(toml), "--out", str(self.out), "--no-charts"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(self.tmp)},
        )
        self.tree = ProcessTree(self.proc.pid)
        self.stdout = self.stderr = ""

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tree.record()
            if condition():
                return
            assert self.proc.poll() is None, f"bench ended before {what}: {self.proc.communicate()[1][-2000:]}"
            time.sleep(0.02)
        pytest.fail(f"no {what} within {timeout:.0f}s")

    def signal(self, sig: signal.Signals, timeout: float = 90) -> int:
        """Send ``sig``, keep recording the tree until bench exits; its exit code."""
        self.tree.record()
        self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.tree.record()
            time.sleep(0.02)
        if self.proc.poll() is None:
            self.proc.kill()
            pytest.fail(f"bench did not exit within {timeout:.0f}s of {sig.name}")
        self.stdout, self.stderr = self.proc.communicate()
        return self.proc.returncode

    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text())

    def assert_nothing_left(self) -> None:
        """No process of the run within GONE_WITHIN_S, no server listening on its ports."""
        deadline = time.monotonic() + GONE_WITHIN_S
        while (left := self.tree.alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"still running after {GONE_WITHIN_S}s: {left}"
        ports = set(self.tree.redis_servers().values())
        if (self.out / "summary.json").exists():
            for addresses in self.summary().get("embedded_servers", {}).values():
                ports |= {int(a.rsplit(":", 1)[1]) for a in addresses}
        assert ports, "no embedded server was seen: the run was signalled too early to test anything"
        listening = [p for p in ports if _listening(p)]
        assert not listening, f"redis-server still listening on {listening}"

    def kill_leftovers(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        for pid in self.tree.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _history_rows(run: BenchRun) -> int:
    """Rows Locust has written to the first cell's stats history (header excluded)."""
    files = list(run.out.glob("cells/*/repeat-1/locust_stats_history.csv"))
    return max(0, len(files[0].read_text().splitlines()) - 1) if files else -1


def _is_locust(cmd: str) -> bool:
    """A Locust process (master or worker): python running the suite's locustfile."""
    words = cmd.split()
    return bool(words) and "python" in Path(words[0]).name and "locustfiles/queue.py" in cmd


def _locust_running(run: BenchRun) -> bool:
    return any(_is_locust(cmd) for cmd in run.tree.alive().values())


def _node_restarted(run: BenchRun) -> bool:
    """A port served by a second redis-server: the killed node started again by the restore."""
    ports = list(run.tree.redis_servers().values())
    return len(ports) > len(set(ports))


def _redis_starting(run: BenchRun) -> bool:
    return any("redis-server" in cmd for cmd in run.tree.alive().values())


@pytest.fixture
def bench_run(tmp_path: Path):
    runs: list[BenchRun] = []

    def start(scenario: str) -> BenchRun:
        runs.append(BenchRun(tmp_path, scenario))
        return runs[-1]

    yield start
    for run in runs:
        run.kill_leftovers()


def test_sigkill_mid_cell_kills_locust_its_workers_and_the_servers(bench_run) -> None:
    """PR_SET_PDEATHSIG on Locust, and on the workers `--processes` forks (the kernel clears it on
    fork; a worker whose master died runs on for Locust's 60 s heartbeat timeout)."""
    run = bench_run(STANDALONE + "processes = 2\n")
    run.wait_for("load (Locust stats history)", lambda: _history_rows(run) >= 0)
    # the workers fork a moment after the master starts its history: wait for all three
    run.wait_for("a Locust master and 2 workers", lambda: sum(map(_is_locust, run.tree.alive().values())) == 3)
    assert run.signal(signal.SIGKILL) == -signal.SIGKILL
    run.assert_nothing_left()
    assert run.summary()["complete"] is False  # written at the start, never completed


def test_sigint_during_the_first_cell_keeps_what_it_measured(bench_run, tmp_path: Path) -> None:
    run = bench_run(STANDALONE)
    # Locust writes a history row at the start, then one a second: 3 rows = past the warm-up.
    run.wait_for("2 s of load", lambda: _history_rows(run) >= 3)
    assert run.signal(signal.SIGINT) == 130, run.stderr[-2000:]
    run.assert_nothing_left()
    summary = run.summary()
    assert summary["complete"] is False and summary["incomplete_reason"] == "interrupted (Ctrl-C)"
    (cell,) = summary["cells"]
    assert cell["complete"] is False and cell["ops"], cell  # Locust's partial results were collected
    assert cell["repeats"][0]["incomplete_reason"] == "interrupted (Ctrl-C)"
    assert not list(run.tmp.glob("bench-run-*")), "the run's temporary folder was left"


def test_sigterm_at_start_up_exits_143_and_stops_the_starting_servers(bench_run) -> None:
    """While the embedded cluster starts (its servers exist, Locust does not yet)."""
    run = bench_run(CLUSTER_KILL)
    run.wait_for("a redis-server of the run", lambda: _redis_starting(run), timeout=60)
    assert not _locust_running(run)
    assert run.signal(signal.SIGTERM) == 143, run.stderr[-2000:]
    run.assert_nothing_left()
    summary = run.summary()
    assert summary["complete"] is False and summary["incomplete_reason"] == "terminated (SIGTERM)"
    assert summary["cells"] == [] and "terminated" in run.stderr + run.stdout
    assert not list(run.tmp.glob("bench-run-*")), "the run's temporary folder was left"


def test_sigterm_during_the_restore_after_a_kill_keeps_the_cell(bench_run) -> None:
    """The load of the faulted cell is over (Locust wrote its summary and exited) and the harness
    has restarted the killed node: it waits for the cluster to heal, then drains. SIGTERM lands
    in that wait; what Locust measured is kept."""
    run = bench_run(CLUSTER_KILL)
    run.wait_for(
        "the restart of the killed node after the load",
        lambda: bool(list(run.out.glob("cells/*/repeat-1/summary.json"))) and _node_restarted(run),
        timeout=120,
    )
    assert not _locust_running(run)
    assert run.signal(signal.SIGTERM) == 143, run.stderr[-2000:]
    run.assert_nothing_left()
    summary = run.summary()
    assert summary["complete"] is False and summary["incomplete_reason"] == "terminated (SIGTERM)"
    (cell,) = summary["cells"]
    assert cell["complete"] is False and cell["ops"]
    assert cell["repeats"][0]["incomplete_reason"] == "terminated (SIGTERM)"
    assert not list(run.tmp.glob("bench-run-*")), "the run's temporary folder was left"


# Producers only, in batches: a backlog the drain takes many seconds to count (drain_timeout far off).
BACKLOG = STANDALONE.replace("drain_timeout = 5", "drain_timeout = 120") + (
    "producer_weight = 1\nconsumer_weight = 0\nmixed_weight = 0\nbatch_size = 20\n"
)


def test_sigkill_during_the_drain_keeps_the_cell_for_the_report(bench_run) -> None:
    """Crash-safe results: the cell's record (what Locust measured) is in summary.json before the drain
    starts, so a SIGKILL in the drain leaves a cell `bench report` shows, marked, with nothing called lost."""
    run = bench_run(BACKLOG)
    run.wait_for(
        "the end of the load (Locust's summary written, Locust gone)",
        lambda: bool(list(run.out.glob("cells/*/repeat-1/summary.json"))) and not _locust_running(run),
        timeout=90,
    )
    time.sleep(0.5)  # into the drain of a backlog of thousands of tasks
    assert run.signal(signal.SIGKILL) == -signal.SIGKILL
    run.assert_nothing_left()  # by the tree and by summary.json's embedded_servers
    report = _bench("report", str(run.out))
    assert report.returncode == 0, report.stderr[-2000:]
    (cell,) = run.summary()["cells"]
    assert cell["provisional"] is True and cell["complete"] is False, cell.get("incomplete_reason")
    assert cell["incomplete_reason"] == "drain not finished" and cell["ops"]["enqueue_many"]["count"] > 0
    audit = cell["audit"]
    assert audit["enqueued_ok"] > 0 and audit["undelivered"] > 0, audit
    assert not any(k.startswith("lost") for k in audit), audit  # not delivered yet is not lost
    text = (run.out / "report.md").read_text()
    assert "recovered after the run was killed: drain not finished; delivered/lost unknown" in text
    (row,) = [line for line in text.splitlines() if "not yet delivered" in line]
    assert f"unknown ({audit['undelivered']:,} not yet delivered)" in row, row


def _bench(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_up_with_a_server_that_never_answers_leaves_nothing(tmp_path: Path, kind: str) -> None:
    pid_file = tmp_path / "fake.pid"
    fake = tmp_path / "fake-redis-server"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    fake.chmod(0o755)
    state = tmp_path / "state"
    if kind == "standalone":
        port = ["--port", str(free_port(start=26500))]
    else:
        port = ["--base-port", str(free_port(span=6, start=26700, bus_offset=10000))]
    started = time.monotonic()
    done = _bench(
        "up",
        kind,
        *port,
        "--state-dir",
        str(state),
        env={"REDIS_SERVER_BIN": str(fake), "TQB_SERVER_START_TIMEOUT": "2"},
    )
    assert time.monotonic() - started < 20
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1 and "did not answer PING within 2s" in done.stderr
    pid = int(pid_file.read_text())
    fields = _stat(pid)
    assert fields is None or fields[0] == "Z", f"{fake} (pid {pid}) is still running"
    assert not state.exists(), list(state.rglob("*"))  # no data folder, no state file


def test_down_with_a_corrupt_state_file_stops_servers_by_their_pid_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port(start=26600)
    up = _bench("up", "standalone", "--port", str(port), "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    pid = json.loads((state / "state.json").read_text())["standalone"]["servers"][0]["pid"]
    try:
        assert not list(state.glob("state.json.*.tmp"))  # written through a temporary file, then renamed
        (state / "state.json").write_text('{"standalone": {"servers": [')  # cut short
        down = _bench("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
        assert f"127.0.0.1:{port} (pid {pid}, found by its pid file" in down.stdout
        assert not pid_is_redis(pid, port)
        assert not (state / "state.json").exists() and not (state / "standalone").exists()
    finally:
        if pid_is_redis(pid, port):
            os.kill(pid, signal.SIGKILL)

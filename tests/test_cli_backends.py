"""`bench up/status/down` as a user runs them (subprocesses), and bad input -> exit 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ports import free_port
from bench.servers import pid_is_redis


def bench(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port(start=26000)
    base = free_port(span=6, start=27000, bus_offset=10000)
    try:
        up = bench("up", "standalone", "--port", str(port), "--state-dir", str(state), "--maxmemory", "32mb")
        assert up.returncode == 0, up.stderr
        assert f"redis://127.0.0.1:{port}/0" in up.stdout
        up = bench("up", "cluster", "--base-port", str(base), "--node-timeout", "2000", "--state-dir", str(state))
        assert up.returncode == 0, up.stderr
        recorded = json.loads((state / "state.json").read_text())
        servers = [s for kind in recorded.values() for s in kind["servers"]]
        assert len(servers) == 7
        assert all(pid_is_redis(s["pid"], s["port"]) for s in servers)
        status = bench("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stderr
        assert status.stdout.count("master") >= 4 and status.stdout.count("slave") == 3
        assert "32.00M" in status.stdout and "ok" in status.stdout
        again = bench("up", "standalone", "--port", str(port), "--state-dir", str(state))
        assert again.returncode == 2 and "already" in again.stderr
    finally:
        down = bench("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    assert not any(pid_is_redis(s["pid"], s["port"]) for s in servers)
    assert bench("down", "--state-dir", str(state)).returncode == 0  # idempotent


def test_port_taken_names_the_owner(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = bench("up", "standalone", "--port", str(port), "--state-dir", str(tmp_path))
    assert done.returncode == 2
    assert f"port {port}" in done.stderr and "in use by" in done.stderr and f"(pid {os.getpid()})" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["up", "nosuch"], "invalid choice"),
        (["up", "standalone", "--maxmemory", "lots"], "maxmemory 'lots' is not valid"),
        (["up", "cluster", "--masters", "2"], "at least 3 masters"),
        (["status", "--cluster-nodes", "localhost"], "bad cluster node"),
        (["up", "standalone", "--server-bin", "/no/such/redis-server"], "not an executable"),
    ],
)
def test_bad_input_exit_2_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    done = bench(*args, "--state-dir", str(tmp_path)) if args[0] != "up" or args[1] != "nosuch" else bench(*args)
    assert done.returncode == 2, done
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_no_server_binary_anywhere(tmp_path: Path) -> None:
    done = bench("up", "standalone", "--state-dir", str(tmp_path), env={"PATH": str(tmp_path), "REDIS_SERVER_BIN": ""})
    assert done.returncode == 2
    assert "no redis-server or valkey-server" in done.stderr and "apt-get install" in done.stderr

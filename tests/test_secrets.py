"""Passwords stay secret: not in `ps`, not in Locust's web UI page, not in any file a run writes.
Against a real requirepass server, so a redaction that does nothing fails here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import SERVER_PASSWORD, wait_until

from bench.ports import free_port
from bench.secrets import redact_arg, redacted_argv
from bench.servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
LOCUST = [sys.executable, "-m", "locust", "-f", "locustfiles/queue.py"]


def command_lines() -> list[str]:
    """Every process's command line on this machine, as `ps` shows it."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


def has_rows(results: Path) -> bool:
    """A Locust results folder whose streamed timeseries.csv has a data row: that process is under load."""
    path = results / "timeseries.csv"
    return path.exists() and len(path.read_text().splitlines()) >= 2


def files_containing(folder: Path, needle: str) -> list[Path]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(path)
    return hits


@pytest.mark.parametrize(
    ("arg", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("--redis-url=redis://user:pw@h:1/0", "--redis-url=redis://***@h:1/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("--users", "--users"),
        ("redis://:pw@h:notaport/0", "redis://***@h:notaport/0"),
    ],
)
def test_redact_arg(arg: str, shown: str) -> None:
    assert redact_arg(arg) == shown
    assert redacted_argv(["locust", "--redis-url", arg]) == ["locust", "--redis-url", shown]


def test_locust_web_ui_ps_and_results_never_show_the_password(password_server: RedisServer, tmp_path: Path) -> None:
    url = f"redis://:{SERVER_PASSWORD}@127.0.0.1:{password_server.port}/0"
    web_port = free_port(start=28600)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*LOCUST, "--web-host", "127.0.0.1"],
        cwd=ROOT,
        env={**os.environ, "TQB_REDIS_URL": url}
        | {"LOCUST_WEB_PORT": str(web_port), "LOCUST_AUTOSTART": "true", "LOCUST_AUTOQUIT": "3"}
        | {"LOCUST_USERS": "2", "LOCUST_SPAWN_RATE": "2", "LOCUST_RUN_TIME": "4s", "TQB_RESULTS_DIR": str(out)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # and a second Locust with the password on its command line, as a user might type it
    typed = subprocess.Popen(
        [*LOCUST, "--headless", "-u", "1", "-t", "4s", "--redis-url", url, "--results-dir", str(tmp_path / "typed")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=2) as response:
                    page = response.read().decode()
            except OSError:
                time.sleep(0.2)
        assert "redis_url" in page  # the option is on the page, only redacted
        assert SERVER_PASSWORD not in page
        # both processes have measured a second of load (their per-second timeseries.csv has a row), and still run
        wait_until(lambda: has_rows(out) and has_rows(tmp_path / "typed"), 30, "both Locusts under load")
        assert proc.poll() is None and typed.poll() is None
        assert not [c for c in command_lines() if SERVER_PASSWORD in c]
        _, err = proc.communicate(timeout=60)
        typed.wait(timeout=60)
    finally:
        for p in (proc, typed):
            if p.poll() is None:
                p.kill()
    assert SERVER_PASSWORD not in err
    summary = (out / "summary.json").read_text()
    assert '"enqueue"' in summary  # it did connect with the password and ran
    assert files_containing(tmp_path, SERVER_PASSWORD) == []


def test_bench_run_on_a_password_server_keeps_it_out_of_ps_and_results(
    password_server: RedisServer, tmp_path: Path
) -> None:
    url = f"redis://:{SERVER_PASSWORD}@127.0.0.1:{password_server.port}/0"
    scenario = tmp_path / "one.toml"
    scenario.write_text('name = "one"\n[params]\nbackend = "standalone"\nduration = 3\nwarmup = 0\nusers = 2\n')
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(scenario), "--redis-url", url, "--allow-flush", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen_locust = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if not (out / "summary.json").exists():  # until Python has started and run bench's first line
                time.sleep(0.05)
                continue
            lines = command_lines()
            assert not [c for c in lines if SERVER_PASSWORD in c]  # bench itself and its Locust child
            seen_locust = seen_locust or any("locustfiles/queue.py" in c and str(out) in c for c in lines)
            time.sleep(0.3)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert seen_locust  # the check above ran while the load was on
    assert SERVER_PASSWORD not in stdout + stderr
    summary = (out / "summary.json").read_text()
    assert '"complete": true' in summary and f"127.0.0.1:{password_server.port}" in summary
    assert files_containing(out, SERVER_PASSWORD) == []

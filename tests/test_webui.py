"""Locust's web UI as a user drives it (HTTP API: POST /swarm, POST /stop), against a real
standalone server: one results folder per test, the TaskQueue tab's live µs data, no e2e among
Locust's requests, the start form's grouped options and no "missing host" banner. Plus the tab's
pure parts (live histograms, rows) without Locust."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import webui
from bench.metrics import Recorder
from bench.options import OPTIONS, WEB_UI_GROUPS, grouped_options
from bench.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "queue.py")]


class WebLocust:
    """A Locust with its web UI on a free port, in ``cwd`` (results/ lands there)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port(start=28700)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*LOCUST, "--web-host", "127.0.0.1", "--web-port", str(self.port), *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=20) as response:
            return response.read().decode()

    def post(self, path: str, form: dict[str, Any] | None = None) -> dict[str, Any]:
        data = urllib.parse.urlencode(form or {}).encode()
        with urllib.request.urlopen(urllib.request.Request(self.base + path, data=data), timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def json(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.get(path))
        return result

    def stop_process(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return err


@pytest.fixture
def web_locust(standalone, tmp_path: Path) -> Iterator[WebLocust]:
    locust = WebLocust(
        tmp_path,
        *["--redis-url", standalone.url, "--queue-name", f"webui-{tmp_path.name}", "--pool-size", "8"],
        *["--audit", "true"],
    )
    try:
        yield locust
    finally:
        if locust.proc.poll() is None:
            locust.proc.kill()
            locust.proc.wait(timeout=10)


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def test_start_stop_start_stop_gives_two_results_folders_and_a_live_tab(web_locust: WebLocust, tmp_path: Path) -> None:
    folders: list[Path] = []
    results = tmp_path / "results"

    def written() -> list[Path]:
        return sorted(results.glob("locust-*/summary.json"))

    for test in (1, 2):
        assert web_locust.post("/swarm", {"user_count": 4, "spawn_rate": 4})["success"]

        earlier = {str(Path("results") / f.name) for f in folders}

        def live_enqueue(earlier: set[str] = earlier) -> dict[str, Any] | None:  # this test's, not the last one's
            snap = web_locust.json("/taskqueue/stats")
            if snap["results_dir"] in earlier:
                return None
            enqueue = snap["ops"].get("enqueue") or {}
            return snap if enqueue.get("count") and snap["ops"].get("e2e", {}).get("count") else None

        # during the run, at once: µs percentiles from the HDR data including the open seconds
        # (a second is final only ~6 s after it ends)
        snap = wait_for(live_enqueue, timeout=5.0)
        assert snap, "the TaskQueue tab's JSON never showed enqueues"
        assert snap["unit"] == "us" and snap["state"] in ("spawning", "running")
        for op in ("enqueue", "dequeue", "ack", "e2e"):
            s = snap["ops"][op]
            assert isinstance(s["p50_us"], int) and 0 < s["p50_us"] <= s["p99_us"] <= s["p999_us"] <= s["max_us"]
        assert snap["e2e"] == snap["ops"]["e2e"]
        assert isinstance(snap["queue"]["depth"], int) and isinstance(snap["queue"]["inflight"], int)
        assert snap["queue"]["error"] is None
        assert snap["audit"]["enqueued_ok"] > 0 and snap["audit"]["duplicates"] == 0
        config = snap["config"]
        assert config["backend"] == "standalone" and config["pool_size"] == 8 and config["server_versions"]
        assert "127.0.0.1" in config["target"]

        # the tab: its rows ride on Locust's own stats poll; Locust's requests hold no e2e
        polled = web_locust.json("/stats/requests")
        assert "e2e" not in {s["name"] for s in polled["stats"]}
        [tab] = [t for t in polled["extended_stats"] if t["key"] == webui.TAB_KEY]
        items = [row["item"] for row in tab["data"]]
        assert items[:4] == ["enqueue", "dequeue", "ack", webui.OP_LABELS["e2e"]]  # in this order, not sorted
        assert {"queue depth", "inflight leases", "audit: undelivered", "backend", "pool"} <= set(items)
        assert web_locust.post("/stop")["success"]
        summaries = wait_for(lambda n=test: len(written()) == n and written())
        assert summaries and len(summaries) == test, written()
        folders = [s.parent for s in summaries]
        assert json.loads(summaries[-1].read_text())["kind"] == "load-run"
    first, second = (json.loads((f / "summary.json").read_text()) for f in folders)
    assert first["started_at"] < second["started_at"]
    for summary in (first, second):
        assert summary["ops"]["enqueue"]["count"] > 0 and summary["ops"]["e2e"]["count"] > 0
    err = web_locust.stop_process()
    assert "Traceback" not in err
    for folder in folders:  # the log says where each test's µs results went
        assert f"TaskQueue µs results in {Path('results') / folder.name}/" in err
    assert "µs latencies (Locust's tables above round to whole ms)" in err


def test_start_form_groups_options_and_shows_the_backend_as_host(web_locust: WebLocust, standalone) -> None:
    page = web_locust.get("/")
    raw = page.split("window.templateArgs = ", 1)[1].split("\n", 1)[0]
    args = json.loads(raw)
    assert args["missing_host_warning"] is False  # no "User class has no host" banner
    assert args["host"] == webui.display_target(standalone.target) != ""
    extra = args["extra_options"]
    expected = [opt.dest for _, opt, _ in grouped_options()]
    assert list(extra) == expected  # group by group, not alphabetical
    assert extra["pool_size"]["help_text"].startswith("Pool: ")
    assert extra["redis_url"]["help_text"].startswith("Backend: ")
    assert args["extended_tabs"] == [{"title": "TaskQueue", "key": webui.TAB_KEY}]


# -- without Locust ---------------------------------------------------------------------------------


def test_every_option_is_in_exactly_one_web_ui_group() -> None:
    listed = [dest for _, entries in WEB_UI_GROUPS for dest, _ in entries]
    assert sorted(listed) == sorted(opt.dest for opt in OPTIONS)
    assert [g for g, _ in WEB_UI_GROUPS] == ["Backend", "Pool", "Load shape", "Queue", "Results"]
    assert all(len(label) <= 45 for _, entries in WEB_UI_GROUPS for _, label in entries)  # not cut in the form


def test_live_histograms_add_open_seconds_without_changing_the_recorder() -> None:
    now = [1000.2]
    recorder = Recorder(clock=lambda: now[0])
    for us in (100, 200, 300):
        recorder.record("enqueue", us)
    recorder.finalize(before=1001)  # second 1000 is final: cumulative
    now[0] = 1001.5
    recorder.record("enqueue", 5000)  # second 1001 is still open
    hists, warming = webui.live_histograms(recorder, now=1001.6)
    assert not warming
    assert hists["enqueue"].get_total_count() == 4 and hists["enqueue"].get_max_value() >= 4990
    assert recorder.cumulative["enqueue"].get_total_count() == 3  # untouched
    assert sum(h.get_total_count() for h in recorder._open[1001].values()) == 1


def test_tab_rows_keep_operations_first_and_format_numbers() -> None:
    snap = {
        "in_warmup": False,
        "ops": {
            "enqueue": {"count": 12345, "ops_per_s": 1234.5, "p50_us": 250, "p99_us": 1200, "max_us": 9000},
            "e2e": {"count": 10, "ops_per_s": 1.0, "p50_us": 2_500_000, "max_us": 3_000_000},
        },
        "queue": {"depth": 4321, "inflight": 2, "error": None},
        "audit": None,
        "rejected_by_class": {"oom": 3},
        "config": {"backend": "standalone", "target": "redis://h:1/0", "server_versions": ["redis 7.2"]}
        | {"pool_size": 50, "pool_class": "ConnectionPool", "load_processes": 1, "queue": "q", "engine": "list"},
        "results_dir": "results/locust-x",
    }
    rows = webui.table_rows(snap)
    assert [r["item"] for r in rows[:2]] == ["enqueue", webui.OP_LABELS["e2e"]]
    assert rows[0]["count"] == "12,345" and rows[0]["rate"] == "1,234.5" and rows[0]["p50"] == "250"
    assert "p50 2.50 s" in rows[1]["detail"]
    by_item = {r["item"]: r for r in rows}
    assert by_item["queue depth"]["count"] == "4,321" and by_item["rejected: oom"]["count"] == "3"
    assert "off" in by_item["audit"]["detail"]
    assert all("name" not in r for r in rows)  # Locust's table would sort rows by "name"


def test_bench_options_lists_every_option_by_group() -> None:
    """Locust prints ``--help`` before it loads the locustfile, so only ``bench options`` lists them."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "options"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    headings = [line[:-1] for line in lines[1:] if line.endswith(":") and not line.startswith(" ")]
    assert headings == [g for g, _ in WEB_UI_GROUPS]
    for opt in OPTIONS:
        assert f"  {opt.flag} " in done.stdout and opt.env in done.stdout and opt.help in done.stdout
    assert "--stop-timeout defaults to 10 s" in done.stdout

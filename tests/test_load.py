"""The locustfile run headless as users run it, against real standalone and cluster backends."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until

from bench.ports import free_port
from taskqueue import TaskQueue

LOCUST = [sys.executable, "-m", "locust", "-f", "locustfiles/queue.py"]
ROOT = Path(__file__).resolve().parent.parent


def run_locust(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOCUST, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def locust_counts(json_file: Path) -> dict[str, int]:
    """Locust's own request counts, from --json-file (written after the users stopped)."""
    return {e["name"]: int(e["num_requests"]) for e in json.loads(json_file.read_text())}


def check_results(out: Path, locust_csv: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    ops = summary["ops"]
    assert summary["complete"] is True
    assert ops["enqueue"]["count"] > 0 and ops["dequeue"]["count"] > 0 and ops["ack"]["count"] > 0
    assert summary["errors"] == {}
    assert "raw_lpush" not in ops  # the baseline user only runs when asked (--raw-lpush-weight)
    # sub-millisecond latencies are present as µs values, not rounded to whole ms
    assert 0 < ops["enqueue"]["p50_us"] < 100_000 and ops["enqueue"]["p50_us"] % 1000 != 0
    assert ops["enqueue"]["p50_us"] <= ops["enqueue"]["p99_us"] <= ops["enqueue"]["max_us"]
    with open(out / "timeseries.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["operation"] for r in rows} >= {"enqueue", "dequeue", "ack", "e2e"}
    assert len({r["t_s"] for r in rows}) >= 2
    assert (out / "hgrm" / "enqueue.hgrm").read_text().startswith("       Value")
    effective = summary["effective"]
    assert effective["queue"]["pool_size"] == summary["options"]["pool_size"]
    assert all(node["server_version"] for node in effective["servers"]["nodes"].values())
    # every operation Locust counted is in the HDR histograms, no more, no less
    counts = locust_counts(locust_csv)
    for op in ("enqueue", "dequeue", "ack"):
        assert ops[op]["count"] == counts[op], (op, ops[op]["count"], counts[op])
    assert "e2e" not in counts  # end-to-end latency is not a Locust request (only in the results)
    assert ops["e2e"]["count"] == ops["dequeue"]["count"]
    return summary


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_headless_run_writes_us_results(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    backend = request.getfixturevalue(kind)
    target = ["--redis-url", backend.url] if kind == "standalone" else ["--cluster-nodes", ",".join(backend.nodes)]
    out = tmp_path / "run"
    done = run_locust(
        *["--headless", "-u", "4", "-r", "4", "-t", "3s"],
        *target,
        "--queue-name",
        f"load-{kind}",
        *["--pool-size", "8", "--results-dir"],
        str(out),
        "--json-file",
        str(tmp_path / "locust"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = check_results(out, tmp_path / "locust.json")
    assert summary["effective"]["queue"]["backend"] == kind
    if kind == "cluster":
        assert summary["effective"]["queue"]["partitions"] >= 3
        assert len(summary["effective"]["servers"]["nodes"]) == 6


def test_processes_2_merges_worker_histograms(standalone, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_locust(
        *["--headless", "--processes", "2", "-u", "4", "-r", "4", "-t", "4s", "--redis-url"],
        standalone.url,
        *["--queue-name", "load-procs", "--results-dir"],
        str(out),
        "--json-file",
        str(tmp_path / "locust"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    check_results(out, tmp_path / "locust.json")


def test_master_and_two_workers_on_loopback(standalone, tmp_path: Path) -> None:
    port = free_port(start=28000)
    out = tmp_path / "run"
    master = subprocess.Popen(
        [
            *LOCUST,
            *["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port"],
            str(port),
            *["--expect-workers", "2", "--headless", "-u", "4", "-r", "4", "-t", "4s", "--redis-url"],
            standalone.url,
            *["--queue-name", "load-dist", "--results-dir"],
            str(out),
            "--json-file",
            str(tmp_path / "locust"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    workers = [
        subprocess.Popen(
            [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        output, _ = master.communicate(timeout=90)
        assert master.returncode == 0, output[-2000:]
        summary = check_results(out, tmp_path / "locust.json")
        assert summary["locust"]["workers"] == 2
    finally:
        for proc in [master, *workers]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def test_open_loop_rate_records_corrected_and_service_latency(standalone, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_locust(
        *["--headless", "-u", "4", "-r", "4", "-t", "3s", "--redis-url"],
        standalone.url,
        *["--queue-name", "load-rate", "--rate", "400", "--results-dir"],
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ops = json.loads((out / "summary.json").read_text())["ops"]
    assert {"enqueue", "enqueue_service", "send_lag"} <= ops.keys()
    # 400/s for ~3 s: the schedule holds the offered rate (generous bounds: this is behaviour, not speed)
    assert 600 <= ops["enqueue"]["count"] <= 1300
    assert ops["enqueue"]["p50_us"] >= ops["enqueue_service"]["p50_us"]
    coverage = json.loads((out / "summary.json").read_text())["open_loop"]
    assert coverage["rate"] == 400 and coverage["rate_reached"] is True
    # every send made is counted once it returns; up to one per user may still be in flight at the stop
    assert 0 <= coverage["issued"] - ops["enqueue"]["count"] <= 4
    assert coverage["backlog"] == coverage["planned"] - coverage["issued"]


def test_open_loop_rate_out_of_reach_is_reported_not_hidden(standalone, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_locust(
        *["--headless", "-u", "4", "-r", "4", "-t", "4s", "--redis-url"],
        standalone.url,
        *["--queue-name", "load-rate-high", "--rate", "200000", "--results-dir"],
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    coverage = summary["open_loop"]
    # 200,000/s from 4 users in one process: far out of reach on any machine
    assert coverage["rate_reached"] is False and coverage["coverage"] < 0.5
    assert 0 <= coverage["issued"] - summary["ops"]["enqueue"]["count"] <= 4
    assert coverage["planned"] >= 200_000 * 3  # due over the ~4 s run
    assert coverage["backlog"] == coverage["planned"] - coverage["issued"] > 0
    assert coverage["backlog_oldest_delay_s"] > 1.0
    assert 0 < coverage["achieved_rate"] < 100_000
    assert "only" in done.stderr and "of the planned sends were made" in done.stderr


def test_unreachable_cluster_counts_typed_failures_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_locust(
        *["--headless", "-u", "2", "-r", "2", "-t", "2s", "--cluster-nodes", "127.0.0.1:1"],
        *["--audit", "true", "--results-dir", str(out)],
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: Locust's exit code when requests failed
    assert "Traceback" not in done.stderr and "Uncaught exception" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    errors = summary["errors_including_warmup"]
    assert set(errors) >= {"enqueue", "dequeue"}
    assert all(set(kinds) == {"cluster_unreachable"} for kinds in errors.values()), errors
    total = sum(n for kinds in errors.values() for n in kinds.values())
    # with the 5 ms backoff after each failure, 2 users cannot fail more than ~400 times/s each
    assert 0 < total <= 2 * 2 * 400
    audit = summary["audit_during_load"]
    assert audit["rejected"] == errors["enqueue"]["cluster_unreachable"] and audit["enqueued_ok"] == 0
    assert "lost" not in audit and audit["undelivered"] == 0


def test_interrupted_run_still_writes_incomplete_results(standalone, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with open(tmp_path / "stderr.txt", "w") as stderr:  # a file: a pipe nobody reads could fill and stall Locust
        proc = subprocess.Popen(
            [
                *LOCUST,
                *["--headless", "-u", "2", "-r", "2", "-t", "60s", "--redis-url"],
                standalone.url,
                *["--queue-name", "load-int", "--checkpoint-interval", "1", "--results-dir"],
                str(out),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        # Ctrl-C once the run has measured enqueues (its first checkpoint says so), not after a guessed sleep
        checkpoint = wait_until(lambda: enqueues_checkpointed(out, proc), 30, "a checkpoint with enqueues")
        assert proc.poll() is None and checkpoint["complete"] is False
        proc.send_signal(2)  # Ctrl-C
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and "stopped after" in summary["incomplete_reason"]  # not the checkpoint
    assert summary["ops"]["enqueue"]["count"] >= checkpoint["ops"]["enqueue"]["count"] > 0


def enqueues_checkpointed(out: Path, proc: subprocess.Popen) -> dict | None:
    assert proc.poll() is None, (out.parent / "stderr.txt").read_text()[-2000:]
    try:
        checkpoint = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return None
    return checkpoint if checkpoint["ops"].get("enqueue", {}).get("count") else None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backend", "nope"], "invalid choice"),
        (["--rate", "-5"], "--rate -5.0: must be >= 0"),
        (["--pool-size", "0"], "--pool-size 0: must be >= 1"),
        (["--payload-bytes", "999999999"], "--payload-bytes 999999999"),
        (["--cluster-nodes", "nohost"], "bad cluster node"),
    ],
)
def test_bad_options_stop_before_load(args: list[str], needle: str, tmp_path: Path) -> None:
    done = run_locust("--headless", "-u", "1", "-t", "2s", *args, "--results-dir", str(tmp_path / "r"), timeout=60)
    assert done.returncode == 2, done.stderr[-1000:]
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_locustfile_imports_without_shadowing_stdlib_queue() -> None:
    code = (
        "import runpy,sys; runpy.run_path('locustfiles/queue.py', run_name='queue'); import queue; print(queue.Empty)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert done.returncode == 0, done.stderr
    assert "queue.Empty" in done.stdout


def test_long_run_streams_hlog_and_checkpoints_its_summary(standalone, tmp_path: Path) -> None:
    """Per-second histograms go to HdrHistogram interval logs as seconds close, and summary.json is
    rewritten (marked incomplete) every checkpoint interval: a crash keeps what was measured."""
    from bench.results import read_hlog

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *LOCUST,
            *["--headless", "-u", "4", "-r", "4", "-t", "11s", "--redis-url", standalone.url],
            *["--queue-name", "load-soak", "--audit", "true", "--checkpoint-interval", "2"],
            *["--results-dir", str(out)],
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        checkpoint = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                checkpoint = json.loads((out / "summary.json").read_text())
            except (OSError, ValueError):
                checkpoint = None
            if checkpoint and checkpoint["ops"].get("enqueue", {}).get("count"):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before a checkpoint was seen"
        assert checkpoint is not None and checkpoint["complete"] is False
        assert checkpoint["incomplete_reason"].startswith("in progress: checkpoint")
        assert (out / "audit-ids.json.gz").exists()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    final = json.loads((out / "summary.json").read_text())
    assert final["complete"] is True and final["ops"]["enqueue"]["count"] > checkpoint["ops"]["enqueue"]["count"]
    for op in ("enqueue", "dequeue", "ack"):
        intervals = read_hlog(out / "hlog" / f"{op}.hlog")
        assert len(intervals) >= 9  # one per second
        # the intervals add up to everything recorded (warm-up is 0 here): the same samples, streamed
        assert sum(h.get_total_count() for _, _, h in intervals) == final["ops"][op]["count"]
        assert all(0 < length <= 1.0 for _, length, _ in intervals)
    assert (out / "hlog" / "enqueue.hlog").read_text().startswith("#[TaskQueue Bench: enqueue latency")


def test_tags_produce_runs_only_producers_and_counts_every_stored_task(standalone, tmp_path: Path) -> None:
    """``--tags produce``: only producers run (no "No tasks defined" from the consumers). With
    the locustfile's default --stop-timeout, users finish their call at the stop: every task in
    Redis was counted, none more. The log ends with the µs table and where the results are."""
    out = tmp_path / "run"
    name = f"load-tags-{tmp_path.name}"
    done = run_locust(
        *["--headless", "-u", "4", "-r", "4", "-t", "3s", "--tags", "produce", "--redis-url", standalone.url],
        *["--queue-name", name, "--results-dir", str(out), "--json-file", str(tmp_path / "locust")],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "No tasks defined" not in done.stderr and "Traceback" not in done.stderr
    assert '"ProducerUser": 4' in done.stderr  # Locust's "All users spawned" line
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["ops"]) == {"enqueue"}
    assert locust_counts(tmp_path / "locust.json") == {"enqueue": summary["ops"]["enqueue"]["count"]}
    queue = TaskQueue(redis_url=standalone.url, name=name)
    try:
        assert (queue.depth(), queue.inflight()) == (summary["ops"]["enqueue"]["count"], 0)
    finally:
        queue.purge()
        queue.close()
    log = done.stderr
    assert f"TaskQueue µs results in {out}/" in log
    table = log.split(f"TaskQueue µs results in {out}/", 1)[1].splitlines()
    assert table[1].split()[:4] == ["operation", "count", "ops/s", "p50"]
    assert table[2].split()[0] == "enqueue" and table[2].split()[1] == f"{summary['ops']['enqueue']['count']:,}"
    assert log.rstrip().endswith(f"are in the results folder(s): {out}/")  # the last words, after Locust's tables


def test_tags_that_leave_no_user_stop_before_load(tmp_path: Path) -> None:
    done = run_locust("--headless", "-u", "1", "-t", "2s", "--tags", "nothing", "--results-dir", str(tmp_path / "r"))
    assert done.returncode == 2, done.stderr[-1000:]
    assert "--tags/--exclude-tags leave no user with a task" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()

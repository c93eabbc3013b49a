"""``bench overhead``: what the load harness and TaskQueue cost, measured side by side in one run.

On one embedded standalone server, interleaved ``repeats`` times: ``redis-benchmark -c 50 -t lpush``
(the server's own client, C), Locust with ``RawLpushUser`` (bare redis-py LPUSH, same timing +
HDR + event as ours), and Locust with ``ProducerUser`` (TaskQueue.enqueue). Only same-run ratios
of medians are reported: the machine's speed drifts between runs. Also the per-operation cost
of the harness itself (timer, histogram record, Locust request event) in this process.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import children
from .backends import BackendSpec, start_backend
from .errors import UsageError
from .locust_cmd import headless_locust
from .ports import free_port


def redis_benchmark(port: int, requests: int = 200_000) -> float:
    binary = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
    if binary is None:
        raise UsageError("redis-benchmark not found (Debian: apt-get install -y redis-tools)")
    out = children.run(  # owned: not left running if the harness is killed
        [binary, "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n", str(requests), "-t", "lpush", "-q"], timeout=300
    ).stdout
    match = re.search(r"LPUSH: ([\d.]+) requests per second", out.replace(",", ""))
    if not match:
        raise RuntimeError(f"cannot parse redis-benchmark output: {out!r}")
    return float(match.group(1))


def locust_rate(url: str, user: str, users: int, seconds: int, work: Path) -> float:
    """ops/s of one headless Locust process with only ``user`` (from our HDR counts)."""
    weights = {
        "producer": ["--producer-weight", "1", "--consumer-weight", "0"],
        "raw": ["--raw-lpush-weight", "1", "--producer-weight", "0", "--consumer-weight", "0"],
    }[user]
    out = work / f"{user}-{time.monotonic_ns()}"
    cmd = [
        *headless_locust(users, users, seconds),
        "--redis-url",
        url,
        "--warmup",
        "1",
        "--results-dir",
        str(out),
        *weights,
        "--loglevel",
        "WARNING",
    ]
    done = children.run(cmd, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"locust failed: {done.stderr[-500:]}")
    ops = json.loads((out / "summary.json").read_text())["ops"]
    return float(ops["enqueue" if user == "producer" else "raw_lpush"]["ops_per_s"])


def harness_cost_us(n: int = 20_000) -> dict[str, float]:
    """µs per operation of the harness parts: two perf_counter calls, one HDR record, one Locust
    request event with Locust's own stats listening (as in a real run); and, apart, the task
    audit's cost per task (its enqueue outcome plus its delivery, bulk conversion included)."""
    from locust.env import Environment

    from taskqueue.codec import IdFactory

    from .audit import AuditLog, count
    from .metrics import Recorder

    env = Environment(events=None)
    env.create_local_runner()
    recorder = Recorder()
    fire = env.events.request.fire
    t0 = time.perf_counter()
    for _ in range(n):
        time.perf_counter()
        time.perf_counter()
    t1 = time.perf_counter()
    for i in range(n):
        recorder.record("op", 100 + i % 400)
    t2 = time.perf_counter()
    for _ in range(n):
        fire(request_type="queue", name="op", response_time=0.2, response_length=100, exception=None, context={})
    t3 = time.perf_counter()
    new_id = IdFactory()
    ids = [new_id() for _ in range(n)]
    audit = AuditLog()
    t4 = time.perf_counter()
    for task_id in ids:
        audit.produce([task_id], "ok")
    for task_id in ids:
        audit.deliver(task_id)
    count(audit)  # converts what is still buffered
    t5 = time.perf_counter()
    return {
        "timer": (t1 - t0) / n * 1e6,
        "hdr_record": (t2 - t1) / n * 1e6,
        "locust_event": (t3 - t2) / n * 1e6,
        "audit_per_task": (t5 - t4) / n * 1e6,
    }


# Importing locust runs gevent's ``monkey.patch_all()``; in the ``bench`` process redis-py (and so
# ssl) is already imported, hence gevent's MonkeyPatchWarning (ssl patched after import) when the
# harness cost was measured in-process. It runs in a child that imports locust first instead, as
# a Locust process does, and the bench process is never monkey-patched.
HARNESS_CHILD = (
    "import locust, json, sys; from bench.overhead import harness_cost_us; "
    "print(json.dumps(harness_cost_us(int(sys.argv[1]))))"
)


def harness_cost_in_child(n: int = 20_000) -> dict[str, float]:
    """``harness_cost_us`` in a fresh interpreter that imports locust (and so patches) first."""
    done = children.run([sys.executable, "-c", HARNESS_CHILD, str(n)], timeout=300)
    if done.stderr:
        sys.stderr.write(done.stderr)  # a warning there is the child's: shown, not swallowed
    if done.returncode != 0:
        raise RuntimeError(f"harness cost measurement failed: {done.stderr[-500:]}")
    return {k: float(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def measure(users: int = 20, seconds: int = 8, repeats: int = 3, server_bin: str | None = None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    backend = start_backend(
        BackendSpec("standalone", port=free_port(start=29000), server_bin=server_bin, state_dir=work / "state")
    )
    samples: dict[str, list[float]] = {
        "redis-benchmark -c 50 lpush": [],
        "locust raw LPUSH": [],
        "locust TaskQueue.enqueue": [],
    }
    try:
        url = backend.target["redis_url"]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        for _ in range(repeats):  # interleaved, so drift hits all three alike
            samples["redis-benchmark -c 50 lpush"].append(redis_benchmark(port))
            samples["locust raw LPUSH"].append(locust_rate(url, "raw", users, seconds, work))
            samples["locust TaskQueue.enqueue"].append(locust_rate(url, "producer", users, seconds, work))
            backend.flush()
    finally:
        backend.stop()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "users": users,
        "seconds": seconds,
        "repeats": repeats,
        "samples": samples,
        "median_ops_per_s": medians,
        "enqueue_vs_raw_lpush": medians["locust TaskQueue.enqueue"] / medians["locust raw LPUSH"],
        "raw_lpush_vs_redis_benchmark": medians["locust raw LPUSH"] / medians["redis-benchmark -c 50 lpush"],
        "enqueue_vs_redis_benchmark": medians["locust TaskQueue.enqueue"] / medians["redis-benchmark -c 50 lpush"],
        "harness_us_per_op": harness_cost_in_child(),
    }

"""The results folder of a Locust run: summary.json and friends, written at the end and as
checkpoints during a long run, the µs summary table logged at the end, and the configuration
read back from client and servers."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent

from taskqueue.settings import redact_url

from . import adapters, backends
from .audit import count
from .livestatus import write_status
from .load_ops import make_queue
from .load_state import STATE
from .metrics import merge_timelines
from .options import LoadOptions
from .results import environment_info, write_load_run
from .schedule import merge_coverage
from .stats import latency_cell

log = logging.getLogger("taskqueue-bench")


def finalizer_loop() -> None:
    # Worker reports arrive every ~3 s, so seconds are closed 6 s after they end. A long run
    # rewrites its summary (marked incomplete) every checkpoint interval: a crash keeps its data.
    next_checkpoint = time.time() + STATE.opts.checkpoint_interval
    while True:
        if STATE.results_dir is not None and STATE.environment is not None:  # bench run's live progress
            write_status(STATE.results_dir, STATE.environment, STATE.started_at, STATE.opts.warmup)
        gevent.sleep(1.0)
        STATE.recorder.finalize(before=time.time() - 6)
        if time.time() >= next_checkpoint:
            next_checkpoint += STATE.opts.checkpoint_interval
            write_results(checkpoint=True)


def results_dir_for(opts: LoadOptions, started_at: float) -> Path:
    """``--results-dir``, else ``results/locust-<UTC time>``; a second test in the same Locust
    (web UI restart) never writes over the first one's folder."""
    stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path(opts.results_dir or f"results/locust-{stamp}")
    candidate, n = base, 1
    while candidate in STATE.used_results_dirs:
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    STATE.used_results_dirs.add(candidate)
    return candidate


def open_loop_coverage(elapsed_s: float) -> dict[str, Any] | None:
    """This run's offered vs made sends (all processes), or None for a closed loop."""
    if STATE.opts.rate <= 0:
        return None
    parts = list(STATE.worker_open_loop.values()) if STATE.is_master else [STATE.open_loop or {}]
    result = merge_coverage(parts, STATE.opts.rate, elapsed_s)
    if not result["rate_reached"] and not STATE.coverage_warned:
        STATE.coverage_warned = True
        log.warning(
            "open loop: offered %.0f tasks/s but only %.1f%% of the planned sends were made (%d of %d, %.0f/s); "
            "%d were never sent (the oldest %.1f s late); the latency percentiles cover only the sends made",
            STATE.opts.rate,
            100 * result["coverage"],
            result["issued"],
            result["planned"],
            result["achieved_rate"],
            result["backlog"],
            result["backlog_oldest_delay_s"],
        )
    return result


def write_results(checkpoint: bool = False) -> Path | None:
    """Finalize every second and write the results folder (again, if called twice). A
    checkpoint writes what is final so far, marked incomplete, and finalizes nothing early."""
    if not STATE.started_at:
        return None
    if not checkpoint:
        STATE.recorder.finalize()
    env = STATE.environment
    opts = STATE.opts
    run_time = getattr(env.parsed_options, "run_time", None) if env and env.parsed_options else None
    ended = (STATE.recorder.closed_until or time.time()) if checkpoint else STATE.stopped_at or time.time()
    elapsed = ended - STATE.started_at
    complete = not checkpoint and (not run_time or elapsed >= float(run_time) - 1.0)
    measure_from = STATE.recorder.measure_from or STATE.started_at
    if not STATE.effective:
        STATE.effective = read_effective(opts, STATE.queue)
    if STATE.results_dir is None:  # used as a library, without test_start
        STATE.results_dir = results_dir_for(opts, STATE.started_at)
    options = asdict(opts) | {"redis_url": redact_url(opts.redis_url) if opts.redis_url else ""}
    reason = f"stopped after {elapsed:.1f}s of --run-time {run_time}s"
    if checkpoint:
        every = opts.checkpoint_interval
        reason = f"in progress: checkpoint after {elapsed:.0f}s (rewritten every {every:g}s until the end)"
    meta = {
        "kind": "load-run",
        "complete": complete,
        "incomplete_reason": None if complete else reason,
        "started_at": datetime.fromtimestamp(STATE.started_at, UTC).isoformat(),
        "elapsed_s": round(elapsed, 3),
        "warmup_s": opts.warmup,
        "measured_s": round(max(0.0, ended - measure_from), 3),
        "options": options,
        "locust": {
            "users": getattr(env.runner, "target_user_count", None) if env and env.runner else None,
            "workers": STATE.workers,
            "run_time_s": run_time,
        },
        "counters": STATE.counters,
        "partition_timeline": merge_timelines(
            list(STATE.worker_timelines.values()) if STATE.is_master else [STATE.timeline.snapshot()]
        ),
        "success_gaps": list(STATE.worker_successes.values())
        if STATE.is_master
        else [STATE.timeline.successes.snapshot()],
        "open_loop": open_loop_coverage(elapsed),
        "audit_during_load": count(STATE.audit, stage="load") if STATE.audit is not None else None,
        "effective": STATE.effective,
        "environment": environment_info(),
    }
    out = write_load_run(STATE.results_dir, STATE.recorder, meta, STATE.started_at, checkpoint=checkpoint)
    if STATE.audit is not None:
        STATE.audit.save(out / "audit-ids.json.gz")
    if STATE.acks is not None:
        STATE.acks.save(out / "acked-ids.json.gz")
    if not checkpoint:
        _log_results(out)
    return out


def _log_results(out: Path) -> None:
    """Say where the µs results went, with their summary table: once per test (and again only if
    a later write has more data; write_results runs at the test's stop and at Locust's quit)."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return
    key = tuple((op, s.get("count")) for op, s in sorted(summary.get("ops", {}).items()))
    if STATE.logged_results.get(out) == key:
        return
    STATE.logged_results[out] = key
    log.info("%s", us_summary_table(out, summary))


US_TABLE_HEADS = ("count", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "errors")


def us_summary_table(out: Path, summary: dict[str, Any]) -> str:
    """The results' header line and one line per operation: count, ops/s, p50/p99/p99.9/max in µs."""
    queue = (summary.get("effective") or {}).get("queue") or {}
    target = queue.get("url") or ",".join(queue.get("nodes") or []) or "?"
    server = f"{queue.get('server_name') or 'redis'} {queue.get('server_version')}"
    backend = f"{queue.get('backend', '?')} {target}, {server}"
    state = "complete" if summary.get("complete") else f"incomplete: {summary.get('incomplete_reason')}"
    lines = [
        f"TaskQueue µs results in {out}/ (summary.json, timeseries.csv, hgrm/, hlog/): {state}; "
        f"backend {backend}, pool {queue.get('pool_size', '?')}; measured {summary.get('measured_s')} s",
        "  ".join(["operation".ljust(16), *(h.rjust(11) for h in US_TABLE_HEADS)]),
    ]
    errors = summary.get("errors") or {}

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"

    for op, s in summary.get("ops", {}).items():
        cells = [num(s.get("count")), num(s.get("ops_per_s"))]
        cells += [latency_cell(s, k, num) for k in ("p50_us", "p99_us", "p999_us", "max_us")]
        cells.append(num(sum((errors.get(op) or {}).values())))
        lines.append("  ".join([op.ljust(16), *(c.rjust(11) for c in cells)]))
    return "\n".join(lines)


def read_effective(opts: LoadOptions, queue: adapters.QueueAdapter | None = None) -> dict[str, Any]:
    """Configuration read back from the client and the servers, never just what was asked for.
    The master has no queue of its own: it builds one just to read it back."""
    target = STATE.target or opts.target()
    out: dict[str, Any] = {}
    try:
        probe = queue or make_queue(opts, target)
        try:
            out["queue"] = probe.describe()
        finally:
            if probe is not queue:
                probe.close()
        out["servers"] = backends.effective_of(target) if target else {}
    except Exception as exc:  # the run's numbers are still worth writing
        out["error"] = f"could not read effective config: {exc}"
    if target is not None and target.cluster_nodes:
        out["cluster_nodes"] = [f"{h}:{p}" for h, p in target.nodes()]
    return out

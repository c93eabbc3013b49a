"""Locust glue: the event listeners that wire this benchmark into Locust.

Locust does the load (users, spawning, --processes, master/workers, web UI); the listeners here
parse and validate the options, resolve the backend, start and stop each test, ship histograms
from workers to the master, and close everything at quit. The timed operations are in
``bench.load_ops``, the results folder in ``bench.load_results``, the per-process state in
``bench.load_state``. The locustfile calls ``install()`` and ``produce()`` / ``consume()`` /
``raw_lpush()``, all importable from here.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import locust.stats
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from taskqueue import TaskQueueError

from . import secrets
from .acklog import AckLog
from .audit import AuditLog
from .errors import UsageError
from .load_ops import consume, expected_senders, make_queue, produce, raw_lpush, reaper_loop, resolve_target
from .load_results import finalizer_loop, read_effective, results_dir_for, us_summary_table, write_results
from .load_state import STATE
from .metrics import PartitionTimeline, Recorder
from .options import DEFAULT_STOP_TIMEOUT_S, LoadOptions, add_load_options
from .results import IntervalWriter
from .schedule import Schedule
from .servers import RedisServer
from .stats import bucket_sub_ms

# The locustfile, tests and the web UI use these names from ``bench.load``.
__all__ = [
    "STATE",
    "consume",
    "expected_senders",
    "install",
    "make_queue",
    "produce",
    "raw_lpush",
    "resolve_target",
    "us_summary_table",
    "write_results",
]

log = logging.getLogger("taskqueue-bench")


# -- Locust events ----------------------------------------------------------------------------------


def _on_parser(parser: Any) -> None:
    add_load_options(parser)
    # Locust's default (0) kills users mid-operation at the stop: a task can be stored in Redis
    # but never counted. Users finish their operation instead; -s/--stop-timeout still wins.
    parser.set_defaults(stop_timeout=DEFAULT_STOP_TIMEOUT_S)


def _validated(environment: Environment) -> LoadOptions:
    try:
        return LoadOptions.from_namespace(environment.parsed_options)
    except UsageError as exc:
        sys.stderr.write(f"locust: error: {exc}\n")
        raise SystemExit(2) from None


def _on_init(environment: Environment, **_: Any) -> None:
    STATE.environment = environment
    locust.stats.bucket_response_time = bucket_sub_ms  # type: ignore[assignment]
    if environment.parsed_options is None:  # used as a library
        return
    STATE.opts = _validated(environment)
    _apply_weights(environment, STATE.opts)
    if isinstance(environment.runner, WorkerRunner):
        environment.events.report_to_master.add_listener(_on_report_to_master)
        return
    try:
        target, STATE.embedded = resolve_target(STATE.opts)
    except UsageError as exc:
        sys.stderr.write(f"locust: error: {exc}\n")
        raise SystemExit(2) from None
    STATE.target = target
    secrets.scrub_for_web_ui()  # resolved: the UI page shows the redacted URL only
    try:  # a wrong --queue (no module, no factory, not an adapter) stops here, before any load
        make_queue(STATE.opts, target).close()
    except UsageError as exc:
        sys.stderr.write(f"locust: error: {exc}\n")
        raise SystemExit(2) from None
    except TaskQueueError as exc:  # unreachable now: the load counts every failed attempt
        log.warning("the backend cannot be reached (%s); every attempt is counted as a failure", exc.kind)
    # Workers receive custom options from the master with each spawn: point them at this backend.
    environment.parsed_options.redis_url = target.redis_url or ""
    environment.parsed_options.cluster_nodes = target.cluster_nodes or ""
    if isinstance(environment.runner, MasterRunner):
        environment.events.worker_report.add_listener(_on_worker_report)
    from . import webui

    if not environment.host:  # the web UI's Host field and header show the backend, without a password
        environment.host = target.display()
    webui.install(environment)  # the TaskQueue tab, when there is a web UI


def _apply_weights(environment: Environment, opts: LoadOptions) -> None:
    weights = {
        "ProducerUser": opts.producer_weight,
        "ConsumerUser": opts.consumer_weight,
        "MixedUser": opts.mixed_weight,
        "RawLpushUser": opts.raw_lpush_weight,
    }
    tags, exclude = _tag_filter(environment)
    chosen = []
    for cls in environment.user_classes:
        if cls.__name__ in weights:
            cls.weight = weights[cls.__name__]
            if cls.weight == 0:
                continue
        if not _runs_a_task(cls, tags, exclude):  # e.g. ConsumerUser under --tags produce
            continue
        chosen.append(cls)
    if not chosen:
        tags_known = "produce, consume, raw_lpush"
        sys.stderr.write(f"locust: error: --tags/--exclude-tags leave no user with a task (tags: {tags_known})\n")
        raise SystemExit(2)
    environment.user_classes = chosen  # the runner reads them from here


def _tag_filter(environment: Environment) -> tuple[set[str] | None, set[str] | None]:
    """Locust's --tags / --exclude-tags, as Locust reads them (None: no filter)."""
    options = environment.parsed_options
    tags = environment.tags if environment.tags is not None else getattr(options, "tags", None)
    exclude = (
        environment.exclude_tags if environment.exclude_tags is not None else getattr(options, "exclude_tags", None)
    )
    return (set(tags) if tags else None), (set(exclude) if exclude else None)


def _runs_a_task(cls: Any, tags: set[str] | None, exclude: set[str] | None) -> bool:
    """Whether a user class keeps a task under the tag filter; Locust would otherwise start it
    and fail with "No tasks defined"."""
    for task in getattr(cls, "tasks", []):
        marks: set[str] = getattr(task, "locust_tag_set", set())
        if (tags is None or marks & tags) and not (exclude and marks & exclude):
            return True
    return False


def _on_test_start(environment: Environment, **_: Any) -> None:
    opts = STATE.opts = _validated(environment) if environment.parsed_options else STATE.opts
    STATE.started_at = time.time()
    STATE.stopped_at = 0.0
    STATE.recorder = Recorder()
    # Statistics cover whole seconds after the warm-up, and ops/s divides by exactly that window.
    STATE.recorder.measure_from = math.ceil(STATE.started_at + opts.warmup) if opts.warmup > 0 else 0.0
    STATE.counters = dict.fromkeys(STATE.counters, 0)
    STATE.payload = b"x" * opts.payload_bytes
    STATE.audit = AuditLog() if opts.audit else None
    STATE.acks = AckLog() if opts.ack_log else None
    STATE.timeline = PartitionTimeline()
    STATE.worker_timelines = {}
    STATE.worker_successes = {}
    STATE.open_loop = None
    STATE.coverage_warned = False
    STATE.worker_open_loop = {}
    STATE.schedule = None
    if not STATE.is_worker:  # every test gets its own results folder, written as seconds close
        STATE.results_dir = results_dir_for(opts, STATE.started_at)
        if STATE.sink is not None:
            STATE.sink.close()
        STATE.sink = STATE.recorder.sink = IntervalWriter(STATE.results_dir, STATE.started_at)
    if not STATE.is_master:  # the queue this process loads (a restart from the web UI replaces it)
        if STATE.queue is not None:
            STATE.queue.close()
        STATE.queue = None
        try:
            STATE.queue = make_queue(opts, STATE.target or opts.target())
        except UsageError as exc:
            sys.stderr.write(f"locust: error: {exc}\n")
            raise SystemExit(2) from None
        except TaskQueueError:  # users retry the connection (counted, with backoff)
            pass
    if not STATE.is_worker:  # read back before any fault can take a node away
        STATE.effective = read_effective(opts, STATE.queue)
    if STATE.is_master:
        STATE.workers = runner.worker_count if isinstance(runner := environment.runner, MasterRunner) else 0
        if opts.rate > 0 and environment.runner is not None and environment.parsed_options is not None:
            # Sent to the workers with every spawn message (Locust forwards non-default options).
            environment.parsed_options.tq_senders_total = expected_senders(
                environment.user_classes, environment.runner.target_user_count
            )
        STATE.greenlets.append(gevent.spawn(finalizer_loop))
        return
    if opts.rate > 0:
        # One process: the whole rate. A worker: its senders' share, set once its users are known (produce).
        STATE.schedule = Schedule(0.0 if STATE.is_worker else opts.rate, time.perf_counter())
        STATE.rate_share = (0, 0)
    STATE.greenlets.append(gevent.spawn(reaper_loop))
    if not STATE.is_worker:
        STATE.greenlets.append(gevent.spawn(finalizer_loop))


def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    data["tqb"] = {
        **STATE.recorder.drain(),
        "counters": dict(STATE.counters),
        "timeline": STATE.timeline.snapshot(),
        "successes": STATE.timeline.successes.snapshot(),
        "open_loop": STATE.open_loop,
        "audit": STATE.audit.drain() if STATE.audit is not None else None,
        "acks": STATE.acks.drain() if STATE.acks is not None else None,
    }
    STATE.counters = dict.fromkeys(STATE.counters, 0)


def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    report = data.get("tqb")
    if report:
        STATE.recorder.merge(report)
        for key, n in report.get("counters", {}).items():
            STATE.counters[key] = STATE.counters.get(key, 0) + n
        STATE.worker_timelines[client_id] = report.get("timeline") or {}
        STATE.worker_successes[client_id] = report.get("successes") or {}
        if report.get("open_loop"):
            STATE.worker_open_loop[client_id] = report["open_loop"]
        if report.get("audit"):
            if STATE.audit is None:
                STATE.audit = AuditLog()
            STATE.audit.merge(report["audit"])
        if report.get("acks"):
            if STATE.acks is None:
                STATE.acks = AckLog()
            STATE.acks.merge(report["acks"])


def _on_test_stop(environment: Environment, **_: Any) -> None:
    STATE.stopped_at = time.time()
    if STATE.recorder.sink is not None:  # the last second ends here
        STATE.recorder.sink.end_epoch = STATE.stopped_at
    for greenlet in STATE.greenlets:
        greenlet.kill(block=False)
    STATE.greenlets = []
    _close_schedule()
    if STATE.is_worker:
        return
    if STATE.is_master:  # workers' last reports are still on their way: write once they are in
        gevent.spawn_later(4.0, write_results)
    else:
        write_results()


def _close_schedule() -> None:
    """Open loop: count the sends that came due but were never made (once per test)."""
    schedule, STATE.schedule = STATE.schedule, None
    if schedule is not None:
        now = time.perf_counter()
        STATE.open_loop = {
            "planned": schedule.planned_by(now),
            "issued": schedule.sent,
            "oldest_delay_s": schedule.oldest_unsent_delay(now),
        }


def _on_quit(exit_code: int, **_: Any) -> None:
    try:
        if not STATE.is_worker and STATE.started_at:
            write_results()
        if STATE.logged_results:  # last words, under Locust's tables (whole ms: sub-ms shows as 0)
            folders = ", ".join(f"{p}/" for p in STATE.logged_results)
            log.info("µs latencies (Locust's tables above round to whole ms) are in the results folder(s): %s", folders)
    finally:
        from . import webui

        webui.close()
        if STATE.sink is not None:
            STATE.sink.close()
        if STATE.queue is not None:
            STATE.queue.close()
        if STATE.embedded is not None:
            STATE.embedded.stop()
            first = STATE.embedded.servers[0]  # a RedisServer: in the locust-tq-* folder of resolve_target
            tmp = first.data_dir.parents[1] if isinstance(first, RedisServer) else Path()
            if tmp.name.startswith("locust-tq-"):
                shutil.rmtree(tmp, ignore_errors=True)
            STATE.embedded = None


def install() -> None:
    """Register the listeners (once) on Locust's global events; called by the locustfile."""
    if getattr(install, "done", False):
        return
    install.done = True  # type: ignore[attr-defined]
    secrets.hide_from_ps()
    events.init_command_line_parser.add_listener(_on_parser)
    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quit.add_listener(_on_quit)

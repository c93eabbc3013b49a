"""Locust glue: options, backend resolution, timing into HDR histograms, results on exit.

Locust does the load (users, spawning, --processes, master/workers, web UI); this module adds µs
latency with HdrHistogram, open-loop pacing, shipping of histograms from workers to the master,
and the results folder. The locustfile only declares user classes that call ``produce()`` /
``consume()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import locust.stats
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from taskqueue import TaskQueueError
from taskqueue.codec import IdFactory
from taskqueue.settings import backend_from_env, cluster_enabled, redact_url

from . import adapters, backends, secrets
from .acklog import AckLog
from .audit import AuditLog, count, outcome_of
from .errors import UsageError
from .livestatus import write_status
from .metrics import PartitionTimeline, Recorder, merge_timelines
from .options import DEFAULT_STOP_TIMEOUT_S, LoadOptions, add_load_options
from .results import IntervalWriter, environment_info, write_load_run
from .schedule import Schedule, merge_coverage, per_process_rate
from .servers import RedisServer, free_port
from .stats import bucket_sub_ms
from .target import Target

log = logging.getLogger("taskqueue-bench")
ERROR_BACKOFF_S = 0.005  # after a failed call, like a real client: no hot error loop during an outage
REAPER_INTERVAL_S = 1.0


class OperationError(Exception):
    """What Locust sees for a failed queue call: its error class, so Locust groups failures by class."""


class LoadState:
    """Everything one Locust process holds for the run."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.opts = LoadOptions()
        self.recorder = Recorder()
        self.queue: adapters.QueueAdapter | None = None
        self.schedule: Schedule | None = None
        self.rate_share: tuple[int, int] = (0, 0)  # a worker's (senders here, senders in all) behind its rate
        self.embedded: backends.Backend | None = None
        self.target: Target | None = None
        self.payload = b""
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.counters: dict[str, int] = {"empty_dequeues": 0, "lease_lost_acks": 0}
        self.greenlets: list[Any] = []
        self.effective: dict[str, Any] = {}
        self.results_dir: Path | None = None
        self.workers = 0
        self.used_results_dirs: set[Path] = set()
        self.sink: IntervalWriter | None = None  # this test's per-second files
        self.audit: AuditLog | None = None
        self.acks: AckLog | None = None  # --ack-log: acknowledged ids per partition (bench.acklog)
        self.timeline = PartitionTimeline()
        self.worker_timelines: dict[str, dict[str, Any]] = {}
        self.worker_successes: dict[str, dict[str, Any]] = {}
        self.coverage_warned = False
        self.open_loop: dict[str, float] | None = None  # this process: planned/issued, set at test stop
        self.worker_open_loop: dict[str, dict[str, float]] = {}
        self.fallback_ids = IdFactory()  # task ids for enqueues attempted while no queue could be built
        self.logged_results: dict[Path, tuple[Any, ...]] = {}  # results folder -> counts last logged

    @property
    def is_master(self) -> bool:
        return isinstance(self.environment and self.environment.runner, MasterRunner)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment and self.environment.runner, WorkerRunner)


STATE = LoadState()


# -- backend ----------------------------------------------------------------------------------------


def resolve_target(opts: LoadOptions) -> tuple[Target, backends.Backend | None]:
    """The server(s) to load, and the embedded backend we started (if any)."""
    given = opts.target()
    if given is not None:
        return given, None
    if opts.backend == "auto":
        import os

        try:  # the seed's env vars, read by the queue's own parser; a bad value is a usage error
            seeded = bool(os.environ.get("REDIS_URL")) or cluster_enabled(os.environ)
            url, nodes = backend_from_env(os.environ) if seeded else (None, None)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if seeded:
            return (Target(redis_url=url) if url else Target.cluster(nodes or [])), None
    state_dir = backends.default_state_dir()
    for kind in ("cluster", "standalone") if opts.backend == "auto" else (opts.backend,):
        running = backends.attach(state_dir, kind)
        if running is not None and all(s.is_alive() for s in running.servers):
            return running.target, None
    kind = "standalone" if opts.backend == "auto" else opts.backend
    port = free_port(span=6 if kind == "cluster" else 1, start=20500, bus_offset=10000)
    log.info("starting an embedded %s backend on 127.0.0.1:%d (stopped when Locust exits)", kind, port)
    import tempfile

    spec = backends.BackendSpec(kind=kind, port=port, state_dir=Path(tempfile.mkdtemp(prefix="locust-tq-")))
    backend = backends.start_backend(spec)
    return backend.target, backend


def make_queue(opts: LoadOptions, target: Target | None) -> adapters.QueueAdapter:
    """The queue under load: TaskQueue by default, or the adapter ``--queue`` names."""
    if target is None:
        raise UsageError("no backend to load: give --redis-url or --cluster-nodes")
    return adapters.build(opts.queue or adapters.DEFAULT, target, opts)


# -- timed operations (hot path) ----------------------------------------------------------------------


def _no_partition(task_id: str) -> int:
    return 0


def _fire(op: str, ms: float, length: int, exc: Exception | None) -> None:
    assert STATE.environment is not None
    STATE.environment.events.request.fire(
        request_type="queue", name=op, response_time=ms, response_length=length, exception=exc, context={}
    )


def _failed(op: str, started: float, exc: TaskQueueError) -> None:
    STATE.recorder.error(op, exc.kind)
    if exc.partition is not None:
        STATE.timeline.error(exc.partition, time.time())
    _fire(op, (time.perf_counter() - started) * 1000, 0, OperationError(f"{type(exc).__name__}: {exc.kind}"))
    gevent.sleep(ERROR_BACKOFF_S)


def _connected() -> Any:
    """The queue; built on first use when the backend could not be reached at test start. A
    failed build raises the typed error (e.g. ``cluster_unreachable``): the caller counts it as
    a failed operation, with the same backoff as any outage."""
    if STATE.queue is None:
        queue = make_queue(STATE.opts, STATE.target or STATE.opts.target())
        if STATE.queue is None:
            STATE.queue = queue
        else:  # another user connected meanwhile
            queue.close()
    return STATE.queue


def produce() -> None:
    """One enqueue (or one enqueue_many batch), paced by the open-loop schedule when ``--rate``."""
    opts, recorder = STATE.opts, STATE.recorder
    intended = None
    schedule = STATE.schedule
    if schedule is not None:
        if STATE.is_worker:
            _share_rate(schedule)
        intended = schedule.next_slot()
        wait = intended - time.perf_counter()
        if wait > 0:
            gevent.sleep(wait)
        schedule.sent += 1
    batch = opts.batch_size
    op = "enqueue" if batch == 1 else "enqueue_many"
    started = time.perf_counter()
    try:
        queue = _connected()
    except TaskQueueError as exc:
        if STATE.audit is not None:  # attempted, and refused before anything reached Redis
            STATE.audit.produce([STATE.fallback_ids() for _ in range(batch)], outcome_of(exc.kind))
        _failed(op, intended if intended is not None else started, exc)
        return
    ids = [queue.new_id() for _ in range(batch)]
    try:
        if batch == 1:
            queue.enqueue(STATE.payload, task_id=ids[0])
        elif hasattr(queue, "enqueue_many"):
            queue.enqueue_many([STATE.payload] * batch, task_ids=ids)
        else:
            for task_id in ids:
                queue.enqueue(STATE.payload, task_id=task_id)
    except TaskQueueError as exc:
        if STATE.audit is not None:
            STATE.audit.produce(ids, outcome_of(exc.kind))
        _failed(op, intended if intended is not None else started, exc)
        return
    ended = time.perf_counter()
    if STATE.audit is not None:
        STATE.audit.produce(ids, "ok")
    STATE.timeline.success(getattr(queue, "partition_for", _no_partition)(ids[0]), time.time())
    if STATE.acks is not None:
        STATE.acks.record_ids(getattr(queue, "partition_for", _no_partition), ids, time.time())
    if intended is None:
        us = (ended - started) * 1e6
    else:  # coordinated-omission corrected: from when the send *should* have happened
        us = (ended - intended) * 1e6
        recorder.record(f"{op}_service", (ended - started) * 1e6)
        recorder.record("send_lag", max(0.0, started - intended) * 1e6)
    recorder.record(op, us)
    _fire(op, us / 1000, len(STATE.payload) * batch, None)


def raw_lpush() -> None:
    """The baseline: one bare redis-py LPUSH through the queue's own client, timed, recorded and
    reported exactly like ``produce()``, so the two differ only by what TaskQueue adds."""
    started = time.perf_counter()
    try:
        queue = _connected()
    except TaskQueueError as exc:
        _failed("raw_lpush", started, exc)
        return
    client = queue.client
    try:
        client.lpush("bench:{raw}:lpush", STATE.payload)
    except Exception as exc:
        _failed("raw_lpush", started, _as_queue_error(exc))
        return
    us = (time.perf_counter() - started) * 1e6
    STATE.recorder.record("raw_lpush", us)
    _fire("raw_lpush", us / 1000, len(STATE.payload), None)


def _as_queue_error(exc: Exception) -> TaskQueueError:
    from taskqueue.errors import translate

    return exc if isinstance(exc, TaskQueueError) else translate(exc)


def consume() -> None:
    """Blocking dequeue, simulated processing, ack; plus the task's end-to-end latency."""
    opts, recorder = STATE.opts, STATE.recorder
    started = time.perf_counter()
    try:
        queue = _connected()
    except TaskQueueError as exc:
        _failed("dequeue", started, exc)
        return
    try:
        task = queue.dequeue(opts.dequeue_timeout)
    except TaskQueueError as exc:
        _failed("dequeue", started, exc)
        return
    if task is None:
        STATE.counters["empty_dequeues"] += 1  # a timed-out wait is not an operation latency
        return
    ended = time.perf_counter()
    if STATE.audit is not None:
        STATE.audit.deliver(task.id)
    STATE.timeline.success(task.partition, time.time())
    us = (ended - started) * 1e6
    recorder.record("dequeue", us)
    _fire("dequeue", us / 1000, len(task.payload), None)
    # End-to-end latency is not a request: only in the HDR recorder (results, TaskQueue tab), so
    # Locust's RPS, request table and response-time chart count queue operations only.
    recorder.record("e2e", max(0.0, (time.time_ns() - task.enqueued_at) / 1000))
    if opts.processing_ms:
        gevent.sleep(opts.processing_ms / 1000)
    started = time.perf_counter()
    try:
        held = queue.ack(task)
    except TaskQueueError as exc:
        _failed("ack", started, exc)
        return
    us = (time.perf_counter() - started) * 1e6
    if not held:
        STATE.counters["lease_lost_acks"] += 1
    recorder.record("ack", us)
    _fire("ack", us / 1000, 0, None)


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
        STATE.results_dir = _results_dir_for(opts, STATE.started_at)
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
        STATE.effective = _read_effective(opts, STATE.queue)
    if STATE.is_master:
        STATE.workers = runner.worker_count if isinstance(runner := environment.runner, MasterRunner) else 0
        if opts.rate > 0 and environment.runner is not None and environment.parsed_options is not None:
            # Sent to the workers with every spawn message (Locust forwards non-default options).
            environment.parsed_options.tq_senders_total = expected_senders(
                environment.user_classes, environment.runner.target_user_count
            )
        STATE.greenlets.append(gevent.spawn(_finalizer_loop))
        return
    if opts.rate > 0:
        # One process: the whole rate. A worker: its senders' share, set once its users are known (produce).
        STATE.schedule = Schedule(0.0 if STATE.is_worker else opts.rate, time.perf_counter())
        STATE.rate_share = (0, 0)
    STATE.greenlets.append(gevent.spawn(_reaper_loop))
    if not STATE.is_worker:
        STATE.greenlets.append(gevent.spawn(_finalizer_loop))


SENDERS = ("ProducerUser", "MixedUser")  # the user classes that enqueue on the open-loop schedule


def expected_senders(user_classes: list[type], users: int) -> int:
    """How many of ``users`` Locust will make senders: its own dispatch order over the class weights."""
    from locust.dispatch import _kl_generator

    weighted = [(cls.__name__, float(getattr(cls, "weight", 1))) for cls in user_classes if getattr(cls, "weight", 1)]
    order = _kl_generator(weighted)
    return sum(1 for _ in range(users) if next(order) in SENDERS)


def _share_rate(schedule: Schedule) -> None:
    """A worker offers ``--rate`` × its senders / all senders: Locust may put every producer on one
    worker (it deals users to workers in class order), so an equal split per process is wrong."""
    env = STATE.environment
    runner, options = (env.runner, env.parsed_options) if env is not None else (None, None)
    here = sum((getattr(runner, "target_user_classes_count", None) or {}).get(name, 0) for name in SENDERS)
    total = int(getattr(options, "tq_senders_total", 0) or 0)
    if (here, total) != STATE.rate_share:
        STATE.rate_share = (here, total)
        workers = max(1, int(getattr(options, "expect_workers", 1) or 1))
        # Unknown (a worker started by hand against an older master): the equal split, as before.
        rate = STATE.opts.rate * here / total if here and total else per_process_rate(STATE.opts.rate, workers)
        schedule.set_rate(rate, time.perf_counter())


def _reaper_loop() -> None:
    while True:
        gevent.sleep(REAPER_INTERVAL_S)
        if STATE.queue is not None:
            with contextlib.suppress(TaskQueueError):  # an outage: the next round retries
                STATE.queue.requeue_expired()


def _finalizer_loop() -> None:
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


def _results_dir_for(opts: LoadOptions, started_at: float) -> Path:
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
        STATE.effective = _read_effective(opts, STATE.queue)
    if STATE.results_dir is None:  # used as a library, without test_start
        STATE.results_dir = _results_dir_for(opts, STATE.started_at)
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
    out = write_load_run(STATE.results_dir, STATE.recorder, meta, STATE.started_at)
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
        cells = [s.get(k) for k in ("count", "ops_per_s", "p50_us", "p99_us", "p999_us", "max_us")]
        cells.append(sum((errors.get(op) or {}).values()))
        lines.append("  ".join([op.ljust(16), *(num(c).rjust(11) for c in cells)]))
    return "\n".join(lines)


def _read_effective(opts: LoadOptions, queue: adapters.QueueAdapter | None = None) -> dict[str, Any]:
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

"""The timed queue operations Locust users call (the hot path), and the backend they load.

Each call is timed into the HDR recorder and reported to Locust as a request; a failed call is
counted by error class, with a short backoff. ``--rate`` paces producers on an open-loop schedule.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import gevent

from taskqueue import TaskQueueError
from taskqueue.settings import backend_from_env, cluster_enabled

from . import adapters, backends
from .audit import outcome_of
from .errors import UsageError
from .load_state import STATE
from .options import LoadOptions
from .ports import free_port
from .schedule import Schedule, per_process_rate
from .target import Target

log = logging.getLogger("taskqueue-bench")
ERROR_BACKOFF_S = 0.005  # after a failed call, like a real client: no hot error loop during an outage
REAPER_INTERVAL_S = 1.0


class OperationError(Exception):
    """What Locust sees for a failed queue call: its error class, so Locust groups failures by class."""


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
            share_rate(schedule)
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


# -- open-loop rate per worker ----------------------------------------------------------------------


SENDERS = ("ProducerUser", "MixedUser")  # the user classes that enqueue on the open-loop schedule


def expected_senders(user_classes: list[type], users: int) -> int:
    """How many of ``users`` Locust will make senders: its own dispatch order over the class weights."""
    from locust.dispatch import _kl_generator

    weighted = [(cls.__name__, float(getattr(cls, "weight", 1))) for cls in user_classes if getattr(cls, "weight", 1)]
    order = _kl_generator(weighted)
    return sum(1 for _ in range(users) if next(order) in SENDERS)


def share_rate(schedule: Schedule) -> None:
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


# -- background -------------------------------------------------------------------------------------


def reaper_loop() -> None:
    """Every second, make tasks whose lease expired (consumer gone or too slow) deliverable again."""
    while True:
        gevent.sleep(REAPER_INTERVAL_S)
        if STATE.queue is not None:
            with contextlib.suppress(TaskQueueError):  # an outage: the next round retries
                STATE.queue.requeue_expired()

"""The TaskQueue tab in Locust's web UI: live µs percentiles per operation (e2e included), queue
depth and inflight leases, the audit so far and the effective configuration.

Only Locust's supported extension points are used (see Locust's ``examples/extend_web_ui.py``):

- a Flask route on ``environment.web_ui.app``: ``GET <web base path>/taskqueue/stats``, JSON;
- an extra tab: ``template_args["extended_tabs"]`` and ``["extended_tables"]`` describe a table,
  whose rows ride on Locust's own ``/stats/requests`` poll (every 2 s while a test runs), added by
  an ``after_request`` hook as ``extended_stats``;
- a link to the JSON in the "Download Data" tab (``extended_csv_files``).

Everything comes from the process that has the web UI (local runner or master): the HDR recorder
(cumulative histograms plus the seconds still open, i.e. workers' reports merged so far), a queue
to ask for ``depth()``/``inflight()`` (the users' one, else one built here), ``STATE.effective``.
A snapshot is computed at most once a second.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from taskqueue import TaskQueueError

from .audit import count
from .metrics import Recorder, new_histogram, release
from .stats import latency_cell, summarize
from .target import Target

if TYPE_CHECKING:  # importing Locust monkey-patches the process with gevent: only inside Locust
    from locust.env import Environment

log = logging.getLogger("taskqueue-bench")

TAB_KEY = "taskqueue"
STATS_PATH = "/taskqueue/stats"
CACHE_S = 1.0
OP_ORDER = ("enqueue", "enqueue_many", "raw_lpush", "dequeue", "ack", "e2e", "enqueue_service", "send_lag")
OP_LABELS = {
    "e2e": "e2e (enqueued → dequeued)",
    "enqueue_service": "enqueue service time",
    "send_lag": "send lag (open loop)",
}
TABLE = [
    {"key": "item", "title": "Operation / item"},  # not "name": Locust's table sorts by "name"
    {"key": "count", "title": "Count"},
    {"key": "rate", "title": "ops/s"},
    {"key": "p50", "title": "p50 µs"},
    {"key": "p90", "title": "p90 µs"},
    {"key": "p99", "title": "p99 µs"},
    {"key": "p999", "title": "p99.9 µs"},
    {"key": "max", "title": "max µs"},
    {"key": "errors", "title": "Errors"},
    {"key": "detail", "title": "Detail"},
]


class _Cache:
    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.at = 0.0
        self.probe: Any = None  # a queue of our own, when this process has none (master, before a test)


CACHE = _Cache()


def _state() -> Any:
    from .load_state import STATE  # lazily, so importing webui alone does not import the load modules

    return STATE


# -- live numbers ---------------------------------------------------------------------------------


def live_histograms(recorder: Recorder, now: float) -> tuple[dict[str, HdrHistogram], bool]:
    """Per operation: the finalized measured histogram plus every second still open (not yet
    finalized: the last ~6 s, and workers' reports merged so far), as new histograms (the
    recorder is not changed). During the warm-up, the warm-up seconds (else nothing to show);
    returns (histograms, in warm-up)."""
    warming = recorder.measure_from > now
    out: dict[str, HdrHistogram] = {}

    def add(op: str, hist: HdrHistogram) -> None:
        if op not in out:
            out[op] = new_histogram(op)
        out[op].add(hist)

    for op, hist in list(recorder.cumulative.items()):
        add(op, hist)
    for sec, ops in list(recorder._open.items()):  # read-only
        if warming or sec >= recorder.measure_from:
            for op, hist in list(ops.items()):
                add(op, hist)
    return out, warming


def live_errors(recorder: Recorder, *, measured_only: bool) -> dict[str, dict[str, int]]:
    """op -> error class -> count, finalized plus open seconds."""
    out: dict[str, dict[str, int]] = {}
    finalized = recorder.errors if measured_only else recorder.errors_all
    pending = [
        errs
        for sec, errs in list(recorder._open_errors.items())  # read-only
        if not measured_only or sec >= recorder.measure_from
    ]
    for counter in (finalized, *pending):
        for (op, kind), n in counter.items():
            by_kind = out.setdefault(op, {})
            by_kind[kind] = by_kind.get(kind, 0) + n
    return out


def _queue_counts() -> dict[str, Any]:
    """Tasks waiting and leased, from the users' queue or one of our own (the master has none)."""
    state = _state()
    queue = state.queue
    try:
        if queue is None:
            if CACHE.probe is None:
                from .load_ops import make_queue

                CACHE.probe = make_queue(state.opts, state.target or state.opts.target())
            queue = CACHE.probe
        return {"depth": int(queue.depth()), "inflight": int(queue.inflight()), "error": None}
    except TaskQueueError as exc:
        return {"depth": None, "inflight": None, "error": exc.kind}
    except Exception as exc:  # an adapter's own error: shown, never breaks the page
        return {"depth": None, "inflight": None, "error": f"{type(exc).__name__}: {exc}"}


def _config() -> dict[str, Any]:
    """What the run really uses, read back from client and servers (``STATE.effective``)."""
    state = _state()
    effective = state.effective or {}
    queue = effective.get("queue") or {}
    nodes = (effective.get("servers") or {}).get("nodes") or {}
    versions = sorted({f"{n.get('server_name') or 'redis'} {n.get('server_version')}" for n in nodes.values()})
    if not versions and queue.get("server_version"):
        versions = [f"{queue.get('server_name') or 'redis'} {queue['server_version']}"]
    runner = state.environment.runner if state.environment else None
    processes = getattr(runner, "worker_count", None) if state.is_master else 1
    config: dict[str, Any] = {
        "backend": queue.get("backend") or state.opts.backend,
        "target": display_target(state.target or state.opts.target()),
        "pool_size": queue.get("pool_size"),
        "pool_class": queue.get("pool_class"),
        "pool_blocking": queue.get("pool_blocking"),
        "load_processes": processes,
        "queue": queue.get("queue") or state.opts.queue_name,
        "engine": queue.get("engine") or state.opts.engine,
        "partitions": queue.get("partitions"),
        "server_versions": versions,
        "nodes": len(nodes) or None,
    }
    if not effective:
        config["note"] = "read back from the servers when a test starts"
    if effective.get("error"):
        config["error"] = effective["error"]
    return config


def display_target(target: Target | None) -> str:
    """The backend as a URL-like line without any password (Locust's Host field and header)."""
    return target.display() if target is not None else ""


def snapshot(now: float | None = None) -> dict[str, Any]:
    """The tab's data (cached for ``CACHE_S``): all latencies in µs."""
    wall = time.time() if now is None else now
    if CACHE.snapshot is not None and wall - CACHE.at < CACHE_S:
        return CACHE.snapshot
    state = _state()
    recorder = state.recorder
    runner = state.environment.runner if state.environment else None
    started = state.started_at
    ended = state.stopped_at or wall
    hists, warming = live_histograms(recorder, wall) if started else ({}, False)
    window_from = started if warming or not recorder.measure_from else max(started, recorder.measure_from)
    window = max(0.0, ended - window_from) if started else 0.0
    errors = live_errors(recorder, measured_only=not warming)
    ops: dict[str, Any] = {}
    for op in sorted(set(hists) | set(errors), key=lambda o: (OP_ORDER.index(o) if o in OP_ORDER else 99, o)):
        hist = hists.get(op)
        ops[op] = (summarize(hist, window) if hist is not None else {"count": 0}) | {
            "errors": sum(errors.get(op, {}).values())
        }
        if hist is not None:
            release(hist)
    all_errors = live_errors(recorder, measured_only=False)
    rejected: dict[str, int] = {}
    for op in ("enqueue", "enqueue_many"):
        for kind, n in all_errors.get(op, {}).items():
            rejected[kind] = rejected.get(kind, 0) + n
    result = {
        "unit": "us",
        "state": getattr(runner, "state", None),
        "started_at": datetime.fromtimestamp(started, UTC).isoformat() if started else None,
        "elapsed_s": round(ended - started, 1) if started else 0.0,
        "measured_s": round(window, 1),
        "in_warmup": warming,
        "results_dir": str(state.results_dir) if state.results_dir else None,
        "ops": ops,
        "e2e": ops.get("e2e"),
        "queue": _queue_counts(),
        "audit": count(state.audit, stage="load") if state.audit is not None else None,
        "rejected_by_class": rejected,
        "config": _config(),
    }
    CACHE.snapshot, CACHE.at = result, wall
    return result


# -- the tab --------------------------------------------------------------------------------------


def table_rows(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """The tab's table: one row per operation, then queue, audit and configuration rows. Values
    are formatted text (thousands separators); rows keep this order (see TABLE)."""
    rows: list[dict[str, Any]] = []
    for op, s in snap["ops"].items():
        detail = ""
        if op == "e2e" and s.get("p50_us") is not None:
            p50, top = (latency_cell(s, k, _seconds) for k in ("p50_us", "max_us"))
            detail = f"enqueue to dequeue: p50 {p50}, max {top}"
        if snap["in_warmup"]:
            detail = "warm-up (not in the results)"
        rows.append(
            {
                "item": OP_LABELS.get(op, op),
                "count": _num(s.get("count")),
                "rate": _num(s.get("ops_per_s")),
                **{col: latency_cell(s, f"{col}_us", _num) for col in ("p50", "p90", "p99", "p999", "max")},
                "errors": _num(s.get("errors")),
                "detail": detail,
            }
        )
    if not rows:
        rows.append({"item": "(no operations yet)", "detail": "µs percentiles appear here once a test runs"})
    queue = snap["queue"]
    if queue["error"]:
        rows.append({"item": "queue depth / inflight", "detail": f"unavailable: {queue['error']}"})
    else:
        rows.append({"item": "queue depth", "count": _num(queue["depth"]), "detail": "tasks waiting, all partitions"})
        rows.append({"item": "inflight leases", "count": _num(queue["inflight"]), "detail": "dequeued, not yet acked"})
    audit = snap["audit"]
    if audit is None:
        rows.append({"item": "audit", "detail": "off (--audit true counts undelivered and duplicated tasks)"})
    else:
        rows.append(
            {"item": "audit: undelivered", "count": _num(audit["undelivered"]), "detail": "enqueued, not delivered yet"}
        )
        rows.append({"item": "audit: duplicates", "count": _num(audit["duplicates"]), "detail": "extra deliveries"})
    for kind, n in sorted(snap["rejected_by_class"].items()):
        rows.append({"item": f"rejected: {kind}", "count": _num(n), "detail": "enqueues refused, by error class"})
    cfg = snap["config"]
    versions = ", ".join(cfg["server_versions"]) or "?"
    nodes = f", {cfg['nodes']} nodes" if cfg.get("nodes") and cfg["nodes"] > 1 else ""
    rows.append({"item": "backend", "detail": f"{cfg['backend']} {cfg['target']} ({versions}{nodes})".strip()})
    if cfg.get("pool_size") is not None:
        blocking = "blocking" if cfg.get("pool_blocking") else "non-blocking"
        per = "node per process" if cfg["backend"] == "cluster" else "process"
        rows.append(
            {
                "item": "pool",
                "count": _num(cfg["pool_size"]),
                "detail": f"connections per {per} ({cfg.get('pool_class')}, {blocking}); "
                f"{cfg.get('load_processes')} load process(es)",
            }
        )
    partitions = cfg.get("partitions")
    rows.append(
        {
            "item": "queue",
            "detail": f"{cfg['queue']}, {cfg['engine']} engine"
            + (f", {partitions} partition(s)" if partitions else ""),
        }
    )
    if cfg.get("note") or cfg.get("error"):
        rows.append({"item": "configuration", "detail": cfg.get("error") or cfg.get("note")})
    if snap["results_dir"]:
        rows.append({"item": "results", "detail": f"{snap['results_dir']} (µs summary.json when the test stops)"})
    return rows


def _num(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _seconds(us: Any) -> str:
    return f"{us / 1e6:.2f} s" if us >= 1e6 else f"{us / 1e3:.1f} ms"


def install(environment: Environment) -> None:
    """Add the route, the tab and its data to Locust's web UI (master or local runner only)."""
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
        return
    app = web_ui.app
    from flask import Response, request

    base = (getattr(environment.parsed_options, "web_base_path", "") or "").rstrip("/")

    def taskqueue_stats() -> Response:
        return Response(json.dumps(snapshot(), default=str), mimetype="application/json")

    app.add_url_rule(f"{base}{STATS_PATH}", "taskqueue_stats", web_ui.auth_required_if_enabled(taskqueue_stats))

    @app.after_request
    def add_taskqueue_rows(response: Response) -> Response:
        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        try:
            data = json.loads(response.get_data())
            data["extended_stats"] = [{"key": TAB_KEY, "data": table_rows(snapshot())}]
            response.set_data(json.dumps(data))
        except Exception:  # Locust's own stats must keep flowing whatever happens here
            log.exception("TaskQueue tab: could not add its rows")
        return response

    # The start form lists custom options in the order of the page's JSON (Jinja's ``tojson``),
    # which sorts keys by default (alphabetical); unsorted, it is the order add_load_options added
    # them: grouped (Backend, Pool, Load shape, Queue, Results; bench.options.WEB_UI_GROUPS).
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    # no "µs" in the title: the tab bar upper-cases it to "MS"
    web_ui.template_args["extended_tabs"] = [{"title": "TaskQueue", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": TABLE}]
    web_ui.template_args["extended_csv_files"] = [
        {"href": f".{STATS_PATH}", "title": "TaskQueue live µs statistics (JSON)"}
    ]
    environment.events.test_start.add_listener(_on_test_start)


def _on_test_start(environment: Environment, **_: Any) -> None:
    CACHE.snapshot = None
    state = _state()
    shown = display_target(state.target or state.opts.target())
    if environment.host and shown and environment.host != shown:
        log.warning(
            "the web UI's Host field (%s) is not used: the load goes to %s (set --redis-url or --cluster-nodes)",
            environment.host,
            shown,
        )


def close() -> None:
    """Close the queue built for depth/inflight (at Locust's quit)."""
    probe, CACHE.probe = CACHE.probe, None
    if probe is not None:
        try:
            probe.close()
        except Exception:  # closing at exit: nothing left to report to
            log.debug("closing the web UI's queue failed", exc_info=True)

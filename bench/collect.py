"""A cell's results: one repeat's record from what Locust wrote, the drain, the audit, the server counters,
the drift and the fault timelines; and a cell's repeats combined into its ``summary.json`` entry."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from taskqueue.settings import redact_url

from . import commandstats, cost, cost_cell, drift, faults, netns, network, periodic
from .audit import AuditLog, count
from .drain import drain_queue
from .errors import UsageError
from .locust_cmd import usage_line
from .monitor import InfoSampler
from .probes import LoadProbe
from .results import read_intervals
from .scenario import Cell
from .stats import combine_repeats
from .target import Target

SHORT_SHARE = 0.9  # a cell that measured less than this share of its duration is flagged
INTERRUPTED_DRAIN_S = 5  # an interrupted cell's drain: enough for its audit, short enough to stop soon


def collect(
    cell: Cell,
    rep_dir: Path,
    target: Target,
    queue_name: str,
    sampler: InfoSampler | None,
    probe: LoadProbe | None,
    events: list[faults.FaultEvents] | None,
    returncode: int | None,
    *,
    console: Console,
    interrupted: bool,
) -> dict[str, Any]:
    """One repeat's record, once Locust has exited and any fault is restored: the queue drained into the
    audit, the samplers written beside Locust's results. Raises UsageError when Locust refused the options."""
    params = cell.params
    if interrupted:  # stop soon: a short drain, enough to audit what was sent
        params = {**params, "drain_timeout": min(params["drain_timeout"], INTERRUPTED_DRAIN_S)}
    try:
        load = json.loads((rep_dir / "summary.json").read_text())
    except (OSError, ValueError):
        _raise_usage_error(rep_dir, returncode)
        tail = (rep_dir / "locust.log").read_text(errors="replace")[-600:] if (rep_dir / "locust.log").exists() else ""
        return {"complete": False, "incomplete_reason": f"locust wrote no results (exit {returncode}): {tail}"}
    start = datetime.fromisoformat(load["started_at"]).timestamp()
    _raise_usage_error(rep_dir, returncode)
    # The servers' counters as the load left them, read before the drain sends its own commands (bench.cost).
    stats = commandstats.read(sampler.servers) if sampler else None
    audit_file = rep_dir / "audit-ids.json.gz"
    audit = AuditLog.load(audit_file) if audit_file.exists() else AuditLog()
    drain = drain_queue(target, params, queue_name, audit)
    audit.save(audit_file)
    info_rows = sampler.write(rep_dir / "info.csv", start) if sampler else []
    probe_rows = probe.write(rep_dir / "probes.csv", start, start + float(load.get("elapsed_s") or 0)) if probe else []
    # Still queued is not lost: a drain that timed out gives only an upper bound, named as such.
    counts = count(audit, stage="drained" if drain["complete"] else "drain_timed_out")
    if not drain["complete"]:
        counts["still_queued"] = max(0, drain["left_ready"]) + max(0, drain["left_inflight"])
    result = {
        "complete": bool(load.get("complete")) and returncode == 0 and drain["complete"],
        "incomplete_reason": load.get("incomplete_reason") or (None if drain["complete"] else "drain timed out"),
        "ops": load.get("ops", {}),
        "errors": load.get("errors", {}),
        "effective": load.get("effective", {}),
        "audit": counts,
        "drain": drain,
        "counters": load.get("counters", {}),
        "server": {
            "peak_used_memory": sampler.peak("used_memory"),
            **sampler.counters(),
            "stats_reset": True,
            "cores": sampler.cores(),  # during the load, beside the load's (cost) and the delay line's (network)
        }
        if sampler
        else {},
    }
    measured = float(load.get("elapsed_s") or 0.0)
    if measured < SHORT_SHARE * params["duration"]:  # Locust's -t clock runs during its start-up too
        result["short"] = {"measured_s": round(measured, 3), "planned_s": params["duration"]}
        console.print(
            f"[yellow]warning: cell {escape(repr(cell.id))} measured {measured:.1f} s of its "
            f"{params['duration']:g} s (a slow start-up on a busy host): its rates divide by what ran[/]"
        )
    if load.get("open_loop"):
        result["open_loop"] = load["open_loop"]
        if not load["open_loop"]["rate_reached"]:
            ol = load["open_loop"]
            console.print(
                f"[yellow]warning: cell {escape(repr(cell.id))} offered {ol['rate']:,.0f} tasks/s but made only "
                f"{100 * ol['coverage']:.1f}% of the planned sends ({ol['achieved_rate']:,.0f}/s): its latency "
                "percentiles are not the latency at that rate[/]"
            )
    result["drift"] = drift.of_cell(read_intervals(rep_dir), probe_rows, info_rows)
    cpu = cost_cell.cpu_points(probe_rows, float(params.get("warmup") or 0))
    result["cost"] = cost_cell.repeat_cost(stats, [rep_dir], load, params, cpu=cpu)
    if events:
        masters = (load.get("effective") or {}).get("queue", {}).get("partition_masters") or {}
        timelines = periodic.timelines(events, start, load, params["fault_partition"], masters)
        if timelines:
            result["fault"] = timelines[0]
        if params["fault_every"]:
            result["faults"] = timelines
            result["fault_series"] = periodic.summarize(timelines, periodic.stop_reason(events))
        result["complete"] = result["complete"] and all(t["restore_ok"] for t in timelines)
        if events[0].kind in netns.NETWORK_FAULTS:
            _explain_loss(cell, rep_dir, audit, events[0], start, result, console)
    elif params["fault"] != "none" and params["fault_every"]:
        result["fault_series"] = periodic.summarize([])
    return result


def _raise_usage_error(rep_dir: Path, returncode: int | None) -> None:
    """Locust refused the cell's options (exit 2): the whole run stops with its message."""
    if returncode == 2 and (line := usage_line(rep_dir)):
        raise UsageError(line)


def _explain_loss(
    cell: Cell,
    rep_dir: Path,
    audit: AuditLog,
    events: faults.FaultEvents,
    start: float,
    result: dict[str, Any],
    console: Console,
) -> None:
    """Lost tasks next to what the cut-off master acknowledged after the partition began, from
    the clients' own per-partition ack log (bench.partition_loss)."""
    from . import partition_loss
    from .acklog import AckLog

    acked_file = rep_dir / "acked-ids.json.gz"
    if events.injected_at is None or not acked_file.exists():
        return
    fault = result["fault"]
    faulted = [int(p) for p, d in fault["partitions"].items() if d["faulted"]]
    if events.kind == "partition-master" and events.isolated_down_at is not None:
        end, source = events.isolated_down_at, "isolated master's log: cluster_state fail (stopped taking writes)"
    else:
        end, source = events.healed_at or time.time(), "healed"
    loss = partition_loss.explain(
        audit, AckLog.load(acked_file), faulted, (events.injected_at, end), start, window_end_source=source
    )
    loss["drain_complete"] = bool(result["drain"]["complete"])
    fault["loss"] = loss
    fault["before"] = partition_loss.before_fault(rep_dir, fault["partitioned_at_s"])
    console.print(f"  {escape(cell.id)}: {escape(partition_loss.headline(loss))}")


def load_only(rep_dir: Path, returncode: int | None) -> dict[str, Any]:
    """An interrupted repeat's result from Locust's own summary alone (no drain, no audit)."""
    try:
        load = json.loads((rep_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {"complete": False, "incomplete_reason": f"locust wrote no results (exit {returncode})"}
    return {
        "complete": False,
        "ops": load.get("ops", {}),
        "errors": load.get("errors", {}),
        "effective": load.get("effective", {}),
        "audit": {},
        "drain": None,
        "counters": load.get("counters", {}),
        "server": {},
    }


DRAIN_NOT_FINISHED = "drain not finished"


def before_drain(rep_dir: Path, returncode: int | None) -> dict[str, Any]:
    """A repeat's provisional record, written before its restore and drain start (crash-safe results): what
    Locust measured, and the audit as Locust knew it (enqueued ok, rejected, ambiguous, and *undelivered*,
    never lost: the drain had not run). Replaced by :func:`collect`'s record when the drain ends; one that
    stays in summary.json means the run was killed before then (``provisional``)."""
    record = load_only(rep_dir, returncode)
    try:
        load = json.loads((rep_dir / "summary.json").read_text())
    except (OSError, ValueError):
        load = {}
    record |= {"incomplete_reason": DRAIN_NOT_FINISHED, "provisional": True}
    record["audit"] = load.get("audit_during_load") or {}
    if load.get("open_loop"):
        record["open_loop"] = load["open_loop"]
    return record


def combine_cell(cell: Cell, repeats: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in repeats if "ops" in r]  # every repeat Locust wrote results for, even if all calls failed
    ops_names = sorted({op for r in done for op in r["ops"]})
    ops = {op: combine_repeats([r["ops"][op] for r in done if op in r["ops"]]) for op in ops_names}
    errors: dict[str, Counter[str]] = {}
    for r in done:
        for op, kinds in r["errors"].items():
            errors.setdefault(op, Counter()).update(kinds)
    audit: Counter[str] = Counter()
    for r in done:
        audit.update(r["audit"])
    if "lost_upper_bound" in audit:  # one repeat's drain timed out: the sum is an upper bound too
        audit["lost_upper_bound"] += audit.pop("lost", 0)
        audit["lost_ambiguous_upper_bound"] += audit.pop("lost_ambiguous", 0)
    open_loops = [r["open_loop"] for r in done if r.get("open_loop")]
    return {
        "id": cell.id,
        "params": public_params(cell.params),
        "complete": bool(repeats) and all(r["complete"] for r in repeats) and len(repeats) == cell.params["repeat"],
        "effective": done[0]["effective"] if done else {},
        "ops": ops,
        "errors": {op: dict(kinds) for op, kinds in errors.items()},
        "audit": dict(audit),
        "fault": done[0].get("fault") if done else None,
        # A repeated fault and drift are read per repeat; the first speaks for the cell (each repeat keeps its own).
        **{key: done[0][key] for key in ("faults", "fault_series", "drift") if done and key in done[0]},
        "short": min((r["short"] for r in done if r.get("short")), key=lambda s: s["measured_s"], default=None),
        # Repeats: the one that fell furthest short of the offered rate speaks for the cell.
        "open_loop": min(open_loops, key=lambda o: o["coverage"]) if open_loops else None,
        "cost": cost.combine([r.get("cost") for r in done]),  # medians; each repeat keeps its own in full
        "unstable": sorted(op for op, s in ops.items() if s.get("unstable")),
        "network": network.combine([r["network"] for r in repeats if r.get("network")]),
        "repeats": repeats,
    }


def public_params(params: dict[str, Any]) -> dict[str, Any]:
    """A cell's parameters as stored: a password in any URL redacted."""
    return {k: (redact_url(v) if isinstance(v, str) and "://" in v else v) for k, v in params.items()}

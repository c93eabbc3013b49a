"""The queue's own ceiling, the arithmetic and the words (``bench.ceiling`` measures it): redis-benchmark's
output read, the three scripts' rates composed into a task rate, repeats combined, and the two sides
``bench capacity`` prints. Pure: no Redis, no I/O.

A task is one enqueue, one dequeue and one ack, all three on its partition's master, whose one thread runs
them one after the other: a task costs that master 1/E + 1/D + 1/A seconds (E, D, A: each script's rate
when it alone saturates the master), so the task rate is ``1 / (1/E + 1/D + 1/A)``, lower than the slowest
of the three (not their minimum: they do not run side by side).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .cost import OPS, processes_needed

GROWTH = 0.05  # a step up the concurrency ladder that adds less than this is saturation


def parse_benchmark(text: str) -> dict[str, float]:
    """``requests``, ``seconds`` and ``ops_per_s`` from redis-benchmark's (7.x) default output."""
    done = re.search(r"(\d+) requests completed in ([\d.]+) seconds", text)
    rate = re.search(r"throughput summary: ([\d.]+) requests per second", text)
    if not done or not rate:
        tail = text.strip().replace("\r", "\n").splitlines()[-3:]
        raise ValueError(f"cannot read redis-benchmark's output (no summary): {tail}")
    return {"requests": int(done[1]), "seconds": float(done[2]), "ops_per_s": float(rate[1])}


def compose(rates: Mapping[str, float | None]) -> float | None:
    """Tasks/s of one master from its enqueue, dequeue and ack rates (see the module's docstring)."""
    values = [rates.get(op) for op in OPS]
    if any(not v or v <= 0 for v in values):
        return None
    return round(1.0 / sum(1.0 / float(v) for v in values if v), 1)


def predicted(us_per_call: Mapping[str, float | None]) -> float | None:
    """Tasks/s one master core would run if it did nothing but the three scripts (their commandstats µs)."""
    values = [us_per_call.get(op) for op in OPS]
    if any(not v or v <= 0 for v in values):
        return None
    return round(1e6 / sum(float(v) for v in values if v), 1)


def next_step(ladder: Sequence[tuple[int, int, float]], steps: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The next (clients, pipeline) to try after ``ladder`` (measured so far, in order), or None when
    the last step grew the rate by less than GROWTH over the best before it, or the steps ran out."""
    if len(ladder) >= 2:
        best_before = max(rate for _, _, rate in ladder[:-1])
        if ladder[-1][2] < best_before * (1 + GROWTH):
            return None
    return steps[len(ladder)] if len(ladder) < len(steps) else None


def best_step(ladder: Sequence[tuple[int, int, float]]) -> tuple[int, int]:
    clients, pipeline, _ = max(ladder, key=lambda s: s[2])
    return clients, pipeline


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def combine_rounds(rounds: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per operation, the median over rounds of each figure a round measured."""
    out: dict[str, dict[str, Any]] = {}
    for op in OPS:
        runs = [r[op] for r in rounds if op in r]
        keys = sorted({k for run in runs for k, v in run.items() if isinstance(v, int | float)})
        out[op] = {k: median([run.get(k) for run in runs]) for k in keys} | {"repeats": len(runs)}
    return out


def sides(capacity: Mapping[str, Any] | None, ceiling: Mapping[str, Any] | None) -> dict[str, Any]:
    """The two sides of a configuration: what the harness reached (a lower bound when harness-bound), the
    server-side ceiling, and the load processes the measured client CPU per task says it takes to get there."""
    cap = capacity or {}
    ceil = ceiling or {}
    top = ceil.get("tasks_per_s")
    client_us = ceil.get("client_us_per_task")
    out: dict[str, Any] = {
        "harness_rate": cap.get("rate"),
        "harness_lower_bound": bool(cap.get("lower_bound")),
        "ceiling": top,
        "reached_share": round(cap["rate"] / top, 3) if top and cap.get("rate") else None,
        "client_us_per_task": client_us,
        "load_cores_needed": round(top * client_us / 1e6, 2) if top and client_us else None,
        "load_processes_needed": processes_needed(top, client_us),
    }
    return out


def _n(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}{unit}" if isinstance(value, int | float) else str(value)


def sides_text(config_id: str, two: Mapping[str, Any], ceiling: Mapping[str, Any]) -> list[str]:
    """What ``bench capacity`` prints per configuration after its search (plain text, no markup)."""
    if ceiling.get("skipped"):
        return [f"server-side ceiling [{config_id}]: not measured ({ceiling['skipped']})"]
    prefix = "≥ " if two["harness_lower_bound"] else ""
    masters = ceiling.get("masters") or []
    per = ", ".join(f"{m['address']} {_n(m.get('tasks_per_s'))}/s" for m in masters)
    lines = [
        f"two sides [{config_id}]:",
        f"  harness (Locust, this host): {prefix}{_n(two['harness_rate'])} tasks/s"
        + (" (harness-bound: a lower bound)" if two["harness_lower_bound"] else ""),
        f"  server-side ceiling (redis-benchmark driving the queue's scripts): {_n(two['ceiling'])} tasks/s"
        f" ({per}; {ceiling.get('clients')} clients x pipeline {ceiling.get('pipeline')})",
    ]
    if ceiling.get("parallel"):
        par = ceiling["parallel"]
        at = ", ".join(f"{m['master_cores']:.2f}" for m in par["masters"] if m.get("master_cores") is not None)
        lines.append(
            f"  all masters at once on this host ({ceiling.get('host_cores')} cores): {_n(par.get('tasks_per_s'))}"
            f" tasks/s (masters at {at or '–'} cores)"
        )
    unp = ceiling.get("unpipelined_tasks_per_s")
    if unp:
        lines.append(f"  without pipelining (one command per round trip, as TaskQueue's calls): {_n(unp)} tasks/s")
    pred = ceiling.get("predicted") or {}
    if pred.get("ratio_benchmark") is not None:
        lines.append(
            f"  measured / predicted from the scripts' own server µs ({pred.get('benchmark_us_per_task')} µs per "
            f"task under redis-benchmark): {pred['ratio_benchmark']:.2f}"
        )
    if pred.get("ratio_load") is not None:
        calls = pred.get("load_calls_per_dequeue")
        lines.append(
            f"  measured / predicted from the load's server_us_per_task ({pred.get('load_us_per_task')} µs"
            + (f"; {calls:.1f} server calls per dequeue" if calls else "")
            + f"): {pred['ratio_load']:.2f}"
        )
    cores = [m.get("master_cores") for m in masters]
    if any(c is not None for c in cores):
        lines.append(
            "  master CPU during the runs: "
            + ", ".join(f"{m['address']} {m['master_cores']:.2f} cores" for m in masters if m.get("master_cores"))
        )
    if two["load_processes_needed"]:
        lines.append(
            f"  to offer it: {two['load_cores_needed']:.2f} cores of load = {two['load_processes_needed']} load "
            f"process(es) at the {two['client_us_per_task']:.0f} CPU µs per task measured at capacity (one core each)"
        )
    cheap = two.get("cheapest_step") or {}
    if cheap.get("load_processes_needed") and cheap.get("client_us_per_task") != two["client_us_per_task"]:
        lines.append(
            f"    or {cheap['load_processes_needed']} at the {cheap['client_us_per_task']:.0f} µs per task of the "
            f"cheapest step ({_n(cheap.get('rate'))}/s: fewer empty dequeues per task as the rate grows)"
        )
    return lines

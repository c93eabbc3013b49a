"""One repeat's ``cost`` (bench.cost) from what the cell already has: the nodes' commandstats read at the end
of the load (before the drain: the drain's commands are not the load's), the operations the clients
completed (``timeseries.csv``, every second of the load, warm-up included, the same window as the counters
reset when the cell was prepared), their mean service times (the HDR summary, after the warm-up) and the
load processes' CPU seconds (``probes.csv``). No Redis."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .cost import NodeStats, client_cost, task_cost


def op_counts(folders: Iterable[Path], batch_size: int = 1) -> dict[str, int]:
    """Successful operations over the whole load, per operation, summed over ``folders``' timeseries.csv
    (one per load process when there are several). Batched enqueues count their tasks."""
    counts = {"enqueue": 0, "dequeue": 0, "ack": 0}
    for folder in folders:
        path = folder / "timeseries.csv"
        if not path.exists():
            continue
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                op, n = row.get("operation"), int(float(row.get("count") or 0))
                if op == "enqueue_many":
                    counts["enqueue"] += n * batch_size
                elif op in counts:
                    counts[op] += n
    return counts


def mean_service_us(ops: dict[str, Any], batch_size: int = 1) -> dict[str, float | None]:
    """Mean µs per operation from the clients' side (per task for a batched enqueue). With ``--rate`` the
    enqueue is timed from the intended send: its service time (from the actual send) is used instead."""
    out: dict[str, float | None] = {}
    for op in ("dequeue", "ack"):
        out[op] = (ops.get(op) or {}).get("mean_us")
    if "enqueue_many" in ops or "enqueue_many_service" in ops:
        s = ops.get("enqueue_many_service") or ops.get("enqueue_many") or {}
        mean = s.get("mean_us")
        out["enqueue"] = None if mean is None else mean / batch_size
    else:
        out["enqueue"] = (ops.get("enqueue_service") or ops.get("enqueue") or {}).get("mean_us")
    return out


def cpu_points(probe_rows: Sequence[dict[str, Any]], warmup_s: float) -> list[tuple[float, float]]:
    """``(t_s, load_cpu_s)`` of the probe samples after the warm-up."""
    out = []
    for row in probe_rows:
        cpu = row.get("load_cpu_s")
        if cpu not in (None, "") and float(row["t_s"]) >= warmup_s:
            out.append((float(row["t_s"]), float(cpu)))
    return out


def repeat_cost(
    stats: list[NodeStats] | None,
    folders: Iterable[Path],
    load: dict[str, Any],
    params: dict[str, Any],
    *,
    cpu: list[tuple[float, float]] | None = None,
    client_cores: float | None = None,
) -> dict[str, Any] | None:
    """The repeat's cost: servers (``stats``), clients (``cpu`` samples, or ``client_cores`` measured
    elsewhere, e.g. by the capacity sampler) and the time in between."""
    if not stats:
        return None
    batch = int(params.get("batch_size") or 1)
    ops = load.get("ops") or {}
    counts = op_counts(folders, batch)
    cost = task_cost(stats, counts, params.get("engine") or "list", mean_service_us(ops, batch), batched=batch > 1)
    acks_per_s = (ops.get("ack") or {}).get("ops_per_s")
    if cpu is not None:
        cost.update(client_cost(cpu, acks_per_s))
    elif client_cores is not None:
        cost["client_cores"] = client_cores
        cost["client_us_per_task"] = round(client_cores / acks_per_s * 1e6, 3) if acks_per_s else None
    enq, acks = counts["enqueue"], counts["ack"]
    cost["balanced"] = bool(acks) and abs(enq - acks) <= 0.1 * acks
    return cost

"""A run's pool sweeps against the round trip: open-loop cells that differ only in ``pool_size`` and ``rtt_ms``,
one line per round trip, each with its predicted and its measured knee (:mod:`bench.poolsize`). Results
contract only (summary.json ``cells``: ``params``, ``ops``, ``network``, ``cost``); pure: no Redis, no files.

The service time the predictions use comes from the sweep itself: its *reference* cell, the largest pool at the
smallest round trip (the one least likely to have waited for a connection), less that cell's configured round
trip. The round trip of a line is its configured ``rtt_ms`` (0 on loopback, where the service time already
holds loopback's own); the one PING measured through the delay line is shown beside it, and a cell whose
measured round trip was off the asked one is flagged (``network.flagged``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .cells import is_plain
from .poolsize import (
    Knee,
    ServiceTime,
    SweepPoint,
    busy_connections,
    measured_knee,
    predict,
    predicted_knee,
    within_one_step,
)

VARIED = ("pool_size", "rtt_ms")  # what may differ along a sweep; every other parameter is the same


@dataclass(frozen=True)
class RttLine:
    """One round trip of a sweep: its cells by pool size, what the model says, where the measured knee is."""

    rtt_ms: float
    cells: list[dict[str, Any]]
    points: list[SweepPoint]
    measured_rtt_us: float | None  # client -> server PING p50 through the delay line (None on loopback)
    flagged: bool  # a cell's measured round trip was off the configured one
    busy: float  # Little's law at the offered rate
    predicted: int | None  # the predicted knee
    predicted_p99_us: dict[int, float]  # the model's p99 at each swept pool (inf: cannot keep up)
    knee: Knee | None  # the measured knee
    agree: bool | None  # predicted and measured knee within one step of the sweep

    @property
    def sizes(self) -> list[int]:
        return [p.pool for p in self.points]


@dataclass(frozen=True)
class PoolSweep:
    label: str  # what is the same along it: "standalone, 24 users, blocking pool, 2,000 enqueue/s"
    op: str  # enqueue or enqueue_many
    rate_per_s: float  # offered calls/s: the tasks/s rate over the batch size
    reference: dict[str, Any]  # the cell the service time comes from
    service: ServiceTime  # what holds a connection (``<op>_service``), less the reference's round trip
    latency: ServiceTime  # what a caller measures apart from round trip and pool wait (``<op>``, corrected)
    lines: list[RttLine]

    @property
    def sizes(self) -> list[int]:
        return sorted({s for line in self.lines for s in line.sizes})


def rtt_ms(cell: dict[str, Any]) -> float:
    """The configured client <-> server round trip of a cell, ms (0: loopback, no ``network`` record)."""
    configured = (cell.get("network") or {}).get("configured") or {}
    return float(configured.get("rtt_ms", cell["params"].get("rtt_ms") or 0.0) or 0.0)


def measured_rtt_us(cell: dict[str, Any]) -> float | None:
    """The client's PING p50 through the delay line (µs), None when not measured."""
    measured = (cell.get("network") or {}).get("measured") or {}
    client = measured.get("client_rtt") or {}
    if client.get("p50_us") is not None:
        return float(client["p50_us"])
    legacy = measured.get("client_rtt_us") or {}  # the first draft of the network record
    return float(legacy["p50"]) if legacy.get("p50") is not None else None


def operation(cell: dict[str, Any]) -> str:
    return "enqueue_many" if "enqueue_many" in cell["ops"] else "enqueue"


def _key(cell: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in cell["params"].items() if k not in VARIED}, sort_keys=True, default=str)


def _label(params: dict[str, Any], rate: float, op: str) -> str:
    kind = "blocking pool" if params.get("pool_blocking") else "non-blocking pool"
    return f"{params.get('backend')}, {params.get('users')} users, {kind}, {rate:,.0f} {op}/s"


def service_times(reference: dict[str, Any], op: str) -> tuple[ServiceTime, ServiceTime]:
    """(holding, latency) from the reference cell, less its configured round trip: the connection is held for
    ``<op>_service`` (from the actual send; closed loop: ``<op>``), the caller sees ``<op>`` (open loop: from
    the intended send, so the send lag counts)."""
    minus = rtt_ms(reference) * 1000
    ops = reference["ops"]
    held = ops.get(f"{op}_service") or ops[op]
    return ServiceTime.from_ops(held, minus), ServiceTime.from_ops(ops[op], minus)


def _point(cell: dict[str, Any], op: str) -> SweepPoint:
    stats = cell["ops"].get(op) or {}
    return SweepPoint(int(cell["params"]["pool_size"]), stats.get("p99_us"), stats.get("ops_per_s"))


def _line(
    rtt: float, cells: list[dict[str, Any]], op: str, rate: float, held: ServiceTime, seen: ServiceTime
) -> RttLine:
    cells = sorted(cells, key=lambda c: c["params"]["pool_size"])
    points = [_point(c, op) for c in cells]
    rtt_us = rtt * 1000
    predicted = predicted_knee(rate, rtt_us, held, latency=seen)
    model = {p.pool: predict(p.pool, rate, rtt_us, held, latency=seen).p_us for p in points}
    knee = measured_knee(points, target_rate=rate)
    measured = [m for c in cells if (m := measured_rtt_us(c)) is not None]
    return RttLine(
        rtt_ms=rtt,
        cells=cells,
        points=points,
        measured_rtt_us=sorted(measured)[len(measured) // 2] if measured else None,
        flagged=any((c.get("network") or {}).get("flagged") for c in cells),
        busy=busy_connections(rate, rtt_us, held.mean_us),
        predicted=predicted,
        predicted_p99_us=model,
        knee=knee,
        agree=within_one_step([p.pool for p in points], predicted, knee.pool if knee else None),
    )


def pool_sweeps(cells: list[dict[str, Any]]) -> list[PoolSweep]:
    """Every open-loop sweep of at least two pool sizes in ``cells``, one line per round trip (smallest first)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        p = c.get("params") or {}
        if not is_plain(c) or not (p.get("rate") or 0) > 0 or p.get("pool_size") is None:
            continue
        op = operation(c)
        stats = c["ops"].get(op) or {}
        if stats.get("p99_us") is None or not stats.get("mean_us"):
            continue
        groups.setdefault(_key(c), []).append(c)
    out = []
    for group in groups.values():
        if len({c["params"]["pool_size"] for c in group}) < 2:
            continue
        params, op = group[0]["params"], operation(group[0])
        rate = float(params["rate"]) / max(1, int(params.get("batch_size") or 1))
        reference = min(group, key=lambda c: (rtt_ms(c), -c["params"]["pool_size"]))
        try:
            held, seen = service_times(reference, op)
        except ValueError:
            continue  # no usable mean or percentiles in the reference cell: nothing to predict from
        by_rtt: dict[float, list[dict[str, Any]]] = {}
        for c in group:
            by_rtt.setdefault(rtt_ms(c), []).append(c)
        lines = [_line(r, by_rtt[r], op, rate, held, seen) for r in sorted(by_rtt)]
        out.append(PoolSweep(_label(params, rate, op), op, rate, reference, held, seen, lines))
    return out

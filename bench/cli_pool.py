"""``bench pool``: the smallest connection pool that meets a p99 SLO at a rate over a round trip (bench.poolsize),
from a service time given or measured in a run. Exit 0 with the answer, 1 when no pool size meets the SLO,
2 on bad input."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from .cli_common import console
from .errors import UsageError
from .poolsize import PoolPoint, PoolPrediction, ServiceTime, predict, predict_pool

MODEL = (
    "model: M/G/c, Little's law for the busy connections, Erlang C for the chance to wait for one, the wait's "
    "mean scaled by (arrival cv² + holding cv²)/2 (Allen–Cunneen), p99 of wait + RTT + service"
)


def _add_pool(sub: Any) -> None:
    pool = sub.add_parser(
        "pool",
        help="the smallest pool meeting a p99 SLO at a rate and round trip (Little's law + M/G/c queueing)",
        description="Predict the smallest connection pool whose p99 (pool wait + round trip + service) meets "
        "the SLO. The rate is in operations/s: calls that each hold one connection for one round trip "
        "(enqueues; tasks/s divided by the batch size for enqueue_many). The pool is per process (per node "
        "on a cluster: give the rate that reaches one node). Exit 1 when no pool size meets the SLO.",
    )
    pool.add_argument("--rate", type=float, required=True, metavar="OPS_PER_S", help="offered operations/s")
    pool.add_argument("--rtt-ms", type=float, required=True, metavar="MS", help="client <-> server round trip")
    pool.add_argument("--slo-p99-ms", type=float, required=True, metavar="MS", help="p99 latency objective")
    given = pool.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--service-us",
        type=float,
        metavar="US",
        help="mean service time per call beyond the round trip (taken as exponential: M/M/c)",
    )
    given.add_argument(
        "--from",
        dest="from_run",
        type=Path,
        metavar="RUN_DIR",
        help="measured service time: a run's cell (default: the largest pool at the smallest round trip)",
    )
    pool.add_argument("--cell", metavar="ID", help="with --from: the cell to take the service time from")
    pool.add_argument(
        "--arrival-cv2",
        type=float,
        default=1.0,
        metavar="CV2",
        help="arrivals' squared coefficient of variation: 1 = Poisson (default, errs large), 0 = perfectly paced",
    )


def _positive(name: str, value: float, zero_ok: bool = False) -> float:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise UsageError(f"{name} must be a finite number {'>=' if zero_ok else '>'} 0, got {value:g}")
    return value


def _from_run(path: Path, cell_id: str | None) -> tuple[ServiceTime, ServiceTime, float, str]:
    """(holding, latency, client µs per call, where from) out of a run's cell."""
    from .poolsweep import operation, rtt_ms, service_times
    from .runs import load_run

    run = load_run(path)
    usable = [c for c in run.cells if (c["ops"].get(operation(c)) or {}).get("mean_us")]
    if cell_id is not None:
        cell = next((c for c in run.cells if c["id"] == cell_id), None)
        if cell is None:
            ids = ", ".join(repr(c["id"]) for c in run.cells)
            raise UsageError(f"--cell {cell_id!r}: no such cell in {path} (cells: {ids})")
        if cell not in usable:
            raise UsageError(f"--cell {cell_id!r}: no enqueue latencies measured in that cell")
    elif not usable:
        raise UsageError(f"{path}: no cell measured enqueue latencies to take a service time from")
    else:
        cell = min(usable, key=lambda c: (rtt_ms(c), -int(c["params"].get("pool_size") or 0)))
    op = operation(cell)
    try:
        held, seen = service_times(cell, op)
    except ValueError as exc:
        raise UsageError(f"cell [{cell['id']}] of {path}: {exc}") from None
    cost = cell.get("cost") or {}
    client = float(cost.get("client_us_per_task") or 0.0) * int(cell["params"].get("batch_size") or 1)
    used = f"{op}_service" if f"{op}_service" in cell["ops"] else op
    rtt = rtt_ms(cell)
    where = f"{path} cell [{cell['id']}] ({used}; pool {cell['params'].get('pool_size')}"
    where += f", its {rtt:g} ms round trip subtracted)" if rtt else ", loopback)"
    return held, seen, client, where


def _us(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "∞"
    return f"{value / 1000:,.2f} ms" if value >= 1000 else f"{value:,.0f} µs"


def _service_text(s: ServiceTime) -> str:
    pcts = ", ".join(f"p{p:g} {_us(v)}" for p, v in sorted(s.percentiles.items()))
    return f"mean {_us(s.mean_us)}, {pcts}" + (f" [{s.assumed}]" if s.assumed else "")


def _point_row(pt: PoolPoint) -> str:
    wait = "–" if not math.isfinite(pt.wait_if_waiting_us) else _us(pt.wait_if_waiting_us)
    return f"  {pt.pool:>5}  {pt.utilisation:>6.0%}  {pt.wait_probability:>7.1%}  {wait:>10}  {_us(pt.p_us):>10}" + (
        "  cannot keep up" if not math.isfinite(pt.p_us) else ""
    )


def _print(pred: PoolPrediction, latency: ServiceTime | None, where: str, arrival_cv2: float) -> None:
    def out(text: str, style: str | None = None) -> None:
        console.print(escape(text), style=style, highlight=False, soft_wrap=True)  # one line each: greppable

    out(
        f"pool for {pred.rate_per_s:,.0f} operations/s at a {pred.rtt_us / 1000:g} ms round trip, "
        f"SLO p99 <= {pred.slo_p99_us / 1000:g} ms"
    )
    out(f"  service time (held per call beyond the round trip): {_service_text(pred.service)}")
    if latency is not None and latency != pred.service:
        out(f"  latency a caller sees apart from round trip and pool wait: {_service_text(latency)}")
    out(f"  from: {where}")
    out(
        f"  Little's law: busy connections = {pred.rate_per_s:,.0f}/s × ({_us(pred.rtt_us)} + "
        f"{_us(pred.service.mean_us)}) = {pred.busy:.2f}"
    )
    out(f"  p99 with no pool wait (the floor): {_us(pred.no_wait_p99_us)}; holding time cv² {pred.holding_cv2:.2f}")
    if pred.client_busy:
        out(f"  client CPU: {pred.client_busy:.0%} of one core (one per process, whatever the pool)")
    out(f"  {MODEL}; arrival cv² {arrival_cv2:g}")
    if pred.pool is None:
        out(f"no pool size meets it: {pred.reason}", style="red")
    else:
        at = pred.at_pool
        out(
            f"predicted pool: {pred.pool} connections (p99 {_us(at.p_us if at else None)}, "
            f"{pred.pool / pred.busy:.1f}× the busy connections)",
            style="bold",
        )
    if pred.points:
        out("   pool  in use  P(wait)  wait (if)         p99")
        more = (1, 2) if pred.pool is not None else ()
        extra = [
            predict((pred.pool or 0) + k, pred.rate_per_s, pred.rtt_us, pred.service, 99.0, arrival_cv2, latency)
            for k in more
        ]
        for pt in [*pred.points[-4:], *extra]:
            out(_point_row(pt))


def cmd_pool(args: argparse.Namespace) -> int:
    rate = _positive("--rate", args.rate)
    rtt_ms = _positive("--rtt-ms", args.rtt_ms, zero_ok=True)
    slo = _positive("--slo-p99-ms", args.slo_p99_ms)
    cv2 = _positive("--arrival-cv2", args.arrival_cv2, zero_ok=True)
    if args.cell is not None and args.from_run is None:
        raise UsageError("--cell needs --from RUN_DIR")
    latency: ServiceTime | None = None
    client = 0.0
    if args.from_run is not None:
        service, latency, client, where = _from_run(args.from_run, args.cell)
    else:
        service, where = ServiceTime.exponential(_positive("--service-us", args.service_us)), "--service-us"
    pred = predict_pool(rate, rtt_ms * 1000, service, slo * 1000, client_us=client, arrival_cv2=cv2, latency=latency)
    _print(pred, latency, where, cv2)
    return 0 if pred.pool is not None else 1


PARSERS: dict[str, Callable[[Any], None]] = {"pool": _add_pool}
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"pool": cmd_pool}

"""The report's pool-vs-round-trip section and headline: per open-loop pool sweep and round trip, where the knee
is, predicted (:mod:`bench.poolsize`) vs measured, and whether they are within one step of the sweep. Results
contract only (summary.json ``cells``), through :mod:`bench.poolsweep`; pure."""

from __future__ import annotations

import math
from typing import Any

from .poolsize import KNEE_P99_TOLERANCE, KNEE_RATE_TOLERANCE, sweep_step
from .poolsweep import PoolSweep, RttLine, pool_sweeps
from .report_tables import n, table


def _rtt(line: RttLine) -> str:
    return "loopback" if not line.rtt_ms else f"{line.rtt_ms:g} ms"


def agreement(line: RttLine) -> str:
    """``same pool``, ``one step apart``, ``NO: 2 steps apart`` or why it cannot be said."""
    if line.knee is None:
        return "– (no pool reached the rate)"
    if line.predicted is None:
        return "– (no prediction)"
    if line.agree is None:
        return "– (knee outside the sweep)"
    if sweep_step(line.sizes, line.predicted) == sorted(line.sizes).index(line.knee.pool):
        return "yes: the same pool" if line.predicted == line.knee.pool else "yes: the same swept pool"
    return "yes: one step apart" if line.agree else "**NO**: more than one step apart"


def _row(line: RttLine) -> list[str]:
    knee = line.knee
    notes = []
    if line.flagged:
        notes.append("measured RTT off the asked one")
    short = [p.pool for p in line.points if knee is None or (p.ops_per_s or 0) < knee.needed_ops_per_s]
    if short:
        notes.append("rate not reached at pool " + ", ".join(map(str, short)))
    predicted_p99 = line.predicted_p99_us.get(knee.pool) if knee else None
    return [
        _rtt(line),
        "–" if line.measured_rtt_us is None else f"{line.measured_rtt_us / 1000:.2f} ms",
        f"{line.busy:.2f}",
        n(line.predicted),
        n(knee.pool if knee else None),
        n(knee.point.p99_us if knee else None),
        "cannot keep up" if predicted_p99 == math.inf else n(predicted_p99),
        agreement(line),
        "; ".join(notes),
    ]


def pool_section(cells: list[dict[str, Any]]) -> list[str]:
    """Markdown: one table per sweep, one row per round trip."""
    sweeps = pool_sweeps(cells)
    if not sweeps:
        return []
    parts = [
        "## Pool size vs round trip (`bench pool`)",
        "",
        "Little's law: the connections busy on average are rate × (RTT + service time). Predicted knee: the "
        f"smallest pool whose model p99 (M/G/c: Erlang C with the Allen–Cunneen correction) is within "
        f"{KNEE_P99_TOLERANCE:.0%} of the p99 without any pool wait. Measured knee: the smallest pool whose enqueue "
        f"throughput is within {KNEE_RATE_TOLERANCE:.0%} of the offered rate and whose enqueue p99 (from the "
        f"intended send) is within {KNEE_P99_TOLERANCE:.0%} of the best p99 of the pools that reached it. "
        "Agreement: the predicted knee, rounded up to a swept size, at most one step of the sweep from the measured.",
        "",
    ]
    for sweep in sweeps:
        parts += [f"**{sweep.label}**; {_service_text(sweep)}", ""]
        headers = [
            "RTT asked",
            "RTT measured p50",
            "busy connections (Little)",
            "predicted knee",
            "measured knee",
            "measured p99 µs",
            "model p99 there µs",
            "within one step",
            "notes",
        ]
        parts += [table(headers, [_row(line) for line in sweep.lines]), ""]
    return parts


def _service_text(sweep: PoolSweep) -> str:
    s, seen = sweep.service, sweep.latency
    return (
        f"service time from cell [{sweep.reference['id']}]: held {n(s.mean_us)} µs mean, p99 "
        f"{n(s.percentiles.get(99.0))} µs (`{sweep.op}_service`); seen {n(seen.mean_us)} µs mean, p99 "
        f"{n(seen.percentiles.get(99.0))} µs (`{sweep.op}`, with the send lag)"
    )


def pool_findings(cells: list[dict[str, Any]]) -> list[str]:
    """One headline per sweep with more than one round trip or pool: the knee per RTT, measured / predicted."""
    out = []
    for sweep in pool_sweeps(cells):
        knees = ", ".join(
            f"{_rtt(line)} {n(line.knee.pool if line.knee else None)} / {n(line.predicted)}" for line in sweep.lines
        )
        judged = [line.agree for line in sweep.lines if line.agree is not None]
        verdict = (
            "no knee to compare"
            if not judged
            else "within one step at every RTT"
            if all(judged)
            else f"NOT within one step at {sum(not j for j in judged)} of {len(judged)} RTTs"
        )
        out.append(f"pool vs round trip ({sweep.label}): knee at pool (measured / predicted) {knees}; {verdict}")
    return out

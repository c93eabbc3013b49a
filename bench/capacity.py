"""Capacity at an SLO (``bench capacity``): the highest open-loop rate a configuration sustains.
Pure: no Redis, no Locust, no I/O; the driver (``bench/capacity_run.py``) measures the steps.

The search offers rates that grow geometrically (``start``, ``start × factor`` …) until a step fails,
then bisects (geometric midpoints) between the last passing and the first failing rate until they are
within ``resolution`` of each other. Then both ends are run once more: the first failing rate must fail
again (else it was a hiccup, and the search climbs on from there; a harness-bound failure is not re-run)
and the capacity must pass again (else the bisection resumes below it). The reported capacity passed
twice, the next step up failed twice (or once, harness-bound).
A step passes when all of these hold:

- ``rate``: the offered rate was reached (issued ≥ 95 % of the planned sends, the open loop's rule);
- ``latency``: every SLO percentile of the coordinated-omission-corrected enqueue latency is within its limit;
- ``errors``: the error rate (failed / attempted operations) is at most ``max_error_rate`` (default 0);
- ``backlog``: the queue depth did not grow over the step (slope at most ``max_backlog_growth`` of the
  offered rate, and at least 1 task/s of slack): consumers kept up.

A failed step is *harness-bound* when the server was not saturated (its busiest node used less than
``server_saturated`` of a core) and the load generator was out of CPU: the rate was not reached, or its
busiest process used at least ``generator_saturated`` of a core, or the host had no CPU left
(``host_saturated`` of all cores busy) while the load processes used at least ``generator_share`` cores
between them (on one machine the load, the servers and any other work share the CPU: a load process
starved of it sends late). A host saturated by other processes while the load used little CPU (a pool
wait, say) is not the harness: such a step is *contended*, said with its verdict, and judged as measured.
A harness-bound step says how far this load generator (on this machine) goes, not what the queue can
take: a capacity whose next step up failed that way is a lower bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .schedule import RATE_REACHED

PERCENTILE_KEYS = {"p50": "p50_us", "p90": "p90_us", "p99": "p99_us", "p99.9": "p999_us", "p99.99": "p9999_us"}
UNITS_US = {"us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}
LIMITS = ("harness-bound", "errors", "throughput", "backlog", "latency")  # most telling first
BACKLOG_SLACK_PER_S = 1.0  # depth may wobble by this much per second without counting as growth
CONTENDED_CORES = 0.5  # other processes on the host using this much CPU during a step: said with its verdict


@dataclass(frozen=True)
class Slo:
    """``p99=5ms``: the corrected enqueue latency at ``percentile`` at most ``limit_us`` µs."""

    percentile: str
    limit_us: float

    @property
    def key(self) -> str:
        return PERCENTILE_KEYS[self.percentile]

    def __str__(self) -> str:
        return f"{self.percentile} ≤ {format_latency(self.limit_us)}"


def format_latency(us: float) -> str:
    for scale, unit in ((1e6, "s"), (1e3, "ms")):
        if us >= scale:
            return f"{us / scale:g} {unit}"
    return f"{us:g} µs"


def parse_slo(text: str) -> list[Slo]:
    """``p99=5ms`` or several, comma-separated (``p50=1ms,p99.9=20ms``); units us/µs, ms, s."""
    slos: dict[str, Slo] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        match = re.fullmatch(r"(p[0-9.]+)\s*[=:]\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(us|µs|ms|s)?", part, re.I)
        if not match:
            raise UsageError(f"--slo {part!r}: expected PERCENTILE=LIMIT, e.g. p99=5ms (units us, ms, s)")
        pct, value, unit = match[1].lower(), float(match[2]), (match[3] or "").lower()
        if pct not in PERCENTILE_KEYS:
            raise UsageError(f"--slo {part!r}: percentile {pct} is not one of {', '.join(PERCENTILE_KEYS)}")
        if not unit:
            raise UsageError(f"--slo {part!r}: give a unit (us, ms or s), e.g. {pct}={match[2]}ms")
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--slo {part!r}: the limit must be > 0")
        slos[pct] = Slo(pct, value * UNITS_US[unit])
    if not slos:
        raise UsageError("--slo: give at least one PERCENTILE=LIMIT, e.g. p99=5ms")
    return sorted(slos.values(), key=lambda s: float(s.percentile[1:]))


@dataclass(frozen=True)
class Criteria:
    slos: tuple[Slo, ...] = (Slo("p99", 5000.0),)
    min_coverage: float = RATE_REACHED
    max_error_rate: float = 0.0
    max_backlog_growth: float = 0.02  # depth slope as a share of the offered rate
    server_saturated: float = 0.8  # cores: the busiest server node at or above this is saturated
    generator_saturated: float = 0.9  # cores: the busiest load process at or above this is saturated
    host_saturated: float = 0.9  # share of all cores busy: the machine running the load has no CPU left
    generator_share: float = 0.5  # cores the load processes use between them to count as starved on a full host

    def as_dict(self) -> dict[str, Any]:
        return {
            "slo": {s.percentile: s.limit_us for s in self.slos},
            "slo_text": ", ".join(map(str, self.slos)),
            "min_coverage": self.min_coverage,
            "max_error_rate": self.max_error_rate,
            "max_backlog_growth": self.max_backlog_growth,
            "server_saturated_cores": self.server_saturated,
            "generator_saturated_cores": self.generator_saturated,
            "host_saturated_share": self.host_saturated,
            "generator_share_cores": self.generator_share,
        }


@dataclass
class Step:
    """What one short open-loop run measured (the driver fills it; tests make it up)."""

    rate: float  # offered, tasks/s
    planned: int = 0
    issued: int = 0
    achieved_rate: float | None = None  # issued / elapsed
    coverage: float = 1.0  # issued / planned
    corrected: dict[str, float | None] = field(default_factory=dict)  # enqueue from the intended send, p50_us …
    service: dict[str, float | None] = field(default_factory=dict)  # enqueue from the actual send
    operations: int = 0  # successful enqueues, dequeues and acks after the warm-up
    errors: int = 0  # failed ones
    depth_slope: float | None = None  # tasks/s, least squares over the measured window
    depth_start: int | None = None
    depth_end: int | None = None
    server_cpu: float | None = None  # cores used by the busiest server node
    server_ops: float | None = None  # commands/s of the busiest server node
    generator_cpu: float | None = None  # cores used by the busiest load-generator process
    generator_cpu_total: float | None = None  # cores used by all local load-generator processes
    host_cpu: float | None = None  # share of all the host's cores in use
    other_cpu: float | None = None  # cores the rest of the host used (neither the servers nor the load)
    measured_s: float | None = None  # seconds Locust measured (after the warm-up)
    attempts: int = 1  # runs it took to measure long enough (a slow start-up is run again)
    complete: bool = True
    note: str = ""

    @property
    def error_rate(self) -> float:
        attempted = self.operations + self.errors
        return self.errors / attempted if attempted else 0.0


@dataclass
class Verdict:
    passed: bool
    failed: list[str]  # criteria: rate, latency, errors, backlog
    checks: dict[str, dict[str, Any]]  # per criterion: value, limit, ok
    harness_bound: bool
    limit: str | None  # one of LIMITS when failed
    reasons: list[str]  # one line per failed criterion


def judge(step: Step, criteria: Criteria) -> Verdict:
    checks: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    rate_ok = step.coverage >= criteria.min_coverage
    checks["rate"] = {"value": step.coverage, "limit": criteria.min_coverage, "ok": rate_ok}
    if not rate_ok:
        reasons.append(
            f"rate not reached: {100 * step.coverage:.1f}% of the planned sends made "
            f"({_n(step.achieved_rate)}/s of {_n(step.rate)}/s)"
        )
    latency_ok = True
    for slo in criteria.slos:
        value = step.corrected.get(slo.key)
        ok = value is not None and value <= slo.limit_us
        checks[f"latency_{slo.percentile}"] = {"value": value, "limit": slo.limit_us, "ok": ok}
        if not ok:
            latency_ok = False
            shown = "no data" if value is None else format_latency(value)
            reasons.append(f"corrected {slo.percentile} {shown} > {format_latency(slo.limit_us)}")
    errors_ok = step.error_rate <= criteria.max_error_rate
    checks["errors"] = {
        "value": step.error_rate,
        "count": step.errors,
        "limit": criteria.max_error_rate,
        "ok": errors_ok,
    }
    if not errors_ok:
        reasons.append(f"{step.errors:,} errors ({100 * step.error_rate:.3g}% of operations)")
    growth_limit = max(criteria.max_backlog_growth * step.rate, BACKLOG_SLACK_PER_S)
    backlog_ok = step.depth_slope is None or step.depth_slope <= growth_limit
    checks["backlog"] = {"value": step.depth_slope, "limit": growth_limit, "ok": backlog_ok}
    if not backlog_ok:
        reasons.append(
            f"queue depth grew {step.depth_slope:,.0f} tasks/s (limit {growth_limit:,.0f}/s): consumers fell behind"
        )
    failed = [
        name
        for name, ok in (("rate", rate_ok), ("latency", latency_ok), ("errors", errors_ok), ("backlog", backlog_ok))
        if not ok
    ]
    server_idle = step.server_cpu is not None and step.server_cpu < criteria.server_saturated
    generator_busy = step.generator_cpu is not None and step.generator_cpu >= criteria.generator_saturated
    # A host out of CPU starves the load generator only if the load needs CPU: a load process waiting on
    # something else (a pool, a slow server) is not held back by the other processes of a shared machine.
    contended = step.other_cpu is not None and step.other_cpu >= CONTENDED_CORES
    load_cpu = step.generator_cpu_total if step.generator_cpu_total is not None else step.generator_cpu
    host_busy = (
        step.host_cpu is not None
        and step.host_cpu >= criteria.host_saturated
        and load_cpu is not None
        and load_cpu >= criteria.generator_share
    )
    harness = bool(failed) and server_idle and (not rate_ok or generator_busy or host_busy)
    if harness:
        if not rate_ok:
            why = "rate not reached"
        elif generator_busy:
            why = f"a load process used {step.generator_cpu:.2f} cores"
        else:
            why = f"the host's CPU was {100 * (step.host_cpu or 0):.0f}% busy, the load using {load_cpu:.2f} cores"
        reasons.append(f"harness-bound: {why} while the busiest server node used only {step.server_cpu:.2f} cores")
    if failed and contended:
        reasons.append(f"host contended: other processes used {step.other_cpu:.2f} cores during the step")
    limit = None
    if failed:
        candidates = {
            "harness-bound": harness,
            "errors": not errors_ok,
            "throughput": not rate_ok,  # not reached, and the server (or the unknown) is to blame
            "backlog": not backlog_ok,
            "latency": not latency_ok,
        }
        limit = next(name for name in LIMITS if candidates[name])
    return Verdict(not failed, failed, checks, harness, limit, reasons)


@dataclass
class Judged:
    index: int  # 1-based, in the order run
    phase: str  # up, down, bisect, confirm
    step: Step
    verdict: Verdict

    @property
    def rate(self) -> float:
        return self.step.rate

    @property
    def passed(self) -> bool:
        return self.verdict.passed


@dataclass
class SearchResult:
    steps: list[Judged]
    capacity: Judged | None  # the highest rate that passed (twice, when confirmed)
    next_fail: Judged | None  # the lowest rate above it that failed
    limit: str  # one of LIMITS (what failed the next step up, or the lowest step), or max-rate / max-steps
    confirmed: bool
    converged: bool  # next_fail within the resolution of capacity

    @property
    def capacity_rate(self) -> float | None:
        return self.capacity.rate if self.capacity else None

    @property
    def lower_bound(self) -> bool:
        """The true capacity may be higher: harness-bound, or the search stopped before a failure."""
        return self.limit in ("harness-bound", "max-rate", "max-steps")


def round_rate(rate: float) -> float:
    """Three significant figures: steps 5 % apart stay apart, and read well (2,830/s)."""
    return float(f"{rate:.3g}") if rate > 0 else rate


def search(
    measure: Callable[[float], Step],
    criteria: Criteria,
    *,
    start: float = 500.0,
    factor: float = 2.0,
    resolution: float = 0.05,
    max_rate: float = 1_000_000.0,
    min_rate: float = 1.0,
    max_steps: int = 40,
    confirm: bool = True,
    on_step: Callable[[Judged], None] | None = None,
) -> SearchResult:
    """Geometric steps up until a step fails (down from ``start`` when it fails), bisection to
    ``resolution``, then re-runs of both ends (``confirm``): a failure that passes on its re-run was a
    hiccup (climb on from it), a capacity that fails on its re-run is not sustainable (bisect below it)."""
    if not (start > 0 and factor > 1 and resolution > 0 and max_rate >= start and min_rate > 0):
        raise UsageError("capacity search: need start > 0, factor > 1, resolution > 0, max rate >= start")
    steps: list[Judged] = []

    def run(rate: float, phase: str) -> Judged:
        step = measure(rate)
        judged = Judged(len(steps) + 1, phase, step, judge(step, criteria))
        steps.append(judged)
        if on_step is not None:
            on_step(judged)
        return judged

    def budget() -> bool:
        return len(steps) < max_steps

    def climb(lo: Judged) -> tuple[Judged, Judged | None]:
        """Geometric steps up from a passing ``lo`` until one fails (or the max rate passes)."""
        while lo.rate < max_rate and budget():
            step = run(min(round_rate(lo.rate * factor), max_rate), "up")
            if not step.passed:
                return lo, step
            lo = step
        return lo, None

    lo: Judged | None = None
    hi: Judged | None = None
    first = run(round_rate(start), "up")
    if first.passed:
        lo, hi = climb(first)
    else:
        hi = first
        while hi.rate / factor >= min_rate and budget():
            step = run(round_rate(hi.rate / factor), "down")
            if step.passed:
                lo = step
                break
            hi = step
    confirmed = False
    hi_checked = False  # hi is itself a second opinion (a re-run): not re-run again
    while lo is not None and budget():
        while hi is not None and hi.rate / lo.rate - 1 > resolution and budget():
            mid = round_rate(math.sqrt(lo.rate * hi.rate))
            if not lo.rate < mid < hi.rate:
                break
            step = run(mid, "bisect")
            if step.passed:
                lo = step
            else:
                hi, hi_checked = step, False
        if not confirm or not budget():
            break
        # The failure above fails again, or it was a hiccup. Not re-run when harness-bound: past the load
        # generator's ceiling nothing more is learnt about the queue, and its noise would send the search
        # climbing again (the capacity is a lower bound either way).
        if hi is not None and not hi_checked and not hi.verdict.harness_bound:
            again = run(hi.rate, "confirm")
            if again.passed:
                lo, hi = climb(again)
                hi_checked = False
                continue
            hi, hi_checked = again, True
            if not budget():
                break
        again = run(lo.rate, "confirm")  # the capacity passes again, or it is not sustainable
        if again.passed:
            confirmed = True
            lo = again
            break
        hi, hi_checked = again, True
        below = [s for s in steps if s.passed and s.rate < again.rate]
        lo = max(below, key=lambda s: (s.rate, s.index)) if below else None
    converged = lo is not None and hi is not None and hi.rate / lo.rate - 1 <= resolution * (1 + 1e-9)
    if hi is None:
        limit = "max-rate" if lo is not None and lo.rate >= max_rate else "max-steps"
    elif lo is None:  # nothing passed down to min_rate: what failed the lowest step
        limit = (hi.verdict.limit or "latency") if budget() else "max-steps"
    elif not converged and not budget():
        limit = "max-steps"
    else:
        limit = hi.verdict.limit or "latency"
    return SearchResult(steps, lo, hi, limit, confirmed, converged)


def _n(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"

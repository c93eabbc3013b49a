"""How many pooled connections a rate needs over a network round trip, and where a measured pool sweep's knee
is. Pure: numbers in, numbers out (no Redis); unit-tested with literal numbers.

Units: the rate λ is in *operations* per second, an operation being one call that holds one pooled connection
for one round trip: one ``enqueue`` (one EVALSHA), so with ``batch_size`` 1 tasks/s; with ``batch_size`` > 1
one ``enqueue_many`` call, so tasks/s ÷ batch size. Times are in µs.

**Little's law**: the connections busy on average are L = λ × (RTT + S), where S, the *service time*, is what a
call holds its connection for beyond the network's round trip: client encode and decode, server execution.
Measured on loopback it also holds loopback's ~40 µs round trip, which is then counted once more: negligible.

**The tail: M/G/c with Erlang C and the Allen–Cunneen correction.** The pool is c servers; every call holds one
for H = RTT + S (mean h), and a call that finds all c busy waits in the blocking pool (assumed served in arrival
order). With the offered load a = λh (= L) and c > a:

- P(wait) = Erlang C(c, a): exact for M/M/c, the usual approximation for G/G/c;
- the wait of a call that waits is taken as exponential with mean (ca² + cs²)/2 × h / (c − a), where
  cs² = Var(H)/h² is the holding time's squared coefficient of variation (from the measured percentiles: a
  constant RTT adds no variance, so it shrinks cs²) and ca² the arrivals' (1 = Poisson);
- the response is T = W + RTT + S (W independent of the call's own S), and its p99 solves P(T > t) = 1 %
  exactly for a service distribution whose quantile function runs linearly through the measured percentiles.
  With an open loop the measured latency starts at the *intended* send time, so it also holds the event loop's
  send lag, which holds no connection: then S in T is the ``latency`` distribution (the corrected ``enqueue``
  of a cell whose pool never waited), while Little and Erlang C take the holding time (``enqueue_service``).

Why not plain M/M/c or M/D/c: M/M/c takes H as exponential (cs² = 1), but with a 2 ms round trip H is nearly
constant (cs² ≈ 0.05 here), and M/M/c would about double the wait; M/D/c is right for a constant H but wrong on
loopback, where the event loop and the GIL give S a long tail (p99 several times the mean). The (ca² + cs²)/2
factor moves between the two (with ca² = 1 and cs² = 0 it is the classic M/D/c approximation, half the M/M/c
wait) while Erlang C keeps the exact dependence on c. Arrivals: ca² = 1 by default, although bench's open loop
paces sends on a fixed schedule (ca² = 0): the event loop and the GIL jitter when they go out, real producers
are burstier, and 1 errs on the side of a bigger pool; 0 gives the paced lower bound. A *non-blocking* pool
fails the calls that would wait (PoolExhausted): their share is Erlang B(c, a) (:func:`erlang_b`).

The client's own CPU is not c servers but one per process (the GIL): when the client's µs per call are known
(``cell["cost"]``), λ × client µs ≥ 1 s/s means no pool size helps; more processes do.

Knees. *Predicted*: the smallest pool whose model p99 is within ``KNEE_P99_TOLERANCE`` (25 %) of the p99 with
no pool wait at all (RTT + S alone). *Measured*: in a sweep of pool sizes at one round trip, the smallest pool
whose throughput is within ``KNEE_RATE_TOLERANCE`` (5 %, the open loop's own "rate reached") of the offered rate
(closed loop: of the sweep's best) and whose p99 is within 25 % of the best p99 among the pools that reached it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise

KNEE_P99_TOLERANCE = 0.25  # a knee's p99 may be this much above the best (measured) or the no-wait one (model)
KNEE_RATE_TOLERANCE = 0.05  # a knee's throughput may fall this much short of the offered rate
MAX_POOL = 4096
SERVICE_KEYS = {50.0: "p50_us", 90.0: "p90_us", 99.0: "p99_us", 99.9: "p999_us"}  # the percentiles a cell has


@dataclass(frozen=True)
class ServiceTime:
    """A measured service time (µs): its mean and a few percentiles ({50.0: p50, 99.0: p99, …}); ``cv2``
    overrides the squared coefficient of variation the percentiles give (1.0 for an assumed exponential)."""

    mean_us: float
    percentiles: Mapping[float, float]
    cv2: float | None = None
    assumed: str = ""  # how the distribution was made up when only the mean was known

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean_us) and self.mean_us > 0):
            raise ValueError(f"service mean must be > 0 µs, got {self.mean_us}")
        if not self.percentiles:
            raise ValueError("a service time needs at least one percentile")
        pairs = sorted(self.percentiles.items())
        if any(not 0 < p < 100 for p, _ in pairs):
            raise ValueError(f"percentiles are in (0, 100), got {[p for p, _ in pairs]}")
        values = [v for _, v in pairs]
        if any(not (math.isfinite(v) and v >= 0) for v in values) or values != sorted(values):
            raise ValueError(f"percentile values must be >= 0 and rise with the percentile, got {dict(pairs)}")

    @classmethod
    def exponential(cls, mean_us: float) -> ServiceTime:
        """Only the mean known: an exponential service time (M/M/c), percentiles -ln(1 - p) × mean."""
        pcts = {p: -math.log(1 - p / 100) * mean_us for p in SERVICE_KEYS}
        return cls(mean_us, pcts, cv2=1.0, assumed="exponential (only the mean was given)")

    @classmethod
    def from_ops(cls, stats: Mapping[str, object], minus_us: float = 0.0) -> ServiceTime:
        """From a cell's ``ops[operation]`` (``mean_us``, ``p50_us`` …), less a constant ``minus_us`` (the round
        trip a delayed cell's times hold), each value kept at 1 µs or more."""
        mean = stats.get("mean_us")
        if not isinstance(mean, int | float) or mean <= 0:
            raise ValueError("no mean_us in these operation stats")
        pcts = {p: float(v) for p, k in SERVICE_KEYS.items() if isinstance(v := stats.get(k), int | float)}
        return cls(max(1.0, mean - minus_us), {p: max(1.0, v - minus_us) for p, v in pcts.items()})

    def knots(self) -> list[tuple[float, float]]:
        """The quantile function's knots (u in [0, 1], µs): the percentiles, flat above the highest, and at
        u = 0 the value that makes its mean the measured one (kept within [0, p-lowest])."""
        pairs = sorted((p / 100, float(v)) for p, v in self.percentiles.items())
        top = [*pairs, (1.0, pairs[-1][1])]
        rest = sum((u1 - u0) * (v0 + v1) / 2 for (u0, v0), (u1, v1) in pairwise(top))
        u1, v1 = top[0]
        low = min(v1, max(0.0, 2 * (self.mean_us - rest) / u1 - v1))
        return [(0.0, low), *top]

    def squared_cv(self, rtt_us: float = 0.0) -> float:
        """Var(RTT + S) / E[RTT + S]²: the holding time's variability (a constant RTT adds none)."""
        mean = self.mean_us + rtt_us
        if self.cv2 is not None:
            return self.cv2 * self.mean_us**2 / mean**2
        knots = self.knots()
        second = 0.0  # E[S²] of the piecewise-linear quantile function, segment by segment
        for (u0, v0), (u1, v1) in pairwise(knots):
            second += (u1 - u0) * (v0 * v0 + v0 * v1 + v1 * v1) / 3
        first = sum((u1 - u0) * (v0 + v1) / 2 for (u0, v0), (u1, v1) in pairwise(knots))
        return max(0.0, second - first * first) / mean**2


@dataclass(frozen=True)
class PoolPoint:
    """The model at one pool size: ``utilisation`` a/c, ``wait_probability`` (Erlang C), the mean wait of a call
    that waits, and the predicted percentile of the response (µs; inf when the pool cannot keep up)."""

    pool: int
    utilisation: float
    wait_probability: float
    wait_if_waiting_us: float
    p_us: float


@dataclass(frozen=True)
class PoolPrediction:
    """:func:`predict_pool`'s answer: ``pool`` None when no size meets the SLO, ``reason`` says why."""

    rate_per_s: float
    rtt_us: float
    service: ServiceTime
    slo_p99_us: float
    busy: float  # Little's law: mean connections in use
    holding_cv2: float
    no_wait_p99_us: float  # the floor: RTT + S with no pool wait
    client_busy: float  # share of one core the client's own CPU needs (0 when unknown)
    pool: int | None
    at_pool: PoolPoint | None
    reason: str = ""
    points: list[PoolPoint] = field(default_factory=list)  # every size tried, smallest first


def erlang_b(servers: int, load: float) -> float:
    """Erlang B: the share of calls that find all ``servers`` busy when they are cleared (a non-blocking
    pool's PoolExhausted), for an offered ``load`` in Erlangs. The stable recursion B(k) = aB(k-1)/(k + aB(k-1))."""
    if servers < 0 or load < 0:
        raise ValueError(f"servers and load must be >= 0, got {servers}, {load}")
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(servers: int, load: float) -> float:
    """Erlang C: the probability that a call waits (all ``servers`` busy, calls queue), offered ``load`` a < c
    Erlangs; 1.0 when a >= c (the queue grows without bound)."""
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if load >= servers:
        return 1.0
    b = erlang_b(servers, load)
    return servers * b / (servers - load * (1 - b))


def busy_connections(rate_per_s: float, rtt_us: float, service_mean_us: float) -> float:
    """Little's law: L = λ × (RTT + S), the mean number of connections in use."""
    return rate_per_s * (rtt_us + service_mean_us) / 1e6


def _service_tail(knots: Sequence[tuple[float, float]], x: float) -> float:
    """P(S > x) for the piecewise-linear quantile function ``knots``."""
    if x < knots[0][1]:
        return 1.0
    for (u0, v0), (u1, v1) in pairwise(knots):
        if x < v1:
            return 1.0 - (u0 + (u1 - u0) * (x - v0) / (v1 - v0))
    return 0.0


def _response_tail(knots: Sequence[tuple[float, float]], x: float, wait_p: float, wait_mean: float) -> float:
    """P(W + S > x), W = 0 with probability 1 - wait_p, else exponential with mean wait_mean: P(S > x) plus, over
    the service values below x, wait_p × exp(-(x - S)/wait_mean), integrated in closed form per segment."""
    tail = _service_tail(knots, x)
    if wait_p <= 0 or wait_mean <= 0:
        return tail
    total = 0.0
    for (u0, v0), (u1, v1) in pairwise(knots):
        if v0 >= x or u1 <= u0:
            continue
        if v1 > x:  # only the part of the segment below x
            u1, v1 = u0 + (u1 - u0) * (x - v0) / (v1 - v0), x
        width, rise = u1 - u0, (v1 - v0) / wait_mean
        # ∫ exp(-(x - Q(u))/m) du over the segment, Q linear from v0 to v1 <= x: no exponent above 0
        if rise < 1e-9:
            total += width * math.exp(-(x - v0) / wait_mean)
        else:
            total += width * math.exp(-(x - v1) / wait_mean) * -math.expm1(-rise) / rise
    return tail + wait_p * total


def _percentile_of(knots: Sequence[tuple[float, float]], p: float, wait_p: float, wait_mean: float) -> float:
    """The smallest x with P(W + S > x) <= 1 - p/100, by bisection (the tail falls monotonically in x)."""
    target = 1 - p / 100
    lo, hi = 0.0, knots[-1][1]
    if wait_p > target and wait_mean > 0:
        hi += wait_mean * math.log(wait_p / target)
    hi = hi * (1 + 1e-9) + 1e-9
    for _ in range(200):
        mid = (lo + hi) / 2
        if _response_tail(knots, mid, wait_p, wait_mean) <= target:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-9 * max(1.0, hi):
            break
    return hi


def predict(
    pool: int,
    rate_per_s: float,
    rtt_us: float,
    service: ServiceTime,
    p: float = 99.0,
    arrival_cv2: float = 1.0,
    latency: ServiceTime | None = None,
) -> PoolPoint:
    """The model at one pool size (see the module's docstring): the ``p``-th percentile of wait + RTT + S, S from
    ``latency`` when given (what a call takes apart from the round trip and the pool wait, as measured), else from
    ``service`` (what holds the connection)."""
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    h = rtt_us + service.mean_us
    a = rate_per_s * h / 1e6
    if a >= pool:
        return PoolPoint(pool, a / pool, 1.0, math.inf, math.inf)
    wait_p = erlang_c(pool, a) if a > 0 else 0.0
    wait_mean = (arrival_cv2 + service.squared_cv(rtt_us)) / 2 * h / (pool - a)
    value = rtt_us + _percentile_of((latency or service).knots(), p, wait_p, wait_mean)
    return PoolPoint(pool, a / pool, wait_p, wait_mean, value)


def no_wait_percentile(rtt_us: float, service: ServiceTime, p: float = 99.0) -> float:
    """RTT + the service time's ``p``-th percentile: the floor no pool size goes below."""
    return rtt_us + _percentile_of(service.knots(), p, 0.0, 0.0)


def _check(rate_per_s: float, rtt_us: float, slo_us: float | None = None) -> None:
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate must be > 0 operations/s, got {rate_per_s}")
    if not (math.isfinite(rtt_us) and rtt_us >= 0):
        raise ValueError(f"round trip must be >= 0 µs, got {rtt_us}")
    if slo_us is not None and not (math.isfinite(slo_us) and slo_us > 0):
        raise ValueError(f"SLO must be > 0 µs, got {slo_us}")


def predict_pool(
    rate_per_s: float,
    rtt_us: float,
    service: ServiceTime,
    slo_p99_us: float,
    *,
    client_us: float = 0.0,
    arrival_cv2: float = 1.0,
    max_pool: int = MAX_POOL,
    latency: ServiceTime | None = None,
) -> PoolPrediction:
    """The smallest pool whose predicted p99 (wait + RTT + S) is at most ``slo_p99_us`` (``latency``: see
    :func:`predict`; ``client_us``: the client's own CPU per call, 0 when unknown)."""
    _check(rate_per_s, rtt_us, slo_p99_us)
    busy = busy_connections(rate_per_s, rtt_us, service.mean_us)
    floor = no_wait_percentile(rtt_us, latency or service)
    base = PoolPrediction(
        rate_per_s=rate_per_s,
        rtt_us=rtt_us,
        service=service,
        slo_p99_us=slo_p99_us,
        busy=busy,
        holding_cv2=service.squared_cv(rtt_us),
        no_wait_p99_us=floor,
        client_busy=rate_per_s * client_us / 1e6,
        pool=None,
        at_pool=None,
    )
    if base.client_busy >= 1:
        reason = f"client-bound: {client_us:g} µs of client CPU per call at {rate_per_s:g}/s is more than one core"
        return replace(base, reason=reason + "; no pool size helps")
    if floor > slo_p99_us:
        return replace(base, reason="the SLO is below the p99 with no pool wait at all (round trip + service)")
    points = []
    for c in range(max(1, math.floor(busy) + 1), max_pool + 1):
        point = predict(c, rate_per_s, rtt_us, service, arrival_cv2=arrival_cv2, latency=latency)
        points.append(point)
        if point.p_us <= slo_p99_us:
            return replace(base, pool=c, at_pool=point, points=points)
    return replace(base, reason=f"more than {max_pool} connections", points=points)


def predicted_knee(
    rate_per_s: float,
    rtt_us: float,
    service: ServiceTime,
    tolerance: float = KNEE_P99_TOLERANCE,
    arrival_cv2: float = 1.0,
    max_pool: int = MAX_POOL,
    latency: ServiceTime | None = None,
) -> int | None:
    """The smallest pool whose predicted p99 is within ``tolerance`` of the no-wait p99 (RTT + S alone)."""
    _check(rate_per_s, rtt_us)
    slo = no_wait_percentile(rtt_us, latency or service) * (1 + tolerance)
    found = predict_pool(rate_per_s, rtt_us, service, slo, arrival_cv2=arrival_cv2, max_pool=max_pool, latency=latency)
    return found.pool


@dataclass(frozen=True)
class SweepPoint:
    """One measured pool size: its p99 (µs) and throughput (operations/s)."""

    pool: int
    p99_us: float | None
    ops_per_s: float | None


@dataclass(frozen=True)
class Knee:
    """A measured knee: the pool, its point, the best p99 it was held to and the rate it had to reach."""

    pool: int
    point: SweepPoint
    best_p99_us: float
    needed_ops_per_s: float


def measured_knee(
    points: Sequence[SweepPoint],
    target_rate: float | None = None,
    p99_tolerance: float = KNEE_P99_TOLERANCE,
    rate_tolerance: float = KNEE_RATE_TOLERANCE,
) -> Knee | None:
    """The smallest pool whose throughput is at least (1 - ``rate_tolerance``) × ``target_rate`` (None or 0,
    closed loop: the sweep's best throughput) and whose p99 is at most (1 + ``p99_tolerance``) × the best p99 of
    the pools that reached that throughput. None when no pool did."""
    measured = [pt for pt in points if pt.p99_us is not None and pt.ops_per_s is not None]
    if not measured:
        return None
    target = target_rate or max(pt.ops_per_s or 0.0 for pt in measured)
    needed = (1 - rate_tolerance) * target
    reached = sorted((pt for pt in measured if (pt.ops_per_s or 0.0) >= needed), key=lambda pt: pt.pool)
    if not reached:
        return None
    best = min(pt.p99_us or 0.0 for pt in reached)
    knee = next(pt for pt in reached if (pt.p99_us or 0.0) <= (1 + p99_tolerance) * best)
    return Knee(knee.pool, knee, best, needed)


def sweep_step(sizes: Sequence[int], pool: int) -> int | None:
    """The index in the sorted sweep ``sizes`` of the pool one would pick for ``pool`` connections: the smallest
    swept size at or above it (None: above every size swept)."""
    ordered = sorted(set(sizes))
    return next((i for i, s in enumerate(ordered) if s >= pool), None)


def within_one_step(sizes: Sequence[int], predicted: int | None, measured: int | None) -> bool | None:
    """Whether the predicted knee (rounded up to a swept size) is at most one step of the sweep from the
    measured one; None when either is missing. A prediction above the largest size counts as one step above it."""
    if predicted is None or measured is None:
        return None
    ordered = sorted(set(sizes))
    at = sweep_step(ordered, predicted)
    at = len(ordered) if at is None else at
    return abs(at - ordered.index(measured)) <= 1 if measured in ordered else None

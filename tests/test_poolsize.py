"""bench.poolsize: Little's law, Erlang B/C, the M/G/c tail and the knees, with literal numbers. No Redis."""

from __future__ import annotations

import math

import pytest

from bench.poolsize import (
    ServiceTime,
    SweepPoint,
    busy_connections,
    erlang_b,
    erlang_c,
    measured_knee,
    no_wait_percentile,
    predict,
    predict_pool,
    predicted_knee,
    sweep_step,
    within_one_step,
)


def constant(us: float) -> ServiceTime:
    return ServiceTime(us, {50.0: us, 90.0: us, 99.0: us, 99.9: us})


def test_erlang_b_and_c_by_hand() -> None:
    # B(1, a) = a / (1 + a); B(2, 1) = (1/2) / (1 + 1 + 1/2) = 0.2
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(2, 1.0) == pytest.approx(0.2)
    # C(1, a) = a (M/M/1: the server is busy with probability rho)
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    # C(2, 1): (1^2/2! * 2/(2-1)) / (1 + 1 + 1) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # C(3, 2): (2^3/3! * 3/(3-2)) / (1 + 2 + 2 + 4) = 4 / 9
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    # C(6, 4.4) from the textbook sum: 4.4^6/6! * 6/1.6 / (sum_{k<6} 4.4^k/k! + that)
    assert erlang_c(6, 4.4) == pytest.approx(0.391922, abs=1e-6)
    assert erlang_c(4, 4.0) == 1.0 and erlang_c(4, 9.0) == 1.0  # at or past the pool: everyone waits
    with pytest.raises(ValueError):
        erlang_c(0, 0.5)


def test_littles_law() -> None:
    assert busy_connections(2000, 2000, 200) == pytest.approx(4.4)  # 2,000/s x 2.2 ms
    assert busy_connections(2000, 0, 200) == pytest.approx(0.4)
    assert busy_connections(1500, 500, 250) == pytest.approx(1.125)


def test_service_time_knots_keep_the_measured_mean() -> None:
    # above p50: 0.5 x 100 = 50 µs of the mean; the rest, 30 µs over [0, 0.5], puts the lowest value at 20
    s = ServiceTime(80, {50.0: 100, 90.0: 100, 99.0: 100, 99.9: 100})
    assert s.knots()[0] == (0.0, pytest.approx(20.0))
    # E[S²] = 0.5 (20² + 20·100 + 100²)/3 + 0.5 · 100² = 7,066.7; Var = 7,066.7 - 80² = 666.7; cv² = 666.7 / 80²
    assert s.squared_cv() == pytest.approx(0.104167, abs=1e-6)
    assert constant(1000).squared_cv() == 0.0
    assert ServiceTime.exponential(200).squared_cv() == 1.0
    assert ServiceTime.exponential(200).squared_cv(rtt_us=2000) == pytest.approx(200**2 / 2200**2)  # RTT adds none
    assert ServiceTime.exponential(100).percentiles[99.0] == pytest.approx(100 * math.log(100))
    with pytest.raises(ValueError, match="> 0"):
        ServiceTime(0, {50.0: 1})
    with pytest.raises(ValueError, match="rise"):
        ServiceTime(10, {50.0: 20, 99.0: 10})


def test_predict_two_connections_by_hand() -> None:
    """c = 2, a = 1000/s x 1 ms = 1 Erlang, constant 1 ms: P(wait) = 1/3, a waiting call waits
    (1 + 0)/2 x 1000 / (2 - 1) = 500 µs on average, so P(T > t) = 1/3 exp(-(t - 1000)/500) = 1 %."""
    pt = predict(2, 1000, 0, constant(1000))
    assert pt.utilisation == pytest.approx(0.5)
    assert pt.wait_probability == pytest.approx(1 / 3)
    assert pt.wait_if_waiting_us == pytest.approx(500)
    assert pt.p_us == pytest.approx(1000 + 500 * math.log(100 / 3), rel=1e-6)  # 2,753.3 µs
    paced = predict(2, 1000, 0, constant(1000), arrival_cv2=0.0)  # D/D/2: nobody waits
    assert paced.wait_if_waiting_us == 0.0 and paced.p_us == pytest.approx(1000)
    assert math.isinf(predict(1, 1000, 0, constant(1000)).p_us)  # a = c: cannot keep up


def test_predict_mm1_is_close_to_the_exact_answer() -> None:
    """M/M/1 at rho 0.5, mean 100 µs: the response is exponential with mean 200 µs, p99 = 200 ln 100 = 921 µs;
    the piecewise-linear quantile function through p50..p99.9 gets within 3 %."""
    pt = predict(1, 5000, 0, ServiceTime.exponential(100))
    assert pt.wait_probability == pytest.approx(0.5)
    assert pt.p_us == pytest.approx(200 * math.log(100), rel=0.03)


def test_rtt_2ms_needs_more_connections_than_rtt_0() -> None:
    """2,000/s, 200 µs constant service, SLO p99 5 ms. RTT 0: a = 0.4, one connection (p99 = 200 + 166.7 ln 40
    = 815 µs). RTT 2 ms: a = 4.4; c = 5 gives 2200 + 1833 ln(71.8) = 10.0 ms, c = 6 2200 + 687.5 ln(39.2)
    = 4.72 ms: six."""
    near = predict_pool(2000, 0, constant(200), 5000)
    far = predict_pool(2000, 2000, constant(200), 5000)
    assert (near.pool, far.pool) == (1, 6)
    assert near.at_pool is not None and near.at_pool.p_us == pytest.approx(200 + 200 / 1.2 * math.log(40), rel=1e-6)
    assert far.busy == pytest.approx(4.4)
    assert [p.pool for p in far.points] == [5, 6]  # from the first pool above Little's mean
    assert far.points[0].p_us == pytest.approx(2200 + 2200 / 1.2 * math.log(100 * 0.718388), rel=1e-5)
    assert far.at_pool is not None and far.at_pool.p_us == pytest.approx(2200 + 687.5 * math.log(39.1922), rel=1e-5)


def test_no_pool_meets_an_slo_below_the_floor_or_a_client_bound_rate() -> None:
    below = predict_pool(2000, 2000, constant(200), 2100)
    assert below.pool is None and "no pool wait" in below.reason and below.no_wait_p99_us == pytest.approx(2200)
    bound = predict_pool(5000, 0, constant(100), 5000, client_us=250)  # 5,000/s x 250 µs = 1.25 cores
    assert bound.pool is None and bound.reason.startswith("client-bound") and bound.client_busy == pytest.approx(1.25)
    assert predict_pool(5000, 0, constant(100), 5000, client_us=100).pool is not None  # half a core


def test_predicted_knee_moves_with_the_round_trip() -> None:
    """The sweep of the chart tests: 2,000/s, held 200 µs, seen p99 1.6 ms; the knee is the smallest pool within
    25 % of the no-wait p99 (1.6, 2.1, 3.6 ms)."""
    held = ServiceTime(200, {50.0: 180, 90.0: 260, 99.0: 500, 99.9: 900})
    seen = ServiceTime(700, {50.0: 650, 90.0: 1000, 99.0: 1600, 99.9: 2500})
    assert no_wait_percentile(2000, seen) == pytest.approx(3600)
    knees = [predicted_knee(2000, rtt, held, latency=seen) for rtt in (0, 500, 2000)]
    assert knees == [1, 3, 7]
    assert (
        predict(7, 2000, 2000, held, latency=seen).p_us <= 1.25 * 3600 < predict(6, 2000, 2000, held, latency=seen).p_us
    )
    # the holding time alone as what a caller sees: a floor of 2.5 ms, and 25 % of it a tighter bound
    assert predicted_knee(2000, 2000, held) == 8


SWEEP = [1, 2, 4, 8, 16]


def points(p99: list[float], ops: list[float]) -> list[SweepPoint]:
    return [SweepPoint(s, p, o) for s, p, o in zip(SWEEP, p99, ops, strict=True)]


def test_measured_knee_needs_the_rate_and_a_p99_near_the_best() -> None:
    # pools 1, 2, 4 short of 95 % of 2,000/s; best p99 4,700 at 16; 8 is within 25 % of it
    far = points([6e6, 4.4e6, 1e6, 4800, 4700], [445, 860, 1727, 1991, 1992])
    knee = measured_knee(far, target_rate=2000)
    assert knee is not None and (knee.pool, knee.best_p99_us, knee.needed_ops_per_s) == (8, 4700, 1900)
    # every pool reaches the rate; 1 is 1.19x the best p99: within 25 %
    near = points([1900, 1700, 1650, 1600, 1600], [1995] * 5)
    assert measured_knee(near, target_rate=2000).pool == 1  # type: ignore[union-attr]
    assert measured_knee(near, target_rate=2000, p99_tolerance=0.1).pool == 2  # type: ignore[union-attr]
    assert measured_knee(near, target_rate=2000, p99_tolerance=0.05).pool == 4  # type: ignore[union-attr]
    # closed loop (no target): the best throughput is the target
    closed = points([900, 800, 700, 700, 700], [3000, 3900, 4000, 4010, 3990])
    assert measured_knee(closed).pool == 2  # type: ignore[union-attr]
    assert measured_knee(points([9e6] * 5, [500] * 5), target_rate=2000) is None
    assert measured_knee([SweepPoint(1, None, None)]) is None


def test_within_one_step_of_the_sweep() -> None:
    assert sweep_step(SWEEP, 7) == 3 and sweep_step(SWEEP, 8) == 3 and sweep_step(SWEEP, 17) is None
    assert within_one_step(SWEEP, 7, 8) is True  # 7 rounds up to 8: the same swept pool
    assert within_one_step(SWEEP, 3, 2) is True  # 3 -> 4, one step from 2
    assert within_one_step(SWEEP, 3, 8) is True
    assert within_one_step(SWEEP, 2, 8) is False  # 2 is two steps below 8
    assert within_one_step(SWEEP, 40, 16) is True  # above the sweep: one step past its end
    assert within_one_step(SWEEP, 40, 8) is False
    assert within_one_step(SWEEP, None, 8) is None and within_one_step(SWEEP, 4, None) is None

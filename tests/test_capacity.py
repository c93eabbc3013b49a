"""``bench capacity`` (#16): the rate search with fake step functions (pure, literal expectations), the step
criteria, SLO parsing, the sampler window math, and one real search on the embedded standalone."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.capacity import Criteria, Slo, Step, judge, parse_slo, round_rate, search
from bench.errors import UsageError

P99_5MS = Criteria(slos=(Slo("p99", 5000.0),))


def fake(
    knee: float = 3000.0,
    *,
    achievable: float = float("inf"),
    server_cpu: float = 0.3,
    generator_cpu: float = 0.5,
    errors_above: float = float("inf"),
    consumers: float = float("inf"),
    hiccups: dict[float, set[int]] | None = None,
) -> Callable[[float], Step]:
    """A configuration whose p99 is 1 ms below ``knee`` and 20 ms from it on, whose load generator makes at
    most ``achievable`` sends/s, which fails operations from ``errors_above`` on, whose consumers take at most
    ``consumers`` tasks/s, and which fails the n-th call (1-based) at a rate listed in ``hiccups``."""
    calls: Counter[float] = Counter()

    def measure(rate: float) -> Step:
        calls[rate] += 1
        achieved = min(rate, achievable)
        slow = rate >= knee or calls[rate] in (hiccups or {}).get(rate, set())
        return Step(
            rate=rate,
            planned=int(rate * 10),
            issued=int(achieved * 10),
            achieved_rate=achieved,
            coverage=achieved / rate,
            corrected={"p50_us": 400.0, "p99_us": 20_000.0 if slow else 1_000.0},
            service={"p50_us": 300.0, "p99_us": 900.0},
            operations=int(achieved * 30),
            errors=5 if rate >= errors_above else 0,
            depth_slope=max(0.0, achieved - consumers),
            server_cpu=server_cpu,
            generator_cpu=generator_cpu,
        )

    return measure


def rates(result) -> list[float]:
    return [s.rate for s in result.steps]


# -- the search, with fake step functions ----------------------------------------------------------------


def test_monotone_knee_found_by_doubling_then_bisection_and_both_ends_rerun() -> None:
    result = search(fake(3000), P99_5MS, start=500, factor=2, resolution=0.05)
    assert rates(result) == [500, 1000, 2000, 4000, 2830, 3360, 3080, 2950, 3080, 2950]
    assert [s.phase for s in result.steps][-2:] == ["confirm", "confirm"]
    assert result.capacity_rate == 2950 and result.capacity is result.steps[-1]
    assert result.next_fail is not None and result.next_fail.rate == 3080 and result.next_fail.index == 9
    assert result.limit == "latency" and not result.lower_bound
    assert result.confirmed and result.converged
    assert result.next_fail.verdict.failed == ["latency"]
    assert result.next_fail.verdict.reasons == ["corrected p99 20 ms > 5 ms"]


def test_noisy_capacity_that_fails_its_rerun_is_not_reported() -> None:
    """2950 passes, then fails when run again: the capacity drops to the next passing rate below."""
    result = search(fake(3000, hiccups={2950: {2}}), P99_5MS, start=500, resolution=0.05)
    assert rates(result) == [500, 1000, 2000, 4000, 2830, 3360, 3080, 2950, 3080, 2950, 2830]
    assert result.capacity_rate == 2830 and result.capacity.phase == "confirm" and result.capacity.passed
    assert result.next_fail.rate == 2950 and result.next_fail.index == 10
    assert result.confirmed and result.converged and result.limit == "latency"


def test_noisy_early_failure_is_rerun_and_the_climb_goes_on() -> None:
    """A hiccup at 1000/s on the way up: bisection below it, then its re-run passes and the search climbs on."""
    result = search(fake(3000, hiccups={1000: {1}}), P99_5MS, start=500, resolution=0.05)
    assert rates(result) == [500, 1000, 707, 841, 917, 958, 1000, 2000, 4000, 2830, 3360, 3080, 2950, 3080, 2950]
    assert result.capacity_rate == 2950 and result.next_fail.rate == 3080 and result.limit == "latency"


def test_noisy_random_steps_always_report_a_capacity_that_passed_twice_below_a_rate_that_failed_twice() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        base = fake(3000)

        def measure(rate: float, rng: random.Random = rng, base: Callable[[float], Step] = base) -> Step:
            step = base(rate)
            if rng.random() < 0.15:  # one step in seven fails for no reason
                step.corrected = {**step.corrected, "p99_us": 9_000.0}
            return step

        result = search(measure, P99_5MS, start=500, resolution=0.05, max_steps=60)
        cap, nxt = result.capacity, result.next_fail
        assert cap is not None and nxt is not None, seed
        assert cap.passed and not nxt.passed and nxt.rate > cap.rate, seed
        assert sum(s.passed for s in result.steps if s.rate == cap.rate) >= 2, seed
        assert nxt.rate / cap.rate - 1 <= 0.05 + 1e-9, seed
        assert cap.rate < 3000, seed  # never above the true knee: a pass there is impossible


def test_harness_bound_when_the_rate_is_not_reached_and_the_server_is_idle() -> None:
    result = search(fake(10_000, achievable=2500, server_cpu=0.3, generator_cpu=0.5), P99_5MS, start=500)
    assert rates(result) == [500, 1000, 2000, 4000, 2830, 2380, 2600, 2710, 2600]  # 2710 not re-run
    assert result.capacity_rate == 2600 and result.next_fail.rate == 2710 and result.confirmed
    assert result.limit == "harness-bound" and result.lower_bound
    assert result.next_fail.verdict.failed == ["rate"] and result.next_fail.verdict.harness_bound
    assert result.next_fail.verdict.reasons[-1] == (
        "harness-bound: rate not reached while the busiest server node used only 0.30 cores"
    )


def test_same_shortfall_with_a_saturated_server_is_the_queues_throughput() -> None:
    result = search(fake(10_000, achievable=2500, server_cpu=0.97, generator_cpu=0.4), P99_5MS, start=500)
    assert result.capacity_rate == 2600 and result.limit == "throughput" and not result.lower_bound
    assert not result.next_fail.verdict.harness_bound


def test_latency_failure_of_a_saturated_load_generator_is_harness_bound() -> None:
    result = search(fake(3000, server_cpu=0.2, generator_cpu=0.98), P99_5MS, start=500)
    assert rates(result) == [500, 1000, 2000, 4000, 2830, 3360, 3080, 2950, 2950]
    assert result.capacity_rate == 2950 and result.limit == "harness-bound" and result.lower_bound
    assert result.next_fail.verdict.failed == ["latency"]


def test_errors_limit() -> None:
    result = search(fake(10_000, errors_above=1500), P99_5MS, start=500, resolution=0.05)
    assert result.limit == "errors" and result.next_fail.verdict.failed == ["errors"]
    assert 1400 <= result.capacity_rate < 1500 <= result.next_fail.rate
    allowed = dataclasses.replace(P99_5MS, max_error_rate=0.001)
    assert search(fake(10_000, errors_above=1500), allowed, start=500, max_rate=8000).limit == "max-rate"


def test_backlog_limit_when_consumers_fall_behind() -> None:
    result = search(fake(10_000, consumers=2000), P99_5MS, start=500, resolution=0.05)
    assert rates(result) == [500, 1000, 2000, 4000, 2830, 2380, 2180, 2090, 2090, 2000]
    assert result.capacity_rate == 2000 and result.limit == "backlog"
    assert result.next_fail.verdict.reasons == ["queue depth grew 90 tasks/s (limit 42/s): consumers fell behind"]


def test_first_step_fails_so_the_search_goes_down() -> None:
    result = search(fake(300), P99_5MS, start=500, resolution=0.05)
    assert rates(result) == [500, 250, 354, 297, 324, 310, 310, 297]
    assert [s.phase for s in result.steps[:2]] == ["up", "down"]
    assert result.capacity_rate == 297 and result.next_fail.rate == 310


def test_nothing_passes_and_everything_passes() -> None:
    none = search(fake(1), P99_5MS, start=500, min_rate=100)
    assert rates(none) == [500, 250, 125] and none.capacity is None and none.limit == "latency"
    assert none.next_fail is none.steps[-1]  # the lowest rate tried, and why it failed
    everything = search(fake(float("inf")), P99_5MS, start=500, max_rate=5000)
    assert rates(everything) == [500, 1000, 2000, 4000, 5000, 5000]
    assert everything.capacity_rate == 5000 and everything.limit == "max-rate" and everything.lower_bound


def test_step_budget_stops_the_search_and_says_so() -> None:
    result = search(fake(3000), P99_5MS, start=500, max_steps=6)
    assert len(result.steps) == 6 and result.limit == "max-steps" and result.lower_bound
    assert result.capacity_rate == 2830 and not result.confirmed


def test_without_confirmation() -> None:
    result = search(fake(3000), P99_5MS, start=500, confirm=False)
    assert rates(result) == [500, 1000, 2000, 4000, 2830, 3360, 3080, 2950]
    assert result.capacity_rate == 2950 and not result.confirmed and result.converged


# -- the criteria of one step, and the SLO ---------------------------------------------------------------


def test_judge_each_criterion() -> None:
    ok = Step(rate=1000, achieved_rate=1000, coverage=1.0, corrected={"p99_us": 4000.0}, depth_slope=5.0)
    assert judge(ok, P99_5MS).passed
    assert judge(dataclasses.replace(ok, coverage=0.94), P99_5MS).failed == ["rate"]
    assert judge(dataclasses.replace(ok, corrected={"p99_us": 5001.0}), P99_5MS).failed == ["latency"]
    assert judge(dataclasses.replace(ok, corrected={}), P99_5MS).failed == ["latency"]  # no data is no pass
    assert judge(dataclasses.replace(ok, errors=1, operations=10_000), P99_5MS).failed == ["errors"]
    assert judge(dataclasses.replace(ok, depth_slope=21.0), P99_5MS).failed == ["backlog"]  # 2 % of 1000/s
    assert judge(dataclasses.replace(ok, depth_slope=20.0), P99_5MS).passed
    assert judge(dataclasses.replace(ok, rate=10, depth_slope=1.0), P99_5MS).passed  # 1 task/s of slack
    # unknown server load: a shortfall is the queue's (throughput), never assumed harness-bound
    short = judge(dataclasses.replace(ok, coverage=0.5), P99_5MS)
    assert short.limit == "throughput" and not short.harness_bound
    both = Criteria(slos=(Slo("p50", 500.0), Slo("p99", 5000.0)))
    assert judge(dataclasses.replace(ok, corrected={"p50_us": 600.0, "p99_us": 4000.0}), both).failed == ["latency"]
    slow = dataclasses.replace(ok, corrected={"p99_us": 6000.0}, server_cpu=0.2, generator_cpu=0.6)
    assert not judge(slow, P99_5MS).harness_bound  # neither the load process nor the host was out of CPU
    host_full = judge(dataclasses.replace(slow, host_cpu=0.97, other_cpu=0.1), P99_5MS)
    assert host_full.harness_bound and host_full.limit == "harness-bound"
    assert host_full.reasons[-1] == (
        "harness-bound: the host's CPU was 97% busy, the load using 0.60 cores while the busiest server node used "
        "only 0.20 cores"
    )
    assert not judge(dataclasses.replace(slow, host_cpu=0.97, server_cpu=0.85), P99_5MS).harness_bound
    starved = judge(dataclasses.replace(slow, host_cpu=0.97, other_cpu=1.2), P99_5MS)  # others took the CPU
    assert starved.harness_bound and starved.reasons[-1] == (
        "host contended: other processes used 1.20 cores during the step"
    )
    # a pool wait on a busy shared host: the load hardly used CPU, so the latency is the queue's
    waiting = judge(dataclasses.replace(slow, generator_cpu=0.05, host_cpu=0.97, other_cpu=1.8), P99_5MS)
    assert not waiting.harness_bound and waiting.limit == "latency"
    contended = judge(dataclasses.replace(ok, coverage=0.5, other_cpu=0.8), P99_5MS)
    assert contended.reasons[-1] == "host contended: other processes used 0.80 cores during the step"


def test_parse_slo() -> None:
    assert parse_slo("p99=5ms") == [Slo("p99", 5000.0)]
    assert parse_slo("p99.9=1.5s, p50=200us") == [Slo("p50", 200.0), Slo("p99.9", 1_500_000.0)]
    assert parse_slo("p99=750µs") == [Slo("p99", 750.0)]
    assert str(Slo("p99", 5000.0)) == "p99 ≤ 5 ms"
    for bad, says in (
        ("p99=5", "give a unit"),
        ("p42=1ms", "not one of"),
        ("p99=0ms", "must be > 0"),
        ("99=5ms", "expected PERCENTILE=LIMIT"),
        ("", "at least one"),
    ):
        with pytest.raises(UsageError, match=says):
            parse_slo(bad)


def test_round_rate() -> None:
    assert [round_rate(x) for x in (2828.43, 3364.5, 707.1, 0.5)] == [2830, 3360, 707, 0.5]


def test_window_metrics_slope_and_cpu() -> None:
    from bench.step_sampler import slope, window_metrics

    assert slope([(0, 0), (1, 10), (2, 20)]) == pytest.approx(10.0)
    assert slope([(0, 5)]) is None
    samples = [
        {"t": t, "depth": 100 * t, "cpu": {"a": 0.5 * t, "b": 0.1 * t}, "cmds": {"a": 1000 * t}, "gen": {7: 0.9 * t}}
        | {"host": (1.5 * t, 2.0 * t)}
        for t in range(0, 11)
    ]
    w = window_metrics(samples, 2, 8)
    assert w["samples"] == 7 and w["depth_start"] == 200 and w["depth_end"] == 800
    assert w["depth_slope"] == pytest.approx(100.0)
    assert w["server_cpu"] == pytest.approx(0.5) and w["server_ops"] == pytest.approx(1000.0)
    assert w["generator_cpu"] == pytest.approx(0.9) and w["host_cpu"] == pytest.approx(0.75)


# -- the capacity chart: the steps of summary.json, plotted -------------------------------------------------------


def capacity_summary() -> dict:
    def step(index: int, rate: float, achieved: float, p99: float, p50: float, passed: bool, harness: bool = False):
        measured = {"achieved_rate": achieved, "corrected": {"p99_us": p99, "p50_us": p50}}
        verdict = {"passed": passed, "harness_bound": harness}
        return {"step": {"index": index, "rate": rate, "measured": measured, "verdict": verdict}}

    steps = [
        step(0, 1000, 1000.0, 2000, 500, True),
        step(1, 2000, 1990.0, 4000, 800, True),
        step(2, 4000, 3000.0, 90_000, 5000, False),
        step(3, 2000, 2005.0, 4200, 820, True),  # the re-run of rate 2000: the line goes through it, not step 1
        step(4, 3000, 2900.0, 30_000, 1500, False, harness=True),
        {"step": None},  # a step cut short: no point
    ]
    capacity = {"rate": 2000, "limit": "latency", "at_capacity": {"step": 3}}
    config = {"id": "standalone", "steps": steps, "capacity": capacity}
    return {"kind": "capacity-run", "scenario": "cap", "criteria": {"slo": {"p99": 10_000}}, "configurations": [config]}


def test_capacity_chart_plots_every_step_the_line_the_capacity_and_the_slo(tmp_path: Path) -> None:
    from bench.plots_capacity import capacity_curves
    from bench.runs import Run

    fig = capacity_curves([Run(tmp_path, capacity_summary())])
    assert fig is not None
    ax = fig.axes[0]
    lines = ax.get_lines()
    solid, dashed = (next(li for li in lines if li.get_linestyle() == style) for style in ("-", "--"))
    # one point per rate, the latest step at that rate, in rate order: p99 solid, p50 dashed
    assert solid.get_xydata().tolist() == [[1000, 2000], [2005, 4200], [2900, 30_000], [3000, 90_000]]
    assert dashed.get_xydata().tolist() == [[1000, 500], [2005, 820], [2900, 1500], [3000, 5000]]

    def marked(marker: str, hollow: bool = False) -> list[list[float]]:
        return sorted(
            li.get_xydata().tolist()[0]
            for li in lines
            if li.get_marker() == marker
            and li.get_linestyle() == "None"
            and (li.get_markerfacecolor() == "white") == hollow
        )

    assert marked("o") == [[1000, 500], [1000, 2000], [1990, 800], [1990, 4000], [2005, 820], [2005, 4200]]
    assert marked("o", hollow=True) == [[3000, 5000], [3000, 90_000]]  # failed
    assert marked("x") == [[2900, 1500], [2900, 30_000]]  # failed, harness-bound
    assert marked("*") == [[2005, 4200]]  # the capacity: step 3 at its p99
    vertical = [li.get_xdata()[0] for li in lines if li.get_linestyle() == ":"]
    horizontal = [li.get_ydata()[0] for li in lines if li.get_linestyle() == "--" and li.get_color() == "tab:red"]
    assert vertical == [2005] and horizontal == [10_000]  # the capacity's rate; the SLO
    assert ax.get_title() == "standalone\ncapacity 2,000/s, limit: latency"


# -- one real search on the embedded standalone ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_end_to_end_search_on_embedded_standalone(tmp_path: Path) -> None:
    """Coarse and short (30 %, 3 s steps: 1 s warm-up + 2 s measured): the reported capacity passes its own
    criteria, re-judged from the numbers written to summary.json, and the next step up fails them."""
    from bench import scenario
    from bench.capacity_options import SearchOptions
    from bench.capacity_run import CapacityRun
    from bench.plots_capacity import capacity_curves
    from bench.runs import load_run

    loaded = scenario.parse({"name": "cap-test", "cells": [{"label": "standalone", "users": 10}]})
    criteria = Criteria(slos=(Slo("p99", 500_000.0),))  # generous: the machine may be shared and busy
    options = SearchOptions(start_rate=200, factor=4, resolution=0.3, step_s=2, warmup_s=1, max_steps=9)
    summary = CapacityRun(loaded, tmp_path / "run", criteria, options).run()

    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["kind"] == "capacity-run" and on_disk["complete"]
    config = on_disk["configurations"][0]
    cap = config["capacity"]
    assert cap["rate"] is not None, cap
    steps = {s["step"]["index"]: s for s in config["steps"]}
    at, nxt = steps[cap["at_capacity"]["step"]], steps[cap["next_fail"]["step"]]

    def rejudged(record: dict) -> object:
        return judge(Step(**record["step"]["measured"]), criteria)

    assert rejudged(at).passed and at["step"]["verdict"]["passed"]
    measured = at["step"]["measured"]
    assert measured["coverage"] >= 0.95 and measured["errors"] == 0
    assert measured["corrected"]["p99_us"] <= 500_000
    assert measured["depth_slope"] is not None and measured["depth_slope"] <= max(0.02 * measured["rate"], 1.0)
    if cap["confirmed"]:  # else the step budget ran out first (a noisy, shared machine): limit max-steps
        assert sum(s["step"]["verdict"]["passed"] for s in config["steps"] if s["step"]["rate"] == cap["rate"]) >= 2
    assert not rejudged(nxt).passed and nxt["step"]["rate"] > cap["rate"]
    assert cap["limit"] in ("latency", "errors", "backlog", "throughput", "harness-bound", "max-steps")
    if cap["limit"] != "max-steps":
        assert nxt["step"]["rate"] / cap["rate"] - 1 <= 0.3 + 1e-9
    # the depth sampled is the queue's: where Locust enqueued far more than it dequeued, the depth shows it
    for record in config["steps"]:
        ops, m = record["ops"], record["step"]["measured"]
        gap = ops["enqueue"]["count"] - ops["dequeue"]["count"]
        if gap > max(500, 0.1 * ops["enqueue"]["count"]):
            assert m["depth_end"] >= 0.5 * gap, (m["rate"], gap, m["depth_end"])
    # every step is a cell-like record with its Locust results, and the run reads as a run
    assert all((tmp_path / "run" / s["dir"] / "repeat-1" / "summary.json").exists() for s in config["steps"])
    assert at["open_loop"]["rate_reached"] and "enqueue" in at["ops"] and "enqueue_service" in at["ops"]
    run = load_run(tmp_path / "run")
    assert [c["id"] for c in run.cells] == ["standalone"] and run.cells[0]["capacity"]["rate"] == cap["rate"]
    assert capacity_curves([run]) is not None
    assert summary["configurations"][0]["capacity"] == cap

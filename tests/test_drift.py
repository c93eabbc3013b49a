"""Drift between the first and last tenth of a run, with literal numbers."""

from __future__ import annotations

from bench.drift import Series, compare, drift_cells, finding, of_cell, used_memory_rounds


def test_steady_series_with_one_spike_does_not_grow() -> None:
    points = [(float(t), 500.0) for t in range(100)]
    points[95] = (95.0, 50_000.0)  # one failover spike near the end
    row = compare(Series("enqueue p99", "µs", points, min_growth=200))
    assert row is not None and row["grows"] is False and row["first"] == row["last"] == 500.0


def test_a_leak_grows_and_is_worded_as_such() -> None:
    points = [(float(t), 100.0 + 10.0 * t) for t in range(101)]  # 100 .. 1100
    row = compare(Series("inflight leases", "tasks", points, min_growth=50))
    assert row is not None and row["grows"] is True
    assert (row["first"], row["last"]) == (150.0, 1050.0)  # medians of t 0..10 and 90..100
    assert finding(row) == (
        "inflight leases grew from 150 to 1,050 tasks (7.0×) between the first and the last tenth of the run"
    )


def test_small_absolute_changes_are_noise_and_short_series_say_nothing() -> None:
    points = [(float(t), 1.0 + (t >= 50)) for t in range(100)]  # 1 -> 2: doubled, but by 1
    assert compare(Series("depth", "tasks", points, min_growth=100))["grows"] is False  # type: ignore[index]
    assert compare(Series("depth", "tasks", points[:9], min_growth=0)) is None


def test_of_cell_builds_every_series_and_flags_a_leaking_load_process() -> None:
    intervals = {"e2e": [{"t_s": t + 0.5, "count": 10, "p99_us": 2000.0} for t in range(100)]}
    intervals["e2e"][3]["count"] = 0  # an empty second carries no p99: left out
    probes = [
        {"t_s": float(t), "depth": 5, "inflight": "", "load_rss_bytes": 70e6 + t * 0.5e6, "load_processes": 1}
        for t in range(100)
    ]
    info = [
        {"t_s": float(t), "node": node, "used_memory": 10_000_000 if node == "a" else 5_000_000}
        for t in range(100)
        for node in ("a", "b")
    ]
    info[101]["used_memory"] = ""  # node b unreachable in round t=50: that round is left out, not summed short
    rows = {r["name"]: r for r in of_cell(intervals, probes, info)}
    assert set(rows) == {"e2e p99", "queue depth", "load processes RSS", "Redis used_memory"}  # inflight: no data
    assert rows["Redis used_memory"]["points"] == 99 and rows["Redis used_memory"]["last"] == 15e6
    assert rows["e2e p99"]["points"] == 99 and rows["e2e p99"]["grows"] is False
    assert rows["queue depth"]["first"] == rows["queue depth"]["last"] == 5.0
    rss = rows["load processes RSS"]
    assert (rss["first"], rss["last"], rss["grows"]) == (72.25e6, 117.25e6, True)  # medians of t 0..9, 90..99


def test_used_memory_rounds_sum_complete_rounds_only() -> None:
    info = [
        {"t_s": 0.0, "node": "a", "used_memory": 100},
        {"t_s": 0.0, "node": "b", "used_memory": 50},
        {"t_s": 1.0, "node": "a", "used_memory": 110},
        {"t_s": 1.0, "node": "b", "used_memory": None},  # unreachable that round
        {"t_s": 2.0, "node": "a", "used_memory": 120},
        {"t_s": 2.0, "node": "b", "used_memory": 60},
    ]
    assert used_memory_rounds(info) == [(0.0, 150.0), (2.0, 180.0)]


def test_drift_cells_are_the_long_ones_and_the_repeated_faults() -> None:
    rows = [{"name": "x", "grows": False}]
    cells = [
        {"id": "short", "params": {"duration": 60}, "drift": rows},
        {"id": "long", "params": {"duration": 600}, "drift": rows},
        {"id": "soak-short", "params": {"duration": 60, "fault_every": 20}, "drift": rows},
        {"id": "long-no-data", "params": {"duration": 600}, "drift": []},
    ]
    assert [c["id"] for c in drift_cells(cells)] == ["long", "soak-short"]

"""Drift between the first and last tenth of a run, with literal numbers."""

from __future__ import annotations

from bench.drift import Series, compare, finding


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

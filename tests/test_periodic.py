"""A repeated fault's per-repeat figures, with literal numbers (no Redis)."""

from __future__ import annotations

import pytest

from bench import faults, periodic


def _gaps(*gaps: tuple[float, float]) -> dict[str, dict[str, object]]:
    return {"0": {"first_ok": 1000.0, "last_ok": 1060.0, "gaps": [list(g) for g in gaps]}}


def test_each_repeat_owns_only_the_outage_that_began_before_its_restore() -> None:
    start = 1000.0
    first = faults.FaultEvents("failover", target="a", injected_at=1010.0, promoted_at=1010.02, restored_at=1010.5)
    second = faults.FaultEvents("failover", target="b", injected_at=1030.0, promoted_at=1030.02, restored_at=1030.4)
    load = {
        "elapsed_s": 60.0,
        "partition_timeline": {"0": {"first_error_at": 1010.01, "last_error_at": 1030.05, "errors": 9}},
        # the failovers' own gaps (0.08 s, 0.12 s) and a 0.9 s host stall at 1020 between them
        "success_gaps": [_gaps((1010.0, 1010.08), (1020.0, 1020.9), (1030.0, 1030.12))],
    }
    got = periodic.timelines([first, second], start, load, 0, {"0": "a"})
    assert [t["unavailable_s"] for t in got] == pytest.approx([0.08, 0.12])  # not the stall at 1020
    assert [t["injected_at_s"] for t in got] == [10.0, 30.0]
    assert all("error_window_note" in t for t in got)  # the error span covers both: said, not split
    series = periodic.summarize(got)
    assert series["count"] == 2 and series["unavailable_s"] == {"median": 0.1, "max": 0.12}
    assert series["restore_ok"] is True


def test_without_a_restore_time_the_window_ends_at_the_next_injection() -> None:
    a = faults.FaultEvents("failover", target="a", injected_at=1010.0)  # restore never succeeded
    b = faults.FaultEvents("failover", target="b", injected_at=1030.0, restored_at=1030.3)
    load = {"elapsed_s": 60.0, "success_gaps": [_gaps((1020.0, 1020.9), (1035.0, 1036.0))]}
    got = periodic.timelines([a, b], 1000.0, load, 0, {"0": "a"})
    assert [t["unavailable_s"] for t in got] == pytest.approx([0.9, 0.0])


def test_one_fault_keeps_the_whole_run_window_and_no_note() -> None:
    only = faults.FaultEvents("kill", target="a", injected_at=1010.0, restored_at=1012.0)
    load = {"elapsed_s": 60.0, "success_gaps": [_gaps((1010.0, 1011.0), (1040.0, 1042.5))]}
    (got,) = periodic.timelines([only], 1000.0, load, 0, {"0": "a"})
    assert got["unavailable_s"] == pytest.approx(2.5) and "error_window_note" not in got


def test_summary_of_no_repeats_says_none_happened() -> None:
    assert periodic.summarize([]) == {
        "count": 0,
        "injected_at_s": [],
        "unavailable_s": {"median": None, "max": None},
        "restore_ok": True,
        "stopped": None,
    }


def test_a_repeat_that_could_not_go_in_is_named_and_has_no_timeline() -> None:
    done = faults.FaultEvents("failover", target="a", injected_at=1010.0, restored_at=1010.5)
    refused = faults.FaultEvents("failover", error="RuntimeError: master b has no healthy replica to fail over to")
    load = {"elapsed_s": 60.0, "success_gaps": [_gaps((1010.0, 1010.08))]}
    got = periodic.timelines([done, refused], 1000.0, load, 0, {"0": "a"})
    assert [t["injected_at_s"] for t in got] == [10.0]
    assert periodic.stop_reason([done, refused]) == (
        "repeat 2: RuntimeError: master b has no healthy replica to fail over to (not injected)"
    )
    assert periodic.stop_reason([done]) is None
    failed = faults.FaultEvents("failover", injected_at=1.0, restore_problems=["x:1 is not running"])
    assert periodic.stop_reason([failed]) == "repeat 1: restore failed: x:1 is not running"

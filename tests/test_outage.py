"""Pure parts of the fault figures, with literal numbers: success gaps and their merge across
processes, the servers' own log lines, open-loop coverage, partial time-series buckets, and the
audit's words for tasks that were never delivered."""

from __future__ import annotations

import math
import time

import pytest

from bench import faults, outage, serverlog
from bench.audit import AuditLog, count
from bench.results import bucket_span
from bench.schedule import Schedule, coverage, merge_coverage


def gaps_of(*successes: tuple[int, float]) -> dict:
    record = outage.SuccessGaps()
    for partition, at in successes:
        record.success(partition, at)
    return record.snapshot()


def test_success_gaps_are_the_spaces_between_successful_replies() -> None:
    snap = gaps_of((0, 10.00), (0, 10.01), (0, 12.50), (0, 12.51), (0, 12.60))
    assert snap["0"] == {"first_ok": 10.0, "last_ok": 12.6, "gaps": [[10.01, 12.5], [12.51, 12.6]]}


def test_short_spacing_is_not_a_gap_and_a_reply_out_of_order_does_not_move_time_back() -> None:
    snap = gaps_of((1, 5.0), (1, 5.02), (1, 5.01), (1, 5.03))
    assert snap["1"] == {"first_ok": 5.0, "last_ok": 5.03, "gaps": []}


def busy(partition: int, lo: float, hi: float) -> list[tuple[int, float]]:
    """A success every 10 ms from lo to hi: a partition serving normally."""
    return [(partition, round(lo + i / 100, 2)) for i in range(round((hi - lo) * 100) + 1)]


def test_processes_combine_by_intersection() -> None:
    a = gaps_of(*busy(0, 0.0, 1.0), *busy(0, 4.0, 6.0))  # no success in a: 1.0 .. 4.0
    b = gaps_of(*busy(0, 0.0, 2.0), *busy(0, 5.0, 6.0))  # b: 2.0 .. 5.0
    both = outage.combined([a, b], "0")
    # unavailable only while neither process succeeded
    assert both == [(-math.inf, 0.0), (2.0, 4.0), (6.0, math.inf)]
    assert outage.longest_outage(both, window=(1.5, 9.0), run=(0.0, 6.0)) == {"start": 2.0, "end": 4.0, "seconds": 2.0}
    assert outage.longest_outage(both, window=(4.5, 9.0), run=(0.0, 6.0))["seconds"] == 0.0


def test_a_process_that_never_used_a_partition_says_nothing_about_it() -> None:
    a = gaps_of((0, 0.1), (0, 1.0), (0, 3.0))
    idle = gaps_of((1, 0.1))
    assert outage.combined([a, idle], "0") == outage.combined([a], "0")
    assert outage.combined([idle], "0") == [(-math.inf, math.inf)]


def test_an_outage_still_open_at_the_end_of_the_load_has_no_end() -> None:
    snap = gaps_of((2, 0.1), (2, 1.0))
    got = outage.longest_outage(outage.combined([snap], "2"), window=(2.0, 10.0), run=(0.0, 7.0))
    assert got == {"start": 1.0, "end": None, "seconds": 6.0}
    never = outage.longest_outage(outage.combined([], "2"), window=(2.0, 10.0), run=(0.0, 7.0))
    assert never == {"start": 0.0, "end": None, "seconds": 7.0}


def test_intersect_literal() -> None:
    assert outage.intersect([(0, 2), (3, 6)], [(1, 4), (5, 9)]) == [(1, 2), (3, 4), (5, 6)]
    assert outage.intersect([(0, 1)], [(1, 2)]) == []


LOG = """\
4242:M 27 Nov 2026 16:42:49.120 * Marking node 1111111111111111111111111111111111111111 as failing (quorum reached).
4242:M 27 Nov 2026 16:42:50.500 * Marking node 2222222222222222222222222222222222222222 () as failing (quorum reached).
4243:S 27 Nov 2026 16:42:51.007 # Failover election won for epoch 7.
not a log line
"""


def test_server_log_events_to_the_millisecond() -> None:
    base = time.mktime(time.strptime("27 Nov 2026 16:42:49", "%d %b %Y %H:%M:%S"))
    assert serverlog.marked_failing_at(LOG, "1" * 40, after=base) == pytest.approx(base + 0.120)
    # the Valkey form, with a name in parentheses
    assert serverlog.marked_failing_at(LOG, "2" * 40, after=base) == pytest.approx(base + 1.5)
    assert serverlog.marked_failing_at(LOG, "1" * 40, after=base + 0.2) is None  # an earlier cell's line
    assert serverlog.marked_failing_at(LOG, "3" * 40, after=base) is None
    assert serverlog.election_won_at(LOG, after=base) == pytest.approx(base + 2.007)
    assert serverlog.line_time("not a log line") is None


def test_open_loop_coverage_literal() -> None:
    schedule = Schedule(rate_per_s=100.0, start=50.0)
    for _ in range(30):
        schedule.next_slot()
        schedule.sent += 1
    assert schedule.planned_by(49.0) == 0
    assert schedule.planned_by(51.0) == 101  # slots 50.00, 50.01, … 51.00
    assert schedule.oldest_unsent_delay(51.0) == pytest.approx(0.7)  # slot 30 was due at 50.30
    got = coverage(100.0, planned=101, issued=30, elapsed_s=1.0)
    assert got == {
        "rate": 100.0,
        "planned": 101,
        "issued": 30,
        "backlog": 71,
        "backlog_oldest_delay_s": 0.0,
        "achieved_rate": 30.0,
        "coverage": 0.297,
        "rate_reached": False,
    }
    assert coverage(100.0, planned=100, issued=95, elapsed_s=1.0)["rate_reached"] is True
    assert coverage(100.0, planned=100, issued=94, elapsed_s=1.0)["rate_reached"] is False
    both = merge_coverage(
        [{"planned": 100, "issued": 90, "oldest_delay_s": 0.2}, {"planned": 100, "issued": 100}], 200.0, 1.0
    )
    assert (both["planned"], both["issued"], both["backlog"], both["backlog_oldest_delay_s"]) == (200, 190, 10, 0.2)


def test_partial_buckets_cover_only_their_share_of_the_second() -> None:
    assert bucket_span(100, start_epoch=100.4, end_epoch=105.028) == 0.6
    assert bucket_span(102, start_epoch=100.4, end_epoch=105.028) == 1.0
    assert bucket_span(105, start_epoch=100.4, end_epoch=105.028) == 0.028
    assert bucket_span(106, start_epoch=100.4, end_epoch=105.028) == 0.0


def test_undelivered_is_only_called_lost_after_a_drain() -> None:
    log = AuditLog()
    log.produce(["a", "b", "c"], "ok")
    log.produce(["d"], "ambiguous")
    log.deliver("a")
    during = count(log, stage="load")
    assert during["undelivered"] == 2 and during["undelivered_ambiguous"] == 1 and "lost" not in during
    timed_out = count(log, stage="drain_timed_out")
    assert timed_out["lost_upper_bound"] == 2 and "lost" not in timed_out
    assert count(log)["lost"] == 2 and count(log)["lost_ambiguous"] == 1


def test_fault_timeline_headline_is_the_success_gap_not_the_error_window() -> None:
    start = 1000.0
    events = faults.FaultEvents("kill", target="127.0.0.1:7000", injected_at=1002.0, promoted_at=1004.5)
    load = {
        "elapsed_s": 8.0,
        # errors from 1002.05 to 1003.70, then calls hung until the new master answered at 1004.6
        "partition_timeline": {
            "0": {"first_error_at": 1002.05, "last_error_at": 1003.7, "recovered_at": 1004.6, "errors": 40},
            "1": {"first_error_at": 1003.9, "last_error_at": 1004.0, "recovered_at": 1004.2, "errors": 3},
        },
        "success_gaps": [
            gaps_of(*busy(0, 1000.0, 1001.99), (0, 1001.999), *busy(0, 1004.6, 1008.0))
            | gaps_of(*busy(1, 1000.0, 1003.5), *busy(1, 1004.3, 1008.0))
        ],
    }
    got = faults.timeline(events, start, load, 0, {"0": "127.0.0.1:7000", "1": "127.0.0.1:7001"})
    assert got["unavailable_s"] == pytest.approx(2.601)  # 1001.999 -> 1004.6
    assert got["error_window_s"] == pytest.approx(1.65)
    assert got["unavailable_s"] >= got["promoted_at_s"] - got["injected_at_s"]
    assert got["client_saw_new_master_at_s"] == pytest.approx(4.6)
    assert got["client_recovery_lag_s"] == pytest.approx(0.1)
    assert got["healthy_unavailable_s"] == pytest.approx(0.8)  # partition 1: 1003.5 -> 1004.3
    assert got["partitions"]["1"]["faulted"] is False and got["partitions"]["0"]["faulted"] is True

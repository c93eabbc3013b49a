"""bench.metrics, pure: the merge of per-process partition timelines, literal input."""

from __future__ import annotations

from bench.metrics import merge_timelines


def test_merge_timelines_earliest_first_latest_last_and_recovery_only_when_all_recovered() -> None:
    a = {"0": {"first_error_at": 10.0, "last_error_at": 12.0, "recovered_at": 12.5, "errors": 4}}
    b = {
        "0": {"first_error_at": 10.5, "last_error_at": 13.0, "recovered_at": 13.2, "errors": 6},
        "1": {"first_error_at": 11.0, "last_error_at": 11.0, "recovered_at": None, "errors": 1},
    }
    merged = merge_timelines([a, b])
    assert merged["0"] == {"first_error_at": 10.0, "last_error_at": 13.0, "recovered_at": 13.2, "errors": 10}
    assert merged["1"]["recovered_at"] is None and merged["1"]["errors"] == 1  # one process never recovered
    assert merge_timelines([]) == {}

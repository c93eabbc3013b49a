"""Pure parts with literal numbers: summary math, repeats, change classification, schedule,
histogram merge across workers, Locust bucketing. No Redis."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.metrics import Recorder, new_histogram
from bench.results import write_load_run
from bench.schedule import Schedule, per_process_rate
from bench.stats import bucket_sub_ms, classify_change, combine_repeats, mean_us, spread, summarize


def test_summarize_literal_values() -> None:
    hist = new_histogram()
    for value in (100, 200, 300, 400, 1000):
        hist.record_value(value)
    s = summarize(hist, duration_s=2.0)
    assert s["count"] == 5 and s["ops_per_s"] == 2.5
    assert s["p50_us"] == 300 and s["max_us"] == 1000
    assert s["p99_us"] == 1000 and s["mean_us"] == 400.0


def test_spread_and_repeats() -> None:
    assert spread([100, 110, 90]) == pytest.approx(0.2)
    assert spread([5]) == 0.0
    combined = combine_repeats(
        [{"ops_per_s": 100.0, "p99_us": 500}, {"ops_per_s": 104.0, "p99_us": 510}, {"ops_per_s": 102.0, "p99_us": 700}]
    )
    assert combined["ops_per_s"] == 102.0 and combined["p99_us"] == 510
    assert combined["ops_per_s_min"] == 100.0 and combined["ops_per_s_max"] == 104.0
    assert combined["unstable"] == ["p99_us"]  # (700-500)/510 > 10 %
    assert combined["repeats"] == 3


def test_classify_change() -> None:
    a = {"ops_per_s": 1000.0, "ops_per_s_spread": 0.02}
    assert classify_change(a, {"ops_per_s": 900.0, "ops_per_s_spread": 0.02}, "ops_per_s", True) == "regression"
    assert classify_change(a, {"ops_per_s": 1100.0}, "ops_per_s", True) == "improvement"
    assert classify_change(a, {"ops_per_s": 1030.0}, "ops_per_s", True) == "same"
    assert classify_change(a, {"ops_per_s": 500.0, "ops_per_s_spread": 0.3}, "ops_per_s", True) == "unstable"
    assert classify_change({"p99_us": 100}, {"p99_us": 150}, "p99_us", False) == "regression"


def test_schedule_slots_are_fixed_and_evenly_spaced() -> None:
    schedule = Schedule(rate_per_s=4.0, start=10.0)
    assert [schedule.next_slot() for _ in range(5)] == [10.0, 10.25, 10.5, 10.75, 11.0]
    assert schedule.issued == 5
    assert per_process_rate(1000, 4) == 250
    with pytest.raises(ValueError):
        Schedule(-1, 0)


def test_a_rate_change_keeps_handed_out_slots_and_the_backlog() -> None:
    schedule = Schedule(rate_per_s=4.0, start=10.0)
    assert [schedule.next_slot(), schedule.next_slot()] == [10.0, 10.25]
    schedule.set_rate(2.0, now=10.3)  # the next slot was due at 10.5 at the old rate: it stays there
    assert [schedule.next_slot() for _ in range(3)] == [10.5, 11.0, 11.5]
    assert schedule.planned_by(11.0) == 4  # 10.0, 10.25 at 4/s; 10.5, 11.0 at 2/s
    assert schedule.planned_by(9.9) == 0


def test_a_worker_schedule_starts_when_it_learns_its_share() -> None:
    schedule = Schedule(rate_per_s=0.0, start=5.0)  # a worker before its users are dealt: nothing planned
    assert schedule.planned_by(100.0) == 0
    schedule.set_rate(10.0, now=7.0)
    assert schedule.next_slot() == 7.0
    assert (schedule.planned_by(6.9), schedule.planned_by(7.05), schedule.planned_by(8.0)) == (0, 1, 11)


def test_a_slower_rate_does_not_forgive_sends_already_late() -> None:
    schedule = Schedule(rate_per_s=10.0, start=0.0)
    schedule.next_slot()
    schedule.sent = 1
    schedule.set_rate(5.0, now=3.0)  # slot 1 was due at 0.1 and still is
    assert schedule.planned_by(3.0) == 1 + 15  # 0.1, 0.3, ..., 2.9 at 5/s
    assert schedule.oldest_unsent_delay(3.0) == pytest.approx(2.9)


def test_recorder_per_second_rows_warmup_and_worker_merge() -> None:
    now = [100.2]
    master = Recorder(clock=lambda: now[0])
    master.measure_from = 101.0
    workers = [Recorder(clock=lambda: now[0]) for _ in range(2)]
    for i, worker in enumerate(workers):
        worker.record("enqueue", 50)  # second 100: warm-up
        now[0] = 101.5
        worker.record("enqueue", 100 + i)
        worker.record("enqueue", 300)
        worker.error("enqueue", "timeout")
        now[0] = 100.2
    for worker in workers:
        master.merge(worker.drain())
    master.finalize()
    assert master.cumulative["enqueue"].get_total_count() == 4  # 2 workers x 2 measured values
    assert [(r["epoch_s"], r["count"], r["warmup"]) for r in master.rows] == [(100, 2, True), (101, 4, False)]
    assert master.rows[1]["errors"] == 2 and master.errors[("enqueue", "timeout")] == 2
    assert master.cumulative["enqueue"].get_value_at_percentile(50) == 101
    assert workers[0].drain() == {"hist": {}, "errors": {}}  # drained once


def test_locust_bucketing_keeps_sub_ms() -> None:
    assert bucket_sub_ms(0.183) == 0.18
    assert bucket_sub_ms(2.345) == 2.3
    assert bucket_sub_ms(47.6) == 48
    assert bucket_sub_ms(1234) == 1200


def test_mean_is_hdrhs_own_mean_without_walking_every_value() -> None:
    hist = new_histogram()
    hist.record_value(100, 3)
    hist.record_value(1000, 1)
    assert mean_us(hist) == 325.0  # values below 2048 are exact at 3 significant digits
    rng = random.Random(7)
    for _ in range(50):  # wide ranges: values land in many buckets, each counted at its range's middle
        hist = new_histogram()
        for _ in range(rng.randint(1, 300)):
            hist.record_value(max(1, int(10 ** rng.uniform(0, 7.5))), rng.randint(1, 10_000))
        assert mean_us(hist) == hist.get_mean_value()
    assert mean_us(new_histogram()) == 0.0


def test_a_checkpoint_leaves_out_the_hgrm_text_and_the_last_write_adds_it(tmp_path: Path) -> None:
    recorder = Recorder(clock=lambda: 100.5)
    recorder.record("enqueue", 250.0)
    meta = {"elapsed_s": 1.0, "measured_s": 1.0}
    write_load_run(tmp_path, recorder, meta, 100.0, checkpoint=True)
    assert (tmp_path / "histograms.json").exists() and not (tmp_path / "hgrm").exists()
    recorder.finalize()  # the last write closes every second first (bench.load_results)
    write_load_run(tmp_path, recorder, meta, 100.0)
    assert (tmp_path / "hgrm" / "enqueue.hgrm").read_text().count("\n") > 3

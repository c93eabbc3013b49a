"""The queue's own ceiling (bench.ceiling, bench.ceiling_calc): redis-benchmark really drives the queue's
scripts on the right keys (what it enqueued is there, and the queue dequeues it), its output is read, the
rates are composed; behaviour, not timings."""

from __future__ import annotations

import pytest

from bench import ceiling
from bench.backend_kinds import ClusterBackend, StandaloneBackend
from bench.ceiling_calc import (
    best_step,
    combine_rounds,
    compose,
    next_step,
    parse_benchmark,
    predicted,
    sides,
    sides_text,
)
from bench.cost import processes_needed
from taskqueue import TaskQueue
from taskqueue.keys import partition_keys

needs_benchmark = pytest.mark.skipif(ceiling.benchmark_binary() is None, reason="redis-benchmark not installed")

# redis-benchmark 7.0.15's default output for a custom command (its \r progress lines, then the summary)
OUTPUT = (
    "EVALSHA ffde 2 tq:{b.0}:ready tq:{b.0}:tasks t-__rand_int__-__rand_int__ R: rps=0.0 (overall: 0.0) "
    "avg_msec=-nan (overall: -nan)\r                     \r"
    "====== EVALSHA ffde 2 tq:{b.0}:ready tq:{b.0}:tasks t-__rand_int__-__rand_int__ R ======\n"
    "  100000 requests completed in 0.32 seconds\n  50 parallel clients\n  154 bytes payload\n  keep alive: 1\n"
    "  multi-thread: no\n\nLatency by percentile distribution:\n0.000% <= 0.375 milliseconds (cumulative count 16)\n"
    "\nSummary:\n  throughput summary: 320512.81 requests per second\n  latency summary (msec):\n"
    "          avg       min       p50       p95       p99       max\n        2.382     0.375     2.487     3.1\n"
)


def test_parse_benchmark_reads_the_count_and_the_rate() -> None:
    assert parse_benchmark(OUTPUT) == {"requests": 100000, "seconds": 0.32, "ops_per_s": 320512.81}
    with pytest.raises(ValueError, match="no summary"):
        parse_benchmark("Error from server: NOSCRIPT No matching script.")


def test_a_task_rate_adds_the_three_scripts_times_on_one_master() -> None:
    assert compose({"enqueue": 300_000.0, "dequeue": 150_000.0, "ack": 300_000.0}) == 75_000.0
    assert compose({"enqueue": 300_000.0, "dequeue": None, "ack": 1.0}) is None
    assert predicted({"enqueue": 2.0, "dequeue": 5.0, "ack": 3.0}) == 100_000.0


def test_the_concurrency_ladder_stops_when_the_rate_stops_growing() -> None:
    steps = ((50, 1), (50, 4), (50, 16), (100, 32))
    assert next_step([], steps) == (50, 1)
    assert next_step([(50, 1, 90e3), (50, 4, 200e3)], steps) == (50, 16)
    assert next_step([(50, 1, 90e3), (50, 4, 200e3), (50, 16, 205e3)], steps) is None  # +2.5 %: saturated
    assert next_step([(50, 1, 1.0), (50, 4, 2.0), (50, 16, 3.0), (100, 32, 4.0)], steps) is None  # bounded
    assert best_step([(50, 1, 90e3), (50, 4, 200e3), (50, 16, 195e3)]) == (50, 4)


def test_rounds_combine_to_medians_and_the_sides_say_how_many_processes() -> None:
    rounds = [{"enqueue": {"ops_per_s": v, "us_per_call": v / 1e5}} for v in (1e5, 3e5, 2e5)]
    assert combine_rounds(rounds)["enqueue"] == {"ops_per_s": 2e5, "us_per_call": 2.0, "repeats": 3}
    two = sides({"rate": 1400.0, "lower_bound": True}, {"tasks_per_s": 60_000.0, "client_us_per_task": 320.0})
    assert two["load_processes_needed"] == processes_needed(60_000.0, 320.0) == 20
    assert two["reached_share"] == round(1400 / 60_000, 3) and two["load_cores_needed"] == 19.2
    text = "\n".join(sides_text("c", two, {"tasks_per_s": 60_000.0, "masters": [], "clients": 50, "pipeline": 16}))
    assert "≥ 1,400 tasks/s" in text and "20 load process(es)" in text
    assert sides_text("c", two, {"skipped": "why"}) == ["server-side ceiling [c]: not measured (why)"]


def test_the_cheapest_step_says_how_few_processes_could_do() -> None:
    from bench.capacity_ceiling import cheapest_step

    steps = [{"params": {"rate": r}, "cost": {"client_us_per_task": us}} for r, us in ((500, 1500.0), (2000, 450.0))]
    assert cheapest_step([*steps, {"params": {"rate": 9}, "cost": None}]) == steps[1]
    assert cheapest_step([{"cost": {"client_us_per_task": None}}]) is None
    two = sides({"rate": 958.0}, {"tasks_per_s": 67_000.0, "client_us_per_task": 950.0})
    two["cheapest_step"] = {"rate": 2000.0, "client_us_per_task": 450.0, "load_processes_needed": 31}
    text = "\n".join(sides_text("c", two, {"tasks_per_s": 67_000.0, "masters": []}))
    assert "= 64 load process(es) at the 950 CPU µs per task measured at capacity" in text
    assert "or 31 at the 450 µs per task of the cheapest step (2,000/s" in text


def _llen(backend: StandaloneBackend | ClusterBackend, m: ceiling.Master) -> int:
    with m.server.client() as r:
        return int(r.llen(m.keys.ready))


@needs_benchmark
def test_redis_benchmark_enqueues_tasks_the_queue_dequeues(standalone: StandaloneBackend) -> None:
    """The EVALSHA run stored as many tasks as redis-benchmark reports sending (unique ids), in the queue's
    own layout: a TaskQueue of that name dequeues them, with the payload redis-benchmark carried."""
    binary = ceiling.benchmark_binary()
    assert binary is not None
    (m,) = ceiling.masters_of(standalone)
    assert m.keys == partition_keys(ceiling.QUEUE, 0)
    ceiling.clear(m)
    before = _llen(standalone, m)
    run = ceiling.run_at_once(binary, [("enqueue", m, 10, 4, 3000, 2**31 - 1)], ceiling.record(64))[0]
    assert run["requests"] == 3000 and run["calls"] == 3000 and run["inner_calls"]["hsetnx"] == 3000
    assert _llen(standalone, m) - before == run["requests"]
    assert run["us_per_call"] > 0 and run["master_cores"] >= 0
    queue = TaskQueue(standalone.target.redis_url, name=ceiling.QUEUE)
    try:
        assert queue.depth() == 3000
        task = queue.dequeue()
        assert task is not None and task.id.startswith("t-") and task.payload == b"x" * 64
        assert queue.ack(task) and queue.depth() == 2999
    finally:
        queue.close()
        ceiling.clear(m)


@needs_benchmark
def test_one_round_dequeues_every_task_and_acks_leased_ones(standalone: StandaloneBackend) -> None:
    binary = ceiling.benchmark_binary()
    assert binary is not None
    (m,) = ceiling.masters_of(standalone)
    (r,) = ceiling.one_round(binary, [m], 10, 4, 2000, ceiling.record(16))
    assert r["enqueue"]["queued"] == 2000 and r["dequeue"]["requests"] == 2000 and r["dequeue"]["leased"] == 2000
    assert r["dequeue"]["inner_calls"]["zadd"] == 2000  # every dequeue found a task and leased it
    assert r["ack"]["requests"] == 1000 and 0.7 <= r["ack"]["hit_share"] <= 1.0  # ids drawn from 4000 leased
    assert _llen(standalone, m) == 0  # cleared after the round


@needs_benchmark
def test_a_failing_script_call_stops_the_measurement_with_the_servers_reason(standalone: StandaloneBackend) -> None:
    binary = ceiling.benchmark_binary()
    assert binary is not None
    (m,) = ceiling.masters_of(standalone)
    m.shas["enqueue"] = "0" * 40
    with pytest.raises(RuntimeError, match="NOSCRIPT"):
        ceiling.run_at_once(binary, [("enqueue", m, 2, 1, 100, 2**31 - 1)], ceiling.record(8))


@needs_benchmark
def test_each_cluster_master_gets_a_partition_it_owns_and_runs_at_once(cluster: ClusterBackend) -> None:
    binary = ceiling.benchmark_binary()
    assert binary is not None
    masters = ceiling.masters_of(cluster)
    owners = {n.address for n in cluster.topology() if n.is_master and n.slots}
    assert {m.address for m in masters} == owners and len({m.partition for m in masters}) == 3
    try:
        runs = ceiling.run_at_once(binary, [("enqueue", m, 5, 4, 1500, 2**31 - 1) for m in masters], ceiling.record(8))
        # a key on the wrong master would be MOVED: redis-benchmark would have failed
        assert [_llen(cluster, m) for m in masters] == [run["requests"] for run in runs] == [1500] * 3
    finally:
        for m in masters:
            ceiling.clear(m)


@needs_benchmark
@pytest.mark.slow
def test_measure_composes_each_masters_rate_from_its_three_scripts(standalone: StandaloneBackend) -> None:
    out = ceiling.measure(standalone, {"payload_bytes": 32}, requests=2000, repeats=1, load_us_per_task=10.0)
    (m,) = out["masters"]
    rates = {op: m["ops"][op]["ops_per_s"] for op in ("enqueue", "dequeue", "ack")}
    assert m["tasks_per_s"] == compose(rates) == out["tasks_per_s"] and m["tasks_per_s"] < min(rates.values())
    assert 1 <= len(out["ladder"]) <= len(ceiling.LADDER) and (out["clients"], out["pipeline"]) in ceiling.LADDER
    assert out["predicted"]["load_tasks_per_s"] == 100_000.0 and out["unpipelined_tasks_per_s"] > 0
    assert ceiling.measure(standalone, {"engine": "stream"})["skipped"].startswith("stream engine")

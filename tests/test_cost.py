"""What a task costs (bench.cost, bench.cost_cell, bench.report_cost): the commandstats accounting checked
against a hand count on real servers (standalone and cluster), and the pure parsing and sums on literal
INFO text."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from bench import commandstats
from bench.backend_kinds import ClusterBackend, StandaloneBackend
from bench.cost import (
    CmdStat,
    NodeStats,
    client_cost,
    combine,
    kind_of,
    parse_info,
    predicted_ceiling,
    processes_needed,
    queue_time,
    split_ops,
    task_cost,
)
from bench.cost_cell import mean_service_us, op_counts
from bench.report_cost import cost_section
from taskqueue import TaskQueue

# A standalone master's INFO after a 5 s Locust run (redis-server 7.0.15): every script-inner command is
# counted under its own name too, and its time is inside evalsha's.
MASTER_INFO = """# Replication\r
role:master\r
connected_slaves:0\r
\r
# Commandstats\r
cmdstat_hincrby:calls=14388,usec=5051,usec_per_call=0.35,rejected_calls=0,failed_calls=0\r
cmdstat_info:calls=2,usec=138,usec_per_call=69.00,rejected_calls=0,failed_calls=0\r
cmdstat_rpop:calls=14389,usec=5571,usec_per_call=0.39,rejected_calls=0,failed_calls=0\r
cmdstat_evalsha:calls=57564,usec=237205,usec_per_call=4.12,rejected_calls=0,failed_calls=1\r
cmdstat_zadd:calls=14388,usec=7882,usec_per_call=0.55,rejected_calls=0,failed_calls=0\r
cmdstat_blmove:calls=1,usec=21,usec_per_call=21.00,rejected_calls=0,failed_calls=0\r
cmdstat_script|load:calls=1,usec=35,usec_per_call=35.00,rejected_calls=0,failed_calls=0\r
cmdstat_zrem:calls=14388,usec=4749,usec_per_call=0.33,rejected_calls=0,failed_calls=0\r
cmdstat_config|get:calls=2,usec=54,usec_per_call=27.00,rejected_calls=0,failed_calls=0\r
cmdstat_config|resetstat:calls=1,usec=31,usec_per_call=31.00,rejected_calls=0,failed_calls=0\r
cmdstat_hget:calls=14388,usec=9047,usec_per_call=0.63,rejected_calls=0,failed_calls=0\r
cmdstat_hdel:calls=28776,usec=7403,usec_per_call=0.26,rejected_calls=0,failed_calls=0\r
cmdstat_hsetnx:calls=28782,usec=22278,usec_per_call=0.77,rejected_calls=0,failed_calls=0\r
cmdstat_time:calls=14393,usec=2069,usec_per_call=0.14,rejected_calls=0,failed_calls=0\r
cmdstat_zrangebyscore:calls=4,usec=14,usec_per_call=3.50,rejected_calls=0,failed_calls=0\r
cmdstat_lpush:calls=28782,usec=8406,usec_per_call=0.29,rejected_calls=0,failed_calls=0\r
cmdstat_hello:calls=12,usec=234,usec_per_call=19.50,rejected_calls=0,failed_calls=0\r
"""
# A replica of a cluster master during a load: the scripts' writes arrive as MULTI/EXEC.
REPLICA_INFO = """role:slave
cmdstat_hdel:calls=10880,usec=5776,usec_per_call=0.53,rejected_calls=0,failed_calls=0
cmdstat_info:calls=1,usec=55,usec_per_call=55.00,rejected_calls=0,failed_calls=0
cmdstat_lpush:calls=10643,usec=4696,usec_per_call=0.44,rejected_calls=0,failed_calls=0
cmdstat_multi:calls=21523,usec=1216,usec_per_call=0.06,rejected_calls=0,failed_calls=0
cmdstat_exec:calls=21523,usec=51153,usec_per_call=2.38,rejected_calls=0,failed_calls=0
cmdstat_hsetnx:calls=10643,usec=9905,usec_per_call=0.93,rejected_calls=0,failed_calls=0
"""
INNER_USEC = 5051 + 5571 + 7882 + 4749 + 9047 + 7403 + 22278 + 2069 + 14 + 8406


# -- pure: literal INFO text ----------------------------------------------------------------------------


def test_parse_info_reads_role_and_every_cmdstat_line() -> None:
    role, commands = parse_info(MASTER_INFO)
    assert role == "master" and len(commands) == 17
    assert commands["evalsha"] == CmdStat(57564, 237205, failed=1)
    assert commands["script|load"] == CmdStat(1, 35) and commands["config|resetstat"] == CmdStat(1, 31)
    assert parse_info(REPLICA_INFO)[0] == "slave"
    with pytest.raises(ValueError, match="cannot read INFO commandstats line"):
        parse_info("cmdstat_get:calls=x,usec=3")


def test_kinds_leave_out_the_harness_and_keep_unknown_commands_visible() -> None:
    assert [kind_of(n) for n in ("evalsha", "blmove", "exec", "wait")] == ["queue"] * 4
    assert [kind_of(n) for n in ("hsetnx", "time", "xautoclaim")] == ["inner"] * 3
    harness = ("info", "config|resetstat", "cluster|slots", "client|setinfo", "command|docs", "llen", "zcard")
    assert {kind_of(n) for n in harness} == {"harness"}
    assert kind_of("getex") == "unclassified"


def test_the_masters_time_is_what_the_client_sent_never_a_script_inner_command_on_top() -> None:
    _, commands = parse_info(MASTER_INFO)
    assert queue_time(commands, "list") == CmdStat(57564 + 1 + 1, 237205 + 21 + 35, failed=1)
    ops = split_ops(commands, "list")
    # the hand count: one HSETNX per enqueue; TIME per dequeue and reaper call (ZRANGEBYSCORE: the reaper's);
    # two HDEL per ack; the rest of EVALSHA's calls (a NOSCRIPT retry) and SCRIPT LOAD are background
    assert [ops[op].calls for op in ("enqueue", "dequeue", "ack")] == [28782, 14389 + 1, 14388]
    assert ops["background"].calls == 57564 - 28782 - 14389 - 14388 + 1
    assert sum(s.usec for s in ops.values()) == 237205 + 21 + 35  # exact, whatever the split
    overhead = (237205 - INNER_USEC) / 57564  # the Lua overhead per call, shared by every call
    assert ops["enqueue"].usec == int(22278 + 8406 + 28782 * overhead)
    assert ops["ack"].usec == int(7403 + 4749 + 14388 * overhead)


def test_task_cost_divides_each_operation_by_its_own_count() -> None:
    _, commands = parse_info(MASTER_INFO)
    _, replica = parse_info(REPLICA_INFO)
    nodes = [NodeStats("m:1", "master", commands), NodeStats("r:2", "slave", replica)]
    counts = {"enqueue": 28782, "dequeue": 14388, "ack": 14388}
    cost = task_cost(nodes, counts, "list", {"enqueue": 500.0, "dequeue": 400.0, "ack": 300.0})
    ops = split_ops(commands, "list")
    by_hand = (
        ops["enqueue"].usec / 28782 + ops["dequeue"].usec / 14388 + (ops["ack"].usec + ops["background"].usec) / 14388
    )
    assert cost["server_us_per_task"] == pytest.approx(by_hand, abs=0.002)
    assert cost["server_us"] == 237205 + 21 + 35 and cost["server_us_per_completed_task"] == round(237261 / 14388, 3)
    assert cost["replica_us_per_task"] == round((1216 + 51153) / 14388, 3)  # MULTI + EXEC, its commands inside
    assert cost["busiest_master_share"] == 1.0 and cost["masters"] == 1
    assert cost["per_node"]["r:2"]["role"] == "slave" and "share" not in cost["per_node"]["r:2"]
    wait = cost["per_op"]["enqueue"]["wait_us"]
    assert wait == pytest.approx(500.0 - ops["enqueue"].usec / 28782, abs=0.002)
    assert cost["harness"]["calls"] == 2 + 2 + 1 + 12 + 1 and cost["unclassified"] == {}
    assert cost["predicted_ceiling"] == pytest.approx(1e6 / cost["server_us_per_task"], rel=1e-4)


def test_stream_engine_counts_only_the_clients_own_xreadgroup() -> None:
    commands = {
        "evalsha": CmdStat(300, 3000),
        "hsetnx": CmdStat(100, 50),
        "xadd": CmdStat(100, 150),
        "xautoclaim": CmdStat(100, 100),
        "xreadgroup": CmdStat(140, 280),  # 100 inside the dequeue script, 40 blocking waits the client sent
        "xack": CmdStat(100, 40),
        "xdel": CmdStat(100, 60),
        "hdel": CmdStat(100, 30),
    }
    assert queue_time(commands, "stream") == CmdStat(340, 3000 + 80)
    ops = split_ops(commands, "stream")
    assert [ops[op].calls for op in ("enqueue", "dequeue", "ack")] == [100, 100 + 40, 100]
    assert sum(s.usec for s in ops.values()) == 3080


def test_client_cost_and_the_load_processes_a_rate_needs() -> None:
    out = client_cost([(2.0, 10.0), (3.0, 10.5), (6.0, 12.0)], acks_per_s=4000.0)
    assert out == {"client_cores": 0.5, "client_us_per_task": 125.0}
    assert client_cost([(2.0, 10.0)], 4000.0)["client_cores"] is None
    assert processes_needed(50_000, 125.0) == 7 and processes_needed(8_000, 125.0) == 1
    assert processes_needed(None, 125.0) is None
    assert predicted_ceiling(10.0, 3) == 300_000.0 and predicted_ceiling(None, 3) is None


def test_combine_takes_medians_over_repeats() -> None:
    reps: list[dict[str, Any] | None] = [
        {"server_us_per_task": v, "per_op": {"ack": {"us_per_op": v / 3}}, "masters": 1} for v in (9.0, 12.0, 10.0)
    ]
    out = combine([*reps, None])
    assert out is not None and out["server_us_per_task"] == 10.0 and out["repeats"] == 3
    assert out["per_op"]["ack"]["us_per_op"] == round(10.0 / 3, 3)
    assert combine([None]) is None


def test_op_counts_cover_every_second_and_batches_count_tasks(tmp_path: Path) -> None:
    (tmp_path / "timeseries.csv").write_text(
        "t_s,operation,count,span_s,ops_per_s,p50_us,p99_us,max_us,errors,warmup\n"
        "0,ack,953,0.342,2786.5,850,2123,3639,0,True\n"
        "0,enqueue_many,100,0.342,292.4,850,2123,3639,0,True\n"
        "1,ack,3155,1.0,3155.0,846,1024,2743,0,False\n"
        "1,dequeue,3153,1.0,3153.0,449,811,2759,0,False\n"
        "1,e2e,3153,1.0,3153.0,1,1,1,0,False\n"
    )
    assert op_counts([tmp_path, tmp_path / "missing"], batch_size=10) == {"enqueue": 1000, "dequeue": 3153, "ack": 4108}
    means = mean_service_us({"enqueue_many": {"mean_us": 900.0}, "ack": {"mean_us": 80.0}}, batch_size=10)
    assert means == {"dequeue": None, "ack": 80.0, "enqueue": 90.0}
    assert mean_service_us({"enqueue": {"mean_us": 5e3}, "enqueue_service": {"mean_us": 600.0}})["enqueue"] == 600.0


def test_report_section_shows_a_row_per_cell_with_a_cost() -> None:
    cost = {
        "server_us_per_task": 10.7,
        "client_us_per_task": 317.1,
        "client_cores": 0.98,
        "wait_us_per_task": 1906.1,
        "busiest_master_share": 0.342,
        "masters": 3,
        "predicted_ceiling": 93_668.0,
        "per_op": {"enqueue": {"us_per_op": 3.2}, "dequeue": {"us_per_op": 4.2}, "ack": {"us_per_op": 3.3}},
    }
    lines = cost_section([{"id": "a", "cost": cost}, {"id": "b", "cost": None}])
    rows = [line for line in "\n".join(lines).splitlines() if line.startswith("| a ")]
    assert rows == ["| a | 10.7 | 3.2 / 4.2 / 3.3 | – | 317.1 (0.98 cores) | 1,906.1 | 34 % of 3 | 93,668 |"]
    assert cost_section([{"id": "b"}]) == []


# -- real servers: the accounting against a hand count ------------------------------------------------


def _caught_up(backend: ClusterBackend) -> bool:
    """Every replica has applied all its master's writes (INFO replication offsets; no WAIT, which would
    be a command in the counters)."""
    offsets = {}
    for server in backend.servers:
        with server.client() as r:
            info = r.info("replication")
        offsets[server.address] = info
    masters = {a: i["master_repl_offset"] for a, i in offsets.items() if i["role"] == "master"}
    replicas = [i for i in offsets.values() if i["role"] == "slave"]
    return all(i["slave_repl_offset"] in masters.values() for i in replicas) and all(
        i["slave_repl_offset"] == masters.get(f"{i['master_host']}:{i['master_port']}") for i in replicas
    )


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_server_time_equals_the_hand_count_on_real_servers(kind: str, request: pytest.FixtureRequest) -> None:
    """K enqueue + dequeue + ack: the counts read from commandstats are K of each, the time is exactly the
    masters' EVALSHA time (never that plus the script-inner commands'), the harness's commands left out."""
    backend: StandaloneBackend | ClusterBackend = request.getfixturevalue(kind)
    queue = TaskQueue(backend.target.redis_url, backend.target.cluster_nodes, name=f"c-{uuid.uuid4().hex[:6]}")
    k = 10 * queue.partitions  # ids and dequeues go round the partitions: every dequeue finds its task first
    try:
        for _ in range(queue.partitions):  # scripts loaded on every master: no NOSCRIPT in the window
            queue.enqueue(b"warm")
        for _ in range(queue.partitions):
            task = queue.dequeue()
            assert task is not None
            queue.ack(task)
        commandstats.reset(backend.servers)
        for _ in range(k):
            queue.enqueue(b"x" * 100)
        tasks = [queue.dequeue() for _ in range(k)]
        assert all(t is not None for t in tasks)
        for t in tasks:
            assert t is not None and queue.ack(t)
        if isinstance(backend, ClusterBackend):
            wait_until(lambda: _caught_up(backend), 10, "replicas caught up")
        stats = commandstats.read(backend.servers)
        hand = {"evalsha": CmdStat(0, 0), "inner": CmdStat(0, 0), "exec": CmdStat(0, 0)}
        for server in backend.servers:  # read again, through redis-py's own INFO parser
            with server.client() as r:
                role = r.info("replication")["role"]
                for name, s in r.info("commandstats").items():
                    stat = CmdStat(int(s["calls"]), int(s["usec"]))
                    if role == "master" and name == "cmdstat_evalsha":
                        hand["evalsha"] = hand["evalsha"] + stat
                    elif role == "master" and kind_of(name.removeprefix("cmdstat_")) == "inner":
                        hand["inner"] = hand["inner"] + stat
                    elif role == "slave" and name == "cmdstat_exec":
                        hand["exec"] = hand["exec"] + stat
    finally:
        queue.purge()
        queue.close()
    cost = task_cost(stats, {"enqueue": k, "dequeue": k, "ack": k})
    per_op = cost["per_op"]
    assert [per_op[op]["calls"] for op in ("enqueue", "dequeue", "ack")] == [k, k, k]
    assert per_op["background"]["calls"] == 0 and hand["evalsha"].calls == 3 * k
    assert cost["server_us"] == hand["evalsha"].usec  # the scripts' inner commands are not added again
    assert hand["inner"].usec > 0 and cost["server_us"] < hand["evalsha"].usec + hand["inner"].usec
    assert sum(per_op[op]["server_us"] for op in ("enqueue", "dequeue", "ack", "background")) == cost["server_us"]
    assert cost["unclassified"] == {} and cost["harness"]["calls"] >= 1  # CONFIG RESETSTAT, at least
    masters = [n for n in stats if n.role == "master"]
    assert cost["masters"] == len(masters) == (3 if kind == "cluster" else 1)
    if kind == "cluster":  # each script's writes reach its replica as one MULTI/EXEC
        assert hand["exec"].calls == 3 * k and cost["replica_us_per_task"] is not None
        assert 1 / 3 <= cost["busiest_master_share"] < 1
    else:
        assert cost["replica_us_per_task"] is None and cost["busiest_master_share"] == 1.0


@pytest.mark.slow
def test_a_bench_run_cell_records_its_cost(tmp_path: Path) -> None:
    """End to end: the cell's commandstats are read before the drain, so the acks the servers ran are the
    acks Locust counted, warm-up included; the load processes' CPU is sampled into probes.csv."""
    import json

    from conftest import bench

    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "cost"\n[params]\nduration = 3\nwarmup = 1\nusers = 4\n[[cells]]\nlabel = "one"\n')
    done = bench("run", str(scenario), "--out", str(tmp_path / "out"), "--no-charts")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cell = json.loads((tmp_path / "out" / "summary.json").read_text())["cells"][0]
    rep = cell["repeats"][0]["cost"]
    per_op = rep["per_op"]
    assert rep["counts"]["ack"] == per_op["ack"]["count"] == per_op["ack"]["calls"] > 0
    assert per_op["enqueue"]["calls"] == rep["counts"]["enqueue"] and rep["unclassified"] == {}
    assert cell["cost"]["server_us_per_task"] == rep["server_us_per_task"] > 0 and cell["cost"]["repeats"] == 1
    assert rep["client_us_per_task"] > 0 and rep["wait_us_per_task"] > 0 and rep["busiest_master_share"] == 1.0
    probes = (tmp_path / "out" / cell["dir"] / "repeat-1" / "probes.csv").read_text().splitlines()
    cpu = [float(line.rsplit(",", 1)[1]) for line in probes[1:]]
    assert len(cpu) >= 2 and cpu == sorted(cpu) and cpu[-1] > cpu[0]
    assert bench("report", str(tmp_path / "out")).returncode == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## What a task costs" in report and "| one | " in report.split("## What a task costs", 1)[1]

"""A cell's network (pure parts): the delay keys in scenarios, which cells need the private namespace, the
measured round trips summarized and flagged when off the configured ones. The delay line itself, on real
servers in a namespace, is tests/test_delayline.py; a whole `bench run` with it, tests/test_run_network.py."""

from __future__ import annotations

import pytest

from bench import netns, network, scenario
from bench.errors import UsageError


def test_delay_keys_parse_and_are_checked() -> None:
    s = scenario.parse({"params": {"backend": "cluster"}, "axes": {"rtt_ms": [0, 0.5, 2]}})
    assert [c.params["rtt_ms"] for c in s.cells] == [0.0, 0.5, 2.0]
    assert [c.id for c in s.cells] == ["rtt_ms=0.0", "rtt_ms=0.5", "rtt_ms=2.0"]
    with pytest.raises(UsageError) as caught:
        scenario.parse({"params": {"node_rtt_ms": 2}})  # standalone has no nodes to delay between
    assert 'node_rtt_ms = 2.0 needs backend = "cluster"' in str(caught.value)
    with pytest.raises(UsageError) as caught:
        scenario.parse({"params": {"jitter_ms": 0.1}})
    assert "jitter_ms 0.1 needs a delay to spread" in str(caught.value)
    with pytest.raises(UsageError) as caught:
        scenario.parse({"params": {"rtt_ms": -1}})
    assert "rtt_ms = -1.0: valid is ms 0..500" in str(caught.value)


def test_delayed_cells_need_the_namespace_and_say_why() -> None:
    cells = scenario.parse(
        {"params": {"backend": "cluster"}, "axes": {"rtt_ms": [0, 1]}, "cells": [{}, {"fault": "partition-master"}]}
    ).cells
    assert netns.wanted(cells) == [
        "rtt_ms=1.0",
        "fault=partition-master, rtt_ms=0.0",
        "fault=partition-master, rtt_ms=1.0",
    ]
    assert netns.wanted(cells, delay=True) == ["rtt_ms=1.0", "fault=partition-master, rtt_ms=1.0"]
    assert netns.wanted(cells, delay=False) == [
        "fault=partition-master, rtt_ms=0.0",
        "fault=partition-master, rtt_ms=1.0",
    ]
    assert netns.purpose(cells) == "inject network partitions and add a network delay (rtt_ms, node_rtt_ms)"
    assert netns.purpose(cells[:2]) == "add a network delay (rtt_ms, node_rtt_ms)"
    line = netns.refusal(["a", "b"], ["root (namespaces and firewall rules need it)"], netns.purpose(cells[:2]))
    assert line.startswith("cells [a], [b] add a network delay (rtt_ms, node_rtt_ms), which run in a private")
    assert netns.wanted(scenario.load("smoke").cells) == []


def test_round_trips_summarized_and_flagged_when_off() -> None:
    per = {"127.0.0.2:1": {"p50_us": 1010.0, "p99_us": 1400.0}, "127.0.0.3:1": {"p50_us": 1190.0, "p99_us": 1900.0}}
    summary = network.summarize(per)
    assert summary["p50_us"] == 1100.0 and summary["p99_us"] == 1900.0
    assert network.off_by(1100.0, 1.0) == pytest.approx(0.1)
    assert network.off_by(900.0, 0.0) is None  # loopback: nothing configured to be off from
    ok = {"configured": {"rtt_ms": 1.0, "node_rtt_ms": 0.0}, "measured": {"client_rtt": summary}}
    assert network.problems(ok) == []
    slow = {"configured": {"rtt_ms": 1.0, "node_rtt_ms": 2.0}, "measured": {"client_rtt": {"p50_us": 1250.0}}}
    assert network.problems(slow) == [
        "client RTT p50 1.25 ms, configured 1 ms (+25 %)",
        "node RTT configured 2 ms but not measured",
    ]
    fast = {"configured": {"rtt_ms": 2.0}, "measured": {"client_rtt": {"p50_us": 1500.0}}}
    assert network.problems(fast) == ["client RTT p50 1.50 ms, configured 2 ms (-25 %)"]


def test_repeats_combined_flag_any_problem() -> None:
    first = {"configured": {"rtt_ms": 1.0}, "problems": [], "flagged": False}
    second = {"configured": {"rtt_ms": 1.0}, "problems": ["client RTT p50 1.40 ms, configured 1 ms (+40 %)"]}
    combined = network.combine([first, second])
    assert combined is not None and combined["flagged"] is True
    assert combined["problems"] == second["problems"]
    assert network.combine([]) is None


def test_the_load_is_pinged_halfway_through_or_before_its_fault() -> None:
    assert network.under_load_at({"warmup": 1.0, "duration": 9.0}) == 5.0
    assert network.under_load_at({"warmup": 0.0, "duration": 9.0, "fault": "kill", "fault_at": 3.0}) == 1.5
    assert network.under_load_at({"warmup": 0.0, "duration": 9.0, "fault": "kill", "fault_at": 0.0}) == 1.5
    loaded = {
        "configured": {"rtt_ms": 1.0},
        "measured": {"client_rtt": {"p50_us": 1000.0}, "client_rtt_under_load": {"p50_us": 1600.0}},
    }
    assert network.problems(loaded) == ["client RTT under load p50 1.60 ms, configured 1 ms (+60 %)"]
    failed = {
        "configured": {"rtt_ms": 1.0},
        "measured": {"client_rtt": {"p50_us": 1000.0}, "client_rtt_under_load": {"error": "x"}},
    }
    assert network.problems(failed) == []


def test_report_section_shows_asked_idle_loaded_and_the_flag() -> None:
    from bench.report_network import network_section

    cell = {
        "id": "far",
        "cost": {"client_cores": 0.9},
        "repeats": [{"server": {"cores": {"busiest": 0.21, "busiest_node": "127.0.0.1:1", "total": 0.35}}}],
        "network": {
            "configured": {"rtt_ms": 1.0, "node_rtt_ms": 0.0, "jitter_ms": 0.2},
            "measured": {
                "client_rtt": {"p50_us": 1010.0, "p99_us": 1300.0},
                "client_rtt_under_load": {"p50_us": 1500.0, "p99_us": 5200.0},
            },
            "delay_line": {
                "cores": 0.31,
                "cpu_us_per_packet": 20.5,
                "release_lateness_us": {"late_p50_us": 1, "late_p99_us": 180},
            },
            "problems": ["client RTT under load p50 1.50 ms, configured 1 ms (+50 %)"],
            "flagged": True,
        },
    }
    lines = "\n".join(network_section([cell, {"id": "loopback", "network": None}])).splitlines()
    rows = [line for line in lines if line.startswith("| far ")]
    assert rows == [
        "| far | 1 ± 0.2 | 1.01 / 1.30 | 1.50 / 5.20 | loopback | – | 0.31 | 0.90 | 0.21 / 0.35 | 20.5 | 1 / 180 "
        "| **OFF: client RTT under load p50 1.50 ms, configured 1 ms (+50 %)** |"
    ]
    assert not [line for line in lines if line.startswith("| loopback ")]
    assert network_section([{"id": "loopback", "network": None}]) == []


def test_standalone_and_cluster_compared_per_round_trip_at_their_largest_common_pool() -> None:
    from bench.findings import backend_pairs

    def cell(backend: str, pool: int, rtt: float, users: int = 20) -> dict:
        return {
            "id": f"{backend} {pool} {rtt}",
            "params": {"backend": backend, "pool_size": pool, "rtt_ms": rtt, "users": users},
        }

    cells = [cell(b, pool, rtt) for b in ("standalone", "cluster") for pool in (1, 50) for rtt in (0.0, 1.0)]
    cells.append(cell("standalone", 100, 0.0))  # no cluster twin: not compared
    pairs = [(sa["id"], cl["id"]) for sa, cl in backend_pairs(cells)]
    assert pairs == [("standalone 50 0.0", "cluster 50 0.0"), ("standalone 50 1.0", "cluster 50 1.0")]
    lone = [cell("standalone", 50, 0.0), cell("cluster", 5, 0.0, users=20), cell("cluster", 50, 0.0, users=10)]
    assert [(sa["id"], cl["id"]) for sa, cl in backend_pairs(lone)] == [("standalone 50 0.0", "cluster 5 0.0")]


def test_server_cores_from_cpu_counters_per_node() -> None:
    from bench.monitor import server_cores

    rows = [
        {"epoch_s": 0.0, "node": "a", "role": "master", "used_cpu_s": 10.0},
        {"epoch_s": 0.0, "node": "b", "role": "slave", "used_cpu_s": 5.0},
        {"epoch_s": 1.0, "node": "a", "role": "master", "used_cpu_s": 10.5},
        {"epoch_s": 1.0, "node": "b", "role": "unreachable"},
        {"epoch_s": 2.0, "node": "a", "role": "master", "used_cpu_s": 10.8},
        {"epoch_s": 2.0, "node": "b", "role": "slave", "used_cpu_s": 0.2},  # restarted: counts from there
        {"epoch_s": 4.0, "node": "b", "role": "slave", "used_cpu_s": 0.6},
    ]
    assert server_cores(rows) == {"busiest": 0.4, "busiest_node": "a", "total": 0.5}
    assert server_cores(rows[:2]) == {}

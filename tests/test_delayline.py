"""The network delay line (bench.delayline, bench.delayer): the release schedule and the rules as pure parts;
then, in namespaces this file makes (tests/delayline_checks.py under ``unshare --net``), real redis-servers
1 ms away from the clients and 2 ms from each other, calibrated; loopback speed and no rules after stop;
a dead delayer stopping traffic rather than letting it through; the delayer's CPU and lateness. The host's
firewall is the same before and after, and no delayer is left running."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_partitions import host_firewall

from bench import delayline, netns
from bench.children import die_with_parent
from bench.delayer import LATE_BUCKETS, Schedule, lateness

ROOT = Path(__file__).resolve().parent.parent


HOST_FIREWALL = host_firewall()  # before anything here, the probe's throwaway namespace included
PROBLEMS = delayline.delay_problems()
needs_delay = pytest.mark.skipif(bool(PROBLEMS), reason=f"no delay line here: {', '.join(PROBLEMS)}")

# Namespace tests one at a time across workers (tests/conftest.py): another's live namespace is no leak of ours.
pytestmark = pytest.mark.usefixtures("netns_exclusive")
Q = "-j NFQUEUE --queue-num"


def delayers() -> list[str]:
    """Command lines of every delayer process on the machine."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bench.delayer" in args:
            found.append(b" ".join(args).decode(errors="replace"))
    return found


def in_netns(command: str, state: Path, timeout: float = 60) -> dict[str, Any]:
    cmd, env = netns.unshare_command([sys.executable, str(ROOT / "tests" / "delayline_checks.py"), command, str(state)])
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT, preexec_fn=die_with_parent
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def p50(result: dict[str, dict[str, float]], host: str, port: int) -> float:
    return result[f"{host}:{port}"]["p50_us"]


def test_release_schedule_with_jitter_keeps_fifo_order() -> None:
    exact = Schedule(500)
    assert [exact.due(t) for t in (1.0, 1.0001, 2.0)] == [1.0005, 1.0001 + 0.0005, 2.0005]
    schedule, rng = Schedule(500, 400, seed=3), random.Random(5)
    arrivals, t = [], 10.0
    for _ in range(2000):  # bursts: many arrive closer together than the jitter's width
        t += rng.choice([0.0, 1e-6, 50e-6, 2e-3])
        arrivals.append(t)
    dues = [schedule.due(a) for a in arrivals]
    assert all(b >= a for a, b in itertools.pairwise(dues)), "a packet released before the one ahead"
    delays = [(d - a) * 1e6 for a, d in zip(arrivals, dues, strict=True)]
    assert min(delays) >= 100 - 1e-6  # never earlier than delay - jitter
    # the spread is there: packets arriving alone get the full range of draws (100..900 µs)
    gaps = [a - prev for prev, a in itertools.pairwise(arrivals)]
    alone = [d for d, gap in zip(delays[1:], gaps, strict=True) if gap >= 2e-3]
    assert min(alone) < 150 and max(alone) > 850 and max(alone) <= 900 + 1e-6


def test_lateness_percentiles_from_the_histogram() -> None:
    histogram = [0] * (LATE_BUCKETS + 1)
    histogram[0], histogram[3], histogram[40] = 90, 9, 1
    assert lateness(histogram) == {"late_p50_us": 0, "late_p99_us": 3, "late_max_us": 40}
    assert lateness([0] * 10) == {}


def test_rules_for_endpoints_and_nodes() -> None:
    rules = delayline.build_rules(
        [("127.0.0.2", 7000), ("127.0.0.1", 6379)], "127.0.0.1", ["127.0.0.2", "127.0.0.3"], 7100, 7101
    )
    assert rules == [
        f"-A TQB-DELAY -s 127.0.0.1/32 -d 127.0.0.2/32 -p tcp -m tcp --dport 7000 {Q} 7100",
        f"-A TQB-DELAY -s 127.0.0.2/32 -d 127.0.0.1/32 -p tcp -m tcp --sport 7000 {Q} 7100",
        # a standalone shares the clients' address: by port, both ways
        f"-A TQB-DELAY -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m tcp --dport 6379 {Q} 7100",
        f"-A TQB-DELAY -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m tcp --sport 6379 {Q} 7100",
        f"-A TQB-DELAY -s 127.0.0.2/32 -d 127.0.0.3/32 -p tcp {Q} 7101",
        f"-A TQB-DELAY -s 127.0.0.3/32 -d 127.0.0.2/32 -p tcp {Q} 7101",
    ]
    nodes_only = delayline.DelayLine([("127.0.0.2", 7000)], rtt_ms=0, node_rtt_ms=2, node_addresses=["127.0.0.2"])
    assert nodes_only.queues == {} and nodes_only.rules() == []  # one node: nothing between nodes to delay
    line = delayline.DelayLine(
        [("127.0.0.2", 7000)], rtt_ms=0, node_rtt_ms=2, node_addresses=["127.0.0.2", "127.0.0.4"]
    )
    assert line.queues == {"nodes": 7101} and all(r.endswith(f"{Q} 7101") for r in line.rules())
    assert line.describe()["configured_hop_us"] == {"nodes": 1000.0}
    with pytest.raises(ValueError, match="IPv4"):
        delayline.DelayLine([("localhost", 7000)], rtt_ms=1)


def test_refuses_outside_a_private_namespace_and_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    line = delayline.DelayLine([("127.0.0.1", 6379)], rtt_ms=1)
    with pytest.raises(RuntimeError, match="only inside a private network namespace"):
        line.start()
    line.stop()  # nothing started: nothing to do, and no firewall command run here
    assert line.pid is None and line.packets() == 0 and line.cpu_seconds() == 0.0
    assert delayline.delay_problems(euid=1000)[0] == "root (namespaces and firewall rules need it)"
    monkeypatch.setenv(delayline.FORCE_UNAVAILABLE_ENV, "a forced problem")
    assert delayline.delay_problems() == ["a forced problem"]


@pytest.fixture(scope="module")
def rtt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return in_netns("rtt", tmp_path_factory.mktemp("delay-rtt"))


@needs_delay
def test_clients_and_nodes_get_their_round_trip_times(rtt: dict[str, Any]) -> None:
    for ms in ("0.5", "1.0", "2.0"):
        run, target = rtt[ms], float(ms) * 1000
        low, high = (0.9, 1.3) if ms == "1.0" else (0.8, 1.4)  # loose: other tests may load the machine
        for address, result in run["clients"].items():  # cluster nodes and the standalone on 127.0.0.1
            assert low * target <= result["p50_us"] <= high * target, (ms, address, result, run["describe"])
        node = p50(run["node"], "127.0.0.2", 6400)  # replica -> master
        assert 1600 <= node <= 2800, (ms, node, run["describe"])  # 2 ms, as loose as the clients' 0.8-1.4
        assert sorted(r for r in run["in_force"] if r.startswith("-A TQB-DELAY ")) == sorted(run["built"])
        assert "-A OUTPUT -j TQB-DELAY" in run["in_force"]
        described = run["describe"]
        assert described["binding"] == {"name": "fnfqueue", "version": delayline.binding_version()}
        assert set(described["calibration"]) == {"client", "nodes"}  # each class measured and corrected
        assert all(0 <= offset < 0.5 * target for offset in described["calibration_offset_us"].values())
        assert run["stats"]["packets"] > 0 and run["stats"]["errors"] == 0
    assert rtt["1.0"]["replicated"] is True  # replication through the node delay


@needs_delay
def test_after_stop_loopback_speed_and_no_rules(rtt: dict[str, Any]) -> None:
    base = max(r["p50_us"] for r in rtt["base"].values())
    for ms in ("0.5", "1.0", "2.0"):
        after = rtt[ms]["after"]
        assert max(r["p50_us"] for r in after.values()) < max(150.0, 3 * base), (ms, after)
        assert rtt[ms]["after_rules"] == [] and rtt[ms]["after_alive"] is False


@needs_delay
def test_nodes_only_and_jitter(rtt: dict[str, Any]) -> None:
    nodes_only = rtt["nodes_only"]
    assert max(r["p50_us"] for r in nodes_only["clients"].values()) < 300  # the clients are not delayed
    assert 1600 <= p50(nodes_only["node"], "127.0.0.2", 6400) <= 2800  # loose: other tests may load the machine
    assert all("--queue-num 7101" in r for r in nodes_only["in_force"] if r.startswith("-A TQB-DELAY "))
    jitter = rtt["jitter"]  # 1 ms ± 0.6 ms: spread out, still centred
    assert 900 <= jitter["p50"] <= 1300 and jitter["p95"] - jitter["p5"] > 400, jitter


@needs_delay
def test_a_dead_delayer_stops_traffic_never_lets_it_through(tmp_path: Path) -> None:
    dead = in_netns("dead", tmp_path / "state")
    assert "iptables-restore" in dead["partial"] and dead["partial_left"] == {"rules": [], "delayers": []}
    assert dead["before"] == "answered" and dead["killed"] is True
    assert dead["open_connection"] == "timed out" and dead["new_connection"] == "timed out"
    assert dead["standalone"] == "timed out" and dead["rules_while_dead"] > 0
    assert dead["after_stop"] == "connected" and dead["after_rules"] == []
    # a harness killed with SIGKILL takes its delayer along; its rules stay: traffic stays stopped
    assert dead["held_alive"] is True and dead["orphan_alive"] is False
    assert dead["orphan_rules"] > 0 and dead["after_orphan"] == "timed out"


@needs_delay
def test_delayer_cpu_per_packet_and_release_lateness(tmp_path: Path) -> None:
    cost = in_netns("cost", tmp_path / "state")
    print("delayer cost:", json.dumps({k: v for k, v in cost.items() if k != "describe"}))
    for name in ("one", "twenty"):
        assert cost[name]["packets"] > 1000
        assert cost[name]["late_p50_us"] <= 10, cost[name]  # releases land on their due time
    assert cost["twenty"]["cpu_us_per_packet"] < 40, cost  # batched under load


def test_host_firewall_unchanged_and_no_delayer_left() -> None:
    assert host_firewall() == HOST_FIREWALL, "the host's firewall changed"
    assert delayers() == [], "a delayer process was left running"

"""`bench run` end to end on embedded servers: smoke, memory-policy truths, faults, interruption."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent


def bench_run(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "run", *args, "--no-charts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def assert_no_servers_left(summary: dict) -> None:
    for addresses in summary.get("embedded_servers", {}).values():
        assert not any(listening(a) for a in addresses), addresses


def assert_audit_matches_the_error_counts(out: Path, cell: dict) -> dict:
    """The audit's per-task outcomes against Locust's failure counts (warm-up included, as the audit): each
    failed enqueue is one rejected or one ambiguous id, by its error kind; and no delivered id is one that was
    refused or that nobody enqueued. Returns the enqueue errors by kind."""
    from taskqueue.errors import AMBIGUOUS_KINDS

    repeat = json.loads((out / cell["dir"] / "repeat-1" / "summary.json").read_text())
    errors = repeat["errors_including_warmup"].get("enqueue", {})
    audit = cell["audit"]
    assert audit["ambiguous"] == sum(n for kind, n in errors.items() if kind in AMBIGUOUS_KINDS), (audit, errors)
    assert audit["rejected"] == sum(n for kind, n in errors.items() if kind not in AMBIGUOUS_KINDS), (audit, errors)
    assert audit["delivered_after_reject"] == 0 and audit["delivered_unknown"] == 0, audit
    return errors


def history_rows(out: Path) -> int:
    history = list(out.glob("cells/*/repeat-1/locust_stats_history.csv"))
    return len(history[0].read_text().splitlines()) - 1 if history else 0


def cells_by_id(out: Path) -> tuple[dict, dict]:
    summary = json.loads((out / "summary.json").read_text())
    return summary, {c["id"]: c for c in summary["cells"]}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("smoke") / "run"
    return bench_run("smoke", "--out", str(out)), out


def test_smoke_end_to_end(smoke) -> None:
    done, out = smoke
    assert done.returncode == 0, done.stderr[-3000:]
    summary, cells = cells_by_id(out)
    assert summary["complete"] is True and summary["scenario"] == "smoke"
    assert set(summary["environment"]) >= {"host_cores", "python", "redis_py", "locust", "git_commit"}
    assert set(cells) == {"standalone", "cluster", "noeviction 4mb", "graceful failover"}
    for cell in cells.values():
        assert cell["complete"], cell["id"]
        assert "provisional" not in cell, cell["id"]  # the record written before the drain was replaced
        assert cell["ops"]["enqueue"]["count"] > 0 and cell["ops"]["enqueue"]["p50_us"] > 0
        audit = cell["audit"]
        assert audit["enqueued_ok"] > 0 and audit["delivered_unique"] > 0
        assert_audit_matches_the_error_counts(out, cell)
        assert audit["lost"] == 0 and audit["lost_ambiguous"] == 0  # no kill in the smoke: every acked task came back
        effective_nodes = cell["effective"]["servers"]["nodes"]
        assert all(n["server_version"] for n in effective_nodes.values())
        rep = out / cell["dir"] / "repeat-1"
        for name in (
            "summary.json",
            "timeseries.csv",
            "histograms.json",
            "info.csv",
            "locust_stats.csv",
            "audit-ids.json.gz",
        ):
            assert (rep / name).exists(), (cell["id"], name)
    assert cells["cluster"]["effective"]["servers"]["backend"] == "cluster"
    assert len(cells["cluster"]["effective"]["servers"]["nodes"]) == 6
    assert_no_servers_left(summary)


def test_noeviction_rejects_and_loses_nothing(smoke) -> None:
    _, out = smoke
    _, cells = cells_by_id(out)
    cell = cells["noeviction 4mb"]
    effective = next(iter(cell["effective"]["servers"]["nodes"].values()))
    assert effective["maxmemory"] == 4 * 1024 * 1024 and effective["maxmemory_policy"] == "noeviction"
    assert cell["audit"]["rejected"] > 0 and cell["errors"]["enqueue"]["oom"] > 0
    assert cell["audit"]["lost"] == 0


def test_graceful_failover_loses_nothing_and_restores(smoke) -> None:
    _, out = smoke
    _, cells = cells_by_id(out)
    cell = cells["graceful failover"]
    fault = cell["fault"]
    assert fault["kind"] == "failover" and fault["restore_ok"] is True
    assert 0 < fault["injected_at_s"] <= fault["promoted_at_s"] <= fault["restored_at_s"]
    assert cell["audit"]["lost"] == 0


def test_eviction_policies_lose_tasks_and_server_counters_are_the_cells_own(tmp_path: Path) -> None:
    """allkeys-lru evicts queue keys; volatile-lru right after it, with no TTLs, cannot evict and
    refuses writes instead: its evicted_keys must be 0, not the first cell's count carried over."""
    scenario = tmp_path / "evict.toml"
    scenario.write_text(
        'name = "evict"\n[params]\nbackend = "standalone"\nduration = 4\nwarmup = 0\nusers = 6\nmaxmemory = "4mb"\n'
        "payload_bytes = 2000\nproducer_weight = 4\nconsumer_weight = 1\nprocessing_ms = 5\nvisibility_timeout = 2\n"
        '[axes]\nmaxmemory_policy = ["allkeys-lru", "volatile-lru"]\n'
    )
    out = tmp_path / "run"
    done = bench_run(str(scenario), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "can delete queued tasks" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [c["params"]["maxmemory_policy"] for c in summary["cells"]] == ["allkeys-lru", "volatile-lru"]
    lru, volatile = summary["cells"]
    assert lru["audit"]["lost"] > 0  # whole queue keys were evicted
    assert lru["repeats"][0]["server"]["evicted_keys"] > 0
    assert volatile["repeats"][0]["server"]["stats_reset"] is True
    assert volatile["repeats"][0]["server"]["evicted_keys"] == 0
    assert volatile["audit"]["lost"] == 0 and volatile["audit"]["rejected"] > 0  # OOM: refused, not evicted
    assert_no_servers_left(summary)


def test_kill_cell_timeline_ordered_and_cluster_restored(tmp_path: Path) -> None:
    scenario = tmp_path / "kill.toml"
    scenario.write_text(
        'name = "kill"\n[params]\nbackend = "cluster"\nduration = 7\nwarmup = 0\nusers = 4\nnode_timeout = 1000\n'
        'fault = "kill"\nfault_at = 2\nvisibility_timeout = 2\n'
    )
    out = tmp_path / "run"
    done = bench_run(str(scenario), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary, cells = cells_by_id(out)
    (cell,) = cells.values()
    fault = cell["fault"]
    assert fault["restore_ok"] is True and fault["error"] is None
    # the cluster's own times, from the servers' logs, in the order a failover must happen
    assert fault["timeline_source"] == {"node_failed": "server-log", "promoted": "server-log"}
    assert fault["injected_at_s"] < fault["suspected_at_s"] <= fault["node_failed_at_s"]
    assert fault["node_failed_at_s"] < fault["promoted_at_s"] < fault["restored_at_s"]
    assert fault["restarted_at_s"] is not None
    # Physical bound: nobody can serve the killed master's slots before its replica is promoted,
    # so the faulted partition went at least that long without a successful operation.
    assert fault["unavailable_s"] >= fault["promoted_at_s"] - fault["injected_at_s"]
    assert fault["outage_start_s"] <= fault["injected_at_s"] + 0.05
    assert fault["client_saw_new_master_at_s"] == fault["outage_end_s"] >= fault["promoted_at_s"]
    # 4 users keep calling the dead master: errors (refused, then CLUSTERDOWN) inside the outage
    assert fault["outage_start_s"] <= fault["first_error_at_s"] <= fault["last_error_at_s"] <= fault["outage_end_s"]
    assert fault["error_window_s"] <= fault["unavailable_s"]
    assert fault["partitions"][str(cell["params"]["fault_partition"])]["faulted"] is True
    audit = cell["audit"]
    assert cell["repeats"][0]["drain"]["complete"] is True and "lost" in audit and "lost_upper_bound" not in audit
    errors = assert_audit_matches_the_error_counts(out, cell)
    assert sum(errors.values()) > 0  # the calls to the dead master failed, each one counted in the audit
    assert_no_servers_left(summary)


def test_interrupted_run_writes_incomplete_summary_and_stops_servers(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "smoke", "--out", str(out), "--no-charts"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: history_rows(out) >= 3, 120, "the first cell under load (3 Locust stats rows)")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["incomplete_reason"] == "interrupted (Ctrl-C)"
    (cell,) = summary["cells"]  # the interrupted first cell is kept, with what Locust measured
    assert cell["complete"] is False and cell["ops"]
    assert_no_servers_left(summary)


def test_external_cluster_only_graceful_failovers_with_explicit_flags(tmp_path: Path) -> None:
    """A cluster this run did not start (here: `bench up`, as a user's own): refused without
    --allow-flush / --allow-failover, kill refused always, a graceful failover runs and restores."""
    from bench.ports import free_port

    state = tmp_path / "state"
    base = free_port(span=6, start=27600, bus_offset=10000)
    up = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "up",
            "cluster",
            "--base-port",
            str(base),
            "--node-timeout",
            "1000",
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    nodes = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    try:
        scenario = tmp_path / "fo.toml"
        scenario.write_text(
            '[params]\nbackend = "cluster"\nduration = 4\nwarmup = 0\nusers = 2\nfault = "failover"\nfault_at = 1.5\n'
        )
        for flags, needle in (([], "--allow-failover"), (["--allow-failover"], "--allow-flush")):
            refused = bench_run(str(scenario), "--cluster-nodes", nodes, *flags, "--out", str(tmp_path / "no"))
            assert refused.returncode == 2 and needle in refused.stderr, refused.stderr
        kill = tmp_path / "kill.toml"
        kill.write_text('[params]\nbackend = "cluster"\nduration = 4\nfault = "kill"\nwarmup = 0\n')
        refused = bench_run(str(kill), "--cluster-nodes", nodes, "--allow-flush", "--allow-failover")
        assert refused.returncode == 2 and "needs servers this suite runs" in refused.stderr
        out = tmp_path / "run"
        repeated = tmp_path / "repeated.toml"  # the soak's shape in seconds: a graceful failover every 3 s
        repeated.write_text(scenario.read_text().replace("duration = 4", "duration = 12") + "fault_every = 3\n")
        done = bench_run(
            str(repeated), "--cluster-nodes", nodes, "--allow-flush", "--allow-failover", "--out", str(out)
        )
        assert done.returncode == 0, done.stderr[-2000:]
        summary, cells = cells_by_id(out)
        (cell,) = cells.values()
        assert cell["fault"]["restore_ok"] and cell["fault"]["promoted_at_s"] is not None
        assert cell["audit"]["lost"] == 0
        assert "embedded_servers" not in summary
        # Each repeat hits the partition's master of the moment: the failovers alternate between the two nodes.
        series, timelines = cell["fault_series"], cell["faults"]
        assert series["count"] == len(timelines) >= 2 and series["restore_ok"] and not series["stopped"], series
        targets = [t["target"] for t in timelines]
        assert all(a != b for a, b in itertools.pairwise(targets)), targets
        assert targets[0] == timelines[1]["replica"]  # the first master is the second failover's replica
        gaps = [t["injected_at_s"] for t in timelines]
        assert all(b - a >= 3 - 0.01 for a, b in itertools.pairwise(gaps)), gaps
        assert all(t["unavailable_s"] < 3 for t in timelines)  # each outage is its own, not the next one's
        assert {row["name"] for row in cell["drift"]} >= {"enqueue p99", "queue depth", "load processes RSS"}  # >= 10 s
        probes = (out / cell["dir"] / "repeat-1" / "probes.csv").read_text().splitlines()
        assert probes[0] == "t_s,depth,inflight,load_rss_bytes,load_processes,load_cpu_s" and len(probes) >= 6
    finally:
        subprocess.run([sys.executable, "-m", "bench", "down", "--state-dir", str(state)], cwd=ROOT, timeout=60)

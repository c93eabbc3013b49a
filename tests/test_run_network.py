"""`bench run` with a network round trip: the delay line started for each delayed cell in the run's private
namespace, the round trip measured through it and recorded, the load's latencies moved by it, and nothing
left behind (the host's firewall unchanged, no delayer, no namespace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import bench
from test_partitions import ROOT, host_firewall, net_namespaces

from bench import netns

PROBLEMS = netns.netns_problems()
if not PROBLEMS:
    from bench.delayline import delay_problems

    PROBLEMS = delay_problems()
needs_delay = pytest.mark.skipif(bool(PROBLEMS), reason=f"no delay line here: {', '.join(PROBLEMS)}")

# Namespace tests one at a time across workers (tests/conftest.py): another's live namespace is no leak of ours.
pytestmark = pytest.mark.usefixtures("netns_exclusive")

SCENARIO = """
name = "network"
[params]
duration = 6
warmup = 1
users = 4
drain_timeout = 15

[[cells]]
label = "standalone 1 ms"
rtt_ms = 1

[[cells]]
label = "WAIT 1"
backend = "cluster"
sync_replicas = 1

[[cells]]
label = "WAIT 1, nodes 2 ms apart"
backend = "cluster"
sync_replicas = 1
node_rtt_ms = 2
"""


@needs_delay
def test_bench_run_with_a_round_trip_measures_it_and_the_load_feels_it(tmp_path: Path) -> None:
    before, namespaces = host_firewall(), net_namespaces()
    path = tmp_path / "network.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "run"
    done = bench("run", str(path), "--out", str(out), "--no-charts", timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    cells = {c["id"]: c for c in summary["cells"]}
    one_ms, wait, far = cells["standalone 1 ms"], cells["WAIT 1"], cells["WAIT 1, nodes 2 ms apart"]
    assert all(c["complete"] for c in cells.values()), [c.get("incomplete_reason") for c in cells.values()]

    rtt = one_ms["network"]["measured"]["client_rtt"]
    assert 900 <= rtt["p50_us"] <= 1300, rtt
    assert one_ms["network"]["configured"]["rtt_ms"] == 1.0
    # Idle it is as asked; under load (measured too) CPU contention on a busy host may flag it, and says so.
    assert not [p for p in one_ms["network"]["problems"] if p.startswith("client RTT p50")]
    loaded = one_ms["network"]["measured"]["client_rtt_under_load"]
    assert loaded["p50_us"] >= 900 and loaded["at_s"] == 3.5, loaded
    assert one_ms["network"]["flagged"] == bool(one_ms["network"]["problems"])
    assert one_ms["ops"]["enqueue"]["p50_us"] >= 900  # the load went through the delay, not around it
    line = one_ms["network"]["delay_line"]
    assert line["packets"] > 1000 and line["cpu_s"] > 0

    assert wait["network"] is None  # no delay asked: loopback, nothing started
    node_rtt = far["network"]["measured"]["node_rtt"]
    assert 1600 <= node_rtt["p50_us"] <= 2600, node_rtt
    assert far["network"]["measured"]["client_rtt"]["p50_us"] < 500  # the clients stay on loopback
    # WAIT 1 waits for a replica's ack: one node round trip more per enqueue (2.2 ms more in a run here; the
    # bound is the measured round trip less 10 %, as the two cells' client-side costs differ with their rates)
    assert far["ops"]["enqueue"]["p50_us"] >= wait["ops"]["enqueue"]["p50_us"] + 0.9 * node_rtt["p50_us"]

    assert host_firewall() == before, "the host's firewall changed"
    assert net_namespaces() <= namespaces, "a network namespace was left behind"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "bench.delayline" not in ps, "a delayer was left running"
    assert str(out) not in ps, "a bench or Locust process was left running"


def test_demo_leaves_out_the_delayed_cells_where_no_delay_line_can_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli_run import run_scenario

    path = tmp_path / "two.toml"
    path.write_text(
        "[params]\nduration = 2\nwarmup = 0\nusers = 2\ndrain_timeout = 5\n"
        '[[cells]]\nlabel = "loopback"\n[[cells]]\nlabel = "far"\nrtt_ms = 1\n'
    )
    monkeypatch.setenv(netns.FORCE_UNAVAILABLE_ENV, "root (forced by the test)")
    out = tmp_path / "run"
    assert run_scenario(str(path), out, charts=False, optional_delay=True) == 0
    said = capsys.readouterr().out
    assert "leaving out 1 cell(s) with a network round trip ([far])" in said
    assert "root (forced by the test)" in said
    summary = json.loads((out / "summary.json").read_text())
    assert [c["id"] for c in summary["cells"]] == ["loopback"] and summary["complete"] is True


@pytest.mark.parametrize("forced", ["netns", "delay"])
def test_bench_run_refuses_a_delayed_cell_in_one_line_before_starting_anything(tmp_path: Path, forced: str) -> None:
    from bench import delayline

    path = tmp_path / "far.toml"
    path.write_text("[params]\nduration = 2\nrtt_ms = 1\n")
    env_key = netns.FORCE_UNAVAILABLE_ENV if forced == "netns" else delayline.FORCE_UNAVAILABLE_ENV
    env = {**os.environ, env_key: "`a forced lack` (the test)"}
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(path), "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert (
        "cells [default] add a network delay (rtt_ms, node_rtt_ms), which run in a private network namespace"
        in lines[0]
    )
    assert "lacks `a forced lack` (the test)" in lines[0]
    assert not out.exists()  # nothing started, nothing written

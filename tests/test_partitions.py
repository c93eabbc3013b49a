"""Network partitions in a private network namespace: the set-up, the firewall inside it (never the host's), each
partition kind's restore check, the refusal when the machine cannot, and `bench run` end to end: a cut-off master
loses exactly tasks it acknowledged after the partition began; WAIT 1 loses none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from conftest import bench

from bench import netns, partition_loss, scenario
from bench.acklog import AckLog
from bench.audit import AuditLog
from bench.children import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = netns.netns_problems()
needs_netns = pytest.mark.skipif(bool(PROBLEMS), reason=f"no private network namespace here: {', '.join(PROBLEMS)}")

# Namespace tests one at a time across workers (tests/conftest.py): another's live namespace is no leak of ours.
pytestmark = pytest.mark.usefixtures("netns_exclusive")


def host_firewall() -> str:
    """The host's rules, as iptables-save prints them (its timestamps are comments: dropped)."""
    tool = shutil.which("iptables-save")
    if tool is None:
        return ""
    done = subprocess.run([tool], capture_output=True, text=True, timeout=20)
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("#"))


def net_namespaces() -> set[str]:
    done = subprocess.run(["lsns", "-t", "net", "-n", "-o", "NS"], capture_output=True, text=True, timeout=20)
    return set(done.stdout.split())


def in_netns(*args: str, timeout: float = 120) -> dict:
    cmd, env = netns.unshare_command([sys.executable, str(ROOT / "tests" / "netns_checks.py"), *args])
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT, preexec_fn=die_with_parent
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_netns_problems_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = netns.netns_problems(euid=1000, which=lambda name: None, probe=False)
    assert problems == [
        "root (namespaces and firewall rules need it)",
        "`unshare` (util-linux)",
        "`ip` (iproute2)",
        "`iptables` (apt-get install -y iptables)",
    ]
    monkeypatch.setenv(netns.FORCE_UNAVAILABLE_ENV, "a forced problem")
    assert netns.netns_problems() == ["a forced problem"]
    # only cells with network faults need a namespace: every other cell runs as before
    assert netns.wanted(scenario.load("smoke").cells) == []
    assert netns.wanted(scenario.load("failover").cells) == []
    assert len(netns.wanted(scenario.load("partitions").cells)) == 4
    # and nothing here may ever touch a firewall: this process is in the host's namespace
    assert not netns.is_private() and not netns.inside()
    with pytest.raises(RuntimeError, match="only inside a private network namespace"):
        netns.Firewall()


def test_refuses_in_one_line_before_starting_anything(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, netns.FORCE_UNAVAILABLE_ENV: "`unshare` (util-linux)"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "partitions", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("bench: error: cells [no protection], [WAIT 1], [min-replicas-to-write 1] and 1 more")
    assert "lacks `unshare` (util-linux)" in lines[0]
    assert not out.exists() and "starting embedded" not in done.stdout


def test_loss_explained_from_the_clients_ack_log(tmp_path: Path) -> None:
    """Lost ids are placed in the 20 ms bucket in which their partition acknowledged them; the window counts
    the buckets it overlaps. Workers' ack logs merge (drain + merge) and survive the file."""
    t0 = 1_000_000.0
    worker, master = AckLog(), AckLog()
    ids = {n: f"w1-{n:x}" for n in range(1, 13)}
    worker.record_ids(lambda i: int(i.rsplit("-", 1)[1], 16) % 2, [ids[1], ids[2]], t0 + 0.5)  # a batch, 2 partitions
    for n in range(3, 9):  # inside the window (2.0 .. 3.0 s): partition 0 gets the odd ones' neighbours
        worker.record(n % 2, t0 + 2.0 + 0.1 * n, [ids[n]])
    worker.record(0, t0 + 4.0, [ids[10]])  # after the window
    master.merge(worker.drain())
    master.record(1, t0 + 2.5, ["custom-id"])  # an id of another form (a user's adapter)
    master.save(tmp_path / "acked.json.gz")
    acks = AckLog.load(tmp_path / "acked.json.gz")
    assert acks.partitions == [0, 1] and sum(acks.counts(0).values()) == 5 and sum(acks.counts(1).values()) == 5
    audit = AuditLog()
    audit.produce([*ids.values(), "custom-id"], "ok")
    audit.deliver(ids[1])
    for n in (3, 5, 7, 9, 11, 12):
        audit.deliver(ids[n])
    # lost: 2 (before, partition 0), 4, 6, 8 (in the window, partition 0), 10 (after, partition 0), custom-id (p1)
    loss = partition_loss.explain(audit, acks, [0], (t0 + 2.0, t0 + 3.0), t0)
    assert loss["lost"] == 6 and loss["acked_in_window"] == 3
    assert loss["lost_in_window"] == 3 and loss["lost_outside_window"] == 3 and loss["lost_not_in_ack_log"] == 0
    assert loss["window_start_s"] == 2.0 and loss["window_end_s"] == 3.0
    assert [row[1:] for row in loss["lost_by_time"]] == [[0, 1], [0, 1], [0, 1], [0, 1], [0, 1]]
    assert [round(row[0], 1) for row in loss["lost_by_time"]] == [0.5, 2.4, 2.6, 2.8, 4.0]
    both = partition_loss.explain(audit, acks, [0, 1], (t0 + 2.0, t0 + 3.0), t0)
    assert both["lost_in_window"] == 4 and both["acked_in_window"] == 7  # custom-id, acked by partition 1 at 2.5 s


def partition_run(base: Path) -> Path:
    """A partition-master cell on a 4 s load: partition 0 (cut off) acked 10 tasks at 0.51 s and 4 at 1.51 s,
    partition 1 (healthy) 6 at 0.51 s and 6 at 2.51 s; 2 of partition 0's were lost, acked at 1.5 s."""
    t0 = 1_800_000_000.0
    rep = base / "cells" / "01-cut" / "repeat-1"
    rep.mkdir(parents=True)
    acks = AckLog()
    acks.record(0, t0 + 0.51, [f"a-{n}" for n in range(10)])
    acks.record(0, t0 + 1.51, [f"b-{n}" for n in range(4)])
    acks.record(1, t0 + 0.51, [f"c-{n}" for n in range(6)])
    acks.record(1, t0 + 2.51, [f"d-{n}" for n in range(6)])
    acks.save(rep / "acked-ids.json.gz")
    started = datetime.fromtimestamp(t0).astimezone().isoformat()
    (rep / "summary.json").write_text(json.dumps({"started_at": started}))
    loss = {"partitions": [0], "window_start_s": 1.0, "window_end_s": 2.0, "lost_by_time": [[1.5, 0, 2]]}
    loss |= {"lost": 2, "acked_in_window": 4, "lost_in_window": 2, "lost_outside_window": 0}
    fault = {"kind": "partition-master", "target": "127.0.0.1:7000", "partitioned_at_s": 1.0}
    fault |= {"promoted_at_s": 2.2, "healed_at_s": 3.0, "loss": loss, "restore_ok": True}
    cell = {"id": "cut", "dir": "cells/01-cut", "params": {"duration": 4, "fault": "partition-master"}}
    cell |= {"ops": {}, "errors": {}, "audit": {"lost": 2}, "fault": fault}
    summary = {"kind": "scenario-run", "scenario": "cut", "complete": True, "cells": [cell]}
    (base / "summary.json").write_text(json.dumps(summary))
    return base


def test_partition_chart_plots_the_ack_log_rates_the_loss_and_the_windows(tmp_path: Path) -> None:
    from matplotlib.patches import StepPatch

    from bench.plots_partitions import partitions
    from bench.runs import load_run

    fig = partitions([load_run(partition_run(tmp_path / "run"))])
    assert fig is not None
    ax = fig.axes[0]
    steps = {str(p.get_label()): p.get_data() for p in ax.patches if isinstance(p, StepPatch)}
    edges = [round(0.2 * b, 9) for b in range(21)]  # 0.2 s bins over the 4 s load

    def rates(**per_bin: float) -> list[float]:
        return [per_bin.get(f"b{b}", 0.0) for b in range(20)]

    cut = steps.pop("partition 0 (its master cut off): acknowledged enqueues/s")
    healthy = steps.pop("partition 1 (healthy masters): acknowledged enqueues/s")
    ((_, lost),) = steps.items()  # the lost tasks' stairs, unlabelled
    for data, expected in ((cut, rates(b2=50, b7=20)), (healthy, rates(b2=30, b12=30)), (lost, rates(b7=10))):
        assert [round(e, 9) for e in data.edges] == edges
        assert [round(v, 9) for v in data.values] == expected  # per second: 10 acks in a 0.2 s bin = 50/s
    spans = sorted(
        (round(p.get_x(), 9), round(p.get_x() + p.get_width(), 9), bool(p.get_hatch()))
        for p in ax.patches
        if not isinstance(p, StepPatch)
    )
    assert spans == [(1.0, 2.0, True), (1.0, 3.0, False)]  # the loss window (hatched), the partition in force
    vertical = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert vertical == [1.0, 2.2, 3.0]
    assert [t.get_text() for t in ax.texts if getattr(t, "xy", None) is not None and t.xy[0] in vertical] == [
        "partitioned",
        "replica promoted",
        "healed",
    ]


@needs_netns
def test_namespace_setup_and_firewall_cut_exactly_the_chosen_links() -> None:
    before, namespaces = host_firewall(), net_namespaces()
    result = in_netns("firewall")
    assert result["private"] is True and result["inside"] is True
    assert result["before"] == {"2->3": True, "1->3": True}
    assert result["rules"] == [
        f"-A {netns.CHAIN} -s 127.0.0.2/32 -d 127.0.0.3/32 -j DROP",
        f"-A {netns.CHAIN} -s 127.0.0.3/32 -d 127.0.0.2/32 -j DROP",
    ]
    # exactly the pair is cut, both ways; every other address (the clients' 127.0.0.1 too) still gets through
    assert result["cut"] == {"2->3": False, "3->2": False, "1->3": True, "4->3": True, "1->2": True}
    assert result["problems_cut"] and "2 firewall rule(s) still in force" in result["problems_cut"][0]
    assert result["problems_healed"] == [] and result["healed"] == {"2->3": True}
    assert host_firewall() == before, "the host's firewall changed"
    assert net_namespaces() <= namespaces, "a network namespace was left behind"


@needs_netns
def test_each_partition_kind_restore_check_catches_rules_left_in_force(tmp_path: Path) -> None:
    before, namespaces = host_firewall(), net_namespaces()
    result = in_netns("restore", str(tmp_path / "state"))
    assert all(a.startswith("127.0.0.") and not a.startswith("127.0.0.1:") for a in result["addresses"])
    client, master = result["partition-client"], result["partition-master"]
    # a heal that left its rules: the check names them, and the node the clients still cannot reach
    assert any("firewall rule(s) still in force" in p for p in client["forgotten_problems"])
    assert any(client["target"] in p for p in client["forgotten_problems"])
    assert client["cut"] == [
        f"-A {netns.CHAIN} -s 127.0.0.1/32 -d {client['target'].split(':')[0]}/32 -j DROP",
        f"-A {netns.CHAIN} -s {client['target'].split(':')[0]}/32 -d 127.0.0.1/32 -j DROP",
    ]
    assert client["healed_problems"] == [] and client["promoted_at"] is None  # the cluster saw it all along
    assert any("firewall rule(s) still in force" in p for p in master["forgotten_problems"])
    assert len(master["cut"]) == 2 * 5  # the master against each of the 5 other nodes, both ways
    assert master["healed_problems"] == []
    # the replica took over; after the heal the old master is a replica that reloaded the new master's data
    assert master["promoted_at"] is not None and master["demoted_at"] is not None
    assert master["resynced_at"] >= master["demoted_at"]
    assert master["roles"][master["target"]] == "slave"
    assert host_firewall() == before
    assert net_namespaces() <= namespaces


SCENARIO = """
name = "partitions-test"
[params]
backend = "cluster"
duration = 10
warmup = 0
users = 6
node_timeout = 1000
fault = "partition-master"
fault_at = 2
fault_duration = 4.5
visibility_timeout = 2
drain_timeout = 20

[[cells]]
label = "no protection"

[[cells]]
label = "WAIT 1"
sync_replicas = 1

[[cells]]
label = "clients cut off"
fault = "partition-client"
fault_duration = 4
"""


def _lost_outside_acked_window(rep: Path, loss: dict) -> int:
    """From the files alone: lost ids (audit) not acknowledged by the faulted partitions inside the window."""
    audit, acks = AuditLog.load(rep / "audit-ids.json.gz"), AckLog.load(rep / "acked-ids.json.gz")
    start = datetime.fromisoformat(json.loads((rep / "summary.json").read_text())["started_at"]).timestamp()
    window = acks.acked(loss["partitions"], start + loss["window_start_s"], start + loss["window_end_s"])
    outside = 0
    for prefix, p in audit.prefixes.items():
        lost = p.ok - p.delivered
        outside += len(lost - window[prefix]) if prefix in window else len(lost)
    return outside


@needs_netns
def test_bench_run_partitions_lose_acknowledged_tasks_only_without_protection(tmp_path: Path) -> None:
    before, namespaces = host_firewall(), net_namespaces()
    path = tmp_path / "partitions.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "run"
    done = bench("run", str(path), "--out", str(out), "--no-charts", timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    cells = {c["id"]: c for c in summary["cells"]}
    bare, wait, clients = cells["no protection"], cells["WAIT 1"], cells["clients cut off"]

    fault, loss = bare["fault"], bare["fault"]["loss"]
    assert fault["restore_ok"] is True and fault["error"] is None
    # the cluster's own story, from the servers' logs, in the order it must happen
    assert all(fault["timeline_source"][k] == "server-log" for k in ("promoted", "isolated_down", "demoted"))
    assert fault["partitioned_at_s"] < fault["isolated_down_at_s"] < fault["healed_at_s"]
    assert fault["partitioned_at_s"] < fault["node_failed_at_s"] < fault["promoted_at_s"]
    assert fault["healed_at_s"] <= fault["demoted_at_s"] <= fault["resynced_at_s"]
    # acknowledged, then thrown away: every lost id was acknowledged by the cut-off partitions in the window
    assert bare["audit"]["lost"] > 0 and loss["lost"] == bare["audit"]["lost"]
    assert loss["lost_outside_window"] == 0 and loss["lost_in_window"] == loss["lost"]
    assert loss["lost"] <= loss["acked_in_window"]
    assert _lost_outside_acked_window(out / bare["dir"] / "repeat-1", loss) == 0

    assert wait["fault"]["restore_ok"] is True
    assert wait["audit"]["lost"] == 0 and wait["fault"]["loss"]["lost"] == 0
    assert wait["audit"]["rejected"] + wait["audit"]["ambiguous"] > 0

    cut = clients["fault"]
    assert cut["restore_ok"] is True and cut["promoted_at_s"] is None and cut["node_failed_at_s"] is None
    assert cut["unavailable_s"] >= 0.8 * cut["hold_s"]  # the clients' calls to that master hung while it lasted
    assert clients["audit"]["lost"] == 0

    assert host_firewall() == before, "the host's firewall changed"
    assert net_namespaces() <= namespaces, "a network namespace was left behind"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    addresses = [a for nodes in summary["embedded_servers"].values() for a in nodes]
    assert addresses and not [a for a in addresses if a in ps], "a server was left running"
    assert str(out) not in ps, "a bench or Locust process was left running"

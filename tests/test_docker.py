"""The seed's Docker Compose cluster, run for real through the unmodified
docker-compose.redis-cluster.yml: compose up (init exits 0) -> `bench status` shows 3 masters + 3
replicas -> a host TaskQueue over all three masters (MOVED followed) -> `bench run --docker` with
a kill cell and a pause cell (faults through docker kill / pause / unpause / start, restore
checked) -> `bench down --docker` leaves no container, volume or network.

The engine comes from tests/docker_harness.py (its own dockerd as root, or one already reachable);
where none can be had every test here is skipped with the one-line reason. The tests run in file
order on one compose cluster (module fixture); each checks its own step.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker_harness
import pytest
import redis
from docker_harness import COMPOSE_PATH, ROOT, Engine, Unavailable

from bench import docker
from bench.backend_kinds import raw_text
from bench.remote import compose_container
from taskqueue import TaskQueue

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = [f"redis-cluster-node-{i}" for i in range(1, 7)]
ALL = ["redis-cluster-net", *NODES, "redis-cluster-init"]
PROJECT_LABEL = "com.docker.compose.project"


def say(config: pytest.Config, line: str) -> None:
    """A line in pytest's own output, even while output is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        print(f"[docker] {line}", file=sys.stderr)
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line(f"[docker] {line}")


def run(*args: str, timeout: float = 120) -> str:
    return docker_harness.docker(*args, timeout=timeout)


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _taken_ports() -> list[int]:
    taken = []
    for port in range(7000, 7006):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    config = request.config
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            eng = stack.enter_context(docker_harness.engine(lambda line: say(config, line)))
        except Unavailable as exc:
            say(config, f"SKIPPED: no Docker engine: {exc}")
            pytest.skip(f"no Docker engine: {exc}")
        taken = _taken_ports()
        if taken:
            pytest.skip(f"127.0.0.1 ports {taken} are in use (a `bench up cluster` still running?)")
        if not eng.own and run("ps", "-aq", "--filter", "name=^redis-cluster-"):
            pytest.skip("containers named redis-cluster-* already exist on this engine; not touching them")
        label = docker.compose_label()
        say(config, f"{eng.describe()}; compose: {label} ({time.monotonic() - started:.1f}s)")
        gone = "own daemon stopped, its folder deleted" if eng.own else "engine kept (not ours)"
        stack.callback(lambda: say(config, gone))
        yield eng


@pytest.fixture(scope="module")
def cluster(engine: Engine, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """`compose up -d` of the real file; init must exit 0; torn down again whatever happens."""
    started = time.monotonic()
    try:
        docker.compose("up", "-d")
        code = run("wait", "redis-cluster-init", timeout=180)
        docker.wait_cluster_ok(timeout=60)
        project = run("inspect", "--format", f'{{{{index .Config.Labels "{PROJECT_LABEL}"}}}}', "redis-cluster-net")
        say(request.config, f"compose up: init exited {code}, cluster ok in {time.monotonic() - started:.1f}s")
        yield {"init_exit": code, "project": project}
    finally:
        with contextlib.suppress(Exception):
            docker.compose("down", "-v")


def state(name: str) -> str:
    return run("inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", name)


def test_up_runs_the_unmodified_file_on_loopback_only(cluster: dict[str, Any], engine: Engine) -> None:
    assert cluster["init_exit"] == "0", run("logs", "redis-cluster-init")
    assert run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "redis-cluster-init") == "exited 0"
    for node in NODES:
        assert state(node) == "running healthy", node
    assert run("inspect", "--format", "{{.Config.Image}}", "redis-cluster-node-1") == engine.image
    # one network namespace, the holder's; its only network is the project's own bridge (this daemon's)
    holder_id = run("inspect", "--format", "{{.Id}}", "redis-cluster-net")
    for node in [*NODES, "redis-cluster-init"]:
        assert run("inspect", "--format", "{{.HostConfig.NetworkMode}}", node) == f"container:{holder_id}"
    networks = json.loads(run("inspect", "--format", "{{json .NetworkSettings.Networks}}", "redis-cluster-net"))
    assert list(networks) == [f"{cluster['project']}_default"]
    labels = run("network", "inspect", "--format", f'{{{{index .Labels "{PROJECT_LABEL}"}}}}', *networks)
    assert labels == cluster["project"]
    published = run("port", "redis-cluster-net").splitlines()
    assert sorted(published) == [f"{p}/tcp -> 127.0.0.1:{p}" for p in range(7000, 7006)]
    # every node announces 127.0.0.1, so a host client's MOVED lands somewhere it can reach
    with redis.Redis(port=7000) as r:
        text = raw_text(r, "CLUSTER NODES")
    assert sorted(re.findall(r" (\S+):(\d+)@", text)) == [("127.0.0.1", str(p)) for p in range(7000, 7006)]


def test_bench_status_shows_three_masters_and_three_replicas(cluster: dict[str, Any], tmp_path: Path) -> None:
    done = bench("status", "--cluster-nodes", ",".join(docker.COMPOSE_NODES), "--state-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    roles = dict(re.findall(r"(127\.0\.0\.1:700\d)\s*[│|]\s*\S+\s*[│|]\s*(master|slave)", done.stdout))
    assert sorted(roles) == docker.COMPOSE_NODES, done.stdout
    assert sorted(roles.values()) == ["master"] * 3 + ["slave"] * 3, done.stdout
    assert docker.cluster_shape() == (3, 3)


def test_taskqueue_round_trip_over_all_three_masters(cluster: dict[str, Any]) -> None:
    with redis.Redis(port=7000) as r:
        owned_elsewhere = next(f"k{i}" for i in range(1000) if _moved(r, f"k{i}"))
        moved = _moved(r, owned_elsewhere)
    assert moved is not None and moved.startswith("127.0.0.1:"), moved  # reachable from the host
    with TaskQueue(cluster_nodes="127.0.0.1:7000", name="docker-rt", operation_timeout=20) as q:
        masters = q.partition_masters()
        assert len(set(masters.values())) == 3, masters  # default partitions: one on every master
        sent = {q.enqueue(f"task-{i}".encode()) for i in range(3 * q.partitions * 4)}
        assert q.depth() == len(sent)
        for address in set(masters.values()):  # each master really holds tasks
            host, port = address.rsplit(":", 1)
            with redis.Redis(host=host, port=int(port)) as node:
                assert node.dbsize() > 0, address
        got: set[str] = set()
        while len(got) < len(sent):
            task = q.dequeue(timeout=2)
            assert task is not None, f"{len(sent) - len(got)} tasks missing"
            assert q.ack(task)
            got.add(task.id)
        assert got == sent and q.depth() == 0 and q.inflight() == 0


def _moved(r: redis.Redis, key: str) -> str | None:
    """Where node 7000 redirects a key it does not own (None: it owns it)."""
    try:
        r.get(key)
    except redis.exceptions.MovedError as exc:
        return f"{exc.host}:{exc.port}"
    return None


SCENARIO = """\
name = "docker-faults"
description = "one kill and one pause of a master, through the containers"
[params]
backend = "cluster"
users = 4
warmup = 0
fault_at = 2
visibility_timeout = 2
drain_timeout = 30
[[cells]]
fault = "kill"
duration = 12
[[cells]]
fault = "pause"
duration = 13
"""


def test_bench_run_kill_and_pause_through_the_containers(
    cluster: dict[str, Any], engine: Engine, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scenario = tmp_path / "docker-faults.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    # the engine keeps only its last 256 events (the healthchecks make ~18 a second): watch live
    watch = ["docker", "events", "--filter", "type=container", "--format", "{{.Action}} {{.Actor.Attributes.name}}"]
    watch += [f"--filter=event={e}" for e in ("kill", "start", "pause", "unpause")]
    watcher = subprocess.Popen(watch, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started = time.monotonic()
    try:
        done = bench("run", str(scenario), "--docker", "--no-charts", "--out", str(out), timeout=270)
    finally:
        time.sleep(0.5)
        watcher.terminate()
        events = watcher.communicate(timeout=10)[0].splitlines()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    say(request.config, f"bench run --docker: 2 cells in {time.monotonic() - started:.1f}s")
    # the run records that its servers were containers: image, compose file, which Compose ran
    assert summary["backend_source"] == "docker"
    recorded = summary["containers"]
    assert recorded["servers"] == "containers" and recorded["image"] == engine.image
    assert recorded["compose_file"] == str(COMPOSE_PATH)
    assert recorded["compose"] == docker.compose_label()
    assert set(ALL) <= set(recorded["containers"])
    say(request.config, f"run recorded compose {recorded['compose']!r}, image {recorded['image']}")
    assert summary["complete"], json.dumps(summary, indent=1)[-3000:]
    cells = {c["params"]["fault"]: c for c in summary["cells"]}
    assert sorted(cells) == ["kill", "pause"]
    for kind, cell in cells.items():
        fault = cell["fault"]
        assert fault["kind"] == kind and fault["error"] is None, fault
        assert fault["restore_ok"] is True, fault["restore_problems"]
        assert fault["injected_at_s"] is not None and fault["target"].startswith("127.0.0.1:700")
        assert "lost" in cell["audit"], cell["audit"]  # counted, whatever it is
        promoted = fault["promoted_at_s"]
        say(request.config, f"{kind}: target {fault['target']}, promoted at {promoted}s, audit {cell['audit']}")
    assert cells["kill"]["fault"]["restarted_at_s"] is not None
    assert all(c["fault"]["promoted_at_s"] is not None for c in cells.values())  # a replica took over
    assert cells["pause"]["fault"]["resumed_at_s"] is not None
    # the faults really went through the engine
    killed = compose_container(int(cells["kill"]["fault"]["target"].rsplit(":", 1)[1]))
    paused = compose_container(int(cells["pause"]["fault"]["target"].rsplit(":", 1)[1]))
    for event in (f"kill {killed}", f"start {killed}", f"pause {paused}", f"unpause {paused}"):
        assert event in events, events
    # and the cluster is whole again: every node running, 3 masters + 3 replicas
    for node in NODES:
        assert state(node).startswith("running"), node
    docker.wait_cluster_ok(timeout=30)
    assert docker.cluster_shape() == (3, 3)


def test_bench_down_docker_leaves_nothing(cluster: dict[str, Any], engine: Engine, tmp_path: Path) -> None:
    project = cluster["project"]
    done = bench("down", "--docker", "--state-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "nothing was running" not in done.stdout, done.stdout
    assert f"compose cluster ({len(ALL)} containers" in done.stdout, done.stdout
    label = f"label={PROJECT_LABEL}={project}"
    assert run("ps", "-aq", "--filter", label) == ""
    assert run("volume", "ls", "-q", "--filter", label) == ""
    assert run("network", "ls", "-q", "--filter", label) == ""
    assert run("ps", "-aq", "--filter", "name=^redis-cluster-") == ""
    if engine.own:  # nothing at all left on the harness's own daemon
        assert run("ps", "-aq") == "" and run("volume", "ls", "-q") == ""
        assert run("network", "ls", "--format", "{{.Name}}").split() == ["host", "none"]
    again = bench("down", "--docker", "--state-dir", str(tmp_path))
    assert again.returncode == 0 and "nothing was running" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_harness_removes_its_daemon_on_interrupt(sig: signal.Signals) -> None:
    """`.ci/docker-harness` interrupted mid-command: no process of its daemon and no folder left."""
    if os.environ.get("TQB_DOCKER") == "off":
        pytest.skip("TQB_DOCKER=off")
    try:
        docker_harness._own_possible()
    except Unavailable as exc:
        pytest.skip(str(exc))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "docker_harness.py"), "sleep", "300"],
        cwd=ROOT,
        env={**os.environ, "TQB_DOCKER": "own"},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "running: sleep 300" in line:
                break
        found = re.search(r"own dockerd \S+ in (\S+);", "".join(lines))
        assert found, "".join(lines)
        root = Path(found.group(1))
        assert root.is_dir() and docker_harness.daemon_processes(root, None)
        proc.send_signal(sig)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(lines) + rest
    assert not root.exists(), rest
    assert docker_harness.daemon_processes(root, None) == [], rest
    assert "had to force" not in rest, rest  # stopped in order, not by SIGKILL

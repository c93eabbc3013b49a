"""Static checks of docker-compose.redis-cluster.yml and of bench/docker.py's Compose handling,
without a Docker engine (the real runs are in test_docker.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.redis-cluster.yml"
PORTS = list(range(7000, 7006))


@pytest.fixture(scope="module")
def services() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(COMPOSE.read_text())["services"]


def arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_seed_container_names(services: dict) -> None:
    names = {s.get("container_name") for s in services.values()}
    assert {f"redis-cluster-node-{i}" for i in range(1, 7)} | {"redis-cluster-init"} <= names


def test_ports_published_on_loopback_only(services: dict) -> None:
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert sorted(published) == [f"127.0.0.1:{p}:{p}" for p in PORTS]


def test_nodes_announce_an_address_the_host_can_reach(services: dict) -> None:
    holder = next(name for name, s in services.items() if s.get("ports"))
    for i, port in enumerate(PORTS, start=1):
        node = services[f"redis-cluster-node-{i}"]
        cmd = node["command"]
        assert node["network_mode"] == f"service:{holder}"  # shared namespace: 127.0.0.1 is common
        assert arg(cmd, "--port") == str(port)
        assert arg(cmd, "--cluster-enabled") == "yes"
        assert arg(cmd, "--cluster-announce-ip") == "127.0.0.1"
        assert arg(cmd, "--cluster-announce-port") == str(port)
        assert arg(cmd, "--cluster-announce-bus-port") == str(port + 10000)
        assert arg(cmd, "--save") == "" and arg(cmd, "--appendonly") == "no"


def test_init_creates_three_masters_three_replicas(services: dict) -> None:
    init = services["redis-cluster-init"]
    text = " ".join(init["command"])
    assert "--cluster create" in text and "--cluster-replicas 1" in text and "--cluster-yes" in text
    assert all(f"127.0.0.1:{p}" in text for p in PORTS)
    assert set(init["depends_on"]) == {f"redis-cluster-node-{i}" for i in range(1, 7)}
    assert init["network_mode"] == services["redis-cluster-node-1"]["network_mode"]


# -- bench/docker.py with stand-in `docker` / `docker-compose` programs (no engine needed) --------

FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >> "$FAKE_LOG"
case "$1" in
  info) exit 0 ;;
  version) echo 20.10.24 ;;
  compose)
    [ -n "$FAKE_V2" ] || exit 1
    shift
    case "$*" in
      "version --short") echo v2.27.0 ;;
      version) echo "Docker Compose version v2.27.0" ;;
      *" ps -a -q") [ -n "$FAKE_EMPTY" ] || printf 'id1\\nid2\\n' ;;
    esac ;;
  inspect)
    case "$3" in
      *Config.Image*) for n in node-1 net; do echo "/redis-cluster-$n redis:7.2-alpine sha256:abc"; done ;;
      *Comment*) echo "tqb stand-in" ;;
      *) echo /redis-cluster-node-1; echo /redis-cluster-net ;;
    esac ;;
esac
"""
FAKE_COMPOSE_V1 = """#!/bin/sh
echo "docker-compose $*" >> "$FAKE_LOG"
case "$*" in
  "version --short") echo 1.29.2 ;;
  *" ps -a -q") [ -n "$FAKE_EMPTY" ] || printf 'id1\\nid2\\n' ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker` and `docker-compose` first on PATH: they answer like an engine and log their calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE_V1)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.delenv("FAKE_V2", raising=False)
    monkeypatch.delenv("FAKE_EMPTY", raising=False)
    return log


@pytest.mark.parametrize("v2", [True, False], ids=["docker-compose-v2", "docker-compose-v1"])
def test_either_compose_runs_and_is_named(fake_docker: Path, monkeypatch: pytest.MonkeyPatch, v2: bool) -> None:
    from bench import docker

    if v2:
        monkeypatch.setenv("FAKE_V2", "1")
    assert docker.compose_command() == (["docker", "compose"] if v2 else ["docker-compose"])
    label = "docker compose 2.27.0 (v2)" if v2 else "docker-compose 1.29.2 (v1)"
    assert docker.compose_label() == label
    described = docker.describe()
    assert described["servers"] == "containers" and described["compose"] == label
    assert described["compose_file"] == str(COMPOSE) and described["image"] == "redis:7.2-alpine"
    assert described["containers"] == ["redis-cluster-net", "redis-cluster-node-1"]
    assert described["image_comment"] == "tqb stand-in" and described["engine"] == "20.10.24"
    assert docker.down() == ["redis-cluster-net", "redis-cluster-node-1"]
    compose = "docker compose" if v2 else "docker-compose"
    assert f"{compose} -f {COMPOSE} down -v" in fake_docker.read_text().splitlines()


def test_bench_down_docker_says_what_it_removed(fake_docker: Path, tmp_path: Path) -> None:
    def down(**env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "bench", "down", "--docker", "--state-dir", str(tmp_path / "state")],
            cwd=COMPOSE.parent,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    said = down()
    assert "compose cluster (2 containers" in said and "nothing was running" not in said, said
    assert "nothing was running" in down(FAKE_EMPTY="1")
    assert f"docker-compose -f {COMPOSE} down -v" in fake_docker.read_text()

"""Static checks of docker-compose.redis-cluster.yml (no Docker engine on CI machines)."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.redis-cluster.yml"
PORTS = list(range(7000, 7006))


@pytest.fixture(scope="module")
def services() -> dict:
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

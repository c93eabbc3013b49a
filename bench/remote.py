"""Cluster nodes this suite did not start as processes: an external cluster (only graceful
``CLUSTER FAILOVER`` kinds, with --allow-failover) or the docker-compose cluster (every fault kind,
through the container: ``docker kill`` / ``pause`` / ``unpause`` / ``start``).

``RemoteNode`` is a :class:`bench.servers.ServerNode`, like an embedded ``RedisServer``: the fault injector,
the restore check and the INFO sampler drive all three the same way. Loopback addresses only.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

import redis

from .backend_kinds import ClusterBackend, raw_text
from .errors import UsageError
from .servers import ServerNode
from .topology import parse_cluster_nodes

COMPOSE_BASE_PORT = 7000


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def compose_container(port: int) -> str:
    """The compose file's naming: 127.0.0.1:7000 is redis-cluster-node-1, … 7005 is node-6."""
    return f"redis-cluster-node-{port - COMPOSE_BASE_PORT + 1}"


def docker_command(action: str, container: str) -> list[str]:
    """The docker CLI call for a fault action on a compose node."""
    verbs = {"kill": ["kill", "--signal", "SIGKILL"], "stop": ["pause"], "cont": ["unpause"], "start": ["start"]}
    return ["docker", *verbs[action], container]


@dataclass
class RemoteNode:
    host: str
    port: int
    docker: bool = False  # faults through the compose container
    pid: int | None = None  # not ours: unknown

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def is_alive(self) -> bool:
        try:
            with self.client(0.5) as r:
                return bool(r.ping())
        except redis.RedisError:
            return False

    def _docker(self, action: str) -> None:
        if not self.docker:
            raise UsageError(
                f"{action} of {self.address}: only graceful failovers touch servers this suite did not start"
            )
        done = subprocess.run(
            docker_command(action, compose_container(self.port)), capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"docker {action} {compose_container(self.port)} failed: {done.stderr.strip()}")

    def kill(self) -> None:
        self._docker("kill")

    def signal(self, sig: signal.Signals) -> None:
        self._docker("stop" if sig == signal.SIGSTOP else "cont" if sig == signal.SIGCONT else "kill")

    def start(self, wait: float | None = None) -> None:
        self._docker("start")
        deadline = time.monotonic() + (30.0 if wait is None else wait)
        while time.monotonic() < deadline and not self.is_alive():
            time.sleep(0.2)

    def stop(self, timeout: float = 5.0) -> None:
        """Never stops a server it did not start."""


def remote_cluster(nodes: list[tuple[str, int]], docker: bool = False) -> ClusterBackend:
    """A ClusterBackend over nodes someone else runs: topology, masters and node timeout read live."""
    bad = [f"{h}:{p}" for h, p in nodes if not is_loopback(h)]
    if bad:
        raise UsageError(f"faults only target servers on this machine; not loopback: {', '.join(bad)}")
    seed = RemoteNode(*nodes[0], docker=docker)
    try:
        with seed.client() as r:
            known = parse_cluster_nodes(raw_text(r, "CLUSTER NODES"))
            timeout_ms = int(r.config_get("cluster-node-timeout").get("cluster-node-timeout", 15000))
    except redis.RedisError as exc:
        raise UsageError(f"cannot read the cluster at {seed.address}: {exc}") from None
    servers: list[ServerNode] = []
    for node in known:
        host, port = node.address.rsplit(":", 1)
        servers.append(RemoteNode(host, int(port), docker=docker))
    masters = [n for n in known if n.is_master and n.slots]
    replicas = max((sum(1 for n in known if n.master_id == m.id) for m in masters), default=0)
    return ClusterBackend(servers, len(masters), replicas, timeout_ms)

"""The backend kinds a run drives through servers it reaches node by node: a standalone server and a Redis
Cluster (embedded ``RedisServer`` processes, or ``RemoteNode`` s of a cluster this suite did not start, see
bench.remote). What each offers: its target, CONFIG SET, FLUSHALL, preparation for a cell, stop; for the
cluster also its topology and health. Starting them is bench.backends; the external kind is bench.external.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import redis

from . import children
from .errors import UsageError
from .ports import LOOPBACK
from .servers import RedisServer, ServerNode
from .target import Target
from .topology import ClusterNodeInfo, parse_cluster_nodes

HASH_SLOTS = 16384


@dataclass
class StandaloneBackend:
    server: RedisServer
    kind: str = "standalone"

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.server.port}/0"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.server]

    @property
    def target(self) -> Target:
        return Target(redis_url=self.url)

    def configure(self, config: dict[str, str]) -> None:
        with self.server.client() as r:
            for key, value in config.items():
                r.config_set(key, value)

    def flush(self) -> None:
        with self.server.client() as r:
            r.flushall()

    def prepare(self, config: dict[str, str]) -> None:
        """Flushed, ``config`` set, counters reset: ready for a cell (see :func:`prepare_servers`)."""
        prepare_servers(self, config)

    def stop(self) -> None:
        self.server.stop()


@dataclass
class ClusterBackend:
    servers: Sequence[ServerNode]  # embedded RedisServers, or RemoteNodes (bench.remote)
    masters: int
    replicas: int
    node_timeout_ms: int
    kind: str = "cluster"
    cli_bin: str = ""

    @property
    def nodes(self) -> list[str]:
        return [s.address for s in self.servers]

    @property
    def target(self) -> Target:
        return Target(cluster_nodes=",".join(self.nodes))

    def server_at(self, address: str) -> ServerNode:
        for server in self.servers:
            if server.address == address:
                return server
        raise KeyError(address)

    def create(self, timeout: float = 60.0) -> None:
        cmd = [
            self.cli_bin,
            "--cluster",
            "create",
            *self.nodes,
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        # redis-cli dies with us too: an orphan would keep talking to the nodes until its timeout.
        done = children.run(cmd, timeout=timeout)
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise UsageError(f"cluster create failed: {(done.stdout + done.stderr).strip().splitlines()[-3:]}")
        self.wait_healthy(timeout)

    def topology(self, via: Iterable[ServerNode] | None = None) -> list[ClusterNodeInfo]:
        """CLUSTER NODES from the first live node that answers."""
        last: Exception | None = None
        for server in via or self.servers:
            if not server.is_alive():
                continue
            try:
                with server.client(1.0) as r:
                    return parse_cluster_nodes(raw_text(r, "CLUSTER NODES"))
            except redis.RedisError as exc:
                last = exc
        raise RuntimeError(f"no cluster node answered CLUSTER NODES: {last}")

    def health_problems(self) -> list[str]:
        """Empty when every node is up, agrees cluster_state:ok, 16384 slots, the expected masters
        each with their replicas, and every replica's link to its master is up."""
        problems = []
        for server in self.servers:
            if not server.is_alive():
                problems.append(f"{server.address} is not running")
                continue
            try:
                with server.client(1.0) as r:
                    info = cluster_info(r)
                    if info.get("cluster_state") != "ok":
                        problems.append(f"{server.address} cluster_state={info.get('cluster_state')}")
                    if int(info.get("cluster_slots_ok", 0)) != HASH_SLOTS:
                        problems.append(f"{server.address} slots_ok={info.get('cluster_slots_ok')}")
                    if int(info.get("cluster_known_nodes", 0)) != len(self.servers):
                        problems.append(f"{server.address} knows {info.get('cluster_known_nodes')} nodes")
                    repl = r.info("replication")
                    if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                        problems.append(f"{server.address} replica link {repl.get('master_link_status')}")
            except redis.RedisError as exc:
                problems.append(f"{server.address}: {exc}")
        if not problems:
            problems += self._views_disagree()
        if not problems:
            nodes = self.topology()
            masters = [n for n in nodes if n.is_master and n.slots]
            if len(masters) != self.masters:
                problems.append(f"{len(masters)} masters with slots, expected {self.masters}")
            for m in masters:
                count = sum(1 for n in nodes if n.master_id == m.id and not n.failed)
                if count != self.replicas:
                    problems.append(f"master {m.address} has {count} replicas, expected {self.replicas}")
        return problems

    def wait_healthy(self, timeout: float = 60.0) -> None:
        problems = poll_health(self.health_problems, timeout)
        if problems:
            raise UsageError(f"cluster not healthy after {timeout:.0f}s: {'; '.join(problems[:4])}")

    def _views_disagree(self) -> list[str]:
        """Every node's CLUSTER NODES must name the same masters for the same slots: right after a
        failover a node can still show the old owner (gossip lags), and a check against that one view
        would call a cluster restored that half the nodes still see as before."""
        views = {}
        for server in self.servers:
            try:
                nodes = self.topology(via=[server])
            except RuntimeError as exc:
                return [f"{server.address}: {exc}"]
            views[server.address] = frozenset((n.address, n.slots) for n in nodes if n.is_master and n.slots)
        if len(set(views.values())) > 1:
            return ["nodes disagree on which masters own the slots (gossip still spreading)"]
        return []

    def self_views(self) -> list[ClusterNodeInfo]:
        """Each live node as it describes itself (its CLUSTER NODES "myself" line): after a failover the
        promoted replica and the demoted master know their new roles before gossip tells the others."""
        out = []
        for server in self.servers:
            if not server.is_alive():
                continue
            try:
                out.append(next(n for n in self.topology(via=[server]) if "myself" in n.flags))
            except (RuntimeError, StopIteration):
                continue
        return out

    def master_of_slot(self, slot: int) -> ClusterNodeInfo:
        """The live master that owns ``slot`` by its own account, not by one node's possibly stale view."""
        for me in self.self_views():
            if me.is_master and not me.failed and me.owns(slot):
                return me
        raise RuntimeError(f"no live master owns slot {slot}")

    def replicas_of(self, master_id: str) -> list[ClusterNodeInfo]:
        """The nodes that say they replicate ``master_id``."""
        return [me for me in self.self_views() if me.master_id == master_id and not me.failed]

    def configure(self, config: dict[str, str]) -> None:
        for server in self.servers:
            with server.client() as r:
                for key, value in config.items():
                    r.config_set(key, value)

    def flush(self) -> None:
        for node in self.topology():
            if node.is_master and not node.failed:
                with self.server_at(node.address).client(5.0) as r:
                    r.flushall()

    def prepare(self, config: dict[str, str]) -> None:
        """Healthy, flushed, ``config`` set, counters reset: ready for a cell (see :func:`prepare_servers`)."""
        self.wait_healthy(60)
        prepare_servers(self, config)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def poll_health(problems: Callable[[], list[str]], timeout: float, interval: float = 0.2) -> list[str]:
    """The one way to wait for a cluster's health: call ``problems`` (e.g. ``ClusterBackend.health_problems``)
    until it finds none, then []; after ``timeout`` s, the last problems it found."""
    deadline = time.monotonic() + timeout
    found = ["not checked"]
    while time.monotonic() < deadline:
        found = problems()
        if not found:
            return []
        time.sleep(interval)
    return found


def raw_text(r: redis.Redis, command: str) -> str:
    """A command's reply as the server sent it (redis-py would parse CLUSTER NODES/INFO)."""
    r.set_response_callback(command, lambda response, **_: response)
    raw = r.execute_command(command)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def cluster_info(r: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO as a dict (cluster_state, cluster_slots_ok, …)."""
    text = raw_text(r, "CLUSTER INFO")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


Backend = StandaloneBackend | ClusterBackend


def prepare_servers(backend: Backend, config: dict[str, str]) -> None:
    """Flush, then ``config`` (maxmemory 0 first: the flush needs room), then CONFIG RESETSTAT on every
    live node, so the cell's server counters are its own."""
    backend.configure({"maxmemory": "0"})
    backend.flush()
    backend.configure(config)
    for server in backend.servers:
        if server.is_alive():
            with server.client() as r:
                r.config_resetstat()

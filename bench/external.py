"""The external backend kind: a user's own server or cluster (or the docker-compose cluster), which this
suite reaches only as a client. Prepared for a cell like the embedded kinds (flushed, configured, counters
reset), but never touched unless the user allowed it (``--allow-flush``), and never reconfigured beyond
what the cell asks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from .backend_kinds import raw_text
from .servers import ServerNode
from .target import Target
from .topology import parse_cluster_nodes


@dataclass
class External:
    """A user's own server(s). Never flushed or reconfigured unless ``allow_flush``."""

    redis_url: str = ""
    cluster_nodes: str = ""
    allow_flush: bool = False
    allow_failover: bool = False  # graceful CLUSTER FAILOVER kinds on an external cluster
    docker: bool = False  # the docker-compose cluster: every fault kind, through the containers
    containers: dict[str, Any] | None = None  # --docker: image, compose file, Compose (docker.describe)

    @property
    def kind(self) -> str:
        return "cluster" if self.cluster_nodes else "standalone"

    @property
    def target(self) -> Target:
        return Target(self.redis_url, self.cluster_nodes)

    @property
    def servers(self) -> list[ServerNode]:
        """Empty: this suite reaches no node of it one by one (so no INFO sampler runs, no per-node reset)."""
        return []

    def connect(self) -> Any:
        """A client of the whole backend: a RedisCluster (through its first seed node) or a Redis."""
        if self.cluster_nodes:
            host, port = self.target.nodes()[0]
            return RedisCluster(host=host, port=port)
        return redis.Redis.from_url(self.redis_url)

    def prepare(self, config: dict[str, str]) -> None:
        """Flushed (every primary), ``config`` set and counters reset (every node): through one client."""
        client = self.connect()
        if self.cluster_nodes:
            client.flushall(target_nodes=RedisCluster.PRIMARIES)
            for key, value in config.items():
                client.config_set(key, value, target_nodes=RedisCluster.ALL_NODES)
            client.config_resetstat(target_nodes=RedisCluster.ALL_NODES)
        else:
            client.flushall()
            for key, value in config.items():
                client.config_set(key, value)
            client.config_resetstat()
        client.close()

    def node_clients(self) -> dict[str, redis.Redis]:
        """A client per server node (replicas included), by address: for INFO reads only."""
        if self.redis_url:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=1.0)
            kwargs = client.connection_pool.connection_kwargs
            return {f"{kwargs.get('host')}:{kwargs.get('port')}": client}
        clients: dict[str, redis.Redis] = {}
        for host, port in self.target.nodes():
            try:
                with redis.Redis(host=host, port=port, socket_timeout=1.0) as seed:
                    known = parse_cluster_nodes(raw_text(seed, "CLUSTER NODES"))
            except redis.RedisError:
                continue
            for node in known:
                if "noaddr" not in node.flags:
                    h, _, p = node.address.rpartition(":")
                    clients[node.address] = redis.Redis(host=h, port=int(p), socket_timeout=1.0)
            break
        return clients

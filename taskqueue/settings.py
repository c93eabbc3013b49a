"""Queue settings as a dataclass, and parsing of the seed's node formats and env vars. Pure."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_POOL_SIZE = 50  # the seed's max_connections_per_node


@dataclass(frozen=True)
class QueueSettings:
    name: str = "default"
    partitions: int | None = None  # None: 1 standalone; cluster: enough to cover every master
    pool_size: int = DEFAULT_POOL_SIZE  # per node in a cluster
    pool_blocking: bool = False
    pool_timeout: float = 5.0  # seconds a blocking pool waits for a free connection
    visibility_timeout: float = 30.0  # seconds a dequeued, un-acked task stays leased
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 2.0
    retries: int = 3  # client retries on connection errors; safe because enqueue is idempotent
    sync_replicas: int = 0  # enqueue waits (WAIT) until this many replicas have the task
    sync_timeout_ms: int = 200
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not self.name or "{" in self.name or "}" in self.name:
            problems.append(f"name {self.name!r} must be non-empty without braces")
        if self.partitions is not None and not 1 <= self.partitions <= 1024:
            problems.append(f"partitions={self.partitions} must be 1..1024")
        if self.pool_size < 1:
            problems.append(f"pool_size={self.pool_size} must be >= 1")
        if self.visibility_timeout <= 0:
            problems.append(f"visibility_timeout={self.visibility_timeout} must be > 0")
        if self.socket_timeout <= 0:
            problems.append(f"socket_timeout={self.socket_timeout} must be > 0")
        if self.sync_replicas < 0 or self.sync_timeout_ms < 0:
            problems.append("sync_replicas and sync_timeout_ms must be >= 0")
        if self.retries < 0:
            problems.append(f"retries={self.retries} must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))


def parse_node(node: Any) -> tuple[str, int]:
    """One cluster node as ``(host, port)`` from ``"host:port"``, ``{"host":…, "port":…}``,
    a ``(host, port)`` pair, or anything with ``.host``/``.port`` (redis-py ``ClusterNode``)."""
    if isinstance(node, str):
        host, sep, port = node.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bad cluster node {node!r}: expected host:port, e.g. 127.0.0.1:7000")
        return host, _port(int(port), node)
    if isinstance(node, Mapping):
        if "host" not in node or "port" not in node:
            raise ValueError(f"bad cluster node {dict(node)!r}: expected {{'host': …, 'port': …}}")
        return str(node["host"]), _port(int(node["port"]), node)
    if isinstance(node, tuple | list) and len(node) == 2:
        return str(node[0]), _port(int(node[1]), node)
    if hasattr(node, "host") and hasattr(node, "port"):
        return str(node.host), _port(int(node.port), node)
    raise ValueError(f"bad cluster node {node!r}: use 'host:port', {{'host','port'}} or ClusterNode")


def _port(port: int, original: Any) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"bad cluster node {original!r}: port must be 1..65535")
    return port


def parse_nodes(nodes: str | Iterable[Any]) -> list[tuple[str, int]]:
    """Cluster nodes from the seed's ``REDIS_CLUSTER_NODES`` string or a list of node forms."""
    items = [n for n in nodes.split(",") if n.strip()] if isinstance(nodes, str) else list(nodes)
    if not items:
        raise ValueError("no cluster nodes given: expected host:port[,host:port…]")
    return [parse_node(n) for n in items]


SEED_CLUSTER_NODES = "localhost:7000,localhost:7001,localhost:7002"


def backend_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, list[tuple[str, int]] | None]:
    """``(redis_url, cluster_nodes)`` from the seed's env vars, exactly one of them set.

    ``REDIS_CLUSTER_ENABLED=true`` selects the cluster (``REDIS_CLUSTER_NODES``, default the
    seed's localhost:7000-7002); otherwise ``REDIS_URL`` (default ``redis://localhost:6379/0``).
    """
    env = os.environ if env is None else env
    enabled = env.get("REDIS_CLUSTER_ENABLED", "false").strip().lower()
    if enabled not in {"true", "false", "1", "0", "yes", "no", ""}:
        raise ValueError(f"REDIS_CLUSTER_ENABLED={enabled!r}: expected true or false")
    if enabled in {"true", "1", "yes"}:
        return None, parse_nodes(env.get("REDIS_CLUSTER_NODES") or SEED_CLUSTER_NODES)
    return env.get("REDIS_URL") or DEFAULT_URL, None


def redact_url(url: str) -> str:
    """The URL without credentials, safe to print or write into results."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

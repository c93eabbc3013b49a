"""Queue settings as a dataclass, and parsing of the seed's node formats and env vars. Pure."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_POOL_SIZE = 50  # the seed's max_connections_per_node
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024  # 64 MiB: far above a sane task, far below Redis's 512 MB


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
    # Largest payload enqueue/enqueue_many accept (checked before sending: PayloadTooLarge).
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    # Seconds one public call may take in all, retries and reconnects included; None: no bound
    # beyond socket_timeout per attempt (a stopped server costs socket_timeout x (retries + 1)).
    operation_timeout: float | None = None
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
        if self.max_payload_bytes < 0:
            problems.append(f"max_payload_bytes={self.max_payload_bytes} must be >= 0")
        if self.operation_timeout is not None and not self.operation_timeout > 0:
            problems.append(f"operation_timeout={self.operation_timeout} must be > 0 seconds (or None: no bound)")
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


TRUE_FORMS = ("true", "1", "yes")
FALSE_FORMS = ("false", "0", "no", "")


def cluster_enabled(env: Mapping[str, str] | None = None) -> bool:
    """The seed's ``REDIS_CLUSTER_ENABLED``: true/1/yes or false/0/no, any case, spaces ignored;
    unset or empty is false. Anything else is a ValueError naming the variable and the value."""
    env = os.environ if env is None else env
    raw = env.get("REDIS_CLUSTER_ENABLED", "")
    value = raw.strip().lower()
    if value in TRUE_FORMS:
        return True
    if value in FALSE_FORMS:
        return False
    raise ValueError(
        f"REDIS_CLUSTER_ENABLED={raw!r} is not a boolean: use true/1/yes or false/0/no (any case; empty = false)"
    )


def backend_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, list[tuple[str, int]] | None]:
    """``(redis_url, cluster_nodes)`` from the seed's env vars, exactly one of them set.

    ``REDIS_CLUSTER_ENABLED`` true (see ``cluster_enabled``) selects the cluster and then needs
    ``REDIS_CLUSTER_NODES`` (no default: a missing list is an error, not localhost); otherwise
    ``REDIS_URL`` (default ``redis://localhost:6379/0``). Bad values raise ValueError.
    """
    env = os.environ if env is None else env
    if not cluster_enabled(env):
        return env.get("REDIS_URL") or DEFAULT_URL, None
    nodes = env.get("REDIS_CLUSTER_NODES")
    if nodes is None or not nodes.strip():
        state = "not set" if nodes is None else "empty"
        enabled = env["REDIS_CLUSTER_ENABLED"].strip()
        raise ValueError(
            f"REDIS_CLUSTER_ENABLED={enabled} needs REDIS_CLUSTER_NODES=host:port[,host:port…], "
            f"e.g. 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002; REDIS_CLUSTER_NODES is {state}"
        )
    try:
        return None, parse_nodes(nodes)
    except ValueError as exc:
        raise ValueError(f"REDIS_CLUSTER_NODES={nodes!r}: {exc}") from None


def redact_url(url: str) -> str:
    """The URL without credentials, safe to print or write into results. Never fails: a URL too
    broken to parse (e.g. a bad port) loses everything before its last ``@``."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if "@" in rest else url
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

"""Building the redis-py client with the pool the user asked for, and reading back what it got.

redis-py 8 quirks handled here: ``RedisCluster(startup_nodes=[{"host":…}])`` raises
AttributeError (it wants ``ClusterNode``), and ``max_connections_per_node`` is silently ignored
(the pool stays at its default). We pass ``max_connections`` (per node) and check it afterwards.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from .settings import QueueSettings, redact_url

Client = redis.Redis | RedisCluster


def _retry(settings: QueueSettings) -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), settings.retries)


def _common(settings: QueueSettings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "max_connections": settings.pool_size,
        "decode_responses": False,
    }


def build_standalone(url: str, settings: QueueSettings) -> redis.Redis:
    pool_class = redis.BlockingConnectionPool if settings.pool_blocking else redis.ConnectionPool
    extra: dict[str, Any] = {"timeout": settings.pool_timeout} if settings.pool_blocking else {}
    pool = pool_class.from_url(url, retry=_retry(settings), **_common(settings), **extra, **settings.extra)
    return redis.Redis(connection_pool=pool)


def build_cluster(nodes: list[tuple[str, int]], settings: QueueSettings) -> RedisCluster:
    (host, port), rest = nodes[0], nodes[1:]
    # The url= form is the one path where RedisCluster honours connection_pool_class, which a
    # blocking pool needs; every node then gets a pool of max_connections.
    kwargs: dict[str, Any] = dict(_common(settings))
    if settings.pool_blocking:
        kwargs.update(connection_pool_class=redis.BlockingConnectionPool, timeout=settings.pool_timeout)
    return RedisCluster(
        url=f"redis://{host}:{port}",
        startup_nodes=[ClusterNode(h, p) for h, p in rest],
        retry=_retry(settings),
        require_full_coverage=True,
        **kwargs,
        **settings.extra,
    )


def pool_report(client: Client) -> dict[str, Any]:
    """The pool as the client really has it: class, blocking, max_connections (per node)."""
    if isinstance(client, RedisCluster):
        per_node = {}
        pool_class = None
        for node in client.get_nodes():
            conn = node.redis_connection
            if conn is None:
                continue
            per_node[node.name] = conn.connection_pool.max_connections
            pool_class = type(conn.connection_pool).__name__
        sizes = set(per_node.values())
        return {
            "pool_class": pool_class,
            "pool_blocking": pool_class == "BlockingConnectionPool",
            "pool_size": sizes.pop() if len(sizes) == 1 else sorted(sizes),
            "pool_size_per_node": per_node,
        }
    pool = client.connection_pool
    return {
        "pool_class": type(pool).__name__,
        "pool_blocking": isinstance(pool, redis.BlockingConnectionPool),
        "pool_size": pool.max_connections,
    }


def endpoint_report(client: Client) -> dict[str, Any]:
    if isinstance(client, RedisCluster):
        return {"backend": "cluster", "nodes": sorted(n.name for n in client.get_nodes())}
    kwargs = client.connection_pool.connection_kwargs
    url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    return {"backend": "standalone", "url": redact_url(url)}

"""Each server node's ``INFO commandstats`` and role, read (and reset) for :mod:`bench.cost`."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from .cost import NodeStats, parse_info
from .servers import ServerNode


def info_text(client: redis.Redis, *sections: str) -> str:
    """INFO as the server wrote it (redis-py would parse it)."""
    client.set_response_callback("INFO", lambda response, **_: response)
    raw = client.execute_command("INFO", *sections)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def read_node(address: str, client: redis.Redis) -> NodeStats:
    """One node's role and commandstats; an unreachable node says so (a fault cell's killed master)."""
    try:
        role, commands = parse_info(info_text(client, "replication", "commandstats"))
    except (redis.RedisError, ValueError):  # down, paused past the timeout, or an INFO line not understood
        return NodeStats(address, "unreachable", {})
    return NodeStats(address, role, commands)


def read(servers: Iterable[ServerNode], timeout: float = 2.0) -> list[NodeStats]:
    """Every node's commandstats now (masters and replicas alike; ``cost`` tells them apart by role)."""
    out = []
    for server in servers:
        with server.client(timeout) as client:
            out.append(read_node(server.address, client))
    return out


def reset(servers: Iterable[ServerNode], timeout: float = 2.0) -> None:
    """CONFIG RESETSTAT on every live node."""
    for server in servers:
        if server.is_alive():
            with server.client(timeout) as client:
                client.config_resetstat()

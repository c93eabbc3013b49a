"""Synchronous replication (``sync_replicas``): an enqueue followed by WAIT on the partition's
master, and the ambiguous ``not_replicated`` outcome when too few replicas confirm it."""

from __future__ import annotations

import contextlib

from redis import exceptions as rex
from redis.cluster import RedisCluster

from .calls import typed_error
from .connection import Client
from .engines import Engine
from .errors import REDIS_ERRORS, QueueUnavailable
from .settings import QueueSettings


def enqueue_replicated(
    client: Client, engine: Engine, settings: QueueSettings, p: int, task_id: str, record: bytes
) -> None:
    """Enqueue + WAIT on the same connection of the partition's master, one round trip.
    Fewer replicas than asked within the timeout: the task is stored on the master but may
    not survive its failure, so the outcome is ambiguous (``kind == "not_replicated"``)."""
    keys = engine.enqueue_keys(p)
    script = engine.enqueue_script
    wanted, timeout = settings.sync_replicas, settings.sync_timeout_ms
    try:
        node = client.get_node_from_key(keys[0]).redis_connection if isinstance(client, RedisCluster) else client
        for attempt in range(2):
            pipe = node.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, task_id, record)
            pipe.execute_command("WAIT", wanted, timeout)
            stored, acked = pipe.execute(raise_on_error=False)
            if isinstance(stored, rex.NoScriptError) and attempt == 0:
                node.script_load(script.script)
                continue
            break
        for result in (stored, acked):
            if isinstance(result, Exception):
                raise result
    except REDIS_ERRORS as exc:
        if isinstance(client, RedisCluster):  # the slot may have moved: refresh the map
            with contextlib.suppress(*REDIS_ERRORS):  # unreachable cluster: keep the first error
                client.nodes_manager.initialize()
        raise typed_error(exc, p) from exc
    if int(acked) < wanted:
        err = QueueUnavailable(f"not_replicated: {acked}/{wanted} replicas within {timeout} ms", kind="not_replicated")
        err.partition = p
        raise err

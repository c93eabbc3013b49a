"""The typed pieces of #13 on literal inputs: the one server-version reader, the adapter Protocol."""

from __future__ import annotations

import pytest

from bench import adapters
from bench.errors import UsageError
from taskqueue.connection import server_report, server_version

STANDALONE = {"redis_url": "redis://127.0.0.1:1/0"}

REDIS_INFO = {"redis_version": "7.2.4", "redis_mode": "standalone", "os": "Linux"}
# Valkey 8 keeps a Redis-compatible redis_version for clients and reports its own version beside it.
VALKEY_INFO = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.1", "redis_mode": "cluster"}


def test_server_version_reads_redis_and_valkey() -> None:
    assert server_version(REDIS_INFO) == "7.2.4"
    assert server_version(VALKEY_INFO) == "8.0.1"  # not the compatible 7.2.4
    assert server_version({}) is None
    assert server_report(VALKEY_INFO) == {"server_version": "8.0.1", "server_name": "valkey"}
    assert server_report(REDIS_INFO) == {"server_version": "7.2.4", "server_name": "redis"}


class _HalfQueue:
    """Has the producer side only, and a ``depth`` that is not a method."""

    depth = 0

    def new_id(self) -> str:
        return "1"

    def enqueue(self, payload: bytes, *, task_id: str) -> str:
        return task_id


def half_queue(target: object, options: object) -> _HalfQueue:
    return _HalfQueue()


def test_adapter_protocol_is_the_required_list_and_build_checks_it() -> None:
    assert adapters.REQUIRED == (
        "new_id", "enqueue", "dequeue", "ack", "depth", "inflight", "requeue_expired", "describe", "purge", "close"
    )  # fmt: skip
    with pytest.raises(UsageError) as caught:
        adapters.build(f"{__name__}:half_queue", STANDALONE, None)
    lacks = str(caught.value).split("lacks ", 1)[1]
    assert lacks.startswith("dequeue, ack, depth, inflight, requeue_expired, describe, purge, close"), lacks

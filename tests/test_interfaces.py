"""The typed pieces of #13 on literal inputs: the one server-version reader."""

from __future__ import annotations

from taskqueue.connection import server_report, server_version

REDIS_INFO = {"redis_version": "7.2.4", "redis_mode": "standalone", "os": "Linux"}
# Valkey 8 keeps a Redis-compatible redis_version for clients and reports its own version beside it.
VALKEY_INFO = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.1", "redis_mode": "cluster"}


def test_server_version_reads_redis_and_valkey() -> None:
    assert server_version(REDIS_INFO) == "7.2.4"
    assert server_version(VALKEY_INFO) == "8.0.1"  # not the compatible 7.2.4
    assert server_version({}) is None
    assert server_report(VALKEY_INFO) == {"server_version": "8.0.1", "server_name": "valkey"}
    assert server_report(REDIS_INFO) == {"server_version": "7.2.4", "server_name": "redis"}

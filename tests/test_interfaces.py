"""The typed pieces of #13 on literal inputs: Target, the one server-version reader, the adapter Protocol."""

from __future__ import annotations

import dataclasses

import pytest

from bench import adapters, cells
from bench.backend_kinds import poll_health
from bench.errors import UsageError
from bench.target import Target
from taskqueue.connection import server_report, server_version

STANDALONE = Target(redis_url="redis://127.0.0.1:1/0")

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


def test_target_is_exactly_one_of_url_and_nodes() -> None:
    url = Target(redis_url="redis://:s3cret@127.0.0.1:6379/0")
    assert (url.kind, url.cluster_nodes, url.nodes()) == ("standalone", None, [])
    assert dict(url) == {"redis_url": "redis://:s3cret@127.0.0.1:6379/0"}  # the JSON form keeps the password
    assert str(url) == url.display() == "redis://***@127.0.0.1:6379/0" and "s3cret" not in repr(url)
    nodes = Target.cluster([("127.0.0.1", 7000), "127.0.0.1:7001"])
    assert nodes == Target(cluster_nodes="127.0.0.1:7000,127.0.0.1:7001")  # a value: equal and hashable
    assert len({nodes, Target(cluster_nodes="127.0.0.1:7000,127.0.0.1:7001")}) == 1
    assert (nodes.kind, nodes.redis_url, nodes.nodes()) == ("cluster", None, [("127.0.0.1", 7000), ("127.0.0.1", 7001)])
    assert nodes.display() == "redis-cluster://127.0.0.1:7000,127.0.0.1:7001"
    assert dict(nodes) == {"cluster_nodes": "127.0.0.1:7000,127.0.0.1:7001"} and nodes.get("redis_url") is None
    assert Target.of("", "") is None and Target.of("", "127.0.0.1:7000") == Target(cluster_nodes="127.0.0.1:7000")
    both, neither = {"redis_url": "redis://h:1/0", "cluster_nodes": "h:2"}, {"redis_url": "", "cluster_nodes": None}
    for wrong in ({}, neither, both):
        with pytest.raises(ValueError, match="exactly one"):
            Target(**wrong)
    with pytest.raises(ValueError, match="host:port"):
        Target.cluster(["localhost"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        url.__setattr__("redis_url", "redis://elsewhere:1/0")


def test_poll_health_returns_once_healthy_or_the_last_problems() -> None:
    answers = iter([["3 masters with slots, expected 4"], ["127.0.0.1:7001 replica link down"], []])
    assert poll_health(lambda: next(answers), timeout=5, interval=0.01) == []
    assert next(answers, "polled past healthy") == "polled past healthy"
    calls: list[int] = []

    def still_down() -> list[str]:
        calls.append(1)
        return [f"still down ({len(calls)})"]

    left = poll_health(still_down, timeout=0.1, interval=0.02)
    assert len(calls) >= 2 and left == [f"still down ({len(calls)})"]


def _cell(**params: object) -> dict[str, object]:
    return {"id": "c", "params": {"fault": "none", "maxmemory": "0", **params}, "errors": {}, "audit": {}}


def test_cell_accessors_on_literal_rows() -> None:
    plain, old_run = _cell(), {"id": "old", "params": {}, "errors": {}}  # an older summary: no fault, no maxmemory
    faulted, limited = _cell(fault="kill-master"), _cell(maxmemory="4mb", maxmemory_policy="noeviction")
    assert [cells.is_plain(c) for c in (plain, old_run, faulted, limited)] == [True, True, False, False]
    assert [cells.is_faulted(c) for c in (plain, faulted, _cell(fault=None))] == [False, True, False]
    assert [cells.memory_limited(c) for c in (_cell(maxmemory=0), _cell(maxmemory=""), limited)] == [False, False, True]
    timeline = {"kind": "kill-master", "injected_at_s": 5.0}
    assert cells.fault_timeline({**faulted, "fault": timeline}) is timeline
    assert [cells.fault_timeline(c) for c in (plain, faulted, {**faulted, "fault": {}})] == [None, None, None]
    errors = {"enqueue": {"pool_exhausted": 3, "timeout": 1}, "ack": {"pool_exhausted": 2}}
    assert cells.error_count({"errors": errors}, "pool_exhausted") == 5
    assert cells.error_count({"errors": errors}, "oom") == 0
    assert cells.lost({"lost": 2}) == (2, False)
    assert cells.lost({"lost": 2, "lost_upper_bound": 5}) == (7, True)  # summed repeats: one drain timed out
    assert cells.lost({"lost": 0, "lost_is_upper_bound": True}) == (0, True)  # the old flag
    assert cells.lost({}) == (None, False)
    assert cells.repeat_count({"repeats": [{}, {}], "params": {"repeat": 3}}) == 2
    assert cells.repeat_count({"params": {"repeat": 3}}) == 3
    reached, short = {"rate": 100, "rate_reached": True}, {"rate": 900, "rate_reached": False}
    assert cells.rate_shortfall({"open_loop": reached, "repeats": [{"open_loop": short}]}) is short
    assert cells.rate_shortfall({"open_loop": reached}) is None
    assert cells.fault_windows({"unavailable_s": 1.5, "error_window_s": 2.0}) == (1.5, 2.0)
    assert cells.fault_windows({"unavailable_s": 2.0}) == (None, 2.0)  # before #9: that was the error window

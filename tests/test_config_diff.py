"""bench.config_diff: what else differs between compared cells, from literal cells (no Redis)."""

from __future__ import annotations

from typing import Any

from bench.config_diff import config_differences, differences_note, layout_shape


def cell(partitions: dict[int, str], pool: int = 5, version: str = "7.0.15", policy: str = "noeviction") -> Any:
    nodes = {a: {"role": "master", "server_version": version, "maxmemory": 0, "maxmemory_policy": policy,
                 "cluster_node_timeout_ms": 2000} for a in ("a:1", "b:2", "c:3")}  # fmt: skip
    queue = {"partitions": len(partitions), "partition_masters": partitions, "pool_class": "ConnectionPool",
             "pool_size": pool, "redis_py": "8.1.0"}  # fmt: skip
    return {"effective": {"queue": queue, "servers": {"nodes": nodes}}}


THREE = {0: "a:1", 1: "b:2", 2: "c:3"}
FOUR = {0: "a:1", 1: "b:2", 2: "c:3", 3: "a:1"}


def test_only_the_axis_differs_no_note() -> None:
    cells = [cell(THREE, pool=1), cell(THREE, pool=5), cell(THREE, pool=50)]
    assert config_differences(cells, ["pool_size"]) == []
    assert differences_note(cells, ["pool_size"]) == ""
    assert config_differences(cells) == ["1 vs 5 vs 50 pool size"]


def test_a_layout_difference_is_named() -> None:
    cells = [cell(THREE, pool=1), cell(FOUR, pool=5), cell(THREE, pool=20)]
    assert layout_shape(cells[1]) == "2/1/1"
    assert config_differences(cells, ["pool_size"]) == ["3 vs 4 partitions", "1/1/1 vs 2/1/1 partitions per master"]
    assert differences_note(cells, ["pool_size"]) == (
        " (layouts differ: 3 vs 4 partitions, 1/1/1 vs 2/1/1 partitions per master)"
    )


def test_server_and_policy_differences_and_the_axis_that_excuses_them() -> None:
    a, b = cell(THREE, version="7.0.15", policy="noeviction"), cell(THREE, version="7.2.4", policy="allkeys-lru")
    assert differences_note([a, b], ["maxmemory_policy"]) == " (configurations differ: 7.0.15 vs 7.2.4 server versions)"
    assert config_differences([a, b], ["maxmemory_policy", "server_bin"]) == []
    assert config_differences([a, cell(FOUR)], ["backend"]) == []  # a backend pair: layouts differ by design


def test_a_cell_without_effective_configuration_is_not_a_difference() -> None:
    assert config_differences([cell(THREE), {"params": {}}]) == []

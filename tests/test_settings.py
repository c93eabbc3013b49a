"""Pure parsing of the seed's node formats and env vars (no Redis)."""

from __future__ import annotations

import pytest
from redis.cluster import ClusterNode

from taskqueue.codec import IdFactory, decode_record, encode_record
from taskqueue.keys import partition_keys
from taskqueue.settings import QueueSettings, backend_from_env, parse_nodes, redact_url
from taskqueue.task import partition_of


def test_seed_node_formats() -> None:
    seed = [{"host": "localhost", "port": 7000}, {"host": "localhost", "port": 7001}]
    assert parse_nodes(seed) == [("localhost", 7000), ("localhost", 7001)]
    assert parse_nodes("localhost:7000,127.0.0.1:7001") == [("localhost", 7000), ("127.0.0.1", 7001)]
    assert parse_nodes([ClusterNode("127.0.0.1", 7002), ("h", 7003)]) == [("127.0.0.1", 7002), ("h", 7003)]


@pytest.mark.parametrize("bad", ["localhost", "localhost:", ":7000", "h:port", "h:70000", ""])
def test_bad_node_strings(bad: str) -> None:
    with pytest.raises(ValueError, match=r"cluster node|no cluster nodes"):
        parse_nodes(bad)


def test_seed_env_vars() -> None:
    assert backend_from_env({}) == ("redis://localhost:6379/0", None)
    assert backend_from_env({"REDIS_URL": "redis://h:1/2"}) == ("redis://h:1/2", None)
    url, nodes = backend_from_env({"REDIS_CLUSTER_ENABLED": "true"})
    assert url is None and nodes == [("localhost", 7000), ("localhost", 7001), ("localhost", 7002)]
    _, nodes = backend_from_env({"REDIS_CLUSTER_ENABLED": "true", "REDIS_CLUSTER_NODES": "a:1,b:2"})
    assert nodes == [("a", 1), ("b", 2)]
    with pytest.raises(ValueError, match="REDIS_CLUSTER_ENABLED"):
        backend_from_env({"REDIS_CLUSTER_ENABLED": "maybe"})


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        QueueSettings(pool_size=0)
    with pytest.raises(ValueError, match="name"):
        QueueSettings(name="a{b}")


def test_redact_url() -> None:
    assert redact_url("redis://user:secret@h:6379/0") == "redis://***@h:6379/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_record_codec_and_ids() -> None:
    assert decode_record(encode_record(123, b"payload")) == (123, b"payload")
    new_id = IdFactory("abc")
    assert [new_id(), new_id()] == ["abc-1", "abc-2"]


def test_partition_of_is_round_robin_for_generated_ids_and_stable_otherwise() -> None:
    assert [partition_of(f"abc-{n:x}", 3) for n in range(1, 7)] == [1, 2, 0, 1, 2, 0]
    assert partition_of("order-42", 3) == partition_of("order-42", 3)
    assert 0 <= partition_of("no dash", 5) < 5


def test_all_keys_of_a_partition_share_a_hash_tag() -> None:
    keys = partition_keys("q", 2)
    assert all("{q.2}" in key for key in keys.all())

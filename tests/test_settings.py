"""Pure parsing of the seed's node formats and env vars (no Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.cluster import ClusterNode

from taskqueue.codec import IdFactory, decode_record, encode_record
from taskqueue.keys import partition_keys
from taskqueue.settings import QueueSettings, backend_from_env, cluster_enabled, parse_nodes, redact_url
from taskqueue.task import partition_of

REPO = Path(__file__).resolve().parents[1]


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
    _, nodes = backend_from_env({"REDIS_CLUSTER_ENABLED": "true", "REDIS_CLUSTER_NODES": "a:1,b:2"})
    assert nodes == [("a", 1), ("b", 2)]
    # The cluster wins over REDIS_URL when enabled; REDIS_URL is used when it is not.
    both = {"REDIS_CLUSTER_NODES": "a:1", "REDIS_URL": "redis://h:1/2"}
    assert backend_from_env({**both, "REDIS_CLUSTER_ENABLED": "yes"}) == (None, [("a", 1)])
    assert backend_from_env({**both, "REDIS_CLUSTER_ENABLED": "no"}) == ("redis://h:1/2", None)


# Every form REDIS_CLUSTER_ENABLED accepts, literally (case-insensitive, spaces stripped).
ENABLED_FORMS = ["true", "TRUE", "True", "tRuE", " true ", "\ttrue\n", "1", " 1", "yes", "YES", "Yes", "yes "]
DISABLED_FORMS = ["false", "FALSE", "False", " false ", "0", "0 ", "no", "NO", "No", "", " ", "\t"]
REFUSED_FORMS = [
    "maybe",
    "on",
    "off",
    "ON",
    "y",
    "n",
    "t",
    "f",
    "2",
    "-1",
    "1.0",
    "00",
    "tru",
    "yess",
    "true1",
    "enabled",
]


@pytest.mark.parametrize("value", ENABLED_FORMS)
def test_cluster_enabled_accepts_true_forms(value: str) -> None:
    assert cluster_enabled({"REDIS_CLUSTER_ENABLED": value}) is True
    env = {"REDIS_CLUSTER_ENABLED": value, "REDIS_CLUSTER_NODES": "127.0.0.1:7000"}
    assert backend_from_env(env) == (None, [("127.0.0.1", 7000)])


@pytest.mark.parametrize("value", DISABLED_FORMS)
def test_cluster_enabled_accepts_false_forms(value: str) -> None:
    assert cluster_enabled({"REDIS_CLUSTER_ENABLED": value}) is False
    env = {"REDIS_CLUSTER_ENABLED": value, "REDIS_CLUSTER_NODES": "127.0.0.1:7000"}
    assert backend_from_env(env) == ("redis://localhost:6379/0", None)


def test_cluster_enabled_unset_is_false() -> None:
    assert cluster_enabled({}) is False
    assert cluster_enabled({"REDIS_CLUSTER_NODES": "127.0.0.1:7000"}) is False


@pytest.mark.parametrize("value", REFUSED_FORMS)
def test_cluster_enabled_refuses_anything_else(value: str) -> None:
    for parse in (cluster_enabled, backend_from_env):
        with pytest.raises(ValueError) as info:
            parse({"REDIS_CLUSTER_ENABLED": value, "REDIS_URL": "redis://h:1/0"})
        message = str(info.value)
        assert f"REDIS_CLUSTER_ENABLED={value!r}" in message  # the variable and the value
        assert "true/1/yes" in message and "false/0/no" in message  # the valid forms


NO_NODES = {  # REDIS_CLUSTER_NODES as set (None: not set) -> the end of the message
    "missing": (None, "; REDIS_CLUSTER_NODES is not set"),
    "empty": ("", "; REDIS_CLUSTER_NODES is empty"),
    "blank": ("   ", "; REDIS_CLUSTER_NODES is empty"),
    "only-commas": (",", "REDIS_CLUSTER_NODES=',': no cluster nodes given: expected host:port[,host:port…]"),
}


@pytest.mark.parametrize(("nodes", "says"), list(NO_NODES.values()), ids=list(NO_NODES))
@pytest.mark.parametrize("enabled", ["true", "YES", "1"])
def test_cluster_enabled_without_nodes_is_an_error_not_localhost(enabled: str, nodes: str | None, says: str) -> None:
    env = {"REDIS_CLUSTER_ENABLED": enabled} | ({} if nodes is None else {"REDIS_CLUSTER_NODES": nodes})
    with pytest.raises(ValueError, match="REDIS_CLUSTER_NODES") as info:
        backend_from_env(env)
    message = str(info.value)
    assert message.endswith(says), message
    needs = f"REDIS_CLUSTER_ENABLED={enabled} needs REDIS_CLUSTER_NODES=host:port[,host:port…]"
    assert (needs in message) == (nodes != ","), message  # "," is a list with no nodes: parse_nodes says so
    assert "7000,localhost" not in message


def test_bad_cluster_nodes_name_the_variable() -> None:
    with pytest.raises(ValueError, match=r"REDIS_CLUSTER_NODES='localhost'.*host:port"):
        backend_from_env({"REDIS_CLUSTER_ENABLED": "true", "REDIS_CLUSTER_NODES": "localhost"})


def _resolve_in_subprocess(env: dict[str, str]) -> dict[str, object]:
    """bench.load.resolve_target with these env vars, in a fresh interpreter: importing
    bench.load imports Locust, which monkey-patches the process with gevent."""
    code = (
        "import json\n"
        "from bench import backends\n"
        "from bench.errors import UsageError\n"
        "from bench.load import resolve_target\n"
        "from bench.options import LoadOptions\n"
        "def refuse(*_args, **_kwargs):\n"  # the env vars were ignored: do not start a server
        "    raise SystemExit(print(json.dumps({'would_start_or_attach': True})))\n"
        "backends.attach = backends.start_backend = refuse\n"
        "try:\n"
        "    target, embedded = resolve_target(LoadOptions())\n"
        "    print(json.dumps({'connection': dict(target), 'embedded': embedded is not None}))\n"
        "except UsageError as exc:\n"
        "    print(json.dumps({'usage_error': str(exc)}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TQB_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_locust_harness_uses_the_same_parser() -> None:
    """bench/load.py reads the seed's env vars through cluster_enabled/backend_from_env: a refused
    value is a UsageError (Locust prints "locust: error: …", exit 2), never silently ignored."""
    nodes = {"REDIS_CLUSTER_NODES": "127.0.0.1:7000,127.0.0.1:7001"}
    assert _resolve_in_subprocess({"REDIS_CLUSTER_ENABLED": " Yes ", **nodes}) == {
        "connection": {"cluster_nodes": "127.0.0.1:7000,127.0.0.1:7001"},
        "embedded": False,
    }
    refused = _resolve_in_subprocess({"REDIS_CLUSTER_ENABLED": "maybe", **nodes})
    assert "REDIS_CLUSTER_ENABLED='maybe'" in str(refused["usage_error"])
    missing = _resolve_in_subprocess({"REDIS_CLUSTER_ENABLED": "1"})
    assert "needs REDIS_CLUSTER_NODES" in str(missing["usage_error"])
    url = _resolve_in_subprocess({"REDIS_CLUSTER_ENABLED": "0", "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert url == {"connection": {"redis_url": "redis://127.0.0.1:1/0"}, "embedded": False}


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        QueueSettings(pool_size=0)
    with pytest.raises(ValueError, match="name"):
        QueueSettings(name="a{b}")
    with pytest.raises(ValueError, match="max_payload_bytes=-1"):
        QueueSettings(max_payload_bytes=-1)
    for bad in (0, 0.0, -1.5):
        with pytest.raises(ValueError, match="operation_timeout"):
            QueueSettings(operation_timeout=bad)


def test_settings_defaults_for_the_client_guards() -> None:
    settings = QueueSettings()
    assert settings.max_payload_bytes == 64 * 1024 * 1024  # 64 MiB, documented in the README
    assert settings.operation_timeout is None  # unbounded per call, as before
    assert QueueSettings(max_payload_bytes=0, operation_timeout=0.25).operation_timeout == 0.25


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

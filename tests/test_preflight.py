"""Bad external servers and ports: one line saying what is wrong and what to check, exit 2.

Everything stays on this machine: a closed local port (refused), a listening socket that never
answers (timeout), a redis-server with requirepass (auth). The checks are read-only.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import SERVER_PASSWORD

from bench import preflight
from bench.backends import ClusterBackend, StandaloneBackend
from bench.errors import UsageError
from bench.ports import LOOPBACK
from bench.preflight import check_external
from bench.servers import RedisServer

URL_FORM = "redis://[[user]:password@]host:port/db"


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound once by us, then released."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that never accepts or answers: connect may succeed (backlog), PING never returns."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(0)
        yield int(sock.getsockname()[1])


def fails(**kwargs: object) -> str:
    with pytest.raises(UsageError) as info:
        check_external(timeout=0.5, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


# -- URLs, before any connection -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        ("http://x", ["--redis-url http://x: scheme http:// is not supported", URL_FORM, "unix://"]),
        ("localhost:6379", ["--redis-url localhost:6379: no scheme", URL_FORM]),
        ("127.0.0.1:6379", ["no scheme"]),
        (f"redis://:{SERVER_PASSWORD}@127.0.0.1:abc/0", ["redis://***@127.0.0.1:abc/0", "Port could not be cast"]),
        ("redis://127.0.0.1:6379/abc", ["database 'abc' must be a number, e.g. /0"]),
        ("redis://[::1", ["Invalid IPv6 URL"]),
    ],
)
def test_bad_urls(url: str, needles: list[str]) -> None:
    message = fails(redis_url=url)
    for needle in needles:
        assert needle in message
    assert SERVER_PASSWORD not in message


def test_bad_cluster_node_list() -> None:
    assert "port must be 1..65535" in fails(cluster_nodes="127.0.0.1:99999")
    assert "expected host:port" in fails(cluster_nodes="nonsense")


# -- unreachable servers ----------------------------------------------------------------------------


def test_refused(closed_port: int) -> None:
    message = fails(redis_url=f"redis://:{SERVER_PASSWORD}@127.0.0.1:{closed_port}/0")
    assert message == (
        f"cannot reach redis://***@127.0.0.1:{closed_port}/0: connection refused — is the server running? "
        "check host/port"
    )


def test_timeout(silent_port: int) -> None:
    message = fails(redis_url=f"redis://127.0.0.1:{silent_port}/0")
    assert f"cannot reach redis://127.0.0.1:{silent_port}/0: no answer within 0.5 s (timeout)" in message


def test_missing_unix_socket(tmp_path: Path) -> None:
    message = fails(redis_url=f"unix://{tmp_path}/redis.sock")
    assert "no such socket file" in message and "check the path" in message


def test_cluster_nodes_unreachable(closed_port: int, silent_port: int) -> None:
    assert fails(cluster_nodes=f"127.0.0.1:{closed_port}") == (
        f"cannot reach cluster node 127.0.0.1:{closed_port}: connection refused — is the server running? "
        "check host/port"
    )
    both = fails(cluster_nodes=f"127.0.0.1:{closed_port},127.0.0.1:{silent_port}")
    assert f"127.0.0.1:{closed_port} (connection refused), 127.0.0.1:{silent_port} (timeout)" in both
    assert "cannot reach any cluster node" in both


# -- passwords ----------------------------------------------------------------------------------------


def test_missing_password(password_server: RedisServer) -> None:
    message = fails(redis_url=f"redis://127.0.0.1:{password_server.port}/0")
    assert f"redis://127.0.0.1:{password_server.port}/0 requires a password" in message
    assert "redis://:PASSWORD@host:port/db" in message


def test_wrong_password_is_never_printed(password_server: RedisServer) -> None:
    wrong = "not-the-password"
    message = fails(redis_url=f"redis://:{wrong}@127.0.0.1:{password_server.port}/0")
    assert f"redis://***@127.0.0.1:{password_server.port}/0 refused the credentials" in message
    assert wrong not in message and SERVER_PASSWORD not in message


def test_right_password_passes_and_nothing_was_written(password_server: RedisServer) -> None:
    url = f"redis://:{SERVER_PASSWORD}@127.0.0.1:{password_server.port}/0"
    with redis.Redis.from_url(url) as client:
        client.set("user-data", "kept")
        before = client.info("commandstats")
        check_external(redis_url=url, timeout=2)
        after = client.info("commandstats")
        assert client.get("user-data") == b"kept" and client.dbsize() == 1
    ran = {
        name.removeprefix("cmdstat_") for name, v in after.items() if v["calls"] != before.get(name, {}).get("calls")
    }
    assert ran <= {"ping", "info", "auth", "hello", "client|setinfo"}, ran  # our own INFO call included


def test_cluster_node_with_password(password_server: RedisServer) -> None:
    message = fails(cluster_nodes=f"127.0.0.1:{password_server.port}")
    assert f"cluster node 127.0.0.1:{password_server.port} requires a password" in message
    assert "--cluster-nodes cannot carry one: use a cluster without requirepass" in message


# -- the wrong kind of server -------------------------------------------------------------------------


def test_standalone_given_as_cluster_and_back(standalone: StandaloneBackend, cluster: ClusterBackend) -> None:
    port = standalone.servers[0].port
    assert fails(cluster_nodes=f"127.0.0.1:{port}") == (
        f"127.0.0.1:{port} is a standalone server (cluster support disabled): use --redis-url "
        f"redis://127.0.0.1:{port}/0 instead of --cluster-nodes"
    )
    node = cluster.servers[0].address
    assert "is a Redis Cluster node: use --cluster-nodes" in fails(redis_url=f"redis://{node}/0")
    check_external(redis_url=standalone.url, timeout=2)
    check_external(cluster_nodes=",".join(cluster.nodes), timeout=2)


# -- the CLI: one line, exit 2, no output folder ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--redis-url", "redis://:{pw}@127.0.0.1:{closed}/0", "--allow-flush"], "connection refused"),
        (["--redis-url", "redis://127.0.0.1:{silent}/0", "--allow-flush"], "(timeout)"),
        (["--redis-url", "http://x"], "scheme http:// is not supported"),
        (["--cluster-nodes", "127.0.0.1:{closed}", "--allow-flush"], "cluster node 127.0.0.1:{closed}"),
    ],
)
def test_cli_run_refuses_before_any_output(
    args: list[str], needle: str, closed_port: int, silent_port: int, tmp_path: Path
) -> None:
    values = {"pw": SERVER_PASSWORD, "closed": closed_port, "silent": silent_port}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "smoke",
            *(a.format(**values) for a in args),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("bench: error:") and done.stderr.count("\n") == 1, done.stderr
    assert needle.format(**values) in done.stderr
    assert SERVER_PASSWORD not in done.stderr + done.stdout
    assert not (tmp_path / "o").exists()


def test_preflight_module_never_writes() -> None:
    """Read-only by construction: no write, flush or config command is sent by the module."""
    source = Path(preflight.__file__).read_text().lower()
    for verb in ("flushall", "flushdb", "config_set", ".set(", "execute_command", "shutdown", "failover"):
        assert verb not in source

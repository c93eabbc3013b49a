"""Bad external servers and ports: one line saying what is wrong and what to check, exit 2.

Everything stays on this machine: a closed local port (refused), a listening socket that never
answers (timeout), a redis-server with requirepass (auth). The checks are read-only.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import SERVER_PASSWORD

from bench import preflight, servers
from bench.backends import ClusterBackend, StandaloneBackend
from bench.errors import UsageError
from bench.preflight import check_external
from bench.servers import LOOPBACK, RedisServer, bind_problem, check_port_free, free_port

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


# -- ports ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "code", "listener", "needles"),
    [
        (80, errno.EACCES, None, ["port 80 on 127.0.0.1: permission denied", "below 1024 need root", "1024..65535"]),
        (6000, errno.EACCES, None, ["permission denied (a security policy forbids it)"]),
        (6379, errno.EADDRINUSE, "redis-server *:6379 (pid 42)", ["already in use by redis-server *:6379 (pid 42)"]),
        (
            7000,
            errno.EADDRINUSE,
            None,
            ["port 7000 on 127.0.0.1 is held by a closing or client connection (TIME_WAIT?)", "wait a minute"],
        ),
        (7000, errno.EADDRNOTAVAIL, None, ["127.0.0.1 is not an address of this machine"]),
        (7000, errno.ENOBUFS, None, ["cannot be bound: No buffer space available"]),
    ],
)
def test_bind_problem_messages(port: int, code: int, listener: str | None, needles: list[str]) -> None:
    message = bind_problem(port, "port", code, listener)
    for needle in needles:
        assert needle in message
    assert ("in use" in message) == (listener is not None)


def test_port_in_use_by_a_listener_names_it() -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        with pytest.raises(UsageError) as info:
            check_port_free(port)
    assert f"port {port} on 127.0.0.1 is already in use by" in str(info.value)
    assert f"(pid {os.getpid()})" in str(info.value)  # this process holds it


def test_port_held_by_a_client_connection_is_not_called_in_use() -> None:
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen(1)
        with socket.create_connection(server.getsockname()) as client:
            port = client.getsockname()[1]  # the client's local (ephemeral) port: no listener there
            with pytest.raises(UsageError) as info:
                check_port_free(port, "cluster bus port")
    message = str(info.value)
    assert f"cluster bus port {port} on 127.0.0.1 is held by a closing or client connection" in message
    assert "in use by" not in message


def test_ephemeral_range_is_read() -> None:
    low, high = servers.ephemeral_range()
    assert 1024 <= low < high <= 65535


@pytest.mark.parametrize("ephemeral", [(32768, 60999), (25000, 40000), (10000, 20000), (49152, 65535)])
def test_free_port_never_touches_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, ephemeral: tuple[int, int]
) -> None:
    low, high = ephemeral
    for start in (1024, 6379, 20000, 23000, 25000, 31000, 45000, 62000):
        busy = set(range(start, start + 12))  # the first ranges asked for are taken
        monkeypatch.setattr(servers, "_free", lambda port, busy=busy: port not in busy)
        for span, bus in ((1, None), (1, 10000), (6, 10000), (3, 100)):
            base = free_port(span=span, start=start, bus_offset=bus, ephemeral=ephemeral)
            ports = list(range(base, base + span))
            ports += [p + bus for p in ports] if bus else []
            assert all(1024 <= p <= 65535 and not low <= p <= high and p not in busy for p in ports), (start, ports)


def test_free_port_stays_near_start_and_says_when_nothing_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "_free", lambda port: True)
    linux = (32768, 60999)
    # the suite's defaults are already outside: cluster 20000 (bus 30000), standalone 21000, locust 20500
    assert free_port(span=6, start=20000, bus_offset=10000, ephemeral=linux) == 20000
    assert free_port(span=1, start=21000, bus_offset=10000, ephemeral=linux) == 21000
    assert free_port(span=6, start=20500, bus_offset=10000, ephemeral=linux) == 20500
    # a start whose bus ports fall in the range moves down to the highest range below it
    assert free_port(span=6, start=25000, bus_offset=10000, ephemeral=linux) == 22762
    with pytest.raises(UsageError, match="outside the ephemeral range 1024-65535"):
        free_port(span=1, start=21000, ephemeral=(1024, 65535))


def test_preflight_module_never_writes() -> None:
    """Read-only by construction: no write, flush or config command is sent by the module."""
    source = Path(preflight.__file__).read_text().lower()
    for verb in ("flushall", "flushdb", "config_set", ".set(", "execute_command", "shutdown", "failover"):
        assert verb not in source

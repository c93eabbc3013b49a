"""Ports: bind errors in one line, free ranges outside the ephemeral range, and claims that keep
two harnesses choosing at the same moment (two ``bench run``s, pytest-xdist workers) apart."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import ports
from bench.errors import UsageError
from bench.ports import LOOPBACK, bind_problem, check_port_free, free_port


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A claims folder of this test's own, so other processes' claims never show in it."""
    monkeypatch.setattr(ports, "CLAIMS_DIR", tmp_path / "claims")
    return tmp_path / "claims"


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
    low, high = ports.ephemeral_range()
    assert 1024 <= low < high <= 65535


@pytest.mark.parametrize("ephemeral", [(32768, 60999), (25000, 40000), (10000, 20000), (49152, 65535)])
def test_free_port_never_touches_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, claims: Path, ephemeral: tuple[int, int]
) -> None:
    low, high = ephemeral
    for start in (1024, 6379, 20000, 23000, 25000, 31000, 45000, 62000):
        busy = set(range(start, start + 12))  # the first ranges asked for are taken
        monkeypatch.setattr(ports, "_free", lambda port, busy=busy: port not in busy)
        for span, bus in ((1, None), (1, 10000), (6, 10000), (3, 100)):
            base = free_port(span=span, start=start, bus_offset=bus, ephemeral=ephemeral)
            chosen = list(range(base, base + span))
            chosen += [p + bus for p in chosen] if bus else []
            assert all(1024 <= p <= 65535 and not low <= p <= high and p not in busy for p in chosen), (start, chosen)


def test_free_port_stays_near_start_and_says_when_nothing_fits(monkeypatch: pytest.MonkeyPatch, claims: Path) -> None:
    monkeypatch.setattr(ports, "_free", lambda port: True)
    linux = (32768, 60999)
    # the suite's defaults are already outside: cluster 20000 (bus 30000), standalone 21000, locust 20500
    assert free_port(span=6, start=20000, bus_offset=10000, ephemeral=linux) == 20000
    assert free_port(span=1, start=21000, bus_offset=10000, ephemeral=linux) == 21000
    assert free_port(span=6, start=20500, bus_offset=10000, ephemeral=linux) == 20500
    # a start whose bus ports fall in the range moves down to the highest range below it
    assert free_port(span=6, start=25000, bus_offset=10000, ephemeral=linux) == 22762
    with pytest.raises(UsageError, match="outside the ephemeral range 1024-65535"):
        free_port(span=1, start=21000, ephemeral=(1024, 65535))


def _claim_in_another_process(folder: Path, start: int, span: int) -> int:
    """``free_port`` as a second harness would call it: its own process, same claims folder."""
    code = (
        "import sys; from pathlib import Path; from bench import ports; "
        f"ports.CLAIMS_DIR = Path({str(folder)!r}); ports._free = lambda port: True; "
        f"print(ports.free_port(span={span}, start={start}, bus_offset=10000, ephemeral=(32768, 60999)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    return int(done.stdout)


def test_a_range_claimed_by_another_live_process_is_skipped(monkeypatch: pytest.MonkeyPatch, claims: Path) -> None:
    monkeypatch.setattr(ports, "_free", lambda port: True)  # nothing is bound: only claims keep ranges apart
    linux = (32768, 60999)
    mine = free_port(span=6, start=20000, bus_offset=10000, ephemeral=linux)
    assert mine == 20000
    assert free_port(span=6, start=20000, bus_offset=10000, ephemeral=linux) == mine  # this process reuses its own
    # the other process exits after choosing, so its claims die with it: each call sees only this process's claim
    assert _claim_in_another_process(claims, 20000, 6) == 20006
    assert _claim_in_another_process(claims, 20003, 1) == 20006  # a single port inside the range moves past it
    assert sorted(int(p.name) for p in claims.iterdir() if p.name.isdigit())[:7] == [
        20000,
        20001,
        20002,
        20003,
        20004,
        20005,
        20006,
    ]


def test_claims_of_a_dead_process_or_older_than_the_ttl_are_void(monkeypatch: pytest.MonkeyPatch, claims: Path) -> None:
    monkeypatch.setattr(ports, "_free", lambda port: True)
    claims.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (claims / "21000").write_text(dead.stdout.strip())  # claimed by a process that has exited
    (claims / "21001").write_text("1")  # claimed by a live process (init), but long ago
    old = time.time() - ports.CLAIM_TTL_S - 5
    os.utime(claims / "21001", (old, old))
    (claims / "21002").write_text("1")  # claimed by a live process just now
    assert free_port(start=21000, ephemeral=(32768, 60999)) == 21000
    assert free_port(start=21001, ephemeral=(32768, 60999)) == 21001
    assert free_port(start=21002, ephemeral=(32768, 60999)) == 21003
    assert (claims / "21000").read_text() == str(os.getpid())


def test_an_unwritable_claims_folder_claims_nothing_and_refuses_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ports, "CLAIMS_DIR", tmp_path / "a-file" / "claims")  # its parent is a file
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(ports, "_free", lambda port: True)
    assert free_port(start=21000, ephemeral=(32768, 60999)) == 21000

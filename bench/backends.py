"""Starting embedded backends: a standalone server or an N-master cluster of ``redis-server`` processes
(what to start, :class:`BackendSpec`; starting it, :func:`start_backend`).

Also the state folder that lets ``bench up`` / ``bench status`` / ``bench down`` work across
commands, and the read-back of the effective server configuration recorded with every result.
The kinds themselves (StandaloneBackend, ClusterBackend) are in bench.backend_kinds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from taskqueue.connection import server_report

from .backend_kinds import Backend, ClusterBackend, StandaloneBackend, raw_text
from .errors import UsageError
from .ports import check_port_free
from .servers import (
    LOOPBACK,
    RedisServer,
    find_cli_bin,
    find_server_bin,
    pid_is_redis,
)
from .target import Target
from .topology import parse_cluster_nodes

DEFAULT_NODE_TIMEOUT_MS = 5000


def default_state_dir() -> Path:
    return Path(os.environ.get("BENCH_STATE_DIR", ".bench")).resolve()


def memory_config(maxmemory: str | None, policy: str | None) -> dict[str, str]:
    config = {}
    if maxmemory:
        config["maxmemory"] = maxmemory
    if policy:
        config["maxmemory-policy"] = policy
    return config


def read_effective(client: redis.Redis) -> dict[str, Any]:
    """What a server really runs with, from INFO and CONFIG GET (not what we asked for)."""
    info = client.info()
    config = client.config_get("maxmemory*") | client.config_get("cluster-node-timeout")
    return {
        **server_report(info),
        "role": info.get("role"),
        "maxmemory": int(config.get("maxmemory", info.get("maxmemory", 0))),
        "maxmemory_policy": config.get("maxmemory-policy", info.get("maxmemory_policy")),
        "cluster_node_timeout_ms": int(config.get("cluster-node-timeout") or 0)
        if info.get("cluster_enabled")
        else None,
        "used_memory": info.get("used_memory"),
        "evicted_keys": info.get("evicted_keys"),
    }


@dataclass
class BackendSpec:
    """What to start. ``owned`` servers die with this process; ``bench up`` starts unowned ones."""

    kind: str = "standalone"
    port: int = 6379  # standalone port, or the cluster's base port
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
    maxmemory: str | None = None
    maxmemory_policy: str | None = None
    server_bin: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    owned: bool = True
    extra_config: dict[str, str] = field(default_factory=dict)
    # Cluster only: each node on its own loopback address (127.0.0.2, 127.0.0.3, …) instead of all on
    # 127.0.0.1, so network faults can cut one node's links by address. Only inside a private network
    # namespace (bench.netns): the nodes then run with protected mode off.
    node_addresses: bool = False


def start_backend(spec: BackendSpec) -> Backend:
    """Start the servers ``spec`` asks for. If that fails (or is interrupted), every server it
    started is stopped and every folder it created is removed before the error propagates."""
    if spec.kind not in {"standalone", "cluster"}:
        raise UsageError(f"unknown backend {spec.kind!r}: valid are standalone, cluster")
    server_bin = find_server_bin(spec.server_bin)
    config = memory_config(spec.maxmemory, spec.maxmemory_policy) | spec.extra_config
    root = spec.state_dir / spec.kind
    parents = [d for d in (root, spec.state_dir) if not d.exists()]  # ours to remove if the start fails
    if spec.kind == "standalone":
        server = RedisServer(server_bin, spec.port, root / str(spec.port), config, owned=spec.owned)
        new = [] if server.data_dir.exists() else [server.data_dir]  # an existing one may be a live server's
        with _removed_on_failure(new, parents):
            _start_all([server])
        return StandaloneBackend(server)
    if spec.masters < 3:
        raise UsageError(f"--masters {spec.masters}: a Redis Cluster needs at least 3 masters")
    if not 0 <= spec.replicas <= 5:
        raise UsageError(f"--replicas {spec.replicas}: use 0..5 replicas per master")
    if spec.node_timeout_ms < 100:
        raise UsageError(f"--node-timeout {spec.node_timeout_ms}: use at least 100 ms")
    cli_bin = find_cli_bin(server_bin)
    count = spec.masters * (1 + spec.replicas)
    config |= {
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": str(spec.node_timeout_ms),
    }
    if spec.node_addresses:
        from .netns import node_host, require_private_netns

        require_private_netns("nodes on their own addresses with protected mode off")
    servers = [
        RedisServer(
            server_bin,
            port,
            root / str(port),
            config,
            owned=spec.owned,
            host=node_host(i) if spec.node_addresses else LOOPBACK,
        )
        for i, port in enumerate(range(spec.port, spec.port + count))
    ]
    for server in servers:  # ports first: the folders below may belong to a live (unrecorded) server
        check_port_free(server.port, host=server.host)
        check_port_free(server.port + 10000, "cluster bus port", host=server.host)
    for server in servers:  # a stale nodes.conf would make a fresh node think it is in an old cluster
        shutil.rmtree(server.data_dir, ignore_errors=True)
    backend = ClusterBackend(servers, spec.masters, spec.replicas, spec.node_timeout_ms, cli_bin=cli_bin)
    with _removed_on_failure([s.data_dir for s in servers], parents):
        _start_all(servers)
        try:
            backend.create()
        except BaseException:
            backend.stop()
            raise
    return backend


@contextlib.contextmanager
def _removed_on_failure(data_dirs: list[Path], parents: list[Path]) -> Iterator[None]:
    """On any exception: delete ``data_dirs``, then ``parents`` if they are empty (the state
    folder may hold the other kind's backend), and re-raise."""
    try:
        yield
    except BaseException:
        for folder in data_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        for folder in parents:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _start_all(servers: list[RedisServer]) -> None:
    started: list[RedisServer] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
    except BaseException:
        for server in started:
            server.stop()
        raise


# -- state folder for bench up / status / down ------------------------------------------------


def _state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"


def load_state(state_dir: Path) -> dict[str, Any]:
    """The state file's entries; {} when there is none or it is unreadable (see :func:`down`)."""
    try:
        state = json.loads(_state_file(state_dir).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _state_unreadable(state_dir: Path) -> bool:
    path = _state_file(state_dir)
    return path.exists() and not load_state(state_dir)


def save_backend(state_dir: Path, backend: Backend, server_bin: str) -> None:
    state = load_state(state_dir)
    embedded = [s for s in backend.servers if isinstance(s, RedisServer)]  # every one, in a backend bench up started
    entry: dict[str, Any] = {
        "servers": [{"port": s.port, "pid": s.pid, "dir": str(s.data_dir)} for s in embedded],
        "server_bin": server_bin,
    }
    if isinstance(backend, ClusterBackend):
        entry |= {"masters": backend.masters, "replicas": backend.replicas, "node_timeout_ms": backend.node_timeout_ms}
    state[backend.kind] = entry
    state_dir.mkdir(parents=True, exist_ok=True)
    # Atomic: a crash or a kill mid-write leaves the old file or the new one, never half of one.
    tmp = state_dir / f"state.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, _state_file(state_dir))


def attach(state_dir: Path, kind: str) -> Backend | None:
    """The running backend ``bench up`` recorded, or None (also when its entry is malformed)."""
    entry = load_state(state_dir).get(kind)
    if not entry:
        return None
    try:
        servers = [
            RedisServer(entry["server_bin"], int(s["port"]), Path(s["dir"]), owned=False, pid=s["pid"])
            for s in entry["servers"]
        ]
        if kind == "standalone":
            return StandaloneBackend(servers[0])
        return ClusterBackend(servers, entry["masters"], entry["replicas"], entry["node_timeout_ms"])
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def down(state_dir: Path) -> list[str]:
    """Stop every server ``bench up`` started in the state folder and delete their data.
    Idempotent. Servers are found through the state file and through the ``server.pid`` file in
    each data folder (``KIND/PORT/server.pid``), so a corrupt or missing state file (e.g. a
    ``bench up`` killed before writing it) still finds them. A pid is signalled only if it is
    still a redis/valkey server on that port. Returns what was stopped, and how it was found."""
    unreadable = _state_unreadable(state_dir)
    stopped = []
    for kind in ("standalone", "cluster"):
        found: dict[int, tuple[int, str]] = {}  # pid -> (port, how it was found)
        backend = attach(state_dir, kind)
        for server in backend.servers if backend is not None else []:
            if server.pid is not None:
                found[server.pid] = (server.port, "")
        how = ", found by its pid file: state.json unreadable" if unreadable else ", found by its pid file"
        for pid, port in _pid_files(state_dir / kind):
            found.setdefault(pid, (port, how))
        for pid, (port, note) in found.items():
            if pid_is_redis(pid, port):
                RedisServer("", port, state_dir / kind / str(port), owned=False, pid=pid).stop()
                stopped.append(f"{kind} {LOOPBACK}:{port} (pid {pid}{note})")
        shutil.rmtree(state_dir / kind, ignore_errors=True)
    _state_file(state_dir).unlink(missing_ok=True)
    for tmp in state_dir.glob("state.json.*.tmp"):  # left by a writer killed mid-write
        tmp.unlink(missing_ok=True)
    return stopped


def _pid_files(kind_dir: Path) -> list[tuple[int, int]]:
    """(pid, port) from each ``PORT/server.pid`` under ``kind_dir`` that parses."""
    found = []
    for pid_file in sorted(kind_dir.glob("*/server.pid")):
        try:
            found.append((int(pid_file.read_text().strip()), int(pid_file.parent.name)))
        except (OSError, ValueError):
            continue
    return found


def effective_of(target: Target) -> dict[str, Any]:
    """Effective server settings of any backend (embedded or external), read-only. Servers that
    refuse CONFIG GET (managed Redis) still report INFO."""

    def safe(r: redis.Redis) -> dict[str, Any]:
        try:
            return read_effective(r)
        except redis.ResponseError:
            info = r.info()
            return {
                **server_report(info),
                "role": info.get("role"),
                "maxmemory": info.get("maxmemory"),
                "maxmemory_policy": info.get("maxmemory_policy"),
            }

    if target.redis_url is None:
        addresses: list[tuple[str, int]] = []
        for host, port in target.nodes():
            try:  # every node the cluster knows (CLUSTER SLOTS would omit replicas still syncing)
                with redis.Redis(host=host, port=port, socket_timeout=2) as seed:
                    known = parse_cluster_nodes(raw_text(seed, "CLUSTER NODES"))
                addresses = sorted(
                    {
                        (n.address.rsplit(":", 1)[0], int(n.address.rsplit(":", 1)[1]))
                        for n in known
                        if "noaddr" not in n.flags
                    }
                )
                break
            except redis.RedisError:
                continue
        nodes = {}
        for h, p in addresses:  # every node, replicas included, each through its own connection
            with redis.Redis(host=h, port=p, socket_timeout=2) as node:
                try:
                    nodes[f"{h}:{p}"] = safe(node)
                except redis.RedisError as exc:
                    nodes[f"{h}:{p}"] = {"error": str(exc)}
        return {"backend": "cluster", "nodes": nodes}
    client = redis.Redis.from_url(target.redis_url, socket_timeout=2)
    try:
        return {
            "backend": "standalone",
            "nodes": {
                f"{client.connection_pool.connection_kwargs['host']}:"
                f"{client.connection_pool.connection_kwargs['port']}": safe(client)
            },
        }
    finally:
        client.close()

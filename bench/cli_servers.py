"""``bench up``, ``bench status``, ``bench down``: embedded backends that stay up between commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from . import backends, docker, validate
from .backends import BackendSpec
from .cli_common import add_server_options, console
from .errors import UsageError
from .servers import find_server_bin
from .tables import external_table, status_table


def _add_up(sub: Any) -> None:
    up = sub.add_parser("up", help="start an embedded backend (stays up until `bench down`)")
    up_sub = up.add_subparsers(dest="backend", required=True, metavar="BACKEND")
    sa = up_sub.add_parser("standalone", help="one redis-server on 127.0.0.1")
    sa.add_argument("--port", type=int, default=6379)
    cl = up_sub.add_parser("cluster", help="a Redis Cluster of redis-server processes (default 3 masters + 3 replicas)")
    cl.add_argument("--base-port", type=int, default=7000)
    cl.add_argument("--node-timeout", type=int, default=backends.DEFAULT_NODE_TIMEOUT_MS, metavar="MS")
    cl.add_argument("--masters", type=int, default=3)
    cl.add_argument("--replicas", type=int, default=1, help="replicas per master")
    cl.add_argument("--docker", action="store_true", help="use docker-compose.redis-cluster.yml instead")
    for p in (sa, cl):
        p.add_argument("--maxmemory", help="e.g. 64mb")
        p.add_argument("--maxmemory-policy", choices=validate.POLICIES, metavar="POLICY")
        add_server_options(p)


def _add_status(sub: Any) -> None:
    status = sub.add_parser("status", help="nodes, roles, slots, memory, policy and state of running backends")
    add_server_options(status)
    status.add_argument("--redis-url", help="also show an external standalone server (read-only)")
    status.add_argument("--cluster-nodes", help="also show an external cluster, host:port[,host:port…] (read-only)")


def _add_down(sub: Any) -> None:
    down = sub.add_parser("down", help="stop everything `bench up` started and delete its data (idempotent)")
    add_server_options(down)
    down.add_argument("--docker", action="store_true", help="also `docker compose down -v` the compose cluster")


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or backends.default_state_dir()
    if args.maxmemory:
        validate.maxmemory_bytes(args.maxmemory)
    if args.backend == "cluster" and args.docker:
        docker.compose("up", "-d")
        docker.wait_cluster_ok()
        console.print(f"compose cluster up: {','.join(docker.COMPOSE_NODES)}")
        return 0
    if backends.attach(state_dir, args.backend) is not None:
        raise UsageError(f"a {args.backend} backend is already recorded in {state_dir}; run `bench down` first")
    spec = BackendSpec(
        kind=args.backend,
        port=args.port if args.backend == "standalone" else args.base_port,
        masters=getattr(args, "masters", 3),
        replicas=getattr(args, "replicas", 1),
        node_timeout_ms=getattr(args, "node_timeout", backends.DEFAULT_NODE_TIMEOUT_MS),
        maxmemory=args.maxmemory,
        maxmemory_policy=args.maxmemory_policy,
        server_bin=args.server_bin,
        state_dir=state_dir,
        owned=False,
    )
    backend = backends.start_backend(spec)
    backends.save_backend(state_dir, backend, find_server_bin(args.server_bin))
    if isinstance(backend, backends.StandaloneBackend):
        console.print(f"standalone up: REDIS_URL={backend.url}")
    else:
        console.print(f"cluster up: REDIS_CLUSTER_ENABLED=true REDIS_CLUSTER_NODES={','.join(backend.nodes)}")
    if args.maxmemory_policy and args.maxmemory_policy != "noeviction":
        console.print(f"[yellow]warning: maxmemory-policy {args.maxmemory_policy} can delete queued tasks[/]")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or backends.default_state_dir()
    found = False
    if args.redis_url or args.cluster_nodes:
        console.print(external_table(args.redis_url, args.cluster_nodes))
        found = True
    for kind in ("standalone", "cluster"):
        backend = backends.attach(state_dir, kind)
        if backend is None:
            continue
        found = True
        console.print(status_table(backend))
    if not found:
        console.print(f"no backend recorded in {state_dir} (start one with `bench up standalone|cluster`)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or backends.default_state_dir()
    stopped = backends.down(state_dir)
    if args.docker:
        removed = docker.down()
        if removed:
            stopped.append(f"compose cluster ({len(removed)} containers; its network and volumes removed)")
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


PARSERS: dict[str, Callable[[Any], None]] = {"up": _add_up, "status": _add_status, "down": _add_down}
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"up": cmd_up, "status": cmd_status, "down": cmd_down}

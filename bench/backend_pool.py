"""The backends of one run (``bench run``, ``bench capacity``): which backend a cell runs on, and that
backend made ready for it.

Embedded backends are started on first use (one per kind and server binary) and stopped at the end with
their temporary folder; an external one is the user's, checked against what the cells ask before anything
starts. Before every cell (or capacity step) :meth:`BackendPool.prepare` makes the backend healthy, flushed,
configured as the cell asks and its counters reset, the same way for every kind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from . import adapters, netns
from .backend_kinds import Backend, ClusterBackend
from .backends import BackendSpec, start_backend
from .errors import UsageError
from .external import External
from .ports import free_port
from .scenario import Cell

RunBackend = Backend | External


def refuse_unsupported(cells: Sequence[Cell], external: External | None) -> None:
    """Refuse before anything starts: unknown adapters, what the chosen backend cannot do."""
    for spec in {c.params["queue"] for c in cells if c.params["queue"]}:
        adapters.resolve(spec)
    partitioned = netns.wanted(cells)
    if partitioned and (external is not None or not netns.inside()):
        raise UsageError(
            f"cells {netns.named(partitioned)} {netns.purpose(cells)}: they run on the embedded servers inside "
            "the private network namespace `bench run` makes for them (bench.netns), not here"
        )
    if external is None:
        return
    for cell in cells:
        if cell.params["backend"] != external.kind:
            wanted = cell.params["backend"]
            raise UsageError(f"cell [{cell.id}] needs a {wanted} backend, the external one is {external.kind}")
        fault = cell.params["fault"]
        if fault != "none" and not external.docker:
            if fault not in ("failover", "failover-force"):
                raise UsageError(
                    f"cell [{cell.id}]: fault {fault!r} needs servers this suite runs (embedded or "
                    "--docker); on your own cluster only failover and failover-force are possible"
                )
            if not external.allow_failover:
                raise UsageError(f"cell [{cell.id}]: a {fault} on your own cluster needs --allow-failover")
        if not external.allow_flush:
            raise UsageError(
                "bench run flushes and reconfigures the backend before every cell; on your own server that "
                "needs --allow-flush (it deletes ALL data there)"
            )


def cell_config(params: dict[str, Any]) -> dict[str, str]:
    """The server settings a cell asks for (maxmemory 0 = unlimited)."""
    config = {"maxmemory": str(params["maxmemory"]), "maxmemory-policy": params["maxmemory_policy"]}
    if params["backend"] == "cluster":  # protection on the servers' side: too few good replicas, writes refused
        config["min-replicas-to-write"] = str(params["min_replicas_to_write"])
        config["min-replicas-max-lag"] = str(params["min_replicas_max_lag"])
    return config


class BackendPool:
    """``started(key, addresses)`` is called when an embedded backend has started, so the caller can put
    its servers on disk at once (which servers to look for, even after a SIGKILL)."""

    def __init__(
        self,
        *,
        server_bin: str | None,
        external: External | None,
        console: Console,
        started: Callable[[str, list[str]], None],
    ) -> None:
        self.server_bin, self.external, self.console, self.started = server_bin, external, console, started
        self.state_dir: Path | None = None  # bench-run-*: made with the first embedded backend
        self.embedded: dict[str, Backend] = {}

    def backend_for(self, params: dict[str, Any]) -> RunBackend:
        if self.external is not None:
            if params["fault"] != "none" and self.external.cluster_nodes:  # faults need the live topology
                from .remote import remote_cluster

                return remote_cluster(self.external.target.nodes(), docker=self.external.docker)
            return self.external
        kind = params["backend"]
        server_bin = params.get("server_bin") or self.server_bin
        key = f"{kind}:{server_bin or ''}"
        if key not in self.embedded:
            span = 6 if kind == "cluster" else 1
            port = free_port(span=span, start=20000 if kind == "cluster" else 21000, bus_offset=10000)
            if self.state_dir is None:
                self.state_dir = Path(tempfile.mkdtemp(prefix="bench-run-"))
            where = (
                f"127.0.0.2…127.0.0.{1 + span}, ports {port}+"
                if kind == "cluster" and netns.inside()
                else f"127.0.0.1:{port}"
            )
            self.console.print(f"starting embedded {kind} ({server_bin or 'default server'}) on {where} …")
            spec = BackendSpec(
                kind=kind,
                port=port,
                server_bin=server_bin,
                state_dir=self.state_dir / f"{kind}-{len(self.embedded)}",
                node_timeout_ms=params["node_timeout"],
                # In the network-fault namespace: one loopback address per node, so rules can cut single links;
                # an old master rejoining as a replica resyncs at once (not after the 5 s diskless-sync delay).
                node_addresses=kind == "cluster" and netns.inside(),
                extra_config={"repl-diskless-sync-delay": "0"} if kind == "cluster" and netns.inside() else {},
            )
            self.embedded[key] = start_backend(spec)
            self.started(key, [s.address for s in self.embedded[key].servers])
        return self.embedded[key]

    def prepare(self, backend: RunBackend, params: dict[str, Any]) -> None:
        """Healthy, flushed, and configured as the cell asks, with fresh counters."""
        config = cell_config(params)
        if isinstance(backend, ClusterBackend) and self.external is None:
            # Only the suite's own cluster: someone else's keeps its node timeout (recorded as read).
            config["cluster-node-timeout"] = str(params["node_timeout"])
            backend.node_timeout_ms = params["node_timeout"]
        backend.prepare(config)

    def close(self, *, keep: bool = False) -> None:
        """Stop the embedded backends and remove their temporary folder (unless ``keep``, for debugging)."""
        try:
            for backend in self.embedded.values():
                backend.stop()
        finally:
            if self.state_dir is not None:
                if keep:
                    self.console.print(f"kept the run's temporary folder (server data and logs): {self.state_dir}")
                else:
                    shutil.rmtree(self.state_dir, ignore_errors=True)

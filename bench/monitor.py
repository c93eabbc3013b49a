"""Server INFO snapshots every second during a cell (memory, evictions and other counters, role, clients)."""

from __future__ import annotations

import csv
import itertools
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from .servers import ServerNode

COUNTERS = ("evicted_keys", "expired_keys", "rejected_connections", "total_commands_processed")
FIELDS = (
    *("epoch_s", "node", "role", "used_memory", "maxmemory", *COUNTERS, "connected_clients", "ops_per_sec"),
    "used_cpu_s",  # user + sys since the server started: its CPU between two samples, beside the load's
)


class InfoSampler(threading.Thread):
    def __init__(self, servers: Sequence[ServerNode], interval_s: float = 1.0) -> None:
        super().__init__(name="info-sampler", daemon=True)
        self.servers, self.interval_s = servers, interval_s
        self.rows: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        clients = {s.address: s.client(0.5) for s in self.servers}
        try:
            while not self._halt.is_set():
                now = time.time()
                for address, client in clients.items():
                    try:
                        info = client.info()
                    except redis.RedisError:  # down or paused: that is data too
                        self.rows.append({"epoch_s": round(now, 3), "node": address, "role": "unreachable"})
                        continue
                    self.rows.append(
                        {
                            "epoch_s": round(now, 3),
                            "node": address,
                            "role": info.get("role"),
                            "used_memory": info.get("used_memory"),
                            "maxmemory": info.get("maxmemory"),
                            **{name: info.get(name) for name in COUNTERS},
                            "connected_clients": info.get("connected_clients"),
                            "ops_per_sec": info.get("instantaneous_ops_per_sec"),
                            "used_cpu_s": round(
                                float(info.get("used_cpu_user", 0)) + float(info.get("used_cpu_sys", 0)), 3
                            ),
                        }
                    )
                self._halt.wait(self.interval_s)
        finally:
            for client in clients.values():
                client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def write(self, path: Path, start_epoch: float) -> list[dict[str, Any]]:
        """info.csv, seconds from the load's start; returns the rows written."""
        rows = [{"t_s": round(row["epoch_s"] - start_epoch, 3), **row} for row in self.rows]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=("t_s", *FIELDS))
            writer.writeheader()
            writer.writerows(rows)
        return rows

    def peak(self, field: str) -> int:
        return max((int(r.get(field) or 0) for r in self.rows), default=0)

    def counters(self) -> dict[str, int]:
        """Server counters over the cell, summed over nodes: each node's highest reading (the
        counters were reset when the cell was prepared, so they are the cell's own)."""
        out = {}
        for name in COUNTERS:
            per_node: dict[str, int] = {}
            for r in self.rows:
                per_node[r["node"]] = max(per_node.get(r["node"], 0), int(r.get(name) or 0))
            out[name] = sum(per_node.values())
        return out

    def cores(self) -> dict[str, Any]:
        """The servers' CPU over the samples, in cores: the busiest node's and all nodes' together."""
        return server_cores(self.rows)


def server_cores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per node, CPU seconds between its first and last reachable sample / the seconds between them; the
    busiest node and the sum ({} with fewer than two samples of any node). A restarted node (its counter
    went down) counts from its restart."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get("used_cpu_s") is not None and r.get("role") != "unreachable":
            spans.setdefault(r["node"], []).append((float(r["epoch_s"]), float(r["used_cpu_s"])))
    per_node = {}
    for node, points in spans.items():
        used = sum(b[1] - a[1] for a, b in itertools.pairwise(points) if b[1] >= a[1])
        elapsed = points[-1][0] - points[0][0]
        if elapsed > 0:
            per_node[node] = round(used / elapsed, 3)
    if not per_node:
        return {}
    busiest = max(per_node, key=lambda n: per_node[n])
    return {"busiest": per_node[busiest], "busiest_node": busiest, "total": round(sum(per_node.values()), 3)}

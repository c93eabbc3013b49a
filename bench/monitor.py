"""Server INFO snapshots every second during a cell (memory, evictions and other counters, role, clients)."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from .servers import ServerNode

COUNTERS = ("evicted_keys", "expired_keys", "rejected_connections", "total_commands_processed")
FIELDS = ("epoch_s", "node", "role", "used_memory", "maxmemory", *COUNTERS, "connected_clients", "ops_per_sec")


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

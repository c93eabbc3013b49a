"""Once a second during a cell, what the load sees from outside: the queue's depth and in-flight
leases (through the queue adapter, as the drain reads them) and the resident memory and CPU seconds of
the Locust process tree (master plus ``--processes`` workers). Soak runs compare these over time (bench.drift):
a backlog or a lease set that grows, or a load generator that leaks, is what a soak is for."""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from pathlib import Path
from typing import Any

import psutil

FIELDS = ("t_s", "depth", "inflight", "load_rss_bytes", "load_processes", "load_cpu_s")


def tree_rss(pid: int) -> tuple[int, int]:
    """(bytes resident, process count) of ``pid`` and all its descendants; (0, 0) once it is gone."""
    rss, count, _ = tree_usage(pid)
    return rss, count


def tree_usage(pid: int) -> tuple[int, int, float | None]:
    """(bytes resident, process count, CPU seconds user + system) of ``pid`` and all its descendants;
    descendants it has reaped count in its own children's times. (0, 0, None) once it is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0, None
    total = count = 0
    cpu = 0.0
    for proc in procs:
        try:
            total += proc.memory_info().rss
            times = proc.cpu_times()
            cpu += times.user + times.system
            if proc is root:
                cpu += times.children_user + times.children_system
            count += 1
        except psutil.Error:  # exited between the listing and the read
            continue
    return total, count, round(cpu, 3)


class LoadProbe(threading.Thread):
    """Samples until stopped. ``queue`` is any adapter with ``depth()``/``inflight()``/``close()``
    (or None: memory only); a failed read (a failover in progress) is an empty cell, not a zero."""

    def __init__(self, pid: int, queue: Any, interval_s: float = 1.0) -> None:
        super().__init__(name="load-probe", daemon=True)
        self.pid, self.queue, self.interval_s = pid, queue, interval_s
        self.rows: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self.rows.append(self.sample())
                self._halt.wait(self.interval_s)
        finally:
            if self.queue is not None:
                self.queue.close()

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch_s": time.time(), "depth": None, "inflight": None}
        if self.queue is not None:
            with contextlib.suppress(Exception):
                row["depth"], row["inflight"] = int(self.queue.depth()), int(self.queue.inflight())
        row["load_rss_bytes"], row["load_processes"], row["load_cpu_s"] = tree_usage(self.pid)
        return row

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def write(self, path: Path, start_epoch: float, end_epoch: float) -> list[dict[str, Any]]:
        """probes.csv, seconds from the load's start, up to its end (Locust's shutdown is not the load)."""
        rows = [
            {"t_s": round(r["epoch_s"] - start_epoch, 3), **{k: r[k] for k in FIELDS[1:]}}
            for r in self.rows
            if r["load_processes"] and r["epoch_s"] <= end_epoch
        ]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        return rows

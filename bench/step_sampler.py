"""What a ``bench capacity`` step costs, sampled beside Locust: the queue depth, every server node's CPU time
and command count (``INFO cpu`` / ``stats``), the CPU time of the load processes (psutil, children included)
and of the host; and over a step's measured window, the depth slope and CPU in cores that decide "backlog"
and "harness-bound"."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import redis

from taskqueue import TaskQueueError

from .backend_pool import RunBackend
from .external import External

SAMPLE_INTERVAL_S = 0.5


class StepSampler(threading.Thread):
    """Every ``interval`` s: queue depth, per-node CPU seconds and commands, the load processes' CPU
    seconds (per pid), the host's busy/total CPU seconds."""

    def __init__(
        self, nodes: dict[str, redis.Redis], queue: Any, pids: list[int], interval: float = SAMPLE_INTERVAL_S
    ) -> None:
        super().__init__(name="capacity-sampler", daemon=True)
        self.nodes, self.queue, self.pids, self.interval = nodes, queue, pids, interval
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(self.sample())
            self._halt.wait(self.interval)

    def sample(self) -> dict[str, Any]:
        now = time.time()
        depth: int | None = None
        if self.queue is not None:
            try:
                depth = int(self.queue.depth())
            except (TaskQueueError, redis.RedisError):
                depth = None
        cpu, cmds = {}, {}
        for address, client in self.nodes.items():
            try:
                info = client.info("cpu", "stats")
            except redis.RedisError:
                continue
            cpu[address] = float(info.get("used_cpu_sys", 0)) + float(info.get("used_cpu_user", 0))
            cmds[address] = int(info.get("total_commands_processed", 0))
        generator: dict[int, float] = {}
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        times = proc.cpu_times()
                        generator[proc.pid] = times.user + times.system
                    except psutil.Error:
                        continue
            except psutil.Error:
                continue
        host = psutil.cpu_times()
        idle = host.idle + getattr(host, "iowait", 0.0)
        total = sum(host)
        return {"t": now, "depth": depth, "cpu": cpu, "cmds": cmds, "gen": generator, "host": (total - idle, total)}

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over t (per second); None for fewer than two distinct times."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var


def _rate(first: dict[Any, float], last: dict[Any, float], seconds: float) -> dict[Any, float]:
    return {k: max(0.0, (last[k] - first[k]) / seconds) for k in last if k in first}


def window_metrics(samples: list[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """Depth slope and CPU over the samples taken within [t0, t1] (the measured window)."""
    inside = [s for s in samples if t0 <= s["t"] <= t1]
    out: dict[str, Any] = {
        "depth_slope": None,
        "depth_start": None,
        "depth_end": None,
        "server_cpu": None,
        "server_ops": None,
        "generator_cpu": None,
        "generator_cpu_total": None,
        "host_cpu": None,
        "other_cpu": None,
        "samples": len(inside),
    }
    depths = [(s["t"], s["depth"]) for s in inside if s["depth"] is not None]
    if depths:
        out["depth_start"], out["depth_end"] = depths[0][1], depths[-1][1]
        d = slope([(t, float(v)) for t, v in depths])
        out["depth_slope"] = None if d is None else round(d, 2)
    if len(inside) < 2:
        return out
    first, last = inside[0], inside[-1]
    seconds = last["t"] - first["t"]
    if seconds <= 0:
        return out
    cpu = _rate(first["cpu"], last["cpu"], seconds)
    cmds = _rate(first["cmds"], last["cmds"], seconds)
    gen = _rate(first["gen"], last["gen"], seconds)
    out["server_cpu"] = round(max(cpu.values()), 3) if cpu else None
    out["server_ops"] = round(max(cmds.values()), 1) if cmds else None
    out["generator_cpu"] = round(max(gen.values()), 3) if gen else None
    out["generator_cpu_total"] = round(sum(gen.values()), 3) if gen else None
    busy, total = last["host"][0] - first["host"][0], last["host"][1] - first["host"][1]
    out["host_cpu"] = round(busy / total, 3) if total > 0 else None
    if out["host_cpu"] is not None:  # what the rest of the host took: a shared machine's noise, named
        ours = sum(cpu.values()) + sum(gen.values())
        out["other_cpu"] = round(max(0.0, out["host_cpu"] * (psutil.cpu_count() or 1) - ours), 3)
    return out


def node_clients(backend: RunBackend) -> dict[str, redis.Redis]:
    """A client per server node (replicas included): INFO cpu/stats only, read-only."""
    if isinstance(backend, External):
        return backend.node_clients()
    return {s.address: s.client(1.0) for s in backend.servers if s.is_alive()}

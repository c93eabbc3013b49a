"""A cell's network round trip: the delay line its ``rtt_ms`` / ``node_rtt_ms`` / ``jitter_ms`` ask for,
started after the backend is prepared and stopped after the drain, and the round trips measured through it
before the load (summary.json ``network``).

What the cell records is what was measured, not only what was asked: PING from the client's address to
every master, and from every replica to its master where ``node_rtt_ms`` is set. A measured p50 more than
``TOLERANCE`` off the configured round trip flags the cell (console, report): its figures are about the
measured network, not the asked one. The delay line's own CPU is recorded beside it, since on a 2-core
machine it competes with the load and the servers.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from .backend_kinds import ClusterBackend
from .netns import CLIENT_ADDRESS, delayed

TOLERANCE = 0.2  # measured p50 off the configured round trip by more than this share: flagged
PINGS = 100  # per target, before the load


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def configured(params: dict[str, Any]) -> dict[str, float]:
    return {key: float(params.get(key) or 0.0) for key in ("rtt_ms", "node_rtt_ms", "jitter_ms")}


def summarize(per_target: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per-target PING p50/p99 (µs) -> the cell's figure: median of the p50s, worst p99, and each target."""
    if not per_target:
        return {}
    return {
        "p50_us": round(statistics.median(t["p50_us"] for t in per_target.values()), 1),
        "p99_us": round(max(t["p99_us"] for t in per_target.values()), 1),
        "per_target": per_target,
    }


def off_by(measured_us: float | None, configured_ms: float) -> float | None:
    """The measured p50's relative error against the configured round trip (None: nothing configured)."""
    if not configured_ms or measured_us is None:
        return None
    return measured_us / (1000.0 * configured_ms) - 1.0


def problems(record: dict[str, Any]) -> list[str]:
    """Why a cell's measured network is not the configured one ([] when it is, within TOLERANCE)."""
    out = []
    conf, measured = record.get("configured", {}), record.get("measured", {})
    checks = (
        ("rtt_ms", "client_rtt", "client RTT"),
        ("rtt_ms", "client_rtt_under_load", "client RTT under load"),
        ("node_rtt_ms", "node_rtt", "node RTT"),
    )
    for key, figure, what in checks:
        p50 = (measured.get(figure) or {}).get("p50_us")
        error = off_by(p50, conf.get(key, 0.0))
        if p50 is not None and error is not None and abs(error) > TOLERANCE:
            out.append(f"{what} p50 {p50 / 1000:.2f} ms, configured {conf[key]:g} ms ({100 * error:+.0f} %)")
        elif conf.get(key) and p50 is None and figure != "client_rtt_under_load":
            out.append(f"{what} configured {conf[key]:g} ms but not measured")
    return out


def combine(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A cell's network over its repeats: the first repeat's record, with every repeat's problems."""
    if not records:
        return None
    seen = [p for r in records for p in r.get("problems", [])]
    first = dict(records[0])
    first["problems"] = list(dict.fromkeys(seen))
    first["flagged"] = bool(seen)
    return first


class CellNetwork:
    """The delay line of one repeat, and what was measured through it."""

    def __init__(self, backend: Any, params: dict[str, Any]) -> None:
        from .delayline import DelayLine

        self.configured = configured(params)
        servers = list(backend.servers)
        self.masters = [_host_port(s.address) for s in servers]
        self.replica_links: list[tuple[str, tuple[str, int]]] = []  # (replica host, its master)
        node_addresses: list[str] = []
        if isinstance(backend, ClusterBackend):
            nodes = backend.topology()
            by_id = {n.id: n for n in nodes}
            self.masters = [_host_port(n.address) for n in nodes if n.is_master and not n.failed]
            for node in nodes:
                master = by_id.get(node.master_id or "")
                if not node.is_master and master is not None:
                    self.replica_links.append((_host_port(node.address)[0], _host_port(master.address)))
            node_addresses = sorted({_host_port(s.address)[0] for s in servers})
        self.line = DelayLine(
            [_host_port(s.address) for s in servers],
            rtt_ms=self.configured["rtt_ms"],
            node_rtt_ms=self.configured["node_rtt_ms"],
            jitter_ms=self.configured["jitter_ms"],
            client_address=CLIENT_ADDRESS,
            node_addresses=node_addresses,
        )
        self.measured: dict[str, Any] = {}
        self.under_load_at = under_load_at(params)
        self._timer: threading.Timer | None = None
        self.lateness: dict[str, Any] = {}
        self.started_at: float | None = None
        self.cpu_s = 0.0
        self.packets = 0
        self.elapsed_s = 0.0
        self.stopped = False

    def start(self) -> None:
        self.line.start()
        self.started_at = time.monotonic()
        self.measured["client_rtt"] = summarize(self.line.measure(self.masters, source=CLIENT_ADDRESS, count=PINGS))
        if self.configured["node_rtt_ms"] and self.replica_links:
            per_link: dict[str, dict[str, float]] = {}
            for replica, master in self.replica_links:
                for target, figures in self.line.measure([master], source=replica, count=PINGS).items():
                    per_link[f"{replica}->{target}"] = figures
            self.measured["node_rtt"] = summarize(per_link)
        with contextlib.suppress(RuntimeError, OSError):  # the lateness figures then cover the load only
            self.line.reset_lateness()
        # Once more while the load runs (before any fault): the round trip the load saw, delay line and CPU
        # contention included, which the idle PING above does not show.
        self._timer = threading.Timer(self.under_load_at, self._measure_under_load)
        self._timer.daemon = True
        self._timer.start()

    def _measure_under_load(self) -> None:
        try:
            figures = summarize(self.line.measure(self.masters, source=CLIENT_ADDRESS, count=PINGS // 2))
            self.measured["client_rtt_under_load"] = {**figures, "at_s": round(self.under_load_at, 2)}
        except Exception as exc:  # a PING timed out (a fault, a stopped line): said, not a crash of the cell
            self.measured["client_rtt_under_load"] = {"error": f"{type(exc).__name__}: {exc}"}

    def stop(self) -> None:
        """Idempotent: the first stop (the load's end) is the one measured."""
        if self.stopped:
            return
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        with contextlib.suppress(OSError):  # the delayer is gone already: keep what was read last
            self.cpu_s, self.packets = self.line.cpu_seconds(), self.line.packets()
            stats = self.line.stats()
            self.lateness = {k: stats[k] for k in sorted(stats) if k.startswith("late")}
        if self.started_at is not None:
            self.elapsed_s = time.monotonic() - self.started_at
        self.line.stop()

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "configured": self.configured,
            "measured": self.measured,
            "delay_line": {
                **self.line.describe(),
                "cpu_s": round(self.cpu_s, 3),
                "cores": round(self.cpu_s / self.elapsed_s, 3) if self.elapsed_s else None,
                "packets": self.packets,
                "cpu_us_per_packet": round(1e6 * self.cpu_s / self.packets, 2) if self.packets else None,
                "release_lateness_us": self.lateness,  # how late packets left the delay line during the load
            },
        }
        record["problems"] = problems(record)
        record["flagged"] = bool(record["problems"])
        return record


def under_load_at(params: dict[str, Any]) -> float:
    """When to PING during the load (s after it starts): halfway through the measured part, or halfway to
    the fault when there is one (``fault_at`` 0 means a third of the duration)."""
    warmup, duration = float(params.get("warmup") or 0.0), float(params["duration"])
    if params.get("fault", "none") != "none":
        fault_at = float(params.get("fault_at") or 0.0) or duration / 3
        return max(0.5, fault_at / 2)
    return warmup + (duration - warmup) / 2


def start(backend: Any, params: dict[str, Any], cell_id: str, console: Console) -> CellNetwork | None:
    """The cell's delay line, started and measured (None for a cell on loopback). A measured round trip
    off the configured one is said at once; the cell still runs and is flagged."""
    if not delayed(params):
        return None
    net = CellNetwork(backend, params)
    try:
        net.start()
    except BaseException:
        net.stop()
        raise
    for problem in problems({"configured": net.configured, "measured": net.measured}):
        console.print(f"[yellow]warning: cell {escape(repr(cell_id))}: {escape(problem)}: flagged[/]")
    return net

"""One fault kind repeated every N seconds through a long cell (a soak's graceful failovers).

Each repetition is a whole :class:`bench.faults.FaultInjector` run followed by the checked
:func:`bench.faults.restore`, so the next fault only starts on a healthy cluster. Each hits the
partition's *current* master: after a graceful failover that is the old replica, so failovers
alternate between the two nodes. When a restore fails the series stops: a fault on a cluster that
has not recovered would measure the previous fault, not this one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from . import faults
from .backend_kinds import ClusterBackend

RESTORED_SLACK_S = 1.0


class RepeatedFault(threading.Thread):
    def __init__(
        self,
        backend: ClusterBackend,
        kind: str,
        queue: str,
        partition: int,
        first_at: float,
        every_s: float,
        until: float,
        hold_s: float | None = None,
        restore_timeout: float = 60.0,
    ) -> None:
        super().__init__(name=f"repeated-{kind}", daemon=True)
        self.backend, self.kind, self.queue, self.partition = backend, kind, queue, partition
        self.first_at, self.every_s, self.until, self.hold_s = first_at, every_s, until, hold_s
        self.restore_timeout = restore_timeout
        self.done: list[faults.FaultEvents] = []
        self.current: faults.FaultInjector | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        at = self.first_at
        while not self._halt.is_set() and at < self.until:
            injector = faults.FaultInjector(self.backend, self.kind, self.queue, self.partition, at, self.hold_s)
            self.current = injector
            injector.start()
            while injector.is_alive() and not self._halt.is_set():
                injector.join(0.2)
            events = faults.restore(self.backend, injector, self.restore_timeout)
            self.current = None
            if events is None or (events.injected_at is None and not events.error):  # halted before it went in
                break
            self.done.append(events)  # one that could not go in is kept too: its error says why the series stopped
            if events.error or events.restore_problems:
                break
            at = max(at + self.every_s, time.time())

    def cancel(self) -> None:
        """Stop injecting now (interrupted); the fault in progress is healed by its restore."""
        self._halt.set()
        current = self.current
        if current is not None:
            current.cancel()

    def finish(self, restore_timeout: float) -> list[faults.FaultEvents]:
        """Stop injecting, restore the one in progress (within ``restore_timeout``) and return every
        injected fault's events, in order."""
        self.restore_timeout = restore_timeout
        self.cancel()
        self.join(timeout=restore_timeout + 30)
        return list(self.done)


def start(
    backend: ClusterBackend, params: dict[str, Any], queue_name: str, started: float
) -> faults.FaultInjector | RepeatedFault:
    """The cell's fault, once at ``fault_at`` (0 = a third into the load) or every ``fault_every`` s."""
    first_at = started + (params["fault_at"] or params["duration"] / 3)
    hold_s = params["fault_duration"] or None
    injector: faults.FaultInjector | RepeatedFault
    if params["fault_every"]:
        until = started + params["duration"]
        injector = RepeatedFault(
            backend,
            params["fault"],
            queue_name,
            params["fault_partition"],
            first_at,
            params["fault_every"],
            until,
            hold_s,
        )
    else:
        injector = faults.FaultInjector(
            backend, params["fault"], queue_name, params["fault_partition"], first_at, hold_s
        )
    injector.start()
    return injector


def finish(
    backend: Any, injector: faults.FaultInjector | RepeatedFault | None, heal_s: float
) -> list[faults.FaultEvents] | None:
    """Every injected fault's events once the cluster is restored (and checked); None: no fault ran."""
    if not isinstance(backend, ClusterBackend) or injector is None:
        return None
    if isinstance(injector, RepeatedFault):
        return injector.finish(heal_s)
    events = faults.restore(backend, injector, heal_s)
    return [events] if events is not None else None


def timelines(
    events: list[faults.FaultEvents], start: float, load: dict[str, Any], partition: int, masters: dict[str, str]
) -> list[dict[str, Any]]:
    """One timeline per injected fault. With repeats, a fault's outage is a success gap that began
    before its cluster was restored (+1 s) and before the next injection: a stall minutes later is
    not that failover's. The client's error window is per partition over the whole run, so with
    repeats it is not split."""
    if len(events) == 1:
        return [faults.timeline(events[0], start, load, partition, masters)]
    events = [e for e in events if e.injected_at is not None]  # a repeat that never went in has no timeline
    ends = [e.injected_at for e in events[1:]] + [None]
    out = []
    for event, next_at in zip(events, ends, strict=True):
        bounds = [t for t in (next_at, event.restored_at and event.restored_at + RESTORED_SLACK_S) if t]
        out.append(faults.timeline(event, start, load, partition, masters, until=min(bounds, default=None)))
    if len(out) > 1:
        for t in out:
            t["error_window_note"] = "first/last error span the whole run (all repeats), not this fault alone"
    return out


def stop_reason(events: list[faults.FaultEvents]) -> str | None:
    """Why a repeated fault stopped before the end: a repeat that could not go in, or a failed restore."""
    for i, e in enumerate(events, start=1):
        if e.error:
            return f"repeat {i}: {e.error}" + ("" if e.injected_at is not None else " (not injected)")
        if e.restore_problems:
            return f"repeat {i}: restore failed: {'; '.join(e.restore_problems[:3])}"
    return None


def summarize(timelines: list[dict[str, Any]], stopped: str | None = None) -> dict[str, Any]:
    """A repeated fault's figures over all its repetitions: how many, and the spread of each
    outage (the longest time without a success on the faulted partition before the next repeat); the
    clients' error windows are per partition over the whole run, so they are not split per repeat."""

    def spread(key: str) -> dict[str, float | None]:
        values = sorted(float(t[key]) for t in timelines if t.get(key) is not None)
        if not values:
            return {"median": None, "max": None}
        mid = len(values) // 2
        median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        return {"median": round(median, 3), "max": round(values[-1], 3)}

    return {
        "count": len(timelines),
        "injected_at_s": [t.get("injected_at_s") for t in timelines],
        "unavailable_s": spread("unavailable_s"),
        "restore_ok": all(t.get("restore_ok") for t in timelines),
        "stopped": stopped,
    }

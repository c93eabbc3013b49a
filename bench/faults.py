"""Faults injected into a running cluster cell, the cluster-side timeline, and the checked restore.

Kinds hit the master that owns a chosen partition: ``kill`` (SIGKILL), ``pause`` (SIGSTOP for
longer than the node timeout, then SIGCONT), ``failover`` (graceful ``CLUSTER FAILOVER`` on its
replica) and ``failover-force`` (``CLUSTER FAILOVER FORCE``). While it runs, a watcher polls
``CLUSTER NODES`` on a healthy node to time when the master was seen failing and when its
replica was seen promoted. Only servers this suite started on 127.0.0.1 are ever touched.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.crc import key_slot

from taskqueue.keys import partition_keys

from .backends import ClusterBackend
from .servers import RedisServer

POLL_S = 0.05


@dataclass
class FaultEvents:
    """Epoch timestamps (s) of what the cluster did; None when it did not happen."""

    kind: str
    target: str = ""
    replica: str = ""
    injected_at: float | None = None
    node_failed_at: float | None = None
    promoted_at: float | None = None
    resumed_at: float | None = None  # pause: SIGCONT sent
    restarted_at: float | None = None  # kill: node started again
    restored_at: float | None = None  # cluster healthy again (checked)
    restore_problems: list[str] = field(default_factory=list)
    error: str | None = None


def target_of(backend: ClusterBackend, queue: str, partition: int) -> tuple[RedisServer, RedisServer, int]:
    """(master, one of its replicas, slot) for a partition of ``queue``."""
    slot = key_slot(partition_keys(queue, partition).ready.encode())
    master = backend.master_of_slot(slot)
    nodes = backend.topology()
    replicas = [n for n in nodes if n.master_id == master.id and not n.failed]
    if not replicas:
        raise RuntimeError(f"master {master.address} has no healthy replica to fail over to")
    return backend.server_at(master.address), backend.server_at(replicas[0].address), slot


class FaultInjector(threading.Thread):
    """Injects one fault at ``at_epoch`` and watches the cluster until the replica is promoted."""

    def __init__(self, backend: ClusterBackend, kind: str, queue: str, partition: int, at_epoch: float) -> None:
        super().__init__(name=f"fault-{kind}", daemon=True)
        self.backend, self.kind, self.queue, self.partition, self.at_epoch = backend, kind, queue, partition, at_epoch
        self.events = FaultEvents(kind)
        self._halt = threading.Event()
        self.killed: RedisServer | None = None
        self.paused: RedisServer | None = None

    def cancel(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # recorded in the results; the cell still completes
            self.events.error = f"{type(exc).__name__}: {exc}"
        finally:
            if self.paused is not None:  # never leave a stopped process behind
                self.paused.signal(signal.SIGCONT)
                self.events.resumed_at = self.events.resumed_at or time.time()

    def _run(self) -> None:
        master, replica, slot = target_of(self.backend, self.queue, self.partition)
        self.events.target, self.events.replica = master.address, replica.address
        if self._halt.wait(max(0.0, self.at_epoch - time.time())):
            return
        node_timeout_s = self.backend.node_timeout_ms / 1000
        self.events.injected_at = time.time()
        if self.kind == "kill":
            master.kill()
            self.killed = master
        elif self.kind == "pause":
            master.signal(signal.SIGSTOP)
            self.paused = master
        elif self.kind in ("failover", "failover-force"):
            with replica.client(5.0) as r:
                r.execute_command("CLUSTER", "FAILOVER", *(["FORCE"] if self.kind == "failover-force" else []))
        else:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        pause_until = self.events.injected_at + max(2 * node_timeout_s, node_timeout_s + 2.0)
        deadline = self.events.injected_at + 10 * node_timeout_s + 15
        observers = [s for s in self.backend.servers if s not in (master, replica)]
        while time.time() < deadline and not self._halt.is_set():
            self._observe(observers, master, replica, slot)
            if self.paused is not None and time.time() >= pause_until:
                self.paused.signal(signal.SIGCONT)
                self.paused = None
                self.events.resumed_at = time.time()
            if self.events.promoted_at and self.paused is None:
                return
            time.sleep(POLL_S)

    def _observe(self, observers: list[RedisServer], master: RedisServer, replica: RedisServer, slot: int) -> None:
        try:
            nodes = {n.address: n for n in self.backend.topology(via=observers)}
        except (RuntimeError, redis.RedisError):
            return
        now = time.time()
        old, new = nodes.get(master.address), nodes.get(replica.address)
        if self.events.node_failed_at is None and old is not None and old.failed:
            self.events.node_failed_at = now
        if self.events.promoted_at is None and new is not None and new.is_master and new.owns(slot):
            self.events.promoted_at = now


def restore(backend: ClusterBackend, injector: FaultInjector | None, timeout: float = 60.0) -> FaultEvents | None:
    """Bring the cluster back (restart a killed node so it rejoins as a replica) and *check* it:
    every node up, cluster_state:ok, all slots, the expected masters each with their replicas."""
    if injector is None:
        return None
    injector.cancel()
    injector.join(timeout=10)
    events = injector.events
    if injector.killed is not None:
        injector.killed.start()
        events.restarted_at = time.time()
    deadline = time.monotonic() + timeout
    problems = ["not checked"]
    while time.monotonic() < deadline:
        problems = backend.health_problems()
        if not problems:
            events.restored_at = time.time()
            break
        time.sleep(0.25)
    events.restore_problems = problems
    return events


def timeline(
    events: FaultEvents, start_epoch: float, partition_timeline: dict[str, Any] | None, partition: int
) -> dict[str, Any]:
    """The cell's fault timeline in seconds from the cell start, with derived windows."""

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - start_epoch, 3)

    client = (partition_timeline or {}).get(str(partition))
    first_error = client.get("first_error_at") if client else None
    last_error = client.get("last_error_at") if client else None
    recovered = client.get("recovered_at") if client else None
    out = {
        "kind": events.kind,
        "target": events.target,
        "replica": events.replica,
        "injected_at_s": rel(events.injected_at),
        "node_failed_at_s": rel(events.node_failed_at),
        "promoted_at_s": rel(events.promoted_at),
        "resumed_at_s": rel(events.resumed_at),
        "restarted_at_s": rel(events.restarted_at),
        "restored_at_s": rel(events.restored_at),
        "first_error_at_s": rel(first_error),
        "last_error_at_s": rel(last_error),
        "recovered_at_s": rel(recovered),
        "unavailable_s": round(last_error - first_error, 3) if first_error and last_error else 0.0,
        "time_to_recovery_s": round(recovered - events.injected_at, 3) if recovered and events.injected_at else None,
        "client_recovery_lag_s": round(recovered - events.promoted_at, 3) if recovered and events.promoted_at else None,
        "restore_ok": not events.restore_problems,
        "restore_problems": events.restore_problems,
        "error": events.error,
    }
    return out

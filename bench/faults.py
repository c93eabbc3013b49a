"""Faults injected into a running cluster cell, the cluster-side timeline, and the checked restore.

Kinds hit the master that owns a chosen partition: ``kill`` (SIGKILL), ``pause`` (SIGSTOP for
longer than the node timeout, then SIGCONT), ``failover`` (graceful ``CLUSTER FAILOVER`` on its
replica) and ``failover-force`` (``CLUSTER FAILOVER FORCE``). Two network faults, only inside the
private network namespace of :mod:`bench.netns`, where each node has its own loopback address:
``partition-master`` cuts the master from every other node, its replica included, but not from the
clients, for longer than the node timeout, then heals (the majority promotes the replica; the old
master, which kept acknowledging writes until it noticed, rejoins as a replica and throws them
away); ``partition-client`` cuts the clients (127.0.0.1) from the master while the cluster still
sees it (timeouts, ambiguous outcomes, no failover). While a fault runs, a watcher polls
``CLUSTER NODES`` on a healthy node to time when the master was seen failing and when its
replica was seen promoted; the servers' own logs replace those times afterwards. Only servers
this suite started are ever touched.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from taskqueue.layout import partition_slot

from . import outage, serverlog
from .backend_kinds import ClusterBackend, poll_health
from .netns import CLIENT_ADDRESS, NETWORK_FAULTS, Firewall
from .ports import LOOPBACK
from .servers import ServerNode

POLL_S = 0.05


@dataclass
class FaultEvents:
    """Epoch timestamps (s) of what the cluster did; None when it did not happen."""

    kind: str
    target: str = ""
    target_id: str = ""
    replica: str = ""
    injected_at: float | None = None
    suspected_at: float | None = None  # first PFAIL seen by polling (one node's suspicion)
    node_failed_at: float | None = None  # FAIL by quorum (the cluster's decision)
    promoted_at: float | None = None  # the replica won its election
    source: dict[str, str | None] = field(default_factory=lambda: {"node_failed": None, "promoted": None})
    resumed_at: float | None = None  # pause: SIGCONT sent
    restarted_at: float | None = None  # kill: node started again
    restored_at: float | None = None  # cluster healthy again (checked)
    restore_problems: list[str] = field(default_factory=list)
    error: str | None = None
    # network faults: injected_at is when the rules went in (taken just before: conservative)
    hold_s: float | None = None  # how long the partition (or pause) was meant to last
    cut: list[str] = field(default_factory=list)  # the DROP rules, as installed
    healed_at: float | None = None  # rules removed (taken just after: conservative)
    isolated_down_at: float | None = None  # the isolated master's own cluster_state:fail: it stops taking writes
    demoted_at: float | None = None  # the old master reconfigured itself as a replica of the promoted one
    resynced_at: float | None = None  # ... and finished loading the new master's data (its own writes discarded)


def target_of(backend: ClusterBackend, queue: str, partition: int) -> tuple[ServerNode, ServerNode, int, str]:
    """(master, one of its replicas, slot, master's node id) for a partition of ``queue``."""
    slot = partition_slot(queue, partition, [n.slots for n in backend.topology() if n.is_master])
    master = backend.master_of_slot(slot)
    replicas = backend.replicas_of(master.id)
    if not replicas:
        raise RuntimeError(f"master {master.address} has no healthy replica to fail over to")
    return backend.server_at(master.address), backend.server_at(replicas[0].address), slot, master.id


class FaultInjector(threading.Thread):
    """Injects one fault at ``at_epoch`` and watches the cluster until the replica is promoted."""

    def __init__(
        self,
        backend: ClusterBackend,
        kind: str,
        queue: str,
        partition: int,
        at_epoch: float,
        hold_s: float | None = None,
        firewall: Firewall | None = None,
    ) -> None:
        super().__init__(name=f"fault-{kind}", daemon=True)
        self.backend, self.kind, self.queue, self.partition, self.at_epoch = backend, kind, queue, partition, at_epoch
        self.events = FaultEvents(kind)
        self._halt = threading.Event()
        self.killed: ServerNode | None = None
        self.paused: ServerNode | None = None
        self.replica_server: ServerNode | None = None
        self.master_server: ServerNode | None = None
        node_timeout_s = backend.node_timeout_ms / 1000
        self.hold_s = hold_s or max(2 * node_timeout_s, node_timeout_s + 2.0)  # a pause's or a partition's length
        # Network faults: the firewall of the private namespace (refused anywhere else).
        self.firewall = (firewall or Firewall()) if kind in NETWORK_FAULTS else None
        self.partitioned = False  # rules in force now

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
            if self.partitioned:  # nor a partition in force
                self.heal()

    def heal(self) -> None:
        """Remove the partition's rules (idempotent); ``healed_at`` once they are gone."""
        if self.firewall is None:
            return
        self.firewall.heal()
        if self.partitioned:
            self.partitioned = False
            self.events.healed_at = time.time()

    def _run(self) -> None:
        master, replica, slot, master_id = target_of(self.backend, self.queue, self.partition)
        self.events.target, self.events.replica, self.events.target_id = master.address, replica.address, master_id
        self.replica_server, self.master_server = replica, master
        if self.firewall is not None and master.host == LOOPBACK:
            raise RuntimeError(
                f"{self.kind} needs nodes on their own loopback addresses (bench.netns); {master.address}"
            )
        if self._halt.wait(max(0.0, self.at_epoch - time.time())):
            return
        node_timeout_s = self.backend.node_timeout_ms / 1000
        self.events.injected_at = time.time()
        if self.kind in NETWORK_FAULTS:
            assert self.firewall is not None
            self.events.hold_s = self.hold_s
            if self.kind == "partition-master":  # cut from every other node, its replica included; clients still in
                pairs = [(master.host, s.host) for s in self.backend.servers if s is not master]
            else:  # partition-client: the clients lose this master, the cluster still sees it
                pairs = [(CLIENT_ADDRESS, master.host)]
            self.partitioned = True
            self.events.cut = self.firewall.cut(pairs)
        elif self.kind == "kill":
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
        pause_until = self.events.injected_at + self.hold_s
        deadline = max(self.events.injected_at + 10 * node_timeout_s + 15, pause_until + 5)
        observers = [s for s in self.backend.servers if s not in (master, replica)]
        while time.time() < deadline and not self._halt.is_set():
            self._observe(observers, master, replica, slot)
            if self.paused is not None and time.time() >= pause_until:
                self.paused.signal(signal.SIGCONT)
                self.paused = None
                self.events.resumed_at = time.time()
            if self.partitioned and time.time() >= pause_until:
                self.heal()
                return  # what the cluster does next comes from the servers' logs (restore)
            if self.events.promoted_at and self.paused is None and self.firewall is None:
                return
            time.sleep(POLL_S)

    def _observe(self, observers: list[ServerNode], master: ServerNode, replica: ServerNode, slot: int) -> None:
        try:
            nodes = {n.address: n for n in self.backend.topology(via=observers)}
        except (RuntimeError, redis.RedisError):
            return
        now = time.time()
        old, new = nodes.get(master.address), nodes.get(replica.address)
        if self.events.suspected_at is None and old is not None and (old.suspected or old.marked_failed):
            self.events.suspected_at = now
        if self.events.node_failed_at is None and old is not None and old.marked_failed:
            self.events.node_failed_at = now
            self.events.source["node_failed"] = "poll"
        if self.events.promoted_at is None and new is not None and new.is_master and new.owns(slot):
            self.events.promoted_at = now
            self.events.source["promoted"] = "poll"


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
    firewall_problems: list[str] = []
    if injector.firewall is not None:
        try:
            injector.heal()  # a cancelled cell (or a crash) may have left the partition in force
            firewall_problems = injector.firewall.problems()
        except RuntimeError as exc:
            firewall_problems = [f"firewall: {exc}"]

    def unhealthy() -> list[str]:
        found = backend.health_problems()
        return found or (_old_master_problems(backend, injector) if injector.kind == "partition-master" else [])

    problems = poll_health(unhealthy, timeout, interval=0.25)
    if not problems:
        events.restored_at = time.time()
    events.restore_problems = firewall_problems + problems
    _from_server_logs(backend, events, injector.replica_server)
    if injector.kind in NETWORK_FAULTS:
        _partition_from_server_logs(events, injector.master_server)
    if events.suspected_at is not None and events.node_failed_at is not None:
        # A FAIL follows a PFAIL: a poll that first saw the node after the logged FAIL saw it late.
        events.suspected_at = min(events.suspected_at, events.node_failed_at)
    return events


def _old_master_problems(backend: ClusterBackend, injector: FaultInjector) -> list[str]:
    """After a partition-master whose replica was promoted: the old master must be a replica now,
    linked to a master (its writes from the partition discarded), not a second master."""
    master = injector.master_server
    if master is None or injector.events.injected_at is None:
        return []
    try:
        with master.client(1.0) as r:
            repl = r.info("replication")
        nodes = backend.topology()
    except (RuntimeError, redis.RedisError) as exc:
        return [f"old master {master.address}: {exc}"]
    promoted = any(n.address == injector.events.replica and n.is_master and n.slots for n in nodes)
    if promoted and repl.get("role") != "slave":
        return [f"old master {master.address} is still a master after its replica was promoted"]
    return []


def _log_text(server: Any) -> str:
    path = getattr(server, "log_file", None)
    try:
        return path.read_text(errors="replace") if path is not None else ""
    except OSError:
        return ""


def _partition_from_server_logs(events: FaultEvents, master: ServerNode | None) -> None:
    """The isolated master's own view, from its log: when it stopped taking writes (its
    cluster_state turned fail), when it learned it had been replaced and became a replica, and
    when it finished loading the new master's data (its own writes from the partition gone)."""
    if events.injected_at is None or master is None:
        return
    text = _log_text(master)
    after = events.injected_at - 0.001
    events.isolated_down_at = serverlog.first_at(text, serverlog.STATE_FAIL, after)
    if events.healed_at is not None:  # it can only learn of the promotion once it hears the cluster again
        events.demoted_at = serverlog.first_at(text, serverlog.RECONFIGURED_AS_REPLICA, events.healed_at - 0.001)
    if events.demoted_at is not None:
        events.resynced_at = serverlog.first_at(text, serverlog.SYNC_DONE, events.demoted_at - 0.001)
    for key, value in (("isolated_down", events.isolated_down_at), ("demoted", events.demoted_at)):
        events.source[key] = "server-log" if value is not None else None
    events.source["resynced"] = "server-log" if events.resynced_at is not None else None


def _from_server_logs(backend: ClusterBackend, events: FaultEvents, replica: ServerNode | None) -> None:
    """Replace polled FAIL and promotion times with the servers' own logged ones (ms, no poll
    delay) where this suite can read the logs (embedded servers)."""
    if events.injected_at is None:
        return
    after = events.injected_at - 0.001  # log times are cut to the millisecond

    def text(server: Any) -> str:
        path = getattr(server, "log_file", None)
        try:
            return path.read_text(errors="replace") if path is not None else ""
        except OSError:
            return ""

    marks = [
        t
        for server in backend.servers
        if server.address != events.target and events.target_id
        for t in [serverlog.marked_failing_at(text(server), events.target_id, after)]
        if t is not None
    ]
    if marks:
        events.node_failed_at, events.source["node_failed"] = min(marks), "server-log"
    won = serverlog.election_won_at(text(replica), after) if replica is not None else None
    if won is not None:
        events.promoted_at, events.source["promoted"] = won, "server-log"


def _rel(t: float | None, start_epoch: float) -> float | None:
    return None if t is None else round(t - start_epoch, 3)


def partition_outages(
    load: dict[str, Any], start_epoch: float, window: tuple[float, float], faulted: set[str]
) -> dict[str, dict[str, Any]]:
    """Per partition that saw errors or is faulted: the longest window without a successful
    operation overlapping ``window`` (epoch s), beside its error window; seconds from ``start_epoch``."""
    errors = load.get("partition_timeline") or {}
    successes = load.get("success_gaps") or []
    run = (start_epoch, start_epoch + float(load.get("elapsed_s") or 0.0))
    out = {}
    for p in sorted(set(errors) | faulted, key=int):
        gap = outage.longest_outage(outage.combined(successes, p), window, run)
        err = errors.get(p) or {}
        first, last = err.get("first_error_at"), err.get("last_error_at")
        out[p] = {
            "faulted": p in faulted,
            "unavailable_s": round(gap["seconds"], 3),
            "outage_start_s": _rel(gap["start"], start_epoch),
            "outage_end_s": _rel(gap["end"], start_epoch),
            "first_error_at_s": _rel(first, start_epoch),
            "last_error_at_s": _rel(last, start_epoch),
            "error_window_s": round(last - first, 3) if first is not None and last is not None else 0.0,
            "errors": int(err.get("errors") or 0),
        }
    return out


def timeline(
    events: FaultEvents,
    start_epoch: float,
    load: dict[str, Any],
    partition: int,
    partition_masters: dict[str, str],
    until: float | None = None,
) -> dict[str, Any]:
    """The cell's fault timeline in seconds from the load start. ``unavailable_s`` is the longest
    window without a successful operation on the faulted partition after the injection (hanging
    calls included) and before ``until`` (epoch: a repeated fault's next injection), not the span
    of errors, which is reported beside it."""

    def rel(t: float | None) -> float | None:
        return _rel(t, start_epoch)

    faulted = {p for p, master in partition_masters.items() if master == events.target} | {str(partition)}
    end = start_epoch + float(load.get("elapsed_s") or 0.0)
    window = (events.injected_at or end, min(end, until or end))
    per_partition = partition_outages(load, start_epoch, window, faulted)
    mine = per_partition[str(partition)]
    healthy = [v["unavailable_s"] for v in per_partition.values() if not v["faulted"] and v["errors"]]
    client = (load.get("partition_timeline") or {}).get(str(partition)) or {}
    saw_new_master = mine["outage_end_s"]
    injected, promoted = rel(events.injected_at), rel(events.promoted_at)
    return {
        "kind": events.kind,
        "target": events.target,
        "replica": events.replica,
        "injected_at_s": injected,
        "suspected_at_s": rel(events.suspected_at),
        "node_failed_at_s": rel(events.node_failed_at),
        "promoted_at_s": promoted,
        "timeline_source": dict(events.source),
        "resumed_at_s": rel(events.resumed_at),
        "restarted_at_s": rel(events.restarted_at),
        "restored_at_s": rel(events.restored_at),
        "first_error_at_s": mine["first_error_at_s"],
        "last_error_at_s": mine["last_error_at_s"],
        "recovered_at_s": rel(client.get("recovered_at")),
        "unavailable_s": mine["unavailable_s"],
        "outage_start_s": mine["outage_start_s"],
        "outage_end_s": mine["outage_end_s"],
        "error_window_s": mine["error_window_s"],
        "client_saw_new_master_at_s": saw_new_master,
        "time_to_recovery_s": round(saw_new_master - injected, 3)
        if saw_new_master is not None and injected is not None
        else None,
        "client_recovery_lag_s": round(saw_new_master - promoted, 3)
        if saw_new_master is not None and promoted is not None
        else None,
        "healthy_unavailable_s": max(healthy, default=0.0),
        "partitions": per_partition,
        "restore_ok": not events.restore_problems,
        "restore_problems": events.restore_problems,
        "error": events.error,
        **(partition_timeline(events, start_epoch) if events.kind in NETWORK_FAULTS else {}),
    }


def partition_timeline(events: FaultEvents, start_epoch: float) -> dict[str, Any]:
    """A network fault's own times (s from the load start) and what was cut."""
    return {
        "partitioned_at_s": _rel(events.injected_at, start_epoch),
        "healed_at_s": _rel(events.healed_at, start_epoch),
        "hold_s": events.hold_s,
        "isolated_down_at_s": _rel(events.isolated_down_at, start_epoch),
        "demoted_at_s": _rel(events.demoted_at, start_epoch),
        "resynced_at_s": _rel(events.resynced_at, start_epoch),
        "cut": events.cut,
    }

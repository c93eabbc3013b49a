"""A failed write is classified by what was sent, on real servers, under whichever redis-py is installed
(`make test` runs the locked one, `make test-latest` the newest; both run this file: marker `client`).

- A cluster master frozen mid-write: the write is ambiguous (redis-py 8.1 raises the timeout, 8.2 a
  RedisClusterUnreachableError caused by it), and after SIGCONT the audit finds it delivered as an
  ambiguous task, not "delivered after reject".
- A server killed while a write waits for its reply: the retry finds the port refusing connections,
  yet the call is ambiguous (its first attempt may have run), not a rejection.
- The cluster constructor with its first startup node frozen connects without an operation_timeout
  (redis-py 8.2's deferred refresh undid the default-node replacement: taskqueue.connection._Cluster).
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from bench.audit import AuditLog, count, outcome_of
from bench.backends import ClusterBackend
from bench.ports import free_port
from bench.servers import RedisServer, find_server_bin
from taskqueue import QueueUnavailable, TaskQueue
from taskqueue.errors import AMBIGUOUS_KINDS

pytestmark = pytest.mark.client
REDIS_PY = version("redis")


def _on_partition_0(q: TaskQueue, k: int) -> str:
    task_id = f"{q.new_id().rpartition('-')[0]}-{q.partitions * k:x}"  # counter % partitions == 0
    assert q.partition_for(task_id) == 0
    return task_id


def _drain(q: TaskQueue, audit: AuditLog, expected: int) -> None:
    """Deliver everything queued into the audit (bounded: at most 50 tries of 0.1 s)."""
    got = 0
    for _ in range(50):
        task = q.dequeue(timeout=0.1)
        if task is None:
            if got >= expected:
                return
            continue
        audit.deliver(task.id)
        q.ack(task)
        got += 1


@pytest.mark.parametrize(
    "settings",
    [{"operation_timeout": 1.0}, {"socket_timeout": 0.5, "retries": 1}],
    ids=["operation_timeout", "socket_timeout"],
)
def test_a_write_to_a_frozen_master_is_ambiguous_and_delivered_after_sigcont(
    stoppable_cluster: ClusterBackend, settings: dict[str, Any]
) -> None:
    q = TaskQueue(cluster_nodes=stoppable_cluster.nodes, name=f"frozen{len(settings)}", **settings)
    audit = AuditLog()
    try:
        q.purge()
        warm = _on_partition_0(q, 1)
        q.enqueue(b"warm", task_id=warm)  # a pooled connection to the master: the write goes out on it
        audit.produce([warm], "ok")
        master = q.partition_masters()[0]
        server = next(s for s in stoppable_cluster.servers if s.address == master)
        task_id = _on_partition_0(q, 2)
        server.signal(signal.SIGSTOP)
        try:
            with pytest.raises(QueueUnavailable) as info:
                q.enqueue(b"x", task_id=task_id)
        finally:
            server.signal(signal.SIGCONT)
        err = info.value
        assert err.kind in AMBIGUOUS_KINDS, f"redis-py {REDIS_PY}: {err.kind}: {err}"
        audit.produce([task_id], outcome_of(err.kind))
        _drain(q, audit, expected=2)
        counted = count(audit)
        assert counted["delivered_ambiguous"] == 1 and counted["delivered_after_reject"] == 0, counted
        assert counted["lost"] == 0 and counted["delivered_unique"] == 2, counted
    finally:
        q.purge()
        q.close()


def test_a_write_whose_server_dies_before_replying_is_ambiguous_though_the_retry_is_refused() -> None:
    """The first attempt is written to a stopped server, which is then killed: the read fails
    (connection lost), the retries find the port closed (connection refused). The last error alone
    says "refused, nothing stored"; the call sent the write, so the outcome is unknown."""
    with tempfile.TemporaryDirectory(prefix="tq-sent-kill-") as folder:
        server = RedisServer(find_server_bin(), free_port(start=27300), Path(folder))
        server.start()
        try:
            q = TaskQueue(f"redis://127.0.0.1:{server.port}/0", name="killed", socket_timeout=5.0, retries=2)
            q.enqueue(b"warm")  # the write below goes out on this pooled connection
            server.signal(signal.SIGSTOP)
            failure: list[BaseException] = []

            def write() -> None:
                try:
                    q.enqueue(b"x")
                except BaseException as exc:
                    failure.append(exc)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            time.sleep(0.3)  # the command is in the stopped server's socket buffer
            server.signal(signal.SIGKILL)
            writer.join(timeout=20)
            assert not writer.is_alive()
        finally:
            server.stop()
    assert failure and isinstance(failure[0], QueueUnavailable), failure
    err = failure[0]
    assert (err.kind, outcome_of(err.kind)) == ("connection_lost", "ambiguous"), f"{err.kind}: {err}"
    assert "connection_refused" in str(err), err  # what the last attempt saw is kept in the message


def test_a_refused_connect_is_still_a_rejection() -> None:
    """Nothing sent, nothing stored: the other half of the rule (a port nobody listens on)."""
    port = free_port(start=27350)
    q = TaskQueue(f"redis://127.0.0.1:{port}/0", name="refused", retries=1)
    with pytest.raises(QueueUnavailable) as info:
        q.enqueue(b"x")
    assert (info.value.kind, outcome_of(info.value.kind)) == ("connection_refused", "rejected"), info.value
    q.close()


def test_the_cluster_constructor_connects_with_its_first_startup_node_frozen(stoppable_cluster: ClusterBackend) -> None:
    """No operation_timeout: each try costs about one socket_timeout (1 s here) on the frozen node, then
    another primary serves COMMAND. redis-py picks the first primary after a random shuffle of the
    startup nodes, so three constructions; under 8.2 without the workaround each raised TimeoutError."""
    stopped, *others = stoppable_cluster.servers
    nodes = [stopped.address, *(s.address for s in others)]
    stopped.signal(signal.SIGSTOP)
    try:
        for _ in range(3):
            TaskQueue(cluster_nodes=nodes, name="ctor-frozen", socket_timeout=1.0).close()
    finally:
        stopped.signal(signal.SIGCONT)

"""The queue after the load: draining it into the audit, and the same queue opened to read its depth.

Both open the queue exactly as the load used it (name, engine, partitions, lease), through the adapter,
with a small connection pool of their own.
"""

from __future__ import annotations

import time
from typing import Any

from taskqueue import TaskQueueError

from . import adapters
from .audit import AuditLog
from .options import LoadOptions
from .target import Target


def queue_options(params: dict[str, Any], queue_name: str, pool_size: int = 4) -> LoadOptions:
    """The same queue (name, engine, partitions, lease) as the load used, with a small pool."""
    return LoadOptions(
        queue_name=queue_name,
        engine=params["engine"],
        queue=params["queue"],
        partitions=params["partitions"],
        visibility_timeout=params["visibility_timeout"],
        pool_size=pool_size,
    )


def open_queue(target: Target, params: dict[str, Any], queue_name: str, pool_size: int = 4) -> adapters.QueueAdapter:
    """The cell's queue through its adapter (the default one when the cell names none)."""
    return adapters.build(params["queue"] or adapters.DEFAULT, target, queue_options(params, queue_name, pool_size))


def probe_queue(target: Target, params: dict[str, Any], queue_name: str) -> adapters.QueueAdapter | None:
    """The queue as the drain will read it, for depth/inflight each second; None if it cannot be
    built (the probe then records memory only)."""
    try:
        return open_queue(target, params, queue_name)
    except Exception:
        return None


def drain_queue(target: Target, params: dict[str, Any], queue_name: str, audit: AuditLog) -> dict[str, Any]:
    """After the load: consume until the queue is empty (expired leases requeued) or the drain
    timeout passes. Every delivery goes into the audit."""
    started = time.monotonic()
    deadline = started + params["drain_timeout"]
    delivered = errors = 0
    depth = inflight = -1
    queue = open_queue(target, params, queue_name)
    try:
        while time.monotonic() < deadline:
            try:
                queue.requeue_expired()
                tasks = (
                    queue.dequeue_many(200, timeout=0.2)
                    if hasattr(queue, "dequeue_many")
                    else [t for t in [queue.dequeue(0.2)] if t is not None]
                )
                for task in tasks:
                    audit.deliver(task.id)
                    queue.ack(task)
                delivered += len(tasks)
                if not tasks:
                    depth, inflight = queue.depth(), queue.inflight()
                    if depth == 0 and inflight == 0:
                        break
            except TaskQueueError:
                errors += 1  # e.g. the cluster still settling after a fault
                time.sleep(0.2)
    finally:
        queue.close()
    return {
        "delivered": delivered,
        "seconds": round(time.monotonic() - started, 3),
        "left_ready": depth,
        "left_inflight": inflight,
        "errors": errors,
        "complete": depth == 0 and inflight == 0,
    }

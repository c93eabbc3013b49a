"""Every Redis key name the queue uses is built here, and nowhere else.

All keys of one partition share the hash tag ``{<queue>.<partition>}`` so a Lua script that
touches them runs on one cluster slot. Pure: no Redis import.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "tq"
STREAM_GROUP = "tq-workers"  # the consumer group of every partition stream


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """The keys of one partition of a logical queue."""

    ready: str  # LIST of task ids waiting; producers LPUSH, consumers RPOP (FIFO)        (list engine)
    inflight: str  # ZSET task id -> lease deadline (ms, server clock)                   (list engine)
    tasks: str  # HASH task id -> encoded record (enqueued_at + payload)                  (list engine)
    attempts: str  # HASH task id -> delivery count
    stream: str  # STREAM of tasks (stream engine), consumer group STREAM_GROUP
    ids: str  # HASH task id -> 1 while queued or in flight (stream engine's idempotency)

    def all(self) -> tuple[str, ...]:
        return (self.ready, self.inflight, self.tasks, self.attempts, self.stream, self.ids)


def hash_tag(queue: str, partition: int, salt: int = 0) -> str:
    """``{queue.partition}``; with a salt (taskqueue.layout: which master it lands on) ``{queue.partition~salt}``."""
    return f"{{{queue}.{partition}~{salt}}}" if salt else f"{{{queue}.{partition}}}"


def partition_keys(queue: str, partition: int, salt: int = 0) -> PartitionKeys:
    if not queue or "{" in queue or "}" in queue:
        raise ValueError(f"invalid queue name {queue!r}: must be non-empty and contain no braces")
    tag = hash_tag(queue, partition, salt)
    base = f"{PREFIX}:{tag}"
    return PartitionKeys(
        ready=f"{base}:ready",
        inflight=f"{base}:inflight",
        tasks=f"{base}:tasks",
        attempts=f"{base}:attempts",
        stream=f"{base}:stream",
        ids=f"{base}:ids",
    )


def queue_pattern(queue: str) -> str:
    """SCAN pattern matching every key of every partition of ``queue``."""
    return f"{PREFIX}:{{{queue}.*}}:*"

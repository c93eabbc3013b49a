"""The task a consumer receives, and where a task id lives. Pure: no Redis."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    payload: bytes
    enqueued_at: int  # ns since the epoch, producer clock
    attempts: int  # deliveries so far, this one included (0 when the engine cannot tell)
    partition: int
    receipt: Any = None  # engine handle needed to ack (stream entry id, RQ job); None for the list engine


def partition_of(task_id: str, partitions: int) -> int:
    """Generated ids (``prefix-<hex counter>``) go round-robin by counter; other ids by CRC32."""
    head, sep, tail = task_id.rpartition("-")
    if sep and head and tail:
        try:
            return int(tail, 16) % partitions
        except ValueError:
            pass
    return zlib.crc32(task_id.encode()) % partitions

"""TaskQueue: an at-least-once task queue on Redis and Redis Cluster (the system under test)."""

from .errors import (
    AccessDenied,
    PayloadTooLarge,
    PoolExhausted,
    QueueFull,
    QueueUnavailable,
    TaskQueueError,
    classify,
)
from .queue import TaskQueue
from .settings import QueueSettings
from .task import Task

__all__ = [
    "AccessDenied",
    "PayloadTooLarge",
    "PoolExhausted",
    "QueueFull",
    "QueueSettings",
    "QueueUnavailable",
    "Task",
    "TaskQueue",
    "TaskQueueError",
    "classify",
]

"""Validators for user input shared by the CLI, the locustfile and scenario files. Pure."""

from __future__ import annotations

import re

from .errors import UsageError

POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)
_MEMORY = re.compile(r"^(\d+)\s*(b|k|kb|m|mb|g|gb)?$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def maxmemory_bytes(text: str) -> int:
    """Redis's own maxmemory syntax (``64mb``, ``1gb``, ``100000``) in bytes."""
    match = _MEMORY.match(str(text).strip())
    if not match:
        raise UsageError(f"maxmemory {text!r} is not valid: use e.g. 64mb, 1gb or a byte count")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _UNITS[unit]

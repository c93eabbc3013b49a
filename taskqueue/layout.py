"""Where a queue's partitions live on a cluster: one layout per slot map, whatever the queue's name.

Partition ``p`` of queue ``q`` gets the hash tag ``{q.p}``, or ``{q.p~s}`` with the smallest salt
``s`` that puts it on master ``p mod M`` (masters numbered by the lowest slot each owns, so the
numbering survives a failover: the promoted replica takes over the same slots). Every queue on one
slot map thus has the same layout: ``M`` partitions by default, one per master, and an explicit
count spreads round-robin. The layout functions are pure (no Redis); :func:`cluster_layout`
reads the slot map a redis-py cluster client already holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .keys import PartitionKeys, partition_keys

MAX_SALT = 1_000_000  # a master owning a single slot needs ~16384 tries on average


def slot_groups(slots_by_master: Iterable[Iterable[int]]) -> list[int]:
    """For every slot, the index of its master; masters ordered by the lowest slot they own
    (masters owning no slot are left out); ``-1`` for an uncovered slot."""
    owned = sorted((sorted(set(s)) for s in slots_by_master), key=lambda s: s[0] if s else REDIS_CLUSTER_HASH_SLOTS)
    groups = [-1] * REDIS_CLUSTER_HASH_SLOTS
    for index, slots in enumerate(s for s in owned if s):
        for slot in slots:
            groups[slot] = index
    return groups


def master_count(groups: Sequence[int]) -> int:
    return max(groups, default=-1) + 1


def partition_salt(queue: str, partition: int, groups: Sequence[int]) -> int:
    """The smallest salt whose hash tag puts ``partition`` on master ``partition mod M``."""
    masters = master_count(groups)
    if masters == 0:
        return 0
    target = partition % masters
    for salt in range(MAX_SALT):
        if groups[key_slot(partition_keys(queue, partition, salt).ready.encode())] == target:
            return salt
    raise RuntimeError(f"no hash tag for partition {partition} of {queue!r} on master {target} in {MAX_SALT} tries")


def layout(queue: str, partitions: int | None, groups: Sequence[int]) -> list[PartitionKeys]:
    """The keys of every partition: ``partitions`` of them, or one per master when None."""
    count = partitions or max(1, master_count(groups))
    return [partition_keys(queue, p, partition_salt(queue, p, groups)) for p in range(count)]


def cluster_groups(client: Any) -> list[int]:
    """:func:`slot_groups` from a redis-py ``RedisCluster``'s own slot map (no round trip)."""
    by_master: dict[str, list[int]] = {}
    for slot, nodes in client.nodes_manager.slots_cache.items():
        if nodes:
            by_master.setdefault(str(nodes[0].name), []).append(int(slot))
    return slot_groups(by_master.values())


def partition_slot(queue: str, partition: int, ranges_by_master: Iterable[Iterable[tuple[int, int]]]) -> int:
    """The slot of ``partition`` of ``queue`` given each master's slot ranges (CLUSTER NODES)."""
    groups = slot_groups([s for lo, hi in ranges for s in range(lo, hi + 1)] for ranges in ranges_by_master)
    return key_slot(partition_keys(queue, partition, partition_salt(queue, partition, groups)).ready.encode())

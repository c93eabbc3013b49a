"""taskqueue.layout: partition hash tags from the slot map, whatever the queue's name."""

from __future__ import annotations

from redis.crc import key_slot

from taskqueue.keys import partition_keys, queue_pattern
from taskqueue.layout import layout, master_count, partition_salt, partition_slot, slot_groups

THREE = [range(0, 5461), range(5461, 10923), range(10923, 16384)]  # redis-cli --cluster create's split
RANGES = [[(0, 5460)], [(5461, 10922)], [(10923, 16383)]]


def _master_of(key: str, groups: list[int]) -> int:
    return groups[key_slot(key.encode())]


def test_masters_are_numbered_by_their_lowest_slot_not_by_order_or_address() -> None:
    groups = slot_groups([THREE[2], THREE[0], THREE[1]])
    assert master_count(groups) == 3
    assert (groups[0], groups[5461], groups[16383]) == (0, 1, 2)
    assert slot_groups([THREE[0], []])[0] == 0 and master_count(slot_groups([THREE[0], []])) == 1
    assert slot_groups([range(10)])[10] == -1  # uncovered


def test_default_layout_is_one_partition_per_master_for_every_name() -> None:
    groups = slot_groups(THREE)
    for name in ("cell0", "cell1", "cell2", "cell3", "cell4", "default", "spread"):
        keys = layout(name, None, groups)
        assert [_master_of(k.ready, groups) for k in keys] == [0, 1, 2], name
        for k in keys:  # every key of a partition on one slot, and found by purge's pattern
            assert len({key_slot(x.encode()) for x in k.all()}) == 1
            assert k.ready.startswith(queue_pattern(name).split("*")[0])


def test_explicit_partitions_are_kept_and_go_round_robin_over_the_masters() -> None:
    groups = slot_groups(THREE)
    keys = layout("q", 7, groups)
    assert [_master_of(k.ready, groups) for k in keys] == [0, 1, 2, 0, 1, 2, 0]
    assert len({k.ready for k in keys}) == 7


def test_the_layout_is_deterministic_and_unsalted_where_the_plain_tag_fits() -> None:
    groups = slot_groups(THREE)
    assert layout("q", None, groups) == layout("q", None, slot_groups(list(reversed(THREE))))
    for p in range(6):
        salt = partition_salt("q", p, groups)
        plain = _master_of(partition_keys("q", p).ready, groups)
        assert (salt == 0) == (plain == p % 3)
        assert partition_slot("q", p, RANGES) == key_slot(partition_keys("q", p, salt).ready.encode())


def test_standalone_and_single_master_keep_the_seed_key_names() -> None:
    assert layout("q", None, []) == [partition_keys("q", 0)]
    assert layout("q", 3, []) == [partition_keys("q", p) for p in range(3)]
    assert layout("q", 2, slot_groups([range(16384)])) == [partition_keys("q", p) for p in range(2)]
    assert partition_keys("q", 1).ready == "tq:{q.1}:ready"
    assert partition_keys("q", 1, 4).ready == "tq:{q.1~4}:ready"


def test_a_master_with_few_slots_still_gets_its_partition() -> None:
    groups = slot_groups([range(0, 16383), [16383]])
    keys = layout("tiny", None, groups)
    assert [_master_of(k.ready, groups) for k in keys] == [0, 1]

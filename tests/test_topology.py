# ruff: noqa: E501  (CLUSTER NODES lines are long as Redis prints them)
"""bench.topology, pure: CLUSTER NODES lines as Redis prints them, literal input."""

from __future__ import annotations

from bench.topology import parse_cluster_nodes

NODES = """\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail? - 0 1426238318243 3 connected 10923-16383 [12000->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5500
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave,fail 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 disconnected
short line
"""


def test_parse_cluster_nodes_literal() -> None:
    nodes = {n.address: n for n in parse_cluster_nodes(NODES)}
    assert set(nodes) == {f"127.0.0.1:3000{i}" for i in (1, 2, 3, 4, 6)}  # the short line is skipped
    first = nodes["127.0.0.1:30001"]
    assert first.is_master and first.slots == ((0, 5460), (5500, 5500)) and first.slot_count == 5462
    assert first.owns(5500) and not first.owns(5499)
    replica = nodes["127.0.0.1:30004"]  # hostname and bus port stripped from the address
    assert not replica.is_master and replica.master_id == first.id and not replica.failed
    migrating = nodes["127.0.0.1:30003"]
    assert migrating.slots == ((10923, 16383),)  # the [slot->-node] migration entry is not owned
    assert migrating.suspected and not migrating.marked_failed and migrating.failed
    dead = nodes["127.0.0.1:30006"]
    assert dead.marked_failed and not dead.suspected and dead.link_state == "disconnected"

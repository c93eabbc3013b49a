# ruff: noqa: E501  (CLUSTER NODES lines are long as Redis prints them)
"""Pure parsers with literal inputs: CLUSTER NODES lines, stream replies in RESP2 and RESP3
shapes, and the merge of per-process partition timelines."""

from __future__ import annotations

from bench.metrics import merge_timelines
from bench.topology import parse_cluster_nodes
from taskqueue.engines import _pending_count, _stream_entries

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


def test_stream_replies_in_both_protocols() -> None:
    entries = [(b"1-0", {b"id": b"t-1"}), (b"2-0", {b"id": b"t-2"})]
    resp2 = [[b"{q.0}:stream", entries]]
    resp3 = {b"{q.0}:stream": [entries]}
    assert _stream_entries(resp2) == _stream_entries(resp3) == [(b"{q.0}:stream", entries)]
    assert _stream_entries(None) == _stream_entries([]) == _stream_entries({}) == []
    assert _pending_count([7, b"1-0", b"9-0", []]) == 7  # XPENDING summary, RESP2
    assert _pending_count({"pending": 3}) == 3  # XINFO-style dict, RESP3
    assert _pending_count(Exception("NOGROUP")) == 0 and _pending_count([]) == 0


def test_merge_timelines_earliest_first_latest_last_and_recovery_only_when_all_recovered() -> None:
    a = {"0": {"first_error_at": 10.0, "last_error_at": 12.0, "recovered_at": 12.5, "errors": 4}}
    b = {
        "0": {"first_error_at": 10.5, "last_error_at": 13.0, "recovered_at": 13.2, "errors": 6},
        "1": {"first_error_at": 11.0, "last_error_at": 11.0, "recovered_at": None, "errors": 1},
    }
    merged = merge_timelines([a, b])
    assert merged["0"] == {"first_error_at": 10.0, "last_error_at": 13.0, "recovered_at": 13.2, "errors": 10}
    assert merged["1"]["recovered_at"] is None and merged["1"]["errors"] == 1  # one process never recovered
    assert merge_timelines([]) == {}

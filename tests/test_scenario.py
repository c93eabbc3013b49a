"""Scenario files -> cells (pure), and invalid files rejected with every problem named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import scenario
from bench.audit import AuditLog, count, outcome_of
from bench.errors import UsageError


def test_every_builtin_loads() -> None:
    names = scenario.builtin_names()
    assert {"smoke", "topology", "pool-sizes", "memory-policies", "failover", "sync-replicas", "demo"} <= set(names)
    for name in names:
        assert scenario.load(name).cells


def test_axes_cross_explicit_cells_and_overrides() -> None:
    s = scenario.parse(
        {
            "params": {"duration": 5, "users": 2},
            "axes": {"pool_size": [1, 10], "pool_blocking": [False, True]},
            "cells": [{"label": "small", "payload_bytes": 10}, {"payload_bytes": 1000}],
        },
        overrides={"duration": 3, "repeat": None},
    )
    assert len(s.cells) == 8
    assert s.cells[0].id == "small, pool_size=1, pool_blocking=False"
    assert s.cells[-1].id == "pool_size=10, pool_blocking=True, payload_bytes=1000"
    assert {c.params["duration"] for c in s.cells} == {3.0}
    assert all(c.params["users"] == 2 for c in s.cells)
    assert len({c.slug for c in s.cells}) == 8


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"params": {"pool_sise": 5}}, "unknown key 'pool_sise'; valid keys: backend"),
        ({"axes": {"maxmemory_policy": ["noeviction", "lru-please"]}}, "valid is noeviction | allkeys-lru"),
        ({"params": {"fault": "kill"}}, "fault = 'kill' needs backend = \"cluster\""),
        ({"params": {"users": "many"}}, "users = 'many': expected int"),
        ({"axes": {"users": []}}, "non-empty list"),
        ({"bogus": 1}, "unknown top-level key 'bogus'"),
        ({"params": {"duration": 5, "warmup": 5}}, "warmup 5.0 must be shorter"),
        ({"params": {"maxmemory": "lots"}}, "maxmemory = 'lots'"),
    ],
)
def test_invalid_scenarios(data: dict, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        scenario.parse(data)
    assert needle in str(info.value)


def test_bad_scenario_file_exit_2_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[params]\nbackend = "standalone"\nfault = "kill"\n')
    for args in (["run", str(bad)], ["run", "no-such-scenario"], ["run", str(tmp_path / "missing.toml")]):
        done = subprocess.run(
            [sys.executable, "-m", "bench", *args, "--out", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.startswith("bench: error:")
        assert not (tmp_path / "out").exists()
    broken = tmp_path / "broken.toml"
    broken.write_text("[params\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "not valid TOML" in done.stderr


def test_audit_counts_literal() -> None:
    log = AuditLog()
    log.produce(["a", "b", "c", "d"], "ok")
    log.produce(["r1", "r2"], "rejected")
    log.produce(["x1", "x2"], "ambiguous")
    for task_id in ["a", "b", "b", "b", "c", "x1", "r2", "zz"]:
        log.deliver(task_id)
    assert count(log) == {
        "enqueued_ok": 4,
        "rejected": 2,
        "ambiguous": 2,
        "deliveries": 8,
        "delivered_unique": 5,
        "duplicates": 2,
        "lost": 1,
        "lost_ambiguous": 1,
        "delivered_ambiguous": 1,
        "delivered_after_reject": 1,
        "delivered_unknown": 1,
    }
    assert [outcome_of(k) for k in (None, "oom", "timeout", "connection_refused", "not_replicated")] == [
        "ok",
        "rejected",
        "ambiguous",
        "rejected",
        "ambiguous",
    ]


def test_audit_merge_and_save_roundtrip(tmp_path: Path) -> None:
    worker = AuditLog()
    worker.produce(["a"], "ok")
    worker.deliver("a")
    master = AuditLog()
    master.merge(worker.drain())
    master.save(tmp_path / "a.json.gz")
    assert count(AuditLog.load(tmp_path / "a.json.gz"))["delivered_unique"] == 1


def test_a_repeat_where_every_call_failed_still_counts() -> None:
    """A cell can fail completely (a tiny non-blocking pool starved by blocking dequeues):
    its errors, audit and effective config must still reach the cell result."""
    from bench.runner import combine_cell

    cell = scenario.parse({"params": {"pool_size": 2}}).cells[0]
    failed = {
        "complete": True,
        "ops": {},
        "errors": {"enqueue": {"pool_exhausted": 7}},
        "effective": {"queue": {"pool_size": 2}},
        "audit": {"rejected": 7, "lost": 0},
    }
    combined = combine_cell(cell, [failed])
    assert combined["errors"] == {"enqueue": {"pool_exhausted": 7}}
    assert combined["audit"]["rejected"] == 7 and combined["effective"]["queue"]["pool_size"] == 2

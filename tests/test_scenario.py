"""Scenario files -> cells (pure), and invalid files rejected with every problem named."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench import scenario
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


def test_a_repeat_where_every_call_failed_still_counts() -> None:
    """A cell can fail completely (a tiny non-blocking pool starved by blocking dequeues):
    its errors, audit and effective config must still reach the cell result."""
    from bench.collect import combine_cell

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


TOML_PROBLEMS = [
    ("params = 5", ["[params] must be a table of key = value, got an integer"]),
    ('params = "fast"', ["[params] must be a table of key = value, got a string"]),
    ("axes = [1]", ["[axes] must be a table of key = [value, …], got an array"]),
    ("cells = [1, 2]", ["[[cells]] #1 must be a table", "[[cells]] #2 must be a table", "got an integer"]),
    ("cells = {users = 2}", ["cells must be an array of tables ([[cells]] sections), got a table"]),
    ("[axes]\nusers = 5", ["[axes] users must be a non-empty list of values, e.g. users = [a, b], got an integer"]),
    ("[axes]\nusers = []", ["[axes] users must be a non-empty list", "got an empty array"]),
    ("[axes]\nusers = [1, 'x', 0]", ["[axes] users[1] = 'x': expected int (1..10000), got a string", "users[2] = 0"]),
    ("[params]\nduration = inf", ["[params] duration = inf: must be a finite number; valid is seconds > 0"]),
    ("[params]\nwarmup = nan", ["[params] warmup = nan: must be a finite number; valid is seconds >= 0"]),
    ("[params]\nrate = -inf", ["rate = -inf: must be a finite number"]),
    ("[axes]\nduration = [5, inf]", ["[axes] duration[1] = inf: must be a finite number"]),
    ("[params]\nduration = " + "9" * 400, ["[params] duration = 99999", "...: too large; valid is seconds > 0"]),
    ("[params]\nusers = 2.5", ["[params] users = 2.5: expected int (1..10000), got a float"]),
    ("[params]\nusers = true", ["users = True: expected int (1..10000), got a boolean"]),
    ("[params]\npool_blocking = 1", ["pool_blocking = 1: expected bool (true or false), got an integer"]),
    ("[params]\nduration = '10'", ["duration = '10': expected float (seconds > 0), got a string"]),
    ("[params]\nbackend = ['cluster']", ["backend = ['cluster']: expected str (standalone or cluster), got an array"]),
    ("[params]\npool_sise = 5", ["[params] unknown key 'pool_sise'; valid keys: backend", "did you mean 'pool_size'?"]),
    ("[[cells]]\nlabel = 3\nusers = 2", ['[[cells]] #1 label must be a string, e.g. label = "small", got an integer']),
    ("[[cells]]\nusers = 0", ["[[cells]] #1 users = 0: valid is 1..10000"]),
    ("name = 5", ['name must be a string, e.g. name = "…", got an integer']),
    ("description = ['a']", ["description must be a string", "got an array"]),
    ("[params]\nstart = 2024-01-01", ["unknown key 'start'"]),
    ("[params]\nduration = 1979-05-27", ["duration = datetime.date(1979, 5, 27): expected float", "got a date"]),
]


@pytest.mark.parametrize(("text", "needles"), TOML_PROBLEMS, ids=[t for t, _ in TOML_PROBLEMS])
def test_invalid_toml_named_with_valid_form(text: str, needles: list[str]) -> None:
    import tomllib

    with pytest.raises(UsageError) as info:
        scenario.parse(tomllib.loads(text), source="bad.toml")
    message = str(info.value)
    assert message.startswith("bad.toml: ")
    for needle in needles:
        assert needle in message, message


def test_every_problem_is_listed_one_per_line() -> None:
    import tomllib

    text = "params = 5\ncells = [1]\n[axes]\nusers = 5\nduration = [inf]\n"
    with pytest.raises(UsageError) as info:
        scenario.parse(tomllib.loads(text), source="bad.toml")
    first, *lines = str(info.value).splitlines()
    assert first == "bad.toml: 4 problems:"
    assert [line.split(" must ")[0].split(" = ")[0] for line in lines] == [
        "  - [params]",
        "  - [[cells]] #1",
        "  - [axes] users",
        "  - [axes] duration[0]",
    ]


def test_a_bad_value_does_not_cause_a_second_made_up_problem() -> None:
    """duration invalid: no 'warmup must be shorter than duration' about the default standing in."""
    with pytest.raises(UsageError) as info:
        scenario.parse({"params": {"duration": "long", "warmup": 15, "fault_at": 12, "mixed_weight": "x"}})
    message = str(info.value)
    assert "duration = 'long'" in message and "mixed_weight = 'x'" in message
    assert "must be shorter" not in message and "all user weights" not in message


def test_a_params_mistake_is_one_line_naming_the_cells() -> None:
    s = {"params": {"fault": "kill"}, "axes": {"users": [1, 2, 3, 4, 5]}}
    with pytest.raises(UsageError) as info:
        scenario.parse(s, source="x.toml")
    assert str(info.value) == (
        "x.toml: cells [users=1], [users=2], [users=3] and 2 more: fault = 'kill' needs backend = \"cluster\""
    )


@pytest.mark.parametrize(
    ("text", "args", "needle"),
    [
        ("[params]\nduration = inf\n", [], "duration = inf: must be a finite number"),
        ("params = 5\n", [], "[params] must be a table"),
        ("cells = [1, 2]\n", [], "[[cells]] #1 must be a table"),
        ("", ["--duration", "nan"], "--duration nan: must be a finite number"),
        ("[params]\nduration = 1e999\n", [], "duration = inf: must be a finite number"),
    ],
)
def test_bad_files_from_the_cli_no_traceback(text: str, args: list[str], needle: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(bad), *args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert needle in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"name = '\xff\xfe'\n")
    with pytest.raises(UsageError, match="not UTF-8 text"):
        scenario.load(str(bad))


def test_show_writes_the_file_verbatim_so_it_can_be_run(tmp_path: Path) -> None:
    """`bench scenarios --show failover > x.toml && bench run x.toml --duration 3`: plain stdout, no wrapping, even
    when piped at 80 columns; the copy is valid TOML and its fault time still fits a 3 s run."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "scenarios", "--show", "failover"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (scenario.BUILTIN_DIR / "failover.toml").read_text(encoding="utf-8")
    copy = tmp_path / "x.toml"
    copy.write_text(done.stdout, encoding="utf-8")
    tomllib.loads(done.stdout)
    loaded = scenario.load(str(copy), {"duration": 3})
    assert {c.params["duration"] for c in loaded.cells} == {3.0}
    assert scenario.origin(loaded) == f"scenario file {copy}"


def test_builtin_names_resolve_before_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()  # e.g. left by `bench run smoke --out smoke`
    assert scenario.locate("smoke") == scenario.BUILTIN_DIR / "smoke.toml"
    assert scenario.origin(scenario.load("smoke")) == "built-in scenario smoke"
    (tmp_path / "mine.toml").write_text("[params]\nduration = 2\n")
    assert scenario.locate("mine.toml") == Path("mine.toml")
    assert scenario.locate(str(tmp_path / "mine.toml")) == tmp_path / "mine.toml"
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(UsageError, match="is a folder, not a scenario file"):
        scenario.locate("folder.toml")
    with pytest.raises(UsageError, match="unknown scenario 'nope'"):
        scenario.locate("nope")


def test_builtin_soak_repeats_its_failover_and_shortens_with_duration(tmp_path: Path) -> None:
    (cell,) = scenario.load("soak").cells
    assert (cell.params["duration"], cell.params["fault"], cell.params["fault_every"]) == (1800.0, "failover", 240.0)
    assert scenario.load("soak", {"duration": 600}).cells[0].params["duration"] == 600.0
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[params]\nbackend = "cluster"\nfault_every = 30\n')
    with pytest.raises(UsageError, match=r"fault_every 30\.0 needs a fault to repeat"):
        scenario.load(str(bad))

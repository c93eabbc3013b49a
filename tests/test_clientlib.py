"""The client library as a scenario axis (bench.clientlib): which redis-py a cell's load runs on.

The install tests use pip and the package index (as `make test` does to build its venv)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from bench import clientlib, scenario
from bench.errors import UsageError
from bench.locust_cmd import locust_env
from bench.options import LoadOptions
from bench.report_tables import client_pairs, client_section

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        *[("installed", True), ("latest", True), ("8.1.0", True), ("8.2", True), ("8.2.0rc1", True)],
        *[("", False), ("8", False), ("newest", False), ("8.1.0; rm -rf /", False), ("redis==8.1.0", False)],
    ],
)
def test_which_specs_are_valid(spec: str, valid: bool) -> None:
    assert clientlib.is_valid(spec) is valid


def test_a_bad_spec_in_a_scenario_is_a_usage_error_naming_what_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[params]\nredis_py = "newest"\n')
    with pytest.raises(UsageError) as info:
        scenario.load(str(path))
    assert "redis_py" in str(info.value) and "latest" in str(info.value), info.value


def test_latest_means_the_range_pyproject_allows() -> None:
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in wanted if d.startswith("redis"))
    bounds = sorted(spec.split("]", 1)[1].split(","))
    assert sorted(clientlib.allowed_range().removeprefix("redis").split(",")) == bounds


def test_client_upgrade_cells_differ_only_in_redis_py() -> None:
    cells = scenario.load("client-upgrade").cells
    assert sorted((c.harness["fault"], c.harness["redis_py"]) for c in cells) == [
        ("kill", "installed"),
        ("kill", "latest"),
        ("pause", "installed"),
        ("pause", "latest"),
    ]
    for fault in ("kill", "pause"):
        a, b = ({k: v for k, v in c.params.items() if k != "redis_py"} for c in cells if c.harness["fault"] == fault)
        assert a == b


def test_a_release_installs_once_and_the_load_imports_it(tmp_path: Path) -> None:
    """The other of 8.1.0 / 8.2.0 than the installed one: on the Locust child's path, it is what the
    child imports and what importlib.metadata reports (the effective version a cell records)."""
    other = "8.2.0" if version("redis") != "8.2.0" else "8.1.0"
    clientlib.prepare([other, "installed"], tmp_path)
    path = clientlib.path_for(other, tmp_path)
    assert path is not None and path.is_dir()
    assert clientlib.path_for("installed", tmp_path) is None
    stamp = next(path.glob("redis-*.dist-info")).stat().st_mtime
    clientlib.prepare([other], tmp_path)  # cached: not installed again
    assert next(path.glob("redis-*.dist-info")).stat().st_mtime == stamp
    env = locust_env(LoadOptions(), path)
    probe = "import redis; from importlib.metadata import version; print(redis.__version__, version('redis'))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.split() == [other, other], done.stderr
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(path)


def test_a_release_pip_cannot_install_stops_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        clientlib.prepare(["8.99.0"], tmp_path)
    assert "8.99.0" in str(info.value) and "valid" in str(info.value), info.value
    assert not list((tmp_path / "redis-py").glob("*/redis-*.dist-info"))  # no half-made cache entry


def test_offline_inside_the_namespace_needs_the_cache(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no network"):
        clientlib.prepare(["8.1.0"], tmp_path, offline=True)
    with pytest.raises(UsageError, match="before entering"):
        clientlib.prepare(["latest"], tmp_path, offline=True)


def _cell(cell_id: str, redis_py: str, release: str, **audit: int) -> dict:
    return {
        "id": cell_id,
        "params": {"fault": "kill", "users": 10, "redis_py": redis_py},
        "effective": {"queue": {"redis_py": release}},
        "fault": {
            "unavailable_s": 2.5,
            "error_window_s": 2.0,
            "promoted_at_s": 7.0,
            "client_saw_new_master_at_s": 7.25,
        },
        "errors": {"enqueue": {"timeout": 3, "clusterdown": 1}, "dequeue": {"timeout": 2}},
        "audit": {"ambiguous": 3, "rejected": 1, "lost": 0, "duplicates": 2, "delivered_after_reject": 0} | audit,
    }


def test_the_report_puts_the_two_releases_side_by_side() -> None:
    cells = [_cell("kill, installed", "installed", "8.1.0"), _cell("kill, latest", "latest", "8.2.0", rejected=7)]
    same = [_cell("a", "installed", "8.1.0"), _cell("b", "latest", "8.1.0")]  # one release: nothing to compare
    assert client_pairs(same) == [] and client_section(same) == []
    text = "\n".join(client_section(cells))
    assert "| kill, installed | 8.1.0 | 2.50 s | 0.25 | timeout 5, clusterdown 1 | 3 | 1 | 0 | 2 | 0 |" in text, text
    assert "| kill, latest | 8.2.0 | 2.50 s | 0.25 | timeout 5, clusterdown 1 | 3 | 7 | 0 | 2 | 0 |" in text, text

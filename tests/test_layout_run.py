"""A cluster pool sweep through ``bench run``: every cell gets the same partition layout (issue #23)."""

from __future__ import annotations

import json
from pathlib import Path

from test_run import bench_run


def test_cluster_pool_sweep_cells_share_one_layout(tmp_path: Path) -> None:
    scenario = tmp_path / "sweep.toml"
    scenario.write_text(
        'name = "sweep"\n[params]\nbackend = "cluster"\nduration = 2\nwarmup = 0\nusers = 2\n'
        "pool_blocking = true\n[axes]\npool_size = [1, 5, 20]\n"
    )
    out = tmp_path / "run"
    done = bench_run(str(scenario), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads((out / "summary.json").read_text())["cells"]
    assert len(cells) == 3 and len({c["effective"]["queue"]["queue"] for c in cells}) == 3  # names differ
    layouts = [c["effective"]["queue"]["partition_masters"] for c in cells]
    assert {c["effective"]["queue"]["partitions"] for c in cells} == {3}
    assert layouts[0] == layouts[1] == layouts[2] and len(set(layouts[0].values())) == 3  # one per master
    report = (out / "report.md").read_text() if (out / "report.md").exists() else ""
    assert "layouts differ" not in report

"""Charts, report, compare and the notebook, from results folders only (no Redis needed)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "results" / "samples" / "smoke"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(SAMPLE, dest)
    return dest


def test_plot_writes_valid_png_and_svg(run_copy: Path) -> None:
    done = bench("plot", str(run_copy))
    assert done.returncode == 0, done.stderr
    charts = run_copy / "charts"
    for name in ("throughput", "latency-spectrum", "memory-policies", "failover-timelines"):
        png, svg = charts / f"{name}.png", charts / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        assert svg.read_text()[:200].lstrip().startswith("<?xml") and "<svg" in svg.read_text()[:1000], name


def test_report_mentions_every_cell_and_inlines_charts(run_copy: Path) -> None:
    done = bench("report", str(run_copy))
    assert done.returncode == 0, done.stderr
    md = (run_copy / "report.md").read_text()
    summary = json.loads((run_copy / "summary.json").read_text())
    for cell in summary["cells"]:
        assert cell["id"] in md
    assert "## Findings" in md and "lost 0 tasks and rejected" in md and "× standalone" in md
    assert "![throughput](charts/throughput.png)" in md
    html = (run_copy / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html and 'src="charts/' not in html


def test_overlay_of_two_runs(run_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(SAMPLE, other)
    done = bench("plot", str(run_copy), str(other), "--out", str(tmp_path / "both"), "--only", "latency-spectrum")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "both" / "latency-spectrum.png").exists()


def synthetic(base: Path, dest: Path, factor: float) -> Path:
    """A copy of the sample with every enqueue throughput scaled by ``factor``."""
    shutil.copytree(base, dest)
    summary = json.loads((dest / "summary.json").read_text())
    changed = copy.deepcopy(summary)
    for cell in changed["cells"]:
        enq = cell["ops"]["enqueue"]
        for key in ("ops_per_s", "ops_per_s_min", "ops_per_s_max"):
            if enq.get(key) is not None:
                enq[key] = enq[key] * factor
        enq["ops_per_s_spread"] = 0.01
    (dest / "summary.json").write_text(json.dumps(changed))
    return dest


def test_compare_flags_a_known_regression(tmp_path: Path) -> None:
    a = synthetic(SAMPLE, tmp_path / "a", 1.0)
    b = synthetic(SAMPLE, tmp_path / "b", 0.7)
    done = bench("compare", str(a), str(b), "--fail-on-regression")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "regression" in done.stdout and "0.70x" in done.stdout
    assert bench("compare", str(a), str(b)).returncode == 0  # reported, not fatal, unless asked
    same = bench("compare", str(a), str(a), "--fail-on-regression")
    assert same.returncode == 0 and "regression" not in same.stdout.split("regression/improvement")[0]


@pytest.mark.parametrize(
    ("make", "args", "needle"),
    [
        (None, ["plot", "{tmp}/missing"], "does not exist"),
        ("empty", ["plot", "{tmp}/empty"], "no summary.json"),
        ("cut", ["report", "{tmp}/cut"], "not valid JSON"),
        ("nocells", ["plot", "{tmp}/nocells"], "cell folders missing"),
        ("sample", ["plot", "{tmp}/sample", "--only", "pie-chart"], "unknown chart pie-chart"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, make: str | None, args: list[str], needle: str) -> None:
    if make == "empty":
        (tmp_path / "empty").mkdir()
    elif make == "cut":
        (tmp_path / "cut").mkdir()
        (tmp_path / "cut" / "summary.json").write_text('{"kind": "scenario-run", "cells": [')
    elif make in ("nocells", "sample"):
        shutil.copytree(SAMPLE, tmp_path / make)
        if make == "nocells":
            shutil.rmtree(tmp_path / make / "cells")
    done = bench(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr


def test_notebook_executes_headless(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = ROOT / "notebooks" / "explore-run.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "ship notebooks with outputs cleared"
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "smoke - complete - 4 cells" in text
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))

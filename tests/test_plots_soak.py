"""The soak chart on a literal run folder: its points are the hlog intervals, probes.csv and info.csv. No Redis."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bench.metrics import new_histogram
from bench.plots_soak import rolling_median, soak
from bench.results import _interval_line, hlog_header
from bench.runs import load_run

START = 1_700_000_000.0
P99 = {0: 1000, 1: 1200, 2: 900, 3: 2000}  # µs per second (exact in HdrHistogram: < 2048)


def soak_run(base: Path, duration: float = 200.0) -> Path:
    rep = base / "cells" / "01-soak" / "repeat-1"
    (rep / "hlog").mkdir(parents=True)
    with open(rep / "hlog" / "e2e.hlog", "w") as fh:
        fh.write(hlog_header("e2e", START))
        for sec, value in P99.items():
            hist = new_histogram()
            hist.record_value(value, 100)
            fh.write(_interval_line(int(START) + sec + 1, START, START + duration, hist))
    _csv(
        rep / "probes.csv",
        [{"t_s": t, "depth": 10 * t, "inflight": 3, "load_rss_bytes": 70e6 + t * 1e6} for t in range(4)],
    )
    _csv(
        rep / "info.csv",
        [{"t_s": t, "node": n, "used_memory": 1_000_000 * (t + 1)} for t in range(4) for n in ("a:1", "b:2")],
    )
    cell = {
        "id": "soak",
        "dir": "cells/01-soak",
        "params": {"duration": duration, "fault": "failover", "fault_every": 60},
        "complete": True,
        "ops": {},
        "errors": {},
        "audit": {},
        "drift": [{"name": "e2e p99", "unit": "µs", "grows": False}],
        "fault_series": {"count": 2, "injected_at_s": [60.0, 120.0]},
    }
    summary = {"kind": "scenario-run", "scenario": "soak", "complete": True, "cells": [cell], "environment": {}}
    (base / "summary.json").write_text(json.dumps(summary))
    return base


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _line(ax: Any, gid: str) -> list[list[float]]:
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    return line.get_xydata().tolist()


def test_soak_chart_plots_the_logs_probes_and_server_memory(tmp_path: Path) -> None:
    fig = soak([load_run(soak_run(tmp_path))])
    assert fig is not None
    latency, tasks, memory = fig.axes[:3]
    raw = _line(latency, "p99-e2e-raw")
    assert [y for _, y in raw] == [float(v) for v in P99.values()]  # each second's p99 from its hlog interval
    assert [x for x, _ in raw] == [1.5, 2.5, 3.5, 4.5]  # the middle of each interval
    assert [y for _, y in _line(latency, "p99-e2e")] == [y for _, y in rolling_median([(x, y) for x, y in raw])]
    assert [y for _, y in _line(tasks, "depth-raw")] == [0.0, 10.0, 20.0, 30.0]
    assert [y for _, y in _line(memory, "rss-raw")] == [70.0, 71.0, 72.0, 73.0]  # MB
    assert [y for _, y in _line(memory, "used-memory-raw")] == [2.0, 4.0, 6.0, 8.0]  # both nodes, MB
    failovers = [ln.get_xdata()[0] for ln in latency.get_lines() if ln.get_linestyle() == ":"]
    assert failovers == [60.0, 120.0]
    shaded = sorted(round(p.get_x(), 3) for p in latency.patches)  # first and last tenth of 200 s
    assert shaded == [0.0, 180.0]


def test_rolling_median_is_centred() -> None:
    points = [(float(t), v) for t, v in enumerate([1.0, 100.0, 2.0, 3.0, 4.0])]
    assert rolling_median(points, width=3) == [(0.0, 50.5), (1.0, 2.0), (2.0, 3.0), (3.0, 3.0), (4.0, 3.5)]


def test_no_long_cell_no_chart(tmp_path: Path) -> None:
    run_dir = soak_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["cells"][0]["params"] = {"duration": 10.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    assert soak([load_run(run_dir)]) is None

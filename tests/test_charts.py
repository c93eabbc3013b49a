"""Charts, report, compare and the notebook, from results folders only (no Redis needed)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

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


# -- charts: assert the plotted data, not PNG bytes ------------------------------------------------------------------

FAULT_EVENTS = {  # 0.05 s apart: the labels must still not overlap
    "injected_at_s": 2.0,
    "suspected_at_s": 2.05,
    "node_failed_at_s": 2.1,
    "promoted_at_s": 2.15,
    "client_saw_new_master_at_s": 3.2,
    "recovered_at_s": 3.25,
    "restarted_at_s": 6.0,
    "restored_at_s": 6.05,
}


def faulted_run(
    base: Path,
    events: dict[str, float] | None = None,
    lost: dict[str, int] | None = None,
    fault: dict[str, Any] | None = None,
) -> Path:
    """A scenario run in the new contract: one kill cell, load 0..6.028 s with a 28 ms last bucket (3 operations),
    warm-up 0..1 s, no successful operation 2.0..3.2 s and errors 2.0..3.1 s."""
    rep = base / "cells" / "01-kill" / "repeat-1"
    rep.mkdir(parents=True)
    lines = ["t_s,operation,count,ops_per_s,p50_us,p99_us,max_us,errors,warmup,span_s"]
    for t in range(7):
        span = 0.028 if t == 6 else 1.0
        count = 3 if t == 6 else {2: 0, 3: 800}.get(t, 1000)
        errors = {2: 40, 3: 5}.get(t, 0)
        p99 = "" if count == 0 else ([250, 480, 0, 1800, 300, 260, 240][t] or "")
        for op in ("enqueue", "dequeue"):
            lines.append(f"{t},{op},{count},{count / span:.1f},100,{p99},{p99},{errors},{t == 0},{span}")
    (rep / "timeseries.csv").write_text("\n".join(lines) + "\n")
    fault_record = {
        "kind": "kill",
        "target": "127.0.0.1:31000",
        "replica": "127.0.0.1:31003",
        **(FAULT_EVENTS if events is None else events),
        "unavailable_s": 1.2,
        "outage_start_s": 2.0,
        "outage_end_s": 3.2,
        "first_error_at_s": 2.0,
        "last_error_at_s": 3.1,
        "error_window_s": 1.1,
        "healthy_unavailable_s": 0.0,
        "timeline_source": {"node_failed": "server-log", "promoted": "server-log"},
        **(fault or {}),
    }
    cell = {
        "id": "kill",
        "dir": "cells/01-kill",
        "params": {"backend": "cluster", "fault": "kill", "warmup": 1.0, "rate": 0.0, "maxmemory": "0"},
        "ops": {"enqueue": {"ops_per_s": 900.0, "p99_us": 1800, "repeats": 1}},
        "errors": {"enqueue": {"connection_refused": 45}},
        "audit": {"enqueued_ok": 5000, "rejected": 45, "duplicates": 0, "ambiguous": 2, **(lost or {"lost": 0})},
        "fault": fault_record,
    }
    summary = {"kind": "scenario-run", "scenario": "synthetic", "complete": True, "cells": [cell]}
    (base / "summary.json").write_text(json.dumps(summary))
    return base


def _failover(path: Path) -> Figure:
    from bench import plots
    from bench.runs import load_run

    fig = plots.failover_timelines([load_run(path)])
    assert fig is not None
    fig.canvas.draw()
    return fig


def _line(fig: Figure, gid: str) -> Line2D:
    return next(line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == gid)


def test_failover_plots_rates_and_drops_the_partial_bucket(tmp_path: Path) -> None:
    fig = _failover(faulted_run(tmp_path / "run"))
    rate = _line(fig, "rate-enqueue")
    xs, ys = list(rate.get_xdata()), list(rate.get_ydata())
    assert xs == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]  # the 28 ms bucket at t=6 is left out, not drawn as a collapse
    assert ys == [1000, 1000, 0, 800, 1000, 1000]
    assert 6 not in [int(x) for x in _line(fig, "p99-enqueue").get_xdata()]
    assert "1 partial bucket(s) shorter than 0.25 s left out" in " ".join(t.get_text() for t in fig.texts)
    warm = [p for p in fig.axes[0].patches if p.get_gid() == "warmup"]
    assert len(warm) == 1 and warm[0].get_x() == 0 and warm[0].get_width() == 1.0


def test_failover_rate_uses_span_s(tmp_path: Path) -> None:
    run = faulted_run(tmp_path / "run")
    csv_file = run / "cells" / "01-kill" / "repeat-1" / "timeseries.csv"
    full, half = "5,enqueue,1000,1000.0,100,260,260,0,False,1.0", "5,enqueue,500,1000.0,100,260,260,0,False,0.5"
    assert full in csv_file.read_text()
    csv_file.write_text(csv_file.read_text().replace(full, half))
    rate = _line(_failover(run), "rate-enqueue")
    assert rate.get_xdata()[-1] == 5.25 and rate.get_ydata()[-1] == 1000  # 500 operations in half a second


def test_failover_event_labels_do_not_overlap(tmp_path: Path) -> None:
    fig = _failover(faulted_run(tmp_path / "run"))
    labels = [t for t in fig.axes[0].texts if t.get_gid() == "event-label"]
    assert len(labels) == len(FAULT_EVENTS)
    assert {t.get_text() for t in labels} >= {"injected", "suspected (PFAIL)", "node failed (FAIL, quorum)"}
    boxes = [t.get_window_extent() for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    axes_box = fig.axes[0].bbox
    assert all(axes_box.x0 <= b.x0 and b.x1 <= axes_box.x1 for b in boxes)  # none runs into the legend
    top = fig.axes[0].transData.transform((0, max(_line(fig, "rate-enqueue").get_ydata())))[1]
    assert all(b.y0 > top for b in boxes)  # and none covers the data


def test_failover_windows_and_text(tmp_path: Path) -> None:
    fig = _failover(faulted_run(tmp_path / "run", lost={"lost_upper_bound": 7}))
    ax = fig.axes[0]
    outage = next(p for p in ax.patches if p.get_gid() == "outage-window")
    assert outage.get_x() == 2.0 and abs(outage.get_width() - 1.2) < 1e-9
    text = "\n".join(t.get_text() for t in ax.texts)
    assert "unavailable 1.20 s (no success)" in text and "errors for 1.10 s" in text
    assert "lost ≤ 7" in text


def test_failover_short_fault_window_stays_visible(tmp_path: Path) -> None:
    graceful = {"outage_start_s": None, "outage_end_s": None, "unavailable_s": 0.0}
    events = {"injected_at_s": 2.0, "promoted_at_s": 2.02}  # a 20 ms failover on a 6 s axis
    fig = _failover(faulted_run(tmp_path / "run", events=events, fault=graceful))
    ax = fig.axes[0]
    fault = next(p for p in ax.patches if p.get_gid() == "fault-window")
    assert fault.get_x() == 2.0 and fault.get_window_extent().width >= 4, fault.get_window_extent()
    assert not [p for p in ax.patches if p.get_gid() == "outage-window"]
    assert "unavailable 0.00 s (no success)" in "\n".join(t.get_text() for t in ax.texts)


def test_failover_old_format_sample_is_marked(tmp_path: Path) -> None:
    from bench import plots
    from bench.runs import load_run

    fig = plots.failover_timelines([load_run(SAMPLE)])
    assert fig is not None
    assert "without span_s" in " ".join(t.get_text() for t in fig.texts)
    assert [line.get_xdata()[0] for line in fig.axes[0].get_lines() if line.get_gid() == "maybe-partial"] == [4.5, 4.5]
    assert "old format" in "\n".join(t.get_text() for t in fig.axes[0].texts)


def _tick_labels(axis: Axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


def test_latency_ticks_are_readable_1_2_5_steps(tmp_path: Path) -> None:
    from bench import plots
    from bench.chartstyle import format_us, steps_125
    from bench.runs import load_run

    fig = _failover(faulted_run(tmp_path / "run"))
    p99_axis = next(ax for ax in fig.axes if any(line.get_gid() == "p99-enqueue" for line in ax.get_lines()))
    labels = _tick_labels(p99_axis.yaxis)
    assert p99_axis.get_yscale() == "log"
    assert {"200 µs", "500 µs", "1 ms", "2 ms"} <= set(labels), labels
    assert not any("10^" in s or "times" in s or "e+" in s for s in labels)
    spectrum = plots.latency_spectrum([load_run(SAMPLE)])
    assert spectrum is not None
    spectrum.canvas.draw()
    enqueue = _tick_labels(spectrum.axes[0].yaxis)
    assert "2 ms" in enqueue and "500 µs" in enqueue, enqueue
    e2e = _tick_labels(spectrum.axes[3].yaxis)  # within one decade: still at least four labels
    assert len(e2e) >= 4 and all(s.endswith(" s") for s in e2e), e2e
    assert [format_us(v) for v in (200, 1000, 20_000, 1e6, 999.9999)] == ["200 µs", "1 ms", "20 ms", "1 s", "1 ms"]
    assert steps_125(150, 2500) == [200, 500, 1000, 2000]


def test_throughput_shows_rejections_and_single_repeat() -> None:
    from bench import plots
    from bench.runs import load_run

    fig = plots.throughput([load_run(SAMPLE)])
    assert fig is not None
    ax = fig.axes[0]
    notes = " ".join(t.get_text() for t in [*fig.texts, *ax.texts])
    assert "1,722 enqueues rejected" in notes and "enqueue errors 1,086" in notes
    assert "1 repeat: no error bars" in notes
    assert sum(bool(p.get_hatch()) for p in ax.patches) == 1  # the enqueue bar of the OOM cell


def test_memory_chart_draws_the_limit_and_integer_evictions() -> None:
    from bench import plots
    from bench.chartstyle import parse_memory
    from bench.runs import load_run

    fig = plots.memory_policies([load_run(SAMPLE)])
    assert fig is not None
    fig.canvas.draw()
    memory_ax, evicted_ax = fig.axes[1], fig.axes[2]
    limit = next(line for line in memory_ax.get_lines() if str(line.get_label()).startswith("maxmemory"))
    assert list(limit.get_ydata()) == [4.0, 4.0] and limit.get_label() == "maxmemory 4 MiB"
    assert all(float(s).is_integer() for s in _tick_labels(evicted_ax.yaxis))
    legend = memory_ax.get_legend().get_window_extent()
    assert legend.y1 < memory_ax.bbox.y0  # below the axes, not over the curves
    assert parse_memory("6mb") == 6 * 2**20 and parse_memory("4m") == 4_000_000 and parse_memory("0") == 0


def test_latency_vs_load_leaves_out_a_rate_not_reached(tmp_path: Path) -> None:
    from bench import plots
    from bench.runs import load_run

    run = tmp_path / "run"
    shutil.copytree(SAMPLE, run)
    summary = json.loads((run / "summary.json").read_text())
    cells = []
    for rate, p99, reached in ((500, 800, True), (2000, 3000, True), (4000, 350_000, False)):
        cell = copy.deepcopy(summary["cells"][0])
        cell["id"], cell["params"]["rate"] = f"rate {rate}", rate
        cell["ops"]["enqueue"]["p99_us"] = p99
        cell["open_loop"] = {"rate": rate, "achieved_rate": 2870.0 if not reached else rate, "rate_reached": reached}
        cells.append(cell)
    summary["cells"] = cells
    (run / "summary.json").write_text(json.dumps(summary))
    fig = plots.latency_vs_load([load_run(run)])
    assert fig is not None
    ax = fig.axes[0]
    p99 = next(line for line in ax.get_lines() if line.get_label() == "p99")
    assert list(p99.get_xdata()) == [500, 2000]
    assert "4,000/s not reached\n(achieved 2,870/s)" in [t.get_text() for t in ax.texts]

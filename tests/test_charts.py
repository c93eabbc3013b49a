"""Charts (the plotted data, from results folders) and the notebook; no Redis except the Locust-folder tests."""

from __future__ import annotations

import copy
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SAMPLE, bench
from matplotlib.axis import Axis
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D


def sample_summary(path: Path = SAMPLE) -> dict[str, Any]:
    return json.loads((path / "summary.json").read_text())


def sample_csv(cell: dict[str, Any], name: str, path: Path = SAMPLE) -> list[dict[str, str]]:
    with open(path / cell["dir"] / "repeat-1" / name, newline="") as fh:
        return list(csv.DictReader(fh))


def test_plot_writes_each_chart_the_sample_has_data_for(run_copy: Path) -> None:
    """The CLI writes the charts; what they show is checked on the figures below (test_*_plots_*)."""
    done = bench("plot", str(run_copy))
    assert done.returncode == 0, done.stderr
    written = {p.name for p in (run_copy / "charts").iterdir()}
    # one pool size, no open-loop rate, no partition, no capacity search in the smoke run: those charts are left out
    names = ("throughput", "latency-spectrum", "memory-policies", "failover-timelines")
    assert written == {f"{n}.{ext}" for n in names for ext in ("png", "svg")}


def test_overlay_of_two_runs(run_copy: Path, tmp_path: Path) -> None:
    from bench import plots
    from bench.runs import load_run

    other = tmp_path / "other"
    shutil.copytree(SAMPLE, other)
    done = bench("plot", str(run_copy), str(other), "--out", str(tmp_path / "both"), "--only", "latency-spectrum")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "both").iterdir()} == {"latency-spectrum.png", "latency-spectrum.svg"}
    fig = plots.latency_spectrum([load_run(run_copy), load_run(other)])
    assert fig is not None
    drawn = 0  # 8 cells: a row per study; per cell the first run solid, the second dashed, the same points
    for ax in fig.axes:
        by_style: dict[str, dict[str, Any]] = {"-": {}, "--": {}}
        for line in ax.get_lines():
            run_name, cell_id = str(line.get_label()).split(": ")
            assert line.get_linestyle() == ("-" if run_name == run_copy.name else "--"), ax.get_title()
            by_style[line.get_linestyle()][cell_id] = line.get_xydata().tolist()
        assert by_style["-"] == by_style["--"] and by_style["-"], ax.get_title()
        drawn += len(by_style["-"])
    assert drawn == 4 * len(sample_summary()["cells"])


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


def test_notebook_executes_headless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No BENCH_RUN_DIR and no run under results/ (an empty folder here): the committed sample, named as such."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(ROOT / "notebooks" / "explore-run.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "ship notebooks with outputs cleared"
    text = run_notebook(monkeypatch, BENCH_RESULTS_DIR=str(tmp_path))
    assert "(the committed sample (no run under" in text
    assert "smoke - complete - 4 cells" in text


# -- charts: assert the plotted data, not PNG bytes ------------------------------------------------------------------


def _bars(ax: Any) -> dict[str, list[float]]:
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    return {str(c.get_label()): [p.get_height() for p in c.patches] for c in bars}


def test_throughput_plots_each_cells_ops_per_s_from_summary_json() -> None:
    from bench import plots
    from bench.runs import load_run

    fig = plots.throughput([load_run(SAMPLE)])
    assert fig is not None
    ax = fig.axes[0]
    cells = [c for c in sample_summary()["cells"] if c["params"]["fault"] == "none"]  # faulted cells left out
    assert [t.get_text() for t in ax.get_xticklabels()] == [c["id"] for c in cells]
    assert _bars(ax) == {op: [c["ops"][op]["ops_per_s"] for c in cells] for op in ("enqueue", "dequeue", "ack")}
    groups = zip(*(c.patches for c in ax.containers if isinstance(c, BarContainer)), strict=True)
    for tick, group in zip(ax.get_xticks(), groups, strict=True):  # each cell's bars centred on its own label
        centres = [p.get_x() + p.get_width() / 2 for p in group]
        assert abs(sum(centres) / len(centres) - tick) < 1e-9 and centres == sorted(centres)


def test_throughput_error_bars_span_the_repeats_min_to_max(run_copy: Path) -> None:
    from bench import plots
    from bench.runs import load_run

    summary = sample_summary(run_copy)
    summary["cells"][0]["ops"]["enqueue"].update(ops_per_s=4000.0, ops_per_s_min=3500.0, ops_per_s_max=4600.0)
    summary["cells"][0]["ops"]["enqueue"]["repeats"] = 3
    (run_copy / "summary.json").write_text(json.dumps(summary))
    fig = plots.throughput([load_run(run_copy)])
    assert fig is not None
    ax = fig.axes[0]
    assert _bars(ax)["enqueue"][0] == 4000.0  # the median, not the best repeat
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    enqueue = [seg.tolist() for seg in errorbars[0].lines[2][0].get_segments() if len(seg)]
    bar = next(c for c in ax.containers if c.get_label() == "enqueue").patches[0]
    centre = bar.get_x() + bar.get_width() / 2
    assert enqueue == [[[centre, 3500.0], [centre, 4600.0]]]  # only the 3-repeat bar has one
    assert not [seg for e in errorbars for seg in e.lines[2][0].get_segments() if len(seg)][1:]
    assert "(1 repeat, none: cluster, noeviction 4mb)" in " ".join(t.get_text() for t in fig.texts)


def _x_key(x: float) -> float:
    return round(float(x), 6)


def test_latency_spectrum_plots_the_summary_percentiles() -> None:
    from bench import plots
    from bench.runs import load_run

    fig = plots.latency_spectrum([load_run(SAMPLE)])
    assert fig is not None
    cells = sample_summary()["cells"]
    keys = {50: "p50_us", 90: "p90_us", 99: "p99_us", 99.9: "p999_us", 99.99: "p9999_us"}
    at = {_x_key(1 / (1 - p / 100)): key for p, key in keys.items()}  # x = 1/(1-p)
    for ax, op in zip(fig.axes, ("enqueue", "dequeue", "ack", "e2e"), strict=False):
        assert ax.get_title().startswith(op)
        lines = ax.get_lines()
        assert len(lines) == len(cells)
        for line, cell in zip(lines, cells, strict=True):
            stats = cell["ops"][op]
            points = {_x_key(x): y for x, y in line.get_xydata()}
            shown = {x: key for x, key in at.items() if x in points}
            assert {points[x] for x in shown} == {stats[key] for key in shown.values()}, (op, cell["id"])
            assert [points[x] for x in shown] == [stats[key] for key in shown.values()], (op, cell["id"])
            # a percentile is drawn only with at least one sample beyond it: 99.99 needs 10,000 samples
            assert (_x_key(10_000) in points) == (stats["count"] >= 10_000), (op, cell["id"], stats["count"])
            assert {"p50_us", "p90_us", "p99_us"} <= set(shown.values())
            ys = list(line.get_ydata())
            assert ys == sorted(ys) and ys[-1] <= stats["max_us"]


def test_spread_fans_out_overlapping_labels_around_where_they_belong() -> None:
    from bench.chartstyle import spread

    assert spread([0, 5], 1) == [0, 5]  # apart already: unmoved
    assert spread([0, 0], 1) == [-0.5, 0.5]
    assert spread([10, 0, 0.5], 1) == [10, -0.25, 0.75]  # order of the input kept
    assert spread([0, 1, 1.2], 1) == pytest.approx([-0.2667, 0.7333, 1.7333], abs=1e-4)  # a merge pushes into 0
    assert spread([0, 0, 0, 1.4], 1) == pytest.approx([-1.15, -0.15, 0.85, 1.85])
    assert spread([], 1) == []


def _sample_copies(folder: Path, n: int) -> list[Any]:
    """``n`` copies of the sample run, loaded: a chart of many cells, overlaid as a user would compare runs."""
    from bench.runs import load_run

    for i in range(n):
        shutil.copytree(SAMPLE, folder / f"run{i}")
    return [load_run(folder / f"run{i}") for i in range(n)]


def test_latency_spectrum_labels_never_overlap_and_cells_past_ten_change_marker(tmp_path: Path) -> None:
    """Four copies of the sample overlaid: 16 curves in rows of at most six, each label's twin at the same point."""
    from bench import plots
    from bench.chartstyle import cell_style

    fig = plots.latency_spectrum(_sample_copies(tmp_path, 4))
    assert fig is not None
    fig.canvas.draw()
    per_op: dict[str, list[str]] = {}
    for ax in fig.axes:
        lines = ax.get_lines()
        labels = [t for t in ax.texts if t.get_gid() == "sample-count"]
        assert len(labels) == len(lines) <= 6
        op = ax.get_title().split(" · ")[1]
        per_op.setdefault(op, []).extend(t.get_text() for t in labels)
        boxes = [t.get_window_extent() for t in labels]  # as drawn
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), (ax.get_title(), a, b)
    for op, texts in per_op.items():
        counts = [f"n={cell['ops'][op]['count']:,}" for cell in sample_summary()["cells"]]
        assert sorted(texts) == sorted(counts * 4)
    assert [cell_style(i)["marker"] for i in range(12)] == ["o"] * 10 + ["s"] * 2


def test_memory_chart_plots_the_audit_and_info_csv() -> None:
    from bench import plots
    from bench.runs import load_run

    fig = plots.memory_policies([load_run(SAMPLE)])
    assert fig is not None
    tasks_ax, memory_ax, evicted_ax = fig.axes[:3]
    (cell,) = [c for c in sample_summary()["cells"] if c["params"]["maxmemory"] != "0"]
    audit = cell["audit"]
    assert _bars(tasks_ax) == {
        "enqueued ok": [audit["enqueued_ok"]],
        "delivered": [audit["delivered_unique"]],
        "LOST": [audit["lost"]],
        "rejected (OOM)": [audit["rejected"]],
    }
    assert audit["rejected"] > 0  # the sample does exercise the OOM bar
    rows = sample_csv(cell, "info.csv")  # one node: its used_memory per poll
    used = next(line for line in memory_ax.get_lines() if line.get_label() == cell["id"])
    assert used.get_xydata().tolist() == [[float(r["t_s"]), int(r["used_memory"]) / 2**20] for r in rows]
    (evicted,) = evicted_ax.get_lines()
    assert evicted.get_xydata().tolist() == [[float(r["t_s"]), int(r["evicted_keys"])] for r in rows]


def test_failover_plots_the_samples_timeseries_and_event_times() -> None:

    fig = _failover(SAMPLE)
    (cell,) = [c for c in sample_summary()["cells"] if c.get("fault")]
    rows = sample_csv(cell, "timeseries.csv")  # an older run: 1-s buckets without span_s
    for op in ("enqueue", "dequeue"):
        mine = sorted((r for r in rows if r["operation"] == op), key=lambda r: int(r["t_s"]))
        assert _line(fig, f"rate-{op}").get_xydata().tolist() == [[int(r["t_s"]) + 0.5, int(r["count"])] for r in mine]
        p99 = _line(fig, f"p99-{op}").get_xydata().tolist()
        assert p99 == [[int(r["t_s"]) + 0.5, int(r["p99_us"])] for r in mine]
    ax = fig.axes[0]
    fault = cell["fault"]
    events = {fault["injected_at_s"]: "injected", fault["promoted_at_s"]: "replica promoted"}
    events[fault["restored_at_s"]] = "topology restored"
    labels = {t.xy[0]: t.get_text() for t in ax.texts if t.get_gid() == "event-label"}
    assert labels == events
    vertical = {line.get_xdata()[0] for line in ax.get_lines() if line.get_gid() is None}
    assert vertical == set(events)  # one line per event (the fault window's edges are two of them)
    window = next(p for p in ax.patches if p.get_gid() == "fault-window")
    assert window.get_x() == fault["injected_at_s"]
    assert abs(window.get_x() + window.get_width() - fault["promoted_at_s"]) < 1e-9


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
    notes = " ".join(t.get_text().replace("\n", " ") for t in [*fig.texts, *ax.texts])
    assert "1,722 enqueues rejected" in notes and "enqueue errors 1,086" in notes
    assert "1 repeat: no error bars" in notes
    assert sum(bool(p.get_hatch()) for p in ax.patches) == 1  # the enqueue bar of the OOM cell


def test_throughput_notes_stay_over_their_own_group(tmp_path: Path) -> None:
    """Four copies of the sample: 12 cells, a panel per study; each OOM cell's note beside its own bars."""
    from bench import plots

    fig = plots.throughput(_sample_copies(tmp_path, 4))
    assert fig is not None
    fig.canvas.draw()
    ax = next(ax for ax in fig.axes if ax.get_title(loc="left") == "memory policies")
    bars = [p for c in ax.containers if isinstance(c, BarContainer) for p in c.patches]
    notes = [t for t in ax.texts if "rejected" in t.get_text()]
    assert len(notes) == 4
    _assert_apart(notes, "notes")
    for note in notes:
        box = note.get_window_extent()
        middle = ax.transData.inverted().transform((box.x0, (box.y0 + box.y1) / 2))[1]
        own = [b.get_window_extent() for b in bars if abs(b.get_y() + b.get_height() / 2 - middle) < 0.5]
        assert own and min(b.y0 for b in own) - 2 <= box.y0 and box.y1 <= max(b.y1 for b in own) + 2
        assert box.x0 >= max(b.x1 for b in own) and box.x1 <= ax.get_window_extent().x1, note.get_text()


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
    assert p99.get_xydata().tolist() == [[500, 800], [2000, 3000]]  # the cells' enqueue p99 at their rate
    assert "4,000/s not reached\n(achieved 2,870/s)" in [t.get_text() for t in ax.texts]


# -- one results format: a Locust run folder is a one-cell run for every reader ----------------------------------


@pytest.fixture(scope="module")
def locust_run(standalone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real results/locust-* folder: locust -f locustfiles/queue.py --headless, as users run it."""
    out = tmp_path_factory.mktemp("locust") / "locust-20260101T100000Z"
    done = subprocess.run(
        [
            *[sys.executable, "-m", "locust", "-f", "locustfiles/queue.py", "--headless", "-u", "4", "-r", "4"],
            *["-t", "3s", "--redis-url", standalone.url, "--queue-name", "charts-locust", "--pool-size", "8"],
            *["--warmup", "1", "--audit", "true", "--results-dir", str(out)],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "load-run"
    return out


LOCUST_CELL = "locust standalone, 4 users, pool 8"


def test_a_locust_run_folder_is_a_one_cell_run(locust_run: Path, tmp_path: Path) -> None:
    from bench.runs import load_run

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(locust_run, a)
    shutil.copytree(locust_run, b)
    run = load_run(a)
    (cell,) = run.cells
    assert cell["id"] == LOCUST_CELL and cell["params"]["warmup"] == 1.0 and run.repeat_dirs(cell) == [a]
    assert run.timeseries(cell) and {"enqueue", "dequeue", "ack"} <= set(run.histograms(cell))
    done = bench("plot", str(a))
    assert done.returncode == 0, done.stderr
    assert {"throughput.png", "latency-spectrum.png"} <= {p.name for p in (a / "charts").iterdir()}
    from bench import plots

    fig = plots.throughput([run])
    assert fig is not None
    ops = json.loads((a / "summary.json").read_text())["ops"]  # the load run's own numbers, one bar each
    assert _bars(fig.axes[0]) == {op: [ops[op]["ops_per_s"]] for op in ("enqueue", "dequeue", "ack")}
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [LOCUST_CELL]
    done = bench("report", str(a))
    assert done.returncode == 0, done.stderr
    md = (a / "report.md").read_text()
    assert LOCUST_CELL in md and "## Task audit during the load" in md and "LOST" not in md
    assert "<table>" in (a / "report.html").read_text()
    done = bench("compare", str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert "locust standalone" in done.stdout and "same" in done.stdout


def run_notebook(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("BENCH_RUN_DIR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(ROOT / "notebooks" / "explore-run.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_notebook_opens_the_newest_run_a_locust_folder_too(
    locust_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.runs import latest_run

    results = tmp_path / "results"
    shutil.copytree(SAMPLE, results / "older")
    shutil.copytree(locust_run, results / locust_run.name)
    (results / "samples").mkdir()
    assert latest_run(results) == results / locust_run.name
    assert latest_run(tmp_path / "nothing-here") is None
    text = run_notebook(monkeypatch, BENCH_RESULTS_DIR=str(results))
    assert f"run {results / locust_run.name} (the newest run under {results})" in text
    assert f"{locust_run.name} - " in text and " - 1 cells" in text and LOCUST_CELL in text, text


# -- micro-benchmarks: only when asked, batch calls in tasks/s ------------------------------------------------------


def benchmark_json(path: Path) -> Path:
    def entry(name: str, group: str, ops: float, **extra: Any) -> dict[str, Any]:
        return {"name": name, "param": name, "group": group, "stats": {"ops": ops}, "extra_info": extra}

    data = {
        "benchmarks": [
            entry("standalone-100B-enqueue", "enqueue vs LPUSH standalone 100B", 5000.0),
            entry("standalone-100B-raw_LPUSH", "enqueue vs LPUSH standalone 100B", 8000.0),
            entry(
                "standalone-100B-enqueue_many100",
                "enqueue_many(100) vs LPUSH(100 values) standalone 100B",
                100.0,
                tasks_per_call=100,
            ),
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_microbenchmarks_only_when_asked_and_batches_in_tasks_per_s(run_copy: Path, tmp_path: Path) -> None:
    from bench import plots

    cwd = tmp_path / "elsewhere"
    benchmark_json(cwd / "results" / "benchmarks" / "Linux-CPython" / "0001_x.json")

    def plot(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "bench", "plot", str(run_copy), *args]
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)

    assert plot().returncode == 0
    assert not (run_copy / "charts" / "microbenchmarks.png").exists()  # a results/benchmarks nearby: not asked for
    done = plot("--only", "microbenchmarks", "--benchmarks", "latest")
    assert done.returncode == 0, done.stderr
    assert (run_copy / "charts" / "microbenchmarks.png").exists()
    done = plot("--only", "microbenchmarks")
    assert done.returncode == 2 and "needs --benchmarks" in done.stderr
    fig = plots.microbenchmarks(cwd / "results" / "benchmarks" / "Linux-CPython" / "0001_x.json")
    assert fig is not None
    ax = fig.axes[0]
    widths = {label.get_text(): bar.get_width() for label, bar in zip(ax.get_yticklabels(), ax.patches, strict=True)}
    assert widths == {
        "enqueue  (standalone 100B)": 5000.0,
        "raw LPUSH  (standalone 100B)": 8000.0,
        "enqueue many100  (standalone 100B, 100 tasks per call)": 10_000.0,  # 100 calls/s x 100 tasks
    }
    assert "tasks per second" in ax.get_xlabel()


# -- the demo's pool-size sweep: only the pool varies along a line ---------------------------------------------------


def test_demo_pool_sweep_is_one_line_per_backend_and_round_trip(tmp_path: Path) -> None:
    from bench import plots, scenario
    from bench.runs import Run

    demo = scenario.load("demo")
    cells = []
    for c in demo.cells:
        rate = 1000.0 * c.params["pool_size"] ** 0.2
        ops = {"enqueue": {"ops_per_s": rate, "p99_us": 1e6 / rate}}
        cells.append({"id": c.id, "params": c.params, "ops": ops, "errors": {}, "audit": {}, "complete": True})
    summary = {"kind": "scenario-run", "scenario": "demo", "complete": True, "cells": cells}
    fig = plots.pool_sizes([Run(tmp_path, summary)])
    assert fig is not None
    lines = {str(line.get_label()): list(line.get_xdata()) for line in fig.axes[0].get_lines()}
    assert lines == {
        "blocking, cluster, 20 users": [1, 5, 50],
        "blocking, cluster, 20 users, 1 ms RTT": [50],
        "blocking, standalone, 20 users": [1, 2, 5, 20, 50],
        "blocking, standalone, 20 users, 1 ms RTT": [1, 2, 5, 20, 50],
    }
    throughput, p99 = fig.axes[0].get_lines(), fig.axes[1].get_lines()
    for rate_line, p99_line in zip(throughput, p99, strict=True):  # the plotted values are the cells' own
        sizes = list(rate_line.get_xdata())
        assert list(rate_line.get_ydata()) == [1000.0 * size**0.2 for size in sizes]
        assert list(p99_line.get_ydata()) == [1e6 / (1000.0 * size**0.2) for size in sizes]
    sweep = [c for c in demo.cells if c.params["fault"] == "none" and c.params["maxmemory"] == "0"]
    for backend, rtt in (("standalone", 0.0), ("standalone", 1.0), ("cluster", 0.0)):
        mine = [c.params for c in sweep if c.params["backend"] == backend and c.params["rtt_ms"] == rtt]
        varied = {k for k in mine[0] if len({str(p[k]) for p in mine}) > 1}
        assert varied == {"pool_size"}, varied  # only the pool size differs along a line


# -- many cells: small multiples, one panel (row) per study -----------------------------------------------------------

DEMO_STUDIES = {
    "pool sweep: standalone, loopback": [
        "standalone pool 1",
        "standalone pool 2",
        "standalone pool 5",
        "standalone pool 20",
        "standalone",
    ],
    "pool sweep: standalone, 1 ms RTT": [
        "standalone 1 ms pool 1",
        "standalone 1 ms pool 2",
        "standalone 1 ms pool 5",
        "standalone 1 ms pool 20",
        "standalone 1 ms",
    ],
    "pool sweep: cluster, loopback": ["cluster pool 1", "cluster pool 5", "cluster"],
    "other cells": ["cluster 1 ms"],
    "memory policies": ["noeviction 6mb", "allkeys-lru 6mb"],
    "faults": ["kill master", "graceful failover"],
}


def demo_run(folder: Path) -> Any:
    """The demo scenario's 18 cells as a run: synthetic ops/s, the sample's histograms in every cell."""
    from bench import scenario
    from bench.runs import Run

    histograms = SAMPLE / "cells" / "01-standalone" / "repeat-1" / "histograms.json"
    cells = []
    for i, c in enumerate(scenario.load("demo").cells):
        repeat = folder / "cells" / f"{i:02d}" / "repeat-1"
        repeat.mkdir(parents=True)
        shutil.copy(histograms, repeat / "histograms.json")
        rate = 1000.0 * c.params["pool_size"] ** 0.2 + i
        ops = {op: {"ops_per_s": rate, "p99_us": 1e6 / rate} for op in ("enqueue", "dequeue", "ack")}
        cell = {"id": c.id, "dir": f"cells/{i:02d}", "params": c.params, "ops": ops, "errors": {}, "audit": {}}
        cells.append({**cell, "complete": True})
    return Run(folder, {"kind": "scenario-run", "scenario": "demo", "complete": True, "cells": cells})


def _drawn_ticklabels(axis: Axis) -> list[Any]:
    low, high = sorted(axis.get_view_interval())
    pairs = zip(axis.get_majorticklabels(), axis.get_majorticklocs(), strict=False)  # shared axes: none shown
    return [t for t, at in pairs if t.get_visible() and t.get_text() and low * (1 - 1e-9) <= at <= high * (1 + 1e-9)]


def _assert_apart(texts: list[Any], where: str) -> None:
    boxes = [(t.get_text(), t.get_window_extent()) for t in texts]
    for i, (a_text, a) in enumerate(boxes):
        for b_text, b in boxes[i + 1 :]:
            assert not a.overlaps(b), (where, a_text, b_text)


def test_spectrum_of_the_demo_is_a_row_per_study_with_its_own_legend(tmp_path: Path) -> None:
    from bench import plots

    fig = plots.latency_spectrum([demo_run(tmp_path)])
    assert fig is not None
    fig.canvas.draw()
    rows: dict[str, dict[str, list[str]]] = {}
    for ax in fig.axes:
        study, op = ax.get_title().split(" · ")
        rows.setdefault(study, {})[op] = [str(line.get_label()) for line in ax.get_lines()]
        _assert_apart(_drawn_ticklabels(ax.xaxis), ax.get_title() + " x ticks")
        _assert_apart(_drawn_ticklabels(ax.yaxis), ax.get_title() + " y ticks")
        _assert_apart([t for t in ax.texts if t.get_gid() == "sample-count"], ax.get_title() + " n= labels")
    assert list(rows) == list(DEMO_STUDIES)  # the studies, in order
    for study, ops in rows.items():
        assert list(ops) == ["enqueue", "dequeue", "ack", "e2e"]
        assert all(lines == DEMO_STUDIES[study] for lines in ops.values()), (study, ops)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert [[t.get_text() for t in legend.get_texts()] for legend in legends] == list(DEMO_STUDIES.values())
    for legend in legends:
        _assert_apart(legend.get_texts(), "legend")
    for ax in fig.axes:  # colours restart per row: within one panel, no two lines alike
        assert len({line.get_color() for line in ax.get_lines()}) == len(ax.get_lines()) <= 6


def test_throughput_of_the_demo_is_a_panel_per_study_of_horizontal_bars(tmp_path: Path) -> None:
    from bench import plots

    run = demo_run(tmp_path)
    fig = plots.throughput([run])
    assert fig is not None
    fig.canvas.draw()
    panels = {ax.get_title(loc="left"): [t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes}
    assert panels == {k: v for k, v in DEMO_STUDIES.items() if k != "faults"}  # faulted cells left out
    rate = {c["id"]: c["ops"]["enqueue"]["ops_per_s"] for c in run.cells}
    for ax in fig.axes:
        bars = {str(c.get_label()): c for c in ax.containers if isinstance(c, BarContainer)}
        assert list(bars) == ["enqueue", "dequeue", "ack"]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert [p.get_width() for p in bars["enqueue"].patches] == [rate[label] for label in labels]
        for tick, group in zip(ax.get_yticks(), zip(*(b.patches for b in bars.values()), strict=True), strict=True):
            centres = [p.get_y() + p.get_height() / 2 for p in group]  # a cell's bars around its own label
            assert abs(sum(centres) / len(centres) - tick) < 1e-9
        _assert_apart(_drawn_ticklabels(ax.yaxis), ax.get_title(loc="left") + " cell labels")
        _assert_apart(_drawn_ticklabels(ax.xaxis), ax.get_title(loc="left") + " x ticks")
    legend_texts = [t for legend in fig.legends for t in legend.get_texts()]
    assert [t.get_text() for t in legend_texts] == ["enqueue", "dequeue", "ack"]
    _assert_apart(legend_texts, "legend")
    titles = [ax.title for ax in fig.axes] + [fig._suptitle]  # nothing runs into the title or the legend
    _assert_apart([*titles, *legend_texts], "titles and legend")

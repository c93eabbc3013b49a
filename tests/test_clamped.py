"""Issue #23: a value clamped at the top of a histogram's range is a bound, never a measurement:
the stats count it (``clamped``, ``highest_trackable_us``) and every table prints "≥ <range>". No Redis."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from test_report import cell, op, run_of

from bench import report, webui
from bench.metrics import AGE_HIGHEST_US, HIGHEST_US, Recorder, clamped, decode
from bench.stats import latency_cell, summarize
from bench.tables import run_table

HOUR_US = 3_600_000_000


def record(values: dict[str, list[float]]) -> dict[str, Any]:
    now = [1000.5]
    recorder = Recorder(clock=lambda: now[0])
    for name, us in values.items():
        for v in us:
            recorder.record(name, v)
    recorder.finalize()
    return {name: summarize(hist, 1.0) for name, hist in recorder.cumulative.items()}


def test_e2e_over_24_h_is_counted_clamped_and_printed_as_a_bound() -> None:
    ops = record({"e2e": [500.0] * 90 + [30 * HOUR_US] * 10, "enqueue": [200.0] * 99 + [70e6]})
    e2e, enq = ops["e2e"], ops["enqueue"]
    assert e2e["highest_trackable_us"] == AGE_HIGHEST_US == 24 * HOUR_US
    assert enq["highest_trackable_us"] == HIGHEST_US  # a Redis call keeps its 60 s range
    assert e2e["clamped"] == 10 and enq["clamped"] == 1
    assert latency_cell(e2e, "p99_us", str) == "≥ 24 h (10 clamped)"
    assert latency_cell(e2e, "max_us", str) == "≥ 24 h (10 clamped)"
    assert latency_cell(e2e, "p50_us", str) == str(e2e["p50_us"]) == "500"  # measured: the number
    assert latency_cell(enq, "max_us", str) == "≥ 60 s (1 clamped)"
    assert latency_cell(enq, "p99_us", str) == "200"
    # 10 hours is inside the range: measured, not clamped
    long = record({"e2e": [10 * HOUR_US]})["e2e"]
    assert long["clamped"] == 0 and latency_cell(long, "max_us", lambda v: f"{v / HOUR_US:.2f}") == "10.00"


def test_clamped_count_survives_encoding_as_the_hlog_and_histograms_json_readers_see_it() -> None:
    now = [5.0]
    recorder = Recorder(clock=lambda: now[0])
    for v in (100.0, 25 * HOUR_US, 26 * HOUR_US):
        recorder.record("e2e", v)
    merged = Recorder()
    merged.merge(recorder.drain())  # a worker's report to the master
    merged.finalize()
    again = decode(merged.cumulative["e2e"].encode())
    assert clamped(again) == 2 and again.highest_trackable_value == AGE_HIGHEST_US


def render(table: Any) -> str:
    console = Console(record=True, width=300, file=io.StringIO())
    console.print(table)
    return console.export_text()


def at_top(p99: float = 60_030_975.0) -> dict[str, Any]:
    """An enqueue whose p99, p99.9 (and max) sit at the top of the 60 s range, 7 values clamped."""
    return op(1000.0, p99) | {"p999_us": p99, "max_us": p99, "clamped": 7, "highest_trackable_us": HIGHEST_US}


def test_tables_and_report_print_the_bound_never_the_clamped_number(tmp_path: Path) -> None:
    run = run_of(tmp_path, [cell("slow", enqueue=at_top())])
    for text in (render(run_table(run.summary)), report.markdown(run)):
        assert "≥ 60 s (7 clamped)" in text
        assert "60,030,975" not in text and "60030975" not in text
    assert "30,015,488" in report.markdown(run)  # p50 is a measurement: printed as such
    # Locust's console table, in a child: bench.load_results imports gevent (and patches this process)
    script = (
        "import json, sys; from bench.load_results import us_summary_table as t; print(t('out', json.load(sys.stdin)))"
    )
    summary = {"ops": {"e2e": at_top() | {"count": 100}}, "queue": {}}
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(summary), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "≥ 60 s (7 clamped)" in done.stdout and "60,030,975" not in done.stdout


def test_web_ui_tab_prints_the_bound() -> None:
    e2e = {"count": 10, "ops_per_s": 1.0, "p50_us": 400, "p99_us": 86_436_216_831, "max_us": 86_436_216_831}
    snap = {
        "in_warmup": False,
        "ops": {"e2e": e2e | {"clamped": 3, "highest_trackable_us": AGE_HIGHEST_US}},
        "queue": {"depth": 1, "inflight": 0, "error": None},
        "audit": None,
        "rejected_by_class": {},
        "config": {"backend": "standalone", "target": "redis://h:1/0", "server_versions": ["redis 7.2"]}
        | {"pool_size": 50, "pool_class": "ConnectionPool", "load_processes": 1, "queue": "q", "engine": "list"},
        "results_dir": None,
    }
    row = webui.table_rows(snap)[0]
    assert row["p99"] == row["max"] == "≥ 24 h (3 clamped)" and row["p50"] == "400"
    assert "max ≥ 24 h (3 clamped)" in row["detail"] and "86,436" not in str(row)


def test_spectrum_chart_labels_a_clamped_curve_as_a_bound(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from bench.plots_latency import latency_spectrum

    now = [7.0]
    recorder = Recorder(clock=lambda: now[0])
    for v in [300.0] * 95 + [48 * HOUR_US] * 5:
        recorder.record("e2e", v)
    for _ in range(10):
        recorder.record("enqueue", 200.0)
    recorder.finalize()
    the_cell = cell("soak", enqueue=op(1.0, 200.0)) | {"dir": "soak"}
    rep = tmp_path / "run" / "soak" / "repeat-1"
    rep.mkdir(parents=True)
    encoded = {name: h.encode().decode() for name, h in recorder.cumulative.items()}
    (rep / "histograms.json").write_text(json.dumps({"unit": "us", "histograms": encoded}))
    fig = latency_spectrum([run_of(tmp_path, [the_cell])])
    assert fig is not None
    fig.canvas.draw()
    labels = {ax.get_title(): [t.get_text() for t in ax.texts if t.get_gid() == "sample-count"] for ax in fig.axes}
    e2e = next(texts for title, texts in labels.items() if "e2e" in title)
    enqueue = next(texts for title, texts in labels.items() if "enqueue" in title and "e2e" not in title)
    assert e2e == ["n=100, 5 ≥ 24 h (clamped)"]
    assert enqueue == ["n=10"]

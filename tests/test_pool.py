"""Pool size vs round trip from a run folder: the pool-rtt chart (what is drawn), the report's section and
headline, and ``bench pool``. A synthetic sweep written over a copy of the committed sample; no Redis."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE, bench
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

SIZES = [1, 2, 4, 8, 16]
HELD = {"mean_us": 200.0, "p50_us": 180, "p90_us": 260, "p99_us": 500, "p999_us": 900}  # enqueue_service
SEEN = {"mean_us": 700.0, "p50_us": 650, "p90_us": 1000, "p99_us": 1600, "p999_us": 2500}  # enqueue, corrected
# per RTT: enqueue p99 µs and ops/s at pools 1, 2, 4, 8, 16 (2 ms: pools 1-4 cannot keep up with 2,000/s)
MEASURED = {
    0.0: ([1900, 1700, 1650, 1600, 1600], [1995.0] * 5),
    0.5: ([2.6e6, 2600, 2300, 2200, 2150], [1300.0, 1993.0, 1994.0, 1994.0, 1994.0]),
    2.0: ([6e6, 4.4e6, 1e6, 4800, 4700], [445.0, 860.0, 1727.0, 1991.0, 1992.0]),
}
PREDICTED = {0.0: 1, 0.5: 3, 2.0: 7}  # bench.poolsize's knees for these service times (test_poolsize)
KNEES = {0.0: (1, 1900), 0.5: (2, 2600), 2.0: (8, 4800)}


def _cell(template: dict[str, Any], rtt: float, pool: int, p99: float, ops: float) -> dict[str, Any]:
    cell = copy.deepcopy(template)
    cell["id"] = f"pool_size={pool}, rtt_ms={rtt}"
    cell["params"].update(
        pool_size=pool, rtt_ms=rtt, rate=2000.0, pool_blocking=True, users=24, consumer_weight=0, fault="none"
    )
    shift = rtt * 1000  # a delayed cell's times hold its round trip
    held = {k: v + shift for k, v in HELD.items()}
    cell["ops"] = {
        "enqueue": {
            **{k: v + shift for k, v in SEEN.items()},
            **{"p99_us": p99, "p999_us": max(SEEN["p999_us"] + shift, p99 * 1.5)},
            **{"ops_per_s": ops, "count": 10_000},
        },
        "enqueue_service": {**held, "ops_per_s": ops, "count": 10_000},
    }
    cell["errors"], cell["audit"] = {}, {}
    cell["network"] = (
        {
            "configured": {"rtt_ms": rtt, "node_rtt_ms": 0.0, "jitter_ms": 0.0},
            "measured": {"client_rtt": {"p50_us": rtt * 1000 + 20, "p99_us": rtt * 1000 + 90}},
            "flagged": rtt == 0.5,
        }
        if rtt
        else None
    )
    return cell


def write_sweep(folder: Path, rtts: tuple[float, ...] = (0.0, 0.5, 2.0)) -> Path:
    shutil.copytree(SAMPLE, folder)
    summary = json.loads((folder / "summary.json").read_text())
    template = summary["cells"][0]
    summary["cells"] = [
        _cell(template, rtt, pool, p99, ops)
        for rtt in rtts
        for pool, p99, ops in zip(SIZES, *MEASURED[rtt], strict=True)
    ]
    summary["scenario"] = "pool-rtt"
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def sweep_run(tmp_path: Path) -> Path:
    return write_sweep(tmp_path / "sweep")


def _figure(path: Path) -> Figure:
    from bench import plots
    from bench.runs import load_run

    fig = plots.pool_rtt([load_run(path)])
    assert fig is not None
    return fig


def _gid(ax: Any, gid: str) -> Line2D:
    found = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(found) == 1, (gid, [line.get_gid() for line in ax.get_lines()])
    return found[0]


def _name(rtt: float) -> str:
    return "loopback" if not rtt else f"RTT {rtt:g} ms"


def test_chart_one_line_per_rtt_with_the_measured_values(sweep_run: Path) -> None:
    fig = _figure(sweep_run)
    ax_p99, ax_rate = fig.axes[:2]
    for rtt, (p99, ops) in MEASURED.items():
        line = _gid(ax_p99, f"p99 {_name(rtt)}")
        assert list(line.get_xdata()) == SIZES and list(line.get_ydata()) == p99
        assert line.get_label() == _name(rtt)
        rate = _gid(ax_rate, f"throughput {_name(rtt)}")
        assert list(rate.get_xdata()) == SIZES and list(rate.get_ydata()) == ops
        assert rate.get_color() == line.get_color()
    measured = [ln for ln in ax_p99.get_lines() if str(ln.get_gid()).startswith("p99 ")]
    assert len(measured) == 3 and len({ln.get_color() for ln in measured}) == 3
    assert list(_gid(ax_rate, "offered standalone, 24 users, blocking pool, 2,000 enqueue/s").get_ydata()) == [2000] * 2
    assert ax_p99.get_yscale() == "log" and ax_p99.get_xscale() == "log"
    assert [t.get_text() for t in ax_p99.get_xticklabels()] == ["1", "2", "3", "4", "7", "8", "16"]  # + predicted


def test_chart_marks_the_predicted_knee_per_rtt_and_the_measured_one(sweep_run: Path) -> None:
    fig = _figure(sweep_run)
    ax_p99, ax_rate = fig.axes[:2]
    for rtt, knee in PREDICTED.items():
        colour = _gid(ax_p99, f"p99 {_name(rtt)}").get_color()
        for ax in (ax_p99, ax_rate):  # a vertical line at the predicted pool, on both panels, in the line's colour
            vline = _gid(ax, f"predicted knee {_name(rtt)}")
            assert list(vline.get_xdata()) == [knee, knee] and vline.get_linestyle() == "--"
            assert vline.get_color() == colour
        pool, p99 = KNEES[rtt]
        star = _gid(ax_p99, f"measured knee {_name(rtt)}")
        assert star.get_marker() == "*" and star.get_xydata().tolist() == [[pool, p99]]
        assert _gid(ax_rate, f"measured knee {_name(rtt)}").get_xydata().tolist() == [
            [pool, MEASURED[rtt][1][SIZES.index(pool)]]
        ]
    # the model's p99 (dotted) leaves out the pools it says cannot keep up: at 2 ms, a = 4.4 > 4
    model = _gid(ax_p99, "model RTT 2 ms")
    assert list(model.get_xdata()) == [8, 16] and model.get_linestyle() == ":"
    assert list(_gid(ax_p99, "model loopback").get_xdata()) == SIZES
    legend = [t.get_text() for t in ax_p99.get_legend().get_texts()]
    assert legend == ["loopback", "RTT 0.5 ms", "RTT 2 ms", "predicted knee (model)", "measured knee"]


def test_chart_without_rtt_is_one_line_and_closed_loop_has_none(tmp_path: Path) -> None:
    from bench import plots
    from bench.runs import load_run

    fig = _figure(write_sweep(tmp_path / "loopback", rtts=(0.0,)))
    lines = [ln for ln in fig.axes[0].get_lines() if str(ln.get_gid()).startswith("p99 ")]
    assert [ln.get_gid() for ln in lines] == ["p99 loopback"]
    assert [ln.get_gid() for ln in fig.axes[0].get_lines() if "knee" in str(ln.get_gid())] == [
        "predicted knee loopback",
        "measured knee loopback",
    ]
    assert plots.pool_rtt([load_run(SAMPLE)]) is None  # the smoke run: closed loop, one pool per backend


def test_report_says_the_knee_per_rtt_predicted_vs_measured(sweep_run: Path) -> None:
    from bench.report import markdown
    from bench.runs import load_run

    text = markdown(load_run(sweep_run))
    section = text.split("## Pool size vs round trip")[1].split("\n## ")[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and "RTT asked" not in r]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    assert [c[:5] for c in cells] == [
        ["loopback", "–", "0.40", "1", "1"],
        ["0.5 ms", "0.52 ms", "1.40", "3", "2"],
        ["2 ms", "2.02 ms", "4.40", "7", "8"],
    ]
    assert [c[7] for c in cells] == ["yes: the same pool", "yes: one step apart", "yes: the same swept pool"]
    assert cells[1][8] == "measured RTT off the asked one; rate not reached at pool 1"
    assert cells[2][8] == "rate not reached at pool 1, 2, 4"
    assert "cell [pool_size=16, rtt_ms=0.0]: held 200 µs mean, p99 500 µs" in section
    headline = (
        "- pool vs round trip (standalone, 24 users, blocking pool, 2,000 enqueue/s): knee at pool (measured / "
        "predicted) loopback 1 / 1, 0.5 ms 2 / 3, 2 ms 8 / 7; within one step at every RTT"
    )
    found = text.split("## Findings")[1].split("\n## ")[0]
    assert headline in found
    # the throughput headline of bench.findings: one sweep per RTT, not the last RTT's cells under the first's name
    sweeps = [line.split(":")[0] for line in found.splitlines() if line.startswith("- pool sweep")]
    assert sweeps == [
        "- pool sweep (standalone, 24 users, blocking pool)",
        "- pool sweep (standalone, 24 users, blocking pool, 0.5 ms RTT)",
        "- pool sweep (standalone, 24 users, blocking pool, 2 ms RTT)",
    ]


def test_report_says_no_when_the_knees_are_far_apart(tmp_path: Path) -> None:
    from bench.report_pool import pool_findings, pool_section

    run = write_sweep(tmp_path / "far", rtts=(0.0, 2.0))
    summary = json.loads((run / "summary.json").read_text())
    for cell in summary["cells"]:  # at 2 ms, as if pool 2 already kept up with a good p99 (the model says 7)
        if cell["params"]["rtt_ms"] == 2.0:
            good = cell["params"]["pool_size"] >= 2
            cell["ops"]["enqueue"].update(ops_per_s=1995.0 if good else 445.0, p99_us=4700 if good else 6e6)
    section = "\n".join(pool_section(summary["cells"]))
    assert "| 2 ms | 2.02 ms | 4.40 | 7 | 2 | 4,700 | cannot keep up |" in section  # 7 -> 8, two steps above 2
    assert "**NO**: more than one step apart" in section
    assert pool_findings(summary["cells"])[0].endswith("NOT within one step at 1 of 2 RTTs")


def test_bench_pool_from_a_service_time() -> None:
    done = bench("pool", "--rate", "2000", "--rtt-ms", "2", "--slo-p99-ms", "5", "--service-us", "200")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Little's law: busy connections = 2,000/s × (2.00 ms + 200 µs) = 4.40" in out
    assert "predicted pool: 6 connections (p99 4.81 ms" in out
    assert "exponential (only the mean was given)" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["5", "6", "7", "8"] and rows[0][-2:] == ["10.14", "ms"]
    near = bench("pool", "--rate", "2000", "--rtt-ms", "0", "--slo-p99-ms", "5", "--service-us", "200")
    assert "predicted pool: 1 connections" in near.stdout


def test_bench_pool_from_a_run(sweep_run: Path) -> None:
    done = bench("pool", "--rate", "2000", "--rtt-ms", "2", "--slo-p99-ms", "5", "--from", str(sweep_run))
    assert done.returncode == 0, done.stderr
    assert f"from: {sweep_run} cell [pool_size=16, rtt_ms=0.0] (enqueue_service; pool 16, loopback)" in done.stdout
    assert "mean 200 µs, p50 180 µs, p90 260 µs, p99 500 µs, p99.9 900 µs" in done.stdout
    assert "predicted pool: 7 connections" in done.stdout  # 4,274 µs; 6 gives 5,322 (test_poolsize)
    delayed = bench(
        *["pool", "--rate", "2000", "--rtt-ms", "2", "--slo-p99-ms", "5", "--from", str(sweep_run)],
        *["--cell", "pool_size=16, rtt_ms=2.0"],
    )
    assert "(enqueue_service; pool 16, its 2 ms round trip subtracted)" in delayed.stdout
    # the same holding time, but this cell's own p99 (4.7 ms) is 1.1 ms above loopback's + 2 ms: a floor of 4.7 ms
    assert "p99 with no pool wait (the floor): 4.70 ms" in delayed.stdout
    assert "predicted pool: 8 connections" in delayed.stdout
    none = bench("pool", "--rate", "2000", "--rtt-ms", "2", "--slo-p99-ms", "3", "--from", str(sweep_run))
    assert none.returncode == 1 and "no pool size meets it" in none.stdout  # the floor is 3.6 ms


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "-5", "--rtt-ms", "2", "--slo-p99-ms", "5", "--service-us", "200"], "--rate must be a finite"),
        (["--rate", "nan", "--rtt-ms", "2", "--slo-p99-ms", "5", "--service-us", "200"], "--rate must be a finite"),
        (["--rate", "9", "--rtt-ms", "-1", "--slo-p99-ms", "5", "--service-us", "200"], "--rtt-ms must be"),
        (["--rate", "9", "--rtt-ms", "1", "--slo-p99-ms", "0", "--service-us", "200"], "--slo-p99-ms must be"),
        (["--rate", "9", "--rtt-ms", "1", "--slo-p99-ms", "5", "--service-us", "0"], "--service-us must be"),
        (["--rate", "9", "--rtt-ms", "1", "--slo-p99-ms", "5", "--service-us", "9", "--cell", "x"], "needs --from"),
        (["--rate", "9", "--rtt-ms", "1", "--slo-p99-ms", "5"], "one of the arguments --service-us --from"),
        (["--rate", "9", "--rtt-ms", "1", "--slo-p99-ms", "5", "--from", "{tmp}/missing"], "does not exist"),
        (["--rate", "9", "--rtt-ms", "1", "--slo-p99-ms", "5", "--from", "{run}", "--cell", "nope"], "no such cell"),
    ],
)
def test_bench_pool_bad_input_exit_2(sweep_run: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    done = bench("pool", *[a.format(tmp=tmp_path, run=sweep_run) for a in args])
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert needle in done.stderr and "Traceback" not in done.stderr


def test_the_builtin_scenario_sweeps_only_pool_and_rtt() -> None:
    from bench import scenario
    from bench.poolsize import busy_connections

    cells = scenario.load("pool-rtt").cells
    grid = sorted((c.params["rtt_ms"], c.params["pool_size"]) for c in cells)
    assert grid == [(r, p) for r in (0.0, 0.5, 2.0) for p in SIZES]
    varied = {k for k in cells[0].params if len({str(c.params[k]) for c in cells}) > 1}
    assert varied == {"pool_size", "rtt_ms"}
    p = cells[0].params
    assert (p["consumer_weight"], p["pool_blocking"], p["backend"]) == (0, True, "standalone")  # producers only
    assert p["users"] > max(SIZES)  # users never cap the connections in use
    assert 4 <= busy_connections(p["rate"], 2000, 200) <= 5  # at 2 ms the small pools cannot keep up

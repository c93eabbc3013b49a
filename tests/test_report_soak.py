"""The report's soak sections (drift, repeated faults) and the short-cell note, on literal summaries. No Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_report import cell, run_of

from bench import report
from bench.report_soak import drift_findings, drift_section, fault_series_section


def drift_row(name: str, unit: str, first: float, last: float, grows: bool) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "first": first,
        "last": last,
        "change": last - first,
        "ratio": round(last / first, 3),
        "grows": grows,
        "points": 1800,
    }


SOAK_DRIFT = [
    drift_row("e2e p99", "µs", 2000.0, 2100.0, False),
    drift_row("load processes RSS", "bytes", 70e6, 120e6, True),
]


def soak_cell(**extra: Any) -> dict[str, Any]:
    return cell("soak", backend="cluster", params={"duration": 1800, "fault": "failover", "fault_every": 240}, **extra)


def test_drift_section_tables_every_series_and_names_what_grew(tmp_path: Path) -> None:
    run = run_of(tmp_path, [soak_cell(drift=SOAK_DRIFT), cell("short", drift=SOAK_DRIFT)])
    text = "\n".join(drift_section(run.cells))
    assert "| soak | e2e p99 | 2.0 ms | 2.1 ms | 0.1 ms | 1.05× | steady |" in text
    assert "| soak | load processes RSS | 70.0 MB | 120.0 MB | 50.0 MB | 1.71× | **GROWS** |" in text
    assert "| short |" not in text  # 10 s cells say nothing about drift
    assert drift_findings(run.cells) == [
        "soak: load processes RSS grew from 70,000,000 to 120,000,000 bytes (1.714×) between the first and the "
        "last tenth of the run"
    ]
    assert drift_findings(run.cells)[0] in report.findings(run) or drift_findings(run.cells)[0] in report.markdown(run)


def test_drift_section_says_so_when_nothing_grew(tmp_path: Path) -> None:
    run = run_of(tmp_path, [soak_cell(drift=SOAK_DRIFT[:1])])
    assert "- Nothing grew: every series stayed within its thresholds." in drift_section(run.cells)
    (tmp_path / "b").mkdir()
    assert drift_section(run_of(tmp_path / "b", [cell("plain")]).cells) == []


def test_repeated_faults_list_every_repeat_and_a_failed_restore(tmp_path: Path) -> None:
    timelines = [
        {"injected_at_s": 600.0, "target": "a:1", "promoted_at_s": 600.02, "unavailable_s": 0.0, "restore_ok": True},
        {"injected_at_s": 840.0, "target": "b:2", "promoted_at_s": None, "unavailable_s": 3.5, "restore_ok": False},
    ]
    series = {
        "count": 2,
        "injected_at_s": [600.0, 840.0],
        "unavailable_s": {"median": 1.785, "max": 3.5},
        "restore_ok": False,
    }
    run = run_of(tmp_path, [soak_cell(faults=timelines, fault_series=series)])
    text = "\n".join(fault_series_section(run.cells))
    assert "2 × failover every 240 s" in text and "median 1.785 s, worst 3.500 s" in text
    assert "a RESTORE FAILED (series stopped)" in text
    assert "| 1 | 600.00 | a:1 | 600.02 | under 0.05 s | ok |" in text  # gaps < 50 ms are not recorded
    assert "| 2 | 840.00 | b:2 | – | 3.500 s | FAILED |" in text
    (headline,) = [f for f in report.findings(run) if "failover" in f]
    assert headline == (
        "2 × failover of a master, every 240 s: at worst 3.50 s without a successful operation on its partition "
        "(median 1.78 s); 0 tasks lost, 0 duplicated, 0 ambiguous — RESTORE FAILED (series stopped)"
    )


def test_a_cell_that_measured_short_says_how_long_it_ran(tmp_path: Path) -> None:
    run = run_of(tmp_path, [cell("busy host", short={"measured_s": 8.04, "planned_s": 10.0}), cell("fine")])
    rows = [line for line in report.markdown(run).splitlines() if line.startswith("| busy host |")]
    assert rows and rows[0].rstrip(" |").endswith("measured 8.0 of 10 s")
    assert "measured" not in next(line for line in report.markdown(run).splitlines() if line.startswith("| fine |"))

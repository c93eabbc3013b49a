"""The report's long-run sections: drift (first tenth of a cell against its last) and a repeated
fault's every repetition. Pure: reads the cells of summary.json (bench.drift computed the rows)."""

from __future__ import annotations

from typing import Any

from .drift import drift_cells, finding
from .report_tables import n, seconds_without_success, table


def drift_findings(cells: list[dict[str, Any]]) -> list[str]:
    return [f"{c['id']}: {finding(row)}" for c in drift_cells(cells) for row in c["drift"] if row["grows"]]


def _value(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if value is None:
        return "–"
    if row["unit"] == "bytes":
        return f"{value / 1e6:,.1f} MB"
    if row["unit"] == "µs":
        return f"{value / 1000:,.1f} ms"
    return n(value, 1)


def drift_section(cells: list[dict[str, Any]]) -> list[str]:
    long = drift_cells(cells)
    if not long:
        return []
    rows = [
        [
            c["id"],
            row["name"],
            _value(row, "first"),
            _value(row, "last"),
            _value(row, "change"),
            "–" if row["ratio"] is None else f"{row['ratio']:.2f}×",
            "**GROWS**" if row["grows"] else "steady",
        ]
        for c in long
        for row in c["drift"]
    ]
    grew = drift_findings(cells)
    return [
        "## Drift: the first tenth of each long cell against its last tenth",
        "",
        "Medians of the per-second values in each tenth (p99 from the per-second HdrHistogram logs, depth and "
        "in-flight leases read through the queue, RSS of the Locust process tree, used_memory summed over the "
        "servers). A series grows when the last tenth is above the first by more than its ratio threshold "
        "(1.5×; 1.1× for memory) and by more than a floor (1 ms, 100 tasks, 16 MB), so noise on small numbers "
        "is not called a leak.",
        "",
        table(["cell", "series", "first tenth", "last tenth", "change", "ratio", "verdict"], rows),
        "",
        *([f"- {g}" for g in grew] or ["- Nothing grew: every series stayed within its thresholds."]),
        "",
    ]


def fault_series_section(cells: list[dict[str, Any]]) -> list[str]:
    """Every repetition of a repeated fault: when, which node, promoted when, and the outage."""
    repeated = [c for c in cells if c.get("fault_series")]
    if not repeated:
        return []
    parts = ["## Repeated faults", ""]
    for c in repeated:
        series, timelines = c["fault_series"], c.get("faults") or []
        gap, params = series["unavailable_s"], c.get("params", {})
        parts += [
            f"**{c['id']}**: {series['count']} × {params.get('fault')} every {n(params.get('fault_every'))} s; "
            f"time without a success on the faulted partition: median {seconds_without_success(gap['median'], 3)}, "
            f"worst {seconds_without_success(gap['max'], 3)}"
            + ("" if series["restore_ok"] else " — a RESTORE FAILED (series stopped)")
            + (f" — stopped early: {series['stopped']}" if series.get("stopped") else ""),
            "",
        ]
        rows = [
            [
                str(i),
                n(t.get("injected_at_s"), 2),
                t.get("target") or "–",
                n(t.get("promoted_at_s"), 2),
                seconds_without_success(t.get("unavailable_s"), 3),
                "ok" if t.get("restore_ok") else "FAILED",
            ]
            for i, t in enumerate(timelines, start=1)
        ]
        if rows:
            parts += [
                table(["#", "injected at s", "master hit", "promoted at s", "no success for", "restore"], rows),
                "",
            ]
    return parts

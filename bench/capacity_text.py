"""What ``bench capacity`` prints and stores about its answer: a configuration's capacity line, one line per
step as it is judged, and the capacities of a run as a table."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from .capacity import Criteria, Judged, SearchResult, format_latency


def _measured_summary(judged: Judged) -> dict[str, Any]:
    s = judged.step
    return {
        "step": judged.index,
        "rate": s.rate,
        "achieved_rate": s.achieved_rate,
        "coverage": s.coverage,
        "corrected": s.corrected,
        "service": s.service,
        "depth_slope": s.depth_slope,
        "error_rate": s.error_rate,
        "server_cpu": s.server_cpu,
        "generator_cpu": s.generator_cpu,
        "failed": judged.verdict.failed,
        "reasons": judged.verdict.reasons,
        "harness_bound": judged.verdict.harness_bound,
    }


def capacity_line(result: SearchResult, criteria: Criteria) -> dict[str, Any]:
    """The configuration's answer: highest passing rate, what limited it, the next step up that failed."""
    cap, nxt = result.capacity, result.next_fail
    return {
        "rate": cap.rate if cap else None,
        "achieved_rate": cap.step.achieved_rate if cap else None,
        "limit": result.limit,
        "harness_bound": result.limit == "harness-bound",
        "lower_bound": result.lower_bound,
        "confirmed": result.confirmed,
        "converged": result.converged,
        "slo": ", ".join(map(str, criteria.slos)),
        "steps": len(result.steps),
        "at_capacity": _measured_summary(cap) if cap else None,
        "next_fail": _measured_summary(nxt) if nxt else None,
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else format_latency(value)


def _cores(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def step_line(judged: Judged) -> str:
    s, v = judged.step, judged.verdict
    key = "p99_us"
    bits = [
        f"  step {judged.index:>2} {judged.phase:<7} {s.rate:>9,.0f}/s",
        f"achieved {s.achieved_rate or 0:>9,.0f}/s",
        f"p99 {_ms(s.corrected.get(key)):>9} (service {_ms(s.service.get(key))})",
        f"depth {'–' if s.depth_slope is None else f'{s.depth_slope:+,.0f}/s'}",
        f"errors {s.errors:,}",
        f"server {_cores(s.server_cpu)} / load {_cores(s.generator_cpu)} / others {_cores(s.other_cpu)} cores",
    ]
    verdict = "[green]pass[/]" if v.passed else f"[red]FAIL {', '.join(v.failed)}[/]"
    if v.harness_bound:
        verdict += " [yellow](harness-bound)[/]"
    return " · ".join(bits) + " → " + verdict


def capacity_text(config_id: str, line: dict[str, Any], criteria: Criteria) -> str:
    slo = ", ".join(map(str, criteria.slos))
    if line["rate"] is None:
        lowest = line.get("next_fail") or {}
        text = f"[bold]capacity[/] {escape(f'[{config_id}]')}: no rate passed at {slo}, down to "
        text += f"{lowest.get('rate') or 0:,.0f}/s; limit: [bold]{line['limit']}[/]"
        return text + ("; " + escape("; ".join(lowest["reasons"])) if lowest.get("reasons") else "")
    prefix = "≥ " if line["lower_bound"] else ""
    text = f"[bold]capacity[/] {escape(f'[{config_id}]')}: {prefix}{line['rate']:,.0f} tasks/s at {slo}"
    text += f"; limit: [bold]{line['limit']}[/]"
    nxt = line.get("next_fail")
    if nxt:
        text += f"; next step up {nxt['rate']:,.0f}/s failed: " + escape("; ".join(nxt["reasons"]))
    if not line["confirmed"]:
        text += " (not confirmed by a re-run)"
    return text


def capacity_table(summary: dict[str, Any]) -> Any:
    """The capacities of a capacity run as a rich table, each as a ratio to the best configuration."""
    from rich.table import Table

    from .report_tables import capacity_rows

    slo = summary.get("criteria", {}).get("slo_text", "")
    table = Table(title=f"capacity at {slo} (one run; ratios to the best configuration)")
    headers = ["configuration", "capacity tasks/s", "× best", "limit", "corrected p99", "next step up failed"]
    for col in headers:
        table.add_column(col, justify="left" if col in ("configuration", "next step up failed", "limit") else "right")
    for row in capacity_rows(summary):
        table.add_row(*(escape(str(v)) for v in row))
    return table

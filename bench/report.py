"""``bench report``: report.md and a self-contained report.html from a run folder (results
contract only): headline findings (``bench.findings``), tables, effective config, charts. Comparing
two runs is ``bench.compare``."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from .cells import PROVISIONAL_NOTE, fault_timeline, is_provisional, lost, rate_shortfall, undelivered_text

# The findings and ``bench compare`` live in their own modules; their entry points stay reachable as
# ``report.findings`` / ``report.compare`` (the CLI, the notebook and the tests call them here).
from .compare import compare as compare
from .compare import environment_differences as environment_differences
from .findings import enqueue_stats, findings
from .partition_loss import report_section as loss_section
from .report_cost import ceiling_section, cost_section
from .report_network import network_section
from .report_pool import pool_findings, pool_section
from .report_soak import drift_findings, drift_section, fault_series_section
from .report_tables import (
    capacity_findings,
    capacity_section,
    client_section,
    fault_section,
    lost_text,
    open_loop_section,
    rate_warning,
    server_section,
)
from .report_tables import n as _n
from .report_tables import table as _table
from .runs import Run, load_run
from .stats import latency_cell


def markdown(run: Run) -> str:
    s = run.summary
    env = s.get("environment", {})
    parts = [f"# {s['scenario']}: TaskQueue benchmark report", ""]
    if s.get("description"):
        parts += [s["description"], ""]
    if not run.complete:
        parts += [
            f"> **INCOMPLETE RUN**: {s.get('incomplete_reason') or 'some cells did not complete'}. "
            "Numbers below are what was measured before it stopped.",
            "",
        ]
    parts += [f"> **WARNING: {w}.**\n" for c in run.cells if (w := rate_warning(c))]
    parts += [f"> **CELL {c['id']}: {PROVISIONAL_NOTE}.**\n" for c in run.cells if is_provisional(c)]
    parts += capacity_section(s)  # a capacity run: its answer first; cells below are configurations at capacity
    parts += ceiling_section(s)  # and the queue's own ceiling beside it
    if s.get("kind") == "capacity-run":
        said = capacity_findings(s)
    else:
        said = findings(run) + drift_findings(run.cells) + pool_findings(run.cells)
    said = said or ["nothing to compare: no pair of cells that differ in one setting"]
    parts += ["## Findings", ""] + [f"- {f}" for f in said] + [""]
    rows = []
    for c in run.cells:
        enq, deq, ack = enqueue_stats(c), c["ops"].get("dequeue", {}), c["ops"].get("ack", {})
        errors = sum(sum(k.values()) for k in c["errors"].values())
        notes = ", ".join(
            filter(
                None,
                [
                    "unstable: " + "/".join(c["unstable"]) if c["unstable"] else "",
                    PROVISIONAL_NOTE if is_provisional(c) else "" if c["complete"] else "incomplete",
                    "rate NOT reached" if rate_shortfall(c) else "",
                    "network OFF its asked round trip" if (c.get("network") or {}).get("flagged") else "",
                    f"measured {c['short']['measured_s']:.1f} of {c['short']['planned_s']:g} s"
                    if c.get("short")
                    else "",
                ],
            )
        )
        rows.append(
            [
                c["id"],
                _n(enq.get("ops_per_s")),
                *(latency_cell(enq, k, _n) for k in ("p50_us", "p99_us", "p999_us")),
                latency_cell(deq, "p50_us", _n),
                _n(ack.get("ops_per_s")),
                _n(errors),
                notes,
            ]
        )
    parts += [
        "## Throughput and latency (median of repeats; latencies in µs from HdrHistogram)",
        "",
        _table(
            [
                "cell",
                "enqueue/s",
                "enq p50",
                "enq p99",
                "enq p99.9",
                "deq p50",
                "ack/s",
                "errors (after warm-up)",
                "notes",
            ],
            rows,
        ),
        "",
    ]
    rows = [
        [
            c["id"]
            + (f" ({PROVISIONAL_NOTE})" if is_provisional(c) else "")
            + (" (drain timed out: LOST is an upper bound)" if lost(c["audit"])[1] else ""),
            *(
                _n(c["audit"].get(k))
                for k in ("enqueued_ok", "rejected", "ambiguous", "delivered_unique", "duplicates")
            ),
            *(
                (undelivered_text(c["audit"]), undelivered_text(c["audit"], "undelivered_ambiguous"))
                if is_provisional(c)
                else (lost_text(c["audit"]), lost_text(c["audit"], "lost_ambiguous"))
            ),
            *(_n(c["audit"].get(k)) for k in ("delivered_after_reject", "still_queued")),
        ]
        for c in run.cells
    ]
    if run.is_load_run:  # Locust alone does not drain: a task not delivered yet is not lost
        parts += _load_run_audit(run)
    elif s.get("kind") != "capacity-run":  # a capacity run flushes between steps: nothing to audit
        parts += [
            "## Task audit: every task accounted for",
            "",
            "Every task of the cell, warm-up included, after the queue was drained. ≤ N: the drain timed out and "
            "undelivered tasks count as lost, so N is an upper bound.",
            "",
            _table(
                [
                    "cell",
                    "enqueued ok",
                    "rejected",
                    "ambiguous",
                    "delivered",
                    "duplicates",
                    "LOST",
                    "lost (ambiguous)",
                    "delivered after reject",
                    "still queued at drain timeout",
                ],
                rows,
            ),
            "",
        ]
    errors = [
        [c["id"], op, kind, _n(n)] for c in run.cells for op, kinds in c["errors"].items() for kind, n in kinds.items()
    ]
    if errors:
        parts += ["## Errors by class", "", _table(["cell", "operation", "class", "count"], errors), ""]
    faulted = [c for c in run.cells if fault_timeline(c)]
    if faulted:
        parts += fault_section(faulted)
        parts += loss_section(faulted)  # network partitions: lost vs acknowledged by the cut-off master
    parts += client_section(run.cells)  # client-upgrade: cells that differ only in their redis-py release
    parts += network_section(run.cells)  # delayed cells: the round trip asked and measured
    parts += pool_section(run.cells)  # open-loop pool sweeps (x rtt_ms): knee predicted vs measured
    parts += fault_series_section(run.cells) + drift_section(run.cells)
    parts += open_loop_section(run.cells) + server_section(run.cells) + cost_section(run.cells)
    rows = []
    for c in run.cells:
        q = c.get("effective", {}).get("queue", {})
        nodes = c.get("effective", {}).get("servers", {}).get("nodes", {})
        first: dict[str, Any] = next(iter(nodes.values()), {})
        rows.append(
            [
                c["id"],
                q.get("backend", "–"),
                f"{q.get('pool_class', '–')} {q.get('pool_size', '–')}",
                _n(q.get("partitions")),
                f"{first.get('server_name', '')} {first.get('server_version', '–')}",
                _n(first.get("maxmemory")),
                str(first.get("maxmemory_policy", "–")),
                _n(first.get("cluster_node_timeout_ms")),
                str(len(nodes)),
            ]
        )
    parts += [
        "## Effective configuration (read back from client and servers)",
        "",
        _table(
            [
                "cell",
                "backend",
                "pool (per process/node)",
                "partitions",
                "server",
                "maxmemory",
                "policy",
                "node timeout ms",
                "nodes",
            ],
            rows,
        ),
        "",
        f"Host: {env.get('host_cores')} cores, {env.get('platform')}; Python {env.get('python')}, "
        f"redis-py {env.get('redis_py')} (hiredis {env.get('hiredis')}), Locust {env.get('locust')}, "
        f"hdrhistogram {env.get('hdrhistogram')}; git {env.get('git_commit')}.",
        "Numbers from one shared machine: compare ratios within this run, not absolute values across runs.",
        "",
    ]
    charts = sorted((run.path / "charts").glob("*.png"))
    if charts:
        parts += ["## Charts", ""] + [f"![{p.stem}](charts/{p.name})\n" for p in charts]
    return "\n".join(parts)


def write_report(run_dir: Path) -> Path:
    run = load_run(run_dir)
    text = markdown(run)
    (run.path / "report.md").write_text(text)
    title = f"{run.summary.get('scenario') or run.name}: TaskQueue benchmark report"
    (run.path / "report.html").write_text(to_html(text, run.path, title))
    return run.path / "report.md"


def _load_run_audit(run: Run) -> list[str]:
    keys = ("enqueued_ok", "rejected", "ambiguous", "delivered_unique", "duplicates", "undelivered")
    rows = [[c["id"], *(_n(c["audit"].get(k)) for k in keys)] for c in run.cells]
    return [
        "## Task audit during the load",
        "",
        "A Locust run: the queue was not drained afterwards, so undelivered tasks may simply still be queued "
        "(nothing is called lost). "
        + ("" if any(c["audit"] for c in run.cells) else "Run with --audit true to count tasks."),
        "",
        _table(["cell", "enqueued ok", "rejected", "ambiguous", "delivered", "duplicates", "undelivered"], rows),
        "",
    ]


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}blockquote{background:#fee;margin:1em 0;padding:4px 12px}"
)


def to_html(md: str, base: Path, title: str = "TaskQueue benchmark report") -> str:
    """report.md as one self-contained HTML page: CommonMark + tables rendered by markdown-it-py (raw HTML
    in the Markdown is escaped), chart images inlined as base64."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(md)
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if isinstance(src, str) and not src.startswith("data:") and (base / src).is_file():
                mime = "image/svg+xml" if src.endswith(".svg") else "image/png"
                child.attrSet("src", f"data:{mime};base64,{base64.b64encode((base / src).read_bytes()).decode()}")
    body = parser.renderer.render(tokens, parser.options, {})
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )

"""``bench plot``, ``bench report``, ``bench compare``: charts, reports and comparisons of run folders."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from .cli_common import console
from .errors import UsageError
from .tables import num


def _add_plot(sub: Any) -> None:
    plot = sub.add_parser("plot", help="charts (PNG + SVG) from one or more run folders")
    plot.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    plot.add_argument("--only", action="append", metavar="CHART", help="only this chart (repeatable)")
    plot.add_argument("--out", type=Path, help="charts folder (default: FIRST_RUN/charts)")
    plot.add_argument(
        "--benchmarks",
        metavar="FILE|latest",
        help="also chart pytest-benchmark results: a JSON file, or 'latest' (newest under results/benchmarks)",
    )


def _add_report(sub: Any) -> None:
    report = sub.add_parser("report", help="report.md and self-contained report.html for a run folder")
    report.add_argument("run", type=Path, metavar="RUN_DIR")


def _add_compare(sub: Any) -> None:
    compare = sub.add_parser("compare", help="B/A ratios per cell and operation, regressions flagged")
    compare.add_argument("run_a", type=Path, metavar="RUN_A")
    compare.add_argument("run_b", type=Path, metavar="RUN_B")
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when any metric regressed (also judges cells with < 3 repeats instead of saying 'changed')",
    )


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots

    bench_json = plots.benchmark_json_arg(args.benchmarks)
    written = plots.plot_runs(args.runs, only=args.only, out=args.out, benchmark_json=bench_json)
    for path in written:
        console.print(f"{path} (+ .svg)")
    if not written:
        console.print("no chart had data in these runs")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import plots, report

    run_dir = args.run
    if not (run_dir / "charts").is_dir():
        plots.plot_runs([run_dir])
    path = report.write_report(run_dir)
    console.print(f"{path}\n{path.with_suffix('.html')}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from . import report
    from .runs import load_run

    run_a, run_b = load_run(args.run_a), load_run(args.run_b)
    rows = report.compare(run_a, run_b, strict=args.fail_on_regression)
    if not rows:
        raise UsageError(f"no cells in common between {args.run_a} and {args.run_b} (cells are matched by id)")
    differences = report.environment_differences(run_a, run_b)
    if differences:
        console.print("[yellow]warning: the two runs come from different environments; ratios mix both effects:[/]")
        for line in differences:
            console.print(f"[yellow]  {escape(line)}[/]")
    table = Table(title=f"B/A: {args.run_b} vs {args.run_a} (repeat medians)")
    for col in ("cell", "operation", "metric", "A", "B", "B/A", "repeats", "verdict"):
        table.add_column(col, justify="right")
    colors = {"regression": "red", "improvement": "green", "unstable": "yellow", "changed": "magenta"}
    for r in rows:
        verdict = r["verdict"]
        table.add_row(
            escape(r["cell"]),
            r["operation"],
            r["metric"],
            num(r["a"]),
            num(r["b"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            str(r["repeats"]),
            f"[{colors[verdict]}]{verdict}[/]" if verdict in colors else verdict,
        )
    console.print(table)
    console.print(
        "regression/improvement: changed > 5 % and beyond both runs' repeat spread; unstable: spread > 10 %; "
        "changed: moved > 5 % but a cell has < 3 repeats, so its noise is unknown "
        "(--fail-on-regression judges it anyway)"
    )
    regressions = [r for r in rows if r["verdict"] == "regression"]
    if regressions and args.fail_on_regression:
        console.print(f"[red]{len(regressions)} regression(s)[/]")
        return 1
    return 0


PARSERS: dict[str, Callable[[Any], None]] = {"plot": _add_plot, "report": _add_report, "compare": _add_compare}
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "plot": cmd_plot,
    "report": cmd_report,
    "compare": cmd_compare,
}

"""What every ``bench`` command module shares: the console, the server options, charts at the end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

# Wide when piped (logs, CI), so tables are not cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


def add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server-bin", help="redis-server/valkey-server binary (default: $REDIS_SERVER_BIN, PATH)")
    p.add_argument("--state-dir", type=Path, default=None, help="where pids, logs and data live (default .bench/)")


def charts_and_report(out: Path) -> None:
    from . import plots, report

    charts = plots.plot_runs([out])  # micro-benchmarks only when asked: bench plot --benchmarks
    report.write_report(out)
    console.print(f"charts: {len(charts)} in {out / 'charts'}; report: {out / 'report.md'}")

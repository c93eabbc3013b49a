"""Live progress of a scenario run: cell i/N, its parameters, elapsed/remaining, ops/s, errors."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class CellProgress:
    def __init__(self, console: Console, cells: int) -> None:
        self.cells = cells
        self.progress = Progress(
            TextColumn("[bold]{task.fields[position]}[/]"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[live]}"),
            console=console,
            transient=False,
        )

    def __enter__(self) -> CellProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.progress.__exit__(None, None, None)

    def track(self, index: int, label: str, proc: subprocess.Popen[bytes], history: Path, duration: float) -> None:
        """Follow one Locust run until it exits, showing its live ops/s and error count."""
        task = self.progress.add_task(escape(label), total=duration, position=f"cell {index}/{self.cells}", live="")
        start = time.monotonic()
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            self.progress.update(task, completed=min(elapsed, duration), live=_live(history))
            time.sleep(0.5)
        self.progress.update(task, completed=duration, live=_live(history))


def _live(history: Path) -> str:
    """Last aggregated row of Locust's stats history: current ops/s and total failures."""
    try:
        with open(history, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("Name") == "Aggregated"]
    except OSError:
        return "starting…"
    if not rows:
        return "starting…"
    last = rows[-1]
    try:
        return f"{float(last['Requests/s']):,.0f} ops/s · {int(float(last['Total Failure Count'])):,} errors"
    except (KeyError, ValueError):
        return ""

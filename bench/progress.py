"""Live progress of a scenario run: one line per cell (and repeat) with its phase, times and Locust's
live counts, and a first line for the whole run with an overall ETA.

Phases: ``starting`` (Locust up, users spawning), ``warm-up`` and ``load`` (from the Locust run's
start and the cell's warm-up), ``stopping`` (Locust lets users finish and writes its results),
then ``restore`` (after a fault: the cluster healed and checked) and ``drain`` (the queue emptied
and every task audited). Ops/s and errors come from Locust's own request counters, which the
Locust child writes every second (:mod:`bench.livestatus`), e2e pseudo-requests left out.
"""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from .livestatus import operations, read_status

DEFAULT_OVERHEAD_S = 5.0  # per repeat, before one was measured: Locust start and stop, drain
DEFAULT_FAULT_OVERHEAD_S = 15.0  # ... with a fault: the restore (cluster healed) and a longer drain
RATE_WINDOW_S = 3.0  # ops/s over the last few seconds of Locust's counters


def clock(seconds: float) -> str:
    """``7 s``, ``1:05``, ``1:02:05``: a duration that cannot be read as a time of day."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass
class _Repeat:
    """The repeat being followed: what its status column shows."""

    task: Any
    fault: bool
    duration: float
    started: float  # monotonic: when the previous repeat ended (this one's preparation began)
    load_started: float = 0.0  # monotonic: when track() began (Locust already started)
    phase: str = "starting"
    phase_started: float = 0.0
    load_s: float = 0.0  # seconds of load so far (Locust's clock)
    warmup_s: float = 0.0
    live: str = ""
    calls: int = 0
    failures: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent per finished phase


def rate_of(samples: Sequence[tuple[float, int]], window: float = RATE_WINDOW_S) -> float | None:
    """Calls/s between the newest sample and the oldest within ``window`` s of it (None: too few)."""
    if len(samples) < 2:
        return None
    t_new, n_new = samples[-1]
    t_old, n_old = next(((t, n) for t, n in samples if t >= t_new - window), samples[0])
    if t_new - t_old < 0.5:
        t_old, n_old = samples[-2]
    return (n_new - n_old) / (t_new - t_old) if t_new > t_old else None


class _StatusColumn(ProgressColumn):
    """Rendered at every refresh: the phase's clock keeps running while the runner drains."""

    def __init__(self, owner: CellProgress) -> None:
        super().__init__()
        self.owner = owner

    def render(self, task: Task) -> Text:
        return Text.from_markup(self.owner.status_of(task))


class CellProgress:
    def __init__(self, console: Console, cells: int | Sequence[Any]) -> None:
        """``cells``: the scenario's cells (for the overall ETA), or only how many there are."""
        self.cell_list = [] if isinstance(cells, int) else list(cells)
        self.cells = cells if isinstance(cells, int) else len(self.cell_list)
        self.run_started = time.monotonic()
        self.overheads: dict[bool, list[float]] = {False: [], True: []}  # measured, by "has a fault"
        self.current: _Repeat | None = None
        self.last_end = self.run_started  # a repeat's wall time runs from the previous one's end (its preparation)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[position]}[/]"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            _StatusColumn(self),
            console=console,
            transient=False,
        )
        self.overall = self.progress.add_task("", total=1.0, position="run", final=None)

    def __enter__(self) -> CellProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self._finish()
        elapsed = time.monotonic() - self.run_started
        self.progress.update(self.overall, completed=1.0, final=f"{clock(elapsed)} in all")
        self.progress.__exit__(None, None, None)

    # -- the runner's calls ---------------------------------------------------------------------

    def track(
        self, index: int, label: str, proc: subprocess.Popen[bytes], where: Path, duration: float | None = None
    ) -> None:
        """Follow one Locust run until it exits. ``where``: the repeat's results folder (or a file in
        it, e.g. Locust's stats history), where the Locust child writes its live status."""
        rep_dir = where if where.is_dir() or not where.suffix else where.parent
        cell = self.cell_list[index - 1] if 0 < index <= len(self.cell_list) else None
        params = getattr(cell, "params", {}) or {}
        duration = float(duration if duration is not None else params.get("duration", 0))
        self._finish()
        now = time.monotonic()
        task = self.progress.add_task(
            escape(label), total=duration or 1.0, position=f"cell {index}/{self.cells}", final=None
        )
        self.current = _Repeat(task, params.get("fault", "none") != "none", duration, self.last_end, phase_started=now)
        self.current.load_started = now
        samples: deque[tuple[float, int]] = deque(maxlen=64)
        while True:
            running = proc.poll() is None
            self._poll(rep_dir, samples, running)
            self.progress.update(task, completed=min(self.current.load_s, duration))
            self.progress.update(self.overall, completed=self._fraction())
            if not running:
                break
            time.sleep(0.5)

    def phase(self, name: str) -> None:
        """The runner moved on after Locust exited: ``restore``, ``drain``, then ``done``."""
        rep = self.current
        if rep is None:
            return
        if name == "done":
            self._finish()
            return
        now = time.monotonic()
        rep.phases[rep.phase] = rep.phases.get(rep.phase, 0.0) + now - rep.phase_started
        rep.phase, rep.phase_started = name, now

    # -- reading Locust's live status -------------------------------------------------------------

    def _poll(self, rep_dir: Path, samples: deque[tuple[float, int]], running: bool) -> None:
        rep = self.current
        assert rep is not None
        status = read_status(rep_dir)
        if status is not None:
            rep.warmup_s = float(status.get("warmup_s") or 0)
            started = float(status.get("started_at") or 0)
            rep.load_s = (time.time() if running else float(status.get("t") or 0)) - started if started else 0.0
            rep.calls, rep.failures = operations(status)
            if not samples or samples[-1][0] != status.get("t"):  # a new second from Locust
                samples.append((float(status.get("t") or 0), rep.calls))
            rate = rate_of(samples) if running else (rep.calls / rep.load_s if rep.load_s > 0 else None)
            shown = "–" if rate is None else f"{rate:,.0f}"
            rep.live = f"{shown} ops/s{'' if running else ' avg'} · {rep.failures:,} errors"
        elif not running:
            rep.live = "no live data (Locust wrote no status)"
        if running:
            name = (
                "starting"
                if status is None or not status.get("started_at")
                else "warm-up"
                if rep.load_s < rep.warmup_s
                else "load"
                if rep.load_s < rep.duration
                else "stopping"
            )
        else:
            name = "collecting"
        if name != rep.phase:
            self.phase(name)

    # -- what the columns show ------------------------------------------------------------------

    def status_of(self, task: Task) -> str:
        if task.fields.get("final"):
            return str(task.fields["final"])
        if task.id == self.overall:
            return self._overall_text()
        rep = self.current
        if rep is None or task.id != rep.task:
            return ""
        now = time.monotonic()
        in_phase = now - rep.phase_started
        if rep.phase in ("warm-up", "load"):
            # "load 4 s of 8 s": how far into the cell's load, never a bare clock that reads like time left
            text = f"[cyan]{rep.phase}[/] {clock(rep.load_s)} of {clock(rep.duration)}"
            if rep.phase == "warm-up":
                text += f" (warm-up {clock(rep.warmup_s)}, not measured)"
        elif rep.phase == "stopping":
            text = f"[cyan]stopping[/] {clock(in_phase)} (users finish their task, results written)"
        elif rep.phase == "restore":
            text = f"[yellow]restore[/] {clock(in_phase)} (cluster healed and checked)"
        elif rep.phase == "drain":
            text = f"[cyan]drain[/] {clock(in_phase)} (queue emptied, every task counted)"
        else:
            text = f"[cyan]{rep.phase}[/] {clock(in_phase)}"
        return f"{text} · {rep.live}" if rep.live else text

    def _planned(self) -> list[tuple[float, bool]]:
        """(load seconds, has a fault) of every repeat of the run, in order."""
        out = []
        for cell in self.cell_list:
            p = getattr(cell, "params", {}) or {}
            out += [(float(p.get("duration", 0)), p.get("fault", "none") != "none")] * int(p.get("repeat", 1))
        return out

    def _overhead(self, fault: bool) -> float:
        """Seconds around one repeat's load, as measured so far for repeats of the same kind (a fault's
        restore takes longer), else a default."""
        seen = self.overheads[fault]
        default = DEFAULT_FAULT_OVERHEAD_S if fault else DEFAULT_OVERHEAD_S
        return sum(seen) / len(seen) if seen else default

    def remaining_s(self) -> float | None:
        """Seconds until the run ends, from the planned load times and the measured time around each
        load (Locust start and stop, restore, drain); None without the cell list."""
        planned = self._planned()
        if not planned:
            return None
        done = sum(len(v) for v in self.overheads.values())
        rest = sum(d + self._overhead(f) for d, f in planned[done + (self.current is not None) :])
        rep = self.current
        if rep is not None:
            spent = time.monotonic() - rep.load_started
            rest += max(rep.duration - rep.load_s, 0.0) + max(
                self._overhead(rep.fault) - max(spent - rep.duration, 0), 1
            )
        return rest

    def _fraction(self) -> float:
        left = self.remaining_s()
        elapsed = time.monotonic() - self.run_started
        return 0.0 if left is None else elapsed / (elapsed + left) if elapsed + left > 0 else 1.0

    def _overall_text(self) -> str:
        elapsed = time.monotonic() - self.run_started
        left = self.remaining_s()
        done = sum(len(v) for v in self.overheads.values())
        head = f"{done}/{len(self._planned()) or self.cells} done · {clock(elapsed)} elapsed"
        if left is None:
            return head
        eta = (datetime.now() + timedelta(seconds=left)).strftime("%H:%M")
        return f"{head} · [bold]about {clock(left)} left[/] (ETA {eta})"

    def _finish(self) -> None:
        """The repeat followed so far is over: its line keeps a summary; its overhead is learned."""
        rep, self.current = self.current, None
        if rep is None:
            return
        now = time.monotonic()
        rep.phases[rep.phase] = rep.phases.get(rep.phase, 0.0) + now - rep.phase_started
        self.last_end = now
        self.overheads[rep.fault].append(max(0.0, now - rep.started - rep.duration))
        shown = [k for k in ("restore", "drain") if k in rep.phases and (k == "drain" or rep.fault)]
        after = " · ".join(f"{k} {clock(rep.phases[k])}" for k in shown)
        text = f"[green]done[/] in {clock(now - rep.started)} · {rep.live}" + (f" · {after}" if after else "")
        self.progress.update(rep.task, completed=rep.duration or 1.0, final=text)
        self.progress.update(self.overall, completed=self._fraction())

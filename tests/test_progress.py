"""bench run's live progress: Locust's counters every second (not its 5-s-flushed CSV), phases, ETA."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console
from rich.progress import Task
from rich.text import Text

from bench.livestatus import STATUS_FILE, operations, read_status
from bench.progress import CellProgress, clock

ROOT = Path(__file__).resolve().parent.parent


def test_durations_never_read_like_a_clock() -> None:
    assert [clock(s) for s in (0, 4, 59.6, 65, 3725)] == ["0 s", "4 s", "1:00", "1:05", "1:02:05"]


def test_ops_per_s_leave_out_e2e_pseudo_requests() -> None:
    status = {"requests": {"enqueue": [100, 2], "e2e": [90, 0], "dequeue": [50, 1], "ack": [40, 0]}}
    assert operations(status) == (190, 3)


def cells(*durations: float, fault: str = "none") -> list[SimpleNamespace]:
    return [SimpleNamespace(params={"duration": d, "repeat": 1, "fault": fault}) for d in durations]


class Proc:
    """A Locust process stand-in that exits after ``polls`` polls."""

    def __init__(self, polls: int) -> None:
        self.polls = polls

    def poll(self) -> int | None:
        self.polls -= 1
        return None if self.polls >= 0 else 0


def write_live(folder: Path, started_ago: float, calls: dict[str, list[int]], warmup: float = 1.0) -> None:
    now = time.time()
    status = {"t": now, "started_at": now - started_ago, "warmup_s": warmup, "requests": calls}
    (folder / STATUS_FILE).write_text(json.dumps(status))


def shown(progress: CellProgress, task: Task) -> str:
    return Text.from_markup(progress.status_of(task)).plain


def test_phases_and_overall_eta(tmp_path: Path) -> None:
    progress = CellProgress(Console(file=io.StringIO(), width=200), cells(8, 10))
    assert 18 < (progress.remaining_s() or 0) < 18 + 2 * 10  # two loads plus a few seconds around each
    with progress:
        write_live(tmp_path, 0.4, {"enqueue": [10, 0]})
        progress.track(1, "cell", Proc(0), tmp_path, 8)  # type: ignore[arg-type]
        rep = progress.current
        assert rep is not None
        progress._poll(tmp_path, deque(), running=True)
        assert rep.phase == "warm-up" and "warm-up" in shown(progress, progress.progress.tasks[1])
        write_live(tmp_path, 3.2, {"enqueue": [900, 3], "e2e": [500, 0]})
        progress._poll(tmp_path, deque(), running=True)
        text = shown(progress, progress.progress.tasks[1])
        assert rep.phase == "load" and "load 3 s of 8 s" in text and "3 errors" in text
        assert "left" not in text  # elapsed of the cell's load, never a bare clock read as time left
        write_live(tmp_path, 9.0, {"enqueue": [900, 3]})
        progress._poll(tmp_path, deque(), running=True)
        assert rep.phase == "stopping"
        progress.phase("restore")
        progress.phase("drain")
        assert "drain" in shown(progress, progress.progress.tasks[1])
        overall = shown(progress, progress.progress.tasks[0])
        assert "0/2 done" in overall and "left (ETA " in overall
        progress.phase("done")
        final = progress.progress.tasks[1].fields["final"]
        assert Text.from_markup(final).plain.startswith("done in ") and "drain" in final
        assert (progress.remaining_s() or 0) < 10 + 10  # one cell left
    assert "1/2 done" in progress._overall_text()


def test_live_status_comes_every_second_from_a_real_locust_run(standalone, tmp_path: Path) -> None:
    """The Locust child rewrites live.json every second while it runs: counts move long before Locust's CSV
    would be flushed (every 5 s), and e2e is there in Locust's table but not in the operations."""
    out = tmp_path / "run"
    locust = [sys.executable, "-m", "locust", "-f", "locustfiles/queue.py", "--headless", "-u", "4", "-r", "4"]
    proc = subprocess.Popen(
        [*locust, "-t", "4s", "--redis-url", standalone.url, "--queue-name", "live", "--results-dir", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[float, int] = {}
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        status = read_status(out)
        if status is not None:
            seen[status["t"]] = operations(status)[0]
            every = sum(n for n, _ in status["requests"].values())
            assert operations(status)[0] == every - status["requests"].get("e2e", [0])[0]
        time.sleep(0.2)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    counts = [seen[t] for t in sorted(seen)]
    assert len(counts) >= 3, counts  # one status a second during a 4 s run
    assert counts == sorted(counts) and len({c for c in counts if c > 0}) >= 2, counts  # moving while it runs
    history = sorted(seen)
    assert max(b - a for a, b in itertools.pairwise(history)) < 2.0  # never the 5-s CSV flush

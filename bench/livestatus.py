"""A load run's live status, for ``bench run``'s progress: Locust's own request counters, rewritten
every second by the Locust master (or the single process) as ``live.json`` in the results folder.

Locust's CSV history is flushed to disk only every few seconds, and the suite's ``timeseries.csv``
closes a second ~6 s late (worker reports must arrive first); these counters are what Locust's web
UI shows, read at once. Written with no dependency beyond the standard library and Locust's runner.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "live.json"
# Requests Locust counts that are not queue operations: e2e is the enqueue -> dequeue time of a task.
NOT_OPERATIONS = frozenset({"e2e", "send_lag"})


def write_status(results_dir: Path, environment: Any, started_at: float, warmup_s: float = 0.0) -> None:
    """Called every second by ``bench.load_results``' finalizer greenlet; never raises (progress only)."""
    try:
        runner = environment.runner
        entries = runner.stats.entries if runner is not None else {}
        status = {
            "t": time.time(),
            "started_at": started_at,
            "warmup_s": warmup_s,
            "state": str(getattr(runner, "state", "")),
            "users": getattr(runner, "user_count", None),
            "requests": {name: [e.num_requests, e.num_failures] for (name, _method), e in entries.items()},
        }
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(results_dir) / f".{STATUS_FILE}.tmp"
        tmp.write_text(json.dumps(status))
        os.replace(tmp, Path(results_dir) / STATUS_FILE)
    except Exception:  # a full disk or a stats quirk must not stop the load
        pass


def read_status(results_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(results_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def operations(status: dict[str, Any]) -> tuple[int, int]:
    """(calls, failures) of queue operations so far, e2e pseudo-requests left out."""
    calls = failures = 0
    for name, (n, failed) in (status.get("requests") or {}).items():
        if name not in NOT_OPERATIONS:
            calls += int(n)
            failures += int(failed)
    return calls, failures

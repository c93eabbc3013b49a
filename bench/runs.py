"""Reading run folders (the results contract) for charts, reports and comparisons: a scenario run
(``bench run``), or a Locust run folder (``results/locust-*``), read as a run of one cell whose folder
is the run itself (:func:`wrap_load_run`). Pure file reading: no Redis, no Locust."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from .errors import UsageError
from .metrics import decode
from .results import hlog_percentiles

# bench run writes scenario-run; bench capacity writes capacity-run, whose cells[] are its configurations at
# their capacity (plus configurations[] with every step), so everything that reads cells reads both.
RUN_KINDS = ("scenario-run", "capacity-run")


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cells(self) -> list[dict[str, Any]]:
        return list(self.summary.get("cells", []))

    @property
    def complete(self) -> bool:
        return bool(self.summary.get("complete"))

    @property
    def is_load_run(self) -> bool:
        """A Locust run folder read as one cell (no drain, no server INFO, no fault)."""
        return self.summary.get("wraps") == "load-run"

    def repeat_dirs(self, cell: dict[str, Any]) -> list[Path]:
        if cell.get("dir") == LOAD_RUN_DIR:  # a Locust run folder: itself the one repeat
            return [self.path]
        return sorted((self.path / cell["dir"]).glob("repeat-*"))

    def timeseries(self, cell: dict[str, Any], repeat: int = 0) -> list[dict[str, Any]]:
        dirs = self.repeat_dirs(cell)
        return _csv(dirs[repeat] / "timeseries.csv") if len(dirs) > repeat else []

    def info(self, cell: dict[str, Any], repeat: int = 0) -> list[dict[str, Any]]:
        dirs = self.repeat_dirs(cell)
        return _csv(dirs[repeat] / "info.csv") if len(dirs) > repeat and (dirs[repeat] / "info.csv").exists() else []

    def probes(self, cell: dict[str, Any], repeat: int = 0) -> list[dict[str, Any]]:
        """Depth, in-flight leases and the load's RSS per second (bench.probes)."""
        dirs = self.repeat_dirs(cell)
        return _csv(dirs[repeat] / "probes.csv") if len(dirs) > repeat else []

    def intervals(self, cell: dict[str, Any], op: str, repeat: int = 0) -> list[dict[str, float]]:
        """Per second of ``op``: t_s, count and p50/p99 in µs, read from its HdrHistogram log (``hlog/``)."""
        dirs = self.repeat_dirs(cell)
        path = dirs[repeat] / "hlog" / f"{op}.hlog" if len(dirs) > repeat else None
        return hlog_percentiles(path) if path is not None and path.exists() else []

    def histograms(self, cell: dict[str, Any]) -> dict[str, HdrHistogram]:
        """Per operation, all repeats merged."""
        merged: dict[str, HdrHistogram] = {}
        for rep in self.repeat_dirs(cell):
            path = rep / "histograms.json"
            if not path.exists():
                continue
            for op, text in json.loads(path.read_text())["histograms"].items():
                if op in merged:
                    merged[op].decode_and_add(text)
                else:
                    merged[op] = decode(text)
        return merged


def _csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _num(text: str | None) -> Any:
    if text in (None, ""):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def load_run(path: Path | str) -> Run:
    """A scenario run folder, checked: bad folders are a UsageError (exit 2), not a traceback."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"run folder {path} does not exist")
    summary_file = path / "summary.json"
    if not summary_file.exists():
        raise UsageError(f"{path} is not a run folder: no summary.json (expected the output of `bench run`)")
    try:
        summary = json.loads(summary_file.read_text())
    except ValueError as exc:
        raise UsageError(f"{summary_file} is not valid JSON ({exc}); the run may have been cut off") from None
    if summary.get("kind") == "load-run":  # results/locust-*: one cell, the folder itself
        summary = wrap_load_run(path, summary)
    if summary.get("kind") not in RUN_KINDS or "cells" not in summary:
        raise UsageError(f"{summary_file} is not a scenario run summary (kind={summary.get('kind')!r})")
    if not summary["cells"]:
        raise UsageError(f"{path} has no measured cells (the run stopped before the first cell finished)")
    missing = [c["id"] for c in summary["cells"] if c.get("dir") and not (path / c["dir"]).is_dir()]
    if missing:
        raise UsageError(f"{path} is incomplete: cell folders missing for {', '.join(missing)}")
    return Run(path, summary)


LOAD_RUN_DIR = "."  # the one cell of a wrapped Locust run lives in the run folder itself


def _load_params(load: dict[str, Any]) -> dict[str, Any]:
    """A Locust run's options as scenario parameters (the names and defaults of ``bench.scenario``),
    the backend and the servers' memory settings as read back, not as asked for."""
    from .scenario import PARAMS

    opts = load.get("options") or {}
    effective = load.get("effective") or {}
    queue = effective.get("queue") or {}
    nodes = list(((effective.get("servers") or {}).get("nodes") or {}).values())
    locust = load.get("locust") or {}
    params = {k: spec.default for k, spec in PARAMS.items()}
    params |= {k: opts[k] for k in PARAMS if k in opts and k != "backend"}
    backend = queue.get("backend") or opts.get("backend")
    if backend not in ("standalone", "cluster"):
        backend = "cluster" if opts.get("cluster_nodes") else "standalone"
    params |= {
        "backend": backend,
        "users": locust.get("users") or 0,
        "processes": locust.get("workers") or 0,
        "duration": float(locust.get("run_time_s") or load.get("elapsed_s") or 0),
        "warmup": float(load.get("warmup_s") or 0),
        "repeat": 1,
        "maxmemory": str(max((int(n.get("maxmemory") or 0) for n in nodes), default=0)),
        "maxmemory_policy": next((n["maxmemory_policy"] for n in nodes if n.get("maxmemory_policy")), "noeviction"),
        "drain_timeout": 0.0,  # Locust alone does not drain the queue
    }
    timeouts = [n["cluster_node_timeout_ms"] for n in nodes if n.get("cluster_node_timeout_ms")]
    if timeouts:
        params["node_timeout"] = int(timeouts[0])
    return params


def load_run_cell_id(params: dict[str, Any]) -> str:
    """``locust standalone, 4 users, pool 50``: the same settings give the same id (``bench compare``)."""
    parts = [f"locust {params['backend']}", f"{params['users']} users", f"pool {params['pool_size']}"]
    if params["pool_blocking"]:
        parts.append("blocking")
    if params["batch_size"] > 1:
        parts.append(f"batch {params['batch_size']}")
    if params["rate"]:
        parts.append(f"rate {params['rate']:g}/s")
    if params["payload_bytes"] != 100:
        parts.append(f"{params['payload_bytes']} B")
    return ", ".join(parts)


def wrap_load_run(path: Path, load: dict[str, Any]) -> dict[str, Any]:
    """A Locust run folder's summary (kind ``load-run``) as a scenario-run summary with one cell whose
    ``dir`` is the folder itself, so every reader (charts, report, compare, notebook) takes it as is.
    Its audit is the one during the load (``undelivered``, never ``lost``: Locust does not drain)."""
    params = _load_params(load)
    ops, errors = load.get("ops") or {}, load.get("errors") or {}
    audit = load.get("audit_during_load") or {}
    repeat = {
        "complete": bool(load.get("complete")),
        "incomplete_reason": load.get("incomplete_reason"),
        "ops": ops,
        "errors": errors,
        "effective": load.get("effective") or {},
        "audit": audit,
        "drain": None,
        "counters": load.get("counters") or {},
        "server": {},
        **({"open_loop": load["open_loop"]} if load.get("open_loop") else {}),
    }
    started, finished = load.get("started_at"), None
    if started and load.get("elapsed_s") is not None:
        finished = (datetime.fromisoformat(started) + timedelta(seconds=float(load["elapsed_s"]))).isoformat()
    cell = {
        "id": load_run_cell_id(params),
        "dir": LOAD_RUN_DIR,
        "params": params,
        "complete": repeat["complete"],
        "effective": repeat["effective"],
        "ops": {op: {**stats, "repeats": 1} for op, stats in ops.items()},
        "errors": errors,
        "audit": audit,
        "fault": None,
        "open_loop": load.get("open_loop"),
        "unstable": [],
        "repeats": [repeat],
    }
    return {
        "kind": "scenario-run",
        "wraps": "load-run",
        "scenario": path.resolve().name,
        "description": "One Locust run (locust -f locustfiles/queue.py), read as a run of one cell. Locust does not "
        "drain the queue afterwards: the task audit is the one during the load (undelivered, not lost).",
        "source": str(path),
        "complete": repeat["complete"],
        **({"incomplete_reason": load["incomplete_reason"]} if load.get("incomplete_reason") else {}),
        "started_at": started,
        "finished_at": finished,
        "environment": load.get("environment") or {},
        "backend_source": "locust",
        "cells": [cell],
    }


def latest_run(root: Path | str = Path("results")) -> Path | None:
    """The newest run folder directly under ``root`` (a ``bench run`` or a Locust run, by the time its
    summary.json was written); None when there is none. The committed ``samples/`` are not runs."""
    found = []
    for summary in Path(root).glob("*/summary.json"):
        try:
            kind = json.loads(summary.read_text()).get("kind")
        except (OSError, ValueError):
            continue
        if kind in (*RUN_KINDS, "load-run"):
            found.append((summary.stat().st_mtime, str(summary.parent)))
    return Path(max(found)[1]) if found else None

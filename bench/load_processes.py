"""One ``bench capacity`` step as several independent Locust processes: the users split between them, and
their results merged into one ``summary.json`` (HDR histograms merged, not percentiles averaged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .metrics import decode
from .schedule import merge_coverage
from .stats import summarize


def split_users(users: int, n: int) -> list[int]:
    """``users`` over ``n`` processes, as evenly as possible (each keeps producers and consumers)."""
    return [users // n + (1 if k < users % n else 0) for k in range(n)]


def merge_processes(dirs: list[Path], rate: float) -> dict[str, Any] | None:
    """One summary.json (and histograms.json beside it, in the parent folder) from the Locust runs of
    several independent load processes: percentiles from the merged HDR histograms, ops/s and counts
    summed, errors and counters added up, the open loop's planned/issued added up."""
    loads = [(d, read_json(d / "summary.json")) for d in dirs]
    present = [(d, load) for d, load in loads if load is not None]
    if not present:
        return None
    hists: dict[str, Any] = {}
    for d, _ in present:
        encoded = (read_json(d / "histograms.json") or {}).get("histograms") or {}
        for op, text in encoded.items():
            if op in hists:
                hists[op].decode_and_add(text)
            else:
                hists[op] = decode(text)
    measured = min(float(load.get("measured_s") or 0.0) for _, load in present)
    ops = {}
    for op, hist in sorted(hists.items()):
        ops[op] = summarize(hist, measured)
        ops[op]["ops_per_s"] = round(
            sum((load.get("ops") or {}).get(op, {}).get("ops_per_s") or 0 for _, load in present), 1
        )
    errors: dict[str, dict[str, int]] = {}
    counters: dict[str, int] = {}
    for _, load in present:
        for op, kinds in (load.get("errors") or {}).items():
            for kind, count in kinds.items():
                errors.setdefault(op, {})[kind] = errors.get(op, {}).get(kind, 0) + count
        for key, value in (load.get("counters") or {}).items():
            counters[key] = counters.get(key, 0) + int(value or 0)
    elapsed = min(float(load.get("elapsed_s") or 0.0) for _, load in present)
    parts = [
        {
            "planned": (load.get("open_loop") or {}).get("planned"),
            "issued": (load.get("open_loop") or {}).get("issued"),
            "oldest_delay_s": (load.get("open_loop") or {}).get("backlog_oldest_delay_s"),
        }
        for _, load in present
    ]
    first = present[0][1]
    (dirs[0].parent / "histograms.json").write_text(
        json.dumps({"unit": "us", "histograms": {op: h.encode().decode() for op, h in hists.items()}})
    )
    missing = [d.name for d, load in loads if load is None]
    complete = not missing and all(load.get("complete") for _, load in present)
    return {
        **first,
        "complete": complete,
        "incomplete_reason": None if complete else f"load processes without complete results: {missing or 'some'}",
        "started_at": min(load["started_at"] for _, load in present),
        "elapsed_s": elapsed,
        "measured_s": measured,
        "ops": ops,
        "errors": errors,
        "counters": counters,
        "open_loop": merge_coverage(parts, rate, elapsed),
        "load_processes": len(dirs),
        "process_dirs": [d.name for d in dirs],
    }


def without_processes(cmd: list[str]) -> list[str]:
    """A Locust command line without its ``--processes N`` (a master of workers started elsewhere forks none)."""
    out, skip = [], False
    for arg in cmd:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        out.append(arg)
    return out


def read_json(path: Path) -> dict[str, Any] | None:
    """A results file's JSON object; None when it is missing or unreadable (the process wrote none)."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None

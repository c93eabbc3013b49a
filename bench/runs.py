"""Reading scenario run folders (the results contract) for charts, reports and comparisons.
Pure file reading: no Redis, no Locust."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from .errors import UsageError
from .metrics import decode


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

    def repeat_dirs(self, cell: dict[str, Any]) -> list[Path]:
        return sorted((self.path / cell["dir"]).glob("repeat-*"))

    def timeseries(self, cell: dict[str, Any], repeat: int = 0) -> list[dict[str, Any]]:
        dirs = self.repeat_dirs(cell)
        return _csv(dirs[repeat] / "timeseries.csv") if len(dirs) > repeat else []

    def info(self, cell: dict[str, Any], repeat: int = 0) -> list[dict[str, Any]]:
        dirs = self.repeat_dirs(cell)
        return _csv(dirs[repeat] / "info.csv") if len(dirs) > repeat and (dirs[repeat] / "info.csv").exists() else []

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
    if summary.get("kind") != "scenario-run" or "cells" not in summary:
        raise UsageError(f"{summary_file} is not a scenario run summary (kind={summary.get('kind')!r})")
    if not summary["cells"]:
        raise UsageError(f"{path} has no measured cells (the run stopped before the first cell finished)")
    missing = [c["id"] for c in summary["cells"] if c.get("dir") and not (path / c["dir"]).is_dir()]
    if missing:
        raise UsageError(f"{path} is incomplete: cell folders missing for {', '.join(missing)}")
    return Run(path, summary)


def error_count(cell: dict[str, Any], kind: str) -> int:
    """How many operations of a cell failed with this error class (all operations)."""
    return sum(kinds.get(kind, 0) for kinds in cell["errors"].values())


def cell_label(cell: dict[str, Any], run: Run | None = None, many_runs: bool = False) -> str:
    label = cell["id"]
    return f"{run.name}: {label}" if many_runs and run is not None else label

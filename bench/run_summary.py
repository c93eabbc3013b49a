"""The ``summary.json`` of a ``bench run`` or ``bench capacity`` run while it is written: the header both
share, and every write atomic (a kill mid-write leaves the previous file, never half of one)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .results import environment_info
from .scenario import Scenario


def summary_header(kind: str, scenario: Scenario, backend_source: str) -> dict[str, Any]:
    """The first keys of a run's summary: what ran, where, and that it is not complete (yet)."""
    return {
        "kind": kind,
        "scenario": scenario.name,
        "description": scenario.description,
        "source": scenario.source,
        "complete": False,
        "started_at": datetime.now(UTC).isoformat(),
        "environment": environment_info(),
        "backend_source": backend_source,
    }


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(out / "summary.json")

"""Reading one cell of a run summary (``summary.json``'s ``cells[]``): the accessors the charts, the report
and the CLI tables share, so each question about a cell is answered one way. Pure: dicts in, values out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runs import Run


PROVISIONAL_NOTE = "recovered after the run was killed: drain not finished; delivered/lost unknown"


def is_provisional(cell: dict[str, Any]) -> bool:
    """The cell's record was written before its restore and drain (``provisional``) and never replaced: the
    run was killed (or crashed) before the drain ended. Its audit is Locust's: undelivered, never lost."""
    return bool(cell.get("provisional"))


def undelivered_text(audit: dict[str, Any], key: str = "undelivered") -> str:
    """A provisional cell's never-delivered count: unknown, with how many were not yet delivered."""
    count = audit.get(key)
    return "unknown" if count is None else f"unknown ({count:,} not yet delivered)"


def is_faulted(cell: dict[str, Any]) -> bool:
    """The cell injected a fault (``params.fault`` other than ``none``)."""
    return (cell["params"].get("fault") or "none") != "none"


def fault_timeline(cell: dict[str, Any]) -> dict[str, Any] | None:
    """What the cell's fault measured (``cell["fault"]``: when it went in, the promotion, the restore, the
    outage per partition), or None: no fault, or none was recorded (see :func:`is_faulted` for the plan)."""
    return cell.get("fault") or None


def memory_limited(cell: dict[str, Any]) -> bool:
    """The cell ran with a ``maxmemory`` (0 or unset: unlimited)."""
    return str(cell["params"].get("maxmemory") or 0) not in ("0", "")


def is_plain(cell: dict[str, Any]) -> bool:
    """Neither a fault nor a memory limit: the cells that compare throughput and latency like for like."""
    return not is_faulted(cell) and not memory_limited(cell)


def error_count(cell: dict[str, Any], kind: str) -> int:
    """How many operations of a cell failed with this error class (all operations)."""
    return sum(kinds.get(kind, 0) for kinds in cell["errors"].values())


def cell_label(cell: dict[str, Any], run: Run | None = None, many_runs: bool = False) -> str:
    label = cell["id"]
    return f"{run.name}: {label}" if many_runs and run is not None else label


def repeat_count(cell: dict[str, Any]) -> int:
    return len(cell.get("repeats") or []) or int(cell.get("params", {}).get("repeat") or 1)


def lost(audit: dict[str, Any], key: str = "lost") -> tuple[int | None, bool]:
    """(count, is_upper_bound). A drain that timed out records ``<key>_upper_bound`` instead of ``key``
    (summed repeats may hold both); old runs flagged the same case with ``lost_is_upper_bound``."""
    bound = audit.get(f"{key}_upper_bound")
    if bound is not None:
        return (audit.get(key) or 0) + bound, True
    return audit.get(key), key == "lost" and bool(audit.get("lost_is_upper_bound"))


def rate_shortfall(cell: dict[str, Any]) -> dict[str, Any] | None:
    """The open-loop block (the cell's, else a repeat's) whose offered rate was not reached, if any."""
    blocks = [cell.get("open_loop")] + [r.get("open_loop") for r in cell.get("repeats") or []]
    return next((b for b in blocks if b and b.get("rate_reached") is False), None)


def fault_windows(f: dict[str, Any]) -> tuple[float | None, float | None]:
    """(unavailable_s: longest gap without a successful operation, error_window_s) of a cell's ``fault``. Runs
    before the contract of issue #9 stored the error window as ``unavailable_s`` and never measured the gap."""
    if "error_window_s" in f or "outage_start_s" in f:
        return f.get("unavailable_s"), f.get("error_window_s")
    return None, f.get("unavailable_s")

"""Scenario files (TOML) -> validated cells. Pure: no Redis, no I/O beyond reading the file.

A scenario fixes some parameters (``[params]``), sweeps others (``[axes]``: every combination),
and/or lists explicit ``[[cells]]`` (each merged over ``[params]``, then crossed with the axes).
Built-in scenarios live in ``bench/scenarios/``; copy one and edit it.
"""

from __future__ import annotations

import difflib
import itertools
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import clientlib
from .errors import UsageError
from .options import OPTIONS, WEIGHTS, LoadOptions, Option
from .validate import POLICIES, maxmemory_bytes

BUILTIN_DIR = Path(__file__).resolve().parent / "scenarios"
FAULTS = ("none", "kill", "pause", "failover", "failover-force", "partition-master", "partition-client")


@dataclass(frozen=True)
class Param:
    type: type
    default: Any
    check: Callable[[Any], bool]
    valid: str  # how a valid value looks, for error messages
    cluster_only: bool = False  # a value other than the default needs backend = "cluster"


def _pos(x: Any) -> bool:
    return x > 0


def _nonneg(x: Any) -> bool:
    return x >= 0


# What ``bench run`` does around Locust; the load keys (what Locust runs) come from the schema.
HARNESS: dict[str, Param] = {
    "backend": Param(str, "standalone", lambda x: x in ("standalone", "cluster"), "standalone or cluster"),
    "users": Param(int, 10, lambda x: 1 <= x <= 10_000, "1..10000"),
    "spawn_rate": Param(float, 0.0, _nonneg, ">= 0 (0 = all users at once)"),
    "processes": Param(int, 0, lambda x: 0 <= x <= 64, "0 (one process) .. 64 (Locust --processes)"),
    "duration": Param(float, 10.0, _pos, "seconds > 0"),
    "repeat": Param(int, 1, lambda x: 1 <= x <= 20, "1..20"),
    "drain_timeout": Param(float, 20.0, _nonneg, "seconds >= 0"),
    "maxmemory": Param(str, "0", lambda x: maxmemory_bytes(x) >= 0, "Redis size syntax, e.g. 0, 8mb, 1gb"),
    "maxmemory_policy": Param(str, "noeviction", lambda x: x in POLICIES, " | ".join(POLICIES)),
    "fault": Param(str, "none", lambda x: x in FAULTS, " | ".join(FAULTS), cluster_only=True),
    "fault_at": Param(float, 0.0, _nonneg, "seconds after load start (0 = a third of the duration)"),
    "fault_partition": Param(int, 0, _nonneg, "partition index whose master is hit"),
    "fault_duration": Param(
        float, 0.0, _nonneg, "seconds a pause or partition lasts (0 = max(2 x node timeout, node timeout + 2 s))"
    ),
    "fault_every": Param(
        float, 0.0, _nonneg, "seconds between repeats of the fault (0 = once); each starts on a restored cluster"
    ),
    "node_timeout": Param(int, 2000, lambda x: 100 <= x <= 60_000, "ms 100..60000", cluster_only=True),
    "server_bin": Param(str, "", lambda x: True, "'' (default lookup) or a redis-server/valkey-server path or name"),
    "min_replicas_to_write": Param(
        int, 0, lambda x: 0 <= x <= 5, "0..5 (masters refuse writes with fewer good replicas)", cluster_only=True
    ),
    "min_replicas_max_lag": Param(
        int, 10, lambda x: 1 <= x <= 3600, "seconds 1..3600 (a replica is good while it acked this recently)"
    ),
    "redis_py": Param(str, clientlib.INSTALLED, clientlib.is_valid, clientlib.VALID),
    # The delay line (bench.delayline) in the run's private namespace: a real network's round trip.
    "rtt_ms": Param(float, 0.0, lambda x: 0 <= x <= 500, "ms 0..500 (client <-> server round trip; 0 = loopback)"),
    "node_rtt_ms": Param(
        float, 0.0, lambda x: 0 <= x <= 500, "ms 0..500 (between cluster nodes: replication, bus)", cluster_only=True
    ),
    "jitter_ms": Param(float, 0.0, lambda x: 0 <= x <= 100, "ms 0..100 (spread of each delayed hop)"),
}
# A scenario's defaults where they differ from the load options' own (which plain `locust -f` uses).
# A cell is short (10 s), then drained for up to drain_timeout (20 s): a task a stopped consumer
# still held must come back within the drain, so the lease is 5 s, not 30 s. And 1 s of warm-up
# keeps connection set-up out of a short cell's statistics.
LOAD_DEFAULTS: dict[str, Any] = {"visibility_timeout": 5.0, "warmup": 1.0}
LOAD_KEYS = tuple(opt.dest for opt in OPTIONS if opt.scenario)  # the load options a scenario may set


def _load_param(opt: Option) -> Param:
    def check(value: Any) -> bool:
        return opt.problem(value) is None

    return Param(opt.kind, LOAD_DEFAULTS.get(opt.dest, opt.default), check, opt.valid, opt.cluster_only)


_LOAD = {opt.dest: _load_param(opt) for opt in OPTIONS if opt.scenario}
# Cell ids name their varied keys in this order: kept as it was, so runs still compare cell by cell.
_ORDER = (
    *("backend", "users", "spawn_rate", "processes", "duration", "warmup", "repeat", "drain_timeout", "pool_size"),
    *("pool_blocking", "partitions", "payload_bytes", "batch_size", "processing_ms", "rate", "producer_weight"),
    *("consumer_weight", "mixed_weight", "visibility_timeout", "maxmemory", "maxmemory_policy", "fault"),
    *("fault_at", "fault_partition", "fault_duration", "node_timeout", "engine", "queue", "server_bin"),
    *("sync_replicas", "min_replicas_to_write", "min_replicas_max_lag", "redis_py", "rtt_ms", "node_rtt_ms"),
    "jitter_ms",
)
PARAMS: dict[str, Param] = {k: (HARNESS | _LOAD)[k] for k in _ORDER} | {
    k: v for k, v in (HARNESS | _LOAD).items() if k not in _ORDER
}
TOP_LEVEL = {"name", "description", "params", "axes", "cells", "capacity"}  # [capacity]: read by bench capacity


@dataclass
class Cell:
    """One cell: harness parameters (users, duration, faults …) plus the ``LoadOptions`` Locust runs
    with (``bench run`` adds the target, queue name and results folder)."""

    id: str
    harness: dict[str, Any]
    load: LoadOptions

    @classmethod
    def of(cls, cell_id: str, params: dict[str, Any]) -> Cell:
        """A cell from one flat dict of scenario keys."""
        load = LoadOptions(**{k: v for k, v in params.items() if k in LOAD_KEYS})
        return cls(cell_id, {k: v for k, v in params.items() if k not in LOAD_KEYS}, load)

    @property
    def params(self) -> dict[str, Any]:
        """Every scenario key, harness and load, as one flat dict (summary.json's "params")."""
        merged = self.harness | {k: getattr(self.load, k) for k in LOAD_KEYS}
        return {k: merged[k] for k in PARAMS if k in merged} | merged

    def updated(self, cell_id: str | None = None, **changes: Any) -> Cell:
        """A copy with some scenario keys changed (``rate=…``, ``users=…``)."""
        return Cell.of(self.id if cell_id is None else cell_id, self.params | changes)

    @property
    def slug(self) -> str:
        text = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.id.replace(", ", "_").replace("=", "-"))
        return "-".join(filter(None, text.split("-")))[:80] or "cell"


@dataclass
class Scenario:
    name: str
    description: str
    cells: list[Cell]
    source: str


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def locate(name_or_file: str) -> Path:
    """A built-in name first (``smoke`` runs the built-in even when the current folder holds a
    folder or file called ``smoke``, e.g. after ``--out smoke``), else a scenario file."""
    builtin = BUILTIN_DIR / f"{name_or_file}.toml"
    if name_or_file in builtin_names():
        return builtin
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise UsageError(f"{name_or_file} is a folder, not a scenario file (.toml)")
        if not path.is_file():
            raise UsageError(f"scenario file {name_or_file} not found")
        return path
    raise UsageError(
        f"unknown scenario {name_or_file!r}: built-ins are {', '.join(builtin_names())}, or give a .toml file"
    )


def origin(scenario: Scenario) -> str:
    """Which file a run came from, in words: ``built-in scenario smoke`` or ``scenario file my.toml``."""
    source = Path(scenario.source)
    if source.parent == BUILTIN_DIR:
        return f"built-in scenario {source.stem}"
    return f"scenario file {scenario.source}"


def load(name_or_file: str, overrides: dict[str, Any] | None = None) -> Scenario:
    path = locate(name_or_file)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text; a scenario is a TOML file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse(data, source=str(path), overrides=overrides or {})


class _Invalid:
    """Stands in for a value already reported as a problem, so later checks skip it."""

    def __repr__(self) -> str:
        return "<invalid>"


INVALID: Any = _Invalid()


def _kind(value: Any) -> str:
    """``an integer``, ``a table`` …: what a TOML value is, for 'got …' in messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an empty array" if not value else "an array"
    return f"a {type(value).__name__}"  # TOML dates and times


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _said(label: str, value: Any) -> str:
    """``[params] users = 'many'`` in a file, ``--duration inf`` on the command line."""
    return f"{label} {_show(value)}" if label.startswith("--") else f"{label} = {_show(value)}"


def _coerce(key: str, value: Any, label: str, problems: list[str]) -> Any:
    """``value`` as ``PARAMS[key]`` wants it, or INVALID with the problem (``label = value: …``) recorded."""
    spec = PARAMS[key]
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            problems.append(f"{_said(label, value)}: too large; valid is {spec.valid}")
            return INVALID
    if spec.type is str and isinstance(value, int) and not isinstance(value, bool) and key == "maxmemory":
        value = str(value)
    if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
        problems.append(f"{_said(label, value)}: expected {spec.type.__name__} ({spec.valid}), got {_kind(value)}")
        return INVALID
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{_said(label, value)}: must be a finite number; valid is {spec.valid}")
        return INVALID
    try:
        ok = spec.check(value)
    except UsageError:
        ok = False
    if not ok:
        problems.append(f"{_said(label, value)}: valid is {spec.valid}")
        return INVALID
    return value


def _check_keys(table: dict[str, Any], where: str, problems: list[str]) -> None:
    for key in table:
        if key not in PARAMS:
            close = difflib.get_close_matches(str(key), PARAMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{where}unknown key {key!r}; valid keys: {', '.join(PARAMS)}{hint}")


def _table(data: dict[str, Any], key: str, form: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(key, {})
    if isinstance(value, dict):
        return dict(value)
    problems.append(f"[{key}] must be a table of {form}, got {_kind(value)}")
    return {}


def _explicit_cells(data: dict[str, Any], problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """``[[cells]]`` as (number, table) pairs; entries that are not tables are reported and skipped."""
    raw = data.get("cells", [])
    if not isinstance(raw, list):
        problems.append(f"cells must be an array of tables ([[cells]] sections), got {_kind(raw)}")
        return []
    entries = []
    for number, entry in enumerate(raw, start=1):
        if isinstance(entry, dict):
            entries.append((number, dict(entry)))
        else:
            problems.append(f'[[cells]] #{number} must be a table (label = "…" and key = value), got {_kind(entry)}')
    return entries


def _report(source: str, problems: list[str]) -> UsageError:
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        return UsageError(f"{source}: {unique[0]}")
    return UsageError(f"{source}: {len(unique)} problems:\n" + "\n".join(f"  - {p}" for p in unique))


def parse(data: dict[str, Any], source: str = "<scenario>", overrides: dict[str, Any] | None = None) -> Scenario:
    """Validated cells, or a UsageError listing every problem in the file (one line each)."""
    problems: list[str] = []
    for key in data:
        if key not in TOP_LEVEL:
            problems.append(f"unknown top-level key {key!r}; valid: {', '.join(sorted(TOP_LEVEL))}")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            problems.append(f'{key} must be a string, e.g. {key} = "…", got {_kind(data[key])}')
    params = _table(data, "params", "key = value", problems)
    axes = _table(data, "axes", "key = [value, …]", problems)
    explicit = _explicit_cells(data, problems) or [(0, {})]
    _check_keys(params, "[params] ", problems)
    _check_keys(axes, "[axes] ", problems)
    labels = []
    for number, entry in explicit:
        label = entry.pop("label", "")
        if not isinstance(label, str):
            problems.append(f'[[cells]] #{number} label must be a string, e.g. label = "small", got {_kind(label)}')
            label = str(label)
        labels.append(label)
        _check_keys(entry, f"[[cells]] #{number} ", problems)

    base = {k: spec.default for k, spec in PARAMS.items()}
    base |= {k: _coerce(k, v, f"[params] {k}", problems) for k, v in params.items() if k in PARAMS}
    axis_values: dict[str, list[Any]] = {}
    for key, values in axes.items():
        if key not in PARAMS:
            continue
        if not isinstance(values, list) or not values:
            problems.append(
                f"[axes] {key} must be a non-empty list of values, e.g. {key} = [a, b], got {_kind(values)}"
            )
            continue
        axis_values[key] = [_coerce(key, v, f"[axes] {key}[{j}]", problems) for j, v in enumerate(values)]
    cell_params: list[dict[str, Any]] = [
        {k: _coerce(k, v, f"[[cells]] #{n} {k}", problems) for k, v in c.items() if k in PARAMS} for n, c in explicit
    ]
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in overrides:
        if key not in PARAMS:
            problems.append(f"unknown override {key!r}")
    overrides = {k: _coerce(k, v, f"--{k.replace('_', '-')}", problems) for k, v in overrides.items() if k in PARAMS}

    axis_keys = list(axis_values)
    drafts: list[tuple[str, dict[str, Any]]] = []  # (id, params): Cells once valid
    for label, explicit_params in zip(labels, cell_params, strict=True):
        for combo in itertools.product(*axis_values.values()) if axis_keys else [()]:
            merged = base | explicit_params | dict(zip(axis_keys, combo, strict=True)) | overrides
            # Named by what this cell sets itself (or its label) plus the axes: short, readable ids.
            varied = tuple(k for k in PARAMS if k in explicit_params or k in axis_keys)
            named = ", ".join(f"{k}={merged[k]}" for k in varied if k not in explicit_params or not label)
            drafts.append((", ".join(x for x in (label, named) if x) or "default", merged))
    seen: dict[str, int] = {}
    for i, (cell_id, merged) in enumerate(drafts):
        seen[cell_id] = seen.get(cell_id, 0) + 1
        if seen[cell_id] > 1:
            drafts[i] = (f"{cell_id} #{seen[cell_id]}", merged)
    problems += _grouped_cell_problems(drafts)
    if problems:
        raise _report(source, problems)
    cells = [Cell.of(cell_id, merged) for cell_id, merged in drafts]
    return Scenario(str(data.get("name", Path(source).stem)), str(data.get("description", "")), cells, source)


def _grouped_cell_problems(drafts: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per problem, naming the cells that have it (a [params] mistake hits every cell)."""
    where: dict[str, list[str]] = {}
    for cell_id, params in drafts:
        for issue in _cell_issues(params):
            where.setdefault(issue, []).append(cell_id)
    lines = []
    for issue, ids in where.items():
        named = ", ".join(f"[{i}]" for i in ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        lines.append(f"{'cell' if len(ids) == 1 else 'cells'} {named}: {issue}")
    return lines


def _cell_issues(p: dict[str, Any]) -> list[str]:
    """Problems between parameters of one cell; values already reported (INVALID) are skipped."""

    def valid(*keys: str) -> bool:
        return all(p[k] is not INVALID for k in keys)

    problems = []
    if valid("backend") and p["backend"] != "cluster":
        for key, spec in PARAMS.items():
            if spec.cluster_only and valid(key) and p[key] != spec.default:
                problems.append(f'{key} = {p[key]!r} needs backend = "cluster"')
    if valid(*WEIGHTS) and not any(p[k] for k in WEIGHTS):
        problems.append("all user weights are 0")
    if valid("warmup", "duration") and p["warmup"] >= p["duration"]:
        problems.append(f"warmup {p['warmup']} must be shorter than duration {p['duration']}")
    if valid("fault", "fault_at", "duration") and p["fault"] != "none" and p["fault_at"] >= p["duration"]:
        problems.append(f"fault_at {p['fault_at']} must be before the end ({p['duration']} s)")
    if valid("fault", "fault_every") and p["fault_every"] and p["fault"] == "none":
        problems.append(f"fault_every {p['fault_every']} needs a fault to repeat")
    if valid("jitter_ms", "rtt_ms", "node_rtt_ms") and p["jitter_ms"] and not (p["rtt_ms"] or p["node_rtt_ms"]):
        problems.append(f"jitter_ms {p['jitter_ms']} needs a delay to spread (rtt_ms or node_rtt_ms > 0)")
    return problems

"""Scenario files (TOML) -> validated cells. Pure: no Redis, no I/O beyond reading the file.

A scenario fixes some parameters (``[params]``), sweeps others (``[axes]``: every combination),
and/or lists explicit ``[[cells]]`` (each merged over ``[params]``, then crossed with the axes).
Built-in scenarios live in ``bench/scenarios/``; copy one and edit it.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .validate import POLICIES, maxmemory_bytes

BUILTIN_DIR = Path(__file__).resolve().parent / "scenarios"
FAULTS = ("none", "kill", "pause", "failover", "failover-force")


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


PARAMS: dict[str, Param] = {
    "backend": Param(str, "standalone", lambda x: x in ("standalone", "cluster"), "standalone or cluster"),
    "users": Param(int, 10, lambda x: 1 <= x <= 10_000, "1..10000"),
    "spawn_rate": Param(float, 0.0, _nonneg, ">= 0 (0 = all users at once)"),
    "processes": Param(int, 0, lambda x: 0 <= x <= 64, "0 (one process) .. 64 (Locust --processes)"),
    "duration": Param(float, 10.0, _pos, "seconds > 0"),
    "warmup": Param(float, 1.0, _nonneg, "seconds >= 0"),
    "repeat": Param(int, 1, lambda x: 1 <= x <= 20, "1..20"),
    "drain_timeout": Param(float, 20.0, _nonneg, "seconds >= 0"),
    "pool_size": Param(int, 50, lambda x: 1 <= x <= 10_000, "1..10000"),
    "pool_blocking": Param(bool, False, lambda x: True, "true or false"),
    "partitions": Param(int, 0, lambda x: 0 <= x <= 1024, "0 (auto) .. 1024"),
    "payload_bytes": Param(int, 100, lambda x: 0 <= x <= 8 * 1024 * 1024, "0 .. 8388608"),
    "batch_size": Param(int, 1, lambda x: 1 <= x <= 10_000, "1..10000"),
    "processing_ms": Param(float, 0.0, _nonneg, "ms >= 0"),
    "rate": Param(float, 0.0, _nonneg, "tasks/s >= 0 (0 = closed loop)"),
    "producer_weight": Param(int, 1, _nonneg, ">= 0"),
    "consumer_weight": Param(int, 1, _nonneg, ">= 0"),
    "mixed_weight": Param(int, 0, _nonneg, ">= 0"),
    "visibility_timeout": Param(float, 5.0, _pos, "seconds > 0"),
    "maxmemory": Param(str, "0", lambda x: maxmemory_bytes(x) >= 0, "Redis size syntax, e.g. 0, 8mb, 1gb"),
    "maxmemory_policy": Param(str, "noeviction", lambda x: x in POLICIES, " | ".join(POLICIES)),
    "fault": Param(str, "none", lambda x: x in FAULTS, " | ".join(FAULTS), cluster_only=True),
    "fault_at": Param(float, 0.0, _nonneg, "seconds after load start (0 = a third of the duration)"),
    "fault_partition": Param(int, 0, _nonneg, "partition index whose master is hit"),
    "node_timeout": Param(int, 2000, lambda x: 100 <= x <= 60_000, "ms 100..60000", cluster_only=True),
    "engine": Param(str, "list", lambda x: x in ("list", "stream"), "list or stream"),
    "queue": Param(
        str, "", lambda x: x == "" or ":" in x, "expected module:factory, e.g. bench.adapters:rq ('' = TaskQueue)"
    ),
    "server_bin": Param(str, "", lambda x: True, "'' (default lookup) or a redis-server/valkey-server path or name"),
    "sync_replicas": Param(int, 0, lambda x: 0 <= x <= 5, "0..5 (enqueue WAITs for N replicas)", cluster_only=True),
}
TOP_LEVEL = {"name", "description", "params", "axes", "cells"}


@dataclass
class Cell:
    id: str
    params: dict[str, Any]
    varied: tuple[str, ...] = field(default_factory=tuple)  # the keys that distinguish this cell

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
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UsageError(f"scenario file {name_or_file} not found")
        return path
    candidate = BUILTIN_DIR / f"{name_or_file}.toml"
    if not candidate.exists():
        raise UsageError(
            f"unknown scenario {name_or_file!r}: built-ins are {', '.join(builtin_names())}, or give a .toml file"
        )
    return candidate


def load(name_or_file: str, overrides: dict[str, Any] | None = None) -> Scenario:
    path = locate(name_or_file)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, source=str(path), overrides=overrides or {})


def _coerce(key: str, value: Any, where: str, problems: list[str]) -> Any:
    spec = PARAMS[key]
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is str and isinstance(value, int) and key == "maxmemory":
        value = str(value)
    if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
        problems.append(f"{where}{key} = {value!r}: expected {spec.type.__name__} ({spec.valid})")
        return spec.default
    try:
        ok = spec.check(value)
    except UsageError:
        ok = False
    if not ok:
        problems.append(f"{where}{key} = {value!r}: valid is {spec.valid}")
    return value


def _check_keys(table: dict[str, Any], where: str, problems: list[str]) -> None:
    for key in table:
        if key not in PARAMS:
            problems.append(f"{where}unknown key {key!r}; valid keys: {', '.join(PARAMS)}")


def parse(data: dict[str, Any], source: str = "<scenario>", overrides: dict[str, Any] | None = None) -> Scenario:
    problems: list[str] = []
    for key in data:
        if key not in TOP_LEVEL:
            problems.append(f"unknown top-level key {key!r}; valid: {', '.join(sorted(TOP_LEVEL))}")
    params = dict(data.get("params", {}))
    axes = dict(data.get("axes", {}))
    explicit = [dict(c) for c in data.get("cells", [{}])] or [{}]
    _check_keys(params, "[params] ", problems)
    _check_keys(axes, "[axes] ", problems)
    labels = [str(entry.pop("label", "")) for entry in explicit]
    for i, entry in enumerate(explicit):
        _check_keys(entry, f"[[cells]] #{i + 1} ", problems)
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            problems.append(f"[axes] {key} must be a non-empty list of values")
    if problems:
        raise UsageError(f"{source}: " + "; ".join(problems))

    base = {k: spec.default for k, spec in PARAMS.items()}
    base |= {k: _coerce(k, v, "[params] ", problems) for k, v in params.items() if k in PARAMS}
    axis_values = {
        k: [_coerce(k, v, f"[axes] {k}: ", problems) for v in vals]
        for k, vals in axes.items()
        if isinstance(vals, list)
    }
    cell_params: list[dict[str, Any]] = [
        {k: _coerce(k, v, f"[[cells]] #{i + 1} ", problems) for k, v in c.items()} for i, c in enumerate(explicit)
    ]
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in overrides:
        if key not in PARAMS:
            problems.append(f"unknown override {key!r}")
    overrides = {k: _coerce(k, v, "override ", problems) for k, v in overrides.items() if k in PARAMS}
    if problems:
        raise UsageError(f"{source}: " + "; ".join(problems))

    axis_keys = list(axis_values)
    cells: list[Cell] = []
    for label, explicit_params in zip(labels, cell_params, strict=True):
        for combo in itertools.product(*axis_values.values()) if axis_keys else [()]:
            merged = base | explicit_params | dict(zip(axis_keys, combo, strict=True)) | overrides
            # Named by what this cell sets itself (or its label) plus the axes: short, readable ids.
            varied = tuple(k for k in PARAMS if k in explicit_params or k in axis_keys)
            named = ", ".join(f"{k}={merged[k]}" for k in varied if k not in explicit_params or not label)
            cell_id = ", ".join(x for x in (label, named) if x) or "default"
            cells.append(Cell(id=cell_id, params=merged, varied=varied))
    seen: dict[str, int] = {}
    for cell in cells:
        seen[cell.id] = seen.get(cell.id, 0) + 1
        if seen[cell.id] > 1:
            cell.id = f"{cell.id} #{seen[cell.id]}"
    for cell in cells:
        problems += cell_problems(cell)
    if problems:
        raise UsageError(f"{source}: " + "; ".join(dict.fromkeys(problems)))
    return Scenario(str(data.get("name", Path(source).stem)), str(data.get("description", "")), cells, source)


def cell_problems(cell: Cell) -> list[str]:
    p = cell.params
    problems = []
    if p["backend"] != "cluster":
        for key, spec in PARAMS.items():
            if spec.cluster_only and p[key] != spec.default:
                problems.append(f'cell [{cell.id}]: {key} = {p[key]!r} needs backend = "cluster"')
    if not (p["producer_weight"] or p["consumer_weight"] or p["mixed_weight"]):
        problems.append(f"cell [{cell.id}]: all user weights are 0")
    if p["warmup"] >= p["duration"]:
        problems.append(f"cell [{cell.id}]: warmup {p['warmup']} must be shorter than duration {p['duration']}")
    if p["fault"] != "none" and p["fault_at"] >= p["duration"]:
        problems.append(f"cell [{cell.id}]: fault_at {p['fault_at']} must be before the end ({p['duration']} s)")
    return problems

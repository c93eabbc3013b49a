"""What else differs between cells a finding compares: the effective configuration read back from the
client and the servers (summary.json ``effective``), other than the axis the finding is about. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Cell = dict[str, Any]


def _queue(cell: Cell) -> dict[str, Any]:
    return (cell.get("effective") or {}).get("queue") or {}


def _nodes(cell: Cell) -> dict[str, dict[str, Any]]:
    return ((cell.get("effective") or {}).get("servers") or {}).get("nodes") or {}


def _masters(cell: Cell) -> list[dict[str, Any]]:
    nodes = list(_nodes(cell).values())
    return [n for n in nodes if n.get("role") == "master"] or nodes


def _node_values(field: str) -> Callable[[Cell], str | None]:
    def get(cell: Cell) -> str | None:
        values = sorted({str(n.get(field)) for n in _masters(cell) if n.get(field) is not None})
        return "/".join(values) or None

    return get


def _queue_value(field: str) -> Callable[[Cell], str | None]:
    def get(cell: Cell) -> str | None:
        value = _queue(cell).get(field)
        return None if value is None else str(value)

    return get


def layout_shape(cell: Cell) -> str | None:
    """Partitions per master, largest first ("1/1/1", "2/1/1"): what the layout looks like, whatever the
    master addresses (they differ between backends and after a failover)."""
    masters = _queue(cell).get("partition_masters")
    if not masters:
        return None
    return "/".join(str(n) for n in sorted(Counter(masters.values()).values(), reverse=True))


# (axis names that make this field differ by design, what the text calls it, how to read it)
FIELDS: list[tuple[frozenset[str], str, Callable[[Cell], str | None]]] = [
    (frozenset({"backend", "partitions"}), "partitions", _queue_value("partitions")),
    (frozenset({"backend", "partitions"}), "partitions per master", layout_shape),
    (frozenset({"backend"}), "pool class", _queue_value("pool_class")),
    (frozenset({"pool_blocking"}), "pool blocking", _queue_value("pool_blocking")),
    (frozenset({"pool_size"}), "pool size", _queue_value("pool_size")),
    (frozenset(), "redis-py", _queue_value("redis_py")),
    (frozenset({"server_bin"}), "server versions", _node_values("server_version")),
    (frozenset({"maxmemory"}), "maxmemory", _node_values("maxmemory")),
    (frozenset({"maxmemory_policy"}), "policy", _node_values("maxmemory_policy")),
    (frozenset({"backend", "node_timeout"}), "node timeout ms", _node_values("cluster_node_timeout_ms")),
]


def config_differences(cells: Sequence[Cell], axis: Iterable[str] = ()) -> list[str]:
    """Every effective-configuration field that differs between ``cells`` other than along ``axis``
    (params names: ``pool_size``, ``backend``, ``maxmemory_policy`` …), as "3 vs 4 partitions". A field
    a cell does not record (an older run) is not counted as a difference."""
    along = set(axis)
    out = []
    for axes, name, get in FIELDS:
        if axes & along:
            continue
        values = [v for v in (get(c) for c in cells) if v is not None]
        distinct = list(dict.fromkeys(values))
        if len(distinct) > 1:
            out.append(f"{' vs '.join(distinct)} {name}")
    return out


def differences_note(cells: Sequence[Cell], axis: Iterable[str] = ()) -> str:
    """ " (layouts differ: 3 vs 4 partitions; …)" to put next to a finding, or "" when only the axis differs."""
    diffs = config_differences(cells, axis)
    if not diffs:
        return ""
    layout = [d for d in diffs if d.endswith(("partitions", "partitions per master"))]
    other = [d for d in diffs if d not in layout]
    parts = ([f"layouts differ: {', '.join(layout)}"] if layout else []) + (
        [f"configurations differ: {', '.join(other)}"] if other else []
    )
    return f" ({'; '.join(parts)})"

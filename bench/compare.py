"""``bench compare``: run B against run A per cell and operation, with noise-aware verdicts, and the
environment differences that make the two runs harder to compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cells import repeat_count
from .runs import Run, load_run
from .stats import ratio

ENV_KEYS = ("hostname", "host_cores", "python", "redis_py", "locust")


def _server_versions(run: Run) -> str | None:
    versions = set()
    for c in run.cells:
        eff = c.get("effective") or {}
        nodes = (eff.get("servers") or {}).get("nodes") or {}
        versions |= {str(v["server_version"]) for v in nodes.values() if v.get("server_version")}
        if (eff.get("queue") or {}).get("server_version"):
            versions.add(str(eff["queue"]["server_version"]))
    return ", ".join(sorted(versions)) or None


def environment_differences(a: Run, b: Run) -> list[str]:
    """One line per environment field that differs between two runs (absent on one side counts)."""
    env_a, env_b = a.summary.get("environment") or {}, b.summary.get("environment") or {}
    pairs = [(k, env_a.get(k), env_b.get(k)) for k in ENV_KEYS]
    pairs.append(("server version", _server_versions(a), _server_versions(b)))
    return [
        f"{key}: A={'not recorded' if va is None else va}, B={'not recorded' if vb is None else vb}"
        for key, va, vb in pairs
        if va != vb
    ]


def compare(a_dir: Path | Run, b_dir: Path | Run, strict: bool = False) -> list[dict[str, Any]]:
    """B/A per cell and operation (ops/s, p99) from repeat medians, with noise-aware verdicts: with
    fewer than 3 repeats a move beyond 5 % is ``changed`` unless ``strict`` (``--fail-on-regression``)."""
    from .stats import classify_change

    a = a_dir if isinstance(a_dir, Run) else load_run(a_dir)
    b = b_dir if isinstance(b_dir, Run) else load_run(b_dir)
    b_cells = {c["id"]: c for c in b.cells}
    rows = []
    for ca in a.cells:
        cb = b_cells.get(ca["id"])
        if cb is None:
            continue
        reps = min(repeat_count(ca), repeat_count(cb))
        for op in sorted(set(ca["ops"]) & set(cb["ops"])):
            if op in ("e2e", "send_lag"):
                continue
            oa, ob = ca["ops"][op], cb["ops"][op]
            for key, higher in (("ops_per_s", True), ("p99_us", False)):
                rows.append(
                    {
                        "cell": ca["id"],
                        "operation": op,
                        "metric": key,
                        "a": oa.get(key),
                        "b": ob.get(key),
                        "ratio": ratio(ob.get(key), oa.get(key)),
                        "repeats": reps,
                        "verdict": classify_change(oa, ob, key, higher, repeats=reps, strict=strict),
                    }
                )
    return rows

"""Text shared by ``bench report`` and the CLI tables (the cells are read through :mod:`bench.cells`): lost
counts that may be upper bounds, the open-loop warning, server counters; plus the Markdown sections for fault
timelines, open loop and server counters. Pure: no Redis, no rich."""

from __future__ import annotations

from typing import Any

from .cells import fault_windows, lost, rate_shortfall
from .outage import GAP_MIN_S

COUNTERS = ("evicted_keys", "expired_keys", "rejected_connections")


def n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def seconds_without_success(seconds: float | None, digits: int = 1) -> str:
    """A measured outage in words: success gaps shorter than outage.GAP_MIN_S are not recorded, so a
    0 means "under 0.05 s", not "none"."""
    if seconds is None:
        return "–"
    return f"under {GAP_MIN_S:g} s" if seconds < GAP_MIN_S else f"{seconds:.{digits}f} s"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def lost_text(audit: dict[str, Any], key: str = "lost") -> str:
    count, upper = lost(audit, key)
    return f"≤ {count:,}" if upper and count is not None else n(count)


def rate_warning(cell: dict[str, Any]) -> str | None:
    ol = rate_shortfall(cell)
    if ol is None:
        return None
    return (
        f"cell {cell['id']}: offered {n(ol.get('rate'))}/s but only {(ol.get('coverage') or 0) * 100:.1f}% of the "
        "sends were made (harness- or server-bound); its latency percentiles are not the latency at that rate"
    )


def server_counters(cell: dict[str, Any]) -> dict[str, Any] | None:
    """Peak memory and counters over the repeats: summed when each repeat reset its counters
    (CONFIG RESETSTAT), else the largest reading (counters since the server started)."""
    reps = [r["server"] for r in cell.get("repeats") or [] if r.get("server")] or (
        [cell["server"]] if cell.get("server") else []
    )
    if not reps:
        return None
    resets = [r.get("stats_reset") for r in reps]
    reset = True if all(x is True for x in resets) else (False if any(x is False for x in resets) else None)
    peaks = [r["peak_used_memory"] for r in reps if r.get("peak_used_memory") is not None]
    out: dict[str, Any] = {"peak_used_memory": max(peaks) if peaks else None, "stats_reset": reset}
    for key in COUNTERS:
        vals = [r[key] for r in reps if r.get(key) is not None]
        out[key] = (sum(vals) if reset else max(vals)) if vals else None
    return out


def counters_note(counters: dict[str, Any]) -> str:
    if counters["stats_reset"] is True:
        return "counters reset at cell start"
    if counters["stats_reset"] is False:
        return "counters since server start (not reset)"
    return ""


def _source(f: dict[str, Any]) -> str:
    src = f.get("timeline_source") or {}
    return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in src.items() if v) or "not recorded"


def fault_section(faulted: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in faulted:
        f = c["fault"]
        unavailable, window = fault_windows(f)
        rows.append(
            [
                c["id"],
                f["kind"],
                *(
                    n(f.get(k), 2)
                    for k in (
                        "injected_at_s",
                        "suspected_at_s",
                        "node_failed_at_s",
                        "promoted_at_s",
                        "client_saw_new_master_at_s",
                        "outage_start_s",
                        "outage_end_s",
                    )
                ),
                n(unavailable, 2),
                n(window, 2),
                n(f.get("healthy_unavailable_s"), 2),
                "ok" if f.get("restore_ok") else "FAILED",
            ]
        )
    headers = ["cell", "kind", "injected", "suspected (PFAIL)", "node failed (FAIL, quorum)", "promoted"]
    headers += ["client saw new master", "outage start", "outage end", "unavailable (no success)", "error window"]
    headers += ["healthy masters unavailable", "restore"]
    sources = "; ".join(f"{c['id']}: {_source(c['fault'])}" for c in faulted)
    parts = [
        "## Fault timelines (seconds from load start)",
        "",
        table(headers, rows),
        "",
        "Unavailable is the longest gap between successful operations on the faulted partition (outage start to "
        "outage end), hanging calls included: a call that blocks for 3 s counts as 3 s unavailable even without an "
        "error. The error window (first to last error) is shorter whenever calls hang instead of failing. Suspected "
        "is the first PFAIL of the target seen by polling another node; node failed (FAIL by quorum) and promoted "
        "come from the servers' own logs where the source says server-log, else from that polling "
        f"(sources — {sources}). Older runs measured only the error window: their unavailable is shown as –.",
        "",
    ]
    prows = [
        [
            c["id"],
            p,
            "yes" if d.get("faulted") else "no",
            *(
                n(d.get(k), 2)
                for k in (
                    "unavailable_s",
                    "outage_start_s",
                    "outage_end_s",
                    "first_error_at_s",
                    "last_error_at_s",
                    "error_window_s",
                )
            ),
            n(d.get("errors")),
        ]
        for c in faulted
        for p, d in sorted((c["fault"].get("partitions") or {}).items(), key=lambda kv: (len(kv[0]), kv[0]))
    ]
    if prows:
        headers = ["cell", "partition", "faulted master", "unavailable (no success)", "outage start", "outage end"]
        headers += ["first error", "last error", "error window", "errors"]
        parts += ["### Per partition", "", table(headers, prows), ""]
    return parts


def open_loop_section(cells: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            c["id"],
            n(ol.get("rate")),
            n(ol.get("planned")),
            n(ol.get("issued")),
            n(ol.get("backlog")),
            n(ol.get("achieved_rate"), 1),
            n(None if ol.get("coverage") is None else ol["coverage"] * 100, 1),
            "yes" if ol.get("rate_reached") else "**NO**",
        ]
        for c in cells
        if (ol := c.get("open_loop"))
    ]
    if not rows:
        return []
    headers = ["cell", "rate (offered/s)", "planned", "issued", "backlog (never sent)", "achieved rate/s"]
    headers += ["coverage %", "rate reached"]
    return [
        "## Open loop: was the offered rate reached?",
        "",
        table(headers, rows),
        "",
        "Backlog: sends due but never started; they enter the corrected enqueue histogram with their true delay. "
        "Below 95 % coverage the harness or the server could not keep up: that cell's percentiles are not the "
        "latency at the offered rate.",
        "",
    ]


def server_section(cells: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in cells:
        s = server_counters(c)
        if s is not None:
            rows.append([c["id"], n(s["peak_used_memory"]), *(n(s[k]) for k in COUNTERS), counters_note(s) or "–"])
    if not rows:
        return []
    headers = ["cell", "peak used memory (bytes)", "evicted keys", "expired keys", "rejected connections", "counters"]
    return ["## Server counters (all nodes of the cell)", "", table(headers, rows), ""]


def _latency(us: Any) -> str:
    if us is None:
        return "–"
    for scale, unit in ((1e6, "s"), (1e3, "ms")):
        if us >= scale:
            return f"{us / scale:.3g} {unit}"
    return f"{us:.3g} µs"


def capacity_ratio(rate: float | None, lower: bool, best: float | None, best_lower: bool, is_best: bool) -> str:
    """A capacity over the best one. A lower bound (harness-bound, or the search stopped) only bounds the
    ratio from one side; two lower bounds give no ratio at all."""
    if rate is None or not best:
        return "–"
    if is_best:
        return "1.00×"
    r = rate / best
    if lower and best_lower:
        return f"{r:.2f}× (both ≥: no ratio)"
    return ("≥ " if lower else "≤ " if best_lower else "") + f"{r:.2f}×"


def capacity_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Per configuration of a capacity run: capacity, × best, limiting factor, corrected p99 at capacity,
    and the next step up that failed with why."""
    configs = [c for c in summary.get("configurations") or [] if c.get("capacity")]
    rated = [c for c in configs if c["capacity"].get("rate")]
    best = max(rated, key=lambda c: c["capacity"]["rate"], default=None)
    best_rate = best["capacity"]["rate"] if best else None
    best_lower = bool(best and best["capacity"].get("lower_bound"))
    rows = []
    for c in configs:
        cap = c["capacity"]
        rate, lower = cap.get("rate"), bool(cap.get("lower_bound"))
        at = cap.get("at_capacity") or {}
        nxt = cap.get("next_fail")
        if rate is None:
            shown = f"none passed (down to {n((nxt or {}).get('rate'))}/s)"
        else:
            shown = ("≥ " if lower else "") + n(rate) + ("" if cap.get("confirmed") else " (unconfirmed)")
        failed = f"{n(nxt['rate'])}/s: " + "; ".join(nxt.get("reasons") or nxt.get("failed") or []) if nxt else "–"
        rows.append(
            [
                c["id"],
                shown,
                capacity_ratio(rate, lower, best_rate, best_lower, c is best),
                cap.get("limit") or "–",
                _latency((at.get("corrected") or {}).get("p99_us")),
                failed,
            ]
        )
    return rows


def capacity_findings(summary: dict[str, Any]) -> list[str]:
    """A capacity run's headlines: each configuration's capacity, its ratio to the best and what limited it."""
    slo = (summary.get("criteria") or {}).get("slo_text", "the SLO")
    out = []
    for row, config in zip(capacity_rows(summary), summary.get("configurations") or [], strict=False):
        cap = config.get("capacity") or {}
        if cap.get("rate") is None:
            out.append(f"{row[0]}: no rate met {slo}, down to {row[5]}")
            continue
        text = f"{row[0]}: {row[1]} tasks/s at {slo} ({row[2]} of the best), "
        if cap.get("harness_bound"):
            text += "harness-bound: the load generator's ceiling on this host, not the queue's"
        else:
            text += f"limited by {row[3]}"
        out.append(text)
    if out:
        out.append("one run, steps measured once (twice at the capacity): noise unknown beyond that re-run")
    return out


def capacity_section(summary: dict[str, Any]) -> list[str]:
    if summary.get("kind") != "capacity-run" or not summary.get("configurations"):
        return []
    crit, search = summary.get("criteria") or {}, summary.get("search") or {}
    headers = ["configuration", "capacity (tasks/s)", "× best", "limit", "corrected p99 at capacity"]
    headers.append("next step up: failed because")
    return [
        f"## Capacity at {crit.get('slo_text', 'the SLO')}",
        "",
        table(headers, capacity_rows(summary)),
        "",
        f"Open-loop rate search: steps × {search.get('factor')} from {n(search.get('start_rate'))}/s until a step "
        f"fails, then bisection to {100 * (search.get('resolution') or 0):g} %; then the first failing rate is run "
        "again (unless harness-bound) and so is the capacity, which must pass again; every step "
        f"{search.get('step_s')} s measured after {search.get('warmup_s')} s warm-up, on the "
        "same backend flushed before each step. A step passes when the rate was reached (issued ≥ "
        f"{100 * (crit.get('min_coverage') or 0):g} % of planned), the coordinated-omission-corrected enqueue "
        f"percentile is within {crit.get('slo_text')}, the error rate is at most {crit.get('max_error_rate')}, and "
        f"the queue depth grew by at most {100 * (crit.get('max_backlog_growth') or 0):g} % of the rate per second. "
        "Limit *harness-bound*: the next step up failed while the busiest server node used less than "
        f"{crit.get('server_saturated_cores')} of a core, with the rate not reached, a load process at "
        f"≥ {crit.get('generator_saturated_cores')} cores, or the host's CPU ≥ "
        f"{100 * (crit.get('host_saturated_share') or 0.9):g} % busy while the load used ≥ "
        f"{crit.get('generator_share_cores', 0.5)} cores: that is the load generator's ceiling, so "
        "the capacity is a lower bound (≥). *throughput*: the rate was not reached and the server was busy. "
        "Ratios are to the best configuration of this run; a lower bound bounds its ratio from one side only.",
        "",
    ]


def client_version(cell: dict[str, Any]) -> str | None:
    """The redis-py release the cell's load really ran (read back by its Locust process)."""
    return ((cell.get("effective") or {}).get("queue") or {}).get("redis_py")


def client_pairs(cells: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Groups of cells that differ only in ``redis_py`` and ran different releases (``client-upgrade``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        rest = {k: v for k, v in c["params"].items() if k != "redis_py"}
        groups.setdefault(repr(sorted(rest.items())), []).append(c)
    return [g for g in groups.values() if len({client_version(c) for c in g}) > 1]


def client_section(cells: list[dict[str, Any]]) -> list[str]:
    """What upgrading redis-py changes at a failover: per fault, the cells under each release side by side."""
    pairs = client_pairs(cells)
    if not pairs:
        return []
    rows = []
    for group in pairs:
        for c in group:
            f, a = c.get("fault") or {}, c["audit"]
            unavailable, _ = fault_windows(f)
            saw, promoted = f.get("client_saw_new_master_at_s"), f.get("promoted_at_s")
            lag = saw - promoted if saw is not None and promoted is not None else None
            kinds: dict[str, int] = {}
            for per_kind in c["errors"].values():
                for kind, count in per_kind.items():
                    kinds[kind] = kinds.get(kind, 0) + count
            errors = ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) or "none"
            rows.append(
                [
                    c["id"],
                    str(client_version(c) or "–"),
                    seconds_without_success(unavailable, 2),
                    "≤ 0" if lag is not None and lag <= 0 else n(lag, 2),  # seen before the promotion was
                    errors,
                    n(a.get("ambiguous")),
                    n(a.get("rejected")),
                    lost_text(a),
                    n(a.get("duplicates")),
                    n(a.get("delivered_after_reject")),
                ]
            )
    headers = ["cell", "redis-py", "unavailable (no success)", "recovery lag s", "errors by kind"]
    headers += ["ambiguous", "rejected", "LOST", "duplicated", "delivered after reject"]
    return [
        "## What upgrading redis-py changes at a failover",
        "",
        "Cells that differ only in the redis-py release their load ran (read back from the load process). Recovery "
        "lag: from the replica's promotion to the client's first success on it (≤ 0: the client was served before "
        "the promotion was seen by polling).",
        "",
        table(headers, rows),
        "",
    ]

"""``bench report``: report.md and a self-contained report.html from a run folder (results
contract only): headline findings written from the numbers, tables, effective config, charts."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from .cells import error_count, fault_windows, is_plain, lost, memory_limited, rate_shortfall, repeat_count
from .partition_loss import report_section as loss_section
from .report_soak import drift_findings, drift_section, fault_series_section
from .report_tables import (
    capacity_findings,
    capacity_section,
    counters_note,
    fault_section,
    lost_text,
    open_loop_section,
    rate_warning,
    server_counters,
    server_section,
)
from .report_tables import n as _n
from .report_tables import table as _table
from .runs import Run, load_run
from .stats import ratio


def _noise(a: dict[str, Any], b: dict[str, Any], op_a: dict[str, Any], op_b: dict[str, Any], key: str) -> str:
    """How sure a ratio of cell ``a`` over cell ``b`` is: with fewer than 3 repeats, unknown;
    else the range from the repeats' extremes (min/max)."""
    reps = min(repeat_count(a), repeat_count(b))
    if reps < 3:
        return f" ({reps} repeat{'s' if reps > 1 else ''}, noise unknown)"
    lo_a, hi_a, lo_b, hi_b = (
        op.get(f"{key}_{m}") for op, m in ((op_a, "min"), (op_a, "max"), (op_b, "min"), (op_b, "max"))
    )
    if lo_a is None or hi_a is None or not lo_b or not hi_b:
        return ""
    return f" (range {lo_a / hi_b:.2f}..{hi_a / lo_b:.2f}× over {reps} repeats)"


def _enqueue(cell: dict[str, Any]) -> dict[str, Any]:
    return cell["ops"].get("enqueue") or cell["ops"].get("enqueue_many") or {}


def findings(run: Run) -> list[str]:
    """Plain-language headlines, each backed by a number in the tables below."""
    out: list[str] = [w for c in run.cells if (w := rate_warning(c))]
    cells, cores = run.cells, run.summary.get("environment", {}).get("host_cores")
    plain = [c for c in cells if is_plain(c)]
    for sa in [c for c in plain if c["params"]["backend"] == "standalone"][:1]:
        for cl in [
            c for c in plain if c["params"]["backend"] == "cluster" and c["params"]["users"] == sa["params"]["users"]
        ][:1]:
            for op, name in (("enqueue", "enqueue throughput"), ("ack", "dequeue+ack throughput")):
                o_cl, o_sa = cl["ops"].get(op, {}), sa["ops"].get(op, {})
                r = ratio(o_cl.get("ops_per_s"), o_sa.get("ops_per_s"))
                if r:
                    out.append(
                        f"cluster {name} at {sa['params']['users']} users (pool {cl['params']['pool_size']}, same "
                        f"run, one {cores}-core host) is {r:.2f}× standalone" + _noise(cl, sa, o_cl, o_sa, "ops_per_s")
                    )
            e_cl, e_sa = _enqueue(cl), _enqueue(sa)
            r = ratio(e_cl.get("p99_us"), e_sa.get("p99_us"))
            if r:
                out.append(
                    f"cluster enqueue p99 is {r:.2f}× standalone{_noise(cl, sa, e_cl, e_sa, 'p99_us')}: "
                    f"{_n(e_cl.get('p99_us'))} vs {_n(e_sa.get('p99_us'))} µs"
                )
    for c in cells:
        exhausted = error_count(c, "pool_exhausted")
        if exhausted:
            out.append(
                f"pool {c['params']['pool_size']} (non-blocking) at {c['params']['users']} users: "
                f"{exhausted:,} operations failed with PoolExhausted"
            )
    blocking = [c for c in plain if c["params"]["pool_blocking"]]
    for c in blocking:
        peers = [
            p
            for p in plain
            if not p["params"]["pool_blocking"]
            and p["params"]["users"] == c["params"]["users"]
            and not error_count(p, "pool_exhausted")
        ]
        if peers:
            big = max(peers, key=lambda p: p["params"]["pool_size"])
            r = ratio(_enqueue(c).get("p99_us"), _enqueue(big).get("p99_us"))
            if r:
                out.append(
                    f"a blocking pool of {c['params']['pool_size']} never fails but its enqueue p99 is "
                    f"{r:.1f}× that of pool {big['params']['pool_size']}"
                    f"{_noise(c, big, _enqueue(c), _enqueue(big), 'p99_us')}, from waiting for a connection"
                )
    out += pool_sweeps(plain)
    for c in cells:
        if not memory_limited(c):
            continue
        a, policy, mem = c["audit"], c["params"]["maxmemory_policy"], c["params"]["maxmemory"]
        count, upper = lost(a)
        if count and upper:
            text = (
                f"{policy} lost ≤ {count:,} of {a.get('enqueued_ok', 0):,} acknowledged tasks (upper bound: drain "
                f"timed out with {a.get('still_queued', 0):,} still queued; maxmemory {mem})"
            )
        elif count:
            text = (
                f"{policy} lost {count:,} of {a.get('enqueued_ok', 0):,} acknowledged tasks "
                f"(maxmemory {mem}): never use it for a queue"
            )
        else:
            text = (
                f"{policy} lost 0 tasks and rejected {a.get('rejected', 0):,} enqueues with OOM "
                f"(maxmemory {mem}): producers see QueueFull instead of silent loss"
            )
        out.append(text + _server_text(c))
    for c in cells:
        if c.get("fault"):
            out.append(_fault_headline(c["fault"], c["audit"]))
    for c in cells:
        if c.get("unstable"):
            out.append(f"cell [{c['id']}] is unstable: repeats spread more than 10 % in {', '.join(c['unstable'])}")
    return out


def pool_sweeps(plain: list[dict[str, Any]]) -> list[str]:
    """One headline per pool-size sweep (cells that differ only in pool size: same backend, users and pool
    kind, at least 3 sizes): where throughput levels off, and what the smallest pool costs."""
    groups: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}
    for c in plain:
        p = c["params"]
        groups.setdefault((p["backend"], p["users"], p["pool_blocking"]), {})[p["pool_size"]] = c
    out = []
    for (backend, users, blocking), by_size in groups.items():
        if len(by_size) < 3:
            continue
        sizes = sorted(by_size)
        rates = {s: _enqueue(by_size[s]).get("ops_per_s") or 0 for s in sizes}
        best = max(sizes, key=lambda s: rates[s])
        if not rates[best]:
            continue
        enough = next(s for s in sizes if rates[s] >= 0.9 * rates[best])
        small = sizes[0]
        p99_small, p99_best = _enqueue(by_size[small]).get("p99_us"), _enqueue(by_size[best]).get("p99_us")
        kind = "blocking" if blocking else "non-blocking"
        text = (
            f"pool sweep ({backend}, {users} users, {kind} pool): enqueue throughput peaks at {_n(rates[best])}/s "
            f"at pool {best}; the smallest pool within 10 % of that is {enough}; pool {small} gives "
            f"{rates[small] / rates[best]:.2f}× the peak"
        )
        if p99_small and p99_best:
            text += f", with enqueue p99 {_n(p99_small)} µs vs {_n(p99_best)} µs"
        exhausted = sum(error_count(by_size[s], "pool_exhausted") for s in sizes)
        out.append(text + (f"; {exhausted:,} PoolExhausted errors in the sweep" if exhausted else ""))
    return out


def _server_text(cell: dict[str, Any]) -> str:
    s = server_counters(cell)
    if s is None:
        return ""
    names = {
        "evicted_keys": "keys evicted",
        "expired_keys": "keys expired",
        "rejected_connections": "connections rejected",
    }
    said = [f"{s[k]:,} {name}" for k, name in names.items() if s.get(k) is not None]
    if not said:
        return ""
    note = counters_note(s)
    return "; server: " + ", ".join(said) + (f" ({note})" if note else "")


def _fault_headline(f: dict[str, Any], a: dict[str, Any]) -> str:
    unavailable, window = fault_windows(f)
    if unavailable is None:  # a run from before issue #9: only the error window was measured
        text = f"{f['kind']} of a master: errors for {window or 0:.1f} s (older run: time without success not measured)"
    else:
        text = (
            f"{f['kind']} of a master: {unavailable:.1f} s unavailable to clients (no successful operation on its "
            f"partition; errors for {window or 0:.1f} s)"
        )
    if f.get("healthy_unavailable_s"):
        text += f"; healthy masters also unavailable for {f['healthy_unavailable_s']:.1f} s"
    lag_s = f.get("client_recovery_lag_s")
    if lag_s is not None:  # the watcher polls another node every 50 ms: small negatives are gossip delay
        text += (
            f"; clients back {lag_s:.2f} s after the promotion"
            if lag_s >= 0.05
            else "; clients back as soon as the promotion was seen"
        )
    count, upper = lost(a)
    lost_part = f"≤ {count or 0:,} tasks lost (upper bound: drain timed out)" if upper else f"{count or 0:,} tasks lost"
    return f"{text}; {lost_part}, {a.get('duplicates', 0):,} duplicated, {a.get('ambiguous', 0):,} ambiguous" + (
        "" if f.get("restore_ok") else " — RESTORE FAILED"
    )


def markdown(run: Run) -> str:
    s = run.summary
    env = s.get("environment", {})
    parts = [f"# {s['scenario']}: TaskQueue benchmark report", ""]
    if s.get("description"):
        parts += [s["description"], ""]
    if not run.complete:
        parts += [
            f"> **INCOMPLETE RUN**: {s.get('incomplete_reason') or 'some cells did not complete'}. "
            "Numbers below are what was measured before it stopped.",
            "",
        ]
    parts += [f"> **WARNING: {w}.**\n" for c in run.cells if (w := rate_warning(c))]
    parts += capacity_section(s)  # a capacity run: its answer first; cells below are configurations at capacity
    said = (capacity_findings(s) if s.get("kind") == "capacity-run" else findings(run) + drift_findings(run.cells)) or [
        "nothing to compare: no pair of cells that differ in one setting"
    ]
    parts += ["## Findings", ""] + [f"- {f}" for f in said] + [""]
    rows = []
    for c in run.cells:
        enq, deq, ack = _enqueue(c), c["ops"].get("dequeue", {}), c["ops"].get("ack", {})
        errors = sum(sum(k.values()) for k in c["errors"].values())
        notes = ", ".join(
            filter(
                None,
                [
                    "unstable: " + "/".join(c["unstable"]) if c["unstable"] else "",
                    "" if c["complete"] else "incomplete",
                    "rate NOT reached" if rate_shortfall(c) else "",
                    f"measured {c['short']['measured_s']:.1f} of {c['short']['planned_s']:g} s"
                    if c.get("short")
                    else "",
                ],
            )
        )
        rows.append(
            [
                c["id"],
                _n(enq.get("ops_per_s")),
                _n(enq.get("p50_us")),
                _n(enq.get("p99_us")),
                _n(enq.get("p999_us")),
                _n(deq.get("p50_us")),
                _n(ack.get("ops_per_s")),
                _n(errors),
                notes,
            ]
        )
    parts += [
        "## Throughput and latency (median of repeats; latencies in µs from HdrHistogram)",
        "",
        _table(
            [
                "cell",
                "enqueue/s",
                "enq p50",
                "enq p99",
                "enq p99.9",
                "deq p50",
                "ack/s",
                "errors (after warm-up)",
                "notes",
            ],
            rows,
        ),
        "",
    ]
    rows = [
        [
            c["id"] + (" (drain timed out: LOST is an upper bound)" if lost(c["audit"])[1] else ""),
            *(
                _n(c["audit"].get(k))
                for k in ("enqueued_ok", "rejected", "ambiguous", "delivered_unique", "duplicates")
            ),
            lost_text(c["audit"]),
            lost_text(c["audit"], "lost_ambiguous"),
            *(_n(c["audit"].get(k)) for k in ("delivered_after_reject", "still_queued")),
        ]
        for c in run.cells
    ]
    if run.is_load_run:  # Locust alone does not drain: a task not delivered yet is not lost
        parts += _load_run_audit(run)
    elif s.get("kind") != "capacity-run":  # a capacity run flushes between steps: nothing to audit
        parts += [
            "## Task audit: every task accounted for",
            "",
            "Every task of the cell, warm-up included, after the queue was drained. ≤ N: the drain timed out and "
            "undelivered tasks count as lost, so N is an upper bound.",
            "",
            _table(
                [
                    "cell",
                    "enqueued ok",
                    "rejected",
                    "ambiguous",
                    "delivered",
                    "duplicates",
                    "LOST",
                    "lost (ambiguous)",
                    "delivered after reject",
                    "still queued at drain timeout",
                ],
                rows,
            ),
            "",
        ]
    errors = [
        [c["id"], op, kind, _n(n)] for c in run.cells for op, kinds in c["errors"].items() for kind, n in kinds.items()
    ]
    if errors:
        parts += ["## Errors by class", "", _table(["cell", "operation", "class", "count"], errors), ""]
    faulted = [c for c in run.cells if c.get("fault")]
    if faulted:
        parts += fault_section(faulted)
        parts += loss_section(faulted)  # network partitions: lost vs acknowledged by the cut-off master
    parts += fault_series_section(run.cells) + drift_section(run.cells)
    parts += open_loop_section(run.cells) + server_section(run.cells)
    rows = []
    for c in run.cells:
        q = c.get("effective", {}).get("queue", {})
        nodes = c.get("effective", {}).get("servers", {}).get("nodes", {})
        first: dict[str, Any] = next(iter(nodes.values()), {})
        rows.append(
            [
                c["id"],
                q.get("backend", "–"),
                f"{q.get('pool_class', '–')} {q.get('pool_size', '–')}",
                _n(q.get("partitions")),
                f"{first.get('server_name', '')} {first.get('server_version', '–')}",
                _n(first.get("maxmemory")),
                str(first.get("maxmemory_policy", "–")),
                _n(first.get("cluster_node_timeout_ms")),
                str(len(nodes)),
            ]
        )
    parts += [
        "## Effective configuration (read back from client and servers)",
        "",
        _table(
            [
                "cell",
                "backend",
                "pool (per process/node)",
                "partitions",
                "server",
                "maxmemory",
                "policy",
                "node timeout ms",
                "nodes",
            ],
            rows,
        ),
        "",
        f"Host: {env.get('host_cores')} cores, {env.get('platform')}; Python {env.get('python')}, "
        f"redis-py {env.get('redis_py')} (hiredis {env.get('hiredis')}), Locust {env.get('locust')}, "
        f"hdrhistogram {env.get('hdrhistogram')}; git {env.get('git_commit')}.",
        "Numbers from one shared machine: compare ratios within this run, not absolute values across runs.",
        "",
    ]
    charts = sorted((run.path / "charts").glob("*.png"))
    if charts:
        parts += ["## Charts", ""] + [f"![{p.stem}](charts/{p.name})\n" for p in charts]
    return "\n".join(parts)


def write_report(run_dir: Path) -> Path:
    run = load_run(run_dir)
    text = markdown(run)
    (run.path / "report.md").write_text(text)
    title = f"{run.summary.get('scenario') or run.name}: TaskQueue benchmark report"
    (run.path / "report.html").write_text(to_html(text, run.path, title))
    return run.path / "report.md"


def _load_run_audit(run: Run) -> list[str]:
    keys = ("enqueued_ok", "rejected", "ambiguous", "delivered_unique", "duplicates", "undelivered")
    rows = [[c["id"], *(_n(c["audit"].get(k)) for k in keys)] for c in run.cells]
    return [
        "## Task audit during the load",
        "",
        "A Locust run: the queue was not drained afterwards, so undelivered tasks may simply still be queued "
        "(nothing is called lost). "
        + ("" if any(c["audit"] for c in run.cells) else "Run with --audit true to count tasks."),
        "",
        _table(["cell", "enqueued ok", "rejected", "ambiguous", "delivered", "duplicates", "undelivered"], rows),
        "",
    ]


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}blockquote{background:#fee;margin:1em 0;padding:4px 12px}"
)


def to_html(md: str, base: Path, title: str = "TaskQueue benchmark report") -> str:
    """report.md as one self-contained HTML page: CommonMark + tables rendered by markdown-it-py (raw HTML
    in the Markdown is escaped), chart images inlined as base64."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(md)
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if isinstance(src, str) and not src.startswith("data:") and (base / src).is_file():
                mime = "image/svg+xml" if src.endswith(".svg") else "image/png"
                child.attrSet("src", f"data:{mime};base64,{base64.b64encode((base / src).read_bytes()).decode()}")
    body = parser.renderer.render(tokens, parser.options, {})
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


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

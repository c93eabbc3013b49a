"""``bench report``: report.md and a self-contained report.html from a run folder (results
contract only): headline findings written from the numbers, tables, effective config, charts."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from .runs import Run, error_count, load_run
from .stats import ratio


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _enqueue(cell: dict[str, Any]) -> dict[str, Any]:
    return cell["ops"].get("enqueue") or cell["ops"].get("enqueue_many") or {}


def findings(run: Run) -> list[str]:
    """Plain-language headlines, each backed by a number in the tables below."""
    out: list[str] = []
    cells = run.cells
    plain = [c for c in cells if c["params"].get("fault") == "none" and str(c["params"].get("maxmemory")) in ("0", "")]
    for sa in [c for c in plain if c["params"]["backend"] == "standalone"][:1]:
        for cl in [
            c for c in plain if c["params"]["backend"] == "cluster" and c["params"]["users"] == sa["params"]["users"]
        ][:1]:
            for op, name in (("enqueue", "enqueue throughput"), ("ack", "dequeue+ack throughput")):
                r = ratio(cl["ops"].get(op, {}).get("ops_per_s"), sa["ops"].get(op, {}).get("ops_per_s"))
                if r:
                    out.append(
                        f"cluster {name} is {r:.2f}× standalone at {sa['params']['users']} users "
                        f"(pool {cl['params']['pool_size']}, same run; on one 2-core host)"
                    )
            r = ratio(_enqueue(cl).get("p99_us"), _enqueue(sa).get("p99_us"))
            if r:
                out.append(
                    f"cluster enqueue p99 is {r:.2f}× standalone ({_n(_enqueue(cl).get('p99_us'))} vs "
                    f"{_n(_enqueue(sa).get('p99_us'))} µs)"
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
                    f"{r:.1f}× that of pool {big['params']['pool_size']} (waiting for a connection)"
                )
    for c in cells:
        if str(c["params"].get("maxmemory")) in ("0", ""):
            continue
        a, policy = c["audit"], c["params"]["maxmemory_policy"]
        if a.get("lost"):
            out.append(
                f"{policy} lost {a['lost']:,} of {a.get('enqueued_ok', 0):,} acknowledged tasks "
                f"(maxmemory {c['params']['maxmemory']}): never use it for a queue"
            )
        else:
            out.append(
                f"{policy} lost 0 tasks and rejected {a.get('rejected', 0):,} enqueues with OOM "
                f"(maxmemory {c['params']['maxmemory']}): producers see QueueFull instead of silent loss"
            )
    for c in cells:
        f = c.get("fault")
        if not f:
            continue
        a = c["audit"]
        lag_s = f.get("client_recovery_lag_s")
        lag = ""
        if lag_s is not None:  # the watcher polls another node every 50 ms: small negatives are gossip delay
            lag = (
                f" clients back {lag_s:.2f} s after the promotion was seen;"
                if lag_s >= 0.05
                else " clients back as soon as the promotion was seen;"
            )
        out.append(
            f"{f['kind']} of a master: {f.get('unavailable_s') or 0:.1f} s unavailable to clients,{lag} "
            f"{a.get('lost', 0):,} tasks lost, {a.get('duplicates', 0):,} duplicated, "
            f"{a.get('ambiguous', 0):,} ambiguous" + ("" if f.get("restore_ok") else " — RESTORE FAILED")
        )
    for c in cells:
        if c.get("unstable"):
            out.append(f"cell [{c['id']}] is unstable: repeats spread more than 10 % in {', '.join(c['unstable'])}")
    return out


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


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
    parts += ["## Findings", ""] + [f"- {f}" for f in findings(run)] + [""]
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
            c["id"] + (" (drain timed out: LOST is an upper bound)" if c["audit"].get("lost_is_upper_bound") else ""),
            *(
                _n(c["audit"].get(k))
                for k in (
                    "enqueued_ok",
                    "rejected",
                    "ambiguous",
                    "delivered_unique",
                    "duplicates",
                    "lost",
                    "lost_ambiguous",
                    "delivered_after_reject",
                    "still_queued",
                )
            ),
        ]
        for c in run.cells
    ]
    parts += [
        "## Task audit: every task accounted for",
        "",
        "Every task of the cell, warm-up included, after the queue was drained.",
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
        keys = [
            "injected_at_s",
            "node_failed_at_s",
            "promoted_at_s",
            "first_error_at_s",
            "last_error_at_s",
            "recovered_at_s",
            "unavailable_s",
            "time_to_recovery_s",
            "client_recovery_lag_s",
        ]
        rows = [
            [
                c["id"],
                c["fault"]["kind"],
                *(_n(c["fault"].get(k), 2) for k in keys),
                "ok" if c["fault"].get("restore_ok") else "FAILED",
            ]
            for c in faulted
        ]
        parts += [
            "## Fault timelines (seconds from load start)",
            "",
            _table(
                [
                    "cell",
                    "kind",
                    "injected",
                    "node failed",
                    "promoted",
                    "first error",
                    "last error",
                    "recovered",
                    "unavailable",
                    "to recovery",
                    "client lag",
                    "restore",
                ],
                rows,
            ),
            "",
        ]
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
    (run.path / "report.html").write_text(to_html(text, run.path))
    return run.path / "report.md"


def to_html(md: str, base: Path) -> str:
    """Minimal Markdown -> HTML (headings, lists, tables, images inlined as base64): one file."""
    out, in_table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set(line.replace("|", "")) <= {"-"}:
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if m := re.match(r"!\[(.*?)\]\((.*?)\)", line):
            data = base64.b64encode((base / m.group(2)).read_bytes()).decode()
            out.append(f'<p><img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{html.escape(line[2:])}</blockquote>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}img{max-width:100%}"
        "blockquote{background:#fee;padding:8px}"
    )
    return f"<!doctype html><meta charset='utf-8'><title>report</title><style>{style}</style>\n" + "\n".join(out)


def compare(a_dir: Path, b_dir: Path) -> list[dict[str, Any]]:
    """B/A per cell and operation (ops/s, p99) from repeat medians, with noise-aware verdicts."""
    from .stats import classify_change

    a, b = load_run(a_dir), load_run(b_dir)
    b_cells = {c["id"]: c for c in b.cells}
    rows = []
    for ca in a.cells:
        cb = b_cells.get(ca["id"])
        if cb is None:
            continue
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
                        "verdict": classify_change(oa, ob, key, higher),
                    }
                )
    return rows

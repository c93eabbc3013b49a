"""Rich tables the CLI prints: backend status, run summaries, the quick comparison. Presentation only."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from .backend_kinds import Backend, ClusterBackend, cluster_info
from .cells import fault_timeline, fault_windows, lost, rate_shortfall
from .errors import UsageError
from .report_tables import lost_text
from .stats import latency_cell


def status_table(backend: Backend) -> Table:
    table = Table(title=f"{backend.kind}")
    for col in ("node", "pid", "role", "slots", "used memory", "maxmemory", "policy", "state"):
        table.add_column(col)
    topology = {}
    if isinstance(backend, ClusterBackend):
        try:
            topology = {n.address: n for n in backend.topology()}
        except RuntimeError:
            topology = {}
    for server in backend.servers:
        if not server.is_alive():
            table.add_row(server.address, str(server.pid), "-", "-", "-", "-", "-", "[red]down[/]")
            continue
        with server.client() as r:
            info = r.info()
            state = "ok"
            if isinstance(backend, ClusterBackend):
                state = cluster_info(r).get("cluster_state", "?")
        node = topology.get(server.address)
        table.add_row(
            server.address,
            str(server.pid),
            info.get("role", "?"),
            str(node.slot_count) if node else "-",
            str(info.get("used_memory_human")),
            str(info.get("maxmemory_human")),
            str(info.get("maxmemory_policy")),
            state,
        )
    return table


def external_table(redis_url: str | None, cluster_nodes: str | None) -> Table:
    """Read-only INFO of a user's own servers: never flushes, configures or stops anything."""
    import redis

    from taskqueue.connection import server_version
    from taskqueue.settings import parse_nodes, redact_url

    targets: list[tuple[str, redis.Redis]] = []
    try:
        if redis_url:
            targets.append((redact_url(redis_url), redis.Redis.from_url(redis_url, socket_timeout=2)))
        for host, port in parse_nodes(cluster_nodes) if cluster_nodes else []:
            targets.append((f"{host}:{port}", redis.Redis(host=host, port=port, socket_timeout=2)))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    table = Table(title="external (read-only)")
    for col in ("node", "version", "role", "used memory", "maxmemory", "policy"):
        table.add_column(col)
    for name, client in targets:
        try:
            info = client.info()
        except redis.RedisError as exc:
            table.add_row(name, f"[red]{exc}[/]", "", "", "", "")
            continue
        finally:
            client.close()
        table.add_row(
            name,
            str(server_version(info)),
            str(info.get("role")),
            str(info.get("used_memory_human")),
            str(info.get("maxmemory_human")),
            str(info.get("maxmemory_policy")),
        )
    return table


def demo_table(results: dict) -> Table:
    table = Table(title="TaskQueue vs raw redis-py, same client, same run (median ops/s of repeats)")
    for col in ("backend", "operation", "ops/s", "min..max", "vs raw", "server", "pool"):
        table.add_column(col, justify="right")
    for kind, (rates, described) in results.items():
        by_name = {r.name: r for r in rates}
        ref = {"enqueue": "raw LPUSH", "dequeue+ack": "raw LMOVE+LREM"}
        for rate in rates:
            ratio = f"{rate.ops_per_s / by_name[ref[rate.name]].ops_per_s:.2f}x" if rate.name in ref else ""
            table.add_row(
                kind,
                rate.name,
                f"{rate.ops_per_s:,.0f}",
                f"{rate.low:,.0f}..{rate.high:,.0f}",
                ratio,
                f"{described['server_name']} {described['server_version']}",
                str(described["pool_size"]),
            )
    if {"standalone", "cluster"} <= results.keys():
        s = {r.name: r.ops_per_s for r in results["standalone"][0]}
        c = {r.name: r.ops_per_s for r in results["cluster"][0]}
        table.caption = " · ".join(f"cluster/standalone {k}: {c[k] / s[k]:.2f}x" for k in ("enqueue", "dequeue+ack"))
    return table


def run_table(summary: dict) -> Table:
    table = Table(title=f"{summary['scenario']}: per cell (median of repeats; µs)")
    for col in (
        "cell",
        "enqueue/s",
        "enq p50",
        "enq p99",
        "deq+ack/s",
        "errors (after warm-up)",
        "ok",
        "rejected",
        "ambig.",
        "lost",
        "dup",
        "fault: unavail. s (no success)",
        "note",
    ):
        table.add_column(col, justify="right")
    for cell in summary["cells"]:
        ops, audit, fault = cell["ops"], cell["audit"], fault_timeline(cell) or {}
        enq = ops.get("enqueue") or ops.get("enqueue_many") or {}
        errors = sum(sum(kinds.values()) for kinds in cell["errors"].values())
        note = ", ".join(
            filter(
                None,
                [
                    "unstable" if cell["unstable"] else "",
                    "" if cell["complete"] else "incomplete",
                    "[red]rate NOT reached[/]" if rate_shortfall(cell) else "",
                    "drain timed out (lost ≤)" if lost(audit)[1] else "",
                    "[yellow]network off its configured RTT[/]" if (cell.get("network") or {}).get("flagged") else "",
                ],
            )
        )
        table.add_row(
            escape(cell["id"]),
            num(enq.get("ops_per_s")),
            latency_cell(enq, "p50_us", num),
            latency_cell(enq, "p99_us", num),
            num((ops.get("ack") or {}).get("ops_per_s")),
            f"{errors:,}",
            f"{audit.get('enqueued_ok', 0):,}",
            f"{audit.get('rejected', 0):,}",
            f"{audit.get('ambiguous', 0):,}",
            lost_text(audit),
            f"{audit.get('duplicates', 0):,}",
            num(fault_windows(fault)[0], 2),
            note,
        )
    return table


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"

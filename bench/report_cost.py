"""``bench report``'s sections on what a task costs (a cell's ``cost``, bench.cost) and, for a capacity run,
the queue's own server-side ceiling next to the harness-bound rate (a configuration's ``ceiling``,
bench.ceiling). Pure: no Redis."""

from __future__ import annotations

from typing import Any

from .report_tables import n, table


def _us(value: Any) -> str:
    return n(value, 1)


def cost_section(cells: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in cells:
        cost = c.get("cost")
        if not cost:
            continue
        per_op = cost.get("per_op") or {}
        split = " / ".join(_us((per_op.get(op) or {}).get("us_per_op")) for op in ("enqueue", "dequeue", "ack"))
        client = _us(cost.get("client_us_per_task"))
        if cost.get("client_cores") is not None:
            client += f" ({cost['client_cores']:.2f} cores)"
        share = cost.get("busiest_master_share")
        rows.append(
            [
                c["id"],
                _us(cost.get("server_us_per_task")),
                split,
                _us(cost.get("replica_us_per_task")),
                client,
                _us(cost.get("wait_us_per_task")),
                "–" if share is None else f"{100 * share:.0f} % of {n(cost.get('masters'))}",
                n(cost.get("predicted_ceiling")),
            ]
        )
    if not rows:
        return []
    headers = ["cell", "server µs/task", "enqueue / dequeue / ack µs", "replicas µs/task", "client µs/task"]
    headers += ["wait µs/task", "busiest master", "naive server ceiling tasks/s"]
    return [
        "## What a task costs (µs per task: enqueue + dequeue + ack; medians of repeats)",
        "",
        table(headers, rows),
        "",
        "Server: the masters' own time for the commands the client sent (INFO commandstats, reset when the cell "
        "was prepared, read at the end of the load before the drain; EVALSHA holds the time of the commands its "
        "script ran, which are not added again; the harness's INFO, probes and CONFIG are left out). Each "
        "operation's time is divided by its own count, warm-up included; the split between the operations "
        "shares the scripts' Lua overhead per call (an estimate, the total is exact). Replicas: what applying "
        "the masters' writes cost them, apart. Client: CPU seconds of the Locust processes after the warm-up "
        "per completed task. Wait: the clients' mean service time minus the server's time, per operation, "
        "summed: the network, the server's socket I/O and queueing behind other clients, the connection pool, "
        "redis-py and the load process itself (a dequeue also waits for work when the queue is empty). Naive "
        "ceiling: 10⁶ / server µs per task on each master core, times the masters (even spread, no I/O). The "
        "server's µs are wall time inside a command: on a host with fewer cores than busy processes, a server "
        "descheduled mid-command counts that time too.",
        "",
    ]


def _rate(value: Any, lower: Any = False) -> str:
    return "–" if value is None else ("≥ " if lower else "") + n(value)


def _processes(sides: dict[str, Any]) -> str:
    if sides.get("load_processes_needed") is None:
        return "–"
    text = f"{sides['load_processes_needed']} ({_us(sides.get('client_us_per_task'))} µs/task at capacity)"
    cheap = sides.get("cheapest_step") or {}
    if cheap.get("load_processes_needed") and cheap.get("client_us_per_task") != sides.get("client_us_per_task"):
        text += f"; {cheap['load_processes_needed']} at {n(cheap.get('rate'))}/s ({_us(cheap['client_us_per_task'])})"
    return text


def ceiling_section(summary: dict[str, Any]) -> list[str]:
    configs = [c for c in summary.get("configurations") or [] if c.get("ceiling")]
    if not configs:
        return []
    rows = []
    for c in configs:
        ceil = c["ceiling"]
        sides = ceil.get("sides") or {}
        if ceil.get("skipped"):
            rows.append([c["id"], _rate(sides.get("harness_rate"), sides.get("harness_lower_bound")), ceil["skipped"]])
            rows[-1] += ["–"] * 6
            continue
        pred = ceil.get("predicted") or {}
        per_master = ", ".join(f"{n(m.get('tasks_per_s'))}" for m in ceil.get("masters") or [])
        cores = ", ".join(f"{m['master_cores']:.2f}" for m in ceil.get("masters") or [] if m.get("master_cores"))
        ratio = " / ".join("–" if pred.get(k) is None else f"{pred[k]:.2f}" for k in ("ratio_benchmark", "ratio_load"))
        together = (ceil.get("parallel") or {}).get("tasks_per_s")
        rows.append(
            [
                c["id"],
                _rate(sides.get("harness_rate"), sides.get("harness_lower_bound")),
                n(ceil.get("tasks_per_s"))
                + (f" (per master {per_master})" if len(ceil.get("masters") or []) > 1 else ""),
                n(together) if together else "–",
                n(ceil.get("unpipelined_tasks_per_s")),
                f"{ceil.get('clients')} × {ceil.get('pipeline')}"
                + ("" if ceil.get("saturated") else " (still growing)"),
                ratio,
                cores or "–",
                _processes(sides),
            ]
        )
    headers = ["configuration", "harness (Locust) tasks/s", "server-side ceiling tasks/s", "all masters at once"]
    headers += ["without pipelining", "clients × pipeline", "measured / predicted (bench µs / load µs)"]
    headers += ["master cores", "load processes to reach it"]
    return [
        "## Two sides: the harness's rate and the queue's own ceiling",
        "",
        table(headers, rows),
        "",
        "Ceiling: redis-benchmark (C) drives the queue's own Lua scripts by EVALSHA on each master, on the keys of "
        "a partition it owns: the enqueue script with unique ids, the dequeue script on the filled queue, the ack "
        "script on leased tasks; clients and pipeline raised until the rate grew less than 5 %. A task is one of "
        "each on one master, whose thread runs them in turn: 1 / (1/enqueue + 1/dequeue + 1/ack) tasks/s. A "
        "cluster's figure adds its masters measured one at a time (a core each); all masters at once is what "
        "this host gave. Without pipelining: one command per round trip, as TaskQueue sends them. Predicted: "
        "10⁶ / the scripts' µs per task (commandstats under redis-benchmark, and under the load at capacity) "
        "per master; below 1, the server's time outside command execution (socket I/O, parsing, the event "
        "loop). Load processes: the ceiling × the client CPU µs per task measured at capacity, one core each, "
        "and at the step whose load spent the least CPU per task (the CPU per task falls as the rate grows: fewer "
        "empty dequeues per task).",
        "",
    ]

"""What a task costs, taken apart: the servers' own time (``INFO commandstats``), the load processes' CPU
and the time a call spends outside the server's command execution. Pure: no Redis, no I/O.

How the servers' time is counted (found by experiment on Redis 7.0, see tests/test_cost.py):

- A command a Lua script runs is counted under its own ``cmdstat_<name>`` too, and its time is already
  inside the ``evalsha`` that ran it: adding both would count it twice. The client sends EVALSHA (every
  enqueue, dequeue, ack, nack, reaper call), BLMOVE (the list engine's wait for work), XREADGROUP (the
  stream engine's wait), SCRIPT LOAD (after NOSCRIPT) and XGROUP CREATE: only those are summed
  (``QUEUE_COMMANDS``). A blocked BLMOVE/XREADGROUP is counted once, for its execution, not its wait.
- Replicas run what their master propagates: every script's writes as one MULTI/EXEC (EXEC's time holds
  its commands'), BLMOVE as LMOVE. Their time is the replicas' own figure, never added to the masters'.
- The script-inner commands (``INNER``) are not summed but tell the scripts apart: one HSETNX per
  enqueue, TIME per dequeue and reaper call, ZRANGEBYSCORE per reaper call, two HDEL per list ack, one
  XACK per stream ack, one XAUTOCLAIM per stream dequeue. EVALSHA's time is split between the operations
  by their scripts' inner commands' time plus an equal share per call of the rest (Lua, argument
  handling): an estimate; the total is exact.
- The harness's own commands (``HARNESS``: INFO sampling, the depth/in-flight probe's LLEN/ZCARD/XLEN/
  XPENDING, CONFIG, CLUSTER, HELLO, COMMAND …) are left out by name. XPENDING is also what the stream
  engine's reaper sends: left out with the probe's. Anything else is listed as ``unclassified``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPS = ("enqueue", "dequeue", "ack")
SCRIPT_CALLS = frozenset({"evalsha", "evalsha_ro", "eval", "eval_ro"})
# What the queue's client sends (masters) and what replicas run for it; xreadgroup is split by engine.
QUEUE_COMMANDS = (
    SCRIPT_CALLS | {"blmove", "xreadgroup", "script|load", "xgroup|create", "wait"} | {"multi", "exec", "lmove"}
)
INNER = frozenset(
    {"hsetnx", "lpush", "rpop", "hget", "zadd", "hincrby", "zrem", "hdel", "time", "zrangebyscore", "rpush"}
    | {"hmget", "hset"}  # enqueue_many's
    | {"xadd", "xautoclaim", "xreadgroup", "xpending", "xack", "xdel", "xclaim", "xgroup|setid"}
)
HARNESS_FAMILIES = frozenset({"config", "cluster", "command", "client", "latency", "slowlog", "memory", "debug"})
HARNESS = frozenset(
    {"info", "ping", "hello", "select", "llen", "zcard", "xlen", "xpending", "replconf", "psync", "sync"}
    | {"flushall", "flushdb", "scan", "dbsize", "readonly", "readwrite", "auth", "echo", "del", "unlink"}
)


@dataclass(frozen=True)
class CmdStat:
    calls: int
    usec: int
    failed: int = 0
    rejected: int = 0

    def __add__(self, other: CmdStat) -> CmdStat:
        return CmdStat(
            self.calls + other.calls, self.usec + other.usec, self.failed + other.failed, self.rejected + other.rejected
        )


@dataclass(frozen=True)
class NodeStats:
    """One node's INFO commandstats (and its role) as read at one moment."""

    address: str
    role: str  # master, slave (Redis' word), or unreachable
    commands: Mapping[str, CmdStat]


def parse_info(text: str) -> tuple[str, dict[str, CmdStat]]:
    """The ``role`` and ``cmdstat_*`` lines of INFO text (sections replication + commandstats)."""
    role = "unknown"
    commands: dict[str, CmdStat] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("role:"):
            role = line.split(":", 1)[1]
        elif line.startswith("cmdstat_"):
            name, _, fields = line[len("cmdstat_") :].partition(":")
            values = dict(kv.split("=", 1) for kv in fields.split(",") if "=" in kv)
            try:
                commands[name.lower()] = CmdStat(
                    int(values["calls"]),
                    int(values["usec"]),
                    int(values.get("failed_calls", 0)),
                    int(values.get("rejected_calls", 0)),
                )
            except (KeyError, ValueError):
                raise ValueError(f"cannot read INFO commandstats line {line!r}") from None
    return role, commands


def kind_of(name: str) -> str:
    """queue, inner (run by a script; on a replica by a MULTI/EXEC), harness or unclassified."""
    if name in QUEUE_COMMANDS:
        return "queue"
    if name in INNER:
        return "inner"
    if name in HARNESS or name.split("|", 1)[0] in HARNESS_FAMILIES:
        return "harness"
    return "unclassified"


def _get(commands: Mapping[str, CmdStat], name: str) -> CmdStat:
    return commands.get(name, CmdStat(0, 0))


def xreadgroup_outer(commands: Mapping[str, CmdStat], engine: str) -> CmdStat:
    """The XREADGROUP calls the client sent itself (the stream engine's blocking wait). Its dequeue script
    calls XREADGROUP after every XAUTOCLAIM that found nothing, so at most one per XAUTOCLAIM is inner
    (taken as exactly one: redeliveries are rare); their time is split by calls."""
    x = _get(commands, "xreadgroup")
    if engine != "stream" or not x.calls:
        return x if engine != "stream" else CmdStat(0, 0)
    outer = max(0, x.calls - _get(commands, "xautoclaim").calls)
    return CmdStat(outer, round(x.usec * outer / x.calls))


def queue_time(commands: Mapping[str, CmdStat], engine: str) -> CmdStat:
    """The node's time for the queue: the commands the client sent (a master) or the propagated
    transactions (a replica), never a script-inner command on top of its script."""
    total = CmdStat(0, 0)
    for name, stat in commands.items():
        if name in QUEUE_COMMANDS:
            total = total + (xreadgroup_outer(commands, engine) if name == "xreadgroup" else stat)
    return total


def split_ops(commands: Mapping[str, CmdStat], engine: str = "list", *, batched: bool = False) -> dict[str, CmdStat]:
    """A master's queue time per operation (enqueue, dequeue, ack, background = reaper, nack, NOSCRIPT
    retries, SCRIPT LOAD, XGROUP CREATE). Calls are script calls (a dequeue's waits are its BLMOVE or
    XREADGROUP calls, added to dequeue; an enqueue's WAIT, with ``sync_replicas``, to enqueue); the usec
    add up to :func:`queue_time` exactly. ``batched`` (enqueue_many, whose inner commands go per task or per
    chunk): the enqueue calls are the script calls no other operation made, NOSCRIPT retries included."""
    c = commands
    scripts = CmdStat(0, 0)
    for name in SCRIPT_CALLS:
        scripts = scripts + _get(c, name)
    inner_usec: dict[str, float] = dict.fromkeys((*OPS, "background"), 0.0)
    if engine == "stream":
        calls = {
            "enqueue": _get(c, "hsetnx").calls,
            "dequeue": _get(c, "xautoclaim").calls,
            "ack": _get(c, "xack").calls,
        }
        x = _get(c, "xreadgroup")
        inner_x = x.usec - xreadgroup_outer(c, engine).usec
        inner_usec["enqueue"] = sum(_get(c, n).usec for n in ("hsetnx", "xadd", "hmget", "hset"))
        inner_usec["dequeue"] = _get(c, "xautoclaim").usec + inner_x
        inner_usec["ack"] = _get(c, "xack").usec + _get(c, "xdel").usec + _get(c, "hdel").usec
        inner_usec["background"] = _get(c, "xclaim").usec  # nack
        wait = xreadgroup_outer(c, engine)
    else:
        reaper = _get(c, "zrangebyscore").calls
        time_ = _get(c, "time")
        calls = {"enqueue": _get(c, "hsetnx").calls, "dequeue": max(0, time_.calls - reaper)}
        calls["ack"] = _get(c, "hdel").calls // 2  # the list ack deletes from two hashes, nothing else does
        zrem = _get(c, "zrem")
        ack_zrem = zrem.usec * min(1.0, calls["ack"] / zrem.calls) if zrem.calls else 0.0
        deq_time = time_.usec * calls["dequeue"] / time_.calls if time_.calls else 0.0
        inner_usec["enqueue"] = sum(_get(c, n).usec for n in ("hsetnx", "lpush", "hmget", "hset"))
        inner_usec["dequeue"] = sum(_get(c, n).usec for n in ("rpop", "hget", "zadd", "hincrby")) + deq_time
        inner_usec["ack"] = _get(c, "hdel").usec + ack_zrem
        inner_usec["background"] = (
            _get(c, "zrangebyscore").usec + _get(c, "rpush").usec + (zrem.usec - ack_zrem) + (time_.usec - deq_time)
        )
        wait = _get(c, "blmove")
    if batched:
        reaper_calls = 0 if engine == "stream" else _get(c, "zrangebyscore").calls
        calls["enqueue"] = max(0, scripts.calls - calls["dequeue"] - calls["ack"] - reaper_calls)
    accounted = sum(calls.values())
    calls["background"] = max(0, scripts.calls - accounted)
    overhead = max(0.0, scripts.usec - sum(inner_usec.values()))
    per_call = overhead / scripts.calls if scripts.calls else 0.0
    usec = {op: inner_usec[op] + calls[op] * per_call for op in inner_usec}
    # Rounding and an overhead clamped at 0 leave a remainder: background takes it, so the sum is exact.
    out = {op: CmdStat(calls[op], math.floor(usec[op])) for op in OPS}  # floored: the remainder is >= 0
    out["dequeue"] = out["dequeue"] + wait
    out["enqueue"] = out["enqueue"] + _get(c, "wait")
    others = sum(_get(c, n).calls for n in ("script|load", "xgroup|create"))
    rest = queue_time(c, engine).usec - sum(s.usec for s in out.values())  # SCRIPT LOAD, XGROUP CREATE too
    out["background"] = CmdStat(calls["background"] + others, max(0, rest))
    return out


def _per(value: float, n: float) -> float | None:
    return round(value / n, 3) if n else None


def task_cost(
    nodes: Iterable[NodeStats],
    counts: Mapping[str, int],
    engine: str = "list",
    mean_us: Mapping[str, float | None] | None = None,
    *,
    batched: bool = False,
) -> dict[str, Any]:
    """What one task (enqueue + dequeue + ack) cost the servers, from their commandstats over a window in
    which the clients completed ``counts[op]`` operations (successful ones, warm-up included). Each
    operation's server time is divided by its own count (a backlog that grows has more enqueues than acks);
    background time goes per ack. ``mean_us``: the clients' mean service time per operation, for the time
    outside the server's command execution (``wait_us``)."""
    nodes = list(nodes)
    masters = [n for n in nodes if n.role == "master"]
    replicas = [n for n in nodes if n.role not in ("master", "unreachable")]
    acks = int(counts.get("ack") or 0)
    ops: dict[str, CmdStat] = {op: CmdStat(0, 0) for op in (*OPS, "background")}
    per_node: dict[str, dict[str, Any]] = {}
    unclassified: dict[str, CmdStat] = {}
    harness = CmdStat(0, 0)
    for node in nodes:
        q = queue_time(node.commands, engine)
        per_node[node.address] = {
            "role": node.role,
            "server_us": q.usec,
            "calls": q.calls,
            "us_per_task": _per(q.usec, acks),
        }
        for name, stat in node.commands.items():
            kind = kind_of(name)
            if kind == "harness":
                harness = harness + stat
            elif kind == "unclassified":
                unclassified[name] = unclassified.get(name, CmdStat(0, 0)) + stat
        if node in masters:
            for op, stat in split_ops(node.commands, engine, batched=batched).items():
                ops[op] = ops[op] + stat
    master_us = sum(per_node[n.address]["server_us"] for n in masters)
    for n in masters:
        per_node[n.address]["share"] = round(per_node[n.address]["server_us"] / master_us, 4) if master_us else None
    per_op: dict[str, dict[str, Any]] = {}
    server_per_task: float | None = 0.0
    wait_per_task: float | None = 0.0
    for op in OPS:
        count = int(counts.get(op) or 0)
        us_per_op = _per(ops[op].usec, count)
        entry: dict[str, Any] = {
            "count": count,
            "calls": ops[op].calls,
            "server_us": ops[op].usec,
            "us_per_call": _per(ops[op].usec, ops[op].calls),
            "calls_per_op": _per(ops[op].calls, count),  # above 1: empty leases and waits (a dequeue)
            "us_per_op": us_per_op,
        }
        mean = (mean_us or {}).get(op)
        entry["mean_us"] = mean
        entry["wait_us"] = None if mean is None or us_per_op is None else round(mean - us_per_op, 3)
        per_op[op] = entry
        server_per_task = None if server_per_task is None or us_per_op is None else server_per_task + us_per_op
        wait_per_task = None if wait_per_task is None or entry["wait_us"] is None else wait_per_task + entry["wait_us"]
    background = _per(ops["background"].usec, acks)
    per_op["background"] = {
        "calls": ops["background"].calls,
        "server_us": ops["background"].usec,
        "us_per_task": background,
    }
    if server_per_task is not None and background is not None:
        server_per_task += background
    busiest = max((per_node[n.address]["share"] or 0.0 for n in masters), default=None)
    replica_us = sum(per_node[n.address]["server_us"] for n in replicas)
    return {
        "engine": engine,
        "tasks": acks,
        "counts": {op: int(counts.get(op) or 0) for op in OPS},
        "server_us": master_us,
        "server_us_per_task": None if server_per_task is None else round(server_per_task, 3),
        "server_us_per_completed_task": _per(master_us, acks),
        "replica_us_per_task": _per(replica_us, acks) if replicas else None,
        "masters": len(masters),
        "busiest_master_share": busiest,
        "wait_us_per_task": None if wait_per_task is None else round(wait_per_task, 3),
        "per_op": per_op,
        "per_node": per_node,
        "harness": {"calls": harness.calls, "usec": harness.usec},
        "unclassified": {k: {"calls": v.calls, "usec": v.usec} for k, v in sorted(unclassified.items())},
        "predicted_ceiling": predicted_ceiling(server_per_task, len(masters)),
    }


def predicted_ceiling(server_us_per_task: float | None, masters: int) -> float | None:
    """Naively: each master core runs ``1e6 / µs per task`` tasks a second, and the masters add up (as if
    tasks spread evenly, and the server did nothing but execute commands: no network I/O, no parsing)."""
    if not server_us_per_task or server_us_per_task <= 0 or masters < 1:
        return None
    return round(1e6 / server_us_per_task * masters, 1)


def client_cost(cpu_points: list[tuple[float, float]], acks_per_s: float | None) -> dict[str, Any]:
    """CPU of the load processes (``(t_s, cpu_s)`` samples over the measured window, user + system of the
    Locust process tree) per completed task: cores used / acks per second."""
    out: dict[str, Any] = {"client_cores": None, "client_us_per_task": None}
    if len(cpu_points) < 2:
        return out
    (t0, c0), (t1, c1) = cpu_points[0], cpu_points[-1]
    if t1 <= t0:
        return out
    cores = max(0.0, (c1 - c0) / (t1 - t0))
    out["client_cores"] = round(cores, 3)
    if acks_per_s:
        out["client_us_per_task"] = round(cores / acks_per_s * 1e6, 3)
    return out


def processes_needed(ceiling: float | None, client_us_per_task: float | None) -> int | None:
    """Load processes (one core each: a Locust process is one Python thread) it takes to offer ``ceiling``
    tasks/s at ``client_us_per_task`` CPU µs each."""
    if not ceiling or not client_us_per_task:
        return None
    return max(1, math.ceil(ceiling * client_us_per_task / 1e6))


HEADLINE = (
    "server_us_per_task",
    "server_us_per_completed_task",
    "replica_us_per_task",
    "client_us_per_task",
    "client_cores",
    "wait_us_per_task",
    "busiest_master_share",
    "predicted_ceiling",
)


def combine(costs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """A cell's cost from its repeats': the median of each figure (each repeat keeps its own in full)."""
    done = [c for c in costs if c]
    if not done:
        return None

    def med(values: list[Any]) -> float | None:
        vals = [v for v in values if v is not None]
        return round(statistics.median(vals), 3) if vals else None

    out: dict[str, Any] = {key: med([c.get(key) for c in done]) for key in HEADLINE}
    out.update(repeats=len(done), engine=done[0].get("engine"), masters=done[0].get("masters"))
    out["per_op"] = {
        op: {
            k: med([(c.get("per_op") or {}).get(op, {}).get(k) for c in done])
            for k in ("us_per_call", "calls_per_op", "us_per_op", "mean_us", "wait_us")
        }
        for op in OPS
    }
    return out

"""The queue's own ceiling, without the Python harness: ``redis-benchmark`` (the server's C client, shipped
with redis-server) drives the queue's real Lua scripts, loaded with SCRIPT LOAD on each master, by EVALSHA.

Per master, on the keys of a partition that master owns (``tq:{ceiling.<p>}:…``, the queue's own layout):

1. concurrency: the enqueue script at (clients, pipeline) steps up ``LADDER`` until the rate grows by less
   than 5 % (bounded: at most the ladder's six steps); the best step is used from then on;
2. per round (``repeats``, interleaved): the enqueue script ``requests`` times with unique ids
   (``t-__rand_int__-__rand_int__``: two random 12-digit numbers), then the dequeue script once per queued
   task (every call finds one), then the ack script on ids drawn at random (``-r``) from ``ACK_SPACE`` ×
   its requests tasks enqueued and leased beforehand by the queue's own enqueue_many and dequeue scripts
   (a drawn id already acked finds nothing: the share that found its task is measured, ``hit_share``);
   each run with the master's counters reset, its commandstats (µs per call) and CPU (INFO cpu) read
   after; then the same without pipelining (one command per round trip, as TaskQueue's calls are);
3. a cluster's masters alone one after another (their sum: the cluster with a core per master), then all at
   once, one redis-benchmark per master (what this host gives).

The task rate composes the three scripts' rates (bench.ceiling_calc). Not for an external backend (its
nodes are not reached one by one) nor the stream engine (its ack needs the entry ids the server made).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from redis.crc import key_slot

from taskqueue import scripts
from taskqueue.keys import PartitionKeys, partition_keys

from . import ceiling_calc, children, commandstats
from .backend_kinds import ClusterBackend
from .servers import ServerNode

LADDER = ((50, 1), (50, 4), (50, 16), (100, 32), (100, 64), (200, 128))  # (clients, pipeline), tried in order
UNPIPELINED = (50, 1)
QUEUE = "ceiling"
LEASE_MS = 600_000  # no lease runs out during a measurement (no reaper runs anyway)
FILL_BATCH = 1000
ACK_SPACE = 4  # ack ids drawn from 4 x its requests leased tasks: ~88 % find theirs
RUN_TIMEOUT_S = 600.0
MAX_PARTITION_SEARCH = 1024
SCRIPTS = {"enqueue": scripts.ENQUEUE, "dequeue": scripts.DEQUEUE, "ack": scripts.ACK, "fill": scripts.ENQUEUE_MANY}


@dataclass
class Master:
    server: ServerNode
    partition: int
    keys: PartitionKeys
    shas: dict[str, str]

    @property
    def address(self) -> str:
        return self.server.address


def benchmark_binary() -> str | None:
    return shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")


def masters_of(backend: Any) -> list[Master]:
    """Every master with the first partition of queue ``ceiling`` whose slot it owns, scripts loaded."""
    if isinstance(backend, ClusterBackend):
        out = []
        for node in (n for n in backend.topology() if n.is_master and n.slots and not n.failed):
            p = next(
                p for p in range(MAX_PARTITION_SEARCH) if node.owns(key_slot(partition_keys(QUEUE, p).ready.encode()))
            )
            out.append(Master(backend.server_at(node.address), p, partition_keys(QUEUE, p), {}))
    else:
        out = [Master(backend.servers[0], 0, partition_keys(QUEUE, 0), {})]
    for m in out:
        with m.server.client(5.0) as r:
            for name, text in SCRIPTS.items():
                sha = str(r.script_load(text))
                if sha != hashlib.sha1(text.encode()).hexdigest():  # what the queue's EVALSHA sends
                    raise RuntimeError(f"{m.address}: SCRIPT LOAD returned {sha} for the {name} script")
                m.shas[name] = sha
    return sorted(out, key=lambda m: m.address)


def record(payload_bytes: int) -> bytes:
    """A task record as the queue writes it (8-byte enqueue time, then the payload), with no NUL byte: it
    travels as a command-line argument."""
    header = time.time_ns().to_bytes(8, "big").replace(b"\0", b"\1")
    return header + b"x" * payload_bytes


def command(op: str, m: Master, rec: bytes) -> list[bytes]:
    k = m.keys
    if op == "enqueue":
        args: list[Any] = [m.shas[op], 2, k.ready, k.tasks, "t-__rand_int__-__rand_int__", rec]
    elif op == "dequeue":
        args = [m.shas[op], 4, k.ready, k.inflight, k.tasks, k.attempts, LEASE_MS, 1]
    else:
        args = [m.shas[op], 3, k.inflight, k.tasks, k.attempts, "a-__rand_int__"]
    return [b"EVALSHA", *(a if isinstance(a, bytes) else str(a).encode() for a in args)]


def _cpu_seconds(m: Master) -> float:
    with m.server.client(5.0) as r:
        info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run_at_once(
    binary: str, jobs: Sequence[tuple[str, Master, int, int, int, int]], rec: bytes
) -> list[dict[str, Any]]:
    """``(op, master, clients, pipeline, requests, keyspace)`` jobs, one redis-benchmark each, all at once;
    per job what redis-benchmark says, and what its master's counters and CPU say about the same run."""
    cpu0 = []
    for _, m, *_rest in jobs:
        commandstats.reset([m.server])
        cpu0.append(_cpu_seconds(m))
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    outs: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        for op, m, clients, pipeline, requests, keyspace in jobs:
            host, port = m.address.rsplit(":", 1)
            cmd = [binary, "-h", host, "-p", port, "-c", str(clients), "-P", str(pipeline), "-n", str(requests)]
            cmd += ["-r", str(keyspace)] if keyspace > 1 else []
            argv = [*cmd, *map(os.fsdecode, command(op, m, rec))]  # Popen encodes them back, byte for byte
            out: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
            err: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
            outs.append((children.spawn(argv, stdout=out, stderr=err), out, err))
        try:
            for proc, _, _ in outs:
                proc.wait(timeout=RUN_TIMEOUT_S)
        finally:
            for proc, _, _ in outs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        wall = time.monotonic() - started
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        bench_cores = (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) / wall
        results = []
        for (op, m, clients, pipeline, _, _), (proc, out, err), before in zip(jobs, outs, cpu0, strict=True):
            out.seek(0)
            err.seek(0)
            text, problem = out.read().decode(errors="replace"), err.read().decode(errors="replace").strip()
            if proc.returncode != 0:
                raise RuntimeError(f"redis-benchmark ({op} on {m.address}) failed: {problem or text[-300:]}")
            parsed = ceiling_calc.parse_benchmark(text)
            stats = commandstats.read([m.server])[0].commands
            evalsha = stats.get("evalsha")
            if evalsha is None or evalsha.failed or evalsha.rejected:
                raise RuntimeError(f"redis-benchmark ({op} on {m.address}): EVALSHA failed on the server: {evalsha}")
            results.append(
                {
                    **parsed,
                    "clients": clients,
                    "pipeline": pipeline,
                    "calls": evalsha.calls,
                    "us_per_call": round(evalsha.usec / evalsha.calls, 3) if evalsha.calls else None,
                    "master_cores": round((_cpu_seconds(m) - before) / wall, 3),
                    "bench_cores": round(bench_cores, 3),
                    "inner_calls": {name: s.calls for name, s in stats.items() if name != "evalsha"},
                }
            )
    return results


def clear(m: Master) -> None:
    with m.server.client(10.0) as r:
        r.delete(*m.keys.all())


def fill_leased(m: Master, count: int, rec: bytes) -> int:
    """``count`` tasks ``a-<12-digit i>`` (redis-benchmark's __rand_int__ form) enqueued and leased by the
    queue's own scripts; returns how many are in flight."""
    k = m.keys
    with m.server.client(30.0) as r:
        pipe = r.pipeline(transaction=False)
        for start in range(0, count, FILL_BATCH):
            args: list[Any] = []
            for i in range(start, min(count, start + FILL_BATCH)):
                args += [f"a-{i:012d}", rec]
            pipe.evalsha(m.shas["fill"], 2, k.ready, k.tasks, *args)
        pipe.execute()
        for _ in range(count // FILL_BATCH + 2):  # bounded: each call leases up to FILL_BATCH
            if not r.evalsha(m.shas["dequeue"], 4, k.ready, k.inflight, k.tasks, k.attempts, LEASE_MS, FILL_BATCH):
                break
        return int(r.zcard(k.inflight))


def one_round(
    binary: str, masters: Sequence[Master], clients: int, pipeline: int, requests: int, rec: bytes
) -> list[dict[str, dict[str, Any]]]:
    """Enqueue, dequeue, ack on every master of ``masters`` at once; per master, per operation, its run."""
    out: list[dict[str, dict[str, Any]]] = [{} for _ in masters]
    for m in masters:
        clear(m)
    runs = run_at_once(binary, [("enqueue", m, clients, pipeline, requests, 2**31 - 1) for m in masters], rec)
    queued = []
    for i, (m, run) in enumerate(zip(masters, runs, strict=True)):
        with m.server.client(5.0) as r:
            queued.append(int(r.llen(m.keys.ready)))
        out[i]["enqueue"] = run | {"queued": queued[-1]}
    runs = run_at_once(
        binary, [("dequeue", m, clients, pipeline, q, 1) for m, q in zip(masters, queued, strict=True)], rec
    )
    for i, (m, run) in enumerate(zip(masters, runs, strict=True)):
        with m.server.client(5.0) as r:
            out[i]["dequeue"] = run | {"leased": int(r.zcard(m.keys.inflight))}
        clear(m)
    acks = max(1, requests // 2)
    leased = [fill_leased(m, ACK_SPACE * acks, rec) for m in masters]
    runs = run_at_once(binary, [("ack", m, clients, pipeline, acks, ACK_SPACE * acks) for m in masters], rec)
    for i, (m, run) in enumerate(zip(masters, runs, strict=True)):
        with m.server.client(5.0) as r:
            hits = leased[i] - int(r.zcard(m.keys.inflight))
        out[i]["ack"] = run | {"hit_share": round(hits / acks, 4)}
        clear(m)
    return out


def concurrency(binary: str, m: Master, requests: int, rec: bytes) -> list[tuple[int, int, float]]:
    """The enqueue script's rate up the ladder, until it stops growing (bench.ceiling_calc.next_step)."""
    ladder: list[tuple[int, int, float]] = []
    while (step := ceiling_calc.next_step(ladder, LADDER)) is not None:
        clear(m)
        run = run_at_once(binary, [("enqueue", m, *step, requests, 2**31 - 1)], rec)[0]
        ladder.append((*step, run["ops_per_s"]))
    clear(m)
    return ladder


def _master_summary(m: Master, rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    ops = ceiling_calc.combine_rounds(rounds)
    rate = ceiling_calc.compose({op: ops[op].get("ops_per_s") for op in ops})
    pred = ceiling_calc.predicted({op: ops[op].get("us_per_call") for op in ops})
    cores = [float(c) for op in ops if (c := ops[op].get("master_cores")) is not None]
    return {
        "address": m.address,
        "partition": m.partition,
        "ops": ops,
        "tasks_per_s": rate,
        "us_per_task": round(sum(ops[op].get("us_per_call") or 0.0 for op in ops), 3),
        "predicted_tasks_per_s": pred,
        "ratio": round(rate / pred, 3) if rate and pred else None,
        "master_cores": min(cores) if cores else None,  # the least busy of its three runs
    }


def measure(
    backend: Any,
    params: dict[str, Any],
    *,
    requests: int = 200_000,
    repeats: int = 3,
    load_us_per_task: float | None = None,
    client_us_per_task: float | None = None,
    load_calls_per_dequeue: float | None = None,
    say: Any = None,
) -> dict[str, Any]:
    """The server-side ceiling of ``backend`` (embedded) for the queue's list engine: see the module."""
    if not backend.servers:
        return {"skipped": "an external backend: its nodes are not reached one by one"}
    if (params.get("engine") or "list") != "list":
        return {
            "skipped": "stream engine: its ack needs the entry ids the server made, which redis-benchmark cannot pass"
        }
    if (params.get("queue") or "") not in ("", "bench.adapters:taskqueue"):
        return {"skipped": f"queue adapter {params['queue']!r}: only TaskQueue's own scripts are driven"}
    binary = benchmark_binary()
    if binary is None:
        return {"skipped": "redis-benchmark not found (Debian: apt-get install -y redis-tools)"}
    masters = masters_of(backend)
    rec = record(int(params.get("payload_bytes") or 0))
    if say:
        say(f"server-side ceiling: redis-benchmark on {len(masters)} master(s), {repeats} rounds …")
    ladder = concurrency(binary, masters[0], requests, rec)
    clients, pipeline = ceiling_calc.best_step(ladder)
    alone: dict[str, list[dict[str, dict[str, Any]]]] = {m.address: [] for m in masters}
    unpiped: dict[str, list[dict[str, dict[str, Any]]]] = {m.address: [] for m in masters}
    together: list[list[dict[str, dict[str, Any]]]] = []
    for _ in range(repeats):  # interleaved: the host's drift hits every kind of run alike
        for m in masters:
            alone[m.address] += one_round(binary, [m], clients, pipeline, requests, rec)
            unpiped[m.address] += one_round(binary, [m], *UNPIPELINED, max(1000, requests // 4), rec)
        if len(masters) > 1:
            together.append(one_round(binary, masters, clients, pipeline, requests, rec))
    per_master = [_master_summary(m, alone[m.address]) for m in masters]
    unpipelined = [_master_summary(m, unpiped[m.address]) for m in masters]
    total = sum(m["tasks_per_s"] or 0.0 for m in per_master) or None
    bench_pred = sum(m["predicted_tasks_per_s"] or 0.0 for m in per_master) or None
    load_pred = len(masters) * 1e6 / load_us_per_task if load_us_per_task else None
    out: dict[str, Any] = {
        "method": "redis-benchmark EVALSHA of the queue's enqueue, dequeue and ack scripts, per master",
        "requests": requests,
        "repeats": repeats,
        "payload_bytes": int(params.get("payload_bytes") or 0),
        "host_cores": os.cpu_count(),
        "ladder": [{"clients": c, "pipeline": p, "ops_per_s": r} for c, p, r in ladder],
        "clients": clients,
        "pipeline": pipeline,
        "saturated": len(ladder) < len(LADDER) or ladder[-1][2] < max(r for *_, r in ladder[:-1]) * 1.05,
        "masters": per_master,
        "tasks_per_s": total,
        "unpipelined": [
            {k: m[k] for k in ("address", "tasks_per_s", "us_per_task", "master_cores")} for m in unpipelined
        ],
        "unpipelined_tasks_per_s": sum(m["tasks_per_s"] or 0.0 for m in unpipelined) or None,
        "predicted": {
            "benchmark_us_per_task": ceiling_calc.median([m["us_per_task"] for m in per_master]),
            "benchmark_tasks_per_s": bench_pred,
            "ratio_benchmark": round(total / bench_pred, 3) if total and bench_pred else None,
            "load_us_per_task": load_us_per_task,
            "load_calls_per_dequeue": load_calls_per_dequeue,  # redis-benchmark's: 1 (every call finds a task)
            "load_tasks_per_s": None if load_pred is None else round(load_pred, 1),
            "ratio_load": round(total / load_pred, 3) if total and load_pred else None,
        },
        "client_us_per_task": client_us_per_task,
    }
    if together:
        par = [_master_summary(m, [r[i] for r in together]) for i, m in enumerate(masters)]
        out["parallel"] = {
            "tasks_per_s": sum(m["tasks_per_s"] or 0.0 for m in par) or None,
            "masters": [{k: m[k] for k in ("address", "tasks_per_s", "master_cores")} for m in par],
        }
    return out
